"""The base (reference) law of a generative flow on a manifold, shared by model families.

    law = base_law(manifold, scale=1.0)
    z = law.sample(key, (num,))         # (num, *M.shape) points on M
    lp = law.log_prob(z)                # (num,) log-density w.r.t. the Riemannian volume

* Compact M (spheres, tori, SU(n), their powers): the uniform law, log-density
  -log vol(M) (``M.random_uniform``, ``M.log_volume``).
* Non-compact M with a distinguished origin o (``Hyperbolic(n)``: (1, 0, ..., 0);
  ``Euclidean(n)``: 0; a ``Power`` of these: o in every factor): the *wrapped normal*
  exp_o(scale * w), w ~ N(0, I) in T_o M (identity covariance in the metric).  These
  manifolds are Hadamard (exp_o is a diffeomorphism T_o M -> M), so the density is

      log p(x) = -(d/2) log(2 pi scale^2) - |log_o x|^2 / (2 scale^2) - log_det_exp(o, log_o x),

  d = dim M; log_det_exp = (n - 1) log(sinh r / r) on H^n (0 on R^n): the volume of
  geodesic balls grows like sinh^(n-1), so the density of the radius is that of a tangent
  Gaussian.  On R^n this is N(0, scale^2 I).

Other manifolds (non-compact without an origin) raise a ValueError.
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from manifolds.base import Manifold
from manifolds.flat import Euclidean
from manifolds.hyperbolic import Hyperbolic
from manifolds.power import Power

KINDS = ("uniform", "wrapped_normal")


def _check_has_origin(manifold: Manifold) -> None:
  base = manifold.base if isinstance(manifold, Power) else manifold
  if not isinstance(base, (Hyperbolic, Euclidean)):
    raise ValueError(f"{manifold.spec} is not compact and has no origin for a wrapped-normal "
                     "base law; supported: compact manifolds (uniform base), hyperbolic(n), "
                     "euclidean(n) and their powers")


def origin(manifold: Manifold, dtype=None):
  """The origin o of a non-compact manifold (shape M.shape); ValueError if it has none."""
  m = manifold
  _check_has_origin(m)
  base = m.base if isinstance(m, Power) else m
  dtype = m._as_point_dtype(dtype)
  o = base.origin(dtype=dtype) if isinstance(base, Hyperbolic) else jnp.zeros(base.shape, dtype)
  return jnp.broadcast_to(o, tuple(m.shape))


@dataclasses.dataclass(frozen=True)
class BaseLaw:
  """Uniform law (compact M) or wrapped normal at the origin with std `scale` (hashable,
  so a model can hold it as a static attribute)."""
  manifold: Manifold
  kind: str
  scale: float = 1.0

  def sample(self, key, batch_shape=(), dtype=None):
    """Draw points (*batch_shape, *M.shape) on M."""
    m = self.manifold
    if self.kind == "uniform":
      return m.random_uniform(key, tuple(batch_shape), dtype)
    o = jnp.broadcast_to(origin(m, dtype), tuple(batch_shape) + tuple(m.shape))
    w = m.random_normal_tangent(key, o)
    return m.proj(m.exp(o, self.scale * w))

  def log_prob(self, x):
    """Log-density w.r.t. the Riemannian volume.  x: (..., *M.shape) -> (...)."""
    m = self.manifold
    x = jnp.asarray(x)
    if self.kind == "uniform":
      return m.uniform_log_prob(x)
    o = origin(m, x.dtype)
    v = m.log(o, x)
    s2 = self.scale * self.scale
    return (-0.5 * m.dim * math.log(2.0 * math.pi * s2) - m.sq_norm(o, v) / (2.0 * s2)
            - m.log_det_exp(o, v))


def base_law(manifold: Manifold, scale: float = 1.0) -> BaseLaw:
  """Uniform law on a compact M, else the wrapped normal of std `scale` at the origin
  (module docstring).  Raises ValueError where neither exists or scale <= 0."""
  if manifold.compact:
    return BaseLaw(manifold, "uniform")
  if not (float(scale) > 0 and math.isfinite(float(scale))):
    raise ValueError(f"the wrapped-normal base law needs a finite scale > 0, got {scale!r}")
  _check_has_origin(manifold)
  return BaseLaw(manifold, "wrapped_normal", float(scale))
