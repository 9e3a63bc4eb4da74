"""Rows (h): `lnn.variational.integrate` against what a user would write by hand.

- h1, h2: a separable Lagrangian built by `lnn.dynamics.newtonian`, integrated with
  `Trapezoid` (second order: Störmer–Verlet), against a hand-written leapfrog
  (velocity Verlet) under `lax.scan`, saving every step (h1) or every 100th (h2).
  Both return the saved positions and velocities from the initial point on.
- h3: the same Lagrangian written as a plain function `L(t, q, v)` (its mass is read
  from the program), against the same leapfrog, saving every step.
- h4: a call with a new Python-float `dt` and `t0` against a call with the same
  values (a recompile would show as a ratio of hundreds).
- h6: the fixed cost of a call: one explicit step of a 2-coordinate system, against
  one step of the hand-written leapfrog (informative: both are dominated by the
  dispatch of a compiled program).
- h5: a non-separable Lagrangian (position-dependent mass) with `Midpoint`: the
  implicit step, against a hand-written Newton iteration on the same discrete
  Euler–Lagrange equations, with the Jacobian by `jax.jacfwd` and an LU solve.

The separable system is an anharmonic chain (Fermi–Pasta–Ulam–Tsingou, 256 masses,
fixed ends), V = Σ ½(q_{i+1} − q_i)² + ¼(q_{i+1} − q_i)⁴, float32. Ratios are
per-round ratios of batches of calls, alternating the order (`paired_times`).

Usage: python benchmarks/bench_variational.py [--quick]
"""

import _common as bench
import jax
import jax.numpy as jnp
import numpy as np

import lagrangian_nn as lnn

V = lnn.variational


def fpu_loss(q):
    d = jnp.diff(jnp.concatenate([jnp.zeros(1, q.dtype), q, jnp.zeros(1, q.dtype)]))
    return jnp.sum(0.5 * d**2 + 0.25 * d**4)


def fpu_plain(t, q, v):
    return 0.5 * jnp.sum(v**2) - fpu_loss(q)


def leapfrog(loss, steps, save_every):
    """Velocity Verlet under `lax.scan`, saving (q, v) every `save_every` steps,
    with the initial point."""

    @jax.jit
    def run(q0, v0, t0, dt):
        del t0

        def one(carry, _):
            q, v, g = carry
            vh = v - 0.5 * dt * g
            q1 = q + dt * vh
            g1 = jax.grad(loss)(q1)
            return (q1, vh - 0.5 * dt * g1, g1), None

        def block(carry, _):
            if save_every == 1:
                carry, _ = one(carry, None)
            else:
                carry, _ = jax.lax.scan(one, carry, None, length=save_every)
            return carry, carry[:2]

        init = (q0, v0, jax.grad(loss)(q0))
        _, (qs, vs) = jax.lax.scan(block, init, None, length=steps // save_every)
        return (
            jnp.concatenate([q0[None], qs]),
            jnp.concatenate([v0[None], vs]),
        )

    return run


def ours(L, steps, save_every):
    Ld = V.Trapezoid(L)  # built once, as a user would

    def run(q0, v0, t0, dt):
        tr = V.integrate(Ld, q0, v0, t0=t0, dt=dt, n_steps=steps, save_every=save_every)
        return tr.q, tr.qdot

    return run


def _agree(a, b, what):
    """Same arithmetic: agreement to float32 rounding, amplified over the run."""
    (qa, va), (qb, vb) = a, b
    err = max(float(jnp.max(jnp.abs(qa - qb))), float(jnp.max(jnp.abs(va - vb))))
    scale = max(float(jnp.max(jnp.abs(qb))), float(jnp.max(jnp.abs(vb))))
    tol = 1e4 * bench.effective_eps(jnp.float32) * scale
    if not err <= tol:
        raise AssertionError(f"{what}: disagree by {err:.2e} > {tol:.2e}")


def separable_rows(quick):
    n, steps = (64, 1000) if quick else (256, 5000)
    q0 = 0.3 * jnp.sin(jnp.linspace(0, np.pi, n, dtype=jnp.float32))
    v0 = jnp.zeros(n, jnp.float32)
    args = (q0, v0, 0.0, 0.05)
    rounds = 5 if quick else 15
    newtonian = lnn.dynamics.newtonian(fpu_loss)
    rows = []
    for id_, L, label, save_every in (
        ("h1", newtonian, "`dynamics.newtonian`", 1),
        ("h2", newtonian, "`dynamics.newtonian`", 100),
        ("h3", fpu_plain, "a plain function", 1),
    ):
        base = leapfrog(fpu_loss, steps, save_every)
        mine = ours(L, steps, save_every)
        _agree(mine(*args), base(*args), id_)
        (t_base, t_ours), ratios, ratios_min = bench.paired_times(
            [base, mine], args, rounds=rounds
        )
        saving = "every step" if save_every == 1 else f"every {save_every}th step"
        rows.append(
            bench.timed_row(
                id_,
                f"variational.integrate, Trapezoid of {label} (explicit), saving "
                f"{saving}, vs hand-written leapfrog in lax.scan",
                f"{n} dof, {steps} steps",
                t_ours,
                t_base,
                1.10,
                ratio=ratios[1],
                ratio_min=ratios_min[1],
            )
        )
    return rows


def new_time_row(quick):
    """A call with new Python-float dt and t0 against one with the same values."""
    n, steps = 64, 200
    q0 = 0.3 * jnp.sin(jnp.linspace(0, np.pi, n, dtype=jnp.float32))
    v0 = jnp.zeros(n, jnp.float32)
    run = ours(lnn.dynamics.newtonian(fpu_loss), steps, 1)
    jax.block_until_ready(run(q0, v0, 0.0, 0.05))
    counter = iter(range(10**9))

    def fresh(q0, v0):
        i = next(counter)
        return run(q0, v0, 0.001 * i, 0.05 + 1e-6 * i)

    def same(q0, v0):
        return run(q0, v0, 0.0, 0.05)

    (t_same, t_new), ratios, ratios_min = bench.paired_times(
        [same, fresh], (q0, v0), rounds=5 if quick else 15
    )
    return bench.timed_row(
        "h4",
        "variational.integrate with a new Python-float dt and t0 vs the same values "
        "(no recompile)",
        f"{n} dof, {steps} steps",
        t_new,
        t_same,
        1.10,
        ratio=ratios[1],
        ratio_min=ratios_min[1],
    )


def _nonseparable(t, q, v):
    return (
        0.5 * jnp.sum((1 + 0.1 * q**2) * v**2)
        - 0.5 * jnp.sum(q**2)
        - 0.05 * jnp.sum(q**4)
    )


def hand_newton(Ld, steps):
    """Newton on p_k + D1 L_d(q_k, q_{k+1}) = 0 for q_{k+1} (warm start 2q_k −
    q_{k-1}), Jacobian by `jax.jacfwd`, LU solve, stopping when the correction is
    below eps^0.7 of |q|; p_{k+1} = D2 L_d(q_k, q_{k+1})."""
    L = Ld.lagrangian

    @jax.jit
    def run(q0, v0, t0, dt):
        dtype = q0.dtype
        tol = float(jnp.finfo(dtype).eps) ** 0.7
        p0 = jax.grad(L, argnums=2)(t0, q0, v0)

        def residual(q1, q, p, t):
            return p + jax.grad(Ld.reduced, argnums=2)(t, dt, q, (), q1)

        def step(carry, k):
            q, qp, p = carry
            t = t0 + k * dt

            def cond(s):
                x, dx, i = s
                return (i < 32) & (jnp.max(jnp.abs(dx)) > tol * jnp.max(jnp.abs(x)))

            def body(s):
                x, _, i = s
                r = residual(x, q, p, t)
                dx = jnp.linalg.solve(jax.jacfwd(residual)(x, q, p, t), r)
                return x - dx, dx, i + 1

            start = (2 * q - qp, jnp.full_like(q, jnp.inf), 0)
            q1, _, _ = jax.lax.while_loop(cond, body, start)
            p1 = jax.grad(Ld.reduced, argnums=4)(t, dt, q, (), q1)
            return (q1, q, p1), q1

        ks = jnp.arange(steps, dtype=dtype)
        _, qs = jax.lax.scan(step, (q0, q0 - dt * v0, p0), ks)
        return jnp.concatenate([q0[None], qs])

    return run


def implicit_row(quick):
    n, steps = 8, (100 if quick else 500)
    q0 = jnp.linspace(-1, 1, n, dtype=jnp.float32)
    v0 = jnp.cos(jnp.arange(n, dtype=jnp.float32))
    Ld = V.Midpoint(_nonseparable)
    base = hand_newton(Ld, steps)

    def mine(q0, v0, t0, dt):
        return V.integrate(Ld, q0, v0, t0=t0, dt=dt, n_steps=steps).q

    args = (q0, v0, 0.0, 0.05)
    a, b = mine(*args), base(*args)
    err, scale = float(jnp.max(jnp.abs(a - b))), float(jnp.max(jnp.abs(b)))
    if not err <= 1e4 * bench.effective_eps(jnp.float32) * scale:
        raise AssertionError(f"h5: implicit steps disagree by {err:.2e}")
    (t_base, t_ours), ratios, ratios_min = bench.paired_times(
        [base, mine], args, rounds=5 if quick else 15
    )
    return bench.row(
        "h5",
        "variational.integrate, Midpoint of a non-separable L (implicit: Newton, "
        "checked), vs hand-written jacfwd Newton on the same equations",
        f"{n} dof, {steps} steps",
        f"{1e6 * t_ours / steps:.1f} µs/step",
        f"{1e6 * t_base / steps:.1f} µs/step",
        ratios[1],
        1.5,
        ratios_min[1],
    )


def overhead_row(quick):
    q0, v0 = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    loss = lambda q: 0.5 * jnp.sum(q**2)
    base = leapfrog(loss, 1, 1)
    mine = ours(lnn.dynamics.newtonian(loss), 1, 1)
    # single calls, interleaved: batches of back-to-back calls would time the
    # dispatch queue rather than one call
    (t_base, t_ours), (m_base, m_ours) = bench.interleaved_times(
        [base, mine], (q0, v0, 0.0, 0.1), repeats=50 if quick else 200
    )
    return bench.timed_row(
        "h6",
        "fixed cost of a call: variational.integrate of one explicit step (checks, "
        "stability estimate, one report transfer) vs one hand-written leapfrog step",
        "2 dof, 1 step",
        t_ours,
        t_base,
        ratio_min=m_ours / m_base,
    )


def rows_h(quick: bool = False) -> list:
    return [
        *separable_rows(quick),
        new_time_row(quick),
        implicit_row(quick),
        overhead_row(quick),
    ]


if __name__ == "__main__":
    bench.main(__doc__, {"h": rows_h})
