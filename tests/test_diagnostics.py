"""regtheory.diagnostics against computations written here: dense formulas for the unit
products, the penalty and the induced regularizer, the exact network penalty, and
enumeration or Monte Carlo over real masks for which kernel taps get no gradient."""

import dataclasses
import itertools
import json

import numpy as np
import pytest

from regtheory import InvalidParameterError, conv, fc, masks, network
from regtheory.diagnostics import diagnose


def relu(z):
    return np.maximum(z, 0.0)


def _dense_products(U, h):
    return np.sqrt(np.sum(U**2, axis=0) * np.mean(h**2, axis=0))


def _induced(M, lam, width, C):
    # λ/w ‖M C^{1/2}‖_*², with C^{1/2} from an eigendecomposition
    e, Q = np.linalg.eigh(C)
    root = (Q * np.sqrt(np.clip(e, 0, None))) @ Q.T
    return lam / width * np.sum(np.linalg.svd(M @ root, compute_uv=False)) ** 2


rng = np.random.default_rng(3)
X = rng.normal(size=(40, 6))
P, V, U = rng.normal(size=(4, 6)), rng.normal(size=(5, 4)), rng.normal(size=(3, 5))
OUT = rng.normal(size=(2, 3))


@pytest.mark.parametrize(
    "mask", [masks.Bernoulli(0.6), masks.Gaussian(0.3), masks.Channel(0.8)], ids=repr
)
def test_relu_block_products_and_penalty(mask):
    layers = [
        network.Linear(P),
        network.ReLU(),
        network.Linear(V),
        network.ReLU(),
        network.Dropout(mask),
        network.Linear(U),
        network.ReLU(),
        network.Linear(OUT),
    ]
    (block,) = diagnose(layers, X).blocks
    h = relu(relu(X @ P.T) @ V.T)
    lam = (1 - mask.keep) / mask.keep
    assert (block.dropout, block.first, block.second) == (4, 2, 5)
    np.testing.assert_allclose(block.unit_products, _dense_products(U, h), rtol=1e-12)
    assert block.penalty == pytest.approx(
        lam * np.sum(np.sum(U**2, axis=0) * np.mean(h**2, axis=0))
    )
    truncated = [network.Linear(V), network.ReLU(), network.Dropout(mask), network.Linear(U)]
    exact = network.dropout_penalty(truncated, relu(X @ P.T))
    assert block.penalty == pytest.approx(exact, rel=1e-10)
    assert not block.linear and block.gap is None and block.induced is None
    products = _dense_products(U, h)
    assert block.spread == pytest.approx(products.max() / products.min())


def test_linear_block_gap_against_dense_induced_regularizer():
    layers = [network.Linear(P), network.Dropout(masks.Bernoulli(0.5)), network.Linear(V)]
    (block,) = diagnose(layers, X).blocks
    C = X.T @ X / len(X)
    # penalty (1): λ Σ ‖u_i‖² v_iᵀ C v_i with v_i the rows of the torch-layout weight
    penalty = np.sum(np.sum(V**2, axis=0) * np.einsum("id,de,ie->i", P, C, P))
    assert block.linear
    assert block.penalty == pytest.approx(penalty, rel=1e-12)
    assert block.induced == pytest.approx(_induced(V @ P, 1.0, 4, C), rel=1e-10)
    assert block.gap == pytest.approx(penalty - block.induced, rel=1e-12)
    assert block.gap > 0.01 * block.penalty
    assert block.relative_gap == pytest.approx(block.gap / block.penalty)


def test_gap_vanishes_after_equalize():
    C = X.T @ X / len(X)
    # fc's factors: U (d_out, w) is the second layer's weight, V (d_in, w) the first's transpose
    U_eq, V_eq = fc.equalize(V, P.T, cov=C)
    layers = [network.Linear(V_eq.T), network.Dropout(masks.Bernoulli(0.7)), network.Linear(U_eq)]
    (block,) = diagnose(layers, X).blocks
    assert abs(block.gap) < 1e-9 * block.penalty
    assert block.spread == pytest.approx(1.0, abs=1e-7)
    assert block.penalty == pytest.approx(_induced(V @ P, 3 / 7, 4, C), rel=1e-9)


def test_bias_and_foreign_nonlinearity_make_a_block_nonlinear():
    c = rng.normal(size=4)
    for layers, h in [
        ([network.Linear(P, bias=c), network.Dropout(masks.Bernoulli(0.5))], X @ P.T + c),
        (
            [
                network.Linear(P),
                network.Elementwise(np.tanh),
                network.Dropout(masks.Bernoulli(0.5)),
            ],
            np.tanh(X @ P.T),
        ),
    ]:
        (block,) = diagnose([*layers, network.Linear(V)], X).blocks
        assert not block.linear and block.gap is None
        assert block.penalty == pytest.approx(np.sum(_dense_products(V, h) ** 2), rel=1e-12)


def _starved(kept, kernel_shape, spatial, padding):
    """Per sampled map (n, *spatial) and tap: no kept hidden unit is in the tap's columns."""
    out = np.empty((len(kept), *kernel_shape), dtype=bool)
    flat = kept.reshape(len(kept), -1)
    for tap in np.ndindex(*kernel_shape):
        w = np.zeros((1, 1, *kernel_shape))
        w[(0, 0, *tap)] = 1.0
        columns = np.any(conv.conv_matrix(w, spatial, padding=padding) != 0, axis=0)
        out[(slice(None), *tap)] = ~np.any(flat[:, columns], axis=1)
    return out


def _conv_net(mask, channels, spatial, kernel, padding="zeros", relu_between=False):
    w1 = rng.normal(size=(channels, 1, *kernel))
    w2 = rng.normal(size=(2, channels, *kernel))
    between = [network.ReLU()] if relu_between else []
    layers = [
        network.Conv(w1, padding=padding),
        network.Dropout(mask),
        *between,
        network.Conv(w2, padding=padding),
    ]
    return layers, rng.normal(size=(3, 1, *spatial))


@pytest.mark.parametrize(
    "spatial,kernel,padding",
    [((3, 3), (3, 3), "zeros"), ((5,), (3,), "zeros"), ((4,), (3,), "circular")],
)
def test_element_taps_against_enumeration(spatial, kernel, padding):
    keep = 0.4
    layers, x = _conv_net(masks.Bernoulli(keep), 2, spatial, kernel, padding)
    (taps,) = diagnose(layers, x).convs
    size = int(np.prod(spatial))
    patterns = np.array(list(itertools.product([False, True], repeat=size)))
    weights = keep ** patterns.sum(1) * (1 - keep) ** (size - patterns.sum(1))
    starved = _starved(patterns.reshape(-1, *spatial), kernel, spatial, padding)
    expected = np.tensordot(weights, starved, axes=1)
    np.testing.assert_allclose(taps.probability, expected, rtol=1e-12, atol=1e-15)
    counts = [
        np.count_nonzero(np.any(conv.conv_matrix(w, spatial, padding=padding) != 0, axis=0))
        for w in np.eye(int(np.prod(kernel))).reshape(-1, 1, 1, *kernel)
    ]
    np.testing.assert_array_equal(taps.column_counts.ravel(), counts)
    assert taps.fc_probability == pytest.approx(1 - keep)
    assert (taps.image_shape, taps.kernel_size, taps.mode) == (spatial, kernel, "element")


def test_channel_taps_through_a_relu_against_real_masks():
    mask = masks.Channel(0.6)
    layers, x = _conv_net(mask, 3, (4, 5), (3, 3), relu_between=True)
    (taps,) = diagnose(layers, x).convs
    assert taps.through_nonlinearity and taps.conv == 3
    kept = mask.sample((3, 4, 5), 2000, seed=1).reshape(-1, 4, 5) != 0  # maps of all channels
    starved = _starved(kept, (3, 3), (4, 5), "zeros")
    se = np.sqrt(0.24 / len(kept))
    assert np.all(np.abs(taps.probability - starved.mean(0)) < 4 * se)


def _dropblock_exact(mask, spatial, kernel, padding):
    """Enumerate every pattern of block starts on a small map."""
    b, gamma = mask.block_size, mask.gamma(spatial)
    starts_shape = tuple(s - b + 1 for s in spatial)
    n_starts = int(np.prod(starts_shape))
    patterns = np.array(list(itertools.product([False, True], repeat=n_starts)))
    dropped = np.zeros((len(patterns), *spatial), dtype=bool)
    for k, pattern in enumerate(patterns):
        for s in zip(*np.nonzero(pattern.reshape(starts_shape)), strict=True):
            dropped[(k, *(slice(i, i + b) for i in s))] = True
    weights = gamma ** patterns.sum(1) * (1 - gamma) ** (n_starts - patterns.sum(1))
    return np.tensordot(weights, _starved(~dropped, kernel, spatial, padding), axes=1)


@pytest.mark.parametrize(
    "spatial,kernel,padding", [((4, 4), (3, 3), "zeros"), ((6,), (5,), "circular")]
)
def test_dropblock_taps_against_enumerated_block_starts(spatial, kernel, padding):
    mask = masks.DropBlock(0.5, block_size=2)
    layers, x = _conv_net(mask, 2, spatial, kernel, padding)
    (taps,) = diagnose(layers, x, n_masks=4000, seed=0).convs
    expected = _dropblock_exact(mask, spatial, kernel, padding)
    assert taps.mode == "block" and taps.n_masks == 4000
    assert np.all(np.abs(taps.probability - expected) < 4 * taps.stderr + 1e-12)
    assert expected.max() > 0.005  # the check is not vacuous
    again = diagnose(layers, x, n_masks=4000, seed=0).convs[0]
    np.testing.assert_array_equal(again.probability, taps.probability)


def test_dropblock_larger_than_the_map_names_the_layer():
    layers, x = _conv_net(masks.DropBlock(0.5, block_size=5), 2, (4, 4), (3, 3))
    with pytest.raises(InvalidParameterError, match=r"layers\[1\]"):
        diagnose(layers, x)


def test_gaussian_masks_starve_no_tap():
    layers, x = _conv_net(masks.Gaussian(0.5), 2, (5, 5), (3, 3))
    (taps,) = diagnose(layers, x).convs
    assert taps.mode == "gaussian" and not taps.probability.any() and taps.fc_probability == 0


def test_report_table_json_and_read_only_records():
    conv_layers, x = _conv_net(masks.Bernoulli(0.5), 2, (4, 4), (3, 3), relu_between=True)
    layers = [
        *conv_layers,
        network.Linear(rng.normal(size=(3, 32))),
        network.Dropout(masks.Bernoulli(0.5)),
        network.Linear(rng.normal(size=(2, 3))),
        network.Dropout(masks.Bernoulli(0.5)),
    ]
    d = diagnose(layers, x)
    assert (len(d.blocks), len(d.convs), d.skipped[0][0]) == (1, 1, 7)
    text = str(d)
    assert "Bernoulli(0.5)" in text and "lower bound" in text and "dropout 7" in text
    assert json.loads(json.dumps(d.to_dict(), allow_nan=False))["blocks"][0]["second"] == 6
    with pytest.raises(ValueError):
        d.blocks[0].unit_products[0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.convs[0].padding = "circular"


def test_bad_input_names_the_argument():
    layers = [network.Linear(P), network.Dropout(masks.Bernoulli(0.5)), network.Linear(V)]
    for bad in [network.Linear(P), "layers", None, [3.0]]:
        with pytest.raises(InvalidParameterError, match=r"\blayers\b"):
            diagnose(bad, X)
    with pytest.raises(InvalidParameterError, match=r"\bmasks\b"):  # checked when built
        network.Dropout(0.5)
    for bad in [X[:, :5], np.full_like(X, np.nan), "X"]:
        with pytest.raises(InvalidParameterError, match=r"\bX\b"):
            diagnose(layers, bad)
    with pytest.raises(InvalidParameterError, match=r"\bn_masks\b"):
        diagnose(layers, X, n_masks=1)


def test_torch_model_block_penalty_against_torch_dropout():
    torch = pytest.importorskip("torch")  # the torch extra is required by tests/conftest.py
    from regtheory.pytorch import from_torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 4, bias=False),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.4),
        torch.nn.Linear(4, 3, bias=False),
    ).double()
    (block,) = diagnose(from_torch(model, (6,)), X).blocks
    # E‖f_r(x) - f(x)‖² over torch's own dropout masks, one per sample and draw
    x = torch.from_numpy(np.tile(X, (500, 1)))
    with torch.no_grad():
        clean = model.eval()(x)
        torch.manual_seed(1)
        draws = ((model.train()(x) - clean) ** 2).sum(1).reshape(500, len(X)).mean(1).numpy()
    se = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(block.penalty - draws.mean()) < 4 * se
