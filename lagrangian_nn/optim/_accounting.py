r"""Exact conservation laws of the *discrete* optimisers.

**GD.** Let $C(w) = \langle w, D w\rangle$ be a quadratic quantity conserved by gradient
flow because $\langle D w, \nabla L(w)\rangle = 0$ (every rescaling quantity of Tables 2
and 3 is of this form, with $D$ diagonal). One GD step $w' = w - \eta g$ changes it by

$$C(w') - C(w) = -2\eta\langle Dw, g\rangle + \eta^2 C(g) = \eta^2 C(g)$$

*exactly*: e.g. $\eta^2(\|g_h\|^2 - p\|g_{h+1}\|^2)$ for a $p$-homogeneous layer. The
corrected quantity $C(w_k) - \sum_{j<k}\eta^2 C(g_j)$ is conserved to rounding.

**ND, eq. (21).** Eq. (21) is the discrete Euler–Lagrange equation of
$L_d(a, b) = \|b - a\|^2/(2\eta) - L(a)$ (Störmer–Verlet). For a symmetry that is an
isometry of parameter space, $\xi(w) = Aw$ with $A^\top = -A$ (rotations of the inputs,
eq. 44), the discrete Noether theorem gives the exactly conserved charge
$\langle (w_{k+1} - w_k)/h, \xi(w_{k+1})\rangle$ with $h = \sqrt\eta$
(`newtonian_charge`); for input rotations this is the matrix $(W_k^\top W_{k+1} - W_{k+1}^\top W_k)/h$.
"""

import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._noether import Generator
from .._tree import tree_dot, tree_sub
from ._run import Step


def _traced(x, name):
    """A Python number as a weakly typed 0-d array: `jit` traces it (a new value does
    not recompile) and it rounds into the dtype it multiplies, as the Python float
    did; arrays are kept as they are."""
    if isinstance(x, jax.Array | np.ndarray | np.generic):
        return x
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ValueError(f"`{name}` must be a real number or an array; got {x!r}.")
    return jnp.asarray(float(x))


class GDQuadraticAccounting(eqx.Module):
    """Tracker returning `[C(w_k), η² C(g_{k-1})]` at each GD step; see
    `gd_quadratic_accounting`. `lr_squared` is an array, traced by `lnn.optim.run`: a
    new learning rate does not recompile."""

    quantity: Callable
    lr_squared: jax.Array

    def __call__(self, step: Step):
        return jnp.stack(
            [
                jnp.asarray(self.quantity(step.q)),
                self.lr_squared * jnp.asarray(self.quantity(step.grad)),
            ]
        )


def gd_quadratic_accounting(quantity: Callable, lr) -> GDQuadraticAccounting:
    r"""A tracker for `lnn.optim.run(gd(lr), ...)` giving the exact per-step change
    of a quadratic GF-conserved quantity `quantity(w) = ⟨w, D w⟩` (for example
    `lambda m: lnn.nn.rescale_quantity(m, h)`).

    `quantity` is applied to the gradient pytree too, so it must be a quadratic form of
    its argument. Pass the tracked array to `corrected_quantity`.

    Deprecated: the same law, $Q' = Q + \eta^2\langle g, Ag\rangle$, is the plain-SGD
    case of `lnn.optim.charge_law`: use `charge_law(sgd_chain(lr), generator,
    "quadratic")` with `run(sgd_chain(lr), ...)` (the same steps as `gd(lr)`) and its
    `predict`. Kept for existing code, and for a quantity given as a (possibly
    per-neuron, vector-valued) function rather than a generator.
    """
    if not callable(quantity):
        raise ValueError(f"`quantity` must be callable; got {quantity!r}.")
    # η² in double precision for a Python float (rounded once, as before)
    if isinstance(lr, int | float) and not isinstance(lr, bool):
        lr_squared = float(lr) ** 2  # in double precision, rounded once
    else:
        lr_squared = _traced(lr, "lr") ** 2
    return GDQuadraticAccounting(quantity, _traced(lr_squared, "lr"))


def corrected_quantity(tracked, initial):
    r"""From the output of a `gd_quadratic_accounting` tracker (shape `(steps, 2, ...)`)
    and `initial` $= C(w_0)$, returns `(raw, corrected)`: $C(w_k)$ and
    $C(w_k) - \sum_{j<k}\eta^2 C(g_j)$, each with a leading entry for $k = 0$."""
    tracked = jnp.asarray(tracked)
    initial = jnp.asarray(initial, tracked.dtype)[None]
    raw = jnp.concatenate([initial, tracked[:, 0]])
    corrected = raw - jnp.concatenate(
        [jnp.zeros_like(initial), jnp.cumsum(tracked[:, 1], axis=0)]
    )
    return raw, corrected


class NewtonianCharge(eqx.Module):
    """Tracker $\\langle (w_{k+1}-w_k)/h, \\xi(w_{k+1})\\rangle$; see
    `newtonian_charge`."""

    generator: Generator
    dt: jax.Array

    def __call__(self, step: Step):
        momentum = jax.tree.map(lambda d: d / self.dt, tree_sub(step.q, step.q_prev))
        return tree_dot(momentum, self.generator.xi(step.t, step.q))


def newtonian_charge(gen: Generator, dt) -> NewtonianCharge:
    r"""A tracker for `lnn.optim.run(newtonian(eta), ...)`: the charge
    $\langle (w_{k+1}-w_k)/h, \xi(w_{k+1})\rangle$ that the steps of eq. (21) conserve
    exactly (to rounding) for a linear isometric symmetry $\xi(w) = Aw$,
    $A^\top = -A$, with `dt` $= h = \sqrt\eta$. For generators that are not isometries
    (rescalings) it is not conserved, just as the continuous ND charge of a rescaling
    is not.

    It reads the optimiser's steps; `lnn.variational.discrete_noether_charge` is
    another thing: the charge of a discrete Lagrangian along a trajectory computed by
    a variational integrator.
    """
    if not isinstance(gen, Generator):
        raise ValueError(f"`gen` must be an `lnn.Generator`; got {gen!r}.")
    return NewtonianCharge(gen, _traced(dt, "dt"))


def discrete_noether_charge(gen: Generator, dt) -> NewtonianCharge:
    """Deprecated name of `lnn.optim.newtonian_charge` (the same tracker); it warns,
    and will be removed in the next release. `lnn.variational.discrete_noether_charge`
    is a different function."""
    warnings.warn(
        "`lnn.optim.discrete_noether_charge` is deprecated: use "
        "`lnn.optim.newtonian_charge` (the same tracker). "
        "`lnn.variational.discrete_noether_charge` is a different function.",
        DeprecationWarning,
        stacklevel=2,
    )
    return newtonian_charge(gen, dt)


def discrete_rotation_matrix(step: Step, dt=1.0):
    r"""$(W_{1,k}^\top W_{1,k+1} - W_{1,k+1}^\top W_{1,k})/h$: the matrix form of the
    input-rotation charge of eq. (21) for an `lnn.nn.MLP` (or a single matrix)."""
    a = step.q_prev.weights[0] if hasattr(step.q_prev, "weights") else step.q_prev
    b = step.q.weights[0] if hasattr(step.q, "weights") else step.q
    return (a.T @ b - b.T @ a) / dt
