"""Monte Carlo network penalty against closed forms (last-layer dropout) and exact enumeration."""

import itertools

import numpy as np
import pytest

from regtheory import conv, fc, network
from regtheory.masks import Bernoulli, Channel, DropBlock
from regtheory.network import Conv, Dropout, Linear, ReLU

N_SE = 4


def test_last_layer_linear_matches_fc_closed_form():
    rng = np.random.default_rng(0)
    U, V = rng.normal(size=(3, 6)), rng.normal(size=(5, 6))
    X, Y = rng.normal(size=(40, 5)), rng.normal(size=(40, 3))
    keep = 0.6
    layers = [Linear(V.T), Dropout(Bernoulli(keep)), Linear(U)]
    est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=4000, rng=1)
    closed = fc.dropout_penalty(U, V, keep, cov=X.T @ X / len(X))
    assert abs(est.zscore(closed)) < N_SE, (closed, est)


def test_last_layer_relu_matches_arora_et_al():
    """f(x) = U diag(r/θ) relu(Vᵀx): penalty λ Σ ||u_i||² mean_k relu(h_ki)² (ICML 2021)."""
    rng = np.random.default_rng(2)
    U, V = rng.normal(size=(2, 8)), rng.normal(size=(4, 8))
    X, Y = rng.normal(size=(60, 4)), rng.normal(size=(60, 2))
    keep = 0.3
    A = np.maximum(X @ V, 0)
    closed = fc.dropout_penalty(U, np.eye(8), keep, cov=A.T @ A / len(X))
    layers = [Linear(V.T), ReLU(), Dropout(Bernoulli(keep)), Linear(U)]
    est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=4000, rng=3)
    assert abs(est.zscore(closed)) < N_SE, (closed, est)


@pytest.mark.parametrize("mode,masks", [("element", Bernoulli(0.5)), ("channel", Channel(0.5))])
@pytest.mark.parametrize("padding", ["zeros", "circular"])
def test_conv_last_layer_matches_conv_closed_form(mode, masks, padding):
    rng = np.random.default_rng(4)
    v, u = rng.normal(size=(3, 2, 3, 3)), rng.normal(size=(2, 3, 3, 3))
    X = rng.normal(size=(10, 2, 5, 6))
    Y = rng.normal(size=(10, 2, 5, 6))
    layers = [Conv(v, padding=padding), ReLU(), Dropout(masks), Conv(u, padding=padding)]
    est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=3000, rng=5)
    closed = conv.dropout_penalty(
        u, v, 0.5, (5, 6), padding=padding, mode=mode, x=X, activation="relu"
    )
    assert abs(est.zscore(closed)) < N_SE, (closed, est)


def test_middle_layer_dropout_matches_exact_enumeration():
    """Dropout before a ReLU (no closed form): against the exact mean over all 2^w masks."""
    rng = np.random.default_rng(6)
    w, keep = 4, 0.7
    W1, W2, W3 = rng.normal(size=(w, 3)), rng.normal(size=(w, w)), rng.normal(size=(2, w))
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    layers = [Linear(W1), Dropout(Bernoulli(keep)), ReLU(), Linear(W2), ReLU(), Linear(W3)]

    def f(r):
        return np.maximum(np.maximum(X @ W1.T * r / keep, 0) @ W2.T, 0) @ W3.T

    exact = 0.0
    for r in itertools.product([0, 1], repeat=w):
        r = np.array(r, dtype=float)
        prob = np.prod(np.where(r == 1, keep, 1 - keep))
        exact += prob * np.mean(np.sum((Y - f(r)) ** 2, axis=1))
    exact -= np.mean(np.sum((Y - f(np.full(w, keep))) ** 2, axis=1))
    est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=20_000, rng=7)
    assert abs(est.zscore(exact)) < N_SE, (exact, est)


def test_dropblock_network_runs_and_is_reproducible():
    rng = np.random.default_rng(8)
    v, u = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(1, 2, 3, 3))
    X, Y = rng.normal(size=(4, 1, 8, 8)), rng.normal(size=(4, 1, 8, 8))
    layers = [Conv(v), Dropout(DropBlock(0.8, 3)), Conv(u)]
    a = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=500, rng=9)
    b = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=500, rng=9)
    assert a == b and a.mean > 0 and a.stderr > 0


def test_forward_without_masks_is_the_plain_network():
    rng = np.random.default_rng(10)
    W1, W2 = rng.normal(size=(5, 3)), rng.normal(size=(2, 5))
    X = rng.normal(size=(7, 3))
    out = network.forward([Linear(W1), ReLU(), Dropout(Bernoulli(0.5)), Linear(W2)], X)
    np.testing.assert_allclose(out, np.maximum(X @ W1.T, 0) @ W2.T)
    draws = network.forward([Linear(W1), Dropout(Bernoulli(0.5))], X, n_draws=3, rng=0)
    assert draws.shape == (3, 7, 5)


def test_bad_inputs():
    X, Y = np.ones((3, 2)), np.ones((3, 1))
    with pytest.raises(ValueError, match="no Dropout"):
        network.dropout_penalty([Linear(np.ones((1, 2)))], X, Y=Y, method="mc")
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        network.dropout_penalty([Linear(np.ones((1, 2))), "relu"], X, Y=Y, method="mc")
    with pytest.raises(ValueError, match="output shape"):
        network.dropout_penalty(
            [Dropout(Bernoulli(0.5)), Linear(np.ones((2, 2)))], X, Y=Y, method="mc"
        )
    with pytest.raises(ValueError, match="same number of samples"):
        network.dropout_penalty(
            [Dropout(Bernoulli(0.5)), Linear(np.ones((1, 2)))], X, Y=Y[:2], method="mc"
        )
    with pytest.raises(ValueError, match="input features"):
        network.dropout_penalty(
            [Dropout(Bernoulli(0.5)), Linear(np.ones((1, 5)))], X, Y=Y, method="mc"
        )
    with pytest.raises(TypeError, match="layers"):
        network.dropout_penalty(Linear(np.ones((1, 2))), X, Y=Y, method="mc")


def test_too_few_masks_refused_with_the_minimum_for_the_layers():
    """One dropout layer: n·q(1-q) >= 14 at q = keep. Two in series: a unit kept in both
    (probability keep², whose inverted masks scale its draw like 1/keep⁴) counts too."""
    rng = np.random.default_rng(11)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    one = [
        Linear(rng.normal(size=(4, 3))),
        Dropout(Bernoulli(0.5)),
        Linear(rng.normal(size=(2, 4))),
    ]
    with pytest.raises(ValueError, match="`n_masks` must be at least 56 "):
        network.dropout_penalty(one, X, Y=Y, method="mc", n_masks=55)
    assert network.dropout_penalty(one, X, Y=Y, method="mc", n_masks=56).n_samples == 56
    two = [
        Linear(rng.normal(size=(4, 3))),
        Dropout(Bernoulli(0.1)),
        Linear(rng.normal(size=(4, 4))),
        Dropout(Bernoulli(0.1)),
        Linear(rng.normal(size=(2, 4))),
    ]
    need = int(np.ceil(14 / (0.01 * 0.99)))  # 1415
    with pytest.raises(ValueError, match=f"`n_masks` must be at least {need} .*0.01"):
        network.dropout_penalty(two, X, Y=Y, method="mc", n_masks=need - 1)
    assert network.dropout_penalty(two, X, Y=Y, method="mc", n_masks=need).n_samples == need


# ----------------------------------------------------------------------------- one grammar


def _relu_nets(rng):
    W, U = rng.normal(size=(6, 4)), rng.normal(size=(2, 6))
    linear_after = [Linear(W), ReLU(), Dropout(Bernoulli(0.5)), Linear(U)]
    relu_after = [Linear(W), Dropout(Bernoulli(0.5)), ReLU(), Linear(U)]
    return linear_after, relu_after


def test_one_penalty_function_chooses_exact_or_monte_carlo():
    rng = np.random.default_rng(60)
    linear_after, relu_after = _relu_nets(rng)
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 2))
    exact = network.dropout_penalty(linear_after, X, Y=Y)
    assert exact.method == "exact" and exact.n_masks is None and exact.stderr == 0.0
    assert exact == network.dropout_penalty_terms(linear_after, X, Y=Y).value
    mc = network.dropout_penalty(linear_after, X, Y=Y, method="mc", n_masks=3000, rng=1)
    assert mc.method == "mc" and mc.n_masks == 3000 and abs(mc - exact) < N_SE * mc.stderr
    # "auto" estimates what has no exact form; "exact" refuses it, naming the layer
    auto = network.dropout_penalty(relu_after, X, Y=Y)
    assert auto.method == "mc" and auto.n_masks == 2000  # the one default rule
    with pytest.raises(ValueError, match=r"position 1 feeds a non-linearity.*method='mc'"):
        network.dropout_penalty(relu_after, X, Y=Y, method="exact")
    with pytest.raises(ValueError, match="`method` must be one of"):
        network.dropout_penalty(linear_after, X, method="closed form")


def test_the_former_names_give_the_same_numbers_with_a_warning():
    rng = np.random.default_rng(61)
    _, relu_after = _relu_nets(rng)
    X, Y = rng.normal(size=(10, 4)), rng.normal(size=(10, 2))
    new = network.dropout_penalty(relu_after, X, Y=Y, method="mc", n_masks=2000, rng=7)
    with pytest.warns(DeprecationWarning, match="dropout_penalty_mc"):
        old = network.dropout_penalty_mc(relu_after, X, Y, n_masks=2000, seed=7)
    assert (old.value, old.stderr, old.n_masks) == (new.value, new.stderr, new.n_masks)
    masked = network.forward(relu_after, X, n_draws=3, rng=8)
    with pytest.warns(DeprecationWarning, match="forward"):
        assert np.array_equal(network.forward(relu_after, X, seed=8, n_draws=3), masked)
    with pytest.warns(DeprecationWarning, match="forward"):
        clean = network.forward(relu_after, X, seed=None)
    assert np.array_equal(clean, network.forward(relu_after, X))
    terms = network.dropout_penalty_terms(_relu_nets(rng)[0], X)
    with pytest.warns(DeprecationWarning, match="PenaltyTerms.total"):
        assert terms.total == terms.value
