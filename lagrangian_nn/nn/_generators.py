"""The symmetry generators of Sections 4–6 as `lnn.Generator`s acting on an `MLP`."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._noether import Generator
from ._mlp import MLP


def _zeros(model):
    return jax.tree.map(jnp.zeros_like, model)


def _check_model(model, name="model"):
    if not isinstance(model, MLP):
        raise ValueError(
            f"`{name}` must be an `lnn.nn.MLP`; got {type(model).__name__}."
        )


def _check_hidden_layer(model, layer):
    if not isinstance(layer, int) or not 1 <= layer <= model.depth - 1:
        raise ValueError(
            f"`layer` must be a hidden layer, an int in [1, {model.depth - 1}] (layers "
            f"are numbered from 1 as in the paper); got {layer!r}."
        )


def _set(tree, where, values):
    return eqx.tree_at(where, tree, values, is_leaf=lambda x: x is None)


class _Rescale(eqx.Module):
    r"""$\xi$: $+W_h[i,:]$, $+b_h[i]$, $-\beta_h[i]$, $-p\,W_{h+1}[:,i]$ (eq. 28)."""

    layer: int = eqx.field(static=True)
    neuron: int | None = eqx.field(static=True)
    p: float = eqx.field(static=True)

    def __call__(self, t, model):
        h = self.layer - 1  # 0-based index of W^{(h)}
        W, W_next = model.weights[h], model.weights[h + 1]
        d = W.shape[0]
        mask = (
            jnp.ones((d,), W.dtype)
            if self.neuron is None
            else (jnp.zeros((d,), W.dtype).at[self.neuron].set(1.0))
        )
        xi = _zeros(model)
        xi = _set(xi, lambda m: m.weights[h], mask[:, None] * W)
        xi = _set(xi, lambda m: m.weights[h + 1], -self.p * W_next * mask[None, :])
        if model.biases is not None:
            xi = _set(xi, lambda m: m.biases[h], mask * model.biases[h])
        if model.betas[h] is not None:
            xi = _set(xi, lambda m: m.betas[h], -mask * model.betas[h])
        return xi


def rescale(
    model: MLP, layer: int, neuron: int | None = None, *, p: float | None = None
) -> Generator:
    r"""The rescaling symmetry of a hidden neuron (or a whole hidden layer).

    For a $p$-homogeneous $\sigma_h$, scaling the incoming weights (and bias) of neuron
    $i$ of layer $h$ by $(1+\varepsilon)$ and its outgoing weights by
    $(1+\varepsilon)^{-p}$ leaves the network function unchanged (Sections 4.1–4.2, 4.4);
    for Swish, $\beta_i$ scales by $(1+\varepsilon)^{-1}$ instead (Section 4.3). The
    generator (eq. 28) is
    $\xi = (+W_h[i,:],\ +b_h[i],\ -\beta_h[i],\ -p\,W_{h+1}[:,i])$.

    **Arguments:**

    - `model`: the `MLP` (only its architecture is used).
    - `layer`: hidden layer $h \in [1, K-1]$ (numbered from 1).
    - `neuron`: neuron index $i$, or `None` for the whole layer (the sum over $i$).
    - `p`: the homogeneity degree; defaults to the activation's own. Giving `p` for an
      activation that is not homogeneous (tanh) builds the generator anyway, e.g. to
      show that it is *not* a symmetry.
    """
    _check_model(model)
    _check_hidden_layer(model, layer)
    act = model.activations[layer - 1]
    if p is None:
        p = act.degree
        if p is None:
            raise ValueError(
                f"The activation of layer {layer} ({type(act).__name__}) is not "
                "homogeneous, so it has no rescaling symmetry; pass `p` explicitly to "
                "build the generator anyway."
            )
    d = model.weights[layer - 1].shape[0]
    if neuron is not None and not (isinstance(neuron, int) and 0 <= neuron < d):
        raise ValueError(f"`neuron` must be an int in [0, {d - 1}]; got {neuron!r}.")
    return Generator(_Rescale(layer, neuron, float(p)))


class _GL(eqx.Module):
    layer: int = eqx.field(static=True)
    A: jax.Array

    def __call__(self, t, model):
        h = self.layer - 1
        A = self.A.astype(model.weights[h].dtype)
        xi = _zeros(model)
        xi = _set(xi, lambda m: m.weights[h], A @ model.weights[h])
        xi = _set(xi, lambda m: m.weights[h + 1], -model.weights[h + 1] @ A)
        if model.biases is not None:
            xi = _set(xi, lambda m: m.biases[h], A @ model.biases[h])
        return xi


def gl(model: MLP, layer: int, A) -> Generator:
    r"""The $GL(d_h)$ symmetry of a linear hidden layer, eq. (38):
    $W_h \mapsto (I+\varepsilon A)W_h$, $W_{h+1} \mapsto W_{h+1}(I+\varepsilon A)^{-1}$,
    with generator $\xi_A = (A W_h,\ -W_{h+1}A)$ (and $A b_h$ with biases).

    **Arguments:** `model`, hidden `layer` $h$ (from 1), and `A` of shape $(d_h, d_h)$.
    """
    _check_model(model)
    _check_hidden_layer(model, layer)
    A = jnp.asarray(A)
    d = model.weights[layer - 1].shape[0]
    if A.shape != (d, d):
        raise ValueError(f"`A` must have shape ({d}, {d}); got {A.shape}.")
    return Generator(_GL(layer, A))


class _RotateInputs(eqx.Module):
    P: jax.Array

    def __call__(self, t, model):
        xi = _zeros(model)
        return _set(
            xi,
            lambda m: m.weights[0],
            model.weights[0] @ self.P.astype(model.weights[0].dtype),
        )


def rotate_inputs(model: MLP, P) -> Generator:
    r"""Rotations of the inputs, eq. (44): $\xi_P = (W_1 P, 0, \ldots, 0)$ for a skew
    $P \in \mathfrak{so}(d_0)$. A symmetry of the loss when the data are invariant
    under the rotations (Section 6).

    **Raises:** `ValueError` if `P` is not a skew-symmetric $(d_0, d_0)$ matrix.
    """
    _check_model(model)
    P = jnp.asarray(P)
    d0 = model.weights[0].shape[1]
    if P.shape != (d0, d0):
        raise ValueError(f"`P` must have shape ({d0}, {d0}); got {P.shape}.")
    if not isinstance(P, jax.core.Tracer) and not jnp.allclose(P, -P.T):
        raise ValueError("`P` must be skew-symmetric (P = -Pᵀ).")
    return Generator(_RotateInputs(P))
