"""The progress bar of `simulate(progress=True)`: simulated time and steps, drawn only
where someone watches.

diffrax's `TqdmProgressMeter` shows the fraction of the time span as a percentage and
its rate ("6442.27%/s"), and draws on any standard error, so a log file collects
thousands of carriage-return bars. `TimeProgressMeter` shows `t = 3.2 / 10, 180 steps`
instead, and draws nothing unless standard error is a terminal or a Jupyter kernel.

A long computation that writes to a log names its stages instead: inside
`with stage("GF"):`, each solve with a `TimeProgressMeter` ends, when standard error is
not interactive, with one plain line `GF: t = 5 / 5, 1234 steps, 12.3 s` (its simulated
time, steps and wall time); `log_line` writes such a line for any other stage. On a
terminal the bars show the progress and these lines are not written.
"""

import contextlib
import sys
import threading
import time

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from ._custom_types import RealScalarLike


def stderr_is_interactive() -> bool:
    """Whether a progress bar on standard error would be seen as one: standard error is
    a terminal, or this is a Jupyter kernel. Not when it is a file or a pipe.

    **Returns:**

    `True` or `False`.
    """
    stream = sys.stderr
    try:
        if stream is not None and stream.isatty():
            return True
    except (AttributeError, ValueError):  # no `isatty`, or a closed stream
        return False
    if "ipykernel" in sys.modules:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        return type(shell).__name__ == "ZMQInteractiveShell"
    return False


# A solve shorter than `delay` seconds never shows a bar; a bar redraws at most every
# `mininterval` seconds.
_BAR_TIMING = dict(delay=0.5, mininterval=0.1)


class _Bars:
    """Host side: the open bars, by index. A solve whose standard error is not
    interactive gets an index with no bar, so its callbacks do nothing."""

    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0
        self.bars = {}
        self.label = None  # the stage named by `stage`, for the solves it opens
        self.logged = {}  # index -> (stage, start time) of the solves that log a line

    def open(self):
        with self.lock:
            self.count += 1
            if not stderr_is_interactive():
                if self.label is not None:
                    self.logged[self.count] = (self.label, time.perf_counter())
            else:
                from tqdm import tqdm

                self.bars[self.count] = tqdm(
                    total=1.0,
                    leave=False,  # cleared when the solve ends
                    **_BAR_TIMING,
                    bar_format="{desc} |{bar}| [{elapsed}<{remaining}]",
                    dynamic_ncols=True,
                )
            return np.array(self.count, dtype=np.int32)

    def update(self, idx, t, t0, t1, steps):
        with self.lock:
            # Under `vmap` the index may carry a spurious batch dimension, and the
            # scalars a leading dimension of size one.
            bar = self.bars.get(int(np.unique(idx).item()))
            if bar is None:  # not interactive, or already closed
                return idx
            t, t0, t1 = (float(np.asarray(x).reshape(-1)[0]) for x in (t, t0, t1))
            steps = int(np.asarray(steps).reshape(-1)[0])
            if np.isfinite(t) and np.isfinite(t1) and t1 != t0:
                bar.total = abs(t1 - t0)
                bar.set_description_str(
                    f"t = {t:.4g} / {t1:.4g}, {steps} steps", refresh=False
                )
                bar.update(min(abs(t - t0), bar.total) - bar.n)
            return idx

    def close(self, idx, t, t1, steps):
        with self.lock:
            key = int(np.unique(idx).item())
            bar = self.bars.pop(key, None)
            if bar is not None:
                bar.close()
            logged = self.logged.pop(key, None)
            if logged is not None:
                label, start = logged
                t, t1 = (float(np.asarray(x).reshape(-1)[0]) for x in (t, t1))
                steps = int(np.asarray(steps).reshape(-1)[0])
                log_line(
                    f"{label}: t = {t:.4g} / {t1:.4g}, {steps} steps, "
                    f"{time.perf_counter() - start:.1f} s"
                )


_bars = _Bars()


def log_line(text: str) -> None:
    """Writes `text` as one plain line on standard error when it is not interactive (a
    log file, a pipe); on a terminal or in a Jupyter kernel, nothing."""
    if not stderr_is_interactive():
        print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stage(label: str):
    """Names a stage of a computation for a log. Every solve with a `TimeProgressMeter`
    started inside the block ends with one plain line on standard error when it is not
    interactive: `label: t = 5 / 5, 1234 steps, 12.3 s` (the simulated time reached,
    the end of the span, the steps taken, the wall time). Wait for the solves inside
    the block (`jax.block_until_ready`): a solve still queued when the block ends
    starts under the next stage's name.

    **Arguments:**

    - `label`: the stage's name, a non-empty string.
    """
    if not (isinstance(label, str) and label.strip()):
        raise ValueError(f"`label` must be a non-empty string; got {label!r}.")
    with _bars.lock:
        previous, _bars.label = _bars.label, label
    try:
        yield
    finally:
        with _bars.lock:
            _bars.label = previous


class _State(eqx.Module):
    idx: jax.Array
    step: jax.Array
    t: jax.Array


def _unvmap_min(x):
    return -eqxi.unvmap_max(-x)


class TimeProgressMeter(diffrax.AbstractProgressMeter):
    """A diffrax progress meter that shows the simulated time and the number of steps,
    `t = 3.2 / 10, 180 steps`, with the elapsed and remaining wall time. It draws
    nothing when standard error is not a terminal (a log file, a pipe), so logs stay
    free of carriage-return bars. Under `vmap` it follows the slowest solve.

    **Arguments:**

    - `t0`, `t1`: the start and end of the solve, as passed to `diffeqsolve`.
    - `refresh_steps`: call back to the host every this many steps (each call back is
        a device-to-host round trip).
    """

    t0: RealScalarLike
    t1: RealScalarLike
    refresh_steps: int = eqx.field(static=True, default=20)

    def __check_init__(self):
        if not (isinstance(self.refresh_steps, int) and self.refresh_steps >= 1):
            raise ValueError(
                "`refresh_steps` must be a positive integer; "
                f"got {self.refresh_steps!r}."
            )

    def init(self) -> _State:
        idx = io_callback(_bars.open, jax.ShapeDtypeStruct((), jnp.int32))
        # the simulated time reached, for the line a logged stage ends with (a
        # strongly typed scalar, so the loop's carry keeps one type)
        t0 = _unvmap_min(jnp.asarray(self.t0))
        t = jnp.zeros((), jnp.result_type(t0, jnp.asarray(self.t1))) + t0
        return _State(idx=eqxi.nonbatchable(idx), step=jnp.array(0), t=t)

    def step(self, state: _State, progress) -> _State:
        t0 = _unvmap_min(jnp.asarray(self.t0))
        t1 = eqxi.unvmap_max(jnp.asarray(self.t1))
        t = t0 + _unvmap_min(progress) * (t1 - t0)
        steps = eqxi.unvmap_max(state.step)

        def _update(idx):
            # Returning the index threads the callbacks in order (and keeps them).
            return jax.pure_callback(
                _bars.update, idx, idx, t, t0, t1, steps, vmap_method="expand_dims"
            )

        idx = jax.lax.cond(
            eqxi.nonbatchable(steps % self.refresh_steps == 0),
            _update,
            lambda idx: idx,
            state.idx,
        )
        return _State(idx=idx, step=state.step + 1, t=t.astype(state.t.dtype))

    def close(self, state: _State):
        io_callback(
            _bars.close,
            None,
            eqxi.unvmap_max(state.idx),
            state.t,
            eqxi.unvmap_max(jnp.asarray(self.t1)),
            eqxi.unvmap_max(state.step),
        )
