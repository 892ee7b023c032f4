r"""Euclidean benchmark targets of "Improved off-policy training of diffusion samplers"
(Sendera et al. 2024), with the definitions of that paper (densities written here from the
formulas, not copied).

* ``gmm25`` on R^2: (1/25) sum_{a, b in {-10, -5, 0, 5, 10}} N(x; (a, b), 0.3 I_2).
  Normalized: log Z = 0.  Exact sampler: uniform component, Gaussian draw.
* ``funnel`` on R^d (d = 10): x_0 ~ N(0, sigma^2) with sigma = 3 (the paper's "hard" funnel),
  x_i | x_0 ~ N(0, e^{x_0}), i = 1..d-1.  Normalized: log Z = 0.  Exact sampler: ancestral.
* ``manywell`` on R^d (d = 32, even): d/2 independent double wells on the coordinate pairs
  (x_{2i}, x_{2i+1}), log p = sum_i [-x_{2i}^4 + 6 x_{2i}^2 + x_{2i}/2 - x_{2i+1}^2/2]
  (unnormalized).  log Z = (d/2) (log Z_1 + log(2 pi)/2), Z_1 = int exp(-x^4 + 6 x^2 + x/2) dx
  by mpmath quadrature at 30 digits (Z_1 = 11784.50927...).  Exact sampler: x_{2i+1} ~ N(0, 1);
  x_{2i} by rejection from a piecewise-constant envelope on 4096 cells of [-5, 5], whose value
  on each cell is the exact maximum of the log-density there (endpoints and the three critical
  points); the law outside [-5, 5] has mass below e^-480 (not representable as a draw).

Log-densities are w.r.t. Lebesgue measure (the Riemannian volume of R^d), pure JAX in the
dtype of the input.  The samplers of gmm25 / funnel are JAX; manywell's runs in float64 numpy
seeded from the key.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)
_GRID = (-10.0, -5.0, 0.0, 5.0, 10.0)
_GMM_VAR = 0.3


def _dtype(x):
  return jnp.asarray(x).dtype


# ======================================================================== gmm25
def gmm25_means() -> np.ndarray:
  """(25, 2) component means (a, b), a, b in {-10, -5, 0, 5, 10}."""
  return np.array([(a, b) for a in _GRID for b in _GRID], dtype=np.float64)


def gmm25_log_prob(x):
  """(..., 2) -> (...): log (1/25) sum_k N(x; m_k, 0.3 I)."""
  m = jnp.asarray(gmm25_means(), _dtype(x))
  d2 = jnp.sum((x[..., None, :] - m) ** 2, axis=-1)
  lp = -d2 / (2.0 * _GMM_VAR) - math.log(2.0 * math.pi * _GMM_VAR)
  return jax.nn.logsumexp(lp, axis=-1) - math.log(25.0)


def gmm25_sample(key, num, dtype):
  k1, k2 = jax.random.split(key)
  comp = jax.random.randint(k1, (num,), 0, 25)
  m = jnp.asarray(gmm25_means(), dtype)[comp]
  return m + math.sqrt(_GMM_VAR) * jax.random.normal(k2, (num, 2), dtype)


def gmm25_observables(x):
  return {"x1": x[..., 0], "x2": x[..., 1], "sq_norm": jnp.sum(x * x, axis=-1)}


def gmm25_exact():
  mean_sq = float(np.mean(np.square(_GRID)))  # E[m_a^2] over the grid
  return {"x1": 0.0, "x2": 0.0, "sq_norm": 2.0 * (mean_sq + _GMM_VAR)}


# ======================================================================== funnel
def funnel_log_prob(x, sigma):
  """(..., d) -> (...): N(x_0; 0, sigma^2) prod_i N(x_i; 0, e^{x_0})."""
  x0 = x[..., 0]
  rest = x[..., 1:]
  k = rest.shape[-1]
  lp0 = -0.5 * (x0 / sigma) ** 2 - math.log(sigma) - 0.5 * _LOG_2PI
  lpr = -0.5 * jnp.sum(rest * rest, axis=-1) * jnp.exp(-x0) - 0.5 * k * (x0 + _LOG_2PI)
  return lp0 + lpr


def funnel_sample(key, num, d, sigma, dtype):
  k1, k2 = jax.random.split(key)
  x0 = sigma * jax.random.normal(k1, (num, 1), dtype)
  rest = jnp.exp(0.5 * x0) * jax.random.normal(k2, (num, d - 1), dtype)
  return jnp.concatenate([x0, rest], axis=-1)


def funnel_observables(x):
  return {"x0": x[..., 0], "x0_sq": x[..., 0] ** 2, "x1_sq": x[..., 1] ** 2}


def funnel_exact(sigma):
  # E[x_1^2] = E[e^{x_0}] = e^{sigma^2 / 2}.
  return {"x0": 0.0, "x0_sq": sigma**2, "x1_sq": math.exp(0.5 * sigma**2)}


# ======================================================================== manywell
def _well(x):
  """Unnormalized log-density of the quartic coordinate: -x^4 + 6 x^2 + x / 2."""
  return -x**4 + 6.0 * x**2 + 0.5 * x


def manywell_log_prob(x):
  """(..., d) -> (...), d even."""
  a = x[..., 0::2]
  b = x[..., 1::2]
  return jnp.sum(_well(a) - 0.5 * b * b, axis=-1)


@functools.lru_cache(maxsize=None)
def manywell_moments():
  """(log Z_1, E x, E x^2, P(x > 0)) of the quartic coordinate, mpmath 30 digits."""
  with mpmath.workdps(30):
    f = lambda x: mpmath.exp(-x**4 + 6 * x**2 + x / 2)
    pts = [-mpmath.inf, -1.7, 0, 1.7, mpmath.inf]
    z = mpmath.quad(f, pts)
    m1 = mpmath.quad(lambda x: x * f(x), pts) / z
    m2 = mpmath.quad(lambda x: x * x * f(x), pts) / z
    pos = mpmath.quad(f, [0, 1.7, mpmath.inf]) / z
    return float(mpmath.log(z)), float(m1), float(m2), float(pos)


def manywell_log_z(d: int) -> float:
  return 0.5 * d * (manywell_moments()[0] + 0.5 * _LOG_2PI)


def manywell_observables(x):
  a = x[..., 0::2]
  b = x[..., 1::2]
  return {"x1_mean": jnp.mean(a, axis=-1), "x1_sq": jnp.mean(a * a, axis=-1),
          "x1_pos_frac": jnp.mean((a > 0).astype(a.dtype), axis=-1),
          "x2_sq": jnp.mean(b * b, axis=-1)}


def manywell_exact():
  _, m1, m2, pos = manywell_moments()
  return {"x1_mean": m1, "x1_sq": m2, "x1_pos_frac": pos, "x2_sq": 1.0}


@functools.lru_cache(maxsize=None)
def _well_envelope(cells: int = 4096, half_width: float = 5.0):
  """(edges (cells+1,), log max of the well on each cell (cells,)) in float64."""
  edges = np.linspace(-half_width, half_width, cells + 1)
  fa = -edges**4 + 6.0 * edges**2 + 0.5 * edges
  top = np.maximum(fa[:-1], fa[1:])
  # Critical points: roots of f'(x) = -4 x^3 + 12 x + 1/2 (three real roots).
  crit = np.real(np.roots([-4.0, 0.0, 12.0, 0.5]))
  for c in crit:
    k = np.searchsorted(edges, c) - 1
    if 0 <= k < cells:
      top[k] = max(top[k], -c**4 + 6.0 * c**2 + 0.5 * c)
  return edges, top + 1e-12  # margin above float64 round-off of f


def sample_well(rng, num: int) -> np.ndarray:
  """num exact draws with density prop. to exp(-x^4 + 6 x^2 + x/2) (float64 numpy)."""
  edges, top = _well_envelope()
  w = np.diff(edges) * np.exp(top - top.max())
  p = w / w.sum()
  out, have = [], 0
  while have < num:
    m = int(1.05 * (num - have)) + 16
    k = rng.choice(p.shape[0], size=m, p=p)
    x = edges[k] + (edges[k + 1] - edges[k]) * rng.uniform(size=m)
    fx = -x**4 + 6.0 * x**2 + 0.5 * x
    keep = np.log(rng.uniform(size=m)) < fx - top[k]
    out.append(x[keep])
    have += int(keep.sum())
  return np.concatenate(out)[:num]


def manywell_sample_np(rng, num: int, d: int) -> np.ndarray:
  x = np.empty((num, d))
  x[:, 0::2] = sample_well(rng, num * (d // 2)).reshape(num, d // 2)
  x[:, 1::2] = rng.standard_normal((num, d // 2))
  return x
