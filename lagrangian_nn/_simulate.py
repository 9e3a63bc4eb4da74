"""Integrating equations of motion with diffrax.

Nothing in the loop branches on a check. Before it: the arguments (in Python when
concrete, as one run-time error when traced), the time span the Lagrangian is defined
on (`AbstractLagrangian.span_checks`) and the mass matrix at the initial state
(`EulerLagrange.certify_mass`). In it: the vector field alone; a failing mass solve
returns NaN, which the step-size controller rejects. After it: one combined error if
the integration failed or left a non-finite state, saying why (the step limit with its
likely causes, diffrax's own result, or the non-finite state).
"""

import functools
import inspect
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ._euler_lagrange import EulerLagrange, euler_lagrange
from ._gradient_flow import GradientFlow
from ._lagrangian import AbstractLagrangian
from ._precision import check_tolerances, resolution
from ._progress import TimeProgressMeter
from ._reporting import error_if
from ._solver import FusedTsit5
from ._trajectory import Trajectory
from ._tree import tree_all_finite, tree_dtype, tree_max_abs
from ._validate import (
    as_array_if_numbers,
    check_finite_trees,
    check_floating_tree,
    check_same_structure,
    check_times,
    describe,
    error_if_bad_times,
    error_if_not_finite,
    is_traced,
)

_NONFINITE = (
    "The integration produced a non-finite state (NaN or inf). The equations of motion "
    "blew up, the mass matrix became singular along the way, or the step size was too "
    "large for the solver; try an adaptive `stepsize_controller`, a smaller `dt0`, or "
    "an implicit solver for stiff systems."
)
_MAX_STEPS = (
    "The maximum number of solver steps was reached (`max_steps` = {max_steps}) before "
    "`t1`. Either the run needs more steps (raise `max_steps`; for a stiff system, "
    "pass an implicit solver), or the equations of motion are singular near where it "
    "stopped: a mass matrix that becomes singular, a `kappa2(t)` that vanishes, a "
    "state that blows up in finite time."
)


_MAX_STEPS_FINE = (
    "The maximum number of solver steps was reached (`max_steps` = {max_steps}) before "
    "`t1`, with a relative tolerance below the resolution of {dtype} (`rtol` < 4·eps, "
    "eps = {eps:.3g}). The step-size controller's error estimate itself carries "
    "rounding errors of about eps·|y|, so it may reject step after step: use a larger "
    "`rtol` (and `atol`), or a more precise dtype. Otherwise the run needs more steps "
    "(raise `max_steps`; for a stiff system, pass an implicit solver), or the "
    "equations of motion are singular near where it stopped."
)
# Relative tolerances below this many machine epsilons of the state's dtype may be
# more than the step-size controller can resolve (see `_MAX_STEPS_FINE`).
_RESOLVABLE_RTOL = 4


class _FiniteNorm(eqx.Module):
    """A step-size controller's error norm, with NaN read as `inf`.

    diffrax's `PIDController` rejects a step whose error norm is `inf` and shrinks the
    next one by `factormin`, but turns a NaN norm into a NaN step size, after which
    every step is rejected until `max_steps`. A first step too large for a fast
    system (gradient flow of a loss scaled by 1e3, in float32) overflows its stages to
    inf − inf and ends the solve so. Read as `inf`, that step is rejected and retried
    smaller. One scalar `select` per step, no branch; finite norms are unchanged."""

    norm: Callable

    def __call__(self, x):
        value = self.norm(x)
        return jnp.where(jnp.isnan(value), jnp.inf, value)


def _finite_pid(controller):
    """A `diffrax.PIDController` with its norm wrapped in `_FiniteNorm`; any other
    controller unchanged."""
    if isinstance(controller, diffrax.PIDController) and not isinstance(
        controller.norm, _FiniteNorm
    ):
        return eqx.tree_at(lambda c: c.norm, controller, _FiniteNorm(controller.norm))
    return controller


def _relative_tolerance(controller):
    """The controller's `rtol` (looking inside a `ClipStepSizeController`), or
    `None` for a controller that has none."""
    controller = getattr(controller, "controller", controller)
    return getattr(controller, "rtol", None)


class _SecondOrder(eqx.Module):
    accel: EulerLagrange

    def __call__(self, t, y, args):
        q, qdot = y
        return qdot, self.accel(t, q, qdot)


class _FirstOrder(eqx.Module):
    flow: GradientFlow

    def __call__(self, t, y, args):
        return self.flow(t, y)


# Built once: constructing equinox modules costs a fraction of a millisecond per
# call, which a short solve on a GPU notices.
_DEFAULT_SOLVER = FusedTsit5()


@functools.lru_cache(maxsize=64)
def _pid(rtol: float, atol: float) -> diffrax.PIDController:
    return _finite_pid(diffrax.PIDController(rtol=rtol, atol=atol))


def _as_dtype(x, dtype):
    """`x` as an array of `dtype`, with no work for a JAX array that already is one
    and a host (numpy) array for host values: `filter_jit` moves those in one
    transfer, where `jnp.asarray` would dispatch one device operation per leaf (on a
    GPU, a fixed cost per call of `simulate` that a short solve notices)."""
    if isinstance(x, jax.Array):
        return x if x.dtype == dtype else x.astype(dtype)
    return np.asarray(x, dtype)


def _error_if_bad_span(system, t0, t1):
    """The Lagrangian's own conditions on a traced time span, once, before the
    solve (concrete spans were checked in Python by `check_time_span`)."""
    if not isinstance(system, AbstractLagrangian) or not is_traced((t0, t1)):
        return t1
    return error_if(t1, system.span_checks(t0, t1))


@eqx.filter_jit
def _solve(
    system, y0, t0, t1, ts, solver, controller, dt0, max_steps, progress, second_order
):
    if second_order:
        accel = euler_lagrange(system)
        q0, qdot0 = y0
        # Once per solve, before the loop: the mass matrix at the initial state (a
        # sign test of its declared or read diagonal, a Cholesky factorisation, or a
        # few Lanczos steps on the matrix-free path).
        y0 = (q0, accel.certify_mass(t0, q0, qdot0))
        vector_field = _SecondOrder(accel)
    else:
        vector_field = _FirstOrder(system)
    meter = TimeProgressMeter(t0, t1) if progress else diffrax.NoProgressMeter()
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
        throw=False,
    )
    # After the loop, once: the step limit (with the likely causes) or a non-finite
    # state, as one branched check (on a GPU each check is a host synchronisation),
    # then any other failure diffrax reports, in its own message.
    max_steps_reached = sol.result == diffrax.RESULTS.max_steps_reached
    succeeded = sol.result == diffrax.RESULTS.successful
    dtype = tree_dtype(y0)
    eps = float(jnp.finfo(dtype).eps)
    rtol = _relative_tolerance(controller)
    too_fine = (
        jnp.asarray(False)
        if rtol is None
        else jnp.asarray(rtol) < _RESOLVABLE_RTOL * eps
    )
    ys = eqx.branched_error_if(
        sol.ys,
        max_steps_reached | (succeeded & ~tree_all_finite(sol.ys)),
        jnp.where(max_steps_reached, jnp.where(too_fine, 2, 0), 1),
        [
            _MAX_STEPS.format(max_steps=max_steps),
            _NONFINITE,
            _MAX_STEPS_FINE.format(
                max_steps=max_steps, dtype=jnp.dtype(dtype).name, eps=eps
            ),
        ],
    )
    ys = sol.result.error_if(ys, ~succeeded)
    if second_order:
        q, qdot = ys
    else:
        q = ys
        qdot = jax.vmap(system, in_axes=(0, 0))(sol.ts, q)
    return Trajectory(sol.ts, q, qdot), sol.stats["num_steps"]


# --- The steps of `simulate`, in order ---------------------------------------------


def _checked_state(system, q0, qdot0):
    """`(second_order, q0, qdot0)`: the system and the initial state, checked in
    Python and lists of numbers read as arrays."""
    if not callable(system):
        raise ValueError(
            f"`system` must be a Lagrangian L(t, q, qdot) or a GradientFlow; got "
            f"{system!r}."
        )
    second_order = not isinstance(system, GradientFlow)
    q0 = as_array_if_numbers(q0, "q0")
    check_floating_tree(q0, "q0")
    if second_order:
        if qdot0 is None:
            raise ValueError(
                "`qdot0` is required when `system` is a Lagrangian (a second-order "
                "system); got None."
            )
        qdot0 = as_array_if_numbers(qdot0, "qdot0")
        check_floating_tree(qdot0, "qdot0")
        check_same_structure(q0, qdot0, "q0", "qdot0")
    elif qdot0 is not None:
        raise ValueError(
            "`system` is gradient flow, a first-order system, so `qdot0` must be None; "
            f"got qdot0 = {describe(qdot0)}."
        )
    return second_order, q0, qdot0


def _check_limits(max_steps, rtol, atol) -> None:
    if not isinstance(max_steps, int) or max_steps <= 0:
        raise ValueError(f"`max_steps` must be a positive int; got {max_steps!r}.")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not value >= 0:
            raise ValueError(f"`{name}` must be non-negative; got {value!r}.")


def _check_concrete(system, q0, qdot0, t0, t1, ts):
    """The checks in Python of what is concrete: a finite state, ordered times, and
    the Lagrangian's own time span. Returns `ts`, a host array if it was given as
    one.

    One device-to-host transfer for all of q0 and qdot0 (see `check_finite_trees`),
    and the times checked as given, before they become device arrays: on a GPU each
    host read of a device array is a synchronisation."""
    check_finite_trees((q0, "q0"), (qdot0, "qdot0"))
    if ts is not None and not is_traced(ts):
        ts = np.asarray(ts)
    check_times(t0, t1, ts)
    if isinstance(system, AbstractLagrangian):
        system.check_time_span(t0, t1)
    return ts


def _in_dtype(dtype, q0, qdot0, t0, t1, ts):
    """The state and the times as arrays of the state's `dtype`, with their shapes
    checked."""
    cast = lambda tree: jtu.tree_map(lambda x: _as_dtype(x, dtype), tree)
    q0, qdot0 = cast(q0), cast(qdot0)  # `qdot0` None stays None
    t0, t1 = _as_dtype(t0, dtype), _as_dtype(t1, dtype)
    for name, value in (("t0", t0), ("t1", t1)):
        if value.shape != ():
            raise ValueError(f"`{name}` must be a scalar; got shape {value.shape}.")
    if ts is not None:
        ts = _as_dtype(ts, dtype)
        if ts.ndim != 1 or ts.shape[0] == 0:
            raise ValueError(
                f"`ts` must be a non-empty 1-D array; got shape {ts.shape}."
            )
    return q0, qdot0, t0, t1, ts


def _error_if_traced_inputs_bad(system, q0, qdot0, t0, t1, ts):
    """Under `jit`/`vmap` (e.g. `simulate_ensemble`) the same checks as
    `_check_concrete`, once, before the solve, as run-time errors."""
    t1, ts = error_if_bad_times(t0, t1, ts)
    t1 = _error_if_bad_span(system, t0, t1)
    q0 = error_if_not_finite(q0, "q0")
    if qdot0 is not None:
        qdot0 = error_if_not_finite(qdot0, "qdot0")
    return q0, qdot0, t1, ts


def _check_resolvable(rtol, atol, dtype, state) -> None:
    """Refuses `rtol`, `atol` that `dtype` cannot resolve for a state of this size
    (`_precision.check_tolerances`), before anything is compiled. Only a tolerance
    below the dtype's epsilon can be refused, so only then is the state's size read
    (one scalar transfer); a traced, empty or all-zero state is not judged."""
    if rtol >= resolution(dtype) or is_traced(state):
        return
    scale = float(tree_max_abs(jtu.tree_map(jnp.asarray, state)))
    if scale > 0:
        check_tolerances(rtol, atol, dtype, scale=scale)


def _integrator(solver, stepsize_controller, rtol, atol, dt0, dtype):
    """`(solver, controller, dt0)`: the defaults filled in, a PID controller made to
    read a NaN error estimate as a rejected step (`_FiniteNorm`)."""
    if dt0 is not None:
        dt0 = jnp.asarray(dt0, dtype)
    if solver is None:
        solver = _DEFAULT_SOLVER
    if stepsize_controller is None:
        stepsize_controller = _pid(float(rtol), float(atol))
    stepsize_controller = _finite_pid(stepsize_controller)
    if isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError("`dt0` is required with a constant step size; got None.")
    return solver, stepsize_controller, dt0


_SIGNATURE_HINT = (
    "`simulate` takes the system and the initial state by position and everything "
    "else by keyword; the time interval is keyword-only: call "
    "`simulate(system, q0, qdot0, t0=..., t1=...)` for a Lagrangian, "
    "`simulate(flow, q0, t0=..., t1=...)` for gradient flow."
)


def _explain_bad_call(simulate_fn):
    """`simulate_fn`, with a call that does not match its signature (times given by
    position, `t0` or `t1` missing) answered by a `TypeError` that says how to call
    it. Nothing is added to a call that binds."""
    signature = inspect.signature(simulate_fn)

    @functools.wraps(simulate_fn)
    def wrapper(*args, **kwargs):
        try:
            return simulate_fn(*args, **kwargs)
        except TypeError:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as e:
                extra = len(args) - 3
                given = (
                    f" Got {len(args)} positional arguments; the last "
                    f"{extra} ({', '.join(map(repr, args[3:]))}) look like times."
                    if extra > 0
                    else ""
                )
                raise TypeError(f"{e}.{given} {_SIGNATURE_HINT}") from None
            raise

    return wrapper


@_explain_bad_call
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
      (`diffrax.PIDController`). They must be within what the state's dtype can
      resolve: float32 (JAX's default unless float64 is enabled) knows a state of size
      $|y|$ only to $\varepsilon|y|$ with $\varepsilon \approx 1.2\times10^{-7}$, so
      `atol + rtol·|y| < eps·|y|` (at the initial state) is refused before anything
      runs.
    - `dt0`: initial step size (default: chosen by the controller).
    - `max_steps`: maximum number of solver steps. Reaching it raises diffrax's error.
    - `stepsize_controller`: overrides the default `PIDController(rtol, atol)`. A
      `diffrax.PIDController` (the default one included) rejects a step whose stages
      overflow to a non-finite value and retries it smaller, as diffrax does for an
      infinite error estimate (diffrax itself would turn a NaN error estimate into a
      NaN step size and stall until `max_steps`).
    - `progress`: show the simulated time and step count (`t = 3.2 / 10, 180 steps`)
      on standard error when it is a terminal or a Jupyter kernel; nothing in a log.

    **Returns:** an `lnn.Trajectory` with the state saved at `ts`.

    **Raises:** `TypeError` for a call that does not match the signature, saying how
    to call it (`t0` and `t1` are keyword-only). `ValueError` for inconsistent
    inputs, naming the argument: a non-finite `q0` or `qdot0` (which leaf, how many
    NaN and inf), tolerances below the resolution of the state's dtype (naming the
    dtype and how to enable float64), `t1 < t0`, `ts` out of order or
    outside `[t0, t1]` (under `jit` or `vmap` these are run-time errors, checked once
    before the solve); a time span outside the Lagrangian's domain (`nesterov` from
    $t_0 \le 0$; `AbstractLagrangian.span_checks`). A runtime error naming the mass
    matrix if $M$ at the initial state is singular or not positive definite
    (`EulerLagrange.certify_mass`, once, before the loop); after the loop, one naming
    the step limit and its likely causes, diffrax's own message for any other failed
    solve, or one naming the non-finite state. No check runs inside the loop (on a
    GPU each would cost a device-to-host synchronisation per step): a mass matrix
    that fails later makes the acceleration NaN, which ends in one of those errors.
    Never returns NaNs silently.

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
    second_order, q0, qdot0 = _checked_state(system, q0, qdot0)
    _check_limits(max_steps, rtol, atol)
    ts = _check_concrete(system, q0, qdot0, t0, t1, ts)
    dtype = tree_dtype(q0)
    if stepsize_controller is None:
        _check_resolvable(rtol, atol, dtype, (q0, qdot0))
    q0, qdot0, t0, t1, ts = _in_dtype(dtype, q0, qdot0, t0, t1, ts)
    q0, qdot0, t1, ts = _error_if_traced_inputs_bad(system, q0, qdot0, t0, t1, ts)
    solver, controller, dt0 = _integrator(
        solver, stepsize_controller, rtol, atol, dt0, dtype
    )
    y0 = (q0, qdot0) if second_order else q0
    traj, _ = _solve(
        system,
        y0,
        t0,
        t1,
        ts,
        solver,
        controller,
        dt0,
        max_steps,
        progress,
        second_order,
    )
    return traj
