r"""Derivatives through `lnn.simulate`, `lnn.simulate_ensemble` and the Euler–Lagrange
solve, against closed forms and central finite differences.

The problems are harmonic oscillators, whose end point $q(T)$ is known in closed form
as a function of the start and of the parameters, so $\partial q(T)/\partial q_0$ and
$\partial q(T)/\partial\theta$ are exact. Each derivative is taken by `jax.grad`
through the whole solve (diffrax's default `RecursiveCheckpointAdjoint`), on each path
of the Euler–Lagrange solve: the diagonal mass matrix read from the program (every
Table-1 Lagrangian), and conjugate gradients for a non-diagonal mass matrix. States
have `N = 20 > EulerLagrange.dense_threshold = 16` entries, so the dense path is not
used; each test forbids the paths it is not about, so a silent fall-back fails it.

Tolerances (float64, solves at `rtol = atol = 1e-12`):

- *Against the closed form:* the derivative of the computed solution differs from
  the exact derivative by the discretisation error of the variational equations,
  which the step-size controller keeps near the solve's own error, about
  `rtol · (number of periods)` ~ 1e-12 here; the bound `1e-9` relative leaves a factor
  1000 for the error's growth over the run. A missing term (e.g. the mass matrix's
  dependence on a parameter) is an O(1) error.
- *Against central finite differences* with step `h = 1e-4`: the truncation error is
  `h²/6 · |J'''|` ~ 1e-9 relative, and the adaptive steps make `J` smooth only to about
  the solve tolerance, which the quotient divides by `h`: `1e-12 / 1e-4 = 1e-8`. The
  bound `1e-6` relative is 100 times that sum.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from helpers import rel_err

import lagrangian_nn as lnn

N = 20  # > EulerLagrange.dense_threshold = 16: the matrix-free paths
T = 2.0
TIGHT = dict(t0=0.0, t1=T, rtol=1e-12, atol=1e-12)
H = 1e-4  # central finite-difference step
CLOSED_FORM_RTOL = 1e-9
FD_RTOL = 1e-6

_rng = np.random.default_rng(0)
Q0, V0, W = (jnp.asarray(_rng.normal(size=N)) for _ in range(3))


def _forbid(monkeypatch, *names):
    """Makes the named solve paths of `_euler_lagrange` fail if they are traced."""
    for name in names:

        def fail(*args, name=name, **kwargs):
            raise AssertionError(f"the solve took the path `{name}`")

        monkeypatch.setattr(lnn._euler_lagrange, name, fail)


def _central_difference(f, x, direction):
    return (f(x + H * direction) - f(x - H * direction)) / (2 * H)


def _value_and_grad(f, argnums):
    """`jax.value_and_grad(f)`, compiled once: the finite differences reuse the same
    program for their values (one compilation per test, not two)."""
    return jax.jit(jax.value_and_grad(f, argnums=argnums))


def _check_against_closed_form_and_differences(end, exact, args):
    """`jax.grad` of `end` with respect to all three `args` (the first is `Q0`) equals
    `jax.grad(exact)` to `CLOSED_FORM_RTOL`, and central differences to `FD_RTOL`
    (along a random direction for `Q0`). Returns the gradients."""
    value_and_grad = _value_and_grad(end, (0, 1, 2))
    value = lambda *a: value_and_grad(*a)[0]
    _, grads = value_and_grad(*args)
    expected = jax.jit(jax.grad(exact, argnums=(0, 1, 2)))(*args)
    for got, want in zip(grads, expected, strict=True):
        assert jnp.all(jnp.isfinite(got))
        assert rel_err(got, want) < CLOSED_FORM_RTOL

    direction = jnp.asarray(_rng.normal(size=N))
    fd = [
        _central_difference(lambda q0: value(q0, *args[1:]), Q0, direction),
        _central_difference(lambda a: value(Q0, a, args[2]), args[1], 1.0),
        _central_difference(lambda b: value(Q0, args[1], b), args[2], 1.0),
    ]
    ad = [grads[0] @ direction, grads[1], grads[2]]
    for got, want in zip(ad, fd, strict=True):
        assert rel_err(got, want) < FD_RTOL
    return grads


def _oscillator_end(q0, v0, frequency, t):
    return q0 * jnp.cos(frequency * t) + v0 / frequency * jnp.sin(frequency * t)


def test_grad_through_simulate_diagonal_mass(monkeypatch):
    r"""Newtonian dynamics $m\ddot q = -\omega^2 q$ from the Table-1 form
    $\tfrac m2\|\dot q\|^2 - \mathrm{loss}(q)$, with ω held by an `eqx.Module` loss and
    m the Lagrangian's mass: $q(T)$ oscillates at $\Omega = \omega/\sqrt m$.
    The derivative in m passes through the diagonal of M itself."""
    _forbid(monkeypatch, "solve_iterative", "solve_dense")

    # Defined here so that `simulate`'s compiled solve is traced afresh (and the
    # forbidden paths would be seen), whatever other tests compiled before.
    class Quadratic(eqx.Module):
        omega: jax.Array

        def __call__(self, q):
            return 0.5 * self.omega**2 * jnp.sum(q**2)

    def end(q0, omega, m):
        L = lnn.dynamics.KineticMinusPotential(Quadratic(omega), mass=m)
        return W @ lnn.simulate(L, q0, V0, **TIGHT).q[-1]

    def exact(q0, omega, m):
        return W @ _oscillator_end(q0, V0, omega / jnp.sqrt(m), T)

    args = (Q0, jnp.asarray(1.3), jnp.asarray(0.8))
    # ∂J/∂q0 = W cos(ΩT), by hand as well as by differentiating the closed form
    grad_q0 = jax.grad(exact)(*args)
    assert rel_err(grad_q0, W * jnp.cos(1.3 / jnp.sqrt(0.8) * T)) < 1e-14
    _check_against_closed_form_and_differences(end, exact, args)


def _spd(n, seed):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(n, n))
    return np.eye(n) + 0.5 * B @ B.T / n  # eigenvalues in [1, ~3]


def test_grad_through_simulate_conjugate_gradients(monkeypatch):
    r"""$L = \tfrac12\dot q^\top A(\mu)\dot q - \tfrac k2\|q\|^2$ with a full SPD
    $A(\mu) = A_0 + \mu S$: the acceleration $-kA^{-1}q$ is solved by CG, and its
    derivatives by the implicit function theorem. With $A = U\Lambda U^\top$,
    $q(T) = U[\cos(\Omega T)\,U^\top q_0 + \sin(\Omega T)/\Omega\;U^\top\dot q_0]$,
    $\Omega = \sqrt{k/\lambda}$. The derivative in μ needs the $-dM\,\ddot q$ term of
    the implicit derivative; the one in k the force's."""
    _forbid(monkeypatch, "solve_diagonal", "solve_declared", "solve_dense")
    A0 = jnp.asarray(_spd(N, 1))
    S = jnp.asarray(_spd(N, 2) - np.eye(N))

    class Quadratic(eqx.Module):
        k: jax.Array
        mu: jax.Array

        def __call__(self, t, q, v):
            return 0.5 * v @ (A0 + self.mu * S) @ v - 0.5 * self.k * q @ q

    def end(q0, k, mu):
        return W @ lnn.simulate(Quadratic(k, mu), q0, V0, **TIGHT).q[-1]

    def exact(q0, k, mu):
        lam, U = jnp.linalg.eigh(A0 + mu * S)
        freq = jnp.sqrt(k / lam)
        return W @ (U @ _oscillator_end(U.T @ q0, U.T @ V0, freq, T))

    args = (Q0, jnp.asarray(1.7), jnp.asarray(0.3))
    # The shortcut a = f / M00 is not the solution here, so CG must run.
    M = A0 + args[2] * S
    assert rel_err(-args[1] * Q0 / M[0, 0], jnp.linalg.solve(M, -args[1] * Q0)) > 0.1

    _check_against_closed_form_and_differences(end, exact, args)


def test_grad_through_simulate_ensemble(monkeypatch):
    r"""A batch of Newtonian oscillators with their own ω and start: the gradient of
    $\sum_i \langle w, q_i(T)\rangle$ with respect to the batched ω and $q_0$ is, member
    by member, the single oscillator's."""
    _forbid(monkeypatch, "solve_iterative", "solve_dense")

    class Quadratic(eqx.Module):
        omega: jax.Array

        def __call__(self, q):
            return 0.5 * self.omega**2 * jnp.sum(q**2)

    omegas = jnp.array([0.7, 1.3, 2.1])
    q0s = jnp.stack([Q0, -0.5 * Q0, V0])

    def total(omegas, q0s):
        systems = eqx.filter_vmap(lambda w: lnn.dynamics.newtonian(Quadratic(w)))(
            omegas
        )
        traj = lnn.simulate_ensemble(systems, q0s, V0, batch_qdot0=False, **TIGHT)
        return jnp.sum(traj.q[:, -1] @ W)

    def exact(omegas, q0s):
        return jnp.sum(_oscillator_end(q0s, V0, omegas[:, None], T) @ W)

    value_and_grad = _value_and_grad(total, (0, 1))
    _, grads = value_and_grad(omegas, q0s)
    expected = jax.jit(jax.grad(exact, argnums=(0, 1)))(omegas, q0s)
    for got, want in zip(grads, expected, strict=True):
        assert jnp.all(jnp.isfinite(got))
        assert rel_err(got, want) < CLOSED_FORM_RTOL
    direction = jnp.array([1.0, -2.0, 0.5])
    fd = _central_difference(lambda w: value_and_grad(w, q0s)[0], omegas, direction)
    assert rel_err(grads[0] @ direction, fd) < FD_RTOL


def test_nesterov_acceleration_derivatives(monkeypatch):
    r"""The Table-1 Lagrangian $t^3(\tfrac12\|\dot q\|^2 - \mathrm{loss}(q))$ on N
    entries takes the diagonal-mass path; its acceleration
    $\ddot q = -\tfrac3t\dot q - \nabla\mathrm{loss}(q)$ has the derivatives
    $\partial_t\ddot q = \tfrac3{t^2}\dot q$, $\partial_{\dot q}\ddot q = -\tfrac3t I$,
    $\partial_q\ddot q = -\nabla^2\mathrm{loss}$ and, for
    $\mathrm{loss} = \tfrac14\|q\|^4 + c\sum\cos q$, $\partial_c\ddot q = \sin q$."""
    _forbid(monkeypatch, "solve_iterative", "solve_dense")

    class Loss(eqx.Module):
        c: jax.Array

        def __call__(self, q):
            return 0.25 * jnp.sum(q**2) ** 2 + self.c * jnp.sum(jnp.cos(q))

    @jax.jit
    def accel(c, t, q, v):
        return lnn.euler_lagrange(lnn.dynamics.nesterov(Loss(c)))(t, q, v)

    c, t, q, v = jnp.asarray(0.6), jnp.asarray(1.7), 0.5 * Q0, V0
    gradient = (q @ q) * q - c * jnp.sin(q)
    hessian = (q @ q) * jnp.eye(N) + 2 * jnp.outer(q, q) - c * jnp.diag(jnp.cos(q))
    assert rel_err(accel(c, t, q, v), -3 / t * v - gradient) < 1e-13

    scalar = lambda c, t, q, v: W @ accel(c, t, q, v)
    d_c, d_t, d_q, d_v = jax.jit(jax.grad(scalar, argnums=(0, 1, 2, 3)))(c, t, q, v)
    assert rel_err(d_c, W @ jnp.sin(q)) < 1e-13
    assert rel_err(d_t, 3 / t**2 * (W @ v)) < 1e-13
    assert rel_err(d_q, -hessian @ W) < 1e-13
    assert rel_err(d_v, -3 / t * W) < 1e-13
    # forward mode, along a time-and-state tangent
    dq = jnp.asarray(_rng.normal(size=N))
    tangent = jax.jvp(lambda t, q: accel(c, t, q, v), (t, q), (jnp.asarray(0.5), dq))[1]
    assert rel_err(tangent, 0.5 * 3 / t**2 * v - hessian @ dq) < 1e-13
