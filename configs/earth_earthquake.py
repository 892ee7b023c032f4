"""Riemannian diffusion on the earth/earthquake dataset (earthquakes, 6,120 points) on S^2.

Full run (sized for one GPU; ~50,000 steps), 80/10/10 split from the seed:

    python train.py --config configs/earth_earthquake.py --workdir runs/earth_earthquake

Other seeds / splits (published numbers average 5): add --config.seed=1 (the split follows
the seed since data.split_seed = -1).  Samples:

    python sample.py --workdir runs/earth_earthquake --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  return defaults.earth_config("earthquake")
