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
    glm,
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


# ----------------------------------------------------------------------------- dtypes

# Arrays that are not real numbers, by what their dtype is called in the message: a
# complex array cast to float would silently drop its imaginary part, and an object array
# used to be reported as holding "NaN or inf".
NOT_REAL = {
    "complex": lambda a: np.asarray(a, dtype=float) * (1 + 1j),
    "object": lambda a: np.asarray(a, dtype=float).astype(object),
    "<U": lambda a: np.asarray(a, dtype=float).astype(str),
    "datetime64": lambda a: np.zeros(np.shape(a), dtype="datetime64[D]"),
    "timedelta64": lambda a: np.ones(np.shape(a), dtype="timedelta64[s]"),
}

# (call taking the corrupted array, the good array it replaces, the argument's name)
ARRAY_ENTRIES = [
    (lambda a: fc.dropout_penalty(a, I2, 0.5), I2, "U"),
    (lambda a: fc.dropout_penalty(I2, a, 0.5), I2, "V"),
    (lambda a: fc.dropout_penalty(I2, I2, 0.5, cov=a), I2, "cov"),
    (lambda a: fc.dropout_penalty(I2, I2, 0.5, X=a, method="mc", n_masks=100), X4, "X"),
    (lambda a: fc.induced_regularizer(a, 0.5, 2), I2, "M"),
    (lambda a: fc.global_optimum(a, 0.5, 2), I2, "T"),
    (lambda a: fc.unit_products(I2, a), I2, "V"),
    (lambda a: conv.conv2d(a, np.ones((1, 1, 3, 3))), np.ones((1, 1, 5, 5)), "x"),
    (lambda a: conv.conv_matrix(a, (5, 5)), u33, "weight"),
    (lambda a: conv.dropout_penalty(a, v33, 0.5, (5, 5)), u33, "u"),
    (lambda a: conv.dropout_penalty_mc(u33, a, 0.5, (5, 5), n_masks=100), v33, "v"),
    (lambda a: implied.solve_fc(a, 0.5, 2), I2, "T"),
    (lambda a: implied.conv_induced_regularizer(a, 0.5, 3, 8), np.ones(5), "w"),
    (
        lambda a: network.dropout_penalty(
            [network.Dropout(masks.Bernoulli(0.5)), network.Linear(a)], X4
        ),
        I2,
        "weight",
    ),
    (lambda a: network.DropConnect(a, 0.5), I2, "weight"),
    (
        lambda a: network.dropout_penalty(
            [network.Dropout(masks.Bernoulli(0.5)), network.Linear(I2)], a
        ),
        X4,
        "X",
    ),
    (
        lambda a: network.dropout_penalty_mc(
            [network.Dropout(masks.Bernoulli(0.5)), network.Linear(I2)], X4, a, n_masks=100
        ),
        X4,
        "Y",
    ),
    (lambda a: glm.dropout_penalty(a, X4, 0.5), np.ones(2), "beta"),
    (lambda a: glm.solve_dropout(X4, a, 0.5), np.array([0.0, 1.0, 0.0, 1.0]), "y"),
    (lambda a: training.train_fc(a, X4, 0.5, 2, steps=10, lr=0.1), X4, "X"),
    (lambda a: data.conv_task(8, a, 10, 10, 0.1, rng=0), np.ones(3), "teacher"),
]


@pytest.mark.parametrize("kind", list(NOT_REAL))
@pytest.mark.parametrize(
    "call,good,name", ARRAY_ENTRIES, ids=[f"{i:02d}-{e[2]}" for i, e in enumerate(ARRAY_ENTRIES)]
)
def test_non_real_arrays_refused_with_their_dtype(kind, call, good, name):
    call(good)  # the good array passes, so the refusal below is about the dtype
    with pytest.raises(InvalidParameterError) as info:
        call(NOT_REAL[kind](good))
    message = str(info.value)
    assert f"`{name}`" in message and kind in message, message
    assert "NaN or inf" not in message


def test_long_double_beyond_float64_named():
    """A long double array is accepted while it fits float64 and refused, by name, when
    its numbers would become inf (where long double is float64 itself, they already are)."""
    assert fc.dropout_penalty(I2.astype(np.longdouble), I2, 0.5) == 2.0  # λ = 1, Σ‖u‖²‖v‖²
    big = np.full((2, 2), np.longdouble(1e300)) ** 2
    expected = "beyond the float64 range" if np.all(np.isfinite(big)) else "finite numbers"
    with pytest.raises(InvalidParameterError, match=expected):
        fc.dropout_penalty(big, I2, 0.5)


def test_exact_network_refusal_names_the_random_layer_and_the_nonlinearity():
    """A non-linearity after the first random layer: the message calls a DropConnect layer
    by its name and an elementwise layer by its own name (no "a Elementwise")."""
    drop = network.Dropout(masks.Bernoulli(0.5))
    connect = network.DropConnect(I2, 0.5)
    tanh = network.Elementwise(np.tanh, name="tanh")
    cases = [
        ([drop, network.Linear(I2), tanh, network.Linear(I2)], "dropout layer", "'tanh'"),
        ([connect, network.ReLU(), network.Linear(I2)], "DropConnect layer", "a ReLU"),
    ]
    for layers, random_layer, nonlinearity in cases:
        with pytest.raises(InvalidParameterError) as info:
            network.dropout_penalty(layers, X4, method="exact")
        message = str(info.value)
        assert random_layer in message and nonlinearity in message, message
        assert "a Elementwise" not in message


def test_a_complex_torch_tensor_is_refused_with_its_dtype():
    import torch  # the torch extra is part of the test environment (tests/conftest.py)

    from regtheory import pytorch

    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(2, 1))
    X = torch.ones((4, 2), dtype=torch.complex128)
    with pytest.raises(InvalidParameterError, match="`X`.*complex128"):
        pytorch.dropout_penalty(model, X)
    assert pytorch.dropout_penalty(model, X.real, n_masks=100).total >= 0  # the real part passes
