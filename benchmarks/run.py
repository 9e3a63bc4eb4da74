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
  (`bench_simulate.py`).

"ratio" is ours / baseline, a ratio of medians (in brackets: the same ratio of the
fastest runs); for (d) it is the log-log slope of memory against the number of
parameters. Writes `benchmarks/results/latest.json` and `latest.md`.

Usage: python benchmarks/run.py [--quick] [--rows abcdefg]
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import bench_euler_lagrange  # noqa: E402
import bench_memory  # noqa: E402
import bench_optim  # noqa: E402
import bench_simulate  # noqa: E402
import jax  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import lagrangian_nn as lnn  # noqa: E402

PARTS = {
    "a": bench_euler_lagrange.rows_a,
    "b": bench_simulate.rows_b,
    "c": bench_optim.rows,
    "d": bench_memory.rows,
    "e": bench_simulate.rows_e,
    "f": bench_euler_lagrange.rows_f,
    "g": bench_simulate.rows_g,
}


def markdown(rows, header) -> str:
    lines = [
        header,
        "",
        "| row | what | size | ours | baseline | ratio | target | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3g}"
        if r.get("ratio_min") is not None:
            ratio += f" (min {r['ratio_min']:.3g})"
        target = "" if r["target"] is None else f"≤ {r['target']:g}"
        ok = {None: "", True: "yes", False: "**no**"}[r["ok"]]
        lines.append(
            f"| {r['row']} | {r['what']} | {r['size']} | {r['ours']} | "
            f"{r['baseline']} | {ratio} | {target} | {ok} |"
        )
    return "\n".join(lines) + "\n"


def main(quick: bool = False, parts: str = "abcdefg"):
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"--rows: unknown rows {sorted(unknown)}; choose from abcdefg")
    rows = []
    start = time.perf_counter()
    for key in tqdm(parts, desc="benchmark rows"):
        rows.extend(PARTS[key](quick))
    device = jax.devices()[0]
    header = (
        f"lagrangian_nn {lnn.__version__}, jax {jax.__version__}, "
        f"{device.platform} ({device.device_kind}), {os.cpu_count()} CPU cores, "
        f"float32, {platform.python_version()}"
        + (", quick settings" if quick else "")
        + f"; {time.perf_counter() - start:.0f} s"
    )
    text = markdown(rows, header)
    print(text)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(
        json.dumps({"header": header, "quick": quick, "rows": rows}, indent=2)
    )
    (out / "latest.md").write_text(text)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--rows", default="abcdefg", help="which rows, e.g. 'ab'")
    args = parser.parse_args()
    main(quick=args.quick, parts=args.rows)
