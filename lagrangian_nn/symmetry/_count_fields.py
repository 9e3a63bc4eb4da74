r"""The random fields of `count_laws` for each flow, and what draws them.

A field is $X_c = \nabla_\theta\langle c, \varphi(\theta, x)\rangle$ for an input
$x$ and output weights $c$; for the momentum flows, on the state
$(t, \theta, \dot\theta)$, it is $(0, 0, X_c)$ plus $a$ times the drift
$(1, \dot\theta, -\tau(t)\dot\theta)$, with $\tau = 0$ (ND), the damping (heavy ball)
or $3/t$ (NAGF). `make_fields` builds them in JAX from any $\varphi$ (the NumPy jets of
an MLP are `_count_jets.MLPFields`); `Sampler` draws their parameters $(x, c, a)$;
`seed_of` turns the PRNG key into the NumPy generator that draws everything.

For a model that declares activation patterns (`pattern_layers`, `with_patterns`:
`lnn.nn.MLP`), `patterns_phi` is the model with each pattern drawn as an input.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ._count_brackets import cache_key, lru

FLOWS = ("gf", "nd", "heavy_ball", "nagf")


def patterns_phi(model):
    """`(phi, n_masks)`: `phi(theta, z)`, `z = (x, d)`, is the model with the
    activation pattern `d` of every layer in `model.pattern_layers` an input, drawn
    independently of θ and x (`theta.with_patterns`); `n_masks` is the length of `d`.
    For a piecewise-polynomial network the span of its fields over all `(x, d)` is
    the span on the region of parameters where every pattern occurs on an open set of
    inputs (Marcotte et al.'s path-lifting count)."""
    d0 = model.sizes[0]
    cuts = np.cumsum([d0] + [model.sizes[i + 1] for i in model.pattern_layers])

    def phi(theta, z):
        patterns = [z[..., a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        return theta.with_patterns(z[..., :d0], patterns)

    return phi, int(cuts[-1] - d0)


class PatternInputs:
    """Draws `m` inputs `(x, d)` at once: x standard normal, d uniform in {0, 1}."""

    def __init__(self, d0, n_masks, dtype, rng, as_numpy=False):
        self.d0, self.n_masks, self.dtype, self.rng = d0, n_masks, dtype, rng
        self.xp = np if as_numpy else jnp

    def __call__(self, m):
        x = self.rng.standard_normal((m, self.d0))
        d = self.rng.integers(0, 2, size=(m, self.n_masks))
        return self.xp.asarray(np.concatenate([x, d], axis=1), self.dtype)


def scales(params) -> np.ndarray:
    """The per-leaf RMS scale of `params`, one entry per flat coordinate (1 for a leaf
    that is all zeros)."""
    out = []
    for x in jax.tree.leaves(params):
        rms = float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))
        out.append(np.full(np.size(x), rms if rms > 0 else 1.0))
    return np.concatenate(out) if out else np.zeros(0)


# the vmapped, jitted input samplers of the last few `inputs` given (most recent last)
SAMPLERS: dict = {}


class Inputs:
    """Draws `m` inputs at once: NumPy standard normal for an MLP (no compilation),
    else the user's `inputs(key)`, vmapped and jitted (batch sizes are powers of two,
    so it compiles a few times at most), once per `inputs` (kept across calls)."""

    def __init__(self, inputs, shape, dtype, rng, as_numpy=False):
        self.inputs, self.shape, self.dtype, self.rng = inputs, shape, dtype, rng
        self.fn = None
        if inputs is not None:
            make = lambda: jax.jit(jax.vmap(inputs))  # noqa: E731
            self.fn = lru(SAMPLERS, cache_key(inputs), make)
        self.xp = np if as_numpy and inputs is None else jnp

    def __call__(self, m):
        if self.inputs is None:
            x = self.rng.standard_normal((m, *self.shape))
            return self.xp.asarray(x, self.dtype)
        seeds = self.rng.integers(0, 2**31 - 1, size=m)
        return self.fn(jax.vmap(jax.random.key)(jnp.asarray(seeds)))


def make_fields(phi, unravel, D, flow, damping, dtype):
    """The random generator field `X(params, s)` on the flat state and its parameter
    sampler. `params = (x, c, a)`: input, output weights, drift coefficient."""

    def grad_field(theta, x, c):
        return jax.grad(lambda th: jnp.sum(c * phi(unravel(th), x)))(theta)

    if flow == "gf":

        def X(p, s):
            x, c, _ = p
            return grad_field(s, x, c)

    else:

        def tau(t):
            if flow == "nd":
                return jnp.zeros_like(t)
            if flow == "heavy_ball":
                return jnp.asarray(damping, t.dtype) * jnp.ones_like(t)
            return 3.0 / t

        def X(p, s):
            x, c, a = p
            t, theta, v = s[0], s[1 : D + 1], s[D + 1 :]
            drift = jnp.concatenate([jnp.ones((1,), s.dtype), v, -tau(t) * v])
            g = grad_field(theta, x, c)
            push = jnp.concatenate([jnp.zeros((D + 1,), s.dtype), g])
            return a * drift + push

    return X


class Sampler:
    """Draws the parameters `(x, c, a)` of `m` random fields at a time."""

    def __init__(self, rng, draw_inputs, out, dtype, as_numpy=False):
        self.rng, self.draw_inputs, self.out, self.dtype = rng, draw_inputs, out, dtype
        self.xp = np if as_numpy else jnp

    def __call__(self, m):
        xs = self.draw_inputs(m)
        cs = self.rng.standard_normal((m, *self.out.shape))
        cs = self.xp.asarray(cs, self.out.dtype)
        a = self.xp.asarray(self.rng.standard_normal(m), self.dtype)
        return xs, cs, a


def _threefry2x32(k1, k2, x1, x2):
    """The Threefry-2x32 hash (20 rounds) of the counter `(x1, x2)` under the key
    `(k1, k2)`, in NumPy uint32 arithmetic, as `jax.random` computes it."""
    u = np.uint32
    rot = ((13, 15, 26, 6), (17, 29, 16, 24))
    ks = (u(k1), u(k2), u(k1) ^ u(k2) ^ u(0x1BD11BDA))
    x = [u(x1) + ks[0], u(x2) + ks[1]]
    for i in range(5):
        for r in rot[i % 2]:
            x[0] = x[0] + x[1]
            x[1] = (x[1] << u(r)) | (x[1] >> u(32 - r))
            x[1] = x[0] ^ x[1]
        x[0] = x[0] + ks[(i + 1) % 3]
        x[1] = x[1] + ks[(i + 2) % 3] + u(i + 1)
    return x


def seed_of(key) -> int:
    """`jax.random.randint(key, (), 0, 2**31 - 1)`, computed in NumPy for a threefry
    key (partitionable, JAX's default) so that no JAX random function is compiled on
    a first call; through `jax.random.randint` otherwise."""
    try:
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            threefry = str(jax.random.key_impl(key)) in ("threefry2x32", "fry")
            words = np.asarray(jax.random.key_data(key))
        else:
            threefry, words = True, np.asarray(key)
        fast = (
            threefry
            and bool(jax.config.jax_threefry_partitionable)
            and words.shape == (2,)
            and words.dtype == np.uint32
        )
    except Exception:
        fast = False
    if not fast:
        return int(jax.random.randint(key, (), 0, 2**31 - 1))
    with np.errstate(over="ignore"):
        # split into two keys (counters 0 and 1), then 2 × nbits random bits
        a = _threefry2x32(words[0], words[1], 0, 0)
        b = _threefry2x32(words[0], words[1], 0, 1)
        bits = [_threefry2x32(k[0], k[1], 0, 0) for k in (a, b)]
    nbits = np.dtype(jax.dtypes.canonicalize_dtype(int)).itemsize * 8
    if nbits == 64:
        hi, lo = ((int(c[0]) << 32) | int(c[1]) for c in bits)
    else:
        hi, lo = (int(c[0] ^ c[1]) for c in bits)
    span, wrap = 2**31 - 1, 2**nbits  # unsigned nbits-bit arithmetic, as in JAX
    multiplier = (2 ** (nbits // 2) % span) ** 2 % wrap % span
    return ((hi % span) * multiplier % wrap + lo % span) % wrap % span
