r"""Section 5, Table 4: deep linear networks stay balanced.

For a linear hidden layer $h$, $GL(d_h)$ acts by $W_h \mapsto AW_h$,
$W_{h+1}\mapsto W_{h+1}A^{-1}$ and leaves the network unchanged. Noether gives:

- GF: the matrix $W_hW_h^\top - W_{h+1}^\top W_{h+1}$ is constant (eq. 42), one law per
  entry of a symmetric $d_h\times d_h$ matrix;
- ND: $W_h\ddot W_h^\top - \ddot W_{h+1}^\top W_{h+1} = 0$ (eq. 41), so the balance
  matrix $C$ evolves in a controlled way: $\ddot C = 2(\dot W_h\dot W_h^\top -
  \dot W_{h+1}^\top\dot W_{h+1})$, whose trace is $2(\|\dot W_h\|^2 - \|\dot W_{h+1}\|^2)$
  (eq. 43). With energy conservation from rest, $\|\dot w\|^2 \le 2L(w_0)$, hence
  $|\mathrm{tr}\,C(t) - \mathrm{tr}\,C(0)| \le 2L(w_0)t^2$.

A $d_0$-32-32-32-10 linear network, squared error on one-hot targets.
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

NAME = "linear_balance"
USES_DATA = True


def config_for(quick, seed, data="digits", data_dir=None):
    return {
        "seed": seed,
        **N.data_config(quick, data, data_dir),
        "hidden": [16, 16, 16] if quick else [32, 32, 32],
        "loss": "squared_error, one-hot",
        "t_gf": 10.0 if quick else 40.0,
        "t_nd": 5.0 if quick else 15.0,
        "n_save": 30 if quick else 80,
        "rtol": 1e-9,
        "atol": 1e-11,
    }


def compute(cfg):
    enable_float64()
    import jax
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics, nn

    x, y = N.load_data(cfg)
    sizes = [x.shape[1], *cfg["hidden"], 10]
    K = len(sizes) - 1
    model = N.build(sizes, [nn.Identity()] * K, seed=cfg["seed"])
    loss = nn.make_loss(x, jax.nn.one_hot(y, 10), kind="squared_error")
    fl = N.flows(
        loss,
        model,
        t_gf=cfg["t_gf"],
        t_nd=cfg["t_nd"],
        nagf_t0=1.0,
        n_save=cfg["n_save"],
        rtol=cfg["rtol"],
        atol=cfg["atol"],
        which=("gf", "nd"),
    )
    arrays, metrics, claims = {}, {"initial_loss": float(loss(model))}, []
    gf, nd = fl["gf"], fl["nd"]
    arrays["gf_ts"], arrays["nd_ts"] = np.asarray(gf.ts), np.asarray(nd.ts)
    for h in range(1, K):
        C = N.along(gf, lambda t, q, v, h=h: nn.linear_quantity(q, h))
        WW = N.along(gf, lambda t, q, v, h=h: q.weights[h - 1] @ q.weights[h - 1].T)
        drift = float(np.max(np.abs(C - C[0])))
        change = float(np.max(np.abs(WW - WW[0])))
        metrics[f"gf_C{h}_max_entry_drift"] = drift
        metrics[f"gf_WWt{h}_max_entry_change"] = change
        arrays[f"gf_C{h}"], arrays[f"gf_WWt{h}"] = C, WW
        claims.append(
            claim(
                f"GF layer {h}: max entry drift of W_hW_hᵀ − W_h+1ᵀW_h+1, relative",
                "eq. 42, Table 4",
                drift / change,
                1e-6,
            )
        )
    # ND: eq. 41 and the controlled evolution, layer 2
    h = 2
    L = dynamics.newtonian(loss)
    acc = N.accelerations(L, nd)
    R = jax.vmap(lambda q, v, a: nn.linear_residual(q, v, a, h))(nd.q, nd.qdot, acc)
    scale = jax.vmap(
        lambda q, a: (
            jnp.linalg.norm(q.weights[h - 1]) * jnp.linalg.norm(a.weights[h - 1])
        )
    )(nd.q, acc)
    metrics["nd_eq41_residual_relative"] = float(
        jnp.max(jnp.abs(R) / scale[:, None, None])
    )

    lnn_accel = lnn.euler_lagrange(L)

    def C_ddot(t, q, v):
        a = lnn_accel(t, q, v)
        Cfun = lambda q_: nn.linear_quantity(q_, h)
        dC = lambda q_, v_: jax.jvp(Cfun, (q_,), (v_,))[1]
        return jax.jvp(dC, (q, v), (v, a))[1]

    predicted = lambda t, q, v: (
        2 * (v.weights[h - 1] @ v.weights[h - 1].T - v.weights[h].T @ v.weights[h])
    )
    lhs, rhs = N.along(nd, C_ddot), N.along(nd, predicted)
    metrics["nd_eq43_identity_error"] = float(
        np.max(np.abs(lhs - rhs)) / np.max(np.abs(rhs[1:]))
    )
    trC = N.along(nd, lambda t, q, v: jnp.trace(nn.linear_quantity(q, h)))
    bound = 2 * metrics["initial_loss"] * arrays["nd_ts"] ** 2
    metrics["nd_trace_bound_max_ratio"] = float(
        np.max(np.abs(trC[1:] - trC[0]) / bound[1:])
    )
    arrays["nd_trC"], arrays["nd_bound"] = trC, bound
    arrays["nd_C"] = N.along(nd, lambda t, q, v: nn.linear_quantity(q, h))
    claims += [
        claim(
            "ND: eq. 41 residual (relative)",
            "eq. 41, Table 4",
            metrics["nd_eq41_residual_relative"],
            1e-8,
        ),
        claim(
            "ND: C̈ = 2(Ẇ_hẆ_hᵀ − Ẇ_h+1ᵀẆ_h+1), relative error",
            "eq. 43",
            metrics["nd_eq43_identity_error"],
            1e-8,
        ),
        claim(
            "ND: |tr C(t) − tr C(0)| / (2 L(w0) t²)",
            "eq. 43 + energy",
            metrics["nd_trace_bound_max_ratio"],
            1.0,
        ),
    ]
    return metrics, arrays, claims


def draw(folder: Path):
    plt = figure_style()
    res, a = load(folder)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    ts = a["gf_ts"]
    WW, C = a["gf_WWt2"], a["gf_C2"]
    idx = [(0, 0), (0, 1), (1, 1), (2, 5)]
    for i, j in idx:
        axes[0].plot(ts, WW[:, i, j] - WW[0, i, j], label=f"Δ(W2W2ᵀ)[{i},{j}]")
        axes[0].plot(ts, C[:, i, j] - C[0, i, j], "k--", linewidth=0.7)
    axes[0].set_title("GF: W2W2ᵀ moves, W2W2ᵀ − W3ᵀW3 (dashed) does not")
    axes[0].set_xlabel("t")
    axes[0].legend(fontsize=7)
    tsn = a["nd_ts"]
    for i, j in idx:
        axes[1].plot(tsn, a["nd_C"][:, i, j] - a["nd_C"][0, i, j], label=f"ΔC[{i},{j}]")
    axes[1].set_title("ND: the balance matrix C evolves (eq. 43)")
    axes[1].set_xlabel("t")
    axes[1].legend(fontsize=7)
    axes[2].plot(tsn, np.abs(a["nd_trC"] - a["nd_trC"][0]), label="|tr C(t) − tr C(0)|")
    axes[2].plot(tsn, a["nd_bound"], "--", label="2 L(w0) t²")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("t")
    axes[2].legend()
    axes[2].set_title("ND: controlled, bounded growth")
    fig.tight_layout()
    save_figure(fig, folder, "linear_balance")


def main(*, seed=0, quick=False, out=DEFAULT_OUT, data="digits", data_dir=None):
    return run_experiment(
        NAME,
        config=config_for(quick, seed, data, data_dir),
        compute=compute,
        draw=draw,
        out=out,
        quick=quick,
    )
