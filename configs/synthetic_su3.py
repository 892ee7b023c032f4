"""Riemannian diffusion on synthetic/su_mixture: a mixture of 4 laws exp(beta Re tr(C^H U)) (beta 4) on SU(3).

The data law is known exactly, so eval.json also reports its entropy and
kl = test_nll - entropy (nats), plus the paired estimate kl_paired.

    python train.py --config configs/synthetic_su3.py --workdir runs/synthetic_su3
    python sample.py --workdir runs/synthetic_su3 --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  config = defaults.get_default_config()
  config.manifold = "su(3)"
  config.model = "diffusion"
  config.data.name = "synthetic/su_mixture"
  config.data.synthetic.beta = 4.0
  config.data.synthetic.num_components = 4
  config.data.num_train = 50000
  config.data.num_val = 2000
  config.data.num_test = 2000

  config.net.hidden = 512
  config.net.depth = 4

  config.train.num_steps = 30000
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
