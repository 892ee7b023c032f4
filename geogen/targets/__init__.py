r"""Unnormalized target densities on manifolds (for GFlowNet samplers and HMC), with exact
references where they exist.

    from geogen.targets import get_target, names
    t = get_target("lattice_su2(beta=2.0)", from_spec("su(2)^32"))
    t.log_prob(x)            # (B, *M.shape) -> (B,), unnormalized, w.r.t. Riemannian volume
    t.log_z                  # exact log normalizer w.r.t. Riemannian volume (or None)
    t.sample(key, num)       # exact reference samples (or None)
    t.observables(x)         # {name: (B,)};  t.exact_observables: {name: exact expectation}
    t.score(x)               # Riemannian gradient of log_prob (tangent vectors)

Spec grammar (``GRAMMAR``)::

    spec   := name | name '(' [param {',' param}] ')' | module ':' function
    param  := key '=' number

``module:function`` imports ``module`` (from PYTHONPATH) and uses ``function`` as log_prob:
it maps (B, *M.shape) points to (B,) unnormalized log-densities w.r.t. the Riemannian volume;
it is checked once with ``jax.eval_shape``.  Such targets have no exact references.

Registered names (parameters with defaults; ``names()`` lists them):

=================  =======================  ==========================================
name               manifold                 parameters
=================  =======================  ==========================================
gmm25              euclidean(2)             (none)
funnel             euclidean(d)             d=10, sigma=3.0
manywell           euclidean(d)             d=32 (even)
vmf_mixture        sphere(n), any n         components=4, kappa=10.0, seed=0
vmf_mixture_s2     sphere(2)                components=4, kappa=10.0, seed=0
vmf_mixture_s15    sphere(15)               components=4, kappa=50.0, seed=0
lattice_u1         torus(1)^(2L^2)          L (from the manifold), beta=1.0
lattice_su2        su(2)^(2L^2)             L (from the manifold), beta=2.0
lattice_su3        su(3)^(2L^2)             L (from the manifold), beta=3.0
=================  =======================  ==========================================

Definitions: `euclidean` (Sendera et al. 2024 suite), `spheres` (vMF mixtures of
geogen.data.synthetic), `lattice` (Wilson action, layout) and `characters` (exact lattice
references).  Lattice log Z is w.r.t. the Riemannian volume: log Z_Haar + 2 L^2 log vol(G)
(vol(U(1)) = 2 pi; vol(SU(N)) for the metric Re tr(X^H Y)).
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from manifolds import Euclidean, Manifold, Sphere, from_spec

GRAMMAR = ("target spec := name | name '(' key=number, ... ')' | 'module:function'  "
           "(e.g. 'manywell', 'funnel(d=10)', 'lattice_u1(L=4,beta=1.0)', "
           "'mypkg.targets:log_density')")


@dataclass(frozen=True)
class Target:
  """An unnormalized density on a manifold, with whatever exact references exist.

  name: the spec it was built from.  manifold: where it lives.
  log_prob: (B, *shape) -> (B,) unnormalized log-density w.r.t. Riemannian volume (jittable).
  log_z: exact log normalizer w.r.t. Riemannian volume, or None.
  sample: (key, num) -> (num, *shape) exact samples, or None.
  observables: (B, *shape) -> {name: (B,)} per-sample observables, or None.
  exact_observables: {name: exact expectation under the normalized target} (may be {}).
  score: (B, *shape) -> (B, *shape) Riemannian gradient of log_prob, tangent at each point
    (None at construction means: autodiff of log_prob, converted with egrad_to_rgrad).
  """
  name: str
  manifold: Manifold
  log_prob: Callable
  log_z: Optional[float] = None
  sample: Optional[Callable] = None
  observables: Optional[Callable] = None
  exact_observables: dict = field(default_factory=dict)
  score: Optional[Callable] = None

  def __post_init__(self):
    if self.score is None:
      object.__setattr__(self, "score", autodiff_score(self.log_prob, self.manifold))


def autodiff_score(log_prob, manifold):
  """grad of log_prob as a Riemannian gradient (tangent vectors).  (B, *shape) -> same.

  """
  def score(x):
    g = jax.grad(lambda y: jnp.sum(log_prob(y)))(x)
    if manifold.is_complex:
      g = jnp.conj(g)  # JAX returns the conjugate of the real gradient for complex inputs
    return manifold.egrad_to_rgrad(x, g)
  return jax.jit(score)


# ======================================================================== registry
def _is_int(v):
  return float(v) == int(v)


def _as_int(name, key, v, minimum):
  if not _is_int(v) or int(v) < minimum:
    raise ValueError(f"target {name!r}: {key} must be an integer >= {minimum}, got {v!r}")
  return int(v)


def _require(name, manifold, cls, what):
  if not isinstance(manifold, cls):
    raise ValueError(f"target {name!r} lives on {what}, got manifold {manifold.spec!r}")


def _build_gmm25(name, manifold, p):
  from geogen.targets import euclidean as E
  _require(name, manifold, Euclidean, "euclidean(2)")
  if manifold.n != 2:
    raise ValueError(f"target {name!r} lives on euclidean(2), got {manifold.spec!r}")
  dt = manifold.dtype
  sample = jax.jit(E.gmm25_sample, static_argnums=(1, 2))
  return dict(log_prob=E.gmm25_log_prob, log_z=0.0,
              sample=lambda key, num: sample(key, int(num), dt),
              observables=E.gmm25_observables, exact=E.gmm25_exact())


def _build_funnel(name, manifold, p):
  from geogen.targets import euclidean as E
  d = _as_int(name, "d", p["d"], 2)
  sigma = float(p["sigma"])
  if not sigma > 0:
    raise ValueError(f"target {name!r}: sigma must be > 0, got {sigma}")
  _require(name, manifold, Euclidean, f"euclidean({d})")
  if manifold.n != d:
    raise ValueError(f"target {name!r} (d={d}) lives on euclidean({d}), got {manifold.spec!r};"
                     f" pass funnel(d={manifold.n}) to use that dimension")
  dt = manifold.dtype
  sample = jax.jit(E.funnel_sample, static_argnums=(1, 2, 3, 4))
  return dict(log_prob=lambda x: E.funnel_log_prob(x, sigma), log_z=0.0,
              sample=lambda key, num: sample(key, int(num), d, sigma, dt),
              observables=E.funnel_observables, exact=E.funnel_exact(sigma))


def _build_manywell(name, manifold, p):
  from geogen.targets import euclidean as E
  from geogen.targets.lattice import _np_rng
  d = _as_int(name, "d", p["d"], 2)
  if d % 2:
    raise ValueError(f"target {name!r}: d must be even (pairs of coordinates), got {d}")
  _require(name, manifold, Euclidean, f"euclidean({d})")
  if manifold.n != d:
    raise ValueError(f"target {name!r} (d={d}) lives on euclidean({d}), got {manifold.spec!r};"
                     f" pass manywell(d={manifold.n}) to use that dimension")
  dt = manifold.dtype

  def sample(key, num):
    return jnp.asarray(E.manywell_sample_np(_np_rng(key), int(num), d), dt)

  return dict(log_prob=E.manywell_log_prob, log_z=E.manywell_log_z(d), sample=sample,
              observables=E.manywell_observables, exact=E.manywell_exact())


def _vmf_builder(sphere_n):
  def build(name, manifold, p):
    from geogen.targets import spheres
    what = f"sphere({sphere_n})" if sphere_n else "sphere(n)"
    _require(name, manifold, Sphere, what)
    if sphere_n and manifold.n != sphere_n:
      raise ValueError(f"target {name!r} lives on {what}, got {manifold.spec!r} "
                       f"(use 'vmf_mixture' for any sphere)")
    kappa = float(p["kappa"])
    if not kappa >= 0:
      raise ValueError(f"target {name!r}: kappa must be >= 0, got {kappa}")
    return spheres.make_vmf_mixture(manifold, _as_int(name, "components", p["components"], 1),
                                    kappa, _as_int(name, "seed", p["seed"], 0))
  return build


def _lattice_builder(group):
  def build(name, manifold, p):
    from geogen.targets import lattice
    beta = float(p["beta"])
    if not beta > 0:
      raise ValueError(f"target {name!r}: beta must be > 0, got {beta}")
    L = p.get("L")
    L = None if L is None else _as_int(name, "L", L, 1)
    return lattice.make_lattice(group, manifold, L=L, beta=beta)
  return build


# name -> (builder, default parameters; None = optional without default)
_REGISTRY = {
    "gmm25": (_build_gmm25, {}),
    "funnel": (_build_funnel, {"d": 10, "sigma": 3.0}),
    "manywell": (_build_manywell, {"d": 32}),
    "vmf_mixture": (_vmf_builder(None), {"components": 4, "kappa": 10.0, "seed": 0}),
    "vmf_mixture_s2": (_vmf_builder(2), {"components": 4, "kappa": 10.0, "seed": 0}),
    "vmf_mixture_s15": (_vmf_builder(15), {"components": 4, "kappa": 50.0, "seed": 0}),
    "lattice_u1": (_lattice_builder("u1"), {"L": None, "beta": 1.0}),
    "lattice_su2": (_lattice_builder("su2"), {"L": None, "beta": 2.0}),
    "lattice_su3": (_lattice_builder("su3"), {"L": None, "beta": 3.0}),
}


def names() -> tuple:
  """The registered target names."""
  return tuple(_REGISTRY)


def _valid_names() -> str:
  parts = []
  for n, (_, d) in _REGISTRY.items():
    parts.append(n + ("(" + ", ".join(f"{k}={v}" if v is not None else k for k, v in d.items())
                      + ")" if d else ""))
  return ", ".join(parts)


_NAME_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$")
_PARAM_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_spec(spec: str):
  """'name(k=v, ...)' -> (name, {k: float}).  Raises ValueError on malformed specs."""
  m = _NAME_RE.match(spec)
  if m is None:
    raise ValueError(f"malformed target spec {spec!r}; {GRAMMAR}")
  name, body = m.group(1), m.group(2)
  params = {}
  if body is not None and body.strip():
    for item in body.split(","):
      pm = _PARAM_RE.match(item)
      if pm is None:
        raise ValueError(f"malformed parameter {item.strip()!r} in target spec {spec!r}; "
                         f"{GRAMMAR}")
      if pm.group(1) in params:
        raise ValueError(f"parameter {pm.group(1)!r} given twice in target spec {spec!r}")
      params[pm.group(1)] = float(pm.group(2))
  return name, params


def _load_function(spec: str):
  mod_name, _, fn_name = spec.partition(":")
  mod_name, fn_name = mod_name.strip(), fn_name.strip()
  if not mod_name or not fn_name:
    raise ValueError(f"malformed target spec {spec!r}: expected 'module:function'; {GRAMMAR}")
  try:
    mod = importlib.import_module(mod_name)
  except ImportError as e:
    raise ValueError(f"target {spec!r}: cannot import module {mod_name!r} ({e}); it must be "
                     f"importable from PYTHONPATH.  Registered targets: {_valid_names()}"
                     ) from None
  fn = getattr(mod, fn_name, None)
  if fn is None or not callable(fn):
    raise ValueError(f"target {spec!r}: module {mod_name!r} has no callable {fn_name!r}")
  return fn


def _check_user_log_prob(spec, fn, manifold):
  """Shape-check a user log_prob with abstract evaluation on a batch of 3 points."""
  x = jax.ShapeDtypeStruct((3,) + tuple(manifold.shape), manifold.dtype)
  try:
    out = jax.eval_shape(fn, x)
  except Exception as e:  # any failure of the user's code is reported with its message
    raise ValueError(f"target {spec!r}: calling it on a (3, {', '.join(map(str, manifold.shape))})"
                     f" batch of {manifold.spec} points failed: {type(e).__name__}: {e}") from None
  if not hasattr(out, "shape") or tuple(out.shape) != (3,):
    got = getattr(out, "shape", type(out).__name__)
    raise ValueError(f"target {spec!r} must map (B, *M.shape) points to (B,) log-densities; "
                     f"for B = 3 on {manifold.spec} it returned {got}")
  if not jnp.issubdtype(out.dtype, jnp.floating):
    raise ValueError(f"target {spec!r} must return real floating log-densities, got {out.dtype}")


def get_target(spec: str, manifold) -> Target:
  """Build the target `spec` (registered name with parameters, or 'module:function') on
  `manifold` (a Manifold or a from_spec string).  Raises ValueError naming the problem."""
  if isinstance(manifold, str):
    manifold = from_spec(manifold)
  if not isinstance(manifold, Manifold):
    raise ValueError(f"get_target needs a Manifold (or a manifold spec string), got {manifold!r}")
  if not isinstance(spec, str) or not spec.strip():
    raise ValueError(f"target spec must be a non-empty string, got {spec!r}; registered: "
                     f"{_valid_names()}; or 'module:function'")
  spec = spec.strip()
  if ":" in spec:
    fn = _load_function(spec)
    _check_user_log_prob(spec, fn, manifold)
    return Target(name=spec, manifold=manifold, log_prob=jax.jit(fn))
  name, params = parse_spec(spec)
  if name not in _REGISTRY:
    raise ValueError(f"unknown target {name!r}; registered: {_valid_names()}; or "
                     f"'module:function' for a user log-density")
  build, defaults = _REGISTRY[name]
  unknown = sorted(set(params) - set(defaults))
  if unknown:
    raise ValueError(f"target {name!r} has no parameter(s) {unknown}; valid: "
                     f"{sorted(defaults) or 'none'}")
  full = {k: v for k, v in defaults.items() if v is not None}
  full.update(params)
  parts = build(name, manifold, full)
  return Target(name=spec, manifold=manifold, log_prob=jax.jit(parts["log_prob"]),
                log_z=None if parts["log_z"] is None else float(parts["log_z"]),
                sample=parts["sample"],
                observables=None if parts["observables"] is None else jax.jit(parts["observables"]),
                exact_observables=dict(parts["exact"]))


__all__ = ["Target", "get_target", "names", "parse_spec", "autodiff_score", "GRAMMAR"]
