r"""Figure (p): matrix completion with dropout against the trace norms, and the finite-Ω gap.

(p) ``completion_study`` -- a noisy low-rank matrix observed on N distinct entries, sampled
    uniformly or with power-law row and column popularity, completed five ways, each with
    its weight chosen on validation entries: dropout training of a factorization, the
    convex problem dropout induces, the trace norm, the weighted trace norm and the
    smoothed weighted trace norm. Test error against N for each sampling, and how far the
    dropout objective on the observed entries is from the convex problem.

**The matrix.** For each seed, :math:`T = AB^\top` with :math:`A \in \mathbb R^{m\times r}`,
:math:`B \in \mathbb R^{n\times r}` of i.i.d. standard normal entries, and one noisy copy
:math:`Y = T + \sigma Z`, :math:`\sigma` = ``NOISE`` × rms(T), Z standard normal; every
observation of entry (i, j), in any split, reads :math:`Y_{ij}`.

**The samplings** (:func:`split_entries`). Uniform: :math:`p_i = 1/m`, :math:`q_j = 1/n`.
Power law: :math:`p_i \propto \pi(i)^{-\alpha}`, :math:`q_j \propto \pi'(j)^{-\alpha}` with
α = ``ALPHA`` and random permutations π, π' (one per seed, shared by every N), so that
popularity is not the index order. Every row and column gets one training entry first: row i
the column drawn from q, then each column still empty the row drawn from p. The other
entries come from one draw of distinct pairs with probability ∝ :math:`p_iq_j` without
replacement (Gumbel top-k over all pairs not yet taken, :func:`gumbel_top_k`), split at
random into the rest of the training entries, the validation entries and the test entries,
which are therefore disjoint and drawn alike. The validation and test sets hold
``VALIDATION_FRACTION`` and ``TEST_FRACTION`` of the m·n entries; each N has its own draw.

**The errors.** The test error is the RMSE of the completed matrix against the noiseless
T on the test entries divided by rms(T) over all entries (1 for the zero matrix on
average); ``all_error`` is the same over all m·n entries.

**The methods**, each over its grid, the weight of lowest validation RMSE kept
(:func:`regtheory._ties.argmin_tied`, so that near-ties fall the same way on any processor):

* ``dropout``: :func:`regtheory.training.train_completion`, full batch, over ``KEEPS``;
* ``induced``: :func:`regtheory.completion.solve_induced`, the same keeps and width;
* ``trace``: :func:`regtheory.completion.solve_weighted_trace_norm` with smoothing 1,
  :math:`\mu\|M\|_*^2/(mn)`, μ over ``WEIGHTS``;
* ``weighted``: smoothing 0, :math:`\mu\|\operatorname{diag}(\sqrt p)M\operatorname{diag}(\sqrt
  q)\|_*^2` with the empirical marginals, the same μ;
* ``smoothed``: ζ over ``SMOOTHINGS`` and μ over ``WEIGHTS``, chosen jointly.

**The finite-Ω panel.** At keep ``FINITE_KEEP``: the minimum of the dropout objective on the
observed entries, :math:`J_\Omega` (:func:`regtheory.completion.solve_observed`, the best of
``STARTS`` L-BFGS starts), against that of the induced convex problem :math:`F_{pq}`
(``solve_induced``): :math:`(\min J_\Omega - \min F_{pq})/\min F_{pq}`, and
:math:`\|M_\Omega - M_{pq}\|_F/\|M_{pq}\|_F` for their minimisers; the spread of the
starts' objectives, (max − min)/min, says how rugged :math:`J_\Omega` is.

Intervals are 95 % Student-t intervals over the seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._ties import argmin_tied
from ..sweep import Sweep
from ._check import EXACT, RECORD, solve, trajectory
from ._intervals import student_t_interval
from ._registry import FigureSpec, register

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = [
    "CompletionProblem",
    "compute_completion_study",
    "gumbel_top_k",
    "make_problem",
    "plot_completion_study",
    "power_law_marginal",
    "split_entries",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


SHAPE = (80, 80)
RANK = 3
NOISE = 0.5  # σ / rms(T)
ALPHA = 1.0
WIDTH = 6  # d = 2r
FRACTIONS = (0.15, 0.25, 0.35, 0.5)  # N / (m n)
VALIDATION_FRACTION = 0.05
TEST_FRACTION = 0.1
SAMPLINGS = ("power_law", "uniform")
METHODS = ("dropout", "induced", "trace", "weighted", "smoothed")
KEEPS = (0.9, 0.7, 0.5, 0.3)
WEIGHTS = tuple(float(w) for w in np.logspace(-1.5, -0.5, 5))  # quarter decades
SMOOTHINGS = (0.25, 0.5, 0.75)
# A certified relative gap of 1e-4 moves the test errors by at most 2e-4 (relative) from
# those of a solve to 1e-8, measured over the grid at 80 × 80.
TOL = 1e-4
FINITE_KEEP = 0.5
FINITE_TOL = 1e-6
STARTS = 3
TRAINING = {"steps": 1000, "lr": 3.0, "lr_decay": 250.0, "init_scale": 0.1}


def _settings(quick: bool) -> dict[str, Any]:
    """The study's sizes; quick mode: a 30 × 30 matrix, two N, two seeds, short grids."""
    if quick:
        return {
            "shape": [30, 30],
            "fractions": [0.6, 0.7],
            "seeds": 2,
            "keeps": [0.7, 0.5],
            "weights": list(WEIGHTS[1:3]),
            "smoothings": [0.5],
            "starts": 2,
            "training": {**TRAINING, "steps": 200, "lr_decay": 50.0},
        }
    return {
        "shape": list(SHAPE),
        "fractions": list(FRACTIONS),
        "seeds": 5,
        "keeps": list(KEEPS),
        "weights": list(WEIGHTS),
        "smoothings": list(SMOOTHINGS),
        "starts": STARTS,
        "training": dict(TRAINING),
    }


# --------------------------------------------------------------------------- sampling


def power_law_marginal(size: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    r"""Popularities :math:`\propto k^{-\alpha}`, k = 1..size, in a random order; sum 1."""
    w = np.arange(1, size + 1, dtype=float) ** -alpha
    return rng.permutation(w / w.sum())


def gumbel_top_k(
    p: np.ndarray, q: np.ndarray, k: int, rng: np.random.Generator, *, exclude=None
) -> np.ndarray:
    r"""Draw ``k`` distinct pairs one after another with probability ∝ :math:`p_iq_j`.

    Returns flat indices :math:`i n + j` in the order drawn: the k largest of
    :math:`\log p_i + \log q_j + G_{ij}` with i.i.d. standard Gumbel :math:`G`, which is
    sampling without replacement with those weights (the first index is drawn from
    :math:`p \otimes q` exactly). Pairs in ``exclude`` (flat indices) are never drawn.
    """
    keys = (np.log(p)[:, None] + np.log(q)[None, :]).ravel() + rng.gumbel(size=p.size * q.size)
    if exclude is not None:
        keys[np.asarray(exclude)] = -np.inf
    order = np.argsort(-keys, kind="stable")
    if k > order.size - (0 if exclude is None else len(exclude)):
        raise ValueError(f"cannot draw {k} distinct pairs from {order.size} less those excluded")
    return order[:k]


def split_entries(
    p: np.ndarray,
    q: np.ndarray,
    n_train: int,
    n_validation: int,
    n_test: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint training, validation and test entries (flat indices i·n + j).

    Every row and column has a training entry: row i first gets the column drawn from q,
    then each column still without an entry the row drawn from p. The rest of the training
    entries and the validation and test entries are one :func:`gumbel_top_k` draw of the
    remaining pairs, split at random.
    """
    m, n = p.size, q.size
    cover_cols = rng.choice(n, size=m, p=q)
    empty = np.setdiff1d(np.arange(n), cover_cols)
    cover_rows = rng.choice(m, size=empty.size, p=p)
    cover = np.concatenate([np.arange(m) * n + cover_cols, cover_rows * n + empty])
    rest = n_train - cover.size
    if rest < 0:
        raise ValueError(f"{n_train} training entries cannot cover {cover.size} rows and columns")
    drawn = gumbel_top_k(p, q, rest + n_validation + n_test, rng, exclude=cover)
    drawn = drawn[rng.permutation(drawn.size)]
    return (
        np.concatenate([cover, drawn[:rest]]),
        drawn[rest : rest + n_validation],
        drawn[rest + n_validation :],
    )


@dataclass(frozen=True)
class CompletionProblem:
    """One completion task of the study (:func:`make_problem`).

    Attributes
    ----------
    truth : ndarray (m, n)
        The noiseless matrix T.
    observations : regtheory.completion.Observations
        The N training entries, read from the noisy copy Y.
    validation, test : ndarray of int
        Flat indices i·n + j of the validation and test entries.
    p, q : ndarray
        The sampling's row and column popularities.
    """

    truth: np.ndarray
    observations: Any
    validation: np.ndarray
    test: np.ndarray
    p: np.ndarray
    q: np.ndarray

    def errors(self, M: np.ndarray) -> dict[str, float]:
        """RMSE of M against T on validation, test and all entries, over rms(T)."""
        T = self.truth
        scale = float(np.sqrt(np.mean(T**2)))
        out = {}
        for name, where in (("validation", self.validation), ("test", self.test)):
            diff = M.ravel()[where] - T.ravel()[where]
            out[name] = float(np.sqrt(np.mean(diff**2)) / scale)
        out["all"] = float(np.sqrt(np.mean((M - T) ** 2)) / scale)
        return out


def make_problem(
    sampling: str, n_observed: int, seed: int, *, shape: tuple[int, int] = SHAPE
) -> CompletionProblem:
    """The study's completion task for one sampling, N and seed (module docstring).

    The matrix, its noisy copy and the power-law popularities depend on ``seed`` only;
    the split on the sampling and N too.
    """
    from .. import completion

    m, n = shape
    truth_rng = np.random.default_rng([seed, 0])
    A, B = truth_rng.standard_normal((m, RANK)), truth_rng.standard_normal((n, RANK))
    T = A @ B.T
    Y = T + NOISE * np.sqrt(np.mean(T**2)) * np.random.default_rng([seed, 1]).standard_normal(
        (m, n)
    )
    if sampling == "uniform":
        p, q = np.full(m, 1.0 / m), np.full(n, 1.0 / n)
    else:
        pop = np.random.default_rng([seed, 2])
        p, q = power_law_marginal(m, ALPHA, pop), power_law_marginal(n, ALPHA, pop)
    split = np.random.default_rng([seed, 3, SAMPLINGS.index(sampling), n_observed])
    train, validation, test = split_entries(
        p, q, n_observed, _count(VALIDATION_FRACTION, m, n), _count(TEST_FRACTION, m, n), split
    )
    rows, cols = np.divmod(train, n)
    obs = completion.observed(rows, cols, Y[rows, cols], (m, n))
    return CompletionProblem(T, obs, validation, test, p, q)


def _count(fraction: float, m: int, n: int) -> int:
    return int(round(fraction * m * n))


# --------------------------------------------------------------------------- the cells


def _fit(cell: dict) -> dict:
    """One method at one weight on one task: its errors (a cell of the sweep)."""
    from .. import completion, training

    problem = make_problem(cell["sampling"], cell["n"], cell["seed"], shape=tuple(cell["shape"]))
    obs, method, w = problem.observations, cell["method"], cell["weight"]
    out: dict[str, Any] = {}
    if method == "dropout":
        t = cell["training"]
        run = training.train_completion(
            obs,
            w,
            WIDTH,
            steps=t["steps"],
            lr=t["lr"],
            lr_decay=t["lr_decay"],
            init_scale=t["init_scale"],
            rng=cell["seed"],
            record_every=max(t["steps"] // 10, 1),
        )
        M = run.M
        # how settled the run is: the relative change of its expected objective over the
        # last fifth of the steps
        tail = run.loss[run.steps >= 0.8 * t["steps"]]
        out["loss"] = float(run.loss[-1])
        out["loss_change"] = float(abs(tail[0] - tail[-1]) / tail[-1])
    elif method == "induced":
        M = completion.solve_induced(obs, w, WIDTH, method="proximal", tol=TOL).M
    else:
        zeta = {"trace": 1.0, "weighted": 0.0}.get(method, cell.get("smoothing", 0.0))
        M = completion.solve_weighted_trace_norm(
            obs, w, smoothing=zeta, method="proximal", tol=TOL
        ).M
    out.update(problem.errors(M))
    return out


def _finite(cell: dict) -> dict:
    """The minimum of J_Ω against that of the induced problem, on one task."""
    from .. import completion

    problem = make_problem(cell["sampling"], cell["n"], cell["seed"], shape=tuple(cell["shape"]))
    obs = problem.observations
    on = completion.solve_observed(obs, FINITE_KEEP, WIDTH, starts=cell["starts"], rng=cell["seed"])
    pq = completion.solve_induced(obs, FINITE_KEEP, WIDTH, method="proximal", tol=FINITE_TOL)
    starts = np.asarray(on.start_objectives)
    return {
        "relative_difference": (on.objective - pq.objective) / pq.objective,
        "matrix_difference": float(np.linalg.norm(on.M - pq.M) / np.linalg.norm(pq.M)),
        "start_spread": float((starts.max() - starts.min()) / starts.min()),
        "observed_objective": on.objective,
        "induced_objective": pq.objective,
        "observed_test_error": problem.errors(on.M)["test"],
        "induced_test_error": problem.errors(pq.M)["test"],
        "gradient_norm": on.gradient_norm,
    }


def _run(cell: dict) -> dict:
    return _finite(cell) if cell["method"] == "finite" else _fit(cell)


def _grid(method: str, s: dict) -> list[dict]:
    """The weights a method is tuned over, each a dict of the cell's keys."""
    if method in ("dropout", "induced"):
        return [{"weight": k} for k in s["keeps"]]
    if method == "smoothed":
        return [{"smoothing": z, "weight": w} for z in s["smoothings"] for w in s["weights"]]
    return [{"weight": w} for w in s["weights"]]


def _with_intervals(fields: dict[str, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, values in fields.items():
        out[key] = values
        out[f"{key}_interval"] = student_t_interval(values)
    return out


def compute_completion_study(quick: bool, seed: int, sweep: Sweep | None = None) -> dict:
    """Data of figure (p) ``completion_study``.

    Parameters
    ----------
    quick : bool
        Quick mode: a 30 × 30 matrix, two N, two seeds, two weights per method.
    seed : int
        Offset of the seeds: the tasks use ``seed``, ``seed + 1``, …
    sweep : regtheory.sweep.Sweep, optional
        Where the independent fits run (serially by default).

    Returns
    -------
    dict
        The JSON-serialisable data that :func:`plot_completion_study` draws.
    """
    s = _settings(quick)
    m, n = s["shape"]
    counts = [_count(f, m, n) for f in s["fractions"]]
    seeds = [seed + k for k in range(s["seeds"])]
    base = {"shape": s["shape"], "training": s["training"], "starts": s["starts"]}
    cells = []
    for sampling in SAMPLINGS:
        for count in counts:
            for sd in seeds:
                task = {**base, "sampling": sampling, "n": count, "seed": sd}
                cells.append({**task, "method": "finite"})
                for method in METHODS:
                    cells.extend({**task, "method": method, **g} for g in _grid(method, s))
    results = dict(zip(map(_key, cells), (sweep or Sweep()).map(_run, cells)))
    samplings = {}
    for sampling in SAMPLINGS:
        methods = {}
        for method in METHODS:
            grid = _grid(method, s)
            rows = []
            for count in counts:
                fields: dict[str, list] = {"test_error": [], "all_error": []}
                chosen, validation, losses, changes = [], [], [], []
                for sd in seeds:
                    task = {"sampling": sampling, "n": count, "seed": sd, "method": method}
                    runs = [results[_key({**task, **g})] for g in grid]
                    scores = [r["validation"] for r in runs]
                    best = argmin_tied(scores)
                    chosen.append(best)
                    validation.append(scores)
                    fields["test_error"].append(runs[best]["test"])
                    fields["all_error"].append(runs[best]["all"])
                    if method == "dropout":
                        losses.append([r["loss"] for r in runs])
                        changes.append([r["loss_change"] for r in runs])
                row = {"n": count, "chosen": chosen, "validation_error": validation}
                row.update(_with_intervals(fields))
                if method == "dropout":
                    row["loss"], row["loss_change"] = losses, changes
                rows.append(row)
            methods[method] = {"grid": grid, "results": rows}
        finite = []
        for count in counts:
            runs = [
                results[_key({"sampling": sampling, "n": count, "seed": sd, "method": "finite"})]
                for sd in seeds
            ]
            keys = runs[0].keys()
            finite.append({"n": count, **_with_intervals({k: [r[k] for r in runs] for k in keys})})
        samplings[sampling] = {"methods": methods, "finite": finite}
    return {
        "shape": s["shape"],
        "rank": RANK,
        "width": WIDTH,
        "noise": NOISE,
        "alpha": ALPHA,
        "fractions": s["fractions"],
        "n_observed": counts,
        "n_validation": _count(VALIDATION_FRACTION, m, n),
        "n_test": _count(TEST_FRACTION, m, n),
        "seed": seed,
        "seeds": s["seeds"],
        "keeps": s["keeps"],
        "weights": s["weights"],
        "smoothings": s["smoothings"],
        "tol": TOL,
        "finite_keep": FINITE_KEEP,
        "finite_tol": FINITE_TOL,
        "starts": s["starts"],
        "training": s["training"],
        "samplings": samplings,
    }


def _key(cell: dict) -> tuple:
    return tuple(cell.get(k) for k in ("sampling", "n", "seed", "method", "smoothing", "weight"))


# --------------------------------------------------------------------------- the plot

LABELS = {
    "dropout": "dropout training",
    "induced": "induced convex problem",
    "trace": "trace norm",
    "weighted": "weighted trace norm",
    "smoothed": "smoothed weighted trace norm",
}
_STYLE = {
    "dropout": ("C0", "o", "-"),
    "induced": ("C1", "s", "--"),
    "trace": ("0.4", "^", ":"),
    "weighted": ("C2", "D", "-."),
    "smoothed": ("C3", "v", "-"),
}


def _errors_panel(ax: Any, data: dict, sampling: str) -> None:
    shift = 0.006 * data["shape"][0] * data["shape"][1]
    for k, method in enumerate(METHODS):
        rows = data["samplings"][sampling]["methods"][method]["results"]
        x = np.array([r["n"] for r in rows], dtype=float) + (k - 2) * shift
        iv = [r["test_error_interval"] for r in rows]
        color, marker, line = _STYLE[method]
        ax.errorbar(
            x,
            [i["mean"] for i in iv],
            yerr=[i["half_width"] for i in iv],
            color=color,
            marker=marker,
            ls=line,
            ms=5,
            capsize=2,
            label=LABELS[method],
        )
    ax.set_xlabel("N, training entries")
    ax.set_ylabel("test RMSE / rms(T)")
    ax.grid(True, alpha=0.25)


def plot_completion_study(data: dict) -> Figure:
    """Draw figure (p) from the data of :func:`compute_completion_study`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(21.0, 4.8), layout="constrained")
    ax_pl, ax_un, ax_gap, ax_far = fig.subplots(1, 4)
    m, n = data["shape"]
    _errors_panel(ax_pl, data, "power_law")
    ax_pl.set_title(f"(a) power-law sampling (α = {data['alpha']:g})")
    ax_pl.legend(fontsize=8.5)
    _errors_panel(ax_un, data, "uniform")
    ax_un.set_title("(b) uniform sampling")
    lo = min(ax_pl.get_ylim()[0], ax_un.get_ylim()[0])
    hi = max(ax_pl.get_ylim()[1], ax_un.get_ylim()[1])
    ax_pl.set_ylim(lo, hi)
    ax_un.set_ylim(lo, hi)
    for ax, field, scale in (
        (ax_gap, "relative_difference", 100.0),
        (ax_far, "matrix_difference", 1.0),
    ):
        for sampling, color in (("power_law", "C3"), ("uniform", "C0")):
            rows = data["samplings"][sampling]["finite"]
            iv = [r[f"{field}_interval"] for r in rows]
            ax.errorbar(
                [r["n"] for r in rows],
                [scale * i["mean"] for i in iv],
                yerr=[scale * i["half_width"] for i in iv],
                color=color,
                marker="o",
                ms=4,
                capsize=2,
                label=sampling.replace("_", "-"),
            )
        ax.set_xlabel("N, training entries")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8.5)
    keep = data["finite_keep"]
    ax_gap.axhline(0.0, color="k", lw=0.8)
    ax_gap.set_ylabel(r"$(\min J_\Omega - \min F_{pq})\,/\,\min F_{pq}$  (%)")
    ax_gap.set_title(f"(c) minimum on Ω against the product form's (keep {keep:g})")
    ax_far.set_yscale("log")
    ax_far.set_ylabel(r"$\|M_\Omega - M_{pq}\|_F\,/\,\|M_{pq}\|_F$")
    ax_far.set_title("(d) distance between their minimisers")
    fig.suptitle(
        f"(p) completing a rank-{data['rank']} {m}×{n} matrix (noise {data['noise']:g} rms), "
        f"width {data['width']}, weights chosen on {data['n_validation']} validation entries, "
        f"{data['n_test']} test entries, {data['seeds']} seeds (mean ± 95 % interval)",
        fontsize=11,
    )
    return fig


# --------------------------------------------------------------------------- checks

# The proximal solves: the same iterations on every machine, each rounded differently.
# Under OpenBLAS's Haswell kernels the errors of the full record move by at most 2.4e-13
# (relative); 1e-6 leaves that a wide margin and still flags a solve that stopped at
# another iteration (its gap estimate within rounding of TOL), which moves them by up to
# the 2e-4 a gap of TOL allows. The choice of weight is exact: a flip fails the check.
SOLVE_ERROR_RTOL = 1e-6
# Dropout training with real masks: the same masks on every machine (the same seed); under
# the Haswell kernels the trained errors came out the same to the bit.
TRAINING_ERROR_RTOL = 1e-6
# J_Ω by L-BFGS: at N ≥ 25 % every start converges and the results move by at most 1e-5
# (relative) under the Haswell kernels. At 15 % the starts end at L-BFGS's iteration limit,
# along directions where J_Ω hardly changes, and where they end depends on the rounding:
# the objective moved by 2.1e-4 (relative), the gap to the product form by 2.0e-4 and the
# spread of the starts by 2.4e-3 (both absolute: they are relative numbers themselves),
# and the minimiser, with the distances and errors computed from it, by up to 31 %.
OBSERVED_OBJECTIVE_RTOL = 1e-3
FINITE_GAP_ATOL = 1e-3
START_SPREAD_ATOL = 1e-2
OBSERVED_MATRIX_RTOL = 1.0

_SOLVED = "induced trace weighted smoothed"
_FIELDS = "test_error all_error validation_error test_error_interval/* all_error_interval/*"


def _finite_paths(fields: str) -> str:
    return " ".join(
        f"samplings/*/finite/*/{f} samplings/*/finite/*/{f}_interval/*" for f in fields.split()
    )


def _paths(methods: str, fields: str) -> str:
    return " ".join(
        f"samplings/*/methods/{m}/results/*/{f}" for m in methods.split() for f in fields.split()
    )


register(
    FigureSpec(
        "completion_study",
        "(p) matrix completion: dropout training, its induced convex problem and the "
        "(weighted, smoothed) trace norms under uniform and power-law sampling",
        compute_completion_study,
        plot_completion_study,
        sweeps=True,
        checks={
            "shape rank width noise alpha fractions n_observed n_validation n_test seed seeds "
            "keeps weights smoothings tol finite_keep finite_tol starts training/* "
            "samplings/*/methods/*/grid samplings/*/methods/*/results/*/n "
            "samplings/*/methods/*/results/*/chosen samplings/*/finite/*/n": EXACT,
            _paths(_SOLVED, _FIELDS): solve(SOLVE_ERROR_RTOL, scale="value"),
            _paths("dropout", f"{_FIELDS} loss loss_change"): trajectory(TRAINING_ERROR_RTOL),
            _finite_paths("induced_objective induced_test_error"): solve(
                SOLVE_ERROR_RTOL, scale="value"
            ),
            _finite_paths("observed_objective"): trajectory(OBSERVED_OBJECTIVE_RTOL),
            _finite_paths("relative_difference"): trajectory(FINITE_GAP_ATOL, scale=1.0),
            _finite_paths("start_spread"): trajectory(START_SPREAD_ATOL, scale=1.0),
            _finite_paths("matrix_difference observed_test_error"): trajectory(
                OBSERVED_MATRIX_RTOL
            ),
            "samplings/*/finite/*/gradient_norm "
            "samplings/*/finite/*/gradient_norm_interval/*": RECORD,
        },
        references=(
            "cavazza2018dropout",
            "arora2021dropout",
            "salakhutdinov2010collaborative",
            "foygel2011learning",
        ),
    )
)
