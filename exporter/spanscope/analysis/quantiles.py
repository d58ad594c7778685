"""Quantiles from histogram buckets, interpolated the way Prometheus' histogram_quantile does.

Linear interpolation inside the bucket holding the rank; the first bucket's lower bound is 0 (for
a positive upper bound); a rank in the +Inf bucket returns the highest finite upper bound.
"""
from __future__ import annotations

import math


def histogram_quantile(q: float, bounds, counts) -> float:
    """`bounds`: finite upper bounds ascending; `counts`: non-cumulative counts, one more for +Inf."""
    total = sum(counts)
    if total == 0 or not bounds:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    rank = q * total
    cumulative = 0
    for i, count in enumerate(counts):
        if cumulative + count >= rank and count > 0:
            if i == len(bounds):  # +Inf bucket
                return bounds[-1]
            upper = bounds[i]
            lower = bounds[i - 1] if i > 0 else (0.0 if upper > 0 else upper)
            return lower + (upper - lower) * (rank - cumulative) / count
        cumulative += count
    return bounds[-1]
