"""The documentation site builds with `mkdocs build --strict`.

This is the one place the tutorials execute: docs/hooks/executed_notebooks.py runs
every notebook whose executed copy is not cached under the hash of the notebook, the
library's code and the installed packages, so a notebook that raises fails the build,
and `--strict` fails it on a broken link, a missing figure, or an API reference
(mkdocstrings) that cannot be rendered. The tests then read the built site: every page
is there, the tutorials carry their executed outputs (one image per figure), every
public name of the library has its API-reference anchor, and nothing is fetched from
the network (the math is typeset by a MathJax the site serves itself).
"""

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

import lagrangian_nn as lnn

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _nav_sources(nav=None):
    """The source of every page in mkdocs.yml's navigation, in order."""
    import yaml

    if nav is None:
        config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
        nav = config["nav"]
    out = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        out += _nav_sources(value) if isinstance(value, list) else [value]
    return out


def _built(source):
    """The built page of a source path: `a/b.md` -> `a/b/index.html`."""
    stem = source.rsplit(".", 1)[0]
    return "index.html" if stem == "index" else f"{stem}/index.html"


NAV = _nav_sources()
# every page of the site, the tutorials included
PAGES = [_built(source) for source in NAV]

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


def test_home_page_links_every_page():
    # the source, so this needs no build: every page of the navigation is linked from
    # the home page (the tutorials and the pages outside `concepts/` included)
    home = (ROOT / "docs" / "index.md").read_text()
    targets = set(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", home))
    unlinked = [source for source in NAV if source != "index.md"]
    unlinked = [source for source in unlinked if source not in targets]
    assert not unlinked, f"the home page does not link {unlinked}"


def test_api_reference(site):
    # every page, wherever its API reference lives (variational integrators and
    # counting laws have pages of their own)
    html = "".join(_read(site, page) for page in PAGES)
    expected = [f"lagrangian_nn.{n}" for n in _public_names(lnn)]
    expected += [f"lagrangian_nn.dynamics.{n}" for n in DYNAMICS]
    for module in (lnn.nn, lnn.optim, lnn.symmetry, lnn.data, lnn.variational):
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


# A resource the browser fetches by itself: a script, a stylesheet, a font, an image,
# an ES module. Hyperlinks (<a href>) are not fetched and may point anywhere.
_REMOTE_IN_HTML = re.compile(
    r"<(?:script|img|iframe|source)\b[^>]*\bsrc=[\"']?(?:https?:)?//"
    r"|<link\b[^>]*\bhref=[\"']?(?:https?:)?//"
    r"|\bimport\s*\(?\s*[\"'](?:https?:)?//",
    re.IGNORECASE,
)
_REMOTE_IN_CSS = re.compile(
    r"url\(\s*[\"']?(?:https?:)?//|@import\s+[\"'](?:https?:)?//", re.IGNORECASE
)


def test_remote_patterns():
    """The patterns find what a browser would fetch, and spare hyperlinks."""
    fetched = [
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js">',
        "<link rel=stylesheet href=//fonts.googleapis.com/css?family=Roboto>",
        '<link rel="preconnect" href="https://fonts.gstatic.com" crossorigin>',
        '<img alt="" src="http://example.org/a.png">',
        'const m = (await import("https://cdnjs.cloudflare.com/x.mjs")).default;',
    ]
    for html in fetched:
        assert _REMOTE_IN_HTML.search(html), html
    for css in [
        "src: url(https://fonts.gstatic.com/a.woff2)",
        '@import "//x.org/a.css";',
    ]:
        assert _REMOTE_IN_CSS.search(css), css
    spared = [
        '<a href="https://docs.kidger.site/diffrax/">diffrax</a>',
        '<script src="../javascripts/mathjax/tex-mml-chtml.js"></script>',
        '<link rel="stylesheet" href="../assets/stylesheets/main.css">',
        "Runs on https://example.org in <code>import jax</code>",
    ]
    for html in spared:
        assert not _REMOTE_IN_HTML.search(html), html
    assert not _REMOTE_IN_CSS.search("src: url(fonts/woff-v2/MathJax_Main.woff)")


def test_offline(site):
    """No page fetches anything from the network: not MathJax, not a font."""
    remote = []
    for path in sorted(site.rglob("*.html")):
        for match in _REMOTE_IN_HTML.finditer(path.read_text(encoding="utf-8")):
            remote.append(f"{path.relative_to(site)}: {match.group(0)}")
    for path in sorted(site.rglob("*.css")):
        for match in _REMOTE_IN_CSS.finditer(path.read_text(encoding="utf-8")):
            remote.append(f"{path.relative_to(site)}: {match.group(0)}")
    assert not remote, "resources fetched from the network:\n" + "\n".join(remote)


@pytest.mark.parametrize(
    "page",
    ["index.html", "concepts/noether/index.html"]
    + [f"tutorials/{p.stem}/index.html" for p in NOTEBOOKS],
)
def test_math_bundled(site, page):
    """Each page loads the site's own MathJax, and what it loads at run time is there."""
    html = _read(site, page)
    depth = page.count("/")
    bundle = "../" * depth + "javascripts/mathjax/tex-mml-chtml.js"
    assert f'<script src="{bundle}"></script>' in html, f"{page} does not load MathJax"
    assert "x-mathjax-config" not in html, f"{page} still has nbconvert's MathJax 2"
    mathjax = site / "javascripts" / "mathjax"
    assert (mathjax / "tex-mml-chtml.js").stat().st_size > 500_000
    # CommonHTML's fonts (its default fontURL is [mathjax]/output/chtml/fonts/woff-v2)
    # and the TeX extensions the bundle autoloads (\boldsymbol, \color, ...).
    for name in (
        "MathJax_Main-Regular",
        "MathJax_Math-Italic",
        "MathJax_Size1-Regular",
    ):
        assert (mathjax / "output/chtml/fonts/woff-v2" / f"{name}.woff").is_file()
    for name in ("boldsymbol", "color", "mathtools"):
        assert (mathjax / "input/tex/extensions" / f"{name}.js").is_file()
    # The page has math for MathJax to typeset: $...$ or arithmatex's \(...\).
    assert re.search(r'class="arithmatex"|\$[^$\s<][^$<]*\$', html), f"{page}: no math"


def _hook(name):
    path = ROOT / "docs" / "hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_docs_hook_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_cache(tmp_path, monkeypatch):
    """An executed tutorial is reused until the notebook or the library changes."""
    hook = _hook("executed_notebooks")
    package = tmp_path / "package"
    package.mkdir()
    (package / "core.py").write_text("X = 1\n")
    monkeypatch.setattr(hook, "_PACKAGE", package)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "docs" / "tutorials").mkdir(parents=True)
    source = tmp_path / "docs" / "tutorials" / "t.ipynb"
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}

    def build(code):
        cell = nbformat.v4.new_code_cell(code, id="cell")  # the same bytes
        nb = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": kernel})
        nbformat.write(nb, source)
        file = File("tutorials/t.ipynb", str(tmp_path / "docs"), str(tmp_path), True)
        hook.on_files(Files([file]), None)
        executed = Path(file.abs_src_path)
        # mkdocs-jupyter's `include: ["tutorials/*.ipynb"]` still matches the copy
        assert executed.match("tutorials/t.ipynb") and executed != source
        return executed, nbformat.read(executed, as_version=4).cells[0].outputs

    def entries():
        return sorted((tmp_path / "cache").rglob("*.ipynb"))

    first, outputs = build("print(6 * 7)")
    assert outputs[0]["text"] == "42\n"
    assert not nbformat.read(source, as_version=4).cells[0].outputs  # source untouched
    stamp = first.stat().st_mtime_ns
    again, _ = build("print(6 * 7)")
    assert again == first and first.stat().st_mtime_ns == stamp, "not reused"
    (package / "core.py").write_text("X = 2\n")  # the library changes
    second, outputs = build("print(6 * 7)")
    assert second != first and outputs[0]["text"] == "42\n"
    assert entries() == [second], "the stale entry is kept"
    third, outputs = build("print(6 * 8)")  # the notebook changes
    assert third != second and outputs[0]["text"] == "48\n"
    with pytest.raises(PluginError, match="ValueError: broken"):
        build("raise ValueError('broken')")
    assert entries() == [third], "a failed execution left an entry"


def test_guarantees_cite_tests_that_exist():
    # every promise on the guarantees page names the test that checks it; a renamed or
    # deleted test must not leave the page citing nothing
    text = (ROOT / "docs" / "guarantees.md").read_text()
    cited = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text))
    assert len(cited) > 20
    missing = []
    for path, name in sorted(cited):
        tree = ast.parse((ROOT / path).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if name not in defined:
            missing.append(f"{path}::{name}")
    assert not missing, missing
