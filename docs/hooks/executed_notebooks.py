"""mkdocs hook: the tutorials are executed once per change, into a cache.

mkdocs-jupyter renders the tutorials with `execute: false`; this hook hands it executed
copies instead of the sources. Each tutorial is executed (nbclient, every cell, errors
fail the build) into a cache entry whose key is the hash of

- the notebook's own bytes,
- every `*.py` file of the `lagrangian_nn` package (path and bytes),
- the name and version of every installed distribution, and the Python version,
- the `JAX_*` and `XLA_*` environment variables,

so an entry is reused only when nothing that can change its outputs has changed: a
change to the library executes every tutorial again, and a stale page cannot hide a
failure. A failed execution leaves no entry. Tutorials that miss the cache are executed
concurrently, one kernel per core.

The cache lives in `$XDG_CACHE_HOME/lagrangian_nn/docs-notebooks` (by default
`~/.cache/...`), one folder per tutorial, holding only its newest entry. Delete it to
execute everything again.

A tutorial that is executed again mostly compiles the programs it compiled last time
(a change to the library leaves most of them as they were), so each tutorial's kernel
keeps JAX's persistent compilation cache in `.../lagrangian_nn/docs-jax-cache/<name>`:
an entry is found by the hash of the compiled program, the compiler options and the
JAX version, so a changed program is compiled afresh and only the compiling is saved,
never the executing. A folder over `_JAX_CACHE_BYTES` is emptied before its tutorial
runs, and an execution that fails or is interrupted empties it (a half-written entry
would make JAX warn in the notebook). A `JAX_COMPILATION_CACHE_DIR` that is already set
is left as it is.
"""

import asyncio
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import nbformat
from mkdocs.exceptions import PluginError
from mkdocs.plugins import get_plugin_logger
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

log = get_plugin_logger(__name__)

_PACKAGE = Path(__file__).resolve().parents[2] / "lagrangian_nn"
_PATTERN = "tutorials/*.ipynb"  # as mkdocs-jupyter's `include`
_CELL_TIMEOUT = 1800  # seconds for one cell
_JAX_CACHE_BYTES = 256 * 2**20  # one tutorial's compiled programs (a few MB in use)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colours of a traceback


def _cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "lagrangian_nn" / "docs-notebooks"


def _jax_cache(source: Path):
    """The JAX compilation cache folder of one tutorial, emptied when over its size."""
    folder = _cache_root().parent / "docs-jax-cache" / source.stem
    if folder.is_dir():
        used = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        if used > _JAX_CACHE_BYTES:
            shutil.rmtree(folder, ignore_errors=True)
    return folder


def _kernel_env(jax_cache: Path):
    env = dict(os.environ)
    if "JAX_COMPILATION_CACHE_DIR" not in env:
        env["JAX_COMPILATION_CACHE_DIR"] = str(jax_cache)
        # every program, however quickly compiled (the tests' fast compile settings
        # are inherited)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def _environment_digest():
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    dists = sorted(
        f"{d.metadata['Name']}=={d.version}"
        for d in metadata.distributions()
        if d.metadata["Name"]
    )
    h.update("\n".join(dists).encode())
    h.update(sys.version.encode())
    for key in sorted(os.environ):
        if key.startswith(("JAX_", "XLA_")):
            h.update(f"{key}={os.environ[key]}\0".encode())
    return h.hexdigest()


async def _execute(source: Path, target: Path, limit: asyncio.Semaphore):
    async with limit:
        nb = nbformat.read(source, as_version=4)
        client = NotebookClient(
            nb,
            timeout=_CELL_TIMEOUT,
            allow_errors=False,
            resources={"metadata": {"path": str(source.parent)}},
        )
        start = time.perf_counter()
        log.info(f"executing {source.name}")
        jax_cache = _jax_cache(source)
        try:
            await client.async_execute(env=_kernel_env(jax_cache))
        except BaseException as err:
            shutil.rmtree(jax_cache, ignore_errors=True)
            if isinstance(err, CellExecutionError):
                text = _ANSI.sub("", str(err))
                raise PluginError(
                    f"{source.name} failed when executed:\n{text}"
                ) from err
            raise
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=target.parent, suffix=".tmp", delete=False, encoding="utf-8"
        ) as tmp:
            nbformat.write(nb, tmp)
        os.replace(tmp.name, target)
        log.info(f"executed {source.name} in {time.perf_counter() - start:.0f} s")


async def _execute_all(jobs):
    limit = asyncio.Semaphore(max(1, os.cpu_count() or 1))
    tasks = [asyncio.ensure_future(_execute(s, t, limit)) for s, t in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def on_files(files, config):
    root = _cache_root()
    env = _environment_digest()
    jobs, entries = [], []
    for file in files:
        path = file.abs_src_path
        if path is None or not file.src_uri.endswith(".ipynb"):
            continue
        if not Path(file.src_uri).match(_PATTERN):
            continue
        source = Path(path).resolve()
        key = hashlib.sha256(source.read_bytes() + env.encode()).hexdigest()[:20]
        # The copy keeps the notebook's name in a folder named `tutorials`, so that
        # mkdocs-jupyter's `include` pattern still matches it.
        target = root / source.stem / key / "tutorials" / source.name
        if target.is_file():
            log.info(f"{source.name}: executed copy reused ({key})")
        else:
            jobs.append((source, target))
        entries.append((file, target))
    if jobs:
        # on a machine without matplotlib's font cache, the first import builds it
        # and says so on standard error: build it here, not inside a tutorial's output
        import matplotlib.font_manager  # noqa: F401

        asyncio.run(_execute_all(jobs))
    for file, target in entries:
        file.abs_src_path = str(target)
        for stale in target.parents[2].iterdir():
            if stale != target.parents[1]:
                shutil.rmtree(stale, ignore_errors=True)
    return files
