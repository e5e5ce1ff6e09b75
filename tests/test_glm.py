"""regtheory.glm against computations that share none of its code.

* the penalty: masks enumerated by hand (d = 2 written out, d = 3 by itertools), the
  Poisson family's product formula, Monte Carlo over real masks;
* the approximations: the quadratic one equals the exact penalty for the Gaussian family
  and misses it by O(λ²) otherwise (the slope is measured); Gauss–Hermite against
  scipy.integrate.quad;
* the solutions: the exact problem against scipy.optimize.minimize of the enumerated
  objective, SAA within its reported error, SGD with real masks, and the quadratic
  method against scikit-learn's LogisticRegression (matched as explained there).
"""

import itertools

import numpy as np
import pytest
from scipy import integrate, optimize

from regtheory import InvalidParameterError, glm

FAMILIES = ("gaussian", "logistic", "poisson")


def cumulant(z, family):
    return {"gaussian": 0.5 * z**2, "logistic": np.logaddexp(0.0, z), "poisson": np.exp(z)}[family]


def penalty_by_masks(beta, X, keep, family, masks, offset=0.0):
    """mean_i Σ_m P(m) A((x_i∘m/θ)·β + b) − A(x_i·β + b) over the listed masks."""
    total = np.zeros(len(X))
    for m in masks:
        m = np.asarray(m, dtype=float)
        p = np.prod(np.where(m == 1, keep, 1 - keep))
        total += p * cumulant((X * m / keep) @ beta + offset, family)
    return float(np.mean(total - cumulant(X @ beta + offset, family)))


def data(n, d, seed, family="logistic", scale=0.6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    beta = scale * rng.standard_normal(d)
    z = X @ beta + 0.2
    if family == "logistic":
        y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    elif family == "poisson":
        y = rng.poisson(np.exp(z)).astype(float)
    else:
        y = z + rng.standard_normal(n)
    return X, y, beta


@pytest.mark.parametrize("family", FAMILIES)
def test_two_features_by_hand(family):
    X, _, beta = data(7, 2, 1)
    masks = [(0, 0), (0, 1), (1, 0), (1, 1)]  # the four masks of two inputs
    for keep in (0.3, 0.8):
        expected = penalty_by_masks(beta, X, keep, family, masks, offset=0.4)
        got = glm.dropout_penalty(beta, X, keep, family=family, offset=0.4)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("family", FAMILIES)
def test_three_features_by_enumeration(family):
    X, _, beta = data(9, 3, 2)
    masks = list(itertools.product((0, 1), repeat=3))
    expected = penalty_by_masks(beta, X, 0.6, family, masks)
    assert glm.dropout_penalty(beta, X, 0.6, family=family) == pytest.approx(expected, rel=1e-12)


def test_poisson_penalty_is_a_product_of_mask_moments():
    # E exp(Σ_j x_j β_j r_j/θ) = Π_j (1 − θ + θ exp(x_j β_j/θ)): independent masks
    X, _, beta = data(20, 10, 3, scale=0.3)
    keep = 0.7
    expected = np.mean(
        np.prod(1 - keep + keep * np.exp(X * beta / keep), axis=1) - np.exp(X @ beta)
    )
    assert glm.dropout_penalty(beta, X, keep, family="poisson") == pytest.approx(expected, 1e-12)


def test_inactive_features_are_not_enumerated_and_keep_one_is_free():
    X, _, beta = data(5, 30, 4)
    beta[3:] = 0.0  # 30 features, 3 reach the score: enumerable
    small = glm.dropout_penalty(beta[:3], X[:, :3], 0.5)
    assert glm.dropout_penalty(beta, X, 0.5) == pytest.approx(small, rel=1e-12)
    assert glm.dropout_penalty(beta, X, 1.0) == 0.0


@pytest.mark.parametrize("family", FAMILIES)
def test_monte_carlo_covers_the_exact_penalty(family):
    # over seeds 0-19 the largest |z| was 2.05 (logistic), 1.98 (poisson), 1.56 (gaussian)
    X, _, beta = data(30, 6, 5)
    exact = glm.dropout_penalty(beta, X, 0.4, family=family)
    est = glm.dropout_penalty(
        beta, X, 0.4, family=family, method="monte_carlo", n_masks=2000, seed=11
    )
    assert abs(est.zscore(exact)) < 4
    assert est.n_samples == 2000


def test_quadratic_penalty_is_exact_for_the_gaussian_family():
    X, _, beta = data(25, 8, 6)
    for keep in (0.2, 0.5, 0.9):
        exact = glm.dropout_penalty(beta, X, keep, family="gaussian", offset=-0.7)
        quad = glm.quadratic_penalty(beta, X, keep, family="gaussian", offset=-0.7)
        gauss = glm.gaussian_penalty(beta, X, keep, family="gaussian", offset=-0.7)
        assert quad == pytest.approx(exact, rel=1e-12)
        assert gauss == pytest.approx(exact, rel=1e-12)


def quadratic_error(beta, X, keep, family, offset):
    exact = glm.dropout_penalty(beta, X, keep, family=family, offset=offset)
    quad = glm.quadratic_penalty(beta, X, keep, family=family, offset=offset)
    return exact, abs(exact - quad)


@pytest.mark.parametrize("family", ["logistic", "poisson"])
def test_quadratic_penalty_is_second_order_in_the_perturbation(family):
    # Scaling beta by t scales each contribution x_ij beta_j of the dropped score: R is
    # O(t^2) and the quadratic approximation misses the third cumulant term, O(t^3)
    X, _, beta = data(40, 6, 7)
    scales = np.array([0.02, 0.01, 0.005, 0.0025])
    pen, err = zip(*(quadratic_error(t * beta, X, 0.7, family, 0.4) for t in scales))
    assert 2.9 < np.polyfit(np.log(scales), np.log(err), 1)[0] < 3.1
    assert 1.9 < np.polyfit(np.log(scales), np.log(pen), 1)[0] < 2.1


@pytest.mark.parametrize("family", ["logistic", "poisson"])
def test_near_keep_one_the_quadratic_error_is_first_order_in_lambda(family):
    # Every cumulant of a Bernoulli mask entry r/keep - 1 is O(1 - keep) as keep -> 1 (a
    # rare drop, not a small jitter), so R/(1 - keep) tends to the cost of dropping one
    # feature at a time, mean_i sum_j A(z_i - c_ij) - A(z_i) + c_ij A'(z_i), c_ij = x_ij
    # beta_j, and the quadratic error shrinks like lambda, not lambda^2: its relative size
    # tends to a constant.
    X, _, beta = data(40, 6, 7)
    keeps = np.array([0.99, 0.995, 0.998, 0.999])
    lam = (1 - keeps) / keeps
    pen, err = map(np.array, zip(*(quadratic_error(beta, X, k, family, 0.4) for k in keeps)))
    assert 0.95 < np.polyfit(np.log(lam), np.log(err), 1)[0] < 1.05
    z, c = X @ beta + 0.4, X * beta
    slope = {"logistic": 1 / (1 + np.exp(-z)), "poisson": np.exp(z)}[family][:, None]
    drop_one = cumulant(z[:, None] - c, family) - cumulant(z, family)[:, None] + c * slope
    assert pen[-1] / (1 - keeps[-1]) == pytest.approx(np.mean(drop_one.sum(axis=1)), rel=2e-3)


def expectation_under_normal(m, v, family):
    """E A(m + v t), t ~ N(0, 1), by adaptive quadrature (exponents combined: no overflow)."""
    if family == "logistic":

        def f(t):
            return np.logaddexp(0.0, m + v * t) * np.exp(-t * t / 2)
    else:

        def f(t):
            return np.exp(m + v * t - t * t / 2)

    value, _ = integrate.quad(f, -40.0, 40.0, epsabs=1e-13, epsrel=1e-12, limit=200)
    return value / np.sqrt(2 * np.pi)


@pytest.mark.parametrize("family", ["logistic", "poisson"])
def test_gauss_hermite_matches_a_direct_integral(family):
    X, _, beta = data(6, 4, 8)
    keep, offset = 0.5, 0.3
    lam = (1 - keep) / keep
    mu = X @ beta + offset
    s = np.sqrt(lam * (X**2) @ beta**2)
    direct = np.mean(
        [expectation_under_normal(m, v, family) - cumulant(m, family) for m, v in zip(mu, s)]
    )
    got = glm.gaussian_penalty(beta, X, keep, family=family, offset=offset)
    assert got == pytest.approx(direct, rel=1e-9)


def enumerated_objective(theta, X, y, keep, family):
    """The expected dropout objective over all masks, written here from its definition."""
    beta, b = theta[:-1], theta[-1]
    masks = itertools.product((0, 1), repeat=X.shape[1])
    penalty = penalty_by_masks(beta, X, keep, family, masks, offset=b)
    z = X @ beta + b
    return np.mean(cumulant(z, family) - y * z) + penalty


@pytest.mark.parametrize("family", FAMILIES)
def test_exact_solution_matches_scipy_on_the_enumerated_objective(family):
    X, y, _ = data(30, 3, 9, family=family)
    sol = glm.solve_dropout(X, y, 0.6, family=family)
    ref = optimize.minimize(
        enumerated_objective, np.zeros(4), args=(X, y, 0.6, family), method="BFGS", tol=1e-10
    )
    assert sol.status == "optimal" and sol.method == "exact" and sol.n_terms == 30 * 8
    np.testing.assert_allclose(np.append(sol.beta, sol.intercept), ref.x, atol=2e-5)
    assert sol.objective == pytest.approx(ref.fun, rel=1e-7)
    assert sol.gradient_norm < 1e-6
    assert not sol.beta.flags.writeable


def test_gaussian_exact_and_quadratic_solutions_coincide():
    X, y, _ = data(30, 3, 10, family="gaussian")
    exact = glm.solve_dropout(X, y, 0.5, family="gaussian")
    quad = glm.solve_dropout(X, y, 0.5, family="gaussian", method="quadratic")
    assert quad.status == "closed_form"
    np.testing.assert_allclose(quad.beta, exact.beta, atol=1e-6)
    assert quad.intercept == pytest.approx(exact.intercept, abs=1e-6)


@pytest.mark.slow
def test_saa_is_near_exact_within_its_error():
    X, y, _ = data(40, 4, 12)
    exact = glm.solve_dropout(X, y, 0.5)
    saa = glm.solve_dropout(X, y, 0.5, method="saa", n_masks=100, seed=3)
    assert saa.n_terms == 40 * 100 and saa.objective_stderr > 0
    # the SAA optimum is biased low by O(1/n_masks); its noise is O(1/√n_masks) (over seeds
    # 0-19: -1.44 to 1.24 standard errors from the exact optimum, its solution 0.01 to 0.31
    # standard errors above it in the exact objective)
    assert abs(saa.objective - exact.objective) < 4 * saa.objective_stderr
    # and its solution, plugged into the exact objective, is nearly optimal
    at_saa = enumerated_objective(np.append(saa.beta, saa.intercept), X, y, 0.5, "logistic")
    assert exact.objective <= at_saa < exact.objective + 4 * saa.objective_stderr


@pytest.mark.slow
def test_dropout_sgd_lands_on_the_exact_solution():
    X, y, _ = data(60, 4, 13)
    exact = glm.solve_dropout(X, y, 0.6)
    run = glm.dropout_sgd(X, y, 0.6, 20000, 0.5, 0, lr_decay=2000)
    # loose, 10 %: the last iterates still carry mask noise of size ~ sqrt(lr_t) (over
    # seeds 0-9 the relative distance was at most 6 %, the objective 2.3e-4 above optimal)
    theta, ref = np.append(run.beta, run.intercept), np.append(exact.beta, exact.intercept)
    assert np.linalg.norm(theta - ref) < 0.1 * np.linalg.norm(ref)
    # the recorded objective is the exact one; it ends within 1e-3 of the optimum
    assert run.objective[-1] == pytest.approx(exact.objective, abs=1e-3)
    assert run.objective[0] == pytest.approx(np.log(2.0), rel=1e-12)  # β = 0, b = 0


def test_quadratic_method_matches_sklearn_logistic_regression():
    # At its fixed point the quadratic method minimises
    #     mean_i log-loss_i(β, b) + Σ_j c_j β_j²,  c_j = ½ λ mean_i A''(x_i·β̂ + b̂) x_ij²,
    # with c fixed at the solution. LogisticRegression(C) minimises (after dividing by Cn)
    # mean_i log-loss_i + ‖w‖²/(2Cn), one weight for every coefficient: the two agree
    # after rescaling feature j by a_j = sqrt(2 C n c_j) (then w_j = a_j β_j, and
    # c_j β_j² = w_j²/(2Cn)). The intercept is unpenalized in both (lbfgs).
    sklearn = pytest.importorskip("sklearn.linear_model")
    X, y, _ = data(80, 5, 14)
    keep = 0.7
    sol = glm.solve_dropout(X, y, keep, method="quadratic")
    lam = (1 - keep) / keep
    p = 1 / (1 + np.exp(-(X @ sol.beta + sol.intercept)))
    c = 0.5 * lam * (p * (1 - p)) @ X**2 / len(X)
    C = 1.0
    a = np.sqrt(2 * C * len(X) * c)
    model = sklearn.LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X / a, y)
    np.testing.assert_allclose(sol.beta, model.coef_[0] / a, atol=1e-6)
    assert sol.intercept == pytest.approx(model.intercept_[0], abs=1e-6)
    assert sol.iterations > 1


def test_bad_input_is_refused_with_its_name():
    X, y, beta = data(10, 3, 15)
    with pytest.raises(InvalidParameterError, match="`y` must hold labels 0 and 1"):
        glm.solve_dropout(X, y + 0.5, 0.5)
    with pytest.raises(InvalidParameterError, match="non-negative counts"):
        glm.solve_dropout(X, -y, 0.5, family="poisson")
    with pytest.raises(InvalidParameterError, match="`beta` must have one entry per feature"):
        glm.dropout_penalty(beta[:2], X, 0.5)
    with pytest.raises(InvalidParameterError, match="`y` must have one label per sample"):
        glm.solve_dropout(X, y[:5], 0.5)
    wide, _, wide_beta = data(4, 17, 16)
    with pytest.raises(InvalidParameterError, match="at most d = 16"):
        glm.dropout_penalty(wide_beta, wide, 0.5)
    big, big_y, _ = data(40, 10, 17)  # 40·2^10 terms
    with pytest.raises(InvalidParameterError, match="method='saa'"):
        glm.solve_dropout(big, big_y, 0.5)
    with pytest.raises(InvalidParameterError, match="`n_masks` must be at least 56"):
        glm.dropout_penalty(beta, X, 0.5, method="monte_carlo", n_masks=20)
    with pytest.raises(InvalidParameterError, match="`family`"):
        glm.quadratic_penalty(beta, X, 0.5, family="binomial")


@pytest.mark.parametrize("method", ["exact", "saa", "quadratic"])
def test_lbfgs_path_solves_the_same_problem_as_cvxpy(method):
    X, y, _ = data(30, 3, 18)
    ref = glm.solve_dropout(X, y, 0.6, method=method, seed=2)
    got = glm.solve_dropout(X, y, 0.6, method=method, seed=2, solver="L-BFGS-B")
    assert got.status == "optimal" and got.solver == "L-BFGS-B"
    np.testing.assert_allclose(got.beta, ref.beta, atol=1e-6)
    assert got.objective == pytest.approx(ref.objective, rel=1e-8)
    assert got.gradient_norm <= glm.LBFGS_GTOL


def test_the_objective_is_convex_but_the_penalty_alone_is_not():
    # One sample x = 1, no intercept, logistic: R(β) = θA(β/θ) + (1-θ)A(0) - A(β) has
    # R'' = A''(β/θ)/θ - A''(β) < 0 for large β; the objective L + R stays convex.
    X, keep = np.ones((1, 1)), 0.5
    betas = np.linspace(-8, 8, 161)
    R = np.array([glm.dropout_penalty([b], X, keep) for b in betas])
    objective = R + np.logaddexp(0.0, betas) - 1.0 * betas  # label 1
    assert np.min(np.diff(R, 2)) < -1e-4
    assert np.min(np.diff(objective, 2)) > -1e-12
