r"""The conformal weight of a Lagrangian, shared by every module that handles one.

A `lnn.Conformal` may wrap another: `Conformal(a, Conformal(b, L0))` is
$e^{a(t) + b(t)}L_0$. Every module peels *all* the layers with `split` and works from
$L_0$ and the summed log weight $s = \sum_i s_i$ (and its rate $\dot s$), so no inner
weight $e^{s_i}$ is ever formed.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ._lagrangian import Conformal


def split(L):
    """Returns `(L0, layers)` with `L = exp(Σ s_i) L0` for the nested `Conformal`
    layers `layers`, outermost first (empty for any other Lagrangian)."""
    layers = []
    while isinstance(L, Conformal):
        layers.append(L)
        L = L.inner
    return L, tuple(layers)


def log_weight(layers, t):
    r"""$s(t) = \sum_i s_i(t)$ (0 without layers)."""
    return sum(layer.log_weight(t) for layer in layers)


def rate(layers, t):
    r"""$\dot s(t) = \sum_i \dot s_i(t)$ (0 without layers)."""
    return sum(layer.rate(t) for layer in layers)


# ln 2 = _LN2_HI + _LN2_LO (Cody–Waite): n · _LN2_HI is exact for |n| < 2^15, so the
# reduced exponent s − n ln 2 is as accurate as s itself.
_LN2_HI = 0.693359375
_LN2_LO = -2.12194440054690582767e-4


def times_exp(s, x):
    r"""$e^{s}x$ without forming $e^{s}$: $2^n (e^{r}x)$ with $n = \mathrm{round}(s/\ln 2)$
    and $|r| \le \ln 2/2$. Returns `(value, finite)`: the value is finite whenever
    $e^s x$ is representable, `inf` when it overflows, 0 when it underflows or $x = 0$;
    `finite` says whether `s` and `x` were finite."""
    dtype = jnp.result_type(s, x)
    s, x = jnp.asarray(s, dtype), jnp.asarray(x, dtype)
    finite = jnp.isfinite(s) & jnp.isfinite(x)
    s_safe = jnp.where(finite, s, 0)
    inv_ln2 = jnp.asarray(1 / np.log(2), dtype)
    n = jax.lax.stop_gradient(jnp.clip(jnp.round(s_safe * inv_ln2), -(2**24), 2**24))
    r = (s_safe - n * jnp.asarray(_LN2_HI, dtype)) - n * jnp.asarray(_LN2_LO, dtype)
    out = jnp.ldexp(jnp.exp(r) * x, n.astype(jnp.int32))
    return jnp.where(x == 0, jnp.zeros_like(out), out), finite
