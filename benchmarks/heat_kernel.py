"""Heat-kernel speed and the error of the approximations prior codebases use.

    python benchmarks/heat_kernel.py [--batch 65536] [--skip-speed] [--skip-error]
                                     [--specs sphere(2),su(3)]

Speed (float32, jit, batch 65,536, t log-uniform in [1e-3, 2]): points/s for
log p + score and for exact sampling, and their cost relative to one `exp` on the
same batch (goal: <= 10x and <= 20x).

Error (float64): |log p_approx - log p_exact| on spheres for the eigen-series truncated
at 5 and 50 terms (Gegenbauer, as in RSGM-style code) and for the plain Varadhan
formula -n/2 log(2 pi t) - theta^2 / 2t, over t in {1e-3, 1e-2, 0.1, 1} and theta in
a grid where log p > -500.  "exact" is geogen's log_heat_kernel (tested against
mpmath to 1e-6 relative in tests/).
"""
import argparse
import math
import os
import sys

# The script's folder would shadow the `manifolds` package: use the repo root.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._timing import device_name, throughput  # noqa: E402
from manifolds import from_spec  # noqa: E402

SPECS = ["sphere(2)", "sphere(15)", "sphere(127)", "sphere(1023)", "hyperbolic(2)",
         "hyperbolic(7)", "su(2)", "su(3)", "torus(7)"]


def _inputs(M, batch, key):
  k1, k2, k3 = jax.random.split(key, 3)
  if M.compact:
    x = M.random_uniform(k1, (batch,))
  else:
    o = jnp.zeros(M.shape, M.dtype).at[..., 0].set(1.0)
    x = M.exp(o, M.to_tangent(o, 0.5 * jax.random.normal(k1, (batch,) + M.shape, M.dtype)))
  t = jnp.exp(jax.random.uniform(k2, (batch,), minval=math.log(1e-3), maxval=math.log(2.0)))
  v = M.random_normal_tangent(k3, x) * jnp.sqrt(t)[(...,) + (None,) * len(M.shape)]
  y = M.exp(x, v)
  return x, v, y, t


def speed(batch, specs=SPECS):
  print(f"\n## speed: device {device_name()}, batch {batch}, float32")
  print("| manifold | exp Mpts/s | log p + score Mpts/s | (x exp) | sample Mpts/s | (x exp) |")
  print("| --- | --- | --- | --- | --- | --- |")
  for spec in specs:
    M = from_spec(spec)
    x, v, y, t = _inputs(M, batch, jax.random.PRNGKey(0))
    t_exp = throughput(jax.jit(M.exp), x, v, repeats=20)   # best of many: a cheap, noisy op
    t_lp = throughput(jax.jit(lambda a, b, s: (M.log_heat_kernel(a, b, s),
                                               M.heat_kernel_score(a, b, s))), x, y, t)
    t_s = throughput(jax.jit(M.sample_heat_kernel), jax.random.PRNGKey(1), x, t)
    print(f"| {spec} | {batch / t_exp / 1e6:.2f} | {batch / t_lp / 1e6:.3f} | {t_lp / t_exp:.1f} "
          f"| {batch / t_s / 1e6:.3f} | {t_s / t_exp:.1f} |", flush=True)


def _truncated_series(n, theta, t, terms):
  """Eigen-series truncated at `terms` terms, float64 (scipy Gegenbauer)."""
  from scipy.special import eval_gegenbauer, gammaln
  lam = (n - 1) / 2.0
  log_vol = math.log(2) + (n + 1) / 2 * math.log(math.pi) - gammaln((n + 1) / 2)
  c = np.cos(theta)
  s = np.zeros_like(theta)
  for l in range(terms):
    s += math.exp(-l * (l + n - 1) * t / 2) * (2 * l + n - 1) / (n - 1) * eval_gegenbauer(l, lam, c)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.log(s) - log_vol


def errors():
  jax.config.update("jax_enable_x64", True)
  print("\n## error of prior approximations vs exact log p (float64), max |delta log p| in nats")
  print("| manifold | t | eigen-series 5 terms | eigen-series 50 terms | Varadhan |")
  print("| --- | --- | --- | --- | --- |")
  for n in [2, 15, 127]:
    M = from_spec(f"sphere({n})")
    x = jnp.zeros(n + 1).at[0].set(1.0)
    for t in [1e-3, 1e-2, 0.1, 1.0]:
      theta = np.linspace(0.0, math.pi, 200)[1:-1]
      y = np.zeros((theta.size, n + 1))
      y[:, 0], y[:, 1] = np.cos(theta), np.sin(theta)
      exact = np.asarray(M.log_heat_kernel(x, jnp.asarray(y), t))
      ok = exact > -500
      row = []
      for terms in [5, 50]:
        approx = _truncated_series(n, theta, t, terms)
        err = np.abs(approx - exact)[ok]
        err = np.where(np.isfinite(err), err, np.inf)
        row.append("nan/-inf (negative sum)" if not np.all(np.isfinite(err)) else f"{err.max():.3g}")
      var = -n / 2 * np.log(2 * np.pi * t) - theta**2 / (2 * t)
      row.append(f"{np.abs(var - exact)[ok].max():.3g}")
      print(f"| S^{n} | {t:g} | " + " | ".join(row) + " |", flush=True)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=65536)
  ap.add_argument("--skip-speed", action="store_true")
  ap.add_argument("--skip-error", action="store_true")
  ap.add_argument("--specs", default=",".join(SPECS),
                  help="comma-separated manifold specs for the speed table")
  args = ap.parse_args()
  if not args.skip_speed:
    speed(args.batch, [s.strip() for s in args.specs.split(";" if ";" in args.specs else ",")
                       if s.strip()])
  if not args.skip_error:
    errors()


if __name__ == "__main__":
  main()
