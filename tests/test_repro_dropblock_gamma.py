"""Reproduction (r): DropBlock's γ and the drop rate it realises, recomputed apart.

The exact drop rate of the figure counts the block starts covering each unit; here it is
recomputed by enumerating every pattern of starts on a small map, and by sampling
torchvision's own ``drop_block2d``, which uses the same γ.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from regtheory.figures.reproductions.dropblock_gamma import paper_gamma, realised_drop

QUICK_SEED = 2


@pytest.fixture(scope="module")
def quick(quick_record):
    return quick_record("dropblock_gamma", QUICK_SEED)["data"]


def test_the_claims_of_the_quick_record(quick):
    exact_ends, between = quick["claims"]
    assert exact_ends["verdict"] == "reproduced"
    assert between["verdict"] == "not reproduced"
    # fewer units drop than the count of b² per block says, by percents at keep_prob 0.9
    assert 0.85 < between["ours"] < 0.99


@pytest.mark.parametrize("size, block", [(4, 2), (5, 3), (5, 2)])
def test_the_realised_rate_by_enumerating_every_pattern_of_starts(size, block):
    valid = size - block + 1
    gamma = paper_gamma(0.8, block, size)
    total = 0.0
    for bits in itertools.product((0, 1), repeat=valid * valid):
        starts = np.array(bits).reshape(valid, valid)
        dropped = np.zeros((size, size), dtype=bool)
        for i, j in zip(*np.nonzero(starts)):
            dropped[i : i + block, j : j + block] = True
        prob = gamma ** starts.sum() * (1 - gamma) ** (starts.size - starts.sum())
        total += prob * dropped.mean()
    assert realised_drop(gamma, block, size) == pytest.approx(total, rel=1e-12)


def test_the_gamma_is_torchvisions():
    ops = pytest.importorskip("torchvision.ops")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    size, block, keep, n = 14, 3, 0.75, 4000
    x = torch.ones(n, 1, size, size, dtype=torch.float64)
    out = ops.drop_block2d(x, p=1 - keep, block_size=block, inplace=False, training=True)
    dropped = (out == 0).double().mean(dim=(1, 2, 3)).numpy()
    mean, se = dropped.mean(), dropped.std(ddof=1) / np.sqrt(n)
    expected = realised_drop(paper_gamma(keep, block, size), block, size)
    assert abs(mean - expected) < 4 * se
    # and not the intended 1 − keep_prob: the gap is many standard errors
    assert (1 - keep) - mean > 10 * se


def test_sampled_rates_agree_with_the_exact_ones(quick):
    for c in quick["cells"]:
        if c["sampled_stderr"] > 0:
            assert abs(c["sampled_drop"] - c["realised_drop"]) < 4.5 * c["sampled_stderr"]
        if c["exact_kept_stderr"] > 0:
            assert abs(c["exact_kept"] - c["keep"]) < 4.5 * c["exact_kept_stderr"]
