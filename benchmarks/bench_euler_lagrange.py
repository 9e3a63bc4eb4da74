"""Cost of `lnn.euler_lagrange` against hand-written equations of motion.

Prints, as ratios of medians measured side by side in one process:

1. per-evaluation time of `euler_lagrange` applied to the Table-1 Nesterov Lagrangian
   written by hand, `t**3 * (0.5*|w'|^2 - loss(w))`, against the hand-written ODE
   `w'' = -(3/t) w' - grad loss(w)`, on the paper's network (784-200-200-200-10, ReLU,
   1,000 samples, NLL; 238,800 parameters as a list of matrices). Target <= 1.10.
2. the same against the dense approach of existing Lagrangian-network code (build the
   full velocity Hessian and solve with a pseudo-inverse), at sizes where it still fits.

Usage: python benchmarks/bench_euler_lagrange.py [--quick]
"""

import argparse
import json
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved_medians, make_problem, n_params  # noqa: E402

import lagrangian_nn as lnn  # noqa: E402
from lagrangian_nn._tree import tree_dot  # noqa: E402


class Table1Nesterov(eqx.Module):
    """The Table-1 Lagrangian written by hand, as a user would."""

    loss: eqx.Module

    def __call__(self, t, w, wdot):
        return t**3 * (0.5 * tree_dot(wdot, wdot) - self.loss(w))


def hand_written(loss):
    @jax.jit
    def accel(t, w, wdot):
        g = jax.grad(loss)(w)
        return jax.tree.map(lambda v, gi: -3.0 / t * v - gi, wdot, g)

    return accel


def ours(loss):
    accel = lnn.euler_lagrange(Table1Nesterov(loss))
    return eqx.filter_jit(accel)


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


def main(quick: bool = False):
    rows = []
    sizes = [784, 200, 200, 200, 10]
    loss, w, wdot = make_problem(sizes, n_samples=1000)
    t = jnp.asarray(1.5, jnp.float32)
    fns = [hand_written(loss), ours(loss)]
    # agreement first
    a_ref, a = fns[0](t, w, wdot), fns[1](t, w, wdot)
    err = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(a_ref, a))
    repeats = 5 if quick else 30
    t_hand, t_ours = interleaved_medians(fns, (t, w, wdot), repeats=repeats)
    rows.append(
        dict(
            case="paper network 784-200-200-200-10",
            params=n_params(w),
            hand_ms=1e3 * t_hand,
            ours_ms=1e3 * t_ours,
            ratio=t_ours / t_hand,
            max_abs_diff=err,
        )
    )
    print(
        f"euler_lagrange vs hand-written ODE, {n_params(w):,} params: "
        f"hand {1e3 * t_hand:.2f} ms, ours {1e3 * t_ours:.2f} ms, "
        f"ratio {t_ours / t_hand:.3f} (target <= 1.10), max|diff| {err:.1e}"
    )

    print("\nscaling against the dense velocity-Hessian (pinv) approach, 1000 samples:")
    print(
        f"{'params':>8} {'hand ms':>9} {'ours ms':>9} {'dense ms':>10} "
        f"{'ours/hand':>10} {'dense/hand':>11}"
    )
    widths = [4, 8, 16] if quick else [4, 8, 16, 32, 48]
    for width in widths:
        loss, w, wdot = make_problem([16, width, width, 10], n_samples=1000)
        fns = [hand_written(loss), ours(loss), dense_pinv(loss)]
        meds = interleaved_medians(fns, (t, w, wdot), repeats=3 if quick else 10)
        row = dict(
            case=f"16-{width}-{width}-10",
            params=n_params(w),
            hand_ms=1e3 * meds[0],
            ours_ms=1e3 * meds[1],
            dense_ms=1e3 * meds[2],
            ratio=meds[1] / meds[0],
            dense_ratio=meds[2] / meds[0],
        )
        rows.append(row)
        print(
            f"{row['params']:>8} {row['hand_ms']:>9.3f} {row['ours_ms']:>9.3f} "
            f"{row['dense_ms']:>10.2f} {row['ratio']:>10.2f} {row['dense_ratio']:>11.1f}"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "euler_lagrange.json").write_text(
        json.dumps({"device": str(jax.devices()[0]), "rows": rows}, indent=2)
    )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(quick=parser.parse_args().quick)
