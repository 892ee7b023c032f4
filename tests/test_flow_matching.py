"""Riemannian flow matching: geodesic paths and velocities against closed forms, the loss
of the exact field, minibatch OT against brute force, base laws, likelihoods and samples of
flows with closed-form densities, failures, and a tiny end-to-end run through training."""
import itertools
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import scipy.linalg
from flax import nnx
from scipy import stats

from geogen import base_law, integrators, likelihood, nets
from geogen.models import flow_matching as F
from geogen.models import get_family
from manifolds import Euclidean, Hyperbolic, Power, Sphere, Torus, from_spec

ENABLE_X64 = True  # geometry checks in float64 (conftest); float32 where a test says so


def _config(solver="bosh3", **fm):
  """Tiny net; bosh3 (3 stages) compiles about twice as fast as dopri5 (CI time)."""
  c = ml_collections.ConfigDict()
  c.net = nets.default_config()
  c.net.hidden, c.net.depth = 16, 1
  c.flow_matching = F.default_config()
  c.flow_matching.update(fm)
  c.eval = likelihood.default_config()
  c.eval.solver = solver
  return c


class FieldModel(F.FlowMatchingModel):
  """A flow-matching model whose velocity is a given field(x, t) (a static function)."""

  def __init__(self, manifold, field, config):
    super().__init__(manifold, config.net, config.flow_matching, config.eval, rngs=nnx.Rngs(0))
    self.field = field

  def velocity(self, x, t):
    return self.field(x, t)


# ------------------------------------------------------------------ independent references
def _sphere_geodesic(x0, x1, t):
  """cos(t th) x0 + sin(t th) e and its t-derivative (great circle, e unit, th = angle)."""
  th = np.arccos(np.clip(np.sum(x0 * x1, -1), -1, 1))[:, None]
  e = x1 - np.cos(th) * x0
  e /= np.linalg.norm(e, axis=-1, keepdims=True)
  t = t[:, None]
  return (np.cos(t * th) * x0 + np.sin(t * th) * e,
          th * (-np.sin(t * th) * x0 + np.cos(t * th) * e))


def _hyperbolic_geodesic(x0, x1, t):
  """cosh(t d) x0 + sinh(t d) e and its t-derivative (Lorentz model)."""
  lor = lambda a, b: -a[:, 0] * b[:, 0] + np.sum(a[:, 1:] * b[:, 1:], -1)
  d = np.arccosh(np.maximum(-lor(x0, x1), 1.0))[:, None]
  e = x1 - np.cosh(d) * x0
  e /= np.sqrt(lor(e, e))[:, None]
  t = t[:, None]
  return (np.cosh(t * d) * x0 + np.sinh(t * d) * e,
          d * (np.sinh(t * d) * x0 + np.cosh(t * d) * e))


def _torus_geodesic(x0, x1, t):
  u = np.mod(x1 - x0 + np.pi, 2 * np.pi) - np.pi
  return np.mod(x0 + t[:, None] * u + np.pi, 2 * np.pi) - np.pi, u


def _su_geodesic(x0, x1, t):
  """x0 expm(t A), A = logm(x0^H x1) (principal, scipy), velocity x_t A."""
  xs, vs = [], []
  for a, b, s in zip(x0, x1, t):
    la = scipy.linalg.logm(a.conj().T @ b)
    xt = a @ scipy.linalg.expm(s * la)
    xs.append(xt)
    vs.append(xt @ la)
  return np.stack(xs), np.stack(vs)


GEODESICS = {"sphere(2)": _sphere_geodesic, "hyperbolic(2)": _hyperbolic_geodesic,
             "torus(3)": _torus_geodesic, "su(2)": _su_geodesic}


def _pairs(m, key, n):
  k0, k1 = jax.random.split(key)
  if m.compact:
    return m.random_uniform(k0, (n,)), m.random_uniform(k1, (n,))
  law = base_law.base_law(m, 1.0)
  return law.sample(k0, (n,)), law.sample(k1, (n,))


# ------------------------------------------------------------------ paths and velocities
@pytest.mark.parametrize("spec", list(GEODESICS))
def test_paths_and_velocities_match_closed_forms(spec):
  m = from_spec(spec)
  x0, x1 = _pairs(m, jax.random.key(0), 6)
  t = jnp.array([0.0, 0.1, 0.35, 0.5, 0.8, 1.0])
  ref_x, ref_v = GEODESICS[spec](np.asarray(x0), np.asarray(x1), np.asarray(t))
  path = F.conditional_path
  for mode in F.VELOCITIES:
    xt, ut = path(m, x0, x1, t, mode)
    np.testing.assert_allclose(xt, ref_x, atol=1e-9)
    np.testing.assert_allclose(ut, ref_v, atol=1e-8)
    # endpoints (t[0] = 0, t[-1] = 1): x_0 = x0, x_1 = x1
    np.testing.assert_allclose(xt[0], x0[0], atol=1e-12)
    np.testing.assert_allclose(m.dist(xt[-1], x1[-1]), 0.0, atol=1e-7)
  # central differences on M: (log_{x_t} x_{t+h} - log_{x_t} x_{t-h}) / 2h -> velocity
  h, tm = 1e-5, jnp.full((6,), 0.4)
  xt, ut = path(m, x0, x1, tm, "transport")
  fd = (m.log(xt, path(m, x0, x1, tm + h, "transport")[0])
        - m.log(xt, path(m, x0, x1, tm - h, "transport")[0])) / (2 * h)
  np.testing.assert_allclose(fd, ut, atol=1e-6)


# ------------------------------------------------------------------ loss
class PointTargetModel(F.FlowMatchingModel):
  """Velocity of the marginal field of a one-point data law {c}: log_x(c) / (1 - t) (the
  remaining geodesic to c, covered in the remaining time), times `scale`."""

  def __init__(self, manifold, c, config):
    super().__init__(manifold, config.net, config.flow_matching, config.eval, rngs=nnx.Rngs(0))
    self.c = tuple(np.asarray(manifold.to_features(c)).tolist())
    self.scale = nnx.Variable(jnp.ones(()))  # a Variable: settable after init

  def velocity(self, x, t):
    m = self.manifold
    c = m.from_features(jnp.asarray(self.c)).astype(x.dtype)
    return self.scale[...] * m.log(x, c) / integrators.expand(m, 1.0 - t)


@pytest.mark.parametrize("spec,coupling", [("sphere(2)", "independent"), ("torus(2)", "ot"),
                                           ("hyperbolic(2)", "independent")])
def test_loss_vanishes_for_the_exact_field_of_one_point(spec, coupling):
  m = from_spec(spec)
  c = _pairs(m, jax.random.key(2), 1)[1][0]
  batch = jnp.broadcast_to(c, (32,) + tuple(m.shape))
  model = PointTargetModel(m, c, _config(coupling=coupling, time_sampling="stratified"))
  loss = lambda mm: F.loss(mm, batch, jax.random.key(3))
  value, met = loss(model)
  assert float(met["cost"]) > 0.3
  assert float(value) < 1e-12 * float(met["cost"]), (float(value), float(met["cost"]))
  # a wrong field (10% too fast) has loss 0.01 x the mean squared path length
  model.scale[...] = jnp.asarray(1.1)
  v_wrong, met_w = loss(model)
  np.testing.assert_allclose(float(v_wrong), 0.01 * float(met_w["cost"]), rtol=1e-6)


def test_late_time_sampling_law_and_log1m_net_time():
  """time_sampling='late': the mixture 1/2 U[0, 1] + 1/2 (1 - t log-uniform on [floor, 1]),
  CDF t/2 + (1/2) log(1 - t)/log(floor) (KS test); net_time='log1m' maps [0, 1] onto [0, 1]."""
  floor = 1e-5
  t = np.asarray(F._sample_times(jax.random.key(0), 20000, jnp.float32, "late", floor),
                 np.float64)
  assert t.min() >= 0.0 and t.max() <= 1.0 - floor * 0.99
  cdf = lambda u: 0.5 * u + 0.5 * np.log1p(-np.minimum(u, 1 - floor)) / math.log(floor)
  assert stats.kstest(t, cdf).pvalue > 1e-3
  model = F.init(_config(net_time="log1m", time_floor=floor), Torus(1), jax.random.key(0))
  tt = np.asarray(model.net.time_input(jnp.asarray([0.0, 0.9, 1.0 - 1e-3, 1.0], jnp.float32)))
  np.testing.assert_allclose(tt[[0, 3]], [0.0, 1.0], atol=1e-4)
  ref = [math.log(u + floor) / math.log(floor) for u in (0.1, 1e-3)]
  np.testing.assert_allclose(tt[1:3], ref, rtol=1e-4)
  for bad in ({"net_time": "s"}, {"time_floor": 0.0}, {"time_sampling": "late_"}):
    with pytest.raises(ValueError, match="flow_matching"):
      F.init(_config(**bad), Torus(1), jax.random.key(0))


# ------------------------------------------------------------------ OT coupling
def test_ot_coupling_is_the_optimal_permutation():
  m = Sphere(2)
  x0, x1 = _pairs(m, jax.random.key(4), 6)
  perm = np.asarray(F.ot_permutation(m, x0, x1))
  assert sorted(perm.tolist()) == list(range(6))
  d2 = np.arccos(np.clip(np.asarray(x1) @ np.asarray(x0).T, -1, 1)) ** 2  # [j, i] data, base
  total = lambda p: sum(d2[j, p[j]] for j in range(6))
  best = min(total(p) for p in itertools.permutations(range(6)))
  assert total(perm) == pytest.approx(best, rel=1e-9)
  assert total(perm) < total(list(range(6)))
  # rows in chunks of 4 (72 // (6 * 3)): a remainder chunk of 2
  np.testing.assert_allclose(F.pairwise_sq_dist(m, x1, x0, max_elements=72), d2, atol=1e-9)


def test_ot_lowers_cost_inside_jit_and_grad():
  m = Torus(2)
  model = F.init(_config(coupling="ot"), m, jax.random.key(0))
  batch = m.random_uniform(jax.random.key(5), (64,))

  @jax.jit
  def run(graphdef, state, keys):  # a lax.scan of value-and-grad steps, as in training
    def body(c, k):
      (v, met), g = jax.value_and_grad(
          lambda s: F.loss(nnx.merge(graphdef, s), batch, k), has_aux=True)(state)
      return c, (met["cost"], optax.tree.norm(g))
    return jax.lax.scan(body, 0, keys)[1]

  cost, gnorm = run(*nnx.split(model), jax.random.split(jax.random.key(6), 3))
  assert np.all(np.isfinite(np.asarray(gnorm)))
  # independent uniform pairs on T^2: E d^2 = 2 * (pi^2 / 3) = 6.58 (s.e. of a batch mean
  # of 64: 0.4); the optimal pairing of the same points is far cheaper
  assert np.all(np.asarray(cost) < 0.5 * 2 * math.pi ** 2 / 3), cost


# ------------------------------------------------------------------ base laws, likelihood
def _zero_model(m, **fm):
  model = F.init(_config(**fm), m, jax.random.key(0))
  model.net.out.kernel[...] = 0.0
  model.net.out.bias[...] = 0.0
  return model


def _wrapped_normal_logp(x, n, s):
  """Closed form on H^n: r = acosh(x0), N(r; tangent Gaussian) / (sinh r / r)^(n-1)."""
  r = np.arccosh(np.maximum(np.asarray(x)[:, 0], 1.0))
  return (-0.5 * n * math.log(2 * math.pi * s * s) - r * r / (2 * s * s)
          - (n - 1) * np.log(np.where(r > 0, np.sinh(r) / np.maximum(r, 1e-300), 1.0)))


@pytest.mark.parametrize("spec,ref", [  # sphere: test_rotation_..., torus: test_contracting_...
    ("su(2)", -math.log(4 * math.sqrt(2) * math.pi ** 2)), ("hyperbolic(3)^2", None)])
def test_zero_field_log_prob_is_the_base_density(spec, ref):
  m = from_spec(spec)
  model = _zero_model(m, base_scale=0.8)
  x = model.base.sample(jax.random.key(7), (5,))
  logp, st = F.log_prob_and_stats(model, x, jax.random.key(8))
  if isinstance(m, Power):  # product of wrapped normals on the H^3 factors
    ref = sum(_wrapped_normal_logp(x[:, i], m.base.n, 0.8) for i in range(m.k))
  np.testing.assert_allclose(logp, np.broadcast_to(ref, (5,)), rtol=1e-12, atol=1e-12)
  assert isinstance(st["nfe"], int) and st["nfe"] > 0
  assert st["divergence"] == "exact"


def test_wrapped_normal_base_radius_law(n=2):
  # r / s of the wrapped normal is chi(n) (the tangent Gaussian's norm; exp_o keeps radii)
  law = base_law.base_law(Hyperbolic(n), 0.6)
  x = np.asarray(law.sample(jax.random.key(9), (3000,)))
  assert np.all(np.asarray(Hyperbolic(n).belongs(jnp.asarray(x))))
  r = np.arccosh(np.maximum(x[:, 0], 1.0)) / 0.6
  assert stats.kstest(r, stats.chi(n).cdf).pvalue > 1e-3
  # spatial direction uniform: mean of unit direction ~ 0
  u = x[:, 1:] / np.linalg.norm(x[:, 1:], axis=-1, keepdims=True)
  assert np.all(np.abs(u.mean(0)) < 4.5 / math.sqrt(3000))


def rotation_field(x, t):
  """(1 + t) * 1.3 * (rotation about the z axis): divergence-free on S^2."""
  return (1.0 + t) * 1.3 * jnp.stack([-x[..., 1], x[..., 0], jnp.zeros_like(x[..., 2])], -1)


A_TORUS = np.array([0.9, 0.4])


def contracting_torus_field(x, t):
  """-a sin(x) per angle: flows towards 0, tan(x_t / 2) = tan(x_0 / 2) e^{-a t}."""
  return -jnp.asarray(A_TORUS, x.dtype) * jnp.sin(x)


def contracting_euclidean_field(x, t):
  return -0.8 * x


def test_rotation_keeps_the_uniform_density_on_the_sphere():
  # div = 0, and also every Hutchinson term z^T J z = 0 (J = A skew on T_x S^2), so the
  # Hutchinson path gives the exact value -log 4 pi too
  cfg = _config()
  cfg.eval.divergence = "hutchinson"
  cfg.eval.rtol = cfg.eval.atol = 1e-6
  m = Sphere(2)
  model = FieldModel(m, rotation_field, cfg)
  x = m.random_uniform(jax.random.key(10), (4,))
  logp, st = F.log_prob_and_stats(model, x, jax.random.key(11))
  np.testing.assert_allclose(logp, -math.log(4 * math.pi), atol=1e-8)
  assert st["divergence"] == "hutchinson"


def test_contracting_flows_have_closed_form_densities_and_samples():
  # torus: x_1 = 2 atan(tan(x_0 / 2) e^{-a}); log p_1(x) = -2 log 2 pi
  #   + sum_d [a_d - log(cos^2(x_d / 2) + e^{2 a_d} sin^2(x_d / 2))]
  # R^2 with base N(0, s^2 I): x_1 = e^{-a} x_0, p_1 = N(0, s^2 e^{-2a} I)
  s, a = 0.7, 0.8
  cases = [  # (manifold, field, exact log p_1, exact flow map, sampler)
      (Torus(2), contracting_torus_field,
       lambda x: -2 * math.log(2 * math.pi) + np.sum(
           A_TORUS - np.log(np.cos(x / 2) ** 2 + np.exp(2 * A_TORUS) * np.sin(x / 2) ** 2), -1),
       lambda x0: 2 * np.arctan(np.tan(x0 / 2) * np.exp(-A_TORUS)), ("adaptive", 1)),
      (Euclidean(2), contracting_euclidean_field,
       lambda x: np.sum(-0.5 * np.log(2 * math.pi * s * s * math.exp(-2 * a))
                        - x * x / (2 * s * s * math.exp(-2 * a)), -1),
       lambda x0: math.exp(-a) * x0, ("rk4", 40))]
  for m, field, ref_logp, ref_map, (sampler, steps) in cases:
    cfg = _config("dopri5", base_scale=s, sampler=sampler, sample_steps=steps)
    cfg.eval.rtol = cfg.eval.atol = 1e-10
    model = FieldModel(m, field, cfg)
    key = jax.random.key(12)
    x, st = F.sample_and_stats(model, key, 6)
    x0 = np.asarray(model.base.sample(key, (6,)))  # the sampler's own base draw
    np.testing.assert_allclose(x, ref_map(x0), atol=1e-6)
    assert st["nfe"] > 0 and (sampler == "adaptive" or st["nfe"] == 4 * steps)
    logp, st = F.log_prob_and_stats(model, x, jax.random.key(13))
    np.testing.assert_allclose(logp, ref_logp(np.asarray(x)), atol=1e-7)


# ------------------------------------------------------------------ sampling on each manifold
@pytest.mark.parametrize("spec,sampler", [("hyperbolic(2)", "rk4"), ("su(2)^2", "euler"),
                                          ("sphere(127)", "midpoint")])
def test_untrained_samples_lie_on_the_manifold(spec, sampler):
  jax.config.update("jax_enable_x64", False)  # float32, as in training
  m = from_spec(spec)
  model = F.init(_config(sampler=sampler, sample_steps=8), m, jax.random.key(1))
  x, st = F.sample_and_stats(model, jax.random.key(2), 16)
  assert x.shape == (16,) + tuple(m.shape) and x.dtype == m.dtype
  assert np.all(np.asarray(m.belongs(x))) and st["nfe"] > 0


# ------------------------------------------------------------------ training
def test_end_to_end_training_writes_eval_json(tmp_path):
  jax.config.update("jax_enable_x64", False)  # float32, as in training
  from geogen import config as gconfig, training
  over = {"model": "flow_matching", "manifold": "torus(2)", "data.name": "synthetic/von_mises",
          "data.num_train": 256, "data.num_val": 32, "data.num_test": 32, "net.hidden": 16,
          "net.depth": 1, "train.num_steps": 200, "train.batch_size": 32, "train.lr": 3e-3,
          "train.warmup_steps": 20, "train.steps_per_dispatch": 100, "train.log_every": 50,
          "train.ckpt_every": 100, "train.eval_every": 200, "train.progress": False,
          "eval.num_plot_samples": 0,
          "eval.rtol": 1e-3, "eval.atol": 1e-3, "eval.batch_size": 32,
          "eval.solver": "bosh3", "flow_matching.coupling": "ot", "flow_matching.velocity": "jvp",
          "flow_matching.sampler": "euler", "flow_matching.sample_steps": 2}
  cfg = gconfig.load_config("configs/quickstart.py", [f"{k}={v}" for k, v in over.items()])
  wd = str(tmp_path / "run")
  training.train_and_evaluate(cfg, wd)
  with open(os.path.join(wd, "eval.json")) as f:
    ev = json.load(f)
  assert ev["model"] == "flow_matching"
  for k in ("val_nll", "test_nll", "kl"):
    assert math.isfinite(ev[k]), k
  assert ev["nfe"] > 0
  # learned something: the uniform law has NLL 2 log 2 pi = 3.68, the data entropy is ~1.96
  assert ev["test_nll"] < 2 * math.log(2 * math.pi) - 0.5, ev["test_nll"]
  recs = [r for r in training.read_metrics(wd) if "cost" in r]
  assert recs and all(math.isfinite(r["loss"]) and r["cost"] > 0 for r in recs)
  # failures raise (never a silent 0): NaN network output in log_prob and in sampling
  _, b, state, _ = training.load_run(wd, load_dataset=True)
  model = training.ema_model(b, state)
  model.net.out.bias[...] = jnp.nan
  with pytest.raises(RuntimeError, match="flow matching log-likelihood"):
    training.nll(b, model, b["dataset"].test, jax.random.key(1), 32)  # as in the evaluation
  with pytest.raises(RuntimeError, match="flow matching sampling"):
    F.sample(model, jax.random.key(1), 4)


# ------------------------------------------------------------------ failures, registry, configs
def test_invalid_input_and_config_raise():
  jax.config.update("jax_enable_x64", False)
  m = Torus(1)
  with pytest.raises(ValueError, match="off the manifold"):
    F.log_prob(F.init(_config(), m, jax.random.key(0)), jnp.full((2, 1), 5.0), jax.random.key(1))
  for bad in ({"coupling": "sinkhorn"}, {"sampler": "heun"}, {"base_scale": 0.0}):
    with pytest.raises(ValueError, match="flow_matching"):
      F.init(_config(**bad), m, jax.random.key(0))
  with pytest.raises(FloatingPointError, match="non-finite"):
    F._assignment_host(np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_registry_and_configs():
  from geogen import config as gconfig
  assert get_family("flow_matching") is F
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  names = ["fm_earth_volcano", "fm_earth_earthquake", "fm_earth_flood", "fm_earth_fire",
           "fm_torus_rna", "fm_synthetic_h2", "fm_synthetic_t4", "fm_synthetic_su3",
           "fm_sphere127"]
  for name in names:
    path = os.path.join(root, "configs", name + ".py")
    cfg = gconfig.load_config(path, [])
    assert cfg.model == "flow_matching", name
    with open(path) as f:
      assert f"python train.py --config configs/{name}.py" in f.read(), name
    m = from_spec(cfg.manifold)
    F.check_config(cfg.flow_matching)
    base_law.base_law(m, cfg.flow_matching.base_scale)  # a base law exists
