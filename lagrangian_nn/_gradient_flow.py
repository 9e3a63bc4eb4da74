"""Gradient flow, the first-order system that `lnn.simulate` integrates besides
Lagrangians (Table 1's massless limit). It lives below `dynamics` so that `_simulate`
and `_noether` need not import the Table-1 builders."""

import equinox as eqx
import jax
import jax.numpy as jnp

from ._custom_types import Loss


class GradientFlow(eqx.Module):
    r"""Gradient flow $\dot w = -\nabla L(w)$, Table 1 eq. (27).

    Not a Lagrangian system: `lnn.simulate` integrates it as a first-order ODE (pass no
    `qdot0`). Calling it returns the velocity `-∇loss(q)`.
    """

    loss: Loss

    def __call__(self, t, q):
        del t
        return jax.tree_util.tree_map(jnp.negative, jax.grad(self.loss)(q))
