"""Riemannian flow matching on synthetic/su_mixture: a mixture of 4 laws exp(beta Re tr(C^H U)) (beta 4) on SU(3).

The data law is known exactly, so eval.json also reports its entropy and
kl = test_nll - entropy (nats), plus the paired estimate kl_paired.

    python train.py --config configs/fm_synthetic_su3.py --workdir runs/fm_synthetic_su3
    python sample.py --workdir runs/fm_synthetic_su3 --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  config = defaults.synthetic_config("su(3)", "su_mixture", 512, 4, 30000, beta=4.0)
  config.model = "flow_matching"
  return config
