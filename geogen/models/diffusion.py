"""Riemannian score-based diffusion with exact heat-kernel targets.

Forward process.  X_s = B_{tau(s)}, s in [eps, 1], with B the Brownian motion of M
(generator (1/2) Laplace-Beltrami) and the heat-kernel time

    tau(s) = int_0^s beta(r) dr = beta_min s + (beta_max - beta_min) s^2 / 2,
    beta(s) = beta_min + (beta_max - beta_min) s          (linear, as in VP-SDEs),

i.e. dX = sqrt(beta(s)) dB_M, with marginals p_s = data * heat kernel at tau(s).
Noising is exact: x_s = M.sample_heat_kernel(key, x0, tau(s)).

Why the defaults (beta_min 0.1, beta_max 20, eps 1e-3): tau(1) = 10.05.  The slowest
mode of the heat semigroup on the supported manifolds decays like exp(-lambda_1 tau/2),
lambda_1 = 1 on the unit circle / flat torus (the slowest), n on S^n, (n^2-1)/n on SU(n);
on T^d, KL(p_1 || uniform) <= chi^2 / 2 <= d exp(-tau(1)) ~ 4e-5 d nats, so starting the
reverse process (and ending the likelihood ODE) at the uniform law costs < 1e-4 nats per
torus angle, and less elsewhere.  tau(eps) ~ 1.1e-4 (noise scale ~ 0.01 rad, 0.6 degrees).

Loss (denoising score matching, exact target):

    E_s E_{x_s ~ p_tau(x0, .)} lambda(s) |s_theta(x_s, s) - grad log p_tau(x0, x_s)|^2_{x_s},

the norm Riemannian.  With `weighting='variance'`, lambda = sigma^2(tau) where
sigma^2(tau) = 1 - exp(-tau): ~ tau for small tau (the Euclidean variance, so
lambda |target|^2 ~ dim at every small s, as in VP/VE score matching) and -> 1 once the
kernel has spread over the compact M, where the target itself decays and no further
rescaling makes sense.  With `scale_output=True` the network output is divided by
sigma(tau(s)), so the raw net output matches sigma * score, which is O(1) at all s
(the loss becomes |net - sigma target|^2).  Times s are uniform on [eps, 1]
(`time_sampling='stratified'`: one uniform offset + an even grid over the batch, lower
variance).  `time_sampling='likelihood'` draws s with density proportional to
beta(s) / sigma^2(tau(s)), i.e. tau with density ~ 1 / (1 - exp(-tau)) (log-uniform for
small tau, uniform for large): with the variance weighting this is an unbiased
importance-sampled estimate of the likelihood-weighted loss (lambda = beta, Song et al.
2021, which bounds the NLL), and it spends most samples at the small noise levels that
set how sharp p_eps can be (sample tau: log(e^tau - 1) uniform between its values at
tau(eps) and tau(1)).

Network time.  `net_time='s'` feeds s to the time embedding; `net_time='log_tau'` feeds
(log tau(s) - log tau(eps)) / (log tau(1) - log tau(eps)) in [0, 1], which the embedding
resolves at every noise scale (s is ~ constant over all small noise levels when eps is
small, while the scaled score sigma * score still depends on the noise level).

Sampling.  Reverse SDE dX = beta(s) score ds_rev + sqrt(beta(s)) dB by geodesic
Euler-Maruyama from the uniform law at s = 1 down to eps (`sample_steps` steps, uniform
in s or, `sample_grid='geometric'`, uniform in log(e^tau - 1), the quantiles of the
likelihood time law: steps shrink with tau near eps), with
optional Langevin corrector steps (step 2 snr^2 sigma^2(tau(s)), i.e. snr^2 |noise|^2 /
E|score|^2 at small tau); or
(`sampler='ode'`) the probability-flow ODE dx/ds = -(1/2) beta(s) score(x, s) solved
adaptively (solver and tolerances of the eval section).

Likelihood.  Probability-flow ODE from eps to 1 with the divergence integral
(geogen.likelihood), base = uniform law: log p_eps(x) (the data law convolved with the
heat kernel at tau(eps), which is the model density).  Reports the NFE.
"""
from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from geogen import integrators, likelihood, nets
from geogen.models import FrozenConfig
from manifolds.base import Manifold

WEIGHTINGS = ("variance", "none")
TIME_SAMPLINGS = ("uniform", "stratified", "likelihood")
NET_TIMES = ("s", "log_tau")
SAMPLERS = ("sde", "ode")
SAMPLE_GRIDS = ("uniform", "geometric")


def default_config() -> ml_collections.ConfigDict:
  """The `diffusion` section of the config."""
  c = ml_collections.ConfigDict()
  c.beta_min = 0.1            # beta(s) linear from beta_min (s=0) to beta_max (s=1)
  c.beta_max = 20.0           # tau(1) = (beta_min + beta_max) / 2 = 10.05
  c.eps = 1e-3                # smallest diffusion time (model density is p_eps)
  c.weighting = "variance"    # 'variance': lambda = 1 - exp(-tau); 'none': lambda = 1
  c.scale_output = True       # score = net / sigma(tau(s))
  c.time_sampling = "uniform"  # 'uniform' | 'stratified' | 'likelihood' (importance
                              #   sampling of the likelihood weighting, see above)
  c.net_time = "s"            # time fed to the network: 's' | 'log_tau' (normalized)
  c.sampler = "sde"           # 'sde' (reverse SDE, geodesic EM) | 'ode' (probability flow)
  c.sample_steps = 500        # predictor steps of the reverse SDE
  c.sample_grid = "uniform"   # reverse-SDE steps: 'uniform' in s | 'geometric': uniform in
                              #   log(e^tau - 1) (geometric in tau at small tau: needed
                              #   for small eps, where one uniform step spans many scales)
  c.corrector_steps = 0       # Langevin corrector steps after each predictor step
  c.corrector_snr = 0.1       # signal-to-noise ratio of the corrector step size
  return c


def check_config(c) -> None:
  if not (c.beta_min > 0 and c.beta_max >= c.beta_min):
    raise ValueError(f"diffusion needs 0 < beta_min <= beta_max, got {c.beta_min}, {c.beta_max}")
  if not 0 < c.eps < 1:
    raise ValueError(f"diffusion.eps must lie in (0, 1), got {c.eps}")
  for key, val, allowed in (("weighting", c.weighting, WEIGHTINGS),
                            ("time_sampling", c.time_sampling, TIME_SAMPLINGS),
                            ("net_time", c.net_time, NET_TIMES),
                            ("sampler", c.sampler, SAMPLERS),
                            ("sample_grid", c.sample_grid, SAMPLE_GRIDS)):
    if val not in allowed:
      raise ValueError(f"diffusion.{key} must be one of {allowed}, got {val!r}")
  if int(c.sample_steps) < 1 or int(c.corrector_steps) < 0:
    raise ValueError("diffusion.sample_steps must be >= 1 and corrector_steps >= 0")


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Linear beta schedule; s -> heat-kernel time tau(s) (see module docstring)."""
  beta_min: float
  beta_max: float

  def beta(self, s):
    return self.beta_min + (self.beta_max - self.beta_min) * s

  def tau(self, s):
    return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s * s

  def sigma2(self, s):
    """Variance scale 1 - exp(-tau(s)) (~ tau for small tau, -> 1)."""
    return -jnp.expm1(-self.tau(s))

  def s_of_tau(self, tau):
    """Inverse of tau(s) (the positive root of the quadratic, cancellation-free)."""
    a = 0.5 * (self.beta_max - self.beta_min)
    return 2.0 * tau / (self.beta_min + jnp.sqrt(self.beta_min**2 + 4.0 * a * tau))


@dataclasses.dataclass(frozen=True)
class _LogTauTime:
  """Network time (log tau(s) - log tau(eps)) / (log tau(1) - log tau(eps)) (static)."""
  schedule: Schedule
  eps: float

  def __call__(self, s):
    lo = math.log(self.schedule.tau(self.eps))
    hi = math.log(self.schedule.tau(1.0))
    return (jnp.log(self.schedule.tau(s)) - lo) / (hi - lo)


@dataclasses.dataclass(frozen=True)
class _InvSigma:
  """Output scale 1 / sigma(tau(s)) of the score network (hashable, static)."""
  schedule: Schedule

  def __call__(self, s):
    return jax.lax.rsqrt(self.schedule.sigma2(s))


class DiffusionModel(nnx.Module):
  """Score network + static settings.  `model.score(x, s)` is the learned score."""

  def __init__(self, manifold: Manifold, net_cfg, diff_cfg, eval_cfg, *, rngs: nnx.Rngs):
    check_config(diff_cfg)
    likelihood.check_config(eval_cfg)
    if not manifold.compact:
      raise ValueError(f"diffusion needs a compact manifold (uniform base law); "
                       f"{manifold.spec} is not compact")
    self.manifold = manifold
    self.cfg = FrozenConfig(diff_cfg)
    self.eval_cfg = FrozenConfig(eval_cfg)
    self.schedule = Schedule(float(diff_cfg.beta_min), float(diff_cfg.beta_max))
    scale = _InvSigma(self.schedule) if diff_cfg.scale_output else None
    time_input = (_LogTauTime(self.schedule, float(diff_cfg.eps))
                  if diff_cfg.net_time == "log_tau" else None)
    self.net = nets.VectorField(manifold, net_cfg, rngs=rngs, output_scale=scale,
                                time_input=time_input)

  def score(self, x, s):
    """Learned grad log p_s at x.  x: (..., *M.shape), s: scalar or (...)."""
    return self.net(x, s)

  def pf_field(self, x, s):
    """Probability-flow ODE field dx/ds = -(1/2) beta(s) score(x, s)."""
    b = self.schedule.beta(s)
    return -0.5 * integrators.expand(self.manifold, b) * self.score(x, s)


def _section(config, name, default_fn):
  return config[name] if (config is not None and name in config) else default_fn()


def init(config, manifold: Manifold, key) -> DiffusionModel:
  """Model from the full config (sections `net`, `diffusion`, `eval`; defaults for any
  missing section)."""
  return DiffusionModel(manifold, _section(config, "net", nets.default_config),
                        _section(config, "diffusion", default_config),
                        _section(config, "eval", likelihood.default_config),
                        rngs=nnx.Rngs(params=key))


def _sample_times(model, key, batch_size, dtype):
  eps = model.cfg.eps
  if model.cfg.time_sampling == "stratified":
    u = (jnp.arange(batch_size, dtype=dtype) + jax.random.uniform(key, (), dtype)) / batch_size
  else:
    u = jax.random.uniform(key, (batch_size,), dtype)
  if model.cfg.time_sampling == "likelihood":
    return _s_of_likelihood_quantile(model.schedule, eps, u)
  return eps + (1.0 - eps) * u


def _s_of_likelihood_quantile(sched: Schedule, eps: float, u):
  """s whose tau(s) has log(e^tau - 1) at fraction u in [0, 1] of its range over [eps, 1]
  (u uniform: tau with density ~ 1 / (1 - e^-tau))."""
  lo = math.log(math.expm1(sched.tau(eps)))   # static python floats (eps is static)
  hi = math.log(math.expm1(sched.tau(1.0)))
  tau = jnp.logaddexp(0.0, lo + (hi - lo) * u)  # inverse of log(e^tau - 1): log(1 + e^g)
  return jnp.clip(sched.s_of_tau(tau), eps, 1.0)


def sample_times(model: DiffusionModel, dtype=jnp.float32):
  """The reverse-SDE time grid, (sample_steps + 1,) from s = 1 down to eps."""
  c, n = model.cfg, int(model.cfg.sample_steps)
  if c.sample_grid == "geometric":
    s = _s_of_likelihood_quantile(model.schedule, c.eps, jnp.linspace(1.0, 0.0, n + 1,
                                                                        dtype=dtype))
  else:
    s = jnp.linspace(1.0, c.eps, n + 1, dtype=dtype)
  return s.at[0].set(1.0).at[-1].set(c.eps)


def loss(model: DiffusionModel, batch, key):
  """Denoising score matching with the exact heat-kernel score.  batch: (B, *M.shape).

  Returns (loss, metrics) with metrics 'loss' and 'baseline' (the loss of the zero
  score, lambda |target|^2: a scale to compare the loss with).
  """
  m = model.manifold
  batch = jnp.asarray(batch)
  rdt = jnp.empty((), batch.dtype).real.dtype
  bsz = m.batch_shape(batch)[0]
  kt, kn = jax.random.split(key)
  s = _sample_times(model, kt, bsz, rdt)
  tau = model.schedule.tau(s)
  xs = m.sample_heat_kernel(kn, batch, tau)
  target = m.heat_kernel_score(batch, xs, tau)
  pred = model.score(xs, s)
  lam = model.schedule.sigma2(s) if model.cfg.weighting == "variance" else jnp.ones_like(s)
  per_point = lam * m.sq_norm(xs, pred - target)
  value = jnp.mean(per_point)
  baseline = jnp.mean(lam * m.sq_norm(xs, target))
  return value, {"loss": value, "baseline": baseline}


@partial(jax.jit, static_argnums=(0, 3))
def _sample_impl(graphdef, state, key, num):
  model = nnx.merge(graphdef, state)
  m, c = model.manifold, model.cfg
  k0, k1 = jax.random.split(key)
  x1 = m.random_uniform(k0, (num,))
  if c.sampler == "ode":
    e = model.eval_cfg
    x, nfe, ok = integrators.solve_ode(m, model.pf_field, x1, 1.0, c.eps, solver=e.solver,
                                       rtol=e.rtol, atol=e.atol, max_steps=e.max_steps)
    return x, ok
  sched = model.schedule

  def drift(x, s):  # reverse SDE written in decreasing s (step h < 0)
    return -integrators.expand(m, sched.beta(s)) * model.score(x, s)

  corrector = None
  if c.corrector_steps > 0:
    def corrector(key, x, s):
      # step 2 snr^2 sigma^2(s): snr^2 |noise|^2 / |score|^2 with the small-tau scale
      # E|score|^2 ~ dim / sigma^2 (deterministic, so each point is independent of the
      # batch; a per-point |score| would blow the step up near modes where score ~ 0)
      delta = 2.0 * c.corrector_snr**2 * sched.sigma2(s)

      def one(x, k):
        return integrators.langevin_step(m, k, x, model.score(x, s), delta), None
      return jax.lax.scan(one, x, jax.random.split(key, c.corrector_steps))[0]

  x = integrators.sde_euler_maruyama(m, drift, lambda s: jnp.sqrt(sched.beta(s)), k1, x1,
                                     1.0, c.eps, c.sample_steps, corrector=corrector,
                                     times=sample_times(model, x1.real.dtype))
  ok = m.belongs(x)
  return x, ok


def sample(model: DiffusionModel, key, num: int):
  """num samples on M, (num, *M.shape).  Raises RuntimeError if any is non-finite or
  off M (or the ODE solve failed) when called eagerly."""
  graphdef, state = nnx.split(model)
  x, ok = _sample_impl(graphdef, state, key, int(num))
  if integrators.is_concrete(ok):
    integrators.raise_if_failed(ok, f"diffusion sampling ({model.cfg.sampler})")
  return x


@partial(jax.jit, static_argnums=(0,))
def _log_prob_impl(graphdef, state, x, key):
  model = nnx.merge(graphdef, state)
  return likelihood.ode_log_prob(model.manifold, model.pf_field, x, model.cfg.eps, 1.0,
                                 model.eval_cfg, key)


def log_prob_and_stats(model: DiffusionModel, x, key):
  """Model log-density at x (B, *M.shape) w.r.t. Riemannian volume, and stats:
  'nfe' (int: field evaluations of the slowest point = batched network passes),
  'nfe_mean' (float), 'divergence' ('exact' | 'hutchinson').  Raises RuntimeError on
  any failure (solver error, non-finite value) and ValueError for points off M."""
  return likelihood.checked_model_log_prob(
      model, _log_prob_impl, x, key, "diffusion log-likelihood (probability-flow ODE)")


def log_prob(model: DiffusionModel, x, key):
  """(B,) log-density (see `log_prob_and_stats`)."""
  return log_prob_and_stats(model, x, key)[0]
