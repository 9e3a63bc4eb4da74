"""Structured linear families of candidate generators for `discover`."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from .._noether import Generator
from ..nn._mlp import MLP


class Family(eqx.Module):
    r"""A finite basis of vector fields $\xi_a(q)$; candidates are $\sum_a c_a\xi_a$.

    - `fields`: callables `xi_a(q) -> pytree like q`.
    - `names`: a readable name per field.
    - `kind`: `"diagonal"` when every field is $D_a q$ with $D_a$ a diagonal 0/1 mask
      (then the whole family is evaluated with one gradient per sample), else
      `"general"`.
    """

    fields: tuple
    names: tuple = eqx.field(static=True)
    kind: str = eqx.field(static=True, default="general")
    masks: tuple | None = None

    def __len__(self):
        return len(self.fields)


class _Masked(eqx.Module):
    mask: object

    def __call__(self, q):
        return jax.tree.map(lambda m, x: m * x, self.mask, q)


def _zeros_mask(model):
    return jax.tree.map(jnp.zeros_like, model)


def rescaling_family(model: MLP, *, per_neuron: bool = True) -> Family:
    r"""Diagonal rescalings across all layers: for every layer $h$ (and every neuron $i$
    when `per_neuron`), the fields "scale the incoming weights $W_h[i,:]$", "scale the
    bias $b_h[i]$", "scale the outgoing weights $W_{h+1}[:,i]$" and "scale $\beta_h[i]$"
    (Swish). A symmetry is a combination with $\langle\nabla L, \xi\rangle \equiv 0$, e.g.
    in + bias − p·out for a p-homogeneous neuron."""
    if not isinstance(model, MLP):
        raise ValueError(
            f"`model` must be an `lnn.nn.MLP`; got {type(model).__name__}."
        )
    masks, names = [], []
    K = model.depth

    def add(where, value, name):
        m = eqx.tree_at(where, _zeros_mask(model), value)
        masks.append(m)
        names.append(name)

    for h in range(K):
        d = model.weights[h].shape[0]
        units = range(d) if per_neuron else [None]
        for i in units:
            sel = jnp.ones((d,)) if i is None else jnp.zeros((d,)).at[i].set(1.0)
            tag = f"{h + 1}" if i is None else f"{h + 1}[{i}]"
            W = model.weights[h]
            add(
                lambda m, h=h: m.weights[h],
                jnp.broadcast_to(sel[:, None], W.shape).astype(W.dtype),
                f"in{tag}",
            )
            if model.biases is not None:
                add(lambda m, h=h: m.biases[h], sel.astype(W.dtype), f"bias{tag}")
            if model.betas[h] is not None:
                add(lambda m, h=h: m.betas[h], sel.astype(W.dtype), f"beta{tag}")
            if h + 1 < K:
                Wn = model.weights[h + 1]
                add(
                    lambda m, h=h: m.weights[h + 1],
                    jnp.broadcast_to(sel[None, :], Wn.shape).astype(Wn.dtype),
                    f"out{tag}",
                )
    return Family(
        tuple(_Masked(m) for m in masks), tuple(names), "diagonal", tuple(masks)
    )


class _GLField(eqx.Module):
    layer: int = eqx.field(static=True)
    i: int = eqx.field(static=True)
    j: int = eqx.field(static=True)

    def __call__(self, q):
        h = self.layer - 1
        W, Wn = q.weights[h], q.weights[h + 1]
        xi = _zeros_mask(q)
        xi = eqx.tree_at(
            lambda m: m.weights[h], xi, jnp.zeros_like(W).at[self.i].set(W[self.j])
        )
        xi = eqx.tree_at(
            lambda m: m.weights[h + 1],
            xi,
            jnp.zeros_like(Wn).at[:, self.j].set(-Wn[:, self.i]),
        )
        if q.biases is not None:
            xi = eqx.tree_at(
                lambda m: m.biases[h],
                xi,
                jnp.zeros_like(q.biases[h]).at[self.i].set(q.biases[h][self.j]),
            )
        return xi


def gl_family(model: MLP, layer: int) -> Family:
    r"""$\mathfrak{gl}(d_h)$ on hidden layer $h$: the fields $\xi_{E_{ij}} =
    (E_{ij}W_h, -W_{h+1}E_{ij})$ (eq. 38), $d_h^2$ of them."""
    d = model.weights[layer - 1].shape[0]
    fields = tuple(_GLField(layer, i, j) for i in range(d) for j in range(d))
    return Family(
        fields, tuple(f"E{layer}[{i},{j}]" for i in range(d) for j in range(d))
    )


class _RotField(eqx.Module):
    i: int = eqx.field(static=True)
    j: int = eqx.field(static=True)

    def __call__(self, q):
        W = q.weights[0]
        P = (
            jnp.zeros((W.shape[1], W.shape[1]), W.dtype)
            .at[self.i, self.j]
            .set(1.0)
            .at[self.j, self.i]
            .set(-1.0)
        )
        return eqx.tree_at(lambda m: m.weights[0], _zeros_mask(q), W @ P)


def rotation_family(model: MLP) -> Family:
    r"""Rotations of the inputs: $\xi_P = (W_1P, 0, \ldots)$ for the basis
    $P = E_{ij} - E_{ji}$, $i < j$ (eq. 44)."""
    d0 = model.weights[0].shape[1]
    pairs = [(i, j) for i in range(d0) for j in range(i + 1, d0)]
    return Family(
        tuple(_RotField(i, j) for i, j in pairs),
        tuple(f"rot[{i},{j}]" for i, j in pairs),
    )


def custom_family(
    fields: Sequence[Callable | Generator], names: Sequence[str] | None = None
) -> Family:
    """A user-supplied list of vector fields `xi(q)` (or `lnn.Generator`s, whose
    `xi(0, q)` is used)."""
    out = []
    for f in fields:
        if isinstance(f, Generator):
            out.append(_FromGenerator(f))
        elif callable(f):
            out.append(f)
        else:
            raise ValueError(f"`fields` must hold callables or Generators; got {f!r}.")
    names = (
        tuple(names) if names is not None else tuple(f"xi{a}" for a in range(len(out)))
    )
    if len(names) != len(out):
        raise ValueError(f"`names` must have {len(out)} entries; got {len(names)}.")
    return Family(tuple(out), names)


class _FromGenerator(eqx.Module):
    gen: Generator

    def __call__(self, q):
        return self.gen.xi(jnp.zeros(()), q)
