"""Validation of user input, shared by the whole package.

Every check raises an exception that names the argument and says what it received.
Concrete values are checked in Python, before anything is compiled (`ValueError`);
values that are traced (under `jit` or `vmap`) are checked once, before any loop, with
`eqx.error_if`, and never inside a per-step hot path.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ._custom_types import RealScalarLike
from ._tree import tree_all_finite


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


@jax.jit
def _nonfinite_counts(leaves):
    """The number of non-finite entries of each leaf, computed where the leaves live
    (one pass over each; how many of them are NaN is counted only for a leaf that has
    any, on the way to the error)."""
    return jnp.stack([jnp.sum(~jnp.isfinite(x)) for x in leaves])


def check_finite_trees(*named) -> None:
    """`check_finite_tree` for several `(tree, name)` pairs at once.

    Host arrays (numpy, Python numbers) are counted on the host. Device arrays are
    counted on their device by one compiled reduction over all of them, and only the
    counts come back: one small device-to-host transfer in all, where copying every
    leaf to the host would cost one synchronisation (and a full copy) per leaf, which
    on a GPU is milliseconds per `simulate` call."""
    entries, device = [], []
    for a, name in named:
        for path, leaf in jtu.tree_flatten_with_path(a)[0]:
            if isinstance(leaf, jax.core.Tracer) or not eqx.is_array_like(leaf):
                continue
            if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
                continue
            where = name + (jtu.keystr(path) if path else "")
            if isinstance(leaf, jax.Array):
                entries.append((where, leaf, len(device)))
                device.append(leaf)
            else:
                x = np.asarray(leaf)
                entries.append((where, x, (np.isnan(x).sum(), np.isinf(x).sum())))
    counts = None
    if device:
        # concrete arrays, also when captured inside someone's `jit`: evaluate now
        with jax.ensure_compile_time_eval():
            counts = np.asarray(_nonfinite_counts(device))
    for where, x, count in entries:
        if isinstance(count, int):
            if not counts[count]:
                continue
            x = np.asarray(x)
            count = (np.isnan(x).sum(), np.isinf(x).sum())
        n_nan, n_inf = (int(c) for c in count)
        if n_nan or n_inf:
            raise ValueError(
                f"`{where}` must be finite; it has {n_nan} NaN and {n_inf} inf "
                f"entries (of {x.size}, shape {list(x.shape)})."
            )


def check_finite_tree(a, name: str) -> None:
    """Raises `ValueError` if a concrete leaf of `a` holds NaN or inf, saying which
    leaf and how many entries. Traced leaves (under `jit`/`vmap`) are skipped; see
    `error_if_not_finite` for those."""
    check_finite_trees((a, name))


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


def check_scalar_lagrangian(L, t, q, qdot, name: str = "L") -> None:
    """Raises `ValueError` unless `L(t, q, qdot)` is a floating scalar (at trace time)."""
    try:
        out = jax.eval_shape(L, t, q, qdot)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"Calling the Lagrangian `{name}(t, q, qdot)` failed while tracing: {e}"
        ) from e
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"The Lagrangian `{name}` must return a scalar; it returned {shape}. "
            "Reduce it, e.g. with `jnp.sum`."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(
            f"The Lagrangian `{name}` must return a floating scalar; got dtype "
            f"{out.dtype}."
        )


def as_positive_scalar(value: RealScalarLike, name: str):
    """Validates a strictly positive scalar hyperparameter such as a mass `kappa`.

    Concrete values are checked eagerly (`ValueError`); traced values (under `jit` or
    `vmap`) are checked at run time with `eqx.error_if`.
    """
    arr = jnp.asarray(value)
    if arr.shape != ():
        raise ValueError(
            f"`{name}` must be a scalar; got an array of shape {arr.shape}."
        )
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(float)
    if isinstance(arr, jax.core.Tracer):
        return eqx.error_if(arr, arr <= 0, f"`{name}` must be > 0.")
    concrete = float(arr)
    if not concrete > 0:
        raise ValueError(f"`{name}` must be > 0; got {name} = {concrete!r}.")
    return arr


def check_loss(loss) -> None:
    if not callable(loss):
        raise ValueError(f"`loss` must be a callable loss(q) -> scalar; got {loss!r}.")


_BACKWARD = (
    "Integrating backwards in time is not supported: `t1` must be >= `t0`, and `ts` "
    "non-decreasing within [t0, t1]."
)


def is_traced(x) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jtu.tree_leaves(x))


def check_times(t0, t1, ts) -> None:
    """Raises `ValueError` for a concrete time span that is not finite or runs
    backwards, or concrete save times `ts` that are not finite, not non-decreasing, or
    outside `[t0, t1]`. Traced values are left to `error_if_bad_times`."""
    for name, value in (("t0", t0), ("t1", t1)):
        if jnp.shape(value) != ():
            raise ValueError(
                f"`{name}` must be a scalar; got shape {jnp.shape(value)}."
            )
    if ts is not None and (jnp.ndim(ts) != 1 or jnp.shape(ts)[0] == 0):
        raise ValueError(
            f"`ts` must be a non-empty 1-D array; got shape {jnp.shape(ts)}."
        )
    if is_traced((t0, t1)):
        return
    a, b = float(np.asarray(t0)), float(np.asarray(t1))
    for name, value in (("t0", a), ("t1", b)):
        if not np.isfinite(value):
            raise ValueError(f"`{name}` must be finite; got {name} = {value!r}.")
    if b < a:
        raise ValueError(
            f"`t1` must be >= `t0`; got t0 = {a!r} and t1 = {b!r}. Integrating "
            "backwards in time is not supported."
        )
    if ts is None or is_traced(ts):
        return
    x = np.asarray(ts)  # one transfer
    check_finite_tree(x, "ts")
    steps = np.diff(x)
    if np.any(steps < 0):
        i = int(np.argmax(steps < 0))
        raise ValueError(
            f"`ts` must be non-decreasing; got ts[{i + 1}] = {float(x[i + 1])!r} after "
            f"ts[{i}] = {float(x[i])!r}. Integrating backwards in time is not "
            "supported."
        )
    if x.size and (x.min() < a or x.max() > b):
        raise ValueError(
            f"`ts` must lie within [t0, t1] = [{a!r}, {b!r}]; got ts from "
            f"{float(x.min())!r} to {float(x.max())!r}."
        )


def error_if_bad_times(t0, t1, ts):
    """The checks of `check_times` for traced times, once, before the solve."""
    if not is_traced((t0, t1, ts)):
        return t1, ts
    bad = ~(jnp.isfinite(t0) & jnp.isfinite(t1) & (t1 >= t0))
    if ts is not None:
        bad = bad | ~jnp.all(jnp.isfinite(ts) & (ts >= t0) & (ts <= t1))
        bad = bad | jnp.any(jnp.diff(ts) < 0)
        ts = eqx.error_if(ts, bad, _BACKWARD)
    t1 = eqx.error_if(t1, bad, _BACKWARD)
    return t1, ts


def error_if_not_finite(x, name: str):
    """For a traced initial state: a run-time error, once, before the solve."""
    if not is_traced(x):
        return x
    return eqx.error_if(
        x, ~tree_all_finite(x), f"`{name}` must be finite; it holds NaN or inf."
    )
