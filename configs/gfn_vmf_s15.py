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
  config = defaults.get_default_config()
  config.model = "gflownet"
  config.manifold = "sphere(15)"
  config.target = "vmf_mixture_s15"

  config.net.kind = "resmlp"
  config.net.hidden = 512
  config.net.depth = 3

  g = config.gflownet
  g.num_steps = 100
  g.sigma = 1.0
  g.kernel = "heat"
  g.langevin = True
  g.learn_variance = False
  g.objective = "tb"
  g.log_z_scale = 100.0
  g.replay_fraction = 0.5
  g.buffer_capacity = 20000
  g.buffer_priority = "reward"
  g.explore_std = 0.0
  g.explore_anneal_steps = 0
  g.local_search = "backtrack"
  g.ls_every = 10
  g.ls_mala_steps = 10
  g.ls_mala_step_size = 0.01
  g.ls_backtrack_steps = 20
  g.eval_samples = 2000
  g.eval_w2_points = 1000

  config.train.num_steps = 30000
  config.train.batch_size = 256
  config.train.lr = 1e-3
  config.train.warmup_steps = 500
  config.train.grad_clip = 1.0
  config.train.ema_decay = 0.999
  config.train.steps_per_dispatch = 100
  config.train.log_every = 500
  config.train.ckpt_every = 5000
  config.train.eval_every = 5000

  config.eval.batch_size = 500
  config.eval.num_plot_samples = 2000
  config.eval.density_grid = 0
  return config
