"""Networks as mechanical systems: models, activations, symmetry generators and the
closed-form conserved quantities of the paper's Tables 2–5."""

from ._activations import (
    AbstractActivation as AbstractActivation,
    Identity as Identity,
    LeakyReLU as LeakyReLU,
    Polynomial as Polynomial,
    ReLU as ReLU,
    RePU as RePU,
    Swish as Swish,
    Tanh as Tanh,
)
from ._charges import (
    linear_quantity as linear_quantity,
    linear_residual as linear_residual,
    rescale_quantity as rescale_quantity,
    rescale_residual as rescale_residual,
    rotation_quantity as rotation_quantity,
    rotation_residual as rotation_residual,
)
from ._convnet import ConvNet as ConvNet
from ._generators import gl as gl, rescale as rescale, rotate_inputs as rotate_inputs
from ._layers import (
    AddPosition as AddPosition,
    Flatten as Flatten,
    Residual as Residual,
    SelfAttention as SelfAttention,
    TokenMean as TokenMean,
    Tokenwise as Tokenwise,
    sequential as sequential,
)
from ._loss import (
    DatasetLoss as DatasetLoss,
    make_loss as make_loss,
    nll as nll,
    squared_error as squared_error,
)
from ._mlp import MLP as MLP
from ._normalized import (
    NormalizedMLP as NormalizedMLP,
    normalized_rescale as normalized_rescale,
    scale_invariance as scale_invariance,
    translate_logits as translate_logits,
)
from ._symmetries import (
    Symmetries as Symmetries,
    attention_charges as attention_charges,
    symmetries as symmetries,
)
from ._transformer import Transformer as Transformer
