import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    charged_particle,
    harmonic_oscillator,
    rel_err,
    tree_allclose,
    without_diagonal_reading,
)
from hypothesis import given, settings, strategies as st

import lagrangian_nn as lnn


@pytest.fixture(params=["dense", "diagonal", "runtime"])
def threshold(request, monkeypatch):
    """The three solve paths, as `dense_threshold`: dense Cholesky (16); matrix-free
    (0), where a mass matrix read as diagonal from the jaxpr is divided out; and
    matrix-free with that reading switched off, so the run-time f/M00 test and CG
    are exercised on the same problems."""
    if request.param == "runtime":
        without_diagonal_reading(monkeypatch)
    return 16 if request.param == "dense" else 0


def test_harmonic_oscillator_acceleration(threshold):
    L, _ = harmonic_oscillator(omega=1.3, m=0.7)
    q = jnp.array([0.3, -1.2, 2.0])
    v = jnp.array([1.0, 0.5, -0.1])
    a = lnn.euler_lagrange(L, dense_threshold=threshold)(0.4, q, v)
    assert rel_err(a, -(1.3**2) * q) < 1e-13


def test_magnetic_field_mixed_term(threshold):
    """The velocity-dependent potential exercises ∂²L/∂q̇∂q: m a = e v × B."""
    L, _, _ = charged_particle(charge=1.5, field=0.8, m=1.2)
    q = jnp.array([0.4, -0.3])
    v = jnp.array([0.7, 1.1])
    a = lnn.euler_lagrange(L, dense_threshold=threshold)(0.0, q, v)
    expected = 1.5 * 0.8 / 1.2 * jnp.array([v[1], -v[0]])
    assert rel_err(a, expected) < 1e-13


def test_explicit_time_dependence(threshold):
    """L = e^{γt}(½m v² − ½k q²) has a time-dependent mass: the ∂²L/∂q̇∂t term gives
    the damping q̈ = −γ q̇ − (k/m) q."""
    gamma, m, k = 0.37, 1.7, 2.3
    L = lambda t, q, v: (
        jnp.exp(gamma * t) * (0.5 * m * jnp.sum(v**2) - 0.5 * k * jnp.sum(q**2))
    )
    q = jnp.array([0.4, -0.3])
    v = jnp.array([0.7, 1.1])
    a = lnn.euler_lagrange(L, dense_threshold=threshold)(1.9, q, v)
    assert rel_err(a, -gamma * v - k / m * q) < 1e-13


def test_pytree_positions(threshold):
    """Dicts and lists of arrays, with a coupling between leaves."""

    def L(t, q, v):
        kinetic = 0.5 * (
            jnp.sum(v["a"] ** 2) + 2.0 * sum(jnp.sum(x**2) for x in v["b"])
        )
        potential = jnp.sum(q["a"] ** 2) + jnp.sum(q["b"][0] * q["b"][1])
        return kinetic - potential

    q = {
        "a": jnp.array([1.0, -2.0]),
        "b": [jnp.ones((2, 2)), jnp.arange(4.0).reshape(2, 2)],
    }
    v = jax.tree.map(jnp.zeros_like, q)
    a = lnn.euler_lagrange(L, dense_threshold=threshold)(0.0, q, v)
    expected = {"a": -2.0 * q["a"], "b": [-q["b"][1] / 2.0, -q["b"][0] / 2.0]}
    assert tree_allclose(a, expected, rtol=1e-13, atol=1e-13)


def test_conformal_cancels_the_weight():
    """Conformal(s, L0) gives the same equations as exp(s(t)) L0 written plainly, and
    does not overflow where the plain form does."""
    gamma = 0.5
    inner = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.25 * jnp.sum(q**4)
    conformal = lnn.Conformal(lambda t: gamma * t, inner)
    plain = lambda t, q, v: jnp.exp(gamma * t) * inner(t, q, v)
    q = jnp.array([0.4, -0.3, 1.2])
    v = jnp.array([0.7, 1.1, -0.5])
    a1 = lnn.euler_lagrange(conformal)(2.0, q, v)
    a2 = lnn.euler_lagrange(plain)(2.0, q, v)
    assert rel_err(a1, a2) < 1e-13
    a_big = lnn.euler_lagrange(conformal)(1e4, q, v)  # e^{5000} overflows float64
    assert rel_err(a_big, -gamma * v - q**3) < 1e-14


def test_dense_and_iterative_agree_on_non_identity_mass():
    A = jnp.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    L = lambda t, q, v: (
        0.5 * v @ A @ v + 0.1 * jnp.sum(q * v) * jnp.sin(t) - jnp.sum(jnp.cosh(q))
    )
    q = jnp.array([0.4, -0.3, 1.2])
    v = jnp.array([0.7, 1.1, -0.5])
    a_dense = lnn.euler_lagrange(L)(0.3, q, v)
    a_cg = lnn.euler_lagrange(L, dense_threshold=0)(0.3, q, v)
    assert rel_err(a_cg, a_dense) < 1e-11
    # and both solve M a = f for the force computed by hand
    f = -0.1 * q * jnp.cos(0.3) - jnp.sinh(q)
    assert rel_err(A @ a_dense, f) < 1e-13


@pytest.mark.parametrize(
    "diag, force",
    [
        ([2.0, 2.0, 5.0], [1.0, -1.0, 0.0]),  # M00 = eigenvalue of f: x = f/M00 exact
        ([2.0, 2.0, 5.0], [1.0, -1.0, 3.0]),  # M00 right for part of f only
        ([2.0, 5.0, 5.0], [0.0, 1.0, -2.0]),  # f an eigenvector, but not for M00
        ([3.0, 3.0, 3.0], [0.0, 0.0, 0.0]),  # no force
    ],
)
def test_scalar_mass_shortcut_is_only_taken_when_it_solves(diag, force, monkeypatch):
    """Without the static reading of a diagonal M, the matrix-free path first tries
    a = f / M00; it must fall back to CG whenever that is not the solution."""
    without_diagonal_reading(monkeypatch)
    d, f = jnp.array(diag), jnp.array(force)
    L = lambda t, q, v: 0.5 * jnp.sum(d * v**2) + jnp.sum(f * q)
    q, v = jnp.array([0.1, 0.2, 0.3]), jnp.array([1.0, -1.0, 0.5])
    a = lnn.euler_lagrange(L, dense_threshold=0)(0.0, q, v)
    assert float(jnp.max(jnp.abs(a - f / d))) < 1e-13


def test_float32(threshold):
    L, _ = harmonic_oscillator(omega=1.3, m=0.7)
    q = jnp.array([0.3, -1.2, 2.0], jnp.float32)
    v = jnp.array([1.0, 0.5, -0.1], jnp.float32)
    a = lnn.euler_lagrange(L, dense_threshold=threshold)(0.4, q, v)
    assert a.dtype == jnp.float32
    assert rel_err(a, -(1.3**2) * q) < 1e-5


# --- Property-based: random quadratic Lagrangians. ------------------------------------


@eqx.filter_jit
def _quadratic_case(M, B, K, q, v, threshold):
    # L = ½ vᵀMv + vᵀBq − ½ qᵀKq  ⇒  M a = (Bᵀ − B) v − K q
    L = lambda t, q, v: 0.5 * v @ M @ v + v @ B @ q - 0.5 * q @ K @ q
    a = lnn.euler_lagrange(L, dense_threshold=threshold)(0.0, q, v)
    expected = jnp.linalg.solve(M, (B.T - B) @ v - K @ q)
    return a, expected


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.sampled_from([2, 5]),
    threshold=st.sampled_from([0, 16]),
)
def test_random_quadratic_lagrangians(seed, n, threshold):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    M = A @ A.T + n * np.eye(n)  # positive definite, condition number moderate
    B = rng.normal(size=(n, n))
    K = rng.normal(size=(n, n))
    K = K + K.T
    q, v = rng.normal(size=n), rng.normal(size=n)
    a, expected = _quadratic_case(M, B, K, q, v, threshold)
    assert rel_err(a, expected) < 1e-9


def test_no_recompilation_of_accel():
    L, _ = harmonic_oscillator()
    accel = eqx.filter_jit(
        eqx.debug.assert_max_traces(lnn.euler_lagrange(L), max_traces=1)
    )
    for x in (1.0, 2.0, 3.0):
        accel(jnp.asarray(x), jnp.array([x, 1.0]), jnp.array([0.0, x]))


@pytest.mark.parametrize("scalar_mass", [True, False], ids=["scalar-M", "full-M"])
def test_derivatives_through_the_solve(threshold, scalar_mass):
    """Reverse- and forward-mode derivatives of the acceleration with respect to a
    parameter of `L` and to the state, and `vmap` over states, against the closed form
    of L = ½ vᵀAv − ½ k qᵀq + k vᵀBq (A = 2I, taking the f/M00 shortcut, or a full
    SPD A, taking CG): a = A⁻¹((Bᵀ − B)v·k − k q)."""
    A = (
        2.0 * jnp.eye(3)
        if scalar_mass
        else jnp.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    )
    B = jnp.array([[0.0, 0.5, -0.2], [0.1, 0.0, 0.4], [0.3, -0.6, 0.0]])
    S = B.T - B

    def accel(k, q, v):
        L = lambda t, q, v: 0.5 * v @ A @ v - 0.5 * k * q @ q + k * v @ B @ q
        return lnn.euler_lagrange(L, dense_threshold=threshold)(0.0, q, v)

    exact = lambda k, q, v: jnp.linalg.solve(A, k * (S @ v - q))
    k, q, v = 1.7, jnp.array([0.4, -0.3, 1.2]), jnp.array([0.7, 1.1, -0.5])
    w = jnp.array([1.0, -2.0, 0.5])  # a fixed linear functional of a
    scalar = lambda f: lambda k, q: w @ f(k, q, v)
    for argnums in (0, 1):
        got = jax.grad(scalar(accel), argnums)(k, q)
        assert rel_err(got, jax.grad(scalar(exact), argnums)(k, q)) < 1e-10
    tangent = jax.jvp(lambda q: accel(k, q, v), (q,), (w,))[1]
    assert rel_err(tangent, jnp.linalg.solve(A, -k * w)) < 1e-10
    qs = jnp.stack([q, 2 * q, -q])
    batched = jax.vmap(lambda q: accel(k, q, v))(qs)
    assert rel_err(batched, jax.vmap(lambda q: exact(k, q, v))(qs)) < 1e-10


def test_lists_of_numbers_are_read_as_arrays():
    L, _ = harmonic_oscillator(omega=1.3, m=0.7)
    accel = lnn.euler_lagrange(L)
    a = accel(0.0, [[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]])
    assert a.shape == (2, 2) and a.dtype == jnp.result_type(float)
    assert rel_err(a, -(1.3**2) * jnp.array([[1.0, 2.0], [3.0, 4.0]])) < 1e-14
