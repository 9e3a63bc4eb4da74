"""The documentation site builds with `mkdocs build --strict`.

This is the one place the tutorials execute: mkdocs-jupyter runs every notebook with
`execute: true` and `allow_errors: false`, so a notebook that raises fails the build,
and `--strict` fails it on a broken link, a missing figure, or an API reference
(mkdocstrings) that cannot be rendered. The tests then read the built site: every page
is there, the tutorials carry their executed outputs (one image per figure), and every
public name of the library has its API-reference anchor.
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import lagrangian_nn as lnn

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = [
    "index.html",
    "getting-started/index.html",
    "concepts/lagrangians/index.html",
    "concepts/euler-lagrange/index.html",
    "concepts/simulate/index.html",
    "concepts/noether/index.html",
    "concepts/dynamics/index.html",
    "concepts/nn/index.html",
    "concepts/optim/index.html",
    "concepts/symmetry/index.html",
    "reproducing/index.html",
    "claims/index.html",
    "symmetry_discovery_laws/index.html",
    "performance/index.html",
    "scaling/index.html",
]
# The Table-1 builders (DESIGN.md); `lnn.dynamics` also holds helpers that are not API.
DYNAMICS = [
    "general",
    "newtonian",
    "nesterov",
    "damped",
    "gradient_flow",
    "GradientFlow",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, (
        f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-12000:]}"
    )
    return out


def _read(site, page):
    path = site / page
    assert path.is_file(), f"the built site has no {page}"
    return path.read_text(encoding="utf-8")


def test_pages(site):
    for page in PAGES:
        html = _read(site, page)
        assert "<!-- readme:" not in html, f"{page}: a README section was not included"
        assert 'class="md-nav' in html, f"{page} has no navigation"


def _figures_made(path):
    """How many figures the notebook's code opens (each becomes one image)."""
    count = 0
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    count += node.func.attr in ("figure", "subplots")
    return count


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tutorial_rendered_with_outputs(site, path):
    html = _read(site, f"tutorials/{path.stem}/index.html")
    images = re.findall(r'<img[^>]+src="data:image/png;base64,', html)
    assert len(images) == _figures_made(path), (
        f"{path.name}: {len(images)} rendered images for {_figures_made(path)} figures"
    )
    code_cells = [
        c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
    ]
    prompts = re.findall(r'InputArea-prompt">In\s\[(\d*)\]:', html)
    assert prompts == [str(i) for i in range(1, len(code_cells) + 1)], (
        f"{path.name}: execution counts {prompts}, expected every cell executed in order"
    )
    stdout = re.findall(r'<div[^>]*data-mime-type="text/plain"', html)
    stderr = re.findall(
        r'<div[^>]*data-mime-type="application/vnd.jupyter.stderr"', html
    )
    assert stdout, f"{path.name}: no printed output"
    assert not stderr, f"{path.name} writes to stderr (a warning?) when executed"


def _public_names(module):
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and not isinstance(obj, type(lnn))
        and getattr(obj, "__module__", "").startswith("lagrangian_nn")
    ]


def test_api_reference(site):
    html = "".join(_read(site, page) for page in PAGES if page.startswith("concepts/"))
    expected = [f"lagrangian_nn.{n}" for n in _public_names(lnn)]
    expected += [f"lagrangian_nn.dynamics.{n}" for n in DYNAMICS]
    for module in (lnn.nn, lnn.optim, lnn.symmetry, lnn.data):
        expected += [f"{module.__name__}.{n}" for n in _public_names(module)]
    missing = [name for name in expected if f'id="{name}"' not in html]
    assert not missing, f"no API reference for {missing}"
    assert 'class="arithmatex"' in html, "the docstrings' math is not marked up"


def test_paper_figures(site):
    html = _read(site, "claims/index.html")
    figures = sorted(p.name for p in (ROOT / "docs" / "figures").glob("*.png"))
    assert figures
    for name in figures:
        assert f'src="../figures/{name}"' in html, f"claims page lacks {name}"
        assert (site / "figures" / name).is_file()
