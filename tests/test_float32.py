r"""The core checks in float32, the precision users get by default.

`tests/conftest.py` switches float64 on for the suite; every test here runs inside
`jax.enable_x64(False)`, so it sees exactly what a user's default session gives, and
asserts that every output is float32 (no silent promotion).

Tolerances, in units of float32's machine epsilon `EPS = 2⁻²³ ≈ 1.19e-7`:

- *One acceleration, dense or diagonal mass matrix:* `16·EPS` relative (max-norm).
  The force is a few floating operations per entry (at most about eight roundings
  here), and the solve is one division by a diagonal entry or a Cholesky solve of a
  well-conditioned M with n ≤ 3. Dropping any force term is an O(1) error.
- *One acceleration by conjugate gradients:* `2·1000·EPS·cond(M)`. The CG solve stops
  at `euler_lagrange`'s documented default, relative residual `rtol = 1000·EPS` plus
  `atol = rtol·max|f|`, and a residual r gives an error of at most `cond(M)·|r|`. (This
  bound is loose: in float32 one step of iterative refinement follows the CG solve, so
  the error is about `(1000·EPS·cond)²` plus the rounding floor `EPS·cond`.)
- *A trajectory against its closed form, and the drift of a conserved charge* (the
  energy, a Noether charge): `Φ·(RTOL + 16·EPS)`, relative, where `Φ = ΩT` is the
  phase the oscillator runs through and `RTOL = 1e-6` is `simulate`'s default (the
  tests use `simulate`'s defaults, `rtol=1e-6, atol=1e-8`). The controller holds each
  step's local error near `RTOL`, an oscillator's phase error adds up linearly over the
  run, and Tsit5 at this tolerance takes about `RTOL^(-1/5) ≈ 16` steps per radian,
  each rounding the state once. On the CG path the acceleration's own error
  (above) is added, `Φ·2·1000·EPS·cond(M)`. A missing force term is an O(1) error.
- *The discrete Noether charge of eq. 21 over K steps:* `√K·σ`, with
  `σ = EPS·⟨|w|, |ξ(w)|⟩/h`: each step rounds the iterate once (relative EPS), the
  charge sees that rounding through `(w_{k+1} − w_k)/h`, and K independent roundings
  add up like a random walk. The same measurement on data that is not rotation
  invariant (a broken symmetry) must exceed the bound by orders of magnitude.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    charged_particle,
    harmonic_oscillator,
    rel_err,
    without_diagonal_reading,
)

import lagrangian_nn as lnn
from lagrangian_nn import nn, optim

EPS = float(np.finfo(np.float32).eps)
RTOL = 1e-6  # `lnn.simulate`'s default
CG_RTOL = 1000 * EPS  # `lnn.euler_lagrange`'s default for conjugate gradients
ROUNDING = 16 * EPS
N = 20  # > EulerLagrange.dense_threshold = 16: the matrix-free paths


@pytest.fixture(autouse=True)
def float32_default():
    with jax.enable_x64(False):
        assert jnp.asarray(1.0).dtype == jnp.float32
        yield


def _all_float32(tree):
    return all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(tree))


def _spd(n, seed):
    """A full symmetric positive-definite matrix (float64 numpy) and its condition."""
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(n, n))
    A = np.eye(n) + 0.5 * B @ B.T / n  # eigenvalues in [1, ~3]
    return A, float(np.linalg.cond(A))


class Quartic(eqx.Module):
    """`¼‖q‖⁴ + c Σ cos q`, whose gradient is `‖q‖² q − c sin q`."""

    c: jax.Array

    def __call__(self, q):
        return 0.25 * jnp.sum(q**2) ** 2 + self.c * jnp.sum(jnp.cos(q))


class FullMassOscillator(eqx.Module):
    """`½ q̇ᵀAq̇ − ½ ω² qᵀAq` with a full SPD A: not diagonal, so CG solves
    `A q̈ = −ω² A q`, and `q̈ = −ω² q` whatever A is."""

    A: jax.Array
    omega: jax.Array

    def __call__(self, t, q, v):
        return 0.5 * v @ self.A @ v - 0.5 * self.omega**2 * q @ self.A @ q


class Isotropic(eqx.Module):
    """`½ ω² ‖q‖²`."""

    omega: jax.Array

    def __call__(self, q):
        return 0.5 * self.omega**2 * jnp.sum(q**2)


# --- One acceleration. -------------------------------------------------------------


def _acceleration_case(name):
    """`(L, dense_threshold, t, q, v, expected, bound)`: float32 inputs (built inside
    the float32 context), and the expected acceleration computed from them in float64
    numpy, so that it carries no float32 rounding of its own."""
    rng = np.random.default_rng(0)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    f64 = lambda x: np.asarray(x, np.float64)
    if name == "dense-oscillator":
        L, _ = harmonic_oscillator(omega=1.3, m=0.7)
        q, v = f32([0.3, -1.2, 2.0]), f32([1.0, 0.5, -0.1])
        return L, 16, 0.4, q, v, -(1.3**2) * f64(q), ROUNDING
    if name in ("dense-magnetic", "matrix-free-magnetic"):
        L, _, _ = charged_particle(charge=1.5, field=0.8, m=1.2)
        q, v = f32([0.4, -0.3]), f32([0.7, 1.1])
        threshold = 16 if name == "dense-magnetic" else 0
        expected = 1.5 * 0.8 / 1.2 * np.array([f64(v)[1], -f64(v)[0]])
        return L, threshold, 0.0, q, v, expected, ROUNDING
    if name in ("diagonal-nesterov", "runtime-nesterov"):
        c, t = 0.6, 1.7
        L = lnn.dynamics.nesterov(Quartic(f32(c)))
        q, v = f32(0.5 * rng.normal(size=N)), f32(rng.normal(size=N))
        q64 = f64(q)
        expected = -3 / t * f64(v) - ((q64 @ q64) * q64 - c * np.sin(q64))
        return L, 16, t, q, v, expected, ROUNDING
    if name == "conjugate-gradients":
        A, cond = _spd(N, 1)
        K, _ = _spd(N, 2)
        L = lambda t, q, v: 0.5 * v @ f32(A) @ v - 0.5 * q @ f32(K) @ q
        q, v = f32(rng.normal(size=N)), f32(rng.normal(size=N))
        expected = np.linalg.solve(f64(f32(A)), -f64(f32(K)) @ f64(q))
        # After the CG solve to rtol = CG_RTOL, one step of iterative refinement: the
        # error is (CG_RTOL·cond)² plus the rounding floor eps·cond (here with the
        # same 16 roundings' allowance as the other paths). Without the refinement
        # it is about 250 eps, above this bound.
        return L, 16, 0.0, q, v, expected, ROUNDING * cond + (CG_RTOL * cond) ** 2
    raise ValueError(name)


@pytest.mark.parametrize(
    "name",
    [
        "dense-oscillator",
        "dense-magnetic",
        "matrix-free-magnetic",
        "diagonal-nesterov",
        "runtime-nesterov",
        "conjugate-gradients",
    ],
)
def test_acceleration(name, monkeypatch):
    if name == "runtime-nesterov":
        without_diagonal_reading(monkeypatch)
    L, threshold, t, q, v, expected, bound = _acceleration_case(name)
    accel = eqx.filter_jit(lnn.euler_lagrange(L, dense_threshold=threshold))
    a = accel(t, q, v)
    assert _all_float32(a)
    assert rel_err(a, expected) < bound


# --- Trajectories, against closed forms, and their conserved charges. ----------------


def _oscillator(q0, v0, omega, ts):
    ts = ts[:, None]
    return q0 * jnp.cos(omega * ts) + v0 / omega * jnp.sin(omega * ts)


def _max_drift(values):
    return float(jnp.max(jnp.abs(values - values[0])) / jnp.max(jnp.abs(values[0])))


def test_newtonian_trajectory_and_charges():
    r"""Newtonian dynamics of an isotropic quadratic loss on N entries (the diagonal
    path): $q(t)$ in closed form, energy conserved, and the angular momentum
    $q_0\dot q_1 - q_1\dot q_0$ (the Noether charge of rotations in that plane)
    conserved."""
    rng = np.random.default_rng(1)
    q0 = jnp.asarray(rng.normal(size=N), jnp.float32)
    v0 = jnp.asarray(rng.normal(size=N), jnp.float32)
    omega, T = 1.3, 10.0
    L = lnn.dynamics.newtonian(Isotropic(jnp.asarray(omega)))
    ts = jnp.linspace(0.0, T, 21)
    traj = lnn.simulate(L, q0, v0, t0=0.0, t1=T, ts=ts)
    assert _all_float32(traj)
    bound = omega * T * (RTOL + ROUNDING)
    assert rel_err(traj.q, _oscillator(q0, v0, omega, ts)) < bound

    rotation = jnp.zeros((N, N)).at[0, 1].set(-1.0).at[1, 0].set(1.0)
    charge = lnn.noether_charge(L, lnn.Generator(lambda t, q: rotation @ q))
    energy = lnn.energy(L)
    for fn in (energy, charge):
        values = traj.evaluate(fn)
        assert _all_float32(values)
        assert _max_drift(values) < bound


@pytest.mark.parametrize(
    "tight",
    [
        False,
        True,
    ],
    ids=["documented-cg-tolerance", "as-accurate-as-the-diagonal-path"],
)
def test_conjugate_gradient_trajectory(tight):
    r"""A full (non-diagonal) mass matrix on N entries, solved by CG at every step:
    $A\ddot q = -\omega^2 A q$, so $q(t)$ is the oscillator's closed form, and the
    energy $\tfrac12\dot q^\top A\dot q + \tfrac{\omega^2}2 q^\top A q$ is conserved.
    With `tight`, the bound is the diagonal path's, without the CG error."""
    A, cond = _spd(N, 1)
    rng = np.random.default_rng(2)
    q0 = jnp.asarray(rng.normal(size=N), jnp.float32)
    v0 = jnp.asarray(rng.normal(size=N), jnp.float32)
    omega, T = 1.3, 10.0
    L = FullMassOscillator(jnp.asarray(A, jnp.float32), jnp.asarray(omega))
    ts = jnp.linspace(0.0, T, 21)
    traj = lnn.simulate(L, q0, v0, t0=0.0, t1=T, ts=ts)
    assert _all_float32(traj)
    bound = omega * T * (RTOL + ROUNDING + (0 if tight else 2 * CG_RTOL * cond))
    assert rel_err(traj.q, _oscillator(q0, v0, omega, ts)) < bound
    energy = traj.evaluate(lnn.energy(L))
    assert _all_float32(energy)
    assert _max_drift(energy) < bound


# --- The discrete Noether charge of eq. 21. -----------------------------------------


def test_newtonian_charge_of_eq21():
    """ND as the discrete scheme of eq. 21 conserves the discrete charge of input
    rotations exactly, so in float32 it drifts only by rounding; on data that are not
    rotation invariant the same charge drifts by far more."""
    x = jnp.concatenate([jnp.eye(3), -jnp.eye(3)])  # isotropic: rotations are exact
    y = jnp.ones((6, 2))
    model = nn.MLP([3, 4, 2], [nn.Identity(), nn.Identity()], key=jax.random.key(0))
    assert _all_float32(model)
    eta, steps = 1e-3, 500
    h = math.sqrt(eta)
    v0 = jax.tree.map(lambda w: 0.3 * jnp.ones_like(w), model)
    P = jnp.array([[0.0, 1.0, -0.5], [-1.0, 0.0, 0.3], [0.5, -0.3, 0.0]])
    gen = nn.rotate_inputs(model, P)
    optimiser = optim.newtonian(eta, velocity=v0)
    track = {"Q": optim.newtonian_charge(gen, h)}

    def drift(x):
        loss = nn.make_loss(x, y, kind="squared_error")
        Q = optim.run(optimiser, loss, model, steps, track=track).tracked["Q"]
        assert _all_float32(Q)
        return float(jnp.max(jnp.abs(Q - Q[0])))

    xi = gen.xi(0.0, model)
    sigma = (EPS / h) * sum(
        float(jnp.sum(jnp.abs(w) * jnp.abs(z)))
        for w, z in zip(jax.tree.leaves(model), jax.tree.leaves(xi), strict=True)
    )
    bound = math.sqrt(steps) * sigma
    assert drift(x) < bound
    # negative control: stretch the data along one axis, so that rotations are no
    # longer a symmetry of the loss
    assert drift(x * jnp.array([1.0, 1.5, 0.5])) > 100 * bound
