"""Shared driver for the homogeneity experiments (Figure 2, Swish, biases): run GF and
GD on a network and record the per-layer Table-2/3 quantities and weight norms."""

import numpy as np

from . import _networks as N


def run_gf_and_gd(cfg, activations, *, bias, layers, extra=None, gd=True, p=None):
    """Returns (model, loss, arrays, metrics) with, for each hidden `layer` in `layers`,
    the GF quantity along GF, and its raw/corrected values along GD.

    `gd=False` runs GF only (for a negative control); `p` is passed to
    `nn.rescale_quantity` (needed where an activation has no degree, such as the
    controls' softplus: the same quantity is then measured on a network without the
    symmetry)."""
    import jax.numpy as jnp

    from lagrangian_nn import nn, optim

    x, y = N.load_data(cfg)
    sizes = [x.shape[1], *cfg["hidden"], 10]
    model = N.build(sizes, activations, bias=bias, seed=cfg["seed"])
    loss = nn.make_loss(x, y)
    lr = cfg["lr"]
    fl = N.flows(
        loss,
        model,
        t_gf=cfg["gd_steps"] * lr,
        t_nd=1.0,
        nagf_t0=1.0,
        n_save=cfg["n_save"],
        rtol=cfg["rtol"],
        atol=cfg["atol"],
        which=("gf",),
    )
    gf = fl["gf"]
    arrays = {"gf_ts": np.asarray(gf.ts)}
    metrics = {
        "n_params": int(sum(int(w.size) for w in __import__("jax").tree.leaves(model))),
        "initial_loss": float(loss(model)),
    }
    fns = {
        "W": lambda q: jnp.stack([jnp.sum(w**2) for w in q.weights]),
        "b": (lambda q: jnp.stack([jnp.sum(b**2) for b in q.biases])) if bias else None,
        "beta": lambda q: jnp.stack(
            [jnp.sum(b**2) if b is not None else jnp.zeros(()) for b in q.betas]
        ),
    }
    if extra:
        fns.update(extra)
    fns = {k: v for k, v in fns.items() if v is not None}
    for layer in layers:
        fns[f"C{layer}"] = lambda q, layer=layer: nn.rescale_quantity(q, layer, p=p)
    for k, fn in fns.items():
        arrays[f"gf_{k}"] = N.along(gf, lambda t, q, v, fn=fn: fn(q))
    if not gd:
        for layer in layers:
            C, Wn = arrays[f"gf_C{layer}"], arrays["gf_W"][:, layer - 1]
            change = float(np.max(np.abs(Wn - Wn[0])))
            metrics[f"gf_C{layer}_drift"] = float(np.max(np.abs(C - C[0])))
            metrics[f"gf_C{layer}_relative_drift"] = (
                metrics[f"gf_C{layer}_drift"] / change
            )
            metrics[f"gf_W{layer}_norm_change"] = change
        return model, loss, arrays, metrics
    track = {k: (lambda s, fn=fn: fn(s.q)) for k, fn in fns.items()}
    for layer in layers:
        track[f"acc{layer}"] = optim.gd_quadratic_accounting(
            lambda q, layer=layer: nn.rescale_quantity(q, layer), lr
        )
    gd = optim.run(optim.gd(lr), loss, model, cfg["gd_steps"], track=track)
    arrays["gd_ts"] = np.concatenate([[0.0], np.asarray(gd.ts)])
    for k, fn in fns.items():
        arrays[f"gd_{k}"] = np.concatenate(
            [np.asarray(fn(model))[None], np.asarray(gd.tracked[k])]
        )
    for layer in layers:
        raw, corrected = optim.corrected_quantity(
            gd.tracked[f"acc{layer}"], nn.rescale_quantity(model, layer)
        )
        arrays[f"gd_C{layer}_corrected"] = np.asarray(corrected)
        C = arrays[f"gf_C{layer}"]
        Wn = arrays["gf_W"][:, layer - 1]
        change = float(np.max(np.abs(Wn - Wn[0])))
        metrics[f"gf_C{layer}_drift"] = float(np.max(np.abs(C - C[0])))
        metrics[f"gf_C{layer}_relative_drift"] = metrics[f"gf_C{layer}_drift"] / change
        metrics[f"gf_W{layer}_norm_change"] = change
        metrics[f"gd_C{layer}_raw_drift"] = float(np.max(np.abs(raw - raw[0])))
        metrics[f"gd_C{layer}_corrected_drift"] = float(
            np.max(np.abs(corrected - corrected[0]))
        )
    metrics["final_loss_gf"] = float(N.along(gf, lambda t, q, v: loss(q))[-1])
    return model, loss, arrays, metrics
