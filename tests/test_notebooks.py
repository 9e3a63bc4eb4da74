"""Fast checks of the tutorials; they are *executed* by the docs build.

`tests/test_docs.py` runs `mkdocs build --strict`, which executes every notebook with
mkdocs-jupyter (`execute: true`, `allow_errors: false`): a notebook that raises fails
that test. Running them here as well would double the suite's longest step, so these
tests only check what can be checked without a kernel: the notebooks parse, are stored
without outputs, compile, import only what exists, read like the rest of the code, and
label the axes of every plot.
"""

import ast
import importlib
import io
import tokenize
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_LINE = 88  # ruff's line length (pyproject.toml)


def _code_cells(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return [c for c in nb.cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


def test_notebooks_are_in_the_docs():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"tutorials/{path.name}" in nav, f"{path.name} is not in mkdocs.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path):
    for cell in _code_cells(path):
        assert not cell.outputs and cell.execution_count is None, (
            f"{path.name} is stored with outputs; strip them"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_compiles_and_imports_resolve(path):
    for i, cell in enumerate(_code_cells(path)):
        tree = compile(cell.source, f"{path.name}[{i}]", "exec", ast.PyCF_ONLY_AST)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
            elif isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        importlib.import_module(f"{node.module}.{alias.name}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_readable_style(path):
    for i, cell in enumerate(_code_cells(path)):
        for n, line in enumerate(cell.source.splitlines(), 1):
            assert len(line) <= MAX_LINE, (
                f"{path.name}, code cell {i}, line {n} has {len(line)} characters "
                f"(at most {MAX_LINE}): {line!r}"
            )
        tokens = tokenize.generate_tokens(io.StringIO(cell.source).readline)
        semicolons = [
            t.start[0] for t in tokens if t.type == tokenize.OP and t.string == ";"
        ]
        assert not semicolons, (
            f"{path.name}, code cell {i}: statements joined by ';' on lines {semicolons}"
        )


def _calls(source):
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            names.append(
                f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            )
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_plots_have_axis_labels(path):
    for i, cell in enumerate(_code_cells(path)):
        calls = _calls(cell.source)
        plots = sum(calls.count(f) for f in ("plot", "loglog", "semilogy", "scatter"))
        if not plots:
            continue
        for axis in ("x", "y") + (("z",) if "projection" in cell.source else ()):
            labels = calls.count(f"set_{axis}label") + calls.count(f"{axis}label")
            assert labels, f"{path.name}, code cell {i} plots with no {axis} label"
