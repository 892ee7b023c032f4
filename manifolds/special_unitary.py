r"""`SpecialUnitary(n)`: the group SU(n) with the bi-invariant metric <U X, U Y> = Re tr(X^H Y).

Points are complex (n, n) matrices with U^H U = I and det U = 1 (complex64 / complex128,
following float32 / float64).  Tangent vectors at U are ambient matrices V = U A with A in
su(n) (skew-Hermitian, traceless).  The metric is the Frobenius inner product of the ambient
space C^{n x n} = R^{2 n^2}, so the base-class `inner` (Re sum conj(u) v) applies unchanged.

Eigen-angles
------------
`eigen_angles(u)` returns the maximal-torus coordinates of u: real angles theta (..., n) with
eigenvalues e^{i theta_k}, sorted ascending, summing to 0 (up to round-off; the mean is
removed).  Construction: principal angles in (-pi, pi] sum to 2 pi m for an integer m; the
m largest (m > 0) are lowered by 2 pi, or the |m| smallest (m < 0) raised by 2 pi.  This is the
unique minimal-norm representative (|theta| = geodesic distance to I), so after the adjustment
an angle may leave (-pi, pi] (e.g. (2, 2, -4) for SU(3)); all |theta_k| <= pi is impossible in
general.  Ties (equal principal angles at the shift boundary) give the same sorted multiset,
so `eigen_angles` is unambiguous; they occur exactly on the cut locus (below).

Eigen-decomposition of a unitary matrix (`_unitary_eig`): eig of a general matrix is CPU-only
in XLA and gives non-orthogonal vectors for repeated eigenvalues, so we use a Cayley
transform.  The eigenvalues of the Hermitian part give candidates +-arccos(cos theta_k) that
contain every true angle; psi = centre of the largest gap between candidates is at least
pi / (2n) away from all eigen-angles; H = i (e^{i phi} - M)(e^{i phi} + M)^{-1} with
phi = psi + pi is Hermitian, well conditioned, with eigenvalues tan((theta_k - phi) / 2) that
are distinct exactly when the eigenvalues of M are distinct, so `eigh(H)` gives an orthonormal
eigenbasis and accurate angles, also for repeated eigenvalues (U = I, -I, centre elements).
For n <= 3 the same Cayley transform is done without LAPACK (batched LAPACK calls on 2 x 2 /
3 x 3 matrices cost ~10x more on CPU): the shift e^{i phi}, phi in {0, pi/2, pi, 3 pi/2},
maximizing |det(e^{i phi} + M)| (of four arcs of width pi/2 one holds no eigenvalue, so every
eigenvalue is >= 0.11 from -e^{i phi}), the inverse by the adjugate, and cyclic complex Jacobi
rotations on H, elementwise over the batch (one rotation for n = 2; 4 / 5 sweeps for n = 3 in
float32 / float64, at round-off on 65536 Haar matrices after 4).

Geometry
--------
* exp(U, V) = U expm(A), A = U^H V (projected onto su(n)); closed form for n = 2, eigh of the
  Hermitian -i A otherwise (Jacobi for n = 3; Daleckii-Krein JVP, finite for repeated
  eigenvalues); then re-projected onto SU(n) (n = 2: rebuilt from its normalized first
  column; else one Newton-Schulz polar step and division by det^{1/n}, whose principal
  branch is exact since det = 1 + O(eps)).
* log(U, W) = U Q diag(i theta) Q^H with theta the minimal-norm traceless angles of U^H W
  (see eigen_angles), so |log| = dist and exp(U, log(U, W)) = W everywhere.  Its JVP is the
  Daleckii-Krein formula (finite for repeated eigenvalues).
* dist(U, W) = |eigen_angles(U^H W)|.
* Cut locus: W is in the cut locus of U iff the minimal angles of U^H W have
  max theta - min theta = 2 pi (two eigenvalues equal but with angles differing by 2 pi).  For
  SU(2) this is exactly W = -U.  For n >= 3 an eigenvalue -1 alone is *not* a cut point
  (e.g. angles (-pi, 1, pi - 1)), while e.g. U^H W = e^{2 pi i / 3} I in SU(3) is.  On the cut
  locus `log` returns one minimizing tangent vector (deterministic: of two tied principal angles
  the one that comes later in the eigh order is shifted), with |log| = dist and
  exp(U, log(U, W)) = W; never a silent zero.  The derivative of log is infinite there
  (clamped to a large finite value).
* proj(Z) = polar(Z) det(polar(Z))^{-1/n} (principal root).  This is the exact nearest point of
  SU(n) when polar(Z) is in SU(n) or Z has equal singular values (Z = c U), and the nearest
  point up to O(|Z - SU(n)|^2) in general (the exact special-unitary Procrustes problem also
  redistributes the determinant phase by the singular values).  Polar JVP is written in closed
  form (finite for repeated singular values).  For n <= 3 the SVD comes from the Jacobi eigh
  of Z^H Z when every matrix of the batch has singular values within a factor 2 (Gershgorin
  bound; the usual case, Z a round-off away from SU(n)), else from LAPACK.
* Small-matrix algebra (n <= 3, or n <= 4 for products) is elementwise over the batch:
  `matmul`, determinants, eigh, SVD; batched LAPACK / dot_general on 2 x 2 / 3 x 3 matrices
  is 10-40x slower on CPU.
* to_tangent(U, Z) = U P(U^H Z), P = orthogonal projection onto su(n) (skew part, trace removed).
* transp(U, W, V): with W = U exp(X), parallel transport of the bi-invariant (Levi-Civita,
  nabla_X Y = [X, Y] / 2) connection along t -> U exp(t X) maps U A to
  W exp(-X/2) A exp(X/2) = U exp(X/2) A exp(X/2): an isometry onto T_W.
* log_det_exp(U, V) = sum_{j<k} 2 log|sinc((a_j - a_k) / 2)|, i a_k the eigenvalues of U^H V
  (d exp_U at V = left translation o (1 - e^{-ad A}) / ad A; the complexified ad A has
  eigenvalues i (a_j - a_k)).  At conjugate points (|a_j - a_k| in 2 pi Z \ {0}) the exact
  value is -inf; we return log(tiny) of the dtype instead.
* random_uniform: Haar on U(n) (QR of a complex Ginibre matrix with the phases of diag R moved
  into Q), then the first column is multiplied by conj(det) / |det|.  Because the correction
  depends on U only through det U, the law is invariant under left multiplication by SU(n):
  exactly Haar on SU(n).
* log_volume = log(sqrt(n) (2 pi)^((n^2 + n - 2) / 2) / prod_{k<n} k!).
* random_normal_tangent: U P(Z) with Z standard complex normal (Re and Im N(0, 1)); P is an
  orthogonal projection in the metric, so the result has identity covariance on T_U.

Heat kernel
-----------
p_t(U, W) = p_t(theta), theta = eigen_angles(U^H W); generator (1/2) Laplace-Beltrami, density
w.r.t. the Riemannian volume (HEAT_KERNELS.md).  `log_heat_kernel_angles(theta, t)` exposes the
class function.  Regimes (per point, by t):

* t < T_SWITCH = 1.5, images: p = (2 pi t)^{-d/2} e^{|delta|^2 t / 2}
  sum_{m in Z^n, sum m = 0} G(h) prod_{j<k} rho(h_j - h_k), h = theta + 2 pi m,
  G = exp(-|h|^2 / 2t), rho(a) = (a/2) / sin(a/2), summed in log space with signs.  The lattice
  points kept are all m that can contribute more than e^{-L} relative for some theta in the
  Voronoi cell and t < 1.5 (exact bound at the cell's vertices), L = log(1/eps) + 9 = 45 / 25
  in float64 / float32: 3 / 13 / 43 and 3 / 7 / 19 images for n = 2 / 3 / 4
  (`_image_log_cut`; the sampler's Gaussian proposal, used up to t = 4, keeps its own table
  at e^{-60}: 7 / 37 / 201).
  rho is 1/sinc for regular pairs; the sines of all images of a pair are computed from one gap
  g = theta_j - theta_k - 2 pi L0, so terms that cancel see the same rounding.
  Walls (e^{i theta_j} ~ e^{i theta_k}; the terms with h_j - h_k in 2 pi Z \ {0} are singular
  while p is smooth) are handled per point, with s = t / 2 pi:
    - walls whose singular images have Gaussian weight < 1e-14 (double) / 1e-8 (single) of the
      largest image: those images are dropped (e.g. W = U, t < 1.2);
    - one significant wall within b2 = 0.1 s (double) / s (single): its gap g is replaced by
      sgn(g) sqrt(g^2 + b1^2), b1 = 1e-3 s (double) / (24 eps)^{1/3} s (single).  p is even in g,
      so value and gradient change by O((b1 / s)^2) relative, while the rounding of the cancelling
      images stays ~ eps s / b1;
    - two or more significant walls within b2 (e.g. near centre elements e^{2 pi i k/n} I, or W
      near U for t >~ 1.2): complex mean-value (Cauchy) evaluation, the average of the images sum
      over 16 points theta + r e^{i pi (2k+1)/16} w (w splits every coincidence,
      r = min(1.6 t / |theta|, sqrt(2 q t))), exact for the entire function p up to the
      truncated Taylor terms.  Only the flagged rows are computed (gathered, in chunks of 32),
      with a custom JVP so reverse mode stores (B, n) residuals.
* t >= 1.5, characters: p = (1/vol) sum_lambda d_lambda e^{-C(lambda) t / 2} s_lambda(z),
  z = e^{i theta}, C(lambda) = sum_j lambda_j (lambda_j + n + 1 - 2j) - |lambda|^2 / n, Schur
  polynomials s_lambda division-free by Jacobi-Trudi (complete homogeneous polynomials from the
  elementary symmetric ones), so coincident eigenvalues need no care; lambda over all
  partitions with d^2 e^{-C t/2} > e^{-L} at t = 1.5, L as above (11 / 45 / 133 in float64,
  8 / 28 / 71 in float32 for n = 2 / 3 / 4).
* Large batches are processed in chunks (lax.map, rematerialised under reverse mode) so the
  (chunk, images, pairs) temporaries stay ~ 2^22 elements.

`heat_kernel_score` is the closed form for class functions: with U^H W = Q diag(e^{i theta}) Q^H
and c = grad_theta log p projected onto sum c = 0, grad_W log p = W Q diag(i c) Q^H (c by
reverse-mode autodiff of the angle function, whose characters sum carries per-row gradients
from forward mode, `_rowwise`; c_j = c_k on repeated eigenvalues by symmetry, so the choice
of Q does not matter).  The base-class autodiff route is also correct (JAX returns
d/dRe - i d/dIm for real functions of complex input, the base conjugates it, and
`eigen_angles` has a JVP finite at repeated eigenvalues); the tests check both.

`sample_heat_kernel` is exact rejection sampling of the eigen-angles (target density
p_t(theta) |Delta(theta)|^2 on the maximal torus), then Y = x Q diag(e^{i theta}) Q^H with Q
Haar on U(n) up to column phases (Gram-Schmidt of a Ginibre matrix, twice, for n <= 3; QR
above):
  - Gaussian proposal X ~ N(0, t I) on su(n): its eigenvalues h (GUE with the trace removed)
    come from the Dumitriu-Edelman tridiagonal model and a vectorized Jacobi iteration.  Since
    |(h_j - h_k) 2 sin((h_j - h_k)/2)| <= (h_j - h_k)^2 termwise, the acceptance probability
    Delta(theta) sum_m G V / sum_m G V^2 (V = Vandermonde of the images h_m) is <= 1; the
    acceptance rate is exactly exp(-|delta|^2 t / 2), |delta|^2 = n (n^2 - 1) / 12.
  - Uniform proposal on the torus, acceptance p_t(theta) |Delta|^2 / (p_t(I) n^n) (p_t <= p_t(I)
    and |Delta|^2 <= n^n), rate n! / (n^n vol p_t(I)).
  The larger rate is used per draw (Gaussian always for t < 1.5, and only up to t = 4).  Rounds
  propose only for the pending draws (compacted, in chunks), so the work is ~ draws / rate.
  Worst rates: n = 2 ~0.5, n = 3 ~0.2 (t ~ 1.6), n = 4 ~0.02 (t ~ 1-2).  No random walk.

Accuracy measured against mpmath (benchmarks/bench_special_unitary.py: ~1400 points per
precision: Haar-random, 1e-2 .. 1e-14 from 0- and 2 pi-type walls, near centre elements and
the identity, special points; t log-spaced in [1e-4, 20]; points with log p > -500), as
|d log p| / max(1, |log p|):
  float64: worst 2.9e-9 (SU(2)), 2.1e-9 (SU(3)), 1.3e-9 (SU(4)); median ~1e-16.  The worst
           cases are within ~b2 of a wall (the O(b1^2) smoothing bias).
  float32: worst 8.6e-6 (SU(2)), 2.0e-5 (SU(3)), 2.9e-5 (SU(4)); never NaN/inf for
           t in [1e-8, 1e8], W = U, W = -U, centre elements.
  score (float64, relative to mpmath finite differences of log p along an orthonormal basis of
  T_W): <= 3e-14 at random points, <= 3e-5 at 1e-3 .. 1e-9 from walls; within ~1e-3 s of the
  SU(2) cut locus the score itself is O(gap) and its relative error reaches ~5e-4 (absolute
  <= 1e-10).
CPU timings (benchmarks/bench_special_unitary.py, float64, 2 shared cores, 1e5 points,
t = 0.5): log_heat_kernel 0.06 / 0.29 / 0.98 s, heat_kernel_score 0.12 / 0.63 / 2.3 s for
n = 2 / 3 / 4; sample_heat_kernel 1e5 draws 0.10-0.16 s (n = 2), 0.32-1.6 s (n = 3); n = 4:
1e4 draws 0.2-6.5 s (t = 1-2 is the slow range).  (Same run, before the elementwise
eigen-decomposition, per-precision tables and elementwise characters: 0.39 / 1.2 / 2.3 s,
0.58 / 2.7 / 12.6 s.)
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from manifolds import _numerics as nx
from manifolds.base import Manifold

_HI = jax.lax.Precision.HIGHEST
# Methods are jitted as a whole (self is static: manifolds hash by spec), so eager calls compile
# one program per shape instead of dispatching many small ops.
_jit_method = functools.partial(jax.jit, static_argnums=0)
_TWO_PI = 2.0 * math.pi

T_SWITCH = 1.5       # images below, characters at and above
_MV_POINTS = 16      # complex mean-value branch: number of points on the circle
_MV_RHO_LIN = 1.6
_MV_CHUNK = 32        # rows per chunk of the mean-value branch
_SAMPLE_CHUNK = 8192  # proposals per chunk in the rejection sampler
_MAX_ROUNDS = 100000
_T_GAUSS_MAX = 4.0   # the Gaussian proposal is only used up to this t (image table coverage)


# ============================================================================ small helpers
def matmul(a, b):
  """a @ b for stacks of square matrices (..., n, n) -> (..., n, n).  n <= 4: broadcast
  products and a sum, because on CPU a batched dot_general of 2 x 2 / 3 x 3 matrices costs
  ~40x more (measured; `exp` on su(2)^32 went from 57 to 7 ms per 3200 points).  Same
  arithmetic.  Used by the lattice actions and HMC too."""
  if a.shape[-1] > 4:
    return jnp.matmul(a, b, precision=_HI)
  return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def _dag(a):
  return jnp.conj(jnp.swapaxes(a, -1, -2))


def _eye_like(a):
  n = a.shape[-1]
  return jnp.eye(n, dtype=a.dtype)


def _trace(a):
  return jnp.trace(a, axis1=-2, axis2=-1)


def su_project(a):
  """Orthogonal projection of ambient (..., n, n) matrices onto su(n) (skew-Hermitian,
  traceless) in the Frobenius metric."""
  n = a.shape[-1]
  s = 0.5 * (a - _dag(a))
  return s - (_trace(s) / n)[..., None, None] * _eye_like(a)


def _conj_diag(q, d):
  """Q diag(d) Q^H."""
  return matmul(q * d[..., None, :], _dag(q))


def _wrap_pi(a):
  """Wrap real angles into (-pi, pi]."""
  return math.pi - jnp.mod(math.pi - a, _TWO_PI)


def _complex_dtype(real_dtype):
  return jnp.complex128 if jnp.dtype(real_dtype) == jnp.float64 else jnp.complex64


# ============================================================================ eigen-angles
def _minimal_angles(theta):
  """Principal angles (..., n) (any reals) -> minimal-norm traceless representative.

  Wraps into (-pi, pi], then shifts by 2 pi the m largest (m = round(sum / 2 pi) > 0) or the
  |m| smallest (m < 0) angles, then removes the mean.  Keeps the input order.
  """
  n = theta.shape[-1]
  theta = _wrap_pi(theta)
  m = jnp.round(jnp.sum(theta, axis=-1) / _TWO_PI)[..., None]
  ranks = _stable_ranks(theta).astype(theta.dtype)
  shift = jnp.where(m > 0, (ranks >= n - m).astype(theta.dtype), 0.0)
  shift = shift - jnp.where(m < 0, (ranks < -m).astype(theta.dtype), 0.0)
  h = theta - _TWO_PI * shift
  return h - jnp.mean(h, axis=-1, keepdims=True)


def _stable_ranks(theta):
  """Ranks of the entries of theta (..., n) along the last axis, ties broken by position
  (= argsort(argsort(theta, stable), stable)).  Small n: pairwise comparisons, elementwise
  (a sort per row is ~30x slower on CPU for n = 3)."""
  n = theta.shape[-1]
  if n > 6:
    return jnp.argsort(jnp.argsort(theta, axis=-1, stable=True), axis=-1, stable=True)
  a, b = theta[..., :, None], theta[..., None, :]          # [i, j]: theta_i vs theta_j
  before = jnp.asarray(np.tril(np.ones((n, n), bool), -1))  # j < i
  lower = (b < a) | ((b == a) & before)
  return jnp.sum(lower, axis=-1)


def _unitary_eig(m):
  """Eigen-decomposition of a (near) unitary matrix, robust to repeated eigenvalues.

  Returns (h, q): h (..., n) the minimal-norm traceless eigen-angles (see `eigen_angles`),
  aligned with the orthonormal eigenvector columns of q (..., n, n).  No gradient (use the
  custom-JVP wrappers).  n <= 3: elementwise Cayley + Jacobi (`_unitary_eig_jacobi`); larger
  n: LAPACK (`_unitary_eig_lapack`).
  """
  m = jax.lax.stop_gradient(m)
  if m.shape[-1] <= 3:
    return _unitary_eig_jacobi(m)
  return _unitary_eig_lapack(m)


# Cayley shifts tried by the elementwise route: e^{i phi}, phi = 0, pi/2, pi, 3 pi/2.
_SHIFTS = (1.0, 1j, -1.0, -1j)


def _adjugate(a):
  """Adjugate (transposed cofactors) of (..., n, n) for n = 2, 3: a adj(a) = det(a) I."""
  n = a.shape[-1]
  if n == 2:
    return jnp.stack([jnp.stack([a[..., 1, 1], -a[..., 0, 1]], -1),
                      jnp.stack([-a[..., 1, 0], a[..., 0, 0]], -1)], -2)
  rows = []
  for i in range(3):
    row = []
    for j in range(3):
      # cofactor C_ji (transposed), cyclic indices give the sign
      r0, r1 = (j + 1) % 3, (j + 2) % 3
      c0, c1 = (i + 1) % 3, (i + 2) % 3
      row.append(a[..., r0, c0] * a[..., r1, c1] - a[..., r0, c1] * a[..., r1, c0])
    rows.append(jnp.stack(row, -1))
  return jnp.stack(rows, -2)


def _jacobi_sweeps(n, dtype) -> int:
  # n = 2: one rotation diagonalizes exactly.  n = 3: cyclic Jacobi converges quadratically;
  # measured on 65536 Haar matrices, the reconstruction error is at round-off after 4 sweeps
  # in both precisions (3 sweeps: 2e-5); float64 gets one more for margin.
  if n == 2:
    return 1
  return 5 if jnp.dtype(dtype) == jnp.complex128 else 4


def _jacobi_eigh_lists(d, o, sweeps):
  """Eigen-decomposition of small complex Hermitian matrices given elementwise: d list of n
  real (...) diagonals, o dict {(p, q): complex (...)} of the upper off-diagonals.  Cyclic
  complex Jacobi rotations, vectorized over the batch (every entry is its own array, so
  each rotation is a few fused elementwise ops): orthonormal eigenvectors also for repeated
  eigenvalues.  -> (eigenvalues (..., n) real, eigenvectors (..., n, n) columns)."""
  n = len(d)
  pairs = [(p, q) for p in range(n) for q in range(p + 1, n)]
  cdt = o[pairs[0]].dtype
  one, zero = jnp.ones_like(o[pairs[0]]), jnp.zeros_like(o[pairs[0]])
  v = [[one if i == j else zero for j in range(n)] for i in range(n)]

  def flat(d, o, v):
    return tuple(d) + tuple(o[pq] for pq in pairs) + tuple(x for row in v for x in row)

  def unflat(c):
    d = list(c[:n])
    o = dict(zip(pairs, c[n:n + len(pairs)]))
    rest = c[n + len(pairs):]
    return d, o, [list(rest[i * n:(i + 1) * n]) for i in range(n)]

  def sweep(_, carry):
    d, o, v = unflat(carry)

    def get(i, j):  # A_ij for i != j from the upper triangle
      return o[(i, j)] if i < j else jnp.conj(o[(j, i)])

    for p, q in pairs:
      apq = o[(p, q)]
      mag = jnp.abs(apq)
      nz = mag > 0
      safe = jnp.where(nz, mag, 1.0)
      ph = jnp.where(nz, jnp.conj(apq) / safe.astype(cdt), 1.0)      # e^{-i arg a_pq}
      tau = (d[q] - d[p]) / (2.0 * safe)
      tt = jnp.where(tau >= 0, 1.0, -1.0) / (jnp.abs(tau) + jnp.sqrt(1.0 + tau * tau))
      tt = jnp.where(nz, tt, 0.0)
      c = 1.0 / jnp.sqrt(1.0 + tt * tt)
      s = tt * c
      cc, sc = c.astype(cdt), s.astype(cdt)
      sph, cph = sc * ph, cc * ph
      # J = [[c, s], [-s ph, c ph]] on (p, q); A <- J^H A J, V <- V J
      for k in range(n):
        if k in (p, q):
          continue
        akp, akq = get(k, p), get(k, q)
        new_kp = cc * akp - sph * akq
        new_kq = sc * akp + cph * akq
        o[(min(k, p), max(k, p))] = new_kp if k < p else jnp.conj(new_kp)
        o[(min(k, q), max(k, q))] = new_kq if k < q else jnp.conj(new_kq)
      d[p] = d[p] - tt * mag
      d[q] = d[q] + tt * mag
      o[(p, q)] = zero
      for i in range(n):
        vip, viq = v[i][p], v[i][q]
        v[i][p] = cc * vip - sph * viq
        v[i][q] = sc * vip + cph * viq
    return flat(d, o, v)

  carry = flat(d, o, v)
  carry = sweep(0, carry) if sweeps == 1 else jax.lax.fori_loop(0, sweeps, sweep, carry)
  d, _, v = unflat(carry)
  return (jnp.stack(d, -1), jnp.stack([jnp.stack(row, -1) for row in v], -2))


def _eigh(h):
  """Eigen-decomposition of (..., n, n) complex Hermitian matrices -> (eigenvalues (..., n)
  real, eigenvectors (..., n, n) columns).  n <= 3: complex Jacobi (`_jacobi_eigh_lists`;
  batched LAPACK on tiny matrices is slow on CPU), else LAPACK.  No gradient rule of its
  own: callers differentiate through custom JVPs."""
  n = h.shape[-1]
  if n > 3:
    return jnp.linalg.eigh(h)
  d = [jnp.real(h[..., i, i]) for i in range(n)]
  o = {(p, q): h[..., p, q] for p in range(n) for q in range(p + 1, n)}
  return _jacobi_eigh_lists(d, o, _jacobi_sweeps(n, h.dtype))


def _diag_in_basis(q, d):
  """diag(q^H d q), (..., n): the first-order eigenvalue perturbations of d in the
  eigenbasis q (columns), shared by the eigenvalue / eigen-angle JVPs."""
  return jnp.diagonal(matmul(_dag(q), matmul(d, q)), axis1=-2, axis2=-1)


@jax.custom_jvp
def _eigvalsh(h):
  """Eigenvalues (..., n) of complex Hermitian (..., n, n) matrices by `_eigh` (Jacobi for
  n <= 3, unordered).  JVP: d lambda_k = Re(q_k^H dh q_k), which gives every symmetric function of
  the eigenvalues its exact derivative, also at repeated eigenvalues."""
  return _eigh(h)[0]


@_eigvalsh.defjvp
def _eigvalsh_jvp(primals, tangents):
  (h,), (dh,) = primals, tangents
  lam, q = _eigh(h)
  return lam, jnp.real(_diag_in_basis(q, dh))


def _unitary_eig_jacobi(m):
  """`_unitary_eig` for n <= 3 without LAPACK (batched LAPACK calls on tiny matrices are
  slow on CPU).  Cayley transform H = i (e - m)(e + m)^{-1} with the shift e among
  `_SHIFTS` maximizing |det(e + m)| = prod_k 2 |cos((theta_k - phi) / 2)|: of the four
  arcs of width pi/2 around the points -e, one holds no eigenvalue (n <= 3), so the chosen
  shift has |det| >= (2 sin(pi/8))^n and every factor >= 0.11 (e + m well conditioned, H's
  eigenvalues tan((theta_k - phi)/2) bounded by 18).  H by the adjugate, then Jacobi."""
  rdt = nx.real_dtype(m)
  eye = _eye_like(m)
  dets = jnp.stack([jnp.abs(_det(e * eye + m)) for e in _SHIFTS], -1)
  k = jnp.argmax(dets, axis=-1)
  e = jnp.asarray(_SHIFTS, m.dtype)[k][..., None, None]
  den = e * eye + m
  adj = _adjugate(den)
  det = _det(den)[..., None, None]
  hm = 1j * matmul(e * eye - m, adj) / det
  tv, q = _eigh(0.5 * (hm + _dag(hm)))
  phi = (0.5 * math.pi) * k.astype(rdt)
  theta = phi[..., None] + 2.0 * jnp.arctan(tv)
  return _minimal_angles(theta), q


def _unitary_eig_lapack(m):
  """`_unitary_eig` by LAPACK: Cayley shift from the Hermitian part's eigenvalues, eigh."""
  rdt = nx.real_dtype(m)
  herm = 0.5 * (m + _dag(m))
  c = jnp.clip(jnp.linalg.eigvalsh(herm), -1.0, 1.0)
  a = jnp.arccos(c)
  cand = jnp.sort(jnp.concatenate([a, -a], axis=-1), axis=-1)  # (..., 2n) in [-pi, pi]
  gaps = jnp.concatenate([cand[..., 1:] - cand[..., :-1],
                          (cand[..., :1] + _TWO_PI - cand[..., -1:])], axis=-1)
  i = jnp.argmax(gaps, axis=-1)
  lo = jnp.take_along_axis(cand, i[..., None], axis=-1)[..., 0]
  g = jnp.take_along_axis(gaps, i[..., None], axis=-1)[..., 0]
  psi = lo + 0.5 * g
  phi = psi + math.pi
  e = jnp.exp(1j * phi.astype(rdt)).astype(m.dtype)[..., None, None]
  eye = _eye_like(m)
  num = e * eye - m
  den = e * eye + m
  hm = 1j * jnp.linalg.solve(den, num)
  hm = 0.5 * (hm + _dag(hm))
  tv, q = jnp.linalg.eigh(hm)
  theta = phi[..., None] + 2.0 * jnp.arctan(tv.astype(rdt))
  return _minimal_angles(theta), q


@jax.custom_jvp
def _angles_aligned(m):
  return _unitary_eig(m)[0]


@_angles_aligned.defjvp
def _angles_aligned_jvp(primals, tangents):
  (m,), (dm,) = primals, tangents
  h, q = _unitary_eig(m)
  db = _diag_in_basis(q, dm)
  dh = jnp.imag(jnp.exp(-1j * h.astype(m.dtype)) * db).astype(h.dtype)
  dh = dh - jnp.mean(dh, axis=-1, keepdims=True)
  return h, dh


@jax.jit
def _eigen_angles(u):
  return jnp.sort(_angles_aligned(u), axis=-1)


def eigen_angles(u):
  """Eigen-angles of points of SU(n): (..., n, n) -> real (..., n).

  theta sorted ascending, sum theta = 0 (up to round-off), e^{i theta_k} the eigenvalues,
  |theta| = d(I, u) (the minimal-norm representative; see the module docstring).
  Differentiable (JVP finite at repeated eigenvalues).
  """
  u = jnp.asarray(u)
  if not jnp.iscomplexobj(u):
    u = u.astype(_complex_dtype(u.dtype))
  return _eigen_angles(u)


def _sinc(a):
  """sin(a)/a for real or complex a (finite value and gradient at 0)."""
  small = jnp.abs(a) < 1e-2
  a_s = jnp.where(small, 1.0, a)
  a2 = a * a
  series = 1.0 - a2 / 6.0 + a2 * a2 / 120.0 - a2 * a2 * a2 / 5040.0
  return jnp.where(small, series, jnp.sin(a_s) / a_s)


@jax.custom_jvp
def _logm_su(m):
  """Minimal-norm traceless logarithm of a unitary matrix: (..., n, n) -> su(n)."""
  h, q = _unitary_eig(m)
  return _conj_diag(q, (1j * h).astype(m.dtype))


@_logm_su.defjvp
def _logm_su_jvp(primals, tangents):
  (m,), (dm,) = primals, tangents
  h, q = _unitary_eig(m)
  hc = h.astype(m.dtype)
  a = _conj_diag(q, 1j * hc)
  # Daleckii-Krein: divided differences of log at e^{i h}:
  # i (h_j - h_k) / (e^{i h_j} - e^{i h_k}) = e^{-i (h_j + h_k)/2} / sinc((h_j - h_k)/2).
  dh = 0.5 * (h[..., :, None] - h[..., None, :])
  s = _sinc(dh)
  tiny = nx.eps(h.dtype) ** 2
  s = jnp.where(jnp.abs(s) < tiny, jnp.where(s < 0, -tiny, tiny), s)  # cut locus: clamp
  f = jnp.exp(-0.5j * (hc[..., :, None] + hc[..., None, :])) / s.astype(m.dtype)
  b = matmul(_dag(q), matmul(dm, q))
  da = matmul(q, matmul(f * b, _dag(q)))
  return a, su_project(da)


def _expm_su(a):
  """exp of a (..., n, n) element of su(n) (differentiable everywhere)."""
  n = a.shape[-1]
  if n == 2:
    # a^2 = -(|a|^2 / 2) I for a in su(2):  exp(a) = cos(s) I + sinc(s) a,  s^2 = |a|^2 / 2.
    s2 = 0.5 * jnp.real(jnp.sum(jnp.conj(a) * a, axis=(-2, -1)))
    half = nx.sinc(s2 / 4.0)
    cos_s = 1.0 - 0.5 * s2 * half * half          # cos s = 1 - 2 sin^2(s/2)
    sinc_s = nx.sinc(s2)
    return (cos_s[..., None, None] * _eye_like(a)
            + sinc_s[..., None, None].astype(a.dtype) * a).astype(a.dtype)
  return _expm_skew(a)


@jax.custom_jvp
def _expm_skew(a):
  """exp of skew-Hermitian matrices by eigh of the Hermitian -i a (exactly unitary up to
  round-off, cheap to compile).  JVP: Daleckii-Krein with the divided differences of e^{i x},
  (e^{i a_j} - e^{i a_k}) / (i a_j - i a_k) = e^{i (a_j + a_k)/2} sinc((a_j - a_k)/2)."""
  al, q = _eigh(-1j * a)
  return _conj_diag(q, jnp.exp(1j * al.astype(a.dtype)))


@_expm_skew.defjvp
def _expm_skew_jvp(primals, tangents):
  (a,), (da,) = primals, tangents
  al, q = _eigh(-1j * a)
  alc = al.astype(a.dtype)
  e = _conj_diag(q, jnp.exp(1j * alc))
  half = 0.5 * (al[..., :, None] - al[..., None, :])
  f = jnp.exp(0.5j * (alc[..., :, None] + alc[..., None, :])) * _sinc(half).astype(a.dtype)
  b = matmul(_dag(q), matmul(da, q))
  return e, matmul(q, matmul(f * b, _dag(q)))


def _fix_det(u):
  """Divide a near-SU(n) unitary by det^{1/n} (principal root)."""
  n = u.shape[-1]
  ang = jnp.angle(_det(u))
  return u * jnp.exp(-1j * (ang / n).astype(u.dtype))[..., None, None]


def _reproject(u):
  """Round-off repair of near-SU(n) matrices.  n = 2: rebuild [[a, -conj(b)], [b, conj(a)]]
  from the normalized first column (in SU(2) to round-off; cheaper than the general step).
  Else one Newton-Schulz polar step (error e -> O(e^2)) and determinant fix."""
  if u.shape[-1] == 2:
    a, b = u[..., 0, 0], u[..., 1, 0]
    r = jnp.sqrt(jnp.real(a * jnp.conj(a) + b * jnp.conj(b))).astype(u.dtype)
    a, b = a / r, b / r
    return jnp.stack([jnp.stack([a, -jnp.conj(b)], -1), jnp.stack([b, jnp.conj(a)], -1)], -2)
  eye = _eye_like(u)
  u = 0.5 * matmul(u, 3.0 * eye - matmul(_dag(u), u))
  return _fix_det(u)


# `_svd` takes its elementwise route when every matrix of the batch has singular values
# within this ratio: the route squares the condition number (it diagonalizes z^H z), so its
# polar factor is then accurate to a few eps; other batches go to LAPACK.
_SVD_FAST_MIN_RATIO = 0.5


def _svd(z):
  """SVD z = u diag(s) vh of (..., n, n) complex matrices.  n <= 3 and the whole batch well
  conditioned (the usual case: proj of a point that an exp or a step left a round-off away
  from M): u = z V diag(1/s), s^2 and V by `_eigh` of z^H z, ~10x cheaper than batched LAPACK
  on CPU.  Otherwise jnp.linalg.svd."""
  n = z.shape[-1]
  if n > 3:
    return tuple(jnp.linalg.svd(z))

  def elementwise(z, g):
    lam, v = _eigh(g)
    s = jnp.sqrt(jnp.maximum(lam, jnp.finfo(lam.dtype).tiny))
    return matmul(z, v) / s[..., None, :].astype(z.dtype), s, _dag(v)

  def lapack(z, g):
    del g
    return tuple(jnp.linalg.svd(z))

  # The route's Gram matrix g = z^H z also gates it: by Gershgorin every eigenvalue of g
  # lies in [min(d - r), max(d + r)].
  g = matmul(_dag(z), z)
  d = jnp.real(jnp.diagonal(g, axis1=-2, axis2=-1))
  r = jnp.sum(jnp.abs(g), axis=-1) - jnp.abs(d)
  lo, hi = jnp.min(d - r, axis=-1), jnp.max(d + r, axis=-1)
  ok = jnp.all((lo > 0) & (lo >= (_SVD_FAST_MIN_RATIO ** 2) * hi))
  return jax.lax.cond(ok, elementwise, lapack, z, g)


@jax.custom_jvp
def _polar(z):
  """Unitary polar factor of a square matrix (SVD based)."""
  u, _, vh = _svd(z)
  return matmul(u, vh)


@_polar.defjvp
def _polar_jvp(primals, tangents):
  (z,), (dz,) = primals, tangents
  u, s, vh = _svd(z)
  w = matmul(u, vh)
  mt = matmul(_dag(u), matmul(dz, _dag(vh)))
  den = s[..., :, None] + s[..., None, :]
  den = jnp.maximum(den, jnp.finfo(den.dtype).tiny)
  om = (mt - _dag(mt)) / den.astype(mt.dtype)
  return w, matmul(u, matmul(om, vh))


# ============================================================================ tables
def _partitions(n, bound_fn, max_part=200):
  """All lambda_1 >= ... >= lambda_{n-1} >= 0 (n-1 parts) accepted by bound_fn (monotone)."""
  out = []

  def rec(prefix, maxv):
    if len(prefix) == n - 1:
      out.append(tuple(prefix))
      return
    for v in range(0, maxv + 1):
      cand = prefix + [v] + [0] * (n - 2 - len(prefix))
      if not bound_fn(cand):
        break
      rec(prefix + [v], v)

  rec([], max_part)
  return out


def _casimir(lam, n):
  lam = list(lam) + [0] * (n - len(lam))
  tot = sum(lam)
  return sum(l * (l + n + 1 - 2 * (j + 1)) for j, l in enumerate(lam)) - tot * tot / n


def _log_dim(lam, n):
  lam = list(lam) + [0] * (n - len(lam))
  l = [lam[j] + n - 1 - j for j in range(n)]
  return sum(math.log((l[j] - l[k]) / (k - j)) for j in range(n) for k in range(j + 1, n))


def _image_log_cut(dtype) -> float:
  """L of the heat kernel's image table: images below e^{-L} of the largest Gaussian weight
  for every theta in the cell and t < T_SWITCH are left out.  log(1/eps) plus a margin of 9
  (e^9 ~ 8e3) for the polynomial factors and for cancellation between images near walls
  (bounded by the wall handling).  45 / 25 keep 3 / 13 / 43 and 3 / 7 / 19 images for
  n = 2 / 3 / 4 (the sampler's table at L = 60, t <= 4: 7 / 37 / 201)."""
  return -math.log(float(np.finfo(dtype).eps)) + 9.0   # (numpy: independent of jax_enable_x64)


def _image_table(n, t_max=_T_GAUSS_MAX, log_cut=60.0):
  """Lattice points m (sum 0) with G(theta + 2 pi m) / G(theta) > e^{-log_cut} (times a
  polynomial margin) at t = t_max for some theta in the Voronoi cell of 0 (checked at the
  cell's vertices, where the linear-in-theta condition is extremal); symmetric under S_n."""
  budget = 2.0 * t_max * log_cut
  verts = []
  for k in range(1, n):
    base = [(n - k) / n] * k + [-k / n] * (n - k)
    verts.extend(set(itertools.permutations(base)))
  verts = _TWO_PI * np.array(sorted(set(verts)), dtype=np.float64)
  theta_max = float(np.max(np.linalg.norm(verts, axis=1)))
  rmax = int(math.ceil((theta_max + math.sqrt(theta_max**2 + budget)) / _TWO_PI))
  keep = []
  for mm in itertools.product(range(-rmax, rmax + 1), repeat=n - 1):
    last = -sum(mm)
    if abs(last) > rmax:
      continue
    m = np.array(list(mm) + [last], dtype=np.float64)
    if not m.any():
      keep.append(m)
      continue
    # |theta + 2 pi m|^2 - |theta|^2 = 4 pi m.theta + 4 pi^2 |m|^2, minimal over the cell
    # at a vertex (the cell is the convex hull of the vertices).
    inc = np.min(4.0 * math.pi * verts @ m) + 4.0 * math.pi**2 * float(m @ m)
    if inc <= budget:
      keep.append(m)
  keep = np.array(keep)
  order = np.argsort(np.sum(keep**2, axis=1), kind="stable")
  return keep[order]


# ============================================================================ the manifold
class SpecialUnitary(Manifold):
  """SU(n), n >= 2, with <U X, U Y> = Re tr(X^H Y).  Points: complex (n, n) arrays."""

  is_complex = True
  compact = True

  def __init__(self, n: int):
    if int(n) != n or n < 2:
      raise ValueError(f"SpecialUnitary(n) needs an integer n >= 2, got {n!r}")
    self.n = int(n)
    self.dim = self.n**2 - 1
    self.shape = (self.n, self.n)
    n = self.n
    self._delta2 = n * (n * n - 1) / 12.0
    self._pairs = np.array([(p, q) for p in range(n) for q in range(p + 1, n)], dtype=np.int32)
    # The Gaussian proposal of the sampler (t <= 4) uses this table; the heat kernel's images
    # route (t < T_SWITCH) a smaller one per precision (`_heat_images`).
    self._images = _image_table(n)
    self._heat_tables = {}
    for dt in (np.float32, np.float64):
      img = _image_table(n, T_SWITCH, _image_log_cut(dt))
      dm = (img[:, self._pairs[:, 0]] - img[:, self._pairs[:, 1]]).astype(np.int64)
      # Batch chunk: bounds the (chunk, images, pairs) temporaries.
      chunk = int(max(256, min(65536, 2**22 // max(1, len(img) * len(self._pairs)))))
      self._heat_tables[np.dtype(dt)] = (img, dm, chunk)
    # Characters: d^2 e^{-C t/2} > e^{-L} at t = T_SWITCH, L = `_image_log_cut` (45 / 25 in
    # float64 / float32: 11 / 45 / 133 and 8 / 28 / 71 representations for n = 2 / 3 / 4).
    self._chr_tables = {}
    for dt in (np.float32, np.float64):
      cut = _image_log_cut(dt)
      lams = _partitions(n, lambda lam, cut=cut: _casimir(lam, n) * T_SWITCH / 2.0
                         - 2.0 * _log_dim(lam, n) <= cut)
      lams = np.array(lams, dtype=np.int64).reshape(len(lams), n - 1)
      cas = np.array([_casimir(l, n) for l in lams])
      logd = np.array([_log_dim(l, n) for l in lams])
      self._chr_tables[np.dtype(dt)] = (lams, cas, logd)

  @property
  def spec(self):
    return f"su({self.n})"

  def _heat_images(self, dtype):
    """(images (M, n), their pair differences dm (M, P), batch chunk) of the images route in
    the real dtype `dtype`."""
    return self._heat_tables[np.dtype(dtype)]

  # ------------------------------------------------------------------ geometry
  @_jit_method
  def exp(self, x, v):
    x = jnp.asarray(x)
    a = su_project(matmul(_dag(x), jnp.asarray(v, x.dtype)))
    return _reproject(matmul(x, _expm_su(a)))

  @_jit_method
  def log(self, x, y):
    x = jnp.asarray(x)
    y = jnp.asarray(y, x.dtype)
    return matmul(x, _logm_su(matmul(_dag(x), y)))

  @_jit_method
  def dist(self, x, y):
    x = jnp.asarray(x)
    y = jnp.asarray(y, x.dtype)
    th = _angles_aligned(matmul(_dag(x), y))
    return nx.safe_sqrt(jnp.sum(th * th, axis=-1))

  @_jit_method
  def proj(self, z):
    z = jnp.asarray(z)
    if not jnp.iscomplexobj(z):
      z = z.astype(_complex_dtype(z.dtype))
    return _fix_det(_polar(z))

  @_jit_method
  def to_tangent(self, x, z):
    x = jnp.asarray(x)
    return matmul(x, su_project(matmul(_dag(x), jnp.asarray(z, x.dtype))))

  @_jit_method
  def transp(self, x, y, v):
    x = jnp.asarray(x)
    y = jnp.asarray(y, x.dtype)
    xa = _logm_su(matmul(_dag(x), y))
    e = _expm_su(0.5 * xa)
    a = su_project(matmul(_dag(x), jnp.asarray(v, x.dtype)))
    w = matmul(x, matmul(e, matmul(a, e)))
    return self.to_tangent(y, w)

  @_jit_method
  def log_det_exp(self, x, v):
    x = jnp.asarray(x)
    a = su_project(matmul(_dag(x), jnp.asarray(v, x.dtype)))
    if self.n == 2:  # eigenvalues of a: +- i s, s^2 = |a|^2 / 2 (no eigensolver)
      s = nx.safe_sqrt(0.5 * jnp.real(jnp.sum(jnp.conj(a) * a, axis=(-2, -1))))
      return 2.0 * _log_abs_sinc(s)
    alpha = _eigvalsh(-1j * a)  # real, i alpha = eigenvalues of a
    p, q = self._pairs[:, 0], self._pairs[:, 1]
    r = 0.5 * (alpha[..., p] - alpha[..., q])
    return jnp.sum(2.0 * _log_abs_sinc(r), axis=-1)

  # ------------------------------------------------------------------ sampling / volume
  def log_volume(self):
    n = self.n
    return (0.5 * math.log(n) + 0.5 * (n * n + n - 2) * math.log(_TWO_PI)
            - sum(math.lgamma(k + 1) for k in range(1, n)))

  def random_uniform(self, key, batch_shape: Sequence[int] = (), dtype=None):
    return self._random_uniform(key, tuple(int(b) for b in batch_shape),
                                jnp.dtype(self._as_point_dtype(dtype)))

  @functools.partial(jax.jit, static_argnums=(0, 2, 3))
  def _random_uniform(self, key, batch_shape, dtype):
    q = _haar_unitary(key, batch_shape, self.n, dtype)          # Haar on U(n)
    det = _det(q)
    c = jnp.conj(det) / jnp.abs(det).astype(det.dtype)
    return q.at[..., :, 0].multiply(c[..., None])

  @_jit_method
  def random_normal_tangent(self, key, x):
    x = jnp.asarray(x)
    rdt = nx.real_dtype(x)
    k1, k2 = jax.random.split(key)
    z = jax.lax.complex(jax.random.normal(k1, x.shape, rdt), jax.random.normal(k2, x.shape, rdt))
    return matmul(x, su_project(z))

  # ------------------------------------------------------------------ validation
  @_jit_method
  def _violation(self, x):
    x = jnp.asarray(x)
    if not jnp.iscomplexobj(x):
      x = x.astype(_complex_dtype(x.dtype))
    g = matmul(_dag(x), x) - _eye_like(x)
    v1 = jnp.max(jnp.abs(g), axis=(-2, -1))
    v2 = jnp.abs(_det(x) - 1.0)
    return jnp.maximum(v1, v2)

  def _criterion(self):
    return "max(|U^H U - I|_max, |det U - 1|)"

  def default_atol(self, dtype):
    e = nx.eps(dtype)
    return max(math.sqrt(e), 1000.0 * e) * self.n

  # ------------------------------------------------------------------ heat kernel
  @_jit_method
  def log_heat_kernel(self, x, y, t):
    x = jnp.asarray(x)
    y = jnp.asarray(y, x.dtype)
    th = _angles_aligned(matmul(_dag(x), y))
    t = self._real_t(t, th)
    shape = jnp.broadcast_shapes(th.shape[:-1], t.shape)
    th = jnp.broadcast_to(th, shape + th.shape[-1:])
    t = jnp.broadcast_to(t, shape)
    return self.log_heat_kernel_angles(th, t)

  @_jit_method
  def log_heat_kernel_angles(self, theta, t):
    """log p_t as a function of the eigen-angles (..., n) (sum 0, any order, minimal-norm
    representative as returned by `eigen_angles`).  -> broadcast(batch, t)."""
    theta = jnp.asarray(theta)
    t = jnp.asarray(t, theta.dtype)
    shape = jnp.broadcast_shapes(theta.shape[:-1], t.shape)
    theta = jnp.broadcast_to(theta, shape + theta.shape[-1:]).reshape((-1, self.n))
    t = jnp.broadcast_to(t, shape).reshape((-1,))
    return _chunked(self._log_hk_flat, (theta, t), self._heat_images(theta.dtype)[2]).reshape(shape)

  def _log_hk_flat(self, theta, t):
    small = t < T_SWITCH
    t_img = jnp.where(small, t, T_SWITCH * 0.5)
    t_chr = jnp.where(small, T_SWITCH, t)
    lp_img = self._log_hk_images(theta, t_img)
    lp_chr = self._log_hk_characters(theta, t_chr)
    return jnp.where(small, lp_img, lp_chr)

  @_jit_method
  def heat_kernel_score(self, x, y, t):
    x = jnp.asarray(x)
    y = jnp.asarray(y, x.dtype)
    m = matmul(_dag(x), y)
    rdt = nx.real_dtype(m)
    t = jnp.asarray(t, rdt)
    if not jnp.issubdtype(jnp.asarray(t).dtype, jnp.floating):
      t = t.astype(rdt)
    shape = jnp.broadcast_shapes(m.shape[:-2], t.shape)
    m = jnp.broadcast_to(m, shape + m.shape[-2:])
    y = jnp.broadcast_to(y, shape + y.shape[-2:])
    t = jnp.broadcast_to(t, shape)
    return matmul(y, _score_algebra(self.log_heat_kernel_angles, m, t))

  # ---- images
  def _wall_geometry(self, theta, t):
    """Pair gaps to the nearest wall and the thresholds.  theta real (B, n), t (B,)."""
    p, q = self._pairs[:, 0], self._pairs[:, 1]
    a0 = theta[:, p] - theta[:, q]
    gap = a0 - _TWO_PI * jnp.round(a0 / _TWO_PI)
    e = nx.eps(theta.dtype)
    s = (t / _TWO_PI)[:, None]
    # b1: O(b1^2) smoothing error (value ~4e-3 beta1^2, score ~5e2 beta1^2 relative in the
    # band) against rounding ~eps / b1 of the cancelling singular images (measured optimum).
    beta1 = 1e-3 if theta.dtype == jnp.float64 else (24.0 * e) ** (1.0 / 3.0)
    beta2 = 0.1 if theta.dtype == jnp.float64 else 1.0
    # Floors: a displacement below the rounding of theta would be lost (float32, tiny t).
    floor = 8.0 * e * (_TWO_PI + jnp.max(jnp.abs(theta), axis=-1, keepdims=True))
    b1 = jnp.maximum(s * beta1, floor)
    b2 = jnp.maximum(s * beta2, 2.0 * b1)
    return gap, b1, b2

  def _log_hk_images(self, theta, t):
    """Images sum with wall handling.  theta (B, n) real, t (B,) -> (B,).

    Walls (pairs whose eigenvalues nearly coincide) are classified by the Gaussian weight of
    the images that are singular there (relative to the largest image):
      - insignificant (< tol): those images are dropped (exact to tol; e.g. U = W, small t);
      - one significant wall within b2: the gap g is replaced by sgn(g) sqrt(g^2 + b1^2) (the
        kernel is even in g, so value and gradient stay accurate to O(b1^2), and the rounding
        of the cancelling singular images is bounded);
      - two or more significant walls within b2: complex mean-value branch for those rows.
    """
    n = self.n
    dt = theta.dtype
    p, q = self._pairs[:, 0], self._pairs[:, 1]
    gap, b1, b2 = self._wall_geometry(theta, t)
    tol = 1e-14 if dt == jnp.float64 else 1e-8
    # Gaussian weights of the images, and of those singular at each pair
    img, dm, _ = self._heat_images(dt)
    h = jax.lax.stop_gradient(theta)[:, None, :] + _TWO_PI * jnp.asarray(img, dt)[None]
    logg = -jnp.sum(h * h, axis=-1) / (2.0 * t[:, None])
    wrel = jnp.exp(logg - jnp.max(logg, axis=-1, keepdims=True))          # (B, M)
    l0 = jnp.round(jax.lax.stop_gradient(theta[:, p] - theta[:, q]) / _TWO_PI)
    singular = (l0[:, None, :] + jnp.asarray(dm, dt)) != 0               # (B, M, P)
    wpair = jnp.max(jnp.where(singular, wrel[:, :, None], 0.0), axis=1)  # (B, P)
    near2 = jnp.abs(gap) < b2
    sig = near2 & (wpair > tol)
    nsig = jnp.sum(sig, axis=-1)
    mapped = sig & (nsig == 1)[:, None]
    drop_walls = near2 & ~mapped
    sgn = jnp.where(gap < 0, -1.0, 1.0).astype(dt)
    gnew = sgn * jnp.sqrt(gap * gap + b1 * b1)
    delta = jnp.where(mapped, 0.5 * (gnew - gap), 0.0)                      # (B, P)
    ep = jax.nn.one_hot(p, n, dtype=dt) - jax.nn.one_hot(q, n, dtype=dt)   # (P, n)
    th = theta + delta @ ep
    lp, _ = self._images_real(th, t, drop_walls)
    if n > 2:   # SU(2) has a single pair, hence never two walls
      lp = self._mean_value_rows(theta, t, nsig >= 2, lp)
    const = -0.5 * self.dim * jnp.log(_TWO_PI * t) + 0.5 * self._delta2 * t
    return lp + const

  def _log_terms(self, theta, theta_real):
    """Per image m: log of prod_{p<q} rho(h_p - h_q), rho(a) = (a/2) / sin(a/2), h = theta + 2 pi m.

    The sines are computed once per pair from the gap g = theta_p - theta_q - 2 pi L0
    (sin(a/2) = (-1)^(L0 + m_p - m_q) sin(g/2)), so all images see the same rounding and the
    cancellation of terms that are singular at a wall is exact up to the input rounding.
    theta (B, [K,] n) real or complex; theta_real (B, n) real (chooses L0).
    Returns (logf, sign, singular, exact):
      real theta: logf = log|prod rho| (B, M), sign (B, M);
      complex theta: logf = complex log prod rho (B, K, M), sign None;
      singular (B, M, P) bool: pair factor has L0 + m_p - m_q != 0 (a pole at a wall);
      exact (B, M) bool: a singular sine is exactly 0 (real input only; term to be dropped).
    """
    p, q = self._pairs[:, 0], self._pairs[:, 1]
    rdt = theta_real.dtype
    cplx = jnp.iscomplexobj(theta)
    dr = theta_real[:, p] - theta_real[:, q]
    l0 = jnp.round(dr / _TWO_PI)                                  # (B, P)
    odd0 = jnp.mod(l0, 2.0)                                       # 0 or 1
    dm = self._heat_images(rdt)[1]                                # (M, P) integers
    lt = l0[:, None, :] + jnp.asarray(dm, rdt)                    # (B, M, P)
    singular = lt != 0
    sing_f = singular.astype(rdt)
    if cplx:
      l0k, ltk = l0[:, None, :], lt[:, None]
    else:
      l0k, ltk = l0, lt
    g = theta[..., p] - theta[..., q] - _TWO_PI * l0k             # (B, [K,] P)
    gh = 0.5 * g
    sg = jnp.sin(gh)
    if cplx:
      inv_sinc = 1.0 / _sinc(gh)
    else:
      inv_sinc = 1.0 / nx.sinc(gh * gh)                           # |g| <= pi
    a_half = gh[..., None, :] + math.pi * ltk.astype(g.dtype)     # (B, [K,] M, P)
    f = jnp.where(ltk == 0, inv_sinc[..., None, :], a_half)
    prodf = jnp.prod(f, axis=-1)                                  # (B, [K,] M)
    # parity of the sign (-1)^(L0 + m_p - m_q) of each singular denominator
    odd = jnp.mod(odd0[:, None, :] + jnp.asarray(np.mod(dm, 2), rdt), 2.0)  # (B, M, P)
    if cplx:
      logsg = jnp.log(sg)                                         # (B, K, P)
      lden = jnp.einsum("bmp,bkp->bkm", sing_f, logsg) + 1j * math.pi * jnp.sum(
          sing_f * odd, axis=-1)[:, None, :]
      return jnp.log(prodf) - lden, None, singular, None
    zero = sg == 0
    logsg = jnp.log(jnp.where(zero, 1.0, jnp.abs(sg)))           # (B, P)
    lden = jnp.einsum("bmp,bp->bm", sing_f, logsg)
    neg_sg = (sg < 0).astype(rdt)
    nneg = jnp.sum(sing_f * jnp.mod(odd + neg_sg[:, None, :], 2.0), axis=-1)
    sign = jnp.sign(prodf) * (1.0 - 2.0 * jnp.mod(nneg, 2.0))
    exact = jnp.any(singular & zero[:, None, :], axis=-1)
    absf = jnp.abs(prodf)
    logf = jnp.log(jnp.where(absf > 0, absf, 1.0)) - lden
    return logf, sign, singular, exact

  def _mean_value_rows(self, theta, t, need, lp):
    """Replace lp by the complex mean-value evaluation on the rows flagged in `need` (see
    `_mv_rows`: cost proportional to the number of flagged rows, O(chunk) memory also under
    reverse-mode differentiation)."""
    return _mv_rows(self._images_mean_value, self.n, theta, t, need, lp)

  def _images_real(self, theta, t, drop_walls):
    """log sum_m G(h) prod rho(h_pq) for real theta (B, n); terms singular at a wall flagged in
    drop_walls (B, P) are dropped.  Returns (log sum, max relative Gaussian weight dropped)."""
    dt = theta.dtype
    img = jnp.asarray(self._heat_images(dt)[0], dt)          # (M, n)
    h = theta[:, None, :] + _TWO_PI * img[None]              # (B, M, n)
    logf, sign, singular, exact = self._log_terms(theta, theta)
    drop = jnp.any(singular & drop_walls[:, None, :], axis=-1) | exact   # (B, M)
    logg = -jnp.sum(h * h, axis=-1) / (2.0 * t[:, None])
    logt = logg + logf
    neg = jnp.asarray(-jnp.inf, dt)
    gmax = jnp.max(logg, axis=-1, keepdims=True)
    amax = jax.lax.stop_gradient(jnp.max(jnp.where(drop, neg, logt), axis=-1, keepdims=True))
    amax = jnp.where(jnp.isfinite(amax), amax, jax.lax.stop_gradient(gmax))  # all dropped
    terms = jnp.where(drop, 0.0, sign * jnp.exp(jnp.where(drop, amax, logt) - amax))
    tot = jnp.sum(terms, axis=-1)
    tot = jnp.maximum(tot, jnp.finfo(dt).tiny)
    w_drop = jnp.max(jnp.where(drop, jnp.exp(logg - gmax), 0.0), axis=-1)
    return jnp.log(tot) + amax[:, 0], jax.lax.stop_gradient(w_drop)

  def _images_mean_value(self, theta, t):
    """Complex mean-value (Cauchy) evaluation of the images sum.  (B, n), (B,) -> (B,)."""
    n = self.n
    dt = theta.dtype
    cdt = _complex_dtype(dt)
    kk = _MV_POINTS
    q_mv = 0.28 if dt == jnp.float64 else 0.6
    ranks = jnp.argsort(jnp.argsort(theta, axis=-1), axis=-1).astype(dt)
    w = ranks - 0.5 * (n - 1)
    w = w / jnp.linalg.norm(w, axis=-1, keepdims=True)
    # Taylor coefficients of p along w: linear rate <= |theta| / t, quadratic 1 / 2t.
    tn = jnp.linalg.norm(theta, axis=-1)
    r = jnp.minimum(_MV_RHO_LIN * t / jnp.maximum(tn, 1e-30), jnp.sqrt(2.0 * q_mv * t))
    r = jnp.maximum(r, 16.0 * nx.eps(dt) * (_TWO_PI + tn))   # stay above the rounding of theta
    # The mean value does not depend on the contour (up to the truncation error).
    r = jax.lax.stop_gradient(r)
    w = jax.lax.stop_gradient(w)
    ang = math.pi * (2.0 * np.arange(kk) + 1.0) / kk
    zeta = jnp.asarray(np.exp(1j * ang), cdt)                # (K,)
    thc = theta[:, None, :].astype(cdt) + (r[:, None, None] * w[:, None, :]).astype(cdt) \
        * zeta[None, :, None]                                 # (B, K, n)
    img = jnp.asarray(self._heat_images(dt)[0], dt).astype(cdt)
    h = thc[:, :, None, :] + _TWO_PI * img[None, None]       # (B, K, M, n)
    logf, _, _, _ = self._log_terms(thc, theta)
    logg = -jnp.sum(h * h, axis=-1) / (2.0 * t[:, None, None].astype(cdt))
    logt = logg + logf                                        # (B, K, M) complex
    amax = jax.lax.stop_gradient(jnp.max(jnp.real(logt), axis=(1, 2)))
    tot = jnp.mean(jnp.sum(jnp.exp(logt - amax[:, None, None]), axis=-1), axis=-1)
    val = jnp.maximum(jnp.real(tot), jnp.finfo(dt).tiny)
    return jnp.log(val) + amax

  # ---- characters
  def _log_hk_characters(self, theta, t):
    """Character expansion with Jacobi-Trudi Schur polynomials.  (B, n), (B,) -> (B,)."""
    if self.n <= 4:
      tot = _rowwise(self._character_sum, theta, t)
    else:
      tot = self._character_sum(theta, t)
    tot = jnp.maximum(tot, jnp.finfo(theta.dtype).tiny)
    return jnp.log(tot) - self.log_volume()

  def _character_sum(self, theta, t):
    """sum_lambda d_lambda e^{-C(lambda) t/2} Re s_lambda(e^{i theta}), (B, n), (B,) -> (B,).

    s_lambda = det[h_{lambda_i - i + j}] (h_k complete homogeneous, from the elementary
    symmetric polynomials by Newton's recurrence; division-free, so coincident eigenvalues
    need no care).  n <= 4: each determinant written out on the per-row arrays h_k and
    accumulated, so the whole sum is one elementwise fusion (a gather into (B, L, r, r)
    costs ~15x more here, and its reverse mode, a scatter-add, ~100x); n >= 5: LU."""
    n = self.n
    dt = theta.dtype
    cdt = _complex_dtype(dt)
    lams, cas, logd = self._chr_tables[np.dtype(dt)]
    kmax = int(lams.max()) + n  # h_k needed for k <= lambda_1 + n - 2
    z = jnp.exp(1j * theta.astype(cdt))                       # (B, n)
    # elementary symmetric e_0..e_n
    es = [jnp.ones_like(z[:, 0])] + [jnp.zeros_like(z[:, 0])] * n
    for j in range(n):
      for k in range(j + 1, 0, -1):
        es[k] = es[k] + z[:, j] * es[k - 1]
    hs = [jnp.ones_like(z[:, 0])]
    for k in range(1, kmax + 1):
      acc = jnp.zeros_like(z[:, 0])
      for i in range(1, min(k, n) + 1):
        term = es[i] * hs[k - i]
        acc = acc + term if i % 2 == 1 else acc - term
      hs.append(acc)
    r = n - 1
    zero = jnp.zeros_like(z[:, 0])
    tot = jnp.zeros_like(t)
    for lam, c, ld in zip(lams, cas, logd):
      mat = [[hs[lam[i] - i + j] if lam[i] - i + j >= 0 else zero for j in range(r)]
             for i in range(r)]
      if r <= 3:
        s = _det_lists(mat)
      else:  # (the Laplace expansion grows like r!)
        s = jnp.linalg.det(jnp.stack([jnp.stack(row, -1) for row in mat], -2))
      tot = tot + jnp.exp(float(ld) - (0.5 * float(c)) * t) * jnp.real(s)
    return tot

  # ---- sampling
  @_jit_method
  def sample_heat_kernel(self, key, x, t):
    x = jnp.asarray(x)
    rdt = nx.real_dtype(x)
    t = jnp.asarray(t, rdt)
    shape = jnp.broadcast_shapes(x.shape[:-2], t.shape)
    xb = jnp.broadcast_to(x, shape + self.shape).reshape((-1,) + self.shape)
    tb = jnp.broadcast_to(t, shape).reshape((-1,))
    k1, k2 = jax.random.split(key)
    theta = self._sample_angles(k1, tb)                       # (B, n) real
    q = _haar_eigvecs(k2, theta.shape[:1], self.n, x.dtype)   # eigenvectors: Haar on U(n)
    g = _conj_diag(q, jnp.exp(1j * theta.astype(x.dtype)))
    y = matmul(xb, g)
    return y.reshape(shape + self.shape)

  def _sample_angles(self, key, t):
    """Exact draws of the eigen-angles of Y ~ p_t(I, .): (B,) -> (B, n).

    Rejection sampling with compaction: every round proposes only for the pending draws,
    in chunks of static size, so the total work is ~ B / acceptance.
    """
    n = self.n
    rdt = t.dtype
    bsz = t.shape[0]
    lp0 = self._log_hk_characters(jnp.zeros((bsz, n), rdt), jnp.maximum(t, T_SWITCH))
    log_rate_gauss = -0.5 * self._delta2 * t
    log_rate_unif = (math.lgamma(n + 1) - n * math.log(n)) - (self.log_volume() + lp0)
    use_gauss = (t < T_SWITCH) | ((log_rate_gauss >= log_rate_unif) & (t <= _T_GAUSS_MAX))
    chunk = int(min(_SAMPLE_CHUNK, bsz))
    nchunk_max = -(-bsz // chunk)
    pad = nchunk_max * chunk - bsz

    def propose(k, tt, gauss, l0):
      kg, ku, ka = jax.random.split(k, 3)
      th_g, r_g = jax.lax.cond(jnp.any(gauss), lambda: self._propose_gauss(kg, tt),
                               lambda: (jnp.zeros((chunk, n), rdt), jnp.zeros((chunk,), rdt)))
      th_u, r_u = jax.lax.cond(jnp.any(~gauss), lambda: self._propose_uniform(ku, tt, l0),
                               lambda: (jnp.zeros((chunk, n), rdt), jnp.zeros((chunk,), rdt)))
      th = jnp.where(gauss[:, None], th_g, th_u)
      ratio = jnp.where(gauss, r_g, r_u)
      u = jax.random.uniform(ka, (chunk,), rdt)
      return th, u < ratio

    def round_body(state):
      k, out, pending, it = state
      k, kr = jax.random.split(k)
      count = jnp.sum(pending)
      idx = jnp.nonzero(pending, size=bsz, fill_value=bsz)[0]
      idx = jnp.concatenate([idx, jnp.full((pad,), bsz, idx.dtype)])
      nchunks = (count + chunk - 1) // chunk

      def chunk_body(c, carry):
        out, pending = carry
        ids = jax.lax.dynamic_slice(idx, (c * chunk,), (chunk,))
        valid = ids < bsz
        safe = jnp.where(valid, ids, 0)
        th, acc = propose(jax.random.fold_in(kr, c), t[safe], use_gauss[safe], lp0[safe])
        acc = acc & valid
        new = jnp.where(acc[:, None], th, out[safe])
        out = out.at[ids].set(new, mode="drop")
        pending = pending.at[ids].set(~acc, mode="drop")
        return out, pending

      out, pending = jax.lax.fori_loop(0, nchunks, chunk_body, (out, pending))
      return k, out, pending, it + 1

    def cond(state):
      return jnp.any(state[2]) & (state[3] < _MAX_ROUNDS)

    init = (key, jnp.zeros((bsz, n), rdt), jnp.ones((bsz,), bool), 0)
    _, out, _, _ = jax.lax.while_loop(cond, round_body, init)
    return out

  def _propose_gauss(self, key, t):
    """Eigen-angles h of X ~ N(0, t I) on su(n) (GUE, trace removed) and the acceptance
    probability Delta(theta) sum_m G V / sum_m G V^2 (<= 1 termwise).  (C,) -> (C, n), (C,)."""
    n = self.n
    rdt = t.dtype
    h = _gue_eigenvalues(key, t.shape[0], n, rdt) * jnp.sqrt(t)[:, None]
    th = _minimal_angles(h)
    p, q = self._pairs[:, 0], self._pairs[:, 1]
    img = jnp.asarray(self._images, rdt)
    hh = th[:, None, :] + _TWO_PI * img[None]                 # (C, M, n)
    vand = jnp.prod(hh[..., p] - hh[..., q], axis=-1)
    logg = -jnp.sum(hh * hh, axis=-1) / (2.0 * t[:, None])
    wgt = jnp.exp(logg - jnp.max(logg, axis=-1, keepdims=True))
    num = jnp.sum(wgt * vand, axis=-1)
    den = jnp.sum(wgt * vand * vand, axis=-1)
    delta = jnp.prod(2.0 * jnp.sin(0.5 * (th[:, p] - th[:, q])), axis=-1)
    ok = den > 0
    ratio = jnp.where(ok, delta * num / jnp.where(ok, den, 1.0), 0.0)
    return th, ratio

  def _propose_uniform(self, key, t, lp0):
    """Uniform angles on the maximal torus; acceptance p_t(theta) |Delta|^2 / (p_t(I) n^n)."""
    n = self.n
    rdt = t.dtype
    c = t.shape[0]
    a = jax.random.uniform(key, (c, n - 1), rdt, minval=-math.pi, maxval=math.pi)
    th = jnp.concatenate([a, -jnp.sum(a, axis=-1, keepdims=True)], axis=-1)
    p, q = self._pairs[:, 0], self._pairs[:, 1]
    lp = self._log_hk_characters(th, jnp.maximum(t, T_SWITCH))
    logd2 = jnp.sum(jnp.log(jnp.maximum(4.0 * jnp.sin(0.5 * (th[:, p] - th[:, q])) ** 2,
                                        jnp.finfo(rdt).tiny)), axis=-1)
    return th, jnp.exp(jnp.minimum(lp - lp0 + logd2 - n * math.log(n), 0.0))


def _haar_eigvecs(key, batch, n, cdt):
  """Eigenvector matrices for the sampler: Haar on U(n) up to the phases of the columns,
  which cancel in Q diag(.) Q^H.  n <= 3: Gram-Schmidt of complex Ginibre columns (the Q of
  the QR with positive diag R, i.e. Haar), elementwise over the batch and done twice so the
  columns are orthonormal to round-off for any conditioning ("twice is enough"); batched
  LAPACK QR of tiny matrices is ~10x slower on CPU.  Larger n: `_haar_unitary`."""
  if n > 3:
    return _haar_unitary(key, batch, n, cdt)
  rdt = jnp.empty((), cdt).real.dtype
  shape = tuple(batch) + (n, n)
  k1, k2 = jax.random.split(key)
  z = jax.lax.complex(jax.random.normal(k1, shape, rdt), jax.random.normal(k2, shape, rdt))
  cols = [[z[..., i, j] for i in range(n)] for j in range(n)]   # cols[j][i] = z_ij

  def dot(a, b):  # <a, b> = sum conj(a) b
    return sum(jnp.conj(ai) * bi for ai, bi in zip(a, b))

  qs = []
  for j in range(n):
    v = cols[j]
    for _ in range(2):
      for q in qs:
        c = dot(q, v)
        v = [vi - c * qi for vi, qi in zip(v, q)]
    nrm = jnp.sqrt(jnp.real(dot(v, v))).astype(cdt)
    qs.append([vi / nrm for vi in v])
  return jnp.stack([jnp.stack(q, -1) for q in qs], -1)   # [..., i, j] = qs[j][i]


def _haar_unitary(key, batch, n, cdt):
  """Haar-distributed U(n) matrices (QR of complex Ginibre, phases of diag R into Q)."""
  rdt = jnp.empty((), cdt).real.dtype
  shape = tuple(batch) + (n, n)
  k1, k2 = jax.random.split(key)
  z = jax.lax.complex(jax.random.normal(k1, shape, rdt), jax.random.normal(k2, shape, rdt))
  q, r = jnp.linalg.qr(z)
  d = jnp.diagonal(r, axis1=-2, axis2=-1)
  ad = jnp.abs(d)
  ph = d / jnp.where(ad > 0, ad, 1.0).astype(d.dtype)
  return q * ph[..., None, :]


def _gue_eigenvalues(key, c, n, rdt):
  """Traceless GUE eigenvalues (density ~ exp(-|h|^2/2) prod (h_j - h_k)^2 on sum h = 0):
  Dumitriu-Edelman tridiagonal model (diagonal N(0, 1), off-diagonal sqrt(Gamma(k)),
  k = n-1, ..., 1) and a vectorized Jacobi eigenvalue iteration; the mean is removed (the trace
  part of a GUE matrix is independent of the rest).  -> (c, n)."""
  k1, k2 = jax.random.split(key)
  diag = jax.random.normal(k1, (c, n), rdt)
  # Gamma(k) for integer k as a sum of k standard exponentials.
  e = -jnp.log(jax.random.uniform(k2, (c, n * (n - 1) // 2), rdt,
                                  minval=jnp.finfo(rdt).tiny, maxval=1.0))
  offs, start = [], 0
  for k in range(n - 1, 0, -1):
    offs.append(jnp.sqrt(jnp.sum(e[:, start:start + k], axis=-1)))
    start += k
  zero = jnp.zeros((c,), rdt)
  a = [[zero] * n for _ in range(n)]
  for i in range(n):
    a[i][i] = diag[:, i]
  for i in range(n - 1):
    a[i][i + 1] = a[i + 1][i] = offs[i]
  ev = _jacobi_eigvalsh_lists(a, 8 if rdt == jnp.float64 else 6)
  return ev - jnp.mean(ev, axis=-1, keepdims=True)


def _jacobi_eigvalsh_lists(a, sweeps):
  """Eigenvalues of small real symmetric matrices given as nested lists of (c,) arrays, by
  cyclic Jacobi rotations (elementwise, vectorized over the batch; the sweeps run in a
  fori_loop so the compiled program stays small).  -> (c, n) sorted."""
  n = len(a)
  pairs = [(p, q) for p in range(n) for q in range(p + 1, n)]
  diag0 = jnp.stack([a[i][i] for i in range(n)], axis=-1)
  off0 = jnp.stack([a[p][q] for p, q in pairs], axis=-1)

  def sweep(_, carry):
    d, o = carry
    d = [d[..., i] for i in range(n)]
    o = {pq: o[..., k] for k, pq in enumerate(pairs)}

    def get(i, j):
      return d[i] if i == j else o[(min(i, j), max(i, j))]

    for p, q in pairs:
      apq = o[(p, q)]
      nz = apq != 0
      tau = (d[q] - d[p]) / (2.0 * jnp.where(nz, apq, 1.0))
      tt = jnp.where(tau >= 0, 1.0, -1.0) / (jnp.abs(tau) + jnp.sqrt(1.0 + tau * tau))
      tt = jnp.where(nz, tt, 0.0)
      cs = 1.0 / jnp.sqrt(1.0 + tt * tt)
      sn = tt * cs
      for k in range(n):
        if k in (p, q):
          continue
        akp, akq = get(k, p), get(k, q)
        o[(min(k, p), max(k, p))] = cs * akp - sn * akq
        o[(min(k, q), max(k, q))] = sn * akp + cs * akq
      d[p] = d[p] - tt * apq
      d[q] = d[q] + tt * apq
      o[(p, q)] = jnp.zeros_like(apq)
    return jnp.stack(d, axis=-1), jnp.stack([o[pq] for pq in pairs], axis=-1)

  d, _ = jax.lax.fori_loop(0, sweeps, sweep, (diag0, off0))
  return jnp.sort(d, axis=-1)


def _mv_rows_impl(mv_fn, n, theta, t, need, lp, with_grad):
  """Flagged rows are gathered to the front and processed in chunks of _MV_CHUNK rows; a chunk
  runs only if it holds flagged rows (lax.cond inside a static scan).  With with_grad, the
  per-row gradients of mv_fn w.r.t. (theta, t) are computed in the same pass (rows are
  independent, so one VJP with unit cotangents gives them)."""
  bsz = theta.shape[0]
  dt = theta.dtype
  c = int(min(_MV_CHUNK, bsz))
  nch = -(-bsz // c)
  idx = jnp.nonzero(need, size=nch * c, fill_value=bsz)[0]
  count = jnp.sum(need)
  generic = jnp.asarray(np.linspace(-0.5, 0.5, n), dt)   # placeholder rows: never singular
  gth0 = jnp.zeros_like(theta)
  gt0 = jnp.zeros_like(t)

  def body(carry, k):
    ids = jax.lax.dynamic_slice(idx, (k * c,), (c,))
    valid = ids < bsz
    safe = jnp.where(valid, ids, 0)

    def run(carry):
      out, gth, gt = carry
      th = jnp.where(valid[:, None], theta[safe], generic)
      tt = t[safe]
      if with_grad:
        val, vjp = jax.vjp(mv_fn, th, tt)
        g1, g2 = vjp(jnp.ones_like(val))
        gth = gth.at[ids].set(g1, mode="drop")
        gt = gt.at[ids].set(g2, mode="drop")
      else:
        val = mv_fn(th, tt)
      return out.at[ids].set(val, mode="drop"), gth, gt

    return jax.lax.cond(k * c < count, run, lambda cr: cr, carry), None

  (out, gth, gt), _ = jax.lax.scan(body, (lp, gth0, gt0), jnp.arange(nch))
  return out, gth, gt


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _mv_rows(mv_fn, n, theta, t, need, lp):
  """lp with the rows flagged in `need` replaced by mv_fn(theta, t) on those rows.

  Custom JVP: the tangent is sum_k g_k dtheta_k + g_t dt with per-row gradients computed in the
  forward pass, so reverse mode stores only (B, n) residuals instead of the branch's
  intermediates for every chunk."""
  return _mv_rows_impl(mv_fn, n, theta, t, need, lp, with_grad=False)[0]


@_mv_rows.defjvp
def _mv_rows_jvp(mv_fn, n, primals, tangents):
  theta, t, need, lp = primals
  dth, dtt, _, dlp = tangents
  out, gth, gt = _mv_rows_impl(mv_fn, n, theta, t, need, lp, with_grad=True)
  dout = jnp.where(need, jnp.sum(gth * dth, axis=-1) + gt * dtt, dlp)
  return out, dout


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _rowwise(fn, theta, t):
  """fn(theta, t) for a row-wise elementwise fn: (B, n), (B,) -> (B,).

  Custom JVP: the per-row gradients (n + 1 forward-mode JVPs of the fused elementwise
  program, cheap) are formed in the forward pass and the tangent is their dot product with
  (dtheta, dt), so reverse mode only transposes that product instead of storing and
  reversing every intermediate of fn (measured ~2x the cost otherwise)."""
  return fn(theta, t)


@_rowwise.defjvp
def _rowwise_jvp(fn, primals, tangents):
  theta, t = primals
  dth, dtt = tangents
  n = theta.shape[-1]
  val = fn(theta, t)
  grads = []
  for j in range(n):
    e = jnp.zeros_like(theta).at[..., j].set(1.0)
    grads.append(jax.jvp(lambda a: fn(a, t), (theta,), (e,))[1])
  g_t = jax.jvp(lambda s: fn(theta, s), (t,), (jnp.ones_like(t),))[1]
  dout = sum(g * dth[..., j] for j, g in enumerate(grads)) + g_t * dtt
  return val, dout


def _class_gradient(log_k, h, t):
  """grad of the class function log_k over the eigen-angles, projected to sum 0.
  h (..., n), t (...) -> (..., n).  (Reverse mode; the characters sum brings its per-row
  gradients from forward mode, `_rowwise`.)"""
  c = jax.grad(lambda th: jnp.sum(log_k(th, t)))(h)
  return c - jnp.mean(c, axis=-1, keepdims=True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _score_algebra(log_k, m, t):
  """The left-trivialized gradient A in su(n) of y -> log_k(angles(x^H y), t): the score is
  y A.  With m = x^H y = Q diag(e^{i h}) Q^H: A = Q diag(i c) Q^H, c = grad log_k (sum 0).
  m (..., n, n), t (...) -> (..., n, n).

  `_unitary_eig` carries no gradient, so the derivative (needed e.g. for the divergence of a
  field built from the score) is given explicitly below."""
  h, q = _unitary_eig(m)
  c = _class_gradient(log_k, h, t)
  return _conj_diag(q, (1j * c).astype(m.dtype))


@_score_algebra.defjvp
def _score_algebra_jvp(log_k, primals, tangents):
  """Perturbation of the normal matrix m = Q L Q^H (L = diag(lam), lam = e^{i h}):
  b = Q^H dm Q, dlam_k = b_kk (so dh_k = Im(conj(lam_k) b_kk), projected to sum 0) and
  Q^H dQ = K with K_jk = b_jk / (lam_k - lam_j) (j != k).  With C = diag(i c):
  dA = Q (i diag(dc) + K C - C K) Q^H, (K C - C K)_jk = i b_jk (c_k - c_j) / (lam_k - lam_j).
  The quotient is finite at coincident eigenvalues: c is the gradient of a symmetric (and
  2 pi-periodic) function, so c_k - c_j ~ (H_kk - H_jk) delta with delta = h_k - h_j (mod 2 pi)
  and lam_k - lam_j ~ i lam delta; below |lam_k - lam_j| ~ eps^(1/3) (where the O(delta^2)
  error of that limit meets the O(eps / delta) rounding of the quotient) the Hessian form is
  used."""
  m, t = primals
  dm, dt = tangents
  h, q = _unitary_eig(m)
  cdt = m.dtype
  lam = jnp.exp(1j * h.astype(cdt))
  b = matmul(_dag(q), matmul(dm, q))
  dh = jnp.imag(jnp.conj(lam) * jnp.diagonal(b, axis1=-2, axis2=-1)).astype(h.dtype)
  dh = dh - jnp.mean(dh, axis=-1, keepdims=True)
  grad_fn = lambda th, tt: _class_gradient(log_k, th, tt)
  c, dc = jax.jvp(grad_fn, (h, t), (dh, jnp.asarray(dt, t.dtype)))
  # Hessian columns by n forward passes over the whole batch: hess[..., k, j] = d c_k / d h_j.
  n = h.shape[-1]
  zt = jnp.zeros_like(t)
  cols = [jax.jvp(grad_fn, (h, t), (jnp.broadcast_to(jnp.eye(n, dtype=h.dtype)[j], h.shape),
                                   zt))[1] for j in range(n)]
  hess = jnp.stack(cols, axis=-1)
  # hess[..., k, j] = d c_k / d h_j
  hkk = jnp.diagonal(hess, axis1=-2, axis2=-1)
  sym = 0.5 * (hkk[..., None, :] + hkk[..., :, None] - hess - jnp.swapaxes(hess, -1, -2))
  dlam = lam[..., None, :] - lam[..., :, None]            # [j, k] = lam_k - lam_j
  dcjk = (c[..., None, :] - c[..., :, None]).astype(cdt)   # [j, k] = c_k - c_j
  mid = 0.5 * (lam[..., None, :] + lam[..., :, None])
  thr = nx.eps(h.dtype) ** (1.0 / 3.0)
  near = jnp.abs(dlam) < thr
  quot = jnp.where(near, sym.astype(cdt) / (1j * jnp.where(near, mid, 1.0)),
                   dcjk / jnp.where(near, 1.0, dlam))
  eye = jnp.eye(h.shape[-1], dtype=bool)
  off = jnp.where(eye, 0.0, 1j * b * quot)
  inner = off + jnp.where(eye, 1.0, 0.0) * (1j * dc.astype(cdt))[..., None, :]
  a = _conj_diag(q, (1j * c).astype(cdt))
  return a, matmul(q, matmul(inner, _dag(q)))


def _chunked(f, args, chunk):
  """Apply a batch-native f to (B, ...) arrays in sequential chunks of static size (lax.map
  over chunks, no vmap, so lax.cond inside f still skips work).  Returns f's (B, ...) output."""
  bsz = args[0].shape[0]
  if bsz <= chunk:
    return f(*args)
  nch = -(-bsz // chunk)
  pad = nch * chunk - bsz

  def prep(a):
    fill = jnp.broadcast_to(a[:1], (pad,) + a.shape[1:])
    return jnp.concatenate([a, fill], axis=0).reshape((nch, chunk) + a.shape[1:])

  # jax.checkpoint: reverse mode recomputes each chunk instead of storing its temporaries.
  out = jax.lax.map(jax.checkpoint(lambda xs: f(*xs)), tuple(prep(a) for a in args))
  return out.reshape((nch * chunk,) + out.shape[2:])[:bsz]


def _det_lists(a):
  """Determinant of a small matrix given as nested lists of arrays (Laplace expansion along
  the first row; for r <= 3)."""
  r = len(a)
  if r == 1:
    return a[0][0]
  if r == 2:
    return a[0][0] * a[1][1] - a[0][1] * a[1][0]
  out = 0.0
  for j in range(r):
    minor = [[a[i][k] for k in range(r) if k != j] for i in range(1, r)]
    term = a[0][j] * _det_lists(minor)
    out = out + term if j % 2 == 0 else out - term
  return out


def _det(a):
  """Determinant of (..., r, r) complex matrices, explicit for r <= 3."""
  r = a.shape[-1]
  if r == 1:
    return a[..., 0, 0]
  if r == 2:
    return a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
  if r == 3:
    return (a[..., 0, 0] * (a[..., 1, 1] * a[..., 2, 2] - a[..., 1, 2] * a[..., 2, 1])
            - a[..., 0, 1] * (a[..., 1, 0] * a[..., 2, 2] - a[..., 1, 2] * a[..., 2, 0])
            + a[..., 0, 2] * (a[..., 1, 0] * a[..., 2, 1] - a[..., 1, 1] * a[..., 2, 0]))
  return jnp.linalg.det(a)


def _log_abs_sinc(r):
  """log |sin r / r| for real r (any size); log(tiny) at r in pi Z \\ {0}."""
  small = jnp.abs(r) < 0.5 * math.pi
  rs = jnp.where(small, r, 0.0)
  val_small = nx.log_sinc(rs * rs)
  rl = jnp.where(small, 1.0, r)
  tiny = jnp.finfo(r.dtype).tiny
  s = jnp.abs(jnp.sin(rl))
  val_large = jnp.log(jnp.maximum(s, tiny)) - jnp.log(jnp.abs(rl))
  return jnp.where(small, val_small, val_large)
