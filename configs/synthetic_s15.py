"""Riemannian diffusion on synthetic/vmf_mixture: a mixture of 4 von Mises-Fisher laws (kappa 30) on S^15.

The data law is known exactly, so eval.json also reports its entropy and
kl = test_nll - entropy (nats), plus the paired estimate kl_paired.

    python train.py --config configs/synthetic_s15.py --workdir runs/synthetic_s15
    python sample.py --workdir runs/synthetic_s15 --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  return defaults.synthetic_config("sphere(15)", "vmf_mixture", 512, 4, 30000, concentration=30.0)
