"""The calling conventions (``regtheory._grammar``) and the one penalty result type."""

import copy
import json
import pickle
import warnings

import numpy as np
import pytest

from regtheory import InvalidParameterError, Penalty
from regtheory._grammar import (
    as_rng,
    check_method,
    deprecated_alias,
    keyword_only,
    transition_to_rng,
)
from regtheory.montecarlo import DEFAULT_N_MASKS, Estimate, default_n_masks, min_draws


def test_as_rng_follows_spec_7():
    gen = np.random.default_rng(3)
    assert as_rng(gen) is gen
    assert as_rng(7).random() == np.random.default_rng(7).random()
    seq = np.random.SeedSequence(11)
    assert as_rng(seq).random() == np.random.default_rng(np.random.SeedSequence(11)).random()
    # None is fresh entropy: two calls differ (with probability 1 - 2^-64)
    assert as_rng(None).integers(2**63) != as_rng(None).integers(2**63)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (True, "bool"),
        (-1, "non-negative"),
        (1.5, "float"),
        ("0", "str"),
        (np.random.RandomState(0), "RandomState"),
    ],
)
def test_as_rng_refuses_with_the_type_named(bad, words):
    with pytest.raises(InvalidParameterError, match=words):
        as_rng(bad)


@transition_to_rng
def _draw(n, *, rng=0):
    return as_rng(rng).random(n)


def test_seed_keyword_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="rng="):
        old = _draw(3, seed=5)
    np.testing.assert_array_equal(old, np.random.default_rng(5).random(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(_draw(3, rng=5), old)
    with pytest.raises(InvalidParameterError, match="both"):
        _draw(3, seed=1, rng=1)


@keyword_only(1)
def _solve(data, *, keep, width=4):
    return data, keep, width


def test_keyword_only_maps_old_positional_options_and_warns():
    with pytest.warns(DeprecationWarning, match="keep=..., width=..."):
        assert _solve("T", 0.5, 3) == ("T", 0.5, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _solve("T", keep=0.5) == ("T", 0.5, 4)
    with pytest.raises(TypeError, match="multiple values"):
        _solve("T", 0.5, keep=0.4)
    with pytest.raises(TypeError, match="positional"):
        _solve("T", 0.5, 3, 2)


def _penalty(x, *, method="auto"):
    return (x, method)


def test_deprecated_alias_fixes_the_method():
    old = deprecated_alias(_penalty, "penalty_mc", method="mc")
    assert old.__name__ == "penalty_mc" and "method='mc'" in old.__doc__
    with pytest.warns(DeprecationWarning, match=r"_penalty\(..., method='mc'\)"):
        assert old(2) == (2, "mc")
    with (
        pytest.raises(InvalidParameterError, match="always uses"),
        pytest.warns(DeprecationWarning),
    ):
        old(2, method="exact")


def test_check_method():
    assert check_method("mc") == "mc"
    with pytest.raises(InvalidParameterError, match="'exact', 'mc', 'auto'"):
        check_method("montecarlo")


def test_exact_penalty_is_a_float_that_says_it_is_exact():
    p = Penalty.exact(2.5)
    assert isinstance(p, float) and p == 2.5 and p * 2 == 5.0
    assert p.is_exact and p.method == "exact" and p.stderr == 0.0 and p.n_masks is None
    assert p.interval == (2.5, 2.5) and p.value == 2.5 and type(p.value) is float
    assert json.loads(json.dumps({"p": p})) == {"p": 2.5}
    assert p.to_dict() == {"value": 2.5, "method": "exact"}
    with pytest.raises(InvalidParameterError, match="exact"):
        Penalty(1.0, 0.1, method="exact")


def test_monte_carlo_penalty_interval_is_the_normal_one_without_skewness():
    q = Penalty.monte_carlo(2.0, 0.1, 400)
    lo, hi = q.interval
    # z_0.975 from the inverse of the normal cdf, computed independently
    z = np.sqrt(2.0) * 1.3859038243496775  # erfinv(0.95)
    assert lo == pytest.approx(2.0 - z * 0.1, rel=1e-12, abs=1e-10)
    assert hi == pytest.approx(2.0 + z * 0.1, rel=1e-12, abs=1e-10)
    assert not q.is_exact and q.method == "mc" and q.std == pytest.approx(2.0)
    assert q.zscore(2.2) == pytest.approx(-2.0)


def test_penalty_is_immutable_and_survives_pickle_and_copy():
    q = Penalty.monte_carlo(
        2.0, 0.1, 400, skewness=0.4, variance_reduction="cv", reduction_factor=3.0
    )
    with pytest.raises(AttributeError, match="immutable"):
        q.stderr = 0.0
    for twin in (pickle.loads(pickle.dumps(q)), copy.deepcopy(q), copy.copy(q)):
        assert type(twin) is Penalty and twin == q
        assert (
            twin.stderr,
            twin.n_masks,
            twin.skewness,
            twin.variance_reduction,
            twin.reduction_factor,
        ) == (0.1, 400, 0.4, "cv", 3.0)
    moved = q.replace(value=3.0, stderr=0.2)
    assert moved == 3.0 and moved.stderr == 0.2 and moved.n_masks == 400 and q == 2.0


def test_estimate_is_the_penalty_with_its_old_names_deprecated():
    assert Estimate is Penalty
    e = Estimate(mean=1.0, stderr=0.1, n_samples=100)
    assert e.method == "mc" and e.n_masks == 100
    with pytest.warns(DeprecationWarning, match="value"):
        assert e.mean == 1.0
    with pytest.warns(DeprecationWarning, match="n_masks"):
        assert e.n_samples == 100


@pytest.mark.parametrize("q", [None, 0.5, 0.1, 0.02, 0.001, [0.3, 0.004]])
def test_one_rule_for_the_default_number_of_draws(q):
    n = default_n_masks(q)
    assert n >= DEFAULT_N_MASKS
    if q is not None:
        assert n >= min_draws(q)
        assert n == DEFAULT_N_MASKS or n == min_draws(q)
