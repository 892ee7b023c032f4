"""Checks of a trained run's test NLL that do not trust the ODE solver's tolerances, for
sharp densities (earth volcano / fire runs, where log p reaches +10 at the data points).

    python benchmarks/nll_check.py --workdir runs/results/fm_earth_volcano/seed0 --tight 3e-6

1. Tolerance: the test NLL at the run's eval tolerances and at `--tight` (rtol = atol),
   same points and probes.  The difference bounds the solver error of the reported figure.
2. Normalization against the samples: for any density q,

       Z_q = E_{x ~ model samples} [ q(x) / p(x) ] = integral of q over {p > 0} = 1

   when the sampler and the density agree.  A density that overstates p where samples
   fall gives Z_q < 1, one that understates it Z_q > 1.  q = a KDE of the training points
   (vMF kernel, bandwidth h; S^2 only) puts q's mass where p is sharp, so the check is
   sensitive there.  Why not q = uniform: where the model density is tiny (e^-20 between
   the clusters) the weights u / p are huge and almost never drawn, so that estimate is
   dominated by its rare tail (typically far below 1 with a meaningless standard error).
   The same tail limits Z_q if the model misses mass near some training points, so read
   Z_q with its standard error as a consistency check, not a proof.

Prints a JSON dict; nothing is written into the workdir.
"""
import argparse
import json
import math
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.earth_kde import kde_log_kernel, sq_chords  # noqa: E402
from geogen import training  # noqa: E402


def log_q(x: np.ndarray, centres: np.ndarray, h: float, chunk: int = 512) -> np.ndarray:
  """log KDE(h) on S^2.  x: (N, 3), centres: (C, 3) -> (N,)."""
  out = [kde_log_kernel(sq_chords(x[i:i + chunk], centres), 1.0 / h**2)
         for i in range(0, len(x), chunk)]
  return np.concatenate(out)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--tight", type=float, default=3e-6,
                  help="rtol = atol of the tight solve (1e-7 took > 20 min on sharp runs)")
  ap.add_argument("--num_samples", type=int, default=1000)
  ap.add_argument("--bandwidths", default="1e-3,1e-2")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)

  out = {"workdir": args.workdir}
  config, b, state, step = training.load_run(args.workdir, load_dataset=True)
  out["step"] = int(step)
  ds, ec = b["dataset"], config.eval
  test = training.subset(ds.test, int(ec.max_points))
  key = jax.random.fold_in(b["eval_key"], 1)  # the key of the run's final evaluation
  model = training.ema_model(b, state)
  base = training.nll(b, model, test, key, int(ec.batch_size))
  out.update(test_nll=base["nll"], test_nll_stderr=base["nll_stderr"], nfe=base["nfe"],
             rtol=float(ec.rtol), atol=float(ec.atol))
  print(json.dumps(out), flush=True)  # each stage as it ends (the tight solve is slow)

  tight = (f"eval.rtol={args.tight}", f"eval.atol={args.tight}", "eval.max_steps=65536")
  _, bt, st, _ = training.load_run(args.workdir, load_dataset=False, overrides=tight)
  r = training.nll(bt, training.ema_model(bt, st), test, key, int(ec.batch_size))
  diff = r["per_point"] - base["per_point"]
  out.update(test_nll_tight=r["nll"], nfe_tight=r["nfe"], tight_tol=args.tight,
             tight_minus_base_mean=float(diff.mean()),
             tight_minus_base_max_abs=float(np.abs(diff).max()))
  print(json.dumps(out), flush=True)

  m = b["manifold"]
  if m.spec == "sphere(2)":
    x = training.sample_points(b, state, jax.random.PRNGKey(args.seed), args.num_samples,
                               int(ec.batch_size))
    lp = -training.nll(b, model, x, jax.random.PRNGKey(args.seed + 1),
                       int(ec.batch_size))["per_point"]
    for h in (float(v) for v in args.bandwidths.split(",")):
      w = np.exp(log_q(np.asarray(x, np.float64), np.asarray(ds.train, np.float64), h) - lp)
      out[f"Z_q(h={h:g})"] = [float(w.mean()), float(w.std(ddof=1) / math.sqrt(len(w)))]
    out["num_samples"] = int(args.num_samples)
  print(json.dumps(out, indent=1))
  return out


if __name__ == "__main__":
  main()
