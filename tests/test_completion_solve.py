"""Tests of completion.solve_induced against independent computations.

Independent references used here: the objective F written out in this file (dense
diag(√p) and diag(√q), NumPy's SVD), F at random matrices and at perturbations of the
solution (first-order optimality, whatever the certificate says), the product form of an
equalized factorization (part 1's functions, which never see the solver), a plain
trace-norm problem posed here with cvxpy for uniform sampling, and the two solvers
against each other.
"""

import time

import cvxpy as cp
import numpy as np
import pytest
from _completion_entries import random_entries

from regtheory import InvalidParameterError, completion
from regtheory.completion import _solve
from regtheory.implied import SolverFailedError

TOL = 1e-8  # the default certified gap


def power_law_entries(rng, shape, count, rank=3, noise=0.1, exponent=1.0):
    """A rank-``rank`` truth plus noise on entries drawn with power-law row and column
    popularity (without replacement), every row and column observed at least once."""
    m, n = shape
    pr = rng.permutation(np.arange(1, m + 1.0) ** -exponent)
    pc = rng.permutation(np.arange(1, n + 1.0) ** -exponent)
    keys = np.log(np.outer(pr, pc)).ravel() - np.log(-np.log(rng.random(m * n)))
    flat = set(np.argpartition(-keys, count)[:count].tolist())
    flat |= {i * n + int(rng.integers(n)) for i in range(m)}
    flat |= {int(rng.integers(m)) * n + j for j in range(n)}
    flat = np.array(sorted(flat))
    rows, cols = flat // n, flat % n
    truth = rng.normal(size=(m, rank)) @ rng.normal(size=(rank, n)) / np.sqrt(rank)
    values = truth[rows, cols] + noise * rng.normal(size=flat.size)
    return completion.observed(rows, cols, values, shape)


def objective(M, obs, keep, width):
    """F(M) = (1/N) Σ_t (y_t − M_{i_t j_t})² + (λ/d)‖diag(√p) M diag(√q)‖_*², written out."""
    N = obs.n_observed
    p = np.array([np.sum(obs.rows == i) for i in range(obs.shape[0])]) / N
    q = np.array([np.sum(obs.cols == j) for j in range(obs.shape[1])]) / N
    fit = sum((y - M[i, j]) ** 2 for i, j, y in zip(obs.rows, obs.cols, obs.values)) / N
    weighted = np.diag(np.sqrt(p)) @ M @ np.diag(np.sqrt(q))
    lam = (1 - keep) / keep
    return fit + lam / width * np.linalg.svd(weighted, compute_uv=False).sum() ** 2


# ----------------------------------------------------------------------------- agreement

CASES = [(seed, keep, width) for seed in (0, 1, 2) for keep, width in ((0.5, 4), (0.8, 12))]


@pytest.mark.parametrize("seed,keep,width", CASES)
def test_cvxpy_and_proximal_agree_and_both_certify(seed, keep, width):
    obs = random_entries(np.random.default_rng(seed), (12, 15), 60)
    a = completion.solve_induced(obs, keep, width, method="cvxpy")
    b = completion.solve_induced(obs, keep, width, method="proximal")
    assert a.solver.startswith(("CLARABEL", "SCS")) and b.solver == "proximal"
    assert a.gap <= TOL and b.gap <= TOL
    assert abs(a.objective - b.objective) <= 1e-6 * b.objective
    np.testing.assert_allclose(a.M, b.M, atol=1e-4 * np.abs(b.M).max())
    assert a.rank == b.rank
    for res in (a, b):  # the reported terms are F's, at the reported M
        assert res.objective == pytest.approx(objective(res.M, obs, keep, width), rel=1e-10)
        assert res.objective == pytest.approx(res.fit + res.regularizer, rel=1e-12)


def test_partial_svds_reach_what_dense_svds_reach(monkeypatch):
    # 60 x 80 is below the size where the proximal method leaves dense SVDs; lower it
    obs = power_law_entries(np.random.default_rng(3), (60, 80), 900)
    dense = completion.solve_induced(obs, 0.5, 6, method="proximal")
    monkeypatch.setattr(_solve, "_DENSE_SVD_MAX", 10)
    partial = completion.solve_induced(obs, 0.5, 6, method="proximal")
    assert dense.gap <= TOL and partial.gap <= TOL
    assert partial.objective == pytest.approx(dense.objective, rel=1e-7)
    np.testing.assert_allclose(partial.M, dense.M, atol=1e-4 * np.abs(dense.M).max())


def test_arpack_stands_in_where_scipy_has_no_propack(monkeypatch):
    # older SciPy refuses solver="propack" unless an environment variable enables it
    calls = []

    def svds(*args, solver, **kwargs):
        calls.append(solver)
        if solver == "propack":
            raise ValueError("solver='propack' is opt-in")
        return _svds(*args, solver=solver, **kwargs)

    _svds = _solve.svds
    monkeypatch.setattr(_solve, "svds", svds)
    monkeypatch.setattr(_solve, "_DENSE_SVD_MAX", 10)
    obs = power_law_entries(np.random.default_rng(4), (60, 80), 900)
    res = completion.solve_induced(obs, 0.5, 6, method="proximal")
    assert res.gap <= TOL and "arpack" in calls and calls.count("propack") == 1


@pytest.mark.parametrize("c", [1e-3, 0.1, 1.0, 10.0])
def test_the_proximal_map_of_the_squared_sum_is_the_minimiser_cvxpy_finds(c):
    # min ½‖s − σ‖² + c(Σ s)² over s ≥ 0, which each proximal step solves in closed form
    rng = np.random.default_rng(13)
    for _ in range(5):
        sigma = np.sort(rng.exponential(size=8))[::-1]
        s = cp.Variable(8, nonneg=True)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(s - sigma) / 2 + c * cp.square(cp.sum(s))))
        problem.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
        shrunk = np.pad(_solve._shrink(sigma, c), (0, 8 - _solve._shrink(sigma, c).size))
        value = np.sum((shrunk - sigma) ** 2) / 2 + c * np.sum(shrunk) ** 2
        assert value <= problem.value + 1e-12
        np.testing.assert_allclose(shrunk, s.value, atol=1e-6)


# ----------------------------------------------------------------------------- optimality


@pytest.mark.parametrize("method", ["cvxpy", "proximal"])
def test_no_random_matrix_or_perturbation_does_better(method):
    rng = np.random.default_rng(5)
    obs = random_entries(rng, (12, 15), 60)
    keep, width = 0.5, 4
    res = completion.solve_induced(obs, keep, width, method=method)
    best = objective(res.M, obs, keep, width)
    floor = best * (1 - res.gap) - 1e-12  # what the certificate promises, and rounding
    scale = np.abs(res.M).max()
    off = np.ones(obs.shape, dtype=bool)
    off[obs.rows, obs.cols] = False  # entries that enter F only through the regularizer
    for _ in range(200):
        assert objective(scale * rng.normal(size=obs.shape), obs, keep, width) >= floor
    for eps in (1e-1, 1e-2, 1e-3):
        for support in (None, off, ~off):
            for _ in range(10):
                E = rng.normal(size=obs.shape) * (1.0 if support is None else support)
                E *= eps * scale / np.abs(E).max()
                assert objective(res.M + E, obs, keep, width) >= floor
                assert objective(res.M - E, obs, keep, width) >= floor


@pytest.mark.parametrize("width", [6, 12])
def test_the_convex_problem_is_the_product_form_dropout_objective(width):
    obs = random_entries(np.random.default_rng(6), (12, 15), 60)
    keep = 0.6
    res = completion.solve_induced(obs, keep, width, method="proximal")
    assert 1 <= res.rank <= width  # the premise: width d at least the rank of M*
    induced = completion.induced_regularizer(res.M, obs, keep, width)
    assert res.regularizer == pytest.approx(induced, rel=1e-10)
    # balanced factors of the SVD, padded to width d, then equalized (part 1)
    A, s, Bt = np.linalg.svd(res.M)
    r = res.rank
    U = np.zeros((12, width))
    V = np.zeros((15, width))
    U[:, :r], V[:, :r] = A[:, :r] * np.sqrt(s[:r]), Bt[:r].T * np.sqrt(s[:r])
    U2, V2 = completion.equalize(U, V, obs)
    np.testing.assert_allclose(U2 @ V2.T, res.M, atol=1e-10 * np.abs(res.M).max())
    product = completion.fit_loss(U2, V2, obs) + completion.explicit_regularizer(
        U2, V2, obs, keep, form="product"
    )
    assert product == pytest.approx(res.objective, rel=1e-9)


def uniform_entries(rng, m, n, per_row):
    """Row i observes columns (per_row·i + k) mod n, k < per_row: every row ``per_row``
    entries and, when n divides m·per_row, every column m·per_row/n entries."""
    rows = np.repeat(np.arange(m), per_row)
    cols = (per_row * rows + np.tile(np.arange(per_row), m)) % n
    return completion.observed(rows, cols, rng.normal(size=rows.size), (m, n))


def test_uniform_sampling_reduces_to_the_plain_trace_norm():
    obs = uniform_entries(np.random.default_rng(7), 8, 12, 3)  # 3 per row, 2 per column
    np.testing.assert_allclose(obs.row_marginals, 1 / 8)
    np.testing.assert_allclose(obs.col_marginals, 1 / 12)
    keep, width = 0.5, 3
    lam, (m, n) = (1 - keep) / keep, obs.shape
    res = completion.solve_induced(obs, keep, width)
    nuclear = np.linalg.svd(res.M, compute_uv=False).sum()
    assert res.regularizer == pytest.approx(lam / width * (nuclear / np.sqrt(m * n)) ** 2)
    # the same problem posed here with the plain nuclear norm ‖M‖_*/√(mn)
    M = cp.Variable((m, n))
    fit = cp.sum_squares(M[obs.rows, obs.cols] - obs.values) / obs.n_observed
    plain = cp.Problem(cp.Minimize(fit + lam / (width * m * n) * cp.square(cp.normNuc(M))))
    plain.solve(solver="CLARABEL")
    assert res.objective == pytest.approx(plain.value, rel=1e-6)
    # unique on Ω only: off Ω, a minimiser of rank <= width may replace the solver's
    on = (obs.rows, obs.cols)
    np.testing.assert_allclose(res.M[on], M.value[on], atol=1e-4 * np.abs(res.M).max())


# ----------------------------------------------------------------------------- edge cases


def test_without_dropout_the_data_are_fitted_and_nothing_else():
    obs = random_entries(np.random.default_rng(8), (4, 5), 9)
    res = completion.solve_induced(obs, 1.0, 2)
    expected = np.zeros(obs.shape)
    expected[obs.rows, obs.cols] = obs.values
    np.testing.assert_allclose(res.M, expected, rtol=1e-15, atol=0)  # zero off Ω exactly
    assert res.status == "closed_form" and res.objective < 1e-30 and res.gap <= TOL


def test_zero_data_give_zero():
    obs = completion.observed([0, 1], [1, 0], [0.0, 0.0], (2, 2))
    res = completion.solve_induced(obs, 0.5, 1)
    assert res.status == "closed_form" and not res.M.any() and res.rank == 0


@pytest.mark.parametrize("method", ["cvxpy", "proximal"])
def test_scaling_the_data_scales_the_solution(method):
    obs = random_entries(np.random.default_rng(9), (12, 15), 60)
    big = completion.observed(obs.rows, obs.cols, 1e3 * obs.values, obs.shape)
    a = completion.solve_induced(obs, 0.5, 4, method=method)
    b = completion.solve_induced(big, 0.5, 4, method=method)
    assert b.gap <= TOL and b.objective == pytest.approx(1e6 * a.objective, rel=1e-7)
    np.testing.assert_allclose(b.M, 1e3 * a.M, atol=1e-4 * np.abs(b.M).max())


def test_auto_uses_cvxpy_for_moderate_sizes_and_proximal_above():
    small = random_entries(np.random.default_rng(10), (12, 15), 60)
    assert completion.solve_induced(small, 0.5, 4).solver.startswith("CLARABEL")
    m, n = 60, _solve.CVXPY_MAX_ENTRIES // 60 + 1
    large = random_entries(np.random.default_rng(10), (m, n), 400)
    assert completion.solve_induced(large, 0.5, 4).solver == "proximal"


@pytest.mark.slow
def test_300_by_300_with_10_000_observations_solves_in_seconds():
    obs = power_law_entries(np.random.default_rng(11), (300, 300), 10_000)
    start = time.perf_counter()
    res = completion.solve_induced(obs, 0.5, 10)
    elapsed = time.perf_counter() - start
    assert res.solver == "proximal" and res.status == "optimal"
    assert res.gap <= TOL and res.attempts[-1].gap == res.gap
    assert res.rank < 30 and elapsed < 60.0  # about 4 s alone on two cores
    # first-order optimality at this size too, along random directions
    rng = np.random.default_rng(12)
    best = objective(res.M, obs, 0.5, 10)
    for _ in range(5):
        E = 1e-3 * np.abs(res.M).max() * rng.normal(size=obs.shape)
        assert objective(res.M + E, obs, 0.5, 10) >= best * (1 - res.gap)


# ----------------------------------------------------------------------------- refusals

OBS = completion.observed([0, 0, 1, 2, 2], [0, 1, 1, 0, 2], [1.0, 2.0, 1.0, -1.0, 0.5], (3, 3))
EMPTY_ROW = completion.observed([0, 2, 2], [0, 1, 2], [1.0, 2.0, 3.0], (3, 3))
EMPTY_COL = completion.observed([0, 1, 2], [0, 0, 2], [1.0, 2.0, 3.0], (3, 3))

REFUSALS = [
    (dict(obs=EMPTY_ROW), "`obs` has empty rows: row 1"),
    (dict(obs=EMPTY_COL), "`obs` has empty columns: column 1"),
    (dict(obs=np.eye(3)), "`obs`"),
    (dict(width=0), "`width`"),
    (dict(width=2.5), "`width`"),
    (dict(keep=0.0), "`keep`"),
    (dict(keep=1.5), "`keep`"),
    (dict(method="admm"), "`method`"),
    (dict(tol=0.0), "`tol`"),
    (dict(tol=1.0), "`tol`"),
    (dict(max_iter=0), "`max_iter`"),
    (dict(method="proximal", solver="SCS"), "`solver`"),
    (dict(method="cvxpy", solver="NO_SUCH_SOLVER"), "`solver`"),
]


@pytest.mark.parametrize("bad,words", REFUSALS, ids=[f"{i:02d}" for i in range(len(REFUSALS))])
def test_bad_input_is_refused_with_the_argument_named(bad, words):
    kwargs = {**dict(obs=OBS, keep=0.5, width=2), **bad}
    with pytest.raises(InvalidParameterError, match=words):
        completion.solve_induced(**kwargs)


def test_a_proximal_run_that_does_not_certify_raises_solver_failed():
    with pytest.raises(SolverFailedError, match=r"`max_iter`") as info:
        completion.solve_induced(OBS, 0.5, 2, method="proximal", max_iter=3)
    (attempt,) = info.value.attempts
    assert attempt.solver == "proximal" and attempt.gap > TOL  # computed, and reported


def test_a_ladder_that_does_not_certify_raises_solver_failed():
    # Clarabel's two rungs reach about 1e-10 here, not 1e-13
    with pytest.raises(SolverFailedError, match=r"above `tol` = 1e-13") as info:
        completion.solve_induced(OBS, 0.5, 2, method="cvxpy", solver="CLARABEL", tol=1e-13)
    assert [a.label for a in info.value.attempts] == ["CLARABEL (tight)", "CLARABEL (defaults)"]
    assert all(a.gap > 1e-13 for a in info.value.attempts)
