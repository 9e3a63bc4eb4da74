"""Sharded runs against unsharded ones, on 4 simulated CPU devices.

Run by `test_sharding.py` in a subprocess, because the number of host devices is fixed
when JAX starts (`XLA_FLAGS=--xla_force_host_platform_device_count=4`). Prints one JSON
object of measured differences; the assertions live in the test.
"""

import json
import os

assert "xla_force_host_platform_device_count=4" in os.environ.get("XLA_FLAGS", "")

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # noqa: E402

jax.config.update("jax_enable_x64", True)

import lagrangian_nn as lnn  # noqa: E402
from lagrangian_nn import dynamics, nn, optim  # noqa: E402


def maxdiff(a, b):
    return max(
        float(jnp.max(jnp.abs(x - y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def main():
    out = {"devices": len(jax.devices())}
    loss = lambda q: 0.25 * (jnp.sum(q**2) - 1.0) ** 2 + 0.3 * q[0]
    w0, v0 = jnp.array([0.1, 0.4, -0.2]), jnp.zeros(3)
    kw = dict(t0=0.0, t1=2.0, ts=jnp.linspace(0.0, 2.0, 5), rtol=1e-10, atol=1e-12)
    mesh = jax.make_mesh((4,), ("batch",))  # the default (Explicit) axis type

    # 1. eight initial conditions of gradient flow, two per device
    traces = []

    class Counting(eqx.Module):
        scale: jax.Array

        def __call__(self, q):
            traces.append(1)
            return self.scale * loss(q)

    starts = jnp.linspace(0.5, 2.0, 8)[:, None] * w0
    flow = dynamics.gradient_flow(Counting(jnp.asarray(1.0)))
    ref = lnn.simulate_ensemble(flow, starts, batch_system=False, **kw)
    sharded = lnn.simulate_ensemble(flow, starts, batch_system=False, mesh=mesh, **kw)
    out["ic_diff"] = maxdiff(ref, sharded)
    out["ic_spec"] = str(sharded.q.sharding.spec)
    out["ic_devices"] = len(sharded.q.sharding.device_set)
    n = len(traces)
    flow2 = dynamics.gradient_flow(Counting(jnp.asarray(2.0)))
    again = lnn.simulate_ensemble(
        flow2, 0.5 * starts, batch_system=False, mesh=mesh, **kw
    )
    out["ic_retraced"] = len(traces) - n
    one = lnn.simulate(
        dynamics.gradient_flow(lambda q: 2.0 * loss(q)), 0.5 * starts[5], **kw
    )
    out["ic_again_diff"] = maxdiff(one.q, again.q[5])

    # 2. a sweep over the damping kappa of eq. (16): the batch is in the system
    kappas = jnp.array([2.0, 1.0, 0.5, 0.3, 0.2, 0.15, 0.12, 0.1])
    systems = eqx.filter_vmap(lambda k: dynamics.damped(loss, k))(kappas)
    args = dict(batch_q0=False, batch_qdot0=False, **kw)
    ref = lnn.simulate_ensemble(systems, w0, v0, **args)
    sharded = lnn.simulate_ensemble(systems, w0, v0, mesh=mesh, **args)
    out["kappa_diff"] = maxdiff(ref, sharded)

    # 3. a network whose data (data parallel) or weights (model parallel) are sharded
    auto = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Auto,))
    key_x, key_y, key_m = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(key_x, (64, 8))
    y = jax.random.randint(key_y, (64,), 0, 4)
    model = nn.MLP([8, 16, 16, 4], [nn.ReLU(), nn.ReLU(), nn.Identity()], key=key_m)
    velocity = jax.tree.map(lambda w: 0.1 * jnp.ones_like(w), model)
    rows = NamedSharding(auto, P("data"))
    loss_ref = nn.make_loss(x, y)
    loss_dp = nn.make_loss(jax.device_put(x, rows), jax.device_put(y, rows))
    model_mp = jax.tree.map(
        lambda w: jax.device_put(w, rows) if w.shape[0] % 4 == 0 else w, model
    )
    out["mp_sharded_leaves"] = sum(
        len(w.sharding.device_set) == 4 for w in jax.tree.leaves(model_mp)
    )
    # A fixed step, so that the sharded and unsharded runs take the same steps and
    # can differ only by the rounding of the sharded sums. Euler: what is checked is
    # how the sharded sums are split, which every stage of every solver shares, and its
    # three programs compile in about half the time of Tsit5's.
    sim = dict(
        t0=0.5,
        t1=2.0,
        ts=jnp.linspace(0.5, 2.0, 4),
        dt0=0.01,
        stepsize_controller=diffrax.ConstantStepSize(),
        solver=diffrax.Euler(),
    )
    ref = lnn.simulate(dynamics.nesterov(loss_ref), model, velocity, **sim)
    out["dp_sim_diff"] = maxdiff(
        ref, lnn.simulate(dynamics.nesterov(loss_dp), model, velocity, **sim)
    )
    out["mp_sim_diff"] = maxdiff(
        ref, lnn.simulate(dynamics.nesterov(loss_ref), model_mp, velocity, **sim)
    )
    track = {"loss": lambda s: loss_ref(s.q)}
    ref = optim.run(optim.nesterov(0.05), loss_ref, model, 30, track=track)
    out["dp_run_diff"] = maxdiff(
        ref, optim.run(optim.nesterov(0.05), loss_dp, model, 30, track=track)
    )
    out["mp_run_diff"] = maxdiff(
        ref, optim.run(optim.nesterov(0.05), loss_ref, model_mp, 30, track=track)
    )

    # 4. a batch that does not split evenly
    try:
        lnn.simulate_ensemble(flow, starts[:6], batch_system=False, mesh=mesh, **kw)
        out["uneven_error"] = None
    except ValueError as e:
        out["uneven_error"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
