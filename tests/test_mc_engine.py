"""The Monte Carlo engine of the network and conv estimators (regtheory.montecarlo._engine,
_chunks, masks.kept_units): draws against direct evaluation with the same masks,
against exact penalties and against the layer-by-layer forward pass; threads, dtypes."""

from pathlib import Path

import numpy as np
import pytest

import regtheory
from regtheory import conv, network
from regtheory.conv import _montecarlo as conv_mc
from regtheory.masks import Bernoulli, Channel, DropBlock, Gaussian, kept_units
from regtheory.montecarlo import _chunks, _engine
from regtheory.network import Conv, DropConnect, Dropout, Elementwise, Linear, ReLU

N_SE = 4  # Monte Carlo agreement within this many standard errors
chunk_stream = _chunks._stream  # the generator of chunk i of the batch with key k


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

    assert _chunks.CHUNK_ENTRIES // ((4 * 9 + 4) * 7 * 8) >= n_masks * n  # one chunk
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    for engine in (conv_mc, _engine):  # many chunks per batch, taken by every thread
        monkeypatch.setattr(engine, "CHUNK_ENTRIES", 1 << 16)
    chunks = []
    run_chunks = _chunks.Chunks.run
    monkeypatch.setattr(
        _chunks.Chunks,
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

    init = _chunks.Chunks.__init__

    def threads(count):
        monkeypatch.setattr(
            _chunks.Chunks, "__init__", lambda self, chunk, workers=None: init(self, chunk, count)
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


# ----------------------------------------------------------------------------- one engine

ONE_ENGINE_CASES = {
    "conv, white input, element": lambda u, v, x, y: conv.dropout_penalty(
        u, v, 0.7, (5, 6), method="mc", n_masks=200
    ),
    "conv, white input, ReLU, block, circular": lambda u, v, x, y: conv.dropout_penalty(
        u, v, 0.7, (5, 6), method="mc", padding="circular", mode="block", block_size=2,
        activation="relu", n_masks=2000
    ),
    "conv, data, targets, channel, float32": lambda u, v, x, y: conv.dropout_penalty(
        u, v, 0.7, (5, 6), method="mc", mode="channel", x=x, y=y, n_masks=200, dtype="float32"
    ),
    "network": lambda u, v, x, y: network.dropout_penalty_mc(
        [Conv(v), ReLU(), Dropout(Bernoulli(0.7)), Conv(u)], x, y, n_masks=200
    ),
    "network, control variate": lambda u, v, x, y: network.dropout_penalty_mc(
        [Conv(v), Dropout(Bernoulli(0.7)), ReLU(), Conv(u)], x, y, n_masks=200,
        control_variate=True,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ONE_ENGINE_CASES))
def test_conv_and_network_draws_come_from_the_one_engine(name, monkeypatch):
    """Every masked pass of the conv and network estimators is a chunk of
    ``regtheory.montecarlo._engine.Engine``: with the engine's chunks counted they run, and
    with the chunks replaced by zero losses the estimate is exactly zero (its numbers come
    from nowhere else)."""
    rng = np.random.default_rng(11)
    u, v = rng.normal(size=(2, 3, 3, 3)), rng.normal(size=(3, 2, 3, 3))
    x, y = rng.normal(size=(4, 2, 5, 6)), rng.normal(size=(4, 2, 5, 6))
    run = ONE_ENGINE_CASES[name]
    chunks = []
    original = _engine.Engine._chunk_losses

    def counted(self, *args):
        chunks.append(args[1:3])
        return original(self, *args)

    monkeypatch.setattr(_engine.Engine, "_chunk_losses", counted)
    assert run(u, v, x, y).n_samples >= 200 and chunks, name

    def zeros(self, Y, start, stop, rng, work):
        return np.zeros(stop - start) if self.halves == 1 else np.zeros((2, stop - start))

    monkeypatch.setattr(_engine.Engine, "_chunk_losses", zeros)
    if name == "network, control variate":  # D − c (D_lin − μ_lin) with D = D_lin = 0
        return
    assert run(u, v, x, y).mean == 0.0, name


def test_no_other_module_draws_masks_in_chunks():
    """The machinery of a chunked Monte Carlo draw (chunks with their own streams, padded
    grids, masks from raw bits, grid convolutions) is called by the engine alone: outside
    the modules that define them, only the engine uses them (and ``masks.kept_units``,
    the public sampler of raw-bit masks)."""
    root = Path(regtheory.__file__).parent
    users: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for call in ("Chunks(", "Grid(", "kept_bits(", "grid_conv("):
            if call in text:
                users.setdefault(call, set()).add(path.relative_to(root).as_posix())
    definitions = {"montecarlo/_chunks.py", "_convops.py", "_bits.py"}
    assert {call: files - definitions for call, files in users.items()} == {
        "Chunks(": {"montecarlo/_engine.py"},
        "Grid(": {"montecarlo/_engine.py"},
        "kept_bits(": {"montecarlo/_engine.py", "masks.py"},
        "grid_conv(": {"montecarlo/_engine.py"},
    }


def test_conv_estimator_equals_direct_evaluation_with_the_engines_draws():
    """The conv estimator on data with targets, elementwise masks: its estimate is the
    mean of the loss gaps that regtheory.conv.conv2d gives on the masks and the chunk
    stream the engine uses (one batch, one chunk: one mask per draw on the padded grid,
    channels × draws × (H+2) × (W+2), shared by the samples)."""
    rng = np.random.default_rng(12)
    n, keep, n_masks = 3, 0.6, 64
    u, v = rng.normal(size=(2, 4, 3, 3)), rng.normal(size=(4, 2, 3, 3))
    x, y = rng.normal(size=(n, 2, 5, 6)), rng.normal(size=(n, 2, 5, 6))
    est = conv.dropout_penalty(
        u,
        v,
        keep,
        (5, 6),
        x=x,
        y=y,
        activation="relu",
        method="mc",
        n_masks=n_masks,
        batch_size=n_masks,
    )
    key = int(np.random.default_rng(0).integers(1 << 63))
    kept = kept_units(keep, (4, n_masks, 7, 8), chunk_stream(key, 0))[:, :, 1:-1, 1:-1]
    h = np.maximum(conv.conv2d(x, v), 0)
    masked = h[None] * (kept.transpose(1, 0, 2, 3)[:, None] / keep)  # (draw, sample, ...)
    out = conv.conv2d(masked.reshape(n_masks * n, 4, 5, 6), u).reshape(n_masks, n, 2, 5, 6)
    clean = conv.conv2d(h, u)
    gaps = np.sum((y - out) ** 2, axis=(2, 3, 4)) - np.sum((y - clean) ** 2, axis=(1, 2, 3))
    draws = gaps.mean(axis=1)
    assert est.mean == pytest.approx(draws.mean(), rel=1e-10)
    assert est.stderr == pytest.approx(draws.std(ddof=1) / np.sqrt(n_masks), rel=1e-8)


# ----------------------------------------------------------------------------- float32


@pytest.mark.slow
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
