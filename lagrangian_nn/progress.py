"""Progress reporting for long computations: bars where someone watches, plain lines in
a log.

- `TimeProgressMeter(t0, t1)`: a diffrax progress meter that shows the simulated time
  and steps, `t = 3.2 / 10, 180 steps` (what `lnn.simulate(..., progress=True)`
  uses). It draws nothing unless standard error is a terminal or a Jupyter kernel.
- `stage(label)`: a context manager naming a stage of a computation. Each solve with a
  `TimeProgressMeter` started inside it ends, when standard error is not interactive
  (a log file, a pipe), with one plain line `label: t = 5 / 5, 1234 steps, 12.3 s`.
- `log_line(text)`: writes such a line for any other stage (nothing on a terminal,
  where the bars show).
- `stderr_is_interactive()`: whether a bar on standard error would be seen as one.

```python
from lagrangian_nn import progress

with progress.stage("GF"):
    traj = lnn.simulate(system, q0, t0=0.0, t1=5.0, progress=True)
    jax.block_until_ready(traj)
progress.log_line("GD: 7000 steps")
```
"""

from ._progress import (
    TimeProgressMeter as TimeProgressMeter,
    log_line as log_line,
    stage as stage,
    stderr_is_interactive as stderr_is_interactive,
)

__all__ = ["TimeProgressMeter", "log_line", "stage", "stderr_is_interactive"]
