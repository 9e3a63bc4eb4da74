"""The static reading of a diagonal mass matrix from the jaxpr of u ↦ M u.

When it succeeds, `euler_lagrange` divides by the diagonal with no run-time test, so a
wrong reading would give wrong accelerations silently: these tests compare the
coefficients with closed forms, and check that every coupled or nonlinear kinetic term
is refused (left to the general solver) rather than misread."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from helpers import rel_err, without_diagonal_reading

import lagrangian_nn as lnn
from lagrangian_nn._conformal import split
from lagrangian_nn._mass import diagonal_mass
from lagrangian_nn._mass_solve import read_diagonal

T = jnp.asarray(1.7)
D = jnp.array([1.0, 2.5, 0.5])
Q = jnp.array([0.3, -0.2, 0.9])
V = jnp.array([0.7, 1.1, -0.4])
TREE_Q = {"a": jnp.array([[0.1, 0.2], [0.3, 0.4]]), "b": jnp.array([1.0, -1.0])}
TREE_V = {"a": jnp.array([[1.0, -0.5], [0.2, 0.8]]), "b": jnp.array([0.3, 0.6])}
LOSS = lambda w: jnp.sum(jnp.sin(w["a"]) ** 2) + jnp.sum(w["b"] ** 4)


def coefficients(L, q, v, t=T):
    inner, _ = split(L)
    return read_diagonal(inner, t, q, v)


def sq(tree):
    return sum(jnp.sum(x**2) for x in jax.tree.leaves(tree))


# (Lagrangian, q, v, exact diagonal as one array or scalar per leaf)
DIAGONAL = {
    "table-1 nesterov t^3": (
        lambda t, w, v: t**3 * (0.5 * sq(v) - LOSS(w)),
        TREE_Q,
        TREE_V,
        [T**3, T**3],
    ),
    "per-element masses": (
        lambda t, q, v: 0.5 * jnp.sum(D * v**2) - jnp.sum(jnp.cosh(q)),
        Q,
        V,
        [D],
    ),
    "a mass per leaf": (
        lambda t, w, v: 1.5 * jnp.sum(v["a"] ** 2) + 0.25 * v["b"] @ v["b"] - LOSS(w),
        TREE_Q,
        TREE_V,
        [3.0, 0.5],
    ),
    "time- and position-dependent mass": (
        lambda t, q, v: 0.5 * jnp.exp(t) * jnp.sum((1 + q**2) * v**2),
        Q,
        V,
        [jnp.exp(T) * (1 + Q**2)],
    ),
    "magnetic term, linear in v": (
        lambda t, q, v: (
            0.5 * 2.0 * v @ v + v @ jnp.array([[0, 1, 0], [-1, 0, 0], [0, 0, 0.0]]) @ q
        ),
        Q,
        V,
        [2.0],
    ),
    "conformal (Table-1 damped)": (
        lnn.dynamics.damped(lambda q: jnp.sum(q**2), 0.7),
        Q,
        V,
        None,  # positive scalar; checked against the runtime path below
    ),
    "written with sub, neg and div": (
        # M = 0.5·(3 − 1) + 2·0.5 + 1·2 = 4, through sub, div and neg of tangents
        lambda t, q, v: (
            0.25 * jnp.sum(v * (3.0 * v - v))
            + jnp.sum(v * (v / 2.0))
            + jnp.sum(v * -(-v))
        ),
        Q,
        V,
        [4.0],
    ),
    "mass through a jitted helper": (
        lambda t, q, v: jax.jit(lambda v: 0.5 * 4.0 * jnp.sum(v * v))(v),
        Q,
        V,
        [4.0],
    ),
}


@pytest.mark.parametrize("name", DIAGONAL)
def test_reads_the_diagonal(name):
    L, q, v, exact = DIAGONAL[name]
    got = coefficients(L, q, v)
    assert got is not None, f"{name}: a diagonal mass was not recognised"
    if exact is not None:
        for g, e, leaf in zip(got, exact, jax.tree.leaves(q), strict=True):
            assert jnp.shape(g) in ((), leaf.shape)
            expected = jnp.broadcast_to(jnp.asarray(e), leaf.shape)
            assert rel_err(jnp.broadcast_to(g, leaf.shape), expected) < 1e-14


@pytest.mark.parametrize("name", DIAGONAL)
def test_diagonal_and_general_solves_agree(name, monkeypatch):
    L, q, v, _ = DIAGONAL[name]
    fast = lnn.euler_lagrange(L, dense_threshold=0)(T, q, v)
    without_diagonal_reading(monkeypatch)
    general = lnn.euler_lagrange(L, dense_threshold=0)(T, q, v)
    assert rel_err(fast, general) < 1e-12


A = jnp.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
NOT_DIAGONAL = {
    "full matrix": lambda t, q, v: 0.5 * v @ A @ v,
    "coupling by indexing": lambda t, q, v: v[0] * v[1] + jnp.sum(v**2),
    "coupling by roll": lambda t, q, v: jnp.sum(v * jnp.roll(v, 1)) + jnp.sum(v**2),
    "quartic kinetic energy": lambda t, q, v: jnp.sum(v**2) ** 2,
    "coupling between leaves": lambda t, w, v: jnp.sum(v["b"] * v["a"][0]) + sq(v),
    "no kinetic term": lambda t, q, v: -jnp.sum(q**2),
    "mass only in a branch": lambda t, q, v: jax.lax.cond(
        t > 0, lambda: jnp.sum(v**2), lambda: 2 * jnp.sum(v**2)
    ),
}


@pytest.mark.parametrize("name", NOT_DIAGONAL)
def test_refuses_everything_else(name):
    L = NOT_DIAGONAL[name]
    q, v = (TREE_Q, TREE_V) if "leaves" in name else (Q, V)
    assert coefficients(L, q, v) is None


def test_under_jit_and_vmap_the_reading_is_the_same():
    L = DIAGONAL["time- and position-dependent mass"][0]
    accel = lnn.euler_lagrange(L, dense_threshold=0)
    qs = jnp.stack([Q, 2 * Q, -Q])
    batched = eqx.filter_jit(jax.vmap(accel, in_axes=(None, 0, None)))(T, qs, V)
    for i in range(3):
        assert rel_err(batched[i], accel(T, qs[i], V)) < 1e-14


def test_non_positive_diagonal_entry_is_an_error():
    for d in (jnp.array([1.0, 0.0, 2.0]), jnp.array([1.0, -1.0, 2.0])):
        L = lambda t, q, v, d=d: 0.5 * jnp.sum(d * v**2) - jnp.sum(q**2)
        assert coefficients(L, Q, V) is not None
        accel = lnn.euler_lagrange(L, dense_threshold=0)
        with pytest.raises(eqx.EquinoxRuntimeError, match="diagonal"):
            accel(T, Q, V)
        with pytest.raises(eqx.EquinoxRuntimeError, match="diagonal"):
            eqx.filter_jit(accel.certify_mass)(T, Q, V)
        # compiled, the acceleration itself runs no check: NaN, never a number
        assert jnp.all(jnp.isnan(eqx.filter_jit(accel)(T, Q, V)))


LINEAR_MAPS = {
    "zero minus a multiple": (lambda u: jnp.zeros(3) - 2.0 * u, [-2.0]),
    "a multiple plus zero": (lambda u: 2.0 * u + jnp.zeros(3), [2.0]),
    "reshapes and an elementwise factor": (
        lambda u: u.reshape(3, 1).reshape(3) * D,
        [D],
    ),
    "affine, not linear": (lambda u: 2.0 * u + 1.0, None),
    "quadratic": (lambda u: u * u, None),
    "a permutation": (lambda u: u[::-1], None),
    "a contraction": (lambda u: A @ u, None),
}


@pytest.mark.parametrize("name", LINEAR_MAPS)
def test_reader_on_hand_written_maps(name):
    """`diagonal_mass` on maps written directly, one rule of the reader each."""
    fn, exact = LINEAR_MAPS[name]
    got = diagonal_mass(jax.make_jaxpr(fn)(V), [V])
    if exact is None:
        assert got is None
    else:
        assert got is not None
        assert (
            rel_err(jnp.broadcast_to(got[0], (3,)), jnp.broadcast_to(exact[0], (3,)))
            == 0
        )


# --- Certification of M on the matrix-free path: Lanczos at the initial state. -------

from lagrangian_nn._mass import lanczos_ritz_values  # noqa: E402
from lagrangian_nn._mass_solve import mass_operator, ritz_values  # noqa: E402

RuntimeErr = eqx.EquinoxRuntimeError


def householder(n, seed):
    """A reflection H = I − 2uuᵀ (symmetric, orthogonal), applied in O(n)."""
    u = jax.random.normal(jax.random.PRNGKey(seed), (n,))
    u = u / jnp.linalg.norm(u)
    return lambda v: v - 2 * u * (u @ v)


def kinetic(eigenvalues, seed=0):
    """`½ vᵀ M v − ½|q|²` with `M = H diag(eigenvalues) H`: a non-diagonal M with a
    known spectrum, which the diagonal reader refuses (so the matrix-free path runs)."""
    lam = jnp.asarray(eigenvalues)
    H = householder(lam.size, seed)
    return lambda t, q, v: 0.5 * jnp.sum(lam * H(v) ** 2) - 0.5 * jnp.sum(q**2)


def spectrum(n, seed, low=1.0, high=2.0):
    return jax.random.uniform(jax.random.PRNGKey(seed), (n,), minval=low, maxval=high)


def test_ritz_values_lie_in_the_spectrum_and_find_its_ends():
    # A negative eigenvalue well apart from 999 others in [1, 2]: the extreme Ritz
    # values converge to the extreme eigenvalues; every Ritz value is inside.
    lam = spectrum(1000, 1).at[123].set(-0.5)
    L = kinetic(lam, seed=2)
    n = lam.size
    theta = ritz_values(mass_operator(L, T, jnp.zeros(n), jnp.ones(n)), jnp.ones(n))
    assert theta.shape == (20,)
    tol = 1e-12 * jnp.max(jnp.abs(lam))
    assert jnp.all(theta >= jnp.min(lam) - tol)
    assert jnp.all(theta <= jnp.max(lam) + tol)
    assert abs(theta[0] - (-0.5)) < 1e-10
    # The top of a dense spectrum converges slowly, but max|θ|, the scale of the
    # singularity threshold, is λ_max to within a percent after 20 steps.
    assert theta[-1] > 0.99 * jnp.max(lam)


def test_lanczos_restarts_on_an_invariant_subspace():
    # M = c·I makes the Krylov space one-dimensional after one step. The restart
    # keeps T = VᵀMV, so every Ritz value is c (a breakdown must not leave zeros).
    c = 2.5
    theta = lanczos_ritz_values(lambda v: c * v, 50, jnp.float64, 20)
    assert jnp.allclose(theta, c, rtol=1e-13)
    # a 2 × 2 block of eigenvalues ±1 and 1 elsewhere: both ends are exact
    M = jnp.eye(30).at[28:, 28:].set(jnp.array([[0.0, 1.0], [1.0, 0.0]]))
    theta = lanczos_ritz_values(lambda v: M @ v, 30, jnp.float64, 20)
    assert jnp.allclose(theta[0], -1.0, atol=1e-13)
    assert jnp.allclose(theta[1:], 1.0, atol=1e-13)


ISSUE_EXAMPLE = lambda t, q, v: (
    0.5 * jnp.sum(v[:18] ** 2) + v[18] * v[19] - 0.5 * jnp.sum(q**2)
)


# (Lagrangian, n, expected message). None of these M is diagonal.
NOT_POSITIVE_DEFINITE = {
    "the issue's example, eigenvalues ±1": (ISSUE_EXAMPLE, 20, "negative Ritz value"),
    "negative definite": (kinetic(-spectrum(24, 5)), 24, "negative Ritz value"),
    "one negative among 1000": (
        kinetic(spectrum(1000, 6).at[7].set(-0.5)),
        1000,
        "negative Ritz value",
    ),
    "singular, a zero kinetic direction": (
        kinetic(spectrum(24, 7).at[0].set(0.0)),
        24,
        "singular",
    ),
}


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name", list(NOT_POSITIVE_DEFINITE))
def test_certify_mass_refuses(name, dtype):
    L, n, message = NOT_POSITIVE_DEFINITE[name]
    q = jnp.linspace(-1.0, 1.0, n, dtype=dtype)
    v = jnp.zeros(n, dtype)
    accel = lnn.euler_lagrange(L)
    with pytest.raises(RuntimeErr, match=message):
        accel.certify_mass(0.0, q, v)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_certify_mass_accepts_positive_definite(dtype):
    # spectrum in [1, 2], and a wider one (condition number 1e3, within float32's
    # 1/(1000·eps) ≈ 8e3)
    for lam in (spectrum(40, 8), jnp.geomspace(1e-3, 1.0, 40)):
        L = kinetic(lam, seed=9)
        q, v = jnp.ones(40, dtype), jnp.zeros(40, dtype)
        out = lnn.euler_lagrange(L).certify_mass(0.0, q, v)
        assert out is v or jnp.array_equal(out, v)


def test_certify_mass_uses_cheaper_tests_on_the_dense_and_diagonal_paths(monkeypatch):
    calls = []
    monkeypatch.setattr(
        lnn._mass_solve, "ritz_values", lambda *a: calls.append(a) or None
    )
    # a diagonal read from the program: the sign of its entries
    diagonal = lambda t, q, v: 0.5 * jnp.sum((1 + q**2) * v**2)
    lnn.euler_lagrange(diagonal).certify_mass(0.0, jnp.ones(30), jnp.ones(30))
    with pytest.raises(RuntimeErr, match="diagonal entries is not positive"):
        lnn.euler_lagrange(lambda t, q, v: -diagonal(t, q, v)).certify_mass(
            0.0, jnp.ones(30), jnp.ones(30)
        )
    # n ≤ dense_threshold: the Cholesky factorisation
    with pytest.raises(RuntimeErr, match="Cholesky factorisation failed"):
        lnn.euler_lagrange(ISSUE_EXAMPLE, dense_threshold=20).certify_mass(
            0.0, jnp.ones(20), jnp.ones(20)
        )
    assert calls == []


def test_simulate_refuses_the_issue_example():
    # compiled: the traced check, raised before the solve's loop
    n = 20
    with pytest.raises(RuntimeErr, match="initial state: Lanczos"):
        lnn.simulate(
            ISSUE_EXAMPLE, jnp.linspace(0.1, 1.0, n), jnp.zeros(n), t0=0.0, t1=1.0
        )


def test_certification_runs_once_per_solve_outside_the_vector_field(monkeypatch):
    # Positive-definite, non-diagonal M = A: q̈ = −A⁻¹q, solved in closed form.
    n = 40
    lam = spectrum(n, 10)
    L = kinetic(lam, seed=11)
    traces = []

    def counting(*args):
        traces.append(1)
        return ritz_values(*args)

    monkeypatch.setattr(lnn._mass_solve, "ritz_values", counting)
    q0 = jnp.linspace(-1.0, 1.0, n)
    ts = jnp.linspace(0.0, 2.0, 5)
    traj = lnn.simulate(
        L, q0, jnp.zeros(n), t0=0.0, t1=2.0, ts=ts, rtol=1e-10, atol=1e-12
    )
    # traced once for the whole solve, although the vector field was traced and run
    # at every step
    assert len(traces) == 1
    lnn.euler_lagrange(L)(0.0, q0, jnp.zeros(n))
    assert len(traces) == 1
    # M = H diag(λ) H, so q(t) = H cos(t/√λ) H q0
    H = householder(n, 11)
    exact = jax.vmap(lambda t: H(jnp.cos(t / jnp.sqrt(lam)) * H(q0)))(ts)
    assert rel_err(traj.q, exact) < 1e-7
