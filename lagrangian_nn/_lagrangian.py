"""Lagrangian objects: the abstract base class and `Conformal`."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ._custom_types import Lagrangian, RealScalarLike


class AbstractLagrangian(eqx.Module):
    """Base class for Lagrangians provided by the library.

    Any callable `L(t, q, qdot) -> scalar` is a Lagrangian for `lagrangian_nn`; this base
    class only adds an optional hook, `check_time_span`, that `lnn.simulate` calls with
    the (concrete) integration interval so that a Lagrangian defined only for some times
    (for example `t**3 * ...`, which needs `t > 0`) can reject a bad interval early.
    """

    @abc.abstractmethod
    def __call__(self, t, q, qdot):
        raise NotImplementedError

    def check_time_span(self, t0, t1) -> None:
        """Raises `ValueError` if the Lagrangian is not defined on `[t0, t1]`."""
        del t0, t1


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

    def check_time_span(self, t0, t1) -> None:
        for fn in (self.inner, self.log_weight):
            if isinstance(fn, AbstractLagrangian):
                fn.check_time_span(t0, t1)


def as_positive_scalar(value: RealScalarLike, name: str):
    """Validates a strictly positive scalar hyperparameter such as a mass `kappa`.

    Concrete values are checked eagerly (`ValueError`); traced values (under `jit` or
    `vmap`) are checked at run time with `eqx.error_if`.
    """
    arr = jnp.asarray(value)
    if arr.shape != ():
        raise ValueError(
            f"`{name}` must be a scalar; got an array of shape {arr.shape}."
        )
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(float)
    if isinstance(arr, jax.core.Tracer):
        return eqx.error_if(arr, arr <= 0, f"`{name}` must be > 0.")
    concrete = float(arr)
    if not concrete > 0:
        raise ValueError(f"`{name}` must be > 0; got {name} = {concrete!r}.")
    return arr
