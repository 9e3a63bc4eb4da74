"""Panels of `relu_balance`'s figures: Figure 1's bottom row (the change of
C = ‖W2‖² − ‖W3‖² under GF, GD, ND and NAGF, and ND's and NAGF's against their Table-2
laws) and the figure of the bounds (ND's imbalance, NAGF's energy)."""

import numpy as np


def draw_bottom_row(st, axes, a, m, T, diff):
    """Figure 1's bottom row: the change of C = ‖W2‖² − ‖W3‖² under GF, GD, ND and NAGF
    in one panel, then ND's and NAGF's against their Table-2 laws beside their negative
    controls, the three on one shared y axis. Two insets, each labelled as a zoom: the
    sizes |ΔC| of every run on a log axis (GF's and GD's are far below the line width),
    and NAGF against its law on its own scale."""
    import matplotlib.ticker as mticker

    on = a["gd_ts"] <= T * (1 + 1e-9)
    gd_ts = a["gd_ts"][on]
    dg = a["gd_norms"][on, 0] - a["gd_norms"][on, 1]
    d = a["gf_norms"][:, 0] - a["gf_norms"][:, 1]
    runs = {  # label: (times, change of C, plotting keywords)
        "GD, raw": (gd_ts, dg - dg[0], dict(color=st.color("gd"), lw=1.2, ls=":")),
        "GD, corrected": (
            gd_ts,
            a["gd_corrected"][on] - a["gd_corrected"][0],
            dict(color=st.color("gd"), lw=1.6, zorder=3),
        ),
        "GF": (
            a["gf_ts"],
            d - d[0],
            dict(color=st.color("gf"), lw=0, marker="o", ms=2.6, mfc="none", mew=0.7),
        ),
        "ND": (a["nd_balance_ts"], a["nd_balance_lhs"], dict(color=st.color("nd"))),
        "NAGF": (
            a["nagf_balance_ts"],
            a["nagf_balance_lhs"],
            dict(color=st.color("nagf")),
        ),
    }
    ax = axes[0]
    for label, (ts, dc, kw) in runs.items():
        ax.plot(ts, dc, label=label, **{"lw": 1.8, **kw})
    ax.set_title("(g) GF, GD, ND and NAGF on one axis")
    ax.legend(loc="upper left", fontsize=6.5, ncols=2)
    # inset, labelled as a zoom: |ΔC| on a log axis, where GF's (~1e-8) and GD's
    # corrected (~1e-14) changes separate from each other and from GD's raw one
    inset = ax.inset_axes([0.22, 0.07, 0.75, 0.35])
    for label, (ts, dc, kw) in runs.items():
        keep = ts > ts[0]
        size = np.abs(dc[keep])
        size = np.where(size > 0, size, np.nan)  # exact zeros have no logarithm
        inset.semilogy(ts[keep], size, **{"lw": 1.2, **kw, "ms": 1.6})
    for label, y in (("GF", 3e-8), ("GD, corrected", 3e-14)):
        inset.text(T, y, label, fontsize=5.5, ha="right", va="bottom")
    inset.set_ylim(1e-17, 10.0)
    inset.yaxis.set_major_locator(mticker.LogLocator(base=10.0, numticks=5))
    inset.yaxis.set_minor_locator(mticker.NullLocator())
    inset.tick_params(labelsize=5.5, pad=1)
    inset.set_title("zoom: $|\\Delta C|$, log axis", fontsize=6.5, pad=2)
    inset.set_facecolor("white")
    for col, c in ((1, "nd"), (2, "nagf")):
        ax = axes[col]
        ax.sharey(axes[0])
        ts = a[f"{c}_ts"]
        err = m[f"{c}_balance_rel_error"]
        name = c.upper()
        ax.plot(
            ts,
            a[f"{c}_balance_lhs"],
            color=st.color(c),
            lw=2.2,
            label=f"{name}, measured (rel. err. {err:.0e})",
        )
        ax.plot(ts, a[f"{c}_balance_rhs"], **st.PREDICTED, label="Table 2")
        cts = a[f"control_{c}_balance_ts"]
        cname = "softplus" if c == "nd" else "ND run"
        cerr = m[f"control_{c}_balance_rel_error"]
        ax.plot(
            cts,
            a[f"control_{c}_balance_lhs"],
            color=st.GREY,
            lw=1.0,
            label=f"control ({cname}): measured ({cerr:.0e})",
        )
        ax.plot(
            cts, a[f"control_{c}_balance_rhs"], **st.CONTROL, label="control: Table 2"
        )
        ax.set_title(f"({'hi'[col - 1]}) {name} against Table 2")
    lo, hi = axes[0].get_ylim()  # shared: room above the curves for the legends
    axes[0].set_ylim(lo, hi + 0.3 * (hi - lo))
    for ax in axes[1:]:
        ax.legend(loc="upper left", fontsize=6.5)
    # NAGF's change is small on the shared axis: a zoom on its own scale
    inset = axes[2].inset_axes([0.16, 0.1, 0.42, 0.26])
    inset.plot(a["nagf_ts"], a["nagf_balance_lhs"], color=st.color("nagf"), lw=2.0)
    inset.plot(a["nagf_ts"], a["nagf_balance_rhs"], **st.PREDICTED)
    inset.tick_params(labelsize=5.5, pad=1)
    inset.set_title("zoom: NAGF and Table 2", fontsize=6.5, pad=2)
    for ax in axes:
        ax.set_xlabel("time $t$")
    axes[0].set_ylabel(diff)


def draw_bounds(st, plt, a, m, folder):
    """The figure `bounds`: (a) the growth of ND's imbalance S against the bound of
    eqs. 33–34, (b) NAGF's energy against eq. 35, from the saved arrays `a` and metrics
    `m`."""
    fig, axes = plt.subplots(1, 2, figsize=(st.DOUBLE, 2.6))
    ts, S = a["nd_ts"][1:], a["nd_S"][1:] - a["nd_S"][0]
    axes[0].loglog(ts, S, color=st.color("nd"), label="ND: $S(t) - S(0)$")
    axes[0].loglog(
        ts,
        a["nd_bound"][1:],
        **st.PREDICTED,
        label="bound $4\\,L(w_0)\\,t^2$ (eqs. 33–34)",
    )
    axes[0].set_ylabel("growth of the imbalance $S$")
    axes[0].set_title(
        f"(a) ND: imbalance within the bound (max ratio {m['nd_bound_max_ratio']:.2f})"
    )
    axes[0].legend(loc="lower right")
    ts = a["nagf_ts"]
    axes[1].plot(
        ts,
        a["nagf_energy"],
        color=st.color("nagf"),
        lw=2.2,
        label="NAGF: $E = \\frac{1}{2}\\|\\dot w\\|^2 + L$",
    )
    axes[1].plot(
        ts,
        a["nagf_energy_predicted"],
        **st.PREDICTED,
        label="$E(t_0) - \\int 3/t\\,\\|\\dot w\\|^2\\,dt$ (eq. 35)",
    )
    axes[1].set_ylabel("energy $E$ (loss units)")
    axes[1].set_title(
        f"(b) NAGF: energy decay (rel. error {m['nagf_energy_balance_rel_error']:.0e})"
    )
    axes[1].legend(loc="lower left")
    for ax in axes:
        ax.set_xlabel("time $t$")
    st.caption(
        fig,
        "(a) $S = \\Sigma_h \\left|\\,\\|W_h\\|^2 - \\|W_{h+1}\\|^2\\right|$, summed over consecutive "
        "layers, along ND from rest, against the bound that energy conservation implies (log–log axes). "
        "(b) NAGF energy against eq. 35 integrated along the NAGF run.",
    )
    st.save(fig, folder, "bounds")
