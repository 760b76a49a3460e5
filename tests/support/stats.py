"""Percentiles of measured durations, one definition for every benchmark and test."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least p % of the values at or below it.

    values: any numbers (seconds, milliseconds: the result is in the same unit), in any order.
    p: the percentile, 0 to 100 (50 is a median that is always one of the values, 100 the maximum,
    0 the minimum).

    Raises ValueError for no values or a p outside 0..100.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside 0..100")
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
