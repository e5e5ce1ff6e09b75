"""The gate-frozen control variate of network.dropout_penalty_mc.

Checked against exact values computed independently: every mask enumerated on a tiny
ReLU network, and the exact engine where the network is linear after its first dropout
(then the control variate is the quantity itself and the estimate is exact). The
variance reduction factors asserted are about a third of the smallest seen over 20 seeds.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import regtheory
from regtheory import network as nw
from regtheory.masks import Bernoulli, Channel, DropBlock
from regtheory.network import _penalty as nw_penalty

N_SE = 4
KEEP = 0.6


def tiny_relu_net(seed: int):
    """3 inputs, two hidden layers of 3 with biases, dropout before each of the last two
    linear layers, a ReLU after the first dropout; 3 samples."""
    rng = np.random.default_rng(seed)
    W1, W2, W3 = rng.normal(size=(3, 3)), rng.normal(size=(3, 3)), rng.normal(size=(2, 3))
    b1, b2 = rng.normal(size=3), 0.5 * rng.normal(size=3)
    X, Y = rng.normal(size=(3, 3)), rng.normal(size=(3, 2))
    layers = [
        nw.Linear(W1, bias=b1),
        nw.ReLU(),
        nw.Dropout(Bernoulli(KEEP)),
        nw.Linear(W2, bias=b2),
        nw.ReLU(),
        nw.Dropout(Bernoulli(KEEP)),
        nw.Linear(W3),
    ]
    return layers, X, Y, (W1, b1, W2, b2, W3)


def enumerated_penalty(weights, X, Y) -> float:
    """E_r L(r) - L(1) over all 2^6 keep patterns of each sample, written out in NumPy."""
    W1, b1, W2, b2, W3 = weights

    def f(x, m1, m2):
        h1 = np.maximum(W1 @ x + b1, 0.0) * m1 / KEEP
        h2 = np.maximum(W2 @ h1 + b2, 0.0) * m2 / KEEP
        return W3 @ h2

    total = 0.0
    for x, y in zip(X, Y):
        clean = np.sum((y - f(x, KEEP, KEEP)) ** 2)
        for bits in itertools.product((0.0, 1.0), repeat=6):
            m = np.array(bits)
            p = np.prod(np.where(m == 1.0, KEEP, 1.0 - KEEP))
            total += p * (np.sum((y - f(x, m[:3], m[3:])) ** 2) - clean)
    return total / len(X)


def relu_mlp(seed: int, width: int = 16, n: int = 20):
    rng = np.random.default_rng(seed)
    d = 6
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, 2))
    layers = [
        nw.Linear(rng.normal(size=(width, d)) / np.sqrt(d), bias=0.1 * rng.normal(size=width)),
        nw.ReLU(),
        nw.Dropout(Bernoulli(0.7)),
        nw.Linear(
            rng.normal(size=(width, width)) / np.sqrt(width), bias=0.1 * rng.normal(size=width)
        ),
        nw.ReLU(),
        nw.Dropout(Bernoulli(0.7)),
        nw.Linear(rng.normal(size=(2, width)) / np.sqrt(width)),
    ]
    return layers, X, Y


def relu_conv(seed: int, channels: int = 8, size: int = 8, n: int = 4):
    rng = np.random.default_rng(seed)

    def weight(c_out, c_in):
        return rng.normal(size=(c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)

    C = channels
    layers = [
        nw.Conv(weight(C, 3), bias=0.1 * rng.normal(size=C)),
        nw.ReLU(),
        nw.Dropout(Bernoulli(0.8)),
        nw.Conv(weight(C, C), bias=0.1 * rng.normal(size=C)),
        nw.ReLU(),
        nw.Dropout(Channel(0.8)),
        nw.Conv(weight(C, C)),
        nw.ReLU(),
        nw.Linear(rng.normal(size=(3, C * size * size)) / np.sqrt(C * size * size)),
    ]
    return layers, rng.normal(size=(n, 3, size, size)), rng.normal(size=(n, 3))


def test_linear_after_the_first_dropout_gives_the_exact_penalty():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    layers = [
        nw.Linear(rng.normal(size=(6, 4)), bias=rng.normal(size=6)),
        nw.ReLU(),
        nw.Dropout(Bernoulli(0.3)),
        nw.Linear(rng.normal(size=(5, 6)), bias=rng.normal(size=5)),
        nw.Dropout(Bernoulli(0.5)),
        nw.Linear(rng.normal(size=(2, 5))),
    ]
    est = nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=300, rng=1, control_variate=True)
    exact = nw.dropout_penalty(layers, X, Y=Y)
    assert est.mean == pytest.approx(exact, rel=1e-10)
    assert est.stderr <= 1e-10 * exact
    lo, hi = est.ci()
    assert lo <= exact <= hi
    assert est.variance_reduction == "gate-frozen control variate"
    assert est.reduction_factor > 1e10


def test_conv_net_linear_after_the_first_dropout_gives_the_exact_penalty():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2, 2, 6, 6))
    layers = [
        nw.Conv(rng.normal(size=(3, 2, 3, 3)), bias=rng.normal(size=3)),
        nw.ReLU(),
        nw.Dropout(Channel(0.5)),
        nw.Conv(rng.normal(size=(3, 3, 3, 3))),
        nw.Dropout(Bernoulli(0.7)),
        nw.Linear(rng.normal(size=(2, 3 * 36))),
    ]
    Y = rng.normal(size=(2, 2))
    est = nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=200, rng=0, control_variate=True)
    assert est.mean == pytest.approx(nw.dropout_penalty(layers, X, Y=Y), rel=1e-10)


@pytest.mark.parametrize("seed", [2, 7])
def test_tiny_relu_net_agrees_with_enumeration(seed):
    layers, X, Y, weights = tiny_relu_net(seed)
    exact = enumerated_penalty(weights, X, Y)
    plain = nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=4000, rng=seed)
    controlled = nw.dropout_penalty(
        layers, X, Y=Y, method="mc", n_masks=4000, rng=seed, control_variate=True
    )
    assert abs(plain.zscore(exact)) < N_SE
    assert abs(controlled.zscore(exact)) < N_SE
    assert controlled.stderr < plain.stderr


def test_reduction_on_a_relu_mlp():
    # 20 seeds: factors 4.8-5.6 (over 20 random nets 2.9-30, median 10)
    layers, X, Y = relu_mlp(0)
    plain = nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=2000, rng=10)
    est = nw.dropout_penalty(
        layers, X, Y=Y, method="mc", n_masks=2000, rng=11, control_variate=True
    )
    assert abs(plain.mean - est.mean) < N_SE * np.hypot(plain.stderr, est.stderr)
    assert est.reduction_factor > 3.5
    # the factor is the variance ratio, seen also across the two runs
    assert (plain.stderr / est.stderr) ** 2 > 3


def test_reduction_on_a_relu_conv_net():
    # 20 seeds: factors 2.4-3.5 (over 20 random nets 2.2-5.9)
    layers, X, Y = relu_conv(0)
    plain = nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=400, rng=10)
    est = nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=400, rng=11, control_variate=True)
    assert abs(plain.mean - est.mean) < N_SE * np.hypot(plain.stderr, est.stderr)
    assert est.reduction_factor > 1.8


@pytest.mark.slow
def test_coverage_of_the_controlled_interval():
    layers, X, Y, weights = tiny_relu_net(7)
    exact = enumerated_penalty(weights, X, Y)
    covered = 0
    for seed in range(200):
        est = nw.dropout_penalty(
            layers, X, Y=Y, method="mc", n_masks=100, rng=seed, control_variate=True
        )
        lo, hi = est.ci()
        covered += lo <= exact <= hi
    assert 0.92 <= covered / 200 <= 0.98


def test_plain_estimate_is_unchanged_and_says_so():
    layers, X, Y = relu_mlp(1, width=4, n=5)
    default = nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=100, rng=3)
    plain = nw.dropout_penalty(
        layers, X, Y=Y, method="mc", n_masks=100, rng=3, control_variate=False
    )
    assert default == plain
    assert plain.variance_reduction == "none" and plain.reduction_factor == 1.0
    assert "variance_reduction" not in plain.to_dict()
    est = nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=100, rng=3, control_variate=True)
    record = est.to_dict()
    assert record["variance_reduction"] == "gate-frozen control variate"
    assert record["reduction_factor"] == est.reduction_factor


def test_other_nonlinearities_are_refused():
    layers, X, Y = relu_mlp(2, width=4, n=5)
    layers[4] = nw.Elementwise(np.tanh, name="tanh")
    with pytest.raises(regtheory.InvalidParameterError, match="control_variate"):
        nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=100, rng=0, control_variate=True)
    with pytest.raises(regtheory.InvalidParameterError, match="control_variate"):
        nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=100, rng=0, control_variate=1)


@pytest.mark.slow
def test_frozen_penalty_of_a_conv_net_matches_its_monte_carlo():
    # The exact penalty of the gate-frozen net (a per-sample fixed multiplier after each
    # mask: DropBlock, channel and element masks, zero padding, a fully connected end)
    # against the Monte Carlo of that net, its gate written as an Elementwise layer.
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(2, 2, 7, 7)), rng.normal(size=(2, 3))
    layers = [
        nw.Conv(rng.normal(size=(3, 2, 3, 3)), bias=rng.normal(size=3)),
        nw.ReLU(),
        nw.Dropout(DropBlock(0.7, block_size=3)),
        nw.Conv(rng.normal(size=(3, 3, 3, 3)), bias=rng.normal(size=3)),
        nw.ReLU(),
        nw.Dropout(Channel(0.6)),
        nw.Conv(rng.normal(size=(3, 3, 3, 3))),
        nw.ReLU(),
        nw.Dropout(Bernoulli(0.8)),
        nw.Linear(rng.normal(size=(3, 3 * 49))),
    ]
    gates = nw_penalty._clean_gates(layers, X)
    assert all(0.2 < g.mean() < 0.8 for g in gates)
    exact = nw_penalty._frozen_penalty(layers, X, Y, gates)
    means, variances = [], []
    for k in range(len(X)):
        frozen = list(layers)
        for t, g in zip((4, 7), gates):
            frozen[t] = nw.Elementwise(lambda z, g=g[k]: z * g, name="gate")
        clean = nw.forward(frozen, X[k : k + 1])
        out = nw.forward(frozen, X[k : k + 1], n_draws=20000, rng=k)
        d = np.sum((Y[k] - out[:, 0]) ** 2, axis=1) - np.sum((Y[k] - clean[0]) ** 2)
        means.append(d.mean())
        variances.append(d.var(ddof=1) / len(d))
    assert abs(np.mean(means) - exact) < N_SE * np.sqrt(np.sum(variances)) / len(X)


def test_relu_after_a_linear_that_reads_maps():
    """Gates on maps and, after the flatten, on vectors in one net: the controlled
    estimate agrees with the plain one, and the control variate reduces the variance."""
    rng = np.random.default_rng(12)
    layers = [
        nw.Conv(rng.normal(size=(3, 2, 3, 3))),
        nw.ReLU(),
        nw.Dropout(Bernoulli(0.7)),
        nw.Conv(rng.normal(size=(3, 3, 3, 3)), bias=rng.normal(size=3)),
        nw.ReLU(),
        nw.Linear(rng.normal(size=(6, 75)) / 5),
        nw.ReLU(),
        nw.Dropout(Bernoulli(0.8)),
        nw.Linear(rng.normal(size=(2, 6))),
    ]
    X = rng.normal(size=(6, 2, 5, 5))
    Y = nw.forward(layers, X) + rng.normal(size=(6, 2))
    plain = nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=3000, rng=1)
    est = nw.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=3000, rng=2, control_variate=True)
    assert abs(plain.mean - est.mean) < N_SE * np.hypot(plain.stderr, est.stderr)
    assert est.reduction_factor > 1.0
