"""Euler–Lagrange equations of an arbitrary Lagrangian, by automatic differentiation."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx

from ._custom_types import Lagrangian
from ._lagrangian import Conformal
from ._mass import diagonal_mass, lanczos_ritz_values
from ._tree import (
    as_array_if_numbers,
    as_time,
    check_floating_tree,
    check_same_structure,
    tree_all_finite,
    tree_axpy,
    tree_dot,
    tree_dtype,
    tree_max_abs,
    tree_size,
    tree_sub,
)

_MASS_HINT = (
    "The Euler–Lagrange equations need the mass matrix M = ∂²L/∂q̇² to be positive "
    "definite (a Lagrangian with no kinetic term, or a kinetic term that vanishes at "
    "this time, has a singular M). If M is negative definite, use -L, which has the "
    "same equations of motion."
)


def check_scalar_lagrangian(L, t, q, qdot, name: str = "L") -> None:
    """Raises `ValueError` unless `L(t, q, qdot)` is a floating scalar (at trace time)."""
    try:
        out = jax.eval_shape(L, t, q, qdot)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"Calling the Lagrangian `{name}(t, q, qdot)` failed while tracing: {e}"
        ) from e
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"The Lagrangian `{name}` must return a scalar; it returned {shape}. "
            "Reduce it, e.g. with `jnp.sum`."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(
            f"The Lagrangian `{name}` must return a floating scalar; got dtype "
            f"{out.dtype}."
        )


def _split(L):
    """Returns `(inner, rate)`: `L = exp(s) * inner` with `rate = ṡ` (or `None`)."""
    if isinstance(L, Conformal):
        return L.inner, L.rate
    return L, None


def _mass_operator(inner, t, q, qdot):
    """`M = ∂²L0/∂q̇²` as a matrix-free symmetric operator (Hessian-vector products)."""
    p_of_v = lambda v: jax.grad(inner, argnums=2)(t, q, v)
    fn = lambda u: jax.jvp(p_of_v, (qdot,), (u,))[1]
    structure = jax.eval_shape(lambda: qdot)
    return lx.FunctionLinearOperator(
        fn, structure, tags=(lx.symmetric_tag, lx.positive_semidefinite_tag)
    )


def _solve_dense(inner, t, q, qdot, rhs):
    """Dense Cholesky solve, only used for small systems (`size <= dense_threshold`)."""
    v_flat, unravel = jax.flatten_util.ravel_pytree(qdot)
    b_flat, _ = jax.flatten_util.ravel_pytree(rhs)
    p_flat = lambda v: jax.flatten_util.ravel_pytree(
        jax.grad(inner, argnums=2)(t, q, unravel(v))
    )[0]
    M = jax.jacfwd(p_flat)(v_flat)
    M = 0.5 * (M + M.T)
    chol = jnp.linalg.cholesky(M)
    diag = jnp.diagonal(chol)
    eps = jnp.finfo(M.dtype).eps
    scale = jnp.max(jnp.abs(jnp.diagonal(M)))
    bad = (~jnp.all(jnp.isfinite(chol))) | (
        jnp.min(diag) ** 2 <= 10 * M.shape[0] * eps * scale
    )
    bad = bad | (scale == 0)
    chol = eqx.error_if(
        chol,
        bad,
        "The mass matrix M = ∂²L/∂q̇² is singular or not positive definite "
        "(its Cholesky factorisation failed). " + _MASS_HINT,
    )
    x = jax.scipy.linalg.cho_solve((chol, True), b_flat)
    return unravel(x)


def _cg_solve(operator, rhs, rho, rtol, atol, max_steps):
    """Conjugate gradients for `M x = b`, given the Rayleigh quotient `rho` of M along b."""
    dtype = tree_dtype(rhs)
    size = tree_size(rhs)
    # A scalar preconditioner s·I leaves CG mathematically unchanged, but lineax's
    # breakdown test compares ⟨p, Mp⟩ with ⟨p, r⟩ in absolute units (threshold
    # ∝ eps·size), which would reject a perfectly good float32 M of size ~1e5; with
    # s ∝ size/ρ the test becomes relative to M's own scale.
    scale = jnp.exp2(jnp.round(jnp.log2(20.0 * size / rho))).astype(dtype)
    preconditioner = lx.FunctionLinearOperator(
        lambda r: jtu.tree_map(lambda x: scale * x, r),
        operator.in_structure(),
        tags=(lx.symmetric_tag, lx.positive_semidefinite_tag),
    )
    y0 = jtu.tree_map(lambda b: (b / rho).astype(b.dtype), rhs)
    solver = lx.CG(rtol=rtol, atol=atol, max_steps=max_steps, stabilise_every=10)
    sol = lx.linear_solve(
        operator,
        rhs,
        solver,
        options={"preconditioner": preconditioner, "y0": y0},
        throw=False,
    )
    return sol.value, sol.result != lx.RESULTS.successful


_CG_FAILED = (
    "Solving M q̈ = f for the acceleration with conjugate gradients failed: the mass "
    "matrix M = ∂²L/∂q̇² is singular or not positive definite (or CG hit its step "
    "limit). " + _MASS_HINT
)


def _first_diagonal_entry(matvec, like):
    """`M[0, 0]` for the first scalar of the first non-empty leaf, by one
    Hessian-vector product with a one-hot vector. When `M = c(t)·I` (every Table-1
    Lagrangian) the compiler reduces this to computing `c(t)`: only one entry of the
    product is used and the product is elementwise."""
    leaves, treedef = jtu.tree_flatten(like)
    index = next(i for i, leaf in enumerate(leaves) if leaf.size > 0)
    probe = [jnp.zeros_like(leaf) for leaf in leaves]
    probe[index] = probe[index].reshape(-1).at[0].set(1).reshape(leaves[index].shape)
    product = matvec(jtu.tree_unflatten(treedef, probe))
    return jtu.tree_leaves(product)[index].reshape(-1)[0]


_CURVATURE_FAILED = (
    "The mass matrix M = ∂²L/∂q̇² has non-positive curvature ⟨f, Mf⟩ <= 0 along the "
    "force f (or the force is not finite). " + _MASS_HINT
)


# Dtypes less precise than this (float32, float16, bfloat16) get one step of iterative
# refinement after CG; float64 does not need it (1000·eps ≈ 2e-13).
_REFINE_ABOVE_EPS = 1e-10


def _cg_with_checks(operator, rhs, rtol, atol, max_steps):
    """CG for `M x = b`, with `(bad_curvature, failed)` flags for the error checks."""
    dtype = tree_dtype(rhs)
    atol_ = rtol * tree_max_abs(rhs) if atol is None else atol
    # The Rayleigh quotient ρ = ⟨b, Mb⟩/⟨b, b⟩ of M along the force b is a curvature
    # certificate (it must be positive) and sets the scale of M for CG.
    Mb = operator.mv(rhs)
    b_sq = tree_dot(rhs, rhs)
    zero_force = b_sq == 0
    rho = tree_dot(rhs, Mb) / jnp.where(zero_force, 1.0, b_sq)
    bad_curvature = ((~zero_force) & ~(rho > 0)) | ~jnp.isfinite(b_sq)
    rho = jnp.where(zero_force | bad_curvature, 1.0, rho).astype(dtype)
    x, failed = _cg_solve(operator, rhs, rho, rtol, atol_, max_steps)
    if jnp.finfo(dtype).eps > _REFINE_ABOVE_EPS:
        # One step of iterative refinement in low precision: CG stops at a relative
        # residual rtol (1000·eps ≈ 1.2e-4 in float32 by default), far above what an
        # integration at rtol ~1e-6 needs. Solving M d = b − Mx to the same relative
        # tolerance and adding d shrinks the error by about that factor again, down
        # to the floor of eps·cond(M), without asking CG for a residual that rounding
        # may never let it reach (which would stall it at its step limit).
        r = tree_sub(rhs, operator.mv(x))
        atol_r = rtol * tree_max_abs(r) if atol is None else atol
        d, failed_r = _cg_solve(operator, r, rho, rtol, atol_r, max_steps)
        x = jtu.tree_map(jnp.add, x, d)
        failed = failed | failed_r
    # For positive-definite M, ⟨x, b⟩ = ⟨x, M x⟩ > 0 whenever b ≠ 0.
    negative = (~zero_force) & ~(tree_dot(x, rhs) > 0)
    return x, bad_curvature, failed | ~tree_all_finite(x) | negative


def _raise_if(x, bad_curvature, cg_failed):
    return eqx.branched_error_if(
        x,
        bad_curvature | cg_failed,
        jnp.where(bad_curvature, 0, 1),
        [_CURVATURE_FAILED, _CG_FAILED],
    )


def _shortcut_or_cg(matvec, rhs, rtol, atol, max_steps, raise_inside):
    """Solves `M x = b`, returning `(x, (bad_curvature, cg_failed))`.

    First `x = b / M00`. It is accepted only if it solves the system, checked element
    by element: `|c·x − M x| <= rtol·|c·x| + atol` with `c = M00 > 0` (and `c·x = b`
    up to one rounding). For a Table-1 Lagrangian (`M = c(t)·I`) this always holds;
    anything else, including a `b` that is merely an eigenvector of a non-scalar M,
    goes to conjugate gradients.

    The fallback is a `while_loop` that runs zero times or once, not a `lax.cond`: a
    `cond` whose branch returns `b / M00` makes XLA copy the whole state into the
    `cond`'s output buffer, while a loop that does not run hands its input through.
    Under `vmap` the loop also runs CG only if some batch member needs it (a batched
    `cond` would run both branches for all). If `raise_inside`, the CG checks raise in
    the loop body, so the fast path carries no error check at all.
    """
    dtype = tree_dtype(rhs)
    eps = float(jnp.finfo(dtype).eps)
    rtol_ = 1000 * eps if rtol is None else rtol
    atol_shortcut = 0.0 if atol is None else atol
    operator = lx.FunctionLinearOperator(
        matvec,
        jax.eval_shape(lambda: rhs),
        tags=(lx.symmetric_tag, lx.positive_semidefinite_tag),
    )
    c = _first_diagonal_entry(matvec, rhs)
    c_ok = jnp.isfinite(c) & (c > 0)
    c_safe = jnp.where(c_ok, c, 1.0).astype(dtype)
    x0 = jtu.tree_map(lambda b: b / c_safe, rhs)

    def solves(x):
        mx = matvec(x)
        ok = jtu.tree_map(
            lambda x, mx: jnp.all(
                jnp.abs(c_safe * x - mx) <= rtol_ * jnp.abs(c_safe * x) + atol_shortcut
            ),
            x,
            mx,
        )
        return c_ok & jtu.tree_reduce(jnp.logical_and, ok)

    def needs_cg(carry):
        # After CG has run (`done`) this re-checks its result once more (one more
        # product with M, on the rare CG path) rather than adding a `cond` to the
        # fast path.
        x, done, _, _ = carry
        return ~done & ~solves(x)

    def run_cg(carry):
        # b = c·x, exactly when c is not accepted (c = 1) and to one rounding
        # otherwise (far below CG's tolerance): the loop does not hold on to b, so
        # the force need not be kept in memory for a branch that rarely runs.
        b = jtu.tree_map(lambda x: c_safe * x, carry[0])
        x, bad_curvature, cg_failed = _cg_with_checks(
            operator, b, rtol_, atol, max_steps
        )
        if raise_inside:
            x = _raise_if(x, bad_curvature, cg_failed)
            bad_curvature = cg_failed = jnp.asarray(False)
        return x, jnp.asarray(True), bad_curvature, cg_failed

    false = jnp.asarray(False)
    x, _, bad_curvature, cg_failed = jax.lax.while_loop(
        needs_cg, run_cg, (x0, false, false, false)
    )
    return x, (bad_curvature, cg_failed)


_DIAGONAL_FAILED = (
    "The mass matrix M = ∂²L/∂q̇² is diagonal here, and one of its diagonal entries is "
    "not positive (or not finite). " + _MASS_HINT
)


def _diagonal_coefficients(inner, t, q, qdot):
    """The diagonal of M, one coefficient per leaf (see `_mass.diagonal_mass`), if
    the traced Hessian-vector product shows that M is diagonal; else `None`."""
    operator = _mass_operator(inner, t, q, qdot)
    leaves, treedef = jtu.tree_flatten(qdot)
    flat_mv = lambda *u: jtu.tree_leaves(operator.mv(jtu.tree_unflatten(treedef, u)))
    return diagonal_mass(jax.make_jaxpr(flat_mv)(*leaves), leaves)


def _solve_diagonal(coeffs, rhs):
    """`x = b / diag(M)`, after checking that every diagonal entry is positive. The
    check is threaded onto the coefficients (scalars, for a Table-1 Lagrangian), not
    onto the state."""
    ok = jtu.tree_reduce(
        jnp.logical_and,
        [jnp.all(jnp.isfinite(c) & (c > 0)) for c in coeffs],
    )
    coeffs = eqx.error_if(coeffs, ~ok, _DIAGONAL_FAILED)
    leaves, treedef = jtu.tree_flatten(rhs)
    return jtu.tree_unflatten(
        treedef, [b / c for b, c in zip(leaves, coeffs, strict=True)]
    )


def _solve_iterative(inner, t, q, qdot, rhs, rtol, atol, max_steps):
    operator = _mass_operator(inner, t, q, qdot)
    # Called eagerly, the CG checks must raise outside every compiled loop so that
    # they are ordinary `EquinoxRuntimeError`s; under tracing they raise inside the
    # rarely-run CG branch (see `_shortcut_or_cg`).
    traced = any(
        isinstance(leaf, jax.core.Tracer) for leaf in jtu.tree_leaves((t, q, qdot))
    )
    solve = lambda matvec, b: _shortcut_or_cg(
        matvec, b, rtol, atol, max_steps, raise_inside=traced
    )
    # `custom_linear_solve` differentiates x = M⁻¹b implicitly (dx = M⁻¹(db − dM·x),
    # with M's dependence on (t, q, q̇) through `operator.mv`), so derivatives never
    # pass through the loop or CG.
    x, (bad_curvature, cg_failed) = jax.lax.custom_linear_solve(
        operator.mv, rhs, solve, symmetric=True, has_aux=True
    )
    if traced:
        return x
    return _raise_if(x, bad_curvature, cg_failed)


# Lanczos steps of the once-per-solve certification, and the relative size below
# which a Ritz value counts as zero: CG's default tolerance, rtol = 1000·eps. If
# λ_min(M) <= 1000·eps·λ_max(M), the acceleration M⁻¹f computed to that tolerance
# carries no correct digit, so such an M is refused as numerically singular.
_LANCZOS_STEPS = 20
_SINGULAR_RTOL = 1000

_LANCZOS_NEGATIVE = (
    "The mass matrix M = ∂²L/∂q̇² is not positive definite at the initial state: "
    "Lanczos steps there found a negative Ritz value (Ritz values lie between M's "
    "smallest and largest eigenvalues, so M has a negative eigenvalue). " + _MASS_HINT
)
_LANCZOS_SINGULAR = (
    "The mass matrix M = ∂²L/∂q̇² is singular, or too ill-conditioned for the solve, "
    "at the initial state: Lanczos steps there found a Ritz value θ with "
    "|θ| <= 1000·eps·max|Ritz value| (Ritz values lie between M's smallest and "
    "largest eigenvalues, so λ_min(M) <= 1000·eps·λ_max(M)). " + _MASS_HINT
)


def _ritz_values(inner, t, q, qdot, steps=_LANCZOS_STEPS):
    """Ritz values of `M = ∂²L0/∂q̇²` at `(t, q, qdot)` from `min(steps, n)` Lanczos
    steps (Hessian-vector products only), ascending; see `lanczos_ritz_values`."""
    t, q, qdot = jax.lax.stop_gradient((t, q, qdot))
    operator = _mass_operator(inner, t, q, qdot)
    flat, unravel = jax.flatten_util.ravel_pytree(qdot)
    matvec = lambda v: jax.flatten_util.ravel_pytree(operator.mv(unravel(v)))[0]
    n = flat.size
    return lanczos_ritz_values(matvec, n, flat.dtype, min(steps, n))


def _certificate_failures(theta, eps):
    """`(negative, singular)` flags from the ascending Ritz values `theta`, with `eps`
    the machine epsilon of the least precise leaf of the state."""
    tol = _SINGULAR_RTOL * eps * jnp.max(jnp.abs(theta))
    negative = theta[0] < -tol
    singular = ~(theta[0] > tol)  # also NaN, and M = 0
    return negative, singular


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
        inner, rate = _split(self.lagrangian)
        dLdq = jax.grad(inner, argnums=1)(t, q, qdot)
        p_of_tq = lambda tt, qq: jax.grad(inner, argnums=2)(tt, qq, qdot)
        p, mixed = jax.jvp(p_of_tq, (t, q), (jnp.ones_like(t), qdot))
        f = tree_sub(dLdq, mixed)
        if rate is not None:
            s_dot = jnp.asarray(rate(t), dtype=t.dtype)
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
        inner, _ = _split(self.lagrangian)
        check_scalar_lagrangian(inner, t, q, qdot)
        return inner, t, q, qdot

    def certify_mass(self, t, q, qdot):
        r"""Checks, once, that the mass matrix $M = \partial^2 L/\partial\dot q^2$ at
        `(t, q, qdot)` is not indefinite or singular, where the acceleration would not.

        Only the matrix-free path needs it (`lnn.simulate` calls it at the initial
        state, before its loop): the dense path certifies $M$ by its Cholesky
        factorisation, and a diagonal $M$ read from the program is checked entry by
        entry, at every evaluation. On the matrix-free path this runs
        $k = \min(n, 20)$ Lanczos steps with full reorthogonalisation ($k$
        Hessian-vector products and $k$ state-sized vectors, once), from a fixed
        pseudo-random start vector. The Ritz values $\theta$ lie in
        $[\lambda_{\min}(M), \lambda_{\max}(M)]$, so an error is a proof, up to
        the rounding of the products:

        - $\theta_{\min} < -\tau$: $M$ has a negative eigenvalue (indefinite or
          negative definite);
        - $|\theta_{\min}| \le \tau$: $\lambda_{\min}(M) \le \tau$, singular or too
          ill-conditioned for the solve to be trusted,

        with $\tau = 1000\,\varepsilon\,\max|\theta|$ ($\varepsilon$ the dtype's
        machine epsilon; 1000·ε is CG's default tolerance). Passing is *not* a proof
        of positive definiteness: a negative or tiny eigenvalue that $k$ Lanczos
        steps do not resolve (one close to the rest of a wide spectrum) goes
        unnoticed here, and $M$ is checked only at this state. The per-evaluation
        solve still raises when CG breaks down or meets negative curvature.

        A direct call `accel(t, q, qdot)` does not run this check (it would double
        the cost of one evaluation); call `certify_mass` yourself where it matters.

        **Arguments:** `t`, `q`, `qdot` as for the acceleration.

        **Returns:** `qdot`, unchanged, carrying the check as an `eqx.error_if`:
        thread it into what follows, so that the check is not dropped under `jit`.
        Called eagerly, the error is raised at once.
        """
        inner, t, q, qdot = self._checked(t, q, qdot)
        if tree_size(q) <= self.dense_threshold:
            return qdot
        if _diagonal_coefficients(inner, t, q, qdot) is not None:
            return qdot
        theta = _ritz_values(inner, t, q, qdot)
        eps = max(float(jnp.finfo(jnp.result_type(x)).eps) for x in jtu.tree_leaves(q))
        negative, singular = _certificate_failures(theta, eps)
        if not isinstance(theta, jax.core.Tracer):  # called eagerly: raise here
            if bool(negative) or bool(singular):
                raise eqx.EquinoxRuntimeError(
                    _LANCZOS_NEGATIVE if bool(negative) else _LANCZOS_SINGULAR
                )
            return qdot
        return eqx.branched_error_if(
            qdot,
            negative | singular,
            jnp.where(negative, 0, 1),
            [_LANCZOS_NEGATIVE, _LANCZOS_SINGULAR],
        )

    def __call__(self, t, q, qdot):
        inner, t, q, qdot = self._checked(t, q, qdot)
        rhs = self.force(t, q, qdot)
        # Keep the force's dtype equal to the state's (a float32 state with a float64
        # constant in `L` would otherwise be promoted).
        rhs = jtu.tree_map(lambda f, x: f.astype(x.dtype), rhs, q)
        if tree_size(q) <= self.dense_threshold:
            return _solve_dense(inner, t, q, qdot, rhs)
        coeffs = _diagonal_coefficients(inner, t, q, qdot)
        if coeffs is not None:
            return _solve_diagonal(coeffs, rhs)
        return _solve_iterative(
            inner, t, q, qdot, rhs, self.rtol, self.atol, self.max_steps
        )


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
    $M$ is never formed for large `q`. Three cases, from cheapest:

    - *$M$ diagonal, read from the program.* The traced Hessian-vector product
      $u \mapsto Mu$ is read operation by operation; if it is provably "each leaf of
      $u$ times a coefficient that does not depend on $u$" (every Table-1 Lagrangian,
      where $M = c(t)\,I$; per-parameter or per-layer masses; magnetic terms), then
      $\ddot q = f / \mathrm{diag}(M)$, with no run-time test and no control flow. The
      evaluation then costs one gradient of the loss, like a hand-written ODE (see
      `benchmarks/`). Non-positive diagonal entries raise an error.
    - *Otherwise, $\ddot q = f / M_{00}$ is tried at run time* and accepted only if
      $M\ddot q = f$ holds element by element to `rtol`.
    - *Otherwise, conjugate gradients* (`lineax.CG`) with Hessian-vector products;
      in float32 (and lower precisions) followed by one step of iterative
      refinement (CG on the residual), so the acceleration is accurate to about
      $\varepsilon\,\mathrm{cond}(M)$ rather than to CG's tolerance.

    Systems with at most `dense_threshold` degrees of freedom build $M$ densely and use
    a Cholesky factorisation, which also certifies that $M$ is positive definite.

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
    `qdot` differ in structure; an `eqx.error_if` runtime error naming the mass matrix
    if $M$ is singular or not positive definite. The dense path (Cholesky) and a
    diagonal $M$ read from the program certify this at every evaluation; the
    matrix-free path only catches CG breaking down, meeting non-positive curvature
    along the force, or failing to converge. `lnn.simulate` adds a Lanczos check of
    $M$ at the initial state on that path, `EulerLagrange.certify_mass`, which a
    direct call does not run.

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
