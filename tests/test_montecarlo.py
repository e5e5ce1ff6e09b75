import numpy as np
import pytest
from scipy import stats

from regtheory.montecarlo import Estimate, estimate


def uniform_draw(rng, size):
    return rng.random(size)


def test_estimate_of_known_mean_within_4_se():
    est = estimate(uniform_draw, 20_000, seed=0, batch_size=777)
    assert abs(est.zscore(0.5)) < 4
    # Var U(0,1) = 1/12: the reported standard error is the CLT one
    assert est.stderr == pytest.approx(np.sqrt(1 / 12 / 20_000), rel=0.03)


def test_batched_accumulation_equals_one_pass():
    """Chan's merge over uneven batches equals numpy on the concatenated draws."""
    est = estimate(uniform_draw, 10_001, seed=3, batch_size=1000)
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.random(min(1000, 10_001 - k)) for k in range(0, 10_001, 1000)])
    assert est.n_samples == values.size
    assert est.mean == pytest.approx(values.mean(), rel=1e-13)
    assert est.stderr == pytest.approx(values.std(ddof=1) / np.sqrt(values.size), rel=1e-10)


def test_ci_is_normal_interval():
    e = Estimate(mean=1.0, stderr=0.1, n_samples=100)
    lo, hi = e.ci(0.95)
    z = stats.norm.ppf(0.975)
    assert lo == pytest.approx(1 - z * 0.1) and hi == pytest.approx(1 + z * 0.1)
    assert e.ci(0.5)[1] < hi
    with pytest.raises(ValueError, match="level"):
        e.ci(1.5)


def test_rtol_stops_early_and_reproducible():
    a = estimate(uniform_draw, 10**7, seed=1, rtol=0.005)
    b = estimate(uniform_draw, 10**7, seed=1, rtol=0.005)
    assert a == b
    assert a.rel_stderr <= 0.005 and a.n_samples < 10**7


def test_interval_coverage_over_seeds():
    """95 % intervals from 400 fixed seeds cover the true mean 92-98 % of the time."""
    draw = lambda rng, size: rng.exponential(size=size)
    hits = 0
    for seed in range(400):
        lo, hi = estimate(draw, 2000, seed=seed, batch_size=2000).ci(0.95)
        hits += lo <= 1.0 <= hi
    assert 0.92 <= hits / 400 <= 0.98


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_samples"):
        estimate(uniform_draw, 1, seed=0)
    with pytest.raises(ValueError, match="rtol"):
        estimate(uniform_draw, 100, seed=0, rtol=-1.0)
    with pytest.raises(ValueError, match="shape"):
        estimate(lambda rng, size: rng.random((size, 2)), 100, seed=0)
    with pytest.raises(FloatingPointError):
        estimate(lambda rng, size: np.full(size, np.nan), 100, seed=0)


def test_samples_for_predicts_the_needed_draws():
    pilot = estimate(uniform_draw, 2000, seed=7)
    n = pilot.samples_for(0.002)
    # σ/μ of U(0, 1) is sqrt(1/12)/0.5 = 0.577: n ≈ (0.577 / 0.002)² ≈ 83,000
    assert n == pytest.approx((np.sqrt(1 / 12) / 0.5 / 0.002) ** 2, rel=0.1)
    assert estimate(uniform_draw, n, seed=8).rel_stderr == pytest.approx(0.002, rel=0.1)
    assert pilot.std == pytest.approx(np.sqrt(1 / 12), rel=0.05)
    with pytest.raises(ValueError, match="rtol"):
        pilot.samples_for(0)
