r"""Section 6, Table 5, eqs. 47–48: rotation-invariant data.

If the training set is invariant under rotations of the inputs, $W_1 \mapsto W_1Q$ leaves
the loss unchanged, with generators $\xi_P = (W_1P, 0, \ldots)$ for skew $P$ (eq. 44).
Noether gives the skew matrix $S = \dot W_1^\top W_1 - W_1^\top\dot W_1$:

- ND: $S$ is conserved;
- GF: $S = 0$ at all times;
- NAGF: $t^3 S$ is conserved, so $S$ decays like $t^{-3}$.

We build such a loss: 2-D inputs, each base point augmented by $N$ equally spaced
rotations, labels that depend on the radius only, and a smooth (tanh) network, so that
the invariance holds to near rounding; its `symmetry_residual` is reported.
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

NAME = "data_symmetry"


def config_for(quick, seed):
    # ND turns the loss's potential energy into growing first-layer weights; the
    # rotation-augmented loss stays invariant (to ~1e-12) only while |W1| is moderate,
    # which with 256 rotations lasts until t ≈ 4 (checked along the path below).
    return {
        "seed": seed,
        "n_base": 12,
        "n_rotations": 256,
        "classes": 3,
        "hidden": [8, 8] if quick else [16, 16],
        "activation": "tanh",
        "t_nd": 4.0,
        "nagf_t0": 1.0,
        "t_nagf": 10.0 if quick else 40.0,
        "t_gf": 10.0 if quick else 40.0,
        "velocity_scale": 0.3,
        "n_save": 40 if quick else 120,
        "rtol": 1e-10,
        "atol": 1e-12,
    }


def make_data(cfg):
    rng = np.random.default_rng(cfg["seed"])
    r = rng.uniform(0.3, 2.0, cfg["n_base"])
    phi = rng.uniform(0, 2 * np.pi, cfg["n_base"])
    labels = np.minimum((r - 0.3) / (1.7 / cfg["classes"]), cfg["classes"] - 1).astype(
        np.int32
    )
    thetas = 2 * np.pi * np.arange(cfg["n_rotations"]) / cfg["n_rotations"]
    ang = (phi[:, None] + thetas[None, :]).ravel()
    rr = np.repeat(r, cfg["n_rotations"])
    x = np.stack([rr * np.cos(ang), rr * np.sin(ang)], axis=1)
    return x, np.repeat(labels, cfg["n_rotations"])


def make_problem(cfg):
    """The rotation-invariant loss, a tanh network and a random initial velocity
    (shared with `discrete_vs_continuous`). Returns `(x, y, loss, model, v0)`."""
    import jax
    import jax.numpy as jnp

    from lagrangian_nn import nn

    x, y = make_data(cfg)
    loss = nn.make_loss(jnp.asarray(x), jnp.asarray(y))
    acts = [nn.Tanh()] * len(cfg["hidden"]) + [nn.Identity()]
    model = N.build(
        [2, *cfg["hidden"], cfg["classes"]], acts, bias=False, seed=cfg["seed"]
    )
    leaves, tree = jax.tree.flatten(model)
    keys = jax.random.split(jax.random.key(cfg["seed"] + 1), len(leaves))
    v0 = jax.tree.unflatten(
        tree,
        [
            cfg["velocity_scale"] * jax.random.normal(k, z.shape)
            for k, z in zip(keys, leaves)
        ],
    )
    return x, y, loss, model, v0


def compute(cfg):
    enable_float64()
    import jax
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics, nn

    x, y, loss, model, v0 = make_problem(cfg)
    P = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
    gen = nn.rotate_inputs(model, P)
    r = lnn.symmetry_residual(loss, gen)
    g = jax.grad(loss)(model)
    xi = gen.xi(0.0, model)
    rel = float(
        jnp.abs(r(model))
        / jnp.sqrt(lnn._tree.tree_dot(g, g) * lnn._tree.tree_dot(xi, xi))
    )
    metrics = {"symmetry_residual_relative": rel, "n_samples": int(x.shape[0])}
    tol = dict(rtol=cfg["rtol"], atol=cfg["atol"], max_steps=500_000)
    n = cfg["n_save"]
    nd = lnn.simulate(
        dynamics.newtonian(loss),
        model,
        v0,
        t0=0.0,
        t1=cfg["t_nd"],
        ts=jnp.linspace(0, cfg["t_nd"], n),
        **tol,
    )
    t0 = cfg["nagf_t0"]
    ag = lnn.simulate(
        dynamics.nesterov(loss),
        model,
        v0,
        t0=t0,
        t1=cfg["t_nagf"],
        ts=jnp.geomspace(t0, cfg["t_nagf"], n),
        **tol,
    )
    gf = lnn.simulate(
        dynamics.gradient_flow(loss),
        model,
        t0=0.0,
        t1=cfg["t_gf"],
        ts=jnp.linspace(0, cfg["t_gf"], n),
        **tol,
    )
    S = lambda t, q, v: nn.rotation_quantity(q, v)[0, 1]
    arrays = {"x": x, "y": y}
    for name, tr in (("nd", nd), ("nagf", ag), ("gf", gf)):
        arrays[f"{name}_ts"] = np.asarray(tr.ts)
        arrays[f"{name}_S"] = N.along(tr, S)
        arrays[f"{name}_loss"] = N.along(tr, lambda t, q, v: loss(q))
    for name, tr in (("nd", nd), ("nagf", ag), ("gf", gf)):
        metrics[f"{name}_max_symmetry_residual_along_path"] = float(
            jnp.max(jnp.abs(jax.vmap(r)(tr.q)))
        )
    for name, tr in (("nd", nd), ("nagf", ag), ("gf", gf)):
        metrics[f"{name}_max_symmetry_residual_along_path"] = float(
            jnp.max(jnp.abs(jax.vmap(r)(tr.q)))
        )
    Snd, Sag, Sgf = arrays["nd_S"], arrays["nagf_S"], arrays["gf_S"]
    tag = arrays["nagf_ts"]
    metrics["nd_S_initial"] = float(Snd[0])
    metrics["nd_S_relative_drift"] = float(np.max(np.abs(Snd - Snd[0])) / abs(Snd[0]))
    metrics["gf_S_max_abs"] = float(np.max(np.abs(Sgf)))
    t3S = tag**3 * Sag
    metrics["nagf_t3S_relative_drift"] = float(
        np.max(np.abs(t3S - t3S[0])) / abs(t3S[0])
    )
    metrics["nagf_S_decay_slope"] = float(
        np.polyfit(np.log(tag), np.log(np.abs(Sag)), 1)[0]
    )
    W1 = N.along(gf, lambda t, q, v: jnp.sum(q.weights[0] ** 2))
    metrics["gf_W1_change"] = float(np.ptp(W1))
    claims = [
        claim(
            "loss invariance: relative symmetry_residual",
            "Section 6 (augmented data)",
            rel,
            1e-10,
        ),
        claim(
            "ND: S = Ẇ1ᵀW1 − W1ᵀẆ1 conserved (relative drift)",
            "Table 5",
            metrics["nd_S_relative_drift"],
            1e-8,
        ),
        claim("GF: |S| (zero)", "Table 5", metrics["gf_S_max_abs"], 1e-9),
        claim(
            "NAGF: t³ S conserved (relative drift)",
            "eqs. 46–48",
            metrics["nagf_t3S_relative_drift"],
            1e-8,
        ),
        claim(
            "NAGF: |slope of log|S| vs log t + 3|",
            "S ∝ t⁻³",
            abs(metrics["nagf_S_decay_slope"] + 3),
            1e-6,
        ),
    ]
    return metrics, arrays, claims


def draw(folder: Path):
    plt = figure_style()
    res, a = load(folder)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.1))
    axes[0].scatter(a["x"][:, 0], a["x"][:, 1], c=a["y"], s=2, cmap="viridis")
    axes[0].set_aspect("equal")
    axes[0].set_title(f"{res['config']['n_rotations']} rotations of each point")
    axes[1].plot(a["nd_ts"], a["nd_S"])
    axes[1].set_title("ND: S conserved")
    axes[1].set_xlabel("t")
    axes[1].set_ylim(a["nd_S"][0] - 1, a["nd_S"][0] + 1)
    axes[2].loglog(a["nagf_ts"], np.abs(a["nagf_S"]), label="|S|")
    axes[2].loglog(
        a["nagf_ts"],
        np.abs(a["nagf_S"][0]) * (a["nagf_ts"] / a["nagf_ts"][0]) ** -3,
        "--",
        label="∝ t⁻³",
    )
    axes[2].set_title(f"NAGF: slope {res['metrics']['nagf_S_decay_slope']:.6f}")
    axes[2].legend()
    axes[2].set_xlabel("t")
    axes[3].plot(a["gf_ts"], a["gf_S"])
    axes[3].set_title("GF: S = 0")
    axes[3].set_xlabel("t")
    axes[3].set_ylim(-1, 1)
    axes[1].set_ylabel("S = (Ẇ1ᵀW1 − W1ᵀẆ1)[0, 1]")
    fig.tight_layout()
    save_figure(fig, folder, "data_symmetry")


def main(*, seed=0, quick=False, out=DEFAULT_OUT):
    return run_experiment(
        NAME,
        config=config_for(quick, seed),
        compute=compute,
        draw=draw,
        out=out,
        quick=quick,
    )
