"""Row (d): peak memory against the number of parameters.

XLA's buffer assignment gives the peak memory of a compiled program exactly (no
sampling, so the numbers are reproducible). We compile one `euler_lagrange` evaluation
and one `lnn.simulate` call (Tsit5, adaptive) of `lnn.dynamics.nesterov` on one-hidden-
layer ReLU networks 784-w-10 (256 samples) whose parameter count m grows by 4x per
step, and report the log-log slope of the footprint against m between the two largest
sizes: 1 means linear (no m x m matrix anywhere), 2 quadratic. The dense velocity-Hessian approach is shown for contrast at the
sizes where it compiles.

Usage: python benchmarks/bench_memory.py [--quick]
"""

import _common as bench
import jax.numpy as jnp
import numpy as np
from bench_euler_lagrange import dense_pinv, ours
from bench_simulate import solve_args

from lagrangian_nn._simulate import _solve


def _slope(params, peaks):
    """Log-log slope between the two largest sizes: -> 1 for memory a + b·m (the
    fixed part, mostly the data, fades), -> 2 if an m x m matrix is formed."""
    return float(np.log(peaks[-1] / peaks[-2]) / np.log(params[-1] / params[-2]))


def rows(quick: bool = False):
    t = jnp.asarray(1.5, jnp.float32)
    widths = [64, 256, 1024] if quick else [64, 256, 1024, 4096]
    params, el_peaks, sim_peaks = [], [], []
    for width in widths:
        loss, w, v = bench.make_problem([784, width, 10], n_samples=256)
        params.append(bench.n_params(w))
        el_peaks.append(bench.peak_bytes(ours(loss).lower(t, w, v)))
        sim_peaks.append(bench.peak_bytes(_solve.lower(*solve_args(loss, w, v))))
    dense_params, dense_peaks = [], []
    for width in [16, 32] if quick else [16, 32, 64, 128]:
        loss, w, v = bench.make_problem([16, width, 10], n_samples=256)
        dense_params.append(bench.n_params(w))
        dense_peaks.append(bench.peak_bytes(dense_pinv(loss).lower(t, w, v)))
    sizes = f"{params[0]:,}-{params[-1]:,} params"
    out = []
    for name, peaks in (("euler_lagrange", el_peaks), ("simulate", sim_peaks)):
        out.append(
            bench.row(
                "d",
                f"memory of {name}: log-log slope vs params, largest two sizes",
                sizes,
                f"{peaks[0] / 2**20:.1f}-{peaks[-1] / 2**20:.1f} MiB, "
                f"{peaks[-1] / params[-1]:.0f} B/param",
                f"{4 * params[-1] / 2**20:.1f} MiB = one f32 copy of q",
                _slope(params, peaks),
                1.10,
            )
        )
    out.append(
        bench.row(
            "d",
            "memory of dense velocity-Hessian + pinv: same slope",
            f"{dense_params[0]:,}-{dense_params[-1]:,} params",
            f"{dense_peaks[-1] / 2**20:.1f} MiB at {dense_params[-1]:,} params",
            "",
            _slope(dense_params, dense_peaks),
        )
    )
    return out


if __name__ == "__main__":
    bench.main(__doc__, {"d": rows})
