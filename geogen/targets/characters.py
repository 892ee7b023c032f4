r"""Exact references of 2D lattice gauge theory (Wilson action, L x L periodic lattice).

Character expansion
-------------------
The Boltzmann weight of one plaquette, f(U) = exp((beta/N) Re tr U), is a class function, so
f(U) = sum_r d_r c_r(beta) chi_r(U) with c_r = (1/d_r) int f(U) conj(chi_r(U)) dU (Haar
probability measure dU).  Integrating the links of a closed orientable surface with P
plaquettes and Euler characteristic chi gives Z = sum_r d_r^chi c_r^P (each link joins two
plaquettes; int chi_r(A U) chi_s(U^H B) dU = delta_rs chi_r(A B) / d_r).  The periodic
L x L lattice is a torus, chi = 0, P = L^2, so with the Haar probability measure on every link

    Z_Haar(beta) = sum_r c_r(beta)^(L^2),
    <(1/N) Re tr U_p> = (1/L^2) d log Z_Haar / d beta = sum_r w_r c_r'(beta) / c_r(beta),
    w_r = c_r^(L^2) / Z_Haar.

Character coefficients (x = beta / N):
* U(1) (N = 1), irreps n in Z:   c_n = I_n(beta).
* SU(2), spin j, n = 2j + 1 >= 1: c_n = 2 I_n(beta) / beta
  (from (2/pi) int_0^pi e^(beta cos t) sin(n t) sin t dt = I_{n-1} - I_{n+1} = 2 n I_n / beta).
* SU(N), N >= 3, irrep with highest weight lambda = (lambda_1 >= ... >= lambda_{N-1} >= 0,
  lambda_N = 0): d_lambda c_lambda = sum_{q in Z} det[I_{lambda_i - i + j + q}(x)]_{i,j=1..N}
  (the U(N) formula int chi_lambda(U^H) exp(x Re tr U) dU = det[I_{lambda_i - i + j}(x)], with
  the constraint det U = 1 imposed by sum_q det(U)^q).  For SU(3), (p, q) <-> lambda =
  (p + q, q), d = (p + 1)(q + 1)(p + q + 2) / 2.

All coefficients are positive.  Numerics: exponentially scaled Bessel functions (scipy ``ive``),
so the c_r are computed as c_r e^(-beta) (exact common factor: e^(N x) = e^beta), in float64.
Truncation: irreps are added shell by shell (|n| or lambda_1) until a whole shell (and the
next) is below 1e-30 of the largest coefficient; the coefficients decay like
(x/2)^lambda_1 / lambda_1! so the neglected tail is below 1e-28 relative.  The q-sum of the
SU(N) determinants runs over |q| <= q_max with I_{q_max - N}(x) / I_0(x) < 1e-30.

Topological charge (U(1))
-------------------------
Q = (1/2pi) sum_p wrap(theta_p), wrap into [-pi, pi).  On the torus the plaquette angles are
uniform on {sum_p theta_p = 0 mod 2 pi} under Haar, so Q is an integer and with
J(nu) = (1/2pi) int_{-pi}^{pi} e^{beta cos phi} cos(nu phi) dphi (J(n) = I_n(beta)):
    Z(u) = E[e^{i u 2 pi Q}] Z = sum_n J(n + u)^P,   <Q^2> = -Z''(0) / (4 pi^2 Z(0))
         = -(1/4pi^2) sum_n w_n [P (P - 1) (J'(n)/J(n))^2 + P J''(n)/J(n)].
J', J'' at integers are 1-D integrals of entire periodic-times-polynomial functions; they are
computed by Gauss-Legendre quadrature on [-pi, pi] with enough nodes to be exact to float64.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

_REL_CUT = 1e-30          # shells below this fraction of the largest coefficient are dropped
_MAX_SHELL = 2000


def _bessel_cutoff(x: float, rel: float = _REL_CUT) -> int:
  """Smallest n > x with I_n(x) / I_0(x) < rel (I_n decreases in n >= 0)."""
  if x <= 0.0:
    return 1
  i0 = special.ive(0, x)
  n = int(math.ceil(x)) + 1
  while special.ive(n, x) >= rel * i0:
    n += max(1, n // 8)
  return n


@dataclass(frozen=True)
class Irreps:
  """Character coefficients of one plaquette weight, scaled by e^(-beta).

  labels: list of irrep labels (n for U(1)/SU(2), lambda tuples for SU(N));
  log_c: (R,) log(c_r e^(-beta)); dlog_c: (R,) c_r' / c_r (derivative in beta);
  dims: (R,) irrep dimensions.
  """
  labels: tuple
  log_c: np.ndarray
  dlog_c: np.ndarray
  dims: np.ndarray


def _check_beta(beta):
  beta = float(beta)
  if not (beta > 0.0 and math.isfinite(beta)):
    raise ValueError(f"lattice gauge theory references need a finite beta > 0, got {beta!r}")
  return beta


def u1_irreps(beta: float) -> Irreps:
  """U(1): c_n = I_n(beta), n in [-n_max, n_max]."""
  beta = _check_beta(beta)
  nmax = _bessel_cutoff(beta)
  n = np.arange(-nmax, nmax + 1)
  a = special.ive(n, beta)
  da = 0.5 * (special.ive(n - 1, beta) + special.ive(n + 1, beta))
  keep = a > 0
  return Irreps(tuple(int(k) for k in n[keep]), np.log(a[keep]), da[keep] / a[keep],
                np.ones(int(keep.sum())))


def su2_irreps(beta: float) -> Irreps:
  """SU(2): c_n = 2 I_n(beta) / beta, n = 2j + 1 = 1 .. n_max."""
  beta = _check_beta(beta)
  nmax = _bessel_cutoff(beta)
  n = np.arange(1, nmax + 1)
  a = special.ive(n, beta)
  da = 0.5 * (special.ive(n - 1, beta) + special.ive(n + 1, beta))
  keep = a > 0
  n, a, da = n[keep], a[keep], da[keep]
  return Irreps(tuple(int(k) for k in n), np.log(2.0 * a / beta), da / a - 1.0 / beta,
                n.astype(np.float64))


def _partitions_with_first(m: int, parts: int):
  """All (lambda_1 = m >= lambda_2 >= ... >= lambda_parts >= 0)."""
  if parts == 1:
    return [(m,)]
  out = []

  def rec(prefix, maxv, left):
    if left == 0:
      out.append(tuple(prefix))
      return
    for v in range(maxv, -1, -1):
      rec(prefix + [v], v, left - 1)

  rec([m], m, parts - 1)
  return out


def sun_dimension(lam, n: int) -> int:
  """Weyl dimension formula: prod_{i<j} (l_i - l_j + j - i) / (j - i), lambda padded to n."""
  l = list(lam) + [0] * (n - len(lam))
  num, den = 1, 1
  for i in range(n):
    for j in range(i + 1, n):
      num *= l[i] - l[j] + j - i
      den *= j - i
  return num // den


def sun_coefficient_terms(lams, n: int, x: float):
  """F_lambda e^(-n x) = sum_q det[ive_{lambda_i - i + j + q}(x)] and (dF_lambda/dx) e^(-n x).

  lams: (R, n) integer array (lambda_n = 0).  -> (F, dF) float64 arrays (R,).
  The derivative uses Jacobi's formula row by row (stable for nearly singular matrices) with
  (dI_m/dx) e^(-x) = (ive_{m-1} + ive_{m+1}) / 2, so both carry the same factor e^(-n x).
  """
  lams = np.asarray(lams, dtype=np.int64)
  qmax = _bessel_cutoff(x) + n + int(lams.max(initial=0))
  q = np.arange(-qmax, qmax + 1)
  i = np.arange(n)
  idx = lams[:, None, :, None] - i[None, None, :, None] + i[None, None, None, :] + q[None, :, None, None]
  a = special.ive(idx, x)                                             # (R, Q, n, n)
  da = 0.5 * (special.ive(idx - 1, x) + special.ive(idx + 1, x))      # d I_m/dx e^(-x)
  det = np.linalg.det(a)
  ddet = np.zeros_like(det)
  for r in range(n):
    b = a.copy()
    b[..., r, :] = da[..., r, :]
    ddet += np.linalg.det(b)
  return det.sum(axis=1), ddet.sum(axis=1)


def sun_irreps(n: int, beta: float) -> Irreps:
  """SU(N), N >= 3: c_lambda = F_lambda(beta / N) / d_lambda, all lambda with small enough
  lambda_1 (shell by shell, see module docstring)."""
  beta = _check_beta(beta)
  if n < 2:
    raise ValueError(f"sun_irreps needs N >= 2, got {n}")
  x = beta / n
  labels, logc, dlogc, dims = [], [], [], []
  best = -math.inf
  below = 0
  for m in range(_MAX_SHELL):
    lams = [l + (0,) for l in _partitions_with_first(m, n - 1)]
    f, df = sun_coefficient_terms(np.array(lams), n, x)
    d = np.array([sun_dimension(l, n) for l in lams], dtype=np.float64)
    good = f > 0
    lc = np.full(f.shape, -math.inf)
    lc[good] = np.log(f[good] / d[good])
    shell_max = float(np.max(lc))
    best = max(best, shell_max)
    if m > 0 and shell_max < best + math.log(_REL_CUT):
      below += 1
      if below == 2:
        break
      continue
    below = 0
    for k, l in enumerate(lams):
      if good[k] and lc[k] > best + math.log(_REL_CUT):
        labels.append(tuple(int(v) for v in l[:-1]))
        logc.append(lc[k])
        dlogc.append(df[k] / f[k] / n)
        dims.append(d[k])
      elif not good[k] and abs(f[k]) > 1e-12 * math.exp(best) * d[k]:
        raise ArithmeticError(f"SU({n}) character coefficient {l} came out {f[k]:.3g} <= 0 "
                              "beyond round-off")
  else:
    raise ArithmeticError(f"SU({n}) character expansion did not converge at beta={beta}")
  return Irreps(tuple(labels), np.array(logc), np.array(dlogc), np.array(dims))


def irreps(group: str, beta: float) -> Irreps:
  """Character coefficients for group in {'u1', 'su2', 'su3', 'su<N>'}."""
  if group == "u1":
    return u1_irreps(beta)
  if group == "su2":
    return su2_irreps(beta)
  if group.startswith("su") and group[2:].isdigit() and int(group[2:]) >= 3:
    return sun_irreps(int(group[2:]), beta)
  raise ValueError(f"unknown gauge group {group!r}; valid: u1, su2, su3 (su<N>, N >= 3)")


def _logsumexp(a):
  m = np.max(a)
  return float(m + np.log(np.sum(np.exp(a - m))))


@dataclass(frozen=True)
class LatticeReference:
  """Exact results for the Wilson action on an L x L periodic lattice.

  log_z_haar: log Z with the Haar probability measure on every link.
  log_z_volume: log Z w.r.t. the Riemannian volume of the link manifold
    (= log_z_haar + 2 L^2 log vol(G)).
  plaquette: <(1/N) Re tr U_p>.
  q2: <Q^2> of the topological charge (U(1) only, else None).
  """
  group: str
  L: int
  beta: float
  log_z_haar: float
  log_z_volume: float
  plaquette: float
  q2: float | None


def group_log_volume(group: str) -> float:
  """log vol(G) for the Riemannian metric of the link manifold: 2 pi for U(1) = Torus(1);
  sqrt(N) (2 pi)^((N^2+N-2)/2) / prod_{k<N} k! for SU(N) with <X, Y> = Re tr(X^H Y)."""
  if group == "u1":
    return math.log(2.0 * math.pi)
  n = int(group[2:])
  return (0.5 * math.log(n) + 0.5 * (n * n + n - 2) * math.log(2.0 * math.pi)
          - sum(math.lgamma(k + 1.0) for k in range(1, n)))


@functools.lru_cache(maxsize=16)
def _gauss_legendre(nodes: int):
  return np.polynomial.legendre.leggauss(nodes)


def u1_topological_q2(beta: float, L: int) -> float:
  """<Q^2> for U(1) on the L x L torus (module docstring formula), P = L^2 plaquettes.

  Written as sum_n [P (P-1) J_n^(P-2) J'_n^2 + P J_n^(P-1) J''_n] / sum_n J_n^P with
  J_n = I_n(beta) exact; J'_n, J''_n by Gauss-Legendre quadrature.  For L = 1 the single
  plaquette angle is identically 0, so Q = 0 (the n-sum converges only like 1/n there).
  """
  beta = _check_beta(beta)
  p = L * L
  if p == 1:
    return 0.0
  nmax = _bessel_cutoff(beta)
  n = np.arange(-nmax, nmax + 1, dtype=np.float64)
  # Gauss-Legendre on [-pi, pi]: the integrands are entire, with at most ~nmax + beta
  # oscillations; 4 (nmax + beta) + 200 nodes integrate them to float64 round-off.
  nodes = 64 * (int(4 * (nmax + beta) + 200) // 64 + 1)
  t, w = _gauss_legendre(nodes)
  phi = math.pi * t
  g = np.exp(beta * (np.cos(phi) - 1.0)) * (0.5 * w)   # (1/2pi) dphi, scaled by e^(-beta)
  j0 = special.ive(n, beta)
  j1 = -(np.sin(n[:, None] * phi[None, :]) * phi[None, :]) @ g
  j2 = -(np.cos(n[:, None] * phi[None, :]) * phi[None, :] ** 2) @ g
  r = j0 / j0[nmax]                                     # J_n / J_0 (n = 0 at index nmax)
  num = p * (p - 1) * r ** (p - 2) * (j1 / j0[nmax]) ** 2 + p * r ** (p - 1) * (j2 / j0[nmax])
  s2 = -np.sum(num) / np.sum(r**p)
  return float(s2 / (4.0 * math.pi**2))


def lattice_reference(group: str, L: int, beta: float) -> LatticeReference:
  """Exact log Z, mean plaquette (and <Q^2> for U(1)) from the character expansion."""
  if int(L) != L or L < 1:
    raise ValueError(f"lattice size L must be an integer >= 1, got {L!r}")
  L = int(L)
  beta = _check_beta(beta)
  ir = irreps(group, beta)
  p = L * L
  logw = p * ir.log_c
  lz = _logsumexp(logw)
  wts = np.exp(logw - lz)
  log_z_haar = lz + p * beta            # undo the e^(-beta) scaling of every c_r
  plaq = float(np.sum(wts * ir.dlog_c))
  q2 = u1_topological_q2(beta, L) if group == "u1" else None
  return LatticeReference(group, L, beta, log_z_haar,
                          log_z_haar + 2 * p * group_log_volume(group), plaq, q2)
