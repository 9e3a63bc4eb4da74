r"""Stepping the discrete Euler–Lagrange equations.

The equations $D_2L_d(q_{k-1}, q_k) + D_1L_d(q_k, q_{k+1}) = 0$ are solved in their
position–momentum form (Marsden & West 2001, eq. 1.5.6): with the discrete momentum
$p_k = -D_1L_d(q_k, q_{k+1}) = D_2L_d(q_{k-1}, q_k)$,

$$p_k = -D_1L_d(q_k, q_{k+1}) \;\text{(solved for } q_{k+1}\text{)}, \qquad
  p_{k+1} = D_2L_d(q_k, q_{k+1}).$$

For $L = e^{s(t)}L_0$ the momenta are reduced, $\tilde p_k = e^{-s(t_k)}p_k$, so the
weight never appears.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.flatten_util
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
    check_floating_tree,
    check_same_structure,
    check_scalar_lagrangian,
    is_traced,
)
from ._discrete import AbstractDiscreteLagrangian, check_discrete
from ._explicit import Separable, constant_diagonal
from ._solve import (
    NONLINEAR_LIMIT,
    Stats,
    check_level,
    root,
    root_and_stats,
    scale_of,
)


def _velocity(inner, t, q, p, solver=None, max_steps: int = 32):
    """`(qdot, failed, rho)`: the velocity, whether the solver failed, and the
    relative residual of the Legendre inversion (0 where no solve is needed)."""
    dtype = tree_dtype(q)
    zeros = jax.tree.map(jnp.zeros_like, q)
    exact = jnp.asarray(False), jnp.zeros((), dtype)
    mass = declared_mass(inner, t, q, zeros)
    if mass is None:
        mass = constant_diagonal(inner, t, q)
    if mass is None:
        # the terms of ∂L/∂q̇ − p: p itself and ∂L/∂q̇, whose part at q̇ = 0 (a vector
        # potential, say) can be far larger than p
        offset = jax.grad(inner, argnums=2)(t, q, zeros)

        def terms(v):
            dv = jax.grad(inner, argnums=2)(t, q, v)
            r = jax.tree.map(lambda a, b: a - b, dv, p)
            return r, None, scale_of(p, dv, offset)

        v, converged, _ = root(terms, solver, zeros, max_steps)
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
    Lagrangian), or a diagonal mass read from the program that does not depend on
    $\dot q$, the kinetic term is quadratic and $\dot q = M^{-1}(p - b)$ with
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


# --- the explicit step: Störmer–Verlet for a separable L0 with the trapezoid rule ----


class _Explicit(eqx.Module):
    r"""The trapezoid step of $L_0 = \tfrac12\dot q^\top M(t)\dot q + b(t)\cdot\dot q
    - V(t, q)$ (see `_explicit`). With $f_k = \partial L_0/\partial q(t_k, q_k)$,
    $w = e^{s(t_k + h) - s(t_k)}$ (1 without weights), $a = \tfrac12(M_k + wM_{k+1})$
    and $c = \tfrac12(b_k + wb_{k+1})$:

    $$v = a^{-1}(\tilde p_k + \tfrac h2 f_k - c), \quad q_{k+1} = q_k + hv, \quad
      \tilde p_{k+1} = (av + c)/w + \tfrac h2 f_{k+1}.$$

    Without weights, and with $M$ and $b$ constant, this is velocity Verlet exactly.
    """

    discrete: AbstractDiscreteLagrangian
    form: Separable

    def constants(self, t0, q0):
        """$(M, b)$ at the start: used for every step where they do not vary."""
        return self.form.mass(t0, q0), self.form.offset(t0, q0)

    def _mass(self, t, q, consts):
        return self.form.mass(t, q) if self.form.mass_varies else consts[0]

    def _offset(self, t, q, consts):
        return self.form.offset(t, q) if self.form.offset_varies else consts[1]

    def force(self, t, q):
        return self.form.force(t, q)

    def velocity(self, t, q, p, consts):
        """$\\dot q = M^{-1}(\\tilde p - b)$ at time `t`: the Legendre transform."""
        m, b = self._mass(t, q, consts), self._offset(t, q, consts)
        return jax.tree.map(lambda pi, bi, mi: (pi - bi) / mi, p, b, m)

    def __call__(self, t, h, q, p, f, consts):
        """Returns `(q1, p1, f1)`."""
        t1 = t + h
        w = self.discrete._w(t, h)
        weighted = not isinstance(w, float)
        m0, b0 = self._mass(t, q, consts), self._offset(t, q, consts)
        if weighted or self.form.mass_varies:
            m1 = self._mass(t1, q, consts)
            a = jax.tree.map(lambda x, y: 0.5 * (x + w * y), m0, m1)
        else:
            a = m0
        if weighted or self.form.offset_varies:
            b1 = self._offset(t1, q, consts)
            c = jax.tree.map(lambda x, y: 0.5 * (x + w * y), b0, b1)
        else:
            c = b0
        v = jax.tree.map(
            lambda pi, fi, ci, ai: (pi + 0.5 * h * fi - ci) / ai, p, f, c, a
        )
        q1 = jax.tree.map(lambda qi, vi: qi + h * vi, q, v)
        f1 = self.force(t1, q1)
        if weighted:
            p1 = jax.tree.map(
                lambda ai, vi, ci, fi: (ai * vi + ci) / w + 0.5 * h * fi, a, v, c, f1
            )
        else:
            p1 = jax.tree.map(
                lambda ai, vi, ci, fi: ai * vi + ci + 0.5 * h * fi, a, v, c, f1
            )
        return q1, p1, f1


# power-iteration steps for the stability estimate (each one Hessian-vector product)
_POWER_STEPS = 8


def _start_vector(n, dtype):
    """A fixed, generic start vector (no random key to draw and compile)."""
    k = jnp.arange(1, n + 1, dtype=dtype)
    return jnp.cos(k * jnp.asarray(2.399963229728653, dtype)) + 0.1 * jnp.sin(k)


def _largest_frequency_squared(stepper, t0, dt, q0, consts):
    r"""A lower bound on $\omega_{\max}^2 = \lambda_{\max}(a^{-1}H)$ at the initial
    state, $H = -\partial f/\partial q$ the Hessian of the potential and $a$ the
    mass of the first step: the largest Rayleigh quotient
    $x^\top Hx / x^\top a x$ over `_POWER_STEPS` steps of power iteration on
    $a^{-1}H$ (each a Hessian-vector product, once, before the loop). Every Rayleigh
    quotient is $\le \lambda_{\max}$, so $h\sqrt{\cdot} > 2$ proves the step
    unstable at that state; a smaller estimate proves nothing."""
    flat, unravel = jax.flatten_util.ravel_pytree(q0)
    dtype = flat.dtype
    w = stepper.discrete._w(t0, dt)
    m0 = stepper._mass(t0, q0, consts)
    m1 = stepper._mass(t0 + dt, q0, consts)
    a = jax.tree.map(
        lambda x, y, ref: jnp.broadcast_to(0.5 * (x + w * y), ref.shape).astype(dtype),
        m0,
        m1,
        q0,
    )
    a = jax.flatten_util.ravel_pytree(a)[0]

    def hess(x):
        _, df = jax.jvp(lambda q: stepper.force(t0, q), (q0,), (unravel(x),))
        return -jax.flatten_util.ravel_pytree(df)[0]

    def body(_, carry):
        x, best = carry
        hx = hess(x)
        quotient = jnp.vdot(x, hx) / jnp.vdot(x, a * x)
        y = hx / a
        norm = jnp.max(jnp.abs(y))
        x = jnp.where(norm > 0, y / jnp.where(norm > 0, norm, 1), x)
        return x, jnp.maximum(best, quotient)

    x0 = _start_vector(flat.size, dtype)
    init = (x0, jnp.asarray(-jnp.inf, dtype))
    _, best = jax.lax.fori_loop(0, _POWER_STEPS, body, init, unroll=True)
    return best


# --- the implicit step: Newton on (internal points, q_{k+1}) -------------------------


class _Implicit(eqx.Module):
    """A root solve of the step equations, warm-started from the previous step's
    displacement."""

    discrete: AbstractDiscreteLagrangian
    solver: optx.AbstractRootFinder | None
    max_steps: int = eqx.field(static=True)

    def __call__(self, t, h, q, p, q_prev, z_prev):
        """Returns `(q1, p1, z, stats)`."""
        shift = jax.tree.map(lambda a, b: a - b, q, q_prev)
        guess_q1 = jax.tree.map(lambda a, d: a + d, q, shift)
        guess_z = tuple(jax.tree.map(lambda a, d: a + d, zi, shift) for zi in z_prev)
        guess = (guess_z, guess_q1)
        reduced = self.discrete.reduced

        def terms(x):
            z, q1 = x
            d_q0, d_z, d_q1 = jax.grad(reduced, argnums=(2, 3, 4))(t, h, q, z, q1)
            r = (d_z, jax.tree.map(lambda a, b: a + b, p, d_q0))
            return r, d_q1, scale_of(p, d_q0, d_q1)

        def residual(x):  # `terms(x)[0]` alone, for Newton's iterations
            z, q1 = x
            d_q0, d_z = jax.grad(reduced, argnums=(2, 3))(t, h, q, z, q1)
            return d_z, jax.tree.map(lambda a, b: a + b, p, d_q0)

        x, converged, d_q1, rho, theta = root_and_stats(
            terms, self.solver, guess, self.max_steps, residual
        )
        z, q1 = x
        if self.discrete.layers:
            back = jnp.exp(-self.discrete.log_weight_change(t, h))
            d_q1 = jax.tree.map(lambda x: back * x, d_q1)
        return q1, d_q1, z, Stats(~converged, rho, theta)


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")


def _check_time(value, name):
    """A real scalar time; returned as an array (a Python or NumPy number becomes a
    NumPy array, which the compiled run takes as an argument: a new value does not
    recompile)."""
    if isinstance(value, jax.Array):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"`{name}` must be a real scalar; got {value!r}.") from e
    real = jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(
        arr.dtype, jnp.integer
    )
    if jnp.shape(arr) != () or not real or arr.dtype == bool:
        raise ValueError(
            f"`{name}` must be a real scalar time; got {value!r}"
            + (f" of shape {jnp.shape(arr)}." if jnp.shape(arr) != () else ".")
        )
    if not isinstance(arr, jax.core.Tracer) and not np.isfinite(float(arr)):
        raise ValueError(f"`{name}` must be finite; got {name} = {float(arr)!r}.")
    return arr


def _check_dt(dt):
    arr = _check_time(dt, "dt")
    if not isinstance(arr, jax.core.Tracer) and not float(arr) > 0:
        raise ValueError(f"`dt` must be > 0; got dt = {float(arr)!r}.")
    return arr


def _check_solver(solver):
    if solver is not None and not isinstance(solver, optx.AbstractRootFinder):
        raise ValueError(
            "`solver` must be an `optimistix` root finder (e.g. `optx.Newton(rtol, "
            f"atol)`) or None; got {type(solver).__name__}."
        )


def _as_leaves(tree, dtypes=None):
    """Python and NumPy numbers as NumPy arrays (of `dtypes`, one per leaf, where
    given; else of JAX's default floating dtype for Python numbers)."""
    leaves, treedef = jax.tree.flatten(tree)
    out = []
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, jax.Array) and isinstance(
            leaf, int | float | np.ndarray | np.generic
        ):
            if dtypes is not None:
                leaf = np.asarray(leaf, dtypes[i])
            elif isinstance(leaf, int | float) and not isinstance(leaf, bool):
                leaf = np.asarray(leaf, jnp.result_type(float))
        out.append(leaf)
    return jax.tree.unflatten(treedef, out)


def _prepare_state(q, qdot, qname, vname):
    """Checks the state's structure and dtypes on the host (no device work: whether
    it is finite is checked inside the compiled run). Returns `(q, qdot, dtype)`."""
    if (
        isinstance(q, jax.Array)
        and isinstance(qdot, jax.Array)
        and q.shape == qdot.shape
        and q.size > 0
        and jnp.issubdtype(q.dtype, jnp.floating)
        and jnp.issubdtype(qdot.dtype, jnp.floating)
    ):
        return q, qdot, q.dtype  # one array each: nothing more to check here
    q = _as_leaves(as_array_if_numbers(q, qname))
    check_floating_tree(q, qname)
    qdot = as_array_if_numbers(qdot, vname)
    check_same_structure(q, qdot, qname, vname)
    qdot = _as_leaves(qdot, [jnp.result_type(x) for x in jax.tree.leaves(q)])
    check_floating_tree(qdot, vname)
    return q, qdot, tree_dtype(q)


# the entries of a run's report, one small vector fetched once after the loop
_ENTRIES = "failed rho theta vfailed vrho finite q0 v0 mass omega2".split()
_FAILED, _RHO, _THETA, _VFAILED, _VRHO, _FINITE, _Q0, _V0, _MASS, _OMEGA2 = range(10)


def _report(dtype, **values):
    """The report vector: the named `values` (see `_ENTRIES`), 0 for the others."""
    vec = [jnp.zeros((), dtype)] * len(_ENTRIES)
    for name, value in values.items():
        vec[_ENTRIES.index(name)] = jnp.asarray(value).astype(dtype)
    return jnp.stack(vec)


def _mass_ok(mass):
    ok = jnp.asarray(True)
    for m in jax.tree.leaves(mass):
        ok = ok & jnp.all(jnp.isfinite(m) & (m > 0))
    return ok


class _Saving(NamedTuple):
    """What a run saves: the state after each of `n` blocks of `every` steps (and at
    the start), with the momenta or not. Python numbers: static in a compiled run."""

    n: int
    every: int
    momenta: bool

    def times(self, t0, dt):
        """The saved times."""
        k = jnp.arange(self.n + 1, dtype=jnp.int32).astype(t0.dtype)
        return t0 + k * (self.every * dt)


@eqx.filter_jit
def _run(discrete, solver, t0, dt, q0, qdot0, max_steps: int, saving: _Saving):
    dtype = tree_dtype(q0)
    qdot0 = jax.tree.map(lambda a, b: jnp.asarray(b, a.dtype), q0, qdot0)
    t0 = jnp.asarray(t0, dtype)
    dt = jnp.asarray(dt, dtype)
    check_scalar_lagrangian(discrete.lagrangian, t0, q0, qdot0)
    inner = discrete.inner
    p0 = jax.grad(inner, argnums=2)(t0, q0, qdot0)
    inputs = dict(q0=tree_all_finite(q0), v0=tree_all_finite(qdot0))
    form = discrete._explicit_form(t0, q0)
    if form is not None:
        return _run_explicit(_Explicit(discrete, form), t0, dt, q0, p0, saving, inputs)
    stepper = _Implicit(discrete, solver, max_steps)
    return _run_implicit(stepper, t0, dt, q0, qdot0, p0, saving, inputs)


def _blocks(one, state, saving, save):
    """`saving.n` blocks of `saving.every` steps under `lax.scan`; returns the final
    state and `save(state)` after each block, with the initial point prepended."""

    def block(state, _):
        if saving.every == 1:
            state, _ = one(state, None)
        else:
            state, _ = jax.lax.scan(one, state, None, length=saving.every)
        return state, save(state)

    first = save(state)
    state, rest = jax.lax.scan(block, state, None, length=saving.n)
    return state, jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)


def _run_explicit(stepper, t0, dt, q0, p0, saving, inputs):
    dtype = tree_dtype(q0)
    consts = stepper.constants(t0, q0)
    f0 = stepper.force(t0, q0)

    def one(carry, _):
        k, q, p, f = carry
        t = t0 + k.astype(dtype) * dt
        q1, p1, f1 = stepper(t, dt, q, p, f, consts)
        return (k + 1, q1, p1, f1), None

    def save(state):
        k, q, p, _ = state
        v = stepper.velocity(t0 + k.astype(dtype) * dt, q, p, consts)
        return (q, v, p) if saving.momenta else (q, v)

    state0 = (jnp.zeros((), jnp.int32), q0, p0, f0)
    state, saved = _blocks(one, state0, saving, save)
    qs, vs, ps = saved if saving.momenta else (*saved, None)
    ts = saving.times(t0, dt)
    _, q_end, p_end, _ = state
    omega2 = _largest_frequency_squared(stepper, t0, dt, q0, consts)
    report = _report(
        dtype,
        # non-finite values never become finite again in q + h v: the end decides
        finite=tree_all_finite((q_end, p_end)),
        mass=_mass_ok(consts[0]),
        omega2=omega2,
        **inputs,
    )
    return ts, qs, vs, report, ps


def _run_implicit(stepper, t0, dt, q0, qdot0, p0, saving, inputs):
    discrete = stepper.discrete
    inner = discrete.inner
    dtype = tree_dtype(q0)
    q_prev = jax.tree.map(lambda a, v: a - dt * v, q0, qdot0)
    z_prev = discrete.initial_internal(q_prev, q0)

    def one(carry, _):
        k, q, p, qp, zp, stats = carry
        t = t0 + k.astype(dtype) * dt
        q1, p1, z, new = stepper(t, dt, q, p, qp, zp)
        return (k + 1, q1, p1, q, z, stats.join(new)), None

    state0 = (jnp.zeros((), jnp.int32), q0, p0, q_prev, z_prev, Stats.ok(dtype))
    state, (qs, ps) = _blocks(one, state0, saving, lambda s: s[1:3])
    ts = saving.times(t0, dt)
    vs, vfailed, vrho = jax.vmap(
        lambda t, q, p: _velocity(inner, t, q, p, stepper.solver, stepper.max_steps)
    )(ts, qs, ps)
    stats = state[-1]
    report = _report(
        dtype,
        failed=stats.failed,
        rho=stats.rho,
        theta=stats.theta,
        vfailed=jnp.any(vfailed),
        vrho=jnp.max(vrho),
        finite=tree_all_finite((qs, ps)),
        mass=True,
        **inputs,
    )
    return ts, qs, vs, report, (ps if saving.momenta else None)


def _checks(where, r, dtype, dt, max_steps, q_size=None):
    """`[(flag, exception type, message)]` from a run's report `r`: host numbers
    (NumPy) for a concrete run, with the numbers in the messages; traced values
    otherwise."""
    concrete = isinstance(r, np.ndarray)
    level = check_level(dtype)
    eps = float(jnp.finfo(dtype).eps)
    name = jnp.dtype(dtype).name

    def num(x):
        return f" ({float(x):.3g})" if concrete else ""

    scale = ""
    if q_size is not None and np.isfinite(q_size):
        blur = eps * q_size / float(dt)
        scale = (
            f" In {name} the positions (up to |q| = {q_size:.3g}) are "
            f"rounded to ε|q|, so a step's velocity (q_(k+1) − q_k)/dt is uncertain "
            f"by ε|q|/dt = {blur:.3g}."
        )
    hw_limit = 2 * (1 + 16 * eps)
    omega2 = r[_OMEGA2]
    hw2 = omega2 * dt * dt
    if concrete:
        omega = float(np.sqrt(max(float(omega2), 0.0)))
        stability = (
            f"`{where}`: dt = {float(dt):.6g} is beyond the stability limit of the "
            f"explicit Störmer–Verlet step: at the initial state the potential's "
            f"largest frequency is at least ω = {omega:.6g} (power iteration on its "
            f"Hessian), and the step is stable only for dt·ω < 2, here dt·ω = "
            f"{float(dt) * omega:.4g}: use dt < {2 / max(omega, 1e-300):.6g}, or an "
            "implicit "
            "discrete Lagrangian (`Midpoint`)."
        )
    else:
        stability = (
            f"`{where}`: `dt` is beyond the stability limit of the explicit "
            "Störmer–Verlet step (dt·ω ≥ 2 for the potential's largest frequency ω "
            "at the initial state): reduce `dt`, or use an implicit discrete "
            "Lagrangian (`Midpoint`)."
        )
    return [
        (
            r[_Q0] == 0,
            ValueError,
            f"`{where}`: `q0` (or `q`) holds NaN or inf.",
        ),
        (
            r[_V0] == 0,
            ValueError,
            f"`{where}`: `qdot0` (or `p`) holds NaN or inf.",
        ),
        (
            r[_MASS] == 0,
            ValueError,
            f"`{where}`: the mass matrix M = ∂²L/∂q̇² of the Lagrangian is not "
            "positive (a diagonal entry is <= 0 or not finite).",
        ),
        (hw2 > hw_limit**2, ValueError, stability),
        (
            r[_FAILED] != 0,
            eqx.EquinoxRuntimeError,
            f"`{where}`: the root solve of a discrete Euler–Lagrange step did not "
            f"converge within `max_steps` = {max_steps} iterations (its largest "
            "residual |p + D₁L_d|, relative to the size of its terms, is"
            f"{num(r[_RHO])}). Raise `max_steps`, pass another `solver`, or reduce "
            "`dt`.",
        ),
        (
            r[_FINITE] == 0,
            eqx.EquinoxRuntimeError,
            f"`{where}`: the state became non-finite (inf or NaN); the step `dt` may "
            "be too large for this system.",
        ),
        (
            ~(r[_THETA] <= NONLINEAR_LIMIT),
            eqx.EquinoxRuntimeError,
            f"`{where}`: a step's root lies far from its predictor: the step "
            "equations are strongly nonlinear between the two (the linear model at "
            f"the root misses the residual at the predictor by{num(r[_THETA])} of "
            f"its size, above Kantorovich's {NONLINEAR_LIMIT}), so the root may be "
            "another, unphysical solution of the discrete Euler–Lagrange equations. "
            "Reduce `dt`.",
        ),
        (
            ~(r[_RHO] <= level),
            eqx.EquinoxRuntimeError,
            f"`{where}`: the root solve of a discrete Euler–Lagrange step stopped "
            "with its residual |p + D₁L_d| at"
            f"{num(r[_RHO])} of the size of its terms, above √ε = {level:.2g} of "
            f"{name}: the step cannot be trusted.{scale} Use float64, a larger `dt`, "
            "or a `solver` with tighter tolerances.",
        ),
        (
            (r[_VFAILED] != 0) | ~(r[_VRHO] <= level),
            eqx.EquinoxRuntimeError,
            f"`{where}`: inverting the Legendre transform p = ∂L/∂q̇ did not "
            "converge (its residual relative to the size of its "
            f"terms is{num(r[_VRHO])}). Raise `max_steps` or pass another "
            "`solver`.",
        ),
    ]


def _finish(where, x, report, dtype, dt, max_steps, qs):
    """Raises the first failed check of a concrete run (one transfer of its report);
    attaches them to `x` with `eqx.error_if` under a trace."""
    if is_traced((report, dt)):
        for flag, _, message in _checks(where, report, dtype, dt, max_steps):
            x = eqx.error_if(x, flag, message)
        return x
    r = np.asarray(report)
    level = check_level(dtype)
    eps = float(jnp.finfo(dtype).eps)
    omega2 = float(r[_OMEGA2])
    if (
        r[_Q0] != 0
        and r[_V0] != 0
        and r[_MASS] != 0
        and r[_FAILED] == 0
        and r[_FINITE] != 0
        and r[_THETA] <= NONLINEAR_LIMIT
        and r[_RHO] <= level
        and r[_VFAILED] == 0
        and r[_VRHO] <= level
        and not omega2 * float(dt) ** 2 > (2 * (1 + 16 * eps)) ** 2
    ):
        return x
    leaves = [np.asarray(a) for a in jax.tree.leaves(qs)]
    q_size = max((float(np.max(np.abs(a))) for a in leaves if a.size), default=0.0)
    for flag, exc, message in _checks(where, r, dtype, dt, max_steps, q_size):
        if bool(flag):
            raise exc(message)
    return x


def _check_span(lagrangian, t0, dt, n_steps):
    """The Lagrangian's own conditions on the time span, for concrete times (on the
    host: nothing to compile or transfer where it states none)."""
    if not isinstance(lagrangian, AbstractLagrangian) or is_traced((t0, dt)):
        return
    t0, t1 = float(t0), float(t0) + n_steps * float(dt)
    # through the class: binding a method of a Module costs more than the check
    checks = type(lagrangian).span_checks(lagrangian, np.asarray(t0), np.asarray(t1))
    if any(bool(np.asarray(flag)) for flag, _ in checks):
        lagrangian.check_time_span(t0, t1)  # its own message, if it has one
        raise ValueError(next(m for f, m in checks if bool(np.asarray(f))))


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
    points of `Lobatto`) by Newton, warm-started from the previous displacement
    $q_{k+1} \approx 2q_k - q_{k-1}$, and sets $p_{k+1} = D_2L_d(q_k, q_{k+1})$.

    **Explicit steps.** For `Trapezoid` of a Lagrangian
    $e^{s(t)}\big(\tfrac12\dot q^\top M(t)\dot q + b(t)\cdot\dot q - V(t, q)\big)$
    with a diagonal mass that does not depend on $q$ or $\dot q$ and a potential
    that does not depend on $\dot q$, the step is explicit: Störmer–Verlet, one
    gradient of the potential per step, no root solve (eq. 21 for
    `lnn.dynamics.newtonian`). This is decided from what the Lagrangian is, whether
    a Table-1 builder of `lnn.dynamics` or a plain function: from its declared mass
    (`AbstractLagrangian.mass_matrix`) or the diagonal read from its traced program
    (as `lnn.euler_lagrange` does), and from the dependencies of its traced
    derivatives. Before the loop, a few Hessian-vector products of the potential
    (power iteration) bound its largest frequency $\omega$ at the initial state from
    below; a run with $dt\cdot\omega \ge 2$ (beyond the Störmer–Verlet stability
    limit) is refused, naming `dt` and the limit.

    The start is $p_0 = \partial L/\partial\dot q(t_0, q_0, \dot q_0)$. The saved
    velocities are the discrete momenta $p_k$ mapped back through the continuous
    Legendre transform, $\partial L/\partial\dot q(t_k, q_k, \dot q_k) = p_k$ (a
    division by the mass when it is diagonal and constant in $\dot q$). So for a
    point symmetry $\xi$ the discrete Noether charge
    $J_k = \langle p_k, \xi(q_k)\rangle$ is exactly
    `traj.evaluate(lnn.noether_charge(L, gen))`, conserved to rounding.

    Every solve (the steps, and the Legendre inversion of the saved velocities)
    stops on its residual relative to the size of its terms, so $cL$ integrates as
    $L$ for every $c > 0$ (see the guide, *Variational integrators*). Nothing is
    checked inside the loop; once after it, the run raises if a solve did not
    converge, if a root's relative residual exceeds $\sqrt\varepsilon$ of the dtype,
    if a step's root lies far from its predictor (the step equations are strongly
    nonlinear between them, Kantorovich's $\theta > 1/2$: reduce `dt`), if the
    initial state or the state became non-finite, or if the explicit step is
    unstable.

    `t0` and `dt` are arguments of one compiled program: a new value, a Python
    float included, does not recompile.

    **Arguments:**

    - `discrete`: a discrete Lagrangian, `lnn.variational.Midpoint(L)`,
      `Trapezoid(L)` (second order) or `Lobatto(L)` (fourth order).
    - `q0`, `qdot0`: the initial position and velocity (pytrees of the same
      structure; Python numbers are read as arrays of the default floating dtype).
    - `t0`: the initial time; `dt`: the time step (> 0); `n_steps`: the number of
      steps.
    - `save_every`: save every this many steps (must divide `n_steps`).
    - `solver`: an `optimistix` root finder for every solve: the implicit steps and
      the Legendre inversion of the saved velocities. It is handed each residual
      divided by the size of its terms, so its `rtol` and `atol` are relative
      (default: Newton with a dense Jacobian by forward-mode autodiff and
      tolerances $\epsilon^{0.7}$ of the dtype).
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
    t0 = _check_time(t0, "t0")
    dt = _check_dt(dt)
    _check_int(n_steps, "n_steps")
    _check_int(save_every, "save_every")
    _check_int(max_steps, "max_steps")
    if n_steps % save_every:
        raise ValueError(
            f"`save_every` must divide `n_steps`; got n_steps = {n_steps} and "
            f"save_every = {save_every}."
        )
    _check_solver(solver)
    _check_span(discrete.lagrangian, t0, dt, n_steps)
    saving = _Saving(n_steps // save_every, save_every, return_momenta)
    ts, qs, vs, report, ps = _run(
        discrete, solver, t0, dt, q0, qdot0, max_steps, saving
    )
    where = "lnn.variational.integrate"
    # under a trace the checks ride on every output, so none can be dropped
    ts, qs, vs, ps = _finish(where, (ts, qs, vs, ps), report, dtype, dt, max_steps, qs)
    traj = Trajectory(ts, qs, vs)
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
    _check_int(max_steps, "max_steps")
    t = _check_time(t, "t")
    dt = _check_dt(dt)
    q1, p1, report = _one_step(discrete, solver, t, dt, q, p, max_steps)
    return _finish("lnn.variational.step", (q1, p1), report, dtype, dt, max_steps, q1)


@eqx.filter_jit
def _one_step(discrete, solver, t, dt, q, p, max_steps: int):
    dtype = tree_dtype(q)
    p = jax.tree.map(lambda a, b: jnp.asarray(b, a.dtype), q, p)
    t = jnp.asarray(t, dtype)
    dt = jnp.asarray(dt, dtype)
    inner = discrete.inner
    inputs = dict(q0=tree_all_finite(q), v0=tree_all_finite(p))
    form = discrete._explicit_form(t, q)
    if form is not None:
        stepper = _Explicit(discrete, form)
        consts = stepper.constants(t, q)
        q1, p1, _ = stepper(t, dt, q, p, stepper.force(t, q), consts)
        report = _report(
            dtype,
            finite=tree_all_finite((q1, p1)),
            mass=_mass_ok(consts[0]),
            **inputs,
        )
        return q1, p1, report
    v, vfailed, vrho = _velocity(inner, t, q, p, solver, max_steps)
    q_prev = jax.tree.map(lambda a, b: a - dt * b, q, v)
    z_prev = discrete.initial_internal(q_prev, q)
    q1, p1, _, stats = _Implicit(discrete, solver, max_steps)(
        t, dt, q, p, q_prev, z_prev
    )
    report = _report(
        dtype,
        failed=stats.failed,
        rho=stats.rho,
        theta=stats.theta,
        vfailed=vfailed,
        vrho=vrho,
        finite=tree_all_finite((q1, p1)),
        mass=True,
        **inputs,
    )
    return q1, p1, report
