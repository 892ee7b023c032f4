"""Riemannian diffusion end to end on several manifolds (too slow for the CI suite).

    python benchmarks/diffusion_smoke.py [--steps 300] [spec ...]
    (default specs: torus(2) sphere(2) sphere(20) su(2) su(2)^3)

Data: the heat kernel around a random centre at time 0.2, whose density convolved with
the model's smallest noise is exactly p_{0.2 + tau(eps)}; so the exact test NLL is known
and printed next to the model's.  Reports wall times (compile included), the last loss,
NFE and the divergence mode of the likelihood ODE.  Manifolds whose heat kernel is not
implemented are reported and skipped.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from geogen.models import diffusion as D  # noqa: E402
from manifolds import from_spec  # noqa: E402


def run(spec: str, steps: int, batch: int = 128, n_eval: int = 64):
  m = from_spec(spec)
  config = None  # defaults for every section
  model = D.init(config, m, jax.random.key(0))
  opt = nnx.Optimizer(model, optax.adam(2e-3), wrt=nnx.Param)
  centre = m.random_uniform(jax.random.key(1), ())
  t0 = 0.2

  @nnx.jit
  def step(model, opt, key):
    kd, kl = jax.random.split(key)
    x = m.sample_heat_kernel(kd, centre, jnp.full((batch,), t0))
    (value, _), grads = nnx.value_and_grad(lambda mm: D.loss(mm, x, kl), has_aux=True)(model)
    opt.update(model, grads)
    return value

  tic = time.perf_counter()
  losses = [float(step(model, opt, k)) for k in jax.random.split(jax.random.key(2), steps)]
  t_train = time.perf_counter() - tic
  tic = time.perf_counter()
  xs = D.sample(model, jax.random.key(3), 256)
  t_sample = time.perf_counter() - tic
  assert bool(jnp.all(m.belongs(xs)))
  x = m.sample_heat_kernel(jax.random.key(4), centre, jnp.full((n_eval,), t0))
  tic = time.perf_counter()
  logp, st = D.log_prob_and_stats(model, x, jax.random.key(5))
  t_lp = time.perf_counter() - tic
  exact = m.log_heat_kernel(centre, x, t0 + float(model.schedule.tau(model.cfg.eps)))
  print(f"{spec:12s} train {steps} steps {t_train:6.1f}s  loss {np.mean(losses[-20:]):.3f}  "
        f"sample {t_sample:5.1f}s  log_prob {t_lp:5.1f}s nfe {st['nfe']} ({st['divergence']})  "
        f"NLL model {-float(jnp.mean(logp)):.3f} exact {-float(jnp.mean(exact)):.3f}",
        flush=True)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("specs", nargs="*",
                 default=["torus(2)", "sphere(2)", "sphere(20)", "su(2)", "su(2)^3"])
  p.add_argument("--steps", type=int, default=300)
  a = p.parse_args()
  for spec in a.specs:
    try:
      run(spec, a.steps)
    except NotImplementedError as e:
      print(f"{spec:12s} skipped: {e}")


if __name__ == "__main__":
  main()
