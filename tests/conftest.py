import os

# Compiling dominates the suite's time (hundreds of small programs, each run briefly),
# so the tests ask XLA's CPU backend for less LLVM optimisation of the machine code
# (measured on tests/test_symmetry.py: 22% less CPU time). This is LLVM's optimisation
# of the generated code, not XLA's HLO passes; the suite passes either way. Set
# LNN_TEST_FULL_OPT=1 to test with XLA's defaults. Set here, before JAX starts its
# backend; subprocesses (the sharding checks, the docs build's notebook kernels)
# inherit it.
if os.environ.get("LNN_TEST_FULL_OPT") != "1":
    _FAST_COMPILE = (
        "--xla_backend_optimization_level=0",
        "--xla_llvm_disable_expensive_passes=true",
    )
    _flags = os.environ.get("XLA_FLAGS", "").split()
    _given = {f.split("=")[0] for f in _flags}  # a flag the user set wins
    _flags += [f for f in _FAST_COMPILE if f.split("=")[0] not in _given]
    os.environ["XLA_FLAGS"] = " ".join(_flags)

import jax  # noqa: E402

# Tests compare against closed forms to ~1e-10; they need float64. The library itself
# never switches this on.
jax.config.update("jax_enable_x64", True)
