"""A small pre-LN transformer classifier written with `equinox.nn` layers."""

from collections.abc import Callable

import equinox as eqx
import jax

from ._layers import (
    AddPosition,
    Residual,
    SelfAttention,
    TokenMean,
    Tokenwise,
    _SequentialClassifier,
    sequential,
)


def _norm(kind, d, eps, learnable, dtype):
    cls = {"layer": eqx.nn.LayerNorm, "rms": eqx.nn.RMSNorm}[kind]
    return Tokenwise(
        cls(d, eps=eps, use_weight=learnable, use_bias=learnable, dtype=dtype)
    )


class Transformer(_SequentialClassifier):
    r"""A small pre-LN transformer classifier of a sequence of `n_tokens` tokens of
    `d_token` features (e.g. the 8×8 digits as 8 tokens of 8 pixels):

    ```
    Tokenwise(Linear(d_token → d_model)) → AddPosition
    → n_layers × [Residual(Tokenwise(Norm) → SelfAttention(MultiheadAttention)),
                  Residual(Tokenwise(Norm) → Tokenwise(Linear(d_model → d_mlp))
                           → activation → Tokenwise(Linear(d_mlp → d_model)))]
    → Tokenwise(Norm) → TokenMean → Linear(d_model → n_classes)
    ```

    giving logits for a softmax cross-entropy loss. Head $h$ of each attention layer
    computes $\mathrm{softmax}(x W_Q^h (x W_K^h)^\top/\sqrt{d_{head}})\,x W_V^h W_O^h$
    (see `lnn.nn.SelfAttention` for where $W_Q^h, \ldots$ sit in the weights).

    Every read of the residual stream goes through a normalisation, so with
    `norm_eps=0` (the default) scaling every weight that writes into the stream
    (embedding, position, each $W_O$ and each second MLP layer, with their biases)
    leaves the logits unchanged. A positive `norm_eps` (as in most libraries) breaks
    that symmetry by $O(\text{eps}/\text{variance})$; `lnn.nn.symmetries` then
    refuses it.

    **Arguments:**

    - `n_tokens`, `d_token`: the input's shape `(n_tokens, d_token)`.
    - `d_model`, `n_heads`, `d_head`: width, heads, and per-head query/key/value
      size (default `d_model // n_heads`).
    - `n_layers`: number of blocks; `d_mlp`: hidden width of each MLP.
    - `n_classes`: number of logits.
    - `norm`: `"layer"` (`eqx.nn.LayerNorm`) or `"rms"` (`eqx.nn.RMSNorm`);
      `learnable_scale`: whether the norms have a learnable scale and bias;
      `norm_eps`: their eps.
    - `activation`: the MLP's elementwise activation (default `jax.nn.relu`).
    - `bias`: biases on the query/key/value/output projections.
    - `rotate_queries`: a position-dependent rotation of the queries (a control
      that breaks $GL(d_{head})$ of $(W_Q, W_K)$; see `lnn.nn.SelfAttention`).
    - `key`: a JAX PRNG key; `dtype`: the parameters' dtype.

    **Call:** `model(x)` with `x` of shape `(n_tokens, d_token)`,
    `(n, n_tokens, d_token)` or `(n, n_tokens·d_token)`; returns logits
    `(n_classes,)` or `(n, n_classes)`.
    """

    def __init__(
        self,
        n_tokens: int = 8,
        d_token: int = 8,
        d_model: int = 16,
        n_heads: int = 2,
        n_layers: int = 1,
        d_mlp: int = 32,
        n_classes: int = 10,
        *,
        d_head: int | None = None,
        norm: str = "layer",
        learnable_scale: bool = True,
        norm_eps: float = 0.0,
        activation: Callable = jax.nn.relu,
        bias: bool = False,
        rotate_queries: bool = False,
        key,
        dtype=None,
    ):
        sizes = dict(
            n_tokens=n_tokens,
            d_token=d_token,
            d_model=d_model,
            n_heads=n_heads,
            n_layers=n_layers,
            d_mlp=d_mlp,
            n_classes=n_classes,
        )
        for name, v in sizes.items():
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
        if d_head is None:
            if d_model % n_heads:
                raise ValueError(
                    f"`d_model` ({d_model}) must be divisible by `n_heads` ({n_heads}) "
                    "unless `d_head` is given."
                )
            d_head = d_model // n_heads
        if isinstance(d_head, bool) or not isinstance(d_head, int) or d_head <= 0:
            raise ValueError(f"`d_head` must be a positive int; got {d_head!r}.")
        if norm not in ("layer", "rms"):
            raise ValueError(f"`norm` must be 'layer' or 'rms'; got {norm!r}.")
        if not (isinstance(norm_eps, (int, float)) and norm_eps >= 0):
            raise ValueError(f"`norm_eps` must be a number >= 0; got {norm_eps!r}.")
        if not callable(activation):
            raise ValueError(f"`activation` must be callable; got {activation!r}.")
        keys = iter(jax.random.split(key, 3 + 3 * n_layers))
        layers = [
            Tokenwise(eqx.nn.Linear(d_token, d_model, key=next(keys), dtype=dtype)),
            AddPosition(n_tokens, d_model, key=next(keys), dtype=dtype),
        ]
        for _ in range(n_layers):
            mha = eqx.nn.MultiheadAttention(
                n_heads,
                d_model,
                qk_size=d_head,
                vo_size=d_head,
                use_query_bias=bias,
                use_key_bias=bias,
                use_value_bias=bias,
                use_output_bias=bias,
                dtype=dtype,
                key=next(keys),
            )
            k1, k2 = jax.random.split(next(keys))
            layers += [
                Residual(
                    [
                        _norm(norm, d_model, norm_eps, learnable_scale, dtype),
                        SelfAttention(mha, rotate_queries=rotate_queries),
                    ]
                ),
                Residual(
                    sequential(
                        [
                            _norm(norm, d_model, norm_eps, learnable_scale, dtype),
                            Tokenwise(
                                eqx.nn.Linear(d_model, d_mlp, key=k1, dtype=dtype)
                            ),
                            activation,
                            Tokenwise(
                                eqx.nn.Linear(d_mlp, d_model, key=k2, dtype=dtype)
                            ),
                        ]
                    )
                ),
            ]
        layers += [
            _norm(norm, d_model, norm_eps, learnable_scale, dtype),
            TokenMean(),
            eqx.nn.Linear(d_model, n_classes, key=next(keys), dtype=dtype),
        ]
        self.layers = sequential(layers)
        self.input_shape = (n_tokens, d_token)
