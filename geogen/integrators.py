"""Integrators for ODEs and SDEs on manifolds (generic: any model family).

A *vector field* is a function ``f(x, t) -> v`` with x of shape ``(..., *M.shape)``,
t a scalar, and v a tangent vector at x of the same shape (ambient coordinates).
Every stepper re-projects onto M after each step (``M.proj``), so round-off never
accumulates off the manifold.

Fixed-step ODE methods (``lax.scan``, jit/vmap/grad-friendly):
  * ``'euler'``    geodesic Euler:   x <- exp_x(h f(x, t))                         (order 1)
  * ``'midpoint'`` geodesic midpoint: x_m = exp_x(h/2 f(x, t)),
                   x <- exp_x(h P_x f(x_m, t + h/2))                              (order 2)
  * ``'rk4'``      classical RK4 on the ambient extension F(y, t) = P_x f(x, t), x = proj(y),
                   of the field (stages in ambient coordinates), then x <- proj(y). (order 4)
    Why ambient RK is valid: F is tangent on M, so M is invariant under the ambient
    flow and the exact ambient solution stays on M; RK4 approximates it to O(h^4) and
    the final projection moves the result by no more than that error.

SDEs (Ito, in the manifold sense): dX = b(X, t) dt + g(t) dB_M, with B_M the
Brownian motion of generator (1/2) Laplace-Beltrami. Geodesic Euler-Maruyama:
x <- exp_x(b h + g sqrt(|h|) z), z ~ N(0, I) in T_x M (``M.random_normal_tangent``).
Time may run backwards (t1 < t0, h < 0): the drift is then applied with the
negative step, which is what a reverse-time SDE written in forward time needs.

Adaptive ODE solves (``solve_ode``) use diffrax (Dopri5/Tsit5/Dopri8/Bosh3 with a
PID controller) in ambient coordinates on the field P_x f(x, t), x = proj(y), each
point of the batch with its own step sizes (vmap), so a point's result does not
depend on the rest of the batch (nor on how the batch is sharded).
"""
from __future__ import annotations

from typing import Callable, Optional

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from manifolds.base import Manifold

FIXED_METHODS = ("euler", "midpoint", "rk4")
# Adaptive diffrax solvers and their field evaluations per (accepted or rejected) step;
# one more evaluation happens once at the start (measured, and checked in the tests).
ADAPTIVE_SOLVERS = {
    "dopri5": (diffrax.Dopri5, 6),
    "tsit5": (diffrax.Tsit5, 6),
    "dopri8": (diffrax.Dopri8, 13),
    "bosh3": (diffrax.Bosh3, 3),
}


def _check_method(method):
  if method not in FIXED_METHODS:
    raise ValueError(f"unknown fixed-step ODE method {method!r}; choose one of {FIXED_METHODS}")


def expand(manifold: Manifold, s):
  """Per-point scalar (...) -> (..., 1, ..., 1) broadcastable against points."""
  s = jnp.asarray(s)
  return s.reshape(s.shape + (1,) * len(manifold.shape))


def tangent_field(manifold: Manifold, f: Callable) -> Callable:
  """The field evaluated on M and projected: F(y, t) = P_x f(x, t), x = proj(y)."""
  def F(y, t):
    x = manifold.proj(y)
    return manifold.to_tangent(x, f(x, t))
  return F


def ode_step(manifold: Manifold, f: Callable, x, t, h, method: str = "rk4"):
  """One step of size h (may be negative) from (x, t).  -> point of the shape of x."""
  m = manifold
  if method == "euler":
    return m.proj(m.exp(x, h * m.to_tangent(x, f(x, t))))
  if method == "midpoint":
    xm = m.proj(m.exp(x, 0.5 * h * m.to_tangent(x, f(x, t))))
    return m.proj(m.exp(x, h * m.to_tangent(x, f(xm, t + 0.5 * h))))
  if method == "rk4":
    F = tangent_field(m, f)
    k1 = F(x, t)
    k2 = F(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = F(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = F(x + h * k3, t + h)
    return m.proj(x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4))
  _check_method(method)


def odeint_fixed(manifold: Manifold, f: Callable, x0, t0, t1, num_steps: int,
                 method: str = "rk4", return_path: bool = False):
  """Integrate dx/dt = f(x, t) from t0 to t1 with num_steps equal steps.

  x0: (..., *M.shape).  Returns x(t1) (same shape), or with return_path also the
  states after every step, (num_steps, ..., *M.shape).
  """
  _check_method(method)
  if int(num_steps) < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  x0 = jnp.asarray(x0)
  rdt = jnp.empty((), x0.dtype).real.dtype
  h = (jnp.asarray(t1, rdt) - jnp.asarray(t0, rdt)) / num_steps
  ts = jnp.asarray(t0, rdt) + h * jnp.arange(num_steps, dtype=rdt)

  def body(x, t):
    xn = ode_step(manifold, f, x, t, h, method)
    return xn, (xn if return_path else None)

  x1, path = jax.lax.scan(body, manifold.proj(x0), ts)
  return (x1, path) if return_path else x1


def sde_euler_maruyama(manifold: Manifold, drift: Callable, diffusion: Callable, key, x0,
                       t0, t1, num_steps: int, corrector: Optional[Callable] = None,
                       return_path: bool = False, times=None):
  """Geodesic Euler-Maruyama for dX = drift(X, t) dt + diffusion(t) dB_M from t0 to t1.

  drift(x, t) -> tangent (shape of x); diffusion(t) -> scalar (or broadcastable to the
  batch shape of x).  corrector(key, x, t) -> x is applied after each predictor step
  at the new time (e.g. Langevin steps).  Steps are uniform in t, or follow `times`
  ((num_steps + 1,) from t0 to t1, monotone) when given.  Returns x(t1) (and the path if
  asked).
  """
  if int(num_steps) < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  m = manifold
  x0 = jnp.asarray(x0)
  rdt = jnp.empty((), x0.dtype).real.dtype
  if times is None:
    h = (jnp.asarray(t1, rdt) - jnp.asarray(t0, rdt)) / num_steps
    ts = jnp.asarray(t0, rdt) + h * jnp.arange(num_steps, dtype=rdt)
    hs = jnp.full((num_steps,), h, rdt)
  else:
    times = jnp.asarray(times, rdt)
    if times.shape != (int(num_steps) + 1,):
      raise ValueError(f"times must have shape ({int(num_steps) + 1},), got {times.shape}")
    ts, hs = times[:-1], jnp.diff(times)
  keys = jax.random.split(key, num_steps)

  def body(x, inp):
    t, h, k = inp
    kn, kc = jax.random.split(k)
    z = m.random_normal_tangent(kn, x)
    g = expand(m, jnp.asarray(diffusion(t), rdt))
    v = h * m.to_tangent(x, drift(x, t)) + g * jnp.sqrt(jnp.abs(h)) * z
    xn = m.proj(m.exp(x, v))
    if corrector is not None:
      xn = corrector(kc, xn, t + h)
    return xn, (xn if return_path else None)

  x1, path = jax.lax.scan(body, m.proj(x0), (ts, hs, keys))
  return (x1, path) if return_path else x1


def langevin_step(manifold: Manifold, key, x, score, step_size):
  """One geodesic Langevin step for a law with score value `score` (tangent at x):
  x <- exp_x(delta * score + sqrt(2 delta) z), z ~ N(0, I) in T_x M.
  step_size delta: scalar or batch-shaped (...)."""
  m = manifold
  d = expand(m, step_size)
  z = m.random_normal_tangent(key, x)
  return m.proj(m.exp(x, d * m.to_tangent(x, score) + jnp.sqrt(2.0 * d) * z))


def adaptive_solver(name: str):
  """(diffrax solver instance, field evaluations per step) for a solver name."""
  if name not in ADAPTIVE_SOLVERS:
    raise ValueError(f"unknown adaptive solver {name!r}; choose one of {sorted(ADAPTIVE_SOLVERS)}")
  cls, per_step = ADAPTIVE_SOLVERS[name]
  return cls(), per_step


def max_norm(tree):
  """Max-abs norm of a pytree (the step controller's error norm: every component of
  the state, including a log-density increment, meets the tolerance)."""
  leaves = [jnp.max(jnp.abs(l)) for l in jax.tree.leaves(tree)]
  return jnp.max(jnp.stack(leaves))


def diffrax_solve(rhs: Callable, y0, t0, t1, *, solver: str = "dopri5", rtol: float = 1e-5,
                  atol: float = 1e-5, max_steps: int = 4096):
  """Adaptive solve of dy/dt = rhs(y, t) for one unbatched pytree state y.

  Returns (y(t1), nfe, ok): nfe the number of rhs evaluations (int32 scalar) and ok a
  boolean scalar (diffrax reported success and y(t1) is finite).  Never throws inside
  jit: callers check `ok` on the host (see `raise_if_failed`).
  """
  slv, per_step = adaptive_solver(solver)
  sol = diffrax.diffeqsolve(
      diffrax.ODETerm(lambda t, y, args: rhs(y, t)), slv, t0, t1, None, y0,
      stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, norm=max_norm),
      max_steps=int(max_steps), throw=False, saveat=diffrax.SaveAt(t1=True))
  y1 = jax.tree.map(lambda a: a[-1], sol.ys)
  finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(l)) for l in jax.tree.leaves(y1)]))
  ok = (sol.result == diffrax.RESULTS.successful) & finite
  nfe = per_step * jnp.asarray(sol.stats["num_steps"], jnp.int32) + 1
  return y1, nfe, ok


def solve_ode(manifold: Manifold, f: Callable, x0, t0, t1, *, solver: str = "dopri5",
              rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 4096):
  """Adaptive solve of dx/dt = f(x, t) on M from t0 to t1 (either direction).

  x0: (..., *M.shape).  Each point has its own step sizes; the solver state is the real
  ambient features of the point (``M.to_features``).  Returns (x1, nfe, ok) with
  x1 projected onto M, nfe (...) int32 field evaluations per point and ok (...) bool.
  """
  m = manifold
  x0 = jnp.asarray(x0)
  bs = m.batch_shape(x0)
  F = tangent_field(m, f)
  rdt = jnp.empty((), x0.dtype).real.dtype
  t0, t1 = jnp.asarray(t0, rdt), jnp.asarray(t1, rdt)

  def rhs(r, t):  # real ambient features (diffrax state), so SU(n) works unchanged
    return m.to_features(F(m.from_features(r).astype(x0.dtype), t))

  def one(r):
    return diffrax_solve(rhs, r, t0, t1, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)

  r1, nfe, ok = jax.vmap(one)(m.to_features(x0).reshape(-1, m.num_features))
  x1 = m.proj(m.from_features(r1).astype(x0.dtype))
  return x1.reshape(x0.shape), nfe.reshape(bs), ok.reshape(bs)


def is_concrete(a) -> bool:
  """True outside jax transformations: host-side checks (which raise) run only then."""
  return not isinstance(a, jax.core.Tracer)


def checked_nfe_stats(nfe, ok, what: str) -> dict:
  """Checks a batched solve and summarizes its cost.  nfe, ok: (...) per point.

  Eagerly: raises RuntimeError (`raise_if_failed`) if any point failed, else returns
  {'nfe': int (max over points), 'nfe_mean': float}.  Under a jax transformation (where
  nothing can be raised) returns {'nfe', 'nfe_mean', 'ok'} as arrays for the caller."""
  if not is_concrete(ok):
    return {"nfe": jnp.max(nfe), "nfe_mean": jnp.mean(nfe), "ok": ok}
  raise_if_failed(ok, what)
  nfe = np.asarray(nfe)
  return {"nfe": int(nfe.max()) if nfe.size else 0,
          "nfe_mean": float(nfe.mean()) if nfe.size else 0.0}


def raise_if_failed(ok, what: str = "ODE solve") -> None:
  """Host-side check: raise RuntimeError if any entry of `ok` is False."""
  ok = np.asarray(ok)
  if not np.all(ok):
    raise RuntimeError(
        f"{what} failed for {int(np.sum(~ok))} of {ok.size} points (solver did not succeed "
        "within max_steps, or produced NaN/inf); try a looser rtol/atol, a larger "
        "max_steps, or check the model for non-finite outputs")
