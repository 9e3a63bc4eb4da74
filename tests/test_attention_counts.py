"""Counting every conservation law of attention (`count_laws` on equinox models through
`model_phi`): a head's count is the number of its published laws, a rotation of the
queries breaks it, a softmax head adds its column sums, and bad models are refused."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from experiment_checks import _evidence_and_consequences, _run

from experiments import _attention_laws as al, attention_counts as ac
from lagrangian_nn import nn, symmetry as sy
from lagrangian_nn.symmetry import model_phi

N_TOKENS = 3


def _count(c, flow="gf", seed=0):
    model, softmax = al.build(c, N_TOKENS, seed=seed)
    phi, params, inputs = model_phi(
        model, (N_TOKENS, c["d_model"]), softmax_head=softmax
    )
    r = sy.count_laws(
        phi, params, flow=flow, key=jax.random.key(seed), inputs=inputs, n_points=1
    )
    return r, model, params


def test_single_head_count_is_its_published_laws():
    # GF: W_QᵀW_Q − W_KᵀW_K and W_VᵀW_V − W_OW_Oᵀ, each symmetric k × k: k(k + 1)
    # independent laws, and no other (Marcotte, Gribonval & Peyré)
    k = 2
    r, model, params = _count(ac._cfg("head", 2, k, 1, ["gf"]))
    assert r.dimension == 4 * 2 * k
    known = al.gf_known(al.paper_laws(model, False), params, np.random.default_rng(0))
    assert known == k * (k + 1)
    assert r.count == known
    assert r.gap > 1e6


def test_rotated_queries_break_the_query_key_laws():
    # control: queries rotated by a position-dependent angle keep, of GL(2) on
    # (W_Q, W_K), only the rotation-scalings aI + bJ that commute with the rotations;
    # their charges are tr(C_QK) and tr(C_QK J) = 0, so one QK law is left of three
    r, _, _ = _count(ac._cfg("rotated", 2, 2, 1, ["gf"]))
    assert r.count == 1 + 3


# ~10 s (k = 1) and ~25 s (k = 2) of CPU time each: not in the default run; the
# experiment's full run (docs/attention_counts.md) counts these and larger cases
@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2])
def test_two_heads_momentum_laws_are_their_orthogonal_parts(k):
    # ND on the state (t, θ, θ̇): of each head's GL(k) × GL(k) only the orthogonal
    # part O(k) × O(k) leaves the kinetic energy invariant, k(k − 1) laws per head,
    # and nothing couples the heads; with k = 1 there is no law at all (under GF two
    # heads have 2 k(k + 1))
    c = ac._cfg("head", 2, k, 2, ["nd"])
    r, model, params = _count(c, flow="nd")
    assert r.dimension == 2 * (2 * 4 * 2 * k) + 1  # 2 heads × 4 matrices of 2 × k
    assert ac.momentum_predicted(c, False) == 2 * k * (k - 1)
    probe = jax.random.normal(jax.random.key(7), (8, N_TOKENS, 2))
    quad, lin = al.catalogue(model, False, probe)[1:3]
    rng = np.random.default_rng(0)
    known, skew = al.momentum_known(quad, lin, params, "nd", 1.0, rng)
    assert known == skew == 2 * k * (k - 1) and len(quad) == 2 * 2 * k * k
    assert r.count == known
    assert r.gap > 1e6


def test_softmax_head_adds_its_column_sums():
    # softmax(W mean(x) + b): adding the same number to column j of W (or to every
    # entry of b) changes no probability, so the d column sums and the bias sum are
    # conserved, and nothing else; the same model counted through its logits (a loss
    # that need not factor through the probabilities) has no law
    d, n_classes = 2, 2
    model = nn.sequential(
        [
            nn.TokenMean(),
            eqx.nn.Linear(d, n_classes, key=jax.random.key(0), dtype=jnp.float64),
        ]
    )
    for softmax, expected in ((True, d + 1), (False, 0)):
        phi, params, inputs = model_phi(model, (N_TOKENS, d), softmax_head=softmax)
        r = sy.count_laws(phi, params, key=jax.random.key(1), inputs=inputs, n_points=1)
        assert r.count == expected, (softmax, r)


def test_model_phi_refuses_bad_models():
    att = al.build(ac._cfg("head", 2, 2, 1, ["gf"]), N_TOKENS)[0]
    with pytest.raises(ValueError, match="`model` must be an `eqx.Module`"):
        model_phi(lambda x: x, (3, 2))
    with pytest.raises(ValueError, match="`input_shape` is required"):
        model_phi(att)
    with pytest.raises(ValueError, match="positive ints; got \\(0, 2\\)"):
        model_phi(att, (0, 2))
    with pytest.raises(ValueError, match="`softmax_head` must be a bool; got 1"):
        model_phi(att, (3, 2), softmax_head=1)
    with pytest.raises(ValueError, match="could not be called on one input"):
        model_phi(att, (3, 5))
    with pytest.raises(ValueError, match="no floating-point parameters"):
        model_phi(nn.sequential([nn.TokenMean()]), (3, 2))


def test_experiment_quick(tmp_path):
    # end to end: the smallest head under GF, two heads of width 1 under ND, and the
    # controls (rotated queries under GF, tanh queries under ND); every count is
    # certified and equals the number of independent known laws, and the controls
    # miss theirs
    m = _run("attention_counts", tmp_path, ["counts"])
    _evidence_and_consequences(tmp_path, "attention_counts", [])
    assert m["refused"] == []
    for key in ("heads_gf", "momentum", "momentum_prediction", "degree2"):
        assert m[f"{key}_mismatches"] == 0, key
    assert m["control_gf_gap"] > 0 and m["control_momentum_gap"] > 0
    flows = {(r["kind"], f["flow"]) for r in m["rows"] for f in r["flows_out"]}
    assert {("head", "gf"), ("head", "nd"), ("rotated", "gf")} <= flows
    assert ("tanh_queries", "nd") in flows
    counts = {
        (r["label"], f["flow"]): f["count"] for r in m["rows"] for f in r["flows_out"]
    }
    assert counts[("attention d=2 k=2 H=1", "gf")] == 6  # 2 symmetric 2 × 2 matrices
    assert counts[("attention d=2 k=1 H=2", "nd")] == 0  # O(1) is discrete
    # certified by a wide margin: the certificate asks a gap of 100 rounding levels
    for r in m["rows"]:
        for f in r["flows_out"]:
            assert f["gap"] > 1e6, (r["label"], f)
    table = (tmp_path / "attention_counts" / "table.md").read_text().splitlines()
    assert len(table) == 2 + sum(len(r["flows_out"]) for r in m["rows"])
