"""What a floating dtype can resolve, and tolerances that ask for more, refused up front.

JAX computes in float32 unless float64 is enabled, and this library never enables it
itself. A float32 state is rounded at every step to a relative precision of its machine
epsilon (about 1.2e-7), so a solve asked for `rtol = 1e-10` cannot meet the request:
the step-size controller rejects step after step until `max_steps`, which can take
many seconds before the error appears. `check_tolerances` refuses such a request before
anything is compiled, naming the dtype and how to enable float64.
"""

import jax.numpy as jnp
import numpy as np

ENABLE_FLOAT64 = 'jax.config.update("jax_enable_x64", True)'


def resolution(dtype) -> float:
    """The relative resolution of the floating `dtype`: its machine epsilon, the gap
    between 1 and the next larger number (float32: 1.19e-7; float64: 2.22e-16).

    **Raises:** `ValueError` if `dtype` is not a floating dtype.
    """
    try:
        dt = jnp.dtype(dtype)
    except TypeError as e:
        raise ValueError(f"`dtype` must be a floating dtype; got {dtype!r}.") from e
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"`dtype` must be a floating dtype; got {dt.name}.")
    return float(jnp.finfo(dt).eps)


def _as_tolerance(value, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"`{name}` must be a non-negative real number; got {value!r}."
        ) from e
    if not (np.isfinite(x) and x >= 0):
        raise ValueError(f"`{name}` must be a non-negative real number; got {value!r}.")
    return x


def check_tolerances(rtol, atol, dtype, *, scale: float = 1.0) -> None:
    """Raises `ValueError` if an adaptive solve in `dtype` cannot meet the tolerances.

    A step is accepted when its error estimate is at most `atol + rtol·|y|`. A state
    `y` of `dtype` is itself known only to `eps·|y|` (`eps = resolution(dtype)`), so
    a tolerance below that is never met: the request is refused when
    `atol + rtol·scale < eps·scale`, for a state of size `scale` (by default 1; pass
    the size of the state where it is known). `rtol` below eps is fine while `atol`
    covers the state's size (`rtol = 0, atol = 1e-6` is a plain absolute tolerance).

    The message names the dtype, its resolution, and how to enable float64.

    **Arguments:**

    - `rtol`, `atol`: the relative and absolute tolerances, non-negative numbers.
    - `dtype`: the floating dtype of the state.
    - `scale`: the size of the state's entries (positive), 1 by default.

    **Raises:** `ValueError` for tolerances below the resolution of `dtype`, a
    negative or non-finite tolerance or `scale`, or a dtype that is not floating.
    """
    eps = resolution(dtype)
    rtol = _as_tolerance(rtol, "rtol")
    atol = _as_tolerance(atol, "atol")
    scale = _as_tolerance(scale, "scale")
    if scale == 0:
        raise ValueError(f"`scale` must be positive; got {scale!r}.")
    if atol + rtol * scale >= eps * scale:
        return
    name = jnp.dtype(dtype).name
    advice = f"use `rtol` >= {eps:.3g} or `atol` >= {eps * scale:.3g}"
    if jnp.dtype(dtype) != jnp.float64:
        advice += (
            ", or compute in float64: JAX computes in float32 unless float64 is "
            f"enabled; call `{ENABLE_FLOAT64}` at the start of the program, before "
            "any array is created, and pass float64 arrays"
        )
    raise ValueError(
        f"`rtol` = {rtol:.3g} and `atol` = {atol:.3g} ask for more than {name} can "
        f"resolve: a {name} state of size {scale:.3g} is known only to "
        f"eps·{scale:.3g} = {eps * scale:.3g} (eps = {eps:.3g}), and the tolerance "
        f"atol + rtol·{scale:.3g} = {atol + rtol * scale:.3g} is below it, so the "
        f"solver would reject step after step. {advice[0].upper()}{advice[1:]}."
    )
