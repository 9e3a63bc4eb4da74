r"""The nonlinear solves of the variational integrators, with stopping tests relative to
the size of their terms.

Every solve here (a step's $p_k + D_1L_d(q_k, q_{k+1}) = 0$ with the internal points
of `Lobatto`, the Legendre inversion $\partial L/\partial\dot q = p$) is handed to the
root finder *divided by the size of its terms*, $S = \max(\|p\|_\infty,
\|D_1L_d\|_\infty, \|D_2L_d\|_\infty)$ (a stop-gradient constant in each Newton
iteration, so the iterates are Newton's own). An absolute tolerance on the raw
residual would have a rounding floor that grows with the size of $L$ and with $1/h$:
multiplying $L$ by $10^4$, or taking a smaller step, would then fail to "converge".
Measured against $S$, the tolerance is a relative one, the same for $cL$ as for $L$.

The default root finder of the steps and the Legendre inversion (`newton`) stops when
Newton's correction is below $\varepsilon^{0.7}$ of the unknowns (relative), or below
their rounding; `default_solver` (the charges' internal points) stops when the
relative residual is below $\varepsilon^{0.7}$ with the unknowns settled to the same
tolerance, or when the correction is below the rounding of the unknowns. So the floor
that the positions' rounding sets ($\varepsilon|q|/h$ in velocity) never turns into a
failure to stop. Either way each solve is then *checked*: the residual at the
root, relative to the larger of $S$ and $\|Jx^*\|$ (the position terms, see
`relative_residual`), must be below $\sqrt\varepsilon$, and the root must lie where the
step equations are nearly linear around the predictor (see `step_stats`).
"""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import lineax as lx
import optimistix as optx

from .._tree import tree_max_abs


def tol_of(dtype) -> float:
    """The default relative tolerance, $\\varepsilon^{0.7}$ of the dtype."""
    return float(jnp.finfo(dtype).eps) ** 0.7


def check_level(dtype) -> float:
    r"""The relative residual above which a solve is not trusted: $\sqrt\varepsilon$
    (a converged Newton solve sits at rounding, $\approx\varepsilon$; the positions'
    rounding can lift that floor by $|q|/(h|\dot q|)$, which $\sqrt\varepsilon$ still
    leaves room for)."""
    return float(jnp.finfo(dtype).eps) ** 0.5


# Kantorovich's condition for Newton from x0 to converge to the root in its own
# basin: the quadratic term of the equations over the jump is below half the linear
# one.
NONLINEAR_LIMIT = 0.5


class ScaledNewton(optx.Newton):
    """Newton on a residual already divided by the size of its terms. Stops on the
    Cauchy test (`atol` on that relative residual, `rtol` on the unknowns), or when
    the correction is below 4 ulps of the unknowns (Newton cannot improve them)."""

    def terminate(self, fn, y, args, options, state, tags):
        done, result = super().terminate(fn, y, args, options, state, tags)
        eps = jnp.finfo(jnp.result_type(*jax.tree.leaves(y))).eps
        stalled = (state.step >= 1) & (
            tree_max_abs(state.diff) <= 4 * eps * tree_max_abs(y)
        )
        failed = state.result != optx.RESULTS.successful
        return done | (stalled & ~failed), result


def default_solver(dtype) -> optx.AbstractRootFinder:
    """Newton with tolerances from the dtype, on the relative residual: the last
    correction is below ~`eps^0.7`, so (quadratic convergence) the root is exact to
    rounding."""
    tol = tol_of(dtype)
    return ScaledNewton(rtol=tol, atol=tol)


def scale_of(*trees):
    """The size of the terms, max |x| over the trees, as a stop-gradient constant;
    1 where every term is exactly 0 (at rest at an equilibrium: the residual is 0 in
    any units, and dividing by a tiny size would overflow Newton's Jacobian)."""
    dtype = jnp.result_type(*[x for t in trees for x in jax.tree.leaves(t)])
    size = jnp.max(jnp.stack([jnp.asarray(tree_max_abs(t), dtype) for t in trees]))
    return jax.lax.stop_gradient(jnp.where(size > 0, size, jnp.ones_like(size)))


def divide(tree, s):
    return jax.tree.map(lambda x: x / s, tree)


def solve(terms, solver, guess, max_steps):
    """Solves `r(x) = 0` for `terms(x) = (r, extra, S)` with the relative residual
    `r / S`. Returns `(x, converged)` where `converged` is the solver's report."""

    def fn(x, args):
        r, _, s = terms(x)
        return divide(r, s)

    sol = optx.root_find(fn, solver, guess, throw=False, max_steps=max_steps)
    return sol.value, sol.result == optx.RESULTS.successful


def relative_residual(terms, root):
    r"""`(r, extra, rho, size, lin)` at the root: `rho` is the residual relative to
    `size`, the size of its terms: those `terms` reports, and $\|J x^*\|$, the terms
    in which the residual depends on the positions themselves (e.g. $m q_{k+1}/h$
    and $m q_k/h$, which cancel to $m\dot q$; the positions' rounding,
    $\varepsilon|q|$, sets a floor $\varepsilon\|Jx^*\|$ under the residual).
    `lin` is the linearisation of the residual at the root."""
    (r, extra, s), lin = jax.linearize(terms, root)
    position_terms = jax.lax.stop_gradient(tree_max_abs(lin(root)[0]))
    size = jnp.maximum(s, position_terms)
    return r, extra, jnp.asarray(tree_max_abs(r) / size, s.dtype), size, lin


def step_stats(terms, guess, root):
    r"""`(extra, rho, theta)` at the root: `extra` as `terms` returns it, the relative
    residual $\rho = \|r(x^*)\|/S$ (with $S$ the size of its terms, position terms
    included), and the nonlinearity of the equations between the predictor $x_0$ and
    the root,

    $$\theta = \frac{\|r(x_0) - r(x^*) - J(x^*)(x_0 - x^*)\|}
      {\max(\|r(x_0) - r(x^*)\|, \sqrt\varepsilon\,S)}.$$

    $\theta \ll 1$ when the root is in the predictor's Newton basin (the step
    resolves the motion); $\theta > 1/2$ (Kantorovich) means the root was reached
    across a strongly nonlinear region: possibly another, unphysical root."""
    delta = jax.tree.map(lambda a, b: a - b, guess, root)
    r_star, extra, rho, size, lin = relative_residual(terms, root)
    jd = lin(delta)[0]
    r_guess = terms(guess)[0]
    change = jax.tree.map(lambda a, b: a - b, r_guess, r_star)
    quad = jax.tree.map(lambda c, j: c - j, change, jd)
    floor = jnp.sqrt(jnp.finfo(size.dtype).eps) * size
    theta = tree_max_abs(quad) / jnp.maximum(tree_max_abs(change), floor)
    return extra, rho, jnp.asarray(theta, size.dtype)


class Stats(eqx.Module):
    """What the solves of a run report, accumulated over its steps with no branch:
    any solver failure, the largest relative residual, the largest nonlinearity."""

    failed: jax.Array
    rho: jax.Array
    theta: jax.Array

    @classmethod
    def ok(cls, dtype):
        zero = jnp.zeros((), dtype)
        return cls(jnp.asarray(False), zero, zero)

    def join(self, other: "Stats") -> "Stats":
        # jnp.maximum propagates NaN, so a non-finite residual is kept
        return Stats(
            self.failed | other.failed,
            jnp.maximum(self.rho, other.rho),
            jnp.maximum(self.theta, other.theta),
        )


# Above this many unknowns per step, Newton's linear systems are solved matrix-free
# (GMRES on Jacobian-vector products) instead of with a dense Jacobian.
DENSE_LIMIT = 64


def newton(residual, guess, rtol, atol, max_steps):
    r"""The default root finder, written out: Newton on `residual(x) = r` (a pytree
    like `x`: one equation per unknown), stopping when the correction is below
    the relative tolerance of the unknowns (or below 4 ulps of them); the residual at
    the root is then checked relative to the size of its terms (`newton_stats`,
    $\le\sqrt\varepsilon$), as for every solve.

    Up to `DENSE_LIMIT` unknowns per step (the internal points and $q_{k+1}$) the
    Jacobian is a dense matrix (`jax.jacfwd`, then LU); above it no matrix is
    formed: each Newton correction is `lineax.GMRES` on Jacobian-vector products, at
    the same relative tolerance.

    It is what `optimistix` Newton with these tolerances computes, without its
    generic machinery, and it keeps what `newton_stats` needs: the raw residual at
    the guess (the first iteration evaluates it) and, on the dense path, the
    Jacobian of the raw residual at the last iterate.

    **Returns:** `(x, converged, (r_guess, jac))`, `r_guess` flat and `jac` a
    matrix, or `None` on the matrix-free path.
    """
    flat0, unravel = jax.flatten_util.ravel_pytree(guess)
    dtype = flat0.dtype
    eps = jnp.finfo(dtype).eps
    n = flat0.size
    dense = n <= DENSE_LIMIT

    def fn(xf):
        # Newton's correction J⁻¹r does not depend on a scalar scale of r: the raw
        # residual serves (its scale matters only to the checks at the root)
        fx = jax.flatten_util.ravel_pytree(residual(unravel(xf)))[0]
        return fx, fx

    def correction(x):
        """`(diff, fx, solved, jac)`: Newton's correction at `x`."""
        if dense:
            jac, fx = jax.jacfwd(fn, has_aux=True)(x)
            diff = jnp.linalg.solve(jac, fx)
            return diff, fx, jnp.all(jnp.isfinite(diff)), jac
        fx, lin, _ = jax.linearize(fn, x, has_aux=True)
        operator = lx.FunctionLinearOperator(lin, jax.eval_shape(lambda: x))
        # GMRES on r / max|r|: its tolerances are then relative to the residual
        size = jnp.max(jnp.abs(fx))
        size = jnp.where(size > 0, size, jnp.ones_like(size))
        gmres = lx.GMRES(rtol=rtol, atol=rtol)
        sol = lx.linear_solve(operator, fx / size, gmres, throw=False)
        diff = size * sol.value
        solved = (sol.result == lx.RESULTS.successful) & jnp.all(jnp.isfinite(diff))
        return diff, fx, solved, None

    def body(state):
        x, step, _, _, r0, _ = state
        diff, fx, solved, jac = correction(x)
        new = x - diff
        # stop on the correction: Newton's next error is of its square, and the
        # residual at the root is then checked relative to the size of its terms
        # (`newton_stats`), so no test on the residual is needed here (one on the
        # residual *before* the correction costs an iteration more, the more so
        # when the position terms dwarf the others)
        y_ok = jnp.max(jnp.abs(diff) / (atol + rtol * jnp.abs(new))) < 1
        stalled = jnp.max(jnp.abs(diff)) <= 4 * eps * jnp.max(jnp.abs(new))
        r0 = jnp.where(step == 0, fx, r0)
        done = y_ok | stalled | ~solved
        return new, step + 1, done, solved, r0, jac

    def cond(state):
        _, step, done, _, _, _ = state
        return (step < max_steps) & ~done

    init = (
        flat0,
        jnp.zeros((), jnp.int32),
        jnp.asarray(False),
        jnp.asarray(True),
        jnp.zeros_like(flat0),
        jnp.zeros((n, n), dtype) if dense else None,
    )
    x, _, done, solved, r0, jac = jax.lax.while_loop(cond, body, init)
    return unravel(x), done & solved, (r0, jac)


def newton_stats(terms, guess, root, r_guess, jac):
    r"""`(extra, rho, theta)` as `step_stats` defines them, from what `newton` kept:
    the residual at the guess, and on the dense path the Jacobian at its last
    iterate (within Newton's own tolerance of the root) in place of the one at the
    root, so the only new evaluation is `terms(root)`, which the step needs anyway
    for its `extra`. On the matrix-free path the two products with the Jacobian at
    the root are Jacobian-vector products."""
    flat = lambda x: jax.flatten_util.ravel_pytree(x)[0]
    x_star, x_guess = flat(root), flat(guess)
    if jac is None:
        _, unravel = jax.flatten_util.ravel_pytree(root)

        def raw(xf):
            r, extra, s = terms(unravel(xf))
            return flat(r), (extra, s)

        r_star, lin, (extra, s) = jax.linearize(raw, x_star, has_aux=True)
        matvec = lin
    else:
        r_star, extra, s = terms(root)
        r_star = flat(r_star)
        matvec = lambda u: jac @ u
    position_terms = jax.lax.stop_gradient(jnp.max(jnp.abs(matvec(x_star))))
    size = jnp.maximum(s, position_terms)
    rho = jnp.max(jnp.abs(r_star)) / size
    change = r_guess - r_star
    quad = change - matvec(x_guess - x_star)
    floor = jnp.sqrt(jnp.finfo(size.dtype).eps) * size
    theta = jnp.max(jnp.abs(quad)) / jnp.maximum(jnp.max(jnp.abs(change)), floor)
    return extra, jnp.asarray(rho, s.dtype), jnp.asarray(theta, s.dtype)


def root(terms, solver, guess, max_steps, residual=None):
    """Solves `terms` (see `solve`) with `solver`, or with `newton` at the default
    tolerances when `solver` is `None`. Returns `(x, converged, kept)`, with `kept`
    what `newton` keeps for `newton_stats` (`None` for another solver). `residual`,
    if given, is `terms(x)[0]` computed alone (cheaper inside Newton's loop)."""
    if solver is None:
        dtype = jnp.result_type(*jax.tree.leaves(guess))
        tol = tol_of(dtype)
        if residual is None:
            residual = lambda x: terms(x)[0]
        return newton(residual, guess, tol, tol, max_steps)
    x, converged = solve(terms, solver, guess, max_steps)
    return x, converged, None


def root_and_stats(terms, solver, guess, max_steps, residual=None):
    """`root`, then `(extra, rho, theta)` at the root: from what `newton` kept, or
    by `step_stats` for another solver. Returns `(x, converged, extra, rho,
    theta)`."""
    x, converged, kept = root(terms, solver, guess, max_steps, residual)
    if kept is None:
        extra, rho, theta = step_stats(terms, guess, x)
    else:
        extra, rho, theta = newton_stats(terms, guess, x, *kept)
    return x, converged, extra, rho, theta
