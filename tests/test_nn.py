import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lagrangian_nn as lnn
from lagrangian_nn import dynamics, nn

KEY = jax.random.key(0)


def _data(d0, n=12, classes=3, seed=1):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k1, (n, d0)), jax.random.randint(k2, (n,), 0, classes)


def _random_like(model, seed):
    leaves, tree = jax.tree.flatten(model)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
    )


def _relative_symmetry_residual(loss, gen, model):
    r = lnn.symmetry_residual(loss, gen)(model)
    scale = jnp.sqrt(lnn._tree.tree_dot(jax.grad(loss)(model), jax.grad(loss)(model)))
    xi = gen.xi(0.0, model)
    scale = scale * jnp.sqrt(lnn._tree.tree_dot(xi, xi))
    return float(jnp.abs(r) / scale)


def test_mlp_leaves_are_exactly_the_trainable_arrays():
    m = nn.MLP([4, 5, 3, 2], [nn.ReLU(), nn.Swish(), nn.Identity()], bias=True, key=KEY)
    leaves = jax.tree.leaves(m)
    assert len(leaves) == 3 + 3 + 1  # weights, biases, one Swish β
    assert all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves)
    assert [w.shape for w in m.weights] == [(5, 4), (3, 5), (2, 3)]
    assert m.betas[1].shape == (3,) and m.betas[0] is None
    m2 = nn.MLP([4, 5, 2], [nn.ReLU(), nn.Identity()], key=KEY)
    assert len(jax.tree.leaves(m2)) == 2 and m2.biases is None


def test_mlp_is_a_position_for_simulate():
    x, y = _data(3)
    m = nn.MLP([3, 4, 3], [nn.ReLU(), nn.Identity()], bias=True, key=KEY)
    loss = nn.make_loss(x, y)
    v0 = jax.tree.map(jnp.zeros_like, m)
    traj = lnn.simulate(
        dynamics.newtonian(loss), m, v0, t0=0.0, t1=1.0, rtol=1e-9, atol=1e-9
    )
    assert isinstance(traj.q, nn.MLP) and traj.q.weights[0].shape == (2, 4, 3)
    E = traj.evaluate(lnn.energy(dynamics.newtonian(loss)))
    assert abs(float(E[1] - E[0])) < 1e-7


def test_mlp_forward_matches_hand_written():
    m = nn.MLP([3, 4, 2], [nn.RePU(2.0), nn.Identity()], bias=True, key=KEY)
    x = jax.random.normal(jax.random.key(3), (5, 3))
    h = jnp.maximum(x @ m.weights[0].T + m.biases[0], 0) ** 2
    assert np.allclose(m(x), h @ m.weights[1].T + m.biases[1], atol=1e-14)
    assert m(x[0]).shape == (2,)


ARCHS = {
    "relu": ([nn.ReLU(), nn.ReLU(), nn.Identity()], False),
    "leaky": ([nn.LeakyReLU(0.1), nn.LeakyReLU(0.2), nn.Identity()], True),
    "repu": ([nn.RePU(2.0), nn.RePU(3.0), nn.Identity()], True),
    "poly": ([nn.Polynomial(2.0), nn.ReLU(), nn.Identity()], False),
    "swish": ([nn.Swish(), nn.Swish(), nn.Identity()], True),
}


@pytest.mark.parametrize("name", list(ARCHS))
def test_rescaling_is_a_symmetry(name):
    acts, bias = ARCHS[name]
    x, y = _data(4)
    for seed in range(3):
        m = nn.MLP([4, 5, 3, 3], acts, bias=bias, key=jax.random.key(seed))
        loss = nn.make_loss(x, y)
        for layer in (1, 2):
            for neuron in (None, 0, 2):
                gen = nn.rescale(m, layer, neuron)
                assert _relative_symmetry_residual(loss, gen, m) < 1e-13


def test_rescaling_fails_where_it_must():
    x, y = _data(4)
    loss = nn.make_loss(x, y)
    m = nn.MLP([4, 5, 3], [nn.Tanh(), nn.Identity()], key=KEY)
    with pytest.raises(ValueError, match="not homogeneous"):
        nn.rescale(m, 1)
    assert _relative_symmetry_residual(loss, nn.rescale(m, 1, p=1.0), m) > 1e-3
    m = nn.MLP([4, 5, 3], [nn.RePU(2.0), nn.Identity()], key=KEY)
    assert (
        _relative_symmetry_residual(loss, nn.rescale(m, 1, p=1.0), m) > 1e-3
    )  # wrong p
    m = nn.MLP([4, 5, 3], [nn.Swish(), nn.Identity()], key=KEY)
    # Swish without touching β is not a symmetry: drop the β part of ξ
    gen = nn.rescale(m, 1)
    broken = lnn.Generator(
        lambda t, q: eqx.tree_at(
            lambda z: z.betas[0], gen.xi(t, q), jnp.zeros_like(q.betas[0])
        )
    )
    assert _relative_symmetry_residual(loss, broken, m) > 1e-3


def test_gl_on_linear_layer():
    x, y = _data(4)
    loss = nn.make_loss(x, y)
    A = jax.random.normal(jax.random.key(5), (5, 5))
    for bias in (False, True):
        m = nn.MLP([4, 5, 3], [nn.Identity(), nn.Identity()], bias=bias, key=KEY)
        assert _relative_symmetry_residual(loss, nn.gl(m, 1, A), m) < 1e-13
    m = nn.MLP([4, 5, 3], [nn.ReLU(), nn.Identity()], key=KEY)
    assert _relative_symmetry_residual(loss, nn.gl(m, 1, A), m) > 1e-3
    with pytest.raises(ValueError, match="`A` must have shape"):
        nn.gl(m, 1, jnp.eye(4))


def test_input_rotation_with_isotropic_data():
    d0 = 3
    x = jnp.concatenate([jnp.eye(d0), -jnp.eye(d0)])  # second moment ∝ I
    y = jnp.zeros((2 * d0, 2))
    loss = nn.make_loss(x, y, kind="squared_error")
    P = jnp.array([[0.0, 1.0, -0.5], [-1.0, 0.0, 0.3], [0.5, -0.3, 0.0]])
    m = nn.MLP([d0, 4, 2], [nn.Identity(), nn.Identity()], key=KEY)
    assert _relative_symmetry_residual(loss, nn.rotate_inputs(m, P), m) < 1e-13
    m = nn.MLP([d0, 4, 2], [nn.ReLU(), nn.Identity()], key=KEY)
    assert _relative_symmetry_residual(loss, nn.rotate_inputs(m, P), m) > 1e-3
    with pytest.raises(ValueError, match="skew"):
        nn.rotate_inputs(m, jnp.eye(d0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="`activations` must have one entry per layer"):
        nn.MLP([3, 4, 2], [nn.ReLU()], key=KEY)
    with pytest.raises(ValueError, match="`sizes`"):
        nn.MLP([3], [], key=KEY)
    with pytest.raises(ValueError, match="activation objects"):
        nn.MLP([3, 4, 2], [jax.nn.relu, nn.Identity()], key=KEY)
    m = nn.MLP([3, 4, 2], [nn.ReLU(), nn.Identity()], key=KEY)
    with pytest.raises(ValueError, match="hidden layer"):
        nn.rescale(m, 2)
    with pytest.raises(ValueError, match="`neuron`"):
        nn.rescale(m, 1, 4)
    with pytest.raises(ValueError, match="`kind`"):
        nn.make_loss(jnp.zeros((2, 3)), jnp.zeros(2, int), kind="hinge")
    with pytest.raises(ValueError, match="integer labels"):
        nn.make_loss(jnp.zeros((2, 3)), jnp.zeros(2))
    with pytest.raises(ValueError, match="`alpha`"):
        nn.LeakyReLU(1.5)


# --- Tables 2–5 against the generic Noether machinery ----------------------------------


def _general_lagrangian(loss, case):
    if case == "nd":
        return dynamics.newtonian(loss), 0.0, 1.0, 1.0
    if case == "nagf":
        t = 1.3
        return dynamics.nesterov(loss), 3 / t, 1.0, t
    k1, k2 = lambda t: 0.5 + t, lambda t: 2.0 + jnp.sin(t)
    t = 0.7
    return dynamics.general(loss, k1, k2, t_ref=0.0), k1(t), k2(t), t


def _dQ_minus_R(L, gen, t, q, v, a):
    """dQ/dt − R for arbitrary (q, v, a): equals e^s/κ2 ⟨ξ(q), κ2 a + κ1 v⟩ for the
    Table-1 Lagrangians (exact, off-shell)."""
    Q = lnn.noether_charge(L, gen)
    R = lnn.invariance_residual(L, gen)
    t = jnp.asarray(t)
    dQ = jax.jvp(Q, (t, q, v), (jnp.ones_like(t), v, a))[1]
    return dQ - R(t, q, v)


def _weight(L, t, k2):
    if isinstance(L, lnn.Conformal):
        return jnp.exp(L.log_weight(jnp.asarray(t))) / k2
    return 1.0 / k2


@pytest.mark.parametrize("case", ["nd", "nagf", "general"])
def test_rescale_table_matches_generic_noether(case):
    x, y = _data(4)
    loss = nn.make_loss(x, y)
    m = nn.MLP(
        [4, 5, 3, 3], [nn.Swish(), nn.RePU(2.0), nn.Identity()], bias=True, key=KEY
    )
    v, a = _random_like(m, 7), _random_like(m, 8)
    L, k1, k2, t = _general_lagrangian(loss, case)
    for layer in (1, 2):
        for neuron in (None, 1):
            gen = nn.rescale(m, layer, neuron)
            generic = _dQ_minus_R(L, gen, t, m, v, a) / _weight(L, t, k2)
            table = nn.rescale_residual(
                m, v, a, layer, kappa1=k1, kappa2=k2, per_neuron=True
            )
            table = jnp.sum(table) if neuron is None else table[neuron]
            assert abs(float(generic - table)) < 1e-11 * (1 + abs(float(table)))
    # on-shell (a = the equations of motion) the residual form vanishes
    a_true = lnn.euler_lagrange(L)(t, m, v)
    for layer in (1, 2):
        r = nn.rescale_residual(
            m, v, a_true, layer, kappa1=k1, kappa2=k2, per_neuron=True
        )
        assert float(jnp.max(jnp.abs(r))) < 1e-12


def test_rescale_gf_quantity_is_the_generator_potential():
    """∇C = 2ξ, so dC/dt = −2⟨ξ, ∇L⟩ = 0 along GF: the integrated Table-2 form."""
    m = nn.MLP(
        [4, 5, 3, 3], [nn.Swish(), nn.RePU(2.0), nn.Identity()], bias=True, key=KEY
    )
    for layer in (1, 2):
        gC = jax.grad(lambda q: nn.rescale_quantity(q, layer))(m)
        xi = nn.rescale(m, layer).xi(0.0, m)
        assert (
            lnn._tree.tree_max_abs(
                lnn._tree.tree_sub(gC, jax.tree.map(lambda z: 2 * z, xi))
            )
            < 1e-13
        )
        per = nn.rescale_quantity(m, layer, per_neuron=True)
        assert per.shape == (m.weights[layer - 1].shape[0],)


def test_rescale_gf_quantity_conserved_along_gradient_flow():
    x, y = _data(4)
    loss = nn.make_loss(x, y)
    m = nn.MLP(
        [4, 6, 6, 3], [nn.RePU(2.0), nn.Swish(), nn.Identity()], bias=True, key=KEY
    )
    traj = lnn.simulate(
        dynamics.gradient_flow(loss),
        m,
        t0=0.0,
        t1=20.0,
        ts=jnp.linspace(0, 20.0, 50),
        rtol=1e-11,
        atol=1e-12,
    )
    for layer in (1, 2):
        C = jax.vmap(lambda q: nn.rescale_quantity(q, layer, per_neuron=True))(traj.q)
        assert float(jnp.max(jnp.abs(C - C[0]))) < 1e-8
        norms = jax.vmap(lambda q: jnp.sum(q.weights[layer - 1] ** 2))(traj.q)
        assert float(jnp.ptp(norms)) > 1e-3  # the weights did move


@pytest.mark.parametrize("case", ["nd", "nagf", "general"])
def test_linear_table_matches_generic_noether(case):
    x, y = _data(4)
    loss = nn.make_loss(x, y)
    m = nn.MLP([4, 5, 3], [nn.Identity(), nn.Identity()], bias=True, key=KEY)
    v, a = _random_like(m, 7), _random_like(m, 8)
    L, k1, k2, t = _general_lagrangian(loss, case)
    T = nn.linear_residual(m, v, a, 1, kappa1=k1, kappa2=k2)
    for seed in range(3):
        A = jax.random.normal(jax.random.key(seed), (5, 5))
        generic = _dQ_minus_R(L, nn.gl(m, 1, A), t, m, v, a) / _weight(L, t, k2)
        assert abs(float(generic - jnp.trace(T @ A))) < 1e-11 * (
            1 + float(jnp.abs(T).max())
        )
    a_true = lnn.euler_lagrange(L)(t, m, v)
    assert (
        float(
            jnp.max(jnp.abs(nn.linear_residual(m, v, a_true, 1, kappa1=k1, kappa2=k2)))
        )
        < 1e-12
    )


def test_linear_gf_quantity():
    """∇ tr(C A) = ξ_{A + Aᵀ}: the entries of the symmetric C are the integrated laws."""
    m = nn.MLP([4, 5, 3], [nn.Identity(), nn.Identity()], bias=True, key=KEY)
    C = nn.linear_quantity(m, 1)
    assert np.allclose(C, C.T)
    A = jax.random.normal(jax.random.key(2), (5, 5))
    g = jax.grad(lambda q: jnp.trace(nn.linear_quantity(q, 1) @ A))(m)
    xi = nn.gl(m, 1, A + A.T).xi(0.0, m)
    assert lnn._tree.tree_max_abs(lnn._tree.tree_sub(g, xi)) < 1e-13


@pytest.mark.parametrize("case", ["nd", "nagf", "general"])
def test_rotation_table_matches_generic_noether(case):
    # isotropic data: the loss of a linear network is rotation invariant
    x = jnp.concatenate([jnp.eye(3), -jnp.eye(3)])
    loss = nn.make_loss(x, jnp.zeros((6, 3)), kind="squared_error")
    m = nn.MLP([3, 4, 3], [nn.Identity(), nn.Identity()], key=KEY)
    v, a = _random_like(m, 7), _random_like(m, 8)
    L, k1, k2, t = _general_lagrangian(loss, case)
    T = nn.rotation_residual(m, v, a, kappa1=k1, kappa2=k2)
    P = jnp.array([[0.0, 1.0, -0.5], [-1.0, 0.0, 0.3], [0.5, -0.3, 0.0]])
    generic = _dQ_minus_R(L, nn.rotate_inputs(m, P), t, m, v, a) / _weight(L, t, k2)
    # ⟨E, W P⟩ = tr(Eᵀ W P) = ½ tr(T P) for skew P
    assert abs(float(generic - 0.5 * jnp.trace(T @ P))) < 1e-11 * (
        1 + float(jnp.abs(T).max())
    )
    a_true = lnn.euler_lagrange(L)(t, m, v)
    R = nn.rotation_residual(m, v, a_true, kappa1=k1, kappa2=k2)
    assert float(jnp.max(jnp.abs(R))) < 1e-12
    # and the ND charge: tr(S P) = 2 Q with S = Ẇᵀ W − Wᵀ Ẇ
    S = nn.rotation_quantity(m, v)
    Q = lnn.noether_charge(dynamics.newtonian(loss), nn.rotate_inputs(m, P))(0.0, m, v)
    assert abs(float(jnp.trace(S @ P) - 2 * Q)) < 1e-12
