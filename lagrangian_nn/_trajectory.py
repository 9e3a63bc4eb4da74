"""The result of `lnn.simulate`."""

from collections.abc import Callable

import equinox as eqx
import jax
from jaxtyping import Array, Float, PyTree


@eqx.filter_jit
def _evaluate(fn, ts, q, qdot):
    return jax.vmap(fn)(ts, q, qdot)


class Trajectory(eqx.Module):
    r"""A solution of the equations of motion, saved at the times `ts`.

    **Fields:**

    - `ts`: the saved times, shape `(n,)`.
    - `q`: the positions, a pytree like `q0` with a leading time axis of length `n` on
      every leaf.
    - `qdot`: the velocities, same structure. For gradient flow this is
      $-\nabla L(q)$ at the saved times.
    """

    ts: Float[Array, " n"]
    q: PyTree[Array]
    qdot: PyTree[Array]

    def evaluate(self, fn: Callable) -> PyTree[Array]:
        r"""Maps `fn(t, q, qdot)` over the saved times.

        **Arguments:**

        - `fn`: e.g. a Noether charge `lnn.noether_charge(L, gen)` or `lnn.energy(L)`.

        **Returns:** `fn`'s output with a leading time axis.
        """
        return _evaluate(fn, self.ts, self.q, self.qdot)

    def __getitem__(self, index) -> "Trajectory":
        """Selects saved times, e.g. `traj[-1]` or `traj[::10]`."""
        take = lambda x: x[index]
        return Trajectory(
            take(self.ts), jax.tree.map(take, self.q), jax.tree.map(take, self.qdot)
        )

    def __len__(self) -> int:
        return self.ts.shape[0]
