"""Quick start: a Kepler orbit, its energy and angular momentum as Noether charges."""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import lagrangian_nn as lnn  # noqa: E402


def main():
    L = lambda t, q, v: 0.5 * jnp.sum(v**2) + 1.0 / jnp.linalg.norm(q)
    rotation = lnn.Generator(lambda t, q: jnp.array([-q[1], q[0]]))
    traj = lnn.simulate(
        L,
        jnp.array([1.0, 0.0]),
        jnp.array([0.0, 1.2]),
        t0=0.0,
        t1=100.0,
        ts=jnp.linspace(0.0, 100.0, 1000),
        rtol=1e-10,
        atol=1e-12,
        progress=True,
    )
    E = traj.evaluate(lnn.energy(L))
    Lz = traj.evaluate(lnn.noether_charge(L, rotation))
    print(
        f"energy drift {float(jnp.ptp(E)):.2e}, angular-momentum drift {float(jnp.ptp(Lz)):.2e}"
    )


if __name__ == "__main__":
    main()
