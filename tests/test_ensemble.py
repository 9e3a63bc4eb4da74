import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import lagrangian_nn as lnn
from lagrangian_nn import dynamics
from lagrangian_nn._ensemble import _vmapped

LOSS = lambda q: 0.25 * (jnp.sum(q**2) - 1.0) ** 2 + 0.3 * q[0]
W0, V0 = jnp.array([0.1, 0.4, -0.2]), jnp.zeros(3)
TS = jnp.linspace(0.0, 2.0, 5)


def test_kappa_sweep_equals_individual_runs():
    kappas = jnp.array([1e-1, 1e-2, 1e-3])
    systems = eqx.filter_vmap(lambda k: dynamics.damped(LOSS, k))(kappas)
    kw = dict(t0=0.0, t1=2.0, ts=TS, solver=diffrax.Kvaerno5(), rtol=1e-9, atol=1e-11)
    batch = lnn.simulate_ensemble(
        systems, W0, V0, batch_q0=False, batch_qdot0=False, **kw
    )
    assert batch.q.shape == (3, 5, 3)
    for i, k in enumerate(kappas):
        one = lnn.simulate(dynamics.damped(LOSS, float(k)), W0, V0, **kw)
        assert float(jnp.max(jnp.abs(one.q - batch.q[i]))) < 1e-12


def test_batch_of_initial_conditions_and_compile_once():
    traces = []

    class Counting(eqx.Module):
        scale: jax.Array

        def __call__(self, q):
            traces.append(1)
            return self.scale * LOSS(q)

    starts = jnp.stack([W0, 2 * W0, -W0])
    kw = dict(t0=0.0, t1=2.0, ts=TS, rtol=1e-10, atol=1e-12)
    batch = lnn.simulate_ensemble(
        dynamics.gradient_flow(Counting(jnp.asarray(1.0))),
        starts,
        batch_system=False,
        **kw,
    )
    one = lnn.simulate(dynamics.gradient_flow(LOSS), 2 * W0, **kw)
    assert float(jnp.max(jnp.abs(one.q - batch.q[1]))) < 1e-12
    n = len(traces)
    lnn.simulate_ensemble(
        dynamics.gradient_flow(Counting(jnp.asarray(2.0))),
        3 * starts,
        batch_system=False,
        **kw,
    )
    assert len(traces) == n  # new data of the same shapes: no retracing
    # A new end time reuses the whole compiled batch program, not only the inner solve.
    programs = _vmapped._cached._cache_size()
    lnn.simulate_ensemble(
        dynamics.gradient_flow(Counting(jnp.asarray(2.0))),
        starts,
        batch_system=False,
        **dict(kw, t1=2.5),
    )
    assert len(traces) == n
    assert _vmapped._cached._cache_size() == programs


def test_progress_is_refused():
    with pytest.raises(ValueError, match="progress"):
        lnn.simulate_ensemble(
            dynamics.gradient_flow(LOSS),
            jnp.stack([W0]),
            batch_system=False,
            t0=0.0,
            t1=1.0,
            progress=True,
        )


def _flow_batch(**kw):
    return lnn.simulate_ensemble(
        dynamics.gradient_flow(LOSS), t0=0.0, t1=1.0, batch_system=False, **kw
    )


def test_bad_batches_are_refused():
    with pytest.raises(ValueError, match="scalar array"):
        lnn.simulate_ensemble(
            dynamics.damped(LOSS, 0.5), W0, V0, batch_q0=False, t0=0.0, t1=1.0
        )
    with pytest.raises(ValueError, match=r"share one leading batch size.*\[2, 3\]"):
        lnn.simulate_ensemble(
            lambda t, q, v: 0.5 * jnp.sum(v[0] ** 2) - LOSS(q[0]),
            (jnp.zeros((2, 3)), jnp.zeros((3, 3))),
            (jnp.zeros((2, 3)), jnp.zeros((3, 3))),
            batch_system=False,
            t0=0.0,
            t1=1.0,
        )
    with pytest.raises(ValueError, match=r"disagree on the batch size.*'q0': 2"):
        lnn.simulate_ensemble(
            dynamics.nesterov(LOSS),
            jnp.stack([W0, W0]),
            jnp.stack([V0, V0, V0]),
            batch_system=False,
            t0=1.0,
            t1=2.0,
        )
    with pytest.raises(ValueError, match="Nothing is batched"):
        _flow_batch(q0=W0, batch_q0=False)


def test_nesterov_time_span_is_checked_for_a_batch():
    with pytest.raises(ValueError, match="t > 0"):
        lnn.simulate_ensemble(
            dynamics.nesterov(LOSS),
            jnp.stack([W0, W0]),
            jnp.stack([V0, V0]),
            batch_system=False,
            t0=0.0,
            t1=1.0,
        )


def test_bad_mesh_arguments_are_refused():
    starts = jnp.stack([W0, 2 * W0])
    with pytest.raises(ValueError, match="`mesh` must be a jax.sharding.Mesh"):
        _flow_batch(q0=starts, mesh="gpu")
    mesh = jax.make_mesh((1,), ("batch",))
    with pytest.raises(ValueError, match=r"`axis_name` must be one of .*'model'"):
        _flow_batch(q0=starts, mesh=mesh, axis_name="model")
    mesh2 = jax.make_mesh((1, 1), ("batch", "model"))
    with pytest.raises(ValueError, match="`axis_name` is required"):
        _flow_batch(q0=starts, mesh=mesh2)
    # a one-device mesh is valid and changes nothing
    ref = _flow_batch(q0=starts)
    one = _flow_batch(q0=starts, mesh=mesh2, axis_name="batch")
    assert float(jnp.max(jnp.abs(one.q - ref.q))) == 0.0


def test_lists_of_numbers_are_read_as_arrays():
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.5 * jnp.sum(q**2)
    q0 = [[1.0, 2.0], [3.0, -1.0]]  # two members
    traj = lnn.simulate_ensemble(
        L,
        q0,
        [0.0, 0.0],
        batch_system=False,
        batch_qdot0=False,
        t0=0.0,
        t1=2.0,
        ts=TS,
        rtol=1e-11,
        atol=1e-12,
    )
    assert traj.q.shape == (2, 5, 2)
    exact = jnp.cos(TS)[None, :, None] * jnp.asarray(q0)[:, None, :]
    assert float(jnp.max(jnp.abs(traj.q - exact))) < 1e-9
