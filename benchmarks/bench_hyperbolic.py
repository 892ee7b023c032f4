"""Speed of Hyperbolic(n) heat-kernel functions vs exp on a float32 CPU batch.

    python benchmarks/bench_hyperbolic.py [--batch 65536] [--dims 2,3,4,5,10] [--x64]

Prints, per n, the median wall time (ms) of jit-compiled exp, log_heat_kernel,
log_heat_kernel + heat_kernel_score, sample_heat_kernel and their ratio to exp.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np


def timeit(f, *args, reps=7):
  jax.block_until_ready(f(*args))
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    ts.append(time.perf_counter() - t0)
  return 1e3 * float(np.median(ts))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=65536)
  ap.add_argument("--dims", default="2,3,4,5,10")
  ap.add_argument("--x64", action="store_true")
  args = ap.parse_args()
  if args.x64:
    jax.config.update("jax_enable_x64", True)
  from manifolds import Hyperbolic
  for n in [int(a) for a in args.dims.split(",")]:
    m = Hyperbolic(n)
    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    o = m.origin((args.batch,))
    x = m.exp(o, m.random_normal_tangent(k1, o))
    v = m.random_normal_tangent(k2, x)
    y = m.exp(x, v)
    t = jnp.exp(jax.random.uniform(k3, (args.batch,), x.dtype, -5.0, 1.0))
    f_exp = jax.jit(m.exp)
    f_lp = jax.jit(m.log_heat_kernel)
    f_both = jax.jit(lambda x, y, t: (m.log_heat_kernel(x, y, t), m.heat_kernel_score(x, y, t)))
    f_samp = jax.jit(m.sample_heat_kernel)
    te = timeit(f_exp, x, v)
    tl = timeit(f_lp, x, y, t)
    tb = timeit(f_both, x, y, t)
    ts = timeit(f_samp, key, x, t)
    print(f"n={n:3d} {x.dtype}: exp {te:8.2f} ms | logp {tl:8.2f} ({tl/te:6.1f}x) | "
          f"logp+score {tb:8.2f} ({tb/te:6.1f}x) | sample {ts:8.2f} ({ts/te:6.1f}x)", flush=True)


if __name__ == "__main__":
  main()
