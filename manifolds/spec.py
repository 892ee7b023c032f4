"""`from_spec`: build a manifold from a string such as ``'sphere(2)'`` or ``'su(2)^64'``."""
from __future__ import annotations

import re

from manifolds.base import Manifold

GRAMMAR = ("spec := name '(' n ')' [ '^' k ]   with name in "
           "{sphere, hyperbolic, su, torus, euclidean}, integers n >= 1 (n >= 2 for hyperbolic "
           "and su), k >= 1; e.g. 'sphere(2)', 'hyperbolic(5)', 'su(3)', 'torus(7)', "
           "'euclidean(10)', 'su(2)^64'")

_RE = re.compile(r"^\s*([a-zA-Z_]+)\s*\(\s*(\d+)\s*\)\s*(?:\^\s*(\d+)\s*)?$")


def _constructors():
  from manifolds.flat import Euclidean, Torus
  from manifolds.hyperbolic import Hyperbolic
  from manifolds.special_unitary import SpecialUnitary
  from manifolds.sphere import Sphere
  return {"sphere": Sphere, "hyperbolic": Hyperbolic, "su": SpecialUnitary,
          "torus": Torus, "euclidean": Euclidean}


def from_spec(spec: str) -> Manifold:
  """Parse a manifold spec string.  Raises ValueError listing the grammar."""
  from manifolds.power import Power
  if not isinstance(spec, str):
    raise ValueError(f"manifold spec must be a string, got {spec!r}; {GRAMMAR}")
  m = _RE.match(spec)
  ctors = _constructors()
  if m is None or m.group(1).lower() not in ctors:
    raise ValueError(f"malformed manifold spec {spec!r}; {GRAMMAR}")
  name, n, k = m.group(1).lower(), int(m.group(2)), m.group(3)
  try:
    base = ctors[name](n)
  except ValueError as e:
    raise ValueError(f"invalid manifold spec {spec!r}: {e}; {GRAMMAR}") from None
  if k is None:
    return base
  k = int(k)
  if k < 1:
    raise ValueError(f"invalid manifold spec {spec!r}: power k must be >= 1; {GRAMMAR}")
  return Power(base, k)
