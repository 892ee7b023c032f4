"""Timing helper shared by the benchmarks."""
import time

import jax


def throughput(fn, *args, repeats: int = 5) -> float:
  """Best-of-`repeats` wall time of a jitted call (after compilation), in seconds."""
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def device_name() -> str:
  d = jax.devices()[0]
  return f"{d.platform}:{getattr(d, 'device_kind', '')}"
