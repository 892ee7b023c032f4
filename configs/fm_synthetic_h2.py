"""Riemannian flow matching on synthetic/wrapped_normal: a mixture of 4 wrapped normals (scale 0.5, 1.5 from the origin) on H^2.

The data law is known exactly, so eval.json also reports its entropy and
kl = test_nll - entropy (nats), plus the paired estimate kl_paired.
The base law is the wrapped normal exp_o(sigma N(0, I)) at the origin, sigma =
flow_matching.base_scale = 1.0 (covers the data, which lies ~1.5 +- 0.5 from the origin).

    python train.py --config configs/fm_synthetic_h2.py --workdir runs/fm_synthetic_h2
    python sample.py --workdir runs/fm_synthetic_h2 --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  config = defaults.synthetic_config("hyperbolic(2)", "wrapped_normal", 256, 3, 20000)
  config.model = "flow_matching"
  return config
