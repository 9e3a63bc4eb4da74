"""Training losses of a model on a dataset held as traced arrays."""

import equinox as eqx
import jax
import jax.numpy as jnp


def nll(logits, labels):
    """Mean negative log-likelihood (cross-entropy) of integer `labels`."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def squared_error(pred, targets):
    """Mean over samples of $\\tfrac12\\|f(x) - y\\|^2$."""
    return 0.5 * jnp.mean(jnp.sum((pred - targets.reshape(pred.shape)) ** 2, axis=-1))


class DatasetLoss(eqx.Module):
    """`loss(model)` on a fixed dataset. `x` and `y` are array fields, hence traced:
    a new dataset of the same shapes reuses the compiled program."""

    x: jax.Array
    y: jax.Array
    kind: str = eqx.field(static=True)

    def __call__(self, model):
        out = model(self.x)
        if self.kind == "nll":
            return nll(out, self.y)
        return squared_error(out, self.y)


def make_loss(x, y, kind: str = "nll") -> DatasetLoss:
    """Builds `loss(model)` for the dataset `(x, y)`.

    **Arguments:**

    - `x`: inputs, shape `(n, d0)`.
    - `y`: integer labels `(n,)` for `kind="nll"`, or targets `(n, dK)` / `(n,)` for
      `kind="squared_error"`.
    - `kind`: `"nll"` or `"squared_error"`.
    """
    if kind not in ("nll", "squared_error"):
        raise ValueError(f"`kind` must be 'nll' or 'squared_error'; got {kind!r}.")
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"`x` must have shape (n, d0); got shape {x.shape}.")
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"`y` must have one entry per sample ({x.shape[0]}); got shape {y.shape}."
        )
    if kind == "nll" and not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(
            f"`y` must hold integer labels for 'nll'; got dtype {y.dtype}."
        )
    return DatasetLoss(x, y, kind)
