r"""Figures of the convolutional theory (THEORY.md §2–§3).

(c) ``conv_matrix_seed`` -- the seed's 9×9 conv matrix with the columns one mask drops, beside FC.
(d) ``no_gradient_probability`` -- P(a weight gets no gradient) vs drop rate: FC vs conv taps.
(e) ``penalty_vs_keep`` -- closed forms (5), (6), (2) and DropBlock's exact form against
    Monte Carlo.
(f) ``border_penalty_map`` -- per-position terms of (5): zero padding pays less at the border.
(g) ``mc_error_vs_n`` -- observed Monte Carlo error and reported stderr against the 1/√N law.

Figures (e)–(g) share one two-layer linear conv net (:func:`_net`): v of shape
(8, 1, 3, 3), u of shape (1, 8, 3, 3), an 8×8 image, white input. Its fully
connected counterpart is the *same end-to-end map* M = UV realised by an
equalized FC layer of the same width (8 channels × 64 positions = 512 hidden
units), whose penalty is the least any width-512 factorization of M pays,
Θ(M) = (λ/w)‖M‖_*², formula (2).

The Monte Carlo grids of (e) and (g) are sweeps (:mod:`regtheory.sweep`): every run
is one task holding its own seed (:func:`_mc_seed`), so the grid gives the same
numbers serially, on local processes or on a Dask cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import conv, fc
from .._convops import Mode, Padding
from ..masks import Bernoulli, dropout_lambda
from ..montecarlo import Estimate
from ..sweep import Sweep
from ._check import EXACT, closed_form, monte_carlo, rounding, spread
from ._registry import FigureSpec, register

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = [
    "compute_border_penalty_map",
    "compute_conv_matrix_seed",
    "compute_mc_error_vs_n",
    "compute_no_gradient_probability",
    "compute_penalty_vs_keep",
    "plot_border_penalty_map",
    "plot_conv_matrix_seed",
    "plot_mc_error_vs_n",
    "plot_no_gradient_probability",
    "plot_penalty_vs_keep",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


# The net of figures (e)-(g).
HIDDEN, KERNEL, IMAGE = 8, 3, (8, 8)
BLOCK_SIZE = 3  # DropBlock side on the 8×8 hidden map
PADDINGS: tuple[Padding, ...] = ("zeros", "circular")


def _net(seed: int, kernel: int = KERNEL) -> tuple[np.ndarray, np.ndarray]:
    """Kernels v (HIDDEN, 1, k, k) and u (1, HIDDEN, k, k), i.i.d. N(0, 1/k²), from ``seed``."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((HIDDEN, 1, kernel, kernel)) / kernel
    u = rng.standard_normal((1, HIDDEN, kernel, kernel)) / kernel
    return u, v


def _equalized_fc(u, v, padding: Padding) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The conv net's end-to-end map as an equalized FC layer of the same width.

    Returns (U', V', X): factors with U'V'ᵀ = conv_matrix(u) conv_matrix(v) and
    width C_hid·H·W, and inputs X = √d·I whose empirical second moment XᵀX/d is
    exactly I (so the FC Monte Carlo estimates the white-input penalty).
    """
    U = conv.conv_matrix(u, IMAGE, padding=padding)
    V = conv.conv_matrix(v, IMAGE, padding=padding)
    Ue, Ve = fc.equalize(U, V.T)
    d = V.shape[1]
    return Ue, Ve, np.sqrt(d) * np.eye(d)


def _mc_seed(seed: int, k: int) -> int:
    """Seed of the k-th Monte Carlo run of a figure (recorded in the data)."""
    return 100_000 * seed + 1 + k


# ----------------------------------------------------------------------------- (c)

SEED_KEEP = 0.5


def compute_conv_matrix_seed(quick: bool, seed: int) -> dict:
    # Taps numbered 1..9 row-major: conv_matrix of that kernel holds each cell's tap index
    # (a 3×3 kernel on a 3×3 zero-padded image puts at most one tap in a cell).
    """Data of figure (c) ``conv_matrix_seed``: the seed's conv matrix, columns one mask drops.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_conv_matrix_seed` draws.
    """
    taps = conv.conv_matrix(np.arange(1.0, 10.0).reshape(1, 1, 3, 3), (3, 3), padding="zeros")
    mask = Bernoulli(SEED_KEEP).sample(9, 1, seed)[0]
    kept = mask > 0
    tap_index = taps.astype(int)
    kept_columns_per_tap = [
        int(np.sum(np.any(tap_index[:, kept] == t, axis=0))) for t in range(1, 10)
    ]
    return {
        "keep": SEED_KEEP,
        "mask_seed": seed,
        "mask": mask,
        "tap_index": tap_index,
        "columns_per_tap": conv.tap_column_counts(3, (3, 3), padding="zeros").ravel(),
        "kept_columns_per_tap": kept_columns_per_tap,
        "taps_with_gradient": [t for t in range(1, 10) if kept_columns_per_tap[t - 1] > 0],
        "fc_zeroed_weights": int(9 * np.sum(~kept)),
        "no_gradient_probability": conv.no_gradient_probability(3, (3, 3), SEED_KEEP).ravel(),
        "fc_no_gradient_probability": conv.fc_no_gradient_probability(SEED_KEEP),
    }


_DROPPED = "0.78"


def _matrix_panel(ax, labels, kept, title, fontsize):
    from matplotlib.patches import Rectangle

    n = len(labels)
    for j in range(n):
        if not kept[j]:
            ax.add_patch(Rectangle((j - 0.5, -0.5), 1, n, color=_DROPPED, lw=0, zorder=0))
    for i in range(n):
        for j in range(n):
            if labels[i][j]:
                ax.text(
                    j,
                    i,
                    labels[i][j],
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="k" if kept[j] else "0.35",
                )
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xticks(
        np.arange(n), [f"{j + 1}\n{'kept' if kept[j] else 'drop'}" for j in range(n)], fontsize=7
    )
    ax.set_yticks(np.arange(n), [str(i + 1) for i in range(n)], fontsize=8)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.6", lw=0.6)
    ax.tick_params(which="minor", length=0)
    ax.xaxis.tick_top()
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)


def plot_conv_matrix_seed(data: dict) -> Figure:
    """Draw figure (c) from the data of :func:`compute_conv_matrix_seed`."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    tap_index = np.asarray(data["tap_index"])
    kept = np.asarray(data["mask"]) > 0
    n_kept = int(kept.sum())
    fig = Figure(figsize=(13.5, 5.0), layout="constrained")
    ax_conv, ax_taps, ax_fc = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 0.55, 1]})
    labels = [[f"u{t}" if t else "" for t in row] for row in tap_index]
    _matrix_panel(ax_conv, labels, kept, "conv layer U (3×3 kernel, 3×3 image, zero padding)", 9)
    ax_conv.set_xlabel("column = hidden unit j (grey: dropped by the mask)")
    ax_conv.set_ylabel("row = output pixel")

    # Kernel taps: how many kept columns each tap still appears in.
    with_grad = np.asarray(data["kept_columns_per_tap"]).reshape(3, 3)
    total = np.asarray(data["columns_per_tap"]).reshape(3, 3)
    p_none = np.asarray(data["no_gradient_probability"]).reshape(3, 3)
    for a in range(3):
        for b in range(3):
            ok = with_grad[a, b] > 0
            ax_taps.add_patch(
                Rectangle(
                    (b - 0.5, a - 0.5), 1, 1, lw=1, ec="0.5", fc="#c7e9c0" if ok else "#fcbba1"
                )
            )
            ax_taps.text(
                b,
                a - 0.18,
                f"u{3 * a + b + 1}",
                ha="center",
                va="center",
                fontsize=11,
                weight="bold",
            )
            ax_taps.text(
                b,
                a + 0.1,
                f"{with_grad[a, b]} of its {total[a, b]}\ncolumns kept",
                ha="center",
                va="center",
                fontsize=7.5,
                linespacing=1.1,
            )
            ax_taps.text(
                b,
                a + 0.36,
                f"P(none) = {p_none[a, b]:.2g}",
                ha="center",
                va="center",
                fontsize=7,
                color="0.25",
            )
    ax_taps.set_xlim(-0.5, 2.5)
    ax_taps.set_ylim(2.5, -0.5)
    ax_taps.set_aspect("equal")
    ax_taps.set_xticks([])
    ax_taps.set_yticks([])
    n_grad = len(data["taps_with_gradient"])
    ax_taps.set_title(
        f"kernel taps: {n_grad} of 9 still get a gradient\n(green: in ≥1 kept column; red: none)",
        fontsize=10,
    )
    ax_taps.set_xlabel(
        f"P(none) = P(tap gets no gradient) = (1−keep)^n_k, keep = {data['keep']};\n"
        f"an FC weight: 1−keep = {data['fc_no_gradient_probability']:.3g}",
        fontsize=9,
    )

    fc_labels = [[f"w{i + 1}{j + 1}" for j in range(9)] for i in range(9)]
    _matrix_panel(ax_fc, fc_labels, kept, "FC layer W (dense 9×9), same mask", 7)
    ax_fc.set_xlabel(
        f"{data['fc_zeroed_weights']} of 81 weights get no gradient "
        f"(every weight of the {9 - n_kept} dropped columns)"
    )
    fig.suptitle(
        f"(c) one Bernoulli mask (keep = {data['keep']}, seed {data['mask_seed']}) keeps "
        f"{n_kept} of 9 hidden units: it zeroes FC weights, "
        "but conv taps live in several columns"
    )
    return fig


# ----------------------------------------------------------------------------- (d)

_TAP_CLASSES = {"centre": (1, 1), "edge": (0, 1), "corner": (0, 0)}
NO_GRAD_IMAGES = ((3, 3), (32, 32))


def compute_no_gradient_probability(quick: bool, seed: int) -> dict:
    # Drop rates on a logit grid: both the moderate rates and the last few 1e-4 before 1,
    # where the 32×32 taps (about 1000 columns each) finally lose their gradient.
    """Data of figure (d) ``no_gradient_probability``: P(no gradient) against the drop rate.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_no_gradient_probability` draws.
    """
    n_points = 121 if quick else 401
    drop = 1.0 / (1.0 + np.exp(-np.linspace(np.log(0.02 / 0.98), np.log(0.99999 / 1e-5), n_points)))
    images = []
    for shape in NO_GRAD_IMAGES:
        counts = conv.tap_column_counts(KERNEL, shape, padding="zeros")
        probs = np.array(
            [conv.no_gradient_probability(KERNEL, shape, 1.0 - r, padding="zeros") for r in drop]
        )
        images.append(
            {
                "image_shape": shape,
                "counts": {k: int(counts[ij]) for k, ij in _TAP_CLASSES.items()},
                "probability": {k: probs[:, ij[0], ij[1]] for k, ij in _TAP_CLASSES.items()},
            }
        )
    return {
        "uses_seed": False,  # exact formulas only; the record's seed does not enter
        "kernel_size": KERNEL,
        "padding": "zeros",
        "drop_rate": drop,
        "fc": [conv.fc_no_gradient_probability(1.0 - r) for r in drop],
        "images": images,
    }


def plot_no_gradient_probability(data: dict) -> Figure:
    """Draw figure (d) from the data of :func:`compute_no_gradient_probability`."""
    from matplotlib.figure import Figure

    drop = np.asarray(data["drop_rate"])
    fig = Figure(figsize=(13, 5.2), layout="constrained")
    ax, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": (1.6, 1)})
    ax.plot(
        drop, data["fc"], "k-", lw=2.2, label="FC weight: 1−keep  (= any tap under channel dropout)"
    )
    styles = {"centre": "-", "edge": "--", "corner": ":"}
    for color, img in zip(("C0", "C3"), data["images"]):
        H, W = img["image_shape"]
        for tap, ls in styles.items():
            n = img["counts"][tap]
            p = np.asarray(img["probability"][tap], dtype=float)
            p[p <= 0] = np.nan  # underflow: far below the axis
            ax.plot(
                drop,
                p,
                ls=ls,
                color=color,
                lw=1.6,
                label=f"conv {H}×{W} image, {tap} tap: (1−keep)^{n}",
            )
    ax.set_xscale("logit")
    ax.set_yscale("log")
    ax.set_ylim(1e-12, 2)
    ax.set_xlim(drop[0], drop[-1])
    ticks = [0.02, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter("")
    ax.axvline(0.5, color="0.5", lw=0.8, ls="-.")
    ax.text(0.5, 3e-12, " drop 0.5\n (torch default)", fontsize=8, color="0.3", va="bottom")
    ax.set_xlabel("drop rate 1 − keep  (logit scale)")
    ax.set_ylabel("P(weight receives no gradient)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _large_image_ratios(right, drop, data["images"][-1], styles)
    ax.set_title(
        "(d) a conv tap loses its gradient only if all n_k columns it sits in are\n"
        f"dropped ({data['kernel_size']}×{data['kernel_size']} kernel, zero padding, "
        "elementwise dropout)",
        fontsize=11,
    )
    return fig


def _large_image_ratios(ax, drop: np.ndarray, img: dict, styles: dict) -> None:
    """The taps of the large image against its centre tap.

    Their n_k differ by a few per cent, so their curves coincide on the main axis; the
    ratio (1-keep)^(n_k - n_centre) separates them.
    """
    centre = np.asarray(img["probability"]["centre"], dtype=float)
    ax.axhline(1.0, color="C3", lw=1.4, ls=styles["centre"], label="centre tap (= 1)")
    for tap in ("edge", "corner"):
        p = np.asarray(img["probability"][tap], dtype=float)
        ok = centre >= 1e-12  # where the main axis shows the curves
        n = img["counts"][tap] - img["counts"]["centre"]
        ax.plot(drop[ok], p[ok] / centre[ok], ls=styles[tap], color="C3", lw=1.6,
                label=f"{tap} tap: (1−keep)^({n})")  # fmt: skip
    ax.set_xscale("logit")
    ax.set_xlim(float(drop[centre >= 1e-12][0]), drop[-1])
    ticks = [0.99, 0.999, 0.9999, 0.99999]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter("")
    ax.grid(True, which="major", alpha=0.3)
    H, W = img["image_shape"]
    ax.set_xlabel("drop rate 1 − keep  (logit scale)")
    ax.set_ylabel("P(tap gets no gradient) / P(centre tap gets none)")
    ax.set_title(
        f"the {H}×{W} taps told apart: ratio to the centre tap\n"
        "(where the left panel shows them, P ≥ 1e-12)",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper left")


# ----------------------------------------------------------------------------- (e)

CONV_MODES: tuple[tuple[Mode, int | None], ...] = (
    ("element", None),
    ("channel", None),
    ("block", BLOCK_SIZE),
)


def _penalty_mc(cell: dict) -> Estimate:
    """One Monte Carlo estimate of the penalty of the net of (e)-(g): one cell of a sweep.

    ``cell["layer"]`` is ``"fc"`` (the equalized FC layer ``cell["fc"]`` = (U', V', X)
    of :func:`_equalized_fc`) or a conv mode (kernels ``cell["u"]``, ``cell["v"]``);
    the cell also holds its keep, padding, block size, number of masks and seed.
    """
    if cell["layer"] == "fc":
        Ue, Ve, X = cell["fc"]
        return fc.dropout_penalty(
            Ue, Ve, cell["keep"], X=X, method="mc", n_masks=cell["n_masks"], rng=cell["seed"]
        )
    return conv.dropout_penalty(
        cell["u"],
        cell["v"],
        cell["keep"],
        IMAGE,
        padding=cell["padding"],
        mode=cell["layer"],
        block_size=cell["block_size"],
        method="mc",
        n_masks=cell["n_masks"],
        rng=cell["seed"],
    )


def _penalty_cell(
    u, v, fc_layer, layer: str, padding: str, keep: float, block_size, n_masks: int, mc_seed: int
) -> dict:
    """The sweep cell of :func:`_penalty_mc`, with only the weights its layer needs."""
    weights = {"fc": fc_layer} if layer == "fc" else {"u": u, "v": v}
    return {
        "layer": layer,
        "padding": padding,
        "keep": keep,
        "block_size": block_size,
        "n_masks": n_masks,
        "seed": mc_seed,
        **weights,
    }


def compute_penalty_vs_keep(quick: bool, seed: int, sweep: Sweep | None = None) -> dict:
    """Data of figure (e) ``penalty_vs_keep``: closed-form penalties against Monte Carlo over keep.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.
    sweep : regtheory.sweep.Sweep, optional
        Runs the grid of independent runs (``None``: serially); the data do not depend
        on it.

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_penalty_vs_keep` draws.
    """
    keeps = np.array([0.2, 0.5, 0.8]) if quick else np.round(np.arange(0.1, 0.91, 0.1), 2)
    n_masks = 2000 if quick else 20_000
    u, v = _net(seed)
    fc_layers = {padding: _equalized_fc(u, v, padding) for padding in PADDINGS}
    # The keep × layer × padding grid of Monte Carlo runs, numbered (for their seeds)
    # padding by padding, layer by layer, keep by keep.
    grid = [
        (padding, layer, block, keep)
        for padding in PADDINGS
        for layer, block in (("fc", None), *CONV_MODES)
        for keep in keeps
    ]
    cells = [
        _penalty_cell(
            u, v, fc_layers[padding], layer, padding, keep, block, n_masks, _mc_seed(seed, k)
        )
        for k, (padding, layer, block, keep) in enumerate(grid)
    ]
    estimates = (sweep or Sweep()).map(_penalty_mc, cells)
    mc: dict[tuple[str, str], list[dict]] = {}
    for (padding, layer, _, _), cell, est in zip(grid, cells, estimates):
        mc.setdefault((padding, layer), []).append(_estimate_record(est, cell["seed"]))
    panels = []
    for padding in PADDINGS:
        Ue, Ve, _ = fc_layers[padding]
        series = {
            "fc": {
                "closed_form": [fc.dropout_penalty(Ue, Ve, keep) for keep in keeps],
                "mc": mc[padding, "fc"],
            }
        }
        for mode, block in CONV_MODES:
            # white input, no target: E‖f_m(x) − f(x)‖², the quantity the Monte Carlo draws
            closed = [
                conv.dropout_penalty(
                    u, v, keep, IMAGE, padding=padding, mode=mode, block_size=block
                )
                for keep in keeps
            ]
            series[mode] = {"closed_form": closed, "mc": mc[padding, mode]}
        panels.append({"padding": padding, "series": series})
    return {
        "kernel_seed": seed,
        "u": u,
        "v": v,
        "v_shape": [HIDDEN, 1, KERNEL, KERNEL],
        "u_shape": [1, HIDDEN, KERNEL, KERNEL],
        "image_shape": IMAGE,
        "block_size": BLOCK_SIZE,
        "fc_width": HIDDEN * IMAGE[0] * IMAGE[1],
        "n_masks": n_masks,
        "keeps": keeps,
        "panels": panels,
    }


def _estimate_record(est, mc_seed: int) -> dict:
    lo, hi = est.ci(level=0.95)
    return {
        "mean": est.value,
        "stderr": est.stderr,
        "ci95": [lo, hi],
        "n_samples": est.n_masks,
        "seed": mc_seed,
    }


_PAD_NAMES = {"zeros": "zero", "circular": "circular"}

_SERIES_STYLE = {
    "fc": ("k", "FC, same map, equalized: Θ(M), (2)"),
    "element": ("C0", "conv elementwise, (5)"),
    "channel": ("C1", "conv channel, (6)"),
    "block": ("C2", "conv DropBlock {b}×{b}, exact mask moments"),
}


def plot_penalty_vs_keep(data: dict) -> Figure:
    """Draw figure (e) from the data of :func:`compute_penalty_vs_keep`."""
    from matplotlib.figure import Figure
    from matplotlib.legend_handler import HandlerTuple

    keeps = np.asarray(data["keeps"])
    fig = Figure(figsize=(11.5, 7.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True, sharey="row", gridspec_kw={"height_ratios": [1.5, 1]})
    handles, labels = [], []
    widest = 0.0  # largest relative half-width of a 95 % interval, for the legend
    for col, panel in enumerate(data["panels"]):
        ax, ax_ratio = axes[0, col], axes[1, col]
        ref = np.asarray(panel["series"]["element"]["closed_form"])
        for name, s in panel["series"].items():
            color, label = _SERIES_STYLE[name]
            mean = np.array([e["mean"] for e in s["mc"]])
            ci = np.array([e["ci95"] for e in s["mc"]])
            yerr = np.abs(ci.T - mean)
            widest = max(widest, float(np.max(yerr / np.abs(mean))))
            closed = np.asarray(s["closed_form"])
            line = ax.plot(keeps, closed, "-", color=color, lw=1.4)[0]
            bars = ax.errorbar(
                keeps, mean, yerr, fmt="o", color=color, ms=3.5, capsize=3, mfc="none"
            )
            if col == 0:
                handles.append((line, bars))
                labels.append(label.format(b=data["block_size"]))
            if name == "fc":
                mid = len(keeps) // 2
                ax.annotate(
                    f"FC / conv elementwise = {closed[mid] / ref[mid]:.3f}",
                    (keeps[mid], closed[mid]),
                    textcoords="offset points",
                    xytext=(4, 10),
                    fontsize=8.5,
                    ha="left",
                )
                continue
            ax_ratio.plot(keeps, closed / ref, "-", color=color, lw=1.4)
            ax_ratio.errorbar(
                keeps,
                mean / ref,
                yerr / ref,
                fmt="o",
                color=color,
                ms=3.5,
                capsize=3,
                mfc="none",
                lw=1,
            )
        ax.set_yscale("log")
        ax.set_title(f"{_PAD_NAMES[panel['padding']]} padding", fontsize=11)
        ax.grid(True, which="both", alpha=0.25)
        ax_ratio.axhline(1.0, color="0.5", lw=0.8)
        ax_ratio.grid(True, alpha=0.25)
        ax_ratio.set_xlabel("keep θ")
    # DropBlock's exact start rate γ grows as keep falls; border positions are covered by
    # fewer block starts, so E[m_p] = (1-γ)^c(p)/keep is far above 1 there and near 0 inside.
    axes[1, 0].text(
        0.98,
        0.05,
        "DropBlock (1/keep scaling): at low keep the kept units sit\n"
        "at the border (E[m] ≫ 1 there, ≈ 0 inside), where zero padding\n"
        "makes U's columns short, so it pays less than elementwise",
        transform=axes[1, 0].transAxes,
        ha="right",
        va="bottom",
        fontsize=8,
        color="C2",
    )
    axes[0, 0].set_ylabel("dropout penalty E‖f_m(x) − f(x)‖² (white input)")
    axes[1, 0].set_ylabel("÷ conv elementwise (5)")
    axes[0, 0].legend(
        handles,
        labels,
        handler_map={tuple: HandlerTuple(ndivide=1)},
        fontsize=8,
        loc="upper right",
        title=(
            "line: closed form; marker: Monte Carlo ± 95% CI\n"
            f"(at most ±{100 * widest:.1f} %: within the markers on this log\n"
            "scale; drawn to scale in the ratio row below)"
        ),
        title_fontsize=8,
    )
    fig.suptitle(
        f"(e) dropout penalty vs keep: conv net v {tuple(data['v_shape'])}, "
        f"u {tuple(data['u_shape'])}, "
        f"{data['image_shape'][0]}×{data['image_shape'][1]} image; FC = the same map on an "
        f"equalized FC layer of width {data['fc_width']}\n"
        f"lines: closed forms; markers: Monte Carlo with 95% CI, {data['n_masks']} masks each; "
        "lower row: ratio to the elementwise closed form",
        fontsize=11,
    )
    return fig


# ----------------------------------------------------------------------------- (f)

BORDER_KEEP = 0.5


# The net of (e), and a wider one (5×5 kernels, 16×16 image) whose border band is
# two pixels deep: the band is as deep as the two kernels' radii.
BORDER_NETS = ((KERNEL, IMAGE), (5, (16, 16)))


def compute_border_penalty_map(quick: bool, seed: int) -> dict:
    """Data of figure (f) ``border_penalty_map``: the per-position terms of formula (5).

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_border_penalty_map` draws.
    """
    nets = []
    for kernel, image in BORDER_NETS:
        u, v = _net(seed, kernel)
        lam = dropout_lambda(BORDER_KEEP)
        nets.append(
            {
                "kernel_size": kernel,
                "image_shape": image,
                "u": u,
                "v": v,
                "maps": {
                    p: conv.position_penalty(u, v, BORDER_KEEP, image, padding=p) for p in PADDINGS
                },
                "closed_form_total": {
                    p: conv.dropout_penalty(u, v, BORDER_KEEP, image, padding=p) for p in PADDINGS
                },
                # THEORY §3: circular padding gives λ n Σ_c ‖u_c‖²‖v_c‖² (n pixels)
                "circular_formula_total": lam
                * image[0]
                * image[1]
                * float(np.sum(np.sum(u**2, axis=(0, 2, 3)) * np.sum(v**2, axis=(1, 2, 3)))),
            }
        )
    return {"kernel_seed": seed, "keep": BORDER_KEEP, "hidden_channels": HIDDEN, "nets": nets}


def plot_border_penalty_map(data: dict) -> Figure:
    """Draw figure (f) from the data of :func:`compute_border_penalty_map`."""
    from matplotlib.figure import Figure

    nets = data["nets"]
    fig = Figure(figsize=(13.5, 4.3 * len(nets) + 0.6), layout="constrained")
    axes = fig.subplots(len(nets), 3, squeeze=False)
    cbar_label = r"$\lambda\,\Sigma_c\,\|U_{:,(c,q)}\|^2\,\mathbb{E}[h_{c,q}^2]$"
    for row, net in zip(axes, nets):
        zeros = np.asarray(net["maps"]["zeros"])
        circ = np.asarray(net["maps"]["circular"])
        ratio = zeros / circ
        H, W = net["image_shape"]
        k = net["kernel_size"]
        vmax = max(zeros.max(), circ.max())
        for ax, m, pad in ((row[0], zeros, "zeros"), (row[1], circ, "circular")):
            im = ax.imshow(m, cmap="viridis", vmin=0, vmax=vmax)
            total = net["closed_form_total"][pad]
            ax.set_title(
                f"{_PAD_NAMES[pad]} padding: map sums to {m.sum():.2f}\n"
                f"(closed form (5): {total:.2f})",
                fontsize=10,
            )
        fig.colorbar(im, ax=row[:2], shrink=0.9, label=cbar_label)
        im = row[2].imshow(ratio, cmap="magma", vmin=0, vmax=1)
        if H * W <= 100:
            for (i, j), r in np.ndenumerate(ratio):
                row[2].text(
                    j,
                    i,
                    f"{r:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="k" if r > 0.6 else "w",
                )
        row[2].set_title(
            f"ratio zero / circular (min {ratio.min():.2f}, interior {ratio[H // 2, W // 2]:.2f})",
            fontsize=10,
        )
        fig.colorbar(im, ax=row[2], shrink=0.9, label="ratio")
        for ax in row:
            ax.set_xticks(np.arange(0, W, 1 if W <= 8 else 3))
            ax.set_yticks(np.arange(0, H, 1 if H <= 8 else 3))
            ax.set_xlabel("hidden-map column")
        row[0].set_ylabel(f"{k}×{k} kernels, {H}×{W} image\nhidden-map row", fontsize=10.5)
    fig.suptitle(
        f"(f) border effect of zero padding: per-position terms of the elementwise "
        f"penalty (5), white input, keep = {data['keep']},\n"
        f"{data['hidden_channels']} hidden channels summed; the border band is as deep "
        "as the kernels' radius",
        fontsize=12,
    )
    return fig


# ----------------------------------------------------------------------------- (g)

MC_KEEP = 0.5


def compute_mc_error_vs_n(quick: bool, seed: int, sweep: Sweep | None = None) -> dict:
    # from 60: keep 0.5 needs at least 56 masks for an honest interval (montecarlo.min_draws)
    """Data of figure (g) ``mc_error_vs_n``: Monte Carlo error and reported stderr against N.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.
    sweep : regtheory.sweep.Sweep, optional
        Runs the grid of independent runs (``None``: serially); the data do not depend
        on it.

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_mc_error_vs_n` draws.
    """
    n_values = [60, 100, 300, 1000] if quick else [60, 100, 300, 1000, 3000, 10_000]
    n_seeds = 20
    u, v = _net(seed)
    fc_layer = _equalized_fc(u, v, "zeros")
    Ue, Ve, _ = fc_layer
    closed_forms = {
        "fc": fc.dropout_penalty(Ue, Ve, MC_KEEP),
        "element": conv.dropout_penalty(u, v, MC_KEEP, IMAGE, padding="zeros", mode="element"),
        "channel": conv.dropout_penalty(u, v, MC_KEEP, IMAGE, padding="zeros", mode="channel"),
    }
    # The estimator × N × seed grid, numbered (for the seeds) in that order.
    grid = [(name, n, i) for name in closed_forms for n in n_values for i in range(n_seeds)]
    cells = [
        _penalty_cell(u, v, fc_layer, name, "zeros", MC_KEEP, None, n, _mc_seed(seed, k))
        for k, (name, n, _) in enumerate(grid)
    ]
    runs: dict[tuple[str, int], list[tuple[int, Estimate]]] = {}
    for (name, n, _), cell, est in zip(grid, cells, (sweep or Sweep()).map(_penalty_mc, cells)):
        runs.setdefault((name, n), []).append((cell["seed"], est))
    out = {}
    for name, closed in closed_forms.items():
        rows = []
        for n in n_values:
            seeds = [s for s, _ in runs[name, n]]
            ests = [e for _, e in runs[name, n]]
            err = np.array([e.value - closed for e in ests])
            se = np.array([e.stderr for e in ests])
            rows.append(
                {
                    "n_masks": n,
                    "seeds": seeds,
                    "errors": err,
                    "stderrs": se,
                    "rms_error": float(np.sqrt(np.mean(err**2))),
                    "rms_stderr": float(np.sqrt(np.mean(se**2))),
                }
            )
        # σ of one draw, from the largest runs: the 1/√N law is σ/√N.
        sigma = float(np.sqrt(np.mean(np.asarray(rows[-1]["stderrs"]) ** 2) * n_values[-1]))
        out[name] = {"closed_form": closed, "sigma_one_draw": sigma, "rows": rows}
    return {
        "kernel_seed": seed,
        "u": u,
        "v": v,
        "keep": MC_KEEP,
        "padding": "zeros",
        "n_seeds": n_seeds,
        "n_values": n_values,
        "estimators": out,
    }


_MC_LABELS = {
    "fc": ("k", "FC, same map, equalized (X = √d·I)"),
    "element": ("C0", "conv elementwise (fresh white x per mask)"),
    "channel": ("C1", "conv channel (fresh white x per mask)"),
}


def plot_mc_error_vs_n(data: dict) -> Figure:
    """Draw figure (g) from the data of :func:`compute_mc_error_vs_n`."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    n = np.asarray(data["n_values"], dtype=float)
    fig = Figure(figsize=(8.5, 5.6), layout="constrained")
    ax = fig.subplots()
    grid = np.geomspace(n[0] / 1.5, n[-1] * 1.5, 50)
    for name, est in data["estimators"].items():
        color, _ = _MC_LABELS[name]
        closed = est["closed_form"]
        rms = np.array([r["rms_error"] for r in est["rows"]]) / closed
        se = np.array([r["rms_stderr"] for r in est["rows"]]) / closed
        ax.plot(n, rms, "o", color=color, ms=6)
        ax.plot(n, se, "x", color=color, ms=7, mew=1.6)
        ax.plot(
            grid,
            est["sigma_one_draw"] / closed / np.sqrt(grid),
            "-",
            color=color,
            lw=0.9,
            alpha=0.7,
        )
    what = [
        Line2D([], [], color="0.3", ls="none", marker="o", label="RMS |estimate − closed form|"),
        Line2D(
            [],
            [],
            color="0.3",
            ls="none",
            marker="x",
            mew=1.6,
            label="reported stderr (RMS over seeds)",
        ),
        Line2D([], [], color="0.3", lw=0.9, label="σ/√N, σ of one draw (largest N)"),
    ]
    who = [
        Line2D([], [], color=_MC_LABELS[k][0], lw=4, label=_MC_LABELS[k][1])
        for k in data["estimators"]
    ]
    ax.add_artist(
        ax.legend(handles=who, fontsize=8, loc="upper right", title="estimator", title_fontsize=8)
    )
    ax.legend(handles=what, fontsize=8, loc="lower left", title="quantity", title_fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of masks N")
    ax.set_ylabel("relative error  (÷ closed-form penalty)")
    ax.grid(True, which="both", alpha=0.25)
    ax.set_title(
        f"(g) Monte Carlo error follows 1/√N and the reported stderr is honest\n"
        f"{data['n_seeds']} seeds per N, keep = {data['keep']}, net of (e), "
        f"{_PAD_NAMES[data['padding']]} padding",
        fontsize=11,
    )
    return fig


# ----------------------------------------------------------------------------- registry

# The kernels u, v of (e)-(g) are drawn from the seed: NumPy's generators give the same
# bits everywhere, and dividing by k rounds the same, so they are checked as closed forms.
# A standard error from n draws varies by c/√n with c ≤ 1.25 measured (Rule ``spread``);
# two independent ones agree within MC_Z·√2·1.5/√n ≈ 8.5/√n.
STDERR_RTOL = 8.5
# The closed forms of a layer sum about 10^4 terms (8×8 positions, 8 channels, 3×3 taps,
# through the 512 units of the FC layer of (2)); at most 10^5.
_LAYER_TERMS = 100_000
# An estimate from the same draws: a mean of at most 20,000 draws, each a closed form of
# a masked layer, with control variates subtracted (condition ≤ 10).
_MC_ROUNDING = rounding(20_000 + _LAYER_TERMS, 10)


def _estimator_fields(field: str, estimators: str) -> str:
    """The paths of ``field`` of the named estimators of (g)."""
    return " ".join(f"estimators/{e}/{field}" for e in estimators.split())


def _series_fields(fields: str, series: str) -> str:
    """The paths of ``fields`` of the Monte Carlo estimates of the named series of (e)."""
    return " ".join(f"panels/*/series/{s}/mc/*/{f}" for s in series.split() for f in fields.split())


register(
    FigureSpec(
        "conv_matrix_seed",
        "(c) the seed's 9×9 conv matrix with one mask's dropped columns, beside a dense FC layer",
        compute_conv_matrix_seed,
        plot_conv_matrix_seed,
        checks={
            # the mask is sampled, but its bits come from the seed alone
            "keep mask_seed mask tap_index columns_per_tap kept_columns_per_tap taps_with_gradient "
            "fc_zeroed_weights": EXACT,
            # (1 − keep)^n over the n ≤ 9 columns of a tap
            "no_gradient_probability fc_no_gradient_probability": closed_form(size=9),
        },
        references=(
            "tds2019dropout",
            "srivastava2014dropout",
        ),
    )
)
register(
    FigureSpec(
        "no_gradient_probability",
        "(d) P(weight gets no gradient) vs drop rate: FC 1−keep vs conv taps (1−keep)^n_k",
        compute_no_gradient_probability,
        plot_no_gradient_probability,
        checks={
            "uses_seed kernel_size padding images/*/image_shape images/*/counts": EXACT,
            # a grid, but computed through exp: libm may round its last bit differently;
            # p^n = exp(n ln p) for n ≤ 1024 columns and |ln p| ≤ ln 50 ≈ 4
            "drop_rate fc images/*/probability": closed_form(size=1024, condition=4),
        },
        references=(
            "tds2019dropout",
            "srivastava2014dropout",
        ),
    )
)
register(
    FigureSpec(
        "penalty_vs_keep",
        "(e) penalty vs keep: closed forms (2), (5), (6) and DropBlock's with Monte Carlo CIs",
        compute_penalty_vs_keep,
        plot_penalty_vs_keep,
        sweeps=True,
        checks={
            "kernel_seed v_shape u_shape image_shape block_size fc_width n_masks keeps "
            "panels/*/padding panels/*/series/*/mc/*/n_samples panels/*/series/*/mc/*/seed": EXACT,
            "u v": closed_form(),
            # sums over the 8×8 positions, 8 channels and 3×3 taps, the 512 units of (2)
            "panels/*/series/*/closed_form": closed_form(size=_LAYER_TERMS),
            # the same draws give the same estimates to rounding; the fc series draws its
            # masks for an equalized factorization, which is not unique (another kernel
            # may find another): z-score only
            _series_fields("mean ci95", "block channel element"): monte_carlo(
                "stderr", same_draws=_MC_ROUNDING
            ),
            _series_fields("mean ci95", "fc"): monte_carlo("stderr"),
            _series_fields("stderr", "block channel element"): spread(
                STDERR_RTOL, draws="n_samples", same_draws=_MC_ROUNDING
            ),
            _series_fields("stderr", "fc"): spread(STDERR_RTOL, draws="n_samples"),
        },
        references=(
            "mianjy2018implicit, Thm 2.4",
            "arora2021dropout",
            "tompson2015efficient",
            "ghiasi2018dropblock",
        ),
    )
)
register(
    FigureSpec(
        "border_penalty_map",
        "(f) per-position terms of the elementwise penalty (5): zero vs circular padding",
        compute_border_penalty_map,
        plot_border_penalty_map,
        checks={
            "kernel_seed keep hidden_channels nets/*/kernel_size nets/*/image_shape": EXACT,
            "nets/*/u nets/*/v": closed_form(),
            # sums of positive terms over ≤ 16×16 positions, 8 channels, 5×5 taps
            "nets/*/maps nets/*/closed_form_total nets/*/circular_formula_total": closed_form(
                size=16 * 16 * 8 * 25
            ),
        },
        references=(
            "mianjy2018implicit",
            "arora2021dropout",
        ),
    )
)
register(
    FigureSpec(
        "mc_error_vs_n",
        "(g) Monte Carlo error vs number of masks: observed RMS error and stderr against 1/√N",
        compute_mc_error_vs_n,
        plot_mc_error_vs_n,
        sweeps=True,
        checks={
            "kernel_seed keep padding n_seeds n_values estimators/*/rows/*/n_masks "
            "estimators/*/rows/*/seeds": EXACT,
            "u v": closed_form(),
            "estimators/*/closed_form": closed_form(size=_LAYER_TERMS),
            # estimate − closed form: the closed form is exact, so the stderr is the
            # estimate's. A difference near 0 has no relative rounding: z-score only.
            "estimators/*/rows/*/errors": monte_carlo("stderrs"),
            # the same draws give the same spreads to rounding, but for the fc estimator
            # (an equalized factorization, as in (e))
            _estimator_fields("rows/*/stderrs", "channel element"): spread(
                STDERR_RTOL, draws="n_masks", same_draws=_MC_ROUNDING
            ),
            "estimators/fc/rows/*/stderrs": spread(STDERR_RTOL, draws="n_masks"),
            # the RMS over the 20 seeds of a row
            _estimator_fields("rows/*/rms_stderr", "channel element"): spread(
                STDERR_RTOL / np.sqrt(20), draws="n_masks", same_draws=_MC_ROUNDING
            ),
            "estimators/fc/rows/*/rms_stderr": spread(STDERR_RTOL / np.sqrt(20), draws="n_masks"),
            # from the 20 runs of the largest N (1000 masks in quick mode): 8.5/√20000
            _estimator_fields("sigma_one_draw", "channel element"): spread(
                0.06, same_draws=_MC_ROUNDING
            ),
            "estimators/fc/sigma_one_draw": spread(0.06),
            # The RMS of 20 errors of mean 0 varies by 1/√40 = 16 % whatever N is; two
            # independent ones agree within 4·√2·16 % ≈ 90 %: a weak check, as it can only be.
            "estimators/*/rows/*/rms_error": spread(1.0),
        },
        references=(
            "mianjy2018implicit, Thm 2.4",
            "arora2021dropout",
            "tompson2015efficient",
        ),
    )
)
