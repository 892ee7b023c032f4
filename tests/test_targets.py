"""Tests of geogen.targets: registry and errors, exact log Z against independent quadrature /
Monte Carlo, exact samplers against their densities, lattice references (character expansion)
against brute numeric integration.

References written here: scipy / mpmath quadrature, scipy.stats densities, the Weyl
integration formula on a periodic grid, Haar link configurations drawn with numpy and an
explicit site-by-site plaquette loop.  Monte Carlo checks are at 5 standard errors.
"""
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from scipy import integrate, special, stats

from geogen import targets
from geogen.targets import characters as C
from manifolds import from_spec

ENABLE_X64 = True
KEY = jax.random.PRNGKey(0)


def _within(est, ref, se, k=5.0):
  assert abs(est - ref) <= k * se + 1e-12, f"{est} vs {ref}: {abs(est - ref) / se:.2f} s.e."


def _mean_se(v):
  v = np.asarray(v, np.float64)
  return v.mean(), v.std(ddof=1) / math.sqrt(v.size)


# ============================================================================ registry / errors
def test_names_and_spec_grammar():
  assert {"gmm25", "funnel", "manywell", "vmf_mixture_s2", "vmf_mixture_s15", "lattice_u1",
          "lattice_su2", "lattice_su3"} <= set(targets.names())
  assert targets.parse_spec("lattice_u1(L=4, beta=1.5)") == ("lattice_u1", {"L": 4.0, "beta": 1.5})
  assert targets.parse_spec("gmm25") == ("gmm25", {})
  assert targets.parse_spec("funnel(sigma=1e-1)") == ("funnel", {"sigma": 0.1})


@pytest.mark.parametrize("spec,manifold,match", [
    ("nope", "euclidean(2)", "unknown target 'nope'.*gmm25.*lattice_su3"),
    ("gmm25", "euclidean(3)", "euclidean\\(2\\)"),
    ("gmm25", "sphere(2)", "euclidean\\(2\\)"),
    ("funnel", "euclidean(5)", "funnel\\(d=5\\)"),
    ("funnel(dd=5)", "euclidean(10)", "no parameter.*'dd'.*valid"),
    ("funnel(d=)", "euclidean(10)", "malformed parameter"),
    ("funnel(d=10", "euclidean(10)", "malformed target spec"),
    ("manywell(d=5)", "euclidean(5)", "even"),
    ("vmf_mixture_s2", "sphere(3)", "sphere\\(2\\)"),
    ("lattice_su2", "su(3)^8", "su\\(2\\)\\^\\(2L\\^2\\)"),
    ("lattice_su2", "su(2)^6", "not 2 L\\^2"),
    ("lattice_u1(L=3)", "torus(1)^8", "L = 2"),
    ("lattice_u1(beta=0)", "torus(1)^8", "beta must be > 0"),
    ("lattice_u1(L=1.5)", "torus(1)^2", "integer"),
    ("no_such_module_xyz:f", "euclidean(2)", "cannot import module 'no_such_module_xyz'"),
    ("user_target:missing", "euclidean(2)", "no callable 'missing'"),
    ("user_target:NOT_CALLABLE", "euclidean(2)", "no callable"),
    ("user_target:wrong_shape", "euclidean(2)", "\\(B,\\) log-densities"),
    ("user_target:raises", "euclidean(2)", "user code failed"),
    (":f", "euclidean(2)", "module:function"),
])
def test_clear_errors(spec, manifold, match):
  with pytest.raises(ValueError, match=match):
    targets.get_target(spec, from_spec(manifold))


def test_user_module_function():
  m = from_spec("euclidean(3)")
  t = targets.get_target("user_target:log_density", m)
  assert t.log_z is None and t.sample is None and t.observables is None
  assert t.exact_observables == {}
  x = jax.random.normal(KEY, (5, 3))
  np.testing.assert_allclose(t.log_prob(x), -0.5 * np.sum(np.asarray(x) ** 2, -1), rtol=1e-12)
  np.testing.assert_allclose(t.score(x), -np.asarray(x), rtol=1e-12)   # autodiff default
  t2 = targets.get_target("user_target:log_density", "euclidean(3)")   # spec string accepted
  assert t2.manifold == m


# ============================================================================ Euclidean suite
def test_gmm25_density_normalization_and_sampler():
  t = targets.get_target("gmm25", from_spec("euclidean(2)"))
  assert t.log_z == 0.0
  rng = np.random.default_rng(0)
  x = rng.uniform(-14, 14, (50, 2))
  means = [(a, b) for a in (-10, -5, 0, 5, 10) for b in (-10, -5, 0, 5, 10)]
  ref = special.logsumexp([stats.multivariate_normal(m, 0.3 * np.eye(2)).logpdf(x)
                           for m in means], axis=0) - math.log(25)
  np.testing.assert_allclose(t.log_prob(jnp.asarray(x)), ref, rtol=1e-12)
  g = np.linspace(-16, 16, 641)                      # h = 0.05 << sigma = 0.55
  xx, yy = np.meshgrid(g, g, indexing="ij")
  p = np.exp(np.asarray(t.log_prob(jnp.stack([xx.ravel(), yy.ravel()], -1))))
  assert p.sum() * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=1e-9)
  s = np.asarray(t.sample(KEY, 20_000))
  cdf = lambda v: np.mean([stats.norm.cdf(v, m, math.sqrt(0.3)) for m in (-10, -5, 0, 5, 10)], 0)
  assert stats.kstest(s[:, 0], cdf).pvalue > 1e-3
  assert stats.kstest(s[:, 1], cdf).pvalue > 1e-3
  obs = t.observables(jnp.asarray(s))
  for k, v in t.exact_observables.items():
    m, se = _mean_se(obs[k])
    _within(m, v, se)
  assert t.exact_observables["sq_norm"] == pytest.approx(2 * (50.0 + 0.3))


def test_funnel_density_and_sampler():
  t = targets.get_target("funnel", from_spec("euclidean(10)"))
  assert t.log_z == 0.0
  rng = np.random.default_rng(1)
  x = rng.standard_normal((40, 10)) * np.r_[3.0, np.ones(9)]
  ref = stats.norm.logpdf(x[:, 0], 0, 3) + np.sum(
      stats.norm.logpdf(x[:, 1:], 0, np.exp(x[:, :1] / 2)), -1)
  np.testing.assert_allclose(t.log_prob(jnp.asarray(x)), ref, rtol=1e-12)
  s = np.asarray(t.sample(KEY, 20_000))
  assert stats.kstest(s[:, 0], stats.norm(0, 3).cdf).pvalue > 1e-3
  assert stats.kstest((s[:, 1:] * np.exp(-s[:, :1] / 2)).ravel()[:50_000], "norm").pvalue > 1e-3
  assert t.exact_observables["x1_sq"] == pytest.approx(math.exp(4.5))
  t2 = targets.get_target("funnel(d=3, sigma=1)", from_spec("euclidean(3)"))
  assert t2.sample(KEY, 7).shape == (7, 3)


def _well_reference():
  f = lambda x: math.exp(-x**4 + 6 * x**2 + 0.5 * x)
  z = integrate.quad(f, -8, 8, points=[-1.7, 0, 1.7], epsabs=0, epsrel=1e-13, limit=200)[0]
  m1 = integrate.quad(lambda x: x * f(x), -8, 8, points=[-1.7, 0, 1.7], epsrel=1e-13, limit=200)[0]
  pos = integrate.quad(f, 0, 8, points=[1.7], epsrel=1e-13, limit=200)[0]
  return z, m1 / z, pos / z


def test_manywell_log_z_against_quadrature():
  t = targets.get_target("manywell", from_spec("euclidean(32)"))
  z, m1, pos = _well_reference()
  assert z == pytest.approx(11784.50927, rel=1e-9)       # the paper's constant
  assert t.log_z == pytest.approx(16 * (math.log(z) + 0.5 * math.log(2 * math.pi)), rel=1e-12)
  assert t.exact_observables["x1_mean"] == pytest.approx(m1, rel=1e-10)
  assert t.exact_observables["x1_pos_frac"] == pytest.approx(pos, rel=1e-10)
  rng = np.random.default_rng(2)
  x = rng.standard_normal((10, 32)) * 2
  a, b = x[:, 0::2], x[:, 1::2]
  ref = np.sum(-a**4 + 6 * a**2 + 0.5 * a - 0.5 * b**2, -1)
  np.testing.assert_allclose(t.log_prob(jnp.asarray(x)), ref, rtol=1e-12)


def test_manywell_sampler_ks_and_moments():
  t = targets.get_target("manywell(d=4)", from_spec("euclidean(4)"))
  s = np.asarray(t.sample(KEY, 20_000))
  assert s.shape == (20_000, 4)
  grid = np.linspace(-4, 4, 4001)
  dens = np.exp(-grid**4 + 6 * grid**2 + 0.5 * grid)
  cdf_g = integrate.cumulative_trapezoid(dens, grid, initial=0)
  cdf_g /= cdf_g[-1]
  cdf = lambda v: np.interp(v, grid, cdf_g)
  assert stats.kstest(s[:, 0::2].ravel(), cdf).pvalue > 1e-3
  assert stats.kstest(s[:, 1::2].ravel(), "norm").pvalue > 1e-3
  obs = t.observables(jnp.asarray(s))
  for k, v in t.exact_observables.items():
    m, se = _mean_se(obs[k])
    _within(m, v, se)


# ============================================================================ vMF mixtures
def _s2_grid(num=300):
  t, wt = np.polynomial.legendre.leggauss(num)
  phi = 2 * np.pi * np.arange(num) / num
  tt, pp = np.meshgrid(t, phi, indexing="ij")
  s = np.sqrt(1 - tt**2)
  x = np.stack([s * np.cos(pp), s * np.sin(pp), tt], -1).reshape(-1, 3)
  w = (wt[:, None] * np.full(num, 2 * np.pi / num)[None, :]).reshape(-1)
  return x, w


def test_vmf_s2_log_z_by_quadrature_and_sampler():
  t = targets.get_target("vmf_mixture_s2", from_spec("sphere(2)"))
  x, w = _s2_grid()
  lp = np.asarray(t.log_prob(jnp.asarray(x)), np.float64)
  assert math.log(np.sum(w * np.exp(lp))) == pytest.approx(t.log_z, abs=1e-10)
  s = t.sample(KEY, 20_000)
  assert s.shape == (20_000, 3)
  obs = t.observables(s)
  assert set(obs) == set(t.exact_observables) and len(obs) == 4
  for k, v in t.exact_observables.items():
    # exact expectation also by quadrature (independent of the mean-resultant formula)
    assert v == pytest.approx(np.sum(w * np.exp(lp - t.log_z) * np.asarray(
        t.observables(jnp.asarray(x))[k])), abs=1e-9)
    m, se = _mean_se(obs[k])
    _within(m, v, se)


def test_vmf_s15_log_z_single_component_mpmath():
  n, kappa = 15, 50.0
  t = targets.get_target(f"vmf_mixture(components=1, kappa={kappa})", from_spec("sphere(15)"))
  with mpmath.workdps(30):
    vol_s14 = 2 * mpmath.pi ** (mpmath.mpf(n) / 2) / mpmath.gamma(mpmath.mpf(n) / 2)
    integral = mpmath.quad(lambda s: (1 - s * s) ** (mpmath.mpf(n - 2) / 2)
                           * mpmath.exp(kappa * (s - 1)), [-1, 0.9, 1])
    ref = float(mpmath.log(vol_s14 * integral))
  assert t.log_z == pytest.approx(ref, rel=1e-11)
  t4 = targets.get_target("vmf_mixture_s15", from_spec("sphere(15)"))
  s = t4.sample(KEY, 5_000)
  # log_prob - log_z is the normalized mixture density of geogen.data.synthetic
  # (whose normalization tests/test_synthetic.py checks independently).
  from geogen.data import synthetic
  import ml_collections
  cfg = ml_collections.ConfigDict(dict(num_components=4, concentration=50.0, seed=0))
  dist = synthetic.make("synthetic/vmf_mixture", from_spec("sphere(15)"), cfg)
  np.testing.assert_allclose(t4.log_prob(s) - t4.log_z, dist.log_prob(s), rtol=1e-11)
  obs = t4.observables(s)
  for k, v in t4.exact_observables.items():
    m, se = _mean_se(obs[k])
    _within(m, v, se)


# ============================================================================ lattice: references
def _haar_np(rng, shape, n):
  """Haar U(1) (n = 1) or SU(n), written here: QR of Ginibre, phase and det fixes."""
  if n == 1:
    return np.exp(1j * rng.uniform(-np.pi, np.pi, shape))[..., None, None]
  z = (rng.standard_normal(shape + (n, n)) + 1j * rng.standard_normal(shape + (n, n))) / 2**0.5
  q, r = np.linalg.qr(z)
  d = np.diagonal(r, axis1=-2, axis2=-1)
  q = q * (d / np.abs(d))[..., None, :]
  det = np.linalg.det(q)
  q[..., :, 0] *= np.conj(det)[..., None]
  return q


def _plaquettes_np(links, L):
  """Re tr U_p / N by an explicit site loop.  links: (B, 2 L^2, N, N) -> (B, L, L)."""
  n = links.shape[-1]
  u = lambda mu, x, y: links[:, mu * L * L + (x % L) * L + (y % L)]
  dag = lambda a: np.conj(np.swapaxes(a, -1, -2))
  out = np.empty((links.shape[0], L, L))
  for x in range(L):
    for y in range(L):
      p = u(0, x, y) @ u(1, x + 1, y) @ dag(u(0, x, y + 1)) @ dag(u(1, x, y))
      out[:, x, y] = np.real(np.trace(p, axis1=-2, axis2=-1)) / n
  return out


def _to_points(links, group, manifold):
  if group == "u1":
    return jnp.asarray(np.angle(links[..., 0, 0]).reshape((-1,) + manifold.shape))
  return jnp.asarray(links)


def test_su2_and_su3_character_coefficients_by_weyl_integration():
  for beta in (0.7, 2.0, 5.0):
    ir = C.su2_irreps(beta)
    for n, lc in list(zip(ir.labels, ir.log_c))[:6]:
      f = integrate.quad(lambda t: (2 / np.pi) * np.exp(beta * np.cos(t)) * np.sin(n * t)
                         * np.sin(t), 0, np.pi, epsrel=1e-13)[0]
      assert lc + beta == pytest.approx(math.log(f / n), rel=1e-10, abs=1e-11)
    gen = C.sun_irreps(2, beta)          # the determinant formula also covers SU(2)
    np.testing.assert_allclose(gen.log_c[:8], ir.log_c[:8], rtol=1e-11, atol=1e-12)
  # SU(3): F = int exp((beta/3) Re tr U) conj(chi) dU over the torus (Weyl), periodic grid.
  m = 96
  th = 2 * np.pi * np.arange(m) / m
  a, b = np.meshgrid(th, th, indexing="ij")
  z = np.exp(1j * np.stack([a, b, -a - b], -1))
  vd = np.prod([z[..., j] - z[..., k] for j in range(3) for k in range(j + 1, 3)], axis=0)
  for beta in (1.0, 4.5):
    ir = C.sun_irreps(3, beta)
    f = np.exp(beta / 3 * np.real(z.sum(-1)))
    for lam, lc, d in list(zip(ir.labels, ir.log_c, ir.dims))[:10]:
      l = (lam[0], lam[1], 0)
      num = np.stack([np.stack([z[..., k] ** (l[j] + 2 - j) for k in range(3)], -1)
                      for j in range(3)], -2)
      val = np.real(np.mean(vd * np.conj(np.linalg.det(num)) * f)) / 6
      assert d == (lam[0] - lam[1] + 1) * (lam[1] + 1) * (lam[0] + 2) / 2
      assert lc + beta == pytest.approx(math.log(val / d), rel=1e-10, abs=1e-11)


def test_su3_one_plaquette_partition_matches_synthetic_series():
  from geogen.data.synthetic import su_log_partition
  for beta in (1.0, 6.0):
    ref = su_log_partition(3, beta / 3)[0]
    assert C.sun_irreps(3, beta).log_c[0] + beta == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("group,beta", [("u1", 1.3), ("su2", 2.1), ("su3", 3.3)])
def test_plaquette_is_derivative_of_log_z(group, beta):
  for L in (1, 3):
    h = 1e-5
    d = (C.lattice_reference(group, L, beta + h).log_z_haar
         - C.lattice_reference(group, L, beta - h).log_z_haar) / (2 * h * L * L)
    assert C.lattice_reference(group, L, beta).plaquette == pytest.approx(d, rel=1e-8)


def test_u1_references_exact_small_lattices():
  beta = 1.0
  # L = 1: the plaquette is U0 U1 U0^* U1^* = 1, so Z_Haar = e^beta, <P> = 1, Q = 0.
  r1 = C.lattice_reference("u1", 1, beta)
  assert r1.log_z_haar == pytest.approx(beta, rel=1e-13)
  assert r1.plaquette == pytest.approx(1.0, rel=1e-13) and r1.q2 == 0.0
  assert r1.log_z_volume == pytest.approx(beta + 2 * math.log(2 * math.pi), rel=1e-13)
  # L = 2: the 4 plaquette angles are uniform on {sum = 0 mod 2 pi}: 3-D periodic
  # trapezoid (exact for these trigonometric integrands).
  m = 48
  g = 2 * np.pi * np.arange(m) / m
  p = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
  p = np.concatenate([p, -p.sum(-1, keepdims=True)], -1)
  w = np.exp(beta * np.cos(p).sum(-1))
  r2 = C.lattice_reference("u1", 2, beta)
  assert r2.log_z_haar == pytest.approx(math.log(w.mean()), rel=1e-12)
  assert r2.plaquette == pytest.approx(np.sum(w * np.cos(p).mean(-1)) / w.sum(), rel=1e-12)


@pytest.mark.parametrize("L", [2, 3])
def test_u1_q2_and_plaquette_by_haar_monte_carlo(L):
  beta = 1.0
  man = from_spec(f"torus(1)^{2 * L * L}")
  t = targets.get_target("lattice_u1(beta=1.0)", man)
  rng = np.random.default_rng(L)
  th = rng.uniform(-np.pi, np.pi, (200_000, 2, L, L))
  # plaquette angles and Q written here, site by site
  tp = np.empty((th.shape[0], L, L))
  for x in range(L):
    for y in range(L):
      tp[:, x, y] = (th[:, 0, x, y] + th[:, 1, (x + 1) % L, y] - th[:, 0, x, (y + 1) % L]
                     - th[:, 1, x, y])
  lw = beta * np.cos(tp).sum((1, 2))
  pts = jnp.asarray(th.reshape(-1, 2 * L * L, 1))
  np.testing.assert_allclose(t.log_prob(pts[:100]), lw[:100], rtol=1e-11, atol=1e-11)
  w = np.exp(lw - lw.max())
  q = np.round(np.sum(np.mod(tp + np.pi, 2 * np.pi) - np.pi, (1, 2)) / (2 * np.pi))
  obs = t.observables(pts[:100])
  np.testing.assert_array_equal(np.asarray(obs["Q"]), q[:100])
  zhat = w.mean() * math.exp(lw.max())
  _within(math.log(zhat), t.log_z - 2 * L * L * math.log(2 * math.pi), w.std() / w.mean()
          / math.sqrt(w.size))
  for name, f in (("plaquette", np.cos(tp).mean((1, 2))), ("Q2", q * q)):
    est = np.sum(w * f) / w.sum()
    se = math.sqrt(np.sum(w**2 * (f - est) ** 2)) / w.sum()
    _within(est, t.exact_observables[name], se)


@pytest.mark.parametrize("group,L,beta", [("su2", 1, 2.0), ("su2", 2, 2.0), ("su3", 1, 3.0),
                                          ("su3", 2, 3.0)])
def test_su_references_by_haar_monte_carlo(group, L, beta):
  n = int(group[2:])
  man = from_spec(f"su({n})^{2 * L * L}")
  t = targets.get_target(f"lattice_{group}(beta={beta})", man)
  rng = np.random.default_rng(10 * n + L)
  num = 100_000 if L == 1 else 60_000
  links = _haar_np(rng, (num, 2 * L * L), n)
  pl = _plaquettes_np(links, L)
  lw = beta * pl.sum((1, 2))
  np.testing.assert_allclose(t.log_prob(jnp.asarray(links[:50])), lw[:50], rtol=1e-11, atol=1e-11)
  np.testing.assert_allclose(t.observables(jnp.asarray(links[:50]))["plaquette"],
                             pl[:50].mean((1, 2)), rtol=1e-11, atol=1e-12)
  w = np.exp(lw)
  log_vol = math.log(math.sqrt(n) * (2 * math.pi) ** ((n * n + n - 2) / 2)
                     / math.prod(math.factorial(k) for k in range(1, n)))
  _within(math.log(w.mean()), t.log_z - 2 * L * L * log_vol, w.std() / w.mean() / math.sqrt(num))
  f = pl.mean((1, 2))
  est = np.sum(w * f) / w.sum()
  _within(est, t.exact_observables["plaquette"], math.sqrt(np.sum(w**2 * (f - est) ** 2)) / w.sum())


# ============================================================================ lattice: samplers
def _gauge_transform_np(rng, links, L):
  n = links.shape[-1]
  g = _haar_np(rng, (links.shape[0], L, L), n)
  out = links.copy()
  dag = lambda a: np.conj(np.swapaxes(a, -1, -2))
  for x in range(L):
    for y in range(L):
      out[:, x * L + y] = g[:, x, y] @ links[:, x * L + y] @ dag(g[:, (x + 1) % L, y])
      out[:, L * L + x * L + y] = (g[:, x, y] @ links[:, L * L + x * L + y]
                                   @ dag(g[:, x, (y + 1) % L]))
  return out


@pytest.mark.parametrize("spec,manifold,num", [
    ("lattice_u1(beta=1.0)", "torus(1)^18", 6000),
    ("lattice_u1(beta=2.0)", "torus(8)", 4000),
    ("lattice_su2(beta=2.0)", "su(2)^8", 4000),
    ("lattice_su3(beta=3.0)", "su(3)^8", 1500),
])
def test_lattice_exact_sampler_against_references(spec, manifold, num):
  man = from_spec(manifold)
  t = targets.get_target(spec, man)
  x = t.sample(KEY, num)
  assert x.shape == (num,) + man.shape and x.dtype == man.dtype
  man.check(x)
  obs = t.observables(x)
  for k, v in t.exact_observables.items():
    m, se = _mean_se(obs[k])
    _within(m, v, max(se, 1e-12))
  if "Q" in obs:
    assert np.all(np.asarray(obs["Q"]) == np.round(np.asarray(obs["Q"])))


def test_lattice_action_gauge_invariant_and_score_tangent():
  rng = np.random.default_rng(5)
  L = 3
  man = from_spec(f"su(2)^{2 * L * L}")
  t = targets.get_target("lattice_su2(beta=2.0)", man)
  links = _haar_np(rng, (4, 2 * L * L), 2)
  np.testing.assert_allclose(t.log_prob(jnp.asarray(_gauge_transform_np(rng, links, L))),
                             t.log_prob(jnp.asarray(links)), rtol=1e-11)
  x = jnp.asarray(links)
  s = t.score(x)
  np.testing.assert_allclose(man.to_tangent(x, s), s, atol=1e-12)
  v = man.random_normal_tangent(KEY, x)
  h = 1e-5
  fd = (t.log_prob(man.exp(x, h * v)) - t.log_prob(man.exp(x, -h * v))) / (2 * h)
  np.testing.assert_allclose(man.inner(x, s, v), fd, rtol=1e-6, atol=1e-7)


def test_float32_log_prob_and_samples():
  jax.config.update("jax_enable_x64", False)   # the conftest fixture restores the module's
  x64 = False
  for spec, m in (("lattice_u1", "torus(1)^8"), ("lattice_su2", "su(2)^8"),
                  ("vmf_mixture_s2", "sphere(2)"), ("manywell", "euclidean(32)")):
    man = from_spec(m)
    t = targets.get_target(spec, man)
    x = t.sample(KEY, 16)
    assert x.dtype == man.dtype
    lp = t.log_prob(x)
    assert lp.shape == (16,) and lp.dtype == (jnp.float64 if x64 else jnp.float32)
    assert bool(jnp.all(jnp.isfinite(lp)))
    assert bool(jnp.all(jnp.isfinite(man.to_features(t.score(x)))))
