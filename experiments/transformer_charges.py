r"""The symmetry charges of a transformer along training: gradient flow, SGD with
momentum and weight decay on mini-batches, and AdamW.

A pre-LN transformer (`lnn.nn.Transformer`, ReLU MLPs, norms with $\text{eps} = 0$)
reads each 8×8 digit as a sequence of 8 tokens of 8 pixels. `lnn.nn.symmetries`
certifies its continuous symmetries: per attention head the $GL(d_{head})$ of
$(W_Q, W_K)$ and of $(W_V, W_O)$, whose charges are the entries of
$C_{QK}^h = W_Q^{h\top}W_Q^h - W_K^{h\top}W_K^h$ and
$C_{VO}^h = W_V^{h\top}W_V^h - W_O^hW_O^{h\top}$ (`lnn.nn.attention_charges`); the
rescaling of each MLP unit and of each normalised feature against the layer that
reads it; the scale invariance of the weights that write into the residual stream;
and the translation of the logits.

- **Gradient flow** (`lnn.simulate`, float64): every certified charge stays at its
  initial value to the solver's tolerance, relative to the largest charge of its
  family, while the parameters move.
- **SGD with momentum and weight decay** on mini-batches: the charges are not
  conserved (weight decay shrinks them), but each follows its exact per-step law
  (`lnn.optim.sgd_chain`, `lnn.optim.tracker`) within the law's rounding bound
  $100\,\varepsilon\sqrt{n}$ after $n$ steps (relative to the largest charge of its head
  or layer), in float64 and in float32.
- **AdamW** has no exact law: its quadratic charges drift far beyond the bound
  $\eta^2\sum_k|\langle g_k, Ag_k\rangle|$ that plain SGD with the same gradients
  obeys (the median over the charges, by more than a factor $10^3$).

The negative control of every claim is the same measurement on the same start of a
transformer whose symmetries are broken: each query rotated by a position-dependent
angle before the scores (no $GL(d_{head})$ of $(W_Q, W_K)$), and extra weight decay
on one factor of each symmetry (the query and output projections $W_Q$, $W_O$, the
MLPs' first layers, the norms' scales and shifts and the classifier), so that the
loss of every mini-batch has none of the symmetries. For AdamW the control is plain
SGD, whose charges change by exactly $\eta^2\langle g_k, Ag_k\rangle$ per step.
"""

from pathlib import Path

from . import _arch_charges as A
from ._networks import data_config

NAME = "transformer_charges"
USES_DATA = True

# what the families of the catalogue are called in claims and figures
FAMILY_LABELS = {
    "qk": "per-head GL of (W_Q, W_K)",
    "vo": "per-head GL of (W_V, W_O)",
    "rescale": "unit and feature rescalings",
    "scale": "scale invariance of the stream",
    "translate": "translation of the logits",
}
OTHERS = ("rescale", "scale", "translate")


def config_for(quick, seed, data="digits", data_dir=None):
    gf_model = dict(d_model=8, n_heads=2, d_head=2, n_layers=1, d_mlp=8)
    if quick:
        sgd_model = dict(d_model=8, n_heads=2, d_head=2, n_layers=1, d_mlp=8)
    else:  # 1.1 million parameters
        sgd_model = dict(d_model=256, n_heads=4, d_head=8, n_layers=2, d_mlp=1024)
    return {
        "seed": seed,
        **data_config(quick, data, data_dir),
        "gf_model": gf_model if quick else dict(gf_model, d_model=16, d_mlp=32),
        "sgd_model": sgd_model,
        **A.run_config(quick),
    }


def _transformer(spec, dtype, seed, broken):
    import jax

    from lagrangian_nn import nn

    return nn.Transformer(
        8,
        8,
        **spec,
        n_classes=10,
        rotate_queries=broken,
        key=jax.random.key(seed),
        dtype=dtype,
    )


def _one_factor(p):
    """The factors that the control's extra weight decay acts on: each attention's
    query and output projections, each MLP's first layer, each norm's scale and shift, and the
    classifier's weights and bias."""
    out = []
    layers = p.layers.layers
    for layer in layers:
        branch = getattr(layer, "branch", None)
        if branch is None:
            continue
        inner = branch.layers
        norm = inner[0].layer
        out += [norm.weight, norm.bias]
        if hasattr(inner[1], "attention"):
            mha = inner[1].attention
            out += [mha.query_proj.weight, mha.output_proj.weight]
        else:
            out.append(inner[1].layer.weight)
    final = layers[-3].layer
    out += [final.weight, final.bias, layers[-1].weight, layers[-1].bias]
    return out


ARCH = A.Architecture(
    _transformer,
    lambda x: x.reshape(-1, 8, 8),
    _one_factor,
    [
        (
            "qk",
            ("qk",),
            FAMILY_LABELS["qk"],
            "with each query rotated by a position-dependent angle (no GL(d_head) of "
            "(W_Q, W_K)) and extra weight decay on each W_Q only",
        ),
        (
            "vo",
            ("vo",),
            FAMILY_LABELS["vo"],
            "with extra weight decay on each W_O only",
        ),
        (
            "others",
            OTHERS,
            "unit and feature rescalings, scale, translation",
            "with extra weight decay on the MLPs' first layers, the norms' scales and "
            "shifts, each W_Q and W_O and the classifier only",
        ),
    ],
)


def compute(cfg):
    return A.run(cfg, ARCH)


def draw(folder: Path):
    A.draw_figure(folder, "attention head and layer", ("qk", "vo"))
