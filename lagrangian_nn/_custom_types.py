"""Type aliases shared across the package (jaxtyping)."""

from collections.abc import Callable
from typing import Any, TypeAlias

from jaxtyping import Array, ArrayLike, Float, PyTree, Scalar

RealScalarLike: TypeAlias = float | int | Float[ArrayLike, ""]
Position: TypeAlias = PyTree[Float[Array, "..."]]
Velocity: TypeAlias = PyTree[Float[Array, "..."]]
Lagrangian: TypeAlias = Callable[[Any, Any, Any], Scalar]
Loss: TypeAlias = Callable[[Any], Scalar]

__all__ = [
    "Array",
    "Float",
    "Lagrangian",
    "Loss",
    "Position",
    "PyTree",
    "RealScalarLike",
    "Scalar",
    "Velocity",
]
