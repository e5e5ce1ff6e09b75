"""The Monte Carlo engines against the machine's GEMM limit, all ratios in one run.

    PYTHONPATH=$PWD python benchmarks/bench_mc.py [--quick]

Two estimators, each timed against ``numpy.matmul(out=)`` on the GEMM shapes of the
convolutions one draw performs (im2col: (C_out, C_in·k²) @ (C_in·k², N·H·W)), measured
in the same run, in interleaved rounds: every round runs the estimator and each of its
GEMMs once, and each keeps its best time (the machine may be shared):

* ``network``: ``network.dropout_penalty_mc`` on a 4-conv ReLU net, Conv(3→16) – ReLU –
  Dropout – [Conv(16→16) – ReLU – Dropout] × 2 – Conv(16→16), 3×3 kernels, zero
  padding, 32×32 maps, 32 samples, keep 0.8 at the three dropouts. The GEMM baseline is
  the four convolutions of the issue (all of the net) and the three a draw needs (the
  first runs once, before any mask).
* ``conv``: ``conv.dropout_penalty_mc`` on the net of THEORY §3, v (64, 3, 3, 3),
  u (3, 64, 3, 3), 32×32 white input, keep 0.5, elementwise masks; the baseline is its
  two convolutions, each as the faster of its im2col GEMM ((64, 27) @ (27, 1024) and
  (3, 576) @ (576, 1024) per mask) and its per-tap GEMM ((576, 3) @ (3, 1024) and
  (27, 64) @ (64, 1024)).

Printed per estimator: ms per draw and masks/s, float64 (the default) and float32, the
fraction ``GEMM time / draw time`` (≥ 0.5 is the target: a draw within twice its GEMMs),
the speed-up over the engine before this benchmark (``network.forward`` on stacked draws,
which the old estimator ran), PyTorch float64 and float32 on the same net
(``regtheory.pytorch.dropout_penalty``), the float32 bias against float64 with the same
seed (same masks: the difference is rounding alone) in standard errors, and the variance
reduction factor of ``control_variate=True`` on this net and on a ReLU MLP, and that of
antithetic masks (u and 1 − u) on the MLP, which the package does not use: they cancel the
part of a draw that is odd in the mask fluctuation (the cross term with the residual), not
the even part. Then the mask sampler: ``masks.kept_units`` (8 random bits a unit) against
``rng.random() < keep``. First of all, how many cores the machine really gives: the work
of two threads of independent GEMMs over one thread's (on a shared virtual machine it has
been seen anywhere between 1.1 and 1.9 within the hour, and every fraction moves with it).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from _timing import best_time, best_times

from regtheory import conv, network
from regtheory.masks import Bernoulli, kept_units
from regtheory.network import Conv, Dropout, Linear, ReLU

QUICK = "--quick" in sys.argv
KEEP = 0.8


def conv_net(seed: int = 0):
    rng = np.random.default_rng(seed)

    def w(co, ci):
        return rng.normal(size=(co, ci, 3, 3)) * np.sqrt(2.0 / (9 * ci))

    layers = [Conv(w(16, 3)), ReLU()]
    for _ in range(2):
        layers += [Dropout(Bernoulli(KEEP)), Conv(w(16, 16)), ReLU()]
    layers += [Dropout(Bernoulli(KEEP)), Conv(w(16, 16))]
    X = rng.normal(size=(32, 3, 32, 32))
    Y = network.forward(layers, X) + rng.normal(size=(32, 16, 32, 32))
    return layers, X, Y


def mlp(seed: int = 0):
    rng = np.random.default_rng(seed)
    layers = [
        Linear(rng.normal(size=(256, 64)) / 8),
        ReLU(),
        Dropout(Bernoulli(0.5)),
        Linear(rng.normal(size=(256, 256)) / 16),
        ReLU(),
        Dropout(Bernoulli(0.5)),
        Linear(rng.normal(size=(10, 256)) / 16),
    ]
    X = rng.normal(size=(128, 64))
    return layers, X, network.forward(layers, X) + rng.normal(size=(128, 10))


def old_network_mc(layers, X, Y, n_draws: int, batch: int, seed: int = 1) -> float:
    """The estimator before this benchmark: every layer on the stacked draws."""
    rng = np.random.default_rng(seed)
    clean = np.mean(np.sum((Y - network.forward(layers, X)).reshape(len(X), -1) ** 2, axis=1))
    total = 0.0
    for start in range(0, n_draws, batch):
        size = min(batch, n_draws - start)
        out = network.forward(layers, X, seed=rng, n_draws=size)
        total += float(
            np.sum(
                np.mean(np.sum((Y - out).reshape(size, len(X), -1) ** 2, axis=2), axis=1) - clean
            )
        )
    return total / n_draws


def gemm_runs(shapes) -> list:
    """numpy.matmul(out=) over the GEMMs ``[(m, k, n), ...]``, whole and in the engine's
    chunks: two callables, of which the faster is the baseline (the stricter limit)."""
    rng = np.random.default_rng(0)
    runs = []
    for pieces in (1, 8):
        ops = []
        for m, k, n in shapes:
            cols = n // pieces
            ops.append((rng.normal(size=(m, k)), rng.normal(size=(k, cols)), np.empty((m, cols))))

        def run(ops=ops, pieces=pieces):
            for a, b, o in ops:
                for _ in range(pieces):
                    np.matmul(a, b, out=o)

        run()
        runs.append(run)
    return runs


def torch_rates(layers, X, Y, n: int):
    try:
        import torch

        from regtheory.pytorch import dropout_penalty, to_torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    out = {}
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        model = to_torch(layers, dtype=dtype)
        dropout_penalty(model, X, Y=Y, n_masks=n, seed=1, by_layer=False)
        out[name] = (
            best_time(
                lambda m=model: dropout_penalty(m, X, Y=Y, n_masks=n, seed=1, by_layer=False), 2
            )
            / n
        )
    return out


def row(name: str, value: str, note: str = "") -> None:
    print(f"  {name:<46} {value:>14}  {note}")


def bench_network() -> None:
    layers, X, Y = conv_net()
    n = 96 if QUICK else 256
    fns = {}
    for dtype in ("float64", "float32"):
        network.dropout_penalty_mc(layers, X, Y, n_masks=n, seed=1, dtype=dtype)
        fns[dtype] = lambda d=dtype: network.dropout_penalty_mc(
            layers, X, Y, n_masks=n, seed=1, dtype=d
        )
    cols = 32 * 32 * 32
    for name, shapes in (
        ("all4", [(16, 27, cols)] + [(16, 144, cols)] * 3),
        ("need3", [(16, 144, cols)] * 3),
    ):
        for i, run in enumerate(gemm_runs(shapes)):
            fns[name, i] = run
    best = best_times(fns, 3 if QUICK else 5)
    per_draw = {dtype: best[dtype] / n for dtype in ("float64", "float32")}
    all4, need3 = (min(best[name, 0], best[name, 1]) for name in ("all4", "need3"))
    old_n = 16 if QUICK else 64
    old = best_time(lambda: old_network_mc(layers, X, Y, old_n, 8), 2) / old_n
    print("network: 4-conv ReLU net, 16 channels, 32×32, 32 samples, dropout at 3 layers")
    row(
        "float64 per draw",
        f"{per_draw['float64'] * 1e3:.1f} ms",
        f"{1 / per_draw['float64']:.0f} masks/s",
    )
    row(
        "float32 per draw",
        f"{per_draw['float32'] * 1e3:.1f} ms",
        f"{1 / per_draw['float32']:.0f} masks/s",
    )
    row("matmul(out=), the 4 convs' GEMMs", f"{all4 * 1e3:.1f} ms")
    row("matmul(out=), the 3 GEMMs a draw needs", f"{need3 * 1e3:.1f} ms")
    row("fraction of the limit, 4 GEMMs (target ≥ 0.5)", f"{all4 / per_draw['float64']:.2f}")
    row("fraction of the limit, 3 GEMMs (target ≥ 0.5)", f"{need3 / per_draw['float64']:.2f}")
    row("float32 speed-up", f"{per_draw['float64'] / per_draw['float32']:.2f}×")
    row(
        "before (network.forward on stacked draws)",
        f"{old * 1e3:.1f} ms",
        f"now {old / per_draw['float64']:.1f}× faster",
    )
    rates = torch_rates(layers, X, Y, 96 if QUICK else 128)
    if rates is not None:
        for name, t in rates.items():
            row(
                f"PyTorch {name} per draw",
                f"{t * 1e3:.1f} ms",
                f"torch time / ours: {t / per_draw['float64']:.2f} (float64), "
                f"{t / per_draw['float32']:.2f} (float32)",
            )
    m = 500 if QUICK else 2000
    e64 = network.dropout_penalty_mc(layers, X, Y, n_masks=m, seed=3)
    e32 = network.dropout_penalty_mc(layers, X, Y, n_masks=m, seed=3, dtype="float32")
    row(
        "float32 − float64, same masks",
        f"{(e32.mean - e64.mean) / e64.stderr:+.1e} SE",
        f"({e64.mean:.6g} ± {e64.stderr:.2g}, {m} draws)",
    )
    start = time.perf_counter()
    cv = network.dropout_penalty_mc(layers, X, Y, n_masks=m, seed=3, control_variate=True)
    row(
        "control variate: variance reduction",
        f"{cv.reduction_factor:.2f}×",
        f"({cv.mean:.6g} ± {cv.stderr:.2g}, {time.perf_counter() - start:.1f} s)",
    )
    layers, X, Y = mlp()
    plain = network.dropout_penalty_mc(layers, X, Y, n_masks=4000, seed=3)
    cv = network.dropout_penalty_mc(layers, X, Y, n_masks=4000, seed=3, control_variate=True)
    row(
        "ReLU MLP 64-256-256-10: variance reduction",
        f"{cv.reduction_factor:.2f}×",
        f"(plain {plain.mean:.5g} ± {plain.stderr:.2g}, "
        f"controlled {cv.mean:.5g} ± {cv.stderr:.2g})",
    )
    for keep in (0.5, 0.8):
        pairs = 500 if QUICK else 1500
        noisy, energy = (antithetic_factor(keep, e, pairs) for e in (False, True))
        row(
            f"MLP antithetic masks, keep {keep}",
            f"{noisy:.2f}×",
            f"targets with noise; {energy:.2f}× for the perturbation energy",
        )


def antithetic_factor(keep: float, energy: bool, pairs: int = 1500) -> float:
    """Variance factor of antithetic masks (uniforms u and 1 − u: both Bernoulli(keep))
    on the ReLU MLP, 1/(1 + ρ) per draw, ρ the correlation of the two draws of a pair."""
    layers, X, Y = mlp()
    A, B, C = (layer.weight for layer in layers if isinstance(layer, Linear))
    h = np.maximum(X @ A.T, 0)
    clean = np.maximum(h @ B.T, 0) @ C.T
    target = clean if energy else Y
    base = np.mean(np.sum((target - clean) ** 2, axis=1))
    rng = np.random.default_rng(0)

    def draw(m1, m2):
        out = (np.maximum((h * m1) @ B.T, 0) * m2) @ C.T
        return np.mean(np.sum((target - out) ** 2, axis=1)) - base

    a, b = [], []
    for _ in range(pairs):
        u1, u2 = rng.random(h.shape), rng.random(h.shape)
        a.append(draw((u1 < keep) / keep, (u2 < keep) / keep))
        b.append(draw(((1 - u1) < keep) / keep, ((1 - u2) < keep) / keep))
    return 1.0 / (1.0 + np.corrcoef(a, b)[0, 1])


def bench_conv() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(64, 3, 3, 3))
    u = rng.normal(size=(3, 64, 3, 3))
    n = 2048 if QUICK else 8192
    fns = {}
    for dtype in ("float64", "float32"):
        conv.dropout_penalty_mc(u, v, 0.5, (32, 32), n_masks=n, seed=1, dtype=dtype)
        fns[dtype] = lambda d=dtype: conv.dropout_penalty_mc(
            u, v, 0.5, (32, 32), n_masks=n, seed=1, dtype=d
        )
    batch = 128
    # each convolution as im2col (C_out, C_in·9) @ (C_in·9, ·) or per tap (C_out·9, C_in) @
    # (C_in, ·), whichever is faster: the strictest limit for its GEMMs
    cols = batch * 1024
    shapes = {"v im2col": (64, 27), "v taps": (576, 3), "u im2col": (3, 576), "u taps": (27, 64)}
    for name, (m, k) in shapes.items():
        for i, run in enumerate(gemm_runs([(m, k, cols)])):
            fns[name, i] = run
    best = best_times(fns, 3 if QUICK else 5)
    per_mask = {dtype: best[dtype] / n for dtype in ("float64", "float32")}
    each = {name: min(best[name, 0], best[name, 1]) for name in shapes}
    gemm = (min(each["v im2col"], each["v taps"]) + min(each["u im2col"], each["u taps"])) / batch
    flops = 2 * (64 * 27 + 3 * 576) * 1024
    print("conv: v (64, 3, 3, 3), u (3, 64, 3, 3), 32×32 white input, keep 0.5, element masks")
    row(
        "float64 per mask",
        f"{per_mask['float64'] * 1e6:.0f} us",
        f"{1 / per_mask['float64']:.0f} masks/s, {flops / per_mask['float64'] / 1e9:.1f} GFLOP/s",
    )
    row(
        "float32 per mask",
        f"{per_mask['float32'] * 1e6:.0f} us",
        f"{1 / per_mask['float32']:.0f} masks/s",
    )
    row(
        "matmul(out=), its 2 GEMMs per mask",
        f"{gemm * 1e6:.0f} us",
        f"{flops / gemm / 1e9:.1f} GFLOP/s",
    )
    row("fraction of the limit (target ≥ 0.5)", f"{gemm / per_mask['float64']:.2f}")
    row("float32 speed-up", f"{per_mask['float64'] / per_mask['float32']:.2f}×")
    closed = conv.dropout_penalty(u, v, 0.5, (32, 32))
    e64 = conv.dropout_penalty_mc(u, v, 0.5, (32, 32), n_masks=20000, seed=3)
    e32 = conv.dropout_penalty_mc(u, v, 0.5, (32, 32), n_masks=20000, seed=3, dtype="float32")
    row(
        "float32 − float64, same masks",
        f"{(e32.mean - e64.mean) / e64.stderr:+.1e} SE",
        f"float64 z = {e64.zscore(closed):+.2f}, "
        f"float32 z = {e32.zscore(closed):+.2f} vs the closed form",
    )


def bench_masks() -> None:
    rng = np.random.default_rng(0)
    units = 1 << 20
    bits = best_time(lambda: kept_units(KEEP, units, rng), 10)
    floats = best_time(lambda: rng.random(units) < KEEP, 10)
    print("masks: 2^20 Bernoulli(0.8) units")
    row(
        "kept_units (8 bits a unit)",
        f"{units / bits / 1e6:.0f} M units/s",
        f"{floats / bits:.1f}× rng.random() < keep ({units / floats / 1e6:.0f} M/s)",
    )


def core_scaling() -> float:
    """Work done per second by two threads of independent GEMMs (BLAS at one thread each)
    over one thread's: about 2 when both cores are free, 1 when the machine lends one. The
    fractions below are only comparable between runs with the same scaling."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    ops = [(rng.normal(size=(16, 144)), rng.normal(size=(144, 8192))) for _ in range(2)]
    outs = [np.empty((16, 8192)) for _ in range(2)]

    def gemms(i: int) -> None:
        for _ in range(20):
            np.matmul(*ops[i], out=outs[i])

    with threadpool_limits(1), ThreadPoolExecutor(2) as pool:
        one = best_time(lambda: gemms(0), 5)
        two = best_time(lambda: list(pool.map(gemms, (0, 1))), 5)
    return 2 * one / two


def main() -> None:
    print(f"numpy {np.__version__}; best of several runs; {'quick' if QUICK else 'full'} mode")
    print(
        f"cores: two threads of GEMMs do {core_scaling():.2f}× the work of one "
        "(2 when both cores are free)"
    )
    bench_network()
    bench_conv()
    bench_masks()


if __name__ == "__main__":
    main()
