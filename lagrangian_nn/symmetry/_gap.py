"""The singular-value gap that `count_laws` and `discover` certify a rank with."""

import math

import numpy as np


def singular_gap(sv, threshold: float, rounding: float) -> dict:
    """Splits the singular values `sv` at `threshold` and measures the gap between
    the two sides.

    Returns `rank` (how many are above `threshold`), `largest_zero` and
    `smallest_nonzero` (the two sides of the split, NaN when a side is empty),
    `floor = max(largest_zero, rounding)` and `gap = smallest_nonzero / floor`,
    infinite when nothing is above the threshold (no rank to certify).
    """
    sv = np.asarray(sv)
    zero, kept = sv[sv <= threshold], sv[sv > threshold]
    largest_zero = float(zero.max()) if len(zero) else math.nan
    smallest_nonzero = float(kept.min()) if len(kept) else math.nan
    floor = max(largest_zero if len(zero) else 0.0, rounding)
    return dict(
        rank=len(kept),
        largest_zero=largest_zero,
        smallest_nonzero=smallest_nonzero,
        floor=floor,
        gap=smallest_nonzero / floor if len(kept) else math.inf,
    )
