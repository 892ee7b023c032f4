"""Numerically safe scalar helpers shared by all manifolds.

Every helper is written in terms of a *squared* norm where possible, uses a
Taylor branch near zero and the "double where" trick so that both the value and
its gradient stay finite at the singular point (e.g. x = y).
"""
from __future__ import annotations

import jax.numpy as jnp


def eps(dtype) -> float:
  """Machine epsilon of a real or complex dtype (as a Python float)."""
  return float(jnp.finfo(jnp.empty((), dtype).real.dtype).eps)


def real_dtype(x):
  """The real dtype matching x (float32 for complex64, float64 for complex128)."""
  return jnp.empty((), jnp.asarray(x).dtype).real.dtype


def safe_sqrt(sq):
  """sqrt(sq) with a finite (zero) gradient at sq = 0."""
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _series_switch(r2, small, large, thresh):
  """Return small(r2) where r2 < thresh, else large(r2), with safe gradients."""
  is_small = r2 < thresh
  r2_small = jnp.where(is_small, r2, 0.0)
  r2_large = jnp.where(is_small, thresh, r2)
  return jnp.where(is_small, small(r2_small), large(r2_large))


def _thresh(r2):
  # A 4-term Taylor series in r^2 is accurate to eps when r^8 / 9! < eps.
  return (eps(r2.dtype) * 362880.0) ** 0.25


def sinc(r2):
  """sin(r) / r as a function of r^2 (r >= 0)."""
  def small(s):
    return 1.0 - s / 6.0 + s * s / 120.0 - s * s * s / 5040.0

  def large(s):
    r = jnp.sqrt(s)
    return jnp.sin(r) / r

  return _series_switch(r2, small, large, _thresh(r2))


def sinhc(r2):
  """sinh(r) / r as a function of r^2 (r >= 0)."""
  def small(s):
    return 1.0 + s / 6.0 + s * s / 120.0 + s * s * s / 5040.0

  def large(s):
    r = jnp.sqrt(s)
    return jnp.sinh(r) / r

  return _series_switch(r2, small, large, _thresh(r2))


def log_sinc(r2):
  """log(sin(r) / r) as a function of r^2, for 0 <= r < pi."""
  def small(s):
    return -s / 6.0 - s * s / 180.0 - s * s * s / 2835.0

  def large(s):
    r = jnp.sqrt(s)
    return jnp.log(jnp.sin(r) / r)

  return _series_switch(r2, small, large, _thresh(r2))


def log_sinhc(r2):
  """log(sinh(r) / r) as a function of r^2 (stable for large r too)."""
  def small(s):
    return s / 6.0 - s * s / 180.0 + s * s * s / 2835.0

  def large(s):
    r = jnp.sqrt(s)
    # log sinh r = r + log1p(-exp(-2r)) - log 2
    return r + jnp.log1p(-jnp.exp(-2.0 * r)) - jnp.log(2.0) - jnp.log(r)

  return _series_switch(r2, small, large, _thresh(r2))


def x_over_sin(r2):
  """r / sin(r) as a function of r^2, for 0 <= r < pi."""
  return 1.0 / sinc(r2)
