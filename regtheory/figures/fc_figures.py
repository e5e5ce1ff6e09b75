"""Figures of the fully connected theory (THEORY.md §1).

(a) ``fc_equalization`` -- dropout training equalizes the hidden units.
(b) ``fc_spectrum`` -- singular values: trained with real dropout vs closed form (3) vs cvxpy;
    one training run per keep, run as a sweep (:mod:`regtheory.sweep`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import fc, implied, training
from ..data import linear_teacher
from ..sweep import Sweep
from ._check import CERTIFIED, EXACT, TRAINING_RTOL, closed_form, solve, trajectory
from ._registry import FigureSpec, register

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = [
    "compute_fc_equalization",
    "compute_fc_spectrum",
    "plot_fc_equalization",
    "plot_fc_spectrum",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


# One task for both figures: 8 -> 8 map with a spread spectrum, width 12 > rank,
# exactly white inputs so the isotropic closed form applies to the sample.
TEACHER_SINGULAR_VALUES = (4.0, 3.0, 2.0, 1.5, 1.0, 0.6, 0.3, 0.1)
DIM, WIDTH, N_SAMPLES, NOISE = 8, 12, 2000, 0.1


def _sizes(quick: bool) -> dict:
    if quick:
        return {"steps": 2000, "lr": 0.02, "lr_decay": 500.0, "init_scale": 0.6, "record_every": 10}
    # Full-batch steps (fresh masks per sample each step); a large, random initialisation
    # so the units start far from equalized (products spread ~80 %).
    return {"steps": 20_000, "lr": 0.02, "lr_decay": 2000.0, "init_scale": 0.6, "record_every": 50}


def _train(task, keep: float, quick: bool, seed: int):
    return training.train_fc(task.X, task.Y, keep, WIDTH, rng=seed, **_sizes(quick))


def compute_fc_equalization(quick: bool, seed: int) -> dict:
    """Data of figure (a) ``fc_equalization``: dropout training equalizes the hidden units.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_fc_equalization` draws.
    """
    keep = 0.5
    task = linear_teacher(N_SAMPLES, TEACHER_SINGULAR_VALUES, DIM, DIM, NOISE, rng=seed)
    run = _train(task, keep, quick, seed + 1)
    M_star = fc.global_optimum(task.T, keep, WIDTH)
    rel_error = np.linalg.norm(run.maps - M_star, axis=(1, 2)) / np.linalg.norm(M_star)
    return {
        "keep": keep,
        "width": WIDTH,
        "train_seed": seed + 1,
        "task_seed": seed,
        "hyperparameters": _sizes(quick),
        "steps": run.steps,
        "products": run.products,
        "equalized_product": np.linalg.svd(M_star, compute_uv=False).sum() / WIDTH,
        "rel_error_to_optimum": rel_error,
        "loss": run.loss,
        "optimal_loss": _optimal_loss(task, M_star, keep),
    }


def _optimal_loss(task, M, keep: float) -> float:
    """Dropout objective (1) at the optimum, attained by an equalized factorization."""
    resid = task.Y - task.X @ M.T
    return float(np.mean(np.sum(resid**2, axis=1)) + fc.induced_regularizer(M, keep, WIDTH))


def plot_fc_equalization(data: dict) -> Figure:
    """Draw figure (a) from the data of :func:`compute_fc_equalization`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    # log step axis: drop the initial record at step 0
    steps = np.asarray(data["steps"])[1:]
    products = np.asarray(data["products"])[1:]
    ax1.plot(steps, products, lw=1)
    ax1.axhline(
        data["equalized_product"], color="k", ls="--", lw=1.5, label=r"$\|M^*\|_*/w$ (theory)"
    )
    ax1.set_xscale("log")
    ax1.set_xlabel("SGD step")
    ax1.set_ylabel(r"$\|u_i\|\,\|v_i\|$ per hidden unit")
    ax1.set_title(f"(a) dropout equalizes the {data['width']} hidden units (keep={data['keep']})")
    ax1.legend(loc="upper left")
    ax2.semilogy(steps, data["rel_error_to_optimum"][1:], label=r"$\|UV^\top - M^*\|_F/\|M^*\|_F$")
    gap = np.asarray(data["loss"][1:]) - data["optimal_loss"]
    ax2.semilogy(steps, np.maximum(gap, 1e-16), label="objective (1) − optimum")
    spread = np.ptp(products, axis=1) / products.mean(axis=1)
    ax2.semilogy(steps, spread, label="(max − min)/mean of the products")
    ax2.set_xscale("log")
    ax2.set_xlabel("SGD step")
    ax2.set_ylabel("relative error (log scale)")
    ax2.set_title("convergence to the closed-form optimum (3)")
    ax2.legend()
    return fig


KEEPS = (0.2, 0.4, 0.6, 0.8)


def _spectrum_panel(cell: dict) -> dict:
    """One panel of (b), one cell of its sweep: train at one keep, solve, compare spectra.

    ``cell`` holds the task (``"data"``, a :class:`regtheory.data.LinearTask`), the
    keep, the training seed, the mode and the cvxpy solver (None: the default).
    """
    task, keep, train_seed = cell["data"], cell["keep"], cell["train_seed"]
    run = _train(task, keep, cell["quick"], train_seed)
    closed = fc.global_optimum(task.T, keep, WIDTH)
    solved = implied.solve_fc(task.T, keep, WIDTH, method="spectral", solver=cell["solver"])
    return {
        "keep": keep,
        "train_seed": train_seed,
        "target": np.linalg.svd(task.T, compute_uv=False),
        "trained": np.linalg.svd(run.final_map, compute_uv=False),
        "closed_form": np.linalg.svd(closed, compute_uv=False),
        "cvxpy": np.linalg.svd(solved.M, compute_uv=False),
        "rel_gap_trained": np.linalg.norm(run.final_map - closed) / np.linalg.norm(closed),
        "rel_gap_cvxpy": np.linalg.norm(solved.M - closed) / np.linalg.norm(closed),
        "certified_gap": solved.gap,
    }


def compute_fc_spectrum(
    quick: bool, seed: int, sweep: Sweep | None = None, solver: str | None = None
) -> dict:
    """Data of figure (b) ``fc_spectrum``: trained, closed-form and cvxpy singular values.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.
    sweep : regtheory.sweep.Sweep, optional
        Runs the grid of independent runs (``None``: serially); the data do not depend
        on it.
    solver : str, optional
        cvxpy solver of the implied problems (``None``: Clarabel).

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_fc_spectrum` draws.
    """
    task = linear_teacher(N_SAMPLES, TEACHER_SINGULAR_VALUES, DIM, DIM, NOISE, rng=seed)
    # one training run per keep, each with its own seed
    cells = [
        {"data": task, "keep": keep, "train_seed": seed + 1 + i, "quick": quick, "solver": solver}
        for i, keep in enumerate(KEEPS)
    ]
    panels = (sweep or Sweep()).map(_spectrum_panel, cells)
    return {"width": WIDTH, "task_seed": seed, "hyperparameters": _sizes(quick), "panels": panels}


def plot_fc_spectrum(data: dict) -> Figure:
    """Draw figure (b) from the data of :func:`compute_fc_spectrum`."""
    from matplotlib.figure import Figure

    panels = data["panels"]
    fig = Figure(figsize=(3.1 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True)
    for ax, p in zip(axes, panels):
        idx = np.arange(1, len(p["target"]) + 1)
        ax.plot(idx, p["target"], color="0.7", marker=".", label="target T")
        ax.plot(idx, p["closed_form"], "k-", lw=1.5, label="closed form (3)")
        ax.plot(idx, p["cvxpy"], "x", color="C1", ms=8, label="cvxpy")
        ax.plot(idx, p["trained"], "o", mfc="none", color="C0", label="trained w/ dropout")
        ax.set_title(f"keep = {p['keep']}", fontsize=10)
        ax.text(
            0.97,
            0.97,
            "trained vs (3):\n"
            + r"$\|M_\mathrm{tr} - M^*\|_F/\|M^*\|_F$"
            + f"\n= {p['rel_gap_trained']:.1e}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
        ax.set_xlabel("index i")
    axes[0].set_ylabel(r"singular value $\sigma_i$")
    axes[-1].legend(fontsize=8, loc="lower left")  # the empty corner under a mild shrinkage
    fig.suptitle(f"(b) dropout shrinks the spectrum by a common α (width {data['width']})")
    return fig


# A value from an SVD of the task's 12×12 map: O(n³) = 1728 operations, whose singular
# values are perfectly conditioned (Weyl), relative to the largest.
_SVD_TERMS = 12**3

register(
    FigureSpec(
        "fc_equalization",
        "(a) per-unit products ||u_i||·||v_i|| converge to one value during dropout training",
        compute_fc_equalization,
        plot_fc_equalization,
        checks={
            "keep width train_seed task_seed hyperparameters steps": EXACT,
            # from the SVD of a 12×12 map and sums over its singular values
            "equalized_product optimal_loss": closed_form(size=_SVD_TERMS),
            "products rel_error_to_optimum loss": trajectory(TRAINING_RTOL),
        },
        references=(
            "srivastava2014dropout",
            "mianjy2018implicit, Thm 2.4",
            "mianjy2018implicit, Thm 2.5",
            "cavazza2018dropout, Sec. 5",
        ),
    )
)
register(
    FigureSpec(
        "fc_spectrum",
        "(b) singular values: dropout-trained map vs closed form (3) vs cvxpy, several keep",
        compute_fc_spectrum,
        plot_fc_spectrum,
        sweeps=True,
        solves=True,
        checks={
            "width task_seed hyperparameters panels/*/keep panels/*/train_seed": EXACT,
            "panels/*/target": closed_form(size=_SVD_TERMS),
            # (3) zeroes the small singular values; the SVD returns them as rounding
            # noise, ~1e-16 σ₁, so they are compared relative to the largest.
            "panels/*/closed_form": closed_form(size=_SVD_TERMS, scale="field"),
            "panels/*/cvxpy": solve(),
            # ‖cvxpy − (3)‖/‖(3)‖ is itself a relative error of the solve (~1e-11)
            "panels/*/rel_gap_cvxpy": solve(scale=1.0),
            "panels/*/certified_gap": CERTIFIED,
            "panels/*/trained": trajectory(TRAINING_RTOL, scale="field"),
            "panels/*/rel_gap_trained": trajectory(TRAINING_RTOL, scale=1.0),
        },
        references=(
            "srivastava2014dropout",
            "mianjy2018implicit, Thm 2.5",
            "cavazza2018dropout, Thm 3",
        ),
    )
)
