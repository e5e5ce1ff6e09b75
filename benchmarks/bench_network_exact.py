"""Exact network dropout penalty against 300 Monte Carlo draws, measured in the same run.

    PYTHONPATH=$PWD python benchmarks/bench_network_exact.py

The net: four 3×3 convolutions (3 → 16 → 16 → 16 → 16 channels) on 32×32 maps, zero
padding, a ReLU after the first, and elementwise dropout (keep 0.8) after each of the
first three; 32 samples with random targets. The exact penalty
(``regtheory.network.dropout_penalty_terms``: moments propagated per subset of
dropout layers, conv states as coloured impulse probes, no (C·H·W)² matrix) is timed
against ``regtheory.network.dropout_penalty_mc`` with 300 draws (each a fresh mask per
sample and dropout layer). Target: the exact computation costs at most what the 300
draws cost, and the two agree within 4 standard errors.

The machine may be shared: both are timed once each, back to back (the Monte Carlo run
alone takes about a minute here), so the ratio is what one run of each costs under the
same load.
"""

from __future__ import annotations

import time

import numpy as np
from _timing import report_targets

from regtheory import network
from regtheory.masks import Bernoulli
from regtheory.network import Conv, Dropout, ReLU

KEEP = 0.8
CHANNELS, IMAGE, N_SAMPLES, N_DRAWS = 16, (32, 32), 32, 300


def build(seed: int = 0):
    rng = np.random.default_rng(seed)
    shapes = [(CHANNELS, 3, 3, 3)] + [(CHANNELS, CHANNELS, 3, 3)] * 3
    w = [rng.normal(size=s) / np.sqrt(np.prod(s[1:])) for s in shapes]
    layers = [Conv(w[0]), ReLU(), Dropout(Bernoulli(KEEP))]
    layers += [Conv(w[1]), Dropout(Bernoulli(KEEP)), Conv(w[2]), Dropout(Bernoulli(KEEP))]
    layers += [Conv(w[3])]
    X = rng.normal(size=(N_SAMPLES, 3, *IMAGE))
    Y = rng.normal(size=(N_SAMPLES, CHANNELS, *IMAGE))
    return layers, X, Y


def main() -> None:
    layers, X, Y = build()
    start = time.perf_counter()
    terms = network.dropout_penalty_terms(layers, X, Y=Y)
    t_exact = time.perf_counter() - start
    start = time.perf_counter()
    est = network.dropout_penalty_mc(layers, X, Y, n_masks=N_DRAWS, seed=1)
    t_mc = time.perf_counter() - start
    ratio = t_exact / t_mc
    z = est.zscore(terms.total)
    print(
        f"net: 4 conv layers, {CHANNELS} channels, {IMAGE[0]}×{IMAGE[1]}, zero padding, "
        f"element dropout (keep {KEEP}) at 3 layers, {N_SAMPLES} samples"
    )
    print(f"exact penalty          {terms.total:.6f}   time {t_exact:8.2f} s")
    print(f"Monte Carlo, {N_DRAWS} draws {est.mean:.6f} ± {est.stderr:.3f}   time {t_mc:8.2f} s")
    print(f"time ratio exact / Monte Carlo: {ratio:.3f}")
    print(f"agreement: (MC − exact) / stderr = {z:+.2f}")
    print("attribution (layer position: term):")
    for subset, value in zip(terms.subsets, terms.values):
        kind = "own" if len(subset) == 1 else "interaction"
        print(f"  {subset!s:12} {kind:12} {value:12.4f}")
    rows = [
        ("exact costs at most 300 draws", t_exact, t_mc, ratio, 1.0, ratio <= 1.0),
        ("agreement within 4 standard errors", z, 0.0, abs(z), 4.0, abs(z) < 4.0),
    ]
    report_targets(rows, [f"total = {terms.total:.6f} = sum of the {len(terms.values)} terms"])


if __name__ == "__main__":
    main()
