"""Exact heat kernel of the hyperbolic space H^n (curvature -1), every n >= 2.

Convention (DESIGN.md): p_t is the transition density of Brownian motion with generator
(1/2) Laplace-Beltrami, w.r.t. Riemannian volume, as a function of the geodesic distance rho.
Everything here is elementwise on arrays of rho and t (same dtype, broadcastable) and is
written in log space: no overflow/underflow for t -> 0, large t, rho = 0 or large rho.

Mathematics
-----------
Write u = cosh rho and phi(u) = acosh(u)^2 / 2, so exp(-rho^2/2t) = exp(-phi(u)/t) and the
dimension recursion p^(n+2) = -(e^{-nt/2} / (2 pi sinh rho)) d/drho p^(n) is the u-derivative
-d/du.  With

    Q_m(r, t) := (-d/du)^m exp(-phi(u)/t)          (u = cosh r, m >= 0)

the odd kernels are closed forms (n = 2m + 1):

    p^(2m+1)_t(rho) = e^{-m^2 t/2} (2 pi)^{-m} (2 pi t)^{-1/2} Q_m(rho, t),

and the even ones (n = 2m + 2) follow from McKean's H^2 integral, differentiated m times
under the integral sign (substitute w = cosh r, s = w - u, s = sigma^2):

    p^(2m+2)_t(rho) = K_m(t) int_rho^inf Q_{m+1}(r, t) sinh r / sqrt(cosh r - cosh rho) dr
                    = K_m(t) * 2 int_0^inf Q_{m+1}(r(sigma), t) dsigma,   cosh r = cosh rho + sigma^2,
    K_m(t) = sqrt(2) e^{-t/8 - m(m+1)t/2} (2 pi)^{-m} (2 pi t)^{-3/2} t.

Faa di Bruno gives Q_m = e^{-r^2/2t} sum_k t^{-k} B_{m,k}(G_1, G_2, ...), with B_{m,k} the
partial Bell polynomials and G_j = |phi^{(j)}(u)| = (j-1)! int_0^inf (u + cosh x)^{-j} dx > 0
(phi'(u) = r / sinh r is completely monotone), so every term is positive: no cancellation.
We factor w = r / sinh r out of G_j = w^j H_j; then

    H_1 = 1,  H_2 = (c - 1) / r^2,  r^2 H_{j+2} = (2j + 1) c H_{j+1} - j^2 H_j,   c = r coth r,

(the u-derivatives of the ODE (u^2 - 1) phi'' + u phi' = 1), H_j are even, O(1) at r = 0 and
decay like r^{1-j}, and Q_m = e^{-r^2/2t} w^m Y_m(H/t) with Y_m the complete Bell polynomial.
The recurrence is stable upwards for r >= 1.5 and unstable below (there H_j is the minimal
solution): below we use the Taylor series in r^2 (exact rational coefficients) when at most 4
functions are needed, else the recurrence downwards as a continued fraction (Miller's
algorithm, normalized by H_1 = 1).  Y_m is evaluated by its own recurrence, scaled by lam^m
with lam = min(t, 1) so that nothing overflows for t -> 0 or t -> inf.

Scores: d/du log p^(n) = -2 pi e^{nt/2} p^(n+2) / p^(n), so the Riemannian score at y is
c(rho, t) log_y(x) with c = sinhc(rho) * Q_{m+1}/Q_m (odd) or sinhc(rho) * I_{m+2}/I_{m+1}
(even, I_k the integrals above, computed on the same nodes): finite at rho = 0.

H^2, t <= T_GH = 4: Gauss-Hermite (`_h2_log_kernel_gh`).  With r^2 = rho^2 + 2 t z^2,
McKean's integral is 2 e^{-rho^2/2t} int_0^inf e^{-z^2} (t z / sigma) dz, sigma^2 =
cosh r - cosh rho: the Gaussian is the Hermite weight exactly and t z / sigma is even and
analytic in z with its nearest singularity at z = i pi sqrt(2/t), so a fixed rule converges
geometrically (6 / 12 nodes in float32 / float64, one expm1 and one sqrt per node).  The score
differentiates at fixed z: c = 1/t + <R>/2 with R = (sinhc r - sinhc rho)/(cosh r - cosh rho)
averaged under the same weights (same singularities, so the same accuracy).  The rows with
t > T_GH (and every even n >= 4) use the quadrature below, gathered so that its cost is in
proportion to those rows (`_with_slow_rows`).

Even-n quadrature.  In the variable sigma the integrand is smooth (no 1/sqrt singularity, for
every rho, including rho -> 0) and near sigma = 0 behaves like exp(-kappa sigma^2),
kappa = Q_{m+2}/Q_{m+1} at rho (the u-log-derivative).  We scale zeta = sigma e^{-rho/2}
(no overflow for large rho), zeta = zeta_0 sinh(x), zeta_0^2 = e^{-rho}/kappa, and integrate x
over [0, X] with two Gauss-Legendre panels: [0, x_c] for the Gaussian core and [x_c, X] for
the tail (at worst exponential in x for large t: the integrand decays like sigma^{-2(m+1)}),
x_c = min(x_core, 0.6 X); 14 + 18 nodes in float64, 6 + 10 in float32 (`_quad_params`).
X is where the integrand has fallen below ~exp(-L) of its value at rho: Gaussian bound
exp(-(r^2 - rho^2)/2t), capped by the exponential decay exp(-(m + 1/2)(r - rho)) r^{m+1}.
r - rho is computed from zeta without cancellation (see `_expm1_tau_from_zeta`).  The
integrand is evaluated as a ratio Q(r)/Q(rho) (one exp per node, no logs).

Sampling (`sample_radius`), exact: n = 3, rho = |N(t e_1, t I_3)|; n = 2, McKean's formula read
as a mixture over that law (`_sample_radius_h2`, no rejection); other n: rejection from a
Gaussian envelope (see its docstring).

Measured accuracy (benchmarks/hyperbolic_accuracy.py: mpmath at dps 30, t in [1e-4, 20],
~95 points per n from rho = 0 to where log p ~ -400, the switches on both sides; log p error
relative to max(1, |log p|), score error relative, on the coefficient c):
  odd n = 3, 5, 7:        float64 log p <= 1.2e-15, score <= 5e-14;
                          float32 log p <= 3.3e-7,  score <= 1.9e-5;
  n = 2:                  float64 log p <= 1.2e-11, score <= 8.7e-10;
                          float32 log p <= 2.8e-7,  score <= 2.3e-5
                          (Gauss-Hermite route alone, t <= 4: 1.2e-11 / 7.6e-10 and
                          1.4e-7 / 1.9e-6);
  even n = 4, 10, 16:     float64 log p <= 4e-11,   score <= 1.2e-9;
                          float32 log p <= 3.9e-6,  score <= 2.3e-5.
Beyond the target range (t = 100, 150, n = 2): float64 log p <= 2e-9, score <= 2e-7; float32
score <= 2.2e-4.  float32 inputs are rounded: a rho error eps rho moves log p by ~rho^2 eps/t.
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction
from math import comb

import jax
import jax.numpy as jnp
import numpy as np

from manifolds import _numerics as nx

LOG_2PI = math.log(2.0 * math.pi)


def _is64(dtype) -> bool:
  return jnp.dtype(dtype) == jnp.float64


# --------------------------------------------------------------------------- H_j(r)
# Three evaluation routes, all measured against mpmath (float64, relative error of H_j):
# * upward recurrence: stable for r >= 1.5 (<= 3e-11 for j <= 14), and for j <= 4 already
#   for r >= 0.75 (<= 1e-13);
# * for few functions (num <= 4) and r < 0.75: the Taylor series in r^2 (exact rational
#   coefficients, `_h_taylor`), 18 / 8 terms in float64 / float32 (tail < eps);
# * otherwise for r < 1.5: the downward recurrence as a continued fraction (Miller's
#   algorithm, normalized by H_1 = 1) started `_miller_extra` steps above num
#   (<= 1e-12 relative at r = 1.5, better below).
_H_SWITCH = 1.5
_TAYLOR_NUM = 4
_TAYLOR_SWITCH = 0.75


def _miller_extra(dtype) -> int:
  return 36 if _is64(dtype) else 20


def _taylor_terms(dtype) -> int:
  return 18 if _is64(dtype) else 8


@functools.lru_cache(maxsize=None)
def _h_taylor(num: int, terms: int) -> np.ndarray:
  """Taylor coefficients of H_1..H_num in powers of r^2, shape (num, terms), from exact
  rational arithmetic: r coth r = sum_k 4^k B_2k r^2k / (2k)!, then the recurrence."""
  size = terms + num + 1
  bern = [Fraction(1)]
  for m in range(1, 2 * size + 1):
    bern.append(-sum(comb(m + 1, k) * bern[k] for k in range(m)) / (m + 1))
  c = [Fraction(4**k) * bern[2 * k] / math.factorial(2 * k) for k in range(size)]
  h = [[Fraction(1)] + [Fraction(0)] * (size - 1), c[1:]]
  for j in range(1, num - 1):
    a, b = h[j], h[j - 1]
    prod = [sum(c[i] * a[k - i] for i in range(k + 1)) for k in range(len(a))]
    h.append([(2 * j + 1) * prod[k + 1] - j * j * b[k + 1] for k in range(len(a) - 1)])
  return np.array([[float(v) for v in row[:terms]] for row in h[:num]], dtype=np.float64)


def _xcoth(r2):
  """c = r coth r as a function of r^2 (finite gradient at 0)."""
  def small(s):
    return 1.0 + s / 3.0 - s * s / 45.0 + 2.0 * s * s * s / 945.0

  def large(s):
    r = jnp.sqrt(s)
    return r / jnp.tanh(r)

  return nx._series_switch(r2, small, large, nx._thresh(r2))


def _h_upward(r, num: int):
  r2 = r * r
  c = r / jnp.tanh(r)
  h = [jnp.ones_like(r), (c - 1.0) / r2]
  for j in range(1, num - 1):
    h.append(((2 * j + 1) * c * h[j] - float(j * j) * h[j - 1]) / r2)
  return h[:num]


def _h_miller(r, num: int):
  r2 = r * r
  c = _xcoth(r2)
  top = num + _miller_extra(r.dtype)
  ratio = (2 * top - 1) * c / float((top - 1) ** 2)  # R_{top-1} = H_{top-1} / H_top
  ratios = {}
  for j in range(top - 2, 0, -1):
    ratio = ((2 * j + 1) * c - r2 / ratio) / float(j * j)
    ratios[j] = ratio
  h = [jnp.ones_like(r)]
  for j in range(1, num):
    h.append(h[-1] / ratios[j])
  return h


def _h_series(r, num: int):
  coef = _h_taylor(num, _taylor_terms(r.dtype))
  r2 = r * r
  out = []
  for j in range(num):
    acc = jnp.full_like(r, coef[j, -1])
    for k in range(coef.shape[1] - 2, -1, -1):
      acc = acc * r2 + float(coef[j, k])  # (a Python float keeps the dtype of r)
    out.append(acc)
  return out


def h_functions(r, num: int):
  """[H_1(r), ..., H_num(r)] for r >= 0 (see module docstring).  Each of r's shape."""
  if num == 1:
    return [jnp.ones_like(r)]
  if num <= _TAYLOR_NUM:
    switch, small_route = _TAYLOR_SWITCH, _h_series
  else:
    switch, small_route = _H_SWITCH, _h_miller
  small = r < switch
  h_small = small_route(jnp.where(small, r, 0.5 * switch), num)
  h_large = _h_upward(jnp.where(small, switch, r), num)
  return [jnp.where(small, a, b) for a, b in zip(h_small, h_large)]


def log_w(r2):
  """log(r / sinh r) from r^2."""
  return -nx.log_sinhc(r2)


# --------------------------------------------------------------------------- Q_m
def _scaled_bell(h, t, num: int):
  """Z_m = lam^m Y_m(H_1/t, H_2/t, ...) for m = 0..num (lam = min(t, 1)), and log lam.

  Y_m = sum_k t^{-k} B_{m,k}(H) >= t^{-m}; the scaling keeps every Z_m in [1, sum_k B_{m,k}]
  for t <= 1 and bounded for t > 1.  Recurrence: Y_{m+1} = sum_i C(m, i) (H_{i+1}/t) Y_{m-i}.
  """
  lam = jnp.minimum(t, 1.0)
  q = lam / t
  lam_pow = [jnp.ones_like(lam)]
  for _ in range(num):
    lam_pow.append(lam_pow[-1] * lam)
  z = [jnp.ones_like(h[0] * t)]
  for m in range(num):
    s = 0.0
    for i in range(m + 1):
      s = s + float(comb(m, i)) * h[i] * lam_pow[i] * z[m - i]
    z.append(q * s)
  return z, jnp.log(lam)


def bell_z(r, t, top: int):
  """Z_0..Z_top at (r, t) (see `_scaled_bell`) and log lam."""
  if top == 0:
    return [jnp.ones_like(r * t)], jnp.log(jnp.minimum(t, 1.0))
  return _scaled_bell(h_functions(r, top), t, top)


def log_q_parts(r, t, ms):
  """log Q_m(r, t) - (-r^2 / 2t) for each m in `ms` (a tuple of ints >= 0).

  Returns a list aligned with `ms`; the Gaussian factor exp(-r^2/2t) is left out so that
  callers can form differences exactly.
  """
  z, log_lam = bell_z(r, t, max(ms))
  lw = log_w(r * r)
  tiny = jnp.finfo(r.dtype).tiny
  return [m * lw + jnp.log(jnp.maximum(z[m], tiny)) - m * log_lam for m in ms]


# --------------------------------------------------------------------------- odd n
def odd_log_kernel(rho, t, n: int, with_score: bool = False):
  """log p^(n)_t(rho) for odd n >= 3; with_score: also c (score = c log_y x)."""
  m = (n - 1) // 2
  ms = (m, m + 1) if with_score else (m,)
  lq = log_q_parts(rho, t, ms)
  logp = (-0.5 * m * m * t - m * LOG_2PI - 0.5 * (LOG_2PI + jnp.log(t))
          - rho * rho / (2.0 * t) + lq[0])
  if not with_score:
    return logp
  return logp, jnp.exp(nx.log_sinhc(rho * rho) + lq[1] - lq[0])


# --------------------------------------------------------------------------- even n
@functools.lru_cache(maxsize=None)
def _gauss_legendre(num: int):
  x, w = np.polynomial.legendre.leggauss(num)
  return 0.5 * (x + 1.0), 0.5 * w  # on [0, 1]


def _quad_params(dtype):
  """(nodes in the core panel, nodes in the tail panel, L = log-drop at which the integrand
  is cut, core end x_c, largest fraction of X given to the core)."""
  if _is64(dtype):
    return 14, 18, 34.0, 2.5, 0.6
  return 6, 10, 16.0, 2.0, 0.6


def _expm1_tau_from_zeta(zeta2, a, em, big_a):
  """e^tau - 1 >= 0 for tau = r - rho, cosh r = cosh rho + e^rho zeta^2, without cancellation.

  With a = e^{-rho}, em = 1 - a, big_a = 1 - a^2 (precomputed per rho):
  e^tau - 1 = zeta^2 + 2 zeta^2 (1 + a^2 + zeta^2) / (P + A),
  P = sqrt(((1 - a)^2 + 2 zeta^2) ((1 + a)^2 + 2 zeta^2)).
  """
  # (sqrt of each factor separately and the ratio first: no zeta^4, which overflows float32)
  p = jnp.sqrt(em * em + 2.0 * zeta2) * jnp.sqrt((1.0 + a) ** 2 + 2.0 * zeta2)
  return zeta2 * (1.0 + 2.0 * (1.0 + a * a + zeta2) / (p + big_a))


def _log_psi(delta, rho):
  """log(e^{-rho} (cosh(rho + delta) - cosh rho)) for delta > 0, overflow-free."""
  # = log((e^{delta/2} - e^{-2 rho - delta/2}) sinh(delta/2))
  #   = delta - log 2 + log(1 - e^{-2 rho - delta}) + log(1 - e^{-delta})
  return (delta - math.log(2.0) + jnp.log(-jnp.expm1(-2.0 * rho - delta))
          + jnp.log(-jnp.expm1(-delta)))


def _g(r):
  """g(r) = (1 - e^{-2r}) / (2r) = e^{-r} sinh(r) / r in (0, 1]; r / sinh r = e^{-r} / g(r)."""
  small = r < 1e-4
  rs = jnp.where(small, 1.0, r)
  return jnp.where(small, 1.0 - r + (2.0 / 3.0) * r * r, -jnp.expm1(-2.0 * rs) / (2.0 * rs))


def _nodes(big_x, dtype):
  """Gauss-Legendre nodes/weights in x on [0, x_c] and [x_c, X], x_c = min(x_core, frac X)."""
  n1, n2, _, x_core, frac = _quad_params(dtype)
  x_c = jnp.minimum(x_core, frac * big_x)[..., None]
  g1, w1 = (jnp.asarray(v, dtype) for v in _gauss_legendre(n1))
  g2, w2 = (jnp.asarray(v, dtype) for v in _gauss_legendre(n2))
  span = big_x[..., None] - x_c
  return (jnp.concatenate([x_c * g1, x_c + span * g2], axis=-1),
          jnp.concatenate([x_c * w1, span * w2], axis=-1))


def _even_setup(rho, t, mq: int):
  """Per-point quantities of the even-n quadrature for the integrand Q_mq.

  Returns (z0, log_lam, lw0, log_kappa, log_zeta0, big_x, capped): the scaled Bell values
  Z_0..Z_{mq+1} at rho, log w(rho), the u-log-derivative kappa = Q_{mq+1}/Q_mq at rho, the
  Gaussian scale zeta_0 = (e^rho kappa)^{-1/2}, the upper limit X in x and whether the
  exponential-tail cap (rather than the Gaussian bound) set it.
  """
  big_l = _quad_params(rho.dtype)[2]
  z0, log_lam = bell_z(rho, t, mq + 1)
  tiny = jnp.finfo(rho.dtype).tiny
  lw0 = log_w(rho * rho)
  log_kappa = (lw0 + jnp.log(jnp.maximum(z0[mq + 1], tiny)) - jnp.log(jnp.maximum(z0[mq], tiny))
               - log_lam)
  log_zeta0 = -0.5 * (rho + log_kappa)
  # Upper limit in r - rho: the Gaussian bound exp(-(r^2 - rho^2)/2t) <= e^-L, or the cap from
  # the exponential decay exp(-(mq - 1/2)(r - rho)) r^{mq+1} of the integrand in r.
  two_lt = 2.0 * big_l * t
  d_gauss = two_lt / (rho + jnp.sqrt(rho * rho + two_lt))
  d_cap = (big_l + (mq + 1) * math.log(4.0 * big_l) + 2.0) / (mq - 0.5)
  delta = jnp.minimum(d_gauss, d_cap)
  # X = asinh(zeta_max / zeta_0) from logs (zeta_max^2 = e^{-rho}(cosh(rho + delta) - cosh rho)).
  lr = 0.5 * _log_psi(delta, rho) - log_zeta0
  lrp = jnp.maximum(lr, 0.0)
  big_x = jnp.where(lr > 0.0, lrp + jnp.log1p(jnp.sqrt(1.0 + jnp.exp(-2.0 * lrp))),
                    jnp.arcsinh(jnp.exp(jnp.minimum(lr, 0.0))))
  return z0, log_lam, lw0, log_kappa, log_zeta0, big_x, d_cap < d_gauss


def even_limits(rho, t, n: int):
  """(X, capped) of the quadrature for even n (diagnostics and tests)."""
  rho, t = jnp.broadcast_arrays(rho, jnp.asarray(t, jnp.asarray(rho).dtype))
  out = _even_setup(rho, t, n // 2)
  return out[5], out[6]


def _even_log_kernel_quad(rho, t, n: int, with_score: bool = False):
  """log p^(n)_t(rho) for even n >= 2 by the sinh-mapped Gauss-Legendre quadrature (any t;
  H^2 uses it for t > T_GH, even n >= 4 always); with_score: also c (score = c log_y x)."""
  dtype = rho.dtype
  m = (n - 2) // 2
  mq = m + 1  # index of Q in the integrand of p^(n); mq + 1 for p^(n+2) (the score)
  rho, t = jnp.broadcast_arrays(rho, jnp.asarray(t, dtype))
  z0, log_lam, lw0, log_kappa, log_zeta0, big_x, _ = _even_setup(rho, t, mq)
  xs, ws = _nodes(big_x, dtype)
  ex = lambda a: a[..., None]
  emx = jnp.exp(-xs)
  cosh_x = 0.5 * (1.0 / emx + emx)
  zeta = ex(jnp.exp(log_zeta0)) * (0.5 * (1.0 / emx - emx))
  a = jnp.exp(-rho)
  em = -jnp.expm1(-rho)  # 1 - a
  big_a = -jnp.expm1(-2.0 * rho)  # 1 - a^2
  e1 = _expm1_tau_from_zeta(zeta * zeta, ex(a), ex(em), ex(big_a))
  tau = jnp.log1p(e1)
  r = ex(rho) + tau
  # g(r) = (1 - e^{-2r}) / 2r with e^{-r} = a / (1 + e1): 1 - e^{-2r} = (em + e1)(1 + e1 + a) / (1 + e1)^2
  g_r = ((ex(em) + e1) / (1.0 + e1)) * ((1.0 + e1 + ex(a)) / (1.0 + e1)) / (2.0 * r)
  # Q_k(r) / Q_k(rho) = exp(-tau (2 rho + tau) / 2t - k tau) (g(rho) / g(r))^k Z_k(r) / Z_k(rho)
  zr, _ = bell_z(r, ex(t), mq + 1 if with_score else mq)
  g_ratio = ex(_g(rho)) / g_r
  base = ws * cosh_x * jnp.exp(-tau * (2.0 * ex(rho) + tau) / (2.0 * ex(t)) - mq * tau)
  base = base * g_ratio**mq
  s_a = jnp.sum(base * zr[mq], axis=-1) / z0[mq]
  log_k = (0.5 * math.log(2.0) - t / 8.0 - 0.5 * m * (m + 1) * t - m * LOG_2PI
           - 1.5 * (LOG_2PI + jnp.log(t)) + jnp.log(t))
  # p = K_m * 2 e^{rho/2} Q_mq(rho) zeta_0 * sum, Q_mq(rho) = e^{-rho^2/2t} w^mq Z_mq / lam^mq.
  lq0 = mq * (lw0 - log_lam) + jnp.log(jnp.maximum(z0[mq], jnp.finfo(dtype).tiny))
  logp = (log_k + math.log(2.0) + 0.5 * rho - rho * rho / (2.0 * t) + lq0 + log_zeta0
          + jnp.log(s_a))
  if not with_score:
    return logp
  s_b = jnp.sum(base * g_ratio * zr[mq + 1] / (1.0 + e1), axis=-1) / z0[mq + 1]
  return logp, jnp.exp(nx.log_sinhc(rho * rho) + log_kappa + jnp.log(s_b / s_a))


# --------------------------------------------------------------------------- H^2, t <= T_GH
def _gh_params(dtype):
  """(Gauss-Hermite points on the whole line, largest t T_GH of the route).  The error of
  the rule is set by the nearest singularity of the integrand, z = i pi sqrt(2/t) (rho = 0;
  farther for rho > 0).  Measured against mpmath at t = 4 (the worst t): log p 7e-8, score
  coefficient 2e-6 (12 points); 1e-11 and 8e-10 (24 points); at t = 1: 2e-12 / 1e-11 with
  12 points already."""
  return (24 if _is64(dtype) else 12), 4.0


@functools.lru_cache(maxsize=None)
def _gauss_hermite_half(num: int):
  """Positive Gauss-Hermite nodes and weights: int_0^inf e^{-z^2} f(z) dz = sum w f(z) for
  even f (exact for even polynomials of degree < 2 num)."""
  z, w = np.polynomial.hermite.hermgauss(num)
  return z[num // 2:], w[num // 2:]


def _series_terms(dtype) -> int:
  # x, y <= 4: the k-th term is <= k 4^(k-1) / (2k)!, below eps at k = 12 / 8.
  return 12 if _is64(dtype) else 8


def _slope_ratio_series(x, y, terms: int):
  """(sinhc(r) - sinhc(rho)) / (cosh r - cosh rho) from divided differences of the power
  series in x = r^2, y = rho^2 (both <= 4): sum_k h_{k-1}(x, y) / (2k+1)! over the same sum
  with 1 / (2k)!, h_j = sum_i x^i y^(j-i) (no cancellation: all terms positive)."""
  h, ypow = jnp.ones_like(x), jnp.ones_like(y)
  num, den = 0.0, 0.0
  for k in range(1, terms + 1):
    if k > 1:
      ypow = ypow * y
      h = x * h + ypow
    num = num + h * (1.0 / math.factorial(2 * k + 1))
    den = den + h * (1.0 / math.factorial(2 * k))
  return num / den


_R_SERIES = 2.0  # r below: series in r^2, rho^2; above: the closed form (see _gh_nodes)


def _gh_nodes(rho, t, with_slope: bool):
  """Per-node quantities of the H^2 Gauss-Hermite route (r^2 = rho^2 + 2 t z^2, see
  `_h2_log_kernel_gh`), each of shape rho.shape + (nodes,):

  wg = w_k g_k with g = e^{(rho - r)/2} z / sqrt((1 - e^{-(r - rho)}) (1 - e^{-(r + rho)})),
  so that t z / sigma = sqrt(2) t e^{-rho/2} g (sigma^2 = cosh r - cosh rho); with_slope also
  R = (sinhc r - sinhc rho) / (cosh r - cosh rho).  Every difference is formed without
  cancellation from delta = r - rho = 2 t z^2 / (r + rho) and one expm1 per node.
  """
  dtype = rho.dtype
  zk, wk = (jnp.asarray(v, dtype) for v in _gauss_hermite_half(_gh_params(dtype)[0]))
  ex = lambda a: a[..., None]
  s = 2.0 * ex(t) * zk * zk
  r = jnp.sqrt(ex(rho * rho) + s)
  delta = s / (r + ex(rho))
  em = jnp.expm1(-0.5 * delta)            # e^{-delta/2} - 1
  e1 = -em * (2.0 + em)                   # 1 - e^{-delta}
  a = ex(-jnp.expm1(-2.0 * rho))          # 1 - e^{-2 rho}
  b = a + (1.0 - a) * e1                  # 1 - e^{-(r + rho)} = 1 - e^{-2 rho} e^{-delta}
  wg = wk * (1.0 + em) * zk / jnp.sqrt(e1 * b)
  if not with_slope:
    return wg, None
  # rho sinh r - r sinh rho = (e^r / 2) (rho (2 - B) E1 - delta e^{-delta} A), cosh r - cosh rho
  # = (e^r / 2) E1 B, A / rho = 2 g(rho): cancellation at most ~10x once rho >= 1 or r >= 2.
  closed = (((2.0 - b) * e1 - 2.0 * delta * (1.0 + em) ** 2 * ex(_g(rho)))
            / (r * e1 * b))
  use_series = (r < _R_SERIES) & ex(rho < 1.0)
  x = jnp.where(use_series, r * r, 1.0)
  y = jnp.where(use_series, ex(rho * rho), 0.0)
  series = _slope_ratio_series(x, y, _series_terms(dtype))
  return wg, jnp.where(use_series, series, closed)


def _h2_log_kernel_gh(rho, t, with_score: bool = False):
  """log p^(2)_t(rho) for t <= T_GH by Gauss-Hermite quadrature; with_score: also c.

  McKean: p = sqrt(2) e^{-t/8} (2 pi t)^{-3/2} int_rho^inf r e^{-r^2/2t} / sigma dr,
  sigma^2 = cosh r - cosh rho.  With r^2 = rho^2 + 2 t z^2 (r dr = 2 t z dz):
  int = 2 e^{-rho^2/2t} int_0^inf e^{-z^2} (t z / sigma) dz.  The Gaussian is the Hermite
  weight exactly and t z / sigma is even and analytic in z (cosh r is entire in r^2; no
  1/sqrt singularity, for every rho including 0), with its nearest singularity at
  z = i pi sqrt(2/t) (rho = 0; farther for rho > 0): a fixed rule converges geometrically.
  Score: differentiating at fixed z, d sigma^2 / d rho = rho (sinhc r - sinhc rho), so
  c = -(d log p / d rho) / rho = 1/t + <R> / 2, the mean of R (`_gh_nodes`) under the same
  weights: the same singularities as the density, hence the same accuracy, and no division
  by rho.
  """
  dtype = rho.dtype
  rho, t = jnp.broadcast_arrays(rho, jnp.asarray(t, dtype))
  # The log p ops are the same with and without the score, so XLA merges them when one
  # program asks for both (log_heat_kernel and heat_kernel_score).
  wg, ratio = _gh_nodes(rho, t, with_score)
  s_a = jnp.sum(wg, axis=-1)
  logp = (2.0 * math.log(2.0) - 1.5 * LOG_2PI - t / 8.0 - 0.5 * jnp.log(t)
          - rho * rho / (2.0 * t) - 0.5 * rho + jnp.log(s_a))
  if not with_score:
    return logp
  return logp, 1.0 / t + 0.5 * jnp.sum(wg * ratio, axis=-1) / s_a


# --------------------------------------------------------------------------- row routing
_SLOW_CHUNK = 1024


def _with_slow_rows(out, slow_fn, need, args):
  """out (tuple of (B,) arrays) with the rows flagged in need (B,) replaced by slow_fn(*args)
  on those rows.  The flagged rows are gathered to the front and evaluated in chunks of
  _SLOW_CHUNK, a chunk only if it holds flagged rows (lax.cond in a static scan), so the
  slow route costs in proportion to its rows.  Differentiable (scan, cond, gather, scatter)."""
  bsz = need.shape[0]
  if bsz == 0:
    return tuple(out)
  c = min(_SLOW_CHUNK, bsz)
  nch = -(-bsz // c)
  idx = jnp.nonzero(need, size=nch * c, fill_value=bsz)[0]
  count = jnp.sum(need)

  def body(acc, k):
    ids = jax.lax.dynamic_slice(idx, (k * c,), (c,))
    safe = jnp.minimum(ids, bsz - 1)   # padding entries evaluate a real row, then are dropped

    def run(acc):
      vals = slow_fn(*(a[safe] for a in args))
      return tuple(o.at[ids].set(v, mode="drop") for o, v in zip(acc, vals))

    return jax.lax.cond(k * c < count, run, lambda acc: acc, acc), None

  out, _ = jax.lax.scan(body, tuple(out), jnp.arange(nch))
  return out


def even_log_kernel(rho, t, n: int, with_score: bool = False):
  """log p^(n)_t(rho) for even n >= 2; with_score: also c (score = c log_y x).

  n = 2: Gauss-Hermite for t <= T_GH, the sinh-mapped quadrature on the other rows only.
  n >= 4: the sinh-mapped quadrature (the Gauss-Hermite form of its integrand Q_{n/2} has
  poles at r = i pi, twice as close as those of H^2's, so it would need many more nodes).
  """
  dtype = rho.dtype
  if n != 2:
    return _even_log_kernel_quad(rho, t, n, with_score)
  rho, t = jnp.broadcast_arrays(rho, jnp.asarray(t, dtype))
  shape = rho.shape
  rho, t = rho.reshape(-1), t.reshape(-1)
  t_gh = _gh_params(dtype)[1]
  slow = t > t_gh
  fast = _h2_log_kernel_gh(rho, jnp.where(slow, t_gh, t), with_score)
  fast = fast if with_score else (fast,)
  out = _with_slow_rows(fast, lambda r, tt: _as_tuple(_even_log_kernel_quad(r, tt, n, with_score)),
                        slow, (rho, t))
  out = tuple(o.reshape(shape) for o in out)
  return out if with_score else out[0]


def _as_tuple(a):
  return a if isinstance(a, tuple) else (a,)


def log_kernel(rho, t, n: int, with_score: bool = False):
  """log p^(n)_t(rho) for any n >= 2 (rho, t: broadcastable arrays of one float dtype).

  with_score=True returns (log p, c) where the Riemannian score grad_y log p_t(x, y) is
  c * log_y(x); c = -(d log p / d rho) / rho > 0, finite at rho = 0.
  """
  if n % 2:
    return odd_log_kernel(rho, t, n, with_score)
  return even_log_kernel(rho, t, n, with_score)


# --------------------------------------------------------------------------- radial sampler
def log_radial_unnormalized(rho, t, n: int, with_slope: bool = False):
  """log f(rho) + const, f(rho) = vol(S^{n-1}) sinh^{n-1}(rho) p_t(rho) the law of d(x, Y).

  with_slope: also d log f / d rho = (n - 1) coth rho - rho c(rho, t).
  """
  log_sinh = jnp.log(rho) + nx.log_sinhc(rho * rho)
  if not with_slope:
    return (n - 1) * log_sinh + log_kernel(rho, t, n)
  logp, c = log_kernel(rho, t, n, with_score=True)
  slope = (n - 1) / jnp.tanh(rho) - rho * c
  return (n - 1) * log_sinh + logp, slope


def _radial_mode_guess(t, n: int):
  """sqrt((n-1) t + ((n-1) t / 2)^2): the chi mode for small t, the drift (n-1) t/2 for large."""
  a = 0.5 * (n - 1) * t
  return jnp.sqrt((n - 1) * t + a * a)


# The rejected elements are retried in compacted buffers of this fraction of the batch (at
# least _MIN_BUFFER), one proposal per element and round: about 1/acceptance <= 1.5 density
# evaluations per draw plus ~7 short rounds at the end, and a single traced copy of the density
# (compile time matters: the even-n kernel is a quadrature).
_BUFFER_DIV = 16
_MIN_BUFFER = 256


def _noncentral_chi3(key, mean, t):
  """|X| for X ~ N(mean e_1, t I_3); mean, t of shape (B,) -> (B,)."""
  z = jax.random.normal(key, (3,) + t.shape, t.dtype)
  a = mean + jnp.sqrt(t) * z[0]
  return jnp.sqrt(a * a + t * (z[1] * z[1] + z[2] * z[2]))


def _asinh_a_sinh(a, h):
  """asinh(a sinh h) for a in (0, 1], h >= 0, without overflow of sinh h."""
  tiny = jnp.finfo(h.dtype).tiny
  # log(a sinh h) = log a + h + log(1 - e^{-2h}) - log 2
  log_y = jnp.log(a) + h + jnp.log(jnp.maximum(-jnp.expm1(-2.0 * h), tiny)) - math.log(2.0)
  big = log_y > 0.0
  # y <= 1 needs h <= log(2 / a) + 1, small (a >= ~1e-4 in float32, ~1e-8 in float64)
  direct = jnp.arcsinh(a * jnp.sinh(jnp.where(big, 0.0, h)))
  ly = jnp.where(big, log_y, 0.0)
  # asinh y = log y + log(1 + sqrt(1 + y^-2))
  far = ly + jnp.log1p(jnp.sqrt(1.0 + jnp.exp(-2.0 * ly)))
  return jnp.where(big, far, direct)


def _sample_radius_h2(key, t):
  """Exact radius on H^2 from McKean's integral read as a mixture (no rejection).

  With f_n the law of rho on H^n, McKean's formula is f_2(rho) = int_rho^inf g(r) k(rho | r) dr,
  g(r) = e^{3t/8} f_3(r) sech(r/2) and k(rho | r) = sinh rho cosh(r/2) /
  (sqrt(2) sinh r sqrt(cosh r - cosh rho)) a probability density on [0, r] (its integral is
  sqrt(2) sqrt(cosh r - 1) cosh(r/2) / sinh r = 1).  g is proportional to
  r sinh r sech(r/2) e^{-r^2/2t} = 2 r sinh(r/2) e^{-r^2/2t}, the law of |X| for
  X ~ N((t/2) e_1, t I_3) (the noncentral chi density r (e^{-(r-m)^2/2t} - e^{-(r+m)^2/2t}),
  m = t/2); and k has CDF 1 - sqrt((cosh r - cosh rho) / (cosh r - 1)), inverted by
  sinh(rho/2) = sqrt(1 - V^2) sinh(r/2), V uniform.  (B,) -> (B,).
  """
  k1, k2 = jax.random.split(key)
  r = _noncentral_chi3(k1, 0.5 * t, t)
  v = jax.random.uniform(k2, t.shape, t.dtype)
  return 2.0 * _asinh_a_sinh(jnp.sqrt((1.0 - v) * (1.0 + v)), 0.5 * r)


def sample_radius(key, t, n: int):
  """Exact draw of rho = d(x, Y), Y ~ p_t(x, .), for a flat array t of shape (B,).

  n = 3: rho = |X|, X ~ N(t e_1, t I_3) (f_3(rho) is proportional to
  rho sinh(rho) e^{-rho^2/2t}, the noncentral chi density with mean length t).  n = 2: a
  mixture over that law (`_sample_radius_h2`).  Other n: rejection sampling, below.

  Rejection sampling.  log f is strongly concave: d^2 log f / d rho^2 <= -1/t (verified
  numerically for n <= 25, t in [1e-4, 100] on dense grids; exact for n = 3 where
  log f = log(rho sinh rho) - rho^2/2t + const).  Hence for any point a,
  log f(rho) <= log f(a) + s(a) (rho - a) - (rho - a)^2 / 2t: a Gaussian envelope
  N(a + t s(a), t) (proposals rho <= 0 are rejected since f = 0 there).  With a the mode guess
  the acceptance rate is >= 0.66 for every n and t (-> 1 for large t).  Rounds repeat until
  every element has accepted (lax.while_loop), so the draw is exact, not truncated.
  """
  if n == 2:
    return _sample_radius_h2(key, t)
  if n == 3:
    return _noncentral_chi3(key, t, t)
  dtype = t.dtype
  (num,) = t.shape
  a = _radial_mode_guess(t, n)
  lf_a, s_a = log_radial_unnormalized(a, t, n, with_slope=True)
  mu = a + t * s_a
  sd = jnp.sqrt(t)
  cap = min(num, max(_MIN_BUFFER, num // _BUFFER_DIV))

  def body(c):
    rho, done, i = c
    # Compaction: up to `cap` not-yet-accepted elements (top_k compiles and runs faster than
    # nonzero); padding entries get idx = num and are dropped by the scatters.
    todo, idx = jax.lax.top_k((~done).astype(dtype), cap)
    idx = jnp.where(todo > 0, idx, num)
    safe = jnp.minimum(idx, num - 1)
    # One uniform draw for the Gaussian proposal (by inverse CDF) and the acceptance test.
    u = jax.random.uniform(jax.random.fold_in(key, i), (2, cap), dtype,
                           minval=jnp.finfo(dtype).tiny)
    ti, ai, lfi, si = t[safe], a[safe], lf_a[safe], s_a[safe]
    prop = mu[safe] + sd[safe] * jax.scipy.special.ndtri(u[0])
    pos = prop > 0
    prop_s = jnp.where(pos, prop, ai)
    lf = log_radial_unnormalized(prop_s, ti, n)
    d = prop_s - ai
    log_env = lfi + si * d - d * d / (2.0 * ti)
    ok = pos & (jnp.log(u[1]) <= lf - log_env)
    idx_ok = jnp.where(ok, idx, num)  # rejected and padding entries are dropped
    return (rho.at[idx_ok].set(prop, mode="drop"), done.at[idx_ok].set(True, mode="drop"),
            i + 1)

  init = (jnp.zeros_like(t), jnp.zeros(t.shape, bool), jnp.asarray(0))
  rho, _, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[1]), body, init)
  return rho
