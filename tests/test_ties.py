"""Tests of regtheory/_ties.py: ties within the tolerance go to the lowest index."""

import numpy as np
import pytest

from regtheory._ties import TIE_RTOL, argmin_tied, lowest_index


def test_lowest_index():
    assert lowest_index(np.array([False, True, True])) == 1


@pytest.mark.parametrize(
    "values, expected",
    [
        ([3.0, 1.0, 2.0], 1),  # a clear minimum
        ([2.0, 1.0, 1.0], 1),  # exact tie: the first
        ([2.0, 1.0 + 1e-12, 1.0], 1),  # within the tolerance: still the first
        ([1.0 + 1e-12, 5.0, 1.0], 0),
        ([2.0, 1.0 + 1e-6, 1.0], 2),  # beyond it: the true minimum
        ([0.0, -0.0, 1.0], 0),  # a zero minimum: ties are exact
        ([-1.0, -1.0 - 1e-12], 0),  # negative values: relative to |min|
    ],
)
def test_argmin_tied(values, expected):
    assert argmin_tied(values) == expected


def test_argmin_tied_does_not_move_under_rounding():
    # A minimum value reached by several entries: no 1e-15 perturbation moves the choice.
    rng = np.random.default_rng(0)
    values = np.array([3.0, 2.0, 2.0, 2.0, 4.0])
    for _ in range(100):
        assert argmin_tied(values * (1 + 1e-15 * rng.normal(size=values.size))) == 1
    assert 1e-12 < TIE_RTOL < 1e-6
