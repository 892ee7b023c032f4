"""The `Manifold` base class: shared conventions for every manifold in geogen.

Conventions (DESIGN.md section 1)
---------------------------------
* A point has shape ``M.shape``; any array of shape ``(..., *M.shape)`` is a batch.
  Scalars per point (distances, log-densities) have the batch shape ``(...)``.
* Time ``t`` broadcasts against the batch axes.
* Tangent vectors are stored in ambient coordinates, with the shape of a point.
* Densities are w.r.t. the Riemannian volume of the stated metric.
* Heat kernel p_t: transition density of Brownian motion with generator
  (1/2) Laplace-Beltrami (so p_t = (2 pi t)^(-n/2) exp(-|x-y|^2 / 2t) in R^n).

Subclasses implement the geometry (``exp``, ``log``, ...) and the heat kernel;
this class supplies the generic pieces (batching helpers, ``norm``, ``check``,
``belongs``, a default autodiff ``heat_kernel_score``).
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from manifolds import _numerics as nx


class Manifold:
  """Abstract Riemannian manifold embedded in a real or complex ambient space.

  Attributes:
    dim: intrinsic dimension.
    shape: shape of one point (and of one tangent vector).
    is_complex: True when points are complex arrays (SU(n)).
    compact: True when the manifold has finite volume (uniform law exists).
  """

  dim: int
  shape: tuple
  is_complex: bool = False
  compact: bool = True

  # ------------------------------------------------------------------ naming
  @property
  def spec(self) -> str:
    """The `from_spec` string of this manifold, e.g. ``'sphere(2)'``."""
    raise NotImplementedError

  def __repr__(self) -> str:
    return f"{type(self).__name__}<{self.spec}>"

  def __eq__(self, other) -> bool:
    return isinstance(other, Manifold) and self.spec == other.spec

  def __hash__(self) -> int:
    return hash(self.spec)

  # ------------------------------------------------------------------ dtypes
  @property
  def dtype(self):
    """Default dtype of points: float32/float64 (complex64/complex128 for SU(n))
    following ``jax_enable_x64``."""
    x64 = jax.config.jax_enable_x64
    if self.is_complex:
      return jnp.complex128 if x64 else jnp.complex64
    return jnp.float64 if x64 else jnp.float32

  @property
  def dtype_kind(self) -> str:
    """``'complex'`` or ``'real'``."""
    return "complex" if self.is_complex else "real"

  def _as_point_dtype(self, dtype):
    """Map a requested (real) dtype to the dtype points use on this manifold."""
    if dtype is None:
      return self.dtype
    dtype = jnp.dtype(dtype)
    if self.is_complex and not jnp.issubdtype(dtype, jnp.complexfloating):
      return jnp.complex128 if dtype == jnp.float64 else jnp.complex64
    return dtype

  # ------------------------------------------------------------------ batching
  @property
  def _axes(self) -> tuple:
    """The point axes, counted from the end."""
    return tuple(range(-len(self.shape), 0))

  def batch_shape(self, x) -> tuple:
    """Batch shape of an array of points ``(..., *shape)``."""
    nd = len(self.shape)
    x_shape = jnp.shape(x)
    if tuple(x_shape[len(x_shape) - nd:]) != tuple(self.shape) or len(x_shape) < nd:
      raise ValueError(
          f"{self.spec}: expected an array of shape (..., {', '.join(map(str, self.shape))}),"
          f" got shape {tuple(x_shape)}")
    return tuple(x_shape[: len(x_shape) - nd])

  def _expand(self, s):
    """Append len(shape) singleton axes to a per-point scalar of batch shape."""
    s = jnp.asarray(s)
    return s.reshape(s.shape + (1,) * len(self.shape))

  def _sum(self, a):
    """Sum over the point axes."""
    return jnp.sum(a, axis=self._axes)

  def _real_t(self, t, x):
    """Cast time to the real dtype of x."""
    return jnp.asarray(t, dtype=nx.real_dtype(x))

  # ------------------------------------------------------------------ metric
  def inner(self, x, u, v):
    """Riemannian inner product <u, v>_x.  (..., *shape) x3 -> (...)."""
    del x
    return self._sum(jnp.real(jnp.conj(u) * v))

  def norm(self, x, v):
    """Riemannian norm |v|_x (finite gradient at v = 0).  -> (...)."""
    return nx.safe_sqrt(jnp.maximum(self.inner(x, v, v), 0.0))

  def sq_norm(self, x, v):
    """Squared Riemannian norm.  -> (...)."""
    return self.inner(x, v, v)

  # ------------------------------------------------------------------ geometry (abstract)
  def exp(self, x, v):
    """Exponential map exp_x(v).  (..., *shape) x2 -> (..., *shape)."""
    raise NotImplementedError

  def log(self, x, y):
    """Logarithm map log_x(y), the inverse of exp inside the injectivity radius."""
    raise NotImplementedError

  def dist(self, x, y):
    """Geodesic distance.  -> (...)."""
    return self.norm(x, self.log(x, y))

  def proj(self, z):
    """Nearest point on M to an ambient array z."""
    raise NotImplementedError

  def to_tangent(self, x, z):
    """Orthogonal projection of an ambient z onto T_x M."""
    raise NotImplementedError

  def transp(self, x, y, v):
    """Parallel transport of v in T_x M to T_y M along the minimizing geodesic."""
    raise NotImplementedError

  def log_det_exp(self, x, v):
    """log |det d exp_x(v)|: the log volume distortion of exp_x at v.  -> (...)."""
    raise NotImplementedError

  def egrad_to_rgrad(self, x, g):
    """Riemannian gradient from the ambient (Euclidean) gradient g = jax.grad(f)(x).

    Default: orthogonal projection (induced metric on an embedded submanifold).
    """
    return self.to_tangent(x, g)

  # ------------------------------------------------------------------ sampling
  def random_uniform(self, key, batch_shape: Sequence[int] = (), dtype=None):
    """Draw from the uniform (normalized Riemannian volume) law."""
    raise NotImplementedError(f"{self.spec} has no uniform law")

  def log_volume(self):
    """Log of the total Riemannian volume (a Python float)."""
    raise NotImplementedError(f"{self.spec} has infinite volume")

  def random_normal_tangent(self, key, x):
    """Standard normal in T_x M (identity covariance in the metric)."""
    raise NotImplementedError

  def uniform_log_prob(self, x):
    """Log-density of the uniform law at x.  -> (...)."""
    return jnp.full(self.batch_shape(x), -self.log_volume(), dtype=nx.real_dtype(x))

  # ------------------------------------------------------------------ heat kernel
  def log_heat_kernel(self, x, y, t):
    """log p_t(x, y) w.r.t. Riemannian volume.  -> broadcast(batch, t)."""
    raise NotImplementedError

  def heat_kernel_score(self, x, y, t):
    """grad_y log p_t(x, y), a vector in T_y M.

    Default: autodiff of `log_heat_kernel` converted to a Riemannian gradient.
    Subclasses override with closed forms where they are cheaper.
    """
    def f(yy):
      return jnp.sum(self.log_heat_kernel(x, yy, t))

    g = jax.grad(f)(y)
    if self.is_complex:
      g = jnp.conj(g)  # JAX returns conj of the real-gradient for complex inputs
    return self.egrad_to_rgrad(y, g)

  def sample_heat_kernel(self, key, x, t):
    """Exact draw y ~ p_t(x, .)."""
    raise NotImplementedError

  # ------------------------------------------------------------------ validation
  def _violation(self, x):
    """Per-point violation of the manifold constraints (>= 0).  -> (...)."""
    raise NotImplementedError

  def _criterion(self) -> str:
    """Human readable description of what `_violation` measures."""
    return "constraint residual"

  def default_atol(self, dtype) -> float:
    """Default tolerance for `belongs` / `check` at a given dtype."""
    e = nx.eps(dtype)
    return max(math.sqrt(e), 1000.0 * e)

  def belongs(self, x, atol=None):
    """Boolean mask of the batch: True where x lies on M within atol."""
    x = jnp.asarray(x)
    self.batch_shape(x)
    atol = self.default_atol(x.dtype) if atol is None else atol
    v = self._violation(x)
    finite = jnp.all(jnp.isfinite(x), axis=self._axes)
    return finite & (v <= atol)

  def check(self, x, atol=None, what: str = "points"):
    """Raise a ValueError naming the manifold, tolerance and worst violation
    if any point of the batch is off M (eager; returns x unchanged)."""
    x = jnp.asarray(x)
    bs = self.batch_shape(x)
    if self.is_complex is False and jnp.iscomplexobj(x):
      raise ValueError(f"{self.spec}: {what} must be real, got dtype {x.dtype}")
    atol = self.default_atol(x.dtype) if atol is None else atol
    xn = np.asarray(x)
    if not np.all(np.isfinite(xn)):
      bad = int(np.sum(~np.all(np.isfinite(xn.reshape(bs + (-1,))), axis=-1)))
      raise ValueError(f"{self.spec}: {bad} of the {what} contain NaN or inf")
    v = np.asarray(self._violation(x))
    if v.size and np.max(v) > atol:
      worst = np.unravel_index(int(np.argmax(v)), v.shape) if v.ndim else ()
      raise ValueError(
          f"{self.spec}: {int(np.sum(v > atol))} of {v.size} {what} are off the manifold "
          f"({self._criterion()}): worst violation {float(np.max(v)):.3g} at batch index "
          f"{tuple(int(i) for i in worst)} exceeds atol={atol:.3g}")
    return x

  # ------------------------------------------------------------------ optional global chart
  # A global chart c = to_chart(x) in R^dim, for manifolds whose ambient coordinates make
  # derivatives of fields ill-conditioned (the hyperboloid: the Lorentz tangent projection of
  # an ambient unit vector has size ~ e^(2r) at distance r from the origin).  Consumers such
  # as geogen.likelihood take divergences in the chart when `has_global_chart` is True.
  has_global_chart: bool = False

  def to_chart(self, x):
    """Chart coordinates of points.  (..., *shape) -> (..., dim)."""
    raise NotImplementedError(f"{self.spec} has no global chart")

  def from_chart(self, c):
    """Inverse of `to_chart`.  (..., dim) -> (..., *shape)."""
    raise NotImplementedError(f"{self.spec} has no global chart")

  def chart_log_volume_density(self, c):
    """log sqrt(det g(c)) of the metric in the chart (Riemannian volume = e^this dc).
    (..., dim) -> (...)."""
    raise NotImplementedError(f"{self.spec} has no global chart")

  # ------------------------------------------------------------------ features for networks
  @property
  def num_features(self) -> int:
    """Number of real features of a point / tangent vector (network input size)."""
    return int(np.prod(self.shape)) * (2 if self.is_complex else 1)

  def to_features(self, x):
    """Flatten points or tangent vectors to real features.  -> (..., num_features)."""
    bs = jnp.shape(x)[: jnp.ndim(x) - len(self.shape)]
    flat = jnp.reshape(x, bs + (-1,))
    if self.is_complex:
      return jnp.concatenate([jnp.real(flat), jnp.imag(flat)], axis=-1)
    return flat

  def input_features(self, x):
    """Real features of points for network inputs: continuous in the point.
    Default `to_features`; the torus uses (cos, sin) of the angles, whose raw values
    jump at the wrap.  -> (..., F_in)."""
    return self.to_features(x)

  def from_features(self, f):
    """Inverse of `to_features` (real features -> ambient array of point shape)."""
    bs = jnp.shape(f)[:-1]
    if self.is_complex:
      half = f.shape[-1] // 2
      f = jax.lax.complex(f[..., :half], f[..., half:])
    return jnp.reshape(f, bs + tuple(self.shape))
