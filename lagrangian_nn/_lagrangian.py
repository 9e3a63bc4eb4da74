"""Lagrangian objects: the abstract base class and `Conformal`."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from ._custom_types import Lagrangian
from ._validate import is_traced


class AbstractLagrangian(eqx.Module):
    r"""Base class for Lagrangians provided by the library, and for users' own.

    Any callable `L(t, q, qdot) -> scalar` is a Lagrangian for `lagrangian_nn`; this
    base class adds optional hooks that make the equations of motion cheaper and the
    errors earlier:

    - `mass_matrix(t, q, qdot)`: the mass matrix $M = \partial^2 L/\partial\dot q^2$,
      stated instead of found. `lnn.euler_lagrange` then divides by it (scalar or
      diagonal) or solves with it (a lineax operator) with no run-time test at all.
      Plain callables get the automatic path: a diagonal read from the program, else
      a dense or matrix-free solve.
    - `span_checks(t0, t1)`: conditions on the time span under which the Lagrangian is
      defined (for example $t_0 > 0$ for $t^3(\ldots)$), as `(flag, message)` pairs.
      `lnn.simulate` checks them once, before its loop: in Python for concrete times
      (`check_time_span`, a `ValueError`), as one run-time error for traced ones.
    """

    @abc.abstractmethod
    def __call__(self, t, q, qdot):
        raise NotImplementedError

    def mass_matrix(self, t, q, qdot):
        r"""The mass matrix $M = \partial^2 L/\partial\dot q^2$, if the Lagrangian
        states it; `None` (the default) lets `lnn.euler_lagrange` find it.

        **Returns:** one of

        - a scalar $c$ (possibly depending on `t`): $M = c\,I$;
        - a pytree like `q` of coefficients, each a scalar or an array of its leaf's
          shape: $M$ diagonal;
        - a `lineax.AbstractLinearOperator` on pytrees like `q` (tag it
          `lx.positive_semidefinite_tag` to get conjugate gradients);
        - `None`.

        It must be exact: it replaces $\partial^2 L/\partial\dot q^2$ in the
        Euler–Lagrange equations. For `Conformal(s, L0)` the equations of motion use
        `L0`'s mass (the weight $e^s$ cancels).
        """
        del t, q, qdot
        return None

    def span_checks(self, t0, t1) -> list:
        """`(flag, message)` pairs, each flag a scalar boolean that is true when the
        Lagrangian is not defined on `[t0, t1]`. Default: none."""
        del t0, t1
        return []

    def check_time_span(self, t0, t1) -> None:
        """Raises `ValueError` if the Lagrangian is not defined on the concrete
        interval `[t0, t1]` (see `span_checks`); does nothing for traced times."""
        if is_traced((t0, t1)):
            return
        for flag, message in self.span_checks(jnp.asarray(t0), jnp.asarray(t1)):
            if bool(flag):
                raise ValueError(message)


def span_checks_of(fn, t0, t1) -> list:
    """The `span_checks` of `fn` if it has any (a Lagrangian, or a function of time
    such as a log-weight), else none."""
    checks = getattr(fn, "span_checks", None)
    return list(checks(t0, t1)) if callable(checks) else []


def _log_weight_rate_by_autodiff(log_weight, t):
    return jax.jacfwd(log_weight)(t)


class Conformal(AbstractLagrangian):
    r"""The Lagrangian $L(t, q, \dot q) = e^{s(t)}\, L_0(t, q, \dot q)$.

    The Euler–Lagrange equations of a conformally weighted Lagrangian do not depend on
    the size of the weight, only on its logarithmic rate $\dot s$:

    $$\dot s\,\frac{\partial L_0}{\partial \dot q}
      + \frac{d}{dt}\frac{\partial L_0}{\partial \dot q} = \frac{\partial L_0}{\partial q}.$$

    `lnn.euler_lagrange` uses this form, so weights such as $e^{t/\kappa}$ with $t/\kappa$
    up to $10^7$ never overflow. `lnn.noether_charge`, `lnn.invariance_residual` and
    `lnn.energy` work from $L_0$ and $s$ too: with `reduced=True` they return the reduced
    quantities ($Q_0 = e^{-s}Q$, its balance rate $R_0$, $E_0 = e^{-s}E$), which never
    form $e^{s}$; by default they scale by $e^{s}$ without forming it, and raise an
    error when the result overflows. (Calling the Lagrangian *itself* still multiplies
    by $e^{s(t)}$.)

    This is the form of every Table-1 Lagrangian of the paper: eq. (23) has
    $s(t) = \int^t \kappa_1/\kappa_2$.

    **Arguments:**

    - `log_weight`: $s(t)$, a function of the time.
    - `inner`: $L_0(t, q, \dot q)$, any Lagrangian.
    - `log_weight_rate`: optionally $\dot s(t)$. If omitted it is computed from
      `log_weight` by forward-mode autodiff. Supply it when $s$ has no closed form (e.g.
      when it is itself an integral): the equations of motion only ever need the rate.

    **Example:**

    ```python
    kappa = 1e-3
    L = lnn.Conformal(lambda t: t / kappa,
                      lambda t, q, v: 0.5 * kappa * jnp.sum(v**2) - loss(q))
    ```
    """

    log_weight: Callable
    inner: Lagrangian
    log_weight_rate: Callable | None = None

    def __call__(self, t, q, qdot):
        return jnp.exp(self.log_weight(t)) * self.inner(t, q, qdot)

    def rate(self, t):
        r"""The logarithmic rate $\dot s(t)$ of the weight."""
        if self.log_weight_rate is None:
            return _log_weight_rate_by_autodiff(self.log_weight, t)
        return self.log_weight_rate(t)

    def mass_matrix(self, t, q, qdot):
        r"""$e^{s(t)} M_0$ if the inner Lagrangian states its mass $M_0$, else `None`.
        (`lnn.euler_lagrange` uses $M_0$ itself, so the weight never overflows.)"""
        if not isinstance(self.inner, AbstractLagrangian):
            return None
        mass = self.inner.mass_matrix(t, q, qdot)
        if mass is None:
            return None
        weight = jnp.exp(self.log_weight(t))
        if isinstance(mass, lx.AbstractLinearOperator):
            return weight * mass
        return jax.tree_util.tree_map(lambda m: weight * m, mass)

    def span_checks(self, t0, t1) -> list:
        checks = []
        for fn in (self.inner, self.log_weight, self.log_weight_rate):
            checks += span_checks_of(fn, t0, t1)
        return checks
