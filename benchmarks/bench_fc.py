"""FC benchmarks, each against a baseline measured in the same run.

    python benchmarks/bench_fc.py

Prints one table: the closed-form optimum against the SVD it is built on, the
cvxpy solvers against the closed form, and the Monte Carlo cost of 1 % relative
standard error against the closed-form penalty.
"""

from __future__ import annotations

import numpy as np
from _timing import best_time

from regtheory import fc, implied


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []

    n = 1000
    T = rng.normal(size=(n, n))
    t_svd = best_time(lambda: np.linalg.svd(T))
    t_opt = best_time(lambda: fc.global_optimum(T, 0.5, n))
    rows.append(
        (
            f"global_optimum, n={n}",
            t_opt,
            f"numpy.linalg.svd {t_svd:.3f} s",
            t_opt / t_svd,
            "<= 1.5",
        )
    )

    t_spec = best_time(lambda: implied.solve_fc(T, 0.5, n, method="spectral"), repeat=3)
    rows.append((f"solve_fc spectral, n={n}", t_spec, "global_optimum", t_spec / t_opt, "< 1 s"))

    n_small = 30
    Ts = rng.normal(size=(n_small, n_small))
    t_closed_small = best_time(lambda: fc.global_optimum(Ts, 0.5, n_small), repeat=20)
    t_sdp = best_time(lambda: implied.solve_fc(Ts, 0.5, n_small, method="sdp"), repeat=2)
    rows.append((f"solve_fc sdp, n={n_small}", t_sdp, "global_optimum", t_sdp / t_closed_small, ""))

    d, w, m = 50, 100, 1000
    U, V, X = rng.normal(size=(d, w)), rng.normal(size=(d, w)), rng.normal(size=(m, d))
    C = X.T @ X / m
    t_pen = best_time(lambda: fc.dropout_penalty(U, V, 0.5, cov=C), repeat=20)
    est = fc.dropout_penalty(U, V, 0.5, X=X, method="mc", n_masks=10**7, rng=0, rtol=0.01)
    t_mc = best_time(
        lambda: fc.dropout_penalty(U, V, 0.5, X=X, method="mc", n_masks=10**7, rng=0, rtol=0.01),
        repeat=3,
    )
    rows.append(
        (
            f"MC to 1% rel. SE ({est.n_masks} masks), w={w}",
            t_mc,
            "dropout_penalty",
            t_mc / t_pen,
            "",
        )
    )

    print(f"{'benchmark':<42} {'time [s]':>10}  {'baseline':<30} {'ratio':>9}  target")
    for name, t, base, ratio, target in rows:
        print(f"{name:<42} {t:>10.4f}  {base:<30} {ratio:>9.2f}  {target}")


if __name__ == "__main__":
    main()
