"""The Monte Carlo engine of the network and conv estimators (regtheory._mcforward,
_parallel, masks.kept_units): draws against direct evaluation with the same masks,
against exact penalties and against the layer-by-layer forward pass; threads, dtypes."""

import numpy as np
import pytest

from regtheory import _mcforward, _parallel, conv, network
from regtheory.masks import Bernoulli, Channel, DropBlock, Gaussian, kept_units
from regtheory.network import Conv, DropConnect, Dropout, Elementwise, Linear, ReLU

N_SE = 4  # Monte Carlo agreement within this many standard errors
chunk_stream = _parallel._stream  # the generator of chunk i of the batch with key k


# ----------------------------------------------------------------------------- kept_units


@pytest.mark.parametrize("keep", [0.02, 0.1, 1 / 3, 0.5, 0.5 + 1 / 1024, 0.8, 0.99])
def test_kept_units_have_the_bernoulli_frequency(keep):
    """The frequency of kept units within 4 binomial standard errors of keep, also where
    the tie u = ⌊256·keep⌋ must be settled (every keep here but 0.5)."""
    n = 2_000_000
    kept = kept_units(keep, n, seed=int(keep * 1e6))
    se = np.sqrt(keep * (1 - keep) / n)
    assert abs(kept.mean() - keep) < N_SE * se, (keep, kept.mean())


def test_kept_units_settle_ties_exactly():
    """At keep = (t + f)/256 a byte equal to t is kept with probability f: the kept
    fraction among the tied bytes is f (checked through the whole, 20 seeds)."""
    keep = (200 + 0.3) / 256
    z = []
    for seed in range(20):
        kept = kept_units(keep, 400_000, seed=seed)
        z.append((kept.mean() - keep) / np.sqrt(keep * (1 - keep) / kept.size))
    assert max(map(abs, z)) < N_SE and abs(np.mean(z)) < N_SE / np.sqrt(20)


def test_kept_units_are_independent_neighbours():
    """Lag-1 and lag-8 (the next byte of a word, the next word) correlations ≈ 0."""
    for keep in (0.5, 0.8):
        k = kept_units(keep, 1_000_000, seed=5).astype(float)
        for lag in (1, 8, 64):
            r = np.corrcoef(k[:-lag], k[lag:])[0, 1]
            assert abs(r) < N_SE / np.sqrt(k.size), (keep, lag, r)


def test_kept_units_reproducible_and_shaped():
    a = kept_units(0.7, (3, 4, 5), seed=11)
    assert a.shape == (3, 4, 5) and a.dtype == bool
    assert np.array_equal(a, kept_units(0.7, (3, 4, 5), seed=11))
    assert not np.array_equal(a, kept_units(0.7, (3, 4, 5), seed=12))
    assert kept_units(1.0, 7, seed=0).all()
    with pytest.raises(ValueError, match="keep"):
        kept_units(1.5, 3, seed=0)


# ----------------------------------------------------------------------------- network engine


def test_network_draws_equal_direct_evaluation_with_the_same_masks():
    """A ReLU conv net with two elementwise dropouts: the estimate equals the mean of
    draws evaluated with regtheory.conv.conv2d on the masks re-drawn as the engine draws
    them (one batch, one chunk: the key's stream gives the kept units of the padded grid,
    channels × images × (H+2) × (W+2), for each dropout in turn)."""
    rng = np.random.default_rng(0)
    n, keep, n_masks = 3, 0.6, 64
    v, w, u = (
        rng.normal(size=(4, 2, 3, 3)),
        rng.normal(size=(4, 4, 3, 3)),
        rng.normal(size=(2, 4, 3, 3)),
    )
    b = rng.normal(size=4)
    layers = [
        Conv(v),
        ReLU(),
        Dropout(Bernoulli(keep)),
        Conv(w, bias=b),
        ReLU(),
        Dropout(Bernoulli(keep)),
        Conv(u),
    ]
    X, Y = rng.normal(size=(n, 2, 5, 6)), rng.normal(size=(n, 2, 5, 6))
    est = network.dropout_penalty(
        layers, X, Y=Y, method="mc", n_masks=n_masks, rng=7, batch_size=n_masks
    )

    assert _parallel.CHUNK_ENTRIES // ((4 * 9 + 4) * 7 * 8) >= n_masks * n  # one chunk
    key = int(np.random.default_rng(7).integers(1 << 63))
    stream = chunk_stream(key, 0)
    images = n_masks * n
    first = kept_units(keep, (4, images, 7, 8), stream)[:, :, 1:-1, 1:-1] / keep
    second = kept_units(keep, (4, images, 7, 8), stream)[:, :, 1:-1, 1:-1] / keep
    h = np.maximum(conv.conv2d(X, v), 0)
    h = np.tile(h, (n_masks, 1, 1, 1)) * first.transpose(1, 0, 2, 3)
    h = np.maximum(conv.conv2d(h, w) + b[:, None, None], 0) * second.transpose(1, 0, 2, 3)
    out = conv.conv2d(h, u).reshape(n_masks, n, -1)
    clean = network.forward(layers, X).reshape(n, -1)
    draws = np.mean(np.sum((Y.reshape(n, -1) - out) ** 2, axis=2), axis=1) - np.mean(
        np.sum((Y.reshape(n, -1) - clean) ** 2, axis=1)
    )
    assert est.mean == pytest.approx(draws.mean(), rel=1e-10)
    assert est.stderr == pytest.approx(draws.std(ddof=1) / np.sqrt(n_masks), rel=1e-8)


NETS = {
    "2-D conv, channel, circular, Linear head": lambda r: [
        Conv(r.normal(size=(3, 2, 3, 3)), padding="circular", bias=r.normal(size=3)),
        ReLU(),
        Dropout(Channel(0.7)),
        Conv(r.normal(size=(4, 3, 5, 5)), padding="circular"),
        Dropout(Bernoulli(0.5)),
        Linear(r.normal(size=(2, 4 * 36)), bias=r.normal(size=2)),
    ],
    "2-D conv, DropBlock, zeros": lambda r: [
        Conv(r.normal(size=(3, 2, 3, 3))),
        ReLU(),
        Dropout(DropBlock(0.8, 2)),
        Conv(r.normal(size=(2, 3, 3, 3)), bias=r.normal(size=2)),
    ],
    "1-D conv, Gaussian then Bernoulli": lambda r: [
        Dropout(Gaussian(0.6)),
        Conv(r.normal(size=(3, 2, 3))),
        Dropout(Bernoulli(0.7)),
        Conv(r.normal(size=(2, 3, 5)), padding="circular"),
    ],
    "MLP, tanh before, DropConnect": lambda r: [
        Linear(r.normal(size=(5, 4))),
        Elementwise(np.tanh, name="tanh"),
        Dropout(Bernoulli(0.6)),
        DropConnect(r.normal(size=(3, 5)), keep=0.8),
        Linear(r.normal(size=(2, 3))),
    ],
}


def _data(layers, rng):
    first = layers[0]
    if isinstance(first, Conv) or (isinstance(first, Dropout) and isinstance(layers[1], Conv)):
        conv_layer = first if isinstance(first, Conv) else layers[1]
        shape = (conv_layer.weight.shape[1], 6, 6) if conv_layer.weight.ndim == 4 else (2, 9)
    else:
        shape = (4,)
    X = rng.normal(size=(8, *shape))
    return X, network.forward(layers, X) + rng.normal(size=network.forward(layers, X).shape)


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_network_engine_against_the_exact_penalty(name, dtype):
    """Nets linear after their first random layer (biases, Linear after conv, 1-D conv,
    DropConnect, every mask type): the estimate within 4 SE of the exact penalty."""
    rng = np.random.default_rng(len(name))
    layers = NETS[name](rng)
    X, Y = _data(layers, rng)
    exact = network.dropout_penalty(layers, X, Y=Y)
    est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=6000, rng=3, dtype=dtype)
    assert abs(est.zscore(exact)) < N_SE, (name, exact, est)


def test_network_engine_over_seeds_against_the_exact_penalty():
    """20 seeds on a net with a ReLU between dropout and conv (the folded 1/keep): the
    z-scores against the exact value are those of a standard normal."""
    rng = np.random.default_rng(4)
    layers = [
        Dropout(Bernoulli(0.6)),
        Conv(rng.normal(size=(3, 2, 3, 3))),
        Dropout(Bernoulli(0.8)),
        Conv(rng.normal(size=(2, 3, 3, 3))),
    ]
    X = rng.normal(size=(5, 2, 5, 5))
    Y = rng.normal(size=(5, 2, 5, 5))
    exact = network.dropout_penalty(layers, X, Y=Y)
    z = [
        network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=500, rng=s).zscore(exact)
        for s in range(20)
    ]
    assert max(map(abs, z)) < N_SE and abs(np.mean(z)) < N_SE / np.sqrt(20), z


def test_network_engine_against_the_layer_by_layer_forward():
    """A ReLU after each dropout (no exact form): the engine against the layer-by-layer
    pass of network.forward with masks of masks.Bernoulli.sample, two independent samplers
    and implementations, within 4 combined SE."""
    rng = np.random.default_rng(5)
    layers = [
        Conv(rng.normal(size=(4, 2, 3, 3))),
        ReLU(),
        Dropout(Bernoulli(0.7)),
        Conv(rng.normal(size=(4, 4, 3, 3)), bias=rng.normal(size=4)),
        ReLU(),
        Dropout(Channel(0.8)),
        Conv(rng.normal(size=(2, 4, 3, 3))),
    ]
    X = rng.normal(size=(6, 2, 6, 6))
    Y = network.forward(layers, X) + rng.normal(size=(6, 2, 6, 6))
    est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=4000, rng=1)
    out = network.forward(layers, X, n_draws=4000, rng=2)
    clean = np.mean(np.sum((Y - network.forward(layers, X)).reshape(6, -1) ** 2, axis=1))
    draws = np.mean(np.sum((Y - out).reshape(4000, 6, -1) ** 2, axis=2), axis=1) - clean
    se = np.hypot(est.stderr, draws.std(ddof=1) / np.sqrt(draws.size))
    assert abs(est.mean - draws.mean()) < N_SE * se, (est, draws.mean())


def test_threads_do_not_change_the_numbers(monkeypatch):
    """One thread or several: the same chunks draw from the same streams."""
    rng = np.random.default_rng(6)
    layers = [
        Conv(rng.normal(size=(3, 2, 3, 3))),
        ReLU(),
        Dropout(Bernoulli(0.7)),
        Conv(rng.normal(size=(2, 3, 3, 3))),
    ]
    X, Y = rng.normal(size=(40, 2, 8, 8)), rng.normal(size=(40, 2, 8, 8))
    u, v = rng.normal(size=(2, 6, 3, 3)), rng.normal(size=(6, 2, 3, 3))
    for engine in (conv, _mcforward):  # many chunks per batch, taken by every thread
        monkeypatch.setattr(engine, "CHUNK_ENTRIES", 1 << 16)
    chunks = []
    run_chunks = _parallel.Chunks.run
    monkeypatch.setattr(
        _parallel.Chunks,
        "run",
        lambda self, fn, total, rng, **kw: (
            chunks.append(-(-total // self.chunk)) or run_chunks(self, fn, total, rng, **kw)
        ),
    )

    def run():
        return (
            network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=300, rng=1).mean,
            conv.dropout_penalty_mc(u, v, 0.7, (8, 8), n_masks=300, seed=1).mean,
        )

    init = _parallel.Chunks.__init__

    def threads(count):
        monkeypatch.setattr(
            _parallel.Chunks, "__init__", lambda self, chunk, workers=None: init(self, chunk, count)
        )

    threads(3)  # more threads than cores, whatever the machine: chunks taken out of order
    several = run()
    # both estimators ran many chunks (the conv estimator's last)
    assert chunks[-1] >= 10 and max(chunks[:-1]) >= 10, chunks
    threads(1)
    one = run()
    assert one == pytest.approx(several, rel=1e-12)


def test_same_seed_same_numbers():
    rng = np.random.default_rng(8)
    layers = [
        Linear(rng.normal(size=(6, 3))),
        ReLU(),
        Dropout(Bernoulli(0.5)),
        Linear(rng.normal(size=(2, 6))),
    ]
    X, Y = rng.normal(size=(30, 3)), rng.normal(size=(30, 2))
    a = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=200, rng=4)
    assert a == network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=200, rng=4)
    assert a != network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=200, rng=5)


# ----------------------------------------------------------------------------- float32


def test_float32_bias_is_far_below_the_standard_error():
    """float32 and float64 with the same seed use the same masks (and, for the conv
    estimator, the same inputs): their difference is rounding, measured in standard errors
    over 5 seeds of a ReLU conv net and of the white-input conv estimator."""
    rng = np.random.default_rng(9)
    layers = [
        Conv(rng.normal(size=(4, 2, 3, 3))),
        ReLU(),
        Dropout(Bernoulli(0.8)),
        Conv(rng.normal(size=(4, 4, 3, 3))),
        ReLU(),
        Dropout(Bernoulli(0.8)),
        Conv(rng.normal(size=(2, 4, 3, 3))),
    ]
    X = rng.normal(size=(8, 2, 8, 8))
    Y = network.forward(layers, X) + rng.normal(size=(8, 2, 8, 8))
    u, v = rng.normal(size=(2, 8, 3, 3)), rng.normal(size=(8, 2, 3, 3))
    gaps = []
    for seed in range(5):
        a = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=400, rng=seed)
        b = network.dropout_penalty(
            layers, X, Y=Y, method="mc", n_masks=400, rng=seed, dtype="float32"
        )
        gaps.append(abs(a.mean - b.mean) / a.stderr)
        c = conv.dropout_penalty_mc(u, v, 0.5, (8, 8), n_masks=400, seed=seed)
        d = conv.dropout_penalty_mc(u, v, 0.5, (8, 8), n_masks=400, seed=seed, dtype="float32")
        gaps.append(abs(c.mean - d.mean) / c.stderr)
    assert max(gaps) < 1e-3, gaps


def test_dtype_is_checked():
    rng = np.random.default_rng(10)
    layers = [Dropout(Bernoulli(0.5)), Linear(rng.normal(size=(2, 3)))]
    X, Y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    with pytest.raises(ValueError, match="dtype"):
        network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=100, dtype="float16")
    with pytest.raises(ValueError, match="float64"):
        network.dropout_penalty(
            layers, X, Y=Y, method="mc", n_masks=100, dtype="float32", control_variate=True
        )
    with pytest.raises(ValueError, match="dtype"):
        conv.dropout_penalty_mc(np.ones((1, 1, 3)), np.ones((1, 1, 3)), 0.5, 5, dtype=np.int32)
