"""Resuming: a run killed with SIGKILL mid-way, then rerun with the same command, ends with
exactly (bit for bit) the state of an uninterrupted run.  Real diffusion family, tiny
torus(2) config."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import jax

from geogen import config, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 40
OVERRIDES = [
    "manifold=torus(2)", "data.name=file", "net.hidden=16", "net.depth=1",
    f"train.num_steps={NUM_STEPS}", "train.batch_size=16", "train.steps_per_dispatch=2",
    "train.log_every=2", "train.ckpt_every=6", "train.eval_every=20", "train.progress=false",
    "train.keep_checkpoints=2", "eval.num_plot_samples=0", "eval.max_points=16",
    "eval.batch_size=16", "eval.rtol=1e-3", "eval.atol=1e-3", "diffusion.sample_steps=5",
]

# The killed run is a separate process; it sleeps before every dispatch so that the test
# can kill it in the middle.
RUNNER = """
import sys, time
from geogen import config, parallel, training
_orig = parallel.shard_batch
def _slow(*a, **k):
  time.sleep(0.1)
  return _orig(*a, **k)
parallel.shard_batch = _slow
cfg = config.load_config("configs/quickstart.py", sys.argv[2:])
training.train_and_evaluate(cfg, sys.argv[1])
"""


def _overrides(data_path):
  return OVERRIDES + [f"data.train={data_path}"]


def _committed_steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def _records(workdir):
  drop = ("time", "steps_per_sec", "eval_time_s")
  return [{k: v for k, v in r.items() if k not in drop} for r in training.read_metrics(workdir)]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, capsys):
  data = str(tmp_path / "angles.npy")
  rng = np.random.default_rng(0)
  np.save(data, rng.vonmises([1.0, -2.0], 2.0, (200, 2)).astype(np.float32))
  over = _overrides(data)
  ref_dir, killed_dir = str(tmp_path / "ref"), str(tmp_path / "killed")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  victim = subprocess.Popen([sys.executable, "-c", RUNNER, killed_dir] + over, cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  killed = threading.Event()

  def killer():  # SIGKILL the victim once a checkpoint at step >= 12 is committed (of 40)
    deadline = time.time() + 150
    while time.time() < deadline and victim.poll() is None:
      if any(s >= 12 for s in _committed_steps(killed_dir)):
        os.kill(victim.pid, signal.SIGKILL)
        killed.set()
        return
      time.sleep(0.02)

  watcher = threading.Thread(target=killer)
  watcher.start()
  try:
    # the uninterrupted reference run, in this process while the victim runs
    training.train_and_evaluate(config.load_config("configs/quickstart.py", over), ref_dir)
    watcher.join(timeout=160)
  finally:
    if victim.poll() is None:
      victim.kill()
    _, err = victim.communicate()
  assert killed.is_set(), err[-3000:]
  assert victim.returncode == -signal.SIGKILL
  assert not os.path.exists(os.path.join(killed_dir, "eval.json"))
  killed_at = max(_committed_steps(killed_dir))
  assert 12 <= killed_at < NUM_STEPS

  # rerun the same command: resumes from the last checkpoint and finishes
  capsys.readouterr()
  training.train_and_evaluate(config.load_config("configs/quickstart.py", over), killed_dir)
  assert f"resuming {killed_dir} from step {killed_at}" in capsys.readouterr().out

  # identical final state: parameters, optimizer state and EMA, bit for bit
  _, _, s_ref, step_ref = training.load_run(ref_dir, which="latest")
  _, _, s_res, step_res = training.load_run(killed_dir, which="latest")
  assert step_ref == step_res == NUM_STEPS
  la, lb = jax.tree_util.tree_leaves(s_ref), jax.tree_util.tree_leaves(s_res)
  assert len(la) == len(lb) > 0
  for a, b in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # same training history (one record per log step, no duplicates), same evaluation
  assert _records(ref_dir) == _records(killed_dir)
  with open(os.path.join(ref_dir, "eval.json")) as f:
    ev_ref = json.load(f)
  with open(os.path.join(killed_dir, "eval.json")) as f:
    ev_res = json.load(f)
  for k in ("val_nll", "test_nll", "checkpoint_step"):
    assert ev_ref[k] == ev_res[k], k
