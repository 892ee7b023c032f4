"""Riemannian flow matching on RNA backbone torsion angles (torus/rna, 9,478 points) on T^7.

Same network / training settings as the diffusion run configs/torus_rna.py; uniform base
law on the torus.  Published flow-matching test NLL: -5.20 +- 0.07 nats.

    python train.py --config configs/fm_torus_rna.py --workdir runs/fm_torus_rna
    python sample.py --workdir runs/fm_torus_rna --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  config = defaults.full_run_config("torus(7)", "torus/rna", 256, 4, 50000)
  config.model = "flow_matching"
  return config
