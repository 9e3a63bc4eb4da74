r"""Section 4.4, Table 3 and eq. 36: ReLU networks with biases.

Rescaling a neuron now scales its bias too: under GF
$\|W_h\|^2 + \|b_h\|^2 - \|W_{h+1}\|^2$ is constant for each hidden layer (eq. 36), and
summed over all layers, $\|W_1\|^2 - \|W_K\|^2 + \sum_{h<K}\|b_h\|^2$ is constant.
"""

from pathlib import Path

import numpy as np

from ._common import (
    DEFAULT_OUT,
    claim,
    control,
    enable_float64,
    figure_style,
    load,
    run_experiment,
    save_figure,
)
from ._homogeneous import run_gf_and_gd
from ._networks import data_config

NAME = "bias"
USES_DATA = True


def config_for(quick, seed, data="digits", data_dir=None):
    return {
        "seed": seed,
        **data_config(quick, data, data_dir),
        "hidden": [24, 24, 24] if quick else [200, 200, 200],
        "lr": 0.01,
        "gd_steps": 150 if quick else 1000,
        "n_save": 25 if quick else 60,
        "rtol": 1e-6,
        "atol": 1e-9,
    }


def compute(cfg):
    enable_float64()
    import jax.numpy as jnp

    from lagrangian_nn import nn

    K = len(cfg["hidden"]) + 1
    summed = lambda q: (
        jnp.sum(q.weights[0] ** 2)
        - jnp.sum(q.weights[-1] ** 2)
        + sum(jnp.sum(b**2) for b in q.biases[:-1])
    )
    acts = [nn.ReLU()] * (K - 1) + [nn.Identity()]
    _, _, arrays, metrics = run_gf_and_gd(
        cfg, acts, bias=True, layers=tuple(range(1, K)), extra={"summed": summed}
    )
    s = arrays["gf_summed"]
    W = arrays["gf_W"]
    change = float(np.max(np.abs(W[:, 0] - W[0, 0])))
    metrics["gf_summed_relative_drift"] = float(np.max(np.abs(s - s[0]))) / change
    # controls: the same laws with the biases left out
    nob = W[:, 0] - W[:, -1]
    metrics["gf_summed_without_biases_relative_drift"] = (
        float(np.max(np.abs(nob - nob[0]))) / change
    )
    for h in range(1, K):
        d = W[:, h - 1] - W[:, h]
        metrics[f"gf_C{h}_without_bias_relative_drift"] = (
            float(np.max(np.abs(d - d[0]))) / metrics[f"gf_W{h}_norm_change"]
        )
    # Bound: the solver's relative tolerance. A conserved quantity integrated at rtol
    # drifts, relative to how far the weights move, by about rtol at most (measured:
    # 3e-9 to 7e-8). The controls are small for the last hidden layer, whose bias
    # moves little (0.4% of Δ‖W_h‖² at full settings), so a looser bound such as 1e-4
    # would leave the control no room to miss by 100x.
    bound = cfg["rtol"]
    claims = [
        claim(
            f"GF layer {h}: (‖W_h‖² + ‖b_h‖² − ‖W_h+1‖²) drift / |Δ‖W_h‖²|",
            "eq. 36, Table 3",
            metrics[f"gf_C{h}_relative_drift"],
            bound,
            control=control(
                "bias left out: ‖W_h‖² − ‖W_h+1‖²",
                metrics[f"gf_C{h}_without_bias_relative_drift"],
            ),
        )
        for h in range(1, K)
    ]
    claims.append(
        claim(
            "GF: ‖W1‖² − ‖W_K‖² + Σ‖b_h‖², drift / |Δ‖W1‖²|",
            "eq. 36 summed",
            metrics["gf_summed_relative_drift"],
            bound,
            control=control(
                "biases left out: ‖W1‖² − ‖W_K‖²",
                metrics["gf_summed_without_biases_relative_drift"],
            ),
        )
    )
    claims.append(
        claim(
            "GD: corrected layer-1 quantity drift / |Δ‖W1‖²|",
            "exact GD accounting (ours)",
            metrics["gd_C1_corrected_drift"] / metrics["gf_W1_norm_change"],
            1e-10,
            control=control(
                "GD without the η² correction",
                metrics["gd_C1_raw_drift"] / metrics["gf_W1_norm_change"],
            ),
        )
    )
    return metrics, arrays, claims


def draw(folder: Path):
    plt = figure_style()
    res, a = load(folder)
    K = len(res["config"]["hidden"]) + 1
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    ts = a["gf_ts"]
    for h in range(1, K):
        axes[0].plot(ts, a["gf_W"][:, h - 1] - a["gf_W"][0, h - 1], label=f"Δ‖W{h}‖²")
        axes[0].plot(
            ts, a[f"gf_C{h}"] - a[f"gf_C{h}"][0], "--", label=f"Δ(eq. 36, layer {h})"
        )
    axes[0].set_xlabel("t")
    axes[0].legend(ncol=2)
    axes[0].set_title("GF: weights move, the laws do not")
    axes[1].plot(
        ts, a["gf_summed"] - a["gf_summed"][0], label="GF: Δ(‖W1‖² − ‖W_K‖² + Σ‖b‖²)"
    )
    axes[1].plot(a["gd_ts"], a["gd_summed"] - a["gd_summed"][0], ":", label="GD (raw)")
    axes[1].set_xlabel("t")
    axes[1].legend()
    axes[1].set_title("eq. 36 summed across layers")
    fig.tight_layout()
    save_figure(fig, folder, "bias")


def main(*, seed=0, quick=False, out=DEFAULT_OUT, data="digits", data_dir=None):
    return run_experiment(
        NAME,
        config=config_for(quick, seed, data, data_dir),
        compute=compute,
        draw=draw,
        out=out,
        quick=quick,
    )
