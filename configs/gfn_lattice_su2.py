"""GFlowNet diffusion sampler: 2D SU(2) lattice gauge theory, Wilson action, L = 4, beta = 2.

    python train.py --config configs/gfn_lattice_su2.py --workdir runs/gfn_lattice_su2
    python sample.py --workdir runs/gfn_lattice_su2 --num_samples 10000 --output samples.npy

Links on su(2)^(2 L^2); uniform (Haar) base, exact heat-kernel steps and backward policy,
sigma = 1, N = 50, Langevin drift, trajectory balance with replay and MALA local search.
Exact log Z and mean plaquette from the character expansion.
L = 8: --config.manifold='su(2)^128' --config.target='lattice_su2(beta=2.0)'.
eval.json holds log_z_elbo, log_z_iw, eubo, ess, the errors against the exact log Z, and
the target's observables (obs_<name>, obs_<name>_iw, obs_<name>_exact, ..._bias).
Sized for one GPU; benchmarks/gflownet_suite.py trains every gfn_* config and prints the
table.
"""
from configs import defaults


def get_config():
  return defaults.gflownet_config("su(2)^32", "lattice_su2(L=4,beta=2.0)", sigma=1.0,
                                  compact=True)
