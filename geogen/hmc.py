r"""Hamiltonian Monte Carlo on manifolds (the classical baseline for the GFlowNet samplers).

Target: a density pi(x) w.r.t. the Riemannian volume, given by its unnormalized log
``log_prob``: (C, *M.shape) -> (C,) (C independent chains, vectorized as a batch).
Phase space: x in M, momentum v in T_x M, H(x, v) = -log pi(x) + |v|_x^2 / 2, v ~ N(0, I) in
the metric (``M.random_normal_tangent``).  Leapfrog: half kick v += (eps/2) grad log pi(x)
(Riemannian gradient, a shear in the fibre), drift along the geodesic for time eps, half kick.

Drift (the exact geodesic flow, which preserves the Liouville measure and is reversible under
v -> -v, so the Metropolis test exp(H_old - H_new) is exact):
* flat (Euclidean, Torus, powers of them): x <- exp_x(eps v) (a translation, wrapped on the
  torus), v unchanged.
* SU(n) and powers of it (bi-invariant metric): left-trivialized momentum A = U^H v in su(n)
  (the law of U^H ``M.random_normal_tangent``; |A| = |v|); geodesics are U exp(t A), so
  U <- U expm(eps A) (``SpecialUnitary.exp``, re-projected) with A unchanged: the standard
  lattice-QCD update.  Any U <- U phi(eps A) with phi(-X) = phi(X)^-1 is exactly
  volume-preserving and reversible; expm is also the exact geodesic flow.
* any other manifold (spheres, hyperbolic): x(t) = exp_x(t v), and the new momentum is the
  geodesic velocity d/dt exp_x(t v) at t = eps (forward-mode autodiff), valid beyond the
  injectivity radius (it does not use ``transp``, which follows the minimizing geodesic).

Everything is jitted; chains are the batch axis; trajectories are chained with lax.scan.
Step sizes may be adapted per chain by dual averaging during burn-in only (so the samples
after burn-in come from a fixed, exact Markov kernel).  ``jitter`` draws each trajectory's
step size uniformly in eps (1 +- jitter) (independent of the state, so still exact), which
avoids periodic orbits on near-Gaussian targets.

Also: ``effective_sample_size`` (multi-chain, Geyer's initial monotone sequence) and
``annealed_importance_sampling`` (log Z on compact manifolds: uniform -> pi along
pi_t prop. to pi^t, HMC transitions).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from manifolds.flat import Euclidean, Torus
from manifolds.power import Power
from manifolds.special_unitary import SpecialUnitary, matmul, su_project


# ======================================================================== small matrices
def _dag(a):
  return jnp.conj(jnp.swapaxes(a, -1, -2))


# ======================================================================== dynamics
def drift_kind(manifold) -> str:
  """'flat', 'su' or 'geodesic' (see module docstring)."""
  base = manifold.base if isinstance(manifold, Power) else manifold
  if isinstance(base, (Euclidean, Torus)):
    return "flat"
  if isinstance(base, SpecialUnitary):
    return "su"
  return "geodesic"


class Dynamics(NamedTuple):
  """The pieces of leapfrog on one manifold, in a momentum representation p.

  momentum(key, x) -> p ~ N(0, I) in the metric; kinetic(x, p) -> (C,) |p|^2 / 2;
  force(x) -> (log_prob (C,), grad log_prob in the representation of p);
  drift(x, p, eps (C,)) -> (x, p) (geodesic flow for time eps).
  Flat and generic manifolds: p = v in T_x M (ambient).  SU(n): p = A = U^H v in su(n)
  (left-trivialized); |A| = |v|, and the geodesic flow is U -> U exp(eps A), A fixed.
  """
  momentum: Callable
  kinetic: Callable
  force: Callable
  drift: Callable


def _euclidean_grad(log_prob, manifold, x):
  lp, vjp = jax.vjp(log_prob, x)
  (g,) = vjp(jnp.ones_like(lp))
  if manifold.is_complex:
    g = jnp.conj(g)  # JAX returns the conjugate of the real gradient for complex inputs
  return lp, g


def make_dynamics(log_prob, manifold) -> Dynamics:
  """Leapfrog pieces for `manifold` (module docstring)."""
  kind = drift_kind(manifold)
  expand = manifold._expand

  def kinetic(x, p):
    return 0.5 * manifold.sq_norm(x, p)

  if kind == "su":
    def momentum(key, x):
      # = U^H M.random_normal_tangent(key, U): P(Z), Z standard complex normal, P the
      # orthogonal projection onto su(n), i.e. identity covariance in the metric; drawn
      # directly to save the batched matmul.
      rdt = jnp.empty((), x.dtype).real.dtype
      z = jax.random.normal(key, (2,) + x.shape, rdt)
      return su_project(jax.lax.complex(z[0], z[1]))

    def force(x):
      lp, g = _euclidean_grad(log_prob, manifold, x)
      return lp, su_project(matmul(_dag(x), g))

    def drift(x, p, eps):
      e = expand(eps).astype(x.dtype) * p
      return manifold.exp(x, matmul(x, e)), p

    return Dynamics(momentum, kinetic, force, drift)

  def momentum(key, x):
    return manifold.random_normal_tangent(key, x)

  def force(x):
    lp, g = _euclidean_grad(log_prob, manifold, x)
    return lp, manifold.egrad_to_rgrad(x, g)

  if kind == "flat":
    def drift(x, p, eps):
      return manifold.exp(x, expand(eps).astype(p.dtype) * p), p
  else:
    def drift(x, p, eps):
      e = expand(eps).astype(p.dtype)
      y, dy = jax.jvp(lambda t: manifold.exp(x, t * p), (e,), (jnp.ones_like(e),))
      return y, manifold.to_tangent(y, dy)

  return Dynamics(momentum, kinetic, force, drift)


# ======================================================================== kernel
class HMCState(NamedTuple):
  x: jax.Array         # (C, *shape)
  log_prob: jax.Array  # (C,)
  force: jax.Array     # (C, *shape) gradient of log_prob at x (momentum representation)


class HMCInfo(NamedTuple):
  accept_prob: jax.Array   # (C,) min(1, exp(H_old - H_new))
  accepted: jax.Array      # (C,) bool
  delta_h: jax.Array       # (C,) H_new - H_old


def init_state(dyn: Dynamics, x) -> HMCState:
  lp, f = dyn.force(x)
  return HMCState(x, lp, f)


def leapfrog(dyn: Dynamics, manifold, x, p, force, eps, num_steps: int):
  """num_steps leapfrog steps of size eps (C,) from (x, p) with the force at x.

  -> (x, p, log_prob, force) at the end.  Reversible: leapfrog from (x_end, -p_end) returns
  to (x, -p) (up to round-off).
  """
  half = manifold._expand(0.5 * eps)

  def step(carry, _):
    x, p, _, f = carry
    p = p + half.astype(p.dtype) * f
    x, p = dyn.drift(x, p, eps)
    lp, f = dyn.force(x)
    p = p + half.astype(p.dtype) * f
    return (x, p, lp, f), None

  lp0 = jnp.zeros(manifold.batch_shape(x), jnp.empty((), x.dtype).real.dtype)
  (x, p, lp, f), _ = jax.lax.scan(step, (x, p, lp0, force), None, length=num_steps)
  return x, p, lp, f


def make_kernel(dyn: Dynamics, manifold, num_leapfrog: int, jitter: float = 0.0) -> Callable:
  """kernel(key, state, step_size (C,)) -> (state, info): one HMC transition per chain."""
  if num_leapfrog < 1:
    raise ValueError(f"num_leapfrog must be >= 1, got {num_leapfrog}")
  expand = manifold._expand

  def kernel(key, state, step_size):
    # Two random calls per transition (each threefry call adds compile time on CPU).
    kv, ku = jax.random.split(key)
    x0 = state.x
    p0 = dyn.momentum(kv, x0)
    rdt = state.log_prob.dtype
    u = jax.random.uniform(ku, (2,) + step_size.shape, rdt)
    eps = step_size.astype(rdt)
    if jitter > 0:
      eps = eps * (1.0 + jitter * (2.0 * u[1] - 1.0))
    h0 = -state.log_prob + dyn.kinetic(x0, p0)
    x1, p1, lp1, f1 = leapfrog(dyn, manifold, x0, p0, state.force, eps, num_leapfrog)
    dh = (-lp1 + dyn.kinetic(x1, p1)) - h0
    accept_prob = jnp.where(jnp.isfinite(dh), jnp.exp(jnp.minimum(-dh, 0.0)), 0.0)
    accepted = u[0] < accept_prob
    sel = expand(accepted)
    new = HMCState(jnp.where(sel, x1, x0), jnp.where(accepted, lp1, state.log_prob),
                   jnp.where(sel, f1, state.force))
    return new, HMCInfo(accept_prob, accepted, dh)

  return kernel


# ======================================================================== step-size adaptation
class DualAveraging(NamedTuple):
  log_eps: jax.Array
  log_eps_bar: jax.Array
  h_bar: jax.Array
  mu: jax.Array
  count: jax.Array


def _da_init(eps):
  z = jnp.zeros_like(eps)
  return DualAveraging(jnp.log(eps), jnp.log(eps), z, jnp.log(10.0 * eps), z)


def _da_update(s, accept_prob, target, gamma=0.05, t0=10.0, kappa=0.75):
  """Hoffman & Gelman (2014) dual averaging of log step size toward a target acceptance."""
  m = s.count + 1.0
  h = (1.0 - 1.0 / (m + t0)) * s.h_bar + (target - accept_prob) / (m + t0)
  log_eps = s.mu - jnp.sqrt(m) / gamma * h
  eta = m ** (-kappa)
  bar = eta * log_eps + (1.0 - eta) * s.log_eps_bar
  return DualAveraging(log_eps, bar, h, s.mu, m)


# ======================================================================== driver
def _rbg_key(key):
  """An 'rbg' key (XLA RngBitGenerator) derived from any JAX key.  Its draws compile several
  times faster than threefry's on CPU (the per-transition normal / uniform calls dominate the
  compile time of small targets); its statistical quality is ample for MCMC."""
  return jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")


class HMCResult(NamedTuple):
  samples: Optional[jax.Array]  # (num_samples, C, *shape) or None
  observables: dict             # name -> (num_samples, C)
  log_prob: jax.Array           # (num_samples, C)
  accept_rate: jax.Array        # (C,) fraction of accepted trajectories after burn-in
  accept_prob: jax.Array        # (C,) mean Metropolis acceptance probability after burn-in
  step_size: jax.Array          # (C,) step size used after burn-in
  final_state: HMCState


@functools.lru_cache(maxsize=64)
def compiled_run(log_prob, manifold, observables, num_leapfrog, jitter, num_samples,
                  num_burnin, thin, adapt, target_accept, keep_samples):
  dyn = make_dynamics(log_prob, manifold)
  kernel = make_kernel(dyn, manifold, num_leapfrog, jitter)
  total = num_burnin + num_samples * thin

  def run(key, x0, eps0):
    # One scan over all transitions (burn-in and sampling) so the kernel is compiled once;
    # recorded states are written into preallocated buffers.
    state = init_state(dyn, x0)
    c = x0.shape[0]
    rdt = state.log_prob.dtype
    obs_shape = (jax.eval_shape(observables, x0) if observables is not None else {})
    bufs = {"lp": jnp.zeros((num_samples, c), rdt),
            "obs": jax.tree_util.tree_map(lambda a: jnp.zeros((num_samples,) + a.shape, a.dtype),
                                          obs_shape)}
    if keep_samples:
      bufs["x"] = jnp.zeros((num_samples,) + x0.shape, x0.dtype)
    zero = jnp.zeros((c,), rdt)

    def body(carry, inp):
      st, eps, da, bufs, acc, ap = carry
      i, k = inp
      st, info = kernel(k, st, eps)
      burn = i < num_burnin
      if adapt:
        da_new = _da_update(da, info.accept_prob.astype(rdt), target_accept)
        da = jax.tree_util.tree_map(lambda a, b: jnp.where(burn, a, b), da_new, da)
        eps = jnp.where(burn, jnp.exp(da.log_eps), eps)
        eps = jnp.where(i == num_burnin - 1, jnp.exp(da.log_eps_bar), eps)
      j = i - num_burnin + 1
      record = (~burn) & (j % thin == 0)
      slot = jnp.clip(j // thin - 1, 0, num_samples - 1)

      def put(buf, val):
        return buf.at[slot].set(jnp.where(record, val, buf[slot]))

      new = {"lp": put(bufs["lp"], st.log_prob),
             "obs": jax.tree_util.tree_map(put, bufs["obs"],
                                           observables(st.x) if observables is not None else {})}
      if keep_samples:
        new["x"] = put(bufs["x"], st.x)
      acc = acc + jnp.where(burn, 0.0, info.accepted.astype(rdt))
      ap = ap + jnp.where(burn, 0.0, info.accept_prob.astype(rdt))
      return (st, eps, da, new, acc, ap), None

    carry = (state, eps0, _da_init(eps0), bufs, zero, zero)
    inputs = (jnp.arange(total), jax.random.split(_rbg_key(key), total))
    (state, eps, _, bufs, acc, ap), _ = jax.lax.scan(body, carry, inputs)
    n = float(num_samples * thin)
    return bufs.get("x"), bufs["obs"], bufs["lp"], acc / n, ap / n, eps, state

  return jax.jit(run)


def run_hmc(log_prob, manifold, key, init, *, num_samples: int, step_size,
            num_leapfrog: int, num_burnin: int = 0, thin: int = 1,
            adapt_step_size: bool = False, target_accept: float = 0.8, jitter: float = 0.1,
            observables: Optional[Callable] = None, keep_samples: bool = True) -> HMCResult:
  """Run C = init.shape[0] independent HMC chains.

  log_prob: (C, *shape) -> (C,) unnormalized log-density w.r.t. Riemannian volume.
  init: (C, *shape) starting points.  step_size: scalar or (C,).
  num_samples trajectories are recorded after num_burnin, each after `thin` transitions.
  observables: optional x -> {name: (C,)} recorded along the chain (cheaper than samples for
  big lattices; set keep_samples=False to drop the samples).
  The compiled run is cached on (log_prob, manifold, settings): keep the same callables to
  reuse it.
  """
  init = jnp.asarray(init)
  bs = manifold.batch_shape(init)
  if len(bs) != 1:
    raise ValueError(f"init must have shape (C, *M.shape) with one chain axis, got {init.shape}")
  if num_samples < 1 or thin < 1 or num_burnin < 0:
    raise ValueError(f"need num_samples >= 1, thin >= 1, num_burnin >= 0; got {num_samples}, "
                     f"{thin}, {num_burnin}")
  rdt = jnp.empty((), init.dtype).real.dtype
  eps = jnp.broadcast_to(jnp.asarray(step_size, rdt), bs)
  if not bool(jnp.all(eps > 0)):
    raise ValueError(f"step_size must be > 0, got {step_size}")
  run = compiled_run(log_prob, manifold, observables, int(num_leapfrog), float(jitter),
                      int(num_samples), int(num_burnin), int(thin), bool(adapt_step_size),
                      float(target_accept), bool(keep_samples))
  xs, obs, lps, acc, ap, eps, state = run(key, init, eps)
  return HMCResult(xs, obs, lps, acc, ap, eps, state)


# ======================================================================== diagnostics
def effective_sample_size(trace) -> float:
  """Multi-chain ESS of a scalar trace (T, C) (Geyer's initial monotone sequence on the
  chain-averaged autocorrelation, as in Stan / Vehtari et al. 2021 without splitting)."""
  x = np.asarray(trace, np.float64)
  if x.ndim == 1:
    x = x[:, None]
  t, c = x.shape
  if t < 4:
    raise ValueError(f"need at least 4 draws per chain, got {t}")
  xc = x - x.mean(axis=0)
  nfft = 1 << (2 * t - 1).bit_length()
  f = np.fft.rfft(xc, n=nfft, axis=0)
  acov = np.fft.irfft(f * np.conj(f), n=nfft, axis=0)[:t] / t       # (T, C) biased
  w = acov[0].mean() * t / (t - 1.0)                                  # within-chain variance
  b_over_n = x.mean(axis=0).var(ddof=1) if c > 1 else 0.0
  var_plus = (t - 1.0) / t * w + b_over_n
  if var_plus <= 0:
    return float(t * c)
  rho = 1.0 - (w - acov.mean(axis=1)) / var_plus
  rho[0] = 1.0
  # Geyer: sums of consecutive pairs, truncated at the first negative, made monotone.
  npairs = t // 2
  p = rho[: 2 * npairs].reshape(npairs, 2).sum(axis=1)
  neg = np.where(p <= 0)[0]
  p = p[: neg[0]] if neg.size else p
  p = np.minimum.accumulate(p)
  tau = -1.0 + 2.0 * p.sum()
  tau = max(tau, 1.0 / math.log10(max(t * c, 10)))
  return float(t * c / tau)


class AISResult(NamedTuple):
  log_z: float          # log of the mean importance weight times vol(M)
  log_z_se: float       # delta-method standard error of log_z
  ess: float            # effective sample size of the final weights
  log_weights: jax.Array  # (C,)
  samples: jax.Array    # (C, *shape) final states (weighted by exp(log_weights))
  accept_rate: float


def annealed_importance_sampling(log_prob, manifold, key, *, num_chains: int, num_temps: int,
                                 step_size: float, num_leapfrog: int, jitter: float = 0.1,
                                 schedule_power: float = 4.0, dtype=None) -> AISResult:
  """log Z = log int exp(log_prob) dvol on a compact manifold by AIS (Neal 2001).

  Path pi_t prop. to exp(t log_prob), t_k = (k / K)^schedule_power (dense near t = 0 where
  the weights change fastest per unit t), from the uniform law (Z_0 = vol(M)); one HMC
  transition leaving pi_{t_k} invariant per temperature.  Unbiased for Z; log_z has the
  usual downward bias when the weights are degenerate (check `ess`).
  """
  if not manifold.compact:
    raise ValueError(f"AIS from the uniform law needs a compact manifold, got {manifold.spec}")
  k0, k1 = jax.random.split(key)
  x0 = manifold.random_uniform(k0, (num_chains,), dtype)
  ts = (np.arange(num_temps + 1) / num_temps) ** schedule_power
  run = _compiled_ais(log_prob, manifold, int(num_leapfrog), float(jitter))
  lw, x, acc = run(k1, x0, jnp.asarray(ts, jnp.empty((), x0.dtype).real.dtype),
                   jnp.asarray(step_size, jnp.empty((), x0.dtype).real.dtype))
  lw64 = np.asarray(lw, np.float64)
  m = lw64.max()
  w = np.exp(lw64 - m)
  log_z = float(m + np.log(w.mean())) + manifold.log_volume()
  se = float(w.std(ddof=1) / (w.mean() * math.sqrt(len(w))))
  ess = float(w.sum() ** 2 / (w * w).sum())
  return AISResult(log_z, se, ess, lw, x, float(acc))


@functools.lru_cache(maxsize=16)
def _compiled_ais(log_prob, manifold, num_leapfrog, jitter):
  base = make_dynamics(log_prob, manifold)

  def run(key, x0, ts, eps):
    c = x0.shape[0]
    lp0, f0 = base.force(x0)

    def body(carry, inp):
      x, lp, f, lw, acc = carry          # untempered log_prob and force at x
      k, t_prev, t = inp
      lw = lw + (t - t_prev) * lp

      def tempered_force(y):
        l, g = base.force(y)
        return t * l, t.astype(g.dtype) * g

      kernel = make_kernel(base._replace(force=tempered_force), manifold, num_leapfrog, jitter)
      st, info = kernel(k, HMCState(x, t * lp, t.astype(f.dtype) * f),
                        jnp.full((c,), eps, lp.dtype))
      # Undo the tempering (t >= t_1 > 0; relative round-off of one multiply and divide).
      return (st.x, st.log_prob / t, st.force / t.astype(f.dtype), lw,
              acc + jnp.mean(info.accepted.astype(lp.dtype))), None

    n = ts.shape[0] - 1
    keys = jax.random.split(_rbg_key(key), n)
    init = (x0, lp0, f0, jnp.zeros_like(lp0), jnp.zeros((), lp0.dtype))
    (x, _, _, lw, acc), _ = jax.lax.scan(body, init, (keys, ts[:-1], ts[1:]))
    return lw, x, acc / n

  return jax.jit(run)
