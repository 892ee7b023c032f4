r"""von Mises-Fisher mixture targets on spheres, built on geogen.data.synthetic.

The mixture sum_i w_i C_n(kappa_i) exp(kappa_i <mu_i, x>) of `synthetic.vmf_mixture` is
exposed *unnormalized*, without the per-component constants (so that log Z is not trivially
0):
    log_prob(x) = logsumexp_i [log w_i + kappa_i (<mu_i, x> - 1)],
    log Z = logsumexp_i [log w_i - log C_n(kappa_i) - kappa_i]
(w.r.t. the Riemannian volume of S^n; int exp(kappa (<mu, x> - 1)) dx = e^-kappa / C_n(kappa)).
log_prob - log Z is exactly the synthetic mixture's normalized log-density.  Samples: the
synthetic exact sampler.  Observables: cos_mu<j>(x) = <mu_j, x>, with exact expectations
sum_i w_i A_n(kappa_i) <mu_i, mu_j> (E_i[X] = A_n(kappa_i) mu_i, A_n the mean resultant).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from geogen.data import synthetic
from manifolds import _numerics as nx

_HI = jax.lax.Precision.HIGHEST


def make_vmf_mixture(manifold, components: int, kappa: float, seed: int):
  """Pieces of a vMF-mixture target on Sphere(n) (manifold checked by synthetic)."""
  cfg = ml_collections.ConfigDict()
  cfg.num_components = int(components)
  cfg.concentration = float(kappa)
  cfg.seed = int(seed)
  dist = synthetic.make("synthetic/vmf_mixture", manifold, cfg)
  # Unnormalized component constants: log w_i - (log C_i + kappa_i).
  shift = dist.log_weights - (dist.log_norm + dist.kappa)
  log_z = float(np.logaddexp.reduce(dist.log_weights - dist.log_norm - dist.kappa))
  mu = dist.means                                             # (K, n+1)
  e_x = (dist.weights * dist.mean_resultant)[:, None] * mu    # E[X] = sum_i w_i A_i mu_i
  exact = {f"cos_mu{j}": float(e_x.sum(0) @ mu[j]) for j in range(mu.shape[0])}

  def log_prob(x):
    dt = nx.real_dtype(x)
    # component_log_prob is the normalized log p_i = (log C_i + kappa_i) + kappa_i (t - 1).
    return jax.nn.logsumexp(dist.component_log_prob(x) + jnp.asarray(shift, dt), axis=-1)

  def observables(x):
    t = jnp.einsum("...d,kd->...k", x, jnp.asarray(mu, nx.real_dtype(x)), precision=_HI)
    return {f"cos_mu{j}": t[..., j] for j in range(mu.shape[0])}

  def sample(key, num):
    return dist.sample(key, int(num))

  return dict(log_prob=log_prob, log_z=log_z, sample=sample, observables=observables,
              exact=exact, dist=dist)
