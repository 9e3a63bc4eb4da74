"""Row (j): `lnn.symmetry.discover` and `lnn.symmetry.conservation_table` called a
second time on the same family, against the compiled work they cannot avoid.

- discover: a second call (new data of the same shapes, new key) against the
  gradients of the loss at the same number of sampled states by one compiled
  `jax.vmap(jax.grad(loss))` (what a user would write to test a candidate by hand).
- conservation_table: a second call against the two trajectories it checks the laws
  along (`lnn.simulate` of gradient flow and Newtonian dynamics, same grid and
  tolerances), compiled.

Each row also records how many functions JAX traced during the second call (target:
none, i.e. nothing compiles again).

Usage: python benchmarks/bench_discover.py [--quick]
"""

import time

import _common as bench
import jax
import jax.numpy as jnp

import lagrangian_nn as lnn
from lagrangian_nn import nn, symmetry as sy


def _timed(fn):
    """Wall time of one call (its result waited for) and the traces it caused."""
    with bench.counting_traces() as traces:
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        seconds = time.perf_counter() - start
    return seconds, len(traces), out


def _median(fn, repeats):
    """The median wall time of `repeats` calls of `fn` (each result waited for)."""
    return bench.interleaved_medians([fn], (), repeats, warmup=0)[0]


def _problem(sizes, n=64, seed=0):
    kx, ky, km = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (n, sizes[0]))
    y = jax.random.randint(ky, (n,), 0, sizes[-1])
    acts = [nn.ReLU()] * (len(sizes) - 2) + [nn.Identity()]
    model = nn.MLP(sizes, acts, key=km)
    return x, y, model


def rows_j(quick: bool = False):
    repeats = 3 if quick else 7
    out = []
    # discover
    sizes = [8, 8, 4] if quick else [8, 16, 16, 4]
    x, y, model = _problem(sizes)
    family = sy.rescaling_family(model)
    sy.discover(nn.make_loss(x, y), model, family, key=jax.random.key(0))
    loss2, key2 = nn.make_loss(2 * x, y), jax.random.key(1)
    t_second, traces, found = _timed(
        lambda: sy.discover(loss2, model, family, key=key2).coefficients
    )
    samples = 2 * len(family) + 8
    states = jax.tree.map(
        lambda w: jnp.broadcast_to(w, (samples, *w.shape)) * 1.01, model
    )
    grads = jax.jit(jax.vmap(jax.grad(loss2)))
    jax.block_until_ready(grads(states))
    t_grads = _median(lambda: grads(states), repeats)
    t_ours = min(
        t_second, _median(lambda: sy.discover(loss2, model, family, key=key2).gap, 3)
    )
    out.append(
        bench.timed_row(
            "j",
            f"discover, 2nd call on the same family ({traces} traced), vs compiled "
            f"vmap(grad) at its {samples} sampled states",
            f"{len(family)} fields, {sum(w.size for w in jax.tree.leaves(model))} "
            "params",
            t_ours,
            t_grads,
        )
    )
    # conservation_table
    sizes = [4, 4, 3] if quick else [4, 6, 3]
    x, y, model = _problem(sizes, n=32, seed=1)
    loss = nn.make_loss(x, y)
    family = sy.rescaling_family(model)
    d = sy.discover(loss, model, family, key=jax.random.key(0))
    t1, n_save = 0.2, 201
    sy.conservation_table(d, loss, model, t1=t1, n_save=n_save)
    t_second, traces, _ = _timed(
        lambda: (
            sy.conservation_table(d, loss, model, t1=t1, n_save=n_save).laws[0].gf_drift
        )
    )
    ts = jnp.linspace(0.0, t1, n_save)
    rtol = max(1e-8, 100 * float(jnp.finfo(x.dtype).eps))  # the table's defaults
    tol = dict(rtol=rtol, atol=rtol / 100)
    v0 = jax.tree.map(lambda w: 0.1 * jnp.ones_like(w), model)

    def trajectories():
        gf = lnn.simulate(
            lnn.dynamics.gradient_flow(loss), model, t0=0.0, t1=t1, ts=ts, **tol
        )
        nd = lnn.simulate(
            lnn.dynamics.newtonian(loss), model, v0, t0=0.0, t1=t1, ts=ts, **tol
        )
        return gf.q, nd.q

    jax.block_until_ready(trajectories())
    t_sims = _median(trajectories, repeats)
    t_ours = min(
        t_second,
        _median(
            lambda: (
                sy.conservation_table(d, loss, model, t1=t1, n_save=n_save)
                .laws[0]
                .gf_drift
            ),
            repeats,
        ),
    )
    out.append(
        bench.timed_row(
            "j",
            f"conservation_table, 2nd call ({len(d)} laws, {traces} traced), vs its "
            "two compiled simulate calls",
            f"{sum(w.size for w in jax.tree.leaves(model))} params, {x.dtype}",
            t_ours,
            t_sims,
        )
    )
    return out


if __name__ == "__main__":
    bench.main(__doc__, {"j": rows_j})
