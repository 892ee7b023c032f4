r"""Heat kernel of the unit sphere S^n (generator (1/2) Laplace-Beltrami), every n >= 1.

Everything is a function of the geodesic distance theta, carried as the pair
``X = cos^2(theta/2) = |x + y|^2 / 4`` and ``S = sin^2(theta/2) = |x - y|^2 / 4``
(both exact from the ambient vectors, with no cancellation at theta = 0 or pi).

Exact representation used at small and moderate times
-----------------------------------------------------
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
The integrand is Gaussian-like in the angle around the saddle, so Gauss-Legendre nodes on the
arc |angle| < phi_c (phi_c = min(pi, 10 / angular width)) suffice: N = 32 nodes (16 complex
evaluations using conjugate symmetry) give ~1e-11 relative accuracy for every n up to 1023.
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
G_l' = l(l+2 lambda)/(2 lambda+1) G^(lambda+1)_(l-1).  Its rounding error is
eps * sum|terms| / |sum| <= eps * exp(R), R = log p_t(0) - log p_t(pi) (worst at the antipode).

Regime switch
-------------
Per n and dtype, t_switch solves R(n, t) = 16 (float64) or 7 (float32) for the value and the
derivative series (computed once in numpy at construction).  t >= t_switch: eigen-series with
L terms (tail < 1e-20, resp. 1e-10); t < t_switch: contour.  Examples (float64): n=2: 0.264,
n=3: 0.242, n=15: 0.145, n=127: 0.0443, n=1023: 0.00949.  Both methods are accurate on both
sides of the switch (tested in tests/test_sphere.py).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from manifolds import _numerics as nx

_PI = math.pi

# Saddle-point / quadrature settings.
_NEWTON_STEPS = 3              # Newton steps for the saddle radius
_PHI_C_WIDTHS = 8.0            # arc cut where |integrand| < exp(-W^2/2) (local model)
_KEYHOLE_FULL_ALPHA = 18.0     # below: keyhole arcs always reach the cut at phi = pi
_CLUSTER = 2.0                 # sinh clustering strength of open keyhole arcs
_SEG_DECAY = 45.0              # bank integral truncated where f/f(X-delta) < e^-45
_N_ARC = {"float64": 32, "float32": 16}   # Gauss-Legendre nodes on the full arc
_N_SEG = {"float64": 20, "float32": 8}   # Gauss-Legendre nodes on the bank of the cut
_R_MAX = {"float64": 16.0, "float32": 7.0}
_TAIL = {"float64": 1e-20, "float32": 1e-10}
_SMALL_ALPHA = 6.0             # even n with alpha below this keep the circle away from 0


def _lgamma(x):
  return math.lgamma(x)


def log_volume(n: int) -> float:
  """log vol(S^n) = log(2 pi^((n+1)/2) / Gamma((n+1)/2))."""
  return math.log(2.0) + 0.5 * (n + 1) * math.log(_PI) - _lgamma(0.5 * (n + 1))


def _eigen_tables(n: int, lmax: int):
  """log d_l (dimension of degree-l harmonics) and eigenvalues l(l+n-1)/2, l < lmax."""
  l = np.arange(lmax, dtype=np.float64)
  if n == 1:
    logd = np.where(l == 0, 0.0, math.log(2.0))
  else:
    # log binom(l + n - 2, l) by a cumulative sum (exact enough, vectorized).
    logbin = np.concatenate([[0.0], np.cumsum(np.log((l[1:] + n - 2) / l[1:]))])
    logd = np.log((2 * l + n - 1) / (n - 1)) + logbin
  return logd, l * (l + n - 1) / 2.0


class _SeriesTables:
  """log-weights of the value and score eigen-series (t-independent parts), l < lmax."""

  def __init__(self, n: int, lmax: int = 3000):
    lam = 0.5 * (n - 1)
    self.logd, self.ev = _eigen_tables(n, lmax)
    l = np.arange(lmax, dtype=np.float64)
    self.logd1 = self.logd + np.log(np.maximum(l * (l + 2 * lam), 1e-300) / (2 * lam + 1))

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


class SphereHeat:
  """Radial heat kernel of S^n: per-n constants (numpy, computed once) + jax functions."""

  def __init__(self, n: int):
    self.n = n
    self.alpha = 0.5 * (n - 1)
    self.lam = 0.5 * (n - 1)
    self.even = (n % 2 == 0)
    self.log_vol = log_volume(n)
    tab = _SeriesTables(n)
    self.t_switch = {k: tab.t_switch(r) for k, r in _R_MAX.items()}
    self.n_terms = {k: tab.n_terms(self.t_switch[k], _TAIL[k]) for k in _R_MAX}
    lmax = max(self.n_terms.values())
    logd, ev = _eigen_tables(n, lmax)
    l = np.arange(lmax, dtype=np.float64)
    self._logd, self._ev = logd, ev
    self._dcoef = l * (l + 2 * self.lam) / (2 * self.lam + 1)    # G_l' = dcoef_l G^{lam+1}_{l-1}
    # Jump of (zeta - X)^(-alpha-1) across the cut, over pi: zero for odd n.
    self._jump = 0.0 if not self.even else math.sin(_PI * (self.alpha + 1.0)) / _PI
    self._lgamma_a1 = _lgamma(self.alpha + 1.0)
    self._const = -self.alpha * math.log(4 * _PI) + self._lgamma_a1

  # ----------------------------------------------------------------------------- eigen-series
  def _eigen(self, X, S, t):
    """(log p, d log p / du) by the Gegenbauer series.  X, S, t: same shape (...)."""
    dt = X.dtype
    L = self.n_terms[_dtname(dt)]
    lam, lp = self.lam, self.lam + 1.0
    logd, ev = self._logd[:L], self._ev[:L]
    logd1 = logd + np.log(np.maximum(self._dcoef[:L], 1e-300))   # score-series weights
    l = np.arange(1, L - 1, dtype=np.float64)                     # recurrence steps
    nxt = np.arange(3, L + 1)                                     # score-series index l + 2
    valid1 = nxt < L
    nxt = np.minimum(nxt, L - 1)
    xs = tuple(jnp.asarray(a, dt) for a in (
        2.0 * (l + lam) / (2 * lam + l), l / (2 * lam + l),       # G^lam recurrence
        2.0 * (l + lp) / (2 * lp + l), l / (2 * lp + l),          # G^(lam+1) recurrence
        logd[2:], ev[2:],                                         # weight of G_{l+1}
        np.where(valid1, logd1[nxt], -np.inf), ev[nxt]))          # weight of H_{l+1} (G_{l+2}')
    u = X - S
    one = jnp.ones_like(u)
    w = lambda lg, e: jnp.exp(lg - e * t)      # each weight <= e^R (see module doc)
    # Value series: normalized Gegenbauer G_l^lam; score series: H_m = G_m^(lam+1).
    s0 = w(logd[0], ev[0]) + w(logd[1], ev[1]) * u
    s1 = w(logd1[1], ev[1]) + (w(logd1[2], ev[2]) * u if L > 2 else 0.0 * u)

    def step(c, x):
      g_prev, g, h_prev, h, s0, s1 = c
      ag, bg, ah, bh, lw0, e0, lw1, e1 = x
      g_prev, g = g, ag * u * g - bg * g_prev
      h_prev, h = h, ah * u * h - bh * h_prev
      return (g_prev, g, h_prev, h, s0 + w(lw0, e0) * g, s1 + w(lw1, e1) * h), None

    (_, _, _, _, s0, s1), _ = jax.lax.scan(step, (one, u, one, u, s0, s1), xs)
    logp = jnp.log(s0) - self.log_vol
    return logp, s1 / s0

  # ----------------------------------------------------------------------------- contour
  def _kappa(self, zeta, omz, t):
    """d log Theta / d zeta on the real axis, zeta > 0 (omz = 1 - zeta).  Only used to place
    the contour (saddle point), so a few ulps do not matter; finite and positive."""
    dt = zeta.dtype
    two_pi = 2.0 * _PI
    big = omz < 0.0
    sz = jnp.sqrt(jnp.maximum(zeta, jnp.finfo(dt).tiny))
    so = jnp.sqrt(jnp.maximum(omz, 0.0))
    phi = 2.0 * jnp.arctan2(so, sz)                       # theta of zeta <= 1
    psi = 0.5 * _PI - 0.5 * phi
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
    if self.even:
      k_small = (two_pi / jnp.tanh(z) - 4.0 * ps) / (t * jnp.sin(2.0 * ps))
    else:
      zz = jnp.where(z > 1e-3, z, 1.0)
      tanhc = jnp.where(z > 1e-3, jnp.tanh(zz) / zz, 1.0 - z * z / 3.0)
      k_small = ((two_pi * two_pi / t) * tanhc - 4.0) / (2.0 * t * nx.sinc(4.0 * ps * ps))
    return jnp.where(small, k_small, jnp.where(big, k_big, k_mid))

  def _saddle(self, X, S, t):
    """Radius delta with delta * kappa(X + delta) = alpha + 1/2, and s2 ~ -d2/dphi2 log|g|
    (angular curvature of the integrand at the saddle)."""
    target = math.log(self.alpha + 0.5)

    def kap(d):
      return self._kappa(X + d, S - d, t)

    # Start from kappa at X + d0 (local model), then safeguarded Newton steps on log(delta)
    # (G is increasing since log Theta is convex in log zeta).
    d0 = (self.alpha + 0.5) * t * 0.5
    ell = target - jnp.log(kap(d0))

    def newton(_, carry):
      ell, _ = carry
      d = jnp.exp(ell)
      k, dk = jax.jvp(kap, (d,), (d,))           # dk = delta * kappa'
      G = ell + jnp.log(k) - target
      Gp = jnp.maximum(1.0 + dk / k, 1e-3)
      return ell - jnp.clip(G / Gp, -3.0, 3.0), d * dk

    ell, d_dk = jax.lax.fori_loop(0, _NEWTON_STEPS, newton, (ell, jnp.zeros_like(ell)))
    return jnp.exp(ell), self.alpha + d_dk

  def _arc_terms(self, dz, b, omr, cb, phir, psir, er, t):
    """Theta(zeta_r + dz) / Theta(zeta_r) on the arc (complex dz), without cancellation.

    zeta_r = b^2 is real; omr = 1 - zeta_r, cb = sqrt(1 - zeta_r) (upper-bank branch -i sqrt
    when zeta_r > 1), phir = theta(zeta_r) (-i beta when zeta_r > 1), psir = pi/2 - phir/2
    (real part), er = exp(-4 pi psir / t).  Arguments broadcast; dz has the node axis."""
    zeta = b * b + dz
    a = jnp.sqrt(zeta)
    ca = jnp.sqrt(omr - dz)
    # w = sin(psi_r - psi) = a cb - ca b  =  dz (cb / (a + b) + b / (ca + cb)).
    apb, cpc = a + b, ca + cb
    w = dz * (cb * cpc + b * apb) / (apb * cpc)
    # psi - psi_r = -i log(e^{iD}), e^{iD} = (a + i ca)(b - i cb) = cos D - i w with
    # cos D - 1 = -w^2 / (1 + cos D); complex log1p written out for accuracy.
    vr = -(w * w) / (1.0 + a * b + ca * cb)
    p = jnp.real(vr) + jnp.imag(w)
    q = jnp.imag(vr) - jnp.real(w)
    dpsi = jax.lax.complex(-jnp.arctan2(q, 1.0 + p), 0.5 * jnp.log1p(2.0 * p + p * p + q * q))
    main = jnp.exp(2.0 * dpsi * (phir - dpsi) / t)        # images 0: exp(-(theta^2-theta_r^2)/2t)
    # Image -1 relative to image 0 (matters near the antipode only).
    if self.even:
      return main * (jnp.expm1(-4.0 * _PI * (psir + dpsi) / t) / jnp.expm1(-4.0 * _PI * psir / t))
    return main * ((1.0 + jnp.exp(-4.0 * _PI * (psir + dpsi) / t)) / (1.0 + er))

  def _contour(self, X, S, t):
    """(log p, d log p / du) by the contour integral.  X, S, t: same shape, real."""
    dt = X.dtype
    cdt = jnp.complex128 if dt == jnp.float64 else jnp.complex64
    name = _dtname(dt)
    alpha = self.alpha
    tiny = jnp.finfo(dt).tiny
    delta, s2 = self._saddle(X, S, t)
    delta = jax.lax.stop_gradient(delta)
    s2 = jax.lax.stop_gradient(s2)
    if self.even and alpha < _SMALL_ALPHA:
      # Keep the circle away from the branch point zeta = 0 (slow convergence otherwise).
      r = delta / jnp.maximum(X, tiny)
      delta = jnp.where((r >= 0.5) & (r <= 1.0), 0.5 * X,
                        jnp.where((r > 1.0) & (r < 2.0), 2.0 * X, delta))
    keyhole = (delta < X) if self.even else jnp.zeros(X.shape, bool)
    # Arc half-length: where the local model exp(s2 (cos(phi) - 1)) of |integrand| falls
    # below exp(-W^2/2).  For the keyhole the arc must reach the cut (phi = pi) unless the
    # integrand is negligible there.
    sin_half = _PHI_C_WIDTHS / (2.0 * jnp.sqrt(jnp.maximum(s2, 1e-30)))
    phic = 2.0 * jnp.arcsin(jnp.minimum(sin_half, 1.0))
    if self.even and alpha < _KEYHOLE_FULL_ALPHA:
      phic = jnp.where(keyhole, _PI, phic)
    phic = jax.lax.stop_gradient(phic)
    # Nodes on [0, phi_c] (conjugate symmetry gives the other half): midpoint rule (exact
    # for the periodic integrand of a closed circle, spectral when the integrand is
    # negligible at phi_c); for an open keyhole arc Gauss-Legendre in s with
    # phi = pi sinh(c s)/sinh(c), clustering nodes near the saddle while reaching the cut.
    xg, wg = _gauss_legendre_half(_N_ARC[name])
    nh = _N_ARC[name] // 2
    xm, wm = (np.arange(nh) + 0.5) / nh, np.full(nh, 1.0 / nh)
    xnode, wnode = jnp.asarray(xm, dt), jnp.asarray(wm, dt)
    if self.even:
      use_gl = (keyhole & (phic >= _PI))[..., None]
      c = _CLUSTER * jnp.log1p(jnp.sqrt(jnp.maximum(s2, 0.0)) / 2.0)
      c = jax.lax.stop_gradient(jnp.where(use_gl[..., 0], jnp.maximum(c, 1e-3), 1.0))[..., None]
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
    phir_re = 2.0 * jnp.arctan2(sq_in, b)                  # zeta_r <= 1
    beta_r = 2.0 * jnp.arcsinh(sq_out)                     # zeta_r > 1: phi_r = -i beta_r
    psir = jnp.where(inside, 0.5 * (_PI - phir_re), 0.5 * _PI)
    x4 = -4.0 * _PI * psir / t
    if self.even:
      lref = jnp.log(-jnp.expm1(x4))
    else:
      lref = jnp.log1p(jnp.exp(x4))
    lref = lref + jnp.where(inside, -phir_re * phir_re, beta_r * beta_r) / (2.0 * t)

    ex = lambda v: v[..., None]
    phi = ex(phic) * xnode
    cph, sph = jnp.cos(phi), jnp.sin(phi)
    dz = jax.lax.complex(ex(delta) * (cph - 1.0), ex(delta) * sph)
    cb = jax.lax.complex(sq_in, -sq_out)
    phir = jax.lax.complex(phir_re * inside, -beta_r)
    g = self._arc_terms(dz, ex(b).astype(cdt), ex(omr), ex(cb), ex(phir), ex(psir),
                        ex(jnp.exp(x4)), ex(t))
    rot = jax.lax.complex(jnp.cos(alpha * phi), -jnp.sin(alpha * phi))   # e^{-i alpha phi}
    g = g * rot
    wgt = wnode * ex(phic) / _PI
    den = jnp.sum(wgt * jnp.real(g), axis=-1)
    num = jnp.sum(wgt * (jnp.real(g) * cph + jnp.imag(g) * sph), axis=-1)  # Re(g e^{-i phi})
    if self.even:
      # Bank of the cut [0, X - delta] (keyhole only), real:
      #   sin(pi(alpha+1))/pi int_0^{X-delta} f(y) (X - y)^(-alpha-1) dy,  X - y = delta e^sigma,
      # sigma = sigma_up (1 - (1 - tau)^2) (removes the sqrt(y) endpoint behaviour).
      dk = jnp.where(keyhole, delta, 0.5 * X + tiny)
      kx = self._kappa(jnp.maximum(X - dk, tiny), S + dk, t)
      sig_up = jnp.minimum(jnp.log(jnp.maximum(X, tiny) / dk), jnp.log1p(_SEG_DECAY / (kx * dk)))
      sig_up = jax.lax.stop_gradient(jnp.where(keyhole, jnp.maximum(sig_up, 0.0), 0.0))
      xs, ws = _gauss_legendre_01(_N_SEG[name])
      tau = jnp.asarray(xs, dt)
      sg = ex(sig_up) * (1.0 - (1.0 - tau) ** 2)
      q = jnp.exp(sg)                                      # (X - y) / delta
      v = ex(delta) * q
      y = ex(X) - v
      omy = ex(S) + v
      phy = 2.0 * jnp.arctan2(jnp.sqrt(omy), jnp.sqrt(jnp.maximum(y, 0.0)))
      e_in = -(phy - ex(phir_re)) * (phy + ex(phir_re))
      e_out = -(phy * phy + ex(beta_r * beta_r))
      fs = jnp.exp(jnp.where(ex(inside), e_in, e_out) / (2.0 * ex(t)))
      psy = 0.5 * (_PI - phy)
      fs = fs * jnp.expm1(-4.0 * _PI * psy / ex(t)) / jnp.expm1(ex(x4))
      fs = jnp.where(y > 0.0, fs, 0.0)
      wseg = jnp.asarray(ws, dt) * 2.0 * ex(sig_up) * (1.0 - tau) * fs * q ** (-alpha)
      seg0 = jnp.where(keyhole, jnp.sum(wseg, axis=-1), 0.0)
      seg1 = jnp.where(keyhole, jnp.sum(wseg / q, axis=-1), 0.0)
      den = den + self._jump * seg0
      num = num - self._jump * seg1
    logD = self._lgamma_a1 - alpha * jnp.log(delta) + lref + jnp.log(den)
    logp = (-alpha * math.log(4 * _PI) + 0.5 * alpha * alpha * t - 0.5 * jnp.log(2 * _PI * t)
            + logD)
    dlog_du = 0.5 * (alpha + 1.0) / delta * num / den
    return logp, dlog_du

  # ----------------------------------------------------------------------------- public
  def radial(self, X, S, t):
    """(log p_t, d log p_t / du) at X = cos^2(theta/2), S = sin^2(theta/2), u = X - S."""
    X, S, t = jnp.broadcast_arrays(X, S, t)
    dt = X.dtype
    ts = self.t_switch[_dtname(dt)]
    tiny_t = float(jnp.finfo(dt).tiny) ** 0.5
    t = jnp.maximum(t, tiny_t)
    use_eig = t >= ts

    def eig_only(X, S, t):
      return self._eigen(X, S, t)

    def contour_only(X, S, t):
      return self._contour(X, S, t)

    def both(X, S, t):
      le, ge = self._eigen(X, S, jnp.where(use_eig, t, ts))
      lc, gc = self._contour(X, S, jnp.where(use_eig, 0.5 * ts, t))
      return jnp.where(use_eig, le, lc), jnp.where(use_eig, ge, gc)

    # Skip the unused method when the whole batch is in one regime.
    idx = jnp.where(jnp.all(use_eig), 0, jnp.where(jnp.any(use_eig), 2, 1))
    return jax.lax.switch(idx, (eig_only, contour_only, both), X, S, t)

  # ----------------------------------------------------------------------------- sampling
  def _log_radial(self, theta, t):
    """log of the normalized density of theta on [0, pi] and its theta-derivative:
    r(theta) = vol(S^{n-1}) p_t(theta) sin^{n-1}(theta)."""
    half = 0.5 * theta
    X = jnp.cos(half) ** 2
    S = jnp.sin(half) ** 2
    lp, g = self.radial(X, S, t)
    s = jnp.sin(theta)
    lr = self._log_vol_sub + lp + (self.n - 1) * jnp.log(s)
    dlr = -s * g + (self.n - 1) * jnp.cos(theta) / s
    return lr, dlr

  @property
  def _log_vol_sub(self):
    return math.log(2.0) if self.n == 1 else log_volume(self.n - 1)

  def _guess(self, t):
    """Approximate centre and spread of theta (only used to place tangent points):
    E cos(theta) = e^{-nt/2}, Var cos(theta) from E[(n+1) cos^2 - 1] = n e^{-(n+1)t}."""
    n = self.n
    em = -jnp.expm1(-0.5 * n * t)                         # 1 - E cos
    centre = 2.0 * jnp.arcsin(jnp.sqrt(jnp.clip(0.5 * em, 0.0, 1.0)))
    var_u = (n * jnp.expm1(-(n + 1) * t)) / (n + 1) - jnp.expm1(-n * t)
    var_u = jnp.maximum(var_u, 0.5 * n * t * t * jnp.exp(-n * t))
    spread = jnp.sqrt(var_u) / jnp.maximum(jnp.sin(centre), 1e-30)
    spread = jnp.clip(spread, 1e-3 * centre, 2.0)
    return centre, spread

  def _envelope(self, t):
    """Upper hull of log r from tangents at three points (valid for any points since log r is
    concave in theta for n >= 2: every tangent line lies above it).  Returns the segment
    boundaries, line parameters and log masses, each of shape (..., 3)."""
    dt = t.dtype
    eps_th = 1e-6 if dt == jnp.float32 else 1e-12
    c, s = self._guess(t)
    offs = jnp.asarray([-1.4, 0.0, 1.4], dt)
    tau = jnp.clip(c[..., None] + offs * s[..., None], eps_th * math.pi,
                   math.pi * (1.0 - eps_th))
    h, d = self._log_radial(tau, jnp.broadcast_to(t[..., None], tau.shape))
    # Breakpoints between consecutive lines (clipped into the tangent intervals).
    def cross(i, j):
      den = d[..., i] - d[..., j]
      ok = den > 1e-12 * (jnp.abs(d[..., i]) + jnp.abs(d[..., j]) + 1.0)
      z = (h[..., j] - h[..., i] + d[..., i] * tau[..., i] - d[..., j] * tau[..., j]) / jnp.where(
          ok, den, 1.0)
      z = jnp.where(ok, z, 0.5 * (tau[..., i] + tau[..., j]))
      return jnp.clip(z, tau[..., i], tau[..., j])
    z12, z23 = cross(0, 1), cross(1, 2)
    a = jnp.stack([jnp.zeros_like(z12), z12, z23], -1)
    b = jnp.stack([z12, z23, jnp.full_like(z12, math.pi)], -1)
    la = h + d * (a - tau)                                  # line value at the left end
    L = b - a
    logm = la + jnp.log(jnp.maximum(L, 1e-300)) + _log_expm1c(d * L)
    logm = jnp.where(L > 0, logm, -jnp.inf)
    return a, L, tau, h, d, logm

  def _propose(self, key, env):
    a, L, tau, h, d, logm = env
    k1, k2 = jax.random.split(key)
    dt = a.dtype
    logits = logm - jnp.max(logm, axis=-1, keepdims=True)
    seg = jax.random.categorical(k1, logits, axis=-1)
    pick = lambda arr: jnp.take_along_axis(arr, seg[..., None], axis=-1)[..., 0]
    a_, L_, tau_, h_, d_ = pick(a), pick(L), pick(tau), pick(h), pick(d)
    u = jax.random.uniform(k2, a_.shape, dt, minval=jnp.finfo(dt).tiny, maxval=1.0)
    th = a_ + L_ * _trunc_exp_quantile(u, d_ * L_)
    th = jnp.clip(th, a_, a_ + L_)
    env_val = h_ + d_ * (th - tau_)
    return th, env_val

  def sample_theta(self, key, t):
    """Exact draw of the geodesic distance theta ~ r(theta) on [0, pi], any batch shape of t.

    n = 1: |wrapped normal|.  n >= 2: rejection from the piecewise-exponential upper hull of
    the (concave) log r built from tangents at three points; acceptance ~0.88.  Candidates are
    drawn for the pending samples in compacted chunks of B/8 until every sample is accepted
    (exact: the accepted value has the target law); ~1.4 B + 3 B radial evaluations in all."""
    t = jnp.asarray(t)
    dt = t.dtype
    shape = t.shape
    if self.n == 1:
      z = jnp.sqrt(t) * jax.random.normal(key, shape, dt)
      return jnp.abs(jnp.mod(z + math.pi, 2.0 * math.pi) - math.pi)
    tf = jnp.maximum(t.reshape(-1), float(jnp.finfo(dt).tiny) ** 0.5)
    B = tf.shape[0]
    env = self._envelope(tf)
    # One candidate per pending sample, processed in compacted chunks of B/8 (the first 8
    # iterations give every sample its first candidate; later ones redraw the ~12% rejected).
    chunk = max(1, -(-B // 8))
    th = jnp.zeros((B,), dt)
    done = jnp.zeros((B,), bool)

    def cond(state):
      return ~jnp.all(state[1])

    def body(state):
      th, done, k = state
      k, kp, ku = jax.random.split(k, 3)
      idx = jnp.nonzero(~done, size=chunk, fill_value=B)[0]
      valid = idx < B
      ii = jnp.minimum(idx, B - 1)
      sub = jax.tree_util.tree_map(lambda e: e[ii], env)
      thc, evc = self._propose(kp, sub)
      lrc, _ = self._log_radial(thc, tf[ii])
      lu = jnp.log(jax.random.uniform(ku, (chunk,), dt, minval=jnp.finfo(dt).tiny, maxval=1.0))
      acc = (lu <= lrc - evc) & valid
      tgt = jnp.where(acc, ii, B)                 # out-of-range index: dropped by the scatter
      th = th.at[tgt].set(thc, mode="drop")
      done = done.at[tgt].set(True, mode="drop")
      return th, done, k

    th, done, _ = jax.lax.while_loop(cond, body, (th, done, key))
    return th.reshape(shape)


def _log_expm1c(x):
  """log(expm1(x) / x), stable for all real x (0 at x = 0)."""
  small = jnp.abs(x) < 1e-4
  xs = jnp.where(small, 1.0, x)
  pos = jnp.log(-jnp.expm1(-xs)) + xs - jnp.log(jnp.abs(xs))     # x > 0
  neg = jnp.log(-jnp.expm1(xs)) - jnp.log(jnp.abs(xs))           # x < 0
  return jnp.where(small, 0.5 * x, jnp.where(x > 0, pos, neg))


def _trunc_exp_quantile(u, x):
  """Quantile (in [0, 1]) of the density proportional to exp(x v) on v in [0, 1]."""
  small = jnp.abs(x) < 1e-6
  xs = jnp.where(small, 1.0, x)
  pos = 1.0 + jnp.log(jnp.exp(-xs) + u * (-jnp.expm1(-xs))) / xs  # x > 0
  neg = jnp.log1p(u * jnp.expm1(xs)) / xs                          # x < 0
  return jnp.where(small, u, jnp.where(x > 0, pos, neg))
