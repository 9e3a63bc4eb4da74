"""What a newcomer meets: tolerances a dtype cannot meet refused up front, one plain line
per stage in a log, and the command line's answers on an empty folder."""

import functools
import io
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from experiments import __main__ as cli
from lagrangian_nn import _precision, progress

ROOT = Path(__file__).resolve().parents[1]

# --- precision ---------------------------------------------------------------------


def test_example_tolerances_refused_in_float32_with_the_way_out():
    # the fifteen-line example's tolerances, without float64
    with pytest.raises(ValueError) as info:
        _precision.check_tolerances(1e-10, 1e-12, jnp.float32)
    text = str(info.value)
    assert "`rtol` = 1e-10 and `atol` = 1e-12" in text
    assert "float32" in text and "1.19e-07" in text
    assert 'jax.config.update("jax_enable_x64", True)' in text
    assert "Use `rtol` >= 1.19e-07 or `atol` >= 1.19e-07" in text
    # in float64 the same request is met
    _precision.check_tolerances(1e-10, 1e-12, jnp.float64)


def test_the_readme_example_needs_float64_for_its_tolerances():
    # the README's example enables float64: its tolerances are refused in float32
    code = re.search(
        r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S
    ).group(1)
    assert 'jax.config.update("jax_enable_x64", True)' in code
    rtol = float(re.search(r"rtol=([0-9.e-]+)", code).group(1))
    atol = float(re.search(r"atol=([0-9.e-]+)", code).group(1))
    with pytest.raises(ValueError, match="float32"):
        _precision.check_tolerances(rtol, atol, jnp.float32)
    _precision.check_tolerances(rtol, atol, jnp.float64)


@settings(max_examples=20, deadline=None)
@given(
    dtype=st.sampled_from([jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]),
    log_scale=st.floats(-6.0, 6.0),
    split=st.floats(0.0, 1.0),
)
def test_threshold_is_the_resolution_at_the_state_size(dtype, log_scale, split):
    # refused just below eps·scale, accepted just above, however the tolerance is
    # split between rtol and atol, for every dtype and state size
    eps = float(jnp.finfo(dtype).eps)
    scale = 10.0**log_scale
    for factor, refused in ((0.9, True), (1.1, False)):
        total = factor * eps * scale  # atol + rtol·scale
        rtol, atol = split * total / scale, (1 - split) * total
        if refused:
            with pytest.raises(ValueError, match=jnp.dtype(dtype).name):
                _precision.check_tolerances(rtol, atol, dtype, scale=scale)
        else:
            _precision.check_tolerances(rtol, atol, dtype, scale=scale)


def test_atol_covers_a_small_rtol():
    # rtol far below float32's eps is fine while atol covers a state of size 1
    _precision.check_tolerances(1e-10, 1e-6, jnp.float32)
    _precision.check_tolerances(0.0, 1e-6, jnp.float32)
    # the default tolerances of `simulate` are met in float32
    _precision.check_tolerances(1e-6, 1e-8, jnp.float32)
    # but not for a state a thousand times larger, where atol no longer covers it
    with pytest.raises(ValueError, match="size 1e\\+03"):
        _precision.check_tolerances(1e-10, 1e-6, jnp.float32, scale=1e3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rtol=-1e-6, atol=1e-8, dtype=jnp.float32), "`rtol` must be .* -1e-06"),
        (dict(rtol=1e-6, atol=np.nan, dtype=jnp.float32), "`atol` must be .* nan"),
        (dict(rtol="tight", atol=1e-8, dtype=jnp.float32), "`rtol` must be .*'tight'"),
        (dict(rtol=1e-6, atol=1e-8, dtype=jnp.int32), "`dtype` must be .* int32"),
        (dict(rtol=1e-6, atol=1e-8, dtype="nonsense"), "`dtype` must be .*nonsense"),
        (dict(rtol=1e-6, atol=1e-8, dtype=jnp.float32, scale=0.0), "`scale` .* 0.0"),
    ],
)
def test_bad_arguments_each_get_their_own_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _precision.check_tolerances(**kwargs)


def test_resolution():
    assert _precision.resolution(jnp.float32) == pytest.approx(2.0**-23)
    assert _precision.resolution(jnp.float64) == pytest.approx(2.0**-52)


# --- one plain line per stage in a log ---------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self):
        return True


_LINE = r"GF: t = 1 / 1, (\d+) steps, \d+\.\d s"


@functools.cache  # one system for every test here: its solve compiles once
def _flow():
    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics

    flow = dynamics.gradient_flow(lambda w: 0.5 * jnp.sum(w**2))
    return lambda: lnn.simulate(
        flow, jnp.ones(2), t0=0.0, t1=1.0, ts=jnp.array([0.0, 1.0]), progress=True
    )


def test_a_logged_stage_ends_with_one_plain_line(capfd):
    solve = _flow()
    # capfd: standard error is a file, not a terminal
    with progress.stage("GF"):
        traj = jax.block_until_ready(solve())
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and re.fullmatch(_LINE, lines[0]), err
    assert int(re.fullmatch(_LINE, lines[0]).group(1)) >= 1
    # the solve itself is untouched: w(1) = e^-1 w(0)
    assert np.allclose(traj.q[-1], np.exp(-1.0), rtol=1e-5)
    # outside a stage a log stays silent
    jax.block_until_ready(solve())
    assert capfd.readouterr() == ("", "")


def test_a_stage_on_a_terminal_writes_no_line(monkeypatch):
    solve = _flow()
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with progress.stage("GF"):
        jax.block_until_ready(solve())
    assert not re.search(_LINE, term.getvalue())


def test_log_line_only_in_a_log(capfd, monkeypatch):
    progress.log_line("GD: 7000 steps")
    assert capfd.readouterr().err == "GD: 7000 steps\n"
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    progress.log_line("GD: 7000 steps")
    assert term.getvalue() == ""


@pytest.mark.parametrize("label", ["", "  ", None, 3])
def test_stage_needs_a_name(label):
    with pytest.raises(ValueError, match="`label` must be a non-empty string"):
        with progress.stage(label):
            pass


# --- the command line ----------------------------------------------------------------


def test_table_of_an_empty_folder_fails(tmp_path, capsys):
    assert cli.main(["table", "--out", str(tmp_path)]) != 0
    out, err = capsys.readouterr()
    assert out == ""
    assert f"no finished runs in {str(tmp_path)!r}" in err
    assert "python -m experiments run" in err


def test_ctrl_c_in_a_garbage_collection_callback_prints_nothing(monkeypatch):
    # JAX runs a callback on every garbage collection; a Ctrl-C that lands in it cannot
    # propagate, and Python would print it as "Exception ignored in ..." with a
    # traceback (through `sys.unraisablehook`). While the command line's handlers are
    # installed it is dropped (the watcher thread ends the run with its one line);
    # other such errors still reach the previous hook.
    import gc

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))

    def interrupted(phase, info):
        raise KeyboardInterrupt

    def broken(phase, info):
        raise RuntimeError("a genuine bug")

    interrupts = cli._Interrupts()
    with interrupts.installed():
        for callback in (interrupted, broken):
            gc.callbacks.append(callback)
            try:
                gc.collect()
            finally:
                gc.callbacks.remove(callback)
    assert interrupts.seen.is_set()
    assert RuntimeError in seen and KeyboardInterrupt not in seen
    # the hook is put back
    assert sys.unraisablehook is not interrupts._unraisable


def _python(script):
    """Runs `script` in a fresh interpreter from the repository root."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ctrl_c_before_the_handlers_are_installed(tmp_path):

    script = (
        "from experiments import __main__ as cli\n"
        "def main(argv=None):\n"
        "    raise KeyboardInterrupt\n"
        "cli.main = main\n"
        "cli.entry_point([])\n"
    )
    proc = _python(script)
    assert (proc.returncode, proc.stderr) == (130, "interrupted\n")


def test_ctrl_c_while_the_modules_load():
    # Ctrl-C while `python -m experiments` imports NumPy: one line, status 130, no
    # traceback from inside the import (the signal is sent as numpy's import starts)

    script = (
        "import builtins, os, runpy, signal, sys\n"
        "real = builtins.__import__\n"
        "def hook(name, *args, **kwargs):\n"
        "    if name == 'numpy':\n"
        "        builtins.__import__ = real\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = hook\n"
        "sys.argv = ['experiments', 'list']\n"
        "runpy.run_module('experiments', run_name='__main__', alter_sys=True)\n"
    )
    proc = _python(script)
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, "", "interrupted\n")


def test_output_into_a_closed_pipe_is_no_traceback(tmp_path):
    # `python -m experiments list | head -1`: the reader leaves before the end

    script = (
        "import sys\n"
        "from experiments import __main__ as cli\n"
        "class Closed:\n"
        "    def write(self, text):\n"
        "        raise BrokenPipeError(32, 'Broken pipe')\n"
        "    def flush(self):\n"
        "        pass\n"
        "    def fileno(self):\n"
        "        return sys.__stdout__.fileno()\n"
        "sys.stdout = Closed()\n"
        "cli.entry_point(['list'])\n"
    )
    proc = _python(script)
    assert proc.returncode == 1 and proc.stderr == ""


def test_claim_lines_give_the_measured_miss_factor(capsys):
    from experiments import _common

    def line(control_value):
        c = _common.claim(
            "c",
            "eq. 1",
            1e-10,
            1e-8,
            basis="trajectory",
            control=_common.control("no symmetry", control_value),
        )
        cli._print_claims({"claims": [c]})
        return capsys.readouterr().out

    # a control 1e8 times above the bound: the line says 1e8, not the margin of 100
    assert "misses by 1e+08x (needs 100x)" in line(1.0)
    assert "misses by only 50x (needs 100x)" in line(5e-7)
    assert "DOES NOT miss (needs 100x)" in line(1e-9)


def test_experiment_stages_in_a_log(capfd):
    # a discrete run to a stall, and a solve named by the experiments' helper
    from experiments import _common, _homogeneous
    from lagrangian_nn import optim

    loss = lambda w: 0.5 * jnp.sum(w**2)
    _homogeneous.train_until_stall(
        optim.gd(0.1), loss, jnp.ones(3), window=5, rtol=1e-3, max_steps=50, label="GD"
    )
    _common.stage("GF", _flow())
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(
        r"GD: t = [\d.]+, \d+ steps, stopped by stall, \d+\.\d s", lines[0]
    )
    assert re.fullmatch(_LINE, lines[1])


# --- what has been run: experiments/__init__.py and the docs agree -------------------


def test_docs_agree_with_the_experiments_on_what_run_all_runs():
    import experiments

    claims = (ROOT / "docs" / "claims.md").read_text()
    # the claims table holds every experiment of `run all`, and beyond them only
    # experiments that run by name
    rows = set(re.findall(r"^\| `([a-z_]+)`", claims, re.M))
    assert set(experiments.in_all()) <= rows
    assert rows - set(experiments.in_all()) <= experiments.NOT_IN_ALL
    performance = (ROOT / "docs" / "performance.md").read_text()
    section = performance.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    untimed = [n for n in experiments.in_all() if f"`{n}`" not in section]
    assert not untimed, f"the performance page gives no time for {untimed}"
    # those run by name only are said to be so wherever `run all` is explained
    reproducing = (ROOT / "docs" / "reproducing.md").read_text()
    for name in experiments.NOT_IN_ALL:
        assert name in experiments.EXPERIMENTS
        assert f"`{name}` is not part of `run all`" in claims
        line = next(x for x in reproducing.splitlines() if f"run {name}" in x)
        assert "not part of `run all`" in line
