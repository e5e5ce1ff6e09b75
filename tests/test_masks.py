"""Tests of regtheory.masks: moments of every mask distribution, DropBlock's geometry and rate.

Independent references: sample moments with their standard errors, exact
enumeration of all block-start configurations of a small map, and a brute-force
count of the blocks that cover each position.
"""

import itertools

import numpy as np
import pytest

from regtheory.masks import Bernoulli, Channel, DropBlock, PerSample, dropout_lambda

N_SE = 4  # Monte Carlo agreement is required within this many standard errors


def assert_mean_within(samples, value):
    """The mean of i.i.d. ``samples`` (first axis) equals ``value`` within N_SE standard errors."""
    samples = np.asarray(samples, dtype=float)
    se = samples.std(ddof=1) / np.sqrt(samples.shape[0])
    assert abs(samples.mean() - value) < N_SE * se + 1e-12, (samples.mean(), value, se)


def brute_cover_counts(spatial, b):
    """For each position, the number of b-sided blocks inside the map that contain it."""
    counts = np.zeros(spatial, dtype=int)
    for start in itertools.product(*(range(s - b + 1) for s in spatial)):
        counts[tuple(slice(i, i + b) for i in start)] += 1
    return counts


# ----------------------------------------------------------------------------- Bernoulli, Channel


@pytest.mark.parametrize(
    "dist", [Bernoulli(0.3), Channel(0.3), PerSample(0.3), Bernoulli(0.8), Channel(0.8)]
)
def test_masks_are_inverted_with_variance_lambda(dist):
    m = dist.sample((4, 5, 5), 20_000, rng=0)
    assert m.shape == (20_000, 4, 5, 5)
    assert set(np.unique(m)) <= {0.0, 1.0 / dist.keep}
    assert_mean_within(m[:, 1, 2, 3], 1.0)
    assert_mean_within((m[:, 0, 0, 0] - 1.0) ** 2, dropout_lambda(dist.keep))


def test_channel_masks_are_constant_per_channel_and_bernoulli_masks_are_not():
    c = Channel(0.5).sample((3, 4, 4), 50, rng=1)
    assert np.all(c == c[:, :, :1, :1])
    b = Bernoulli(0.5).sample((3, 4, 4), 50, rng=1)
    assert not np.all(b == b[:, :, :1, :1])


@pytest.mark.parametrize("keep,shape", [(0.3, (2, 3, 3)), (0.75, (5,)), (0.5, (2, 7))])
def test_per_sample_masks_have_mean_one_and_covariance_lambda_between_every_pair(keep, shape):
    """Stochastic depth: one r/keep, r ~ Bernoulli(keep), per sample for the whole tensor, so
    E m = 1 and Cov(m_p, m_q) = λ for every p, q (equal entries), checked from the draws."""
    n = 40_000
    m = PerSample(keep).sample(shape, n, rng=5).reshape(n, -1)
    assert m.shape[1] == int(np.prod(shape))
    assert set(np.unique(m)) <= {0.0, 1.0 / keep}
    assert np.all(m == m[:, :1])  # one value per sample
    assert_mean_within((m[:, 0] > 0), keep)  # one Bernoulli(keep) draw per sample
    lam = (1 - keep) / keep
    assert_mean_within(m[:, -1], 1.0)
    assert_mean_within((m[:, 0] - 1.0) * (m[:, -1] - 1.0), lam)  # the first and last entry
    assert_mean_within((m[:, -1] - 1.0) ** 2, lam)
    # masks of different samples are independent: the product of two samples' deviations
    assert_mean_within((m[:-1:2, 0] - 1.0) * (m[1::2, 0] - 1.0), 0.0)


def test_same_seed_same_masks():
    for dist in (Bernoulli(0.6), Channel(0.6), DropBlock(0.6, 3), PerSample(0.6)):
        a, b = dist.sample((2, 6, 6), 7, rng=11), dist.sample((2, 6, 6), 7, rng=11)
        assert np.array_equal(a, b)


# ----------------------------------------------------------------------------- DropBlock


@pytest.mark.parametrize(
    "keep,block_size,shape",
    [(0.9, 3, (3, 8, 8)), (0.7, 2, (2, 7, 9)), (0.5, 5, (2, 6, 6)), (0.8, 3, (4, 12))],
)
def test_dropblock_mean_one_and_kept_fraction_keep(keep, block_size, shape):
    m = DropBlock(keep, block_size).sample(shape, 20_000, rng=2)
    axes = tuple(range(1, m.ndim))
    assert_mean_within(m.mean(axis=axes), 1.0)  # mean over the map of E[m] is exactly 1
    assert_mean_within((m > 0).mean(axis=axes), keep)


def test_exact_gamma_against_enumeration_of_all_block_starts():
    """Kept fraction = keep, summed exactly over all 2^starts configurations of a small map."""
    keep, b, spatial = 0.65, 2, (3, 4)
    gamma = DropBlock(keep, b).gamma(spatial)
    starts = list(itertools.product(range(spatial[0] - b + 1), range(spatial[1] - b + 1)))
    expected_kept = 0.0
    for config in itertools.product([0, 1], repeat=len(starts)):
        dropped = np.zeros(spatial, dtype=bool)
        for on, (i, j) in zip(config, starts):
            if on:
                dropped[i : i + b, j : j + b] = True
        prob = gamma ** sum(config) * (1 - gamma) ** (len(starts) - sum(config))
        expected_kept += prob * (~dropped).mean()
    assert expected_kept == pytest.approx(keep, rel=1e-12)


def test_dropblock_per_position_keep_probability_follows_cover_counts():
    """P[p kept] = (1 - γ)^c(p), c(p) counted by brute force: borders are dropped less."""
    dist = DropBlock(0.75, 3)
    spatial = (7, 6)
    gamma = dist.gamma(spatial)
    expected = (1 - gamma) ** brute_cover_counts(spatial, 3)
    kept = dist.sample((1, *spatial), 40_000, rng=3)[:, 0] > 0
    freq = kept.mean(axis=0)
    se = np.sqrt(expected * (1 - expected) / kept.shape[0])
    assert np.all(np.abs(freq - expected) < N_SE * se)
    assert expected[0, 0] > expected[3, 3]  # not unbiased entrywise: see the class docstring


def test_dropblock_drops_whole_blocks_inside_the_map():
    b = 3
    m = DropBlock(0.8, b).sample((2, 9, 9), 200, rng=4)
    dropped = m == 0
    windows = np.lib.stride_tricks.sliding_window_view(dropped, (b, b), axis=(2, 3))
    full = windows.all(axis=(-2, -1))  # (n, C, 7, 7): block starting there entirely dropped
    covered = np.zeros_like(dropped)
    for i, j in itertools.product(range(full.shape[2]), range(full.shape[3])):
        covered[:, :, i : i + b, j : j + b] |= full[:, :, i, j][:, :, None, None]
    assert np.array_equal(covered, dropped)
    assert dropped.any()


def test_dropblock_limits_are_bernoulli_and_channel():
    keep = 0.6
    assert DropBlock(keep, 1).gamma((5, 5)) == pytest.approx(1 - keep, rel=1e-12)
    assert DropBlock(keep, 5).gamma((5, 5)) == pytest.approx(1 - keep, rel=1e-12)
    whole = DropBlock(keep, 5).sample((3, 5, 5), 2000, rng=5)
    assert np.all(whole == whole[:, :, :1, :1])  # a whole-map block is channel dropout
    assert_mean_within(whole[:, :, 0, 0].ravel() > 0, keep)


def test_dropblock_gamma_exceeds_the_papers_approximation():
    """Ghiasi/torchvision's γ ignores overlapping blocks, so it drops too little (keeps more)."""
    keep, b, H, W = 0.9, 3, 8, 8
    approx = (1 - keep) * H * W / (b**2 * (H - b + 1) * (W - b + 1))
    exact = DropBlock(keep, b).gamma((H, W))
    assert exact > approx
    kept_with_approx = np.mean((1 - approx) ** brute_cover_counts((H, W), b))
    assert kept_with_approx > keep  # the approximation drops too little on this map


def test_papers_gamma_keeps_more_than_keep_on_a_16_by_16_map():
    """Ghiasi et al.'s / torchvision's γ₀ = (1 − θ)HW / (b²(H − b + 1)(W − b + 1)) on a
    16×16 map, b = 5, keep 0.5. Exact expected kept fraction under γ₀: the mean over
    positions of (1 − γ₀)^c(p) with brute-force cover counts, 0.627 > keep; that formula
    is checked against block starts sampled here directly (not through DropBlock)."""
    keep, b, H, W = 0.5, 5, 16, 16
    gamma0 = (1 - keep) * H * W / (b**2 * (H - b + 1) * (W - b + 1))
    counts = brute_cover_counts((H, W), b)
    kept = np.mean((1 - gamma0) ** counts)
    assert round(gamma0, 4) == 0.0356 and round(kept, 3) == 0.627
    exact = DropBlock(keep, b).gamma((H, W))
    assert np.mean((1 - exact) ** counts) == pytest.approx(keep, rel=1e-12)
    assert exact > gamma0 and round(exact, 4) == 0.0550
    rng = np.random.default_rng(8)
    starts = rng.random((4000, H - b + 1, W - b + 1)) < gamma0
    dropped = np.zeros((4000, H, W), dtype=bool)
    for i, j in itertools.product(range(H - b + 1), range(W - b + 1)):
        dropped[:, i : i + b, j : j + b] |= starts[:, i, j, None, None]
    assert_mean_within((~dropped).mean(axis=(1, 2)), kept)


def test_dropblock_torchvision_normaliser_is_numel_over_kept():
    m = DropBlock(0.5, 2, normalize="torchvision").sample((3, 6, 6), 500, rng=6)
    kept = m > 0
    totals = m.sum(axis=(1, 2, 3))
    some = kept.any(axis=(1, 2, 3))
    assert np.allclose(totals[some], 3 * 6 * 6)
    assert np.all(totals[~some] == 0)
    for mask, k in zip(m[some], kept[some]):
        assert np.allclose(mask[k], k.size / k.sum())


def test_dropblock_keep_one_keeps_everything():
    assert np.all(DropBlock(1.0, 3).sample((2, 5, 5), 10, rng=0) == 1.0)


@pytest.mark.parametrize(
    "kwargs,shape,match",
    [
        ({"block_size": 6}, (2, 5, 5), "block_size"),
        ({"block_size": 3}, (2, 8, 2), "block_size"),
        ({"block_size": 2}, (4,), "spatial"),
        ({"block_size": 0}, (2, 5, 5), "block_size"),
    ],
)
def test_dropblock_bad_shapes(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        DropBlock(0.5, **kwargs).sample(shape, 3, rng=0)


def test_dropblock_bad_arguments():
    with pytest.raises(ValueError, match="normalize"):
        DropBlock(0.5, 3, normalize="mean")
    with pytest.raises(ValueError, match="keep"):
        DropBlock(1.5, 3)


# ----------------------------------------------------------------------------- rare events


@pytest.mark.parametrize("dist", [Bernoulli(0.3), Channel(0.02), PerSample(0.05)])
def test_elementwise_and_channel_events_are_one_keep_draw(dist):
    assert dist.event_probabilities((4, 3, 3)) == (dist.keep,)
    assert dist.kept_probability((4, 3, 3)) == dist.keep


@pytest.mark.parametrize(
    "keep,block_size,spatial", [(0.1, 2, (5, 5)), (0.9, 3, (8, 8)), (0.5, 2, (2, 6))]
)
def test_dropblock_events_are_a_start_and_the_most_covered_position_kept(keep, block_size, spatial):
    """The rarest kept position, from brute-force cover counts and from sampled masks."""
    dist = DropBlock(keep, block_size)
    gamma = dist.gamma(spatial)
    kept = (1 - gamma) ** brute_cover_counts(spatial, block_size)  # P(position kept)
    assert dist.kept_probability((2, *spatial)) == pytest.approx(kept.min(), rel=1e-12)
    assert dist.event_probabilities((2, *spatial)) == pytest.approx((gamma, kept.min()), rel=1e-12)
    where = np.unravel_index(np.argmin(kept), spatial)
    samples = dist.sample((1, *spatial), 20_000, rng=3)[(slice(None), 0, *where)] > 0
    assert_mean_within(samples, kept.min())


def test_seed_keyword_of_samplers_still_works_and_warns():
    from regtheory.masks import kept_units

    dist = Bernoulli(0.3)
    with pytest.warns(DeprecationWarning, match="rng="):
        old = dist.sample((4,), 6, seed=2)
    np.testing.assert_array_equal(old, dist.sample((4,), 6, 2))
    with pytest.warns(DeprecationWarning, match="rng="):
        old_units = kept_units(0.3, 10, seed=2)
    np.testing.assert_array_equal(old_units, kept_units(0.3, 10, rng=2))
