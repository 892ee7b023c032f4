"""Tests for manifolds.special_unitary: SU(n) geometry, Haar law, exact heat kernel.

References are independent of the code under test: numpy eigendecompositions, brute-force
minimal angle representatives, autodiff Jacobians of exp, and mpmath (images sums and Weyl
character sums at 110 digits, the S^3 closed form for SU(2), mpmath eigenvalues and finite
differences for scores, quadrature of the Weyl integration formula).
"""
import itertools
import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from scipy.special import roots_legendre

ENABLE_X64 = True  # every test here runs in float64 (see conftest)
jax.config.update("jax_enable_x64", True)

from manifolds import SpecialUnitary, eigen_angles, from_spec  # noqa: E402

PI = math.pi
C64, C128 = jnp.complex64, jnp.complex128


# ============================================================================ references
def np_haar(rng, n, size):
  """Haar SU(n) in numpy (independent of the code under test)."""
  z = (rng.normal(size=(size, n, n)) + 1j * rng.normal(size=(size, n, n))) / np.sqrt(2)
  q, r = np.linalg.qr(z)
  d = np.diagonal(r, axis1=-2, axis2=-1)
  q = q * (d / np.abs(d))[:, None, :]
  det = np.linalg.det(q)
  return q / (det ** (1.0 / n))[:, None, None]


def np_from_angles(rng, theta):
  """G diag(e^{i theta}) G^H with G Haar (numpy)."""
  theta = np.asarray(theta, float)
  n = theta.shape[-1]
  g = np_haar(rng, n, 1)[0]
  return g @ np.diag(np.exp(1j * theta)) @ g.conj().T


def minimal_angles_bruteforce(ev):
  """Minimal-norm sum-zero angle vector for eigenvalues ev (by brute force over shifts)."""
  a = np.angle(ev)
  n = len(a)
  best = None
  for k in itertools.product((-1, 0, 1), repeat=n):
    h = a + 2 * PI * np.array(k)
    if abs(h.sum()) > 1e-6:
      continue
    if best is None or h @ h < best @ best - 1e-12:
      best = h
  return np.sort(best)


def _to_mp(x):
  return x if isinstance(x, mp.mpf) else mp.mpf(float(x))


def mp_vol(n):
  return (mp.sqrt(n) * (2 * mp.pi) ** (mp.mpf(n * n + n - 2) / 2)
          / mp.fprod([mp.factorial(k) for k in range(1, n)]))


def _mp_split(th, delta):
  """Split coincident angles by delta * rank (only used at degenerate points; the heat kernel
  is smooth and symmetric, so the O(delta^2) change is far below the tolerances)."""
  n = len(th)
  order = sorted(range(n), key=lambda i: th[i])
  out = list(th)
  for r, i in enumerate(order):
    out[i] += delta * (r - mp.mpf(n - 1) / 2)
  return out


def _mp_degenerate(th):
  for j in range(len(th)):
    for k in range(j + 1, len(th)):
      a = th[j] - th[k]
      if abs(a - 2 * mp.pi * mp.nint(a / (2 * mp.pi))) < 1e-6:
        return True
  return False


def mp_log_hk_images(theta, t):
  """Images sum (HEAT_KERNELS.md) in 110-digit arithmetic."""
  n = len(theta)
  deg = _mp_degenerate([_to_mp(x) for x in theta])
  with mp.workdps(110 if deg else 40):
    th = [_to_mp(x) for x in theta]
    t = mp.mpf(t)
    if deg:
      th = _mp_split(th, mp.mpf(10) ** -14)
    base = sum(x * x for x in th)
    rr = int(mp.ceil((mp.sqrt(base) + mp.sqrt(base + 240 * t)) / (2 * mp.pi))) + 1
    den = mp.fprod([2 * mp.sin((th[j] - th[k]) / 2) for j in range(n) for k in range(j + 1, n)])
    tot = mp.mpf(0)
    for m in itertools.product(range(-rr, rr + 1), repeat=n - 1):
      m = list(m) + [-sum(m)]
      h = [th[i] + 2 * mp.pi * m[i] for i in range(n)]
      e = sum(x * x for x in h)
      if (e - base) / (2 * t) > 120:      # e^-120 relative: far below the tolerances
        continue
      tot += mp.fprod([h[j] - h[k] for j in range(n) for k in range(j + 1, n)]) * mp.exp(-e / (2 * t))
    d = n * n - 1
    val = tot / den * (2 * mp.pi * t) ** (-mp.mpf(d) / 2) * mp.exp(mp.mpf(n * (n * n - 1)) / 24 * t)
    return mp.log(val)


def mp_log_hk_characters(theta, t):
  """Weyl character sum (determinant formula) in 110-digit arithmetic."""
  n = len(theta)
  deg = _mp_degenerate([_to_mp(x) for x in theta])
  with mp.workdps(110 if deg else 40):
    th = [_to_mp(x) for x in theta]
    t = mp.mpf(t)
    if deg:
      th = _mp_split(th, mp.mpf(10) ** -14)
    z = [mp.expj(x) for x in th]
    vd = mp.det(mp.matrix([[zk ** (n - 1 - j) for zk in z] for j in range(n)]))
    tot = [mp.mpf(0)]

    def rec(prefix, maxv):
      if len(prefix) == n - 1:
        lam = prefix + [0]
        cas = (sum(l * (l + n + 1 - 2 * (j + 1)) for j, l in enumerate(lam))
               - mp.mpf(sum(lam)) ** 2 / n)
        ll = [lam[j] + n - 1 - j for j in range(n)]
        dim = mp.fprod([mp.mpf(ll[j] - ll[k]) / (k - j) for j in range(n) for k in range(j + 1, n)])
        w = dim * mp.exp(-cas * t / 2)
        if w * dim < mp.mpf(10) ** -40:
          return False
        num = mp.det(mp.matrix([[zk ** lj for zk in z] for lj in ll]))
        tot[0] += w * mp.re(num / vd)
        return True
      any_ok = False
      for v in range(0, maxv + 1):
        ok = rec(prefix + [v], v)     # weights decrease with v: stop at the first empty branch
        if not ok and v > 0:
          break
        any_ok = any_ok or ok
      return any_ok

    rec([], 400)
    return mp.log(tot[0] / mp_vol(n))


def mp_log_hk(theta, t):
  return mp_log_hk_images(theta, t) if t < 2.5 else mp_log_hk_characters(theta, t)


def mp_log_hk_su2_s3(a, t):
  """SU(2) via S^3: p_t = 2^{-3/2} p^{S^3}_{t/2}(a), S^3 images closed form."""
  with mp.workdps(60):
    a = abs(mp.mpf(float(a)))
    s = mp.mpf(t) / 2
    if a < 1e-8:
      a = mp.mpf(10) ** -25          # even in a: O(1e-50) change
    elif abs(a - mp.pi) < 1e-8:
      a = mp.pi - mp.mpf(10) ** -25
    tot = mp.nsum(lambda k: (a + 2 * mp.pi * k) * mp.exp(-(a + 2 * mp.pi * k) ** 2 / (2 * s)),
                  [-mp.inf, mp.inf])
    p = (2 * mp.pi * s) ** (-1.5) * mp.exp(s / 2) * tot / mp.sin(a)
    return mp.log(p * mp.mpf(2) ** (-1.5))


# ============================================================================ helpers
def su_basis(n):
  """Orthonormal basis of su(n) under Re tr(X^H Y) (numpy, (n^2 - 1, n, n))."""
  out = []
  for i in range(n):
    for j in range(i + 1, n):
      e = np.zeros((n, n), complex)
      e[i, j], e[j, i] = 1, -1
      out.append(e / np.sqrt(2))
      e = np.zeros((n, n), complex)
      e[i, j], e[j, i] = 1j, 1j
      out.append(e / np.sqrt(2))
  for k in range(1, n):
    d = np.zeros(n)
    d[:k] = 1.0
    d[k] = -k
    out.append(np.diag(1j * d / np.linalg.norm(d)))
  return np.array(out)


def rel_err(a, r):
  return abs(a - r) / max(1.0, abs(r))


def _special_angles():
  return {
      2: [(0, 0), (1e-9, -1e-9), (0.7, -0.7), (2.0, -2.0), (PI - 1e-9, -PI + 1e-9),
          (PI - 1e-3, -PI + 1e-3), (PI, -PI)],
      3: [(0, 0, 0), (1e-9, 0, -1e-9), (0.3, 0.1, -0.4), (2.5, 1.0, -3.5), (1.5, 1.5, -3.0),
          (2 * PI / 3, 2 * PI / 3, -4 * PI / 3), (2 * PI / 3 + 1e-7, 2 * PI / 3, -4 * PI / 3 - 1e-7),
          (PI, PI - 1e-9, -2 * PI + 1e-9), (-PI, 1.0, PI - 1.0)],
      4: [(0, 0, 0, 0), (0.3, 0.1, -0.1, -0.3), (2.0, 1.0, -1.0, -2.0), (1.5, 1.5, 1.6, -4.6),
          (PI, PI, -PI, -PI), (PI / 2, PI / 2, PI / 2, -3 * PI / 2)],
  }


HB = 24  # one batch shape for the full-pipeline heat-kernel calls (one compilation per n, dtype)


def _pad(a, size=HB):
  a = np.asarray(a)
  reps = -(-size // len(a))
  return np.concatenate([a] * reps)[:size]


T_GRID = [1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0, 1.49, 1.5, 2.0, 5.0, 20.0]


# ============================================================================ eigen-angles
def test_eigen_angles_special_points():
  rng = np.random.default_rng(0)
  cases = [
      (np.eye(2), [0, 0]),
      (-np.eye(2), [-PI, PI]),
      (np.exp(2j * PI / 3) * np.eye(3), [-4 * PI / 3, 2 * PI / 3, 2 * PI / 3]),
      (-np.eye(4), [-PI, -PI, PI, PI]),
      (1j * np.eye(4), [-3 * PI / 2, PI / 2, PI / 2, PI / 2]),
      (np_from_angles(rng, [PI, 1.0, -PI - 1.0]), [-PI, 1.0, PI - 1.0]),
      (np_from_angles(rng, [2.0, 2.0, -4.0]), [-4.0, 2.0, 2.0]),
  ]
  for dtype, tol in ((C64, 2e-5), (C128, 1e-12)):
    for u, expect in cases:
      if dtype == C64 and len(u) != 2:
        continue                      # float32: one compilation (n = 2) is enough here
      th = np.asarray(eigen_angles(jnp.asarray(u, dtype)))
      assert th.dtype == (np.float32 if dtype == C64 else np.float64)
      np.testing.assert_allclose(th, expect, atol=tol)
      assert abs(th.sum()) < tol


def test_eigen_angles_random_vs_numpy():
  rng = np.random.default_rng(1)
  for n in (2, 3, 4):
    u = np_haar(rng, n, 40)
    th = np.asarray(eigen_angles(jnp.asarray(u)))
    for i in range(len(u)):
      ref = minimal_angles_bruteforce(np.linalg.eigvals(u[i]))
      np.testing.assert_allclose(th[i], ref, atol=1e-11)
    assert np.all(np.diff(th, axis=-1) >= 0)


# ============================================================================ geometry
B = 8  # one batch shape for all geometry calls (one compilation per method, n and dtype)


def _geometry_checks(n, dtype, tol):
  M = SpecialUnitary(n)
  rng = np.random.default_rng(n)
  x = jnp.asarray(np_haar(rng, n, B), dtype)
  y = jnp.asarray(np_haar(rng, n, B), dtype)
  v = M.log(x, y)
  assert v.dtype == dtype
  a = np.conj(np.swapaxes(np.asarray(x), -1, -2)) @ np.asarray(v)
  np.testing.assert_allclose(a + np.conj(np.swapaxes(a, -1, -2)), 0, atol=tol)
  np.testing.assert_allclose(np.trace(a, axis1=-2, axis2=-1), 0, atol=tol)
  np.testing.assert_allclose(np.asarray(M.exp(x, v)), np.asarray(y), atol=tol)
  dist = np.asarray(M.dist(x, y))
  np.testing.assert_allclose(np.asarray(M.norm(x, v)), dist, atol=tol)
  np.testing.assert_allclose(np.asarray(M.dist(y, x)), dist, atol=tol)
  ref = [np.linalg.norm(minimal_angles_bruteforce(np.linalg.eigvals(
      np.asarray(x[i], complex).conj().T @ np.asarray(y[i], complex)))) for i in range(B)]
  np.testing.assert_allclose(dist, ref, atol=10 * tol)
  # exp of a unit tangent vector: on SU(n), equal to x expm(x^H w), inverted by log
  k1, k2 = jax.random.split(jax.random.PRNGKey(n))
  w = np.asarray(M.random_normal_tangent(k1, x))
  w = jnp.asarray(w / np.sqrt(np.sum(np.abs(w) ** 2, axis=(-2, -1)))[:, None, None], dtype)
  z = M.exp(x, w)
  assert np.all(np.asarray(M.belongs(z)))
  ref_z = np.asarray(x, complex) @ np.stack([
      _np_expm(np.asarray(x[i], complex).conj().T @ np.asarray(w[i], complex)) for i in range(B)])
  np.testing.assert_allclose(np.asarray(z), ref_z, atol=10 * tol)
  np.testing.assert_allclose(np.asarray(M.log(x, z)), np.asarray(w), atol=10 * tol)
  assert np.max(np.asarray(M._violation(M.exp(x, 40.0 * w)))) < 100 * nx_eps(dtype)
  # the inner product is Re tr(X^H Y)
  u2 = M.random_normal_tangent(k2, x)
  ref_in = np.real(np.einsum("bij,bij->b", np.conj(np.asarray(w)), np.asarray(u2)))
  np.testing.assert_allclose(np.asarray(M.inner(x, w, u2)), ref_in, rtol=tol, atol=tol)
  # proj: identity on SU(n), removes positive scale and a small global phase
  xs = np.asarray(x, complex)
  np.testing.assert_allclose(np.asarray(M.proj(x)), xs, atol=tol)
  np.testing.assert_allclose(np.asarray(M.proj(jnp.asarray(2.5 * np.exp(0.1j) * xs, dtype))), xs,
                             atol=tol)
  # near SU(n): proj(z) is a critical point of |z - P|^2 on SU(n) up to O(|noise|^2)
  noise = 1e-3 * (rng.normal(size=xs.shape) + 1j * rng.normal(size=xs.shape))
  pz = M.proj(jnp.asarray(xs + noise, dtype))
  grad = np.asarray(M.to_tangent(pz, jnp.asarray(xs + noise, dtype) - pz))
  assert np.max(np.abs(grad)) < 1e-5 + 30 * tol
  assert np.all(np.asarray(M.belongs(pz)))
  # to_tangent: idempotent, tangent, orthogonal residual
  zz = jnp.asarray(rng.normal(size=xs.shape) + 1j * rng.normal(size=xs.shape), dtype)
  vt = M.to_tangent(x, zz)
  np.testing.assert_allclose(np.asarray(M.to_tangent(x, vt)), np.asarray(vt), atol=tol)
  np.testing.assert_allclose(np.asarray(M.inner(x, zz - vt, u2)), 0, atol=10 * tol)
  # transport: isometry onto T_y, reverses the geodesic direction, inverse along the way back
  pw, pu = M.transp(x, y, w), M.transp(x, y, u2)
  np.testing.assert_allclose(np.asarray(M.inner(y, pw, pu)), np.asarray(M.inner(x, w, u2)),
                             rtol=10 * tol, atol=10 * tol)
  np.testing.assert_allclose(np.asarray(M.to_tangent(y, pw)), np.asarray(pw), atol=tol)
  np.testing.assert_allclose(np.asarray(M.transp(x, y, v)), -np.asarray(M.log(y, x)),
                             atol=10 * tol)
  np.testing.assert_allclose(np.asarray(M.transp(y, x, pw)), np.asarray(w), atol=10 * tol)
  # cut locus: y = c x with c central.  SU(2): -1, SU(3): e^{2 pi i/3}, SU(4): -1.
  c, d2 = {2: (-1.0, 2 * PI**2), 3: (np.exp(2j * PI / 3), 24 * PI**2 / 9), 4: (-1.0, 4 * PI**2)}[n]
  yc = jnp.asarray(c * xs, dtype)
  vc = M.log(x, yc)
  np.testing.assert_allclose(np.asarray(M.norm(x, vc)), math.sqrt(d2), rtol=tol)   # not 0
  np.testing.assert_allclose(np.asarray(M.dist(x, yc)), math.sqrt(d2), rtol=tol)
  np.testing.assert_allclose(np.asarray(M.exp(x, vc)), np.asarray(yc), atol=10 * tol)
  np.testing.assert_array_equal(np.asarray(M.log(x, yc)), np.asarray(vc))  # deterministic


def _np_expm(a):
  w, q = np.linalg.eig(a)
  return q @ np.diag(np.exp(w)) @ np.linalg.inv(q)


def nx_eps(dtype):
  return float(jnp.finfo(jnp.empty((), dtype).real.dtype).eps)


@pytest.mark.parametrize("n", [2, 3])
def test_geometry_f64(n):
  _geometry_checks(n, C128, 1e-11)


def test_geometry_f32():
  _geometry_checks(3, C64, 3e-5)


def test_eigenvalue_minus_one_is_not_cut_point():
  """For n = 3 an eigenvalue -1 alone does not make log discontinuous."""
  M = SpecialUnitary(3)
  rng = np.random.default_rng(3)
  u = np_from_angles(rng, [PI, 1.0, -PI - 1.0])
  pert = np_from_angles(np.random.default_rng(9), [1e-7, 0, -1e-7])
  eye = jnp.broadcast_to(jnp.eye(3, dtype=C128), (B, 3, 3))
  ys = jnp.asarray(np.stack([u, u @ pert] + [u] * (B - 2)))
  v = np.asarray(M.log(eye, ys))
  np.testing.assert_allclose(v[1], v[0], atol=1e-6)


@pytest.mark.parametrize("n", [2, 3])
def test_proj_matches_numpy_polar_on_both_routes(n):
  """proj = det-fixed unitary polar factor (numpy SVD reference) on a well-conditioned batch
  (elementwise route) and on a batch holding one ill-conditioned matrix (LAPACK route), and
  its JVP agrees between the routes and with central differences."""
  M = SpecialUnitary(n)
  rng = np.random.default_rng(11 + n)
  xs = np_haar(rng, n, 6)
  near = xs + 0.05 * (rng.normal(size=xs.shape) + 1j * rng.normal(size=xs.shape))
  bad = np.diag([1.0] + [1e-3] * (n - 1)).astype(complex)[None]

  def ref(z):
    u, _, vh = np.linalg.svd(z)
    p = u @ vh
    return p * np.exp(-1j * np.angle(np.linalg.det(p)) / n)[:, None, None]

  for z in (near, np.concatenate([near, bad])):
    np.testing.assert_allclose(np.asarray(M.proj(jnp.asarray(z, C128))), ref(z), atol=1e-12)
  dz = rng.normal(size=near.shape) + 1j * rng.normal(size=near.shape)

  def jvp(z, d):
    return np.asarray(jax.jvp(M.proj, (jnp.asarray(z, C128),), (jnp.asarray(d, C128),))[1])

  fast = jvp(near, dz)
  slow = jvp(np.concatenate([near, bad]), np.concatenate([dz, np.zeros_like(bad)]))[:6]
  np.testing.assert_allclose(fast, slow, atol=1e-11)
  h = 1e-6
  fd = (ref(near + h * dz) - ref(near - h * dz)) / (2 * h)
  np.testing.assert_allclose(fast, fd, atol=1e-7)
  # float32, elementwise route: on SU(n) to round-off
  p32 = M.proj(jnp.asarray(near, C64))
  assert np.all(np.asarray(M.belongs(p32)))
  np.testing.assert_allclose(np.asarray(p32), ref(near), atol=2e-6)


def test_exp_log_proj_gradients_finite():
  M = SpecialUnitary(3)
  b = jnp.asarray(su_basis(3)[0] + su_basis(3)[7])
  eye = jnp.eye(3, dtype=C128)
  f = jax.jit(jax.grad(lambda s: jnp.real(jnp.sum(M.exp(eye, s * b) + M.log(eye, M.exp(eye, s * b))
                                                   + M.proj(s * eye + 0.1 * s**2)))))
  assert np.isfinite(float(f(0.0))) and np.isfinite(float(f(1.0)))
  # the custom JVP of exp agrees with jax.scipy.linalg.expm's
  a = jnp.asarray(su_basis(3)[2] * 0.8 + su_basis(3)[4] * 1.3)
  j1 = jax.jvp(lambda s: M.exp(eye, s * a + b), (1.0,), (1.0,))[1]
  j2 = jax.jvp(lambda s: jax.scipy.linalg.expm(s * a + b), (1.0,), (1.0,))[1]
  np.testing.assert_allclose(np.asarray(j1), np.asarray(j2), atol=1e-12)


def test_transp_vs_projection_ladder():
  """Parallel transport of the induced metric = limit of successive orthogonal projections
  onto the tangent spaces along the geodesic (independent of the closed form)."""
  M = SpecialUnitary(2)
  rng = np.random.default_rng(6)
  x = jnp.asarray(np_haar(rng, 2, 1)[0])
  y = jnp.asarray(np_haar(rng, 2, 1)[0])
  u = M.random_normal_tangent(jax.random.PRNGKey(2), x)
  v = M.log(x, y)
  steps = 2000

  def body(k, carry):
    s = (k + 1.0) / steps
    return M.to_tangent(M.exp(x, s * v), carry)

  w = jax.jit(lambda u: jax.lax.fori_loop(0, steps, body, u))(u)
  err_ladder = float(M.norm(y, w - M.transp(x, y, u)) / M.norm(x, u))
  assert err_ladder < 2e-3
  # the ladder does distinguish transport from e.g. plain left translation y x^H u
  assert float(M.norm(y, w - y @ jnp.conj(x.T) @ u) / M.norm(x, u)) > 20 * err_ladder


@pytest.mark.parametrize("n", [2, 3])
def test_log_det_exp_vs_autodiff(n):
  """log_det_exp against log|det| of the Jacobian of c -> x expm(sum c_k B_k) (autodiff of
  jax.scipy.linalg.expm) in orthonormal frames."""
  M = SpecialUnitary(n)
  rng = np.random.default_rng(10 + n)
  basis = jnp.asarray(su_basis(n))
  x = jnp.asarray(np_haar(rng, n, 1)[0])

  def f(c):
    return x @ jax.scipy.linalg.expm(jnp.einsum("k,kij->ij", c, basis))

  @jax.jit
  def ref_logdet(c):
    jac = jax.jacfwd(f)(c)                                  # (n, n, d) complex
    frame = f(c)[None] @ basis                              # orthonormal frame at y
    return jnp.linalg.slogdet(jnp.real(jnp.einsum("aij,ijb->ab", jnp.conj(frame), jac)))[1]

  cs = []
  for scale in (0.0, 0.5, 2.0, 4.0, 7.0):
    c0 = rng.normal(size=n * n - 1)
    cs.append(scale * c0 / np.linalg.norm(c0))
  cs = np.array(cs)
  got = np.asarray(M.log_det_exp(jnp.broadcast_to(x, (len(cs), n, n)),
                                 x @ jnp.einsum("bk,kij->bij", jnp.asarray(cs), basis)))
  ref = np.array([float(ref_logdet(jnp.asarray(c))) for c in cs])
  np.testing.assert_allclose(got, ref, atol=1e-9, rtol=1e-9)


def test_log_det_exp_f32_and_grad():
  M = SpecialUnitary(3)
  x = jnp.eye(3, dtype=C64)
  v = jnp.asarray(su_basis(3)[0] * 0.7 + su_basis(3)[7] * 0.2, C64)
  assert M.log_det_exp(x, v).dtype == jnp.float32
  g = jax.grad(lambda s: M.log_det_exp(x, s * v))(jnp.float32(0.0))
  assert np.isfinite(float(g))


@pytest.mark.parametrize("n", [2, 3])
def test_log_det_exp_gradient_vs_differences(n):
  """d/ds log_det_exp(x, s v) against central differences (float64), at generic v and at v
  with repeated eigenvalues (i diag(1, 1, -2) for n = 3), where single eigenvalues are not
  differentiable but their symmetric functions are."""
  M = SpecialUnitary(n)
  rng = np.random.default_rng(21 + n)
  x = jnp.asarray(np_haar(rng, n, 1)[0])
  basis = su_basis(n)
  vs = [np.einsum("k,kij->ij", rng.normal(size=n * n - 1), basis)]
  if n == 3:
    vs.append(1j * np.diag([1.0, 1.0, -2.0]))
  for v in vs:
    v = np.asarray(x) @ v / np.linalg.norm(v)
    f = lambda s: M.log_det_exp(x, s * jnp.asarray(v))  # noqa: E731
    for s0 in (0.3, 1.2, 2.5):
      g = float(jax.grad(f)(s0))
      h = 1e-5
      fd = (float(f(s0 + h)) - float(f(s0 - h))) / (2 * h)
      assert abs(g - fd) < 1e-7 * (1 + abs(fd)), (n, s0, g, fd)


# ============================================================================ uniform law / volume
def test_log_volume():
  for n in (2, 3, 4, 5):
    ref = mp.log(mp_vol(n))
    assert abs(SpecialUnitary(n).log_volume() - float(ref)) < 1e-12
  # SU(2) = S^3 of radius sqrt(2): Weyl integration of the class-function volume element
  # 4 pi (sqrt 2 sin a)^2 * sqrt(2) da over a in [0, pi].
  vol = mp.quad(lambda a: 4 * mp.pi * 2 * mp.sin(a) ** 2 * mp.sqrt(2), [0, mp.pi])
  assert abs(float(mp.log(vol)) - SpecialUnitary(2).log_volume()) < 1e-12
  assert abs(float(vol) - 2 * PI**2 * 2 ** 1.5) < 1e-10


@pytest.mark.parametrize("n", [2, 3])
def test_haar_moments(n):
  M = SpecialUnitary(n)
  num = 100_000
  u = M.random_uniform(jax.random.PRNGKey(n), (num,))
  assert u.dtype == C128
  np.testing.assert_allclose(np.linalg.det(np.asarray(u)), 1.0, atol=1e-12)
  assert np.all(np.asarray(M.belongs(u)))
  tr = np.trace(np.asarray(u), axis1=-2, axis2=-1)
  # E tr U = 0, E|tr U|^2 = 1, E|tr U|^4 = 2, and E (tr U)^n = 1 (0 on U(n): the det invariant)
  checks = [(tr, 0.0), (np.abs(tr) ** 2, 1.0), (np.abs(tr) ** 4, 2.0), (tr**n, 1.0)]
  for vals, ref in checks:
    se = np.std(vals) / math.sqrt(num)
    assert abs(np.mean(vals) - ref) < 5 * se + 1e-12, (n, np.mean(vals), ref)
  u32 = M.random_uniform(jax.random.PRNGKey(0), (4,), jnp.float32)
  assert u32.dtype == C64 and np.all(np.asarray(M.belongs(u32)))


def test_random_normal_tangent_covariance():
  n = 3
  M = SpecialUnitary(n)
  num = 40_000
  x0 = np_haar(np.random.default_rng(2), n, 1)[0]
  x = jnp.asarray(np.broadcast_to(x0, (num, n, n)))
  v = np.asarray(M.random_normal_tangent(jax.random.PRNGKey(3), x))
  a = x0.conj().T[None] @ v
  c = np.real(np.einsum("kij,bij->bk", np.conj(su_basis(n)), a))
  cov = c.T @ c / num
  # the coordinates in an orthonormal basis capture all of v (v is tangent)
  np.testing.assert_allclose(np.sum(c**2, axis=1), np.sum(np.abs(v) ** 2, axis=(-2, -1)),
                             rtol=1e-10)
  assert np.max(np.abs(cov - np.eye(n * n - 1))) < 5 * math.sqrt(2.0 / num)


# ============================================================================ heat kernel
@pytest.fixture(scope="module")
def hk_refs():
  """mpmath references log p_t(theta) on the special point set and time grid."""
  refs = {}
  for n, pts in _special_angles().items():
    for th in pts:
      th = np.array(th, float)
      th = th - th.mean()
      for t in T_GRID:
        refs[(n, tuple(th), t)] = float(mp_log_hk(list(th), t))
  return refs


def test_mp_references_agree():
  """The two mpmath references (and the S^3 closed form) agree where both converge."""
  for th in [(0.3, 0.1, -0.4), (2 * PI / 3, 2 * PI / 3, -4 * PI / 3)]:
    a = mp_log_hk_images(th, 2.0)
    b = mp_log_hk_characters(th, 2.0)
    assert abs(a - b) < 1e-18
  for a in (0.0, 0.5, PI):
    for t in (0.05, 1.0, 4.0):
      assert abs(mp_log_hk_su2_s3(a, t) - mp_log_hk([a, -a], t)) < 1e-20


# Batch sizes shared with the normalization tests (one compilation per n and dtype).
ANGLE_BATCH = {2: 400, 3: 96 * 96, 4: 128}


def _batch(hk_refs, n, extreme=False):
  keys = [k for k, ref in hk_refs.items() if k[0] == n and ref > -500]
  th = [k[1] for k in keys]
  t = [k[2] for k in keys]
  ref = [hk_refs[k] for k in keys]
  if extreme:   # no reference: finiteness (and -log vol at t = 1e8) only
    for th0 in sorted({k[1] for k in hk_refs if k[0] == n}):
      for tt in (1e-8, 1e4, 1e8):
        th.append(th0)
        t.append(tt)
        ref.append(np.nan)
  m = len(th)
  size = ANGLE_BATCH[n]
  assert m <= size
  return _pad(np.array(th), size), _pad(np.array(t), size), _pad(np.array(ref), size), m


@pytest.mark.parametrize("n", [2, 3, 4])
def test_log_heat_kernel_f64(n, hk_refs):
  M = SpecialUnitary(n)
  th, t, ref, m = _batch(hk_refs, n)
  got = np.asarray(M.log_heat_kernel_angles(jnp.asarray(th), jnp.asarray(t)))[:m]
  th, t, ref = th[:m], t[:m], ref[:m]
  err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
  print(f"SU({n}) float64 worst relative error {err.max():.2e}")
  assert np.all(err < 1e-8), [(th[i], t[i], got[i], ref[i]) for i in np.nonzero(err >= 1e-8)[0]]
  if n == 2:
    s3 = np.array([float(mp_log_hk_su2_s3(a, tt)) for a, tt in zip(th[:, 0], t)])
    assert np.all(np.abs(got - s3) < 1e-8 * np.maximum(1.0, np.abs(s3)))


@pytest.mark.parametrize("n", [2, 3, 4])
def test_log_heat_kernel_f32(n, hk_refs):
  """float32 angles against the float64 references: the input rounding (6e-8 |theta|) moves
  log p by at most ~6e-8 |theta|^2 / t, far below 1e-3 max(1, |log p|)."""
  M = SpecialUnitary(n)
  th, t, ref, m = _batch(hk_refs, n, extreme=True)
  got = M.log_heat_kernel_angles(jnp.asarray(th, jnp.float32), jnp.asarray(t, jnp.float32))
  assert got.dtype == jnp.float32
  got = np.asarray(got, float)[:m]
  th, t, ref = th[:m], t[:m], ref[:m]
  assert np.all(np.isfinite(got))                           # also t = 1e-8, 1e4, 1e8
  np.testing.assert_allclose(got[t == 1e8], -M.log_volume(), atol=1e-4)
  got, th, t, ref = got[~np.isnan(ref)], th[~np.isnan(ref)], t[~np.isnan(ref)], ref[~np.isnan(ref)]
  err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
  print(f"SU({n}) float32 worst relative error {err.max():.2e}")
  assert np.all(err < 1e-3), [(th[i], t[i], got[i], ref[i]) for i in np.nonzero(err >= 1e-3)[0]]


def test_log_heat_kernel_matrices_random_f64():
  """Full pipeline (eigen-angles of x^H y) at random, y = x and near-wall points."""
  rng = np.random.default_rng(11)
  for n in (2, 3):
    M = SpecialUnitary(n)
    x = np_haar(rng, n, HB)
    y = np_haar(rng, n, HB)
    y[0] = x[0]
    y[1] = x[1] @ np_from_angles(rng, [1.0, 1.0 + 1e-10, -2.0 - 1e-10] if n == 3
                                 else [PI - 1e-10, -PI + 1e-10])
    t = _pad([1e-3, 0.05, 0.4, 1.2, 2.0, 8.0])
    got = np.asarray(M.log_heat_kernel(jnp.asarray(x), jnp.asarray(y), jnp.asarray(t)))
    for i in range(8):
      th = minimal_angles_bruteforce(np.linalg.eigvals(x[i].conj().T @ y[i]))
      ref = float(mp_log_hk(list(th), t[i]))
      assert rel_err(got[i], ref) < 1e-8, (n, i, got[i], ref)


@pytest.mark.parametrize("dtype", [C64, C128])
def test_heat_kernel_finite_everywhere(dtype):
  """Matrix inputs at y = x, central y, -x and a wall point, t from 1e-8 to 1e8.  (The angle
  function is checked finite for n = 2, 3, 4 in both precisions by test_log_heat_kernel_f32/64;
  here the eigen-angle pipeline and the score, float32 for n = 2 to bound the test time.)"""
  ts = np.array([1e-8, 1e-4, 1.0, 1.5, 1e4, 1e8])
  for n in ((2, 3) if dtype == C128 else (2,)):
    M = SpecialUnitary(n)
    pts = [np.eye(n), np.exp(2j * PI / n) * np.eye(n), -np.eye(n),
           np_from_angles(np.random.default_rng(0), _special_angles()[n][-1])]
    xs = np_haar(np.random.default_rng(n), n, HB)
    x = jnp.asarray(xs, dtype)
    ys = jnp.asarray(xs @ np.repeat(np.stack(pts), len(ts), axis=0), dtype)    # (24, n, n)
    tt = np.tile(ts, len(pts))
    if dtype == C128:
      lp = np.asarray(M.log_heat_kernel(x, ys, jnp.asarray(tt, ys.real.dtype)))
      assert np.all(np.isfinite(lp)), (n, lp)
      np.testing.assert_allclose(lp[tt == 1e8], -M.log_volume(), atol=1e-5)
    sc = np.asarray(M.heat_kernel_score(x, ys, jnp.asarray(tt, ys.real.dtype)))
    assert np.all(np.isfinite(sc)), n


def _mp_score_directional(x, y, b, t):
  """d/ds log p_t(x, y exp(s b)) at s = 0 by a central difference in mpmath."""
  n = x.shape[0]
  with mp.workdps(50):
    xm = mp.matrix(x.conj().T.tolist()) * mp.matrix(y.tolist())
    bm = mp.matrix(b.tolist())
    h = mp.mpf(10) ** -14
    vals = []
    for s in (h, -h):
      m = xm * mp.expm(s * bm)
      ev = mp.eig(m, left=False, right=False)
      ang = [mp.arg(e) for e in ev]
      k = mp.nint(sum(ang) / (2 * mp.pi))
      order = sorted(range(n), key=lambda i: ang[i])
      if k > 0:
        for i in order[n - int(k):]:
          ang[i] -= 2 * mp.pi
      elif k < 0:
        for i in order[:int(-k)]:
          ang[i] += 2 * mp.pi
      mean = sum(ang) / n
      ang = [a - mean for a in ang]
      vals.append(mp_log_hk(ang, t))
    return float((vals[0] - vals[1]) / (2 * h))


@pytest.mark.parametrize("n", [2, 3])
def test_heat_kernel_score_vs_mpmath(n):
  M = SpecialUnitary(n)
  rng = np.random.default_rng(20 + n)
  basis = su_basis(n)
  xs = np_haar(rng, n, HB)
  angs = {2: [(1.0, -1.0), (PI - 0.05, -PI + 0.05)], 3: [(0.4, 0.1, -0.5), (2.0, 1.9, -3.9)]}[n]
  ts = [0.3, 2.0]
  ys = np.stack([xs[i % 2] @ np_from_angles(rng, angs[i % 2]) for i in range(HB)])
  tb = jnp.asarray(_pad(ts))
  s = np.asarray(M.heat_kernel_score(jnp.asarray(xs), jnp.asarray(ys), tb))
  if n == 2:
    # base-class autodiff (jax.grad of a real function of complex y, conjugated, projected):
    # checks the JAX convention claim of the base class on the same points
    s_base = np.asarray(super(SpecialUnitary, M).heat_kernel_score(
        jnp.asarray(xs), jnp.asarray(ys), tb))
  for i in range(len(angs)):
    x, y = xs[i], ys[i]
    frame = np.conj(y[None] @ basis)
    got = np.real(np.einsum("kij,ij->k", frame, s[i]))
    ref = np.array([_mp_score_directional(x, y, basis[k], ts[i]) for k in range(len(basis))])
    assert np.linalg.norm(got - ref) < 1e-5 * np.linalg.norm(ref), (got, ref)
    if n == 2:
      got_base = np.real(np.einsum("kij,ij->k", frame, s_base[i]))
      assert np.linalg.norm(got_base - ref) < 1e-5 * np.linalg.norm(ref)
    np.testing.assert_allclose(np.asarray(M.to_tangent(jnp.asarray(y), s[i])), s[i], atol=1e-10)


def test_heat_kernel_score_symmetric_points():
  """At y = x and at central y the score vanishes (Ad-invariance); in float64."""
  for n in (2, 3):
    M = SpecialUnitary(n)
    x = jnp.asarray(np_haar(np.random.default_rng(n), n, HB))
    c = -1.0 if n == 2 else np.exp(2j * PI / 3)
    ys = x * jnp.asarray(_pad([1.0] * 3 + [c] * 3))[:, None, None]
    ts = jnp.asarray(_pad([1e-3, 0.5, 3.0] * 2))
    sc = np.asarray(M.heat_kernel_score(x, ys, ts))
    assert np.max(np.abs(sc)) < 1e-6


@pytest.mark.parametrize("n", [2, 3])
def test_score_derivative_satisfies_heat_equation(n):
  """The derivative of the score (not only the score) is right: the heat equation
  d/dt log p = (div score + |score|^2) / 2, with the divergence from forward-mode derivatives
  of `heat_kernel_score` and d/dt from reverse mode of `log_heat_kernel` (independent
  paths), in both regimes (images below t = 1.5, characters above), at generic, coincident
  (y = x up to 1e-9) and nearly central points."""
  from geogen.likelihood import divergence
  M = SpecialUnitary(n)
  rng = np.random.default_rng(40 + n)
  x = jnp.asarray(np_haar(rng, n, 3))
  y = np.array(np_haar(rng, n, 3))
  c = -1.0 if n == 2 else np.exp(2j * PI / 3)
  y[0] = np.asarray(x[0]) @ np_from_angles(rng, [1e-9] + [0.0] * (n - 2) + [-1e-9])
  y[1] = c * np.asarray(x[1]) @ np_from_angles(rng, [0.3] + [0.0] * (n - 2) + [-0.3])
  y = jnp.asarray(y)

  @jax.jit  # one compilation for every t (t is traced)
  def sides(x, y, t):
    div = jax.vmap(lambda xi, yi: divergence(
        M, lambda yy, _: M.heat_kernel_score(xi, yy, t), yi, 0.0))(x, y)
    sc = M.heat_kernel_score(x, y, t)
    dt = jax.vmap(jax.grad(lambda tt, a, b: M.log_heat_kernel(a, b, tt)),
                  (None, 0, 0))(t, x, y)
    return dt, 0.5 * (div + M.inner(y, sc, sc))

  for t in (0.05, 1.0, 3.0):
    dt, rhs = sides(x, y, jnp.asarray(t, x.real.dtype))
    np.testing.assert_allclose(np.asarray(dt), np.asarray(rhs), rtol=1e-7,
                               atol=1e-7 * float(np.max(np.abs(np.asarray(dt)))))


def test_heat_kernel_normalization_su2():
  M = SpecialUnitary(2)
  xg, wg = roots_legendre(200)
  for t in (1e-3, 0.1, 1.0, 5.0):
    w = min(PI / 2, 15 * math.sqrt(t))
    pieces = ((0.0, w), (w, PI))
    a = np.concatenate([0.5 * (hi - lo) * xg + 0.5 * (hi + lo) for lo, hi in pieces])
    wts = np.concatenate([0.5 * (hi - lo) * wg for lo, hi in pieces])
    lp = np.asarray(M.log_heat_kernel_angles(jnp.asarray(np.stack([a, -a], -1)),
                                             jnp.asarray(np.full(len(a), t))))
    # Weyl integration on SU(2) = S^3(sqrt 2): dvol = 8 sqrt(2) pi sin^2 a da
    tot = np.sum(wts * np.exp(lp) * 8 * math.sqrt(2) * PI * np.sin(a) ** 2)
    assert abs(tot - 1.0) < 1e-10, (t, tot)


def test_heat_kernel_normalization_su3():
  """Weyl integration: int p = vol / (3! (2 pi)^2) int_T p |Delta|^2 (trapezoid on the torus,
  spectrally accurate for smooth periodic integrands).  Below t = 1.5 this uses the images
  formula only, so it also checks the volume formula."""
  M = SpecialUnitary(3)
  k = 96
  a = -PI + 2 * PI * np.arange(k) / k
  a1, a2 = np.meshgrid(a, a, indexing="ij")
  th = np.stack([a1, a2, -a1 - a2], -1).reshape(-1, 3)
  th_min = np.asarray(eigen_angles(jnp.asarray(np.exp(1j * th)[:, :, None] * np.eye(3)[None])))
  d2 = np.prod([np.abs(np.exp(1j * th[:, i]) - np.exp(1j * th[:, j])) ** 2
                for i, j in ((0, 1), (0, 2), (1, 2))], axis=0)
  for t in (0.5, 2.0):
    p = np.exp(np.asarray(M.log_heat_kernel_angles(jnp.asarray(th_min),
                                                   jnp.asarray(np.full(len(th_min), t)))))
    tot = math.exp(M.log_volume()) / (6 * (2 * PI) ** 2) * np.sum(p * d2) * (2 * PI / k) ** 2
    assert abs(tot - 1.0) < 1e-9, (t, tot)


def test_heat_kernel_jit_vmap_grad_broadcast():
  M = SpecialUnitary(2)
  rng = np.random.default_rng(30)
  x = jnp.asarray(np_haar(rng, 2, HB))
  y = jnp.asarray(np_haar(rng, 2, HB)).at[0].set(x[0])      # y = x in row 0
  t = jnp.asarray(_pad([0.1, 0.5, 2.0, 3.0]))
  th = eigen_angles(jnp.asarray(np.conj(np.swapaxes(np.asarray(x), -1, -2)) @ np.asarray(y)))
  a = M.log_heat_kernel(x, y, t)
  c = jax.vmap(M.log_heat_kernel_angles)(th, t)
  np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-12)
  # broadcasting: one x against a batch of y, a scalar t
  b = np.asarray(M.log_heat_kernel(x[0], y, 0.5))
  assert b.shape == (HB,) and np.all(np.isfinite(b))
  # reverse-mode through the whole pipeline (eigen-angle JVP included), finite at y = x;
  # same computation as the base-class score (shared compilation with the mpmath test)
  g = super(SpecialUnitary, M).heat_kernel_score(x, y, t)
  assert np.all(np.isfinite(np.asarray(g)))
  np.testing.assert_allclose(np.asarray(g), np.asarray(M.heat_kernel_score(x, y, t)), atol=1e-8)


# ============================================================================ sampler
@pytest.mark.parametrize("n", [2, 3, 4])
def test_sample_heat_kernel_moments(n):
  M = SpecialUnitary(n)
  x = jnp.asarray(np_haar(np.random.default_rng(40 + n), n, 1)[0])
  num = 100_000
  for i, t in enumerate((1e-3, 0.1, 1.0, 5.0)):
    y = M.sample_heat_kernel(jax.random.PRNGKey(i), x, jnp.asarray(np.full(num, t)))
    if i == 0:
      assert np.all(np.asarray(M.belongs(y)))
    v = np.real(np.einsum("ij,bij->b", np.conj(np.asarray(x)), np.asarray(y)))
    ref = n * math.exp(-(n * n - 1) * t / (2 * n))
    se = np.std(v) / math.sqrt(num)
    assert abs(np.mean(v) - ref) < 5 * se, (n, t, np.mean(v), ref, se)


def _su2_cdf(t, grid):
  """CDF of the eigen-angle a in [0, pi] of Y ~ p_t(I, .) on SU(2), in closed form:
  density 4 pi (pi t)^{-3/2} e^{t/4} sum_k u_k sin(u_k) e^{-u_k^2/t}, u_k = a + 2 pi k (S^3 images
  times the Weyl volume element 8 sqrt(2) pi sin^2 a), integrated termwise with
  int u sin(u) e^{-u^2/t} du = Im[-(t/2) e^{-u^2/t + iu} + (i t/2) e^{-t/4} (sqrt(pi t)/2)
  erf((u - i t/2) / sqrt t)]."""
  with mp.workdps(30):
    t = mp.mpf(t)

    def g(u):
      return mp.im(-(t / 2) * mp.exp(-u * u / t + 1j * u)
                   + 0.5j * t * mp.exp(-t / 4) * mp.sqrt(mp.pi * t) / 2
                   * mp.erf((u - 0.5j * t) / mp.sqrt(t)))

    kmax = int(mp.ceil(mp.sqrt(80 * t) / (2 * mp.pi))) + 2
    pref = 4 * mp.pi * (mp.pi * t) ** mp.mpf(-1.5) * mp.exp(t / 4)
    out = []
    for a in grid:
      a = mp.mpf(float(a))
      out.append(float(pref * mp.fsum(g(a + 2 * mp.pi * k) - g(2 * mp.pi * k)
                                      for k in range(-kmax, kmax + 1))))
    return np.array(out)


def test_sample_heat_kernel_ks_su2():
  M = SpecialUnitary(2)
  num = 100_000
  x = jnp.eye(2, dtype=C128)
  for t in (0.3, 2.0):
    y = M.sample_heat_kernel(jax.random.PRNGKey(int(10 * t)), x, jnp.asarray(np.full(num, t)))
    # eigen-angle a in [0, pi]: tr Y = 2 cos a
    d = np.arccos(np.clip(np.real(np.trace(np.asarray(y), axis1=-2, axis2=-1)) / 2, -1, 1))
    grid = np.linspace(0.02, PI, 120)
    cdf = _su2_cdf(t, grid)
    assert abs(cdf[-1] - 1) < 1e-12
    # the closed form matches quadrature of the S^3 density at one point
    dens = lambda a: mp.exp(mp_log_hk_su2_s3(a, t)) * 8 * mp.sqrt(2) * mp.pi * mp.sin(a) ** 2
    assert abs(float(mp.quad(dens, [0, 1.0])) - _su2_cdf(t, [1.0])[0]) < 1e-12
    emp = np.searchsorted(np.sort(d), grid, side="right") / num
    ks = np.max(np.abs(emp - cdf))
    assert ks < 1.95 / math.sqrt(num), (t, ks)              # alpha = 1e-3


def test_sample_heat_kernel_float32_and_shapes():
  M = SpecialUnitary(2)
  x = jnp.eye(2, dtype=C64)
  y = M.sample_heat_kernel(jax.random.PRNGKey(0), x, jnp.array([[1e-3, 0.5], [2.0, 10.0]],
                                                                    jnp.float32))
  assert y.shape == (2, 2, 2, 2) and y.dtype == C64
  assert np.all(np.asarray(M.belongs(y)))


def test_spec_and_check():
  M = from_spec("su(3)")
  assert isinstance(M, SpecialUnitary) and M.dim == 8 and M.shape == (3, 3)
  assert M.num_features == 18
  with pytest.raises(ValueError):
    M.check(jnp.ones((3, 3), C128))
  M.check(jnp.eye(3, dtype=C128))
  with pytest.raises(ValueError):
    SpecialUnitary(1)


def _np_min_angles(a):
  """Minimal-norm sum-zero representatives of SU(3) eigen-angles a (N, 3) in (-pi, pi], by
  brute force over the 27 shifts in {-1, 0, 1}^3 (numpy, vectorized)."""
  shifts = 2 * PI * np.array(list(itertools.product((-1, 0, 1), repeat=3)), float)
  h = a[:, None, :] + shifts[None]
  n2 = np.where(np.abs(h.sum(-1)) < 1e-6, np.sum(h * h, -1), np.inf)
  return h[np.arange(len(a)), np.argmin(n2, 1)]


def test_sample_heat_kernel_ks_su3():
  """KS test of the distance |theta|_min (norm of the minimal eigen-angle vector, monotone in
  d(x, Y)) of 1e5 exact draws against its CDF from log_heat_kernel by Weyl integration on a
  512^2 torus grid (the normalization test above shows the grid integrates p to 1e-9), at t
  in the images (0.3) and character (2.0) regimes."""
  M = SpecialUnitary(3)
  num, k = 100_000, 512
  x = jnp.asarray(np_haar(np.random.default_rng(77), 3, 1)[0])
  a = -PI + 2 * PI * (np.arange(k) + 0.5) / k
  a1, a2 = np.meshgrid(a, a, indexing="ij")
  th = _np_min_angles(np.stack([a1, a2, -a1 - a2], -1).reshape(-1, 3))
  r_grid = np.linalg.norm(th, axis=-1)
  d2 = np.prod([np.abs(np.exp(1j * th[:, i]) - np.exp(1j * th[:, j])) ** 2
                for i, j in ((0, 1), (0, 2), (1, 2))], axis=0)
  order = np.argsort(r_grid)
  for t in (0.3, 2.0):
    p = np.exp(np.asarray(M.log_heat_kernel_angles(jnp.asarray(th),
                                                   jnp.asarray(np.full(len(th), t)))))
    w = math.exp(M.log_volume()) / (6 * (2 * PI) ** 2) * p * d2 * (2 * PI / k) ** 2
    cdf = np.cumsum(w[order])
    assert abs(cdf[-1] - 1.0) < 1e-8, (t, cdf[-1])
    y = np.asarray(M.sample_heat_kernel(jax.random.PRNGKey(int(10 * t)), x,
                                        jnp.asarray(np.full(num, t))))
    rel = np.conj(np.swapaxes(np.asarray(x), -1, -2))[None] @ y
    r = np.sort(np.linalg.norm(_np_min_angles(np.angle(np.linalg.eigvals(rel))), axis=-1))
    # KS distance at the grid's radii (the reference CDF is a fine step function; measured
    # 0.003 here, and 0.013-0.024 against the CDF of t + 5%)
    emp = np.searchsorted(r, r_grid[order], side="right") / num
    ks = np.max(np.abs(emp - cdf))
    assert ks < 1.95 / math.sqrt(num), (t, ks)              # alpha = 1e-3
