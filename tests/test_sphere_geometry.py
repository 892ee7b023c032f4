"""Sphere(n) geometry against closed forms (the heat kernel has its own tests)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import gammaln

from manifolds import Sphere


def _pair(M, key, batch, max_angle):
  k1, k2 = jax.random.split(key)
  x = M.random_uniform(k1, (batch,))
  v = M.random_normal_tangent(k2, x)
  r = M.norm(x, v)[..., None]
  ang = jnp.linspace(0.0, max_angle, batch)[:, None]
  return x, v / r * ang


@pytest.mark.parametrize("n", [1, 2, 5, 127])
def test_exp_log_round_trip_and_metric(x64, n):
  M = Sphere(n)
  tol = 1e-12 if x64 else 2e-5
  x, v = _pair(M, jax.random.PRNGKey(n), 64, 0.99 * math.pi)
  y = M.exp(x, v)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(y), axis=-1), 1.0, atol=tol)
  np.testing.assert_allclose(M.log(x, y), v, atol=100 * tol)
  # dist = angle (closed form via arccos in float64 numpy)
  ref = np.arccos(np.clip(np.sum(np.asarray(x, np.float64) * np.asarray(y, np.float64), -1), -1, 1))
  np.testing.assert_allclose(M.dist(x, y), ref, atol=1e-3 if not x64 else 1e-7)
  np.testing.assert_allclose(M.dist(x, y), M.dist(y, x), atol=10 * tol)
  z = M.random_uniform(jax.random.PRNGKey(99), (64,))
  assert bool(jnp.all(M.dist(x, z) <= M.dist(x, y) + M.dist(y, z) + 10 * tol))
  w = jax.random.normal(jax.random.PRNGKey(3), x.shape, x.dtype)
  pw = M.to_tangent(x, w)
  np.testing.assert_allclose(M.to_tangent(x, pw), pw, atol=10 * tol)
  np.testing.assert_allclose(jnp.sum(pw * x, -1), 0.0, atol=10 * tol)
  np.testing.assert_allclose(jnp.sum((w - pw) * pw, -1), 0.0, atol=100 * tol)
  # Parallel transport preserves inner products and lands in T_y.
  u = M.random_normal_tangent(jax.random.PRNGKey(5), x)
  tu, tw = M.transp(x, y, u), M.transp(x, y, pw)
  np.testing.assert_allclose(M.inner(y, tu, tw), M.inner(x, u, pw), rtol=1e-4 if not x64 else 1e-9,
                             atol=1e-4 if not x64 else 1e-9)
  np.testing.assert_allclose(jnp.sum(tu * y, -1), 0.0, atol=100 * tol)


def test_antipode_log_is_minimizing_not_zero(x64):
  M = Sphere(3)
  x = jnp.array([0.6, 0.0, 0.8, 0.0])
  lg = M.log(x, -x)
  assert float(M.norm(x, lg)) == pytest.approx(math.pi, rel=1e-5)
  np.testing.assert_allclose(M.exp(x, lg), -x, atol=1e-5)
  assert float(M.dist(x, -x)) == pytest.approx(math.pi, rel=1e-5)
  g = jax.grad(lambda y: M.dist(x, y) ** 2)(x)
  assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("n", [1, 2, 7])
def test_uniform_second_moment_and_volume(f64, n):
  M = Sphere(n)
  num = 100_000
  x = np.asarray(M.random_uniform(jax.random.PRNGKey(0), (num,)))
  second = x.T @ x / num
  # E x_i^4 = 3 / ((n+1)(n+3)) bounds the variance of every entry of x x^T.
  se = math.sqrt(3.0 / ((n + 1) * (n + 3)) / num)
  assert np.max(np.abs(second - np.eye(n + 1) / (n + 1))) < 5 * se
  ref = math.log(2) + (n + 1) / 2 * math.log(math.pi) - gammaln((n + 1) / 2)
  assert M.log_volume() == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("n", [2, 4])
def test_log_det_exp_matches_jacobian(f64, n):
  M = Sphere(n)
  x = jnp.zeros(n + 1).at[0].set(1.0)
  basis = jnp.eye(n + 1)[1:]  # orthonormal basis of T_x
  for r in [1e-3, 0.7, 2.5]:
    c = jnp.linspace(1.0, 2.0, n)
    c = c / jnp.linalg.norm(c) * r
    f = lambda a: M.exp(x, a @ basis)
    J = jax.jacfwd(f)(c)  # (n+1, n) in ambient coordinates
    y = f(c)
    # Orthonormal basis of T_y: complete y to an orthonormal frame.
    q, _ = jnp.linalg.qr(jnp.concatenate([y[:, None], jnp.eye(n + 1)], axis=1))
    ty = q[:, 1:n + 1]
    ref = jnp.linalg.slogdet(ty.T @ J)[1]
    assert float(M.log_det_exp(x, c @ basis)) == pytest.approx(float(ref), abs=1e-9)
    assert float(ref) == pytest.approx((n - 1) * math.log(math.sin(r) / r), abs=1e-9)


def test_check_raises():
  M = Sphere(2)
  with pytest.raises(ValueError, match=r"sphere\(2\).*worst violation"):
    M.check(jnp.array([[1.0, 1.0, 0.0]]))
  assert not bool(M.belongs(jnp.array([1.0, 1.0, 0.0])))
  assert bool(M.belongs(jnp.array([0.0, 1.0, 0.0])))
