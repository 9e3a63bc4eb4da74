r"""Section 6.1, Figures 3–6: training on rotation-symmetric data.

The loss $L(w) = (\|w\|^2 - 1)^2$ on $w \in \mathbb{R}^3$ is invariant under every
rotation, as the loss of a linear model on rotation-symmetric data is. Noether's theorem
(eq. 45) then fixes the angular momentum $w \times \dot w$:

- ND ($\ddot w = -\nabla L$) conserves it, so the orbit stays in the plane $y = z$
  normal to $w_0 \times \dot w_0 = (0, -3/2, 3/2)$;
- NAGF conserves $t^3\, w \times \dot w$ (eq. 46): the same plane, damped;
- GF has zero angular momentum: a radial segment.

The discrete algorithms (GD; ND by eq. 21; NAGD by eq. 20) are run from the same starts
and overlaid with the time maps $t = k\eta$ (GD) and $t = k\sqrt\eta$ (ND, NAGD). For
eq. 21 the discrete angular momentum $w_k \times w_{k+1}/\sqrt\eta$ is exactly conserved.
"""

from pathlib import Path

import numpy as np

from ._common import (
    DEFAULT_OUT,
    claim,
    enable_float64,
    figure_style,
    load,
    run_experiment,
    save_figure,
)

NAME = "rotational_orbits"


def config_for(quick: bool, seed: int) -> dict:
    return {
        "seed": seed,  # the experiment is deterministic; recorded for completeness
        "loss": "(|w|^2 - 1)^2",
        "gf_w0": [0.1, 0.1, 0.1],
        "nd_w0": [0.5, 0.5, 0.5],
        "nd_v0": [-2.0, 1.0, 1.0],
        "nagf_t0": 0.5,
        "t1": 6.0 if quick else 20.0,
        "gf_t1": 3.0 if quick else 6.0,
        "n_save": 300 if quick else 2000,
        "rtol": 1e-11,
        "atol": 1e-12,
        "gd_lr": 1e-3 if quick else 2e-4,
        "nd_lr": 1e-4 if quick else 1e-5,
    }


def _loss(w):
    import jax.numpy as jnp

    return (jnp.sum(w**2) - 1.0) ** 2


def compute(cfg: dict):
    enable_float64()
    import jax
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics

    tol = dict(rtol=cfg["rtol"], atol=cfg["atol"], max_steps=1_000_000)
    w0_gf = jnp.array(cfg["gf_w0"])
    w0, v0 = jnp.array(cfg["nd_w0"]), jnp.array(cfg["nd_v0"])
    t1, t0n = cfg["t1"], cfg["nagf_t0"]
    n = cfg["n_save"]
    ang = lambda t, q, v: jnp.cross(q, v)

    ts_gf = jnp.linspace(0.0, cfg["gf_t1"], n)
    gf = lnn.simulate(
        dynamics.gradient_flow(_loss), w0_gf, t0=0.0, t1=cfg["gf_t1"], ts=ts_gf, **tol
    )
    ts_nd = jnp.linspace(0.0, t1, n)
    L_nd = dynamics.newtonian(_loss)
    nd = lnn.simulate(L_nd, w0, v0, t0=0.0, t1=t1, ts=ts_nd, progress=True, **tol)
    ts_ag = jnp.linspace(t0n, t1, n)
    L_ag = dynamics.nesterov(_loss)
    ag = lnn.simulate(L_ag, w0, v0, t0=t0n, t1=t1, ts=ts_ag, progress=True, **tol)

    # Noether charges from the library's generators (three rotations of R^3)
    def rotation(axis):
        J = jnp.zeros((3, 3))
        i, j = [(1, 2), (2, 0), (0, 1)][axis]
        J = J.at[i, j].set(-1.0).at[j, i].set(1.0)
        return lnn.Generator(lambda t, q, J=J: J @ q)

    nd_charge = jnp.stack(
        [nd.evaluate(lnn.noether_charge(L_nd, rotation(a))) for a in range(3)], -1
    )
    ag_charge = jnp.stack(
        [ag.evaluate(lnn.noether_charge(L_ag, rotation(a))) for a in range(3)], -1
    )
    nd_L = nd.evaluate(ang)
    ag_L = ag.evaluate(ang)
    gf_L = gf.evaluate(ang)
    nd_H = nd.evaluate(lnn.energy(L_nd))
    loss_v = jax.vmap(_loss)

    # discrete algorithms from the same starts
    hg = cfg["gd_lr"]
    gd_steps = int(round(cfg["gf_t1"] / hg))
    gd = lnn.optim.run(
        lnn.optim.gd(hg),
        _loss,
        w0_gf,
        gd_steps,
        track={"w": lambda s: s.q, "ang": lambda s: jnp.cross(s.q_prev, s.q)},
    )
    eta = cfg["nd_lr"]
    h = float(np.sqrt(eta))
    nd_steps = int(round(t1 / h))
    dnd = lnn.optim.run(
        lnn.optim.newtonian(eta, velocity=v0),
        _loss,
        w0,
        nd_steps,
        track={"w": lambda s: s.q, "ang": lambda s: jnp.cross(s.q_prev, s.q) / h},
    )
    k0 = max(1, int(round(t0n / h)))
    ag_steps = int(round(t1 / h)) - k0
    dag = lnn.optim.run(
        lnn.optim.nesterov(eta, start_step=k0, velocity=v0),
        _loss,
        w0,
        ag_steps,
        track={"w": lambda s: s.q, "ang": lambda s: jnp.cross(s.q_prev, s.q) / h},
    )
    ts_dag = dag.ts + (k0 - 1) * h  # step index k0 + i − 1 ↦ time

    def path_gap(ts_c, q_c, ts_d, q_d, w_start):
        # compare the discrete iterates with the flow at matched times
        ts_d = np.concatenate([[ts_d[0] - (ts_d[1] - ts_d[0])], np.asarray(ts_d)])
        q_d = np.concatenate([np.asarray(w_start)[None], np.asarray(q_d)])
        interp = np.stack([np.interp(ts_d, ts_c, q_c[:, i]) for i in range(3)], -1)
        mask = ts_d <= ts_c[-1]
        return float(np.max(np.linalg.norm(interp[mask] - q_d[mask], axis=1)))

    nd_L0 = np.asarray(nd_L[0])
    metrics = {
        "nd_angular_momentum_initial": nd_L0,
        "nd_angular_momentum_max_deviation": float(jnp.max(jnp.abs(nd_L - nd_L[0]))),
        "nd_angular_momentum_rel_drift": float(
            jnp.max(jnp.abs(nd_L - nd_L[0])) / jnp.linalg.norm(nd_L[0])
        ),
        "nd_noether_charge_matches_w_cross_wdot": float(
            jnp.max(jnp.abs(nd_charge - nd_L))
        ),
        "nd_max_abs_y_minus_z": float(jnp.max(jnp.abs(nd.q[:, 1] - nd.q[:, 2]))),
        "nagf_max_abs_y_minus_z": float(jnp.max(jnp.abs(ag.q[:, 1] - ag.q[:, 2]))),
        "nd_hamiltonian_rel_drift": float(
            jnp.max(jnp.abs(nd_H - nd_H[0])) / jnp.abs(nd_H[0])
        ),
        "nagf_t3_angular_momentum_initial": np.asarray(ag_charge[0]),
        "nagf_t3_angular_momentum_rel_drift": float(
            jnp.max(jnp.linalg.norm(ag_charge - ag_charge[0], axis=1))
            / jnp.linalg.norm(ag_charge[0])
        ),
        "nagf_t3_matches_t3_w_cross_wdot": float(
            jnp.max(jnp.abs(ag_charge - ts_ag[:, None] ** 3 * ag_L))
        ),
        "nagf_final_norm": float(jnp.linalg.norm(ag.q[-1])),
        "gf_max_angular_momentum": float(jnp.max(jnp.abs(gf_L))),
        "gf_final_norm": float(jnp.linalg.norm(gf.q[-1])),
        "gd_max_angular_momentum": float(jnp.max(jnp.abs(gd.tracked["ang"]))),
        "discrete_nd_angular_momentum_initial": np.asarray(dnd.tracked["ang"][0]),
        "discrete_nd_angular_momentum_max_deviation": float(
            jnp.max(jnp.abs(dnd.tracked["ang"] - dnd.tracked["ang"][0]))
        ),
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
        "gd_vs_gf_max_gap": path_gap(
            np.asarray(ts_gf),
            np.asarray(gf.q),
            np.asarray(gd.ts),
            np.asarray(gd.tracked["w"]),
            w0_gf,
        ),
        "discrete_nd_vs_nd_max_gap": path_gap(
            np.asarray(ts_nd),
            np.asarray(nd.q),
            np.asarray(dnd.ts),
            np.asarray(dnd.tracked["w"]),
            w0,
        ),
        "nagd_vs_nagf_max_gap": path_gap(
            np.asarray(ts_ag),
            np.asarray(ag.q),
            np.asarray(ts_dag),
            np.asarray(dag.tracked["w"]),
            w0,
        ),
        "gd_steps": gd_steps,
        "nd_steps": nd_steps,
        "nagd_steps": ag_steps,
        "nagd_start_step": k0,
    }

    def thin(x, m=4000):
        x = np.asarray(x)
        return x[:: max(1, len(x) // m)]

    arrays = {
        "gf_ts": ts_gf,
        "gf_q": gf.q,
        "gf_L": gf_L,
        "gf_loss": loss_v(gf.q),
        "nd_ts": ts_nd,
        "nd_q": nd.q,
        "nd_L": nd_L,
        "nd_loss": loss_v(nd.q),
        "nd_H": nd_H,
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
    claims = [
        claim(
            "ND conserves w × ẇ (relative drift)",
            "eq. 45, Fig. 3",
            metrics["nd_angular_momentum_rel_drift"],
            1e-8,
        ),
        claim(
            "ND initial w × ẇ equals (0, -3/2, 3/2)",
            "Section 6.1",
            float(np.max(np.abs(nd_L0 - np.array([0.0, -1.5, 1.5])))),
            1e-12,
        ),
        claim(
            "ND orbit stays in the plane y = z",
            "Fig. 3",
            metrics["nd_max_abs_y_minus_z"],
            1e-8,
        ),
        claim(
            "ND Hamiltonian conserved (relative drift)",
            "Example 5, Fig. 6",
            metrics["nd_hamiltonian_rel_drift"],
            1e-8,
        ),
        claim(
            "NAGF conserves t³ w × ẇ (relative drift)",
            "eq. 46, Fig. 4",
            metrics["nagf_t3_angular_momentum_rel_drift"],
            1e-8,
        ),
        claim(
            "NAGF orbit stays in the plane y = z",
            "Fig. 4",
            metrics["nagf_max_abs_y_minus_z"],
            1e-8,
        ),
        claim(
            "GF has zero angular momentum",
            "Fig. 5",
            metrics["gf_max_angular_momentum"],
            1e-12,
        ),
        claim(
            "eq. 21 conserves w_k × w_k+1 exactly",
            "variational integrator",
            metrics["discrete_nd_angular_momentum_max_deviation"],
            1e-12,
        ),
    ]
    return metrics, arrays, claims


def draw(folder: Path):
    plt = figure_style()
    res, a = load(folder)
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401

    names = [
        ("gf", "GF", "gd", "GD"),
        ("nd", "ND", "dnd", "ND, eq. 21"),
        ("nagf", "NAGF", "dnagd", "NAGD, eq. 20"),
    ]
    colors = {"gf": "tab:green", "nd": "tab:blue", "nagf": "tab:red"}
    u, v = np.mgrid[0 : 2 * np.pi : 40j, 0 : np.pi : 20j]
    sphere = (np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v))
    fig = plt.figure(figsize=(10, 6.4))
    for col, (key, label, dkey, dlabel) in enumerate(names):
        for row, (elev, azim) in enumerate([(20, -60), (0, 0)]):
            ax = fig.add_subplot(2, 3, 1 + col + 3 * row, projection="3d")
            ax.plot_wireframe(*sphere, color="0.8", linewidth=0.3)
            q = a[f"{key}_q"]
            ax.plot(q[:, 0], q[:, 1], q[:, 2], color=colors[key], label=label)
            dq = a[f"{dkey}_q"]
            ax.plot(
                dq[:, 0],
                dq[:, 1],
                dq[:, 2],
                "--",
                color="k",
                linewidth=0.8,
                label=dlabel,
            )
            ax.scatter(*q[0], color="k", s=12)
            ax.view_init(elev=elev, azim=azim)
            ax.set_xlabel("x")
            ax.set_ylabel("y")
            ax.set_zlabel("z")
            ax.set_box_aspect((1, 1, 1))
            if row == 0:
                ax.set_title(
                    f"{label} (Fig. {3 if key == 'nd' else 4 if key == 'nagf' else 5})"
                )
                ax.legend(loc="upper left")
    fig.suptitle(
        r"Orbits for $L(w) = (\|w\|^2-1)^2$, two viewpoints (bottom: along the x axis, edge-on to the plane $y = z$)"
    )
    save_figure(fig, folder, "trajectories")

    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
    for ax, (key, label, dkey, dlabel) in zip(axes, [names[1], names[2], names[0]]):
        ax.plot(a[f"{key}_ts"], a[f"{key}_loss"], color=colors[key], label=label)
        ax.plot(
            a[f"{dkey}_ts"],
            a[f"{dkey}_loss"],
            "--",
            color="k",
            linewidth=0.8,
            label=dlabel,
        )
        ax.set_xlabel("t")
        ax.set_ylabel("loss")
        ax.set_title(label)
        ax.legend()
        if key == "gf":
            ax.set_yscale("log")
    fig.suptitle("Loss against time (Fig. 6)")
    fig.tight_layout()
    save_figure(fig, folder, "loss")

    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
    comp = ["x", "y", "z"]
    for i in range(3):
        axes[0].plot(a["nd_ts"], a["nd_L"][:, i], label=f"(w×ẇ)_{comp[i]}")
        axes[1].plot(a["nagf_ts"], a["nagf_charge"][:, i], label=f"t³(w×ẇ)_{comp[i]}")
        axes[1].plot(a["nagf_ts"], a["nagf_L"][:, i], ":", color=f"C{i}")
        axes[2].plot(a["gf_ts"], a["gf_L"][:, i], label=f"(w×ẇ)_{comp[i]}")
    axes[0].set_title(
        f"ND: max deviation {res['metrics']['nd_angular_momentum_max_deviation']:.1e}"
    )
    axes[1].set_title("NAGF: t³ w×ẇ (solid), w×ẇ (dotted)")
    axes[2].set_title(f"GF: max |w×ẇ| {res['metrics']['gf_max_angular_momentum']:.1e}")
    for ax in axes:
        ax.set_xlabel("t")
        ax.legend()
    fig.suptitle("Angular momentum, the Noether charge of rotations")
    fig.tight_layout()
    save_figure(fig, folder, "angular_momentum")


def main(*, seed: int = 0, quick: bool = False, out=DEFAULT_OUT) -> dict:
    return run_experiment(
        NAME,
        config=config_for(quick, seed),
        compute=compute,
        draw=draw,
        out=out,
        quick=quick,
    )
