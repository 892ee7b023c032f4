"""GFlowNet diffusion sampler: 25-component Gaussian mixture on R^2 (Sendera et al. 2024).

    python train.py --config configs/gfn_gmm25.py --workdir runs/gfn_gmm25
    python sample.py --workdir runs/gfn_gmm25 --num_samples 10000 --output samples.npy

Setting of Sendera et al.'s best rows: point base at 0, Brownian bridge backward policy,
sigma^2 = 5 (their t_scale), N = 100 steps, Langevin drift, learned variance, trajectory
balance with a prioritized replay buffer (half of each batch), exploration annealed,
MALA local search every 100 steps.  Exact log Z = 0; W2 on 2000 points.
eval.json holds log_z_elbo, log_z_iw, eubo, ess, the errors against the exact log Z, and
the target's observables (obs_<name>, obs_<name>_iw, obs_<name>_exact, ..._bias).
Sized for one GPU; benchmarks/gflownet_suite.py trains every gfn_* config and prints the
table.
"""
from configs import defaults


def get_config():
  return defaults.gflownet_config("euclidean(2)", "gmm25", sigma=2.2360679775, compact=False)
