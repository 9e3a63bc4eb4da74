"""All benchmarks, as one table of ratios measured side by side in one process.

Rows (see each module's docstring):

- (a) `euler_lagrange` of a hand-written Table-1 Lagrangian vs the hand-written ODE,
  per evaluation, at ~10k, 240k and 1M parameters (`bench_euler_lagrange.py`);
- (b) `simulate` vs (right-hand-side evaluations x hand-written right-hand side)
  (`bench_simulate.py`);
- (c) `optim.run` tracking two charges vs a plain optax `lax.scan` loop
  (`bench_optim.py`);
- (d) peak memory against parameter count (`bench_memory.py`);
- (e) compile time of `simulate` for the paper's network (`bench_simulate.py`);
- (f) `euler_lagrange` vs the dense velocity-Hessian pseudo-inverse
  (`bench_euler_lagrange.py`);
- (g) the solver's own cost per step, `lnn.FusedTsit5` vs `diffrax.Tsit5`
  (`bench_simulate.py`);
- (h) `lnn.variational.integrate` vs a hand-written leapfrog / Newton iteration, and
  its cost for a new time argument (`bench_variational.py`);
- (i) `lnn.symmetry.count_laws`: first call on small nets, the random-architecture
  sweeps under the momentum flows, wide two-layer ReLU nets (`bench_count.py`);
- (j) `discover` and `conservation_table` called again on the same family
  (`bench_discover.py`);
- (k) `optim.run` over 1,000 steps with charge laws tracked vs a plain optax scan
  (`bench_optim.py`);
- (l) the charge tracker in a user's own jitted optax loop vs the bare loop
  (`bench_tracker.py`);
- (m) `simulate` on a transformer of at least 1M parameters vs a hand-written diffrax
  loop on the same vector field (`bench_arch.py`).

"ratio" is ours / baseline, a ratio of medians (in brackets: the same ratio of the
fastest runs); for (d) it is the log-log slope of memory against the number of
parameters.

On a GPU it prints a GPU table (its header names the card, the JAX version and the
matmul precision, `JAX_DEFAULT_MATMUL_PRECISION`), otherwise a CPU table (the CPU and
its cores). Every row records the device, JAX version and matmul precision. Writes
`benchmarks/results/latest-gpu.{json,md}` or `latest-cpu.{json,md}` (and a copy as
`latest.{json,md}`), after each part, so a run cut short keeps the rows it finished.
A part that raises is reported as a failed row, the other parts still run, and the
exit status is 1.

Usage: python benchmarks/run.py [--quick] [--rows abcdefghijklm]
"""

import argparse
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import importlib  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from _common import device_info, effective_eps, row  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import lagrangian_nn as lnn  # noqa: E402

# row letter -> "module:function"; a part's module is imported only when it runs
PARTS = {
    "a": "bench_euler_lagrange:rows_a",
    "b": "bench_simulate:rows_b",
    "c": "bench_optim:rows",
    "d": "bench_memory:rows",
    "e": "bench_simulate:rows_e",
    "f": "bench_euler_lagrange:rows_f",
    "g": "bench_simulate:rows_g",
    "h": "bench_variational:rows_h",
    "i": "bench_count:rows_i",
    "j": "bench_discover:rows_j",
    "k": "bench_optim:rows_k",
    "l": "bench_tracker:rows_l",
    "m": "bench_arch:rows_m",
}


def load_part(key):
    """The function that measures rows `key` (its module imported on first use)."""
    module, function = PARTS[key].split(":")
    return getattr(importlib.import_module(module), function)


def header_line(quick: bool, seconds: float) -> str:
    """The table's first line: the device (the card, or the CPU and its cores), JAX
    and the precision in use."""
    info = device_info()
    eps = effective_eps(jnp.float32)
    precision = (
        f"matmul precision {info['matmul_precision']} "
        f"(float32 matmuls at effective eps 2^{math.log2(eps):.0f})"
    )
    if info["platform"] == "cpu":
        where = f"CPU table: {info['device']}"
    else:
        where = f"{info['platform'].upper()} table: {info['device']}"
    return (
        f"{where}; jax {info['jax']}, lagrangian_nn {lnn.__version__}, float32, "
        f"{precision}, Python {platform.python_version()}"
        + (", quick settings" if quick else "")
        + f"; {seconds:.0f} s"
    )


def markdown(rows, header) -> str:
    lines = [
        header,
        "",
        "| row | what | size | ours | baseline | ratio | target | ok | device |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3g}"
        if r.get("ratio_min") is not None:
            ratio += f" (min {r['ratio_min']:.3g})"
        target = "" if r["target"] is None else f"≤ {r['target']:g}"
        ok = {None: "", True: "yes", False: "**no**"}[r["ok"]]
        device = f"{r['device']}, jax {r['jax']}, {r['matmul_precision']}"
        lines.append(
            f"| {r['row']} | {r['what']} | {r['size']} | {r['ours']} | "
            f"{r['baseline']} | {ratio} | {target} | {ok} | {device} |"
        )
    return "\n".join(lines) + "\n"


def write_results(rows, header, quick) -> Path:
    """Writes `latest-{cpu,gpu}.{json,md}` (and `latest.{json,md}`) under
    `benchmarks/results/`; returns the markdown file."""
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    kind = "cpu" if jax.default_backend() == "cpu" else "gpu"
    data = json.dumps(
        {"header": header, "quick": quick, **device_info(), "rows": rows}, indent=2
    )
    text = markdown(rows, header)
    for stem in (f"latest-{kind}", "latest"):
        (out / f"{stem}.json").write_text(data)
        (out / f"{stem}.md").write_text(text)
    return out / f"latest-{kind}.md"


def main(quick: bool = False, parts: str = "".join(PARTS)):
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(
            f"--rows: unknown rows {sorted(unknown)}; choose from {''.join(PARTS)}"
        )
    rows, failed = [], []
    start = time.perf_counter()
    for key in tqdm(parts, desc="benchmark rows"):
        try:
            rows.extend(load_part(key)(quick))
        except Exception as e:  # report it, run the other parts
            traceback.print_exc()
            failed.append(key)
            message = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
            rows.append(row(key, f"FAILED: {message}", "", "", ""))
        write_results(rows, header_line(quick, time.perf_counter() - start), quick)
    header = header_line(quick, time.perf_counter() - start)
    path = write_results(rows, header, quick)
    print(markdown(rows, header))
    print(f"written: {path} and {path.with_suffix('.json')}")
    if failed:
        print(f"FAILED parts: {''.join(failed)}", file=sys.stderr)
    return rows, failed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--rows", default="".join(PARTS), help="which rows, e.g. 'ab'")
    args = parser.parse_args()
    _, failed = main(quick=args.quick, parts=args.rows)
    sys.exit(1 if failed else 0)
