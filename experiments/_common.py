"""Shared machinery for experiments: configuration, atomic output, figures.

Every experiment computes first and draws second. `run_experiment` writes the results
(`results.json` with the exact configuration and the key numbers, `arrays.npz` with the
curves) into a hidden temporary folder, draws the figures from those saved files alone,
and only then moves the folder into place. An interrupted run leaves at most a
`.NAME.partial-*` folder, never a folder that looks complete (and the command line
removes even that one). `redraw` draws a finished run's figures again from its saved
files. Folders get the usual permissions (`0o777` less the umask).
"""

import json
import os
import platform
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_OUT = "outputs"

# Less LLVM optimisation of the machine code XLA's CPU backend generates (XLA's own
# HLO passes are unchanged, and so are the results' precision and the certificates).
# An experiment whose time is mostly compiling many short-lived programs declares
# `COMPILE_BOUND = True`, and `python -m experiments run` then starts JAX with these
# flags (a flag the user set in `XLA_FLAGS` wins); the test suite uses them too.
FAST_COMPILE = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
)


def with_fast_compile(xla_flags: str) -> str:
    """`xla_flags` (the value of `XLA_FLAGS`) with `FAST_COMPILE` added, except the
    flags it already sets."""
    flags = xla_flags.split()
    given = {f.split("=")[0] for f in flags}
    return " ".join(flags + [f for f in FAST_COMPILE if f.split("=")[0] not in given])


def enable_float64():
    import jax

    jax.config.update("jax_enable_x64", True)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        arr = np.asarray(value)
        return arr.item() if arr.ndim == 0 else arr.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def versions() -> dict:
    import diffrax
    import equinox
    import jax

    import lagrangian_nn

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "diffrax": diffrax.__version__,
        "equinox": equinox.__version__,
        "lagrangian_nn": lagrangian_nn.__version__,
        "device": str(jax.devices()[0]),
        "float64": bool(jax.config.read("jax_enable_x64")),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


BASES = {
    "trajectory": "a law measured along a computed trajectory",
    "fit": "a scaling fitted over several runs",
    "count": "a count of laws or architectures",
    "pointwise": "checked at sampled states, not along a trajectory",
    "consequence": "follows from another claim; reported, not counted as evidence",
    "identity": "an exact algebraic identity, checked to rounding; reported, not "
    "counted as evidence",
}
# Bases that are reported but are no evidence for the paper's laws, and take no control.
NOT_EVIDENCE = ("consequence", "identity")
CONTROL_MARGIN = 100.0


def control(description: str, measured: float, *, margin: float = CONTROL_MARGIN):
    """A negative control for a claim: the same measurement along a trajectory of a
    system where the law must break (a loss without the symmetry, the wrong dynamics,
    data without the symmetry, a coarser integrator), never the same trajectory with
    a changed constant in the measured formula. `description` says which system and
    how large its break is. It must miss the claim's bound by the factor `margin` (100
    by default: two orders of magnitude; fitted slopes, which cannot miss by 100x,
    pass a smaller margin)."""
    if not margin > 1:
        raise ValueError(f"`margin` must be > 1; got {margin!r}.")
    return {"description": description, "measured": float(measured), "margin": margin}


def miss_factor(value: float, bound: float, kind: str) -> float:
    """By how much `value` misses `bound` on the wrong side: value/bound for a `<=`
    bound, bound/value for `>=` (inf for a nonzero value against a zero bound, 0 when
    it does not miss at all; NaN for a NaN value)."""
    value, bound = float(value), float(bound)
    if not np.isfinite(value):
        return float("nan")
    if kind == "<=":
        if bound > 0:
            return value / bound
        return float("inf") if value > 0 else 0.0
    if value > 0:
        return bound / value
    return float("inf") if bound > 0 else 0.0


def _misses(ctrl: dict, bound: float, kind: str) -> bool:
    value, margin = ctrl["measured"], ctrl["margin"]
    if not np.isfinite(value):
        return False  # a control that blew up is no evidence either way
    if kind == "<=":
        return value > margin * bound if bound > 0 else value > 0
    return value < bound / margin


def claim(
    name: str,
    paper: str,
    measured: float,
    bound: float,
    *,
    basis: str,
    kind="<=",
    control: dict | None = None,
) -> dict:
    """A paper's claim checked against a measured number.

    - `kind`: `"<="` or `">="` (how `measured` must compare with `bound`).
    - `basis` (required): how the number is obtained, one of `BASES`. Evidence (every
      basis except `"consequence"` and `"identity"`) needs a `control` (see `control`):
      the same measurement where the law must break, which must miss the bound by the
      control's margin. A claim holds only if its measurement meets the bound and its
      control misses it. Consequences and identities are reported (they must still
      meet their bound) but are no evidence, and take no control.
    """
    if kind not in ("<=", ">="):
        raise ValueError(f"`kind` must be '<=' or '>='; got {kind!r}.")
    if basis not in BASES:
        raise ValueError(f"`basis` must be one of {sorted(BASES)}; got {basis!r}.")
    evidence = basis not in NOT_EVIDENCE
    if evidence and control is None:
        raise ValueError(
            f"claim {name!r}: basis {basis!r} needs a negative control (`control=`); "
            f"only {' and '.join(map(repr, NOT_EVIDENCE))} may go without."
        )
    if not evidence and control is not None:
        raise ValueError(
            f"claim {name!r}: basis {basis!r} is no evidence and takes no control; "
            f"got control {control!r}."
        )
    measured = float(measured)
    ok = measured <= bound if kind == "<=" else measured >= bound
    ok = ok and bool(np.isfinite(measured))
    out = {
        "name": name,
        "paper": paper,
        "measured": measured,
        "bound": float(bound),
        "kind": kind,
        "basis": basis,
        "evidence": evidence,
    }
    if control is not None:
        missed = _misses(control, bound, kind)
        out["control"] = {
            **control,
            "missed": bool(missed),
            "miss_factor": miss_factor(control["measured"], bound, kind),
        }
        ok = ok and missed
    out["holds"] = bool(ok)
    return out


# The partial folders of the runs in progress. `commit_lock` is held while a partial
# folder becomes final, so an interrupt handler that must end the process from another
# thread (`remove_partial_folders`) never races a run that is being committed.
commit_lock = threading.Lock()
_partial_folders: set[Path] = set()


def _partial_folder(out: Path, name: str) -> Path:
    """A new, empty `.NAME.partial-*` folder in `out`, with the usual permissions
    (`tempfile.mkdtemp` would make it `drwx------`)."""
    out.mkdir(parents=True, exist_ok=True)
    while True:
        path = out / f".{name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()  # mode 0o777, less the umask
        except FileExistsError:
            continue
        with commit_lock:
            _partial_folders.add(path)
        return path


def _commit(tmp: Path, final: Path):
    """Moves the finished folder `tmp` into place as `final`, replacing an older one."""
    with commit_lock:
        _partial_folders.discard(tmp)
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            final.rename(old)
        try:
            tmp.rename(final)
        except BaseException:  # put the earlier run back
            if old is not None and not final.exists():
                old.rename(final)
            raise
        if old is not None:
            shutil.rmtree(old)


def _discard(tmp: Path):
    with commit_lock:
        _partial_folders.discard(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def remove_partial_folders():
    """Removes the partial folders of the runs in progress, for an interrupt handler
    about to end the process. The caller must hold `commit_lock` (and keep it until
    the process ends), so that no run is committed meanwhile."""
    for path in list(_partial_folders):
        shutil.rmtree(path, ignore_errors=True)
    _partial_folders.clear()


def run_experiment(
    name: str,
    *,
    config: dict,
    compute: Callable[[dict], tuple[dict, dict, list]],
    draw: Callable[[Path], None],
    out: str | os.PathLike = DEFAULT_OUT,
    quick: bool = False,
) -> dict:
    """Runs `compute(config) -> (metrics, arrays, claims)`, saves, then draws.

    `quick` is recorded in `results.json` (quick runs use small settings; the claims
    table marks them); a quick run's PNGs are drawn at the draft resolution
    (`_style.DRAFT_DPI`, half the published one), its PDFs as usual.

    Returns the results dictionary (also saved as `results.json`).
    """
    out = Path(out)
    tmp = _partial_folder(out, name)
    try:
        start = time.perf_counter()
        metrics, arrays, claims = compute(config)
        elapsed = time.perf_counter() - start
        results = {
            "experiment": name,
            "quick": bool(quick),
            "config": _jsonable(config),
            "metrics": _jsonable(metrics),
            "claims": _jsonable(claims),
            "compute_seconds": elapsed,
            "versions": versions(),
        }
        np.savez(tmp / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        (tmp / "results.json").write_text(json.dumps(results, indent=2))
        _draw(draw, tmp, quick)
        _commit(tmp, out / name)
    except BaseException:
        _discard(tmp)
        raise
    return results


def _draw(draw: Callable[[Path], None], folder: Path, quick: bool):
    """`draw(folder)`; a quick run's PNGs at the draft resolution (`_style.draft`)."""
    from . import _style

    with _style.draft(quick):
        draw(folder)


def run_module(module, *, seed=0, quick=False, out=DEFAULT_OUT, **options) -> dict:
    """Runs the experiment `module` and returns its results (see `run_experiment`).

    A module holds its computation, its claims and its figure: `NAME`,
    `config_for(quick, seed, **options) -> dict`, `compute(config) -> (metrics,
    arrays, claims)` and `draw(folder)`. The runner does the rest: it builds the
    configuration, computes, saves and draws (`run_experiment`). A module may define
    its own `main(*, seed, quick, out, **options)` instead; the runner then calls it.
    `options` (`data=`, `data_dir=` for the modules with `USES_DATA = True`) go to
    `config_for` (or `main`) unchanged. A module's optional `report(results)` prints
    what the run adds to its claims (a table, say) once the run is saved.
    """
    main = getattr(module, "main", None)
    if main is not None:
        return main(seed=seed, quick=quick, out=out, **options)
    missing = [
        f for f in ("NAME", "config_for", "compute", "draw") if not hasattr(module, f)
    ]
    if missing:
        raise TypeError(
            f"experiment module {module.__name__!r} defines neither `main` nor "
            f"{', '.join(f'`{f}`' for f in missing)}."
        )
    results = run_experiment(
        module.NAME,
        config=module.config_for(quick, seed, **options),
        compute=module.compute,
        draw=module.draw,
        out=out,
        quick=quick,
    )
    report = getattr(module, "report", None)
    if report is not None:
        report(results)
    return results


SAVED = ("results.json", "arrays.npz")


def redraw(
    name: str, draw: Callable[[Path], None], out: str | os.PathLike = DEFAULT_OUT
) -> Path:
    """Draws the figures of the finished run `out/NAME` again, from its saved
    `results.json` and `arrays.npz` alone (no recomputation). The new folder holds
    those two files and what `draw` writes, and replaces the old one only once `draw`
    has finished, so figures that `draw` no longer makes do not linger. A quick run's
    PNGs are drawn at the draft resolution again.

    Returns the run's folder.
    """
    out = Path(out)
    final = out / name
    missing = [f for f in SAVED if not (final / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"No finished run of {name!r} in {str(out)!r}: {final} lacks "
            f"{' and '.join(missing)}. Run `python -m experiments run {name}` first."
        )
    tmp = _partial_folder(out, name)
    try:
        for f in SAVED:
            shutil.copyfile(final / f, tmp / f)
        quick = json.loads((tmp / "results.json").read_text()).get("quick", False)
        _draw(draw, tmp, bool(quick))
        _commit(tmp, final)
    except BaseException:
        _discard(tmp)
        raise
    return final


def load(folder: Path) -> tuple[dict, dict]:
    """Loads `results.json` and `arrays.npz` from an experiment folder."""
    folder = Path(folder)
    results = json.loads((folder / "results.json").read_text())
    with np.load(folder / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return results, arrays


def figure(folder: Path):
    """What a `draw` starts with: `(st, plt, results, arrays)`, the figure style
    module `experiments._style`, pyplot set up in that style, and the run's saved
    `results.json` and `arrays.npz` (`load`)."""
    from . import _style as st

    plt = st.use()
    return (st, plt, *load(folder))


def stage(label: str, run: Callable):
    """`run()`, as a named stage of an experiment, waited for. In a log (standard error
    not a terminal) each solve of `simulate(progress=True)` inside it ends with one
    plain line, `label: t = 5 / 5, 1234 steps, 12.3 s`; on a terminal its progress bar
    shows instead."""
    import jax

    from lagrangian_nn.progress import stage as named

    with named(label):
        return jax.block_until_ready(run())


def log(text: str):
    """Writes `text` as one plain line on standard error in a log (not on a
    terminal, where the progress bars show): the end of a stage that runs no solve."""
    from lagrangian_nn.progress import log_line

    log_line(text)


def progress(iterable, desc: str, total: int | None = None):
    """`iterable`, with a bar counting its items (`desc: 2/5`) when standard error is a
    terminal; in a log (a file, a pipe) just `iterable`, so logs get no bars."""
    from lagrangian_nn.progress import stderr_is_interactive

    if not stderr_is_interactive():
        return iterable
    from tqdm import tqdm

    return tqdm(
        iterable,
        desc=desc,
        total=total,
        leave=False,
        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining}]",
    )
