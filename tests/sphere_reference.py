"""A minimal, independent unit sphere S^n in R^{n+1} for testing generic machinery
(integrators, divergence, likelihood) against closed forms without depending on
manifolds.Sphere.  Geometry only: exp, proj, to_tangent, normal tangent, uniform law.
"""
import math

import jax
import jax.numpy as jnp

from manifolds.base import Manifold


class EmbeddedSphere(Manifold):

  def __init__(self, n):
    self.n = self.dim = n
    self.shape = (n + 1,)

  @property
  def spec(self):
    return f"reference_sphere({self.n})"

  def exp(self, x, v):
    r = jnp.linalg.norm(v, axis=-1, keepdims=True)
    safe = jnp.where(r > 0, r, 1.0)
    return jnp.cos(r) * x + jnp.where(r > 0, jnp.sin(safe) / safe, 1.0) * v

  def proj(self, z):
    return z / jnp.linalg.norm(z, axis=-1, keepdims=True)

  def to_tangent(self, x, z):
    return z - jnp.sum(x * z, axis=-1, keepdims=True) * x

  def random_normal_tangent(self, key, x):
    return self.to_tangent(x, jax.random.normal(key, jnp.shape(x), jnp.asarray(x).dtype))

  def random_uniform(self, key, batch_shape=(), dtype=None):
    z = jax.random.normal(key, tuple(batch_shape) + self.shape, dtype or self.dtype)
    return self.proj(z)

  def log_volume(self):
    return math.log(2.0) + 0.5 * (self.n + 1) * math.log(math.pi) - math.lgamma(0.5 * (self.n + 1))

  def _violation(self, x):
    return jnp.abs(jnp.linalg.norm(x, axis=-1) - 1.0)
