"""The README's example runs and does what it says."""

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_example_runs_and_conserves_the_charge(capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    Q = namespace["Q"]
    assert abs(float(Q[0]) - 0.1**3 * 1.5) < 1e-15
    assert float(abs(Q.max() - Q.min()) / Q[0]) < 1e-7
