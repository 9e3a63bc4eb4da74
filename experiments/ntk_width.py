r"""Section 7, eqs. 49–51: time symmetry bounds how far wide networks move.

ND conserves the energy $\tfrac12\|\dot w\|^2 + L(w)$ (Example 5). Started from rest,
the kinetic energy never exceeds the budget it starts with, $\tfrac12\|\dot w\|^2 \le
L(w_0)$, so the mean speed of the $m$ parameters obeys
$\frac1m\sum_i|\dot w_i| \le \sqrt{2L(w_0)/m}$ (eq. 49): the wider the network, the
slower each weight. We run ND from rest on one-hidden-layer ReLU networks of growing
width with a squared loss (the setting of the paper's proof sketch) and check, at every
width, the ratio $\max_t \tfrac12\|\dot w\|^2 / L(w_0) \le 1$, and the energy
conservation itself. The control of each is the wrong dynamics, gradient flow from the
same starts: its speed $\|\nabla L\|$ is bounded by no energy, and
$\tfrac12\|\nabla L\|^2/L(w_0)$ grows with the width (the neural tangent kernel's
scale grows with it), so at the widest width the same ratio misses the bound by
orders of magnitude; and GF descends the loss, so the same energy drifts. Eq. 49 and
the mean displacement $\frac1m\sum_i|w_i(T) - w_i(0)| \le T\sqrt{2L(w_0)/m}$ (eq. 49
integrated over time; eq. 51 averaged over the weights) follow from the first claim
and are reported as consequences. The fitted slopes of the mean speed and of the
largest single-weight displacement $\max_i|w_i(T) - w_i(0)|$ (eq. 51) against $m$ are
reported, not asserted: eq. 51 is the NTK literature's rate, which finite widths need
not meet.
"""

from pathlib import Path

import numpy as np

from . import _networks as N
from ._common import claim, control, enable_float64, figure, progress

NAME = "ntk_width"
USES_DATA = True


def config_for(quick, seed, data="digits", data_dir=None):
    return {
        "seed": seed,
        **N.data_config(quick, data, data_dir, n=40 if quick else 200),
        # quick: two widths (each compiles its own ND and GF solves), the widest with
        # 2,048 hidden units, where GF's ½‖∇L‖²/L(w0), the control, passes 100 (it
        # grows with the width: 5, 13, 140 at widths 32, 256, 2,048)
        "widths": [32, 2048] if quick else [16, 64, 256, 1024, 4096],
        # quick: ND's kinetic energy peaks before t = 1 at the widths above (its max
        # over the saved times, 0.87 of L(w0) at 2,048, is the same as up to t = 1.5)
        "t1": 1.0 if quick else 5.0,
        "n_save": 12 if quick else 40,
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
    L = dynamics.newtonian(loss)
    run = lambda *system: lnn.simulate(
        *system,
        t0=0.0,
        t1=cfg["t1"],
        ts=jnp.linspace(0, cfg["t1"], cfg["n_save"]),
        rtol=cfg["rtol"],
        atol=cfg["atol"],
        max_steps=500_000,
    )
    keys = ("m", "L0", "mean_speed", "gf_mean_speed", "l2_speed", "gf_l2_speed")
    keys += ("bound", "max_disp", "mean_disp", "energy_drift")
    rows = {k: [] for k in keys}
    for width in progress(cfg["widths"], desc="widths"):
        model = N.build(
            [x.shape[1], width, 10], [nn.ReLU(), nn.Identity()], seed=cfg["seed"]
        )
        m = sum(int(w.size) for w in model.weights)
        rest = jax.tree.map(lambda w: jnp.asarray(np.zeros_like(w)), model)
        traj = run(L, model, rest)
        # the control, the wrong dynamics: GF (ẇ = −∇L) from the same start, along
        # which the same speeds and the same energy ½‖ẇ‖² + L are measured
        traj_gf = run(dynamics.gradient_flow(loss), model)
        # the speeds and displacements from the saved states, in NumPy (no program
        # to compile per width); the energy, which needs L, through `along`
        E = N.along(traj, lnn.energy(L))
        L0 = float(E[0])  # L(w0): ND starts from rest
        rows["m"].append(m)
        rows["L0"].append(L0)
        for key, tr in (("", traj), ("gf_", traj_gf)):
            v = [np.abs(np.asarray(w)) for w in tr.qdot.weights]
            rows[key + "mean_speed"].append(float(np.max(_per_time(v, 1) / m)))
            rows[key + "l2_speed"].append(float(np.max(np.sqrt(_per_time(v, 2)))))
        q = [np.asarray(w) for w in traj.q.weights]
        moved = [np.abs(w[-1] - w[0]) for w in q]
        rows["bound"].append(float(np.sqrt(2 * L0 / m)))
        rows["max_disp"].append(max(float(np.max(d)) for d in moved))
        rows["mean_disp"].append(float(sum(np.sum(d) for d in moved)) / m)
        rows["energy_drift"].append(float(np.max(np.abs(E - E[0])) / abs(E[0])))
        if width == cfg["widths"][0]:
            # the energy's control: the same energy along GF, smallest width
            Egf = N.along(traj_gf, lnn.energy(L))
            control_energy_drift = float(np.max(np.abs(Egf - Egf[0])) / abs(Egf[0]))
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    # ½‖ẇ‖² / L(w0), the kinetic energy in units of the energy budget: at most 1 for
    # ND from rest at every width; along GF it is ½‖∇L‖²/L(w0), which grows with m
    arrays["kinetic_ratio"] = arrays["l2_speed"] ** 2 / (2 * arrays["L0"])
    arrays["gf_kinetic_ratio"] = arrays["gf_l2_speed"] ** 2 / (2 * arrays["L0"])
    logm = np.log(arrays["m"])
    slope = lambda k: float(np.polyfit(logm, np.log(arrays[k]), 1)[0])
    metrics = {k: v for k, v in rows.items()}
    metrics["kinetic_ratio"] = arrays["kinetic_ratio"].tolist()
    metrics["gf_kinetic_ratio"] = arrays["gf_kinetic_ratio"].tolist()
    metrics["control_gf_energy_drift_smallest_width"] = control_energy_drift
    metrics["mean_speed_slope"] = slope("mean_speed")
    metrics["control_gf_mean_speed_slope"] = slope("gf_mean_speed")
    metrics["l2_speed_slope"] = slope("l2_speed")
    metrics["max_disp_slope"] = slope("max_disp")
    metrics["max_speed_over_bound"] = float(
        np.max(arrays["mean_speed"] / arrays["bound"])
    )
    metrics["max_mean_disp_over_bound"] = float(
        np.max(arrays["mean_disp"] / (cfg["t1"] * arrays["bound"]))
    )
    claims = [
        claim(
            "max_t ½‖ẇ‖² / L(w0) (ND from rest), worst width",
            "Section 7: ‖ẇ‖² ≤ 2L(w(0)), the bound behind eq. 49",
            float(np.max(arrays["kinetic_ratio"])),
            1.0,
            basis="trajectory",
            control=control(
                "the wrong dynamics: the same ratio along GF from the same start, "
                "widest width (its speed ‖∇L‖ is bounded by no energy: ½‖∇L‖²/L "
                "grows with the width)",
                float(arrays["gf_kinetic_ratio"][-1]),
            ),
        ),
        claim(
            "ND energy drift (relative), worst width",
            "Example 5",
            float(np.max(arrays["energy_drift"])),
            1e-4,  # ReLU kinks limit the adaptive solver's accuracy at rtol 1e-7
            basis="trajectory",
            control=control(
                "the wrong dynamics: the same energy along GF (ẇ = −∇L descends L), "
                "smallest width",
                metrics["control_gf_energy_drift_smallest_width"],
            ),
        ),
        claim(
            "mean |ẇ_i| / √(2L(w0)/m), worst width",
            "eq. 49 (from the kinetic energy bound)",
            metrics["max_speed_over_bound"],
            1.0,
            basis="consequence",
        ),
        claim(
            "mean |w_i(T) − w_i(0)| / (T √(2L(w0)/m)), worst width",
            "eq. 51, mean over weights (eq. 49 integrated over time)",
            metrics["max_mean_disp_over_bound"],
            1.0,
            basis="consequence",
        ),
    ]
    return metrics, arrays, claims


def _per_time(leaves, power):
    """Σ |x|^power over the entries of `leaves` (arrays with time on axis 0), per
    saved time."""
    return sum(np.sum(x.reshape(len(x), -1) ** power, axis=1) for x in leaves)


def draw(folder: Path):
    st, plt, res, a = figure(folder)
    m = res["metrics"]
    fig, axes = plt.subplots(1, 3, figsize=(st.DOUBLE, 2.5))
    nd, gf = st.color("nd"), st.color("gf")
    control = dict(color=gf, mfc="none", ls=":")
    axes[0].loglog(a["m"], a["kinetic_ratio"], "o-", color=nd, label="ND from rest")
    axes[0].loglog(a["m"], a["gf_kinetic_ratio"], "^", label="control: GF", **control)
    axes[0].axhline(1.0, **st.PREDICTED, label="bound: 1 (energy conserved)")
    axes[0].set_ylabel(r"$\max_t \frac{1}{2}\|\dot w\|^2 / L(w_0)$")
    axes[0].set_title("(a) kinetic energy / budget")
    axes[0].legend(loc="upper left")

    def fitted(ax, key, marker, text):
        slope = m[f"{key}_slope"]
        ax.loglog(a["m"], a[key], marker, color=nd, label=f"{text} (slope {slope:.2f})")

    fitted(axes[1], "mean_speed", "o-", "$\\max_t$ mean$_i |\\dot w_i|$")
    axes[1].loglog(
        a["m"], a["bound"], **st.PREDICTED, label=r"$\sqrt{2L(w_0)/m}$ (eq. 49)"
    )
    axes[1].loglog(
        a["m"],
        a["gf_mean_speed"],
        "^",
        label=f"control: GF (slope {m['control_gf_mean_speed_slope']:.2f})",
        **control,
    )
    axes[1].set_ylabel("speed (weight units per unit time)")
    axes[1].set_title("(b) mean speed (eq. 49)")
    axes[1].set_ylim(top=axes[1].get_ylim()[1] * 30)
    axes[1].legend(loc="upper right")
    fitted(axes[2], "max_disp", "s-", "$\\max_i |w_i(T) - w_i(0)|$")
    axes[2].loglog(
        a["m"],
        a["max_disp"][0] * (a["m"] / a["m"][0]) ** -0.5,
        **st.PREDICTED,
        label="$\\propto m^{-1/2}$",
    )
    axes[2].set_ylabel("largest weight displacement")
    axes[2].set_title("(c) displacement (eq. 51)")
    axes[2].set_ylim(top=axes[2].get_ylim()[1] * 3)
    axes[2].legend(loc="upper right")
    for ax in axes:
        ax.set_xlabel("number of parameters $m$")
    st.caption(
        fig,
        "ND from rest on networks of growing width. (a) Energy conservation caps the "
        "kinetic energy at the initial loss at every width; along gradient flow from "
        "the same starts, whose speed no energy bounds, it grows with the width. "
        "(b) Hence the mean speed of a single weight is at most √(2L(w0)/m) (eq. 49), "
        "and (c) the weights barely move for wide networks (the NTK regime).",
    )
    st.save(fig, folder, "ntk_width")
