"""lagrangian_nn: training a neural network is mechanics.

Write a Lagrangian `L(t, q, qdot)` in JAX, derive its Euler–Lagrange equations by
automatic differentiation, integrate them with diffrax, and compute Noether charges of
any generator.
"""

import importlib.metadata

from . import (
    data as data,
    dynamics as dynamics,
    nn as nn,
    optim as optim,
    progress as progress,
    symmetry as symmetry,
    variational as variational,
)
from ._ensemble import simulate_ensemble as simulate_ensemble
from ._euler_lagrange import (
    EulerLagrange as EulerLagrange,
    euler_lagrange as euler_lagrange,
)
from ._lagrangian import (
    AbstractLagrangian as AbstractLagrangian,
    Conformal as Conformal,
)
from ._noether import (
    Generator as Generator,
    energy as energy,
    invariance_residual as invariance_residual,
    noether_charge as noether_charge,
    symmetry_residual as symmetry_residual,
)
from ._simulate import simulate as simulate
from ._solver import FusedTsit5 as FusedTsit5
from ._trajectory import Trajectory as Trajectory

try:
    __version__ = importlib.metadata.version("lagrangian_nn")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"
