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


def tree_dot(a, b):
    """The Euclidean inner product of two pytrees of the same structure, summed over
    their leaves."""
    import jax
    import jax.numpy as jnp

    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return sum((jnp.vdot(x, y) for x, y in pairs), jnp.zeros(()))


def along(traj, fn):
    """`fn(t, q, qdot)` at every saved time, as a NumPy array."""
    return np.asarray(traj.evaluate(fn))


def flows(
    loss,
    model,
    *,
    t_gf,
    t_nd,
    nagf_t0,
    n_save,
    rtol,
    atol,
    which=("gf", "nd", "nagf"),
    label="",
):
    """GF, ND (from rest) and NAGF (from rest at `nagf_t0`) of `loss` from `model`. In a
    log each run ends with one plain line, named `GF`, `ND` or `NAGF` after `label`
    (say "control: "), with its simulated time and steps (`_common.stage`)."""
    import jax
    import jax.numpy as jnp

    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics

    from ._common import stage

    tol = dict(rtol=rtol, atol=atol, max_steps=200_000, progress=True)
    rest = jax.tree.map(jnp.zeros_like, model)

    def solve(system, *y0, t0, t1):
        ts = jnp.linspace(t0, t1, n_save)
        return lambda: lnn.simulate(system, *y0, t0=t0, t1=t1, ts=ts, **tol)

    runs = {
        "gf": solve(dynamics.gradient_flow(loss), model, t0=0.0, t1=t_gf),
        "nd": solve(dynamics.newtonian(loss), model, rest, t0=0.0, t1=t_nd),
        "nagf": solve(dynamics.nesterov(loss), model, rest, t0=nagf_t0, t1=t_nd),
    }
    return {
        k: stage(f"{label}{k.upper()}", run) for k, run in runs.items() if k in which
    }


def cumulative_integral(values, ts):
    """$\\int_{t_0}^{t} f$ at every saved time (cumulative Simpson along axis 0)."""
    from scipy.integrate import cumulative_simpson

    return cumulative_simpson(np.asarray(values), x=np.asarray(ts), axis=0, initial=0)


def _times(ts, values):
    """`ts` shaped to broadcast against `values` (time on axis 0)."""
    ts = np.asarray(ts)
    return ts.reshape(ts.shape + (1,) * (np.ndim(values) - 1))


def nd_balance(ts, Cdot0, f, coefficient=2.0):
    r"""Predicted $C(t) - C(t_0)$ when $\ddot C = $ `coefficient`$\cdot f$ along the
    trajectory (ND): $\dot C(t_0)(t - t_0) + c\int_{t_0}^t\int_{t_0}^s f\,dr\,ds$."""
    t = _times(ts, f)
    return Cdot0 * (t - t[0]) + coefficient * cumulative_integral(
        cumulative_integral(f, ts), ts
    )


def nagf_balance(ts, Cdot0, f, coefficient=2.0):
    r"""Predicted $C(t) - C(t_0)$ when $\tfrac{d}{dt}(t^3\dot C) = $
    `coefficient`$\cdot t^3 f$ (NAGF, $\ddot w + \tfrac3t\dot w + \nabla L = 0$):
    $\int_{t_0}^t s^{-3}[t_0^3\dot C(t_0) + c\int_{t_0}^s r^3 f\,dr]\,ds$."""
    t = _times(ts, f)
    inner = t[0] ** 3 * Cdot0 + coefficient * cumulative_integral(t**3 * f, ts)
    return cumulative_integral(inner / t**3, ts)


def balance_error(lhs, rhs):
    """max |lhs − rhs| over times (and entries), relative to the larger side's size."""
    lhs, rhs = np.asarray(lhs), np.asarray(rhs)
    scale = max(np.max(np.abs(lhs)), np.max(np.abs(rhs)), 1e-300)
    return float(np.max(np.abs(lhs - rhs)) / scale)


_SOFTPLUS = []


def softplus():
    r"""The activation $\log(1 + e^x)$, which has no rescaling symmetry (softplus
    is not homogeneous: $\sigma(0) = \log 2$): swapped in for a ReLU or RePU layer it
    gives the negative control of that layer's laws, a loss without the symmetry."""
    import jax

    from lagrangian_nn import nn

    if not _SOFTPLUS:

        class Softplus(nn.AbstractActivation):
            def __call__(self, x, beta=None):
                return jax.nn.softplus(x)

        _SOFTPLUS.append(Softplus)
    return _SOFTPLUS[0]()


_SHIFTED_SWISH = []


def shifted_swish():
    r"""The activation $x\,\mathrm{sigmoid}(\beta(x + 1))$ with a trainable β per
    neuron: Swish with the gate's input shifted, which breaks Observation 1
    ($\sigma_{\beta/\lambda}(\lambda x) \ne \lambda\sigma_\beta(x)$: the gate becomes
    $\mathrm{sigmoid}(\beta x + \beta/\lambda)$), so the network has no rescaling
    symmetry: the negative control of the Swish laws, with the same parameters. (A shift
    outside the product, $\mathrm{sigmoid}(\beta x + 1)$, would keep the symmetry.)"""
    import jax

    from lagrangian_nn import nn

    if not _SHIFTED_SWISH:

        class ShiftedSwish(nn.AbstractActivation):
            trainable_beta = True

            def __call__(self, x, beta=None):
                return x * jax.nn.sigmoid(beta * (x + 1.0))

        _SHIFTED_SWISH.append(ShiftedSwish)
    return _SHIFTED_SWISH[0]()
