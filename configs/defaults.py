"""The one defaults function every config starts from (the config schema).

Every key below exists in every config, so any config can be switched to another
manifold, model family, dataset or target by command-line overrides alone, e.g.

    python train.py --config configs/quickstart.py --workdir runs/qs \
        --config.train.num_steps=2000 --config.seed=1

Unknown keys (in a config file or on the command line) fail with the list of valid keys
(`geogen.config`).  This file is not a runnable config itself.
"""
import ml_collections

from geogen import likelihood, nets
from geogen.models import diffusion, flow_matching, gflownet


def get_default_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.manifold = "sphere(2)"      # manifolds.from_spec string
  config.model = "diffusion"         # 'diffusion' | 'flow_matching' | 'injective_flow' | 'gflownet'
  config.seed = 0                    # model init and training randomness
  config.target = ""                 # gflownet only: registered name or 'module:function'

  # ---------------------------------------------------------------- data
  config.data = data = ml_collections.ConfigDict()
  data.name = "earth/volcano"        # earth/{volcano,earthquake,flood,fire}, torus/rna, file,
                                     # synthetic/<kind>
  data.train = ""                    # .npy paths (data.name == 'file'); empty val and test:
  data.val = ""                      #   data.train is split 80/10/10
  data.test = ""
  data.split_seed = -1               # seed of the 80/10/10 split (-1: use config.seed)
  data.num_train = 20000             # sizes of synthetic datasets
  data.num_val = 2000
  data.num_test = 2000
  data.synthetic = _synthetic_defaults()

  # ---------------------------------------------------------------- training
  config.train = train = ml_collections.ConfigDict()
  train.num_steps = 20000
  train.batch_size = 512             # global batch (split over all devices)
  train.lr = 5e-4                    # peak learning rate (AdamW)
  train.warmup_steps = 500           # linear warmup from 0, then cosine decay to 0
  train.weight_decay = 0.0           # AdamW decoupled weight decay
  train.grad_clip = 1.0              # global-norm clipping (0 disables)
  train.ema_decay = 0.999            # EMA of the parameters (used for sampling / eval)
  train.steps_per_dispatch = 50      # train steps per jit call (lax.scan chunk)
  train.log_every = 100              # metrics.jsonl / progress bar update period
  train.ckpt_every = 2000            # checkpoint period (steps)
  train.eval_every = 5000            # validation period (steps); the best checkpoint is
                                     #   chosen by validation NLL (loss without NLL)
  train.keep_checkpoints = 2         # latest checkpoints kept (plus the best one)
  train.progress = True              # tqdm progress bar

  # ---------------------------------------------------------------- networks / families
  config.net = nets.default_config()
  config.diffusion = diffusion.default_config()
  config.flow_matching = flow_matching.default_config()
  config.gflownet = gflownet.default_config()

  # ---------------------------------------------------------------- evaluation
  config.eval = likelihood.default_config()
  config.eval.batch_size = 512       # points per likelihood / sampling call
  config.eval.num_plot_samples = 4000  # model samples drawn for plots/*.png (0: no plots)
  config.eval.max_points = 2000      # cap on val / test points for the NLL (random subset)
  config.eval.density_grid = 60      # log_prob grid resolution for density plots (0: none)
  return config


def _synthetic_defaults() -> ml_collections.ConfigDict:
  """Parameters of the synthetic datasets (geogen.data.synthetic)."""
  from geogen.data import synthetic
  return synthetic.default_config()


def full_run_config(manifold: str, data_name: str, hidden: int, depth: int,
                    num_steps: int) -> ml_collections.ConfigDict:
  """The shared training / evaluation settings of the full-size runs (sized for one GPU)
  used by configs/earth_*.py, configs/torus_rna.py and configs/synthetic_*.py."""
  config = get_default_config()
  config.manifold = manifold
  config.model = "diffusion"
  config.data.name = data_name
  config.net.hidden = hidden
  config.net.depth = depth

  config.train.num_steps = num_steps
  config.train.batch_size = 512
  config.train.lr = 5e-4
  config.train.warmup_steps = 1000
  config.train.steps_per_dispatch = 100
  config.train.log_every = 500
  config.train.ckpt_every = 5000
  config.train.eval_every = 5000

  config.eval.batch_size = 1024
  config.eval.max_points = 2000
  config.eval.num_plot_samples = 5000
  return config


def synthetic_config(manifold: str, kind: str, hidden: int, depth: int, num_steps: int,
                     **synthetic) -> ml_collections.ConfigDict:
  """A full-size run on a synthetic law with an exact density (KL = test NLL - entropy)."""
  config = full_run_config(manifold, f"synthetic/{kind}", hidden, depth, num_steps)
  config.data.synthetic.num_components = 4
  for key, value in synthetic.items():
    config.data.synthetic[key] = value
  config.data.num_train = 50000
  config.data.num_val = 2000
  config.data.num_test = 2000
  return config


def earth_config(dataset: str) -> ml_collections.ConfigDict:
  """The full-size Riemannian diffusion run on one earth dataset (S^2), shared by
  configs/earth_*.py: sized for one GPU (~50,000 steps)."""
  config = full_run_config("sphere(2)", f"earth/{dataset}", 256, 4, 50000)
  config.net.kind = "resmlp"
  config.train.ema_decay = 0.999
  config.eval.density_grid = 90
  return config


def sharp_diffusion(config, eps: float) -> ml_collections.ConfigDict:
  """Diffusion settings for data whose density is concentrated at a fine resolution
  (repeated or near-repeated locations, as in earth/volcano and earth/fire; see
  benchmarks/earth_kde.py): the model density is p_eps, the data smoothed by the heat
  kernel at tau(eps), so eps sets the finest resolution the model can reach (tau(eps) ~
  h^2 for a kernel bandwidth h).  Small eps needs the likelihood-weighted time sampling
  (most samples at small noise), the log noise level as network time and a positional
  encoding of the inputs (see geogen.models.diffusion and geogen.nets), and reverse-SDE
  steps that shrink with the noise level (sample_grid='geometric').  The density
  grid of the plots is coarser because each likelihood solve takes ~2,000 NFE."""
  config.diffusion.eps = eps
  config.diffusion.time_sampling = "likelihood"
  config.diffusion.net_time = "log_tau"
  config.net.input_octaves = 8
  config.diffusion.sample_grid = "geometric"
  config.eval.density_grid = 45
  return config


def sharp_flow_matching(config) -> ml_collections.ConfigDict:
  """Flow-matching settings for data concentrated at a fine resolution (repeated or
  near-repeated locations; see sharp_diffusion and benchmarks/earth_kde.py).  p_t is the
  data blurred at scale ~ (1 - t), so the field must be learned down to 1 - t ~ the
  resolution: half of the training times with 1 - t log-uniform down to
  flow_matching.time_floor (time_sampling='late'), the normalized log(1 - t) as network
  time and a positional encoding of the inputs (geogen.models.flow_matching, geogen.nets).
  The density grid of the plots is coarser because each likelihood solve takes ~2,000 NFE."""
  config.flow_matching.time_sampling = "late"
  config.flow_matching.net_time = "log1m"
  config.net.input_octaves = 8
  config.eval.density_grid = 45
  return config


def gflownet_config(manifold: str, target: str, sigma: float,
                    compact: bool) -> ml_collections.ConfigDict:
  """The shared settings of the gfn_* configs (GFlowNet diffusion samplers; sized for one GPU).

  compact=False: the setting of Sendera et al.'s best rows on R^n (point base, N = 100
  steps, Langevin drift, learned variance, TB with a prioritized replay buffer, annealed
  exploration, MALA local search every 100 steps); compact=True: the manifold profile
  (uniform base, N = 50 exact heat-kernel steps, fixed variance, no exploration, local
  search every 10 steps), used by the lattice and sphere configs."""
  config = get_default_config()
  config.model = "gflownet"
  config.manifold = manifold
  config.target = target
  config.net.kind = "resmlp"
  config.net.hidden = 256
  config.net.depth = 3 if compact else 2

  g = config.gflownet
  g.num_steps = 50 if compact else 100
  g.sigma = sigma
  g.kernel = "heat"
  g.langevin = True
  g.learn_variance = not compact
  g.objective = "tb"
  g.log_z_scale = 100.0
  g.replay_fraction = 0.5
  g.buffer_capacity = 20000 if compact else 60000
  g.buffer_priority = "reward"
  g.explore_std = 0.0 if compact else 0.2
  g.explore_anneal_steps = 0 if compact else 12500
  g.local_search = "mala"
  g.ls_every = 10 if compact else 100
  g.ls_mala_steps = 20 if compact else 200
  g.ls_mala_step_size = 0.01
  g.ls_backtrack_steps = 10
  g.eval_samples = 2000
  g.eval_w2_points = 0 if compact else 2000

  t = config.train
  t.num_steps = 20000 if compact else 25000
  t.batch_size = 256 if compact else 300
  t.lr = 1e-3
  t.warmup_steps = 500
  t.grad_clip = 1.0
  t.ema_decay = 0.999
  t.steps_per_dispatch = 100
  t.log_every = 500
  t.ckpt_every = 5000
  t.eval_every = 5000

  config.eval.batch_size = 500
  config.eval.num_plot_samples = 2000
  config.eval.density_grid = 0
  return config
