"""Unit sphere S^n in R^{n+1}.  (Being written: geometry + heat kernel.)"""
from manifolds.base import Manifold


class Sphere(Manifold):
  def __init__(self, n: int):
    if int(n) != n or n < 1:
      raise ValueError(f"Sphere(n) needs an integer n >= 1, got {n!r}")
    self.n = self.dim = int(n)
    self.shape = (self.n + 1,)

  @property
  def spec(self):
    return f"sphere({self.n})"
