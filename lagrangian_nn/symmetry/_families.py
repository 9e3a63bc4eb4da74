"""Structured linear families of candidate generators for `discover`."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._noether import Generator
from ..nn import MLP


class Family(eqx.Module):
    r"""A finite basis of vector fields $\xi_a(q)$; candidates are $\sum_a c_a\xi_a$.

    - `fields`: callables `xi_a(q) -> pytree like q`.
    - `names`: a readable name per field.
    - `segments`: for diagonal families only, an int array `(m, 2)` giving for each
      flattened parameter the (at most two) fields that scale it (`-1` for none), so
      that $\xi_a(q) = D_a q$ with $D_a$ the 0/1 diagonal of field $a$. The whole family
      is then evaluated with one gradient per sample and no per-field arrays.
    - `groups`: optionally, tuples of field indices (e.g. one per neuron). `discover`
      reports the laws found within each group first, which keeps them sparse.
    """

    fields: tuple
    names: tuple = eqx.field(static=True)
    segments: object = None
    groups: tuple | None = eqx.field(static=True, default=None)

    def __len__(self):
        return len(self.names)


class Diagonal(eqx.Module):
    r"""$\xi(q) = \mathrm{diag}(\sum_a c_a D_a)\,q$ for a diagonal family."""

    segments: jax.Array
    coefficients: jax.Array

    def __call__(self, q):
        flat, unravel = ravel_pytree(q)
        c = jnp.concatenate(
            [self.coefficients.astype(flat.dtype), jnp.zeros((1,), flat.dtype)]
        )
        scale = (
            c[self.segments[:, 0]] + c[self.segments[:, 1]]
        )  # index -1 is the 0 at the end
        return unravel(scale * flat)


def _zeros_mask(model):
    return jax.tree.map(jnp.zeros_like, model)


def rescaling_family(model: MLP, *, per_neuron: bool = True) -> Family:
    r"""Diagonal rescalings across all layers.

    With `per_neuron=True`, for every hidden neuron $i$ of layer $h$ the fields "scale
    its incoming weights $W_h[i,:]$", "scale its bias $b_h[i]$", "scale $\beta_h[i]$"
    (Swish) and "scale its outgoing weights $W_{h+1}[:,i]$", grouped per neuron. With
    `per_neuron=False`, one field per whole tensor: $W_h$, $b_h$, $\beta_h$ for every
    layer. A symmetry is a combination with $\langle\nabla L, \xi\rangle \equiv 0$, e.g.
    in + bias − p·out for a p-homogeneous neuron (eq. 28)."""
    if not isinstance(model, MLP):
        raise ValueError(
            f"`model` must be an `lnn.nn.MLP`; got {type(model).__name__}."
        )
    flat, unravel = ravel_pytree(model)
    m = flat.size
    idx = jax.tree.map(
        lambda x: np.asarray(x).astype(np.int64),
        unravel(jnp.arange(m, dtype=flat.dtype)),
    )
    seg = np.full((m, 2), -1, dtype=np.int64)
    names, groups = [], []

    def add(indices, name):
        a = len(names)
        indices = np.asarray(indices, dtype=np.int64).ravel()
        if np.any(seg[indices, 1] != -1):
            raise AssertionError("a parameter is scaled by more than two fields")
        slot = (seg[indices, 0] != -1).astype(np.int64)
        seg[indices, slot] = a
        names.append(name)
        return a

    K = model.depth
    if per_neuron:
        for h in range(K - 1):
            W, Wn = idx.weights[h], idx.weights[h + 1]
            for i in range(W.shape[0]):
                tag = f"{h + 1}[{i}]"
                group = [add(W[i, :], f"in{tag}")]
                if model.biases is not None:
                    group.append(add(idx.biases[h][i], f"bias{tag}"))
                if model.betas[h] is not None:
                    group.append(add(idx.betas[h][i], f"beta{tag}"))
                group.append(add(Wn[:, i], f"out{tag}"))
                groups.append(tuple(group))
    else:
        for h in range(K):
            add(idx.weights[h], f"W{h + 1}")
            if model.biases is not None:
                add(idx.biases[h], f"b{h + 1}")
            if model.betas[h] is not None:
                add(idx.betas[h], f"beta{h + 1}")
    segments = jnp.asarray(seg)
    n = len(names)
    eye = np.eye(n)
    fields = tuple(Diagonal(segments, jnp.asarray(eye[a])) for a in range(n))
    return Family(fields, tuple(names), segments, tuple(groups) if per_neuron else None)


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
