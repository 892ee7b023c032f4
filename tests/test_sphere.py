"""Heat kernel of `Sphere(n)`: log-density, score and exact sampling against independent
references (geometry is in test_sphere_geometry.py).

References, all written here and independent of manifolds._heat_sphere: the Gegenbauer
eigen-series of HEAT_KERNELS.md summed in mpmath at adaptive precision (enough digits to absorb
its cancellation), the S^1 images sum, the S^3 images formula, mpmath central differences for
scores, and the exact moments E<x,Y> = e^{-nt/2}, E[(n+1)<x,Y>^2 - 1] = n e^{-(n+1)t}.
Points are few per n (CI); benchmarks/heat_kernel_sphere.py --accuracy runs full grids.
Eager calls (no outer jit) on batches padded to 1024 points let every n with the same method
and dtype share one compiled kernel, which keeps this file fast (compilation dominates it).
"""
import functools
import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from scipy import stats

from manifolds import Sphere
from manifolds.flat import circle_log_heat_kernel

ENABLE_X64 = True   # float64 available in every test (conftest); float32 via explicit dtypes

DTYPES = [jnp.float32, jnp.float64]
PI = math.pi


# ----------------------------------------------------------------------------- references
def mp_log_vol(n):
  return mp.log(2) + mp.mpf(n + 1) / 2 * mp.log(mp.pi) - mp.loggamma(mp.mpf(n + 1) / 2)


def _mp_gegenbauer(n, t, theta):
  """(log p, log10 of the cancellation ratio) by the eigen-series at the current precision."""
  lam = mp.mpf(n - 1) / 2
  u = mp.cos(theta)
  s = sabs = mp.mpf(0)
  g_prev, g, logd, l = mp.mpf(0), mp.mpf(1), mp.mpf(0), 0
  while True:
    lw = logd - l * (l + n - 1) * t / 2
    w = mp.exp(lw)
    s += w * g
    sabs += w
    if l > 5 and lw < logd and w < sabs * mp.mpf(10) ** (-mp.mp.dps - 5):
      break
    g_prev, g = g, (2 * (l + lam) / (2 * lam + l)) * u * g - (mp.mpf(l) / (2 * lam + l)) * g_prev
    logd += mp.log(mp.mpf(2 * l + n + 1) / (2 * l + n - 1)) + mp.log(mp.mpf(l + n - 1) / (l + 1))
    l += 1
  return mp.log(s) - mp_log_vol(n), mp.log10(sabs / abs(s))


def _mp_logp(n, t, theta):
  if n == 1:
    return mp.log(sum(mp.exp(-(theta + 2 * mp.pi * k) ** 2 / (2 * t)) for k in range(-40, 41))
                  / mp.sqrt(2 * mp.pi * t))
  dps = mp.mp.dps
  while True:
    with mp.workdps(dps):
      v, cd = _mp_gegenbauer(n, t, theta)
    if cd < dps - 25:
      return v
    dps = int(cd) + 45


@functools.lru_cache(maxsize=None)
def ref_logp(n, t, theta):
  with mp.workdps(40):
    return float(_mp_logp(n, mp.mpf(t), mp.mpf(theta)))


@functools.lru_cache(maxsize=None)
def ref_dlogp_du(n, t, theta):
  """d log p / du (u = cos theta) by a central difference at high precision."""
  with mp.workdps(40):
    cd = 0 if n == 1 else _mp_gegenbauer(n, mp.mpf(t), mp.mpf(theta))[1]
  with mp.workdps(int(max(cd, 0)) + 90):
    h = mp.mpf(10) ** -25
    u0 = mp.cos(mp.mpf(theta))
    f = lambda u: _mp_logp(n, mp.mpf(t), mp.acos(u))
    return float((f(u0 + h) - f(u0 - h)) / (2 * h))


def mp_s3_images(t, theta):
  t, theta = mp.mpf(t), mp.mpf(theta)
  s = sum((theta + 2 * mp.pi * k) / mp.sin(theta) * mp.exp(-(theta + 2 * mp.pi * k) ** 2 / (2 * t))
          for k in range(-20, 21))
  return (2 * mp.pi * t) ** mp.mpf(-1.5) * mp.exp(t / 2) * s


# ----------------------------------------------------------------------------- helpers
PAD = 1024   # every batch padded to 1024 points: one compiled kernel per method and dtype


def pair(n, theta, dtype):
  """x = e0, y at geodesic distance theta (in the e0-e1 plane)."""
  theta = np.asarray(theta, np.float64)
  x = np.zeros(theta.shape + (n + 1,))
  x[..., 0] = 1.0
  y = np.zeros_like(x)
  y[..., 0] = np.cos(theta)
  y[..., 1] = np.where(theta == PI, 0.0, np.sin(theta))     # theta = pi: exact antipode
  return jnp.asarray(x, dtype), jnp.asarray(y, dtype)


def tol(dtype, f64, f32):
  return f64 if dtype == jnp.float64 else f32


def padded(*arrays):
  """Pad 1-d arrays (same length) to a multiple of PAD by repeating the last entry."""
  m = len(arrays[0])
  k = -(-m // PAD) * PAD
  return [np.concatenate([a, np.repeat(a[-1:], k - m)]) for a in arrays], m


def hk(M, th, ts, dtype):
  """(log p, score, x, y) at x = e0, y at distance th, times ts (1-d), via the public API."""
  (th, ts), m = padded(np.asarray(th, np.float64), np.asarray(ts, np.float64))
  x, y = pair(M.n, th, dtype)
  t = jnp.asarray(ts, dtype)
  return M.log_heat_kernel(x, y, t)[:m], M.heat_kernel_score(x, y, t)[:m], x[:m], y[:m]


def regimes(M, th, ts, dtype):
  (th, ts), m = padded(np.asarray(th, np.float64), np.asarray(ts, np.float64))
  X = jnp.asarray(np.cos(th / 2) ** 2, dtype)
  S = jnp.asarray(np.sin(th / 2) ** 2, dtype)
  return {k: np.asarray(v)[:m] for k, v in M.heat.regimes(X, S, jnp.asarray(ts, dtype)).items()}


# ----------------------------------------------------------------------------- log p
# (t, theta) points per n: every branch of manifolds._heat_sphere for that n, plus both sides
# of the eigen-series switch of each dtype (added by _points).
_BASE = {
    1: [(1e-4, 0.01), (0.01, 1.5), (0.01, 1.65), (0.05, 3.1), (0.1, PI), (5.0, 1.0)],
    2: [(1e-4, 0.0), (1e-3, 0.5), (0.01, 1.0), (0.05, 3.1), (0.05, PI), (0.1, 2.9),
        (20.0, PI)],
    3: [(1e-4, 0.02), (0.01, 1.5), (0.01, 1.65), (0.05, 3.1), (0.1, PI), (2.0, 0.3)],
    4: [(1e-4, 0.01), (0.01, 1.0), (0.1, 3.0), (0.1, 3.05), (0.1, PI), (0.15, 2.6)],
    15: [(1e-3, 0.3), (0.01, 1.0), (0.05, 3.0), (0.1, 2.0), (0.05, 2.5), (0.02, 2.9),
         (0.5, 1.0)],
    16: [(1e-3, 0.3), (0.01, 0.8), (0.05, 2.2), (0.05, 3.1), (0.1, 2.0)],
    127: [(1e-4, 0.1), (0.01, 1.5), (0.01, PI), (0.1, 2.0)],
    128: [(1e-4, 0.1), (0.01, 1.5), (0.01, 3.0), (0.02, 2.5)],
    1023: [(1e-4, 0.05), (0.003, 0.5), (0.003, 3.1), (0.003, PI), (0.02, 1.0)],
}
NS = sorted(_BASE)


def _points(n):
  sw = Sphere(n).heat.t_switch
  extra = [(sw[k] * f, th) for k in ("float64", "float32") for f in (0.98, 1.02)
           for th in (0.5, PI)]
  return _BASE[n] + extra


@pytest.mark.parametrize("n", NS)
def test_log_heat_kernel_vs_mpmath(n):
  """log p within 1e-6 max(1, |log p|) (float64) and 1e-3 max(1, |log p|) (float32) of the
  mpmath reference at points on both sides of every regime switch; the points do exercise
  every branch used for this n, in both dtypes."""
  M = Sphere(n)
  pts = _points(n)
  ts = np.array([p[0] for p in pts])
  th = np.array([p[1] for p in pts])
  refs = np.array([ref_logp(n, t, a) for t, a in pts])
  for dtype in DTYPES:
    lp, sc, _, _ = hk(M, th, ts, dtype)
    assert lp.dtype == dtype and sc.dtype == dtype
    lp = np.asarray(lp, np.float64)
    assert np.all(np.isfinite(lp)) and np.all(np.isfinite(np.asarray(sc)))
    err = np.abs(lp - refs) / np.maximum(1.0, np.abs(refs))
    assert err.max() < tol(dtype, 1e-6, 1e-3), (dtype, pts[int(err.argmax())], err.max())
    r = regimes(M, th, ts, dtype)
    assert r["eigen"].any() and (~r["eigen"]).any()
    small = ~r["eigen"]
    if n in (1, 3):
      assert (small & r["antipodal"]).any() and (small & ~r["antipodal"]).any()
    elif n == 2:
      assert (small & r["truncated"]).any() and (small & ~r["truncated"]).any()
    elif n % 2 == 0:
      assert r["keyhole"].any() and r["closed"].any()
      if M.heat.alpha < 18:
        assert (r["keyhole"] & r["full_arc"]).any()
      else:
        assert (r["keyhole"] & ~r["full_arc"]).any()
      if n == 4:
        assert r["moved"].any() and (small & ~r["moved"]).any()
    else:
      assert r["closed"].any()
      if M.heat.method == "real_odd":     # real-axis derivatives (both sides of pi/2), contour
        assert (small & r["real"] & ~r["real_hi"]).any() and r["real_hi"].any()
        assert (small & ~r["real"]).any()
      if n > 100:
        assert (small & ~r["full_arc"]).any()


def test_reference_cross_check():
  """The independent references agree: S^3 images vs Gegenbauer series, S^1 images vs the
  Fourier series."""
  for t, th in [(0.05, 1.0), (0.3, 3.0), (1.0, 0.2)]:
    assert float(mp.log(mp_s3_images(t, th))) == pytest.approx(ref_logp(3, t, th), abs=1e-12)
    with mp.workdps(30):
      four = mp.log((1 + 2 * sum(mp.exp(-k * k * mp.mpf(t) / 2) * mp.cos(k * mp.mpf(th))
                                 for k in range(1, 60))) / (2 * mp.pi))
    assert float(four) == pytest.approx(ref_logp(1, t, th), abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 15, 127, 1023])
def test_score_vs_mpmath(n):
  """Score within 1e-5 (float64) / 1e-3 (float32) relative of (d log p / du)_ref (x - <x,y> y),
  and tangent at y."""
  M = Sphere(n)
  pts = [p for p in _points(n) if 1e-3 < p[1] < PI - 1e-3][:7]
  ts = np.array([p[0] for p in pts])
  th = np.array([p[1] for p in pts])
  g = np.array([ref_dlogp_du(n, t, a) for t, a in pts])
  for dtype in DTYPES:
    _, sc, x, y = hk(M, th, ts, dtype)
    x, y, sc = (np.asarray(a, np.float64) for a in (x, y, sc))
    ref = g[:, None] * (x - np.sum(x * y, -1, keepdims=True) * y)
    err = np.linalg.norm(sc - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert err.max() < tol(dtype, 1e-5, 1e-3), (dtype, pts[int(err.argmax())], err.max())
    assert np.max(np.abs(np.sum(sc * y, -1)) / np.linalg.norm(sc, axis=-1)) < tol(dtype, 1e-12,
                                                                                    1e-5)


@pytest.mark.parametrize("n", [2])
def test_gradients_match_score_and_time_derivative(n):
  """jax.grad of log p in y is the score (tangent part) and in t matches a central difference
  of log p, in both regimes."""
  M = Sphere(n)
  k = jax.random.split(jax.random.PRNGKey(7), 2)
  x = M.random_uniform(k[0], (PAD,), jnp.float64)
  y = M.random_uniform(k[1], (PAD,), jnp.float64)
  t = jnp.geomspace(1e-3, 4.0, PAD)          # both regimes
  # (jitted: one compile instead of an op-by-op trace)
  g, dt = jax.jit(jax.grad(lambda yy, tt: jnp.sum(M.log_heat_kernel(x, yy, tt)), (0, 1)))(y, t)
  np.testing.assert_allclose(M.to_tangent(y, g), M.heat_kernel_score(x, y, t), rtol=1e-10,
                             atol=1e-12)
  h = 1e-6 * t
  fd = (M.log_heat_kernel(x, y, t + h) - M.log_heat_kernel(x, y, t - h)) / (2 * h)
  np.testing.assert_allclose(dt, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 15, 127])
def test_normalization(n):
  """vol(S^{n-1}) int_0^pi p_t(theta) sin^{n-1}(theta) d theta = 1 (Gauss-Legendre in theta
  over the window carrying the mass, float64)."""
  M = Sphere(n)
  xs, ws = np.polynomial.legendre.leggauss(400)
  lv = math.log(2.0) if n == 1 else Sphere(n - 1).log_volume()
  for t in (1e-3, 0.05, 1.0):
    c = math.acos(math.exp(-n * t / 2)) if n > 1 else 0.0
    s = math.sqrt(t) + 1.0 / math.sqrt(n + 1)
    lo, hi = max(0.0, c - 12 * s), min(PI, c + 12 * s)
    th = 0.5 * (hi - lo) * xs + 0.5 * (hi + lo)
    lp = np.asarray(hk(M, th, np.full_like(th, t), jnp.float64)[0])
    mass = 0.5 * (hi - lo) * np.sum(ws * np.exp(lv + lp + (n - 1) * np.log(np.sin(th))))
    assert mass == pytest.approx(1.0, abs=1e-8), (t, mass)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 15, 1023])
def test_heat_kernel_finite_everywhere(n, dtype):
  """No NaN/inf for t -> 0, large t, y = x, y = -x (float32 and float64)."""
  M = Sphere(n)
  ts = np.array([0.0, 1e-30, 1e-12, 1e-6, 1e-4, 0.01, 1.0, 30.0, 1e3, 1e6, np.inf])
  th = np.array([0.0, PI, 1e-4, PI - 1e-4, 1.0])
  T, TH = np.meshgrid(ts, th)
  lp, sc, x, y = hk(M, TH.ravel(), T.ravel(), dtype)
  assert bool(jnp.all(jnp.isfinite(lp))) and bool(jnp.all(jnp.isfinite(sc)))
  big = T.ravel() >= 1e3
  np.testing.assert_allclose(np.asarray(lp)[big], -M.log_volume(), rtol=tol(dtype, 1e-12, 1e-6))
  # y = x and y = -x: the score vanishes (exactly: it is g (x - <x,y> y) with x = +-y)
  sym = (TH.ravel() == 0.0) | (TH.ravel() == PI)
  np.testing.assert_allclose(np.asarray(sc)[sym], 0.0, atol=1e-30)


@pytest.mark.parametrize("n", [1, 2, 3, 15])
def test_heat_kernel_gradients_finite(n):
  """jax.grad of log p in y (both dtypes) and t (float64) is finite at y = x, y = -x and in
  both regimes.  (One custom JVP serves every method; the contour is checked in float32 and
  in y only, as its gradient programs compile slowly.)"""
  M = Sphere(n)
  th = np.array([0.0, PI, 0.0, PI, 1.0, 1.0, 0.0, PI] * 2)
  ts = np.array([1e-6, 1e-6, 0.05, 0.05, 1e-3, 3.0, 3.0, 3.0] * 2)
  (th, ts), _ = padded(th, ts)
  for dtype in (DTYPES if n <= 3 else [jnp.float32]):
    x, y = pair(n, th, dtype)
    tt = jnp.asarray(ts, dtype)
    if n <= 3 and dtype == jnp.float64:
      f = jax.grad(lambda yy, s: jnp.sum(M.log_heat_kernel(x, yy, s)), (0, 1))
    else:
      f = lambda yy, s: (jax.grad(lambda z: jnp.sum(M.log_heat_kernel(x, z, s)))(yy), s)
    gy, gt = jax.jit(f)(y, tt)
    assert bool(jnp.all(jnp.isfinite(gy))) and bool(jnp.all(jnp.isfinite(gt)))


def test_circle_matches_flat_circle_kernel():
  M = Sphere(1)
  th = np.linspace(0.0, PI, 64)
  for t in (1e-3, 0.2, 1.0, 5.0):
    lp = hk(M, th, np.full_like(th, t), jnp.float64)[0]
    np.testing.assert_allclose(lp, circle_log_heat_kernel(jnp.asarray(th), t), rtol=1e-12,
                               atol=1e-12)


def test_jit_vmap_and_broadcasting():
  M = Sphere(3)
  P = 16
  x = M.random_uniform(jax.random.PRNGKey(0), (2, P), jnp.float64)
  y = M.random_uniform(jax.random.PRNGKey(1), (2, P), jnp.float64)
  t = jnp.geomspace(0.01, 3.0, P)
  a = M.log_heat_kernel(x, y, t)
  assert a.shape == (2, P)
  np.testing.assert_allclose(jax.jit(M.log_heat_kernel)(x, y, t), a, rtol=1e-12)
  np.testing.assert_allclose(jax.vmap(M.log_heat_kernel, in_axes=(0, 0, None))(x, y, t), a,
                             rtol=1e-12)
  s = M.heat_kernel_score(x, y, t)
  assert s.shape == (2, P, 4)
  np.testing.assert_allclose(jax.jit(M.heat_kernel_score)(x, y, t), s, rtol=1e-12, atol=1e-14)
  assert M.log_heat_kernel(x[0, 0], y[0, 0], t).shape == (P,)
  z = M.sample_heat_kernel(jax.random.PRNGKey(3), x, t)
  assert z.shape == (2, P, 4) and z.dtype == jnp.float64
  np.testing.assert_allclose(jnp.sum(z * z, -1), 1.0, rtol=1e-12)


# ----------------------------------------------------------------------------- sampler
SAMPLER_TS = (1e-3, 0.03, 0.2, 0.3, 5.0)
N_DRAWS = 100_000
# every sampler: n = 1, 2, 3; for n >= 4 the closed-form (Girsanov) envelope (t = 1e-3; n = 15
# up to t_switch, with real-axis kernel evaluations on both sides of theta = pi/2), the exact
# hull with the contour (t = 0.03: t_q < t < t_switch for n = 127 and 128, odd and even), with
# the eigen-series (n = 15, t = 0.3: t_switch <= t < t_unif) and the uniform-law proposal
# (t >= t_unif: n = 15 at t = 5, n = 127, 128 at t >= 0.2)
SAMPLER_NS = [1, 2, 3, 15, 127, 128]


@functools.lru_cache(maxsize=None)
def _draws(n):
  """1e5 float32 draws for each t in SAMPLER_TS from one random x."""
  M = Sphere(n)
  x = M.random_uniform(jax.random.PRNGKey(1), (), jnp.float32)
  t = jnp.repeat(jnp.asarray(SAMPLER_TS, jnp.float32), N_DRAWS)
  y = M.sample_heat_kernel(jax.random.PRNGKey(2), x, t)
  return np.asarray(x, np.float64), np.asarray(y, np.float64).reshape(len(SAMPLER_TS), N_DRAWS,
                                                                      n + 1)


@pytest.mark.parametrize("n", SAMPLER_NS)
def test_sampler_moments(n):
  """E<x,Y> = e^{-nt/2}, E[(n+1)<x,Y>^2 - 1] = n e^{-(n+1)t}: 1e5 draws per t, 5 SE."""
  x, y = _draws(n)
  np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 1.0, atol=1e-5)
  for i, t in enumerate(SAMPLER_TS):
    u = y[i] @ x
    m1, m2 = u, (n + 1) * u ** 2 - 1
    e1, e2 = math.exp(-n * t / 2), n * math.exp(-(n + 1) * t)
    assert abs(m1.mean() - e1) <= 5 * m1.std() / math.sqrt(N_DRAWS) + 1e-6, (t, m1.mean(), e1)
    assert abs(m2.mean() - e2) <= 5 * m2.std() / math.sqrt(N_DRAWS) + 1e-5, (t, m2.mean(), e2)
    # the direction is uniform around x: the mean of Y is e^{-nt/2} x
    assert np.max(np.abs(y[i].mean(0) - e1 * x)) < 5 / math.sqrt(N_DRAWS) + 1e-6


@pytest.mark.parametrize("n", [1, 2])
def test_sampler_extreme_times(n):
  """t = 0, 1e-30, ..., inf: finite unit vectors, y = x at t = 0 (no endless rejection loop:
  at t = inf an unclipped time made an acceptance ratio NaN).  n = 2 runs the S^3 sampler
  too; the hull sampler (n >= 4) was checked by hand (compile time)."""
  M = Sphere(n)
  t = np.array([0.0, 1e-30, 1e-12, 1e-6, 1.0, 1e3, 1e6, np.inf] * 2)
  for dtype in DTYPES:
    x = M.random_uniform(jax.random.PRNGKey(0), (t.size,), dtype)
    y = M.sample_heat_kernel(jax.random.PRNGKey(1), x, jnp.asarray(t, dtype))
    assert y.dtype == dtype and bool(jnp.all(jnp.isfinite(y)))
    np.testing.assert_allclose(jnp.sum(y * y, -1), 1.0, rtol=tol(dtype, 1e-12, 1e-6))
    np.testing.assert_allclose(y[t == 0.0], x[t == 0.0], atol=tol(dtype, 1e-12, 1e-6))


@pytest.mark.parametrize("n", [4, 15, 127])
def test_sampler_envelope_bound(n):
  """The closed-form envelope of the small-t sampler is an upper bound (Girsanov against the
  Bessel process): log p_t <= -n/2 log(2 pi t) + c t - theta^2/2t + alpha log(theta/sin theta),
  c = alpha^2/3 + alpha/6, checked against the mpmath reference (tight as t, theta -> 0)."""
  a = 0.5 * (n - 1)
  c = a * a / 3.0 + a / 6.0
  for t in (1e-3, 0.02, 0.2):
    for th in (1e-3, 0.3 * math.sqrt(n * t), min(math.sqrt(n * t), 2.5), 3.0):
      bound = (-0.5 * n * math.log(2 * PI * t) + c * t - th * th / (2 * t)
               + a * math.log(th / math.sin(th)))
      if bound < -500:     # (the reference is slow there, and below the bound anyway)
        continue
      ref = ref_logp(n, t, th)
      assert ref <= bound + 1e-9 * abs(bound), (t, th, ref, bound)


def _radial_cdf(M, t, lo, hi, panels=128):
  """Edges, CDF and density of theta on [lo, hi] from the float64 log_heat_kernel:
  Gauss-Legendre panels for the CDF at the edges, density at the edges for Hermite cubics."""
  n = M.n
  lv = math.log(2.0) if n == 1 else Sphere(n - 1).log_volume()
  edges = np.linspace(lo, hi, panels + 1)
  gx, gw = np.polynomial.legendre.leggauss(6)
  mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
  nodes = np.concatenate([(mid[:, None] + half[:, None] * gx).ravel(), edges])
  lp = np.asarray(hk(M, nodes, np.full_like(nodes, t), jnp.float64)[0])
  with np.errstate(divide="ignore"):
    lsin = (n - 1) * np.log(np.sin(nodes)) if n > 1 else 0.0 * nodes
  dens = np.exp(lv + lp + lsin)
  dp, de = dens[:-len(edges)].reshape(-1, 6), dens[-len(edges):]
  cdf = np.concatenate([[0.0], np.cumsum(half * (dp @ gw))])
  return edges, cdf, de


def _hermite(s, edges, F, f):
  """Cubic Hermite interpolation of F (derivative f) on a uniform grid."""
  h = edges[1] - edges[0]
  i = np.clip(((s - edges[0]) / h).astype(int), 0, len(edges) - 2)
  u = (s - edges[i]) / h
  h00, h10 = (1 + 2 * u) * (1 - u) ** 2, u * (1 - u) ** 2
  h01, h11 = u * u * (3 - 2 * u), u * u * (u - 1)
  return F[i] * h00 + h * f[i] * h10 + F[i + 1] * h01 + h * f[i + 1] * h11


@pytest.mark.parametrize("n", SAMPLER_NS)
def test_sampler_ks(n):
  """KS test of d(x, Y) against the CDF integrated from the float64 log_heat_kernel (itself
  tested against mpmath above), for every t: 1e5 draws each."""
  x, y = _draws(n)
  M = Sphere(n)
  for i, t in enumerate(SAMPLER_TS):
    # distance from |y - x| and |y + x| (arccos of <x, y> would lose the small angles)
    theta = 2 * np.arctan2(np.linalg.norm(y[i] - x, axis=-1), np.linalg.norm(y[i] + x, axis=-1))
    c = math.acos(math.exp(-n * t / 2)) if n > 1 else 0.0
    lo, hi = max(0.0, c - 12 * math.sqrt(t)), min(PI, c + 12 * math.sqrt(t))
    edges, cdf, dens = _radial_cdf(M, t, lo, hi)
    assert cdf[-1] == pytest.approx(1.0, abs=1e-7)
    res = stats.kstest(theta, lambda s: _hermite(np.clip(s, lo, hi), edges, cdf, dens))
    assert res.pvalue > 1e-3, (t, res)
