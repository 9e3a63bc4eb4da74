"""Running an optax optimiser under `lax.scan` while tracking quantities."""

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._validate import check_floating_tree


class OptimizerDescription(eqx.Module):
    """The base of objects that describe an optimiser and hold its
    `optax.GradientTransformation` as `optimizer` (`lnn.optim.SGDChain`): `run`
    accepts them in place of the transformation."""

    @property
    @abc.abstractmethod
    def optimizer(self) -> optax.GradientTransformation:
        """The described optimiser as an `optax.GradientTransformation`."""


class Step(eqx.Module):
    r"""What a tracked function sees at step $k$ (after the update).

    - `k`: the step index (1 for the first update).
    - `t`: the continuous time $t = k\,\Delta t$ (`dt` of `run`).
    - `q_prev`, `q`: the parameters before and after the update.
    - `grad`: the gradient that the update used.
    - `opt_state`: the optimiser state after the update.
    """

    k: jax.Array
    t: jax.Array
    q_prev: optax.Params
    q: optax.Params
    grad: optax.Updates
    opt_state: optax.OptState


class RunResult(eqx.Module):
    """The output of `lnn.optim.run`: final parameters, and the tracked quantities and
    the losses at every step (leading axis `steps`), with their times `ts`."""

    params: optax.Params
    ts: jax.Array
    loss: jax.Array
    tracked: dict


# Tracked leaves up to this size are packed into one array per dtype at every step,
# so that the scan writes one output row per step instead of one per leaf.
_PACK_SIZE = 256


def _pack(tree):
    """The small leaves of `tree` concatenated into one vector per dtype, and what
    `_unpack` needs to split them again (static)."""
    leaves, treedef = jax.tree.flatten(tree)
    groups, layout = {}, []
    for x in leaves:
        x = jnp.asarray(x)
        numeric = jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_
        if numeric and x.size <= _PACK_SIZE:
            parts = groups.setdefault(x.dtype, [])
            layout.append((x.dtype, len(parts), x.shape))
            parts.append(jnp.ravel(x))
        else:
            layout.append(None)
    big = [jnp.asarray(x) for x, spec in zip(leaves, layout) if spec is None]
    packed = {str(d): jnp.concatenate(p) for d, p in groups.items()}
    return (packed, big), (treedef, tuple(layout))


def _unpack(packed, big, spec, lead):
    """The inverse of `_pack` on arrays with leading axes `lead`."""
    treedef, layout = spec
    offsets, leaves, big = {}, [], iter(big)
    for item in layout:
        if item is None:
            leaves.append(next(big))
            continue
        dtype, _, shape = item
        start = offsets.get(dtype, 0)
        size = math.prod(shape)
        offsets[dtype] = start + size
        part = packed[str(dtype)][..., start : start + size]
        leaves.append(part.reshape(*lead, *shape))
    return jax.tree.unflatten(treedef, leaves)


@eqx.filter_jit
def _run(optimizer, loss, q0, steps, dt, track, batches=None):
    state0 = optimizer.init(q0)
    dtype = jnp.result_type(*jax.tree.leaves(q0))
    spec = []

    def body(carry, xs):
        k, batch = xs
        q, state = carry
        f = loss if batches is None else (lambda p: loss(p, batch))
        value, grad = jax.value_and_grad(f)(q)
        updates, state = optimizer.update(grad, state, q)
        q_new = optax.apply_updates(q, updates)
        info = Step(k, k.astype(dtype) * dt, q, q_new, grad, state)
        out = {name: fn(info) for name, fn in track.items()}
        packed, layout = _pack((value, out))
        spec.append(layout)
        return (q_new, state), packed

    ks = jnp.arange(1, steps + 1)
    (q, _), (packed, big) = jax.lax.scan(body, (q0, state0), (ks, batches))
    losses, tracked = _unpack(packed, big, spec[-1], (steps,))
    return q, ks.astype(dtype) * dt, losses, tracked


def run(
    optimizer: optax.GradientTransformation,
    loss: Callable,
    q0,
    steps: int,
    *,
    track: dict[str, Callable] | None = None,
    dt=None,
    batches=None,
) -> RunResult:
    r"""Runs any optax optimiser for `steps` steps under `lax.scan`, recording tracked
    quantities at every step.

    **Arguments:**

    - `optimizer`: an `optax.GradientTransformation`, or an `lnn.optim.SGDChain` (its
      `optimizer` is run). The compiled run is reused for the same optimiser object,
      and for `lnn.optim`'s own optimisers (`gd`, `newtonian`, `nesterov`,
      `sgd_chain`) with new numbers, which they hold as traced arrays. optax's own
      transformations close over their numbers, so a new `optax.adam(...)` compiles
      again: build it once outside a loop.
    - `loss`: `loss(q) -> scalar`. An `eqx.Module` holding its data as arrays is traced,
      so new data of the same shapes does not recompile.
    - `q0`: initial parameters (pytree of floating arrays).
    - `steps`: number of steps.
    - `track`: `{name: fn}` with `fn(step: lnn.optim.Step) -> array`, evaluated after
      every step.
    - `dt`: the time of one step, for the time map $t = k\,dt$. Defaults to $\eta$ for
      `gd` and $\sqrt\eta$ for `newtonian` and `nesterov`; required for other optimisers.
    - `batches`: optional mini-batches, a pytree of arrays whose leaves have a leading
      axis of length `steps`; step `k` then uses the gradient of `loss(q, batch_k)`
      (a different batch at every step, as in SGD). Default: `loss(q)` at every step.

    **Returns:** an `lnn.optim.RunResult` (`params`, `ts`, `loss`, `tracked`), where
    `loss[k-1]` is the loss at the parameters *before* step `k`.
    """
    if isinstance(optimizer, OptimizerDescription):
        optimizer = optimizer.optimizer
    if not (
        callable(getattr(optimizer, "init", None))
        and callable(getattr(optimizer, "update", None))
    ):
        raise ValueError(
            "`optimizer` must be an optax.GradientTransformation (with `init` and "
            f"`update`) or an lnn.optim.SGDChain; got {optimizer!r:.200}."
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"`steps` must be a positive int; got {steps!r}.")
    if not callable(loss):
        raise ValueError(f"`loss` must be a callable loss(q); got {loss!r}.")
    check_floating_tree(q0, "q0")
    track = {} if track is None else dict(track)
    for name, fn in track.items():
        if not callable(fn):
            raise ValueError(f"`track[{name!r}]` must be callable; got {fn!r}.")
    if batches is not None:
        leaves = jax.tree.leaves(batches)
        bad = [jnp.shape(x) for x in leaves if jnp.shape(x)[:1] != (steps,)]
        if not leaves or bad:
            raise ValueError(
                f"`batches` must be a pytree of arrays with a leading axis of length "
                f"`steps` = {steps}; got leaves of shapes "
                f"{[jnp.shape(x) for x in leaves]}."
            )
    if dt is None:
        dt = getattr(optimizer.update, "lnn_time_step", None)
        if dt is None:
            raise ValueError(
                "`dt` is required for optimisers not built by `lnn.optim`; got None."
            )
    q, ts, losses, tracked = _run(
        optimizer, loss, q0, steps, jnp.asarray(dt), track, batches
    )
    return RunResult(q, ts, losses, tracked)
