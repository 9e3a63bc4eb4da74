import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import charged_particle, kepler
from hypothesis import given, settings, strategies as st

import lagrangian_nn as lnn

TIGHT = dict(rtol=1e-11, atol=1e-12, max_steps=200_000)
ROT2 = lnn.Generator(lambda t, q: jnp.array([-q[1], q[0]]))


def _total_derivative(fn, L, t, q, v):
    """dfn/dt along the Euler–Lagrange flow through (t, q, v), by autodiff."""
    a = lnn.euler_lagrange(L)(t, q, v)
    return jax.jvp(fn, (t, q, v), (jnp.ones_like(t), v, a))[1]


def test_energy_is_minus_time_translation_charge():
    L = kepler()
    q, v = jnp.array([0.7, -0.4]), jnp.array([0.3, 1.1])
    E = lnn.energy(L)(0.0, q, v)
    assert abs(float(E) - (0.5 * float(v @ v) - 1 / float(jnp.linalg.norm(q)))) < 1e-14
    time_shift = lnn.Generator(
        lambda t, q: jnp.zeros_like(q), lambda t, q: jnp.ones(())
    )
    assert abs(float(lnn.noether_charge(L, time_shift)(0.0, q, v) + E)) < 1e-14
    # from_transformation of the time shift (t, q) ↦ (t + ε, q) gives the same charge
    shift = lnn.Generator.from_transformation(lambda t, q, eps: (t + eps, q))
    assert abs(float(lnn.noether_charge(L, shift)(0.0, q, v) + E)) < 1e-14


def test_magnetic_canonical_angular_momentum():
    """In the symmetric gauge the canonical angular momentum m(q×v) + eB|q|²/2 is the
    Noether charge of rotations, including the vector-potential term."""
    L, _, Lz = charged_particle()
    q0, v0 = jnp.array([0.2, -0.1]), jnp.array([0.7, 0.4])
    Q = lnn.noether_charge(L, ROT2)
    assert abs(float(Q(0.0, q0, v0) - Lz(0.0, q0, v0))) < 1e-14
    traj = lnn.simulate(
        L, q0, v0, t0=0.0, t1=50.0, ts=jnp.linspace(0, 50, 300), **TIGHT
    )
    values = traj.evaluate(Q)
    assert float(jnp.max(jnp.abs(values - values[0]))) < 1e-10
    R = traj.evaluate(lnn.invariance_residual(L, ROT2))
    assert float(jnp.max(jnp.abs(R))) < 1e-14


def test_dilation_symmetry_mixing_time_and_space():
    """L = ½|v|² − k/|q|² is invariant (as an action) under q → λq, t → λ²t. The
    generator (τ = 2t, ξ = q) mixes time and space; its charge D = q·v − 2tE depends
    on t explicitly and is conserved, while q·v alone is not."""
    k = 0.3
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - k / jnp.sum(q**2)
    gen = lnn.Generator.from_transformation(
        lambda t, q, eps: ((1 + eps) ** 2 * t, (1 + eps) * q)
    )
    q, v, t = jnp.array([0.8, -0.5]), jnp.array([0.2, 0.9]), jnp.asarray(1.7)
    xi, tau = gen.evaluate(t, q)
    assert np.allclose(xi, q) and abs(float(tau) - 2 * 1.7) < 1e-15
    R = lnn.invariance_residual(L, gen)
    rng = np.random.default_rng(0)
    for _ in range(5):
        qq, vv, tt = rng.normal(size=2), rng.normal(size=2), rng.uniform(0, 5)
        assert abs(float(R(tt, qq, vv))) < 1e-12
    Q = lnn.noether_charge(L, gen)
    E = lnn.energy(L)
    assert abs(float(Q(t, q, v) - (q @ v - 2 * t * E(t, q, v)))) < 1e-14
    traj = lnn.simulate(
        L, q, v, t0=1.7, t1=20.0, ts=jnp.linspace(1.7, 20.0, 200), **TIGHT
    )
    D = traj.evaluate(Q)
    assert float(jnp.max(jnp.abs(D - D[0]))) < 1e-9
    # q·v alone is not conserved: the time part of the generator matters
    assert float(jnp.ptp(traj.evaluate(lambda t, q, v: q @ v))) > 1.0


def test_broken_symmetry_balance_law():
    """Rotations of an anisotropic oscillator: R = dQ/dt pointwise along the flow, equal to
    a finite-difference derivative along a trajectory, and Q(t) − Q(t0) = ∫R dt."""
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.5 * (q[0] ** 2 + 2.0 * q[1] ** 2)
    Q = lnn.noether_charge(L, ROT2)
    R = lnn.invariance_residual(L, ROT2)
    q, v = jnp.array([0.3, 0.8]), jnp.array([-0.4, 0.2])
    # R(q) = −q0·(−q1)·1 ... closed form: ⟨∂L/∂q, ξ⟩ = q0 q1 − 2 q1 q0 = −q0 q1
    assert abs(float(R(0.0, q, v) - (-(q[0] * q[1])))) < 1e-15
    assert (
        abs(float(R(0.0, q, v) - _total_derivative(Q, L, jnp.asarray(0.0), q, v)))
        < 1e-14
    )

    n = 4001
    ts = jnp.linspace(0.0, 10.0, n)
    traj = lnn.simulate(L, q, v, t0=0.0, t1=10.0, ts=ts, **TIGHT)
    Qs, Rs = traj.evaluate(Q), traj.evaluate(R)
    h = float(ts[1] - ts[0])
    dQ = (Qs[2:] - Qs[:-2]) / (2 * h)
    assert float(jnp.max(jnp.abs(dQ - Rs[1:-1]))) < 1e-5  # O(h²) = 6e-6·|Q'''|
    # cumulative Simpson integral of R
    integral = np.concatenate([[0.0], np.cumsum(h / 2 * (Rs[1:] + Rs[:-1]))])
    assert float(np.max(np.abs((Qs - Qs[0]) - integral))) < 1e-5
    simpson = (
        h / 3 * (Rs[0] + 4 * jnp.sum(Rs[1:-1:2]) + 2 * jnp.sum(Rs[2:-1:2]) + Rs[-1])
    )
    assert abs(float(Qs[-1] - Qs[0] - simpson)) < 1e-10
    assert float(jnp.ptp(Qs)) > 0.1  # the symmetry really is broken


@eqx.filter_jit
def _quadratic_generator_case(M, B, K, A, q, v):
    L = lambda t, q, v: 0.5 * v @ M @ v + v @ B @ q - 0.5 * q @ K @ q
    gen = lnn.Generator(lambda t, q: A @ q)
    R = lnn.invariance_residual(L, gen)(0.0, q, v)
    Q = lnn.noether_charge(L, gen)(0.0, q, v)
    p = M @ v + B @ q
    R_closed = (B.T @ v - K @ q) @ (A @ q) + p @ (A @ v)
    dQdt = _total_derivative(lnn.noether_charge(L, gen), L, jnp.asarray(0.0), q, v)
    return R, R_closed, Q, p @ (A @ q), dQdt


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([2, 4]))
def test_random_linear_generators(seed, n):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n))
    M = X @ X.T + n * np.eye(n)
    B, K, A = rng.normal(size=(n, n)), rng.normal(size=(n, n)), rng.normal(size=(n, n))
    K = K + K.T
    q, v = rng.normal(size=n), rng.normal(size=n)
    R, R_closed, Q, Q_closed, dQdt = _quadratic_generator_case(M, B, K, A, q, v)
    scale = 1 + abs(float(R_closed))
    assert abs(float(R - R_closed)) < 1e-10 * scale
    assert abs(float(Q - Q_closed)) < 1e-10 * (1 + abs(float(Q_closed)))
    assert abs(float(dQdt - R)) < 1e-9 * scale


def test_symmetry_residual():
    loss = lambda q: (jnp.sum(q**2) - 1.0) ** 2
    rot = lnn.Generator(lambda t, q: jnp.array([-q[1], q[0], 0.0]))
    shift = lnn.Generator(lambda t, q: jnp.array([1.0, 0.0, 0.0]))
    q = jnp.array([0.3, -0.7, 1.1])
    assert abs(float(lnn.symmetry_residual(loss, rot)(q))) < 1e-15
    expected = 4 * (q @ q - 1) * q[0]
    assert abs(float(lnn.symmetry_residual(loss, shift)(q) - expected)) < 1e-14


def test_generator_output_must_match_q():
    L = kepler()
    q, v = jnp.array([0.7, -0.4]), jnp.array([0.3, 1.1])
    bad_shape = lnn.Generator(lambda t, q: jnp.zeros(3))
    bad_tree = lnn.Generator(lambda t, q: [q])
    for gen in (bad_shape, bad_tree):
        for make in (lnn.noether_charge, lnn.invariance_residual):
            with pytest.raises(ValueError, match="xi"):
                make(L, gen)(0.0, q, v)
        with pytest.raises(ValueError, match="xi"):
            lnn.symmetry_residual(lambda q: jnp.sum(q**2), gen)(q)
    bad_tau = lnn.Generator(lambda t, q: q, lambda t, q: q)
    with pytest.raises(ValueError, match="tau"):
        lnn.noether_charge(L, bad_tau)(0.0, q, v)
    with pytest.raises(ValueError, match="gen"):
        lnn.noether_charge(L, lambda t, q: q)
    with pytest.raises(ValueError, match="pair"):
        gen = lnn.Generator.from_transformation(lambda t, q, eps: q * (1 + eps))
        lnn.noether_charge(L, gen)(0.0, q, v)
