"""Activation functions. Each knows its homogeneity degree, which fixes the rescaling
symmetry of Section 4 (`degree is None` means no rescaling symmetry)."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp


class AbstractActivation(eqx.Module):
    """An elementwise activation. `degree` is $p$ when $\\sigma(\\lambda x) =
    \\lambda^p\\sigma(x)$ for $\\lambda > 0$ (Definition 2), `None` otherwise.
    `trainable_beta` says whether the layer carries a per-neuron parameter β (Swish)."""

    degree = None
    trainable_beta = False
    linear = False

    @abc.abstractmethod
    def __call__(self, x, beta=None):
        raise NotImplementedError


class ReLU(AbstractActivation):
    """$\\max(0, x)$: 1-homogeneous."""

    degree = 1.0

    def __call__(self, x, beta=None):
        return jax.nn.relu(x)


class LeakyReLU(AbstractActivation):
    """$x$ for $x > 0$, $\\alpha x$ otherwise: 1-homogeneous."""

    alpha: float = eqx.field(static=True, default=0.01)
    degree = 1.0

    def __check_init__(self):
        if not self.alpha < 1:
            raise ValueError(f"`alpha` must be < 1; got alpha = {self.alpha!r}.")

    def __call__(self, x, beta=None):
        return jnp.where(x > 0, x, self.alpha * x)


class _AbstractPower(AbstractActivation):
    """Shared by the power activations: a degree `p > 0`."""

    p: eqx.AbstractVar[float]

    def __check_init__(self):
        if not self.p > 0:
            raise ValueError(f"`p` must be > 0; got p = {self.p!r}.")

    @property
    def degree(self):
        return float(self.p)


class Polynomial(_AbstractPower):
    """$x^p$ (for integer $p$ on all of $\\mathbb{R}$): p-homogeneous."""

    p: float = eqx.field(static=True, default=2.0)

    def __call__(self, x, beta=None):
        if float(self.p).is_integer():
            return x ** int(self.p)
        return jnp.sign(x) * jnp.abs(x) ** self.p


class RePU(_AbstractPower):
    """$x^p$ for $x > 0$, 0 otherwise: p-homogeneous. `RePU(1)` is ReLU."""

    p: float = eqx.field(static=True, default=2.0)

    def __call__(self, x, beta=None):
        return jnp.where(x > 0, jnp.maximum(x, 0.0) ** self.p, 0.0)


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


class Tanh(AbstractActivation):
    """tanh: no rescaling symmetry (used as a negative control)."""

    def __call__(self, x, beta=None):
        return jnp.tanh(x)
