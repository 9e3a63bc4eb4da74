"""`lnn.FusedTsit5`: the same method as `diffrax.Tsit5` (steps, solution, interpolant,
gradients), fifth order, in float64 and float32, batched and differentiated."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import rel_err

import lagrangian_nn as lnn

SOLVERS = [lnn.FusedTsit5(unroll_stages=False), lnn.FusedTsit5(unroll_stages=True)]
IDS = ["loop", "unrolled"]


def kepler_field(t, y, args):
    """A pytree state ({position, velocity}) with a nonlinear, time-dependent force."""
    q, v = y["q"], y["v"]
    r = jnp.linalg.norm(q)
    return {"q": v, "v": -q / r**3 - 0.05 * jnp.sin(t) * v}


Y0 = {"q": jnp.array([1.0, 0.0]), "v": jnp.array([0.0, 1.2])}


def solve(solver, t0, t1, ts=None, y0=Y0, field=kepler_field, dt0=None, **kw):
    """`field` from `y0` over [t0, t1], saved at `ts` with dense output (at `t1` when
    `ts` is None)."""
    kw.setdefault("stepsize_controller", diffrax.PIDController(rtol=1e-9, atol=1e-11))
    saveat = (
        diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts, dense=True)
    )
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver,
        t0,
        t1,
        dt0,
        y0,
        saveat=saveat,
        max_steps=100_000,
        **kw,
    )


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
@pytest.mark.parametrize("direction", [1, -1], ids=["forward", "backward"])
def test_same_steps_and_solution_as_diffrax_tsit5(solver, direction):
    t0, t1 = (0.0, 12.0) if direction == 1 else (12.0, 0.0)
    ts = jnp.linspace(t0, t1, 37)  # save times fall inside steps: the interpolant
    ours = solve(solver, t0, t1, ts)
    ref = solve(diffrax.Tsit5(), t0, t1, ts)
    for key in ("num_steps", "num_accepted_steps", "num_rejected_steps"):
        assert int(ours.stats[key]) == int(ref.stats[key]), key
    assert int(ours.stats["num_rejected_steps"]) > 0  # the controller was exercised
    assert rel_err(ours.ys, ref.ys) < 1e-11
    # dense output between save times
    t_mid = 0.5 * (ts[10] + ts[11])
    assert rel_err(ours.evaluate(t_mid), ref.evaluate(t_mid)) < 1e-11


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_fifth_order_convergence(solver):
    """A forced nonlinear pendulum with constant steps: the global error falls at least
    as dt^5 (Tsit5's sixth-order terms still show at these step sizes, as they do for
    `diffrax.Tsit5`, whose errors ours match step size by step size)."""
    field = lambda t, y, args: (y[1], -jnp.sin(y[0]) - 0.3 * jnp.cos(t) * y[0] ** 2)
    y0, t1 = (jnp.array(2.5), jnp.array(0.0)), 4.0
    exact = solve(
        diffrax.Tsit5(),
        0.0,
        t1,
        jnp.array([t1]),
        y0,
        field,
        stepsize_controller=diffrax.PIDController(rtol=1e-14, atol=1e-14),
    ).ys[0][-1]

    def final_error(solver, dt):
        # dt an array, so that the step sizes share one compilation
        constant = dict(
            dt0=jnp.asarray(dt), stepsize_controller=diffrax.ConstantStepSize()
        )
        sol = solve(solver, 0.0, t1, None, y0, field, **constant)
        return abs(float(sol.ys[0][-1] - exact))

    dts = np.array([0.2, 0.1, 0.05, 0.025])
    errors = np.array([final_error(solver, float(dt)) for dt in dts])
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert 4.8 < slope < 6.2, (slope, errors)
    reference = np.array([final_error(diffrax.Tsit5(), float(dt)) for dt in dts[:3]])
    np.testing.assert_allclose(errors[:3], reference, rtol=0, atol=1e-13)


def test_restarts_after_a_jump():
    """With `jump_ts` the first stage is recomputed after the discontinuity."""
    solver = lnn.FusedTsit5()
    field = lambda t, y, args: jnp.where(t < 3.0, -1.0, 0.5) * y
    y0 = jnp.array([1.0, 2.0])
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=1e-10, atol=1e-12), jump_ts=[3.0]
    )
    ts = jnp.array([2.0, 3.0, 5.0])
    ours = solve(solver, 0.0, 5.0, ts, y0, field, stepsize_controller=controller)
    exact = y0 * jnp.exp(jnp.where(ts < 3.0, -ts, -3.0 + 0.5 * (ts - 3.0)))[:, None]
    assert rel_err(ours.ys, exact) < 1e-9
    ref = solve(
        diffrax.Tsit5(), 0.0, 5.0, ts, y0, field, stepsize_controller=controller
    )
    assert int(ours.stats["num_steps"]) == int(ref.stats["num_steps"])


def test_gradient_and_vmap_against_closed_form():
    """y' = -k cos(t) y has y(T) = y0 exp(-k sin T), so dy(T)/dk = -sin(T) y(T)."""
    solver = lnn.FusedTsit5()
    field = lambda t, y, k: -k * jnp.cos(t) * y
    T = 2.0

    def final(k, y0):
        tight = diffrax.PIDController(rtol=1e-10, atol=1e-12)
        return solve(
            solver, 0.0, T, None, y0, field, args=k, stepsize_controller=tight
        ).ys[-1]

    k, y0 = 0.7, 1.3
    exact = y0 * np.exp(-k * np.sin(T))
    grad = jax.grad(final)(k, y0)
    assert abs(float(grad) - (-np.sin(T) * exact)) < 1e-8 * abs(exact)
    y0s = jnp.array([0.5, 1.0, -2.0])
    batched = jax.vmap(final, in_axes=(None, 0))(k, y0s)
    assert rel_err(batched, y0s * np.exp(-k * np.sin(T))) < 1e-9


def test_float32():
    solver = lnn.FusedTsit5()
    y0 = jax.tree.map(lambda x: x.astype(jnp.float32), Y0)
    ts = jnp.linspace(0.0, 6.0, 7, dtype=jnp.float32)
    controller = diffrax.PIDController(rtol=1e-5, atol=1e-7)
    t0, t1 = jnp.float32(0.0), jnp.float32(6.0)
    ours = solve(solver, t0, t1, ts, y0, stepsize_controller=controller)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(ours.ys))
    ref = solve(diffrax.Tsit5(), 0.0, 6.0, ts, Y0, stepsize_controller=controller)
    assert rel_err(ours.ys, ref.ys) < 1e-4


def test_unroll_stages_default():
    """Unrolled stages trace the vector field once per stage, looped ones once per loop
    body. The default unrolls a loop-free vector field (after an extra trace to look
    inside it), and one with a loop inside only from 65,536 numbers on."""

    def traces(size, unroll, with_loop):
        count = []

        def field(t, y, args):
            count.append(1)
            if with_loop:
                return jax.lax.fori_loop(0, 2, lambda i, z: -z, y)
            return -y

        jax.eval_shape(
            lambda y: (
                diffrax.diffeqsolve(
                    diffrax.ODETerm(field),
                    lnn.FusedTsit5(unroll_stages=unroll),
                    0.0,
                    1.0,
                    0.1,
                    y,
                    stepsize_controller=diffrax.ConstantStepSize(),
                ).ys
            ),
            jnp.ones(size),
        )
        return len(count)

    for with_loop in (False, True):
        unrolled, looped = traces(10, True, with_loop), traces(10, False, with_loop)
        assert unrolled > looped + 4  # five more copies of the field per step
        # the default adds one inspection trace per trace of the step (diffrax traces
        # the step twice), far fewer than the difference between the two structures
        default = traces(10, None, with_loop)
        expected = looped if with_loop else unrolled
        assert 0 < default - expected <= 2
    assert traces(2**16, None, True) == traces(2**16, True, True)


def test_rejects_terms_that_are_not_an_ode():
    bm = diffrax.VirtualBrownianTree(
        0.0, 1.0, tol=1e-3, shape=(), key=jax.random.key(0)
    )
    sde = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, a: -y),
        diffrax.ControlTerm(lambda t, y, a: 0.1, bm),
    )
    with pytest.raises(ValueError, match="term"):
        diffrax.diffeqsolve(sde, lnn.FusedTsit5(), 0.0, 1.0, 0.1, jnp.array(1.0))
