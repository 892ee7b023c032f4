"""Draw samples from a trained run (EMA parameters of the best checkpoint by default).

    python sample.py --workdir runs/<name> --num_samples 10000 --output samples.npy
        [--checkpoint best|latest] [--seed 0] [--batch_size 1000]
        [--config.diffusion.sampler=ode ...]

--config.<key>=<value> may change the sampler settings, i.e. keys that leave the trained
parameters unchanged: diffusion.sampler / sample_steps / sample_grid / corrector_*,
flow_matching.sampler / sample_steps, and eval.* (the ODE tolerances).  Other keys fail.

Writes a .npy array of shape (num_samples, *M.shape) in the manifold's representation
(unit vectors for spheres, angles in [-pi, pi) for tori, complex matrices for SU(n), ...).
"""
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
    allowed = {"workdir", "num_samples", "output", "checkpoint", "seed", "batch_size"}
    if set(flags) - allowed:
      raise gconfig.ConfigError(f"unknown flags; allowed: {', '.join('--' + a for a in sorted(allowed))}")
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
                                               overrides=overrides)
  except gconfig.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
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
