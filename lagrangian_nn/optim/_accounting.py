r"""Exact conservation laws of the *discrete* optimisers.

**GD.** A quadratic charge $C(w) = \langle w, A w\rangle$ conserved by gradient flow
because $\langle A w, \nabla L(w)\rangle = 0$ (every rescaling charge of Tables 2 and
3, with $A$ diagonal) changes under one GD step $w' = w - \eta g$ by exactly
$\eta^2\langle g, Ag\rangle$. That law, and those of SGD with momentum and weight
decay, are `lnn.optim.charge_law`'s (`sgd_chain(lr)` takes the steps of `gd(lr)`).

**ND, eq. (21).** Eq. (21) is the discrete Euler–Lagrange equation of
$L_d(a, b) = \|b - a\|^2/(2\eta) - L(a)$ (Störmer–Verlet). For a symmetry that is an
isometry of parameter space, $\xi(w) = Aw$ with $A^\top = -A$ (rotations of the inputs,
eq. 44), the discrete Noether theorem gives the exactly conserved charge
$\langle (w_{k+1} - w_k)/h, \xi(w_{k+1})\rangle$ with $h = \sqrt\eta$
(`newtonian_charge`); for input rotations this is the matrix
$(W_k^\top W_{k+1} - W_{k+1}^\top W_k)/h$.
"""

import warnings

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
