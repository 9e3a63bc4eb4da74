"""Euler–Lagrange equations of an arbitrary Lagrangian, by automatic differentiation.

This module holds the generalised force and the choice of a solve strategy for
$M\\ddot q = f$; the strategies themselves live in `_mass_solve.py`.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ._conformal import rate as conformal_rate, split
from ._custom_types import Lagrangian
from ._lagrangian import AbstractLagrangian
from ._mass_solve import (
    certificate,
    declared_checks,
    diagonal_checks,
    mass_operator,
    read_diagonal,
    solve_declared,
    solve_dense,
    solve_diagonal,
    solve_iterative,
)
from ._reporting import error_if, raise_now
from ._tree import tree_axpy, tree_dtype, tree_size, tree_sub
from ._validate import (
    as_array_if_numbers,
    as_time,
    check_floating_tree,
    check_same_structure,
    check_scalar_lagrangian,
    is_traced,
)


def declared_mass(inner, t, q, qdot):
    """The mass matrix that `inner` states (`AbstractLagrangian.mass_matrix`), or
    `None` for a plain callable or a Lagrangian that states none."""
    if isinstance(inner, AbstractLagrangian):
        return inner.mass_matrix(t, q, qdot)
    return None


def _concrete(checks) -> bool:
    return not any(isinstance(flag, jax.core.Tracer) for flag, _ in checks)


class EulerLagrange(eqx.Module):
    r"""The acceleration $\ddot q(t, q, \dot q)$ defined by a Lagrangian.

    Created by `lnn.euler_lagrange`; see there.
    """

    lagrangian: Lagrangian
    dense_threshold: int = eqx.field(static=True, default=16)
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    max_steps: int | None = eqx.field(static=True, default=None)

    def force(self, t, q, qdot):
        r"""The generalised force $f = \partial L_0/\partial q
        - (\partial^2 L_0/\partial\dot q\,\partial q)\dot q
        - \partial^2 L_0/\partial \dot q\,\partial t - \dot s\,\partial L_0/\partial\dot q$,
        so that $M\ddot q = f$."""
        inner, layers = split(self.lagrangian)
        dLdq = jax.grad(inner, argnums=1)(t, q, qdot)
        p_of_tq = lambda tt, qq: jax.grad(inner, argnums=2)(tt, qq, qdot)
        p, mixed = jax.jvp(p_of_tq, (t, q), (jnp.ones_like(t), qdot))
        f = tree_sub(dLdq, mixed)
        if layers:
            s_dot = jnp.asarray(conformal_rate(layers, t), dtype=t.dtype)
            if s_dot.shape != ():
                raise ValueError(
                    "`Conformal.log_weight` must be a scalar function of `t`; its rate "
                    f"has shape {s_dot.shape}."
                )
            f = tree_axpy(-s_dot, p, f)
        return f

    def _checked(self, t, q, qdot):
        q = as_array_if_numbers(q, "q")
        qdot = as_array_if_numbers(qdot, "qdot")
        check_floating_tree(q, "q")
        check_same_structure(q, qdot, "q", "qdot")
        dtype = tree_dtype(q)
        t = as_time(t, dtype)
        inner, _ = split(self.lagrangian)
        check_scalar_lagrangian(inner, t, q, qdot)
        return inner, t, q, qdot

    def _solve(self, inner, t, q, qdot, rhs):
        """`(x, checks)` by the cheapest strategy that applies (decided at trace
        time): declared mass, diagonal read from the program, dense Cholesky for
        small systems, else matrix-free."""
        mass = declared_mass(inner, t, q, qdot)
        if mass is not None:
            return solve_declared(mass, rhs, self.rtol, self.atol, self.max_steps)
        coeffs = read_diagonal(inner, t, q, qdot)
        if coeffs is not None:
            return solve_diagonal(coeffs, rhs)
        if tree_size(q) <= self.dense_threshold:
            return solve_dense(inner, t, q, qdot, rhs)
        return solve_iterative(
            inner, t, q, qdot, rhs, self.rtol, self.atol, self.max_steps
        )

    def acceleration_and_checks(self, t, q, qdot):
        """The acceleration and the checks of its solve, as `(qddot, checks)` with
        `checks` a list of `(flag, message)`; `qddot` is NaN where a flag is set.
        An eager call of the acceleration raises the first failed check; under `jit`
        nothing branches on them (see `_mass_solve`)."""
        inner, t, q, qdot = self._checked(t, q, qdot)
        rhs = self.force(t, q, qdot)
        # Keep the force's dtype equal to the state's (a float32 state with a float64
        # constant in `L` would otherwise be promoted).
        rhs = jtu.tree_map(lambda f, x: f.astype(x.dtype), rhs, q)
        return self._solve(inner, t, q, qdot, rhs)

    def mass_checks(self, t, q, qdot):
        """The once-per-solve checks of $M$ at one state, as a list of
        `(flag, message)`; see `certify_mass`."""
        inner, t, q, qdot = self._checked(t, q, qdot)
        t_, q_, qdot_ = jax.lax.stop_gradient((t, q, qdot))
        mass = declared_mass(inner, t_, q_, qdot_)
        if mass is not None:
            checks = declared_checks(mass, q_)
            if checks is not None:
                return checks
            return certificate(mass, qdot_)
        coeffs = read_diagonal(inner, t_, q_, qdot_)
        if coeffs is not None:
            return diagonal_checks(coeffs)
        if tree_size(q) <= self.dense_threshold:
            zeros = jtu.tree_map(jnp.zeros_like, q_)
            return solve_dense(inner, t_, q_, qdot_, zeros)[1]
        return certificate(mass_operator(inner, t_, q_, qdot_), qdot_)

    def certify_mass(self, t, q, qdot):
        r"""Checks, once, that the mass matrix $M = \partial^2 L/\partial\dot q^2$ at
        `(t, q, qdot)` is positive definite, where the acceleration itself only
        returns NaN.

        `lnn.simulate` calls it at the initial state, before its loop. Which test
        runs depends on the solve strategy:

        - a mass the Lagrangian declares (scalar or diagonal), or a diagonal read
          from the program: every entry positive and finite;
        - the dense path: its Cholesky factorisation;
        - the matrix-free path (and a declared lineax operator):
          $k = \min(n, 20)$ Lanczos steps with full reorthogonalisation ($k$
          Hessian-vector products and $k$ state-sized vectors, once), from a fixed
          pseudo-random start vector. The Ritz values $\theta$ lie in
          $[\lambda_{\min}(M), \lambda_{\max}(M)]$, so an error is a proof, up to
          the rounding of the products: $\theta_{\min} < -\tau$ means $M$ has a
          negative eigenvalue; $|\theta_{\min}| \le \tau$ means
          $\lambda_{\min}(M) \le \tau$, singular or too ill-conditioned for the solve
          to be trusted, with $\tau = 1000\,\varepsilon\,\max|\theta|$
          ($\varepsilon$ the dtype's machine epsilon; 1000·ε is CG's default
          tolerance). Passing is *not* a proof of positive definiteness there: a
          negative or tiny eigenvalue that $k$ Lanczos steps do not resolve goes
          unnoticed, and $M$ is checked only at this state.

        **Arguments:** `t`, `q`, `qdot` as for the acceleration.

        **Returns:** `qdot`, unchanged, carrying the check as an `eqx.error_if`:
        thread it into what follows, so that the check is not dropped under `jit`.
        Called eagerly, the error is raised at once.
        """
        checks = self.mass_checks(t, q, qdot)
        if _concrete(checks):
            raise_now(checks)
            return qdot
        return error_if(qdot, checks)

    def __call__(self, t, q, qdot):
        x, checks = self.acceleration_and_checks(t, q, qdot)
        if not is_traced((t, q, qdot)) and isinstance(
            self.lagrangian, AbstractLagrangian
        ):
            self.lagrangian.check_time_span(t, t)
        if _concrete(checks):
            raise_now(checks)
        return x


def euler_lagrange(
    L: Lagrangian,
    *,
    dense_threshold: int = 16,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
) -> Callable:
    r"""Derives the equations of motion of a Lagrangian by automatic differentiation.

    Solves the Euler–Lagrange equations for the acceleration,

    $$M\,\ddot q = \frac{\partial L}{\partial q}
        - \frac{\partial^2 L}{\partial\dot q\,\partial q}\,\dot q
        - \frac{\partial^2 L}{\partial\dot q\,\partial t},
      \qquad M = \frac{\partial^2 L}{\partial\dot q^2},$$

    keeping every term, so velocity-dependent potentials (magnetic fields) and explicit
    time dependence are ordinary inputs. The mixed terms are one Jacobian-vector product.
    $M$ is never formed for large `q`. The solve strategy is chosen at trace time,
    cheapest first (the strategies live in `_mass_solve.py`):

    - *$M$ declared.* A Lagrangian that subclasses `lnn.AbstractLagrangian` may state
      its mass (`mass_matrix`): a scalar or diagonal $c(t)$, divided out, or a lineax
      operator, solved with. Every Table-1 builder of `lnn.dynamics` does, and
      `lnn.Conformal` passes its inner Lagrangian's on.
    - *$M$ diagonal, read from the program.* For a plain callable the traced
      Hessian-vector product $u \mapsto Mu$ is read operation by operation; if it is
      provably "each leaf of $u$ times a coefficient that does not depend on $u$"
      (a hand-written Table-1 Lagrangian, where $M = c(t)\,I$; per-parameter or
      per-layer masses; magnetic terms), then $\ddot q = f / \mathrm{diag}(M)$.
      Either way the evaluation costs one gradient of the loss, like a hand-written
      ODE, and compiles to no conditional and no host callback (see `benchmarks/`).
    - *Small systems* (at most `dense_threshold` degrees of freedom): $M$ built
      densely and factorised by Cholesky.
    - *Otherwise, $\ddot q = f / M_{00}$ is tried at run time* and accepted only if
      $M\ddot q = f$ holds element by element to `rtol`; else *conjugate gradients*
      (`lineax.CG`) with Hessian-vector products, in float32 (and lower precisions)
      followed by one step of iterative refinement (CG on the residual), so the
      acceleration is accurate to about $\varepsilon\,\mathrm{cond}(M)$ rather than
      to CG's tolerance.

    **Checks, and where they run.** Nothing in the acceleration branches on a
    value: on a GPU each conditional or host callback would cost a device-to-host
    synchronisation per evaluation. Where $M$ fails its test (a diagonal entry that is
    not positive, a failed Cholesky factorisation, CG breaking down or meeting
    non-positive curvature) the acceleration is NaN, never a finite wrong number.
    Called eagerly it raises instead. `lnn.simulate` checks $M$ once at the initial
    state (`EulerLagrange.certify_mass`) and the Lagrangian's time span
    (`AbstractLagrangian.span_checks`) before its loop, and raises after it if the
    integration failed or is not finite. Under your own `jit`, call
    `accel.certify_mass(t, q, qdot)` where it matters.

    The acceleration can be differentiated (`jax.grad`, `jax.jvp`) and batched
    (`jax.vmap`): the matrix-free solve is a `jax.lax.custom_linear_solve`, so derivatives
    follow the implicit function theorem, $d\ddot q = M^{-1}(df - dM\,\ddot q)$, and
    never pass through CG's iterations.

    For `lnn.Conformal(s, L0)` the exponential weight is cancelled analytically (see
    there), so $e^{t/\kappa}$ never overflows.

    **Arguments:**

    - `L`: the Lagrangian, any callable `L(t, q, qdot) -> scalar`; `q` and `qdot` are
      pytrees of floating arrays with the same structure.
    - `dense_threshold`: systems of at most this many scalar degrees of freedom use the
      dense path.
    - `rtol`, `atol`, `max_steps`: tolerances of the CG solve; by default
      `rtol = 1000·eps` of the state's dtype and `atol = rtol·max|f|`.

    **Returns:**

    An `eqx.Module` `accel(t, q, qdot) -> qddot` (a pytree like `q`).

    **Raises:**

    `ValueError` at trace time if `L` does not return a floating scalar or `q` and
    `qdot` differ in structure, and for an eager call at a time outside the
    Lagrangian's domain (e.g. `nesterov` at $t \le 0$); an `eqx.EquinoxRuntimeError`
    naming the mass matrix for an eager call where $M$ fails its test. Compiled, the
    acceleration returns NaN there instead (see above). The matrix-free path only
    sees what CG sees (breakdown, non-positive curvature along the force, no
    convergence); `EulerLagrange.certify_mass` adds Lanczos steps.

    A (nested) list or tuple of Python numbers as `q` or `qdot`, such as `[1.0, 2.0]`,
    is read as one array of the default floating dtype.

    **Example:**

    ```python
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.5 * jnp.sum(q**2)
    accel = lnn.euler_lagrange(L)
    accel(0.0, jnp.array([1.0]), jnp.array([0.0]))  # [-1.]
    ```
    """
    if not callable(L):
        raise ValueError(f"`L` must be a callable L(t, q, qdot); got {L!r}.")
    if not isinstance(dense_threshold, int) or dense_threshold < 0:
        raise ValueError(
            f"`dense_threshold` must be a non-negative int; got {dense_threshold!r}."
        )
    return EulerLagrange(L, dense_threshold, rtol, atol, max_steps)
