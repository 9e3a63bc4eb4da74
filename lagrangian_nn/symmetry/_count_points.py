"""A generic point for a model with activation patterns: no dead neuron, no dead path.

With `patterns="data"`, `count_laws` reads each activation pattern from the sign of
the pre-activations at sampled inputs. A random point of a deep narrow ReLU net almost
always has a neuron that is never active (a width-2 layer after ReLUs is dead with
probability 1/4 per neuron), and its count would be that of a smaller network. Both
functions here work from what the model declares (`pattern_layers`,
`pre_activations`, `flip_incoming`: `lnn.nn.MLP`), never from its layers.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _count_jets

# inputs on which a model's activation patterns are checked
N_CHECK = 512


def revive(model, xs):
    """`(model, pre)`: `model` with the incoming weights (and bias) of each neuron of
    its `pattern_layers` that is never positive on the inputs `xs` negated, layer by
    layer, so that it is active on some of them, and the pre-activations of the
    result. The sign flip maps the Gaussian draw to a distribution with a density, so
    the point stays generic."""
    pre = model.pre_activations(xs)
    for j, layer in enumerate(model.pattern_layers):
        alive = np.any(np.asarray(pre[j]) > 0, axis=0)
        if not alive.all():  # flip, and read the layers after it again
            model = model.flip_incoming(layer, np.where(alive, 1.0, -1.0))
            pre = model.pre_activations(xs)
    return model, pre


def pattern_ok(model, xs, pre, fields=None) -> bool:
    """Whether every neuron of the model's `pattern_layers` is active on some of the
    inputs `xs` (`pre`: its pre-activations there; a dead neuron is not generic), and
    every parameter moves the output for some input (no weight sits on a path that is
    never active as a whole). With `fields` (a `_count_jets.MLPFields` of the model's
    structure) in NumPy."""
    for p in pre:
        if not np.all(np.any(np.asarray(p) > 0, axis=0)):
            return False
    if fields is None:
        used = np.asarray(_parameter_use(model, xs))
    else:
        theta = _count_jets.ravel(model)[None, None]
        ones = np.ones((len(xs), model.sizes[-1]), theta.dtype)
        used = np.sum(np.abs(fields.gradient(theta, np.asarray(xs), ones)[0]), axis=0)
    return bool(np.all(used > 0))


@jax.jit
def _parameter_use(model, xs):
    """Σ_x |∂(Σ_j φ_j(θ, x))/∂θ|, per flat parameter."""
    flat, unravel = ravel_pytree(model)
    g = jax.vmap(jax.grad(lambda th, x: jnp.sum(unravel(th)(x))), (None, 0))(flat, xs)
    return jnp.sum(jnp.abs(g), axis=0)
