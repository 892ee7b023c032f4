"""geogen.integrators against closed-form flows and exact Brownian-motion moments."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from geogen import integrators
from manifolds import Power, Torus
from sphere_reference import EmbeddedSphere

A_SIN = 0.7  # field a sin(x) on the circle: tan(x_t / 2) = tan(x_0 / 2) exp(a t)


def sin_field(x, t):
  return A_SIN * jnp.sin(x)


def sin_flow(x0, t):
  return 2.0 * np.arctan(np.tan(x0 / 2.0) * np.exp(A_SIN * t))


OMEGA = np.array([0.3, -0.5, 0.8])


def rotation_field(x, t):
  return jnp.cross(jnp.asarray(OMEGA, x.dtype), x)


def rotation_flow(x0, t):
  """Rodrigues: rotation by angle |w| t about w."""
  w = np.linalg.norm(OMEGA)
  k = OMEGA / w
  c, s = np.cos(w * t), np.sin(w * t)
  return (x0 * c + np.cross(k, x0) * s + np.outer(x0 @ k, k) * (1 - c))


def test_fixed_step_orders_on_circle(f64):
  m = Torus(1)
  x0 = np.linspace(-3.0, 3.0, 9)[:, None]
  exact = sin_flow(x0, 1.3)
  for method, order in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
    errs = [np.max(np.abs(np.asarray(integrators.odeint_fixed(m, sin_field, x0, 0.0, 1.3, n,
                                                              method)) - exact))
            for n in (16, 32)]
    rate = math.log2(errs[0] / errs[1])
    assert abs(rate - order) < 0.3, (method, errs, rate)
  # backwards in time undoes the flow
  x1 = integrators.odeint_fixed(m, sin_field, x0, 0.0, 1.3, 40, "rk4")
  back = integrators.odeint_fixed(m, sin_field, x1, 1.3, 0.0, 40, "rk4")
  np.testing.assert_allclose(back, x0, atol=1e-6)


def test_time_dependent_field_on_torus(f64):
  # dx/dt = (cos t, 2): x(t) = x0 + (sin t1 - sin t0, 2 (t1 - t0)), wrapped.
  m = Torus(2)
  f = lambda x, t: jnp.broadcast_to(jnp.stack([jnp.cos(t), 2.0 + 0.0 * t]), x.shape)
  x0 = np.array([[0.5, 3.0], [-3.0, 0.0]])
  out = integrators.odeint_fixed(m, f, x0, 0.2, 2.0, 50, "rk4")
  ref = x0 + np.array([np.sin(2.0) - np.sin(0.2), 3.6])
  np.testing.assert_allclose(np.asarray(m.log(jnp.asarray(ref), out)), 0.0, atol=1e-7)
  assert np.all(np.asarray(m.belongs(out)))


@pytest.mark.parametrize("method,steps,tol", [("rk4", 40, 1e-7), ("midpoint", 400, 1e-4),
                                              ("euler", 4000, 2e-3)])
def test_rotation_on_sphere(method, steps, tol, f64):
  m = EmbeddedSphere(2)
  x0 = np.asarray(m.random_uniform(jax.random.key(0), (5,)))
  x1, path = integrators.odeint_fixed(m, rotation_field, x0, 0.0, 2.0, steps, method,
                                      return_path=True)
  np.testing.assert_allclose(x1, rotation_flow(x0, 2.0), atol=tol)
  assert path.shape == (steps, 5, 3)
  np.testing.assert_allclose(np.linalg.norm(path, axis=-1), 1.0, atol=1e-13)


def test_rotation_on_sphere_float32_stays_on_manifold():
  m = EmbeddedSphere(2)
  x0 = m.random_uniform(jax.random.key(0), (5,))
  x1 = integrators.odeint_fixed(m, rotation_field, x0, 0.0, 20.0, 500, "rk4")
  assert x1.dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(np.asarray(x1), axis=-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(x1, rotation_flow(np.asarray(x0, np.float64), 20.0), atol=1e-4)


def test_adaptive_solve_matches_closed_form(x64):
  m = EmbeddedSphere(2)
  x0 = m.random_uniform(jax.random.key(3), (4,))
  tol = 1e-8 if x64 else 1e-5
  x1, nfe, ok = integrators.solve_ode(m, rotation_field, x0, 0.0, 3.0, rtol=tol, atol=tol)
  assert bool(jnp.all(ok)) and nfe.shape == (4,) and int(nfe.min()) > 6
  np.testing.assert_allclose(x1, rotation_flow(np.asarray(x0, np.float64), 3.0),
                             atol=100 * tol)
  # backwards, on the circle, per point
  c = Torus(1)
  y0 = jnp.linspace(-3.0, 3.0, 5)[:, None]
  y1, _, ok = integrators.solve_ode(c, sin_field, y0, 2.0, 0.5, rtol=tol, atol=tol)
  np.testing.assert_allclose(y1, sin_flow(np.asarray(y0, np.float64), -1.5), atol=100 * tol)


@pytest.mark.parametrize("solver", sorted(integrators.ADAPTIVE_SOLVERS))
def test_reported_nfe_counts_every_evaluation(solver):
  calls = []

  def rhs(y, t):
    jax.debug.callback(lambda: calls.append(1))
    return jnp.sin(5.0 * y) + t

  y1, nfe, ok = integrators.diffrax_solve(rhs, jnp.array([0.3, 1.0]), 0.0, 3.0, solver=solver,
                                          rtol=1e-6, atol=1e-6)
  jax.block_until_ready(y1)
  assert bool(ok)
  assert int(nfe) == len(calls)


def test_failures_are_reported():
  m = Torus(1)
  x0 = jnp.zeros((3, 1))
  _, _, ok = integrators.solve_ode(m, sin_field, x0 + 1.0, 0.0, 50.0, rtol=1e-8, atol=1e-8,
                                   max_steps=3)
  assert not bool(jnp.any(ok))
  with pytest.raises(RuntimeError, match="failed for 3 of 3"):
    integrators.raise_if_failed(ok)
  nan_field = lambda x, t: jnp.where(x > 0.5, jnp.nan, 1.0) * jnp.ones_like(x)
  _, _, ok = integrators.solve_ode(m, nan_field, jnp.array([[-2.0], [1.0]]), 0.0, 0.1)
  assert np.asarray(ok).tolist() == [True, False]
  with pytest.raises(ValueError, match="unknown adaptive solver"):
    integrators.solve_ode(m, sin_field, x0, 0.0, 1.0, solver="rk45")
  with pytest.raises(ValueError, match="unknown fixed-step"):
    integrators.odeint_fixed(m, sin_field, x0, 0.0, 1.0, 4, "rk3")


def _mean_and_se(a):
  a = np.asarray(a, np.float64)
  return a.mean(), a.std() / math.sqrt(a.size)


def test_euler_maruyama_torus_exact_law():
  # Zero-curvature: geodesic EM of dX = c dt + g dB is exact, X_t - x0 - c t ~ N(0, g^2 t).
  m = Power(Torus(1), 2)
  n, t, c, g = 4000, 0.8, 0.6, 1.3
  x0 = jnp.zeros((n, 2, 1))
  xt = integrators.sde_euler_maruyama(m, lambda x, s: jnp.full_like(x, c), lambda s: g,
                                      jax.random.key(0), x0, 0.0, t, 8)
  d = np.asarray(xt) - c * t
  mc, sc = _mean_and_se(np.cos(d))
  ms, ss = _mean_and_se(np.sin(d))
  assert abs(mc - math.exp(-g * g * t / 2)) < 4 * sc
  assert abs(ms) < 4 * ss


def test_euler_maruyama_sphere_brownian_moment():
  # Geodesic random walk -> BM on S^2 (generator Delta/2): E<x, Y_t> = exp(-t), and
  # backwards time gives the same law (diffusion uses |h|).
  m = EmbeddedSphere(2)
  n, t = 4000, 0.5
  x0 = jnp.tile(jnp.array([0.0, 0.0, 1.0]), (n, 1))
  zero = lambda x, s: jnp.zeros_like(x)
  for t0, t1 in ((0.0, t), (1.0, 1.0 - t)):
    xt = integrators.sde_euler_maruyama(m, zero, lambda s: 1.0, jax.random.key(1), x0, t0, t1,
                                        100)
    mean, se = _mean_and_se(np.asarray(xt)[:, 2])
    # O(h) = O(5e-3) bias of the random walk plus Monte Carlo error
    assert abs(mean - math.exp(-t)) < 4 * se + 0.01, (mean, math.exp(-t), se)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(xt), axis=-1), 1.0, atol=1e-5)


def test_langevin_targets_von_mises():
  # Langevin with the von Mises score -k sin(x - mu) has stationary mean
  # E cos(x - mu) = I1(k) / I0(k).
  m = Torus(1)
  k, mu, n = 2.0, 1.0, 4000
  score = lambda x: -k * jnp.sin(x - mu)

  def body(x, key):
    return integrators.langevin_step(m, key, x, score(x), 0.01), None

  x0 = m.random_uniform(jax.random.key(0), (n,))
  x, _ = jax.lax.scan(body, x0, jax.random.split(jax.random.key(1), 600))
  mean, se = _mean_and_se(np.cos(np.asarray(x) - mu))
  ref = special.i1(k) / special.i0(k)
  assert abs(mean - ref) < 4 * se + 0.01, (mean, ref)


def test_corrector_is_called_and_jit_works():
  m = Torus(1)
  seen = []

  def corrector(key, x, t):
    jax.debug.callback(lambda: seen.append(1))
    return x

  run = jax.jit(lambda key: integrators.sde_euler_maruyama(
      m, lambda x, s: jnp.zeros_like(x), lambda s: 0.0, key, jnp.zeros((2, 1)), 0.0, 1.0, 5,
      corrector=corrector))
  out = run(jax.random.key(0))
  jax.block_until_ready(out)
  assert len(seen) == 5
  np.testing.assert_allclose(out, 0.0)


def test_checked_nfe_stats_eager_and_traced():
  nfe = jnp.array([3, 7, 5], jnp.int32)
  st = integrators.checked_nfe_stats(nfe, jnp.array([True, True, True]), "toy solve")
  assert st == {"nfe": 7, "nfe_mean": 5.0}
  assert isinstance(st["nfe"], int) and isinstance(st["nfe_mean"], float)
  with pytest.raises(RuntimeError, match="toy solve failed for 1 of 3"):
    integrators.checked_nfe_stats(nfe, jnp.array([True, False, True]), "toy solve")
  # under jit nothing can be raised: the stats stay arrays and carry 'ok' for the caller
  st = jax.jit(lambda n, o: integrators.checked_nfe_stats(n, o, "toy"))(
      nfe, jnp.array([True, False, True]))
  assert int(st["nfe"]) == 7 and float(st["nfe_mean"]) == 5.0
  assert np.asarray(st["ok"]).tolist() == [True, False, True]
