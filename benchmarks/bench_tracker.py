"""Row (l): `lnn.optim.tracker` recording every symmetry charge of a transformer in the
user's own jitted optax loop, against the same loop without it.

The loop is what a user writes: `jax.lax.scan` over mini-batches of `jax.grad`, the
optimiser's `update`, `optax.apply_updates`; the tracked loop adds one line,
`tstate = tracker.update(tstate, params, grads, opt_state, new_params)`. Both are
timed in one process, alternating in rounds (`paired_times`); the ratio is the median
of the per-round ratios. Target: the tracker adds <= 5% to a training step.

- Model: `lnn.nn.Transformer` (pre-LN, softmax cross-entropy head) on sequences of 8
  tokens of 8 features (the digits' shape), mini-batches of 64; >= 1M parameters
  (d_model 256, 8 heads, 2 blocks, MLP width 1024); `--quick`: d_model 16, 8 heads
  of 2, 2 blocks, MLP width 32.
- Charges: the model's symmetry catalogue, `lnn.nn.symmetries`: per-head GL(d_head) of
  (W_Q, W_K) and (W_V, W_O) for every E_ij, rescaling of every unit across a ReLU,
  scale invariance before the normalisations, translation of the softmax head. At
  the full size the catalogue's certification (one field evaluation per generator,
  tens of thousands of them) takes too long for a benchmark, so the same generators
  are built at the full size from the certified catalogue of the small model of the
  same depth and heads (same paths, the masks and E_ij enlarged); every one of them
  is then checked along the benchmark's own run, where each charge must follow its
  exact law to rounding.
- Optimisers: SGD with heavy-ball momentum 0.9 and weight decay 1e-4
  (`lnn.optim.sgd_chain`, exact laws) and `optax.adamw` (no exact law: the measured
  drift next to the SGD bound).

Usage: python benchmarks/bench_tracker.py [--quick]
"""

import _common as bench
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lagrangian_nn as lnn
from lagrangian_nn import nn, optim

SMALL = dict(d_model=16, n_heads=8, n_layers=2, d_mlp=32)
LARGE = dict(d_model=256, n_heads=8, n_layers=2, d_mlp=1024)
BATCH = 64


def _one_hot(n, i, like):
    m = np.zeros(n, np.asarray(like).dtype)
    m[i] = 1
    return jnp.asarray(m)


def _enlarge(catalogue, params):
    """The catalogue's generators for `params` (a larger model of the same depth and
    heads), built from those of the small model's certified `catalogue`: the same
    fields, with masks over the larger widths and E_ij over the larger heads."""
    out = {}
    for name, gen in catalogue.items():
        xi = gen.xi
        kind = type(xi).__name__
        base = name.split(":")[0]
        if kind == "_HeadGL":  # per-head GL(d_head): A = E_ij
            d = xi.A.shape[0] * LARGE["d_model"] // SMALL["d_model"]
            for i in range(d):
                for j in range(d):
                    A = np.zeros((d, d), np.asarray(xi.A).dtype)
                    A[i, j] = 1
                    new = eqx.tree_at(lambda x: x.A, xi, jnp.asarray(A))
                    label = f"{base}:{xi.kind}[{xi.head}][{i},{j}]"
                    out[label] = lnn.Generator(new)
        elif kind in ("_Diagonal", "_Shift"):
            if all(m is None for m in xi.masks):  # scale, translate[bias]
                out[name] = gen
                continue
            if not name.endswith("[0]"):
                continue  # member 0 of each family is enlarged to the whole family
            leaf = xi.paths[0]
            width = _get(params, leaf).shape[xi.axes[0]]
            stem = name[: name.rindex("[")]
            for c in range(width):
                masks = tuple(
                    None if m is None else _one_hot(_get(params, p).shape[a], c, m)
                    for p, a, m in zip(xi.paths, xi.axes, xi.masks)
                )
                out[f"{stem}[{c}]"] = lnn.Generator(
                    eqx.tree_at(lambda x: x.masks, xi, masks, is_leaf=_is_none)
                )
        else:
            raise ValueError(f"no enlargement for the generator {name} ({kind})")
    return out


def _is_none(x):
    return x is None


def _get(tree, path):
    for kind, k in path:
        tree = getattr(tree, k) if kind == "a" else tree[k]
    return tree


def _problem(quick: bool, dtype=jnp.float32):
    small = nn.Transformer(**SMALL, key=jax.random.key(0), dtype=dtype)
    catalogue = nn.symmetries(small)
    if quick:
        model, gens = small, dict(catalogue)
    else:
        model = nn.Transformer(**LARGE, key=jax.random.key(0), dtype=dtype)
        params = eqx.partition(model, eqx.is_inexact_array)[0]
        gens = _enlarge(catalogue, params)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(p, batch):
        logits = eqx.combine(p, static)(batch[0])
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, batch[1][:, None], axis=1))

    return params, loss, gens


def _batches(steps, dtype, seed=1):
    kx, ky = jax.random.split(jax.random.key(seed))
    x = jax.random.uniform(kx, (steps, BATCH, 8, 8), dtype)
    y = jax.random.randint(ky, (steps, BATCH), 0, 10)
    return x, y


def _loops(opt, loss, tracker):
    """The user's loop, without and with the tracker (each jitted once)."""

    def step(params, opt_state, batch):
        grads = jax.grad(loss)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return grads, optax.apply_updates(params, updates), opt_state

    @jax.jit
    def bare(params, batches):
        def body(carry, batch):
            params, opt_state = carry
            _, new, opt_state = step(params, opt_state, batch)
            return (new, opt_state), None

        return jax.lax.scan(body, (params, opt.init(params)), batches)[0][0]

    @jax.jit
    def tracked(params, batches):
        def body(carry, batch):
            params, opt_state, tstate = carry
            grads, new, opt_state = step(params, opt_state, batch)
            tstate = tracker.update(tstate, params, grads, opt_state, new)
            return (new, opt_state, tstate), None

        init = (params, opt.init(params), tracker.init(params))
        new, _, tstate = jax.lax.scan(body, init, batches)[0]
        return new, tstate

    return bare, tracked


def rows_l(quick: bool = False):
    steps = 5 if quick else 10
    params, loss, gens = _problem(quick)
    n = sum(int(x.size) for x in jax.tree.leaves(params))
    batches = _batches(steps, jnp.float32)
    out = []
    chain = optim.sgd_chain(0.05, momentum=0.9, weight_decay=1e-4)
    adamw = optax.adamw(1e-3, weight_decay=1e-4)
    for label, opt, kwargs in (
        ("SGD momentum 0.9 + weight decay, exact laws", chain, {}),
        ("AdamW, measured drift", adamw, {"lr": 1e-3}),
    ):
        tracker = optim.tracker(gens, opt, params, steps, **kwargs)
        transform = opt.optimizer if isinstance(opt, optim.SGDChain) else opt
        bare, tracked = _loops(transform, loss, tracker)
        # the tracker changes nothing in the run, and its laws hold along it
        p_bare = bare(params, batches)
        p_tracked, tstate = tracked(params, batches)
        for a, b in zip(jax.tree.leaves(p_bare), jax.tree.leaves(p_tracked)):
            if not bool(jnp.array_equal(a, b)):
                raise AssertionError("the tracked loop steps differently")
        report = tracker.report(tstate)
        if report.law == "exact" and not all(report.exact.values()):
            broken = [k for k, v in report.exact.items() if not v]
            raise AssertionError(f"exact laws broken along the run: {broken[:5]}")
        (t_bare, t_tracked), ratios, ratios_min = bench.paired_times(
            [bare, lambda p, b: tracked(p, b)[1].count],
            (params, batches),
            rounds=6 if quick else 10,
        )
        out.append(
            bench.timed_row(
                "l",
                f"charge tracker in a user's jitted optax loop ({label}), "
                f"{steps}-step scans, vs the same loop without it",
                f"{n:,} params, {len(gens):,} charges",
                t_tracked,
                t_bare,
                1.05,
                ratio=ratios[1],
                ratio_min=ratios_min[1],
            )
        )
    return out


if __name__ == "__main__":
    bench.main(__doc__, {"l": rows_l})
