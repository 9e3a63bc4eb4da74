"""Generators of symmetries, Noether charges, and the Rund–Trautmann residual."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._conformal import (
    log_weight as _log_weight,
    rate as _rate,
    split as _split,
    times_exp as _times_exp,
)
from ._custom_types import Lagrangian, Loss
from ._gradient_flow import GradientFlow
from ._tree import tree_dot, tree_dtype
from ._validate import as_time, check_same_structure, check_scalar_lagrangian


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


def _describe_value(value) -> str:
    if value is None:
        return "None"
    if eqx.is_array_like(value) and not isinstance(value, (bool, int, float, complex)):
        return f"an array of shape {tuple(np.shape(value))}"
    text = repr(value)
    if len(text) > 80:
        text = text[:80] + "..."
    return f"{type(value).__name__} {text}"


class Generator(eqx.Module):
    r"""The infinitesimal generator $(\tau, \xi)$ of a one-parameter family of
    transformations $t \mapsto t + \varepsilon\tau(t,q)$,
    $q \mapsto q + \varepsilon\xi(t,q)$ (eq. 10).

    **Arguments:**

    - `xi`: a callable `xi(t, q)` returning a pytree like `q`.
    - `tau`: a callable `tau(t, q)` returning a scalar, or `None` (meaning $\tau = 0$).

    **Raises:** `ValueError` if `xi` is not callable, or `tau` is neither `None` nor
    callable (e.g. a matrix $A$ instead of the field `lambda t, q: A @ q`).

    **Example:**

    ```python
    # rotations about the z axis
    Jz = jnp.array([[0., -1., 0.], [1., 0., 0.], [0., 0., 0.]])
    gen = lnn.Generator(lambda t, q: Jz @ q)
    ```
    """

    xi: Callable
    tau: Callable | None = None

    def __check_init__(self):
        # Runs after `__init__` only: pytree unflattening (jit, vmap, eqx.partition)
        # bypasses it, so placeholders such as `None` leaves are not refused there.
        if not callable(self.xi):
            hint = ""
            if eqx.is_array(self.xi) or isinstance(self.xi, np.ndarray):
                hint = " For a linear field q ↦ Aq pass `lambda t, q: A @ q`."
            raise ValueError(
                "`xi` must be a callable xi(t, q) returning a pytree like q; got "
                f"{_describe_value(self.xi)}.{hint}"
            )
        if self.tau is not None and not callable(self.tau):
            raise ValueError(
                "`tau` must be None (meaning τ = 0) or a callable tau(t, q) returning a "
                f"scalar; got {_describe_value(self.tau)}. For a constant τ = c pass "
                "`lambda t, q: c`."
            )

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
    """Checks the state and `L`'s value there; returns `(t, L0, layers)` (`t` as an
    array of the state's dtype, `L = e^{s(t)} L0`)."""
    check_same_structure(q, qdot, "q", "qdot")
    t = as_time(t, tree_dtype(q))
    check_scalar_lagrangian(L, t, q, qdot)
    return (t, *_split(L))


# --- Conformal Lagrangians: L = e^{s(t)} L0 ------------------------------------------


def _finish(x0, layers, t, reduced: bool, what: str, symbol: str):
    """The value to return: `x0` (the reduced quantity), or `e^s x0` for a `Conformal`
    Lagrangian when not `reduced`, with the finiteness checks. `what` names the
    quantity ("the Noether charge") and `symbol` its letter ("Q")."""
    if reduced or not layers:
        return eqx.error_if(
            x0,
            ~jnp.isfinite(x0),
            f"{what} {symbol}0 is not finite (inf or NaN) at this state: the "
            "state, or the Lagrangian's value or derivatives there, are not finite."
            if reduced and layers
            else f"{what} {symbol} is not finite (inf or NaN) at this state: the "
            "state, or the Lagrangian's value or derivatives there, are not finite.",
        )
    out, finite = _times_exp(_log_weight(layers, t), x0)
    out = eqx.error_if(
        out,
        ~finite,
        f"{what} {symbol} = e^{{s(t)}}·{symbol}0 of the `Conformal` Lagrangian "
        "L = e^{s(t)}·L0 is not finite (inf or NaN) at this state: s(t), the state, or "
        "the value or derivatives of L0 there, are not finite.",
    )
    return eqx.error_if(
        out,
        finite & ~jnp.isfinite(out),
        f"{what} {symbol} = e^{{s(t)}}·{symbol}0 of the `Conformal` Lagrangian "
        f"L = e^{{s(t)}}·L0 overflows {jnp.dtype(out.dtype).name} at this state (the "
        "weight e^{s(t)} is too large). Pass `reduced=True` to get the reduced "
        f"{symbol}0 = e^{{-s(t)}}·{symbol}, finite and with its own exact balance law.",
    )


class _OfGenerator(eqx.Module):
    """A quantity of a Lagrangian and a generator, optionally in reduced form."""

    lagrangian: Lagrangian
    generator: Generator
    reduced: bool = eqx.field(static=True, default=False)

    def _at(self, t, q, qdot):
        """`(t, L0, layers, xi, tau)` at the state, its checks done."""
        t, inner, layers = _prepare(self.lagrangian, t, q, qdot)
        return (t, inner, layers, *self.generator.evaluate(t, q))


class NoetherCharge(_OfGenerator):
    r"""$Q = \langle\partial L/\partial\dot q, \xi\rangle
    + (L - \langle\dot q, \partial L/\partial\dot q\rangle)\tau$, or its reduced form
    $Q_0 = e^{-s}Q$; see `lnn.noether_charge`."""

    def __call__(self, t, q, qdot):
        t, inner, layers, xi, tau = self._at(t, q, qdot)
        value, p = jax.value_and_grad(inner, argnums=2)(t, q, qdot)
        charge = tree_dot(p, xi)
        if tau is not None:
            charge = charge + (value - tree_dot(qdot, p)) * tau
        return _finish(charge, layers, t, self.reduced, "The Noether charge", "Q")


class InvarianceResidual(_OfGenerator):
    r"""The Rund–Trautmann expression (eq. 11), or the balance rate $R_0$ of the reduced
    charge; see `lnn.invariance_residual`."""

    def __call__(self, t, q, qdot):
        t, inner, layers, xi, tau = self._at(t, q, qdot)
        one = jnp.ones_like(t)
        # Total time derivatives along the state: d/dt f(t, q(t)) = ∂t f + ∂q f · q̇.
        _, xi_dot = jax.jvp(self.generator.xi, (t, q), (one, qdot))
        value, (dLdt, dLdq, p) = jax.value_and_grad(inner, argnums=(0, 1, 2))(
            t, q, qdot
        )
        # R[L0], the Rund–Trautmann expression of L0 itself.
        residual = tree_dot(dLdq, xi) + tree_dot(p, xi_dot)
        if tau is not None:
            _, tau_dot = jax.jvp(self.generator.tau, (t, q), (one, qdot))
            residual = residual + dLdt * tau + (value - tree_dot(qdot, p)) * tau_dot
        if layers:
            rate = _rate(layers, t)
            if self.reduced:
                # R0 = e^{-s} R − ṡ Q0 = R[L0] − ṡ(⟨p0, ξ⟩ − ⟨q̇, p0⟩τ): the ṡ L0 τ terms
                # cancel analytically, so they are never formed.
                moment = tree_dot(p, xi)
                if tau is not None:
                    moment = moment - tree_dot(qdot, p) * tau
                residual = residual - rate * moment
            elif tau is not None:
                # R = e^{s}(R[L0] + ṡ L0 τ): ∂L/∂t = e^{s}(ṡ L0 + ∂L0/∂t).
                residual = residual + rate * value * tau
        return _finish(
            residual, layers, t, self.reduced, "The invariance residual", "R"
        )


class Energy(eqx.Module):
    r"""$E = \langle\dot q, \partial L/\partial\dot q\rangle - L$, or its reduced form
    $E_0 = e^{-s}E$; see `lnn.energy`."""

    lagrangian: Lagrangian
    reduced: bool = eqx.field(static=True, default=False)

    def __call__(self, t, q, qdot):
        t, inner, layers = _prepare(self.lagrangian, t, q, qdot)
        value, p = jax.value_and_grad(inner, argnums=2)(t, q, qdot)
        return _finish(
            tree_dot(qdot, p) - value, layers, t, self.reduced, "The energy", "E"
        )


class SymmetryResidual(eqx.Module):
    r"""$\langle\nabla\mathrm{loss}(q), \xi(0, q)\rangle$; see `lnn.symmetry_residual`."""

    loss: Loss
    generator: Generator

    def __call__(self, q):
        t = jnp.zeros((), tree_dtype(q))
        xi = self.generator.xi(t, q)
        _check_xi(xi, q)
        return tree_dot(jax.grad(self.loss)(q), xi)


def _check_lagrangian(L, fn: str) -> None:
    if isinstance(L, GradientFlow):
        raise ValueError(
            f"`L` is an `lnn.dynamics.GradientFlow`, but `lnn.{fn}` needs a Lagrangian: "
            "gradient flow q̇ = −∇loss(q) is a first-order system with no Lagrangian. "
            "Use `lnn.dynamics.damped(loss, kappa)`, whose massless limit κ → 0 is "
            "gradient flow, or the laws that hold along gradient flow itself: "
            "`lnn.symmetry_residual(loss, gen)` and the integrated quantities of "
            "`lnn.nn` (e.g. `lnn.nn.rescale_quantity`)."
        )
    if not callable(L):
        raise ValueError(f"`L` must be a callable L(t, q, qdot); got {L!r}.")


def _check_reduced(reduced) -> bool:
    if not isinstance(reduced, (bool, np.bool_)):
        raise ValueError(f"`reduced` must be True or False; got {reduced!r}.")
    return bool(reduced)


def noether_charge(
    L: Lagrangian, gen: Generator, *, reduced: bool = False
) -> NoetherCharge:
    r"""The Noether charge of a generator (Lemma 2, eq. 12):

    $$Q(t, q, \dot q) = \Big\langle\frac{\partial L}{\partial\dot q}, \xi\Big\rangle
      + \Big(L - \Big\langle\dot q, \frac{\partial L}{\partial\dot q}\Big\rangle\Big)\tau.$$

    $Q$ is conserved along solutions when `gen` is a symmetry of `L`; in general
    $dQ/dt$ equals `lnn.invariance_residual(L, gen)` along solutions. With $\tau = 1$,
    $\xi = 0$ it is minus the energy.

    With `reduced=True` and $L = e^{s(t)}L_0$ (a `lnn.Conformal`) it returns
    $Q_0 = e^{-s}Q = \langle\partial L_0/\partial\dot q, \xi\rangle
    + (L_0 - \langle\dot q, \partial L_0/\partial\dot q\rangle)\tau$, whose exact
    balance law is $dQ_0/dt = R_0$ with $R_0$ from
    `lnn.invariance_residual(L, gen, reduced=True)`. For a symmetry of $L$,
    $Q_0(t) = Q_0(t_0)\,e^{-(s(t) - s(t_0))}$.

    **Reduced form.** For a `lnn.Conformal` Lagrangian $L = e^{s(t)}L_0$ (what
    `lnn.dynamics.damped`, `nesterov` and `general` return) the weight $e^{s}$ overflows
    for large $s$ (e.g. $s = t/\kappa$). With `reduced=True` the quantity is computed
    from $L_0$ and $\dot s$ only, never forming $e^{s}$; for any other Lagrangian
    `reduced=True` takes $s = 0$ and changes nothing. With `reduced=False` (default)
    $e^{s}X_0$ is computed as $2^n e^{r}X_0$ ($s = n\ln 2 + r$): finite whenever the
    true value is representable, and an error that names `reduced=True` when it
    overflows the dtype. A non-finite value (inf or NaN) is always an error, never
    returned.

    **Arguments:**

    - `L`: a Lagrangian `L(t, q, qdot) -> scalar`.
    - `gen`: an `lnn.Generator`.
    - `reduced`: return $Q_0 = e^{-s}Q$ instead of $Q$ (see above).

    **Returns:** `Q(t, q, qdot) -> scalar` (an `eqx.Module`), or $Q_0$.

    **Raises:** `ValueError` if `L` is not callable or is an
    `lnn.dynamics.GradientFlow` (no Lagrangian), and (when called) if `gen.xi` does not
    return a pytree like `q`; `eqx.EquinoxRuntimeError` (when called) if the value is
    not finite or overflows.

    **Example:**

    ```python
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 1 / jnp.linalg.norm(q)
    Lz = lnn.noether_charge(L, lnn.Generator(lambda t, q: jnp.array([-q[1], q[0]])))
    # damped dynamics: e^{t/κ} overflows, the reduced charge Q0 = e^{-t/κ} Q does not
    Q0 = lnn.noether_charge(lnn.dynamics.damped(loss, 1e-6), gen, reduced=True)
    ```
    """
    _check_lagrangian(L, "noether_charge")
    _check_generator(gen)
    return NoetherCharge(L, gen, _check_reduced(reduced))


def invariance_residual(
    L: Lagrangian, gen: Generator, *, reduced: bool = False
) -> InvarianceResidual:
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

    With `reduced=True` and $L = e^{s(t)}L_0$ (a `lnn.Conformal`) it returns the
    balance rate of the reduced charge $Q_0 = e^{-s}Q$,

    $$R_0 = e^{-s}R - \dot s\,Q_0 = R[L_0]
      - \dot s\Big(\Big\langle\frac{\partial L_0}{\partial\dot q}, \xi\Big\rangle
      - \Big\langle\dot q, \frac{\partial L_0}{\partial\dot q}\Big\rangle\tau\Big),$$

    where $R[L_0]$ is the expression above for $L_0$. Along any solution
    $Q_0(t) - Q_0(t_0) = \int_{t_0}^t R_0\,dt$ exactly. For a symmetry of $L$ ($R = 0$)
    $R_0 = -\dot s\,Q_0$, so $Q_0$ decays as $e^{-(s(t) - s(t_0))}$.

    **Reduced form.** As for `lnn.noether_charge`: `reduced=True` never forms
    $e^{s}$, and with `reduced=False` a value that overflows the dtype, or is not
    finite, is an error, never returned.

    **Arguments:**

    - `L`: a Lagrangian `L(t, q, qdot) -> scalar`.
    - `gen`: an `lnn.Generator`.
    - `reduced`: return $R_0$ instead of $R$ (see above).

    **Returns:** `R(t, q, qdot) -> scalar` (an `eqx.Module`), or $R_0$.

    **Raises:** as `lnn.noether_charge`.
    """
    _check_lagrangian(L, "invariance_residual")
    _check_generator(gen)
    return InvarianceResidual(L, gen, _check_reduced(reduced))


def energy(L: Lagrangian, *, reduced: bool = False) -> Energy:
    r"""The energy (Hamiltonian) $E = \langle\dot q, \partial L/\partial\dot q\rangle - L$
    (Example 5). It is conserved when `L` does not depend on `t` explicitly, and equals
    `-noether_charge(L, Generator(xi=0, tau=1))`; in general $dE/dt = -\partial L/\partial
    t$ along solutions.

    With `reduced=True` and $L = e^{s(t)}L_0$ (a `lnn.Conformal`) it returns
    $E_0 = e^{-s}E = \langle\dot q, \partial L_0/\partial\dot q\rangle - L_0$, whose
    balance law along solutions is
    $dE_0/dt = -\partial L_0/\partial t - \dot s\langle\dot q, \partial L_0/\partial\dot
    q\rangle$ (for `damped`: $E_0 = \tfrac\kappa2\|\dot w\|^2 + L(w)$ and
    $dE_0/dt = -\|\dot w\|^2$); this rate is `-invariance_residual(L, Generator(xi=0,
    tau=1), reduced=True)`.

    **Reduced form.** As for `lnn.noether_charge`: `reduced=True` never forms
    $e^{s}$, and with `reduced=False` a value that overflows the dtype, or is not
    finite, is an error, never returned.

    **Arguments:**

    - `L`: a Lagrangian `L(t, q, qdot) -> scalar`.
    - `reduced`: return $E_0 = e^{-s}E$ instead of $E$ (see above).

    **Returns:** `E(t, q, qdot) -> scalar` (an `eqx.Module`), or $E_0$.

    **Raises:** as `lnn.noether_charge`.
    """
    _check_lagrangian(L, "energy")
    return Energy(L, _check_reduced(reduced))


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
