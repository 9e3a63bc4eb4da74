"""Integrating equations of motion with diffrax."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ._euler_lagrange import EulerLagrange, euler_lagrange
from ._lagrangian import AbstractLagrangian
from ._solver import FusedTsit5
from ._trajectory import Trajectory
from ._tree import (
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
        vector_field = _SecondOrder(euler_lagrange(system))
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
    - `q0`: initial position, a pytree of floating arrays.
    - `qdot0`: initial velocity, a pytree like `q0` (required for a Lagrangian).
    - `t0`, `t1`: the time interval.
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

    **Raises:** `ValueError` for inconsistent inputs (naming the argument); a runtime
    error carrying diffrax's message if the solve fails (step limit), or naming the
    non-finite state if the solution is not finite. Never returns NaNs silently.

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
    check_floating_tree(q0, "q0")
    if second_order:
        if qdot0 is None:
            raise ValueError(
                "`qdot0` is required when `system` is a Lagrangian (a second-order "
                "system); got None."
            )
        check_floating_tree(qdot0, "qdot0")
        check_same_structure(q0, qdot0, "q0", "qdot0")
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
