r"""Heat kernel of the unit sphere S^n (generator (1/2) Laplace-Beltrami), every n >= 1.

Everything is a function of the geodesic distance theta, carried as the pair
``X = cos^2(theta/2) = |x + y|^2 / 4`` and ``S = sin^2(theta/2) = |x - y|^2 / 4``
(both exact from the ambient vectors, with no cancellation at theta = 0 or pi).  The radial
functions return ``(log p, g)`` with ``g = d log p / du``, ``u = cos theta``; the score is
``g (x - <x, y> y)``.  ``eps = pi - theta`` is the distance to the antipode.

Which method is used where (t_switch per n and dtype, see "Regime switch")
--------------------------------------------------------------------------
=============  =====================================  ===================================
n              t < t_switch                            t >= t_switch
=============  =====================================  ===================================
1              images (wrapped normal), closed form    Fourier (eigen-)series
2              Mehler-type integral, 6/12-node rule    Gegenbauer eigen-series
3              images, closed form                     Gegenbauer eigen-series
odd 5 ... 23   real-axis derivatives of the main image  Gegenbauer eigen-series
               (`_real_odd`) where accurate (all but
               a band pi - theta < ~5 t), contour there
4 ... 1023     contour integral (below)                Gegenbauer eigen-series
=============  =====================================  ===================================

n = 1 and n = 3: closed forms with the two images nearest to theta
------------------------------------------------------------------
S^1: p = (2 pi t)^(-1/2) sum_k exp(-(theta + 2 pi k)^2 / 2t).  S^3: p = (2 pi t)^(-3/2) e^(t/2)
sum_k (theta + 2 pi k)/sin(theta) exp(-(theta + 2 pi k)^2 / 2t).  For theta <= pi/2 only k = 0
is kept (the others are below exp(-pi^2/t) relative: < 2e-7 at the float32 switch, < 1e-14 at
the float64 one); for theta > pi/2 the pair k = 0, -1 is written as an even function of eps,
e.g. on S^3 with z = pi eps / t:
    log p = -3/2 log(2 pi t) + t/2 - (pi^2 + eps^2)/2t + log(2 pi^2/t) + log(sinh z / z)
            - log(sin eps / eps) + log(1 - (t/pi^2) z coth z),
which has no cancellation and a finite score at the antipode (all pieces are even in eps).

n = 2: Mehler-type integral
---------------------------
Abel-transforming the S^3 images formula gives the exact representation
    p = sqrt(2) e^(t/8) (2 pi t)^(-3/2) int_theta^(2 pi - theta) psi e^(-psi^2/2t)
        / sqrt(cos theta - cos psi) d psi     (+ images with relative size exp(-2 pi^2/t)).
Folding psi -> 2 pi - psi and writing w = sin^2(eps_1/2) (eps_1 = pi - psi), w = X sigma:
    I(X) = 2^(-1/2) int_0^1 H(X sigma) sigma^(-1/2) (1 - sigma)^(-1/2) d sigma,
    I'(X) = 2^(-1/2) int_0^1 H'(X sigma) sigma^(1/2) (1 - sigma)^(-1/2) d sigma,
    H(w) = [(pi - eps_1) e^(-(pi - eps_1)^2/2t) + (pi + eps_1) e^(-(pi + eps_1)^2/2t)] / cos(eps_1/2),
an analytic function of w, so both the value and the score (g = I'/2I) are smooth integrals
in X with no singular point at theta = 0 or pi.  The substitution sigma = 1 - lambda sin^2(tau/2)
removes both endpoint singularities; lambda <= 1 truncates where the Gaussian factor is below
exp(-S_CUT) relative, so the tau integrand is a smooth periodic (Gaussian-like) function and
the midpoint rule converges geometrically: 12 nodes (float64, S_CUT = 20) give relative errors
~1e-10, 6 nodes (float32, S_CUT = 10) ~1e-5 against mpmath, uniformly in t < t_switch and theta.

n >= 4: contour integral
------------------------
With alpha = (n - 1)/2 and phi = 2 arccos(sqrt(X)) = theta, the dimension recursion
p^(n+2) = (e^{n t/2} / 4 pi) d/dX p^(n) and the Abel (Mehler) transform from S^1 to S^2 give,
for every n (odd n: integer alpha; even n: half-integer alpha),

    p^(n)_t(X) = (4 pi)^(-alpha) e^(alpha^2 t/2) (2 pi t)^(-1/2) D^alpha Theta_n(X),

where D^alpha is the Riemann-Liouville derivative of order alpha with base point X = 0 and
Theta_n(zeta) = sum_j (+-1)^j exp(-(phi(zeta) + 2 pi j)^2 / 2t) is the periodic (odd n) or
antiperiodic (even n, sign (-1)^j) theta function.  For odd n, Theta is an entire function of
zeta and D^alpha is the ordinary alpha-th derivative; for even n, Theta = sqrt(zeta) H(zeta) with
H entire.  Both have non-negative Taylor coefficients (Griffiths' mixture representation of the
Jacobi diffusion), which is what makes the contour integral below well conditioned: no
alternating sums, no 1/sin(theta) singularities, and nothing special at the antipode.

D^alpha is computed from the (generalized) Cauchy formula

    D^alpha f(X) = Gamma(alpha+1)/(2 pi i) \oint f(zeta) (zeta - X)^(-alpha-1) d zeta

on a circle |zeta - X| = delta whose radius sits at the saddle point of |f(X+delta)| delta^-alpha
(found by Newton iterations on delta kappa(X + delta) = alpha + 1/2, kappa = d log f / dX).
The integrand is Gaussian-like in the angle around the saddle, so N nodes on the arc
|angle| < phi_c suffice (phi_c: where the integrand falls below exp(-32); midpoint rule, or
Gauss-Legendre with sinh clustering for an open keyhole arc that must reach the cut).  N = 32
(16 complex evaluations thanks to conjugate symmetry; float32: N = 16).
For even n and delta < X the circle crosses the branch cut [0, X] of (zeta - X)^(-alpha-1):
the contour is then the keyhole "circle + both banks of the cut", whose bank part is the real
integral sin(pi(alpha+1))/pi * int_0^{X-delta} f(y) (X-y)^(-alpha-1) dy (Gauss-Legendre in
log(X - y) with a sqrt-endpoint substitution).  For even n and delta > X the circle encloses the
whole cut and the combined branch sqrt(zeta)(zeta - X)^(-alpha-1) is single valued on it.
The score uses D^(alpha+1) on the same nodes: d log p / dX = D^(alpha+1) Theta / D^alpha Theta.
Theta is evaluated with the two images nearest to the contour (relative truncation error below
exp(-2 pi^2 / t) <= 1e-28 for t in the contour regime); the exponent is computed relative to the
saddle value through an exact arcsin subtraction formula so that float32 keeps its accuracy
even at t = 1e-4 (where theta^2/2t ~ 5e4).

Large times: Gegenbauer eigen-series
------------------------------------
p = (1/vol) sum_l exp(-l(l+n-1)t/2) d_l G_l(cos theta), d_l = dim of the degree-l harmonics,
G_l = C_l^lambda / C_l^lambda(1) by the bounded three-term recurrence; the score uses
G_l' = l(l+2 lambda)/(2 lambda+1) G^(lambda+1)_(l-1).  The weights follow from w_0 = 1 and
w_(l+1) = w_l (d_(l+1)/d_l) e^(-(l + n/2) t) (two exponentials per point in all).  Rounding error
is eps * sum|terms| / |sum| <= eps * exp(R), R = log p_t(0) - log p_t(pi) (worst at the antipode).

Regime switch
-------------
Per n and dtype, t_switch solves R(n, t) = 16 (float64) or 7 (float32) for the value and the
derivative series (computed once in numpy at construction).  t >= t_switch: eigen-series with
L terms (tail < 1e-20, resp. 1e-10); t < t_switch: the small-time method of the table.
Examples (float64): n=2: 0.264, n=3: 0.242, n=15: 0.145, n=127: 0.0443, n=1023: 0.00949.
Both methods are accurate on both sides of every switch (tests/test_sphere.py).

Speed (CPU, where XLA's sin/cos cost ~7 ns and atan2/asin ~20 ns per element, against ~2 ns
for exp/log and ~1 ns for sqrt): angles come from Chebyshev polynomials (`_asin_sc`,
`_atan2`, exact to ~1e-15 / 3e-8 relative), the contour's node rotations for odd n from a
complex recurrence, the saddle from 4 (float64) / 2 (float32) Newton steps (the quadrature is
exact for any radius; the saddle only makes it converge fast), the eigen-series without a
transcendental per term.  The public functions are plain elementwise code so that XLA merges
log p and score computed in one jitted function; the samplers process their batches in
cache-sized chunks (`_radial_chunked`).

Gradients: `SphereHeat.log_prob` carries a custom JVP: d log p = g (dX - dS) + (d log p/dt) dt,
the time derivative by forward-mode differentiation of the same formulas, so jax.grad of the
log-density is finite everywhere (y = x, y = -x) and consistent with the closed-form score.

Exact sampling of theta (the direction is uniform, see sphere.py): n = 1 wrapped normal;
n = 3 rejection from a folded Maxwell law (small t) or the uniform law (large t); n = 2 from
S^3 through the Hopf map (a Riemannian submersion S^3 -> S^2(1/2), so Brownian motion maps to
Brownian motion: the S^2 distance at time t is 2 atan2(sin th3 sqrt(1-u^2), sqrt(cos^2 th3 +
sin^2 th3 u^2)) with th3 the S^3 distance at time t/4 and u ~ U(-1, 1)); n >= 4: rejection,
per point one of (see `_sample_theta`): for t < min(6 alpha^(-3/2), t_switch) a proposal from
the closed-form log-concave q(theta) = theta^alpha sin^alpha(theta) e^(-theta^2/2t) with the
Girsanov bound p_t <= (2 pi t)^(-n/2) e^(c t) q / sin^(2 alpha) (c = alpha^2/3 + alpha/6,
`_girsanov_c`), i.e. one kernel evaluation per candidate; otherwise a piecewise-exponential
hull of the exact log-concave radial density (three evaluations for the tangents).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from manifolds import _numerics as nx

_PI = math.pi

# Saddle-point / quadrature settings (contour, n >= 4).
_NEWTON_STEPS = {"float64": 4, "float32": 2}   # Newton steps for the saddle radius
_PHI_C_WIDTHS = 8.0            # arc cut where |integrand| < exp(-W^2/2) (local model)
_KEYHOLE_FULL_ALPHA = 18.0     # below: keyhole arcs always reach the cut at phi = pi
_CLUSTER = 2.0                 # sinh clustering strength of open keyhole arcs
_SEG_DECAY = 45.0              # bank integral truncated where f/f(X-delta) < e^-45
_SMALL_ALPHA = 6.0             # even n with alpha below this keep the circle away from 0
_N_ARC = {"float64": 32, "float32": 16}   # nodes on the full arc (half are evaluated)
_N_SEG = {"float64": 20, "float32": 8}    # Gauss-Legendre nodes on the bank of the cut
# Mehler-type integral (n = 2): midpoint nodes and Gaussian truncation exp(-S_CUT).
_N_MEHLER = {"float64": 12, "float32": 6}
_S_CUT = {"float64": 20.0, "float32": 10.0}
# Eigen-series switch (cancellation budget R) and tail tolerance.
_R_MAX = {"float64": 16.0, "float32": 7.0}
_TAIL = {"float64": 1e-20, "float32": 1e-10}
_S3_UNIFORM = 1.1              # S^3 sampler: uniform proposal above this time (acceptance >= 0.53)
_L_S3 = 12                     # eigen terms of the S^3 acceptance ratio (s >= 1.1: < 1e-28)
_UNIF_ACCEPT = 0.4             # sampler: uniform-law proposal where its acceptance >= this
_MAX_ITER = 1000               # rejection loops: guard only (see _rejection)
_METHODS = {1: "circle", 2: "mehler", 3: "images"}
_CONTOUR_METHODS = ("contour_odd", "contour_even", "real_odd")
_REAL_MAX_N = 23               # odd 5 <= n <= this: real-axis derivatives (`_real_odd`)
_REAL_S0 = 0.25                # Taylor centre (in S) of F = 2F1(1, 1; 3/2; S)
_REAL_TERMS = {"float64": 60, "float32": 36}   # Taylor terms: |S - S0| <= 1/4, radius 3/4
_SUBSET_CHUNK = 128           # chunk of the compacted contour subset (`_on_subset`)


def log_volume(n: int) -> float:
  """log vol(S^n) = log(2 pi^((n+1)/2) / Gamma((n+1)/2))."""
  return math.log(2.0) + 0.5 * (n + 1) * math.log(_PI) - math.lgamma(0.5 * (n + 1))


def _eigen_tables(n: int, lmax: int):
  """log d_l (dimension of degree-l harmonics) and eigenvalues l(l+n-1)/2, l < lmax."""
  l = np.arange(lmax, dtype=np.float64)
  if n == 1:
    logd = np.where(l == 0, 0.0, math.log(2.0))
  else:
    # log binom(l + n - 2, l) by a cumulative sum (vectorized, exact enough).
    logbin = np.concatenate([[0.0], np.cumsum(np.log((l[1:] + n - 2) / l[1:]))])
    logd = np.log((2 * l + n - 1) / (n - 1)) + logbin
  return logd, l * (l + n - 1) / 2.0


class _SeriesTables:
  """log-weights of the value and score eigen-series (t-independent parts), l < lmax."""

  def __init__(self, n: int, lmax: int = 3000):
    lam = 0.5 * (n - 1)
    self.logd, self.ev = _eigen_tables(n, lmax)
    l = np.arange(lmax, dtype=np.float64)
    self.dcoef = l * (l + 2 * lam) / (2 * lam + 1)      # G_l' = dcoef_l G^(lam+1)_(l-1)
    self.logd1 = self.logd + np.log(np.maximum(self.dcoef, 1e-300))

  def ratio(self, t: float) -> float:
    """R = log(sum |terms|) - log|sum terms| at the antipode, worst of value/score series."""
    out = []
    for lw, start in ((self.logd - self.ev * t, 0), (self.logd1 - self.ev * t, 1)):
      lw = lw[start:]
      w = np.exp(lw - lw.max())
      alt = abs(float(np.sum(w * (-1.0) ** np.arange(len(w)))))
      out.append(math.log(float(np.sum(w))) - (math.log(alt) if alt > 0 else -np.inf))
    return max(out)

  def t_switch(self, rmax: float) -> float:
    """Smallest t (bisection in log t) with R(t) <= rmax."""
    lo, hi = 1e-5, 100.0
    for _ in range(60):
      mid = math.sqrt(lo * hi)
      r = self.ratio(mid)
      if not np.isfinite(r) or r > rmax:
        lo = mid
      else:
        hi = mid
    return hi

  def t_accept(self, accept: float) -> float:
    """Smallest t with 1 / (vol p_t(pole)) >= accept, i.e. sum_l d_l e^(-l(l+n-1)t/2) <=
    1/accept (bisection in log t; the sum falls with t)."""
    lo, hi = 1e-6, 100.0
    for _ in range(60):
      mid = math.sqrt(lo * hi)
      lw = self.logd - self.ev * mid
      if np.log(np.sum(np.exp(lw - lw.max()))) + lw.max() > -math.log(accept):
        lo = mid
      else:
        hi = mid
    return hi

  def n_terms(self, t: float, tol: float) -> int:
    """Terms needed at time t for a tail below tol * (sum of |terms|), both series."""
    lw = self.logd1 - self.ev * t
    w = np.exp(lw - lw.max())
    tail = np.cumsum(w[::-1])[::-1]
    return int(np.argmax(tail < tol * w.sum())) + 2


def _gauss_legendre_half(N: int):
  """Positive half of the N-point Gauss-Legendre rule on [-1, 1] (N even)."""
  x, w = np.polynomial.legendre.leggauss(N)
  return x[N // 2:], w[N // 2:]


def _gauss_legendre_01(N: int):
  x, w = np.polynomial.legendre.leggauss(N)
  return 0.5 * (x + 1.0), 0.5 * w


def _dtname(dtype) -> str:
  return "float64" if jnp.dtype(dtype) == jnp.float64 else "float32"


def _padded_length(L: int, method: str, name: str) -> int:
  """Eigen-series length, padded so that one compiled kernel serves many n: contour methods
  use at least 48 (float64) / 32 (float32) terms (L <= 46 / 24 for n <= 1023), the closed
  forms a multiple of 16 (the unrolled series is cheap next to the small-time method)."""
  floor = (48 if name == "float64" else 32) if method in _CONTOUR_METHODS else 16
  return max(floor, -(-L // 16) * 16)


class SphereHeat:
  """Radial heat kernel of S^n.

  Per-n constants are computed once in numpy and handed to module-level jitted functions as
  array arguments, so one compiled kernel serves every n with the same method and series
  length (e.g. all contour n of one parity).
  """

  def __init__(self, n: int):
    self.n = n
    self.alpha = 0.5 * (n - 1)
    self.even = (n % 2 == 0)
    self.method = _METHODS.get(n, "contour_even" if self.even else
                               ("real_odd" if n <= _REAL_MAX_N else "contour_odd"))
    self.log_vol = log_volume(n)
    tab = _SeriesTables(n)
    self.t_switch = {k: tab.t_switch(r) for k, r in _R_MAX.items()}
    self.n_terms = {k: tab.n_terms(self.t_switch[k], _TAIL[k]) for k in _R_MAX}
    self._tab = tab
    self._params = {}

  def params(self, dtype) -> dict:
    """Per-n constants as 0-d / 1-d numpy arrays of `dtype` (cached)."""
    name = _dtname(dtype)
    if name not in self._params:
      n, a, lam = self.n, self.alpha, self.alpha
      L = self.n_terms[name]
      Lp = _padded_length(L, self.method, name)
      tab = self._tab
      l = np.arange(1, Lp - 1, dtype=np.float64)          # recurrence steps l -> l + 1
      lp = lam + 1.0
      # weight ratios d_(l+1)/d_l, zero from the last needed term on (pads contribute 0)
      rho = np.exp(tab.logd[1:Lp] - tab.logd[:Lp - 1])
      rho[L - 1:] = 0.0
      p = {
          "alpha": a, "log_vol": self.log_vol, "t_switch": self.t_switch[name],
          # the sampler's uniform-proposal path (acceptance >= _UNIF_ACCEPT) from here on
          "t_unif": max(self.t_switch[name], tab.t_accept(_UNIF_ACCEPT)),
          "log_vol_sub": math.log(2.0) if n == 1 else log_volume(n - 1), "n": float(n),
          # jump of (zeta - X)^(-alpha-1) across the cut, over pi (0 for odd n)
          "jump": math.sin(_PI * (a + 1.0)) / _PI if self.even else 0.0,
          "lgamma_a1": math.lgamma(a + 1.0),
          "rho0": rho[0], "dco1": tab.dcoef[1],
          "ag": 2.0 * (l + lam) / (2 * lam + l), "bg": l / (2 * lam + l),
          "ah": 2.0 * (l + lp) / (2 * lp + l), "bh": l / (2 * lp + l),
          "rho": rho[1:Lp - 1], "dco": tab.dcoef[2:Lp],
      }
      if self.method == "real_odd":
        p["ftab"] = _real_tables(int(a), _REAL_TERMS[name])
      # numpy (not jnp) arrays: safe to cache even when first built inside a jax trace
      npdt = np.float64 if name == "float64" else np.float32
      self._params[name] = {k: np.asarray(v, npdt) for k, v in p.items()}
    return self._params[name]

  def _inputs(self, X, S, t):
    X, S, t = jnp.broadcast_arrays(X, S, t)
    return X, S, t, self.params(X.dtype)

  def radial(self, X, S, t):
    """(log p_t, d log p_t / du) at X = cos^2(theta/2), S = sin^2(theta/2), u = X - S.
    Shapes broadcast; values are exact (no custom derivative: use `log_prob` for gradients)."""
    X, S, t, p = self._inputs(X, S, t)
    return _radial_jit(X, S, t, p, method=self.method)

  def log_prob(self, X, S, t):
    """log p_t with the custom JVP of the module doc (finite gradients everywhere)."""
    X, S, t, p = self._inputs(X, S, t)
    return _log_prob(X, S, t, p, self.method)

  def regimes(self, X, S, t):
    """Which method/branch each point uses (diagnostics for tests and benchmarks): dict of
    boolean arrays.  Always 'eigen'; n = 1, 3: 'antipodal' (theta > pi/2 pair form);
    n = 2: 'truncated' (lambda < 1); contour n: 'keyhole' (open arc + bank of the cut, even n),
    'closed' (closed circle), 'full_arc' (arc reaching phi = pi), 'moved' (radius moved off the
    saddle to keep the circle away from zeta = 0, small even n)."""
    X, S, t, p = self._inputs(X, S, t)
    return _regimes_jit(X, S, t, p, method=self.method)

  def sample_theta(self, key, t):
    """Exact draw of the geodesic distance theta ~ r(theta) on [0, pi], any batch shape of t.

    r(theta) = vol(S^{n-1}) p_t(theta) sin^{n-1}(theta); methods in the module doc."""
    t = jnp.asarray(t)
    shape = t.shape
    dt = t.dtype
    # t >= 1e4: the law is uniform to within e^(-5000); clipping keeps every weight finite
    # (at t = inf, 0 * inf would make an acceptance ratio NaN and the loop endless)
    # and below at eps^2 as in `_radial` (the law is a point mass to working precision)
    tf = jnp.clip(t.reshape(-1), float(jnp.finfo(dt).eps) ** 2, 1e4)
    if self.n == 1:
      z = jnp.sqrt(tf) * jax.random.normal(key, tf.shape, dt)
      th = jnp.abs(jnp.mod(z + _PI, 2.0 * _PI) - _PI)
    elif self.n == 2:
      th = _sample_theta_s2_jit(key, tf)
    elif self.n == 3:
      th = _sample_theta_s3_jit(key, tf)
    else:
      th = _sample_theta_jit(key, tf, self.params(dt), method=self.method)
    return th.reshape(shape)


def _regimes(X, S, t, p, method):
  eig = t >= p["t_switch"]
  c = ~eig
  out = {"eigen": eig}
  tc = jnp.where(eig, 0.5 * p["t_switch"], t)
  if method in ("circle", "images"):
    out["antipodal"] = c & (X < 0.5)
  elif method == "mehler":
    out["truncated"] = c & (_mehler_lambda(X, S, tc) < 1.0)
  else:
    if method == "real_odd":
      ok = _real_odd(X, S, tc, p)[2]
      out["real"] = c & ok
      out["real_hi"] = c & ok & (S > 0.5)     # theta > pi/2: closed form + recurrence
    _, _, keyhole, phic, moved = _plan(X, S, tc, p, method == "contour_even")
    out.update({"keyhole": c & keyhole, "closed": c & ~keyhole,
                "full_arc": c & (phic >= _PI), "moved": c & moved})
  return out


_regimes_jit = jax.jit(_regimes, static_argnames=("method",))


# ----------------------------------------------------------------------------- eigen-series
def _eigen(X, S, t, p):
  """(log p, d log p / du) by the Gegenbauer series.  X, S, t: same shape (...)."""
  u = X - S
  one = jnp.ones_like(u)
  # w_l = d_l exp(-l(l+n-1) t / 2) by w_(l+1) = w_l rho_l e^(-nt/2) e^(-lt): each w_l <= e^R.
  b = jnp.exp(-0.5 * p["n"] * t)                 # e^(-(l + n/2) t) at l = 0
  e = jnp.exp(-t)
  w1 = p["rho0"] * b
  s0 = one + w1 * u                              # value series: G_0 = 1, G_1 = u
  s1 = w1 * p["dco1"]                            # score series: G_1' = dco_1 H_0, H_0 = 1

  def step(c, x):
    g_prev, g, h_prev, h, w, b, s0, s1 = c
    ag, bg, ah, bh, rho, dco = x                 # step l -> l + 1
    b = b * e
    w = w * rho * b
    g_prev, g = g, ag * u * g - bg * g_prev      # G_(l+1)
    s0 = s0 + w * g
    s1 = s1 + w * dco * h                        # G_(l+1)' = dco_(l+1) H_l
    h_prev, h = h, ah * u * h - bh * h_prev      # H_(l+1)
    return (g_prev, g, h_prev, h, w, b, s0, s1), None

  xs = tuple(p[k] for k in ("ag", "bg", "ah", "bh", "rho", "dco"))
  init = (one, u, one, u, w1, b, s0, s1)
  # unrolled: XLA fuses the whole recurrence into one loop over the batch
  (_, _, _, _, _, _, s0, s1), _ = jax.lax.scan(step, init, xs, unroll=True)
  return jnp.log(s0) - p["log_vol"], s1 / s0


# ----------------------------------------------------------------------------- closed forms
def _asin_coeffs(deg: int) -> np.ndarray:
  """Chebyshev coefficients of arcsin(sqrt(z))/sqrt(z) on z in [0, 1/2] (variable 4z - 1)."""
  def f(x):
    z = (x + 1.0) / 4.0
    r = np.sqrt(np.maximum(z, 1e-300))
    return np.where(z > 0, np.arcsin(r) / r, 1.0)
  return np.polynomial.chebyshev.chebinterpolate(f, deg)


# Degrees 16 / 8: relative errors 1e-14 / 3e-9 (numpy check at import would be redundant).
_ASIN_CHEB = {"float64": _asin_coeffs(16), "float32": _asin_coeffs(8)}


def _asin_sc(s, c):
  """arcsin(s) in [0, pi/2] from s, c >= 0 with s^2 + c^2 = 1, by a Chebyshev polynomial in
  min(s, c)^2 (XLA's atan2/asin cost ~20 ns per element on CPU; this is a dozen FMAs)."""
  lo = s <= c
  v = jnp.where(lo, s, c)
  x = 4.0 * v * v - 1.0
  a = v * _clenshaw(_ASIN_CHEB[_dtname(s.dtype)], x)
  return jnp.where(lo, a, 0.5 * _PI - a)


# atan(a)/a on a in [0, 1] as a polynomial in 2 a^2 - 1: degrees 22 / 10, errors ~1e-16 / 3e-8.
_ATAN_CHEB = {k: np.polynomial.chebyshev.chebinterpolate(
    lambda x: (lambda a: np.where(a > 0, np.arctan(a) / np.maximum(a, 1e-300), 1.0))(
        np.sqrt((x + 1.0) / 2.0)), d) for k, d in (("float64", 22), ("float32", 10))}


def _clenshaw(coef, x):
  """sum_k coef_k T_k(x) (Clenshaw; coefficients as weakly typed Python floats)."""
  b1, b2 = jnp.zeros_like(x), jnp.zeros_like(x)
  for ck in coef[:0:-1]:
    b1, b2 = 2.0 * x * b1 - b2 + float(ck), b1
  return x * b1 - b2 + float(coef[0])


def _atan2(y, x):
  """atan2(y, x) by octant reduction and a Chebyshev polynomial (vectorizes, unlike XLA's
  CPU atan2 at ~20 ns per element); atan2(0, 0) = 0."""
  ax, ay = jnp.abs(x), jnp.abs(y)
  mx, mn = jnp.maximum(ax, ay), jnp.minimum(ax, ay)
  a = mn / jnp.where(mx > 0, mx, 1.0)
  r = a * _clenshaw(_ATAN_CHEB[_dtname(a.dtype)], 2.0 * a * a - 1.0)
  r = jnp.where(ay > ax, 0.5 * _PI - r, r)
  r = jnp.where(x < 0, _PI - r, r)
  return jnp.where(y < 0, -r, r)


def _angles(X, S):
  """theta, eps = pi - theta (both accurate near 0) and sin(theta) = 2 sqrt(X S)."""
  sx, ss = jnp.sqrt(X), jnp.sqrt(S)
  return 2.0 * _asin_sc(ss, sx), 2.0 * _asin_sc(sx, ss), 2.0 * sx * ss


def _even_fn(z2, small, large, thresh):
  """f(z) for an even analytic f given z^2: `small` series below thresh, else `large`(z)."""
  is_small = z2 < thresh
  zs = jnp.where(is_small, 0.0, z2)
  zl = jnp.sqrt(jnp.where(is_small, thresh, z2))
  return jnp.where(is_small, small(zs), large(zl))


def _tanhc(z2):
  """tanh(z)/z from z^2."""
  return _even_fn(z2, lambda s: 1.0 - s / 3.0 + 2.0 * s * s / 15.0 - 17.0 * s ** 3 / 315.0,
                  lambda z: jnp.tanh(z) / z, 1e-3)


def _langevin_over_z(z2):
  """(coth z - 1/z) / z from z^2 (-> 1/3 at 0)."""
  return _even_fn(z2, lambda s: 1.0 / 3.0 - s / 45.0 + 2.0 * s * s / 945.0 - s ** 3 / 4725.0,
                  lambda z: (1.0 / jnp.tanh(z) - 1.0 / z) / z, 1e-2)


def _zcoth_prime_over_z(z2):
  """(d/dz z coth z) / z = (coth z - z / sinh^2 z) / z from z^2 (-> 2/3 at 0)."""
  def large(z):
    q = jnp.exp(-2.0 * z)
    return (1.0 / jnp.tanh(z) - 4.0 * z * q / (1.0 - q) ** 2) / z
  return _even_fn(z2, lambda s: 2.0 / 3.0 - 4.0 * s / 45.0 + 4.0 * s * s / 315.0
                  - 8.0 * s ** 3 / 4725.0, large, 1e-2)


def _cot_gap(x2):
  """(1/x - cot x) / sin x from x^2, 0 <= x < pi (-> 1/3 at 0)."""
  def large(x):
    return (1.0 / x - jnp.cos(x) / jnp.sin(x)) / jnp.sin(x)
  return _even_fn(x2, lambda s: 1.0 / 3.0 + 7.0 * s / 90.0 + 31.0 * s * s / 1890.0
                  + 127.0 * s ** 3 / 37800.0, large, 1e-2)


def _images_circle(X, S, t):
  """S^1: (log p, d log p / du) from the images k = 0 (theta <= pi/2) or k = 0, -1."""
  theta, eps, _ = _angles(X, S)
  base = -0.5 * jnp.log(2.0 * _PI * t)
  ant = X < 0.5
  # theta <= pi/2
  lp_m = base - theta * theta / (2.0 * t)
  g_m = nx.x_over_sin(theta * theta) / t
  # theta > pi/2: e^{-theta^2/2t} + e^{-(2pi-theta)^2/2t} = e^{-(pi^2+eps^2)/2t} 2 cosh z
  z = _PI * eps / t
  lp_a = base - (_PI ** 2 + eps * eps) / (2.0 * t) + z + jnp.log1p(jnp.exp(-2.0 * z))
  g_a = nx.x_over_sin(eps * eps) * ((_PI / t) ** 2 * _tanhc(z * z) - 1.0 / t)
  return jnp.where(ant, lp_a, lp_m), jnp.where(ant, g_a, g_m)


def _images_s3(X, S, t):
  """S^3: (log p, d log p / du) from the images k = 0 (theta <= pi/2) or k = 0, -1."""
  theta, eps, _ = _angles(X, S)
  base = -1.5 * jnp.log(2.0 * _PI * t) + 0.5 * t
  ant = X < 0.5
  th2 = jnp.where(ant, 1.0, theta * theta)
  ep2 = jnp.where(ant, eps * eps, 1.0)
  # theta <= pi/2: (theta / sin theta) e^{-theta^2/2t}
  lp_m = base - th2 / (2.0 * t) - nx.log_sinc(th2)
  g_m = nx.x_over_sin(th2) / t - _cot_gap(th2)
  # theta > pi/2: pair form (module doc), z = pi eps / t
  z2 = (_PI / t) ** 2 * ep2
  eps_a = jnp.sqrt(ep2)
  coth = jnp.where(z2 > 0, 1.0 / jnp.tanh(jnp.sqrt(jnp.where(z2 > 0, z2, 1.0))), 0.0)
  # D = 1 - (t/pi^2) z coth z = 1 - (eps/pi) coth z  (>= 1/2 - t/pi^2 for eps <= pi/2)
  D = jnp.where(z2 < 1e-2, 1.0 - (t / _PI ** 2) * (1.0 + z2 / 3.0 - z2 * z2 / 45.0),
                1.0 - (eps_a / _PI) * coth)
  lp_a = (base - (_PI ** 2 + ep2) / (2.0 * t) + jnp.log(2.0 * _PI ** 2 / t)
          + nx.log_sinhc(z2) - nx.log_sinc(ep2) + jnp.log(D))
  g_a = (nx.x_over_sin(ep2) * ((_PI / t) ** 2 * _langevin_over_z(z2) - 1.0 / t
                               - _zcoth_prime_over_z(z2) / (t * D))
         + _cot_gap(ep2))
  return jnp.where(ant, lp_a, lp_m), jnp.where(ant, g_a, g_m)


# ----------------------------------------------------------------------------- Mehler (n = 2)
def _phi1_series(x):
  """(1 - e^-x)/x for 0 <= x < 0.1 (relative error < 2e-12)."""
  return 1.0 - x / 2.0 * (1.0 - x / 3.0 * (1.0 - x / 4.0 * (1.0 - x / 5.0 * (1.0 - x / 6.0))))


def _mehler_lambda(X, S, t):
  """Truncation lambda in (0, 1]: sigma = 1 - lambda is where the Gaussian factor of the S^2
  integrand has fallen to exp(-S_CUT) (1 when the whole range is needed)."""
  dt = X.dtype
  sc = _S_CUT[_dtname(dt)]
  theta = 2.0 * _asin_sc(jnp.sqrt(S), jnp.sqrt(X))
  ps = jnp.sqrt(theta * theta + 2.0 * t * sc)               # psi_1 at the cut
  full = ps >= _PI
  Xs = jnp.where(full, 1.0, jnp.maximum(X, jnp.finfo(dt).tiny))
  # (cos^2(theta/2) - cos^2(ps/2)) / X, with ps - theta = 2 t S_CUT / (ps + theta)
  lam = jnp.sin(t * sc / (ps + theta)) * jnp.sin(0.5 * (ps + theta)) / Xs
  return jnp.where(full, 1.0, jnp.clip(lam, 0.0, 1.0))


def _mehler_s2(X, S, t):
  """S^2: (log p, d log p / du) by the Mehler-type integral (module doc).  X, S, t: (...)."""
  dt = X.dtype
  name = _dtname(dt)
  N = _N_MEHLER[name]
  tau = (np.arange(N) + 0.5) * _PI / N
  s2 = jnp.asarray(np.sin(0.5 * tau) ** 2, dt)             # sin^2(tau/2), node constants
  c2 = jnp.asarray(np.cos(0.5 * tau) ** 2, dt)
  ex = lambda v: v[..., None]
  theta = 2.0 * _asin_sc(jnp.sqrt(S), jnp.sqrt(X))
  lam = jax.lax.stop_gradient(_mehler_lambda(X, S, t))     # a quadrature parameter only
  sX, sS = ex(jnp.sqrt(X)), ex(jnp.sqrt(S))
  lam_e = ex(lam)
  w = ex(X) * (1.0 - lam_e * s2)                            # sin^2(eps_1 / 2), w = X sigma
  sw = jnp.sqrt(w)                                          # sin(eps_1 / 2)
  cw = jnp.sqrt(ex(S) + ex(X) * lam_e * s2)                 # cos(eps_1 / 2) = sqrt(1 - w)
  den = jnp.sqrt(c2 + (1.0 - lam_e) * s2)                   # sqrt(sigma), no cancellation
  eps1 = 2.0 * _asin_sc(sw, cw)
  psi1 = _PI - eps1                                         # abs. error ~ulp(pi): harmless
  # psi_1 - theta = 2 (asin sqrt X - asin sqrt w), sine/cosine of the half without cancellation
  sin_h = sX * lam_e * s2 / (cw + den * sS)
  cos_h = sS * cw + sX * sw
  r = _asin_sc(sin_h, cos_h) * (psi1 + ex(theta)) / ex(t)        # exponent, >= 0
  x1 = 2.0 * _PI * eps1 / ex(t)
  q1 = jnp.exp(-x1)                                         # image -1 relative to image 0
  er = jnp.exp(-r)
  nval = er * (psi1 + (_PI + eps1) * q1)                    # N(eps_1) e^{theta^2/2t}
  # (1 - q1)/x1: Taylor series where the difference would cancel
  small = x1 < 0.1
  phi1 = jnp.where(small, _phi1_series(x1), (1.0 - q1) / jnp.where(small, 1.0, x1))
  nder = er * ((2.0 * _PI / ex(t)) * phi1 * (psi1 * psi1 / ex(t) - 1.0)
               - 4.0 * _PI * q1 / ex(t))                    # (dN/d eps_1) / eps_1, scaled
  e_over_s = jnp.where(sw > 0.0, eps1 / jnp.where(sw > 0.0, sw, 1.0), 2.0)  # eps_1/sin(eps_1/2)
  icw = 1.0 / cw
  h = nval * icw
  hp = (nder * e_over_s + 0.5 * nval * icw) * icw * icw
  c = jnp.sqrt(c2)
  i0 = jnp.sum(h * c / den, axis=-1)
  i1 = jnp.sum(hp * c * den, axis=-1)
  logp = (0.125 * t - 1.5 * jnp.log(2.0 * _PI * t) - theta * theta / (2.0 * t)
          + 0.5 * jnp.log(lam) + math.log(_PI / N) + jnp.log(i0))
  return logp, 0.5 * i1 / i0

# ----------------------------------------------------------------------------- contour
def _kappa(zeta, omz, t, even):
  """d log Theta / d zeta on the real axis, zeta > 0 (omz = 1 - zeta).  Only used to place
  the contour (saddle point), so a few ulps do not matter; finite and positive."""
  dt = zeta.dtype
  two_pi = 2.0 * _PI
  big = omz < 0.0
  sz = jnp.sqrt(jnp.maximum(zeta, jnp.finfo(dt).tiny))
  so = jnp.sqrt(jnp.maximum(omz, 0.0))
  # (for zeta > 1 these are garbage but unused)
  phi = 2.0 * _asin_sc(so, sz)                          # theta of zeta <= 1
  psi = _asin_sc(sz, so)                                # pi/2 - phi/2, accurate near 0
  # 1/2 <= zeta <= 1: main image, (2/t) phi / sin(phi).
  small = zeta < 0.5
  phm = jnp.where(small, 0.5, phi)
  k_mid = (2.0 / t) / nx.sinc(phm * phm)
  # zeta > 1: phi = i beta, (2/t) beta / sinh(beta).
  beta = 2.0 * jnp.arcsinh(jnp.sqrt(jnp.where(big, -omz, 1.0)))
  k_big = (2.0 / t) / nx.sinhc(beta * beta)
  # zeta < 1/2: images 0 and -1 together (exact at the antipode).
  ps = jnp.where(small, jnp.maximum(psi, jnp.finfo(dt).tiny), 0.25)
  z = two_pi * ps / t
  if even:
    k_small = (two_pi / jnp.tanh(z) - 4.0 * ps) / (t * jnp.sin(2.0 * ps))
  else:
    zz = jnp.where(z > 1e-3, z, 1.0)
    tanhc = jnp.where(z > 1e-3, jnp.tanh(zz) / zz, 1.0 - z * z / 3.0)
    k_small = ((two_pi * two_pi / t) * tanhc - 4.0) / (2.0 * t * nx.sinc(4.0 * ps * ps))
  return jnp.where(small, k_small, jnp.where(big, k_big, k_mid))


def _saddle(X, S, t, p, even):
  """Radius delta with delta * kappa(X + delta) = alpha + 1/2, and s2 ~ -d2/dphi2 log|g|
  (angular curvature of the integrand at the saddle)."""
  target = jnp.log(p["alpha"] + 0.5)

  def kap(d):
    return _kappa(X + d, S - d, t, even)

  # Start from kappa at X + d0 (local model), then safeguarded Newton steps on log(delta)
  # (G is increasing since log Theta is convex in log zeta).
  d0 = (p["alpha"] + 0.5) * t * 0.5
  ell = target - jnp.log(kap(d0))

  def newton(_, carry):
    ell, _ = carry
    d = jnp.exp(ell)
    k, dk = jax.jvp(kap, (d,), (d,))           # dk = delta * kappa'
    G = ell + jnp.log(k) - target
    Gp = 1.0 + dk / k
    # G' lies in (0, 1]; if kappa' overflowed (float32, t < 1e-9) take a fixed-point step.
    Gp = jnp.where(jnp.isfinite(Gp) & (Gp > 1e-3), jnp.minimum(Gp, 1.0), 1.0)
    return ell - jnp.clip(G / Gp, -10.0, 10.0), jnp.where(jnp.isfinite(dk), d * dk, 0.0)

  steps = _NEWTON_STEPS[_dtname(X.dtype)]
  ell, d_dk = jax.lax.fori_loop(0, steps, newton, (ell, jnp.zeros_like(ell)))
  return jnp.exp(ell), p["alpha"] + d_dk


def _arc_terms(dz, b, omr, cb, phir, psir, er, t, even):
  """Theta(zeta_r + dz) / Theta(zeta_r) on the arc (complex dz), without cancellation.

  zeta_r = b^2 is real; omr = 1 - zeta_r, cb = sqrt(1 - zeta_r) (upper-bank branch -i sqrt
  when zeta_r > 1), phir = theta(zeta_r) (-i beta when zeta_r > 1), psir = pi/2 - phir/2
  (real part), er = exp(-4 pi psir / t).  Arguments broadcast; dz has the node axis."""
  zeta = b * b + dz
  a = jnp.sqrt(zeta)
  ca = jnp.sqrt(omr - dz)
  # w = sin(psi - psi_r) = a cb - ca b  =  dz (cb / (a + b) + b / (ca + cb)).
  apb, cpc = a + b, ca + cb
  w = dz * (cb * cpc + b * apb) / (apb * cpc)
  # psi - psi_r = -i log(e^{iD}), e^{iD} = (a + i ca)(b - i cb) = cos D - i w with
  # cos D - 1 = -w^2 / (1 + cos D); complex log1p written out for accuracy.
  vr = -(w * w) / (1.0 + a * b + ca * cb)
  pr = jnp.real(vr) + jnp.imag(w)
  qi = jnp.imag(vr) - jnp.real(w)
  dpsi = jax.lax.complex(-_atan2(qi, 1.0 + pr),
                         0.5 * jnp.log1p(2.0 * pr + pr * pr + qi * qi))
  main = jnp.exp(2.0 * dpsi * (phir - dpsi) / t)        # image 0: exp(-(theta^2-theta_r^2)/2t)
  # Image -1 relative to image 0 (matters near the antipode only).
  if even:
    return main * (jnp.expm1(-4.0 * _PI * (psir + dpsi) / t) / jnp.expm1(-4.0 * _PI * psir / t))
  return main * ((1.0 + jnp.exp(-4.0 * _PI * (psir + dpsi) / t)) / (1.0 + er))


def _odd_rotations(a, m):
  """cos and sin of (2j + 1) a, j < m, stacked on a new last axis (complex recurrence; the
  rounding error grows like j eps)."""
  c1, s1 = jnp.cos(a), jnp.sin(a)
  c2, s2 = c1 * c1 - s1 * s1, 2.0 * c1 * s1
  cs, ss = [c1], [s1]
  for _ in range(m - 1):
    cs.append(cs[-1] * c2 - ss[-1] * s2)
    ss.append(ss[-1] * c2 + cs[-2] * s2)
  return jnp.stack(cs, -1), jnp.stack(ss, -1)


def _plan(X, S, t, p, even):
  """Contour geometry per point: radius delta, curvature s2, keyhole flag, arc half-length."""
  dt = X.dtype
  alpha = p["alpha"]
  tiny = jnp.finfo(dt).tiny
  delta, s2 = _saddle(X, S, t, p, even)
  delta = jax.lax.stop_gradient(delta)
  s2 = jax.lax.stop_gradient(s2)
  moved = jnp.zeros(X.shape, bool)
  if even:
    # Small alpha: keep the circle away from the branch point zeta = 0 (slow convergence).
    r = delta / jnp.maximum(X, tiny)
    lo = (r >= 0.5) & (r <= 1.0) & (alpha < _SMALL_ALPHA)
    hi = (r > 1.0) & (r < 2.0) & (alpha < _SMALL_ALPHA)
    delta = jnp.where(lo, 0.5 * X, jnp.where(hi, 2.0 * X, delta))
    moved = lo | hi
  keyhole = (delta < X) if even else jnp.zeros(X.shape, bool)
  # Arc half-length: where the local model exp(s2 (cos(phi) - 1)) of |integrand| falls
  # below exp(-W^2/2).  For the keyhole the arc must reach the cut (phi = pi) unless the
  # integrand is negligible there.
  sin_half = _PHI_C_WIDTHS / (2.0 * jnp.sqrt(jnp.maximum(s2, 1e-30)))
  sin_half = jnp.minimum(sin_half, 1.0)
  phic = 2.0 * _asin_sc(sin_half, jnp.sqrt((1.0 - sin_half) * (1.0 + sin_half)))
  if even:
    phic = jnp.where(keyhole & (alpha < _KEYHOLE_FULL_ALPHA), _PI, phic)
  phic = jax.lax.stop_gradient(phic)
  return delta, s2, keyhole, phic, moved


def _contour(X, S, t, p, even):
  """(log p, d log p / du) by the contour integral.  X, S, t: same shape, real."""
  dt = X.dtype
  cdt = jnp.complex128 if dt == jnp.float64 else jnp.complex64
  name = _dtname(dt)
  alpha = p["alpha"]
  tiny = jnp.finfo(dt).tiny
  delta, s2, keyhole, phic, _ = _plan(X, S, t, p, even)
  ex = lambda v: v[..., None]
  # Nodes on [0, phi_c] (conjugate symmetry gives the other half): midpoint rule (exact for
  # the periodic integrand of a closed circle, spectral when the integrand is negligible at
  # phi_c); for an open keyhole arc Gauss-Legendre in s with phi = pi sinh(c s)/sinh(c),
  # clustering nodes near the saddle while reaching the cut.
  nh = _N_ARC[name] // 2
  xnode = jnp.asarray((np.arange(nh) + 0.5) / nh, dt)
  wnode = jnp.full((nh,), 1.0 / nh, dt)
  if even:
    xg, wg = _gauss_legendre_half(_N_ARC[name])
    use_gl = ex(keyhole & (phic >= _PI))
    c = _CLUSTER * jnp.log1p(jnp.sqrt(jnp.maximum(s2, 0.0)) / 2.0)
    c = ex(jax.lax.stop_gradient(jnp.where(use_gl[..., 0], jnp.maximum(c, 1e-3), 1.0)))
    sxg = jnp.asarray(xg, dt)
    shc = jnp.sinh(c)
    xnode = jnp.where(use_gl, jnp.sinh(c * sxg) / shc, xnode)
    wnode = jnp.where(use_gl, jnp.asarray(wg, dt) * c * jnp.cosh(c * sxg) / shc, wnode)

  # Reference point zeta_r = X + delta (real).
  zr = X + delta
  omr = S - delta                                        # 1 - zeta_r
  inside = omr >= 0.0
  b = jnp.sqrt(zr)
  sq_in = jnp.sqrt(jnp.where(inside, omr, 0.0))
  sq_out = jnp.sqrt(jnp.where(inside, 0.0, -omr))
  phir_re = 2.0 * _asin_sc(sq_in, b)                     # zeta_r <= 1
  beta_r = 2.0 * jnp.arcsinh(sq_out)                     # zeta_r > 1: phi_r = -i beta_r
  psir = jnp.where(inside, _asin_sc(b, sq_in), 0.5 * _PI)      # (pi - phi_r)/2, accurate
  x4 = -4.0 * _PI * psir / t
  lref = jnp.log(-jnp.expm1(x4)) if even else jnp.log1p(jnp.exp(x4))
  lref = lref + jnp.where(inside, -phir_re * phir_re, beta_r * beta_r) / (2.0 * t)

  if even:
    phi = ex(phic) * xnode
    cph, sph = jnp.cos(phi), jnp.sin(phi)
    ap = ex(alpha) * phi
    rc, rs = jnp.cos(ap), -jnp.sin(ap)                  # e^{-i alpha phi}
  else:
    # midpoint nodes phi_j = (j + 1/2) h: e^{i phi_j}, e^{-i alpha phi_j} by recurrence (XLA's
    # CPU sin/cos cost ~7 ns per element: 4 per point instead of 4 per node)
    hh = 0.5 * phic / nh
    cph, sph = _odd_rotations(hh, nh)
    rc, rs = _odd_rotations(-alpha * hh, nh)
  dz = jax.lax.complex(ex(delta) * (cph - 1.0), ex(delta) * sph)
  cb = jax.lax.complex(sq_in, -sq_out)
  phir = jax.lax.complex(jnp.where(inside, phir_re, 0.0), -beta_r)
  g = _arc_terms(dz, ex(b).astype(cdt), ex(omr), ex(cb), ex(phir), ex(psir), ex(jnp.exp(x4)),
                 ex(t), even)
  g = g * jax.lax.complex(rc, rs)                       # e^{-i alpha phi}
  wgt = wnode * ex(phic) / _PI
  den = jnp.sum(wgt * jnp.real(g), axis=-1)
  num = jnp.sum(wgt * (jnp.real(g) * cph + jnp.imag(g) * sph), axis=-1)  # Re(g e^{-i phi})
  if even:
    # Bank of the cut [0, X - delta] (keyhole only), real:
    #   sin(pi(alpha+1))/pi int_0^{X-delta} f(y) (X - y)^(-alpha-1) dy,  X - y = delta e^sigma,
    # sigma = sigma_up (1 - (1 - tau)^2) (removes the sqrt(y) endpoint behaviour).
    dk = jnp.where(keyhole, delta, 0.5 * X + tiny)
    kx = _kappa(jnp.maximum(X - dk, tiny), S + dk, t, even)
    sig_up = jnp.minimum(jnp.log(jnp.maximum(X, tiny) / dk), jnp.log1p(_SEG_DECAY / (kx * dk)))
    sig_up = jax.lax.stop_gradient(jnp.where(keyhole, jnp.maximum(sig_up, 0.0), 0.0))
    xs, ws = _gauss_legendre_01(_N_SEG[name])
    tau = jnp.asarray(xs, dt)
    sg = ex(sig_up) * (1.0 - (1.0 - tau) ** 2)
    q = jnp.exp(sg)                                      # (X - y) / delta
    v = ex(delta) * q
    y = ex(X) - v
    omy = ex(S) + v
    sy, soy = jnp.sqrt(jnp.maximum(y, 0.0)), jnp.sqrt(omy)
    phy = 2.0 * _asin_sc(soy, sy)                       # sy^2 + soy^2 = 1
    # zeta_r <= 1: -(theta_y^2 - theta_r^2)/2t = 2 dpsi (theta_r - dpsi)/t with
    # dpsi = psi_y - psi_r = arcsin(sy cb - soy b) written without cancellation (as on the arc);
    # zeta_r > 1: -(theta_y^2 + beta_r^2)/2t has no cancellation.
    bb, cbr = ex(b), ex(sq_in)
    apb, cpc = sy + bb, soy + cbr
    wr = -(v + ex(delta)) * (cbr * cpc + bb * apb) / (apb * cpc)
    wr = jnp.clip(wr, -1.0, 1.0)
    dps = jnp.sign(wr) * _asin_sc(jnp.abs(wr), jnp.sqrt((1.0 - wr) * (1.0 + wr)))
    e_in = 2.0 * dps * (ex(phir_re) - dps) / ex(t)
    e_out = -(phy * phy + ex(beta_r * beta_r)) / (2.0 * ex(t))
    fs = jnp.exp(jnp.where(ex(inside), e_in, e_out))
    psy = _asin_sc(sy, soy)
    fs = fs * jnp.expm1(-4.0 * _PI * psy / ex(t)) / jnp.expm1(ex(x4))
    fs = jnp.where(y > 0.0, fs, 0.0)
    wseg = jnp.asarray(ws, dt) * 2.0 * ex(sig_up) * (1.0 - tau) * fs * q ** (-ex(alpha))
    seg0 = jnp.where(keyhole, jnp.sum(wseg, axis=-1), 0.0)
    seg1 = jnp.where(keyhole, jnp.sum(wseg / q, axis=-1), 0.0)
    den = den + p["jump"] * seg0
    num = num - p["jump"] * seg1
  # den > 0 mathematically; the guard only matters where rounding swamps the quadrature
  # (float32 with t < 1e-9 at the antipode, |log p| > 1e12): keeps the result finite.
  ok = den > 0.0
  den = jnp.where(ok, den, tiny)
  num = jnp.where(ok, num, 0.0)
  logD = p["lgamma_a1"] - alpha * jnp.log(delta) + lref + jnp.log(den)
  logp = (-alpha * math.log(4 * _PI) + 0.5 * alpha * alpha * t - 0.5 * jnp.log(2 * _PI * t)
          + logD)
  dlog_du = 0.5 * (alpha + 1.0) / delta * num / den
  return logp, dlog_du




# ----------------------------------------------------------------------------- odd n, real axis
def _real_tables(m: int, K: int) -> np.ndarray:
  """tab[i, k] = d_(k+i) (k+i)!/k!  (i <= m + 1, k < K), float64: the Taylor coefficients of
  the derivatives F^(i)(S0 + s) = sum_k tab[i, k] s^k, where d_j are those of
  F(S) = arcsin(sqrt S) / sqrt(S (1 - S)) = 2F1(1, 1; 3/2; S) at S0 = 1/4.

  The hypergeometric equation S(1-S) F'' + (3/2 - 3S) F' - F = 0 gives the three-term
  recurrence  S0(1-S0)(k+2)(k+1) d_(k+2) + ((1-2S0)k + 3/2 - 3S0)(k+1) d_(k+1) = (k+1)^2 d_k.
  F is analytic in |S - S0| < 3/4, the other solution (S^(-1/2) at 0) only in |S - S0| < 1/4,
  so F is the minimal solution and the recurrence is run backwards (Miller's algorithm: the
  start's error decays like 3^-(N-k)), normalized by d_0 = F(1/4) = 2 pi / (3 sqrt 3).  All
  terms are positive: no cancellation."""
  s0 = _REAL_S0
  N = K + m + 2 + 80
  d = np.zeros(N + 2)
  d[N] = 1.0
  for k in range(N - 1, -1, -1):
    d[k] = (s0 * (1 - s0) * (k + 2) * (k + 1) * d[k + 2]
            + ((1 - 2 * s0) * k + 1.5 - 3 * s0) * (k + 1) * d[k + 1]) / (k + 1) ** 2
    if d[k] > 1e250:                      # rescale (only the ratios matter until the end)
      d[k:] *= 1e-250
  d *= (2 * _PI / (3 * math.sqrt(3.0))) / d[0]
  k = np.arange(K, dtype=np.float64)
  tab = np.empty((m + 2, K))
  fall = np.ones(K)                        # (k+i)!/k!
  for i in range(m + 2):
    tab[i] = d[i:i + K] * fall
    fall = fall * (k + i + 1)
  return tab


def _real_odd(X, S, t, p):
  """(log p, d log p / du, ok) for odd n = 2m + 1 on the real axis; `ok` marks the points
  where the result is accurate (the others need the contour).

  For odd n, D^alpha in the contour formula is the ordinary m-th X-derivative of
  Theta = sum_j exp(-(theta + 2 pi j)^2 / 2t).  Only the main image j = 0 is kept: the next,
  2 pi - theta, is exp(-2 pi (pi - theta) / t) smaller, below e^-25 where `ok` (it matters only
  near the antipode).  D^k e^h = e^h Y_k(h', ..., h^(k)) (complete Bell polynomials) with
  h = -theta^2/2t, h^(i+1)(X) = (2/t) (-1)^i F^(i)(S), F(S) = 2F1(1, 1; 3/2; S) =
  arcsin(sqrt S) / sqrt(S (1 - S)).  The derivatives of F come from

  * S <= 1/2: the positive Taylor tables of `_real_tables` (the forward derivative recurrence
    below is unstable there: the other solution, S^(-1/2) at 0, dominates);
  * S > 1/2: the closed form, F' = (1 + (2S - 1) F) / (2 S (1 - S)) and the differentiated
    hypergeometric equation
        S (1 - S) F^(k+2) = (k + 1)^2 F^(k) + (k + 3/2) (2S - 1) F^(k+1),
    all of whose terms are positive there (stable; no cancellation).

  With a = h' and b_i = h^(i+1)/a^(i+1) = (-t/2F)^i F^(i)/F, y_k = Y_k / a^k obeys
  y_(k+1) = sum_i C(k, i) b_i y_(k-i), an alternating sum.  Its cancellation is measured by
  the same recursion on |b_i| (ybar_m / y_m); `ok` requires ybar / y <= 1e4 (float64) or
  1e3 (float32) for y_m and y_(m+1), and the neglected image below e^-36 (float64) or e^-25
  (float32).  Measured against the contour for n = 5 ... 23 and t < t_switch, the real axis
  then serves theta up to pi - theta ~ 4-6 t (float64 errors <= 5e-12 for log p and score,
  float32 <= 2e-5 / 5e-6), except at the largest t for n >= 19 in float32, where the
  cancellation hands part of theta <= pi/2 to the contour too: the contour is left for a thin
  band at the antipode.  log p = -m log(4 pi) + m^2 t/2 - log(2 pi t)/2 - theta^2/2t
  + m log a + log y_m and d log p / du = (a/2) y_(m+1) / y_m (u = 2X - 1)."""
  tab = p["ftab"]                                   # (m + 2, K)
  m = tab.shape[0] - 2
  K = tab.shape[1]
  sx, ss = jnp.sqrt(X), jnp.sqrt(S)
  theta = 2.0 * _asin_sc(ss, sx)
  eps_th = 2.0 * _asin_sc(sx, ss)                   # pi - theta, accurate at the antipode
  hi = S > 0.5
  f64 = X.dtype == jnp.float64
  img = 2.0 * _PI * eps_th >= (36.0 if f64 else 25.0) * t
  s = jnp.where(hi, 0.0, S - _REAL_S0)
  F = []
  for i in range(m + 1):                            # Horner, one plain polynomial each
    acc = jnp.full_like(s, tab[i, K - 1])
    for k in range(K - 2, -1, -1):
      acc = acc * s + tab[i, k]
    F.append(acc)
  a = (2.0 / t) * F[0]
  r = -(0.5 * t) / F[0]
  b = [jnp.ones_like(s)]
  ri = jnp.ones_like(s)
  for i in range(1, m + 1):
    ri = ri * r
    b.append(ri * F[i] / F[0])
  # S > 1/2: the recurrence written for b_k directly (F^(k) itself grows like X^-k and would
  # overflow float32 near the antipode for m ~ 11); the two terms never cancel
  use_hi = hi & img                                 # others: a harmless stand-in S = 3/4
  Sh, Xh = jnp.where(use_hi, S, 0.75), jnp.where(use_hi, X, 0.25)
  q, w = Sh * Xh, 2.0 * Sh - 1.0
  Fh = 0.5 * jnp.where(use_hi, theta, 2.0 * _PI / 3.0) / jnp.sqrt(q)
  rh = -(0.5 * t) / Fh
  rq = rh / q
  bh = [jnp.ones_like(s), rh * (1.0 + w * Fh) / (2.0 * q * Fh)]
  for k in range(m - 1):
    bh.append(rq * ((1.0 + k) ** 2 * rh * bh[k] + (1.5 + k) * w * bh[k + 1]))
  a = jnp.where(hi, (2.0 / t) * Fh, a)
  b = [jnp.where(hi, u, v) for u, v in zip(bh, b)]
  y, ybar = [jnp.ones_like(s)], [jnp.ones_like(s)]
  for k in range(m + 1):
    y.append(sum(math.comb(k, i) * b[i] * y[k - i] for i in range(k + 1)))
    ybar.append(sum(math.comb(k, i) * (-1) ** i * b[i] * ybar[k - i] for i in range(k + 1)))
  cmax = 1e4 if f64 else 1e3
  ok = img & (ybar[m] <= cmax * y[m]) & (ybar[m + 1] <= cmax * jnp.abs(y[m + 1]))
  ym = jnp.where(ok, y[m], 1.0)
  logp = (-m * math.log(4 * _PI) + 0.5 * m * m * t - 0.5 * jnp.log(2 * _PI * t)
          - theta * theta / (2.0 * t) + m * jnp.log(a) + jnp.log(ym))
  return logp, 0.5 * a * y[m + 1] / ym, ok


def _compact(mask):
  """(idx, count) for a 1-d boolean mask: idx (same length) holds the indices of the True
  entries in order, then zeros; count how many there are.  (A cumsum and one scatter:
  ~2x cheaper than jnp.nonzero(size=...) on CPU.)"""
  B = mask.shape[0]
  pos = jnp.cumsum(mask, dtype=jnp.int32) - 1
  idx = jnp.zeros((B,), jnp.int32).at[jnp.where(mask, pos, B)].set(
      jnp.arange(B, dtype=jnp.int32), mode="drop")
  return idx, pos[-1] + 1


def _on_subset(fn, mask, X, S, t, chunk=_SUBSET_CHUNK, dynamic=False):
  """fn(X, S, t) -> (log p, g) on the points where `mask` only (0 elsewhere): the subset is
  compacted and processed in chunks, so a costly method pays only for its own points.

  dynamic=False: lax.map over every possible chunk, those past the subset skipped by
  lax.cond (differentiable in both modes).  dynamic=True (the sampler, never differentiated):
  a while loop over the needed chunks only, skipped entirely when the mask is empty (no
  per-chunk overhead; a while loop has no reverse-mode derivative).  Shapes as in `_radial`."""
  shape, B = X.shape, X.size
  if B == 0:
    return fn(X, S, t)
  c = min(chunk, B)
  flat = [a.reshape(-1) for a in (X, S, t)]
  m = mask.reshape(-1)
  if dynamic:
    zero = jnp.zeros((B,), X.dtype)

    def run(_):
      idx, count = _compact(m)
      idx = jnp.pad(idx, (0, c))                 # room for the last chunk's slice

      def body(state):
        i, lo, go = state
        ids = jax.lax.dynamic_slice(idx, (i * c,), (c,))
        l, g = fn(*(a[ids] for a in flat))
        tgt = jnp.where(i * c + jnp.arange(c) < count, ids, B)
        return i + 1, lo.at[tgt].set(l, mode="drop"), go.at[tgt].set(g, mode="drop")

      return jax.lax.while_loop(lambda s: s[0] * c < count, body, (0, zero, zero))[1:]

    lo, go = jax.lax.cond(jnp.any(m), run, lambda _: (zero, zero), None)
    return lo.reshape(shape), go.reshape(shape)
  nch = -(-B // c)
  idx, count = _compact(m)
  idx = jnp.pad(idx, (0, nch * c - B))
  sub = tuple(a[idx].reshape(nch, c) for a in flat)

  def one(args):
    i, a = args[0], args[1:]
    return jax.lax.cond(i * c < count, lambda v: fn(*v),
                        lambda v: (jnp.zeros_like(v[0]), jnp.zeros_like(v[0])), a)

  out = jax.lax.map(one, (jnp.arange(nch, dtype=jnp.int32),) + sub)
  tgt = jnp.where(jnp.arange(nch * c) < count, idx, B)
  return tuple(jnp.zeros((B,), X.dtype).at[tgt].set(o.reshape(-1), mode="drop").reshape(shape)
               for o in out)


def _real_odd_or_contour(X, S, t, p, need, dynamic=False):
  """Odd 5 <= n <= 23: `_real_odd` where it is accurate, the contour (on the compacted subset,
  `_on_subset`) elsewhere for the points in `need` (None: all)."""
  lr, gr, real = _real_odd(X, S, t, p)
  hard = ~real if need is None else need & ~real
  lc, gc = _on_subset(lambda X, S, t: _contour(X, S, t, p, even=False), hard, X, S, t,
                      dynamic=dynamic)
  return jnp.where(real, lr, lc), jnp.where(real, gr, gc)


# ----------------------------------------------------------------------------- dispatch
_SMALL_T = {"circle": lambda X, S, t, p: _images_circle(X, S, t),
            "images": lambda X, S, t, p: _images_s3(X, S, t),
            "mehler": lambda X, S, t, p: _mehler_s2(X, S, t),
            "contour_odd": functools.partial(_contour, even=False),
            "real_odd": lambda X, S, t, p: _real_odd_or_contour(X, S, t, p, None),
            "contour_even": functools.partial(_contour, even=True)}


def _radial(X, S, t, p, method):
  """(log p_t, d log p_t / du) at X = cos^2(theta/2), S = sin^2(theta/2); same shapes.
  Plain elementwise code (no loop over the batch), so that XLA merges the work of log p and
  score requested in one jitted function (see `_radial_chunked` for the sampler)."""
  return _radial_flat(X, S, t, p, method)


# Batch chunk per method: the formulas create (chunk, nodes) temporaries, and XLA's CPU code
# is memory bound once they leave the cache (measured: S^2 1.7x, S^15 1.3x faster).
_CHUNK = {"circle": 1024, "images": 1024, "mehler": 1024, "contour_odd": 4096, "real_odd": 4096,
          "contour_even": 4096}


def _radial_chunked(X, S, t, p, method, which="both"):
  """`_radial` over chunks of the flattened batch (lax.map), for the samplers' internal use
  (a loop defeats XLA's common-subexpression merging, hence not in the public path).
  which: "both" (regime switch as in `_radial`), "small" (the small-time method only) or
  "eigen" (the eigen-series only), for callers that know the regime of every point."""
  small = (lambda X, S, t: _real_odd_or_contour(X, S, t, p, None, dynamic=True)) if (
      method == "real_odd") else (lambda X, S, t: _SMALL_T[method](X, S, t, p))
  fn = {"both": lambda X, S, t: _radial_flat(X, S, t, p, method),
        "small": small,
        "eigen": lambda X, S, t: _eigen(X, S, t, p)}[which]
  size, c = X.size, _CHUNK[method]
  if size <= c:
    return fn(X, S, t)
  m = -(-size // c)
  flat = [jnp.pad(a.reshape(-1), (0, m * c - size), mode="edge").reshape(m, c)
          for a in (X, S, t)]
  out = jax.lax.map(lambda a: fn(*a), tuple(flat))
  return tuple(o.reshape(-1)[:size].reshape(X.shape) for o in out)


def _radial_flat(X, S, t, p, method):
  """`_radial` without chunking."""
  dt = X.dtype
  ts = p["t_switch"]
  # Times below eps^2 (1.4e-14 in float32, 4.9e-32 in float64) are treated as eps^2: keeps
  # the contour's internal scales (delta ~ t^2 at the antipode) representable.
  t = jnp.clip(t, float(jnp.finfo(dt).eps) ** 2, 1e30)     # t = inf -> uniform law
  use_eig = t >= ts
  # Both methods run on every point, each on a time moved into its own regime elsewhere
  # ("double where": no NaN leaks into gradients).  No lax.cond on purpose: batches are
  # mixed in practice, and plain code lets XLA share the work of log p and score when both
  # are requested in one jitted function.
  le, ge = _eigen(X, S, jnp.where(use_eig, t, ts), p)
  tm = jnp.where(use_eig, 0.5 * ts, t)
  if method == "real_odd":
    lc, gc = _real_odd_or_contour(X, S, tm, p, ~use_eig)
  else:
    lc, gc = _SMALL_T[method](X, S, tm, p)
  return jnp.where(use_eig, le, lc), jnp.where(use_eig, ge, gc)


_radial_jit = jax.jit(_radial, static_argnames=("method",))


def _radial_tangent(X, S, t, dt, p, method):
  """(log p, g) and the forward-mode t-derivative of log p times dt."""
  (lp, g), (tan, _) = jax.jvp(lambda tt: _radial(X, S, tt, p, method), (t,), (dt,))
  return lp, g, tan


_radial_tangent_jit = jax.jit(_radial_tangent, static_argnames=("method",))


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def _log_prob(X, S, t, p, method):
  # the jitted radial kernel: eager calls of log p and of the score share one executable
  return _radial_jit(X, S, t, p, method=method)[0]


def _is_zero(tan):
  return isinstance(tan, jax.custom_derivatives.SymbolicZero)


def _log_prob_jvp(method, primals, tangents):
  """d log p = g (dX - dS) + (d log p / dt) dt: g from the closed-form score (finite at
  theta = 0 and pi, where autodiff through the formulas would meet sqrt(0)); the time
  derivative by forward mode through the same formulas (smooth in t)."""
  X, S, t, p = primals
  dX, dS, dt, _ = tangents
  if _is_zero(dt):
    lp, g = _radial_jit(X, S, t, p, method=method)
    tan = jnp.zeros_like(lp)
  else:
    lp, g, tan = _radial_tangent_jit(X, S, t, dt, p, method=method)
  if not _is_zero(dX):
    tan = tan + g * dX
  if not _is_zero(dS):
    tan = tan - g * dS
  return lp, tan


_log_prob.defjvp(_log_prob_jvp, symbolic_zeros=True)


# ----------------------------------------------------------------------------- sampling
def _rejection(key, B, draw, dt, levels=3, full_first=True, active=None, first=8):
  """Exact rejection sampling, B independent targets.  `draw(key, idx)` returns a candidate
  and an accept flag for the (1-d int) targets idx.  Optionally one full vectorized round;
  then the pending targets wait in a FIFO ring buffer of indices and are drawn in chunks of
  B/first, B/(8 first), ... (`levels` of them; each level runs while the pending targets fill a whole
  chunk, the last until none is pending), so an iteration costs O(chunk), not O(B), and late
  rounds, or subsets much smaller than B (`active`: only these targets are drawn, the others
  are returned as 0), do not pay for the whole batch.  Every level traces `draw` once more
  (compile time; `full_first=False` skips the full round, one copy less).  Each target keeps
  its first accepted candidate (rejected ones go to the back of the queue): exact."""
  if full_first:
    key, k0 = jax.random.split(key)
    th, done = draw(k0, jnp.arange(B))
    th = jnp.where(done, th, 0.0).astype(dt)
    pend = ~done
  else:
    th = jnp.zeros((B,), dt)
    pend = jnp.ones((B,), bool) if active is None else active
  queue, count = _compact(pend)
  chunks = []
  c = B * 8 // first
  while c > 1 and len(chunks) < levels:
    c = max(1, c // 8)
    chunks.append(c)
  chunks = chunks or [1]
  state = (th, queue, jnp.int32(0), count, key, 0)
  for i, chunk in enumerate(chunks):
    last = i + 1 == len(chunks)

    def cond(state, chunk=chunk, last=last):
      # the iteration cap is a guard against a NaN acceptance ratio (never reached: at
      # acceptance >= 0.5 the bulk needs ~B/chunk iterations and the tail ~log2(chunk))
      count = state[3]
      more = (count > 0) if last else (count >= chunk)
      return more & (state[5] < _MAX_ITER)

    def body(state, chunk=chunk):
      th, queue, head, count, k, it = state
      k, kd = jax.random.split(k)
      j = jnp.arange(chunk, dtype=jnp.int32)
      valid = j < count
      idx = queue[(head + j) % B]
      thc, acc = draw(kd, idx)
      th = th.at[jnp.where(acc & valid, idx, B)].set(thc.astype(dt), mode="drop")
      rej = valid & ~acc
      taken = jnp.minimum(count, chunk)
      # rejected targets to the back of the queue (slots past the live region are free)
      slot = (head + count + jnp.cumsum(rej, dtype=jnp.int32) - 1) % B
      queue = queue.at[jnp.where(rej, slot, B)].set(idx, mode="drop")
      count = count - taken + jnp.sum(rej, dtype=jnp.int32)
      return th, queue, (head + taken) % B, count, k, it + 1

    state = jax.lax.while_loop(cond, body, state[:5] + (0,))
  return state[0]


def _s3_accept_maxwell(theta, s):
  """Acceptance probability sum_k g(theta + 2 pi k) / sum_k e(theta + 2 pi k) of the folded
  Maxwell proposal e(phi) = phi^2 e^(-phi^2/2s) for the S^3 radial target g(phi) = phi sin(phi)
  e^(-phi^2/2s) (g <= e pointwise; images k = -2..1, the rest < e^(-4 pi^2 / 2.2))."""
  num = theta
  den = theta * theta
  for k in (-2, -1, 1):
    ph = theta + 2.0 * _PI * k
    wk = jnp.exp(-2.0 * _PI * k * (theta + _PI * k) / s)   # e^{-(ph^2 - theta^2)/2s} <= 1
    num = num + ph * wk
    den = den + ph * ph * wk
  a = jnp.sin(theta) * num / jnp.where(den > 0, den, 1.0)
  return jnp.where(den > 0, a, 1.0)


def _s3_accept_uniform(theta, s):
  """Acceptance probability p_s(theta) / p_s(0) of the uniform proposal on S^3 (p_s is
  decreasing in theta): sum_l (l+1) e^{-l(l+2)s/2} U_l(cos theta) / sum_l (l+1)^2 e^{..}."""
  c = jnp.cos(theta)
  u_prev, u = jnp.zeros_like(c), jnp.ones_like(c)
  num, den = jnp.zeros_like(c), jnp.zeros_like(c)
  for l in range(_L_S3):
    w = (l + 1.0) * jnp.exp(-0.5 * l * (l + 2.0) * s)
    num = num + w * u
    den = den + w * (l + 1.0)
    u_prev, u = u, 2.0 * c * u - u_prev
  return num / den


def _sample_theta_s3(key, s):
  """Exact S^3 distance at times s (1-d): folded-Maxwell rejection for s <= 1.1 (acceptance
  e^{-s/2}), uniform-law rejection above (acceptance 1 / (vol p_s(0)) >= 0.53)."""
  dt = s.dtype
  B = s.shape[0]

  def draw(k, idx):
    kz, ku = jax.random.split(k)
    si = s[idx]
    z = jax.random.normal(kz, idx.shape + (4,), dt)
    # small s: |Phi| = sqrt(s) chi_3, folded onto [0, pi]
    phi = jnp.sqrt(si) * jnp.sqrt(jnp.sum(z[..., 1:] ** 2, -1))
    th_m = jnp.abs(jnp.mod(phi + _PI, 2.0 * _PI) - _PI)
    # large s: angle of a uniform point of S^3 to the pole
    th_u = _atan2(jnp.sqrt(jnp.sum(z[..., 1:] ** 2, -1)), z[..., 0])
    uni = si > _S3_UNIFORM
    th = jnp.where(uni, th_u, th_m)
    a = jnp.where(uni, _s3_accept_uniform(th, jnp.maximum(si, _S3_UNIFORM)),
                  _s3_accept_maxwell(th, jnp.minimum(si, _S3_UNIFORM)))
    u = jax.random.uniform(ku, idx.shape, dt)
    return th, u < a

  return _rejection(key, B, draw, dt)


def _sample_theta_s2(key, t):
  """Exact S^2 distance at times t (1-d) through the Hopf map from S^3 at time t/4."""
  k1, k2 = jax.random.split(key)
  th3 = _sample_theta_s3(k1, 0.25 * t)
  u = jax.random.uniform(k2, t.shape, t.dtype, -1.0, 1.0)
  sn, cs = jnp.sin(th3), jnp.cos(th3)
  # sin^2(theta/2) = sin^2 th3 (1 - u^2), cos^2(theta/2) = cos^2 th3 + sin^2 th3 u^2
  return 2.0 * _atan2(jnp.abs(sn) * jnp.sqrt(1.0 - u * u), jnp.sqrt(cs * cs + (sn * u) ** 2))


_sample_theta_s3_jit = jax.jit(_sample_theta_s3)
_sample_theta_s2_jit = jax.jit(_sample_theta_s2)


def _log_radial(theta, t, p, method, which="both"):
  """log of the normalized density of theta on [0, pi] and its theta-derivative:
  r(theta) = vol(S^{n-1}) p_t(theta) sin^{n-1}(theta).  `which` as in `_radial_chunked`."""
  half = 0.5 * theta
  ch, sh = jnp.cos(half), jnp.sin(half)       # (XLA's CPU sin/cos are slow: two, not four)
  X, S = ch * ch, sh * sh
  lp, g = _radial_chunked(X, S, t, p, method, which)
  s = 2.0 * sh * ch                             # sin(theta)
  lr = p["log_vol_sub"] + lp + (p["n"] - 1.0) * jnp.log(s)
  dlr = -s * g + (p["n"] - 1.0) * (X - S) / s
  return lr, dlr


def _guess(t, p):
  """Approximate centre and spread of theta (only used to place tangent points):
  E cos(theta) = e^{-nt/2}, Var cos(theta) from E[(n+1) cos^2 - 1] = n e^{-(n+1)t}."""
  n = p["n"]
  em = -jnp.expm1(-0.5 * n * t)                         # 1 - E cos
  q = jnp.clip(0.5 * em, 0.0, 1.0)
  centre = 2.0 * _asin_sc(jnp.sqrt(q), jnp.sqrt(1.0 - q))
  var_u = (n * jnp.expm1(-(n + 1) * t)) / (n + 1) - jnp.expm1(-n * t)
  # small n t: the difference cancels; Var = n t^2/2 (1 - (2n + 1) t / 3 + ...)
  var_u = jnp.where(n * t < 1e-3, 0.5 * n * t * t * (1.0 - (2.0 * n + 1.0) * t / 3.0), var_u)
  var_u = jnp.maximum(var_u, 0.5 * n * t * t * jnp.exp(-n * t))
  spread = jnp.sqrt(var_u) / jnp.maximum(jnp.sin(centre), 1e-30)
  spread = jnp.clip(spread, 1e-3 * centre, 2.0)
  return centre, spread


def _tangent_points(t, p):
  """Three tangent points around the bulk of the law of theta: a tuple of 3 arrays of t's
  shape.  (The samplers' per-point triples are tuples, not a trailing axis of size 3, which
  vectorizes poorly on CPU and, fused with the kernel, slowed it ~2x.)"""
  dt = t.dtype
  eps_th = 1e-6 if dt == jnp.float32 else 1e-12
  c, s = _guess(t, p)
  # below: down to sqrt(tiny), as the law sits at theta ~ sqrt(n t) (t >= eps^2); above: keep
  # sin(tau) > 0 in floating point
  return tuple(jnp.clip(c + o * s, float(jnp.finfo(dt).tiny) ** 0.5, _PI * (1.0 - eps_th))
               for o in (-1.4, 0.0, 1.4))


def _hull(tau, h, d):
  """Piecewise-exponential upper hull on [0, pi] of a concave log-density from its values h
  and slopes d at the tangent points tau (each a tuple of 3 arrays; every tangent line of a
  concave function lies above it).  Returns the segment left ends and lengths, tangent
  points, values, slopes and log masses, each a tuple of 3 arrays."""
  def cross(i, j):
    # intersection of consecutive tangent lines, clipped into [tau_i, tau_j]
    den = d[i] - d[j]
    ok = den > 1e-12 * (jnp.abs(d[i]) + jnp.abs(d[j]) + 1.0)
    z = (h[j] - h[i] + d[i] * tau[i] - d[j] * tau[j]) / jnp.where(ok, den, 1.0)
    z = jnp.where(ok, z, 0.5 * (tau[i] + tau[j]))
    return jnp.clip(z, tau[i], tau[j])

  z12, z23 = cross(0, 1), cross(1, 2)
  a = (jnp.zeros_like(z12), z12, z23)
  b = (z12, z23, jnp.full_like(z12, _PI))
  L = tuple(bi - ai for ai, bi in zip(a, b))
  logm = []
  for i in range(3):
    la = h[i] + d[i] * (a[i] - tau[i])                    # line value at the left end
    lm = la + jnp.log(jnp.maximum(L[i], 1e-300)) + _log_expm1c(d[i] * L[i])
    logm.append(jnp.where(L[i] > 0, lm, -jnp.inf))
  return a, L, tuple(tau), tuple(h), tuple(d), tuple(logm)


def _envelope(t, p, method, which="both"):
  """Hull of the exact log r (log r is concave in theta for n >= 2): three radial evaluations
  per point, as one flat (3 B,) batch."""
  tau = _tangent_points(t, p)
  h, d = _log_radial(jnp.concatenate([a.reshape(-1) for a in tau]),
                     jnp.tile(t.reshape(-1), 3), p, method, which)
  m = t.size
  split = lambda v: tuple(v[i * m:(i + 1) * m].reshape(t.shape) for i in range(3))
  return _hull(tau, split(h), split(d))


def _girsanov_c(p):
  """c with p_t(theta) <= (2 pi t)^(-n/2) e^(c t - theta^2/2t) (theta / sin theta)^alpha.

  Girsanov against the Bessel process of R^n (radial drift alpha/theta instead of
  alpha cot theta, alpha = (n-1)/2) gives exactly
      p_t(theta) = (2 pi t)^(-n/2) e^(-theta^2/2t) (theta/sin theta)^alpha e^(alpha^2 t/2)
                   E_bridge[exp(-(alpha^2 - alpha)/2 int_0^t (1/sin^2 - 1/theta^2)(theta_s) ds)],
  and 1/sin^2 x - 1/x^2 >= 1/3 with alpha >= 1 (n >= 3) bounds the expectation by
  exp(-(alpha^2 - alpha) t / 6): c = alpha^2/3 + alpha/6 (sharp as t, theta -> 0)."""
  a = p["alpha"]
  return a * a / 3.0 + a / 6.0


def _analytic_envelope(t, p):
  """Hull of log q, q(theta) = theta^alpha sin^alpha(theta) e^(-theta^2/2t) (log-concave),
  from closed-form tangents: no heat-kernel evaluation."""
  a = p["alpha"]
  tau = _tangent_points(t, p)
  h = tuple(a * (jnp.log(x) + jnp.log(jnp.sin(x))) - x * x / (2.0 * t) for x in tau)
  d = tuple(a * (1.0 / x + jnp.cos(x) / jnp.sin(x)) - x / t for x in tau)
  return _hull(tau, h, d)


def _log_p_pole(t, p):
  """log p_t at theta = 0 by the eigen-series: the weights alone, sum_l w_l (G_l(1) = 1)."""
  b = jnp.exp(-0.5 * p["n"] * t)
  e = jnp.exp(-t)
  w = p["rho0"] * b
  s = 1.0 + w

  def step(c, rho):
    w, b, s = c
    b = b * e
    w = w * rho * b
    return (w, b, s + w), None

  (_, _, s), _ = jax.lax.scan(step, (w, b, s), p["rho"], unroll=True)
  return jnp.log(s) - p["log_vol"]


def _uniform_envelope(shape, p, dt):
  """Hull of log sin^(n-1)(theta), the radial law of the uniform distribution (log-concave,
  t-independent), with tangent points at pi/2 and pi/2 +- 1.4 / sqrt(n - 1), broadcast to
  `shape`."""
  nm1 = p["n"] - 1.0
  tau = tuple(jnp.full(shape, 0.5 * _PI + o / jnp.sqrt(nm1), dt) for o in (-1.4, 0.0, 1.4))
  return _hull(tau, tuple(nm1 * jnp.log(jnp.sin(x)) for x in tau),
               tuple(nm1 * jnp.cos(x) / jnp.sin(x) for x in tau))


def _propose(key, env):
  """One draw from the piecewise-exponential envelope and the envelope's log value there."""
  a, L, tau, h, d, logm = env
  k1, k2 = jax.random.split(key)
  dt = a[0].dtype
  # segment by inverse CDF of the three masses (one uniform; cheaper than categorical's
  # three Gumbel draws)
  top = jnp.maximum(jnp.maximum(logm[0], logm[1]), logm[2])
  w = [jnp.exp(lm - top) for lm in logm]
  c1, c2 = w[0], w[0] + w[1]
  v = jax.random.uniform(k1, c1.shape, dt) * (c2 + w[2])
  seg1 = (v >= c1) & (w[1] > 0)                             # never an empty segment
  seg2 = (v >= c2) & (w[2] > 0)
  pick = lambda arr: jnp.where(seg2, arr[2], jnp.where(seg1, arr[1], arr[0]))
  a_, L_, tau_, h_, d_ = pick(a), pick(L), pick(tau), pick(h), pick(d)
  u = jax.random.uniform(k2, a_.shape, dt, minval=jnp.finfo(dt).tiny, maxval=1.0)
  th = jnp.clip(a_ + L_ * _trunc_exp_quantile(u, d_ * L_), a_, a_ + L_)
  return th, h_ + d_ * (th - tau_)


def _sample_theta(key, t, p, method):
  """Exact draw of theta for contour n (t: 1-d), by one of four exact rejection samplers
  chosen per point (each run only on its own points, see `_rejection`):

  * t < t_q = min(6 alpha^(-3/2), t_switch): proposal from the hull of the closed-form q of
    `_analytic_envelope`, accepted with r / (K q) <= 1 (bound of `_girsanov_c`); one
    kernel evaluation per candidate (small-t method).  The acceptance falls with
    alpha^(3/2) t (0.99 at 0.5, ~0.7 at 3.4, ~0.25 at 7, measured for n = 15 ... 127); the
    hull below costs ~4.5 evaluations per draw, so the closed form wins while the acceptance
    exceeds ~0.25.
  * t_q <= t < t_switch: hull of the exact log r (three small-t evaluations per attempt plus
    one for the candidate, acceptance ~0.88).
  * t_switch <= t < t_unif: the same with the eigen-series only.
  * t >= t_unif: proposal from the uniform law's radial density sin^(n-1) (its fixed hull,
    `_uniform_envelope`), accepted with p_t(theta) / p_t(0) <= 1 (p_t falls with theta): one
    eigen evaluation per candidate plus the cheap pole series.  The acceptance is
    1 / (vol p_t(0)) (times the hull's ~0.9); t_unif is where it reaches _UNIF_ACCEPT
    (n = 15: 0.37, n = 127: 0.077, n = 1023: 0.014)."""
  dt = t.dtype
  B = t.shape[0]
  ts = p["t_switch"]
  t_q = jnp.minimum(6.0 * p["alpha"] ** -1.5, ts)
  use_q = t < t_q
  use_unif = t >= p["t_unif"]
  use_eig = (t >= ts) & ~use_unif
  use_hull = ~use_q & (t < ts)
  c = _girsanov_c(p)
  kq, kh, ke, ku_ = jax.random.split(key, 4)

  def log_uniform(k, shape):
    return jnp.log(jax.random.uniform(k, shape, dt, minval=jnp.finfo(dt).tiny, maxval=1.0))

  def draw_q(k, idx):
    kp, ku = jax.random.split(k)
    ti = t[idx]
    thc, evc = _propose(kp, _analytic_envelope(ti, p))
    lr, _ = _log_radial(thc, ti, p, method, "small")
    # log(r / (K e^ev)), K = vol(S^{n-1}) (2 pi t)^(-n/2) e^(c t): log vol(S^{n-1}) cancels
    la = (lr - p["log_vol_sub"] + 0.5 * p["n"] * jnp.log(2.0 * _PI * ti) - c * ti) - evc
    return thc, log_uniform(ku, idx.shape) <= la

  def draw_hull(which):
    def draw(k, idx):
      kp, ku = jax.random.split(k)
      ti = t[idx]
      thc, evc = _propose(kp, _envelope(ti, p, method, which))
      lrc, _ = _log_radial(thc, ti, p, method, which)
      return thc, log_uniform(ku, idx.shape) <= lrc - evc
    return draw

  def draw_unif(k, idx):
    kp, ku = jax.random.split(k)
    ti = t[idx]
    thc, evc = _propose(kp, _uniform_envelope(idx.shape, p, dt))
    lr, _ = _log_radial(thc, ti, p, method, "eigen")
    # log(sin^(n-1) / hull) + log(p_t(theta) / p_t(0)); lr = log vol(S^(n-1)) + log p + log sin^(n-1)
    la = lr - p["log_vol_sub"] - _log_p_pole(ti, p) - evc
    return thc, log_uniform(ku, idx.shape) <= la

  # Chunk ladders trade run time (padding in the last chunks) for compile time (each level
  # traces the kernel again): the hull bands t_q <= t < t_unif are narrow, hence one level.
  th_q = _rejection(kq, B, draw_q, dt, levels=2, full_first=False, active=use_q)
  th_h = _rejection(kh, B, draw_hull("small"), dt, levels=1, full_first=False, active=use_hull,
                    first=32)
  th_e = _rejection(ke, B, draw_hull("eigen"), dt, levels=3, full_first=False, active=use_eig)
  th_u = _rejection(ku_, B, draw_unif, dt, levels=3, full_first=False, active=use_unif)
  return jnp.where(use_q, th_q, jnp.where(use_unif, th_u, jnp.where(use_eig, th_e, th_h)))


_sample_theta_jit = jax.jit(_sample_theta, static_argnames=("method",))


def _log_expm1c(x):
  """log(expm1(x) / x), stable for all real x (0 at x = 0)."""
  small = jnp.abs(x) < 1e-4
  xs = jnp.where(small, 1.0, x)
  pos = jnp.log(-jnp.expm1(-xs)) + xs - jnp.log(jnp.abs(xs))     # x > 0
  neg = jnp.log(-jnp.expm1(xs)) - jnp.log(jnp.abs(xs))           # x < 0
  return jnp.where(small, 0.5 * x, jnp.where(x > 0, pos, neg))


def _trunc_exp_quantile(u, x):
  """Quantile (in [0, 1]) of the density proportional to exp(x v) on v in [0, 1].

  Both branches are log1p of a small-or-moderate argument: the textbook form
  1 + log(e^-x + u (1 - e^-x)) / x cancels catastrophically for small x > 0 (float32: an
  error of ~eps/x in the quantile, i.e. a biased sampler when the envelope is nearly flat)."""
  small = jnp.abs(x) < 1e-6
  xs = jnp.where(small, 1.0, x)
  pos = 1.0 + jnp.log1p((1.0 - u) * jnp.expm1(-xs)) / xs           # x > 0
  neg = jnp.log1p(u * jnp.expm1(xs)) / xs                          # x < 0
  return jnp.where(small, u, jnp.where(x > 0, pos, neg))
