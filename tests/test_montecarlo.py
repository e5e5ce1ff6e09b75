import numpy as np
import pytest
from scipy import stats

from regtheory.montecarlo import Estimate, estimate, min_draws


def uniform_draw(rng, size):
    return rng.random(size)


def test_estimate_of_known_mean_within_4_se():
    est = estimate(uniform_draw, n_masks=20_000, rng=0, batch_size=777)
    assert abs(est.zscore(0.5)) < 4
    # Var U(0,1) = 1/12: the reported standard error is the CLT one
    assert est.stderr == pytest.approx(np.sqrt(1 / 12 / 20_000), rel=0.03)


def test_batched_accumulation_equals_one_pass():
    """Chan's merge over uneven batches equals numpy on the concatenated draws."""
    est = estimate(uniform_draw, n_masks=10_001, rng=3, batch_size=1000)
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.random(min(1000, 10_001 - k)) for k in range(0, 10_001, 1000)])
    assert est.n_masks == values.size
    assert est.value == pytest.approx(values.mean(), rel=1e-13)
    assert est.stderr == pytest.approx(values.std(ddof=1) / np.sqrt(values.size), rel=1e-10)


def test_ci_is_normal_interval():
    e = Estimate(1.0, 0.1, 100)
    lo, hi = e.ci(level=0.95)
    z = stats.norm.ppf(0.975)
    assert lo == pytest.approx(1 - z * 0.1) and hi == pytest.approx(1 + z * 0.1)
    assert e.ci(level=0.5)[1] < hi
    with pytest.raises(ValueError, match="level"):
        e.ci(level=1.5)


def test_rtol_stops_early_and_reproducible():
    a = estimate(uniform_draw, n_masks=10**7, rng=1, rtol=0.005)
    b = estimate(uniform_draw, n_masks=10**7, rng=1, rtol=0.005)
    assert a == b
    assert a.rel_stderr <= 0.005 and a.n_masks < 10**7


def test_interval_coverage_over_seeds():
    """95 % intervals from 400 fixed seeds cover the true mean 92-98 % of the time."""

    def draw(rng, size):
        return rng.exponential(size=size)

    hits = 0
    for seed in range(400):
        lo, hi = estimate(draw, n_masks=2000, rng=seed, batch_size=2000).ci(level=0.95)
        hits += lo <= 1.0 <= hi
    assert 0.92 <= hits / 400 <= 0.98


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_masks"):
        estimate(uniform_draw, n_masks=1, rng=0)
    with pytest.raises(ValueError, match="rtol"):
        estimate(uniform_draw, n_masks=100, rng=0, rtol=-1.0)
    with pytest.raises(ValueError, match="shape"):
        estimate(lambda rng, size: rng.random((size, 2)), n_masks=100, rng=0)
    with pytest.raises(FloatingPointError):
        estimate(lambda rng, size: np.full(size, np.nan), n_masks=100, rng=0)


def test_samples_for_predicts_the_needed_draws():
    pilot = estimate(uniform_draw, n_masks=2000, rng=7)
    n = pilot.samples_for(0.002)
    # σ/μ of U(0, 1) is sqrt(1/12)/0.5 = 0.577: n ≈ (0.577 / 0.002)² ≈ 83,000
    assert n == pytest.approx((np.sqrt(1 / 12) / 0.5 / 0.002) ** 2, rel=0.1)
    assert estimate(uniform_draw, n_masks=n, rng=8).rel_stderr == pytest.approx(0.002, rel=0.1)
    assert pilot.std == pytest.approx(np.sqrt(1 / 12), rel=0.05)
    with pytest.raises(ValueError, match="rtol"):
        pilot.samples_for(0)


def test_batched_skewness_equals_scipy_on_all_draws():
    """The streamed third moment (pairwise merge over uneven batches) gives the sample
    skewness of scipy.stats.skew on the concatenated draws."""

    def draw(rng, size):
        return rng.exponential(size=size) ** 2

    est = estimate(draw, n_masks=5003, rng=4, batch_size=700)
    rng = np.random.default_rng(4)
    values = np.concatenate([draw(rng, min(700, 5003 - k)) for k in range(0, 5003, 700)])
    assert est.skewness == pytest.approx(stats.skew(values), rel=1e-10)
    constant = estimate(lambda rng, size: np.full(size, 2.5), n_masks=50, rng=0, batch_size=7)
    assert constant.skewness == 0.0 and constant.stderr == 0.0


def hall_statistic(t, skewness, n):
    """Hall's (1992) transformed studentized mean, written forwards (the package inverts it)."""
    a = skewness / (3 * np.sqrt(n))
    return t + a * t**2 + a**2 * t**3 / 3 + a / 2


@pytest.mark.parametrize("skewness", [-2.0, -0.3, 0.7, 3.0, 25.0])
def test_ci_ends_are_where_halls_statistic_is_plus_minus_z(skewness):
    e = Estimate(3.0, 0.2, 40, skewness)
    for level in (0.5, 0.95, 0.999):
        lo, hi = e.ci(level=level)
        z = stats.norm.ppf(0.5 + level / 2)
        # an end is a value mu with h((mean - mu) / stderr) = -z (upper) or +z (lower)
        assert hall_statistic((e.value - lo) / e.stderr, skewness, 40) == pytest.approx(z, rel=1e-9)
        assert hall_statistic((e.value - hi) / e.stderr, skewness, 40) == pytest.approx(
            -z, rel=1e-9
        )
    # to first order in skewness/sqrt(n) the interval moves up by se·γ(1 + 2z²)/(6√n)
    # (the n^{-1/2} term of the Edgeworth expansion of the studentized mean; Hall 1992)
    small = Estimate(3.0, 0.2, 10**8, skewness)
    lo, hi = small.ci(level=0.95)
    z = stats.norm.ppf(0.975)
    shift = 0.2 * skewness * (1 + 2 * z**2) / (6 * np.sqrt(10**8))
    assert (lo + hi) / 2 - 3.0 == pytest.approx(shift, rel=1e-3)


def test_skewness_corrected_interval_covers_where_the_normal_one_does_not():
    """Squared normals (skewness 2√2), 30 draws: over 400 seeds the interval of ci()
    covers the mean 1 92-98 % of the time; the normal interval from the same mean and
    standard error (skewness 0) misses more than 8 % of the time, almost always low."""

    def draw(rng, size):
        return rng.standard_normal(size) ** 2

    hall = normal = normal_low = 0
    for seed in range(400):
        est = estimate(draw, n_masks=30, rng=seed, batch_size=30)
        lo, hi = est.ci(level=0.95)
        hall += lo <= 1.0 <= hi
        lo, hi = Estimate(est.value, est.stderr, est.n_masks).ci(level=0.95)
        normal += lo <= 1.0 <= hi
        normal_low += hi < 1.0
    assert 0.92 <= hall / 400 <= 0.98
    assert normal / 400 < 0.92 and normal_low > 0.8 * (400 - normal)


def test_ci_of_equal_draws_allows_for_rounding():
    """Equal draws (stderr 0) still cover a value one rounding error away."""
    e = estimate(lambda rng, size: np.full(size, 0.1 * 3), n_masks=60, rng=0)
    lo, hi = e.ci()
    assert lo <= 0.3 <= hi and hi - lo < 1e-10
    assert Estimate(0.0, 0.0, 10).ci() == (0.0, 0.0)


def test_min_draws_is_fourteen_expected_rare_events():
    # n·q(1 - q) >= 14 for the rarest random event, computed by hand
    assert min_draws(0.5) == 56
    assert min_draws(0.02) == 715  # ceil(14 / 0.0196) = ceil(714.29)
    assert min_draws(0.9) == min_draws(0.1) == 156  # ceil(14 / 0.09) = ceil(155.6)
    assert min_draws([0.5, 0.02, 0.9]) == 715
    assert min_draws([0.0, 1.0]) == 2 and min_draws(1.0) == 2  # nothing random
    assert min_draws(0.001) == int(np.ceil(14 / (0.001 * 0.999)))
    with pytest.raises(ValueError, match="event_probabilities"):
        min_draws([0.5, 1.5])
    with pytest.raises(TypeError, match="event_probabilities"):
        min_draws("0.5")


def test_old_calling_convention_still_works_and_warns():
    new = estimate(uniform_draw, n_masks=3000, rng=5, min_masks=1000, rtol=0.5)
    with (
        pytest.warns(DeprecationWarning, match="n_masks=..., rng=..."),
        pytest.warns(DeprecationWarning, match="min_masks="),
    ):
        positional = estimate(uniform_draw, 3000, 5, min_samples=1000, rtol=0.5)
    assert positional == new and positional.n_masks == new.n_masks
    with (
        pytest.warns(DeprecationWarning, match="n_masks="),
        pytest.warns(DeprecationWarning, match="rng="),
    ):
        named = estimate(uniform_draw, n_samples=3000, seed=5, min_masks=1000, rtol=0.5)
    assert named == new and named.n_masks == new.n_masks
    with pytest.raises(ValueError, match="both"):
        estimate(uniform_draw, n_masks=10, n_samples=10, rng=0)


def test_a_generator_is_used_as_it_is():
    gen = np.random.default_rng(9)
    first = estimate(uniform_draw, n_masks=100, rng=gen)
    second = estimate(uniform_draw, n_masks=100, rng=gen)  # the state advanced
    assert first != second
    assert first == estimate(uniform_draw, n_masks=100, rng=np.random.default_rng(9))
