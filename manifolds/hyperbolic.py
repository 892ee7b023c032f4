"""Hyperbolic space H^n, Lorentz model.  (Being written: geometry + heat kernel.)"""
from manifolds.base import Manifold


class Hyperbolic(Manifold):
  compact = False

  def __init__(self, n: int):
    if int(n) != n or n < 2:
      raise ValueError(f"Hyperbolic(n) needs an integer n >= 2, got {n!r}")
    self.n = self.dim = int(n)
    self.shape = (self.n + 1,)

  @property
  def spec(self):
    return f"hyperbolic({self.n})"
