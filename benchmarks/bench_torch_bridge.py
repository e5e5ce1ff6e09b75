"""Monte Carlo masks per second through the PyTorch bridge against the NumPy engine.

    PYTHONPATH=$PWD python benchmarks/bench_torch_bridge.py

Two ReLU nets, each with a non-linearity after a dropout so that the penalty has no
exact form and is estimated by Monte Carlo:

* conv: Conv2d(3 → 16, 3×3) – ReLU – Dropout(0.2) – Conv2d(16 → 16, 3×3) – ReLU on
  16×16 maps, zero padding, 32 samples;
* MLP: Linear(64 → 256) – ReLU – Dropout(0.5) – Linear(256 → 256) – ReLU –
  Dropout(0.5) – Linear(256 → 10), 128 samples.

For each, on the CPU and in one run, the same number of draws (each a fresh mask for
every sample and dropout layer, on the whole data) is timed three ways:

* ``torch float64`` and ``torch float32``: ``regtheory.pytorch.dropout_penalty(model,
  X, Y=Y, by_layer=False)``, which runs the model's own modules (dropout in training
  mode) in the model's dtype, draws stacked along the batch axis;
* ``numpy``: ``regtheory.network.dropout_penalty_mc`` on ``from_torch(model)``, the
  package's float64 NumPy engine (the baseline of the ratios).

Each is the best of three runs (the machine may be shared); masks/s = draws / time.
The three estimates estimate the same penalty, so their z-scores against the NumPy
one are printed as a check that the timed work is the same.
"""

from __future__ import annotations

import numpy as np
import torch
from _timing import best_time
from torch import nn

from regtheory import network
from regtheory.pytorch import dropout_penalty, from_torch

N_DRAWS = {"conv": 1000, "mlp": 2000}
REPEAT = 3


def conv_net(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
    )
    rng = np.random.default_rng(seed)
    return model, rng.normal(size=(32, 3, 16, 16)), rng.normal(size=(32, 16, 16, 16))


def mlp(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(64, 256),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(256, 10),
    )
    rng = np.random.default_rng(seed)
    return model, rng.normal(size=(128, 64)), rng.normal(size=(128, 10))


def timed(fn):
    """Best time of ``fn()`` over REPEAT runs, and what its last run returned."""
    found = []
    seconds = best_time(lambda: found.append(fn()), repeat=REPEAT)
    return seconds, found[-1]


def measure(name: str, model: nn.Module, X: np.ndarray, Y: np.ndarray) -> None:
    n = N_DRAWS[name]
    results = {}
    for label, dtype in (("torch float64", torch.float64), ("torch float32", torch.float32)):
        typed = model.to(dtype)
        seconds, report = timed(
            lambda m=typed: dropout_penalty(m, X, Y=Y, n_masks=n, seed=1, by_layer=False)
        )
        results[label] = (seconds, report.total, report.stderr)
    layers = from_torch(model, X.shape[1:])
    seconds, est = timed(lambda: network.dropout_penalty_mc(layers, X, Y, n_masks=n, seed=1))
    results["numpy"] = (seconds, est.mean, est.stderr)
    base_seconds, base_mean, base_se = results["numpy"]
    print(f"{name}: {n} draws, {len(X)} samples of shape {X.shape[1:]}")
    print(
        f"  {'engine':<14} {'time (s)':>9} {'masks/s':>9} {'vs numpy':>9} "
        f"{'penalty':>10} {'stderr':>9} {'z vs numpy':>10}"
    )
    for label, (seconds, mean, se) in results.items():
        z = 0.0 if label == "numpy" else (mean - base_mean) / np.hypot(se, base_se)
        print(
            f"  {label:<14} {seconds:9.3f} {n / seconds:9.0f} {base_seconds / seconds:8.2f}× "
            f"{mean:10.5g} {se:9.2g} {z:+10.2f}"
        )


def main() -> None:
    print(
        f"CPU, torch {torch.__version__}, {torch.get_num_threads()} torch threads; "
        f"best of {REPEAT} runs; 'vs numpy' = NumPy time / this time (> 1: faster)"
    )
    measure("conv", *conv_net())
    measure("mlp", *mlp())
    if torch.cuda.is_available():
        print("note: a GPU is present but not timed here (the comparison is on the CPU)")
    else:
        print("note: no GPU on this machine; the bridge's GPU path (a model on CUDA) is not timed")


if __name__ == "__main__":
    main()
