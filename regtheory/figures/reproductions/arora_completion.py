r"""Reproduction (w): dropout in matrix completion induces the weighted trace norm.

(w) ``arora_completion`` -- Arora, Bartlett, Mianjy & Srebro (ICML 2021): dropout on the
    d hidden units of a factorization :math:`M = UV^\top` fitted to entries sampled with
    probability :math:`p_iq_j` adds, in expectation, the product form
    :math:`R_{pq}(U, V) = \lambda\sum_k\|u_k\|_p^2\|v_k\|_q^2`, whose minimum over the
    factorizations of M is the squared weighted trace norm
    :math:`\Theta(M) = (\lambda/d)\|\operatorname{diag}(\sqrt p)M\operatorname{diag}(\sqrt
    q)\|_*^2` (λ = (1 − keep)/keep, docs/THEORY.md §9); and, on MovieLens, dropout
    training shrinks the gap between test and training error.

**What was read.** The paper's full text could not be read here. The statement (9.7),
:math:`\Theta(M) = \frac1{d_1}\|\operatorname{diag}(\sqrt p)UV^\top\operatorname{diag}(\sqrt
q)\|_*^2` with entry (i, k) sampled with probability :math:`p(i)q(k)`, was read in the
monograph "Theory of Deep Learning" (Arora et al., 2022), §9.1.2, p. 87, which states the
result without naming its source; the Θ quoted there carries no dropout factor, the
package's carries λ. Of the experiment, a third party's quote of the paper gives MovieLens,
"100 epochs over the training data" with a fixed learning rate whose value was cut off, and
that it checks the paper's capacity bound against the observed generalization gap; which
MovieLens, the split, the width, the dropout rates and the reported errors were not read.
We test only the trend of the gap with keep, not the bound.

**Our stand-in (chosen here, not the paper's).** MovieLens is not available offline, so for
each seed s: a rank-``RANK`` matrix :math:`T = AB^\top` (i.i.d. standard normal factors)
scaled to rms 1, a noisy copy :math:`Y = T + \sigma Z` with σ = ``NOISE``, power-law row and
column popularities :math:`\propto k^{-\alpha}` in random order
(:func:`~regtheory.figures.completion_figures.power_law_marginal`), and disjoint training
and test entries drawn with probability ∝ :math:`p_iq_j`, every row and column covered
(:func:`~regtheory.figures.completion_figures.split_entries`); every entry reads Y.
Dropout training is :func:`regtheory.training.train_completion` (real Bernoulli masks, one
per observation) at width ``WIDTH``, minibatches of a tenth of the entries, a constant
step ``LR``, for ``EPOCHS`` epochs (steps × batch = 100 N), from the same initialisation
(the int seed s) at every keep. Training RMSE is on the training entries, test RMSE on the
test entries, both against Y; the gap is their difference; intervals are 95 % Student-t
intervals over the seeds, the gap differences paired by seed.

**The regularizer (claim 1).** At the trained factors of the first seed, for each keep < 1,
with the empirical marginals p, q of the training entries (the package's Θ uses them): the
closed form :math:`R_{pq}` (:func:`regtheory.completion.explicit_regularizer`) against a
Monte Carlo estimate with real masks *and* sampled entries -- a draw picks row i ~ p,
column j ~ q independently and one mask r, and returns
:math:`(\sum_k (r_k/\theta - 1)U_{ik}V_{jk})^2`, whose mean is :math:`R_{pq}`
(:func:`regtheory.montecarlo.estimate`); the ratio :math:`R_{pq}/\Theta(UV^\top)`
(:func:`regtheory.completion.induced_regularizer`), ≥ 1 for every factorization; and the
same at the equalized factors of the same product (:func:`regtheory.completion.equalize`),
where the theory says the ratio is 1 and the Monte Carlo mean is Θ. Beside them
:math:`R_\Omega/\Theta`, the penalty training on this fixed set of entries actually adds
(:func:`regtheory.completion.dropout_penalty`): THEORY.md §9 says it need not be ≥ 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._check import EXACT, monte_carlo, spread, trajectory
from .._intervals import student_t_interval
from .._registry import FigureSpec, register
from ..completion_figures import power_law_marginal, split_entries
from ._claims import NOT_READ, claim, draw_claims, verdict

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["compute_arora_completion", "plot_arora_completion"]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


PAPER = "arora2021dropout"
RANK = 3
NOISE = 0.5  # σ, T at rms 1
ALPHA = 1.0
WIDTH = 20
TRAIN_FRACTION = 0.3  # N / (m n)
TEST_FRACTION = 0.1
EPOCHS = 100  # read: "We train the model for 100 epochs over the training data"
BATCH_FRACTION = 0.1
LR = 0.3
INIT_SCALE = 0.1
KEEPS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)
MC_DRAWS = 2**16
# claim 1: |z| of a Monte Carlo mean against its closed form; over ≤ 16 estimates a true
# identity exceeds 5 with probability below 1e-5, while a missing factor moves z by tens.
Z_MAX = 5.0
# R_pq / Θ: ≥ 1 is a theorem (the trained ratios measure 1.03 to 1.3); equalized factors give
# 1 to rounding (about 1e-14 measured).
RATIO_FLOOR = 1.0 - 1e-9
EQUAL_RTOL = 1e-9


def _settings(quick: bool) -> dict[str, Any]:
    """Sizes; quick mode: a 40 × 40 matrix, three keeps, three seeds, fewer draws."""
    if quick:
        return {"shape": [40, 40], "keeps": [1.0, 0.6, 0.2], "seeds": 3, "mc_draws": 2**14}
    return {"shape": [80, 80], "keeps": list(KEEPS), "seeds": 10, "mc_draws": MC_DRAWS}


def _stand_in(seed: int, shape: tuple[int, int]) -> tuple[Any, np.ndarray, np.ndarray]:
    """The synthetic stand-in for MovieLens of one seed (module docstring).

    Parameters
    ----------
    seed : int
        The seed of the matrix, the popularities and the split.
    shape : tuple of int
        (m, n).

    Returns
    -------
    (obs, Y, test)
        The training entries as :class:`regtheory.completion.Observations`, the noisy
        matrix and the flat indices of the test entries.
    """
    from ... import completion

    m, n = shape
    gen = np.random.default_rng([seed, 23])
    T = gen.standard_normal((m, RANK)) @ gen.standard_normal((n, RANK)).T
    T /= np.sqrt(np.mean(T**2))
    Y = T + NOISE * gen.standard_normal((m, n))
    p, q = power_law_marginal(m, ALPHA, gen), power_law_marginal(n, ALPHA, gen)
    n_train, n_test = (int(round(f * m * n)) for f in (TRAIN_FRACTION, TEST_FRACTION))
    train, _, test = split_entries(p, q, n_train, 0, n_test, gen)
    rows, cols = np.divmod(train, n)
    return completion.observed(rows, cols, Y[rows, cols], (m, n)), Y, test


def _train(obs: Any, keep: float, seed: int) -> Any:
    """Dropout SGD for ``EPOCHS`` epochs (:func:`regtheory.training.train_completion`).

    Parameters
    ----------
    obs : regtheory.completion.Observations
        The training entries.
    keep : float
        Retain probability.
    seed : int
        Seed of the initialisation, the minibatches and the masks (the same at every keep).

    Returns
    -------
    regtheory.training.CompletionTrainingResult
        The trained factors.
    """
    from ... import training

    batch = max(1, int(round(BATCH_FRACTION * obs.n_observed)))
    steps = int(round(EPOCHS * obs.n_observed / batch))
    return training.train_completion(
        obs,
        keep,
        WIDTH,
        steps=steps,
        lr=LR,
        batch_size=batch,
        init_scale=INIT_SCALE,
        rng=seed,
        record_every=steps,
    )


def _sampled_penalty(U: np.ndarray, V: np.ndarray, obs: Any, keep: float, *, draws: int, seed):
    """Monte Carlo of R_pq: entries drawn from p ⊗ q (empirical marginals), real masks.

    Parameters
    ----------
    U, V : ndarray
        The factors.
    obs : regtheory.completion.Observations
        Whose empirical marginals p, q the entries are drawn from.
    keep : float
        Retain probability.
    draws : int
        Number of draws, each one entry and one mask of the width's units.
    seed : int or sequence of int
        Seed of the draws.

    Returns
    -------
    regtheory.montecarlo.Estimate
        The mean with its standard error.
    """
    from ...masks import kept_units
    from ...montecarlo import estimate, min_draws

    p, q = obs.row_marginals, obs.col_marginals

    def draw(gen: np.random.Generator, size: int) -> np.ndarray:
        i = gen.choice(p.size, size=size, p=p)
        j = gen.choice(q.size, size=size, p=q)
        e = kept_units(keep, (size, U.shape[1]), gen) / keep - 1.0
        return np.einsum("tk,tk->t", e * U[i], V[j]) ** 2

    n = max(draws, min_draws(keep))
    return estimate(draw, n_masks=n, rng=np.random.default_rng(seed), batch_size=4096)


def _regularizers(
    obs: Any, runs: dict[float, Any], keeps: list[float], draws: int, seed: int
) -> dict:
    """Claim 1's numbers at the trained and the equalized factors, for each keep < 1.

    Parameters
    ----------
    obs : regtheory.completion.Observations
        The training entries of the first seed.
    runs : dict
        Its trained runs by keep.
    keeps : list of float
        The keeps, in the order of the record.
    draws : int
        Monte Carlo draws per estimate.
    seed : int
        The first seed; the draws of keep number k use ``[seed, k, 0]`` (trained) and
        ``[seed, k, 10]`` (equalized).

    Returns
    -------
    dict
        Per keep < 1: R_pq, R_Ω, Θ, the Monte Carlo means, standard errors, z-scores and
        draw counts, at the trained and at the equalized factors.
    """
    from ... import completion

    out: dict[str, list[float]] = {
        k: []
        for k in (
            "keeps product observed induced mc mc_stderr z n_draws "
            "equalized_product equalized_mc equalized_mc_stderr equalized_z"
        ).split()
    }
    for index, keep in enumerate(keeps):
        if keep >= 1.0:
            continue
        U, V = runs[keep].U, runs[keep].V
        theta = completion.induced_regularizer(U @ V.T, obs, keep, WIDTH)
        U2, V2 = completion.equalize(U, V, obs)
        out["keeps"].append(keep)
        out["induced"].append(theta)
        out["observed"].append(float(completion.dropout_penalty(U, V, obs, keep)))
        for prefix, (A, B), target in (("", (U, V), None), ("equalized_", (U2, V2), theta)):
            closed = completion.explicit_regularizer(A, B, obs, keep, form="product")
            est = _sampled_penalty(A, B, obs, keep, draws=draws, seed=[seed, index, len(prefix)])
            reference = closed if target is None else target
            out[f"{prefix}product"].append(closed)
            out[f"{prefix}mc"].append(float(est))
            out[f"{prefix}mc_stderr"].append(est.stderr)
            out[f"{prefix}z"].append((float(est) - reference) / est.stderr)
        out["n_draws"].append(est.n_masks)
    return {**out, "z_stderr": 1.0}


def _claims(data: dict) -> list[dict]:
    """The two claims, each with the test that decides its verdict.

    Parameters
    ----------
    data : dict
        The figure's data without its claims.

    Returns
    -------
    list of dict
        One :func:`~regtheory.figures.reproductions.claim` per published statement.
    """
    reg = data["regularizer"]
    ratios = np.asarray(reg["product"]) / np.asarray(reg["induced"])
    equal = np.asarray(reg["equalized_product"]) / np.asarray(reg["induced"])
    z = np.abs(np.concatenate([reg["z"], reg["equalized_z"]]))
    first = bool(
        z.max() < Z_MAX and ratios.min() >= RATIO_FLOOR and np.abs(equal - 1.0).max() < EQUAL_RTOL
    )
    drop = data["gap_drop"]
    second = bool(drop["mean"] - drop["half_width"] > 0.0)
    low = data["keeps"][-1]
    return [
        claim(
            paper=PAPER,
            claim="With entries sampled with probability p_i q_j, dropout on the d hidden "
            "units adds in expectation λ Σ_k ‖u_k‖²_p ‖v_k‖²_q, which is at least "
            "Θ(UVᵀ) = (λ/d)‖diag(√p) UVᵀ diag(√q)‖_*² and equals it at equalized factors",
            theirs="Θ(M) = (1/d1)‖diag(√p) UVᵀ diag(√q)‖_*², entries sampled with probability "
            "p(i)q(k) (no dropout factor in the quoted Θ)",
            where="monograph 'Theory of Deep Learning' (2022), §9.1.2, eq. (9.7), p. 87; "
            "the paper's theorem number not read",
            ours=float(ratios.min()),
            measure="smallest R_pq / Θ at the trained factors, over keeps",
            verdict=verdict(first),
            reason=f"Monte Carlo with real masks and sampled entries meets the closed form "
            f"(every |z| < {Z_MAX:g}), R_pq / Θ ≥ 1 at every trained factorization and = 1 "
            f"(to {EQUAL_RTOL:g}) at the equalized ones"
            if first
            else "a Monte Carlo estimate, a trained ratio or an equalized ratio fails its test",
        ),
        claim(
            paper=PAPER,
            claim=f"Dropout training for {EPOCHS} epochs narrows the generalization gap "
            "(test − training RMSE) of matrix completion as keep decreases from 1",
            theirs=NOT_READ,
            where=NOT_READ,
            ours=float(drop["mean"]),
            measure=f"gap at keep 1 minus gap at keep {low:g}, mean over seeds",
            verdict=verdict(second, in_shape=True),
            reason="on a synthetic power-law stand-in for MovieLens, the 95 % interval "
            f"of the paired gap difference (keep 1 against {low:g}) lies above 0"
            if second
            else "the 95 % interval of the paired gap difference reaches 0",
        ),
    ]


def compute_arora_completion(quick: bool, seed: int) -> dict:
    """Data of reproduction (w) ``arora_completion``.

    Parameters
    ----------
    quick : bool
        Quick mode: a 40 × 40 matrix, keeps 1, 0.6 and 0.2, three seeds.
    seed : int
        Offset of the seeds: the stand-ins use ``seed``, ``seed + 1``, …

    Returns
    -------
    dict
        Settings, training and test RMSE per keep and seed with intervals, the
        regularizers of claim 1 and the claims.
    """
    from ... import completion

    s = _settings(quick)
    shape, keeps = tuple(s["shape"]), s["keeps"]
    seeds = [seed + k for k in range(s["seeds"])]
    train, test = np.empty((len(keeps), len(seeds))), np.empty((len(keeps), len(seeds)))
    regularizer: dict = {}
    for column, sd in enumerate(seeds):
        obs, Y, where = _stand_in(sd, shape)
        runs = {keep: _train(obs, keep, sd) for keep in keeps}
        for row, keep in enumerate(keeps):
            M = runs[keep].M
            train[row, column] = np.sqrt(completion.fit_loss(runs[keep].U, runs[keep].V, obs))
            test[row, column] = np.sqrt(np.mean((M.ravel()[where] - Y.ravel()[where]) ** 2))
        if column == 0:
            regularizer = _regularizers(obs, runs, keeps, s["mc_draws"], sd)
    gap = test - train
    data = {
        "shape": s["shape"],
        "rank": RANK,
        "noise": NOISE,
        "alpha": ALPHA,
        "width": WIDTH,
        "train_fraction": TRAIN_FRACTION,
        "test_fraction": TEST_FRACTION,
        "epochs": EPOCHS,
        "batch_fraction": BATCH_FRACTION,
        "lr": LR,
        "init_scale": INIT_SCALE,
        "keeps": keeps,
        "seed": seed,
        "seeds": s["seeds"],
        "mc_draws": s["mc_draws"],
        "train_rmse": train.tolist(),
        "test_rmse": test.tolist(),
        "gap": gap.tolist(),
        "train_interval": [student_t_interval(r) for r in train],
        "test_interval": [student_t_interval(r) for r in test],
        "gap_interval": [student_t_interval(r) for r in gap],
        "gap_drop": student_t_interval(gap[0] - gap[-1]),
        "regularizer": regularizer,
    }
    data["claims"] = _claims(data)
    return data


# --------------------------------------------------------------------------- the plot


def _band(ax: Any, keeps: list[float], intervals: list[dict], **style: Any) -> None:
    """Means with their 95 % intervals as error bars.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    keeps : list of float
        The abscissae.
    intervals : list of dict
        ``mean`` and ``half_width`` per keep.
    **style : Any
        Passed to ``errorbar``.
    """
    ax.errorbar(
        keeps,
        [i["mean"] for i in intervals],
        yerr=[i["half_width"] for i in intervals],
        capsize=3,
        ms=5,
        **style,
    )


def _regularizer_panel(ax: Any, data: dict) -> None:
    """Claim 1: the regularizers at the trained and equalized factors, over Θ.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    data : dict
        The figure's data.
    """
    reg = data["regularizer"]
    keeps, theta = np.asarray(reg["keeps"]), np.asarray(reg["induced"])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.plot(
        keeps, np.asarray(reg["product"]) / theta, "C0-", label=r"$R_{pq}$ closed form, trained"
    )
    ax.errorbar(
        keeps,
        np.asarray(reg["mc"]) / theta,
        yerr=2 * np.asarray(reg["mc_stderr"]) / theta,
        fmt="C0o",
        ms=4,
        capsize=3,
        label="Monte Carlo, sampled entries + masks, trained (±2 se)",
    )
    ax.errorbar(
        keeps,
        np.asarray(reg["equalized_mc"]) / theta,
        yerr=2 * np.asarray(reg["equalized_mc_stderr"]) / theta,
        fmt="C2s",
        ms=4,
        capsize=3,
        label="Monte Carlo, equalized factors (±2 se)",
    )
    ax.plot(
        keeps,
        np.asarray(reg["observed"]) / theta,
        "C3--",
        label=r"$R_\Omega$ on the fixed Ω, trained",
    )
    ax.set_xlabel("keep")
    ax.set_ylabel(r"regularizer / $\Theta(UV^\top)$")
    ax.set_title("(c) the regularizer over the weighted trace norm Θ (seed 0)")
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=8)


def plot_arora_completion(data: dict) -> Figure:
    """Draw reproduction (w) from the data of :func:`compute_arora_completion`.

    Parameters
    ----------
    data : dict
        The data of :func:`compute_arora_completion`.

    Returns
    -------
    matplotlib.figure.Figure
        Training and test RMSE, the gap, and the regularizers over Θ, against keep.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(17.0, 4.8), layout="constrained")
    ax_rmse, ax_gap, ax_reg = fig.subplots(1, 3)
    keeps = data["keeps"]
    _band(ax_rmse, keeps, data["train_interval"], color="C0", marker="o", label="training RMSE")
    _band(ax_rmse, keeps, data["test_interval"], color="C3", marker="s", label="test RMSE")
    ax_rmse.axhline(data["noise"], color="0.5", ls=":", label="noise σ")
    ax_rmse.set_ylabel("RMSE against the noisy entries")
    ax_rmse.set_title(f"(a) after {data['epochs']} epochs of dropout SGD")
    _band(ax_gap, keeps, data["gap_interval"], color="C1", marker="D", label="test − training")
    ax_gap.set_ylabel("generalization gap (RMSE)")
    ax_gap.set_title("(b) the gap narrows as keep decreases")
    for ax in (ax_rmse, ax_gap):
        ax.set_xlabel("keep")
        ax.invert_xaxis()
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=8.5)
    _regularizer_panel(ax_reg, data)
    ax_reg.invert_xaxis()
    m, n = data["shape"]
    fig.suptitle(
        f"(w) Arora et al.: dropout in matrix completion -- stand-in for MovieLens: rank-"
        f"{data['rank']} {m}×{n}, power-law popularity (α = {data['alpha']:g}), "
        f"{data['train_fraction']:.0%} observed, width {data['width']}, {data['seeds']} seeds "
        "(mean ± 95 % interval)",
        fontsize=11,
    )
    return draw_claims(fig, data["claims"])


# --------------------------------------------------------------------------- checks

# Dropout SGD with real masks: the same bits on one machine; across BLAS kernels the
# trained values move by rounding only (completion_study measured them the same to the
# bit), and 1e-6 still catches any change to the training.
TRAINING_RTOL = 1e-6
# A standard error from n draws varies by c/√n (Rule ``spread``); these draws (power-law
# entries times products of factors) are heavier-tailed than the conv figures' (c ≤ 1.25
# there): 20/√n allows c up to 3.5 at MC_Z·√2.
STDERR_RTOL = 20.0
_REG = "regularizer"

register(
    FigureSpec(
        "arora_completion",
        "(w) Arora et al. 2021: dropout in matrix completion and the weighted trace norm; "
        "the generalization gap against keep on a power-law stand-in for MovieLens",
        compute_arora_completion,
        plot_arora_completion,
        checks={
            "shape rank noise alpha width train_fraction test_fraction epochs batch_fraction "
            "lr init_scale keeps seed seeds mc_draws regularizer/keeps regularizer/n_draws "
            "regularizer/z_stderr": EXACT,
            "claims/*/paper claims/*/claim claims/*/theirs claims/*/where "
            "claims/*/measure claims/*/verdict claims/*/reason": EXACT,
            "train_rmse test_rmse gap train_interval/*/* test_interval/*/* gap_interval/*/* "
            "gap_drop/* claims/*/ours": trajectory(TRAINING_RTOL),
            f"{_REG}/product {_REG}/observed {_REG}/induced {_REG}/equalized_product": (
                trajectory(TRAINING_RTOL)
            ),
            f"{_REG}/mc": monte_carlo("mc_stderr"),
            f"{_REG}/equalized_mc": monte_carlo("equalized_mc_stderr"),
            f"{_REG}/mc_stderr {_REG}/equalized_mc_stderr": spread(STDERR_RTOL, draws="n_draws"),
            # a z-score is itself a draw of standard error 1 when the identity holds
            f"{_REG}/z {_REG}/equalized_z": monte_carlo("z_stderr"),
        },
        references=(PAPER, "salakhutdinov2010collaborative"),
    )
)
