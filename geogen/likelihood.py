"""Log-likelihoods by the change of variables along an ODE on a manifold (generic).

For dx/dt = f(x, t) carrying the density p_t (continuity equation
d/dt p_t + div(p_t f) = 0), along a trajectory d/dt log p_t(x_t) = -div f(x_t, t), so

    log p_{t0}(x) = log p_{t1}(x_{t1}) + integral_{t0}^{t1} div f(x_t, t) dt,     x_{t0} = x,

with div the Riemannian divergence and p_{t1} the base law (uniform on a compact M by
default).  The state (x, integral) is solved jointly by an adaptive diffrax solver
(`geogen.integrators.diffrax_solve`), one point at a time under vmap.

Divergence on an embedded M.  Work in the real ambient features (``M.to_features``;
real and imaginary parts for SU(n)).  Let P = P_x be the metric-orthogonal projection
onto T_x M (``M.to_tangent``, a real-linear map) and J the ambient Jacobian at x of any
smooth extension G of the field.  The Levi-Civita derivative is nabla_u f = P J u for
tangent u (Gauss formula; this holds for the induced Euclidean metric of spheres, tori
and SU(n) with Re tr(X^H Y), and for the Lorentzian ambient of the hyperboloid), so

    div_M f(x) = trace of (u -> P J u) on T_x M = tr(P J P) = sum_k <P^T b_k, J P b_k>,

b_k an ambient basis, <.,.> the plain dot product of features (the trace needs no
orthonormal tangent basis; P^T = P except on the hyperboloid).  We take
G(y) = P_y f(y, t), with no projection of y onto M inside the derivative (so no
SVD/normalization is differentiated).
  * 'exact':      the sum above, one JVP per ambient real coordinate (vmapped).
  * 'hutchinson': <P^T r, J P r> with r Rademacher or Gaussian (E[r r^T] = I), unbiased
                  since E[r^T A r] = tr(A) for A = P J P; the probes are drawn once per
                  point and kept along the trajectory (as in FFJORD).  With P symmetric
                  this is <z, J z>, z = P r, a probe in the tangent space.
  * 'auto':       exact when M.dim <= exact_max_dim, else Hutchinson.

Chart coordinates (M.has_global_chart: the hyperboloid and its powers).  The ambient trace
above is exact in exact arithmetic but ill-conditioned on the hyperboloid: the Lorentz
projection P of an ambient unit vector has size ~ x0^2 ~ e^(2r)/4, so each term of the sum
is ~ e^(4r) times the field's derivative while the trace is O(1).  Measured on a trained
flow-matching field on H^2 in float32: at r = 5 the ambient divergence had a round-off
spread of 30-55 around a true value of -7, so the step controller (which bounds the error
of the log-density too) shrank the step to ~1e-5 (40% of steps rejected) and hit
max_steps for points whose backward trajectory went past r ~ 4-5 (238 of the first 1024
points of its density grid, r0 <= 4.2).  There both the ODE state and the divergence use
the chart c = M.to_chart(x) in R^dim instead (the worst of those points then takes ~22
steps in float32, as in float64): with c' = d(to_chart)_x f the chart components of the
field (f must be tangent, as every geogen field is; it is not re-projected, see
`chart_field_and_divergence`),

    div_M f = tr(d c' / d c) + <grad_c log sqrt(det g(c)), c'>,

(the coordinate formula (1/sqrt g) d_i(sqrt g c'^i)), whose terms are O(1); the trace is
exact (one JVP per chart coordinate) or Hutchinson with probes in R^dim.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from geogen import integrators
from manifolds.base import Manifold

DIVERGENCES = ("auto", "exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def default_config() -> ml_collections.ConfigDict:
  """Likelihood settings (the base of the `eval` config section)."""
  c = ml_collections.ConfigDict()
  c.solver = "dopri5"        # 'dopri5' | 'tsit5' | 'dopri8' | 'bosh3' (diffrax, adaptive)
  c.rtol = 1e-5              # relative tolerance of the PID step controller
  c.atol = 1e-5              # absolute tolerance (max-norm over x and the log-density)
  c.max_steps = 4096         # solver steps per point before the solve counts as failed
  c.divergence = "auto"      # 'auto' | 'exact' | 'hutchinson'
  c.exact_max_dim = 16       # 'auto' uses the exact divergence up to this manifold dim
  c.num_probes = 1           # Hutchinson probes per point (averaged)
  c.probe = "rademacher"     # 'rademacher' | 'gaussian' (ambient, then projected)
  return c


def check_config(cfg) -> None:
  if cfg.divergence not in DIVERGENCES:
    raise ValueError(f"divergence must be one of {DIVERGENCES}, got {cfg.divergence!r}")
  if cfg.probe not in PROBES:
    raise ValueError(f"probe must be one of {PROBES}, got {cfg.probe!r}")
  if int(cfg.num_probes) < 1:
    raise ValueError(f"num_probes must be >= 1, got {cfg.num_probes}")
  integrators.adaptive_solver(cfg.solver)  # raises for an unknown solver
  if not (cfg.rtol > 0 and cfg.atol > 0):
    raise ValueError(f"rtol and atol must be > 0, got {cfg.rtol}, {cfg.atol}")


def divergence_mode(cfg, manifold: Manifold) -> str:
  """'exact' or 'hutchinson' for this manifold under cfg.divergence."""
  if cfg.divergence == "auto":
    return "exact" if manifold.dim <= int(cfg.exact_max_dim) else "hutchinson"
  return cfg.divergence


# ------------------------------------------------------------------ divergence at one point
def _feature_maps(manifold: Manifold, f: Callable, dtype):
  """Field and tangent projection as maps of real ambient features (one point):
  to_point(r), G(r, t) (the extended field) and P(x, r) (linear in r)."""
  m = manifold

  def to_point(r):
    return m.from_features(r).astype(dtype)

  def G(r, t):  # extension of the field off M: P_y f(y, t)
    y = to_point(r)
    return m.to_features(m.to_tangent(y, f(y, t)))

  def P(x, r):  # projection onto T_x M of an ambient feature vector r
    return m.to_features(m.to_tangent(x, to_point(r)))

  return to_point, G, P


def field_and_divergence(manifold: Manifold, f: Callable, x, t, probes=None):
  """Tangent field value and its Riemannian divergence at ONE point x (shape M.shape).

  probes None: exact divergence (one JVP per ambient real coordinate).  Otherwise
  probes (P, num_features) real ambient vectors: Hutchinson average over them.
  Returns (v features (num_features,), div scalar).
  """
  m = manifold
  x = jnp.asarray(x)
  _, G, P = _feature_maps(m, f, x.dtype)
  r = m.to_features(x)
  exact = probes is None
  basis = jnp.eye(r.shape[-1], dtype=r.dtype) if exact else jnp.asarray(probes, r.dtype)
  proj = lambda b: P(x, b)
  proj_t = jax.linear_transpose(proj, r)
  dirs = jax.vmap(proj)(basis)
  adj = jax.vmap(lambda b: proj_t(b)[0])(basis)
  v, jvp = jax.linearize(lambda rr: G(rr, t), r)
  quad = jnp.sum(adj * jax.vmap(jvp)(dirs), axis=-1)  # <P^T b, J P b> per direction
  div = jnp.sum(quad) if exact else jnp.mean(quad)
  return v, div


def uses_chart(manifold: Manifold) -> bool:
  """True when the likelihood works in M's global chart (see the module docstring)."""
  return bool(getattr(manifold, "has_global_chart", False))


def state_size(manifold: Manifold) -> int:
  """Length of the per-point ODE state (and of a Hutchinson probe): M.dim in the chart,
  else the number of real ambient features."""
  return manifold.dim if uses_chart(manifold) else manifold.num_features


def chart_field_and_divergence(manifold: Manifold, f: Callable, c, t, probes=None):
  """Chart velocity c' and Riemannian divergence of f at ONE point given by its chart
  coordinates c (M.dim,), for M with a global chart.

  probes None: exact trace (one JVP per chart coordinate); else (P, M.dim) Hutchinson
  probes.  Returns (c' (M.dim,), div scalar).
  """
  m = manifold
  c = jnp.asarray(c)

  def cdot(cc):  # chart components d(to_chart)_x f(x, t) of the field, x = from_chart(cc)
    x = m.from_chart(cc)
    # No ambient re-projection P_x: f is tangent (the field contract), and on H^n the
    # Lorentz projection of a tangent vector cancels terms ~ x0 |f| ~ e^(2r) |f|_x, whose
    # round-off its JVP amplifies (float32 divergence spread 6 at r = 8 with it, 1e-3
    # without; float64 reference -10.0).
    return jax.jvp(m.to_chart, (x,), (f(x, t),))[1]

  exact = probes is None
  dirs = jnp.eye(c.shape[-1], dtype=c.dtype) if exact else jnp.asarray(probes, c.dtype)
  cd, jvp = jax.linearize(cdot, c)
  quad = jnp.sum(dirs * jax.vmap(jvp)(dirs), axis=-1)  # <b, (dc'/dc) b> per direction
  trace = jnp.sum(quad) if exact else jnp.mean(quad)
  grad_logvol = jax.grad(m.chart_log_volume_density)(c)
  return cd, trace + jnp.sum(grad_logvol * cd)


def divergence(manifold: Manifold, f: Callable, x, t, probes=None):
  """Riemannian divergence of f(., t) at points x (..., *M.shape) -> (...).

  probes: None (exact) or (..., P, state_size(M)) Hutchinson probes per point (chart
  coordinates where M has a global chart, else ambient features; see `draw_probes`).
  """
  m = manifold
  x = jnp.asarray(x)
  bs = m.batch_shape(x)
  flat = x.reshape((-1,) + tuple(m.shape))
  if uses_chart(m):
    one = lambda xx, p=None: chart_field_and_divergence(m, f, m.to_chart(xx), t, p)[1]
  else:
    one = lambda xx, p=None: field_and_divergence(m, f, xx, t, p)[1]
  if probes is None:
    out = jax.vmap(one)(flat)
  else:
    pr = jnp.reshape(probes, (-1,) + jnp.shape(probes)[-2:])
    out = jax.vmap(one)(flat, pr)
  return out.reshape(bs)


def draw_probes(key, manifold: Manifold, batch_shape, num_probes: int, kind: str, dtype):
  """Probes (..., num_probes, state_size(M)) with identity covariance (chart coordinates
  where M has a global chart, else ambient features)."""
  shape = tuple(batch_shape) + (int(num_probes), state_size(manifold))
  if kind == "rademacher":
    return jax.random.rademacher(key, shape, dtype)
  if kind == "gaussian":
    return jax.random.normal(key, shape, dtype)
  raise ValueError(f"probe must be one of {PROBES}, got {kind!r}")


# ------------------------------------------------------------------ change of variables
def ode_log_prob(manifold: Manifold, f: Callable, x, t0, t1, cfg, key=None,
                 base_log_prob: Optional[Callable] = None):
  """log p_{t0}(x) for the flow of f from t0 (data side) to t1 (base side).

  x: (..., *M.shape) points on M.  cfg: a `default_config()`-like ConfigDict.
  base_log_prob(z) -> (...) defaults to the uniform law (compact M).
  key: needed for Hutchinson probes (ignored for the exact divergence).
  Pure and jittable; does NOT raise.  Returns (logp (...), stats) with stats
  {'nfe': (...) int32, 'ok': (...) bool, 'delta': (...) the divergence integral,
  'z': (..., *M.shape) the endpoint}.  Use `log_prob` for the checked version.
  """
  check_config(cfg)
  m = manifold
  x = jnp.asarray(x)
  bs = m.batch_shape(x)
  rdt = jnp.empty((), x.dtype).real.dtype
  t0, t1 = jnp.asarray(t0, rdt), jnp.asarray(t1, rdt)
  mode = divergence_mode(cfg, m)
  chart = uses_chart(m)
  to_point, _, _ = _feature_maps(m, f, x.dtype)
  if chart:  # well-conditioned chart coordinates (module docstring)
    flat = m.to_chart(x).reshape(-1, m.dim)
    from_state = lambda s: m.from_chart(s).astype(x.dtype)
  else:  # real ambient features, re-projected onto M at every evaluation
    flat = m.to_features(x).reshape(-1, m.num_features)
    from_state = lambda s: m.proj(to_point(s))
  if mode == "hutchinson":
    if key is None:
      raise ValueError("Hutchinson divergence needs a PRNG key")
    probes = draw_probes(key, m, (flat.shape[0],), cfg.num_probes, cfg.probe, rdt)
  else:
    probes = jnp.zeros((flat.shape[0], 0, flat.shape[-1]), rdt)  # unused placeholder

  def one(r0, pr):
    def rhs(state, t):
      pr_t = pr if mode == "hutchinson" else None
      if chart:
        v, div = chart_field_and_divergence(m, f, state[0], t, pr_t)
      else:
        v, div = field_and_divergence(m, f, from_state(state[0]), t, pr_t)
      return (v, div.astype(rdt))

    y0 = (r0, jnp.zeros((), rdt))
    (r1, delta), nfe, ok = integrators.diffrax_solve(
        rhs, y0, t0, t1, solver=cfg.solver, rtol=float(cfg.rtol), atol=float(cfg.atol),
        max_steps=int(cfg.max_steps))
    return r1, delta, nfe, ok

  r1, delta, nfe, ok = jax.vmap(one)(flat, probes)
  z = from_state(r1).reshape(x.shape)
  base = m.uniform_log_prob if base_log_prob is None else base_log_prob
  delta = delta.reshape(bs)
  logp = base(z) + delta
  ok = ok.reshape(bs) & jnp.isfinite(logp)
  return logp, {"nfe": nfe.reshape(bs), "ok": ok, "delta": delta, "z": z}


def raise_if_failed(logp, stats, what: str = "log-likelihood ODE") -> None:
  """Host-side: raise RuntimeError if any point failed (solver error or non-finite)."""
  ok = np.asarray(stats["ok"]) & np.isfinite(np.asarray(logp))
  integrators.raise_if_failed(ok, what)


def checked_model_log_prob(model, impl: Callable, x, key, what: str):
  """The eager entry point shared by the families' `log_prob_and_stats`.

  model: an nnx module with `.manifold` and `.eval_cfg`; impl(graphdef, state, x, key) ->
  (logp, stats) its jitted `ode_log_prob` call; x: (B, *M.shape).  Returns the (B,)
  log-density w.r.t. Riemannian volume and {'nfe' (slowest point), 'nfe_mean',
  'divergence' ('exact' | 'hutchinson')}.  Eagerly, points off M raise ValueError and any
  failure (solver error, non-finite value) raises RuntimeError naming `what`; under a jax
  transformation the stats also carry 'ok' (B,)."""
  m = model.manifold
  x = jnp.asarray(x)
  if integrators.is_concrete(x):
    m.check(x)
  graphdef, state = nnx.split(model)
  logp, st = impl(graphdef, state, x, key)
  ok = st["ok"] & jnp.isfinite(logp)
  stats = integrators.checked_nfe_stats(st["nfe"], ok, what)
  stats["divergence"] = divergence_mode(model.eval_cfg, m)
  return logp, stats


def log_prob(manifold: Manifold, f: Callable, x, t0, t1, cfg, key=None,
             base_log_prob: Optional[Callable] = None):
  """Checked `ode_log_prob` (eager): raises RuntimeError on any failure."""
  logp, stats = ode_log_prob(manifold, f, x, t0, t1, cfg, key, base_log_prob)
  raise_if_failed(logp, stats)
  return logp, stats
