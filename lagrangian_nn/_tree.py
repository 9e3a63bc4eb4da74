"""Small pytree algebra used throughout the package.

Positions and velocities are arbitrary pytrees of floating arrays (a vector, a list of
weight matrices, an `eqx.Module`'s parameters). These helpers treat such a pytree as one
long vector without ever flattening it into a single array.
"""

import functools as ft
import operator

import equinox as eqx
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


def describe(a) -> str:
    """A short human-readable description of a pytree's structure and shapes."""
    shapes = jtu.tree_map(
        lambda x: f"{jnp.result_type(x)}{list(jnp.shape(x))}",
        a,
        is_leaf=lambda x: eqx.is_array_like(x),
    )
    text = str(shapes)
    return text if len(text) < 400 else text[:400] + "..."


def check_floating_tree(a, name: str) -> None:
    """Raises `ValueError` unless `a` is a non-empty pytree of floating arrays."""
    leaves = jtu.tree_leaves(a)
    if not leaves:
        raise ValueError(f"`{name}` must be a non-empty pytree of arrays; got {a!r}.")
    for leaf in leaves:
        if not eqx.is_array_like(leaf):
            raise ValueError(
                f"`{name}` must be a pytree of floating arrays; it contains a leaf of "
                f"type {type(leaf).__name__}: {leaf!r}."
            )
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(
                f"`{name}` must be a pytree of floating arrays; it contains a leaf of "
                f"dtype {jnp.result_type(leaf)}. Cast it, e.g. with "
                "`jnp.asarray(x, dtype=float)`."
            )


def check_same_structure(a, b, name_a: str, name_b: str) -> None:
    """Raises `ValueError` unless `a` and `b` have the same structure and shapes."""
    sa, sb = jtu.tree_structure(a), jtu.tree_structure(b)
    if sa != sb:
        raise ValueError(
            f"`{name_b}` must have the same pytree structure as `{name_a}`; got "
            f"`{name_a}` = {describe(a)} and `{name_b}` = {describe(b)}."
        )
    for x, y in zip(jtu.tree_leaves(a), jtu.tree_leaves(b)):
        if jnp.shape(x) != jnp.shape(y):
            raise ValueError(
                f"`{name_b}` must have the same shapes as `{name_a}`; got "
                f"`{name_a}` = {describe(a)} and `{name_b}` = {describe(b)}."
            )


def as_time(t, dtype):
    """Converts a time to a scalar array of the state's floating dtype."""
    t = jnp.asarray(t)
    if t.shape != ():
        raise ValueError(f"The time `t` must be a scalar; got shape {t.shape}.")
    return t.astype(dtype)
