"""Discovery runs in float32 and float64 with the same expected (closed-form) counts;
float32 arrays stay float32 under conftest's x64 because every array is built with an
explicit dtype."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lagrangian_nn as lnn
from lagrangian_nn import nn, symmetry as sy


@pytest.fixture(params=[jnp.float32, jnp.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def _data(dtype, n=30, d0=4):
    x = jax.random.normal(jax.random.key(1), (n, d0), dtype)
    y = jax.random.randint(jax.random.key(2), (n,), 0, 3)
    return x, y


def _loss(dtype):
    return nn.make_loss(*_data(dtype))


def _model(sizes, acts, dtype, bias=False):
    return nn.MLP(sizes, acts, bias=bias, key=jax.random.key(0), dtype=dtype)


def _eps(dtype):
    return float(jnp.finfo(dtype).eps)


def _relative_residuals(loss, gens, m):
    """|⟨∇L, ξ⟩| / (|∇L||ξ|) at m, for each generator."""
    dot = lnn._tree.tree_dot
    g = jax.jit(jax.grad(loss))(m)
    out = []
    for gen in gens:
        xi = gen.xi(0.0, m)
        out.append(float(abs(dot(g, xi)) / jnp.sqrt(dot(g, g) * dot(xi, xi))))
    return np.array(out)


def test_float32_stays_float32():
    m = _model([4, 3, 3], [nn.ReLU(), nn.Identity()], jnp.float32)
    loss = _loss(jnp.float32)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(jax.grad(loss)(m)))
    states = sy._discover._sample_states(m, jax.random.key(0), 3)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(states))
    d = sy.discover(loss, m, sy.rescaling_family(m), key=jax.random.key(5))
    assert d.dtype == "float32"
    assert d.rounding_level == pytest.approx(_eps(jnp.float32) * np.sqrt(d.samples))


def test_issue_example_counts_hidden_neurons(dtype):
    """Issue 13: squared error on 50 points, ReLU [4, 6, 5, 3] without biases. The
    float32 run used to find 14 laws; the count is 6 + 5 in both precisions."""
    m = nn.MLP(
        [4, 6, 5, 3],
        [nn.ReLU(), nn.ReLU(), nn.Identity()],
        bias=False,
        key=jax.random.PRNGKey(0),
        dtype=dtype,
    )
    x = jax.random.normal(jax.random.PRNGKey(1), (50, 4), dtype)
    y = jax.random.normal(jax.random.PRNGKey(2), (50, 3), dtype)
    loss = nn.make_loss(x, y, kind="squared_error")
    d = sy.discover(loss, m, sy.rescaling_family(m), key=jax.random.PRNGKey(3))
    assert len(d) == 11
    assert d.describe() == [f"in1[{i}] - out1[{i}]" for i in range(6)] + [
        f"in2[{i}] - out2[{i}]" for i in range(5)
    ]
    assert np.all(_relative_residuals(loss, d.generators, m) < 100 * _eps(dtype))


def test_relu_and_repu_per_neuron_coefficients(dtype):
    m = _model([4, 3, 3, 3], [nn.ReLU(), nn.RePU(2.0), nn.Identity()], dtype)
    loss = _loss(dtype)
    d = sy.discover(loss, m, sy.rescaling_family(m), key=jax.random.key(5))
    assert d.describe() == [f"in1[{i}] - out1[{i}]" for i in range(3)] + [
        f"in2[{i}] - 2*out2[{i}]" for i in range(3)
    ]
    # each discovered generator really is a symmetry
    assert np.all(_relative_residuals(loss, d.generators, m) < 100 * _eps(dtype))


def test_repu_chain_gives_p_to_the_k(dtype):
    m = _model(
        [4, 3, 3, 3, 3], [nn.ReLU(), nn.RePU(2.0), nn.RePU(2.0), nn.Identity()], dtype
    )
    d = sy.discover(
        _loss(dtype), m, sy.rescaling_family(m, per_neuron=False), key=jax.random.key(5)
    )
    rows = {d.names[int(np.flatnonzero(r)[0])]: r for r in d.coefficients}
    assert set(rows) == {"W1", "W2", "W3"}
    # the coefficients are resolved to about 1/gap, itself at the dtype's rounding level
    assert d.resolution < 1e3 * _eps(dtype)
    atol = 10 * d.resolution
    # W1 − W2, W2 − 2 W3, W3 − 2 W4 in echelon form: W2 − 4 W4 is the chain p^k = 4
    assert np.allclose(rows["W3"], [0, 0, 1, -2], rtol=0, atol=atol)
    assert np.allclose(rows["W2"], [0, 1, 0, -4], rtol=0, atol=atol)
    assert np.allclose(rows["W1"], [1, 0, 0, -4], rtol=0, atol=atol)


def test_swish_includes_beta_and_bias(dtype):
    m = _model([4, 3, 3], [nn.Swish(), nn.Identity()], dtype, bias=True)
    d = sy.discover(_loss(dtype), m, sy.rescaling_family(m), key=jax.random.key(5))
    assert d.describe() == [
        f"in1[{i}] + bias1[{i}] - beta1[{i}] - out1[{i}]" for i in range(3)
    ]


def test_tanh_has_no_rescaling_symmetry(dtype):
    m = _model([4, 5, 3], [nn.Tanh(), nn.Identity()], dtype)
    d = sy.discover(_loss(dtype), m, sy.rescaling_family(m), key=jax.random.key(5))
    assert len(d) == 0


@functools.cache
def _linear_gl(dtype):
    """The gl(3) discovery on a linear [4, 3, 3] network (shared by two tests)."""
    m = _model([4, 3, 3], [nn.Identity(), nn.Identity()], dtype)
    fam = sy.gl_family(m, 1)
    return m, fam, sy.discover(_loss(dtype), m, fam, key=jax.random.key(5))


def test_linear_layer_gives_gl(dtype):
    _, _, d = _linear_gl(dtype)
    assert len(d) == 9
    m = _model([4, 3, 3], [nn.ReLU(), nn.Identity()], dtype)
    d = sy.discover(_loss(dtype), m, sy.gl_family(m, 1), key=jax.random.key(5))
    assert len(d) == 3  # only the diagonal E_ii: positive rescalings of ReLU neurons


def test_rotation_family_on_isotropic_data(dtype):
    x = jnp.concatenate([jnp.eye(3, dtype=dtype), -jnp.eye(3, dtype=dtype)])
    loss = nn.make_loss(x, jnp.zeros((6, 2), dtype), kind="squared_error")
    m = _model([3, 4, 2], [nn.Identity(), nn.Identity()], dtype)
    assert len(sy.discover(loss, m, sy.rotation_family(m), key=jax.random.key(5))) == 3
    m = _model([4, 4, 3], [nn.Identity(), nn.Identity()], dtype)
    d = sy.discover(_loss(dtype), m, sy.rotation_family(m), key=jax.random.key(5))
    assert len(d) == 0


def test_relu_counts_equal_sum_of_widths(dtype):
    rng = np.random.default_rng(0)
    for k in range(3):
        depth = int(rng.integers(2, 5))
        widths = [int(w) for w in rng.integers(2, 10, size=depth - 1)]
        m = _model([4, *widths, 3], [nn.ReLU()] * len(widths) + [nn.Identity()], dtype)
        d = sy.discover(
            _loss(dtype), m, sy.rescaling_family(m), key=jax.random.key(10 + k)
        )
        assert len(d) == sum(widths)


def test_field_that_vanishes_identically_is_not_a_law(dtype):
    """Two copies of one field computed with different rounding: their difference
    vanishes identically (Gram kernel) and is not counted; one law remains."""
    m = _model([4, 3, 3], [nn.ReLU(), nn.Identity()], dtype)
    g = nn.rescale(m, 1, 0)
    fam = sy.custom_family(
        [
            lambda q: g.xi(0.0, q),
            lambda q: jax.tree.map(lambda x: (x * 0.3) / 0.3, g.xi(0.0, q)),
        ],
        ["a", "b"],
    )
    assert len(sy.discover(_loss(dtype), m, fam, key=jax.random.key(5))) == 1


def _near_symmetric_loss(dtype, delta):
    """The rescaling of neuron 0 broken at relative size ~δ (a tiny L2 term on its
    incoming weights)."""
    loss = _loss(dtype)
    return lambda q: loss(q) + delta * jnp.sum(q.weights[0][0] ** 2)


def test_ambiguous_gap_is_refused_in_float32():
    """A symmetry broken at the 1e-5 level: float64 resolves it (2 laws, not 3); in
    float32 that breaking is only ~100 eps, so the gap cannot separate it and discover
    refuses instead of guessing."""
    m64 = _model([4, 3, 3], [nn.ReLU(), nn.Identity()], jnp.float64)
    d = sy.discover(
        _near_symmetric_loss(jnp.float64, 1e-5),
        m64,
        sy.rescaling_family(m64),
        key=jax.random.key(5),
    )
    assert d.describe() == ["in1[1] - out1[1]", "in1[2] - out1[2]"]
    m32 = _model([4, 3, 3], [nn.ReLU(), nn.Identity()], jnp.float32)
    with pytest.raises(sy.DiscoveryError, match="cannot separate") as info:
        sy.discover(
            _near_symmetric_loss(jnp.float32, 1e-5),
            m32,
            sy.rescaling_family(m32),
            key=jax.random.key(5),
        )
    msg = str(info.value)
    assert "float32" in msg and "float64" in msg and "`samples`" in msg
    assert "min_gap" in msg and "× the threshold" in msg and "nan" not in msg
    assert isinstance(info.value, ValueError)
    err = info.value
    assert err.smallest_nonzero < 1e3 * err.rounding_level
    assert err.gap == pytest.approx(err.smallest_nonzero / err.threshold)
    assert err.gap < err.min_gap and err.dtype == "float32"
    # a user-given tol accepts the near-symmetry as an approximate law, and says so
    d = sy.discover(
        _near_symmetric_loss(jnp.float32, 1e-5),
        m32,
        sy.rescaling_family(m32),
        key=jax.random.key(5),
        tol=1e-3,
    )
    assert len(d) == 3 and "only up to the `tol`" in d.verdict


def test_discovery_prints_a_short_summary():
    m = _model([4, 6, 5, 3], [nn.ReLU(), nn.ReLU(), nn.Identity()], jnp.float64)
    d = sy.discover(
        _loss(jnp.float64), m, sy.rescaling_family(m), key=jax.random.key(5)
    )
    for text in (str(d), repr(d)):
        lines = text.splitlines()
        assert lines[0].startswith("Discovery: 11 law(s) among 22 fields (float64")
        assert "× the threshold" in lines[1]
        assert lines[2].startswith("  verdict: reliable")
        assert "in1[0] - out1[0]" in text and "(5 more; see describe())" in text
        assert len(lines) <= 10 and "Diagonal" not in text
    assert len(d.describe()) == 11


def test_bad_arguments():
    m = _model([4, 3, 3], [nn.ReLU(), nn.Identity()], jnp.float64)
    loss, fam = _loss(jnp.float64), sy.rescaling_family(m)
    with pytest.raises(ValueError, match="`family`"):
        sy.discover(loss, m, [nn.rescale(m, 1)], key=jax.random.key(0))
    with pytest.raises(
        ValueError, match=r"`samples` must be an int at least len\(family\) = 6.*got 3"
    ):
        sy.discover(loss, m, fam, key=jax.random.key(0), samples=3)
    with pytest.raises(ValueError, match="`tol` must be a positive"):
        sy.discover(loss, m, fam, key=jax.random.key(0), tol=-1.0)


def test_conservation_table_checks_trajectory_laws_with_controls(dtype):
    m = _model([4, 3, 3], [nn.ReLU(), nn.Identity()], dtype)
    loss = _loss(dtype)
    fam = sy.custom_family(
        [nn.rescale(m, 1, 0), nn.rescale(m, 1, 0, p=2.0)], ["good", "bad"]
    )
    d = sy.discover(loss, m, fam, key=jax.random.key(5))
    assert d.describe() == ["good"]
    table = sy.conservation_table(d, loss, m, t1=0.2)
    law = table.laws[0]
    # float64: solver tolerance 1e-8; float32: rounding of C ~ |q|², some eps
    bound = 1e-7 if dtype == jnp.float64 else 100 * _eps(dtype)
    assert law.integrable and law.gf_drift < bound and law.nd_residual < bound
    # the broken control ("in − 2·out") misses by orders of magnitude
    assert law.gf_control > max(1e3 * law.gf_drift, 1e-3)
    assert law.nd_control > max(1e3 * law.nd_residual, 1e-3)
    assert "‖" in table.markdown() and "ND control" in table.markdown()
    assert "GF" in table.text()


def test_nd_check_is_a_trajectory_law_not_a_pointwise_identity():
    """The ND check of a true symmetry holds along the ND trajectory and fails along the
    gradient-flow trajectory from the same start (a pointwise identity such as
    ⟨ξ(q), −∇L(q)⟩ = 0 would hold on both)."""
    m = _model([4, 3, 3], [nn.ReLU(), nn.Identity()], jnp.float64)
    loss = _loss(jnp.float64)
    gen = nn.rescale(m, 1, 0)
    assert sy.is_gradient_field(gen, m)
    # The grid and tolerances of `conservation_table(..., t1=0.2)` in float64, so that
    # both solves reuse the programs the test above compiled. The ND law's miss is the
    # Simpson rule's (7e-10 and 2e-9 here, the same at rtol=1e-10).
    ts = jnp.linspace(0.0, 0.2, 201)
    tol = dict(rtol=1e-8, atol=1e-10)
    nd = lnn.simulate(
        lnn.dynamics.newtonian(loss),
        m,
        jax.tree.map(lambda x: 0.3 * jnp.ones_like(x), m),
        t0=0.0,
        t1=0.2,
        ts=ts,
        **tol,
    )
    gf = lnn.simulate(lnn.dynamics.gradient_flow(loss), m, t0=0.0, t1=0.2, ts=ts, **tol)
    for integrable in (True, False):  # the C-form and the ⟨ξ, q̇⟩-form
        on_nd = float(sy._table._nd_law(gen, integrable, nd.ts, nd.q, nd.qdot))
        on_gf = float(sy._table._nd_law(gen, integrable, gf.ts, gf.q, gf.qdot))
        assert on_nd < 1e-8 and on_gf > 1e-2


def test_gl_integrated_laws_are_the_balance_matrix_entries():
    """For the discovered gl(d_h) generators, the symmetric combinations A = E_ij + E_ji
    are gradient fields whose integrated GF law ⟨w, ξ_A(w)⟩ is 2 (W_hW_hᵀ − W_h+1ᵀW_h+1)_ij,
    while the skew ones are not integrable."""
    m, fam, d = _linear_gl(jnp.float64)
    C = nn.linear_quantity(m, 1)
    index = {name: a for a, name in enumerate(d.names)}
    for i, j in [(0, 0), (0, 1), (1, 2)]:
        coeff = np.zeros(len(fam))
        coeff[index[f"E1[{i},{j}]"]] += 1.0
        coeff[index[f"E1[{j},{i}]"]] += 1.0
        gen = lnn.Generator(sy._discover._Combination(fam.fields, jnp.asarray(coeff)))
        assert sy.is_gradient_field(gen, m)
        value = lnn._tree.tree_dot(m, gen.xi(0.0, m))
        assert abs(float(value) - 2 * float(C[i, j])) < 1e-12 * (
            1 + abs(float(C[i, j]))
        )
    skew = np.zeros(len(fam))
    skew[index["E1[0,1]"]], skew[index["E1[1,0]"]] = 1.0, -1.0
    assert not sy.is_gradient_field(
        lnn.Generator(sy._discover._Combination(fam.fields, jnp.asarray(skew))), m
    )


def test_field_that_vanishes_on_some_states_is_still_a_field():
    """A rescaling switched on by a ReLU of one weight, relu(W1[0, 0])·ξ: a symmetry
    (⟨∇L, ξ⟩ = 0 wherever it is on) that vanishes on half of the states. With key 4
    the first two sampled states both have W1[0, 0] < 0; deciding "identically zero"
    from those two used to drop the law."""
    m = _model([4, 3, 3], [nn.ReLU(), nn.Identity()], jnp.float64)
    key = jax.random.key(4)
    states = sy._discover._sample_states(m, key, 2 * 1 + 8)
    assert np.all(np.asarray(states.weights[0][:2, 0, 0]) < 0)
    assert np.any(np.asarray(states.weights[0][:, 0, 0]) > 0)
    g = nn.rescale(m, 1, 0)

    def gated(q):
        on = jax.nn.relu(q.weights[0][0, 0])
        return jax.tree.map(lambda x: on * x, g.xi(0.0, q))

    d = sy.discover(
        _loss(jnp.float64), m, sy.custom_family([gated], ["gated"]), key=key
    )
    assert d.describe() == ["gated"]
    # control: the same gate on a field that is not a symmetry is not a law
    bad = nn.rescale(m, 1, 0, p=2.0)

    def gated_bad(q):
        on = jax.nn.relu(q.weights[0][0, 0])
        return jax.tree.map(lambda x: on * x, bad.xi(0.0, q))

    fam = sy.custom_family([gated_bad], ["bad"])
    assert len(sy.discover(_loss(jnp.float64), m, fam, key=key)) == 0


_TRACES = [0]


def _count_trace(event, duration, **kwargs):
    if event == "/jax/core/compile/jaxpr_trace_duration":
        _TRACES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count_trace)


def _traces_during(fn):
    """The number of functions JAX traces for compiling while `fn()` runs, and its
    result."""
    before = _TRACES[0]
    out = fn()
    return _TRACES[0] - before, out


def test_discover_and_conservation_table_compile_once_per_family():
    # a second call on the same family, with new data of the same shapes and a new
    # key, traces nothing: the compiled functions take the loss and the fields as
    # arguments. Control: the counter sees the first call on a new model shape.
    m = _model([4, 3, 3], [nn.ReLU(), nn.Identity()], jnp.float64)
    x, y = _data(jnp.float64)
    fams = {
        "rescaling": sy.rescaling_family(m),
        "custom": sy.custom_family(
            [nn.rescale(m, 1, 0), nn.rescale(m, 1, 0, p=2.0)], ["good", "bad"]
        ),
    }
    first, _ = _traces_during(
        lambda: sy.discover(
            nn.make_loss(x, y),
            _model([4, 5, 3], [nn.ReLU(), nn.Identity()], jnp.float64),
            sy.rescaling_family(
                _model([4, 5, 3], [nn.ReLU(), nn.Identity()], jnp.float64)
            ),
            key=jax.random.key(1),
        )
    )
    assert first > 0
    new_loss, new_key = nn.make_loss(2 * x, y), jax.random.key(6)
    for name, fam in fams.items():
        sy.discover(nn.make_loss(x, y), m, fam, key=jax.random.key(5))
        again, d = _traces_during(
            lambda fam=fam: sy.discover(new_loss, m, fam, key=new_key)
        )
        assert again == 0, name
        assert len(d) == (3 if name == "rescaling" else 1), name  # one per neuron
    loss = nn.make_loss(x, y)
    d = sy.discover(loss, m, fams["custom"], key=jax.random.key(5))
    sy.conservation_table(d, loss, m, t1=0.2)
    again, table = _traces_during(lambda: sy.conservation_table(d, loss, m, t1=0.2))
    assert again == 0 and table.laws[0].integrable
