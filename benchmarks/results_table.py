"""Results tables: train several configs over several seeds and aggregate eval.json.

    python benchmarks/results_table.py --configs earth_volcano,earth_earthquake,earth_flood,\
earth_fire --seeds 0,1,2,3,4 [--root runs/results] [--set train.num_steps=20000 ...]
    python benchmarks/results_table.py --configs synthetic_s2,synthetic_t4 --seeds 0
    python benchmarks/results_table.py --configs fm_earth_volcano,earth_volcano --seeds 0,1,2,3,4

Each run is `python train.py --config configs/<name>.py --workdir <root>/<name>[+tag]/seed<k>
--config.seed=<k> [--config.<key>=<value> ...]` in a subprocess, one after the other.  Runs
whose eval.json exists are skipped and unfinished ones resume from their last checkpoint
(train.py's own resume), so the command can be rerun after an interruption.  `--table-only`
just aggregates what exists.

Prints one markdown row per config: test NLL mean +- std over the finished seeds (sample
std, ddof=1), the KL (test NLL - exact entropy) for synthetic data, NFE, training steps/s,
steps, wall time per run, platform and device count read from eval.json.
"""
import argparse
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_dir(root: str, name: str, tag: str, seed: int) -> str:
  return os.path.join(root, name + (f"+{tag}" if tag else ""), f"seed{seed}")


def train(name: str, seed: int, workdir: str, overrides) -> None:
  """Run (or resume) one training; raises if train.py fails."""
  cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--config",
         os.path.join(ROOT, "configs", f"{name}.py"), "--workdir", workdir,
         f"--config.seed={seed}", "--config.train.progress=False"]
  cmd += [f"--config.{o}" for o in overrides]
  print("$", " ".join(cmd), flush=True)
  subprocess.run(cmd, check=True, cwd=ROOT)


def _mean_std(v):
  if not v:
    return float("nan"), float("nan")
  m = sum(v) / len(v)
  s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
  return m, s


def _fmt(m, s):
  return f"{m:.3f}" if math.isnan(s) else f"{m:.3f} ± {s:.3f}"


def row(name: str, evals: list) -> str:
  nll = _mean_std([e["test_nll"] for e in evals])
  kls = [e["kl"] for e in evals if "kl" in e]
  kl = _fmt(*_mean_std(kls)) if kls else "-"
  nfe = _mean_std([e.get("nfe", float("nan")) for e in evals])[0]
  sps = _mean_std([e.get("steps_per_sec", float("nan")) for e in evals])[0]
  wall = _mean_std([e.get("wall_time_s", float("nan")) for e in evals])[0]
  e0 = evals[0]
  hw = f"{e0.get('platform', '?')} x{e0.get('num_devices', '?')}"
  return (f"| {name} | {e0.get('data', '?')} | {e0.get('model', '?')} | {_fmt(*nll)} | {kl} | "
          f"{nfe:.0f} | {sps:.1f} | {e0.get('num_steps', '?')} | {wall / 60:.1f} | {hw} | "
          f"{len(evals)} |")


def parse_args(argv=None) -> argparse.Namespace:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--configs", required=True, help="comma-separated names in configs/")
  ap.add_argument("--seeds", default="0,1,2,3,4")
  ap.add_argument("--root", default=os.path.join(ROOT, "runs", "results"))
  # 'extend' so that repeated --set flags accumulate (with nargs alone, the last one wins).
  ap.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                  help="config overrides for every run (e.g. train.num_steps=20000); "
                  "repeat the flag or list several")
  ap.add_argument("--tag", default="", help="suffix of the run folders (for override sets)")
  ap.add_argument("--table-only", action="store_true")
  return ap.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  names = [c.strip() for c in args.configs.split(",") if c.strip()]
  seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  for name in names:
    if not os.path.exists(os.path.join(ROOT, "configs", f"{name}.py")):
      raise SystemExit(f"unknown config {name!r} (no configs/{name}.py)")
  if not args.table_only:
    for name in names:
      for seed in seeds:
        wd = run_dir(args.root, name, args.tag, seed)
        if not os.path.exists(os.path.join(wd, "eval.json")):
          train(name, seed, wd, args.set)
  print("\n| config | data | model | test NLL (nats) | KL (nats) | NFE | steps/s | steps | "
        "min/run | hardware | seeds |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for name in names:
    evals = []
    for seed in seeds:
      path = os.path.join(run_dir(args.root, name, args.tag, seed), "eval.json")
      if os.path.exists(path):
        with open(path) as f:
          evals.append(json.load(f))
    if evals:
      print(row(name + (f" [{args.tag}]" if args.tag else ""), evals), flush=True)
    else:
      print(f"| {name} | (no finished run) |")


if __name__ == "__main__":
  main()
