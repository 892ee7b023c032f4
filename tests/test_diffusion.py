"""Riemannian diffusion: schedule, oracle-score sampling/likelihood vs exact heat kernels,
a tiny training run, normalization of log_prob, failures, family registry."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import integrate

from geogen import likelihood, nets
from geogen.models import diffusion as D
from geogen.models import FrozenConfig, get_family
from manifolds import Euclidean, Power, Torus


def _config(**diff):
  c = ml_collections.ConfigDict()
  c.net = nets.default_config()
  c.net.hidden, c.net.depth = 32, 2
  c.diffusion = D.default_config()
  c.diffusion.update(diff)
  c.eval = likelihood.default_config()
  return c


class OracleModel(D.DiffusionModel):
  """Data = heat kernel around mu at time v0, so p_s = heat kernel at v0 + tau(s)
  (semigroup property) and the exact score of p_s is a heat-kernel score."""

  def __init__(self, manifold, mu, v0, config):
    super().__init__(manifold, config.net, config.diffusion, config.eval, rngs=nnx.Rngs(0))
    # static (hashable) copy of the centre, as real features
    self.mu = tuple(np.asarray(manifold.to_features(jnp.asarray(mu))).tolist())
    self.v0 = float(v0)

  def mu_point(self, dtype):
    return self.manifold.from_features(jnp.asarray(self.mu)).astype(dtype)

  def score(self, x, s):
    t = self.v0 + self.schedule.tau(s)
    return self.manifold.heat_kernel_score(self.mu_point(x.dtype), x, t)


def test_schedule_closed_forms():
  sch = D.Schedule(0.1, 20.0)
  for s in (0.0, 1e-3, 0.3, 1.0):
    ref, _ = integrate.quad(lambda r: 0.1 + 19.9 * r, 0.0, s)
    assert abs(float(sch.tau(s)) - ref) < 1e-6
  assert abs(float(sch.tau(1.0)) - 10.05) < 1e-6
  np.testing.assert_allclose(float(sch.sigma2(1e-3)), float(sch.tau(1e-3)), rtol=1e-3)
  np.testing.assert_allclose(float(sch.sigma2(1.0)), 1 - math.exp(-10.05), rtol=1e-6)


def test_oracle_log_prob_matches_heat_kernel(f64):
  # beta_max 60: tau(1) = 30, so p_1 is uniform to e^-15 and the only error left is
  # the ODE solve.
  m = Torus(2)
  mu, v0 = np.array([1.0, -2.5]), 0.2
  cfg = _config(beta_max=60.0)
  cfg.eval.rtol = cfg.eval.atol = 1e-8
  model = OracleModel(m, mu, v0, cfg)
  x = m.random_uniform(jax.random.key(0), (5,))
  x = jnp.concatenate([x, m.sample_heat_kernel(jax.random.key(1), jnp.asarray(mu), 0.2 *
                                               jnp.ones(5))])
  logp, st = D.log_prob_and_stats(model, x, jax.random.key(2))
  ref = m.log_heat_kernel(jnp.asarray(mu), x, v0 + float(model.schedule.tau(cfg.diffusion.eps)))
  np.testing.assert_allclose(logp, ref, atol=1e-5)
  assert isinstance(st["nfe"], int) and st["nfe"] > 10 and st["divergence"] == "exact"
  # per-point solves: a point's value does not depend on the rest of the batch
  perm = np.array([9, 3, 0, 1, 2, 4, 5, 6, 7, 8])
  np.testing.assert_allclose(D.log_prob(model, x[perm], jax.random.key(3)), logp[perm],
                             atol=1e-12)


@pytest.mark.parametrize("sampler,corrector", [("sde", 0), ("sde", 1), ("ode", 0)])
def test_oracle_sampling_moments(sampler, corrector):
  # E cos(X_i - mu_i) = exp(-(v0 + tau(eps)) / 2) for the target p_eps on Power(T^1, 2).
  m = Power(Torus(1), 2)
  mu, v0, n = np.array([[0.5], [3.0]]), 0.3, 2000
  model = OracleModel(m, mu, v0, _config(sampler=sampler, sample_steps=200,
                                         corrector_steps=corrector))
  x = np.asarray(D.sample(model, jax.random.key(0), n), np.float64)
  assert x.shape == (n, 2, 1) and np.all(np.asarray(m.belongs(jnp.asarray(x))))
  c = np.cos(x - mu).reshape(n, 2)
  ref = math.exp(-(v0 + float(model.schedule.tau(1e-3))) / 2)
  se = c.std(0) / math.sqrt(n)
  # Monte Carlo (4 s.e.) plus a small discretization allowance for the SDE
  assert np.all(np.abs(c.mean(0) - ref) < 4 * se + 0.01), (c.mean(0), ref, se)
  s = np.sin(x - mu).reshape(n, 2)
  assert np.all(np.abs(s.mean(0)) < 4 * s.std(0) / math.sqrt(n) + 0.01)


def test_training_sampling_likelihood_on_torus():
  m = Torus(2)
  mu = jnp.array([1.0, -2.0])
  cfg = _config(sample_steps=100, time_sampling="stratified")
  model = D.init(cfg, m, jax.random.key(0))
  opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, key):
    kd, kl = jax.random.split(key)
    batch = m.sample_heat_kernel(kd, mu, jnp.full((64,), 0.1))
    (value, met), grads = nnx.value_and_grad(lambda mm: D.loss(mm, batch, kl),
                                             has_aux=True)(model)
    opt.update(model, grads)
    return met

  losses = []
  for k in jax.random.split(jax.random.key(1), 300):
    met = step(model, opt, k)
    losses.append(float(met["loss"]))
  losses = np.array(losses)
  assert np.all(np.isfinite(losses))
  assert losses[-50:].mean() < 0.6 * losses[:20].mean(), (losses[:20].mean(), losses[-50:].mean())
  x = D.sample(model, jax.random.key(2), 128)
  assert x.shape == (128, 2) and np.all(np.asarray(m.belongs(x)))
  # samples concentrate around mu (data: E cos = exp(-0.05) = 0.95; uniform: 0)
  assert float(jnp.mean(jnp.cos(x - mu))) > 0.7
  data = m.sample_heat_kernel(jax.random.key(3), mu, jnp.full((16,), 0.1))
  logp, st = D.log_prob_and_stats(model, data, jax.random.key(4))
  assert np.all(np.isfinite(np.asarray(logp))) and st["nfe"] > 0
  # better than the uniform law by a wide margin (the exact density gives about -0.6)
  assert float(jnp.mean(logp)) > -2 * math.log(2 * math.pi) + 1.5


def test_log_prob_integrates_to_one_on_circle(f64):
  m = Torus(1)
  model = D.init(_config(), m, jax.random.key(5))
  # The untrained density is far from flat (max / min ~ 800: the 1/sigma output scale
  # makes the flow contract hard near s = eps), so the grid must be fine.
  theta = jnp.linspace(-math.pi, math.pi, 512, endpoint=False)[:, None]
  logp = np.asarray(D.log_prob(model, theta, jax.random.key(0)))
  p = np.exp(logp)
  assert p.max() / p.min() > 10.0, p.max() / p.min()
  total = p.sum() * 2 * math.pi / 512  # periodic trapezoid rule
  assert abs(total - 1.0) < 1e-4, total


def test_failures_raise():
  m = Torus(1)
  model = D.init(_config(sample_steps=5), m, jax.random.key(0))
  model.net.out.bias[...] = jnp.nan
  with pytest.raises(RuntimeError, match="diffusion log-likelihood"):
    D.log_prob(model, jnp.zeros((2, 1)), jax.random.key(1))
  with pytest.raises(RuntimeError, match="diffusion sampling"):
    D.sample(model, jax.random.key(1), 4)
  with pytest.raises(ValueError, match="off the manifold"):
    D.log_prob(model, jnp.full((2, 1), 5.0), jax.random.key(1))
  with pytest.raises(ValueError, match="compact"):
    D.init(_config(), Euclidean(2), jax.random.key(0))
  with pytest.raises(ValueError, match="sampler"):
    D.init(_config(sampler="heun"), m, jax.random.key(0))


def test_family_registry_and_frozen_config():
  assert get_family("diffusion") is D
  with pytest.raises(ValueError, match="available families: diffusion"):
    get_family("vae")
  with pytest.raises(ValueError, match="not implemented yet"):
    get_family("injective_flow")
  a, b = FrozenConfig(D.default_config()), FrozenConfig(D.default_config())
  assert a == b and hash(a) == hash(b) and a.beta_max == 20.0
  with pytest.raises(AttributeError, match="keys"):
    a.nonexistent


def _implemented(manifold):
  try:
    x = manifold.random_uniform(jax.random.key(0), (2,))
    manifold.heat_kernel_score(x, x, 0.5)
    return True
  except NotImplementedError:
    return False


def test_oracle_log_prob_on_sphere(f64):
  from manifolds import Sphere
  m = Sphere(2)
  if not _implemented(m):
    pytest.skip("Sphere heat kernel not implemented yet in manifolds/")
  cfg = _config(beta_max=40.0)
  cfg.eval.rtol = cfg.eval.atol = 1e-7
  model = OracleModel(m, m.random_uniform(jax.random.key(7), ()), 0.3, cfg)
  mu = model.mu_point(m.dtype)
  x = m.sample_heat_kernel(jax.random.key(1), mu, jnp.full((4,), 0.3))
  ref = m.log_heat_kernel(mu, x, 0.3 + float(model.schedule.tau(1e-3)))
  np.testing.assert_allclose(D.log_prob(model, x, jax.random.key(2)), ref, atol=1e-4)


@pytest.mark.parametrize("spec", ["sphere(2)", "sphere(20)"])
def test_smoke_other_manifolds(spec):
  """A few training steps, sampling and log_prob on spheres (sphere(20) > exact_max_dim:
  Hutchinson divergence).  SU(n) and powers: benchmarks/diffusion_smoke.py (compiling the
  SU heat kernel alone takes ~15 s, too slow for CI)."""
  from manifolds import from_spec
  m = from_spec(spec)
  if not _implemented(m):
    pytest.skip(f"{spec}: heat kernel not implemented yet in manifolds/")
  cfg = _config(sample_steps=10)
  cfg.eval.rtol = cfg.eval.atol = 1e-4
  model = D.init(cfg, m, jax.random.key(0))
  opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  centre = m.random_uniform(jax.random.key(1), ())

  @nnx.jit
  def step(model, opt, key):
    kd, kl = jax.random.split(key)
    batch = m.sample_heat_kernel(kd, centre, jnp.full((16,), 0.2))
    (value, _), grads = nnx.value_and_grad(lambda mm: D.loss(mm, batch, kl), has_aux=True)(model)
    opt.update(model, grads)
    return value

  losses = [float(step(model, opt, k)) for k in jax.random.split(jax.random.key(2), 5)]
  assert np.all(np.isfinite(losses))
  x = D.sample(model, jax.random.key(3), 8)
  assert x.shape == (8,) + tuple(m.shape) and np.all(np.asarray(m.belongs(x)))
  logp, st = D.log_prob_and_stats(model, x[:2], jax.random.key(4))
  assert np.all(np.isfinite(np.asarray(logp))) and st["nfe"] > 0
  assert st["divergence"] == ("hutchinson" if m.dim > 16 else "exact")


def test_likelihood_time_sampling_law():
  """time_sampling='likelihood': tau has density ~ 1 / (1 - e^-tau) on [tau(eps), tau(1)],
  i.e. CDF (log(e^tau - 1) - L0) / (L1 - L0); checked by a KS test against that closed form."""
  from scipy import stats
  eps = 1e-5
  model = D.init(_config(eps=eps, time_sampling="likelihood"), Torus(1), jax.random.key(0))
  s = np.asarray(D._sample_times(model, jax.random.key(1), 20000, jnp.float32), np.float64)
  assert s.min() >= eps and s.max() <= 1.0
  sch = model.schedule
  tau = np.asarray(sch.tau(s))
  lo, hi = math.log(math.expm1(sch.tau(eps))), math.log(math.expm1(sch.tau(1.0)))
  cdf = lambda t: (np.log(np.expm1(t)) - lo) / (hi - lo)
  assert stats.kstest(tau, cdf).pvalue > 1e-3
  # s_of_tau inverts tau(s) down to tiny times
  for s0 in (1e-6, 1e-3, 0.5, 1.0):
    np.testing.assert_allclose(float(sch.s_of_tau(sch.tau(s0))), s0, rtol=1e-5)


def test_log_tau_net_time_spans_unit_interval():
  model = D.init(_config(eps=1e-5, net_time="log_tau"), Torus(1), jax.random.key(0))
  t = np.asarray(model.net.time_input(jnp.asarray([1e-5, 1e-3, 1.0], jnp.float32)))
  np.testing.assert_allclose(t[[0, 2]], [0.0, 1.0], atol=1e-5)
  assert 0.2 < t[1] < 0.6  # log-spaced: tau(1e-3) ~ 1e-4 sits mid-way between 1e-6 and 10
  with pytest.raises(ValueError, match="net_time"):
    D.init(_config(net_time="bogus"), Torus(1), jax.random.key(0))


@pytest.mark.parametrize("steps", [200])
def test_geometric_sample_grid_resolves_tiny_eps(steps):
  """eps = 1e-7 and a data law of width 1e-3 rad: the exact p_eps is a wrapped normal of
  variance v0 + tau(eps).  Steps uniform in s would jump from tau ~ 5e-4 to ~0 in one
  step; the geometric grid reproduces the variance (E sin^2(X - mu) = (1 - e^-2v) / 2)."""
  m = Torus(1)
  mu, v0, n = np.array([1.0]), 1e-6, 4000
  model = OracleModel(m, mu, v0, _config(eps=1e-7, sample_steps=steps,
                                         sample_grid="geometric"))
  grid = np.asarray(D.sample_times(model))
  assert grid.shape == (steps + 1,) and grid[0] == 1.0 and abs(grid[-1] - 1e-7) < 1e-12
  assert np.all(np.diff(grid) < 0)
  x = np.asarray(D.sample(model, jax.random.key(0), n), np.float64)
  s2 = np.sin(x - mu).reshape(n) ** 2
  v = v0 + float(model.schedule.tau(1e-7))
  ref = -math.expm1(-2 * v) / 2
  assert abs(s2.mean() / ref - 1) < 4 * s2.std() / math.sqrt(n) / ref + 0.05, (s2.mean(), ref)
