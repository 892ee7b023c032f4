"""GFlowNet diffusion sampler: Manywell on R^32 (Sendera et al. 2024).

    python train.py --config configs/gfn_manywell.py --workdir runs/gfn_manywell
    python sample.py --workdir runs/gfn_manywell --num_samples 10000 --output samples.npy

Point base at 0, sigma = 1, N = 100, Langevin drift, learned variance, trajectory balance
with a prioritized replay buffer and MALA local search.  Exact log Z (mpmath) ~ 164.7;
log_z_scale = 100 lets the learned log Z reach it in ~2000 steps.
eval.json holds log_z_elbo, log_z_iw, eubo, ess, the errors against the exact log Z, and
the target's observables (obs_<name>, obs_<name>_iw, obs_<name>_exact, ..._bias).
Sized for one GPU; benchmarks/gflownet_suite.py trains every gfn_* config and prints the
table.
"""
from configs import defaults


def get_config():
  return defaults.gflownet_config("euclidean(32)", "manywell", sigma=1.0, compact=False)
