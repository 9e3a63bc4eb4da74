"""Properties of `lnn.optim`'s SGD chains that follow from the mathematics, on problems
and hyperparameters drawn by hypothesis:

- `run(sgd_chain(...))` is bit for bit `run` of the documented optax chain, in float32
  and float64, compiled as a user's program is (XLA's default optimisation);
- scaling the loss by c (1e-6 to 1e6) with the learning rate divided by c (and the
  weight decay multiplied by c) leaves the trajectory unchanged to rounding, and the
  exact charge laws hold for every c;
- a generator that is not a symmetry of the loss is reported broken by its charge law,
  orders of magnitude above the law's bound, along the same runs;
- re-nesting the parameters' pytree changes nothing (to rounding).

The hyperparameters and the scale c are traced arrays, so the examples reuse a few
compiled runs (one per chain structure and dtype)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given, settings, strategies as st

import lagrangian_nn as lnn
from lagrangian_nn import nn, optim
from lagrangian_nn.optim import _run

DTYPES = (jnp.float32, jnp.float64)
STEPS = 30

# `run` as a user's program gets it: the suite's conftest lowers XLA's optimisation to
# compile faster, and at that level no multiply-add is fused (so a difference in fusing
# would not show); these are XLA's defaults
USER_COMPILE = {
    "xla_backend_optimization_level": 3,
    "xla_llvm_disable_expensive_passes": False,
}
_COMPILED = {}


def _run_compiled_for_users(key, optimizer, loss, q0, steps):
    args = (optimizer, loss, q0, steps, jnp.asarray(0.1), {})
    if key not in _COMPILED:
        lowered = _run._run.lower(*args)
        _COMPILED[key] = lowered.compile(compiler_options=USER_COMPILE)
    return _COMPILED[key](*args)[0]


# --- the documented optax chain, its numbers traced --------------------------------


class _Documented(eqx.Module):
    """The chain of `sgd_chain`'s docstring built from optax's own transforms, inside
    the trace, from weakly typed traced numbers (which round into the parameters'
    dtype exactly as Python floats do): one compile serves every example."""

    lr: jax.Array
    momentum: jax.Array
    weight_decay: jax.Array
    dampening: jax.Array
    nesterov: bool = eqx.field(static=True)
    decay: str = eqx.field(static=True)
    dampened: bool = eqx.field(static=True)

    def chain(self):
        decay = optax.add_decayed_weights(self.weight_decay)
        d = self.dampening
        return optax.chain(
            *([decay] if self.decay == "coupled" else []),
            *(
                [optax.scale_by_schedule(lambda n: jnp.where(n == 0, 1.0, 1 - d))]
                if self.dampened
                else []
            ),
            optax.trace(self.momentum, nesterov=self.nesterov),
            *([decay] if self.decay == "decoupled" else []),
            optax.scale_by_learning_rate(self.lr),
        )


class _Init(eqx.Module):
    ref: _Documented

    def __call__(self, params):
        return self.ref.chain().init(params)


class _Update(eqx.Module):
    ref: _Documented

    def __call__(self, updates, state, params=None):
        return self.ref.chain().update(updates, state, params)


def _weak(x):
    return jnp.asarray(x)  # a Python float gives a weakly typed array


# the README's chain (heavy ball, coupled decay), and Nesterov with PyTorch's
# dampening and decoupled decay
STRUCTURES = (
    dict(nesterov=False, decay="coupled", dampened=False),
    dict(nesterov=True, decay="decoupled", dampened=True),
)


def _network(dtype):
    model = nn.NormalizedMLP([5, 6, 4, 3], normalized=1, key=jax.random.key(0))
    model = jax.tree.map(lambda w: w.astype(dtype), model)
    x = jax.random.normal(jax.random.key(1), (32, 5), dtype)
    y = jax.random.randint(jax.random.key(2), (32,), 0, 3)
    return nn.make_loss(x, y), model


@settings(max_examples=12, deadline=None)
@given(
    structure=st.sampled_from(range(len(STRUCTURES))),
    dtype=st.sampled_from(range(len(DTYPES))),
    lr=st.floats(1e-3, 0.5),
    momentum=st.floats(0.05, 0.95),
    weight_decay=st.one_of(st.just(0.0), st.floats(1e-4, 0.2)),
    dampening=st.floats(0.01, 0.9),
)
def test_sgd_chain_is_bitwise_the_documented_optax_chain(
    structure, dtype, lr, momentum, weight_decay, dampening
):
    s, dt = STRUCTURES[structure], DTYPES[dtype]
    d = dampening if s["dampened"] else 0.0
    loss, model = _network(dt)
    chain = optim.sgd_chain(
        lr,
        momentum=momentum,
        nesterov=s["nesterov"],
        weight_decay=weight_decay,
        decay=s["decay"],
        dampening=d,
    )
    ref = _Documented(*map(_weak, (lr, momentum, weight_decay, d)), **s)
    ref = optax.GradientTransformation(_Init(ref), _Update(ref))
    key = (structure, dtype)
    ours = _run_compiled_for_users(("ours", *key), chain.optimizer, loss, model, 100)
    theirs = _run_compiled_for_users(("optax", *key), ref, loss, model, 100)
    for u, v in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert u.dtype == v.dtype == dt
        assert jnp.array_equal(u, v), float(jnp.max(jnp.abs(u - v)))


# --- a loss with a scale and a shift symmetry, on any pytree -------------------------

N = 8
_M = np.random.default_rng(0).standard_normal((5, N))
_Y = np.random.default_rng(1).standard_normal(5)


def _flat(q):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(q)])


class _Loss(eqx.Module):
    """c · ½|M u/|u| - y|², u = w - mean(w): invariant under w → a·w (scale, a
    quadratic charge |w|²) and w → w + ε·1 (shift, a linear charge ⟨1, w⟩)."""

    M: jax.Array
    y: jax.Array
    c: jax.Array

    def __call__(self, q):
        w = _flat(q)
        u = w - jnp.mean(w)
        r = self.M @ (u / jnp.sqrt(jnp.sum(u * u))) - self.y
        return self.c * 0.5 * jnp.sum(r * r)


def _scale(t, q):
    return q


def _shift(t, q):
    return jax.tree.map(jnp.ones_like, q)


def _half(t, q):
    # A = diag(1, ..., 1, 0, ..., 0): symmetric, but not a symmetry of the loss
    w = _flat(q)
    mask = (jnp.arange(w.size) < w.size // 2).astype(w.dtype)
    return _unflatten_like(mask * w, q)


def _unflatten_like(w, q):
    leaves, tree = jax.tree.flatten(q)
    sizes = np.cumsum([x.size for x in leaves])[:-1]
    parts = jnp.split(w, sizes)
    return jax.tree.unflatten(
        tree, [p.reshape(x.shape) for p, x in zip(parts, leaves, strict=True)]
    )


GENERATORS = {
    "scale": (lnn.Generator(_scale), "quadratic"),
    "shift": (lnn.Generator(_shift), "linear"),
    "not a symmetry": (lnn.Generator(_half), "quadratic"),
}


def _w0(dtype):
    return jnp.asarray(np.random.default_rng(2).standard_normal(N), dtype)


def _nested(w):
    return {"a": w[:3], "b": (w[3:5].reshape(2, 1), w[5:])}


def _charges(chain, loss, q0):
    laws = {k: optim.charge_law(chain, g, kind) for k, (g, kind) in GENERATORS.items()}
    out = optim.run(chain, loss, q0, STEPS, track=laws)
    result = {}
    for k, (g, kind) in GENERATORS.items():
        result[k] = laws[k].predict(out.tracked[k], optim.charge(g, kind, q0))
    return out, result


def _amplified(chain, loss, w0, base, tol):
    """`tol` plus ten times the spread of the same run from two starts one rounding
    away from w0: rounding differences grow wherever the dynamics amplify them (a
    scale-invariant loss under weight decay ends in a spike of the effective learning
    rate), and a comparison of two runs can be no tighter than that. Returns a
    function of a picker (`(run, laws) -> array`)."""
    eps = float(jnp.finfo(w0.dtype).eps)
    signs = np.random.default_rng(3).choice([-1.0, 1.0], (2, w0.size))
    nearby = [
        _charges(chain, loss, w0 * (1 + eps * jnp.asarray(s, w0.dtype))) for s in signs
    ]

    def bound(pick):
        return tol + 10 * max(_rel(pick(*p), pick(*base)) for p in nearby)

    return bound


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def _law_tol(dtype):
    # each step rounds Q, P and the drives a few times; the errors add up at most
    # linearly (measured: at most 1.5 eps per step, in float32 and float64)
    return 10 * float(jnp.finfo(dtype).eps) * STEPS


CHAINS = {
    "heavy ball, dampening, coupled decay": dict(nesterov=False, decay="coupled"),
    "nesterov, dampening, decoupled decay": dict(nesterov=True, decay="decoupled"),
}

hyper = dict(
    lr=st.floats(0.02, 0.3),
    momentum=st.floats(0.1, 0.9),
    weight_decay=st.floats(1e-3, 0.3),
    dampening=st.floats(0.05, 0.5),
)


@pytest.mark.parametrize("name", CHAINS)
@settings(max_examples=8, deadline=None)
@given(
    dtype=st.sampled_from(range(len(DTYPES))),
    log_c=st.floats(-6.0, 6.0),
    **hyper,
)
# runs that end in a spike, rounding differences amplified ~10-100-fold
@example(dtype=0, log_c=-6.0, lr=0.3, momentum=0.1, weight_decay=0.3, dampening=0.05)
@example(
    dtype=0, log_c=-3.0, lr=0.25, momentum=0.375, weight_decay=0.25, dampening=0.125
)
def test_loss_scaled_by_c_with_lr_over_c_and_the_charge_laws(
    name, dtype, log_c, lr, momentum, weight_decay, dampening
):
    dt, c = DTYPES[dtype], 10.0**log_c
    kw = dict(momentum=momentum, dampening=dampening, **CHAINS[name])
    w0 = _w0(dt)
    runs, eps = {}, float(jnp.finfo(dt).eps)
    for scale in (1.0, c):
        loss = _Loss(jnp.asarray(_M, dt), jnp.asarray(_Y, dt), jnp.asarray(scale, dt))
        chain = optim.sgd_chain(lr / scale, weight_decay=weight_decay * scale, **kw)
        runs[scale] = _charges(chain, loss, w0)
        if scale == 1.0:
            bound = _amplified(chain, loss, w0, runs[1.0], 100 * eps * STEPS)
    (base, base_laws), (scaled, laws) = runs[1.0], runs[c]
    # the same trajectory, to rounding (a few roundings per step, adding up, and
    # amplified as the dynamics amplify them)
    assert _rel(scaled.params, base.params) < bound(lambda o, _: o.params)
    for key in GENERATORS:
        measured, predicted = laws[key]
        # the charges are functions of w alone: unchanged by c, to rounding
        assert _rel(measured, base_laws[key][0]) < bound(lambda _, la: la[key][0]), key
        gap = _rel(predicted, measured)
        if key == "not a symmetry":  # reported broken, orders of magnitude above
            assert gap > 100 * _law_tol(dt), (key, gap)
        else:
            assert gap <= _law_tol(dt), (key, gap)
            # the charge moved (decay, and |w|² grows by η²|u|² per step)
            assert _rel(measured, jnp.full_like(measured, measured[0])) > 1e3 * eps


@settings(max_examples=6, deadline=None)
@given(dtype=st.sampled_from(range(len(DTYPES))), **hyper)
# the spike at the end of these runs amplifies rounding differences ~100-fold
@example(dtype=0, lr=0.296875, momentum=0.375, weight_decay=0.25, dampening=0.1875)
@example(dtype=0, lr=0.25, momentum=0.375, weight_decay=0.25, dampening=0.125)
def test_renesting_the_parameters_changes_nothing(
    dtype, lr, momentum, weight_decay, dampening
):
    dt = DTYPES[dtype]
    loss = _Loss(jnp.asarray(_M, dt), jnp.asarray(_Y, dt), jnp.asarray(1.0, dt))
    chain = optim.sgd_chain(
        lr, momentum=momentum, weight_decay=weight_decay, dampening=dampening
    )
    w0 = _w0(dt)
    flat, flat_laws = _charges(chain, loss, w0)
    nested, nested_laws = _charges(chain, loss, _nested(w0))
    # the same steps; the compiler may order the loss's sums differently for the
    # two layouts, so the same to rounding (not to the bit)
    eps = float(jnp.finfo(dt).eps)
    bound = _amplified(chain, loss, w0, (flat, flat_laws), 10 * eps * STEPS)
    assert _rel(_flat(nested.params), flat.params) < bound(lambda o, _: o.params)
    for key in GENERATORS:  # charges are sums over the leaves: the same to rounding
        for i, (a, b) in enumerate(zip(nested_laws[key], flat_laws[key], strict=True)):
            assert _rel(a, b) < bound(lambda _, laws: laws[key][i]), key
