"""Command-line interface: `python -m experiments {list,run,draw,table} ...`."""

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time

INTERRUPTED = 130  # the exit status of a process ended by Ctrl-C (128 + SIGINT)


def _interrupted_while_loading(signum, frame):
    """Ctrl-C while the modules load (NumPy, JAX): nothing is written yet, so one line
    and status 130 at once, not a traceback from inside an import."""
    print("interrupted", file=sys.stderr, flush=True)
    os._exit(INTERRUPTED)


if __name__ == "__main__":  # `python -m experiments`: from here until `main` runs
    signal.signal(signal.SIGINT, _interrupted_while_loading)

from . import EXPERIMENTS, _common, get, in_all  # noqa: E402
from ._common import DEFAULT_OUT  # noqa: E402


class _DropInterruptLogs(logging.Filter):
    """JAX logs a traceback ("jax.io_callback failed") when a KeyboardInterrupt lands
    inside a host callback; the interrupt is reported in one line instead."""

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, KeyboardInterrupt)


class _Interrupts:
    """Ctrl-C during `run` or `draw`: one line on standard error, no partial folder
    left, exit status 130, no traceback.

    The main thread gets the KeyboardInterrupt and reports it (`report`). But Python
    runs signal handlers only between bytecodes of the main thread, so while it waits
    in XLA (compiling, or a long solve) the interrupt would wait too, for minutes. A
    watcher thread, woken through `signal.set_wakeup_fd` the moment SIGINT arrives,
    gives the main thread `grace` seconds; if it has not reported by then, the watcher
    removes the partial folders, reports, and ends the process itself.
    """

    def __init__(self, grace: float = 1.5):
        self.grace = grace
        self.current = None  # the experiment in progress
        self.seen = threading.Event()
        self.done = threading.Event()
        self.lock = threading.Lock()
        self._previous_unraisable = sys.unraisablehook

    def message(self) -> str:
        if self.current is None:
            return "interrupted"
        return f"interrupted; nothing written for {self.current}"

    def report(self) -> int:
        """Prints the one line (once, whichever thread comes first); returns 130."""
        with self.lock:
            if not self.done.is_set():
                self.done.set()
                sys.stdout.flush()
                print(self.message(), file=sys.stderr, flush=True)
        return INTERRUPTED

    def is_interrupt(self, error: BaseException) -> bool:
        """Whether `error` is, or came from, Ctrl-C (a KeyboardInterrupt raised inside
        a JAX callback reaches us as a JAX runtime error)."""
        return isinstance(error, KeyboardInterrupt) or self.seen.is_set()

    def _unraisable(self, unraisable):
        """`sys.unraisablehook` while installed: a KeyboardInterrupt raised where Python
        cannot propagate it (in JAX's garbage-collection callback, say, when Ctrl-C
        comes while the first computations are set up) is dropped silently, not
        printed as "Exception ignored in ..." with a traceback: the watcher thread has
        seen the signal and ends the run with the one line. Anything else goes to the
        previous hook."""
        if isinstance(unraisable.exc_value, KeyboardInterrupt) or (
            unraisable.exc_type is not None
            and issubclass(unraisable.exc_type, KeyboardInterrupt)
        ):
            self.seen.set()
            return
        self._previous_unraisable(unraisable)

    def _on_sigint(self, signum, frame):
        if self.seen.is_set():
            return  # already stopping: a second Ctrl-C must not break the cleanup
        self.seen.set()
        raise KeyboardInterrupt

    def _watch(self, fd: int):
        while True:
            try:
                data = os.read(fd, 64)
            except OSError:
                return
            if not data:  # `uninstall` closed the pipe
                return
            if signal.SIGINT not in data or self.done.wait(self.grace):
                continue
            # The main thread is stuck outside Python: finish here.
            _common.commit_lock.acquire()  # held until the process ends
            _common.remove_partial_folders()
            self.report()
            os._exit(INTERRUPTED)

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals can only be handled in the main thread
            return
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self._previous_unraisable = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        log_filter = _DropInterruptLogs()
        jax_log = logging.getLogger("jax._src.callback")
        jax_log.addFilter(log_filter)
        watcher = threading.Thread(
            target=self._watch, args=(read_fd,), name="interrupts", daemon=True
        )
        watcher.start()
        try:
            yield self
        finally:
            signal.set_wakeup_fd(old_fd)
            signal.signal(signal.SIGINT, old_handler)
            sys.unraisablehook = self._previous_unraisable
            jax_log.removeFilter(log_filter)
            os.close(write_fd)
            watcher.join(timeout=1.0)
            os.close(read_fd)


def _factor(x) -> str:
    x = float(x)
    if x == float("inf"):
        return "∞"
    return f"{x:.3g}x"


def _control_text(c) -> str:
    ctrl = c.get("control")
    if ctrl is None:
        if c.get("basis") in ("consequence", "identity"):
            return " (not counted as evidence)"
        return ""
    return (
        f" | control ({ctrl['description']}): {float(ctrl['measured']):.3g}, "
        f"{_miss_text(ctrl)} (needs {ctrl['margin']:g}x)"
    )


def _miss_text(ctrl) -> str:
    """The measured miss factor of a control, as words: "misses by 3.2e+08x", or
    "misses by only 50x" / "DOES NOT miss" where it falls short of its margin."""
    factor = ctrl.get("miss_factor")
    if factor is None:  # results written before miss factors were recorded
        return "misses" if ctrl["missed"] else "DOES NOT miss"
    if ctrl["missed"]:
        return f"misses by {_factor(factor)}"
    if float(factor) > 1:
        return f"misses by only {_factor(factor)}"
    return "DOES NOT miss"


def _print_claims(results):
    for c in results.get("claims", []):
        mark = "ok " if c["holds"] else "FAIL"
        op = "<=" if c["kind"] == "<=" else ">="
        print(
            f"  [{mark}] {c['name']}: {float(c['measured']):.3g} {op} {c['bound']:.3g}"
            f" [{c.get('basis', '?')}]{_control_text(c)}"
        )


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def finished_runs(out) -> list[str]:
    """The experiments with a finished run (a `results.json`) in the folder `out`."""
    from pathlib import Path

    return [n for n in EXPERIMENTS if (Path(out) / n / "results.json").is_file()]


def claims_table(out) -> str:
    """A Markdown table "paper's claim → measured number → negative control" from
    saved results. Runs made with `--quick` are marked, and so are claims that are no
    evidence (basis `consequence` or `identity`, no control). The control column gives
    the control's value and by what factor it misses the bound."""
    import json
    from pathlib import Path

    lines = [
        "| experiment | paper | claim | basis | measured | bound | negative control "
        "(must miss the bound) | control value | holds |",
        "| --- | --- | --- | --- | ---: | ---: | --- | ---: | :-: |",
    ]
    quick = []
    for name in EXPERIMENTS:
        path = Path(out) / name / "results.json"
        if not path.exists():
            continue
        results = json.loads(path.read_text())
        label = f"`{name}`"
        if results.get("quick"):
            label += " (quick)"
            quick.append(name)
        for c in results["claims"]:
            op = "≤" if c["kind"] == "<=" else "≥"
            ctrl = c.get("control")
            if ctrl is None:
                kind = (
                    "an identity" if c.get("basis") == "identity" else "a consequence"
                )
                ctrl_text, ctrl_value = f"none ({kind}; not evidence)", ""
            else:
                ctrl_text = _cell(ctrl["description"])
                ctrl_value = f"{ctrl['measured']:.3g} ({_miss_text(ctrl)})"
                if not ctrl["missed"]:
                    ctrl_value = (
                        f"{ctrl['measured']:.3g} (**{_miss_text(ctrl)}; needs "
                        f"{ctrl['margin']:g}x**)"
                    )
            lines.append(
                f"| {label} | {_cell(c['paper'])} | {_cell(c['name'])} | "
                f"{c.get('basis', '?')} | {c['measured']:.3g} | {op} {c['bound']:.3g} | "
                f"{ctrl_text} | {ctrl_value} | {'yes' if c['holds'] else '**no**'} |"
            )
    if quick:
        lines.append("")
        lines.append(
            "Quick runs (small settings, not the paper's): "
            + ", ".join(f"`{n}`" for n in quick)
            + "."
        )
    return "\n".join(lines)


def _run(args, parser, interrupts: _Interrupts) -> int:
    names = in_all() if args.name == "all" else [args.name]
    failed = []
    for name in names:
        interrupts.current = name
        module = get(name)
        start = time.perf_counter()
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        kwargs = dict(seed=args.seed, quick=args.quick, out=args.out)
        if getattr(module, "USES_DATA", False):
            if args.data == "kmnist" and args.data_dir is None:
                parser.error(
                    "`--data kmnist` needs `--data-dir DIR` (the folder with the "
                    "official kmnist-*.npz files)."
                )
            kwargs.update(data=args.data, data_dir=args.data_dir)
        results = _common.run_module(module, **kwargs)
        interrupts.current = None  # written
        print(f"   done in {time.perf_counter() - start:.1f} s -> {args.out}/{name}")
        _print_claims(results)
        sys.stdout.flush()  # before the next experiment's stage lines on stderr
        if not all(c["holds"] for c in results.get("claims", [])):
            failed.append(name)
    if failed:
        print(f"claims not reproduced in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _draw(args, parser, interrupts: _Interrupts) -> int:
    from pathlib import Path

    if args.name == "all":
        names = [n for n in EXPERIMENTS if (Path(args.out) / n).is_dir()]
        if not names:
            parser.error(f"no finished runs in {args.out!r} to draw.")
    else:
        names = [args.name]
    for name in names:
        interrupts.current = name
        module = get(name)
        try:
            folder = _common.redraw(name, module.draw, args.out)
        except FileNotFoundError as e:
            parser.error(str(e))
        interrupts.current = None
        drawn = sorted(p.name for p in folder.iterdir() if p.name not in _common.SAVED)
        print(f"{name}: {', '.join(drawn)} -> {folder}", flush=True)
    return 0


def _load(names):
    """Imports the experiments and JAX and starts its backend, before the Ctrl-C
    handler of a run is installed. Under `python -m experiments` a Ctrl-C meanwhile
    ends the process at once (`_interrupted_while_loading`): a KeyboardInterrupt
    raised while JAX initialises can crash the interpreter instead of unwinding.
    When every experiment named is compile-bound (`COMPILE_BOUND`), the backend
    starts with `_common.FAST_COMPILE` (for `attention_counts`, measured: 4 min instead
    of 52)."""
    modules = [get(name) for name in names]
    if all(getattr(m, "COMPILE_BOUND", False) for m in modules):
        os.environ["XLA_FLAGS"] = _common.with_fast_compile(
            os.environ.get("XLA_FLAGS", "")
        )
    import jax

    jax.devices()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser("run", help="run one experiment, or `all`")
    run.add_argument("name", help="experiment name, or `all`")
    run.add_argument("--quick", action="store_true", help="small, fast settings")
    run.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--data",
        choices=["digits", "kmnist"],
        default="digits",
        help="dataset of the network experiments (default: offline digits)",
    )
    run.add_argument(
        "--data-dir", default=None, help="folder with the KMNIST .npz files"
    )
    draw = sub.add_parser(
        "draw",
        help="draw the figures of finished runs again from their saved "
        "results.json and arrays.npz (no recomputation)",
    )
    draw.add_argument("name", help="experiment name, or `all` (every finished run)")
    draw.add_argument("--out", default=DEFAULT_OUT, help="output folder of the runs")
    table = sub.add_parser(
        "table", help="print the claims of finished runs as Markdown"
    )
    table.add_argument("--out", default=DEFAULT_OUT, help="output folder of the runs")
    args = parser.parse_args(argv)

    if args.command == "table":
        if not finished_runs(args.out):
            print(
                f"no finished runs in {args.out!r}: nothing to tabulate. Run "
                "`python -m experiments run NAME` (or `run all`) first, or pass the "
                "folder of the runs with `--out`.",
                file=sys.stderr,
            )
            return 1
        print(claims_table(args.out))
        return 0
    if args.command == "list":
        for name, text in EXPERIMENTS.items():
            note = "" if name in in_all() else " (run by name; not part of `run all`)"
            print(f"{name:24s} {text}{note}")
        return 0
    if args.name != "all" and args.name not in EXPERIMENTS:
        try:
            get(args.name)
        except ValueError as e:
            parser.error(str(e))
    command = _run if args.command == "run" else _draw
    _load(in_all() if args.name == "all" else [args.name])
    interrupts = _Interrupts()
    with interrupts.installed():
        try:
            return command(args, parser, interrupts)
        except (KeyboardInterrupt, Exception) as e:
            if not interrupts.is_interrupt(e):
                raise
            return interrupts.report()


def entry_point(argv=None):
    """`main`, then exit with its status. Ctrl-C before `main` has installed its
    handler (while the arguments are read) is one line and status 130 too."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupted_while_loading)
    try:
        status = main(argv)
    except KeyboardInterrupt:
        sys.stdout.flush()
        print("interrupted", file=sys.stderr, flush=True)
        status = INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`python -m experiments table | head`): no traceback;
        # the rest of the output goes nowhere (as the Python documentation advises)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    if status == INTERRUPTED:
        # Skip the interpreter's shutdown: an abandoned XLA computation may still be
        # running, and its host callbacks into a finalizing interpreter crash it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    entry_point()
