"""Each bad input gets its own clear error that names the argument (DESIGN.md)."""

import diffrax
import equinox as eqx
import jax.numpy as jnp
import pytest

import lagrangian_nn as lnn
from lagrangian_nn import dynamics

RuntimeErr = eqx.EquinoxRuntimeError
LOSS = lambda q: jnp.sum(q**2)
Q = jnp.array([1.0, 2.0])
V = jnp.array([0.5, -0.5])


# The matrix-free path raises its checks outside compiled code when called eagerly
# and inside its CG branch when traced; both must name the mass matrix.
EAGER_OR_JIT = [
    pytest.param(lambda f: f, id="eager"),
    pytest.param(eqx.filter_jit, id="jit"),
]


@pytest.mark.parametrize("wrap", EAGER_OR_JIT)
@pytest.mark.parametrize("threshold", [16, 0], ids=["dense", "iterative"])
def test_no_kinetic_term_names_the_mass_matrix(threshold, wrap):
    L = lambda t, q, v: -jnp.sum(q**2)
    with pytest.raises(RuntimeErr, match="mass matrix"):
        wrap(lnn.euler_lagrange(L, dense_threshold=threshold))(0.0, Q, V)


@pytest.mark.parametrize("wrap", EAGER_OR_JIT)
def test_indefinite_mass_names_the_mass_matrix(wrap):
    L = lambda t, q, v: 0.5 * (v[0] ** 2 - v[1] ** 2) - 0.5 * jnp.sum(q**2)
    with pytest.raises(RuntimeErr, match="mass matrix"):
        wrap(lnn.euler_lagrange(L))(0.0, Q, V)
    # The matrix-free path cannot certify definiteness in general, but it catches
    # negative curvature along the solution (here ⟨a, M a⟩ < 0).
    with pytest.raises(RuntimeErr, match="mass matrix"):
        wrap(lnn.euler_lagrange(L, dense_threshold=0))(0.0, Q, V)


@pytest.mark.parametrize("wrap", EAGER_OR_JIT)
def test_negative_definite_mass_is_rejected_with_hint(wrap):
    L = lambda t, q, v: -0.5 * jnp.sum(v**2) + 0.5 * jnp.sum(q**2)
    with pytest.raises(RuntimeErr, match="-L"):
        wrap(lnn.euler_lagrange(L))(0.0, Q, V)
    with pytest.raises(RuntimeErr, match="-L"):
        wrap(lnn.euler_lagrange(L, dense_threshold=0))(0.0, Q, V)


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
    # a traced time t ≤ 0 is caught at run time
    with pytest.raises(RuntimeErr, match="t > 0"):
        eqx.filter_jit(lnn.euler_lagrange(L))(jnp.asarray(0.0), Q, V)


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
    L = dynamics.general(LOSS, 1.0, lambda t: t - 1.0)
    with pytest.raises(RuntimeErr, match="kappa2"):
        lnn.euler_lagrange(L)(1.0, Q, V)


def test_step_limit_surfaces_diffrax_message():
    L = dynamics.newtonian(LOSS)
    with pytest.raises(RuntimeErr, match="maximum number of solver steps"):
        lnn.simulate(L, Q, V, t0=0.0, t1=100.0, max_steps=5)


def test_non_finite_state_is_an_error_not_nan():
    # potential −q⁴ sends the particle to infinity in finite time
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) + jnp.sum(q**4)
    with pytest.raises(RuntimeErr, match="non-finite"):
        lnn.simulate(
            L,
            Q,
            V,
            t0=0.0,
            t1=10.0,
            dt0=0.05,
            stepsize_controller=diffrax.ConstantStepSize(),
        )
    # with the adaptive controller the solve cannot get past the blow-up
    with pytest.raises(RuntimeErr, match="maximum number of solver steps|non-finite"):
        lnn.simulate(L, Q, V, t0=0.0, t1=10.0, max_steps=2000)


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
