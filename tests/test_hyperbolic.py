"""Hyperbolic(n): geometry and exact heat kernel against independent references.

References (written here, independent of manifolds/_heat_hyperbolic.py):
* geometry: mpmath acosh(-<x, y>_L) at 50 digits, with x0 = sqrt(1 + |x'|^2) (the spatial part
  is the data, as in the implementation), numpy Gram-Schmidt in the Lorentz metric;
* heat kernel: mpmath (dps 30).  Odd n: p^(2m+1) = e^{-m^2 t/2} (2 pi)^{-m} (2 pi t)^{-1/2}
  (-d/du)^m exp(-acosh(u)^2 / 2t) with the u-derivatives by mpmath.diff.  Even n: McKean's
  integral for H^2 by mpmath.quad, written in s = cosh r - cosh rho (so that the recursion
  p^(n+2) = -(e^{-nt/2}/2 pi) d/du p^(n) is a plain u-derivative) and differentiated under the
  integral sign with mpmath.diff.  Scores: the (m+1)-th derivative, c = -(d log p/d rho)/rho;
* sampler: E[cosh d(x, Y)] = e^{nt/2} and Kolmogorov-Smirnov of d(x, Y) against the CDF of
  vol(S^{n-1}) sinh^{n-1}(rho) p_t(rho) from the closed form (n = 3) or scipy quadrature of
  McKean's integral (n = 2).
"""
import functools
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

from manifolds import Hyperbolic, from_spec
from manifolds import _heat_hyperbolic as hk


# ----------------------------------------------------------------------------- references
def _mp_phi(w):
  """acosh(w)^2 / 2, real-analytic for w > -1 (so central differences at w = 1 work)."""
  if w >= 1:
    return mpmath.acosh(w) ** 2 / 2
  return -mpmath.acos(w) ** 2 / 2


def _mp_dphi(w):
  """d/dw acosh(w)^2 / 2 = r / sinh r."""
  if w > 1:
    return mpmath.acosh(w) / mpmath.sqrt(w * w - 1)
  if w == 1:
    return mpmath.mpf(1)
  return mpmath.acos(w) / mpmath.sqrt(1 - w * w)


def _mp_step(x):
  # mpmath's `relative` option shrinks h for large x; choose h relative to |x| ourselves.
  return mpmath.ldexp(max(abs(x), 1), -mpmath.mp.prec - 10)


@functools.lru_cache(maxsize=None)
def ref_heat(n, rho, t):
  """(log p^(n)_t(rho), c) with c = -(d log p / d rho) / rho, at mpmath dps 30."""
  with mpmath.workdps(30):
    t, rho = mpmath.mpf(t), mpmath.mpf(rho)
    u = mpmath.cosh(rho)
    if n % 2:
      m = (n - 1) // 2
      d = list(mpmath.diffs(lambda w: mpmath.exp(-_mp_phi(w) / t), u, m + 1, h=_mp_step(u)))
      dm, dm1 = d[m], d[m + 1]
      pre = mpmath.exp(-m * m * t / 2) * (2 * mpmath.pi) ** (-m) * (2 * mpmath.pi * t) ** -0.5
    else:
      m = (n - 2) // 2
      g = lambda w: _mp_dphi(w) * mpmath.exp(-_mp_phi(w) / t)  # noqa: E731
      cache = {}

      def derivs(sig):  # u-derivatives of the integrand at w = u + s, s = sig^2
        if sig not in cache:
          w = u + sig * sig
          cache[sig] = list(mpmath.diffs(g, w, m + 1, h=_mp_step(w)))
        return cache[sig]

      # int_0^inf F(u + s) s^{-1/2} ds with s = cosh(rho + tau) - cosh rho.  Head
      # (tau < 1): s = sig^2, i.e. 2 int F(u + sig^2) dsig, smooth in sig; tail (tau > 1): in
      # tau, F(u + s) sinh(rho + tau) / sqrt(s), smooth there.  Gauss-Legendre on intervals
      # geometric in tau from the peak width t / (rho + sqrt t) to far beyond the tail.
      tau = [min(mpmath.mpf(0.1) * t / (rho + mpmath.sqrt(t)), mpmath.mpf(0.5))]
      while tau[-1] < 1:
        tau.append(2 * tau[-1])
      head = [0] + [mpmath.sqrt(mpmath.cosh(rho + tk) - u) for tk in tau[:-1]]
      head.append(mpmath.sqrt(mpmath.cosh(rho + 1) - u))
      tail = [mpmath.mpf(1)]
      while tail[-1] < 15 * mpmath.sqrt(t) + 60:
        tail.append(2 * tail[-1])
      tail.append(mpmath.inf)

      def integral(k):
        h = 2 * mpmath.quad(lambda sg: derivs(sg)[k], head, method="gauss-legendre")

        def f_tail(tk):
          sg = mpmath.sqrt(mpmath.cosh(rho + tk) - u)
          return derivs(sg)[k] * mpmath.sinh(rho + tk) / sg

        return h + mpmath.quad(f_tail, tail, method="gauss-legendre")

      dm, dm1 = integral(m), integral(m + 1)
      pre = (mpmath.sqrt(2) * mpmath.exp(-t / 8) * (2 * mpmath.pi * t) ** -1.5
             * mpmath.exp(-m * (m + 1) * t / 2) * (2 * mpmath.pi) ** (-m))
    p = pre * (-1) ** m * dm
    dpdu = pre * (-1) ** m * dm1
    sinhc = mpmath.sinh(rho) / rho if rho else mpmath.mpf(1)
    return float(mpmath.log(p)), float(-sinhc * dpdu / p)


def _mp_dist(x, y):
  """acosh(-<x, y>_L) at 50 digits, time components re-derived from the spatial parts."""
  with mpmath.workdps(50):
    xs = [mpmath.mpf(float(a)) for a in x[1:]]
    ys = [mpmath.mpf(float(a)) for a in y[1:]]
    x0 = mpmath.sqrt(1 + sum(a * a for a in xs))
    y0 = mpmath.sqrt(1 + sum(a * a for a in ys))
    return float(mpmath.acosh(x0 * y0 - sum(a * b for a, b in zip(xs, ys))))


def _np_minkowski(u, v):
  return -u[..., 0] * v[..., 0] + np.sum(u[..., 1:] * v[..., 1:], axis=-1)


def _lorentz_onb(x):
  """Orthonormal basis of T_x M (rows), by Gram-Schmidt in the Lorentz metric (numpy f64)."""
  x = np.asarray(x, np.float64)
  basis = []
  for i in range(1, x.shape[-1]):
    e = np.zeros_like(x)
    e[i] = 1.0
    v = e + _np_minkowski(x, e) * x  # Lorentz projection onto T_x
    for b in basis:
      v = v - _np_minkowski(b, v) * b
    basis.append(v / math.sqrt(_np_minkowski(v, v)))
  return np.stack(basis)


def _rho_max(n, t, target=400.0):
  """rho with rho^2/2t + (n-1) rho/2 = target (there log p ~ -target)."""
  b = 0.5 * (n - 1)
  return t * (-b + math.sqrt(b * b + 2.0 * target / t))


def _points(M, key, batch, spread, dtype):
  o = M.origin((batch,), dtype)
  return M.exp(o, spread * M.random_normal_tangent(key, o))


def _at_distance(M, x, rho, key):
  """Points at exact geodesic distances rho (array) from x, in random directions."""
  v = M.random_normal_tangent(key, x)
  v = v / M.norm(x, v)[..., None]
  return M.exp(x, rho[..., None] * v)


# ----------------------------------------------------------------------------- basics
def test_constructor_spec_and_infinite_volume():
  M = Hyperbolic(5)
  assert M.dim == 5 and M.shape == (6,) and not M.compact
  assert from_spec("hyperbolic(5)") == M and M.spec == "hyperbolic(5)"
  for bad in (1, 0, 2.5, -3):
    with pytest.raises(ValueError):
      Hyperbolic(bad)
  with pytest.raises(NotImplementedError, match="infinite volume"):
    M.log_volume()
  with pytest.raises(NotImplementedError, match="infinite volume"):
    M.random_uniform(jax.random.PRNGKey(0), (3,))
  np.testing.assert_array_equal(M.origin((2,)), np.tile(np.eye(6)[0], (2, 1)))


def test_check_and_belongs(x64):
  M = Hyperbolic(4)
  g = _geometry(x64)
  x = jnp.asarray(g["y"])  # includes points ~20 (float64) / ~8 (float32) from the origin,
  M.check(x)               # accepted: the criterion is relative to the coordinates' size
  assert bool(jnp.all(M.belongs(x)))
  off = x.at[3, 0].multiply(1.01)  # off the hyperboloid
  with pytest.raises(ValueError, match="off the manifold"):
    M.check(off)
  lower = x.at[5].multiply(-1.0)  # <x, x>_L = -1 but x0 < 0: the lower sheet
  with pytest.raises(ValueError, match="x0 > 0"):
    M.check(lower)
  np.testing.assert_array_equal(np.asarray(M.belongs(lower)), np.arange(_B) != 5)
  with pytest.raises(ValueError, match="NaN"):
    M.check(x.at[0, 1].set(jnp.nan))
  with pytest.raises(ValueError):
    M.check(jnp.zeros((4, 6)))  # wrong shape


# ----------------------------------------------------------------------------- geometry
_B = 32  # batch of the geometry bundle


@functools.lru_cache(maxsize=None)
def _geometry(x64):
  """Every geometry quantity the tests below check, for H^4 in the current precision,
  computed by one jit-compiled function (one compile per precision), as numpy arrays.

  x: points within ~2 of the origin; y = exp_x(v) with |v| = r in [0, 20] (float64) or
  [0, 8] (float32), r[:4] tiny; z: random points; u, w: random tangent vectors at x.
  """
  del x64  # part of the cache key; the dtype follows jax_enable_x64
  M = Hyperbolic(4)
  rmax = 20.0 if jax.config.jax_enable_x64 else 8.0

  @jax.jit
  def run(key):
    g = jax.random.normal(key, (6, _B, 5))  # one random call (threefry compiles slowly)
    o = M.origin((_B,))
    x = M.exp(o, 0.4 * M.to_tangent(o, g[0]))
    r = jnp.concatenate([jnp.asarray([0.0, 1e-6, 1e-3, 0.1]), jnp.linspace(0.5, rmax, _B - 4)])
    r = r.astype(x.dtype)
    v = M.to_tangent(x, g[1])
    v = r[:, None] * v / M.norm(x, v)[:, None]
    y = M.exp(x, v)
    z = M.exp(o, 0.8 * M.to_tangent(o, g[2]))
    u = M.to_tangent(x, g[3])
    w = M.to_tangent(x, g[4])
    amb = g[5]
    p_amb = M.to_tangent(x, amb)
    q, _ = M._chord(x, y)
    # egrad_to_rgrad against directional derivatives of f(y) = -<a, y>_L = cosh d(a, y)
    a = z[0]
    f = lambda yy: a[0] * yy[0] - a[1:] @ yy[1:]  # noqa: E731
    rgrad = M.egrad_to_rgrad(x, jax.vmap(jax.grad(f))(x))
    ddir = jax.vmap(lambda xx, uu: jax.jvp(lambda s: f(M.exp(xx, s * uu)),
                                           (jnp.zeros((), xx.dtype),),
                                           (jnp.ones((), xx.dtype),))[1])(x, u)
    pt = M.to_poincare(z)
    extra = {}
    if jax.config.jax_enable_x64:  # the Jacobian check runs in float64 only
      extra["jac"] = jax.vmap(lambda xi, vi, ei: jax.jacfwd(lambda c: M.exp(xi, vi + c @ ei))(
          jnp.zeros(4, x.dtype)))(x, v, _onb_batch(x))
    return dict(**extra,
        x=x, r=r, v=v, y=y, z=z, u=u, w=w, amb=amb, p_amb=p_amb, p_amb2=M.to_tangent(x, p_amb),
        norm_v=M.norm(x, v), log=M.log(x, y), dist=M.dist(x, y), dist_yx=M.dist(y, x),
        dist_xz=M.dist(x, z), dist_yz=M.dist(y, z), far=q * q > 16 * x[:, 0] * y[:, 0],
        viol_y=M._violation(y), tu=M.transp(x, y, u), tw=M.transp(x, y, w),
        inner_uw=M.inner(x, u, w), inner_t=M.inner(y, M.transp(x, y, u), M.transp(x, y, w)),
        t_log=M.transp(x, y, M.log(x, y)), log_yx=M.log(y, x),
        rg_u=M.inner(x, rgrad, u), ddir=ddir, pt=pt, pt_back=M.from_poincare(pt),
        dist_z=M.dist(z[1:], z[:-1]), ldet=M.log_det_exp(x, v))

  return jax.tree.map(np.asarray, run(jax.random.PRNGKey(0)))


def _onb_batch(x):
  """Orthonormal bases of T_x M (B, n, n+1), in jnp: e_i at the origin boosted to x (the
  boost is written out here, independently of Hyperbolic)."""
  x0, xs = x[:, :1], x[:, 1:]
  eye = jnp.eye(xs.shape[-1], dtype=x.dtype)
  # e_i + <x, e_i>_L / (1 + x0) (o + x), with <x, e_i>_L = x_i and o the origin
  spatial = eye[None] + (xs / (1.0 + x0))[:, :, None] * xs[:, None, :]
  return jnp.concatenate([xs[:, :, None], spatial], axis=-1)


def test_exp_lands_on_manifold_and_log_inverts_it(x64):
  g = _geometry(x64)
  eps = 2.2e-16 if x64 else 1.2e-7
  assert np.all(np.isfinite(g["y"])) and np.all(g["y"][:, 0] > 0)
  # On M to round-off relative to the coordinates (|y| up to ~e^20).
  assert g["viol_y"].max() <= 8 * eps
  np.testing.assert_allclose(g["norm_v"], g["r"], rtol=20 * eps, atol=20 * eps)
  # log inverts exp, relative to max(1, |v|); tangency of log in the Lorentz metric.
  err = np.sqrt(np.maximum(_np_minkowski(g["log"] - g["v"], g["log"] - g["v"]), 0))
  assert np.all(err <= (1e-12 if x64 else 2e-4) * np.maximum(1.0, g["r"])), err
  ip = np.abs(_np_minkowski(g["x"].astype(np.float64), g["log"].astype(np.float64)))
  assert np.all(ip <= 50 * eps * np.linalg.norm(g["x"], axis=-1) * np.linalg.norm(g["log"], axis=-1))
  np.testing.assert_allclose(g["dist"], g["r"], rtol=(1e-13 if x64 else 1e-5),
                             atol=(1e-13 if x64 else 1e-5))


def test_dist_against_mpmath_symmetry_triangle(x64):
  g = _geometry(x64)
  eps = 2.2e-16 if x64 else 1.2e-7
  ref = np.array([_mp_dist(a, b) for a, b in zip(g["x"], g["y"])])
  np.testing.assert_allclose(g["dist"], ref, rtol=64 * eps, atol=64 * eps)
  np.testing.assert_allclose(g["dist_yx"], g["dist"], rtol=16 * eps, atol=16 * eps)
  assert np.all(g["dist_xz"] <= g["dist"] + g["dist_yz"] + 64 * eps * (1 + g["r"].max()))
  # Both sides of the chord-formula switch (q^2 vs 16 x0 y0) are in this batch.
  assert g["far"].any() and (~g["far"]).any()


def test_dist_far_from_origin_near_points(f64):
  """Close points 15 away from the origin (coordinates ~ 1e6): the chord formula keeps the
  distance accurate to ~eps x0 (the points' own representation error), where
  acosh(x0 y0 - x'.y') would lose everything."""
  M = Hyperbolic(3)
  o = M.origin((6,))
  v = M.random_normal_tangent(jax.random.PRNGKey(2), o)
  x = M.exp(o, 15.0 * v / M.norm(o, v)[:, None])
  rho = jnp.asarray([1e-6, 1e-4, 1e-2, 0.3, 2.0, 5.0])
  y = _at_distance(M, x, rho, jax.random.PRNGKey(3))
  d = np.asarray(jax.jit(M.dist)(x, y))
  ref = np.array([_mp_dist(a, b) for a, b in zip(np.asarray(x), np.asarray(y))])
  x0 = np.asarray(x[:, 0])
  assert np.all(np.abs(d - ref) <= 20 * 2.2e-16 * x0), np.abs(d - ref) / x0


def test_to_tangent_and_egrad(x64):
  g = _geometry(x64)
  eps = 2.2e-16 if x64 else 1.2e-7
  x, p, z = (g[k].astype(np.float64) for k in ("x", "p_amb", "amb"))
  scale = np.linalg.norm(x, axis=-1) ** 2 * np.linalg.norm(z, axis=-1)
  assert np.all(np.abs(_np_minkowski(x, p)) <= 50 * eps * scale)  # tangent
  # z - P z is Lorentz-orthogonal to T_x M (a multiple of x): orthogonal to a basis of T_x.
  for i in range(_B):
    onb = _lorentz_onb(x[i])
    assert np.all(np.abs(_np_minkowski(onb, z[i] - p[i])) <= 100 * eps * scale[i])
  np.testing.assert_allclose(g["p_amb2"], g["p_amb"], atol=100 * eps * float(scale.max()))
  # Riemannian gradient: <grad f, u>_x = d/ds f(exp_x(s u)) at s = 0.
  np.testing.assert_allclose(g["rg_u"], g["ddir"], rtol=1e-4 if not x64 else 1e-10,
                             atol=1e-4 if not x64 else 1e-10)


def test_transport_preserves_metric(x64):
  g = _geometry(x64)
  # Transport over a geodesic of length r carries round-off ~eps e^r in ambient coordinates.
  near = g["r"] <= (8.0 if x64 else 4.0)
  tol = 1e-4 if not x64 else 1e-9
  y, tu = g["y"][near], g["tu"][near]
  # (`inner` itself is checked against the Minkowski product in an orthonormal basis below.)
  np.testing.assert_allclose(g["inner_t"][near], g["inner_uw"][near], rtol=tol, atol=tol)
  ip = _np_minkowski(y.astype(np.float64), tu.astype(np.float64))
  assert np.all(np.abs(ip) <= tol * np.linalg.norm(y, axis=-1) ** 2)
  # Along the geodesic the initial velocity goes to the final one: P log_x(y) = -log_y(x).
  np.testing.assert_allclose(g["t_log"][near], -g["log_yx"][near], rtol=tol, atol=10 * tol)


def test_inner_and_random_normal_tangent(x64):
  M = Hyperbolic(4)
  x = jnp.asarray(_geometry(x64)["z"][3])
  onb = _lorentz_onb(np.asarray(x))
  e = jnp.asarray(onb, x.dtype)
  num = 100_000

  @jax.jit
  def run(x):
    gram = M.inner(jnp.broadcast_to(x, (4, 4, 5)), e[:, None], e[None, :])
    return gram, M.random_normal_tangent(jax.random.PRNGKey(6), jnp.broadcast_to(x, (num, 5)))

  gram, v = run(x)
  # inner agrees with the Minkowski product on tangent vectors (orthonormal basis).
  np.testing.assert_allclose(gram, np.eye(4), atol=1e-5 if not x64 else 1e-12)
  # Standard normal: coordinates in an orthonormal basis have identity covariance.
  c = _np_minkowski(np.asarray(v, np.float64)[:, None, :], onb[None])  # (num, 4)
  cov = c.T @ c / num
  se = math.sqrt(2.0 / num)
  assert np.all(np.abs(cov - np.eye(4)) <= 5 * se * np.sqrt(1 + np.eye(4)))
  assert np.all(np.abs(c.mean(0)) <= 5 / math.sqrt(num))


def test_poincare_roundtrip(x64):
  g = _geometry(x64)
  tol = 1e-5 if not x64 else 1e-12
  assert np.all(np.sum(g["pt"] ** 2, -1) < 1)
  np.testing.assert_allclose(g["pt_back"], g["z"], rtol=tol, atol=tol)
  # The ball metric: d = acosh(1 + 2 |p - q|^2 / ((1 - |p|^2)(1 - |q|^2))).
  pn = g["pt"].astype(np.float64)
  num = 2 * np.sum((pn[1:] - pn[:-1]) ** 2, -1)
  den = (1 - np.sum(pn[1:] ** 2, -1)) * (1 - np.sum(pn[:-1] ** 2, -1))
  np.testing.assert_allclose(g["dist_z"], np.arccosh(1 + num / den),
                             rtol=1e-4 if not x64 else 1e-10)


def test_log_det_exp_against_jacobian(f64):
  g = _geometry(True)
  # Columns: images under d exp_x(v) of an orthonormal basis of T_x (boost of e_i, checked
  # against Gram-Schmidt here); |det| = sqrt(det of their Lorentz Gram matrix).
  for i in range(3):
    e = np.asarray(_onb_batch(jnp.asarray(g["x"][i:i + 1])))[0]
    np.testing.assert_allclose(np.array([[_np_minkowski(a, b) for b in e] for a in e]),
                               np.eye(4), atol=1e-12)
  jn = g["jac"]
  eta = np.diag([-1.0, 1, 1, 1, 1])
  sign, logdet = np.linalg.slogdet(np.einsum("bji,jk,bkl->bil", jn, eta, jn))
  assert np.all(sign > 0)
  ok = g["r"] <= 10.0  # beyond, the Gram matrix's condition (~e^{2r}) limits the reference
  np.testing.assert_allclose(g["ldet"][ok], 0.5 * logdet[ok], atol=1e-8)


def test_gradients_finite_at_coincident_points(x64):
  """(The even-n kernel's gradient at y = x is checked in test_heat_kernel_manifold_methods.)"""
  M = Hyperbolic(3)
  x = M.origin()

  @jax.jit
  def grads(x):
    fs = [lambda y: M.log_heat_kernel(x, y, 0.1), lambda y: M.dist(x, y),
          lambda y: jnp.sum(M.heat_kernel_score(x, y, 0.1))]
    return [jax.grad(f)(x) for f in fs] + [jax.grad(lambda v: jnp.sum(M.exp(x, v)))(0.0 * x)]

  for gr in grads(x):
    assert bool(jnp.all(jnp.isfinite(gr))), gr


# ----------------------------------------------------------------------------- heat kernel
_PAD = 64  # every kernel call below has this length: one compile per (n, dtype)
_KERNELS = {}


def _kernel(n, dtype):
  """jit'd (log p, c) of hk.log_kernel for fixed n and dtype."""
  if (n, dtype) not in _KERNELS:
    _KERNELS[(n, dtype)] = jax.jit(lambda r, t: hk.log_kernel(r, t, n, with_score=True))
  return _KERNELS[(n, dtype)]


def _eval_kernel(n, rho, t, dtype):
  k = len(rho)
  assert k <= _PAD
  r = np.zeros(_PAD)
  tt = np.ones(_PAD)
  r[:k], tt[:k] = rho, t
  lp, c = _kernel(n, dtype)(jnp.asarray(r, dtype), jnp.asarray(tt, dtype))
  return np.asarray(lp, np.float64)[:k], np.asarray(c, np.float64)[:k]


def _f32(v):
  """Grid values exactly representable in float32, so that float32 and float64 see the same
  inputs and share the (cached) references."""
  return float(np.float32(v))


def _grid(n, ts, rhos_fn):
  pts = []
  for t in ts:
    for r in rhos_fn(t):
      if r <= _rho_max(n, t):
        pts.append((_f32(r), _f32(t)))
  return sorted(set(pts))


# Regime switches on both sides: t = 1 (Bell scaling lam = min(t, 1)), r = 0.75 (Taylor vs
# upward recurrence when <= 4 H's are needed), r = 1.5 (Miller vs upward), r ~ 0 (series),
# plus rho = 20 and the largest rho with log p ~ -400.  Odd n = 15 exercises Miller at rho.
_T_ODD = [1e-4, 1e-2, 0.3, 0.999, 1.001, 5.0, 20.0]


def _rhos_odd(t):
  return [0.0, 1e-6, 0.3 * math.sqrt(t), math.sqrt(t), 0.74, 0.76, 1.49, 1.51, 3.0, 20.0]


# Even n (references are quadratures, so fewer points).  n = 2: the Gauss-Hermite route for
# t <= T_GH = 4 and the sinh-mapped quadrature above, both sides of T_GH; in the former the
# switch of R between its series (r < 2 and rho < 1) and closed form (rho = 0.99 / 1.01, and
# rho = 0.5, t = 1 where the nodes straddle r = 2).  The quadrature's own switches (core panel
# end min(x_core, 0.6 X), Gaussian bound vs exponential cap for the upper limit) are asserted
# to be on both sides below (n = 2: on its points with t > T_GH; t = 150 is under the cap).
_EVEN = {
    2: ([1e-4, 0.05, 1.0, 3.999, 4.001, 20.0, 150.0],
        lambda t: {1e-4: [0.0, _rho_max(2, t)], 0.05: [0.99, 1.01], 1.0: [0.5],
                   3.999: [0.0, 3.0], 4.001: [0.0, _rho_max(2, t)],
                   20.0: [20.0, _rho_max(2, t)], 150.0: [0.0]}[t]),
    4: ([1e-3, 0.3, 20.0], lambda t: {1e-3: [1e-6, _rho_max(4, t)], 0.3: [0.74, 1.51],
                                     20.0: [3.0]}[t]),
    10: ([1e-2, 0.999, 5.0], lambda t: {1e-2: [0.0], 0.999: [1.49], 5.0: [0.5]}[t]),
}


def _check_kernel(n, pts, x64):
  dtype = jnp.float64 if x64 else jnp.float32
  lp, c = _eval_kernel(n, [p[0] for p in pts], [p[1] for p in pts], dtype)
  assert np.all(np.isfinite(lp)) and np.all(np.isfinite(c))
  tol_lp, tol_c = (1e-6, 1e-5) if x64 else (1e-3, 1e-3)
  checked = 0
  for i, (rho, t) in enumerate(pts):
    ref_lp, ref_c = ref_heat(n, rho, t)
    if ref_lp < -500:
      continue
    checked += 1
    e_lp = abs(lp[i] - ref_lp) / max(1.0, abs(ref_lp))
    e_c = abs(c[i] / ref_c - 1.0)
    assert e_lp <= tol_lp and e_c <= tol_c, (n, rho, t, lp[i], ref_lp, c[i], ref_c)
  assert checked >= len(pts) // 2


@pytest.mark.parametrize("n,x64_only", [(3, False), (5, True), (7, False), (15, True)])
def test_heat_kernel_odd_against_mpmath(x64, n, x64_only):
  if x64_only and not x64:
    pytest.skip("float32 covered by n = 3, 7 (compile time)")
  _check_kernel(n, _grid(n, _T_ODD, _rhos_odd), x64)


@pytest.mark.parametrize("n,x64_only", [(2, False), (4, True), (10, False)])
def test_heat_kernel_even_against_mpmath(x64, n, x64_only):
  if x64_only and not x64:
    pytest.skip("float32 covered by n = 2, 10 (compile time)")
  pts = _grid(n, *_EVEN[n])
  _check_kernel(n, pts, x64)
  if x64:
    t_gh = hk._gh_params(jnp.float64)[1]
    assert hk._gh_params(jnp.float32)[1] == t_gh
    if n == 2:  # both routes; the quadrature's switches below on its own points
      assert any(p[1] <= t_gh for p in pts) and any(p[1] > t_gh for p in pts)
      pts = [p for p in pts if p[1] > t_gh]
    r = jnp.asarray([p[0] for p in pts])
    t = jnp.asarray([p[1] for p in pts])
    big_x, capped = hk.even_limits(r, t, n)
    _, _, _, x_core, frac = hk._quad_params(jnp.float64)
    core_short = np.asarray(frac * big_x < x_core)
    assert core_short.any() and (~core_short).any()
    assert np.asarray(capped).any() and (~np.asarray(capped)).any()


def test_heat_kernel_manifold_methods(f64):
  """log_heat_kernel / heat_kernel_score wire the radial kernel correctly: reference values
  at points with known distance, score = c * log_y(x), agreement with autodiff (also at
  y = x, where the gradient must be finite), and t broadcasting."""
  for n in (2, 3):
    M = Hyperbolic(n)
    x = _points(M, jax.random.PRNGKey(13), 4, 1.0, None)
    rho = jnp.asarray([0.0, 0.25, 1.0, 3.0])
    y = _at_distance(M, x, rho, jax.random.PRNGKey(14))
    t = jnp.asarray([0.25, 0.0625, 1.0, 2.0])

    @jax.jit
    def run(x, y, t):
      out = [M.log_heat_kernel(x, y, t), M.heat_kernel_score(x, y, t), M.dist(x, y),
             M.log(y, x)]
      if n == 3:  # autodiff through the Manifold method (even n: through the kernel below)
        out.append(M.egrad_to_rgrad(y, jax.vmap(jax.grad(M.log_heat_kernel, argnums=1))(x, y, t)))
      else:
        g = jax.vmap(jax.grad(lambda r, tt: hk.log_kernel(r, tt, n)))(rho, t)
        out.append(g)
      return out

    lp, s, d, lg, auto = (np.asarray(a, np.float64) for a in run(x, y, t))
    cs = []
    for i in range(4):
      ref_lp, ref_c = ref_heat(n, float(d[i]), float(t[i]))
      cs.append(ref_c)
      assert abs(lp[i] - ref_lp) <= 1e-8 * max(1, abs(ref_lp))
      np.testing.assert_allclose(s[i], ref_c * lg[i], rtol=1e-8, atol=1e-8)
    if n == 3:
      np.testing.assert_allclose(auto, s, rtol=1e-7, atol=1e-7)
    else:  # d log p / d rho = -rho c
      np.testing.assert_allclose(auto, -np.asarray(rho) * np.array(cs), rtol=1e-7, atol=1e-7)
    # t broadcasts against the batch: a scalar t and a (3, 1)-shaped t.
    assert jax.eval_shape(M.log_heat_kernel, x, y, 0.5).shape == (4,)
    assert jax.eval_shape(M.log_heat_kernel, x, y, jnp.ones((3, 1))).shape == (3, 4)
    assert jax.eval_shape(M.heat_kernel_score, x, y, jnp.ones((3, 1))).shape == (3, 4, n + 1)


@pytest.mark.parametrize("n", [2, 3])
def test_heat_equation_divergence_of_score(f64, n):
  """d/dt log p = (div score + |score|^2) / 2 (the heat equation for the generator Delta / 2):
  forward-mode derivatives of `heat_kernel_score` against reverse mode of `log_heat_kernel`
  in t, at y = x (up to 1e-9), moderate and far points; n = 2 on both sides of T_GH = 4."""
  from geogen.likelihood import divergence
  M = Hyperbolic(n)
  o = M.origin((3,))
  x = M.exp(o, 0.7 * M.random_normal_tangent(jax.random.PRNGKey(30), o))
  v = M.random_normal_tangent(jax.random.PRNGKey(31), x)
  y = M.exp(x, v / M.norm(x, v)[:, None] * jnp.asarray([1e-9, 0.8, 3.0])[:, None])

  @jax.jit  # one compilation for every t
  def sides(x, y, t):
    div = jax.vmap(lambda xi, yi: divergence(
        M, lambda yy, _: M.heat_kernel_score(xi, yy, t), yi, 0.0))(x, y)
    sc = M.heat_kernel_score(x, y, t)
    dt = jax.vmap(jax.grad(lambda tt, a, b: M.log_heat_kernel(a, b, tt)), (None, 0, 0))(t, x, y)
    return dt, 0.5 * (div + M.inner(y, sc, sc))

  for t in (0.05, 1.0, 3.9, 4.1, 10.0):
    dt, rhs = sides(x, y, jnp.asarray(t))
    np.testing.assert_allclose(np.asarray(dt), np.asarray(rhs), rtol=1e-7,
                               atol=1e-7 * float(np.max(np.abs(np.asarray(dt)))))


@pytest.mark.parametrize("n", [2, 3, 10])
def test_heat_kernel_float32_never_nan(n):
  """float32: no NaN/inf for t -> 0, large t, y = x, rho = 20, rho up to ~80."""
  rho = [0.0, 1e-7, 1e-3, 0.5, 1.5, 5.0, 20.0, 80.0]
  ts = [1e-7, 1e-4, 1.0, 20.0, 1e3, 1e5]
  lp, c = _eval_kernel(n, rho * len(ts), [t for t in ts for _ in rho], jnp.float32)
  assert np.all(np.isfinite(lp)) and np.all(np.isfinite(c)) and np.all(c > 0)


# ----------------------------------------------------------------------------- sampler
def _radial_logpdf_closed(n, rho, t):
  """log of vol(S^2) sinh^2 rho p_t(rho) for n = 3 (closed form)."""
  assert n == 3
  rho = np.asarray(rho, np.float64)
  logp = -1.5 * np.log(2 * np.pi * t) + np.log(rho / np.sinh(rho)) - t / 2 - rho**2 / (2 * t)
  return math.log(4 * math.pi) + 2 * np.log(np.sinh(rho)) + logp


def _radial_logpdf_mckean(rho, t):
  """n = 2: log of 2 pi sinh(rho) p_t(rho), McKean's integral by scipy quadrature in
  s = cosh r - cosh rho = sig^2 (which removes the 1/sqrt(s) singularity)."""
  out = []
  for r0 in np.asarray(rho, np.float64):
    u = math.cosh(r0)

    def integrand(sig):  # 2 (r / sinh r) exp(-r^2 / 2t) at cosh r = u + sig^2
      w = u + sig * sig
      r = math.acosh(w)
      return 2 * (r / math.sqrt(w * w - 1) if w > 1 else 1.0) * math.exp(-r * r / (2 * t))

    val = scipy.integrate.quad(integrand, 0, np.inf, epsabs=0, epsrel=1e-11, limit=200)[0]
    out.append(math.log(math.sqrt(2) * math.exp(-t / 8) * (2 * math.pi * t) ** -1.5 * val))
  return math.log(2 * math.pi) + np.log(np.sinh(np.asarray(rho))) + np.array(out)


def _ks_pvalue(samples, n, t):
  """KS test of the radius samples against the CDF integrated from the reference density."""
  hi = float(np.max(samples)) * 1.2 + 1e-3
  grid = np.linspace(1e-9, hi, 401)
  logpdf = _radial_logpdf_closed(3, grid, t) if n == 3 else _radial_logpdf_mckean(grid, t)
  cdf = scipy.integrate.cumulative_simpson(np.exp(logpdf), x=grid, initial=0.0)
  assert abs(cdf[-1] - 1) < 1e-6, cdf[-1]  # the reference density is normalized
  return scipy.stats.kstest(samples, lambda s: np.interp(s, grid, cdf)).pvalue


# (n, ts) for the moment test; the first t of each also gets a KS test (n = 2, 3).
_SAMPLER_CASES = [(2, [0.5, 1e-3, 5.0]), (3, [2.0, 0.01]), (5, [0.05, 1.0])]


@pytest.mark.parametrize("n,ts", _SAMPLER_CASES)
def test_sampler_moments_and_ks(f64, n, ts):
  M = Hyperbolic(n)
  num = 100_000
  x = _points(M, jax.random.PRNGKey(15), 1, 1.0, None)[0]
  onb = jnp.asarray(_lorentz_onb(np.asarray(x)))

  @jax.jit
  def draw(key, t):
    y = M.sample_heat_kernel(key, x, t)
    w = M.log(x, y)
    # distance, membership, and the unit direction in an orthonormal frame of T_x
    return M.dist(x, y), M.belongs(y), _frame(w, onb) / M.norm(x, w)[:, None]

  d, ok, u = draw(jax.random.PRNGKey(16 + n), jnp.repeat(jnp.asarray(ts), num))
  assert bool(jnp.all(ok)) and bool(jnp.all(jnp.isfinite(d)))
  d = np.asarray(d).reshape(len(ts), num)
  for i, t in enumerate(ts):
    c = np.cosh(d[i])
    se = c.std() / math.sqrt(num)
    assert abs(c.mean() - math.exp(n * t / 2)) <= 5 * se, (n, t, c.mean(), math.exp(n * t / 2), se)
  if n <= 3:
    assert _ks_pvalue(d[0], n, ts[0]) > 1e-3
  # The direction is uniform: the mean unit direction (orthonormal frame) is ~0.
  u = np.asarray(u)[:num]
  assert np.all(np.abs(u.mean(0)) <= 5 / math.sqrt(n * num))


def _frame(w, onb):
  """Coordinates of tangent vectors w (..., n+1) in the orthonormal basis onb (n, n+1)."""
  return -w[..., None, 0] * onb[:, 0] + jnp.sum(w[..., None, 1:] * onb[:, 1:], axis=-1)


def test_sampler_float32():
  """float32 sampler: a batch of two base points, t = 0.3 and 3 (moments, KS), plus t = 1e-6
  and 20 (finite)."""
  M = Hyperbolic(2)
  num = 100_000
  xs = _points(M, jax.random.PRNGKey(17), 2, 0.5, jnp.float32)
  x = jnp.tile(xs, (num + 16, 1))  # alternating base points
  t = jnp.concatenate([jnp.full((num,), 0.3), jnp.full((num,), 3.0), jnp.full((16,), 1e-6),
                       jnp.full((16,), 20.0)]).astype(jnp.float32)

  @jax.jit
  def draw(key, x, t):
    y = M.sample_heat_kernel(key, x, t)
    return y, M.dist(x, y)

  y, d = draw(jax.random.PRNGKey(18), x, t)
  assert y.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(y)))
  d = np.asarray(d, np.float64)
  for i, tt in enumerate((0.3, 3.0)):
    c = np.cosh(d[i * num:(i + 1) * num])
    assert abs(c.mean() - math.exp(tt)) <= 5 * c.std() / math.sqrt(num)
  assert _ks_pvalue(d[:num], 2, 0.3) > 1e-3
