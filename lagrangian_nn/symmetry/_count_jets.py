r"""Nested Lie brackets of an MLP's fields in NumPy, with no compilation.

A right-nested bracket $[X_1, [X_2, \ldots, X_{k+1}]]$ is a nest of directional
derivatives. Tracing it with nested `jax.jvp` builds a program whose size grows about
threefold per depth, and compiling it costs seconds to minutes per architecture, while
evaluating it on a small network takes microseconds. Here the same nest is evaluated
exactly, with truncated multivariate dual numbers ("jets"): a jet over $n$
infinitesimals $\varepsilon_1, \ldots, \varepsilon_n$ with $\varepsilon_i^2 = 0$ is an
array of shape `(2**n, ...)`, component $S$ (a bit mask) holding the coefficient of
$\prod_{i\in S}\varepsilon_i$. Each level of the nest adds one infinitesimal:
$Y(s + \varepsilon X(s)) = Y(s) + \varepsilon\,DY(s)\cdot X(s)$, read off as the
components whose mask holds the new bit. This is the arithmetic `jax.jvp` does, so the
values agree with the traced brackets to rounding.

The fields are those of `count_laws` for an `lnn.nn.MLP` whose activations declare
their derivatives in closed form (`derivatives`; no trainable parameter in the
activation): the gradient $\nabla_\theta\langle c, \varphi(\theta, x)\rangle$ by the
backward recursion of the network written out, and for momentum flows the drift
$(1, \dot\theta, -\tau(t)\dot\theta)$. Other models go through `jax.jvp`.
"""

import math

import jax
import numpy as np

# the most array elements one product of jets may hold; columns are evaluated in chunks
_CHUNK_ELEMENTS = 1 << 23

_PAIRS: dict = {}


def _pairs(n):
    """Index arrays `(T, U, starts)` of the product of two jets over `n`
    infinitesimals: the pairs of disjoint masks `T`, `U`, grouped by their union (in
    increasing order, `starts` marking each group)."""
    if n not in _PAIRS:
        T, U, S = [], [], []
        for s in range(1 << n):
            t = s
            while True:  # the submasks of s
                T.append(t), U.append(s ^ t), S.append(s)
                if t == 0:
                    break
                t = (t - 1) & s
        starts = np.searchsorted(np.asarray(S), np.arange(1 << n))
        _PAIRS[n] = (np.asarray(T), np.asarray(U), starts)
    return _PAIRS[n]


def _order(a) -> int:
    """The number of infinitesimals of jet `a`."""
    return a.shape[0].bit_length() - 1


def _lift(a, n):
    """Jet `a` as a jet over `n ≥ order(a)` infinitesimals (new components zero)."""
    k = 1 << n
    if a.shape[0] == k:
        return a
    pad = np.zeros((k - a.shape[0],) + a.shape[1:], a.dtype)
    return np.concatenate([a, pad])


def _add(a, b):
    n = max(_order(a), _order(b))
    return _lift(a, n) + _lift(b, n)


def _mul(a, b, op=np.multiply):
    """The product of jets `a`, `b` under the bilinear map `op` (NumPy broadcasting
    over all axes after the first). A jet of order 0 (a constant) scales directly."""
    if a.shape[0] == 1 or b.shape[0] == 1:
        return op(a, b)
    n = max(_order(a), _order(b))
    T, U, starts = _pairs(n)
    a, b = _lift(a, n), _lift(b, n)
    return np.add.reduceat(op(a[T], b[U]), starts, axis=0)


def _matvec(w, h):
    return np.matmul(w, h[..., None])[..., 0]


def _rmatvec(d, w):
    return np.matmul(d[..., None, :], w)[..., 0, :]


def _outer(d, h):
    return d[..., :, None] * h[..., None, :]


def _taylor(derivs, z, shift=0):
    """`f(z)` for a jet `z` (or `f'(z)` with `shift=1`), from `derivs(a, k)`: the
    derivatives of `f` of orders `0..k` at the plain array `a` (a shorter list: the
    rest vanish). Exact: the part of `z` off its value is nilpotent (its `n + 1`-th
    power vanishes). A constant comes back as a jet of order 0."""
    n = _order(z)
    ds = [np.asarray(d, z.dtype) for d in derivs(z[0], n + shift)[shift:]]
    if len(ds) <= 1 or n == 0:
        return (ds[0] if ds else np.zeros(z.shape[1:], z.dtype))[None]
    if len(ds) == 2:  # an affine piece: f(a) + f'(a)(z - a), one product
        out = z * ds[1]
        out[0] = ds[0]
        return out
    dz = z.copy()
    dz[0] = 0
    out = dz * ds[1]
    out[0] = ds[0]
    power = dz
    for j in range(2, min(n, len(ds) - 1) + 1):
        power = _mul(power, dz)
        out = out + power * (ds[j] / math.factorial(j))
    return out


def _reciprocal(a, k):
    return [(-1.0) ** j * math.factorial(j) / a ** (j + 1) for j in range(k + 1)]


def supported(model) -> bool:
    """Whether the brackets of `model` (an `lnn.nn.MLP`) can be evaluated here: every
    activation declares its derivatives in closed form, and none has a parameter."""
    probe = np.ones(1)
    return all(a.derivatives(probe, 0) is not None for a in model.activations) and all(
        b is None for b in model.betas
    )


def _activation(derivatives, z, mask):
    """`(σ(z), σ'(z))` for a jet `z`, from the activation's declared `derivatives`
    (`None` for a linear activation: then `σ'` is None); `mask` is the activation
    pattern (1 active, 0 not) when it is drawn as an input (all patterns), else None
    (read from the value of `z`, as the network does)."""
    if derivatives is None:
        return z, None
    active = None if mask is None else mask[0]

    def derivs(a, k):
        return derivatives(a, k, active)

    return _taylor(derivs, z), _taylor(derivs, z, 1)


def leaves_ok(model) -> bool:
    """Whether the leaves of `model` are its weights, then its biases (the layout of
    the flat parameters that `MLPFields` reads)."""
    mine = list(model.weights) + ([] if model.biases is None else list(model.biases))
    leaves = jax.tree.leaves(model)
    return len(leaves) == len(mine) and all(a is b for a, b in zip(leaves, mine))


def ravel(model) -> np.ndarray:
    """The flat parameters of `model`, in `ravel_pytree`'s order, in NumPy."""
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(model)])


def unravel(model, flat):
    """`model` with its leaves read from the flat NumPy array `flat`."""
    leaves, pieces, off = jax.tree.leaves(model), [], 0
    for x in leaves:
        pieces.append(np.asarray(flat[off : off + np.size(x)]).reshape(np.shape(x)))
        off += np.size(x)
    return jax.tree.unflatten(jax.tree.structure(model), pieces)


class MLPFields:
    """The random fields of `count_laws` for an MLP, on jets of the flat state.

    `model` fixes the structure; with `masked`, the activation patterns of its
    `pattern_layers` are inputs (drawn with `x`, after its first `d0` entries), as in
    `count_laws`' all-patterns model."""

    def __init__(self, model, flow, damping, masked, D):
        self.flow, self.damping, self.D = flow, float(damping), D
        # each activation's bound `derivatives`, fetched once (an equinox module
        # builds a new bound method at every attribute access)
        self.derivatives = [
            None if a.linear else a.derivatives for a in model.activations
        ]
        self.kinked = set(model.pattern_layers) if masked else set()
        self.d0 = model.sizes[0]
        self.shapes = [tuple(w.shape) for w in model.weights]
        self.bias = model.biases is not None
        off, self.w_off, self.b_off = 0, [], []
        for r, k in self.shapes:
            self.w_off.append(off)
            off += r * k
        if self.bias:
            for r, _ in self.shapes:
                self.b_off.append(off)
                off += r
        if off != D:
            raise AssertionError(f"MLP layout of {off} parameters, not {D}")

    def gradient(self, theta, x, c):
        """$\\nabla_\\theta\\langle c, \\varphi(\\theta, x)\\rangle$ for a jet `theta`
        `(2**n, B, D)`, inputs `x` `(m, d0 [+ masks])` and weights `c` `(m, d_out)`."""
        lead = theta.shape[:-1]
        Ws = [
            theta[..., o : o + r * k].reshape(lead + (r, k))
            for o, (r, k) in zip(self.w_off, self.shapes)
        ]
        h = x[None, :, : self.d0]
        hs, dacts, off = [h], [], self.d0
        for i, w in enumerate(Ws):
            z = _mul(w, h, _matvec)
            if self.bias:
                r = self.shapes[i][0]
                z = _add(z, theta[..., self.b_off[i] : self.b_off[i] + r])
            mask = None
            if i in self.kinked:
                r = self.shapes[i][0]
                mask = x[None, :, off : off + r]
                off += r
            h, dh = _activation(self.derivatives[i], z, mask)
            hs.append(h), dacts.append(dh)
        delta = c[None] if dacts[-1] is None else _mul(c[None], dacts[-1])
        gw, gb = [None] * len(Ws), [None] * len(Ws)
        for i in reversed(range(len(Ws))):
            gw[i] = _mul(delta, hs[i], _outer)
            gb[i] = delta
            if i:
                delta = _mul(delta, Ws[i], _rmatvec)
                if dacts[i - 1] is not None:
                    delta = _mul(delta, dacts[i - 1])
        n = _order(theta)
        m = x.shape[0]
        parts = [_lift(g, n).reshape((1 << n, m, -1)) for g in gw]
        if self.bias:
            parts += [
                np.broadcast_to(_lift(g, n), (1 << n, m, g.shape[-1])) for g in gb
            ]
        return np.concatenate(
            [np.broadcast_to(p, (1 << n, m, p.shape[-1])) for p in parts], axis=-1
        )

    def __call__(self, p, s):
        """`X(p, s)`: the field of parameters `p = (x, c, a)` (`m` columns) at the
        jet `s` `(2**n, B, dim)`, as a jet `(2**n, m, dim)`."""
        x, c, a = p
        n, m, D = _order(s), x.shape[0], self.D
        if self.flow == "gf":
            return self.gradient(s, x, c)
        t, theta, v = s[..., :1], s[..., 1 : D + 1], s[..., D + 1 :]
        g = self.gradient(theta, x, c)
        if self.flow == "nd":
            friction = np.zeros_like(v)
        elif self.flow == "heavy_ball":
            friction = -self.damping * v
        else:
            friction = -_mul(3.0 * _taylor(_reciprocal, t), v)
        one = np.zeros(t.shape, s.dtype)
        one[0] = 1.0
        drift = np.concatenate([one, v, friction], axis=-1)
        drift = a[None, :, None] * np.broadcast_to(drift, (1 << n, m, s.shape[-1]))
        drift[..., D + 1 :] += g
        return drift


def _nest(X, ps, s):
    """The right-nested bracket of the fields `X(ps[i])` at the jet `s`, as a jet; at
    the top (a plain point) also its two terms `(dy, dx)`."""
    if len(ps) == 1:
        return X(ps[0], s), None
    n = _order(s)
    k = 1 << n
    xs = _lift(X(ps[0], s), n)
    Y, _ = _nest(X, ps[1:], np.concatenate([np.broadcast_to(s, xs.shape), xs]))
    Y = _lift(Y, n + 1)
    y, dy = Y[:k], Y[k:]
    dx = _lift(X(ps[0], np.concatenate([np.broadcast_to(s, y.shape), y])), n + 1)[k:]
    return dy - dx, (dy, dx)


def brackets(X, ps, s0):
    """`(values, scales)` of the right-nested brackets of `m` random fields per level
    (`ps[i] = (x, c, a)` with `m` rows each) at the plain point `s0`: values
    `(m, dim)`, and the size of each bracket's two terms (the field's norm at depth
    0). Evaluated in chunks of columns, so no product of jets exceeds a fixed size."""
    depth = len(ps) - 1
    m, dim = ps[0][0].shape[0], s0.shape[-1]
    chunk = max(1, min(m, _CHUNK_ELEMENTS // (3**depth * dim)))
    vals, scales = [], []
    s = np.asarray(s0)[None, None, :]
    for lo in range(0, m, chunk):
        sub = tuple(tuple(np.asarray(q)[lo : lo + chunk] for q in p) for p in ps)
        v, terms = _nest(X, sub, s)
        v = v[0]
        if terms is None:
            sc = np.linalg.norm(v, axis=-1)
        else:
            dy, dx = terms
            sc = np.linalg.norm(dy[0], axis=-1) + np.linalg.norm(dx[0], axis=-1)
        vals.append(v), scales.append(sc)
    return np.concatenate(vals), np.concatenate(scales)
