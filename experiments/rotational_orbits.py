r"""Section 6.1, Figures 3–6: training on rotation-symmetric data.

The loss $L(w) = (\|w\|^2 - 1)^2$ on $w \in \mathbb{R}^3$ is invariant under every
rotation, as the loss of a linear model on rotation-symmetric data is. Noether's theorem
(eq. 45) then fixes the angular momentum $w \times \dot w$:

- ND ($\ddot w = -\nabla L$) conserves it, so the orbit stays in the plane through the
  origin normal to $w_0 \times \dot w_0$ (for the paper's start, the plane $y = z$;
  that one also follows from the start's reflection symmetry $y \leftrightarrow z$, so
  the plane is checked from a generic start as well);
- NAGF conserves $t^3\, w \times \dot w$ (eq. 46): the same plane, damped;
- GF has zero angular momentum: a radial segment (an identity for a radial loss,
  reported as a consequence).

Every conservation law has a negative control: the same measurement for the loss
$(w^\top D w - 1)^2$ with $D = \mathrm{diag}(1, 1.5, 0.6)$, which no rotation leaves
invariant, the undamped charge under NAGF, or the energy function of the time-dependent
NAGF Lagrangian.

The discrete algorithms (GD; ND by eq. 21; NAGD by eq. 20) are run from the same starts
and overlaid with the time maps $t = k\eta$ (GD) and $t = k\sqrt\eta$ (ND, NAGD). For
eq. 21 the discrete angular momentum $w_k \times w_{k+1}/\sqrt\eta$ is exactly conserved.
"""

from pathlib import Path
from typing import Any

import equinox as eqx
import numpy as np

from ._common import claim, control, enable_float64, load

NAME = "rotational_orbits"


def config_for(quick: bool, seed: int) -> dict:
    return {
        "seed": seed,  # the experiment is deterministic; recorded for completeness
        "loss": "(|w|^2 - 1)^2",
        "gf_w0": [0.1, 0.1, 0.1],
        "nd_w0": [0.5, 0.5, 0.5],
        "nd_v0": [-2.0, 1.0, 1.0],
        # a start with no symmetry (y0 != z0): the plane of the orbit is then fixed
        # by the conserved angular momentum alone, not by a reflection of the start
        "generic_w0": [0.7, -0.2, 0.4],
        "generic_v0": [0.3, 1.2, -0.9],
        # the negative control: (w^T D w - 1)^2, invariant under no rotation
        "control_loss": "(w^T diag(d) w - 1)^2",
        "control_diag": [1.0, 1.5, 0.6],
        "nagf_t0": 0.5,
        "t1": 6.0 if quick else 20.0,
        "gf_t1": 3.0 if quick else 6.0,
        "n_save": 300 if quick else 2000,
        "rtol": 1e-11,
        "atol": 1e-12,
        "gd_lr": 1e-3 if quick else 2e-4,
        "nd_lr": 1e-4 if quick else 1e-5,
    }


class _Quartic(eqx.Module):
    r"""$(w^\top \mathrm{diag}(d)\, w - 1)^2$; rotation invariant iff all $d_i$ are
    equal. A module, so that the symmetric loss and the control share compilations."""

    d: Any

    def __call__(self, w):
        import jax.numpy as jnp

        return (jnp.sum(self.d * w**2) - 1.0) ** 2


def _rel_drift(x, ref=None):
    """max_t |x(t) − x(0)| / |x(0)| for a curve of vectors (rows)."""
    x = np.asarray(x)
    ref = x[0] if ref is None else np.asarray(ref)
    return float(np.max(np.linalg.norm(x - ref, axis=-1)) / np.linalg.norm(ref))


def _off_plane(q, L0):
    """max_t |⟨w(t), L̂0⟩| / |w(t)|: how far the orbit leaves the plane through the
    origin orthogonal to the initial angular momentum L0."""
    q, L0 = np.asarray(q), np.asarray(L0)
    n = L0 / np.linalg.norm(L0)
    return float(np.max(np.abs(q @ n) / np.linalg.norm(q, axis=1)))


def compute(cfg: dict):
    enable_float64()
    import jax
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics

    tol = dict(rtol=cfg["rtol"], atol=cfg["atol"], max_steps=1_000_000)
    iso = _Quartic(jnp.ones(3))
    aniso = _Quartic(jnp.array(cfg["control_diag"]))
    w0_gf = jnp.array(cfg["gf_w0"])
    w0, v0 = jnp.array(cfg["nd_w0"]), jnp.array(cfg["nd_v0"])
    gw0, gv0 = jnp.array(cfg["generic_w0"]), jnp.array(cfg["generic_v0"])
    t1, t0n = cfg["t1"], cfg["nagf_t0"]
    n = cfg["n_save"]
    ang = lambda t, q, v: jnp.cross(q, v)

    ts_gf = jnp.linspace(0.0, cfg["gf_t1"], n)
    gf = lnn.simulate(
        dynamics.gradient_flow(iso), w0_gf, t0=0.0, t1=cfg["gf_t1"], ts=ts_gf, **tol
    )
    ts_nd = jnp.linspace(0.0, t1, n)
    ts_ag = jnp.linspace(t0n, t1, n)
    L_nd, L_ag = dynamics.newtonian(iso), dynamics.nesterov(iso)
    runs = {}  # (dynamics, loss, start) -> trajectory
    for loss_name, loss in (("iso", iso), ("aniso", aniso)):
        for start, (q0, qd0) in (("paper", (w0, v0)), ("generic", (gw0, gv0))):
            if loss_name == "aniso" and start == "paper":
                continue  # the control runs from the generic start only
            runs["nd", loss_name, start] = lnn.simulate(
                dynamics.newtonian(loss), q0, qd0, t0=0.0, t1=t1, ts=ts_nd, **tol
            )
            runs["nagf", loss_name, start] = lnn.simulate(
                dynamics.nesterov(loss), q0, qd0, t0=t0n, t1=t1, ts=ts_ag, **tol
            )
    nd, ag = runs["nd", "iso", "paper"], runs["nagf", "iso", "paper"]

    # Noether charges from the library's generators (three rotations of R^3)
    def rotation(axis):
        J = jnp.zeros((3, 3))
        i, j = [(1, 2), (2, 0), (0, 1)][axis]
        J = J.at[i, j].set(-1.0).at[j, i].set(1.0)
        return lnn.Generator(lambda t, q, J=J: J @ q)

    def charge(tr, L):
        return jnp.stack(
            [tr.evaluate(lnn.noether_charge(L, rotation(a))) for a in range(3)], -1
        )

    nd_charge = charge(nd, L_nd)
    ag_charge = charge(ag, L_ag)
    L_of = {key: np.asarray(tr.evaluate(ang)) for key, tr in runs.items()}
    nd_L, ag_L = L_of["nd", "iso", "paper"], L_of["nagf", "iso", "paper"]
    gf_L = gf.evaluate(ang)
    # t³ w × ẇ along every NAGF run
    t3L = {
        k: np.asarray(ts_ag)[:, None] ** 3 * v
        for k, v in L_of.items()
        if k[0] == "nagf"
    }
    H_of = {
        start: np.asarray(runs["nd", "iso", start].evaluate(lnn.energy(L_nd)))
        for start in ("paper", "generic")
    }
    # the control for energy conservation: the energy function of the NAGF Lagrangian
    # t³(½|ẇ|² − L), which depends on time explicitly and so is not conserved
    ag_H = np.asarray(ag.evaluate(lnn.energy(L_ag)))
    loss_v = jax.vmap(iso)

    # discrete algorithms from the same starts
    hg = cfg["gd_lr"]
    gd_steps = int(round(cfg["gf_t1"] / hg))
    gd = lnn.optim.run(
        lnn.optim.gd(hg),
        iso,
        w0_gf,
        gd_steps,
        track={"w": lambda s: s.q, "ang": lambda s: jnp.cross(s.q_prev, s.q)},
    )
    eta = cfg["nd_lr"]
    h = float(np.sqrt(eta))
    nd_steps = int(round(t1 / h))
    dtrack = {"w": lambda s: s.q, "ang": lambda s: jnp.cross(s.q_prev, s.q) / h}
    dnd = lnn.optim.run(
        lnn.optim.newtonian(eta, velocity=v0), iso, w0, nd_steps, track=dtrack
    )
    # control: eq. 21 on the loss without rotation symmetry, from the same start
    dnd_ctrl = lnn.optim.run(
        lnn.optim.newtonian(eta, velocity=v0), aniso, w0, nd_steps, track=dtrack
    )
    k0 = max(1, int(round(t0n / h)))
    ag_steps = int(round(t1 / h)) - k0
    dag = lnn.optim.run(
        lnn.optim.nesterov(eta, start_step=k0, velocity=v0),
        iso,
        w0,
        ag_steps,
        track=dtrack,
    )
    ts_dag = dag.ts + (k0 - 1) * h  # step index k0 + i − 1 ↦ time

    def path_gap(ts_c, q_c, ts_d, q_d, w_start):
        # compare the discrete iterates with the flow at matched times
        ts_c, q_c, ts_d = np.asarray(ts_c), np.asarray(q_c), np.asarray(ts_d)
        ts_d = np.concatenate([[ts_d[0] - (ts_d[1] - ts_d[0])], ts_d])
        q_d = np.concatenate([np.asarray(w_start)[None], np.asarray(q_d)])
        interp = np.stack([np.interp(ts_d, ts_c, q_c[:, i]) for i in range(3)], -1)
        mask = ts_d <= ts_c[-1]
        return float(np.max(np.linalg.norm(interp[mask] - q_d[mask], axis=1)))

    def disc_dev(r):
        a = np.asarray(r.tracked["ang"])
        return float(np.max(np.abs(a - a[0])))

    q_of = {key: np.asarray(tr.q) for key, tr in runs.items()}
    metrics = {
        "nd_angular_momentum_initial": nd_L[0],
        "generic_angular_momentum_initial": L_of["nd", "iso", "generic"][0],
        "nd_angular_momentum_max_deviation": float(np.max(np.abs(nd_L - nd_L[0]))),
        "nd_angular_momentum_rel_drift": _rel_drift(nd_L),
        "nd_generic_angular_momentum_rel_drift": _rel_drift(
            L_of["nd", "iso", "generic"]
        ),
        "control_nd_angular_momentum_rel_drift": _rel_drift(
            L_of["nd", "aniso", "generic"]
        ),
        "nd_noether_charge_matches_w_cross_wdot": float(
            jnp.max(jnp.abs(nd_charge - nd_L))
        ),
        # exact by the reflection symmetry y <-> z of the paper's start (not a claim)
        "nd_max_abs_y_minus_z": float(np.max(np.abs(nd.q[:, 1] - nd.q[:, 2]))),
        "nagf_max_abs_y_minus_z": float(np.max(np.abs(ag.q[:, 1] - ag.q[:, 2]))),
        # the generic start: distance from the plane orthogonal to L(0)
        **{
            f"{dyn}_{loss}_generic_off_plane": _off_plane(
                q_of[dyn, loss, "generic"], L_of[dyn, loss, "generic"][0]
            )
            for dyn in ("nd", "nagf")
            for loss in ("iso", "aniso")
        },
        "nd_hamiltonian_rel_drift": max(
            float(np.max(np.abs(H - H[0])) / np.abs(H[0])) for H in H_of.values()
        ),
        "control_nagf_energy_function_rel_drift": float(
            np.max(np.abs(ag_H - ag_H[0])) / np.abs(ag_H[0])
        ),
        "nagf_t3_angular_momentum_initial": np.asarray(ag_charge[0]),
        "nagf_t3_angular_momentum_rel_drift": _rel_drift(t3L["nagf", "iso", "paper"]),
        "nagf_generic_t3_angular_momentum_rel_drift": _rel_drift(
            t3L["nagf", "iso", "generic"]
        ),
        "control_nagf_undamped_angular_momentum_rel_drift": max(
            _rel_drift(L_of["nagf", "iso", s]) for s in ("paper", "generic")
        ),
        "control_nagf_anisotropic_t3_angular_momentum_rel_drift": _rel_drift(
            t3L["nagf", "aniso", "generic"]
        ),
        "nagf_t3_matches_t3_w_cross_wdot": float(
            jnp.max(jnp.abs(ag_charge - ts_ag[:, None] ** 3 * ag_L))
        ),
        "nagf_final_norm": float(jnp.linalg.norm(ag.q[-1])),
        "gf_max_angular_momentum": float(jnp.max(jnp.abs(gf_L))),
        "gf_final_norm": float(jnp.linalg.norm(gf.q[-1])),
        "gd_max_angular_momentum": float(jnp.max(jnp.abs(gd.tracked["ang"]))),
        "discrete_nd_angular_momentum_initial": np.asarray(dnd.tracked["ang"][0]),
        "discrete_nd_angular_momentum_max_deviation": disc_dev(dnd),
        "control_discrete_nd_anisotropic_max_deviation": disc_dev(dnd_ctrl),
        "discrete_nagd_t3_angular_momentum_rel_drift": float(
            jnp.max(
                jnp.linalg.norm(
                    ts_dag[:, None] ** 3 * dag.tracked["ang"]
                    - ts_dag[0] ** 3 * dag.tracked["ang"][0],
                    axis=1,
                )
            )
            / jnp.linalg.norm(ts_dag[0] ** 3 * dag.tracked["ang"][0])
        ),
        "gd_vs_gf_max_gap": path_gap(ts_gf, gf.q, gd.ts, gd.tracked["w"], w0_gf),
        "discrete_nd_vs_nd_max_gap": path_gap(
            ts_nd, nd.q, dnd.ts, dnd.tracked["w"], w0
        ),
        "nagd_vs_nagf_max_gap": path_gap(ts_ag, ag.q, ts_dag, dag.tracked["w"], w0),
        "gd_steps": gd_steps,
        "nd_steps": nd_steps,
        "nagd_steps": ag_steps,
        "nagd_start_step": k0,
    }

    def thin(x, m=4000):
        x = np.asarray(x)
        return x[:: max(1, len(x) // m)]

    def off_plane_curve(key):
        q, L0 = q_of[key], L_of[key][0]
        return np.abs(q @ (L0 / np.linalg.norm(L0))) / np.linalg.norm(q, axis=1)

    arrays = {
        "gf_ts": ts_gf,
        "gf_q": gf.q,
        "gf_L": gf_L,
        "gf_loss": loss_v(gf.q),
        "nd_ts": ts_nd,
        "nd_q": nd.q,
        "nd_L": nd_L,
        "nd_loss": loss_v(nd.q),
        "nd_H": H_of["paper"],
        "nagf_ts": ts_ag,
        "nagf_q": ag.q,
        "nagf_L": ag_L,
        "nagf_charge": ag_charge,
        "nagf_loss": loss_v(ag.q),
        "gd_ts": thin(gd.ts),
        "gd_q": thin(gd.tracked["w"]),
        "gd_loss": thin(gd.loss),
        "dnd_ts": thin(dnd.ts),
        "dnd_q": thin(dnd.tracked["w"]),
        "dnd_loss": thin(dnd.loss),
        "dnd_L": thin(dnd.tracked["ang"]),
        "dnagd_ts": thin(ts_dag),
        "dnagd_q": thin(dag.tracked["w"]),
        "dnagd_loss": thin(dag.loss),
    }
    for dyn in ("nd", "nagf"):
        for loss in ("iso", "aniso"):
            key = (dyn, loss, "generic")
            arrays[f"{dyn}_{loss}_generic_q"] = q_of[key]
            arrays[f"{dyn}_{loss}_generic_off_plane"] = off_plane_curve(key)
    m = metrics
    claims = [
        claim(
            "ND conserves w × ẇ (relative drift, paper and generic start)",
            "eq. 45, Fig. 3",
            max(
                m["nd_angular_momentum_rel_drift"],
                m["nd_generic_angular_momentum_rel_drift"],
            ),
            1e-8,
            basis="trajectory",
            control=control(
                "same drift under ND for (wᵀDw − 1)², D = diag(1, 1.5, 0.6): no "
                "rotation symmetry",
                m["control_nd_angular_momentum_rel_drift"],
            ),
        ),
        claim(
            "ND orbit from a generic start stays in the plane ⊥ w0 × ẇ0 "
            "(max |⟨w, L̂0⟩|/|w|)",
            "Fig. 3",
            m["nd_iso_generic_off_plane"],
            1e-8,
            basis="trajectory",
            control=control(
                "same distance from the plane for (wᵀDw − 1)², D = diag(1, 1.5, 0.6)",
                m["nd_aniso_generic_off_plane"],
            ),
        ),
        claim(
            "ND Hamiltonian ½|ẇ|² + L conserved (relative drift, both starts)",
            "Example 5, Fig. 6",
            m["nd_hamiltonian_rel_drift"],
            1e-8,
            basis="trajectory",
            control=control(
                "energy function of the time-dependent NAGF Lagrangian "
                "t³(½|ẇ|² − L) along the NAGF run",
                m["control_nagf_energy_function_rel_drift"],
            ),
        ),
        claim(
            "NAGF conserves t³ w × ẇ (relative drift, paper and generic start)",
            "eq. 46, Fig. 4",
            max(
                m["nagf_t3_angular_momentum_rel_drift"],
                m["nagf_generic_t3_angular_momentum_rel_drift"],
            ),
            1e-8,
            basis="trajectory",
            control=control(
                "same drift under NAGF for (wᵀDw − 1)², D = diag(1, 1.5, 0.6): no "
                "rotation symmetry",
                m["control_nagf_anisotropic_t3_angular_momentum_rel_drift"],
            ),
        ),
        claim(
            "NAGF orbit from a generic start stays in the plane ⊥ w0 × ẇ0 "
            "(max |⟨w, L̂0⟩|/|w|)",
            "Fig. 4",
            m["nagf_iso_generic_off_plane"],
            1e-8,
            basis="trajectory",
            control=control(
                "same distance from the plane for (wᵀDw − 1)², D = diag(1, 1.5, 0.6)",
                m["nagf_aniso_generic_off_plane"],
            ),
        ),
        claim(
            "GF angular momentum w × ẇ is zero (identity: ẇ = −∇L ∥ w for a radial "
            "loss)",
            "Fig. 5",
            m["gf_max_angular_momentum"],
            1e-12,
            basis="consequence",
        ),
        claim(
            "eq. 21 conserves w_k × w_k+1 / √η exactly (max deviation)",
            "variational integrator",
            m["discrete_nd_angular_momentum_max_deviation"],
            1e-12,
            basis="trajectory",
            control=control(
                "same charge of eq. 21 on (wᵀDw − 1)², D = diag(1, 1.5, 0.6)",
                m["control_discrete_nd_anisotropic_max_deviation"],
            ),
        ),
    ]
    return metrics, arrays, claims


def _in_plane(q, w0, v0):
    """Coordinates of the points `q` in the plane through 0 normal to w0 × v0: along
    w0 and along (w0 × v0) × w0, both of unit length."""
    w0, v0 = np.asarray(w0, float), np.asarray(v0, float)
    n = np.cross(w0, v0)
    e1 = w0 / np.linalg.norm(w0)
    e2 = np.cross(n / np.linalg.norm(n), e1)
    return q @ e1, q @ e2


def draw(folder: Path):
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401

    from . import _style as st

    plt = st.use()
    res, a = load(folder)
    cfg, m = res["config"], res["metrics"]
    names = [
        ("gf", "GF", "gd", "GD", 5),
        ("nd", "ND", "dnd", "eq. 21", 3),
        ("nagf", "NAGF", "dnagd", "NAGD", 4),
    ]
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
