"""The equinox architectures of `lnn.nn`: attention against Marcotte et al.'s formula
written out by hand, the layers against their definitions, the classifiers' shapes
and their bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lagrangian_nn as lnn
from lagrangian_nn import nn

EPS64 = float(np.finfo(np.float64).eps)


def _rng(seed=0):
    return np.random.default_rng(seed)


@eqx.filter_jit
def _by_hand(mha, x):
    # head h: softmax(x W_Q (x W_K)ᵀ / √d) x W_V W_O, W_Q = rows of the (out, in)
    # weight transposed; the biases ride along
    H, d = mha.num_heads, mha.qk_size
    expected = mha.output_proj.bias
    for h in range(H):
        sl = slice(h * d, (h + 1) * d)
        WQ, WK = mha.query_proj.weight[sl].T, mha.key_proj.weight[sl].T
        WV, WO = mha.value_proj.weight[sl].T, mha.output_proj.weight[:, sl].T
        Q = x @ WQ + mha.query_proj.bias[sl]
        K = x @ WK + mha.key_proj.bias[sl]
        V = x @ WV + mha.value_proj.bias[sl]
        expected = expected + jax.nn.softmax(Q @ K.T / np.sqrt(d), axis=-1) @ V @ WO
    return expected


def test_self_attention_is_marcottes_formula():
    H, d, dm, n = 2, 3, 5, 4
    mha = eqx.nn.MultiheadAttention(
        H,
        dm,
        qk_size=d,
        vo_size=d,
        use_query_bias=True,
        use_key_bias=True,
        use_value_bias=True,
        use_output_bias=True,
        dtype=jnp.float64,
        key=jax.random.key(0),
    )
    x = jnp.asarray(_rng().standard_normal((n, dm)))
    out = eqx.filter_jit(nn.SelfAttention(mha))(x)
    expected = _by_hand(mha, x)
    np.testing.assert_allclose(out, expected, rtol=0, atol=64 * EPS64)
    # the control rotates the queries by position: a different function
    rotated = nn.SelfAttention(
        mha.__class__(2, 4, key=jax.random.key(1)), rotate_queries=True
    )
    y = jnp.asarray(_rng(1).standard_normal((n, 4)), jnp.float32)
    plain = nn.SelfAttention(rotated.attention)
    assert float(jnp.max(jnp.abs(rotated(y) - plain(y)))) > 1e-3
    with pytest.raises(ValueError, match="even qk_size"):
        nn.SelfAttention(
            eqx.nn.MultiheadAttention(1, 3, key=jax.random.key(0)), rotate_queries=True
        )
    with pytest.raises(
        ValueError, match="`attention` must be an `eqx.nn.MultiheadAttention`"
    ):
        nn.SelfAttention(eqx.nn.Linear(2, 2, key=jax.random.key(0)))


def test_layers_match_their_definitions():
    x = jnp.asarray(_rng().standard_normal((3, 2, 2)))
    np.testing.assert_array_equal(nn.Flatten()(x), x.reshape(-1))
    # channel-major: channel c is the block c·H·W ... (c+1)·H·W − 1
    np.testing.assert_array_equal(nn.Flatten()(x)[4:8], x[1].ravel())
    seq = jnp.asarray(_rng(1).standard_normal((4, 3)))
    np.testing.assert_allclose(nn.TokenMean()(seq), seq.mean(0))
    lin = eqx.nn.Linear(3, 2, key=jax.random.key(0), dtype=jnp.float64)
    np.testing.assert_allclose(
        nn.Tokenwise(lin)(seq), seq @ lin.weight.T + lin.bias, atol=16 * EPS64
    )
    block = nn.Residual(
        [eqx.nn.Linear(3, 3, key=jax.random.key(1), dtype=jnp.float64), jax.nn.relu]
    )
    v = seq[0]
    np.testing.assert_allclose(
        block(v), v + jax.nn.relu(block.branch.layers[0](v)), atol=16 * EPS64
    )
    pos = nn.AddPosition(4, 3, key=jax.random.key(2), dtype=jnp.float64)
    np.testing.assert_allclose(pos(seq), seq + pos.position)
    with pytest.raises(ValueError, match="`branch` must be"):
        nn.Residual(3)
    with pytest.raises(ValueError, match="`branch` must hold callable layers"):
        nn.Residual([lin, 3])
    with pytest.raises(ValueError, match="`layer` must be callable"):
        nn.Tokenwise(None)


@pytest.mark.parametrize("norm, learnable", [("layer", True), ("rms", False)])
def test_transformer_shapes_and_norms(norm, learnable):
    model = nn.Transformer(
        n_tokens=8,
        d_token=8,
        d_model=8,
        n_heads=2,
        d_mlp=8,
        norm=norm,
        learnable_scale=learnable,
        key=jax.random.key(0),
        dtype=jnp.float64,
    )
    x, y = lnn.data.digits(n=5)
    x = jnp.asarray(x, jnp.float64)
    logits = model(x)  # the digits as 8 tokens of 8 pixels
    assert logits.shape == (5, 10)
    np.testing.assert_allclose(model(x[2].reshape(8, 8)), logits[2], atol=64 * EPS64)
    norms = [
        m
        for m in jax.tree.leaves(
            model, is_leaf=lambda m: isinstance(m, (eqx.nn.LayerNorm, eqx.nn.RMSNorm))
        )
        if isinstance(m, (eqx.nn.LayerNorm, eqx.nn.RMSNorm))
    ]
    assert len(norms) == 3
    cls = eqx.nn.LayerNorm if norm == "layer" else eqx.nn.RMSNorm
    assert all(isinstance(m, cls) and m.eps == 0 for m in norms)
    assert all((m.weight is not None) == learnable for m in norms)
    assert jnp.isfinite(nn.nll(logits, jnp.asarray(y)))


def test_transformer_bad_input():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`d_model` \\(6\\) must be divisible"):
        nn.Transformer(d_model=6, n_heads=4, key=key)
    with pytest.raises(ValueError, match="`norm` must be 'layer' or 'rms'"):
        nn.Transformer(norm="batch", key=key)
    with pytest.raises(ValueError, match="`norm_eps` must be a number >= 0"):
        nn.Transformer(norm_eps=-1.0, key=key)
    with pytest.raises(ValueError, match="`n_layers` must be a positive int"):
        nn.Transformer(n_layers=0, key=key)
    with pytest.raises(ValueError, match="`d_head` must be a positive int"):
        nn.Transformer(d_head=0, key=key)
    with pytest.raises(ValueError, match="`activation` must be callable"):
        nn.Transformer(activation="relu", key=key)
    model = nn.Transformer(d_model=4, n_heads=1, d_mlp=4, key=key)
    with pytest.raises(ValueError, match="`x` must have shape \\(8, 8\\)"):
        model(jnp.ones((3, 7)))


def test_convnet_shapes_and_bad_input():
    model = nn.ConvNet(residual=True, key=jax.random.key(0), dtype=jnp.float64)
    x, _ = lnn.data.digits(n=3)
    x = jnp.asarray(x, jnp.float64)
    logits = model(x)
    assert logits.shape == (3, 10)
    np.testing.assert_allclose(model(x.reshape(3, 1, 8, 8)), logits)
    kinds = [type(layer).__name__ for layer in model.layers.layers]
    assert kinds == [
        "Conv2d",
        "Lambda",
        "AvgPool2d",
        "Conv2d",
        "Lambda",
        "MaxPool2d",
        "Residual",
        "Flatten",
        "Linear",
    ]
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="must be divisible by 8"):
        nn.ConvNet(input_shape=(1, 6, 6), channels=(2, 2, 2), key=key)
    with pytest.raises(ValueError, match="`input_shape` must be \\(C, H, W\\)"):
        nn.ConvNet(input_shape=(8, 8), key=key)
    with pytest.raises(ValueError, match="`channels` must list positive"):
        nn.ConvNet(channels=(), key=key)
    with pytest.raises(ValueError, match="`x` must have shape \\(1, 8, 8\\)"):
        model(jnp.ones((2, 3, 8, 8)))


# --- the catalogue on a pre-norm residual stream, and on lone layers ----------------


def _stream(eps, dtype):
    """Tokenwise(Linear) → Residual(LayerNorm(eps) → Linear) → LayerNorm(eps=0) →
    mean → Linear, and the leaves that write into the residual stream."""
    k = jax.random.split(jax.random.key(0), 3)
    d = 4
    norm = lambda e: nn.Tokenwise(  # noqa: E731
        eqx.nn.LayerNorm(d, eps=e, use_weight=False, use_bias=False)
    )
    model = [
        nn.Tokenwise(eqx.nn.Linear(3, d, key=k[0], dtype=dtype)),
        nn.Residual(
            [norm(eps), nn.Tokenwise(eqx.nn.Linear(d, d, key=k[1], dtype=dtype))]
        ),
        norm(0.0),
        nn.TokenMean(),
        eqx.nn.Linear(d, 2, key=k[2], dtype=dtype),
    ]
    writers = lambda m: (  # noqa: E731
        m[0].layer.weight,
        m[0].layer.bias,
        m[1].branch.layers[1].layer.weight,
        m[1].branch.layers[1].layer.bias,
    )
    return model, writers


def _stream_change(model, writers, x, c):
    """max |f_c(x) − f(x)| / max |f(x)| with the stream's writers scaled by c."""
    scaled = eqx.tree_at(writers, model, tuple(c * w for w in writers(model)))
    f = lambda m: jax.vmap(nn.sequential(m))(x)  # noqa: E731
    return float(jnp.max(jnp.abs(f(scaled) - f(model))) / jnp.max(jnp.abs(f(model))))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_branch_norm_eps_breaks_the_stream_scale(dtype):
    # Scaling everything that writes into a pre-norm residual stream scales the
    # stream; every reader normalises it, so the logits do not change -- exactly when
    # each norm has eps = 0. With eqx.nn.LayerNorm's default eps = 1e-5 in the branch,
    # the change is O(eps/variance) ≈ 1e-6 here: below what a float32 certificate
    # resolves (rtol = 2^8 eps32 ≈ 3e-5), so the structure must refuse it.
    x = jnp.asarray(_rng(2).standard_normal((8, 5, 3)), dtype)
    x64 = jnp.asarray(x, jnp.float64)
    eps = float(jnp.finfo(dtype).eps)
    broken, writers = _stream(1e-5, dtype)
    S = nn.symmetries(broken, x)
    assert not [k for k in S if k.endswith(":scale")], sorted(S)
    why = S.refused["[1].branch.layers[0]:scale"]
    assert "eps = 1e-05 > 0" in why and "residual stream" in why
    # the refusal is right: in float64 the scaling moves the logits by far more
    # than rounding (the float64 certificate would refuse it too)
    change = _stream_change(_stream(1e-5, jnp.float64)[0], writers, x64, 3.0)
    assert change > 1e6 * EPS64
    # control: with eps = 0 in the branch the stream scale is certified in both
    # dtypes, and scaling the writers leaves the logits unchanged to rounding
    exact, _ = _stream(0.0, dtype)
    S0 = nn.symmetries(exact, x)
    assert "[2]:scale" in S0 and S0.residuals["[2]:scale"] <= S0.tolerance
    assert not [k for k in S0.refused if k.endswith(":scale")]
    assert _stream_change(exact, writers, x, 3.0) <= 64 * eps
    assert change > 1e4 * _stream_change(
        _stream(0.0, jnp.float64)[0], writers, x64, 3.0
    )


def test_lone_layers_are_walked_like_a_sequence_of_one():
    # a lone SelfAttention gets the per-head GL(d_head) of the same layer inside
    # `sequential([...])`, with no unknown structure reported
    H, d = 2, 2
    mha = eqx.nn.MultiheadAttention(
        H, 4, qk_size=d, vo_size=d, key=jax.random.key(1), dtype=jnp.float64
    )
    x = jnp.asarray(_rng(3).standard_normal((6, 5, 4)))
    S = nn.symmetries(nn.SelfAttention(mha), x, strict=True)
    Sq = nn.symmetries(nn.sequential([nn.SelfAttention(mha)]), x, strict=True)
    assert S.unknown == Sq.unknown == ()
    assert set(S) == {k.removeprefix("layers[0].") for k in Sq}
    assert len(S) == 2 * H * d * d and "attention:qk[1][0,1]" in S
    assert all(r <= S.tolerance for r in S.residuals.values())
    # the lone generator is the sequence's, on the layer's own parameters
    t = jnp.zeros(())
    xi = S["attention:vo[0][1,0]"].xi(t, S.params)
    xq = Sq["layers[0].attention:vo[0][1,0]"].xi(t, Sq.params)
    for a, b in zip(jax.tree.leaves(xi), jax.tree.leaves(xq)):
        np.testing.assert_array_equal(a, b)
    # a lone Residual and a lone Linear with a softmax head are known layers too
    k1, k2 = jax.random.split(jax.random.key(4))
    block = nn.Residual(
        [
            eqx.nn.Linear(3, 4, key=k1, dtype=jnp.float64),
            jax.nn.relu,
            eqx.nn.Linear(4, 3, key=k2, dtype=jnp.float64),
        ]
    )
    v = jnp.asarray(_rng(5).standard_normal((16, 3)))
    R = nn.symmetries(block, v, strict=True)
    assert sorted(R) == [f"branch.layers[0]:rescale[{c}]" for c in range(4)]
    head = nn.symmetries(
        eqx.nn.Linear(3, 2, key=k1, dtype=jnp.float64), v, softmax_head=True
    )
    assert sorted(head) == [
        "model:translate[0]",
        "model:translate[1]",
        "model:translate[2]",
        "model:translate[bias]",
    ]
    # control: a module the catalogue does not know is still reported, not guessed
    mlp = eqx.nn.MLP(3, 2, 4, 1, key=k2, dtype=jnp.float64)
    with pytest.raises(ValueError, match="not in the catalogue.*MLP"):
        nn.symmetries(mlp, v, strict=True)


def test_catalogue_certifies_in_chunks_of_bounded_memory(monkeypatch):
    # The certificate maps every candidate's full-size field ξ; at once, that holds
    # (#candidates) × (#parameters) numbers (two copies each here). In chunks of c
    # candidates the compiled program holds O(c) copies of the parameters, whatever
    # the number of candidates, and certifies exactly the same generators.
    from lagrangian_nn.nn import _symmetries as S

    k1, k2, k3 = jax.random.split(jax.random.key(6), 3)
    model = [
        eqx.nn.Linear(4, 64, key=k1, dtype=jnp.float64),
        jax.nn.relu,
        eqx.nn.Linear(64, 64, key=k2, dtype=jnp.float64),
        jax.nn.relu,
        eqx.nn.Linear(64, 3, key=k3, dtype=jnp.float64),
    ]
    x = jnp.asarray(_rng(7).standard_normal((8, 4)))

    def loss(m):  # weight decay on one factor: layers[0]'s rescalings are refused
        out = jax.vmap(lambda v: m[4](jax.nn.relu(m[2](jax.nn.relu(m[0](v))))))(x)
        return jnp.sum(jax.nn.log_softmax(out)) + 1e-3 * jnp.sum(m[0].weight ** 2)

    params, _ = eqx.partition(model, eqx.is_inexact_array)
    n = S._size(params)
    # the library's chunk never exceeds its budget of numbers
    assert S._chunk(10**4, 10**6) * 10**6 <= S._CHUNK_NUMBERS
    assert S._chunk(10**4, 10**9) == 1 and S._chunk(5, 1) == 5
    whole = nn.symmetries(model, x, loss=loss, softmax_head=True)
    monkeypatch.setattr(S, "_CHUNK_NUMBERS", 4 * n)  # chunks of 4 candidates
    chunked = nn.symmetries(model, x, loss=loss, softmax_head=True)
    assert sorted(chunked) == sorted(whole) and len(whole) > 64
    assert chunked.refused == whole.refused
    assert all(
        whole.refused[f"[0]:rescale[{c}]"].startswith("not a symmetry")
        for c in range(64)
    )
    for k in whole:  # (r, s): r is rounding, s the size of its terms
        (r1, s1), (r0, s0) = chunked._terms[k], whole._terms[k]
        np.testing.assert_allclose(s1, s0, rtol=64 * EPS64)
        assert abs(r1 - r0) <= 64 * EPS64 * s0
    assert sorted(chunked.isometries()) == sorted(whole.isometries())

    # the compiled programs' scratch memory, in copies of the parameters
    cands = [(k, g, "quadratic", "out") for k, g in whole.candidates.items()]
    groups = S._stacked(cands)
    grads = {"out": params}

    def copies(chunk):
        gs = [(*g, min(g[2], chunk)) for _, g in groups]
        compiled = S._all_residuals.lower(gs, grads, params).compile()
        return compiled.compiled.memory_analysis().temp_size_in_bytes / (8 * n)

    assert len(cands) > 128
    assert copies(4) < 8 + 4 * 4
    # control: all at once, the scratch memory grows with the number of candidates
    assert copies(len(cands)) > len(cands) / 2


def _dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_charges_and_rates_of_every_generator_in_chunks_of_bounded_memory(monkeypatch):
    # `noether_charges(L)` and `invariance_residuals(L)` give, per generator, exactly
    # what `lnn.noether_charge` and `lnn.invariance_residual` give for it alone (a
    # conformal L, reduced or not), reading L's derivatives once; each generator's
    # field is evaluated chunk by chunk, so memory does not grow with their number.
    from lagrangian_nn.nn import _symmetries as S

    k1, k2 = jax.random.split(jax.random.key(8))
    model = [
        eqx.nn.Linear(3, 48, key=k1, dtype=jnp.float64),
        jax.nn.relu,
        eqx.nn.Linear(48, 2, key=k2, dtype=jnp.float64),
    ]
    x = jnp.asarray(_rng(9).standard_normal((6, 3)))
    sym = nn.symmetries(model, x, softmax_head=True)
    params, static = sym.params, sym.static

    def loss(p):
        m = eqx.combine(p, static)
        out = jax.vmap(lambda u: m[2](jax.nn.relu(m[0](u))))(x)
        return -jnp.mean(jax.nn.log_softmax(out)[:, 0])

    L = lnn.dynamics.nesterov(loss)
    rng = _rng(10)
    v = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), params)
    t, n, default = jnp.asarray(1.7), S._size(params), S._CHUNK_NUMBERS
    assert len(sym) > 48
    # the gradient-flow charges ⟨θ, ξ(θ)⟩, vectorised, equal each generator's own
    Q = eqx.filter_jit(sym.charges)(params)
    zero = jnp.zeros(())
    own = {k: float(_dot(params, g.xi(zero, params))) for k, g in sym.items()}
    assert set(Q) == set(own)
    top = max(abs(q) for q in own.values())
    assert all(abs(float(Q[k]) - q) <= 64 * EPS64 * top for k, q in own.items())
    # one by one (a program each): every 15th generator, and the last (a translation)
    some = list(sym)[::15] + list(sym)[-1:]
    for reduced in (False, True):
        one_by_one = {
            k: (
                float(lnn.noether_charge(L, sym[k], reduced=reduced)(t, params, v)),
                float(
                    lnn.invariance_residual(L, sym[k], reduced=reduced)(t, params, v)
                ),
            )
            for k in some
        }
        # all at once; chunks of 5 (not a divisor of a group's size)
        for numbers in (default, 2 * 5 * n) if not reduced else (2 * 5 * n,):
            monkeypatch.setattr(S, "_CHUNK_NUMBERS", numbers)
            Q = eqx.filter_jit(sym.noether_charges(L, reduced=reduced))(t, params, v)
            R = eqx.filter_jit(sym.invariance_residuals(L, reduced=reduced))(
                t, params, v
            )
            assert set(Q) == set(R) == set(sym)
            qs = max(abs(q) for q, _ in one_by_one.values())
            rs = max(abs(r) for _, r in one_by_one.values())
            assert qs > 0 and rs > 0
            for k, (q, r) in one_by_one.items():
                assert abs(float(Q[k]) - q) <= 64 * EPS64 * qs, (k, reduced, numbers)
                assert abs(float(R[k]) - r) <= 64 * EPS64 * rs, (k, reduced, numbers)

    # the compiled program's scratch memory, in copies of the parameters
    def copies(numbers):
        monkeypatch.setattr(S, "_CHUNK_NUMBERS", numbers)
        f = eqx.filter_jit(sym.invariance_residuals(L))
        mem = f.lower(t, params, v).compile().compiled.memory_analysis()
        return mem.temp_size_in_bytes / (8 * n)

    assert copies(2 * 4 * n) < 8 + 2 * 4 * 4
    # control: all at once, the scratch memory grows with the number of generators
    assert copies(default) > len(sym) / 2


def test_charges_and_rates_refuse_a_generator_with_a_time_component():
    # `noether_charges` reads each field through ξ and ξ̇ only; a generator that also
    # moves time (τ ≠ 0) needs L's energy term and is refused, naming it
    model = [eqx.nn.Linear(2, 1, key=jax.random.key(0), dtype=jnp.float64)]
    params, static = eqx.partition(model, eqx.is_inexact_array)
    gen = lnn.Generator(lambda t, q: q, tau=lambda t, q: jnp.ones_like(t))
    S = nn.Symmetries(
        {"dilation": gen},
        candidates={},
        kinds={"dilation": "quadratic"},
        residuals={},
        tolerance=0.0,
        refused={},
        unknown=(),
        params=params,
        static=static,
    )
    L = lnn.dynamics.newtonian(lambda p: jnp.sum(p[0].weight ** 2))
    for method in (S.noether_charges, S.invariance_residuals):
        with pytest.raises(ValueError, match=r"time component; \['dilation'\]"):
            method(L)
