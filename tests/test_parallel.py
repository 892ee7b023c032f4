"""Data parallelism: training on 4 (forced host) devices equals training on 1 device up to
float round-off; batches are really sharded.  Real diffusion family, tiny torus(2) config;
each run in its own subprocess (the device count is fixed at JAX start-up)."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from geogen import parallel, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = [
    "manifold=torus(2)", "data.name=synthetic/von_mises", "data.num_train=256",
    "data.num_val=16", "data.num_test=16", "net.hidden=16", "net.depth=1",
    "train.num_steps=6", "train.batch_size=32", "train.steps_per_dispatch=3",
    "train.log_every=1", "train.ckpt_every=6", "train.eval_every=6", "train.progress=false",
    "eval.num_plot_samples=0", "eval.max_points=16", "eval.batch_size=16",
    # tight solver tolerances: the adaptive steps react to round-off in the parameters
    "eval.rtol=1e-6", "eval.atol=1e-6", "diffusion.sample_steps=5",
]
RUNNER = """
import json, sys
import jax
from geogen import config, parallel, training
cfg = config.load_config("configs/quickstart.py", sys.argv[2:])
res = training.train_and_evaluate(cfg, sys.argv[1])
# how the training batches are laid out on the mesh
mesh = parallel.make_mesh()
x = parallel.shard_batch(__import__("numpy").zeros((3, 32, 2), "float32"), mesh, batch_axis=1)
info = {"devices": jax.device_count(), "mesh": mesh.size,
        "shard_shapes": sorted({tuple(s.data.shape) for s in x.addressable_shards})}
print("INFO" + json.dumps(info))
"""


def _start(workdir, n_devices):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
             XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}")
  return subprocess.Popen([sys.executable, "-c", RUNNER, workdir] + OVERRIDES, cwd=REPO,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
  out, err = proc.communicate(timeout=200)
  assert proc.returncode == 0, err[-3000:]
  line = [l for l in out.splitlines() if l.startswith("INFO")][-1]
  return json.loads(line[4:])


def test_four_devices_match_one_device(tmp_path):
  one, four = str(tmp_path / "one"), str(tmp_path / "four")
  p4, p1 = _start(four, 4), _start(one, 1)  # concurrently: each is mostly single-threaded
  info4, info1 = _finish(p4), _finish(p1)
  assert info4["devices"] == info4["mesh"] == 4 and info1["mesh"] == 1
  assert info4["shard_shapes"] == [[3, 8, 2]]  # batch axis split over the 4 devices
  assert info1["shard_shapes"] == [[3, 32, 2]]
  _, _, s1, _ = training.load_run(one, which="latest")
  _, _, s4, _ = training.load_run(four, which="latest")
  l1, l4 = jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(s4)
  assert len(l1) == len(l4) > 0
  for a, b in zip(l1, l4):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)  # ~1 ulp seen
  m1, m4 = training.read_metrics(one), training.read_metrics(four)
  losses = lambda m: [r["loss"] for r in m if "loss" in r]
  np.testing.assert_allclose(losses(m4), losses(m1), rtol=1e-5)
  with open(os.path.join(one, "eval.json")) as f:
    e1 = json.load(f)
  with open(os.path.join(four, "eval.json")) as f:
    e4 = json.load(f)
  assert e1["num_devices"] == 1 and e4["num_devices"] == 4
  assert e4["test_nll"] == pytest.approx(e1["test_nll"], abs=1e-4)  # ~solver tolerance


def test_helpers_single_process(monkeypatch):
  monkeypatch.delenv("GEOGEN_DISTRIBUTED", raising=False)
  assert parallel.maybe_initialize_distributed() is False  # only when the env asks
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
  assert parallel.process_rows(32) == slice(0, 32)
  with pytest.raises(ValueError, match="multiple of the number of devices"):
    parallel.check_batch_size(30, 4)
  x = np.arange(12.0).reshape(6, 2)
  np.testing.assert_array_equal(parallel.to_host(parallel.shard_batch(x, mesh)), x)
