"""Earth datasets: locations of natural events on the unit sphere S^2.

The raw files (``geogen/data/raw/earth/*.csv``, see the README there for sources) hold
(latitude, longitude) in degrees.  They become unit vectors in R^3 with

    x = cos(lat) cos(lon),   y = cos(lat) sin(lon),   z = sin(lat)

(north pole = +z, Greenwich meridian on the +x half of the x-z plane), i.e. points of
``sphere(2)``.  `to_lat_lon` is the inverse (used for Mollweide plots).
"""
from __future__ import annotations

import os

import numpy as np

RAW_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "raw")

# geogen name -> (file under raw/earth, number of header lines)
FILES = {
    "volcano": ("volerup.csv", 2),
    "earthquake": ("quakes_all.csv", 4),
    "flood": ("flood.csv", 2),
    "fire": ("fire.csv", 1),
}
NAMES = tuple(f"earth/{k}" for k in FILES)


def lat_lon_to_xyz(lat_deg, lon_deg):
  """(lat, lon) in degrees -> unit vectors.  (...), (...) -> (..., 3) float64."""
  lat = np.deg2rad(np.asarray(lat_deg, np.float64))
  lon = np.deg2rad(np.asarray(lon_deg, np.float64))
  return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def to_lat_lon(xyz):
  """Unit vectors (..., 3) -> (lat, lon) in degrees, lat in [-90, 90], lon in (-180, 180]."""
  xyz = np.asarray(xyz, np.float64)
  x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
  lat = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
  lon = np.rad2deg(np.arctan2(y, x))
  return lat, lon


def read_lat_lon(kind: str) -> np.ndarray:
  """The raw (lat, lon) table of one earth dataset in degrees.  -> (N, 2) float64."""
  if kind not in FILES:
    raise ValueError(f"unknown earth dataset 'earth/{kind}'; valid: {', '.join(NAMES)}")
  fname, skip = FILES[kind]
  path = os.path.join(RAW_DIR, "earth", fname)
  table = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float64, ndmin=2)
  if table.shape[1] != 2 or not np.all(np.isfinite(table)):
    raise ValueError(f"{path}: expected finite (lat, lon) rows, got shape {table.shape}")
  if np.any(np.abs(table[:, 0]) > 90) or np.any(np.abs(table[:, 1]) > 360):
    raise ValueError(f"{path}: latitude/longitude out of range")
  return table


def load_points(kind: str) -> np.ndarray:
  """All points of one earth dataset as unit vectors.  -> (N, 3) float64."""
  table = read_lat_lon(kind)
  return lat_lon_to_xyz(table[:, 0], table[:, 1])
