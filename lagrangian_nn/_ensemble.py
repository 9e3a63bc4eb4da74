"""Many trajectories as one compiled program (`vmap` over a batch)."""

import equinox as eqx

from ._simulate import simulate
from ._trajectory import Trajectory


def simulate_ensemble(
    system,
    q0,
    qdot0=None,
    *,
    batch_system: bool = True,
    batch_q0: bool = True,
    batch_qdot0: bool = True,
    **kwargs,
) -> Trajectory:
    r"""Runs `lnn.simulate` for a whole batch at once, as one `vmap`-ed program.

    The batch runs along the leading axis of the arrays in `system` (for example a
    Lagrangian built with a vector of hyperparameters, `dynamics.damped(loss, kappas)`
    under `eqx.filter_vmap`, or an `eqx.Module` whose array fields carry a batch axis),
    and/or of `q0` and `qdot0` (many initial conditions). Each member keeps its own
    adaptive step sizes; the program is compiled once for the whole batch.

    **Arguments:**

    - `system`, `q0`, `qdot0`: as for `lnn.simulate`, with a leading batch axis on every
      array leaf of the ones that are batched.
    - `batch_system`, `batch_q0`, `batch_qdot0`: which of them carry the batch axis.
    - `**kwargs`: passed to `lnn.simulate` (`t0`, `t1`, `ts`, `solver`, tolerances...).
      `progress` is not supported inside a batch.

    **Returns:** an `lnn.Trajectory` whose leaves have a leading batch axis, then time.

    **Example:**

    ```python
    kappas = jnp.array([1e-1, 1e-2, 1e-3])
    systems = eqx.filter_vmap(lambda k: lnn.dynamics.damped(loss, k))(kappas)
    traj = lnn.simulate_ensemble(systems, w0, v0, batch_q0=False, batch_qdot0=False,
                                 t0=0.0, t1=3.0, solver=diffrax.Kvaerno5())
    ```
    """
    if kwargs.get("progress", False):
        raise ValueError("`progress=True` is not supported by `simulate_ensemble`.")
    batched = eqx.if_array(0)
    axes = (
        batched if batch_system else None,
        batched if batch_q0 else None,
        (batched if batch_qdot0 else None) if qdot0 is not None else None,
    )

    def one(s, q, v):
        return simulate(s, q, v, **kwargs)

    return eqx.filter_vmap(one, in_axes=axes)(system, q0, qdot0)
