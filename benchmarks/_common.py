"""Shared helpers for the benchmarks: timers, a trace counter, the paper's network, the
device and the precision in use, and the command line of a benchmark module.

The modules import this one as `bench` (`import _common as bench`): run as scripts
(`python benchmarks/bench_x.py`), their folder is first on `sys.path`; `run.py` puts
it there for the modules it imports."""

import argparse
import contextlib
import os
import platform
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def interleaved_medians(fns, args, repeats=20, warmup=2):
    """Medians of `interleaved_times`."""
    return interleaved_times(fns, args, repeats, warmup)[0]


def interleaved_times(fns, args, repeats=20, warmup=2):
    """Times several functions on the same arguments, interleaving their runs so that
    machine noise affects them equally. Returns (medians, minima)."""
    for fn in fns:
        for _ in range(warmup):
            jax.block_until_ready(fn(*args))
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[i].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times], [float(np.min(t)) for t in times]


def paired_times(fns, args, rounds=30, min_batch_s=0.02, warmup=2):
    """Times `fns[1:]` against `fns[0]` on the same arguments, in rounds. In each round
    every function runs a batch of back-to-back calls (each call waited for; the batch
    is long enough, about `min_batch_s`, that timer resolution does not matter), and the
    order of the functions alternates between rounds. A slow spell on the machine then
    slows all functions of a round alike, and the per-round ratios cancel it.

    Returns `(medians, ratios, ratios_min)`: the median time per call of each function,
    the median over rounds of each function's per-round ratio to `fns[0]`, and the ratio
    of the fastest batches."""
    for fn in fns:
        for _ in range(warmup):
            jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    jax.block_until_ready(fns[0](*args))
    calls = max(1, int(min_batch_s / max(time.perf_counter() - start, 1e-6)))
    times = np.zeros((rounds, len(fns)))
    for r in range(rounds):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            start = time.perf_counter()
            for _ in range(calls):
                jax.block_until_ready(fns[i](*args))
            times[r, i] = (time.perf_counter() - start) / calls
    medians = np.median(times, axis=0)
    ratios = np.median(times / times[:, :1], axis=0)
    minima = times.min(axis=0)
    return medians.tolist(), ratios.tolist(), (minima / minima[0]).tolist()


# JAX's monitoring event for each function it traces to compile
_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


@contextlib.contextmanager
def counting_traces():
    """Counts the functions JAX traces for compiling inside the block: yields a list
    that gets one entry (the trace's duration) per trace, from JAX's monitoring
    events."""
    seen = []

    def listener(event, duration, **kwargs):
        if event == _TRACE_EVENT:
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


class MLPLoss(eqx.Module):
    """Negative log-likelihood of a bias-free ReLU MLP held as a list of matrices."""

    x: jax.Array
    y: jax.Array

    def __call__(self, ws):
        h = self.x
        for w in ws[:-1]:
            h = jax.nn.relu(h @ w.T)
        logits = h @ ws[-1].T
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, self.y[:, None], axis=1))


def make_problem(sizes, n_samples=1000, seed=0, dtype=jnp.float32):
    key = jax.random.key(seed)
    kx, ky, *kw = jax.random.split(key, 2 + len(sizes))
    x = jax.random.normal(kx, (n_samples, sizes[0]), dtype)
    y = jax.random.randint(ky, (n_samples,), 0, sizes[-1])
    ws = [
        jax.random.normal(k, (n_out, n_in), dtype) / np.sqrt(n_in)
        for k, n_in, n_out in zip(kw, sizes[:-1], sizes[1:])
    ]
    vs = [0.01 * jnp.ones_like(w) for w in ws]
    return MLPLoss(x, y), ws, vs


def n_params(ws):
    return sum(int(w.size) for w in ws)


def peak_bytes(lowered) -> int:
    """Memory footprint of a compiled program from XLA's own buffer assignment:
    arguments + outputs + the temporary arena (XLA allocates all temporaries of a
    program as one arena sized for its peak), less aliased buffers. Deterministic, no
    sampling. `lowered` is a `jax.jit(...).lower(...)` or an
    `eqx.filter_jit(...).lower(...)` result."""
    compiled = lowered.compile()
    compiled = getattr(compiled, "compiled", compiled)  # unwrap equinox's wrapper
    m = compiled.memory_analysis()
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


# Unit roundoff (spacing of 1.0, as `jnp.finfo(...).eps`) of the products inside a
# float32 matmul or convolution, for each value of `jax_default_matmul_precision`, on
# an accelerator. XLA's CPU backend ignores the setting and computes float32 dots in
# float32. On a GPU, "default" (JAX's default, `None`) runs float32 dots in TF32 on
# Ampere and later (10 explicit mantissa bits: 2**-10); on a TPU it means bfloat16
# (7 bits: 2**-7). Where the hardware may do better (e.g. "high" as bf16_3x on a TPU)
# the coarser value is used, so a tolerance built on it is never too tight.
_F32 = None  # the dtype's own epsilon: the products are exact float32
_MATMUL_EPS = {
    "default": 2.0**-10,  # GPU (TF32); a TPU's bfloat16 is handled below
    "bfloat16": 2.0**-7,
    "BF16_BF16_F32": 2.0**-7,
    "BF16_BF16_BF16": 2.0**-7,
    "high": 2.0**-10,
    "tensorfloat32": 2.0**-10,
    "TF32_TF32_F32": 2.0**-10,
    "F16_F16_F16": 2.0**-10,
    "F16_F16_F32": 2.0**-10,
    "BF16_BF16_F32_X3": 2.0**-16,  # three bf16 products: about 16 mantissa bits
    "BF16_BF16_F32_X6": _F32,
    "BF16_BF16_F32_X9": _F32,
    "TF32_TF32_F32_X3": _F32,
    "highest": _F32,
    "float32": _F32,
    "F32_F32_F32": _F32,
    "F64_F64_F64": _F32,
}
_F8_EPS = 2.0**-3  # float8 e4m3: 3 mantissa bits


def matmul_precision() -> str:
    """The value of `jax_default_matmul_precision` in use ("default" for JAX's
    default, `None`)."""
    return jax.config.jax_default_matmul_precision or "default"


def effective_eps(dtype=jnp.float32) -> float:
    """The unit roundoff that the arithmetic on arrays of `dtype` actually has on the
    default backend under the current `jax_default_matmul_precision`.

    This is `jnp.finfo(dtype).eps`, except for float32 on an accelerator, where
    matrix products may round their inputs to fewer bits (see `_MATMUL_EPS`): e.g.
    2**-10 for TF32, JAX's default for float32 matmuls on a recent NVIDIA GPU, against
    float32's 2**-23. The matmul precision setting only concerns 32-bit inputs, so
    float64 (and bfloat16/float16, coarser already) keep their own epsilon.

    Agreement tolerances of the benchmarks are multiples of this times a scale of the
    compared quantities."""
    eps = float(jnp.finfo(dtype).eps)
    if jnp.dtype(dtype) != jnp.float32 or jax.default_backend() == "cpu":
        return eps
    precision = matmul_precision()
    if precision == "default" and jax.default_backend() == "tpu":
        matmul = 2.0**-7
    elif precision.startswith("ANY_F8"):
        matmul = _F8_EPS
    else:
        matmul = _MATMUL_EPS.get(precision, 2.0**-7)  # unknown: assume the coarsest
    return eps if matmul is None else max(eps, matmul)


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    """What every results row records about where it ran."""
    device = jax.devices()[0]
    kind = device.device_kind
    if device.platform == "cpu":
        kind = f"{cpu_name()}, {os.cpu_count()} cores"
    return dict(
        platform=device.platform,
        device=kind,
        jax=jax.__version__,
        matmul_precision=matmul_precision(),
        effective_eps_f32=effective_eps(jnp.float32),
    )


def row(id_, what, size, ours, baseline, ratio=None, target=None, ratio_min=None):
    """One line of the results table. `ratio` is a ratio of medians, `ratio_min` the
    same ratio of minima; `target` is an upper bound on `ratio`. Records the device,
    the JAX version and the matmul precision it ran with (`device_info`)."""
    return dict(
        ratio_min=ratio_min,
        row=id_,
        what=what,
        size=size,
        ours=ours,
        baseline=baseline,
        ratio=ratio,
        target=target,
        ok=None if target is None or ratio is None else bool(ratio <= target),
        **device_info(),
    )


def ms(seconds: float) -> str:
    return f"{1e3 * seconds:.2f} ms"


def main(doc: str, parts: dict) -> None:
    """The command line of a benchmark module: `--quick` (fewer sizes and repeats) and
    `--rows` (which of its rows, all by default); prints each row. `doc` is the
    module's docstring (its first paragraph describes the command), `parts` maps each
    row letter to the function that measures it, called with `quick`."""
    letters = "".join(parts)
    parser = argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()))
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--rows", default=letters, help=f"which rows, of {letters!r}")
    args = parser.parse_args()
    unknown = sorted(set(args.rows) - set(parts))
    if unknown:
        parser.error(f"--rows: unknown rows {unknown}; choose from {letters!r}")
    for key in args.rows:
        for r in parts[key](args.quick):
            print(r)


def timed_row(
    id_, what, size, ours, baseline, target=None, *, ratio=None, ratio_min=None
):
    """A `row` of two times in seconds, shown in ms. `ratio` is ours / baseline unless
    given (e.g. the median of the per-round ratios of `paired_times`)."""
    ratio = ours / baseline if ratio is None else ratio
    return row(id_, what, size, ms(ours), ms(baseline), ratio, target, ratio_min)
