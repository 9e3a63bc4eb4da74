"""The README's example runs and does what it says; the README is a short front door
whose commands, example and links agree with the rest of the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"


def _first_python_block(path):
    return re.search(r"```python\n(.*?)```", path.read_text(), re.S).group(1)


def test_readme_example_runs_and_conserves_the_charge(capsys):
    code = _first_python_block(README)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    Q = namespace["Q"]
    assert abs(float(Q[0]) - 0.1**3 * 1.5) < 1e-15
    assert float(abs(Q.max() - Q.min()) / Q[0]) < 1e-7


def test_getting_started_shows_the_same_example():
    assert _first_python_block(GETTING_STARTED) == _first_python_block(README)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [
        line for line in ci if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert len(commands) == 1, f".ci/run should run one command, runs {commands}"
    assert commands[0] in README.read_text().splitlines(), (
        f".ci/run runs {commands[0]!r}, which is not a line of the README"
    )


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    lines = text.count("\n")
    assert lines <= 200, f"README.md has {lines} lines; it should be at most about 200"
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
