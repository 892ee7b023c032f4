"""Throughput of exp, log and dist on a batch of 100,000 points (float32, jit).

    python benchmarks/manifolds.py [--batch 100000] [--markdown]

Prints one row per manifold: points/s for each operation on the default JAX device.
"""
import argparse
import os
import sys

# The script's folder would shadow the `manifolds` package: use the repo root.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks._timing import device_name, throughput  # noqa: E402
from manifolds import from_spec  # noqa: E402

SPECS = ["sphere(2)", "sphere(127)", "hyperbolic(2)", "su(3)", "torus(7)"]


def _points(M, key, batch):
  k1, k2, k3 = jax.random.split(key, 3)
  if M.compact:
    x = M.random_uniform(k1, (batch,))
  else:
    o = jnp.zeros(M.shape, M.dtype).at[0].set(1.0)
    x = M.exp(o, M.to_tangent(o, jax.random.normal(k1, (batch,) + M.shape, M.dtype)))
  v = M.random_normal_tangent(k2, x)
  v = v * (0.5 / jnp.sqrt(M.dim))
  y = M.exp(x, v)
  return x, v, y


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=100_000)
  ap.add_argument("--markdown", action="store_true")
  args = ap.parse_args()
  print(f"device {device_name()}, batch {args.batch}, float32; Mpoints/s (higher is better)")
  print("| manifold | exp | log | dist |")
  print("| --- | --- | --- | --- |")
  for spec in SPECS:
    M = from_spec(spec)
    x, v, y = _points(M, jax.random.PRNGKey(0), args.batch)
    row = []
    for name, fn, a in [("exp", M.exp, (x, v)), ("log", M.log, (x, y)), ("dist", M.dist, (x, y))]:
      sec = throughput(jax.jit(fn), *a)
      row.append(f"{args.batch / sec / 1e6:.2f}")
    print(f"| {spec} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
  main()
