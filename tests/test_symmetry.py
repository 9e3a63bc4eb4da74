import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lagrangian_nn as lnn
from lagrangian_nn import nn, symmetry as sy

X = jax.random.normal(jax.random.key(1), (30, 4))
Y = jax.random.randint(jax.random.key(2), (30,), 0, 3)
LOSS = nn.make_loss(X, Y)


def _model(sizes, acts, bias=False):
    return nn.MLP(sizes, acts, bias=bias, key=jax.random.key(0), dtype=jnp.float64)


def test_relu_and_repu_per_neuron_coefficients():
    m = _model([4, 3, 3, 3], [nn.ReLU(), nn.RePU(2.0), nn.Identity()])
    d = sy.discover(LOSS, m, sy.rescaling_family(m), key=jax.random.key(5))
    assert d.describe() == [f"in1[{i}] - out1[{i}]" for i in range(3)] + [
        f"in2[{i}] - 2*out2[{i}]" for i in range(3)
    ]
    assert d.gap > 1e8
    for gen in d.generators:  # each discovered generator really is a symmetry
        assert abs(float(lnn.symmetry_residual(LOSS, gen)(m))) < 1e-12


def test_repu_chain_gives_p_to_the_k():
    m = _model([4, 3, 3, 3, 3], [nn.ReLU(), nn.RePU(2.0), nn.RePU(2.0), nn.Identity()])
    d = sy.discover(
        LOSS, m, sy.rescaling_family(m, per_neuron=False), key=jax.random.key(5)
    )
    rows = {d.names[int(np.flatnonzero(r)[0])]: r for r in d.coefficients}
    assert set(rows) == {"W1", "W2", "W3"}
    # W1 − W2, W2 − 2 W3, W3 − 2 W4 in echelon form: W2 − 4 W4 is the chain p^k = 4
    assert np.allclose(rows["W3"], [0, 0, 1, -2], atol=1e-10)
    assert np.allclose(rows["W2"], [0, 1, 0, -4], atol=1e-10)
    assert np.allclose(rows["W1"], [1, 0, 0, -4], atol=1e-10)


def test_swish_includes_beta_and_bias():
    m = _model([4, 3, 3], [nn.Swish(), nn.Identity()], bias=True)
    d = sy.discover(LOSS, m, sy.rescaling_family(m), key=jax.random.key(5))
    assert d.describe() == [
        f"in1[{i}] + bias1[{i}] - beta1[{i}] - out1[{i}]" for i in range(3)
    ]


def test_tanh_has_no_rescaling_symmetry():
    m = _model([4, 5, 3], [nn.Tanh(), nn.Identity()])
    assert len(sy.discover(LOSS, m, sy.rescaling_family(m), key=jax.random.key(5))) == 0


def test_linear_layer_gives_gl():
    m = _model([4, 3, 3], [nn.Identity(), nn.Identity()])
    d = sy.discover(LOSS, m, sy.gl_family(m, 1), key=jax.random.key(5))
    assert len(d) == 9
    m = _model([4, 3, 3], [nn.ReLU(), nn.Identity()])
    d = sy.discover(LOSS, m, sy.gl_family(m, 1), key=jax.random.key(5))
    assert len(d) == 3  # only the diagonal E_ii: positive rescalings of ReLU neurons


def test_rotation_family_on_isotropic_data():
    x = jnp.concatenate([jnp.eye(3), -jnp.eye(3)])
    loss = nn.make_loss(x, jnp.zeros((6, 2)), kind="squared_error")
    m = _model([3, 4, 2], [nn.Identity(), nn.Identity()])
    assert len(sy.discover(loss, m, sy.rotation_family(m), key=jax.random.key(5))) == 3
    assert (
        len(
            sy.discover(
                LOSS,
                _model([4, 4, 3], [nn.Identity(), nn.Identity()]),
                sy.rotation_family(_model([4, 4, 3], [nn.Identity(), nn.Identity()])),
                key=jax.random.key(5),
            )
        )
        == 0
    )


def test_relu_counts_equal_sum_of_widths():
    rng = np.random.default_rng(0)
    for k in range(4):
        depth = int(rng.integers(2, 5))
        widths = [int(w) for w in rng.integers(2, 10, size=depth - 1)]
        m = _model([4, *widths, 3], [nn.ReLU()] * len(widths) + [nn.Identity()])
        d = sy.discover(LOSS, m, sy.rescaling_family(m), key=jax.random.key(10 + k))
        assert len(d) == sum(widths)


def test_conservation_table_and_custom_family():
    m = _model([4, 3, 3], [nn.ReLU(), nn.Identity()])
    fam = sy.custom_family(
        [nn.rescale(m, 1, 0), nn.rescale(m, 1, 0, p=2.0)], ["good", "bad"]
    )
    d = sy.discover(LOSS, m, fam, key=jax.random.key(5))
    assert d.describe() == ["good"]
    table = sy.conservation_table(d, LOSS, m, t1=0.2)
    assert table.laws[0].integrable and table.laws[0].gf_drift < 1e-6
    assert table.laws[0].nd_residual < 1e-10
    assert "‖" in table.markdown() and "GF" in table.text()
    with pytest.raises(ValueError, match="`family`"):
        sy.discover(LOSS, m, [nn.rescale(m, 1)], key=jax.random.key(0))


def test_gl_integrated_laws_are_the_balance_matrix_entries():
    """For the discovered gl(d_h) generators, the symmetric combinations A = E_ij + E_ji
    are gradient fields whose integrated GF law ⟨w, ξ_A(w)⟩ is 2 (W_hW_hᵀ − W_h+1ᵀW_h+1)_ij,
    while the skew ones are not integrable."""
    m = _model([4, 3, 3], [nn.Identity(), nn.Identity()])
    fam = sy.gl_family(m, 1)
    d = sy.discover(LOSS, m, fam, key=jax.random.key(5))
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
