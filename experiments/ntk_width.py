r"""Section 7, eqs. 49–51: time symmetry bounds how far wide networks move.

ND conserves the energy $\tfrac12\|\dot w\|^2 + L(w)$ (Example 5). Started from rest,
$\|\dot w\|^2 \le 2L(w_0)$, so the mean speed of the $m$ parameters obeys
$\frac1m\sum_i|\dot w_i| \le \sqrt{2L(w_0)/m}$ (eq. 49): the wider the network, the
slower each weight. We run ND from rest on one-hidden-layer ReLU networks of growing
width with a squared loss (the setting of the paper's proof sketch), and fit on
log-log axes the largest mean speed and the largest single-weight displacement
$\max_i|w_i(T) - w_i(0)|$ (eq. 51) against $m$. Only eq. 49 follows from the symmetry
(as the paper says), so it is checked as a bound; the slopes are reported, not
asserted: eq. 51 is the NTK literature's rate, which finite widths need not meet.
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
    progress,
    run_experiment,
    save_figure,
)

NAME = "ntk_width"
USES_DATA = True


def config_for(quick, seed, data="digits", data_dir=None):
    return {
        "seed": seed,
        **N.data_config(quick, data, data_dir, n=100 if quick else 200),
        "widths": [16, 64, 256] if quick else [16, 64, 256, 1024, 4096],
        "t1": 2.0 if quick else 5.0,
        "n_save": 20 if quick else 40,
        "loss": "squared_error on one-hot targets",
        "rtol": 1e-7,
        "atol": 1e-9,
    }


def compute(cfg):
    enable_float64()
    import jax
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics, nn

    x, y = N.load_data(cfg)
    loss = nn.make_loss(x, jax.nn.one_hot(y, 10), kind="squared_error")
    rows = {
        k: [] for k in ("m", "L0", "mean_speed", "bound", "max_disp", "energy_drift")
    }
    for width in progress(cfg["widths"], desc="widths"):
        model = N.build(
            [x.shape[1], width, 10], [nn.ReLU(), nn.Identity()], seed=cfg["seed"]
        )
        m = sum(int(w.size) for w in model.weights)
        rest = jax.tree.map(jnp.zeros_like, model)
        L = dynamics.newtonian(loss)
        traj = lnn.simulate(
            L,
            model,
            rest,
            t0=0.0,
            t1=cfg["t1"],
            ts=jnp.linspace(0, cfg["t1"], cfg["n_save"]),
            rtol=cfg["rtol"],
            atol=cfg["atol"],
            max_steps=500_000,
        )
        speed = N.along(
            traj, lambda t, q, v: sum(jnp.sum(jnp.abs(w)) for w in v.weights) / m
        )
        disp = max(float(jnp.max(jnp.abs(w[-1] - w[0]))) for w in traj.q.weights)
        E = N.along(traj, lnn.energy(L))
        L0 = float(loss(model))
        rows["m"].append(m)
        rows["L0"].append(L0)
        rows["mean_speed"].append(float(np.max(speed)))
        rows["bound"].append(float(np.sqrt(2 * L0 / m)))
        rows["max_disp"].append(disp)
        rows["energy_drift"].append(float(np.max(np.abs(E - E[0])) / abs(E[0])))
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    logm = np.log(arrays["m"])
    metrics = {k: v for k, v in rows.items()}
    metrics["mean_speed_slope"] = float(
        np.polyfit(logm, np.log(arrays["mean_speed"]), 1)[0]
    )
    metrics["max_disp_slope"] = float(
        np.polyfit(logm, np.log(arrays["max_disp"]), 1)[0]
    )
    metrics["max_speed_over_bound"] = float(
        np.max(arrays["mean_speed"] / arrays["bound"])
    )
    claims = [
        claim(
            "mean |ẇ_i| / √(2L(w0)/m), worst width",
            "eq. 49",
            metrics["max_speed_over_bound"],
            1.0,
        ),
        claim(
            "ND energy drift (relative), worst width",
            "Example 5",
            float(np.max(arrays["energy_drift"])),
            1e-4,  # ReLU kinks limit the adaptive solver's accuracy at rtol 1e-7
        ),
    ]
    return metrics, arrays, claims


def draw(folder: Path):
    plt = figure_style()
    res, a = load(folder)
    m = res["metrics"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].loglog(
        a["m"],
        a["mean_speed"],
        "o-",
        label=f"max_t mean |ẇ_i| (slope {m['mean_speed_slope']:.2f})",
    )
    axes[0].loglog(a["m"], a["bound"], "--", label="√(2 L(w0)/m) (eq. 49)")
    axes[0].set_xlabel("parameters m")
    axes[0].legend()
    axes[0].set_title("ND from rest: speed")
    axes[1].loglog(
        a["m"],
        a["max_disp"],
        "s-",
        label=f"max_i |w_i(T) − w_i(0)| (slope {m['max_disp_slope']:.2f})",
    )
    axes[1].loglog(
        a["m"],
        a["max_disp"][0] * (a["m"] / a["m"][0]) ** -0.5,
        "--",
        label="∝ m^(−1/2)",
    )
    axes[1].set_xlabel("parameters m")
    axes[1].legend()
    axes[1].set_title("displacement (eq. 51)")
    fig.tight_layout()
    save_figure(fig, folder, "ntk_width")


def main(*, seed=0, quick=False, out=DEFAULT_OUT, data="digits", data_dir=None):
    return run_experiment(
        NAME,
        config=config_for(quick, seed, data, data_dir),
        compute=compute,
        draw=draw,
        out=out,
        quick=quick,
    )
