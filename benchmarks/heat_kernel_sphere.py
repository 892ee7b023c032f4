"""Speed of the S^n heat kernel vs `exp` (CPU, float32, batch 65,536) and optional accuracy grid.

    python benchmarks/heat_kernel_sphere.py --dims 2,3,16,127,1023           # timings
    python benchmarks/heat_kernel_sphere.py --dims 2,1023 --accuracy         # + mpmath grid

Timings: median of --reps runs after compilation, all functions jitted; t log-uniform in
[1e-4, 1] per sample (so both the contour and the eigen-series regimes are exercised) and
x, y uniform.  "lp+score" is one jitted call returning both (they share the radial work).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

# The script's folder would shadow the `manifolds` package: use the repo root.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _time(fn, *args, reps=7):
  out = fn(*args)
  jax.block_until_ready(out)
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def timings(dims, batch, reps):
  from manifolds import Sphere
  print(f"backend={jax.default_backend()} devices={jax.devices()} batch={batch} float32")
  print(f"{'n':>5} {'exp ms':>8} {'logp x':>7} {'score x':>8} {'lp+sc x':>8} {'sample x':>9}")
  for n in dims:
    M = Sphere(n)
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x = M.random_uniform(k[0], (batch,), jnp.float32)
    y = M.random_uniform(k[1], (batch,), jnp.float32)
    v = M.random_normal_tangent(k[2], x)
    t = jnp.exp(jax.random.uniform(k[3], (batch,), jnp.float32, math.log(1e-4), 0.0))
    f_exp = jax.jit(M.exp)
    f_lp = jax.jit(M.log_heat_kernel)
    f_sc = jax.jit(M.heat_kernel_score)
    f_both = jax.jit(lambda x, y, t: (M.log_heat_kernel(x, y, t), M.heat_kernel_score(x, y, t)))
    f_smp = jax.jit(M.sample_heat_kernel)
    te = _time(f_exp, x, v, reps=reps)
    tl = _time(f_lp, x, y, t, reps=reps)
    ts = _time(f_sc, x, y, t, reps=reps)
    tb = _time(f_both, x, y, t, reps=reps)
    tsm = _time(f_smp, k[3], x, t, reps=reps)
    print(f"{n:>5} {te * 1e3:8.2f} {tl / te:7.1f} {ts / te:8.1f} {tb / te:8.1f} {tsm / te:9.1f}",
          flush=True)


def accuracy(dims, npts):
  """Worst relative error of log p (float64 and float32) over a (t, theta) grid vs mpmath."""
  import mpmath as mp
  jax.config.update("jax_enable_x64", True)
  from manifolds._heat_sphere import SphereHeat

  def ref(n, t, th):
    t, th = mp.mpf(t), mp.mpf(th)
    if n == 1:
      return mp.log(sum(mp.exp(-(th + 2 * mp.pi * k) ** 2 / (2 * t)) for k in range(-30, 31))
                    / mp.sqrt(2 * mp.pi * t))
    lam = mp.mpf(n - 1) / 2
    u = mp.cos(th)
    s = sabs = mp.mpf(0)
    gm, g, logd, l = mp.mpf(0), mp.mpf(1), mp.mpf(0), 0
    while True:
      lw = logd - l * (l + n - 1) * t / 2
      w = mp.exp(lw)
      s += w * g
      sabs += w
      if l > 5 and w < sabs * mp.mpf(10) ** (-mp.mp.dps - 5) and lw < logd:
        break
      gm, g = g, (2 * (l + lam) / (2 * lam + l)) * u * g - (mp.mpf(l) / (2 * lam + l)) * gm
      logd += mp.log(mp.mpf(2 * l + n + 1) / (2 * l + n - 1)) + mp.log(mp.mpf(l + n - 1) / (l + 1))
      l += 1
    lv = mp.log(2) + (n + 1) * mp.log(mp.pi) / 2 - mp.loggamma(mp.mpf(n + 1) / 2)
    return mp.log(s) - lv, sabs / abs(s)

  def ref_adaptive(n, t, th):
    dps = 40
    while True:
      with mp.workdps(dps):
        r = ref(n, t, th)
        if n == 1:
          return float(r)
        v, c = r
        cd = float(mp.log10(c))
        if cd < dps - 30:
          return float(v)
        dps = int(cd) + 50

  for n in dims:
    H = SphereHeat(n)
    ts = np.exp(np.linspace(math.log(1e-4), math.log(20.0), npts))
    ths = np.linspace(0.0, math.pi, npts)
    worst = {"float64": (0, None), "float32": (0, None)}
    for t in ts:
      for dtn, dt in (("float64", jnp.float64), ("float32", jnp.float32)):
        X = jnp.asarray(np.cos(ths / 2) ** 2, dt)
        S = jnp.asarray(np.sin(ths / 2) ** 2, dt)
        lp = np.asarray(H.radial(X, S, jnp.full_like(X, t))[0], np.float64)
        for th, v in zip(ths, lp):
          if dtn == "float32":
            r = cache[(t, th)]
          else:
            # cheap pre-screen: skip points far below -500 (outside the accuracy contract)
            if v < -520:
              cache_skip.add((t, th))
              continue
            r = cache[(t, th)] = ref_adaptive(n, t, th)
          if (t, th) in cache_skip or r < -500:
            continue
          e = abs(v - r) / max(1.0, abs(r))
          if e > worst[dtn][0]:
            worst[dtn] = (e, (float(t), float(th), r))
    print(f"n={n}: worst float64 {worst['float64']}, float32 {worst['float32']}", flush=True)


cache, cache_skip = {}, set()

if __name__ == "__main__":
  ap = argparse.ArgumentParser()
  ap.add_argument("--dims", default="2,3,16,127,1023")
  ap.add_argument("--batch", type=int, default=65536)
  ap.add_argument("--reps", type=int, default=7)
  ap.add_argument("--accuracy", action="store_true")
  ap.add_argument("--npts", type=int, default=25)
  a = ap.parse_args()
  dims = [int(d) for d in a.dims.split(",")]
  if a.accuracy:
    accuracy(dims, a.npts)
  else:
    timings(dims, a.batch, a.reps)
