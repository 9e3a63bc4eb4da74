"""Many trajectories as one compiled program (`vmap` over a batch), optionally split
across devices (the batch axis sharded with `NamedSharding`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from ._lagrangian import AbstractLagrangian
from ._simulate import simulate
from ._trajectory import Trajectory
from ._validate import as_array_if_numbers, check_finite_tree, check_times


def _batch_size(tree, name: str) -> int | None:
    """The common leading-axis size of the array leaves of `tree`, checked."""
    sizes = set()
    for leaf in jtu.tree_leaves(tree):
        if eqx.is_array(leaf):
            if leaf.ndim == 0:
                raise ValueError(
                    f"`{name}` is batched, so every array in it needs a leading batch "
                    f"axis; it contains a scalar array. Pass `batch_{name}=False` if "
                    f"`{name}` is shared by the whole batch."
                )
            sizes.add(leaf.shape[0])
    if len(sizes) > 1:
        raise ValueError(
            f"The arrays in `{name}` must share one leading batch size; got leading "
            f"sizes {sorted(sizes)}."
        )
    return sizes.pop() if sizes else None


class _Member(eqx.Module):
    """`simulate` for one member of the batch; a Module so that jit caches on it."""

    kwargs: dict

    def __call__(self, system, q0, qdot0):
        return simulate(system, q0, qdot0, **self.kwargs)


@eqx.filter_jit
def _vmapped(member, axes, system, q0, qdot0):
    return eqx.filter_vmap(member, in_axes=axes)(system, q0, qdot0)


def _auto_mesh(mesh: Mesh) -> Mesh:
    """The same devices and axes, with every axis in `Auto` mode, so that the compiler
    partitions diffrax's loops itself (GSPMD) rather than asking for annotations."""
    auto = (AxisType.Auto,) * len(mesh.axis_names)
    return Mesh(mesh.devices, mesh.axis_names, axis_types=auto)


def simulate_ensemble(
    system,
    q0,
    qdot0=None,
    *,
    batch_system: bool = True,
    batch_q0: bool = True,
    batch_qdot0: bool = True,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
    **kwargs,
) -> Trajectory:
    r"""Runs `lnn.simulate` for a whole batch at once, as one `vmap`-ed program,
    optionally split across devices.

    The batch runs along the leading axis of the arrays in `system` (for example a
    Lagrangian built with a vector of hyperparameters, `dynamics.damped(loss, kappas)`
    under `eqx.filter_vmap`, or an `eqx.Module` whose array fields carry a batch axis),
    and/or of `q0` and `qdot0` (many initial conditions). Each member keeps its own
    adaptive step sizes; the program is compiled once for the whole batch, and calling
    again with new arrays of the same shapes does not recompile.

    **Arguments:**

    - `system`, `q0`, `qdot0`: as for `lnn.simulate`, with a leading batch axis on every
      array leaf of the ones that are batched.
    - `batch_system`, `batch_q0`, `batch_qdot0`: which of them carry the batch axis.
    - `mesh`: a `jax.sharding.Mesh`. If given, the batch is split along `axis_name` of
      the mesh: the batched arrays are placed with a `NamedSharding` over that axis
      (unbatched ones are replicated) and the compiler partitions the `vmap`-ed
      program, so each device integrates its share of the members; the result is
      sharded along the batch axis. The batch size must be a multiple of the axis
      size. The results equal the single-device run to rounding.
    - `axis_name`: the mesh axis to split the batch along; may be omitted when the mesh
      has a single axis.
    - `**kwargs`: passed to `lnn.simulate` (`t0`, `t1`, `ts`, `solver`, tolerances...).
      `progress` is not supported inside a batch.

    The inputs are checked as in `lnn.simulate`, before the batch is compiled:
    `ValueError` for non-finite `q0`/`qdot0`, `t1 < t0`, or `ts` out of order or
    outside `[t0, t1]`; lists of numbers are read as arrays.

    **Returns:** an `lnn.Trajectory` whose leaves have a leading batch axis, then time.

    **Example:**

    ```python
    kappas = jnp.array([1e-1, 1e-2, 1e-3, 1e-4])
    systems = eqx.filter_vmap(lambda k: lnn.dynamics.damped(loss, k))(kappas)
    traj = lnn.simulate_ensemble(systems, w0, v0, batch_q0=False, batch_qdot0=False,
                                 t0=0.0, t1=3.0, solver=diffrax.Kvaerno5())
    # the same, one member per device on a 4-device machine:
    mesh = jax.make_mesh((4,), ("batch",))
    traj = lnn.simulate_ensemble(systems, w0, v0, batch_q0=False, batch_qdot0=False,
                                 mesh=mesh, t0=0.0, t1=3.0, solver=diffrax.Kvaerno5())
    ```
    """
    if kwargs.get("progress", False):
        raise ValueError("`progress=True` is not supported by `simulate_ensemble`.")
    # The checks of `simulate` that need concrete values, while they still are.
    q0 = as_array_if_numbers(q0, "q0")
    check_finite_tree(q0, "q0")
    if qdot0 is not None:
        qdot0 = as_array_if_numbers(qdot0, "qdot0")
        check_finite_tree(qdot0, "qdot0")
    for key in ("t0", "t1"):
        if key not in kwargs:
            raise ValueError(f"`{key}` is required (a keyword argument of `simulate`).")
    ts = kwargs.get("ts")
    check_times(
        jnp.asarray(kwargs["t0"]),
        jnp.asarray(kwargs["t1"]),
        None if ts is None else jnp.asarray(ts),
    )
    flags = dict(
        system=batch_system, q0=batch_q0, qdot0=batch_qdot0 and qdot0 is not None
    )
    values = dict(system=system, q0=q0, qdot0=qdot0)
    sizes = {
        name: _batch_size(values[name], name) for name, flag in flags.items() if flag
    }
    if not sizes:
        raise ValueError(
            "Nothing is batched: `batch_system`, `batch_q0` and `batch_qdot0` are all "
            "False (or `qdot0` is None); use `lnn.simulate` for a single run."
        )
    known = {name: n for name, n in sizes.items() if n is not None}
    if len(set(known.values())) > 1:
        raise ValueError(
            f"The batched arguments disagree on the batch size: got {known}."
        )
    if not known:
        raise ValueError(
            f"The batched arguments {sorted(sizes)} hold no arrays, so there is no "
            "batch axis to map over."
        )
    batch = next(iter(known.values()))

    batched = eqx.if_array(0)
    axes = tuple(batched if flags[name] else None for name in ("system", "q0", "qdot0"))
    if isinstance(system, AbstractLagrangian):  # while t0, t1 are still concrete
        system.check_time_span(kwargs.get("t0"), kwargs.get("t1"))
    # Times as arrays, so that new values are traced data, not new programs.
    for key in ("t0", "t1", "dt0"):
        if kwargs.get(key) is not None and not eqx.is_array(kwargs[key]):
            kwargs[key] = jnp.asarray(kwargs[key])
    member = _Member(kwargs)
    if mesh is None:
        return _vmapped(member, axes, system, q0, qdot0)

    if not isinstance(mesh, Mesh):
        raise ValueError(f"`mesh` must be a jax.sharding.Mesh; got {mesh!r}.")
    if axis_name is None:
        if len(mesh.axis_names) != 1:
            raise ValueError(
                f"`axis_name` is required for a mesh with several axes; the mesh has "
                f"axes {mesh.axis_names}."
            )
        axis_name = mesh.axis_names[0]
    if axis_name not in mesh.axis_names:
        raise ValueError(
            f"`axis_name` must be one of the mesh's axes {mesh.axis_names}; got "
            f"{axis_name!r}."
        )
    n_dev = mesh.shape[axis_name]
    if batch % n_dev:
        raise ValueError(
            f"The batch size must be a multiple of the number of devices along "
            f"`mesh` axis {axis_name!r} ({n_dev}); got batch size {batch}."
        )
    auto = _auto_mesh(mesh)
    split = NamedSharding(auto, PartitionSpec(axis_name))
    copy = NamedSharding(auto, PartitionSpec())
    system, q0, qdot0 = (
        jtu.tree_map(
            lambda x, s=split if axis is not None else copy: (
                jax.device_put(x, s) if eqx.is_array(x) else x
            ),
            part,
        )
        for axis, part in zip(axes, (system, q0, qdot0), strict=True)
    )
    return _vmapped(member, axes, system, q0, qdot0)
