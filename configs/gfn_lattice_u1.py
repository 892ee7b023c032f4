"""GFlowNet diffusion sampler: 2D U(1) lattice gauge theory, Wilson action, L = 4, beta = 1.

    python train.py --config configs/gfn_lattice_u1.py --workdir runs/gfn_lattice_u1
    python sample.py --workdir runs/gfn_lattice_u1 --num_samples 10000 --output samples.npy

Links on torus(1)^(2 L^2); uniform (Haar) base, exact heat-kernel steps and backward
policy, sigma = 1, N = 50, Langevin drift (the Wilson force), trajectory balance with
replay and MALA local search.  Exact log Z, mean plaquette and <Q^2> from the character
expansion.  L = 8: --config.manifold='torus(1)^128' --config.target='lattice_u1(beta=1.0)'.
eval.json holds log_z_elbo, log_z_iw, eubo, ess, the errors against the exact log Z, and
the target's observables (obs_<name>, obs_<name>_iw, obs_<name>_exact, ..._bias).
Sized for one GPU; benchmarks/gflownet_suite.py trains every gfn_* config and prints the
table.
"""
from configs import defaults


def get_config():
  return defaults.gflownet_config("torus(1)^32", "lattice_u1(L=4,beta=1.0)", sigma=1.0,
                                  compact=True)
