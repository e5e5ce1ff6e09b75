"""The induced regularizer of deep linear nets (regtheory.implied.deep_induced_regularizer).

Each value is checked against an independent computation: the depth-2 closed form of
regtheory.fc, the exact network penalty of regtheory.network on exactly white data, finite
differences of the reduced objective, explicit factorizations of the same map, and the
rank-one closed form (1 + λ/w)^(L-1) - 1 proved in the module docstring.
"""

import numpy as np
import pytest

from regtheory import data, fc, network
from regtheory.implied import _deep, deep_induced_regularizer
from regtheory.masks import Bernoulli, dropout_lambda

RNG = np.random.default_rng(12)
M34 = RNG.normal(size=(3, 4))
_G = RNG.normal(size=(4, 4))
COV = _G @ _G.T / 4 + 0.2 * np.eye(4)  # a positive definite input second moment


def _network_penalty(factors, keep, cov=None):
    """Exact penalty of the net [W_1, drop, W_2, drop, …, W_L] on data with XᵀX/n = cov."""
    d_in = factors[0].shape[1]
    X = data.white_inputs(40, d_in, rng=3)
    if cov is not None:
        evals, evecs = np.linalg.eigh(cov)
        X = X @ (evecs * np.sqrt(evals)) @ evecs.T
    layers = [network.Linear(factors[0])]
    for W in factors[1:]:
        layers += [network.Dropout(Bernoulli(keep)), network.Linear(W)]
    return network.dropout_penalty(layers, X)


def _product(factors):
    P = factors[0]
    for W in factors[1:]:
        P = W @ P
    return P


@pytest.mark.parametrize(
    "M,width,cov",
    [
        (M34, 3, None),
        (M34, 6, None),
        (M34, 4, COV),
        (np.outer([1.0, -2.0, 0.5], [0.3, 1.0, 0.0, 2.0]), 2, None),  # rank one
    ],
)
def test_depth_two_is_the_squared_nuclear_norm(M, width, cov):
    res = deep_induced_regularizer(M, 0.6, width, 2, cov=cov, starts=3)
    expected = fc.induced_regularizer(M, 0.6, width, cov=cov)
    assert res.value == pytest.approx(expected, rel=1e-6)
    assert res.lower_bound == pytest.approx(expected, rel=1e-12)
    assert res.ratio == pytest.approx(1.0, rel=1e-6)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    s, lam = np.array([1.5, 0.7, 0.2]), 0.8
    objective = _deep._reduced_objective(s, lam)
    inner = [rng.normal(size=(5, 3)), rng.normal(size=(5, 5)), rng.normal(size=(5, 5))]
    _, grads, _ = objective(inner)
    h = 1e-6
    for k, W in enumerate(inner):
        fd = np.empty_like(W)
        for idx in np.ndindex(W.shape):
            plus = [V.copy() for V in inner]
            minus = [V.copy() for V in inner]
            plus[k][idx] += h
            minus[k][idx] -= h
            fd[idx] = (objective(plus)[0] - objective(minus)[0]) / (2 * h)
        np.testing.assert_allclose(grads[k], fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())


@pytest.mark.parametrize("depth,cov", [(3, None), (4, COV)])
def test_value_is_the_network_penalty_of_the_returned_factors(depth, cov):
    keep = 0.7
    res = deep_induced_regularizer(M34, keep, 4, depth, cov=cov, starts=3)
    assert len(res.factors) == depth
    assert res.constraint_error < 1e-10
    np.testing.assert_allclose(_product(res.factors), M34, atol=1e-10)
    assert res.value == pytest.approx(_network_penalty(res.factors, keep, cov), rel=1e-9)
    assert res.spread < 1e-8  # the three starts agree
    assert not res.factors[0].flags.writeable


def _hadamard_factorization(M, depth):
    """Balanced SVD factors of M, every hidden layer of width 4 mixed by a Hadamard matrix."""
    H = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0
    A, s, Bt = np.linalg.svd(M, full_matrices=False)
    root = np.zeros((4, 4))
    root[: s.size, : s.size] = np.diag(s ** (1.0 / depth))
    first = np.zeros((4, M.shape[1]))
    first[: s.size] = Bt * s[:, None] ** (1.0 / depth)
    last = np.zeros((M.shape[0], 4))
    last[:, : s.size] = A * s ** (1.0 / depth)
    return [H @ first] + [H @ root @ H.T] * (depth - 2) + [last @ H.T]


@pytest.mark.parametrize("depth", [3, 5])
def test_value_is_below_equalized_and_random_factorizations(depth):
    keep, rng = 0.5, np.random.default_rng(5)
    res = deep_induced_regularizer(M34, keep, 4, depth, starts=3)
    hadamard = _hadamard_factorization(M34, depth)
    np.testing.assert_allclose(_product(hadamard), M34, atol=1e-12)
    assert res.value <= _network_penalty(hadamard, keep) * (1 + 1e-9)
    for _ in range(5):
        inner = [rng.normal(size=(4, 4)) for _ in range(depth - 1)]
        last = M34 @ np.linalg.pinv(_product(inner))
        random_factors = [*inner, last]
        np.testing.assert_allclose(_product(random_factors), M34, atol=1e-9)
        assert res.value <= _network_penalty(random_factors, keep) * (1 + 1e-9)


def test_value_does_not_depend_on_the_seed():
    # single starts from three seeds reach the same value to 1e-8 (relative)
    values = [deep_induced_regularizer(M34, 0.8, 6, 4, starts=1, rng=s).value for s in range(3)]
    np.testing.assert_allclose(values, values[0], rtol=1e-8)


@pytest.mark.parametrize("depth,width,keep", [(3, 2, 0.5), (4, 3, 0.8), (5, 1, 0.5)])
def test_rank_one_maps_attain_the_lower_bound(depth, width, keep):
    M = np.outer([1.0, 2.0, -1.0], [0.5, 0.0, 1.5])
    res = deep_induced_regularizer(M, keep, width, depth, starts=2)
    nu = (1 + dropout_lambda(keep) / width) ** (depth - 1) - 1
    expected = nu * np.linalg.norm(M) ** 2
    assert res.lower_bound == pytest.approx(expected, rel=1e-12)
    assert res.value == pytest.approx(expected, rel=1e-6)
    # the construction of the proof: W_1 = 1 vᵀ, W_i = 11ᵀ/w, W_L = (σ/w) u 1ᵀ
    A, s, Bt = np.linalg.svd(M)
    ones = np.ones((width, 1))
    construction = (
        [ones @ Bt[:1]] + [ones @ ones.T / width] * (depth - 2) + [s[0] / width * A[:, :1] @ ones.T]
    )
    assert _network_penalty(construction, keep) == pytest.approx(expected, rel=1e-9)


def test_higher_rank_maps_sit_above_the_bound_and_are_not_a_multiple_of_the_nuclear_norm():
    # Same nuclear norm, depth 3, width 3, keep 1/2: a rank-three isometry pays more
    # than the rank-one map, which attains the bound.
    iso = deep_induced_regularizer(np.eye(3), 0.5, 3, 3, starts=2)
    one = deep_induced_regularizer(np.diag([3.0, 0.0, 0.0]), 0.5, 3, 3, starts=2)
    assert one.value == pytest.approx(one.lower_bound, rel=1e-6)
    assert iso.lower_bound == pytest.approx(one.lower_bound, rel=1e-12)
    assert iso.value > 1.2 * iso.lower_bound
    for res in (iso, one):
        assert res.value >= res.lower_bound * (1 - 1e-9)


@pytest.mark.parametrize("r,width,depth,keep", [(2, 3, 4, 0.5), (3, 4, 5, 0.5), (2, 4, 3, 0.8)])
def test_equal_singular_values_meet_the_parseval_frame_construction(r, width, depth, keep):
    sigma, lam = 1.7, dropout_lambda(keep)
    # an equal-norm Parseval frame: fc.equalize spreads the identity evenly over w units
    F, _ = fc.equalize(np.hstack([np.eye(r), np.zeros((r, width - r))]), np.eye(r, width))
    F = F.T
    np.testing.assert_allclose(F.T @ F, np.eye(r), atol=1e-12)
    np.testing.assert_allclose(np.sum(F * F, axis=1), r / width, rtol=1e-9)
    construction = [F] + [F @ F.T] * (depth - 2) + [sigma * F.T]
    expected = r * sigma**2 * ((1 + lam * r / width) ** (depth - 1) - 1)
    assert _network_penalty(construction, keep) == pytest.approx(expected, rel=1e-9)
    res = deep_induced_regularizer(sigma * np.eye(r), keep, width, depth, starts=2)
    assert res.value == pytest.approx(expected, rel=1e-6)


def test_old_spellings_still_work_and_warn():
    M = np.diag([2.0, 1.0])
    new = deep_induced_regularizer(M, 0.5, 2, 3, starts=1, rng=4)
    with pytest.warns(DeprecationWarning, match="rng="):
        old = deep_induced_regularizer(M, 0.5, 2, 3, starts=1, seed=4)
    assert old.value == new.value
    with pytest.warns(DeprecationWarning, match="gradient_norm"):
        assert old.grad_norm == new.gradient_norm
