"""geogen.likelihood: divergence and change of variables against closed forms."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from geogen import likelihood, nets
from manifolds import Power, Torus
from sphere_reference import EmbeddedSphere

A_SIN = 0.7


def sin_field(x, t):
  return A_SIN * jnp.sin(x)


def circle_log_prob_of_sin_flow(x0, t1):
  """Uniform base at time t1 pulled back by the flow of a sin(x):
  log p(x0) = -log 2 pi + log |d x_t1 / d x0|, x_t = 2 atan(tan(x0/2) e^{a t})."""
  e = np.exp(A_SIN * t1)
  u = np.tan(x0 / 2.0) * e
  return -math.log(2 * math.pi) + np.log(e / np.cos(x0 / 2.0) ** 2 / (1.0 + u * u))


def _cfg(**kw):
  c = likelihood.default_config()
  c.update(kw)
  return c


def test_circle_flow_matches_change_of_variables(x64):
  m = Torus(1)
  x = jnp.linspace(-3.0, 3.0, 7)[:, None]
  tol = 1e-9 if x64 else 1e-5
  logp, st = likelihood.log_prob(m, sin_field, x, 0.0, 1.3, _cfg(rtol=tol, atol=tol))
  ref = circle_log_prob_of_sin_flow(np.asarray(x[:, 0], np.float64), 1.3)
  np.testing.assert_allclose(logp, ref, atol=1e-7 if x64 else 2e-4)
  assert st["nfe"].shape == (7,) and int(st["nfe"].min()) > 6
  if x64:  # the reverse direction (base at an earlier time) is the inverse map
    logp_b, _ = likelihood.log_prob(m, sin_field, x, 1.3, 0.0, _cfg(rtol=tol, atol=tol))
    np.testing.assert_allclose(logp_b, circle_log_prob_of_sin_flow(np.asarray(x[:, 0]), -1.3),
                               atol=1e-7)


def test_power_of_circles_sums_factors(f64):
  m = Power(Torus(1), 3)
  x = m.random_uniform(jax.random.key(0), (4,))
  logp, _ = likelihood.log_prob(m, sin_field, x, 0.0, 0.8, _cfg(rtol=1e-9, atol=1e-9))
  ref = circle_log_prob_of_sin_flow(np.asarray(x)[..., 0], 0.8).sum(-1)
  np.testing.assert_allclose(logp, ref, atol=1e-7)


def test_divergence_on_torus_closed_form(f64):
  m = Torus(2)
  f = lambda x, t: jnp.stack([1.5 * jnp.sin(x[..., 0]) + t,
                              0.4 * jnp.sin(x[..., 0] + 2 * x[..., 1])], -1)
  x = m.random_uniform(jax.random.key(1), (6,))
  div = likelihood.divergence(m, f, x, 0.3)
  ref = 1.5 * np.cos(x[:, 0]) + 0.8 * np.cos(x[:, 0] + 2 * x[:, 1])
  np.testing.assert_allclose(div, ref, rtol=1e-10, atol=1e-12)
  # a constant field has zero divergence and leaves the uniform law uniform
  const = lambda x, t: jnp.broadcast_to(jnp.array([0.7, -2.0], x.dtype), x.shape)
  logp, _ = likelihood.log_prob(m, const, x, 0.0, 2.0, _cfg())
  np.testing.assert_allclose(logp, -2 * math.log(2 * math.pi), atol=1e-6)


def _sphere_linear_field(a):
  """V(x) = P_x (A x); div_{S^n} V = tr A - (n + 1) x^T A x (derivation: J = A -
  x x^T (A + A^T) - (x^T A x) I, div = tr J - x^T J x)."""
  def f(x, t):
    ax = jnp.einsum("ij,...j->...i", a, x, precision=jax.lax.Precision.HIGHEST)
    return ax - jnp.sum(x * ax, -1, keepdims=True) * x

  def div(x):
    return np.trace(a) - x.shape[-1] * np.einsum("...i,ij,...j->...", x, a, x)

  return f, div


@pytest.mark.parametrize("n", [2, 5])
def test_exact_divergence_on_sphere(n, f64):
  m = EmbeddedSphere(n)
  a = np.asarray(jax.random.normal(jax.random.key(n), (n + 1, n + 1)))
  f, div = _sphere_linear_field(a)
  x = m.random_uniform(jax.random.key(2), (5,))
  np.testing.assert_allclose(likelihood.divergence(m, f, x, 0.0), div(np.asarray(x)),
                             atol=1e-10)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(probe, f64):
  n, num = 30, 4000
  m = EmbeddedSphere(n)
  a = np.asarray(jax.random.normal(jax.random.key(0), (n + 1, n + 1)))
  f, div = _sphere_linear_field(a)
  x = m.random_uniform(jax.random.key(1), ())
  probes = likelihood.draw_probes(jax.random.key(2), m, (num,), 1, probe, jnp.float64)
  est = np.asarray(likelihood.divergence(m, f, jnp.broadcast_to(x, (num, n + 1)), 0.0, probes))
  se = est.std() / math.sqrt(num)
  assert abs(est.mean() - div(np.asarray(x))) < 4 * se, (est.mean(), div(np.asarray(x)), se)
  assert est.std() > 0.1  # a genuinely stochastic estimator (not the exact trace)


def _hyperboloid_points(key, n, num):
  """Points (sqrt(1 + |x'|^2), x') on the upper sheet, built here independently."""
  xs = jax.random.normal(key, (num, n), jnp.float64)
  return jnp.concatenate([jnp.sqrt(1.0 + jnp.sum(xs**2, -1, keepdims=True)), xs], -1)


def test_divergence_on_hyperboloid_uses_lorentz_projection(f64):
  # V = grad x0 = -e0 + x0 x (Riemannian gradient of cosh rho on H^n); Delta x0 = n x0.
  # The projection is not symmetric here, so a <P b, J P b> trace would be wrong.
  from manifolds import Hyperbolic
  n = 3
  m = Hyperbolic(n)
  e0 = jnp.zeros(n + 1).at[0].set(1.0)
  f = lambda x, t: -e0 + x[..., :1] * x
  x = _hyperboloid_points(jax.random.key(0), n, 4)
  np.testing.assert_allclose(likelihood.divergence(m, f, x, 0.0), n * np.asarray(x[:, 0]),
                             rtol=1e-10)
  # divergence() goes through the global chart on H^n; the ambient trace with the adjoint of
  # the (non-symmetric) Lorentz projection must agree on its own.
  amb = jax.vmap(lambda xx: likelihood.field_and_divergence(m, f, xx, 0.0)[1])(x)
  np.testing.assert_allclose(amb, n * np.asarray(x[:, 0]), rtol=1e-10)
  num = 3000
  probes = likelihood.draw_probes(jax.random.key(9), m, (num,), 1, "gaussian", jnp.float64)
  est = np.asarray(likelihood.divergence(m, f, jnp.broadcast_to(x[0], (num, n + 1)), 0.0,
                                         probes))
  assert abs(est.mean() - n * float(x[0, 0])) < 4 * est.std() / math.sqrt(num)


def _inward_swirl(x, t):
  """-d/dr + (1/2) * rotation on H^2, built here from the ambient formulas: d/dr =
  (-e0 + x0 x) / sinh r (the unit gradient of x0 = cosh r), rotation (0, -x2, x1) (a Killing
  field, divergence 0).  div = -(n - 1) coth r = -coth r; the flow moves r at unit speed."""
  del t
  x0 = x[..., :1]
  e0 = jnp.zeros(x.shape[-1], x.dtype).at[0].set(1.0)
  radial = (-e0 + x0 * x) / jnp.sqrt(jnp.maximum(x0 * x0 - 1.0, 0.0))
  rot = jnp.stack([jnp.zeros_like(x[..., 0]), -x[..., 2], x[..., 1]], -1)
  return -radial + 0.5 * rot


def _polar_h2(r, theta, dtype):
  r, theta = np.asarray(r, np.float64), np.asarray(theta, np.float64)
  return jnp.asarray(np.stack([np.cosh(r), np.sinh(r) * np.cos(theta),
                               np.sinh(r) * np.sin(theta)], -1), dtype)


def test_float32_log_prob_far_out_on_hyperboloid():
  # Regression: in ambient coordinates the Lorentz-projected divergence trace loses
  # ~ eps e^(4r) (float32 divergence at r = 6 came out 0.0 instead of -1.0), the step
  # controller then hit max_steps for r0 >= 5 and a trained H^2 flow-matching model's
  # density grid failed.  log p(x) = int_0^T div = -log sinh r0 + log sinh(r0 - T),
  # base log-density 0 (any function of the endpoint would do).
  from manifolds import Hyperbolic
  m = Hyperbolic(2)
  r0 = np.array([2.5, 4.0, 5.0, 6.0, 7.0])
  x = _polar_h2(r0, np.linspace(0.3, 5.0, 5), jnp.float32)
  assert x.dtype == jnp.float32
  np.testing.assert_allclose(likelihood.divergence(m, _inward_swirl, x, 0.0),
                             -1.0 / np.tanh(r0), atol=1e-4)
  T = 1.0
  zero = lambda z: jnp.zeros(z.shape[:-1], z.dtype)
  logp, st = likelihood.log_prob(m, _inward_swirl, x, 0.0, T, _cfg(), base_log_prob=zero)
  ref = -np.log(np.sinh(r0)) + np.log(np.sinh(r0 - T))
  np.testing.assert_allclose(logp, ref, atol=2e-4)
  np.testing.assert_allclose(np.arccosh(np.asarray(st["z"][:, 0], np.float64)), r0 - T,
                             atol=1e-4)
  assert int(st["nfe"].max()) < 200  # the old ambient solve needed > 4096 steps


def test_power_of_hyperboloids_log_prob_in_chart(f64):
  # Power(H^2, 2) goes through the product chart: log p is the sum over the factors.
  from manifolds import Hyperbolic
  m = Power(Hyperbolic(2), 2)
  assert likelihood.uses_chart(m) and likelihood.state_size(m) == 4
  r0 = np.array([[1.5, 3.0], [4.0, 2.2]])
  x = _polar_h2(r0, np.array([[0.1, 2.0], [4.0, -1.0]]), jnp.float64)
  zero = lambda z: jnp.zeros(z.shape[:-2], z.dtype)
  logp, _ = likelihood.log_prob(m, _inward_swirl, x, 0.0, 0.7,
                                _cfg(rtol=1e-9, atol=1e-9), base_log_prob=zero)
  ref = (-np.log(np.sinh(r0)) + np.log(np.sinh(r0 - 0.7))).sum(-1)
  np.testing.assert_allclose(logp, ref, atol=1e-7)


def test_divergence_on_special_unitary(f64):
  # V = grad h, h(U) = Re tr(A^H U), a matrix coefficient of the defining representation:
  # Delta h = -((n^2 - 1) / n) h for the metric Re tr(X^H Y).  Complex points go through
  # real features; the ambient field P_U A is the gradient of h.
  from manifolds import SpecialUnitary
  n = 3
  m = SpecialUnitary(n)
  try:
    x = m.random_uniform(jax.random.key(2), (3,))
  except NotImplementedError:
    pytest.skip("SpecialUnitary is not implemented yet")
  k1, k2 = jax.random.split(jax.random.key(0))
  a = jax.random.normal(k1, (n, n)) + 1j * jax.random.normal(k2, (n, n))
  f = lambda u, t: m.to_tangent(u, jnp.broadcast_to(a, u.shape))
  h = np.real(np.einsum("ij,bij->b", np.conj(np.asarray(a)), np.asarray(x)))
  np.testing.assert_allclose(likelihood.divergence(m, f, x, 0.0), -(n * n - 1) / n * h,
                             rtol=1e-9, atol=1e-12)


def test_sphere_height_flow_log_prob(f64):
  # Field grad(z) = e_z - z x on S^2: z_t = tanh(t + atanh z_0), div = -2 z, so
  # log p(x0) = -log 4 pi - 2 [log cosh(T + a) - log cosh a], a = atanh z0.
  m = EmbeddedSphere(2)
  e3 = jnp.array([0.0, 0.0, 1.0])
  f = lambda x, t: e3 - x[..., 2:3] * x
  x = m.random_uniform(jax.random.key(4), (6,))
  T = 0.9
  logp, st = likelihood.log_prob(m, f, x, 0.0, T, _cfg(rtol=1e-9, atol=1e-9))
  a = np.arctanh(np.asarray(x)[:, 2])
  ref = -math.log(4 * math.pi) - 2 * (np.log(np.cosh(T + a)) - np.log(np.cosh(a)))
  np.testing.assert_allclose(logp, ref, atol=1e-7)
  np.testing.assert_allclose(st["z"][:, 2], np.tanh(T + a), atol=1e-7)


def test_hutchinson_log_prob_on_high_dim_sphere(f64):
  # S^20 > exact_max_dim, so 'auto' picks Hutchinson; height flow has div = -n z, so
  # log p(x0) = -log vol - n [log cosh(T + a) - log cosh a]; average many estimates.
  n, reps = 20, 64
  m = EmbeddedSphere(n)
  e = jnp.zeros(n + 1).at[-1].set(1.0)
  f = lambda x, t: e - x[..., -1:] * x
  x = jnp.broadcast_to(m.random_uniform(jax.random.key(5), ()), (reps, n + 1))
  cfg = _cfg(rtol=1e-7, atol=1e-7, num_probes=2)
  assert likelihood.divergence_mode(cfg, m) == "hutchinson"
  logp, _ = likelihood.log_prob(m, f, x, 0.0, 0.5, cfg, key=jax.random.key(6))
  a = math.atanh(float(x[0, -1]))
  ref = -m.log_volume() - n * (math.log(math.cosh(0.5 + a)) - math.log(math.cosh(a)))
  lp = np.asarray(logp)
  assert lp.std() > 1e-3  # estimates do vary
  assert abs(lp.mean() - ref) < 4 * lp.std() / math.sqrt(reps) + 1e-6
  with pytest.raises(ValueError, match="PRNG key"):
    likelihood.ode_log_prob(m, f, x, 0.0, 0.5, cfg)


def test_random_net_density_integrates_to_one(f64):
  # End to end: any flow from the uniform law gives a normalized density on T^1.
  m = Torus(1)
  c = nets.default_config()
  c.hidden, c.depth, c.kind = 16, 2, "mlp"
  net = nets.VectorField(m, c, rngs=nnx.Rngs(3))
  field = lambda x, t: 8.0 * net(x, t)
  theta = jnp.linspace(-math.pi, math.pi, 200, endpoint=False)[:, None]
  logp, _ = likelihood.log_prob(m, field, theta, 0.0, 1.0, _cfg(rtol=1e-8, atol=1e-8))
  p = np.exp(np.asarray(logp))
  assert p.max() / p.min() > 1.5  # far from uniform: the check is not vacuous
  total = p.sum() * 2 * math.pi / 200  # periodic trapezoid rule: spectrally accurate
  assert abs(total - 1.0) < 1e-5, total


def test_log_prob_raises_on_failure():
  m = Torus(1)
  x = jnp.array([[-1.0], [0.5]])
  nan_field = lambda x, t: jnp.where(x > 0.0, jnp.nan, 0.1) * jnp.ones_like(x)
  logp, st = likelihood.ode_log_prob(m, nan_field, x, 0.0, 1.0, _cfg())
  assert np.asarray(st["ok"]).tolist() == [True, False]
  with pytest.raises(RuntimeError, match="failed for 1 of 2"):
    likelihood.log_prob(m, nan_field, x, 0.0, 1.0, _cfg())


@pytest.mark.parametrize("key,value", [("divergence", "trace"), ("probe", "uniform"),
                                       ("solver", "euler"), ("num_probes", 0)])
def test_bad_config_raises(key, value):
  with pytest.raises(ValueError, match=key if key != "solver" else "solver"):
    likelihood.log_prob(Torus(1), sin_field, jnp.zeros((1, 1)), 0.0, 1.0, _cfg(**{key: value}))
