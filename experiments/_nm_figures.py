"""The four figures of `neural_mechanics`, drawn from its saved `results.json` and
`arrays.npz` alone: the charges of SGD with weight decay and the exact laws' errors,
the momentum runs, the gaps of the continuous forms against η, and Adam's drift."""

import numpy as np

LABELS = {
    "translation": r"translation $\sum W_3 + \sum b_3$",
    "scale": r"scale $\|W_1\|^2$",
    "rescale": r"rescale $\|W_2\|^2 + \|b_2\|^2 - \|W_3\|^2$",
}
MEASURED = "#0072B2"
CONTINUOUS = {"color": "#E69F00", "linestyle": ":", "linewidth": 1.6}
KUNIN = {"color": "#CC79A7", "linestyle": "-.", "linewidth": 1.0}


# the runs' short names in legends
RUN_SHORT = {
    "sgd_decay": "SGD, decay",
    "underdamped": "heavy ball, β = 0.95",
    "overdamped": "heavy ball, β = 0.5",
    "nesterov_decoupled": "Nesterov, decoupled decay",
}


def _charges_panel(ax, t, a, run, c, kunin=False):
    ax.plot(t, a[f"{run}_{c}_measured"], color=MEASURED, lw=2.2, label="measured")
    ax.plot(t, a[f"{run}_{c}_exact"], color="black", ls=(0, (4, 2)), lw=0.9,
            label="exact discrete law")  # fmt: skip
    ax.plot(t, a[f"{run}_{c}_continuous"], **CONTINUOUS, label="continuous form")
    if kunin:
        ax.plot(t, a[f"{run}_{c}_kunin"], **KUNIN, label="Kunin's form, uncorrected")
    ax.set_xlabel(r"time $t = \eta k$")
    ax.set_ylabel("charge")


def draw_charges(st, plt, a, folder, charges, runs):
    """`charges`: SGD with weight decay's three charges, and the exact laws' errors
    in every run."""
    t = a["t"]
    fig, axes = plt.subplots(1, 4, figsize=(st.DOUBLE, 2.2))
    for ax, c in zip(axes, charges):
        _charges_panel(ax, t, a, "sgd_decay", c)
        ax.set_title(LABELS[c])
    for run, col in zip(runs, st.shades(len(runs))):
        err = np.max(
            [
                np.abs(a[f"{run}_{c}_exact"] - a[f"{run}_{c}_measured"])
                / np.max(np.abs(a[f"{run}_{c}_measured"]))
                for c in charges
            ],
            axis=0,
        )
        axes[3].semilogy(
            t[1:], np.maximum(err[1:], 1e-18), color=col, label=RUN_SHORT[run]
        )
    axes[3].set_title("exact law: error (all runs)")
    axes[3].set_xlabel(r"time $t = \eta k$")
    axes[3].set_ylabel("relative error")
    # legends above the panels, clear of the curves
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center",
               bbox_to_anchor=(0.38, 1.0), ncol=3)  # fmt: skip
    fig.legend(*axes[3].get_legend_handles_labels(), loc="lower center",
               bbox_to_anchor=(0.86, 1.0), ncol=2, fontsize=6)  # fmt: skip
    st.caption(
        fig,
        "SGD with weight decay on mini-batches: the three charges measured (solid), "
        "predicted exactly by the discrete law (dashed) and by Kunin et al.'s "
        "continuous form (dotted; first order without momentum). Right: the exact "
        "law's relative error in all four runs, at rounding.",
    )
    st.save(fig, folder, "charges")


def draw_momentum(st, plt, res, a, folder, charges):
    """`momentum`: the charges of under- and over-damped heavy ball, and of Nesterov."""
    m = res["metrics"]
    t = a["t"]
    fig, axes = plt.subplots(3, 3, figsize=(st.DOUBLE, 5.6))
    runs = ("underdamped", "overdamped", "nesterov_decoupled")
    for row, run in enumerate(runs):
        for col, c in enumerate(charges):
            nesterov = run == "nesterov_decoupled"
            _charges_panel(axes[row, col], t, a, run, c, kunin=nesterov)
            beta = res["config"]["runs"][run]["momentum"]
            head = "Nesterov, " if nesterov else ""
            axes[row, col].set_title(
                f"{LABELS[c]}\n({head}β = {beta}: {m[f'{run}_{c}_regime']})",
                fontsize=7,
            )
    # one legend above the panels, clear of the curves
    fig.legend(*axes[2, 0].get_legend_handles_labels(), loc="lower center",
               bbox_to_anchor=(0.5, 1.0), ncol=4)  # fmt: skip
    runs_cfg = res["config"]["runs"]
    st.caption(
        fig,
        f"Heavy ball with weight decay, β = {runs_cfg['underdamped']['momentum']} "
        f"(top) and β = {runs_cfg['overdamped']['momentum']} (middle), and Nesterov "
        f"with dampening {runs_cfg['nesterov_decoupled']['dampening']} and decoupled "
        "decay (bottom): measured charges, the exact discrete law, and the damped "
        "oscillator of the continuous form. Bottom: Kunin et al.'s heavy-ball form "
        "as published (dash-dotted) misses Nesterov's scale and rescale charges; with "
        "Nesterov's drive ⟨θ', Ag⟩ and its O(ηλ) terms (dotted) it does not.",
    )
    st.save(fig, folder, "momentum")


def draw_gap(st, plt, res, a, folder, charges):
    """`gap`: the gaps of the continuous forms against the exact law at a fixed time,
    O(η) for heavy ball and O(η²) for Nesterov with decoupled decay, against η."""
    from matplotlib.ticker import NullFormatter

    m = res["metrics"]
    fig, ax = plt.subplots(figsize=(1.6 * st.SINGLE, 2.4))
    lrs = a["slope_lrs"]
    for c, col in zip(charges, st.shades(3)):
        ax.loglog(lrs, a[f"gap_{c}"], "o-", color=col,
                  label=f"HB {c} ({m[f'gap_{c}_slope']:.2f})")  # fmt: skip
        ax.loglog(lrs, a[f"gap_nesterov_{c}"], "s--", color=col, mfc="none",
                  label=f"N {c} ({m[f'gap_nesterov_{c}_slope']:.2f})")  # fmt: skip
        ax.loglog(lrs, a[f"gap_nesterov_{c}_kunin"], "^:", color=col, ms=3, lw=0.8)
        ax.loglog(lrs, a[f"gap_{c}_control"], "x", **st.CONTROL)
    ax.plot([], [], "^:", color="0.3", ms=3, lw=0.8, label="N, Kunin uncorrected")
    ax.plot([], [], "x", **st.CONTROL, label="control: HB form on N runs")
    ax.set_xticks(lrs, [f"{x:g}" for x in lrs])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(r"learning rate $\eta$")
    ax.set_ylabel("max gap / max |Q|")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6)
    st.caption(
        fig,
        "Gap between the continuous form and the exact discrete law at a fixed time "
        "(fitted slopes in brackets): heavy ball with dampening and coupled decay "
        "(HB, circles) and Nesterov with dampening and decoupled decay (N, squares) "
        "shrink as O(η) and O(η²); Kunin's uncorrected form on the Nesterov runs "
        "(triangles) is O(η) with a larger constant.",
    )
    st.save(fig, folder, "gap")


def draw_adam(st, plt, a, folder, charges):
    """`adam`: the drift of Adam's charges, and plain SGD's (the control)."""
    fig, ax = plt.subplots(figsize=(1.4 * st.SINGLE, 2.4))
    k = np.arange(len(a["adam_translation"]))
    for c, col in zip(charges, st.shades(3)):
        q = a[f"adam_{c}"]
        ax.semilogy(k[1:], np.abs(q[1:] - q[0]) / abs(q[0]) + 1e-18, color=col,
                    label=f"Adam: {c}")  # fmt: skip
    q = a["sgd_translation"]
    ax.semilogy(k[1:], np.abs(q[1:] - q[0]) / abs(q[0]) + 1e-18, **st.CONTROL,
                label="SGD: translation")  # fmt: skip
    ax.set_xlabel("step $k$")
    ax.set_ylabel(r"$|Q_k - Q_0| / |Q_0|$")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6)
    st.caption(
        fig,
        "Adam has no exact charge law: its charges drift. SGD without decay keeps the "
        "translation charge to rounding.",
    )
    st.save(fig, folder, "adam")
