"""Tests of regtheory.completion against independent computations.

Independent references used here: enumeration of all 2^d masks of each observation,
dropout predictions simulated with real masks in this file, re-draws of the observed
entries from the product of their marginals, dense double sums over all (i, j), and
scipy.optimize over factorizations of the same matrix.
"""

import itertools

import numpy as np
import pytest
from _completion_entries import random_entries
from scipy import optimize

from regtheory import InvalidParameterError, Penalty, completion

N_SE = 4  # Monte Carlo agreement is required within this many standard errors


def factors(rng, shape, width):
    m, n = shape
    return rng.normal(size=(m, width)), rng.normal(size=(n, width))


def enumerated_objective(U, V, i, j, y, keep):
    """E_r (y - Σ_k r_k/keep U_ik V_jk)² over all 2^d masks r of one observation."""
    total = 0.0
    for r in itertools.product([0, 1], repeat=U.shape[1]):
        r = np.array(r)
        prob = np.prod(np.where(r == 1, keep, 1 - keep))
        total += prob * (y - np.sum(r / keep * U[i] * V[j])) ** 2
    return total


def product_form(U, V, p, q, keep):
    """λ Σ_i Σ_j p_i q_j Σ_k U_ik² V_jk², as a dense double sum."""
    lam = (1 - keep) / keep
    return lam * sum(
        p[i] * q[j] * np.sum(U[i] ** 2 * V[j] ** 2)
        for i in range(U.shape[0])
        for j in range(V.shape[0])
    )


def weighted_nuclear(M, p, q):
    return np.linalg.svd(np.diag(np.sqrt(p)) @ M @ np.diag(np.sqrt(q)), compute_uv=False).sum()


# ----------------------------------------------------------------------------- observations


def test_observations_are_read_only_with_marginals_that_count_the_entries():
    obs = completion.observed([2, 0, 2, 1], [0, 1, 1, 2], [1.0, 2.0, 3.0, 4.0], (4, 3))
    assert obs.shape == (4, 3) and obs.n_observed == 4
    np.testing.assert_array_equal(obs.row_marginals, [0.25, 0.25, 0.5, 0.0])
    np.testing.assert_array_equal(obs.col_marginals, [0.25, 0.5, 0.25])
    assert obs.rows.dtype == np.int64 and obs.values.dtype == np.float64
    for array in (obs.rows, obs.cols, obs.values):
        with pytest.raises(ValueError):
            array[0] = 0
    values = np.array([1.0, 2.0])
    kept = completion.observed([0, 1], [0, 0], values, (2, 1))
    values[0] = 99.0  # the caller's array is copied
    assert kept.values[0] == 1.0


def test_an_empty_row_is_accepted_where_the_marginals_are_not_divided_by():
    rng = np.random.default_rng(0)
    obs = completion.observed([0, 0, 2], [0, 1, 1], [1.0, -1.0, 0.5], (3, 2))  # row 1 empty
    U, V = factors(rng, (3, 2), 2)
    assert float(completion.dropout_penalty(U, V, obs, 0.5)) > 0
    assert completion.fit_loss(U, V, obs) > 0
    p, q = obs.row_marginals, obs.col_marginals
    assert completion.explicit_regularizer(U, V, obs, 0.5, form="product") == pytest.approx(
        product_form(U, V, p, q, 0.5), rel=1e-12
    )


# ----------------------------------------------------------------------------- the penalty


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("keep", [0.3, 0.8])
def test_objective_equals_enumeration_of_all_masks_per_observation(width, keep):
    """fit_loss + dropout_penalty against E over all 2^d masks, each observation alone."""
    rng = np.random.default_rng(10 * width + int(10 * keep))
    shape = (4, 3)
    obs = random_entries(rng, shape, 7)
    U, V = factors(rng, shape, width)
    enumerated = []
    for i, j, y in zip(obs.rows, obs.cols, obs.values):
        one = completion.observed([i], [j], [y], shape)
        exact = enumerated_objective(U, V, i, j, y, keep)
        closed = completion.fit_loss(U, V, one) + completion.dropout_penalty(U, V, one, keep)
        assert abs(closed - exact) <= 1e-12 * max(1.0, exact)
        enumerated.append(exact)
    whole = completion.fit_loss(U, V, obs) + completion.dropout_penalty(U, V, obs, keep)
    assert whole == pytest.approx(np.mean(enumerated), rel=1e-13)


def test_penalty_is_the_observed_form_of_the_explicit_regularizer():
    rng = np.random.default_rng(3)
    obs = random_entries(rng, (6, 5), 14)
    U, V = factors(rng, (6, 5), 3)
    penalty = completion.dropout_penalty(U, V, obs, 0.4, method="exact")
    assert isinstance(penalty, Penalty) and penalty.is_exact
    lam = 0.6 / 0.4
    direct = lam * np.mean([np.sum(U[i] ** 2 * V[j] ** 2) for i, j in zip(obs.rows, obs.cols)])
    assert float(penalty) == pytest.approx(direct, rel=1e-13)
    assert completion.explicit_regularizer(U, V, obs, 0.4) == pytest.approx(direct, rel=1e-13)
    assert float(completion.dropout_penalty(U, V, obs, 0.4, method="auto")) == float(penalty)
    assert float(completion.dropout_penalty(U, V, obs, 1.0)) == 0.0


@pytest.mark.parametrize("seed,keep", [(0, 0.2), (1, 0.5), (2, 0.9)])
def test_exact_penalty_against_monte_carlo_over_real_masks(seed, keep):
    rng = np.random.default_rng(100 + seed)
    obs = random_entries(rng, (7, 5), 16)
    U, V = factors(rng, (7, 5), 4)
    exact = completion.dropout_penalty(U, V, obs, keep)
    est = completion.dropout_penalty(U, V, obs, keep, method="mc", n_masks=4000, rng=seed)
    assert est.method == "mc" and est.n_masks == 4000 and est.stderr > 0
    assert abs(est.zscore(exact)) < N_SE, (exact, est)
    again = completion.dropout_penalty(U, V, obs, keep, method="mc", n_masks=4000, rng=seed)
    assert float(again) == float(est)  # the same rng gives the same estimate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_objective_against_dropout_simulated_here(seed):
    """The dropout objective with real masks drawn in this test, against the closed form."""
    rng = np.random.default_rng(200 + seed)
    keep, shape, width, draws = 0.6, (5, 6), 3, 3000
    obs = random_entries(rng, shape, 12)
    U, V = factors(rng, shape, width)
    masks = rng.random((draws, obs.n_observed, width)) < keep  # one mask per observation
    pred = np.einsum("bnk,nk->bn", masks / keep, U[obs.rows] * V[obs.cols])
    losses = np.mean((obs.values - pred) ** 2, axis=1)  # one objective per draw
    closed = completion.fit_loss(U, V, obs) + completion.dropout_penalty(U, V, obs, keep)
    stderr = losses.std(ddof=1) / np.sqrt(draws)
    assert abs(losses.mean() - closed) < N_SE * stderr


# ----------------------------------------------------------------------------- product form


def test_product_form_is_the_dense_double_sum():
    rng = np.random.default_rng(4)
    obs = random_entries(rng, (6, 4), 11)
    U, V = factors(rng, (6, 4), 3)
    p, q = obs.row_marginals, obs.col_marginals
    got = completion.explicit_regularizer(U, V, obs, 0.3, form="product")
    assert got == pytest.approx(product_form(U, V, p, q, 0.3), rel=1e-12)


def test_product_form_is_the_mean_over_entries_redrawn_from_the_marginals():
    """R_pq = E R_Ω over Ω of N i.i.d. entries from p ⊗ q; on the one Ω it is not R_Ω."""
    rng = np.random.default_rng(5)
    keep, shape, count, redraws = 0.5, (6, 5), 12, 4000
    obs = random_entries(rng, shape, count)
    U, V = factors(rng, shape, 3)
    p, q = obs.row_marginals, obs.col_marginals
    rows = rng.choice(shape[0], size=(redraws, count), p=p)
    cols = rng.choice(shape[1], size=(redraws, count), p=q)
    lam = (1 - keep) / keep
    per_set = lam * np.mean(np.sum(U[rows] ** 2 * V[cols] ** 2, axis=2), axis=1)
    stderr = per_set.std(ddof=1) / np.sqrt(redraws)
    product = completion.explicit_regularizer(U, V, obs, keep, form="product")
    assert abs(per_set.mean() - product) < N_SE * stderr, (per_set.mean(), product, stderr)
    on_omega = completion.explicit_regularizer(U, V, obs, keep, form="observed")
    assert abs(on_omega - product) > 0.05 * product, (on_omega, product)  # not silently equal


# ----------------------------------------------------------------------------- induced


def test_induced_value_is_below_every_factorization_of_the_same_matrix():
    rng = np.random.default_rng(6)
    keep, shape, rank = 0.4, (6, 5), 2
    obs = random_entries(rng, shape, 15)
    U, V = factors(rng, shape, rank)
    M = U @ V.T
    for width in (rank, rank + 2):
        induced = completion.induced_regularizer(M, obs, keep, width)
        for _ in range(200):
            T = rng.normal(size=(width, width))
            X = rng.normal(size=(shape[0], width - rank))
            U2 = np.hstack([U, X]) @ T
            V2 = np.hstack([V, np.zeros((shape[1], width - rank))]) @ np.linalg.inv(T).T
            assert np.allclose(U2 @ V2.T, M)
            value = completion.explicit_regularizer(U2, V2, obs, keep, form="product")
            assert induced <= value * (1 + 1e-12)


@pytest.mark.parametrize("width", [3, 5])
def test_equalize_keeps_the_product_and_attains_the_induced_value(width):
    rng = np.random.default_rng(7 + width)
    keep, shape = 0.7, (7, 6)
    obs = random_entries(rng, shape, 20)
    U = rng.normal(size=(shape[0], width))
    V = rng.normal(size=(shape[1], width))
    V[:, -1] = 0.0  # rank(M) = width - 1 < width: the padded case
    U2, V2 = completion.equalize(U, V, obs)
    assert U2.shape == U.shape and V2.shape == V.shape
    M = U @ V.T
    np.testing.assert_allclose(U2 @ V2.T, M, atol=1e-10 * np.abs(M).max())
    p, q = obs.row_marginals, obs.col_marginals
    lam = (1 - keep) / keep
    expected = lam / width * weighted_nuclear(M, p, q) ** 2  # computed here, not imported
    assert completion.induced_regularizer(M, obs, keep, width) == pytest.approx(expected, rel=1e-12)
    assert product_form(U2, V2, p, q, keep) == pytest.approx(expected, rel=1e-10)
    products = np.sqrt((p @ U2**2) * (q @ V2**2))  # ‖u_k‖_p ‖v_k‖_q, all equal
    np.testing.assert_allclose(products, weighted_nuclear(M, p, q) / width, rtol=1e-9)
    assert product_form(U, V, p, q, keep) > expected  # the random factors were not optimal


@pytest.mark.parametrize(
    "shape,rank,width,keep", [((4, 3), 2, 2, 0.5), ((4, 3), 2, 3, 0.5), ((5, 4), 2, 4, 0.3)]
)
def test_induced_value_is_the_minimum_found_by_scipy(shape, rank, width, keep):
    """Minimise R_pq over factorizations of M with BFGS from random starts.

    Every (U, V) = ([A, X] T, [B, 0] T⁻ᵀ) factors M = A Bᵀ; the family contains an
    optimal factorization (an equalized one, padded with zero columns), so its minimum
    is the induced value, found here without the formula.
    """
    rng = np.random.default_rng(sum(shape) + 10 * width)
    obs = random_entries(rng, shape, 9)
    p, q = obs.row_marginals, obs.col_marginals
    A, B = factors(rng, shape, rank)
    M = A @ B.T
    lam = (1 - keep) / keep
    pad = width - rank
    Bz = np.hstack([B, np.zeros((shape[1], pad))])

    def objective(x):
        T = x[: width * width].reshape(width, width)
        U = np.hstack([A, x[width * width :].reshape(shape[0], pad)]) @ T
        V = Bz @ np.linalg.inv(T).T
        return lam * np.dot(p @ U**2, q @ V**2)

    best = np.inf
    for _ in range(5):
        x0 = np.concatenate(
            [
                (np.eye(width) + 0.5 * rng.normal(size=(width, width))).ravel(),
                rng.normal(size=shape[0] * pad),
            ]
        )
        res = optimize.minimize(objective, x0, method="BFGS", options={"gtol": 1e-10})
        best = min(best, res.fun)
    induced = completion.induced_regularizer(M, obs, keep, width)
    assert best == pytest.approx(induced, rel=1e-6)


# ----------------------------------------------------------------------------- refusals

I32 = np.ones((3, 2))
OBS = completion.observed([0, 1, 2, 2], [0, 1, 0, 1], [1.0, 2.0, 3.0, 4.0], (3, 2))
HOLE = completion.observed([0, 0, 2], [0, 1, 1], [1.0, 2.0, 3.0], (3, 2))  # row 1 empty
HOLE_COL = completion.observed([0, 1, 2], [0, 0, 0], [1.0, 2.0, 3.0], (3, 2))  # column 1

REFUSALS = [
    # (call, words the message must contain: the argument first)
    (lambda: completion.observed([0, 3], [0, 1], [1.0, 2.0], (3, 2)), ["rows", "[0, 3)"]),
    (lambda: completion.observed([0, 1], [0, 2], [1.0, 2.0], (3, 2)), ["cols", "[0, 2)"]),
    (lambda: completion.observed([0, -1], [0, 1], [1.0, 2.0], (3, 2)), ["rows"]),
    (lambda: completion.observed([0.0, 1.0], [0, 1], [1.0, 2.0], (3, 2)), ["rows", "integer"]),
    (lambda: completion.observed([0, 1, 0], [1, 0, 1], [1.0, 2.0, 3.0], (3, 2)), ["twice"]),
    (lambda: completion.observed([0, 1], [0, 1], [1.0, np.nan], (3, 2)), ["values", "finite"]),
    (lambda: completion.observed([0, 1], [0, 1], [1.0, np.inf], (3, 2)), ["values", "finite"]),
    (lambda: completion.observed([0, 1], [0, 1], [1.0, 2.0, 3.0], (3, 2)), ["values", "length"]),
    (lambda: completion.observed([0, 1], [0, 1], [1.0, 2.0], (3, 0)), ["shape"]),
    (lambda: completion.observed([0, 1], [0, 1], [1.0, 2.0], (3,)), ["shape"]),
    (lambda: completion.induced_regularizer(np.eye(3, 2), HOLE, 0.5, 2), ["obs", "row 1"]),
    (lambda: completion.equalize(I32, np.ones((2, 2)), HOLE), ["obs", "empty rows"]),
    (lambda: completion.equalize(I32, np.ones((2, 2)), HOLE_COL), ["obs", "column 1"]),
    (lambda: completion.dropout_penalty(I32, np.ones((2, 2)), OBS, 0.0), ["keep"]),
    (lambda: completion.dropout_penalty(I32, np.ones((2, 2)), OBS, 1.5), ["keep"]),
    (lambda: completion.explicit_regularizer(I32, np.ones((2, 2)), OBS, np.nan), ["keep"]),
    (lambda: completion.induced_regularizer(np.eye(3, 2), OBS, -0.1, 2), ["keep"]),
    (lambda: completion.dropout_penalty(I32, np.ones((2, 3)), OBS, 0.5), ["U", "V", "width"]),
    (lambda: completion.equalize(I32, np.ones((2, 1)), OBS), ["U", "V", "width"]),
    (lambda: completion.fit_loss(np.ones((2, 2)), np.ones((2, 2)), OBS), ["U", "3"]),
    (lambda: completion.fit_loss(I32, np.ones((3, 2)), OBS), ["V", "2"]),
    (lambda: completion.induced_regularizer(np.eye(3, 2), OBS, 0.5, 1), ["width", "rank"]),
    (lambda: completion.induced_regularizer(np.eye(3, 2), OBS, 0.5, 2.0), ["width"]),
    (lambda: completion.induced_regularizer(np.eye(2), OBS, 0.5, 2), ["M", "shape"]),
    (lambda: completion.fit_loss(I32, np.ones((2, 2)), (1, 2)), ["obs", "observed"]),
    (lambda: completion.dropout_penalty(I32, I32[:2], OBS, 0.5, method="x"), ["method"]),
    (lambda: completion.explicit_regularizer(I32, I32[:2], OBS, 0.5, form="x"), ["form"]),
    (
        lambda: completion.dropout_penalty(I32, I32[:2], OBS, 0.5, method="mc", n_masks=10),
        ["n_masks"],
    ),
    (lambda: completion.dropout_penalty(I32, I32[:2], OBS, 0.5, method="mc", rng=-1), ["rng"]),
]


@pytest.mark.parametrize("call,words", REFUSALS, ids=[f"{i:02d}" for i in range(len(REFUSALS))])
def test_bad_input_is_refused_with_the_argument_named(call, words):
    with pytest.raises(InvalidParameterError) as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    for word in words:
        assert word in str(info.value), str(info.value)
