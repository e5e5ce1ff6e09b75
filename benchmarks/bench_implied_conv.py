"""Conv implied-problem benchmarks (issue 4), each against a baseline measured in the same run.

    python benchmarks/bench_implied_conv.py

Prints one table:

* :func:`regtheory.implied.conv_induced_regularizer` and
  :func:`regtheory.implied.solve_conv` against the image size (1-D n = 16 … 1024
  with K = 5; 2-D 8×8 … 32×32 with 3×3 kernels), each relative to the smallest
  image: the lifted K×K formulation (7) must not grow with the image;
* the same against the kernel size (1-D, K = 3 … 9, n = 64), relative to K = 3:
  the lifted variable is K×K, so this may grow;
* both against the naive formulation on the full n×n operator (1-D, K = 3,
  n = 8, 16, 24): the circulant M = Σ_s w_s S_s (S_s the cyclic shift by the
  displacement of tap s) under an n×n nuclear norm. For the regularizer M is an
  n×n cvxpy variable constrained to be the circulant of the kernel; for the
  implied problem the kernel w is the variable. Its value is (λ/(nC))‖M‖_*²,
  the form (7) takes for full-width kernels (K = n); for K < n it is a lower
  bound of (7), so the comparison is one of cost, and the notes print both values.

solve_conv is timed on synthetic data: X ~ N(0, 1) (N = 64 samples, one
channel), Y = w* ∗ X + 0.1·noise for a random K-tap teacher kernel w* (circular;
it fits every image, and it is an end-to-end kernel of the net: w* ⋆ δ).
C = K (1-D) or kh·kw (2-D) hidden channels, the rank the lifted minimiser may
need. Every timing is the best of several runs of the public call (formulation,
Clarabel solve, factorization); the machine may be shared, so the runs of all
cases are interleaved in rounds and load hits them alike.
"""

from __future__ import annotations

from functools import partial

import cvxpy as cp
import numpy as np
from _timing import best_times, report_targets

from regtheory import conv, implied
from regtheory.masks import dropout_lambda

KEEP = 0.5
N_SAMPLES = 64
NOISE = 0.1
ROUNDS = 7
FLAT = 2.0  # a time at most this multiple of the smallest image's counts as flat


def teacher_data(rng, kernel: tuple[int, ...], image: tuple[int, ...]):
    """X ~ N(0, 1) and Y = w* ∗ X + noise, w* a K-tap kernel (in the model: w* = w* ⋆ δ)."""
    w_star = rng.normal(size=(1, 1, *kernel)) / np.sqrt(np.prod(kernel))
    X = rng.normal(size=(N_SAMPLES, 1, *image))
    Y = conv.conv2d(X, w_star, padding="circular") + NOISE * rng.normal(size=X.shape)
    return X, Y


def shift_basis(K: int, n: int) -> np.ndarray:
    """S[s] (n×n): y[p] = x[p + s − K + 1 mod n], one cyclic shift per tap s of a 2K − 1 kernel.

    Taps whose displacements agree modulo n get the same shift, so Σ_s w_s S[s] is
    the circulant of w folded modulo the image.
    """
    S = np.zeros((2 * K - 1, n, n))
    p = np.arange(n)
    for s in range(2 * K - 1):
        S[s, p, (p + s - K + 1) % n] = 1.0
    return S


def solve_sdp(problem: cp.Problem) -> None:
    problem.solve(solver="CLARABEL", **implied.CLARABEL_SDP_OPTIONS)
    if problem.status != cp.OPTIMAL:
        raise RuntimeError(f"naive formulation: Clarabel ended with status {problem.status}")


def naive_regularizer(w: np.ndarray, n: int, channels: int) -> float:
    """(λ/(nC)) min{‖M‖_*² : M the n×n circulant of w}, M an n×n cvxpy variable."""
    K = (len(w) + 1) // 2
    M = cp.Variable((n, n))
    problem = cp.Problem(cp.Minimize(cp.normNuc(M)), [M == np.tensordot(w, shift_basis(K, n), 1)])
    solve_sdp(problem)
    return dropout_lambda(KEEP) / (n * channels) * problem.value**2


def naive_solve(X: np.ndarray, Y: np.ndarray, K: int, channels: int) -> float:
    """min_w (1/N)Σ‖y − M(w)x‖² + (λ/(nC))‖M(w)‖_*², M(w) = Σ_s w_s S_s (n×n circulant)."""
    x, y = X[:, 0], Y[:, 0]
    N, n = x.shape
    S = shift_basis(K, n)
    w = cp.Variable(2 * K - 1)
    M = sum(w[s] * S[s] for s in range(2 * K - 1))
    # the data through their moments, as solve_conv does: R Rᵀ = XᵀX/N, E[y xᵀ], E‖y‖²
    evals, evecs = np.linalg.eigh(x.T @ x / N)
    R = evecs * np.sqrt(np.clip(evals, 0, None))
    fit = cp.sum_squares(M @ R) - 2 * cp.sum(cp.multiply(y.T @ x / N, M)) + np.sum(y * y) / N
    reg = dropout_lambda(KEEP) / (n * channels) * cp.square(cp.normNuc(M))
    problem = cp.Problem(cp.Minimize(fit + reg))
    solve_sdp(problem)
    return problem.value


def scaling_rows(rng, label: str, cases, target: float | None) -> list:
    """Both functions on each (name, w, kernel, image, channels), relative to the first case."""
    calls = {}
    for name, w, kernel, image, channels in cases:
        X, Y = teacher_data(rng, kernel, image)
        shape = image[0] if len(image) == 1 else image
        calls["conv_induced_regularizer", name] = partial(
            implied.conv_induced_regularizer, w, KEEP, channels, shape
        )
        calls["solve_conv", name] = partial(implied.solve_conv, X, Y, KEEP, channels, kernel[-1])
    best = best_times(calls, ROUNDS)
    first = cases[0][0]
    rows = []
    for (func, name), t in best.items():
        base = best[func, first]
        ratio = t / base
        rows.append(
            (
                f"{func} {label} {name}",
                t,
                f"{first}: {base * 1e3:.1f} ms",
                ratio,
                "" if target is None else f"<= {target:g}",
                None if target is None else ratio <= target,
            )
        )
    return rows


def main() -> None:
    rng = np.random.default_rng(0)
    rows, notes = [], []

    K = 5
    rows += scaling_rows(
        rng,
        f"1-D K={K}",
        [(f"n={n}", rng.normal(size=2 * K - 1), (K,), (n,), K) for n in (16, 64, 256, 1024)],
        FLAT,
    )
    rows += scaling_rows(
        rng,
        "2-D 3x3",
        [(f"{n}x{n}", rng.normal(size=(5, 5)), (3, 3), (n, n), 9) for n in (8, 16, 32)],
        FLAT,
    )
    rows += scaling_rows(
        rng,
        "1-D n=64",
        [(f"K={k}", rng.normal(size=2 * k - 1), (k,), (64,), k) for k in (3, 5, 7, 9)],
        None,
    )

    # -- against the naive n×n operator formulation; K = 3 so that the end-to-end kernel
    # (5 taps) fits every image unfolded (solve_conv refuses even sides narrower than 2K − 1)
    K = 3
    lam = dropout_lambda(KEEP)
    calls = {}
    for n in (8, 16, 24):
        w = rng.normal(size=2 * K - 1)
        X, Y = teacher_data(rng, (K,), (n,))
        calls["reg", n, "lifted"] = partial(implied.conv_induced_regularizer, w, KEEP, K, n)
        calls["reg", n, "naive"] = partial(naive_regularizer, w, n, K)
        calls["fit", n, "lifted"] = partial(implied.solve_conv, X, Y, KEEP, K, K)
        calls["fit", n, "naive"] = partial(naive_solve, X, Y, K, K)
        w_circ = np.zeros(n)
        np.add.at(w_circ, (np.arange(2 * K - 1) - K + 1) % n, w)
        dft = lam / (n * K) * np.abs(np.fft.fft(w_circ)).sum() ** 2
        notes.append(
            f"n={n}: (7) lifted {calls['reg', n, 'lifted']().value:.6g}; naive n x n "
            f"{calls['reg', n, 'naive']():.6g} (DFT l1 formula {dft:.6g}): the full-width "
            "(K = n) value, <= (7) for K < n"
        )
    best = best_times(calls, ROUNDS)
    for n in (8, 16, 24):
        for kind, label, base_label in (
            ("reg", "regularizer", "lifted"),
            ("fit", "solve", "solve_conv"),
        ):
            t, base = best[kind, n, "naive"], best[kind, n, "lifted"]
            rows.append(
                (
                    f"naive n x n {label}, K={K} n={n}",
                    t,
                    f"{base_label}: {base * 1e3:.1f} ms",
                    t / base,
                    "",
                    None,
                )
            )
    # Where the two coincide (K = n), the naive formulation computes (7) itself.
    n_full = 8
    w = rng.normal(size=2 * n_full - 1)
    lifted = implied.conv_induced_regularizer(w, KEEP, n_full, n_full).value
    naive = naive_regularizer(w, n_full, n_full)
    notes.append(
        f"K = n = {n_full}: lifted {lifted:.10g}, naive {naive:.10g}, "
        f"rel. diff {abs(lifted - naive) / lifted:.1e}"
    )

    print(f"{'benchmark':<48} {'time [s]':>9}  {'baseline':<22} {'ratio':>8}  {'target':<7} result")
    for name, t, base, ratio, target, met in rows:
        result = "" if met is None else ("met" if met else "MISSED")
        print(f"{name:<48} {t:>9.4f}  {base:<22} {ratio:>8.2f}  {target:<7} {result}")
    report_targets(rows, notes)


if __name__ == "__main__":
    main()
