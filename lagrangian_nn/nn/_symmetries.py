r"""The symmetry catalogue: the continuous parameter symmetries of an equinox model,
read from its structure and certified by `lnn.symmetry_residual` before they are
returned (`lnn.nn.symmetries`)."""

import dataclasses
import functools
import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._noether import Generator, invariance_residual, noether_charge
from .._tree import tree_dot, tree_dtype
from ._activations import AbstractActivation
from ._layers import (
    AddPosition,
    Flatten,
    Residual,
    SelfAttention,
    TokenMean,
    Tokenwise,
    _SequentialClassifier,
)

# --- paths into the parameter pytree -------------------------------------------------
# A path is a tuple of steps ("a", attribute name) or ("i", index or dict key).


def _get(tree, path):
    for kind, k in path:
        tree = getattr(tree, k) if kind == "a" else tree[k]
    return tree


def _name(path) -> str:
    out = ""
    for kind, k in path:
        out += f".{k}" if kind == "a" else f"[{k}]"
    return out.lstrip(".") or "model"


def _place(q, paths, values):
    """A pytree like `q`, zero except `values` at `paths`."""
    xi = jax.tree.map(jnp.zeros_like, q)
    if not paths:
        return xi
    return eqx.tree_at(lambda m: tuple(_get(m, p) for p in paths), xi, tuple(values))


def _keypath(entries):
    out = []
    for e in entries:
        if isinstance(e, jax.tree_util.GetAttrKey):
            out.append(("a", e.name))
        elif isinstance(e, jax.tree_util.SequenceKey):
            out.append(("i", e.idx))
        elif isinstance(e, jax.tree_util.DictKey):
            out.append(("i", e.key))
        else:
            return None
    return tuple(out)


# --- the generators -----------------------------------------------------------------


def _along(mask, leaf, axis):
    shape = [1] * leaf.ndim
    shape[axis] = -1
    return mask.astype(leaf.dtype).reshape(shape)


class _Diagonal(eqx.Module):
    r"""$\xi = c\,m \odot \theta$ on the listed leaves ($m$ a 0/1 mask along `axis`,
    or all ones): rescaling of a unit or channel, scale invariance."""

    paths: tuple = eqx.field(static=True)
    axes: tuple = eqx.field(static=True)
    coeffs: tuple = eqx.field(static=True)
    masks: tuple

    def __call__(self, t, q):
        values = []
        for path, axis, c, m in zip(self.paths, self.axes, self.coeffs, self.masks):
            leaf = _get(q, path)
            v = c * leaf
            values.append(v if m is None else v * _along(m, leaf, axis))
        return _place(q, self.paths, values)

    def support(self, q):
        return self.paths


class _Shift(eqx.Module):
    r"""The constant field $\xi = m$ (broadcast along `axis`) on the listed leaves:
    translation of softmax logits."""

    paths: tuple = eqx.field(static=True)
    axes: tuple = eqx.field(static=True)
    masks: tuple

    def __call__(self, t, q):
        values = []
        for path, axis, m in zip(self.paths, self.axes, self.masks):
            leaf = _get(q, path)
            v = (
                jnp.ones_like(leaf)
                if m is None
                else jnp.broadcast_to(_along(m, leaf, axis), leaf.shape)
            )
            values.append(v)
        return _place(q, self.paths, values)

    def support(self, q):
        return self.paths


class _HeadGL(eqx.Module):
    r"""$GL(d_{head})$ of one head of an `eqx.nn.MultiheadAttention`, in its
    `(out, in)` layout (rows `sl` = the head's block):
    `"qk"`: $\xi(W_q[sl]) = A^\top W_q[sl]$, $\xi(W_k[sl]) = -A W_k[sl]$ (and the
    biases alike), i.e. $W_Q^h \to W_Q^h e^{\varepsilon A}$,
    $W_K^h \to W_K^h e^{-\varepsilon A^\top}$;
    `"vo"`: $\xi(W_v[sl]) = A^\top W_v[sl]$, $\xi(W_o[:, sl]) = -W_o[:, sl] A^\top$,
    i.e. $W_V^h \to W_V^h e^{\varepsilon A}$, $W_O^h \to e^{-\varepsilon A} W_O^h$."""

    attention: tuple = eqx.field(static=True)
    kind: str = eqx.field(static=True)
    head: int = eqx.field(static=True)
    A: jax.Array

    def __call__(self, t, q):
        mha = _get(q, self.attention)
        d = self.A.shape[0]
        sl = slice(self.head * d, (self.head + 1) * d)
        first, second = (
            ("query_proj", "key_proj")
            if self.kind == "qk"
            else ("value_proj", "output_proj")
        )
        P1, P2 = getattr(mha, first), getattr(mha, second)
        A = self.A.astype(P1.weight.dtype)
        paths, values = [], []
        base = self.attention

        def put(name, field, value):
            paths.append(base + (("a", name), ("a", field)))
            values.append(value)

        put(first, "weight", jnp.zeros_like(P1.weight).at[sl].set(A.T @ P1.weight[sl]))
        if P1.bias is not None:
            put(first, "bias", jnp.zeros_like(P1.bias).at[sl].set(A.T @ P1.bias[sl]))
        if self.kind == "qk":
            W = P2.weight
            put(second, "weight", jnp.zeros_like(W).at[sl].set(-A @ W[sl]))
            if P2.bias is not None:
                put(
                    second, "bias", jnp.zeros_like(P2.bias).at[sl].set(-A @ P2.bias[sl])
                )
        else:
            W = P2.weight
            put(second, "weight", jnp.zeros_like(W).at[:, sl].set(-W[:, sl] @ A.T))
        return _place(q, paths, values)

    def support(self, q):
        mha = _get(q, self.attention)
        names = ("query_proj", "key_proj")
        if self.kind == "vo":
            names = ("value_proj", "output_proj")
        out = []
        for i, name in enumerate(names):
            out.append(self.attention + (("a", name), ("a", "weight")))
            if getattr(mha, name).bias is not None and name != "output_proj":
                out.append(self.attention + (("a", name), ("a", "bias")))
        return tuple(out)


# --- what the walker knows ----------------------------------------------------------

_HOMOGENEOUS = ((jax.nn.relu, 1.0), (jax.nn.leaky_relu, 1.0), (jnp.abs, 1.0))
_SMOOTH = (
    jax.nn.tanh,
    jnp.tanh,
    jax.nn.sigmoid,
    jax.nn.softplus,
    jax.nn.gelu,
    jax.nn.silu,
    jax.nn.swish,
    jax.nn.elu,
    jax.nn.selu,
    jax.nn.celu,
    jax.nn.relu6,
    jax.nn.hard_tanh,
    jax.nn.log_sigmoid,
    jnp.sin,
    jnp.cos,
    jnp.exp,
)
_SOFTMAX = (jax.nn.log_softmax, jax.nn.softmax)
_POOLS = (
    eqx.nn.AvgPool1d,
    eqx.nn.AvgPool2d,
    eqx.nn.AvgPool3d,
    eqx.nn.MaxPool1d,
    eqx.nn.MaxPool2d,
    eqx.nn.MaxPool3d,
    eqx.nn.AdaptiveAvgPool1d,
    eqx.nn.AdaptiveAvgPool2d,
    eqx.nn.AdaptiveAvgPool3d,
    eqx.nn.AdaptiveMaxPool1d,
    eqx.nn.AdaptiveMaxPool2d,
    eqx.nn.AdaptiveMaxPool3d,
)
_NORMS = (eqx.nn.LayerNorm, eqx.nn.RMSNorm, eqx.nn.GroupNorm)


def _in(fn, table):
    return any(fn is f for f in table)


def _function(layer):
    """The plain function of an elementwise layer, or None."""
    fn = layer.fn if isinstance(layer, eqx.nn.Lambda) else layer
    if isinstance(fn, functools.partial) and not fn.args:
        return fn.func, fn.keywords
    if isinstance(fn, eqx.Module):
        return None
    return (fn, {}) if callable(fn) else None


def _activation(layer):
    """("homogeneous", p), ("smooth", name), or None (not an activation we know)."""
    if isinstance(layer, eqx.nn.Lambda):
        layer = layer.fn
    if isinstance(layer, AbstractActivation):
        p = layer.degree
        if p is not None and not layer.trainable_beta:
            return "homogeneous", float(p)
        return "smooth", type(layer).__name__
    if isinstance(layer, eqx.nn.PReLU):
        return "homogeneous", 1.0
    f = _function(layer)
    if f is None:
        return None
    fn, kw = f
    for g, p in _HOMOGENEOUS:
        if fn is g and set(kw) <= {"negative_slope"}:
            return "homogeneous", p
    if _in(fn, _SMOOTH):
        return "smooth", getattr(fn, "__name__", repr(fn))
    return None


def _is_flatten(layer):
    if isinstance(layer, Flatten):
        return True
    f = _function(layer)
    return f is not None and f[0] is jnp.ravel and not f[1]


def _is_softmax(layer):
    f = _function(layer)
    return f is not None and _in(f[0], _SOFTMAX)


def _unwrap(layer, path):
    while isinstance(layer, Tokenwise):
        layer, path = layer.layer, path + (("a", "layer"),)
    return layer, path


@dataclasses.dataclass(frozen=True)
class _Chain:
    """Channels of the current activation that parameters can rescale: channel c
    scales with slice c (along `axis`) of each leaf in `terms`; `p` is the degree of
    the homogeneous maps applied since; `flatten` if the activation was flattened
    channel-major since."""

    terms: tuple
    n: int
    p: float
    source: str
    flatten: bool = False


@dataclasses.dataclass(frozen=True)
class _State:
    chain: _Chain | None = None
    group: tuple | None = None  # leaves whose joint scaling scales the activation
    head: tuple | None = None  # (weight path, bias path | None) of a last Linear


@dataclasses.dataclass
class _Context:
    candidates: list = dataclasses.field(default_factory=list)
    refused: dict = dataclasses.field(default_factory=dict)
    unknown: list = dataclasses.field(default_factory=list)


def _weight_paths(layer, path):
    W = path + (("a", "weight"),)
    b = path + (("a", "bias"),) if getattr(layer, "bias", None) is not None else None
    return W, b


def _consume(chain: _Chain | None, inputs, ctx: _Context, where: str):
    """Rescale candidates of `chain` against the input axis of the next weight
    layers: `inputs` lists (path, axis, n_in)."""
    if chain is None:
        return
    outs = []
    for path, axis, n_in in inputs:
        if chain.flatten:
            if n_in % chain.n:
                ctx.refused[f"{chain.source}:rescale"] = (
                    f"{where} reads {n_in} features, not a multiple of the "
                    f"{chain.n} channels flattened before it"
                )
                return
            block = n_in // chain.n
        elif n_in != chain.n:
            ctx.refused[f"{chain.source}:rescale"] = (
                f"{where} reads {n_in} features but {chain.n} channels reach it"
            )
            return
        else:
            block = 1
        outs.append((path, axis, block))
    for c in range(chain.n):
        unit = np.zeros(chain.n, np.float32)
        unit[c] = 1.0
        paths, axes, coeffs, masks = [], [], [], []
        for path, axis in chain.terms:
            paths.append(path)
            axes.append(axis)
            coeffs.append(1.0)
            masks.append(unit)
        for path, axis, block in outs:
            paths.append(path)
            axes.append(axis)
            coeffs.append(-chain.p)
            masks.append(np.repeat(unit, block))
        gen = Generator(
            _Diagonal(tuple(paths), tuple(axes), tuple(coeffs), tuple(masks))
        )
        ctx.candidates.append((f"{chain.source}:rescale[{c}]", gen, "quadratic", "out"))


def _attention_candidates(mha, path, ctx: _Context):
    name = _name(path)
    H = mha.num_heads
    for kind, d in (("qk", mha.qk_size), ("vo", mha.vo_size)):
        for h in range(H):
            for i in range(d):
                for j in range(d):
                    A = np.zeros((d, d), np.float32)
                    A[i, j] = 1.0
                    gen = Generator(_HeadGL(path, kind, h, A))
                    ctx.candidates.append(
                        (f"{name}:{kind}[{h}][{i},{j}]", gen, "quadratic", "out")
                    )


def _find_attention(module, path, ctx: _Context):
    is_mha = lambda x: isinstance(x, eqx.nn.MultiheadAttention)
    leaves, _ = jax.tree_util.tree_flatten_with_path(module, is_leaf=is_mha)
    for kp, leaf in leaves:
        if is_mha(leaf):
            sub = _keypath(kp)
            if sub is not None:
                _attention_candidates(leaf, path + sub, ctx)


def _walk_sequence(layers, path, st: _State, ctx: _Context) -> _State:
    for i, layer in enumerate(layers):
        st = _walk(layer, path + (("i", i),), st, ctx)
    return st


def _walk(layer, path, st: _State, ctx: _Context) -> _State:  # noqa: C901
    where = _name(path)
    if isinstance(layer, _SequentialClassifier):
        return _walk(layer.layers, path + (("a", "layers"),), st, ctx)
    if isinstance(layer, eqx.nn.Sequential):
        return _walk_sequence(layer.layers, path + (("a", "layers"),), st, ctx)
    if isinstance(layer, (list, tuple)):
        return _walk_sequence(layer, path, st, ctx)
    layer, path = _unwrap(layer, path)
    if isinstance(layer, (eqx.nn.Identity, eqx.nn.Dropout, TokenMean)) or isinstance(
        layer, _POOLS
    ):
        # per-channel positively homogeneous of degree 1: rescaling passes through
        return st
    if _is_softmax(layer):
        return _State(None, None, st.head)
    if _is_flatten(layer):
        chain = st.chain and dataclasses.replace(st.chain, flatten=True)
        return _State(chain, st.group, None)
    if isinstance(layer, eqx.nn.Linear):
        W, b = _weight_paths(layer, path)
        if layer.in_features == "scalar" or layer.out_features == "scalar":
            ctx.unknown.append(where)
            return _State()
        _consume(st.chain, [(W, 1, layer.in_features)], ctx, where)
        terms = ((W, 0),) + (((b, 0),) if b else ())
        chain = _Chain(terms, layer.out_features, 1.0, where)
        return _State(chain, tuple(p for p, _ in terms), (W, b))
    if isinstance(layer, eqx.nn.Conv) and not isinstance(layer, eqx.nn.ConvTranspose):
        W, b = _weight_paths(layer, path)
        if layer.groups == 1:
            _consume(st.chain, [(W, 1, layer.in_channels)], ctx, where)
        elif st.chain is not None:
            ctx.refused[f"{st.chain.source}:rescale"] = (
                f"{where} is a grouped convolution (groups={layer.groups})"
            )
        terms = ((W, 0),) + (((b, 0),) if b else ())
        chain = _Chain(terms, layer.out_channels, 1.0, where)
        return _State(chain, tuple(p for p, _ in terms), None)
    act = _activation(layer)
    if act is not None:
        kind, p = act
        if kind == "homogeneous":
            chain = st.chain and dataclasses.replace(st.chain, p=st.chain.p * p)
            return _State(chain, st.group, None)
        if st.chain is not None:
            ctx.refused[f"{st.chain.source}:rescale"] = (
                f"the activation {p} at {where} is not positively homogeneous"
            )
        return _State()
    if isinstance(layer, _NORMS):
        if st.group is not None:
            if layer.eps != 0:
                ctx.refused[f"{where}:scale"] = (
                    f"the normalisation's eps = {layer.eps} > 0 breaks scale "
                    "invariance (by O(eps/variance)); build it with eps=0"
                )
            else:
                gen = Generator(
                    _Diagonal(
                        st.group,
                        (None,) * len(st.group),
                        (1.0,) * len(st.group),
                        (None,) * len(st.group),
                    )
                )
                ctx.candidates.append((f"{where}:scale", gen, "quadratic", "out"))
        w = getattr(layer, "weight", None)
        if w is None:
            return _State()
        terms = ((path + (("a", "weight"),), 0),)
        if getattr(layer, "bias", None) is not None:
            terms += ((path + (("a", "bias"),), 0),)
        n = layer.channels if isinstance(layer, eqx.nn.GroupNorm) else w.shape[0]
        if isinstance(layer, eqx.nn.GroupNorm) or w.ndim == 1:
            return _State(_Chain(terms, n, 1.0, where), tuple(p for p, _ in terms))
        return _State(None, tuple(p for p, _ in terms))
    if isinstance(layer, AddPosition):
        P = path + (("a", "position"),)
        chain = st.chain and dataclasses.replace(
            st.chain, terms=st.chain.terms + ((P, -1),)
        )
        group = None if st.group is None else st.group + (P,)
        return _State(chain, group, None)
    if isinstance(layer, SelfAttention):
        mp = path + (("a", "attention"),)
        mha = layer.attention
        _attention_candidates(mha, mp, ctx)
        _consume(
            st.chain,
            [
                (mp + (("a", n), ("a", "weight")), 1, getattr(mha, n).in_features)
                for n in ("query_proj", "key_proj", "value_proj")
            ],
            ctx,
            where,
        )
        W, b = _weight_paths(mha.output_proj, mp + (("a", "output_proj"),))
        terms = ((W, 0),) + (((b, 0),) if b else ())
        chain = _Chain(terms, mha.output_proj.out_features, 1.0, _name(mp))
        return _State(chain, tuple(p for p, _ in terms), None)
    if isinstance(layer, Residual):
        if st.chain is not None:
            ctx.refused[f"{st.chain.source}:rescale"] = (
                f"its output enters the residual block {where}"
            )
        branch = layer.branch.layers
        sub = _walk_sequence(
            branch, path + (("a", "branch"), ("a", "layers")), _State(), ctx
        )
        first, _ = _unwrap(branch[0], ()) if branch else (None, ())
        group = None
        if st.group is not None and sub.group is not None and isinstance(first, _NORMS):
            if first.eps != 0:
                # the branch reads the stream through this norm only: with eps ≠ 0
                # the norm is not exactly scale invariant, so scaling the stream
                # changes the branch's output (by O(eps/variance), which a float32
                # certificate cannot see): no stream scale through this block
                norm = _name(path + (("a", "branch"), ("a", "layers"), ("i", 0)))
                ctx.refused[f"{norm}:scale"] = (
                    f"the normalisation's eps = {first.eps} > 0 breaks scale "
                    f"invariance (by O(eps/variance)) of the residual stream that "
                    f"{where} reads through it; build it with eps=0"
                )
            else:
                group = st.group + sub.group
        return _State(None, group, None)
    # not in the catalogue: report it, keep the self-contained attention symmetries
    ctx.unknown.append(where)
    if st.chain is not None:
        ctx.refused[f"{st.chain.source}:rescale"] = (
            f"its output enters {where} ({type(layer).__name__}), a structure the "
            "catalogue does not know"
        )
    if isinstance(layer, eqx.Module):
        _find_attention(layer, path, ctx)
    return _State()


# --- forms of model -----------------------------------------------------------------


def _compose(layers):
    def f(x):
        for layer in layers:
            x = layer(x)
        return x

    return f


def _sequence_field(model):
    """The `layers` field of a user's module, if it is a list/tuple/Sequential."""
    if not dataclasses.is_dataclass(model):
        return None
    names = {f.name for f in dataclasses.fields(model)}
    if "layers" not in names:
        return None
    layers = model.layers
    if isinstance(layers, eqx.nn.Sequential):
        return layers.layers, (("a", "layers"), ("a", "layers"))
    if isinstance(layers, (list, tuple)) and all(callable(ly) for ly in layers):
        return tuple(layers), (("a", "layers"),)
    return None


_KNOWN_ROOTS = (_SequentialClassifier, eqx.nn.Sequential, list, tuple)


def _forward(model):
    if isinstance(model, (list, tuple)):
        return _compose(model)
    return model


# --- certification ------------------------------------------------------------------


class _Probe(eqx.Module):
    r"""The affine field $\xi(t', q') = Z + (t' - t_0)\dot Z$: at the state $(t_0, q)$
    its value is $Z$ and its total time derivative along the state is $\dot Z$."""

    t0: jax.Array
    value: object
    rate: object

    def __call__(self, t, q):
        dt = t - self.t0
        return jax.tree.map(
            lambda z, r: z + dt.astype(z.dtype) * r, self.value, self.rate
        )


def _pattern(tree, offset):
    """A fixed pytree like `tree` with entries in [1, 2) and no simple relation
    between them (a low-discrepancy sequence): a point where no linear function of
    the tree vanishes by accident."""
    leaves, treedef = jax.tree.flatten(tree)
    out, start = [], offset
    for a in leaves:
        # computed in the program, not embedded in it as a constant of its size
        i = start + jnp.arange(np.size(a), dtype=a.dtype)
        out.append((1 + jnp.mod(i * 0.6180339887498949, 1.0)).reshape(np.shape(a)))
        start += np.size(a)
    return jax.tree.unflatten(treedef, out)


def _by_structure(gens: dict, size: int) -> tuple:
    """The generators grouped by structure, for `_each`: (stacked generators, their
    positions in `gens`, count, chunk for fields of `size` numbers each)."""
    items = [(k, g, None, None) for k, g in gens.items()]
    return tuple(
        (stacked, tuple(idx), n, _chunk(n, size))
        for idx, (stacked, _, n) in _stacked(items)
    )


def _each(fn, groups, names):
    """name → `fn(generator)` for every generator of `groups` (`_by_structure`),
    mapped over each structure in its chunks."""
    values = [None] * len(names)
    for stacked, idx, n, chunk in groups:
        out = _map(fn, stacked, n, chunk)
        for j, i in enumerate(idx):
            values[i] = out[j]
    return dict(zip(names, values))


class _PerName(eqx.Module):
    r"""name → `make(L, gen_k)(t, q, qdot)` for every generator, where `make` is
    `lnn.noether_charge` or `lnn.invariance_residual`. For a generator without a time
    component both depend on the field only through its value $\xi$ at the state and
    its total time derivative $\dot\xi = \partial_t\xi + \partial_q\xi\cdot\dot q$,
    and linearly: `make` $= \langle A, \xi\rangle + \langle B, \dot\xi\rangle$. $A$
    and $B$ are read once, as the gradient of `make` for the affine field
    `_Probe(t, Z, Ż)` with respect to $(Z, \dot Z)$ (one evaluation of $L$'s
    derivatives, whatever the number of generators). Each generator then costs one
    forward-mode evaluation of its own field, mapped over the generators of one
    structure `chunk` at a time: memory O(chunk × parameters), never (number of
    generators) × parameters."""

    make: Callable = eqx.field(static=True)
    lagrangian: Callable
    groups: tuple  # (stacked generators, their indices, count, chunk)
    names: tuple = eqx.field(static=True)
    reduced: bool = eqx.field(static=True)

    def __call__(self, t, q, qdot):
        dtype = tree_dtype(q)
        t = jnp.asarray(t, dtype)

        def total(value, rate):
            gen = Generator(_Probe(t, value, rate))
            return self.make(self.lagrangian, gen, reduced=self.reduced)(t, q, qdot)

        # linear in (Z, Ż): the gradient is the same everywhere; taken at a point
        # where the total is not 0 by accident (a conformal weight e^s is applied as
        # `where(x == 0, 0, 2^n e^r x)`, whose gradient vanishes at x = 0)
        A, B = jax.grad(total, argnums=(0, 1))(_pattern(q, 0), _pattern(q, 7919))
        one = jnp.ones_like(t)

        def of(gen):
            xi, xi_dot = jax.jvp(gen.xi, (t, q), (one, qdot))
            return tree_dot(A, xi) + tree_dot(B, xi_dot)

        return _each(of, self.groups, self.names)


def _per_name(make, L, gens: dict, reduced, size) -> _PerName:
    if not isinstance(reduced, (bool, np.bool_)):
        raise ValueError(f"`reduced` must be True or False; got {reduced!r}.")
    if not callable(L):
        raise ValueError(f"`L` must be a callable L(t, q, qdot); got {L!r}.")
    make(L, Generator(lambda t, q: q), reduced=reduced)  # the library's own checks
    timed = [k for k, g in gens.items() if g.tau is not None]
    if timed:
        raise ValueError(
            "`noether_charges` and `invariance_residuals` take generators without a "
            f"time component; {timed[:3]} have one (use `lnn.noether_charge` for them)."
        )
    # each generator's field and its time derivative: 2 × size numbers
    groups = _by_structure(gens, 2 * size)
    return _PerName(make, L, groups, tuple(gens), bool(reduced))


class Symmetries(dict):
    """The result of `lnn.nn.symmetries`: a `dict` name → `lnn.Generator` of the
    certified symmetries, with the evidence as attributes:

    - `kinds`: name → `"quadratic"` (a linear field $\\xi = M\\theta$; charge
      $\\langle\\theta, \\xi(\\theta)\\rangle$) or `"linear"` (a constant field; charge
      $\\langle\\xi, \\theta\\rangle$), as `lnn.optim.charge` takes them.
    - `residuals`: name → $|r|/s$, the certificate: $r = $ `symmetry_residual` and
      $s = \\langle|\\nabla\\ell|, |\\xi|\\rangle$ the size of its terms.
    - `tolerance`: the bound every returned residual met.
    - `refused`: name → reason, for candidates whose structure or certificate failed.
    - `unknown`: paths of modules the catalogue does not know (their symmetries are
      not searched; a self-contained `eqx.nn.MultiheadAttention` inside one still is).
    - `candidates`: name → `lnn.Generator` of every candidate the structure gave,
      before the certificate (e.g. to search their span with
      `lnn.symmetry.discover(loss, params, lnn.symmetry.custom_family(...))`).
    - `params`, `static`: `eqx.partition(model, eqx.is_inexact_array)`; the
      generators act on (pytrees like) `params`.

    Methods: `charges(params)` (the gradient-flow charges), `isometries()` (the part
    that also leaves the kinetic energy invariant: the symmetries of ND, NAGF and
    the damped flows), `noether_charges(L)` and `invariance_residuals(L)` (every
    generator's charge and balance rate under a Lagrangian, as one callable).
    """

    def __init__(
        self,
        gens,
        *,
        candidates,
        kinds,
        residuals,
        tolerance,
        refused,
        unknown,
        params,
        static,
        terms=None,
    ):
        super().__init__(gens)
        self.candidates = candidates
        self.kinds = kinds
        self.residuals = residuals
        self.tolerance = tolerance
        self.refused = refused
        self.unknown = unknown
        self.params = params
        self.static = static
        self._terms = {} if terms is None else terms

    def charges(self, params) -> dict:
        r"""name → the charge at `params`: $\langle\theta, \xi(\theta)\rangle$ for
        every generator (for a constant field this is $\langle\xi,\theta\rangle$).
        Conserved along gradient flow of any loss that the generators leave
        invariant. Jittable. The generators of one structure are evaluated as one
        vectorised map, in chunks (memory a few copies of the parameters, and a
        compiled program whose size does not grow with their number)."""
        t = jnp.zeros((), tree_dtype(params))
        groups = _by_structure(self, _size(params))
        return _each(lambda g: tree_dot(params, g.xi(t, params)), groups, list(self))

    def noether_charges(self, L, *, reduced: bool = False) -> Callable:
        r"""`Q(t, q, qdot) -> {name: charge}`: `lnn.noether_charge(L, gen)` of every
        generator, as one callable (map it over a trajectory with
        `traj.evaluate(...)`). For $L = m(t)\,(\tfrac12|\dot\theta|^2 - c\,
        \mathrm{loss})$ the charge is $m(t)\langle\dot\theta, \xi(\theta)\rangle$:
        conserved for the generators of `isometries()`, and for the others it obeys
        the exact balance $Q(t) - Q(t_0) = \int R\,dt$ with $R$ from
        `invariance_residuals(L)`. `reduced` as in `lnn.noether_charge`.

        $L$'s derivatives are evaluated once per state, whatever the number of
        generators; the generators' fields are evaluated in chunks, so memory stays
        a few copies of the parameters. Wrap it in `eqx.filter_jit` (not `jax.jit`)
        to compile it yourself."""
        return _per_name(noether_charge, L, self, reduced, _size(self.params))

    def invariance_residuals(self, L, *, reduced: bool = False) -> Callable:
        r"""`R(t, q, qdot) -> {name: rate}`: `lnn.invariance_residual(L, gen)` of
        every generator, as one callable; along solutions $R = dQ/dt$ for the
        charges of `noether_charges(L)`. For
        $L = m(t)(\tfrac12|\dot\theta|^2 - c\,\mathrm{loss})$ and a certified
        symmetry of the loss, $R = m(t)\langle\dot\theta, \partial\xi\cdot
        \dot\theta\rangle$: zero for an isometry, $m(|\dot W_{in}|^2 -
        p|\dot W_{out}|^2)$ for a rescaling."""
        return _per_name(invariance_residual, L, self, reduced, _size(self.params))

    def isometries(self) -> "Symmetries":
        r"""The symmetries that also leave the kinetic energy $\tfrac12|\dot\theta|^2$
        invariant, i.e. whose field's Jacobian is antisymmetric: symmetries of every
        Lagrangian $m(t)\,(\tfrac12|\dot\theta|^2 - c(t)\,\mathrm{loss}(\theta))$
        (ND, NAGF `lnn.dynamics.nesterov`, `damped`, `general`), whose Noether
        charges $m(t)\langle\dot\theta, \xi(\theta)\rangle$ are conserved along
        those flows.

        - **translations** of the softmax head (a constant field): the momenta of
          the head's column sums;
        - **per-head rotations** (`"<attention>:so_qk[h][i,j]"`, `"...:so_vo[h][i,j]"`,
          $i < j$): the antisymmetric generators $A = E_{ij} - E_{ji}$ of each
          head's $GL(d_{head})$ of $(W_Q, W_K)$ and of $(W_V, W_O)$, the orthogonal
          subgroup $O(d_{head})$. Each is built where both `qk[h][i,j]` and
          `qk[h][j,i]` are certified; its certificate is their difference,
          $|r_{ij} - r_{ji}| \le$ `tolerance` $\cdot(s_{ij} + s_{ji})$, stated
          relative to $s_{ij} + s_{ji}$ in `residuals`.

        The rest of the catalogue (rescalings, normalisation scale invariance,
        the symmetric part of $GL(d_{head})$) moves the kinetic energy: under the
        momentum flows their charges are not conserved but obey exact balances
        (`invariance_residuals`); they are listed in the result's `refused` with
        the measured rate. The test is $|\langle v, \partial\xi\cdot v\rangle| \le$
        `tolerance` $\cdot\langle|v|, |\partial\xi\cdot v|\rangle$ at two random
        velocities $v$ (a linear field's Jacobian is the same everywhere). Along
        gradient flow a rotation's charge $\langle\theta, A\theta\rangle$ vanishes
        identically.

        **Returns:** a `Symmetries` (kinds, residuals, `refused` as above).
        """
        gens, kinds, residuals = {}, {}, {}
        for name, gen in self.items():
            gens[name], kinds[name] = gen, self.kinds[name]
            residuals[name] = self.residuals[name]
        for name, gen, r in _rotations(self):
            gens[name], kinds[name], residuals[name] = gen, "quadratic", r
        items = [(k, g, kinds[k], "out") for k, g in gens.items()]
        k, s = _kinetic(items, self.params) if items else ((), ())
        refused, out = {}, {}
        for (name, gen, *_), ki, si in zip(items, k, s):
            bad = np.abs(ki) > self.tolerance * si
            if np.any(bad):
                j = int(np.argmax(bad))
                refused[name] = (
                    "moves the kinetic energy: |⟨v, ∂ξ·v⟩| / size of its terms = "
                    f"{abs(ki[j]) / si[j]:.3g} > {self.tolerance:.3g} at a random "
                    "velocity v"
                )
            else:
                out[name] = gen
        return Symmetries(
            out,
            candidates=gens,
            kinds={k: kinds[k] for k in out},
            residuals={k: residuals[k] for k in out},
            tolerance=self.tolerance,
            refused=refused,
            unknown=self.unknown,
            params=self.params,
            static=self.static,
        )


def _rotations(S):
    """(name, generator, certificate) of the antisymmetric generators
    $E_{ij} - E_{ji}$ of each head's $GL(d_{head})$ whose two parts are certified."""
    heads = {}
    for name, gen in S.items():
        xi = gen.xi
        if isinstance(xi, _HeadGL):
            (i,), (j,) = np.nonzero(np.asarray(xi.A))
            heads[(xi.attention, xi.kind, xi.head, int(i), int(j))] = name
    out = []
    for (path, kind, h, i, j), name in heads.items():
        other = heads.get((path, kind, h, j, i))
        if i >= j or other is None:
            continue
        A = np.asarray(S[name].xi.A) - np.asarray(S[other].xi.A)
        (r1, s1), (r2, s2) = S._terms[name], S._terms[other]
        out.append(
            (
                f"{_name(path)}:so_{kind}[{h}][{i},{j}]",
                Generator(_HeadGL(path, kind, h, A)),
                abs(r1 - r2) / (s1 + s2),
            )
        )
    return out


def symmetries(
    model,
    x=None,
    *,
    loss: Callable | None = None,
    softmax_head: bool | None = None,
    strict: bool = False,
    rtol: float | None = None,
) -> Symmetries:
    r"""The continuous parameter symmetries of an equinox model, read from its
    structure and each certified by `lnn.symmetry_residual` before it is returned.

    **The catalogue.**

    - **rescale** (`"<layer>:rescale[c]"`): unit or channel $c$ of a `Linear` or
      `Conv` (or of a normalisation's learnable scale and bias, or of an attention
      output) whose output reaches the next weight layer only through positively
      homogeneous maps of total degree $p$ (ReLU, leaky ReLU, |·|, PReLU, `lnn.nn`
      ReLU/RePU, average and max pooling, dropout, flattening): its incoming weights
      and bias scale by $(1+\varepsilon)$ and the next layer's input weights of $c$
      (all of $W_Q, W_K, W_V$ for an attention layer) by $(1+\varepsilon)^{-p}$.
    - **scale** (`"<norm>:scale"`): every parameter whose joint scaling scales the
      input of a `LayerNorm`, `RMSNorm` or `GroupNorm` that is its only reader: the
      weight layer before it, or, in a pre-norm residual stream, everything that
      writes into the stream. Needs the norm's `eps = 0`, and in a residual stream
      that of every norm through which a block reads the stream (refused otherwise:
      with `eps > 0` the breaking is $O(\text{eps}/\text{variance})$, below what a
      float32 certificate resolves).
    - **translation** (`"<head>:translate[j]"`, `"<head>:translate[bias]"`): adding
      the same number to column $j$ of the last `Linear`'s weight (to every entry of
      its bias) shifts all logits equally; a symmetry of a softmax cross-entropy loss.
      Its charges are the column sums.
    - **per-head GL** (`"<attention>:qk[h][i,j]"`, `"...:vo[h][i,j]"`): for every
      `eqx.nn.MultiheadAttention` and head $h$, $W_Q^h \to W_Q^h e^{\varepsilon A}$,
      $W_K^h \to W_K^h e^{-\varepsilon A^\top}$ and $W_V^h \to W_V^h e^{\varepsilon
      A}$, $W_O^h \to e^{-\varepsilon A} W_O^h$, for $A = E_{ij}$ (Marcotte,
      Gribonval & Peyré). Their charges are the entries of
      `lnn.nn.attention_charges`: $W_Q^{h\top}W_Q^h - W_K^{h\top}W_K^h$ and
      $W_V^{h\top}W_V^h - W_O^h W_O^{h\top}$.

    **Supported forms of `model`.** The structure is read, never guessed:

    - an `eqx.nn.Sequential` or a list/tuple of layers (applied in order), or one
      of the layers below on its own (e.g. a lone `lnn.nn.SelfAttention`);
    - `lnn.nn.ConvNet`, `lnn.nn.Transformer`;
    - a user's `eqx.Module` with a `layers` field (list, tuple or
      `eqx.nn.Sequential`): accepted once `model(x)` is checked to equal applying
      `layers` in order, on the probe inputs;
    - layers: `eqx.nn.Linear`, `Conv1d/2d/3d`, the pools, `LayerNorm`, `RMSNorm`,
      `GroupNorm`, `Identity`, `Dropout`, `PReLU`, `Lambda` of a `jax.nn` function,
      plain `jax.nn` functions, `lnn.nn` activations, and the composite
      `lnn.nn.Tokenwise`, `Residual`, `SelfAttention`, `AddPosition`, `TokenMean`,
      `Flatten`, with nested `Sequential`s.

    Anything else (a custom `__call__`, `eqx.nn.MLP`, an unknown function) is listed
    in `.unknown` (with a warning, or a `ValueError` when `strict=True`) and breaks
    the chains through it; an `eqx.nn.MultiheadAttention` inside it still gives its
    per-head GL, which holds whatever surrounds the module, after certification.

    **Parameters.** The generators act on
    `params, static = eqx.partition(model, eqx.is_inexact_array)` (the model's tree
    with `None` for every non-float leaf), the `q` of `lnn.simulate`,
    `lnn.symmetry_residual`, `lnn.optim`: write the loss as
    `lambda p: loss(eqx.combine(p, static))`. For a model whose leaves are all float
    arrays, `params` is the model itself.

    **Certificate.** Each candidate's residual $r = \langle\nabla\ell, \xi\rangle$
    (`lnn.symmetry_residual(ℓ, gen)(params)`, with the gradient computed once) must
    satisfy $|r| \le \text{rtol}\cdot s$, $s = \langle|\nabla\ell|, |\xi|\rangle$ the
    size of its terms, and $s > 0$. $\ell$ is `loss` if given (then a
    symmetry of that loss, e.g. without weight decay on one factor, is certified),
    else a random projection $\sum c \odot f(x)$ of the outputs on the probe inputs
    (for translation: of `log_softmax` of the outputs). The default
    `rtol = 2**8 · eps(dtype)`.

    **Arguments:**

    - `model`: an equinox model in a supported form (above), one example per call.
    - `x`: probe inputs, a batch `(n, *input_shape)`; optional for
      `lnn.nn.ConvNet` and `lnn.nn.Transformer`.
    - `loss`: optional `loss(model) -> scalar` to certify against.
    - `softmax_head`: whether the output is logits for a softmax cross-entropy loss
      (default: the model's `softmax_head` attribute, else whether it ends in
      `jax.nn.log_softmax`).
    - `strict`: raise instead of warn when part of the model is unknown.
    - `rtol`: the certificate's relative tolerance.

    **Returns:** a `Symmetries` dict name → `lnn.Generator`, with `kinds`,
    `residuals`, `tolerance`, `refused`, `unknown`, `params`, `static`,
    `charges(params)` (gradient flow), `isometries()` (the part conserved by the
    momentum flows ND, NAGF, damped), `noether_charges(L)` and
    `invariance_residuals(L)`.

    **Raises:** `ValueError` for a model in no supported form, missing or
    ill-shaped `x`, non-float parameters, or (with `strict=True`) unknown structure.
    """
    if not (isinstance(model, (eqx.Module, list, tuple))):
        raise ValueError(
            "`model` must be an equinox model (an `eqx.Module`, or a list/tuple of "
            f"layers); got {type(model).__name__}."
        )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("`model` has no floating-point parameters.")
    dtype = tree_dtype(params)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"`model`'s parameters must be real floating; got {dtype}.")
    if rtol is None:
        rtol = 2.0**8 * float(jnp.finfo(dtype).eps)
    elif not (isinstance(rtol, (int, float)) and rtol > 0):
        raise ValueError(f"`rtol` must be a positive number; got {rtol!r}.")
    if x is None:
        shape = getattr(model, "input_shape", None)
        if shape is None:
            raise ValueError(
                "`x` (probe inputs, a batch (n, *input_shape)) is required for this "
                f"model ({type(model).__name__}): the certificate evaluates it."
            )
        x = np.random.default_rng(1).standard_normal((16,) + tuple(shape))
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(
            "`x` must be a non-empty float batch (n, *input_shape); got "
            f"{x.dtype} of shape {x.shape}."
        )
    x = x.astype(dtype)
    if loss is not None and not callable(loss):
        raise ValueError(f"`loss` must be a callable loss(model); got {loss!r}.")

    try:
        out = jax.eval_shape(jax.vmap(_forward(model)), x)
    except Exception as e:
        raise ValueError(
            f"`model` could not be applied to the probe inputs `x` (shape {x.shape}, "
            f"one example per call, mapped over the leading axis): {e}"
        ) from e

    # a sequence, or one layer of the catalogue on its own (a lone
    # `lnn.nn.SelfAttention`, `Residual`, `eqx.nn.Linear`, ...); the walk reports the
    # root itself as unknown ("model") when it is neither
    ctx = _Context()
    st = _walk(model, (), _State(), ctx)
    if not isinstance(model, _KNOWN_ROOTS) and _name(()) in ctx.unknown:
        # a user's module: the composition of its `layers` field, or unknown
        ctx = _Context()
        found = _sequence_field(model)
        agrees = False
        if found is not None:
            layers, path = found
            if jax.eval_shape(jax.vmap(_compose(layers)), x).shape == out.shape:
                err, scale = _disagreement(model, layers, x)
                agrees = err <= 64 * float(jnp.finfo(dtype).eps) * scale
        if agrees:
            st = _walk_sequence(layers, path, _State(), ctx)
        else:
            ctx.unknown.append(
                f"model ({type(model).__name__}: its __call__ is not the composition "
                "of a `layers` field)"
            )
            _find_attention(model, (), ctx)
            st = _State()
    last = model[-1] if isinstance(model, (list, tuple)) and model else None
    if softmax_head is None:
        softmax_head = bool(getattr(model, "softmax_head", False)) or (
            last is not None and _is_softmax(last)
        )
    if softmax_head:
        if st.head is None:
            ctx.refused["translation"] = (
                "the model does not end in an `eqx.nn.Linear` (optionally followed "
                "by log_softmax), so its logits have no translation generator"
            )
        else:
            W, b = st.head
            head = _name(W[:-1])
            n_in = _get(model, W).shape[1]
            for j in range(n_in):
                m = np.zeros(n_in, np.float32)
                m[j] = 1.0
                gen = Generator(_Shift((W,), (1,), (m,)))
                ctx.candidates.append(
                    (f"{head}:translate[{j}]", gen, "linear", "softmax")
                )
            if b is not None:
                gen = Generator(_Shift((b,), (0,), (None,)))
                ctx.candidates.append(
                    (f"{head}:translate[bias]", gen, "linear", "softmax")
                )

    if ctx.unknown:
        msg = (
            "`lnn.nn.symmetries`: parts of the model are not in the catalogue, so "
            "their symmetries are not searched: " + ", ".join(ctx.unknown)
        )
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=2)

    gens, kinds, residuals, terms = {}, {}, {}, {}
    if ctx.candidates:
        grads = _gradients(params, static, x, out, loss, ctx.candidates, dtype)
        r, s = _residuals(ctx.candidates, grads, params)
        for (name, gen, kind, _), ri, si in zip(ctx.candidates, r, s):
            if not si > 0:
                ctx.refused[name] = (
                    "the certificate is vacuous at these parameters (ξ or the "
                    "gradient vanishes on its support, e.g. a unit dead on every "
                    "probe input)"
                )
            elif not abs(ri) <= rtol * si:
                ctx.refused[name] = (
                    f"not a symmetry: |symmetry_residual| / size of its terms = "
                    f"{abs(ri) / si:.3g} > {rtol:.3g}"
                )
            else:
                gens[name], kinds[name], residuals[name] = gen, kind, abs(ri) / si
                terms[name] = (float(ri), float(si))
    return Symmetries(
        gens,
        candidates={name: gen for name, gen, *_ in ctx.candidates},
        kinds=kinds,
        residuals=residuals,
        tolerance=rtol,
        refused=ctx.refused,
        unknown=tuple(ctx.unknown),
        params=params,
        static=static,
        terms=terms,
    )


def _pairing(g, xi, gen, params):
    """⟨g, ξ⟩ and the size of its terms ⟨|g|, |ξ|⟩, summed over the generator's
    support only (ξ vanishes off it)."""
    abs_ = lambda tree: jax.tree.map(jnp.abs, tree)
    a = [_get(g, p) for p in gen.xi.support(params)]
    b = [_get(xi, p) for p in gen.xi.support(params)]
    return tree_dot(a, b), tree_dot(abs_(a), abs_(b))


# The certificate evaluates each candidate's full-size field ξ; a vectorised map over
# all of them at once would hold (#candidates) × (#parameters) numbers (a unit
# rescaling of every unit of a wide layer: gigabytes). They are mapped in chunks of at
# most this many numbers in all (a few times the size of the parameters), one chunk
# after another (`jax.lax.map`): memory O(a few gradients), whatever their number.
_CHUNK_NUMBERS = 2**22


def _chunk(n, size):
    """How many of `n` candidates to map at once when each touches `size` numbers:
    all of them if they fit in `_CHUNK_NUMBERS`, else as many as fit (at least 1)."""
    return int(max(1, min(n, _CHUNK_NUMBERS // max(size, 1))))


def _map(fn, stacked, n, chunk):
    """`fn` over the `n` stacked generators, `chunk` of them at a time."""
    if chunk >= n:
        return eqx.filter_vmap(fn, axis_size=n)(stacked)
    dynamic, static = eqx.partition(stacked, eqx.is_array)
    return jax.lax.map(lambda d: fn(eqx.combine(d, static)), dynamic, batch_size=chunk)


@eqx.filter_jit
def _all_residuals(groups, grads, params):
    """r = ⟨g, ξ⟩ (the value of `lnn.symmetry_residual` with gradient `g`) and the
    size of its terms s = ⟨|g|, |ξ|⟩ for every generator: `groups` holds, per
    generator structure, (stacked generators, probe, count, chunk)."""
    t = jnp.zeros((), tree_dtype(params))
    out = []
    for stacked, probe, n, chunk in groups:
        g = grads[probe]

        def one(gen):
            return _pairing(g, gen.xi(t, params), gen, params)

        out.append(_map(one, stacked, n, chunk))
    return out


@eqx.filter_jit
def _all_kinetic(groups, velocities, params):
    """k = ⟨v, ∂ξ(θ)·v⟩ (the rate at which the field changes ½|v|²) and the size of
    its terms ⟨|v|, |∂ξ(θ)·v|⟩, for every generator and every probe velocity v."""
    t = jnp.zeros((), tree_dtype(params))
    out = []
    for stacked, _, n, chunk in groups:

        def one(gen):
            def at(v):
                _, jv = jax.jvp(lambda p: gen.xi(t, p), (params,), (v,))
                return _pairing(v, jv, gen, params)

            return jax.vmap(at)(velocities)

        out.append(_map(one, stacked, n, chunk))
    return out


def _stacked(candidates):
    """The candidates `(name, gen, kind, probe)` grouped by the structure of their
    generator and their probe: (indices, (stacked generators, probe, count))."""
    groups = {}
    for i, (_, gen, _, probe) in enumerate(candidates):
        key = (jax.tree.structure(gen), probe)
        groups.setdefault(key, []).append(i)
    out = []
    for (_, probe), idx in groups.items():
        gens = [candidates[i][1] for i in idx]
        stacked = jax.tree.map(lambda *a: np.stack(a), *gens)
        out.append((idx, (stacked, probe, len(idx))))
    return out


def _gather(groups, results, n, shape=()):
    """Scatters the per-group results (pairs of arrays) back to candidate order."""
    r = np.zeros((n,) + shape)
    s = np.zeros((n,) + shape)
    for (idx, _), (ri, si) in zip(groups, results):
        r[idx], s[idx] = np.asarray(ri), np.asarray(si)
    return r, s


def _residuals(candidates, grads, params):
    """Residuals of all candidates, in one compiled program."""
    groups = _stacked(candidates)
    size = _size(params)
    chunked = [(*g, _chunk(g[2], size)) for _, g in groups]
    results = _all_residuals(chunked, grads, params)
    return _gather(groups, results, len(candidates))


def _size(params):
    return sum(int(np.size(a)) for a in jax.tree.leaves(params))


def _kinetic(candidates, params, n_probes=2):
    """The kinetic residuals ⟨v, ∂ξ·v⟩ and their sizes (arrays of shape
    `(len(candidates), n_probes)`) at random velocities v of the parameters' sizes,
    in one compiled program."""
    groups = _stacked(candidates)
    rng = np.random.default_rng(3)
    leaves, treedef = jax.tree.flatten(params)
    velocities = jax.tree.unflatten(
        treedef,
        [
            jnp.asarray(
                rng.standard_normal((n_probes,) + a.shape)
                * (float(jnp.max(jnp.abs(a))) if a.size else 1.0),
                a.dtype,
            )
            for a in leaves
        ],
    )
    size = n_probes * _size(params)
    chunked = [(*g, _chunk(g[2], size)) for _, g in groups]
    results = _all_kinetic(chunked, velocities, params)
    return _gather(groups, results, len(candidates), (n_probes,))


@eqx.filter_jit
def _disagreement(model, layers, x):
    """max |model(x) − (layers applied in order)(x)| and max |model(x)|."""
    out = jax.vmap(model)(x)
    seq = jax.vmap(_compose(layers))(x)
    return jnp.max(jnp.abs(seq - out)), jnp.max(jnp.abs(out))


@eqx.filter_jit
def _probe_gradients(params, static, x, c, probes):
    def f(p):
        return jax.vmap(_forward(eqx.combine(p, static)))(x)

    ells = {
        "out": lambda p: jnp.sum(c * f(p)),
        "softmax": lambda p: jnp.sum(c * jax.nn.log_softmax(f(p), axis=-1)),
    }
    return [jax.grad(ells[k])(params) for k in probes]


@eqx.filter_jit
def _loss_gradient(params, static, loss):
    return jax.grad(lambda p: loss(eqx.combine(p, static)))(params)


def _gradients(params, static, x, out, loss, candidates, dtype):
    """The gradient of the certificate's loss ℓ, computed once for all candidates."""
    probes = tuple(sorted({probe for *_, probe in candidates}))
    if loss is not None:
        g = _loss_gradient(params, static, loss)
        return {probe: g for probe in probes}
    c = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    return dict(zip(probes, _probe_gradients(params, static, x, c, probes)))


def attention_charges(attention):
    r"""Marcotte, Gribonval & Peyré's conserved matrices of every head of an
    `eqx.nn.MultiheadAttention` (or of its `params`):
    $C_{QK}^h = W_Q^{h\top}W_Q^h - W_K^{h\top}W_K^h$ and
    $C_{VO}^h = W_V^{h\top}W_V^h - W_O^h W_O^{h\top}$, with biases appended to
    $W_Q^h, W_K^h, W_V^h$ as an extra input row. Entry $(i, j)$ of head $h$ is the
    charge $\langle\theta, \xi(\theta)\rangle$ of `symmetries`' generator
    `qk[h][i,j]` (`vo[h][i,j]`).

    **Returns:** `(C_qk, C_vo)` of shapes `(num_heads, qk_size, qk_size)` and
    `(num_heads, vo_size, vo_size)`.
    """
    if not isinstance(attention, eqx.nn.MultiheadAttention):
        raise ValueError(
            "`attention` must be an `eqx.nn.MultiheadAttention`; got "
            f"{type(attention).__name__}."
        )
    H = attention.num_heads

    def blocks(linear, d):
        W = linear.weight
        if linear.bias is not None:
            W = jnp.concatenate([W, linear.bias[:, None]], axis=1)
        return W.reshape(H, d, W.shape[1])

    gram = lambda B: jnp.einsum("hia,hja->hij", B, B)
    dq, dv = attention.qk_size, attention.vo_size
    C_qk = gram(blocks(attention.query_proj, dq)) - gram(blocks(attention.key_proj, dq))
    Wo = attention.output_proj.weight.reshape(-1, H, dv).transpose(1, 2, 0)
    C_vo = gram(blocks(attention.value_proj, dv)) - gram(Wo)
    return C_qk, C_vo
