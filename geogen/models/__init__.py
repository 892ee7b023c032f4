"""Model families.  ``get_family(name)`` returns the family's module, which provides

    default_config() -> ConfigDict      init(config, manifold, key) -> nnx.Module
    loss(model, batch, key)             sample(model, key, num)
    log_prob(model, x, key)             log_prob_and_stats(model, x, key)

(see notes/INTERFACES.md).  Also: ``FrozenConfig``, a hashable read-only view of a
ConfigDict section, for settings stored as static attributes of an nnx module (so
the module's GraphDef stays hashable and jit caches hit).
"""
from __future__ import annotations

import importlib

# name -> module path.  A family is listed here once its module exists.
_FAMILIES = {
    "diffusion": "geogen.models.diffusion",
    "flow_matching": "geogen.models.flow_matching",
    "gflownet": "geogen.models.gflownet",
}
# Families of the design that are not written yet (clear message instead of ImportError).
_PLANNED = ("injective_flow",)


def families() -> tuple:
  """Names of the available families."""
  return tuple(sorted(_FAMILIES))


def get_family(name: str):
  """The module of model family `name`; ValueError listing the families otherwise."""
  if name not in _FAMILIES:
    hint = " (planned, not implemented yet)" if name in _PLANNED else ""
    raise ValueError(f"unknown model family {name!r}{hint}; available families: "
                     f"{', '.join(families())}")
  return importlib.import_module(_FAMILIES[name])


class FrozenConfig:
  """Hashable, read-only attribute view of a (flat or nested) ConfigDict / dict."""

  __slots__ = ("_items",)

  def __init__(self, cfg):
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    items = []
    for k, v in sorted(d.items()):
      if isinstance(v, dict):
        v = FrozenConfig(v)
      elif isinstance(v, list):
        v = tuple(v)
      items.append((k, v))
    object.__setattr__(self, "_items", tuple(items))

  def __getattr__(self, name):
    for k, v in object.__getattribute__(self, "_items"):
      if k == name:
        return v
    raise AttributeError(f"config has no key {name!r}; keys: {[k for k, _ in self._items]}")

  def __setattr__(self, name, value):
    raise AttributeError("FrozenConfig is read-only")

  def __getitem__(self, name):
    return getattr(self, name)

  def to_dict(self) -> dict:
    return {k: (v.to_dict() if isinstance(v, FrozenConfig) else v) for k, v in self._items}

  def __eq__(self, other):
    return isinstance(other, FrozenConfig) and self._items == other._items

  def __hash__(self):
    return hash(self._items)

  def __repr__(self):
    return "FrozenConfig(" + ", ".join(f"{k}={v!r}" for k, v in self._items) + ")"
