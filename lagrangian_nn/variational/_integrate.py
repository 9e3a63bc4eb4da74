r"""Stepping the discrete Euler–Lagrange equations.

The equations $D_2L_d(q_{k-1}, q_k) + D_1L_d(q_k, q_{k+1}) = 0$ are solved in their
position–momentum form (Marsden & West 2001, eq. 1.5.6): with the discrete momentum
$p_k = -D_1L_d(q_k, q_{k+1}) = D_2L_d(q_{k-1}, q_k)$,

$$p_k = -D_1L_d(q_k, q_{k+1}) \;\text{(solved for } q_{k+1}\text{)}, \qquad
  p_{k+1} = D_2L_d(q_k, q_{k+1}).$$

For $L = e^{s(t)}L_0$ the momenta are reduced, $\tilde p_k = e^{-s(t_k)}p_k$, so the
weight never appears.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx

from .._custom_types import RealScalarLike
from .._euler_lagrange import declared_mass
from .._lagrangian import AbstractLagrangian
from .._trajectory import Trajectory
from .._tree import tree_all_finite, tree_dtype, tree_max_abs
from .._validate import (
    as_array_if_numbers,
    check_finite_tree,
    check_floating_tree,
    check_same_structure,
    check_scalar_lagrangian,
    is_traced,
)
from ..dynamics import KineticMinusPotential
from ._discrete import AbstractDiscreteLagrangian, Trapezoid, check_discrete
from ._solve import (
    NONLINEAR_LIMIT,
    Stats,
    check_level,
    default_solver,
    scale_of,
    solve,
    step_stats,
)


def _velocity(inner, t, q, p, solver=None, max_steps: int = 32):
    """`(qdot, failed, rho)`: the velocity, whether the solver failed, and the
    relative residual of the Legendre inversion (0 where no solve is needed)."""
    dtype = tree_dtype(q)
    zeros = jax.tree.map(jnp.zeros_like, q)
    exact = jnp.asarray(False), jnp.zeros((), dtype)
    mass = declared_mass(inner, t, q, zeros)
    if mass is None:
        solver = default_solver(dtype) if solver is None else solver
        # the terms of ∂L/∂q̇ − p: p itself and ∂L/∂q̇, whose part at q̇ = 0 (a vector
        # potential, say) can be far larger than p
        offset = jax.grad(inner, argnums=2)(t, q, zeros)

        def terms(v):
            dv = jax.grad(inner, argnums=2)(t, q, v)
            r = jax.tree.map(lambda a, b: a - b, dv, p)
            return r, None, scale_of(p, dv, offset)

        v, converged = solve(terms, solver, zeros, max_steps)
        r, _, s = terms(v)
        return v, ~converged, jnp.asarray(tree_max_abs(r) / s, dtype)
    b = jax.grad(inner, argnums=2)(t, q, zeros)
    rhs = jax.tree.map(lambda a, c: a - c, p, b)
    if isinstance(mass, lx.AbstractLinearOperator):
        return lx.linear_solve(mass, rhs).value, *exact
    if eqx.is_array_like(mass) and jnp.ndim(mass) == 0:
        return jax.tree.map(lambda r: r / mass, rhs), *exact
    return jax.tree.map(lambda r, m: r / m, rhs, mass), *exact


def velocity(inner, t, q, p, solver=None, max_steps: int = 32):
    r"""Inverts the Legendre transform $p = \partial L_0/\partial\dot q(t, q, \dot q)$.

    With a declared mass $M$ (`AbstractLagrangian.mass_matrix`, e.g. every Table-1
    Lagrangian) the kinetic term is quadratic and $\dot q = M^{-1}(p - b)$ with
    $b = \partial L_0/\partial\dot q(t, q, 0)$: no solve. Otherwise Newton from
    $\dot q = 0$ (one iteration for any $L_0$ quadratic in $\dot q$), on the residual
    $\partial L_0/\partial\dot q - p$ relative to the size of its terms
    ($\max(|p|, |\partial L_0/\partial\dot q|, |b|)$), so the same tolerance serves
    $cL_0$ for every $c$.

    **Returns:** `(qdot, ok)`, with `ok` false where the solver failed or the relative
    residual at its answer exceeds $\sqrt\varepsilon$.
    """
    v, failed, rho = _velocity(inner, t, q, p, solver, max_steps)
    return v, ~failed & (rho <= check_level(tree_dtype(q)))


class _Stepper(eqx.Module):
    """One step of the discrete Euler–Lagrange equations, explicit (leapfrog) for a
    trapezoid discrete Lagrangian of a separable Table-1 Lagrangian, else a root solve
    warm-started from the previous step's displacement."""

    discrete: AbstractDiscreteLagrangian
    solver: optx.AbstractRootFinder
    max_steps: int = eqx.field(static=True)
    explicit: bool = eqx.field(static=True)

    # --- explicit: L0 = m/2 |v|² − c(t) loss(q) with the trapezoid rule -------------
    def _scale(self, t):
        inner = self.discrete.inner
        if inner.potential_scale is None:
            return 1.0
        return inner.potential_scale(t)

    def gradient(self, q):
        if not self.explicit:
            return None
        return jax.grad(self.discrete.inner.loss)(q)

    def _explicit(self, t, h, q, p, g):
        r"""$\tilde p_k = a v + \tfrac h2 c_k g_k$, $q_{k+1} = q_k + h v$,
        $\tilde p_{k+1} = (a v - \tfrac h2 w c_{k+1} g_{k+1})/w$ with
        $a = \tfrac{1+w}2 m$ and $w = e^{s(t_k + h) - s(t_k)}$ (1 without weights)."""
        inner = self.discrete.inner
        w = self.discrete._w(t, h)
        a = 0.5 * (1 + w) * inner.mass
        ck, c1 = self._scale(t), self._scale(t + h)
        v = jax.tree.map(lambda pi, gi: (pi - 0.5 * h * ck * gi) / a, p, g)
        q1 = jax.tree.map(lambda qi, vi: qi + h * vi, q, v)
        g1 = jax.grad(inner.loss)(q1)
        if isinstance(w, float):  # no weights: velocity Verlet exactly
            p1 = jax.tree.map(lambda vi, gi: a * vi - 0.5 * h * c1 * gi, v, g1)
        else:
            p1 = jax.tree.map(lambda vi, gi: a * vi / w - 0.5 * h * c1 * gi, v, g1)
        return q1, p1, (), g1, Stats.ok(tree_dtype(q))

    # --- general: Newton on (internal points, q_{k+1}) ------------------------------
    def _implicit(self, t, h, q, p, guess):
        reduced = self.discrete.reduced

        def terms(x):
            z, q1 = x
            d_q0, d_z, d_q1 = jax.grad(reduced, argnums=(2, 3, 4))(t, h, q, z, q1)
            r = (d_z, jax.tree.map(lambda a, b: a + b, p, d_q0))
            return r, d_q1, scale_of(p, d_q0, d_q1)

        root, converged = solve(terms, self.solver, guess, self.max_steps)
        d_q1, rho, theta = step_stats(terms, guess, root)
        z, q1 = root
        if self.discrete.layers:
            back = jnp.exp(-self.discrete.log_weight_change(t, h))
            d_q1 = jax.tree.map(lambda x: back * x, d_q1)
        return q1, d_q1, z, None, Stats(~converged, rho, theta)

    def __call__(self, t, h, q, p, q_prev, z_prev, g):
        """Returns `(q1, p1, z, g1, stats)`."""
        if self.explicit:
            return self._explicit(t, h, q, p, g)
        shift = jax.tree.map(lambda a, b: a - b, q, q_prev)
        guess_q1 = jax.tree.map(lambda a, d: a + d, q, shift)
        guess_z = tuple(jax.tree.map(lambda a, d: a + d, zi, shift) for zi in z_prev)
        return self._implicit(t, h, q, p, (guess_z, guess_q1))


def _is_explicit(discrete) -> bool:
    inner = discrete.inner
    return (
        type(discrete) is Trapezoid
        and type(inner) is KineticMinusPotential
        and eqx.is_array_like(inner.mass)
        and jnp.ndim(inner.mass) == 0
    )


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")


def _check_dt(dt):
    arr = jnp.asarray(dt)
    real = jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(
        arr.dtype, jnp.integer
    )
    if arr.shape != () or not real:
        raise ValueError(f"`dt` must be a real scalar time step; got {dt!r}.")
    if not isinstance(dt, jax.core.Tracer) and not float(dt) > 0:
        raise ValueError(f"`dt` must be > 0; got dt = {float(dt)!r}.")


def _check_solver(solver):
    if solver is not None and not isinstance(solver, optx.AbstractRootFinder):
        raise ValueError(
            "`solver` must be an `optimistix` root finder (e.g. `optx.Newton(rtol, "
            f"atol)`) or None; got {type(solver).__name__}."
        )


def _stepper(discrete, dtype, solver, max_steps):
    solver = default_solver(dtype) if solver is None else solver
    return _Stepper(discrete, solver, max_steps, _is_explicit(discrete))


def _prepare_state(q, qdot, qname, vname):
    q = as_array_if_numbers(q, qname)
    check_floating_tree(q, qname)
    check_finite_tree(q, qname)
    qdot = as_array_if_numbers(qdot, vname)
    check_floating_tree(qdot, vname)
    check_same_structure(q, qdot, qname, vname)
    check_finite_tree(qdot, vname)
    dtype = tree_dtype(q)
    qdot = jax.tree.map(lambda a, b: jnp.asarray(b, a.dtype), q, qdot)
    return q, qdot, dtype


class _Report(eqx.Module):
    """What a run reports after its loop (read once, never inside it)."""

    steps: Stats
    velocity_failed: jax.Array
    velocity_rho: jax.Array
    finite: jax.Array
    q_size: jax.Array


@eqx.filter_jit
def _run(stepper, t0, dt, q0, qdot0, n_save: int, save_every: int, solver):
    discrete = stepper.discrete
    inner = discrete.inner
    dtype = tree_dtype(q0)
    t0 = jnp.asarray(t0, dtype)
    dt = jnp.asarray(dt, dtype)
    p0 = jax.grad(inner, argnums=2)(t0, q0, qdot0)
    q_prev = jax.tree.map(lambda a, v: a - dt * v, q0, qdot0)
    z_prev = discrete.initial_internal(q_prev, q0)
    g0 = stepper.gradient(q0)

    # the explicit step has no solve: nothing to accumulate, nothing carried
    explicit = stepper.explicit

    def one(carry, _):
        k, q, p, qp, zp, g, stats = carry
        t = t0 + k.astype(dtype) * dt
        q1, p1, z, g1, new = stepper(t, dt, q, p, qp, zp, g)
        stats = None if explicit else stats.join(new)
        return (k + 1, q1, p1, q, z, g1, stats), None

    def block(carry, _):
        carry, _ = jax.lax.scan(one, carry, None, length=save_every)
        return carry, (carry[0], carry[1], carry[2])

    stats0 = None if explicit else Stats.ok(dtype)
    init = (jnp.zeros((), jnp.int32), q0, p0, q_prev, z_prev, g0, stats0)
    carry, (ks, qs, ps) = jax.lax.scan(block, init, None, length=n_save)
    ks = jnp.concatenate([jnp.zeros((1,), jnp.int32), ks])
    qs = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), q0, qs)
    ps = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), p0, ps)
    ts = t0 + ks.astype(dtype) * dt
    vs, vfailed, vrho = jax.vmap(
        lambda t, q, p: _velocity(inner, t, q, p, solver, stepper.max_steps)
    )(ts, qs, ps)
    report = _Report(
        Stats.ok(dtype) if explicit else carry[-1],
        jnp.any(vfailed),
        jnp.max(vrho),
        tree_all_finite((qs, ps)),
        jnp.asarray(tree_max_abs(qs), dtype),
    )
    return Trajectory(ts, qs, vs), ps, report


def _messages(where, report, dtype, dt, max_steps):
    """`[(flag, message)]` of a run's report; with numbers when it is concrete."""
    concrete = not is_traced(report)
    if concrete:
        report = jax.device_get(report)  # one transfer, then host numbers
    level = check_level(dtype)
    name = jnp.dtype(dtype).name
    st = report.steps

    def num(x):
        return f" ({float(x):.3g})" if concrete else ""

    scale = ""
    if concrete and np.isfinite(float(report.q_size)):
        eps = float(jnp.finfo(dtype).eps)
        blur = eps * float(report.q_size) / float(dt)
        scale = (
            f" In {name} the positions (up to |q| = {float(report.q_size):.3g}) are "
            f"rounded to ε|q|, so a step's velocity (q_(k+1) − q_k)/dt is uncertain "
            f"by ε|q|/dt = {blur:.3g}."
        )
    return [
        (
            st.failed,
            f"`{where}`: the root solve of a discrete Euler–Lagrange step did not "
            f"converge within `max_steps` = {max_steps} iterations (its largest "
            "residual |p + D₁L_d|, relative to the size of its terms, is"
            f"{num(st.rho)}). Raise `max_steps`, pass another `solver`, or reduce "
            "`dt`.",
        ),
        (
            ~report.finite,
            f"`{where}`: the state became non-finite (inf or NaN); the step `dt` may "
            "be too large for this system.",
        ),
        (
            ~(st.theta <= NONLINEAR_LIMIT),
            f"`{where}`: a step's root lies far from its predictor: the step "
            "equations are strongly nonlinear between the two (the linear model at "
            f"the root misses the residual at the predictor by{num(st.theta)} of "
            f"its size, above Kantorovich's {NONLINEAR_LIMIT}), so the root may be "
            "another, unphysical solution of the discrete Euler–Lagrange equations. "
            "Reduce `dt`.",
        ),
        (
            ~(st.rho <= level),
            f"`{where}`: the root solve of a discrete Euler–Lagrange step stopped "
            "with its residual |p + D₁L_d| at"
            f"{num(st.rho)} of the size of its terms, above √ε = {level:.2g} of "
            f"{name}: the step cannot be trusted.{scale} Use float64, a larger `dt`, "
            "or a `solver` with tighter tolerances.",
        ),
        (
            report.velocity_failed | ~(report.velocity_rho <= level),
            f"`{where}`: inverting the Legendre transform p = ∂L/∂q̇ did not "
            "converge (its residual relative to the size of its "
            f"terms is{num(report.velocity_rho)}). Raise `max_steps` or pass another "
            "`solver`.",
        ),
    ]


def _raise_or_flag(x, checks):
    """Raises the first failed check now if the flags are concrete; else attaches
    them to `x` with `eqx.error_if` (read once, after the loop)."""
    if not is_traced([flag for flag, _ in checks]):
        for flag, message in checks:
            if bool(flag):
                raise eqx.EquinoxRuntimeError(message)
        return x
    for flag, message in checks:
        x = eqx.error_if(x, flag, message)
    return x


def _check_span(lagrangian, t0, t1):
    if isinstance(lagrangian, AbstractLagrangian):
        lagrangian.check_time_span(t0, t1)


def integrate(
    discrete: AbstractDiscreteLagrangian,
    q0,
    qdot0,
    *,
    t0: RealScalarLike,
    dt: RealScalarLike,
    n_steps: int,
    save_every: int = 1,
    solver: optx.AbstractRootFinder | None = None,
    max_steps: int = 32,
    return_momenta: bool = False,
):
    r"""Integrates a Lagrangian with its variational integrator: the discrete
    Euler–Lagrange equations $D_2L_d(q_{k-1}, q_k) + D_1L_d(q_k, q_{k+1}) = 0$ of a
    discrete Lagrangian, at the times $t_k = t_0 + k\,dt$.

    Each step solves $p_k = -D_1L_d(q_k, q_{k+1})$ for $q_{k+1}$ (and the internal
    points of `Lobatto`) with `optimistix` Newton, warm-started from the previous
    displacement $q_{k+1} \approx 2q_k - q_{k-1}$, and sets
    $p_{k+1} = D_2L_d(q_k, q_{k+1})$. For `Trapezoid` of a Table-1 Lagrangian
    $e^{s(t)}(\tfrac m2\|\dot q\|^2 - c(t)\,\mathrm{loss}(q))$ (`lnn.dynamics.newtonian`,
    `damped`, `nesterov`, `general`) the step is explicit: Störmer–Verlet, one
    gradient of the loss per step, no root solve (eq. 21 for `newtonian`).

    The start is $p_0 = \partial L/\partial\dot q(t_0, q_0, \dot q_0)$. The saved
    velocities are the discrete momenta $p_k$ mapped back through the continuous
    Legendre transform, $\partial L/\partial\dot q(t_k, q_k, \dot q_k) = p_k$ (with the
    declared mass, `AbstractLagrangian.mass_matrix`, when there is one). So for a
    point symmetry $\xi$ the discrete Noether charge
    $J_k = \langle p_k, \xi(q_k)\rangle$ is exactly
    `traj.evaluate(lnn.noether_charge(L, gen))`, conserved to rounding.

    Every solve (the steps, and the Legendre inversion of the saved velocities)
    stops on its residual relative to the size of its terms, so $cL$ integrates as
    $L$ for every $c > 0$ (see the guide, *Variational integrators*). Nothing is checked inside the
    loop; once after it, the run raises if a solve did not converge, if a root's
    relative residual exceeds $\sqrt\varepsilon$ of the dtype, if a step's root
    lies far from its predictor (the step equations are strongly nonlinear between
    them, Kantorovich's $\theta > 1/2$: reduce `dt`), or if the state became
    non-finite.

    **Arguments:**

    - `discrete`: a discrete Lagrangian, `lnn.variational.Midpoint(L)`,
      `Trapezoid(L)` (second order) or `Lobatto(L)` (fourth order).
    - `q0`, `qdot0`: the initial position and velocity (pytrees of the same
      structure).
    - `t0`: the initial time; `dt`: the time step (> 0); `n_steps`: the number of
      steps.
    - `save_every`: save every this many steps (must divide `n_steps`).
    - `solver`: an `optimistix` root finder for every solve: the implicit steps and
      the Legendre inversion of the saved velocities. It is handed each residual
      divided by the size of its terms, so its `rtol` and `atol` are relative
      (default: Newton with tolerances $\epsilon^{0.7}$ of the dtype).
    - `max_steps`: the maximum number of root-finder iterations per step.
    - `return_momenta`: also return the discrete (reduced) momenta
      $\tilde p_k = e^{-s(t_k)}p_k$ at the saved times.

    **Returns:** an `lnn.Trajectory` with `n_steps // save_every + 1` saved times
    (and the momenta, a pytree like `q0` with a leading time axis, if
    `return_momenta`).

    **Example:**

    ```python
    L = lnn.dynamics.newtonian(loss)
    traj = lnn.variational.integrate(
        lnn.variational.Trapezoid(L), q0, v0, t0=0.0, dt=0.01, n_steps=1000)
    traj.evaluate(lnn.noether_charge(L, gen))  # constant to rounding
    ```
    """
    check_discrete(discrete)
    q0, qdot0, dtype = _prepare_state(q0, qdot0, "q0", "qdot0")
    _check_dt(dt)
    _check_int(n_steps, "n_steps")
    _check_int(save_every, "save_every")
    _check_int(max_steps, "max_steps")
    if n_steps % save_every:
        raise ValueError(
            f"`save_every` must divide `n_steps`; got n_steps = {n_steps} and "
            f"save_every = {save_every}."
        )
    _check_solver(solver)
    t0_arr = jnp.asarray(t0)
    if t0_arr.shape != ():
        raise ValueError(f"`t0` must be a scalar time; got shape {t0_arr.shape}.")
    check_scalar_lagrangian(discrete.lagrangian, t0_arr.astype(dtype), q0, qdot0)
    if not isinstance(dt, jax.core.Tracer) and not isinstance(t0, jax.core.Tracer):
        _check_span(discrete.lagrangian, t0, float(t0) + n_steps * float(dt))
    stepper = _stepper(discrete, dtype, solver, max_steps)
    # t0 and dt as arrays: one compiled program serves every t0 and dt
    t0_run, dt_run = jnp.asarray(t0, dtype), jnp.asarray(dt, dtype)
    traj, ps, report = _run(
        stepper, t0_run, dt_run, q0, qdot0, n_steps // save_every, save_every, solver
    )
    checks = _messages("lnn.variational.integrate", report, dtype, dt, max_steps)
    traj = eqx.tree_at(lambda tr: tr.ts, traj, _raise_or_flag(traj.ts, checks))
    return (traj, ps) if return_momenta else traj


def step(
    discrete: AbstractDiscreteLagrangian,
    t,
    dt,
    q,
    p,
    *,
    solver: optx.AbstractRootFinder | None = None,
    max_steps: int = 32,
):
    r"""One step $(q_k, \tilde p_k) \mapsto (q_{k+1}, \tilde p_{k+1})$ of the
    variational integrator (the discrete Hamiltonian map), with reduced momenta
    $\tilde p = e^{-s(t)}p$ for $L = e^{s(t)}L_0$ ($\tilde p = p$ otherwise).

    The map is symplectic, $M^\top\Omega M = \Omega$ for its Jacobian $M$; for a
    `lnn.Conformal` Lagrangian it is conformally symplectic,
    $M^\top\Omega M = e^{-(s(t + dt) - s(t))}\Omega$.

    **Arguments:** as `integrate`; `t` the time of $q_k$, `p` the reduced momentum.

    **Returns:** `(q1, p1)`.
    """
    check_discrete(discrete)
    q, p, dtype = _prepare_state(q, p, "q", "p")
    _check_solver(solver)
    stepper = _stepper(discrete, dtype, solver, max_steps)
    t = jnp.asarray(t, dtype)
    dt = jnp.asarray(dt, dtype)
    q1, p1, report = _one_step(stepper, t, dt, q, p, solver)
    checks = _messages("lnn.variational.step", report, dtype, dt, max_steps)
    return _raise_or_flag(q1, checks), p1


@eqx.filter_jit
def _one_step(stepper, t, dt, q, p, solver):
    dtype = tree_dtype(q)
    g = stepper.gradient(q)
    v, vfailed, vrho = _velocity(
        stepper.discrete.inner, t, q, p, solver, stepper.max_steps
    )
    q_prev = jax.tree.map(lambda a, b: a - dt * b, q, v)
    z_prev = stepper.discrete.initial_internal(q_prev, q)
    q1, p1, _, _, stats = stepper(t, dt, q, p, q_prev, z_prev, g)
    report = _Report(
        stats,
        vfailed,
        vrho,
        tree_all_finite((q1, p1)),
        jnp.asarray(tree_max_abs(q1), dtype),
    )
    return q1, p1, report
