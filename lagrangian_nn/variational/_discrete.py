r"""Discrete Lagrangians $L_d(q_k, q_{k+1}, h) \approx \int_{t_k}^{t_k+h} L\,dt$ by
quadrature (Marsden & West 2001, Sections 2.1 and 2.2).

Every discrete Lagrangian is stored in its *reduced* form: for a Lagrangian
$L = e^{s(t)}L_0$ (a `lnn.Conformal`, e.g. `lnn.dynamics.damped` or `nesterov`) the
weight is factored out at the start of the step,
$L_d = e^{s(t_k)}\,L_{d,0}$, and $L_{d,0}$ only contains the ratios
$e^{s(t_k+\theta h) - s(t_k)}$ of the weight inside one step. Nothing of size
$e^{s(t)}$ is ever formed, so $e^{t/\kappa}$ with $t/\kappa = 10^7$ does not overflow.
For any other Lagrangian $s = 0$ and $L_{d,0} = L_d$.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._conformal import rate as _rate, split as _split
from .._custom_types import Lagrangian
from ._explicit import separable

# 3-point Gauss–Legendre on [0, 1], for s(t + τ) − s(t) = ∫ ṡ: exact for rates that
# are polynomials of degree <= 5 (constant for `damped`), and of order h^6 otherwise.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(3)
_GL_NODES = 0.5 * (_GL_X + 1)
_GL_WEIGHTS = 0.5 * _GL_W


def _tree_lin(*pairs):
    """Σ c_i x_i for pairs `(c_i, x_i)` of scalars and pytrees of the same structure."""
    coeffs = [c for c, _ in pairs]
    trees = [x for _, x in pairs]
    return jax.tree.map(lambda *xs: sum(c * x for c, x in zip(coeffs, xs)), *trees)


class AbstractDiscreteLagrangian(eqx.Module):
    r"""A discrete Lagrangian built from a continuous one, `L(t, q, qdot)`.

    Subclasses define the reduced discrete Lagrangian
    `reduced(t, h, q0, z, q1)` $= e^{-s(t)} L_d$ where `z` holds the internal points of
    the step (a tuple of `n_internal` pytrees like `q`, empty for midpoint and
    trapezoid). The internal points are eliminated by stationarity,
    $\partial L_d/\partial z = 0$, when the step is solved.

    **Fields:**

    - `lagrangian`: the continuous Lagrangian $L(t, q, \dot q)$ (any callable; a
      `lnn.Conformal` is handled through its factorisation $e^{s(t)}L_0$).
    """

    lagrangian: Lagrangian
    n_internal: ClassVar[int] = 0
    order: ClassVar[int] = 2

    def __check_init__(self):
        if not callable(self.lagrangian):
            raise ValueError(
                "`lagrangian` must be a callable L(t, q, qdot) -> scalar; got "
                f"{type(self.lagrangian).__name__} {self.lagrangian!r:.80}."
            )

    @property
    def inner(self) -> Lagrangian:
        r"""$L_0$: the Lagrangian without its conformal weights (`L` itself if it is
        not a `lnn.Conformal`)."""
        return _split(self.lagrangian)[0]

    @property
    def layers(self) -> tuple:
        return _split(self.lagrangian)[1]

    def log_weight_change(self, t, tau):
        r"""$s(t + \tau) - s(t) = \int_t^{t+\tau}\dot s$ (3-point Gauss–Legendre; 0 for
        a Lagrangian that is not `lnn.Conformal`). Computed from the rate only, so it
        is accurate for large $t$."""
        layers = self.layers
        if not layers:
            return jnp.zeros_like(jnp.asarray(tau))
        nodes = jnp.asarray(_GL_NODES, jnp.result_type(t, float))
        weights = jnp.asarray(_GL_WEIGHTS, jnp.result_type(t, float))
        rates = jax.vmap(lambda c: _rate(layers, t + c * tau))(nodes)
        return tau * jnp.sum(weights * rates)

    def _w(self, t, tau):
        """The weight ratio $e^{s(t+\\tau) - s(t)}$ (exactly 1 without weights)."""
        if not self.layers:
            return 1.0
        return jnp.exp(self.log_weight_change(t, tau))

    @abc.abstractmethod
    def reduced(self, t, h, q0, z, q1):
        r"""$e^{-s(t)}L_d(q_0, q_1)$ over $[t, t + h]$ with internal points `z`."""
        raise NotImplementedError

    def _explicit_form(self, t, q):
        """The `Separable` form of the Lagrangian where this rule's step is explicit
        for it (a division, no root solve: see `_explicit`), else `None`, and the step
        is a root solve. Only the trapezoid rule declares one; a subclass that
        redefines `reduced` redefines this too."""
        del t, q
        return None

    def initial_internal(self, q0, q1) -> tuple:
        """A starting guess for the internal points (equally spaced on the chord)."""
        n = self.n_internal
        return tuple(
            _tree_lin((1 - (i + 1) / (n + 1), q0), ((i + 1) / (n + 1), q1))
            for i in range(n)
        )


class Midpoint(AbstractDiscreteLagrangian):
    r"""The midpoint discrete Lagrangian (second order):

    $$L_d(q_0, q_1) = h\,L\Big(t + \tfrac h2, \frac{q_0 + q_1}2, \frac{q_1 - q_0}h\Big).$$

    Its variational integrator is the implicit midpoint rule for separable $L$
    (symplectic, symmetric). Every step is a root solve.

    **Arguments:** `lagrangian`: any `L(t, q, qdot)`.
    """

    def reduced(self, t, h, q0, z, q1):
        del z
        qm = _tree_lin((0.5, q0), (0.5, q1))
        v = _tree_lin((1 / h, q1), (-1 / h, q0))
        return h * self._w(t, 0.5 * h) * self.inner(t + 0.5 * h, qm, v)


class Trapezoid(AbstractDiscreteLagrangian):
    r"""The trapezoid discrete Lagrangian (second order):

    $$L_d(q_0, q_1) = \frac h2\Big[L\big(t, q_0, \tfrac{q_1 - q_0}h\big)
      + L\big(t + h, q_1, \tfrac{q_1 - q_0}h\big)\Big].$$

    For $L = \tfrac m2\|\dot q\|^2 - V(t, q)$ its variational integrator is
    Störmer–Verlet (leapfrog), and for $\tfrac12\|\dot w\|^2 - L(w)$ with $h = \sqrt\eta$
    it is eq. (21). `lnn.variational.integrate` steps explicitly, one gradient of the
    potential per step and no root solve, whenever the Lagrangian has a constant
    diagonal mass and a potential that does not depend on the velocity (times a
    conformal weight), whether it is built by `lnn.dynamics` or written as a plain
    function.

    **Arguments:** `lagrangian`: any `L(t, q, qdot)`.
    """

    def reduced(self, t, h, q0, z, q1):
        del z
        v = _tree_lin((1 / h, q1), (-1 / h, q0))
        return (
            0.5 * h * (self.inner(t, q0, v) + self._w(t, h) * self.inner(t + h, q1, v))
        )

    def _explicit_form(self, t, q):
        """Störmer–Verlet: the step is explicit for a separable Lagrangian with a
        diagonal mass (`_explicit.separable`)."""
        return separable(self.inner, t, q)


class Lobatto(AbstractDiscreteLagrangian):
    r"""The quadratic Galerkin discrete Lagrangian with 3-point Lobatto (Simpson)
    quadrature (fourth order; its integrator is the Lobatto IIIA–IIIB partitioned
    Runge–Kutta method).

    The path over the step is the quadratic through $q_0$, an internal point $q_m$ at
    $t + h/2$, and $q_1$; with its velocities $v_0, v_m, v_1$ at the nodes,

    $$L_d = h\Big[\tfrac16 L(t, q_0, v_0) + \tfrac46 L(t + \tfrac h2, q_m, v_m)
      + \tfrac16 L(t + h, q_1, v_1)\Big],$$

    and $q_m$ is eliminated by $\partial L_d/\partial q_m = 0$.

    **Arguments:** `lagrangian`: any `L(t, q, qdot)`.
    """

    n_internal: ClassVar[int] = 1
    order: ClassVar[int] = 4

    def reduced(self, t, h, q0, z, q1):
        (qm,) = z
        v0 = _tree_lin((-3 / h, q0), (4 / h, qm), (-1 / h, q1))
        vm = _tree_lin((1 / h, q1), (-1 / h, q0))
        v1 = _tree_lin((1 / h, q0), (-4 / h, qm), (3 / h, q1))
        return h * (
            self.inner(t, q0, v0) / 6
            + (4 / 6) * self._w(t, 0.5 * h) * self.inner(t + 0.5 * h, qm, vm)
            + self._w(t, h) * self.inner(t + h, q1, v1) / 6
        )


def check_discrete(discrete) -> None:
    if not isinstance(discrete, AbstractDiscreteLagrangian):
        hint = ""
        if callable(discrete):
            hint = (
                " To integrate a Lagrangian `L`, wrap it in a discrete Lagrangian, "
                "e.g. `lnn.variational.Trapezoid(L)` (or `Midpoint`, `Lobatto`)."
            )
        raise ValueError(
            "`discrete` must be a discrete Lagrangian (`lnn.variational.Midpoint`, "
            f"`Trapezoid` or `Lobatto`); got {type(discrete).__name__}.{hint}"
        )
