r"""A classifier with one scale-invariant (weight-normalised) layer, and the generators
of its three symmetries: scale invariance, translation of the softmax logits and
rescaling of its homogeneous hidden neurons (Kunin et al., "Neural Mechanics")."""

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp

from .._noether import Generator
from ._activations import AbstractActivation, Identity, ReLU
from ._generators import _Rescale, _set, _zeros
from ._mlp import MLP, _DenseNetwork


class NormalizedMLP(_DenseNetwork):
    r"""$f_w(x) = W_K h_{K-1} + b_K$ (logits for a softmax loss) with hidden layers
    $h_l = \sigma(W_l h_{l-1} + b_l)$, except layer `normalized` $= n$, which is
    weight-normalised and has no bias: $h_n = \sigma(W_n h_{n-1} / \|W_n\|_F)$.

    Its loss is invariant under $W_n \mapsto cW_n$ ($c > 0$: **scale**), under adding
    the same vector to every row of $W_K$ and the same number to every entry of $b_K$
    with a softmax loss (**translation**), and, for a $p$-homogeneous $\sigma$, under
    rescaling a hidden neuron of a layer $h$ with $h, h+1 \ne n$ (**rescale**).

    Like `lnn.nn.MLP`, `weights[l-1]` is $W^{(l)}$ of shape $(d_l, d_{l-1})$; `biases`
    holds `None` at the normalised layer; `betas` is all `None`. Its leaves are
    exactly its trainable arrays, so it can be the parameters of `lnn.optim.run`. It
    declares its activation patterns as `lnn.nn.MLP` does (`pattern_layers`,
    `pre_activations`, `with_patterns`, `flip_incoming`).

    **Arguments:**

    - `sizes`: $(d_0, \ldots, d_K)$, at least one hidden layer.
    - `normalized`: the normalised hidden layer $n \in [1, K-1]$ (from 1).
    - `activation`: the hidden activation (default `lnn.nn.ReLU()`).
    - `key`: a JAX PRNG key; `dtype`: the parameters' dtype.
    """

    weights: list
    biases: list
    betas: list
    activations: tuple = eqx.field(static=True)
    normalized: int = eqx.field(static=True)

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        normalized: int = 1,
        activation: AbstractActivation = ReLU(),
        key,
        dtype=None,
    ):
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 3 or any(s <= 0 for s in sizes):
            raise ValueError(
                "`sizes` must list at least three positive layer widths (one hidden "
                f"layer); got {sizes}."
            )
        K = len(sizes) - 1
        if isinstance(normalized, bool) or not (
            isinstance(normalized, int) and 1 <= normalized <= K - 1
        ):
            raise ValueError(
                f"`normalized` must be a hidden layer, an int in [1, {K - 1}]; got "
                f"{normalized!r}."
            )
        if not isinstance(activation, AbstractActivation):
            raise ValueError(
                "`activation` must be an `lnn.nn` activation such as `lnn.nn.ReLU()`; "
                f"got {activation!r}."
            )
        mlp = MLP(
            sizes,
            [activation] * (K - 1) + [Identity()],
            bias=True,
            key=key,
            dtype=dtype,
        )
        self.weights = mlp.weights
        self.biases = [
            None if i == normalized - 1 else b for i, b in enumerate(mlp.biases)
        ]
        self.betas = [None] * K
        self.activations = mlp.activations
        self.normalized = normalized

    @property
    def matrices(self) -> list:
        n = self.normalized - 1
        return [
            w / jnp.sqrt(jnp.sum(w**2)) if i == n else w
            for i, w in enumerate(self.weights)
        ]


def _check(model):
    if not isinstance(model, NormalizedMLP):
        raise ValueError(
            f"`model` must be an `lnn.nn.NormalizedMLP`; got {type(model).__name__}."
        )


class _Scale(eqx.Module):
    layer: int = eqx.field(static=True)

    def __call__(self, t, model):
        h = self.layer - 1
        return _set(_zeros(model), lambda m: m.weights[h], model.weights[h])


def scale_invariance(model: NormalizedMLP) -> Generator:
    r"""The scale symmetry of the normalised layer $n$: $\xi(w) = (0, \ldots, W_n,
    \ldots, 0)$. Its charge is $\langle w, \xi(w)\rangle = \|W_n\|_F^2$ (a quadratic
    charge, $A = I$ on $W_n$)."""
    _check(model)
    return Generator(_Scale(model.normalized))


class _Translate(eqx.Module):
    def __call__(self, t, model):
        xi = _zeros(model)
        xi = _set(xi, lambda m: m.weights[-1], jnp.ones_like(model.weights[-1]))
        if model.biases is not None and model.biases[-1] is not None:
            xi = _set(xi, lambda m: m.biases[-1], jnp.ones_like(model.biases[-1]))
        return xi


def translate_logits(model) -> Generator:
    r"""The translation symmetry of softmax logits: adding $\varepsilon$ to every entry
    of the output layer's $W_K$ and $b_K$ adds the same number to every logit, which a
    softmax (cross-entropy) loss ignores. A constant generator, $\xi = (0, \ldots, 0,
    \mathbf 1, \mathbf 1)$; its (linear) charge is $\sum_{ij} W_K[i,j] + \sum_i b_K[i]$.

    **Arguments:** `model`: an `lnn.nn.NormalizedMLP` or `lnn.nn.MLP` whose output layer
    is linear (`lnn.nn.Identity()`), trained with `kind="nll"`.
    """
    if isinstance(model, MLP):
        if not model.activations[-1].linear:
            raise ValueError(
                "`model` must have linear logits (output activation "
                f"`lnn.nn.Identity()`); got {type(model.activations[-1]).__name__}."
            )
    else:
        _check(model)
    return Generator(_Translate())


def normalized_rescale(
    model: NormalizedMLP, layer: int, neuron: int | None = None
) -> Generator:
    r"""The rescaling symmetry of hidden neuron `neuron` (or the whole layer) of layer
    $h$ of a `NormalizedMLP`: $\xi = (+W_h[i,:], +b_h[i], -p\,W_{h+1}[:,i])$ as
    `lnn.nn.rescale`. Its quadratic charge is
    $\|W_h[i,:]\|^2 + b_h[i]^2 - p\|W_{h+1}[:,i]\|^2$.

    **Arguments:** `model`; hidden `layer` $h$ (from 1) with neither $h$ nor $h+1$
    the normalised layer (rescaling a normalised layer's row changes its norm);
    `neuron` (`None`: the whole layer).
    """
    _check(model)
    K = model.depth
    allowed = [h for h in range(1, K) if model.normalized not in (h, h + 1)]
    if layer not in allowed or isinstance(layer, bool):
        raise ValueError(
            f"`layer` must be a hidden layer h with neither h nor h+1 normalised, one "
            f"of {allowed}; got {layer!r}."
        )
    p = model.activations[layer - 1].degree
    if p is None:
        raise ValueError(
            f"The activation of layer {layer} is not homogeneous; it has no rescaling "
            "symmetry."
        )
    d = model.weights[layer - 1].shape[0]
    if neuron is not None and not (
        isinstance(neuron, int) and not isinstance(neuron, bool) and 0 <= neuron < d
    ):
        raise ValueError(f"`neuron` must be an int in [0, {d - 1}]; got {neuron!r}.")
    return Generator(_Rescale(layer, neuron, float(p)))
