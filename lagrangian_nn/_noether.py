"""Generators of symmetries, Noether charges, and the Rund–Trautmann residual."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ._custom_types import Lagrangian, Loss
from ._euler_lagrange import check_scalar_lagrangian
from ._tree import as_time, check_same_structure, tree_dot, tree_dtype


class _FromTransformation(eqx.Module):
    """The derivative at `eps = 0` of a one-parameter family of transformations."""

    transform: Callable

    def derivative(self, t, q):
        eps0 = jnp.zeros((), tree_dtype(q))
        f = lambda eps: self.transform(t, q, eps)
        out, tangent = jax.jvp(f, (eps0,), (jnp.ones_like(eps0),))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(
                "`transform(t, q, eps)` must return a pair `(t', q')`; got "
                f"{type(out).__name__}."
            )
        return tangent


class _XiOf(eqx.Module):
    source: _FromTransformation

    def __call__(self, t, q):
        return self.source.derivative(t, q)[1]


class _TauOf(eqx.Module):
    source: _FromTransformation

    def __call__(self, t, q):
        return self.source.derivative(t, q)[0]


class Generator(eqx.Module):
    r"""The infinitesimal generator $(\tau, \xi)$ of a one-parameter family of
    transformations $t \mapsto t + \varepsilon\tau(t,q)$,
    $q \mapsto q + \varepsilon\xi(t,q)$ (eq. 10).

    **Arguments:**

    - `xi`: `xi(t, q)` returning a pytree like `q`.
    - `tau`: `tau(t, q)` returning a scalar, or `None` (meaning $\tau = 0$).

    **Example:**

    ```python
    # rotations about the z axis
    Jz = jnp.array([[0., -1., 0.], [1., 0., 0.], [0., 0., 0.]])
    gen = lnn.Generator(lambda t, q: Jz @ q)
    ```
    """

    xi: Callable
    tau: Callable | None = None

    @classmethod
    def from_transformation(cls, transform: Callable) -> "Generator":
        r"""The generator of a one-parameter family `transform(t, q, eps) -> (t', q')`
        with `eps = 0` the identity: $\tau = \partial_\varepsilon t'|_0$,
        $\xi = \partial_\varepsilon q'|_0$ (Appendix A: the Lie-algebra element).

        **Example:**

        ```python
        # the scaling symmetry of an inverse-square potential: q → λq, t → λ²t
        gen = lnn.Generator.from_transformation(
            lambda t, q, eps: ((1 + eps) ** 2 * t, (1 + eps) * q))
        ```
        """
        if not callable(transform):
            raise ValueError(
                f"`transform` must be a callable transform(t, q, eps); got {transform!r}."
            )
        source = _FromTransformation(transform)
        return cls(_XiOf(source), _TauOf(source))

    def evaluate(self, t, q):
        """Returns `(xi(t, q), tau(t, q))`, checking their structure against `q`."""
        xi = self.xi(t, q)
        _check_xi(xi, q)
        if self.tau is None:
            return xi, None
        tau = jnp.asarray(self.tau(t, q))
        if tau.shape != ():
            raise ValueError(
                f"The generator's `tau(t, q)` must return a scalar; got shape {tau.shape}."
            )
        return xi, tau


def _check_xi(xi, q) -> None:
    try:
        check_same_structure(q, xi, "q", "xi(t, q)")
    except ValueError as e:
        raise ValueError(
            "The generator's `xi(t, q)` must return a pytree with the same structure and "
            f"shapes as `q`. {e}"
        ) from None


def _check_generator(gen) -> None:
    if not isinstance(gen, Generator):
        raise ValueError(f"`gen` must be an `lnn.Generator`; got {gen!r}.")


def _prepare(L, t, q, qdot):
    check_same_structure(q, qdot, "q", "qdot")
    t = as_time(t, tree_dtype(q))
    check_scalar_lagrangian(L, t, q, qdot)
    return t


class NoetherCharge(eqx.Module):
    r"""$Q = \langle\partial L/\partial\dot q, \xi\rangle
    + (L - \langle\dot q, \partial L/\partial\dot q\rangle)\tau$; see
    `lnn.noether_charge`."""

    lagrangian: Lagrangian
    generator: Generator

    def __call__(self, t, q, qdot):
        t = _prepare(self.lagrangian, t, q, qdot)
        xi, tau = self.generator.evaluate(t, q)
        p = jax.grad(self.lagrangian, argnums=2)(t, q, qdot)
        charge = tree_dot(p, xi)
        if tau is not None:
            charge = charge + (self.lagrangian(t, q, qdot) - tree_dot(qdot, p)) * tau
        return charge


class InvarianceResidual(eqx.Module):
    r"""The Rund–Trautmann expression (eq. 11); see `lnn.invariance_residual`."""

    lagrangian: Lagrangian
    generator: Generator

    def __call__(self, t, q, qdot):
        L = self.lagrangian
        t = _prepare(L, t, q, qdot)
        xi, tau = self.generator.evaluate(t, q)
        one = jnp.ones_like(t)
        # Total time derivatives along the state: d/dt f(t, q(t)) = ∂t f + ∂q f · q̇.
        _, xi_dot = jax.jvp(self.generator.xi, (t, q), (one, qdot))
        value, (dLdt, dLdq, p) = jax.value_and_grad(L, argnums=(0, 1, 2))(t, q, qdot)
        residual = tree_dot(dLdq, xi) + tree_dot(p, xi_dot)
        if tau is not None:
            _, tau_dot = jax.jvp(self.generator.tau, (t, q), (one, qdot))
            residual = residual + dLdt * tau + (value - tree_dot(qdot, p)) * tau_dot
        return residual


class Energy(eqx.Module):
    r"""$E = \langle\dot q, \partial L/\partial\dot q\rangle - L$; see `lnn.energy`."""

    lagrangian: Lagrangian

    def __call__(self, t, q, qdot):
        t = _prepare(self.lagrangian, t, q, qdot)
        value, p = jax.value_and_grad(self.lagrangian, argnums=2)(t, q, qdot)
        return tree_dot(qdot, p) - value


class SymmetryResidual(eqx.Module):
    r"""$\langle\nabla\mathrm{loss}(q), \xi(0, q)\rangle$; see `lnn.symmetry_residual`."""

    loss: Loss
    generator: Generator

    def __call__(self, q):
        t = jnp.zeros((), tree_dtype(q))
        xi = self.generator.xi(t, q)
        _check_xi(xi, q)
        return tree_dot(jax.grad(self.loss)(q), xi)


def _check_lagrangian(L) -> None:
    if not callable(L):
        raise ValueError(f"`L` must be a callable L(t, q, qdot); got {L!r}.")


def noether_charge(L: Lagrangian, gen: Generator) -> NoetherCharge:
    r"""The Noether charge of a generator (Lemma 2, eq. 12):

    $$Q(t, q, \dot q) = \Big\langle\frac{\partial L}{\partial\dot q}, \xi\Big\rangle
      + \Big(L - \Big\langle\dot q, \frac{\partial L}{\partial\dot q}\Big\rangle\Big)\tau.$$

    $Q$ is conserved along solutions when `gen` is a symmetry of `L`; in general
    $dQ/dt$ equals `lnn.invariance_residual(L, gen)` along solutions. With $\tau = 1$,
    $\xi = 0$ it is minus the energy.

    **Arguments:**

    - `L`: a Lagrangian `L(t, q, qdot) -> scalar`.
    - `gen`: an `lnn.Generator`.

    **Returns:** `Q(t, q, qdot) -> scalar` (an `eqx.Module`).

    **Raises:** `ValueError` (when called) if `gen.xi` does not return a pytree like `q`.

    **Example:**

    ```python
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 1 / jnp.linalg.norm(q)
    Lz = lnn.noether_charge(L, lnn.Generator(lambda t, q: jnp.array([-q[1], q[0]])))
    ```
    """
    _check_lagrangian(L)
    _check_generator(gen)
    return NoetherCharge(L, gen)


def invariance_residual(L: Lagrangian, gen: Generator) -> InvarianceResidual:
    r"""The Rund–Trautmann expression (Lemma 1, eq. 11),

    $$R = \Big\langle\frac{\partial L}{\partial q}, \xi\Big\rangle
      + \Big\langle\frac{\partial L}{\partial\dot q}, \dot\xi\Big\rangle
      + \frac{\partial L}{\partial t}\tau
      + \Big(L - \Big\langle\dot q, \frac{\partial L}{\partial\dot q}\Big\rangle\Big)
        \dot\tau,$$

    with $\dot\xi, \dot\tau$ total time derivatives at the state $(t, q, \dot q)$.
    $R \equiv 0$ for every state iff `gen` is a symmetry of `L`. Along any solution of the
    Euler–Lagrange equations $R = dQ/dt$ for the charge $Q$ of `lnn.noether_charge`, so a
    broken symmetry has the exact balance law $Q(t) - Q(t_0) = \int_{t_0}^t R\,dt$.

    **Returns:** `R(t, q, qdot) -> scalar` (an `eqx.Module`).
    """
    _check_lagrangian(L)
    _check_generator(gen)
    return InvarianceResidual(L, gen)


def energy(L: Lagrangian) -> Energy:
    r"""The energy (Hamiltonian) $E = \langle\dot q, \partial L/\partial\dot q\rangle - L$
    (Example 5). It is conserved when `L` does not depend on `t` explicitly, and equals
    `-noether_charge(L, Generator(xi=0, tau=1))`.

    **Returns:** `E(t, q, qdot) -> scalar` (an `eqx.Module`).
    """
    _check_lagrangian(L)
    return Energy(L)


def symmetry_residual(loss: Loss, gen: Generator) -> SymmetryResidual:
    r"""$r(q) = \langle\nabla\mathrm{loss}(q), \xi(0, q)\rangle$ (eq. 16): zero for every
    `q` iff the generator leaves the loss (the potential) invariant.

    **Arguments:**

    - `loss`: `loss(q) -> scalar`.
    - `gen`: an `lnn.Generator` (only `xi` at `t = 0` is used).

    **Returns:** `r(q) -> scalar` (an `eqx.Module`).
    """
    if not callable(loss):
        raise ValueError(f"`loss` must be a callable loss(q); got {loss!r}.")
    _check_generator(gen)
    return SymmetryResidual(loss, gen)
