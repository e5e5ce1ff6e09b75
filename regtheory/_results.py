"""Result objects are values: frozen dataclasses whose arrays cannot be written.

A result shared between a figure, a table and a test must read the same in each, so
after a result is built its NumPy arrays are made read-only (``flags.writeable =
False``); a caller who wants to modify one takes a copy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["freeze_arrays"]


def freeze_arrays(result: object) -> None:
    """Make every NumPy array held by a field of the dataclass ``result`` read-only."""
    for field in dataclasses.fields(result):  # type: ignore[arg-type]
        value = getattr(result, field.name)
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
