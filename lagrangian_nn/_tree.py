"""Small pytree algebra used throughout the package.

Positions and velocities are arbitrary pytrees of floating arrays (a vector, a list of
weight matrices, an `eqx.Module`'s parameters). These helpers treat such a pytree as one
long vector without ever flattening it into a single array.
"""

import functools as ft
import operator

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np


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


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def as_array_if_numbers(a, name: str):
    """Converts a (possibly nested) list or tuple of Python numbers, such as
    `[1.0, 2.0]`, to one array of the default floating dtype, as `jnp.asarray` would.
    Anything else (an array, a tuple of arrays, a dict, a module) is returned as it is:
    a tuple or list that holds an array is a pytree of positions, not a vector."""
    if not isinstance(a, list | tuple):
        return a
    leaves = jtu.tree_leaves(a)
    if not leaves or not all(_is_number(x) for x in leaves):
        return a
    try:
        return jnp.asarray(np.asarray(a, dtype=float), dtype=jnp.result_type(float))
    except ValueError as e:
        raise ValueError(
            f"`{name}` is a list of numbers but not a rectangular one, so it cannot be "
            f"read as an array: {e}"
        ) from e


def check_finite_tree(a, name: str) -> None:
    """Raises `ValueError` if a concrete leaf of `a` holds NaN or inf, saying which
    leaf and how many entries. Traced leaves (under `jit`/`vmap`) are skipped; see
    `error_if_not_finite` for those."""
    paths, _ = jtu.tree_flatten_with_path(a)
    for path, leaf in paths:
        if isinstance(leaf, jax.core.Tracer) or not eqx.is_array_like(leaf):
            continue
        x = np.asarray(leaf)
        if not np.issubdtype(x.dtype, np.inexact):
            continue
        n_nan = int(np.count_nonzero(np.isnan(x)))
        n_inf = int(np.count_nonzero(np.isinf(x)))
        if n_nan or n_inf:
            where = jtu.keystr(path) if path else ""
            raise ValueError(
                f"`{name}{where}` must be finite; it has {n_nan} NaN and {n_inf} inf "
                f"entries (of {x.size}, shape {list(x.shape)})."
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
