r"""Section 4.3 and eq. 37: Swish with a trainable $\beta$ per neuron.

$\mathrm{Swish}_\beta(\lambda x) = \lambda\,\mathrm{Swish}_{\lambda\beta}(x)$, so scaling
$W_h[i,:]$ by $(1+\varepsilon)$, $\beta_h[i]$ and $W_{h+1}[:,i]$ by $(1+\varepsilon)^{-1}$
is a symmetry. Under GF, $\|W_h\|^2 - \|W_{h+1}\|^2 - \|\beta_h\|^2$ is constant (Table 2),
and with biases $\|W_h\|^2 + \|b_h\|^2 - \|W_{h+1}\|^2 - \|\beta_h\|^2$ (eq. 37). The
β term is necessary: without it the balance drifts. The negative control of each claim
measures the same law along GF of the same network and start with the gate shifted,
$x\,\mathrm{sigmoid}(\beta(x + 1))$, which breaks Observation 1 and with it the symmetry.
"""

from pathlib import Path

import numpy as np

from . import _networks as N
from ._common import claim, control, enable_float64, figure
from ._homogeneous import gf_gd_config, run_gf_and_gd

NAME = "swish_beta"
USES_DATA = True


def config_for(quick, seed, data="digits", data_dir=None):
    hidden = [24, 24] if quick else [100, 100]
    return gf_gd_config(quick, seed, data, data_dir, hidden=hidden, lr=0.05)


def compute(cfg):
    enable_float64()
    from lagrangian_nn import nn

    arrays, metrics, claims = {}, {}, []
    for bias in (False, True):
        tag = "bias" if bias else "nobias"
        acts = [nn.Swish(), nn.Swish(), nn.Identity()]
        name = "with biases: " if bias else "no biases: "
        _, _, a, m = run_gf_and_gd(cfg, acts, bias=bias, layers=(1, 2), label=name)
        arrays.update({f"{tag}_{k}": v for k, v in a.items()})
        metrics.update({f"{tag}_{k}": v for k, v in m.items()})
        naive = a["gf_W"][:, 0] - a["gf_W"][:, 1]
        metrics[f"{tag}_gf_without_beta_drift"] = float(
            np.max(np.abs(naive - naive[0]))
        )
        beta = a["gf_beta"][:, 0]
        metrics[f"{tag}_gf_beta_change"] = float(np.max(np.abs(beta - beta[0])))
        # the β term left out of the law, for the figure (not a control)
        for h in (1, 2):
            dropped = a[f"gf_C{h}"] + a["gf_beta"][:, h - 1]
            metrics[f"{tag}_gf_C{h}_without_beta_relative_drift"] = (
                float(np.max(np.abs(dropped - dropped[0]))) / m[f"gf_W{h}_norm_change"]
            )
        # the negative control: GF of the same network and start with the gate shifted,
        # x·sigmoid(β(x + 1)), which breaks Observation 1 (no rescaling symmetry); the
        # same law measured along it
        acts_c = [N.shifted_swish(), N.shifted_swish(), nn.Identity()]
        _, _, ac, mc = run_gf_and_gd(
            cfg,
            acts_c,
            bias=bias,
            layers=(1, 2),
            gd=False,
            p=1.0,
            label=name + "control (shifted gate): ",
        )
        arrays.update({f"control_{tag}_{k}": v for k, v in ac.items()})
        eq = "Table 2 (Swish)" if not bias else "eq. 37"
        for h in (1, 2):
            metrics[f"control_{tag}_gf_C{h}_relative_drift"] = mc[
                f"gf_C{h}_relative_drift"
            ]
            claims.append(
                claim(
                    f"{tag}: GF layer-{h} quantity drift / |Δ‖W{h}‖²|",
                    eq,
                    m[f"gf_C{h}_relative_drift"],
                    1e-4,
                    basis="trajectory",
                    control=control(
                        "GF of the same network with the Swish gate shifted, "
                        "x·sigmoid(β(x + 1)) (no rescaling symmetry)",
                        metrics[f"control_{tag}_gf_C{h}_relative_drift"],
                    ),
                )
            )
    return metrics, arrays, claims


def draw(folder: Path):
    st, plt, res, a = figure(folder)
    fig, axes = plt.subplots(1, 2, figsize=(st.DOUBLE, 2.4), sharey=True)
    for ax, tag, letter in zip(axes, ("nobias", "bias"), "ab"):
        ts = a[f"{tag}_gf_ts"]
        beta = a[f"{tag}_gf_beta"]
        dropped = a[f"{tag}_gf_C1"] + beta[:, 0]
        ax.plot(
            ts,
            beta[:, 0] - beta[0, 0],
            color=st.color("gf"),
            lw=2.2,
            alpha=0.45,
            label=r"GF: $\Delta\|\beta_1\|^2$",
        )
        ax.plot(
            ts,
            a[f"{tag}_gf_C1"] - a[f"{tag}_gf_C1"][0],
            color=st.color("gf"),
            label="GF: $\\Delta$(law with $\\beta$"
            + (", $b$)" if tag == "bias" else ")"),
        )
        ax.plot(
            ts,
            dropped - dropped[0],
            color=st.GREY,
            lw=1.0,
            label="$\\Delta$(the law without $\\beta$)",
        )
        cC = a[f"control_{tag}_gf_C1"]
        ax.plot(
            a[f"control_{tag}_gf_ts"],
            cC - cC[0],
            **st.CONTROL,
            label="control: shifted gate",
        )
        ax.set_xlabel("time $t$")
        ax.set_title(
            "(a) Swish, no bias (Table 2)"
            if tag == "nobias"
            else "(b) Swish with biases (eq. 37)"
        )
    axes[0].set_ylabel("change since $t = 0$")
    axes[0].legend(loc="upper left")
    st.headroom(axes[0], 0.5)  # the legend above the curves
    st.caption(
        fig,
        "Swish σ(x) = x·sigmoid(βx) with a trainable β per neuron; layer 1. The law "
        "‖W1‖² (+ ‖b1‖²) − ‖W2‖² − ‖β1‖² stays flat under GF; without the ‖β1‖² term "
        "it changes as much as ‖β1‖² does (grey, on the β curve). Dotted: the "
        "negative control, the same law along GF of the network with the gate "
        "shifted, x·sigmoid(β(x + 1)), which has no rescaling symmetry.",
    )
    st.save(fig, folder, "swish")
