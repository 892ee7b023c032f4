"""Flat manifolds: `Euclidean(n)` and the flat torus `Torus(n)` (angles in [-pi, pi))."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from manifolds import _numerics as nx
from manifolds.base import Manifold

_TWO_PI = 2.0 * math.pi


class Euclidean(Manifold):
  """R^n with the standard metric.  Points: shape (n,)."""

  compact = False

  def __init__(self, n: int):
    if int(n) != n or n < 1:
      raise ValueError(f"Euclidean(n) needs an integer n >= 1, got {n!r}")
    self.n = self.dim = int(n)
    self.shape = (self.n,)

  @property
  def spec(self):
    return f"euclidean({self.n})"

  def exp(self, x, v):
    return x + v

  def log(self, x, y):
    return y - x

  def dist(self, x, y):
    return nx.safe_sqrt(jnp.sum((y - x) ** 2, axis=-1))

  def proj(self, z):
    return z

  def to_tangent(self, x, z):
    return jnp.broadcast_to(z, jnp.broadcast_shapes(jnp.shape(x), jnp.shape(z)))

  def transp(self, x, y, v):
    return jnp.broadcast_to(v, jnp.broadcast_shapes(jnp.shape(x), jnp.shape(y), jnp.shape(v)))

  def log_det_exp(self, x, v):
    return jnp.zeros(jnp.broadcast_shapes(jnp.shape(x), jnp.shape(v))[:-1], nx.real_dtype(v))

  def random_normal_tangent(self, key, x):
    return jax.random.normal(key, jnp.shape(x), jnp.asarray(x).dtype)

  def _violation(self, x):
    return jnp.zeros(jnp.shape(x)[:-1], nx.real_dtype(x))

  def _criterion(self):
    return "every finite point belongs"

  def log_heat_kernel(self, x, y, t):
    t = self._real_t(t, x)
    d2 = jnp.sum((y - x) ** 2, axis=-1)
    return -0.5 * self.n * jnp.log(2.0 * math.pi * t) - d2 / (2.0 * t)

  def heat_kernel_score(self, x, y, t):
    t = self._real_t(t, x)
    return (x - y) / t[..., None]

  def sample_heat_kernel(self, key, x, t):
    x = jnp.asarray(x)
    t = self._real_t(t, x)
    shape = jnp.broadcast_shapes(x.shape[:-1], t.shape) + self.shape
    z = jax.random.normal(key, shape, x.dtype)
    return x + jnp.sqrt(t)[..., None] * z


def wrap(a):
  """Wrap angles into [-pi, pi)."""
  return jnp.mod(a + math.pi, _TWO_PI) - math.pi


# Circle heat kernel p_t(theta) = sum_k (2 pi t)^{-1/2} exp(-(theta + 2 pi k)^2 / 2t).
# Images below T_SWITCH, Fourier series at and above; the number of terms of each is the
# smallest that is exact to the dtype's eps on its side of the switch (`_circle_counts`).
_CIRCLE_T_SWITCH = 2.0
_CIRCLE_GROUP = 16  # per-angle factors multiplied before one log (in [0.3, 2.1]: no overflow)


def _circle_counts(dtype):
  """(J, K, F): images k = -J..K, Fourier terms 1..F, for theta in [-pi, pi) (|theta| = phi).

  Image k relative to k = 0 is T_k = exp(-2 pi k (phi + pi k) / t) <= c^{k^2} (k > 0) and
  <= c^{j (j - 1)} (k = -j < 0), c = exp(-2 pi^2 / t) <= exp(-2 pi^2 / T_SWITCH) below the
  switch, against a sum >= 1; Fourier term k is exp(-k^2 t / 2) <= exp(-k^2 T_SWITCH / 2)
  against 2 pi p >= 0.3 above it.  Keep every term above exp(-L), L = log(1/eps) + 2.
  """
  big_l = -math.log(nx.eps(dtype)) + 2.0
  a = 2.0 * math.pi**2 / _CIRCLE_T_SWITCH
  neg = max(j for j in range(1, 50) if j * (j - 1) * a <= big_l)
  pos = max([0] + [k for k in range(1, 50) if k * k * a <= big_l])
  four = max(k for k in range(1, 50) if k * k * _CIRCLE_T_SWITCH / 2.0 <= big_l)
  return neg, pos, four


def _circle_images(theta, t, with_slope: bool):
  """Images sum for t < T_SWITCH as (b, v[, s]): log p = b + log v, d log p / d theta = s.

  With phi = |theta| <= pi, E = exp(-2 pi (pi - phi) / t) in [c, 1] (one exp per angle) and
  c = exp(-2 pi^2 / t): T_{-j} = c^{j (j-1)} E^j, T_k = c^{k (k+1)} / E^k = c^{k^2} (c / E)^k, so v = sum T in
  [1, 2 + ...] needs only products, and d T_k / d phi = -(2 pi k / t) T_k.
  theta in [-pi, pi), t broadcastable -> each of the broadcast shape.
  """
  neg, pos, _ = _circle_counts(theta.dtype)
  phi = jnp.abs(theta)
  e = jnp.exp((-_TWO_PI / t) * (math.pi - phi))
  c = jnp.exp((-_TWO_PI * math.pi) / t)
  c2 = c * c
  v, s1 = 1.0 + e, -e          # s1 = sum_k k T_k
  term, cpow = e, c2           # T_{-j}, c^{2j}
  for j in range(2, neg + 1):
    term = term * cpow * e
    cpow = cpow * c2
    v, s1 = v + term, s1 - j * term
  if pos:
    # T_k = c^{k^2} r^k with r = c / E = exp(-2 pi phi / t) <= 1: products of numbers <= 1
    # only.  (Dividing by E instead gives 0 * inf = NaN in the autodiff gradient once c
    # underflows in float32.)
    r = jnp.exp((-_TWO_PI / t) * phi)
    term, cpow = c * r, c2 * c   # T_1, c^3
    v, s1 = v + term, s1 + term
    for k in range(2, pos + 1):
      term = term * cpow * r     # c^{k^2} r^k = T_{k-1} c^{2k-1} r
      cpow = cpow * c2
      v, s1 = v + term, s1 + k * term
  b = -theta * theta / (2.0 * t) - 0.5 * jnp.log(_TWO_PI * t)
  if not with_slope:
    return b, v
  sgn = jnp.where(theta < 0, -1.0, 1.0).astype(theta.dtype)
  return b, v, -theta / t - sgn * (_TWO_PI / t) * s1 / v


def _circle_fourier(theta, t, with_slope: bool):
  """Fourier series for t >= T_SWITCH as (b, v[, s]) (see `_circle_images`):
  2 pi p = 1 + 2 sum_k q_k cos(k theta), q_k = exp(-k^2 t / 2); cos/sin(k theta) by the
  Chebyshev recurrence from one cos and one sin per angle."""
  _, _, four = _circle_counts(theta.dtype)
  c1, s1 = jnp.cos(theta), jnp.sin(theta)
  ck, ckm, sk, skm = c1, jnp.ones_like(c1), s1, jnp.zeros_like(s1)
  v, dv = 1.0, 0.0
  for k in range(1, four + 1):
    q = 2.0 * jnp.exp(-0.5 * k * k * t)
    v, dv = v + q * ck, dv - (k * q) * sk
    ck, ckm = 2.0 * c1 * ck - ckm, ck
    sk, skm = 2.0 * c1 * sk - skm, sk
  b = jnp.full_like(v, -math.log(_TWO_PI))
  if not with_slope:
    return b, v
  return b, v, dv / v


def _circle_terms(theta, t, with_slope: bool = False):
  """(b, v[, s]) of the circle kernel at wrapped theta (..., ) and t (broadcastable):
  log p = b + log v, s = d log p / d theta.  The Fourier branch is only computed when some
  t >= T_SWITCH (lax.cond; under vmap both run and the select is the same)."""
  theta, t = jnp.broadcast_arrays(theta, jnp.asarray(t, theta.dtype))
  small = t < _CIRCLE_T_SWITCH
  img = _circle_images(theta, jnp.where(small, t, 1.0), with_slope)

  def with_fourier(img):
    four = _circle_fourier(theta, jnp.where(small, _CIRCLE_T_SWITCH, t), with_slope)
    return tuple(jnp.where(small, a, b) for a, b in zip(img, four))

  return jax.lax.cond(jnp.all(small), lambda img: img, with_fourier, img)


def circle_log_heat_kernel(theta, t):
  """log p_t on the unit circle at signed angle difference theta (any real), time t.

  Exact to float eps for every t > 0: images sum for t < 2, Fourier series for t >= 2.
  """
  theta = wrap(jnp.asarray(theta))
  b, v = _circle_terms(theta, t)
  return b + jnp.log(v)


def _sum_log_product(v):
  """sum(log v, axis=-1) with one log per group of _CIRCLE_GROUP factors (v in [0.3, 2.1])."""
  n = v.shape[-1]
  groups = -(-n // _CIRCLE_GROUP)
  pad = groups * _CIRCLE_GROUP - n
  if pad:
    v = jnp.concatenate([v, jnp.ones(v.shape[:-1] + (pad,), v.dtype)], axis=-1)
  v = v.reshape(v.shape[:-1] + (groups, _CIRCLE_GROUP))
  return jnp.sum(jnp.log(jnp.prod(v, axis=-1)), axis=-1)


class Torus(Manifold):
  """Flat torus (S^1)^n as angles in [-pi, pi)^n.  Points: shape (n,).

  Tangent vectors are real n-vectors.  Cut locus: `log` returns the [-pi, pi)
  representative of y - x, so an angle difference of exactly pi maps to -pi
  (a minimizing geodesic of length pi, and exp(x, log(x, y)) = y).
  """

  def __init__(self, n: int):
    if int(n) != n or n < 1:
      raise ValueError(f"Torus(n) needs an integer n >= 1, got {n!r}")
    self.n = self.dim = int(n)
    self.shape = (self.n,)

  @property
  def spec(self):
    return f"torus({self.n})"

  def exp(self, x, v):
    return wrap(x + v)

  def log(self, x, y):
    return wrap(y - x)

  def dist(self, x, y):
    return nx.safe_sqrt(jnp.sum(wrap(y - x) ** 2, axis=-1))

  def proj(self, z):
    return wrap(z)

  def to_tangent(self, x, z):
    return jnp.broadcast_to(z, jnp.broadcast_shapes(jnp.shape(x), jnp.shape(z)))

  def transp(self, x, y, v):
    return jnp.broadcast_to(v, jnp.broadcast_shapes(jnp.shape(x), jnp.shape(y), jnp.shape(v)))

  def log_det_exp(self, x, v):
    return jnp.zeros(jnp.broadcast_shapes(jnp.shape(x), jnp.shape(v))[:-1], nx.real_dtype(v))

  def input_features(self, x):
    # (cos, sin): continuous across the wrap at -pi / pi, unlike the raw angles.
    return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=-1)

  def random_uniform(self, key, batch_shape=(), dtype=None):
    dtype = self._as_point_dtype(dtype)
    return jax.random.uniform(key, tuple(batch_shape) + self.shape, dtype,
                              minval=-math.pi, maxval=math.pi)

  def log_volume(self):
    return self.n * math.log(_TWO_PI)

  def random_normal_tangent(self, key, x):
    return jax.random.normal(key, jnp.shape(x), jnp.asarray(x).dtype)

  def _violation(self, x):
    # Distance outside [-pi, pi]; pi itself is accepted (it is -pi after wrapping).
    return jnp.max(jnp.maximum(jnp.abs(x) - math.pi, 0.0), axis=-1)

  def _criterion(self):
    return "angles must lie in [-pi, pi)"

  def log_heat_kernel(self, x, y, t):
    """Product of circle kernels: sum of the per-angle b plus one log per 16 angles."""
    t = self._real_t(t, x)
    b, v = _circle_terms(wrap(y - x), t[..., None])
    return jnp.sum(b, axis=-1) + _sum_log_product(v)

  def heat_kernel_score(self, x, y, t):
    """Per angle d log p / d theta in closed form (same terms as the density)."""
    t = self._real_t(t, x)
    return _circle_terms(wrap(y - x), t[..., None], with_slope=True)[2]

  def sample_heat_kernel(self, key, x, t):
    x = jnp.asarray(x)
    t = self._real_t(t, x)
    shape = jnp.broadcast_shapes(x.shape[:-1], t.shape) + self.shape
    z = jax.random.normal(key, shape, x.dtype)
    return wrap(x + jnp.sqrt(t)[..., None] * z)
