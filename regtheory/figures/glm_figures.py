r"""Figure of dropout on generalized linear models, on real data: dropout as an adaptive L2.

(n) ``glm_adaptive_l2`` -- logistic regression with input dropout on scikit-learn's bundled
    breast-cancer data (569 tumours, 30 features) and on one pair of its 8×8 digits (3
    against 8, a binary problem: one-vs-rest of a single pair, not a softmax over ten
    digits; the pixels constant over the pair are left out):

* at the dropout solution for each keep (the sample-average problem over ``n_masks_saa``
  mask draws per sample, :func:`regtheory.glm.solve_dropout` with ``method="saa"``), the
  penalty R by Monte Carlo over real masks against Wager et al.'s quadratic approximation
  and the Gaussian (fast dropout) one, as relative errors;
* the same by bins of the margin |x·β + b| (quartiles of the samples): where the
  quadratic approximation is accurate and where not;
* cross-validated test log-loss and accuracy of three fits at each keep: dropout (SAA),
  its quadratic approximation (the reweighted-ridge fixed point) and a plain ridge with
  the quadratic penalty's weight at β = 0, λ/8 ‖β‖² (A''(0) = 1/4 and unit-variance
  features): the non-adaptive L2 of the same λ;
* the coefficient paths of the three fits over keep (breast cancer).

**Folds and scaling.** ``StratifiedKFold(n_folds, shuffle=True, random_state=seed)``; in
each fold the features are standardised with the training part's mean and standard
deviation (a feature constant there keeps scale 1), and the held-out part with the same.
The penalty panels use the whole data set, standardised over it.

scikit-learn (in the ``torch`` extra, which the README's figures command installs) is
imported when the figure is computed; without it the figure fails with the install
command.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import glm
from .._validation import InvalidParameterError
from ..implied import SolverFailedError
from ..montecarlo import Estimate
from ._check import EXACT, RECORD, monte_carlo, solve
from ._registry import FigureSpec, register

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = [
    "compute_glm_adaptive_l2",
    "load",
    "plot_glm_adaptive_l2",
    "saa_fit",
    "standardise",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


SOLVER = "L-BFGS-B"  # tens of thousands of SAA terms: scipy, not Clarabel (glm.solve_dropout)
PAIR = (3, 8)


def _settings(quick: bool) -> dict[str, Any]:
    """Quick mode: breast cancer only, one keep, two folds, fewer masks."""
    return {
        # digits stop at keep 0.5: at 0.7 the 100 masked copies of each of the 357 digits
        # are linearly separable in 54 dimensions and the SAA problem has no minimiser
        "keeps": {"breast_cancer": [0.5]}
        if quick
        else {"breast_cancer": [0.3, 0.5, 0.7], "digits_3_vs_8": [0.3, 0.5]},
        # fewer draws leave the SAA problem of a fold without a minimiser: its masked
        # copies of the samples become separable (20 draws did, on half the tumours)
        "n_masks_saa": 50 if quick else 100,
        # the far-from-boundary bins are heavy-tailed (a rare drop flips a sure score)
        "n_masks_mc": 2000 if quick else 20000,
        "n_folds": 2 if quick else 5,
        "n_bins": 4,
    }


def _sklearn() -> Any:
    try:
        import sklearn.datasets
        import sklearn.linear_model
        import sklearn.metrics
        import sklearn.model_selection
    except ImportError as exc:
        raise InvalidParameterError(
            f"figure 'glm_adaptive_l2' needs scikit-learn ({exc}); install it with: "
            'pip install -e ".[torch]"'
        ) from None
    return sklearn


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (raw) and 0/1 labels of a data set of the figure."""
    sk = _sklearn()
    if name == "breast_cancer":
        X, y = sk.datasets.load_breast_cancer(return_X_y=True)
        return X, y.astype(float)
    X, y = sk.datasets.load_digits(return_X_y=True)
    pair = np.isin(y, PAIR)
    X, y = X[pair], (y[pair] == PAIR[1]).astype(float)
    return X[:, X.std(axis=0) > 0], y


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale by the training part's mean and standard deviation (1 where it is 0)."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(a - mean) / std for a in (train, *others)]


def saa_fit(
    X: np.ndarray, y: np.ndarray, keep: float, s: dict, seed: int | np.random.Generator
) -> glm.GLMSolution:
    """The SAA solution, doubling the draws (up to 8 times) while it has no minimiser.

    With few draws the masked copies of the samples can be separable although the exact
    dropout problem has a minimiser.

    Parameters
    ----------
    X : array (n, d)
        Inputs.
    y : array (n,)
        0/1 labels.
    keep : float
        Retain probability θ.
    s : dict
        The figure's settings; ``s["n_masks_saa"]`` is the first number of draws.
    seed : int or numpy.random.Generator
        Source of the draws.

    Returns
    -------
    regtheory.glm.GLMSolution
        The logistic dropout solution of :func:`regtheory.glm.solve_dropout` with ``"saa"``.
    """
    n_masks = s["n_masks_saa"]
    while True:
        try:
            return glm.solve_dropout(
                X, y, keep, method="saa", n_masks=n_masks, rng=seed, solver=SOLVER
            )
        except SolverFailedError:
            if n_masks >= 8 * s["n_masks_saa"]:
                raise
            n_masks *= 2


def _fits(X: np.ndarray, y: np.ndarray, keep: float, s: dict, seed: int) -> dict:
    """Dropout (SAA), quadratic and ridge fits: (beta, intercept, solution) each."""
    sk = _sklearn()
    saa = saa_fit(X, y, keep, s, seed)
    quad = glm.solve_dropout(X, y, keep, method="quadratic", solver=SOLVER)
    # ridge λ/8 ‖β‖²; LogisticRegression minimises ‖w‖²/2 + C Σ log-loss, i.e. (divided by
    # Cn) mean log-loss + ‖w‖²/(2Cn): C = 1/(2nα) with α = λ/8
    alpha = (1.0 - keep) / keep / 8.0
    ridge = sk.linear_model.LogisticRegression(C=1.0 / (2 * len(X) * alpha), tol=1e-10)
    ridge.fit(X, y)
    return {
        "dropout": (saa.beta, saa.intercept, saa),
        "quadratic": (quad.beta, quad.intercept, quad),
        "ridge": (ridge.coef_[0], float(ridge.intercept_[0]), None),
    }


def _penalties(X: np.ndarray, beta: np.ndarray, b: float, keep: float, s: dict, seed: int):
    est = glm.dropout_penalty(
        beta, X, keep, method="mc", offset=b, n_masks=s["n_masks_mc"], rng=seed
    )
    assert isinstance(est, Estimate)
    return (
        est,
        glm.quadratic_penalty(beta, X, keep, offset=b),
        glm.gaussian_penalty(beta, X, keep, offset=b),
    )


def _bins(X, beta, b, keep, s, seed) -> dict:
    margin = np.abs(X @ beta + b)
    edges = np.quantile(margin, np.linspace(0.0, 1.0, s["n_bins"] + 1))
    which = np.clip(np.searchsorted(edges, margin, side="right") - 1, 0, s["n_bins"] - 1)
    out: dict[str, list] = {k: [] for k in ("count", "mc", "mc_stderr", "quadratic", "gaussian")}
    for k in range(s["n_bins"]):
        rows = which == k
        est, quad, gauss = _penalties(X[rows], beta, b, keep, s, seed + k)
        out["count"].append(int(rows.sum()))
        out["mc"].append(est.value)
        out["mc_stderr"].append(est.stderr)
        out["quadratic"].append(quad)
        out["gaussian"].append(gauss)
    return {"edges": edges.tolist(), **out}


def _cross_validate(X_raw, y, keep, s, seed) -> dict:
    sk = _sklearn()
    folds = sk.model_selection.StratifiedKFold(s["n_folds"], shuffle=True, random_state=seed)
    scores: dict[str, dict[str, list]] = {
        m: {"log_loss": [], "accuracy": []} for m in ("dropout", "quadratic", "ridge")
    }
    masks: list[int] = []  # SAA draws per sample used in each fold
    for train, test in folds.split(X_raw, y):
        X_train, X_test = standardise(X_raw[train], X_raw[test])
        fits = _fits(X_train, y[train], keep, s, seed)
        masks.append(fits["dropout"][2].n_terms // len(train))
        for name, (beta, b, _) in fits.items():
            p = 1.0 / (1.0 + np.exp(-(X_test @ beta + b)))
            scores[name]["log_loss"].append(
                float(sk.metrics.log_loss(y[test], p, labels=[0.0, 1.0]))
            )
            scores[name]["accuracy"].append(float(np.mean((p > 0.5) == (y[test] == 1.0))))
    return {**scores, "saa_masks": masks}


def _per_keep(X_raw, y, keep, s, seed) -> dict:
    (X,) = standardise(X_raw)
    fits = _fits(X, y, keep, s, seed)
    beta, b, saa = fits["dropout"]
    est, quad, gauss = _penalties(X, beta, b, keep, s, seed)
    return {
        "keep": keep,
        "betas": {name: np.asarray(f[0]).tolist() for name, f in fits.items()},
        "intercepts": {name: f[1] for name, f in fits.items()},
        "saa_masks": saa.n_terms // len(X),
        "saa_objective": saa.objective,
        "saa_stderr": saa.objective_stderr,
        "quadratic_iterations": fits["quadratic"][2].iterations,
        "penalty": {
            "mc": est.value,
            "mc_stderr": est.stderr,
            "quadratic": quad,
            "gaussian": gauss,
        },
        "bins": _bins(X, beta, b, keep, s, seed),
        "cv": _cross_validate(X_raw, y, keep, s, seed),
    }


def compute_glm_adaptive_l2(quick: bool, seed: int) -> dict:
    """Data of figure (n) ``glm_adaptive_l2``: dropout on logistic regression against L2.

    Parameters
    ----------
    quick : bool
        The quick mode of the figure: fewer points, draws or training steps.
    seed : int
        Seed of every random draw of the figure.

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_glm_adaptive_l2` draws.
    """
    s = _settings(quick)
    datasets = []
    for name, keeps in s["keeps"].items():
        X_raw, y = load(name)
        datasets.append(
            {
                "name": name,
                "n": int(X_raw.shape[0]),
                "d": int(X_raw.shape[1]),
                "per_keep": [_per_keep(X_raw, y, k, s, seed) for k in keeps],
            }
        )
    return {**s, "seed": seed, "pair": list(PAIR), "results": datasets}


_STYLE = {"dropout": ("C0", "-"), "quadratic": ("C1", "--"), "ridge": ("0.4", ":")}


def _relative(values, reference):
    return (np.asarray(values) - np.asarray(reference)) / np.asarray(reference)


def plot_glm_adaptive_l2(data: dict) -> Figure:
    """Draw figure (n) from the data of :func:`compute_glm_adaptive_l2`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15.0, 8.4), layout="constrained")
    (ax_err, ax_bin, ax_path), (ax_ll, ax_acc, ax_note) = fig.subplots(2, 3)
    markers = ["o", "s"]
    for k, ds in enumerate(data["results"]):
        keeps = np.array([pk["keep"] for pk in ds["per_keep"]])
        pen = [pk["penalty"] for pk in ds["per_keep"]]
        mc = np.array([p["mc"] for p in pen])
        se = np.array([p["mc_stderr"] for p in pen])
        for what, color in (("quadratic", "C1"), ("gaussian", "C2")):
            rel = _relative([p[what] for p in pen], mc)
            err = np.abs(1.96 * se / mc * (rel + 1.0))  # the Monte Carlo reference's 95 % band
            ax_err.errorbar(
                keeps + 0.004 * k, 100 * rel, 100 * err, color=color, marker=markers[k],
                ls="-" if k == 0 else "--", capsize=3, label=f"{what}, {ds['name']}",
            )  # fmt: skip
    ax_err.axhline(0.0, color="k", lw=0.6)
    ax_err.set_xlabel("keep θ")
    ax_err.set_ylabel("(approximation − R) / R  [%]")
    ax_err.set_title("(a) approximations of R at the dropout solution")
    ax_err.legend(fontsize=7.5)

    first = data["results"][0]
    keeps = np.array([pk["keep"] for pk in first["per_keep"]])
    for j, pk in enumerate(first["per_keep"]):
        bins = pk["bins"]
        centres = np.arange(len(bins["mc"])) + 0.12 * (j - 1)
        rel = _relative(bins["quadratic"], bins["mc"])
        err = np.abs(1.96 * np.array(bins["mc_stderr"]) / np.array(bins["mc"]) * (rel + 1.0))
        ax_bin.errorbar(
            centres, 100 * rel, 100 * err, marker="o", capsize=3, label=f"θ = {pk['keep']:g}"
        )
    edges = first["per_keep"][0]["bins"]["edges"]
    ax_bin.set_xticks(
        np.arange(len(edges) - 1),
        [f"{a:.1f}–{b:.1f}" for a, b in itertools.pairwise(edges)],
        fontsize=8,
    )
    ax_bin.axhline(0.0, color="k", lw=0.6)
    ax_bin.set_xlabel(f"margin |x·β + b| quartile ({first['name']}, edges at the first θ)")
    ax_bin.set_ylabel("(R_q − R) / R within the bin  [%]")
    ax_bin.set_title("(b) adaptive L2 by margin")
    ax_bin.legend(fontsize=8)

    for name, (color, ls) in _STYLE.items():
        path = np.array([pk["betas"][name] for pk in first["per_keep"]])
        for j in range(path.shape[1]):
            ax_path.plot(keeps, path[:, j], color=color, ls=ls, lw=0.8, alpha=0.7, marker=".",
                         label=name if j == 0 else None)  # fmt: skip
    ax_path.set_xlabel("keep θ")
    ax_path.set_ylabel("β_j (standardised features)")
    ax_path.set_title(f"(c) coefficient paths, {first['name']}")
    ax_path.legend(fontsize=8)

    for ax, metric in ((ax_ll, "log_loss"), (ax_acc, "accuracy")):
        for k, ds in enumerate(data["results"]):
            keeps = np.array([pk["keep"] for pk in ds["per_keep"]])
            for name, (color, ls) in _STYLE.items():
                vals = np.array([pk["cv"][name][metric] for pk in ds["per_keep"]])
                mean = vals.mean(axis=1)
                se = vals.std(axis=1, ddof=1) / np.sqrt(vals.shape[1])
                label = f"{name}, {ds['name']}"
                ax.errorbar(keeps + 0.004 * k, mean, se, color=color, ls=ls,
                            marker=markers[k], capsize=3, label=label)  # fmt: skip
        ax.set_xlabel("keep θ")
        ax.legend(fontsize=7)
    ax_ll.set_ylabel(f"held-out log-loss ({data['n_folds']}-fold CV, mean ± s.e.)")
    ax_ll.set_title("(d) held-out log-loss")
    ax_acc.set_ylabel("held-out accuracy")
    ax_acc.set_title("(e) test accuracy")
    ax_note.axis("off")
    ax_note.text(
        0.0, 1.0,
        "Logistic regression, inverted input dropout, intercept not dropped.\n"
        f"Dropout solution: SAA over {data['n_masks_saa']} masks per sample or more (L-BFGS-B).\n"
        f"R: Monte Carlo over {data['n_masks_mc']} fresh masks (bars: 95 %).\n"
        "Quadratic: Wager et al.'s adaptive L2, its reweighted-ridge fixed point.\n"
        "Ridge: λ/8 ‖β‖², the quadratic penalty at β = 0.\n"
        f"Digits: {data['pair'][0]} against {data['pair'][1]} (one pair, binary).\n"
        "Features standardised on each training fold.",
        va="top", fontsize=9,
    )  # fmt: skip
    fig.suptitle("(n) is dropout an adaptive L2? logistic regression on bundled real data")
    return fig


register(
    FigureSpec(
        "glm_adaptive_l2",
        "(n) logistic regression with input dropout on breast-cancer and digits data: exact "
        "(Monte Carlo) penalty vs the quadratic and Gaussian approximations, by margin; "
        "cross-validated dropout vs adaptive L2 vs ridge",
        compute_glm_adaptive_l2,
        plot_glm_adaptive_l2,
        requires=("sklearn",),
        extra="torch",
        checks={
            "keeps n_masks_saa n_masks_mc n_folds n_bins seed pair results/*/name "
            "results/*/n results/*/d results/*/per_keep/*/keep results/*/per_keep/*/saa_masks "
            "results/*/per_keep/*/cv/saa_masks "
            "results/*/per_keep/*/bins/count": EXACT,
            # how the fixed point was reached, not what it is
            "results/*/per_keep/*/quadratic_iterations": RECORD,
            # L-BFGS-B stops at gradient norm 1e-7; the ill-conditioned directions of the
            # correlated features move more than that across machines
            "results/*/per_keep/*/betas results/*/per_keep/*/intercepts "
            "results/*/per_keep/*/saa_objective results/*/per_keep/*/saa_stderr "
            "results/*/per_keep/*/penalty/quadratic results/*/per_keep/*/penalty/gaussian "
            "results/*/per_keep/*/bins/edges results/*/per_keep/*/bins/quadratic "
            "results/*/per_keep/*/bins/gaussian results/*/per_keep/*/cv/*/log_loss": solve(
                1e-3, scale="field"
            ),
            # a fraction of held-out samples: a solve within its accuracy may classify one
            # sample of a margin ≈ 0 the other way, 1/71 in the smallest fold (digits)
            "results/*/per_keep/*/cv/*/accuracy": solve(1 / 70, scale=1.0),
            # at a β that is the solve's (the same draws, but not the same β): z-score only
            "results/*/per_keep/*/penalty/mc": monte_carlo("mc_stderr"),
            "results/*/per_keep/*/bins/mc": monte_carlo("mc_stderr"),
            "results/*/per_keep/*/penalty/mc_stderr results/*/per_keep/*/bins/mc_stderr": solve(
                1e-3, scale="field"
            ),
        },
        references=(
            "wager2013dropout, eq. (8)",
            "wang2013fast",
        ),
    )
)
