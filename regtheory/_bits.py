"""Bernoulli units from raw random bits: the core of :func:`regtheory.masks.kept_units`.

The Monte Carlo engines draw a mask for every chunk of draws; they call :func:`kept_bits`
directly, with arguments they have already checked, so that a chunk pays for the bits and
not for the validation of the public function.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["kept_bits"]


def kept_bits(keep: float, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Bool array of ``shape``, i.i.d. True with probability ``keep`` (checked, in (0, 1]).

    One byte of ``rng``'s raw output decides a unit (one bit at keep 0.5); the rule and
    its exactness are described in :func:`regtheory.masks.kept_units`.
    """
    size = math.prod(shape)
    if keep == 1.0:
        return np.ones(shape, dtype=bool)
    if keep == 0.5:  # one bit a unit
        raw = rng.bit_generator.random_raw((size + 63) // 64).astype("<u8", copy=False)
        return np.unpackbits(raw.view(np.uint8), count=size).view(bool).reshape(shape)
    raw = rng.bit_generator.random_raw((size + 7) // 8).astype("<u8", copy=False)
    units = raw.view(np.uint8)[:size]
    scaled = keep * 256.0
    threshold = int(scaled)
    kept = units < threshold
    ties = np.flatnonzero(units == threshold)
    if ties.size:
        kept[ties] = rng.random(ties.size) < scaled - threshold
    return kept.reshape(shape)
