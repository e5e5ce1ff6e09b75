"""Numerical edge cases: scales from 1e-8 to 1e8, keep near 0 and at 1, zero and
rank-deficient maps, 1×1 images and kernels. The answer is right or the error is precise."""

import numpy as np
import pytest

from regtheory import conv, dropout_lambda, fc, implied
from regtheory.data import white_inputs

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
