"""Shared pieces of the network experiments (Sections 4–7): data, models, flows."""

import numpy as np


def data_config(quick: bool, data: str = "digits", data_dir=None, n: int | None = None):
    if data not in ("digits", "kmnist"):
        raise ValueError(f"`data` must be 'digits' or 'kmnist'; got {data!r}.")
    if data == "kmnist" and data_dir is None:
        raise ValueError(
            "`--data kmnist` needs `--data-dir DIR` with the KMNIST files."
        )
    return {
        "data": data,
        "data_dir": None if data_dir is None else str(data_dir),
        "n_samples": n if n is not None else (200 if quick else 1000),
    }


def load_data(cfg: dict):
    import jax.numpy as jnp

    import lagrangian_nn as lnn

    if cfg["data"] == "digits":
        x, y = lnn.data.digits(n=cfg["n_samples"], seed=cfg["seed"])
    else:
        x, y = lnn.data.kmnist(
            cfg["data_dir"], "train", n=cfg["n_samples"], seed=cfg["seed"]
        )
    return jnp.asarray(x, jnp.float64), jnp.asarray(y)


def build(sizes, activations, *, bias=False, seed=0):
    import jax
    import jax.numpy as jnp

    from lagrangian_nn import nn

    return nn.MLP(
        sizes, activations, bias=bias, key=jax.random.key(seed), dtype=jnp.float64
    )


def along(traj, fn):
    """`fn(t, q, qdot)` at every saved time, as a NumPy array."""
    return np.asarray(traj.evaluate(fn))


def flows(
    loss, model, *, t_gf, t_nd, nagf_t0, n_save, rtol, atol, which=("gf", "nd", "nagf")
):
    """GF, ND (from rest) and NAGF (from rest at `nagf_t0`) of `loss` from `model`."""
    import jax
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics

    tol = dict(rtol=rtol, atol=atol, max_steps=200_000, progress=True)
    rest = jax.tree.map(jnp.zeros_like, model)
    out = {}
    if "gf" in which:
        out["gf"] = lnn.simulate(
            dynamics.gradient_flow(loss),
            model,
            t0=0.0,
            t1=t_gf,
            ts=jnp.linspace(0.0, t_gf, n_save),
            **tol,
        )
    if "nd" in which:
        out["nd"] = lnn.simulate(
            dynamics.newtonian(loss),
            model,
            rest,
            t0=0.0,
            t1=t_nd,
            ts=jnp.linspace(0.0, t_nd, n_save),
            **tol,
        )
    if "nagf" in which:
        out["nagf"] = lnn.simulate(
            dynamics.nesterov(loss),
            model,
            rest,
            t0=nagf_t0,
            t1=t_nd,
            ts=jnp.linspace(nagf_t0, t_nd, n_save),
            **tol,
        )
    return out


def accelerations(L, traj):
    """The Euler–Lagrange acceleration at every saved state (for residual forms)."""
    import jax

    import lagrangian_nn as lnn

    accel = lnn.euler_lagrange(L)
    return jax.lax.map(lambda s: accel(*s), (traj.ts, traj.q, traj.qdot))


def rel_drift(values, reference_change=None):
    """max |v − v0| relative to `reference_change` (default: max |v0|)."""
    values = np.asarray(values)
    drift = np.max(np.abs(values - values[0]))
    scale = np.max(np.abs(values[0])) if reference_change is None else reference_change
    return float(drift / max(scale, 1e-300))
