"""Datasets: ``geogen.data.load(config, manifold) -> Dataset``.

``config.data.name`` selects the source:

* ``earth/volcano``, ``earth/earthquake``, ``earth/flood``, ``earth/fire`` (``sphere(2)``),
  ``torus/rna`` (``torus(7)``): shipped files (``geogen/data/raw``), split 80/10/10 with a
  permutation from ``numpy.random.default_rng(split_seed)``: the first floor(0.1 N) permuted
  points are the test set, the next floor(0.1 N) the validation set, the rest train.
* ``file``: ``.npy`` arrays ``data.train`` / ``data.val`` / ``data.test`` (see
  `geogen.data.files`); with val and test both empty, ``data.train`` is split as above.
* ``synthetic/<kind>``: exact distributions of `geogen.data.synthetic` sampled with
  ``data.num_train`` / ``num_val`` / ``num_test`` points; they also give the exact
  ``log_prob`` and ``entropy`` (so the KL of a model can be reported).

``split_seed = -1`` means "use ``config.seed``".  Every array is validated with
``manifold.check`` (a ``ValueError`` naming the problem before training starts).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from geogen.data import earth, files

SHIPPED = earth.NAMES + ("torus/rna",)
# manifold spec that each shipped dataset lives on
SHIPPED_MANIFOLD = {**{n: "sphere(2)" for n in earth.NAMES}, "torus/rna": "torus(7)"}


@dataclasses.dataclass
class Dataset:
  """Train / val / test points, numpy arrays of shape (N, *M.shape) in M's dtype.

  log_prob: exact log-density (w.r.t. Riemannian volume) of the data law, or None.
  entropy: its exact differential entropy in nats (or a high-precision estimate with
    standard error ``entropy_stderr``), or None.
  """

  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  log_prob: Optional[Callable] = None
  entropy: Optional[float] = None
  entropy_stderr: Optional[float] = None
  name: str = ""


def split_seed(config) -> int:
  """The seed of the 80/10/10 split (``data.split_seed``, -1 -> ``config.seed``)."""
  s = int(config.data.split_seed)
  return int(config.seed) if s == -1 else s


def split(points: np.ndarray, seed: int):
  """80/10/10 split by a seeded permutation.  -> (train, val, test)."""
  n = points.shape[0]
  n_hold = n // 10
  if n_hold < 1:
    raise ValueError(f"cannot split {n} points 80/10/10: need at least 10")
  perm = np.random.default_rng(seed).permutation(n)
  test = points[perm[:n_hold]]
  val = points[perm[n_hold:2 * n_hold]]
  train = points[perm[2 * n_hold:]]
  return train, val, test


def names() -> tuple:
  """Dataset names accepted by `load` (synthetic kinds listed by geogen.data.synthetic)."""
  return SHIPPED + ("file", "synthetic/<kind>")


def _np_dtype(manifold):
  return np.dtype(manifold.dtype)


def _require_manifold(name, manifold):
  want = SHIPPED_MANIFOLD[name]
  if manifold.spec != want:
    raise ValueError(f"data.name={name!r} lives on {want}, but manifold={manifold.spec!r}; "
                     f"set --config.manifold='{want}'")


def load_points(name: str, manifold) -> np.ndarray:
  """All points of a shipped dataset in M's representation.  -> (N, *M.shape)."""
  _require_manifold(name, manifold)
  dtype = _np_dtype(manifold)
  if name == "torus/rna":
    pts = files.load_rna(dtype.type)
  else:
    pts = earth.load_points(name.split("/", 1)[1]).astype(dtype)
  manifold.check(pts, what=f"points of {name}")
  return pts


def _load_synthetic(config, manifold) -> Dataset:
  import jax

  from geogen.data import synthetic

  name = config.data.name
  key = jax.random.PRNGKey(split_seed(config))
  dist = synthetic.make(name, manifold, config.data.synthetic, key)
  k_train, k_val, k_test, k_ent = jax.random.split(jax.random.fold_in(key, 1), 4)
  sizes = (int(config.data.num_train), int(config.data.num_val), int(config.data.num_test))
  if min(sizes) < 1:
    raise ValueError(f"synthetic data needs data.num_train/num_val/num_test >= 1, got {sizes}")
  dtype = _np_dtype(manifold)
  arrays = [np.asarray(dist.sample(k, n)).astype(dtype)
            for k, n in zip((k_train, k_val, k_test), sizes)]
  for a, what in zip(arrays, ("train", "val", "test")):
    manifold.check(a, what=f"{what} points of {name}")
  ent = dist.entropy(k_ent) if _takes_key(dist.entropy) else dist.entropy()
  ent_val, ent_se = _entropy_value(ent)
  return Dataset(*arrays, log_prob=dist.log_prob, entropy=ent_val, entropy_stderr=ent_se,
                 name=name)


def _takes_key(fn) -> bool:
  import inspect
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False
  return any(p.default is inspect.Parameter.empty and
             p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params.values())


def _entropy_value(ent):
  """Entropy as (value, stderr or None) from a float or a (value, stderr) pair."""
  if ent is None:
    return None, None
  if isinstance(ent, (tuple, list)):
    return float(ent[0]), (None if ent[1] is None else float(ent[1]))
  if isinstance(ent, dict):
    return float(ent["entropy"]), ent.get("stderr")
  return float(ent), None


def load(config, manifold) -> Dataset:
  """Load and validate the dataset of ``config.data`` on `manifold`."""
  name = config.data.name
  if name in SHIPPED:
    train, val, test = split(load_points(name, manifold), split_seed(config))
    return Dataset(train, val, test, name=name)
  dtype = _np_dtype(manifold)
  if name == "file":
    d = config.data
    train = files.load_npy(d.train, "data.train", manifold, dtype)
    if not d.val and not d.test:
      train, val, test = split(train, split_seed(config))
    else:
      val = files.load_npy(d.val, "data.val", manifold, dtype)
      test = files.load_npy(d.test, "data.test", manifold, dtype)
    return Dataset(train, val, test, name=name)
  if name.startswith("synthetic/"):
    return _load_synthetic(config, manifold)
  raise ValueError(f"unknown data.name={name!r}; valid: {', '.join(names())}")
