import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    charged_particle,
    damped_oscillator,
    harmonic_oscillator,
    kepler,
    rel_err,
)

import lagrangian_nn as lnn

TIGHT = dict(rtol=1e-11, atol=1e-12, max_steps=200_000)


def test_free_particle():
    L = lambda t, q, v: 0.5 * 3.0 * jnp.sum(v**2)
    q0, v0 = jnp.array([1.0, -2.0, 0.5]), jnp.array([0.3, 0.0, -1.5])
    ts = jnp.linspace(0.0, 10.0, 11)
    traj = lnn.simulate(L, q0, v0, t0=0.0, t1=10.0, ts=ts, **TIGHT)
    assert rel_err(traj.q, q0 + ts[:, None] * v0) < 1e-12
    assert rel_err(traj.qdot, jnp.broadcast_to(v0, (11, 3))) < 1e-12


def test_harmonic_oscillator_closed_form():
    L, exact = harmonic_oscillator(omega=1.3, m=0.7)
    q0, v0 = jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0])
    ts = jnp.linspace(0.0, 20.0, 50)
    traj = lnn.simulate(L, q0, v0, t0=0.0, t1=20.0, ts=ts, **TIGHT)
    assert rel_err(traj.q, exact(ts[:, None], q0, v0)) < 1e-9


@pytest.mark.parametrize("form", ["conformal", "plain"])
def test_damped_oscillator(form):
    gamma, omega = 0.3, 2.0
    inner = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.5 * omega**2 * jnp.sum(q**2)
    if form == "conformal":
        L = lnn.Conformal(lambda t: gamma * t, inner)
    else:
        L = lambda t, q, v: jnp.exp(gamma * t) * inner(t, q, v)
    exact = damped_oscillator(gamma, omega)
    q0, v0 = jnp.array([1.0]), jnp.array([-0.5])
    ts = jnp.linspace(0.0, 15.0, 40)
    traj = lnn.simulate(L, q0, v0, t0=0.0, t1=15.0, ts=ts, **TIGHT)
    err = jnp.max(jnp.abs(traj.q[:, 0] - exact(ts, 1.0, -0.5)))
    assert err < 1e-9


def test_charged_particle_circle():
    L, exact, _ = charged_particle()
    q0, v0 = jnp.array([0.2, -0.1]), jnp.array([0.7, 0.4])
    ts = jnp.linspace(0.0, 30.0, 60)
    traj = lnn.simulate(L, q0, v0, t0=0.0, t1=30.0, ts=ts, **TIGHT)
    assert rel_err(traj.q, exact(ts, q0, v0)) < 1e-9


def test_driven_oscillator_explicit_time():
    """q̈ + ω²q = F cos(Ωt) from L = ½v² − ½ω²q² + F cos(Ωt) q."""
    w, W, F = 1.5, 0.7, 0.9
    L = lambda t, q, v: (
        0.5 * jnp.sum(v**2)
        - 0.5 * w**2 * jnp.sum(q**2)
        + F * jnp.cos(W * t) * jnp.sum(q)
    )
    ts = jnp.linspace(0.0, 20.0, 30)
    traj = lnn.simulate(
        L, jnp.array([0.0]), jnp.array([0.0]), t0=0.0, t1=20.0, ts=ts, **TIGHT
    )
    exact = F / (w**2 - W**2) * (jnp.cos(W * ts) - jnp.cos(w * ts))
    assert jnp.max(jnp.abs(traj.q[:, 0] - exact)) < 1e-9


def test_pytree_state_simulation():
    L = lambda t, q, v: (
        0.5 * sum(jnp.sum(x**2) for x in jax.tree.leaves(v))
        - 0.5 * sum(jnp.sum(x**2) for x in jax.tree.leaves(q))
    )
    q0 = {"w": [jnp.ones((2, 3)), jnp.arange(3.0)], "b": jnp.array(0.5)}
    v0 = jax.tree.map(jnp.zeros_like, q0)
    ts = jnp.linspace(0.0, 3.0, 7)
    traj = lnn.simulate(L, q0, v0, t0=0.0, t1=3.0, ts=ts, **TIGHT)
    assert traj.q["w"][0].shape == (7, 2, 3)
    expected = jax.tree.map(
        lambda x: jnp.cos(ts).reshape((-1,) + (1,) * x.ndim) * x, q0
    )
    assert rel_err(traj.q, expected) < 1e-9


def test_kepler_long_run_conservation():
    """Energy and angular momentum of an eccentric Kepler orbit over ~30 periods."""
    L = kepler()
    q0, v0 = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.2])
    ts = jnp.linspace(0.0, 400.0, 2001)
    traj = lnn.simulate(L, q0, v0, t0=0.0, t1=400.0, ts=ts, **TIGHT)
    E = traj.evaluate(lnn.energy(L))
    rot = lnn.Generator(lambda t, q: jnp.array([-q[1], q[0]]))
    Lz = traj.evaluate(lnn.noether_charge(L, rot))
    assert float(jnp.max(jnp.abs(E - E[0])) / jnp.abs(E[0])) < 1e-8
    assert float(jnp.max(jnp.abs(Lz - Lz[0])) / jnp.abs(Lz[0])) < 1e-8
    assert abs(float(Lz[0]) - 1.2) < 1e-14


def test_two_body_momentum_conservation():
    """A pair potential is invariant under a common translation: total momentum."""

    def L(t, q, v):
        kinetic = 0.5 * jnp.sum(v["a"] ** 2) + 0.5 * 2.0 * jnp.sum(v["b"] ** 2)
        return kinetic - jnp.sum((q["a"] - q["b"]) ** 4)

    q0 = {"a": jnp.array([1.0, 0.0]), "b": jnp.array([-0.5, 0.3])}
    v0 = {"a": jnp.array([0.0, 1.0]), "b": jnp.array([0.4, -0.2])}
    traj = lnn.simulate(
        L, q0, v0, t0=0.0, t1=100.0, ts=jnp.linspace(0, 100.0, 500), **TIGHT
    )
    for direction in (jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])):
        gen = lnn.Generator(lambda t, q, d=direction: {"a": d, "b": d})
        P = traj.evaluate(lnn.noether_charge(L, gen))
        assert float(jnp.max(jnp.abs(P - P[0]))) < 1e-10
    E = traj.evaluate(lnn.energy(L))
    assert float(jnp.max(jnp.abs(E - E[0])) / jnp.abs(E[0])) < 1e-8


def test_gradient_flow_closed_form():
    """GF on a quadratic ½qᵀAq is q(t) = exp(−At) q0."""
    A = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    loss = lambda q: 0.5 * q @ A @ q
    q0 = jnp.array([1.0, -1.0])
    ts = jnp.linspace(0.0, 3.0, 10)
    traj = lnn.simulate(
        lnn.dynamics.gradient_flow(loss), q0, t0=0.0, t1=3.0, ts=ts, **TIGHT
    )
    exact = jax.vmap(lambda t: jax.scipy.linalg.expm(-A * t) @ q0)(ts)
    assert rel_err(traj.q, exact) < 1e-9
    assert rel_err(traj.qdot, -(exact @ A)) < 1e-9


def test_default_saves_endpoints_and_float32():
    L, exact = harmonic_oscillator()
    q0, v0 = jnp.array([1.0], jnp.float32), jnp.array([0.0], jnp.float32)
    traj = lnn.simulate(L, q0, v0, t0=0.0, t1=2.0, rtol=1e-6, atol=1e-7)
    assert traj.ts.shape == (2,) and traj.q.dtype == jnp.float32
    assert abs(float(traj.q[-1, 0] - exact(2.0, 1.0, 0.0))) < 1e-5


def test_implicit_solver():
    L, exact = harmonic_oscillator()
    q0, v0 = jnp.array([1.0]), jnp.array([0.0])
    traj = lnn.simulate(
        L, q0, v0, t0=0.0, t1=2.0, solver=diffrax.Kvaerno5(), rtol=1e-10, atol=1e-10
    )
    assert abs(float(traj.q[-1, 0] - exact(2.0, 1.0, 0.0))) < 1e-8


def test_convergence_order_of_fixed_step_solver():
    """With a constant step, Heun (order 2) and Bosh3 (order 3) show their orders on
    the harmonic oscillator: fit the slope of log error against log dt."""
    L, exact = harmonic_oscillator()
    q0, v0 = jnp.array([1.0]), jnp.array([0.0])
    for solver, order in ((diffrax.Heun(), 2), (diffrax.Bosh3(), 3)):
        dts = np.array([0.1, 0.05, 0.025, 0.0125])
        errs = []
        for dt in dts:
            traj = lnn.simulate(
                L,
                q0,
                v0,
                t0=0.0,
                t1=4.0,
                solver=solver,
                dt0=dt,
                stepsize_controller=diffrax.ConstantStepSize(),
            )
            errs.append(abs(float(traj.q[-1, 0] - exact(4.0, 1.0, 0.0))))
        slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
        assert abs(slope - order) < 0.15, (solver, slope)


class _Counting(eqx.Module):
    """A Lagrangian holding its data as arrays; counts how often it is traced."""

    stiffness: jax.Array
    traces: list = eqx.field(static=True)

    def __call__(self, t, q, v):
        self.traces.append(1)
        return 0.5 * jnp.sum(v**2) - 0.5 * self.stiffness * jnp.sum(q**2)


def test_simulate_compiles_once():
    traces = []
    ts = jnp.linspace(0.0, 1.0, 5)
    for k in (1.0, 2.0, 3.0):
        L = _Counting(jnp.asarray(k), traces)
        lnn.simulate(L, jnp.array([k, 1.0]), jnp.array([0.0, k]), t0=0.0, t1=1.0, ts=ts)
        if k == 1.0:
            after_first = len(traces)
    assert after_first > 0
    assert len(traces) == after_first


def test_progress_is_quiet_in_a_log(capfd):
    # stderr is captured here, so not a terminal: no bar, no carriage returns, and
    # the same result as without progress (the meter on a terminal is tested in
    # tests/test_cli.py)
    L, _ = harmonic_oscillator()
    args = (L, jnp.array([1.0]), jnp.array([0.0]))
    with_meter = lnn.simulate(*args, t0=0.0, t1=1.0, progress=True)
    err = capfd.readouterr().err
    assert err == ""
    plain = lnn.simulate(*args, t0=0.0, t1=1.0)
    assert jnp.array_equal(with_meter.q, plain.q)


def test_lists_of_numbers_are_read_as_arrays():
    L, exact = harmonic_oscillator(omega=1.3, m=0.7)
    ts = jnp.linspace(0.0, 2.0, 5)
    # ints in a list become floats too: the default floating dtype
    traj = lnn.simulate(L, [1.0, 2], (0.0, 0.5), t0=0.0, t1=2.0, ts=ts, **TIGHT)
    assert isinstance(traj.q, jax.Array)
    assert traj.q.shape == (5, 2) and traj.q.dtype == jnp.result_type(float)
    q0, v0 = jnp.array([1.0, 2.0]), jnp.array([0.0, 0.5])
    assert rel_err(traj.q, exact(ts[:, None], q0, v0)) < 1e-9
    # a tuple of arrays is a pytree of positions, not a vector
    L1 = lambda t, q, v: L(t, q[0], v[0])
    traj = lnn.simulate(L1, (q0,), (v0,), t0=0.0, t1=2.0, ts=ts, **TIGHT)
    assert isinstance(traj.q, tuple) and traj.q[0].shape == (5, 2)


def test_times_by_position_are_refused_saying_they_are_keywords(monkeypatch):
    L, _ = harmonic_oscillator()
    q0, v0 = jnp.array([1.0]), jnp.array([0.0])
    with pytest.raises(TypeError, match=r"\(0\.1, 1\.0\) look like times") as e:
        lnn.simulate(L, q0, v0, 0.1, 1.0)
    assert "t0=..., t1=..." in str(e.value) and "keyword-only" in str(e.value)
    with pytest.raises(TypeError, match="'t1'.*keyword-only"):
        lnn.simulate(L, q0, v0, t0=0.0)

    # a TypeError from inside a call that matches the signature is not rewritten
    def inner_error(*args):
        raise TypeError("from inside")

    monkeypatch.setattr(lnn._simulate, "_solve", inner_error)
    with pytest.raises(TypeError) as e:
        lnn.simulate(L, q0, v0, t0=0.0, t1=1.0)
    assert str(e.value) == "from inside"


def test_tolerances_below_the_dtype_resolution_are_refused_up_front():
    """float32 (eps = 1.2e-7) knows a state of size |y| only to eps·|y|: the
    tolerances are refused when atol + rtol·|y| is below that, for the state's own
    size, and accepted where atol covers it; float64 meets the same request."""
    L, exact = harmonic_oscillator()
    ts = jnp.linspace(0.0, 1.0, 3)
    q0, v0 = jnp.array([1.0, 0.5]), jnp.array([0.0, 0.2])
    f32 = lambda x, c=1.0: jnp.asarray(c * x, jnp.float32)
    run = lambda q, v, **kw: lnn.simulate(L, q, v, t0=0.0, t1=1.0, ts=ts, **kw)
    with pytest.raises(ValueError, match="float32.*jax_enable_x64"):
        run(f32(q0), f32(v0), rtol=1e-10, atol=1e-12)
    # atol = 1e-6 covers a state of size 1 but not one of size 1e3
    traj = run(f32(q0), f32(v0), rtol=1e-10, atol=1e-6)
    assert traj.q.dtype == jnp.float32
    assert rel_err(traj.q, exact(ts[:, None], q0, v0)) < 1e-4
    with pytest.raises(ValueError, match="size 1e\\+03"):
        run(f32(q0, 1e3), f32(v0, 1e3), rtol=1e-10, atol=1e-6)
    # float64 resolves what float32 cannot
    traj = run(q0, v0, rtol=1e-10, atol=1e-12)
    assert rel_err(traj.q, exact(ts[:, None], q0, v0)) < 1e-8
