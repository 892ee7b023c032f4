"""Riemannian flow matching on the earth/earthquake dataset (earthquakes) on S^2.

Geodesic conditional paths from the uniform base law (geogen.models.flow_matching), the
same network / training / evaluation settings as the diffusion run configs/earth_earthquake.py
(sized for one GPU; ~50,000 steps), 80/10/10 split from the seed:

    python train.py --config configs/fm_earth_earthquake.py --workdir runs/fm_earth_earthquake

Published flow-matching test NLL to compare with: -0.28 +- 0.08 nats (mean +- std of 5 seeds:
add --config.seed=1 ... 4; the split follows the seed since data.split_seed = -1).
Minibatch OT coupling: add --config.flow_matching.coupling=ot.  Samples:

    python sample.py --workdir runs/fm_earth_earthquake --num_samples 10000 --output samples.npy
"""
from configs import defaults


def get_config():
  config = defaults.earth_config("earthquake")
  config.model = "flow_matching"
  return config
