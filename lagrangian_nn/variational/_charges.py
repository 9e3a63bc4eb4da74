r"""Discrete Noether charges and their exact balance (Marsden & West 2001, Theorem
1.3.3).

For a point transformation $q \mapsto q + \varepsilon\xi(t, q)$ the discrete momentum
map is $J_k = \langle p_k, \xi(t_k, q_k)\rangle$ with
$p_k = -D_1L_d(q_k, q_{k+1}) = D_2L_d(q_{k-1}, q_k)$. Along any solution of the
discrete Euler–Lagrange equations

$$J_{k+1} - J_k = R_k, \qquad
  R_k = \frac{d}{d\varepsilon}\Big|_0 L_d\big(q_k + \varepsilon\xi_k,
  q_{k+1} + \varepsilon\xi_{k+1}\big),$$

an identity, not an approximation: $R_k = 0$ for a symmetry of $L_d$ and $J$ is then
conserved to rounding. For $L = e^{s(t)}L_0$ the reduced quantities
$\tilde J_k = e^{-s(t_k)}J_k$, $\tilde R_k = e^{-s(t_k)}R_k$ obey
$e^{s(t_{k+1}) - s(t_k)}\tilde J_{k+1} - \tilde J_k = \tilde R_k$.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .._conformal import log_weight as _log_weight, times_exp as _times_exp
from .._noether import Generator
from .._trajectory import Trajectory
from .._tree import tree_dot, tree_dtype
from .._validate import is_traced
from ._discrete import AbstractDiscreteLagrangian, check_discrete
from ._integrate import _check_int, _check_solver
from ._solve import check_level, default_solver, relative_residual, scale_of, solve


def _check_generator(gen):
    if not isinstance(gen, Generator):
        raise ValueError(f"`gen` must be an `lnn.Generator`; got {type(gen).__name__}.")
    if gen.tau is not None:
        raise ValueError(
            "`gen` must be a point symmetry (tau = None): discrete Noether charges "
            "here are for transformations of q at fixed time; got a generator with a "
            "`tau`."
        )


def _check_traj(traj, dt):
    if not isinstance(traj, Trajectory):
        raise ValueError(
            f"`traj` must be an `lnn.Trajectory`; got {type(traj).__name__}."
        )
    if len(traj) < 2:
        raise ValueError(f"`traj` must hold at least 2 saved times; got {len(traj)}.")
    ts = np.asarray(traj.ts)
    steps = np.diff(ts)
    scale = max(float(np.max(np.abs(ts))), float(dt))
    tol = 64 * np.finfo(ts.dtype).eps * scale
    if np.max(np.abs(steps - float(dt))) > tol:
        raise ValueError(
            "`traj` must be saved at every step of size `dt` (integrate with "
            f"`save_every=1`); its time steps range over [{steps.min()!r}, "
            f"{steps.max()!r}] but dt = {float(dt)!r}. For a sparsely saved "
            "trajectory use `traj.evaluate(lnn.noether_charge(L, gen))`, which gives "
            "the same J_k from the saved velocities."
        )


def _internal(discrete, t, h, q0, q1, solver, max_steps):
    """The internal points of the step from `q0` to `q1` (∂L_d/∂z = 0), with whether
    the solver failed and the relative residual (measured against the size of the
    terms of ∂L_d/∂z and of the end momenta)."""
    dtype = tree_dtype(q0)
    if discrete.n_internal == 0:
        return (), jnp.asarray(False), jnp.zeros((), dtype)

    def terms(z):
        d0, dz, d1 = jax.grad(discrete.reduced, argnums=(2, 3, 4))(t, h, q0, z, q1)
        return dz, None, scale_of(dz, d0, d1)

    solver = default_solver(dtype) if solver is None else solver
    guess = discrete.initial_internal(q0, q1)
    z, converged = solve(terms, solver, guess, max_steps)
    _, _, rho, _, _ = relative_residual(terms, z)
    return z, ~converged, rho


def _pair_terms(discrete, gen, t, h, q0, q1, solver, max_steps):
    """`(-⟨D1 Ld0, ξ0⟩, e^{-Δs}⟨D2 Ld0, ξ1⟩, ⟨D1 Ld0, ξ0⟩ + ⟨D2 Ld0, ξ1⟩, failed,
    rho)` for one step, reduced at its start."""
    z, failed, rho = _internal(discrete, t, h, q0, q1, solver, max_steps)
    d0, d1 = jax.grad(discrete.reduced, argnums=(2, 4))(t, h, q0, z, q1)
    xi0, xi1 = gen.xi(t, q0), gen.xi(t + h, q1)
    a, b = tree_dot(d0, xi0), tree_dot(d1, xi1)
    back = jnp.exp(-discrete.log_weight_change(t, h))
    return -a, back * b, a + b, failed, rho


@eqx.filter_jit
def _charges(discrete, gen, ts, q, dt, solver, max_steps: int):
    first = jax.tree.map(lambda x: x[:-1], q)
    second = jax.tree.map(lambda x: x[1:], q)
    start, end, residual, failed, rho = jax.vmap(
        lambda t, a, b: _pair_terms(discrete, gen, t, dt, a, b, solver, max_steps)
    )(ts[:-1], first, second)
    charges = jnp.concatenate([start, end[-1:]])
    return charges, residual, jnp.any(failed), jnp.max(rho)


def _checked(where, charges, failed, rho, dtype, max_steps):
    """Raises (eagerly) or flags (under `jit`) an unconverged internal stage."""
    level = check_level(dtype)
    concrete = not is_traced((failed, rho))
    num = f" ({float(rho):.3g})" if concrete else ""
    checks = [
        (
            failed,
            f"`{where}`: the solve for a step's internal points (∂L_d/∂z = 0) did "
            f"not converge within `max_steps` = {max_steps} iterations (residual "
            f"relative to the size of its terms{num}). Raise `max_steps` or pass "
            "another `solver`.",
        ),
        (
            ~(rho <= level),
            f"`{where}`: a step's internal points solve ∂L_d/∂z = 0 only to{num} of "
            f"the size of its terms, above √ε = {level:.2g} of "
            f"{jnp.dtype(dtype).name}: the charges cannot be trusted. Use float64 or "
            "a `solver` with tighter tolerances.",
        ),
    ]
    if concrete:
        for flag, message in checks:
            if bool(flag):
                raise eqx.EquinoxRuntimeError(message)
        return charges
    for flag, message in checks:
        charges = eqx.error_if(charges, flag, message)
    return charges


def _scale(discrete, ts, x, reduced):
    layers = discrete.layers
    if reduced or not layers:
        return x
    out, _ = jax.vmap(lambda t, v: _times_exp(_log_weight(layers, t), v))(ts, x)
    return out


def _prepare(discrete, gen, traj, dt, solver, max_steps):
    check_discrete(discrete)
    _check_solver(solver)
    _check_int(max_steps, "max_steps")
    _check_generator(gen)
    _check_traj(traj, dt)
    dtype = tree_dtype(traj.q)
    return jnp.asarray(dt, dtype)


def _along(fn, discrete, gen, traj, dt, reduced, solver, max_steps):
    """The charges (`fn` = `discrete_noether_charge`) or the residuals
    (`discrete_invariance_residual`) along `traj`, checked (an internal point that did
    not converge is an error named after `fn`, never a number) and scaled unless
    `reduced`."""
    dt = _prepare(discrete, gen, traj, dt, solver, max_steps)
    charges, residual, failed, rho = _charges(
        discrete, gen, traj.ts, traj.q, dt, solver, max_steps
    )
    where = f"lnn.variational.{fn.__name__}"
    if fn is discrete_noether_charge:
        x, ts = charges, traj.ts
    else:
        x, ts = residual, traj.ts[:-1]
    x = _checked(where, x, failed, rho, dt.dtype, max_steps)
    return _scale(discrete, ts, x, reduced)


def discrete_noether_charge(
    discrete: AbstractDiscreteLagrangian,
    gen: Generator,
    traj: Trajectory,
    dt,
    *,
    reduced: bool = False,
    solver: optx.AbstractRootFinder | None = None,
    max_steps: int = 32,
):
    r"""The discrete Noether charges $J_k = \langle p_k, \xi(t_k, q_k)\rangle$ of a
    point symmetry along a trajectory of `lnn.variational.integrate`, from the discrete
    Lagrangian itself: $p_k = -D_1L_d(q_k, q_{k+1})$, and
    $p_{n-1} = D_2L_d(q_{n-2}, q_{n-1})$ at the last time.

    Conserved to rounding when `gen` is a symmetry of $L_d$ (for example when it is a
    symmetry of $L$ that is linear in $q$); otherwise see
    `discrete_invariance_residual`. Equals `traj.evaluate(lnn.noether_charge(L, gen))`
    up to rounding.

    **Arguments:**

    - `discrete`: the discrete Lagrangian the trajectory was integrated with.
    - `gen`: an `lnn.Generator` with `tau = None`.
    - `traj`: the trajectory, saved at every step (`save_every=1`).
    - `dt`: its time step.
    - `reduced`: for $L = e^{s(t)}L_0$, return $\tilde J_k = e^{-s(t_k)}J_k$
      (never forms $e^{s}$). Ignored for other Lagrangians.
    - `solver`, `max_steps`: the root finder for the internal points of `Lobatto`
      (as for `integrate`; its residual is measured relative to the size of its
      terms). An internal point that does not converge is an error, never a charge.

    **Returns:** an array of shape `(len(traj),)`.
    """
    fn = discrete_noether_charge
    return _along(fn, discrete, gen, traj, dt, reduced, solver, max_steps)


def discrete_invariance_residual(
    discrete: AbstractDiscreteLagrangian,
    gen: Generator,
    traj: Trajectory,
    dt,
    *,
    reduced: bool = False,
    solver: optx.AbstractRootFinder | None = None,
    max_steps: int = 32,
):
    r"""The discrete invariance residual of each step,
    $R_k = \langle D_1L_d, \xi_k\rangle + \langle D_2L_d, \xi_{k+1}\rangle$
    (the derivative of $L_d(q_k, q_{k+1})$ along the generator: the discrete
    Rund–Trautmann residual, cf. `lnn.invariance_residual`).

    Along a solution $J_{k+1} - J_k = R_k$ exactly, so a broken symmetry comes with
    the exact discrete balance $J_n - J_0 = \sum_{k<n} R_k$. With `reduced=True` (for
    $L = e^{s}L_0$) it returns $\tilde R_k = e^{-s(t_k)}R_k$, and
    $e^{s(t_{k+1}) - s(t_k)}\tilde J_{k+1} - \tilde J_k = \tilde R_k$.

    **Arguments:** as `discrete_noether_charge`.

    **Returns:** an array of shape `(len(traj) - 1,)`.
    """
    fn = discrete_invariance_residual
    return _along(fn, discrete, gen, traj, dt, reduced, solver, max_steps)
