"""geogen manifolds: geometry and exact heat kernels, in JAX (no flax).

    from manifolds import Sphere, Hyperbolic, SpecialUnitary, Torus, Euclidean, Power, from_spec
"""
from manifolds.base import Manifold
from manifolds.flat import Euclidean, Torus
from manifolds.hyperbolic import Hyperbolic
from manifolds.power import Power
from manifolds.special_unitary import SpecialUnitary, eigen_angles
from manifolds.sphere import Sphere
from manifolds.spec import from_spec

__all__ = ["Manifold", "Sphere", "Hyperbolic", "SpecialUnitary", "Torus", "Euclidean", "Power",
           "from_spec", "eigen_angles"]
