r"""Section 6, Table 5, eqs. 47–48: rotation-invariant data.

If the training set is invariant under rotations of the inputs, $W_1 \mapsto W_1Q$ leaves
the loss unchanged, with generators $\xi_P = (W_1P, 0, \ldots)$ for skew $P$ (eq. 44).
Noether gives the skew matrix $S = \dot W_1^\top W_1 - W_1^\top\dot W_1$:

- ND: $S$ is conserved;
- GF: $S = 0$ at all times;
- NAGF: $t^3 S$ is conserved, so $S$ decays like $t^{-3}$.

We build such a loss: 2-D inputs, each base point augmented by $N$ equally spaced
rotations, labels that depend on the radius only, and a smooth (tanh) network, so that
the invariance holds to near rounding; its `symmetry_residual` is reported. The negative
control runs the same flows on the same points stretched by diag(1.5, 1/1.5) (ellipses
instead of circles), which no rotation leaves invariant. GF's $S = 0$ is an identity
for invariant data (under GF, $S$ is $\langle\xi, \dot w\rangle = -\langle\xi,
\nabla L\rangle = 0$ at every point), reported as a consequence, and so is the fitted
decay slope of $S$, which restates the $t^3S$ law.
"""

from pathlib import Path

import numpy as np

from . import _networks as N
from ._common import claim, control, enable_float64, figure

NAME = "data_symmetry"


def config_for(quick, seed):
    # ND turns the loss's potential energy into growing first-layer weights; the
    # rotation-augmented loss stays invariant (to ~1e-12) only while |W1| is moderate,
    # which with 256 rotations lasts until t ≈ 4 (checked along the path below).
    return {
        "seed": seed,
        "n_base": 12,
        "n_rotations": 256,
        # negative control: the same points stretched by diag(s, 1/s)
        "control_stretch": 1.5,
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


def make_data(cfg, stretch: float = 1.0):
    """Base points, each rotated `n_rotations` times (equally spaced angles), labels
    from the radius. With `stretch != 1` the points are then mapped by
    diag(stretch, 1/stretch) (circles become ellipses): the same number of points, no
    rotation symmetry (the negative control)."""
    rng = np.random.default_rng(cfg["seed"])
    r = rng.uniform(0.3, 2.0, cfg["n_base"])
    phi = rng.uniform(0, 2 * np.pi, cfg["n_base"])
    labels = np.minimum((r - 0.3) / (1.7 / cfg["classes"]), cfg["classes"] - 1).astype(
        np.int32
    )
    thetas = 2 * np.pi * np.arange(cfg["n_rotations"]) / cfg["n_rotations"]
    ang = (phi[:, None] + thetas[None, :]).ravel()
    rr = np.repeat(r, cfg["n_rotations"])
    x = np.stack([stretch * rr * np.cos(ang), rr * np.sin(ang) / stretch], axis=1)
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


def _saved_quantities(loss, residual, t, q, v):
    """At a saved state: the (0, 1) entry of the charge S, the loss and the rotation
    symmetry's residual."""
    from lagrangian_nn import nn

    return {
        "S": nn.rotation_quantity(q, v)[0, 1],
        "loss": loss(q),
        "residual": residual(q),
    }


def compute(cfg):
    enable_float64()
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics, nn

    x, y, loss, model, v0 = make_problem(cfg)
    xc, yc = make_data(cfg, stretch=cfg["control_stretch"])
    loss_c = nn.make_loss(jnp.asarray(xc), jnp.asarray(yc))  # no rotation symmetry
    P = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
    gen = nn.rotate_inputs(model, P)

    def relative_residual(loss_fn, q):
        # |⟨∇L, ξ⟩| / (|∇L| |ξ|) at q
        g = jax.grad(loss_fn)(q)
        xi = gen.xi(0.0, q)
        return float(
            jnp.abs(lnn.symmetry_residual(loss_fn, gen)(q))
            / jnp.sqrt(N.tree_dot(g, g) * N.tree_dot(xi, xi))
        )

    rel = relative_residual(loss, model)
    metrics = {
        "symmetry_residual_relative": rel,
        "control_symmetry_residual_relative": relative_residual(loss_c, model),
        "n_samples": int(x.shape[0]),
    }
    tol = dict(rtol=cfg["rtol"], atol=cfg["atol"], max_steps=500_000)
    n = cfg["n_save"]
    t0 = cfg["nagf_t0"]
    runs = {}
    for tag, lf in (("", loss), ("control_", loss_c)):
        runs[f"{tag}nd"] = lnn.simulate(
            dynamics.newtonian(lf),
            model,
            v0,
            t0=0.0,
            t1=cfg["t_nd"],
            ts=jnp.linspace(0, cfg["t_nd"], n),
            **tol,
        )
        runs[f"{tag}nagf"] = lnn.simulate(
            dynamics.nesterov(lf),
            model,
            v0,
            t0=t0,
            t1=cfg["t_nagf"],
            ts=jnp.geomspace(t0, cfg["t_nagf"], n),
            **tol,
        )
    runs["gf"] = lnn.simulate(
        dynamics.gradient_flow(loss),
        model,
        t0=0.0,
        t1=cfg["t_gf"],
        ts=jnp.linspace(0, cfg["t_gf"], n),
        **tol,
    )
    arrays = {"x": x, "y": y, "control_x": xc}
    for name, tr in runs.items():
        lf = loss_c if name.startswith("control_") else loss
        # S, the loss and the symmetry residual at the saved states: the loss is an
        # argument (its data traced), so one compiled evaluation serves every run
        values = tr.evaluate(
            eqx.Partial(_saved_quantities, lf, lnn.symmetry_residual(lf, gen))
        )
        arrays[f"{name}_ts"] = np.asarray(tr.ts)
        arrays[f"{name}_S"] = np.asarray(values["S"])
        arrays[f"{name}_loss"] = np.asarray(values["loss"])
        if not name.startswith("control_"):
            metrics[f"{name}_max_symmetry_residual_along_path"] = float(
                np.max(np.abs(values["residual"]))
            )

    def rel_drift(c):
        return float(np.max(np.abs(c - c[0])) / abs(c[0]))

    for tag in ("", "control_"):
        Snd, Sag = arrays[f"{tag}nd_S"], arrays[f"{tag}nagf_S"]
        tag_ts = arrays[f"{tag}nagf_ts"]
        metrics[f"{tag}nd_S_initial"] = float(Snd[0])
        metrics[f"{tag}nd_S_relative_drift"] = rel_drift(Snd)
        metrics[f"{tag}nagf_t3S_relative_drift"] = rel_drift(tag_ts**3 * Sag)
        metrics[f"{tag}nagf_S_decay_slope"] = float(
            np.polyfit(np.log(tag_ts), np.log(np.abs(Sag)), 1)[0]
        )
    metrics["gf_S_max_abs"] = float(np.max(np.abs(arrays["gf_S"])))
    W1 = N.along(runs["gf"], lambda t, q, v: jnp.sum(q.weights[0] ** 2))
    metrics["gf_W1_change"] = float(np.ptp(W1))
    m = metrics
    ctrl = "the same run on the stretched data diag(1.5, 1/1.5)·x (no symmetry)"
    claims = [
        claim(
            "loss invariance: relative symmetry residual |⟨∇L, ξ⟩|/(|∇L||ξ|) at w0",
            "Section 6 (augmented data)",
            rel,
            1e-10,
            basis="pointwise",
            control=control(
                "the same residual for the stretched data diag(1.5, 1/1.5)·x",
                m["control_symmetry_residual_relative"],
            ),
        ),
        claim(
            "ND: S = Ẇ1ᵀW1 − W1ᵀẆ1 conserved (relative drift)",
            "Table 5",
            m["nd_S_relative_drift"],
            1e-8,
            basis="trajectory",
            control=control(ctrl, m["control_nd_S_relative_drift"]),
        ),
        claim(
            "GF: |S| = 0 (identity: under GF, S ∝ ⟨ξ, ẇ⟩ = −⟨ξ, ∇L⟩ = 0 at every point)",
            "Table 5",
            m["gf_S_max_abs"],
            1e-9,
            basis="consequence",
        ),
        claim(
            "NAGF: t³ S conserved (relative drift)",
            "eqs. 46–48",
            m["nagf_t3S_relative_drift"],
            1e-8,
            basis="trajectory",
            control=control(ctrl, m["control_nagf_t3S_relative_drift"]),
        ),
        claim(
            "NAGF: |slope of log|S| vs log t + 3| (the t³S law, fitted)",
            "S ∝ t⁻³",
            abs(m["nagf_S_decay_slope"] + 3),
            1e-6,
            basis="consequence",
        ),
    ]
    return metrics, arrays, claims


def draw(folder: Path):
    st, plt, res, a = figure(folder)
    cfg, m = res["config"], res["metrics"]
    fig, axes = plt.subplots(1, 4, figsize=(st.DOUBLE, 2.3))
    ax = axes[0]
    ax.scatter(*a["control_x"].T, color="0.8", s=0.5, lw=0, rasterized=True)
    colors = st.shades(int(a["y"].max()) + 1)
    for k, c in enumerate(colors):
        ax.scatter(*a["x"][a["y"] == k].T, color=c, s=0.5, lw=0, rasterized=True)
    ax.set_aspect("equal")
    ax.set_xlabel("input $x_1$")
    ax.set_ylabel("input $x_2$")
    ax.set_title("(a) training inputs")

    def drift(c):
        return np.maximum(np.abs(c - c[0]) / abs(c[0]), 1e-18)

    for tag, ls, label in (("", "-", "rotated data"), ("control_", ":", "control")):
        axes[1].semilogy(
            a[f"{tag}nd_ts"],
            drift(a[f"{tag}nd_S"]),
            color=st.color("nd"),
            ls=ls,
            label=label,
        )
        axes[2].loglog(
            a[f"{tag}nagf_ts"],
            np.abs(a[f"{tag}nagf_S"]),
            color=st.color("nagf"),
            ls=ls,
            label=label,
        )
    axes[1].set_title("(b) ND: $S$ conserved")
    axes[1].set_ylabel("relative change of $S_{12}$")
    axes[1].set_ylim(1e-19, 1e4)
    axes[1].legend(loc="upper center", ncol=2, columnspacing=1.0, handlelength=1.8)
    ts = a["nagf_ts"]
    axes[2].loglog(
        ts,
        np.abs(a["nagf_S"][0]) * (ts / ts[0]) ** -3,
        **st.PREDICTED,
        label="$\\propto t^{-3}$",
    )
    axes[2].set_title(f"(c) NAGF: fitted slope {m['nagf_S_decay_slope']:.4f}")
    axes[2].set_ylabel("$|S_{12}|$")
    axes[2].set_ylim(top=np.abs(a["nagf_S"][0]) * 1e3)
    axes[2].legend(loc="upper right")
    axes[3].semilogy(
        a["gf_ts"], np.maximum(np.abs(a["gf_S"]), 1e-30), color=st.color("gf")
    )
    axes[3].set_ylim(1e-20, 1)
    axes[3].set_title(f"(d) GF: $S = 0$ (max {m['gf_S_max_abs']:.0e})")
    axes[3].set_ylabel("$|S_{12}|$")
    for ax in axes[1:]:
        ax.set_xlabel("time $t$")
    fig.suptitle(
        "Rotation-invariant data: the charge $S = \\dot W_1^\\top W_1 - W_1^\\top "
        "\\dot W_1$ (Table 5, eqs. 47–48)"
    )
    st.caption(
        fig,
        f"(a) The training inputs: each of {cfg['n_base']} base points rotated "
        f"{cfg['n_rotations']} times, coloured by class (the label depends on the radius "
        f"only); grey: the control data, the same points stretched by diag"
        f"({cfg['control_stretch']}, 1/{cfg['control_stretch']}), which no rotation "
        "leaves invariant. (b)–(d): the off-diagonal entry S12 of the 2×2 skew charge "
        "along ND, NAGF and GF; (d) is rounding noise; dotted: the same flows on the control data.",
    )
    st.save(fig, folder, "data_symmetry")
