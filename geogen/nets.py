"""Time-dependent tangent vector fields on a manifold, as flax.nnx networks.

A network sees a point through real features ``M.input_features(x)`` (the ambient
coordinates, real and imaginary parts for SU(n), (cos, sin) of the angles on tori) and the time through a sinusoidal
embedding; its real output of size ``M.num_features`` is mapped back with
``M.from_features`` and projected onto T_x M with ``M.to_tangent``, so the
result is always a tangent vector at x, whatever the weights.

    net = VectorField(manifold, nets.default_config(), rngs=nnx.Rngs(0))
    v = net(x, t)          # x: (..., *M.shape), t: scalar or (...) -> (..., *M.shape)

An optional ``output_scale`` (a plain function t -> positive scale of shape
``t.shape``) multiplies the output; e.g. diffusion divides by the noise scale so
that the raw network output stays O(1) while the score grows like 1/sqrt(tau).
An optional ``time_input`` (a plain function t -> t', shape-preserving) is applied to
the time before the embedding; e.g. diffusion can feed the normalized log noise level,
which the embedding resolves at every scale, where s itself is ~constant for all small
noise levels.

``input_octaves = K > 0`` appends the positional encoding sin(2^k pi f), cos(2^k pi f),
k < K, of every input feature f (as in NeRF): an MLP on raw coordinates learns
high-frequency functions slowly (spectral bias), and sharply concentrated densities
(e.g. duplicated earth events, see the README) need a vector field that varies on
scales ~ 2^-K.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from manifolds.base import Manifold

ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": jax.nn.gelu,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
}
KINDS = ("mlp", "resmlp")


def default_config() -> ml_collections.ConfigDict:
  """The `net` section of the config (small defaults; a few 10^4 parameters)."""
  c = ml_collections.ConfigDict()
  c.kind = "resmlp"          # 'mlp' | 'resmlp'
  c.hidden = 128             # width of the hidden layers
  c.depth = 3                # hidden layers (mlp) / residual blocks (resmlp)
  c.activation = "silu"      # one of ACTIVATIONS
  c.time_embed_dim = 32      # size of the sinusoidal time embedding (even)
  c.time_max_freq = 100.0    # frequencies 1 .. time_max_freq (times in [0, 1])
  c.layer_norm = False       # LayerNorm at the start of each residual block
  c.input_octaves = 0        # K > 0: add sin / cos(2^k pi f), k < K, of the input features
  return c


def _check_config(cfg) -> None:
  if cfg.kind not in KINDS:
    raise ValueError(f"net.kind must be one of {KINDS}, got {cfg.kind!r}")
  if cfg.activation not in ACTIVATIONS:
    raise ValueError(f"net.activation must be one of {sorted(ACTIVATIONS)}, got {cfg.activation!r}")
  if cfg.time_embed_dim < 2 or cfg.time_embed_dim % 2:
    raise ValueError(f"net.time_embed_dim must be an even integer >= 2, got {cfg.time_embed_dim}")
  if cfg.hidden < 1 or cfg.depth < 1:
    raise ValueError(f"net.hidden and net.depth must be >= 1, got {cfg.hidden}, {cfg.depth}")
  if int(cfg.input_octaves) < 0:
    raise ValueError(f"net.input_octaves must be >= 0, got {cfg.input_octaves}")
  if not cfg.time_max_freq >= 1.0:
    raise ValueError(f"net.time_max_freq must be >= 1, got {cfg.time_max_freq}")


def time_embedding(t, dim: int, max_freq: float):
  """Sinusoidal embedding [sin(w_k t), cos(w_k t)], w_k geometric in [1, max_freq].

  t: (...) -> (..., dim).
  """
  half = dim // 2
  freqs = jnp.exp(jnp.linspace(0.0, math.log(max_freq), half, dtype=jnp.result_type(t, float)))
  a = jnp.asarray(t)[..., None] * freqs
  return jnp.concatenate([jnp.sin(a), jnp.cos(a)], axis=-1)


def positional_encoding(f, octaves: int):
  """[f, sin(2^k pi f), cos(2^k pi f)] for k < octaves.  f: (..., F) -> (..., F (1 + 2K))."""
  if octaves == 0:
    return f
  freqs = math.pi * 2.0 ** jnp.arange(octaves, dtype=f.dtype)
  a = (f[..., :, None] * freqs).reshape(f.shape[:-1] + (-1,))
  return jnp.concatenate([f, jnp.sin(a), jnp.cos(a)], axis=-1)


def _num_input_features(manifold: Manifold, octaves: int) -> int:
  point = jax.ShapeDtypeStruct(tuple(manifold.shape), manifold.dtype)
  f = jax.eval_shape(manifold.input_features, point)
  return int(f.shape[-1]) * (1 + 2 * octaves)


class _ResBlock(nnx.Module):
  """h + W2 act(W1 act(norm h) + U temb); W2 starts at zero so each block starts as
  the identity (stable depth)."""

  def __init__(self, hidden: int, temb: int, act, layer_norm: bool, rngs: nnx.Rngs):
    self.act = act
    self.norm = nnx.LayerNorm(hidden, rngs=rngs) if layer_norm else None
    self.lin1 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.time = nnx.Linear(temb, hidden, rngs=rngs)
    self.lin2 = nnx.Linear(hidden, hidden, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, h, temb):
    u = h if self.norm is None else self.norm(h)
    u = self.lin1(self.act(u)) + self.time(temb)
    return h + self.lin2(self.act(u))


class VectorField(nnx.Module):
  """Time-dependent tangent vector field (x, t) -> v in T_x M (see module docstring).

  Attributes (static): manifold, kind, act, embedding settings, output_scale, time_input.
  """

  def __init__(self, manifold: Manifold, config, *, rngs: nnx.Rngs,
               output_scale: Optional[Callable] = None,
               time_input: Optional[Callable] = None):
    _check_config(config)
    self.manifold = manifold
    self.kind = str(config.kind)
    self.act = ACTIVATIONS[config.activation]
    self.temb_dim = int(config.time_embed_dim)
    self.temb_freq = float(config.time_max_freq)
    self.output_scale = output_scale
    self.time_input = time_input
    self.octaves = int(config.input_octaves)
    nf, h = manifold.num_features, int(config.hidden)
    nin = _num_input_features(manifold, self.octaves)
    if self.kind == "mlp":
      sizes = [nin + self.temb_dim] + [h] * int(config.depth)
      self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    else:
      self.inp = nnx.Linear(nin, h, rngs=rngs)
      self.temb_mlp = nnx.Linear(self.temb_dim, h, rngs=rngs)
      self.blocks = nnx.List([_ResBlock(h, h, self.act, bool(config.layer_norm), rngs)
                              for _ in range(int(config.depth))])
    self.out = nnx.Linear(h, nf, rngs=rngs)

  def features(self, x, t):
    """Raw network output before the manifold map.  -> (..., num_features)."""
    m = self.manifold
    f = positional_encoding(m.input_features(x), self.octaves)
    t = jnp.broadcast_to(jnp.asarray(t, f.dtype), f.shape[:-1])
    if self.time_input is not None:
      t = self.time_input(t)
    temb = time_embedding(t, self.temb_dim, self.temb_freq)
    if self.kind == "mlp":
      h = jnp.concatenate([f, temb], axis=-1)
      for layer in self.layers:
        h = self.act(layer(h))
    else:
      temb = self.act(self.temb_mlp(temb))
      h = self.inp(f) + temb  # time enters here too: blocks start as the identity
      for block in self.blocks:
        h = block(h, temb)
      h = self.act(h)
    return self.out(h)

  def __call__(self, x, t):
    """x: (..., *M.shape); t: scalar or broadcastable to (...).  -> (..., *M.shape)."""
    m = self.manifold
    x = jnp.asarray(x)
    out = self.features(x, t)
    if self.output_scale is not None:
      t = jnp.broadcast_to(jnp.asarray(t, out.dtype), out.shape[:-1])
      out = out * self.output_scale(t)[..., None]
    v = m.from_features(out)
    if m.is_complex:
      v = v.astype(x.dtype)
    return m.to_tangent(x, v)
