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
  config = defaults.get_default_config()
  config.model = "gflownet"
  config.manifold = "torus(1)^32"
  config.target = "lattice_u1(L=4,beta=1.0)"

  config.net.kind = "resmlp"
  config.net.hidden = 256
  config.net.depth = 3

  g = config.gflownet
  g.num_steps = 50
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
  g.local_search = "mala"
  g.ls_every = 10
  g.ls_mala_steps = 20
  g.ls_mala_step_size = 0.01
  g.ls_backtrack_steps = 10
  g.eval_samples = 2000
  g.eval_w2_points = 0

  config.train.num_steps = 20000
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
