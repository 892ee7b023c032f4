"""File datasets: the shipped RNA torsion angles and user ``.npy`` arrays (``data.name='file'``).

RNA (``torus/rna``): ``raw/torus/rna.tsv`` holds, per residue, a PDB id, the residue letter and
7 torsion angles in degrees; they become radians wrapped to [-pi, pi) (points of ``torus(7)``).

User files: ``data.train``, ``data.val``, ``data.test`` are ``.npy`` arrays of shape
(N, *M.shape) in the manifold's representation (unit vectors for spheres, Lorentz
coordinates for hyperbolic spaces, complex matrices for SU(n), angles in [-pi, pi) for tori).
Every failure (missing file, wrong shape, NaN, points off the manifold) raises a
``ValueError`` naming the config key and the file, before any training starts.
"""
from __future__ import annotations

import math
import os

import numpy as np

from geogen.data.earth import RAW_DIR

RNA_PATH = os.path.join(RAW_DIR, "torus", "rna.tsv")


def wrap_angles(a, dtype=np.float32):
  """Angles (radians, any real) -> [-pi, pi) in `dtype` (exact after the cast too)."""
  a = np.mod(np.asarray(a, np.float64) + math.pi, 2.0 * math.pi) - math.pi
  out = a.astype(dtype)
  # float32(pi) > pi: values that round up to it are moved to -pi (the same angle).
  out = np.where(out >= dtype(math.pi), out - dtype(2.0 * math.pi), out).astype(dtype)
  return out


def load_rna_degrees() -> np.ndarray:
  """The 7 RNA torsion angles in degrees.  -> (N, 7) float64."""
  table = np.loadtxt(RNA_PATH, delimiter="\t", usecols=range(2, 9), dtype=np.float64, ndmin=2)
  if table.shape[1] != 7 or not np.all(np.isfinite(table)):
    raise ValueError(f"{RNA_PATH}: expected 7 finite angles per row, got {table.shape}")
  return table


def load_rna(dtype=np.float32) -> np.ndarray:
  """RNA torsion angles in radians wrapped to [-pi, pi).  -> (N, 7)."""
  return wrap_angles(np.deg2rad(load_rna_degrees()), dtype)


def load_npy(path: str, key: str, manifold, dtype) -> np.ndarray:
  """Load and validate one user array.  -> (N, *manifold.shape) of `dtype`.

  Raises ValueError (missing file, not a plain numeric array, wrong shape, NaN / inf,
  points off the manifold per ``manifold.check``).
  """
  where = f"config.{key}={path!r}"
  if not path:
    raise ValueError(f"{where}: data.name='file' needs .npy paths in data.train, data.val "
                     "and data.test (val and test may both be left empty to split data.train "
                     "80/10/10)")
  if not os.path.isfile(path):
    raise ValueError(f"{where}: file not found (cwd: {os.getcwd()})")
  try:
    arr = np.load(path, allow_pickle=False)
  except Exception as e:  # corrupt file, pickled object array, ...
    raise ValueError(f"{where}: cannot read as a .npy array: {e}") from None
  if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiuc":
    raise ValueError(f"{where}: expected a numeric array, got dtype {getattr(arr, 'dtype', '?')}")
  expect = (manifold.shape)
  if arr.ndim != 1 + len(expect) or tuple(arr.shape[1:]) != tuple(expect) or arr.shape[0] < 1:
    raise ValueError(
        f"{where}: expected shape (N, {', '.join(map(str, expect))}) for {manifold.spec} "
        f"with N >= 1, got {arr.shape}")
  if arr.dtype.kind == "c" and not manifold.is_complex:
    raise ValueError(f"{where}: {manifold.spec} points are real, got complex dtype {arr.dtype}")
  if not np.all(np.isfinite(arr)):
    bad = int(np.sum(~np.all(np.isfinite(arr.reshape(arr.shape[0], -1)), axis=-1)))
    raise ValueError(f"{where}: {bad} of {arr.shape[0]} points contain NaN or inf")
  arr = arr.astype(dtype)
  try:
    manifold.check(arr, what=f"points in {path}")
  except ValueError as e:
    raise ValueError(f"{where}: {e}") from None
  return arr
