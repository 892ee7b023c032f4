"""A tiny, exactly solvable model family for the training-loop tests (not part of geogen).

Model on Euclidean(n): a diagonal Gaussian N(mu, diag(exp(2 log_sigma))) plus a small
linear layer that only enters a weak regularizer (so the parameter tree has nested
modules and a matmul over the sharded batch).  Its log-density is closed form, so the
tests can check the loop's NLL bookkeeping against scipy.

`install(monkeypatch=None)` makes ``geogen.models.get_family('fake')`` return this module.
"""
import math
import sys

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

NAME = "fake"


def default_config():
  return ml_collections.ConfigDict()


class GaussModel(nnx.Module):
  def __init__(self, manifold, rngs: nnx.Rngs):
    n = manifold.shape[-1]
    self.manifold = manifold
    self.mu = nnx.Param(0.1 * jax.random.normal(rngs.params(), (n,)))
    self.log_sigma = nnx.Param(jnp.zeros((n,)))
    self.lin = nnx.Linear(n, 4, rngs=rngs)


def init(config, manifold, key):
  return GaussModel(manifold, nnx.Rngs(params=key))


def log_prob(model, x, key=None):
  mu, ls = model.mu[...], model.log_sigma[...]
  z = (x - mu) * jnp.exp(-ls)
  return jnp.sum(-0.5 * z * z - ls - 0.5 * math.log(2 * math.pi), axis=-1)


def loss(model, batch, key):
  noise = 0.01 * jax.random.normal(key, batch.shape, batch.dtype)
  nll = -jnp.mean(log_prob(model, batch + noise))
  reg = 1e-3 * jnp.mean(model.lin(batch) ** 2)
  return nll + reg, {"nll_train": nll}


def sample(model, key, num):
  n = model.mu.shape[-1]
  z = jax.random.normal(key, (num, n))
  return model.mu[...] + jnp.exp(model.log_sigma[...]) * z


def log_prob_and_stats(model, x, key):
  return log_prob(model, x, key), {"nfe": 0}


def install(monkeypatch=None):
  """Route get_family('fake') to this module (pytest monkeypatch, or permanently)."""
  import geogen.models as models
  original = models.get_family

  def get_family(name):
    return sys.modules[__name__] if name == NAME else original(name)

  if monkeypatch is not None:
    monkeypatch.setattr(models, "get_family", get_family)
  else:
    models.get_family = get_family
