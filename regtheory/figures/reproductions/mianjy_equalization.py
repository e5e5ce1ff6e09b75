r"""(s) ``mianjy_equalization`` -- Mianjy, Arora & Vidal (ICML 2018), Section 6, reproduced.

The paper's claims: dropout trained by SGD reaches the global optimum of the dropout
objective, and the trained network is equalized (every hidden unit carries the same
product :math:`\|u_k\|\,\|v_k\|`). This figure trains a linear layer of width w,
:math:`f(x) = U\operatorname{diag}(r/\theta)V^\top x`, with real dropout masks
(:func:`regtheory.training.train_fc`) and compares the result with the closed form
(3) (:func:`regtheory.fc.global_optimum`).

Setup read from the paper (only through a third party's quotation of its Section 6;
no copy of the paper itself could be read, nor its Figure 3): inputs
:math:`x \in \mathbb{R}^{80}` standard normal, targets :math:`y = Mx` with
:math:`M \in \mathbb{R}^{120\times 80}` whose left and right singular subspaces are
uniformly random and whose spectrum decays exponentially.

Chosen here, because the paper's values were not read: the spectrum
:math:`\sigma_i = 0.8^{\,i}` (i = 0, ..., 79); the singular vectors as Haar-random
orthogonal matrices (QR of a Gaussian, signs fixed by R's diagonal); the keeps 0.5 and
0.9; the widths 10 and 20; 200 input samples, whitened so that their second moment is
exactly I (:func:`regtheory.data.white_inputs`: the objective depends on the inputs only
through E[xxᵀ], so SGD on these rows is unbiased SGD on the population objective);
full-batch steps (a fresh mask per sample per step), step 0.1 decaying as
0.1/(1 + t/1000), initial weights N(0, 0.1²), 60,000 steps (quick mode: 8,000 steps,
width 10 only). On one core the full figure takes about 30 s.

The gap is measured on the population objective, exactly (no sampling):
:math:`\|M - UV^\top\|_F^2 + \lambda\sum_k\|u_k\|^2\|v_k\|^2` (inputs white), relative to
its minimum :math:`\|M - M^*\|_F^2 + \frac{\lambda}{w}\|M^*\|_*^2`. The spread of the
unit products is max/min − 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import training
from ...data import white_inputs
from ...sweep import Sweep
from .._check import EXACT, TRAINING_RTOL, closed_form, trajectory
from .._registry import FigureSpec, register
from . import _fc_runs
from ._claims import NOT_READ, claim, draw_claims, verdict

if TYPE_CHECKING:  # matplotlib is imported where the figure is drawn
    from matplotlib.figure import Figure

__all__ = ["compute_mianjy_equalization", "plot_mianjy_equalization"]

PAPER = "mianjy2018implicit"
D_IN, D_OUT, DECAY, N_SAMPLES = 80, 120, 0.8, 200
KEEPS, WIDTHS = (0.5, 0.9), (10, 20)
# The claims' tests, far from what the runs give (full mode: gaps ≤ 1e-3, spreads ≤ 3 %;
# quick mode: gaps ≤ 2e-3, spreads ≤ 4 %).
GAP_BOUND = 3e-2  # relative gap of the objective to its minimum
# the spread must fall by this factor from the initialisation, and end below the bound


def _schedule(quick: bool) -> dict:
    """The SGD settings of every run (``quick``: fewer steps)."""
    return {"steps": 8000 if quick else 60_000, "lr": 0.1, "lr_decay": 1000.0, "init_scale": 0.1}


def _task(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inputs X (white), the targets Y = X Mᵀ and the map M.

    Parameters
    ----------
    seed : int
        Seed of M's singular vectors, then of the inputs.

    Returns
    -------
    X, Y, M : ndarrays (N_SAMPLES, D_IN), (N_SAMPLES, D_OUT), (D_OUT, D_IN)
    """
    rng = np.random.default_rng(seed)
    left, right = _fc_runs.haar(rng, D_OUT, D_IN), _fc_runs.haar(rng, D_IN, D_IN)
    M = (left * DECAY ** np.arange(D_IN)) @ right.T
    X = white_inputs(N_SAMPLES, D_IN, rng=rng)
    return X, X @ M.T, M


def _run(X, Y, M, keep: float, width: int, train_seed: int, quick: bool) -> dict:
    """Train one layer and measure it against the closed form.

    Parameters
    ----------
    X, Y, M : ndarray
        The task of :func:`_task`.
    keep : float
        Retain probability.
    width : int
        Hidden units.
    train_seed : int
        Seed of the initialisation and the masks.
    quick : bool
        The quick mode's schedule.

    Returns
    -------
    dict
        The run's settings, its gap history and its units' products.
    """
    res = training.train_fc(X, Y, keep, width, rng=train_seed, **_schedule(quick))
    M_star, best = _fc_runs.optimum(M, keep, width)
    final = _fc_runs.population_objective(M, res.U, res.V, keep)
    return {
        "keep": keep,
        "width": width,
        "train_seed": train_seed,
        "rank_optimum": int(np.linalg.matrix_rank(M_star)),
        "optimal_value": best,
        "equalized_product": float(np.linalg.svd(M_star, compute_uv=False).sum() / width),
        "record_steps": res.steps,
        "gap": (res.loss - best) / best,
        "final_gap": (final - best) / best,
        "products_start": res.products[0],
        "products_end": res.products[-1],
        "spread_start": float(_fc_runs.spread(res.products[0])),
        "spread_end": float(_fc_runs.spread(res.products[-1])),
    }


def _claims(runs: list[dict]) -> list[dict]:
    """The two claims and their verdicts from the ``runs`` of :func:`_run`.

    Parameters
    ----------
    runs : list of dict
        One entry per (keep, width).

    Returns
    -------
    list of dict
        The records of :func:`._claims.claim`.
    """
    gap = max(r["final_gap"] for r in runs)
    chosen = "spectrum 0.8^i, keeps 0.5/0.9, widths 10/20, steps and rates chosen here"
    return [
        claim(
            paper=PAPER,
            claim="dropout SGD converges to the global optimum of the dropout objective",
            theirs=NOT_READ,
            where=NOT_READ,
            ours=gap,
            measure="largest relative gap of the population objective to its minimum",
            verdict=verdict(gap <= GAP_BOUND, in_shape=True),
            reason=f"every run ends within {gap:.1e} of the closed form (test: ≤ {GAP_BOUND:g}); "
            f"the paper's numbers were not read, {chosen}",
        ),
        _fc_runs.equalization_claim(
            PAPER,
            runs,
            statement="the network dropout trains is equalized: all units' products are equal",
            measure="largest spread max/min − 1 of the unit products at the end",
        ),
    ]


def _cell(cell: dict) -> dict:
    """One run of the figure's sweep: :func:`_run` on the cell's task, keep, width and seed."""
    X, Y, M = cell["task"]
    return _run(X, Y, M, cell["keep"], cell["width"], cell["train_seed"], cell["quick"])


def compute_mianjy_equalization(quick: bool, seed: int, sweep: Sweep | None = None) -> dict:
    """Data of figure (s) ``mianjy_equalization``: dropout SGD vs the closed-form optimum.

    Parameters
    ----------
    quick : bool
        The quick mode: 8,000 steps instead of 60,000, width 10 only.
    seed : int
        Seed of the task (map and inputs); the runs use seed + 1, seed + 2, ...
    sweep : regtheory.sweep.Sweep, optional
        Runs the trainings (``None``: serially); the data do not depend on it.

    Returns
    -------
    dict
        The settings, one entry per (keep, width) run and the claims.
    """
    task = _task(seed)
    pairs = [(keep, width) for keep in KEEPS for width in (WIDTHS[:1] if quick else WIDTHS)]
    cells = [
        {"task": task, "keep": k, "width": w, "train_seed": seed + 1 + i, "quick": quick}
        for i, (k, w) in enumerate(pairs)
    ]
    runs = (sweep or Sweep()).map(_cell, cells)
    return {
        "d_in": D_IN,
        "d_out": D_OUT,
        "spectrum_decay": DECAY,
        "n_samples": N_SAMPLES,
        "task_seed": seed,
        "schedule": _schedule(quick),
        "runs": runs,
        "claims": _claims(runs),
    }


def plot_mianjy_equalization(data: dict) -> Figure:
    """Draw figure (s) from the data of :func:`compute_mianjy_equalization`.

    Parameters
    ----------
    data : dict
        What :func:`compute_mianjy_equalization` returns.

    Returns
    -------
    matplotlib.figure.Figure
        Left: the objective's gap to its minimum along training; right: the unit
        products at initialisation and at the end, over the equalized value.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    labels = [f"keep {run['keep']}, width {run['width']}" for run in data["runs"]]
    _fc_runs.draw_gaps(ax1, data["runs"], labels, title="gap to the closed-form optimum (3)")
    _fc_runs.draw_products(ax2, data["runs"], labels, xlabel="hidden unit (sorted by product)")
    fig.suptitle(
        f"(s) Mianjy et al. 2018 §6: y = Mx, M {data['d_out']}×{data['d_in']}, "
        f"σ_i = {data['spectrum_decay']}^i, dropout SGD"
    )
    return draw_claims(fig, data["claims"])


# The closed form: an SVD of the 120×80 map and sums over its 80 singular values.
_SVD_TERMS = D_OUT * D_IN * D_IN

register(
    FigureSpec(
        "mianjy_equalization",
        "(s) Mianjy et al. 2018: dropout SGD reaches the closed-form optimum, units equalize",
        compute_mianjy_equalization,
        plot_mianjy_equalization,
        sweeps=True,
        checks={
            "d_in d_out spectrum_decay n_samples task_seed schedule": EXACT,
            "runs/*/keep runs/*/width runs/*/train_seed runs/*/rank_optimum": EXACT,
            "runs/*/record_steps": EXACT,
            "runs/*/optimal_value runs/*/equalized_product": closed_form(size=_SVD_TERMS),
            "runs/*/gap runs/*/final_gap": trajectory(TRAINING_RTOL, scale=1.0),
            "runs/*/products_start": closed_form(size=D_OUT),
            "runs/*/products_end runs/*/spread_end": trajectory(TRAINING_RTOL),
            "runs/*/spread_start": closed_form(size=D_OUT),
            "claims/*/paper claims/*/claim claims/*/theirs claims/*/where": EXACT,
            "claims/*/measure claims/*/verdict claims/*/reason": EXACT,
            "claims/0/ours": trajectory(TRAINING_RTOL, scale=1.0),
            "claims/1/ours": trajectory(TRAINING_RTOL),
        },
        references=("mianjy2018implicit, Sec. 6",),  # its theorems' numbers were not read
    )
)
