r"""Figures of deep networks (THEORY.md §6): the exact penalty at any depth.

(k) ``penalty_vs_depth`` -- one end-to-end map factored at depth 2…6, dropout at every
    hidden layer: the exact penalty against Monte Carlo over real masks, FC and conv.
(l) ``penalty_attribution`` -- the split of one deep conv net's penalty into each dropout
    layer's own term and the interaction terms of several layers, element and channel masks.

**Balanced factorizations** (k). The map is held fixed while the depth L grows, so that
only the factorization changes. FC: a random d×d matrix M = PΣQᵀ is written as

.. math:: M = W_L \cdots W_1,\qquad W_1 = R_1 \Sigma^{1/L} Q^\top,\quad
          W_i = R_i \Sigma^{1/L} R_{i-1}^\top,\quad W_L = P \Sigma^{1/L} R_{L-1}^\top,

with random rotations :math:`R_i`: every layer has the singular values :math:`\Sigma^{1/L}`
and :math:`W_{i+1}^\top W_{i+1} = W_i W_i^\top` (the balanced factorizations that gradient
flow preserves in deep linear networks). Conv: a full-size kernel K on a circular signal of
odd length n is a circulant matrix, diagonal in the Fourier basis with eigenvalues
:math:`\hat K_j`; its balanced factorization is L copies of the kernel whose eigenvalues are
the principal roots :math:`\hat K_j^{1/L}` (taken on one half of the spectrum and conjugated
on the other, so the kernel is real; the sign of K makes :math:`\hat K_0 = \sum K > 0`).

Every Monte Carlo run holds its own seed (:func:`_mc_seed`, recorded in the data), so any
one of them can be re-run alone. The grid is small (30 short runs), so it runs serially
rather than as a sweep.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from .. import network
from ..conv import conv_matrix
from ..masks import Bernoulli, Channel, MaskDistribution
from ..montecarlo import Estimate
from ..network import Conv, Dropout, Linear
from ._check import EXACT, closed_form, monte_carlo, rounding, spread
from ._registry import FigureSpec, register

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = [
    "compute_penalty_attribution",
    "compute_penalty_vs_depth",
    "plot_penalty_attribution",
    "plot_penalty_vs_depth",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


# ----------------------------------------------------------------------------- (k)

DEPTHS = (2, 3, 4, 5, 6)
DEPTH_KEEPS = (0.5, 0.7, 0.9)
FC_DIM = 4  # M is FC_DIM × FC_DIM, every hidden layer FC_DIM wide
SIGNAL = 9  # conv: one channel, circular signal of this length, full-size kernels
N_SAMPLES = 16  # inputs x_k (standard normal), the data both the exact penalty and MC use


def _mc_seed(seed: int, k: int) -> int:
    """Seed of the k-th Monte Carlo run of a figure (recorded in the data)."""
    return 100_000 * seed + 1 + k


def _rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    """A random d×d rotation: QR of a Gaussian matrix, signs fixed by R's diagonal."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _balanced_fc_factors(M: np.ndarray, depth: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Weights W_1 … W_L (``nn.Linear`` layout, first layer first) with W_L⋯W_1 = M.

    Each has singular values Σ^{1/L}, the hidden bases turned by random rotations
    (module docstring).
    """
    P, s, Qt = np.linalg.svd(M)
    # The SVD fixes each pair of singular vectors up to one sign, and the factors depend on
    # it: make the largest entry of each right singular vector positive, on every machine.
    signs = np.sign(Qt[np.arange(len(s)), np.argmax(np.abs(Qt), axis=1)])
    P, Qt = P * signs, Qt * signs[:, None]
    root = np.diag(s ** (1.0 / depth))
    bases = [Qt.T, *(_rotation(rng, len(s)) for _ in range(depth - 1)), P]
    return [bases[i + 1] @ root @ bases[i].T for i in range(depth)]


def _circulant_root(kernel: np.ndarray, depth: int) -> np.ndarray:
    """The real full-size kernel whose correlation, applied ``depth`` times, is ``kernel``'s.

    The kernel k is circular, ``kernel`` of odd length n, and k's eigenvalues are the
    principal roots K̂^{1/L}.
    """
    n = len(kernel)
    A = conv_matrix(kernel.reshape(1, 1, n), (n,), padding="circular")
    eig = np.fft.fft(A[:, 0])  # eigenvalues of the circulant matrix A
    root = np.abs(eig) ** (1.0 / depth) * np.exp(1j * np.angle(eig) / depth)
    half = n // 2
    root[n - half :] = np.conj(root[1 : half + 1][::-1])  # a real kernel: Hermitian spectrum
    column = np.fft.ifft(root).real  # first column of the root circulant
    # A[:, 0] holds the tap t = c − p at row p (cross-correlation, centre c = n // 2)
    return column[(half - np.arange(n)) % n]


def _deep_net(weights: list[np.ndarray], keep: float, conv: bool) -> list:
    """Layers ``W_1, D, W_2, D, …, W_L``: elementwise dropout at every hidden layer."""
    make = (lambda w: Conv(w, padding="circular")) if conv else Linear
    layers: list = [make(weights[0])]
    for w in weights[1:]:
        layers += [Dropout(Bernoulli(keep)), make(w)]
    return layers


def _depth_mc(cell: dict) -> Estimate:
    """One Monte Carlo estimate of (k): one cell of its grid."""
    layers, X = cell["layers"], cell["X"]
    # Y = the mask-free output: every mask has mean one, so E L(r) − L(1) = E‖f_r − f‖²
    Y = network.forward(layers, X)
    return network.dropout_penalty(
        layers, X, Y=Y, method="mc", n_masks=cell["n_masks"], rng=cell["seed"]
    )


def _estimate_record(est: Estimate, mc_seed: int) -> dict:
    lo, hi = est.ci(level=0.95)
    return {
        "mean": est.value,
        "stderr": est.stderr,
        "ci95": [lo, hi],
        "n_samples": est.n_masks,
        "seed": mc_seed,
    }


def _depth_nets(seed: int) -> tuple[dict, dict]:
    """The FC and conv settings of (k) from ``seed``.

    The map, the inputs, and each depth's factors, all drawn from one generator in this
    order.
    """
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((FC_DIM, FC_DIM)) / np.sqrt(FC_DIM)
    X_fc = rng.standard_normal((N_SAMPLES, FC_DIM))
    fc_weights = {L: _balanced_fc_factors(M, L, rng) for L in DEPTHS}
    kernel = rng.standard_normal(SIGNAL) / np.sqrt(SIGNAL)
    kernel *= np.sign(kernel.sum())  # K̂_0 = ΣK > 0: a real root at every depth
    X_conv = rng.standard_normal((N_SAMPLES, 1, SIGNAL))
    conv_weights = {L: [_circulant_root(kernel, L).reshape(1, 1, SIGNAL)] * L for L in DEPTHS}
    fc = {"map": M, "X": X_fc, "weights": fc_weights}
    conv = {"map": kernel, "X": X_conv, "weights": conv_weights}
    return fc, conv


def compute_penalty_vs_depth(quick: bool, seed: int) -> dict:
    """Data of figure (k) ``penalty_vs_depth``: the penalty of one map factored at depth 2…6.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_penalty_vs_depth` draws.
    """
    n_masks = 1000 if quick else 10_000
    nets = dict(zip(("fc", "conv"), _depth_nets(seed)))
    # The panel × keep × depth grid of Monte Carlo runs, numbered in that order (for the seeds).
    grid = [(panel, keep, L) for panel in nets for keep in DEPTH_KEEPS for L in DEPTHS]
    cells = []
    for k, (panel, keep, L) in enumerate(grid):
        layers = _deep_net(nets[panel]["weights"][L], keep, conv=panel == "conv")
        X = nets[panel]["X"]
        cells.append({"layers": layers, "X": X, "n_masks": n_masks, "seed": _mc_seed(seed, k)})
    estimates = [_depth_mc(cell) for cell in cells]
    panels = []
    for panel, net in nets.items():
        series = []
        for keep in DEPTH_KEEPS:
            runs = [
                (cell, est)
                for (p, q, _), cell, est in zip(grid, cells, estimates)
                if p == panel and q == keep
            ]
            exact = [
                float(network.dropout_penalty(cell["layers"], cell["X"], method="exact"))
                for cell, _ in runs
            ]
            mc = [_estimate_record(est, cell["seed"]) for cell, est in runs]
            series.append({"keep": keep, "exact": exact, "mc": mc})
        panels.append(
            {
                "layer": panel,
                "map": net["map"],
                "X": net["X"],
                "weights": [net["weights"][L] for L in DEPTHS],  # per depth: W_1 … W_L
                "series": series,
            }
        )
    return {
        "map_seed": seed,
        "depths": DEPTHS,
        "fc_width": FC_DIM,
        "signal_length": SIGNAL,
        "n_samples": N_SAMPLES,
        "n_masks": n_masks,
        "panels": panels,
    }


_DEPTH_TITLES = {
    "fc": "FC: a {d}×{d} map M, hidden layers {d} wide",
    "conv": "conv: a full-size kernel on a circular signal of length {n}",
}


def plot_penalty_vs_depth(data: dict) -> Figure:
    """Draw figure (k) from the data of :func:`compute_penalty_vs_depth`."""
    from matplotlib.figure import Figure
    from matplotlib.legend_handler import HandlerTuple

    depths = np.asarray(data["depths"])
    fig = Figure(figsize=(11.5, 7.0), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True, gridspec_kw={"height_ratios": [1.6, 1]})
    handles, labels = [], []
    for col, panel in enumerate(data["panels"]):
        ax, ax_ratio = axes[0, col], axes[1, col]
        for i, s in enumerate(panel["series"]):
            color = f"C{i}"
            exact = np.asarray(s["exact"])
            mean = np.array([e["mean"] for e in s["mc"]])
            ci = np.array([e["ci95"] for e in s["mc"]])
            yerr = np.abs(ci.T - mean)
            line = ax.plot(depths, exact, "-", color=color, lw=1.4)[0]
            bars = ax.errorbar(
                depths, mean, yerr, fmt="o", color=color, ms=4, capsize=3, mfc="none"
            )
            ax_ratio.errorbar(
                depths + 0.06 * (i - 1),
                mean / exact,
                yerr / exact,
                fmt="o",
                color=color,
                ms=4,
                capsize=3,
                mfc="none",
                lw=1,
            )
            if col == 0:
                handles.append((line, bars))
                labels.append(f"keep {s['keep']:g}")
        ax.set_yscale("log")
        ax.set_title(
            _DEPTH_TITLES[panel["layer"]].format(d=data["fc_width"], n=data["signal_length"]),
            fontsize=10.5,
        )
        ax.grid(True, which="both", alpha=0.25)
        ax_ratio.axhline(1.0, color="0.5", lw=0.8)
        ax_ratio.grid(True, alpha=0.25)
        ax_ratio.set_xlabel("depth L (linear layers; dropout at the L − 1 hidden layers)")
        ax_ratio.set_xticks(depths)
    axes[0, 0].set_ylabel("penalty (1/n) Σ_k E‖f_m(x_k) − f(x_k)‖²")
    axes[1, 0].set_ylabel("Monte Carlo ÷ exact")
    axes[0, 0].legend(
        handles,
        labels,
        handler_map={tuple: HandlerTuple(ndivide=1)},
        fontsize=8.5,
        loc="upper left",
        title="line: exact; marker: Monte Carlo ± 95% CI",
        title_fontsize=8,
    )
    fig.suptitle(
        f"(k) one end-to-end map, balanced factorizations of depth {depths[0]}…{depths[-1]}: "
        f"the exact penalty (network.dropout_penalty) against Monte Carlo\n"
        f"elementwise dropout at every hidden layer, {data['n_samples']} standard normal "
        f"inputs, {data['n_masks']:,} masks per estimate (map seed {data['map_seed']})",
        fontsize=11,
    )
    return fig


# ----------------------------------------------------------------------------- (l)

ATTR_CHANNELS = (1, 4, 4, 4, 1)  # four 3×3 conv layers, dropout after each of the first three
ATTR_KERNEL = 3
ATTR_IMAGE = (8, 8)
ATTR_KEEPS = (0.5, 0.8)
ATTR_MASKS: dict[str, type[MaskDistribution]] = {"element": Bernoulli, "channel": Channel}


def _attribution_net(seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Kernels w_i (C_out, C_in, 3, 3) of variance 1/(9 C_in) and inputs (n, 1, 8, 8)."""
    rng = np.random.default_rng(seed)
    pairs = itertools.pairwise(ATTR_CHANNELS)
    weights = [
        rng.standard_normal((c_out, c_in, ATTR_KERNEL, ATTR_KERNEL)) / (ATTR_KERNEL * np.sqrt(c_in))
        for c_in, c_out in pairs
    ]
    X = rng.standard_normal((N_SAMPLES, ATTR_CHANNELS[0], *ATTR_IMAGE))
    return weights, X


def compute_penalty_attribution(quick: bool, seed: int) -> dict:
    """Data of figure (l) ``penalty_attribution``: a deep conv net's penalty by layer.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_penalty_attribution` draws.
    """
    weights, X = _attribution_net(seed)
    panels = []
    for masks, kind in ATTR_MASKS.items():
        for keep in ATTR_KEEPS:
            layers: list = [Conv(weights[0])]
            for w in weights[1:]:
                layers += [Dropout(kind(keep)), Conv(w)]
            terms = network.dropout_penalty_terms(layers, X)
            # dropout layer j (1, 2, 3) is the j-th random layer: name subsets by j
            number = {pos: j + 1 for j, pos in enumerate(terms.layers)}
            panels.append(
                {
                    "masks": masks,
                    "keep": keep,
                    "dropout_positions": terms.layers,
                    "subsets": [[number[p] for p in t] for t in terms.subsets],
                    "terms": terms.values,
                    "own_sum": float(np.sum(terms.own)),
                    "interaction": terms.interaction,
                    "mean_shift": terms.mean_shift,
                    "total": terms.value,
                }
            )
    return {
        "net_seed": seed,
        "channels": ATTR_CHANNELS,
        "kernel_size": ATTR_KERNEL,
        "image_shape": ATTR_IMAGE,
        "padding": "zeros",
        "n_samples": N_SAMPLES,
        "weights": weights,
        "X": X,
        "panels": panels,
    }


def _subset_label(subset: list[int]) -> str:
    return f"own {subset[0]}" if len(subset) == 1 else "×".join(map(str, subset))


def plot_penalty_attribution(data: dict) -> Figure:
    """Draw figure (l) from the data of :func:`compute_penalty_attribution`."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    panels = data["panels"]
    n_cols = len({p["keep"] for p in panels})
    fig = Figure(figsize=(5.6 * n_cols, 9.0), layout="constrained")
    axes = fig.subplots(len(panels) // n_cols, n_cols, squeeze=False)
    for ax, panel in zip(axes.ravel(), panels):
        subsets, terms = panel["subsets"], np.asarray(panel["terms"])
        # a waterfall: each term starts where the previous ended, the last bar is the total
        starts = np.concatenate([[0.0], np.cumsum(terms)[:-1]])
        colors = [f"C{s[0] - 1}" if len(s) == 1 else "0.55" for s in subsets]
        hatches = ["" if len(s) == 1 else "//" for s in subsets]
        x = np.arange(len(terms))
        for xi, b, h, c, hatch in zip(x, starts, terms, colors, hatches):
            ax.bar(xi, h, bottom=b, color=c, hatch=hatch, edgecolor="k", lw=0.6, width=0.75)
        ax.bar(len(terms), panel["total"], color="white", edgecolor="k", lw=1.2, width=0.75)
        ax.axhline(panel["own_sum"], color="C3", ls="--", lw=1)
        share = panel["interaction"] / panel["total"]
        ax.text(
            0.02,
            0.97,
            f"own terms sum to {panel['own_sum']:.3g}\n"
            f"interactions add {panel['interaction']:.3g} ({100 * share:.0f} % of the total)",
            transform=ax.transAxes,
            va="top",
            fontsize=8.5,
        )
        ax.set_xticks(
            np.arange(len(terms) + 1),
            [_subset_label(s) for s in subsets] + ["total"],
            fontsize=8.5,
            rotation=30,
        )
        ax.set_title(f"{panel['masks']} masks, keep {panel['keep']:g}", fontsize=10.5)
        ax.grid(True, axis="y", alpha=0.25)
    for ax in axes[:, 0]:
        ax.set_ylabel("penalty term (cumulative)")
    legend = [
        *(Patch(fc=f"C{j}", ec="k", label=f"own term of dropout layer {j + 1}") for j in range(3)),
        Patch(fc="0.55", ec="k", hatch="//", label="interaction of the layers named"),
        Patch(fc="white", ec="k", label="total penalty"),
    ]
    legend.append(
        Patch(
            fc="none", ec="C3", ls="--", label="sum of the own terms (what additivity would give)"
        )
    )
    fig.legend(handles=legend, fontsize=8.5, loc="outside lower center", ncols=3)
    c = data["channels"]
    fig.suptitle(
        f"(l) the exact penalty of a 4-layer conv net ({'→'.join(map(str, c))} channels, "
        f"{data['kernel_size']}×{data['kernel_size']} kernels, "
        f"{data['image_shape'][0]}×{data['image_shape'][1]} images, zero padding, "
        f"{data['n_samples']} standard normal inputs),\n"
        "dropout after layers 1, 2 and 3: each layer's own term, then the interaction terms "
        "of every subset of layers\n(network.dropout_penalty_terms); "
        "the penalties of the layers do not add up",
        fontsize=10.5,
    )
    return fig


# ----------------------------------------------------------------------------- registry

# A standard error from n draws varies by c/√n, c = √((κ − 1)/4) for draws of kurtosis κ.
# The draws of (k) are heavier-tailed than those of one layer (products of inverted masks):
# c ≤ 1.5 from the kurtosis of 100,000 draws (FC, depth 6, keep 0.5; the conv net 1.06), and
# ≤ 1.4 from the spread of 20 stderrs of every estimate. Two independent ones agree within
# MC_Z·√2·c/√n; c = 1.75 leaves room for another seed's net: 10/√n.
STDERR_RTOL = 10.0
# The operations a value of (k) chains: 16 samples through ≤ 6 layers of 4×4 maps or
# 9-tap circular convolutions.
_NET_TERMS = 16 * 6 * 81

register(
    FigureSpec(
        "penalty_vs_depth",
        "(k) one map factored at depth 2…6: the exact penalty of the deep net against Monte Carlo",
        compute_penalty_vs_depth,
        plot_penalty_vs_depth,
        checks={
            "map_seed depths fc_width signal_length n_samples n_masks panels/*/layer "
            "panels/*/series/*/keep panels/*/series/*/mc/*/n_samples "
            "panels/*/series/*/mc/*/seed": EXACT,
            "panels/*/map panels/*/X": closed_form(),
            # moments through ≤ 6 layers of 4×4 (or 9-tap) maps, over 16 samples
            "panels/*/series/*/exact": closed_form(size=_NET_TERMS),
            # from an SVD and QRs: rounding relative to the largest entry, over the relative
            # gap between singular values (σ₁ / min gap = 5.7 for the FC map)
            "panels/*/weights": closed_form(size=100, condition=10, scale="field"),
            # the same draws (the seed's) give the same estimates to rounding: a mean of
            # 10,000 draws, each a forward pass through the net
            "panels/*/series/*/mc/*/mean panels/*/series/*/mc/*/ci95": monte_carlo(
                "stderr", same_draws=rounding(10_000 + _NET_TERMS, 10)
            ),
            "panels/*/series/*/mc/*/stderr": spread(
                STDERR_RTOL, draws="n_samples", same_draws=rounding(10_000 + _NET_TERMS, 10)
            ),
        },
        references=(
            "arora2021dropout",
            "mianjy2019dropout",
        ),
    )
)
register(
    FigureSpec(
        "penalty_attribution",
        "(l) the exact penalty of a 4-layer conv net split into own and interaction terms",
        compute_penalty_attribution,
        plot_penalty_attribution,
        checks={
            "net_seed channels kernel_size image_shape padding n_samples "
            "panels/*/masks panels/*/keep panels/*/dropout_positions panels/*/subsets": EXACT,
            "weights X": closed_form(),
            # second moments through 4 conv layers (≤ 4 channels, 3×3 taps, 8×8 positions)
            # over 16 samples; interactions by inclusion–exclusion over 3 layers, whose
            # terms are of either sign (condition ≤ 10)
            "panels/*/terms panels/*/own_sum panels/*/interaction panels/*/total": (
                closed_form(size=16 * 64 * 4 * 4 * 9 * 4, condition=10)
            ),
            # 0 for masks of mean one, up to rounding (relative to 1)
            "panels/*/mean_shift": closed_form(size=16 * 64 * 4, scale=1.0),
        },
        references=(
            "arora2021dropout",
            "tompson2015efficient",
        ),
    )
)
