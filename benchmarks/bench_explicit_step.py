"""One training step with the explicit dropout regularizer, against the plain step.

    PYTHONPATH=$PWD python benchmarks/bench_explicit_step.py [--rounds N]

Two float32 models on the CPU, weights from ``torch.manual_seed(0)``, a batch of 128
random inputs and labels (10 classes), cross-entropy:

* ``mlp``: Linear(784 → 512) – ReLU – Dropout(0.5) – Linear(512 → 512) – ReLU –
  Dropout(0.5) – Linear(512 → 10);
* ``cnn``: Conv(1 → 16, 3×3, padding 1) – ReLU – Dropout2d(0.1) – MaxPool(2) –
  Conv(16 → 32, 3×3, padding 1) – ReLU – MaxPool(2) – Flatten – Linear(1568 → 128) –
  ReLU – Dropout(0.5) – Linear(128 → 10), on 1×28×28.

A step is: ``model.train()``, forward, mean cross-entropy, ``backward()``, an SGD
update. ``plain`` is that step (with its dropout masks); ``exact`` and ``sampled``
train on the clean output with the regularizer instead of the masks:
``reg = explicit_regularizer(model, X, loss="cross_entropy", hessian=...)``, then the
cross-entropy of ``reg.output`` plus ``reg.value``. The three run in interleaved rounds
(best time of each kept) and the ratio is best time / best time of ``plain``; the goal
is ≤ 3×.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from _timing import best_times, report_targets
from torch import nn

from regtheory.pytorch import explicit_regularizer

GOAL = 3.0
BATCH = 128


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 512),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(512, 10),
    )


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Dropout2d(0.1),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


MODELS = {"mlp": (mlp, (784,)), "cnn": (cnn, (1, 28, 28))}


def step_fn(model: nn.Module, X: torch.Tensor, labels: torch.Tensor, hessian: str | None):
    """One SGD step, with the regularizer's value added when ``hessian`` is given."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    gen = np.random.default_rng(0)

    def step() -> None:
        model.train()
        opt.zero_grad()
        if hessian is None:
            loss = F.cross_entropy(model(X), labels)
        else:  # the clean output of the regularizer's pass carries the task loss
            reg = explicit_regularizer(model, X, loss="cross_entropy", hessian=hessian, rng=gen)
            loss = F.cross_entropy(reg.output, labels) + reg.value
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for name, (build, shape) in MODELS.items():
        torch.manual_seed(0)
        model = build()
        X = torch.randn(BATCH, *shape)
        labels = torch.randint(10, (BATCH,))
        cases = {h or "plain": step_fn(model, X, labels, h) for h in (None, "exact", "sampled")}
        for fn in cases.values():  # warm up
            fn()
        best = best_times(cases, args.rounds)
        for h in ("exact", "sampled"):
            ratio = best[h] / best["plain"]
            rows.append((f"{name} {h}", best["plain"], best[h], ratio, GOAL, ratio <= GOAL))
    print(f"{'case':<14} {'plain ms':>9} {'with reg ms':>12} {'ratio':>7}  goal")
    for case, plain, reg, ratio, goal, met in rows:
        print(
            f"{case:<14} {plain * 1e3:9.2f} {reg * 1e3:12.2f} {ratio:6.2f}x  "
            f"<= {goal:g}x {'met' if met else 'MISSED'}"
        )
    report_targets(rows, [f"{torch.get_num_threads()} torch threads, batch {BATCH}"])


if __name__ == "__main__":
    main()
