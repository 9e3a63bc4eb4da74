"""Rows (i): `lnn.symmetry.count_laws`, wall-clock seconds against fixed targets.

Each row runs in a fresh Python process (JAX imported, float64 enabled, the networks
built) and times only the `count_laws` calls, so one-time costs of a first call
(tracing, compiling, NumPy's first linear algebra) are included:

- i1: the first call, NAGF, a 12-parameter deep linear net `[2, 2, 2, 2]`; target 2 s.
- i2: a 90-parameter deep linear net `[4, 5, 5, 5, 4]`, NAGF, first call; target 2 s
  (the same target holds for any net up to 100 parameters).
- i3, i4: 20 random ReLU (widths 2-5, depth 2-3) and 20 random deep linear (widths
  2-3, depth 2-3) nets, each under ND, heavy ball and NAGF (60 counts), as drawn by
  `experiments/conservation_counts.py`; targets 63 s and 139 s, the times Marcotte et
  al. report for their SageMath code on 64 cores. The counts are checked: 0 for ReLU,
  the dimension of the so(d_h) of the hidden layers for linear nets.
- i5, i6: gradient flow, two-layer ReLU `[4, w, 2]` of width 400 (target 60 s) and
  1,000 (target 600 s, not in --quick); the count must be w.

"ratio" is measured seconds / target seconds (so it must stay below 1).

Usage: python benchmarks/bench_count.py [--quick]
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import _common as bench

ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = """
import json, sys, time
sys.path.insert(0, {root!r})
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from lagrangian_nn import nn, symmetry as sy
from experiments import conservation_counts as cc
"""

_FIRST = """
sizes = {sizes!r}
m = cc._net(sizes, nn.Identity(), seed=0)
start = time.perf_counter()
r = sy.count_laws(m, flow="nagf", key=jax.random.key(0))
first = time.perf_counter() - start
start = time.perf_counter()
sy.count_laws(m, flow="nagf", key=jax.random.key(1))
second = time.perf_counter() - start
print(json.dumps(dict(seconds=first, second=second, count=r.count, D=(r.dimension - 1) // 2)))
"""

_SWEEP = """
cfg = cc.config_for(False, 0)
kind = {kind!r}
widths, depths = cfg[f"momentum_{{kind}}_widths"], cfg[f"momentum_{{kind}}_depths"]
rng = np.random.default_rng(0)
archs = [cc._arch(rng, depths, widths) for _ in range({n})]
act = nn.ReLU() if kind == "relu" else nn.Identity()
off = 200 if kind == "relu" else 300  # the experiment's seeds
nets = [cc._net(s, act, seed=off + k) for k, s in enumerate(archs)]
bad, counts = [], []
start = time.perf_counter()
for k, (sizes, m) in enumerate(zip(archs, nets)):
    expected = 0 if kind == "relu" else sum(d * (d - 1) // 2 for d in sizes[1:-1])
    for f in cc.MOMENTUM:
        c = sy.count_laws(m, flow=f, key=jax.random.key(off + k), damping=1.0).count
        counts.append(c)
        if c != expected:
            bad.append((sizes, f, c, expected))
seconds = time.perf_counter() - start
print(json.dumps(dict(seconds=seconds, bad=bad, n=len(counts))))
"""

_WIDE = """
w = {width}
m = cc._net([4, w, 2], nn.ReLU(), seed=w)
start = time.perf_counter()
r = sy.count_laws(m, key=jax.random.key(w))
seconds = time.perf_counter() - start
print(json.dumps(dict(seconds=seconds, count=r.count, D=r.dimension, cols=r.columns)))
"""


def fresh(body: str, timeout: float = 1800.0) -> dict:
    """Runs `body` after `_PRELUDE` in a fresh Python process; its last line of
    output, as JSON."""
    script = textwrap.dedent(_PRELUDE.format(root=str(ROOT))) + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode:
        raise RuntimeError(f"count_laws benchmark failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load() -> str:
    try:
        return f"load {os.getloadavg()[0]:.1f}"
    except OSError:
        return ""


def rows_i(quick: bool = False) -> list:
    out = []
    for id_, sizes in (("i1", [2, 2, 2, 2]), ("i2", [4, 5, 5, 5, 4])):
        r = fresh(_FIRST.format(sizes=sizes))
        out.append(
            bench.row(
                id_,
                f"count_laws first call, NAGF, float64, deep linear {sizes} ({r['count']} laws; "
                f"2nd call {r['second']:.2f} s); ratio = time / target",
                f"{r['D']} params",
                f"{r['seconds']:.2f} s",
                f"target 2 s ({_load()})",
                r["seconds"] / 2.0,
                1.0,
            )
        )
    for id_, kind, target in (("i3", "relu", 63.0), ("i4", "linear", 139.0)):
        r = fresh(_SWEEP.format(kind=kind, n=20))
        if r["bad"]:
            raise AssertionError(f"count_laws sweep ({kind}): wrong counts {r['bad']}")
        out.append(
            bench.row(
                id_,
                f"count_laws, float64, 20 random {kind} nets x (ND, heavy ball, NAGF), "
                f"{r['n']} counts, all as predicted",
                "widths 2-5, depth 2-3" if kind == "relu" else "widths 2-3, depth 2-3",
                f"{r['seconds']:.1f} s",
                f"{target:.0f} s (SageMath, 64 cores; {_load()})",
                r["seconds"] / target,
                1.0,
            )
        )
    for id_, width, target in (("i5", 400, 60.0), ("i6", 1000, 600.0)):
        if quick and width > 400:
            continue
        r = fresh(_WIDE.format(width=width))
        if r["count"] != width:
            raise AssertionError(f"count_laws, width {width}: count {r['count']}")
        out.append(
            bench.row(
                id_,
                f"count_laws, GF, float64, two-layer ReLU [4, {width}, 2] ({r['count']} laws, "
                f"{r['cols']} columns); ratio = time / target",
                f"{r['D']:,} params",
                f"{r['seconds']:.1f} s",
                f"target {target:.0f} s ({_load()})",
                r["seconds"] / target,
                1.0,
            )
        )
    return out


if __name__ == "__main__":
    bench.main(__doc__, {"i": rows_i})
