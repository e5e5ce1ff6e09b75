"""The problems around the induced one: weighted trace norms, the objective on Ω, training.

Independent references: cvxpy problems posed here (the squared and the unsquared weighted
trace norms with smoothed marginals), objectives and gradients written out in NumPy, central
finite differences, real dropout masks, the product-form objective minimised over factors
of a given width with SciPy, and the certified convex solution.
"""

import cvxpy as cp
import numpy as np
import pytest
from _completion_entries import random_entries
from scipy import optimize

from regtheory import InvalidParameterError, completion, training
from regtheory.completion import _observed

Z_BOUND = 4.0  # Monte Carlo comparisons: within four standard errors


def full_entries(rng, shape, rank=2, noise=0.1):
    """Every entry of a rank-``rank`` matrix plus noise."""
    m, n = shape
    rows, cols = np.divmod(np.arange(m * n), n)
    truth = rng.normal(size=(m, rank)) @ rng.normal(size=(rank, n))
    return completion.observed(rows, cols, truth.ravel() + noise * rng.normal(size=m * n), shape)


def smoothed(obs, zeta):
    m, n = obs.shape
    p = np.bincount(obs.rows, minlength=m) / obs.n_observed
    q = np.bincount(obs.cols, minlength=n) / obs.n_observed
    return (1 - zeta) * p + zeta / m, (1 - zeta) * q + zeta / n


def cvxpy_weighted(obs, weight, zeta, squared=True):
    """min fit + weight·‖diag(√p̃) M diag(√q̃)‖_* (squared or not), posed here."""
    p, q = smoothed(obs, zeta)
    M = cp.Variable(obs.shape)
    fit = cp.sum_squares(M[obs.rows, obs.cols] - obs.values) / obs.n_observed
    norm = cp.normNuc(np.diag(np.sqrt(p)) @ M @ np.diag(np.sqrt(q)))
    problem = cp.Problem(cp.Minimize(fit + weight * (cp.square(norm) if squared else norm)))
    problem.solve(solver="CLARABEL")
    assert problem.status == "optimal"
    return M.value, problem.value


def observed_objective(U, V, obs, keep):
    """J_Ω written out: fit + (λ/N) Σ_Ω Σ_k U_ik² V_jk²."""
    lam = (1 - keep) / keep
    total = 0.0
    for i, j, y in zip(obs.rows, obs.cols, obs.values):
        total += (y - U[i] @ V[j]) ** 2 + lam * np.sum(U[i] ** 2 * V[j] ** 2)
    return total / obs.n_observed


# ------------------------------------------------------------ weighted trace norms


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("zeta", [0.0, 0.3, 1.0])
def test_weighted_trace_norm_matches_a_cvxpy_problem_posed_here(seed, zeta):
    obs = random_entries(np.random.default_rng(seed), (8, 9), 30)
    M_ref, value = cvxpy_weighted(obs, 0.4, zeta)
    sol = completion.solve_weighted_trace_norm(obs, 0.4, smoothing=zeta, method="proximal")
    assert sol.gap <= 1e-8
    assert abs(sol.objective - value) <= 1e-6 * value
    # the minimiser is unique on Ω (the fit is strictly convex there), not always off it
    on = (obs.rows, obs.cols)
    assert np.linalg.norm(sol.M[on] - M_ref[on]) <= 1e-3 * np.linalg.norm(M_ref[on])


def test_weighted_trace_norm_at_zero_smoothing_is_the_induced_problem():
    obs = random_entries(np.random.default_rng(3), (10, 7), 35)
    keep, width = 0.6, 3
    a = completion.solve_induced(obs, keep, width, method="proximal")
    b = completion.solve_weighted_trace_norm(obs, (1 - keep) / keep / width, method="proximal")
    assert abs(a.objective - b.objective) <= 1e-8 * a.objective
    assert np.linalg.norm(a.M - b.M) <= 1e-4 * np.linalg.norm(a.M)


@pytest.mark.parametrize("zeta", [0.0, 0.5, 1.0])
def test_the_unsquared_norm_has_the_same_minimiser_at_the_matching_weight(zeta):
    # KKT: at the squared solution M*, ν = 2μ‖P̃M*Q̃‖_* gives the unsquared problem M*
    obs = random_entries(np.random.default_rng(4), (7, 8), 28)
    mu = 0.3
    sol = completion.solve_weighted_trace_norm(obs, mu, smoothing=zeta, method="proximal")
    p, q = smoothed(obs, zeta)
    norm = np.linalg.svd(np.sqrt(p)[:, None] * sol.M * np.sqrt(q), compute_uv=False).sum()
    M_ref, _ = cvxpy_weighted(obs, 2 * mu * norm, zeta, squared=False)
    on = (obs.rows, obs.cols)
    assert np.linalg.norm(sol.M[on] - M_ref[on]) <= 1e-3 * np.linalg.norm(M_ref[on])


def test_smoothing_accepts_an_empty_row_and_leaves_it_at_zero():
    obs = completion.observed([0, 0, 1], [0, 1, 1], [1.0, 2.0, 1.0], (3, 3))
    sol = completion.solve_weighted_trace_norm(obs, 0.1, smoothing=0.3)
    assert sol.gap <= 1e-8
    assert np.all(np.abs(sol.M[2]) <= 1e-8) and np.all(np.abs(sol.M[:, 2]) <= 1e-8)
    with pytest.raises(InvalidParameterError, match="empty rows"):
        completion.solve_weighted_trace_norm(obs, 0.1)


def test_the_least_rank_search_refuses_large_matrices_and_non_booleans():
    obs = random_entries(np.random.default_rng(0), (60, 50), 200)
    with pytest.raises(InvalidParameterError, match="least_rank=True` needs m·n"):
        completion.solve_induced(obs, 0.5, 2, least_rank=True)
    with pytest.raises(InvalidParameterError, match="`least_rank` must be True or False"):
        completion.solve_induced(obs, 0.5, 2, least_rank=1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(weight=-1.0), "`weight` must be non-negative"),
        (dict(weight=float("inf")), "`weight` must be finite"),
        (dict(weight=float("nan")), "`weight` must be non-negative"),
        (dict(weight=0.1, smoothing=1.5), r"`smoothing` must be in \[0, 1\]"),
        (dict(weight=0.1, smoothing=-0.1), "`smoothing` must be non-negative"),
    ],
)
def test_weighted_trace_norm_refuses_bad_weights(kwargs, match):
    obs = random_entries(np.random.default_rng(0), (4, 4), 10)
    with pytest.raises(InvalidParameterError, match=match):
        completion.solve_weighted_trace_norm(obs, **kwargs)


# ------------------------------------------------------------ widths below the rank


def product_form_minimum(obs, keep, width, starts=6, seed=0):
    """min over factors of width d of fit + λ Σ_k ‖u_k‖_p²‖v_k‖_q², by L-BFGS here."""
    (m, n), N = obs.shape, obs.n_observed
    p = np.bincount(obs.rows, minlength=m) / N
    q = np.bincount(obs.cols, minlength=n) / N
    lam = (1 - keep) / keep

    def f(z):
        U, V = z[: m * width].reshape(m, width), z[m * width :].reshape(n, width)
        E = np.sum(U[obs.rows] * V[obs.cols], axis=1) - obs.values
        a, b = p @ U**2, q @ V**2
        gU, gV = np.zeros_like(U), np.zeros_like(V)
        np.add.at(gU, obs.rows, 2 / N * E[:, None] * V[obs.cols])
        np.add.at(gV, obs.cols, 2 / N * E[:, None] * U[obs.rows])
        gU += 2 * lam * p[:, None] * U * b
        gV += 2 * lam * q[:, None] * V * a
        return np.mean(E**2) + lam * a @ b, np.concatenate([gU.ravel(), gV.ravel()])

    rng = np.random.default_rng(seed)
    ends = [
        optimize.minimize(
            f,
            rng.normal(size=(m + n) * width),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 20_000, "gtol": 1e-11, "ftol": 1e-15},
        ).fun
        for _ in range(starts)
    ]
    return min(ends)


def test_a_width_below_a_unique_minimisers_rank_is_not_attained():
    obs = random_entries(np.random.default_rng(1), (10, 8), 50)
    keep, width = 0.7, 1
    sol = completion.solve_induced(obs, keep, width, method="cvxpy", least_rank=True)
    assert sol.rank > width and sol.attained is False
    # the convex value is a strict lower bound of the width-1 product-form objective
    assert product_form_minimum(obs, keep, width) >= sol.objective * (1 + 1e-4)


def test_a_lower_rank_minimiser_is_found_when_the_face_holds_one():
    # diagonal entries only: every PSD completion of the diagonal has the same nuclear
    # norm, so the rank-2 minimiser of an interior-point solver has rank-1 companions
    obs = completion.observed([0, 1], [0, 1], [1.0, 2.0], (2, 2))
    keep, width = 0.5, 1
    plain = completion.solve_induced(obs, keep, width, method="cvxpy")
    assert plain.rank == 2 and plain.attained is False  # the interior-point minimiser
    sol = completion.solve_induced(obs, keep, width, method="cvxpy", least_rank=True)
    assert sol.attained is True and sol.rank == 1 and sol.gap <= 1e-8
    assert abs(sol.objective - plain.objective) <= 1e-7 * plain.objective
    # a width-1 factorization attains the convex value (the product form, written out)
    U, s, Vt = np.linalg.svd(sol.M)
    U1, V1 = completion.equalize(U[:, :1] * np.sqrt(s[0]), Vt[:1].T * np.sqrt(s[0]), obs)
    value = completion.fit_loss(U1, V1, obs) + completion.explicit_regularizer(
        U1, V1, obs, keep, form="product"
    )
    assert abs(value - sol.objective) <= 1e-7 * sol.objective
    assert product_form_minimum(obs, keep, width) >= sol.objective * (1 - 1e-7)


# ------------------------------------------------------------ the objective on Ω


@pytest.mark.parametrize("seed", [0, 1])
def test_on_every_entry_the_objective_on_omega_is_the_induced_problem(seed):
    obs = full_entries(np.random.default_rng(seed), (6, 5))
    keep, width = 0.6, 4
    a = completion.solve_observed(obs, keep, width, starts=3, rng=seed)
    b = completion.solve_induced(obs, keep, width)
    assert abs(a.objective - b.objective) <= 1e-7 * b.objective
    assert np.linalg.norm(a.M - b.M) <= 1e-4 * np.linalg.norm(b.M)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solve_observed_reports_the_objective_on_omega(seed):
    obs = random_entries(np.random.default_rng(seed), (9, 7), 30)
    keep, width = 0.5, 3
    sol = completion.solve_observed(obs, keep, width, starts=2, rng=seed, max_iter=500)
    assert abs(sol.objective - observed_objective(sol.U, sol.V, obs, keep)) <= 1e-10 * (
        sol.objective
    )
    assert abs(sol.fit - completion.fit_loss(sol.U, sol.V, obs)) <= 1e-12 + 1e-10 * sol.fit
    # the regularizer against real masks
    mc = completion.dropout_penalty(sol.U, sol.V, obs, keep, method="mc", n_masks=20_000, rng=9)
    assert abs(mc - sol.regularizer) <= Z_BOUND * mc.stderr
    # no start ended below the best; none below the ridge bound of THEORY §9
    assert np.min(sol.start_objectives) >= sol.objective * (1 - 1e-9)
    lam = (1 - keep) / keep
    ridge = np.mean(obs.values**2) * (lam / width) / (1 + lam / width)
    assert sol.objective >= ridge


def test_the_gradient_of_the_objective_on_omega_matches_finite_differences():
    rng = np.random.default_rng(5)
    obs = random_entries(rng, (5, 4), 12)
    width, lam = 3, 0.7
    f = _observed._objective(obs, obs.values, lam, width)
    z = rng.normal(size=(5 + 4) * width)
    _, grad, _ = f(z)
    h = 1e-6
    numeric = np.array([(f(z + h * e)[0] - f(z - h * e)[0]) / (2 * h) for e in np.eye(z.size)])
    assert np.max(np.abs(grad - numeric)) <= 1e-7 * max(1.0, np.max(np.abs(grad)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_objective_on_omega_is_bounded_as_theory_says(seed):
    rng = np.random.default_rng(seed)
    obs = random_entries(rng, (8, 6), 20)
    keep, width = 0.5, 3
    lam = (1 - keep) / keep
    N = obs.n_observed
    W = np.zeros(obs.shape)
    W[obs.rows, obs.cols] = 1 / N
    p, q = W.sum(axis=1), W.sum(axis=0)
    spectral = np.linalg.norm(W - np.outer(p, q), 2)
    for _ in range(50):
        U, V = rng.normal(size=(8, width)), rng.normal(size=(6, width))
        M = U @ V.T
        r_omega = completion.explicit_regularizer(U, V, obs, keep, form="observed")
        r_pq = completion.explicit_regularizer(U, V, obs, keep, form="product")
        # below: (λ/(dN)) Σ_Ω M²
        assert r_omega >= lam / (width * N) * np.sum(M[obs.rows, obs.cols] ** 2) * (1 - 1e-12)
        # the difference from the product form: at most λ‖W − pqᵀ‖₂ Σ_k ‖u_k‖₄²‖v_k‖₄²
        fourth = np.sqrt(np.sum(U**4, axis=0) * np.sum(V**4, axis=0)).sum()
        assert abs(r_omega - r_pq) <= lam * spectral * fourth * (1 + 1e-12)
        # each unit's term depends on u_k v_kᵀ only
        c = rng.uniform(0.2, 5.0, size=width)
        assert np.isclose(
            completion.explicit_regularizer(U * c, V / c, obs, keep), r_omega, rtol=1e-12
        )


# ------------------------------------------------------------ dropout training


def test_the_training_gradient_matches_finite_differences_with_the_same_masks():
    rng = np.random.default_rng(6)
    obs = random_entries(rng, (5, 4), 12)
    problem = training._CompletionProblem(obs, 0.6, 3)
    U, V = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))

    def loss(U, V):
        return problem.step((U, V), None, np.random.default_rng(11))[0]

    _, (gU, gV) = problem.step((U, V), None, np.random.default_rng(11))
    h = 1e-6
    for G, X in ((gU, U), (gV, V)):
        for idx in np.ndindex(X.shape):
            E = np.zeros_like(X)
            E[idx] = h
            if X is U:
                numeric = (loss(U + E, V) - loss(U - E, V)) / (2 * h)
            else:
                numeric = (loss(U, V + E) - loss(U, V - E)) / (2 * h)
            assert abs(G[idx] - numeric) <= 1e-6 * max(1.0, abs(numeric))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_sampled_loss_is_unbiased_for_the_recorded_objective(seed):
    rng = np.random.default_rng(seed)
    obs = random_entries(rng, (6, 5), 15)
    keep = 0.5
    problem = training._CompletionProblem(obs, keep, 4)
    U, V = rng.normal(size=(6, 4)), rng.normal(size=(5, 4))
    draws = np.array([problem.step((U, V), None, rng)[0] for _ in range(4000)])
    expected = problem.expected_objective((U, V))
    assert abs(draws.mean() - expected) <= Z_BOUND * draws.std(ddof=1) / np.sqrt(draws.size)
    assert abs(expected - observed_objective(U, V, obs, keep)) <= 1e-10 * expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dropout_training_on_every_entry_reaches_the_certified_optimum(seed):
    obs = full_entries(np.random.default_rng(seed), (8, 6))
    keep, width = 0.7, 4
    best = completion.solve_induced(obs, keep, width)
    res = training.train_completion(
        obs, keep, width, steps=20_000, lr=0.2, lr_decay=2_000, rng=seed, record_every=1000
    )
    # the certified minimum is at least objective·(1 − gap); training cannot go below it
    floor = best.objective * (1 - best.gap)
    assert res.loss[-1] >= floor
    # measured 0.8e-3 to 2.3e-3 over seeds 0-2: SGD noise at the last step size
    assert (res.loss[-1] - best.objective) / best.objective <= 1e-2
    assert np.linalg.norm(res.M - best.M) <= 0.05 * np.linalg.norm(best.M)


def test_training_is_reproducible_and_refuses_bad_input():
    obs = random_entries(np.random.default_rng(0), (5, 4), 12)
    a = training.train_completion(obs, 0.5, 3, steps=50, lr=0.1, rng=3, batch_size=5)
    b = training.train_completion(obs, 0.5, 3, steps=50, lr=0.1, rng=3, batch_size=5)
    assert np.array_equal(a.U, b.U) and np.array_equal(a.loss, b.loss) and a.seed == 3
    with pytest.raises(InvalidParameterError, match="batch_size"):
        training.train_completion(obs, 0.5, 3, steps=5, lr=0.1, batch_size=13)
    with pytest.raises(InvalidParameterError, match="keep"):
        training.train_completion(obs, 1.5, 3, steps=5, lr=0.1)
    with pytest.raises(InvalidParameterError, match="Observations"):
        training.train_completion(np.zeros((3, 3)), 0.5, 3, steps=5, lr=0.1)
    empty = completion.observed([0, 1], [0, 0], [1.0, 2.0], (2, 2))
    with pytest.raises(InvalidParameterError, match="empty columns"):
        training.train_completion(empty, 0.5, 3, steps=5, lr=0.1)
    with pytest.raises(FloatingPointError, match="lr"):
        training.train_completion(obs, 0.5, 3, steps=200, lr=1e3)


@pytest.mark.slow
def test_on_a_sparse_set_the_infimum_is_approached_along_growing_factors():
    # the instance THEORY §9 quotes: 30 entries of a 9 × 7 matrix, d = 3, θ = 0.5
    obs = random_entries(np.random.default_rng(1), (9, 7), 30)
    keep, width = 0.5, 3
    short = completion.solve_observed(obs, keep, width, starts=1, rng=1, max_iter=500)
    long = completion.solve_observed(obs, keep, width, starts=1, rng=1, max_iter=5000)
    convex = completion.solve_induced(obs, keep, width)
    lam = (1 - keep) / keep
    ridge = np.mean(obs.values**2) * (lam / width) / (1 + lam / width)
    assert ridge < long.objective <= short.objective < convex.objective * (1 - 1e-2)
    assert np.abs(long.U).max() > 1.5 * np.abs(short.U).max()
    # settled: the last 4,500 iterations moved J by less than 1e-3 of itself
    assert short.objective - long.objective <= 1e-3 * long.objective
