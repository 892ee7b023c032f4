"""Riemannian diffusion on the earth/volcano dataset (volcano eruptions, 827 points) on S^2.

Full run (sized for one GPU; ~50,000 steps), 80/10/10 split from the seed:

    python train.py --config configs/earth_volcano.py --workdir runs/earth_volcano

Other seeds / splits (published numbers average 5): add --config.seed=1 (the split follows
the seed since data.split_seed = -1).  Samples:

    python sample.py --workdir runs/earth_volcano --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  config = defaults.get_default_config()
  config.manifold = "sphere(2)"
  config.model = "diffusion"
  config.data.name = "earth/volcano"

  config.net.kind = "resmlp"
  config.net.hidden = 256
  config.net.depth = 4

  config.train.num_steps = 50000
  config.train.batch_size = 512
  config.train.lr = 5e-4
  config.train.warmup_steps = 1000
  config.train.ema_decay = 0.999
  config.train.steps_per_dispatch = 100
  config.train.log_every = 500
  config.train.ckpt_every = 5000
  config.train.eval_every = 5000

  config.eval.batch_size = 1024
  config.eval.max_points = 2000
  config.eval.num_plot_samples = 5000
  config.eval.density_grid = 90
  return config
