r"""Section 4.2, Figure 2: a chain of $p$-homogeneous layers.

With $\sigma_2 = \sigma_3 = \mathrm{RePU}(2)$, the GF laws $\|W_2\|^2 - 2\|W_3\|^2$ and
$\|W_3\|^2 - 2\|W_4\|^2$ (Table 2) combine into
$\|W_2(0)\|^2 - \|W_2(t)\|^2 = p^k\,(\|W_4(0)\|^2 - \|W_4(t)\|^2)$ with $p^k = 4$: the
deeper layer moves four times less. Architecture $d_0$-200-200-200-200-10 with
activations ReLU, RePU(2), RePU(2), ReLU, NLL loss, 1,000 samples, learning rate 0.01.
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

NAME = "repu_chain"
USES_DATA = True


def config_for(quick, seed, data="digits", data_dir=None):
    return {
        "seed": seed,
        **data_config(quick, data, data_dir),
        "hidden": [24, 24, 24, 24] if quick else [200, 200, 200, 200],
        "activations": ["ReLU", "RePU(2)", "RePU(2)", "ReLU", "Identity"],
        "lr": 0.01,
        "gd_steps": 150 if quick else 300,
        "n_save": 25 if quick else 60,
        "rtol": 1e-6,
        "atol": 1e-9,
    }


def compute(cfg):
    enable_float64()
    from lagrangian_nn import nn

    acts = [nn.ReLU(), nn.RePU(2.0), nn.RePU(2.0), nn.ReLU(), nn.Identity()]
    _, _, arrays, metrics = run_gf_and_gd(cfg, acts, bias=False, layers=(2, 3))
    for run in ("gf", "gd"):
        W = arrays[f"{run}_W"]
        d2, d4 = W[0, 1] - W[:, 1], W[0, 3] - W[:, 3]
        arrays[f"{run}_dW2"], arrays[f"{run}_dW4"] = d2, d4
        for tag, pk in (("", 4), ("_wrong_pk2", 2)):  # control: p^k = 2, not 4
            metrics[f"{run}_violation_relative{tag}"] = float(
                np.max(np.abs(d2 - pk * d4)) / np.max(np.abs(d2))
            )
        metrics[f"{run}_ratio_at_end"] = float(d2[-1] / d4[-1])
    claims = [
        claim(
            "GF: |Δ‖W2‖² − 4Δ‖W4‖²| / |Δ‖W2‖²|",
            "Section 4.2, Fig. 2",
            metrics["gf_violation_relative"],
            1e-4,
            control=control(
                "wrong p^k = 2: |Δ‖W2‖² − 2Δ‖W4‖²| / |Δ‖W2‖²|",
                metrics["gf_violation_relative_wrong_pk2"],
            ),
        ),
        claim(
            "GF: |ratio Δ‖W2‖²/Δ‖W4‖² at the end − 4|",
            "p^k = 4",
            abs(metrics["gf_ratio_at_end"] - 4),
            1e-3,
            control=control(
                "wrong p^k = 2: |ratio − 2|", abs(metrics["gf_ratio_at_end"] - 2)
            ),
        ),
        claim(
            "GD: corrected layer-2 quantity drift / |Δ‖W2‖²|",
            "exact GD accounting (ours)",
            metrics["gd_C2_corrected_drift"] / metrics["gf_W2_norm_change"],
            1e-10,
            control=control(
                "GD without the η² correction",
                metrics["gd_C2_raw_drift"] / metrics["gf_W2_norm_change"],
            ),
        ),
    ]
    return metrics, arrays, claims


def draw(folder: Path):
    plt = figure_style()
    res, a = load(folder)
    m = res["metrics"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].plot(a["gf_ts"], a["gf_dW2"], label="‖W2(0)‖² − ‖W2(t)‖²")
    axes[0].plot(a["gf_ts"], 4 * a["gf_dW4"], "--", label="4 (‖W4(0)‖² − ‖W4(t)‖²)")
    axes[0].plot(a["gd_ts"], a["gd_dW2"], ":", color="k", linewidth=0.8, label="GD")
    axes[0].set_xlabel("t")
    axes[0].legend()
    axes[0].set_title(f"GF, p^k = 4 (ratio at end {m['gf_ratio_at_end']:.4f})")
    axes[1].plot(a["gf_ts"], a["gf_W"][:, 1] - a["gf_W"][0, 1], label="Δ‖W2‖²")
    axes[1].plot(a["gf_ts"], a["gf_W"][:, 3] - a["gf_W"][0, 3], label="Δ‖W4‖²")
    axes[1].set_xlabel("t")
    axes[1].legend()
    axes[1].set_title("the deeper layer moves 4× less")
    fig.suptitle("Figure 2: ReLU, RePU(2), RePU(2), ReLU")
    fig.tight_layout()
    save_figure(fig, folder, "figure2")


def main(*, seed=0, quick=False, out=DEFAULT_OUT, data="digits", data_dir=None):
    return run_experiment(
        NAME,
        config=config_for(quick, seed, data, data_dir),
        compute=compute,
        draw=draw,
        out=out,
        quick=quick,
    )
