"""Small statistics helpers shared by the analysis modules: t quantiles, mean intervals, JSON-safe values.

Kept apart so that the law, joint-law and convergence modules can use them without importing each
other's concerns.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def json_number(x) -> float | None:
    """A JSON number, or None for a missing / non-finite one."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def json_safe(value):
    """Nested containers with NaN and ±inf replaced by None, numpy scalars by Python ones."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def t_quantile(df: float, level: float = 0.95) -> float:
    """Student-t quantile for a two-sided interval at `level`."""
    return float(stats.t.ppf(0.5 + level / 2, df))


def mean_interval(values) -> dict:
    """Mean, sample sd and 95% t-interval of the mean (None where n = 1)."""
    v = np.asarray(values, np.float64)
    n = len(v)
    mean = float(v.mean())
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "lo": None, "hi": None}
    sd = float(v.std(ddof=1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half}


def json_mean_interval(values) -> dict:
    """`mean_interval` with every number JSON-safe (n stays an int)."""
    return {k: v if k == "n" else json_number(v) for k, v in mean_interval(values).items()}
