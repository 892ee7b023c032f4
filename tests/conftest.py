"""Shared test helpers.  Precision is chosen per test with the `x64` fixture."""
import jax
import pytest


@pytest.fixture(autouse=True)
def _precision_per_module(request):
  """Each test starts in the precision its module asks for (module-level ENABLE_X64,
  default float32), so a module that needs float64 cannot leak it into others."""
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", bool(getattr(request.module, "ENABLE_X64", False)))
  yield
  jax.config.update("jax_enable_x64", old)


@pytest.fixture(params=[False, True], ids=["f32", "f64"])
def x64(request):
  """Run a test in float32 and in float64; restores the previous setting."""
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", request.param)
  yield request.param
  jax.config.update("jax_enable_x64", old)


@pytest.fixture
def f64():
  """Run a test in float64 only."""
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  yield True
  jax.config.update("jax_enable_x64", old)
