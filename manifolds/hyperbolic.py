"""Hyperbolic space H^n (curvature -1), Lorentz (hyperboloid) model in R^{n+1}.

Points: x = (x0, x1..xn) with <x, x>_L = -1 and x0 > 0, where <u, v>_L = -u0 v0 + sum ui vi.
Tangent vectors at x: ambient v with <x, v>_L = 0; the metric is <u, v>_L restricted to T_x M.
`to_poincare` / `from_poincare` convert to the Poincare ball p = x_{1:} / (1 + x0), |p| < 1.

Numerics (why the formulas look the way they do)
-------------------------------------------------
Far from the origin the coordinates are large (|x| ~ e^s/2 at distance s from the origin:
~2.4e8 at s = 20) and the hyperboloid is nearly light-like, so naive Minkowski products cancel
catastrophically: for a unit radial tangent vector -v0^2 + |v'|^2 = 1 is a difference of two
numbers of size x0^2.  We therefore treat the spatial part x' = x_{1:} as the data and x0 as
the derived quantity sqrt(1 + |x'|^2):
* `exp` (and every other producer of points) re-projects, x0 = sqrt(1 + |x'|^2), so points are
  on M to round-off relative to their coordinates;
* `inner` uses the spatial parts only: for tangent u, v (u0 = x'.u'/x0),
  <u, v>_L = u'_perp . v'_perp + (u'.e)(v'.e) / x0^2 with e = x'/|x'| — no cancellation;
  tangent vectors produced here have their time component re-derived as x'.v'/x0;
* `dist`/`log` use q = <y - x, y - x>_L = 2 (cosh d - 1) computed from spatial parts:
  with delta = y' - x', S = x' + y', e = S/|S|, beta = (delta.e)/(x0 + y0),
  q = (|delta_perp|^2 + 4 beta^2) / (1 - beta^2)   (exact identity), where
  |delta_perp| = |delta - (delta.e) e| = 2 |x' ^ y'| / |S| is computed from the wedge
  (|a| |b - (b.a^) a^| with a the longer vector: error eps |x'| |y'|, not eps max |.|^2);
  relative error ~eps (4 + q)/4, accurate for near points anywhere (also far from the origin);
  for far-apart points (q^2 > 16 x0 y0) we use q = 2(x0 y0 - x'.y' - 1) instead, whose error is
  ~eps x0 y0 / cosh d.  d = 2 asinh(sqrt(q)/2) (finite gradient at x = y).
Cut locus: none (H^n is uniquely geodesic); `log` is defined everywhere.

Heat kernel: see `manifolds._heat_hyperbolic` — closed forms for odd n (the dimension
recursion from H^1, as a positive sum of Bell polynomials); for H^2 McKean's integral by
Gauss-Hermite quadrature in z, r^2 = rho^2 + 2 t z^2 (6 / 12 nodes in float32 / float64,
t <= 4) and the sinh-mapped Gauss-Legendre quadrature above t = 4 and for even n >= 4
(16 / 32 nodes); scores in closed form from the same nodes; exact radius samplers (H^3: the
norm of a Gaussian with drift; H^2: a mixture over it, no rejection; other n: rejection).
Measured worst errors against mpmath (dps 30) for t in [1e-4, 20] and every rho with
log p > -500: see the module docstring of `_heat_hyperbolic` (float64 log p <= 4e-11
relative to max(1, |log p|), score <= 1.2e-9; float32 log p <= 3.9e-6, score <= 2.3e-5).
Distances: float64 to ~1e-15 relative for points near the origin and d <= 20 (64 eps
tested); for points far from the origin the error is ~eps x0 (their own representation).
float32 points must stay within ~44 of the origin (x0 y0 must not overflow).

Volume is infinite: `log_volume` and `random_uniform` raise NotImplementedError.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from manifolds import _heat_hyperbolic as hk
from manifolds import _numerics as nx
from manifolds.base import Manifold


def _dot(a, b):
  return jnp.sum(a * b, axis=-1)


def _unit(v):
  """v / |v| with 0 for v = 0 (and a finite gradient there).  -> (unit, |v|)."""
  sq = _dot(v, v)
  nrm = nx.safe_sqrt(sq)
  pos = sq > 0
  return v / jnp.where(pos, nrm, 1.0)[..., None], nrm


def _lift(xs):
  """Point with spatial part xs: (sqrt(1 + |xs|^2), xs)."""
  x0 = jnp.sqrt(1.0 + _dot(xs, xs))
  return jnp.concatenate([x0[..., None], xs], axis=-1)


def _tangent_from_spatial(x, vs):
  """Tangent vector at x with spatial part vs: time component x'.vs / x0."""
  vs = jnp.broadcast_to(vs, jnp.broadcast_shapes(x.shape[:-1], vs.shape[:-1]) + vs.shape[-1:])
  v0 = _dot(x[..., 1:], vs) / x[..., 0]
  return jnp.concatenate([v0[..., None], vs], axis=-1)


def minkowski(u, v):
  """<u, v>_L = -u0 v0 + sum_i ui vi.  (..., n+1) x2 -> (...)."""
  return -u[..., 0] * v[..., 0] + _dot(u[..., 1:], v[..., 1:])


class Hyperbolic(Manifold):
  """H^n, n >= 2, Lorentz model.  Points: shape (n + 1,)."""

  compact = False

  def __init__(self, n: int):
    if int(n) != n or n < 2:
      raise ValueError(f"Hyperbolic(n) needs an integer n >= 2, got {n!r}")
    self.n = self.dim = int(n)
    self.shape = (self.n + 1,)

  @property
  def spec(self):
    return f"hyperbolic({self.n})"

  # ------------------------------------------------------------------ helpers
  def origin(self, batch_shape=(), dtype=None):
    """The point (1, 0, ..., 0)."""
    dtype = self._as_point_dtype(dtype)
    e0 = jnp.zeros(self.shape, dtype).at[0].set(1.0)
    return jnp.broadcast_to(e0, tuple(batch_shape) + self.shape)

  def to_poincare(self, x):
    """Poincare ball coordinates p = x' / (1 + x0), |p| < 1.  (..., n+1) -> (..., n)."""
    return x[..., 1:] / (1.0 + x[..., 0:1])

  def from_poincare(self, p):
    """Inverse of `to_poincare`: x' = 2p / (1 - |p|^2).  (..., n) -> (..., n+1)."""
    p = jnp.asarray(p)
    return _lift(2.0 * p / (1.0 - _dot(p, p))[..., None])

  # ------------------------------------------------------------------ global chart
  # The spatial part x' is a global chart (x = (sqrt(1 + |x'|^2), x')).  The pulled-back
  # metric is g = I - x' x'^T / (1 + |x'|^2), det g = 1 / (1 + |x'|^2).  Derivatives of a
  # field in this chart are O(1) where Lorentz-projected ambient ones are O(e^(2r)).
  has_global_chart = True

  def to_chart(self, x):
    return jnp.asarray(x)[..., 1:]

  def from_chart(self, c):
    return _lift(jnp.asarray(c))

  def chart_log_volume_density(self, c):
    c = jnp.asarray(c)
    return -0.5 * jnp.log1p(_dot(c, c))

  # ------------------------------------------------------------------ metric
  def inner(self, x, u, v):
    """<u, v>_L for u, v in T_x M, from the spatial parts (see module docstring)."""
    xs = x[..., 1:]
    e, _ = _unit(xs)
    us, vs = u[..., 1:], v[..., 1:]
    ue, ve = _dot(us, e), _dot(vs, e)
    u_perp = us - ue[..., None] * e
    v_perp = vs - ve[..., None] * e
    return _dot(u_perp, v_perp) + ue * ve / (x[..., 0] ** 2)

  # ------------------------------------------------------------------ geometry
  def exp(self, x, v):
    nv = self.norm(x, v)
    ys = jnp.cosh(nv)[..., None] * x[..., 1:] + nx.sinhc(nv * nv)[..., None] * v[..., 1:]
    return _lift(ys)

  def _chord(self, x, y):
    """(q, c0): q = <y - x, y - x>_L = 2 (cosh d - 1) >= 0 and c0 = y0 - x0, both stable."""
    xs, ys = x[..., 1:], y[..., 1:]
    x0, y0 = x[..., 0], y[..., 0]
    xs, ys = jnp.broadcast_arrays(xs, ys)
    delta = ys - xs
    e, s_norm = _unit(xs + ys)
    de = _dot(delta, e)
    s0 = x0 + y0
    c0 = de * s_norm / s0  # = (|y'|^2 - |x'|^2) / (x0 + y0)
    # |delta_perp| = 2 |x' ^ y'| / |S|; the wedge is |a| |b - (b.a^) a^| with a the longer of
    # x', y', so its error is eps |x'| |y'| (delta - (delta.e) e would carry eps max(|x'|, |y'|)).
    x_longer = (_dot(xs, xs) >= _dot(ys, ys))[..., None]
    a_hat, a_norm = _unit(jnp.where(x_longer, xs, ys))
    b = jnp.where(x_longer, ys, xs)
    b_perp = b - _dot(b, a_hat)[..., None] * a_hat
    pos = s_norm > 0
    perp2 = jnp.where(pos, 4.0 * a_norm**2 * _dot(b_perp, b_perp) / jnp.where(pos, s_norm, 1.0)**2,
                      _dot(delta, delta))
    beta = de / s0
    one_m_b2 = jnp.maximum((1.0 - beta) * (1.0 + beta), jnp.finfo(x.dtype).tiny)
    q_near = (perp2 + 4.0 * beta * beta) / one_m_b2
    q_far = 2.0 * (x0 * y0 - _dot(xs, ys) - 1.0)
    far = q_near * q_near > 16.0 * x0 * y0
    q = jnp.maximum(jnp.where(far, q_far, q_near), 0.0)
    return q, c0

  def _log_dist(self, x, y):
    """(log_x(y), d(x, y)) sharing the chord computation."""
    q, _ = self._chord(x, y)
    d = 2.0 * jnp.arcsinh(0.5 * nx.safe_sqrt(q))
    # log_x(y) = (d / sinh d) (y + <x, y>_L x) = (d / sinh d) ((y - x) - (q/2) x)
    vs = (y[..., 1:] - x[..., 1:]) - 0.5 * q[..., None] * x[..., 1:]
    vs = vs / nx.sinhc(d * d)[..., None]
    return _tangent_from_spatial(x, vs), d

  def log(self, x, y):
    return self._log_dist(x, y)[0]

  def dist(self, x, y):
    q, _ = self._chord(x, y)
    return 2.0 * jnp.arcsinh(0.5 * nx.safe_sqrt(q))

  def proj(self, z):
    """The point of M with the same spatial part: (sqrt(1 + |z'|^2), z').

    A retraction onto M (the identity on M; defined for every z, including z0 <= 0), not the
    Euclidean-nearest point, which has no closed form; for z near M the two agree to first
    order in the constraint violation.
    """
    return _lift(jnp.asarray(z)[..., 1:])

  def to_tangent(self, x, z):
    """Lorentz-orthogonal projection z + <x, z>_L x onto T_x M (time part re-derived)."""
    z = jnp.asarray(z)
    a = minkowski(x, z)
    vs = z[..., 1:] + a[..., None] * x[..., 1:]
    return _tangent_from_spatial(x, vs)

  def egrad_to_rgrad(self, x, g):
    """Riemannian gradient from the ambient gradient: project J g, J = diag(-1, 1, ..., 1)."""
    g = jnp.asarray(g)
    jg = jnp.concatenate([-g[..., :1], g[..., 1:]], axis=-1)
    return self.to_tangent(x, jg)

  def transp(self, x, y, v):
    """v + <y, v>_L / (1 - <x, y>_L) (x + y), with <y, v>_L = <y - x, v>_L, 1 - <x, y> = 2 + q/2."""
    q, c0 = self._chord(x, y)
    xs, ys, vs = x[..., 1:], y[..., 1:], v[..., 1:]
    v0 = _dot(xs, vs) / x[..., 0]
    yv = -c0 * v0 + _dot(ys - xs, vs)
    coef = yv / (2.0 + 0.5 * q)
    out = vs + coef[..., None] * (xs + ys)
    return _tangent_from_spatial(y, out)

  def log_det_exp(self, x, v):
    """(n - 1) log(sinh r / r), r = |v|."""
    return (self.n - 1) * nx.log_sinhc(jnp.maximum(self.sq_norm(x, v), 0.0))

  # ------------------------------------------------------------------ sampling
  def random_uniform(self, key, batch_shape=(), dtype=None):
    raise NotImplementedError(f"{self.spec} has infinite volume: there is no uniform law")

  def log_volume(self):
    raise NotImplementedError(f"{self.spec} has infinite volume")

  def _from_origin(self, x, ws):
    """Parallel transport of (0, ws) in T_o M to T_x M (the boost taking o to x)."""
    xs = x[..., 1:]
    a = _dot(xs, ws)
    vs = ws + (a / (1.0 + x[..., 0]))[..., None] * xs
    return jnp.concatenate([a[..., None], vs], axis=-1)

  def random_normal_tangent(self, key, x):
    """Standard normal in T_x M: N(0, I_n) at the origin, transported to x (an isometry)."""
    x = jnp.asarray(x)
    z = jax.random.normal(key, x.shape[:-1] + (self.n,), x.dtype)
    return self._from_origin(x, z)

  # ------------------------------------------------------------------ validation
  def _violation(self, x):
    """|<x, x>_L + 1| / (1 + |x|^2); inf where x0 <= 0 (the lower sheet)."""
    r = jnp.abs(minkowski(x, x) + 1.0) / (1.0 + _dot(x, x))
    return jnp.where(x[..., 0] > 0, r, jnp.inf)

  def _criterion(self):
    return ("|<x,x>_L + 1| / (1 + |x|^2), relative to the coordinates' magnitude, "
            "and x0 > 0 (violation inf on the lower sheet)")

  # ------------------------------------------------------------------ heat kernel
  def _rho_t(self, x, y, t):
    x, y = jnp.asarray(x), jnp.asarray(y)
    t = self._real_t(t, x)
    return x, y, t

  def log_heat_kernel(self, x, y, t):
    x, y, t = self._rho_t(x, y, t)
    # d(y, x), as in heat_kernel_score: a program asking for both computes it once (CSE).
    rho = self.dist(y, x)
    rho, t = jnp.broadcast_arrays(rho, t)
    return hk.log_kernel(rho, t, self.n)

  def heat_kernel_score(self, x, y, t):
    """c(rho, t) log_y(x), closed form ratio of kernels of dimensions n + 2 and n."""
    x, y, t = self._rho_t(x, y, t)
    v, rho = self._log_dist(y, x)
    rho, t = jnp.broadcast_arrays(rho, t)
    _, c = hk.log_kernel(rho, t, self.n, with_score=True)
    return c[..., None] * v

  def sample_heat_kernel(self, key, x, t):
    """Exact draw: radius from the radial law (`_heat_hyperbolic.sample_radius`), uniform
    direction in T_x M, then the geodesic.  Coordinates overflow (inf) only where the
    point itself is not representable (distance from the origin > ~88 in float32)."""
    x = jnp.asarray(x)
    t = self._real_t(t, x)
    bshape = jnp.broadcast_shapes(x.shape[:-1], t.shape)
    x = jnp.broadcast_to(x, bshape + self.shape)
    t = jnp.broadcast_to(t, bshape)
    k_rho, k_dir = jax.random.split(key)
    rho = hk.sample_radius(k_rho, t.reshape(-1), self.n).reshape(bshape)
    z = jax.random.normal(k_dir, bshape + (self.n,), x.dtype)
    u, _ = _unit(z)
    v = self._from_origin(x, u)
    ys = jnp.cosh(rho)[..., None] * x[..., 1:] + jnp.sinh(rho)[..., None] * v[..., 1:]
    return _lift(ys)
