"""GD, ND (eq. 21) and NAGD (eq. 20) as optax gradient transformations."""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._validate import as_positive_scalar


def _check_lr(lr):
    if isinstance(lr, int | float) and not lr > 0:
        raise ValueError(f"`lr` must be > 0; got lr = {lr!r}.")
    return as_positive_scalar(lr, "lr")


def _sqrt(lr):
    r"""$\sqrt\eta$, rounded once from double precision for a concrete `lr` (a
    weakly typed array, as `lr` is, so it takes the dtype of what it multiplies)."""
    if isinstance(lr, jax.core.Tracer):
        return jnp.sqrt(lr)
    return jnp.asarray(math.sqrt(float(lr)))


# The `init` and `update` functions of these optimisers are `eqx.Module`s that hold
# their numbers ($\eta$, $\sqrt\eta$, the start step, an initial velocity) as arrays.
# `lnn.optim.run` (an `eqx.filter_jit`) then traces them: a sweep over learning rates
# compiles once, where closures over the numbers would compile once per value.


def _empty_init(params):
    del params
    return optax.EmptyState()


class _Update(eqx.Module):
    """An optimiser's `update`: its step `rule(lr, updates, state, params)` (a
    module-level function, static) with the learning rate traced, and the
    continuous-time step `lnn_time_step` that `lnn.optim.run` maps step k to t = k·dt
    with."""

    lr: jax.Array
    lnn_time_step: jax.Array
    rule: Callable = eqx.field(static=True)

    def __call__(self, updates, state, params=None):
        return self.rule(self.lr, updates, state, params)


def _gd_rule(lr, updates, state, params):
    del params
    return jax.tree.map(lambda g: -lr * g, updates), state


def gd(lr) -> optax.GradientTransformation:
    r"""Gradient descent $w_{k+1} = w_k - \eta\nabla L(w_k)$: gradient flow discretised
    with time step $\eta$ ($t \approx k\eta$).

    **Arguments:** `lr`: the learning rate $\eta > 0$ (traced by `lnn.optim.run`: a
    new value does not recompile).

    **Returns:** an `optax.GradientTransformation`.
    """
    lr = _check_lr(lr)
    return optax.GradientTransformation(_empty_init, _Update(lr, lr, _gd_rule))


class MomentumState(NamedTuple):
    """`previous`: the last displacement $w_{k+1} - w_k$; `count`: the step index."""

    previous: optax.Updates
    count: jax.Array


class _NewtonianInit(eqx.Module):
    h: jax.Array
    velocity: Any

    def __call__(self, params):
        if self.velocity is None:
            previous = jax.tree.map(jnp.zeros_like, params)
        else:
            previous = jax.tree.map(
                lambda p, v: self.h * jnp.asarray(v, p.dtype), params, self.velocity
            )
        return MomentumState(previous, jnp.zeros((), jnp.int32))


def _newtonian_rule(lr, updates, state, params):
    del params
    step = jax.tree.map(lambda m, g: m - lr * g, state.previous, updates)
    return step, MomentumState(step, state.count + 1)


def newtonian(lr, *, velocity=None) -> optax.GradientTransformation:
    r"""Newtonian dynamics discretised as eq. (21),

    $$w_{k+2} = w_{k+1} + (w_{k+1} - w_k) - \eta\nabla L(w_{k+1}),$$

    momentum without damping: the Störmer–Verlet (leapfrog) scheme for
    $\ddot w = -\nabla L$ with time step $\sqrt\eta$ ($t \approx k\sqrt\eta$). It is
    variational, so a symmetry of the loss gives an exactly conserved discrete charge
    (e.g. $w_k \times w_{k+1}$ for rotations).

    **Arguments:**

    - `lr`: the learning rate $\eta > 0$ (traced by `lnn.optim.run`).
    - `velocity`: optional initial velocity $\dot w(0)$ (a pytree like the params); the
      first displacement is then $w_1 - w_0 = \sqrt\eta\,\dot w(0) - \eta\nabla L(w_0)$.
      Default: start from rest.
    """
    lr = _check_lr(lr)
    h = _sqrt(lr)
    return optax.GradientTransformation(
        _NewtonianInit(h, velocity), _Update(lr, h, _newtonian_rule)
    )


class NesterovState(NamedTuple):
    """`w`: the current iterate $w_k$; `count`: $k$."""

    w: optax.Params
    count: jax.Array


class _NesterovInit(eqx.Module):
    h: jax.Array
    velocity: Any
    start_step: jax.Array

    def __call__(self, params):
        if self.velocity is None:
            w_prev = params
        else:
            w_prev = jax.tree.map(
                lambda p, v: p - self.h * jnp.asarray(v, p.dtype), params, self.velocity
            )
        return NesterovState(w_prev, self.start_step - 1)


def _nesterov_rule(lr, updates, state, params):
    if params is None:
        raise ValueError("`lnn.optim.nesterov` needs `params` in `update`.")
    k = (state.count + 1).astype(jnp.result_type(lr))
    w_new = jax.tree.map(lambda y, g: y - lr * g, params, updates)
    coeff = (k - 1) / (k + 2)
    y_new = jax.tree.map(lambda wn, wo: wn + coeff * (wn - wo), w_new, state.w)
    step = jax.tree.map(lambda yn, y: yn - y, y_new, params)
    return step, NesterovState(w_new, state.count + 1)


def nesterov(lr, *, start_step: int = 1, velocity=None) -> optax.GradientTransformation:
    r"""Nesterov's accelerated gradient descent, eq. (20):

    $$w_k = y_{k-1} - \eta\nabla L(y_{k-1}), \qquad
      y_k = w_k + \frac{k-1}{k+2}(w_k - w_{k-1}),$$

    started with $y_0 = w_0$. The optimised parameters are the look-ahead points $y_k$
    (where the gradient is taken). Its limit is NAGF with $t \approx k\sqrt\eta$.

    **Arguments:**

    - `lr`: the learning rate $\eta > 0$ (traced by `lnn.optim.run`, as are
      `start_step` and `velocity`: a sweep compiles once).
    - `start_step`: the index $k$ of the first step (default 1). Starting at
      $k_0 = t_0/\sqrt\eta$ mimics NAGF started at $t_0 > 0$.
    - `velocity`: optional initial velocity, which sets $w_{k_0-1} = w_0 -
      \sqrt\eta\,\dot w(t_0)$. Default: from rest.
    """
    lr = _check_lr(lr)
    if (
        isinstance(start_step, bool)
        or not isinstance(start_step, int | np.integer)
        or start_step < 1
    ):
        raise ValueError(f"`start_step` must be an int >= 1; got {start_step!r}.")
    h = _sqrt(lr)
    init = _NesterovInit(h, velocity, jnp.asarray(start_step, jnp.int32))
    return optax.GradientTransformation(init, _Update(lr, h, _nesterov_rule))
