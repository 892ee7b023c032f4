"""geogen.nets: tangent outputs of the right shape/dtype, time embedding, output scale."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from geogen import nets
from manifolds import Power, Torus
from sphere_reference import EmbeddedSphere


def _cfg(kind, **kw):
  c = nets.default_config()
  c.kind = kind
  c.hidden = 16
  c.depth = 2
  c.update(kw)
  return c


@pytest.mark.parametrize("kind", ["mlp", "resmlp"])
@pytest.mark.parametrize("manifold", [Torus(3), Power(Torus(2), 3), EmbeddedSphere(2)],
                         ids=lambda m: m.spec)
def test_output_shape_and_tangent(kind, manifold, x64):
  net = nets.VectorField(manifold, _cfg(kind, layer_norm=True), rngs=nnx.Rngs(0))
  x = manifold.random_uniform(jax.random.key(1), (5, 2))
  for t in (0.3, jnp.linspace(0.0, 1.0, 10).reshape(5, 2)):
    v = net(x, t)
    assert v.shape == x.shape and v.dtype == x.dtype
    assert np.all(np.isfinite(np.asarray(v)))
    assert float(jnp.max(jnp.abs(v))) > 1e-3  # not trivially zero
  if isinstance(manifold, EmbeddedSphere):
    # tangent: <x, v> = 0 (v itself is O(1)).
    tol = 1e-12 if x64 else 1e-5
    np.testing.assert_allclose(np.sum(np.asarray(x * v), -1), 0.0, atol=tol)
  # one unbatched point and a batch agree
  np.testing.assert_allclose(net(x[0, 0], 0.3), net(x, 0.3)[0, 0], rtol=1e-5, atol=1e-6)


def test_time_dependence_and_grad():
  m = Torus(2)
  net = nets.VectorField(m, _cfg("resmlp"), rngs=nnx.Rngs(0))
  x = m.random_uniform(jax.random.key(1), (4,))
  assert float(jnp.max(jnp.abs(net(x, 0.1) - net(x, 0.9)))) > 1e-4

  def f(model):
    return jnp.sum(model(x, 0.5) ** 2)

  g = nnx.grad(f)(net)
  leaves = jax.tree.leaves(nnx.state(g, nnx.Param))
  assert leaves and all(np.all(np.isfinite(np.asarray(l))) for l in leaves)
  assert sum(float(jnp.sum(jnp.abs(l))) for l in leaves) > 0
  out = nnx.jit(lambda model, x: model(x, 0.5))(net, x)
  np.testing.assert_allclose(out, net(x, 0.5), rtol=1e-5, atol=1e-6)


def test_time_embedding_closed_form():
  t = np.array([0.0, 0.25, 1.0])
  e = np.asarray(nets.time_embedding(jnp.asarray(t, jnp.float32), 8, 27.0))
  w = np.array([1.0, 3.0, 9.0, 27.0])  # geometric from 1 to 27 with 4 frequencies
  ref = np.concatenate([np.sin(t[:, None] * w), np.cos(t[:, None] * w)], -1)
  np.testing.assert_allclose(e, ref, rtol=1e-5, atol=1e-6)


def test_output_scale_multiplies():
  m = EmbeddedSphere(3)
  scale = lambda t: 1.0 / jnp.sqrt(t)
  a = nets.VectorField(m, _cfg("mlp"), rngs=nnx.Rngs(7))
  b = nets.VectorField(m, _cfg("mlp"), rngs=nnx.Rngs(7), output_scale=scale)
  x = m.random_uniform(jax.random.key(0), (6,))
  t = jnp.linspace(0.01, 1.0, 6)
  np.testing.assert_allclose(b(x, t), a(x, t) / np.sqrt(np.asarray(t))[:, None], rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize("key,value", [("kind", "cnn"), ("activation", "bogus"),
                                       ("time_embed_dim", 7), ("depth", 0)])
def test_bad_config_raises(key, value):
  c = nets.default_config()
  c[key] = value
  with pytest.raises(ValueError, match=key):
    nets.VectorField(Torus(2), c, rngs=nnx.Rngs(0))


def test_special_unitary_features_if_available():
  from manifolds import SpecialUnitary
  m = SpecialUnitary(2)
  try:
    x = m.random_uniform(jax.random.key(0), (3,))
    m.to_tangent(x, x)
  except NotImplementedError:
    pytest.skip("manifolds.SpecialUnitary geometry is not implemented yet")
  net = nets.VectorField(m, _cfg("resmlp"), rngs=nnx.Rngs(0))
  v = net(x, 0.5)
  assert v.shape == x.shape and jnp.iscomplexobj(v)
  # tangent at U: U^H V skew-Hermitian and traceless
  a = np.einsum("...ji,...jk->...ik", np.conj(np.asarray(x)), np.asarray(v))
  np.testing.assert_allclose(a + np.conj(np.swapaxes(a, -1, -2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.trace(a, axis1=-2, axis2=-1), 0.0, atol=1e-5)
  assert math.isfinite(float(jnp.max(jnp.abs(v)))) and float(jnp.max(jnp.abs(v))) > 1e-3


def test_positional_encoding_closed_form_and_net():
  f = np.array([[0.3, -0.7]])
  e = np.asarray(nets.positional_encoding(jnp.asarray(f, jnp.float32), 3))
  w = math.pi * np.array([1.0, 2.0, 4.0])
  a = (f[..., :, None] * w).reshape(1, -1)  # feature-major: f0 w0, f0 w1, ..., f1 w0, ...
  np.testing.assert_allclose(e, np.concatenate([f, np.sin(a), np.cos(a)], -1), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(nets.positional_encoding(jnp.asarray(f, jnp.float32), 0), f, rtol=1e-6)
  # a net with octaves: still a tangent field, and it sees the encoding (different from K = 0)
  m = EmbeddedSphere(2)
  x = m.random_uniform(jax.random.key(1), (7,))
  for kind in ("mlp", "resmlp"):
    net = nets.VectorField(m, _cfg(kind, input_octaves=6), rngs=nnx.Rngs(0))
    v = net(x, 0.4)
    assert v.shape == x.shape and np.all(np.isfinite(np.asarray(v)))
    np.testing.assert_allclose(np.sum(np.asarray(x * v), -1), 0.0, atol=1e-5)
    if kind == "resmlp":
      assert net.inp.in_features == 3 * (1 + 2 * 6)


def test_time_input_is_applied_before_the_embedding():
  m = Torus(2)
  a = nets.VectorField(m, _cfg("resmlp"), rngs=nnx.Rngs(3))
  b = nets.VectorField(m, _cfg("resmlp"), rngs=nnx.Rngs(3), time_input=lambda t: 1.0 - t)
  x = m.random_uniform(jax.random.key(0), (5,))
  t = jnp.linspace(0.1, 0.9, 5)
  np.testing.assert_allclose(b(x, t), a(x, 1.0 - t), rtol=1e-5, atol=1e-6)


def test_negative_octaves_raise():
  c = nets.default_config()
  c.input_octaves = -1
  with pytest.raises(ValueError, match="input_octaves"):
    nets.VectorField(Torus(2), c, rngs=nnx.Rngs(0))
