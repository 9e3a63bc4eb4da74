import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import rel_err

import lagrangian_nn as lnn
from lagrangian_nn import dynamics


class MLPLoss(eqx.Module):
    """A small non-convex loss on a list of weight matrices, data held as arrays."""

    x: jax.Array
    y: jax.Array

    def __call__(self, w):
        h = jnp.tanh(self.x @ w[0])
        return 0.5 * jnp.mean((h @ w[1] - self.y) ** 2)


def _problem(seed=0):
    k = jax.random.split(jax.random.key(seed), 5)
    loss = MLPLoss(jax.random.normal(k[0], (20, 3)), jax.random.normal(k[1], (20, 2)))
    w = [jax.random.normal(k[2], (3, 4)), jax.random.normal(k[3], (4, 2))]
    wdot = [jax.random.normal(k[4], (3, 4)), jnp.ones((4, 2))]
    return loss, w, wdot


def _hand_written(kind, loss, t, w, wdot, kappa=None, k1=None, k2=None):
    g = jax.grad(loss)(w)
    if kind == "newtonian":
        return jax.tree.map(jnp.negative, g)
    if kind == "nesterov":
        return jax.tree.map(lambda v, gi: -3 / t * v - gi, wdot, g)
    if kind == "damped":
        return jax.tree.map(lambda v, gi: -(v + gi) / kappa, wdot, g)
    if kind == "general":
        return jax.tree.map(lambda v, gi: -(k1(t) * v + gi) / k2(t), wdot, g)
    raise AssertionError


K1 = lambda t: 0.3 + jnp.sin(t) ** 2
K2 = lambda t: 1.5 + jnp.cos(3 * t)


@pytest.mark.parametrize("threshold", [64, 0], ids=["dense", "iterative"])
@pytest.mark.parametrize(
    "kind", ["newtonian", "nesterov", "damped", "general", "general_const"]
)
def test_table1_builders_match_hand_written_odes(kind, threshold):
    loss, w, wdot = _problem()
    t = jnp.asarray(1.37)
    if kind == "newtonian":
        L, ref = dynamics.newtonian(loss), _hand_written("newtonian", loss, t, w, wdot)
    elif kind == "nesterov":
        L, ref = dynamics.nesterov(loss), _hand_written("nesterov", loss, t, w, wdot)
    elif kind == "damped":
        L = dynamics.damped(loss, 0.05)
        ref = _hand_written("damped", loss, t, w, wdot, kappa=0.05)
    elif kind == "general":
        L = dynamics.general(loss, K1, K2, t_ref=0.0)
        ref = _hand_written("general", loss, t, w, wdot, k1=K1, k2=K2)
    else:
        L = dynamics.general(loss, 0.7, 2.0)
        ref = _hand_written(
            "general", loss, t, w, wdot, k1=lambda t: 0.7, k2=lambda t: 2.0
        )
    a = lnn.euler_lagrange(L, dense_threshold=threshold)(t, w, wdot)
    assert rel_err(a, ref) < 1e-12


def test_table1_lagrangian_values():
    """The builders return the Table-1 formulas themselves."""
    loss, w, wdot = _problem()
    t = jnp.asarray(1.37)
    kin = 0.5 * sum(jnp.sum(v**2) for v in wdot)
    lo = loss(w)
    assert abs(float(dynamics.newtonian(loss)(t, w, wdot) - (kin - lo))) < 1e-13
    assert abs(float(dynamics.nesterov(loss)(t, w, wdot) - t**3 * (kin - lo))) < 1e-12
    kappa = 0.5
    expected = jnp.exp(t / kappa) * (kappa * kin - lo)
    assert abs(float(dynamics.damped(loss, kappa)(t, w, wdot) - expected)) < 1e-12
    # general with functions: s(t) = ∫_0^t κ1/κ2 by quadrature, compared with a fine
    # trapezoid rule
    grid = np.linspace(0.0, 1.37, 200001)
    s = np.trapezoid(np.asarray(K1(grid) / K2(grid)), grid)
    expected = np.exp(s) * (kin - lo / K2(t))
    assert (
        abs(float(dynamics.general(loss, K1, K2, t_ref=0.0)(t, w, wdot)) - expected)
        < 1e-8
    )


def test_general_reproduces_nesterov():
    loss, w, wdot = _problem(1)
    t = jnp.asarray(0.9)
    a1 = lnn.euler_lagrange(dynamics.general(loss, lambda t: 3 / t, 1.0, t_ref=1.0))(
        t, w, wdot
    )
    a2 = lnn.euler_lagrange(dynamics.nesterov(loss))(t, w, wdot)
    assert rel_err(a1, a2) < 1e-14


def test_nagf_energy_decay_eq35():
    """Along NAGF, d/dt(½|ẇ|² + L) = −(3/t)|ẇ|² (eq. 35): compare the integrated form."""
    loss = lambda w: (jnp.sum(w**2) - 1.0) ** 2
    w0, v0 = jnp.array([0.5, 0.5, 0.5]), jnp.array([-2.0, 1.0, 1.0])
    ts = jnp.linspace(0.5, 5.0, 4001)
    traj = lnn.simulate(
        dynamics.nesterov(loss), w0, v0, t0=0.5, t1=5.0, ts=ts, rtol=1e-11, atol=1e-12
    )
    energy = traj.evaluate(lambda t, q, v: 0.5 * v @ v + loss(q))
    rate = traj.evaluate(lambda t, q, v: -3 / t * (v @ v))
    h = float(ts[1] - ts[0])
    integral = (
        h
        / 3
        * (rate[0] + 4 * jnp.sum(rate[1:-1:2]) + 2 * jnp.sum(rate[2:-1:2]) + rate[-1])
    )
    assert abs(float(energy[-1] - energy[0] - integral)) < 1e-6 * abs(float(integral))


LOSS3 = lambda q: 0.25 * (jnp.sum(q**2) - 1.0) ** 2 + 0.3 * q[0]


def _path(system, ts, q0, qdot0=None, **options):
    """The positions of `system` at the times `ts` (from `ts[0]`)."""
    t0, t1 = float(ts[0]), float(ts[-1])
    return lnn.simulate(system, q0, qdot0, t0=t0, t1=t1, ts=ts, **options).q


def _gf_path(ts, q0):
    return _path(dynamics.gradient_flow(LOSS3), ts, q0, rtol=1e-10, atol=1e-12)


def _damped_path(kappa, ts, q0, rtol, atol):
    """Damped dynamics started on the slow manifold ẇ0 = −∇L(w0), with a stiff solver
    (small κ makes the system stiff)."""
    v0 = -jax.grad(LOSS3)(q0)
    solver = diffrax.Kvaerno5()
    system = dynamics.damped(LOSS3, kappa)
    return _path(system, ts, q0, v0, solver=solver, rtol=rtol, atol=atol)


def test_damped_approaches_gradient_flow():
    """max_t |w_κ(t) − w_GF(t)| = O(κ), started on the slow manifold ẇ0 = −∇L(w0)."""
    q0 = jnp.array([0.1, 0.4, -0.2])
    ts = jnp.linspace(0.0, 3.0, 61)
    gf = _gf_path(ts, q0)
    kappas = np.array([1e-2, 1e-3, 1e-4])
    devs = []
    for kappa in kappas:
        q = _damped_path(kappa, ts, q0, rtol=1e-10, atol=1e-12)
        devs.append(float(jnp.max(jnp.abs(q - gf))))
    slope = np.polyfit(np.log(kappas), np.log(devs), 1)[0]
    assert abs(slope - 1.0) < 0.1, (devs, slope)


def test_damped_tiny_kappa_no_overflow():
    """κ = 1e-6 over t ∈ [0, 10]: t/κ reaches 1e7 and e^{t/κ} would overflow."""
    q0 = jnp.array([0.1, 0.4, -0.2])
    ts = jnp.linspace(0.0, 10.0, 11)
    q = _damped_path(1e-6, ts, q0, rtol=1e-8, atol=1e-10)
    assert bool(jnp.all(jnp.isfinite(q)))
    assert float(jnp.max(jnp.abs(q - _gf_path(ts, q0)))) < 1e-4


def test_damped_vmaps_over_kappa():
    """κ is a traced field: one compiled acceleration serves many κ."""
    loss, w, wdot = _problem()
    kappas = jnp.array([0.1, 0.5, 2.0])
    accel = jax.vmap(
        lambda k: lnn.euler_lagrange(dynamics.damped(loss, k))(1.0, w, wdot)
    )(kappas)
    for i, k in enumerate(kappas):
        ref = _hand_written("damped", loss, 1.0, w, wdot, kappa=k)
        assert rel_err(jax.tree.map(lambda x: x[i], accel), ref) < 1e-12


def test_general_with_functions_requires_t_ref():
    loss = lambda w: jnp.sum(w**2)
    for k1, k2 in ((K1, 2.0), (0.7, K2), (K1, K2)):
        with pytest.raises(
            ValueError,
            match=r"`t_ref` is required when `kappa1` or `kappa2` is a function of t "
            r"and no `log_weight` is given",
        ):
            dynamics.general(loss, k1, k2)
    # constants, or a closed-form log-weight, need no t_ref
    w, v, t = jnp.array([0.3, -0.2]), jnp.array([1.0, 0.5]), jnp.asarray(0.8)
    kin = 0.5 * float(v @ v)
    L = dynamics.general(loss, 0.7, 2.0)
    expected = np.exp(0.7 / 2.0 * 0.8) * (kin - float(loss(w)) / 2.0)
    assert abs(float(L(t, w, v)) - expected) < 1e-14
    L = dynamics.general(
        loss, lambda t: 3 / t, 1.0, log_weight=lambda t: 3 * jnp.log(t)
    )
    assert abs(float(L(t, w, v)) - 0.8**3 * (kin - float(loss(w)))) < 1e-14


def test_general_t_ref_sets_the_weight_not_the_reduced_charges():
    """s(t) = ∫_{t_ref}^t κ1/κ2: moving t_ref rescales the energy by e^{s(t_ref')}, and
    leaves the reduced energy E0 (and the equations of motion) unchanged."""
    loss = lambda w: jnp.sum(w**2)
    w, v, t = jnp.array([0.3, -0.2]), jnp.array([1.0, 0.5]), jnp.asarray(1.1)
    L_a = dynamics.general(loss, K1, K2, t_ref=0.0)
    L_b = dynamics.general(loss, K1, K2, t_ref=1.0)
    E_a, E_b = lnn.energy(L_a)(t, w, v), lnn.energy(L_b)(t, w, v)
    shift = float(L_a.log_weight(jnp.asarray(1.0)))
    assert abs(shift) > 0.5
    assert abs(float(E_a / E_b) - np.exp(shift)) < 1e-13
    E0_a = lnn.energy(L_a, reduced=True)(t, w, v)
    E0_b = lnn.energy(L_b, reduced=True)(t, w, v)
    assert float(E0_a) == float(E0_b)
    assert abs(float(E0_a) - (0.5 * float(v @ v) + float(loss(w) / K2(t)))) < 1e-14
