"""Riemannian diffusion on RNA backbone torsion angles (torus/rna, 9,478 points) on T^7.

    python train.py --config configs/torus_rna.py --workdir runs/torus_rna
    python sample.py --workdir runs/torus_rna --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  return defaults.full_run_config("torus(7)", "torus/rna", 256, 4, 50000)
