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

from ._common import claim, control, enable_float64, figure
from ._rotational_measures import (
    max_deviation,
    off_plane,
    off_plane_curve,
    path_gap,
    rel_drift,
    thin,
)

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

    def quantities(L):
        """(the three charges, the energy): one compiled evaluation per Lagrangian."""
        charges = [lnn.noether_charge(L, rotation(a)) for a in range(3)]
        H = lnn.energy(L)
        return lambda t, q, v: (jnp.stack([Q(t, q, v) for Q in charges]), H(t, q, v))

    nd_quantities = quantities(L_nd)
    nd_charge, H_of = {}, {}
    for start in ("paper", "generic"):
        Q, H = runs["nd", "iso", start].evaluate(nd_quantities)
        nd_charge[start], H_of[start] = np.asarray(Q), np.asarray(H)
    nd_charge = nd_charge["paper"]
    # the control for energy conservation: the energy function of the NAGF Lagrangian
    # t³(½|ẇ|² − L), which depends on time explicitly and so is not conserved
    ag_charge, ag_H = (np.asarray(x) for x in ag.evaluate(quantities(L_ag)))
    L_of = {key: np.asarray(tr.evaluate(ang)) for key, tr in runs.items()}
    nd_L, ag_L = L_of["nd", "iso", "paper"], L_of["nagf", "iso", "paper"]
    gf_L = np.asarray(gf.evaluate(ang))
    # t³ w × ẇ along every NAGF run
    t3L = {
        k: np.asarray(ts_ag)[:, None] ** 3 * v
        for k, v in L_of.items()
        if k[0] == "nagf"
    }
    loss_v = jax.jit(jax.vmap(iso))

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
    ts_dag = np.asarray(dag.ts) + (k0 - 1) * h  # step index k0 + i − 1 ↦ time
    # the rest is arithmetic on the saved curves, in NumPy: no more compiling
    ts_gf, ts_nd, ts_ag = (np.asarray(t) for t in (ts_gf, ts_nd, ts_ag))
    gf_q, gd_t, dnd_t, dag_t = (
        jax.tree.map(np.asarray, x)
        for x in (gf.q, gd.tracked, dnd.tracked, dag.tracked)
    )

    q_of = {key: np.asarray(tr.q) for key, tr in runs.items()}
    nd_q, ag_q = q_of["nd", "iso", "paper"], q_of["nagf", "iso", "paper"]
    metrics = {
        "nd_angular_momentum_initial": nd_L[0],
        "generic_angular_momentum_initial": L_of["nd", "iso", "generic"][0],
        "nd_angular_momentum_max_deviation": float(np.max(np.abs(nd_L - nd_L[0]))),
        "nd_angular_momentum_rel_drift": rel_drift(nd_L),
        "nd_generic_angular_momentum_rel_drift": rel_drift(
            L_of["nd", "iso", "generic"]
        ),
        "control_nd_angular_momentum_rel_drift": rel_drift(
            L_of["nd", "aniso", "generic"]
        ),
        "nd_noether_charge_matches_w_cross_wdot": float(
            np.max(np.abs(nd_charge - nd_L))
        ),
        # exact by the reflection symmetry y <-> z of the paper's start (not a claim)
        "nd_max_abs_y_minus_z": float(np.max(np.abs(nd_q[:, 1] - nd_q[:, 2]))),
        "nagf_max_abs_y_minus_z": float(np.max(np.abs(ag_q[:, 1] - ag_q[:, 2]))),
        # the generic start: distance from the plane orthogonal to L(0)
        **{
            f"{dyn}_{loss}_generic_off_plane": off_plane(
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
        "nagf_t3_angular_momentum_rel_drift": rel_drift(t3L["nagf", "iso", "paper"]),
        "nagf_generic_t3_angular_momentum_rel_drift": rel_drift(
            t3L["nagf", "iso", "generic"]
        ),
        "control_nagf_undamped_angular_momentum_rel_drift": max(
            rel_drift(L_of["nagf", "iso", s]) for s in ("paper", "generic")
        ),
        "control_nagf_anisotropic_t3_angular_momentum_rel_drift": rel_drift(
            t3L["nagf", "aniso", "generic"]
        ),
        "nagf_t3_matches_t3_w_cross_wdot": float(
            np.max(np.abs(ag_charge - ts_ag[:, None] ** 3 * ag_L))
        ),
        "nagf_final_norm": float(np.linalg.norm(ag_q[-1])),
        "gf_max_angular_momentum": float(np.max(np.abs(gf_L))),
        "gf_final_norm": float(np.linalg.norm(gf_q[-1])),
        "gd_max_angular_momentum": float(np.max(np.abs(gd_t["ang"]))),
        "discrete_nd_angular_momentum_initial": dnd_t["ang"][0],
        "discrete_nd_angular_momentum_max_deviation": max_deviation(dnd_t["ang"]),
        "control_discrete_nd_anisotropic_max_deviation": max_deviation(
            dnd_ctrl.tracked["ang"]
        ),
        "discrete_nagd_t3_angular_momentum_rel_drift": float(
            np.max(
                np.linalg.norm(
                    ts_dag[:, None] ** 3 * dag_t["ang"]
                    - ts_dag[0] ** 3 * dag_t["ang"][0],
                    axis=1,
                )
            )
            / np.linalg.norm(ts_dag[0] ** 3 * dag_t["ang"][0])
        ),
        "gd_vs_gf_max_gap": path_gap(ts_gf, gf_q, gd.ts, gd_t["w"], w0_gf),
        "discrete_nd_vs_nd_max_gap": path_gap(ts_nd, nd_q, dnd.ts, dnd_t["w"], w0),
        "nagd_vs_nagf_max_gap": path_gap(ts_ag, ag_q, ts_dag, dag_t["w"], w0),
        "gd_steps": gd_steps,
        "nd_steps": nd_steps,
        "nagd_steps": ag_steps,
        "nagd_start_step": k0,
    }

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
            arrays[f"{dyn}_{loss}_generic_off_plane"] = off_plane_curve(
                q_of[key], L_of[key][0]
            )
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


def draw(folder: Path):
    from . import _rotational_figures as figures

    st, plt, res, a = figure(folder)
    figures.orbits(st, plt, res, a, folder)
    figures.losses(st, plt, res, a, folder)
    figures.angular_momentum(st, plt, res, a, folder)
