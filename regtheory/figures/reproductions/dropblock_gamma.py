r"""Reproduction (r) ``dropblock_gamma``: DropBlock's γ against the drop rate it realises.

DropBlock (Ghiasi, Lin & Le, NeurIPS 2018) samples block starts i.i.d. Bernoulli(γ) on
the :math:`(w - b + 1)^2` positions where a b × b block fits in a w × w map and drops
every unit a sampled block covers. The authors' code (``tensorflow/tpu``,
``models/official/resnet/resnet_model.py``, function ``dropblock``) sets

.. math:: \gamma_0 = \frac{1 - \text{keep\_prob}}{b^2}\,\frac{w^2}{(w - b + 1)^2}

so that the expected number of units dropped, counted as :math:`b^2` per block, is a
fraction 1 − keep_prob of the map; torchvision's ``drop_block2d`` uses the same γ₀.
Blocks overlap, and units near the border are covered by fewer starts, so a unit is
dropped with probability :math:`1 - (1 - \gamma_0)^{c(p)}` where c(p) counts the starts
covering it (:class:`regtheory.masks.DropBlock`). The figure sets the realised drop
rate, the mean of that over the map, against 1 − keep_prob on a grid of map sizes 7,
14, 28 and 56 (ResNet-50's stages at 224 × 224, our choice), block sizes 1 to 7 (7 is
the default of the authors' configuration) and keep_prob 0.75 to 0.95. Two ways:

* exactly, from the counts c(p) (:func:`regtheory._dropblock.block_starts`);
* by sampling block starts at γ₀ and covering their blocks, written here apart from the
  package's sampler (prefix sums over the map), as a z-score.

Beside it, the package's γ (:meth:`regtheory.masks.DropBlock.gamma`, the root of
mean(1 − γ)^c(p) = keep) and the kept fraction of masks drawn with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import masks
from ..._dropblock import block_starts
from .._check import EXACT, closed_form, monte_carlo, rounding, spread
from .._registry import FigureSpec, register
from ._claims import claim, draw_claims, verdict

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["compute_dropblock_gamma", "paper_gamma", "plot_dropblock_gamma", "realised_drop"]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


PAPER = "ghiasi2018dropblock"
WHERE = "the authors' code (tensorflow/tpu, resnet_model.py, dropblock()); equation number not read"
THEIRS = "γ = (1 − keep_prob)/b² · w²/(w − b + 1)²"
# An identity of expectations holds to rounding; the realised rates differ by percents.
EXACT_RTOL = 1e-9


def paper_gamma(keep: float, block: int, size: int) -> float:
    """γ₀ of the authors' code for a ``size`` × ``size`` map and ``block`` × ``block`` blocks."""
    return (1 - keep) / block**2 * size**2 / (size - block + 1) ** 2


def _covers(size: int, block: int) -> np.ndarray:
    lo, hi = block_starts(size, block)
    per_axis = hi - lo + 1
    return np.multiply.outer(per_axis, per_axis)


def realised_drop(gamma: float, block: int, size: int) -> float:
    """Expected fraction of a map dropped when every start fires with probability ``gamma``."""
    return float(1 - np.mean((1 - gamma) ** _covers(size, block)))


def _sampled_drop(gamma, block, size, n_draws, rng) -> tuple[float, float]:
    """Mean and standard error of the dropped fraction of sampled maps (prefix sums)."""
    valid = size - block + 1
    starts = np.zeros((n_draws, size + 1, size + 1))
    starts[:, 1 : valid + 1, 1 : valid + 1] = rng.random((n_draws, valid, valid)) < gamma
    total = starts.cumsum(axis=1).cumsum(axis=2)  # total[i, j] = starts in [0, i) × [0, j)
    hi = np.arange(1, size + 1)  # unit p is covered by the starts in (p - b, p]
    lo = np.maximum(hi - block, 0)
    ix = np.ix_(np.arange(n_draws), hi, hi)
    covering = (
        total[ix]
        - total[np.ix_(np.arange(n_draws), lo, hi)]
        - total[np.ix_(np.arange(n_draws), hi, lo)]
        + total[np.ix_(np.arange(n_draws), lo, lo)]
    )
    dropped = (covering > 0).mean(axis=(1, 2))
    return float(dropped.mean()), float(dropped.std(ddof=1) / np.sqrt(n_draws))


def _cell(keep: float, block: int, size: int, n_draws: int, rng) -> dict:
    gamma0 = paper_gamma(keep, block, size)
    mc, se = _sampled_drop(gamma0, block, size, n_draws, rng)  # vectorised over the draws
    exact = masks.DropBlock(keep, block)
    kept = exact.sample((1, size, size), n_draws, rng).reshape(n_draws, -1) > 0
    fraction = kept.mean(axis=1)
    return {
        "keep": keep,
        "block": block,
        "size": size,
        "draws": n_draws,
        "paper_gamma": gamma0,
        "realised_drop": realised_drop(gamma0, block, size),
        "sampled_drop": mc,
        "sampled_stderr": se,
        "exact_gamma": exact.gamma((size, size)),
        "exact_kept": float(fraction.mean()),
        "exact_kept_stderr": float(fraction.std(ddof=1) / np.sqrt(n_draws)),
    }


def _claims(cells: list[dict]) -> list[dict]:
    ratio = [(c["realised_drop"] / (1 - c["keep"]), c) for c in cells]
    ends = [abs(r - 1) for r, c in ratio if c["block"] in (1, c["size"])]
    inner = [r for r, c in ratio if 1 < c["block"] < c["size"]]
    worst_end, low, high = max(ends), min(inner), max(inner)
    return [
        claim(
            paper=PAPER,
            claim="With single units (b = 1) or a block as large as the map, γ drops a "
            "fraction 1 − keep_prob of the map in expectation.",
            theirs=THEIRS,
            where=WHERE,
            ours=worst_end,
            measure="largest relative difference of the expected drop rate from "
            "1 − keep_prob at b = 1 and b = w",
            verdict=verdict(worst_end <= EXACT_RTOL),
            reason=f"exact there: no two blocks overlap (test: ≤ {EXACT_RTOL:g}).",
        ),
        claim(
            paper=PAPER,
            claim="For blocks between, γ drops a fraction 1 − keep_prob of the map in expectation.",
            theirs=THEIRS,
            where=WHERE,
            ours=low,
            measure="smallest ratio of the expected drop rate to 1 − keep_prob over the "
            "grid, 1 < b < w",
            verdict=verdict(abs(low - 1) <= EXACT_RTOL and abs(high - 1) <= EXACT_RTOL),
            reason=f"blocks overlap, so fewer units drop than counted: {low:.2f} to "
            f"{high:.2f} of 1 − keep_prob on this grid (test: within {EXACT_RTOL:g}).",
        ),
    ]


def compute_dropblock_gamma(quick: bool, seed: int) -> dict:
    """Data of reproduction (r) ``dropblock_gamma``: intended against realised drop rates.

    Parameters
    ----------
    quick : bool
        The quick mode: keep_prob 0.9, maps 7 and 14, fewer draws.
    seed : int
        Seed of the sampled maps.

    Returns
    -------
    dict
        One cell per (keep_prob, block size, map size) with γ₀, the realised drop rate
        exactly and by sampling, the package's γ and the kept fraction of its masks; and
        the claims.
    """
    keeps = [0.9] if quick else [0.95, 0.9, 0.75]
    sizes = [7, 14] if quick else [7, 14, 28, 56]
    blocks = [1, 3, 7] if quick else [1, 3, 5, 7]
    # the same number of sampled units for every map size: more draws of the small maps
    units = 1000 * max(sizes) ** 2
    rng = np.random.default_rng(seed)
    cells = [
        _cell(keep, block, size, units // size**2, rng)
        for keep in keeps
        for size in sizes
        for block in blocks
        if block <= size
    ]
    return {"keeps": keeps, "sizes": sizes, "blocks": blocks, "sampled_units": units,
            "cells": cells, "claims": _claims(cells)}  # fmt: skip


def plot_dropblock_gamma(data: dict) -> Figure:
    """Draw reproduction (r) from the data of :func:`compute_dropblock_gamma`."""
    from matplotlib.figure import Figure

    keeps = data["keeps"]
    fig = Figure(figsize=(3.4 * (len(keeps) + 1), 3.5), layout="constrained")
    axes = fig.subplots(1, len(keeps) + 1)
    for ax, keep in zip(axes, keeps):
        for i, size in enumerate(data["sizes"]):
            cells = [c for c in data["cells"] if c["keep"] == keep and c["size"] == size]
            b = [c["block"] for c in cells]
            ax.plot(b, [c["realised_drop"] / (1 - keep) for c in cells], "-", color=f"C{i}",
                    label=f"map {size}×{size}")  # fmt: skip
            ax.errorbar(b, [c["sampled_drop"] / (1 - keep) for c in cells],
                        [2 * c["sampled_stderr"] / (1 - keep) for c in cells],
                        fmt="o", mfc="none", color=f"C{i}", ms=4)  # fmt: skip
        ax.axhline(1, color="k", lw=0.8, ls="--")
        ax.set(xlabel="block size b", ylabel="realised / intended drop rate")
        ax.set_title(f"keep_prob = {keep}", fontsize=10)
    axes[0].legend(fontsize=7, title="exact (line), sampled ±2 se", title_fontsize=7)
    ax = axes[-1]
    for i, size in enumerate(data["sizes"]):
        cells = [c for c in data["cells"] if c["keep"] == keeps[0] and c["size"] == size]
        ax.plot([c["block"] for c in cells], [c["exact_gamma"] / c["paper_gamma"] for c in cells],
                "s-", color=f"C{i}", ms=4)  # fmt: skip
    ax.set(xlabel="block size b", ylabel="γ with mean kept = keep_prob, over γ₀")
    ax.set_title(f"exact γ over γ₀, keep_prob {keeps[0]}", fontsize=10)
    fig.suptitle("(r) DropBlock: γ₀ of the authors' code drops fewer units than 1 − keep_prob")
    return draw_claims(fig, data["claims"])


register(
    FigureSpec(
        "dropblock_gamma",
        "(r) DropBlock's γ (Ghiasi et al.): the drop rate it realises against 1 − keep_prob, "
        "over block and map sizes — exact counts and sampled maps",
        compute_dropblock_gamma,
        plot_dropblock_gamma,
        checks={
            "keeps sizes blocks sampled_units cells/*/keep cells/*/block cells/*/size "
            "cells/*/draws": EXACT,
            "claims/*/paper claims/*/claim claims/*/theirs claims/*/where claims/*/measure "
            "claims/*/verdict claims/*/reason": EXACT,
            # powers (1 - γ)^c, c ≤ 49, averaged over at most 56² units; the root of a
            # monotone equation
            "cells/*/paper_gamma cells/*/realised_drop claims/1/ours": closed_form(size=1e4),
            "cells/*/exact_gamma": closed_form(size=1e4, condition=1e3),
            "claims/0/ours": closed_form(size=1e4, scale=1.0),
            "cells/*/sampled_drop": monte_carlo("sampled_stderr", same_draws=rounding(1e4)),
            "cells/*/exact_kept": monte_carlo("exact_kept_stderr", same_draws=rounding(1e4)),
            "cells/*/sampled_stderr cells/*/exact_kept_stderr": spread(
                0.3, same_draws=rounding(1e4)
            ),
        },
        references=(PAPER,),
    )
)
