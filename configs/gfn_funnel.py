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
  config = defaults.get_default_config()
  config.model = "gflownet"
  config.manifold = "euclidean(10)"
  config.target = "funnel"

  config.net.kind = "resmlp"
  config.net.hidden = 256
  config.net.depth = 2

  g = config.gflownet
  g.num_steps = 100
  g.sigma = 1.0
  g.kernel = "heat"
  g.langevin = True
  g.learn_variance = True
  g.objective = "tb"
  g.log_z_scale = 100.0
  g.replay_fraction = 0.5
  g.buffer_capacity = 60000
  g.buffer_priority = "reward"
  g.explore_std = 0.2
  g.explore_anneal_steps = 12500
  g.local_search = "mala"
  g.ls_every = 100
  g.ls_mala_steps = 200
  g.ls_mala_step_size = 0.01
  g.ls_backtrack_steps = 10
  g.eval_samples = 2000
  g.eval_w2_points = 2000

  config.train.num_steps = 25000
  config.train.batch_size = 300
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
