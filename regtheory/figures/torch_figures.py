r"""Figures of PyTorch models: what dropout does to a real conv net, trained on real data.

(m) ``digits_dropout`` -- a small CNN trained on scikit-learn's bundled 8×8 digits with
    elementwise ``nn.Dropout``, channel ``nn.Dropout2d`` or
    :class:`regtheory.pytorch.DropBlock2d` (3×3 blocks) at the same drop rate, and without
    dropout: held-out accuracy, the dropout penalty of each dropout layer, and how often a
    kernel tap of the conv after the first dropout gets no gradient.

**The starved taps.** A tap of the conv after dropout A gets no gradient from a digit
when every position of its columns where the digit's map is nonzero is dropped. The
probability that THEORY §2 states, :math:`(1-\theta)^{n_{ab}}` for elementwise masks
with :math:`n_{ab}` the tap's columns (49 to 64 on an 8×8 map), counts every position
as nonzero; a ReLU map of a digit is zero on about half of its entries, so the figure
states the probability on the held-out digits' own maps, counting only the positions
they reach (:func:`taps_on_data`), beside the generic one.

**The network.** ``Conv(1→C, 3×3) → ReLU → dropout A → Conv(C→C, 3×3) → ReLU →
dropout B → Linear(C·64 → 10)``, zero padding, biases. It is built from
:mod:`regtheory.network` layers with He-normal weights drawn from the seed and turned
into a PyTorch module by :func:`regtheory.pytorch.to_torch`, so every variant starts
from the same weights and trains with the same budget
(:func:`regtheory.pytorch.train_classifier`: Adam, cross-entropy, one thread).

**The penalty.** With ``Y=None`` the penalty of :func:`regtheory.pytorch.dropout_penalty`
is the perturbation energy of the logits on held-out digits,

.. math:: P = \frac1n \sum_k \mathbb E_r \|f_r(x_k) - f(x_k)\|^2 .

A ReLU follows dropout A, so P and the penalty of A alone are Monte Carlo estimates over
the model's own dropout modules. The network after dropout B is linear, so the penalty
of B alone is also exact (:func:`regtheory.network.dropout_penalty` on the converted
layers without A): the figure records both.

PyTorch and scikit-learn (the ``torch`` extra) are imported when the figure is
computed; without them it fails with the install command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import network
from .._validation import InvalidParameterError
from ..conv import fc_no_gradient_probability, no_gradient_probability
from ..masks import Bernoulli, Channel, DropBlock, MaskDistribution
from ._check import EXACT, closed_form, monte_carlo, rounding, trajectory
from ._registry import FigureSpec, register

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = [
    "compute_digits_dropout",
    "digits_layers",
    "digits_split",
    "plot_digits_dropout",
    "taps_on_data",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


DROP = 0.2  # PyTorch's p of every dropout layer: keep 0.8
BLOCK = 3
CHANNELS = 8
N_TEST = 360  # held-out digits (of 1797); the rest train
# variant name -> the masks of both dropout layers (None: no dropout)
VARIANTS: dict[str, MaskDistribution | None] = {
    "none": None,
    "Dropout": Bernoulli(1.0 - DROP),
    "Dropout2d": Channel(1.0 - DROP),
    "DropBlock2d": DropBlock(1.0 - DROP, BLOCK),
}


def _settings(quick: bool) -> dict[str, Any]:
    """Training budget and Monte Carlo sizes.

    Quick mode trains less and averages the penalty over fewer held-out digits.
    """
    return {
        "epochs": 1 if quick else 12,
        "batch_size": 128,
        "lr": 1e-2,
        "n_penalty": 5 if quick else 50,
        "n_masks": 1000 if quick else 2000,
        "tap_masks": 500 if quick else 4000,
    }


def _imports() -> tuple[Any, Any]:
    """regtheory.pytorch (which imports torch) and sklearn's load_digits.

    Without them, an error that gives the install command.
    """
    try:
        from sklearn.datasets import load_digits

        from .. import pytorch
    except ImportError as exc:
        raise InvalidParameterError(
            f"figure 'digits_dropout' needs PyTorch and scikit-learn ({exc}); "
            'install them with: pip install -e ".[torch]"'
        ) from None
    return pytorch, load_digits


def digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as (n, 1, 8, 8) images in [0, 1]: train images and labels, then held-out."""
    _, load_digits = _imports()
    digits = load_digits()
    images = (digits.images / 16.0)[:, None]
    order = np.random.default_rng(seed).permutation(len(images))
    test, train = order[:N_TEST], order[N_TEST:]
    return images[train], digits.target[train], images[test], digits.target[test]


def digits_layers(masks: MaskDistribution | None, seed: int) -> list:
    """The CNN as network layers, He-normal weights and zero biases from ``seed``.

    The weights are the same for every ``masks``; ``masks`` at both dropout layers, none
    if None.
    """
    rng = np.random.default_rng(seed + 1)
    c = CHANNELS
    w1 = rng.standard_normal((c, 1, 3, 3)) * np.sqrt(2.0 / 9)
    w2 = rng.standard_normal((c, c, 3, 3)) * np.sqrt(2.0 / (9 * c))
    w3 = rng.standard_normal((10, c * 64)) * np.sqrt(1.0 / (c * 64))
    drop = [] if masks is None else [network.Dropout(masks)]
    return [
        network.Conv(w1, bias=np.zeros(c)),
        network.ReLU(),
        *drop,
        network.Conv(w2, bias=np.zeros(c)),
        network.ReLU(),
        *drop,
        network.Linear(w3, bias=np.zeros(10)),
    ]


def _penalty(pytorch: Any, model: Any, X: np.ndarray, n_masks: int, seed: int) -> dict:
    report = pytorch.dropout_penalty(model, X, method="mc", n_masks=n_masks, rng=seed)
    layers = list(report.layers)
    first = next(i for i, layer in enumerate(layers) if isinstance(layer, network.Dropout))
    last_alone = layers[:first] + layers[first + 1 :]  # dropout B alone; linear after it
    return {
        # the record keeps its first spelling: "monte carlo", and 0 draws when exact
        "method": "monte carlo" if report.method == "mc" else report.method,
        "total": report.value,
        "stderr": report.stderr,
        "n_masks": report.n_masks or 0,
        "own": report.own,
        "own_stderr": report.own_stderr,
        "interaction": report.interaction,
        # a scale only: the three estimates share their masks, so they are correlated
        "interaction_stderr": float(np.hypot(report.stderr, np.hypot(*report.own_stderr))),
        "own_last_exact": float(network.dropout_penalty(last_alone, X, method="exact")),
        # the scale the penalty perturbs: (1/n) Σ_k ‖f(x_k)‖² of the mask-free logits
        "logit_energy": float(np.mean(np.sum(network.forward(layers, X) ** 2, axis=1))),
    }


def _taps(pytorch: Any, model: Any, X: np.ndarray, n_masks: int, seed: int) -> dict:
    from ..diagnostics import diagnose

    taps = diagnose(
        pytorch.from_torch(model, input_shape=X.shape[1:]), X, n_masks=n_masks, rng=seed
    )
    (first,) = taps.convs  # only dropout A is read by a conv
    stderr = np.zeros(first.probability.shape) if first.stderr is None else first.stderr
    return {
        "mode": first.mode,
        "probability": first.probability,
        "stderr": stderr,
        "n_masks": first.n_masks,
        "fc_probability": first.fc_probability,
        "column_counts": first.column_counts,
    }


def _reached_counts(maps: np.ndarray, kernel: tuple[int, int]) -> np.ndarray:
    """n_ab(k, i): the reached positions of each tap (a, b), per digit k and channel i.

    The positions q of the tap's columns (q − d inside the map, zero padding) where map
    i of digit k is nonzero.
    """
    nonzero = maps != 0
    _, _, H, W = maps.shape
    kh, kw = kernel
    counts = np.empty(maps.shape[:2] + kernel, dtype=np.int64)
    for a in range(kh):
        for b in range(kw):
            da, db = a - kh // 2, b - kw // 2
            window = nonzero[:, :, max(0, da) : H + min(0, da), max(0, db) : W + min(0, db)]
            counts[:, :, a, b] = window.sum(axis=(2, 3))
    return counts


def _starved_draws(maps, counts, masks, n_masks, rng) -> np.ndarray:
    """Per draw and tap, the share of reached pairs whose reached positions were all dropped.

    One mask per digit a draw; the pairs are (digit, channel); shape (n_masks, kh, kw).
    """
    nonzero, reached = maps != 0, counts > 0
    kh, kw = counts.shape[2:]
    _, _, H, W = maps.shape
    out = []
    for size in [min(100, n_masks - a) for a in range(0, n_masks, 100)]:
        kept = masks.sample(maps.shape[1:], size * len(maps), rng).reshape(size, *maps.shape) != 0
        fed = kept & nonzero
        share = np.empty((size, kh, kw))
        for a in range(kh):
            for b in range(kw):
                da, db = a - kh // 2, b - kw // 2
                window = fed[..., max(0, da) : H + min(0, da), max(0, db) : W + min(0, db)]
                starved = ~window.any(axis=(3, 4)) & reached[None, :, :, a, b]
                share[:, a, b] = starved.sum(axis=(1, 2)) / reached[:, :, a, b].sum()
        out.append(share)
    return np.concatenate(out)


def taps_on_data(maps: np.ndarray, masks: MaskDistribution, n_masks: int, seed: int) -> dict:
    r"""How often a 3×3 tap of the conv after a dropout gets no gradient, on these maps.

    The gradient of tap (a, b) for the in-channel i and one digit sums the masked map
    over the tap's columns; it is zero when every position of those columns where
    the map is *nonzero* is dropped (generic output gradients). With
    :math:`n_{ab}(k, i)` such positions (the positions the data reaches; a ReLU map
    of a digit is zero on about half of them), the probability, averaged over the
    (digit, channel) pairs with :math:`n_{ab} > 0`, is

    .. math:: P_\text{element}(ab) = \operatorname{mean}_{k,i}\,(1-\theta)^{n_{ab}(k,i)},
              \qquad P_\text{channel}(ab) = 1 - \theta ,

    and for DropBlock the share of starved pairs over ``n_masks`` sampled masks (one per
    digit and draw), with its standard error. The pairs with :math:`n_{ab} = 0` get no
    gradient with or without dropout; their share is ``unreached``.

    Parameters
    ----------
    maps : array (n, C, H, W)
        The maps the dropout masks, one per digit.
    masks : Bernoulli, Channel or DropBlock
    n_masks : int
        Draws for DropBlock (ignored for the exact modes).
    seed : int

    Returns
    -------
    dict
        ``probability`` and ``stderr`` (3×3; stderr 0 when exact), ``unreached`` (3×3),
        ``mean_reached`` (mean :math:`n_{ab}` over the reached pairs, 3×3),
        ``zero_fraction`` (share of the map's entries that are zero) and ``n_masks``.
    """
    counts = _reached_counts(maps, (3, 3))
    reached = counts > 0
    n_reached = reached.sum(axis=(0, 1))
    keep = masks.keep
    stderr, n_used = np.zeros((3, 3)), 0
    if isinstance(masks, Bernoulli):
        powers = np.where(reached, (1.0 - keep) ** counts, 0.0)
        probability = powers.sum(axis=(0, 1)) / n_reached
    elif isinstance(masks, Channel):
        probability = np.full((3, 3), 1.0 - keep)
    else:
        draws = _starved_draws(maps, counts, masks, n_masks, np.random.default_rng(seed))
        probability, n_used = draws.mean(axis=0), n_masks
        stderr = draws.std(axis=0, ddof=1) / np.sqrt(n_masks)
    return {
        "probability": probability,
        "stderr": stderr,
        "n_masks": n_used,
        "unreached": 1.0 - n_reached / (counts.shape[0] * counts.shape[1]),
        "mean_reached": np.where(reached, counts, 0).sum(axis=(0, 1)) / n_reached,
        "zero_fraction": float(np.mean(maps == 0)),
    }


def _maps_before_first_dropout(pytorch: Any, model: Any, X: np.ndarray) -> tuple[np.ndarray, Any]:
    layers = pytorch.from_torch(model, input_shape=X.shape[1:])
    first = next(i for i, layer in enumerate(layers) if isinstance(layer, network.Dropout))
    return network.forward(layers[:first], X), layers[first].masks


def compute_digits_dropout(quick: bool, seed: int) -> dict:
    """Data of figure (m) ``digits_dropout``: a small CNN on the 8×8 digits.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_digits_dropout` draws.
    """
    pytorch, _ = _imports()
    s = _settings(quick)
    X_train, y_train, X_test, y_test = digits_split(seed)
    X_pen = X_test[: int(s["n_penalty"])]
    variants = []
    for name, masks in VARIANTS.items():
        model = pytorch.to_torch(digits_layers(masks, seed)).float()  # trains in float32
        trained = pytorch.train_classifier(
            model,
            X_train,
            y_train,
            epochs=s["epochs"],
            batch_size=s["batch_size"],
            lr=s["lr"],
            rng=seed,
            n_threads=1,
        )
        # the trained weights in float64 (regtheory.network), as every number below
        logits = network.forward(pytorch.from_torch(trained, input_shape=(1, 8, 8)), X_test)
        record: dict[str, Any] = {
            "name": name,
            "accuracy": float(np.mean(logits.argmax(axis=1) == y_test)),
        }
        if masks is not None:
            record["penalty"] = _penalty(pytorch, trained, X_pen, s["n_masks"], seed)
            record["taps"] = _taps(pytorch, trained, X_pen, s["tap_masks"], seed)
            maps, first_masks = _maps_before_first_dropout(pytorch, trained, X_pen)
            record["taps"]["on_data"] = taps_on_data(maps, first_masks, s["tap_masks"], seed)
        variants.append(record)
    keep = 1.0 - DROP
    return {
        "split_seed": seed,
        "n_train": len(X_train),
        "n_test": len(X_test),
        "drop": DROP,
        "block_size": BLOCK,
        "channels": CHANNELS,
        **s,
        "variants": variants,
        "predicted": {
            "element": no_gradient_probability(3, (8, 8), keep, mode="element"),
            "channel": no_gradient_probability(3, (8, 8), keep, mode="channel"),
            "fc": fc_no_gradient_probability(keep),
        },
    }


_COLORS = {"none": "0.6", "Dropout": "C0", "Dropout2d": "C1", "DropBlock2d": "C2"}


def _plot_taps(ax_tap: Any, data: dict, dropped: list[dict]) -> None:
    """Panel (c): each tap's no-gradient probability, on the digits' maps and generic."""
    for col, v in enumerate(dropped):
        # filled: on the held-out digits' maps (only the positions they reach);
        # hollow: every position of the map reached (the generic count of THEORY §2)
        for taps, fill in ((v["taps"]["on_data"], _COLORS[v["name"]]), (v["taps"], "none")):
            p = np.ravel(taps["probability"])
            bound = 3.0 / max(taps["n_masks"], 1)  # a zero Monte Carlo estimate: below 3/n
            shown = np.where(p > 0, p, bound)
            marker = ["o" if q > 0 else "v" for q in p]
            for tap, (q, m) in enumerate(zip(shown, marker)):
                ax_tap.plot(col + 0.06 * (tap - 4), q, m, color=_COLORS[v["name"]], ms=5, mfc=fill)
    ax_tap.axhline(
        data["predicted"]["fc"],
        color="k",
        ls="--",
        lw=1,
        label=f"FC weight: 1 − keep = {data['predicted']['fc']:g}",
    )
    zero = np.mean([v["taps"]["on_data"]["zero_fraction"] for v in dropped])
    ax_tap.plot([], [], "ko", label=f"on the digits' maps ({100 * zero:.0f} % of entries zero)")
    ax_tap.plot([], [], "ko", mfc="none", label="if every position were nonzero")
    ax_tap.plot([], [], "kv", mfc="none", label="no draw starved it: below 3/n_masks")
    ax_tap.set_yscale("log")
    ax_tap.set_xticks(np.arange(len(dropped)), [v["name"] for v in dropped])
    ax_tap.set_ylabel("P(tap gets no gradient from a digit)")
    ax_tap.set_title("(c) the 9 taps of the conv after dropout A, 8×8 maps", fontsize=10.5)
    ax_tap.legend(fontsize=8.5, loc="center right")
    ax_tap.grid(True, which="major", axis="y", alpha=0.25)


def plot_digits_dropout(data: dict) -> Figure:
    """Draw figure (m) from the data of :func:`compute_digits_dropout`."""
    from matplotlib.figure import Figure

    variants = data["variants"]
    names = [v["name"] for v in variants]
    fig = Figure(figsize=(14.0, 4.6), layout="constrained")
    ax_acc, ax_pen, ax_tap = fig.subplots(1, 3, gridspec_kw={"width_ratios": [0.8, 1.2, 1.1]})
    x = np.arange(len(names))
    acc = [v["accuracy"] for v in variants]
    ax_acc.bar(x, acc, color=[_COLORS[n] for n in names], edgecolor="k", lw=0.6)
    for xi, a in zip(x, acc):
        ax_acc.text(xi, a + 0.002, f"{a:.3f}", ha="center", va="bottom", fontsize=8.5)
    ax_acc.set_xticks(x, names, fontsize=8.5, rotation=20)
    ax_acc.set_ylim(min(acc) - 0.05, 1.0)
    ax_acc.set_ylabel(f"accuracy on {data['n_test']} held-out digits")
    ax_acc.set_title("(a) test accuracy", fontsize=10.5)

    dropped = [v for v in variants if "penalty" in v]
    width = 0.26
    for k, v in enumerate(dropped):
        pen = v["penalty"]
        own, se = np.asarray(pen["own"]), np.asarray(pen["own_stderr"])
        xs = np.arange(2) + (k - 1) * width
        ax_pen.bar(
            xs,
            own,
            width,
            yerr=1.96 * se,
            capsize=3,
            color=_COLORS[v["name"]],
            edgecolor="k",
            lw=0.6,
            label=v["name"],
        )
        ax_pen.plot(xs[1], pen["own_last_exact"], "k_", ms=14, mew=2)
        ax_pen.bar(
            2 + (k - 1) * width,
            pen["total"],
            width,
            yerr=1.96 * pen["stderr"],
            capsize=3,
            color=_COLORS[v["name"]],
            edgecolor="k",
            lw=0.6,
            hatch="//",
        )
        share = pen["total"] / pen["logit_energy"]  # the perturbation relative to the logits
        ax_pen.text(
            2 + (k - 1) * width,
            pen["total"],
            f"{100 * share:.1f} %\n",
            ha="center",
            va="bottom",
            fontsize=7.5,
        )
    ax_pen.set_ylim(0, 1.15 * max(v["penalty"]["total"] for v in dropped))
    ax_pen.plot([], [], "k_", ms=14, mew=2, label="B alone, exact")
    ax_pen.set_xticks(
        np.arange(3), ["A alone", "B alone", "A and B together\n(% of the logits' energy)"]
    )
    ax_pen.set_ylabel("E‖f_r(x) − f(x)‖² of the logits (mean over digits)")
    ax_pen.set_title(
        f"(b) dropout penalty, Monte Carlo ± 95% CI ({data['n_penalty']} held-out digits)",
        fontsize=10.5,
    )
    ax_pen.legend(fontsize=8.5)
    ax_pen.grid(True, axis="y", alpha=0.25)

    _plot_taps(ax_tap, data, dropped)
    fig.suptitle(
        f"(m) a CNN ({data['channels']} channels, two 3×3 convs, dropout p = {data['drop']:g} "
        f"after each) trained on 8×8 digits: {data['epochs']} epochs of Adam, same "
        f"start and budget for every variant (seed {data['split_seed']})",
        fontsize=11,
    )
    return fig


# A trained network is the same bits on one machine; across processors the rounding of
# each step differs and training amplifies it, so its numbers agree only to a tolerance:
# accuracy within 0.05 (18 of 360 digits), penalties within 30 % relative.
ACCURACY_TOL = 0.05
PENALTY_RTOL = 0.3
TAP_TOL = 0.05

register(
    FigureSpec(
        "digits_dropout",
        "(m) a CNN trained on 8×8 digits with Dropout, Dropout2d and DropBlock2d: "
        "accuracy, penalty per layer, starved taps",
        compute_digits_dropout,
        plot_digits_dropout,
        requires=("torch", "sklearn"),
        extra="torch",
        checks={
            "split_seed n_train n_test drop block_size channels epochs batch_size lr "
            "n_penalty n_masks tap_masks variants/*/name variants/*/penalty/method "
            "variants/*/penalty/n_masks variants/*/taps/mode variants/*/taps/n_masks "
            "variants/*/taps/column_counts": EXACT,
            "variants/*/accuracy": trajectory(ACCURACY_TOL, scale=1.0),
            "variants/*/penalty/total variants/*/penalty/stderr variants/*/penalty/own "
            "variants/*/penalty/own_stderr variants/*/penalty/own_last_exact "
            "variants/*/penalty/logit_energy "
            "variants/*/penalty/interaction variants/*/penalty/interaction_stderr": trajectory(
                PENALTY_RTOL
            ),
            # masks only (no trained weight): exact (a stderr of 0), or Monte Carlo over the
            # seed's draws, so to rounding of a count over 4000 masks of 64 positions
            "variants/*/taps/probability": monte_carlo("stderr", same_draws=rounding(4000 * 64)),
            # exact (0), or the spread of 0/1 draws: a function of the same count
            "variants/*/taps/stderr": closed_form(size=4000 * 64),
            # (1 − keep)^n for the n ≤ 64 positions a tap reads
            "variants/*/taps/fc_probability predicted/element predicted/channel predicted/fc": (
                closed_form(size=64)
            ),
            # which entries of a trained ReLU map are zero follows the training run:
            # shares of the (digit, channel) pairs, within TAP_TOL of each other
            "variants/*/taps/on_data/n_masks": EXACT,
            "variants/*/taps/on_data/probability variants/*/taps/on_data/stderr "
            "variants/*/taps/on_data/unreached "
            "variants/*/taps/on_data/zero_fraction": trajectory(TAP_TOL, scale=1.0),
            "variants/*/taps/on_data/mean_reached": trajectory(PENALTY_RTOL),
        },
        references=(
            "srivastava2014dropout",
            "arora2021dropout",
            "tompson2015efficient",
            "ghiasi2018dropblock",
        ),
    )
)
