"""The command line behaves: no progress bars in logs, one line and exit status 130 on
Ctrl-C with nothing left behind, normal folder permissions, and `draw` redraws the
figures of a finished run from its saved files alone.

A tiny fake experiment stands in for the real ones (no JAX compilation, except in the
two tests of the progress meter and the one of Ctrl-C during an XLA computation)."""

import importlib.util
import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import experiments
from experiments import __main__ as cli, _common

REPO = Path(__file__).resolve().parents[1]

FAKE = '''
"""A fake experiment: three stages with a progress bar, one claim, one figure."""

import os
import signal
import threading
import time

import numpy as np

from experiments import _style
from experiments._common import claim, control, load, progress, run_experiment

NAME = "fake"


def compute(cfg):
    mode = os.environ.get("FAKE_MODE", "ok")
    if mode == "no-compute":
        raise AssertionError("compute ran; `draw` must only read saved files")
    curve = []
    for k in progress(range(3), desc="stages"):
        curve.append(float(k) ** 2)
    if mode == "raise":
        raise KeyboardInterrupt
    if mode == "sigint":  # Ctrl-C while Python runs
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(60)
    if mode == "sigint-in-xla":  # Ctrl-C while the main thread waits on XLA
        import jax
        import jax.numpy as jnp

        @jax.jit
        def spin(x):  # never ends: |sin(x)| <= 1 < 2
            return jax.lax.while_loop(lambda x: x < 2.0, jnp.sin, x)

        spin.lower(jnp.float32(0.0)).compile()
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        spin(jnp.float32(0.0)).block_until_ready()
    if mode == "sigint-in-callback":  # Ctrl-C inside a host callback (progress bars)
        import jax
        import jax.numpy as jnp
        from jax.experimental import io_callback

        def host(x):  # on CPU, callbacks run in the main thread
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(60)
            return x

        shape = jax.ShapeDtypeStruct((), jnp.float32)
        jax.jit(lambda x: io_callback(host, shape, x))(jnp.float32(0.0))
        raise AssertionError("the callback was not interrupted")
    c = claim(
        "square",
        "eq. 0",
        curve[-1],
        4.0,
        basis="trajectory",
        control=control("cube", 1e3),
    )
    return {"last": curve[-1]}, {"curve": np.array(curve)}, [c]


def draw(folder):
    results, arrays = load(folder)
    plt = _style.use()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot(arrays["curve"], label=str(results["metrics"]["last"]))
    ax.legend()
    _style.save(fig, folder, "fake")
    (folder / "summary.txt").write_text(f"last = {results['metrics']['last']}\\n")


def main(*, seed=0, quick=False, out="outputs"):
    return run_experiment(
        NAME, config={"seed": seed}, compute=compute, draw=draw, out=out, quick=quick
    )
'''

# Runs the command line with the fake experiment registered, in a fresh process.
LAUNCH = """
import importlib.util, sys
import experiments
from experiments import __main__ as cli
spec = importlib.util.spec_from_file_location("experiments.fake", {path!r})
module = importlib.util.module_from_spec(spec)
sys.modules["experiments.fake"] = module
spec.loader.exec_module(module)
experiments.EXPERIMENTS["fake"] = "a fake experiment"
cli.entry_point(sys.argv[1:])
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake experiment, registered as `fake`; returns the path of its source."""
    path = tmp_path / "fake_experiment.py"
    path.write_text(FAKE)
    spec = importlib.util.spec_from_file_location("experiments.fake", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "experiments.fake", module)
    monkeypatch.setitem(experiments.EXPERIMENTS, "fake", "a fake experiment")
    return path


def _launch(fake_path, args, env_mode, timeout=120):
    script = fake_path.parent / "launch.py"
    script.write_text(LAUNCH.format(path=str(fake_path)))
    env = {**os.environ, "FAKE_MODE": env_mode, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class _Terminal(io.StringIO):
    def isatty(self):
        return True


# --- progress bars ---------------------------------------------------------------


def test_log_gets_no_bars(fake, tmp_path, capfd):
    # capfd: standard output and error are files, as in `run all > log 2>&1`
    assert cli.main(["run", "fake", "--out", str(tmp_path / "o")]) == 0
    out, err = capfd.readouterr()
    assert err == ""
    assert "\r" not in out and "stages" not in out  # the fake's progress bar
    assert out.splitlines()[0] == "== fake"
    assert (tmp_path / "o" / "fake" / "fake.png").is_file()


def test_progress_counts_items_on_a_terminal(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert list(_common.progress(range(3), desc="widths")) == [0, 1, 2]
    shown = term.getvalue()
    assert re.search(r"widths: \d/3 \|", shown)  # a count of items
    assert "%" not in shown and "it/s" not in shown


def test_progress_is_the_plain_iterable_in_a_log(capfd):
    items = [1, 2]
    assert _common.progress(items, desc="widths") is items
    assert capfd.readouterr() == ("", "")


def test_time_progress_meter(monkeypatch, capfd):
    import diffrax
    import jax
    import jax.numpy as jnp

    from lagrangian_nn import _progress

    @jax.jit
    def solve(y0):
        return diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: -y),
            diffrax.Tsit5(),
            0.0,
            2.5,
            0.01,
            y0,
            stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8),
            progress_meter=_progress.TimeProgressMeter(0.0, 2.5, refresh_steps=2),
        )

    # every update drawn at once (not after half a second, nor a tenth apart)
    monkeypatch.setattr(_progress, "_BAR_TIMING", dict(delay=0, mininterval=0))
    # in a log: nothing at all
    sol = solve(jnp.ones(2))
    assert capfd.readouterr() == ("", "")
    # on a terminal: simulated time and steps
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    solve(jnp.ones(2))
    shown = term.getvalue()
    times = [float(t) for t in re.findall(r"t = ([0-9.e+-]+) / 2\.5, \d+ steps", shown)]
    assert len(times) >= 3 and times == sorted(times) and 0 < times[-1] <= 2.5
    assert "%" not in shown
    # the bar is cleared when the solve ends, and the solution is untouched
    assert shown.endswith("\r")
    assert jnp.allclose(sol.ys[-1], jnp.exp(-2.5), rtol=1e-6)


def test_time_progress_meter_rejects_bad_refresh_steps():
    from lagrangian_nn._progress import TimeProgressMeter

    with pytest.raises(ValueError, match=r"`refresh_steps` must be a positive .* 0"):
        TimeProgressMeter(0.0, 1.0, refresh_steps=0)


def test_simulate_progress_in_a_log(capfd):
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics

    flow = dynamics.gradient_flow(lambda w: 0.5 * jnp.sum(w**2))
    lnn.simulate(flow, jnp.ones(2), t0=0.0, t1=1.0, progress=True)
    assert capfd.readouterr() == ("", "")


# --- Ctrl-C ------------------------------------------------------------------------


def _assert_interrupted(rc, err, out_dir):
    assert rc == 130
    assert err == "interrupted; nothing written for fake\n"
    assert list(out_dir.iterdir()) == []  # no partial folder, no result


def test_keyboard_interrupt_in_compute(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_MODE", "raise")
    out_dir = tmp_path / "o"
    # (a pytest-xdist worker starts with SIGINT ignored, not with Python's default)
    before = signal.getsignal(signal.SIGINT)
    rc = cli.main(["run", "fake", "--out", str(out_dir)])
    _assert_interrupted(rc, capsys.readouterr().err, out_dir)
    # the handlers are put back
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_exits_130_with_one_line(fake, tmp_path):
    out_dir = tmp_path / "o"
    proc = _launch(fake, ["run", "fake", "--out", str(out_dir)], "sigint")
    assert proc.stdout == "== fake\n"
    _assert_interrupted(proc.returncode, proc.stderr, out_dir)


def test_ctrl_c_while_xla_computes(fake, tmp_path):
    # The main thread waits inside XLA (a loop that never ends), where Python cannot
    # run its signal handler: the watcher thread reports and ends the process.
    out_dir = tmp_path / "o"
    proc = _launch(
        fake, ["run", "fake", "--out", str(out_dir)], "sigint-in-xla", timeout=60
    )
    _assert_interrupted(proc.returncode, proc.stderr, out_dir)


def test_ctrl_c_inside_a_jax_callback(fake, tmp_path):
    # The KeyboardInterrupt is raised inside the callback: JAX logs its traceback and
    # raises a runtime error of its own; neither reaches the user.
    out_dir = tmp_path / "o"
    proc = _launch(fake, ["run", "fake", "--out", str(out_dir)], "sigint-in-callback")
    _assert_interrupted(proc.returncode, proc.stderr, out_dir)


# --- permissions ---------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_output_permissions_follow_umask(fake, tmp_path, umask):
    old = os.umask(umask)
    try:
        assert cli.main(["run", "fake", "--out", str(tmp_path / "o")]) == 0
    finally:
        os.umask(old)
    folder = tmp_path / "o" / "fake"
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    for f in folder.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name


# --- draw ----------------------------------------------------------------------------


def test_draw_redraws_from_saved_files(fake, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "o"
    assert cli.main(["run", "fake", "--out", str(out_dir)]) == 0
    folder = out_dir / "fake"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert {"fake.png", "fake.pdf", "summary.txt"} <= set(before)
    for name in ("fake.png", "fake.pdf", "summary.txt"):
        (folder / name).unlink()
    (folder / "stale.png").write_bytes(b"a figure draw() no longer makes")
    capsys.readouterr()

    monkeypatch.setenv("FAKE_MODE", "no-compute")  # compute would raise
    assert cli.main(["draw", "fake", "--out", str(out_dir)]) == 0
    assert "fake.png" in capsys.readouterr().out
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert set(after) == set(before)  # and stale.png is gone
    for name in ("fake.png", "summary.txt", "results.json", "arrays.npz"):
        assert after[name] == before[name], name
    assert not list(out_dir.glob(".*"))


def test_draw_needs_a_finished_run(fake, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["draw", "fake", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert "No finished run of 'fake'" in err and "results.json" in err
    assert not (tmp_path / "o").exists()
