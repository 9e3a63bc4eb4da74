r"""Section 4.4, Table 3 and eq. 36: ReLU networks with biases.

Rescaling a neuron now scales its bias too: under GF
$\|W_h\|^2 + \|b_h\|^2 - \|W_{h+1}\|^2$ is constant for each hidden layer (eq. 36), and
summed over all layers, $\|W_1\|^2 - \|W_K\|^2 + \sum_{h<K}\|b_h\|^2$ is constant.
The negative control measures the same quantities along GF of the same network and
start with softplus, which is not homogeneous, in place of every hidden ReLU. GD's
exact accounting is an identity of the update, reported but not counted as evidence.
"""

from pathlib import Path

import numpy as np

from . import _networks as N
from ._common import claim, control, enable_float64, figure
from ._homogeneous import gd_identity, gf_gd_config, run_gf_and_gd

NAME = "bias"
USES_DATA = True


def config_for(quick, seed, data="digits", data_dir=None):
    hidden = [24, 24, 24] if quick else [200, 200, 200]
    return gf_gd_config(quick, seed, data, data_dir, hidden=hidden, lr=0.01)


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
    # the negative control: GF of the same network and start with softplus (not
    # homogeneous: no rescaling symmetry) in place of every hidden ReLU, the same
    # quantities measured along it
    acts_c = [N.softplus()] * (K - 1) + [nn.Identity()]
    _, _, arrays_c, metrics_c = run_gf_and_gd(
        cfg,
        acts_c,
        bias=True,
        layers=tuple(range(1, K)),
        extra={"summed": summed},
        gd=False,
        p=1.0,
        label="control (softplus): ",
    )
    arrays.update({f"control_{k}": v for k, v in arrays_c.items()})
    for h in range(1, K):
        metrics[f"control_gf_C{h}_relative_drift"] = metrics_c[
            f"gf_C{h}_relative_drift"
        ]
    for tag in ("", "control_"):
        s = arrays[f"{tag}gf_summed"]
        W = arrays[f"{tag}gf_W"]
        change = float(np.max(np.abs(W[:, 0] - W[0, 0])))
        metrics[f"{tag}gf_summed_relative_drift"] = (
            float(np.max(np.abs(s - s[0]))) / change
        )
    # the laws with the biases left out, for the figure (not a control)
    W = arrays["gf_W"]
    for h in range(1, K):
        d = W[:, h - 1] - W[:, h]
        metrics[f"gf_C{h}_without_bias_relative_drift"] = (
            float(np.max(np.abs(d - d[0]))) / metrics[f"gf_W{h}_norm_change"]
        )
    ctrl = "GF of the same network with softplus (no rescaling symmetry) for ReLU"
    # Bound: the solver's relative tolerance. A conserved quantity integrated at rtol
    # drifts, relative to how far the weights move, by about rtol at most (measured:
    # 3e-9 to 7e-8).
    bound = cfg["rtol"]
    claims = [
        claim(
            f"GF layer {h}: (‖W_h‖² + ‖b_h‖² − ‖W_(h+1)‖²) drift / |Δ‖W_h‖²|",
            "eq. 36, Table 3",
            metrics[f"gf_C{h}_relative_drift"],
            bound,
            basis="trajectory",
            control=control(ctrl, metrics[f"control_gf_C{h}_relative_drift"]),
        )
        for h in range(1, K)
    ]
    claims.append(
        claim(
            "GF: ‖W1‖² − ‖W_K‖² + Σ‖b_h‖², drift / |Δ‖W1‖²|",
            "eq. 36 summed",
            metrics["gf_summed_relative_drift"],
            bound,
            basis="trajectory",
            control=control(ctrl, metrics["control_gf_summed_relative_drift"]),
        )
    )
    claims.append(
        gd_identity(1, metrics["gd_C1_corrected_drift"], metrics["gf_W1_norm_change"])
    )
    return metrics, arrays, claims


def draw(folder: Path):
    st, plt, res, a = figure(folder)
    K = len(res["config"]["hidden"]) + 1
    fig, axes = plt.subplots(1, 2, figsize=(st.DOUBLE, 2.5))
    ts = a["gf_ts"]
    colors = st.shades(K - 1, "gf")
    for h in range(1, K):
        axes[0].plot(
            ts,
            a["gf_W"][:, h - 1] - a["gf_W"][0, h - 1],
            color=colors[h - 1],
            label=f"$\\Delta\\|W_{h}\\|^2$",
        )
    for h in range(1, K):
        axes[0].plot(
            ts,
            a[f"gf_C{h}"] - a[f"gf_C{h}"][0],
            color=colors[h - 1],
            ls=(0, (3, 1.5)),
            label=f"$\\Delta$(eq. 36, layer {h})",
        )
    axes[0].set_ylabel("change since $t = 0$")
    axes[0].set_title("(a) GF: the weights move, the laws do not")
    axes[0].legend(loc="upper left", ncol=2, columnspacing=1.0)
    st.headroom(axes[0], 0.3)
    axes[1].plot(
        a["gd_ts"],
        a["gd_summed"] - a["gd_summed"][0],
        color=st.color("gd"),
        ls=st.DISCRETE["linestyle"],
        label="GD, raw",
    )
    axes[1].plot(
        ts,
        a["gf_summed"] - a["gf_summed"][0],
        color=st.color("gf"),
        label="GF",
    )
    axes[1].plot(
        a["control_gf_ts"],
        a["control_gf_summed"] - a["control_gf_summed"][0],
        **st.CONTROL,
        label="control: GF, softplus",
    )
    axes[1].set_ylabel(r"$\Delta(\|W_1\|^2 - \|W_K\|^2 + \sum_h \|b_h\|^2)$")
    axes[1].set_title("(b) eq. 36 summed over the layers")
    st.headroom(axes[1], 0.25)
    axes[1].legend(loc="upper left")
    # GF's and GD's changes are far below the line width: a zoom, labelled as one,
    # of their sizes on a log axis
    inset = axes[1].inset_axes([0.1, 0.25, 0.4, 0.36])
    for t, x, kw in (
        (a["gd_ts"], a["gd_summed"], dict(color=st.color("gd"), ls=":")),
        (ts, a["gf_summed"], dict(color=st.color("gf"))),
    ):
        size = np.abs(x - x[0])[1:]
        inset.semilogy(t[1:], np.where(size > 0, size, np.nan), lw=1.0, **kw)
    inset.tick_params(labelsize=5.5, pad=1)
    inset.set_title("zoom: |change|, log axis", fontsize=6.5, pad=2)
    for ax in axes:
        ax.set_xlabel("time $t$")
    st.caption(
        fig,
        f"ReLU network with biases, GF and GD (t = kη). (a) Dashed: the per-layer law "
        "$\\|W_h\\|^2 + \\|b_h\\|^2 - \\|W_{h+1}\\|^2$, flat under GF while each "
        "squared norm changes by "
        f"~{np.max(np.abs(a['gf_W'][-1] - a['gf_W'][0])):.0f}. (b) GD changes the summed "
        "law by its per-step second-order terms only (GF's change: "
        f"{np.max(np.abs(a['gf_summed'] - a['gf_summed'][0])):.0e}; the inset, a "
        "zoom, shows both changes on a log axis). Dotted: the "
        "negative control, the same law along GF of the network with softplus (no "
        "rescaling symmetry) in place of ReLU.",
    )
    st.save(fig, folder, "bias")
