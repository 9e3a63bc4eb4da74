import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lagrangian_nn as lnn
from lagrangian_nn import nn, optim

KEY = jax.random.key(0)


def _setup(acts, bias=False, d0=4):
    x = jax.random.normal(jax.random.key(1), (16, d0))
    y = jax.random.randint(jax.random.key(2), (16,), 0, 3)
    m = nn.MLP([d0, 6, 5, 3], acts, bias=bias, key=KEY)
    return nn.make_loss(x, y), m


def test_gd_matches_hand_loop():
    loss, m = _setup([nn.ReLU(), nn.ReLU(), nn.Identity()])
    res = optim.run(optim.gd(0.1), loss, m, 5, track={"q": lambda s: s.q})
    q = m
    for _ in range(5):
        q = jax.tree.map(lambda w, g: w - 0.1 * g, q, jax.grad(loss)(q))
    assert lnn._tree.tree_max_abs(lnn._tree.tree_sub(res.params, q)) < 1e-14
    assert np.allclose(res.ts, 0.1 * np.arange(1, 6))


def test_newtonian_is_eq21_and_nesterov_is_eq20():
    loss = lambda w: jnp.sum(jnp.cos(w)) + 0.1 * jnp.sum(w**4)
    w0 = jnp.array([0.3, -1.0, 2.0])
    eta = 0.01
    res = optim.run(optim.newtonian(eta), loss, w0, 20, track={"w": lambda s: s.q})
    ws = [w0, w0 - eta * jax.grad(loss)(w0)]
    for _ in range(19):
        ws.append(2 * ws[-1] - ws[-2] - eta * jax.grad(loss)(ws[-1]))
    assert np.allclose(res.tracked["w"], jnp.stack(ws[1:]), atol=1e-13)
    assert np.allclose(res.ts[-1], 20 * np.sqrt(eta))
    # eq. 20, with y the optimised point
    res = optim.run(optim.nesterov(eta), loss, w0, 20, track={"y": lambda s: s.q})
    w_prev, y = w0, w0
    ys = []
    for k in range(1, 21):
        w = y - eta * jax.grad(loss)(y)
        y = w + (k - 1) / (k + 2) * (w - w_prev)
        w_prev = w
        ys.append(y)
    assert np.allclose(res.tracked["y"], jnp.stack(ys), atol=1e-13)


@pytest.mark.parametrize(
    "acts,bias",
    [
        ([nn.ReLU(), nn.RePU(2.0), nn.Identity()], False),
        ([nn.Swish(), nn.LeakyReLU(0.1), nn.Identity()], True),
    ],
)
def test_gd_exact_rescale_accounting(acts, bias):
    """C(w_{k+1}) − C(w_k) = η²⟨g_k, A g_k⟩ exactly along GD (plain SGD): the charge
    law predicts the measured rescaling charge to rounding while the charge drifts."""
    loss, m = _setup(acts, bias)
    lr = 0.05
    chain = optim.sgd_chain(lr)
    gens = {
        f"{layer}-{neuron}": nn.rescale(m, layer, neuron)
        for layer in (1, 2)
        for neuron in (None, 0)
    }
    laws = {k: optim.charge_law(chain, g, "quadratic") for k, g in gens.items()}
    res = optim.run(chain.optimizer, loss, m, 400, track=laws)
    # plain SGD takes GD's steps
    gd = optim.run(optim.gd(lr), loss, m, 400)
    assert eqx.tree_equal(res.params, gd.params, rtol=1e-13, atol=0)
    for name, law in laws.items():
        C0 = optim.charge(gens[name], "quadratic", m)
        measured, predicted = law.predict(res.tracked[name], C0)
        scale = float(jnp.max(jnp.abs(measured)))
        assert float(jnp.max(jnp.abs(measured - predicted))) < 1e-12 * scale
        assert float(jnp.max(jnp.abs(measured - measured[0]))) > 1e-6 * scale


def test_nd_eq21_conserves_discrete_rotation_charge_exactly():
    # isotropic data: input rotations are an exact symmetry
    x = jnp.concatenate([jnp.eye(3), -jnp.eye(3)])
    loss = nn.make_loss(x, jnp.ones((6, 2)), kind="squared_error")
    m = nn.MLP([3, 4, 2], [nn.Identity(), nn.Identity()], key=KEY)
    eta = 1e-3
    h = float(np.sqrt(eta))
    v0 = jax.tree.map(lambda w: 0.3 * jnp.ones_like(w), m)
    P = jnp.array([[0.0, 1.0, -0.5], [-1.0, 0.0, 0.3], [0.5, -0.3, 0.0]])
    res = optim.run(
        optim.newtonian(eta, velocity=v0),
        loss,
        m,
        2000,
        track={
            "J": lambda s: optim.discrete_rotation_matrix(s, h),
            "Q": optim.newtonian_charge(nn.rotate_inputs(m, P), h),
        },
    )
    J, Q = res.tracked["J"], res.tracked["Q"]
    assert float(jnp.max(jnp.abs(J - J[0]))) < 1e-11 * float(jnp.max(jnp.abs(J[0])))
    assert float(jnp.max(jnp.abs(Q - Q[0]))) < 1e-11 * abs(float(Q[0]))
    assert (
        abs(float(Q[0]) + 0.5 * float(jnp.trace(J[0] @ P)))
        < 1e-12 * abs(float(Q[0])) * 10
    )
    # and the scheme tracks continuous ND: the discrete charge ≈ the ND charge
    nd = lnn.simulate(
        lnn.dynamics.newtonian(loss),
        m,
        v0,
        t0=0.0,
        t1=float(res.ts[-1]),
        rtol=1e-10,
        atol=1e-12,
    )
    S = nn.rotation_quantity(
        jax.tree.map(lambda z: z[-1], nd.q), jax.tree.map(lambda z: z[-1], nd.qdot)
    )
    assert float(jnp.max(jnp.abs(S + J[-1]))) < 1e-2


def test_run_tracks_any_optax_optimiser_and_rejects_bad_input():
    loss, m = _setup([nn.ReLU(), nn.ReLU(), nn.Identity()])
    res = optim.run(
        optax.adam(1e-2), loss, m, 10, dt=1.0, track={"l": lambda s: loss(s.q)}
    )
    assert res.tracked["l"].shape == (10,) and float(res.tracked["l"][-1]) < float(
        res.loss[0]
    )
    with pytest.raises(ValueError, match="`dt` is required"):
        optim.run(optax.adam(1e-2), loss, m, 10)
    with pytest.raises(ValueError, match="`steps`"):
        optim.run(optim.gd(0.1), loss, m, 0)
    with pytest.raises(ValueError, match="`lr` must be > 0"):
        optim.gd(0.0)
    with pytest.raises(ValueError, match="`start_step`"):
        optim.nesterov(0.1, start_step=0)


def test_run_compiles_once_for_new_data():
    import equinox as eqx

    loss, m = _setup([nn.ReLU(), nn.ReLU(), nn.Identity()])
    opt = optim.gd(0.1)
    traces = []

    def C(step):
        traces.append(1)  # runs only while tracing
        return nn.rescale_quantity(step.q, 1)

    optim.run(opt, loss, m, 3, track={"C": C})
    assert len(traces) == 1
    loss2 = eqx.tree_at(lambda z: z.x, loss, loss.x + 1.0)
    m2 = jax.tree.map(lambda w: 2 * w, m)
    optim.run(opt, loss2, m2, 3, track={"C": C})
    assert len(traces) == 1


def test_a_learning_rate_sweep_compiles_once():
    # `gd`, `newtonian` and `nesterov` hold their numbers (η, √η, the start step, an
    # initial velocity) as traced arrays, so new values reuse the compiled run ...
    loss = lambda w: jnp.sum(jnp.cos(w)) + 0.1 * jnp.sum(w**4)
    w0 = jnp.array([0.3, -1.0, 2.0])
    builders = {
        "gd": lambda eta: optim.gd(eta),
        "newtonian": lambda eta: optim.newtonian(eta, velocity=w0 * eta),
        "nesterov": lambda eta: optim.nesterov(
            eta, start_step=int(1 / eta**0.5), velocity=-w0
        ),
    }
    for name, build in builders.items():
        traces = []

        def w(step):
            traces.append(1)  # runs only while tracing
            return step.q

        finals = []
        for eta in (0.04, 0.01, 0.0025):
            res = optim.run(build(eta), loss, w0, 30, track={"w": w})
            finals.append(res.params)
            assert np.allclose(res.ts[-1], 30 * (eta if name == "gd" else eta**0.5))
        assert len(traces) == 1, name
        # ... and the numbers are not frozen at the first value: the runs differ
        assert float(jnp.max(jnp.abs(finals[0] - finals[2]))) > 1e-3, name
    # the same for the chain's hyperparameters, and an SGDChain is run as its optimizer
    traces = []

    def q(step):
        traces.append(1)
        return step.q

    for eta, beta in ((0.1, 0.9), (0.05, 0.5)):
        chain = optim.sgd_chain(eta, momentum=beta)
        a = optim.run(chain, loss, w0, 10, track={"q": q})
        b = optim.run(chain.optimizer, loss, w0, 10, track={"q": q})
        assert np.array_equal(a.tracked["q"], b.tracked["q"])
    assert len(traces) == 1


def test_run_refuses_what_is_not_an_optimiser():
    loss = lambda w: jnp.sum(w**2)
    for bad in (lambda g: g, "adam", None, optax.adam):
        with pytest.raises(ValueError, match="`optimizer` must be an optax"):
            optim.run(bad, loss, jnp.ones(3), 5, dt=1.0)
    with pytest.raises(ValueError, match="`steps` must be a positive int; got True"):
        optim.run(optim.gd(0.1), loss, jnp.ones(3), True)


# --- SGD chains: bitwise as optax, PyTorch's dampening, the critical continuous form

# `lnn.optim.run` as a user's program gets it: XLA's default optimisation (the suite's
# conftest lowers it to compile faster, and at that level no multiply-add is fused, so
# a difference in fusing would not show)
USER_COMPILE = {
    "xla_backend_optimization_level": 3,
    "xla_llvm_disable_expensive_passes": False,
}


def run_as_compiled_for_users(optimizer, loss, q0, steps, dt=0.1):
    from lagrangian_nn.optim import _run

    if isinstance(optimizer, optim.SGDChain):
        optimizer = optimizer.optimizer
    args = (optimizer, loss, q0, steps, jnp.asarray(dt), {})
    compiled = _run._run.lower(*args).compile(compiler_options=USER_COMPILE)
    return compiled(*args)[0]


def _assert_same_bits(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert u.dtype == v.dtype
        assert jnp.array_equal(u, v), float(jnp.max(jnp.abs(u - v)))


def _float32_problem():
    model = nn.NormalizedMLP([5, 6, 4, 3], normalized=1, key=jax.random.key(0))
    model = jax.tree.map(lambda w: w.astype(jnp.float32), model)
    x = jax.random.normal(jax.random.key(1), (32, 5), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (32,), 0, 3)
    return nn.make_loss(x, y), model


def _pytorch_dampening(d):
    # torch.optim.SGD's buffer: b_1 = g_0, then b_{k+1} = β b_k + (1 - d) g_k
    return optax.scale_by_schedule(lambda n: jnp.where(n == 0, 1.0, 1 - d))


@pytest.mark.parametrize(
    "kwargs, reference",
    [
        (  # the README's chain
            dict(momentum=0.9, weight_decay=0.05),
            lambda: optax.chain(
                optax.add_decayed_weights(0.05), optax.sgd(0.1, momentum=0.9)
            ),
        ),
        (
            dict(momentum=0.7, dampening=0.1, weight_decay=0.01),
            lambda: optax.chain(
                optax.add_decayed_weights(0.01),
                _pytorch_dampening(0.1),
                optax.trace(0.7),
                optax.scale_by_learning_rate(0.1),
            ),
        ),
    ],
)
def test_sgd_chain_is_bitwise_the_optax_chain_as_compiled_for_users(kwargs, reference):
    # 200 float32 steps: a difference of one rounding anywhere grows far above 1 ulp
    loss, model = _float32_problem()
    ours = run_as_compiled_for_users(optim.sgd_chain(0.1, **kwargs), loss, model, 200)
    theirs = run_as_compiled_for_users(reference(), loss, model, 200)
    _assert_same_bits(ours, theirs)


def _torch_sgd(grad, w0, steps, lr, momentum, dampening, weight_decay, nesterov):
    """torch.optim.SGD's update rule (torch/optim/sgd.py, `_single_tensor_sgd`),
    written out in NumPy; returns the iterates w_1, ..., w_steps."""
    w, buf, out = np.array(w0, np.float64), None, []
    for _ in range(steps):
        d_p = grad(w) + weight_decay * w
        if momentum != 0:
            if buf is None:
                buf = d_p.copy()
            else:
                buf = momentum * buf + (1 - dampening) * d_p
            d_p = d_p + momentum * buf if nesterov else buf
        w = w - lr * d_p
        out.append(w)
    return np.stack(out)


def test_dampening_is_pytorchs():
    A = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.2], [0.0, -0.2, 0.5]])
    b = np.array([1.0, -2.0, 0.5])

    def loss(w):
        return 0.5 * w @ (jnp.asarray(A) @ w) - w @ b + 0.05 * jnp.sum(w**4)

    grad = lambda w: A @ w - b + 0.2 * w**3
    w0 = np.array([1.0, -0.5, 2.0])
    track = {"w": lambda s: s.q}
    cases = [
        dict(momentum=0.7, dampening=0.1, weight_decay=0.0),
        dict(momentum=0.9, dampening=0.5, weight_decay=0.05),
        dict(momentum=0.0, dampening=0.5, weight_decay=0.05),  # dampening ignored
        dict(momentum=0.8, dampening=0.0, weight_decay=0.01, nesterov=True),
    ]
    for kw in cases:
        kw = {"nesterov": False, **kw}
        chain = optim.sgd_chain(0.1, **kw)
        ours = optim.run(chain, loss, jnp.asarray(w0), 200, track=track).tracked["w"]
        torch = _torch_sgd(grad, w0, 200, lr=0.1, **kw)
        scale = np.max(np.abs(torch))
        assert np.max(np.abs(np.asarray(ours) - torch)) < 1e-13 * scale, kw
        # control: dampening the first step too (the rule before PyTorch's) moves
        # the whole trajectory by O(d), far beyond rounding
        if kw["dampening"] and kw["momentum"]:
            d, m = kw["dampening"], kw["momentum"]
            scaled = optax.chain(
                optax.add_decayed_weights(kw["weight_decay"]),
                optax.scale(1 - d),
                optax.trace(m),
                optax.scale_by_learning_rate(0.1),
            )
            other = optim.run(scaled, loss, jnp.asarray(w0), 200, dt=0.1, track=track)
            gap = np.max(np.abs(np.asarray(other.tracked["w"]) - torch))
            assert gap > 1e-3 * scale, (kw, gap / scale)


def _kunin_reference(chain, kind, Q0, steps, source):
    """The continuous form with the rest at t = -η/2, in 60 digits (mpmath): roots
    -γ ± μ, the critical case as μ = 1e-20 (an error of order μ²)."""
    import mpmath as mp

    with mp.workdps(60):
        k = optim.kunin_constants(chain, kind)
        g, w = mp.mpf(k["gamma"]), mp.mpf(k["omega"])
        eta = mp.mpf(float(chain.lr))
        h = eta / 2
        mu = mp.sqrt(mp.mpc(g**2 - w**2))
        mu = mu if mu != 0 else mp.mpf("1e-20")
        r1, r2 = -g + mu, -g - mu
        e1, e2 = mp.exp(-r1 * h) * r1, mp.exp(-r2 * h) * r2
        c1, c2 = -e2 * Q0 / (e1 - e2), e1 * Q0 / (e1 - e2)
        K = lambda s: (mp.exp(r1 * s) - mp.exp(r2 * s)) / (r1 - r2)
        out = []
        for n in range(steps + 1):
            t = eta * n
            drive = mp.fsum(K(eta * (n - j)) * mp.mpf(source[j]) for j in range(n))
            out.append(
                float(mp.re(c1 * mp.exp(r1 * t) + c2 * mp.exp(r2 * t) + eta * drive))
            )
        return np.array(out)


def test_continuous_charge_is_stable_through_critical_damping():
    # heavy ball with coupled decay at λ = λ* (1 + f): γ = ω at f = 0 (to rounding)
    eta, beta, steps = 0.1, 0.9, 60
    lam = (1 - beta) ** 2 / (4 * eta * (1 + beta))
    dAd = np.random.default_rng(0).random(steps)
    regimes = set()
    for f in (0.0, 1e-9, -1e-9, -1e-5, 0.2, -0.2):
        chain = optim.sgd_chain(eta, momentum=beta, weight_decay=lam * (1 + f))
        regimes.add(optim.kunin_constants(chain, "quadratic")["regime"])
        ours = np.asarray(
            optim.continuous_charge(chain, "quadratic", 1.3, steps, {"dAd": dAd})
        )
        exact = _kunin_reference(chain, "quadratic", 1.3, steps, 2 * dAd)
        err = np.max(np.abs(ours - exact)) / np.max(np.abs(exact))
        assert err < 100 * np.finfo(np.float64).eps, (f, err)
    assert regimes == {"critical", "underdamped", "overdamped"}


def test_accounting_trackers_trace_their_numbers():
    # a new learning rate (or time step) reuses the compiled run: η and h are traced
    # arrays of the trackers, not compiled-in floats; the numbers are not frozen
    loss, m = _setup([nn.ReLU(), nn.ReLU(), nn.Identity()])
    gen = nn.rescale(m, 1)
    C0 = optim.charge(gen, "quadratic", m)
    traces = []

    def k(step):
        traces.append(1)  # runs only while tracing
        return step.k

    finals = []
    for lr in (0.05, 0.02):
        chain = optim.sgd_chain(lr)
        law = optim.charge_law(chain, gen, "quadratic")
        res = optim.run(chain.optimizer, loss, m, 5, track={"law": law, "k": k})
        measured, predicted = law.predict(res.tracked["law"], C0)
        scale = float(jnp.max(jnp.abs(measured)))
        assert float(jnp.max(jnp.abs(measured - predicted))) < 1e-12 * scale
        finals.append(measured[-1])
    assert len(traces) == 1
    assert abs(float(finals[0] - finals[1])) > 1e-9 * scale  # the runs differ
    # control: the law of the first learning rate predicts the second run wrongly
    frozen = optim.charge_law(optim.sgd_chain(0.05), gen, "quadratic")
    measured, predicted = frozen.predict(res.tracked["law"], C0)
    scale = float(jnp.max(jnp.abs(measured)))
    assert float(jnp.max(jnp.abs(measured - predicted))) > 1e-9 * scale
    # the discrete Noether charge's time step is traced too
    gen = nn.rescale(m, 1)
    for h in (0.1, 0.2):
        optim.run(
            optim.newtonian(h**2),
            loss,
            m,
            3,
            track={"Q": optim.newtonian_charge(gen, h), "k": k},
        )
    assert len(traces) == 2  # one new trace: the newtonian run, then none for h


def test_discrete_noether_charge_is_a_deprecated_alias():
    # the old name of `newtonian_charge` warns and builds the same tracker;
    # `lnn.variational.discrete_noether_charge` is a different function
    _, m = _setup([nn.ReLU(), nn.ReLU(), nn.Identity()])
    gen = nn.rescale(m, 1)
    with pytest.warns(DeprecationWarning, match="use `lnn.optim.newtonian_charge`"):
        old = optim.discrete_noether_charge(gen, 0.1)
    assert eqx.tree_equal(old, optim.newtonian_charge(gen, 0.1))
    assert not eqx.tree_equal(old, optim.newtonian_charge(gen, 0.2))  # control
    assert optim.discrete_noether_charge is not lnn.variational.discrete_noether_charge


def test_charge_law_records_only_what_the_law_needs():
    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = jax.random.randint(jax.random.key(2), (16,), 0, 3)
    m = nn.NormalizedMLP([4, 5, 5, 3], normalized=1, key=KEY)

    def loss(q):
        return nn.nll(q(x), y)

    gens = {
        "linear": nn.translate_logits(m),
        "quadratic": nn.scale_invariance(m),
    }
    chains = {
        "sgd": optim.sgd_chain(0.1, weight_decay=0.01),
        "heavy ball": optim.sgd_chain(0.1, momentum=0.9, weight_decay=0.01),
        "nesterov": optim.sgd_chain(0.1, momentum=0.9, nesterov=True),
    }
    for name, chain in chains.items():
        for kind, gen in gens.items():
            laws = {
                "law": optim.charge_law(chain, gen, kind),
                "full": optim.charge_law(chain, gen, kind, continuous=True),
            }
            res = optim.run(chain, loss, m, 20, track=laws)
            keys = {"charge"}
            if kind == "quadratic":
                keys |= {"uAu", *(["uAv"] if chain.nesterov else [])}
            assert set(res.tracked["law"]) == keys, (name, kind)
            continuous = {"gAg", "dAd", "dAg"} if kind == "quadratic" else set()
            assert set(res.tracked["full"]) == keys | continuous, (name, kind)
            # the same charges, and the exact law holds from either output
            Q0 = optim.charge(gen, kind, m)
            for key in ("law", "full"):
                measured, predicted = laws[key].predict(res.tracked[key], Q0)
                err = float(jnp.max(jnp.abs(measured - predicted)))
                assert err < 1e-12 * float(jnp.max(jnp.abs(measured))), (name, kind)
            # the tracker's charge (zero leaves of ξ skipped) is the charge
            final = optim.charge(gen, kind, res.params)
            assert np.isclose(res.tracked["law"]["charge"][-1], final, rtol=1e-14)
            if kind == "quadratic":
                with pytest.raises(ValueError, match=r"continuous=True"):
                    optim.continuous_charge(chain, kind, Q0, 20, res.tracked["law"])
                optim.continuous_charge(chain, kind, Q0, 20, res.tracked["full"])
    with pytest.raises(ValueError, match="`continuous` must be a bool"):
        optim.charge_law(chains["sgd"], gens["linear"], "linear", continuous=1)
    with pytest.raises(ValueError, match="must hold 'uAv'"):
        law = optim.charge_law(chains["nesterov"], gens["quadratic"], "quadratic")
        law.predict({"charge": jnp.ones(3), "uAu": jnp.ones(3)}, 1.0)
