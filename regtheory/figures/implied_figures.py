"""Figures of the implied problems (THEORY.md §3).

(h) ``implied_spectra`` -- Fourier magnitudes and singular values of the end-to-end
    map under FC, conv elementwise, channel and block dropout, on one task.
(i) ``trained_vs_implied`` -- real dropout training against the implied solutions.
(j) ``padding_gap`` -- the exact zero-padding optimum against the circular convex
    relaxation as the signal grows.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from .. import implied
from .._references import references_of
from ..compare import METHODS, circulant_spectrum, compare
from ..conv import conv2d
from ..data import conv_task, white_inputs
from ._check import CERTIFIED, EXACT, SOLVE_RTOL, TRAINING_RTOL, closed_form, solve, trajectory
from ._registry import FigureSpec, register

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = [
    "compute_implied_spectra",
    "compute_padding_gap",
    "compute_trained_vs_implied",
    "plot_implied_spectra",
    "plot_padding_gap",
    "plot_trained_vs_implied",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


COLORS = MappingProxyType(
    {"fc": "k", "element": "C0", "channel": "C1", "block": "C2", "teacher": "0.6"}
)
# distinct markers and dashes, so methods that coincide stay visible on top of each other
STYLES = MappingProxyType({"fc": "x--", "element": "o-", "channel": "s-", "block": "^:"})
TEACHER = (0.15, -0.4, 1.0, 0.5, -0.2)  # a 5-tap end-to-end kernel: K = 3 per layer
# (h), (i): full-size kernels (K = n, C = n hidden channels), where conv dropout's regularizer
# is the l1 norm of the DFT (THEORY §3), and strong dropout (keep 0.1) so the differences show.
TEACHER_FULL = (0.1, -0.3, 0.2, 0.6, 1.0, 0.6, 0.2, -0.3, 0.1)


def _task_settings(quick: bool) -> dict:
    return {
        "n": 9,
        "n_train": 60 if quick else 200,
        "n_test": 1000,
        "noise": 0.5,
        "keep": 0.1,
        "channels": 9,
        "kernel_size": 9,
        "block_size": 9,
    }


def _training(quick: bool) -> tuple[dict, dict]:
    steps = 1500 if quick else 6000
    fc_run = {"steps": steps, "lr": 0.005, "lr_decay": 2000.0, "init_scale": 0.3}
    conv_run = {"steps": steps, "lr": 0.0015, "lr_decay": 2000.0, "init_scale": 0.3}
    return fc_run, conv_run


def _comparison(quick: bool, seed: int, train: bool, solver: str | None):
    st = _task_settings(quick)
    task = conv_task(
        st["n"], np.array(TEACHER_FULL), st["n_train"], st["n_test"], st["noise"], rng=seed
    )
    result = compare(
        task,
        st["keep"],
        st["channels"],
        st["kernel_size"],
        block_size=st["block_size"],
        train=train,
        rng=seed + 1,
        fc_training=_training(quick)[0],
        conv_training=_training(quick)[1],
        solver=solver,
    )
    # the teacher's operator: its response to each unit impulse, one column each
    teacher_op = conv2d(np.eye(st["n"])[:, None, :], task.teacher, padding="circular")[:, 0, :].T
    return st, result, teacher_op


def compute_implied_spectra(quick: bool, seed: int, solver: str | None = None) -> dict:
    """Data of figure (h) ``implied_spectra``: spectra of the implied solutions.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.
    solver : str, optional
        cvxpy solver of the implied problems (``None``: Clarabel).

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_implied_spectra` draws.
    """
    st, result, teacher_op = _comparison(quick, seed, train=False, solver=solver)
    return {
        "settings": st,
        "task_seed": seed,
        "teacher": {
            "fourier": circulant_spectrum(teacher_op),
            "singular_values": np.linalg.svd(teacher_op, compute_uv=False),
        },
        "methods": {
            m: {
                "label": METHODS[m],
                "fourier": r.fourier_magnitudes,
                "singular_values": r.singular_values,
                "rank": r.rank,
                "objective": r.objective,
                "certified_gap": r.certified_gap,
                "test_risk": r.test_risk,
            }
            for m, r in result.results.items()
        },
    }


_SV_FLOOR = 1e-4  # singular values below it (zeros of a low-rank map) are drawn on it


def plot_implied_spectra(data: dict) -> Figure:
    """Draw figure (h) from the data of :func:`compute_implied_spectra`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    n = len(data["teacher"]["fourier"])
    freq = np.fft.fftfreq(n) * n
    order = np.argsort(freq)
    ax1.plot(
        freq[order],
        np.asarray(data["teacher"]["fourier"])[order],
        color=COLORS["teacher"],
        lw=4,
        alpha=0.6,
        label="teacher",
    )
    ax2.plot(
        np.arange(1, n + 1),
        data["teacher"]["singular_values"],
        color=COLORS["teacher"],
        lw=4,
        alpha=0.6,
        label="teacher",
    )
    for m, d in data["methods"].items():
        ax1.plot(
            freq[order],
            np.asarray(d["fourier"])[order],
            STYLES[m],
            ms=6,
            mfc="none",
            color=COLORS[m],
            label=f"{m}: test risk {d['test_risk']:.3f}",
        )
        ax2.semilogy(
            np.arange(1, n + 1),
            np.maximum(d["singular_values"], _SV_FLOOR),
            STYLES[m],
            ms=6,
            mfc="none",
            color=COLORS[m],
            label=f"{m} (rank {d['rank']})",
        )
    ax1.set_xlabel("frequency k")
    ax1.set_ylabel(r"$|\hat w_k|$ (circulant part of the map)")
    ax1.set_title("Fourier magnitudes of the end-to-end map (circulant part)")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("index i")
    ax2.set_ylabel(r"$\sigma_i$ of the end-to-end operator (floored at $10^{-4}$)")
    ax2.set_ylim(bottom=_SV_FLOOR / 2)
    ax2.axhline(_SV_FLOOR, color="0.6", lw=0.8, ls=":")
    ax2.set_title("singular values (log): low rank vs shrinkage")
    ax2.legend(fontsize=8)
    st = data["settings"]
    ranks = ", ".join(f"{m} {d['rank']}" for m, d in data["methods"].items())
    fig.suptitle(
        f"(h) one task (n={st['n']}, full-size kernels K={st['kernel_size']}, C={st['channels']}, "
        f"keep={st['keep']}, noise {st['noise']}, blocks of {st['block_size']} units); ranks: "
        f"{ranks}\nconv and FC dropout threshold the spectrum (ℓ₁ of the DFT = nuclear norm here); "
        "channel dropout and n-unit blocks (both a ridge) only shrink"
    )
    return fig


def compute_trained_vs_implied(quick: bool, seed: int, solver: str | None = None) -> dict:
    """Data of figure (i) ``trained_vs_implied``: training against the implied solutions.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.
    solver : str, optional
        cvxpy solver of the implied problems (``None``: Clarabel).

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_trained_vs_implied` draws.
    """
    st, result, _ = _comparison(quick, seed, train=True, solver=solver)
    return {
        "settings": st,
        "task_seed": seed,
        "training_seed": seed + 1,
        "training": result.settings,
        "methods": {
            m: {
                "implied_fourier": r.fourier_magnitudes,
                "trained_fourier": circulant_spectrum(r.trained_operator),
                "implied_sv": r.singular_values,
                "trained_sv": np.linalg.svd(r.trained_operator, compute_uv=False),
                "gap": r.gap,
                "test_risk": r.test_risk,
                "trained_test_risk": r.trained_test_risk,
            }
            for m, r in result.results.items()
        },
    }


def plot_trained_vs_implied(data: dict) -> Figure:
    """Draw figure (i) from the data of :func:`compute_trained_vs_implied`."""
    from matplotlib.figure import Figure

    methods = data["methods"]
    fig = Figure(figsize=(3.2 * len(methods), 3.6), layout="constrained")
    axes = fig.subplots(1, len(methods), sharey=True)
    for ax, (m, d) in zip(axes, methods.items()):
        n = len(d["implied_sv"])
        idx = np.arange(1, n + 1)
        ax.plot(idx, d["implied_sv"], "-", color=COLORS[m], lw=2, label="implied (cvxpy)")
        ax.plot(idx, d["trained_sv"], "o", mfc="none", color=COLORS[m], label="trained, real masks")
        ax.set_title(
            f"{m}: gap {d['gap']:.1e}\ntest risk: implied {d['test_risk']:.3f}, "
            f"trained {d['trained_test_risk']:.3f}",
            fontsize=9,
        )
        ax.set_xlabel("index i")
    axes[0].set_ylabel(r"$\sigma_i$ of the end-to-end operator")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "(i) dropout training with real masks lands on the implied solution "
        "(gap = relative Frobenius distance of the maps)"
    )
    return fig


def compute_padding_gap(quick: bool, seed: int, solver: str | None = None) -> dict:
    """Data of figure (j) ``padding_gap``: the zero-padding optimum against the circular one.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.
    solver : str, optional
        cvxpy solver of the implied problems (``None``: Clarabel).

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_padding_gap` draws.
    """
    sizes = [5, 8] if quick else [5, 6, 8, 12, 16, 24, 32]
    keep, C, K, noise = 0.5, 3, 3, 0.1
    rows = []
    rng = np.random.default_rng(seed)
    teacher = np.array(TEACHER).reshape(1, 1, -1)
    for n in sizes:
        N = 4 * n
        X = white_inputs(N, n, rng=rng).reshape(N, 1, n)
        Y = conv2d(X, teacher, padding="zeros") + noise * rng.standard_normal(X.shape)
        # the exact factored optima below are scipy minimisations, not cvxpy solves
        convex = implied.solve_conv(X, Y, keep, C, K, solver=solver)
        exact = {
            pad: implied.solve_conv_factored(
                X, Y, keep, C, K, padding=pad, starts=1 if quick else 4, rng=seed
            )
            for pad in ("zeros", "circular")
        }
        rows.append(
            {
                "n": n,
                "convex_relaxation": convex.objective,
                "convex_gap": convex.gap,
                "exact_zeros": exact["zeros"].objective,
                "exact_circular": exact["circular"].objective,
                "penalty_zeros": exact["zeros"].penalty,
                "penalty_zeros_if_circular": float(
                    (1 - keep)
                    / keep
                    * n
                    * np.sum(
                        np.sum(exact["zeros"].u ** 2, axis=(0, 2))
                        * np.sum(exact["zeros"].v ** 2, axis=(1, 2))
                    )
                ),
            }
        )
    return {
        "keep": keep,
        "channels": C,
        "kernel_size": K,
        "noise": noise,
        "data_seed": seed,
        "teacher": TEACHER,
        "rows": rows,
    }


def plot_padding_gap(data: dict) -> Figure:
    """Draw figure (j) from the data of :func:`compute_padding_gap`."""
    from matplotlib.figure import Figure

    rows = data["rows"]
    n = np.array([r["n"] for r in rows])
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for key, style, label in [
        ("convex_relaxation", "k-", "circular convex relaxation (7)"),
        ("exact_circular", "C0o", "exact factored optimum, circular"),
        ("exact_zeros", "C3s-", "exact factored optimum, zero padding"),
    ]:
        ax1.plot(n, [r[key] for r in rows], style, mfc="none", label=label)
    ax1.set_xlabel("signal length n")
    ax1.set_ylabel("dropout objective (per signal)")
    ax1.set_title("optimal objective (teacher with zero padding)")
    ax1.legend(fontsize=8)
    # both are relative deviations of zero padding from the circular value; on log axes
    # a K/n decay is a line of slope -1, drawn through each curve's last point
    K = data["kernel_size"]
    curves = [
        (
            [(r["convex_relaxation"] - r["exact_zeros"]) / r["convex_relaxation"] for r in rows],
            "C3s-",
            "optimum: (relaxation − exact, zeros) / relaxation",
        ),
        (
            [1 - r["penalty_zeros"] / r["penalty_zeros_if_circular"] for r in rows],
            "C2^-",
            "penalty (5), same kernels: 1 − zeros / circular formula",
        ),
    ]
    for deviation, style, label in curves:
        values = np.asarray(deviation)
        ax2.loglog(n, values, style, mfc="none", label=label)
        c = values[-1] * n[-1] / K
        ax2.loglog(n, c * K / n, ":", color=style[:2], lw=1)
    ax2.plot([], [], "k:", lw=1, label=f"c · K/n (K = {K}), through the last point")
    ax2.set_xlabel("signal length n")
    ax2.set_ylabel("relative deviation from circular padding")
    ax2.set_title("the border effect fades like K/n")
    ax2.legend(fontsize=8)
    fig.suptitle(
        f"(j) zero vs circular padding (K={data['kernel_size']}, C={data['channels']}, "
        f"keep={data['keep']}): the exact penalty against the convex relaxation as the signal grows"
    )
    return fig


register(
    FigureSpec(
        "implied_spectra",
        "(h) Fourier magnitudes and singular values under FC, conv, channel, block dropout",
        compute_implied_spectra,
        plot_implied_spectra,
        solves=True,
        checks={
            "settings task_seed methods/*/label methods/*/rank": EXACT,
            # the teacher's 9 taps and the SVD of its 9×9 circulant
            "teacher": closed_form(size=9**3),
            "methods/*/fourier methods/*/singular_values methods/*/test_risk": solve(),
            # an objective is known to its certified gap, stored and regenerated, plus the
            # rounding of its data (200 samples of 9×9 taps); a closed-form solve (channel
            # dropout's ridge) certifies a gap of 0
            "methods/*/objective": solve("certified_gap", scale="value", size=200 * 81),
            "methods/*/certified_gap": CERTIFIED,
        },
        references=references_of(compare),  # the problems compared
    )
)
register(
    FigureSpec(
        "trained_vs_implied",
        "(i) dropout training with real masks vs the implied-problem solutions",
        compute_trained_vs_implied,
        plot_trained_vs_implied,
        solves=True,
        checks={
            "settings task_seed training_seed training": EXACT,
            "methods/*/implied_fourier methods/*/implied_sv methods/*/test_risk": solve(),
            "methods/*/trained_fourier methods/*/trained_sv": trajectory(
                TRAINING_RTOL, scale="field"
            ),
            "methods/*/trained_test_risk": trajectory(TRAINING_RTOL),
            # ‖trained − implied‖/‖implied‖: moved by the errors of both
            "methods/*/gap": trajectory(TRAINING_RTOL + SOLVE_RTOL, scale=1.0),
        },
        # the papers of the problems compared, and the dropout training beside them
        references=("srivastava2014dropout", *references_of(compare)),
    )
)
register(
    FigureSpec(
        "padding_gap",
        "(j) zero vs circular padding: exact optimum vs the convex relaxation as n grows",
        compute_padding_gap,
        plot_padding_gap,
        solves=True,
        checks={
            "keep channels kernel_size noise data_seed teacher rows/*/n": EXACT,
            "rows/*/convex_relaxation": solve("convex_gap", scale="value", size=1000),
            "rows/*/convex_gap": CERTIFIED,
            "rows/*/exact_zeros rows/*/exact_circular": solve(),
            # Where an optimum lies is known to about the square root of its objective's
            # accuracy, and so are the penalty of the factors found (1.9e-7 apart between
            # two machines that agree on the objectives to 2.5e-14).
            "rows/*/penalty_zeros rows/*/penalty_zeros_if_circular": solve(1e-5),
        },
        references=(
            "mianjy2018implicit",
            "gunasekar2018implicit",
        ),
    )
)
