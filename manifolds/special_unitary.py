"""SU(n).  (Being written: geometry + heat kernel.)"""
from manifolds.base import Manifold


def eigen_angles(u):
  raise NotImplementedError


class SpecialUnitary(Manifold):
  is_complex = True

  def __init__(self, n: int):
    if int(n) != n or n < 2:
      raise ValueError(f"SpecialUnitary(n) needs an integer n >= 2, got {n!r}")
    self.n = int(n)
    self.dim = self.n**2 - 1
    self.shape = (self.n, self.n)

  @property
  def spec(self):
    return f"su({self.n})"
