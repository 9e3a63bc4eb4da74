"""Checks as data: a check is a `(flag, message)` pair, `flag` a scalar boolean that
is true when the check failed.

Code that must not branch on a value in a per-step hot path (a conditional or a host
callback there costs one device-to-host synchronisation per step on a GPU) returns its
checks instead of raising, and the caller decides when to look: `poison` turns a result
into NaN where a check failed (a `select`), `error_if` raises once, outside any loop,
and `raise_now` raises at once for concrete flags (an eager call).
"""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu


def any_failed(checks):
    """One scalar flag: whether any check of `checks` failed."""
    flag = jnp.asarray(False)
    for bad, _ in checks:
        flag = flag | bad
    return flag


def poison(x, checks):
    """`x`, or NaN everywhere if a check failed: a `select`, never a branch."""
    if not checks:
        return x
    bad = any_failed(checks)
    return jtu.tree_map(lambda leaf: jnp.where(bad, jnp.nan, leaf), x)


def raise_now(checks) -> None:
    """For concrete flags (an eager call): raises the first failed check's message."""
    for bad, message in checks:
        if bool(bad):
            raise eqx.EquinoxRuntimeError(message)


def error_if(x, checks, pred=True):
    """`x` carrying the checks as one `eqx.branched_error_if` (the first failed
    check's message), raised only where `pred` also holds. For use once, outside any
    per-step loop."""
    if not checks:
        return x
    flags = jnp.stack([jnp.asarray(bad) for bad, _ in checks])
    index = jnp.argmax(flags)
    return eqx.branched_error_if(
        x, pred & jnp.any(flags), index, [message for _, message in checks]
    )
