"""mkdocs hook: the site renders its math with no network access.

MathJax 3 is copied into the site from the Python package `django-static-mathjax`
(the `docs` extra installs it; it ships MathJax's `es5` distribution and needs no
Django), so the pages load `javascripts/mathjax/tex-mml-chtml.js` and its fonts from
the site itself. Only what that one bundle loads is copied: the TeX extensions it
autoloads, the CommonHTML fonts, the menu and its accessibility components.

The notebook pages (mkdocs-jupyter) carry nbconvert's MathJax 2 loader, pointing at a
CDN (or, with no URL configured, at nothing), and a Mermaid loader that imports from a
CDN. The notebooks' math is typeset by the site's MathJax (docs/javascripts/mathjax.js
searches the whole page) and they hold no Mermaid diagrams, so both loaders are taken
out of those pages. A page that still references a script, stylesheet or font over
http(s) is caught by tests/test_docs.py.
"""

import re
from importlib import resources
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

# Where the bundle lands in the site; mkdocs.yml's extra_javascript names
# `javascripts/mathjax/tex-mml-chtml.js`.
_DEST = "javascripts/mathjax"
# The one combined bundle, and the folders it loads components from at run time.
_BUNDLE = "tex-mml-chtml.js"
_COMPONENT_DIRS = (
    "input/tex/extensions",
    "output/chtml/fonts/woff-v2",
    "ui",
    "a11y",
    "sre",
    "adaptors",
)
_NBCONVERT_MATHJAX = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.DOTALL
)
_NBCONVERT_MERMAID = re.compile(
    r'<script type="module">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>'
    r"\s*(?:<!-- End of mermaid configuration -->)?",
    re.DOTALL,
)


def _es5():
    try:
        root = resources.files("mathjax") / "static" / "mathjax" / "es5"
    except ModuleNotFoundError:
        root = None
    if root is None or not (root / _BUNDLE).is_file():
        raise PluginError(
            "MathJax is not installed: the docs need the package django-static-mathjax "
            "(pip install -e '.[docs]')"
        )
    return Path(str(root))


def on_files(files, config):
    es5 = _es5()
    sources = [es5 / _BUNDLE]
    for folder in _COMPONENT_DIRS:
        sources += sorted(p for p in (es5 / folder).rglob("*") if p.is_file())
    for path in sources:
        src_uri = f"{_DEST}/{path.relative_to(es5).as_posix()}"
        files.append(File.generated(config, src_uri, abs_src_path=str(path)))
    return files


def on_page_content(html, page, config, files):
    if not page.file.src_uri.endswith(".ipynb"):
        return html
    html = _NBCONVERT_MATHJAX.sub("", html)
    return _NBCONVERT_MERMAID.sub("", html)
