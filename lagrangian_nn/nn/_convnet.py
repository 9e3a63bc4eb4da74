"""A small convolutional classifier written with `equinox.nn` layers."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax

from ._layers import Flatten, Residual, _SequentialClassifier, sequential


class ConvNet(_SequentialClassifier):
    r"""A small convolutional classifier for `(C, H, W)` images, e.g. the 8×8 digits
    as `(1, 8, 8)`:

    `Conv2d(3×3, same) → activation → AvgPool2d(2)`, then for every further entry of
    `channels` `Conv2d(3×3, same) → activation → MaxPool2d(2)`, optionally a residual
    block `Residual([Conv2d, activation, Conv2d])` on the last channels, then
    `Flatten → Linear` to `n_classes` logits (for a softmax cross-entropy loss).

    All layers are `equinox.nn` layers in `self.layers` (an `eqx.nn.Sequential`), so
    `lnn.nn.symmetries` reads its structure: each channel of a convolution followed
    by a positively homogeneous activation (ReLU) and pooling can be rescaled against
    the next layer's input channels, and the head's logits can be translated.

    **Arguments:**

    - `input_shape`: `(C, H, W)`; `H` and `W` divisible by $2^{\text{len(channels)}}$.
    - `channels`: output channels of each convolution stage.
    - `n_classes`: number of logits.
    - `activation`: elementwise activation (default `jax.nn.relu`).
    - `residual`: add a residual block after the last stage.
    - `key`: a JAX PRNG key; `dtype`: the parameters' dtype.

    **Call:** `model(x)` with `x` of shape `input_shape`, `(n, *input_shape)` or
    `(n, C·H·W)`; returns logits `(n_classes,)` or `(n, n_classes)`.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        channels: Sequence[int] = (4, 8),
        n_classes: int = 10,
        *,
        activation: Callable = jax.nn.relu,
        residual: bool = False,
        key,
        dtype=None,
    ):
        input_shape = tuple(int(s) for s in input_shape)
        channels = tuple(int(c) for c in channels)
        if len(input_shape) != 3 or any(s <= 0 for s in input_shape):
            raise ValueError(
                f"`input_shape` must be (C, H, W) with positive sizes; got {input_shape}."
            )
        if not channels or any(c <= 0 for c in channels):
            raise ValueError(
                f"`channels` must list positive channel counts; got {channels}."
            )
        f = 2 ** len(channels)
        if input_shape[1] % f or input_shape[2] % f:
            raise ValueError(
                f"`input_shape` (H, W) = {input_shape[1:]} must be divisible by {f} "
                f"(one 2×2 pooling per stage of `channels` = {channels})."
            )
        if not callable(activation):
            raise ValueError(f"`activation` must be callable; got {activation!r}.")
        keys = iter(jax.random.split(key, len(channels) + 3))
        layers = []
        c_in = input_shape[0]
        for i, c in enumerate(channels):
            layers += [
                eqx.nn.Conv2d(c_in, c, 3, padding=1, key=next(keys), dtype=dtype),
                activation,
                eqx.nn.AvgPool2d(2, 2) if i == 0 else eqx.nn.MaxPool2d(2, 2),
            ]
            c_in = c
        if residual:
            branch = sequential(
                [
                    eqx.nn.Conv2d(
                        c_in, c_in, 3, padding=1, key=next(keys), dtype=dtype
                    ),
                    activation,
                    eqx.nn.Conv2d(
                        c_in, c_in, 3, padding=1, key=next(keys), dtype=dtype
                    ),
                ]
            )
            layers.append(Residual(branch))
        hw = (input_shape[1] // f) * (input_shape[2] // f)
        layers += [
            Flatten(),
            eqx.nn.Linear(c_in * hw, int(n_classes), key=next(keys), dtype=dtype),
        ]
        self.layers = sequential(layers)
        self.input_shape = input_shape
