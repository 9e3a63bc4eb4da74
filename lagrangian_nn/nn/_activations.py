r"""Activation functions. Each knows its homogeneity degree, which fixes the rescaling
symmetry of Section 4 (`degree is None` means no rescaling symmetry).

Each also declares what `lnn.symmetry.count_laws` reads, so that counting laws never
has to know the activation's type:

- `piecewise`: the activation has an *activation pattern*: it is $\sigma_+(z)$ where a
  neuron is active ($z > 0$) and $\sigma_-(z)$ where it is not, with analytic pieces
  (ReLU, LeakyReLU, RePU). `branch(z, active)` evaluates it with the pattern given
  instead of read from the sign of `z`, and `polynomial_pieces` says whether both
  pieces are polynomials (then a pattern may be drawn independently of `z`).
- `derivatives(a, k, active)`: the derivatives of orders $0, \ldots, k$ at a NumPy
  array `a`, in closed form (on the piece `active` selects for a piecewise
  activation), or `None` where there is no closed form (Swish, whose β is a
  parameter): `count_laws` then differentiates the model with `jax.jvp`.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


class AbstractActivation(eqx.Module):
    """An elementwise activation. `degree` is $p$ when $\\sigma(\\lambda x) =
    \\lambda^p\\sigma(x)$ for $\\lambda > 0$ (Definition 2), `None` otherwise.
    `trainable_beta` says whether the layer carries a per-neuron parameter β (Swish)."""

    degree = None
    trainable_beta = False
    linear = False
    piecewise = False
    polynomial_pieces = False

    @abc.abstractmethod
    def __call__(self, x, beta=None):
        raise NotImplementedError

    def branch(self, z, active):
        r"""$\sigma(z)$ with the activation pattern `active` (1 where a neuron is active,
        0 where not, broadcast against `z`) given instead of read from the sign of `z`.
        Plain arithmetic, so NumPy arrays stay NumPy arrays. An activation that is not
        `piecewise` has no pattern: this is $\sigma(z)$."""
        return self(z)

    def derivatives(self, a, k: int, active=None) -> list | None:
        r"""The derivatives of $\sigma$ of orders $0, \ldots, k$ at the NumPy array `a`,
        as NumPy arrays (a shorter list: the rest vanish), on the piece that `active`
        selects for a `piecewise` activation (`None`: the piece of the sign of `a`).
        `None` when they have no closed form here."""
        return None


class ReLU(AbstractActivation):
    """$\\max(0, x)$: 1-homogeneous."""

    degree = 1.0
    piecewise = True
    polynomial_pieces = True

    def __call__(self, x, beta=None):
        return jax.nn.relu(x)

    def branch(self, z, active):
        return active * z

    def derivatives(self, a, k, active=None):
        d = _pattern(a, active)
        return [d * a, d][: k + 1]


class LeakyReLU(AbstractActivation):
    """$x$ for $x > 0$, $\\alpha x$ otherwise: 1-homogeneous."""

    alpha: float = eqx.field(static=True, default=0.01)
    degree = 1.0
    piecewise = True
    polynomial_pieces = True

    def __check_init__(self):
        if not self.alpha < 1:
            raise ValueError(f"`alpha` must be < 1; got alpha = {self.alpha!r}.")

    def __call__(self, x, beta=None):
        return jnp.where(x > 0, x, self.alpha * x)

    def branch(self, z, active):
        return z * (active + (1 - active) * self.alpha)

    def derivatives(self, a, k, active=None):
        d = _pattern(a, active)
        f = d + (1 - d) * self.alpha
        return [f * a, f][: k + 1]


class _AbstractPower(AbstractActivation):
    """Shared by the power activations: a degree `p > 0`."""

    p: eqx.AbstractVar[float]

    def __check_init__(self):
        if not self.p > 0:
            raise ValueError(f"`p` must be > 0; got p = {self.p!r}.")

    @property
    def degree(self):
        return float(self.p)

    @property
    def integer(self) -> bool:
        """Whether the degree `p` is an integer."""
        return float(self.p).is_integer()


class Polynomial(_AbstractPower):
    """$x^p$ (for integer $p$ on all of $\\mathbb{R}$): p-homogeneous."""

    p: float = eqx.field(static=True, default=2.0)

    def __call__(self, x, beta=None):
        if float(self.p).is_integer():
            return x ** int(self.p)
        return jnp.sign(x) * jnp.abs(x) ** self.p

    def derivatives(self, a, k, active=None):
        if self.integer:
            return _monomial(a, k, int(self.p))
        # sign(a)|a|^p at a ≠ 0
        s, m = np.sign(a), np.abs(a)
        p = float(self.p)
        return [_falling(p, j) * s ** (j + 1) * m ** (p - j) for j in range(k + 1)]


class RePU(_AbstractPower):
    """$x^p$ for $x > 0$, 0 otherwise: p-homogeneous. `RePU(1)` is ReLU."""

    p: float = eqx.field(static=True, default=2.0)
    piecewise = True

    def __call__(self, x, beta=None):
        return jnp.where(x > 0, jnp.maximum(x, 0.0) ** self.p, 0.0)

    @property
    def polynomial_pieces(self) -> bool:
        return self.integer

    def branch(self, z, active):
        if self.integer:
            return active * z ** int(self.p)
        return active * (active * z) ** self.p  # z^p where active (and z > 0) only

    def derivatives(self, a, k, active=None):
        d = _pattern(a, active)
        if self.integer:
            return [d * x for x in _monomial(a, k, int(self.p))]
        safe = np.where(d > 0, a, 1.0)  # a^p at a > 0 only
        p = float(self.p)
        return [d * (_falling(p, j) * safe ** (p - j)) for j in range(k + 1)]


class Swish(AbstractActivation):
    """$x\\,\\mathrm{sigmoid}(\\beta x)$ with a trainable β per neuron. Not homogeneous,
    but $\\mathrm{Swish}_\\beta(\\lambda x) = \\lambda\\,\\mathrm{Swish}_{\\lambda\\beta}(x)$
    (Observation 1), so rescaling also acts on β (Section 4.3)."""

    degree = 1.0
    trainable_beta = True

    def __call__(self, x, beta=None):
        if beta is None:
            raise ValueError("`Swish` needs its per-neuron `beta`.")
        return x * jax.nn.sigmoid(beta * x)


class Identity(AbstractActivation):
    """The identity: a linear layer, with the full GL(d) symmetry of Section 5."""

    degree = 1.0
    linear = True

    def __call__(self, x, beta=None):
        return x

    def derivatives(self, a, k, active=None):
        return [a, np.ones_like(a)][: k + 1]


class Tanh(AbstractActivation):
    """tanh: no rescaling symmetry (used as a negative control)."""

    def __call__(self, x, beta=None):
        return jnp.tanh(x)

    def derivatives(self, a, k, active=None):
        # polynomials in t = tanh a: P_{j+1}(t) = P_j'(t)(1 - t²)
        t = np.tanh(a)
        poly = np.polynomial.Polynomial([0.0, 1.0])
        out = []
        for _ in range(k + 1):
            out.append(poly(t))
            poly = poly.deriv() * np.polynomial.Polynomial([1.0, 0.0, -1.0])
        return out


def _pattern(a, active):
    """The activation pattern: `active` as given, else 1 where `a > 0`, 0 elsewhere."""
    return (np.asarray(a) > 0).astype(np.asarray(a).dtype) if active is None else active


def _falling(p, j):
    r"""The falling factorial $p(p-1)\cdots(p-j+1)$."""
    out = 1.0
    for i in range(j):
        out *= p - i
    return out


def _monomial(a, k, p: int) -> list:
    """The derivatives of $a^p$ (integer p ≥ 0) of orders 0..min(k, p); the higher
    ones vanish."""
    return [_falling(p, j) * a ** (p - j) for j in range(min(k, p) + 1)]
