"""Rows (c) and (k): `lnn.optim.run` tracking conserved quantities at every step, against
a plain optax step loop under `lax.scan`.

Row (c):

Both run the same optax optimiser (SGD with momentum) for the same number of steps on
the paper's network (784-200-200-200-10, ReLU, NLL, 1,000 samples). `optim.run`
additionally records the loss and two Table-2 quantities at every step (the per-neuron
rescaling charges ‖W1[i,:]‖² − ‖W2[:,i]‖² of hidden layers 1 and 2). Target <= 1.10.

Row (k): `lnn.optim.run` of an `lnn.optim.sgd_chain` (momentum 0.9, weight decay 0.02)
for 1,000 mini-batch steps with two exact charge laws tracked (`lnn.optim.charge_law`:
the translation charge of the logits, linear, and the scale charge of the normalised
layer, quadratic), against the same optax chain in a plain `lax.scan` over the same
mini-batches. The network is a small `lnn.nn.NormalizedMLP` (64-32-32-10, batches of
64), where the tracker's arithmetic is largest relative to a step. Target <= 1.10.

Usage: python benchmarks/bench_optim.py [--quick] [--rows ck]
"""

import _common as bench
import jax
import jax.numpy as jnp
import optax

from lagrangian_nn import nn, optim


def rescale_charge(h):
    """Table 2 for hidden layer h (1-based) of a list of weight matrices."""
    return lambda s: jnp.sum(s.q[h - 1] ** 2, axis=1) - jnp.sum(s.q[h] ** 2, axis=0)


def plain_loop(optimizer, loss, steps):
    @jax.jit
    def run(q0):
        def body(carry, _):
            q, state = carry
            grads = jax.grad(loss)(q)
            updates, state = optimizer.update(grads, state, q)
            return (optax.apply_updates(q, updates), state), None

        (q, _), _ = jax.lax.scan(body, (q0, optimizer.init(q0)), None, length=steps)
        return q

    return run


def rows(quick: bool = False):
    loss, w, _ = bench.make_problem([784, 200, 200, 200, 10], n_samples=1000)
    steps = 20 if quick else 200
    optimizer = optax.sgd(0.05, momentum=0.9)
    track = {"C1": rescale_charge(1), "C2": rescale_charge(2)}
    ours = lambda q0: optim.run(optimizer, loss, q0, steps, track=track, dt=0.05)
    plain = plain_loop(optimizer, loss, steps)
    # Same arithmetic: agreement to rounding over a few steps (over many, the ReLU
    # kinks amplify rounding differences between the two compiled programs). In units
    # of effective_eps() (float32's, or TF32's on a GPU at default precision) x max
    # |weight|: each of the 5 updates rounds the weights once and adds lr x (momentum
    # sum of gradients) whose own rounding (reductions over 1,000 samples and up to 784
    # inputs, differently fused) is a small fraction of the weights. Measured: 0.4 on
    # the 2-core CPU. 16 gives 6e-7 there, tighter than the fixed 1e-6 it replaces.
    reference = plain_loop(optimizer, loss, 5)(w)
    check = optim.run(optimizer, loss, w, 5, dt=0.05).params
    err = max(
        float(jnp.max(jnp.abs(a - b))) for a, b in zip(check, reference, strict=True)
    )
    scale = max(float(jnp.max(jnp.abs(x))) for x in reference)
    tol = 16 * bench.effective_eps(jnp.float32) * scale
    if not err <= tol:
        raise AssertionError(
            f"optim.run and the plain loop disagree by {err:.2e}, more than 16 x "
            f"effective eps {bench.effective_eps(jnp.float32):.2e} x max |weight| "
            f"{scale:.2e} = {tol:.2e}"
        )
    t_plain, t_ours = bench.interleaved_medians(
        [plain, ours], (w,), repeats=3 if quick else 10
    )
    return [
        bench.timed_row(
            "c",
            f"optim.run, {steps} steps tracking loss + 2 charges, vs plain optax scan",
            f"{bench.n_params(w):,} params",
            t_ours,
            t_plain,
            1.10,
        )
    ]


def plain_batched_loop(optimizer, loss):
    """A user's optax loop over mini-batches under `lax.scan` (no tracking)."""

    @jax.jit
    def run(q0, batches):
        def body(carry, batch):
            q, state = carry
            grads = jax.grad(loss)(q, batch)
            updates, state = optimizer.update(grads, state, q)
            return (optax.apply_updates(q, updates), state), None

        (q, _), _ = jax.lax.scan(body, (q0, optimizer.init(q0)), batches)
        return q

    return run


def rows_k(quick: bool = False):
    steps, batch, lr, momentum, decay = 1000, 64, 0.1, 0.9, 0.02
    key = jax.random.key(0)
    kx, ky, kb, km = jax.random.split(key, 4)
    x = jax.random.normal(kx, (1000, 64))
    y = jax.random.randint(ky, (1000,), 0, 10)
    idx = jax.random.randint(kb, (steps, batch), 0, 1000)
    batches = (x[idx], y[idx])
    model = nn.NormalizedMLP([64, 32, 32, 10], normalized=1, key=km)

    def loss(m, b):
        return nn.nll(m(b[0]), b[1])

    chain = optim.sgd_chain(lr, momentum=momentum, weight_decay=decay)
    laws = {
        "translation": optim.charge_law(chain, nn.translate_logits(model), "linear"),
        "scale": optim.charge_law(chain, nn.scale_invariance(model), "quadratic"),
    }
    reference = optax.chain(
        optax.add_decayed_weights(decay), optax.sgd(lr, momentum=momentum)
    )
    plain = plain_batched_loop(reference, loss)

    def ours(q0, batches):
        return optim.run(chain, loss, q0, steps, track=laws, batches=batches)

    # The chain steps as the optax chain: the same parameters after 20 steps to a few
    # float32 roundings (the two programs compute the loss's gradient with and without
    # its value, which XLA may fuse differently).
    few = jax.tree.map(lambda z: z[:20], batches)
    check = optim.run(chain, loss, model, 20, batches=few).params
    ref = plain(model, few)
    err = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(check), jax.tree.leaves(ref), strict=True)
    )
    scale = max(float(jnp.max(jnp.abs(z))) for z in jax.tree.leaves(ref))
    tol = 64 * bench.effective_eps(jnp.float32) * scale
    if not err <= tol:
        raise AssertionError(
            f"optim.run(sgd_chain) and the plain optax loop disagree by {err:.2e} "
            f"after 20 steps, more than 64 x effective eps x max |weight| = {tol:.2e}"
        )
    (t_plain, t_ours), (_, ratio), (_, ratio_min) = bench.paired_times(
        [plain, ours], (model, batches), rounds=5 if quick else 15
    )
    return [
        bench.timed_row(
            "k",
            f"optim.run, {steps} steps, 2 exact charge laws tracked, vs plain optax "
            "scan",
            f"{sum(z.size for z in jax.tree.leaves(model)):,} params, batch {batch}",
            t_ours,
            t_plain,
            1.10,
            ratio=ratio,
            ratio_min=ratio_min,
        )
    ]


if __name__ == "__main__":
    bench.main(__doc__, {"c": rows, "k": rows_k})
