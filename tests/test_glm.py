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

from regtheory import InvalidParameterError, Penalty, glm, implied

FAMILIES = ("gaussian", "logistic", "poisson")


def cumulant(z, family):
    if family == "gaussian":
        return 0.5 * z**2
    return np.logaddexp(0.0, z) if family == "logistic" else np.exp(z)


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
    est = glm.dropout_penalty(beta, X, 0.4, family=family, method="mc", n_masks=2000, rng=11)
    assert abs(est.zscore(exact)) < 4
    assert est.n_masks == 2000 and est.method == "mc"


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
    saa = glm.solve_dropout(X, y, 0.5, method="saa", n_masks=100, rng=3)
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
    run = glm.dropout_sgd(X, y, 0.6, steps=20000, lr=0.5, rng=0, lr_decay=2000)
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
        glm.dropout_penalty(wide_beta, wide, 0.5, method="exact")
    big, big_y, _ = data(40, 10, 17)  # 40·2^10 terms
    with pytest.raises(InvalidParameterError, match="method='saa'"):
        glm.solve_dropout(big, big_y, 0.5)
    with pytest.raises(InvalidParameterError, match="`n_masks` must be at least 56"):
        glm.dropout_penalty(beta, X, 0.5, method="mc", n_masks=20)
    with pytest.raises(InvalidParameterError, match="`method` must be one of"):
        glm.dropout_penalty(beta, X, 0.5, method="enumerate")
    with pytest.raises(InvalidParameterError, match="`family`"):
        glm.quadratic_penalty(beta, X, 0.5, family="binomial")


@pytest.mark.parametrize("method", ["exact", "saa", "quadratic"])
def test_lbfgs_path_solves_the_same_problem_as_cvxpy(method):
    X, y, _ = data(30, 3, 18)
    ref = glm.solve_dropout(X, y, 0.6, method=method, rng=2)
    got = glm.solve_dropout(X, y, 0.6, method=method, rng=2, solver="L-BFGS-B")
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


# ----------------------------------------------------------------------------- one ladder


def test_a_solution_is_a_solution_with_its_rung_and_its_certificate():
    X, y, _ = data(30, 3, 19, family="poisson")
    sol = glm.solve_dropout(X, y, 0.6, family="poisson")
    assert isinstance(sol, implied.Solution) and sol.gap is None
    assert sol.solver == sol.attempts[-1].label == "CLARABEL (tight)"
    # the gradient norm it reports is the one of the enumerated objective, by central
    # differences here (error O(h²) ≈ 1e-10 at h = 1e-5)
    theta = np.append(sol.beta, sol.intercept)
    h = 1e-5
    grad = [
        (
            enumerated_objective(theta + h * e, X, y, 0.6, "poisson")
            - enumerated_objective(theta - h * e, X, y, 0.6, "poisson")
        )
        / (2 * h)
        for e in np.eye(4)
    ]
    assert np.linalg.norm(grad) <= glm.GRADIENT_TOL + 1e-8
    assert sol.gradient_norm == pytest.approx(np.linalg.norm(grad), abs=1e-8)


def test_a_first_rung_that_cannot_certify_hands_over_and_is_named(monkeypatch):
    from regtheory.glm import _solve

    # Clarabel stopped after one iteration: no gradient certificate can hold
    monkeypatch.setattr(_solve, "CLARABEL_GLM_OPTIONS", {"max_iter": 1})
    X, y, _ = data(30, 3, 20)
    sol = glm.solve_dropout(X, y, 0.6)
    assert [a.label for a in sol.attempts] == ["CLARABEL (tight)", "CLARABEL (defaults)"]
    assert sol.solver == "CLARABEL (defaults)" and sol.gradient_norm <= glm.GRADIENT_TOL
    first = sol.attempts[0]
    assert first.gradient_norm is None or first.gradient_norm > glm.GRADIENT_TOL


# ----------------------------------------------------------------------------- no minimiser


def dropout_objective(beta, b, X, y, keep, family):
    """E_r L_r at (β, b), all masks enumerated here."""
    return enumerated_objective(np.append(beta, b), X, y, keep, family)


def saa_objective(beta, b, X, y, keep, family, n_masks, seed):
    """The sample-average objective: the draws of solve_dropout (one uniform array of shape
    (n_masks, n, d), kept where below keep), the linear term exact."""
    kept = np.random.default_rng(seed).random((n_masks, *X.shape)) < keep
    z = (kept * X / keep) @ beta + b
    return float(np.mean(cumulant(z, family)) - np.mean(y * (X @ beta + b)))


def assert_decreases_to_its_infimum(error, X, y, keep, family, intercept=True, saa=None):
    """Along the certified direction the objective falls at every step, by less and less
    (``saa``: (n_masks, seed) of the sample average instead of the exact objective)."""
    d = X.shape[1]
    direction = error.direction
    assert direction.shape == (d + intercept,)
    ts = [0.0, 1.0, 4.0, 16.0, 64.0]
    values = []
    for t in ts:
        theta = t * direction
        b = theta[d] if intercept else 0.0
        if saa is None:
            values.append(dropout_objective(theta[:d], b, X, y, keep, family))
        else:
            values.append(saa_objective(theta[:d], b, X, y, keep, family, *saa))
    drops = -np.diff(values)
    assert np.all(drops > 0)
    assert drops[-1] < drops[0]


def separated_at_zero(n, d, seed, feature=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, (X[:, feature] > 0).astype(float)


def test_the_issue_example_threshold_0_3_has_a_minimiser_and_threshold_0_has_none():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 4))
    # labels X[:, 2] > 0.3: the samples with 0 < x_2 <= 0.3 have label 0, so no feature
    # separates at 0 and the exact dropout objective has a minimiser (THEORY §8)
    y = (X[:, 2] > 0.3).astype(float)
    sol = glm.solve_dropout(X, y, 0.6)
    theta = np.append(sol.beta, sol.intercept)
    f0 = enumerated_objective(theta, X, y, 0.6, "logistic")
    for step in (1e-3, 1.0, 100.0):  # no direction goes down from the solution
        for e in np.vstack([np.eye(5), -np.eye(5)]):
            assert enumerated_objective(theta + step * e, X, y, 0.6, "logistic") >= f0 - 1e-12
    # labels X[:, 2] > 0: feature 2 separates at 0, no minimiser
    y0 = (X[:, 2] > 0).astype(float)
    with pytest.raises(glm.NoMinimiserError, match="feature 2 separates the labels at 0") as info:
        glm.solve_dropout(X, y0, 0.6)
    np.testing.assert_array_equal(info.value.direction, [0, 0, 1, 0, 0])
    assert_decreases_to_its_infimum(info.value, X, y0, 0.6, "logistic")
    # the infimum along it: every term that keeps feature 2 loses its loss
    far = dropout_objective(1e4 * np.eye(4)[2], 0.0, X, y0, 0.6, "logistic")
    assert far == pytest.approx((1 - 0.6) * np.log(2.0), rel=1e-9)


@pytest.mark.parametrize(
    ("n", "d", "keep", "intercept"), [(40, 4, 0.6, True), (25, 6, 0.3, True), (12, 3, 0.9, False)]
)
def test_one_separating_feature_leaves_no_minimiser_whatever_the_masks(n, d, keep, intercept):
    X, y = separated_at_zero(n, d, n + d)
    X[:, 1] *= -1.0  # separates with the opposite sign
    for method in ("exact", "saa"):
        with pytest.raises(glm.NoMinimiserError) as info:
            glm.solve_dropout(X, y, keep, method=method, intercept=intercept, n_masks=200)
        # the sample average approximates an objective without minimiser: refused too
        assert isinstance(info.value, ValueError) and "feature 1 separates" in str(info.value)
        np.testing.assert_array_equal(info.value.direction, -np.eye(d + intercept)[1])
        assert_decreases_to_its_infimum(info.value, X, y, keep, "logistic", intercept)


def test_quasi_separation_with_zeros_is_found():
    X, y = separated_at_zero(30, 3, 21, feature=0)
    X[:5, 0] = 0.0  # ties at 0 on both sides still leave feature 0 one-signed
    y[:5] = [0, 1, 0, 1, 1]
    with pytest.raises(glm.NoMinimiserError, match="feature 0") as info:
        glm.solve_dropout(X, y, 0.5)
    assert_decreases_to_its_infimum(info.value, X, y, 0.5, "logistic")


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_constant_labels_have_no_minimiser(label):
    X, _, _ = data(20, 3, 22)
    y = np.full(20, label)
    for method in ("exact", "saa", "quadratic"):
        with pytest.raises(glm.NoMinimiserError, match=f"every label is {int(label)}") as info:
            glm.solve_dropout(X, y, 0.5, method=method)
        assert info.value.direction[-1] == (1.0 if label else -1.0)
    assert_decreases_to_its_infimum(info.value, X, y, 0.5, "logistic")


def test_poisson_without_a_minimiser_says_counts_not_labels():
    X, _, _ = data(20, 3, 23)
    zeros = np.zeros(20)
    for method in ("exact", "saa", "quadratic"):
        with pytest.raises(glm.NoMinimiserError) as info:
            glm.solve_dropout(X, zeros, 0.5, family="poisson", method=method)
        assert "label" not in str(info.value) and "separab" not in str(info.value)
        assert "count" in str(info.value)
    assert_decreases_to_its_infimum(info.value, X, zeros, 0.5, "poisson")
    # one feature that is 0 wherever the count is positive, negative on the zero counts
    counts = np.random.default_rng(24).poisson(2.0, 20).astype(float)
    counts[:6] = 0.0
    X[:, 2] = 0.0
    X[:6, 2] = -np.arange(1.0, 7.0)
    with pytest.raises(glm.NoMinimiserError, match="feature 2 is 0") as info:
        glm.solve_dropout(X, counts, 0.5, family="poisson")
    assert info.value.direction[2] > 0
    assert_decreases_to_its_infimum(info.value, X, counts, 0.5, "poisson")


def test_keep_one_is_the_plain_glm_and_a_linear_program_finds_its_separation():
    # x_0 + x_1 > 0 separates; no single feature does, so only the plain GLM (keep = 1)
    # lacks a minimiser: with dropout the other coordinate is sometimes dropped alone
    rng = np.random.default_rng(25)
    X = rng.standard_normal((30, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    with pytest.raises(glm.NoMinimiserError, match="linear program") as info:
        glm.solve_dropout(X, y, 1.0)
    w = info.value.direction
    margins = (2 * y - 1) * (X @ w[:3] + w[3])
    assert np.all(margins >= -1e-9) and np.max(margins) > 1e-3
    assert_decreases_to_its_infimum(info.value, X, y, 1.0, "logistic")
    sol = glm.solve_dropout(X, y, 0.7)  # dropout: a minimiser
    assert sol.gradient_norm <= glm.GRADIENT_TOL


def test_saa_with_few_masks_can_lack_a_minimiser_the_exact_problem_has():
    # 8 samples in 12 dimensions, 2 draws: the 16 masked copies are separable
    rng = np.random.default_rng(26)
    X = rng.standard_normal((8, 12))
    y = np.array([0, 1] * 4, dtype=float)
    signed = (2 * y - 1)[:, None] * X
    assert not np.any(np.all(signed >= 0, axis=0) | np.all(signed <= 0, axis=0))
    with pytest.raises(glm.NoMinimiserError, match="sampled terms") as info:
        glm.solve_dropout(X, y, 0.5, method="saa", n_masks=2, solver="L-BFGS-B")
    assert "more draws (n_masks)" in str(info.value)
    assert_decreases_to_its_infimum(info.value, X, y, 0.5, "logistic", saa=(2, 0))


def test_a_sample_average_too_big_to_decide_is_refused_not_returned(monkeypatch):
    from regtheory.glm import _existence

    monkeypatch.setattr(_existence, "MAX_LP_ENTRIES", 0)
    rng = np.random.default_rng(26)
    X = rng.standard_normal((8, 12))
    y = np.array([0, 1] * 4, dtype=float)
    with pytest.raises(implied.SolverFailedError) as info:
        glm.solve_dropout(X, y, 0.5, method="saa", n_masks=2, solver="L-BFGS-B")
    assert not isinstance(info.value, glm.NoMinimiserError)
    # with a minimiser the dual point certifies it without the linear program
    X, y, _ = data(30, 3, 30)
    sol = glm.solve_dropout(X, y, 0.5, method="saa", n_masks=50)
    assert sol.gradient_norm <= glm.GRADIENT_TOL


def test_no_false_alarm_on_overlapping_classes():
    for seed in range(8):
        X, y, _ = data(30, 3, 100 + seed, scale=0.4)
        sol = glm.solve_dropout(X, y, 0.5, solver="L-BFGS-B")
        assert sol.gradient_norm <= glm.LBFGS_GTOL


def structure_says_no_minimiser(X, y):
    signed = (2 * y - 1)[:, None] * X
    nonzero = np.any(signed != 0, axis=0)
    one_sign = np.all(signed >= 0, axis=0) | np.all(signed <= 0, axis=0)
    return bool(np.any(nonzero & one_sign)) or np.all(y == y[0])


def lp_says_no_minimiser(X, y, keep):
    """Directions δ = (w, c) with (2y_i − 1)((x_i∘m)·w/θ + c) ≥ 0 under every mask m; the
    objective is not constant along one iff some such margin can be positive. Written here
    from the masks (itertools), independently of the package's linear program."""
    n, d = X.shape
    rows, signs = [], []
    for m in itertools.product((0, 1), repeat=d):
        for i in range(n):
            rows.append(np.append(X[i] * np.array(m) / keep, 1.0))
            signs.append(2 * y[i] - 1)
    S = np.array(signs)[:, None] * np.array(rows)
    res = optimize.linprog(
        -S.sum(axis=0), A_ub=-S, b_ub=np.zeros(len(S)), bounds=[(-1, 1)] * (d + 1),
        method="highs",
    )  # fmt: skip
    return -res.fun > 1e-9


def test_the_structural_condition_is_the_linear_program_on_every_mask():
    rng = np.random.default_rng(27)
    seen = set()
    for trial in range(60):
        n, d = rng.integers(3, 9), rng.integers(1, 4)
        X = np.round(rng.standard_normal((n, d)), 1)
        X[rng.random((n, d)) < 0.2] = 0.0
        y = (rng.random(n) < 0.5).astype(float)
        if trial % 3 == 0:  # make one feature separate at 0
            j = rng.integers(d)
            X[:, j] = np.abs(X[:, j]) * (2 * y - 1)
        expected = lp_says_no_minimiser(X, y, 0.6)
        assert structure_says_no_minimiser(X, y) == expected
        try:
            glm.solve_dropout(X, y, 0.6, solver="L-BFGS-B")
            raised = False
        except glm.NoMinimiserError:
            raised = True
        except implied.SolverFailedError:
            raised = False  # a minimiser exists but far out: not a false "no minimiser"
        assert raised == expected
        seen.add(expected)
    assert seen == {True, False}


def test_quadratic_advice_depends_on_whether_the_dropout_objective_has_a_minimiser(
    monkeypatch,
):
    from regtheory.glm import _solve

    monkeypatch.setattr(_solve, "MAX_FIXED_POINT_STEPS", 1)
    X, y, _ = data(30, 3, 28)
    with pytest.raises(implied.SolverFailedError, match="method='exact' or 'saa'"):
        glm.solve_dropout(X, y, 0.6, method="quadratic", solver="L-BFGS-B")
    X, y = separated_at_zero(30, 3, 29)
    with pytest.raises(implied.SolverFailedError, match="no minimiser either") as info:
        glm.solve_dropout(X, y, 0.6, method="quadratic", solver="L-BFGS-B")
    assert "method='exact'" not in str(info.value)


# ----------------------------------------------------------------------------- the grammar


def test_penalties_are_penalties_and_auto_chooses_by_the_features_that_reach_the_score():
    X, _, beta = data(20, 3, 31)
    exact = glm.dropout_penalty(beta, X, 0.7)
    assert isinstance(exact, Penalty) and exact.is_exact and exact.method == "exact"
    masks = itertools.product((0, 1), repeat=3)
    assert exact == pytest.approx(penalty_by_masks(beta, X, 0.7, "logistic", masks), rel=1e-12)
    for method, function in (
        ("quadratic", glm.quadratic_penalty),
        ("gaussian", glm.gaussian_penalty),
    ):
        approx = glm.dropout_penalty(beta, X, 0.7, method=method)
        assert approx.method == method and not approx.is_exact
        assert float(approx) == float(function(beta, X, 0.7))
    wide, _, wide_beta = data(6, 17, 32, scale=0.1)
    auto = glm.dropout_penalty(wide_beta, wide, 0.9, rng=1)
    assert auto.method == "mc" and auto.n_masks >= 2000
    wide_beta[0] = 0.0  # 16 features reach the score: enumerated
    assert glm.dropout_penalty(wide_beta, wide, 0.9).is_exact


def test_old_spellings_still_work_with_a_warning_and_the_same_numbers():
    X, y, beta = data(20, 3, 33)
    new = glm.dropout_penalty(beta, X, 0.5, method="mc", n_masks=500, rng=4)
    with pytest.warns(DeprecationWarning, match="method='mc'"):
        old = glm.dropout_penalty(beta, X, 0.5, method="monte_carlo", n_masks=500, rng=4)
    with pytest.warns(DeprecationWarning, match="rng="):
        seeded = glm.dropout_penalty(beta, X, 0.5, method="mc", n_masks=500, seed=4)
    assert float(old) == float(new) == float(seeded) and new.stderr > 0
    with pytest.warns(DeprecationWarning, match="by position"):
        positional = glm.dropout_sgd(X, y, 0.5, 50, 0.1, 3)
    keyword = glm.dropout_sgd(X, y, 0.5, steps=50, lr=0.1, rng=3)
    np.testing.assert_array_equal(positional.beta, keyword.beta)
    with pytest.warns(DeprecationWarning):
        saa = glm.solve_dropout(X, y, 0.5, method="saa", n_masks=20, seed=5, solver="L-BFGS-B")
    again = glm.solve_dropout(X, y, 0.5, method="saa", n_masks=20, rng=5, solver="L-BFGS-B")
    np.testing.assert_array_equal(saa.beta, again.beta)
    with pytest.raises(InvalidParameterError, match="both `seed` and `rng`"):
        glm.solve_dropout(X, y, 0.5, seed=1, rng=1)
