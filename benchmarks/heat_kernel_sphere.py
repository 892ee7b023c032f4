"""S^n heat kernel: speed against `exp` (CPU, float32, batch 65,536) and full accuracy grids.

    python benchmarks/heat_kernel_sphere.py --dims 2,15,127,1023                # timings
    python benchmarks/heat_kernel_sphere.py --dims 1,2,3,15,127,1023 --accuracy  # mpmath grid
    python benchmarks/heat_kernel_sphere.py --dims 2,3,15 --moments              # sampler

Timings use the inputs of benchmarks/heat_kernel.py (x uniform, y = exp_x(sqrt(t) v), t
log-uniform in [1e-3, 2]); all functions jitted; "lp+sc" is one jitted call returning log p and
the score.  Each ratio is given twice: best wall time (what heat_kernel.py reports) and best
process CPU time (all threads), which is far less sensitive to other processes on a shared
machine; compare ratios only within one run.

--accuracy: worst error of log p (relative to max(1, |log p|)) and of the score (relative) over
a (t, theta) grid, t log-spaced in [1e-4, 20] plus both sides of each dtype's switch, theta in
[0, pi], points with log p > -500, against the mpmath Gegenbauer series at adaptive precision
(S^1: images sum).  Scores against an mpmath central difference (interior theta only, and
|d log p / du| > 1e-20: smaller ones are below float32's range at large t).

--moments: sampler moments (E<x,Y> = e^{-nt/2}, E[(n+1)<x,Y>^2 - 1] = n e^{-(n+1)t}) with 1e6
draws per t, in standard errors.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

# The script's folder would shadow the `manifolds` package: use the repo root.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _best(fn, *args, reps=7):
  """(best wall time, best process CPU time) of a jitted call after compilation."""
  jax.block_until_ready(fn(*args))
  wall = cpu = float("inf")
  for _ in range(reps):
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    wall = min(wall, time.perf_counter() - t0)
    cpu = min(cpu, time.process_time() - c0)
  return wall, cpu


def timings(dims, batch, reps):
  from manifolds import Sphere
  print(f"backend={jax.default_backend()} batch={batch} float32, load avg {os.getloadavg()}")
  print("| n | exp ms (wall / cpu) | log p + score x exp (wall / cpu) | sample x exp (wall / cpu) |")
  print("| --- | --- | --- | --- |")
  for n in dims:
    M = Sphere(n)
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
    x = M.random_uniform(k1, (batch,), jnp.float32)
    t = jnp.exp(jax.random.uniform(k2, (batch,), minval=math.log(1e-3), maxval=math.log(2.0)))
    v = M.random_normal_tangent(k3, x) * jnp.sqrt(t)[:, None]
    y = M.exp(x, v)
    te = _best(jax.jit(M.exp), x, v, reps=reps)
    tb = _best(jax.jit(lambda a, b, s: (M.log_heat_kernel(a, b, s),
                                        M.heat_kernel_score(a, b, s))), x, y, t, reps=reps)
    ts = _best(jax.jit(M.sample_heat_kernel), k4, x, t, reps=reps)
    print(f"| {n} | {te[0] * 1e3:.2f} / {te[1] * 1e3:.2f} | {tb[0] / te[0]:.1f} / "
          f"{tb[1] / te[1]:.1f} | {ts[0] / te[0]:.1f} / {ts[1] / te[1]:.1f} |", flush=True)


# ----------------------------------------------------------------------------- references
def _mp_ref(n, t, th, extra=0):
  """log p (an mpf) by the Gegenbauer series (S^1: images) in mpmath, precision raised until
  the cancellation is absorbed, with `extra` more digits for differencing."""
  import mpmath as mp
  t, th = mp.mpf(t), mp.mpf(th)
  if n == 1:
    with mp.workdps(40 + extra):
      return mp.log(sum(mp.exp(-(th + 2 * mp.pi * k) ** 2 / (2 * t)) for k in range(-30, 31))
                    / mp.sqrt(2 * mp.pi * t))
  dps = 40 + extra
  while True:
    with mp.workdps(dps):
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
      cd = float(mp.log10(sabs / abs(s)))
      if cd < dps - 30 - extra:
        lv = mp.log(2) + (n + 1) * mp.log(mp.pi) / 2 - mp.loggamma(mp.mpf(n + 1) / 2)
        return mp.log(s) - lv
    dps = int(cd) + 50 + extra


def _mp_dlogp_du(n, t, th):
  """d log p / du by a central difference in u = cos theta at 30 extra digits (h = 1e-20)."""
  import mpmath as mp
  with mp.workdps(60):
    u, h = mp.cos(mp.mpf(th)), mp.mpf(10) ** -20
    d = (_mp_ref(n, t, mp.acos(u + h), 30) - _mp_ref(n, t, mp.acos(u - h), 30)) / (2 * h)
  return float(d)


def accuracy(dims, npts, score):
  jax.config.update("jax_enable_x64", True)
  from manifolds import Sphere
  for n in dims:
    H = Sphere(n).heat
    ts = list(np.exp(np.linspace(math.log(1e-4), math.log(20.0), npts)))
    ts += [H.t_switch[k] * f for k in ("float64", "float32") for f in (0.98, 1.02)]
    ths = np.linspace(0.0, math.pi, npts)
    T, TH = (a.ravel() for a in np.meshgrid(np.array(ts), ths))
    out = {}
    for name, dt in (("float64", jnp.float64), ("float32", jnp.float32)):
      X = jnp.asarray(np.cos(TH / 2) ** 2, dt)
      S = jnp.asarray(np.sin(TH / 2) ** 2, dt)
      lp, g = H.radial(X, S, jnp.asarray(T, dt))
      out[name] = (np.asarray(lp, np.float64), np.asarray(g, np.float64))
    worst = {k: [0.0, None, 0.0, None] for k in out}
    t0 = time.time()
    for i in range(len(T)):
      if out["float64"][0][i] < -520:       # outside the contract (log p > -500)
        continue
      r = float(_mp_ref(n, T[i], TH[i]))
      if r < -500:
        continue
      gref = (_mp_dlogp_du(n, T[i], TH[i]) if score and 1e-3 < TH[i] < math.pi - 1e-3
              else None)
      if gref is not None and abs(gref) < 1e-20:
        gref = None      # e^{-nt/2}-small scores: below float32 range / the difference's digits
      for k, (lp, g) in out.items():
        e = abs(lp[i] - r) / max(1.0, abs(r))
        if not np.isfinite(lp[i]) or e > worst[k][0]:
          worst[k][:2] = [e, (float(T[i]), float(TH[i]))]
        if gref is not None:
          eg = abs(g[i] - gref) / abs(gref)
          if eg > worst[k][2]:
            worst[k][2:] = [eg, (float(T[i]), float(TH[i]))]
    for k, w in worst.items():
      print(f"n={n} {k}: log p worst {w[0]:.2e} at (t, theta)={w[1]}; score worst {w[2]:.2e} "
            f"at {w[3]}  [{len(T)} points, {time.time() - t0:.0f}s]", flush=True)


def moments(dims, draws):
  from manifolds import Sphere
  for n in dims:
    M = Sphere(n)
    x = M.random_uniform(jax.random.PRNGKey(1), (), jnp.float32)
    for t in (1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0, 2.0, 5.0):
      y = np.asarray(M.sample_heat_kernel(jax.random.PRNGKey(2), x,
                                          jnp.full((draws,), t, jnp.float32)), np.float64)
      u = y @ np.asarray(x, np.float64)
      z = []
      for m, e in ((u, math.exp(-n * t / 2)), ((n + 1) * u * u - 1, n * math.exp(-(n + 1) * t))):
        z.append((m.mean() - e) / (m.std() / math.sqrt(draws)))
      print(f"n={n} t={t:g}: moment deviations {z[0]:+.2f}, {z[1]:+.2f} SE", flush=True)


if __name__ == "__main__":
  ap = argparse.ArgumentParser()
  ap.add_argument("--dims", default="2,15,127,1023")
  ap.add_argument("--batch", type=int, default=65536)
  ap.add_argument("--reps", type=int, default=7)
  ap.add_argument("--accuracy", action="store_true")
  ap.add_argument("--no-score", action="store_true", help="accuracy: skip the (slow) scores")
  ap.add_argument("--npts", type=int, default=25)
  ap.add_argument("--moments", action="store_true")
  ap.add_argument("--draws", type=int, default=1_000_000)
  a = ap.parse_args()
  dims = [int(d) for d in a.dims.split(",")]
  if a.accuracy:
    accuracy(dims, a.npts, not a.no_score)
  elif a.moments:
    moments(dims, a.draws)
  else:
    timings(dims, a.batch, a.reps)
