"""User-facing text speaks of the library alone.

The README, the docs pages, the notebooks, and the library's and experiments' source
(docstrings, messages, experiment output, figure captions) must not tell how or when
the project was worked on: no issue numbers, no sessions, no "this machine", no load
averages, no "today", no machine that was "lent". Measurements name their hardware
("2-core CPU", "H100") and are dated on the performance page only.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

PATTERN = re.compile(
    r"\bissues? ?#?\d+"  # issue 16, issue #18, issues 14
    r"|\bsessions?\b"
    r"|\bthis (?:machine|computer|cpu|gpu)\b"
    r"|\bload (?:average|\d)"  # load average, load 4 to 5
    r"|\bloaded (?:\d+-core|machine|cpu|gpu)"
    r"|\btoday\b"
    r"|\blent\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize(
    "text",
    [
        "as in issue 16",
        "(issue #18)",
        "Issue 18 (Kunin et al.)",
        "lent for one session",
        "in today's runs",
        "on this machine",
        "on this CPU",
        "the load average was 4",
        "(load 4 to 5)",
        "on the loaded 2-core machine",
        "no session has been lent an H100",
    ],
)
def test_pattern_finds_an_account_of_the_work(text):
    assert PATTERN.search(text)


@pytest.mark.parametrize(
    "text",
    [
        "equivalent to eq. 21",
        "np.load(path)",
        "files loaded from the official .npz files",
        "this issue of precision",
        "the machine epsilon",
        "a 2-core CPU, measured on 2026-11-27",
        "the library's issues tracker",
    ],
)
def test_pattern_spares_ordinary_text(text):
    assert not PATTERN.search(text)


def _hits(label, text):
    return [
        f"{label}:{n}: {line.strip()[:120]}"
        for n, line in enumerate(text.splitlines(), 1)
        if PATTERN.search(line)
    ]


def _report(hits):
    return "user-facing text tells how the project was worked on:\n" + "\n".join(hits)


def test_readme_and_docs():
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert len(paths) > 5
    hits = [
        hit
        for path in paths
        for hit in _hits(path.relative_to(ROOT), path.read_text(encoding="utf-8"))
    ]
    assert not hits, _report(hits)


def test_notebooks():
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert paths
    hits = []
    for path in paths:
        for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
            source = "".join(cell["source"])
            hits += _hits(f"{path.relative_to(ROOT)} cell {i}", source)
    assert not hits, _report(hits)


@pytest.mark.parametrize("package", ["lagrangian_nn", "experiments"])
def test_source(package):
    paths = sorted((ROOT / package).rglob("*.py"))
    assert paths
    hits = [
        hit
        for path in paths
        for hit in _hits(path.relative_to(ROOT), path.read_text(encoding="utf-8"))
    ]
    assert not hits, _report(hits)
