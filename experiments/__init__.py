"""Reproducible experiments for lagrangian_nn.

Run `python -m experiments list` to see them and `python -m experiments run NAME` (or
`run all`) to run them, or `experiments.run(NAME, quick=True)` from Python. Each
experiment is a module holding its computation, claims and figure (`NAME`,
`config_for`, `compute`, `draw`); one runner (`_common.run_module`) builds its
configuration, computes, saves and draws. A module may still define its own
`main(*, seed, quick, out)`, which the runner then calls.
"""

import importlib

EXPERIMENTS = {
    "rotational_orbits": "Section 6.1, Figures 3-6: orbits under rotation-symmetric data",
    "massless_limit": "Section 3: gradient flow as the massless limit of damped dynamics",
    "relu_balance": "Section 4.1, Figure 1: ReLU layers stay balanced (GF, ND, NAGF)",
    "repu_chain": "Section 4.2, Figure 2: RePU(2) chain, W2 against W4 with factor p^k = 4",
    "swish_beta": "Section 4.3, Table 2 Swish row and eq. 37: trainable per-neuron beta",
    "bias": "Section 4.4, Table 3 and eq. 36 summed across layers: ReLU with biases",
    "linear_balance": "Section 5, Table 4: deep linear networks, eqs. 42-43",
    "data_symmetry": "Section 6, Table 5: rotation-invariant data, eqs. 47-48",
    "ntk_width": "Section 7, eqs. 49-51: ND velocities and displacements against width",
    "discrete_vs_continuous": "GD/ND/NAGD against their flows, and the exact discrete laws",
    "symmetry_discovery": "Discover the symmetries and print the conservation laws (Tables 2-3)",
    "conservation_counts": "Count every conservation law (GF, ND, heavy ball, NAGF), Marcotte et al.",
    "variational_vs_rk": "Variational integrators vs Tsit5: bounded energy, exact discrete charges",
    "neural_mechanics": "Kunin et al.: exact charge laws of SGD chains (decay, momentum, batches)",
    "attention_counts": "Count every conservation law of attention heads and blocks (GF, momentum flows)",
    "transformer_charges": "A transformer's catalogue charges under GF, SGD (exact laws) and AdamW",
    "convnet_charges": "A CNN's catalogue charges under GF, SGD (exact laws) and AdamW",
}


# Run by name only, not by `run all`, which reproduces the paper's figures: these go
# beyond the paper. `conservation_counts` reproduces the counts of Marcotte, Gribonval &
# Peyré (four sweeps, about 45 minutes on a 2-core CPU); `attention_counts` counts the
# laws of attention; `transformer_charges` and `convnet_charges` follow the catalogue's
# charges on the architectures people train. docs/claims.md and docs/reproducing.md say
# the same (tests/test_ux.py checks that they agree).
NOT_IN_ALL = frozenset(
    {
        "conservation_counts",
        "attention_counts",
        "transformer_charges",
        "convnet_charges",
    }
)


def in_all() -> list[str]:
    """The experiments that `python -m experiments run all` runs, in order."""
    return [name for name in EXPERIMENTS if name not in NOT_IN_ALL]


def get(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(
            f"Unknown experiment {name!r}; available: {', '.join(EXPERIMENTS)}."
        )
    return importlib.import_module(f"experiments.{name}")


def run(name: str, *, seed: int = 0, quick: bool = False, out=None, **options) -> dict:
    """Runs the experiment `name` (`quick`: small, fast settings) into the folder
    `out` (default `outputs`) and returns its results. `options` (`data=`,
    `data_dir=`) go to the experiments that use the network datasets."""
    from . import _common

    if out is None:
        out = _common.DEFAULT_OUT
    return _common.run_module(get(name), seed=seed, quick=quick, out=out, **options)
