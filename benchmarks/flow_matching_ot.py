"""Flow matching with and without minibatch OT coupling, and vs diffusion, on one earth dataset.

    python benchmarks/flow_matching_ot.py [--dataset earthquake] [--steps 50000] [--seed 0]
        [--num_samples 10000] [--workdir runs/bench_fm_ot] [--sample_batch 10000]
        [--tol 0.01] [--skip_diffusion]

Quick check (minutes on a CPU; the numbers mean nothing):
    python benchmarks/flow_matching_ot.py --steps 20 --num_samples 500 --workdir /tmp/bench_fm

What it does, all with the full-size earth settings of configs/fm_earth_<dataset>.py (same
seed, steps, network and data split for every run; only the coupling / family differ):

1. trains flow matching with `coupling=independent` and `coupling=ot`, and the diffusion
   model of configs/earth_<dataset>.py, through `geogen.training.train_and_evaluate`
   (workdirs <workdir>/{fm_independent, fm_ot, diffusion}; rerunning resumes / reuses them);
   reports test NLL (nats) and training steps/s (compilation excluded) of each;
2. for each flow-matching model draws `num_samples` samples with the adaptive solver (eval
   section: dopri5, rtol = atol = 1e-5): NFE (max and mean over samples) and wall time
   (compilation excluded: the same call is run once before timing);
3. sample quality: a kernel MMD^2 (Gaussian kernel on the ambient coordinates, bandwidth
   0.1, unbiased estimator) between the samples and the test split;
4. matched quality: fixed-step geodesic Euler and RK4 from the SAME base points as the
   adaptive solve (same key), for 1, 2, 4, ..., 256 steps; the discretization error is the
   mean geodesic distance to the adaptive samples.  The smallest step count whose error is
   below `--tol` (radians; 0.01 rad = 64 km on the earth) gives the NFE and wall time at
   matched quality; its MMD^2 to the test data is printed next to the adaptive one.

Writes <workdir>/results.json and prints a table.  Hardware: printed (jax.devices()).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._timing import device_name  # noqa: E402
from configs import defaults  # noqa: E402
from geogen import training  # noqa: E402
from geogen.models import flow_matching as F  # noqa: E402

FIXED_STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def make_config(dataset: str, model: str, coupling: str, steps: int, seed: int):
  config = defaults.earth_config(dataset)
  config.model = model
  config.seed = seed
  config.flow_matching.coupling = coupling
  config.train.num_steps = steps
  config.train.warmup_steps = min(int(config.train.warmup_steps), max(1, steps // 10))
  config.train.eval_every = steps
  config.train.ckpt_every = steps
  # at least 4 chunks: the first (compilation) is left out of steps/s
  config.train.steps_per_dispatch = max(1, min(int(config.train.steps_per_dispatch), steps // 4))
  config.train.log_every = min(int(config.train.log_every), steps)
  config.train.progress = False
  config.eval.num_plot_samples = 0
  return config


def mmd2(x, y, bandwidth: float = 0.1, chunk: int = 2048) -> float:
  """Unbiased MMD^2 with k(a, b) = exp(-|a - b|^2 / (2 h^2)).  x (N, D), y (M, D)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

  def mean_k(a, b, same):
    tot = 0.0
    for i in range(0, len(a), chunk):
      d2 = np.sum((a[i:i + chunk, None, :] - b[None, :, :]) ** 2, -1)
      k = np.exp(-d2 / (2 * bandwidth ** 2))
      if same:  # drop the diagonal (unbiased)
        rows = np.arange(i, min(i + chunk, len(a)))
        k[rows - i, rows] = 0.0
      tot += k.sum()
    n = len(a) * (len(b) - 1) if same else len(a) * len(b)
    return tot / n

  return mean_k(x, x, True) + mean_k(y, y, True) - 2 * mean_k(x, y, False)


def timed_sample(model, key, num, batch, sampler, steps=None):
  """(samples, nfe max, nfe mean, seconds), compilation excluded (warm-up call first)."""
  bs = min(batch, num)

  def draw():
    xs, nfe_max, nfe_mean = [], 0, 0.0
    for i, start in enumerate(range(0, num, bs)):
      x, st = F.sample_and_stats(model, jax.random.fold_in(key, i), bs, sampler, steps)
      xs.append(np.asarray(x))
      nfe_max, nfe_mean = max(nfe_max, st["nfe"]), nfe_mean + st["nfe_mean"]
    return np.concatenate(xs)[:num], nfe_max, nfe_mean / len(xs)

  jax.block_until_ready(F.sample_and_stats(model, key, bs, sampler, steps)[0])  # compile
  t0 = time.perf_counter()
  x, nfe_max, nfe_mean = draw()
  return x, nfe_max, nfe_mean, time.perf_counter() - t0


def train_run(config, workdir):
  t0 = time.perf_counter()
  ev = training.train_and_evaluate(config, workdir)
  print(f"  trained {workdir}: test NLL {ev['test_nll']:.3f}  steps/s {ev['steps_per_sec']}  "
        f"({time.perf_counter() - t0:.0f} s)", flush=True)
  return ev


def fm_sampling_report(workdir, test, args):
  config, b, state, _ = training.load_run(workdir)
  model = training.ema_model(b, state)
  m = b["manifold"]
  key = jax.random.key(args.seed + 1000)
  xa, nfe_max, nfe_mean, t_a = timed_sample(model, key, args.num_samples, args.sample_batch,
                                            "adaptive")
  out = {"adaptive": {"nfe": nfe_max, "nfe_mean": nfe_mean, "time_s": t_a,
                      "mmd2_test": mmd2(m.to_features(xa), m.to_features(test))}}
  sweep = []
  for method in ("euler", "rk4"):
    for steps in FIXED_STEPS:
      xf, nfe, _, t_f = timed_sample(model, key, args.num_samples, args.sample_batch, method,
                                     steps)
      err = float(np.mean(np.asarray(m.dist(xf, xa))))
      sweep.append({"method": method, "steps": steps, "nfe": nfe, "time_s": t_f,
                    "mean_dist_to_adaptive": err})
      if err < args.tol:
        sweep[-1]["mmd2_test"] = mmd2(m.to_features(xf), m.to_features(test))
        break
  out["fixed_step_sweep"] = sweep
  out["matched"] = {meth: next((r for r in sweep if r["method"] == meth
                                and r["mean_dist_to_adaptive"] < args.tol), None)
                    for meth in ("euler", "rk4")}
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="earthquake", choices=("volcano", "earthquake", "flood",
                                                              "fire"))
  p.add_argument("--steps", type=int, default=50000)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--num_samples", type=int, default=10000)
  p.add_argument("--sample_batch", type=int, default=10000)
  p.add_argument("--tol", type=float, default=0.01)
  p.add_argument("--workdir", default="runs/bench_fm_ot")
  p.add_argument("--skip_diffusion", action="store_true")
  args = p.parse_args(argv)
  print(f"device {device_name()} x {jax.device_count()}, dataset earth/{args.dataset}, "
        f"{args.steps} steps, seed {args.seed}", flush=True)
  results = {"device": device_name(), "num_devices": jax.device_count(), "args": vars(args)}
  runs = [("fm_independent", "flow_matching", "independent"), ("fm_ot", "flow_matching", "ot")]
  if not args.skip_diffusion:
    runs.append(("diffusion", "diffusion", "independent"))
  for name, model, coupling in runs:
    cfg = make_config(args.dataset, model, coupling, args.steps, args.seed)
    ev = train_run(cfg, os.path.join(args.workdir, name))
    results[name] = {k: ev.get(k) for k in ("test_nll", "test_nll_stderr", "val_nll", "nfe",
                                            "steps_per_sec", "train_time_s", "num_params")}
  from geogen.data import load as load_data
  from manifolds import from_spec
  cfg = make_config(args.dataset, "flow_matching", "independent", args.steps, args.seed)
  test = load_data(cfg, from_spec(cfg.manifold)).test
  for name in ("fm_independent", "fm_ot"):
    results[name]["sampling"] = fm_sampling_report(os.path.join(args.workdir, name), test, args)

  print(f"\n{'run':16s} {'test NLL':>9s} {'train steps/s':>13s} {'adaptive NFE':>13s} "
        f"{'time (s)':>9s} {'MMD^2':>9s} | matched (< {args.tol} rad): euler / rk4 NFE, time")
  for name, _, _ in runs:
    r = results[name]
    line = f"{name:16s} {r['test_nll']:9.3f} {r['steps_per_sec'] or float('nan'):13.1f}"
    if "sampling" in r:
      a, mt = r["sampling"]["adaptive"], r["sampling"]["matched"]
      fmt = lambda x: f"{x['nfe']} ({x['time_s']:.2f} s)" if x else "not reached"
      line += (f" {a['nfe_mean']:13.1f} {a['time_s']:9.2f} {a['mmd2_test']:9.2e} | "
               f"{fmt(mt['euler'])} / {fmt(mt['rk4'])}")
    print(line)
  os.makedirs(args.workdir, exist_ok=True)
  path = os.path.join(args.workdir, "results.json")
  with open(path, "w") as f:
    json.dump(results, f, indent=2, default=str)
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
