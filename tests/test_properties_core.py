r"""Properties of `simulate`, `euler_lagrange`, `noether_charge`, `invariance_residual`
and `energy` that follow from the mathematics, checked on problems drawn by hypothesis
rather than on one tested problem.

The systems:

- `coupled`, a plain function: $c\,[\tfrac12 u^\top A u - c_V V(x)] + F\cos(t)\,x_0$ with
  $x = q/a$, $u = \dot q/a$ and a full mass $A = I + \beta\,s s^\top$ ($s$ the
  indicator of the coordinates $2, 3, \ldots$), so the mass is not diagonal: the dense
  Cholesky path at $n = 4$, conjugate gradients at $n = 40$. $V$ is anharmonic and
  invariant under rotations in the $(q_0, q_1)$ plane, as is $A$; a rotation in the
  $(q_0, q_2)$ plane is not a symmetry.
- `damped(loss, κ)` from `lnn.dynamics` (a `Conformal`), scaled by wrapping it in one
  more `Conformal` with the constant log-weight $\log c$.
- gradient flow of the same loss.

Every parameter ($c$, $c_V$, $a$, $F$, $\kappa$, the tolerances, the times) is an
array, traced by `simulate`'s compiled solve, so hypothesis' examples reuse one
compiled program per system and dtype.

Tolerances. The step-size controller runs at relative tolerance `RTOL` (1e-9 in
float64, 1e-6 in float32, `simulate`'s default). Two runs of the same ODE differ by
rounding unless the controller's accept/reject decisions differ, and then by at most
the sum of their global errors, which for a phase $\Phi$ (radians run through) is about
$\Phi\,$`RTOL` per run: `TRAJ_TOL = Φ·(RTOL + 16·EPS·cond(A))`, relative to the size of
the trajectory. Quantities that scale exactly (charges under $L \to cL$) are compared
relative to the size of their terms ($\sum_i |p_i\xi_i|$ and so on), never to an
absolute number.
"""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st
from jax.tree_util import Partial

import lagrangian_nn as lnn

T = 4.0
N_SMALL, N_LARGE = 4, 40  # 40: ten times the size, past the dense threshold (16)
BETA = 0.2
KAPPA = 0.5
RTOL = {"float64": 1e-9, "float32": 1e-6}
PHI = 2.0 * T  # the phase: frequencies are at most about 2 here
SETTINGS = settings(max_examples=4, deadline=None, derandomize=True)

log_uniform = lambda lo, hi: st.floats(math.log(lo), math.log(hi)).map(math.exp)


def _eps(dtype):
    return float(jnp.finfo(dtype).eps)


def _cond(n):
    return 1.0 + BETA * (n - 2)  # cond(A): eigenvalues 1 and 1 + β(n − 2)


def _traj_tol(dtype, n=N_SMALL):
    name = jnp.dtype(dtype).name
    return PHI * (RTOL[name] + 16 * _eps(dtype) * _cond(n))


# --- The systems ---------------------------------------------------------------------


def potential(x):
    """Anharmonic, invariant under rotations in the (x0, x1) plane only."""
    n = x.shape[0]
    w2 = jnp.linspace(1.0, 2.0, n, dtype=x.dtype).at[1].set(1.0)
    r2 = x[0] ** 2 + x[1] ** 2
    rest = x[2:]
    return (
        0.5 * jnp.sum(w2 * x**2)
        + 0.1 * r2**2
        + 0.05 * r2 * jnp.sum(rest)
        + 0.05 * jnp.sum(rest**4)
    )


def coupled(params, t, q, v):
    """A plain function: c·[½ uᵀAu − c_V·V(x)] + F·cos(t)·x0, x = q/a, u = v/a."""
    c, c_pot, a, drive = params
    x, u = q / a, v / a
    s_u = jnp.sum(u[2:])
    kinetic = 0.5 * jnp.sum(u**2) + 0.5 * BETA * s_u**2
    return c * (kinetic - c_pot * potential(x) + drive * jnp.cos(t) * x[0])


def coupled_params(dtype, c=1.0, c_pot=1.0, a=1.0, drive=0.0):
    return tuple(jnp.asarray(x, dtype) for x in (c, c_pot, a, drive))


class Loss(eqx.Module):
    """c·a²·V(q/a): gradient flow and `damped` of it move as a·q(t) (for c = 1)."""

    c: jax.Array
    a: jax.Array

    def __call__(self, q):
        return self.c * self.a**2 * potential(q / self.a)


def loss(dtype, c=1.0, a=1.0):
    return Loss(jnp.asarray(c, dtype), jnp.asarray(a, dtype))


def constant_log_weight(log_c, t):
    return log_c + 0 * t


def scaled_conformal(L, c, dtype):
    """c·L, for a `Conformal` L, as the user writes it: one more Conformal layer."""
    return lnn.Conformal(
        Partial(constant_log_weight, jnp.log(jnp.asarray(c, dtype))), L
    )


def damped(dtype, c=1.0, a=1.0):
    """c·`damped(a²·V(q/a), κ)`, always wrapped in the Conformal layer of c (also for
    c = 1), so that every test shares one compiled solve per dtype."""
    L = lnn.dynamics.damped(loss(dtype, a=a), jnp.asarray(KAPPA, dtype))
    return scaled_conformal(L, c, dtype)


def _rotation(i, j):
    def xi(t, q):
        return jnp.zeros_like(q).at[i].set(-q[j]).at[j].set(q[i])

    return xi


SYM = lnn.Generator(_rotation(0, 1))  # a symmetry of every system here
BROKEN = lnn.Generator(_rotation(0, 2))  # not a symmetry of any


class Measures(eqx.Module):
    """Energy, charges and residuals of both generators, and the size of their terms
    (for linear ξ, ξ̇ = ξ(q̇)): `size_Q = Σ|p_i ξ_i|`,
    `size_R = Σ|∂L/∂q_i ξ_i| + |p_i ξ̇_i|`, `size_E = Σ|p_i q̇_i| + |L|`."""

    L: object

    def __call__(self, t, q, v):
        out = {
            "E": lnn.energy(self.L)(t, q, v),
            "E0": lnn.energy(self.L, reduced=True)(t, q, v),
        }
        value, (dLdq, p) = jax.value_and_grad(self.L, argnums=(1, 2))(t, q, v)
        out["size_E"] = jnp.sum(jnp.abs(p * v)) + jnp.abs(value)
        for name, gen in (("sym", SYM), ("broken", BROKEN)):
            xi, xi_dot = gen.xi(t, q), gen.xi(t, v)
            out["Q_" + name] = lnn.noether_charge(self.L, gen)(t, q, v)
            out["Q0_" + name] = lnn.noether_charge(self.L, gen, reduced=True)(t, q, v)
            out["R_" + name] = lnn.invariance_residual(self.L, gen)(t, q, v)
            out["size_Q_" + name] = jnp.sum(jnp.abs(p * xi))
            out["size_R_" + name] = jnp.sum(jnp.abs(dLdq * xi) + jnp.abs(p * xi_dot))
        return out


def controller(dtype, atol_scale=1.0, rtol=None):
    rtol = RTOL[jnp.dtype(dtype).name] if rtol is None else rtol
    return diffrax.PIDController(
        rtol=jnp.asarray(rtol, dtype), atol=jnp.asarray(1e-2 * rtol * atol_scale, dtype)
    )


def run(system, q0, v0, dtype, t0=0.0, atol_scale=1.0, rtol=None):
    t0 = jnp.asarray(t0, dtype)
    ts = t0 + jnp.linspace(0.0, T, 9, dtype=dtype)
    return lnn.simulate(
        system,
        q0,
        v0,
        t0=t0,
        t1=t0 + jnp.asarray(T, dtype),
        ts=ts,
        stepsize_controller=controller(dtype, atol_scale, rtol),
    )


def initial_state(seed, n, dtype):
    rng = np.random.default_rng(seed)
    q0 = 0.3 + 0.5 * rng.uniform(size=n)
    v0 = rng.uniform(-0.5, 0.5, size=n)
    return jnp.asarray(q0, dtype), jnp.asarray(v0, dtype)


def rel(a, b):
    """max|a − b| / max|b| over every leaf."""
    diff = max(
        float(jnp.max(jnp.abs(x - y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    return diff / max(float(jnp.max(jnp.abs(y))) for y in jax.tree.leaves(b))


def close_relative_to(a, b, size, tol):
    """max|a − b| <= tol · max(size): a comparison relative to the size of the terms."""
    return float(jnp.max(jnp.abs(a - b))) <= tol * float(jnp.max(size))


DTYPES = [
    pytest.param(jnp.float64, id="float64"),
    pytest.param(jnp.float32, id="float32"),
]


def _x64(dtype):
    return jax.enable_x64(dtype == jnp.float64)


# --- Scaling L by c --------------------------------------------------------------------


def _scale_checks(traj_c, traj_1, L_c, L_1, c, tol, dtype):
    assert rel(traj_c.q, traj_1.q) < tol
    assert rel(traj_c.qdot, traj_1.qdot) < tol
    m_c, m_1 = traj_c.evaluate(Measures(L_c)), traj_1.evaluate(Measures(L_1))
    eps = _eps(dtype)
    for key, size in (
        ("E", "size_E"),
        ("Q_sym", "size_Q_sym"),
        ("Q_broken", "size_Q_broken"),
        ("R_broken", "size_R_broken"),
    ):
        assert close_relative_to(m_c[key] / c, m_1[key], m_1[size], tol), key
    # The symmetry's residual is zero up to the rounding of its terms, at every scale;
    # the broken generator's is of the size of its terms.
    for m in (m_c, m_1):
        assert close_relative_to(m["R_sym"], 0, m["size_R_sym"], 64 * eps)
        assert float(jnp.max(jnp.abs(m["R_broken"]))) > 0.01 * float(
            jnp.max(m["size_R_broken"])
        )
    return m_c, m_1


@pytest.mark.parametrize(
    "dtype, n",
    [
        pytest.param(jnp.float64, N_SMALL, id="float64-n4-dense"),
        pytest.param(jnp.float32, N_SMALL, id="float32-n4-dense"),
        pytest.param(jnp.float32, N_LARGE, id="float32-n40-cg"),
    ],
)
@settings(max_examples=3, deadline=None, derandomize=True)
@given(c=log_uniform(1e-6, 1e6), seed=st.integers(0, 2**16))
def test_scaling_a_plain_lagrangian(dtype, n, c, seed):
    """c·L has the same trajectory as L; its energy, charges and invariance residuals
    are c times L's. Negative control: scaling the potential alone changes the
    trajectory by far more than the tolerance."""
    with _x64(dtype):
        q0, v0 = initial_state(seed, n, dtype)
        L_1 = Partial(coupled, coupled_params(dtype))
        L_c = Partial(coupled, coupled_params(dtype, c=c))
        tol = _traj_tol(dtype, n)
        traj_1 = run(L_1, q0, v0, dtype)
        traj_c = run(L_c, q0, v0, dtype)
        _scale_checks(traj_c, traj_1, L_c, L_1, c, tol, dtype)
        if n == N_SMALL:
            wrong = Partial(coupled, coupled_params(dtype, c_pot=1.5))
            assert rel(run(wrong, q0, v0, dtype).q, traj_1.q) > 100 * tol


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(c=log_uniform(1e-6, 1e6), seed=st.integers(0, 2**16))
def test_scaling_a_table1_lagrangian(dtype, c, seed):
    """`Conformal(log c, damped(loss, κ))` is c·`damped(loss, κ)`: the same
    trajectory, c times the charges (which are conserved for the symmetry: the
    non-reduced charge of a Conformal Lagrangian)."""
    with _x64(dtype):
        q0, v0 = initial_state(seed, N_SMALL, dtype)
        L_1, L_c = damped(dtype), damped(dtype, c=c)
        tol = _traj_tol(dtype)
        traj_1 = run(L_1, q0, v0, dtype)
        traj_c = run(L_c, q0, v0, dtype)
        m_c, _ = _scale_checks(traj_c, traj_1, L_c, L_1, c, tol, dtype)
        # conservation of the symmetry's charge, and the broken one's drift
        q_sym, q_broken = m_c["Q_sym"] / c, m_c["Q_broken"] / c
        bound = tol * float(jnp.max(m_c["size_Q_sym"] / c))
        assert float(jnp.max(jnp.abs(q_sym - q_sym[0]))) < bound
        assert float(jnp.max(jnp.abs(q_broken - q_broken[0]))) > 1e3 * bound


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(c=log_uniform(1e-6, 1e6), seed=st.integers(0, 2**16))
# In float32 the controller's first step for c = 403 overflows the stages (inf − inf):
# diffrax's PIDController then stalled on a NaN step size until `max_steps`.
@example(c=math.exp(6.0), seed=1)
def test_scaling_the_loss_of_gradient_flow_rescales_time(dtype, c, seed):
    """Gradient flow of c·loss is gradient flow of loss in the time c·t: the state at
    t/c is the same, and the velocity is c times."""
    with _x64(dtype):
        q0, _ = initial_state(seed, N_SMALL, dtype)
        tol = _traj_tol(dtype)
        ts = jnp.linspace(0.0, T, 9, dtype=dtype)
        gf = lambda c_: lnn.dynamics.gradient_flow(loss(dtype, c=c_))
        ref = lnn.simulate(
            gf(1.0),
            q0,
            t0=ts[0],
            t1=ts[-1],
            ts=ts,
            stepsize_controller=controller(dtype),
        )
        c_ = jnp.asarray(c, dtype)
        fast = lnn.simulate(
            gf(c), q0, t0=ts[0], t1=ts[-1] / c_, ts=ts / c_,
            stepsize_controller=controller(dtype),
        )  # fmt: skip
        assert rel(fast.q, ref.q) < tol
        assert rel(fast.qdot / c_, ref.qdot) < tol


# --- Shifting time ---------------------------------------------------------------------


def _shift_tol(dtype, tau, traj):
    """Two runs of an autonomous ODE differ by the controller's tolerance, and by the
    rounding of the times t0 + τ + t (eps·|t| each) times the speed."""
    speed = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(traj.qdot))
    size = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(traj.q))
    return _traj_tol(dtype) + 16 * _eps(dtype) * (abs(tau) + T) * speed / size


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(
    # a subnormal shift is flushed to zero by XLA's arithmetic but not by the
    # host-side check of `ts`: not a shift of time
    tau=st.floats(-100.0, 100.0).filter(lambda x: x == 0 or abs(x) > 1e-30),
    seed=st.integers(0, 2**16),
)
def test_shifting_time_of_an_autonomous_lagrangian(dtype, tau, seed):
    """For an L without explicit time dependence the trajectory from t0 + τ is the
    trajectory from t0, shifted; so are its energy and charges. Negative control: a
    driven system (F cos t) is not autonomous, and its shifted run differs."""
    with _x64(dtype):
        q0, v0 = initial_state(seed, N_SMALL, dtype)
        L = Partial(coupled, coupled_params(dtype))
        ref = run(L, q0, v0, dtype)
        shifted = run(L, q0, v0, dtype, t0=tau)
        tol = _shift_tol(dtype, tau, ref)
        assert rel(shifted.q, ref.q) < tol
        m_s, m_0 = shifted.evaluate(Measures(L)), ref.evaluate(Measures(L))
        for key, size in (("E", "size_E"), ("Q_broken", "size_Q_broken")):
            assert close_relative_to(m_s[key], m_0[key], m_0[size], tol), key
        driven = Partial(coupled, coupled_params(dtype, drive=0.5))
        moved = run(driven, q0, v0, dtype, t0=1.5)
        assert rel(moved.q, run(driven, q0, v0, dtype).q) > 100 * _shift_tol(
            dtype, 1.5, ref
        )


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(shift=st.floats(-20.0, 20.0), seed=st.integers(0, 2**16))
def test_shifting_time_of_damped_dynamics(dtype, shift, seed):
    """`damped`'s Lagrangian e^{t/κ}L0 depends on t, but its equation of motion does
    not: the trajectory shifts, the reduced charges Q0 and energy E0 are unchanged,
    and the charges Q = e^{t/κ}Q0 are multiplied by e^{τ/κ}."""
    tau = shift * KAPPA
    with _x64(dtype):
        q0, v0 = initial_state(seed, N_SMALL, dtype)
        L = damped(dtype)
        ref = run(L, q0, v0, dtype)
        shifted = run(L, q0, v0, dtype, t0=tau)
        tol = _shift_tol(dtype, tau, ref)
        assert rel(shifted.q, ref.q) < tol
        m_s, m_0 = shifted.evaluate(Measures(L)), ref.evaluate(Measures(L))
        assert close_relative_to(m_s["E0"], m_0["E0"], m_0["E0"], tol)
        weight = jnp.exp(ref.ts / KAPPA)  # the reduced terms are e^{-t/κ} times
        for key, size in (("Q0_sym", "size_Q_sym"), ("Q0_broken", "size_Q_broken")):
            assert close_relative_to(m_s[key], m_0[key], m_0[size] / weight, tol), key
        # the charges grow with the weight e^{τ/κ}, to the rounding of that weight
        # (eps·|τ/κ| relative) and the integration
        growth = math.exp(tau / KAPPA)
        tol_q = tol + 16 * _eps(dtype) * abs(tau / KAPPA)
        for key, size in (("Q_sym", "size_Q_sym"), ("Q_broken", "size_Q_broken")):
            assert close_relative_to(m_s[key] / growth, m_0[key], m_0[size], tol_q)


# --- Units: q → a·q -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(a=log_uniform(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_units_of_a_plain_lagrangian(dtype, a, seed):
    """L'(q', q̇') = L(q'/a, q̇'/a) moves as q' = a·q, with the same energy and the
    same charge of a linear generator (ξ'(q') = a·ξ(q'/a) = ξ(q')). `atol` is in the
    units of q, so it is scaled by a too."""
    with _x64(dtype):
        q0, v0 = initial_state(seed, N_SMALL, dtype)
        a_ = jnp.asarray(a, dtype)
        L = Partial(coupled, coupled_params(dtype))
        L_a = Partial(coupled, coupled_params(dtype, a=a))
        ref = run(L, q0, v0, dtype)
        moved = run(L_a, a_ * q0, a_ * v0, dtype, atol_scale=a)
        tol = _traj_tol(dtype)
        assert rel(moved.q / a_, ref.q) < tol
        assert rel(moved.qdot / a_, ref.qdot) < tol
        m_a, m_1 = moved.evaluate(Measures(L_a)), ref.evaluate(Measures(L))
        for key, size in (("E", "size_E"), ("Q_broken", "size_Q_broken")):
            assert close_relative_to(m_a[key], m_1[key], m_1[size], tol), key


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(a=log_uniform(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_units_of_damped_and_gradient_flow(dtype, a, seed):
    """With the loss a²·V(q/a), damped dynamics and gradient flow move as a·q(t), and
    damped's Lagrangian, energy and charges are a² times the originals."""
    with _x64(dtype):
        q0, v0 = initial_state(seed, N_SMALL, dtype)
        a_ = jnp.asarray(a, dtype)
        L, L_a = damped(dtype), damped(dtype, a=a)
        tol = _traj_tol(dtype)
        ref = run(L, q0, v0, dtype)
        moved = run(L_a, a_ * q0, a_ * v0, dtype, atol_scale=a)
        assert rel(moved.q / a_, ref.q) < tol
        m_a, m_1 = moved.evaluate(Measures(L_a)), ref.evaluate(Measures(L))
        for key, size in (("E", "size_E"), ("Q_broken", "size_Q_broken")):
            assert close_relative_to(m_a[key] / a**2, m_1[key], m_1[size], tol), key

        ts = jnp.linspace(0.0, T, 9, dtype=dtype)
        flow = lambda loss_, x0, atol_scale: lnn.simulate(
            lnn.dynamics.gradient_flow(loss_), x0, t0=ts[0], t1=ts[-1], ts=ts,
            stepsize_controller=controller(dtype, atol_scale),
        )  # fmt: skip
        gf_ref = flow(loss(dtype), q0, 1.0)
        gf_a = flow(loss(dtype, a=a), a_ * q0, a)
        assert rel(gf_a.q / a_, gf_ref.q) < tol


# --- Pytrees ---------------------------------------------------------------------------


def to_tree(x):
    """A dict whose sorted keys put x[2:] first (the leaves are permuted), nesting a
    tuple and a list."""
    return {"z": x[:2], "b": (x[2:3], [x[3:]])}


def from_tree(q):
    return jnp.concatenate([q["z"], q["b"][0], q["b"][1][0]])


def on_tree(params, t, q, v):
    return coupled(params, t, from_tree(q), from_tree(v))


BROKEN_ON_TREE = lnn.Generator(lambda t, q: to_tree(BROKEN.xi(t, from_tree(q))))


class TreeMeasures(eqx.Module):
    L: object

    def __call__(self, t, q, v):
        return {
            "E": lnn.energy(self.L)(t, q, v),
            "Q_broken": lnn.noether_charge(self.L, BROKEN_ON_TREE)(t, q, v),
        }


@settings(max_examples=3, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16))
def test_pytree_structure_changes_nothing(seed):
    """The same system on a dict of leaves in another order, nested in a tuple and a
    list, gives the same trajectory, energy and charges as on one vector, to the
    controller's tolerance."""
    dtype = jnp.float64
    q0, v0 = initial_state(seed, N_SMALL, dtype)
    params = coupled_params(dtype)
    L, L_tree = Partial(coupled, params), Partial(on_tree, params)
    ref = run(L, q0, v0, dtype)
    tree = run(L_tree, to_tree(q0), to_tree(v0), dtype)
    assert jax.tree.structure(tree.q) == jax.tree.structure(to_tree(q0))
    tol = _traj_tol(dtype)
    assert rel(jax.vmap(from_tree)(tree.q), ref.q) < tol
    assert rel(jax.vmap(from_tree)(tree.qdot), ref.qdot) < tol
    m_tree, m = tree.evaluate(TreeMeasures(L_tree)), ref.evaluate(Measures(L))
    for key, size in (("E", "size_E"), ("Q_broken", "size_Q_broken")):
        assert close_relative_to(m_tree[key], m[key], m[size], tol), key


# --- float32 against float64 -------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 2**16))
def test_float32_agrees_with_float64(seed):
    """The float32 trajectories and charges of `coupled` and `damped` lie within
    Φ·(RTOL + 16·eps·cond) of the float64 ones (eps and RTOL of float32)."""
    n = N_SMALL
    q0, v0 = initial_state(seed, n, np.float64)
    for make in (lambda dt: Partial(coupled, coupled_params(dt)), damped):
        with jax.enable_x64(True):
            L64 = make(jnp.float64)
            ref = run(L64, q0, v0, jnp.float64)
            m64 = ref.evaluate(Measures(L64))
        with jax.enable_x64(False):
            L32 = make(jnp.float32)
            q32, v32 = q0.astype(jnp.float32), v0.astype(jnp.float32)
            traj = run(L32, q32, v32, jnp.float32)
            m32 = traj.evaluate(Measures(L32))
            assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((traj, m32)))
        tol = _traj_tol(jnp.float32, n)
        assert rel(np.asarray(traj.q, np.float64), ref.q) < tol
        for key, size in (("E", "size_E"), ("Q_broken", "size_Q_broken")):
            a = np.asarray(m32[key], np.float64)
            assert close_relative_to(a, m64[key], m64[size], tol), key


def test_float32_meets_a_tolerance_below_its_resolution_or_refuses():
    """Asked for rtol below float32's resolution (eps = 1.2e-7), float32 either meets
    float64's answer within its own rounding, Φ·16·eps·cond (rtol = 1e-10 here), or
    raises an error that names the tolerance as the likely cause (rtol = 1e-12 here);
    it never returns a wrong number."""
    q0, v0 = initial_state(0, N_SMALL, np.float64)
    with jax.enable_x64(True):
        ref = run(Partial(coupled, coupled_params(jnp.float64)), q0, v0, jnp.float64)
    with jax.enable_x64(False):
        L32 = Partial(coupled, coupled_params(jnp.float32))
        q32, v32 = q0.astype(jnp.float32), v0.astype(jnp.float32)
        traj = run(L32, q32, v32, jnp.float32, rtol=1e-10)
        with pytest.raises(eqx.EquinoxRuntimeError, match="resolution of float32"):
            run(L32, q32, v32, jnp.float32, rtol=1e-12)
    eps = _eps(jnp.float32)
    assert rel(np.asarray(traj.q, np.float64), ref.q) < PHI * 16 * eps * _cond(N_SMALL)


@eqx.filter_jit
def loss_residuals(V, qs):
    """`symmetry_residual` of both generators along the saved states, and the size of
    its terms, Σ|∂V/∂q_i ξ_i|."""

    def at(q):
        out = {}
        for name, gen in (("sym", SYM), ("broken", BROKEN)):
            out[name] = lnn.symmetry_residual(V, gen)(q)
            out["size_" + name] = jnp.sum(jnp.abs(jax.grad(V)(q) * gen.xi(0.0, q)))
        return out

    return jax.vmap(at)(qs)


# --- Generators that are not symmetries ------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=3, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16))
def test_a_broken_generator_is_reported_broken(dtype, seed):
    """Along a trajectory of `coupled` the symmetry's charge drifts by at most the
    integration bound Φ·(RTOL + 16·eps·cond)·|terms|, and its invariance residual is
    rounding; the rotation that is not a symmetry drifts by orders of magnitude more,
    its residual is of the size of its terms, and so is `symmetry_residual` of the
    loss."""
    with _x64(dtype):
        q0, v0 = initial_state(seed, N_SMALL, dtype)
        L = Partial(coupled, coupled_params(dtype))
        traj = run(L, q0, v0, dtype)
        m = traj.evaluate(Measures(L))
        bound = _traj_tol(dtype) * float(jnp.max(m["size_Q_sym"]))
        drift = lambda x: float(jnp.max(jnp.abs(x - x[0])))
        assert drift(m["Q_sym"]) < bound
        assert drift(m["Q_broken"]) > 1e3 * bound
        eps = _eps(dtype)
        assert close_relative_to(m["R_sym"], 0, m["size_R_sym"], 64 * eps)
        assert float(jnp.max(jnp.abs(m["R_broken"]))) > 0.01 * float(
            jnp.max(m["size_R_broken"])
        )
        r = loss_residuals(loss(dtype), traj.q)
        assert close_relative_to(r["sym"], 0, r["size_sym"], 64 * eps)
        assert float(jnp.max(jnp.abs(r["broken"]))) > 0.01 * float(
            jnp.max(r["size_broken"])
        )


# --- Nested Conformal layers -------------------------------------------------------------


def test_nested_conformal_acceleration_never_forms_the_inner_weight():
    """c·`damped(loss, κ)` written as one more `Conformal` layer has the acceleration
    of `damped(loss, κ)` itself, at any t/κ (here 190, where e^{t/κ} overflows
    float32): every layer's weight is cancelled, none is formed."""
    with jax.enable_x64(False):
        q, v = initial_state(0, N_SMALL, jnp.float32)
        t = jnp.asarray(95.0)
        L = lnn.dynamics.damped(loss(jnp.float32), jnp.asarray(KAPPA, jnp.float32))
        accel = eqx.filter_jit(lambda L, t, q, v: lnn.euler_lagrange(L)(t, q, v))
        expected = accel(L, t, q, v)
        got = accel(damped(jnp.float32, c=2.0), t, q, v)
        assert rel(got, expected) < 16 * _eps(jnp.float32)
