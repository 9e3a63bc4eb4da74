"""Shared machinery for experiments: configuration, atomic output, figures.

Every experiment computes first and draws second. `run_experiment` writes the results
(`results.json` with the exact configuration and the key numbers, `arrays.npz` with the
curves) into a hidden temporary folder, draws the figures from those saved files alone,
and only then moves the folder into place. An interrupted run leaves at most a
`.NAME.partial-*` folder, never a folder that looks complete.
"""

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_OUT = "outputs"


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
    }


def claim(name: str, paper: str, measured: float, bound: float, *, kind="<=") -> dict:
    """A paper's claim checked against a measured number."""
    ok = measured <= bound if kind == "<=" else measured >= bound
    return {
        "name": name,
        "paper": paper,
        "measured": float(measured),
        "bound": float(bound),
        "kind": kind,
        "holds": bool(ok),
    }


def run_experiment(
    name: str,
    *,
    config: dict,
    compute: Callable[[dict], tuple[dict, dict, list]],
    draw: Callable[[Path], None],
    out: str | os.PathLike = DEFAULT_OUT,
) -> dict:
    """Runs `compute(config) -> (metrics, arrays, claims)`, saves, then draws.

    Returns the results dictionary (also saved as `results.json`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out))
    try:
        start = time.perf_counter()
        metrics, arrays, claims = compute(config)
        elapsed = time.perf_counter() - start
        results = {
            "experiment": name,
            "config": _jsonable(config),
            "metrics": _jsonable(metrics),
            "claims": _jsonable(claims),
            "compute_seconds": elapsed,
            "versions": versions(),
        }
        np.savez(tmp / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        (tmp / "results.json").write_text(json.dumps(results, indent=2))
        draw(tmp)
        if final.exists():
            old = out / f".{name}.old-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return results


def load(folder: Path) -> tuple[dict, dict]:
    """Loads `results.json` and `arrays.npz` from an experiment folder."""
    folder = Path(folder)
    results = json.loads((folder / "results.json").read_text())
    with np.load(folder / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return results, arrays


def figure_style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 120,
            "savefig.dpi": 200,
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.labelsize": 9,
            "legend.fontsize": 8,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "lines.linewidth": 1.4,
        }
    )
    return plt


def save_figure(fig, folder: Path, stem: str):
    fig.savefig(folder / f"{stem}.png", bbox_inches="tight")
    fig.savefig(folder / f"{stem}.pdf", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def progress(iterable, desc: str, total: int | None = None):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)
