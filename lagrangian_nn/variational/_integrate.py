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
import optimistix as optx

from .._custom_types import RealScalarLike
from .._euler_lagrange import declared_mass
from .._lagrangian import AbstractLagrangian
from .._trajectory import Trajectory
from .._tree import tree_dtype
from .._validate import (
    as_array_if_numbers,
    check_finite_tree,
    check_floating_tree,
    check_same_structure,
    check_scalar_lagrangian,
)
from ..dynamics import KineticMinusPotential
from ._discrete import AbstractDiscreteLagrangian, Trapezoid, check_discrete


def default_solver(dtype) -> optx.AbstractRootFinder:
    """Newton with tolerances from the dtype: the last correction is below
    ~`eps^0.7`, so (quadratic convergence) the root is exact to rounding."""
    tol = float(jnp.finfo(dtype).eps) ** 0.7
    return optx.Newton(rtol=tol, atol=tol)


def velocity(inner, t, q, p, solver=None, max_steps: int = 32):
    r"""Inverts the Legendre transform $p = \partial L_0/\partial\dot q(t, q, \dot q)$.

    With a declared mass $M$ (`AbstractLagrangian.mass_matrix`, e.g. every Table-1
    Lagrangian) the kinetic term is quadratic and $\dot q = M^{-1}(p - b)$ with
    $b = \partial L_0/\partial\dot q(t, q, 0)$: no solve. Otherwise Newton from
    $\dot q = 0$ (one iteration for any $L_0$ quadratic in $\dot q$).
    """
    zeros = jax.tree.map(jnp.zeros_like, q)
    mass = declared_mass(inner, t, q, zeros)
    if mass is None:
        solver = default_solver(tree_dtype(q)) if solver is None else solver

        def fn(v, args):
            dv = jax.grad(inner, argnums=2)(t, q, v)
            return jax.tree.map(lambda a, b: a - b, dv, p)

        sol = optx.root_find(fn, solver, zeros, throw=False, max_steps=max_steps)
        return sol.value, sol.result == optx.RESULTS.successful
    b = jax.grad(inner, argnums=2)(t, q, zeros)
    rhs = jax.tree.map(lambda a, c: a - c, p, b)
    if isinstance(mass, lx.AbstractLinearOperator):
        return lx.linear_solve(mass, rhs).value, jnp.asarray(True)
    if eqx.is_array_like(mass) and jnp.ndim(mass) == 0:
        return jax.tree.map(lambda r: r / mass, rhs), jnp.asarray(True)
    return jax.tree.map(lambda r, m: r / m, rhs, mass), jnp.asarray(True)


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
        return q1, p1, (), g1, jnp.asarray(True)

    # --- general: Newton on (internal points, q_{k+1}) ------------------------------
    def _implicit(self, t, h, q, p, guess):
        reduced = self.discrete.reduced

        def fn(x, args):
            z, q1 = x
            d_q0, d_z = jax.grad(reduced, argnums=(2, 3))(t, h, q, z, q1)
            return d_z, jax.tree.map(lambda a, b: a + b, p, d_q0)

        sol = optx.root_find(
            fn, self.solver, guess, throw=False, max_steps=self.max_steps
        )
        z, q1 = sol.value
        d_q1 = jax.grad(reduced, argnums=4)(t, h, q, z, q1)
        if self.discrete.layers:
            back = jnp.exp(-self.discrete.log_weight_change(t, h))
            d_q1 = jax.tree.map(lambda x: back * x, d_q1)
        return q1, d_q1, z, None, sol.result == optx.RESULTS.successful

    def __call__(self, t, h, q, p, q_prev, z_prev, g):
        """Returns `(q1, p1, z, g1, ok)`."""
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


@eqx.filter_jit
def _run(stepper, t0, dt, q0, qdot0, n_save: int, save_every: int):
    discrete = stepper.discrete
    inner = discrete.inner
    dtype = tree_dtype(q0)
    t0 = jnp.asarray(t0, dtype)
    dt = jnp.asarray(dt, dtype)
    p0 = jax.grad(inner, argnums=2)(t0, q0, qdot0)
    q_prev = jax.tree.map(lambda a, v: a - dt * v, q0, qdot0)
    z_prev = discrete.initial_internal(q_prev, q0)
    g0 = stepper.gradient(q0)

    def one(carry, _):
        k, q, p, qp, zp, g, ok = carry
        t = t0 + k.astype(dtype) * dt
        q1, p1, z, g1, good = stepper(t, dt, q, p, qp, zp, g)
        return (k + 1, q1, p1, q, z, g1, ok & good), None

    def block(carry, _):
        carry, _ = jax.lax.scan(one, carry, None, length=save_every)
        return carry, (carry[0], carry[1], carry[2])

    init = (jnp.zeros((), jnp.int32), q0, p0, q_prev, z_prev, g0, jnp.asarray(True))
    carry, (ks, qs, ps) = jax.lax.scan(block, init, None, length=n_save)
    ok = carry[-1]
    ks = jnp.concatenate([jnp.zeros((1,), jnp.int32), ks])
    qs = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), q0, qs)
    ps = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), p0, ps)
    ts = t0 + ks.astype(dtype) * dt
    vs, vok = jax.vmap(lambda t, q, p: velocity(inner, t, q, p))(ts, qs, ps)
    ts = eqx.error_if(
        ts,
        ~ok,
        "`lnn.variational.integrate`: the root solve of a discrete Euler–Lagrange "
        "step did not converge. Reduce `dt`, raise `max_steps`, or pass another "
        "`solver`.",
    )
    ts = eqx.error_if(
        ts,
        ~jnp.all(vok),
        "`lnn.variational.integrate`: inverting the Legendre transform p = ∂L/∂q̇ "
        "for the saved velocities did not converge.",
    )
    finite = jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((qs, ps))])
    )
    ts = eqx.error_if(
        ts,
        ~finite,
        "`lnn.variational.integrate`: the state became non-finite (inf or NaN); the "
        "step `dt` may be too large for this system.",
    )
    return Trajectory(ts, qs, vs), ps


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

    Nothing is checked inside the loop: failures of the root solve and non-finite
    states are reported once, after it.

    **Arguments:**

    - `discrete`: a discrete Lagrangian, `lnn.variational.Midpoint(L)`,
      `Trapezoid(L)` (second order) or `Lobatto(L)` (fourth order).
    - `q0`, `qdot0`: the initial position and velocity (pytrees of the same
      structure).
    - `t0`: the initial time; `dt`: the time step (> 0); `n_steps`: the number of
      steps.
    - `save_every`: save every this many steps (must divide `n_steps`).
    - `solver`: an `optimistix` root finder for the implicit steps (default Newton
      with tolerances $\epsilon^{0.7}$ of the dtype).
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
    traj, ps = _run(stepper, t0, dt, q0, qdot0, n_steps // save_every, save_every)
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
    g = stepper.gradient(q)
    v, _ = velocity(discrete.inner, t, q, p)
    q_prev = jax.tree.map(lambda a, b: a - dt * b, q, v)
    z_prev = discrete.initial_internal(q_prev, q)
    q1, p1, _, _, ok = stepper(t, dt, q, p, q_prev, z_prev, g)
    q1 = eqx.error_if(
        q1, ~ok, "`lnn.variational.step`: the root solve did not converge."
    )
    return q1, p1
