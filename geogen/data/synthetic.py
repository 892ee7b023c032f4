"""Synthetic distributions on manifolds with exact sampling and exact log-densities.

They are the ground truth for measuring a model's KL divergence (test NLL minus the exact
entropy) and serve as GFlowNet targets.  Every density is w.r.t. the Riemannian volume of
the manifold's metric (DESIGN.md section 1).

Kinds (``config.data.name = 'synthetic/<kind>'``):

* ``vmf_mixture`` on ``Sphere(n)``: mixture of von Mises-Fisher laws
  p_i(x) = C_n(kappa) exp(kappa <mu_i, x>), C_n(kappa) = kappa^nu / ((2 pi)^(nu+1) I_nu(kappa)),
  nu = (n - 1) / 2.  Exact sampling: Wood's rejection algorithm for t = <mu, x>, uniform
  tangent direction.
* ``von_mises`` on ``Torus(n)``: mixture of products of von Mises laws,
  p_i(x) = prod_d exp(kappa cos(x_d - m_id)) / (2 pi I_0(kappa)).  Exact sampling: numpy's
  von Mises sampler (Best-Fisher rejection).
* ``wrapped_normal`` on ``Hyperbolic(n)``: mixture of push-forwards by exp_mu of isotropic
  tangent Gaussians N(0, s^2 I_n) at mu_i:
  p_i(x) = N(log_mu x) / (sinh r / r)^(n-1), r = d(mu_i, x) (exp_mu is a diffeomorphism;
  r from `Hyperbolic.dist`, accurate far from the origin too).  Exact sampling: tangent
  Gaussian at the origin, parallel transport to mu, exp (float64 closed forms).
* ``su_mixture`` on ``SpecialUnitary(n)``: mixture of p_i(U) = exp(beta Re tr(C_i^H U)) /
  (Z(beta) vol(SU(n))) with Z(beta) = E_Haar exp(beta Re tr U) from the Bessel-determinant
  series Z = sum_q det[I_{q+j-k}(beta)]_{j,k} (truncated with a rigorous tail bound).
  Exact sampling of W = C^H U by rejection, from Haar or from exp of a two-Gaussian mixture
  on su(n) (whichever has the higher exact acceptance rate; the latter accepts 85-95% on
  SU(3) for beta in [1, 40], ~44% on SU(4) at beta = 2-4), then U = C W.

Entropy: closed form for one component (vMF, von Mises, SU; 1-D quadrature for the wrapped
normal), else Monte Carlo with the exact log-density stratified by component, with its s.e.

All normalizers are computed once in float64 (numpy / scipy) as Python floats; `log_prob`
is pure JAX (jit / vmap / grad), in the dtype of its input.  Sampling runs in float64 numpy
(seeded from the JAX key, so it is deterministic) and returns points in M's dtype.
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy import integrate, optimize, special

from manifolds import _numerics as nx
from manifolds.flat import Torus
from manifolds.hyperbolic import Hyperbolic
from manifolds.special_unitary import SpecialUnitary
from manifolds.sphere import Sphere

_HI = jax.lax.Precision.HIGHEST
_LOG_2PI = math.log(2.0 * math.pi)

# kind -> (manifold class, human readable manifold name)
KINDS = {
    "vmf_mixture": (Sphere, "Sphere(n) ('sphere(n)')"),
    "von_mises": (Torus, "Torus(n) ('torus(n)')"),
    "wrapped_normal": (Hyperbolic, "Hyperbolic(n) ('hyperbolic(n)')"),
    "su_mixture": (SpecialUnitary, "SpecialUnitary(n) ('su(n)')"),
}
NAMES = tuple(f"synthetic/{k}" for k in KINDS)


def default_config() -> ml_collections.ConfigDict:
  """Parameters of the synthetic datasets (``config.data.synthetic``)."""
  cfg = ml_collections.ConfigDict()
  cfg.kind = ""               # '' : the kind named in data.name ('synthetic/<kind>');
                              #   non-empty: must agree with data.name
  cfg.num_components = 4      # mixture components (equal weights)
  cfg.concentration = 10.0    # kappa of vmf_mixture and von_mises
  cfg.scale = 0.5             # wrapped_normal: std of the tangent Gaussian
  cfg.spread = 1.5            # wrapped_normal: distance of the component means from the origin
  cfg.beta = 4.0              # su_mixture: inverse temperature beta
  cfg.seed = 0                # seed of the component placement (-1: use the key given to make)
  return cfg


default_synthetic_config = default_config


# ======================================================================== scalar numerics
def log_bessel_iv(nu: float, x: float) -> float:
  """log I_nu(x) for real nu >= 0, x >= 0, accurate in float64 for any size of nu and x.

  Uses the exponentially scaled scipy ``ive``; where it underflows (nu^2 >> x) the power
  series is summed in log space (it converges fast exactly there).
  """
  nu, x = float(nu), float(x)
  if x == 0.0:
    return 0.0 if nu == 0.0 else -math.inf
  v = float(special.ive(nu, x))
  if math.isfinite(v) and v > 1e-280:
    return math.log(v) + x
  k = np.arange(int(2.0 * x) + 80, dtype=np.float64)
  terms = 2.0 * k * math.log(x / 2.0) - special.gammaln(k + 1.0) - special.gammaln(nu + k + 1.0)
  return nu * math.log(x / 2.0) + float(special.logsumexp(terms))


def bessel_ratio(nu: float, x: float) -> float:
  """I_{nu+1}(x) / I_nu(x)."""
  if x == 0.0:
    return 0.0
  return math.exp(log_bessel_iv(nu + 1.0, x) - log_bessel_iv(nu, x))


def log_sphere_volume(n: int) -> float:
  """log vol(S^n) = log(2 pi^((n+1)/2) / Gamma((n+1)/2))."""
  return math.log(2.0) + 0.5 * (n + 1) * math.log(math.pi) - math.lgamma(0.5 * (n + 1))


def vmf_log_normalizer(n: int, kappa: float) -> float:
  """log C_n(kappa) of the vMF density C exp(kappa <mu, x>) w.r.t. the volume of S^n."""
  nu = 0.5 * (n - 1)
  if kappa == 0.0:
    return -log_sphere_volume(n)
  return nu * math.log(kappa) - (nu + 1.0) * _LOG_2PI - log_bessel_iv(nu, kappa)


def vmf_mean_resultant(n: int, kappa: float) -> float:
  """A_n(kappa) = E<mu, X> = I_{(n+1)/2}(kappa) / I_{(n-1)/2}(kappa) for vMF on S^n."""
  return bessel_ratio(0.5 * (n - 1), kappa)


def su_log_volume(n: int) -> float:
  """log vol(SU(n)) for the metric <X, Y> = Re tr(X^H Y):
  sqrt(n) (2 pi)^((n^2+n-2)/2) / prod_{k<n} k!."""
  return (0.5 * math.log(n) + 0.5 * (n * n + n - 2) * _LOG_2PI
          - sum(math.lgamma(k + 1.0) for k in range(1, n)))


def su_log_partition(n: int, beta: float, rtol: float = 1e-17):
  """Z(beta) = E_Haar exp(beta Re tr U) on SU(n) by the Bessel-determinant series.

  Z = sum_{q in Z} D_q, D_q = det[I_{q+j-k}(beta)]_{j,k=1..n} (D_{-q} = D_q).  The series is
  summed with scaled Bessel functions (D_q e^{-n beta}); it stops once a rigorous bound on the
  tail is below rtol times the sum: I_m(b) e^{-b} <= (b/2)^m / m! and Hadamard's inequality
  give |D_q| e^{-n beta} <= (sqrt(n) (b/2)^m / m!)^n with m = |q| - n + 1.

  Returns (log Z, d log Z / d beta, bound on the relative truncation error).
  """
  beta = float(beta)
  if beta < 0:
    raise ValueError(f"su_mixture needs beta >= 0, got {beta}")
  if beta == 0.0:
    return 0.0, 0.0, 0.0
  jk = np.arange(n)[:, None] - np.arange(n)[None, :]

  def term(q):
    m = q + jk
    a = special.ive(m, beta)
    da = 0.5 * (special.ive(m - 1, beta) + special.ive(m + 1, beta)) - a
    d = np.linalg.det(a)
    # Jacobi's formula by rows (stable when a is nearly singular).
    dd = 0.0
    for r in range(n):
      b = a.copy()
      b[r] = da[r]
      dd += np.linalg.det(b)
    return d, dd

  def log_tail_bound(q0):
    # sum over q >= q0 (and the mirror image) of the Hadamard bound, q0 >= n.
    m = np.arange(q0 - n + 1, q0 - n + 1 + 400, dtype=np.float64)
    lb = n * (0.5 * math.log(n) + m * math.log(beta / 2.0) - special.gammaln(m + 1.0))
    return math.log(2.0) + float(special.logsumexp(lb))

  s, ds = term(0)
  q = 1
  while True:
    d, dd = term(q)
    s += 2.0 * d
    ds += 2.0 * dd
    if q + 1 >= n:
      lb = log_tail_bound(q + 1)
      if lb < math.log(rtol * s) or q > 10000:
        break
    q += 1
  return math.log(s) + n * beta, n + ds / s, math.exp(lb) / s


def _log_sinhc_np(r):
  """log(sinh r / r) in float64 numpy, stable for all r >= 0."""
  r = np.asarray(r, np.float64)
  small = r < 1e-3
  rs = np.where(small, 1.0, r)
  large = rs + np.log1p(-np.exp(-2.0 * rs)) - math.log(2.0) - np.log(rs)
  s = r * r
  return np.where(small, s / 6.0 - s * s / 180.0, large)


# ======================================================================== random helpers
def _np_rng(key) -> np.random.Generator:
  """A numpy Generator seeded (deterministically) from a JAX PRNG key."""
  return np.random.default_rng(list(_key_tuple(key)))


def _haar_unitary(rng, m, n):
  """m Haar-distributed U(n) matrices (QR of a Ginibre matrix with the phase fix)."""
  z = (rng.standard_normal((m, n, n)) + 1j * rng.standard_normal((m, n, n))) / math.sqrt(2.0)
  q, r = np.linalg.qr(z)
  d = np.diagonal(r, axis1=-2, axis2=-1)
  return q * (d / np.abs(d))[:, None, :]


def _haar_su(rng, m, n):
  """m Haar SU(n) matrices: Haar U(n) with the first column multiplied by conj(det).

  The map is left-equivariant (det(VQ) = det Q for V in SU(n)), so the law is Haar on SU(n).
  """
  q = _haar_unitary(rng, m, n)
  det = np.linalg.det(q)
  q[:, :, 0] *= np.conj(det)[:, None]
  return q


def _uniform_sphere(rng, m, n):
  """m uniform points on S^n in R^{n+1}."""
  g = rng.standard_normal((m, n + 1))
  return g / np.linalg.norm(g, axis=-1, keepdims=True)


def _wrap_np(a):
  return np.mod(a + math.pi, 2.0 * math.pi) - math.pi


def _as_component_array(value, k, what):
  a = np.asarray(value, dtype=np.float64)
  if a.ndim == 0:
    a = np.full((k,), float(a))
  if a.shape != (k,):
    raise ValueError(f"{what} must be a scalar or have shape ({k},), got shape {a.shape}")
  return a


# ======================================================================== base class
class SyntheticDistribution:
  """A mixture sum_i w_i p_i on a manifold with exact sampling and log-density.

  Attributes:
    name: 'synthetic/<kind>'.
    manifold: the manifold.
    weights: (K,) mixture weights (sum 1).
    means: (K, *M.shape) component locations (mu_i, m_i or C_i).

  Subclasses implement `_component_log_prob` (JAX) and `_sample_component` (numpy float64)
  and, where a closed form exists, `_component_entropy`.
  """

  kind: str = ""

  def __init__(self, manifold, means, weights=None):
    self.manifold = manifold
    self.means = np.asarray(means)
    k = self.means.shape[0]
    if weights is None:
      weights = np.full((k,), 1.0 / k)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (k,) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
      raise ValueError(f"weights must be {k} non-negative finite numbers, got {weights!r}")
    self.weights = w / w.sum()
    self.log_weights = np.log(np.maximum(self.weights, 1e-300))
    self._entropy_cache = {}
    self._log_prob_jit = jax.jit(self._log_prob)

  @property
  def name(self) -> str:
    return f"synthetic/{self.kind}"

  @property
  def num_components(self) -> int:
    return int(self.weights.shape[0])

  def __repr__(self):
    return f"{type(self).__name__}({self.name} on {self.manifold.spec}, K={self.num_components})"

  # ---------------------------------------------------------------- density
  def _component_log_prob(self, x):
    """Normalized log p_i(x).  (..., *shape) -> (..., K)."""
    raise NotImplementedError

  def component_log_prob(self, x):
    """log p_i(x) of every component (w.r.t. Riemannian volume).  -> (..., K)."""
    x = jnp.asarray(x)
    self.manifold.batch_shape(x)
    return self._component_log_prob(x)

  def _log_prob(self, x):
    lp = self._component_log_prob(x)
    lw = jnp.asarray(self.log_weights, lp.dtype)
    return jax.nn.logsumexp(lp + lw, axis=-1)

  def log_prob(self, x):
    """Exact log-density of the mixture w.r.t. Riemannian volume.  (..., *shape) -> (...).

    Pure JAX (jit / vmap / grad); the result has the real dtype of x.  Compiled once per
    input shape and dtype, so eager calls are fast too.
    """
    x = jnp.asarray(x)
    self.manifold.batch_shape(x)
    return self._log_prob_jit(x)

  # ---------------------------------------------------------------- sampling
  def _sample_component(self, rng, i, m):
    """m exact draws from component i, numpy float64 / complex128.  -> (m, *shape)."""
    raise NotImplementedError

  def _out_dtype(self, dtype):
    return self.manifold._as_point_dtype(dtype)

  def sample_component(self, key, i, num, dtype=None):
    """num exact draws from component i.  -> (num, *M.shape) in M's dtype (or `dtype`)."""
    x = self._sample_component(_np_rng(key), int(i), int(num))
    return jnp.asarray(x, self._out_dtype(dtype))

  def sample(self, key, num: int, dtype=None):
    """num exact draws from the mixture (shuffled).  -> (num, *M.shape) jax array."""
    num = int(num)
    if num < 0:
      raise ValueError(f"num must be >= 0, got {num}")
    rng = _np_rng(key)
    counts = rng.multinomial(num, self.weights)
    parts = [self._sample_component(rng, i, int(c)) for i, c in enumerate(counts) if c > 0]
    if parts:
      x = np.concatenate(parts, axis=0)[rng.permutation(num)]
    else:
      x = np.zeros((0,) + tuple(self.manifold.shape))
    return jnp.asarray(x, self._out_dtype(dtype))

  # ---------------------------------------------------------------- entropy
  def _component_entropy(self) -> Optional[float]:
    """Closed-form entropy of a single component (K = 1), or None."""
    return None

  def entropy(self, key=None, num: int = 100_000, batch: int = 20_000):
    """Differential entropy -E log p (nats, w.r.t. Riemannian volume).

    -> (value, standard_error): closed form (s.e. 0.0) for a single component where one
    exists; otherwise Monte Carlo with the exact log-density, stratified by component
    (num * w_i draws from component i), with its standard error.  key=None uses a fixed key.
    """
    if self.num_components == 1:
      h = self._component_entropy()
      if h is not None:
        return float(h), 0.0
    cache_key = (None if key is None else _key_tuple(key), int(num))
    if cache_key in self._entropy_cache:
      return self._entropy_cache[cache_key]
    rng = _np_rng(jax.random.PRNGKey(0) if key is None else key)
    logp = self.log_prob
    mean, var = 0.0, 0.0
    for i, w in enumerate(self.weights):
      m = max(int(round(num * w)), 2)
      vals = []
      for start in range(0, m, batch):
        x = self._sample_component(rng, i, min(batch, m - start))
        x = jnp.asarray(x, self.manifold.dtype)
        vals.append(np.asarray(logp(x), np.float64))
      v = -np.concatenate(vals)
      mean += w * float(v.mean())
      var += w * w * float(v.var(ddof=1)) / m
    out = (mean, math.sqrt(var))
    self._entropy_cache[cache_key] = out
    return out


def _key_tuple(key) -> tuple:
  """The raw bits of a JAX PRNG key (typed or uint32) as a hashable tuple."""
  try:
    data = jax.random.key_data(key)
  except (TypeError, ValueError):
    data = key
  return tuple(np.asarray(data, dtype=np.uint32).ravel().tolist())


# ======================================================================== vMF on S^n
class VMFMixture(SyntheticDistribution):
  """Mixture of von Mises-Fisher laws on Sphere(n).  means: (K, n+1) unit vectors."""

  kind = "vmf_mixture"

  def __init__(self, manifold, means, kappa, weights=None):
    _require(manifold, self.kind)
    means = np.asarray(means, np.float64)
    if means.ndim != 2 or means.shape[1] != manifold.n + 1:
      raise ValueError(f"vmf means must have shape (K, {manifold.n + 1}), got {means.shape}")
    means = means / np.linalg.norm(means, axis=-1, keepdims=True)
    super().__init__(manifold, means, weights)
    self.kappa = _as_component_array(kappa, self.num_components, "kappa")
    if np.any(self.kappa < 0) or not np.all(np.isfinite(self.kappa)):
      raise ValueError(f"vmf kappa must be finite and >= 0, got {kappa!r}")
    n = manifold.n
    # log p_i = (log C + kappa) + kappa (<mu, x> - 1): no overflow for large kappa.
    self.log_norm = np.array([vmf_log_normalizer(n, k) for k in self.kappa])
    self.mean_resultant = np.array([vmf_mean_resultant(n, k) for k in self.kappa])

  def _component_log_prob(self, x):
    dt = nx.real_dtype(x)
    mu = jnp.asarray(self.means, dt)
    kappa = jnp.asarray(self.kappa, dt)
    c = jnp.asarray(self.log_norm + self.kappa, dt)
    t = jnp.einsum("...d,kd->...k", x, mu, precision=_HI)
    return c + kappa * (t - 1.0)

  def _sample_component(self, rng, i, m):
    n = self.manifold.n
    t, sin_t = sample_vmf_cosine(rng, n, float(self.kappa[i]), m)
    mu = self.means[i]
    g = rng.standard_normal((m, n + 1))
    g -= (g @ mu)[:, None] * mu[None, :]
    v = g / np.linalg.norm(g, axis=-1, keepdims=True)
    x = t[:, None] * mu[None, :] + sin_t[:, None] * v
    return x / np.linalg.norm(x, axis=-1, keepdims=True)

  def _component_entropy(self):
    return float(-self.log_norm[0] - self.kappa[0] * self.mean_resultant[0])


def sample_vmf_cosine(rng, n, kappa, m):
  """m exact draws of t = <mu, X> for X ~ vMF(mu, kappa) on S^n (Wood 1994).

  t has density proportional to exp(kappa t) (1 - t^2)^((n-2)/2) on [-1, 1].  Proposal
  t = (1 - (1+b) z) / (1 - (1-b) z), z ~ Beta(n/2, n/2).  Returns (t, sqrt(1 - t^2)), the
  latter from 1 - t^2 = 4 b z (1 - z) / (1 - (1-b) z)^2 (no cancellation for large kappa).
  """
  if m == 0:
    return np.empty((0,)), np.empty((0,))
  b = n / (2.0 * kappa + math.sqrt(4.0 * kappa * kappa + n * n))
  x0 = (1.0 - b) / (1.0 + b)
  log1mx02 = math.log(4.0 * b) - 2.0 * math.log1p(b)        # log(1 - x0^2)
  ts, ss, have = [], [], 0
  while have < m:
    k = int(1.2 * (m - have)) + 16
    z = rng.beta(0.5 * n, 0.5 * n, size=k)
    u = rng.uniform(size=k)
    den = 1.0 - (1.0 - b) * z
    t = (1.0 - (1.0 + b) * z) / den
    # accept iff kappa t + n log(1 - x0 t) - (kappa x0 + n log(1 - x0^2)) >= log u
    keep = kappa * (t - x0) + n * (np.log1p(-x0 * t) - log1mx02) >= np.log(u)
    ts.append(t[keep])
    ss.append(np.sqrt(4.0 * b * z[keep] * (1.0 - z[keep])) / den[keep])
    have += int(np.sum(keep))
  return np.concatenate(ts)[:m], np.concatenate(ss)[:m]


# ======================================================================== von Mises on T^n
class VonMisesMixture(SyntheticDistribution):
  """Mixture of products of von Mises laws on Torus(n).  means: (K, n) angles."""

  kind = "von_mises"

  def __init__(self, manifold, means, kappa, weights=None):
    _require(manifold, self.kind)
    means = np.asarray(means, np.float64)
    if means.ndim != 2 or means.shape[1] != manifold.n:
      raise ValueError(f"von_mises means must have shape (K, {manifold.n}), got {means.shape}")
    super().__init__(manifold, _wrap_np(means), weights)
    self.kappa = _as_component_array(kappa, self.num_components, "kappa")
    if np.any(self.kappa < 0) or not np.all(np.isfinite(self.kappa)):
      raise ValueError(f"von_mises kappa must be finite and >= 0, got {kappa!r}")
    # log p_i = -n log(2 pi I0(kappa)) + kappa sum cos = -n log(2 pi ive0) + kappa sum (cos - 1)
    self.log_norm_scaled = -manifold.n * (_LOG_2PI + np.log(special.i0e(self.kappa)))

  def _component_log_prob(self, x):
    dt = nx.real_dtype(x)
    m = jnp.asarray(self.means, dt)
    kappa = jnp.asarray(self.kappa, dt)
    c = jnp.asarray(self.log_norm_scaled, dt)
    s = jnp.sum(jnp.cos(x[..., None, :] - m) - 1.0, axis=-1)
    return c + kappa * s

  def _sample_component(self, rng, i, m):
    a = rng.vonmises(self.means[i][None, :], float(self.kappa[i]), size=(m, self.manifold.n))
    return _wrap_np(a)

  def _component_entropy(self):
    k = float(self.kappa[0])
    ratio = float(special.i1e(k) / special.i0e(k))
    return self.manifold.n * (_LOG_2PI + math.log(special.i0e(k)) + k - k * ratio)


# ======================================================================== wrapped normal on H^n
class WrappedNormalMixture(SyntheticDistribution):
  """Mixture of wrapped (push-forward by exp_mu) isotropic normals on Hyperbolic(n).

  means: (K, n+1) points of the hyperboloid (x0 > 0); scale: tangent standard deviation s.
  The law of component i is exp_{mu_i}(v), v ~ N(0, s^2 I) in T_{mu_i} H^n, so
  log p_i(x) = -n/2 log(2 pi s^2) - r^2 / (2 s^2) - (n - 1) log(sinh r / r), r = d(mu_i, x)
  (the Jacobian of exp in geodesic polar coordinates is (sinh r / r)^(n-1)).
  """

  kind = "wrapped_normal"

  def __init__(self, manifold, means, scale, weights=None):
    _require(manifold, self.kind)
    means = np.asarray(means, np.float64)
    n = manifold.n
    if means.ndim != 2 or means.shape[1] != n + 1:
      raise ValueError(f"wrapped_normal means must have shape (K, {n + 1}), got {means.shape}")
    means = means.copy()
    means[:, 0] = np.sqrt(1.0 + np.sum(means[:, 1:] ** 2, axis=-1))  # onto the hyperboloid
    super().__init__(manifold, means, weights)
    self.scale = _as_component_array(scale, self.num_components, "scale")
    if np.any(self.scale <= 0) or not np.all(np.isfinite(self.scale)):
      raise ValueError(f"wrapped_normal scale must be finite and > 0, got {scale!r}")

  def _component_log_prob(self, x):
    dt = nx.real_dtype(x)
    n = self.manifold.n
    mu = jnp.asarray(self.means, dt)
    s2 = jnp.asarray(self.scale**2, dt)
    # Hyperbolic.dist is cancellation-free also far from the origin (spatial-part formulas)
    # and has a finite gradient at x = mu.
    r = self.manifold.dist(x[..., None, :], mu)
    r2 = r * r
    c = jnp.asarray(-0.5 * n * np.log(2.0 * math.pi * self.scale**2), dt)
    return c - r2 / (2.0 * s2) - (n - 1) * nx.log_sinhc(r2)

  def _sample_component(self, rng, i, m):
    n = self.manifold.n
    mu = self.means[i]
    z = rng.standard_normal((m, n)) * self.scale[i]
    # Parallel transport of (0, z) from the origin o to mu:
    # v + <mu, v>_L / (1 + mu0) (o + mu).
    coef = (z @ mu[1:]) / (1.0 + mu[0])
    v = np.concatenate([np.zeros((m, 1)), z], axis=-1) + coef[:, None] * (
        mu[None, :] + np.eye(1, n + 1)[0][None, :])
    r = np.linalg.norm(z, axis=-1)
    sinhc = np.where(r < 1e-8, 1.0, np.sinh(r) / np.where(r < 1e-8, 1.0, r))
    y = np.cosh(r)[:, None] * mu[None, :] + sinhc[:, None] * v
    y[:, 0] = np.sqrt(1.0 + np.sum(y[:, 1:] ** 2, axis=-1))
    return y

  def _component_entropy(self):
    n, s = self.manifold.n, float(self.scale[0])
    h = 0.5 * n * math.log(2.0 * math.pi * math.e * s * s)
    if n > 1:
      # E log(sinh r / r) with r = s * chi_n, by adaptive quadrature.
      def f(u):
        return float(_log_sinhc_np(s * u)) * math.exp(
            (n - 1) * math.log(max(u, 1e-300)) - 0.5 * u * u
            - (0.5 * n - 1) * math.log(2.0) - math.lgamma(0.5 * n))
      val, _ = integrate.quad(f, 0.0, math.inf, epsabs=1e-13, epsrel=1e-12, limit=200)
      h += (n - 1) * val
    return h


def hyperbolic_point(direction, radius):
  """The point exp_o(radius * direction) of the hyperboloid, o = (1, 0, ..., 0).

  direction: (..., n) unit vectors; radius: (...) -> (..., n+1), numpy float64.
  """
  d = np.asarray(direction, np.float64)
  r = np.broadcast_to(np.asarray(radius, np.float64), d.shape[:-1])[..., None]
  return np.concatenate([np.cosh(r), np.sinh(r) * d], axis=-1)


# ======================================================================== SU(n)
class _SUConcentratedSampler:
  """Exact sampler of W ~ exp(beta Re tr W) dHaar(W) on SU(n).

  Two exact rejection schemes; the one with the higher exact acceptance rate is used.

  * 'haar': W ~ Haar, accept with probability exp(beta (Re tr W - n)).  Acceptance
    Z(beta) e^{-n beta}: good for small beta only.
  * 'gaussian': W = exp(iH), H drawn from a mixture of Gaussians on traceless Hermitian
    matrices, sum_a p_a N(0, sigma_a^2 I), sigma_a^2 = 1 / (c_a beta) per metric coordinate.
    Only H whose eigenvalues x_k spread less than 2 pi are kept: there exp is one-to-one onto
    the regular elements (a full-measure set).  In eigenvalue coordinates (Weyl integration
    on the group and on the Lie algebra; sinc^2 is the Jacobian of exp) the target over the
    proposal is, up to a constant,
        r(x) = exp(beta sum_k (cos x_k - 1)) prod_{j<k} sinc^2((x_j - x_k) / 2)
               / sum_a p_a (c_a beta)^((n^2-1)/2) exp(-c_a beta |x|^2 / 2).
    A narrow component (c ~ 1) matches the peak, a wide one (c < 1) covers the tails where
    cos x - 1 > -x^2/2.  M = sup r over the region is found numerically (grid + Nelder-Mead),
    and every proposal is checked against it (a proposal above M raises M and restarts the
    draw, so the scheme stays exact).  The exact acceptance is
        n! (2 pi)^((n-1)/2) Z e^{-n beta} sqrt(n) / (prod_{j<=n} j! M)
    (Mehta's integral gives the Gaussian normalizer).
  """

  # candidate proposals: (c_narrow, c_wide, p_narrow); p = 1 is a single Gaussian
  _C_NARROW = (0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.7)
  _C_WIDE = (0.15, 0.25, 0.35, 0.45, 0.55, 0.65)
  _P_NARROW = (0.5, 0.7, 0.85, 0.95)
  _C_SINGLE = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

  def __init__(self, n, beta):
    self.n, self.beta = int(n), float(beta)
    self._iu = np.triu_indices(self.n, 1)
    self.log_z, self.dlog_z, self.tail_bound = su_log_partition(self.n, self.beta)
    self.haar_acceptance = math.exp(self.log_z - self.n * self.beta)
    self.method, self.acceptance = "haar", self.haar_acceptance
    self.cs = self.ps = self.log_m = None
    if self.beta > 0:
      cands = [((c,), (1.0,)) for c in self._C_SINGLE]
      cands += [((c1, c2), (p, 1.0 - p)) for c1 in self._C_NARROW for c2 in self._C_WIDE
                for p in self._P_NARROW]
      t, sq = self._target_terms(self._full(self._grid(refine=False)))
      scored = sorted(((self._acceptance(float(np.max(t - self._log_q(sq, cs, ps)))), cs, ps)
                       for cs, ps in cands), key=lambda a: -a[0])
      fine = self._grid(refine=True)
      best = None
      for _, cs, ps in scored[:3]:
        log_m = self._sup_log_ratio(cs, ps, fine)
        acc = self._acceptance(log_m)
        if best is None or acc > best[0]:
          best = (acc, cs, ps, log_m)
      if best[0] > self.haar_acceptance:
        self.method = "gaussian"
        self.acceptance, self.cs, self.ps, self.log_m = best

  # -------------------------------------------------------------- gaussian proposal pieces
  def _target_terms(self, x):
    """(log target up to a constant (-inf outside the region), |x|^2) for x (..., n)."""
    x = np.asarray(x, np.float64)
    iu = self._iu
    d = (x[..., iu[0]] - x[..., iu[1]]) / 2.0
    with np.errstate(divide="ignore"):
      t = self.beta * np.sum(np.cos(x) - 1.0, axis=-1) + 2.0 * np.sum(
          np.log(np.abs(np.sinc(d / math.pi))), axis=-1)
    spread = np.max(x, axis=-1) - np.min(x, axis=-1)
    return np.where(spread < 2.0 * math.pi, t, -np.inf), np.sum(x * x, axis=-1)

  def _log_q(self, sq, cs, ps):
    """log of the Gaussian-mixture proposal (up to the shared Mehta factor) at |x|^2 = sq."""
    n, b = self.n, self.beta
    terms = [math.log(p) + 0.5 * (n * n - 1) * math.log(c * b) - 0.5 * c * b * sq
             for c, p in zip(cs, ps)]
    out = terms[0]
    for t in terms[1:]:
      out = np.logaddexp(out, t)
    return out

  def log_ratio(self, x, cs=None, ps=None):
    """log r(x) for eigenvalues x (..., n) with sum 0; -inf outside the region."""
    cs = self.cs if cs is None else cs
    ps = self.ps if ps is None else ps
    t, sq = self._target_terms(x)
    return t - self._log_q(sq, cs, ps)

  def _grid(self, refine):
    """Points y (first n-1 eigenvalues) covering the region, including y = 0."""
    n = self.n
    half = 2.0 * math.pi * (n - 1) / n     # |x_k| < this on the region
    if n == 2:
      y = np.linspace(-half, half, 8001 if refine else 1001)[:, None]
    elif n == 3:
      g = np.linspace(-half, half, 401 if refine else 121)
      y = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    else:
      num = 200_000 if refine else 20_000
      y = np.random.default_rng(12345).uniform(-half, half, size=(num, n - 1))
      y = np.concatenate([np.zeros((1, n - 1)), y], axis=0)
    return y

  def _full(self, y):
    y = np.asarray(y, np.float64)
    return np.concatenate([y, -np.sum(y, axis=-1, keepdims=True)], axis=-1)

  def _sup_log_ratio(self, cs, ps, y):
    vals = self.log_ratio(self._full(y), cs, ps)
    best = float(np.max(vals))
    # Nelder-Mead from the best grid points, at most 6 distinct basins (0.3 apart).
    starts = []
    for idx in np.argsort(vals)[::-1][:400]:
      if vals[idx] < best - 2.0 or len(starts) == 6:
        break
      if all(np.max(np.abs(y[idx] - y0)) > 0.3 for y0 in starts):
        starts.append(y[idx])
    for y0 in starts:
      res = optimize.minimize(lambda yy: -float(self.log_ratio(self._full(yy), cs, ps)), y0,
                              method="Nelder-Mead",
                              options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 4000})
      if np.isfinite(res.fun):
        best = max(best, -float(res.fun))
    return best + 1e-9

  def _acceptance(self, log_m):
    n = self.n
    log_acc = (math.lgamma(n + 1.0) + 0.5 * (n - 1) * _LOG_2PI + self.log_z - n * self.beta
               + 0.5 * math.log(n) - sum(math.lgamma(j + 1.0) for j in range(1, n + 1))
               - log_m)
    return math.exp(log_acc)

  def _gaussian_proposal(self, rng, k):
    """k traceless Hermitian H from the Gaussian mixture.  -> (k, n, n) complex128."""
    n = self.n
    comp = rng.choice(len(self.ps), size=k, p=np.asarray(self.ps))
    s = np.sqrt(1.0 / (np.asarray(self.cs)[comp] * self.beta))[:, None, None]
    a = rng.standard_normal((k, n, n)) * (s / math.sqrt(2.0))
    b = rng.standard_normal((k, n, n)) * (s / math.sqrt(2.0))
    h = np.triu(a, 1) + 1j * np.triu(b, 1)
    h = h + np.conj(np.swapaxes(h, -1, -2))
    diag = rng.standard_normal((k, n)) * s[:, 0]
    diag -= diag.mean(axis=-1, keepdims=True)   # orthogonal projection onto trace 0
    idx = np.arange(n)
    h[:, idx, idx] = diag
    return h

  # -------------------------------------------------------------- sampling
  def sample(self, rng, m):
    """m exact draws of W, complex128 (m, n, n)."""
    n = self.n
    out, have = [], 0
    while have < m:
      k = int(1.15 * (m - have) / self.acceptance) + 32
      k = min(k, 200_000)
      if self.method == "haar":
        w = _haar_su(rng, k, n)
        re_tr = np.real(np.trace(w, axis1=-2, axis2=-1))
        keep = np.log(rng.uniform(size=k)) <= self.beta * (re_tr - n)
        acc = w[keep]
      else:
        h = self._gaussian_proposal(rng, k)
        x, v = np.linalg.eigh(h)
        lr = self.log_ratio(x)
        if np.any(lr > self.log_m):
          # The numerical sup was too low: raise it and start again (keeps exactness).
          self.log_m = float(np.max(lr)) + 1e-6
          self.acceptance = self._acceptance(self.log_m)
          out, have = [], 0
          continue
        keep = np.log(rng.uniform(size=k)) <= lr - self.log_m
        x, v = x[keep], v[keep]
        acc = (v * np.exp(1j * x)[:, None, :]) @ np.conj(np.swapaxes(v, -1, -2))
      out.append(acc)
      have += acc.shape[0]
    return np.concatenate(out, axis=0)[:m]


class SUMixture(SyntheticDistribution):
  """Mixture of p_i(U) = exp(beta Re tr(C_i^H U)) / (Z(beta) vol(SU(n))) on SpecialUnitary(n).

  means: (K, n, n) matrices C_i in SU(n).  Density w.r.t. Riemannian volume of the metric
  Re tr(X^H Y) (Haar density / vol(SU(n))).
  """

  kind = "su_mixture"

  def __init__(self, manifold, means, beta, weights=None):
    _require(manifold, self.kind)
    n = manifold.n
    means = np.asarray(means, np.complex128)
    if means.ndim != 3 or means.shape[1:] != (n, n):
      raise ValueError(f"su_mixture means must have shape (K, {n}, {n}), got {means.shape}")
    err_u = np.max(np.abs(means @ np.conj(np.swapaxes(means, -1, -2)) - np.eye(n)))
    err_d = np.max(np.abs(np.linalg.det(means) - 1.0))
    if err_u > 1e-6 or err_d > 1e-6:
      raise ValueError(f"su_mixture means must lie in SU({n}) (unitarity error {err_u:.2g}, "
                       f"det error {err_d:.2g})")
    super().__init__(manifold, means, weights)
    self.beta = _as_component_array(beta, self.num_components, "beta")
    if np.any(self.beta < 0) or not np.all(np.isfinite(self.beta)):
      raise ValueError(f"su_mixture beta must be finite and >= 0, got {beta!r}")
    self.log_volume = su_log_volume(n)
    self._samplers = {}
    for b in np.unique(self.beta):
      self._samplers[float(b)] = _SUConcentratedSampler(n, float(b))
    self.log_z = np.array([self._samplers[float(b)].log_z for b in self.beta])
    self.dlog_z = np.array([self._samplers[float(b)].dlog_z for b in self.beta])
    # log p_i = beta (Re tr(C^H U) - n) - (log Z - n beta) - log vol
    self.log_norm_scaled = -(self.log_z - n * self.beta) - self.log_volume

  def sampler(self, i):
    return self._samplers[float(self.beta[i])]

  def _component_log_prob(self, x):
    dt = nx.real_dtype(x)
    n = self.manifold.n
    c_re = jnp.asarray(self.means.real, dt)
    c_im = jnp.asarray(self.means.imag, dt)
    # Re tr(C^H U) = sum_ab Re(conj(C_ab) U_ab)
    re_tr = (jnp.einsum("...ab,kab->...k", jnp.real(x), c_re, precision=_HI)
             + jnp.einsum("...ab,kab->...k", jnp.imag(x), c_im, precision=_HI))
    beta = jnp.asarray(self.beta, dt)
    return jnp.asarray(self.log_norm_scaled, dt) + beta * (re_tr - n)

  def _sample_component(self, rng, i, m):
    w = self.sampler(i).sample(rng, m)
    return self.means[i][None] @ w

  def _component_entropy(self):
    b = float(self.beta[0])
    return float(self.log_z[0] + self.log_volume - b * self.dlog_z[0])


# ======================================================================== construction
def _require(manifold, kind):
  cls, what = KINDS[kind]
  if not isinstance(manifold, cls):
    spec = getattr(manifold, "spec", repr(manifold))
    raise ValueError(f"synthetic/{kind} lives on {what}, got manifold {spec!r}; "
                     f"choose another manifold or data.name (valid: {', '.join(NAMES)})")


def vmf_mixture(manifold, means, kappa, weights=None) -> VMFMixture:
  """vMF mixture on Sphere(n).  means (K, n+1), kappa scalar or (K,)."""
  return VMFMixture(manifold, means, kappa, weights)


def von_mises_product(manifold, means, kappa, weights=None) -> VonMisesMixture:
  """Mixture of von Mises products on Torus(n).  means (K, n), kappa scalar or (K,)."""
  return VonMisesMixture(manifold, means, kappa, weights)


def wrapped_normal_mixture(manifold, means, scale, weights=None) -> WrappedNormalMixture:
  """Wrapped-normal mixture on Hyperbolic(n).  means (K, n+1), scale scalar or (K,)."""
  return WrappedNormalMixture(manifold, means, scale, weights)


def su_mixture(manifold, means, beta, weights=None) -> SUMixture:
  """exp(beta Re tr(C_i^H U)) mixture on SpecialUnitary(n).  means (K, n, n) in SU(n)."""
  return SUMixture(manifold, means, beta, weights)


def parse_kind(name: str, cfg=None) -> str:
  """The kind of a data.name 'synthetic/<kind>' (or a bare '<kind>'), checked against cfg.kind."""
  if not isinstance(name, str):
    raise ValueError(f"synthetic dataset name must be a string, got {name!r}")
  kind = name.split("/", 1)[1] if name.startswith("synthetic/") else name
  cfg_kind = str(cfg.get("kind", "") or "") if cfg is not None else ""
  if kind in ("", "synthetic"):
    kind = cfg_kind
  elif cfg_kind and cfg_kind != kind:
    raise ValueError(f"data.name={name!r} names kind {kind!r} but data.synthetic.kind="
                     f"{cfg_kind!r}; leave data.synthetic.kind empty or make them agree")
  if kind not in KINDS:
    raise ValueError(f"unknown synthetic dataset {name!r}; valid: {', '.join(NAMES)}")
  return kind


def make(name: str, manifold, cfg=None, key=None) -> SyntheticDistribution:
  """Build the synthetic distribution `name` ('synthetic/<kind>') on `manifold`.

  cfg: a `default_config()`-like ConfigDict (missing keys take the defaults).  The component
  locations are drawn from cfg.seed (>= 0), or from `key` when cfg.seed == -1: means uniform
  on spheres, tori and SU(n) (Haar); on H^n at distance cfg.spread from the origin in a
  uniform direction.  Weights are equal.
  """
  full = default_config()
  if cfg is not None:
    unknown = set(cfg.keys()) - set(full.keys())
    if unknown:
      raise ValueError(f"unknown data.synthetic keys {sorted(unknown)}; valid: "
                       f"{', '.join(sorted(full.keys()))}")
    full.update(cfg)
  cfg = full
  kind = parse_kind(name, cfg)
  _require(manifold, kind)
  k = int(cfg.num_components)
  if k < 1 or k != cfg.num_components:
    raise ValueError(f"data.synthetic.num_components must be an integer >= 1, got "
                     f"{cfg.num_components!r}")
  if int(cfg.seed) >= 0:
    rng = np.random.default_rng(int(cfg.seed))
  elif key is not None:
    rng = _np_rng(key)
  else:
    raise ValueError("data.synthetic.seed = -1 needs a PRNG key to place the components")
  n = manifold.n
  if kind == "vmf_mixture":
    return vmf_mixture(manifold, _uniform_sphere(rng, k, n), float(cfg.concentration))
  if kind == "von_mises":
    return von_mises_product(manifold, rng.uniform(-math.pi, math.pi, (k, n)),
                             float(cfg.concentration))
  if kind == "wrapped_normal":
    means = hyperbolic_point(_uniform_sphere(rng, k, n - 1), np.full((k,), float(cfg.spread)))
    return wrapped_normal_mixture(manifold, means, float(cfg.scale))
  return su_mixture(manifold, _haar_su(rng, k, n), float(cfg.beta))
