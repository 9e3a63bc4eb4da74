"""`lnn.optim.tracker`: symmetry charges recorded inside the user's own jitted optax
loop (`jax.lax.scan`), with the exact per-step laws of SGD chains and the measured
drift of optimisers without one.

Tolerance of the exact laws: the report's own `100·eps·√steps` relative to the largest
|Q_k| (each step rounds Q, P and the drives a few times, amplified at most by the
momentum's 1/(1-β); independent roundings add up like a random walk). The controls
miss it by orders of magnitude."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import compiles_during

import lagrangian_nn as lnn
from lagrangian_nn import nn, optim

LR, BETA, DECAY = 0.05, 0.9, 1e-3
BATCH = 8


def _model(dtype, act=None):
    act = nn.ReLU() if act is None else act
    return nn.MLP(
        [5, 8, 6, 3],
        [act, nn.ReLU(), nn.Identity()],
        bias=True,
        key=jax.random.key(0),
        dtype=dtype,
    )


def _batches(steps, dtype):
    x = jax.random.normal(jax.random.key(1), (64, 5), dtype)
    y = jax.random.randint(jax.random.key(2), (64,), 0, 3)
    idx = jax.random.randint(jax.random.key(3), (steps, BATCH), 0, 64)
    return x[idx], y[idx]


def _loss(model, batch):
    return nn.nll(model(batch[0]), batch[1])


class _MaskedRescale(eqx.Module):
    """Rescaling of the hidden units of layer 1 weighted by `mask` (one generator per
    mask: a family of the same form, linear in its array field)."""

    mask: jax.Array

    def __call__(self, t, m):
        xi = jax.tree.map(jnp.zeros_like, m)
        c = self.mask.astype(m.weights[0].dtype)
        xi = eqx.tree_at(lambda x: x.weights[0], xi, c[:, None] * m.weights[0])
        xi = eqx.tree_at(lambda x: x.biases[0], xi, c * m.biases[0])
        return eqx.tree_at(lambda x: x.weights[1], xi, -m.weights[1] * c[None, :])


class _SquaredMask(_MaskedRescale):
    """The same with mask², not linear in the mask: evaluated one by one."""

    def __call__(self, t, m):
        return _MaskedRescale(self.mask**2)(t, m)


def _generators(model):
    eye = np.eye(8)
    gens = {
        "layer 1": nn.rescale(model, 1),
        "layer 2, unit 0": nn.rescale(model, 2, 0),
        **{f"unit {i}": lnn.Generator(_MaskedRescale(eye[i])) for i in range(8)},
        "units 0+3": lnn.Generator(_MaskedRescale(eye[0] + 2 * eye[3])),
        "units 1-2": lnn.Generator(_MaskedRescale(eye[1] - eye[2])),
        "squared 5": lnn.Generator(_SquaredMask(eye[5])),
        "squared 6": lnn.Generator(_SquaredMask(eye[6])),
    }
    return gens


def _train(opt, tracker, params, batches):
    """The user's loop: grad, update, apply_updates, and one line for the tracker."""

    @jax.jit
    def train(params, batches):
        def step(carry, batch):
            params, opt_state, tstate = carry
            grads = jax.grad(_loss)(params, batch)
            updates, opt_state = opt.update(grads, opt_state, params)
            new = optax.apply_updates(params, updates)
            tstate = tracker.update(tstate, params, grads, opt_state, new)
            return (new, opt_state, tstate), new

        init = (params, opt.init(params), tracker.init(params))
        return jax.lax.scan(step, init, batches)

    (params, _, tstate), trajectory = train(params, batches)
    return tstate, trajectory


def _optax_sgd(decay_all=True):
    """SGD with momentum and weight decay as optax users write it; with
    `decay_all=False` the decay acts on the first layer only (a control)."""
    decay = optax.add_decayed_weights(DECAY)
    if not decay_all:
        mask = lambda m: eqx.tree_at(  # noqa: E731
            lambda x: (x.weights, x.biases),
            jax.tree.map(lambda _: False, m),
            ([True, False, False], [True, False, False]),
        )
        decay = optax.masked(decay, mask)
    return optax.chain(decay, optax.sgd(LR, momentum=BETA))


@pytest.mark.parametrize("dtype, steps", [(jnp.float64, 300), (jnp.float32, 1000)])
def test_exact_law_in_the_users_scan_loop(dtype, steps):
    model = _model(dtype)
    batches = _batches(steps, dtype)
    gens = _generators(model)
    chain = optim.sgd_chain(LR, momentum=BETA, weight_decay=DECAY)
    tracker = optim.tracker(gens, chain, model, steps)
    # families: the 8 one-hot units and the two mixed ones share one evaluation; the
    # squared masks are not linear in their field and are evaluated one by one
    sizes = sorted(len(f.names) for f in tracker.families)
    assert sizes == [1, 1, 1, 1, 10]
    tstate, trajectory = _train(_optax_sgd(), tracker, model, batches)
    report = tracker.report(tstate)
    eps = float(jnp.finfo(dtype).eps)
    assert report.law == "exact" and report.steps == steps
    assert report.tolerance == pytest.approx(100 * eps * np.sqrt(steps), rel=1e-12)
    for name, gen in gens.items():
        measured, predicted = report.charges[name], report.predicted[name]
        assert measured.shape == predicted.shape == (steps + 1,)
        assert measured.dtype == dtype
        scale = np.max(np.abs(measured))
        # the recorded charges are those of the saved parameters, to rounding
        saved = jax.vmap(lambda m, g=gen: optim.charge(g, "quadratic", m))(trajectory)
        Q0 = optim.charge(gen, "quadratic", model)
        assert np.max(np.abs(measured[1:] - saved)) <= 64 * eps * scale, name
        assert measured[0] == pytest.approx(float(Q0), rel=64 * eps)
        # the charge moves, so the law is not met trivially ...
        assert report.drift[name] > 1e-2, name
        # ... and the exact law predicts it to rounding
        assert report.deviation[name] <= report.tolerance, name
        assert report.exact[name]
    if dtype == jnp.float64:  # to rounding: a few hundred eps, not growing with steps
        assert max(report.deviation.values()) <= 256 * eps


def test_controls_break_the_law_by_orders_of_magnitude():
    steps = 300
    model = _model(jnp.float64)
    batches = _batches(steps, jnp.float64)
    chain = optim.sgd_chain(LR, momentum=BETA, weight_decay=DECAY)
    A = jax.random.normal(jax.random.key(4), (8, 8), jnp.float64)
    gens = {
        "rescale": nn.rescale(model, 1),
        # GL(8) of a ReLU layer: not a symmetry (the activation is not linear)
        "gl of a ReLU layer": nn.gl(model, 1, A + A.T),
    }
    tracker = optim.tracker(gens, chain, model, steps)
    tstate, _ = _train(_optax_sgd(), tracker, model, batches)
    report = tracker.report(tstate)
    assert report.exact["rescale"]
    assert report.deviation["gl of a ReLU layer"] > 1e6 * report.tolerance
    assert not report.exact["gl of a ReLU layer"]
    # weight decay on one factor only: the rescale law (decay on both) breaks
    tstate, _ = _train(_optax_sgd(decay_all=False), tracker, model, batches)
    report = tracker.report(tstate)
    assert report.deviation["rescale"] > 1e6 * report.tolerance


def test_nesterov_and_a_non_symmetric_linear_field():
    # GL(d) of a linear hidden layer is a symmetry for every A; for A not symmetric
    # the charge sees (A + Aᵀ)/2, and Nesterov's law needs the symmetric bilinear form
    steps = 200
    model = _model(jnp.float64, act=nn.Identity())
    batches = _batches(steps, jnp.float64)
    A = jax.random.normal(jax.random.key(5), (8, 8), jnp.float64)
    gens = {"gl": nn.gl(model, 1, A), "gl sym": nn.gl(model, 1, (A + A.T) / 2)}
    chain = optim.sgd_chain(LR, momentum=BETA, nesterov=True, weight_decay=DECAY)
    tracker = optim.tracker(gens, chain, model, steps)
    # one family (the same form, A its array field), read through (A + Aᵀ)/2
    assert [(f.names, f.symmetric) for f in tracker.families] == [
        (("gl", "gl sym"), False)
    ]
    tstate, _ = _train(chain.optimizer, tracker, model, batches)
    report = tracker.report(tstate)
    assert report.drift["gl"] > 1e-2
    assert report.deviation["gl"] <= report.tolerance
    np.testing.assert_allclose(
        report.charges["gl"], report.charges["gl sym"], rtol=1e-12
    )


def test_adamw_has_no_exact_law_and_its_drift_is_reported():
    steps = 200
    model = nn.NormalizedMLP([5, 6, 4, 3], normalized=1, key=jax.random.key(0))
    model = jax.tree.map(lambda w: w.astype(jnp.float64), model)
    batches = _batches(steps, jnp.float64)
    gens = {
        "scale": nn.scale_invariance(model),
        "translation": nn.translate_logits(model),
    }
    adamw = optax.adamw(1e-2, weight_decay=0.0)
    with pytest.raises(optim.NoExactLaw):
        optim.charge_law(adamw, gens["scale"], "quadratic")
    tracker = optim.tracker(gens, adamw, model, steps, lr=1e-2)
    assert tracker.kinds == {"scale": "quadratic", "translation": "linear"}
    tstate, _ = _train(adamw, tracker, model, batches)
    adam = tracker.report(tstate)
    assert adam.law == "none" and adam.predicted == {} and adam.exact == {}
    # Adam moves the charges at first order in η: far beyond the SGD bound
    assert adam.drift["scale"] > 1e2 * adam.sgd_bound["scale"] > 0
    assert adam.drift["translation"] > 1e-3 and adam.sgd_bound["translation"] == 0
    # control: plain SGD with the same tracking obeys the bound (up to rounding)
    sgd = optax.sgd(1e-2)
    tracker = optim.tracker(gens, sgd, model, steps, lr=1e-2)
    tstate, _ = _train(sgd, tracker, model, batches)
    plain = tracker.report(tstate)
    eps = float(jnp.finfo(jnp.float64).eps)
    assert plain.drift["scale"] > 1e-6
    assert plain.drift["scale"] <= plain.sgd_bound["scale"] + 100 * eps * steps
    assert plain.drift["translation"] <= 100 * eps * steps


class _Nonlinear(eqx.Module):
    def __call__(self, t, m):
        return jax.tree.map(lambda w: w**2, m)


class _Zero(eqx.Module):
    def __call__(self, t, m):
        return jax.tree.map(jnp.zeros_like, m)


def test_bad_input_each_gets_its_own_error():
    model = _model(jnp.float64)
    gen = nn.rescale(model, 1)
    chain = optim.sgd_chain(LR, momentum=BETA)
    build = lambda *a, **k: optim.tracker(*a, **k)  # noqa: E731
    cases = [
        (lambda: build({}, chain, model, 5), "non-empty dict"),
        (lambda: build([gen], chain, model, 5), "non-empty dict"),
        (lambda: build({1: gen}, chain, model, 5), "str keys"),
        (lambda: build({"a": "x"}, chain, model, 5), r"`generators\['a'\]` must be"),
        (
            lambda: build({"a": gen}, chain, model, 5, kinds={"b": "quadratic"}),
            "`kinds` names charges that are not in `generators`",
        ),
        (
            lambda: build({"a": gen}, chain, model, 5, kinds={"a": "cubic"}),
            "must be 'linear' or 'quadratic'",
        ),
        (
            lambda: build({"a": gen}, chain, model, 5, kinds={"a": "linear"}),
            "its charge is 'quadratic'",
        ),
        (lambda: build({"a": gen}, chain, model, 0), "`n_steps` must be a positive"),
        (lambda: build({"a": gen}, chain, model, True), "`n_steps` must be a positive"),
        (lambda: build({"a": gen}, "sgd", model, 5), "`optimizer` must be"),
        (lambda: build({"a": gen}, optax.adam(1e-3), model, 5), "`lr` is required"),
        (lambda: build({"a": gen}, chain, model, 5, lr=-1.0), "`lr` must be"),
        (
            lambda: build({"a": gen}, chain, jax.tree.map(jnp.int32, model), 5),
            "`params` must hold floating arrays",
        ),
        (
            lambda: build({"a": lnn.Generator(_Nonlinear())}, chain, model, 5),
            "neither constant",
        ),
        (lambda: build({"a": lnn.Generator(_Zero())}, chain, model, 5), "vanishes"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()

    tracker = optim.tracker({"a": gen}, chain, model, 2)
    state = tracker.init(model)
    grads = jax.tree.map(jnp.ones_like, model)
    opt_state = chain.optimizer.init(model)
    other = jax.tree.map(lambda x: 1.1 * x, model)
    wider = nn.MLP(
        [5, 9, 6, 3],
        [nn.ReLU(), nn.ReLU(), nn.Identity()],
        bias=True,
        key=jax.random.key(0),
        dtype=jnp.float64,
    )
    with pytest.raises(ValueError, match="`new_params` must hold the parameters'"):
        tracker.update(state, model, grads, opt_state, wider)
    with pytest.raises(ValueError, match="`grads` must have the structure"):
        tracker.update(state, model, [1.0], opt_state, model)
    with pytest.raises(ValueError, match="`opt_state` must be the state"):
        tracker.update(state, model, grads, optax.adam(1e-3).init(model), model)
    with pytest.raises(ValueError, match="`state` must be the `LoopTrackerState`"):
        tracker.update({}, model, grads, opt_state, model)
    longer = optim.tracker({"a": gen}, chain, model, 3)
    with pytest.raises(ValueError, match="`state` was not made by this tracker"):
        longer.update(state, model, grads, opt_state, other)
    with pytest.raises(ValueError, match="has recorded no step"):
        tracker.report(state)
    for _ in range(3):  # one step more than n_steps: dropped, and reported
        state = tracker.update(state, model, grads, opt_state, other)
    with pytest.raises(ValueError, match="more than the tracker's `n_steps` = 2"):
        tracker.report(state)


def test_equal_trackers_share_their_compiled_programs():
    # a second tracker of the same generators on the same model probes its fields
    # with the programs the first one compiled, and is the same pytree structure, so
    # a user's step that takes the tracker as an argument compiles once for both
    model = _model(jnp.float64)
    batches = _batches(2, jnp.float64)
    chain = optim.sgd_chain(LR, momentum=BETA, weight_decay=DECAY)
    opt = _optax_sgd()

    @eqx.filter_jit
    def step(tracker, tstate, params, opt_state, batch):
        grads = jax.grad(_loss)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        new = optax.apply_updates(params, updates)
        return tracker.update(tstate, params, grads, opt_state, new), new, opt_state

    def run(tracker):
        tstate, params, opt_state = tracker.init(model), model, opt.init(model)
        for k in range(2):
            batch = jax.tree.map(lambda b: b[k], batches)
            tstate, params, opt_state = step(tracker, tstate, params, opt_state, batch)
        return tracker.report(tstate)

    first = optim.tracker(_generators(model), chain, model, 2)
    reported = run(first)

    def build_and_run():
        second = optim.tracker(_generators(model), chain, model, 2)
        return second, run(second)

    compiles, (second, again) = compiles_during(build_and_run)
    assert compiles == 0
    assert jax.tree.structure(second) == jax.tree.structure(first)
    for name in reported.charges:
        np.testing.assert_array_equal(again.charges[name], reported.charges[name])
    # control: the counter sees a compilation when there is one
    compiles, _ = compiles_during(lambda: jax.jit(lambda v: v * 3.0 + 1.0)(jnp.ones(7)))
    assert compiles > 0
