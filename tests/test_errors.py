"""Each bad input gets its own clear error that names the argument (DESIGN.md)."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import lagrangian_nn as lnn
from lagrangian_nn import dynamics

RuntimeErr = eqx.EquinoxRuntimeError
LOSS = lambda q: jnp.sum(q**2)
Q = jnp.array([1.0, 2.0])
V = jnp.array([0.5, -0.5])


def _refused_everywhere(L, match, dense_threshold=16):
    """A bad mass matrix is refused by an eager call, by `certify_mass` (eager and
    compiled) and by `simulate` (which certifies once, before its loop). A compiled
    call of the acceleration itself runs no check (no conditional and no host callback
    in the hot path): it returns NaN, never a finite number."""
    accel = lnn.euler_lagrange(L, dense_threshold=dense_threshold)
    with pytest.raises(RuntimeErr, match=match):
        accel(0.0, Q, V)
    assert jnp.all(jnp.isnan(eqx.filter_jit(accel)(0.0, Q, V)))
    with pytest.raises(RuntimeErr, match=match):
        accel.certify_mass(0.0, Q, V)
    with pytest.raises(RuntimeErr, match=match):
        eqx.filter_jit(accel.certify_mass)(0.0, Q, V)
    with pytest.raises(RuntimeErr, match=match):
        lnn.simulate(L, Q, V, t0=0.0, t1=1.0)


@pytest.mark.parametrize("threshold", [16, 0], ids=["dense", "iterative"])
def test_no_kinetic_term_names_the_mass_matrix(threshold):
    L = lambda t, q, v: -jnp.sum(q**2)
    _refused_everywhere(L, "mass matrix", threshold)


# M = [[1, 2], [2, 1]], eigenvalues 3 and -1: not diagonal, so not read as such. The
# force f = (-1, 1) is M's eigenvector of eigenvalue -1, so CG meets ⟨f, Mf⟩ < 0 at
# once (the matrix-free solve cannot certify definiteness in general; it catches
# negative curvature along its Krylov space).
_INDEFINITE = jnp.array([[1.0, 2.0], [2.0, 1.0]])


@pytest.mark.parametrize("threshold", [16, 0], ids=["dense", "iterative"])
def test_indefinite_mass_names_the_mass_matrix(threshold):
    L = lambda t, q, v: 0.5 * v @ _INDEFINITE @ v - (q[0] - q[1])
    _refused_everywhere(L, "mass matrix", threshold)
    # a diagonal M read from the program, with entries of both signs
    d = jnp.array([1.0, -1.0])
    L = lambda t, q, v: 0.5 * jnp.sum(d * v**2) - 0.5 * jnp.sum(q**2)
    _refused_everywhere(L, "diagonal entries is not positive", threshold)


def test_negative_definite_mass_is_rejected_with_hint():
    L = lambda t, q, v: -0.5 * jnp.sum(v**2) + 0.5 * jnp.sum(q**2)
    _refused_everywhere(L, "-L")


def test_non_scalar_lagrangian():
    L = lambda t, q, v: 0.5 * v**2 - 0.5 * q**2
    with pytest.raises(ValueError, match="must return a scalar"):
        lnn.euler_lagrange(L)(0.0, Q, V)
    with pytest.raises(ValueError, match="must return a scalar"):
        lnn.simulate(L, Q, V, t0=0.0, t1=1.0)
    with pytest.raises(ValueError, match="must return a scalar"):
        lnn.energy(L)(0.0, Q, V)


def test_q0_qdot0_mismatch():
    L = dynamics.newtonian(LOSS)
    with pytest.raises(ValueError, match="`qdot0` must have the same shapes"):
        lnn.simulate(L, Q, jnp.zeros(3), t0=0.0, t1=1.0)
    with pytest.raises(ValueError, match="`qdot0` must have the same pytree structure"):
        lnn.simulate(L, Q, [V], t0=0.0, t1=1.0)
    with pytest.raises(ValueError, match="`qdot0` is required"):
        lnn.simulate(L, Q, t0=0.0, t1=1.0)
    with pytest.raises(ValueError, match="`qdot` must have the same"):
        lnn.euler_lagrange(L)(0.0, Q, jnp.zeros(3))


def test_non_floating_state():
    L = dynamics.newtonian(LOSS)
    with pytest.raises(ValueError, match="`q0` must be a pytree of floating arrays"):
        lnn.simulate(L, jnp.array([1, 2]), jnp.array([0, 0]), t0=0.0, t1=1.0)
    with pytest.raises(ValueError, match="`q0` must be a non-empty pytree"):
        lnn.simulate(L, [], [], t0=0.0, t1=1.0)


def test_nesterov_needs_positive_start():
    L = dynamics.nesterov(LOSS)
    for t0 in (0.0, -1.0):
        with pytest.raises(ValueError, match="t0"):
            lnn.simulate(L, Q, V, t0=t0, t1=1.0)
        # an eager call of the acceleration at t <= 0
        with pytest.raises(ValueError, match="t > 0"):
            lnn.euler_lagrange(L)(t0, Q, V)
    # a traced start t0 <= 0: one run-time error, before the solve's loop
    run = eqx.filter_jit(lambda t0: lnn.simulate(L, Q, V, t0=t0, t1=1.0).q)
    with pytest.raises(RuntimeErr, match="t > 0"):
        run(jnp.asarray(0.0))
    # the compiled acceleration runs no check; t <= 0 gives NaN, never a number
    assert jnp.all(jnp.isnan(eqx.filter_jit(lnn.euler_lagrange(L))(0.0, Q, V)))


def test_gradient_flow_given_a_velocity():
    with pytest.raises(ValueError, match="`qdot0` must be None"):
        lnn.simulate(dynamics.gradient_flow(LOSS), Q, V, t0=0.0, t1=1.0)


@pytest.mark.parametrize("kappa", [0.0, -1e-3])
def test_nonpositive_kappa(kappa):
    with pytest.raises(ValueError, match="`kappa` must be > 0"):
        dynamics.damped(LOSS, kappa)


def test_traced_nonpositive_kappa():
    f = eqx.filter_jit(
        lambda k: lnn.euler_lagrange(dynamics.damped(LOSS, k))(0.0, Q, V)
    )
    with pytest.raises(RuntimeErr, match="`kappa` must be > 0"):
        f(jnp.asarray(-1.0))


def test_general_rejects_zero_kappa2():
    with pytest.raises(ValueError, match="`kappa2` must be non-zero"):
        dynamics.general(LOSS, 1.0, 0.0)
    L = dynamics.general(LOSS, 1.0, lambda t: t - 1.0, t_ref=2.0)
    with pytest.raises(ValueError, match="kappa2"):
        lnn.euler_lagrange(L)(1.0, Q, V)
    with pytest.raises(ValueError, match="kappa2"):
        lnn.simulate(L, Q, V, t0=1.0, t1=2.0)
    run = eqx.filter_jit(lambda t0: lnn.simulate(L, Q, V, t0=t0, t1=2.0).q)
    with pytest.raises(RuntimeErr, match="kappa2"):
        run(jnp.asarray(1.0))
    assert jnp.all(jnp.isnan(eqx.filter_jit(lnn.euler_lagrange(L))(1.0, Q, V)))


def test_step_limit_surfaces_diffrax_message():
    L = dynamics.newtonian(LOSS)
    with pytest.raises(RuntimeErr, match="maximum number of solver steps"):
        lnn.simulate(L, Q, V, t0=0.0, t1=100.0, max_steps=5)


# Runs that break down on the way: `L`, `(t1, dt0, max_steps)` and two messages. With
# constant steps `dt0` the run ends in an error with the first message; the adaptive
# controller cannot get past the breakdown (at most `max_steps` steps) and its error
# has the second.
BREAKDOWNS = {
    # M = (1 - t)·I is positive at t0 = 0 (so the check before the loop passes) and
    # negative after t = 1; constant steps jump past t = 1: the acceleration there is
    # NaN, the run ends in a non-finite state, and that is an error
    "mass turns negative": (
        lambda t, q, v: 0.5 * (1.0 - t) * jnp.sum(v**2) - 0.5 * jnp.sum(q**2),
        (1.5, 0.25, 300),
        ("mass matrix became singular", "maximum number of solver steps"),
    ),
    # potential −q⁴ sends the particle to infinity in finite time
    "blow-up": (
        lambda t, q, v: 0.5 * jnp.sum(v**2) + jnp.sum(q**4),
        (10.0, 0.05, 2000),
        ("non-finite", "maximum number of solver steps|non-finite"),
    ),
}


@pytest.mark.parametrize("name", BREAKDOWNS)
def test_run_that_breaks_down_is_an_error_not_nan(name):
    L, (t1, dt0, max_steps), (constant, adaptive) = BREAKDOWNS[name]
    fixed = diffrax.ConstantStepSize()
    with pytest.raises(RuntimeErr, match=constant):
        lnn.simulate(L, Q, V, t0=0.0, t1=t1, dt0=dt0, stepsize_controller=fixed)
    with pytest.raises(RuntimeErr, match=adaptive):
        lnn.simulate(L, Q, V, t0=0.0, t1=t1, max_steps=max_steps)


def test_other_arguments():
    L = dynamics.newtonian(LOSS)
    with pytest.raises(ValueError, match="`ts` must be a non-empty 1-D"):
        lnn.simulate(L, Q, V, t0=0.0, t1=1.0, ts=jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="`dt0` is required"):
        lnn.simulate(
            L, Q, V, t0=0.0, t1=1.0, stepsize_controller=diffrax.ConstantStepSize()
        )
    with pytest.raises(ValueError, match="`max_steps`"):
        lnn.simulate(L, Q, V, t0=0.0, t1=1.0, max_steps=0)
    with pytest.raises(ValueError, match="`system`"):
        lnn.simulate("not a Lagrangian", Q, V, t0=0.0, t1=1.0)
    with pytest.raises(ValueError, match="`L` must be a callable"):
        lnn.euler_lagrange(3.0)
    with pytest.raises(ValueError, match="`loss` must be a callable"):
        dynamics.newtonian(None)


# --- Inputs checked up front, for `simulate` and `simulate_ensemble` alike. ----------

HARMONIC = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.5 * jnp.sum(q**2)


def run_single(q0, qdot0, **kwargs):
    return lnn.simulate(HARMONIC, q0, qdot0, **kwargs)


def run_batch(q0, qdot0, **kwargs):
    # a batch of two identical members
    stack = lambda x: jnp.stack([jnp.asarray(x)] * 2)
    return lnn.simulate_ensemble(
        HARMONIC,
        jax.tree.map(stack, q0),
        jax.tree.map(stack, qdot0),
        batch_system=False,
        **kwargs,
    )


BOTH = [pytest.param(run_single, id="simulate"), pytest.param(run_batch, id="ensemble")]


@pytest.mark.parametrize("run", BOTH)
def test_non_finite_initial_state(run):
    copies = 2 if run is run_batch else 1  # the batch holds two copies
    with pytest.raises(
        ValueError, match=rf"`q0` must be finite; it has {copies} NaN and 0 inf"
    ):
        run(Q.at[1].set(jnp.nan), V, t0=0.0, t1=1.0)
    # a pytree: the message names the leaf
    q, v = [Q, Q], [V, V.at[0].set(jnp.inf)]
    with pytest.raises(
        ValueError, match=rf"`qdot0\[1\]` must be finite; it has 0 NaN and {copies} inf"
    ):
        run(q, v, t0=0.0, t1=1.0)


def test_non_finite_initial_state_under_jit():
    # traced, the same check runs once, before the solve
    f = eqx.filter_jit(lambda q: lnn.simulate(HARMONIC, q, V, t0=0.0, t1=1.0))
    with pytest.raises(RuntimeErr, match="`q0` must be finite"):
        f(Q.at[0].set(jnp.nan))


@pytest.mark.parametrize("run", BOTH)
def test_backward_time_span_is_refused(run):
    with pytest.raises(
        ValueError, match=r"`t1` must be >= `t0`; got t0 = 1.0 and t1 = 0.5"
    ):
        run(Q, V, t0=1.0, t1=0.5)
    with pytest.raises(ValueError, match="`t1` must be finite; got t1 = inf"):
        run(Q, V, t0=0.0, t1=float("inf"))


def test_backward_time_span_under_jit():
    f = eqx.filter_jit(lambda t1: lnn.simulate(HARMONIC, Q, V, t0=1.0, t1=t1))
    with pytest.raises(RuntimeErr, match="backwards in time is not supported"):
        f(jnp.asarray(0.5))


@pytest.mark.parametrize("run", BOTH)
def test_save_times_out_of_order_or_range(run):
    with pytest.raises(
        ValueError, match=r"`ts` must be non-decreasing; got ts\[2\] = 0.25"
    ):
        run(Q, V, t0=0.0, t1=1.0, ts=jnp.array([0.0, 0.5, 0.25]))
    with pytest.raises(
        ValueError, match=r"`ts` must lie within \[t0, t1\] = \[0.0, 1.0\]"
    ):
        run(Q, V, t0=0.0, t1=1.0, ts=jnp.array([0.5, 2.0]))
    with pytest.raises(ValueError, match="`ts` must be finite; it has 1 NaN"):
        run(Q, V, t0=0.0, t1=1.0, ts=jnp.array([0.0, jnp.nan]))


def test_save_times_under_jit():
    f = eqx.filter_jit(lambda ts: lnn.simulate(HARMONIC, Q, V, t0=0.0, t1=1.0, ts=ts))
    with pytest.raises(RuntimeErr, match="backwards in time is not supported"):
        f(jnp.array([0.0, 0.75, 0.5]))


def test_ragged_list_of_numbers():
    with pytest.raises(
        ValueError, match="`q0` is a list of numbers but not a rectangular"
    ):
        lnn.simulate(HARMONIC, [[1.0, 2.0], [3.0]], [[0.0, 0.0], [0.0]], t0=0.0, t1=1.0)
