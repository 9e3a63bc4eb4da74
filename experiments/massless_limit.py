r"""Section 3: gradient flow is the massless limit of damped dynamics.

`damped(loss, κ)` is the Lagrangian $e^{t/\kappa}(\tfrac\kappa2\|\dot w\|^2 - L(w))$ with
equation of motion $\kappa\ddot w + \dot w + \nabla L = 0$. As $\kappa \to 0$ its paths
approach gradient flow, $\dot w = -\nabla L$, with a deviation of order $\kappa$. We
integrate it for $\kappa$ from $10^{-1}$ down to $10^{-6}$ ($t/\kappa$ up to $\sim10^7$,
where $e^{t/\kappa}$ would overflow; the library cancels it analytically) with an
implicit solver, since the small-$\kappa$ system is stiff, and fit the slope of
$\max_t\|w_\kappa(t) - w_{GF}(t)\|$ against $\kappa$ on log-log axes.

Two losses: the rotation-invariant $(\|w\|^2-1)^2$ of Section 6.1, and an asymmetric
loss with no continuous symmetry.
"""

from pathlib import Path

import numpy as np

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

NAME = "massless_limit"


def config_for(quick: bool, seed: int) -> dict:
    return {
        "seed": seed,
        "kappas": [1e-1, 1e-2, 1e-3, 1e-4]
        if quick
        else [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
        "t1": 3.0 if quick else 10.0,
        "n_save": 200 if quick else 1000,
        "w0": [0.1, 0.4, -0.2],
        "initial_velocity": "rest",
        "solver": "Kvaerno5",
        # tighter than ~1e-9 the implicit solver stalls for κ = 1e-6 (the fast variable
        # carries rounding errors amplified by 1/κ)
        "rtol": 1e-9,
        "atol": 1e-11,
        "losses": {
            "rotational": "(|w|^2 - 1)^2",
            "asymmetric": "(w1 - 1)^2 + 2 (w2 + w1^2/2)^2 + w3^2/2 + w1 w3 / 4",
        },
    }


def _losses():
    import jax.numpy as jnp

    return {
        "rotational": lambda w: (jnp.sum(w**2) - 1.0) ** 2,
        "asymmetric": lambda w: (
            (w[0] - 1.0) ** 2
            + 2.0 * (w[1] + 0.5 * w[0] ** 2) ** 2
            + 0.5 * w[2] ** 2
            + 0.25 * w[0] * w[2]
        ),
    }


def compute(cfg: dict):
    enable_float64()
    import diffrax
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics

    w0 = jnp.array(cfg["w0"])
    v0 = jnp.zeros_like(w0)
    ts = jnp.linspace(0.0, cfg["t1"], cfg["n_save"])
    kappas = np.array(cfg["kappas"])
    tol = dict(rtol=cfg["rtol"], atol=cfg["atol"], max_steps=1_000_000)
    metrics, arrays, claims = {}, {"ts": ts, "kappas": kappas}, []
    for name, loss in _losses().items():
        gf = lnn.simulate(
            dynamics.gradient_flow(loss), w0, t0=0.0, t1=cfg["t1"], ts=ts, **tol
        )
        arrays[f"{name}_gf"] = gf.q
        devs = []
        for kappa in progress(kappas, desc=f"{name}: κ sweep"):
            traj = lnn.simulate(
                dynamics.damped(loss, float(kappa)),
                w0,
                v0,
                t0=0.0,
                t1=cfg["t1"],
                ts=ts,
                solver=diffrax.Kvaerno5(),
                **tol,
            )
            devs.append(float(jnp.max(jnp.linalg.norm(traj.q - gf.q, axis=1))))
            arrays[f"{name}_kappa_{kappa:.0e}"] = traj.q
        devs = np.array(devs)
        # fit on the κ ≤ 1e-2 part, where the first-order asymptotics hold
        fit = kappas <= 1e-2
        slope, intercept = np.polyfit(np.log10(kappas[fit]), np.log10(devs[fit]), 1)
        arrays[f"{name}_deviation"] = devs
        metrics[f"{name}_max_deviation"] = devs
        metrics[f"{name}_slope"] = float(slope)
        metrics[f"{name}_intercept"] = float(intercept)
        metrics[f"{name}_deviation_over_kappa_smallest"] = float(devs[-1] / kappas[-1])
        claims.append(
            claim(
                f"{name}: |slope - 1| of deviation vs κ",
                "Section 3 (massless limit)",
                abs(slope - 1.0),
                0.05,
            )
        )
    metrics["max_t_over_kappa"] = float(cfg["t1"] / kappas.min())
    return metrics, arrays, claims


def draw(folder: Path):
    plt = figure_style()
    res, a = load(folder)
    m = res["metrics"]
    kappas = a["kappas"]
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for name, marker in (("rotational", "o"), ("asymmetric", "s")):
        devs = a[f"{name}_deviation"]
        ax.loglog(
            kappas, devs, marker, label=f"{name} (slope {m[f'{name}_slope']:.3f})"
        )
        ax.loglog(
            kappas,
            10 ** m[f"{name}_intercept"] * kappas ** m[f"{name}_slope"],
            "--",
            color="0.5",
            linewidth=0.8,
        )
    ax.set_xlabel(r"mass $\kappa$")
    ax.set_ylabel(r"$\max_t \|w_\kappa(t) - w_{GF}(t)\|$")
    ax.set_title("Damped dynamics → gradient flow")
    ax.legend()
    save_figure(fig, folder, "deviation_vs_kappa")

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, name in zip(axes, ("rotational", "asymmetric")):
        gf = a[f"{name}_gf"]
        for i, kappa in enumerate(kappas):
            q = a[f"{name}_kappa_{kappa:.0e}"]
            ax.plot(
                q[:, 0],
                q[:, 1],
                color=plt.cm.viridis(i / max(1, len(kappas) - 1)),
                label=rf"$\kappa$ = {kappa:.0e}",
            )
        ax.plot(gf[:, 0], gf[:, 1], "k--", label="GF")
        ax.set_xlabel("$w_1$")
        ax.set_ylabel("$w_2$")
        ax.set_title(f"{name} loss")
    axes[0].legend(ncol=2)
    fig.suptitle("Paths projected on $(w_1, w_2)$")
    fig.tight_layout()
    save_figure(fig, folder, "trajectories")


def main(*, seed: int = 0, quick: bool = False, out=DEFAULT_OUT) -> dict:
    return run_experiment(
        NAME, config=config_for(quick, seed), compute=compute, draw=draw, out=out
    )
