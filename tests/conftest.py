import os

# Compiling dominates the suite's time (hundreds of small programs, each run briefly),
# so the tests ask XLA's CPU backend for less LLVM optimisation of the machine code
# (measured on tests/test_symmetry.py: 22% less CPU time). This is LLVM's optimisation
# of the generated code, not XLA's HLO passes; the suite passes either way. Set
# LNN_TEST_FULL_OPT=1 to test with XLA's defaults. Set here, before JAX starts its
# backend; subprocesses (the sharding checks, the docs build's notebook kernels)
# inherit it.
if os.environ.get("LNN_TEST_FULL_OPT") != "1":
    from experiments._common import with_fast_compile  # a flag the user set wins

    os.environ["XLA_FLAGS"] = with_fast_compile(os.environ.get("XLA_FLAGS", ""))

# Many tests compile the same program again (a fresh closure per test or per hypothesis
# example, the same experiment in a worker and in a notebook kernel). JAX's persistent
# compilation cache turns those into look-ups: one folder per test run, made by the
# controlling process (so the xdist workers, the sharding subprocess and the docs
# build's notebook kernels inherit it) and removed when that process exits. Nothing is
# carried between runs, so a clean checkout behaves as here. A test that checks that a
# program compiles once counts traces or its jit cache, which the persistent cache does
# not touch. Set LNN_TEST_NO_COMPILE_CACHE=1 to run without it.
if (
    os.environ.get("LNN_TEST_NO_COMPILE_CACHE") != "1"
    and "PYTEST_XDIST_WORKER" not in os.environ
    and "JAX_COMPILATION_CACHE_DIR" not in os.environ
):
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="lnn-test-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402
import pytest  # noqa: E402

# Tests compare against closed forms to ~1e-10; they need float64. The library itself
# never switches this on.
jax.config.update("jax_enable_x64", True)


# Every compiled XLA program holds a few memory maps of its code for as long as a jit
# cache keeps it, and a worker runs dozens of test files: tens of thousands of
# programs pass the kernel's limit on memory maps (`vm.max_map_count`, 65,530 by
# default), after which XLA crashes the worker with a segmentation fault while it
# compiles or serialises the next program. When a file is done and the worker holds
# more than 40,000 maps, its compiled programs are dropped (the
# persistent cache above still serves them to later files).
@pytest.fixture(scope="module", autouse=True)
def _drop_compiled_programs():
    yield
    try:
        with open(f"/proc/{os.getpid()}/maps") as f:
            n = sum(1 for _ in f)
    except OSError:  # not Linux: no such limit
        return
    if n > 40_000:
        import gc

        jax.clear_caches()
        gc.collect()
