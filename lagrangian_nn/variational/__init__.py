r"""Variational integrators derived from any Lagrangian (discrete mechanics, Marsden &
West 2001), with exactly conserved discrete Noether charges.

Write `L(t, q, qdot)`, pick a discrete Lagrangian (`Midpoint`, `Trapezoid`: second
order; `Lobatto`: fourth order), and `integrate` it: the result is an
`lnn.Trajectory`, symplectic (conformally symplectic for `lnn.Conformal`), whose
discrete Noether charges are conserved to rounding.
"""

from ._charges import (
    discrete_invariance_residual as discrete_invariance_residual,
    discrete_noether_charge as discrete_noether_charge,
)
from ._discrete import (
    AbstractDiscreteLagrangian as AbstractDiscreteLagrangian,
    Lobatto as Lobatto,
    Midpoint as Midpoint,
    Trapezoid as Trapezoid,
)
from ._integrate import (
    integrate as integrate,
    step as step,
    velocity as velocity,
)
