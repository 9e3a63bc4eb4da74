r"""Section 4.1, Figure 1: ReLU networks balance consecutive layers.

Rescaling neuron $i$ of a ReLU layer $h$ ($W_h[i,:]\cdot c$, $W_{h+1}[:,i]/c$) leaves
the network unchanged. Noether (Table 2) then gives, for $h = 2$:

- GF: $\|W_2\|_F^2 - \|W_3\|_F^2$ is constant (eq. 31), and GD conserves it up to the
  exact per-step change $\eta^2(\|g_2\|^2 - \|g_3\|^2)$;
- ND: $\langle W_2, \ddot W_2\rangle - \langle W_3, \ddot W_3\rangle = 0$, and from rest
  $\sum_h |\|W_h\|^2 - \|W_{h+1}\|^2|$ grows at most like $4(L(w_0) - L^*)\,t^2$
  (eqs. 32–34);
- NAGF: $\langle W_2, \ddot W_2 + \tfrac3t\dot W_2\rangle - \langle W_3, \ddot W_3 +
  \tfrac3t\dot W_3\rangle = 0$, and its energy decays as
  $\tfrac{d}{dt}(\tfrac12\|\dot w\|^2 + L) = -\tfrac3t\|\dot w\|^2$ (eq. 35).

Setup as the paper's: a $d_0$-200-200-200-10 ReLU network without biases, NLL loss,
1,000 training samples, learning rate 0.01 (digits by default; `--data kmnist`).
"""

from pathlib import Path

import numpy as np

from . import _networks as N
from ._common import (
    DEFAULT_OUT,
    claim,
    enable_float64,
    figure_style,
    load,
    run_experiment,
    save_figure,
)

NAME = "relu_balance"
USES_DATA = True


def config_for(quick, seed, data="digits", data_dir=None):
    return {
        "seed": seed,
        **N.data_config(quick, data, data_dir),
        "hidden": [32, 32, 32] if quick else [200, 200, 200],
        "lr": 0.01,
        "layer": 2,
        "gd_steps": 200 if quick else 500,
        "nd_steps": 20 if quick else 50,
        "n_save": 25 if quick else 60,
        "rtol": 1e-6,
        "atol": 1e-9,
    }


def compute(cfg):
    enable_float64()
    import jax
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics, nn, optim

    x, y = N.load_data(cfg)
    sizes = [x.shape[1], *cfg["hidden"], 10]
    model = N.build(
        sizes, [nn.ReLU()] * len(cfg["hidden"]) + [nn.Identity()], seed=cfg["seed"]
    )
    loss = nn.make_loss(x, y)
    h, lr = cfg["layer"], cfg["lr"]
    sq = np.sqrt(lr)
    t_gf, t_nd = cfg["gd_steps"] * lr, cfg["nd_steps"] * sq
    fl = N.flows(
        loss,
        model,
        t_gf=t_gf,
        t_nd=t_nd,
        nagf_t0=sq,
        n_save=cfg["n_save"],
        rtol=cfg["rtol"],
        atol=cfg["atol"],
    )
    norms = lambda t, q, v: jnp.stack(
        [jnp.sum(q.weights[h - 1] ** 2), jnp.sum(q.weights[h] ** 2)]
    )
    K = len(sizes) - 1
    S = lambda t, q, v: sum(
        jnp.abs(jnp.sum(q.weights[i] ** 2) - jnp.sum(q.weights[i + 1] ** 2))
        for i in range(K - 1)
    )
    arrays, metrics = {}, {}
    L0 = float(loss(model))
    for name, traj in fl.items():
        arrays[f"{name}_ts"] = np.asarray(traj.ts)
        arrays[f"{name}_norms"] = N.along(traj, norms)
        arrays[f"{name}_loss"] = N.along(traj, lambda t, q, v: loss(q))
    # GF: eq. 31
    n = arrays["gf_norms"]
    d = n[:, 0] - n[:, 1]
    metrics["gf_difference_drift"] = float(np.max(np.abs(d - d[0])))
    metrics["gf_norm_change"] = float(np.max(np.abs(n[:, 0] - n[0, 0])))
    metrics["gf_relative_drift"] = (
        metrics["gf_difference_drift"] / metrics["gf_norm_change"]
    )
    # ND and NAGF: the Table-2 residual forms along the trajectory
    for name, L, k1 in (
        ("nd", dynamics.newtonian(loss), lambda t: 0.0),
        ("nagf", dynamics.nesterov(loss), lambda t: 3.0 / t),
    ):
        traj = fl[name]
        acc = N.accelerations(L, traj)
        res = jax.vmap(
            lambda t, q, v, a: nn.rescale_residual(q, v, a, h, kappa1=k1(t))
        )(traj.ts, traj.q, traj.qdot, acc)
        scale = jax.vmap(
            lambda q, a: jnp.sqrt(
                jnp.sum(q.weights[h - 1] ** 2) * jnp.sum(a.weights[h - 1] ** 2)
            )
        )(traj.q, acc)
        arrays[f"{name}_residual"] = np.asarray(res)
        metrics[f"{name}_table2_residual_max_relative"] = float(
            np.max(np.abs(res) / np.maximum(scale, 1e-300))
        )
    # ND bound, eqs. 33–34 (L* ≥ 0 for NLL)
    Snd = N.along(fl["nd"], S)
    bound = 4 * L0 * arrays["nd_ts"] ** 2
    arrays["nd_S"], arrays["nd_bound"] = Snd, bound
    ratio = (Snd[1:] - Snd[0]) / bound[1:]
    metrics["nd_bound_max_ratio"] = float(np.max(ratio))
    H = N.along(fl["nd"], lnn.energy(dynamics.newtonian(loss)))
    metrics["nd_energy_rel_drift"] = N.rel_drift(H)
    # NAGF energy, eq. 35: E(t) − E(t0) against ∫ −3/t |ẇ|² dt (trapezoid on saved times)
    ag = fl["nagf"]
    E = N.along(ag, lambda t, q, v: 0.5 * lnn._tree.tree_dot(v, v) + loss(q))
    rate = N.along(ag, lambda t, q, v: -3.0 / t * lnn._tree.tree_dot(v, v))
    ts = arrays["nagf_ts"]
    integral = np.concatenate(
        [[0.0], np.cumsum(np.diff(ts) * 0.5 * (rate[1:] + rate[:-1]))]
    )
    arrays["nagf_energy"], arrays["nagf_energy_predicted"] = E, E[0] + integral
    metrics["nagf_energy_balance_rel_error"] = float(
        np.max(np.abs(E - E[0] - integral)) / np.max(np.abs(E - E[0]))
    )
    metrics["nagf_energy_monotone"] = bool(np.all(np.diff(E) <= 1e-12))
    # discrete: GD (with the exact correction), ND (eq. 21), NAGD (eq. 20)
    C = lambda q: nn.rescale_quantity(q, h)
    track = {"norms": lambda s: norms(0, s.q, None)}
    gd = optim.run(
        optim.gd(lr),
        loss,
        model,
        cfg["gd_steps"],
        track={**track, "acc": optim.gd_quadratic_accounting(C, lr)},
    )
    raw, corrected = optim.corrected_quantity(gd.tracked["acc"], C(model))
    metrics["gd_difference_drift"] = float(np.max(np.abs(raw - raw[0])))
    metrics["gd_corrected_drift"] = float(np.max(np.abs(corrected - corrected[0])))
    arrays["gd_ts"] = np.concatenate([[0.0], np.asarray(gd.ts)])
    arrays["gd_norms"] = np.concatenate(
        [np.asarray(norms(0, model, None))[None], np.asarray(gd.tracked["norms"])]
    )
    arrays["gd_corrected"] = np.asarray(corrected)
    for name, opt in (("dnd", optim.newtonian(lr)), ("dnagd", optim.nesterov(lr))):
        r = optim.run(opt, loss, model, cfg["nd_steps"], track=track)
        arrays[f"{name}_ts"] = np.concatenate([[0.0], np.asarray(r.ts)])
        arrays[f"{name}_norms"] = np.concatenate(
            [np.asarray(norms(0, model, None))[None], np.asarray(r.tracked["norms"])]
        )
    metrics["initial_loss"] = L0
    metrics["final_loss_gf"] = float(arrays["gf_loss"][-1])
    metrics["n_params"] = int(sum(w.size for w in model.weights))
    claims = [
        claim(
            "GF: |Δ(‖W2‖² − ‖W3‖²)| / |Δ‖W2‖²|",
            "eq. 31, Fig. 1a",
            metrics["gf_relative_drift"],
            1e-4,
        ),
        claim(
            "GD: corrected quantity drift / |Δ‖W2‖²|",
            "exact GD accounting (ours)",
            metrics["gd_corrected_drift"] / metrics["gf_norm_change"],
            1e-10,
        ),
        claim(
            "ND: Table-2 residual (relative)",
            "Table 2, Fig. 1b",
            metrics["nd_table2_residual_max_relative"],
            1e-8,
        ),
        claim(
            "NAGF: Table-2 residual (relative)",
            "Table 2, Fig. 1c",
            metrics["nagf_table2_residual_max_relative"],
            1e-8,
        ),
        claim(
            "ND: growth of Σ|‖W_h‖²−‖W_h+1‖²| / (4 L(w0) t²)",
            "eqs. 33–34",
            metrics["nd_bound_max_ratio"],
            1.0,
        ),
        claim(
            "NAGF: energy balance error (relative)",
            "eq. 35",
            metrics["nagf_energy_balance_rel_error"],
            2e-2,
        ),
    ]
    return metrics, arrays, claims


def draw(folder: Path):
    plt = figure_style()
    res, a = load(folder)
    h = res["config"]["layer"]
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.6))
    for col, (c, dname, title) in enumerate(
        (
            ("gf", "gd", "GF / GD"),
            ("nd", "dnd", "ND / eq. 21"),
            ("nagf", "dnagd", "NAGF / NAGD"),
        )
    ):
        ax = axes[0, col]
        ax2 = ax.twinx()
        ax.plot(
            a[f"{c}_ts"],
            a[f"{c}_norms"][:, 0],
            color="tab:blue",
            label=f"‖W{h}‖² (flow)",
        )
        ax2.plot(
            a[f"{c}_ts"],
            a[f"{c}_norms"][:, 1],
            color="tab:red",
            label=f"‖W{h + 1}‖² (flow)",
        )
        ax.plot(
            a[f"{dname}_ts"],
            a[f"{dname}_norms"][:, 0],
            ":",
            color="tab:blue",
            label="discrete",
        )
        ax2.plot(a[f"{dname}_ts"], a[f"{dname}_norms"][:, 1], ":", color="tab:red")
        ax.set_ylabel(f"‖W{h}‖²", color="tab:blue")
        ax2.set_ylabel(f"‖W{h + 1}‖²", color="tab:red")
        ax.set_title(title)
        ax.set_xlabel("t")
        ax2.spines["right"].set_visible(True)
        ax.legend(loc="upper left")
        ax = axes[1, col]
        if c == "gf":
            d = a["gf_norms"][:, 0] - a["gf_norms"][:, 1]
            ax.plot(a["gf_ts"], d - d[0], label="GF: Δ(‖W2‖² − ‖W3‖²)")
            dg = a["gd_norms"][:, 0] - a["gd_norms"][:, 1]
            ax.plot(a["gd_ts"], dg - dg[0], ":", label="GD: raw")
            ax.plot(
                a["gd_ts"],
                a["gd_corrected"] - a["gd_corrected"][0],
                "--",
                label="GD: corrected",
            )
            ax.set_title("eq. 31: the difference is conserved")
        else:
            ax.plot(a[f"{c}_ts"], a[f"{c}_residual"], label="Table 2 residual")
            ax.set_title(f"{c.upper()}: Table 2 residual form")
        ax.set_xlabel("t")
        ax.legend()
    fig.suptitle(
        f"Figure 1: ReLU {res['metrics']['n_params']:,}-parameter network, layers {h} and {h + 1}"
    )
    fig.tight_layout()
    save_figure(fig, folder, "figure1")
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    ts = a["nd_ts"]
    axes[0].plot(
        ts, a["nd_S"] - a["nd_S"][0], label="Σ_h |‖W_h‖²−‖W_h+1‖²| − (same at 0)"
    )
    axes[0].plot(ts, a["nd_bound"], "--", label="4 L(w0) t² (eqs. 33–34)")
    axes[0].set_yscale("symlog", linthresh=1e-3)
    axes[0].set_xlabel("t")
    axes[0].legend()
    axes[0].set_title("ND")
    axes[1].plot(a["nagf_ts"], a["nagf_energy"], label="½‖ẇ‖² + L")
    axes[1].plot(
        a["nagf_ts"], a["nagf_energy_predicted"], "--", label="E(t0) − ∫ 3/t ‖ẇ‖² dt"
    )
    axes[1].set_xlabel("t")
    axes[1].legend()
    axes[1].set_title("NAGF energy decay (eq. 35)")
    fig.tight_layout()
    save_figure(fig, folder, "bounds")


def main(*, seed=0, quick=False, out=DEFAULT_OUT, data="digits", data_dir=None):
    return run_experiment(
        NAME,
        config=config_for(quick, seed, data, data_dir),
        compute=compute,
        draw=draw,
        out=out,
        quick=quick,
    )
