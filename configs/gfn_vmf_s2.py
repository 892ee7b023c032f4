"""GFlowNet diffusion sampler on S^2: mixture of 4 von Mises-Fisher laws (exact log Z).

    python train.py --config configs/gfn_vmf_s2.py --workdir runs/gfn_vmf_s2
    python sample.py --workdir runs/gfn_vmf_s2 --num_samples 10000 --output samples.npy

Uniform base, Brownian reference (reversible from the uniform law) with the exact heat
kernel as backward policy and forward step kernel, sigma = 1 over N = 100 steps,
Langevin drift, trajectory balance with replay and backtrack-and-rebuild local search.
eval.json holds log_z_elbo, log_z_iw, eubo, ess, the errors against the exact log Z, and
the target's observables (obs_<name>, obs_<name>_iw, obs_<name>_exact, ..._bias).
Sized for one GPU; benchmarks/gflownet_suite.py trains every gfn_* config and prints the
table.
"""
from configs import defaults


def get_config():
  config = defaults.gflownet_config("sphere(2)", "vmf_mixture_s2", sigma=1.0, compact=True)
  g = config.gflownet
  g.num_steps = 100
  g.local_search = "backtrack"   # backtrack-and-rebuild with the exact backward policy
  g.ls_backtrack_steps = 20
  g.ls_mala_steps = 10
  g.eval_w2_points = 1000
  config.eval.density_grid = 60
  return config
