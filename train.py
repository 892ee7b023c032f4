"""Train a model and evaluate it (DESIGN section 3).

    python train.py --config configs/<name>.py --workdir runs/<name> [--config.key=value ...]

Rerunning the same command resumes from the last checkpoint in the workdir (a finished run
is only re-evaluated).  Overrides use the keys of configs/defaults.py, e.g.
``--config.train.num_steps=2000 --config.seed=1``; unknown keys fail listing the valid ones.
Multi-host: set GEOGEN_DISTRIBUTED=1 (see geogen/parallel.py).

The workdir receives config.json, checkpoints*/, metrics.jsonl, eval.json and plots/*.png.
"""
import json
import sys

USAGE = __doc__


def main(argv) -> int:
  if any(a in ("-h", "--help", "--helpfull") for a in argv):
    print(USAGE)
    return 0
  # Multi-host initialization must precede every other JAX call.
  from geogen import parallel
  parallel.maybe_initialize_distributed()
  from geogen import config as gconfig
  try:
    flags, overrides = gconfig.parse_command_line(argv)
    unknown = set(flags) - {"config", "workdir"}
    if unknown:
      raise gconfig.ConfigError(f"unknown flags {sorted('--' + u for u in unknown)}; "
                                "use --config, --workdir and --config.<key>=<value>")
    config = gconfig.load_config(flags["config"], overrides)
  except gconfig.ConfigError as e:
    print(f"error: {e}\n\n{USAGE}", file=sys.stderr)
    return 2
  from geogen import training
  results = training.train_and_evaluate(config, flags["workdir"])
  if parallel.is_main_process():
    keys = ("val_nll", "test_nll", "test_nll_stderr", "kl", "nfe", "steps_per_sec",
            "wall_time_s", "val_loss", "test_loss", "log_z_elbo", "log_z_iw", "eubo", "ess",
            "log_z")
    print(json.dumps({k: results[k] for k in keys if results.get(k) is not None}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
