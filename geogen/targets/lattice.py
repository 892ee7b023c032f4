r"""2D lattice gauge theory with the Wilson action on an L x L periodic lattice.

Layout
------
A configuration has 2 L^2 links U_mu(x, y), mu in {0, 1} (mu = 0 points along the first lattice
axis x, mu = 1 along y), sites (x, y) in {0..L-1}^2, periodic.  Link index
``l = mu * L^2 + x * L + y`` (C order of an array (2, L, L)).  Manifolds:

* U(1): ``torus(1)^(2L^2)`` (points (2L^2, 1), angles theta with U = e^{i theta});
  ``torus(2L^2)`` (points (2L^2,)) is accepted too.
* SU(N): ``su(N)^(2L^2)`` (points (2L^2, N, N) complex).

Plaquette at site (x, y) (counter-clockwise):
    U_p(x, y) = U_0(x, y) U_1(x+1, y) U_0(x, y+1)^H U_1(x, y)^H,
    U(1): theta_p = theta_0(x, y) + theta_1(x+1, y) - theta_0(x, y+1) - theta_1(x, y).

Wilson action S(U) = -(beta / N) sum_p Re tr U_p (U(1): -beta sum_p cos theta_p) and
log_prob = -S, unnormalized w.r.t. the Riemannian volume of the link manifold.  Observables
(per configuration): ``plaquette`` = (1 / (N L^2)) sum_p Re tr U_p; for U(1) also
``Q`` = (1 / 2pi) sum_p wrap(theta_p) (wrap into [-pi, pi); an integer on the torus) and
``Q2`` = Q^2.  Exact values: `geogen.targets.characters`.

Exact sampler (`sample_configurations`)
---------------------------------------
Fix the maximal-tree gauge U_1(x, y) = 1 for y != 0 and U_0(x, 1) = 1 for x < L - 1 (indices
mod L).  Under Haar measure the L^2 + 1 remaining links are i.i.d. Haar, and the change of
variables (column by column U_0(x, y+1) = P(x, y)^H U_0(x, y), then along the row y = 0
U_1(x+1, 0) = U_0(x, 0)^H P(x, 0) U_1(x, 0) U_0(x, 1)) is Haar-preserving, so the plaquettes
P(x, y), (x, y) != (L-1, 0), together with U_1(0, 0) and U_0(L-1, 1) are i.i.d. Haar, and the
last plaquette is a function of them.  Hence, exactly:
  1. draw the L^2 - 1 free plaquettes i.i.d. from exp((beta/N) Re tr W) dHaar(W) (von Mises for
     U(1); the exact SU(N) sampler of geogen.data.synthetic), U_1(0, 0), U_0(L-1, 1) from Haar;
  2. rebuild the links and accept with probability exp((beta/N)(Re tr P_last - N));
  3. apply an independent Haar gauge transformation U_mu(s) -> g(s) U_mu(s) g(s + mu)^H
     (Haar links are gauge invariant, and gauge-fixed Haar links times a Haar gauge
     transformation are Haar).
The acceptance rate is about c_0(beta) e^(-beta) (c_0: one-plaquette partition function), e.g.
0.47 (U(1), beta = 1), 0.21 (SU(2), beta = 2), 0.07 (SU(3), beta = 3); it falls with beta, and
a configuration costs about (L^2 - 1) / acceptance plaquette draws (numpy, host): cheap for the
small lattices and moderate beta used as references, slow for SU(3) at large L and beta.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from manifolds.special_unitary import matmul
from geogen.targets import characters
from manifolds.flat import Torus
from manifolds.power import Power
from manifolds.special_unitary import SpecialUnitary

_TWO_PI = 2.0 * math.pi
GROUPS = {"u1": 1, "su2": 2, "su3": 3}


# ======================================================================== layout
def lattice_size(group: str, manifold) -> int:
  """L of the link manifold of `group`, checking that the manifold fits.  Raises ValueError."""
  n = GROUPS[group]
  want = ("torus(1)^(2L^2) or torus(2L^2)" if group == "u1" else f"su({n})^(2L^2)")
  k = None
  if group == "u1":
    if isinstance(manifold, Power) and isinstance(manifold.base, Torus) and manifold.base.n == 1:
      k = manifold.k
    elif isinstance(manifold, Torus):
      k = manifold.n
  elif (isinstance(manifold, Power) and isinstance(manifold.base, SpecialUnitary)
        and manifold.base.n == n):
    k = manifold.k
  spec = getattr(manifold, "spec", repr(manifold))
  if k is None:
    raise ValueError(f"lattice_{group} needs the link manifold {want}, got {spec!r}")
  L = int(round(math.sqrt(k / 2)))
  if 2 * L * L != k:
    raise ValueError(f"lattice_{group}: {spec!r} has {k} links, not 2 L^2 for an integer L "
                     f"(e.g. {want} with L = 4: {2 * 16} links)")
  return L


def _links(x, group: str, L: int, point_ndim: int):
  """Points (..., *M.shape) -> (U0, U1, batch shape); point_ndim = len(M.shape).

  U(1): angles (B, L, L); SU(N): matrices (B, L, L, N, N); B = flattened batch.
  """
  x = jnp.asarray(x)
  bs = x.shape[: x.ndim - point_ndim]
  if group == "u1":
    t = jnp.reshape(x, (-1, 2, L, L))
    return t[:, 0], t[:, 1], bs
  n = GROUPS[group]
  u = jnp.reshape(x, (-1, 2, L, L, n, n))
  return u[:, 0], u[:, 1], bs


def plaquette_angles(theta0, theta1):
  """U(1) plaquette angles (unwrapped).  (B, L, L) x2 -> (B, L, L)."""
  return (theta0 + jnp.roll(theta1, -1, axis=-2) - jnp.roll(theta0, -1, axis=-1) - theta1)


def plaquette_re_trace(u0, u1):
  """Re tr U_p for SU(N) links.  (B, L, L, N, N) x2 -> (B, L, L).

  Re tr(A B C^H D^H) = Re sum_ab (A B)_ab conj((D C)_ab): two matmuls instead of three
  (elementwise `manifolds.special_unitary.matmul`, much faster than batched dot on CPU for
  N <= 4).
  """
  ab = matmul(u0, jnp.roll(u1, -1, axis=-4))
  dc = matmul(u1, jnp.roll(u0, -1, axis=-3))
  return jnp.real(jnp.sum(ab * jnp.conj(dc), axis=(-2, -1)))


def _wrap(a):
  return jnp.mod(a + math.pi, _TWO_PI) - math.pi


def wilson_log_prob(x, group: str, L: int, beta: float, point_ndim: int):
  """-S(U) = (beta/N) sum_p Re tr U_p.  (..., *M.shape) -> (...), real dtype of x."""
  u0, u1, bs = _links(x, group, L, point_ndim)
  if group == "u1":
    s = jnp.sum(jnp.cos(plaquette_angles(u0, u1)), axis=(-2, -1))
    return jnp.reshape(beta * s, bs)
  n = GROUPS[group]
  s = jnp.sum(plaquette_re_trace(u0, u1), axis=(-2, -1))
  return jnp.reshape((beta / n) * s, bs)


def lattice_observables(x, group: str, L: int, point_ndim: int):
  """Per-configuration observables: plaquette (and Q, Q2 for U(1)).  -> dict of (...)."""
  u0, u1, bs = _links(x, group, L, point_ndim)
  if group == "u1":
    th = plaquette_angles(u0, u1)
    plaq = jnp.mean(jnp.cos(th), axis=(-2, -1))
    # The wrapped angles sum to 2 pi times an integer exactly; rounding removes round-off.
    q = jnp.round(jnp.sum(_wrap(th), axis=(-2, -1)) / _TWO_PI)
    return {"plaquette": jnp.reshape(plaq, bs), "Q": jnp.reshape(q, bs),
            "Q2": jnp.reshape(q * q, bs)}
  n = GROUPS[group]
  plaq = jnp.mean(plaquette_re_trace(u0, u1), axis=(-2, -1)) / n
  return {"plaquette": jnp.reshape(plaq, bs)}


# ======================================================================== exact sampler
def _np_rng(key) -> np.random.Generator:
  """numpy Generator seeded deterministically from a JAX key (as geogen.data.synthetic)."""
  from geogen.data.synthetic import _np_rng as synthetic_np_rng
  return synthetic_np_rng(key)


def _haar(rng, shape, n):
  """Haar draws on U(1) (n = 1, as 1x1 complex) or SU(n).  -> (*shape, n, n) complex128."""
  from geogen.data.synthetic import _haar_su
  m = int(np.prod(shape, dtype=np.int64))
  if n == 1:
    return np.exp(1j * rng.uniform(-math.pi, math.pi, size=tuple(shape)))[..., None, None]
  return _haar_su(rng, m, n).reshape(tuple(shape) + (n, n))


class _PlaquetteSampler:
  """Exact draws of W ~ exp((beta/N) Re tr W) dHaar(W), as (m, N, N) complex128."""

  def __init__(self, group, beta):
    self.n, self.beta = GROUPS[group], float(beta)
    self._su = None

  def __call__(self, rng, m):
    if self.n == 1:
      return np.exp(1j * rng.vonmises(0.0, self.beta, size=m))[:, None, None]
    if self._su is None:
      # The exact rejection sampler of geogen.data.synthetic (SU mixtures), weight
      # exp(b Re tr W) with b = beta / N.
      from geogen.data.synthetic import _SUConcentratedSampler
      self._su = _SUConcentratedSampler(self.n, self.beta / self.n)
    return self._su.sample(rng, m)


def _mm(a, b):
  return np.matmul(a, b)


def _dag_np(a):
  return np.conj(np.swapaxes(a, -1, -2))


def _propose(rng, m, L, n, beta, plaq_sampler):
  """m gauge-fixed proposals and their log acceptance probabilities.

  -> (u0, u1) (m, L, L, n, n) complex128, log_acc (m,).
  """
  eye = np.broadcast_to(np.eye(n, dtype=np.complex128), (m, n, n))
  free = plaq_sampler(rng, m * (L * L - 1)).reshape(m, L * L - 1, n, n) if L > 1 else None
  p = np.empty((m, L, L, n, n), np.complex128)
  k = 0
  for x in range(L):
    for y in range(L):
      if (x, y) != (L - 1, 0):
        p[:, x, y] = free[:, k]
        k += 1
  t0, v = _haar(rng, (m,), n), _haar(rng, (m,), n)
  u0 = np.empty_like(p)
  u1 = np.empty_like(p)
  u1[:] = np.eye(n)
  for x in range(L):
    u0[:, x, 1 % L] = v if x == L - 1 else eye
    for y in range(1, L):
      u0[:, x, (y + 1) % L] = _mm(_dag_np(p[:, x, y]), u0[:, x, y])
  u1[:, 0, 0] = t0
  for x in range(L - 1):
    u1[:, x + 1, 0] = _mm(_mm(_dag_np(u0[:, x, 0]), p[:, x, 0]), _mm(u1[:, x, 0], u0[:, x, 1 % L]))
  last = _mm(_mm(u0[:, L - 1, 0], u1[:, 0, 0]), _mm(_dag_np(u0[:, L - 1, 1 % L]),
                                                    _dag_np(u1[:, L - 1, 0])))
  re_tr = np.real(np.trace(last, axis1=-2, axis2=-1))
  return u0, u1, (beta / n) * (re_tr - n)


def _gauge_transform(rng, u0, u1, n):
  """U_mu(s) -> g(s) U_mu(s) g(s + mu)^H with i.i.d. Haar g."""
  m, L = u0.shape[0], u0.shape[1]
  g = _haar(rng, (m, L, L), n)
  gx = np.roll(g, -1, axis=1)
  gy = np.roll(g, -1, axis=2)
  return _mm(_mm(g, u0), _dag_np(gx)), _mm(_mm(g, u1), _dag_np(gy))


def sample_configurations(rng, num: int, group: str, L: int, beta: float, plaq_sampler=None,
                          max_elements: int = 4_000_000):
  """num exact draws from exp(-S) on the L x L lattice (module docstring).

  Cost: about (L^2 - 1) / acceptance plaquette draws per configuration; proposals are made
  in chunks of at most max_elements / (L^2 N^2) configurations (bounded memory).
  -> numpy (num, 2 L^2, N, N) complex128 link matrices (N = 1 for U(1)).
  """
  n = GROUPS[group]
  plaq_sampler = plaq_sampler or _PlaquetteSampler(group, beta)
  max_chunk = max(256, max_elements // (L * L * n * n))
  out0, out1, have = [], [], 0
  acc_rate = 0.05
  while have < num:
    m = int(min(max_chunk, 1.2 * (num - have) / acc_rate + 16))
    u0, u1, log_acc = _propose(rng, m, L, n, beta, plaq_sampler)
    keep = np.log(rng.uniform(size=m)) < log_acc
    acc_rate = max(float(np.mean(keep)), 1e-3)
    out0.append(u0[keep])
    out1.append(u1[keep])
    have += int(keep.sum())
  u0 = np.concatenate(out0)[:num]
  u1 = np.concatenate(out1)[:num]
  u0, u1 = _gauge_transform(rng, u0, u1, n)
  return np.stack([u0, u1], axis=1).reshape(num, 2 * L * L, n, n)


def links_to_points(links, group: str, manifold):
  """Complex link matrices (num, 2 L^2, N, N) -> points of `manifold` (its dtype)."""
  if group == "u1":
    th = np.angle(links[..., 0, 0])
    th = np.mod(th + math.pi, _TWO_PI) - math.pi
    return jnp.asarray(th.reshape((links.shape[0],) + tuple(manifold.shape)), manifold.dtype)
  return jnp.asarray(links, manifold.dtype)


# ======================================================================== target pieces
def make_lattice(group: str, manifold, L=None, beta=None):
  """Pieces of the lattice target: dict(log_prob, log_z, sample, observables, exact, L, beta)."""
  L_m = lattice_size(group, manifold)
  if L is not None and int(L) != L_m:
    raise ValueError(f"lattice_{group}(L={L}) needs {2 * int(L) ** 2} links, but manifold "
                     f"{manifold.spec!r} has {2 * L_m * L_m} (L = {L_m}); drop L or fix it")
  L = L_m
  beta = float(beta)
  ref = characters.lattice_reference(group, L, beta)

  nd = len(manifold.shape)

  def log_prob(x):
    return wilson_log_prob(x, group, L, beta, nd)

  def observables(x):
    return lattice_observables(x, group, L, nd)

  plaq_sampler = _PlaquetteSampler(group, beta)

  def sample(key, num):
    links = sample_configurations(_np_rng(key), int(num), group, L, beta, plaq_sampler)
    return links_to_points(links, group, manifold)

  exact = {"plaquette": ref.plaquette}
  if group == "u1":
    exact.update({"Q": 0.0, "Q2": ref.q2})
  return dict(log_prob=log_prob, log_z=ref.log_z_volume, sample=sample,
              observables=observables, exact=exact, L=L, beta=beta, reference=ref)
