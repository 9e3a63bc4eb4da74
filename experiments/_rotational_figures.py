"""The three figures of `rotational_orbits`, drawn from its saved `results.json` and
`arrays.npz` alone: the orbits (Figs. 3–5), the losses against time (Fig. 6) and the
angular momenta, the Noether charges of rotations (eqs. 45–46)."""

import numpy as np

# (flow, its label, the discrete algorithm, its label, the paper's figure)
NAMES = [
    ("gf", "GF", "gd", "GD", 5),
    ("nd", "ND", "dnd", "eq. 21", 3),
    ("nagf", "NAGF", "dnagd", "NAGD", 4),
]


def _in_plane(q, w0, v0):
    """Coordinates of the points `q` in the plane through 0 normal to w0 × v0: along
    w0 and along (w0 × v0) × w0, both of unit length."""
    w0, v0 = np.asarray(w0, float), np.asarray(v0, float)
    n = np.cross(w0, v0)
    e1 = w0 / np.linalg.norm(w0)
    e2 = np.cross(n / np.linalg.norm(n), e1)
    return q @ e1, q @ e2


def orbits(st, plt, res, a, folder):
    """`trajectories`: the orbits in 3-D, seen along x, and NAGF's in its plane."""
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401

    cfg, names = res["config"], NAMES
    generic = {"color": "black", "linewidth": 0.6}
    u, v = np.mgrid[0 : 2 * np.pi : 40j, 0 : np.pi : 20j]
    sphere = (np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v))
    fig = plt.figure(figsize=(st.DOUBLE, 4.5))
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 0.95])
    handles = {}
    for col, (key, label, dkey, dlabel, paper_fig) in enumerate(names):
        for row, (elev, azim) in enumerate([(20, -60), (0, 0)]):
            ax = fig.add_subplot(grid[row, col], projection="3d")
            ax.plot_wireframe(*sphere, color="0.85", linewidth=0.25)
            q, dq = a[f"{key}_q"], a[f"{dkey}_q"]
            (h1,) = ax.plot(*q.T, color=st.color(key), lw=1.6, label=label)
            (h2,) = ax.plot(*dq.T, color=st.color(dkey), lw=0.9, ls=(0, (3, 2)))
            handles[label], handles[dlabel] = h1, h2
            ax.scatter(*q[0], color="k", s=6, depthshade=False)
            if key in ("nd", "nagf"):
                g = a[f"{key}_iso_generic_q"]
                (h3,) = ax.plot(*g.T, **generic)
                handles["generic start (ND, NAGF)"] = h3
                ax.scatter(*g[0], color="k", marker="s", s=6, depthshade=False)
            ax.view_init(elev=elev, azim=azim)
            ax.set_box_aspect((1, 1, 1), zoom=1.05)
            ticks = [-1, 0, 1]
            ax.set_xticks(ticks)
            ax.set_yticks(ticks)
            ax.set_zticks(ticks)
            ax.tick_params(pad=-3, labelsize=6.5)
            ax.set_ylabel("$y$", labelpad=-9)
            if row == 0:
                ax.set_xlabel("$x$", labelpad=-9)
                # above the z axis: its label beside the axis would stand in the
                # next panel (over the label of (d))
                ax.text2D(0.95, 0.9, "$z$", transform=ax.transAxes, ha="center")
            else:
                ax.set_zlabel("$z$", labelpad=-9)
            if row == 0:
                ax.set_title(f"({'abc'[col]}) {label} and {dlabel} (Fig. {paper_fig})")
            else:
                # seen along x: the x ticks would pile up on one point
                ax.set_xticks([])
                ax.set_title(f"({'efg'[col]}) {label}, seen along $x$", y=0.95)
    # the NAGF orbits, zoomed, in their own planes
    for row, (tag, w0, v0) in enumerate(
        (
            ("paper's start", cfg["nd_w0"], cfg["nd_v0"]),
            ("generic start", cfg["generic_w0"], cfg["generic_v0"]),
        )
    ):
        ax = fig.add_subplot(grid[row, 3])
        th = np.linspace(0, 2 * np.pi, 4000)
        ax.plot(np.cos(th), np.sin(th), color="0.6", lw=0.6)
        xg, yg = _in_plane(a["nagf_q" if row == 0 else "nagf_iso_generic_q"], w0, v0)
        # zoom on the part after the orbit first reaches the sphere
        first = int(np.argmax(np.hypot(xg, yg) >= 1.0))
        ts = a["nagf_ts"]
        ax.plot(xg, yg, color=st.color("nagf"), lw=1.2)
        if row == 0:
            ax.plot(
                *_in_plane(a["dnagd_q"], w0, v0),
                color=st.color("dnagd"),
                lw=0.8,
                ls=(0, (3, 2)),
            )
        ax.plot(xg[first], yg[first], "o", ms=3, mfc="none", color="k")
        ax.annotate(
            f"$t = {ts[first]:.1f}$",
            (xg[first], yg[first]),
            xytext=(4, -8),
            textcoords="offset points",
            fontsize=7,
        )
        cx, cy = xg[first:], yg[first:]
        half = 0.6 * max(np.ptp(cx), np.ptp(cy))
        mx, my = (cx.min() + cx.max()) / 2, (cy.min() + cy.max()) / 2
        ax.set_xlim(mx - half, mx + half)
        ax.set_ylim(my - half, my + half)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6.5)
        ax.set_xlabel(r"along $w_0$")
        # u0 = ℓ0 × w0/‖w0‖, defined in the caption (a rotated label with a × in it
        # sets the × over its neighbours)
        ax.set_ylabel(r"along $u_0$")
        ax.set_title(f"({'dh'[row]}) NAGF, {tag}: zoom")
    handles["unit sphere"] = plt.Line2D([], [], color="0.6", lw=0.6)
    order = ["GF", "GD", "ND", "eq. 21", "NAGF", "NAGD", "generic start (ND, NAGF)"]
    order.append("unit sphere")
    fig.legend(
        [handles[k] for k in order],
        order,
        loc="outside lower center",
        ncol=8,
        handlelength=1.8,
        columnspacing=1.2,
    )
    fig.suptitle(r"Orbits for $L(w) = (\|w\|^2 - 1)^2$")
    st.caption(
        fig,
        "Top: the orbits in 3-D from the paper's start (dot) and a generic start "
        "(square, black line). Bottom, (e)–(g): the same seen along the x axis, edge-on "
        "to the plane y = z of the paper's start; the generic start has its own plane, "
        "normal to its w0 × ẇ0. (d), (h): NAGF in its orbit's plane, spanned by w0 "
        "and u0 = ℓ0 × w0/‖w0‖, with ℓ0 the unit vector of w0 × ẇ0 (grey: the "
        "sphere), zoomed on the part after it first reaches the "
        "sphere (open circle): it overshoots and spirals onto the sphere as the 3/t "
        "damping stops it. Discrete runs dashed (t = kη for GD, t = k√η for eq. 21 "
        "and NAGD).",
    )
    st.save(fig, folder, "trajectories")


def losses(st, plt, res, a, folder):
    """`loss`: the loss against time, each flow with its discrete algorithm."""
    cfg, names = res["config"], NAMES
    fig, axes = plt.subplots(1, 3, figsize=(st.DOUBLE, 2.2))
    for ax, (key, label, dkey, dlabel, paper_fig), letter in zip(
        axes, [names[1], names[2], names[0]], "abc"
    ):
        ax.plot(
            a[f"{key}_ts"], a[f"{key}_loss"], color=st.color(key), lw=1.6, label=label
        )
        ax.plot(
            a[f"{dkey}_ts"],
            a[f"{dkey}_loss"],
            color=st.color(dkey),
            lw=0.9,
            ls=(0, (3, 2)),
            label=dlabel,
        )
        ax.set_xlabel("time $t$")
        ax.set_ylabel("loss $L(w)$")
        ax.set_title(f"({letter}) {label}")
        if key == "gf":
            ax.set_yscale("log")
            ax.legend(loc="upper right")
        else:
            st.headroom(ax, 0.35)
            ax.legend(loc="upper right", ncol=2)
    fig.suptitle("Loss against time (Fig. 6)")
    st.caption(
        fig,
        "(c) GF's loss levels off near 1e-22, where ‖w‖² − 1 reaches the solver's "
        f"absolute tolerance ({cfg['atol']:g}); GD goes on to the rounding floor.",
    )
    st.save(fig, folder, "loss")


def angular_momentum(st, plt, res, a, folder):
    """`angular_momentum`: the charges under ND and NAGF, zero under GF, and the
    distance from the orbit's plane against the control."""
    cfg, m = res["config"], res["metrics"]
    fig, axes = plt.subplots(2, 2, figsize=(st.DOUBLE, 4.0))
    axes = axes.ravel()
    comp = ["x", "y", "z"]
    styles = ["-", (0, (4, 1.5)), (0, (1, 1))]
    for i in range(3):
        axes[0].plot(
            a["nd_ts"],
            a["nd_L"][:, i],
            color=st.shades(3, "nd")[i],
            ls=styles[i],
            label=f"$(w \\times \\dot w)_{comp[i]}$",
        )
        c = st.shades(3, "nagf")[i]
        axes[1].plot(
            a["nagf_ts"],
            a["nagf_charge"][:, i],
            color=c,
            ls=styles[i],
            label=f"$t^3 (w \\times \\dot w)_{comp[i]}$",
        )
        axes[1].plot(a["nagf_ts"], a["nagf_L"][:, i], color=c, lw=0.7, ls=":")
    axes[1].plot([], [], color="0.3", lw=0.7, ls=":", label=r"$w \times \dot w$ (thin)")
    axes[0].set_title(
        f"(a) ND: $w \\times \\dot w$ conserved (max deviation "
        f"{m['nd_angular_momentum_max_deviation']:.0e})"
    )
    axes[1].set_title(
        f"(b) NAGF: $t^3\\, w \\times \\dot w$ conserved (rel. drift "
        f"{m['nagf_t3_angular_momentum_rel_drift']:.0e})"
    )
    axes[0].set_ylim(-2.0, 2.9)
    axes[0].legend(loc="upper center", ncol=3, columnspacing=1.0, handlelength=1.8)
    axes[1].set_ylim(-2.0, 3.6)
    axes[1].legend(loc="upper right", ncol=2, columnspacing=1.0, handlelength=1.8)
    axes[0].set_ylabel("angular momentum")
    axes[1].set_ylabel("damped angular momentum")
    # GF: rounding noise, against the natural scale ‖w‖‖ẇ‖ of a cross product
    gf_v = np.gradient(a["gf_q"], a["gf_ts"], axis=0)
    axes[2].semilogy(
        a["gf_ts"],
        np.maximum(np.linalg.norm(a["gf_L"], axis=1), 1e-30),
        color=st.color("gf"),
        lw=0.8,
        label=r"GF: $\|w \times \dot w\|$",
    )
    axes[2].semilogy(
        a["gf_ts"],
        np.linalg.norm(a["gf_q"], axis=1) * np.linalg.norm(gf_v, axis=1),
        **st.PREDICTED,
        label=r"scale: $\|w\|\,\|\dot w\|$",
    )
    axes[2].set_title(
        f"(c) GF: $w \\times \\dot w = 0$ (max {m['gf_max_angular_momentum']:.0e})"
    )
    axes[2].set_ylabel("angular momentum (norm)")
    axes[2].set_ylim(1e-30, 1e8)
    axes[2].legend(loc="upper right", ncol=2)
    for key, label in (("nd", "ND"), ("nagf", "NAGF")):
        ts = a[f"{key}_ts"]
        axes[3].semilogy(
            ts,
            np.maximum(a[f"{key}_iso_generic_off_plane"], 1e-18),
            color=st.color(key),
            lw=1.0,
            label=f"{label}, $(\\|w\\|^2 - 1)^2$",
        )
        axes[3].semilogy(
            ts,
            np.maximum(a[f"{key}_aniso_generic_off_plane"], 1e-18),
            color=st.color(key),
            ls=":",
            lw=1.4,
            label=f"{label}, control $(w^\\top D w - 1)^2$",
        )
    axes[3].set_ylim(1e-19, 1e3)
    axes[3].set_title(
        "(d) generic start: distance from the plane $\\perp w_0 \\times \\dot w_0$"
    )
    axes[3].set_ylabel(r"$|\langle w, \ell_0 \rangle| / \|w\|$")
    axes[3].legend(loc="center right", bbox_to_anchor=(1.0, 0.47), labelspacing=0.15)
    for ax in axes:
        ax.set_xlabel("time $t$")
    fig.suptitle("Angular momentum, the Noether charge of rotations (eqs. 45–46)")
    st.caption(
        fig,
        "(a), (b): the components x, y, z of the charge (light to dark; for the paper's "
        "start the x component is 0). (c): under GF the angular momentum is rounding "
        "noise, about 1e-16 of its natural scale. (d): for a generic start, the "
        "component of w/‖w‖ along the unit vector ℓ0 of w0 × ẇ0; dotted: the "
        f"control loss with D = diag{tuple(cfg['control_diag'])}, which no rotation "
        "leaves invariant. Values below 1e-15 are rounding.",
    )
    st.save(fig, folder, "angular_momentum")
