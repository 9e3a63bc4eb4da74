"""The symmetry catalogue `lnn.nn.symmetries`: every family against a closed-form
transformation of the parameters (the model's output, or its log-softmax, is unchanged
to an eps-scaled tolerance, and the generator is the derivative of that
transformation), each with a non-symmetry control that the catalogue refuses; and the
charges along gradient flow (`lnn.simulate`), conserved to integration accuracy, with
a control where they must break."""

import collections
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lagrangian_nn as lnn
from lagrangian_nn import nn

EPS64 = float(np.finfo(np.float64).eps)


def _family(name):
    return name.split(":")[1].split("[")[0]


def _count(names):
    return collections.Counter(_family(k) for k in names)


def _tiny_transformer(dtype=jnp.float64, **kw):
    cfg = dict(
        n_tokens=4, d_token=4, d_model=4, n_heads=2, d_mlp=4, n_classes=3, bias=True
    )
    cfg.update(kw)
    return nn.Transformer(**cfg, key=jax.random.key(0), dtype=dtype)


def _tiny_convnet(dtype=jnp.float64, **kw):
    cfg = dict(input_shape=(1, 4, 4), channels=(2, 3), n_classes=3)
    cfg.update(kw)
    return nn.ConvNet(**cfg, key=jax.random.key(1), dtype=dtype)


@pytest.fixture(scope="module")
def transformer():
    model = _tiny_transformer()
    return model, nn.symmetries(model)


@pytest.fixture(scope="module")
def convnet():
    model = _tiny_convnet(residual=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a supported model: nothing unknown
        return model, nn.symmetries(model)


def _x(model, n=6, seed=3):
    return jnp.asarray(
        np.random.default_rng(seed).standard_normal((n,) + model.input_shape)
    )


@eqx.filter_jit
def _outputs(model, new, x, softmax):
    f = (lambda m: jax.nn.log_softmax(m(x), -1)) if softmax else (lambda m: m(x))
    a, b = f(model), f(new)
    return jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))


def _rel_change(model, new, x, softmax=False):
    return float(_outputs(model, new, x, softmax))


def _jvp_matches(S, name, transform):
    """The generator is d/dε of the closed-form transformation at ε = 0."""
    params = S.params
    one = jnp.ones((), jax.tree.leaves(params)[0].dtype)
    tangent = eqx.filter_jit(
        lambda p: jax.jvp(lambda e: transform(p, e), (0 * one,), (one,))[1]
    )(params)
    xi = S[name].xi(0.0, params)
    for a, b in zip(jax.tree.leaves(tangent), jax.tree.leaves(xi)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# --- the catalogue's contents -------------------------------------------------------


def test_transformer_catalogue(transformer):
    model, S = transformer
    d_head, H, d_model, d_mlp = 2, 2, 4, 4
    counts = _count(S)
    # per head d_head² generators of GL(d_head) for (W_Q, W_K) and for (W_V, W_O)
    assert counts["qk"] == counts["vo"] == H * d_head**2
    # the final norm reads the residual stream: one joint scale generator
    assert counts["scale"] == 1
    # the head's columns and its bias
    assert counts["translate"] == d_model + 1
    # γ of each norm against the next layer (3 norms × d_model) and the MLP's hidden
    # units (d_mlp), minus units dead on every probe input (refused as vacuous)
    vacuous = [k for k, v in S.refused.items() if "vacuous" in v]
    assert counts["rescale"] + len(vacuous) == 3 * d_model + d_mlp
    assert all(S.residuals[k] <= S.tolerance for k in S)
    assert S.tolerance == 2.0**8 * EPS64
    # the embedding feeds the residual stream: no rescale across a skip connection
    assert "residual block" in S.refused["layers.layers[0]:rescale"]
    assert S.unknown == ()
    assert set(S.kinds.values()) == {"quadratic", "linear"}
    assert all(S.kinds[k] == "linear" for k in S if _family(k) == "translate")


def test_certificate_is_symmetry_residual(transformer):
    # the certificate is lnn.symmetry_residual of the probe loss
    model, S = transformer
    x = _x(model)
    loss = lambda p: nn.nll(eqx.combine(p, S.static)(x), jnp.arange(6) % 3)
    for name in ["layers.layers[2].branch.layers[1].attention:qk[1][0,1]"]:
        r = eqx.filter_jit(lnn.symmetry_residual(loss, S[name]))(S.params)
        g = eqx.filter_jit(jax.grad(loss))(S.params)
        xi = S[name].xi(0.0, S.params)
        s = sum(
            float(jnp.vdot(jnp.abs(a), jnp.abs(b)))
            for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(xi))
        )
        assert abs(float(r)) <= 64 * EPS64 * s and s > 0


def test_convnet_catalogue(convnet):
    model, S = convnet
    vacuous = [k for k, v in S.refused.items() if "vacuous" in v]
    counts = _count(S) + _count(vacuous)
    # channels of conv 1 (2, through average pooling) and of the residual block's
    # inner convolution (3); conv 2's channels enter the residual block: none
    assert counts["rescale"] == 2 + 3
    assert "residual block" in S.refused["layers.layers[3]:rescale"]
    # the head reads 3 channels × 1 × 1 after max pooling and flattening, + its bias
    assert counts["translate"] == 3 * 1 * 1 + 1
    assert all(S.residuals[k] <= S.tolerance for k in S)
    assert S.unknown == ()


# --- closed-form checks, one per family ---------------------------------------------


def _leaf(tree, where):
    return where(tree)


def _rescale_channel(m, c, lam):
    """Channel c of the first convolution, through its activation and average
    pooling into the second: incoming weights and bias × λ, outgoing × 1/λ."""
    W0 = m.layers.layers[0].weight.at[c].multiply(lam)
    b0 = m.layers.layers[0].bias.at[c].multiply(lam)
    W1 = m.layers.layers[3].weight.at[:, c].multiply(1 / lam)
    return eqx.tree_at(
        lambda n: (
            n.layers.layers[0].weight,
            n.layers.layers[0].bias,
            n.layers.layers[3].weight,
        ),
        m,
        (W0, b0, W1),
    )


def test_rescale_conv_channel_closed_form(convnet):
    model, S = convnet
    name = next(k for k in S if k.startswith("layers.layers[0]:rescale"))
    c = int(name.split("[")[-1][:-1])
    transform = lambda p, e: _rescale_channel(p, c, jnp.exp(e))
    _jvp_matches(S, name, transform)
    x = _x(model)
    new = eqx.combine(transform(S.params, 0.9), S.static)
    assert _rel_change(model, new, x) <= 64 * EPS64


def test_translation_closed_form(transformer):
    model, S = transformer
    j = 2

    def transform(p, e):
        W = p.layers.layers[-1].weight.at[:, j].add(e)
        return eqx.tree_at(lambda m: m.layers.layers[-1].weight, p, W)

    _jvp_matches(S, f"layers.layers[6]:translate[{j}]", transform)
    x = _x(model)
    new = eqx.combine(transform(S.params, 3.0), S.static)
    assert _rel_change(model, new, x, softmax=True) <= 64 * EPS64
    assert _rel_change(model, new, x) > 1e-2  # the logits themselves move


def _attn(p):
    return p.layers.layers[2].branch.layers[1].attention


def _gl_transform(kind, h, A):
    def transform(p, e):
        M = jax.scipy.linalg.expm(e * A)
        a = _attn(p)
        d = A.shape[0]
        sl = slice(h * d, (h + 1) * d)
        if kind == "qk":
            # x W_Q^h → x W_Q^h M, x W_K^h → x W_K^h M^{-T} (rows of the (out, in)
            # layout are the transposed columns)
            Wq = a.query_proj.weight.at[sl].set(M.T @ a.query_proj.weight[sl])
            bq = a.query_proj.bias.at[sl].set(M.T @ a.query_proj.bias[sl])
            Minv = jnp.linalg.inv(M)
            Wk = a.key_proj.weight.at[sl].set(Minv @ a.key_proj.weight[sl])
            bk = a.key_proj.bias.at[sl].set(Minv @ a.key_proj.bias[sl])
            new = (Wq, bq, Wk, bk)
            where = lambda m: (
                _attn(m).query_proj.weight,
                _attn(m).query_proj.bias,
                _attn(m).key_proj.weight,
                _attn(m).key_proj.bias,
            )
        else:
            Wv = a.value_proj.weight.at[sl].set(M.T @ a.value_proj.weight[sl])
            bv = a.value_proj.bias.at[sl].set(M.T @ a.value_proj.bias[sl])
            Wo = a.output_proj.weight
            Wo = Wo.at[:, sl].set(Wo[:, sl] @ jnp.linalg.inv(M).T)
            new = (Wv, bv, Wo)
            where = lambda m: (
                _attn(m).value_proj.weight,
                _attn(m).value_proj.bias,
                _attn(m).output_proj.weight,
            )
        return eqx.tree_at(where, p, new)

    return transform


@pytest.mark.parametrize("kind", ["qk", "vo"])
def test_head_gl_closed_form(transformer, kind):
    model, S = transformer
    h, d = 1, 2
    A = jnp.asarray(np.random.default_rng(4).standard_normal((d, d)))
    transform = _gl_transform(kind, h, A)
    # the generator of exp(εA) is Σ A_ij × (generator of E_ij)
    base = "layers.layers[2].branch.layers[1].attention"
    tangent = eqx.filter_jit(
        lambda p: jax.jvp(lambda e: transform(p, e), (0.0,), (1.0,))[1]
    )(S.params)
    total = None
    for i in range(d):
        for j in range(d):
            xi = S[f"{base}:{kind}[{h}][{i},{j}]"].xi(0.0, S.params)
            xi = jax.tree.map(lambda v: A[i, j] * v, xi)
            total = xi if total is None else jax.tree.map(jnp.add, total, xi)
    for a, b in zip(jax.tree.leaves(tangent), jax.tree.leaves(total)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    x = _x(model)
    new = eqx.combine(transform(S.params, 0.8), S.static)
    assert _rel_change(model, new, x) <= 256 * EPS64


def test_scale_of_the_residual_stream_closed_form(transformer):
    model, S = transformer
    name = "layers.layers[4]:scale"
    gen = S[name]
    xi = gen.xi(0.0, S.params)
    # ξ = θ on exactly the stream writers: embedding, position, W_O (and b_O), the
    # MLP's second layer
    moved = [
        jax.tree_util.keystr(kp)
        for kp, v in jax.tree_util.tree_leaves_with_path(xi)
        if float(jnp.max(jnp.abs(v))) > 0
    ]
    assert len(moved) == 7, moved
    lam = 3.7
    new_params = jax.tree.map(lambda p, v: jnp.where(v != 0, lam * p, p), S.params, xi)
    new = eqx.combine(new_params, S.static)
    x = _x(model)
    assert _rel_change(model, new, x) <= 256 * EPS64


# --- controls: structures that are not symmetries ------------------------------------


@pytest.mark.parametrize("act", [jax.nn.softplus, jax.nn.tanh])
def test_non_homogeneous_activation_has_no_rescale(act):
    model = _tiny_convnet(activation=act)
    S = nn.symmetries(model)
    assert _count(S)["rescale"] == 0
    assert "not positively homogeneous" in S.refused["layers.layers[0]:rescale"]
    # the closed-form rescaling really changes the output (while ReLU's does not)
    rescaled = lambda m: _rescale_channel(m, 0, 1.7)
    x = _x(model)
    assert _rel_change(model, rescaled(model), x) > 1e-3
    relu = _tiny_convnet()
    assert _rel_change(relu, rescaled(relu), x) <= 64 * EPS64


def test_rotated_queries_break_gl_qk_only():
    # in float32: the control is refused there too
    model = _tiny_transformer(jnp.float32, rotate_queries=True)
    S = nn.symmetries(model)
    counts = _count(S)
    assert counts["qk"] == 0 and counts["vo"] == 2 * 2**2
    # the float32 certificates of the other families
    eps32 = float(np.finfo(np.float32).eps)
    assert S.tolerance == 2.0**8 * eps32
    assert max(S.residuals.values()) <= 16 * eps32
    assert counts["scale"] == 1 and counts["translate"] == 5
    base = "layers.layers[2].branch.layers[1].attention"
    reasons = [
        S.refused[f"{base}:qk[{h}][{i},{j}]"]
        for h in range(2)
        for i in range(2)
        for j in range(2)
    ]
    assert all(r.startswith("not a symmetry") for r in reasons)
    ratios = [float(r.split("= ")[1].split(" >")[0]) for r in reasons]
    assert max(ratios) > 30 * S.tolerance
    A = jnp.asarray(np.random.default_rng(4).standard_normal((2, 2)), jnp.float32)
    new = eqx.combine(_gl_transform("qk", 1, A)(S.params, 0.8), S.static)
    assert _rel_change(model, new, _x(model)) > 1e-3


def test_weight_decay_on_one_factor_is_refused(transformer):
    model, S0 = transformer
    x = _x(model)
    y = jnp.arange(6) % 3

    def loss(m):
        a = m.layers.layers[2].branch.layers[1].attention
        return nn.nll(m(x), y) + 0.1 * jnp.sum(a.query_proj.weight**2)

    S = nn.symmetries(model, x, loss=loss)
    counts = _count(S)
    assert counts["qk"] == 0
    assert counts["vo"] == 2 * 2**2
    assert counts["translate"] == _count(S0)["translate"]


def test_norm_eps_breaks_scale():
    k1, k2 = jax.random.split(jax.random.key(8))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 3)))
    for eps in (0.0, 1e-5):
        layers = [
            eqx.nn.Linear(3, 5, key=k1, dtype=jnp.float64),
            jax.nn.relu,
            eqx.nn.LayerNorm(5, eps=eps, use_weight=False, use_bias=False),
            eqx.nn.Linear(5, 2, key=k2, dtype=jnp.float64),
        ]
        S = nn.symmetries(layers, x)
        # no learnable scale: the norm gives no rescale; ReLU's units meet the norm
        assert _count(S)["rescale"] == 0
        if eps == 0:
            assert "[2]:scale" in S
        else:
            assert "[2]:scale" not in S
            assert "eps = 1e-05 > 0" in S.refused["[2]:scale"]


def test_rmsnorm_without_scale():
    model = _tiny_transformer(norm="rms", learnable_scale=False, n_heads=1)
    S = nn.symmetries(model)
    counts = _count(S) + _count(k for k, v in S.refused.items() if "vacuous" in v)
    assert counts["scale"] == 1 and counts["rescale"] == 4
    assert counts["qk"] == counts["vo"] == 4**2
    xi = S["layers.layers[4]:scale"].xi(0.0, S.params)
    new_params = jax.tree.map(lambda p, v: jnp.where(v != 0, 0.3 * p, p), S.params, xi)
    x = _x(model)
    assert _rel_change(model, eqx.combine(new_params, S.static), x) <= 256 * EPS64


# --- a user's own models ------------------------------------------------------------


def test_users_sequential_with_a_norm():
    k = jax.random.split(jax.random.key(5), 3)
    model = eqx.nn.Sequential(
        [
            eqx.nn.Conv2d(1, 3, 3, padding=1, key=k[0]),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.LayerNorm((3, 4, 4), eps=0.0),
            eqx.nn.Conv2d(3, 2, 3, key=k[1]),
            eqx.nn.Lambda(jax.nn.leaky_relu),
            eqx.nn.AvgPool2d(2, 2),
            eqx.nn.Lambda(jnp.ravel),
            eqx.nn.Linear(2, 3, key=k[2]),
        ]
    )
    model = jax.tree.map(
        lambda a: a.astype(jnp.float64) if eqx.is_array(a) else a, model
    )
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 1, 4, 4)))
    S = nn.symmetries(model, x, softmax_head=True)
    assert "layers[2]:scale" in S
    # the LayerNorm's (3, 4, 4) scale is not per channel: no rescale through it;
    # conv 2's channels rescale across leaky ReLU, pooling and ravel
    assert _count(S)["rescale"] == 2
    assert _count(S)["translate"] == 3
    assert S.unknown == ()


class _Users(eqx.Module):
    layers: list

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class _UsersSkip(eqx.Module):
    layers: list

    def __call__(self, x):
        h = x
        for layer in self.layers:
            h = layer(h)
        return h + jnp.sum(x)  # not the composition of its layers


class _Custom(eqx.Module):
    attention: eqx.nn.MultiheadAttention
    proj: eqx.nn.Linear

    def __call__(self, x):
        return jax.vmap(self.proj)(self.attention(x, x, x))


def _mlp_layers(key):
    k1, k2 = jax.random.split(key)
    return [
        eqx.nn.Linear(3, 5, key=k1, dtype=jnp.float64),
        jax.nn.relu,
        eqx.nn.Linear(5, 2, key=k2, dtype=jnp.float64),
    ]


def test_users_module_with_layers_and_plain_list():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 3)))
    layers = _mlp_layers(jax.random.key(6))
    for model, prefix in ((_Users(layers), "layers[0]"), (layers, "[0]")):
        S = nn.symmetries(model, x)
        vacuous = {k for k, v in S.refused.items() if "vacuous" in v}
        assert set(S) | vacuous == {f"{prefix}:rescale[{i}]" for i in range(5)}
        assert len(S) >= 3
        assert S.unknown == ()


def test_unknown_structure_is_reported_not_guessed():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 3)))
    skip = _UsersSkip(_mlp_layers(jax.random.key(6)))
    with pytest.warns(UserWarning, match="not in the catalogue"):
        S = nn.symmetries(skip, x)
    assert len(S) == 0 and "not the composition" in S.unknown[0]
    with pytest.raises(ValueError, match="not in the catalogue"):
        nn.symmetries(skip, x, strict=True)
    # a custom module: its attention's per-head GL is still found and certified
    k1, k2 = jax.random.split(jax.random.key(7))
    custom = _Custom(
        eqx.nn.MultiheadAttention(2, 4, dtype=jnp.float64, key=k1),
        eqx.nn.Linear(4, 2, key=k2, dtype=jnp.float64),
    )
    xs = jnp.asarray(np.random.default_rng(1).standard_normal((3, 5, 4)))
    with pytest.warns(UserWarning):
        S = nn.symmetries(custom, xs)
    assert _count(S) == {"qk": 8, "vo": 8}
    assert all(k.startswith("attention:") for k in S)
    # an unknown activation stops the chain through it
    layers = _mlp_layers(jax.random.key(6))
    layers[1] = lambda h: jnp.maximum(h, 0.0)
    with pytest.warns(UserWarning):
        S = nn.symmetries(layers, x)
    assert len(S) == 0 and S.unknown == ("[1]",)


def test_bad_input():
    with pytest.raises(ValueError, match="`model` must be an equinox model"):
        nn.symmetries(lambda x: x)
    layers = _mlp_layers(jax.random.key(6))
    with pytest.raises(ValueError, match="`x`.*required"):
        nn.symmetries(layers)
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="`rtol` must be a positive number"):
        nn.symmetries(layers, x, rtol=-1.0)
    with pytest.raises(ValueError, match="could not be applied"):
        nn.symmetries(layers, jnp.ones((4, 7)))
    with pytest.raises(ValueError, match="`x` must be a non-empty float batch"):
        nn.symmetries(layers, jnp.ones((4, 3), jnp.int32))
    with pytest.raises(ValueError, match="`loss` must be a callable"):
        nn.symmetries(layers, x, loss=3.0)
    with pytest.raises(ValueError, match="no floating-point parameters"):
        nn.symmetries([jax.nn.relu], x)


# --- laws along gradient flow -------------------------------------------------------


class _Loss(eqx.Module):
    """Cross-entropy of the model on (x, y), plus `decay`·‖W‖² on one leaf (traced,
    so the symmetric run and its control share one compiled program)."""

    static: object = eqx.field(static=True)
    x: jax.Array
    y: jax.Array
    decay: jax.Array
    where: object = eqx.field(static=True)

    def __call__(self, p):
        model = eqx.combine(p, self.static)
        return nn.nll(model(self.x), self.y) + self.decay * jnp.sum(self.where(p) ** 2)


# The default solver's tableau, error estimate and steps, with its six stages in a
# loop: the program holds one copy of the network's gradient instead of six, which
# halves the compile time of these solves (the laws do not depend on the solver's
# arithmetic; the unrolled form is tested in tests/test_solver.py).
_SOLVER = lnn.FusedTsit5(unroll_stages=False)


def _flow(S, x, y, where, decay, t1, charges):
    """Gradient flow of the loss with `decay` (traced: the symmetric run and its
    control share one compiled solve), and `charges` (one compiled map of the
    catalogue's charges, shared by both runs) along it."""
    loss = _Loss(S.static, x, y, jnp.asarray(decay), where)
    traj = lnn.simulate(
        lnn.dynamics.gradient_flow(loss),
        S.params,
        t0=0.0,
        t1=t1,
        ts=jnp.linspace(0.0, t1, 3),
        rtol=1e-8,
        atol=1e-10,
        max_steps=20_000,
        solver=_SOLVER,
    )
    return traj, charges(traj.q)


def _drifts(charges, params_scale):
    return {
        k: float(jnp.max(jnp.abs(v - v[0]))) / params_scale for k, v in charges.items()
    }


def test_transformer_charges_along_gradient_flow(transformer):
    model, S = transformer
    x = _x(model, n=8)
    y = jnp.arange(8) % 3
    scale = float(sum(jnp.sum(p**2) for p in jax.tree.leaves(S.params)))
    where = lambda p: _attn(p).query_proj.weight
    charges_of = eqx.filter_jit(jax.vmap(S.charges))
    traj, charges = _flow(S, x, y, where, 0.0, 1.0, charges_of)
    drift = _drifts(charges, scale)
    assert max(drift.values()) <= 1e-8, max(drift, key=drift.get)
    # the parameters really moved
    moved = float(sum(jnp.sum((a[-1] - a[0]) ** 2) for a in jax.tree.leaves(traj.q)))
    assert moved > 1e-3 * scale
    # Marcotte et al.'s head matrices, in closed form
    C = eqx.filter_jit(jax.vmap(lambda p: nn.attention_charges(_attn(p))))(traj.q)
    for m in C:
        assert float(jnp.max(jnp.abs(m - m[0]))) <= 1e-8 * scale
    base = "layers.layers[2].branch.layers[1].attention"
    np.testing.assert_allclose(
        C[0][0, 1, 0, 1], charges[f"{base}:qk[1][0,1]"][0], rtol=1e-12
    )
    np.testing.assert_allclose(
        C[1][0, 0, 0, 1], charges[f"{base}:vo[0][0,1]"][0], rtol=1e-12
    )
    # control: weight decay on W_Q only breaks the (W_Q, W_K) laws, by orders of
    # magnitude, and no other family
    _, broken = _flow(S, x, y, where, 0.05, 1.0, charges_of)
    bd = _drifts(broken, scale)
    qk = [bd[k] for k in bd if _family(k) == "qk"]
    assert max(qk) > 1e4 * max(drift.values()) and max(qk) > 1e-5
    others = [bd[k] for k in bd if _family(k) in ("vo", "translate")]
    assert max(others) <= 1e-8


def test_convnet_charges_along_gradient_flow(convnet):
    model, S = convnet
    x = _x(model, n=8)
    y = jnp.arange(8) % 3
    scale = float(sum(jnp.sum(p**2) for p in jax.tree.leaves(S.params)))
    where = lambda p: p.layers.layers[0].weight
    charges_of = eqx.filter_jit(jax.vmap(S.charges))
    _, charges = _flow(S, x, y, where, 0.0, 1.0, charges_of)
    drift = _drifts(charges, scale)
    assert max(drift.values()) <= 1e-8, max(drift, key=drift.get)
    # control: decay on the first convolution only breaks its channels' rescale laws
    _, broken = _flow(S, x, y, where, 0.05, 1.0, charges_of)
    bd = _drifts(broken, scale)
    first = [bd[k] for k in bd if k.startswith("layers.layers[0]:rescale")]
    assert first and min(first) > 1e4 * max(drift.values())
    rest = [bd[k] for k in bd if not k.startswith("layers.layers[0]:")]
    assert max(rest) <= 1e-8


# --- laws along the momentum flows (ND, NAGF) ----------------------------------------
# Under L = m(t)(½|θ̇|² − loss) a generator's charge is Q = m⟨θ̇, ξ(θ)⟩ and, for a
# symmetry of the loss, dQ/dt = R = m⟨θ̇, ∂ξ·θ̇⟩: zero for the isometries (head
# rotations, translations), not for the rest of the catalogue, whose charges obey
# the exact balance Q(t) − Q(t0) = ∫R dt instead.

_SYSTEMS = {
    "ND": (lnn.dynamics.newtonian, 0.0, 1.0, lambda t: jnp.ones_like(t)),
    "NAGF": (lnn.dynamics.nesterov, 1.0, 2.0, lambda t: t**3),
}
_RTOL = 1e-10  # the integration's tolerance
_N_SAVE = 129  # odd, (n − 1) divisible by 4: Simpson's rule at steps h and 2h


class _ChargesAndRates(eqx.Module):
    charges: object
    rates: object

    def __call__(self, t, q, v):
        return self.charges(t, q, v), self.rates(t, q, v)


def _head(p):
    return p.layers.layers[-1].weight


def _norms(tree):
    return jnp.sqrt(sum(jnp.sum(a**2, axis=tuple(range(1, a.ndim))) for a in tree))


def _simpson(R, ts, every=1):
    """∫R from ts[0] to ts[-1], Simpson's rule on every `every`-th saved time."""
    R, h = R[::every], float(ts[every] - ts[0])
    return h / 3 * (R[0] + 4 * jnp.sum(R[1:-1:2]) + 2 * jnp.sum(R[2:-1:2]) + R[-1])


def _momentum_laws(S, model, system):
    """Every charge of the catalogue and of its isometries along the flow, relative
    to the size of the system's terms: its drift max|Q − Q0|, its balance
    |Q(t1) − Q(t0) − ∫R| (Simpson) and Simpson's error estimate |S_h − S_2h|."""
    make, t0, t1, weight = _SYSTEMS[system]
    x, y = _x(model, n=8), jnp.arange(8) % 3
    L = make(_Loss(S.static, x, y, jnp.asarray(0.0), _head))
    rng = np.random.default_rng(5)
    v0 = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape)), S.params)
    ts = jnp.linspace(t0, t1, _N_SAVE)
    traj = lnn.simulate(
        L,
        S.params,
        v0,
        t0=t0,
        t1=t1,
        ts=ts,
        rtol=_RTOL,
        atol=_RTOL / 100,
        solver=_SOLVER,
    )
    iso = S.isometries()
    both = nn.Symmetries(
        {**S, **iso},
        candidates={},
        kinds={**S.kinds, **iso.kinds},
        residuals={**S.residuals, **iso.residuals},
        tolerance=S.tolerance,
        refused={},
        unknown=(),
        params=S.params,
        static=S.static,
    )
    Q, R = traj.evaluate(
        _ChargesAndRates(both.noether_charges(L), both.invariance_residuals(L))
    )
    # |Q| <= m|θ̇||ξ| and |R| <= m|θ̇|² |∂ξ| with |ξ| <= |θ| + √n (rows of a column)
    m, speed = weight(traj.ts), _norms(jax.tree.leaves(traj.qdot))
    size = _norms(jax.tree.leaves(traj.q)) + 1.0
    scale = float(jnp.max(m * speed * size) + (t1 - t0) * jnp.max(m * speed**2))
    out = {}
    for k in both:
        integral = _simpson(R[k], ts)
        out[k] = dict(
            drift=float(jnp.max(jnp.abs(Q[k] - Q[k][0]))) / scale,
            balance=abs(float(Q[k][-1] - Q[k][0] - integral)) / scale,
            quadrature=abs(float(integral - _simpson(R[k], ts, 2))) / scale,
        )
    return iso, out


def _check_momentum_laws(S, iso, laws, isometries, control):
    assert set(iso) == isometries
    # the isometries' charges are conserved to the integration's accuracy
    conserved = max(laws[k]["drift"] for k in iso)
    assert conserved <= 100 * _RTOL, conserved
    # every other charge obeys its balance, to the integration's accuracy plus the
    # quadrature's own error estimate (R has kinks where a ReLU unit switches)
    for k in S:
        if k not in iso:
            bound = 100 * _RTOL + 4 * laws[k]["quadrature"]
            assert laws[k]["balance"] <= bound, (k, laws[k])
    # control: the symmetries of the loss that move the kinetic energy, measured
    # as if conserved, drift by orders of magnitude more
    drifts = [laws[k]["drift"] for k in S if control(k)]
    assert drifts and min(drifts) > 1e4 * max(conserved, 100 * _RTOL)


# each architecture under one of the two momentum flows (both flows are covered; a
# second-order solve of a network costs ~30 s of compiling, so not all four pairs)
@pytest.mark.parametrize("system", ["ND"])
def test_transformer_charges_along_momentum_flows(transformer, system):
    model, S = transformer
    iso, laws = _momentum_laws(S, model, system)
    base = "layers.layers[2].branch.layers[1].attention"
    rotations = {f"{base}:so_{kind}[{h}][0,1]" for kind in ("qk", "vo") for h in (0, 1)}
    translations = {k for k in S if _family(k) == "translate"}
    # per-head GL(d_head): the non-orthogonal generators E_ij
    _check_momentum_laws(
        S, iso, laws, rotations | translations, lambda k: _family(k) in ("qk", "vo")
    )
    # the rotations' charges: the head's angular momentum in (W_Q, W_K), moved
    rot = f"{base}:so_qk[1][0,1]"
    assert laws[rot]["drift"] <= 100 * _RTOL


@pytest.mark.parametrize("system", ["NAGF"])
def test_convnet_charges_along_momentum_flows(convnet, system):
    model, S = convnet
    iso, laws = _momentum_laws(S, model, system)
    translations = {k for k in S if _family(k) == "translate"}
    # the channel rescalings move the kinetic energy
    _check_momentum_laws(
        S, iso, laws, translations, lambda k: k.startswith("layers.layers[0]:rescale")
    )
