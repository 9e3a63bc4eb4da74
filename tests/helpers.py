"""Shared test utilities and named test problems with closed-form solutions."""

import jax
import jax.numpy as jnp
import numpy as np


def tree_allclose(a, b, *, rtol=1e-10, atol=1e-12):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
        for x, y in zip(la, lb)
    )


def rel_err(a, b):
    """Scale-aware relative error between two pytrees (max-norm)."""
    diff = max(
        float(jnp.max(jnp.abs(x - y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )
    scale = max(float(jnp.max(jnp.abs(y))) for y in jax.tree.leaves(b))
    return diff / max(scale, 1e-300)


def without_diagonal_reading(monkeypatch):
    """Switches off `euler_lagrange`'s use of a declared mass and its static reading
    of a diagonal mass matrix, so the run-time f/M00 test and CG run instead."""
    import lagrangian_nn as lnn

    monkeypatch.setattr(lnn._euler_lagrange, "declared_mass", lambda *args: None)
    monkeypatch.setattr(lnn._euler_lagrange, "read_diagonal", lambda *args: None)


# --- Named problems: each has a Lagrangian and an exact solution. ---------------------


def harmonic_oscillator(omega=1.3, m=0.7):
    def L(t, q, v):
        return 0.5 * m * jnp.sum(v**2) - 0.5 * m * omega**2 * jnp.sum(q**2)

    def exact(t, q0, v0):
        return q0 * jnp.cos(omega * t) + v0 / omega * jnp.sin(omega * t)

    return L, exact


def damped_oscillator(gamma=0.3, omega=2.0):
    """q̈ + γ q̇ + ω² q = 0 (underdamped)."""
    big = np.sqrt(omega**2 - gamma**2 / 4)

    def exact(t, q0, v0):
        a = q0
        b = (v0 + 0.5 * gamma * q0) / big
        return jnp.exp(-0.5 * gamma * t) * (a * jnp.cos(big * t) + b * jnp.sin(big * t))

    return exact


def charged_particle(charge=1.5, field=0.8, m=1.2):
    """A charged particle in a uniform magnetic field along z, in the symmetric gauge
    A = B/2 (-y, x): L = ½m|v|² + e v·A. Motion is a circle at ω = eB/m."""

    def L(t, q, v):
        A = 0.5 * field * jnp.array([-q[1], q[0]])
        return 0.5 * m * jnp.sum(v**2) + charge * jnp.dot(v, A)

    omega = charge * field / m

    def exact(t, q0, v0):
        z0 = q0[0] + 1j * q0[1]
        zd = v0[0] + 1j * v0[1]
        z = z0 + zd * (1 - jnp.exp(-1j * omega * t)) / (1j * omega)
        return jnp.stack([z.real, z.imag], axis=-1)

    def canonical_angular_momentum(t, q, v):
        return m * (q[0] * v[1] - q[1] * v[0]) + 0.5 * charge * field * jnp.sum(q**2)

    return L, exact, canonical_angular_momentum


def kepler(k=1.0):
    def L(t, q, v):
        return 0.5 * jnp.sum(v**2) + k / jnp.linalg.norm(q)

    return L


def compiles_during(fn):
    """The number of XLA compilations requested while `fn()` runs, and its result: the
    programs compiled and those answered by a persistent compilation cache (the suite
    runs with one; a recompiled program is a compilation all the same)."""
    n = [0]

    def on_duration(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            n[0] += 1

    def on_event(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            n[0] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    try:
        out = fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(on_duration)
        jax.monitoring.unregister_event_listener(on_event)
    return n[0], out
