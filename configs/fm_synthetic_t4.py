"""Riemannian flow matching on synthetic/von_mises: a mixture of 4 products of von Mises laws (kappa 10) on T^4.

The data law is known exactly, so eval.json also reports its entropy and
kl = test_nll - entropy (nats), plus the paired estimate kl_paired.

    python train.py --config configs/fm_synthetic_t4.py --workdir runs/fm_synthetic_t4
    python sample.py --workdir runs/fm_synthetic_t4 --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  config = defaults.synthetic_config("torus(4)", "von_mises", 256, 3, 20000, concentration=10.0)
  config.model = "flow_matching"
  return config
