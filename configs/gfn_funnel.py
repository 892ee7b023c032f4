"""GFlowNet diffusion sampler: Neal's funnel on R^10 (Sendera et al. 2024).

    python train.py --config configs/gfn_funnel.py --workdir runs/gfn_funnel
    python sample.py --workdir runs/gfn_funnel --num_samples 10000 --output samples.npy

Point base at 0, sigma = 1, N = 100, Langevin drift, learned variance, trajectory balance
with a prioritized replay buffer and MALA local search.  Exact log Z = 0.
eval.json holds log_z_elbo, log_z_iw, eubo, ess, the errors against the exact log Z, and
the target's observables (obs_<name>, obs_<name>_iw, obs_<name>_exact, ..._bias).
Sized for one GPU; benchmarks/gflownet_suite.py trains every gfn_* config and prints the
table.
"""
from configs import defaults


def get_config():
  return defaults.gflownet_config("euclidean(10)", "funnel", sigma=1.0, compact=False)
