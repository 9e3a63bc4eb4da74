r"""The conserved quantities of the paper's Tables 2–5, written out as formulas.

Two forms for each symmetry:

- **integrated** (gradient flow), e.g. $\|W_h\|^2 - p\|W_{h+1}\|^2$: constant along
  $\dot w = -\nabla L$;
- **residual** (ND, NAGF, general dynamics), e.g.
  $\langle W_h, \kappa_2\ddot W_h + \kappa_1\dot W_h\rangle
   - p\langle W_{h+1}, \kappa_2\ddot W_{h+1} + \kappa_1\dot W_{h+1}\rangle$: zero along
  $\kappa_2\ddot w + \kappa_1\dot w + \nabla L = 0$.

`tests/test_nn.py` checks every formula against the library's generic
`noether_charge` / `invariance_residual` of the generators in `lnn.nn`, so the tables
are derived by autodiff, not merely restated. Layers are numbered from 1.
"""

import jax.numpy as jnp

from ._generators import _check_hidden_layer, _check_model


def _sq(x):
    return jnp.sum(x**2, axis=tuple(range(1, x.ndim))) if x.ndim > 1 else x**2


def _row_dot(a, b):
    return jnp.sum(a * b, axis=1)


def _col_dot(a, b):
    return jnp.sum(a * b, axis=0)


def _degree(model, layer, p):
    if p is not None:
        return float(p)
    p = model.activations[layer - 1].degree
    if p is None:
        raise ValueError(f"Layer {layer} is not homogeneous; pass `p`.")
    return float(p)


def rescale_quantity(model, layer: int, *, p=None, per_neuron: bool = False):
    r"""Table 2/3 gradient-flow quantity of hidden layer $h$:
    $\|W_h\|_F^2 + \|b_h\|^2 - p\|W_{h+1}\|_F^2 - \|\beta_h\|^2$
    (the bias and β terms only where the model has them; eqs. 31, 36, 37).

    With `per_neuron=True` returns the vector of per-neuron quantities
    $\|W_h[i,:]\|^2 + b_h[i]^2 - p\|W_{h+1}[:,i]\|^2 - \beta_h[i]^2$.
    """
    _check_model(model)
    _check_hidden_layer(model, layer)
    p = _degree(model, layer, p)
    h = layer - 1
    W, Wn = model.weights[h], model.weights[h + 1]
    q = jnp.sum(W**2, axis=1) - p * jnp.sum(Wn**2, axis=0)
    if model.biases is not None:
        q = q + model.biases[h] ** 2
    if model.betas[h] is not None:
        q = q - model.betas[h] ** 2
    return q if per_neuron else jnp.sum(q)


def rescale_residual(
    model,
    velocity,
    acceleration,
    layer: int,
    *,
    kappa1=0.0,
    kappa2=1.0,
    p=None,
    per_neuron: bool = False,
):
    r"""Table 2/3 residual form for general dynamics (zero along solutions):
    $\langle W_h, E_h\rangle + \langle b_h, e_h\rangle - p\langle W_{h+1}, E_{h+1}\rangle
     - \langle\beta_h, e^\beta_h\rangle$ with $E = \kappa_2\ddot W + \kappa_1\dot W$.

    ND is `kappa1=0, kappa2=1`; NAGF is `kappa1=3/t, kappa2=1`.
    """
    _check_model(model)
    _check_hidden_layer(model, layer)
    p = _degree(model, layer, p)
    h = layer - 1
    E = lambda v, a: kappa2 * a + kappa1 * v
    W, Wn = model.weights[h], model.weights[h + 1]
    r = _row_dot(W, E(velocity.weights[h], acceleration.weights[h])) - p * _col_dot(
        Wn, E(velocity.weights[h + 1], acceleration.weights[h + 1])
    )
    if model.biases is not None:
        r = r + model.biases[h] * E(velocity.biases[h], acceleration.biases[h])
    if model.betas[h] is not None:
        r = r - model.betas[h] * E(velocity.betas[h], acceleration.betas[h])
    return r if per_neuron else jnp.sum(r)


def linear_quantity(model, layer: int):
    r"""Table 4 gradient-flow quantity (eq. 42) of a linear hidden layer $h$:
    $W_h W_h^\top - W_{h+1}^\top W_{h+1}$ (plus $b_h b_h^\top$ with biases), a symmetric
    $d_h\times d_h$ matrix."""
    _check_model(model)
    _check_hidden_layer(model, layer)
    h = layer - 1
    W, Wn = model.weights[h], model.weights[h + 1]
    C = W @ W.T - Wn.T @ Wn
    if model.biases is not None:
        C = C + jnp.outer(model.biases[h], model.biases[h])
    return C


def linear_residual(
    model, velocity, acceleration, layer: int, *, kappa1=0.0, kappa2=1.0
):
    r"""Table 4 residual form (eq. 41):
    $W_h E_h^\top - E_{h+1}^\top W_{h+1}$ (plus $b_h e_h^\top$), zero along solutions."""
    _check_model(model)
    _check_hidden_layer(model, layer)
    h = layer - 1
    E = lambda v, a: kappa2 * a + kappa1 * v
    W, Wn = model.weights[h], model.weights[h + 1]
    R = (
        W @ E(velocity.weights[h], acceleration.weights[h]).T
        - E(velocity.weights[h + 1], acceleration.weights[h + 1]).T @ Wn
    )
    if model.biases is not None:
        R = R + jnp.outer(
            model.biases[h], E(velocity.biases[h], acceleration.biases[h])
        )
    return R


def rotation_quantity(model, velocity):
    r"""Table 5 quantity of input rotations: $\dot W_1^\top W_1 - W_1^\top\dot W_1$, a
    skew $d_0\times d_0$ matrix. Conserved by ND, zero along GF, and
    $t^3(\dot W_1^\top W_1 - W_1^\top \dot W_1)$ is conserved by NAGF (eqs. 47–48)."""
    _check_model(model)
    W, V = model.weights[0], velocity.weights[0]
    return V.T @ W - W.T @ V


def rotation_residual(model, velocity, acceleration, *, kappa1=0.0, kappa2=1.0):
    r"""Table 5 residual form: $E_1^\top W_1 - W_1^\top E_1$ with
    $E_1 = \kappa_2\ddot W_1 + \kappa_1\dot W_1$; zero along solutions."""
    _check_model(model)
    W = model.weights[0]
    E = kappa2 * acceleration.weights[0] + kappa1 * velocity.weights[0]
    return E.T @ W - W.T @ E
