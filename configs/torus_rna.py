"""Riemannian diffusion on RNA backbone torsion angles (torus/rna, 9,478 points) on T^7.

    python train.py --config configs/torus_rna.py --workdir runs/torus_rna
    python sample.py --workdir runs/torus_rna --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  config = defaults.get_default_config()
  config.manifold = "torus(7)"
  config.model = "diffusion"
  config.data.name = "torus/rna"

  config.net.hidden = 256
  config.net.depth = 4

  config.train.num_steps = 50000
  config.train.batch_size = 512
  config.train.lr = 5e-4
  config.train.warmup_steps = 1000
  config.train.steps_per_dispatch = 100
  config.train.log_every = 500
  config.train.ckpt_every = 5000
  config.train.eval_every = 5000

  config.eval.batch_size = 1024
  config.eval.max_points = 2000
  config.eval.num_plot_samples = 5000
  return config
