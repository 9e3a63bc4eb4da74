r"""The closure of the fields under brackets: right-nested brackets of random fields,
sampled depth by depth at a point until a whole depth adds no direction (`grow_span`),
and the bracket functions that evaluate them, compiled once per depth (`Brackets`,
cached per MLP structure by `cached_brackets`) or evaluated in NumPy with jets
(`JetBrackets`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from . import _count_jets
from ._gap import TOL_FACTOR

# A bracket whose value is below this many eps of the size of its two terms is zero up
# to rounding (e.g. [X, X]); normalising it would turn rounding into a direction.
ZERO_FACTOR = 1e4

# The bracket functions of the last few structures counted (most recent last). Each
# structure's compiled programs stay in memory while it is cached, and deep brackets
# of a model make large programs (measured: two heads under heavy ball, 3,200 memory
# maps of the process; a block with LayerNorm under ND, 18,000), against a kernel
# limit of about 65,000 maps per process (`vm.max_map_count`), past which XLA
# aborts. So few are kept, and an evicted structure's programs are freed.
CACHE: dict = {}
CACHE_SIZE = 2


class Brackets(dict):
    """The jitted bracket function of each depth, built once per `count_laws` call."""

    def __init__(self, X):
        super().__init__()
        self.X = X

    def __missing__(self, depth):
        fn = self[depth] = bracket_fn(self.X, depth)
        return fn

    def release(self):
        """Frees the compiled programs of every depth (the functions stay usable and
        compile again if called)."""
        for fn in self.values():
            fn.clear_cache()


class JetBrackets:
    """The bracket function of each depth for an MLP, evaluated in NumPy with jets
    (`_count_jets`): nothing is traced or compiled."""

    def __init__(self, X):
        self.X = X

    def __getitem__(self, depth):
        return lambda ps, s: _count_jets.brackets(self.X, ps, np.asarray(s))


class _ById:
    """A cache key for an unhashable object: the object itself, compared by identity
    (held, so its id cannot be reused while the key lives)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _ById) and other.obj is self.obj


def cache_key(obj):
    """`obj` as a cache key: itself if hashable (a function compares by identity, an
    equinox module of static fields by value), else wrapped to compare by identity."""
    try:
        hash(obj)
    except Exception:
        return _ById(obj)
    return obj


def lru(cache: dict, key, make, size: int = CACHE_SIZE):
    """`cache[key]`, made by `make()` if missing; the last `size` keys are kept."""
    value = cache.pop(key, None)
    if value is None:
        value = make()
    cache[key] = value
    while len(cache) > size:
        evicted = cache.pop(next(iter(cache)))
        if hasattr(evicted, "release"):
            evicted.release()
    return value


def cached_brackets(structure, X) -> Brackets:
    """The bracket functions of the fields `X`, shared by every count of the same
    `structure` (a hashable key: the model or `phi`, flow, damping, tree structure,
    shapes, dtypes): the bracket functions depend only on it, so a new point or key
    compiles nothing. The last `CACHE_SIZE` structures are kept."""
    return lru(CACHE, structure, lambda: Brackets(X))


def bracket_fn(X, depth):
    """`F(ps, s) -> (value, scale)`: the right-nested bracket of the fields `X(ps[i])`
    (`depth + 1` of them), and the size of its two terms (for cancellation)."""

    def field(ps, s):
        if len(ps) == 1:
            v = X(ps[0], s)
            return v, jnp.sqrt(jnp.sum(v * v))
        head, rest = ps[0], ps[1:]
        inner = lambda z: field(rest, z)[0]  # noqa: E731
        xs = X(head, s)
        y, dy = jax.jvp(inner, (s,), (xs,))
        _, dx = jax.jvp(lambda z: X(head, z), (s,), (y,))
        return dy - dx, jnp.sqrt(jnp.sum(dy * dy)) + jnp.sqrt(jnp.sum(dx * dx))

    def batched(ps_batch, s):
        return jax.vmap(lambda ps: field(ps, s))(ps_batch)

    return jax.jit(batched, static_argnums=())


def grow_span(s0, fns, sample_params, *, eps, max_depth, oversample, max_batch):
    """Grows the span of bracket columns at `s0`, depth by depth. Returns (columns as
    a (dim, n) float64 array normalised, per-column amplification, rank_by_depth,
    whether the ranks stabilised, the singular values of all the columns).

    The rank of the columns so far is counted after each batch with the certificate's
    own rule (singular values of all of them above `TOL_FACTOR` rounding levels),
    never by projecting on a basis grown earlier: a direction found with a small
    residual d is known only to rounding/d, and projecting later columns on it would
    leave residuals that no singular value of the whole set shows (measured: a ReLU
    net with `patterns="data"` grew to rank 18 by projection where its singular values
    give 13). The singular values of all the columns are those of the triangular
    factor `R` of the QR of their transpose, updated with each batch (the QR of `R`
    stacked on the batch, backward stable), so no batch refactors the columns before
    it; each batch still pays one SVD of `R` (at most dim × dim), and the last one is
    the certificate's."""
    dim = s0.shape[0]
    cols, amps, ranks = [], [], []
    rank = 0
    amp_sq = 0.0  # Σ a_i² over the columns so far: the rounding level is eps·√amp_sq
    tri = np.zeros((0, dim))  # R of the QR of all the columns so far, transposed
    sv = np.zeros(0)
    stable = False
    for depth in range(max_depth + 1):
        fn = fns[depth]
        added = 0
        while True:
            m = min(dim - rank, max_batch) + oversample
            # powers of two up to 256, then multiples of 256: few compilations, and
            # at most 256 columns beyond the room left (the SVDs dominate at large m)
            m = 1 << (m - 1).bit_length() if m <= 256 else -(-m // 256) * 256
            ps = tuple(sample_params(m) for _ in range(depth + 1))
            v, scale = fn(ps, s0)
            v = np.asarray(v, np.float64)
            scale = np.asarray(scale, np.float64)
            norm = np.linalg.norm(v, axis=1)
            keep = norm > ZERO_FACTOR * eps * np.maximum(scale, 1e-300)
            if not np.all(np.isfinite(v)):
                raise ValueError(
                    "the model's fields are not finite at the generic point; "
                    "`count_laws` needs a model that is differentiable there."
                )
            C = (v[keep] / norm[keep, None]).T
            a = np.maximum(scale[keep] / norm[keep], 1.0)
            amps.append(a)
            amp_sq += float(np.sum(a**2))
            cols.append(C)
            if C.shape[1] == 0:
                break
            tri = np.linalg.qr(np.concatenate([tri, C.T]), mode="r")
            sv = np.linalg.svd(tri, compute_uv=False)
            new = int(np.sum(sv > TOL_FACTOR * eps * math.sqrt(amp_sq))) - rank
            rank += new
            added += new
            if new < C.shape[1] or rank >= dim:
                # some sampled column added nothing: this depth is exhausted
                break
        ranks.append(rank)
        if added <= 0 or rank >= dim:
            stable = True
            break
    C = np.concatenate(cols, axis=1)
    return C, np.concatenate(amps), tuple(ranks), stable, sv
