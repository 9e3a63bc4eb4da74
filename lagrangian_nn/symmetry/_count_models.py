r"""Equinox models as the callable $\varphi(\theta, x)$ that `count_laws` takes.

`count_laws` counts the laws of a callable model `phi(theta, x)` with `theta` a pytree of
floating arrays. An equinox model (an `lnn.nn.Transformer`, an `eqx.nn.Sequential` of
`lnn.nn` layers, ...) holds its parameters and its structure in one tree;
`model_phi` splits it with `eqx.partition(model, eqx.is_inexact_array)` and returns
`phi(theta, x) = eqx.combine(theta, static)(x)` with the parameters, and a sampler of
standard normal inputs of the model's input shape.

A model whose output is logits for a softmax cross-entropy loss (`softmax_head`) is
counted through its probabilities, $\varphi = \mathrm{softmax}(\text{logits})$: the laws
are then those of every loss of the probabilities, which include the column sums of
the last layer (adding the same number to every logit changes no probability).
"""

from collections.abc import Callable

import equinox as eqx
import jax

from .._validate import check_floating_tree


class _ModelPhi(eqx.Module):
    """`phi(theta, x) = eqx.combine(theta, static)(x)` (its softmax for a softmax
    head). A module of the model's static part only: two of the same structure are
    equal, so `count_laws` reuses the programs it compiled for either."""

    static: object
    softmax_head: bool = eqx.field(static=True)

    def __call__(self, theta, x):
        y = eqx.combine(theta, self.static)(x)
        return jax.nn.softmax(y, axis=-1) if self.softmax_head else y


class _NormalInputs(eqx.Module):
    """`inputs(key)`: one standard normal input of `shape` and `dtype`."""

    shape: tuple = eqx.field(static=True)
    dtype: object = eqx.field(static=True)

    def __call__(self, key):
        return jax.random.normal(key, self.shape, self.dtype)


def model_phi(
    model, input_shape=None, *, softmax_head: bool | None = None
) -> tuple[Callable, object, Callable]:
    r"""`(phi, params, inputs)` for `count_laws(phi, params, inputs=inputs, ...)` from
    an equinox model that takes one example.

    - `phi(theta, x)`: `eqx.combine(theta, static)(x)`, or its `softmax` over the last
      axis for a softmax head. It holds only the model's structure (`static`), so
      the `phi` of two models of the same structure compare equal and `count_laws`
      compiles its programs once for both.
    - `params`: `eqx.partition(model, eqx.is_inexact_array)[0]` (the floating leaves,
      `None` elsewhere).
    - `inputs(key)`: one standard normal input of shape `input_shape`, in the
      parameters' dtype.

    **Arguments:**

    - `model`: an `eqx.Module` whose call `model(x)` takes one example.
    - `input_shape`: the shape of one example (default: the model's `input_shape`
      attribute, as on `lnn.nn.Transformer`).
    - `softmax_head`: whether the output is logits for a softmax cross-entropy loss
      (default: the model's `softmax_head` attribute, else `False`).

    **Raises:** `ValueError` for a model that is not an `eqx.Module` or has no
    floating parameters, a missing or bad `input_shape` or `softmax_head`, or a model
    that does not run on an input of that shape.
    """
    if not isinstance(model, eqx.Module):
        raise ValueError(
            f"`model` must be an `eqx.Module`; got {type(model).__name__}."
        )
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ValueError(
                "`input_shape` is required for a model without an `input_shape` "
                f"attribute ({type(model).__name__}); got None."
            )
    try:
        input_shape = tuple(int(n) for n in input_shape)
    except TypeError as e:
        raise ValueError(
            f"`input_shape` must be a tuple of positive ints; got {input_shape!r}."
        ) from e
    if any(n <= 0 for n in input_shape):
        raise ValueError(
            f"`input_shape` must be a tuple of positive ints; got {input_shape!r}."
        )
    if softmax_head is None:
        softmax_head = bool(getattr(model, "softmax_head", False))
    elif not isinstance(softmax_head, bool):
        raise ValueError(f"`softmax_head` must be a bool; got {softmax_head!r}.")
    params, static = eqx.partition(model, eqx.is_inexact_array)
    if not jax.tree.leaves(params):
        raise ValueError("`model` has no floating-point parameters.")
    check_floating_tree(params, "model's parameters")
    dtype = jax.tree.leaves(params)[0].dtype

    phi = _ModelPhi(static, softmax_head)
    inputs = _NormalInputs(input_shape, dtype)
    try:
        jax.eval_shape(phi, params, jax.ShapeDtypeStruct(input_shape, dtype))
    except Exception as e:
        raise ValueError(
            f"`model` could not be called on one input of shape {input_shape}: {e}"
        ) from e
    return phi, params, inputs
