"""SU(n) heat kernel: accuracy sweep against mpmath and CPU timings.

    python benchmarks/bench_special_unitary.py [--quick]

Accuracy: log p_t(theta) for n = 2, 3, 4 at Haar-random points, points 10^-k from one wall
(eigenvalue coincidences with angle difference 0 or 2 pi), points 10^-k from centre elements
(several walls) and the special points, t in [1e-4, 20] (log-spaced), against the mpmath
references of tests/test_special_unitary.py; relative error |d log p| / max(1, |log p|), over
points with log p > -500.  Score: relative error against mpmath finite differences at random
points.  Timings: log_heat_kernel / heat_kernel_score / sample_heat_kernel on 1e5 points.
"""
import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import test_special_unitary as ref  # noqa: E402  (mpmath references)
from manifolds import SpecialUnitary  # noqa: E402

PI = math.pi


def point_set(n, rng, quick):
  pts = [np.array(p, float) for p in ref._special_angles()[n]]
  nr = 6 if quick else 25
  for u in ref.np_haar(rng, n, nr):
    pts.append(ref.minimal_angles_bruteforce(np.linalg.eigvals(u)))
  for k in (2, 5, 8, 11, 14):
    for _ in range(1 if quick else 3):
      th = ref.minimal_angles_bruteforce(np.linalg.eigvals(ref.np_haar(rng, n, 1)[0]))
      i, j = rng.choice(n, 2, replace=False)
      cut = rng.random() < 0.5
      target = th[j] + (2 * PI if cut else 0.0)
      d = 0.5 * (target - th[i])
      th[i] += d
      th[j] -= d
      th[i] += 10.0 ** -k
      th[j] -= 10.0 ** -k
      pts.append(ref.minimal_angles_bruteforce(np.exp(1j * th)))
    centre = ref.minimal_angles_bruteforce(np.exp(1j * (2 * PI / n) * np.ones(n)))
    pert = rng.normal(size=n)
    pts.append(ref.minimal_angles_bruteforce(np.exp(1j * (centre + 10.0 ** -k * (pert - pert.mean())))))
    pts.append(10.0 ** -k * (pert - pert.mean()))                      # near the identity
  out = []
  for p in pts:
    p = p - p.mean()
    out.append(p)
  return out


def accuracy(quick):
  rng = np.random.default_rng(0)
  ts = np.geomspace(1e-4, 20.0, 6 if quick else 12)
  for n in (2, 3, 4):
    M = SpecialUnitary(n)
    pts = point_set(n, rng, quick)
    th = np.array([p for p in pts for _ in ts])
    tt = np.array([t for _ in pts for t in ts])
    t0 = time.time()
    refs = np.array([float(ref.mp_log_hk(list(a), b)) for a, b in zip(th, tt)])
    tref = time.time() - t0
    keep = refs > -500
    for dt in (jnp.float64, jnp.float32):
      got = np.asarray(M.log_heat_kernel_angles(jnp.asarray(th, dt), jnp.asarray(tt, dt)), float)
      assert np.all(np.isfinite(got))
      err = np.abs(got - refs) / np.maximum(1.0, np.abs(refs))
      err = np.where(keep, err, 0.0)
      i = int(np.argmax(err))
      print(f"SU({n}) {jnp.dtype(dt).name}: {int(keep.sum())} points, worst rel err "
            f"{err[i]:.2e} at theta={np.round(th[i], 12).tolist()} t={tt[i]:.3g} "
            f"(median {np.median(err[keep]):.1e}; mpmath {tref:.0f}s)")


def score_accuracy(quick):
  rng = np.random.default_rng(1)
  for n in (2, 3):
    M = SpecialUnitary(n)
    basis = ref.su_basis(n)
    worst = 0.0
    xs = ref.np_haar(rng, n, 3 if quick else 8)
    ys = ref.np_haar(rng, n, len(xs))
    ts = np.geomspace(0.01, 5.0, len(xs))
    # plus points 1e-3 .. 1e-9 from a wall (0-type and 2 pi-type), t in [0.05, 1]
    near = []
    for k, cut in ((3, False), (5, True), (7, False), (9, True)):
      th = np.zeros(n)
      th[0], th[1] = 1e1 ** -k, -1e1 ** -k
      if cut:
        th[0], th[1] = PI - 1e1 ** -k, -PI + 1e1 ** -k
      if n == 3:
        th = th * (0.9 if cut else 1.0) + np.array([0.2, 0.2, -0.4]) * (0.0 if cut else 1.0)
        th -= th.mean()
      near.append(th)
    xn = ref.np_haar(rng, n, len(near))
    yn = np.stack([xn[i] @ ref.np_from_angles(rng, near[i]) for i in range(len(near))])
    xs, ys = np.concatenate([xs, xn]), np.concatenate([ys, yn])
    ts = np.concatenate([ts, np.geomspace(0.05, 1.0, len(near))])
    s = np.asarray(M.heat_kernel_score(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(ts)))
    for i in range(len(xs)):
      got = np.real(np.einsum("kij,ij->k", np.conj(ys[i][None] @ basis), s[i]))
      want = np.array([ref._mp_score_directional(xs[i], ys[i], basis[k], ts[i])
                       for k in range(len(basis))])
      worst = max(worst, np.linalg.norm(got - want) / np.linalg.norm(want))
    print(f"SU({n}) score float64: worst relative error {worst:.2e} over {len(xs)} points "
          "(random and 1e-3..1e-9 from walls)")


def timings():
  for n in (2, 3, 4):
    M = SpecialUnitary(n)
    num = 100_000
    x = M.random_uniform(jax.random.PRNGKey(0), (num,))
    y = M.random_uniform(jax.random.PRNGKey(1), (num,))
    for name, fn, args in (
        ("log_heat_kernel", M.log_heat_kernel, (x, y, jnp.full((num,), 0.5))),
        ("heat_kernel_score", M.heat_kernel_score, (x, y, jnp.full((num,), 0.5)))):
      jax.block_until_ready(fn(*args))
      t0 = time.time()
      jax.block_until_ready(fn(*args))
      print(f"SU({n}) {name} 1e5 points t=0.5: {time.time() - t0:.2f}s")
    for t in (0.01, 1.0, 2.0, 5.0):
      tt = jnp.full((num if n < 4 else num // 10,), t)
      jax.block_until_ready(M.sample_heat_kernel(jax.random.PRNGKey(2), x[0], tt))
      t0 = time.time()
      jax.block_until_ready(M.sample_heat_kernel(jax.random.PRNGKey(3), x[0], tt))
      print(f"SU({n}) sample_heat_kernel {tt.shape[0]} draws t={t}: {time.time() - t0:.2f}s")


if __name__ == "__main__":
  ap = argparse.ArgumentParser()
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--skip-timings", action="store_true")
  args = ap.parse_args()
  accuracy(args.quick)
  score_accuracy(args.quick)
  if not args.skip_timings:
    timings()
