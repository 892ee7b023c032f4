"""The training loop (geogen.training): optimizer, EMA, data order, logs, eval, CLI.

Most tests use the exactly solvable fake family of tests/fake_family.py (a diagonal
Gaussian on Euclidean(3)), so results can be compared with closed forms; one test runs
the real diffusion family end to end through train.py / sample.py on a tiny config.
"""
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import fake_family
from geogen import config as gconfig
from geogen import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEANS, STDS = np.array([1.0, -2.0, 0.5]), np.array([0.5, 1.0, 2.0])


@pytest.fixture
def fake(monkeypatch):
  fake_family.install(monkeypatch)


def gauss_file(tmp_path, n=1000, seed=0):
  x = np.random.default_rng(seed).normal(MEANS, STDS, (n, 3)).astype(np.float32)
  path = str(tmp_path / "train.npy")
  np.save(path, x)
  return path, x


def fake_config(train_path, **over):
  base = {"model": "fake", "manifold": "euclidean(3)", "data.name": "file",
          "data.train": train_path, "train.num_steps": 60, "train.batch_size": 32,
          "train.lr": 0.05, "train.warmup_steps": 10, "train.steps_per_dispatch": 8,
          "train.log_every": 5, "train.ckpt_every": 20, "train.eval_every": 30,
          "train.progress": False, "eval.num_plot_samples": 0, "eval.max_points": 1000}
  base.update(over)
  return gconfig.load_config("configs/quickstart.py", [f"{k}={v}" for k, v in base.items()])


# ------------------------------------------------------------------------- pieces
def test_lr_schedule_matches_formula():
  cfg = gconfig.load_config("configs/quickstart.py", ["train.num_steps=100", "train.lr=0.01",
                                                      "train.warmup_steps=10"])
  sched = training.lr_schedule(cfg.train)
  for s in [0, 5, 9, 10, 40, 99, 100]:
    if s < 10:
      want = 0.01 * (s + 1) / 10
    else:
      want = 0.5 * 0.01 * (1 + math.cos(math.pi * (s - 10) / 90))
    assert float(sched(s)) == pytest.approx(want, rel=1e-5, abs=1e-9)


def test_batch_order_epochs_are_permutations_and_deterministic():
  order = training.BatchOrder(n=10, batch_size=4, seed=3)
  idx = order.indices(0, 5).ravel()  # 20 positions = 2 epochs
  assert sorted(idx[:10]) == list(range(10)) and sorted(idx[10:]) == list(range(10))
  # any chunking gives the same stream (resume-safe)
  again = np.concatenate([training.BatchOrder(10, 4, 3).indices(s, 1) for s in range(5)])
  np.testing.assert_array_equal(again.ravel(), idx)
  assert not np.array_equal(training.BatchOrder(10, 4, 4).indices(0, 5).ravel(), idx)


def test_chunk_end_breaks_at_every_boundary():
  cfg = gconfig.load_config("configs/quickstart.py", [
      "train.num_steps=50", "train.steps_per_dispatch=8", "train.ckpt_every=20",
      "train.eval_every=30"])
  ends, s = [], 0
  while s < 50:
    s = training.chunk_end(s, cfg.train)
    ends.append(s)
  assert ends == [8, 16, 20, 24, 30, 32, 40, 48, 50]


def test_ema_and_first_gradient_match_independent_recursion(fake, tmp_path):
  """Run the jitted chunk one step at a time and check the EMA against the recursion
  applied to the parameter sequence; the first grad_norm against jax.grad of the loss on
  the batch / key the loop should use; a 4-step scan against 4 single steps."""
  path, x = gauss_file(tmp_path)
  cfg = fake_config(path, **{"train.ema_decay": 0.9, "train.steps_per_dispatch": 1})
  b = training.build(cfg)
  fn = training.make_chunk_fn(b, cfg.train)
  order = training.BatchOrder(len(b["dataset"].train), 32, cfg.seed)
  ds = b["dataset"].train
  # first gradient, independently
  p0 = jax.tree_util.tree_map(np.asarray, b["state"]["params"])
  key0 = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1), 0)
  batch0 = jnp.asarray(ds[order.indices(0, 1)[0]])

  def f(p):
    return fake_family.loss(jax.tree_util.tree_map(lambda a: a, _merge(b, p)), batch0, key0)[0]

  g = jax.grad(f)(b["state"]["params"])
  want_norm = math.sqrt(sum(float(jnp.sum(v ** 2)) for v in jax.tree_util.tree_leaves(g)))

  state, ema_ref, params_seq = b["state"], p0, []
  copy = lambda t: jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), t)
  state4 = copy(state)
  for s in range(4):
    batches = jnp.asarray(ds[order.indices(s, 1)])
    state, m = fn(state, b["rest"], batches, jnp.array([s], jnp.int32))
    if s == 0:
      assert float(m["grad_norm"][0]) == pytest.approx(want_norm, rel=1e-5)
    p = jax.tree_util.tree_map(np.asarray, state["params"])
    d = min(0.9, (1 + s) / (10 + s))
    ema_ref = jax.tree_util.tree_map(lambda e, q: d * e + (1 - d) * q, ema_ref, p)
    params_seq.append(p)
  for e, r in zip(jax.tree_util.tree_leaves(state["ema"]), jax.tree_util.tree_leaves(ema_ref)):
    np.testing.assert_allclose(np.asarray(e), r, rtol=1e-6, atol=1e-7)
  # one scan of 4 steps = 4 dispatches of 1 step
  state4, _ = fn(state4, b["rest"], jnp.asarray(ds[order.indices(0, 4)]),
                 jnp.arange(4, dtype=jnp.int32))
  for a, c in zip(jax.tree_util.tree_leaves(state4), jax.tree_util.tree_leaves(state)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-6, atol=1e-7)


def _merge(b, params):
  from flax import nnx
  return nnx.merge(b["graphdef"], params, b["rest"])


# ------------------------------------------------------------------------- full runs
def test_fake_run_converges_and_writes_workdir(fake, tmp_path):
  path, x = gauss_file(tmp_path)
  wd = str(tmp_path / "run")
  cfg = fake_config(path, **{"train.num_steps": 300, "train.ckpt_every": 100,
                             "train.eval_every": 100, "train.ema_decay": 0.95,
                             "train.steps_per_dispatch": 25, "train.log_every": 50})
  res = training.train_and_evaluate(cfg, wd)
  for f in ("config.json", "metrics.jsonl", "eval.json"):
    assert os.path.exists(os.path.join(wd, f)), f
  with open(os.path.join(wd, "eval.json")) as fh:
    ev = json.load(fh)
  for k in ("val_nll", "test_nll", "nfe", "wall_time_s", "num_steps", "steps_per_sec"):
    assert k in ev, k
  assert ev["num_steps"] == 300
  # metrics.jsonl: one object per log step plus eval records
  recs = training.read_metrics(wd)
  log_steps = [r["step"] for r in recs if "loss" in r]
  assert log_steps == list(range(50, 301, 50))
  for r in recs:
    if "loss" in r:
      assert {"loss", "lr", "grad_norm", "steps_per_sec"} <= set(r)
  assert [r["step"] for r in recs if "val_nll" in r] == [100, 200, 300]
  # the EMA parameters of the evaluated checkpoint fit the data's mean / std
  config, b, state, step = training.load_run(wd, load_dataset=True)
  assert step == ev["checkpoint_step"]
  mu = np.asarray(state["ema"]["mu"][...])
  sigma = np.exp(np.asarray(state["ema"]["log_sigma"][...]))
  train = b["dataset"].train.astype(np.float64)
  np.testing.assert_allclose(mu, train.mean(0), atol=0.1)
  np.testing.assert_allclose(sigma, train.std(0), rtol=0.1)
  # eval.json's test NLL = closed-form Gaussian NLL of the test split (split by the seed)
  _, _, test = _split_like_loader(x, cfg.seed)
  want = -np.mean(np.sum(stats.norm.logpdf(test, mu, sigma), axis=-1))
  assert ev["test_nll"] == pytest.approx(want, rel=1e-5)
  assert ev["num_test_points"] == len(test)
  assert res["test_nll"] == ev["test_nll"]


def _split_like_loader(x, seed):
  perm = np.random.default_rng(seed).permutation(len(x))
  k = len(x) // 10
  return x[perm[2 * k:]], x[perm[k:2 * k]], x[perm[:k]]


def test_best_checkpoint_is_chosen_by_validation_nll(fake, tmp_path, monkeypatch):
  """Force the validation metric to be best at an intermediate eval: the final evaluation
  must use that checkpoint, and the latest one is kept too."""
  path, _ = gauss_file(tmp_path)
  wd = str(tmp_path / "run")
  cfg = fake_config(path, **{"train.num_steps": 60, "train.eval_every": 20,
                             "train.ckpt_every": 20})
  values = iter([3.0, 1.0, 2.0, 1.0])  # evals at 20, 40, 60; then the final one (step 40)
  real = training.validation_metric

  def fake_metric(b, config, state):
    out = real(b, config, state)
    v = next(values)
    return {**out, "val_nll": v, "metric": v}

  monkeypatch.setattr(training, "validation_metric", fake_metric)
  ev = training.train_and_evaluate(cfg, wd)
  assert ev["checkpoint_step"] == 40
  assert sorted(os.listdir(os.path.join(wd, "checkpoints_best"))) == ["40"]
  assert "60" in os.listdir(os.path.join(wd, "checkpoints"))


def test_nonfinite_loss_stops_with_clear_error(fake, tmp_path):
  path, _ = gauss_file(tmp_path)
  cfg = fake_config(path, **{"train.lr": 1e30, "train.warmup_steps": 0, "train.grad_clip": 0.0})
  with pytest.raises(FloatingPointError, match="non-finite training loss"):
    training.train_and_evaluate(cfg, str(tmp_path / "run"))


def test_resume_refuses_a_different_config(fake, tmp_path):
  path, _ = gauss_file(tmp_path)
  wd = str(tmp_path / "run")
  training.train_and_evaluate(fake_config(path, **{"train.num_steps": 20}), wd)
  with pytest.raises(gconfig.ConfigError, match="train.lr"):
    training.train_and_evaluate(fake_config(path, **{"train.num_steps": 20, "train.lr": 0.01}),
                                wd)
  # harmless changes (logging, eval settings) are accepted
  training.train_and_evaluate(fake_config(path, **{"train.num_steps": 20,
                                                   "train.log_every": 7}), wd)


# ------------------------------------------------------------------------- CLI, real family
def test_cli_diffusion_end_to_end(tmp_path, capsys):
  """train.py + sample.py (their main(argv), in process to save the JAX start-up) with the
  real diffusion family on a tiny torus(2) config."""
  import sample as sample_cli
  import train as train_cli
  wd = str(tmp_path / "run")
  over = ["--config.manifold=torus(2)", "--config.data.name=synthetic/von_mises",
          "--config.data.num_train=256", "--config.data.num_val=32", "--config.data.num_test=32",
          "--config.net.hidden=16", "--config.net.depth=1", "--config.train.num_steps=20",
          "--config.train.batch_size=32", "--config.train.steps_per_dispatch=10",
          "--config.train.log_every=10", "--config.train.ckpt_every=10",
          "--config.train.eval_every=20", "--config.train.progress=false",
          # every log_prob call has 32 points (val, test, the 6 x 6 density grid): one compile
          "--config.eval.num_plot_samples=32", "--config.eval.density_grid=6",
          "--config.eval.rtol=1e-3", "--config.eval.atol=1e-3", "--config.eval.batch_size=32",
          "--config.diffusion.sample_steps=10"]
  assert train_cli.main(["--config", "configs/quickstart.py", "--workdir", wd] + over) == 0
  with open(os.path.join(wd, "eval.json")) as f:
    ev = json.load(f)
  for k in ("val_nll", "test_nll", "nfe", "wall_time_s", "entropy", "kl", "kl_paired"):
    assert ev.get(k) is not None, k
  assert ev["kl"] == pytest.approx(ev["test_nll"] - ev["entropy"])
  assert ev["nfe"] > 0
  assert any(p.endswith("angles_heatmap.png") for p in ev["plots"])
  for p in ev["plots"]:
    assert os.path.getsize(os.path.join(wd, p)) > 1000
  with open(os.path.join(wd, "config.json")) as f:
    assert json.load(f)["manifold"] == "torus(2)"
  out = str(tmp_path / "s.npy")
  assert sample_cli.main(["--workdir", wd, "--num_samples", "50", "--output", out,
                          "--batch_size", "32"]) == 0
  s = np.load(out)
  assert s.shape == (50, 2) and np.all(np.abs(s) <= math.pi)
  # sampler settings may be changed when sampling a trained run; training keys may not
  out2 = str(tmp_path / "s2.npy")
  assert sample_cli.main(["--workdir", wd, "--num_samples", "32", "--output", out2,
                          "--batch_size", "32", "--config.diffusion.sample_grid=geometric",
                          "--config.diffusion.sample_steps=7"]) == 0
  assert np.load(out2).shape == (32, 2)
  # --plots redraws the run's figures into a folder with such a sampler setting
  pdir = str(tmp_path / "plots_geometric")
  assert sample_cli.main(["--workdir", wd, "--plots", pdir,
                          "--config.diffusion.sample_grid=geometric",
                          "--config.eval.density_grid=0"]) == 0
  drawn = sorted(os.listdir(pdir))
  assert "loss.png" in drawn and any(f.endswith("angles_heatmap.png") for f in drawn)
  assert all(os.path.getsize(os.path.join(pdir, f)) > 1000 for f in drawn)
  capsys.readouterr()
  assert sample_cli.main(["--workdir", wd, "--plots", pdir, "--output", out2]) == 2
  assert "--plots" in capsys.readouterr().err
  capsys.readouterr()
  assert sample_cli.main(["--workdir", wd, "--num_samples", "32", "--output", out2,
                          "--config.train.lr=0.5"]) == 2
  assert "train.lr" in capsys.readouterr().err
  # an unknown override key fails before training, listing the valid keys
  capsys.readouterr()
  assert train_cli.main(["--config", "configs/quickstart.py", "--workdir", wd,
                         "--config.train.nmu_steps=3"]) == 2
  err = capsys.readouterr().err
  assert "train.nmu_steps" in err and "train.num_steps" in err and "valid keys" in err


# ------------------------------------------------------------------------- plots
def test_chart_conversions():
  from geogen import plots
  lon, lat = plots.sphere_to_lon_lat(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]))
  np.testing.assert_allclose([lon[0], lat[0], lat[1]], [math.pi / 2, 0.0, -math.pi / 2])
  p = np.array([[0.3, -0.4], [0.0, 0.0]])
  x = plots.poincare_to_lorentz(p)
  np.testing.assert_allclose(x[:, 0] ** 2 - np.sum(x[:, 1:] ** 2, -1), 1.0, atol=1e-12)
  np.testing.assert_allclose(x[1], [1.0, 0.0, 0.0])
  np.testing.assert_allclose(plots.lorentz_to_poincare(x), p, atol=1e-12)
  u = np.diag(np.exp(1j * np.array([0.5, -1.0, 0.5])))
  np.testing.assert_allclose(np.sort(plots.eigen_angles_np(u)), [-1.0, 0.5, 0.5], atol=1e-12)


@pytest.mark.parametrize("spec", ["sphere(2)", "sphere(6)", "hyperbolic(2)", "torus(2)",
                                  "torus(7)", "su(3)", "su(2)^4", "euclidean(3)"])
def test_plot_points_each_chart(spec, tmp_path):
  from geogen import plots
  from manifolds import from_spec
  m = from_spec(spec)
  rng = np.random.default_rng(0)
  n = 300
  if spec.startswith("sphere"):
    pts = rng.normal(size=(2, n, m.shape[0]))
    pts /= np.linalg.norm(pts, axis=-1, keepdims=True)
  elif spec.startswith("hyperbolic"):
    pts = plots.poincare_to_lorentz(rng.uniform(-0.5, 0.5, (2, n, 2)))
  elif spec.startswith("torus"):
    pts = rng.uniform(-math.pi, math.pi, (2, n) + m.shape)
  elif spec.startswith("su"):
    th = rng.uniform(-math.pi, math.pi, (2, n) + m.shape[:-1])
    th[..., -1] = -np.sum(th[..., :-1], -1)
    pts = np.exp(1j * th)[..., None] * np.eye(m.shape[-1])  # diagonal SU(n) matrices
  else:
    pts = rng.normal(size=(2, n) + m.shape)
  lp = (lambda x: -np.sum(np.real(x.reshape(len(x), -1)) ** 2, -1)) if m.dim == 2 else None
  files = plots.plot_points(m, pts[0], pts[1], str(tmp_path), lp, grid=8, title=spec)
  assert files
  for f in files:
    assert f.endswith(".png") and os.path.getsize(f) > 5000
