"""The PyTorch penalty on three common models against the loop a user would write.

    PYTHONPATH=$PWD python benchmarks/bench_torch_models.py [--rounds N] [--budget S] [--quick]

Three float32 models on the CPU, weights from ``torch.manual_seed(0)``, random inputs
and labels (10 classes):

* ``mlp``: Linear(784 → 512) – ReLU – Dropout(0.5) – Linear(512 → 512) – ReLU –
  Dropout(0.5) – Linear(512 → 10), 256 samples, 500 draws;
* ``lenet``: LeNet-5 on 1×28×28, Conv(1 → 6, 5×5, padding 2) – ReLU – MaxPool(2) –
  Conv(6 → 16, 5×5) – ReLU – MaxPool(2) – Flatten – Linear(400 → 120) – ReLU –
  Dropout(0.5) – Linear(120 → 84) – ReLU – Dropout(0.5) – Linear(84 → 10), 256 samples,
  500 draws;
* ``resnet18``: torchvision's ``resnet18(num_classes=10)`` with Dropout(0.5) before its
  ``fc`` (``model.fc = nn.Sequential(nn.Dropout(0.5), fc)``), 3×32×32, 32 samples,
  100 draws (above :func:`regtheory.montecarlo.min_draws` of one keep-0.5 layer).

For each model, the same number of draws timed five ways:

* ``loop`` (the baseline of the ratios): ``model.train()`` but batch norms in eval,
  under ``torch.no_grad()``, one clean pass (``model.eval()``) and then one pass per
  draw on the whole data, each giving the loss gap ``L(model(X)) - L(clean)`` in the
  model's dtype; L is the mean over samples of the squared error summed over outputs
  against one-hot labels;
* ``total``: ``regtheory.pytorch.dropout_penalty(model, X, Y=one_hot, n_masks=n,
  by_layer=False)``, the penalty alone;
* ``default``: the same with ``by_layer=True`` (the default), which adds each dropout
  layer's own penalty to the report;
* ``CE total`` and ``CE default``: the same two with ``loss="cross_entropy"`` and the
  integer labels; "n/a" where ``dropout_penalty`` has no ``loss`` argument yet.

A model the package refuses is shown as "refused: <its message>". The variants run in
interleaved rounds (each round: loop, total, default, CE total, CE default of one model,
then of the next), so that load on a shared machine hits them alike; each keeps its
median and its best (min) time over the rounds, and the ratio is median time / median
time of the loop (< 1: faster than the loop). Goals: ``default`` ≤ 1.0× the loop,
``total`` ≤ 0.5×. No round starts that would end, at the pace of the last one, after
``--budget`` seconds, so a loaded machine runs fewer rounds (at least one).
``--quick`` runs one round.

As a check that the timed work is the same, the last round's estimates are compared
with the loop's (z = difference / combined standard error); the cross-entropy variants
with the same loop on the cross-entropy, run once per model, untimed and outside the
budget, after the rounds and only when those variants ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from _timing import report_targets
from torch import nn

from regtheory import InvalidParameterError
from regtheory.pytorch import dropout_penalty

N_CLASSES = 10
ROUNDS = 3
# seconds: a round is not started when it would end past this (2 free cores: 3 rounds)
BUDGET = 170.0
GOALS = {"total": 0.5, "default": 1.0, "CE total": 0.5, "CE default": 1.0}


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 512),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(512, N_CLASSES),
    )


def lenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(84, N_CLASSES),
    )


def resnet18() -> nn.Module:
    from torchvision.models import resnet18 as torchvision_resnet18

    model = torchvision_resnet18(num_classes=N_CLASSES)
    model.fc = nn.Sequential(nn.Dropout(0.5), model.fc)
    return model


# name: (constructor, shape of one sample, samples, draws)
MODELS = {
    "mlp": (mlp, (784,), 256, 500),
    "lenet": (lenet, (1, 28, 28), 256, 500),
    "resnet18": (resnet18, (3, 32, 32), 32, 100),
}


def problem(name: str):
    """The float32 model (eval mode), inputs, one-hot targets and integer labels."""
    build, shape, n, _ = MODELS[name]
    torch.manual_seed(0)
    model = build().to(torch.float32).eval()
    X = torch.randn(n, *shape)
    labels = torch.randint(N_CLASSES, (n,))
    return model, X, F.one_hot(labels, N_CLASSES).to(torch.float32), labels


def train_but_norms(model: nn.Module) -> None:
    """Training mode (dropout on) with batch norms on their running statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def squared_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean(torch.sum((target - out) ** 2, dim=1))


def loop(model, X, target, n: int, loss=squared_error) -> tuple[float, float]:
    """The baseline: ``n`` training-mode passes, each one loss gap; their mean and stderr."""
    with torch.no_grad():
        model.eval()
        clean = loss(model(X), target)
        train_but_norms(model)
        gaps = [loss(model(X), target) - clean for _ in range(n)]
        model.eval()
    gaps = torch.stack(gaps).double()
    return gaps.mean().item(), gaps.std().item() / n**0.5


def cases(model, X, one_hot, labels, n: int) -> dict:
    """The timed callables of one model; each returns {loss: (estimate, stderr)}."""

    def package(by_layer: bool, ce: bool):
        def run():
            extra = {"loss": "cross_entropy"} if ce else {}
            target = labels if ce else one_hot
            report = dropout_penalty(model, X, Y=target, n_masks=n, by_layer=by_layer, **extra)
            return {"ce" if ce else "mse": (report.value, report.stderr)}

        return run

    return {
        "loop": lambda: {"mse": loop(model, X, one_hot, n)},
        "total": package(False, False),
        "default": package(True, False),
        "CE total": package(False, True),
        "CE default": package(True, True),
    }


class Model:
    """One model's timed callables, and what its rounds found."""

    def __init__(self, name: str):
        self.name = name
        model, X, one_hot, labels = problem(name)
        self.n = MODELS[name][3]
        self.calls = cases(model, X, one_hot, labels, self.n)
        self.reference = lambda: loop(model, X, labels, self.n, loss=F.cross_entropy)
        self.times = {key: [] for key in self.calls}
        self.status, self.found = {}, {}

    def round(self) -> None:
        """Each variant once, in turn; a refused one is not called again."""
        for key, fn in self.calls.items():
            if key in self.status:
                continue
            start = time.perf_counter()
            try:
                self.found[key] = fn()
            except InvalidParameterError as err:
                self.status[key] = f"refused: {err}"
                continue
            except (TypeError, ValueError) as err:  # before the `loss` argument exists
                self.status[key] = f"n/a ({type(err).__name__}: {err})"
                continue
            self.times[key].append(time.perf_counter() - start)

    def rows(self) -> list:
        """One table row per variant (name and status where it did not run)."""
        if any(key.startswith("CE") and key not in self.status for key in self.calls):
            self.found["loop"]["ce"] = self.reference()
        base = statistics.median(self.times["loop"])
        rows = []
        for key, seconds in self.times.items():
            name = f"{self.name} {key}"
            if key in self.status:
                rows.append((name, self.status[key]))
                continue
            median = statistics.median(seconds)
            goal = GOALS.get(key)
            met = None if goal is None else median / base <= goal
            loss = next(iter(self.found[key]))
            z = z_score(self.found[key][loss], self.found["loop"][loss]) if key != "loop" else None
            rows.append((name, median, min(seconds), median / base, goal, met, z))
        return rows


def z_score(estimate: tuple, reference: tuple) -> float:
    return (estimate[0] - reference[0]) / float(np.hypot(estimate[1], reference[1]))


def show(rows: list) -> None:
    print(
        f"{'model variant':<22} {'median s':>9} {'min s':>8} {'ratio':>7} {'goal':>7} "
        f"{'met':>4} {'z vs loop':>9}"
    )
    for row in rows:
        if len(row) == 2:
            print(f"{row[0]:<22} {row[1]}")
            continue
        name, median, least, ratio, goal, met, z = row
        goal_text = "" if goal is None else f"≤ {goal:.1f}×"
        met_text = "" if met is None else ("yes" if met else "NO")
        z_text = "" if z is None else f"{z:+.2f}"
        print(
            f"{name:<22} {median:9.3f} {least:8.3f} {ratio:6.2f}× {goal_text:>7} "
            f"{met_text:>4} {z_text:>9}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="most interleaved rounds")
    parser.add_argument(
        "--budget", type=float, default=BUDGET, help="no new round past this many seconds"
    )
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    print(
        f"CPU, torch {torch.__version__}, {torch.get_num_threads()} torch threads (the "
        f"default), float32; up to {rounds} interleaved round(s) within {args.budget:.0f} s; "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )
    start = time.perf_counter()
    models = [Model(name) for name in MODELS]
    done = 0
    while done < rounds:
        began = time.perf_counter()
        for model in models:
            model.round()
        done += 1
        now = time.perf_counter()
        if now + (now - began) - start > args.budget:
            break
    rows = [row for model in models for row in model.rows()]
    print(f"{done} round(s) run")
    show(rows)
    print(
        f"{time.perf_counter() - start:.0f} s in all; load average "
        f"{os.getloadavg()[0]:.2f} at the end; ratio = median time / median time of the loop"
    )
    report_targets(
        [row for row in rows if len(row) > 2],
        ["goals: default ≤ 1.0× the loop, total alone ≤ 0.5× (the same with cross-entropy)"],
    )


if __name__ == "__main__":
    main()
