"""Configs: one schema (configs/defaults.py), strict keys, typed overrides, launch commands."""
import glob
import json
import os
import re

import ml_collections
import pytest

from geogen import config as gconfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
                 if os.path.basename(p) not in ("__init__.py", "defaults.py"))
REQUIRED = ["manifold", "model", "seed", "target", "data.name", "data.train", "data.val",
            "data.test", "data.split_seed", "data.num_train", "data.num_val", "data.num_test",
            "train.num_steps", "train.batch_size", "train.lr", "train.warmup_steps",
            "train.weight_decay", "train.grad_clip", "train.ema_decay",
            "train.steps_per_dispatch", "train.log_every", "train.ckpt_every",
            "train.eval_every", "train.keep_checkpoints", "train.progress", "eval.batch_size",
            "eval.num_plot_samples", "eval.max_points"]


def test_defaults_have_every_interface_key():
  flat = gconfig.flatten(gconfig.default_config())
  for k in REQUIRED:
    assert k in flat, k
  d = gconfig.default_config()
  for section in ("net", "diffusion", "eval", "data.synthetic"):
    node = d
    for part in section.split("."):
      node = node[part]
    assert isinstance(node, ml_collections.ConfigDict) and len(node) > 0, section


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_every_config_loads_has_schema_and_launch_command(path):
  name = os.path.splitext(os.path.basename(path))[0]
  cfg = gconfig.load_config(path)
  assert set(gconfig.flatten(cfg)) == set(gconfig.flatten(gconfig.default_config()))
  with open(path) as f:
    src = f.read()
  doc = re.match(r'\s*"""(.*?)"""', src, re.S)
  assert doc, f"{name}: needs a module docstring"
  assert f"python train.py --config configs/{name}.py --workdir runs/" in doc.group(1)
  # Built from the one defaults function (directly or through a builder in defaults.py).
  assert "defaults.get_default_config()" in src or re.search(r"defaults\.\w+_config\(", src)


def test_configs_switch_by_overrides_alone():
  cfg = gconfig.load_config("configs/quickstart.py", [
      "manifold=torus(4)", "data.name=synthetic/von_mises", "train.num_steps=1e3",
      "train.lr=1", "train.progress=no", "net.hidden=8", "eval.rtol=1e-3", "seed=7"])
  assert cfg.manifold == "torus(4)" and cfg.data.name == "synthetic/von_mises"
  assert cfg.train.num_steps == 1000 and isinstance(cfg.train.num_steps, int)
  assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
  assert cfg.train.progress is False and cfg.net.hidden == 8 and cfg.seed == 7


def test_unknown_key_on_command_line_lists_valid_keys():
  with pytest.raises(gconfig.ConfigError) as e:
    gconfig.load_config("configs/quickstart.py", ["train.learning_rate=1e-3"])
  msg = str(e.value)
  assert "train.learning_rate" in msg and "valid keys" in msg
  for k in ("train.lr", "train.num_steps", "data.name", "manifold"):
    assert k in msg
  with pytest.raises(gconfig.ConfigError, match="valid keys"):
    gconfig.load_config("configs/quickstart.py", ["nosuchsection.x=1"])


def test_unknown_key_in_config_file_fails(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from configs import defaults\n"
                 "def get_config():\n"
                 "  c = defaults.get_default_config()\n"
                 "  c.train.lerning_rate = 0.1\n"
                 "  return c\n")
  with pytest.raises(gconfig.ConfigError, match="train.lerning_rate.*valid keys"):
    gconfig.load_config(str(bad))
  missing = tmp_path / "missing.py"
  missing.write_text("import ml_collections\n"
                     "def get_config():\n"
                     "  c = ml_collections.ConfigDict()\n"
                     "  c.manifold = 'sphere(2)'\n"
                     "  return c\n")
  with pytest.raises(gconfig.ConfigError, match="missing keys"):
    gconfig.load_config(str(missing))


@pytest.mark.parametrize("override,match", [
    ("train.num_steps=abc", "int"),
    ("train.num_steps=2.5", "int"),
    ("train.lr=fast", "float"),
    ("train.progress=maybe", "bool"),
    ("train.num_steps=0", ">= 1"),
    ("train.ema_decay=1.0", "ema_decay"),
    ("manifold=spheroid(2)", "manifold"),
    ("train.batch_size", "key=value"),
])
def test_bad_values_fail_clearly(override, match):
  with pytest.raises(gconfig.ConfigError, match=match):
    gconfig.load_config("configs/quickstart.py", [override])


def test_json_round_trip_and_resume_rules():
  cfg = gconfig.load_config("configs/earth_fire.py", ["seed=3"])
  back = gconfig.from_json(gconfig.to_json(cfg))
  assert gconfig.diff(cfg, back) == []
  assert json.loads(gconfig.to_json(back)) == json.loads(gconfig.to_json(cfg))
  other = gconfig.load_config("configs/earth_fire.py", ["seed=3", "train.progress=false",
                                                        "eval.max_points=10", "train.lr=1e-3"])
  assert set(gconfig.diff(cfg, other)) == {"train.progress", "eval.max_points", "train.lr"}
  assert gconfig.blocking_changes(cfg, other) == ["train.lr"]


def test_config_json_of_an_older_run_gains_new_keys_with_their_defaults():
  """A config.json written before a key existed (here net.input_octaves and the diffusion
  net_time) still loads, with the defaults that reproduce the old behaviour; an unknown
  key in it still fails."""
  cfg = gconfig.load_config("configs/torus_rna.py", [])  # defaults for these keys
  d = json.loads(gconfig.to_json(cfg))
  del d["net"]["input_octaves"], d["diffusion"]["net_time"], d["diffusion"]["sample_grid"]
  back = gconfig.from_json(d)
  assert back.net.input_octaves == 0 and back.diffusion.net_time == "s"
  assert back.diffusion.sample_grid == "uniform"
  assert gconfig.diff(cfg, back) == []
  d["net"]["bogus_key"] = 1
  with pytest.raises(gconfig.ConfigError, match="bogus_key"):
    gconfig.from_json(d)


def test_parse_command_line_forms():
  flags, over = gconfig.parse_command_line(
      ["--config", "c.py", "--workdir=w", "--config.train.lr=0.1", "--config.seed", "4"])
  assert flags == {"config": "c.py", "workdir": "w"}
  assert over == ["train.lr=0.1", "seed=4"]
  with pytest.raises(gconfig.ConfigError, match="missing --workdir"):
    gconfig.parse_command_line(["--config", "c.py"])
