"""Bad input at the public entry points: a ValueError or TypeError that names the argument,
never a NumPy/SciPy/cvxpy error from deep inside, and never a NaN result."""

import numpy as np
import pytest

from regtheory import compare, conv, data, fc, implied, masks, montecarlo, network, training

NAN = np.full((2, 2), np.nan)
I2 = np.eye(2)
X4 = np.ones((4, 2))
u33 = np.ones((1, 2, 3, 3))
v33 = np.ones((2, 1, 3, 3))

CASES = [
    # (call, exception, argument named in the message)
    (lambda: fc.dropout_penalty(NAN, I2, 0.5), ValueError, "U"),
    (lambda: fc.dropout_penalty(I2, I2, -1), ValueError, "keep"),
    (lambda: fc.dropout_penalty(I2, I2, None), TypeError, "keep"),
    (lambda: fc.dropout_penalty(I2, I2, 0.5, cov=np.eye(2) * np.nan), ValueError, "cov"),
    (lambda: fc.dropout_penalty_mc(I2, I2, 0.5, X4, n_masks=-3, seed=0), ValueError, "n_masks"),
    (lambda: fc.dropout_penalty_mc(I2, I2, 0.5, X4, n_masks=100, seed=-1), ValueError, "seed"),
    (
        lambda: fc.dropout_penalty_mc(I2, I2, 0.5, X4, n_masks=100, seed=0, block_size=3),
        ValueError,
        "block_size",
    ),
    (lambda: fc.induced_regularizer(np.ones(3), 0.5, 2), ValueError, "M"),
    (lambda: fc.induced_regularizer(I2, 0.5, 0), ValueError, "width"),
    (lambda: fc.equalize(np.ones((2, 3)), np.ones((2, 2))), ValueError, "width"),
    (lambda: fc.is_equalized(I2, I2, rtol=-1), ValueError, "rtol"),
    (lambda: fc.global_optimum(NAN, 0.5, 2), ValueError, "T"),
    (lambda: fc.global_optimum(I2, 0.5, "2"), TypeError, "width"),
    (lambda: fc.spectral_k_support_norm(I2, 0), ValueError, "k"),
    (lambda: fc.block_dropout_penalty(I2, I2, 0.5, 3), ValueError, "block_size"),
    (lambda: fc.structured_penalty(I2, I2, np.eye(3)), ValueError, "mask_cov"),
    (lambda: masks.Bernoulli(2.0), ValueError, "keep"),
    (lambda: masks.Bernoulli(0.5).sample((0, 3), 2, 0), ValueError, "shape"),
    (lambda: masks.Channel(0.5).sample((2, 3), 0, 0), ValueError, "n"),
    (lambda: masks.DropBlock(0.5, 9).sample((1, 4, 4), 2, 0), ValueError, "block_size"),
    (lambda: montecarlo.estimate(lambda r, n: r.random(n), 100, seed="x"), TypeError, "seed"),
    (lambda: conv.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 2, 2))), ValueError, "weight"),
    (lambda: conv.conv2d(np.ones((1, 2, 5, 5)), np.ones((1, 1, 3, 3))), ValueError, "x"),
    (
        lambda: conv.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), "reflect"),
        ValueError,
        "padding",
    ),
    (lambda: conv.conv_matrix(np.ones((1, 1, 5, 5)), (3, 3)), ValueError, "weight"),
    (lambda: conv.tap_column_counts(4, (5, 5)), ValueError, "kernel_size"),
    (lambda: conv.no_gradient_probability(3, (5, 5), 0.0), ValueError, "keep"),
    (lambda: conv.dropout_penalty(u33, np.ones((3, 1, 3, 3)), 0.5, (5, 5)), ValueError, "channel"),
    (lambda: conv.dropout_penalty(u33, v33, 0.5, (5, 5), mode="block"), ValueError, "mode"),
    (
        lambda: conv.dropout_penalty_mc(
            u33, v33, 0.5, (5, 5), mode="block", block_size=7, n_masks=100
        ),
        ValueError,
        "block",
    ),
    (
        lambda: conv.dropout_penalty_mc(u33, v33, 0.5, (5, 5), activation="tanh", n_masks=100),
        ValueError,
        "activation",
    ),
    (lambda: implied.solve_fc(NAN, 0.5, 2), ValueError, "T"),
    (lambda: implied.solve_fc_block(I2, 0.5, 2, 0), ValueError, "block_size"),
    (lambda: implied.conv_induced_regularizer(np.ones(5), 0.5, 0, 8), ValueError, "channels"),
    (lambda: implied.conv_induced_regularizer(np.full(5, np.nan), 0.5, 3, 8), ValueError, "w"),
    (
        lambda: implied.solve_conv(
            np.ones((4, 1, 6)), np.ones((4, 1, 6)), 0.5, 3, 3, solver="NOPE"
        ),
        ValueError,
        "solver",
    ),
    (
        lambda: implied.solve_conv_factored(
            np.ones((4, 1, 6)), np.ones((4, 1, 6)), 0.5, 3, 3, mode="x"
        ),
        ValueError,
        "mode",
    ),
    (lambda: training.train_fc(X4, np.ones((3, 1)), 2, 0.5, 10, 0.1, 0), ValueError, "rows"),
    (lambda: training.train_fc(X4, X4, 2, 0.5, 10, float("nan"), 0), ValueError, "lr"),
    (
        lambda: training.train_conv(np.ones((4, 1, 6)), np.ones((4, 1, 6)), 2, 4, 0.5, 10, 0.1, 0),
        ValueError,
        "kernel_size",
    ),
    (lambda: network.dropout_penalty_mc([network.Linear(I2)], X4, X4), ValueError, "Dropout"),
    (lambda: data.white_inputs(1, 3, 0), ValueError, "n"),
    (lambda: data.conv_task(8, np.ones(2), 10, 10, 0.1, 0), ValueError, "teacher"),
    (
        lambda: compare.compare(data.conv_task(8, np.ones(3), 10, 10, 0.1, 0), 0.5, 0, 3),
        ValueError,
        "channels",
    ),
]


@pytest.mark.parametrize(
    "call,exc,name", CASES, ids=[f"{i:02d}-{c[2]}" for i, c in enumerate(CASES)]
)
def test_bad_input_raises_precise_error(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    assert name in str(info.value), str(info.value)


def test_network_n_masks_named():
    layers = [network.Dropout(masks.Bernoulli(0.5)), network.Linear(I2)]
    with pytest.raises(ValueError, match="n_masks"):
        network.dropout_penalty_mc(layers, X4, X4, n_masks=1)
