"""`Power(base, k)`: k copies of a manifold stacked on a leading point axis.

A point has shape ``(k, *base.shape)``; e.g. the links of an L x L lattice gauge
field are ``Power(SpecialUnitary(3), 2 * L * L)``.  The metric is the product
metric, so per-point scalars (inner products, log-densities, log-determinants)
are sums over the k factors and distances are root-sum-of-squares.
"""
from __future__ import annotations

import jax.numpy as jnp

from manifolds import _numerics as nx
from manifolds.base import Manifold


class Power(Manifold):

  def __init__(self, base: Manifold, k: int):
    if not isinstance(base, Manifold):
      raise TypeError(f"Power(base, k) needs a Manifold base, got {base!r}")
    if isinstance(base, Power):
      raise ValueError("Power of a Power is not supported: use one Power with k1 * k2 factors")
    if int(k) != k or k < 1:
      raise ValueError(f"Power(base, k) needs an integer k >= 1, got {k!r}")
    self.base = base
    self.k = int(k)
    self.dim = base.dim * self.k
    self.shape = (self.k,) + tuple(base.shape)
    self.is_complex = base.is_complex
    self.compact = base.compact
    self.has_global_chart = base.has_global_chart

  @property
  def spec(self):
    return f"{self.base.spec}^{self.k}"

  @staticmethod
  def _t(t):
    """Time of batch shape (...) -> (..., 1) so it broadcasts over the factors."""
    t = jnp.asarray(t)
    return t[..., None]

  # Per-point scalars of the base have shape (..., k): sum over the factor axis.
  def inner(self, x, u, v):
    return jnp.sum(self.base.inner(x, u, v), axis=-1)

  def exp(self, x, v):
    return self.base.exp(x, v)

  def log(self, x, y):
    return self.base.log(x, y)

  def dist(self, x, y):
    return nx.safe_sqrt(jnp.sum(self.base.dist(x, y) ** 2, axis=-1))

  def proj(self, z):
    return self.base.proj(z)

  def to_tangent(self, x, z):
    return self.base.to_tangent(x, z)

  def egrad_to_rgrad(self, x, g):
    return self.base.egrad_to_rgrad(x, g)

  def transp(self, x, y, v):
    return self.base.transp(x, y, v)

  def log_det_exp(self, x, v):
    return jnp.sum(self.base.log_det_exp(x, v), axis=-1)

  def input_features(self, x):
    f = self.base.input_features(x)  # (..., k, F_base)
    return jnp.reshape(f, f.shape[:-2] + (-1,))

  # Product chart: the factors' charts concatenated, (..., k * base.dim).
  def to_chart(self, x):
    c = self.base.to_chart(x)  # (..., k, base.dim)
    return jnp.reshape(c, c.shape[:-2] + (-1,))

  def from_chart(self, c):
    c = jnp.asarray(c)
    return self.base.from_chart(jnp.reshape(c, c.shape[:-1] + (self.k, self.base.dim)))

  def chart_log_volume_density(self, c):
    c = jnp.asarray(c)
    c = jnp.reshape(c, c.shape[:-1] + (self.k, self.base.dim))
    return jnp.sum(self.base.chart_log_volume_density(c), axis=-1)

  def random_uniform(self, key, batch_shape=(), dtype=None):
    return self.base.random_uniform(key, tuple(batch_shape) + (self.k,), dtype)

  def log_volume(self):
    return self.k * self.base.log_volume()

  def random_normal_tangent(self, key, x):
    return self.base.random_normal_tangent(key, x)

  def _violation(self, x):
    return jnp.max(self.base._violation(x), axis=-1)

  def _criterion(self):
    return f"worst factor: {self.base._criterion()}"

  def default_atol(self, dtype):
    return self.base.default_atol(dtype)

  def log_heat_kernel(self, x, y, t):
    return jnp.sum(self.base.log_heat_kernel(x, y, self._t(t)), axis=-1)

  def heat_kernel_score(self, x, y, t):
    return self.base.heat_kernel_score(x, y, self._t(t))

  def sample_heat_kernel(self, key, x, t):
    return self.base.sample_heat_kernel(key, x, self._t(t))
