r"""Reproduction (q) ``srivastava_ridge``: dropout on the inputs of linear regression is a ridge.

Srivastava et al. (JMLR 2014, §9.1) drop each input of a linear model independently,
keeping it with probability p, without rescaling (``R ∘ X``, :math:`R_{ij}` ~
Bernoulli(p)), and state that the expected squared error is a ridge with a
data-dependent Tikhonov matrix:

.. math::

    \mathbb E_R \|y - (R \circ X) w\|^2 = \|y - pXw\|^2 + p(1-p)\|\Gamma w\|^2,
    \qquad \Gamma = \operatorname{diag}(X^\top X)^{1/2},

so that with :math:`\tilde w = p w` the minimiser is the ridge solution
:math:`\tilde w = (X^\top X + \lambda \Gamma^2)^{-1} X^\top y`, λ = (1 − p)/p: the
package's λ at keep = p, and :math:`\tilde w` is the weight of inverted dropout.

The figure checks the identity three ways on a design whose columns have scales from
0.2 to 5 and are correlated (so Γ is far from a multiple of the identity):

* the expectation summed exactly over all :math:`2^d` masks of a row (d = 8), at
  random w, against the formula;
* the same by Monte Carlo over masks drawn as dropout draws them
  (:class:`regtheory.masks.Bernoulli`), as a z-score;
* the minimiser of the exact dropout objective, solved by cvxpy over all masks
  (:func:`regtheory.glm.solve_dropout`, Gaussian family, no intercept), against the
  ridge formula; beside it the ridge of the same mean weight with Γ replaced by a
  multiple of the identity, which is what the data dependence changes.

The design is synthetic (the section's statement is an identity; any design tests it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import glm, masks
from .._check import EXACT, closed_form, monte_carlo, rounding, solve, spread
from .._registry import FigureSpec, register
from ._claims import claim, draw_claims, verdict

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["compute_srivastava_ridge", "design", "plot_srivastava_ridge"]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


N_SAMPLES, N_FEATURES, N_WEIGHTS = 120, 8, 5
# The identity holds to rounding: a sum of 2^8 · 120 squares, relative to their size.
IDENTITY_RTOL = 1e-10
# cvxpy's exact solve is accurate to about 1e-8 relative; the formula is exact.
MINIMISER_RTOL = 1e-5
# Monte Carlo: |z| above this over a handful of keeps has probability below 1e-3.
MAX_Z = 4.0
# The section's formula was read in two secondary renderings that agree, not on its page.
WHERE = "§9.1, as two secondary renderings that agree give it; its page not read"


def design(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The regression data: correlated columns of scales 0.2 to 5, a noisy linear response.

    Parameters
    ----------
    seed : int
        Seed of the draws.

    Returns
    -------
    X : array (120, 8)
        Inputs, columns centred.
    y : array (120,)
        Responses, centred.
    """
    rng = np.random.default_rng(seed)
    lags = np.abs(np.subtract.outer(np.arange(N_FEATURES), np.arange(N_FEATURES)))
    chol = np.linalg.cholesky(0.6**lags)
    scales = np.geomspace(0.2, 5.0, N_FEATURES)
    X = (rng.standard_normal((N_SAMPLES, N_FEATURES)) @ chol.T) * scales
    X -= X.mean(axis=0)
    y = X @ (rng.standard_normal(N_FEATURES) / scales) + rng.standard_normal(N_SAMPLES)
    return X, y - y.mean()


def _closed_form(X: np.ndarray, y: np.ndarray, w: np.ndarray, p: float) -> np.ndarray:
    """The section's formula at each row of ``w``."""
    gamma2 = np.sum(X * X, axis=0)
    fit = np.sum((y[:, None] - p * X @ w.T) ** 2, axis=0)
    return fit + p * (1 - p) * (w * w) @ gamma2


def _enumerated(X: np.ndarray, y: np.ndarray, w: np.ndarray, p: float) -> np.ndarray:
    """The expectation as the sum over all 2^d masks of a row, weighted by their probability."""
    d = X.shape[1]
    patterns = (np.arange(2**d)[:, None] >> np.arange(d)) & 1  # (2^d, d)
    kept = patterns.sum(axis=1)
    prob = p**kept * (1 - p) ** (d - kept)
    out = np.empty(len(w))
    for k, wk in enumerate(w):  # a handful of weight vectors; the masks are vectorised
        pred = (X * wk) @ patterns.T  # (n, 2^d)
        out[k] = np.sum(prob * np.sum((y[:, None] - pred) ** 2, axis=0))
    return out


def _monte_carlo(X, y, w, p, n_draws, rng) -> tuple[float, float]:
    """Mean and standard error of ||y - (R∘X)w||² over masks drawn as dropout draws them."""
    kept = masks.Bernoulli(p).sample(X.shape, n_draws, rng) * p  # r/p scaled back to r
    values = np.sum((y - np.einsum("mij,j->mi", kept * X, w)) ** 2, axis=1)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(n_draws))


def _ridge(X: np.ndarray, y: np.ndarray, lam: float, gamma2: np.ndarray) -> np.ndarray:
    return np.linalg.solve(X.T @ X + lam * np.diag(gamma2), X.T @ y)


def _per_keep(X, y, p: float, n_draws: int, rng: np.random.Generator) -> dict:
    w = rng.standard_normal((N_WEIGHTS, X.shape[1])) / np.sqrt(np.sum(X * X, axis=0) / len(X))
    formula, exact = _closed_form(X, y, w, p), _enumerated(X, y, w, p)
    mc_mean, mc_se = _monte_carlo(X, y, w[0], p, n_draws, rng)
    lam, gamma2 = (1 - p) / p, np.sum(X * X, axis=0)
    ridge = _ridge(X, y, lam, gamma2)
    solved = glm.solve_dropout(X, y, p, family="gaussian", method="exact", intercept=False)
    return {
        "keep": p,
        "formula": formula,
        "enumerated": exact,
        "identity_gap": float(np.max(np.abs(exact - formula) / formula)),
        "mc_mean": mc_mean,
        "mc_stderr": mc_se,
        "mc_z": (mc_mean - formula[0]) / mc_se,
        "ridge": ridge,
        "solved": solved.beta,
        "minimiser_gap": float(np.linalg.norm(solved.beta - ridge) / np.linalg.norm(ridge)),
        "isotropic_ridge": _ridge(X, y, lam, np.full_like(gamma2, gamma2.mean())),
    }


def _claims(rows: list[dict], keeps: list[float]) -> list[dict]:
    paper = "srivastava2014dropout"
    identity = max(r["identity_gap"] for r in rows)
    minimiser = max(r["minimiser_gap"] for r in rows)
    z = max(abs(r["mc_z"]) for r in rows)
    n = f"{len(keeps)} keeps from {min(keeps)} to {max(keeps)}"
    return [
        claim(
            paper=paper,
            claim="Under input dropout with keep p, the expected squared error equals "
            "||y - pXw||² + p(1-p)||Γw||², Γ = diag(XᵀX)^½.",
            theirs="||y - pXw||² + p(1-p)||Γw||², Γ = diag(XᵀX)^½",
            where=WHERE,
            ours=identity,
            measure=f"largest relative difference of the exact sum over all 2^{N_FEATURES} "
            f"masks of a row, {N_WEIGHTS} random w at each of {n}",
            verdict=verdict(identity <= IDENTITY_RTOL),
            reason=f"agrees to rounding (test: ≤ {IDENTITY_RTOL:g}).",
        ),
        claim(
            paper=paper,
            claim="The dropout solution is ridge regression at w̃ = pw with weight "
            "λ = (1-p)/p and Tikhonov matrix Γ.",
            theirs="w̃ = (XᵀX + λΓ²)⁻¹Xᵀy, λ = (1-p)/p",
            where=WHERE,
            ours=minimiser,
            measure="largest relative distance between cvxpy's minimiser of the exact dropout "
            f"objective and the ridge formula, over {n}",
            verdict=verdict(minimiser <= MINIMISER_RTOL),
            reason=f"agrees to the solver's accuracy (test: ≤ {MINIMISER_RTOL:g}).",
        ),
        claim(
            paper=paper,
            claim="The identity holds for masks drawn at random as dropout draws them.",
            theirs="||y - pXw||² + p(1-p)||Γw||², Γ = diag(XᵀX)^½",
            where=WHERE,
            ours=z,
            measure=f"largest |z| of a Monte Carlo mean against the formula over {n}",
            verdict=verdict(z <= MAX_Z),
            reason=f"within Monte Carlo error (test: |z| ≤ {MAX_Z:g}).",
        ),
    ]


def compute_srivastava_ridge(quick: bool, seed: int) -> dict:
    """Data of reproduction (q) ``srivastava_ridge``: the §9.1 identity, three ways.

    Parameters
    ----------
    quick : bool
        The quick mode: two keeps and fewer Monte Carlo draws.
    seed : int
        Seed of the design, the random weights and the masks.

    Returns
    -------
    dict
        Per keep: the formula and the exact sum at random w, the Monte Carlo estimate,
        the ridge and cvxpy minimisers and the isotropic ridge; and the claims.
    """
    keeps = [0.3, 0.7] if quick else [0.2, 0.35, 0.5, 0.65, 0.8, 0.95]
    n_draws = 1000 if quick else 5000
    X, y = design(seed)
    rng = np.random.default_rng(seed + 1)
    rows = [_per_keep(X, y, p, n_draws, rng) for p in keeps]
    return {
        "n_samples": N_SAMPLES,
        "n_features": N_FEATURES,
        "n_draws": n_draws,
        "design_seed": seed,
        "draw_seed": seed + 1,
        "gamma": np.sqrt(np.sum(X * X, axis=0)),
        "per_keep": rows,
        "claims": _claims(rows, keeps),
    }


def plot_srivastava_ridge(data: dict) -> Figure:
    """Draw reproduction (q) from the data of :func:`compute_srivastava_ridge`."""
    from matplotlib.figure import Figure

    rows = data["per_keep"]
    keeps = np.array([r["keep"] for r in rows])
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax_path, ax_gap, ax_z = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.3, 1, 0.8]})
    # each coefficient times its column's norm: comparable across columns of scales 0.2 to 5
    gamma = np.array(data["gamma"])
    ridge = np.array([r["ridge"] for r in rows]) * gamma
    solved = np.array([r["solved"] for r in rows]) * gamma
    iso = np.array([r["isotropic_ridge"] for r in rows]) * gamma
    for j in range(ridge.shape[1]):
        ax_path.plot(keeps, ridge[:, j], "-", color=f"C{j}", lw=1.2)
        ax_path.plot(keeps, iso[:, j], ":", color=f"C{j}", lw=1)
        ax_path.plot(keeps, solved[:, j], "o", mfc="none", color=f"C{j}", ms=5)
    ax_path.plot([], [], "k-", label="ridge with Γ (formula)")
    ax_path.plot([], [], "ko", mfc="none", label="dropout, exact (cvxpy)")
    ax_path.plot([], [], "k:", label="ridge with Γ = c·I")
    ax_path.set(xlabel="keep p", ylabel=r"$\Gamma_{jj}\,\tilde w_j$,  $\tilde w = p\,w$")
    ax_path.set_title("(a) the dropout solution is Γ-ridge", fontsize=10)
    ax_path.legend(fontsize=7)
    ax_gap.semilogy(keeps, [r["identity_gap"] for r in rows], "s-", label="objective: exact sum")
    ax_gap.semilogy(keeps, [r["minimiser_gap"] for r in rows], "o-", label="minimiser: cvxpy")
    ax_gap.set(xlabel="keep p", ylabel="relative difference from the formula")
    ax_gap.set_title("(b) agreement with §9.1", fontsize=10)
    ax_gap.legend(fontsize=7)
    ax_z.bar(np.arange(len(keeps)), [r["mc_z"] for r in rows], color="C0")
    ax_z.axhline(0, color="k", lw=0.8)
    for s in (-2, 2):
        ax_z.axhline(s, color="0.6", ls="--", lw=0.8)
    ax_z.set_xticks(np.arange(len(keeps)), [f"{p:g}" for p in keeps], fontsize=7)
    ax_z.set(xlabel="keep p", ylabel="z (Monte Carlo − formula)", ylim=(-4.5, 4.5))
    ax_z.set_title(f"(c) {data['n_draws']} real mask draws", fontsize=10)
    fig.suptitle(
        "(q) Srivastava et al. §9.1: input dropout in linear regression is ridge with "
        r"$\Gamma = \mathrm{diag}(X^\top X)^{1/2}$"
    )
    return draw_claims(fig, data["claims"])


# the exact sum: 2^8 · 120 terms of a sum of squares of size ~ the objective
_SUM_TERMS = 2**N_FEATURES * N_SAMPLES

register(
    FigureSpec(
        "srivastava_ridge",
        "(q) Srivastava et al. §9.1: the expected squared error under input dropout is a "
        "ridge with Γ = diag(XᵀX)^½ — exact sum over masks, Monte Carlo, cvxpy",
        compute_srivastava_ridge,
        plot_srivastava_ridge,
        solves=False,
        checks={
            "n_samples n_features n_draws design_seed draw_seed per_keep/*/keep": EXACT,
            "claims/*/paper claims/*/claim claims/*/theirs claims/*/where claims/*/measure "
            "claims/*/verdict claims/*/reason": EXACT,
            "gamma per_keep/*/formula per_keep/*/enumerated per_keep/*/ridge "
            "per_keep/*/isotropic_ridge": closed_form(size=_SUM_TERMS, condition=1e3),
            # differences at rounding level, relative to 1 (they are relative gaps)
            "per_keep/*/identity_gap claims/0/ours": closed_form(size=_SUM_TERMS, scale=1.0),
            "per_keep/*/solved": solve(1e-6, scale="field"),
            "per_keep/*/minimiser_gap claims/1/ours": solve(1e-6, scale=1.0),
            "per_keep/*/mc_mean": monte_carlo("mc_stderr", same_draws=rounding(1e5)),
            "per_keep/*/mc_stderr": spread(0.2, same_draws=rounding(1e5)),
            # a z-score: the same draws give it to rounding; other draws, another N(0, 1)
            "per_keep/*/mc_z claims/2/ours": spread(10.0, same_draws=rounding(1e6)),
        },
        references=("srivastava2014dropout, Sec. 9.1",),
    )
)
