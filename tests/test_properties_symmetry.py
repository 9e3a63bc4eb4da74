"""Properties of `count_laws` and `discover` that follow from the mathematics, on problems
drawn by hypothesis: scaling the loss (or the model's output) by c in [1e-6, 1e6]
changes no count; float32 agrees with float64 or refuses with an error, never a
different count; a generator that is not a symmetry is not reported as one; reordering
or re-nesting the parameter pytree changes nothing.

Kept cheap: tiny networks, few examples; `count_laws` compiles once per MLP structure
(its bracket functions are cached), so the examples that scale an MLP's parameters reuse
one program."""

import equinox as eqx
import jax
import jax.numpy as jnp
from hypothesis import example, given, settings, strategies as st

from lagrangian_nn import nn, symmetry as sy

SETTINGS = settings(max_examples=3, deadline=None, derandomize=True)
# for callables, which compile per example: the two ends of the range and one draw
CALLABLE = settings(max_examples=1, deadline=None, derandomize=True)
log_c = st.floats(-6.0, 6.0)


def _mlp(dtype, act=None):
    act = nn.ReLU() if act is None else act
    return nn.MLP(
        [2, 3, 2], [act, nn.Identity()], bias=False, key=jax.random.key(0), dtype=dtype
    )


def _scaled(model, c):
    return jax.tree.map(lambda x: (c * x).astype(x.dtype), model)


@SETTINGS
@given(log_c)
def test_count_laws_ignores_the_units_of_the_parameters(lc):
    # a ReLU net scaled by c: the same laws (one per hidden neuron), the same certificate
    m = _mlp(jnp.float64)
    r = sy.count_laws(m, _scaled(m, 10.0**lc), key=jax.random.key(0))
    assert r.count == 3 and r.gap >= 100


def _phi(theta, x):
    # a rank-one factorisation, one law ‖u‖² − ‖v‖² (for gradient flow)
    return jnp.dot(theta["u"], x) * theta["v"]


@CALLABLE
@given(log_c)
@example(-6.0)
@example(6.0)
def test_count_laws_ignores_a_scaled_output(lc):
    c = 10.0**lc
    r = sy.count_laws(
        lambda th, x: c * _phi(th, x),
        {"u": jnp.ones(2), "v": jnp.ones(3)},
        key=jax.random.key(0),
        inputs=lambda k: jax.random.normal(k, (2,), jnp.float64),
        n_points=1,
    )
    assert r.count == 1


@settings(max_examples=2, deadline=None, derandomize=True)
@given(st.permutations(["u", "v", "w"]), st.booleans())
def test_count_laws_ignores_the_pytree_layout(order, nest):
    # φ = (u·x)(v·x)w, as a dict in any key order, or nested one level down
    def phi(theta, x):
        t = theta["inner"] if nest else theta
        return jnp.dot(t["u"], x) * jnp.dot(t["v"], x) * t["w"]

    leaves = {"u": jnp.ones(2), "v": jnp.ones(2), "w": jnp.ones(2)}
    params = {k: leaves[k] for k in order}
    params = {"inner": params} if nest else params
    r = sy.count_laws(
        phi,
        params,
        key=jax.random.key(1),
        inputs=lambda k: jax.random.normal(k, (2,), jnp.float64),
        n_points=1,
    )
    # three rescalings (u, v, w) with product fixed: two laws
    assert r.count == 2 and r.dimension == 6


@settings(max_examples=2, deadline=None, derandomize=True)
@given(st.sampled_from(["gf", "nd"]), st.integers(0, 50))
def test_count_laws_float32_agrees_with_float64_or_refuses(flow, seed):
    counts = []
    for dtype in (jnp.float64, jnp.float32):
        try:
            counts.append(
                sy.count_laws(_mlp(dtype), flow=flow, key=jax.random.key(seed)).count
            )
        except sy.LawCountError as e:
            assert dtype == jnp.float32 and "Use float64" in str(e)
    assert counts[0] == (3 if flow == "gf" else 0)
    assert counts[1:] in ([], counts[:1])


def _data(dtype):
    x = jax.random.normal(jax.random.key(1), (20, 2), dtype)
    y = jax.random.normal(jax.random.key(2), (20, 2), dtype)
    return nn.make_loss(x, y, kind="squared_error")


@SETTINGS
@given(log_c)
def test_discover_ignores_a_scaled_loss(lc):
    m = _mlp(jnp.float64)
    loss = _data(jnp.float64)
    c = 10.0**lc
    d = sy.discover(
        lambda q: c * loss(q), m, sy.rescaling_family(m), key=jax.random.key(0)
    )
    assert d.describe() == [f"in1[{i}] - out1[{i}]" for i in range(3)]
    assert d.gap >= 100


@settings(max_examples=3, deadline=None, derandomize=True)
@given(st.integers(0, 50))
def test_discover_float32_agrees_with_float64_or_refuses(seed):
    out = []
    for dtype in (jnp.float64, jnp.float32):
        m = _mlp(dtype)
        try:
            out.append(
                sy.discover(
                    _data(dtype), m, sy.rescaling_family(m), key=jax.random.key(seed)
                ).describe()
            )
        except sy.DiscoveryError:
            assert dtype == jnp.float32
    assert out[0] == [f"in1[{i}] - out1[{i}]" for i in range(3)]
    assert out[1:] in ([], out[:1])


@SETTINGS
@given(st.floats(-3.0, 0.0), st.integers(0, 2))
def test_discover_reports_a_broken_generator_as_broken(log_eps, neuron):
    # ξ + ε·(radial field of one incoming weight row): not a symmetry for any ε > 0
    m = _mlp(jnp.float64)
    loss = _data(jnp.float64)
    eps = 10.0**log_eps
    good = nn.rescale(m, 1, neuron)

    def broken(q):
        xi = good.xi(0.0, q)
        w = xi.weights[0].at[neuron].add(eps * q.weights[0][neuron])
        return eqx.tree_at(lambda t: t.weights[0], xi, w)

    fam = sy.custom_family([lambda q: good.xi(0.0, q), broken], ["good", "broken"])
    d = sy.discover(loss, m, fam, key=jax.random.key(0))
    assert d.describe() == ["good"]
