"""Means and standard errors over runs (NumPy only; used by experiments and plots)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def mean_se(values: Iterable[float | None]) -> tuple[float, float]:
    """``(mean, standard error)`` of the finite values (``None`` and NaN are left out).

    The standard error is ``std(ddof=1) / sqrt(n)``; 0 for one value; ``(nan, nan)`` for none.
    """
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else 0.0
    return float(arr.mean()), se


def curves_mean_se(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise ``(mean, standard error)`` of curves, cut to the shortest one."""
    length = min(len(c) for c in curves)
    stack = np.stack([c[:length] for c in curves])
    se = stack.std(axis=0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * stack[0]
    return stack.mean(axis=0), se
