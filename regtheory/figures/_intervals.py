"""Student-t intervals over seeds or replicates, the one definition every figure uses."""

from __future__ import annotations

import numpy as np

__all__ = ["student_t_interval"]


def student_t_interval(values) -> dict[str, float]:
    """Mean and half-width of the 95 % Student-t interval of ``values`` (at least two).

    Parameters
    ----------
    values : array_like of float
        One number per seed or replicate.

    Returns
    -------
    dict
        ``{"mean": ..., "half_width": ...}``.
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return {"mean": float(v.mean()), "half_width": half}
