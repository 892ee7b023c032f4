"""Riemannian diffusion on synthetic/von_mises: a mixture of 4 products of von Mises laws (kappa 10) on T^4.

The data law is known exactly, so eval.json also reports its entropy and
kl = test_nll - entropy (nats), plus the paired estimate kl_paired.

    python train.py --config configs/synthetic_t4.py --workdir runs/synthetic_t4
    python sample.py --workdir runs/synthetic_t4 --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  config = defaults.get_default_config()
  config.manifold = "torus(4)"
  config.model = "diffusion"
  config.data.name = "synthetic/von_mises"
  config.data.synthetic.concentration = 10.0
  config.data.synthetic.num_components = 4
  config.data.num_train = 50000
  config.data.num_val = 2000
  config.data.num_test = 2000

  config.net.hidden = 256
  config.net.depth = 3

  config.train.num_steps = 20000
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
