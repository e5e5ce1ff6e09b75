"""Figure (p), the matrix-completion study: its sampler and its numbers recomputed apart.

The sampler is tested against the distribution it claims (a chi-square test of the first
draw against p ⊗ q) and the split against its contract (disjoint, every row and column
in training). One chosen fit of the quick record is refitted through the public solvers
and scored by hand; the intervals are set against scipy's Student-t interval and the
chosen weights against the validation errors they were chosen from.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from regtheory import completion, training
from regtheory.figures.completion_figures import (
    METHODS,
    SAMPLINGS,
    gumbel_top_k,
    make_problem,
    power_law_marginal,
    split_entries,
)

QUICK_SEED = 2


@pytest.fixture(scope="module")
def quick(quick_record):
    return quick_record("completion_study", QUICK_SEED)["data"]


# ----------------------------------------------------------------------------- sampling


def test_power_law_marginal_is_a_shuffled_power_law():
    p = power_law_marginal(50, 1.0, np.random.default_rng(0))
    assert p.sum() == pytest.approx(1.0, rel=1e-12)
    expected = 1.0 / np.arange(1, 51)
    np.testing.assert_allclose(np.sort(p)[::-1], expected / expected.sum(), rtol=1e-12)
    assert not np.all(np.diff(p) <= 0)  # shuffled: the index order is not the popularity


def test_split_is_disjoint_and_covers_every_row_and_column():
    rng = np.random.default_rng(1)
    p, q = power_law_marginal(40, 1.0, rng), power_law_marginal(30, 1.0, rng)
    train, validation, test = split_entries(p, q, 200, 60, 120, rng)
    assert (train.size, validation.size, test.size) == (200, 60, 120)
    together = np.concatenate([train, validation, test])
    assert np.unique(together).size == together.size
    rows, cols = np.divmod(train, 30)
    assert np.unique(rows).size == 40 and np.unique(cols).size == 30


def test_too_few_training_entries_to_cover_is_refused():
    p = np.full(10, 0.1)
    with pytest.raises(ValueError, match="cannot cover"):
        split_entries(p, p, 5, 1, 1, np.random.default_rng(0))


def test_first_draw_of_the_sampler_follows_p_times_q():
    """Chi-square over 20,000 first draws on a 6 × 5 grid at seed 0; the test rejects at
    p < 0.001 (a correct sampler fails it at one seed in a thousand)."""
    rng = np.random.default_rng(0)
    p, q = power_law_marginal(6, 1.0, rng), power_law_marginal(5, 1.0, rng)
    draws = np.array([gumbel_top_k(p, q, 1, rng)[0] for _ in range(20_000)])
    observed = np.bincount(draws, minlength=30)
    expected = 20_000 * np.outer(p, q).ravel()
    assert expected.min() > 50  # every cell large enough for the chi-square approximation
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_sampler_never_draws_an_excluded_pair():
    rng = np.random.default_rng(2)
    p = q = np.full(4, 0.25)
    drawn = gumbel_top_k(p, q, 12, rng, exclude=np.arange(4))
    assert np.intersect1d(drawn, np.arange(4)).size == 0 and np.unique(drawn).size == 12


def test_power_law_popularity_shows_in_the_training_counts():
    problem = make_problem("power_law", 1600, 0)
    counts = np.bincount(problem.observations.rows, minlength=80)
    popular, rare = np.argsort(problem.p)[-5:], np.argsort(problem.p)[:5]
    assert counts[popular].mean() > 4 * counts[rare].mean()


# ----------------------------------------------------------------------------- structure


def test_quick_record_has_every_method_sampling_and_size(quick):
    assert list(quick["samplings"]) == list(SAMPLINGS)
    for sampling in quick["samplings"].values():
        assert list(sampling["methods"]) == list(METHODS)
        for method in sampling["methods"].values():
            assert [r["n"] for r in method["results"]] == quick["n_observed"]
            for row in method["results"]:
                assert len(row["test_error"]) == quick["seeds"]
                assert all(0 <= c < len(method["grid"]) for c in row["chosen"])
                assert all(e > 0 for e in row["test_error"] + row["all_error"])
        assert [r["n"] for r in sampling["finite"]] == quick["n_observed"]


def test_smoothed_grid_is_every_pair_of_smoothing_and_weight(quick):
    grid = quick["samplings"]["uniform"]["methods"]["smoothed"]["grid"]
    pairs = [(g["smoothing"], g["weight"]) for g in grid]
    assert pairs == [(z, w) for z in quick["smoothings"] for w in quick["weights"]]


# ----------------------------------------------------------------------------- numbers


def _errors_by_hand(problem, M):
    T = problem.truth
    n = T.shape[1]
    rows, cols = np.divmod(problem.test, n)
    scale = np.sqrt((T**2).sum() / T.size)
    return np.sqrt(np.mean((M[rows, cols] - T[rows, cols]) ** 2)) / scale


@pytest.mark.slow
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_a_chosen_convex_fit_refitted_apart_gives_the_recorded_test_error(quick, sampling):
    row = quick["samplings"][sampling]["methods"]["weighted"]["results"][-1]
    weight = quick["samplings"][sampling]["methods"]["weighted"]["grid"][row["chosen"][1]]
    problem = make_problem(sampling, row["n"], QUICK_SEED + 1, shape=tuple(quick["shape"]))
    fit = completion.solve_weighted_trace_norm(
        problem.observations, weight["weight"], smoothing=0.0, method="cvxpy", tol=1e-7
    )
    # cvxpy's solution against the proximal one of the record, to the record's tolerance
    assert _errors_by_hand(problem, fit.M) == pytest.approx(row["test_error"][1], rel=1e-3)


@pytest.mark.slow
def test_a_chosen_dropout_run_retrained_gives_the_recorded_test_error(quick):
    row = quick["samplings"]["power_law"]["methods"]["dropout"]["results"][0]
    keep = quick["keeps"][row["chosen"][0]]
    problem = make_problem("power_law", row["n"], QUICK_SEED, shape=tuple(quick["shape"]))
    t = quick["training"]
    run = training.train_completion(
        problem.observations,
        keep,
        quick["width"],
        steps=t["steps"],
        lr=t["lr"],
        lr_decay=t["lr_decay"],
        init_scale=t["init_scale"],
        rng=QUICK_SEED,
    )
    assert _errors_by_hand(problem, run.M) == pytest.approx(row["test_error"][0], rel=1e-9)


@pytest.mark.slow
def test_intervals_are_students_over_the_seeds(quick):
    for sampling in quick["samplings"].values():
        rows = [r for m in sampling["methods"].values() for r in m["results"]]
        for row in rows + sampling["finite"]:
            for key in [k for k in row if f"{k}_interval" in row]:
                values = np.array(row[key])
                low, high = stats.t.interval(
                    0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values)
                )
                iv = row[f"{key}_interval"]
                assert iv["mean"] == pytest.approx(values.mean(), rel=1e-12)
                assert iv["half_width"] == pytest.approx((high - low) / 2, rel=1e-9, abs=1e-15)


@pytest.mark.slow
def test_the_chosen_weight_has_the_lowest_validation_error(quick):
    for sampling in quick["samplings"].values():
        for method in sampling["methods"].values():
            for row in method["results"]:
                for chosen, scores in zip(row["chosen"], row["validation_error"]):
                    assert scores[chosen] <= min(scores) * (1 + 1e-9)
                    assert all(s > scores[chosen] * (1 + 1e-9) for s in scores[:chosen])


@pytest.mark.slow
def test_finite_panel_differences_from_the_objectives(quick):
    for sampling in quick["samplings"].values():
        for row in sampling["finite"]:
            on, pq = np.array(row["observed_objective"]), np.array(row["induced_objective"])
            np.testing.assert_allclose(row["relative_difference"], (on - pq) / pq, rtol=1e-12)
            assert all(s >= 0 for s in row["start_spread"])


@pytest.mark.slow
def test_finite_panel_refitted_apart(quick):
    """J_Ω at its recorded minimum is no lower than the objective by hand at a fresh fit."""
    row = quick["samplings"]["uniform"]["finite"][-1]
    problem = make_problem("uniform", row["n"], QUICK_SEED, shape=tuple(quick["shape"]))
    obs = problem.observations
    keep, width = quick["finite_keep"], quick["width"]
    pq = completion.solve_induced(obs, keep, width, method="cvxpy", tol=1e-7)
    p, q = obs.row_marginals, obs.col_marginals
    nuclear = np.linalg.norm(np.sqrt(p)[:, None] * pq.M * np.sqrt(q)[None, :], "nuc")
    fit = np.mean((obs.values - pq.M[obs.rows, obs.cols]) ** 2)
    by_hand = fit + (1 - keep) / keep / width * nuclear**2
    assert row["induced_objective"][0] == pytest.approx(by_hand, rel=1e-5)
