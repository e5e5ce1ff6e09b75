"""Tests for regtheory.training: real dropout SGD on the factored FC network.

Every check is against an independent computation: the closed-form optimum (3)
of THEORY §1, ordinary least squares, central finite differences, Monte Carlo
over real masks, or norms computed here with NumPy.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from regtheory import fc
from regtheory.training import (
    FCTrainingResult,
    _explicit_objective,
    _loss_and_grad,
    train_explicit_fc,
    train_fc,
)

N, D, WIDTH = 200, 8, 12
SPECTRUM = np.array([4.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.25, 0.1])

# Schedule for the convergence tests, found by a sweep over 10 training seeds per
# keep (worst relative error 0.5 %, worst spread 1.5 %, against 5 % asserted):
# lr 0.05 is 4x below the step at which keep = 0.5 diverges on this problem (0.2);
# the 1/t decay with tau = 100 steps shrinks it to 1.7e-4 by step 30000, which
# averages out the mask and minibatch noise (faster decay, tau = 50, stalls the
# slow equalizing rotations at keep = 0.8; slower, tau >= 500, leaves 2-4 % noise).
SCHEDULE = {"steps": 30_000, "lr": 0.05, "lr_decay": 100.0, "batch_size": 100}


def _white_problem(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """X with XᵀX/n = I exactly, Y = X Tᵀ + noise, T with a spread of singular values."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((N, D))
    eigval, eigvec = np.linalg.eigh(G.T @ G / N)
    X = G @ (eigvec / np.sqrt(eigval)) @ eigvec.T
    W1, _ = np.linalg.qr(rng.standard_normal((D, D)))
    W2, _ = np.linalg.qr(rng.standard_normal((D, D)))
    T = (W1 * SPECTRUM) @ W2.T
    Y = X @ T.T + 0.1 * rng.standard_normal((N, D))
    return X, Y


@pytest.fixture(scope="module")
def problem():
    X, Y = _white_problem()
    np.testing.assert_allclose(X.T @ X / N, np.eye(D), atol=1e-12)
    return X, Y


def _dropout_objective_convex(M, T, yy, keep, width):
    """E‖y − Mx‖² + (λ/w)‖M‖_*² for white x: the convex problem whose minimiser is (3)."""
    lam = (1 - keep) / keep
    nuc = np.linalg.svd(M, compute_uv=False).sum()
    return yy - 2 * np.sum(M * T) + np.sum(M * M) + lam / width * nuc**2


@pytest.mark.slow
@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_reaches_global_optimum_and_equalizes(problem, keep):
    """Cavazza et al. (AISTATS 2018) / Mianjy et al. (ICML 2018), scaled down."""
    X, Y = problem
    T = Y.T @ X / N
    M_star = fc.global_optimum(T, keep, WIDTH)
    rank = np.linalg.matrix_rank(M_star, tol=1e-8)
    assert rank < D < WIDTH  # dropout thresholds singular values; width exceeds the rank

    res = train_fc(X, Y, keep, WIDTH, rng=0, **SCHEDULE)

    rel_err = np.linalg.norm(res.final_map - M_star) / np.linalg.norm(M_star)
    assert rel_err <= 0.05, rel_err
    # Products computed here (C = I): ‖u_i‖·‖v_i‖.
    prod = np.linalg.norm(res.U, axis=0) * np.linalg.norm(res.V, axis=0)
    assert prod.max() - prod.min() <= 0.05 * prod.mean(), (prod.max() - prod.min()) / prod.mean()
    # Equalized units share ‖M*‖_*/w (THEORY §1, formula (2)).
    target = np.linalg.svd(M_star, compute_uv=False).sum() / WIDTH
    np.testing.assert_allclose(prod.mean(), target, rtol=0.05)
    # The expected objective cannot go below the convex problem's optimum and ends near it.
    yy = np.sum(Y * Y) / N
    f_star = _dropout_objective_convex(M_star, T, yy, keep, WIDTH)
    assert res.loss[-1] >= f_star - 1e-9
    assert res.loss[-1] <= f_star * (1 + 1e-3)
    assert res.loss[-1] < res.loss[0]


@pytest.mark.slow
def test_no_dropout_reaches_least_squares(problem):
    """keep = 1: no penalty, the map converges to the least-squares solution."""
    X, Y = problem
    ols = np.linalg.lstsq(X, Y, rcond=None)[0].T
    res = train_fc(X, Y, 1.0, WIDTH, rng=0, **SCHEDULE)
    assert np.linalg.norm(res.final_map - ols) <= 1e-2 * np.linalg.norm(ols)


def test_gradient_matches_central_differences():
    rng = np.random.default_rng(7)
    d_in, d_out, w, b = 5, 3, 4, 6
    U = rng.standard_normal((d_out, w))
    V = rng.standard_normal((d_in, w))
    X = rng.standard_normal((b, d_in))
    Y = rng.standard_normal((b, d_out))
    masks = (rng.random((b, w)) < 0.6) / 0.6

    def sampled_loss(U, V):
        # Written out sample by sample, independently of the vectorised implementation.
        return np.mean([np.sum((Y[k] - U @ np.diag(masks[k]) @ V.T @ X[k]) ** 2) for k in range(b)])

    loss, gU, gV = _loss_and_grad(U, V, X, Y, masks)
    np.testing.assert_allclose(loss, sampled_loss(U, V), rtol=1e-12)
    h = 1e-6
    for A, grad, pack in ((U, gU, lambda A: (A, V)), (V, gV, lambda A: (U, A))):
        numeric = np.zeros_like(A)
        for idx in np.ndindex(A.shape):
            E = np.zeros_like(A)
            E[idx] = h
            numeric[idx] = (sampled_loss(*pack(A + E)) - sampled_loss(*pack(A - E))) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def short_run(problem):
    X, Y = problem
    return train_fc(X, Y, 0.5, WIDTH, steps=500, lr=0.05, rng=3, batch_size=32, record_every=50)


def _fields(res: FCTrainingResult):
    return [getattr(res, f.name) for f in dataclasses.fields(res)]


def test_same_seed_same_result(problem, short_run):
    X, Y = problem
    again = train_fc(X, Y, 0.5, WIDTH, steps=500, lr=0.05, rng=3, batch_size=32, record_every=50)
    from_generator = train_fc(
        X,
        Y,
        0.5,
        WIDTH,
        steps=500,
        lr=0.05,
        rng=np.random.default_rng(3),
        batch_size=32,
        record_every=50,
    )
    for a, b, c in zip(_fields(short_run), _fields(again), _fields(from_generator)):
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b) and np.array_equal(a, c)
    assert again.seed == 3 and from_generator.seed is None


def test_different_seed_different_result(problem, short_run):
    X, Y = problem
    other = train_fc(X, Y, 0.5, WIDTH, steps=500, lr=0.05, rng=4, batch_size=32, record_every=50)
    assert not np.array_equal(other.U, short_run.U)
    assert not np.array_equal(other.loss, short_run.loss)


def test_history_layout_and_settings(short_run):
    res = short_run
    np.testing.assert_array_equal(res.steps, np.arange(0, 501, 50))
    n_rec = res.steps.size
    assert res.loss.shape == (n_rec,)
    assert res.maps.shape == (n_rec, D, D)
    assert res.products.shape == (n_rec, WIDTH)
    np.testing.assert_allclose(res.maps[-1], res.U @ res.V.T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        res.products[-1],
        np.linalg.norm(res.U, axis=0) * np.linalg.norm(res.V, axis=0),
        rtol=1e-10,
    )
    assert (res.keep, res.width, res.n_steps, res.lr, res.batch_size, res.record_every) == (
        0.5,
        WIDTH,
        500,
        0.05,
        32,
        50,
    )
    assert res.lr_decay is None and res.init_scale == 0.1 and res.seed == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.U = None
    with pytest.raises(ValueError):
        res.loss[0] = 0.0


def test_recorded_loss_is_the_expected_dropout_loss(problem, short_run):
    """Monte Carlo over real masks, one per sample, on the full data — no formula (1)."""
    X, Y = problem
    U, V = short_run.U, short_run.V
    rng = np.random.default_rng(11)
    keep, reps = 0.5, 2000
    H = X @ V
    draws = np.empty(reps)
    for j in range(reps):
        m = (rng.random((N, WIDTH)) < keep) / keep
        draws[j] = np.sum((Y - (H * m) @ U.T) ** 2) / N
    stderr = draws.std(ddof=1) / np.sqrt(reps)
    assert abs(draws.mean() - short_run.loss[-1]) <= 4 * stderr


def test_record_every_default_and_final_step_recorded(problem):
    X, Y = problem
    res = train_fc(X, Y, 0.9, 3, steps=7, lr=0.01, rng=0, record_every=3)
    np.testing.assert_array_equal(res.steps, [0, 3, 6, 7])
    res = train_fc(X, Y, 0.9, 3, steps=250, lr=0.01, rng=0)
    assert res.record_every == 3 and res.steps[-1] == 250 and res.batch_size == N


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"X": np.ones(5)}, ValueError, "`X`"),
        ({"X": [[np.nan] * D] * N}, ValueError, "`X`"),
        ({"Y": np.ones((N - 1, D))}, ValueError, "same number of rows"),
        ({"Y": "abc"}, TypeError, "`Y`"),
        ({"width": 0}, ValueError, "`width`"),
        ({"width": 2.5}, TypeError, "`width`"),
        ({"keep": 0.0}, ValueError, "`keep`"),
        ({"keep": 1.5}, ValueError, "`keep`"),
        ({"keep": "0.5"}, TypeError, "`keep`"),
        ({"steps": 0}, ValueError, "`steps`"),
        ({"steps": 10.0}, TypeError, "`steps`"),
        ({"lr": 0.0}, ValueError, "`lr`"),
        ({"lr": -0.1}, ValueError, "`lr`"),
        ({"lr": float("nan")}, ValueError, "`lr`"),
        ({"lr": float("inf")}, ValueError, "`lr`"),
        ({"lr": "fast"}, TypeError, "`lr`"),
        ({"rng": -1}, ValueError, "`rng`"),
        ({"rng": "x"}, TypeError, "`rng`"),
        ({"batch_size": 0}, ValueError, "`batch_size`"),
        ({"batch_size": N + 1}, ValueError, r"`batch_size` must be in \[1, n\]"),
        ({"init_scale": 0.0}, ValueError, "`init_scale`"),
        ({"lr_decay": -1.0}, ValueError, "`lr_decay`"),
        ({"record_every": 0}, ValueError, "`record_every`"),
    ],
)
def test_bad_inputs_name_the_argument(problem, kwargs, exc, match):
    X, Y = problem
    args = {"X": X, "Y": Y, "width": WIDTH, "keep": 0.5, "steps": 10, "lr": 0.01, "rng": 0}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        train_fc(**args)


@pytest.mark.parametrize("lr", [0.5, 1e3])
def test_divergence_raises_floating_point_error(problem, lr):
    X, Y = problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning leaks out either
        with pytest.raises(FloatingPointError, match="`lr`.*too large"):
            train_fc(X, Y, 0.5, WIDTH, steps=5000, lr=lr, rng=0, batch_size=32)


@pytest.mark.slow
def test_block_dropout_training_reaches_the_block_implied_problem():
    """DropBlock on the FC layer (groups of 2 units) trains to the k-support solution, which
    is exact on this instance (tests/test_implied.py checks the factored minimum there)."""
    from regtheory import implied
    from regtheory.data import linear_teacher

    task = linear_teacher(300, [4.0, 3.0, 2.0, 1.0, 0.5], d_in=6, d_out=6, noise=0.1, rng=3)
    keep, width, k = 0.5, 8, 2
    run = train_fc(
        task.X,
        task.Y,
        keep,
        width,
        steps=8000,
        lr=0.02,
        rng=4,
        lr_decay=1000.0,
        init_scale=0.5,
        block_size=k,
    )
    target = implied.solve_fc_block(task.T, keep, width, k)
    err = np.linalg.norm(run.final_map - target.M) / np.linalg.norm(target.M)
    assert err < 0.05, err
    assert run.block_size == 2
    # the recorded loss is the block objective: its end is close to the convex optimum value
    resid = task.Y - task.X @ target.M.T
    optimum = np.mean(np.sum(resid**2, axis=1)) + fc.block_induced_regularizer(
        target.M, keep, width, k
    )
    assert run.loss[-1] >= optimum * (1 - 1e-9)
    assert run.loss[-1] == pytest.approx(optimum, rel=0.01)
    with pytest.raises(ValueError, match="block_size"):
        train_fc(task.X, task.Y, keep, 7, steps=1, lr=0.01, rng=0, block_size=2)


def test_old_argument_order_and_seed_still_work_and_warn(problem, short_run):
    X, Y = problem
    settings = {"batch_size": 32, "record_every": 50}
    with pytest.warns(DeprecationWarning, match=r"train_fc\(X, Y, keep, width, steps=..."):
        old = train_fc(X, Y, WIDTH, 0.5, 500, 0.05, 3, **settings)
    np.testing.assert_array_equal(old.U, short_run.U)
    with (
        pytest.warns(DeprecationWarning, match="in this order"),
        pytest.warns(DeprecationWarning, match="pass rng="),
    ):
        old_named = train_fc(X, Y, WIDTH, 0.5, steps=500, lr=0.05, seed=3, **settings)
    np.testing.assert_array_equal(old_named.V, short_run.V)
    # keep and width passed by name read the same in both orders, with no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = train_fc(X, Y, width=WIDTH, keep=0.5, steps=500, lr=0.05, rng=3, **settings)
    np.testing.assert_array_equal(named.U, short_run.U)
    with pytest.raises(TypeError, match="positional"):
        train_fc(X, Y, WIDTH, 0.5, 500, 0.05, 3, 32)
    # a call that cannot be in the former order (it does not start with a width) is
    # checked in the new one: the bad width is named, with no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="`width`"):
            train_fc(X, Y, 0.5, 4.5, steps=1, lr=0.01)


# ------------------------------------------- gradient descent on the closed form (issue 27)

KEEP_GD = 0.5


def _correlated_problem(seed: int = 3, n: int = 300, d_in: int = 6, d_out: int = 4):
    """Inputs with a non-isotropic second moment (condition number 24), Y = X Aᵀ + noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_in)) @ (np.eye(d_in) + 0.3 * rng.standard_normal((d_in, d_in)))
    Y = X @ rng.standard_normal((d_out, d_in)).T + 0.3 * rng.standard_normal((n, d_out))
    return X, Y


def _optimum_value(X, Y, keep, width):
    """The dropout objective at the optimal map, computed here: the fit of M* on the data
    plus the induced regularizer (λ/w)‖M* C^{1/2}‖_*², C^{1/2} by an eigendecomposition."""
    n = X.shape[0]
    M = fc.global_optimum(Y.T @ X / n, keep, width, cov=X.T @ X / n)
    eigval, eigvec = np.linalg.eigh(X.T @ X / n)
    root = (eigvec * np.sqrt(eigval)) @ eigvec.T
    fit = np.mean(np.sum((Y - X @ M.T) ** 2, axis=1))
    lam = (1 - keep) / keep
    return M, fit + lam / width * np.linalg.svd(M @ root, compute_uv=False).sum() ** 2


def _step_size(X, Y, keep):
    """1/(4(1+λ)‖C‖₂‖TC^{-1/2}‖₂): a curvature scale of the objective near its optimum."""
    n = X.shape[0]
    eigval, eigvec = np.linalg.eigh(X.T @ X / n)
    inv_root = (eigvec / np.sqrt(eigval)) @ eigvec.T
    lam = (1 - keep) / keep
    return 1.0 / (4 * (1 + lam) * eigval.max() * np.linalg.norm(Y.T @ X / n @ inv_root, 2))


def _moments(X, Y):
    n = X.shape[0]
    return np.sum(Y * Y) / n, Y.T @ X / n, X.T @ X / n


def test_explicit_objective_is_the_loss_plus_the_fc_penalty():
    X, Y = _correlated_problem()
    rng = np.random.default_rng(0)
    for keep, width in [(0.5, 3), (0.8, 5), (1.0, 2)]:
        U = rng.standard_normal((Y.shape[1], width))
        V = rng.standard_normal((X.shape[1], width))
        lam = (1 - keep) / keep
        value, _, _ = _explicit_objective(U, V, lam, *_moments(X, Y))
        fit = np.mean(np.sum((Y - X @ V @ U.T) ** 2, axis=1))
        dense = lam * np.sum(np.sum(U**2, axis=0) * np.mean((X @ V) ** 2, axis=0))
        np.testing.assert_allclose(value, fit + dense, rtol=1e-12)
        np.testing.assert_allclose(value, fit + fc.dropout_penalty(U, V, keep, X=X), rtol=1e-12)


def test_explicit_gradient_matches_central_differences():
    X, Y = _correlated_problem()
    rng = np.random.default_rng(1)
    U, V = rng.standard_normal((Y.shape[1], 3)), rng.standard_normal((X.shape[1], 3))
    moments = _moments(X, Y)
    _, grad_U, grad_V = _explicit_objective(U, V, 1.5, *moments)
    h = 1e-5
    for P, grad, which in ((U, grad_U, 0), (V, grad_V, 1)):
        numeric = np.zeros_like(P)
        for idx in np.ndindex(P.shape):
            plus, minus = P.copy(), P.copy()
            plus[idx] += h
            minus[idx] -= h
            args_p = (plus, V) if which == 0 else (U, plus)
            args_m = (minus, V) if which == 0 else (U, minus)
            numeric[idx] = (
                _explicit_objective(*args_p, 1.5, *moments)[0]
                - _explicit_objective(*args_m, 1.5, *moments)[0]
            ) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * np.abs(grad).max())


@pytest.mark.parametrize("width", [3, 6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_descent_reaches_the_closed_form_global_optimum(seed, width):
    X, Y = _correlated_problem()
    M, best = _optimum_value(X, Y, KEEP_GD, width)
    lr = _step_size(X, Y, KEEP_GD)
    res = train_explicit_fc(X, Y, KEEP_GD, width, steps=50_000, lr=lr, rng=seed, tol=1e-15)
    assert res.n_steps < 50_000  # stopped by tol, not by the step budget
    gap = res.loss[-1] - best
    assert -1e-10 * best <= gap <= 1e-8 * best  # nothing beats the closed form
    np.testing.assert_allclose(res.final_map, M, atol=1e-5 * np.linalg.norm(M))
    assert np.all(np.diff(res.loss) <= 1e-12 * best)  # lr below 1/curvature: monotone
    # the minimiser is equalized: every unit carries the same ‖u_i‖‖C^{1/2} v_i‖
    products = res.products[-1]
    assert np.ptp(products) <= 1e-4 * products.mean()


def test_explicit_result_layout_and_settings():
    X, Y = _correlated_problem()
    lr = _step_size(X, Y, KEEP_GD)
    res = train_explicit_fc(X, Y, KEEP_GD, 3, steps=250, lr=lr, rng=4, record_every=100)
    np.testing.assert_array_equal(res.steps, [0, 100, 200, 250])
    assert (res.n_steps, res.lr_decay, res.batch_size, res.seed) == (250, None, len(X), 4)
    assert res.maps.shape == (4, Y.shape[1], X.shape[1]) and res.products.shape == (4, 3)
    np.testing.assert_allclose(res.maps[-1], res.U @ res.V.T, rtol=1e-14)
    # the same start as the dropout trainer with the same seed
    start = train_fc(X, Y, KEEP_GD, 3, steps=1, lr=lr, rng=4)
    np.testing.assert_allclose(res.maps[0], start.maps[0], rtol=1e-14)
    stopped = train_explicit_fc(X, Y, KEEP_GD, 3, steps=10_000, lr=lr, rng=4, tol=1e-6)
    assert stopped.n_steps == stopped.steps[-1] < 10_000
    rel = abs(stopped.loss[-1] - stopped.loss[-2]) / stopped.loss[-1]
    assert stopped.steps[-1] - stopped.steps[-2] > 1 or rel <= 1e-6
    for bad, match in [({"tol": 0.0}, "tol"), ({"lr": -1.0}, "lr"), ({"steps": 0}, "steps")]:
        with pytest.raises(ValueError, match=match):
            train_explicit_fc(X, Y, KEEP_GD, 3, **{"steps": 10, "lr": lr, **bad})
    with pytest.raises(FloatingPointError, match="lr"):
        train_explicit_fc(X, Y, KEEP_GD, 3, steps=1000, lr=1e3)


# Schedule from a sweep over 6 seeds: worst relative objective gap 8e-5 and worst map
# error 0.55 % at width 6 (the optimum has rank 3, spread over all 6 units); at width 3
# the equalizing directions are slower (up to 3 % after 5000 steps).
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dropout_sgd_approaches_the_same_optimum(seed):
    X, Y = _correlated_problem()
    width = 6
    M, best = _optimum_value(X, Y, KEEP_GD, width)
    lr = _step_size(X, Y, KEEP_GD)
    res = train_fc(X, Y, KEEP_GD, width, steps=5000, lr=lr, lr_decay=500.0, rng=seed)
    assert 0.0 <= res.loss[-1] - best <= 1e-3 * best
    assert np.linalg.norm(res.final_map - M) <= 0.03 * np.linalg.norm(M)
