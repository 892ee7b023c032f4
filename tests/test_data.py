"""Datasets (geogen.data): shipped earth / RNA files, conventions, splits, .npy files, synthetic."""
import math
import os

import numpy as np
import pytest

from geogen import config as gconfig
from geogen import data as gdata
from geogen.data import earth, files
from manifolds import Euclidean, Sphere, Torus

RAW = os.path.join(os.path.dirname(gdata.__file__), "raw")
# rows per file (data lines, after the header lines), as documented in /work/shared/data
COUNTS = {"earth/volcano": 827, "earth/earthquake": 6120, "earth/flood": 4875,
          "earth/fire": 12809}


def cfg(*overrides):
  return gconfig.load_config("configs/quickstart.py", list(overrides))


# ------------------------------------------------------------------------- raw files
def test_raw_files_are_text_with_readme():
  with open(os.path.join(RAW, "README.md")) as f:
    readme = f.read()
  for fname in ("volerup.csv", "quakes_all.csv", "flood.csv", "fire.csv", "rna.tsv"):
    assert fname in readme
  for src in ("ngdc.noaa.gov", "floodobservatory.colorado.edu", "earthdata.nasa.gov/",
              "x = cos(lat) cos(lon)"):
    assert src in readme, src
  for path in [os.path.join(RAW, "earth", f) for f, _ in earth.FILES.values()] + [
      files.RNA_PATH]:
    with open(path, "rb") as f:
      head = f.read(4096)
    head.decode("ascii")  # plain text
    assert b"\x00" not in head


def test_lat_lon_convention_independent_points():
  # (lat, lon) -> x = cos lat cos lon, y = cos lat sin lon, z = sin lat
  np.testing.assert_allclose(earth.lat_lon_to_xyz(0.0, 0.0), [1, 0, 0], atol=1e-15)
  np.testing.assert_allclose(earth.lat_lon_to_xyz(0.0, 90.0), [0, 1, 0], atol=1e-15)
  np.testing.assert_allclose(earth.lat_lon_to_xyz(90.0, 123.0), [0, 0, 1], atol=1e-15)
  np.testing.assert_allclose(earth.lat_lon_to_xyz(-45.0, 180.0),
                             [-math.sqrt(0.5), 0, -math.sqrt(0.5)], atol=1e-15)
  lat, lon = np.array([-30.2, 11.984, 89.0]), np.array([-178.47, -86.161, 10.0])
  back = earth.to_lat_lon(earth.lat_lon_to_xyz(lat, lon))
  np.testing.assert_allclose(back[0], lat, atol=1e-12)
  np.testing.assert_allclose(back[1], lon, atol=1e-12)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_earth_datasets(name):
  s2 = Sphere(2)
  pts = gdata.load_points(name, s2)
  assert pts.shape == (COUNTS[name], 3) and pts.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(pts, axis=-1), 1.0, atol=1e-6)
  # the first data row of the file, parsed here by hand
  fname, skip = earth.FILES[name.split("/")[1]]
  with open(os.path.join(RAW, "earth", fname)) as f:
    row = f.read().splitlines()[skip]
  lat, lon = (float(v) for v in row.split(","))
  la, lo = math.radians(lat), math.radians(lon)
  np.testing.assert_allclose(pts[0], [math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo),
                                      math.sin(la)], atol=1e-6)


def test_rna_angles():
  pts = gdata.load_points("torus/rna", Torus(7))
  assert pts.shape == (9478, 7) and pts.dtype == np.float32
  assert np.all(pts >= -math.pi) and np.all(pts < math.pi)
  with open(files.RNA_PATH) as f:
    first = f.readline().split("\t")
  want = [((float(v) + 180.0) % 360.0 - 180.0) * math.pi / 180.0 for v in first[2:9]]
  np.testing.assert_allclose(pts[0], want, atol=2e-6)
  w = files.wrap_angles(np.deg2rad([180.0, -180.0, 540.0, 359.0, math.degrees(math.pi)
                                    - 1e-9]))
  assert np.all(w >= -math.pi) and np.all(w < np.float32(math.pi))
  np.testing.assert_allclose(w[:4], [-math.pi, -math.pi, -math.pi, -math.pi / 180], atol=1e-6)


def test_shipped_data_needs_its_manifold():
  with pytest.raises(ValueError, match="sphere\\(2\\)"):
    gdata.load(cfg("manifold=torus(2)"), Torus(2))
  with pytest.raises(ValueError, match="torus\\(7\\)"):
    gdata.load(cfg("data.name=torus/rna"), Sphere(2))
  with pytest.raises(ValueError, match="valid: .*earth/volcano"):
    gdata.load(cfg("data.name=earth/tsunami"), Sphere(2))


# ------------------------------------------------------------------------- splits
def test_split_80_10_10_seeded():
  x = np.arange(1003.0)[:, None]
  tr, va, te = gdata.split(x, seed=5)
  assert (len(tr), len(va), len(te)) == (803, 100, 100)
  allv = np.sort(np.concatenate([tr, va, te])[:, 0])
  np.testing.assert_array_equal(allv, x[:, 0])  # disjoint, complete
  tr2, va2, te2 = gdata.split(x, seed=5)
  np.testing.assert_array_equal(te, te2)
  assert not np.array_equal(te, gdata.split(x, seed=6)[2])


def test_split_seed_minus_one_uses_config_seed():
  t = Torus(7)
  a = gdata.load(cfg("data.name=torus/rna", "seed=4", "data.split_seed=-1"), t)
  b = gdata.load(cfg("data.name=torus/rna", "seed=9", "data.split_seed=4"), t)
  c = gdata.load(cfg("data.name=torus/rna", "seed=4", "data.split_seed=5"), t)
  np.testing.assert_array_equal(a.test, b.test)
  assert not np.array_equal(a.test, c.test)
  assert a.log_prob is None and a.entropy is None


# ------------------------------------------------------------------------- .npy files
def _file_cfg(tmp_path, arrays, manifold="torus(2)"):
  paths = {}
  for k, arr in arrays.items():
    paths[k] = str(tmp_path / f"{k}.npy")
    if arr is not None:
      np.save(paths[k], arr)
  over = [f"manifold={manifold}", "data.name=file"] + [f"data.{k}={p}" for k, p in paths.items()]
  return cfg(*over)


def test_file_dataset_loads_and_splits(tmp_path):
  rng = np.random.default_rng(0)
  good = rng.uniform(-math.pi, math.pi, (50, 2))
  ds = gdata.load(_file_cfg(tmp_path, {"train": good, "val": good[:5], "test": good[:7]}),
                  Torus(2))
  assert ds.train.shape == (50, 2) and ds.val.shape == (5, 2) and ds.test.shape == (7, 2)
  assert ds.train.dtype == np.float32
  ds = gdata.load(_file_cfg(tmp_path, {"train": good}), Torus(2))  # val / test empty: split
  assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 5, 5)


@pytest.mark.parametrize("case,match", [
    ("missing", "data.train.*file not found"),
    ("shape", "expected shape \\(N, 2\\)"),
    ("nan", "NaN"),
    ("off", "off the manifold"),
    ("complex", "complex"),
    ("pickle", "cannot read"),
    ("only_val", "data.test"),
])
def test_file_dataset_fails_clearly(tmp_path, case, match):
  good = np.zeros((20, 2))
  arrays = {"train": good}
  if case == "missing":
    arrays = {"train": None}
  elif case == "shape":
    arrays = {"train": np.zeros((20, 3))}
  elif case == "nan":
    bad = good.copy()
    bad[3, 1] = np.nan
    arrays = {"train": bad}
  elif case == "off":
    bad = good.copy()
    bad[4, 0] = 4.0  # angle outside [-pi, pi)
    arrays = {"train": bad}
  elif case == "complex":
    arrays = {"train": good.astype(np.complex64)}
  elif case == "pickle":
    arrays = {"train": None}
    np.save(str(tmp_path / "train.npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
  elif case == "only_val":
    arrays = {"train": good, "val": good}
  with pytest.raises(ValueError, match=match):
    gdata.load(_file_cfg(tmp_path, arrays), Torus(2))


def test_file_dataset_fails_before_training(tmp_path):
  """A bad data file stops train_and_evaluate before anything is trained or written."""
  from geogen import training
  bad = np.zeros((20, 2))
  bad[0, 0] = np.nan
  c = _file_cfg(tmp_path, {"train": bad})
  wd = str(tmp_path / "run")
  with pytest.raises(ValueError, match="NaN"):
    training.train_and_evaluate(c, wd)
  assert not os.path.exists(os.path.join(wd, "metrics.jsonl"))


def test_file_dataset_sphere_off_manifold(tmp_path):
  x = np.tile([[0.0, 0.0, 1.0]], (20, 1))
  x[7] = [0.0, 0.0, 1.5]
  with pytest.raises(ValueError, match="off the manifold"):
    gdata.load(_file_cfg(tmp_path, {"train": x}, "sphere(2)"), Sphere(2))


# ------------------------------------------------------------------------- synthetic
def test_synthetic_dataset_sizes_and_exact_law():
  c = cfg("manifold=torus(2)", "data.name=synthetic/von_mises", "data.num_train=300",
          "data.num_val=20", "data.num_test=30", "data.synthetic.num_components=1",
          "data.synthetic.concentration=2.0")
  ds = gdata.load(c, Torus(2))
  assert ds.train.shape == (300, 2) and ds.val.shape == (20, 2) and ds.test.shape == (30, 2)
  # one component: product of two von Mises(kappa=2) laws, entropy in closed form
  from scipy import special
  k = 2.0
  h1 = math.log(2 * math.pi * special.i0(k)) - k * special.i1(k) / special.i0(k)
  assert ds.entropy == pytest.approx(2 * h1, rel=1e-6)
  # the same seed gives the same data, another split seed another sample
  again = gdata.load(c, Torus(2))
  np.testing.assert_array_equal(again.train, ds.train)
  other = gdata.load(cfg("manifold=torus(2)", "data.name=synthetic/von_mises",
                         "data.num_train=300", "data.num_val=20", "data.num_test=30",
                         "data.split_seed=11", "data.synthetic.num_components=1",
                         "data.synthetic.concentration=2.0"), Torus(2))
  assert not np.array_equal(other.train, ds.train)
  assert np.all(np.isfinite(np.asarray(ds.log_prob(ds.test))))


def test_unknown_dataset_lists_names():
  with pytest.raises(ValueError, match="valid: .*torus/rna.*file"):
    gdata.load(cfg("data.name=mnist"), Euclidean(2))
