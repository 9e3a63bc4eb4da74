"""Small pytree algebra used throughout the package.

Positions and velocities are arbitrary pytrees of floating arrays (a vector, a list of
weight matrices, an `eqx.Module`'s parameters). These helpers treat such a pytree as one
long vector without ever flattening it into a single array.
"""

import functools as ft
import operator

import jax.numpy as jnp
import jax.tree_util as jtu


def tree_dot(a, b):
    """Euclidean inner product $\\langle a, b\\rangle$ summed over all leaves."""
    leaves = [jnp.vdot(x, y) for x, y in zip(jtu.tree_leaves(a), jtu.tree_leaves(b))]
    if not leaves:
        return jnp.asarray(0.0)
    return ft.reduce(operator.add, leaves)


def tree_sub(a, b):
    return jtu.tree_map(operator.sub, a, b)


def tree_axpy(c, x, y):
    """Returns `c * x + y`."""
    return jtu.tree_map(lambda xi, yi: c * xi + yi, x, y)


def tree_size(a) -> int:
    return sum(int(x.size) for x in jtu.tree_leaves(a))


def tree_all_finite(a):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jtu.tree_leaves(a)]
    if not leaves:
        return jnp.asarray(True)
    return ft.reduce(jnp.logical_and, leaves)


def tree_max_abs(a):
    leaves = [jnp.max(jnp.abs(x)) for x in jtu.tree_leaves(a) if x.size > 0]
    if not leaves:
        return jnp.asarray(0.0)
    return ft.reduce(jnp.maximum, leaves)


def tree_dtype(a):
    """The floating dtype shared by the leaves of `a` (by JAX's promotion rules)."""
    leaves = jtu.tree_leaves(a)
    if not leaves:
        return jnp.result_type(float)
    return jnp.result_type(*leaves)
