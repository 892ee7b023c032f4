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


# Regime switch of the circle heat kernel: images (wrapped normal) below, Fourier above.
# Images k in [-3, 3] are exact to eps for t < 2 ((5 pi)^2 / 4 > 60); Fourier terms
# k <= 8 are exact to eps for t >= 2 (exp(-81) ~ 1e-35).
_CIRCLE_T_SWITCH = 2.0
_CIRCLE_IMAGES = 3
_CIRCLE_FOURIER = 8


def circle_log_heat_kernel(theta, t):
  """log p_t on the unit circle at signed angle difference theta (any real), time t.

  Exact to float eps for every t > 0: images sum for t < 2, Fourier series for t >= 2.
  """
  theta = wrap(theta)
  t = jnp.asarray(t, theta.dtype)
  small = t < _CIRCLE_T_SWITCH
  ts = jnp.where(small, t, 1.0)
  tl = jnp.where(small, _CIRCLE_T_SWITCH, t)
  k = jnp.arange(-_CIRCLE_IMAGES, _CIRCLE_IMAGES + 1, dtype=theta.dtype)
  h = theta[..., None] + _TWO_PI * k
  lp_img = jax.nn.logsumexp(-h**2 / (2.0 * ts[..., None]), axis=-1) - 0.5 * jnp.log(
      _TWO_PI * ts)
  kf = jnp.arange(1, _CIRCLE_FOURIER + 1, dtype=theta.dtype)
  four = 1.0 + 2.0 * jnp.sum(
      jnp.exp(-kf**2 * tl[..., None] / 2.0) * jnp.cos(kf * theta[..., None]), axis=-1)
  lp_four = jnp.log(four) - math.log(_TWO_PI)
  return jnp.where(small, lp_img, lp_four)


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
    t = self._real_t(t, x)
    return jnp.sum(circle_log_heat_kernel(y - x, t[..., None]), axis=-1)

  def heat_kernel_score(self, x, y, t):
    t = self._real_t(t, x)
    theta = wrap(y - x)
    shape = jnp.broadcast_shapes(theta.shape, t[..., None].shape)
    theta = jnp.broadcast_to(theta, shape)
    tt = jnp.broadcast_to(t[..., None], shape)
    g = jax.grad(lambda a: jnp.sum(circle_log_heat_kernel(a, tt)))(theta)
    return g

  def sample_heat_kernel(self, key, x, t):
    x = jnp.asarray(x)
    t = self._real_t(t, x)
    shape = jnp.broadcast_shapes(x.shape[:-1], t.shape) + self.shape
    z = jax.random.normal(key, shape, x.dtype)
    return wrap(x + jnp.sqrt(t)[..., None] * z)
