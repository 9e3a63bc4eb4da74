"""Rows (b) and (e): the cost of `lnn.simulate` beyond its right-hand sides, and its
compile time.

(b) `lnn.simulate` of `lnn.dynamics.nesterov(loss)` (its default solver
    `lnn.FusedTsit5`, adaptive steps) against
    (number of right-hand-side evaluations) x (time of one hand-written right-hand side
    `(w, v) -> (v, -(3/t) v - grad loss(w))`). The number of evaluations is counted in a
    separate diffrax run of the hand-written right-hand side with the same solver and
    controller, which takes the same steps (checked). The ratio measures everything
    the integration adds: the solver's arithmetic, step control, saving, checks.
    Target <= 1.10. A reference line times `diffrax.diffeqsolve` of the hand-written
    right-hand side with `diffrax.Tsit5` (same tableau, same steps) against the same
    baseline: the overhead of stock diffrax, which `lnn.FusedTsit5` removes.
    The time of one right-hand side is measured as 50 chained evaluations in one
    compiled loop (Euler steps), divided by 50.
    Both sides get the data the same way: `lnn.simulate` passes the loss (an
    `eqx.Module` holding the samples and labels) into its compiled solve as an
    argument, so the baselines take it as a `jax.jit` argument too. A baseline that
    closes over the data instead lets XLA fold the labels in as constants (the one-hot
    scatter of the NLL gradient and its row sums disappear: 26 kernels per evaluation
    against 31 on the paper net, on this CPU, for the hand-written and the generic
    acceleration alike), which is a cheaper problem, not a cheaper method. A third
    reference line times that constant-data loop against the baseline.
(e) compile time of `lnn.simulate` for the paper's network, in a fresh process:
    first call minus second call.
(g) the solver's own cost per step: `lnn.FusedTsit5` (both settings) against
    `diffrax.Tsit5` with a right-hand side that costs almost nothing
    (`(w, v) -> (v, -(3/t) v - 0.1 w)`), 200 constant steps on the state of the paper's
    network (2 x 238,800 floats).

Usage: python benchmarks/bench_simulate.py [--quick] [--rows beg]
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import _common as bench
import diffrax
import jax
import jax.numpy as jnp
from bench_euler_lagrange import hand_accel

import lagrangian_nn as lnn

try:  # private: the compiled function `lnn.simulate` calls (its step count)
    from lagrangian_nn._simulate import _solve
except ImportError:  # pragma: no cover - renamed; `our_steps` falls back
    _solve = None

T0, T1, RTOL, ATOL = 1.0, 1.5, 1e-5, 1e-7


def hand_rhs(loss):
    accel = hand_accel(loss)

    def rhs(t, y, args):
        w, v = y
        return v, accel(t, w, v)

    return rhs


def solve_args(loss, w, v):
    """The arguments with which `lnn.simulate` calls its compiled `_solve` for this
    benchmark's integration (FusedTsit5, the PID controller, default `ts`)."""
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return (
        lnn.dynamics.nesterov(loss),
        (w, v),
        f32(T0),
        f32(T1),
        None,
        lnn.FusedTsit5(),
        diffrax.PIDController(rtol=RTOL, atol=ATOL),
        None,
        100_000,
        False,
        True,
    )


LOOP = 50


def rhs_loop(loss, n, data_as_constants=False):
    """`n` evaluations of the hand-written right-hand side in one compiled loop of
    Euler steps `y <- y + h rhs(t, y)` (each depends on the last, so nothing can be
    hoisted): the time of one evaluation inside compiled code, without the per-call
    dispatch that a standalone call would add. The two axpys per step count against
    the baseline, i.e. in our favour by a percent or two.

    The loss (and so its data) is an argument of the compiled loop, as it is of
    `lnn.simulate`'s compiled solve; `data_as_constants=True` closes over it instead,
    so XLA may fold what depends only on the data (see the module docstring)."""

    def loop(loss, w, v):
        rhs = hand_rhs(loss)

        def step(_, y):
            t = jnp.asarray(1.2, y[0][0].dtype)
            return jax.tree.map(lambda a, b: a + 1e-3 * b, y, rhs(t, y, None))

        return jax.lax.fori_loop(0, n, step, (w, v))

    if data_as_constants:
        return jax.jit(lambda w, v: loop(loss, w, v))
    run = jax.jit(loop)
    return lambda w, v: run(loss, w, v)


def solve_by_hand(rhs, solver, w, v, **kw):
    """`diffrax.diffeqsolve` of `rhs` from `(w, v)` over [T0, T1] with this benchmark's
    controller, as a user writes it."""
    return diffrax.diffeqsolve(
        diffrax.ODETerm(rhs),
        solver,
        T0,
        T1,
        None,
        (w, v),
        stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
        **kw,
    )


def diffrax_by_hand(loss):
    """The same integration written directly with stock diffrax (`diffrax.Tsit5`) and
    the hand-written right-hand side, the loss an argument as in `rhs_loop`."""

    @jax.jit
    def run(loss, w, v):
        return solve_by_hand(hand_rhs(loss), diffrax.Tsit5(), w, v).ys[0]

    return lambda w, v: run(loss, w, v)


def count_evaluations(loss, w, v):
    """Runs diffrax with `lnn.FusedTsit5` on the hand-written right-hand side with a
    counter; returns (evaluations, steps)."""
    calls = []
    rhs = hand_rhs(loss)

    def counted(t, y, args):
        jax.debug.callback(lambda: calls.append(1))
        return rhs(t, y, args)

    sol = solve_by_hand(counted, lnn.FusedTsit5(), w, v)
    jax.block_until_ready(sol.ys)
    return len(calls), int(sol.stats["num_steps"])


def our_steps(loss, w, v) -> int:
    """The number of steps `lnn.simulate` takes in this benchmark: from the compiled
    function it calls (`_solve`, private), or, if that is gone or its signature
    changed, from the same integration of `lnn.euler_lagrange` through diffrax."""
    if _solve is not None:
        try:
            return int(_solve(*solve_args(loss, w, v))[1])
        except TypeError:
            pass
    accel = lnn.euler_lagrange(lnn.dynamics.nesterov(loss))
    rhs = lambda t, y, args: (y[1], accel(t, *y))
    return int(solve_by_hand(rhs, lnn.FusedTsit5(), w, v).stats["num_steps"])


def rows_b(quick: bool = False):
    out = []
    sizes = {"784-12-12-10": [784, 12, 12, 10], "paper net": [784, 200, 200, 200, 10]}
    for name, layers in sizes.items():
        loss, w, v = bench.make_problem(layers, n_samples=1000)
        system = lnn.dynamics.nesterov(loss)
        kw = dict(t0=T0, t1=T1, rtol=RTOL, atol=ATOL)
        simulate = lambda w, v: lnn.simulate(system, w, v, **kw).q
        steps = our_steps(loss, w, v)
        hand_evaluations, hand_steps = count_evaluations(loss, w, v)
        # The two runs take the same steps unless rounding flips a step decision;
        # then scale the count (evaluations per step are fixed for this method).
        evaluations = round(hand_evaluations * int(steps) / hand_steps)
        # Paired rounds (see `paired_times`): per-round ratios to the loop of bare
        # right-hand sides, scaled by evaluations / LOOP.
        fns = [
            rhs_loop(loss, LOOP),
            simulate,
            diffrax_by_hand(loss),
            rhs_loop(loss, LOOP, data_as_constants=True),
        ]
        times, ratios, ratios_min = bench.paired_times(
            fns, (w, v), rounds=3 if quick else 12
        )
        (t_loop, t_sim, t_dfx, t_const) = times
        (_, r_sim, r_dfx, r_const), (_, m_sim, m_dfx, m_const) = ratios, ratios_min
        base = evaluations * t_loop / LOOP
        scale = LOOP / evaluations
        out.append(
            bench.timed_row(
                "b",
                f"simulate vs {evaluations} RHS evals x hand RHS ({int(steps)} steps), {name}",
                f"{bench.n_params(w):,} params",
                t_sim,
                base,
                1.10,
                ratio=r_sim * scale,
                ratio_min=m_sim * scale,
            )
        )
        out.append(
            bench.timed_row(
                "b",
                f"(reference) diffrax.Tsit5 on the hand RHS, same baseline, {name}",
                f"{bench.n_params(w):,} params",
                t_dfx,
                base,
                ratio=r_dfx * scale,
                ratio_min=m_dfx * scale,
            )
        )
        out.append(
            bench.timed_row(
                "b",
                f"(reference) hand RHS loop with the data as compile-time constants "
                f"vs the baseline (data as arguments), {name}",
                f"{bench.n_params(w):,} params",
                t_const / LOOP,
                t_loop / LOOP,
                ratio=r_const,
                ratio_min=m_const,
            )
        )
    return out


_COMPILE_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {here!r})
    import jax, jax.numpy as jnp
    from _common import make_problem
    import lagrangian_nn as lnn
    loss, w, v = make_problem([784, 200, 200, 200, 10], n_samples=1000)
    system = lnn.dynamics.nesterov(loss)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        jax.block_until_ready(lnn.simulate(system, w, v, t0=1.0, t1=1.02).q)
        times.append(time.perf_counter() - start)
    print(json.dumps(times))
    """
)


def rows_e(quick: bool = False):
    del quick
    script = _COMPILE_SCRIPT.format(here=str(Path(__file__).parent))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    first, second = json.loads(proc.stdout.strip().splitlines()[-1])
    return [
        bench.row(
            "e",
            "compile time of simulate, paper net, fresh process (1st - 2nd call)",
            "238,800 params",
            f"{first - second:.1f} s",
            f"2nd call {second:.2f} s",
        )
    ]


def rows_g(quick: bool = False):
    n = 238_800
    w, v = jnp.ones(n, jnp.float32), jnp.zeros(n, jnp.float32)
    steps = 200

    def cheap(t, y, args):
        w, v = y
        return v, -(3 / t) * v - 0.1 * w

    def integrate(solver):
        @jax.jit
        def run(w, v):
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(cheap),
                solver,
                1.0,
                3.0,
                2.0 / steps,
                (w, v),
                stepsize_controller=diffrax.ConstantStepSize(),
            )
            return sol.ys

        return run

    solvers = {
        "lnn.FusedTsit5(unroll_stages=False)": lnn.FusedTsit5(unroll_stages=False),
        "lnn.FusedTsit5(unroll_stages=True)": lnn.FusedTsit5(unroll_stages=True),
        "diffrax.Tsit5()": diffrax.Tsit5(),
    }
    medians, minima = bench.interleaved_times(
        [integrate(s) for s in solvers.values()], (w, v), repeats=3 if quick else 10
    )
    names = list(solvers)
    return [
        bench.timed_row(
            "g",
            f"solver cost per step, trivial RHS: {names[i]} vs diffrax.Tsit5()",
            f"{2 * n:,} floats",
            medians[i] / steps,
            medians[-1] / steps,
            ratio=medians[i] / medians[-1],
            ratio_min=minima[i] / minima[-1],
        )
        for i in range(2)
    ]


if __name__ == "__main__":
    bench.main(__doc__, {"b": rows_b, "e": rows_e, "g": rows_g})
