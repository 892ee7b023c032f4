"""GFlowNet diffusion samplers (geogen.models.gflownet): trajectory densities against closed
forms (Gaussian steps, Brownian bridge / OU reversal, Legendre series of the S^2 heat
kernel, exp-map Jacobian), exact samplers (constant log-weights, zero TB / SubTB / LV
losses, Metropolis-Hastings acceptance 1, exact log Z estimates), MALA invariance, the
SubTB loss against a brute-force sum over sub-trajectories, the replay buffer, and a short
train.py-API run on gmm25 with eval.json, sample.py and a bit-exact resume of the buffer."""
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import special, stats

from geogen import config as gconfig
from geogen import nets, training
from geogen.models import gflownet as G
from geogen.models import get_family
from geogen.targets import Target
from manifolds import Euclidean, Sphere, Torus, from_spec


def _config(batch_size=8, **gfn):
  c = ml_collections.ConfigDict()
  c.net = nets.default_config()
  c.net.update(hidden=8, depth=1, time_embed_dim=4)
  c.gflownet = G.default_config()
  c.gflownet.update(num_steps=4, eval_samples=64)
  c.gflownet.update(gfn)
  c.train = ml_collections.ConfigDict({"batch_size": batch_size})
  c.eval = ml_collections.ConfigDict({"batch_size": 64})
  c.target = ""
  return c


def _model(manifold, target, batch_size=8, **gfn):
  return G.init(_config(batch_size, **gfn), manifold, jax.random.PRNGKey(0), target=target)


def _rdt():
  return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _tol():
  return 1e-9 if jax.config.jax_enable_x64 else 2e-4


def _gauss_target(m, mu, s):
  """N(mu, s^2 I) on R^d, unnormalized (log Z = d/2 log(2 pi s^2)), with exact samples."""
  mu = np.asarray(mu, np.float64)
  d = mu.size
  return Target(name=f"gauss{mu.tolist()}{s}", manifold=m,
                log_prob=lambda x: -0.5 * jnp.sum((x - mu) ** 2, -1) / s**2,
                log_z=0.5 * d * math.log(2 * math.pi * s**2),
                sample=lambda k, n: mu + s * jax.random.normal(k, (n, d), _rdt()),
                observables=lambda x: {"x0": x[..., 0]}, exact_observables={"x0": mu[0]})


def _uniform_target(m, c=0.7):
  """R = e^c on a compact M: log Z = c + log vol(M)."""
  return Target(name=f"uniform:{m.spec}", manifold=m,
                log_prob=lambda x: jnp.full(m.batch_shape(x), c, jnp.real(x).dtype),
                log_z=c + m.log_volume(), sample=lambda k, n: m.random_uniform(k, (n,)))


# ------------------------------------------------------------------ closed forms on R^n
@pytest.mark.parametrize("base,reference", [("point", "brownian"), ("gaussian", "brownian"),
                                            ("gaussian", "ou")])
def test_rn_trajectory_densities_closed_form(x64, base, reference):
  """Zero drift: forward steps are N(x_k (+ OU contraction), tau); the backward kernel is
  the conditional law of the reference (joint Gaussian of (X_tk, X_tk+1), scipy), and
  log w = log R(x_N) - log q_N(x_N) on any path (q_N: reference marginal)."""
  d, n, sigma, mean, s = 3, 4, 1.3, 0.5, 0.7
  m = Euclidean(d)
  target = _gauss_target(m, [1.0, -1.0, 0.0], 2.0)
  model = _model(m, target, num_steps=n, sigma=sigma, base=base, base_mean=mean,
                 base_std=s, reference=reference)
  rng = np.random.default_rng(0)
  xs = rng.normal(size=(5, n + 1, d))
  if base == "point":
    xs[:, 0] = mean
  log_r = np.asarray(target.log_prob(jnp.asarray(xs[:, -1])))
  (lpf, lpb), lw = jax.jit(lambda xs, lr: (G.step_terms(model, xs), G.log_weight(model, xs, lr)))(
      jnp.asarray(xs, _rdt()), jnp.asarray(log_r, _rdt()))
  h = 1.0 / n
  s0 = s if base == "gaussian" else 0.0
  if reference == "ou":
    theta = sigma**2 / (2 * s**2)  # dX = -theta (X - m) dt + sigma dW, invariant N(m, s^2)
    a, var = math.exp(-theta * h), s**2 * (1 - math.exp(-2 * theta * h))
    want_pf = stats.norm.logpdf(xs[:, 1:], mean + a * (xs[:, :-1] - mean), math.sqrt(var))
    want_pb = stats.norm.logpdf(xs[:, :-1], mean + a * (xs[:, 1:] - mean), math.sqrt(var))
    q_var = s**2
  else:
    want_pf = stats.norm.logpdf(xs[:, 1:], xs[:, :-1], sigma * math.sqrt(h))
    want_pb = np.zeros_like(want_pf)
    for k in range(n):
      vk, vk1 = s0**2 + sigma**2 * k * h, s0**2 + sigma**2 * (k + 1) * h
      if vk == 0:
        continue  # point base: x_0 = m surely (the term is 0, and so is log mu_0)
      joint = stats.multivariate_normal([mean, mean], [[vk, vk], [vk, vk1]])
      pair = np.stack([xs[:, k], xs[:, k + 1]], -1)
      want_pb[:, k] = joint.logpdf(pair) - stats.norm.logpdf(xs[:, k + 1], mean, math.sqrt(vk1))
    q_var = s0**2 + sigma**2
  tol = _tol() * 10
  np.testing.assert_allclose(lpf, want_pf.sum(-1), rtol=tol, atol=tol)
  np.testing.assert_allclose(lpb, want_pb.sum(-1), rtol=tol, atol=tol)
  want = log_r - stats.norm.logpdf(xs[:, -1], mean, math.sqrt(q_var)).sum(-1)
  np.testing.assert_allclose(lw, want, rtol=tol, atol=tol)


def test_power_of_euclidean_matches_flat_euclidean():
  """euclidean(2)^3 (2-D points) gives the log-weights of euclidean(6) on the same paths."""
  m, e = from_spec("euclidean(2)^3"), Euclidean(6)
  lp = lambda x: -0.5 * jnp.sum((jnp.reshape(x, x.shape[:1] + (-1,)) - 1.0) ** 2, -1)
  xs = np.random.default_rng(0).normal(size=(3, 5, 6)).astype(np.float32)
  for base in ("point", "gaussian"):
    xs[:, 0] = 0.2 if base == "point" else xs[:, 0]
    models = [_model(man, Target(name=f"q:{man.spec}", manifold=man, log_prob=lp), base=base,
                     base_mean=0.2, base_std=0.5) for man in (m, e)]
    lw = jax.jit(lambda a, b: [G.log_weight(mm, p, lp(p[:, -1]))
                               for mm, p in zip(models, (a, b))])(
        jnp.asarray(xs.reshape(3, 5, 3, 2)), jnp.asarray(xs))
    np.testing.assert_allclose(lw[0], lw[1], atol=1e-4)  # float32 sums of ~20 O(10) terms


# ------------------------------------------------------------------ closed forms on S^2
def _s2_exp(x, v):
  r = np.linalg.norm(v, axis=-1, keepdims=True)
  return np.cos(r) * x + np.sinc(r / np.pi) * v


def _s2_log(x, y):
  c = np.clip(np.sum(x * y, -1, keepdims=True), -1, 1)
  th = np.arccos(c)
  return th / np.sin(th) * (y - c * x)


def _s2_heat(x, y, t, lmax=80):
  """Legendre series sum_l (2l+1)/(4 pi) e^{-l(l+1)t/2} P_l(<x, y>)."""
  c = np.clip(np.sum(x * y, -1), -1, 1)
  ls = np.arange(lmax)
  terms = (2 * ls + 1) / (4 * np.pi) * np.exp(-ls * (ls + 1) * t / 2)
  return np.log(np.sum(terms * special.eval_legendre(ls, c[..., None]), -1))


def test_s2_step_densities_closed_form(f64):
  """A constant ambient drift b (f = b - <b, x> x): 'heat' steps are the heat kernel around
  exp_x(h f) (Legendre series); 'gaussian' steps are N(log_x y; h f, tau) / (sin r / r);
  the backward kernel is the heat kernel; with zero drift log w = log R + log 4 pi."""
  m, n, sigma = Sphere(2), 4, 1.0
  target = Target(name="s2quad", manifold=m, log_prob=lambda x: 2.0 * x[..., 2])
  b = np.array([0.3, -0.6, 0.2])
  models = {}
  for kind in ("heat", "gaussian"):
    models[kind] = _model(m, target, num_steps=n, sigma=sigma, kernel=kind)
    bias = models[kind].drift.out.bias
    bias[...] = jnp.asarray(b, bias[...].dtype)
  zero = _model(m, target, num_steps=n, sigma=sigma)
  rng = np.random.default_rng(1)
  xs = rng.normal(size=(6, n + 1, 3))
  xs /= np.linalg.norm(xs, axis=-1, keepdims=True)
  xj = jnp.asarray(xs)
  got = jax.jit(lambda xs: (G.step_terms(models["heat"], xs),
                            G.step_terms(models["gaussian"], xs)[0],
                            G.log_weight(zero, xs, G.log_reward(zero, xs[:, -1]))))(xj)
  (lpf_heat, lpb), lpf_gauss, lw_zero = got
  h, tau = 1.0 / n, sigma**2 / n
  x, y = xs[:, :-1], xs[:, 1:]
  f = b - np.sum(b * x, -1, keepdims=True) * x
  want_heat = _s2_heat(_s2_exp(x, h * f), y, tau)
  v = _s2_log(x, y)
  r = np.linalg.norm(v, axis=-1)
  want_gauss = (-np.log(2 * np.pi * tau) - np.sum((v - h * f) ** 2, -1) / (2 * tau)
                - np.log(np.sin(r) / r))
  want_pb = _s2_heat(y, x, tau)
  np.testing.assert_allclose(lpf_heat, want_heat, rtol=1e-8)
  np.testing.assert_allclose(lpf_gauss, want_gauss, rtol=1e-8)
  np.testing.assert_allclose(lpb, want_pb, rtol=1e-8)
  np.testing.assert_allclose(lw_zero, 2.0 * xs[:, -1, 2] + np.log(4 * np.pi), rtol=1e-8)


# ------------------------------------------------------------------ exact samplers
def _exactness_run(model, key, num=16, back=2, backtrack=True):
  """Jitted: trajectories, their log-weights, backtrack-and-rebuild log acceptance ratios
  (partial and full length; zeros without `backtrack`) and whether every state lies on M."""
  m, n = model.manifold, model.ref.num_steps

  def run(key):
    k1, k2, k3 = jax.random.split(key, 3)
    xs, _ = G.sample_trajectories(model, k1, num)
    log_r = G.log_reward(model, xs[:, -1])
    lw = G.log_weight(model, xs, log_r)
    la = la_full = jnp.zeros_like(lw)
    if backtrack:
      if back:
        la = G.backtrack_rebuild(model, k2, xs[:, -1], log_r, back)[3]
      la_full = G.backtrack_rebuild(model, k3, xs[:, -1], log_r, n)[3]
    ok = m.belongs(jnp.reshape(xs, (-1,) + tuple(m.shape)))
    return xs, lw, la, la_full, ok

  return jax.jit(run)(key)


def _check_exact_estimates(model, target, lw, tol):
  """ELBO, IW estimate and ESS of the forward log-weights, and the EUBO (backward
  trajectories from exact target samples), all exact."""
  ev = G.log_z_estimates(np.asarray(lw, np.float64))
  xr = target.sample(jax.random.PRNGKey(7), 16)
  ev["eubo"] = float(np.mean(G.backward_log_weights(model, jax.random.PRNGKey(8), xr, 16)))
  for k in ("log_z_elbo", "log_z_iw", "eubo"):
    assert ev[k] == pytest.approx(target.log_z, abs=tol), k
  assert ev["ess"] == pytest.approx(1.0, abs=tol)
  return ev


def _losses(model, xs, log_r, objectives=("tb", "lv", "subtb")):
  """The losses of `model`'s sampler under each objective (one jit)."""
  keys = ("num_steps", "sigma", "base", "base_std", "reference", "log_z_init")
  models = [_model(model.manifold, model.target.value, objective=obj,
                   **{k: getattr(model.cfg, k) for k in keys}) for obj in objectives]
  for mm in models:  # the same drift as `model`
    mm.drift.out.bias[...] = model.drift.out.bias[...]
  batch = {"xs": xs, "log_r": log_r}
  vals = jax.jit(lambda b: [G.loss(mm, b, None)[0] for mm in models])(batch)
  return {obj: float(v) for obj, v in zip(objectives, vals)}


def test_exact_sampler_on_torus(f64):
  """Zero drift on torus(2), target uniform: the policy is the reversible reference, so
  log w = log Z on every trajectory (so TB with log Z and LV vanish), SubTB vanishes,
  backtrack-and-rebuild accepts with probability exactly 1, and ELBO = IW = EUBO = log Z,
  ESS = 1."""
  m = Torus(2)
  target = _uniform_target(m)
  model = _model(m, target, sigma=0.8, log_z_init=target.log_z)
  xs, lw, la, la_full, ok = _exactness_run(model, jax.random.PRNGKey(3))
  tol = _tol()
  assert bool(np.all(ok))
  np.testing.assert_allclose(lw, target.log_z, atol=tol)
  np.testing.assert_allclose(la, 0.0, atol=tol)
  np.testing.assert_allclose(la_full, 0.0, atol=tol)
  # SubTB too: the interpolated flows are exact here (uniform marginals all along)
  losses = _losses(model, xs, G.log_reward(model, xs[:, -1]), ("subtb",))
  assert losses["subtb"] == pytest.approx(0.0, abs=tol)
  _check_exact_estimates(model, target, lw, tol)


def test_exact_sampler_on_the_sphere():
  """The same exactness on S^2 (exact heat-kernel steps), float32: constant log-weights;
  the sampled states lie on M."""
  m = Sphere(2)
  model = _model(m, _uniform_target(m), sigma=0.7, num_steps=3)
  _, lw, _, _, ok = _exactness_run(model, jax.random.PRNGKey(4), num=8, backtrack=False)
  assert bool(np.all(ok))
  np.testing.assert_allclose(lw, m.log_volume() + 0.7, atol=2e-4)


def test_exact_sampler_rn_constant_drift(f64):
  """Point base 0, drift f = mu: X_1 ~ N(mu, sigma^2) and the Brownian bridge is also the
  bridge of the drifted motion, so the sampler is exact for the target N(mu, sigma^2):
  constant log w, zero TB / LV, acceptance 1, exact estimates; random drift breaks it."""
  m, sigma, mu = Euclidean(2), 1.5, np.array([1.0, -2.0])
  target = _gauss_target(m, mu, sigma)
  model = _model(m, target, sigma=sigma, log_z_init=target.log_z)
  model.drift.out.bias[...] = jnp.asarray(mu, model.drift.out.bias[...].dtype)
  xs, lw, la, la_full, ok = _exactness_run(model, jax.random.PRNGKey(5), back=0)
  tol = _tol() * 10
  np.testing.assert_allclose(lw, target.log_z, atol=tol)
  np.testing.assert_allclose(la_full, 0.0, atol=tol)
  losses = _losses(model, xs, G.log_reward(model, xs[:, -1]), ("tb", "lv"))
  for k, v in losses.items():
    assert v == pytest.approx(0.0, abs=tol), k
  _check_exact_estimates(model, target, lw, tol)
  ev = G.observable_estimates(target, np.asarray(xs[:, -1]), np.asarray(lw, np.float64), 16)
  assert ev["obs_x0_iw"] == pytest.approx(ev["obs_x0"], abs=tol)
  assert abs(ev["obs_x0_bias"]) < 5 * ev["obs_x0_stderr"]
  # a perturbed (random) drift is no longer exact: log w varies
  bad = _model(m, target, sigma=sigma, zero_init=False)
  lw_bad = G.log_weight(bad, xs, G.log_reward(bad, xs[:, -1]))
  assert np.std(np.asarray(lw_bad)) > 1e-3


# ------------------------------------------------------------------ objectives by brute force
def test_subtb_tb_lv_losses_brute_force(f64):
  """Random networks (drift and flow), point base: the SubTB loss equals the weighted sum
  over every sub-trajectory (i, j) of its squared balance residual, with step densities
  from scipy and flows from their definition; TB and LV from the same log-weights."""
  m, n, sigma, mean, lam, log_z = Euclidean(2), 3, 1.2, 0.3, 0.6, 0.4
  target = _gauss_target(m, [0.5, 0.5], 1.0)
  model = _model(m, target, num_steps=n, sigma=sigma, base_mean=mean, objective="subtb",
                 subtb_lambda=lam, zero_init=False, log_z_init=log_z)
  rng = np.random.default_rng(2)
  xs = rng.normal(size=(4, n + 1, 2))
  xs[:, 0] = mean
  h, t = 1.0 / n, np.arange(n + 1) / n
  f = np.asarray(model.drift(jnp.asarray(xs[:, :-1]), jnp.asarray(t[:-1])))
  lpf = stats.norm.logpdf(xs[:, 1:], xs[:, :-1] + h * f, sigma * math.sqrt(h)).sum(-1)
  lpb = np.zeros((4, n))
  for k in range(1, n):
    vk, vk1 = sigma**2 * t[k], sigma**2 * t[k + 1]
    joint = stats.multivariate_normal([mean, mean], [[vk, vk], [vk, vk1]])
    lpb[:, k] = (joint.logpdf(np.stack([xs[:, k], xs[:, k + 1]], -1))
                 - stats.norm.logpdf(xs[:, k + 1], mean, math.sqrt(vk1))).sum(-1)
  log_r = np.asarray(target.log_prob(jnp.asarray(xs)))           # (4, n + 1)
  flow_net = np.asarray(model.flow(jnp.asarray(xs), jnp.asarray(t)))
  flows = ((1 - t) * (log_z + stats.norm.logpdf(xs, mean, sigma * np.sqrt(np.maximum(t, 1e-300)
                                                                         )[:, None]).sum(-1))
           + t * log_r + flow_net)
  flows[:, 0], flows[:, n] = log_z, log_r[:, n]
  num, den = np.zeros(4), 0.0
  for i in range(n + 1):
    for j in range(i + 1, n + 1):
      res = flows[:, i] + lpf[:, i:j].sum(-1) - flows[:, j] - lpb[:, i:j].sum(-1)
      num += lam ** (j - i) * res**2
      den += lam ** (j - i)
  batch = {"xs": jnp.asarray(xs), "log_r": jnp.asarray(log_r[:, -1])}
  lw = log_r[:, -1] + lpb.sum(-1) - lpf.sum(-1)
  others = [_model(m, target, num_steps=n, sigma=sigma, base_mean=mean, objective=obj,
                   zero_init=False, log_z_init=log_z) for obj in ("tb", "lv")]
  got = jax.jit(lambda b: [G.loss(mm, b, None)[0] for mm in [model] + others])(batch)
  want = [np.mean(num / den), np.mean((log_z - lw) ** 2), np.var(lw)]
  np.testing.assert_allclose(np.array(got), want, rtol=1e-9)


# ------------------------------------------------------------------ local search: MALA
def test_mala_leaves_targets_invariant():
  """MALA from exact samples keeps the law (large steps, where unadjusted Langevin would
  be visibly biased): a Gaussian on R^2 (moments) and von Mises laws on torus(2) with the
  wrapped heat-kernel proposal (E cos = I1/I0)."""
  n, steps = 4000, 8
  # R^2: N(mu, s^2), eps = 0.6 s^2 (ULA's variance would be s^2 / (1 - eps / 2 s^2) = 1.43 s^2)
  m, mu, s = Euclidean(2), np.array([1.0, -0.5]), 1.0
  target = _gauss_target(m, mu, s)
  model = _model(m, target)
  x0 = target.sample(jax.random.PRNGKey(0), n)
  x, _, acc = jax.jit(lambda x: G.mala(model, jax.random.PRNGKey(1), x, math.log(0.6),
                                       steps))(x0)
  x = np.asarray(x, np.float64)
  se = s / math.sqrt(n)
  assert np.all(np.abs(x.mean(0) - mu) < 5 * se)
  assert np.all(np.abs(x.var(0) - s**2) < 5 * s**2 * math.sqrt(2 / n))
  assert 0.3 < float(acc) < 0.99
  # torus(2): independent von Mises(mu_i, kappa)
  m, kappa, mu = Torus(2), 2.0, np.array([0.5, -2.8])
  target = Target(name="vm2", manifold=m, log_prob=lambda x: kappa * jnp.sum(jnp.cos(x - mu), -1))
  model = _model(m, target)
  rng = np.random.default_rng(3)
  x0 = jnp.asarray(np.mod(rng.vonmises(mu, kappa, (n, 2)) + np.pi, 2 * np.pi) - np.pi,
                   jnp.float32)
  x, _, acc = jax.jit(lambda x: G.mala(model, jax.random.PRNGKey(2), x, math.log(0.5),
                                       steps))(x0)
  c = np.cos(np.asarray(x, np.float64) - mu)
  r = special.i1(kappa) / special.i0(kappa)
  assert np.all(np.abs(c.mean(0) - r) < 5 * c.std(0) / math.sqrt(n))
  sn = np.sin(np.asarray(x, np.float64) - mu)
  assert np.all(np.abs(sn.mean(0)) < 5 * sn.std(0) / math.sqrt(n))
  assert 0.3 < float(acc) < 0.99


# ------------------------------------------------------------------ buffer, W2, config
def test_replay_buffer_ring_and_rank_priorities():
  """Ring insertion, rank-based probabilities 1 / (k n + rank) against hand values; the
  log-weight priority of a point without trajectory (a fresh P_B one) is log Z for the
  exact sampler (torus, uniform target)."""
  t = Torus(1)
  exact = _model(t, _uniform_target(t), replay_fraction=0.5, buffer_priority="log_weight")
  x = t.random_uniform(jax.random.PRNGKey(0), (5,))
  prio = jax.jit(lambda x: G._priorities(exact, jax.random.PRNGKey(1), x,
                                         G.log_reward(exact, x)))(x)
  np.testing.assert_allclose(prio, 0.7 + math.log(2 * math.pi), atol=1e-4)
  m = Euclidean(1)
  model = _model(m, _gauss_target(m, [0.0], 1.0), batch_size=4, replay_fraction=0.5,
                 buffer_capacity=5, buffer_rank_k=0.5)
  buf = G.init_state(model, None, jax.random.PRNGKey(0))
  pts = lambda v: jnp.asarray(v, jnp.float32)[:, None]
  prio = jnp.asarray([3.0, 1.0, 2.0])
  buf = G.buffer_insert(buf, pts([1, 2, 3]), prio, prio)
  assert int(buf["count"]) == 3 and int(buf["ptr"]) == 3
  # ranks of priorities [3, 1, 2] are [1, 3, 2]: p ~ 1 / (k n + rank), k n = 1.5
  p = jax.nn.softmax(G.buffer_logits(buf, "reward", 0.5))
  want = 1 / (1.5 + np.array([1.0, 3.0, 2.0]))
  np.testing.assert_allclose(p[:3], want / want.sum(), rtol=1e-6)
  assert float(jnp.sum(p[3:])) == 0.0
  np.testing.assert_allclose(jax.nn.softmax(G.buffer_logits(buf, "uniform", 0.5))[:3], 1 / 3,
                             rtol=1e-6)
  buf = G.buffer_insert(buf, pts([4, 5, 6]), jnp.zeros(3), jnp.zeros(3))  # wraps around
  assert int(buf["count"]) == 5 and int(buf["ptr"]) == 1
  np.testing.assert_array_equal(np.asarray(buf["x"][:, 0]), [6, 2, 3, 4, 5])


def test_wasserstein2_of_a_translation():
  """Translating an empirical law by delta: the optimal coupling is the identity and
  W2 = |delta| (any permutation adds sum |x_i - x_sigma(i)|^2 >= 0)."""
  x = np.random.default_rng(0).normal(size=(50, 3))
  delta = np.array([0.3, -0.4, 1.2])
  assert G.wasserstein2(Euclidean(3), x, x + delta) == pytest.approx(np.linalg.norm(delta),
                                                                     rel=1e-5)


def test_config_errors_and_registry():
  assert get_family("gflownet") is G and G.NEEDS_DATA is False
  assert "gflownet" in gconfig.default_config()
  t = _uniform_target(Sphere(2))
  with pytest.raises(ValueError, match="needs base 'uniform'"):
    _model(Sphere(2), t, base="point")
  with pytest.raises(ValueError, match="replay_fraction > 0"):
    _model(Sphere(2), t, local_search="mala")
  with pytest.raises(ValueError, match="no uniform law"):
    _model(Euclidean(2), _gauss_target(Euclidean(2), [0, 0], 1.0), base="uniform")
  with pytest.raises(ValueError, match="lives on"):
    _model(Sphere(3), t)
  with pytest.raises(ValueError, match="config.target"):
    G.init(_config(), Sphere(2), jax.random.PRNGKey(0))


def test_random_networks_langevin_variance_and_injectivity():
  """Untrained non-zero drift with the Langevin term and learned variance on R^3: finite
  samples, finite TB loss and gradients.  A random drift on SU(2)^2 ('gaussian' kernel):
  samples lie on M.  The 'gaussian' kernel on torus(2) counts the steps that leave the injectivity
  domain (none for small steps, the Gaussian tail mass for sigma = 6)."""
  m = Euclidean(3)
  t = _gauss_target(m, [0.3, 0.3, 0.3], 1.0)
  model = _model(m, t, zero_init=False, langevin=True, learn_variance=True)
  from flax import nnx
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss_of(p, key):
    mm = nnx.merge(graphdef, p, rest)
    xs, _ = G.sample_trajectories(mm, key, 8)
    return G.loss(mm, {"xs": xs, "log_r": G.log_reward(mm, xs[:, -1])}, None)[0], xs

  (val, xs), grads = jax.jit(jax.value_and_grad(loss_of, has_aux=True))(
      params, jax.random.PRNGKey(1))
  assert bool(np.all(np.isfinite(np.asarray(xs))))
  leaves = jax.tree_util.tree_leaves(grads)
  assert np.isfinite(float(val)) and all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
  assert float(jnp.abs(grads["lgv"]["hidden"]["kernel"][...]).sum()) == 0.0  # lambda out = 0
  assert float(jnp.abs(grads["lgv"]["out"]["kernel"][...]).sum()) > 0.0
  su = from_spec("su(2)^2")
  t_su = Target(name="su2quad", manifold=su,
                log_prob=lambda x: jnp.sum(jnp.real(jnp.trace(x, axis1=-2, axis2=-1)), -1))
  x = G.sample(_model(su, t_su, zero_init=False, kernel="gaussian"), jax.random.PRNGKey(3), 6)
  assert x.shape == (6, 2, 2, 2) and bool(np.all(np.asarray(su.belongs(x))))
  m = Torus(2)
  models = [_model(m, _uniform_target(m), sigma=sigma, kernel="gaussian") for sigma in (0.3, 6)]
  runs = jax.jit(lambda k: [G.sample_trajectories(mm, k, 64) for mm in models])(
      jax.random.PRNGKey(2))
  fracs = []
  for xs, beyond in runs:
    assert bool(np.all(np.asarray(m.belongs(jnp.reshape(xs, (-1, 2))))))
    fracs.append(float(jnp.mean(beyond)))
  # a step N(0, sigma^2 / 4) per angle leaves (-pi, pi) with probability 2 Phi(-2 pi / sigma)
  assert fracs[0] == 0.0
  p = 1 - (1 - 2 * stats.norm.cdf(-math.pi / 3.0)) ** 2
  assert abs(fracs[1] - p) < 5 * math.sqrt(p * (1 - p) / (64 * 4))


# ------------------------------------------------------------------ training loop
TINY = {"gflownet.num_steps": 4, "net.hidden": 8, "net.depth": 1, "net.time_embed_dim": 4,
        "train.num_steps": 12, "train.batch_size": 8, "train.steps_per_dispatch": 4,
        "train.ckpt_every": 4, "train.eval_every": 12, "train.log_every": 4,
        "train.warmup_steps": 2, "train.progress": False, "gflownet.buffer_capacity": 32,
        "gflownet.local_search": "both", "gflownet.ls_every": 2, "gflownet.ls_mala_steps": 2,
        "gflownet.ls_backtrack_steps": 2, "gflownet.explore_anneal_steps": 6,
        "gflownet.buffer_priority": "reward", "gflownet.eval_samples": 64,
        "gflownet.langevin": False, "gflownet.learn_variance": False,
        "gflownet.eval_w2_points": 16, "eval.batch_size": 32, "eval.num_plot_samples": 0}


def _tiny_config(**over):
  items = {**TINY, **over}
  return gconfig.load_config("configs/gfn_gmm25.py", [f"{k}={v}" for k, v in items.items()])


def test_train_gmm25_eval_json_sample_and_bit_exact_resume(tmp_path, capsys, monkeypatch):
  """train.py API on gmm25 with replay, exploration, MALA + backtrack local search: eval.json
  holds the estimates (ELBO <= log Z <= EUBO), sample.py works.  Resume: the run's last
  checkpoint (step 12) and eval.json are deleted, as if it had been killed after saving
  step 8; rerunning restores step 8 (replay buffer included) and ends bit for bit in the
  uninterrupted run's final state, with the same metrics history.  (The rerun reuses the
  first run's compiled chunk, built from an identical config, to save a compilation;
  tests/test_resume.py covers a resume in a fresh process.)"""
  import sample as sample_cli
  real, made = training.make_chunk_fn, []

  def make_once(b, tc):
    if not made:
      made.append(real(b, tc))
    return made[0]

  monkeypatch.setattr(training, "make_chunk_fn", make_once)
  ref = str(tmp_path / "ref")
  res = training.train_and_evaluate(_tiny_config(**{"eval.num_plot_samples": 32}), ref)
  with open(os.path.join(ref, "eval.json")) as f:
    ev = json.load(f)
  for k in ("log_z_elbo", "log_z_iw", "eubo", "ess", "log_z", "log_z_elbo_gap",
            "log_z_iw_error", "w2", "obs_x1", "obs_x1_iw", "obs_x1_exact", "obs_sq_norm_bias"):
    assert ev.get(k) is not None, k
  assert ev["log_z"] == 0.0 and ev["model"] == "gflownet" and ev["target"] == "gmm25"
  assert ev["log_z_elbo"] <= ev["log_z"] <= ev["eubo"]
  assert 0 < ev["ess"] <= 1 and res["log_z_iw"] == ev["log_z_iw"]
  assert any(p.endswith("scatter.png") for p in ev["plots"])
  recs = training.read_metrics(ref)
  logged = [r for r in recs if "loss" in r]
  assert [r["step"] for r in logged] == [4, 8, 12]
  assert {"log_z", "buffer_count", "ls_accept_mala", "ls_accept_backtrack"} <= set(logged[0])
  out = str(tmp_path / "s.npy")
  assert sample_cli.main(["--workdir", ref, "--num_samples", "10", "--output", out,
                          "--batch_size", "8"]) == 0
  assert np.load(out).shape == (10, 2)

  _, _, s_ref, step_ref = training.load_run(ref, which="latest")
  s_ref = jax.tree_util.tree_map(np.asarray, s_ref)
  import shutil
  shutil.rmtree(os.path.join(ref, "checkpoints", "12"))
  os.remove(os.path.join(ref, "eval.json"))
  capsys.readouterr()
  training.train_and_evaluate(_tiny_config(), ref)
  assert f"resuming {ref} from step 8" in capsys.readouterr().out
  _, _, s_run, step_run = training.load_run(ref, which="latest")
  assert step_ref == step_run == 12
  assert int(s_run["family"]["count"]) == 32  # the buffer is full (capacity 32)
  la, lb = jax.tree_util.tree_leaves(s_ref), jax.tree_util.tree_leaves(s_run)
  assert len(la) == len(lb) > 0
  for a, b in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  drop = ("time", "steps_per_sec", "eval_time_s")
  strip = lambda rs: [{k: v for k, v in r.items() if k not in drop} for r in rs]
  assert strip(training.read_metrics(ref)) == strip(recs)
