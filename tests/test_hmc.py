"""Tests of geogen.hmc: the leapfrog integrator (reversible, volume preserving, second order),
the SU(n) fast drift against SpecialUnitary.exp, and HMC chains against exact expectations:
U(1) and SU(2) lattices L = 2..4 (mean plaquette from the character expansion; U(1) also
<Q^2>), a Gaussian on R^n, a vMF law on S^2 (geodesic drift), an AR(1) ESS and AIS log Z.

Standard errors account for autocorrelation by using many independent chains: the per-chain
means are i.i.d., so their standard deviation / sqrt(C) is an honest s.e.  Checks at 5 s.e.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geogen import hmc
from geogen.targets import get_target
from manifolds import Euclidean, Sphere, from_spec

ENABLE_X64 = True
KEY = jax.random.PRNGKey(0)
CHAINS = 64


def _chain_mean_se(trace):
  """trace (T, C) -> (mean, s.e. from the C independent chain means)."""
  cm = np.asarray(trace, np.float64).mean(axis=0)
  return cm.mean(), cm.std(ddof=1) / math.sqrt(cm.size)


def _within(est, ref, se, k=5.0):
  assert abs(est - ref) <= k * se, f"{est} vs {ref}: {abs(est - ref) / se:.2f} s.e."


# ============================================================================ integrator
def _random_state(man, seed, c=4):
  """c points and momenta drawn with numpy (no compile): Haar / uniform / normal points,
  momenta in the representation of `make_dynamics` (su(n) for SU(n), tangent otherwise)."""
  rng = np.random.default_rng(seed)
  base = getattr(man, "base", man)
  if hasattr(base, "n") and type(base).__name__ == "SpecialUnitary":
    z = rng.standard_normal((c,) + man.shape + (2,)) @ np.array([1.0, 1j])
    q, r = np.linalg.qr(z)
    q = q * (np.diagonal(r, axis1=-2, axis2=-1) / np.abs(np.diagonal(r, axis1=-2, axis2=-1)))[
        ..., None, :]
    q[..., :, 0] *= np.conj(np.linalg.det(q))[..., None]
    p = rng.standard_normal((c,) + man.shape + (2,)) @ np.array([1.0, 1j])
    return jnp.asarray(q), jnp.asarray(_np_su_project(p))
  if isinstance(base, Sphere):
    x = rng.standard_normal((c,) + man.shape)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    v = rng.standard_normal((c,) + man.shape)
    return jnp.asarray(x), man.to_tangent(jnp.asarray(x), jnp.asarray(v))
  x = rng.uniform(-np.pi, np.pi, (c,) + man.shape)
  return jnp.asarray(x), jnp.asarray(rng.standard_normal((c,) + man.shape))


@pytest.mark.parametrize("spec,man", [("lattice_u1", "torus(1)^8"), ("lattice_su2", "su(2)^8"),
                                      ("lattice_su3", "su(3)^8"), ("vmf_mixture_s2", "sphere(2)"),
                                      ("funnel(d=3, sigma=1)", "euclidean(3)")])
def test_leapfrog_reversible_and_second_order(spec, man):
  man = from_spec(man)
  t = get_target(spec, man)
  dyn = hmc.make_dynamics(t.log_prob, man)
  x0, p0 = _random_state(man, 0)
  f0 = dyn.force(x0)[1]

  @jax.jit
  def run(x, p, f, eps):
    """10 leapfrog steps -> (x, p, force, energy change)."""
    h0 = -dyn.force(x)[0] + dyn.kinetic(x, p)
    x, p, lp, f = hmc.leapfrog(dyn, man, x, p, f, eps, 10)
    return x, p, f, -lp + dyn.kinetic(x, p) - h0

  e = jnp.full((4,), 0.1)
  x1, p1, f1, _ = run(x0, p0, f0, e)
  x2, p2, _, _ = run(x1, -p1, f1, e)
  np.testing.assert_allclose(x2, x0, atol=1e-10)
  np.testing.assert_allclose(-p2, p0, atol=1e-10)
  man.check(x1)
  # the energy error of a fixed-length trajectory (time 0.2) falls like eps^2
  dh1 = run(x0, p0, f0, e / 5)[3]
  xa, pa, fa, dha = run(x0, p0, f0, e / 10)
  dh2 = dha + run(xa, pa, fa, e / 10)[3]
  ratio = np.abs(np.asarray(dh1) / np.asarray(dh2))
  assert np.all((ratio > 3.0) & (ratio < 5.0)), ratio


def test_leapfrog_volume_preserving_flat():
  man = from_spec("euclidean(3)")
  t = get_target("funnel(d=3, sigma=1)", man)
  dyn = hmc.make_dynamics(t.log_prob, man)
  x0, p0 = _random_state(man, 1, c=1)
  d = int(np.prod(man.shape))

  def flow(z):
    x = z[:d].reshape((1,) + man.shape)
    p = z[d:].reshape((1,) + man.shape)
    x1, p1, _, _ = hmc.leapfrog(dyn, man, x, p, dyn.force(x)[1], jnp.full((1,), 0.15), 7)
    return jnp.concatenate([x1.ravel(), p1.ravel()])

  jac = jax.jacfwd(flow)(jnp.concatenate([x0.ravel(), p0.ravel()]))
  assert abs(np.linalg.det(np.asarray(jac))) == pytest.approx(1.0, abs=1e-10)


def _np_su_project(a):
  s = 0.5 * (a - np.conj(np.swapaxes(a, -1, -2)))
  n = a.shape[-1]
  return s - (np.trace(s, axis1=-2, axis2=-1) / n)[..., None, None] * np.eye(n)


@pytest.mark.parametrize("n", [2, 3])
def test_su_drift_is_left_trivialized_expm(n):
  """SU(n) drift: U <- U expm(eps A) (scipy reference), A unchanged; momenta in su(n)."""
  from scipy.linalg import expm
  man = from_spec(f"su({n})^6")
  dyn = hmc.make_dynamics(lambda x: jnp.zeros(x.shape[0]), man)
  x, p = _random_state(man, 2, c=5)
  eps = jnp.array([1e-4, 0.05, 0.5, 2.0, 6.0])   # up to |eps A| ~ 20
  y, q = jax.jit(dyn.drift)(x, p, eps)
  xs, ps = np.asarray(x), np.asarray(p)
  ref = np.stack([[xs[c, k] @ expm(float(eps[c]) * ps[c, k]) for k in range(6)]
                  for c in range(5)])
  np.testing.assert_allclose(np.asarray(y), ref, atol=1e-11)
  np.testing.assert_array_equal(np.asarray(q), ps)
  man.check(y)
  # momenta are in su(n) with identity covariance: E|A|^2 = dim
  a = np.asarray(jax.jit(dyn.momentum)(jax.random.PRNGKey(2), jnp.tile(x, (140, 1, 1, 1))))
  np.testing.assert_allclose(_np_su_project(a), a, atol=1e-14)
  sq = np.sum(np.abs(a) ** 2, axis=(-2, -1)).ravel()
  _within(sq.mean(), n * n - 1, sq.std() / math.sqrt(sq.size))


# ============================================================================ chains
def test_gaussian_on_euclidean():
  sd = jnp.array([0.3, 1.0, 2.0, 0.7, 1.5])
  man = Euclidean(5)

  def log_prob(x):
    return -0.5 * jnp.sum((x - 1.0) ** 2 / sd**2, axis=-1)

  init = jax.random.normal(KEY, (CHAINS, 5))
  r = hmc.run_hmc(log_prob, man, jax.random.PRNGKey(1), init, num_samples=150, step_size=0.3,
                  num_leapfrog=8, num_burnin=100, adapt_step_size=True)
  assert r.samples.shape == (150, CHAINS, 5)
  assert 0.5 < float(r.accept_rate.mean()) < 1.0
  xs = np.asarray(r.samples)
  for i in range(5):
    m, se = _chain_mean_se(xs[..., i])
    _within(m, 1.0, se)
    m2, se2 = _chain_mean_se((xs[..., i] - 1.0) ** 2)
    _within(m2, float(sd[i]) ** 2, se2)


def test_vmf_on_sphere_geodesic_drift():
  kappa = 5.0
  man = Sphere(2)
  t = get_target(f"vmf_mixture(components=1, kappa={kappa})", man)
  init = _random_state(man, 3, c=CHAINS)[0]
  r = hmc.run_hmc(t.log_prob, man, jax.random.PRNGKey(3), init, num_samples=150,
                  step_size=0.3, num_leapfrog=6, num_burnin=100, adapt_step_size=True,
                  observables=t.observables, keep_samples=False)
  assert r.samples is None
  m, se = _chain_mean_se(r.observables["cos_mu0"])
  _within(m, 1.0 / math.tanh(kappa) - 1.0 / kappa, se)   # E<mu, X> on S^2


def _lattice_chains(group, beta, sizes=(2, 3, 4)):
  """HMC on the product of the L = 2, 3, 4 lattices (independent blocks of links, so each
  block's marginal is its own lattice law): one compiled run covers the three sizes."""
  spec = "torus(1)^{}" if group == "u1" else "su(2)^{}"
  parts = [get_target(f"lattice_{group}(beta={beta})", from_spec(spec.format(2 * L * L)))
           for L in sizes]
  bounds = np.cumsum([0] + [2 * L * L for L in sizes])
  man = from_spec(spec.format(int(bounds[-1])))

  def log_prob(x):
    return sum(t.log_prob(x[:, a:b]) for t, a, b in zip(parts, bounds[:-1], bounds[1:]))

  def observables(x):
    out = {}
    for L, t, a, b in zip(sizes, parts, bounds[:-1], bounds[1:]):
      out.update({f"{k}_L{L}": v for k, v in t.observables(x[:, a:b]).items()})
    return out

  init = _random_state(man, 7, c=CHAINS)[0]      # uniform / Haar, drawn with numpy
  r = hmc.run_hmc(log_prob, man, jax.random.PRNGKey(11), init, num_samples=150,
                  step_size=0.2, num_leapfrog=6, num_burnin=100, adapt_step_size=True,
                  observables=observables, keep_samples=False)
  assert 0.6 < float(r.accept_rate.mean()) <= 1.0
  return dict(zip(sizes, parts)), r


def test_u1_lattices_plaquette_and_topological_charge():
  parts, r = _lattice_chains("u1", 1.0)
  for L, t in parts.items():
    for name in ("plaquette", "Q2"):
      m, se = _chain_mean_se(r.observables[f"{name}_L{L}"])
      _within(m, t.exact_observables[name], se)


def test_su2_lattices_plaquette():
  parts, r = _lattice_chains("su2", 2.0)
  for L, t in parts.items():
    m, se = _chain_mean_se(r.observables[f"plaquette_L{L}"])
    _within(m, t.exact_observables["plaquette"], se)


def test_ais_log_z_u1_lattice():
  man = from_spec("torus(1)^8")
  t = get_target("lattice_u1(beta=1.0)", man)
  a = hmc.annealed_importance_sampling(t.log_prob, man, KEY, num_chains=256, num_temps=40,
                                       step_size=0.4, num_leapfrog=4)
  assert a.ess > 100 and a.log_z_se < 0.05
  _within(a.log_z, t.log_z, a.log_z_se)


# ============================================================================ diagnostics / errors
def test_effective_sample_size_ar1():
  rng = np.random.default_rng(0)
  rho, t, c = 0.8, 4000, 8
  x = np.zeros((t, c))
  e = rng.standard_normal((t, c)) * math.sqrt(1 - rho * rho)
  x[0] = rng.standard_normal(c)
  for i in range(1, t):
    x[i] = rho * x[i - 1] + e[i]
  ess = hmc.effective_sample_size(x)
  assert ess == pytest.approx(t * c * (1 - rho) / (1 + rho), rel=0.15)
  iid = hmc.effective_sample_size(rng.standard_normal((t, c)))
  assert iid == pytest.approx(t * c, rel=0.15)


def test_errors():
  man = Euclidean(2)
  lp = lambda x: -0.5 * jnp.sum(x * x, -1)
  with pytest.raises(ValueError, match="one chain axis"):
    hmc.run_hmc(lp, man, KEY, jnp.zeros((2, 3, 2)), num_samples=2, step_size=0.1,
                num_leapfrog=2)
  with pytest.raises(ValueError, match="num_leapfrog"):
    hmc.run_hmc(lp, man, KEY, jnp.zeros((2, 2)), num_samples=2, step_size=0.1, num_leapfrog=0)
  with pytest.raises(ValueError, match="step_size"):
    hmc.run_hmc(lp, man, KEY, jnp.zeros((2, 2)), num_samples=2, step_size=-0.1,
                num_leapfrog=2)
  with pytest.raises(ValueError, match="compact"):
    hmc.annealed_importance_sampling(lp, man, KEY, num_chains=2, num_temps=2, step_size=0.1,
                                     num_leapfrog=1)
