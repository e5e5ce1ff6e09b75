"""Statistical validity: the 95 % intervals of every Monte Carlo estimator cover the exact value
92-98 % of the time over many independent, fixed seeds (deterministic).

With 400 seeds the coverage of an exact 95 % interval has standard deviation
sqrt(0.95·0.05/400) ≈ 1.1 %, so [92 %, 98 %] is about ±2.75 standard deviations.
The normal interval needs the CLT to hold for the draws (penalties are skewed:
a sum of squares); 500 masks per estimate leaves a margin. Measured for the FC
estimator of the first test: 95.3 % at 20 masks, 93.3 % at 50, 95.5 % at 500.
"""

import numpy as np
import pytest

from regtheory import conv, fc, network
from regtheory.masks import Bernoulli
from regtheory.network import Dropout, Linear, ReLU

SEEDS = range(400)
N_MASKS = 500


def coverage(estimate_for_seed, exact):
    hits = 0
    for seed in SEEDS:
        lo, hi = estimate_for_seed(seed).ci(0.95)
        hits += lo <= exact <= hi
    return hits / len(SEEDS)


def test_fc_interval_coverage():
    rng = np.random.default_rng(0)
    U, V, X = rng.normal(size=(3, 5)), rng.normal(size=(4, 5)), rng.normal(size=(50, 4))
    exact = fc.dropout_penalty(U, V, 0.6, cov=X.T @ X / 50)
    cov = coverage(lambda s: fc.dropout_penalty_mc(U, V, 0.6, X, n_masks=N_MASKS, seed=s), exact)
    assert 0.92 <= cov <= 0.98, cov


def test_fc_block_interval_coverage():
    rng = np.random.default_rng(1)
    U, V, X = rng.normal(size=(3, 6)), rng.normal(size=(4, 6)), rng.normal(size=(50, 4))
    exact = fc.block_dropout_penalty(U, V, 0.6, 2, cov=X.T @ X / 50)
    cov = coverage(
        lambda s: fc.dropout_penalty_mc(U, V, 0.6, X, n_masks=N_MASKS, seed=s, block_size=2), exact
    )
    assert 0.92 <= cov <= 0.98, cov


@pytest.mark.parametrize("mode", ["element", "channel"])
def test_conv_interval_coverage(mode):
    rng = np.random.default_rng(2)
    v, u = rng.normal(size=(3, 1, 3, 3)), rng.normal(size=(1, 3, 3, 3))
    x = rng.normal(size=(4, 1, 5, 5))
    exact = conv.dropout_penalty(u, v, 0.5, (5, 5), "zeros", mode=mode, x=x)
    cov = coverage(
        lambda s: conv.dropout_penalty_mc(
            u, v, 0.5, (5, 5), "zeros", mode=mode, x=x, n_masks=N_MASKS, seed=s, batch_size=N_MASKS
        ),
        exact,
    )
    assert 0.92 <= cov <= 0.98, cov


def test_network_interval_coverage():
    rng = np.random.default_rng(3)
    W1, W2 = rng.normal(size=(6, 3)), rng.normal(size=(2, 6))
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    A = np.maximum(X @ W1.T, 0)
    exact = fc.dropout_penalty(W2, np.eye(6), 0.7, cov=A.T @ A / 20)  # last layer: Arora et al.
    layers = [Linear(W1), ReLU(), Dropout(Bernoulli(0.7)), Linear(W2)]
    cov = coverage(
        lambda s: network.dropout_penalty_mc(layers, X, Y, n_masks=N_MASKS, seed=s), exact
    )
    assert 0.92 <= cov <= 0.98, cov


@pytest.mark.parametrize("with_target", [False, True])
def test_dropblock_interval_coverage(with_target):
    """DropBlock: exact value from formula (4) with exact mask moments, plus the target's
    cross term (tests/_dropblock.py, dense matrices). White input without a target; data
    with a target, where the estimator averages the loss gap per mask."""
    from _dropblock import dropblock_penalty_exact

    rng = np.random.default_rng(4)
    v, u = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(1, 2, 3, 3))
    x = y = None
    if with_target:
        x, y = rng.normal(size=(4, 1, 5, 5)), 2 * rng.normal(size=(4, 1, 5, 5))
    exact = dropblock_penalty_exact(u, v, 0.7, (5, 5), "zeros", 2, x=x, y=y)
    cov = coverage(
        lambda s: conv.dropout_penalty_mc(
            u,
            v,
            0.7,
            (5, 5),
            "zeros",
            mode="block",
            block_size=2,
            n_masks=N_MASKS,
            seed=s,
            batch_size=N_MASKS,
            x=x,
            y=y,
        ),
        exact,
    )
    assert 0.92 <= cov <= 0.98, cov
