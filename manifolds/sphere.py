"""Unit sphere S^n in R^{n+1} (induced metric): geometry and exact heat kernel.

Points and tangent vectors are ambient arrays of shape (n + 1,).

Cut locus (antipode).  Every y != -x has a unique minimizing geodesic from x.  At the exact
antipode y = -x all directions are minimizing; ``log(x, -x)`` does NOT return a silent zero: it
returns a vector of length pi in a deterministic direction, the normalized tangent projection
of the basis vector e_j with j = argmin_j |x_j| (never parallel to x).  Hence
``exp(x, log(x, -x)) = -x`` and ``|log(x, -x)| = dist(x, -x) = pi``.  "Exact antipode" means
that the component of y orthogonal to x vanishes in floating point (its squared norm is below
the smallest normal number); near-antipodes use their own (usual) direction.  ``transp`` moves
vectors along the geodesic that ``log`` picks, so it is defined at the antipode as well.

Gradients: ``log``, ``dist`` (away from x = y), ``exp``, ``log_det_exp``, ``transp`` and the heat
kernel have finite gradients at x = y (series branches in theta^2 and the "double where" trick).

Heat kernel: generator (1/2) Laplace-Beltrami, density w.r.t. the Riemannian volume; exact
log-density, closed-form score and exact sampling, see `manifolds._heat_sphere` for the
method used in each regime and its measured accuracy.  ``log_heat_kernel`` has a custom JVP
(gradient = the closed-form score, finite at y = x and y = -x); ``heat_kernel_score`` is the
closed form itself, tangent at y.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from manifolds import _numerics as nx
from manifolds._heat_sphere import SphereHeat, log_volume as _log_volume
from manifolds.base import Manifold

_HI = jax.lax.Precision.HIGHEST


def _dot(a, b):
  """Inner product over the last axis (elementwise product + sum: exact-ish, no matmul)."""
  return jnp.sum(a * b, axis=-1)


class Sphere(Manifold):
  """Unit sphere S^n = {x in R^{n+1}: |x| = 1}, any n >= 1."""

  def __init__(self, n: int):
    if int(n) != n or n < 1:
      raise ValueError(f"Sphere(n) needs an integer n >= 1, got {n!r}")
    self.n = self.dim = int(n)
    self.shape = (self.n + 1,)
    self._heat = None

  @property
  def spec(self):
    return f"sphere({self.n})"

  @property
  def heat(self) -> SphereHeat:
    """Per-n heat-kernel tables (built lazily, once)."""
    if self._heat is None:
      self._heat = SphereHeat(self.n)
    return self._heat

  # ------------------------------------------------------------------ geometry
  def exp(self, x, v):
    """exp_x(v) = cos|v| x + sin|v|/|v| v, re-projected onto the sphere."""
    r2 = _dot(v, v)
    r = nx.safe_sqrt(r2)
    y = jnp.cos(r)[..., None] * x + nx.sinc(r2)[..., None] * v
    return self.proj(y)

  def _angle_parts(self, x, y):
    """(c, w, s2): c = <x, y>, w = y - c x (two Gram-Schmidt passes), s2 = |w|^2."""
    c = _dot(x, y)
    w = y - c[..., None] * x
    w = w - _dot(x, w)[..., None] * x       # second pass: w tangent even when |w| ~ eps
    return c, w, _dot(w, w)

  def _antipode_direction(self, x):
    """Unit tangent at x: normalized projection of e_j, j = argmin |x_j| (deterministic)."""
    j = jnp.argmin(jnp.abs(x), axis=-1)
    e = jax.nn.one_hot(j, self.n + 1, dtype=x.dtype)
    e = e - _dot(x, e)[..., None] * x
    return e / nx.safe_sqrt(_dot(e, e))[..., None]

  def log(self, x, y):
    """log_x(y): tangent vector at x of length dist(x, y) pointing to y.

    At the exact antipode returns pi times a deterministic unit direction (module doc).
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    x, y = jnp.broadcast_arrays(x, y)
    c, w, s2 = self._angle_parts(x, y)
    s = nx.safe_sqrt(s2)
    theta = jnp.arctan2(s, c)
    # theta / s: series in theta^2 for theta < pi/2 (finite gradient at x = y), else direct.
    near = theta < 0.5 * math.pi
    th_n = jnp.where(near, theta, 0.0)
    s_f = jnp.where(near, 1.0, jnp.maximum(s, jnp.finfo(s.dtype).tiny))
    ratio = jnp.where(near, nx.x_over_sin(th_n * th_n), theta / s_f)
    v = ratio[..., None] * w
    exact_anti = s2 < jnp.finfo(s2.dtype).tiny
    anti = math.pi * self._antipode_direction(x)
    return jnp.where((exact_anti & ~near)[..., None], anti, v)

  def dist(self, x, y):
    """Geodesic distance atan2(|y - <x,y> x|, <x, y>) in [0, pi]."""
    c, _, s2 = self._angle_parts(x, y)
    return jnp.arctan2(nx.safe_sqrt(s2), c)

  def inner(self, x, u, v):
    del x
    return _dot(u, v)

  def proj(self, z):
    """z / |z| (for z = 0 returns e_0, so the result is always on the sphere)."""
    z = jnp.asarray(z)
    r2 = _dot(z, z)
    ok = r2 > 0
    e0 = jax.nn.one_hot(0, self.n + 1, dtype=z.dtype)
    zz = jnp.where(ok[..., None], z, e0)
    return zz / jnp.sqrt(_dot(zz, zz))[..., None]

  def to_tangent(self, x, z):
    """z - <x, z> x."""
    return z - _dot(x, z)[..., None] * x

  def transp(self, x, y, v):
    """Parallel transport of v in T_x to T_y along the geodesic t -> exp_x(t log_x(y)).

    With l = log_x(y), theta = |l|:  v - <l, v> [ (1 - cos theta)/theta^2 l + sin(theta)/theta x ],
    which maps l/theta to the geodesic velocity at y and fixes vectors orthogonal to x and l.
    """
    l = self.log(x, y)
    th2 = _dot(l, l)
    a = 0.5 * nx.sinc(0.25 * th2) ** 2          # (1 - cos th) / th^2
    b = nx.sinc(th2)                              # sin th / th
    lv = _dot(l, v)
    return v - lv[..., None] * (a[..., None] * l + b[..., None] * x)

  def log_det_exp(self, x, v):
    """log |det d exp_x(v)| = (n - 1) log(sin r / r), r = |v|.

    For r < pi this is (n-1) log_sinc(r^2) (finite gradient at v = 0).  For r >= pi exp_x is
    past the cut locus: we return (n - 1) log(max(|sin r|, tiny) / r), the log of the absolute
    Jacobian determinant, clamped to a finite value at r = k pi where the map folds.
    """
    del x
    r2 = _dot(v, v)
    inside = r2 < math.pi ** 2
    r2_in = jnp.where(inside, r2, 1.0)
    r_out = jnp.sqrt(jnp.where(inside, 4.0 * math.pi ** 2, r2))
    tiny = jnp.finfo(r_out.dtype).tiny
    out = jnp.log(jnp.maximum(jnp.abs(jnp.sin(r_out)), tiny) / r_out)
    return (self.n - 1) * jnp.where(inside, nx.log_sinc(r2_in), out)

  # ------------------------------------------------------------------ sampling
  def random_uniform(self, key, batch_shape=(), dtype=None):
    """Uniform law: a normalized standard Gaussian in R^{n+1}."""
    dtype = self._as_point_dtype(dtype)
    z = jax.random.normal(key, tuple(batch_shape) + self.shape, dtype)
    return self.proj(z)

  def log_volume(self):
    return _log_volume(self.n)

  def random_normal_tangent(self, key, x):
    x = jnp.asarray(x)
    z = jax.random.normal(key, x.shape, x.dtype)
    return self.to_tangent(x, z)

  # ------------------------------------------------------------------ validation
  def _violation(self, x):
    return jnp.abs(jnp.sqrt(_dot(x, x)) - 1.0)

  def _criterion(self):
    return "| |x| - 1 |: points must have unit Euclidean norm"

  # ------------------------------------------------------------------ heat kernel
  def _radial_inputs(self, x, y, t):
    """X = cos^2(theta/2), S = sin^2(theta/2) from |x +- y|^2 (no cancellation), and t."""
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    X = _dot(x + y, x + y)
    S = _dot(x - y, x - y)
    tot = X + S
    tot = jnp.where(tot > 0, tot, 1.0)
    X, S = X / tot, S / tot
    t = self._real_t(t, X)
    return jnp.broadcast_arrays(X, S, t)

  def log_heat_kernel(self, x, y, t):
    """log p_t(x, y), generator (1/2) Laplace-Beltrami, w.r.t. the Riemannian volume."""
    X, S, t = self._radial_inputs(x, y, t)
    return self.heat.log_prob(X, S, t)

  def heat_kernel_score(self, x, y, t):
    """grad_y log p_t(x, y) = (d log p / du) (x - <x, y> y), u = <x, y>  (in T_y)."""
    X, S, t = self._radial_inputs(x, y, t)
    g = self.heat.radial(X, S, t)[1]
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    return g[..., None] * self.to_tangent(y, x)

  def sample_heat_kernel(self, key, x, t):
    """Exact draw y ~ p_t(x, .): the distance theta from its radial law (exact rejection
    sampler, `SphereHeat.sample_theta`), then a uniform direction in T_x."""
    x = jnp.asarray(x)
    t = self._real_t(t, x)
    bshape = jnp.broadcast_shapes(x.shape[:-1], t.shape)
    x = jnp.broadcast_to(x, bshape + self.shape)
    t = jnp.broadcast_to(t, bshape)
    k1, k2 = jax.random.split(key)
    theta = self.heat.sample_theta(k1, t)
    e = self.to_tangent(x, jax.random.normal(k2, x.shape, x.dtype))
    e2 = _dot(e, e)
    # e = 0 (a normal draw parallel to x) has probability zero, but is possible in floating
    # point for small n: the deterministic fallback runs only when some point needs it
    e = jax.lax.cond(jnp.any(e2 <= 0),
                     lambda e: jnp.where((e2 > 0)[..., None], e, self._antipode_direction(x)),
                     lambda e: e, e)
    e = e / nx.safe_sqrt(_dot(e, e))[..., None]
    y = jnp.cos(theta)[..., None] * x + jnp.sin(theta)[..., None] * e
    return self.proj(y)
