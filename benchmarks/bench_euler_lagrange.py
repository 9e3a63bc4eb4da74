"""Rows (a) and (f): the cost of one `lnn.euler_lagrange` evaluation.

(a) `euler_lagrange` of the Table-1 Nesterov Lagrangian written by hand,
    `t**3 * (0.5*|w'|^2 - loss(w))`, against the hand-written ODE
    `w'' = -(3/t) w' - grad loss(w)`, per evaluation, on bias-free ReLU MLPs with NLL on
    1,000 samples at about 10k, 240k (the paper's 784-200-200-200-10) and 1M
    parameters. Two lines per size: one call of each compiled function, and 20
    evaluations inside one compiled loop (the position moves a little each time, so
    nothing is hoisted out of the loop), which is how `lnn.simulate` calls the
    right-hand side and leaves out the per-call dispatch. Target <= 1.05 for both.
(f) the same against the dense approach of existing Lagrangian-network code (build the
    full velocity Hessian and apply its pseudo-inverse), at sizes where it still fits.

Both functions are wrapped in `jax.jit` the same way, so the ratio compares the
computations, not the Python dispatch. Row (a) is timed by `paired_times`: the ratio is
the median over rounds of per-round ratios, which cancels slow spells of a shared
machine. Before timing, row (a) checks that the two accelerations agree to a tolerance
that scales with the precision in use (`_common.effective_eps`: float32's epsilon on
the CPU, TF32's on a GPU at JAX's default matmul precision).

Usage: python benchmarks/bench_euler_lagrange.py [--quick] [--rows af]
"""

import _common as bench
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import lagrangian_nn as lnn
from lagrangian_nn._tree import tree_dot

SIZES_A = {
    "784-12-12-10": [784, 12, 12, 10],
    "784-200-200-200-10 (paper)": [784, 200, 200, 200, 10],
    "784-1000-200-10": [784, 1000, 200, 10],
}


class Table1Nesterov(eqx.Module):
    """The Table-1 Lagrangian written by hand, as a user would."""

    loss: eqx.Module

    def __call__(self, t, w, wdot):
        return t**3 * (0.5 * tree_dot(wdot, wdot) - self.loss(w))


def hand_accel(loss):
    """The hand-written Table-1 ODE `w'' = -(3/t) w' - grad loss(w)`."""

    def accel(t, w, wdot):
        g = jax.grad(loss)(w)
        return jax.tree.map(lambda v, gi: -3.0 / t * v - gi, wdot, g)

    return accel


def hand_written(loss):
    return jax.jit(hand_accel(loss))


def ours(loss):
    accel = lnn.euler_lagrange(Table1Nesterov(loss))
    return jax.jit(lambda t, w, wdot: accel(t, w, wdot))


def dense_pinv(loss):
    """The approach of existing Lagrangian-network code: materialise
    M = d²L/dq̇² (m × m) and apply its pseudo-inverse."""
    L = Table1Nesterov(loss)

    @jax.jit
    def accel(t, w, wdot):
        v_flat, unravel = ravel_pytree(wdot)
        w_flat, unravel_w = ravel_pytree(w)
        Lf = lambda q, v: L(t, unravel_w(q), unravel(v))
        M = jax.hessian(Lf, argnums=1)(w_flat, v_flat)
        mixed = jax.jacfwd(jax.grad(Lf, argnums=1), argnums=0)(w_flat, v_flat)
        dLdq = jax.grad(Lf, argnums=0)(w_flat, v_flat)
        dpdt = jax.jacfwd(
            lambda tt: ravel_pytree(jax.grad(L, argnums=2)(tt, w, wdot))[0]
        )(t)
        f = dLdq - mixed @ v_flat - dpdt
        return unravel(jnp.linalg.pinv(M) @ f)

    return accel


def _max_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(a, b, strict=True))


def in_a_loop(accel, evaluations=20):
    """`evaluations` calls of `accel` in one compiled loop; each moves the position by
    1e-9 times the acceleration, so every call depends on the one before."""

    @jax.jit
    def run(t, w, wdot):
        def body(_, w):
            a = accel(t, w, wdot)
            return jax.tree.map(lambda x, y: x + 1e-9 * y, w, a)

        return jax.lax.fori_loop(0, evaluations, body, w)

    return run


def _row_a(fns, args, rounds, what, w, per_call=1, target=1.05):
    """A row (a) line: `fns = [hand-written, ours]` timed by `paired_times`; times are
    reported per evaluation (`per_call` evaluations per call)."""
    (hand, mine), (_, ratio), (_, ratio_min) = bench.paired_times(
        fns, args, rounds=rounds
    )
    return bench.timed_row(
        "a",
        what,
        f"{bench.n_params(w):,} params",
        mine / per_call,
        hand / per_call,
        target,
        ratio=ratio,
        ratio_min=ratio_min,
    )


# Agreement of the two accelerations, in units of effective_eps() x max |acceleration|.
# Both programs compute the same gradient of the loss, but the generic one
# differentiates t**3 * loss (its matmul inputs are scaled by t**3 before rounding, to
# TF32 on a GPU) and XLA fuses and orders the reductions differently. Each entry of the
# gradient is a reduction over up to ~1,000 terms (samples, layer widths), whose
# rounding differences grow like sqrt(1000) ~ 32 roundoffs. Measured: at most 2.2 on
# the 2-core CPU (float32), 0.2 on an H100 at default (TF32) precision (issue 14's
# 1.50e-05 on 784-12-12-10, where max |acceleration| = 0.075). On the CPU this is
# 3.8e-6 x scale, tighter than the fixed 1e-5 x scale it replaces; in TF32, 0.031.
ACCEL_TOL_EPS = 32


def check_accelerations(name, fns, t, w, wdot):
    """Raises if `fns[0]` and `fns[1]` (hand-written, ours) disagree beyond
    `ACCEL_TOL_EPS` effective roundoffs of the largest acceleration; returns the
    error in those units."""
    reference = fns[0](t, w, wdot)
    err = _max_diff(reference, fns[1](t, w, wdot))
    scale = max(float(jnp.max(jnp.abs(x))) for x in reference)
    eps = bench.effective_eps(jnp.float32)
    if not err <= ACCEL_TOL_EPS * eps * scale:
        raise AssertionError(
            f"{name}: accelerations disagree by {err:.2e}, more than "
            f"{ACCEL_TOL_EPS} x effective eps {eps:.2e} x max |acceleration| "
            f"{scale:.2e} = {ACCEL_TOL_EPS * eps * scale:.2e}"
        )
    return err / (eps * scale)


def rows_a(quick: bool = False):
    out = []
    t = jnp.asarray(1.5, jnp.float32)
    sizes = dict(list(SIZES_A.items())[:2]) if quick else SIZES_A
    for name, layers in sizes.items():
        loss, w, wdot = bench.make_problem(layers, n_samples=1000)
        fns = [hand_written(loss), ours(loss)]
        check_accelerations(name, fns, t, w, wdot)
        out.append(
            _row_a(
                fns,
                (t, w, wdot),
                4 if quick else 60,
                f"euler_lagrange(Table-1 L) vs hand ODE, {name}",
                w,
            )
        )
        loops = [
            in_a_loop(hand_accel(loss)),
            in_a_loop(lnn.euler_lagrange(Table1Nesterov(loss))),
        ]
        what = f"the same, 20 evaluations in one compiled loop, {name}"
        rounds = 4 if quick else 30
        out.append(_row_a(loops, (t, w, wdot), rounds, what, w, per_call=20))
    return out


def rows_f(quick: bool = False):
    out = []
    t = jnp.asarray(1.5, jnp.float32)
    for width in [4, 16] if quick else [4, 16, 32, 48]:
        loss, w, wdot = bench.make_problem([16, width, width, 10], n_samples=1000)
        fns = [ours(loss), dense_pinv(loss)]
        mine, dense = bench.interleaved_medians(
            fns, (t, w, wdot), repeats=3 if quick else 10
        )
        out.append(
            bench.timed_row(
                "f",
                f"euler_lagrange vs dense velocity-Hessian + pinv, 16-{width}-{width}-10",
                f"{bench.n_params(w):,} params",
                mine,
                dense,
            )
        )
    return out


if __name__ == "__main__":
    bench.main(__doc__, {"a": rows_a, "f": rows_f})
