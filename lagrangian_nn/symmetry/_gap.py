r"""The rank certificate that `count_laws`, `discover` and `conservation_table` share.

A rank is read from singular values by a threshold $\tau$: those at most $\tau$ count
as zero. The threshold is set a fixed factor above the rounding level of the matrix
(from the dtype's epsilon), where exact dependencies are measured to lie. The count is
*certified* only if both sides of the split keep their distance from $\tau$, each by
its own margin:

- the smallest singular value counted as nonzero is at least `min_gap`$\cdot\tau$;
- the largest counted as zero is at most $\tau/$`zero_margin`.

Neither margin follows from how $\tau$ was set, so the test can fail on either side: a
direction within a factor `min_gap` above the threshold, or a "zero" within a factor
`zero_margin` below it, makes the rank ambiguous, and the caller refuses.
"""

import math

import numpy as np

# Singular values of exact dependencies, in units of the rounding level, measured at
# 0.01-0.46 (`discover`, MLPs of 2 to 11 layers, up to 4,600 parameters) and 0.02-0.43
# (`count_laws`, GF and momentum flows, depths 2-4, up to 50 hidden neurons), in
# float32 and float64. The threshold sits this factor above the rounding level ...
TOL_FACTOR = 10.0
# ... the largest zero must lie this factor below the threshold (3.3 rounding levels,
# 7x above the largest measured) ...
ZERO_MARGIN = 3.0
# ... and the smallest nonzero this factor above it (1,000 rounding levels).
MIN_GAP = 100.0


def singular_gap(
    sv,
    threshold: float,
    rounding: float,
    *,
    min_gap: float = MIN_GAP,
    zero_margin: float = ZERO_MARGIN,
) -> dict:
    """Splits the singular values `sv` at `threshold` and certifies the split.

    Returns a dict:

    - `rank`: how many are above `threshold`;
    - `largest_zero`, `smallest_nonzero`: the two sides (NaN when a side is empty);
    - `gap = smallest_nonzero / threshold` (inf when nothing is above the threshold);
    - `zero_margin = threshold / largest_zero` (inf when nothing is at or below it, or
      the largest zero is exactly 0);
    - `floor = max(largest_zero, rounding)`: the size of the zero side, for the
      accuracy of null vectors (`floor / smallest_nonzero`);
    - `certified`: `gap ≥ min_gap` and `zero_margin ≥ zero_margin`.
    """
    sv = np.asarray(sv, dtype=np.float64)
    zero, kept = sv[sv <= threshold], sv[sv > threshold]
    largest_zero = float(zero.max()) if len(zero) else math.nan
    smallest_nonzero = float(kept.min()) if len(kept) else math.nan
    gap = smallest_nonzero / threshold if len(kept) else math.inf
    zmargin = threshold / largest_zero if len(zero) and largest_zero > 0 else math.inf
    return dict(
        rank=len(kept),
        largest_zero=largest_zero,
        smallest_nonzero=smallest_nonzero,
        floor=max(largest_zero if len(zero) else 0.0, rounding),
        gap=gap,
        zero_margin=zmargin,
        certified=bool(gap >= min_gap and zmargin >= zero_margin),
    )


def split_numbers(split: dict, sv, threshold, rounding, dtype, min_gap) -> dict:
    """The numbers a result or a refusal reports about a split (`singular_gap`'s):
    `dtype`, `singular_values`, `threshold`, `rounding_level`, `largest_zero`,
    `smallest_nonzero`, `gap`, `zero_margin`, `min_gap`."""
    return dict(
        dtype=dtype,
        singular_values=sv,
        threshold=threshold,
        rounding_level=rounding,
        largest_zero=split["largest_zero"],
        smallest_nonzero=split["smallest_nonzero"],
        gap=split["gap"],
        zero_margin=split["zero_margin"],
        min_gap=min_gap,
    )


def describe_split(split: dict, threshold: float, min_gap, zero_margin) -> str:
    """One sentence: both sides of the split against the threshold, and which margin
    failed."""
    n = split["rank"]
    if n:
        above = (
            f"the smallest singular value counted as nonzero is "
            f"{split['smallest_nonzero']:.3e}, {split['gap']:.3g}× the threshold "
            f"{threshold:.3e} (`min_gap` = {min_gap:g})"
        )
    else:
        above = f"no singular value is above the threshold {threshold:.3e}"
    if math.isnan(split["largest_zero"]):
        below = "no singular value is counted as zero"
    else:
        below = (
            f"the largest counted as zero is {split['largest_zero']:.3e}, "
            f"1/{split['zero_margin']:.3g} of the threshold (`zero_margin` = "
            f"{zero_margin:g})"
        )
    return f"{above}; {below}"


def check_margins(min_gap, zero_margin):
    """Raises ValueError for a margin that is not a number ≥ 1."""
    for name, value in (("min_gap", min_gap), ("zero_margin", zero_margin)):
        if not (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and 1 <= value < math.inf
        ):
            raise ValueError(f"`{name}` must be a finite number ≥ 1; got {value!r}.")


def float64_advice(dtype) -> str:
    """What to try when a rank cannot be certified: float64 in a lower precision; in
    float64, the causes that remain."""
    if np.finfo(np.dtype(str(dtype))).bits < 64:
        return (
            "Use float64 (enable `jax.config.update('jax_enable_x64', True)` and "
            "float64 parameters)"
        )
    return (
        "This is float64 already: a direction this close to rounding usually comes "
        "from parameters or fields of very different sizes (rescale them to "
        "comparable sizes), or is a symmetry broken only slightly; lower `min_gap` "
        "only if that separation is enough for your purpose"
    )
