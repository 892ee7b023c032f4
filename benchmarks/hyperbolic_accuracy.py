"""Worst errors of Hyperbolic(n)'s heat kernel against the mpmath reference of the tests.

    python benchmarks/hyperbolic_accuracy.py [--dims 2,3,4,5,7,10,16] [--quick]

Grid: t in {1e-4, 1e-3, 1e-2, 0.1, 0.3, 1, 3, 5, 10, 20}, rho in a set including 0, the
regime switches (0.75, 1.5), rho = 20 and values up to where log p ~ -400 (only points with
log p > -500 count).  Prints, per n and precision, max |log p - ref| / max(1, |ref|) and
max |c / c_ref - 1| (score coefficient).  Slow (the even-n references are quadratures).
"""
import argparse
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from manifolds import _heat_hyperbolic as hk  # noqa: E402
from test_hyperbolic import _rho_max, ref_heat  # noqa: E402


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--dims", default="2,3,4,5,7,10,16")
  ap.add_argument("--quick", action="store_true", help="fewer points per t")
  args = ap.parse_args()
  ts = [1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0, 5.0, 10.0, 20.0]
  for n in [int(a) for a in args.dims.split(",")]:
    pts = []
    for t in ts:
      rm = _rho_max(n, t)
      rhos = [0.0, 1e-3 * math.sqrt(t), math.sqrt(t), 0.74, 0.76, 1.49, 1.51, 3.0, 20.0,
              0.5 * rm, rm]
      if args.quick:
        rhos = [0.0, 0.76, 1.51, rm]
      pts += [(float(np.float32(r)), float(np.float32(t))) for r in rhos if r <= rm]
    refs = [ref_heat(n, r, t) for r, t in pts]
    ok = np.array([a[0] > -500 for a in refs])
    rl = np.array([a[0] for a in refs])
    rc = np.array([a[1] for a in refs])
    for dtype in (jnp.float64, jnp.float32):
      lp, c = jax.jit(lambda r, t: hk.log_kernel(r, t, n, with_score=True))(
          jnp.asarray([p[0] for p in pts], dtype), jnp.asarray([p[1] for p in pts], dtype))
      lp, c = np.asarray(lp, np.float64), np.asarray(c, np.float64)
      e_lp = np.abs(lp - rl) / np.maximum(1.0, np.abs(rl))
      e_c = np.abs(c / rc - 1.0)
      i, j = np.argmax(np.where(ok, e_lp, 0)), np.argmax(np.where(ok, e_c, 0))
      print(f"n={n:2d} {jnp.dtype(dtype).name}: {ok.sum()} points, log p err {e_lp[i]:.1e} "
            f"(rho={pts[i][0]:.3g}, t={pts[i][1]:.3g}), score err {e_c[j]:.1e} "
            f"(rho={pts[j][0]:.3g}, t={pts[j][1]:.3g})", flush=True)


if __name__ == "__main__":
  main()
