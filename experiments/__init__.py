"""Reproducible experiments for lagrangian_nn.

Run `python -m experiments list` to see them and `python -m experiments run NAME` (or
`run all`) to run them. Each experiment is a module with `main(*, seed, quick, out)`.
"""

import importlib

EXPERIMENTS = {
    "rotational_orbits": "Section 6.1, Figures 3-6: orbits under rotation-symmetric data",
    "massless_limit": "Section 3: gradient flow as the massless limit of damped dynamics",
}


def get(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(
            f"Unknown experiment {name!r}; available: {', '.join(EXPERIMENTS)}."
        )
    return importlib.import_module(f"experiments.{name}")
