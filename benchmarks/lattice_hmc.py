"""HMC baseline on 2D lattice gauge theory (Wilson action) against the exact character-expansion
references: plaquette bias, <Q^2> (U(1)), ESS per second and (optionally) AIS log Z.

    python benchmarks/lattice_hmc.py                       # full grid: L = 4, 8; U(1), SU(2), SU(3)
    python benchmarks/lattice_hmc.py --tiny                # smoke test (seconds)
    python benchmarks/lattice_hmc.py --ais --groups su2 --sizes 4

For each (group, L, beta): C independent chains from Haar-random starts, `--burnin`
transitions with dual-averaging step-size adaptation (target acceptance 0.8), then
`--samples` recorded transitions of `--leapfrog` leapfrog steps (fixed step size, +-10%
jitter).  Columns:
  <P> exact / HMC   mean plaquette (1/N) Re tr U_p; HMC +- s.e. of the C independent chain means
  bias/se           (HMC - exact) / s.e.
  ESS, ESS/s        multi-chain ESS of the plaquette (geogen.hmc.effective_sample_size) and per
                    second of the whole run (burn-in included, compile excluded)
  <Q^2>             U(1) topological susceptibility check (exact / HMC +- s.e.), ESS of Q^2
  log Z             exact (w.r.t. Riemannian volume) and AIS estimate +- s.e. (with --ais)
The wall time excludes compilation (the run is compiled ahead of time, timed separately).
"""
import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from geogen import hmc  # noqa: E402
from geogen.targets import get_target  # noqa: E402
from manifolds import from_spec  # noqa: E402

DEFAULT_BETAS = {"u1": (1.0, 2.0, 4.0), "su2": (2.0, 4.0), "su3": (3.0, 6.0)}


def manifold_for(group, L):
  k = 2 * L * L
  return from_spec({"u1": f"torus(1)^{k}", "su2": f"su(2)^{k}", "su3": f"su(3)^{k}"}[group])


def chain_stats(trace):
  cm = np.asarray(trace, np.float64).mean(axis=0)
  return float(cm.mean()), float(cm.std(ddof=1) / math.sqrt(cm.size))


def run_one(group, L, beta, args):
  man = manifold_for(group, L)
  t = get_target(f"lattice_{group}(beta={beta})", man)
  key = jax.random.PRNGKey(args.seed)
  k_init, k_run, k_ais = jax.random.split(key, 3)
  init = man.random_uniform(k_init, (args.chains,))
  eps0 = jnp.full((args.chains,), args.step, jnp.empty((), init.dtype).real.dtype)
  run = hmc.compiled_run(t.log_prob, man, t.observables, args.leapfrog, 0.1, args.samples,
                         args.burnin, 1, True, 0.8, False)
  t0 = time.perf_counter()
  compiled = run.lower(k_run, init, eps0).compile()
  t_compile = time.perf_counter() - t0
  t0 = time.perf_counter()
  out = compiled(k_run, init, eps0)
  jax.block_until_ready(out)
  wall = time.perf_counter() - t0
  _, obs, _, acc, _, eps, _ = out
  row = {"group": group, "L": L, "beta": beta, "acc": float(jnp.mean(acc)),
         "eps": float(jnp.mean(eps)), "wall": wall, "compile": t_compile,
         "P_exact": t.exact_observables["plaquette"], "logz": t.log_z}
  row["P"], row["P_se"] = chain_stats(obs["plaquette"])
  row["ess"] = hmc.effective_sample_size(obs["plaquette"])
  if group == "u1":
    row["Q2_exact"] = t.exact_observables["Q2"]
    row["Q2"], row["Q2_se"] = chain_stats(obs["Q2"])
    row["ess_q2"] = hmc.effective_sample_size(obs["Q2"])
  if args.ais:
    a = hmc.annealed_importance_sampling(t.log_prob, man, k_ais, num_chains=args.ais_chains,
                                         num_temps=args.ais_temps, step_size=row["eps"],
                                         num_leapfrog=args.leapfrog)
    row["logz_ais"], row["logz_ais_se"], row["ais_ess"] = a.log_z, a.log_z_se, a.ess
  return row


def fmt(rows, ais):
  head = ("| group | L | beta | <P> exact | <P> HMC | bias/se | acc | eps | ESS | ESS/s "
          "| <Q^2> exact | <Q^2> HMC | ESS(Q^2) | log Z exact |")
  sep = "|" + "---|" * (head.count("|") - 1)
  if ais:
    head += " log Z AIS | AIS ESS |"
    sep += "---|---|"
  lines = [head, sep]
  for r in rows:
    q2 = (f"{r['Q2_exact']:.4f} | {r['Q2']:.4f} +- {r['Q2_se']:.4f} | {r['ess_q2']:.0f}"
          if "Q2" in r else "- | - | -")
    line = (f"| {r['group']} | {r['L']} | {r['beta']:g} | {r['P_exact']:.6f} | "
            f"{r['P']:.6f} +- {r['P_se']:.6f} | {(r['P'] - r['P_exact']) / r['P_se']:+.2f} | "
            f"{r['acc']:.2f} | {r['eps']:.3f} | {r['ess']:.0f} | {r['ess'] / r['wall']:.0f} | "
            f"{q2} | {r['logz']:.4f} |")
    if ais:
      line += (f" {r['logz_ais']:.4f} +- {r['logz_ais_se']:.4f} | {r['ais_ess']:.0f} |")
    lines.append(line)
  return "\n".join(lines)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--groups", default="u1,su2,su3")
  p.add_argument("--sizes", default="4,8")
  p.add_argument("--betas", default="", help="comma list used for every group "
                 "(default: u1 1,2,4; su2 2,4; su3 3,6)")
  p.add_argument("--chains", type=int, default=64)
  p.add_argument("--samples", type=int, default=1000)
  p.add_argument("--burnin", type=int, default=300)
  p.add_argument("--leapfrog", type=int, default=10)
  p.add_argument("--step", type=float, default=0.1, help="initial step size (adapted)")
  p.add_argument("--ais", action="store_true", help="also estimate log Z by AIS")
  p.add_argument("--ais-chains", type=int, default=256)
  p.add_argument("--ais-temps", type=int, default=2000)
  p.add_argument("--x64", action="store_true", help="float64 (default float32)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--tiny", action="store_true", help="smoke test: L = 2, few chains/samples")
  args = p.parse_args()
  if args.x64:
    jax.config.update("jax_enable_x64", True)
  sizes = [int(s) for s in args.sizes.split(",")]
  if args.tiny:
    sizes, args.chains, args.samples, args.burnin, args.leapfrog = [2], 8, 20, 10, 3
    args.ais_chains, args.ais_temps = 16, 10
  rows = []
  for group in args.groups.split(","):
    betas = ([float(b) for b in args.betas.split(",")] if args.betas
             else DEFAULT_BETAS[group][: 1 if args.tiny else None])
    for L in sizes:
      for beta in betas:
        r = run_one(group, L, beta, args)
        print(f"# {group} L={L} beta={beta}: compile {r['compile']:.1f}s run {r['wall']:.1f}s",
              file=sys.stderr, flush=True)
        rows.append(r)
  d = jax.devices()[0]
  print(f"device: {d.platform} {getattr(d, 'device_kind', '')}; dtype "
        f"{'float64' if args.x64 else 'float32'}; chains {args.chains}, burn-in {args.burnin}, "
        f"samples {args.samples}, leapfrog {args.leapfrog}")
  print(fmt(rows, args.ais))


if __name__ == "__main__":
  main()
