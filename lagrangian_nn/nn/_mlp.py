"""A multilayer perceptron whose leaves are exactly its trainable arrays."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from ._activations import AbstractActivation


class MLP(eqx.Module):
    r"""$f_w(x) = \sigma_K(b_K + W_K\,\sigma_{K-1}(\cdots\sigma_1(b_1 + W_1 x)))$, eq. (19).

    The paper's conventions: `weights[h-1]` is $W^{(h)}$ of shape $(d_h, d_{h-1})$, so
    row $i$ holds the incoming weights of neuron $i$ of layer $h$ and column $i$ of
    $W^{(h+1)}$ its outgoing weights. Layers are numbered from 1 as in the paper.

    The module's leaves are exactly its trainable float arrays: `weights`, `biases`
    (if `bias=True`) and `betas` (one array per Swish layer, `None` elsewhere). It can
    therefore be the position `q` of `lnn.simulate`, with a velocity of the same
    structure, and a generator's `xi` returns another `MLP`.

    **Arguments:**

    - `sizes`: $(d_0, d_1, \ldots, d_K)$.
    - `activations`: $K$ activation objects (`ReLU()`, `RePU(2)`, `Swish()`, ...), one
      per layer, the last one for the output.
    - `bias`: whether layers have biases.
    - `key`: a JAX PRNG key. Weights are Gaussian with variance $1/d_{h-1}$, biases
      drawn from $N(0, 0.01)$, Swish β start at 1.
    """

    weights: list
    biases: list | None
    betas: list
    activations: tuple = eqx.field(static=True)

    def __init__(
        self,
        sizes: Sequence[int],
        activations: Sequence[AbstractActivation],
        *,
        bias: bool = False,
        key,
        dtype=None,
    ):
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ValueError(
                f"`sizes` must list at least two positive layer widths; got {sizes}."
            )
        activations = tuple(activations)
        if len(activations) != len(sizes) - 1:
            raise ValueError(
                f"`activations` must have one entry per layer ({len(sizes) - 1}); got "
                f"{len(activations)}."
            )
        for a in activations:
            if not isinstance(a, AbstractActivation):
                raise ValueError(
                    "`activations` must hold `lnn.nn` activation objects such as "
                    f"`lnn.nn.ReLU()`; got {a!r}."
                )
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        keys = jax.random.split(key, 2 * len(activations))
        self.weights = [
            jax.random.normal(keys[2 * i], (d_out, d_in), dtype) / jnp.sqrt(d_in)
            for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:]))
        ]
        self.biases = (
            [
                0.1 * jax.random.normal(keys[2 * i + 1], (d,), dtype)
                for i, d in enumerate(sizes[1:])
            ]
            if bias
            else None
        )
        self.betas = [
            jnp.ones((d,), dtype) if a.trainable_beta else None
            for a, d in zip(activations, sizes[1:])
        ]
        self.activations = activations

    @property
    def sizes(self) -> tuple:
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    @property
    def depth(self) -> int:
        return len(self.weights)

    def __call__(self, x):
        """Applies the network to inputs `x` of shape `(d0,)` or `(n, d0)`."""
        h = x
        for i, (w, act, beta) in enumerate(
            zip(self.weights, self.activations, self.betas)
        ):
            h = h @ w.T
            if self.biases is not None:
                h = h + self.biases[i]
            h = act(h, beta)
        return h
