"""Bad input at the public entry points: an InvalidParameterError (a ValueError and a
TypeError) that names the argument, never a NumPy/SciPy/cvxpy error from deep inside,
and never a NaN result."""

import numpy as np
import pytest

from regtheory import (
    InvalidParameterError,
    compare,
    conv,
    data,
    fc,
    implied,
    masks,
    montecarlo,
    network,
    sweep,
    training,
)
from regtheory.figures import compute

NAN = np.full((2, 2), np.nan)
I2 = np.eye(2)
X4 = np.ones((4, 2))
u33 = np.ones((1, 2, 3, 3))
v33 = np.ones((2, 1, 3, 3))
TASK8 = data.conv_task(8, np.ones(3), 10, 10, 0.1, rng=0)

CASES = [
    # (call, exception, argument named in the message)
    (lambda: fc.dropout_penalty(NAN, I2, 0.5), InvalidParameterError, "U"),
    (lambda: fc.dropout_penalty(I2, I2, -1), InvalidParameterError, "keep"),
    (lambda: fc.dropout_penalty(I2, I2, None), InvalidParameterError, "keep"),
    (lambda: fc.dropout_penalty(I2, I2, 0.5, cov=np.eye(2) * np.nan), InvalidParameterError, "cov"),
    (
        lambda: fc.dropout_penalty(I2, I2, 0.5, X=X4, method="mc", n_masks=-3, rng=0),
        InvalidParameterError,
        "n_masks",
    ),
    (
        lambda: fc.dropout_penalty(I2, I2, 0.5, X=X4, method="mc", n_masks=100, rng=-1),
        InvalidParameterError,
        "rng",
    ),
    (
        lambda: fc.block_dropout_penalty(I2, I2, 0.5, 3, X=X4, method="mc", n_masks=100),
        InvalidParameterError,
        "block_size",
    ),
    (lambda: fc.induced_regularizer(np.ones(3), 0.5, 2), InvalidParameterError, "M"),
    (lambda: fc.induced_regularizer(I2, 0.5, 0), InvalidParameterError, "width"),
    (lambda: fc.equalize(np.ones((2, 3)), np.ones((2, 2))), InvalidParameterError, "width"),
    (lambda: fc.is_equalized(I2, I2, rtol=-1), InvalidParameterError, "rtol"),
    (lambda: fc.global_optimum(NAN, 0.5, 2), InvalidParameterError, "T"),
    (lambda: fc.global_optimum(I2, 0.5, "2"), InvalidParameterError, "width"),
    (lambda: fc.spectral_k_support_norm(I2, 0), InvalidParameterError, "k"),
    (lambda: fc.block_dropout_penalty(I2, I2, 0.5, 3), InvalidParameterError, "block_size"),
    (lambda: fc.structured_penalty(I2, I2, np.eye(3)), InvalidParameterError, "mask_cov"),
    (lambda: masks.Bernoulli(2.0), InvalidParameterError, "keep"),
    (lambda: masks.Bernoulli(0.5).sample((0, 3), 2, 0), InvalidParameterError, "shape"),
    (lambda: masks.Channel(0.5).sample((2, 3), 0, 0), InvalidParameterError, "n"),
    (lambda: masks.DropBlock(0.5, 9).sample((1, 4, 4), 2, 0), InvalidParameterError, "block_size"),
    (
        lambda: montecarlo.estimate(lambda r, n: r.random(n), n_masks=100, rng="x"),
        InvalidParameterError,
        "rng",
    ),
    (
        lambda: conv.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 2, 2))),
        InvalidParameterError,
        "weight",
    ),
    (lambda: conv.conv2d(np.ones((1, 2, 5, 5)), np.ones((1, 1, 3, 3))), InvalidParameterError, "x"),
    (
        lambda: conv.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), padding="reflect"),
        InvalidParameterError,
        "padding",
    ),
    (lambda: conv.conv_matrix(np.ones((1, 1, 5, 5)), (3, 3)), InvalidParameterError, "weight"),
    (lambda: conv.tap_column_counts(4, (5, 5)), InvalidParameterError, "kernel_size"),
    (lambda: conv.no_gradient_probability(3, (5, 5), 0.0), InvalidParameterError, "keep"),
    (
        lambda: conv.dropout_penalty(u33, np.ones((3, 1, 3, 3)), 0.5, (5, 5)),
        InvalidParameterError,
        "channel",
    ),
    (
        lambda: conv.dropout_penalty(u33, v33, 0.5, (5, 5), mode="block"),
        InvalidParameterError,
        "block_size",
    ),
    (
        lambda: conv.dropout_penalty_mc(
            u33, v33, 0.5, (5, 5), mode="block", block_size=7, n_masks=100
        ),
        InvalidParameterError,
        "block",
    ),
    (
        lambda: conv.dropout_penalty_mc(u33, v33, 0.5, (5, 5), activation="tanh", n_masks=100),
        InvalidParameterError,
        "activation",
    ),
    (lambda: implied.solve_fc(NAN, 0.5, 2), InvalidParameterError, "T"),
    (lambda: implied.solve_fc_block(I2, 0.5, 2, 0), InvalidParameterError, "block_size"),
    (
        lambda: implied.conv_induced_regularizer(np.ones(5), 0.5, 0, 8),
        InvalidParameterError,
        "channels",
    ),
    (
        lambda: implied.conv_induced_regularizer(np.full(5, np.nan), 0.5, 3, 8),
        InvalidParameterError,
        "w",
    ),
    (
        lambda: implied.solve_conv(
            np.ones((4, 1, 6)), np.ones((4, 1, 6)), 0.5, 3, 3, solver="NOPE"
        ),
        InvalidParameterError,
        "solver",
    ),
    (
        lambda: implied.solve_conv_factored(
            np.ones((4, 1, 6)), np.ones((4, 1, 6)), 0.5, 3, 3, mode="x"
        ),
        InvalidParameterError,
        "mode",
    ),
    (
        lambda: training.train_fc(X4, np.ones((3, 1)), 0.5, 2, steps=10, lr=0.1, rng=0),
        InvalidParameterError,
        "rows",
    ),
    (
        lambda: training.train_fc(X4, X4, 0.5, 2, steps=10, lr=float("nan")),
        InvalidParameterError,
        "lr",
    ),
    (
        lambda: training.train_conv(
            np.ones((4, 1, 6)), np.ones((4, 1, 6)), 0.5, 2, 4, steps=10, lr=0.1
        ),
        InvalidParameterError,
        "kernel_size",
    ),
    (
        lambda: network.dropout_penalty_mc([network.Linear(I2)], X4, X4),
        InvalidParameterError,
        "Dropout",
    ),
    (lambda: data.white_inputs(1, 3, rng=0), InvalidParameterError, "n"),
    (lambda: data.conv_task(8, np.ones(2), 10, 10, 0.1, rng=0), InvalidParameterError, "teacher"),
    (
        lambda: compare.compare(data.conv_task(8, np.ones(3), 10, 10, 0.1, rng=0), 0.5, 0, 3),
        InvalidParameterError,
        "channels",
    ),
    (
        lambda: montecarlo.estimate(lambda r, n: r.random(n + 1), n_masks=10, rng=0),
        InvalidParameterError,
        "draw",
    ),
    (
        lambda: montecarlo.estimate(lambda r, n: r.random(n), n_masks=10, rng=0).ci(level=1.5),
        InvalidParameterError,
        "level",
    ),
    (lambda: masks.DropBlock(0.5, 3, normalize="x"), InvalidParameterError, "normalize"),
    (
        lambda: network.forward([network.Linear(np.ones((2, 3)))], X4),
        InvalidParameterError,
        "Linear",
    ),
    (lambda: sweep.Sweep(n_jobs=0), InvalidParameterError, "n_jobs"),
    (lambda: sweep.Sweep(n_jobs=2, scheduler="tcp://h:1"), InvalidParameterError, "scheduler"),
    (lambda: compute("no_such_figure"), InvalidParameterError, "no_such_figure"),
    (lambda: compare.compare(TASK8, 0.5, 3, 3, solver="NOPE"), InvalidParameterError, "solver"),
    (lambda: compare.compare(TASK8, 0.5, 3, 4), InvalidParameterError, "kernel_size"),
    (lambda: compare.compare(TASK8, 0.5, 3, 9), InvalidParameterError, "kernel_size"),
    (lambda: compare.compare(TASK8, 0.5, 3, 5), InvalidParameterError, "even signal length"),
    (lambda: compare.compare(TASK8, 0.5, 3, 3, block_size=5), InvalidParameterError, "block_size"),
    (lambda: compare.compare(TASK8, 0.5, 3, 3, methods=3), InvalidParameterError, "methods"),
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
    with pytest.raises(InvalidParameterError, match="n_masks"):
        network.dropout_penalty_mc(layers, X4, X4, n_masks=1)
