"""GFlowNet sampler suite: train the gfn_* configs and print the issue-6 table.

    python benchmarks/gflownet_suite.py                              # every gfn_* config, seed 0
    python benchmarks/gflownet_suite.py --configs gfn_gmm25,gfn_funnel,gfn_manywell --seeds 0,1,2
    python benchmarks/gflownet_suite.py --configs gfn_lattice_su2 --tag L8 \\
        --set "manifold=su(2)^128" --set "target=lattice_su2(beta=2.0)"
    python benchmarks/gflownet_suite.py --tiny --root /tmp/gfn_tiny  # smoke check (minutes, CPU)

Each run is `python train.py --config configs/<name>.py --workdir <root>/<name>[+tag]/seed<k>
--config.seed=<k> [--config.<key>=<value> ...]` in a subprocess, one after the other; runs
whose eval.json exists are skipped, unfinished ones resume (train.py's own resume), so the
command can be rerun after an interruption.  `--table-only` aggregates what exists.

One markdown row per config (mean over the finished seeds, +- sample std when > 1 seed):
  log Z          exact log normalizer of the target (w.r.t. Riemannian volume)
  |IW err|       |log Z_IW - log Z|, log Z_IW = logsumexp(log w) - log n   (Sendera et al.'s
                 "log Z^RW" error)
  ELBO gap       log Z - mean(log w)                                       ("log Z" error)
  EUBO gap       mean(log w on P_B trajectories from exact samples) - log Z
  W2             2-Wasserstein distance to exact samples (eval_w2_points points)
  ESS            normalized effective sample size of the importance weights
  obs bias       (IW estimate - exact) of the target's headline observable: the mean
                 plaquette for lattices (and <Q^2> for U(1)), else every exact observable's
                 largest |bias| relative to its s.e.
and training steps/s, wall time per run and the platform / device read from eval.json.
"""
import argparse
import glob
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.results_table import run_dir, train  # noqa: E402  (one runner for both tables)

# Small settings for a smoke check of the whole pipeline (not for numbers).
TINY = ["train.num_steps=20", "train.batch_size=16", "train.steps_per_dispatch=10",
        "train.log_every=10", "train.ckpt_every=20", "train.eval_every=20",
        "train.warmup_steps=2", "net.hidden=16", "net.depth=1", "gflownet.num_steps=5",
        "gflownet.buffer_capacity=64", "gflownet.ls_every=5", "gflownet.ls_mala_steps=2",
        "gflownet.ls_backtrack_steps=2", "gflownet.eval_samples=64",
        "gflownet.explore_anneal_steps=10", "eval.batch_size=64", "eval.num_plot_samples=0"]


def all_configs() -> list:
  return sorted(os.path.splitext(os.path.basename(p))[0]
                for p in glob.glob(os.path.join(ROOT, "configs", "gfn_*.py")))


def _stat(evals, key):
  v = [e[key] for e in evals if isinstance(e.get(key), (int, float))]
  if not v:
    return None
  m = sum(v) / len(v)
  s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None
  return m, s


def _fmt(stat, digits=3, absolute=False):
  if stat is None:
    return "-"
  m, s = stat
  m = abs(m) if absolute else m
  return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def observable_bias(e: dict) -> str:
  """The headline observable bias of one eval.json (see the module docstring)."""
  if "obs_plaquette_bias_iw" in e:
    out = f"plaq {e['obs_plaquette_bias_iw']:+.4f}"
    if "obs_Q2_bias_iw" in e:
      out += f", Q2 {e['obs_Q2_bias_iw']:+.3f}"
    return out
  worst, name = None, None
  for k, v in e.items():
    if k.endswith("_bias_iw") and isinstance(v, (int, float)):
      base = k[:-len("_bias_iw")]
      se = e.get(base + "_stderr") or float("nan")
      z = abs(v) / se if se and se > 0 else float("inf")
      if worst is None or z > worst:
        worst, name = z, base[len("obs_"):]
  return "-" if name is None else f"{name} {e['obs_' + name + '_bias_iw']:+.3f} ({worst:.1f} se)"


def row(label: str, evals: list) -> str:
  e0 = evals[0]
  iw_err = _stat([{"v": abs(e["log_z_iw_error"])} for e in evals if "log_z_iw_error" in e], "v")
  sps, wall = _stat(evals, "steps_per_sec"), _stat(evals, "wall_time_s")
  return (f"| {label} | {e0.get('target')} | {e0.get('manifold')} | "
          f"{_fmt(_stat(evals, 'log_z'))} | {_fmt(iw_err)} | {_fmt(_stat(evals, 'log_z_elbo_gap'))}"
          f" | {_fmt(_stat(evals, 'eubo_gap'))} | {_fmt(_stat(evals, 'w2'))} | "
          f"{_fmt(_stat(evals, 'ess'))} | {'; '.join(observable_bias(e) for e in evals)} | "
          f"{len(evals)} | {e0.get('num_steps')} | {'-' if sps is None else f'{sps[0]:.1f}'} | "
          f"{'-' if wall is None else f'{wall[0]:.0f}'} | {e0.get('platform')} x"
          f"{e0.get('num_devices')} |")


HEADER = ("| config | target | manifold | log Z | \\|IW err\\| | ELBO gap | EUBO gap | W2 | ESS "
          "| obs bias (IW) | seeds | steps | steps/s | wall s | device |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--configs", default=",".join(all_configs()))
  p.add_argument("--seeds", default="0")
  p.add_argument("--root", default=os.path.join(ROOT, "runs", "gfn_suite"))
  p.add_argument("--tag", default="", help="suffix of the run directories (e.g. L8)")
  p.add_argument("--set", action="append", default=[], help="config override key=value")
  p.add_argument("--tiny", action="store_true", help="small settings (smoke check)")
  p.add_argument("--table-only", action="store_true")
  a = p.parse_args(argv)
  names = [n.strip() for n in a.configs.split(",") if n.strip()]
  seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
  overrides = (TINY if a.tiny else []) + list(a.set)
  rows = []
  for name in names:
    evals = []
    for seed in seeds:
      wd = run_dir(a.root, name, a.tag, seed)
      path = os.path.join(wd, "eval.json")
      if not os.path.exists(path) and not a.table_only:
        train(name, seed, wd, overrides)
      if os.path.exists(path):
        with open(path) as f:
          evals.append(json.load(f))
    if evals:
      rows.append(row(name + (f"+{a.tag}" if a.tag else ""), evals))
  print(HEADER)
  for r in rows:
    print(r)
  return 0


if __name__ == "__main__":
  sys.exit(main())
