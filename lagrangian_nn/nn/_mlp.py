"""A multilayer perceptron whose leaves are exactly its trainable arrays."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._activations import AbstractActivation


def _forward(net, x, patterns=None, pre=None):
    """`net` at `x`. With `patterns` (one per `pattern_layers` entry) those layers'
    activation patterns are given; with `pre` (a list) their pre-activations are
    appended to it (and their patterns read from the signs, through the activation's
    `branch`). A function, not a method: an equinox module builds a new bound method
    at every attribute access, which costs more than a small network's arithmetic."""
    h, j = x, 0
    given = patterns is not None or pre is not None
    last = len(net.weights) - 1
    for i, (w, act, beta) in enumerate(zip(net.matrices, net.activations, net.betas)):
        h = h @ w.T
        if net.biases is not None and net.biases[i] is not None:
            h = h + net.biases[i]
        if given and act.piecewise and i < last:
            if pre is not None:
                pre.append(h)
            d = (h > 0).astype(h.dtype) if patterns is None else patterns[j]
            h = act.branch(h, d)
            j += 1
        else:
            h = act(h, beta)
    return h


class _DenseNetwork(eqx.Module):
    """The layer loop that `MLP` and `NormalizedMLP` share, and the activation-pattern
    hook that `lnn.symmetry.count_laws` reads: `pattern_layers`, `pre_activations`,
    `with_patterns` and `flip_incoming`. Plain arithmetic on the leaves (NumPy leaves
    stay NumPy wherever the activations are piecewise or linear)."""

    weights: eqx.AbstractVar[list]
    biases: eqx.AbstractVar[list | None]
    betas: eqx.AbstractVar[list]
    activations: eqx.AbstractVar[tuple]

    @property
    def matrices(self) -> list:
        """The matrices the layers apply: `weights` (a normalised layer's,
        normalised)."""
        return self.weights

    @property
    def sizes(self) -> tuple:
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    @property
    def depth(self) -> int:
        return len(self.weights)

    def __call__(self, x):
        """Applies the network to inputs `x` of shape `(d0,)` or `(n, d0)`."""
        return _forward(self, x)

    @property
    def pattern_layers(self) -> tuple:
        """The hidden layers (indices into `weights`, from 0) whose activation is
        `piecewise` (ReLU, LeakyReLU, RePU): the layers with an activation pattern."""
        return tuple(i for i, act in enumerate(self.activations[:-1]) if act.piecewise)

    def pre_activations(self, x) -> tuple:
        """The pre-activations of the `pattern_layers` at inputs `x` (shape `(n, d0)`),
        one array `(n, d_h)` per layer."""
        pre = []
        _forward(self, x, pre=pre)
        return tuple(pre)

    def with_patterns(self, x, patterns):
        """The network at `x` with the activation pattern of each of the
        `pattern_layers` given instead of read from the signs of its pre-activations:
        `patterns[j]` (1 where a neuron of layer `pattern_layers[j]` is active, 0
        where not) broadcasts against that layer's pre-activation. The network is
        then a polynomial in its parameters where every activation is
        `polynomial_pieces`."""
        patterns = tuple(patterns)
        if len(patterns) != len(self.pattern_layers):
            raise ValueError(
                f"`patterns` must hold one array per pattern layer "
                f"({len(self.pattern_layers)}); got {len(patterns)}."
            )
        return _forward(self, x, patterns=patterns)

    def flip_incoming(self, layer: int, signs):
        """The network with the incoming weights (and bias) of each neuron of layer
        `layer` (an index into `weights`) multiplied by `signs` (one ±1 per neuron)."""
        w = self.weights[layer]
        signs = np.asarray(signs).astype(w.dtype)
        out = eqx.tree_at(lambda m: m.weights[layer], self, w * signs[:, None])
        if self.biases is not None and self.biases[layer] is not None:
            b = self.biases[layer]
            out = eqx.tree_at(lambda m: m.biases[layer], out, b * signs)
        return out


class MLP(_DenseNetwork):
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

    **Activation patterns.** `pattern_layers`, `pre_activations`, `with_patterns` and
    `flip_incoming` describe the hidden layers with a piecewise activation (ReLU,
    LeakyReLU, RePU); `lnn.symmetry.count_laws` reads them to count the laws over every
    activation pattern and to draw a point with no dead neuron.
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
