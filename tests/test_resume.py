"""Resuming: a run killed with SIGKILL mid-way, then rerun with the same command, ends with
exactly (bit for bit) the state of an uninterrupted run.  Real diffusion family, tiny
torus(2) config."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import jax

from geogen import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 40
OVERRIDES = [
    "manifold=torus(2)", "data.name=synthetic/von_mises", "data.num_train=200",
    "data.num_val=16", "data.num_test=16", "net.hidden=16", "net.depth=1",
    f"train.num_steps={NUM_STEPS}", "train.batch_size=16", "train.steps_per_dispatch=2",
    "train.log_every=2", "train.ckpt_every=6", "train.eval_every=20", "train.progress=false",
    "train.keep_checkpoints=2", "eval.num_plot_samples=0", "eval.max_points=16",
    "eval.batch_size=16", "eval.rtol=1e-3", "eval.atol=1e-3", "diffusion.sample_steps=5",
]

# slow=1 sleeps before every dispatch so that the test can kill the run in the middle.
RUNNER = """
import sys, time
from geogen import config, parallel, training
if sys.argv[2] == "1":
  _orig = parallel.shard_batch
  def _slow(*a, **k):
    time.sleep(0.15)
    return _orig(*a, **k)
  parallel.shard_batch = _slow
cfg = config.load_config("configs/quickstart.py", sys.argv[3:])
training.train_and_evaluate(cfg, sys.argv[1])
"""


def _start(workdir, slow):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  return subprocess.Popen([sys.executable, "-c", RUNNER, workdir, "1" if slow else "0"]
                          + OVERRIDES, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _committed_steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def _records(workdir):
  drop = ("time", "steps_per_sec", "eval_time_s")
  return [{k: v for k, v in r.items() if k not in drop} for r in training.read_metrics(workdir)]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
  ref_dir, killed_dir = str(tmp_path / "ref"), str(tmp_path / "killed")
  ref = _start(ref_dir, slow=False)
  victim = _start(killed_dir, slow=True)
  # kill the slow run once a checkpoint at step >= 12 is committed (mid-way of 40)
  deadline = time.time() + 150
  while time.time() < deadline and not any(s >= 12 for s in _committed_steps(killed_dir)):
    assert victim.poll() is None, victim.stderr.read()[-3000:]
    time.sleep(0.05)
  os.kill(victim.pid, signal.SIGKILL)
  victim.wait()
  assert victim.returncode == -signal.SIGKILL
  assert not os.path.exists(os.path.join(killed_dir, "eval.json"))
  killed_at = max(_committed_steps(killed_dir))
  assert 12 <= killed_at < NUM_STEPS
  _, err = ref.communicate(timeout=150)
  assert ref.returncode == 0, err[-3000:]

  # rerun the same command: resumes and finishes
  resumed = _start(killed_dir, slow=False)
  out, err = resumed.communicate(timeout=150)
  assert resumed.returncode == 0, err[-3000:]
  assert "resuming" in out

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
