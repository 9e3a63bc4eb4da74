"""Small equinox layers that let convolutional networks, residual blocks and
transformers be written as `eqx.nn.Sequential` chains, so that `lnn.nn.symmetries` can
read their structure.

Every layer here takes one example (no batch axis), as `equinox.nn` layers do, and
accepts the keyword `key` that `eqx.nn.Sequential` passes."""

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from ._activations import AbstractActivation


def _as_sequential(layers, name: str) -> eqx.nn.Sequential:
    if isinstance(layers, eqx.nn.Sequential):
        return layers
    if isinstance(layers, (list, tuple)) and layers:
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise ValueError(
                    f"`{name}` must hold callable layers; entry {i} is "
                    f"{type(layer).__name__}."
                )
        return sequential(layers)
    raise ValueError(
        f"`{name}` must be an `eqx.nn.Sequential` or a non-empty list of layers; got "
        f"{type(layers).__name__}."
    )


def _call(layer, x):
    return layer(x)


class Tokenwise(eqx.Module):
    """Applies `layer` to each row of `x` (shape `(n_tokens, ...)`), e.g. an
    `eqx.nn.Linear` or `eqx.nn.LayerNorm` to every token of a sequence."""

    layer: Callable

    def __init__(self, layer):
        if not callable(layer):
            raise ValueError(f"`layer` must be callable; got {type(layer).__name__}.")
        self.layer = layer

    def __call__(self, x, *, key=None):
        return jax.vmap(self.layer)(x)


class Residual(eqx.Module):
    """A residual block $x \\mapsto x + \\mathrm{branch}(x)$, with `branch` an
    `eqx.nn.Sequential` (a list of layers is wrapped into one). The branch's output
    must have the shape of its input."""

    branch: eqx.nn.Sequential

    def __init__(self, branch):
        self.branch = _as_sequential(branch, "branch")

    def __call__(self, x, *, key=None):
        return x + self.branch(x)


def _rotate_pairs(x, angles):
    """Rotates consecutive pairs of the last axis of `x` (seq, heads, d) by the
    per-position `angles` (seq,): a position-dependent rotation (as in rotary
    embeddings), used to break the GL(d_head) symmetry of the queries."""
    c, s = jnp.cos(angles)[:, None, None], jnp.sin(angles)[:, None, None]
    a, b = x[..., 0::2], x[..., 1::2]
    return jnp.stack([c * a - s * b, s * a + c * b], axis=-1).reshape(x.shape)


class SelfAttention(eqx.Module):
    r"""Multi-head self-attention on a sequence `x` of shape `(n_tokens, d_model)`:
    `attention(x, x, x)` for an `eqx.nn.MultiheadAttention`.

    Head $h$ computes $\mathrm{softmax}(x W_Q^h (x W_K^h)^\top/\sqrt{d_{head}})\,
    x W_V^h W_O^h$ (the convention of Marcotte, Gribonval & Peyré), where, in the
    module's `(out, in)` layout, $W_Q^h$ is the transpose of rows
    $h d_{head} \ldots (h+1) d_{head} - 1$ of `attention.query_proj.weight` (likewise
    $W_K^h$, $W_V^h$) and $W_O^h$ the transpose of the same columns of
    `attention.output_proj.weight`.

    `rotate_queries=True` rotates each query, per position $n$, by the angle
    $n\cdot\pi/7$ in consecutive coordinate pairs before the scores: a
    position-dependent rotation that breaks the $GL(d_{head})$ symmetry of
    $(W_Q, W_K)$ (a control). It needs an even `qk_size`.
    """

    attention: eqx.nn.MultiheadAttention
    rotate_queries: bool = eqx.field(static=True, default=False)

    def __init__(self, attention, *, rotate_queries: bool = False):
        if not isinstance(attention, eqx.nn.MultiheadAttention):
            raise ValueError(
                "`attention` must be an `eqx.nn.MultiheadAttention`; got "
                f"{type(attention).__name__}."
            )
        if rotate_queries and attention.qk_size % 2:
            raise ValueError(
                f"`rotate_queries=True` needs an even qk_size; got {attention.qk_size}."
            )
        self.attention = attention
        self.rotate_queries = bool(rotate_queries)

    def __call__(self, x, *, key=None):
        process = None
        if self.rotate_queries:
            angles = jnp.arange(x.shape[0], dtype=x.dtype) * (jnp.pi / 7)

            def process(q, k, v):
                return _rotate_pairs(q, angles), k, v

        return self.attention(x, x, x, process_heads=process)


class AddPosition(eqx.Module):
    """Adds a learned positional embedding `position` of shape
    `(n_tokens, d_model)` to a sequence."""

    position: jax.Array

    def __init__(self, n_tokens: int, d_model: int, *, key, dtype=None):
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        self.position = 0.1 * jax.random.normal(key, (n_tokens, d_model), dtype)

    def __call__(self, x, *, key=None):
        return x + self.position


class TokenMean(eqx.Module):
    """The mean over tokens: `(n_tokens, d) -> (d,)`."""

    def __call__(self, x, *, key=None):
        return jnp.mean(x, axis=0)


class Flatten(eqx.Module):
    """Flattens an array in C order (channel-major for `(C, H, W)`)."""

    def __call__(self, x, *, key=None):
        return jnp.ravel(x)


def sequential(layers: Sequence[Callable]) -> eqx.nn.Sequential:
    """`eqx.nn.Sequential(layers)`, with plain functions (`jax.nn.relu`) and `lnn.nn`
    activations (`lnn.nn.RePU(2)`) wrapped in `eqx.nn.Lambda`."""
    return eqx.nn.Sequential(
        tuple(
            layer
            if isinstance(layer, eqx.Module)
            and not isinstance(layer, AbstractActivation)
            else eqx.nn.Lambda(layer)
            for layer in layers
        )
    )


class _SequentialClassifier(eqx.Module):
    """A classifier whose computation is exactly `self.layers` (an
    `eqx.nn.Sequential`) applied to one example; `__call__` maps over a leading batch
    axis when `x` has one more axis than `input_shape`."""

    layers: eqx.nn.Sequential
    input_shape: tuple = eqx.field(static=True)

    #: its output is logits for a softmax cross-entropy loss (read by
    #: `lnn.nn.symmetries`)
    softmax_head = True

    def __call__(self, x, *, key=None):
        x = jnp.asarray(x)
        n = len(self.input_shape)
        if x.shape == self.input_shape:
            return self.layers(x)
        if x.ndim == n + 1 and x.shape[1:] == self.input_shape:
            return jax.vmap(self.layers)(x)
        size = math.prod(self.input_shape)
        if x.ndim == 2 and x.shape[1] == size:  # flat rows, e.g. 64 digit pixels
            return jax.vmap(self.layers)(x.reshape((x.shape[0],) + self.input_shape))
        raise ValueError(
            f"`x` must have shape {self.input_shape}, (batch, *{self.input_shape}) or "
            f"(batch, {size}); got {x.shape}."
        )
