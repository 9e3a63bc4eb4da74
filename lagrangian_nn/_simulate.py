"""Integrating equations of motion with diffrax."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ._euler_lagrange import EulerLagrange, euler_lagrange
from ._lagrangian import AbstractLagrangian
from ._solver import FusedTsit5
from ._trajectory import Trajectory
from ._tree import (
    as_array_if_numbers,
    check_finite_tree,
    check_floating_tree,
    check_same_structure,
    describe,
    tree_all_finite,
    tree_dtype,
)
from .dynamics import GradientFlow

_NONFINITE = (
    "The integration produced a non-finite state (NaN or inf). The equations of motion "
    "blew up, or the step size was too large for the solver; try an adaptive "
    "`stepsize_controller`, a smaller `dt0`, or an implicit solver for stiff systems."
)


_BACKWARD = (
    "Integrating backwards in time is not supported: `t1` must be >= `t0`, and `ts` "
    "non-decreasing within [t0, t1]."
)


def _is_traced(x) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jtu.tree_leaves(x))


def check_times(t0, t1, ts) -> None:
    """Raises `ValueError` for a concrete time span that is not finite or runs
    backwards, or concrete save times `ts` that are not finite, not non-decreasing, or
    outside `[t0, t1]`. Traced values are left to `_error_if_bad_times`."""
    for name, value in (("t0", t0), ("t1", t1)):
        if jnp.shape(value) != ():
            raise ValueError(
                f"`{name}` must be a scalar; got shape {jnp.shape(value)}."
            )
    if ts is not None and (jnp.ndim(ts) != 1 or jnp.shape(ts)[0] == 0):
        raise ValueError(
            f"`ts` must be a non-empty 1-D array; got shape {jnp.shape(ts)}."
        )
    if _is_traced((t0, t1)):
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
    if ts is None or _is_traced(ts):
        return
    check_finite_tree(ts, "ts")
    x = np.asarray(ts)
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


def _error_if_bad_times(t0, t1, ts):
    """The checks of `check_times` for traced times, once, before the solve."""
    if not _is_traced((t0, t1, ts)):
        return t1, ts
    bad = ~(jnp.isfinite(t0) & jnp.isfinite(t1) & (t1 >= t0))
    if ts is not None:
        bad = bad | ~jnp.all(jnp.isfinite(ts) & (ts >= t0) & (ts <= t1))
        bad = bad | jnp.any(jnp.diff(ts) < 0)
        ts = eqx.error_if(ts, bad, _BACKWARD)
    t1 = eqx.error_if(t1, bad, _BACKWARD)
    return t1, ts


def _error_if_not_finite(x, name: str):
    """For a traced initial state: a run-time error, once, before the solve."""
    if not _is_traced(x):
        return x
    return eqx.error_if(
        x, ~tree_all_finite(x), f"`{name}` must be finite; it holds NaN or inf."
    )


class _SecondOrder(eqx.Module):
    accel: EulerLagrange

    def __call__(self, t, y, args):
        q, qdot = y
        return qdot, self.accel(t, q, qdot)


class _FirstOrder(eqx.Module):
    flow: GradientFlow

    def __call__(self, t, y, args):
        return self.flow(t, y)


@eqx.filter_jit
def _solve(
    system, y0, t0, t1, ts, solver, controller, dt0, max_steps, progress, second_order
):
    if second_order:
        accel = euler_lagrange(system)
        q0, qdot0 = y0
        # Once per solve, before the loop: on the matrix-free path a few Lanczos steps
        # at the initial state refuse an indefinite or singular mass matrix (the dense
        # and the diagonal paths certify M themselves, at every evaluation).
        y0 = (q0, accel.certify_mass(t0, q0, qdot0))
        vector_field = _SecondOrder(accel)
    else:
        vector_field = _FirstOrder(system)
    meter = diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        t0,
        t1,
        dt0,
        y0,
        # Only the end points: `SaveAt(t0, t1)` avoids the per-step search for save
        # times that `SaveAt(ts=[t0, t1])` does, for the same output.
        saveat=(
            diffrax.SaveAt(t0=True, t1=True) if ts is None else diffrax.SaveAt(ts=ts)
        ),
        stepsize_controller=controller,
        max_steps=max_steps,
        progress_meter=meter,
        throw=True,
    )
    ys = eqx.error_if(sol.ys, ~tree_all_finite(sol.ys), _NONFINITE)
    if second_order:
        q, qdot = ys
    else:
        q = ys
        qdot = jax.vmap(system, in_axes=(0, 0))(sol.ts, q)
    return Trajectory(sol.ts, q, qdot), sol.stats["num_steps"]


def _is_implicit(solver) -> bool:
    return isinstance(solver, diffrax.AbstractImplicitSolver)


def simulate(
    system,
    q0,
    qdot0=None,
    *,
    t0,
    t1,
    ts=None,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dt0=None,
    max_steps: int = 100_000,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    progress: bool = False,
) -> Trajectory:
    r"""Integrates the equations of motion of a Lagrangian, or gradient flow.

    **Arguments:**

    - `system`: a Lagrangian `L(t, q, qdot) -> scalar` (integrated as the second-order
      system of `lnn.euler_lagrange(L)` with state $(q, \dot q)$), or an
      `lnn.dynamics.GradientFlow` (first order; `qdot0` must be `None`).
    - `q0`: initial position, a pytree of finite floating arrays. A (nested) list or
      tuple of Python numbers, such as `[1.0, 2.0]`, is read as one array of the
      default floating dtype (float32 unless float64 is enabled); a list or tuple that
      holds arrays stays a pytree.
    - `qdot0`: initial velocity, a pytree like `q0` (required for a Lagrangian).
    - `t0`, `t1`: the time interval, finite, with `t1 >= t0` (backward integration is
      not supported).
    - `ts`: times at which to save the state (within `[t0, t1]`, non-decreasing).
      Defaults to `[t0, t1]`; pass e.g. `jnp.linspace(t0, t1, 200)` for curves.
    - `solver`: any diffrax solver; default `lnn.FusedTsit5()` (the method, steps and
      solution of `diffrax.Tsit5()`, without its per-stage copies of the state). Use an implicit solver
      (e.g. `diffrax.Kvaerno5()`) for stiff systems such as `damped` with small
      $\kappa$. Implicit solvers build a dense Jacobian of the state, so they are for
      small `q` only.
    - `rtol`, `atol`: tolerances of the default adaptive step-size controller
      (`diffrax.PIDController`).
    - `dt0`: initial step size (default: chosen by the controller).
    - `max_steps`: maximum number of solver steps. Reaching it raises diffrax's error.
    - `stepsize_controller`: overrides the default `PIDController(rtol, atol)`.
    - `progress`: show a tqdm progress bar.

    **Returns:** an `lnn.Trajectory` with the state saved at `ts`.

    **Raises:** `ValueError` for inconsistent inputs, naming the argument: a non-finite
    `q0` or `qdot0` (which leaf, how many NaN and inf), `t1 < t0`, `ts` out of order or
    outside `[t0, t1]` (under `jit` or `vmap` these are run-time errors, checked once
    before the solve). A runtime error naming the mass matrix if $M$ is singular or
    not positive definite (see `lnn.euler_lagrange`; on the matrix-free path
    `EulerLagrange.certify_mass` checks it once at the initial state); carrying
    diffrax's message if the solve fails (step limit); or naming the non-finite state
    if the solution is not finite. Never returns NaNs silently.

    The integration is compiled once per structure of its inputs: calling again with
    new arrays of the same shapes (or a new `eqx.Module` loss holding new data) does not
    recompile.

    **Example:**

    ```python
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.5 * jnp.sum(q**2)
    traj = lnn.simulate(L, jnp.array([1.0]), jnp.array([0.0]), t0=0.0, t1=6.0,
                        ts=jnp.linspace(0.0, 6.0, 100))
    ```
    """
    if not callable(system):
        raise ValueError(
            f"`system` must be a Lagrangian L(t, q, qdot) or a GradientFlow; got "
            f"{system!r}."
        )
    second_order = not isinstance(system, GradientFlow)
    q0 = as_array_if_numbers(q0, "q0")
    check_floating_tree(q0, "q0")
    check_finite_tree(q0, "q0")
    if second_order:
        if qdot0 is None:
            raise ValueError(
                "`qdot0` is required when `system` is a Lagrangian (a second-order "
                "system); got None."
            )
        qdot0 = as_array_if_numbers(qdot0, "qdot0")
        check_floating_tree(qdot0, "qdot0")
        check_same_structure(q0, qdot0, "q0", "qdot0")
        check_finite_tree(qdot0, "qdot0")
    elif qdot0 is not None:
        raise ValueError(
            "`system` is gradient flow, a first-order system, so `qdot0` must be None; "
            f"got qdot0 = {describe(qdot0)}."
        )
    if not isinstance(max_steps, int) or max_steps <= 0:
        raise ValueError(f"`max_steps` must be a positive int; got {max_steps!r}.")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not value >= 0:
            raise ValueError(f"`{name}` must be non-negative; got {value!r}.")
    if isinstance(system, AbstractLagrangian):
        system.check_time_span(t0, t1)

    dtype = tree_dtype(q0)
    q0 = jtu.tree_map(lambda x: jnp.asarray(x, dtype), q0)
    if second_order:
        qdot0 = jtu.tree_map(lambda x: jnp.asarray(x, dtype), qdot0)
    t0 = jnp.asarray(t0, dtype)
    t1 = jnp.asarray(t1, dtype)
    for name, value in (("t0", t0), ("t1", t1)):
        if value.shape != ():
            raise ValueError(f"`{name}` must be a scalar; got shape {value.shape}.")
    if ts is not None:
        ts = jnp.asarray(ts, dtype)
        if ts.ndim != 1 or ts.shape[0] == 0:
            raise ValueError(
                f"`ts` must be a non-empty 1-D array; got shape {ts.shape}."
            )
    check_times(t0, t1, ts)
    # Under `jit`/`vmap` (e.g. `simulate_ensemble`) the same checks run once, before
    # the solve, as run-time errors.
    t1, ts = _error_if_bad_times(t0, t1, ts)
    q0 = _error_if_not_finite(q0, "q0")
    if second_order:
        qdot0 = _error_if_not_finite(qdot0, "qdot0")
    if dt0 is not None:
        dt0 = jnp.asarray(dt0, dtype)
    if solver is None:
        solver = FusedTsit5()
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol)
    if isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError("`dt0` is required with a constant step size; got None.")

    y0 = (q0, qdot0) if second_order else q0
    traj, _ = _solve(
        system,
        y0,
        t0,
        t1,
        ts,
        solver,
        stepsize_controller,
        dt0,
        max_steps,
        progress,
        second_order,
    )
    return traj
