"""Torus, Euclidean, Power and from_spec against exact references."""
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from manifolds import Euclidean, Power, Torus, from_spec
from manifolds.flat import circle_log_heat_kernel, wrap


def _circle_ref(theta, t):
  """Wrapped normal density on the circle, by direct image summation in mpmath."""
  mpmath.mp.dps = 40
  s = mpmath.nsum(lambda k: mpmath.exp(-(theta + 2 * mpmath.pi * k)**2 / (2 * t)),
                  [-mpmath.inf, mpmath.inf])
  return float(mpmath.log(s / mpmath.sqrt(2 * mpmath.pi * t)))


@pytest.mark.parametrize("t", [1e-4, 1e-2, 0.5, 1.999, 2.0, 2.001, 7.0, 20.0, 1e3])
def test_circle_heat_kernel_exact(f64, t):
  thetas = np.array([0.0, 0.3, 1.7, 3.0, math.pi - 1e-9, -math.pi])
  got = np.asarray(circle_log_heat_kernel(jnp.asarray(thetas), t))
  for th, g in zip(thetas, got):
    ref = _circle_ref(th, t)
    if ref > -500:
      assert abs(g - ref) <= 1e-10 * max(1.0, abs(ref)), (th, t, g, ref)


def test_circle_heat_kernel_float32_finite():
  th = jnp.linspace(-math.pi, math.pi, 101, dtype=jnp.float32)
  for t in [1e-6, 1e-3, 1.0, 2.0, 50.0, 1e6]:
    lp = circle_log_heat_kernel(th, jnp.float32(t))
    assert lp.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(lp)))
    ref = np.array([_circle_ref(float(a), t) for a in np.asarray(th, np.float64)[::10]])
    ok = ref > -500
    np.testing.assert_allclose(np.asarray(lp)[::10][ok], ref[ok],
                               atol=0, rtol=2e-6 if t > 1e-5 else 1e-3)


def test_torus_geometry(x64):
  M = Torus(4)
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  x = M.random_uniform(k1, (64,))
  v = 0.9 * math.pi * jax.random.uniform(k2, (64, 4), x.dtype, -1.0, 1.0)
  y = M.exp(x, v)
  assert bool(jnp.all(M.belongs(y)))
  np.testing.assert_allclose(M.log(x, y), v, atol=1e-5 if not x64 else 1e-12)
  z = M.random_uniform(k3, (64,))
  d = M.dist(x, y)
  np.testing.assert_allclose(d, M.dist(y, x), atol=1e-6)
  assert bool(jnp.all(M.dist(x, z) <= d + M.dist(y, z) + 1e-5))
  # Cut locus: an angle difference of exactly pi maps to -pi, never 0.
  a = jnp.zeros((4,), x.dtype)
  b = jnp.full((4,), math.pi, x.dtype)
  lg = M.log(a, b)
  np.testing.assert_allclose(np.abs(lg), math.pi, rtol=1e-6)
  np.testing.assert_allclose(M.exp(a, lg), wrap(b), atol=1e-6)
  # Gradient of dist^2 is finite at x = y.
  g = jax.grad(lambda q: M.dist(x[0], q) ** 2)(x[0])
  assert bool(jnp.all(jnp.isfinite(g)))
  assert M.log_volume() == pytest.approx(4 * math.log(2 * math.pi))


def test_torus_uniform_and_heat_kernel_moments(f64):
  """E cos(Y_i - x_i) = exp(-t/2) under the exact sampler; uniform law has E cos = 0."""
  M = Torus(3)
  x = jnp.array([0.3, -2.0, 3.0])
  n = 100_000
  for i, t in enumerate([1e-3, 0.1, 1.0, 5.0]):
    y = M.sample_heat_kernel(jax.random.PRNGKey(i), jnp.broadcast_to(x, (n, 3)), t)
    assert bool(jnp.all(M.belongs(y)))
    c = np.cos(np.asarray(y - x))
    se = c.std(0) / math.sqrt(n)
    assert np.all(np.abs(c.mean(0) - math.exp(-t / 2)) < 5 * se + 1e-12)
  u = np.asarray(M.random_uniform(jax.random.PRNGKey(9), (n,)))
  assert np.all(np.abs(np.cos(u).mean(0)) < 5 / math.sqrt(2 * n))


def test_torus_score_matches_reference_gradient(f64):
  M = Torus(2)
  x = jnp.array([0.1, -0.4])
  y = jnp.array([2.9, 1.0])
  for t in [0.01, 0.5, 3.0]:
    s = np.asarray(M.heat_kernel_score(x, y, t))
    h = 1e-6
    for i in range(2):
      e = np.zeros(2)
      e[i] = h
      fd = (_circle_ref(float(y[i] - x[i]) + h, t) - _circle_ref(float(y[i] - x[i]) - h, t)) / (2 * h)
      assert abs(s[i] - fd) <= 1e-5 * max(1.0, abs(fd))


def test_torus_heat_kernel_mixed_batch_many_angles_and_score(x64):
  """Torus(20) (two groups of factors before the log), a batch with t on both sides of the
  images / Fourier switch (the Fourier branch runs only when some t >= 2), y = x, the cut
  locus: log p against the mpmath images sum per angle, and the closed-form score against
  central differences of that reference."""
  M = Torus(20)
  k1, k2 = jax.random.split(jax.random.PRNGKey(5))
  x = M.random_uniform(k1, (6,))
  y = M.random_uniform(k2, (6,))
  y = y.at[0].set(x[0]).at[1, :4].set(wrap(x[1, :4] + math.pi))
  t = jnp.asarray([0.01, 0.3, 1.999, 2.001, 7.0, 1e-4], x.dtype)
  lp = np.asarray(M.log_heat_kernel(x, y, t), np.float64)
  sc = np.asarray(M.heat_kernel_score(x, y, t), np.float64)
  th = np.asarray(wrap(y - x), np.float64)
  tol = 1e-10 if x64 else 2e-6
  for i in range(6):
    ti = float(t[i])
    ref = sum(_circle_ref(float(a), ti) for a in th[i])
    assert abs(lp[i] - ref) <= tol * max(1.0, abs(ref)), (i, lp[i], ref)
    for j in range(0, 20, 7) if ti > 1e-3 else ():
      h = 1e-6
      fd = (_circle_ref(th[i, j] + h, ti) - _circle_ref(th[i, j] - h, ti)) / (2 * h)
      assert abs(sc[i, j] - fd) <= (1e-6 if x64 else 1e-4) * max(1.0, abs(fd)), (i, j, sc[i, j], fd)
  assert np.all(np.isfinite(sc)) and np.max(np.abs(sc[0])) <= 1e-9  # y = x


def test_euclidean_heat_kernel(x64):
  M = Euclidean(3)
  x = jnp.zeros(3)
  y = jnp.array([1.0, 2.0, -1.0])
  lp = M.log_heat_kernel(x, y, 0.7)
  assert float(lp) == pytest.approx(-1.5 * math.log(2 * math.pi * 0.7) - 6.0 / 1.4, rel=1e-6)
  ys = M.sample_heat_kernel(jax.random.PRNGKey(0), jnp.broadcast_to(x, (50_000, 3)), 0.7)
  np.testing.assert_allclose(np.var(np.asarray(ys), 0), 0.7, rtol=0.05)
  with pytest.raises(NotImplementedError, match="no uniform law"):
    M.random_uniform(jax.random.PRNGKey(0))


def test_power_reduces_over_factors(x64):
  M = Power(Torus(2), 3)
  assert M.shape == (3, 2) and M.dim == 6 and M.spec == "torus(2)^3"
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  x = M.random_uniform(k1, (5,))
  y = M.random_uniform(k2, (5,))
  assert x.shape == (5, 3, 2)
  t = jnp.linspace(0.1, 2.0, 5)
  lp = M.log_heat_kernel(x, y, t)
  ref = sum(Torus(2).log_heat_kernel(x[:, i], y[:, i], t) for i in range(3))
  np.testing.assert_allclose(lp, ref, rtol=1e-6)
  d = M.dist(x, y)
  ref = np.sqrt(sum(np.asarray(Torus(2).dist(x[:, i], y[:, i]))**2 for i in range(3)))
  np.testing.assert_allclose(d, ref, rtol=1e-5)
  assert M.log_volume() == pytest.approx(6 * math.log(2 * math.pi))
  s = M.sample_heat_kernel(jax.random.PRNGKey(3), x, t)
  assert s.shape == x.shape


@pytest.mark.parametrize("spec,shape", [("sphere(2)", (3,)), ("hyperbolic(5)", (6,)),
                                        ("su(3)", (3, 3)), ("torus(7)", (7,)),
                                        ("euclidean(10)", (10,)), ("su(2)^64", (64, 2, 2)),
                                        (" Sphere( 4 ) ^ 2", (2, 5))])
def test_from_spec(spec, shape):
  M = from_spec(spec)
  assert M.shape == shape
  assert from_spec(M.spec) == M


@pytest.mark.parametrize("bad", ["sphere2", "sphere(0)", "hyperbolic(1)", "su(1)", "cube(3)",
                                 "sphere(2)^0", "torus(2)^", "", "sphere(-1)", "sphere(2.5)"])
def test_from_spec_rejects(bad):
  with pytest.raises(ValueError, match="spec := name"):
    from_spec(bad)


def test_check_raises_clearly():
  M = Torus(2)
  with pytest.raises(ValueError, match=r"torus\(2\).*worst violation.*atol"):
    M.check(jnp.array([[0.0, 4.0]]))
  with pytest.raises(ValueError, match="NaN"):
    M.check(jnp.array([[0.0, jnp.nan]]))
  with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
    M.check(jnp.zeros((3, 5)))
  M.check(jnp.array([[0.0, 3.0]]))


def test_circle_kernel_float32_gradient_finite_small_t():
  """Autodiff gradient of the circle log-kernel in float32 at small t (where
  c = exp(-2 pi^2 / t) underflows) is finite and equals -theta / t up to the images
  (regression: 0 * inf = NaN from dividing by an underflowing exponential)."""
  from manifolds.flat import circle_log_heat_kernel
  th = jnp.asarray([0.0, 0.5, 1.0, 3.0, -3.1], jnp.float32)
  for t in (1e-3, 0.05, 0.2):
    g = jax.vmap(jax.grad(lambda a: circle_log_heat_kernel(a, t)))(th)
    ref = -np.asarray(th, np.float64) / t
    # the k = -1 image matters only near |theta| = pi: compare where it is negligible
    far = np.abs(np.asarray(th)) < 2.0
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(np.asarray(g)[far], ref[far], rtol=1e-5, atol=1e-5)


def test_torus_sampler_ks(f64):
  """KS test of each coordinate's distance |wrap(Y_i - x_i)| (1e5 exact draws of Torus(3), t on
  both sides of the images / Fourier switch at t = 2) against the CDF integrated from
  Torus(1).log_heat_kernel (trapezoid on 20,001 points: error ~1e-9)."""
  from scipy import stats
  M, M1 = Torus(3), Torus(1)
  x = jnp.array([0.3, -2.0, 3.0])
  n = 100_000
  g = np.linspace(0.0, math.pi, 20_001)
  for i, t in enumerate([1e-3, 0.3, 1.5, 5.0]):
    dens = 2.0 * np.exp(np.asarray(M1.log_heat_kernel(jnp.zeros((g.size, 1)),
                                                      jnp.asarray(g)[:, None], t)))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(g))])
    assert cdf[-1] == pytest.approx(1.0, abs=1e-8)
    y = M.sample_heat_kernel(jax.random.PRNGKey(10 + i), jnp.broadcast_to(x, (n, 3)), t)
    d = np.abs(np.asarray(wrap(y - x)))
    for j in range(3):
      res = stats.kstest(d[:, j], lambda s: np.interp(s, g, cdf))
      assert res.pvalue > 1e-3, (t, j, res)
