"""The induced convex problem of matrix completion, against baselines measured in the same run.

    python benchmarks/bench_completion.py           # 1000 x 1000, 10^5 entries: minutes
    python benchmarks/bench_completion.py --quick   # 300 x 300, 10^4 entries: seconds

Data: a rank-5 truth (Gaussian factors) plus noise of standard deviation 0.1, observed on
entries drawn without replacement with probability proportional to p_i q_j, p and q
power laws (exponent 1, Zipf) over randomly permuted rows and columns, and every row and
column observed at least once. keep = 0.5, width d = 10.

Prints one table:

* ``solve_induced(method="proximal")`` at 1000 × 1000 with 10⁵ observations (one run: it
  takes minutes), against one dense ``numpy.linalg.svd`` of a 1000 × 1000 matrix (the
  cost of one proximal step with a full SVD); with its iterations, certified gap, rank and
  the error on the entries not observed;
* cvxpy (the semidefinite program on the solver ladder) against the proximal method on
  sizes both solve, up to the ``method="auto"`` threshold m·n = 2,500, with the relative
  difference of their objectives. The cases run in turn within each round, so that load
  on a shared machine hits them alike.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from _timing import best_time, best_times

from regtheory import completion

KEEP, WIDTH, RANK, NOISE = 0.5, 10, 5, 0.1


def problem(m: int, n: int, count: int, seed: int = 0):
    """The observations and the truth (module docstring)."""
    rng = np.random.default_rng(seed)
    pr = rng.permutation(np.arange(1, m + 1.0) ** -1.0)
    pc = rng.permutation(np.arange(1, n + 1.0) ** -1.0)
    # Gumbel top-k: `count` entries without replacement, with probabilities ∝ p_i q_j
    keys = np.log(np.outer(pr, pc)).ravel() - np.log(-np.log(rng.random(m * n)))
    flat = set(np.argpartition(-keys, count)[:count].tolist())
    flat |= {i * n + int(rng.integers(n)) for i in range(m)}
    flat |= {int(rng.integers(m)) * n + j for j in range(n)}
    chosen = np.array(sorted(flat))
    rows, cols = chosen // n, chosen % n
    truth = rng.normal(size=(m, RANK)) @ rng.normal(size=(RANK, n)) / np.sqrt(RANK)
    values = truth[rows, cols] + NOISE * rng.normal(size=chosen.size)
    return completion.observed(rows, cols, values, (m, n)), truth


def large_row(m: int, count: int) -> tuple:
    obs, truth = problem(m, m, count)
    counts = np.bincount(obs.rows, minlength=m)
    a = np.random.default_rng(1).normal(size=(m, m))
    t_svd = best_time(lambda: np.linalg.svd(a), repeat=3)
    start = time.perf_counter()
    res = completion.solve_induced(obs, KEEP, WIDTH, method="proximal")
    elapsed = time.perf_counter() - start
    off = np.ones((m, m), dtype=bool)
    off[obs.rows, obs.cols] = False
    rmse = float(np.sqrt(np.mean((res.M - truth)[off] ** 2) / np.mean(truth[off] ** 2)))
    note = (
        f"{res.iterations} iterations, certified gap {res.gap:.1e}, rank {res.rank}, "
        f"relative RMSE off the observed entries {rmse:.3f}; entries per row "
        f"{counts.min()}..{counts.max()}, N = {obs.n_observed}"
    )
    name = f"proximal {m}x{m}, N={obs.n_observed}"
    return (name, elapsed, f"numpy.linalg.svd {m}x{m} {t_svd:.2f} s", elapsed / t_svd, note)


def both_rows(sizes, rounds: int) -> list:
    cases, found, obs_of = {}, {}, {}

    def run(key, obs, method):
        found[key] = completion.solve_induced(obs, KEEP, WIDTH, method=method)

    for m, count in sizes:
        obs_of[m], _ = problem(m, m, count, seed=m)
        for method in ("cvxpy", "proximal"):
            cases[method, m] = lambda key=(method, m), obs=obs_of[m]: run(key, obs, key[0])
    best = best_times(cases, rounds)
    rows = []
    for m, _ in sizes:
        a, b = found["cvxpy", m], found["proximal", m]
        diff = abs(a.objective - b.objective) / b.objective
        note = (
            f"objectives differ by {diff:.1e}; gaps {a.gap:.1e} ({a.solver}) and {b.gap:.1e} "
            f"({b.iterations} proximal iterations)"
        )
        name = f"cvxpy {m}x{m}, N={obs_of[m].n_observed}"
        t_cvx, t_prox = best["cvxpy", m], best["proximal", m]
        rows.append((name, t_cvx, f"proximal {t_prox:.3f} s", t_cvx / t_prox, note))
    return rows


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    rows = [large_row(300, 10_000) if quick else large_row(1000, 100_000)]
    rows += both_rows([(20, 150), (30, 300)] if quick else [(20, 150), (35, 400), (50, 800)], 1)
    print(f"keep = {KEEP}, width = {WIDTH}, rank-{RANK} truth, noise {NOISE}, Zipf popularity")
    print(f"{'benchmark':<34} {'time [s]':>9}  {'baseline':<30} {'ratio':>7}")
    for name, t, base, ratio, _ in rows:
        print(f"{name:<34} {t:>9.3f}  {base:<30} {ratio:>7.2f}")
    for name, *_, note in rows:
        print(f"note: {name}: {note}")


if __name__ == "__main__":
    main()
