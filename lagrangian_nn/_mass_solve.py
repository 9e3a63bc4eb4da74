r"""Solve strategies for the mass equation $M\ddot q = f$, $M = \partial^2 L/\partial\dot q^2$.

One function per strategy, cheapest first; `EulerLagrange` picks one at trace time:

- `solve_declared`: the Lagrangian states its mass (`AbstractLagrangian.mass_matrix`):
  a scalar or diagonal $c(t)$ (every Table-1 Lagrangian), or a lineax operator.
- `solve_diagonal` after `read_diagonal`: $M$ read as diagonal from the jaxpr of the
  Hessian-vector product (`_mass.diagonal_mass`), for plain callables.
- `solve_dense`: a Cholesky factorisation, for systems of a few degrees of freedom.
- `solve_iterative`: $f/M_{00}$, accepted only if it solves the system element by
  element, else conjugate gradients with Hessian-vector products.

Every strategy returns `(x, checks)`: `x` the acceleration and `checks` a list of
`(flag, message)` pairs (see `_reporting`), each flag a scalar boolean that is true when $M$ fails a
test (singular, not positive definite, CG breakdown). The hot path never branches on
them: where a check fails, `x` is NaN (a `select`, not a conditional), and the caller
decides when to look. `EulerLagrange` raises them at once when called eagerly;
`lnn.simulate` checks $M$ once before its loop (`EulerLagrange.certify_mass`) and, only
if the integration fails, evaluates the checks at the last accepted state to say why.
On a GPU a conditional or a host callback in the vector field costs one
device-to-host synchronisation per evaluation; this design has none.

`certificate` is the matrix-free path's once-per-solve test: a few Lanczos steps, whose
Ritz values bound $M$'s spectrum from inside.
"""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx

from ._mass import diagonal_mass, lanczos_ritz_values
from ._reporting import poison
from ._tree import (
    tree_all_finite,
    tree_dot,
    tree_dtype,
    tree_max_abs,
    tree_sub,
)

MASS_HINT = (
    "The Euler–Lagrange equations need the mass matrix M = ∂²L/∂q̇² to be positive "
    "definite (a Lagrangian with no kinetic term, or a kinetic term that vanishes at "
    "this time, has a singular M). If M is negative definite, use -L, which has the "
    "same equations of motion."
)


# --- Declared and diagonal masses ----------------------------------------------------

DIAGONAL_FAILED = (
    "The mass matrix M = ∂²L/∂q̇² is diagonal here, and one of its diagonal entries is "
    "not positive (or not finite). " + MASS_HINT
)
DECLARED_FAILED = (
    "The mass matrix M that the Lagrangian declares (`mass_matrix`) is not positive "
    "(or not finite). " + MASS_HINT
)
OPERATOR_FAILED = (
    "Solving M q̈ = f with the mass operator that the Lagrangian declares "
    "(`mass_matrix`) failed: it is singular or not positive definite. " + MASS_HINT
)


def _coefficients_per_leaf(mass, like):
    """A declared scalar (one coefficient for all of `like`) or pytree of coefficients
    as one coefficient per leaf of `like`."""
    leaves, treedef = jtu.tree_flatten(like)
    if isinstance(mass, int | float) or (
        eqx.is_array_like(mass) and jnp.shape(mass) == ()
    ):
        return [jnp.asarray(mass)] * len(leaves)
    mass_leaves, mass_def = jtu.tree_flatten(mass)
    if mass_def != treedef:
        raise ValueError(
            "`mass_matrix` must return a scalar, a pytree like `q` of coefficients "
            f"(scalars or arrays of each leaf's shape), or a lineax operator; got "
            f"structure {mass_def} for `q` of structure {treedef}."
        )
    for m, leaf in zip(mass_leaves, leaves, strict=True):
        if jnp.shape(m) not in ((), jnp.shape(leaf)):
            raise ValueError(
                "`mass_matrix` must give each leaf a scalar coefficient or one of the "
                f"leaf's shape {jnp.shape(leaf)}; got shape {jnp.shape(m)}."
            )
    return [jnp.asarray(m) for m in mass_leaves]


def solve_diagonal(coeffs, rhs, message=DIAGONAL_FAILED):
    """`x = b / diag(M)`, one coefficient per leaf (scalars for a Table-1 Lagrangian).
    If any coefficient is not positive and finite, every coefficient becomes NaN:
    the check is a `select` on the coefficients, not a pass over the state."""
    leaves, treedef = jtu.tree_flatten(rhs)
    coeffs = [
        jnp.asarray(c).astype(b.dtype) for c, b in zip(coeffs, leaves, strict=True)
    ]
    checks = diagonal_checks(coeffs, message)
    bad = checks[0][0]
    x = [b / jnp.where(bad, jnp.nan, c) for b, c in zip(leaves, coeffs, strict=True)]
    return jtu.tree_unflatten(treedef, x), checks


def solve_declared(mass, rhs, rtol=None, atol=None, max_steps=None):
    """Solves with a declared mass: a scalar or pytree of diagonal coefficients, or a
    lineax operator (conjugate gradients if tagged positive semidefinite, else
    lineax's automatic choice)."""
    if isinstance(mass, lx.AbstractLinearOperator):
        dtype = tree_dtype(rhs)
        eps = float(jnp.finfo(dtype).eps)
        rtol_ = 1000 * eps if rtol is None else rtol
        atol_ = rtol_ * tree_max_abs(rhs) if atol is None else atol
        if lx.is_positive_semidefinite(mass):
            solver = lx.CG(rtol=rtol_, atol=atol_, max_steps=max_steps)
        else:
            solver = lx.AutoLinearSolver(well_posed=True)
        sol = lx.linear_solve(mass, rhs, solver, throw=False)
        failed = (sol.result != lx.RESULTS.successful) | ~tree_all_finite(sol.value)
        checks = [(failed, OPERATOR_FAILED)]
        return poison(sol.value, checks), checks
    return solve_diagonal(_coefficients_per_leaf(mass, rhs), rhs, DECLARED_FAILED)


def declared_checks(mass, like):
    """The checks of a declared mass alone (no solve), for `certify_mass`; `None` for
    an operator, which is certified like any matrix-free M."""
    if isinstance(mass, lx.AbstractLinearOperator):
        return None
    return diagonal_checks(_coefficients_per_leaf(mass, like), DECLARED_FAILED)


def mass_operator(inner, t, q, qdot):
    """`M = ∂²L0/∂q̇²` as a matrix-free symmetric operator (Hessian-vector products)."""
    p_of_v = lambda v: jax.grad(inner, argnums=2)(t, q, v)
    fn = lambda u: jax.jvp(p_of_v, (qdot,), (u,))[1]
    structure = jax.eval_shape(lambda: qdot)
    return lx.FunctionLinearOperator(
        fn, structure, tags=(lx.symmetric_tag, lx.positive_semidefinite_tag)
    )


def read_diagonal(inner, t, q, qdot):
    """The diagonal of M, one coefficient per leaf (see `_mass.diagonal_mass`), if the
    traced Hessian-vector product shows that M is diagonal; else `None`."""
    operator = mass_operator(inner, t, q, qdot)
    leaves, treedef = jtu.tree_flatten(qdot)
    flat_mv = lambda *u: jtu.tree_leaves(operator.mv(jtu.tree_unflatten(treedef, u)))
    return diagonal_mass(jax.make_jaxpr(flat_mv)(*leaves), leaves)


def diagonal_checks(coeffs, message=DIAGONAL_FAILED):
    """`[(flag, message)]`: whether a diagonal coefficient is not positive and
    finite."""
    ok = jnp.asarray(True)
    for c in coeffs:
        ok = ok & jnp.all(jnp.isfinite(c) & (c > 0))
    return [(~ok, message)]


# --- Dense ---------------------------------------------------------------------------

DENSE_FAILED = (
    "The mass matrix M = ∂²L/∂q̇² is singular or not positive definite "
    "(its Cholesky factorisation failed). " + MASS_HINT
)


def solve_dense(inner, t, q, qdot, rhs):
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
    checks = [(bad, DENSE_FAILED)]
    x = jax.scipy.linalg.cho_solve((chol, True), b_flat)
    return poison(unravel(x), checks), checks


# --- Matrix-free: f/M00 checked, else conjugate gradients -----------------------------

CG_FAILED = (
    "Solving M q̈ = f for the acceleration with conjugate gradients failed: the mass "
    "matrix M = ∂²L/∂q̇² is singular or not positive definite (or CG hit its step "
    "limit). " + MASS_HINT
)
CURVATURE_FAILED = (
    "The mass matrix M = ∂²L/∂q̇² has non-positive curvature ⟨f, Mf⟩ <= 0 along the "
    "force f (or the force is not finite). " + MASS_HINT
)

# Dtypes less precise than this (float32, float16, bfloat16) get one step of iterative
# refinement after CG; float64 does not need it (1000·eps ≈ 2e-13).
_REFINE_ABOVE_EPS = 1e-10


def _cg_solve(operator, rhs, rho, rtol, atol, max_steps):
    """Conjugate gradients for `M x = b`, given the Rayleigh quotient `rho` of M along b."""
    dtype = tree_dtype(rhs)
    size = sum(int(x.size) for x in jtu.tree_leaves(rhs))
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


def _cg_with_checks(operator, rhs, rtol, atol, max_steps):
    """CG for `M x = b`, with `(bad_curvature, failed)` flags."""
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


def _first_diagonal_entry(matvec, like):
    """`M[0, 0]` for the first scalar of the first non-empty leaf, by one
    Hessian-vector product with a one-hot vector."""
    leaves, treedef = jtu.tree_flatten(like)
    index = next(i for i, leaf in enumerate(leaves) if leaf.size > 0)
    probe = [jnp.zeros_like(leaf) for leaf in leaves]
    probe[index] = probe[index].reshape(-1).at[0].set(1).reshape(leaves[index].shape)
    product = matvec(jtu.tree_unflatten(treedef, probe))
    return jtu.tree_leaves(product)[index].reshape(-1)[0]


def _shortcut_or_cg(matvec, rhs, rtol, atol, max_steps):
    """Solves `M x = b`, returning `(x, (bad_curvature, cg_failed))`.

    First `x = b / M00`. It is accepted only if it solves the system, checked element
    by element: `|c·x − M x| <= rtol·|c·x| + atol` with `c = M00 > 0` (and `c·x = b`
    up to one rounding). Anything else, including a `b` that is merely an eigenvector
    of a non-scalar M, goes to conjugate gradients.

    The fallback is a `while_loop` that runs zero times or once, not a `lax.cond`: a
    `cond` whose branch returns `b / M00` makes XLA copy the whole state into the
    `cond`'s output buffer, while a loop that does not run hands its input through.
    Under `vmap` the loop also runs CG only if some batch member needs it (a batched
    `cond` would run both branches for all).
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
        x, done, _, _ = carry
        return ~done & ~solves(x)

    def run_cg(carry):
        # b = c·x, exactly when c is not accepted (c = 1) and to one rounding
        # otherwise (far below CG's tolerance): the loop does not hold on to b.
        b = jtu.tree_map(lambda x: c_safe * x, carry[0])
        x, bad_curvature, cg_failed = _cg_with_checks(
            operator, b, rtol_, atol, max_steps
        )
        return x, jnp.asarray(True), bad_curvature, cg_failed

    false = jnp.asarray(False)
    x, _, bad_curvature, cg_failed = jax.lax.while_loop(
        needs_cg, run_cg, (x0, false, false, false)
    )
    return x, (bad_curvature, cg_failed)


def solve_iterative(inner, t, q, qdot, rhs, rtol, atol, max_steps):
    """The matrix-free solve: `f/M00` if it solves the system, else CG."""
    operator = mass_operator(inner, t, q, qdot)
    solve = lambda matvec, b: _shortcut_or_cg(matvec, b, rtol, atol, max_steps)
    # `custom_linear_solve` differentiates x = M⁻¹b implicitly (dx = M⁻¹(db − dM·x),
    # with M's dependence on (t, q, q̇) through `operator.mv`), so derivatives never
    # pass through the loop or CG.
    x, (bad_curvature, cg_failed) = jax.lax.custom_linear_solve(
        operator.mv, rhs, solve, symmetric=True, has_aux=True
    )
    checks = [(bad_curvature, CURVATURE_FAILED), (cg_failed, CG_FAILED)]
    return poison(x, checks), checks


# --- Once per solve: a Lanczos certificate for the matrix-free path ------------------

# Lanczos steps of the once-per-solve certification, and the relative size below
# which a Ritz value counts as zero: CG's default tolerance, rtol = 1000·eps. If
# λ_min(M) <= 1000·eps·λ_max(M), the acceleration M⁻¹f computed to that tolerance
# carries no correct digit, so such an M is refused as numerically singular.
LANCZOS_STEPS = 20
_SINGULAR_RTOL = 1000

LANCZOS_NEGATIVE = (
    "The mass matrix M = ∂²L/∂q̇² is not positive definite at the initial state: "
    "Lanczos steps there found a negative Ritz value (Ritz values lie between M's "
    "smallest and largest eigenvalues, so M has a negative eigenvalue). " + MASS_HINT
)
LANCZOS_SINGULAR = (
    "The mass matrix M = ∂²L/∂q̇² is singular, or too ill-conditioned for the solve, "
    "at the initial state: Lanczos steps there found a Ritz value θ with "
    "|θ| <= 1000·eps·max|Ritz value| (Ritz values lie between M's smallest and "
    "largest eigenvalues, so λ_min(M) <= 1000·eps·λ_max(M)). " + MASS_HINT
)


def ritz_values(operator, like, steps=LANCZOS_STEPS):
    """Ritz values of the operator `M` from `min(steps, n)` Lanczos steps
    (products with M only), ascending; see `lanczos_ritz_values`."""
    flat, unravel = jax.flatten_util.ravel_pytree(like)
    matvec = lambda v: jax.flatten_util.ravel_pytree(operator.mv(unravel(v)))[0]
    n = flat.size
    return lanczos_ritz_values(matvec, n, flat.dtype, min(steps, n))


def certificate(operator, like):
    """Lanczos checks of `M` at one state: `[(negative, msg), (singular, msg)]`."""
    theta = ritz_values(operator, jax.lax.stop_gradient(like))
    eps = max(float(jnp.finfo(jnp.result_type(x)).eps) for x in jtu.tree_leaves(like))
    tol = _SINGULAR_RTOL * eps * jnp.max(jnp.abs(theta))
    negative = theta[0] < -tol
    singular = ~(theta[0] > tol)  # also NaN, and M = 0
    return [(negative, LANCZOS_NEGATIVE), (singular & ~negative, LANCZOS_SINGULAR)]
