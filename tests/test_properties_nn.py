"""Properties of the symmetry catalogue `lnn.nn.symmetries` and of the loop tracker
`lnn.optim.tracker` off the tested path: a loss scaled by c in [1e-6, 1e6] leaves
which generators are certified, and the tracked charge laws, unchanged; float32
agrees with float64 to eps-scaled bounds or refuses; a model ten times the size
still works; a generator that is not a symmetry is refused or reported broken.

The model is a small attention classifier built from `lnn.nn` layers (rescaling
across a ReLU into the attention, per-head GL(d_head), rotations, the head's
translations). Scale factors and perturbations are traced arrays, so each
hypothesis example reuses the compiled programs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, settings, strategies as st

import lagrangian_nn as lnn
from lagrangian_nn import nn, optim

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
N, TOKENS, D_IN, CLASSES = 8, 3, 3, 3


def _model(d=4, heads=2, dtype=jnp.float64, seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    return nn.sequential(
        [
            nn.Tokenwise(eqx.nn.Linear(D_IN, d, key=k[0], dtype=dtype)),
            jax.nn.relu,
            nn.SelfAttention(
                eqx.nn.MultiheadAttention(heads, d, key=k[1], dtype=dtype)
            ),
            nn.TokenMean(),
            eqx.nn.Linear(d, CLASSES, key=k[2], dtype=dtype),
        ]
    )


def _data(dtype=jnp.float64, seed=1):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((N, TOKENS, D_IN)), dtype)
    return x, jnp.arange(N) % CLASSES


class _Scaled(eqx.Module):
    """c · NLL of the model on (x, y), plus `decay`·‖W_Q‖² (a perturbation that
    breaks the (W_Q, W_K) symmetries); c and decay traced."""

    x: jax.Array
    y: jax.Array
    c: jax.Array
    decay: jax.Array

    def __call__(self, model):
        logits = jax.vmap(model)(self.x)
        q = model.layers[2].attention.query_proj.weight
        return self.c * nn.nll(logits, self.y) + self.decay * jnp.sum(q**2)


def _catalogue(model, c=1.0, decay=0.0):
    x, y = _data(jax.tree.leaves(model)[0].dtype)
    dtype = x.dtype
    loss = _Scaled(x, y, jnp.asarray(c, dtype), jnp.asarray(decay, dtype))
    return nn.symmetries(model, x, loss=loss, softmax_head=True)


MODEL = _model()
BASE = _catalogue(MODEL)
LOG_C = st.floats(-6.0, 6.0)


def test_the_base_catalogue():
    # the families the structure gives, all certified
    fam = lambda k: k.split(":")[1].split("[")[0]  # noqa: E731
    counts = {f: sum(fam(k) == f for k in BASE) for f in ("qk", "vo", "translate")}
    assert counts == {"qk": 2 * 2**2, "vo": 2 * 2**2, "translate": 4 + 1}
    assert all(BASE.residuals[k] <= BASE.tolerance for k in BASE)
    iso = BASE.isometries()
    assert sum(":so_" in k for k in iso) == 2 * 2 * 1  # (qk, vo) × heads × d(d−1)/2
    assert not any("rescale" in k for k in iso)


@settings(max_examples=5, deadline=None)
@given(LOG_C)
def test_catalogue_is_invariant_under_loss_scaling(log_c):
    S = _catalogue(MODEL, 10.0**log_c)
    assert set(S) == set(BASE)
    assert set(S.refused) == set(BASE.refused)
    # the certificate is relative: its ratios do not move with c beyond rounding
    for k in S:
        assert S.residuals[k] <= S.tolerance


def _train(tracker, opt, loss, params, batches):
    @eqx.filter_jit
    def run(tracker, opt, loss, params, batches):
        def step(carry, batch):
            params, opt_state, tstate = carry
            grads = jax.grad(lambda p: loss(eqx.combine(p, STATIC), batch))(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            new = optax.apply_updates(params, updates)
            tstate = tracker.update(tstate, params, grads, opt_state, new)
            return (new, opt_state, tstate), None

        init = (params, opt.init(params), tracker.init(params))
        return jax.lax.scan(step, init, batches)[0][2]

    return run(tracker, opt, loss, params, batches)


PARAMS, STATIC = BASE.params, BASE.static
STEPS = 6


class _BatchLoss(eqx.Module):
    c: jax.Array

    def __call__(self, model, batch):
        x, y = batch
        return self.c * nn.nll(jax.vmap(model)(x), y)


def _batches(dtype=jnp.float64):
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((STEPS, N, TOKENS, D_IN)), dtype)
    y = jnp.asarray(rng.integers(0, CLASSES, (STEPS, N)))
    return x, y


def _tracked(gens, c, params=PARAMS):
    """SGD with momentum on c·NLL at learning rate 0.1/c and coupled weight decay
    1e-3·c (the same iterates for every c): the tracker's report."""
    chain = optim.sgd_chain(0.1 / c, momentum=0.9, weight_decay=1e-3 * c)
    tracker = optim.tracker(gens, chain, params, STEPS)
    dtype = jax.tree.leaves(params)[0].dtype
    loss = _BatchLoss(jnp.asarray(c, dtype))
    tstate = _train(tracker, chain.optimizer, loss, params, _batches(dtype))
    return tracker.report(tstate)


LAWS = _tracked(dict(BASE), 1.0)


def test_tracked_laws_hold():
    assert LAWS.law == "exact" and all(LAWS.exact.values())
    # the laws are not vacuous: the quadratic charges move (weight decay)
    assert max(LAWS.drift[k] for k in LAWS.drift if LAWS.kinds[k] == "quadratic") > 1e-4


@settings(max_examples=4, deadline=None)
@given(LOG_C)
def test_tracked_laws_are_invariant_under_loss_scaling(log_c):
    report = _tracked(dict(BASE), 10.0**log_c)
    assert all(report.exact.values())
    # the same iterates: the charges agree with c = 1 to rounding of the update
    for k, q in report.charges.items():
        scale = max(float(np.max(np.abs(LAWS.charges[k]))), 1e-300)
        fam = max(
            float(np.max(np.abs(LAWS.charges[j])))
            for j in LAWS.charges
            if j.split("[")[0] == k.split("[")[0]
        )
        assert np.max(np.abs(q - LAWS.charges[k])) <= 1e3 * EPS64 * STEPS * max(
            scale, fam
        )


@settings(max_examples=3, deadline=None)
@given(st.integers(0, 2**16))
def test_float32_agrees_with_float64_or_refuses(seed):
    model = _model(seed=seed)
    to32 = lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a  # noqa: E731
    S64 = _catalogue(model)
    S32 = _catalogue(jax.tree.map(to32, model))  # the same model, rounded
    assert S32.tolerance == 2.0**8 * EPS32
    # float32 never certifies what float64 refuses; what it does not certify it
    # refuses with a reason
    assert set(S32) <= set(S64)
    assert set(S64) - set(S32) <= set(S32.refused)
    # the charges agree to the rounding of float32, relative to |θ|²
    Q64, Q32 = S64.charges(S64.params), S32.charges(S32.params)
    size = float(sum(jnp.sum(p**2) for p in jax.tree.leaves(S64.params)))
    for k in S32:
        assert abs(float(Q32[k]) - float(Q64[k])) <= 64 * EPS32 * max(size, 1.0)
    # the isometries: float32's are float64's
    assert set(S32.isometries()) == set(S64.isometries())


def test_ten_times_the_size():
    model = _model(d=16, heads=2)
    n_small = sum(p.size for p in jax.tree.leaves(PARAMS))
    S = _catalogue(model)
    assert sum(p.size for p in jax.tree.leaves(S.params)) >= 10 * n_small
    d = 8
    fam = lambda k: k.split(":")[1].split("[")[0]  # noqa: E731
    assert sum(fam(k) == "qk" for k in S) == 2 * d**2
    assert sum(fam(k) == "vo" for k in S) == 2 * d**2
    assert all(S.residuals[k] <= S.tolerance for k in S)
    iso = S.isometries()
    assert sum(":so_" in k for k in iso) == 2 * 2 * d * (d - 1) // 2


@settings(max_examples=4, deadline=None)
@given(st.floats(-4.0, 0.0))
def test_a_broken_symmetry_is_refused(log_decay):
    # decay on W_Q alone breaks every generator that moves W_Q (the (W_Q, W_K)
    # family, the rescalings of the units that W_Q reads): the catalogue refuses
    # them, and keeps the rest
    S = _catalogue(MODEL, decay=10.0**log_decay)
    W_Q = lambda m: m.layers[2].attention.query_proj.weight  # noqa: E731
    moves = {k for k, g in BASE.items() if jnp.any(W_Q(g.xi(0.0, PARAMS)) != 0)}
    assert {k for k in moves if ":qk[" in k} and {k for k in moves if "rescale" in k}
    assert not (moves & set(S))
    assert all(S.refused[k].startswith("not a symmetry") for k in moves)
    assert set(S) == set(BASE) - moves
    # no rotation of (W_Q, W_K) among the isometries
    assert not any(":so_qk" in k for k in S.isometries())


class _Perturbed(eqx.Module):
    """A certified generator plus δ·(the field that scales W_Q alone): not a
    symmetry for δ ≠ 0."""

    base: object
    delta: jax.Array

    def __call__(self, t, p):
        xi = self.base(t, p)
        where = lambda m: m.layers[2].attention.query_proj.weight  # noqa: E731
        return eqx.tree_at(where, xi, where(xi) + self.delta * where(p))


@settings(max_examples=3, deadline=None)
@given(st.floats(-3.0, 0.0))
def test_a_perturbed_generator_is_reported_broken(log_delta):
    name = next(k for k in BASE if ":vo[" in k)
    delta = jnp.asarray(10.0**log_delta)
    gens = {
        "symmetry": BASE[name],
        "perturbed": lnn.Generator(_Perturbed(BASE[name].xi, delta)),
    }
    report = _tracked(gens, 1.0)
    assert report.exact["symmetry"]
    assert not report.exact["perturbed"]
    assert report.deviation["perturbed"] > 1e3 * report.tolerance
