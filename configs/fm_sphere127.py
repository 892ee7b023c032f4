"""Riemannian flow matching on synthetic/vmf_mixture: a mixture of 4 von Mises-Fisher laws (kappa 200) on S^127.

The data law is known exactly, so eval.json also reports its entropy and
kl = test_nll - entropy (nats), plus the paired estimate kl_paired.
kappa 200 on S^127: mean angle to the component centre ~0.75 rad (E<mu, x> = 0.73).
Dimension 127 > eval.exact_max_dim: the NLL uses the Hutchinson divergence estimator
(unbiased; eval.num_probes probes per point).

    python train.py --config configs/fm_sphere127.py --workdir runs/fm_sphere127
    python sample.py --workdir runs/fm_sphere127 --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  config = defaults.synthetic_config("sphere(127)", "vmf_mixture", 512, 4, 30000, concentration=200.0)
  config.model = "flow_matching"
  return config
