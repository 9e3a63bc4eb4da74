"""lnn.variational: variational integrators from any Lagrangian, and their exact
discrete Noether charges."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

import lagrangian_nn as lnn
from experiments import __main__ as cli
from tests.helpers import charged_particle, damped_oscillator, kepler

V = lnn.variational
ROT2 = jnp.array([[0.0, -1.0], [1.0, 0.0]])


def _plain(L):
    """`L` as a plain callable (hides the declared mass and the Table-1 type: the
    mass is then read from the program)."""
    return lambda t, q, v: L(t, q, v)


def _opaque(L):
    """`L` behind a `lax.cond`, which the program reading does not follow: the
    integrator takes its general path, Newton on every step."""
    return lambda t, q, v: jax.lax.cond(t > -1e300, L, L, t, q, v)


def _has_loop(discrete, q0, v0):
    """Whether the compiled run of `discrete` contains a loop other than the step
    loop itself (a root solve, or the power iteration's `fori_loop` counted
    apart)."""
    saving = V._integrate._Saving(3, 1, False)
    run = lambda q, v: V._integrate._run(
        discrete, None, np.float64(0.0), np.float64(0.1), q, v, 32, saving
    )
    return str(jax.make_jaxpr(run)(q0, v0)).count("while[")


def _slope(dts, errs):
    return np.polyfit(np.log(dts), np.log(errs), 1)[0]


# --- (1) the integrators -------------------------------------------------------------


@pytest.mark.parametrize("cls", [V.Midpoint, V.Trapezoid, V.Lobatto])
def test_convergence_order_harmonic(cls):
    """Order 2 (midpoint, trapezoid) and 4 (Lobatto) against cos/sin, fitted over dt
    (the step count is fixed, so one compiled program serves every dt; the error
    is read at t = 2)."""
    omega = 1.3
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.5 * omega**2 * jnp.sum(q**2)
    q0, v0 = jnp.array([1.0, 0.5]), jnp.array([0.0, 1.0])
    t, dts, errs = 2.0, np.array([0.1, 0.05, 0.025]), []
    exact = q0 * np.cos(omega * t) + v0 / omega * np.sin(omega * t)
    for dt in dts:
        tr = V.integrate(cls(L), q0, v0, t0=0.0, dt=dt, n_steps=80)
        errs.append(float(jnp.max(jnp.abs(tr.q[round(t / dt)] - exact))))
    assert abs(_slope(dts, errs) - cls.order) < 0.1, errs


@pytest.mark.parametrize("cls", [V.Trapezoid, V.Lobatto])
def test_convergence_order_damped_conformal(cls):
    """`damped` = Conformal(t/κ, ...): q̈ + γq̇ + ω²q = 0 against its closed form. The
    trapezoid steps explicitly; Lobatto solves through the conformal factorisation."""
    gamma, omega = 0.3, 2.0
    kappa = 1 / gamma
    L = lnn.dynamics.damped(lambda q: 0.5 * omega**2 * kappa * jnp.sum(q**2), kappa)
    exact = damped_oscillator(gamma, omega)
    q0, v0 = jnp.array([1.0]), jnp.array([0.3])
    t, dts, errs = 2.0, np.array([0.1, 0.05, 0.025]), []
    for dt in dts:
        tr = V.integrate(cls(L), q0, v0, t0=0.0, dt=dt, n_steps=80)
        errs.append(float(jnp.abs(tr.q[round(t / dt), 0] - exact(t, q0[0], v0[0]))))
    assert abs(_slope(dts, errs) - cls.order) < 0.15, errs


def test_trapezoid_of_nd_is_eq21():
    """Eq. 21 is the trapezoid variational integrator of ½|ẇ|² − L(w) with h = √η:
    the same iterates to rounding, from the same (w0, w1)."""
    loss = lambda w: 0.25 * jnp.sum(w**4) + 0.5 * jnp.sum((w - 0.3) ** 2)
    w0, v0 = jnp.array([1.0, -0.5, 0.2]), jnp.array([0.0, 1.0, -0.4])
    eta = 0.01
    h = eta**0.5
    opt = lnn.optim.newtonian(eta, velocity=v0)
    state, w, ws = opt.init(w0), w0, [w0]
    update = jax.jit(lambda w, s: opt.update(jax.grad(loss)(w), s, w))
    for _ in range(200):
        u, state = update(w, state)
        w = w + u
        ws.append(w)
    ws = jnp.stack(ws)
    # eq. 21's first displacement is h v0 − η∇L(w0); the trapezoid's is
    # h (p0 − (h/2)∇L(w0)), so start it with p0 = v0 − (h/2)∇L(w0)
    p0 = v0 - 0.5 * h * jax.grad(loss)(w0)
    L = lnn.dynamics.newtonian(loss)
    tr = V.integrate(V.Trapezoid(L), w0, p0, t0=0.0, dt=h, n_steps=200)
    assert float(jnp.max(jnp.abs(tr.q - ws))) < 1e-13
    # and without the shifted start it is a different sequence (the test can fail)
    off = V.integrate(V.Trapezoid(L), w0, v0, t0=0.0, dt=h, n_steps=200)
    assert float(jnp.max(jnp.abs(off.q - ws))) > 1e-4


def test_explicit_path_matches_newton_and_has_no_solve():
    """The explicit Störmer–Verlet path equals the general Newton path of the same
    L, for ND and for NAGF's t³, whether L is built by `lnn.dynamics` or written as
    a plain function (its mass read from the program)."""
    loss = lambda q: 0.25 * jnp.sum(q**4) + 0.5 * jnp.sum(q**2)
    q0, v0 = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    for L, t0 in (
        (lnn.dynamics.newtonian(loss), 0.0),
        (lnn.dynamics.nesterov(loss), 1.0),
    ):
        kw = dict(t0=t0, dt=0.05, n_steps=60)
        slow = V.integrate(V.Trapezoid(_opaque(L)), q0, v0, **kw)
        for fast_L in (L, _plain(L)):
            fast = V.integrate(V.Trapezoid(fast_L), q0, v0, **kw)
            assert float(jnp.max(jnp.abs(fast.q - slow.q))) < 1e-12
            if t0 == 0.0:
                assert float(jnp.max(jnp.abs(fast.qdot - slow.qdot))) < 1e-12
    # a mass that grows with time (e^{t/2}, written into a plain function) and a
    # term b(t)·q̇: the explicit step's M(t) and b(t) terms, against Newton
    for L in (
        lambda t, q, v: (
            jnp.exp(0.5 * t) * (0.5 * jnp.sum(v**2) - loss(q)) + jnp.sin(t) * jnp.sum(v)
        ),
    ):
        kw = dict(t0=0.3, dt=0.05, n_steps=60)
        slow = V.integrate(V.Trapezoid(_opaque(L)), q0, v0, **kw)
        fast = V.integrate(V.Trapezoid(L), q0, v0, **kw)
        # explicit: the loops of newtonian's run, no root solve
        assert _has_loop(V.Trapezoid(L), q0, v0) == _has_loop(
            V.Trapezoid(lnn.dynamics.newtonian(loss)), q0, v0
        )
        assert float(jnp.max(jnp.abs(fast.q - slow.q))) < 1e-12
        assert float(jnp.max(jnp.abs(fast.qdot - slow.qdot))) < 1e-11
    # the explicit run's program has the step loops (the outer scan over saved
    # points and the power iteration) and no root-finding loop; the opaque one has
    # Newton's while loop in every step
    newtonian = lnn.dynamics.newtonian(loss)
    explicit = _has_loop(V.Trapezoid(newtonian), q0, v0)
    assert _has_loop(V.Trapezoid(_plain(newtonian)), q0, v0) == explicit
    assert _has_loop(V.Trapezoid(_opaque(newtonian)), q0, v0) > explicit


class _UserTrapezoid(V.AbstractDiscreteLagrangian):
    """The trapezoid rule written by a user: it declares no explicit step."""

    def reduced(self, t, h, q0, z, q1):
        del z
        v = (q1 - q0) / h
        return 0.5 * h * (self.inner(t, q0, v) + self.inner(t + h, q1, v))


def test_explicit_step_is_declared_by_the_discrete_lagrangian():
    """A discrete Lagrangian steps explicitly only where it declares so (`Trapezoid`):
    the same rule written by a user is solved by Newton, and both paths agree."""
    loss = lambda q: 0.25 * jnp.sum(q**4) + 0.5 * jnp.sum(q**2)
    L = lnn.dynamics.newtonian(loss)
    q0, v0 = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    assert _has_loop(_UserTrapezoid(L), q0, v0) > _has_loop(V.Trapezoid(L), q0, v0)
    kw = dict(t0=0.0, dt=0.05, n_steps=20)
    user = V.integrate(_UserTrapezoid(L), q0, v0, **kw)
    built_in = V.integrate(V.Trapezoid(L), q0, v0, **kw)
    assert float(jnp.max(jnp.abs(user.q - built_in.q))) < 1e-12


def test_nesterov_matches_simulate():
    """NAGF's t³ Lagrangian (t0 > 0): the Lobatto integrator agrees with the
    Runge–Kutta solution of the Table-1 ODE."""
    loss = lambda q: 0.5 * jnp.sum(jnp.array([1.0, 3.0]) * q**2)
    L = lnn.dynamics.nesterov(loss)
    q0, v0 = jnp.array([1.0, 1.0]), jnp.array([0.0, 0.0])
    tr = V.integrate(V.Lobatto(L), q0, v0, t0=0.5, dt=0.05, n_steps=60, save_every=60)
    ref = lnn.simulate(L, q0, v0, t0=0.5, t1=3.5, rtol=1e-11, atol=1e-12)
    assert float(jnp.max(jnp.abs(tr.q[-1] - ref.q[-1]))) < 1e-5


def test_huge_conformal_weight_does_not_overflow():
    """e^{t/κ} with t/κ = 1e7: the reduced steps never form the weight."""
    kappa = 1e-3
    L = lnn.dynamics.damped(lambda q: 0.5 * jnp.sum(q**2), kappa)
    tr = V.integrate(
        V.Trapezoid(L), jnp.array([1.0]), jnp.array([0.0]), t0=1e4, dt=1e-4, n_steps=50
    )
    assert np.all(np.isfinite(np.asarray(tr.q)))
    # overdamped: q̇ ≈ −q, so q decays like e^{−(t − t0)}
    assert abs(float(tr.q[-1, 0]) - np.exp(-50 * 1e-4)) < 1e-3


# --- symplecticity -------------------------------------------------------------------


def _omega_defect(discrete, t, dt, q, p, factor):
    n = q.size

    def flat(x):
        q1, p1 = V.step(discrete, t, dt, x[:n], x[n:])
        return jnp.concatenate([q1, p1])

    M = jax.jacfwd(flat)(jnp.concatenate([q, p]))
    Om = jnp.block([[jnp.zeros((n, n)), jnp.eye(n)], [-jnp.eye(n), jnp.zeros((n, n))]])
    return float(jnp.max(jnp.abs(M.T @ Om @ M - factor * Om)))


@pytest.mark.parametrize("cls", [V.Midpoint, V.Trapezoid, V.Lobatto])
def test_symplectic(cls):
    """MᵀΩM = Ω for the one-step map of a non-separable Lagrangian (Kepler plus a
    magnetic term), and e^{−Δs}Ω for `damped` (explicit and implicit paths)."""
    L_mag, _, _ = charged_particle()
    L = lambda t, q, v: kepler()(t, q, v) + L_mag(t, q, v)
    q, p = jnp.array([1.0, 0.2]), jnp.array([0.1, 0.9])
    defect = _omega_defect(cls(L), 0.0, 0.1, q, p, 1.0)
    assert defect < 1e-13
    if cls is V.Lobatto:
        return  # (compiling its Jacobian again costs ~10 s; the conformal weights
        # enter Lobatto as they enter Midpoint, which is checked)
    kappa, dt = 0.7, 0.1
    Ld = lnn.dynamics.damped(lambda w: jnp.sum(w**4) + jnp.sum(w**2), kappa)
    factor = np.exp(-dt / kappa)
    assert _omega_defect(cls(Ld), 2.0, dt, q, p, factor) < 1e-13
    # control: the conservative relation fails for the damped map
    assert _omega_defect(cls(Ld), 2.0, dt, q, p, 1.0) > 1e-2


# --- (2) discrete Noether charges ----------------------------------------------------


def _orbit_loss(w):
    # the paper's rotation-symmetric orbits (Section 6.1): a Mexican hat in 3-D
    return (jnp.sum(w**2) - 1.0) ** 2


def _so3():
    gens = []
    for i, j in ((0, 1), (0, 2), (1, 2)):
        A = jnp.zeros((3, 3)).at[i, j].set(-1.0).at[j, i].set(1.0)
        gens.append(lnn.Generator(lambda t, q, A=A: A @ q))
    return gens


@pytest.mark.parametrize("cls", [V.Trapezoid, V.Lobatto])
def test_rotation_charges_conserved(cls):
    """The three so(3) charges of ND on the orbit loss, conserved to rounding; the
    Lagrangian's own `noether_charge` on the saved velocities gives the same J_k."""
    L = lnn.dynamics.newtonian(_orbit_loss)
    Ld = cls(L)
    q0, v0 = jnp.array([1.2, 0.1, -0.3]), jnp.array([-0.2, 1.0, 0.5])
    tr = V.integrate(Ld, q0, v0, t0=0.0, dt=0.05, n_steps=400)
    # Lobatto's node velocities (−3q0 + 4qm − q1)/h cancel terms of size 8|q|, so its
    # rounding per step is a few times the trapezoid's (measured: 8e-14 vs 1e-14)
    tol = 1e-13 if cls is V.Trapezoid else 3e-13
    for gen in _so3() if cls is V.Trapezoid else _so3()[:1]:
        J = np.asarray(V.discrete_noether_charge(Ld, gen, tr, 0.05))
        assert np.max(np.abs(J - J[0])) < tol * max(1.0, abs(J[0]))
        Q = np.asarray(tr.evaluate(lnn.noether_charge(L, gen)))
        assert np.max(np.abs(Q - J)) < 1e-13
    if cls is V.Lobatto:
        return
    # control: an anisotropic loss breaks the rotation about z
    Lb = lnn.dynamics.newtonian(lambda w: _orbit_loss(w) + 0.3 * w[0] ** 2)
    trb = V.integrate(cls(Lb), q0, v0, t0=0.0, dt=0.05, n_steps=400)
    Jb = np.asarray(V.discrete_noether_charge(cls(Lb), _so3()[0], trb, 0.05))
    assert np.max(np.abs(Jb - Jb[0])) > 1e-2


def test_magnetic_canonical_angular_momentum():
    """A charged particle in a uniform field: the canonical angular momentum
    m(q×v) + (eB/2)|q|² is conserved to rounding by the midpoint integrator
    (general Newton path), and the orbit converges to the exact circle."""
    L, exact, lz = charged_particle()
    Ld = V.Midpoint(L)
    q0, v0 = jnp.array([1.0, 0.0]), jnp.array([0.2, 0.7])
    tr = V.integrate(Ld, q0, v0, t0=0.0, dt=0.02, n_steps=500)
    gen = lnn.Generator(lambda t, q: ROT2 @ q)
    J = np.asarray(V.discrete_noether_charge(Ld, gen, tr, 0.02))
    # rounding: a few ulps of |J| per step at most, accumulated over the 500 steps
    # (measured below 1e-13 and 1.6e-13 with XLA's default and reduced LLVM
    # optimisation)
    eps = np.finfo(np.float64).eps
    assert np.max(np.abs(J - J[0])) < 4 * 500 * eps * abs(J[0])
    # the discrete charge is the textbook formula at the Legendre velocities
    assert np.max(np.abs(np.asarray(tr.evaluate(lz)) - J)) < 1e-13
    assert float(jnp.max(jnp.abs(tr.q[-1] - exact(10.0, q0, v0)))) < 1e-3


def test_conformal_charges_decay_exactly():
    """For `damped` (L = e^{t/κ}L0) and a rotation, the reduced discrete charge obeys
    J̃_{k+1} = e^{−Δs} J̃_k exactly."""
    kappa, dt = 0.5, 0.05
    L = lnn.dynamics.damped(lambda w: jnp.sum(w**2) ** 2, kappa)
    Ld = V.Trapezoid(L)
    tr = V.integrate(
        Ld, jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), t0=0.0, dt=dt, n_steps=100
    )
    gen = lnn.Generator(lambda t, q: ROT2 @ q)
    J = np.asarray(V.discrete_noether_charge(Ld, gen, tr, dt, reduced=True))
    predicted = J[0] * np.exp(-np.arange(len(J)) * dt / kappa)  # falls by e^{-10}
    assert np.max(np.abs(J / predicted - 1)) < 1e-12
    Jfull = np.asarray(V.discrete_noether_charge(Ld, gen, tr, dt))
    assert np.max(np.abs(Jfull / J[0] - 1)) < 1e-12  # e^{s}J̃ conserved
    # control: the undamped decay law is wrong by a factor e^{10}
    assert np.max(np.abs(J / J[0] - 1)) > 0.9


def _net():
    key = jax.random.PRNGKey(0)
    model = lnn.nn.MLP([3, 4, 1], [lnn.nn.ReLU(), lnn.nn.Identity()], key=key)
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    # the data span only the first input coordinate, so rotating inputs 2 and 3 is a
    # symmetry of the loss
    x = jnp.zeros((8, 3)).at[:, 0].set(jax.random.normal(kx, (8,)))
    y = jax.random.normal(ky, (8, 1))
    return model, lnn.nn.make_loss(x, y, "squared_error")


def test_relu_network_charges_under_nd():
    """ND on a ReLU network. A symmetry of loss *and* kinetic term (rotating the
    inputs: W1 ↦ W1 e^{εP}, orthogonal) has an exactly conserved discrete charge. The
    neuron rescaling leaves the loss invariant but not ½|ẇ|², so it has no conserved
    charge; the exact discrete balance J_n − J_0 = Σ R_k holds instead."""
    model, loss = _net()
    L = lnn.dynamics.newtonian(loss)
    Ld = V.Trapezoid(L)
    v0 = jax.tree.map(lambda w: 0.3 * jnp.ones_like(w), model)
    tr = V.integrate(Ld, model, v0, t0=0.0, dt=0.05, n_steps=200)
    P = jnp.zeros((3, 3)).at[1, 2].set(-1.0).at[2, 1].set(1.0)
    rot = lnn.nn.rotate_inputs(model, P)
    J = np.asarray(V.discrete_noether_charge(Ld, rot, tr, 0.05))
    assert np.max(np.abs(J - J[0])) < 1e-13 * max(1.0, np.max(np.abs(J)))
    assert (
        np.max(np.abs(np.asarray(tr.evaluate(lnn.noether_charge(L, rot))) - J)) < 1e-13
    )
    scale = lnn.nn.rescale(model, 1, 0)
    Js = np.asarray(V.discrete_noether_charge(Ld, scale, tr, 0.05))
    R = np.asarray(V.discrete_invariance_residual(Ld, scale, tr, 0.05))
    assert np.max(np.abs(Js - Js[0])) > 1e-3  # not conserved
    balance = Js[1:] - Js[0] - np.cumsum(R)
    assert np.max(np.abs(balance)) < 1e-13 * max(1.0, np.max(np.abs(Js)))


# --- (3) long-time energy ------------------------------------------------------------


def test_kepler_energy_bounded_vs_tsit5():
    """Kepler (e = 0.5) over 200 periods: the leapfrog energy error stays bounded at
    its first-period size; Tsit5 at the same number of gradients (6 per step, so a
    step 6x larger) drifts steadily, ending well above that."""
    k = 1.0
    L = lnn.dynamics.newtonian(lambda q: -k / jnp.linalg.norm(q))
    ecc = 0.5
    q0 = jnp.array([1.0 - ecc, 0.0])
    v0 = jnp.array([0.0, np.sqrt((1 + ecc) / (1 - ecc))])
    period, per = 2 * np.pi, 300
    dt = period / per
    n_periods = 200
    tr = V.integrate(
        V.Trapezoid(L),
        q0,
        v0,
        t0=0.0,
        dt=dt,
        n_steps=per * n_periods,
        save_every=per // 4,
    )
    E = np.asarray(tr.evaluate(lnn.energy(L)))
    err = np.abs(E - E[0])
    first, last = np.max(err[: 4 * 10]), np.max(err[-4 * 10 :])
    assert last < 2.0 * first  # bounded: no growth over 190 periods
    import diffrax

    rk = lnn.simulate(
        L,
        q0,
        v0,
        t0=0.0,
        t1=n_periods * period,
        dt0=6 * dt,
        stepsize_controller=diffrax.ConstantStepSize(),
        ts=jnp.linspace(0, n_periods * period, 201),
        max_steps=10**5,
    )
    Erk = np.asarray(rk.evaluate(lnn.energy(L)))
    drift = np.abs(Erk - Erk[0])
    assert drift[-1] > 5 * drift[20] > 0  # grows with time
    assert drift[-1] > 2 * np.max(err)  # measured: 2.3e-3 against 6e-4


# --- errors --------------------------------------------------------------------------


def _ho():
    return lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.5 * jnp.sum(q**2)


def test_error_plain_lagrangian_as_discrete():
    with pytest.raises(ValueError, match="`discrete`.*Trapezoid\\(L\\)"):
        V.integrate(_ho(), jnp.ones(2), jnp.ones(2), t0=0.0, dt=0.1, n_steps=3)


def test_error_lagrangian_not_callable():
    with pytest.raises(ValueError, match="`lagrangian` must be a callable"):
        V.Trapezoid(3.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dt": -0.1}, "`dt` must be > 0; got dt = -0.1"),
        ({"n_steps": 0}, "`n_steps` must be an int >= 1; got 0"),
        ({"save_every": 4}, "`save_every` must divide `n_steps`"),
        ({"solver": "newton"}, "`solver` must be an `optimistix` root finder"),
        ({"dt": float("nan")}, "`dt` must be finite; got dt = nan"),
        ({"t0": jnp.zeros(2)}, "`t0` must be a real scalar time"),
        ({"q0": jnp.array([1.0, jnp.nan])}, "`q0` .*holds NaN or inf"),
    ],
)
def test_error_bad_arguments(kwargs, match):
    args = {"q0": jnp.ones(2), "t0": 0.0, "dt": 0.1, "n_steps": 6, **kwargs}
    q0 = args.pop("q0")
    with pytest.raises(ValueError, match=match):
        V.integrate(V.Midpoint(_ho()), q0, jnp.ones(2), **args)


def test_error_qdot0_structure():
    with pytest.raises(ValueError, match="`qdot0`"):
        V.integrate(
            V.Midpoint(_ho()), jnp.ones(2), jnp.ones(3), t0=0.0, dt=0.1, n_steps=2
        )


def test_error_nesterov_t0():
    L = lnn.dynamics.nesterov(lambda q: jnp.sum(q**2))
    with pytest.raises(ValueError, match="t > 0"):
        V.integrate(V.Trapezoid(L), jnp.ones(2), jnp.ones(2), t0=0.0, dt=0.1, n_steps=2)


def test_error_solver_fails_after_loop():
    """A root solve that cannot converge is reported once, after the loop."""
    with pytest.raises(Exception, match="did not converge"):
        V.integrate(
            V.Midpoint(kepler()),
            jnp.array([1.0, 0.0]),
            jnp.array([0.0, 1.0]),
            t0=0.0,
            dt=0.1,
            n_steps=4,
            solver=optx.Newton(rtol=1e-30, atol=1e-30),
            max_steps=2,
        )


def test_error_charge_arguments():
    Ld = V.Midpoint(_ho())
    tr = V.integrate(
        Ld, jnp.ones(2), jnp.zeros(2), t0=0.0, dt=0.1, n_steps=4, save_every=2
    )
    gen = lnn.Generator(lambda t, q: ROT2 @ q)
    with pytest.raises(ValueError, match="`traj` must be saved at every step"):
        V.discrete_noether_charge(Ld, gen, tr, 0.1)
    with pytest.raises(ValueError, match="`gen` must be a point symmetry"):
        V.discrete_noether_charge(Ld, lnn.Generator(gen.xi, lambda t, q: 1.0), tr, 0.2)
    with pytest.raises(ValueError, match="`gen` must be an `lnn.Generator`"):
        V.discrete_noether_charge(Ld, lambda t, q: q, tr, 0.2)


# --- (4) the experiment, end to end --------------------------------------------------


def test_experiment_quick(tmp_path):
    assert (
        cli.main(["run", "variational_vs_rk", "--quick", "--out", str(tmp_path)]) == 0
    )
    folder = tmp_path / "variational_vs_rk"
    res = json.loads((folder / "results.json").read_text())
    assert (folder / "arrays.npz").exists()
    for stem in ("energy", "charges"):
        assert (folder / f"{stem}.png").stat().st_size > 10_000
    # the network horizon stays where leapfrog and Tsit5 (6h) are both stable
    assert res["config"]["net_horizon_reason"]
    assert res["metrics"]["net_vi_h_sqrt_lambda_max"] < 2
    assert res["metrics"]["net_rk_amplification_bound"] <= 1.1
    for c in res["claims"]:
        assert c["holds"], c
        if c["evidence"]:
            assert c["control"]["missed"], c


# --- (5) solves measured relative to the size of their terms ------------------------


class _Scaled(eqx.Module):
    """c·L0 with c a traced array: one compiled program serves every c."""

    c: jax.Array
    inner: object = eqx.field(static=True)

    def __call__(self, t, q, v):
        return self.c * self.inner(t, q, v)


def _anharmonic(t, q, v):
    return 0.5 * jnp.sum(v**2) - 0.5 * jnp.sum(q**2) - 0.1 * jnp.sum(q**4)


@pytest.mark.parametrize(
    "dtype, n, factors",
    [(jnp.float32, 50, (1e-6, 1e2, 1e6)), (jnp.float64, 4, (1e4, 1e6, 1e-6))],
)
def test_scaled_lagrangian_integrates_identically(dtype, n, factors):
    """c·L has the dynamics of L: the Newton solves stop on the residual relative to
    its terms, so c ∈ [1e-6, 1e6] gives the trajectory of c = 1 to rounding (and
    bitwise for c a power of 2). An absolute stopping test raised "did not converge"
    from c = 100 in float32 (50 dof) and from c = 1e4 in float64."""
    q0 = jnp.linspace(-1, 1, n).astype(dtype)
    v0 = jnp.cos(jnp.arange(n)).astype(dtype)
    eps = float(jnp.finfo(dtype).eps)

    def run(c):
        L = _Scaled(jnp.asarray(c, dtype), _anharmonic)
        return V.integrate(V.Midpoint(L), q0, v0, t0=0.0, dt=0.05, n_steps=20).q

    base = run(1.0)
    assert bool(jnp.all(run(2.0**-19) == base))
    for c in factors:
        # rounding: a few ulps of |q| ~ 1 per step, over 20 steps
        assert float(jnp.max(jnp.abs(run(c) - base))) < 20 * 16 * eps, c


def test_growing_weight_as_a_plain_function():
    """e^{γt}L0 written as a plain function, over a run where the weight reaches
    e^{30}: the same trajectory as the reduced `Conformal(γt, L0)`, for dt and dt/5
    (with an absolute stopping test both raised, the smaller dt sooner)."""
    gamma, omega = 1.0, 2.0
    L0 = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.5 * omega**2 * jnp.sum(q**2)
    plain = lambda t, q, v: jnp.exp(gamma * t) * L0(t, q, v)
    conformal = lnn.Conformal(lambda t: gamma * t, L0)
    q0, v0 = jnp.array([1.0, -0.5]), jnp.array([0.3, 0.2])
    exact = damped_oscillator(gamma, omega)
    errs = []
    for dt, n in ((0.05, 600), (0.01, 3000)):
        kw = dict(t0=0.0, dt=dt, n_steps=n, save_every=n // 10)
        tr = V.integrate(V.Midpoint(plain), q0, v0, **kw)
        ref = V.integrate(V.Midpoint(conformal), q0, v0, **kw)
        # q decays like e^{-15}: compare relative to its size at each time
        rel = jnp.abs(tr.q - ref.q) / jnp.max(jnp.abs(ref.q), axis=1, keepdims=True)
        assert float(jnp.max(rel)) < 1e-10
        errs.append(abs(float(tr.q[1, 0]) - exact(3.0, 1.0, 0.3)))
    # and it is the damped oscillator, to second order (5x smaller dt: 25x)
    assert 15 < errs[0] / errs[1] < 35, errs


def test_float32_offset_positions_small_dt():
    """Positions of size 10 moving by 1e-3 per step in float32: the residual's floor
    ε|q|/dt is set by the positions' rounding, and it is measured against the size of
    those position terms, so a smaller dt does not turn into a failure."""
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.5 * jnp.sum((q - 10.0) ** 2)
    q0, v0 = jnp.array([11.0, 9.0], jnp.float32), jnp.array([0.0, 1.0], jnp.float32)
    for dt in (0.01, 0.001):
        kw = dict(t0=0.0, dt=dt, n_steps=100)
        tr = V.integrate(V.Midpoint(L), q0, v0, **kw)
        ref = V.integrate(V.Midpoint(L), q0.astype(float), v0.astype(float), **kw)
        t = 100 * dt
        exact = 10.0 + np.array([np.cos(t), -np.cos(t) + np.sin(t)])
        assert np.max(np.abs(np.asarray(ref.q[-1]) - exact)) < t * dt**2 / 4
        # float32: a few ulps of |q| = 11 per step (measured 1.2e-4 and 5.1e-4)
        err = float(jnp.max(jnp.abs(tr.q.astype(float) - ref.q)))
        assert err < 100 * 8 * 1.2e-7 * 11, (dt, err)


class _Recording(optx.Newton):
    """Newton that records the structure of every problem it is given."""

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        _SEEN.append(jax.tree.structure(y))
        return super().init(fn, y, args, options, f_struct, aux_struct, tags)


_SEEN = []


def test_user_solver_reaches_every_solve():
    """`solver=` is used for the step (internal point and q_{k+1}), the Legendre
    inversion of the saved velocities, and the internal stages of the charges."""
    L = lambda t, q, v: jnp.sum(jnp.cosh(v)) - 0.5 * jnp.sum(q**2)  # p = sinh(q̇)
    solver = _Recording(rtol=1e-12, atol=1e-12)
    q0, v0 = jnp.array([1.0, 0.5]), jnp.array([0.0, 0.3])
    Ld = V.Lobatto(L)
    _SEEN.clear()
    tr = V.integrate(Ld, q0, v0, t0=0.0, dt=0.1, n_steps=4, solver=solver)
    step_struct = jax.tree.structure(((q0,), q0))
    assert step_struct in _SEEN  # the step
    assert jax.tree.structure(q0) in _SEEN  # the Legendre inversion
    _SEEN.clear()
    V.discrete_noether_charge(
        Ld, lnn.Generator(lambda t, q: 0 * q), tr, 0.1, solver=solver
    )
    assert jax.tree.structure((q0,)) in _SEEN  # the Lobatto stage
    # and the velocities invert p = sinh(q̇): the saved q̇ are the discrete momenta's
    _, ps = V.integrate(
        Ld, q0, v0, t0=0.0, dt=0.1, n_steps=4, solver=solver, return_momenta=True
    )
    assert float(jnp.max(jnp.abs(jnp.sinh(tr.qdot) - ps))) < 1e-13


def test_unconverged_stage_of_a_charge_raises():
    """The internal point of a Lobatto step that does not converge is an error,
    never a charge."""
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.25 * jnp.sum(q**4)
    Ld = V.Lobatto(L)
    tr = V.integrate(
        Ld, jnp.array([1.0, 0.2]), jnp.array([0.0, 1.0]), t0=0.0, dt=0.1, n_steps=4
    )
    gen = lnn.Generator(lambda t, q: ROT2 @ q)
    strict = optx.Newton(rtol=1e-30, atol=1e-30)
    with pytest.raises(Exception, match="internal points.*did not converge"):
        V.discrete_noether_charge(Ld, gen, tr, 0.1, solver=strict, max_steps=1)
    with pytest.raises(Exception, match="internal points.*did not converge"):
        V.discrete_invariance_residual(Ld, gen, tr, 0.1, solver=strict, max_steps=1)
    V.discrete_noether_charge(Ld, gen, tr, 0.1)  # the default converges


def test_loose_solver_is_refused_naming_the_residual():
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.25 * jnp.sum(q**4)
    loose = optx.Newton(rtol=0.5, atol=0.5)
    with pytest.raises(Exception, match="of the size of its terms, above √ε"):
        V.integrate(
            V.Midpoint(L),
            jnp.array([1.0, 0.2]),
            jnp.array([0.0, 1.0]),
            t0=0.0,
            dt=0.1,
            n_steps=4,
            solver=loose,
        )


def test_root_far_from_the_predictor_is_flagged():
    """A stiff quartic, h²k = 2500: the Lobatto step from rest at q = 1 has a root at
    q ≈ 1233 (the physical motion stays in [−1, 1]). The linear model of the step
    equations at that root misses the residual at the predictor by more than half
    (Kantorovich), so it is refused; at h²k = 1 the step is accepted and near the
    exact motion (θ = 0.035 measured)."""
    k = 2500.0
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) - 0.25 * k * jnp.sum(q**4)
    q, p = jnp.array([1.0]), jnp.array([0.0])
    with pytest.raises(Exception, match="far from its predictor.*Reduce `dt`"):
        V.step(V.Lobatto(L), 0.0, 1.0, q, p)
    with pytest.raises(Exception, match="far from its predictor"):
        V.integrate(V.Lobatto(L), q, p, t0=0.0, dt=1.0, n_steps=2)
    q1, _ = V.step(V.Lobatto(L), 0.0, 0.02, q, p)
    ref = lnn.simulate(L, q, p, t0=0.0, t1=0.02, rtol=1e-11, atol=1e-12)
    assert abs(float(q1[0] - ref.q[-1, 0])) < 0.01


# --- (6) the explicit path: chosen from what L is; its cost and its limits -----------


def _leapfrog_exact(q0, v0, omega2, h, k):
    """Störmer–Verlet on q̈ = −ω²q in closed form: q_k = q0 cos kθ + B sin kθ with
    cos θ = 1 − h²ω²/2 and q_1 = q0 + h v0 − (h²/2) ω² q0 (for h ω < 2)."""
    theta = np.arccos(1 - 0.5 * h**2 * omega2)
    q1 = q0 + h * v0 - 0.5 * h**2 * omega2 * q0
    b = (q1 - q0 * np.cos(theta)) / np.sin(theta)
    return q0 * np.cos(k * theta) + b * np.sin(k * theta)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_plain_function_with_diagonal_mass_steps_explicitly(dtype):
    """L = ½Σ m_i q̇_i² − ½Σ k_i q_i² written as a plain function: the mass is read
    from the program, the step is Störmer–Verlet (no root solve), and the positions
    are leapfrog's closed form. A position-dependent mass or a magnetic term (a
    velocity-dependent potential) keeps the root solve."""
    m = np.array([1.0, 2.0, 0.5])
    k = np.array([1.0, 8.0, 3.0])
    L = lambda t, q, v: 0.5 * jnp.sum(m * v**2) - 0.5 * jnp.sum(k * q**2)
    q0 = jnp.array([1.0, -0.5, 0.3], dtype)
    v0 = jnp.array([0.2, 0.1, -1.0], dtype)
    h, n = 0.1, 40
    tr = V.integrate(V.Trapezoid(L), q0, v0, t0=0.0, dt=h, n_steps=n)
    assert tr.q.dtype == dtype
    exact = _leapfrog_exact(
        np.asarray(q0, float),
        np.asarray(v0, float),
        k / m,
        h,
        np.arange(n + 1)[:, None],
    )
    eps = float(jnp.finfo(dtype).eps)
    # rounding over 40 steps of |q| ~ 1
    assert float(np.max(np.abs(np.asarray(tr.q, float) - exact))) < 40 * 64 * eps
    if dtype == jnp.float32:
        return  # the structure of the program does not depend on the dtype
    loops = _has_loop(V.Trapezoid(L), q0, v0)
    assert loops == _has_loop(V.Trapezoid(lnn.dynamics.newtonian(jnp.sum)), q0, v0)
    varying = lambda t, q, v: 0.5 * jnp.sum((1 + q**2) * v**2) - 0.5 * jnp.sum(q**2)
    magnetic = charged_particle()[0]
    assert _has_loop(V.Trapezoid(varying), q0, v0) > loops
    assert _has_loop(V.Trapezoid(magnetic), q0[:2], v0[:2]) > loops


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_explicit_step_beyond_stability_limit_is_refused(dtype):
    """Störmer–Verlet is stable for dt·ω < 2. A stiff quadratic (ω = 100 next to
    ω = 1): dt·ω = 2.5 is refused naming dt and the limit dt < 0.02, for L built by
    `lnn.dynamics` and for the same L as a plain function; dt·ω = 1.5 runs, and its
    energy stays within the leapfrog bound."""
    stiff = jnp.array([1.0, 1e4], dtype)
    loss = lambda q: 0.5 * jnp.sum(stiff * q**2)
    q0, v0 = jnp.array([1.0, 1e-2], dtype), jnp.zeros(2, dtype)
    Ls = [lnn.dynamics.newtonian(loss)]
    if dtype == jnp.float64:
        Ls.append(_plain(Ls[0]))
    for L in Ls:
        with pytest.raises(
            ValueError, match=r"dt = 0\.025 .*dt·ω = 2\.5.*dt < 0\.02\b"
        ):
            V.integrate(V.Trapezoid(L), q0, v0, t0=0.0, dt=0.025, n_steps=200)
        tr = V.integrate(V.Trapezoid(L), q0, v0, t0=0.0, dt=0.015, n_steps=200)
        energy = 0.5 * jnp.sum(tr.qdot**2, axis=1) + jax.vmap(loss)(tr.q)
        # leapfrog's energy error for h ω = 1.5 is O(1) of the stiff mode's energy
        # (0.5 here), never growth: the unstable run reaches 1e30 within 200 steps
        assert float(jnp.max(energy)) < 10 * float(energy[0])
    # under the user's `jit` (dt traced) the refusal rides on the positions
    positions = jax.jit(
        lambda dt: V.integrate(V.Trapezoid(Ls[0]), q0, v0, t0=0.0, dt=dt, n_steps=200).q
    )
    assert bool(jnp.all(jnp.isfinite(positions(0.015))))
    with pytest.raises(Exception, match="stability limit"):
        jax.block_until_ready(positions(0.025))


def test_python_numbers_and_new_times_do_not_recompile():
    """Python floats are arrays of the default dtype (q0 = 1.0 used to fail on
    `.dtype`), and t0, dt are arguments of one compiled program: new values do not
    trace L again. The result is the closed form for each (t0, dt)."""
    traces = []

    def L(t, q, v):
        traces.append(1)  # runs only while tracing
        return 0.5 * jnp.sum(v**2) - 0.5 * 4.0 * jnp.sum(q**2)

    for cls in (V.Trapezoid, V.Midpoint):
        Ld = cls(L)
        tr = V.integrate(Ld, 1.0, 0.0, t0=0.0, dt=0.1, n_steps=5)
        assert tr.q.shape == (6,)
        before = len(traces)
        for t0, dt in ((0.3, 0.07), (1.5, 0.05)):
            tr = V.integrate(Ld, 1.0, 0.0, t0=t0, dt=dt, n_steps=5)
            assert len(traces) == before, (cls, t0, dt)
            np.testing.assert_allclose(np.asarray(tr.ts), t0 + dt * np.arange(6))
            if cls is V.Trapezoid:
                exact = _leapfrog_exact(1.0, 0.0, 4.0, dt, np.arange(6))
                assert float(np.max(np.abs(np.asarray(tr.q) - exact))) < 1e-12


def test_implicit_steps_are_matrix_free_above_the_dense_limit():
    """Midpoint of a harmonic chain is the implicit midpoint rule, a linear solve
    per step in closed form. With 70 coordinates (above the dense limit, 64) the
    Newton corrections are GMRES on Jacobian-vector products: the program holds no
    70 × 70 array, and the positions match the closed form."""
    n, h, steps = 70, 0.1, 6
    K = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)

    def L(t, q, v):  # ½|v|² − ½ qᵀKq with fixed ends, written without K
        d = jnp.diff(jnp.concatenate([jnp.zeros(1), q, jnp.zeros(1)]))
        return 0.5 * jnp.sum(v**2) - 0.5 * jnp.sum(d**2)

    q0 = np.sin(np.linspace(0, np.pi, n))
    v0 = np.zeros(n)
    tr = V.integrate(
        V.Midpoint(L), jnp.asarray(q0), jnp.asarray(v0), t0=0.0, dt=h, n_steps=steps
    )
    # p0 = −D1 L_d(q0, q1) and q1 from [(1/h) + (h/4) K] q1 = p0 + q0/h − (h/4) K q0
    A = np.eye(n) / h + h / 4 * K
    q, p, ref = q0, v0, [q0]
    for _ in range(steps):
        q1 = np.linalg.solve(A, p + q / h - h / 4 * K @ q)
        p = (q1 - q) / h - h / 4 * K @ (q + q1)
        q = q1
        ref.append(q)
    assert float(np.max(np.abs(np.asarray(tr.q) - np.array(ref)))) < 1e-10
    saving = V._integrate._Saving(2, 1, False)
    run = lambda q, v: V._integrate._run(
        V.Midpoint(L), None, np.float64(0.0), np.float64(h), q, v, 32, saving
    )
    assert f"[{n},{n}]" not in str(jax.make_jaxpr(run)(q0, v0))
