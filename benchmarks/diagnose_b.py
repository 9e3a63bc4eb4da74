"""Where row (b)'s ratio comes from on a GPU: times, paired in rounds, of

1. `lnn.simulate(...)`: the user's call (Python validation, dispatch, solve);
2. `_solve(...)`: the compiled solve alone;
3. `diffrax.diffeqsolve` with `lnn.FusedTsit5` and the hand-written right-hand side,
   same tolerances and controller (the solver without our acceleration);
4. the loop of bare hand-written right-hand sides (row b's baseline), scaled to the
   number of evaluations.

5. the same loop with the data closed over, so that XLA folds what depends on the
   labels alone into constants (the baseline row (b) used before it took the data
   as an argument, the way `_solve` does).

(1)/(2) is the Python-side overhead, (2)/(3) the generic acceleration inside the
solver, (3)/(4) the solver's own per-step cost, (4)/(5) what folding the data in
saves. Usage: python benchmarks/diagnose_b.py
"""

import time

import _common as bench
import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from bench_simulate import (
    ATOL,
    LOOP,
    RTOL,
    T0,
    T1,
    count_evaluations,
    hand_rhs,
    rhs_loop,
    solve_by_hand,
)

import lagrangian_nn as lnn
from lagrangian_nn._simulate import _solve


def main():
    print(jax.devices()[0].device_kind, jax.__version__)
    for name, layers in {
        "784-12-12-10": [784, 12, 12, 10],
        "paper net": [784, 200, 200, 200, 10],
    }.items():
        loss, w, v = bench.make_problem(layers, n_samples=1000)
        system = lnn.dynamics.nesterov(loss)
        dtype = w[0].dtype if isinstance(w, list) else jax.tree.leaves(w)[0].dtype
        t0, t1 = jnp.asarray(T0, dtype), jnp.asarray(T1, dtype)
        ctrl = diffrax.PIDController(rtol=RTOL, atol=ATOL)
        solver = lnn.FusedTsit5()

        def user():
            return lnn.simulate(system, w, v, t0=T0, t1=T1, rtol=RTOL, atol=ATOL).q

        def solve_only():
            return _solve(
                system, (w, v), t0, t1, None, solver, ctrl, None, 100_000, False, True
            )[0].q

        @jax.jit
        def hand_solver(loss, w, v):  # the loss an argument, as in `_solve`
            ends = diffrax.SaveAt(t0=True, t1=True)
            rhs = hand_rhs(loss)
            return solve_by_hand(rhs, solver, w, v, saveat=ends, max_steps=100_000).ys

        loop = rhs_loop(loss, LOOP)
        const_loop = rhs_loop(loss, LOOP, data_as_constants=True)
        evaluations, steps = count_evaluations(loss, w, v)
        fns = {
            "1 simulate": user,
            "2 _solve": solve_only,
            "3 FusedTsit5+hand RHS": lambda: hand_solver(loss, w, v),
            "4 RHS loop x evals": lambda: loop(w, v),
            "5 the same, constant data": lambda: const_loop(w, v),
        }
        for fn in fns.values():
            jax.block_until_ready(fn())
        times = {k: [] for k in fns}
        for _ in range(15):
            for k, fn in fns.items():
                s = time.perf_counter()
                jax.block_until_ready(fn())
                times[k].append(time.perf_counter() - s)
        med = {k: float(np.median(x)) for k, x in times.items()}
        med["4 RHS loop x evals"] *= evaluations / LOOP
        med["5 the same, constant data"] *= evaluations / LOOP
        print(f"{name}: {evaluations} evaluations, {steps} steps")
        for k, x in med.items():
            print(f"  {k:24s} {1e3 * x:8.3f} ms")
        m = list(med.values())
        print(
            f"  (1)/(2) = {m[0] / m[1]:.3f}  (2)/(3) = {m[1] / m[2]:.3f}  "
            f"(3)/(4) = {m[2] / m[3]:.3f}  (1)/(4) = {m[0] / m[3]:.3f}  "
            f"(1)/(5) = {m[0] / m[4]:.3f}"
        )


if __name__ == "__main__":
    main()
