"""Gradient descent on the closed-form dropout objective against dropout SGD.

    python benchmarks/bench_explicit_fc.py

One fixed problem (d_in = d_out = 20, width 10, n = 500, keep 0.5, Gaussian inputs).
The target is the closed-form global optimum of :func:`regtheory.fc.global_optimum`;
the gap of a run is (L - L*)/L*, L the expected dropout objective it records. For
each method: the first step at which the gap falls to 1e-2, 1e-3, 1e-4 and 1e-6, and
the best wall time of a run of exactly that many steps (recording only the ends).
GD is ``training.train_explicit_fc`` (constant step); dropout SGD is
``training.train_fc`` with real masks, full batch or minibatches of 50, step
η/(1 + t/τ).
"""

from __future__ import annotations

import numpy as np
from _timing import best_time

from regtheory import fc, training

N, D, WIDTH, KEEP = 500, 20, 10, 0.5
GAPS = (1e-2, 1e-3, 1e-4, 1e-6)
SGD_STEPS = 20_000


def problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    Y = X @ rng.standard_normal((D, D)).T + 0.5 * rng.standard_normal((N, D))
    return X, Y


def optimum_value(X: np.ndarray, Y: np.ndarray) -> float:
    """L* = fit of M* + (λ/w)‖M* C^{1/2}‖_*², computed here from M*."""
    C, T = X.T @ X / N, Y.T @ X / N
    M = fc.global_optimum(T, KEEP, WIDTH, cov=C)
    eigval, eigvec = np.linalg.eigh(C)
    root = (eigvec * np.sqrt(eigval)) @ eigvec.T
    lam = (1 - KEEP) / KEEP
    fit = np.mean(np.sum((Y - X @ M.T) ** 2, axis=1))
    return float(fit + lam / WIDTH * np.linalg.svd(M @ root, compute_uv=False).sum() ** 2)


def step_size(X: np.ndarray, Y: np.ndarray) -> float:
    """1/(4(1+λ)‖C‖₂‖TC^{-1/2}‖₂), the scale suggested by train_explicit_fc."""
    eigval, eigvec = np.linalg.eigh(X.T @ X / N)
    inv_root = (eigvec / np.sqrt(eigval)) @ eigvec.T
    lam = (1 - KEEP) / KEEP
    return 1.0 / (4 * (1 + lam) * eigval.max() * np.linalg.norm(Y.T @ X / N @ inv_root, 2))


def first_steps(res: training.FCTrainingResult, best: float) -> list[int | None]:
    """The first recorded step at which the gap is at most each of GAPS (None: never)."""
    gap = (res.loss - best) / best
    return [int(res.steps[np.argmax(gap <= g)]) if np.any(gap <= g) else None for g in GAPS]


def main() -> None:
    X, Y = problem()
    best = optimum_value(X, Y)
    lr = step_size(X, Y)
    methods = {
        "GD on the closed form": lambda steps, every: training.train_explicit_fc(
            X, Y, KEEP, WIDTH, steps=steps, lr=lr, rng=0, record_every=every
        ),
        "dropout SGD, full batch, tau=500": lambda steps, every: training.train_fc(
            X, Y, KEEP, WIDTH, steps=steps, lr=lr, lr_decay=500.0, rng=0, record_every=every
        ),
        "dropout SGD, batch 50, tau=500": lambda steps, every: training.train_fc(
            X,
            Y,
            KEEP,
            WIDTH,
            steps=steps,
            lr=lr,
            lr_decay=500.0,
            batch_size=50,
            rng=0,
            record_every=every,
        ),
    }
    print(f"n={N}, d={D}, width={WIDTH}, keep={KEEP}, lr={lr:.4g}, L*={best:.6f}")
    print(f"{'method':<34} {'gap':>7} {'first step':>10} {'time [s]':>9}  final gap")
    for name, run in methods.items():
        budget = 5_000 if name.startswith("GD") else SGD_STEPS
        history = run(budget, 10)
        final = (history.loss[-1] - best) / best
        for target, step in zip(GAPS, first_steps(history, best)):
            if step is None:
                print(f"{name:<34} {target:>7.0e} {'not reached':>10} {'':>9}  {final:.1e}")
                continue
            t = best_time(lambda run=run, k=step: run(k, k), repeat=3) if step else 0.0
            print(f"{name:<34} {target:>7.0e} {step:>10d} {t:>9.3f}  {final:.1e}")
    print(
        f"note: SGD runs {SGD_STEPS} steps at most and records every 10 steps; "
        "a step is first counted at a record"
    )


if __name__ == "__main__":
    main()
