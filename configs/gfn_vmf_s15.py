"""GFlowNet diffusion sampler on S^15: mixture of 4 von Mises-Fisher laws (kappa = 50, exact log Z).

    python train.py --config configs/gfn_vmf_s15.py --workdir runs/gfn_vmf_s15
    python sample.py --workdir runs/gfn_vmf_s15 --num_samples 10000 --output samples.npy

Uniform base, exact heat-kernel steps and backward policy, sigma = 1, N = 100, Langevin
drift, trajectory balance with replay and backtrack-and-rebuild local search.
eval.json holds log_z_elbo, log_z_iw, eubo, ess, the errors against the exact log Z, and
the target's observables (obs_<name>, obs_<name>_iw, obs_<name>_exact, ..._bias).
Sized for one GPU; benchmarks/gflownet_suite.py trains every gfn_* config and prints the
table.
"""
from configs import defaults


def get_config():
  config = defaults.gflownet_config("sphere(15)", "vmf_mixture_s15", sigma=1.0, compact=True)
  g = config.gflownet
  g.num_steps = 100
  g.local_search = "backtrack"   # backtrack-and-rebuild with the exact backward policy
  g.ls_backtrack_steps = 20
  g.ls_mala_steps = 10
  g.eval_w2_points = 1000
  config.net.hidden = 512
  config.train.num_steps = 30000
  return config
