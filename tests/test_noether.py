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


# --- Conformal Lagrangians L = e^{s(t)} L0: reduced charges and their balance ----------

JZ = jnp.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
RADIAL = lambda q: 0.25 * (jnp.sum(q**2) - 1.0) ** 2
TILTED = lambda q: RADIAL(q) + 0.3 * q[0]  # not invariant under rotations about z
ROT3 = lnn.Generator(lambda t, q: JZ.astype(q.dtype) @ q)
TIME_SHIFT = lnn.Generator(
    lambda t, q: jnp.zeros_like(q), lambda t, q: jnp.ones_like(t)
)
DTYPES = [jnp.float32, jnp.float64]


def _eps(dtype):
    return float(jnp.finfo(dtype).eps)


def _state(dtype):
    q = jnp.array([0.6, -0.5, 0.4], dtype)
    v = jnp.array([0.3, 0.8, -0.2], dtype)
    return q, v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kappa", [1e-6, 1e-3])
def test_reduced_charges_finite_at_extreme_weight(dtype, kappa):
    """damped(loss, κ) at t/κ = 1e7, where e^{t/κ} overflows any dtype: the reduced
    charge, its balance rate and the reduced energy are finite and equal their closed
    forms Q0 = κ⟨v, Jq⟩, R0 = −⟨∇loss, Jq⟩ − ⟨v, Jq⟩, E0 = κ|v|²/2 + loss,
    R0[time shift] = |v|² = −dE0/dt."""
    kappa = jnp.asarray(kappa, dtype)
    t = jnp.asarray(1e7, dtype) * kappa
    q, v = _state(dtype)
    L = lnn.dynamics.damped(TILTED, kappa)
    Q0 = lnn.noether_charge(L, ROT3, reduced=True)(t, q, v)
    R0 = lnn.invariance_residual(L, ROT3, reduced=True)(t, q, v)
    E0 = lnn.energy(L, reduced=True)(t, q, v)
    Rt = lnn.invariance_residual(L, TIME_SHIFT, reduced=True)(t, q, v)
    for x in (Q0, R0, E0, Rt):
        assert x.dtype == dtype and bool(jnp.isfinite(x))
    q64, v64, k64 = (np.asarray(x, np.float64) for x in (q, v, kappa))
    Jq = np.asarray(JZ) @ q64
    grad = np.asarray(jax.grad(TILTED)(jnp.asarray(q64)))
    expected = {
        "Q0": (Q0, k64 * v64 @ Jq),
        "R0": (R0, -grad @ Jq - v64 @ Jq),
        "E0": (E0, 0.5 * k64 * v64 @ v64 + float(TILTED(jnp.asarray(q64)))),
        "Rt": (Rt, v64 @ v64),
    }
    for name, (got, want) in expected.items():
        # a few roundings of O(1) terms; R0 contains ṡ·κ = (1/κ)·κ
        assert abs(float(got) - want) < 16 * _eps(dtype) * (1 + abs(want)), name


@pytest.mark.parametrize("dtype", DTYPES)
def test_full_charge_is_weight_times_reduced(dtype):
    """Q = e^s Q0, E = e^s E0, R = e^s (R0 + ṡ Q0), also where e^s alone overflows the
    dtype but the charge does not (s = 89 in float32, 709.9 in float64)."""
    q, v = _state(dtype)
    kappa = jnp.asarray(0.01, dtype)
    big = 89.0 if dtype == jnp.float32 else 709.9
    assert big > np.log(np.finfo(dtype).max)  # e^s alone overflows the dtype
    gen = lnn.Generator(lambda t, q: JZ.astype(q.dtype) @ q, lambda t, q: 1 + 0 * t)
    L = lnn.dynamics.damped(TILTED, kappa)
    for s_target in (3.0, big):
        t = jnp.asarray(s_target, dtype) * kappa
        s = np.longdouble(np.asarray(L.log_weight(t)))  # the s the library sees
        rate = float(L.rate(t))
        Q0 = lnn.noether_charge(L, gen, reduced=True)(t, q, v)
        R0 = lnn.invariance_residual(L, gen, reduced=True)(t, q, v)
        E0 = lnn.energy(L, reduced=True)(t, q, v)
        pairs = [
            (lnn.noether_charge(L, gen)(t, q, v), np.longdouble(Q0)),
            (lnn.energy(L)(t, q, v), np.longdouble(E0)),
        ]
        if s_target < 10:  # R0 + ṡQ0 cancels, so test R only where e^s is small
            R = lnn.invariance_residual(L, gen)(t, q, v)
            pairs.append((R, np.longdouble(R0) + rate * np.longdouble(Q0)))
        for got, reduced in pairs:
            assert got.dtype == dtype and bool(jnp.isfinite(got))
            want = np.exp(s) * reduced
            assert np.isfinite(want) and abs(want) > 1e30 or s_target < 10
            assert abs(np.longdouble(got) / want - 1) < 16 * _eps(dtype)


def test_full_charges_unchanged_for_moderate_weight():
    """For moderate s the reduced route gives the same Q, R, E as autodiff of the whole
    Lagrangian e^s L0 (the contract of the non-reduced functions), with τ ≠ 0."""
    L = lnn.dynamics.general(
        TILTED, lambda t: 0.5 + t, lambda t: 2.0 + jnp.sin(t), t_ref=0.2
    )
    plain = lambda t, q, v: L(t, q, v)  # not a Conformal: no reduction
    gen = lnn.Generator(lambda t, q: JZ @ q + t * q, lambda t, q: t + q[0] ** 2)
    q, v = _state(jnp.float64)
    t = jnp.asarray(1.3)
    for make in (
        lambda L: lnn.noether_charge(L, gen),
        lambda L: lnn.invariance_residual(L, gen),
        lnn.energy,
    ):
        got, want = make(L)(t, q, v), make(plain)(t, q, v)
        assert abs(float(got - want)) < 1e-13 * abs(float(want))


@pytest.mark.parametrize("case", ["general", "nesterov"])
def test_reduced_rate_is_time_derivative_along_flow(case):
    """R0 = dQ0/dt and −R0[time shift] = dE0/dt along the Euler–Lagrange flow (total
    derivative by autodiff through the acceleration), for a generator with τ ≠ 0 and an
    explicitly time-dependent L0."""
    if case == "general":
        L = lnn.dynamics.general(
            TILTED, lambda t: 0.5 + t, lambda t: 2.0 + jnp.sin(t), t_ref=0.0
        )
    else:
        L = lnn.dynamics.nesterov(TILTED)
    gen = lnn.Generator(lambda t, q: JZ @ q + t * q, lambda t, q: t + q[0] ** 2)
    q, v = _state(jnp.float64)
    t = jnp.asarray(1.3)
    Q0 = lnn.noether_charge(L, gen, reduced=True)
    R0 = lnn.invariance_residual(L, gen, reduced=True)
    dQ0 = _total_derivative(Q0, L, t, q, v)
    assert abs(float(dQ0 - R0(t, q, v))) < 1e-13 * (1 + abs(float(dQ0)))
    E0 = lnn.energy(L, reduced=True)
    dE0 = _total_derivative(E0, L, t, q, v)
    Rt = lnn.invariance_residual(L, TIME_SHIFT, reduced=True)(t, q, v)
    assert abs(float(dE0 + Rt)) < 1e-13 * (1 + abs(float(dE0)))
    # negative control: the balance of the *unreduced* rate, e^{-s}R, misses by ṡQ0
    R = lnn.invariance_residual(L, gen)(t, q, v) * jnp.exp(-L.log_weight(t))
    assert abs(float(dQ0 - R)) > 1e-3 * (1 + abs(float(dQ0)))


def _cumulative_simpson(values, h):
    """∫ from the first sample to every even-indexed sample (Simpson's rule)."""
    values = np.asarray(values, np.float64)
    pieces = h / 3 * (values[:-2:2] + 4 * values[1:-1:2] + values[2::2])
    return np.concatenate([[0.0], np.cumsum(pieces)])


class _TiltedLoss(eqx.Module):
    """RADIAL(q) + c q[0]: rotation-invariant about z iff c = 0 (c traced, so both
    cases share one compiled solve)."""

    c: jax.Array

    def __call__(self, q):
        return RADIAL(q) + self.c * q[0]


class _ReducedQuantities(eqx.Module):
    """(Q0, R0, rate of L0 alone (ṡ dropped), E0, R0[time shift], |v|²) at a state (a
    Module, so that one compiled evaluation serves every loss of the same form)."""

    L: lnn.Conformal

    def __call__(self, t, q, v):
        L = self.L
        return (
            lnn.noether_charge(L, ROT3, reduced=True)(t, q, v),
            lnn.invariance_residual(L, ROT3, reduced=True)(t, q, v),
            lnn.invariance_residual(L.inner, ROT3)(t, q, v),
            lnn.energy(L, reduced=True)(t, q, v),
            lnn.invariance_residual(L, TIME_SHIFT, reduced=True)(t, q, v),
            v @ v,
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_reduced_balance_along_damped_trajectory(dtype):
    """Along κẅ + ẇ + ∇loss = 0 (κ = 0.1, t/κ up to 20):
    - radial loss, rotation (a symmetry, R = 0): Q0(t) = Q0(t0) e^{−(t−t0)/κ};
    - tilted loss (broken): Q0(t) − Q0(t0) = ∫ R0 dt;
    - energy: E0(t) − E0(t0) = −∫|ẇ|² dt = −∫ R0[time shift] dt.
    Negative control: dropping ṡ (the rate of L0 alone) misses by orders of magnitude."""
    kappa, n = 0.1, 2001
    ts = jnp.linspace(0.0, 2.0, n, dtype=dtype)
    h = 2.0 / (n - 1)
    q0, v0 = _state(dtype)
    f64 = dtype == jnp.float64
    solve = dict(rtol=1e-11, atol=1e-12) if f64 else dict(rtol=1e-6, atol=1e-8)
    tol = 1e-8 if f64 else 3e-4  # solver tolerance, not quadrature (h⁴/κ⁴ ~ 1e-8)
    for c in (0.0, 0.3):
        L = lnn.dynamics.damped(_TiltedLoss(jnp.asarray(c, dtype)), kappa)
        traj = lnn.simulate(L, q0, v0, t0=0.0, t1=2.0, ts=ts, **solve)
        Q0, R0, no_rate, E0, Rt, speed2 = (
            np.asarray(x, np.float64) for x in traj.evaluate(_ReducedQuantities(L))
        )
        scale = np.max(np.abs(Q0))
        assert abs(Q0[0]) > 0.05
        if c == 0.0:  # a symmetry: exponential decay, and R0 = −ṡ Q0
            closed = Q0[0] * np.exp(-np.asarray(ts, np.float64) / kappa)
            assert np.max(np.abs(Q0 - closed)) < tol * scale
        balance = np.abs((Q0 - Q0[0])[::2] - _cumulative_simpson(R0, h))
        assert np.max(balance) < tol * scale
        control = np.abs((Q0 - Q0[0])[::2] - _cumulative_simpson(no_rate, h))
        assert np.max(control) > 1e3 * tol * scale
        scale = np.max(np.abs(E0))
        for rate in (speed2, Rt):
            balance = np.abs((E0 - E0[0])[::2] + _cumulative_simpson(rate, h))
            assert np.max(balance) < tol * scale
        assert abs(E0[-1] - E0[0]) > 0.1 * scale  # the energy really does change


def test_reduced_charge_decays_at_tiny_kappa():
    """κ = 1e-6 from t0 = 10 (t/κ = 1e7), implicit solver: the rotation charge of a
    radial loss decays exactly as Q0(t0) e^{−(t−t0)/κ} over ten relaxation times."""
    import diffrax

    kappa, t0 = 1e-6, 10.0
    ts = t0 + kappa * jnp.linspace(0.0, 10.0, 41)
    q0, v0 = _state(jnp.float64)
    L = lnn.dynamics.damped(RADIAL, kappa)
    traj = lnn.simulate(
        L,
        q0,
        v0,
        t0=t0,
        t1=float(ts[-1]),
        ts=ts,
        solver=diffrax.Kvaerno5(),
        rtol=1e-10,
        atol=1e-14,
    )
    Q0 = np.asarray(traj.evaluate(lnn.noether_charge(L, ROT3, reduced=True)))
    closed = Q0[0] * np.exp(-np.asarray(ts - t0) / kappa)
    assert abs(Q0[0]) > 1e-7
    assert np.max(np.abs(Q0 - closed)) < 1e-7 * abs(Q0[0])
    E0 = traj.evaluate(lnn.energy(L, reduced=True))
    assert bool(jnp.all(jnp.isfinite(E0)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_overflowing_charge_raises_naming_reduced(dtype):
    kappa = jnp.asarray(1e-6, dtype)
    t = jnp.asarray(10.0, dtype)
    q, v = _state(dtype)
    L = lnn.dynamics.damped(TILTED, kappa)
    name = jnp.dtype(dtype).name
    for fn, symbol in (
        (lnn.noether_charge(L, ROT3), "Q"),
        (lnn.invariance_residual(L, ROT3), "R"),
        (lnn.energy(L), "E"),
    ):
        with pytest.raises(
            eqx.EquinoxRuntimeError, match=rf"{symbol} = e\^\{{s\(t\)\}}"
        ) as info:
            fn(t, q, v)
        assert f"overflows {name}" in str(info.value)
        assert "`reduced=True`" in str(info.value)


def test_non_finite_charge_raises():
    q, v = jnp.zeros(2), jnp.array([0.3, 1.1])  # Kepler at the origin: 1/|q| = inf
    with pytest.raises(eqx.EquinoxRuntimeError, match="energy E is not finite"):
        lnn.energy(kepler())(0.0, q, v)
    q3, v3 = _state(jnp.float64)
    L = lnn.dynamics.damped(TILTED, 0.5)
    nan_q = q3.at[0].set(jnp.nan)
    with pytest.raises(eqx.EquinoxRuntimeError, match="charge Q0 is not finite"):
        lnn.noether_charge(L, ROT3, reduced=True)(1.0, nan_q, v3)
    with pytest.raises(eqx.EquinoxRuntimeError, match="Q = e.*is not finite"):
        lnn.noether_charge(L, ROT3)(1.0, nan_q, v3)


def test_reduced_of_plain_lagrangian_is_unchanged():
    """`reduced=True` takes s = 0 for a Lagrangian that is not a `Conformal`."""
    L = kepler()
    q, v = jnp.array([0.7, -0.4]), jnp.array([0.3, 1.1])
    assert float(lnn.energy(L, reduced=True)(0.0, q, v)) == float(
        lnn.energy(L)(0.0, q, v)
    )
    Q = lnn.noether_charge(L, ROT2, reduced=True)(0.0, q, v)
    assert float(Q) == float(lnn.noether_charge(L, ROT2)(0.0, q, v))


def test_reduced_must_be_bool():
    with pytest.raises(ValueError, match="`reduced` must be True or False; got 'yes'"):
        lnn.energy(kepler(), reduced="yes")


# --- input errors -----------------------------------------------------------------------


def test_generator_xi_must_be_callable():
    A = jnp.eye(3)
    with pytest.raises(
        ValueError,
        match=r"`xi` must be a callable xi\(t, q\).*got an array of shape \(3, 3\)\. "
        r"For a linear field q ↦ Aq pass `lambda t, q: A @ q`",
    ):
        lnn.Generator(A)
    with pytest.raises(ValueError, match="`xi` must be a callable.*got None"):
        lnn.Generator(None)


def test_generator_tau_must_be_callable_or_none():
    with pytest.raises(
        ValueError,
        match=r"`tau` must be None \(meaning τ = 0\) or a callable tau\(t, q\).*got "
        r"float 1\.0\. For a constant τ = c pass `lambda t, q: c`",
    ):
        lnn.Generator(lambda t, q: q, 1.0)


class _Linear(eqx.Module):
    A: jax.Array

    def __call__(self, t, q):
        return self.A @ q


def test_generator_check_survives_transformations():
    """The construction check runs in `__init__` only: vmapping construction,
    jit/vmap over Generators and partition/combine still work."""
    As = jnp.stack([JZ, 2 * JZ])
    gens = eqx.filter_vmap(lambda A: lnn.Generator(_Linear(A)))(As)
    assert gens.xi.A.shape == (2, 3, 3)
    q = jnp.array([1.0, 2.0, 3.0])
    xs = eqx.filter_vmap(lambda g: g.xi(0.0, q))(gens)
    assert np.allclose(xs, np.stack([JZ @ q, 2 * JZ @ q]))
    r = eqx.filter_jit(lambda g, q: lnn.symmetry_residual(TILTED, g)(q))(ROT3, q)
    assert abs(float(r) - 0.3 * float((JZ @ q)[0])) < 1e-12
    dynamic, static = eqx.partition(lnn.Generator(_Linear(JZ)), eqx.is_array)
    assert eqx.combine(dynamic, static).xi.A is dynamic.xi.A


def test_charges_of_gradient_flow_name_the_alternatives():
    gf = lnn.dynamics.gradient_flow(RADIAL)
    makers = {
        "noether_charge": lambda: lnn.noether_charge(gf, ROT3),
        "invariance_residual": lambda: lnn.invariance_residual(gf, ROT3),
        "energy": lambda: lnn.energy(gf),
    }
    for name, make in makers.items():
        with pytest.raises(ValueError, match=rf"`lnn\.{name}` needs a Lagrangian") as e:
            make()
        message = str(e.value)
        assert "first-order system with no Lagrangian" in message
        assert "`lnn.dynamics.damped(loss, kappa)`" in message
        assert "`lnn.symmetry_residual(loss, gen)`" in message


@pytest.mark.parametrize("dtype", DTYPES)
def test_nested_conformal_is_one_summed_weight(dtype):
    """`Conformal(a, Conformal(b, L0))` is e^{a+b}L0: every module peels all the
    layers, so its force, reduced charge, residual and energy equal those of the single
    `Conformal(a + b, L0)`, at a weight e^{a+b} with a + b = 1e4 that no dtype holds
    (forming the inner weight e^{b} alone would overflow)."""
    kappa = 1e-3
    loss = lambda w: 0.25 * jnp.sum(w**4) + 0.5 * jnp.sum(w**2)
    a = lambda t: 0.3 * t / kappa
    b = lambda t: 0.7 * t / kappa
    t = jnp.asarray(10.0, dtype)
    q, v = jnp.array([1.0, -0.5], dtype), jnp.array([0.2, 0.3], dtype)
    eps = float(jnp.finfo(dtype).eps)
    for L0 in (
        lambda t, w, u: 0.5 * jnp.sum(u**2) - loss(w),  # the solve reads the mass
        lnn.dynamics.newtonian(loss),  # the mass is declared
    ):
        nested = lnn.Conformal(a, lnn.Conformal(b, L0))
        single = lnn.Conformal(lambda t: a(t) + b(t), L0)
        acc = lnn.euler_lagrange(nested)(t, q, v)
        ref = lnn.euler_lagrange(single)(t, q, v)
        assert bool(jnp.all(jnp.isfinite(acc)))
        # the damping term ṡ q̇ = 1000 q̇ dominates; rounding is relative to it
        assert float(jnp.max(jnp.abs(acc - ref))) <= 8 * eps * 1e3
        for make in (
            lambda L: lnn.noether_charge(L, ROT2, reduced=True),
            lambda L: lnn.invariance_residual(L, ROT2, reduced=True),
            lambda L: lnn.energy(L, reduced=True),
        ):
            x, y = float(make(nested)(t, q, v)), float(make(single)(t, q, v))
            assert np.isfinite(x) and abs(x - y) <= 8 * eps * max(1.0, abs(y))
    # the layers' rates add: the force differs from one layer's alone by b's rate
    one = lnn.euler_lagrange(lnn.Conformal(a, L0))(t, q, v)
    assert float(jnp.max(jnp.abs(one - ref))) > 100
