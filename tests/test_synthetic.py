"""Tests of geogen.data.synthetic: exact normalization, samplers against densities, entropies.

References are independent of the code under test: mpmath Bessel functions, quadrature on
grids written here (Gauss-Legendre / periodic trapezoid / polar coordinates on H^2 / the Weyl
integration formula on SU(n)), importance sampling from uniform laws generated here, and
closed-form laws of 1-D statistics (KS tests).  Monte Carlo checks are at 5 standard errors.
"""
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from scipy import integrate, stats

from geogen.data import synthetic as S
from manifolds.flat import Torus
from manifolds.hyperbolic import Hyperbolic
from manifolds.special_unitary import SpecialUnitary
from manifolds.sphere import Sphere

mpmath.mp.dps = 30
KEY = jax.random.PRNGKey(0)


def _within(est, ref, se, k=5.0):
  assert abs(est - ref) <= k * se + 1e-12, f"{est} vs {ref}: {abs(est - ref) / se:.2f} s.e."


def _mp_log_iv(nu, x):
  return float(mpmath.log(mpmath.besseli(nu, x)))


def _log_vol_sphere(n):  # independent of the module
  return float(mpmath.log(2 * mpmath.pi ** (mpmath.mpf(n + 1) / 2) / mpmath.gamma(
      mpmath.mpf(n + 1) / 2)))


def _lp(dist, x):
  return np.asarray(jax.jit(dist.log_prob)(jnp.asarray(x)), np.float64)


# ============================================================================ Bessel numerics
@pytest.mark.parametrize("nu,x", [(0, 1e-3), (0.5, 20.0), (7, 0.1), (7, 5.0), (7, 1e4),
                                  (511, 1.0), (511, 1000.0), (3.5, 700.0), (0, 1e5)])
def test_log_bessel_iv_matches_mpmath(nu, x):
  assert S.log_bessel_iv(nu, x) == pytest.approx(_mp_log_iv(nu, x), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("n,kappa", [(2, 20.0), (15, 4.0), (1023, 1.0), (1023, 3000.0)])
def test_vmf_density_at_mean_matches_mpmath(f64, n, kappa):
  mu = np.zeros(n + 1)
  mu[0] = 1.0
  d = S.vmf_mixture(Sphere(n), mu[None], kappa)
  nu = mpmath.mpf(n - 1) / 2
  ref = (nu * mpmath.log(kappa) - (nu + 1) * mpmath.log(2 * mpmath.pi)
         - mpmath.log(mpmath.besseli(nu, kappa)) + kappa)
  assert _lp(d, mu[None])[0] == pytest.approx(float(ref), rel=1e-12, abs=1e-10)


# ============================================================================ vMF on spheres
def _s2_grid(num=300):
  t, wt = np.polynomial.legendre.leggauss(num)
  phi = 2 * np.pi * np.arange(num) / num
  tt, pp = np.meshgrid(t, phi, indexing="ij")
  s = np.sqrt(1 - tt**2)
  x = np.stack([s * np.cos(pp), s * np.sin(pp), tt], -1).reshape(-1, 3)
  w = (wt[:, None] * np.full(num, 2 * np.pi / num)[None, :]).reshape(-1)
  return x, w


def test_vmf_s2_normalizes_and_entropy_by_quadrature(f64):
  rng = np.random.default_rng(1)
  mu = rng.standard_normal((3, 3))
  d = S.vmf_mixture(Sphere(2), mu, [5.0, 20.0, 50.0], weights=[0.5, 0.3, 0.2])
  x, w = _s2_grid()
  lp = _lp(d, x)
  p = np.exp(lp)
  assert np.sum(w * p) == pytest.approx(1.0, abs=1e-10)
  h_quad = -np.sum(w * p * lp)
  h, se = d.entropy(num=40_000)
  assert 0 < se < 0.01
  _within(h, h_quad, se)
  # closed-form entropy of one component against the quadrature
  d1 = S.vmf_mixture(Sphere(2), mu[:1], 7.0)
  lp1 = _lp(d1, x)
  assert d1.entropy()[0] == pytest.approx(-np.sum(w * np.exp(lp1) * lp1), abs=1e-10)
  assert d1.entropy()[1] == 0.0


def test_vmf_s15_normalizes_by_importance_sampling(f64):
  n = 15
  rng = np.random.default_rng(2)
  mu = rng.standard_normal((2, n + 1))
  d = S.vmf_mixture(Sphere(n), mu, [3.0, 6.0])
  u = rng.standard_normal((200_000, n + 1))
  u /= np.linalg.norm(u, axis=-1, keepdims=True)
  ratio = np.exp(_lp(d, u) + _log_vol_sphere(n))
  _within(ratio.mean(), 1.0, ratio.std() / math.sqrt(u.shape[0]))
  assert ratio.std() / math.sqrt(u.shape[0]) < 0.02


def test_vmf_s2_sampler_ks_against_exact_cdf(x64):
  kappa = 10.0
  mu = np.array([0.3, -0.4, 0.5])
  d = S.vmf_mixture(Sphere(2), mu[None], kappa)
  x = d.sample(KEY, 20_000)
  assert x.shape == (20_000, 3) and x.dtype == Sphere(2).dtype
  t = np.asarray(x, np.float64) @ (mu / np.linalg.norm(mu))
  # on S^2, t = <mu, X> has density kappa e^{kappa t} / (2 sinh kappa)
  cdf = lambda s: np.expm1(kappa * (s + 1)) / np.expm1(2 * kappa)
  assert stats.kstest(t, cdf).pvalue > 1e-3


def test_vmf_s15_sampler_mean_and_ks_against_density(f64):
  n, kappa = 15, 8.0
  mu = np.zeros(n + 1)
  mu[3] = 1.0
  d = S.vmf_mixture(Sphere(n), mu[None], kappa)
  x = np.asarray(d.sample(KEY, 20_000))
  np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1.0, atol=1e-12)
  t = x @ mu
  a_ref = float(mpmath.besseli((n + 1) / 2, kappa) / mpmath.besseli((n - 1) / 2, kappa))
  _within(t.mean(), a_ref, t.std() / math.sqrt(t.size))
  # CDF of t from the module's log-density along a meridian:
  # f_t(s) = p(s mu + sqrt(1 - s^2) e) vol(S^{n-1}) (1 - s^2)^((n-2)/2)
  s = np.linspace(-1, 1, 20001)
  e = np.zeros(n + 1)
  e[0] = 1.0
  pts = s[:, None] * mu + np.sqrt(1 - s**2)[:, None] * e
  f = np.exp(_lp(d, pts) + _log_vol_sphere(n - 1)) * (1 - s**2) ** ((n - 2) / 2)
  cdf_grid = integrate.cumulative_trapezoid(f, s, initial=0.0)
  assert cdf_grid[-1] == pytest.approx(1.0, abs=1e-6)
  assert stats.kstest(t, lambda q: np.interp(q, s, cdf_grid)).pvalue > 1e-3
  # closed-form entropy against Monte Carlo with the exact log-density
  lp = _lp(d, x)
  _within(d.entropy()[0], -lp.mean(), lp.std() / math.sqrt(lp.size))


def test_vmf_mixture_sample_mean(f64):
  rng = np.random.default_rng(3)
  mu = rng.standard_normal((3, 3))
  mu /= np.linalg.norm(mu, axis=-1, keepdims=True)
  kappas, w = np.array([2.0, 10.0, 30.0]), np.array([0.2, 0.3, 0.5])
  d = S.vmf_mixture(Sphere(2), mu, kappas, weights=w)
  x = np.asarray(d.sample(jax.random.PRNGKey(5), 40_000))
  a = np.array([1 / math.tanh(k) - 1 / k for k in kappas])  # A_2(kappa), closed form on S^2
  ref = (w * a) @ mu
  for j in range(3):
    _within(x[:, j].mean(), ref[j], x[:, j].std() / math.sqrt(len(x)))


# ============================================================================ von Mises on tori
def test_von_mises_t2_normalizes_and_entropy_by_quadrature(f64):
  rng = np.random.default_rng(4)
  m = rng.uniform(-np.pi, np.pi, (3, 2))
  d = S.von_mises_product(Torus(2), m, [2.0, 8.0, 30.0])
  g = -np.pi + 2 * np.pi * np.arange(256) / 256
  x = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
  cell = (2 * np.pi / 256) ** 2
  lp = _lp(d, x)
  p = np.exp(lp)
  assert np.sum(p) * cell == pytest.approx(1.0, abs=1e-12)
  h, se = d.entropy(num=40_000)
  _within(h, -np.sum(p * lp) * cell, se)


def test_von_mises_t1_entropy_closed_form(f64):
  d = S.von_mises_product(Torus(1), [[0.7]], 3.0)
  g = -np.pi + 2 * np.pi * np.arange(512) / 512
  lp = _lp(d, g[:, None])
  assert np.sum(np.exp(lp)) * 2 * np.pi / 512 == pytest.approx(1.0, abs=1e-13)
  assert d.entropy()[0] == pytest.approx(-np.sum(np.exp(lp) * lp) * 2 * np.pi / 512, abs=1e-12)


def test_von_mises_t4_normalizes_by_importance_sampling(f64):
  rng = np.random.default_rng(5)
  d = S.von_mises_product(Torus(4), rng.uniform(-np.pi, np.pi, (3, 4)), 2.0)
  u = rng.uniform(-np.pi, np.pi, (200_000, 4))
  ratio = np.exp(_lp(d, u)) * (2 * np.pi) ** 4
  se = ratio.std() / math.sqrt(len(u))
  assert se < 0.02
  _within(ratio.mean(), 1.0, se)


def test_von_mises_sampler_moments_and_ks(x64):
  kappa = 4.0
  m = np.array([0.5, -2.0, 3.1, -3.1])
  d = S.von_mises_product(Torus(4), m[None], kappa)
  x = d.sample(KEY, 20_000)
  assert x.dtype == Torus(4).dtype
  x = np.asarray(x, np.float64)
  assert np.all(x >= -np.pi) and np.all(x < np.pi)
  c = np.cos(x - m)
  ref = float(mpmath.besseli(1, kappa) / mpmath.besseli(0, kappa))
  for j in range(4):
    _within(c[:, j].mean(), ref, c[:, j].std() / math.sqrt(len(c)))
  # KS of the first angle against the von Mises CDF by quadrature
  i0 = float(mpmath.besseli(0, kappa))
  dens = lambda a: math.exp(kappa * math.cos(a - m[0])) / (2 * math.pi * i0)
  grid = np.linspace(-np.pi, np.pi, 2001)
  cdf = np.concatenate([[0.0], np.cumsum([integrate.quad(dens, a, b)[0]
                                          for a, b in zip(grid[:-1], grid[1:])])])
  assert cdf[-1] == pytest.approx(1.0, abs=1e-12)
  assert stats.kstest(x[:, 0], lambda q: np.interp(q, grid, cdf)).pvalue > 1e-3


# ============================================================================ wrapped normal on H^n
def _lorentz(a, b):
  return -a[..., 0] * b[..., 0] + np.sum(a[..., 1:] * b[..., 1:], -1)


def _h2_polar_grid(rmax=14.0, nr=500, nphi=400):
  r, wr = np.polynomial.legendre.leggauss(nr)
  r = 0.5 * rmax * (r + 1)
  wr = 0.5 * rmax * wr
  phi = 2 * np.pi * np.arange(nphi) / nphi
  rr, pp = np.meshgrid(r, phi, indexing="ij")
  x = np.stack([np.cosh(rr), np.sinh(rr) * np.cos(pp), np.sinh(rr) * np.sin(pp)], -1)
  w = (wr[:, None] * np.sinh(rr) * 2 * np.pi / nphi)
  return x.reshape(-1, 3), w.reshape(-1)


def test_wrapped_normal_h2_normalizes_and_entropy_by_quadrature(f64):
  rng = np.random.default_rng(6)
  dirs = rng.standard_normal((3, 2))
  dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
  means = S.hyperbolic_point(dirs, [0.5, 1.0, 1.5])
  d = S.wrapped_normal_mixture(Hyperbolic(2), means, [0.3, 0.5, 0.8])
  x, w = _h2_polar_grid()
  lp = _lp(d, x)
  p = np.exp(lp)
  assert np.sum(w * p) == pytest.approx(1.0, abs=1e-9)
  h, se = d.entropy(num=40_000)
  _within(h, -np.sum(w * p * lp), se)
  # sample mean of the ambient coordinates against the quadrature of the density
  y = np.asarray(d.sample(KEY, 40_000))
  np.testing.assert_allclose(_lorentz(y, y), -1.0, atol=1e-10)
  for j in range(3):
    _within(y[:, j].mean(), np.sum(w * p * x[:, j]), y[:, j].std() / math.sqrt(len(y)))
  # closed-form (1-D quadrature) entropy of a single component against the grid
  d1 = S.wrapped_normal_mixture(Hyperbolic(2), means[1:2], 0.6)
  lp1 = _lp(d1, x)
  assert d1.entropy()[0] == pytest.approx(-np.sum(w * np.exp(lp1) * lp1), abs=1e-8)


def test_wrapped_normal_h5_normalizes_by_importance_sampling(f64):
  n = 5
  rng = np.random.default_rng(7)
  dirs = rng.standard_normal((3, n))
  dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
  d = S.wrapped_normal_mixture(Hyperbolic(n), S.hyperbolic_point(dirs, 1.0), 0.8)
  # proposal: rho ~ half-normal(tau), uniform direction; q = g(rho) / (|S^{n-1}| sinh^{n-1} rho)
  num, tau = 200_000, 2.0
  rho = np.abs(rng.standard_normal(num)) * tau
  u = rng.standard_normal((num, n))
  u /= np.linalg.norm(u, axis=-1, keepdims=True)
  y = np.concatenate([np.cosh(rho)[:, None], np.sinh(rho)[:, None] * u], -1)
  log_g = 0.5 * math.log(2 / math.pi) - math.log(tau) - rho**2 / (2 * tau**2)
  log_q = log_g - _log_vol_sphere(n - 1) - (n - 1) * np.log(np.sinh(rho))
  ratio = np.exp(_lp(d, y) - log_q)
  se = ratio.std() / math.sqrt(num)
  assert se < 0.05
  _within(ratio.mean(), 1.0, se)


def test_wrapped_normal_matches_manifold_exp_jacobian(f64):
  # log p(exp_mu v) = log N(v) - log_det_exp(mu, v), with the manifold's own exp / Jacobian
  n, s = 4, 0.6
  m = Hyperbolic(n)
  mu = S.hyperbolic_point(np.array([0.0, 0.6, 0.0, -0.8]), 2.0)
  d = S.wrapped_normal_mixture(m, mu[None], s)
  rng = np.random.default_rng(11)
  try:
    v = np.array(m.to_tangent(jnp.asarray(mu), jnp.asarray(rng.standard_normal((500, n + 1)))))
    v *= (rng.uniform(0.0, 4.0, 500) / np.sqrt(np.maximum(_lorentz(v, v), 1e-300)))[:, None]
    y = m.exp(jnp.asarray(mu), jnp.asarray(v))
    ldj = np.asarray(m.log_det_exp(jnp.asarray(mu), jnp.asarray(v)))
  except NotImplementedError:
    pytest.skip("Hyperbolic geometry not available yet")
  r2 = _lorentz(v, v)
  ref = -0.5 * n * math.log(2 * math.pi * s * s) - r2 / (2 * s * s) - ldj
  np.testing.assert_allclose(_lp(d, y), ref, rtol=1e-10, atol=1e-10)


def test_wrapped_normal_sampler_distance_law(x64):
  n, s = 3, 0.7
  mu = S.hyperbolic_point(np.array([0.6, 0.0, -0.8]), 1.2)
  d = S.wrapped_normal_mixture(Hyperbolic(n), mu[None], s)
  y = d.sample(KEY, 20_000)
  assert y.dtype == Hyperbolic(n).dtype
  y = np.asarray(y, np.float64)
  r = np.arccosh(np.maximum(-_lorentz(y, mu), 1.0))
  # the geodesic distance to the mean is s * chi_n
  assert stats.kstest(r / s, stats.chi(n).cdf).pvalue > 1e-3
  if jax.config.jax_enable_x64:
    # and its CDF from the module's density along a geodesic, times |S^{n-1}| sinh^{n-1}
    e = np.array([0.0, 1.0, 0.5, 0.2])
    u = e + _lorentz(mu, e) * mu
    u /= math.sqrt(_lorentz(u, u))
    grid = np.linspace(0, 8, 20001)
    pts = np.cosh(grid)[:, None] * mu + np.sinh(grid)[:, None] * u
    f = np.exp(_lp(d, pts) + _log_vol_sphere(n - 1)) * np.sinh(grid) ** (n - 1)
    cdf = integrate.cumulative_trapezoid(f, grid, initial=0.0)
    assert cdf[-1] == pytest.approx(1.0, abs=1e-6)
    assert stats.kstest(r, lambda q: np.interp(q, grid, cdf)).pvalue > 1e-3


# ============================================================================ SU(n)
def _weyl(n, beta, num, funcs=()):
  """Z(beta) and E[f(theta)] under exp(beta Re tr U) dHaar by the Weyl integration formula
  (eigen-angles theta_1..theta_{n-1} on a periodic trapezoid grid, theta_n = -sum)."""
  g = 2 * np.pi * np.arange(num) / num
  th = np.stack(np.meshgrid(*([g] * (n - 1)), indexing="ij"), -1).reshape(-1, n - 1)
  th = np.concatenate([th, -th.sum(-1, keepdims=True)], -1)
  z = np.exp(1j * th)
  vdm = np.ones(len(th))
  for j in range(n):
    for k in range(j + 1, n):
      vdm *= np.abs(z[:, j] - z[:, k]) ** 2
  wgt = vdm * np.exp(beta * (np.cos(th).sum(-1) - n))
  log_z = math.log(wgt.mean() / math.factorial(n)) + n * beta
  return log_z, [np.sum(wgt * f(z)) / np.sum(wgt) for f in funcs]


def _haar_su_test(rng, m, n):
  """Haar SU(n): QR with the phase fix, then divide by a root of the determinant."""
  z = rng.standard_normal((m, n, n)) + 1j * rng.standard_normal((m, n, n))
  q, r = np.linalg.qr(z)
  dg = np.diagonal(r, axis1=-2, axis2=-1)
  q = q * (dg / np.abs(dg))[:, None, :]
  return q / np.linalg.det(q)[:, None, None] ** (1.0 / n)


def test_su_log_volume():
  # SU(2) with Re tr(X^H Y) is the 3-sphere of radius sqrt(2): vol = 2 pi^2 * 2^(3/2)
  assert S.su_log_volume(2) == pytest.approx(math.log(2 * math.pi**2 * 2**1.5), rel=1e-14)
  # vol(SU(n)) = vol(U(n)) sqrt(n) / (2 pi), vol(U(n)) = (2 pi)^(n(n+1)/2) / prod_{k<n} k!
  for n in (3, 4, 5):
    log_u = n * (n + 1) / 2 * math.log(2 * math.pi) - sum(math.lgamma(k + 1) for k in range(n))
    assert S.su_log_volume(n) == pytest.approx(log_u + 0.5 * math.log(n)
                                               - math.log(2 * math.pi), rel=1e-14)


@pytest.mark.parametrize("beta", [0.0, 0.7, 2.5, 6.0])
def test_su3_partition_function_two_ways(beta):
  log_z, dlog_z, bound = S.su_log_partition(3, beta)
  ref, (mean_re_tr,) = _weyl(3, beta, 96, [lambda z: np.real(z).sum(-1)])
  assert bound < 1e-15
  assert log_z == pytest.approx(ref, abs=1e-12)
  assert dlog_z == pytest.approx(mean_re_tr, abs=1e-10)


def test_su2_su4_partition_function():
  for beta in (0.3, 2.0, 9.0):
    # SU(2): Z = I_1(2 beta) / beta
    ref = float(mpmath.log(mpmath.besseli(1, 2 * beta) / beta))
    assert S.su_log_partition(2, beta)[0] == pytest.approx(ref, abs=1e-13)
  ref, (m,) = _weyl(4, 2.0, 40, [lambda z: np.real(z).sum(-1)])
  log_z, dlog_z, _ = S.su_log_partition(4, 2.0)
  assert log_z == pytest.approx(ref, abs=1e-12)
  assert dlog_z == pytest.approx(m, abs=1e-10)
  assert _weyl(3, 0.0, 16)[0] == pytest.approx(0.0, abs=1e-13)  # the Weyl reference itself


def test_su3_mixture_normalizes_under_haar(f64):
  n = 3
  rng = np.random.default_rng(8)
  c = _haar_su_test(rng, 3, n)
  d = S.su_mixture(SpecialUnitary(n), c, 2.0, weights=[0.2, 0.3, 0.5])
  u = _haar_su_test(rng, 100_000, n)
  log_vol = (0.5 * math.log(n) + (n * n + n - 2) / 2 * math.log(2 * math.pi)
             - math.log(math.factorial(1) * math.factorial(2)))
  ratio = np.exp(_lp(d, u) + log_vol)   # Haar density of the mixture
  se = ratio.std() / math.sqrt(len(u))
  assert se < 0.02
  _within(ratio.mean(), 1.0, se)


@pytest.mark.parametrize("n,beta,method", [(3, 0.25, "haar"), (3, 3.0, "gaussian"),
                                           (2, 4.0, "gaussian"), (4, 2.0, "gaussian")])
def test_su_sampler_moments(f64, n, beta, method):
  rng = np.random.default_rng(9)
  c = _haar_su_test(rng, 1, n)
  d = S.su_mixture(SpecialUnitary(n), c, beta)
  assert d.sampler(0).method == method
  u = np.asarray(d.sample(KEY, 20_000))
  np.testing.assert_allclose(u @ np.conj(np.swapaxes(u, -1, -2)), np.broadcast_to(np.eye(n),
                                                                                  u.shape),
                             atol=1e-12)
  np.testing.assert_allclose(np.linalg.det(u), 1.0, atol=1e-12)
  w = np.conj(np.swapaxes(c, -1, -2)) @ u
  ev = np.linalg.eigvals(w)
  funcs = [lambda z: np.real(z).sum(-1), lambda z: np.abs(z.sum(-1)) ** 2,
           lambda z: np.real(z**2).sum(-1)]
  _, refs = _weyl(n, beta, 96 if n < 4 else 40, funcs)
  for f, ref in zip(funcs, refs):
    v = f(ev)
    _within(v.mean(), ref, v.std() / math.sqrt(len(v)))
  # E Re tr(C^H U) = d log Z / d beta, and the closed-form entropy against Monte Carlo
  _within(np.real(np.trace(w, axis1=-2, axis2=-1)).mean(), d.dlog_z[0],
          np.real(np.trace(w, axis1=-2, axis2=-1)).std() / math.sqrt(len(w)))
  lp = _lp(d, u)
  _within(d.entropy()[0], -lp.mean(), lp.std() / math.sqrt(len(lp)))
  if n == 2:
    # SU(2) as S^3 (radius sqrt 2): w0 = Re tr W / 2 has density prop. e^{2 beta t} sqrt(1-t^2)
    t = np.real(np.trace(w, axis1=-2, axis2=-1)) / 2
    dens = lambda s: math.exp(2 * beta * (s - 1)) * math.sqrt(max(1 - s * s, 0.0))
    grid = np.linspace(-1, 1, 2001)
    cdf = np.concatenate([[0.0], np.cumsum([integrate.quad(dens, a, b)[0]
                                            for a, b in zip(grid[:-1], grid[1:])])])
    assert stats.kstest(t, lambda q: np.interp(q, grid, cdf / cdf[-1])).pvalue > 1e-3


def test_su_gaussian_proposal_acceptance_matches_formula():
  # The exact acceptance (Mehta normalizer, Jacobian of exp, Z) against the observed rate.
  for n, beta in ((3, 3.0), (4, 2.0)):
    sampler = S.su_mixture(SpecialUnitary(n), np.eye(n)[None], beta).sampler(0)
    assert sampler.method == "gaussian" and sampler.acceptance > 0.3
    rng = np.random.default_rng(10)
    h = sampler._gaussian_proposal(rng, 100_000)
    lr = sampler.log_ratio(np.linalg.eigvalsh(h))
    a = np.exp(lr - sampler.log_m)
    assert np.max(lr) <= sampler.log_m
    _within(a.mean(), sampler.acceptance, a.std() / math.sqrt(len(a)))


# ======================================================================= make, config, dtypes
CASES = [("synthetic/vmf_mixture", Sphere(2)), ("synthetic/von_mises", Torus(4)),
         ("synthetic/wrapped_normal", Hyperbolic(2)), ("synthetic/su_mixture", SpecialUnitary(3))]


def test_default_config_and_make_errors():
  cfg = S.default_config()
  for k in ("kind", "num_components", "concentration", "scale", "spread", "beta", "seed"):
    assert k in cfg
  assert S.default_synthetic_config().to_dict() == cfg.to_dict()
  with pytest.raises(ValueError, match="Sphere"):
    S.make("synthetic/vmf_mixture", Torus(2), cfg, KEY)
  with pytest.raises(ValueError, match="SpecialUnitary"):
    S.make("synthetic/su_mixture", Sphere(3), cfg, KEY)
  with pytest.raises(ValueError, match="Hyperbolic"):
    S.make("synthetic/wrapped_normal", Sphere(2), cfg, KEY)
  with pytest.raises(ValueError, match="Torus"):
    S.make("synthetic/von_mises", Hyperbolic(2), cfg, KEY)
  with pytest.raises(ValueError, match="valid"):
    S.make("synthetic/nope", Sphere(2), cfg, KEY)
  bad = S.default_config()
  bad.kind = "von_mises"
  with pytest.raises(ValueError, match="agree"):
    S.make("synthetic/vmf_mixture", Sphere(2), bad, KEY)
  with pytest.raises(ValueError, match="num_components"):
    S.make("synthetic/vmf_mixture", Sphere(2), {"num_components": 0}, KEY)


def test_make_placement_seed():
  cfg = S.default_config()
  a = S.make("synthetic/vmf_mixture", Sphere(2), cfg, jax.random.PRNGKey(1))
  b = S.make("synthetic/vmf_mixture", Sphere(2), cfg, jax.random.PRNGKey(2))
  np.testing.assert_array_equal(a.means, b.means)          # placement from cfg.seed
  cfg.seed = -1
  a = S.make("synthetic/vmf_mixture", Sphere(2), cfg, jax.random.PRNGKey(1))
  b = S.make("synthetic/vmf_mixture", Sphere(2), cfg, jax.random.PRNGKey(2))
  assert not np.allclose(a.means, b.means)                  # placement from the key
  assert a.means.shape == (cfg.num_components, 3)
  # sampling is deterministic in the key
  np.testing.assert_array_equal(np.asarray(a.sample(KEY, 50)), np.asarray(a.sample(KEY, 50)))


@pytest.mark.parametrize("name,manifold", CASES)
def test_make_dtypes_jit_grad(x64, name, manifold):
  d = S.make(name, manifold, S.default_config(), KEY)
  assert d.name == name
  x = d.sample(KEY, 64)
  assert x.shape == (64,) + manifold.shape and x.dtype == manifold.dtype
  try:
    manifold.check(x)
  except NotImplementedError:   # the manifold's constraint check is not written yet
    pass
  lp = d.log_prob(x)      # compiled inside; outer jit / grad below
  real = jnp.float64 if x64 else jnp.float32
  assert lp.shape == (64,) and lp.dtype == real and bool(jnp.all(jnp.isfinite(lp)))
  # jit(grad) is finite, also at a component location itself (distance 0)
  y = jnp.concatenate([x[:63], jnp.asarray(d.means[:1], manifold.dtype)])
  fn = jax.jit(jax.value_and_grad(lambda z: jnp.sum(d.log_prob(z))))
  val, g = fn(y)
  assert bool(jnp.all(jnp.isfinite(jnp.abs(g)))) and bool(jnp.isfinite(val))
  # batching over several leading axes
  assert d.log_prob(x.reshape((8, 8) + manifold.shape)).shape == (8, 8)
  assert d.entropy(num=256)[1] > 0   # 4 components x 64 draws


@pytest.mark.parametrize("name,manifold", CASES)
def test_float32_log_prob_matches_float64(f64, name, manifold):
  d = S.make(name, manifold, S.default_config(), KEY)
  x = np.asarray(d.sample(KEY, 256))
  lp64 = np.asarray(d.log_prob(jnp.asarray(x)))
  x32 = x.astype(np.complex64 if np.iscomplexobj(x) else np.float32)
  lp32 = d.log_prob(jnp.asarray(x32))
  assert lp32.dtype == jnp.float32
  # float32 round-off of the points (~1e-7) times the concentration, plus arithmetic
  err = np.abs(np.asarray(lp32, np.float64) - lp64) / (1 + np.abs(lp64))
  assert np.max(err) < 2e-4, np.max(err)
