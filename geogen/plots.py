"""Plots of samples and densities in each manifold's natural chart (matplotlib, Agg).

* ``sphere(2)``: Mollweide projection (longitude / latitude of x = cos(lat) cos(lon),
  y = cos(lat) sin(lon), z = sin(lat)): data and model samples, and the model log-density
  heat map from ``log_prob`` on a (lat, lon) grid (colour range: the top 10 nats).
* ``sphere(n)``, n > 2: histograms of the first coordinate and of the geodesic distance
  between random pairs (data vs samples); ``sphere(1)``: angle histogram.
* ``hyperbolic(2)``: Poincaré disk p = x[1:] / (1 + x[0]) (data, samples, log-density
  heat map); ``hyperbolic(n)``: histogram of the distance to the origin.
* ``torus(2)``: angle heat maps (2-D histograms) of data and samples, plus the model
  density on an angle grid; ``torus(n)``: 2-D histograms of consecutive angle pairs.
* ``su(n)``: histograms of the eigen-angles (data vs samples); powers of any base pool
  their factors.
* ``euclidean(n)``: scatter of the first two coordinates.
* ``loss.png``: the training loss from metrics.jsonl.

Entry point for the training loop: `make_plots(config, build, state, workdir)`.
"""
from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from manifolds import Euclidean, Hyperbolic, Power, SpecialUnitary, Sphere, Torus  # noqa: E402

_LOG_RANGE = 10.0  # log-density heat maps show [max - 10, max] nats (lower values clipped)
_DATA_STYLE = dict(s=2, alpha=0.5, color="tab:blue", linewidths=0)
_SAMPLE_STYLE = dict(s=2, alpha=0.5, color="tab:red", linewidths=0)


# ============================================================================ charts
def sphere_to_lon_lat(x):
  """Unit vectors (..., 3) -> (lon, lat) in radians (Mollweide axes coordinates)."""
  x = np.asarray(x, np.float64)
  lat = np.arctan2(x[..., 2], np.hypot(x[..., 0], x[..., 1]))
  lon = np.arctan2(x[..., 1], x[..., 0])
  return lon, lat


def lon_lat_grid(n_lat: int):
  """Cell edges and centers of a (n_lat, 2 n_lat) grid; centers as unit vectors.

  -> (lon_edges (2n+1,), lat_edges (n+1,), points (n, 2n, 3))."""
  lon_e = np.linspace(-math.pi, math.pi, 2 * n_lat + 1)
  lat_e = np.linspace(-math.pi / 2, math.pi / 2, n_lat + 1)
  lon_c, lat_c = 0.5 * (lon_e[1:] + lon_e[:-1]), 0.5 * (lat_e[1:] + lat_e[:-1])
  lon, lat = np.meshgrid(lon_c, lat_c)
  pts = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)
  return lon_e, lat_e, pts


def lorentz_to_poincare(x):
  """Lorentz (..., n+1), x0 > 0 -> Poincaré ball (..., n)."""
  x = np.asarray(x, np.float64)
  return x[..., 1:] / (1.0 + x[..., :1])


def poincare_to_lorentz(p):
  """Poincaré ball (..., n) -> Lorentz (..., n+1)."""
  p = np.asarray(p, np.float64)
  r2 = np.sum(p * p, -1, keepdims=True)
  return np.concatenate([(1.0 + r2) / (1.0 - r2), 2.0 * p / (1.0 - r2)], -1)


def eigen_angles_np(u):
  """Eigen-angles in (-pi, pi] of unitary matrices (..., n, n) -> (..., n)."""
  return np.angle(np.linalg.eigvals(np.asarray(u)))


def _base(manifold):
  return manifold.base if isinstance(manifold, Power) else manifold


def _pool(manifold, x):
  """Flatten the factors of a Power into the batch axis."""
  x = np.asarray(x)
  if isinstance(manifold, Power):
    return x.reshape((-1,) + tuple(manifold.base.shape))
  return x


# ============================================================================ figures
def _num_bins(n: int) -> int:
  """Bins per axis of a 2-D histogram of n points (about 4 points per bin, 15 to 60)."""
  return int(np.clip(np.sqrt(n / 4.0), 15, 60))


def _save(fig, path):
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def plot_sphere2(data, samples, path, density=None, title=""):
  """Mollweide: data, samples and (optional) density = (lon_e, lat_e, log_p (n, 2n))."""
  panels = 3 if density is not None else 2
  fig = plt.figure(figsize=(6.5 * panels, 3.8))
  for i, (pts, name, style) in enumerate(((data, "data", _DATA_STYLE),
                                          (samples, "model samples", _SAMPLE_STYLE))):
    ax = fig.add_subplot(1, panels, i + 1, projection="mollweide")
    lon, lat = sphere_to_lon_lat(pts)
    ax.scatter(lon, lat, **style)
    ax.set_title(f"{name} ({len(pts)})")
    ax.grid(True, alpha=0.3)
    ax.set_xticklabels([])
  if density is not None:
    lon_e, lat_e, logp = density
    ax = fig.add_subplot(1, panels, 3, projection="mollweide")
    vmax = float(np.max(logp))
    mesh = ax.pcolormesh(lon_e, lat_e, logp, cmap="viridis", shading="flat",
                         vmin=vmax - _LOG_RANGE, vmax=vmax)
    fig.colorbar(mesh, ax=ax, shrink=0.6, label="log density (per sr)")
    lon, lat = sphere_to_lon_lat(data)
    ax.scatter(lon, lat, s=1, color="white", alpha=0.3, linewidths=0)
    ax.set_title("model log-density")
    ax.grid(True, alpha=0.3)
    ax.set_xticklabels([])
  if title:
    fig.suptitle(title, y=1.02)
  return _save(fig, path)


def plot_torus2(data, samples, path, density=None, title=""):
  """Angle heat maps on [-pi, pi)^2; density = (edges, log_p (n, n)) on a grid."""
  panels = 3 if density is not None else 2
  fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 4))
  for ax, pts, name in zip(axes, (data, samples), ("data", "model samples")):
    edges = np.linspace(-math.pi, math.pi, _num_bins(len(pts)) + 1)
    ax.hist2d(pts[:, 0], pts[:, 1], bins=[edges, edges], cmap="viridis", density=True)
    ax.set_title(f"{name} ({len(pts)})")
  if density is not None:
    e, logp = density
    vmax = float(np.max(logp))
    m = axes[2].pcolormesh(e, e, logp.T, cmap="viridis", shading="flat",
                           vmin=vmax - _LOG_RANGE, vmax=vmax)
    fig.colorbar(m, ax=axes[2], shrink=0.8, label="log density")
    axes[2].set_title("model log-density")
  for ax in axes:
    ax.set_xlabel("angle 1")
    ax.set_ylabel("angle 2")
    ax.set_aspect("equal")
  if title:
    fig.suptitle(title, y=1.02)
  return _save(fig, path)


def plot_torus_pairs(data, samples, path, title="", max_pairs: int = 6):
  """2-D histograms of consecutive angle pairs (rows: data, samples)."""
  n = data.shape[-1]
  pairs = [(i, i + 1) for i in range(min(n - 1, max_pairs))]
  fig, axes = plt.subplots(2, len(pairs), figsize=(3.2 * len(pairs), 6.4), squeeze=False)
  edges = np.linspace(-math.pi, math.pi, _num_bins(min(len(data), len(samples))) + 1)
  for j, (a, c) in enumerate(pairs):
    for i, (pts, name) in enumerate(((data, "data"), (samples, "samples"))):
      ax = axes[i, j]
      ax.hist2d(pts[:, a], pts[:, c], bins=[edges, edges], cmap="viridis", density=True)
      ax.set_title(f"{name}: angles {a + 1}-{c + 1}", fontsize=9)
      ax.set_aspect("equal")
      ax.set_xticks([])
      ax.set_yticks([])
  if title:
    fig.suptitle(title, y=1.02)
  return _save(fig, path)


def plot_histograms(columns, path, title=""):
  """columns: list of (label, data values, sample values, xlabel)."""
  fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3.6), squeeze=False)
  for ax, (label, dv, sv, xlabel) in zip(axes[0], columns):
    lo = float(min(np.min(dv), np.min(sv)))
    hi = float(max(np.max(dv), np.max(sv)))
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 61)
    ax.hist(dv, bins=bins, density=True, alpha=0.5, color="tab:blue", label="data")
    ax.hist(sv, bins=bins, density=True, alpha=0.5, color="tab:red", label="samples")
    ax.set_title(label)
    ax.set_xlabel(xlabel)
    ax.legend()
  if title:
    fig.suptitle(title, y=1.02)
  return _save(fig, path)


def plot_poincare(data, samples, path, density=None, title=""):
  """Poincaré disk of H^2; density = (xs (n,), log_p (n, n)) on a square grid."""
  panels = 3 if density is not None else 2
  fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 4.3))
  for ax, pts, name, style in zip(axes, (data, samples), ("data", "model samples"),
                                  (_DATA_STYLE, _SAMPLE_STYLE)):
    p = lorentz_to_poincare(pts)
    ax.scatter(p[:, 0], p[:, 1], **style)
    ax.set_title(f"{name} ({len(pts)})")
  if density is not None:
    xs, logp = density
    vmax = float(np.nanmax(logp))
    m = axes[2].pcolormesh(xs, xs, logp.T, cmap="viridis", shading="nearest",
                           vmin=vmax - _LOG_RANGE, vmax=vmax)
    fig.colorbar(m, ax=axes[2], shrink=0.8, label="log density (hyperbolic volume)")
    axes[2].set_title("model log-density")
  for ax in axes:
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="k", lw=0.8))
    ax.set_xlim(-1.02, 1.02)
    ax.set_ylim(-1.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
  if title:
    fig.suptitle(title, y=1.02)
  return _save(fig, path)


def plot_loss(records, path, title=""):
  steps = [r["step"] for r in records if "loss" in r]
  loss = [r["loss"] for r in records if "loss" in r]
  fig, ax = plt.subplots(figsize=(6, 3.6))
  ax.plot(steps, loss, lw=1)
  ax.set_xlabel("step")
  ax.set_ylabel("training loss")
  ev = [(r["step"], r["val_nll"]) for r in records if r.get("val_nll") is not None]
  if ev:
    ax2 = ax.twinx()
    ax2.plot(*zip(*ev), "o-", color="tab:red", ms=3)
    ax2.set_ylabel("val NLL (nats / point)", color="tab:red")
  if title:
    ax.set_title(title)
  return _save(fig, path)


# ============================================================================ dispatch
def _rng_pairs(n, num, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, n, num), rng.integers(0, n, num)


def plot_points(manifold, data, samples, outdir, log_prob_fn=None, grid: int = 0,
                title: str = "") -> list:
  """Write the chart of `manifold` for data / samples (numpy arrays) into outdir.

  log_prob_fn: optional callable (N, *M.shape) numpy -> (N,) numpy log-densities, used
  for density heat maps on sphere(2), torus(2) and hyperbolic(2) when grid > 0.
  -> list of written paths.
  """
  os.makedirs(outdir, exist_ok=True)
  files = []
  data, samples = np.asarray(data), np.asarray(samples)
  m, base = manifold, _base(manifold)
  dens = log_prob_fn is not None and grid > 0 and not isinstance(m, Power)
  path = lambda name: os.path.join(outdir, name)
  if isinstance(m, Sphere) and m.n == 2:
    density = None
    if dens:
      lon_e, lat_e, pts = lon_lat_grid(grid)
      logp = np.asarray(log_prob_fn(pts.reshape(-1, 3).astype(data.dtype))).reshape(
          pts.shape[:2])
      density = (lon_e, lat_e, logp)
    files.append(plot_sphere2(data, samples, path("samples_mollweide.png"), density, title))
  elif isinstance(m, Torus) and m.n == 2:
    density = None
    if dens:
      e = np.linspace(-math.pi, math.pi, grid + 1)
      c = 0.5 * (e[1:] + e[:-1])
      a, bb = np.meshgrid(c, c, indexing="ij")
      pts = np.stack([a, bb], -1).reshape(-1, 2).astype(data.dtype)
      density = (e, np.asarray(log_prob_fn(pts)).reshape(grid, grid))
    files.append(plot_torus2(data, samples, path("angles_heatmap.png"), density, title))
  elif isinstance(base, Torus) or (isinstance(base, Sphere) and base.n == 1):
    d, s = _pool(m, data), _pool(m, samples)
    if isinstance(base, Sphere):  # circle: use the angle
      d, s = np.arctan2(d[:, 1], d[:, 0])[:, None], np.arctan2(s[:, 1], s[:, 0])[:, None]
    if d.shape[-1] == 1:
      files.append(plot_histograms([("angle", d[:, 0], s[:, 0], "radians")],
                                   path("angles_hist.png"), title))
    elif d.shape[-1] == 2:
      files.append(plot_torus2(d, s, path("angles_heatmap.png"), None, title))
    else:
      files.append(plot_torus_pairs(d, s, path("angle_pairs.png"), title))
  elif isinstance(base, Sphere):
    d, s = _pool(m, data), _pool(m, samples)
    i1, j1 = _rng_pairs(len(d), 20000)
    i2, j2 = _rng_pairs(len(s), 20000, seed=1)
    geo = lambda a, b: np.arccos(np.clip(np.sum(a * b, -1), -1.0, 1.0))
    files.append(plot_histograms(
        [("first coordinate x[0]", d[:, 0], s[:, 0], "x[0]"),
         ("distance between random pairs", geo(d[i1], d[j1]), geo(s[i2], s[j2]), "radians")],
        path("sphere_hist.png"), title))
  elif isinstance(base, Hyperbolic):
    if isinstance(m, Hyperbolic) and m.n == 2:
      density = None
      if dens:
        xs = np.linspace(-0.97, 0.97, grid)
        a, bb = np.meshgrid(xs, xs, indexing="ij")
        p = np.stack([a, bb], -1).reshape(-1, 2)
        inside = np.sum(p * p, -1) < 0.97**2
        logp = np.full(p.shape[0], np.nan)
        logp[inside] = np.asarray(log_prob_fn(poincare_to_lorentz(p[inside]).astype(
            data.dtype)))
        density = (xs, logp.reshape(grid, grid))
      files.append(plot_poincare(data, samples, path("poincare_disk.png"), density, title))
    d, s = _pool(m, data), _pool(m, samples)
    r = lambda x: np.arccosh(np.maximum(x[:, 0], 1.0))
    files.append(plot_histograms([("distance to the origin", r(d), r(s), "hyperbolic radius")],
                                 path("radius_hist.png"), title))
  elif isinstance(base, SpecialUnitary):
    d, s = eigen_angles_np(_pool(m, data)), eigen_angles_np(_pool(m, samples))
    files.append(plot_histograms([("eigen-angles", d.ravel(), s.ravel(), "radians")],
                                 path("eigen_angles.png"), title))
  elif isinstance(base, Euclidean):
    d, s = _pool(m, data), _pool(m, samples)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(d[:, 0], d[:, -1 if d.shape[-1] > 1 else 0], label="data", **_DATA_STYLE)
    ax.scatter(s[:, 0], s[:, -1 if s.shape[-1] > 1 else 0], label="samples", **_SAMPLE_STYLE)
    ax.legend()
    ax.set_title(title)
    files.append(_save(fig, path("scatter.png")))
  else:  # unknown manifold: histograms of the first real feature
    d = np.real(np.asarray(data)).reshape(len(data), -1)
    s = np.real(np.asarray(samples)).reshape(len(samples), -1)
    files.append(plot_histograms([("first coordinate", d[:, 0], s[:, 0], "")],
                                 path("coordinate_hist.png"), title))
  return files


def make_plots(config, b: dict, state, workdir: str, outdir: str | None = None) -> list:
  """Samples (and density where cheap) of the EMA model of a run; loss curve.  Written to
  outdir (default <workdir>/plots); returns the file paths relative to workdir."""
  import jax

  from geogen import training
  outdir = os.path.join(workdir, "plots") if outdir is None else outdir
  os.makedirs(outdir, exist_ok=True)
  ec = config.eval
  key = jax.random.fold_in(b["eval_key"], 3)
  samples = training.sample_points(b, state, key, int(ec.num_plot_samples), int(ec.batch_size))
  log_prob_fn, note = None, ""
  if b["dataset"] is None:  # data-less family (gflownet): exact target samples, log-density
    data, log_prob_fn = b["family"].plot_reference(training.ema_model(b, state),
                                                   jax.random.fold_in(b["eval_key"], 5),
                                                   int(ec.num_plot_samples))
    if data is None:  # no exact target sampler: the 'data' panels repeat the model (titled)
      data, note = samples, " (no exact target samples: data panels = model)"
  else:
    data = b["dataset"].test if len(b["dataset"].test) >= 500 else b["dataset"].train
    data = training.subset(data, int(ec.num_plot_samples))
  if training.has_log_prob(b["family"]) and int(ec.density_grid) > 0:
    model = training.ema_model(b, state)
    k = jax.random.fold_in(b["eval_key"], 4)
    log_prob_fn = lambda x: -training.nll(b, model, np.asarray(x), k,
                                          int(ec.batch_size))["per_point"]
  source = config.data.name if b["dataset"] is not None else f"target {config.target}"
  title = f"{config.model} on {config.manifold}, {source}{note}"
  files = plot_points(b["manifold"], data, samples, outdir, log_prob_fn,
                      int(ec.density_grid), title)
  records = training.read_metrics(workdir)
  if records:
    files.append(plot_loss(records, os.path.join(outdir, "loss.png"), title))
  return [os.path.relpath(f, workdir) for f in files]
