"""lnn.symmetry.count_laws: the four published counts at small sizes, a user model, the
completeness verdict, every bad input, and the experiment's --quick run."""

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import compiles_during

import lagrangian_nn as lnn
from experiments import __main__ as cli, conservation_counts as cc
from lagrangian_nn import nn, symmetry as sy

# One generic point suffices for what is asserted: the count at any point is at least
# the generic count (ranks are lower semicontinuous), and for analytic models equal to
# it at almost every point; so a point with count 0, or with exactly the laws known to
# exist (the rescalings of a ReLU net), certifies the generic count.
P1 = {"n_points": 1}


def net(sizes, act, *, bias=False, seed=0, first=None):
    acts = [act] * (len(sizes) - 2) + [nn.Identity()]
    if first is not None:
        acts[0] = first
    return nn.MLP(sizes, acts, bias=bias, key=jax.random.key(seed), dtype=jnp.float64)


@pytest.mark.parametrize("bias", [False, True])
def test_gf_relu_count_is_sum_of_hidden_widths(bias):
    r = sy.count_laws(
        net([3, 3, 2, 2], nn.ReLU(), bias=bias), key=jax.random.key(0), **P1
    )
    assert r.count == 3 + 2
    assert r.dimension == (3 * 3 + 3 * 2 + 2 * 2) + (7 if bias else 0)
    assert r.rank == r.dimension - r.count
    assert r.gap > 1e6 and "5 independent" in r.summary()


def test_all_patterns_against_the_patterns_data_reach():
    # A width-2 ReLU layer feeds a width-3 one: a neuron whose two incoming weights are
    # positive is always active, so near such θ the net is partly linear and has more
    # laws. `patterns="all"` (Marcotte et al.'s path-lifting count) sees every pattern;
    # `patterns="data"` counts near the drawn θ, never fewer (ranks are lower
    # semicontinuous), and more on some draws.
    m = net([3, 2, 3, 2], nn.ReLU())
    r = sy.count_laws(m, key=K)
    assert r.count == 2 + 3 and r.patterns == "all"
    local = [
        sy.count_laws(m, key=jax.random.key(k), patterns="data", n_points=1).count
        for k in range(4)
    ]
    assert min(local) >= r.count and max(local) > r.count, local
    # LeakyReLU and RePU(2): the same rescaling laws
    for act in (nn.LeakyReLU(0.1), nn.RePU(2)):
        assert sy.count_laws(net([3, 2, 3, 2], act), key=K).count == 5


def test_gf_count_changes_when_the_activation_does():
    # negative control: the first hidden layer linear (GL(3) instead of 3 rescalings)
    r = sy.count_laws(
        net([3, 3, 2, 2], nn.ReLU(), first=nn.Identity()), key=jax.random.key(0), **P1
    )
    assert r.count != 3 + 2
    # and tanh (no homogeneity): no law at all
    tanh = net([3, 3, 2], nn.Tanh())
    assert sy.count_laws(tanh, key=jax.random.key(0), **P1).count == 0


def test_gf_linear_count_matches_the_known_laws():
    m = net([2, 3, 2], nn.Identity())
    r = sy.count_laws(m, key=jax.random.key(1), **P1)
    assert r.count == cc.known_linear_rank(m) == 3 * 4 // 2
    assert len(r.rank_by_depth) > 2  # brackets were needed: the fields are no algebra
    assert cc.rescaling_rank(m) != r.count  # control: the rescaling laws alone


def test_momentum_relu_has_no_law_but_linear_does():
    r = sy.count_laws(net([2, 2, 1], nn.ReLU()), flow="nd", key=jax.random.key(2), **P1)
    assert r.count == 0 and r.dimension == 2 * 6 + 1
    lin = net([2, 2, 1], nn.Identity())
    lin = sy.count_laws(lin, flow="nd", key=jax.random.key(2), **P1)
    assert lin.count == 1  # control: so(2) of the hidden layer


# heavy ball (and ND, NAGF again) are asserted by the experiment's --quick run below
@pytest.mark.parametrize("flow", ["nagf"])
def test_momentum_linear_count_is_degree_two_laws_and_noether_charges(flow):
    m = net([2, 2, 1], nn.Identity())
    r = sy.count_laws(m, flow=flow, key=jax.random.key(3), n_points=1)
    null, _, _ = cc.quadratic_laws(m, flow)
    assert r.count == len(null) == 1
    charges = cc.charge_coefficients(m, flow)
    assert cc.subspace_distance(charges, null) < 1e-8
    # control: the symmetric generator's charge is not a law
    sym = cc.charge_coefficients(m, flow, skew=False)
    assert cc.subspace_distance(sym[:1], null) > 0.1


def test_user_model():
    # φ(θ, x) = (u·x) v: a rank-one factorisation, one law ‖u‖² − ‖v‖²
    def phi(theta, x):
        return jnp.dot(theta["u"], x) * theta["v"]

    params = {"u": jnp.ones(2), "v": jnp.ones(3)}
    r = sy.count_laws(
        phi,
        params,
        key=jax.random.key(0),
        inputs=lambda k: jax.random.normal(k, (2,), jnp.float64),
        **P1,
    )
    assert r.count == 1 and r.dimension == 5


def test_counts_of_many_structures_free_the_programs_of_the_oldest():
    # Each structure counted (φ, flow, damping, ...) keeps its compiled bracket
    # programs for the next count of the same structure; deep brackets of a real model
    # hold thousands of the process's memory maps each (the kernel allows about 65,000
    # before XLA aborts), so only the last few are kept and an evicted one's programs
    # are freed. Four structures: the same φ under heavy ball with four dampings.
    from lagrangian_nn.symmetry import _count_brackets as cb

    def phi(theta, x):
        return jnp.dot(theta["u"], x) * theta["v"]

    params = {"u": jnp.ones(2), "v": jnp.ones(3)}
    inputs = lambda k: jax.random.normal(k, (2,), jnp.float64)  # noqa: E731
    maps = Path("/proc/self/maps")
    n_maps = [len(maps.read_text().splitlines())] if maps.exists() else None
    first = None
    for damping in (1.0, 2.0, 3.0, 4.0):
        r = sy.count_laws(
            phi,
            params,
            flow="heavy_ball",
            damping=damping,
            key=jax.random.key(0),
            inputs=inputs,
            n_points=1,
        )
        assert r.count == 0  # (u, v) ↦ (cu, v/c) is not an isometry: no law
        if first is None:
            first = list(cb.CACHE.values())[-1]
        if n_maps is not None:
            n_maps.append(len(maps.read_text().splitlines()))
    assert len(cb.CACHE) == cb.CACHE_SIZE
    assert all(b is not first for b in cb.CACHE.values())
    assert first and all(fn._cache_size() == 0 for fn in first.values())
    if n_maps is not None:  # Linux: the process's memory maps stop growing
        one = n_maps[2] - n_maps[1]
        assert one > 0 and n_maps[4] - n_maps[2] < one / 2, n_maps


def test_callable_model_compiles_once():
    # A second count of the same φ (same θ layout, a new key) compiles nothing: the
    # bracket programs and the input sampler are kept per φ and `inputs`. Control:
    # the counter sees the first count of a new φ.
    def phi(theta, x):  # a rank-one factorisation: one law ‖u‖² − ‖v‖²
        return jnp.dot(theta["u"], x) * theta["v"]

    params = {"u": jnp.ones(2), "v": jnp.ones(3)}
    inputs = lambda k: jax.random.normal(k, (2,), jnp.float64)  # noqa: E731
    count = lambda f, p, i, k: (
        sy.count_laws(  # noqa: E731
            f, p, key=jax.random.key(k), inputs=i, **P1
        ).count
    )
    first, c1 = compiles_during(lambda: count(phi, params, inputs, 0))
    again, c2 = compiles_during(lambda: count(phi, params, inputs, 1))
    assert first > 0 and again == 0 and c1 == c2 == 1
    # `model_phi` of two models of the same structure: equal φ, shared programs
    lin = lambda k, n: eqx.nn.Linear(  # noqa: E731
        3, n, use_bias=False, key=jax.random.key(k), dtype=jnp.float64
    )
    runs = [sy.model_phi(lin(k, 2), (3,)) for k in (0, 1)]
    counts = [count(f, p, i, 2) for f, p, i in runs[:1]]
    shared, c = compiles_during(lambda: count(*runs[1], 3))
    assert shared == 0 and counts == [c] == [0]  # φ = Wx: no law
    # control: another structure (3 outputs) compiles its own programs
    other, c = compiles_during(lambda: count(*sy.model_phi(lin(2, 3), (3,)), 4))
    assert other > 0 and c == 0


def test_completeness_verdict():
    m = net([2, 2, 2], nn.Identity())
    x = jax.random.normal(jax.random.key(0), (6, 2))
    loss = nn.make_loss(x, jnp.sin(x), kind="squared_error")
    total = sy.count_laws(m, key=jax.random.key(0), **P1)
    d = sy.discover(loss, m, sy.rescaling_family(m), key=jax.random.key(1))
    table = sy.conservation_table(d, loss, m, law_count=total, n_save=5, t1=0.01)
    assert (table.found, table.total, table.missing) == (2, 3, 1)
    assert "1 are missing" in table.text()
    with pytest.raises(ValueError, match="`law_count` must be the result"):
        sy.conservation_table(d, loss, m, law_count=3, n_save=5)


def test_ambiguous_gap_is_refused():
    m = net([2, 2, 1], nn.ReLU())
    with pytest.raises(sy.LawCountError, match="cannot certify the rank") as e:
        sy.count_laws(m, key=jax.random.key(0), min_gap=1e30, n_points=1)
    assert isinstance(e.value, sy.CertificationError) and len(e.value.singular_values)
    assert not isinstance(e.value, sy.DiscoveryError)


def test_unstable_brackets_are_refused():
    with pytest.raises(sy.LawCountError, match="did not stabilise within `max_depth`"):
        sy.count_laws(net([2, 3, 2], nn.Identity()), key=jax.random.key(0), max_depth=0)


M = net([2, 2, 1], nn.ReLU())
K = jax.random.key(0)


def test_bad_flow():
    with pytest.raises(ValueError, match="`flow` must be one of .* got 'sgd'"):
        sy.count_laws(M, flow="sgd", key=K)


def test_bad_model():
    with pytest.raises(ValueError, match="`model` must be an `lnn.nn.MLP` .* got int"):
        sy.count_laws(3, key=K)


def test_callable_model_needs_params():
    with pytest.raises(ValueError, match="`params` is required .* got None"):
        sy.count_laws(lambda th, x: x, key=K, inputs=lambda k: 0.0)


def test_callable_model_needs_inputs():
    with pytest.raises(ValueError, match="`inputs` is required .* got None"):
        sy.count_laws(lambda th, x: x, {"a": jnp.ones(2)}, key=K)


def test_bad_inputs():
    with pytest.raises(ValueError, match="`inputs` must be a callable .* got list"):
        sy.count_laws(M, key=K, inputs=[1.0])


def test_params_unlike_the_mlp():
    with pytest.raises(ValueError, match="`params` must be None or an `lnn.nn.MLP`"):
        sy.count_laws(M, net([2, 3, 1], nn.ReLU()), key=K)


def test_integer_params():
    with pytest.raises(ValueError, match="params"):
        sy.count_laws(lambda th, x: th * x, jnp.arange(3), key=K, inputs=lambda k: 1.0)


def test_bad_n_points():
    with pytest.raises(ValueError, match="`n_points` must be an int ≥ 1; got 0"):
        sy.count_laws(M, key=K, n_points=0)


def test_bad_damping():
    with pytest.raises(ValueError, match="`damping` must be a positive .* got -1"):
        sy.count_laws(M, flow="heavy_ball", key=K, damping=-1.0)


def test_bad_min_gap():
    with pytest.raises(
        ValueError, match="`min_gap` must be a finite number ≥ 1; got 0.5"
    ):
        sy.count_laws(M, key=K, min_gap=0.5)
    with pytest.raises(ValueError, match="`zero_margin` must be a finite number ≥ 1"):
        sy.count_laws(M, key=K, zero_margin=0.0)


def test_bad_patterns():
    with pytest.raises(ValueError, match="`patterns` must be one of .* got 'some'"):
        sy.count_laws(M, key=K, patterns="some")


def test_all_patterns_needs_integer_repu():
    m = net([2, 2, 1], nn.RePU(1.5))
    with pytest.raises(ValueError, match="integer degree.*p = 1.5.*patterns='data'"):
        sy.count_laws(m, key=K)


def test_model_that_does_not_run():
    with pytest.raises(ValueError, match="`model` could not be evaluated"):
        sy.count_laws(
            lambda th, x: th["w"] @ x,
            {"w": jnp.ones((2, 3))},
            key=K,
            inputs=lambda k: jnp.ones(5),
        )


def test_experiment_quick(tmp_path):
    assert (
        cli.main(["run", "conservation_counts", "--quick", "--out", str(tmp_path)]) == 0
    )
    folder = tmp_path / "conservation_counts"
    assert (folder / "counts.png").stat().st_size > 10_000
    assert (folder / "table.md").exists()
    res = json.loads((folder / "results.json").read_text())
    for c in res["claims"]:
        assert c["holds"], c
        assert c["control"]["missed"], c
    m = res["metrics"]
    assert m["relu_mismatches"] == m["relu_bias_mismatches"] == 0
    assert m["momentum_relu_max_count"] == 0
    assert m["refused"] == []
    arrays = np.load(folder / "arrays.npz")
    assert np.all(
        arrays["momentum_linear_nd"] == arrays["momentum_linear_so_dimension"]
    )
    assert lnn.symmetry.count_laws is sy.count_laws


# --- the certificate: each side of the split against the threshold, with its margin ---


def _tilted(delta):
    """φ(θ, x) = Σ_{i<9} θ_i x_i + θ_9 (x_0 + δ x_9): ten parameters, no law for δ ≠ 0,
    and the tenth direction of the fields has size about δ."""

    def phi(theta, x):
        return jnp.dot(theta[:9], x[:9]) + theta[9] * (x[0] + delta * x[9])

    return phi


def _count_tilted(delta, dtype):
    return sy.count_laws(
        _tilted(delta),
        jnp.ones(10, dtype),
        key=K,
        inputs=lambda k: jax.random.normal(k, (10,), dtype),
        n_points=1,
    )


def test_clear_small_direction_is_counted_in_float64():
    # δ = 1e-9 is 1e5 times the threshold: a clear case. Growing the span used to cut
    # at √eps and missed it, while the singular values counted it: refused.
    r = _count_tilted(1e-9, jnp.float64)
    assert r.count == 0 and r.rank == 10
    assert r.gap == pytest.approx(r.smallest_nonzero / r.threshold)
    assert 1e4 < r.gap < 1e6 and np.isnan(r.largest_zero) and r.zero_margin == np.inf
    assert "none counted as zero" in r.summary() and "nan" not in r.summary()


@pytest.mark.parametrize(
    "delta, dtype", [(1e-12, jnp.float64), (1e-13, jnp.float64), (1e-4, jnp.float32)]
)
def test_direction_near_the_threshold_is_refused(delta, dtype):
    # a direction within `min_gap` of the threshold: it used to be counted as zero,
    # with a "gap" above 1e3 by construction, and one law reported that does not exist
    with pytest.raises(sy.LawCountError, match="cannot certify the rank") as e:
        _count_tilted(delta, dtype)
    err = e.value
    assert err.smallest_nonzero < err.min_gap * err.threshold
    assert err.gap == pytest.approx(err.smallest_nonzero / err.threshold)
    assert err.dtype == jnp.dtype(dtype).name
    msg = str(err)
    assert "nan" not in msg and "no singular value is counted as zero" in msg
    if dtype == jnp.float64:
        assert "Use float64" not in msg and "float64 already" in msg
    else:
        assert "Use float64" in msg


def test_zero_near_the_threshold_is_refused():
    # δ = 1e-14 puts the tenth direction right at the threshold, on the zero side
    with pytest.raises(sy.LawCountError, match="largest counted as zero") as e:
        _count_tilted(1e-14, jnp.float64)
    assert e.value.zero_margin < 3 and e.value.largest_zero <= e.value.threshold
    assert np.isfinite(e.value.gap) and e.value.gap > 1e6


def test_float32_gap_is_measured_against_the_threshold():
    # float32 ND ReLU [2, 3, 3, 1]: its smallest nonzero singular value, 1e-2, was
    # reported as "gap 6.5e3" against rounding while 6.5x the old threshold. Now the gap
    # is the margin over the threshold, and the count agrees with float64.
    counts = {}
    for dtype in (jnp.float32, jnp.float64):
        m = nn.MLP(
            [2, 3, 3, 1],
            [nn.ReLU(), nn.ReLU(), nn.Identity()],
            key=jax.random.key(0),
            dtype=dtype,
        )
        r = sy.count_laws(m, flow="nd", key=jax.random.key(2), n_points=1)
        assert r.gap == pytest.approx(r.smallest_nonzero / r.threshold)
        assert r.gap >= 100 and r.threshold == pytest.approx(10 * r.rounding_level)
        counts[dtype] = r.count
    assert counts[jnp.float32] == counts[jnp.float64] == 0


def test_inconsistent_law_count_raises():
    # the rescaling laws of a linear net, against the count of a tanh net (no law)
    m = net([2, 2, 2], nn.Identity())
    x = jax.random.normal(jax.random.key(0), (6, 2))
    loss = nn.make_loss(x, jnp.sin(x), kind="squared_error")
    d = sy.discover(loss, m, sy.rescaling_family(m), key=jax.random.key(1))
    other = sy.count_laws(net([2, 2, 2], nn.Tanh()), key=jax.random.key(0), **P1)
    assert other.count == 0
    with pytest.raises(sy.DiscoveryError, match="gives 2 independent GF laws") as e:
        sy.conservation_table(d, loss, m, law_count=other, n_save=5, t1=0.01)
    assert (e.value.found, e.value.total) == (2, 0)


def test_completeness_rank_is_certified():
    # two laws whose gradients differ by 1e-13: their rank cannot be certified
    import dataclasses

    m = net([2, 2, 2], nn.Identity())
    x = jax.random.normal(jax.random.key(0), (6, 2))
    loss = nn.make_loss(x, jnp.sin(x), kind="squared_error")
    d = sy.discover(loss, m, sy.rescaling_family(m), key=jax.random.key(1))
    total = sy.count_laws(m, key=jax.random.key(0), **P1)
    fam = sy.rescaling_family(m)
    make = lambda c: lnn.Generator(  # noqa: E731
        sy._discover._Combination(fam.fields, jnp.asarray(c, jnp.float64))
    )
    c0 = np.asarray(d.coefficients[0], float)
    c1 = c0 + 1e-13 * np.asarray(d.coefficients[1], float)
    near = dataclasses.replace(d, generators=[make(c0), make(c1)])
    with pytest.raises(sy.DiscoveryError, match="cannot certify the number") as e:
        sy.conservation_table(near, loss, m, law_count=total, n_save=5, t1=0.01)
    assert e.value.gap < 100 and "float64 already" in str(e.value)
    # the same two laws 1e-3 apart: certified, 2 found
    far = dataclasses.replace(
        d,
        generators=[
            make(c0),
            make(c0 + 1e-3 * np.asarray(d.coefficients[1], float)),
        ],
    )
    table = sy.conservation_table(far, loss, m, law_count=total, n_save=5, t1=0.01)
    assert table.found == 2


# --- the brackets of an MLP in NumPy (jets) against nested jax.jvp ---


@pytest.mark.parametrize(
    "acts, flow, masked, bias, depth",
    [
        # NAGF's 3/t, tanh's derivatives to third order, biases
        ([nn.Tanh(), nn.Tanh()], "nagf", False, True, 2),
        # drawn patterns of ReLU and RePU(2) layers, heavy ball's damping
        ([nn.ReLU(), nn.RePU(2), nn.Identity()], "heavy_ball", True, False, 2),
        # patterns read from the data (LeakyReLU), an odd power, gradient flow
        ([nn.LeakyReLU(0.1), nn.Polynomial(2.5), nn.Identity()], "gf", False, False, 1),
    ],
)
def test_numpy_brackets_agree_with_nested_jvp(acts, flow, masked, bias, depth):
    # The same right-nested brackets two ways: truncated dual numbers in NumPy, and
    # nested `jax.jvp` of the traced fields. Agreement to rounding, relative to the
    # size of the terms, at every depth; and a bracket is no field (control).
    from jax.flatten_util import ravel_pytree

    from lagrangian_nn.symmetry import _count_brackets, _count_fields, _count_jets

    sizes = [2, 3, 2, 2][: len(acts) + 1]
    m = nn.MLP(sizes, acts, bias=bias, key=jax.random.key(0), dtype=jnp.float64)
    flat, unravel = ravel_pytree(m)
    D = flat.shape[0]
    if masked:
        phi, n_masks = _count_fields.patterns_phi(m)
    else:
        phi, n_masks = (lambda th, x: th(x)), 0
    X = _count_fields.make_fields(phi, unravel, D, flow, 0.7, jnp.float64)
    jets = _count_jets.MLPFields(m, flow, 0.7, masked, D)
    rng = np.random.default_rng(1)
    s0 = rng.standard_normal(D if flow == "gf" else 2 * D + 1)
    if flow != "gf":
        s0[0] = 1.3  # t
    n = 4

    def draw():
        x = rng.standard_normal((n, sizes[0]))
        if n_masks:
            x = np.concatenate([x, rng.integers(0, 2, (n, n_masks))], axis=1)
        return x, rng.standard_normal((n, sizes[-1])), rng.standard_normal(n)

    ps = tuple(draw() for _ in range(depth + 1))
    for k in range(depth + 1):
        ref, ref_scale = _count_brackets.bracket_fn(X, k)(
            jax.tree.map(jnp.asarray, ps[: k + 1]), s0
        )
        val, scale = _count_jets.brackets(jets, ps[: k + 1], s0)
        ref, ref_scale = np.asarray(ref), np.asarray(ref_scale)
        err = np.linalg.norm(val - ref, axis=1)
        # the fields are of order 1; a bracket whose two terms vanish (a pattern that
        # cuts its path) is compared at that size
        size = np.maximum(ref_scale, 1.0)
        assert np.all(err <= 1e3 * np.finfo(float).eps * size), (k, err / size)
        np.testing.assert_allclose(scale, ref_scale, rtol=1e-10, atol=1e-12)
        if k:  # control: the bracket is not the innermost field
            field, _ = _count_jets.brackets(jets, ps[k : k + 1], s0)
            assert np.max(np.linalg.norm(val - field, axis=1) / size) > 1e-2


@pytest.mark.parametrize("x64", [True, False])
def test_seed_is_jax_randint_without_compiling(x64):
    # The points are seeded by `jax.random.randint(key, (), 0, 2**31 - 1)`; `_seed`
    # computes the same integer in NumPy (Threefry-2x32), for typed and raw keys, with
    # 64-bit integers or 32 (a different algorithm branch in JAX).
    from lagrangian_nn.symmetry._count_fields import seed_of as _seed

    with jax.enable_x64(x64):
        keys = [jax.random.key(k) for k in (0, 1, 3, 2**33 + 7)]
        keys += [jax.random.PRNGKey(5), jax.random.split(jax.random.key(9))[1]]
        for key in keys:
            assert _seed(key) == int(jax.random.randint(key, (), 0, 2**31 - 1))
        # control: another key, another seed
        assert _seed(jax.random.key(0)) != _seed(jax.random.key(1))


# --- what a model declares for count_laws: its activation patterns ---


@pytest.mark.parametrize("normalized", [False, True])
def test_models_declare_their_activation_patterns(normalized):
    key = jax.random.key(3)
    if normalized:
        m = nn.NormalizedMLP([3, 4, 4, 2], normalized=1, key=key, dtype=jnp.float64)
    else:
        acts = [nn.LeakyReLU(0.1), nn.Tanh(), nn.RePU(2), nn.Identity()]
        m = nn.MLP([3, 4, 4, 4, 2], acts, bias=True, key=key, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(4), (50, 3), jnp.float64)
    assert m.pattern_layers == ((0, 1) if normalized else (0, 2))
    pre = m.pre_activations(x)
    assert [p.shape for p in pre] == [(50, 4), (50, 4)]
    # the patterns read from the signs give the network itself ...
    signs = [(p > 0).astype(p.dtype) for p in pre]
    np.testing.assert_allclose(m.with_patterns(x, signs), m(x), rtol=1e-14)
    # ... and other patterns another function (control)
    ones = [jnp.ones_like(p) for p in pre]
    assert float(jnp.max(jnp.abs(m.with_patterns(x, ones) - m(x)))) > 1e-3
    with pytest.raises(ValueError, match="one array per pattern layer \\(2\\); got 1"):
        m.with_patterns(x, signs[:1])
    # flipping a layer's incoming weights flips the signs of its pre-activations
    layer = m.pattern_layers[0]
    flipped = m.flip_incoming(layer, -np.ones(4))
    np.testing.assert_array_equal(flipped.pre_activations(x)[0], -pre[0])
    assert flipped.weights[layer].dtype == jnp.float64
