"""Loading, overriding and validating configs (DESIGN section 3).

Every config starts from ``configs/defaults.py:get_default_config()``; that tree is the
schema: a config (file or command line) may only set keys that exist there, with values of
the same type.  Anything else fails with a ``ConfigError`` listing the valid keys.

    config = load_config("configs/quickstart.py", ["train.num_steps=100", "seed=3"])

Command-line overrides (``train.py``) are written ``--config.<dotted.key>=<value>`` or
``--config.<dotted.key> <value>``; values are parsed according to the type of the default
(bool: true/false/1/0/yes/no; int; float; str; tuples/lists as Python literals).
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import sys

import ml_collections

# The repository root (parent of configs/), so that config files can `from configs import
# defaults` whatever the working directory.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Keys that may change between the first run in a workdir and a resumed run, or when
# sampling a trained run (sample.py --config.<key>=...): they do not change the trained
# parameters (sampler and evaluation settings).  (Everything else must match config.json.)
RESUMABLE_CHANGES = ("train.progress", "train.log_every", "eval.", "diffusion.sampler",
                     "diffusion.sample_steps", "diffusion.sample_grid",
                     "diffusion.corrector_steps", "diffusion.corrector_snr",
                     "flow_matching.sampler", "flow_matching.sample_steps")


class ConfigError(ValueError):
  """An invalid config: unknown key, wrong type or invalid value."""


# ---------------------------------------------------------------------------- schema helpers
def _ensure_repo_on_path():
  if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def default_config() -> ml_collections.ConfigDict:
  """The schema: ``configs/defaults.py:get_default_config()``."""
  _ensure_repo_on_path()
  from configs import defaults
  return defaults.get_default_config()


def flatten(config, prefix: str = "") -> dict:
  """Nested ConfigDict / dict -> {dotted key: leaf value} (sections are not leaves)."""
  out = {}
  items = config.items() if hasattr(config, "items") else []
  for k, v in items:
    key = f"{prefix}{k}"
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _sections(config, prefix: str = "") -> set:
  out = set()
  for k, v in config.items():
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      out.add(prefix + k)
      out |= _sections(v, prefix + k + ".")
  return out


def _valid_keys_message(valid, key: str) -> str:
  close = difflib.get_close_matches(key, valid, n=3)
  hint = f" (did you mean {', '.join(close)}?)" if close else ""
  return f"unknown config key {key!r}{hint}; valid keys: {', '.join(sorted(valid))}"


# ---------------------------------------------------------------------------- values
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _literal(text: str, what: str):
  try:
    return ast.literal_eval(text.strip())
  except (ValueError, SyntaxError):
    raise ValueError(f"expected {what}, got {text!r}") from None


def parse_value(key: str, text: str, default):
  """Parse a command-line string to the type of `default`."""
  try:
    if isinstance(default, bool):
      t = text.strip().lower()
      if t in _TRUE:
        return True
      if t in _FALSE:
        return False
      raise ValueError(f"expected a bool (true/false), got {text!r}")
    if isinstance(default, int):
      v = _literal(text, "an int")
      if isinstance(v, float) and v.is_integer():
        v = int(v)  # allow 1e4 for integers
      if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"expected an int, got {text!r}")
      return v
    if isinstance(default, float):
      v = _literal(text, "a float")
      if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a float, got {text!r}")
      return float(v)
    if isinstance(default, str):
      return text
    if isinstance(default, (tuple, list)):
      v = _literal(text, "a tuple / list literal")
      if not isinstance(v, (tuple, list)):
        v = (v,)
      return type(default)(v)
    if default is None:
      try:
        return ast.literal_eval(text)
      except (ValueError, SyntaxError):
        return text
  except ValueError as e:
    raise ConfigError(f"--config.{key}={text!r}: {e}") from None
  raise ConfigError(f"--config.{key}: cannot parse values of type {type(default).__name__}")


def _get(config, key: str):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def _set(config, key: str, value):
  """Set a dotted key; missing sections are created (keys added to the schema after a
  config.json was written, see from_json)."""
  parts = key.split(".")
  node = config
  for part in parts[:-1]:
    if part not in node:
      with node.unlocked() if hasattr(node, "unlocked") else _nullcontext():
        node[part] = ml_collections.ConfigDict()
    node = node[part]
  with node.unlocked() if hasattr(node, "unlocked") else _nullcontext():
    node[parts[-1]] = value


class _nullcontext:
  def __enter__(self):
    return self

  def __exit__(self, *a):
    return False


def apply_overrides(config, overrides) -> ml_collections.ConfigDict:
  """Apply ``['a.b=value', ...]`` (strings) to `config` in place; unknown keys fail."""
  leaves = flatten(config)
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"override {item!r} must look like key=value")
    key, text = item.split("=", 1)
    key = key.strip()
    if key.startswith("--"):
      key = key[2:]
    if key.startswith("config."):
      key = key[len("config."):]
    if key not in leaves:
      raise ConfigError(_valid_keys_message(list(leaves), key))
    _set(config, key, parse_value(key, text, leaves[key]))
    leaves[key] = _get(config, key)
  return config


# ---------------------------------------------------------------------------- validation
def _type_ok(value, default) -> bool:
  if isinstance(default, bool):
    return isinstance(value, bool)
  if isinstance(default, int):
    return isinstance(value, int) and not isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if isinstance(default, str):
    return isinstance(value, str)
  if isinstance(default, (tuple, list)):
    return isinstance(value, (tuple, list))
  return True


def check_schema(config, schema=None):
  """Raise ConfigError on unknown / missing keys or values of the wrong type."""
  schema = default_config() if schema is None else schema
  want, have = flatten(schema), flatten(config)
  want_sections, have_sections = _sections(schema), _sections(config)
  valid = list(want)
  for key in sorted(set(have) - set(want)):
    if key in want_sections:
      raise ConfigError(f"config key {key!r} must be a section (ConfigDict), got a value")
    raise ConfigError(_valid_keys_message(valid, key))
  for key in sorted(have_sections - want_sections):
    if key in want:
      raise ConfigError(f"config key {key!r} must be a value, got a section")
    raise ConfigError(_valid_keys_message(valid, key))
  missing = sorted(set(want) - set(have))
  if missing:
    raise ConfigError(f"config is missing keys {', '.join(missing)} (every config must start "
                      "from configs/defaults.py:get_default_config())")
  for key, default in want.items():
    if not _type_ok(have[key], default):
      raise ConfigError(f"config key {key!r} must be of type {type(default).__name__} "
                        f"(like its default {default!r}), got {have[key]!r}")


def validate(config, schema=None) -> ml_collections.ConfigDict:
  """Schema check plus value checks that would otherwise fail deep inside training."""
  check_schema(config, schema)
  from manifolds import from_spec
  try:
    manifold = from_spec(config.manifold)
  except ValueError as e:
    raise ConfigError(f"config.manifold: {e}") from None
  del manifold
  t = config.train
  positive = {"train.num_steps": t.num_steps, "train.batch_size": t.batch_size,
              "train.steps_per_dispatch": t.steps_per_dispatch, "train.log_every": t.log_every,
              "train.ckpt_every": t.ckpt_every, "train.eval_every": t.eval_every,
              "train.keep_checkpoints": t.keep_checkpoints, "eval.batch_size":
              config.eval.batch_size, "eval.max_points": config.eval.max_points}
  for key, v in positive.items():
    if v < 1:
      raise ConfigError(f"config.{key} must be >= 1, got {v}")
  if not t.lr > 0:
    raise ConfigError(f"config.train.lr must be > 0, got {t.lr}")
  if t.warmup_steps < 0 or t.weight_decay < 0 or t.grad_clip < 0:
    raise ConfigError("config.train.warmup_steps, weight_decay and grad_clip must be >= 0 "
                      "(grad_clip = 0 disables clipping)")
  if not 0.0 <= t.ema_decay < 1.0:
    raise ConfigError(f"config.train.ema_decay must be in [0, 1), got {t.ema_decay}")
  if config.eval.num_plot_samples < 0:
    raise ConfigError("config.eval.num_plot_samples must be >= 0")
  if config.data.split_seed < -1:
    raise ConfigError("config.data.split_seed must be >= 0 or -1 (= use config.seed)")
  return config


# ---------------------------------------------------------------------------- loading
def load_config_file(path: str) -> ml_collections.ConfigDict:
  """Run ``get_config()`` of a config file (a path, or a name under configs/)."""
  _ensure_repo_on_path()
  if not os.path.exists(path):
    alt = os.path.join(REPO_ROOT, "configs", path if path.endswith(".py") else path + ".py")
    if os.path.exists(alt):
      path = alt
    else:
      raise ConfigError(f"config file {path!r} not found")
  name = "geogen_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path} has no get_config()")
  return module.get_config()


def load_config(path: str, overrides=()) -> ml_collections.ConfigDict:
  """Load a config file, apply overrides, validate; returns a locked ConfigDict."""
  config = load_config_file(path)
  check_schema(config)
  apply_overrides(config, overrides)
  validate(config)
  config.lock()
  return config


def from_json(text_or_dict) -> ml_collections.ConfigDict:
  """Rebuild a config from its config.json (as written by `to_json`); validated."""
  d = json.loads(text_or_dict) if isinstance(text_or_dict, str) else text_or_dict
  schema = default_config()
  # JSON has no tuples: restore them where the schema has one.
  flat_schema = flatten(schema)
  config = ml_collections.ConfigDict(d)
  for key, default in flat_schema.items():
    try:
      v = _get(config, key)
    except (KeyError, AttributeError):
      # A key added to the schema after this run was written: every new key's default
      # reproduces the behaviour before it existed, so older workdirs stay loadable
      # (resume, sample.py).  Unknown keys still fail in validate.
      _set(config, key, default)
      continue
    if isinstance(default, tuple) and isinstance(v, list):
      _set(config, key, tuple(v))
  validate(config, schema)
  config.lock()
  return config


def to_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def diff(a, b) -> list:
  """Dotted keys whose values differ between two configs."""
  fa, fb = flatten(a), flatten(b)
  keys = sorted(set(fa) | set(fb))
  norm = lambda v: list(v) if isinstance(v, tuple) else v
  return [k for k in keys if norm(fa.get(k, "<missing>")) != norm(fb.get(k, "<missing>"))]


def blocking_changes(old, new) -> list:
  """Keys that differ and would make a resumed run differ from an uninterrupted one."""
  return [k for k in diff(old, new)
          if not any(k == p or (p.endswith(".") and k.startswith(p)) for p in RESUMABLE_CHANGES)]


# ---------------------------------------------------------------------------- command line
def parse_command_line(argv, required=("config", "workdir")):
  """Parse ``--config PATH --workdir DIR [--config.key=value ...]``.

  Returns (config_path, workdir, overrides list, other flags dict).
  """
  flags, overrides = {}, []
  args = list(argv)
  i = 0
  while i < len(args):
    a = args[i]
    if not a.startswith("--"):
      raise ConfigError(f"unexpected argument {a!r}")
    body = a[2:]
    if "=" in body:
      name, value = body.split("=", 1)
    else:
      name = body
      if i + 1 >= len(args):
        raise ConfigError(f"--{name} needs a value")
      value = args[i + 1]
      i += 1
    if name.startswith("config."):
      overrides.append(f"{name[len('config.'):]}={value}")
    else:
      flags[name] = value
    i += 1
  for r in required:
    if r not in flags:
      raise ConfigError(f"missing --{r}")
  return flags, overrides
