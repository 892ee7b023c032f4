r"""GFlowNet diffusion samplers for unnormalized densities on R^n and on compact manifolds.

The model learns to sample from pi = R / Z, R = exp(target.log_prob) known only up to Z
(w.r.t. the Riemannian volume), with no data, and estimates log Z.

Trajectories
------------
Time grid t_k = k h, h = 1 / N, k = 0..N (`num_steps` = N).  A trajectory is
tau = (x_0, ..., x_N) on M.

* Base law mu_0: uniform on a compact M; on R^n a point m (`base='point'`) or
  N(m, s^2 I) (`base='gaussian'`, s = `base_std`); m = `base_mean` (every coordinate).
* Forward policy P_F(x_{k+1} | x_k): a mean step exp_x(h f(x, t_k)) plus noise of
  heat-kernel time tau_k = tau_ref exp(range tanh(l(x, t_k))) (tau_ref below; the factor
  only with `learn_variance`, l a network).  The drift is

      f(x, t) = f_ref(x) + net(x, t) [+ lambda(t) clip(grad log R(x))]     (`langevin`),

  net a `nets.VectorField` (outputs projected onto T_x M), lambda(t) a scalar network,
  f_ref the drift of the reference (0 except for the OU reference), so that a zero
  network gives the reference process.  Two kernels (`kernel`):
    'heat'     x_{k+1} ~ p_tau(exp_x(h f), .), the exact heat kernel around the mean step
               (`M.sample_heat_kernel`), density `M.log_heat_kernel`: exact on every M.
               On R^n and on tori this *is* the tangent Gaussian step through exp,
               x + h f + sqrt(tau) z (wrapped on the torus, every image counted).
    'gaussian' x_{k+1} = exp_x(h f + sqrt(tau) z), z ~ N(0, I) in T_x M (geodesic random
               walk); density w.r.t. volume N(v; h f, tau I_d) / |det d exp_x(v)| at
               v = log_x(x_{k+1}) (`M.log_det_exp`).  Exact where exp_x is a
               diffeomorphism (R^n); on a compact M only the principal preimage of
               exp_x is counted, so the density is exact only while every step stays
               inside the injectivity domain.  Steps that leave it are counted in the
               metric `frac_beyond_injectivity` (a step is "inside" when
               log_x(exp_x(v)) = v); prefer 'heat' there.
* Backward policy P_B(x_k | x_{k+1}): the exact time reversal of the reference process
  (fixed, not learned):
    compact M: Brownian motion (generator Laplace-Beltrami / 2) with dX = sigma dB started
      from the uniform law.  Uniform is invariant and the heat kernel symmetric, so the
      reference is reversible: P_B(x_k | x_{k+1}) = p_{tau_ref}(x_{k+1}, x_k),
      tau_ref = sigma^2 h.
    R^n, reference='brownian': X_t = X_0 + sigma W_t, X_0 ~ N(m, s^2) (s = 0: the point m).
      With v_k = s^2 + sigma^2 t_k the pair (X_{t_k}, X_{t_{k+1}}) is Gaussian and
      x_k | x_{k+1} ~ N(m + (v_k / v_{k+1}) (x_{k+1} - m), sigma^2 h v_k / v_{k+1})
      (the Brownian bridge for s = 0; at k = 0 it is the point mass at m, which cancels
      against mu_0).  tau_ref = sigma^2 h.
    R^n, reference='ou' (gaussian base): the OU process reversible w.r.t. N(m, s^2),
      x_{k+1} = m + a (x_k - m) + s sqrt(1 - a^2) z, a = exp(-sigma^2 h / (2 s^2)), so
      P_B has the same form in reverse, tau_ref = s^2 (1 - a^2) and f_ref(x) = (a-1)(x-m)/h.

Why the trajectory log-ratio is exact
-------------------------------------
P(tau) = mu_0(x_0) prod_k P_F(x_{k+1} | x_k) and Q(tau) = pi(x_N) prod_k P_B(x_k | x_{k+1})
are both probability densities on M^{N+1} w.r.t. the product volume, because P_F is the
exact density of the kernel the sampler draws from (above) and P_B is a normalized
transition density.  So the log-weight

    log w(tau) = log R(x_N) + sum_k log P_B(x_k | x_{k+1}) - log mu_0(x_0) - sum_k log P_F

equals log Z + log dQ/dP(tau) exactly, for any N and any drift: the time discretization
only decides how close P can get to Q, never whether the estimates below are valid.
Consequences used by the estimates and tests:
    E_P[w] = Z                       (importance-weighted log Z, `log_z_iw`)
    E_P[log w] = log Z - KL(P || Q)  (ELBO, `log_z_elbo`)
    E_Q[log w] = log Z + KL(Q || P)  (EUBO, `eubo`; x_N ~ pi from target.sample, then P_B)
and for a perfect sampler (P = Q) log w = log Z for every trajectory.  With a zero
network the forward policy is the reference, whose path law factorizes backwards as
q_N(x_N) prod P_B (q_N its marginal: uniform, or N(m, v_N)), so log w = log R(x_N) -
log q_N(x_N): plain importance sampling from the reference marginal.

Objectives (`objective`)
------------------------
  'tb'     trajectory balance  E (log Z_theta - log w)^2 with a learned log Z
           (log Z_theta = log_z_scale * parameter: Adam's step on log Z is log_z_scale
           times the learning rate, as with the separate flow learning rate of
           Sendera et al.).
  'subtb'  sub-trajectory balance with a learned flow (as in Diffusion Generative Flow
           Samplers): with u_k = log F_k(x_k) - sum_{j<k} (log P_F - log P_B)_j, the loss
           is sum_{i<j} lambda^(j-i) (u_i - u_j)^2 / sum_{i<j} lambda^(j-i).  Boundary
           flows log F_0 = log Z_theta + log mu_0(x_0), log F_N = log R(x_N); inside
           log F_k(x) = (1 - t_k)(log Z_theta + log q_k(x)) + t_k log R(x) + F_net(x, t_k)
           (q_k the reference marginal), exact at both ends.  The pair (0, N) is TB.
  'lv'     log-variance: the batch variance of log w (no log Z).
All objectives take detached trajectories (no gradient through the sampling), so on- and
off-policy trajectories are treated alike.

Off-policy training (`make_batch`, the per-step batch of this data-less family)
-----------------------------------------------------------------------------
* exploration: the on-policy trajectories are drawn with extra heat-kernel time
  explore_std^2 h per step (annealed linearly to 0 over `explore_anneal_steps` if > 0);
  their densities are always those of the policy.
* replay buffer (ring of `buffer_capacity` terminal points): a fraction `replay_fraction`
  of each batch comes from it, drawn by rank-based priority p_i ~ 1 / (k n + rank_i)
  (rank 1 = highest priority, n = points stored, k = `buffer_rank_k`) of the reward
  (log R), the log-weight at insertion, or uniformly; their trajectories are drawn with
  P_B from the stored point.
* local search on the terminal points of the on-policy batch, every `ls_every` steps,
  results inserted in the buffer:
    'mala'       Metropolis-adjusted Langevin in target space with the same kernel as the
                 policy: y ~ K(exp_x(eps g(x)), 2 eps), g the clipped Riemannian score of
                 R; accept with min(1, R(y) K_y(x) / (R(x) K_x(y))); eps adapted towards
                 `ls_target_accept` (kept in the family state).  Exact with the 'heat'
                 kernel; with 'gaussian' on a compact M it shares that kernel's
                 principal-branch caveat.
    'backtrack'  "Local Search GFlowNets": K = `ls_backtrack_steps` steps back with P_B
                 to s = x_{N-K}, K forward with P_F to x'.  On the space of (x, back path
                 b, forward path b') the move swaps b and b' after a Gibbs refresh, so
                 the MH ratio is
                   [R(x') P_B(b' | x') P_F(b | s)] / [R(x) P_B(b | x) P_F(b' | s)]
                 = exp(log w_K(b', x') - log w_K(b, x)), log w_K the log-weight of the last
                 K steps.  For a perfect sampler pi(x) P_B(b | x) = p_s(s) P_F(b | s), so
                 the ratio is exactly 1.
    'both'       MALA then backtrack.

Estimates (`evaluate`, into eval.json): log_z_elbo, log_z_iw, ess (normalized:
(sum w)^2 / (n sum w^2)), eubo when target.sample exists, the target's observables (plain
sample mean and self-normalized importance-weighted estimate, vs the exact values), and
where target.log_z exists the errors; also the 2-Wasserstein distance between model and
exact samples (geodesic cost, exact assignment) when `eval_w2_points` > 0.
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

from geogen import integrators, nets
from geogen.models import FrozenConfig
from manifolds.base import Manifold

NEEDS_DATA = False  # trained from target.log_prob alone (geogen.training draws no data)

OBJECTIVES = ("tb", "subtb", "lv")
BASES = ("auto", "uniform", "point", "gaussian")
REFERENCES = ("brownian", "ou")
KERNELS = ("heat", "gaussian")
PRIORITIES = ("reward", "log_weight", "uniform")
LOCAL_SEARCHES = ("none", "mala", "backtrack", "both")


def default_config() -> ml_collections.ConfigDict:
  """The `gflownet` section of the config."""
  c = ml_collections.ConfigDict()
  # ---- sampler
  c.num_steps = 100            # N discretization steps on [0, 1]
  c.sigma = 1.0                # reference diffusion coefficient: heat time sigma^2 h per step
  c.base = "auto"              # 'auto' (uniform on compact M, point on R^n) | 'uniform' |
                               #   'point' | 'gaussian'
  c.base_mean = 0.0            # R^n: centre m of the base law (every coordinate)
  c.base_std = 1.0             # R^n, base='gaussian': standard deviation s
  c.reference = "brownian"     # R^n: 'brownian' | 'ou' (gaussian base); compact M: brownian
  c.kernel = "heat"            # 'heat' (exact on every M) | 'gaussian' (exp of a tangent
                               #   Gaussian, density with log_det_exp)
  c.langevin = False           # drift + lambda(t) clip(grad log R)
  c.score_clip = 100.0         # norm clip of grad log R (Langevin term and MALA)
  c.learn_variance = False     # per-step variance tau_ref exp(range tanh(l(x, t)))
  c.log_var_range = 4.0
  c.zero_init = True           # drift / flow / variance / lambda networks start at 0
  # ---- objective
  c.objective = "tb"           # 'tb' | 'subtb' | 'lv'
  c.subtb_lambda = 1.0         # weight lambda^(j - i) of sub-trajectory (i, j)
  c.log_z_scale = 100.0        # log Z = log_z_scale * parameter (its effective lr multiplier)
  c.log_z_init = 0.0
  # ---- off-policy
  c.replay_fraction = 0.0      # fraction of each batch drawn from the replay buffer
  c.buffer_capacity = 10000
  c.buffer_priority = "reward"  # 'reward' | 'log_weight' | 'uniform'
  c.buffer_rank_k = 0.01
  c.explore_std = 0.0          # extra noise: heat time explore_std^2 h per step
  c.explore_anneal_steps = 0   # linear decay of explore_std to 0 (0: constant)
  c.local_search = "none"      # 'none' | 'mala' | 'backtrack' | 'both' (needs the buffer)
  c.ls_every = 1               # local search every ls_every train steps
  c.ls_mala_steps = 10
  c.ls_mala_step_size = 0.01   # initial eps
  c.ls_target_accept = 0.574   # eps adaptation target (0: fixed eps)
  c.ls_adapt_rate = 0.1
  c.ls_backtrack_steps = 10
  # ---- evaluation
  c.eval_samples = 2000        # trajectories for log Z / ESS / observables
  c.eval_w2_points = 0         # W2 to exact samples on this many points (0: skip)
  return c


def _is_flat_euclidean(m: Manifold) -> bool:
  from manifolds.flat import Euclidean
  from manifolds.power import Power
  return isinstance(m, Euclidean) or (isinstance(m, Power) and isinstance(m.base, Euclidean))


def check_config(c, manifold: Manifold, batch_size: int) -> None:
  """Raise ValueError for settings that do not fit (or do not fit `manifold`)."""
  for key, val, allowed in (("objective", c.objective, OBJECTIVES), ("base", c.base, BASES),
                            ("reference", c.reference, REFERENCES),
                            ("kernel", c.kernel, KERNELS),
                            ("buffer_priority", c.buffer_priority, PRIORITIES),
                            ("local_search", c.local_search, LOCAL_SEARCHES)):
    if val not in allowed:
      raise ValueError(f"gflownet.{key} must be one of {allowed}, got {val!r}")
  if int(c.num_steps) < 1 or not c.sigma > 0:
    raise ValueError("gflownet.num_steps must be >= 1 and gflownet.sigma > 0")
  base = resolve_base(c, manifold)
  if manifold.compact:
    if base != "uniform":
      raise ValueError(f"gflownet on the compact {manifold.spec} needs base 'uniform' (the "
                       f"reversible reference starts there), got {c.base!r}")
    if c.reference != "brownian":
      raise ValueError("gflownet.reference='ou' is for R^n; compact manifolds use Brownian "
                       "motion from the uniform law")
  else:
    if not _is_flat_euclidean(manifold):
      raise ValueError(f"gflownet supports compact manifolds and euclidean(n)[^k]; "
                       f"{manifold.spec} is neither")
    if base == "uniform":
      raise ValueError(f"{manifold.spec} has no uniform law: use base 'point' or 'gaussian'")
    if base == "gaussian" and not c.base_std > 0:
      raise ValueError("gflownet.base_std must be > 0 for base='gaussian'")
    if c.reference == "ou" and base != "gaussian":
      raise ValueError("gflownet.reference='ou' needs base='gaussian' (its invariant law)")
  if not 0.0 <= c.replay_fraction <= 1.0:
    raise ValueError(f"gflownet.replay_fraction must be in [0, 1], got {c.replay_fraction}")
  n_off = num_off_policy(c, batch_size)
  if batch_size - n_off < 1:
    raise ValueError("gflownet.replay_fraction leaves no on-policy trajectory in the batch "
                     "(they fill the buffer)")
  if c.local_search != "none" and n_off == 0:
    raise ValueError("gflownet.local_search puts its results in the replay buffer: set "
                     "gflownet.replay_fraction > 0")
  if n_off and int(c.buffer_capacity) < batch_size:
    raise ValueError("gflownet.buffer_capacity must be >= train.batch_size")
  if c.local_search in ("backtrack", "both") and not 1 <= c.ls_backtrack_steps <= c.num_steps:
    raise ValueError("gflownet.ls_backtrack_steps must be in [1, num_steps]")
  if int(c.ls_every) < 1 or int(c.ls_mala_steps) < 1 or not c.ls_mala_step_size > 0:
    raise ValueError("gflownet.ls_every, ls_mala_steps >= 1 and ls_mala_step_size > 0")
  if int(c.eval_samples) < 2 or int(c.eval_w2_points) < 0 or not c.log_z_scale > 0:
    raise ValueError("gflownet.eval_samples >= 2, eval_w2_points >= 0, log_z_scale > 0")
  if not (c.explore_std >= 0 and c.score_clip > 0 and c.subtb_lambda > 0
          and c.log_var_range > 0 and c.buffer_rank_k > 0):
    raise ValueError("gflownet.explore_std >= 0; score_clip, subtb_lambda, log_var_range, "
                     "buffer_rank_k > 0")


def resolve_base(c, manifold: Manifold) -> str:
  if c.base != "auto":
    return c.base
  return "uniform" if manifold.compact else "point"


def num_off_policy(c, batch_size: int) -> int:
  """Buffer trajectories per batch: round(replay_fraction * batch_size)."""
  return int(round(float(c.replay_fraction) * int(batch_size)))


# ============================================================================ reference
@dataclasses.dataclass(frozen=True)
class Reference:
  """The reference process and base law (static, hashable); see the module docstring."""
  compact: bool
  base: str          # 'uniform' | 'point' | 'gaussian'
  kind: str          # 'brownian' | 'ou'
  num_steps: int
  sigma: float
  mean: float        # R^n base centre m (every coordinate)
  std: float         # R^n base std s (0 for the point base)
  log_volume: float  # compact M (0.0 otherwise)
  dim: int

  @property
  def h(self) -> float:
    return 1.0 / self.num_steps

  @property
  def ou_a(self) -> float:
    return math.exp(-self.sigma**2 * self.h / (2.0 * self.std**2))

  @property
  def step_tau(self) -> float:
    """Heat-kernel time (variance) of one reference step."""
    if self.kind == "ou":
      return self.std**2 * (1.0 - self.ou_a**2)
    return self.sigma**2 * self.h

  def marginal_var(self, t):
    """R^n: variance of the reference marginal at time t (any shape)."""
    if self.kind == "ou":
      return jnp.full(jnp.shape(t), self.std**2)
    return self.std**2 + self.sigma**2 * t


def _gauss_log_prob(d: int, sq, var):
  """log N density in R^d at squared distance sq from the mean, variance var."""
  return -0.5 * d * jnp.log(2.0 * math.pi * var) - 0.5 * sq / var


# ============================================================================ networks
class ScalarNet(nnx.Module):
  """(x, t) -> scalar: MLP on M.input_features(x) (positionally encoded when
  net.input_octaves > 0, as in nets.VectorField) and a sinusoidal time embedding; the
  last layer starts at zero when `zero_init`.  x: (..., *M.shape), t broadcastable to
  (...) -> (...)."""

  def __init__(self, manifold: Manifold, net_cfg, zero_init: bool, *, rngs: nnx.Rngs):
    nets._check_config(net_cfg)
    self.manifold = manifold
    self.act = nets.ACTIVATIONS[net_cfg.activation]
    self.temb_dim, self.temb_freq = int(net_cfg.time_embed_dim), float(net_cfg.time_max_freq)
    self.octaves = int(net_cfg.input_octaves)
    h = int(net_cfg.hidden)
    sizes = ([nets._num_input_features(manifold, self.octaves) + self.temb_dim]
             + [h] * int(net_cfg.depth))
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    init = nnx.initializers.zeros if zero_init else nnx.initializers.lecun_normal()
    self.out = nnx.Linear(h, 1, kernel_init=init, rngs=rngs)

  def __call__(self, x, t):
    f = nets.positional_encoding(self.manifold.input_features(x), self.octaves)
    t = jnp.broadcast_to(jnp.asarray(t, f.dtype), f.shape[:-1])
    h = jnp.concatenate([f, nets.time_embedding(t, self.temb_dim, self.temb_freq)], -1)
    for layer in self.layers:
      h = self.act(layer(h))
    return self.out(h)[..., 0]


class TimeNet(nnx.Module):
  """t -> scalar (the Langevin coefficient lambda(t)); zero-initialized output."""

  def __init__(self, net_cfg, *, rngs: nnx.Rngs):
    self.act = nets.ACTIVATIONS[net_cfg.activation]
    self.temb_dim, self.temb_freq = int(net_cfg.time_embed_dim), float(net_cfg.time_max_freq)
    h = int(net_cfg.hidden)
    self.hidden = nnx.Linear(self.temb_dim, h, rngs=rngs)
    self.out = nnx.Linear(h, 1, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, t):
    e = nets.time_embedding(jnp.asarray(t), self.temb_dim, self.temb_freq)
    return self.out(self.act(self.hidden(e)))[..., 0]


class _Static:
  """Holder of an object kept as a static module attribute (the target: possibly
  unhashable), compared by the identity of that object, so two models built around the
  same target object have equal GraphDefs (jit caches hit) and different targets never
  share a compiled function."""
  __slots__ = ("value",)

  def __init__(self, value):
    self.value = value

  def __eq__(self, other):
    return isinstance(other, _Static) and other.value is self.value

  def __hash__(self):
    return id(self.value)


class GFlowNetModel(nnx.Module):
  """Drift network (+ optional Langevin / variance / flow networks) and learned log Z;
  static: manifold, target, settings (FrozenConfig), reference, batch size."""

  def __init__(self, manifold: Manifold, target, net_cfg, gfn_cfg, batch_size: int, *,
               rngs: nnx.Rngs):
    check_config(gfn_cfg, manifold, int(batch_size))
    if target.manifold is not None and target.manifold != manifold:
      raise ValueError(f"target {target.name!r} lives on {target.manifold.spec}, the config "
                       f"manifold is {manifold.spec}")
    self.manifold = manifold
    self.target = _Static(target)
    self.cfg = FrozenConfig(gfn_cfg)
    self.batch_size = int(batch_size)
    base = resolve_base(gfn_cfg, manifold)
    self.ref = Reference(
        compact=bool(manifold.compact), base=base, kind=str(gfn_cfg.reference),
        num_steps=int(gfn_cfg.num_steps), sigma=float(gfn_cfg.sigma),
        mean=float(gfn_cfg.base_mean), std=float(gfn_cfg.base_std) if base == "gaussian"
        else 0.0, log_volume=float(manifold.log_volume()) if manifold.compact else 0.0,
        dim=int(manifold.dim))
    zi = bool(gfn_cfg.zero_init)
    self.drift = nets.VectorField(manifold, net_cfg, rngs=rngs)
    if zi:  # zero drift at init: the sampler starts as the reference process
      self.drift.out.kernel[...] = jnp.zeros_like(self.drift.out.kernel[...])
      self.drift.out.bias[...] = jnp.zeros_like(self.drift.out.bias[...])
    self.lgv = TimeNet(net_cfg, rngs=rngs) if gfn_cfg.langevin else None
    self.log_var = ScalarNet(manifold, net_cfg, zi, rngs=rngs) if gfn_cfg.learn_variance \
        else None
    self.flow = ScalarNet(manifold, net_cfg, zi, rngs=rngs) if gfn_cfg.objective == "subtb" \
        else None
    # an explicit dtype: a weak-typed scalar would turn strong after the first optimizer
    # update and force a second compilation of the training chunk
    self.log_z_param = nnx.Param(jnp.full((), gfn_cfg.log_z_init / gfn_cfg.log_z_scale,
                                          jnp.result_type(float)))

  def log_z(self):
    """The learned log Z (scalar)."""
    return self.cfg.log_z_scale * self.log_z_param[...]


def init(config, manifold: Manifold, key, target=None) -> GFlowNetModel:
  """Model from the full config (sections `net`, `gflownet`, `train.batch_size`, `target`).
  `target`: a Target object instead of `config.target` (tests, scripts)."""
  if target is None:
    if not config.target:
      raise ValueError("model 'gflownet' needs config.target (a registered target name or "
                       "'module:function')")
    target = _cached_target(config.target, manifold)
  cfg = config.gflownet if "gflownet" in config else default_config()
  return GFlowNetModel(manifold, target, config.net, cfg, int(config.train.batch_size),
                       rngs=nnx.Rngs(params=key))


_TARGETS = {}


def _cached_target(spec: str, manifold: Manifold):
  """geogen.targets.get_target, one object per (spec, manifold, precision) in a process:
  the target is a static attribute compared by identity, so reusing it lets the jitted
  evaluation functions hit their cache across builds (load_run, resumed runs, tests)."""
  from geogen import targets
  key = (spec, manifold.spec, bool(jax.config.jax_enable_x64))
  if key not in _TARGETS:
    _TARGETS[key] = targets.get_target(spec, manifold)
  return _TARGETS[key]


# ============================================================================ target access
def _flat_apply(manifold: Manifold, fn, x):
  """Apply a (B, *M.shape) -> (B,) [or dict / points] function to x of any batch shape."""
  bs = manifold.batch_shape(x)
  flat = jnp.reshape(x, (-1,) + tuple(manifold.shape))
  out = fn(flat)
  return jax.tree_util.tree_map(lambda a: jnp.reshape(a, bs + jnp.shape(a)[1:]), out)


def log_reward(model, x):
  """log R(x) = target.log_prob.  x: (..., *M.shape) -> (...)."""
  t = model.target.value
  x = jnp.asarray(x)
  return _flat_apply(model.manifold, t.log_prob, x).astype(_rdt(x))


def target_score(model, x):
  """Riemannian gradient of log R at x, norm-clipped to `score_clip`.  -> (..., *M.shape).
  Clipping is a fixed function of x, so every density below stays exact."""
  m, t = model.manifold, model.target.value
  x = jnp.asarray(x)
  if t.score is not None:
    g = m.to_tangent(x, _flat_apply(m, t.score, x).astype(x.dtype))
  else:
    g = jax.grad(lambda z: jnp.sum(_flat_apply(m, t.log_prob, z)))(x)
    if m.is_complex:
      g = jnp.conj(g)  # JAX's gradient of a real function of a complex input is conjugated
    g = m.egrad_to_rgrad(x, g)
  n = m.norm(x, g)
  c = model.cfg.score_clip
  scale = jnp.where(n > c, c / jnp.where(n > 0, n, 1.0), 1.0)
  return g * _expand(m, scale).astype(g.dtype)


def _rdt(x):
  return jnp.empty((), jnp.asarray(x).dtype).real.dtype


def _expand(m: Manifold, s):
  s = jnp.asarray(s)
  return s.reshape(s.shape + (1,) * len(m.shape))


# ============================================================================ kernels
def kernel_sample(m: Manifold, kind: str, key, x, mean_step, tau):
  """Draw y from the step kernel at x with mean step `mean_step` (tangent at x) and
  heat time `tau` (batch shape).  -> (..., *M.shape)."""
  if kind == "heat":
    c = m.proj(m.exp(x, mean_step))
    return m.proj(m.sample_heat_kernel(key, c, tau))
  z = m.random_normal_tangent(key, x)
  return m.proj(m.exp(x, mean_step + _expand(m, jnp.sqrt(tau)).astype(z.dtype) * z))


def kernel_log_prob(m: Manifold, kind: str, x, mean_step, tau, y):
  """log density (w.r.t. volume) at y of the step kernel of `kernel_sample`.  -> (...)."""
  if kind == "heat":
    c = m.proj(m.exp(x, mean_step))
    return m.log_heat_kernel(c, y, tau)
  v = m.log(x, y)
  return _gauss_log_prob(m.dim, m.sq_norm(x, v - mean_step), tau) - m.log_det_exp(x, v)


def beyond_injectivity(m: Manifold, x, v, y):
  """True where y = exp_x(v) was reached from outside the domain where log_x inverts
  exp_x (the 'gaussian' kernel then misses preimages).  -> (...) bool."""
  err = m.norm(x, m.log(x, y) - v)
  return err > 1e-3 * (1.0 + m.norm(x, v))


# ============================================================================ policies
def drift(model, x, t):
  """f(x, t), tangent at x.  x: (..., *M.shape), t broadcastable to (...)."""
  m, ref = model.manifold, model.ref
  t = jnp.broadcast_to(jnp.asarray(t, _rdt(x)), m.batch_shape(x))
  f = model.drift(x, t)
  if ref.kind == "ou":
    f = f + (ref.ou_a - 1.0) / ref.h * (x - ref.mean)
  if model.lgv is not None:
    f = f + _expand(m, model.lgv(t)).astype(f.dtype) * target_score(model, x)
  return f


def step_tau(model, x, t):
  """Heat time of the forward step at (x, t).  -> batch shape of x."""
  m = model.manifold
  bs = m.batch_shape(x)
  tau = jnp.full(bs, model.ref.step_tau, _rdt(x))
  if model.log_var is not None:
    t = jnp.broadcast_to(jnp.asarray(t, _rdt(x)), bs)
    tau = tau * jnp.exp(model.cfg.log_var_range * jnp.tanh(model.log_var(x, t)))
  return tau


def log_pf(model, x, y, t):
  """log P_F(y | x) at time t.  x, y: (..., *M.shape), t broadcastable to (...)."""
  m = model.manifold
  return kernel_log_prob(m, model.cfg.kernel, x, model.ref.h * drift(model, x, t),
                         step_tau(model, x, t), y)


def log_pb(model, x, y, k):
  """log P_B(x_k = x | x_{k+1} = y) for step index k (int, broadcastable to the batch).
  For the point base the k = 0 term is 0 (a point mass cancelling mu_0)."""
  m, ref = model.manifold, model.ref
  if ref.compact:
    return m.log_heat_kernel(y, x, jnp.asarray(ref.step_tau, _rdt(x)))
  mean, var = _pb_moments_nd(m, ref, y, k)
  sq = jnp.sum(jnp.reshape(x - mean, m.batch_shape(x) + (-1,)) ** 2, -1)
  safe = jnp.where(var > 0, var, 1.0)
  return jnp.where(var > 0, _gauss_log_prob(ref.dim, sq, safe), 0.0)


def _pb_moments(ref: Reference, y, k):
  """R^n: mean (shape of y) and variance (batch shape) of P_B(. | x_{k+1} = y)."""
  bs = jnp.shape(y)[:-1] if jnp.ndim(y) else ()
  rdt = _rdt(y)
  if ref.kind == "ou":
    a = ref.ou_a
    return ref.mean + a * (y - ref.mean), jnp.full(bs, ref.step_tau, rdt)
  k = jnp.broadcast_to(jnp.asarray(k, rdt), bs)
  vk = ref.marginal_var(k * ref.h)
  vk1 = ref.marginal_var((k + 1.0) * ref.h)
  r = vk / vk1
  mean = ref.mean + r[..., None] * (y - ref.mean)
  return mean, (ref.sigma**2 * ref.h) * r


def _pb_moments_nd(m, ref, y, k):
  """`_pb_moments` for points of any rank (Power(Euclidean) has 2-D points)."""
  flat = jnp.reshape(y, m.batch_shape(y) + (-1,))
  mean, var = _pb_moments(ref, flat, k)
  return jnp.reshape(mean, jnp.shape(y)), var


def backward_step(model, key, y, k):
  """x_k ~ P_B(. | x_{k+1} = y).  k: python int or int array."""
  m, ref = model.manifold, model.ref
  if ref.compact:
    return m.proj(m.sample_heat_kernel(key, y, jnp.asarray(ref.step_tau, _rdt(y))))
  mean, var = _pb_moments_nd(m, ref, y, k)
  z = jax.random.normal(key, jnp.shape(y), jnp.asarray(y).dtype)
  return mean + _expand(m, jnp.sqrt(var)) * z


def base_sample(model, key, num: int):
  """x_0 ~ mu_0.  -> (num, *M.shape) in the manifold's dtype."""
  m, ref = model.manifold, model.ref
  if ref.base == "uniform":
    return m.random_uniform(key, (num,))
  shape = (num,) + tuple(m.shape)
  if ref.base == "point":
    return jnp.full(shape, ref.mean, m.dtype)
  return ref.mean + ref.std * jax.random.normal(key, shape, m.dtype)


def base_log_prob(model, x0):
  """log mu_0(x_0) (0 for the point base, whose point mass cancels P_B at k = 0)."""
  m, ref = model.manifold, model.ref
  bs = m.batch_shape(x0)
  if ref.base == "uniform":
    return jnp.full(bs, -ref.log_volume, _rdt(x0))
  if ref.base == "point":
    return jnp.zeros(bs, _rdt(x0))
  sq = jnp.sum(jnp.reshape(x0 - ref.mean, bs + (-1,)) ** 2, -1)
  return _gauss_log_prob(ref.dim, sq, jnp.asarray(ref.std**2, _rdt(x0)))


def reference_marginal_log_prob(model, x, t):
  """log q_t(x), the reference marginal at time t > 0 (uniform, or N(m, v_t) on R^n)."""
  m, ref = model.manifold, model.ref
  bs = m.batch_shape(x)
  if ref.compact:
    return jnp.full(bs, -ref.log_volume, _rdt(x))
  sq = jnp.sum(jnp.reshape(x - ref.mean, bs + (-1,)) ** 2, -1)
  return _gauss_log_prob(ref.dim, sq, ref.marginal_var(jnp.asarray(t, _rdt(x))))


# ============================================================================ trajectories
def _times(model, k0: int, length: int, rdt):
  return (k0 + jnp.arange(length, dtype=rdt)) * model.ref.h


def sample_forward(model, key, x0, k0: int = 0, length=None, extra_tau=0.0):
  """Run P_F from x0 (B, *M.shape) at step k0 for `length` steps (default to the end).
  -> (xs (B, length+1, *M.shape), beyond (B,) fraction of steps outside the injectivity
  domain ('gaussian' kernel on compact M, else 0))."""
  m = model.manifold
  length = model.ref.num_steps - k0 if length is None else int(length)
  rdt = _rdt(x0)
  ts = _times(model, k0, length, rdt)
  keys = jax.random.split(key, length)
  check = model.cfg.kernel == "gaussian" and m.compact

  def body(x, inp):
    t, kk = inp
    ms = model.ref.h * drift(model, x, t)
    tau = step_tau(model, x, t) + extra_tau
    if check:
      z = m.random_normal_tangent(kk, x)
      v = ms + _expand(m, jnp.sqrt(tau)).astype(z.dtype) * z
      y = m.proj(m.exp(x, v))
      out = beyond_injectivity(m, x, v, y).astype(rdt)
    else:
      y = kernel_sample(m, model.cfg.kernel, kk, x, ms, tau)
      out = jnp.zeros(m.batch_shape(x), rdt)
    return y, (y, out)

  _, (ys, beyond) = jax.lax.scan(body, x0, (ts, keys))
  xs = jnp.concatenate([x0[None], ys], axis=0)
  return jnp.moveaxis(xs, 0, 1), jnp.mean(beyond, axis=0)


def sample_backward(model, key, x_end, k_end=None, length=None):
  """Run P_B from x_end (B, *M.shape) at step k_end (default N) back `length` steps
  (default to 0).  -> xs (B, length+1, *M.shape), time increasing (xs[:, -1] = x_end)."""
  n = model.ref.num_steps
  k_end = n if k_end is None else int(k_end)
  length = k_end if length is None else int(length)
  ks = jnp.arange(k_end - 1, k_end - 1 - length, -1)
  keys = jax.random.split(key, length)

  def body(y, inp):
    k, kk = inp
    x = backward_step(model, kk, y, k)
    return x, x

  _, xs = jax.lax.scan(body, x_end, (ks, keys))
  xs = jnp.concatenate([xs[::-1], x_end[None]], axis=0)
  return jnp.moveaxis(xs, 0, 1)


def step_terms(model, xs, k0: int = 0):
  """(log P_F, log P_B) of every transition of xs (B, L+1, *M.shape) starting at step k0.
  -> two (B, L) arrays.  All steps are evaluated at once (no scan)."""
  rdt = _rdt(xs)
  length = xs.shape[1] - 1
  ts = _times(model, k0, length, rdt)
  ks = k0 + jnp.arange(length)
  x, y = xs[:, :-1], xs[:, 1:]
  return log_pf(model, x, y, ts), log_pb(model, x, y, ks)


def log_weight(model, xs, log_r):
  """log w = log R(x_N) + sum log P_B - log mu_0(x_0) - sum log P_F.  xs (B, N+1, ...)."""
  lpf, lpb = step_terms(model, xs)
  return log_r + jnp.sum(lpb, -1) - base_log_prob(model, xs[:, 0]) - jnp.sum(lpf, -1)


def partial_log_weight(model, xs, log_r, k0: int):
  """log R(x_N) + sum log P_B - sum log P_F over the steps k0..N-1 of xs (B, N-k0+1, ...)."""
  lpf, lpb = step_terms(model, xs, k0)
  return log_r + jnp.sum(lpb, -1) - jnp.sum(lpf, -1)


def sample_trajectories(model, key, num: int, extra_tau=0.0):
  """num forward trajectories from mu_0.  -> (xs (num, N+1, ...), beyond (num,))."""
  k0, k1 = jax.random.split(key)
  x0 = base_sample(model, k0, num)
  return sample_forward(model, k1, x0, 0, None, extra_tau)


# ============================================================================ objectives
def log_flows(model, xs, log_r, log_z):
  """log F_k(x_k), k = 0..N, for SubTB (boundaries exact).  -> (B, N+1)."""
  n = model.ref.num_steps
  rdt = _rdt(xs)
  first = log_z + base_log_prob(model, xs[:, 0])
  if n == 1:
    return jnp.stack([first, log_r], -1)
  inner = xs[:, 1:-1]
  t = _times(model, 1, n - 1, rdt)
  lr_inner = jax.lax.stop_gradient(log_reward(model, inner))
  lq = reference_marginal_log_prob(model, inner, t)
  f = (1.0 - t) * (log_z + lq) + t * lr_inner + model.flow(inner, t)
  return jnp.concatenate([first[:, None], f, log_r[:, None]], -1)


def _subtb_weights(n: int, lam: float) -> np.ndarray:
  """(N+1, N+1) weights lambda^(j-i) on i < j, normalized to sum 1."""
  i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
  w = np.where(j > i, np.power(float(lam), (j - i).astype(np.float64)), 0.0)
  return w / w.sum()


def loss(model, batch, key):
  """GFlowNet objective on detached trajectories.  batch: {'xs': (B, N+1, *M.shape),
  'log_r': (B,), 'on_policy': (B,) 1/0}.  -> (scalar, metrics)."""
  del key
  xs = jax.lax.stop_gradient(batch["xs"])
  log_r = jax.lax.stop_gradient(batch["log_r"])
  lpf, lpb = step_terms(model, xs)
  lb = base_log_prob(model, xs[:, 0])
  lw = log_r + jnp.sum(lpb, -1) - lb - jnp.sum(lpf, -1)
  log_z = model.log_z().astype(lw.dtype)
  obj = model.cfg.objective
  if obj == "tb":
    value = jnp.mean((log_z - lw) ** 2)
  elif obj == "lv":
    value = jnp.mean((lw - jnp.mean(lw)) ** 2)
  else:
    a = log_flows(model, xs, log_r, log_z)
    c = jnp.concatenate([jnp.zeros_like(lw)[:, None], jnp.cumsum(lpf - lpb, -1)], -1)
    u = a - c
    w = jnp.asarray(_subtb_weights(model.ref.num_steps, model.cfg.subtb_lambda), lw.dtype)
    value = jnp.mean(jnp.sum(w * (u[:, :, None] - u[:, None, :]) ** 2, (-2, -1)))
  on = batch.get("on_policy", jnp.ones_like(lw)).astype(lw.dtype)
  n_on = jnp.maximum(jnp.sum(on), 1.0)
  mean_on = jnp.sum(on * lw) / n_on
  metrics = {"loss": value, "log_z": log_z, "log_w_mean": jnp.mean(lw),
             "log_w_std": jnp.std(lw), "log_w_on_policy": mean_on}
  return value, metrics


# ============================================================================ family state
def init_state(model, config, key) -> dict:
  """The mutable family state: replay buffer and local-search settings (a pytree of
  arrays, carried through the training scan and checkpointed).  Empty without buffer."""
  del config
  c = model.cfg
  if num_off_policy(c, model.batch_size) == 0:
    return {}
  cap = int(c.buffer_capacity)
  x = base_sample(model, key, cap)  # valid points; never drawn before being overwritten
  rdt = _rdt(x)
  return {"x": x, "log_r": jnp.zeros((cap,), rdt), "prio": jnp.zeros((cap,), rdt),
          "count": jnp.zeros((), jnp.int32), "ptr": jnp.zeros((), jnp.int32),
          "mala_log_step": jnp.asarray(math.log(c.ls_mala_step_size), rdt),
          "ls_accept_mala": jnp.zeros((), rdt), "ls_accept_backtrack": jnp.zeros((), rdt)}


def buffer_insert(buf: dict, x, log_r, prio) -> dict:
  """Write n points at the ring position (oldest overwritten).  n <= capacity."""
  cap, n = buf["x"].shape[0], x.shape[0]
  idx = (buf["ptr"] + jnp.arange(n, dtype=jnp.int32)) % cap
  return {**buf, "x": buf["x"].at[idx].set(x.astype(buf["x"].dtype)),
          "log_r": buf["log_r"].at[idx].set(log_r.astype(buf["log_r"].dtype)),
          "prio": buf["prio"].at[idx].set(prio.astype(buf["prio"].dtype)),
          "ptr": (buf["ptr"] + n) % cap, "count": jnp.minimum(buf["count"] + n, cap)}


def buffer_logits(buf: dict, priority: str, rank_k: float):
  """Log sampling probabilities (unnormalized) of the buffer slots: rank-based
  1 / (k n + rank), rank 1 = highest priority, -inf on empty slots.  -> (capacity,)."""
  cap = buf["x"].shape[0]
  filled = jnp.arange(cap) < buf["count"]
  if priority == "uniform":
    return jnp.where(filled, 0.0, -jnp.inf)
  p = jnp.where(filled, buf["prio"], -jnp.inf)
  p = jnp.where(jnp.isnan(p), -jnp.inf, p)
  order = jnp.argsort(-p, stable=True)
  rank = jnp.zeros((cap,), jnp.int32).at[order].set(jnp.arange(1, cap + 1, dtype=jnp.int32))
  n = buf["count"].astype(buf["prio"].dtype)
  return jnp.where(filled, -jnp.log(rank_k * n + rank.astype(n.dtype)), -jnp.inf)


def explore_tau(c, h: float, step):
  """Extra heat time per step for exploration at a train step."""
  s2 = float(c.explore_std) ** 2 * h
  if c.explore_anneal_steps > 0:
    frac = jnp.clip(1.0 - step / float(c.explore_anneal_steps), 0.0, 1.0)
    return s2 * frac
  return jnp.asarray(s2)


def mala(model, key, x, log_step, num_steps: int):
  """`num_steps` MALA steps targeting R from x (B, *M.shape) with eps = exp(log_step),
  proposal K(exp_x(eps g(x)), 2 eps) of the policy's kernel kind.
  -> (x, log R(x), mean acceptance probability)."""
  m, kind = model.manifold, model.cfg.kernel
  eps = jnp.exp(log_step)

  def body(carry, kk):
    x, lr, g = carry
    k1, k2 = jax.random.split(kk)
    tau = jnp.full(m.batch_shape(x), 2.0 * eps, lr.dtype)
    y = kernel_sample(m, kind, k1, x, eps * g, tau)
    lry, gy = log_reward(model, y), target_score(model, y)
    log_a = (lry + kernel_log_prob(m, kind, y, eps * gy, tau, x)
             - lr - kernel_log_prob(m, kind, x, eps * g, tau, y))
    log_a = jnp.where(jnp.isnan(log_a), -jnp.inf, log_a)
    acc = jnp.log(jax.random.uniform(k2, lr.shape, lr.dtype)) < log_a
    x = jnp.where(_expand(m, acc), y, x)
    return (x, jnp.where(acc, lry, lr), jnp.where(_expand(m, acc), gy, g)), \
        jnp.mean(jnp.exp(jnp.minimum(log_a, 0.0)))

  init = (x, log_reward(model, x), target_score(model, x))
  (x, lr, _), acc = jax.lax.scan(body, init, jax.random.split(key, num_steps))
  return x, lr, jnp.mean(acc)


def backtrack_rebuild(model, key, x, log_r, num_back: int):
  """One 'Local Search GFlowNets' move from terminal points x (B, *M.shape): back
  num_back steps with P_B, forward again with P_F, MH accept (ratio in the module
  docstring).  -> (x', log R(x'), mean acceptance probability, log acceptance (B,))."""
  m, n = model.manifold, model.ref.num_steps
  kb, kf, ku = jax.random.split(key, 3)
  k0 = n - num_back
  back = sample_backward(model, kb, x, n, num_back)
  fwd, _ = sample_forward(model, kf, back[:, 0], k0, num_back)
  lr_new = log_reward(model, fwd[:, -1])
  log_a = (partial_log_weight(model, fwd, lr_new, k0)
           - partial_log_weight(model, back, log_r, k0))
  log_a = jnp.where(jnp.isnan(log_a), -jnp.inf, log_a)
  acc = jnp.log(jax.random.uniform(ku, log_r.shape, log_r.dtype)) < log_a
  x_new = jnp.where(_expand(m, acc), fwd[:, -1], x)
  return x_new, jnp.where(acc, lr_new, log_r), jnp.mean(jnp.exp(jnp.minimum(log_a, 0.0))), \
      log_a


def _priorities(model, key, x, log_r, log_w=None):
  """Buffer priority of new points: log R, the log-weight (of the given trajectory, else
  of a fresh P_B trajectory), or 0 (uniform)."""
  p = model.cfg.buffer_priority
  if p == "reward":
    return log_r
  if p == "uniform":
    return jnp.zeros_like(log_r)
  if log_w is None:
    log_w = log_weight(model, sample_backward(model, key, x), log_r)
  return log_w


def local_search(model, key, buf, x, log_r):
  """Local search on x (B, *M.shape) per `local_search`; results inserted in the buffer,
  the latest acceptance rates kept in it (so they are logged at any step).  -> buffer."""
  c = model.cfg
  km, kb, kp = jax.random.split(key, 3)
  if c.local_search in ("mala", "both"):
    x, log_r, acc = mala(model, km, x, buf["mala_log_step"], int(c.ls_mala_steps))
    buf = {**buf, "ls_accept_mala": acc.astype(log_r.dtype)}
    if c.ls_target_accept > 0:  # Robbins-Monro step toward the target acceptance
      buf["mala_log_step"] = buf["mala_log_step"] + c.ls_adapt_rate * (
          acc - c.ls_target_accept)
  if c.local_search in ("backtrack", "both"):
    x, log_r, acc, _ = backtrack_rebuild(model, kb, x, log_r, int(c.ls_backtrack_steps))
    buf = {**buf, "ls_accept_backtrack": acc.astype(log_r.dtype)}
  return buffer_insert(buf, x, log_r, _priorities(model, kp, x, log_r))


def make_batch(model, fstate, key, step):
  """The training batch of one step (called by geogen.training inside the jitted scan,
  without gradient): on-policy trajectories (with exploration), local search and buffer
  trajectories.  -> (batch, new family state, metrics)."""
  c = model.cfg
  k_on, k_ls, k_buf, k_bw, k_pr = jax.random.split(key, 5)
  n_off = num_off_policy(c, model.batch_size)
  n_on = model.batch_size - n_off
  xs, beyond = sample_trajectories(model, k_on, n_on, explore_tau(c, model.ref.h, step))
  log_r = log_reward(model, xs[:, -1])
  rdt = log_r.dtype
  metrics = {"explore_tau": explore_tau(c, model.ref.h, step),
             "frac_beyond_injectivity": jnp.mean(beyond)}
  if n_off == 0:
    return {"xs": xs, "log_r": log_r, "on_policy": jnp.ones((n_on,), rdt)}, fstate, metrics
  buf = fstate
  lw_on = log_weight(model, xs, log_r) if c.buffer_priority == "log_weight" else None
  buf = buffer_insert(buf, xs[:, -1], log_r, _priorities(model, k_pr, xs[:, -1], log_r, lw_on))
  if c.local_search != "none":
    buf = jax.lax.cond(step % int(c.ls_every) == 0,
                       lambda b: local_search(model, k_ls, b, xs[:, -1], log_r),
                       lambda b: b, buf)
    if c.local_search in ("mala", "both"):
      metrics.update(ls_accept_mala=buf["ls_accept_mala"],
                     mala_step=jnp.exp(buf["mala_log_step"]))
    if c.local_search in ("backtrack", "both"):
      metrics["ls_accept_backtrack"] = buf["ls_accept_backtrack"]
  idx = jax.random.categorical(k_buf, buffer_logits(buf, c.buffer_priority, c.buffer_rank_k),
                               shape=(n_off,))
  xs_off = sample_backward(model, k_bw, buf["x"][idx])
  batch = {"xs": jnp.concatenate([xs, xs_off.astype(xs.dtype)], 0),
           "log_r": jnp.concatenate([log_r, buf["log_r"][idx]], 0),
           "on_policy": jnp.concatenate([jnp.ones((n_on,), rdt), jnp.zeros((n_off,), rdt)])}
  metrics.update(buffer_count=buf["count"].astype(rdt),
                 buffer_log_r_mean=jnp.mean(buf["log_r"][idx]))
  return batch, buf, metrics


# ============================================================================ sampling
@partial(jax.jit, static_argnums=(0, 3))
def _sample_impl(graphdef, state, key, num):
  model = nnx.merge(graphdef, state)
  xs, _ = sample_trajectories(model, key, num)
  return xs[:, -1], model.manifold.belongs(xs[:, -1])


def sample(model: GFlowNetModel, key, num: int):
  """num samples x_N of the forward policy, (num, *M.shape).  Raises RuntimeError if any
  is non-finite or off M (when called eagerly)."""
  graphdef, state = nnx.split(model)
  x, ok = _sample_impl(graphdef, state, key, int(num))
  if integrators.is_concrete(ok) and not bool(np.all(np.asarray(ok))):
    raise RuntimeError(f"gflownet sampling produced {int(np.sum(~np.asarray(ok)))} of {num} "
                       "points that are non-finite or off the manifold")
  return x


# ============================================================================ estimates
@partial(jax.jit, static_argnums=(0, 3))
def _forward_log_weights_impl(graphdef, state, key, num):
  model = nnx.merge(graphdef, state)
  xs, beyond = sample_trajectories(model, key, num)
  log_r = log_reward(model, xs[:, -1])
  return xs[:, -1], log_weight(model, xs, log_r), beyond


@partial(jax.jit, static_argnums=(0,))
def _backward_log_weights_impl(graphdef, state, key, x):
  model = nnx.merge(graphdef, state)
  xs = sample_backward(model, key, x)
  return log_weight(model, xs, log_reward(model, x))


def _check_log_weights(lw: np.ndarray, what: str) -> np.ndarray:
  """log w may be -inf (R = 0 there), never NaN or +inf."""
  bad = np.isnan(lw) | (lw == np.inf)
  if np.any(bad):
    raise FloatingPointError(f"{what}: {int(np.sum(bad))} of {lw.size} log-weights are NaN "
                             "or +inf (check the target's log_prob and the sampler)")
  return lw


def forward_log_weights(model, key, num: int, batch_size: int):
  """num forward trajectories in chunks of batch_size (one compilation).
  -> numpy (x_N (num, *M.shape), log w (num,) float64, beyond-injectivity fraction (num,))."""
  graphdef, state = nnx.split(model)
  bs = max(1, min(int(batch_size), int(num)))
  xs, lws, bes = [], [], []
  for i in range(-(-int(num) // bs)):
    x, lw, be = _forward_log_weights_impl(graphdef, state, jax.random.fold_in(key, i), bs)
    xs.append(np.asarray(x))
    lws.append(np.asarray(lw, np.float64))
    bes.append(np.asarray(be, np.float64))
  lw = _check_log_weights(np.concatenate(lws)[:num], "forward trajectories")
  return np.concatenate(xs)[:num], lw, np.concatenate(bes)[:num]


def backward_log_weights(model, key, x, batch_size: int) -> np.ndarray:
  """log w of P_B trajectories from the given terminal points x (n, *M.shape), in chunks
  (the last padded by repetition).  -> numpy (n,) float64."""
  graphdef, state = nnx.split(model)
  x = np.asarray(x)
  n = x.shape[0]
  bs = max(1, min(int(batch_size), n))
  out = []
  for i, start in enumerate(range(0, n, bs)):
    xb = x[start:start + bs]
    k = xb.shape[0]
    if k < bs:
      xb = np.concatenate([xb, np.repeat(xb[-1:], bs - k, 0)], 0)
    lw = _backward_log_weights_impl(graphdef, state, jax.random.fold_in(key, i), jnp.asarray(xb))
    out.append(np.asarray(lw, np.float64)[:k])
  return _check_log_weights(np.concatenate(out), "backward trajectories")


def _logsumexp(a: np.ndarray) -> float:
  mx = np.max(a)
  if not np.isfinite(mx):
    return float(mx)
  return float(mx + np.log(np.sum(np.exp(a - mx))))


def log_z_estimates(lw: np.ndarray) -> dict:
  """From forward log-weights (n,): ELBO (mean), importance-weighted estimate
  (logsumexp - log n) and normalized ESS ((sum w)^2 / (n sum w^2))."""
  lw = np.asarray(lw, np.float64)
  n = lw.size
  lse = _logsumexp(lw)
  ess = math.exp(2.0 * lse - _logsumexp(2.0 * lw)) / n if np.isfinite(lse) else 0.0
  return {"log_z_elbo": float(np.mean(lw)), "log_z_iw": lse - math.log(n), "ess": ess,
          "log_w_std": float(np.std(lw))}


def wasserstein2(manifold: Manifold, x, y, batch_size: int = 256) -> float:
  """Exact 2-Wasserstein distance between two equal-size empirical laws on M (geodesic
  cost, optimal assignment by scipy's linear_sum_assignment).  x, y: (n, *M.shape)."""
  from scipy.optimize import linear_sum_assignment
  x, y = np.asarray(x), np.asarray(y)
  if x.shape != y.shape:
    raise ValueError(f"wasserstein2 needs equal sizes, got {x.shape} and {y.shape}")
  d2 = jax.jit(lambda a, b: manifold.dist(a[:, None], b[None, :]) ** 2)
  yj = jnp.asarray(y)
  rows = [np.asarray(d2(jnp.asarray(x[s:s + batch_size]), yj), np.float64)
          for s in range(0, x.shape[0], batch_size)]
  cost = np.concatenate(rows, 0)
  r, c = linear_sum_assignment(cost)
  return float(np.sqrt(np.mean(cost[r, c])))


def observable_estimates(target, x, lw, batch_size: int) -> dict:
  """Target observables on model samples x (n, *M.shape) with forward log-weights lw:
  plain mean (+ s.e.), self-normalized importance-weighted mean, exact value and biases.
  -> flat dict obs_<name>[_stderr|_iw|_exact|_bias|_bias_iw]."""
  if target.observables is None:
    return {}
  vals = {}
  for s in range(0, x.shape[0], batch_size):
    for k, v in target.observables(jnp.asarray(x[s:s + batch_size])).items():
      vals.setdefault(k, []).append(np.asarray(v, np.float64))
  w = np.exp(lw - np.max(lw))
  w = w / np.sum(w)
  exact = dict(target.exact_observables or {})
  out = {}
  for k, parts in vals.items():
    v = np.concatenate(parts)
    mean, iw = float(np.mean(v)), float(np.sum(w * v))
    out.update({f"obs_{k}": mean, f"obs_{k}_stderr": float(np.std(v, ddof=1) /
                                                         math.sqrt(v.size)), f"obs_{k}_iw": iw})
    if k in exact and exact[k] is not None:
      e = float(exact[k])
      out.update({f"obs_{k}_exact": e, f"obs_{k}_bias": mean - e, f"obs_{k}_bias_iw": iw - e})
  return out


def evaluate(model: GFlowNetModel, key, config, final: bool = True) -> dict:
  """Estimates for eval.json (see the module docstring); 'metric' = -log_z_elbo (lower
  is better: the KL(P || Q) up to the constant log Z) chooses the best checkpoint.
  final=False (periodic validation): only the forward-trajectory estimates."""
  c, t, m = model.cfg, model.target.value, model.manifold
  bs = int(config.eval.batch_size) if config is not None and "eval" in config else 512
  n = int(c.eval_samples)
  kf, kr, kb = jax.random.split(key, 3)
  x, lw, beyond = forward_log_weights(model, kf, n, bs)
  out = log_z_estimates(lw)
  out.update(log_z_learned=float(model.log_z()), num_eval_samples=n,
             metric=-out["log_z_elbo"])
  if c.kernel == "gaussian" and m.compact:
    out["frac_beyond_injectivity"] = float(np.mean(beyond))
  if t.log_z is not None:
    lz = float(t.log_z)
    out.update(log_z=lz, log_z_elbo_gap=lz - out["log_z_elbo"],
               log_z_iw_error=out["log_z_iw"] - lz, log_z_iw_abs_error=abs(out["log_z_iw"] - lz),
               log_z_learned_error=out["log_z_learned"] - lz)
  if not final:
    return out
  if t.sample is not None:
    xr = np.asarray(t.sample(kr, n))
    out["eubo"] = float(np.mean(backward_log_weights(model, kb, xr, bs)))
    if t.log_z is not None:
      out["eubo_gap"] = out["eubo"] - float(t.log_z)
    k = min(int(c.eval_w2_points), n)
    if k > 0:
      out["w2"] = wasserstein2(m, x[:k], xr[:k])
      out["w2_points"] = k
  out.update(observable_estimates(t, x, lw, bs))
  return out


def plot_reference(model: GFlowNetModel, key, num: int):
  """What geogen.plots shows next to the model samples: (exact target samples (num, ...)
  or None when the target has none, the target's unnormalized log-density as a numpy
  function for density maps)."""
  t = model.target.value
  ref = None if t.sample is None else np.asarray(t.sample(key, int(num)))
  return ref, lambda x: np.asarray(t.log_prob(jnp.asarray(x)))
