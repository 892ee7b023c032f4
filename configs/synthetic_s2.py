"""Riemannian diffusion on synthetic/vmf_mixture: a mixture of 4 von Mises-Fisher laws (kappa 10) on S^2.

The data law is known exactly, so eval.json also reports its entropy and
kl = test_nll - entropy (nats), plus the paired estimate kl_paired.

    python train.py --config configs/synthetic_s2.py --workdir runs/synthetic_s2
    python sample.py --workdir runs/synthetic_s2 --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  return defaults.synthetic_config("sphere(2)", "vmf_mixture", 256, 3, 20000, concentration=10.0)
