r"""Figure (o): dropout against its explicit regularizer, trained on digits.

(o) ``explicit_vs_dropout`` -- an MLP and a small CNN trained on scikit-learn's 8×8
    digits, with cross-entropy and with squared error, five ways: without
    regularization, with dropout, with dropout's explicit regularizer in place of the
    masks, with that regularizer plus dropout's first-order noise, and with weight
    decay whose weight is chosen on a validation set. Test accuracy, test loss, and
    how far each learned function is from dropout's.

**The split.** The 1,797 digits are split once (seed ``SPLIT_SEED``, whatever the
figure's seed) into ``N_TRAIN`` training, ``N_VALIDATION`` validation and the rest
test digits; pixels are scaled to [0, 1]. A small training set is where a regularizer
has work to do.

**The methods** are :func:`regtheory.pytorch.train_classifier`'s ``dropout_as`` options,
on the same initial weights and the same mini-batches for a given seed:

* ``none``: every dropout site the identity;
* ``dropout``: real masks;
* ``explicit``: the clean output's loss plus :func:`regtheory.pytorch.explicit_regularizer`
  (dropout's penalty to second order, its Hessian exact), no masks;
* ``explicit+noise``: that plus dropout's first-order term for a fresh draw of the
  masks, whose gradient is dropout's update noise to first order;
* ``weight decay``: no dropout, Adam's L2 coefficient picked from ``WEIGHT_DECAYS``
  by the mean validation accuracy over the seeds (ties: the lower validation loss).

**The distance between functions.** For each seed, the share of test digits on which
two models predict different classes, and the relative distance of their outputs,
:math:`\|f_a - f_b\|_F / \|f_b\|_F` over the test set, from each method to dropout.
``dropout, other seed`` compares dropout's model of seed ``s`` with that of seed
``s + 1``: how far two dropout runs are from each other, the scale to read the others
against.

Intervals are 95 % Student-t intervals over the seeds. PyTorch and scikit-learn (the
``torch`` extra) are imported when the figure is computed.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import InvalidParameterError
from ..sweep import Sweep
from ._check import EXACT, RECORD, trajectory
from ._intervals import student_t_interval
from ._registry import FigureSpec, register

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["compute_explicit_vs_dropout", "plot_explicit_vs_dropout"]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


SPLIT_SEED = 2026
N_TRAIN = 500
N_VALIDATION = 400
DROP = 0.3  # PyTorch's p of every dropout module: keep 0.7
METHODS = ("none", "dropout", "explicit", "explicit+noise", "weight decay")
_DROPOUT_AS = {
    "none": "off",
    "dropout": "masks",
    "explicit": "explicit",
    "explicit+noise": "explicit+noise",
    "weight decay": "off",
}
WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)  # 0 included: validation may prefer none
SETTINGS = (("MLP", "cross_entropy"), ("MLP", "mse"), ("CNN", "cross_entropy"), ("CNN", "mse"))


def _settings(quick: bool) -> dict[str, Any]:
    """Training budget: quick mode trains two settings and seeds for one epoch."""
    return {
        "settings": [list(s) for s in (SETTINGS[::3] if quick else SETTINGS)],
        "seeds": 2 if quick else 5,
        "epochs": 1 if quick else 40,
        "batch_size": 64,
        "lr": 3e-3,
        "weight_decays": list(WEIGHT_DECAYS[3:4] if quick else WEIGHT_DECAYS),
    }


def _imports() -> tuple[Any, Any]:
    try:
        from sklearn.datasets import load_digits

        from .. import pytorch
    except ImportError as exc:
        raise InvalidParameterError(
            f"figure 'explicit_vs_dropout' needs PyTorch and scikit-learn ({exc}); "
            'install them with: pip install -e ".[torch]"'
        ) from None
    return pytorch, load_digits


@functools.lru_cache(maxsize=1)
def digits_three_way() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The digits as (n, 1, 8, 8) images in [0, 1], split into train, validation, test."""
    _, load_digits = _imports()
    digits = load_digits()
    images = (digits.images / 16.0)[:, None].astype(np.float32)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    cuts = {
        "train": order[:N_TRAIN],
        "validation": order[N_TRAIN : N_TRAIN + N_VALIDATION],
        "test": order[N_TRAIN + N_VALIDATION :],
    }
    return {part: (images[rows], digits.target[rows]) for part, rows in cuts.items()}


def build(model: str, seed: int) -> Any:
    """The MLP or the CNN (float32), initial weights from ``seed``.

    ``MLP``: Flatten – Linear(64→128) – ReLU – Dropout – Linear(128→128) – ReLU –
    Dropout – Linear(128→10). ``CNN``: Conv(1→16, 3×3, padding 1) – ReLU – Dropout –
    Conv(16→16, 3×3, padding 1) – ReLU – MaxPool(2) – Flatten – Dropout –
    Linear(256→10). Every dropout has p = ``DROP``.
    """
    pytorch, _ = _imports()
    nn, torch = pytorch.nn, pytorch.torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model == "MLP":
            return nn.Sequential(
                nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(DROP),
                nn.Linear(128, 128), nn.ReLU(), nn.Dropout(DROP), nn.Linear(128, 10),
            )  # fmt: skip
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Dropout(DROP),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Dropout(DROP), nn.Linear(256, 10),
        )  # fmt: skip


def _train_one(cell: dict) -> dict:
    """One training run (a cell of the figure's sweep) and its scores.

    The cell names the model, loss, method, weight decay, seed and budget; the result
    holds validation and test accuracy and loss and the test outputs (for the
    distances, not stored).
    """
    pytorch, _ = _imports()
    from ..pytorch._training import task_loss

    torch = pytorch.torch
    data = digits_three_way()
    trained = pytorch.train_classifier(
        build(cell["model"], cell["seed"]),
        *data["train"],
        epochs=cell["epochs"],
        batch_size=cell["batch_size"],
        lr=cell["lr"],
        rng=cell["seed"],
        loss=cell["loss"],
        dropout_as=_DROPOUT_AS[cell["method"]],
        weight_decay=cell["weight_decay"],
    )
    scores: dict[str, Any] = {}
    with torch.no_grad():
        for part in ("validation", "test"):
            X, y = data[part]
            out = trained(torch.from_numpy(X))
            labels = torch.from_numpy(y.astype(np.int64))
            scores[f"{part}_accuracy"] = float(np.mean(out.argmax(dim=1).numpy() == y))
            scores[f"{part}_loss"] = float(task_loss(cell["loss"], out, labels))
            if part == "test":
                scores["outputs"] = out.double().numpy()
    return scores


def _distance(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Prediction disagreement and relative output distance of a to b on the test set."""
    return {
        "disagreement": float(np.mean(a.argmax(axis=1) != b.argmax(axis=1))),
        "relative_distance": float(np.linalg.norm(a - b) / np.linalg.norm(b)),
    }


def _cells(s: dict[str, Any]) -> list[dict]:
    cells = []
    for model, loss in s["settings"]:
        for seed in range(s["seeds"] + 1):  # one more dropout run: the seed-to-seed scale
            for method in METHODS:
                if seed == s["seeds"] and method != "dropout":
                    continue
                decays = s["weight_decays"] if method == "weight decay" else [0.0]
                for decay in decays:
                    cells.append(
                        {
                            "model": model,
                            "loss": loss,
                            "method": method,
                            "weight_decay": decay,
                            "seed": seed,
                            **{k: s[k] for k in ("epochs", "batch_size", "lr")},
                        }
                    )
    return cells


def _chosen_decay(runs: dict, decays: list[float], seeds: int) -> float:
    """The weight decay of best mean validation accuracy (ties: lower validation loss)."""

    def score(decay: float) -> tuple[float, float]:
        rows = [runs["weight decay", decay, seed] for seed in range(seeds)]
        accuracy = np.mean([r["validation_accuracy"] for r in rows])
        return (-float(accuracy), float(np.mean([r["validation_loss"] for r in rows])))

    return min(decays, key=score)


def _setting_record(runs: dict, s: dict[str, Any]) -> dict:
    """The methods' scores over seeds and their distances to dropout, for one setting."""
    seeds = s["seeds"]
    decay = _chosen_decay(runs, s["weight_decays"], seeds)
    picked = {m: (m, decay if m == "weight decay" else 0.0) for m in METHODS}
    methods = []
    for method in METHODS:
        rows = [runs[picked[method] + (seed,)] for seed in range(seeds)]
        record: dict[str, Any] = {"name": method}
        for field in ("test_accuracy", "test_loss", "validation_accuracy", "validation_loss"):
            record[field] = [r[field] for r in rows]
            record[f"{field}_interval"] = student_t_interval(record[field])
        dropout = [runs["dropout", 0.0, seed]["outputs"] for seed in range(seeds)]
        if method == "dropout":  # against the dropout run of the next seed
            others = [runs["dropout", 0.0, seed + 1]["outputs"] for seed in range(seeds)]
            pairs = [_distance(o, d) for o, d in zip(others, dropout)]
            record["name_of_distance"] = "dropout, other seed"
        else:
            pairs = [_distance(r["outputs"], d) for r, d in zip(rows, dropout)]
        for key in ("disagreement", "relative_distance"):
            values = [p[key] for p in pairs]
            record[f"to_dropout_{key}"] = values
            record[f"to_dropout_{key}_interval"] = student_t_interval(values)
        methods.append(record)
    validation = {
        str(d): float(
            np.mean([runs["weight decay", d, seed]["validation_accuracy"] for seed in range(seeds)])
        )
        for d in s["weight_decays"]
    }
    return {"weight_decay": decay, "validation_accuracy_by_decay": validation, "methods": methods}


def compute_explicit_vs_dropout(quick: bool, seed: int, sweep: Sweep | None = None) -> dict:
    """Data of figure (o) ``explicit_vs_dropout``.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: two seeds, a few epochs, two weight decays.
    seed : int
        Offset of the training seeds (initial weights, mini-batches, masks): the runs
        use ``seed``, ``seed + 1``, …; the data split is fixed.
    sweep : regtheory.sweep.Sweep, optional
        Where the independent training runs execute (serial by default).

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_explicit_vs_dropout` draws.
    """
    s = _settings(quick)
    cells = _cells(s)
    for cell in cells:
        cell["seed"] += seed
    results = (sweep or Sweep()).map(_train_one, cells)
    settings = []
    for model, loss in s.pop("settings"):
        runs = {
            (c["method"], c["weight_decay"], c["seed"] - seed): r
            for c, r in zip(cells, results)
            if (c["model"], c["loss"]) == (model, loss)
        }
        settings.append({"model": model, "loss": loss, **_setting_record(runs, s)})
    return {
        "split_seed": SPLIT_SEED,
        "n_train": N_TRAIN,
        "n_validation": N_VALIDATION,
        "n_test": 1797 - N_TRAIN - N_VALIDATION,
        "drop": DROP,
        "hessian": "exact",
        "seed": seed,
        **s,
        "settings": settings,
    }


_COLORS = {
    "none": "0.6",
    "dropout": "C0",
    "explicit": "C1",
    "explicit+noise": "C3",
    "weight decay": "C2",
}


def _bars(ax: Any, data: dict, field: str, *, relative: bool = False, scale: float = 1.0) -> None:
    """One group of bars per setting, one bar per method, 95 % intervals.

    ``relative``: divided by the first method's mean (no regularization). Distances to
    dropout's function (``to_dropout_*``) hatch dropout's own bar: there it is the
    distance to the dropout run of the next seed.
    """
    width = 0.16
    for g, setting in enumerate(data["settings"]):
        base = setting["methods"][0][f"{field}_interval"]["mean"] if relative else 1.0
        for k, m in enumerate(setting["methods"]):
            iv = m[f"{field}_interval"]
            ax.bar(
                g + (k - 2) * width,
                scale * iv["mean"] / base,
                width,
                yerr=scale * iv["half_width"] / base,
                capsize=2,
                color=_COLORS[m["name"]],
                edgecolor="k",
                lw=0.5,
                hatch="//" if field.startswith("to_dropout") and m["name"] == "dropout" else None,
                label=m["name"] if g == 0 else None,
            )
    ax.set_xticks(
        np.arange(len(data["settings"])),
        [f"{s['model']}\n{s['loss'].replace('_', '-')}" for s in data["settings"]],
    )
    ax.grid(True, axis="y", alpha=0.25)


def plot_explicit_vs_dropout(data: dict) -> Figure:
    """Draw figure (o) from the data of :func:`compute_explicit_vs_dropout`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(20.0, 4.8), layout="constrained")
    ax_acc, ax_loss, ax_far, ax_dist = fig.subplots(1, 4)
    _bars(ax_acc, data, "test_accuracy")
    lows = [
        m["test_accuracy_interval"]["mean"] - m["test_accuracy_interval"]["half_width"]
        for s in data["settings"]
        for m in s["methods"]
    ]
    ax_acc.set_ylim(max(0.0, min(lows) - 0.02), 1.0)
    ax_acc.set_ylabel(f"accuracy on {data['n_test']} test digits")
    ax_acc.set_title("(a) test accuracy, mean ± 95 % interval over seeds", fontsize=10.5)
    ax_acc.legend(fontsize=8.5, loc="upper left", ncol=2)
    _bars(ax_loss, data, "test_loss", relative=True)
    ax_loss.axhline(1.0, color="k", lw=0.8)
    ax_loss.set_ylabel("test loss / test loss without regularization")
    ax_loss.set_title("(b) test loss (the training loss), relative to none", fontsize=10.5)
    for ax, key, scale, label, title in (
        (ax_far, "disagreement", 100.0, "% of test digits classified unlike dropout's model",
         "(c) predictions unlike dropout's"),
        (ax_dist, "relative_distance", 1.0, "‖f − f_dropout‖ / ‖f_dropout‖ on the test digits",
         "(d) outputs' distance to dropout's"),
    ):  # fmt: skip
        _bars(ax, data, f"to_dropout_{key}", scale=scale)
        ax.set_ylabel(label)
        ax.set_title(f"{title} (hatched: dropout's next seed)", fontsize=10.5)
    fig.suptitle(
        f"(o) dropout vs its explicit regularizer on 8×8 digits ({data['n_train']} training "
        f"digits, p = {data['drop']:g}, {data['epochs']} epochs of Adam, {data['seeds']} "
        f"seeds; weight decay chosen on {data['n_validation']} validation digits)",
        fontsize=11,
    )
    return fig


# Trained networks: the same bits on one machine; across processors the rounding of
# each step differs and training amplifies it, so accuracies agree within 0.05 and the
# losses and distances within 50 % relative. Timings and the chosen decay are records.
ACCURACY_TOL = 0.05
LOSS_RTOL = 0.5

register(
    FigureSpec(
        "explicit_vs_dropout",
        "(o) dropout vs its explicit regularizer (and + noise, weight decay) on digits: "
        "an MLP and a CNN, cross-entropy and squared error",
        compute_explicit_vs_dropout,
        plot_explicit_vs_dropout,
        sweeps=True,
        requires=("torch", "sklearn"),
        extra="torch",
        checks={
            "split_seed n_train n_validation n_test drop hessian seed seeds epochs "
            "batch_size lr weight_decays settings/*/model settings/*/loss "
            "settings/*/methods/*/name settings/*/methods/*/name_of_distance": EXACT,
            "settings/*/weight_decay": RECORD,
            "settings/*/validation_accuracy_by_decay/* "
            "settings/*/methods/*/test_accuracy settings/*/methods/*/validation_accuracy "
            "settings/*/methods/*/test_accuracy_interval/* "
            "settings/*/methods/*/validation_accuracy_interval/* "
            "settings/*/methods/*/to_dropout_disagreement "
            "settings/*/methods/*/to_dropout_disagreement_interval/*": trajectory(
                ACCURACY_TOL, scale=1.0
            ),
            "settings/*/methods/*/test_loss settings/*/methods/*/validation_loss "
            "settings/*/methods/*/test_loss_interval/* "
            "settings/*/methods/*/validation_loss_interval/* "
            "settings/*/methods/*/to_dropout_relative_distance "
            "settings/*/methods/*/to_dropout_relative_distance_interval/*": trajectory(LOSS_RTOL),
        },
        references=(
            "srivastava2014dropout",
            "wager2013dropout",
            "wei2020implicit",
        ),
    )
)
