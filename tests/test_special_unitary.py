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


T_GRID = [1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0, 1.49, 1.5, 2.0, 5.0, 20.0]


# ============================================================================ eigen-angles
@pytest.mark.parametrize("dtype", [C64, C128])
def test_eigen_angles_special_points(dtype):
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
  tol = 2e-5 if dtype == C64 else 1e-12
  for u, expect in cases:
    th = np.asarray(eigen_angles(jnp.asarray(u, dtype)))
    assert th.dtype == (np.float32 if dtype == C64 else np.float64)
    np.testing.assert_allclose(th, expect, atol=tol)
    assert abs(th.sum()) < tol


def test_eigen_angles_random_vs_numpy():
  rng = np.random.default_rng(1)
  for n in (2, 3, 4):
    u = np_haar(rng, n, 50)
    th = np.asarray(eigen_angles(jnp.asarray(u)))
    for i in range(len(u)):
      ref = minimal_angles_bruteforce(np.linalg.eigvals(u[i]))
      np.testing.assert_allclose(th[i], ref, atol=1e-11)
    assert np.all(np.diff(th, axis=-1) >= 0)


def test_eigen_angles_gradient_finite_at_identity():
  g = jax.grad(lambda s: jnp.sum(eigen_angles(jax.scipy.linalg.expm(
      s * jnp.asarray(su_basis(3)[0] + su_basis(3)[7]))) ** 2))
  assert np.isfinite(float(g(0.0)))
  assert np.isfinite(float(g(0.3)))


# ============================================================================ geometry
@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("n", [2, 3, 4])
def test_exp_log_dist(n, dtype):
  M = SpecialUnitary(n)
  tol = 3e-4 if dtype == C64 else 1e-11
  rng = np.random.default_rng(n)
  x = jnp.asarray(np_haar(rng, n, 16), dtype)
  y = jnp.asarray(np_haar(rng, n, 16), dtype)
  v = M.log(x, y)
  assert v.dtype == dtype
  a = np.asarray(jnp.conj(jnp.swapaxes(x, -1, -2)) @ v)
  np.testing.assert_allclose(a + np.conj(np.swapaxes(a, -1, -2)), 0, atol=tol)
  np.testing.assert_allclose(np.trace(a, axis1=-2, axis2=-1), 0, atol=tol)
  np.testing.assert_allclose(np.asarray(M.exp(x, v)), np.asarray(y), atol=tol)
  np.testing.assert_allclose(np.asarray(M.norm(x, v)), np.asarray(M.dist(x, y)), atol=tol)
  np.testing.assert_allclose(np.asarray(M.dist(x, y)), np.asarray(M.dist(y, x)), atol=tol)
  # distance against numpy eigenvalues
  ref = [np.linalg.norm(minimal_angles_bruteforce(np.linalg.eigvals(
      np.asarray(x[i], complex).conj().T @ np.asarray(y[i], complex)))) for i in range(16)]
  np.testing.assert_allclose(np.asarray(M.dist(x, y)), ref, atol=10 * tol)
  # exp of a random tangent vector lands on SU(n); log inverts it inside the injectivity radius
  w = M.random_normal_tangent(jax.random.PRNGKey(n), x)
  w = w * (1.0 / M.norm(x, w))[:, None, None].astype(dtype)
  z = M.exp(x, w)
  assert bool(jnp.all(M.belongs(z)))
  np.testing.assert_allclose(np.asarray(M.log(x, z)), np.asarray(w), atol=10 * tol)
  assert float(jnp.max(M._violation(M.exp(x, 40.0 * w)))) < (1e-5 if dtype == C64 else 1e-13)
  # the inner product is Re tr(X^H Y)
  u2 = M.random_normal_tangent(jax.random.PRNGKey(7), x)
  ref_in = np.real(np.einsum("bij,bij->b", np.conj(np.asarray(w)), np.asarray(u2)))
  np.testing.assert_allclose(np.asarray(M.inner(x, w, u2)), ref_in, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [C64, C128])
def test_cut_locus(dtype):
  tol = 1e-4 if dtype == C64 else 1e-12
  rng = np.random.default_rng(3)
  # SU(2): y = -x.  SU(3): y = x e^{2 pi i / 3} (angles (-4pi/3, 2pi/3, 2pi/3)).
  for n, c, d2 in [(2, -1.0, 2 * PI**2), (3, np.exp(2j * PI / 3), 24 * PI**2 / 9),
                   (4, -1.0, 4 * PI**2)]:
    M = SpecialUnitary(n)
    x = jnp.asarray(np_haar(rng, n, 4), dtype)
    y = (c * x).astype(dtype)
    v = M.log(x, y)
    assert float(jnp.min(M.norm(x, v))) > 1.0   # never a silent zero
    np.testing.assert_allclose(np.asarray(M.norm(x, v)), math.sqrt(d2), rtol=tol)
    np.testing.assert_allclose(np.asarray(M.dist(x, y)), math.sqrt(d2), rtol=tol)
    np.testing.assert_allclose(np.asarray(M.exp(x, v)), np.asarray(y), atol=10 * tol)
    np.testing.assert_array_equal(np.asarray(M.log(x, y)), np.asarray(v))  # deterministic
  # An eigenvalue -1 alone is not a cut point for n = 3: the log is unique and continuous.
  M = SpecialUnitary(3)
  u = np_from_angles(rng, [PI, 1.0, -PI - 1.0])
  eye = jnp.eye(3, dtype=dtype)
  v0 = M.log(eye, jnp.asarray(u, dtype))
  pert = np_from_angles(np.random.default_rng(9), [1e-7, 0, -1e-7])
  v1 = M.log(eye, jnp.asarray(u @ pert, dtype))
  np.testing.assert_allclose(np.asarray(v1), np.asarray(v0), atol=1e-3 if dtype == C64 else 1e-6)


@pytest.mark.parametrize("dtype", [C64, C128])
def test_proj_to_tangent(dtype):
  tol = 3e-5 if dtype == C64 else 1e-12
  rng = np.random.default_rng(4)
  for n in (2, 3, 4):
    M = SpecialUnitary(n)
    u = np_haar(rng, n, 8)
    uj = jnp.asarray(u, dtype)
    np.testing.assert_allclose(np.asarray(M.proj(uj)), u, atol=tol)
    np.testing.assert_allclose(np.asarray(M.proj(jnp.asarray(2.5 * u, dtype))), u, atol=tol)
    np.testing.assert_allclose(np.asarray(M.proj(jnp.asarray(np.exp(0.1j) * u, dtype))), u,
                               atol=tol)
    # near SU(n): proj(z) is a critical point of |z - P|^2 on SU(n) up to O(|noise|^2)
    noise = 1e-3 * (rng.normal(size=u.shape) + 1j * rng.normal(size=u.shape))
    z = u + noise
    pz = np.asarray(M.proj(jnp.asarray(z, dtype)), complex)
    grad = np.asarray(M.to_tangent(jnp.asarray(pz, dtype), jnp.asarray(z - pz, dtype)))
    assert np.max(np.abs(grad)) < (5e-5 if dtype == C64 else 1e-5)
    assert bool(jnp.all(M.belongs(jnp.asarray(pz, dtype))))
    # to_tangent: idempotent, tangent, orthogonal residual
    zz = jnp.asarray(rng.normal(size=u.shape) + 1j * rng.normal(size=u.shape), dtype)
    v = M.to_tangent(uj, zz)
    np.testing.assert_allclose(np.asarray(M.to_tangent(uj, v)), np.asarray(v), atol=tol)
    a = np.asarray(jnp.conj(jnp.swapaxes(uj, -1, -2)) @ v)
    np.testing.assert_allclose(a + np.conj(np.swapaxes(a, -1, -2)), 0, atol=tol)
    w = M.random_normal_tangent(jax.random.PRNGKey(1), uj)
    np.testing.assert_allclose(np.asarray(M.inner(uj, zz - v, w)), 0, atol=10 * tol)


def test_proj_gradient_finite():
  M = SpecialUnitary(3)
  f = jax.grad(lambda s: jnp.real(jnp.sum(M.proj(s * jnp.eye(3, dtype=C128) + 0.1 * s ** 2))))
  assert np.isfinite(float(f(1.0)))


@pytest.mark.parametrize("dtype", [C64, C128])
def test_transp(dtype):
  tol = 1e-4 if dtype == C64 else 1e-11
  rng = np.random.default_rng(5)
  for n in (2, 3):
    M = SpecialUnitary(n)
    x = jnp.asarray(np_haar(rng, n, 6), dtype)
    y = jnp.asarray(np_haar(rng, n, 6), dtype)
    k1, k2 = jax.random.split(jax.random.PRNGKey(n))
    u = M.random_normal_tangent(k1, x)
    w = M.random_normal_tangent(k2, x)
    pu, pw = M.transp(x, y, u), M.transp(x, y, w)
    np.testing.assert_allclose(np.asarray(M.inner(y, pu, pw)), np.asarray(M.inner(x, u, w)),
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(M.to_tangent(y, pu)), np.asarray(pu), atol=tol)
    np.testing.assert_allclose(np.asarray(M.transp(x, y, M.log(x, y))),
                               -np.asarray(M.log(y, x)), atol=10 * tol)
    np.testing.assert_allclose(np.asarray(M.transp(y, x, pu)), np.asarray(u), atol=10 * tol)


def test_transp_vs_projection_ladder():
  """Parallel transport of the induced metric = limit of successive orthogonal projections
  onto the tangent spaces along the geodesic (independent of the closed form)."""
  M = SpecialUnitary(3)
  rng = np.random.default_rng(6)
  x = jnp.asarray(np_haar(rng, 3, 1)[0])
  y = jnp.asarray(np_haar(rng, 3, 1)[0])
  u = M.random_normal_tangent(jax.random.PRNGKey(2), x)
  v = M.log(x, y)
  steps = 4000

  def body(k, carry):
    s = (k + 1.0) / steps
    return M.to_tangent(M.exp(x, s * v), carry)

  w = jax.jit(lambda u: jax.lax.fori_loop(0, steps, body, u))(u)
  w = w * (M.norm(x, u) / M.norm(y, w))
  err = float(M.norm(y, w - M.transp(x, y, u)) / M.norm(x, u))
  assert err < 2e-3


@pytest.mark.parametrize("n", [2, 3, 4])
def test_log_det_exp_vs_autodiff(n):
  M = SpecialUnitary(n)
  rng = np.random.default_rng(10 + n)
  basis = jnp.asarray(su_basis(n))
  x = jnp.asarray(np_haar(rng, n, 1)[0])
  for scale in (0.0, 0.5, 2.0, 4.0):
    c0 = rng.normal(size=n * n - 1)
    c0 = scale * c0 / np.linalg.norm(c0)

    def f(c):
      return M.exp(x, x @ jnp.einsum("k,kij->ij", c, basis))

    jac = jax.jacfwd(f)(jnp.asarray(c0))                   # (n, n, d) complex
    yv = f(jnp.asarray(c0))
    frame = yv[None] @ basis                               # (d, n, n) orthonormal frame at y
    jm = jnp.real(jnp.einsum("aij,ijb->ab", jnp.conj(frame), jac))
    ref = float(jnp.linalg.slogdet(jm)[1])
    got = float(M.log_det_exp(x, x @ jnp.einsum("k,kij->ij", jnp.asarray(c0), basis)))
    assert abs(got - ref) < 1e-9 * max(1.0, abs(ref)), (scale, got, ref)


def test_log_det_exp_f32_and_grad():
  M = SpecialUnitary(3)
  x = jnp.eye(3, dtype=C64)
  v = jnp.asarray(su_basis(3)[0] * 0.7 + su_basis(3)[7] * 0.2, C64)
  assert M.log_det_exp(x, v).dtype == jnp.float32
  g = jax.grad(lambda s: M.log_det_exp(x, s * v))(jnp.float32(0.0))
  assert np.isfinite(float(g))


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


@pytest.mark.parametrize("n", [2, 3, 4])
def test_haar_moments(n):
  M = SpecialUnitary(n)
  num = 100_000
  u = M.random_uniform(jax.random.PRNGKey(n), (num,))
  assert u.dtype == C128
  np.testing.assert_allclose(np.asarray(jnp.linalg.det(u)), 1.0, atol=1e-12)
  assert bool(jnp.all(M.belongs(u)))
  tr = np.asarray(jnp.trace(u, axis1=-2, axis2=-1))
  # E tr U = 0, E|tr U|^2 = 1, E|tr U|^4 = 2, and E (tr U)^n = 1 (0 on U(n): the det invariant)
  checks = [(tr, 0.0), (np.abs(tr) ** 2, 1.0), (np.abs(tr) ** 4, 2.0), (tr**n, 1.0)]
  for vals, ref in checks:
    se = np.std(vals) / math.sqrt(num)
    assert abs(np.mean(vals) - ref) < 5 * se + 1e-12, (n, np.mean(vals), ref)
  u32 = M.random_uniform(jax.random.PRNGKey(0), (4,), jnp.float32)
  assert u32.dtype == C64 and bool(jnp.all(M.belongs(u32)))


def test_random_normal_tangent_covariance():
  n = 3
  M = SpecialUnitary(n)
  num = 40_000
  x = jnp.broadcast_to(jnp.asarray(np_haar(np.random.default_rng(2), n, 1)[0]), (num, n, n))
  v = M.random_normal_tangent(jax.random.PRNGKey(3), x)
  a = jnp.conj(jnp.swapaxes(x, -1, -2)) @ v
  basis = jnp.asarray(su_basis(n))
  c = np.asarray(jnp.real(jnp.einsum("kij,bij->bk", jnp.conj(basis), a)))
  cov = c.T @ c / num
  # the coordinates in an orthonormal basis capture all of v (v is tangent)
  np.testing.assert_allclose(np.sum(c**2, axis=1), np.asarray(M.sq_norm(x, v)), rtol=1e-10)
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


def _batch(hk_refs, n):
  keys = [k for k, ref in hk_refs.items() if k[0] == n and ref > -500]
  th = np.array([k[1] for k in keys])
  t = np.array([k[2] for k in keys])
  ref = np.array([hk_refs[k] for k in keys])
  return th, t, ref


@pytest.mark.parametrize("n", [2, 3, 4])
def test_log_heat_kernel_f64(n, hk_refs):
  M = SpecialUnitary(n)
  th, t, ref = _batch(hk_refs, n)
  got = np.asarray(M.log_heat_kernel_angles(jnp.asarray(th), jnp.asarray(t)))
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
  th, t, ref = _batch(hk_refs, n)
  got = M.log_heat_kernel_angles(jnp.asarray(th, jnp.float32), jnp.asarray(t, jnp.float32))
  assert got.dtype == jnp.float32
  err = np.abs(np.asarray(got, float) - ref) / np.maximum(1.0, np.abs(ref))
  print(f"SU({n}) float32 worst relative error {err.max():.2e}")
  assert np.all(err < 1e-3), [(th[i], t[i], got[i], ref[i]) for i in np.nonzero(err >= 1e-3)[0]]


def test_log_heat_kernel_matrices_random_f64():
  """Full pipeline (eigen-angles of x^H y) at random and near-wall points."""
  rng = np.random.default_rng(11)
  for n in (2, 3):
    M = SpecialUnitary(n)
    x = np_haar(rng, n, 6)
    y = np_haar(rng, n, 6)
    y[0] = x[0]                                              # y = x
    y[1] = x[1] @ np_from_angles(rng, [1.0, 1.0 + 1e-10, -2.0 - 1e-10][:n] if n == 3
                                 else [PI - 1e-10, -PI + 1e-10])
    t = np.array([1e-3, 0.05, 0.4, 1.2, 2.0, 8.0])
    got = np.asarray(M.log_heat_kernel(jnp.asarray(x), jnp.asarray(y), jnp.asarray(t)))
    for i in range(6):
      th = minimal_angles_bruteforce(np.linalg.eigvals(x[i].conj().T @ y[i]))
      ref = float(mp_log_hk(list(th), t[i]))
      assert rel_err(got[i], ref) < 1e-8, (n, i, got[i], ref)


@pytest.mark.parametrize("dtype", [C64, C128])
def test_heat_kernel_finite_everywhere(dtype):
  ts = np.array([1e-8, 1e-4, 1.0, 1.5, 1e4, 1e8])
  for n in (2, 3, 4):
    M = SpecialUnitary(n)
    eye = jnp.eye(n, dtype=dtype)
    pts = [np.eye(n), np.exp(2j * PI / n) * np.eye(n), -np.eye(n),
           np_from_angles(np.random.default_rng(0), _special_angles()[n][-1])]
    ys = jnp.asarray(np.stack(pts)[:, None].repeat(len(ts), 1), dtype)     # (P, T, n, n)
    tt = jnp.asarray(np.broadcast_to(ts, (len(pts), len(ts))), ys.real.dtype)
    lp = M.log_heat_kernel(eye, ys, tt)
    assert bool(jnp.all(jnp.isfinite(lp))), (n, lp)
    np.testing.assert_allclose(np.asarray(lp[:, -1]), -M.log_volume(), atol=1e-5)
    if n < 4:
      s = M.heat_kernel_score(eye, ys, tt)
      assert bool(jnp.all(jnp.isfinite(s))), n


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
  x = np_haar(rng, n, 1)[0]
  angs = {2: [(1.0, -1.0), (PI - 0.05, -PI + 0.05)], 3: [(0.4, 0.1, -0.5), (2.0, 1.9, -3.9)]}[n]
  for th, t in zip(angs, (0.3, 2.0)):
    y = x @ np_from_angles(rng, th)
    s = M.heat_kernel_score(jnp.asarray(x), jnp.asarray(y), t)
    s_base = super(SpecialUnitary, M).heat_kernel_score(jnp.asarray(x), jnp.asarray(y), t)
    got = np.real(np.einsum("kij,ij->k", np.conj(y[None] @ basis), np.asarray(s)))
    got_base = np.real(np.einsum("kij,ij->k", np.conj(y[None] @ basis), np.asarray(s_base)))
    ref = np.array([_mp_score_directional(x, y, basis[k], t) for k in range(len(basis))])
    assert np.linalg.norm(got - ref) < 1e-5 * np.linalg.norm(ref), (got, ref)
    # base-class autodiff (JAX conj convention + Euclidean-to-Riemannian projection) agrees
    assert np.linalg.norm(got_base - ref) < 1e-5 * np.linalg.norm(ref)
    np.testing.assert_allclose(np.asarray(M.to_tangent(jnp.asarray(y), s)), np.asarray(s),
                               atol=1e-10)


def test_heat_kernel_score_symmetric_points():
  # at y = x and at the SU(2) cut point the score vanishes by symmetry
  for n in (2, 3):
    M = SpecialUnitary(n)
    eye = jnp.eye(n, dtype=C128)
    ys = jnp.stack([eye, (-1.0 if n == 2 else np.exp(2j * PI / 3)) * eye])
    for t in (1e-3, 0.5, 3.0):
      s = M.heat_kernel_score(eye, ys, t)
      assert float(jnp.max(jnp.abs(s))) < 1e-6


def test_heat_kernel_normalization_su2():
  M = SpecialUnitary(2)
  f = jax.jit(M.log_heat_kernel_angles)
  for t in (1e-3, 0.1, 1.0, 5.0):
    w = min(PI, 15 * math.sqrt(t))
    tot = 0.0
    for lo, hi in ((0.0, w), (w, PI)) if w < PI else ((0.0, PI),):
      xg, wg = roots_legendre(200)
      a = 0.5 * (hi - lo) * xg + 0.5 * (hi + lo)
      lp = np.asarray(f(jnp.stack([jnp.asarray(a), -jnp.asarray(a)], -1), t))
      # Weyl integration on SU(2) = S^3(sqrt 2): dvol = 8 sqrt(2) pi sin^2 a da
      tot += 0.5 * (hi - lo) * np.sum(wg * np.exp(lp) * 8 * math.sqrt(2) * PI * np.sin(a) ** 2)
    assert abs(tot - 1.0) < 1e-10, (t, tot)


def test_heat_kernel_normalization_su3():
  """Weyl integration: int p = vol / (3! (2 pi)^2) int_T p |Delta|^2 (trapezoid on the torus,
  spectrally accurate for smooth periodic integrands)."""
  M = SpecialUnitary(3)
  k = 128
  a = -PI + 2 * PI * np.arange(k) / k
  a1, a2 = np.meshgrid(a, a, indexing="ij")
  th = np.stack([a1, a2, -a1 - a2], -1).reshape(-1, 3)
  th_min = np.asarray(eigen_angles(jnp.asarray(
      np.exp(1j * th)[:, :, None] * np.eye(3)[None])))
  d2 = np.prod([np.abs(np.exp(1j * th[:, i]) - np.exp(1j * th[:, j])) ** 2
                for i, j in ((0, 1), (0, 2), (1, 2))], axis=0)
  for t in (0.5, 2.0):
    p = np.exp(np.asarray(M.log_heat_kernel_angles(jnp.asarray(th_min), t)))
    tot = math.exp(M.log_volume()) / (6 * (2 * PI) ** 2) * np.sum(p * d2) * (2 * PI / k) ** 2
    assert abs(tot - 1.0) < 1e-9, (t, tot)


def test_heat_kernel_jit_vmap_grad_broadcast():
  M = SpecialUnitary(3)
  rng = np.random.default_rng(30)
  x = jnp.asarray(np_haar(rng, 3, 4))
  y = jnp.asarray(np_haar(rng, 3, 4))
  t = jnp.array([0.1, 0.5, 2.0, 3.0])
  a = M.log_heat_kernel(x, y, t)
  b = jax.jit(M.log_heat_kernel)(x, y, t)
  c = jax.vmap(M.log_heat_kernel)(x, y, t)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
  np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-12)
  # broadcasting: one x against a batch, t against the batch
  d = M.log_heat_kernel(x[0], y, 0.5)
  assert d.shape == (4,)
  e = M.log_heat_kernel(x[:1], y[:1], jnp.array([0.1, 0.5]))
  assert e.shape == (2,)
  g = jax.grad(lambda yy: jnp.sum(M.log_heat_kernel(x, yy, t)))(y)
  assert bool(jnp.all(jnp.isfinite(g)))
  g0 = jax.grad(lambda yy: jnp.sum(M.log_heat_kernel(x, yy, 0.3)))(x)   # y = x
  assert bool(jnp.all(jnp.isfinite(g0)))


# ============================================================================ sampler
@pytest.mark.parametrize("n", [2, 3])
def test_sample_heat_kernel_moments(n):
  M = SpecialUnitary(n)
  x = jnp.asarray(np_haar(np.random.default_rng(40 + n), n, 1)[0])
  num = 100_000
  draw = jax.jit(lambda k, t: M.sample_heat_kernel(k, x, t))
  for i, t in enumerate((1e-3, 0.1, 1.0, 5.0)):
    y = draw(jax.random.PRNGKey(i), jnp.full((num,), t))
    if i == 0:
      assert bool(jnp.all(M.belongs(y)))
    v = np.asarray(jnp.real(jnp.einsum("ij,bij->b", jnp.conj(x), y)))
    ref = n * math.exp(-(n * n - 1) * t / (2 * n))
    se = np.std(v) / math.sqrt(num)
    assert abs(np.mean(v) - ref) < 5 * se, (n, t, np.mean(v), ref, se)


def _su2_cdf(t, grid):
  with mp.workdps(30):
    dens = lambda a: mp.exp(mp_log_hk_su2_s3(a, t)) * 8 * mp.sqrt(2) * mp.pi * mp.sin(a) ** 2
    out, acc, prev = [], mp.mpf(0), mp.mpf(0)
    for g in grid:
      acc += mp.quad(dens, [prev, g])
      prev = g
      out.append(float(acc))
    return np.array(out)


def test_sample_heat_kernel_ks_su2():
  M = SpecialUnitary(2)
  num = 100_000
  x = jnp.eye(2, dtype=C128)
  for t in (0.3, 2.0):
    y = M.sample_heat_kernel(jax.random.PRNGKey(int(10 * t)), x, jnp.full((num,), t))
    d = np.asarray(M.dist(x, y)) / math.sqrt(2)             # eigen-angle in [0, pi]
    grid = np.linspace(0.02, PI, 120)
    cdf = _su2_cdf(t, grid)
    assert abs(cdf[-1] - 1) < 1e-12
    emp = np.searchsorted(np.sort(d), grid, side="right") / num
    ks = np.max(np.abs(emp - cdf))
    assert ks < 1.95 / math.sqrt(num), (t, ks)              # alpha = 1e-3


def test_sample_heat_kernel_float32_and_shapes():
  M = SpecialUnitary(3)
  x = jnp.eye(3, dtype=C64)
  y = M.sample_heat_kernel(jax.random.PRNGKey(0), x, jnp.array([[1e-3, 0.5], [2.0, 10.0]],
                                                                    jnp.float32))
  assert y.shape == (2, 2, 3, 3) and y.dtype == C64
  assert bool(jnp.all(M.belongs(y)))


def test_spec_and_check():
  M = from_spec("su(3)")
  assert isinstance(M, SpecialUnitary) and M.dim == 8 and M.shape == (3, 3)
  assert M.num_features == 18
  with pytest.raises(ValueError):
    M.check(jnp.ones((3, 3), C128))
  M.check(jnp.eye(3, dtype=C128))
  with pytest.raises(ValueError):
    SpecialUnitary(1)
