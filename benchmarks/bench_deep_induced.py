"""The induced regularizer of deep linear nets against the squared nuclear norm.

    python benchmarks/bench_deep_induced.py

For random 3 × 4 maps M (Gaussian entries, three seeds) prints, for depth L = 2…5,
width w ∈ {3, 6} and keep ∈ {0.5, 0.8}:

* ``Θ/nuc`` = Θ_L(M) / ((λ/w)‖M‖_*²), the ratio to the two-layer value, one column per M;
* ``bound/nuc`` = ((1 + λ/w)^(L-1) - 1) / (λ/w), the same ratio for the convex lower bound
  (which rank-one maps attain);
* ``max Θ/bound``, how far above that bound the three maps sit;
* ``spread``, the largest relative gap between the worst and the best of the starts;
* the solve time per map.
"""

from __future__ import annotations

import time

import numpy as np

from regtheory.implied import deep_induced_regularizer
from regtheory.masks import dropout_lambda

STARTS = 10


def main() -> None:
    maps = [np.random.default_rng(seed).normal(size=(3, 4)) for seed in range(3)]
    header = (
        f"{'keep':>5} {'w':>3} {'L':>2} | "
        + " ".join(f"{'Θ/nuc M' + str(k):>10}" for k in range(len(maps)))
        + f" | {'bound/nuc':>9} {'max Θ/bound':>11} {'spread':>8} {'s/map':>6}"
    )
    print(header)
    print("-" * len(header))
    for keep in (0.5, 0.8):
        lam = dropout_lambda(keep)
        for width in (3, 6):
            for depth in (2, 3, 4, 5):
                start = time.perf_counter()
                results = [
                    deep_induced_regularizer(M, keep, width, depth, starts=STARTS, rng=0)
                    for M in maps
                ]
                per_map = (time.perf_counter() - start) / len(maps)
                bound = ((1 + lam / width) ** (depth - 1) - 1) / (lam / width)
                above = max(r.value / r.lower_bound for r in results)
                spread = max(r.spread for r in results)
                ratios = " ".join(f"{r.ratio:10.4f}" for r in results)
                print(
                    f"{keep:5.1f} {width:3d} {depth:2d} | {ratios} | {bound:9.4f} "
                    f"{above:11.4f} {spread:8.1e} {per_map:6.2f}"
                )


if __name__ == "__main__":
    main()
