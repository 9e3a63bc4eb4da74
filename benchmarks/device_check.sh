#!/usr/bin/env bash
# One prepared GPU measurement (issue 14), run once on a lent machine from the
# repository root:
#
#     bash benchmarks/device_check.sh            # full settings (an H100: ~5 min)
#     OUT=/tmp/devout bash benchmarks/device_check.sh --quick   # smoke run, any machine
#
# Steps (each under its own time limit, inside one overall budget: 450 s by default,
# DEVICE_CHECK_BUDGET_S; each benchmark run at most 170 s, DEVICE_CHECK_BENCH_S). A
# step that fails or times out does not stop the others; its exit code is logged (124:
# timed out). run.py writes its results after each row, so a run cut short keeps the
# rows it finished.
#   1. info:    nvidia-smi -L, JAX version, backend and devices;
#   2. hlo:     conditional and host-callback ops in the compiled HLO of the
#               `euler_lagrange` acceleration of the Table-1 Lagrangians (and of the
#               hand-written ODE as a control) on the default backend; then
#               tests/test_hot_path.py if it exists;
#   3. default: `benchmarks/run.py --rows abg` (DEVICE_CHECK_ROWS) at JAX's default matmul precision
#               (TF32 float32 matmuls on the GPU);
#   4. highest: the same with JAX_DEFAULT_MATMUL_PRECISION=highest;
#   5. diagnose: `benchmarks/diagnose_b.py` at the default precision (row (b) split
#               into Python overhead, generic acceleration, solver, and what folding
#               the data in as constants saves), if the budget allows.
# Without a GPU it says so and, unless --quick, skips steps 3 and 4 (full settings on
# a CPU take far longer than the budget).
#
# Writes 9 files under $OUT:
#   info.log                 step 1, then the exit code and seconds of every step
#   diagnose.log             step 5
#   hlo.log                  step 2
#   bench-default.log        step 3's output (its table at the end)
#   bench-default.{md,json}  step 3's results (benchmarks/results/latest-gpu.*, or
#                            latest-cpu.* without a GPU)
#   bench-highest.log, bench-highest.{md,json}   the same for step 4
set -u
export PYTHONPATH=.
export PYTHONUNBUFFERED=1
unset JAX_DEFAULT_MATMUL_PRECISION
PY=${PYTHON:-python3}
QUICK=""
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK="--quick" ;;
        *) echo "unknown argument: $arg (only --quick)" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-/tmp/device_check_out}
mkdir -p "$OUT"
BUDGET=${DEVICE_CHECK_BUDGET_S:-450}  # seconds for all steps together
BENCH_CAP=${DEVICE_CHECK_BENCH_S:-170}  # seconds for each benchmark run
ROWS=${DEVICE_CHECK_ROWS:-abg}  # benchmark rows (a smoke test may pick fewer)
START=$(date +%s)
SUMMARY=""

# run_step NAME CAP_S LOG CMD...: runs CMD under `timeout min(CAP_S, time left)`,
# output to the terminal and appended to LOG; records its exit code (124: timed out).
run_step() {
    local name=$1 cap=$2 log=$3
    shift 3
    local left=$((BUDGET - ($(date +%s) - START)))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 10 ]; then
        echo "== $name: skipped, ${left} s of the ${BUDGET} s budget left" | tee -a "$log"
        SUMMARY+="$name: skipped (budget spent)"$'\n'
        return
    fi
    echo "== $name (limit ${limit} s): $*" | tee -a "$log"
    local t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    local took=$(($(date +%s) - t0))
    [ "$rc" -eq 124 ] && echo "== $name: TIMED OUT after ${limit} s" | tee -a "$log"
    echo "== $name: exit code $rc, ${took} s" | tee -a "$log"
    SUMMARY+="$name: exit code $rc, ${took} s"$'\n'
}

# ---- 1. info ---------------------------------------------------------------------
INFO="$OUT/info.log"
: >"$INFO"
echo "device_check.sh ${QUICK:-(full settings)}, $(date -u +%FT%TZ), git $(git rev-parse --short HEAD 2>/dev/null)" | tee -a "$INFO"
if command -v nvidia-smi >/dev/null 2>&1; then
    run_step nvidia-smi 20 "$INFO" nvidia-smi -L
else
    echo "nvidia-smi: not found" | tee -a "$INFO"
fi
run_step jax-info 60 "$INFO" "$PY" -c '
import jax
print("jax", jax.__version__, "backend", jax.default_backend())
print("devices", jax.devices())
d = jax.devices()[0]
print("device 0:", d.platform, d.device_kind)
print("BACKEND=" + jax.default_backend())
'
BACKEND=$(grep -o '^BACKEND=[a-z]*' "$INFO" | tail -1 | cut -d= -f2)
if [ "$BACKEND" = "gpu" ] || [ "$BACKEND" = "cuda" ]; then
    KIND=gpu
else
    KIND=cpu
    echo "NO GPU: JAX's backend is '${BACKEND:-unknown}'; results are CPU ones." | tee -a "$INFO"
fi

# ---- 2. hlo ----------------------------------------------------------------------
HLO="$OUT/hlo.log"
: >"$HLO"
run_step hlo-ops 90 "$HLO" "$PY" - <<'PYEOF'
"""Counts conditional and host-callback ops in the compiled HLO of the acceleration."""
import re
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, "benchmarks")
from _common import make_problem  # noqa: E402

import lagrangian_nn as lnn  # noqa: E402

print("backend", jax.default_backend(), jax.devices()[0].device_kind)
loss, w, v = make_problem([784, 12, 12, 10], n_samples=1000)
t = jnp.asarray(1.5, jnp.float32)


def sq(v):
    return sum(jnp.vdot(x, x) for x in jax.tree.leaves(v))


def hand_ode(t, q, v):
    g = jax.grad(loss)(q)
    return jax.tree.map(lambda vi, gi: -3.0 / t * vi - gi, v, g)


cases = {
    "hand-written ODE (control)": lambda: hand_ode,
    "nesterov(loss)": lambda: lnn.euler_lagrange(lnn.dynamics.nesterov(loss)),
    "t**3*(0.5|v|^2 - loss) lambda": lambda: lnn.euler_lagrange(
        lambda t, q, v: t**3 * (0.5 * sq(v) - loss(q))
    ),
    "newtonian(loss)": lambda: lnn.euler_lagrange(lnn.dynamics.newtonian(loss)),
    "damped(loss, 1.0)": lambda: lnn.euler_lagrange(lnn.dynamics.damped(loss, 1.0)),
}
dirty = 0
for name, make in cases.items():
    try:
        accel = make()  # wrapped: jax.jit hashes its function, a Module holds arrays
        fn = jax.jit(lambda t, q, v: accel(t, q, v))
        text = fn.lower(t, w, v).compile().as_text()
    except Exception as e:
        print(f"{name}: FAILED to compile: {type(e).__name__}: {e}")
        dirty += 1
        continue
    lines = text.splitlines()
    cond = [ln for ln in lines if " conditional(" in ln]
    targets = re.findall(r'custom_call_target="([^"]*)"', text)
    callbacks = [x for x in targets if "callback" in x.lower()]
    whiles = sum(" while(" in ln for ln in lines)
    print(
        f"{name}: conditional {len(cond)}, host callbacks {len(callbacks)}, "
        f"while {whiles}, HLO lines {len(lines)}, custom-call targets "
        f"{sorted(set(targets))}"
    )
    for ln in (cond + [ln for ln in lines if "callback" in ln])[:6]:
        print("    " + ln.strip()[:300])
    dirty += bool(cond or callbacks) and "control" not in name
print("HOT PATH CLEAN" if dirty == 0 else f"HOT PATH NOT CLEAN in {dirty} case(s)")
sys.exit(0 if dirty == 0 else 3)
PYEOF
if [ -f tests/test_hot_path.py ]; then
    run_step test_hot_path 90 "$HLO" "$PY" -m pytest -q -x -p no:cacheprovider tests/test_hot_path.py
else
    echo "tests/test_hot_path.py: not present" | tee -a "$HLO"
fi

# ---- 3, 4. benchmarks ------------------------------------------------------------
bench() {  # bench NAME [env assignments...]
    local name=$1
    shift
    local log="$OUT/bench-$name.log"
    : >"$log"
    rm -f "benchmarks/results/latest-$KIND.md" "benchmarks/results/latest-$KIND.json"
    run_step "bench-$name" "$BENCH_CAP" "$log" env "$@" "$PY" benchmarks/run.py --rows "$ROWS" $QUICK
    for ext in md json; do
        cp "benchmarks/results/latest-$KIND.$ext" "$OUT/bench-$name.$ext" 2>/dev/null \
            || echo "bench-$name: no benchmarks/results/latest-$KIND.$ext written" | tee -a "$log"
    done
}
if [ "$KIND" = gpu ] || [ -n "$QUICK" ]; then
    bench default
    bench highest JAX_DEFAULT_MATMUL_PRECISION=highest
else
    echo "benchmarks skipped: no GPU (pass --quick to run them here anyway)" | tee -a "$INFO"
    SUMMARY+="bench-default: skipped (no GPU)"$'\n'"bench-highest: skipped (no GPU)"$'\n'
fi

if [ "$KIND" = gpu ]; then
    : >"$OUT/diagnose.log"
    run_step diagnose 90 "$OUT/diagnose.log" "$PY" benchmarks/diagnose_b.py
fi

echo "== summary ($(($(date +%s) - START)) s in all, backend ${BACKEND:-unknown})" | tee -a "$INFO"
printf '%s' "$SUMMARY" | tee -a "$INFO"
ls -la "$OUT"
exit 0
