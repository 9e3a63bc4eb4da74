"""Properties of `lnn.variational` that hold for every Lagrangian, not only the tested
ones: the invariances of the mathematics, drawn by hypothesis.

Each property keeps the compiled programs fixed: scale factors, stiffnesses,
permutations and initial conditions are traced arrays (fields of an `eqx.Module`
Lagrangian), so an example costs a run, not a compilation."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lagrangian_nn as lnn

V = lnn.variational
FEW = settings(max_examples=6, deadline=None, derandomize=True)
N_STEPS, DT = 12, 0.1
ROT = jnp.array([[0.0, -1.0], [1.0, 0.0]])
# one generator object for the whole file (a new lambda would recompile the charges)
ROT_GEN = lnn.Generator(lambda t, q: ROT @ q)


class Quartic(eqx.Module):
    r"""$c\,(\tfrac12\|\dot q\|^2 - \tfrac12\|q\|^2 - \tfrac k4\|q\|^4
    + \tfrac a2 q_0^2)$: rotation-symmetric for $a = 0$, not for $a \ne 0$."""

    c: jax.Array
    k: jax.Array
    a: jax.Array

    def __call__(self, t, q, v):
        return self.c * (
            0.5 * jnp.sum(v**2)
            - 0.5 * jnp.sum(q**2)
            - 0.25 * self.k * jnp.sum(q**2) ** 2
            + 0.5 * self.a * q[0] ** 2
        )


def quartic(c=1.0, k=0.5, a=0.0, dtype=jnp.float64):
    return Quartic(*(jnp.asarray(x, dtype) for x in (c, k, a)))


def run(L, q0, v0, cls=V.Midpoint, t0=0.0, n_steps=N_STEPS):
    return V.integrate(cls(L), q0, v0, t0=t0, dt=DT, n_steps=n_steps)


def eps_of(dtype):
    return float(jnp.finfo(dtype).eps)


def bound(dtype, q, n_steps=N_STEPS):
    """Rounding of the positions, a few ulps of max|q| per step."""
    return 16 * n_steps * eps_of(dtype) * max(1.0, float(jnp.max(jnp.abs(q))))


states = st.tuples(
    st.floats(-1.0, 1.0), st.floats(-1.0, 1.0), st.floats(-1.0, 1.0), st.floats(-1, 1)
).map(lambda x: (jnp.array(x[:2]), jnp.array(x[2:])))
log_factors = st.floats(-6.0, 6.0)


@pytest.mark.parametrize("cls", [V.Midpoint, V.Lobatto])
@FEW
@given(state=states, log_c=log_factors)
def test_scaling_L_leaves_trajectory_and_scales_charges(cls, state, log_c):
    """c·L, c ∈ [1e-6, 1e6]: the same trajectory, and discrete charges c·J."""
    q0, v0 = state
    c = 10.0**log_c
    base = run(quartic(), q0, v0, cls)
    scaled = run(quartic(c), q0, v0, cls)
    assert float(jnp.max(jnp.abs(scaled.q - base.q))) < bound(jnp.float64, base.q)
    J = V.discrete_noether_charge(cls(quartic()), ROT_GEN, base, DT)
    Jc = V.discrete_noether_charge(cls(quartic(c)), ROT_GEN, scaled, DT)
    size = max(1.0, float(jnp.max(jnp.abs(J))))
    assert float(jnp.max(jnp.abs(Jc / c - J))) < bound(jnp.float64, base.q) * size


@FEW
@given(state=states, t0=st.floats(-1e3, 1e3))
def test_time_shift_of_autonomous_L(state, t0):
    """An autonomous L never reads t: shifting t0 changes no position, bit for bit."""
    q0, v0 = state
    base = run(quartic(), q0, v0, V.Lobatto)
    shifted = run(quartic(), q0, v0, V.Lobatto, t0=t0)
    assert bool(jnp.all(shifted.q == base.q))
    assert bool(jnp.all(shifted.qdot == base.qdot))


@FEW
@given(state=states, log_a=st.floats(-3.0, 3.0))
def test_units_of_q(state, log_a):
    """q → a·q: with the stiffness k → k/a², L(a q, a q̇) = a²L(q, q̇), so the
    trajectory from (a q0, a v0) is a times the one from (q0, v0)."""
    q0, v0 = state
    a = 10.0**log_a
    base = run(quartic(k=0.5), q0, v0)
    units = run(quartic(k=0.5 / a**2), a * q0, a * v0)
    assert float(jnp.max(jnp.abs(units.q / a - base.q))) < bound(jnp.float64, base.q)
    assert float(jnp.max(jnp.abs(units.qdot / a - base.qdot))) < bound(
        jnp.float64, base.qdot
    )


class OnLeaves(eqx.Module):
    """The quartic of a vector x, read from a pytree whose leaves hold x[perm]."""

    perm: jax.Array

    def __call__(self, t, q, v):
        def flat(tree):
            leaves = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])
            return jnp.zeros_like(leaves).at[self.perm].set(leaves)

        return quartic()(t, flat(q), flat(v))


@jax.jit
def _from_leaves(q_tree, perm):
    """The saved trees back to the flat vectors x (one compiled program)."""
    leaves = jnp.concatenate(
        [x.reshape(x.shape[0], -1) for x in jax.tree.leaves(q_tree)], axis=1
    )
    return jnp.zeros_like(leaves).at[:, perm].set(leaves)


def to_tree(x, perm):
    y = x[perm]
    # leaves in order a, b[0], b[1]["c"]: y[0:2], y[2], y[3]
    return {"b": (y[2:3], {"c": y[3:4]}), "a": y[:2].reshape(1, 2)}


@FEW
@given(
    x=st.lists(st.floats(-1, 1), min_size=8, max_size=8),
    perm=st.permutations(range(4)),
)
def test_permuting_and_nesting_leaves(x, perm):
    """The same system stored as a flat vector or as a nested pytree whose leaves
    hold the coordinates in any order: the same trajectory."""
    q0, v0 = jnp.array(x[:4]), jnp.array(x[4:])
    perm = jnp.array(perm)
    base = run(quartic(k=0.5), q0, v0)
    tree = run(OnLeaves(perm), to_tree(q0, perm), to_tree(v0, perm))
    flat = _from_leaves(tree.q, perm)
    assert float(jnp.max(jnp.abs(flat - base.q))) < bound(jnp.float64, base.q)


@FEW
@given(state=states, log_c=log_factors)
def test_float32_agrees_with_float64_or_refuses(state, log_c):
    """Float32 (the users' default) against float64, at any scale of L: within a
    bound of a few float32 ulps per step, or an error; never a silent difference."""
    q0, v0 = state
    c = 10.0**log_c
    ref = run(quartic(c), q0, v0)
    try:
        lo = run(
            quartic(c, dtype=jnp.float32),
            q0.astype(jnp.float32),
            v0.astype(jnp.float32),
        )
    except eqx.EquinoxRuntimeError as e:  # a refusal is allowed, and says why
        assert "`lnn.variational.integrate`" in str(e)
        return
    err = float(jnp.max(jnp.abs(lo.q.astype(jnp.float64) - ref.q)))
    assert err < bound(jnp.float32, ref.q)


def test_ten_times_the_tested_size():
    """500 coordinates (10x the 50 of the scale test), float32, L scaled by 1e6:
    every step solves and the trajectory is that of L itself, to float32 rounding."""
    n = 500
    q0 = jnp.linspace(-1, 1, n, dtype=jnp.float32)
    v0 = jnp.cos(jnp.arange(n, dtype=jnp.float32))
    L = lambda c: quartic(c, dtype=jnp.float32)
    base = run(L(1.0), q0, v0, n_steps=2)
    big = run(L(1e6), q0, v0, n_steps=2)
    assert float(jnp.max(jnp.abs(big.q - base.q))) < bound(jnp.float32, base.q, 2)


@FEW
@given(state=states, a=st.floats(0.2, 1.0))
def test_non_symmetry_is_reported_broken(state, a):
    """Rotation is a symmetry of the isotropic quartic (a = 0): its discrete charge
    is conserved to rounding. With an anisotropy a ∈ [0.2, 1] it is not, and the
    charge drifts by orders of magnitude more, obeying the exact balance
    J_n − J_0 = Σ R_k instead."""
    q0, v0 = state
    # both coordinates in [0.25, 0.75]: the anisotropy's torque −a q_0 q_1 ≠ 0
    q0 = 0.5 + 0.25 * q0
    rot = ROT_GEN
    n = 40
    sym = run(quartic(), q0, v0, n_steps=n)
    J = np.asarray(V.discrete_noether_charge(V.Midpoint(quartic()), rot, sym, DT))
    drift_sym = np.max(np.abs(J - J[0]))
    broken = run(quartic(a=a), q0, v0, n_steps=n)
    Ld = V.Midpoint(quartic(a=a))
    Jb = np.asarray(V.discrete_noether_charge(Ld, rot, broken, DT))
    R = np.asarray(V.discrete_invariance_residual(Ld, rot, broken, DT))
    drift_broken = np.max(np.abs(Jb - Jb[0]))
    assert drift_sym < bound(jnp.float64, sym.q, n)
    assert drift_broken > 1e6 * max(drift_sym, 1e-16)
    balance = np.max(np.abs(Jb[1:] - Jb[0] - np.cumsum(R)))
    assert balance < bound(jnp.float64, broken.q, n) * max(1.0, np.max(np.abs(Jb)))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@FEW
@given(
    state=states,
    log_c=log_factors,
    hw=st.one_of(st.floats(0.2, 1.8), st.floats(2.2, 5.0)),
)
def test_explicit_step_scale_free_and_refused_beyond_its_limit(dtype, state, log_c, hw):
    """`Trapezoid` of c·(½|q̇|² − V), a plain module Lagrangian (its mass read from
    the program) with a stiff direction of frequency ω = hw/dt: the Störmer–Verlet
    step is refused exactly when dt·ω > 2, for every c ∈ [1e-6, 1e6], and an
    accepted run is that of c = 1 to rounding."""
    q0, v0 = (x.astype(dtype) for x in state)
    stiff = -((hw / DT) ** 2 - 1)  # the a of `Quartic`: ω² = 1 − a along q_0
    L = lambda c: quartic(c, k=0.0, a=stiff, dtype=dtype)
    if hw > 2:
        with pytest.raises(ValueError, match="stability limit"):
            run(L(10.0**log_c), q0, v0, cls=V.Trapezoid)
        return
    base = run(L(1.0), q0, v0, cls=V.Trapezoid)
    scaled = run(L(10.0**log_c), q0, v0, cls=V.Trapezoid)
    assert float(jnp.max(jnp.abs(scaled.q - base.q))) < bound(dtype, base.q)
