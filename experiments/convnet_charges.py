r"""The symmetry charges of a convolutional network along training: gradient flow,
SGD with momentum and weight decay on mini-batches, and AdamW.

A small ConvNet (`lnn.nn.ConvNet`: 3×3 convolutions with ReLU, average then max
pooling, a residual block, a linear classifier) reads the 8×8 digits as `(1, 8, 8)`
images. `lnn.nn.symmetries` certifies its continuous symmetries: the rescaling of
each channel of a convolution against the input channels of the layer that reads it
(through ReLU and the poolings, which are positively homogeneous), with the charge
$\|W_c\|^2 + b_c^2 - \|W'_{:,c}\|^2$ per channel, and the translation of the
logits (the column sums of the classifier).

- **Gradient flow** (`lnn.simulate`, float64): every certified charge stays at its
  initial value to the solver's tolerance, relative to the largest charge of its
  layer, while the parameters move.
- **SGD with momentum and weight decay** on mini-batches: each charge follows its
  exact per-step law (`lnn.optim.sgd_chain`, `lnn.optim.tracker`), to rounding in
  float64 and within the law's rounding bound $100\,\varepsilon\sqrt{n}$ in float32.
- **AdamW** has no exact law: its quadratic charges drift far beyond the bound
  $\eta^2\sum_k|\langle g_k, Ag_k\rangle|$ that plain SGD with the same gradients
  obeys (the median over the charges, by more than a factor $10^3$).

The negative control of every claim is the same measurement on the same start of a
network whose symmetries are broken: softplus, $\log(1 + e^x)$, in place of every
ReLU (not homogeneous, so no channel can be rescaled), and extra weight decay on the
classifier only (no translation of the logits). For AdamW the control is plain SGD,
whose charges change by exactly $\eta^2\langle g_k, Ag_k\rangle$ per step.
"""

from pathlib import Path

from . import _arch_charges as A, _networks as N
from ._networks import data_config

NAME = "convnet_charges"
USES_DATA = True


def config_for(quick, seed, data="digits", data_dir=None):
    small = dict(channels=[2, 4], residual=True)
    return {
        "seed": seed,
        **data_config(quick, data, data_dir),
        "gf_model": small if quick else dict(channels=[8, 16], residual=True),
        "sgd_model": small if quick else dict(channels=[32, 64], residual=True),
        **A.run_config(quick),
    }


def _convnet(spec, dtype, seed, broken):
    import jax

    from lagrangian_nn import nn

    act = N.softplus() if broken else jax.nn.relu
    return nn.ConvNet(
        (1, 8, 8),
        tuple(spec["channels"]),
        10,
        activation=act,
        residual=spec["residual"],
        key=jax.random.key(seed),
        dtype=dtype,
    )


def _one_factor(p):
    """The classifier's weights and bias: the control's extra weight decay."""
    head = p.layers.layers[-1]
    return [head.weight, head.bias]


ARCH = A.Architecture(
    _convnet,
    lambda x: x.reshape(-1, 1, 8, 8),
    _one_factor,
    [
        (
            "rescale",
            ("rescale",),
            "channel rescalings",
            "with softplus in place of every ReLU (not homogeneous)",
        ),
        (
            "translate",
            ("translate",),
            "translation of the logits",
            "with extra weight decay on the classifier only",
        ),
    ],
)


def compute(cfg):
    return A.run(cfg, ARCH)


def draw(folder: Path):
    A.draw_figure(folder, "layer", ("rescale",))
