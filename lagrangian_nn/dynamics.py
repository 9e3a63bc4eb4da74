r"""The continuous-time optimisers of the paper's Table 1, as Lagrangians.

Each builder takes a loss `loss(q) -> scalar` on a pytree `q` and returns exactly the
Table-1 Lagrangian, so that `lnn.euler_lagrange` of it reproduces the Table-1 ODE:

| builder | Lagrangian | equation of motion |
| --- | --- | --- |
| `general(loss, κ1, κ2)` | $e^{\int\kappa_1/\kappa_2}(\tfrac12\|\dot w\|^2 - L/\kappa_2)$ (23) | $\kappa_2\ddot w + \kappa_1\dot w + \nabla L = 0$ (22, 24) |
| `newtonian(loss)` | $\tfrac12\|\dot w\|^2 - L$ | $\ddot w + \nabla L = 0$ (25) |
| `nesterov(loss)` | $t^3(\tfrac12\|\dot w\|^2 - L)$ | $\ddot w + \tfrac3t\dot w + \nabla L = 0$ (26) |
| `damped(loss, κ)` | $e^{t/\kappa}(\tfrac\kappa2\|\dot w\|^2 - L)$ | $\kappa\ddot w + \dot w + \nabla L = 0$ |
| `gradient_flow(loss)` | none (the massless limit $\kappa\to0$) | $\dot w + \nabla L = 0$ (27) |

Losses that carry data should be `eqx.Module`s holding the data as array fields, so the
data is traced rather than compiled into the program.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._custom_types import Loss, RealScalarLike
from ._gradient_flow import GradientFlow
from ._lagrangian import AbstractLagrangian, Conformal, span_checks_of
from ._tree import tree_dot
from ._validate import as_positive_scalar, check_loss

__all__ = [
    "GradientFlow",
    "KineticMinusPotential",
    "damped",
    "general",
    "gradient_flow",
    "nesterov",
    "newtonian",
]


def _half_sq(v):
    return 0.5 * tree_dot(v, v)


class KineticMinusPotential(AbstractLagrangian):
    r"""$\tfrac{m}{2}\|\dot q\|^2 - c(t)\,\mathrm{loss}(q)$ with constant mass $m$ and a
    potential scale $c(t)$ that is `1` unless given (used by `general` for
    $1/\kappa_2(t)$)."""

    loss: Loss
    mass: RealScalarLike = 1.0
    potential_scale: Callable | None = None

    def __call__(self, t, q, qdot):
        potential = self.loss(q)
        if self.potential_scale is not None:
            potential = self.potential_scale(t) * potential
        return self.mass * _half_sq(qdot) - potential

    def mass_matrix(self, t, q, qdot):
        r"""$M = m\,I$: declared, so the equations of motion divide by $m$ with no
        run-time test (`m` is checked positive when the Lagrangian is built)."""
        del t, q, qdot
        return self.mass

    def span_checks(self, t0, t1) -> list:
        return span_checks_of(self.potential_scale, t0, t1)


class _Linear(eqx.Module):
    """`t ↦ rate · t`: the log-weight `t/κ` of `damped`, with its rate."""

    rate_value: RealScalarLike

    def __call__(self, t):
        return self.rate_value * t


class _Constant(eqx.Module):
    value: RealScalarLike

    def __call__(self, t):
        return jnp.asarray(self.value, dtype=jnp.result_type(t))


class _PositiveTime(eqx.Module):
    """Wraps a function of time defined only for `t > 0`. It returns NaN for `t <= 0`
    (a `select`, no branch: it is evaluated at every step); `lnn.simulate` refuses
    such a time span once, before its loop (`span_checks`), and an eager call of the
    acceleration raises."""

    fn: Callable
    name: str = eqx.field(static=True)

    def __call__(self, t):
        return jnp.where(t > 0, self.fn(jnp.where(t > 0, t, 1)), jnp.nan)

    def span_checks(self, t0, t1) -> list:
        del t1
        return [
            (
                ~(t0 > 0),
                f"`{self.name}` is only defined for t > 0 (its Lagrangian carries a "
                "factor t³); start the integration at some t0 > 0.",
            )
        ]


def _three_log_t(t):
    return 3 * jnp.log(t)


def _three_over_t(t):
    return 3 / t


class Nesterov(Conformal):
    r"""$t^3(\tfrac12\|\dot w\|^2 - L(w))$, written as `Conformal(3 log t, ...)` (see
    `nesterov`)."""

    def check_time_span(self, t0, t1) -> None:
        for name, value in (("t0", t0), ("t1", t1)):
            if value is not None and not isinstance(value, jax.core.Tracer):
                if not float(value) > 0:
                    raise ValueError(
                        f"`nesterov` Lagrangians t³(½‖ẇ‖² − L) are only defined for "
                        f"t > 0; got {name} = {float(value)!r}. Start at a small "
                        "t0 > 0 (the paper's footnote 2)."
                    )


def newtonian(loss: Loss) -> KineticMinusPotential:
    r"""Newtonian dynamics (ND), Table 1 eq. (25): $L = \tfrac12\|\dot w\|^2 - L(w)$.

    Its equation of motion is $\ddot w + \nabla L(w) = 0$; its energy
    $\tfrac12\|\dot w\|^2 + L(w)$ is conserved.

    **Arguments:**

    - `loss`: `loss(q) -> scalar`.

    **Returns:** the Lagrangian, an `eqx.Module` callable as `L(t, q, qdot)`.
    """
    check_loss(loss)
    return KineticMinusPotential(loss)


def nesterov(loss: Loss) -> Nesterov:
    r"""Nesterov's accelerated gradient flow (NAGF), Table 1 eq. (26):
    $L = t^3(\tfrac12\|\dot w\|^2 - L(w))$, with equation of motion
    $\ddot w + \tfrac3t\dot w + \nabla L(w) = 0$.

    The Lagrangian is defined for $t > 0$ only: `lnn.simulate` raises `ValueError` for
    `t0 <= 0`, and a traced time `t <= 0` raises at run time.

    **Arguments:**

    - `loss`: `loss(q) -> scalar`.

    **Returns:** the Lagrangian, a `Conformal` with $s = 3\log t$, so $e^s = t^3$.
    """
    check_loss(loss)
    return Nesterov(
        _PositiveTime(_three_log_t, "nesterov"),
        KineticMinusPotential(loss),
        _PositiveTime(_three_over_t, "nesterov"),
    )


def damped(loss: Loss, kappa: RealScalarLike) -> Conformal:
    r"""Damped (heavy-ball) dynamics with mass $\kappa$:
    $L = e^{t/\kappa}(\tfrac\kappa2\|\dot w\|^2 - L(w))$, equation of motion
    $\kappa\ddot w + \dot w + \nabla L(w) = 0$.

    Gradient flow is its massless limit $\kappa \to 0$ (Section 3). The exponential is
    cancelled analytically (`lnn.Conformal`), so $t/\kappa$ up to $10^7$ does not
    overflow. For small $\kappa$ the system is stiff: pass an implicit diffrax solver
    (e.g. `diffrax.Kvaerno5()`) to `lnn.simulate`. Its charges $e^{t/\kappa}Q_0$
    overflow once $t/\kappa$ exceeds about 88 (float32) or 709 (float64): use
    `reduced=True` in `lnn.noether_charge` / `lnn.invariance_residual` / `lnn.energy`
    for $Q_0$, $R_0$ and $E_0 = \tfrac\kappa2\|\dot w\|^2 + L(w)$.

    **Arguments:**

    - `loss`: `loss(q) -> scalar`.
    - `kappa`: the mass, a positive scalar (may be traced, e.g. under `vmap`).

    **Raises:** `ValueError` if `kappa <= 0` (a runtime error if `kappa` is traced).
    """
    check_loss(loss)
    kappa = as_positive_scalar(kappa, "kappa")
    rate = _Linear(1 / kappa)
    return Conformal(
        rate, KineticMinusPotential(loss, mass=kappa), _Constant(1 / kappa)
    )


class _Ratio(eqx.Module):
    num: Callable
    den: Callable

    def __call__(self, t):
        return self.num(t) / self.den(t)


class _Reciprocal(eqx.Module):
    """`1/kappa2(t)`, NaN where `kappa2(t) = 0` (a `select`, no branch). The span's
    end points are checked once by `lnn.simulate` (`span_checks`)."""

    fn: Callable

    def __call__(self, t):
        value = self.fn(t)
        return jnp.where(value != 0, 1 / jnp.where(value != 0, value, 1), jnp.nan)

    def span_checks(self, t0, t1) -> list:
        bad = jnp.asarray(False)
        for t in (t0, t1):
            value = jnp.asarray(self.fn(t))
            bad = bad | ~(jnp.isfinite(value) & (value != 0))
        return [
            (
                bad,
                "`kappa2(t)` must be finite and non-zero on the time span; it is zero "
                "or not finite at `t0` or `t1`.",
            )
        ]


# Gauss–Legendre nodes for the value of the log-weight in `general` (never used by the
# equations of motion, which only need its rate).
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)


class _QuadratureLogWeight(eqx.Module):
    r"""$s(t) = \int_{t_\mathrm{ref}}^t \mathrm{rate}(\tau)\,d\tau$ by 64-point
    Gauss–Legendre quadrature (for evaluating the Lagrangian's value only)."""

    rate: Callable
    t_ref: RealScalarLike

    def __call__(self, t):
        dtype = jnp.result_type(t, float)
        nodes = jnp.asarray(_GL_NODES, dtype)
        weights = jnp.asarray(_GL_WEIGHTS, dtype)
        a = jnp.asarray(self.t_ref, dtype)
        half = 0.5 * (t - a)
        taus = a + half * (nodes + 1)
        values = jax.vmap(self.rate)(taus)
        return half * jnp.sum(weights * values)


def _as_function(value, name: str):
    if callable(value):
        return value, None
    arr = jnp.asarray(value)
    if arr.shape != ():
        raise ValueError(
            f"`{name}` must be a function of t or a scalar; got shape {arr.shape}."
        )
    return _Constant(arr), arr


def _as_time_ref(t_ref):
    arr = jnp.asarray(t_ref)
    if arr.shape != () or not (
        jnp.issubdtype(arr.dtype, jnp.floating)
        or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise ValueError(f"`t_ref` must be a real scalar time; got {t_ref!r}.")
    return t_ref


def general(
    loss: Loss,
    kappa1: Callable | RealScalarLike,
    kappa2: Callable | RealScalarLike,
    *,
    log_weight: Callable | None = None,
    t_ref: RealScalarLike | None = None,
) -> Conformal:
    r"""General dynamics $\kappa_2(t)\ddot w + \kappa_1(t)\dot w + \nabla L(w) = 0$,
    eq. (22), with the Lagrangian of eq. (23),

    $$e^{s(t)}\Big(\tfrac12\|\dot w\|^2 - \frac{L(w)}{\kappa_2(t)}\Big), \qquad
      \dot s = \kappa_1/\kappa_2 .$$

    The equations of motion only use the rate $\dot s = \kappa_1/\kappa_2$, so they are
    exact for arbitrary $\kappa_1(t), \kappa_2(t)$ with no quadrature, and so do the
    reduced charges (`reduced=True` in `lnn.noether_charge`, `lnn.invariance_residual`,
    `lnn.energy`). The *value* of the Lagrangian (and the non-reduced charges) needs
    $s(t)$ itself, which is defined only up to a constant: $s = t\,\kappa_1/\kappa_2$
    when both kappas are constants, else `log_weight` if you give it, else
    $s(t) = \int_{t_\mathrm{ref}}^t \kappa_1/\kappa_2$ by 64-point Gauss–Legendre
    quadrature, for which you must choose `t_ref` (avoiding singularities of the rate,
    e.g. `t_ref > 0` for $\kappa_1 = 3/t$).

    **Arguments:**

    - `loss`: `loss(q) -> scalar`.
    - `kappa1`, `kappa2`: functions of `t`, or constants. `kappa2` must be non-zero.
    - `log_weight`: optionally a closed form for $s(t)$.
    - `t_ref`: the time where $s = 0$, the lower limit of the quadrature for $s$.
      Required when `kappa1` or `kappa2` is a function and `log_weight` is not given;
      not used otherwise.

    **Returns:** a `Conformal` Lagrangian.

    **Raises:** `ValueError` if `kappa2` is the constant 0, or if `kappa1` or `kappa2`
    is a function and neither `log_weight` nor `t_ref` is given.
    """
    check_loss(loss)
    k1, k1_const = _as_function(kappa1, "kappa1")
    k2, k2_const = _as_function(kappa2, "kappa2")
    if k2_const is not None and not isinstance(k2_const, jax.core.Tracer):
        if float(k2_const) == 0:
            raise ValueError("`kappa2` must be non-zero; got kappa2 = 0.")
    rate = _Ratio(k1, k2)
    if log_weight is None:
        if k1_const is not None and k2_const is not None:
            log_weight = _Linear(k1_const / k2_const)
        else:
            if t_ref is None:
                raise ValueError(
                    "`t_ref` is required when `kappa1` or `kappa2` is a function of t "
                    "and no `log_weight` is given: the weight's exponent "
                    "s(t) = ∫_{t_ref}^t kappa1/kappa2 is defined only up to a constant, "
                    "so choose where s = 0, e.g. `general(loss, kappa1, kappa2, "
                    "t_ref=t0)` with t0 the start of the integration, or pass a closed "
                    "form `log_weight`."
                )
            log_weight = _QuadratureLogWeight(rate, _as_time_ref(t_ref))
    inner = KineticMinusPotential(loss, potential_scale=_Reciprocal(k2))
    return Conformal(log_weight, inner, rate)


def gradient_flow(loss: Loss) -> GradientFlow:
    r"""Gradient flow (GF), $\dot w + \nabla L(w) = 0$ (Table 1, eq. 27): the massless
    limit of `damped(loss, kappa)` as $\kappa\to 0$.

    **Arguments:**

    - `loss`: `loss(q) -> scalar`.

    **Returns:** a `GradientFlow`, to pass to `lnn.simulate` without `qdot0`.
    """
    check_loss(loss)
    return GradientFlow(loss)
