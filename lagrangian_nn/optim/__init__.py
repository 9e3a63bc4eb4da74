"""Discrete optimisers as optax transforms, and exact discrete charge tracking."""

from ._run import RunResult as RunResult, Step as Step, run as run
from ._transforms import gd as gd, nesterov as nesterov, newtonian as newtonian
