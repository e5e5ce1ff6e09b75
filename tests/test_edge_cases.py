"""Numerical edge cases: scales from 1e-8 to 1e8, keep near 0 and at 1, zero and
rank-deficient maps, 1×1 images and kernels, weights up to 1e300 and Poisson scores beyond
e^709. The answer is right or the error is precise."""

import itertools

import mpmath as mp
import numpy as np
import pytest

from regtheory import conv, dropout_lambda, fc, glm, implied, network
from regtheory._overflow import NumericalOverflowError
from regtheory.data import white_inputs
from regtheory.masks import Bernoulli
from regtheory.network import Dropout, Linear

SCALES = [1e-8, 1e-4, 1.0, 1e4, 1e8]


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("scale", SCALES)
def test_fc_solvers_are_scale_free(scale):
    """M*(sT) = s M*(T): the cvxpy solves rescale internally (they used to fail at 1e4 and
    return garbage at 1e-8 because of the solvers' absolute tolerances)."""
    T = scale * np.random.default_rng(0).normal(size=(5, 4))
    closed = fc.global_optimum(T, 0.5, 4)
    assert rel(implied.solve_fc(T, 0.5, 4).M, closed) < 1e-8
    assert rel(implied.solve_fc(T, 0.5, 4, method="sdp").M, closed) < 1e-6
    assert rel(implied.solve_fc_block(T, 0.5, 4, 1).M, closed) < 1e-5
    np.testing.assert_allclose(
        closed, scale * fc.global_optimum(T / scale, 0.5, 4), rtol=1e-10, atol=1e-14 * scale
    )


@pytest.mark.parametrize("scale", SCALES)
def test_conv_solvers_are_scale_free(scale):
    rng = np.random.default_rng(1)
    w = rng.normal(size=5)
    base = implied.conv_induced_regularizer(w, 0.5, 3, 8).value
    assert implied.conv_induced_regularizer(scale * w, 0.5, 3, 8).value == pytest.approx(
        scale**2 * base, rel=1e-7
    )
    X = white_inputs(40, 8, rng=rng).reshape(40, 1, 8)
    Y = conv.conv2d(X, rng.normal(size=(1, 1, 5)), padding="circular")
    ref = implied.solve_conv(X, Y, 0.5, 3, 3)
    sol = implied.solve_conv(X, scale * Y, 0.5, 3, 3)
    assert rel(sol.w, scale * ref.w) < 1e-6


@pytest.mark.parametrize("keep", [1e-6, 1e-3, 0.999999, 1.0])
def test_extreme_keep(keep):
    T = np.random.default_rng(2).normal(size=(4, 4))
    closed = fc.global_optimum(T, keep, 4)
    assert np.all(np.isfinite(closed))
    np.testing.assert_allclose(implied.solve_fc(T, keep, 4).M, closed, atol=1e-8 * np.abs(T).max())
    if keep == 1.0:
        np.testing.assert_allclose(closed, T, atol=1e-12)
    U, V = fc.equalize(np.eye(4)[:, :3], np.ones((4, 3)))
    assert np.isfinite(fc.dropout_penalty(U, V, keep))


def test_zero_and_rank_deficient_maps():
    Z = np.zeros((3, 4))
    assert fc.induced_regularizer(Z, 0.5, 1) == 0.0
    assert np.all(implied.solve_fc(Z, 0.5, 2).M == 0)
    assert np.all(fc.global_optimum(Z, 0.5, 2) == 0)
    M = np.outer([1.0, 2.0, 3.0], [1.0, 0.0, -1.0, 2.0])  # rank 1
    for width in (1, 5):  # width equal to and larger than the rank
        assert fc.induced_regularizer(M, 0.5, width) == pytest.approx(
            np.linalg.norm(M) ** 2 / width  # rank 1: nuclear = Frobenius norm
        )
    with pytest.raises(ValueError, match="width"):
        fc.induced_regularizer(np.eye(3), 0.5, 2)  # width smaller than the rank


def test_one_pixel_image_and_one_tap_kernel():
    u, v = np.full((1, 1, 1, 1), 2.0), np.full((1, 1, 1, 1), 3.0)
    lam = dropout_lambda(0.4)
    for padding in ("zeros", "circular"):
        assert conv.conv_matrix(u, (1, 1), padding=padding)[0, 0] == 2.0
        assert conv.dropout_penalty(u, v, 0.4, (1, 1), padding=padding) == pytest.approx(lam * 36)
        est = conv.dropout_penalty_mc(u, v, 0.4, (1, 1), padding=padding, n_masks=20_000, seed=0)
        assert abs(est.zscore(lam * 36)) < 4
    assert implied.conv_induced_regularizer(np.array([6.0]), 0.4, 1, 1).value == pytest.approx(
        lam * 36
    )


# ----------------------------------------------------------------------------- overflow

# Finite inputs never give a silent inf or NaN: the penalty is right (checked against the
# value at unit scale times s², computed separately) or the error names the quantity.
LOG10_MAX = np.log10(np.finfo(np.float64).max)  # 308.25
WEIGHT_SCALES = [1e150, 1e151, 1e160, 1e200, 1e250, 1e300]


def _scaled_or_refused(compute, unit_value, scale, label):
    """compute() at weight scale ``scale``: s²·unit_value where that is well inside float64
    (below 1e306), NumericalOverflowError naming ``label`` where it is beyond (above 1e309)."""
    log10 = np.log10(unit_value) + 2 * np.log10(scale)
    assert log10 < 306 or log10 > 309, "pick a scale away from the boundary"
    if log10 < 306:
        assert compute() == pytest.approx(scale**2 * unit_value, rel=1e-12)
        return
    with pytest.raises(NumericalOverflowError) as info:
        compute()
    assert isinstance(info.value, OverflowError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "float64" in message and label in message and f"e+{round(np.log10(scale))}" in message, (
        message
    )


@pytest.mark.parametrize("scale", WEIGHT_SCALES)
@pytest.mark.parametrize("with_targets", [False, True])
def test_network_penalty_at_huge_weights(scale, with_targets):
    rng = np.random.default_rng(3)
    W1, W2 = rng.normal(size=(4, 3)), rng.normal(size=(2, 4))
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))

    def net(s):
        return [Linear(W1), Dropout(Bernoulli(0.5)), Linear(s * W2)]

    # the penalty of mean-one masks does not see the targets: E‖f_r − f‖² only
    unit = network.dropout_penalty(net(1.0), X)
    ys = {"Y": scale * Y} if with_targets else {}
    _scaled_or_refused(
        lambda: network.dropout_penalty(net(scale), X, **ys), unit, scale, "layers[2].weight"
    )


@pytest.mark.parametrize("scale", [1e150, 1e160, 1e300])
def test_network_penalty_mc_at_huge_weights(scale):
    rng = np.random.default_rng(4)
    W = rng.normal(size=(2, 3))
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    layers = [Dropout(Bernoulli(0.5)), Linear(W)]
    exact = network.dropout_penalty(layers, X)
    unit = network.dropout_penalty_mc(layers, X, Y / scale, n_masks=2000, seed=0)
    assert abs(unit.zscore(exact)) < 4

    def huge():
        return network.dropout_penalty_mc(
            [Dropout(Bernoulli(0.5)), Linear(scale * W)], X, Y, n_masks=2000, seed=0
        ).mean

    _scaled_or_refused(huge, unit.mean, scale, "layers[1].weight")


@pytest.mark.parametrize("scale", WEIGHT_SCALES)
def test_fc_and_conv_penalties_at_huge_weights(scale):
    rng = np.random.default_rng(5)
    U, V = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    unit = fc.dropout_penalty(U, V, 0.5)
    _scaled_or_refused(lambda: fc.dropout_penalty(scale * U, V, 0.5), unit, scale, "`U`")
    u, v = rng.normal(size=(1, 2, 3, 3)), rng.normal(size=(2, 1, 3, 3))
    unit = conv.dropout_penalty(u, v, 0.5, (6, 6))
    _scaled_or_refused(lambda: conv.dropout_penalty(scale * u, v, 0.5, (6, 6)), unit, scale, "`u`")


@pytest.mark.parametrize("scale", [1e150, 1e300])
def test_conv_penalty_mc_at_huge_weights(scale):
    rng = np.random.default_rng(6)
    u, v = rng.normal(size=(1, 2, 3, 3)), rng.normal(size=(2, 1, 3, 3))
    unit = conv.dropout_penalty_mc(u, v, 0.5, (6, 6), n_masks=3000, seed=1)
    assert abs(unit.zscore(conv.dropout_penalty(u, v, 0.5, (6, 6)))) < 4
    _scaled_or_refused(
        lambda: conv.dropout_penalty_mc(scale * u, v, 0.5, (6, 6), n_masks=3000, seed=1).mean,
        unit.mean,
        scale,
        "`u`",
    )


def _poisson_by_enumeration(beta, X, keep, offset):
    """R of the Poisson family over all masks in 60-digit arithmetic (mpmath)."""
    mp.mp.dps = 60
    keep = mp.mpf(keep)
    total = mp.mpf(0)
    for x in X:
        contrib = [mp.mpf(float(a)) * mp.mpf(float(b)) for a, b in zip(x, beta)]
        expected = mp.mpf(0)
        for mask in itertools.product((0, 1), repeat=len(contrib)):
            p = mp.fprod(keep if m else 1 - keep for m in mask)
            expected += p * mp.exp(offset + mp.fsum(c * m / keep for c, m in zip(contrib, mask)))
        total += expected - mp.exp(offset + mp.fsum(contrib))
    return total / len(X)


# (beta, keep, offset) whose penalty fits float64 while e^score of some mask does not
# (the old computation gave inf or NaN), and an ordinary case
POISSON_LARGE = [
    ([7.1], 0.01, 0.0),  # e^710 overflows, P(kept) e^710 does not
    ([1.0, 1.0], 0.9, 709.0),  # e^z and E e^s overflow; their difference is 2.9e307
    ([0.01, 0.01], 0.9, 705.0),  # tiny contributions on a huge score
    ([400.0, 400.0], 0.5, -1000.0),  # scores from -1000 to 600
    ([0.3, -0.2, 0.5], 0.6, 0.0),
]


@pytest.mark.parametrize("beta,keep,offset", POISSON_LARGE)
def test_poisson_penalty_at_large_scores(beta, keep, offset):
    X = np.array([[1.0] * len(beta), [0.5, -1.0, 2.0][: len(beta)]])
    expected = _poisson_by_enumeration(beta, X, keep, offset)
    value = glm.dropout_penalty(np.array(beta), X, keep, family="poisson", offset=offset)
    assert value == pytest.approx(float(expected), rel=1e-11)


def test_poisson_penalty_beyond_float64_is_refused():
    X = np.array([[1.0, 1.0], [0.5, -1.0]])
    beta = np.array([400.0, 400.0])  # E e^s at the all-kept mask of sample 1 is e^1600/4
    assert mp.log10(_poisson_by_enumeration(beta, X, 0.5, 0.0)) > LOG10_MAX
    for method in ("exact", "monte_carlo"):
        with pytest.raises(
            NumericalOverflowError, match="dropout penalty of the GLM.*`beta` up to 400"
        ):
            glm.dropout_penalty(beta, X, 0.5, family="poisson", method=method)
    for approximation in (glm.quadratic_penalty, glm.gaussian_penalty):
        with pytest.raises(NumericalOverflowError, match="float64"):
            approximation(np.array([800.0, 800.0]), X, 0.5, family="poisson")


def test_poisson_monte_carlo_at_large_scores():
    """Draws of 1e260 (their cube is far beyond float64) give an honest estimate."""
    X = np.array([[1.0, 1.0], [0.5, -1.0]])
    beta = np.array([300.0, 0.0])
    exact = glm.dropout_penalty(beta, X, 0.5, family="poisson")
    assert exact == pytest.approx(float(_poisson_by_enumeration(beta, X, 0.5, 0.0)), rel=1e-11)
    est = glm.dropout_penalty(beta, X, 0.5, family="poisson", method="monte_carlo", n_masks=4000)
    assert np.isfinite(est.stderr) and abs(est.zscore(exact)) < 4


@pytest.mark.parametrize("scale", [1e150, 1e200])
def test_torch_model_penalty_at_huge_weights(scale):
    import torch  # the torch extra is part of the test environment (tests/conftest.py)

    from regtheory import pytorch

    def model(s):
        net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(3, 2, bias=False))
        net = net.double()  # float32 would hold 1e150 as inf
        with torch.no_grad():
            net[1].weight.copy_(torch.from_numpy(s * np.arange(6.0).reshape(2, 3) / 5))
        return net

    X = np.random.default_rng(8).normal(size=(5, 3))
    unit = pytorch.dropout_penalty(model(1.0), X).total
    _scaled_or_refused(
        lambda: pytorch.dropout_penalty(model(scale), X).total, unit, scale, "weight"
    )
