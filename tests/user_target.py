"""A user target for tests/test_targets.py ('user_target:log_density' etc.)."""
import jax.numpy as jnp


def log_density(x):
  """Standard normal on R^n, unnormalized: (B, n) -> (B,)."""
  return -0.5 * jnp.sum(x * x, axis=-1)


def wrong_shape(x):
  """Returns (B, n) instead of (B,)."""
  return -0.5 * x * x


def raises(x):
  raise RuntimeError("user code failed")


NOT_CALLABLE = 3.0
