"""Draw samples from a trained run (EMA parameters of the best checkpoint by default).

    python sample.py --workdir runs/<name> --num_samples 10000 --output samples.npy
        [--checkpoint best|latest] [--seed 0] [--batch_size 1000]
        [--config.diffusion.sampler=ode ...]

or redraw the run's plots (samples, density where the family has one, loss curve) into a
folder, e.g. with another sampler setting (the samples use the run's evaluation key and
config.eval.num_plot_samples, as at the end of training):

    python sample.py --workdir runs/<name> --plots runs/<name>/plots_geometric
        [--checkpoint best|latest] [--config.diffusion.sample_grid=geometric ...]

--config.<key>=<value> may change the sampler settings, i.e. keys that leave the trained
parameters unchanged: diffusion.sampler / sample_steps / sample_grid / corrector_*,
flow_matching.sampler / sample_steps, and eval.* (the ODE tolerances).  Other keys fail.

Writes a .npy array of shape (num_samples, *M.shape) in the manifold's representation
(unit vectors for spheres, angles in [-pi, pi) for tori, complex matrices for SU(n), ...).
"""
import os
import sys

import numpy as np

USAGE = __doc__


def main(argv) -> int:
  if any(a in ("-h", "--help") for a in argv):
    print(USAGE)
    return 0
  from geogen import config as gconfig
  try:
    flags, overrides = gconfig.parse_command_line(argv, required=("workdir",))
    allowed = {"workdir", "num_samples", "output", "checkpoint", "seed", "batch_size", "plots"}
    if set(flags) - allowed:
      raise gconfig.ConfigError("unknown flags; allowed: "
                                + ", ".join("--" + a for a in sorted(allowed)))
    if "plots" in flags and set(flags) & {"num_samples", "output", "seed", "batch_size"}:
      raise gconfig.ConfigError("--plots takes only --workdir, --checkpoint and --config.* "
                                "(the plot settings are the run's config.eval.*)")
    num = int(flags.get("num_samples", 10000))
    which = flags.get("checkpoint", "best")
    if which not in ("best", "latest") or num < 1:
      raise gconfig.ConfigError("--checkpoint must be best or latest and --num_samples >= 1")
  except (gconfig.ConfigError, ValueError) as e:
    print(f"error: {e}\n\n{USAGE}", file=sys.stderr)
    return 2
  import jax

  from geogen import parallel, training
  parallel.maybe_initialize_distributed()
  try:
    config, b, state, step = training.load_run(flags["workdir"], which=which,
                                               overrides=overrides,
                                               load_dataset="plots" in flags)
  except gconfig.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if "plots" in flags:
    from geogen import plots
    files = plots.make_plots(config, b, state, flags["workdir"], outdir=flags["plots"])
    if parallel.is_main_process():
      print(f"wrote {len(files)} plots of the {which} checkpoint (step {step}) to "
            f"{flags['plots']}: {', '.join(os.path.basename(f) for f in files)}")
    return 0
  key = jax.random.fold_in(jax.random.PRNGKey(int(flags.get("seed", 0))), 12345)
  bs = int(flags.get("batch_size", config.eval.batch_size))
  x = training.sample_points(b, state, key, num, bs)
  b["manifold"].check(x, what="samples")
  out = flags.get("output", "samples.npy")
  if parallel.is_main_process():
    np.save(out, x)
    print(f"wrote {out}: {x.shape} {x.dtype} samples of {config.manifold} "
          f"({config.model}, EMA parameters of the {which} checkpoint, step {step})")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
