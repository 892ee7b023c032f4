"""Quickstart: Riemannian diffusion on the volcano eruptions (earth/volcano) on S^2.

Trains in about 3 minutes on a 2-core CPU (including evaluation and plots):

    python train.py --config configs/quickstart.py --workdir runs/quickstart

then draws samples from the EMA model of the best checkpoint:

    python sample.py --workdir runs/quickstart --num_samples 10000 --output samples.npy

Writes runs/quickstart/{config.json, metrics.jsonl, eval.json, plots/*.png, checkpoints*/}.
A short run: the NLL is far from converged (see configs/earth_volcano.py for the full one).
"""
from configs import defaults


def get_config():
  config = defaults.get_default_config()
  config.manifold = "sphere(2)"
  config.model = "diffusion"
  config.data.name = "earth/volcano"

  config.net.hidden = 128
  config.net.depth = 3

  config.train.num_steps = 10000
  config.train.batch_size = 256
  config.train.lr = 1e-3
  config.train.warmup_steps = 500
  config.train.ema_decay = 0.999
  config.train.steps_per_dispatch = 100
  config.train.log_every = 100
  config.train.ckpt_every = 2500
  config.train.eval_every = 2500

  config.diffusion.sample_steps = 200
  config.eval.rtol = 1e-4
  config.eval.atol = 1e-4
  config.eval.batch_size = 256
  config.eval.max_points = 100         # >= the whole val / test split (82 points each)
  config.eval.num_plot_samples = 2000
  config.eval.density_grid = 30
  return config
