"""What the two FC reproductions share: the population objective and its gap to formula (3).

With white inputs (E[xxᵀ] = I) and targets y = Tx, the dropout objective of a width-w
layer is exact in the factors, no sampling:
``‖T − UVᵀ‖_F² + λ Σ_i ‖u_i‖² ‖v_i‖²`` (:func:`regtheory.fc.dropout_penalty`); its
global optimum is the map of :func:`regtheory.fc.global_optimum`, where the penalty is
the induced regularizer (:func:`regtheory.fc.induced_regularizer`). Figures (s) and (t)
train with :func:`regtheory.training.train_fc` and measure the trained factors with these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import fc
from ._claims import NOT_READ, claim, verdict

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "draw_gaps",
    "draw_products",
    "equalization_claim",
    "haar",
    "optimum",
    "population_objective",
    "spread",
]

# The equalization test: the spread of the products falls 2-fold and ends below 20 %.
SPREAD_FACTOR, SPREAD_BOUND = 2.0, 0.2


def population_objective(T: np.ndarray, U: np.ndarray, V: np.ndarray, keep: float) -> float:
    """The dropout objective of the factors (U, V) for targets y = Tx, x white.

    Parameters
    ----------
    T : ndarray (d_out, d_in)
        The target map (for a matrix factorization: the matrix).
    U : ndarray (d_out, w)
        Output weights.
    V : ndarray (d_in, w)
        Input weights.
    keep : float
        Retain probability.

    Returns
    -------
    float
        ``‖T − UVᵀ‖_F² + λ Σ_i ‖u_i‖²‖v_i‖²``, λ = (1 − keep)/keep.
    """
    fit = float(np.sum((T - U @ V.T) ** 2))
    return fit + float(fc.dropout_penalty(U, V, keep))


def optimum(T: np.ndarray, keep: float, width: int) -> tuple[np.ndarray, float]:
    """The closed-form optimal map (3) and the dropout objective's minimum.

    Parameters
    ----------
    T : ndarray (d_out, d_in)
        The target map.
    keep : float
        Retain probability.
    width : int
        Hidden units w.

    Returns
    -------
    M : ndarray (d_out, d_in)
        The optimal end-to-end map.
    value : float
        ``‖T − M‖_F² + (λ/w)‖M‖_*²``, the objective at an equalized factorization of M.
    """
    M = fc.global_optimum(T, keep, width)
    return M, float(np.sum((T - M) ** 2)) + float(fc.induced_regularizer(M, keep, width))


def spread(products: np.ndarray) -> np.ndarray:
    """How far the units' products are from equal: max/min − 1 over the last axis.

    Parameters
    ----------
    products : ndarray (..., w)
        Per-unit products ‖u_i‖‖v_i‖ (positive).

    Returns
    -------
    ndarray (...)
        0 when all products are equal.
    """
    products = np.asarray(products)
    return products.max(axis=-1) / products.min(axis=-1) - 1.0


def haar(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Haar-random: k orthonormal columns in R^n (QR of a Gaussian, signs fixed).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the Gaussian matrix.
    n, k : int
        Rows and columns, k ≤ n.

    Returns
    -------
    ndarray (n, k)
        Orthonormal columns.
    """
    Q, R = np.linalg.qr(rng.standard_normal((n, k)))
    return Q * np.sign(np.diag(R))


def equalization_claim(paper: str, runs: list[dict], *, statement: str, measure: str) -> dict:
    """The claim that training equalizes the units, from the runs' start and end spreads.

    Parameters
    ----------
    paper : str
        Bibliography key of the paper.
    runs : list of dict
        The runs, each with ``spread_start`` and ``spread_end`` (max/min − 1).
    statement : str
        The claim, in the figure's words.
    measure : str
        What the largest end spread is the spread of.

    Returns
    -------
    dict
        A :func:`claim`, in shape (the paper's numbers were not read).
    """
    ratio = min(r["spread_start"] / r["spread_end"] for r in runs)
    end = max(r["spread_end"] for r in runs)
    return claim(
        paper=paper,
        claim=statement,
        theirs=NOT_READ,
        where=NOT_READ,
        ours=end,
        measure=measure,
        verdict=verdict(ratio >= SPREAD_FACTOR and end <= SPREAD_BOUND, in_shape=True),
        reason=f"the spread falls at least {ratio:.0f}-fold from initialisation, to at most "
        f"{end:.1%} (test: {SPREAD_FACTOR:g}-fold, to ≤ {SPREAD_BOUND:.0%}); the paper's "
        "numbers were not read",
    )


def draw_gaps(ax: Axes, runs: list[dict], labels: list[str], *, title: str) -> None:
    """Draw each run's relative gap to the minimum along training, on log-log axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    runs : list of dict
        The runs, each with ``record_steps`` and ``gap`` (the first, step 0, is skipped).
    labels : list of str
        One legend label per run.
    title : str
        The panel's title.
    """
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        steps = np.asarray(run["record_steps"])[1:]
        ax.loglog(steps, np.asarray(run["gap"])[1:], color=f"C{i}", label=label)
    ax.set_xlabel("SGD step")
    ax.set_ylabel("(objective − minimum) / minimum")
    ax.set_title(title)
    ax.legend(fontsize=8)


def draw_products(ax: Axes, runs: list[dict], labels: list[str], *, xlabel: str) -> None:
    """Draw each run's unit products, sorted, at initialisation (open) and at the end (filled).

    The products are over the equalized value ‖M*‖_*/w, so equal units sit on the
    dashed line at 1. The runs are offset a little along x so that they stay apart.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    runs : list of dict
        The runs, each with ``products_start``, ``products_end`` and ``equalized_product``.
    labels : list of str
        One legend label per run.
    xlabel : str
        What the units are (hidden units, or columns of the factors).
    """
    offset = 0.15 * (np.arange(len(runs)) - (len(runs) - 1) / 2)
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        units = np.arange(1, len(run["products_end"]) + 1) + offset[i]
        for key, fill in (("products_start", "none"), ("products_end", f"C{i}")):
            ax.plot(
                units,
                np.sort(run[key]) / run["equalized_product"],
                "o",
                mfc=fill,
                color=f"C{i}",
                ms=3,
                label=label if key == "products_end" else None,
            )
    ax.set_yscale("log")
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"$\|u_i\|\,\|v_i\|$ / $(\|M^*\|_*/w)$")
    ax.set_title("unit products: initialisation (open) vs end (filled)")
    ax.legend(fontsize=8)
