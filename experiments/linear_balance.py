r"""Section 5, Table 4: deep linear networks stay balanced.

For a linear hidden layer $h$, $GL(d_h)$ acts by $W_h \mapsto AW_h$,
$W_{h+1}\mapsto W_{h+1}A^{-1}$ and leaves the network unchanged. Noether gives:

- GF: the matrix $W_hW_h^\top - W_{h+1}^\top W_{h+1}$ is constant (eq. 42), one law per
  entry of a symmetric $d_h\times d_h$ matrix;
- ND: $W_h\ddot W_h^\top - \ddot W_{h+1}^\top W_{h+1} = 0$ (eq. 41), so the balance
  matrix $C$ evolves in a controlled way: $\ddot C = 2(\dot W_h\dot W_h^\top -
  \dot W_{h+1}^\top\dot W_{h+1})$, whose trace is $2(\|\dot W_h\|^2 - \|\dot W_{h+1}\|^2)$
  (eq. 43). Checked along the computed trajectory in integrated form,
  $C(t) - C(0) = \dot C(0)\,t + 2\int_0^t\int_0^s(\dot W_h\dot W_h^\top -
  \dot W_{h+1}^\top\dot W_{h+1})\,dr\,ds$ (at a single state both forms are identities
  of the equation of motion, so they are not evidence). With energy conservation from
  rest, $\|\dot w\|^2 \le 2L(w_0)$, hence $|\mathrm{tr}\,C(t) - \mathrm{tr}\,C(0)| \le
  2L(w_0)t^2$ (a consequence of energy conservation, reported, not counted).

A $d_0$-32-32-32-10 linear network, squared error on one-hot targets. The negative
control of each claim is the same measurement along the same flow from the same start
with tanh on every hidden layer: tanh has no GL symmetry, so no law holds there.
"""

from pathlib import Path

import numpy as np

from . import _networks as N
from ._common import claim, control, enable_float64, figure

NAME = "linear_balance"
USES_DATA = True


def config_for(quick, seed, data="digits", data_dir=None):
    return {
        "seed": seed,
        **N.data_config(quick, data, data_dir),
        "hidden": [16, 16, 16] if quick else [32, 32, 32],
        "loss": "squared_error, one-hot",
        "t_gf": 10.0 if quick else 40.0,
        "t_nd": 5.0 if quick else 15.0,
        "n_save": 30 if quick else 80,
        "n_dense": 201 if quick else 801,  # ND save grid (odd: halvable)
        "rtol": 1e-9,
        "atol": 1e-11,
    }


def compute(cfg):
    enable_float64()
    import jax

    from lagrangian_nn import nn

    x, y = N.load_data(cfg)
    sizes = [x.shape[1], *cfg["hidden"], 10]
    K = len(sizes) - 1
    model = N.build(sizes, [nn.Identity()] * K, seed=cfg["seed"])
    loss = nn.make_loss(x, jax.nn.one_hot(y, 10), kind="squared_error")
    common = dict(
        t_gf=cfg["t_gf"],
        t_nd=cfg["t_nd"],
        nagf_t0=1.0,
        rtol=cfg["rtol"],
        atol=cfg["atol"],
    )
    # the negative control: the same start with tanh (no GL(d) symmetry; tanh(z) =
    # z − z³/3 + …, the closest nonlinear relative of the identity) on every hidden layer
    model_c = N.build(sizes, [nn.Tanh()] * (K - 1) + [nn.Identity()], seed=cfg["seed"])
    runs = {}
    for tag, m0 in (("", model), ("control_", model_c)):
        name = "control (tanh): " if tag else ""
        runs[tag + "gf"] = N.flows(
            loss, m0, n_save=cfg["n_save"], which=("gf",), label=name, **common
        )["gf"]
        runs[tag + "nd"] = N.flows(
            loss, m0, n_save=cfg["n_dense"], which=("nd",), label=name, **common
        )["nd"]
    gf, nd = runs["gf"], runs["nd"]
    arrays, metrics, claims = {}, {"initial_loss": float(loss(model))}, []
    arrays["gf_ts"], arrays["nd_ts"] = np.asarray(gf.ts), np.asarray(nd.ts)
    # every layer's law and W_hW_hᵀ along each GF run in one compiled evaluation
    gf_values = {
        tag: runs[tag + "gf"].evaluate(
            lambda t, q, v: {
                h: (nn.linear_quantity(q, h), q.weights[h - 1] @ q.weights[h - 1].T)
                for h in range(1, K)
            },
        )
        for tag in ("", "control_")
    }
    for h in range(1, K):
        for tag in ("", "control_"):
            C, WW = gf_values[tag][h]
            C, WW = np.asarray(C), np.asarray(WW)
            drift = float(np.max(np.abs(C - C[0])))
            change = float(np.max(np.abs(WW - WW[0])))
            metrics[f"{tag}gf_C{h}_max_entry_drift"] = drift
            metrics[f"{tag}gf_WWt{h}_max_entry_change"] = change
            metrics[f"{tag}gf_C{h}_relative_drift"] = drift / change
            arrays[f"{tag}gf_C{h}"], arrays[f"{tag}gf_WWt{h}"] = C, WW
        claims.append(
            claim(
                f"GF layer {h}: max entry drift of W_hW_hᵀ − W_h+1ᵀW_h+1, relative",
                "eq. 42, Table 4",
                metrics[f"gf_C{h}_relative_drift"],
                1e-6,
                basis="trajectory",
                control=control(
                    "GF of the same start with tanh hidden layers (no GL symmetry)",
                    metrics[f"control_gf_C{h}_relative_drift"],
                ),
            )
        )
    # ND, layer 2: eq. 41 makes C̈ = 2(Ẇ_hẆ_hᵀ − Ẇ_h+1ᵀẆ_h+1) along solutions (eq. 43).
    # Checked along the computed trajectory in integrated form: the balance matrix C
    # measured at the saved states against Ċ(0)t + 2∫∫(Ẇ_hẆ_hᵀ − Ẇ_h+1ᵀẆ_h+1), the
    # integrals by cumulative Simpson on the dense save grid; the control measures the
    # same along the tanh network's ND run.
    h = 2
    kinetic = lambda t, q, v: (
        v.weights[h - 1] @ v.weights[h - 1].T - v.weights[h].T @ v.weights[h]
    )
    Cdot = lambda t, q, v: (
        q.weights[h - 1] @ v.weights[h - 1].T
        + v.weights[h - 1] @ q.weights[h - 1].T
        - v.weights[h].T @ q.weights[h]
        - q.weights[h].T @ v.weights[h]
    )
    ts = arrays["nd_ts"]
    for tag in ("control_", ""):  # the main run last: its C is used below
        # the law, its drive and its rate along the run, in one compiled evaluation
        Cnd, kin, Cdt = runs[tag + "nd"].evaluate(
            lambda t, q, v: (nn.linear_quantity(q, h), kinetic(t, q, v), Cdot(t, q, v))
        )
        Cnd, kin, Cd0 = np.asarray(Cnd), np.asarray(kin), np.asarray(Cdt[0])
        lhs = Cnd - Cnd[0]
        rhs = N.nd_balance(ts, Cd0, kin)
        metrics[f"{tag}nd_balance_rel_error"] = N.balance_error(lhs, rhs)
        metrics[f"{tag}nd_balance_max_entry"] = float(np.max(np.abs(lhs)))
        arrays[f"{tag}nd_C"], arrays[f"{tag}nd_C_predicted"] = Cnd, Cnd[0] + rhs
        if not tag:
            metrics["nd_balance_rel_error_half_grid"] = N.balance_error(
                lhs[::2], N.nd_balance(ts[::2], Cd0, kin[::2])
            )
    trC = np.trace(Cnd, axis1=1, axis2=2)
    bound = 2 * metrics["initial_loss"] * ts**2
    metrics["nd_trace_bound_max_ratio"] = float(
        np.max(np.abs(trC[1:] - trC[0]) / bound[1:])
    )
    arrays["nd_trC"], arrays["nd_bound"] = trC, bound
    claims += [
        claim(
            "ND: ΔC vs 2∫∫(Ẇ_hẆ_hᵀ − Ẇ_h+1ᵀẆ_h+1), max entry error, relative",
            "eqs. 41, 43 integrated twice",
            metrics["nd_balance_rel_error"],
            1e-6,
            basis="trajectory",
            control=control(
                "ND of the same start with tanh hidden layers (no GL symmetry)",
                metrics["control_nd_balance_rel_error"],
            ),
        ),
        claim(
            "ND: |tr C(t) − tr C(0)| / (2 L(w0) t²)",
            "eq. 43 + energy conservation",
            metrics["nd_trace_bound_max_ratio"],
            1.0,
            basis="consequence",
        ),
    ]
    return metrics, arrays, claims


def draw(folder: Path):
    st, plt, res, a = figure(folder)
    m = res["metrics"]
    fig, axes = plt.subplots(1, 3, figsize=(st.DOUBLE, 2.5))
    ts = a["gf_ts"]
    WW, C = a["gf_WWt2"], a["gf_C2"]
    idx = [(0, 0), (0, 1), (1, 1), (2, 5)]
    colors = st.shades(len(idx), "gf")
    for (i, j), col in zip(idx, colors):
        axes[0].plot(
            ts, WW[:, i, j] - WW[0, i, j], color=col, label=f"$[{i + 1}, {j + 1}]$"
        )
        axes[0].plot(ts, C[:, i, j] - C[0, i, j], color=col, ls=(0, (3, 1.5)), lw=0.9)
    Cc = a["control_gf_C2"]
    axes[0].plot(a["gf_ts"], Cc[:, 0, 0] - Cc[0, 0, 0], **st.CONTROL)
    axes[0].plot([], [], color="0.3", ls=(0, (3, 1.5)), lw=0.9, label="law")
    axes[0].plot([], [], **st.CONTROL, label="tanh: law [1, 1]")
    axes[0].set_title(r"(a) GF: $W_2W_2^\top$ moves, the law does not")
    axes[0].set_ylabel(r"change of the entry since $t = 0$")
    axes[0].legend(loc="upper left", ncol=3, columnspacing=0.8, handlelength=1.5)
    st.headroom(axes[0], 0.45)
    tsn = a["nd_ts"]
    colors = st.shades(len(idx), "nd")
    for (i, j), col in zip(idx, colors):
        axes[1].plot(
            tsn,
            a["nd_C"][:, i, j] - a["nd_C"][0, i, j],
            color=col,
            lw=1.8,
            label=f"$[{i + 1}, {j + 1}]$",
        )
        axes[1].plot(
            tsn, a["nd_C_predicted"][:, i, j] - a["nd_C"][0, i, j], **st.PREDICTED
        )
    axes[1].plot([], [], **st.PREDICTED, label="Table 2")
    axes[1].set_title(
        f"(b) ND: the law's change (rel. error {m['nd_balance_rel_error']:.0e})"
    )
    axes[1].set_ylabel(r"change of the entry since $t = 0$")
    axes[1].legend(loc="lower left", ncol=3, columnspacing=0.8, handlelength=1.5)
    st.headroom(axes[1], 0.0)
    lo, hi = axes[1].get_ylim()
    axes[1].set_ylim(lo - 0.45 * (hi - lo), hi)
    axes[2].semilogy(
        tsn[1:],
        np.abs(a["nd_trC"] - a["nd_trC"][0])[1:],
        color=st.color("nd"),
        label=r"ND: $|\mathrm{tr}\,C(t) - \mathrm{tr}\,C(0)|$",
    )
    axes[2].semilogy(tsn[1:], a["nd_bound"][1:], **st.PREDICTED, label=r"$2L(w_0)t^2$")
    axes[2].set_title("(c) ND: the trace bound")
    axes[2].set_ylabel(r"change of $\mathrm{tr}\,C$")
    axes[2].legend(loc="lower right")
    for ax in axes:
        ax.set_xlabel("time $t$")
    st.caption(
        fig,
        "Linear network: $C = W_2W_2^\\top - W_3^\\top W_3$ (the matrix-valued charge of the "
        "GL(n) symmetry of layer 2), four of its entries. (a) Under GF the entries of "
        "$W_2W_2^\\top$ move (solid) while those of C do not (dashed); dotted: entry [1, 1] "
        "of C for the negative control, the same start with tanh hidden layers (no GL "
        "symmetry). (b) Under ND, C changes "
        "as $2\\int\\!\\!\\int(\\dot W_2 \\dot W_2^\\top - \\dot W_3^\\top \\dot W_3)$ "
        "predicts (dashed). (c) The trace bound that energy "
        "conservation implies, a consequence.",
    )
    st.save(fig, folder, "linear_balance")
