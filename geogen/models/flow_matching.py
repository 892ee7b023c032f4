"""Riemannian flow matching with geodesic conditional paths.

Model.  A time-dependent tangent field v_theta(x, t) (``geogen.nets.VectorField``) whose
flow dx/dt = v_theta(x, t), t in [0, 1], carries the base law p_0 (``geogen.base_law``:
uniform on compact M; on H^n, R^n and their powers the wrapped normal exp_o(sigma w),
w ~ N(0, I) in T_o M at the origin o, sigma = ``flow_matching.base_scale``) to the data
law at t = 1.

Conditional paths (premetric = geodesic distance).  For a base point x0 and a data point
x1, the geodesic

    x_t = exp_{x0}(t u),   u = log_{x0}(x1),

has x_0 = x0, x_1 = x1 and velocity  d/dt x_t = P_{x0 -> x_t} u  (parallel transport of
u along the geodesic: a geodesic transports its own velocity).  ``velocity='transport'``
uses that closed form, ``velocity='jvp'`` the forward-mode derivative of t -> x_t (the
tests check they agree).  Loss (conditional flow matching):

    E_t E_{(x0, x1)} |v_theta(x_t, t) - d/dt x_t|^2_{x_t},   t ~ U[0, 1],

the norm Riemannian, averaged over the batch.  Its minimizer is the marginal field
E[d/dt x_t | x_t], whose flow has the marginals of the paths (so p_1 = data law).  On the
sphere the paths are defined for every pair: at the exact antipode ``Sphere.log`` picks a
deterministic minimizing geodesic (a null set, no effect on the loss).

Sharp data (repeated or clustered locations, as in earth/volcano): p_t is the data
blurred at scale ~ (1 - t), so the density the flow reaches at a resolution h is set by
how well the field is learned at 1 - t ~ h.  ``time_sampling='late'`` draws half of the
batch with 1 - t log-uniform on [time_floor, 1] (U[0, 1] almost never visits 1 - t <
1e-3), and ``net_time='log1m'`` feeds log(1 - t + floor) / log(floor) in [0, 1] to the
time embedding, which then resolves every scale of 1 - t (t itself is ~ 1 over all of
them).  Neither changes the minimizer; both are off by default.

Coupling.  ``coupling='independent'``: x0 ~ p_0 independently of the data batch.
``coupling='ot'``: the base batch is re-paired with the data batch by the exact
minibatch optimal assignment under the geodesic cost d(x0, x1)^2 (Hungarian algorithm,
``scipy.optimize.linear_sum_assignment`` on the host through ``jax.pure_callback``;
O(B^3), meant for batches up to a few thousand).  This keeps both marginals (the base
batch is only permuted) and makes the paths cross less, so the learned field is
straighter and the ODE needs fewer steps to sample.  Under data parallelism the
assignment is over the *global* batch: the callback receives the whole (gathered) cost
matrix, so N devices give the same pairing as one device.

Sampling.  Draw x0 ~ p_0 and solve the ODE from t = 0 to 1: ``sampler='adaptive'``
(diffrax, the `eval` section's solver and tolerances, ambient coordinates with tangent
projection, `integrators.solve_ode`) or a fixed-step exp-map scheme
(``'euler' | 'midpoint' | 'rk4'``, ``sample_steps`` steps, `integrators.odeint_fixed`).

Likelihood.  Change of variables along the ODE from the data point at t = 1 back to
t = 0 (`likelihood.ode_log_prob`, adaptive, exact divergence in low dimension and
Hutchinson in high dimension per ``eval.divergence``):

    log p_1(x) = log p_0(x_0) - integral_0^1 div v_theta(x_t, t) dt.

Failures (solver error, NaN, off-manifold output) raise a RuntimeError; NFE is reported.
"""
from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from scipy.optimize import linear_sum_assignment

from geogen import base_law as base_law_lib
from geogen import integrators, likelihood, nets
from geogen.models import FrozenConfig
from manifolds.base import Manifold
from manifolds.flat import Euclidean

COUPLINGS = ("independent", "ot")
VELOCITIES = ("transport", "jvp")
TIME_SAMPLINGS = ("uniform", "stratified", "late")
NET_TIMES = ("t", "log1m")
SAMPLERS = ("adaptive",) + integrators.FIXED_METHODS
# field evaluations per step of the fixed-step schemes (integrators.ode_step)
EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "rk4": 4}


def default_config() -> ml_collections.ConfigDict:
  """The `flow_matching` section of the config."""
  c = ml_collections.ConfigDict()
  c.coupling = "independent"  # 'independent' | 'ot' (exact minibatch OT, cost d(x0, x1)^2)
  c.velocity = "transport"    # target d/dt x_t: 'transport' (closed form) | 'jvp' (autodiff)
  c.time_sampling = "uniform"  # t ~ U[0, 1]: 'uniform' | 'stratified' (even grid + offset) |
                              #   'late' (half uniform, half 1 - t log-uniform on [time_floor, 1])
  c.net_time = "t"            # time fed to the network: 't' | 'log1m' (normalized log(1 - t))
  c.time_floor = 1e-5         # smallest 1 - t resolved by 'late' and 'log1m' (sharp data)
  c.base_scale = 1.0          # sigma of the wrapped-normal base law exp_o(sigma N(0, I)) on
                              #   non-compact M (H^n, R^n, powers); unused on compact M
  c.sampler = "adaptive"      # 'adaptive' (diffrax, eval solver / tolerances) |
                              #   'euler' | 'midpoint' | 'rk4' (fixed-step exp-map schemes)
  c.sample_steps = 100        # steps of the fixed-step samplers
  return c


def check_config(c) -> None:
  for key, val, allowed in (("coupling", c.coupling, COUPLINGS),
                            ("velocity", c.velocity, VELOCITIES),
                            ("time_sampling", c.time_sampling, TIME_SAMPLINGS),
                            ("net_time", c.net_time, NET_TIMES),
                            ("sampler", c.sampler, SAMPLERS)):
    if val not in allowed:
      raise ValueError(f"flow_matching.{key} must be one of {allowed}, got {val!r}")
  if int(c.sample_steps) < 1:
    raise ValueError(f"flow_matching.sample_steps must be >= 1, got {c.sample_steps}")
  if not 0.0 < float(c.time_floor) < 1.0:
    raise ValueError(f"flow_matching.time_floor must be in (0, 1), got {c.time_floor}")
  if not float(c.base_scale) > 0:
    raise ValueError(f"flow_matching.base_scale must be > 0, got {c.base_scale}")


@dataclasses.dataclass(frozen=True)
class _Log1mTime:
  """Network time log(1 - t + floor) / log(floor), 0 at t = 0 and 1 at t = 1 (static)."""
  floor: float

  def __call__(self, t):
    return jnp.log((1.0 - t) + self.floor) / math.log(self.floor)  # 1 - t exact near t = 1


class FlowMatchingModel(nnx.Module):
  """Velocity network + static settings.  `model.velocity(x, t)` is the learned field."""

  def __init__(self, manifold: Manifold, net_cfg, fm_cfg, eval_cfg, *, rngs: nnx.Rngs):
    check_config(fm_cfg)
    likelihood.check_config(eval_cfg)
    self.manifold = manifold
    self.cfg = FrozenConfig(fm_cfg)
    self.eval_cfg = FrozenConfig(eval_cfg)
    self.base = base_law_lib.base_law(manifold, float(fm_cfg.base_scale))
    # Non-compact M: the network works in T_o M (see `velocity`), a Euclidean space.
    self.origin_chart = not manifold.compact
    net_space = Euclidean(manifold.num_features) if self.origin_chart else manifold
    time_input = _Log1mTime(float(fm_cfg.time_floor)) if fm_cfg.net_time == "log1m" else None
    self.net = nets.VectorField(net_space, net_cfg, rngs=rngs, time_input=time_input)

  def velocity(self, x, t):
    """Learned tangent field at x (..., *M.shape), time t scalar or (...).

    Compact M: the network of `geogen.nets` on M's features.  Non-compact M (H^n, R^n,
    powers): input log_o(x), output w projected on T_o M and parallel-transported to x.
    Why: on the hyperboloid the ambient coordinates grow like e^r/2 at distance r from the
    origin, and an ambient network output projected onto T_x M has a Riemannian norm
    growing like e^r too, so the flow of an untrained field escapes to infinity in finite
    time (measured: the adaptive solve failed for 3 of 4 base points).  log_o grows like r
    and transport is an isometry, so |v|_x is what the network outputs."""
    if not self.origin_chart:
      return self.net(x, t)
    m = self.manifold
    x = jnp.asarray(x)
    o = base_law_lib.origin(m, x.dtype)
    w = m.from_features(self.net(m.to_features(m.log(o, x)), t))
    return m.transp(o, x, m.to_tangent(o, w))


def _section(config, name, default_fn):
  return config[name] if (config is not None and name in config) else default_fn()


def init(config, manifold: Manifold, key) -> FlowMatchingModel:
  """Model from the full config (sections `net`, `flow_matching`, `eval`; defaults for
  any missing section)."""
  return FlowMatchingModel(manifold, _section(config, "net", nets.default_config),
                           _section(config, "flow_matching", default_config),
                           _section(config, "eval", likelihood.default_config),
                           rngs=nnx.Rngs(params=key))


# ============================================================================ paths
def conditional_path(manifold: Manifold, x0, x1, t, velocity: str = "transport"):
  """Geodesic x_t = exp_{x0}(t log_{x0} x1) and its velocity d/dt x_t (tangent at x_t).

  x0, x1: (..., *M.shape); t: broadcastable to (...).  -> (x_t, u_t), both (..., *M.shape).
  velocity: 'transport' (P_{x0 -> x_t} log_{x0} x1) or 'jvp' (forward-mode d/dt).
  """
  m = manifold
  x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
  u = m.log(x0, x1)
  rdt = jnp.empty((), u.dtype).real.dtype
  t = jnp.broadcast_to(jnp.asarray(t, rdt), m.batch_shape(u))
  if velocity == "transport":
    xt = m.proj(m.exp(x0, integrators.expand(m, t) * u))
    return xt, m.transp(x0, xt, u)
  if velocity == "jvp":
    path = lambda s: m.proj(m.exp(x0, integrators.expand(m, s) * u))
    xt, ut = jax.jvp(path, (t,), (jnp.ones_like(t),))
    # the derivative is tangent up to round-off; project so the loss sees T_{x_t} M only
    return xt, m.to_tangent(xt, ut)
  raise ValueError(f"velocity must be one of {VELOCITIES}, got {velocity!r}")


# ============================================================================ OT coupling
def pairwise_sq_dist(manifold: Manifold, x, y, max_elements: int = 1 << 22):
  """Squared geodesic distances d(x_i, y_j)^2.  x: (B, *M.shape), y: (C, *M.shape) -> (B, C).

  Rows are computed in chunks of at most ~max_elements ambient numbers at a time (the
  full (B, C, *M.shape) broadcast would not fit for large powers of SU(n))."""
  m = manifold
  per_row = max(1, y.shape[0] * m.num_features)
  chunk = int(max(1, min(x.shape[0], max_elements // per_row)))
  return jax.lax.map(lambda xi: m.dist(xi, y) ** 2, x, batch_size=chunk)


def _assignment_host(cost) -> np.ndarray:
  """Host side of `ot_permutation`: Hungarian algorithm on a (B, B) cost matrix.
  -> (B,) int32, col[j] = column assigned to row j."""
  cost = np.asarray(cost, np.float64)
  if not np.all(np.isfinite(cost)):
    raise FloatingPointError(f"OT coupling: {int(np.sum(~np.isfinite(cost)))} non-finite "
                             "geodesic costs (NaN/inf points in the batch?)")
  rows, cols = linear_sum_assignment(cost)
  out = np.empty(cost.shape[0], np.int32)
  out[rows] = cols
  return out


def ot_permutation(manifold: Manifold, x0, x1):
  """Exact minibatch OT: perm (B,) int32 such that the pairs (x0[perm[j]], x1[j]) minimize
  sum_j d(x0[perm[j]], x1[j])^2 over all permutations.  x0, x1: (B, *M.shape).

  Runs scipy on the host (`jax.pure_callback`); works under jit / lax.scan / grad (no
  gradient flows through the assignment) and under data parallelism (global batch)."""
  cost = jax.lax.stop_gradient(pairwise_sq_dist(manifold, x1, x0))  # rows: data points
  out = jax.ShapeDtypeStruct((cost.shape[0],), jnp.int32)
  return jax.pure_callback(_assignment_host, out, cost, vmap_method="sequential")


# ============================================================================ loss
def _sample_times(key, batch_size: int, dtype, mode: str, floor: float = 1e-5):
  """(B,) times in [0, 1)."""
  if mode == "stratified":
    return (jnp.arange(batch_size, dtype=dtype) + jax.random.uniform(key, (), dtype)) / batch_size
  if mode == "late":
    # The field resolves the data at scale ~ (1 - t) (x_t is x1 blurred by a geodesic
    # of length (1 - t) d(x0, x1)), so sharp data needs training near t = 1, which U[0, 1]
    # almost never visits: 1 - t log-uniform on [floor, 1] for half of the batch.  Any
    # time law with full support has the same minimizer (the marginal field at each t).
    ku, kl, kc = jax.random.split(key, 3)
    late = -jnp.expm1(math.log(floor) * jax.random.uniform(kl, (batch_size,), dtype))
    return jnp.where(jax.random.bernoulli(kc, 0.5, (batch_size,)), late,
                     jax.random.uniform(ku, (batch_size,), dtype))
  return jax.random.uniform(key, (batch_size,), dtype)


def loss(model: FlowMatchingModel, batch, key):
  """Conditional flow matching loss.  batch: (B, *M.shape) data points (x1).

  Returns (loss, metrics): 'loss' and 'cost', the mean squared geodesic length
  d(x0, x1)^2 of the (coupled) pairs, which is also the loss of the zero field (|u_t| is
  constant along a geodesic): a scale for the loss, and lower with OT coupling.
  """
  m, c = model.manifold, model.cfg
  x1 = jnp.asarray(batch)
  bsz = m.batch_shape(x1)[0]
  rdt = jnp.empty((), x1.dtype).real.dtype
  kb, kt = jax.random.split(key)
  x0 = model.base.sample(kb, (bsz,), x1.dtype)
  if c.coupling == "ot":
    x0 = x0[ot_permutation(m, x0, x1)]
  t = _sample_times(kt, bsz, rdt, c.time_sampling, float(c.time_floor))
  xt, ut = conditional_path(m, x0, x1, t, c.velocity)
  pred = model.velocity(xt, t)
  value = jnp.mean(m.sq_norm(xt, pred - ut))
  cost = jnp.mean(m.sq_norm(xt, ut))
  return value, {"loss": value, "cost": cost}


# ============================================================================ sampling
@partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _sample_impl(graphdef, state, key, num, sampler, steps):
  model = nnx.merge(graphdef, state)
  m = model.manifold
  x0 = model.base.sample(key, (num,))
  if sampler == "adaptive":
    e = model.eval_cfg
    x, nfe, ok = integrators.solve_ode(m, model.velocity, x0, 0.0, 1.0, solver=e.solver,
                                       rtol=float(e.rtol), atol=float(e.atol),
                                       max_steps=int(e.max_steps))
  else:
    x = integrators.odeint_fixed(m, model.velocity, x0, 0.0, 1.0, steps, sampler)
    nfe = jnp.full((num,), steps * EVALS_PER_STEP[sampler], jnp.int32)
    ok = jnp.ones((num,), bool)
  return x, nfe, ok & m.belongs(x)


def sample_and_stats(model: FlowMatchingModel, key, num: int, sampler=None, steps=None):
  """num samples (num, *M.shape) and stats {'nfe' (int, max over points), 'nfe_mean'}.

  sampler / steps override the config's `flow_matching.sampler` / `sample_steps`
  ('adaptive' uses the eval section's solver and tolerances).  Raises RuntimeError if
  the solve failed or any sample is non-finite / off M (when called eagerly)."""
  sampler = model.cfg.sampler if sampler is None else sampler
  steps = int(model.cfg.sample_steps if steps is None else steps)
  if sampler not in SAMPLERS or steps < 1:
    raise ValueError(f"sampler must be one of {SAMPLERS} and steps >= 1, got {sampler!r}, {steps}")
  graphdef, state = nnx.split(model)
  x, nfe, ok = _sample_impl(graphdef, state, key, int(num), sampler, steps)
  return x, integrators.checked_nfe_stats(nfe, ok, f"flow matching sampling ({sampler})")


def sample(model: FlowMatchingModel, key, num: int):
  """num samples on M, (num, *M.shape) (see `sample_and_stats`)."""
  return sample_and_stats(model, key, num)[0]


# ============================================================================ likelihood
@partial(jax.jit, static_argnums=(0,))
def _log_prob_impl(graphdef, state, x, key):
  model = nnx.merge(graphdef, state)
  # data side t = 1, base side t = 0 (the solver integrates backwards in time)
  return likelihood.ode_log_prob(model.manifold, model.velocity, x, 1.0, 0.0, model.eval_cfg,
                                 key, base_log_prob=model.base.log_prob)


def log_prob_and_stats(model: FlowMatchingModel, x, key):
  """Model log-density at x (B, *M.shape) w.r.t. Riemannian volume, and stats:
  'nfe' (int: field evaluations of the slowest point), 'nfe_mean' (float),
  'divergence' ('exact' | 'hutchinson').  Raises RuntimeError on any failure (solver
  error, non-finite value) and ValueError for points off M."""
  return likelihood.checked_model_log_prob(
      model, _log_prob_impl, x, key, "flow matching log-likelihood (ODE)")


def log_prob(model: FlowMatchingModel, x, key):
  """(B,) log-density (see `log_prob_and_stats`)."""
  return log_prob_and_stats(model, x, key)[0]
