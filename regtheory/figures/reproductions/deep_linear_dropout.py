r"""Reproduction (u) ``deep_linear_dropout``: trained deep linear nets against their Θ_L.

Mianjy & Arora (ICML 2019) show that dropout at the hidden layers of a deep linear network
induces a regularizer on the end-to-end map, :math:`\Theta_L(M)`, the least dropout penalty
over the factorizations of M (THEORY §6; its convex envelope is a multiple of the squared
nuclear norm). Of the paper only the abstract could be read: its experiments (depths,
widths, data, rates, steps) and numbers are not read, so every setting below is ours and
every claim is compared in shape. The abstract's statement that the convex envelope of
the induced regularizer is the squared nuclear norm of the map is claim 4, tested where
it is sharp: the bound :math:`\nu_L\|M\|_*^2` holds for every trained net and is met by
the trained maps of rank one (its constant is the package's; the paper's was not read).

**What is computed.** Deep linear nets :math:`x \mapsto W_L D_{L-1} W_{L-1} \cdots D_1 W_1 x`
(depth L = 2, 3, 4, every hidden layer 4 units wide, an inverted Bernoulli mask
:math:`D_i` after each, keep 0.5 and 0.8) are trained by real dropout SGD on a linear
regression task: 64 inputs x ~ N(0, I) in dimension 3, whitened so that their second
moment is exactly I (then every expectation over the data below is the population's), and
targets y = M*x with M* = P diag(3, 1.5, 0.5) Qᵀ, P and Q random rotations. The SGD is
written here (the package's trainers train two-layer nets): full batch, one fresh mask per
sample and hidden layer at every step, hand gradients of the sampled loss, steps
η/(1 + t/τ) through :mod:`regtheory._sgd`. For each trained net:

1. its exact dropout penalty on the data (:func:`regtheory.network.dropout_penalty`, moment
   propagation) against :math:`\Theta_L` of its own end-to-end map
   (:func:`regtheory.implied.deep_induced_regularizer`). The penalty of any factorization
   is at least :math:`\Theta_L`; the value the package returns is the best local minimum of
   several starts, an *upper* bound on :math:`\Theta_L`, so a ratio below 1 would mean the
   trained net beat the local search. Beside it is the rigorous lower bound
   :math:`\nu_L\|M\|_*^2`, met by rank-one maps: there penalty / bound bounds how far the
   trained factorization is from the global minimum. Singular values of the trained map
   below 1e-3 of the largest (what SGD leaves of directions it is killing) are set to zero
   before :math:`\Theta_L` is computed: the solve is ill-conditioned on them, and their size
   is recorded (``truncated``).
2. its end-to-end map against the minimiser of the implied problem
   :math:`\mathbb E\|y - Mx\|^2 + \Theta_L(M)`. The package has no solver for it at
   L > 2, so it is solved here as the deterministic minimisation of the expected dropout
   objective over the factors (the same problem: the minimum over the factors of a map is
   :math:`\Theta_L`), by L-BFGS from several random starts with the exact gradient of the
   moment propagation; at L = 2 it is the closed form
   :func:`regtheory.fc.global_optimum` (the tests check that).
3. the shrinkage of the spectrum with depth: the nuclear norm of the trained map falls with
   L at each keep, as :math:`\Theta_L` grows with L (its envelope constant
   :math:`\nu_L = (1+\lambda/w)^{L-1} - 1`), and at keep 0.5 the maps of depth ≥ 3 are of
   rank one.

Chosen by us (nothing of the paper's setup was read): the dimension, width, spectrum,
sample, keeps, depths, and the SGD schedule.
"""

from __future__ import annotations

import functools
import itertools
from typing import TYPE_CHECKING

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from ... import _sgd, network
from ...implied import deep_induced_regularizer
from ...masks import Bernoulli, dropout_lambda
from ...network import Dropout, Linear
from .._check import EXACT, TRAINING_RTOL, closed_form, solve, trajectory
from .._registry import FigureSpec, register
from ._claims import NOT_READ, claim, draw_claims, verdict

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = [
    "compute_deep_linear_dropout",
    "end_to_end",
    "expected_objective",
    "plot_deep_linear_dropout",
    "sampled_loss",
    "task",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


DIM, WIDTH, N_SAMPLES = 3, 4, 64
TARGET_SPECTRUM = (3.0, 1.5, 0.5)
DEPTHS = (2, 3, 4)
KEEPS = (0.5, 0.8)
LR = 0.02
STEPS = {True: 10_000, False: 60_000}  # quick, full
LR_DECAY = {True: 500.0, False: 1_000.0}
N_RECORDS = 60
TRUNCATE_RTOL = 1e-3
STARTS = 3  # random starts of each Θ_L solve and of each implied problem
# The claims' tests, far from what the runs give over seeds 0..5: |penalty/Θ_L - 1| ≤ 4e-3
# (quick; full 5e-4), map gaps ≤ 0.085 (quick; full 0.031), nuclear-norm drops ≥ 0.087 per
# added layer (quick; full 0.106).
FIBRE_TOL = 0.05
MAP_GAP_MAX = 0.3
MIN_DROP = 0.02
# L-BFGS of the implied problem: its values and maps within this of another machine's.
IMPLIED_RTOL = 1e-5
PAPER = "mianjy2019dropout"


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A random DIM × DIM rotation: QR of a Gaussian matrix, signs fixed by R's diagonal."""
    q, r = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    return q * np.sign(np.diag(r))


def task(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The regression task of ``seed``: the map M* and the whitened inputs X, targets Y.

    Parameters
    ----------
    seed : int
        Seed of the rotations of M* and of the inputs.

    Returns
    -------
    M_star : ndarray (3, 3)
        P diag(3, 1.5, 0.5) Qᵀ, P and Q random rotations.
    X, Y : ndarrays (64, 3)
        Standard normal inputs made exactly white (XᵀX/n = I) and the targets X M*ᵀ.
    """
    rng = np.random.default_rng(seed)
    P, Q = _rotation(rng), _rotation(rng)
    M_star = P @ np.diag(TARGET_SPECTRUM) @ Q.T
    X = rng.standard_normal((N_SAMPLES, DIM))
    chol = np.linalg.cholesky(X.T @ X / N_SAMPLES)
    X = np.linalg.solve(chol, X.T).T  # second moment L⁻¹ (XᵀX/n) L⁻ᵀ = I
    return M_star, X, X @ M_star.T


def end_to_end(weights: list[np.ndarray]) -> np.ndarray:
    """The map W_L ⋯ W_1 of ``weights`` = [W_1, …, W_L] (``nn.Linear`` layout).

    Parameters
    ----------
    weights : list of ndarray
        The factors, first layer first.

    Returns
    -------
    ndarray
        Their product.
    """
    return functools.reduce(lambda acc, W: W @ acc, weights[1:], weights[0])


def sampled_loss(
    weights: list[np.ndarray], X: np.ndarray, Y: np.ndarray, masks: np.ndarray
) -> tuple[float, list[np.ndarray]]:
    r"""The dropout loss of a batch under given masks, and its gradient by hand.

    :math:`h_0 = x`, :math:`h_i = m_i \circ (W_i h_{i-1})` for the hidden layers,
    :math:`\ell = \frac1b\sum_k\|W_L h_{L-1} - y_k\|^2`; back-propagation of the residual
    through the masked layers, all samples at once.

    Parameters
    ----------
    weights : list of ndarray
        W_1 (w, d_in), W_2 … W_{L-1} (w, w), W_L (d_out, w).
    X, Y : ndarray (b, d_in), (b, d_out)
        The batch.
    masks : ndarray (b, L - 1, w)
        The scaled masks m/θ, one per sample and hidden layer.

    Returns
    -------
    loss : float
        The sampled loss.
    grads : list of ndarray
        Its gradient in each factor.
    """
    b = X.shape[0]
    hidden = [X]
    for i, W in enumerate(weights[:-1]):
        hidden.append((hidden[-1] @ W.T) * masks[:, i])
    E = hidden[-1] @ weights[-1].T - Y
    g = (2.0 / b) * E
    grads: list[np.ndarray] = [np.empty(0)] * len(weights)
    for i in range(len(weights) - 1, -1, -1):
        grads[i] = g.T @ hidden[i]
        if i:
            g = (g @ weights[i]) * masks[:, i - 1]
    return float(np.einsum("ij,ij->", E, E)) / b, grads


def expected_objective(
    weights: list[np.ndarray], keep: float, moments: tuple[np.ndarray, np.ndarray, float]
) -> tuple[float, list[np.ndarray]]:
    r"""The expected dropout objective of a deep linear net and its exact gradient.

    With :math:`Q_0 = C`, :math:`Q_i = A_i + \lambda\,\mathrm{Diag}(A_i)`,
    :math:`A_i = W_iQ_{i-1}W_i^\top` and :math:`M = W_L\cdots W_1`:
    :math:`J = \mathbb E\|y\|^2 - 2\langle M, T\rangle + \mathrm{tr}(W_LQ_{L-1}W_L^\top)`,
    the plain loss plus the penalty (THEORY §6); the gradient is the adjoint of the
    propagation.

    Parameters
    ----------
    weights : list of ndarray
        W_1 … W_L, first layer first.
    keep : float
        Retain probability θ of every hidden layer.
    moments : tuple (ndarray, ndarray, float)
        C = E[xxᵀ], T = E[yxᵀ] and E‖y‖² of the data.

    Returns
    -------
    value : float
        J.
    grads : list of ndarray
        ∂J/∂W_i.
    """
    C, T, yy = moments
    lam = dropout_lambda(keep)
    Qs, Ps = [C], [np.eye(C.shape[0])]
    for W in weights[:-1]:
        A = W @ Qs[-1] @ W.T
        Qs.append(A + lam * np.diag(np.diag(A)))
        Ps.append(W @ Ps[-1])
    last = weights[-1]
    value = yy - 2.0 * np.sum((last @ Ps[-1]) * T) + np.sum((last @ Qs[-1]) * last)
    grads: list[np.ndarray] = [np.empty(0)] * len(weights)
    grads[-1] = 2.0 * last @ Qs[-1] - 2.0 * T @ Ps[-1].T
    G, H = last.T @ last, -2.0 * last.T @ T  # adjoints of Q_{L-1} and of P_{L-1}
    for i in range(len(weights) - 2, -1, -1):
        W = weights[i]
        Gp = G + lam * np.diag(np.diag(G))
        grads[i] = 2.0 * Gp @ W @ Qs[i] + H @ Ps[i].T
        G, H = W.T @ Gp @ W, W.T @ H
    return float(value), grads


def _shapes(depth: int) -> list[tuple[int, int]]:
    return [(WIDTH, DIM)] + [(WIDTH, WIDTH)] * (depth - 2) + [(DIM, WIDTH)]


def _initial(depth: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Factors with i.i.d. N(0, 1/fan-in) entries."""
    return [rng.standard_normal(s) / np.sqrt(s[1]) for s in _shapes(depth)]


def _train(
    keep: float,
    depth: int,
    data: tuple[np.ndarray, np.ndarray],
    moments: tuple,
    *,
    quick: bool,
    rng: np.random.Generator,
) -> _sgd.History:
    """Dropout SGD of one net (module docstring), recording J every steps/60 steps."""
    X, Y = data
    mask = Bernoulli(keep)

    def step(params, rows, gen):  # full batch: rows is None
        masks = mask.sample((depth - 1, WIDTH), len(X), gen)
        loss, grads = sampled_loss(list(params), X, Y, masks)
        return loss, tuple(grads)

    steps = STEPS[quick]
    schedule = _sgd.check_schedule(
        steps, LR, 1.0, LR_DECAY[quick], len(X), steps // N_RECORDS, len(X)
    )
    params = tuple(_initial(depth, rng))
    objective = lambda p: expected_objective(list(p), keep, moments)[0]  # noqa: E731
    return _sgd.run(params, step, schedule, len(X), rng, objective, lambda p: ())


def _implied(keep: float, depth: int, moments: tuple, *, rng: np.random.Generator) -> dict:
    """The implied problem's minimiser: L-BFGS on J over the factors, best of STARTS."""
    shapes = _shapes(depth)
    cuts = np.cumsum([a * b for a, b in shapes])[:-1]

    def unstack(z: np.ndarray) -> list[np.ndarray]:
        return [p.reshape(s) for p, s in zip(np.split(z, cuts), shapes, strict=True)]

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        value, grads = expected_objective(unstack(z), keep, moments)
        return value, np.concatenate([g.ravel() for g in grads])

    runs = []
    for _ in range(STARTS):
        z0 = np.concatenate([W.ravel() for W in _initial(depth, rng)])
        runs.append(
            optimize.minimize(
                fun,
                z0,
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": 20_000, "maxcor": 30, "gtol": 1e-12, "ftol": 1e-15},
            )
        )
    values = np.array([r.fun for r in runs])
    M = end_to_end(unstack(runs[int(np.argmin(values))].x))
    return {
        "objective": float(values.min()),
        "spread": float((values.max() - values.min()) / values.min()),
        "map": M,
        "singular_values": np.linalg.svd(M, compute_uv=False),
    }


def _truncated(M: np.ndarray) -> tuple[np.ndarray, float, int]:
    """M with its singular values below TRUNCATE_RTOL of the largest set to 0.

    Also returns the relative size of what was set to 0 and the rank left.
    """
    U, s, Vt = np.linalg.svd(M)
    kept = np.where(s >= TRUNCATE_RTOL * s[0], s, 0.0)
    Mt = (U[:, : s.size] * kept) @ Vt
    return Mt, float(np.linalg.norm(M - Mt) / np.linalg.norm(M)), int(np.count_nonzero(kept))


def _net(keep: float, depth: int, seed: int, k: int, data: tuple, *, quick: bool) -> dict:
    """Train the k-th net and set it against Θ_L and the implied problem."""
    X, Y = data
    moments = (X.T @ X / len(X), Y.T @ X / len(X), float(np.sum(Y * Y)) / len(X))
    rng = np.random.default_rng([seed, k])
    # Matrices a few units wide: BLAS threads only add synchronisation (L-BFGS-B's small
    # products slow down tenfold when the cores are shared).
    with threadpool_limits(limits=1, user_api="blas"):
        history = _train(keep, depth, data, moments, quick=quick, rng=rng)
        weights = [np.array(W) for W in history.params]
        M = end_to_end(weights)
        layers: list = [Linear(weights[0])]  # W_1, then a mask before each further layer
        for W in weights[1:]:
            layers += [Dropout(Bernoulli(keep)), Linear(W)]
        penalty = float(network.dropout_penalty(layers, X, method="exact"))
        Mt, dropped, rank = _truncated(M)
        theta = deep_induced_regularizer(
            Mt, keep, WIDTH, depth, cov=moments[0], starts=STARTS, rng=rng
        )
        implied = _implied(keep, depth, moments, rng=rng)
    return {
        "keep": keep,
        "depth": depth,
        "record_steps": history.steps,
        "objective": history.loss,
        "weights": weights,
        "trained_map": M,
        "trained_singular_values": np.linalg.svd(M, compute_uv=False),
        "nuclear_norm": float(np.linalg.svd(M, compute_uv=False).sum()),
        "penalty": penalty,
        "truncated": dropped,
        "rank": rank,
        "theta": theta.value,
        "theta_spread": theta.spread,
        "lower_bound": theta.lower_bound,
        "ratio": penalty / theta.value,
        "lower_ratio": penalty / theta.lower_bound,
        "implied_objective": implied["objective"],
        "implied_spread": implied["spread"],
        "implied_map": implied["map"],
        "implied_singular_values": implied["singular_values"],
        "map_gap": float(np.linalg.norm(M - implied["map"]) / np.linalg.norm(implied["map"])),
    }


def _claims(nets: list[dict]) -> list[dict]:
    """The four claims of the figure, each tested far from what the runs give."""
    fibre = max(abs(n["ratio"] - 1.0) for n in nets)
    gap = max(n["map_gap"] for n in nets)
    nuclear = {(n["keep"], n["depth"]): n["nuclear_norm"] for n in nets}
    drop = min(
        1.0 - nuclear[keep, b] / nuclear[keep, a]
        for keep in KEEPS
        for a, b in itertools.pairwise(DEPTHS)
    )
    common = {"paper": PAPER, "theirs": NOT_READ, "where": NOT_READ}
    return [
        claim(
            **common,
            claim="Dropout SGD on a deep linear net ends at a factorization of least dropout "
            "penalty among those of its own map: the penalty equals the induced regularizer "
            "Θ_L of the map.",
            ours=fibre,
            measure="largest |penalty / Θ_L - 1| over the 6 trained nets (Θ_L: best local "
            "minimum of deep_induced_regularizer)",
            verdict=verdict(fibre <= FIBRE_TOL, in_shape=True),
            reason=f"the trained penalty meets Θ_L (test: ≤ {FIBRE_TOL:g}); the paper's "
            "experiments were not read."
            if fibre <= FIBRE_TOL
            else f"a trained net pays more than {FIBRE_TOL:g} above Θ_L of its map.",
        ),
        claim(
            **common,
            claim="The map learned by dropout is the minimiser of the implied problem "
            "E||y - Mx||² + Θ_L(M).",
            ours=gap,
            measure="largest ||M_SGD - M_implied||_F / ||M_implied||_F over the 6 nets "
            "(implied: L-BFGS on the expected objective)",
            verdict=verdict(gap <= MAP_GAP_MAX, in_shape=True),
            reason=f"SGD with real masks and the deterministic solve agree (test: ≤ "
            f"{MAP_GAP_MAX:g}); the paper's setup was not read."
            if gap <= MAP_GAP_MAX
            else f"a trained map is more than {MAP_GAP_MAX:g} away from the implied minimiser.",
        ),
        claim(
            **common,
            claim="The induced regularizer grows with depth, so the learned spectrum is "
            "shrunk more, and truncated, the deeper the net.",
            ours=drop,
            measure="smallest relative drop of the trained map's nuclear norm from depth L "
            "to L + 1, at each keep",
            verdict=verdict(drop >= MIN_DROP, in_shape=True),
            reason=f"every added layer shrinks the map (test: drop ≥ {MIN_DROP:g}); the "
            "paper's numbers were not read."
            if drop >= MIN_DROP
            else "an added layer does not shrink the trained map.",
        ),
        _envelope_claim(nets),
    ]


def _envelope_claim(nets: list[dict]) -> dict:
    """The abstract's statement: Θ_L ≥ ν_L‖M‖*², met by the trained maps of rank one.

    Every net's penalty must be above the bound (to rounding) and the rank-one ones must
    meet it within FIBRE_TOL; a record without a rank-one net fails.
    """
    above = min(n["lower_ratio"] for n in nets) >= 1.0 - 1e-6
    rank_one = [abs(n["lower_ratio"] - 1.0) for n in nets if n["rank"] == 1]
    meets = max(rank_one, default=np.inf)
    holds = above and meets <= FIBRE_TOL
    return claim(
        paper=PAPER,
        claim="The convex envelope of the induced regularizer is the squared nuclear norm "
        "of the map: Θ_L(M) ≥ ν_L||M||*², with equality at rank one (ν_L = (1 + λ/w)^(L-1) "
        "- 1 is the package's constant; the paper's was not read).",
        theirs="the convex envelope of the induced regularizer is the squared nuclear norm "
        "of the network map",
        where="abstract (ICML 2019 oral page, icml.cc/virtual/2019/oral/4365)",
        ours=meets if rank_one else 0.0,
        measure="largest |penalty / (ν_L||M||*²) - 1| over the trained nets of rank one "
        "(every net's penalty is above the bound)",
        verdict=verdict(holds, in_shape=True),
        reason=f"every trained net pays at least ν_L||M||*² and the rank-one ones pay it "
        f"(test: within {FIBRE_TOL:g}); the constant is the package's."
        if holds
        else "a trained net is below the bound, or no rank-one net meets it.",
    )


def compute_deep_linear_dropout(quick: bool, seed: int) -> dict:
    """Data of reproduction (u) ``deep_linear_dropout`` (module docstring).

    Parameters
    ----------
    quick : bool
        The quick mode: 10,000 SGD steps per net instead of 60,000.
    seed : int
        Seed of the task and of every net's training and solves.

    Returns
    -------
    dict
        The settings, one record per (keep, depth) net, and the claims.
    """
    M_star, X, Y = task(seed)
    grid = list(itertools.product(KEEPS, DEPTHS))
    nets = [_net(keep, depth, seed, k, (X, Y), quick=quick) for k, (keep, depth) in enumerate(grid)]
    return {
        "seed": seed,
        "dim": DIM,
        "width": WIDTH,
        "n_samples": N_SAMPLES,
        "target_spectrum": TARGET_SPECTRUM,
        "target_map": M_star,
        "depths": DEPTHS,
        "keeps": KEEPS,
        "steps": STEPS[quick],
        "lr": LR,
        "lr_decay": LR_DECAY[quick],
        "truncate_rtol": TRUNCATE_RTOL,
        "starts": STARTS,
        "nets": nets,
        "claims": _claims(nets),
    }


def _plot_spectra(ax, data: dict, keep: float) -> None:
    """Singular values of the trained and the implied maps against depth, at one keep."""
    nets = [n for n in data["nets"] if n["keep"] == keep]
    depths = [n["depth"] for n in nets]
    trained = np.array([n["trained_singular_values"] for n in nets])
    implied = np.array([n["implied_singular_values"] for n in nets])
    for i, target in enumerate(data["target_spectrum"]):
        ax.axhline(target, color=f"C{i}", ls=":", lw=1)
        ax.plot(depths, implied[:, i], "-", color=f"C{i}", lw=1.4)
        ax.plot(depths, trained[:, i], "o", color=f"C{i}", mfc="none", ms=7)
    ax.plot([], [], "k:", label="target M* (no dropout)")
    ax.plot([], [], "k-", label="implied problem (L-BFGS)")
    ax.plot([], [], "ko", mfc="none", label="dropout SGD, real masks")
    ax.set_xticks(depths)
    ax.set(xlabel="depth L", ylabel="singular values of the end-to-end map")
    ax.set_title(f"keep {keep:g} (λ = {dropout_lambda(keep):.2g}): spectrum", fontsize=10)
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=7.5, loc="upper right")


def plot_deep_linear_dropout(data: dict) -> Figure:
    """Draw reproduction (u) from the data of :func:`compute_deep_linear_dropout`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.5, 8.0), layout="constrained")
    axes = fig.subplots(2, 2)
    for ax, keep in zip(axes[0], data["keeps"]):
        _plot_spectra(ax, data, keep)
    nets = data["nets"]
    labels = [f"θ={n['keep']:g}\nL={n['depth']}" for n in nets]
    x = np.arange(len(nets))
    ax = axes[1, 0]
    off = np.array([abs(n["ratio"] - 1.0) for n in nets])
    above = np.array([n["lower_ratio"] - 1.0 for n in nets])
    ax.bar(x - 0.2, np.maximum(off, 1e-12), 0.4, color="C0", label="|penalty / Θ_L − 1|")
    ax.bar(
        x + 0.2,
        np.maximum(above, 1e-12),
        0.4,
        color="C1",
        label="penalty / (ν_L‖M‖*²) − 1 (rigorous: ≥ distance to the minimum)",
    )
    ax.axhline(
        FIBRE_TOL,
        color="C3",
        ls="--",
        lw=1,
        label=f"claims' test ({FIBRE_TOL:g}): blue bars, and orange ones of rank-one maps",
    )
    ax.set_yscale("log")
    ax.set_ylim(top=20.0)  # room for the legend above the bars
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("relative excess of the trained net's penalty")
    ax.set_title("exact penalty of the trained factors against Θ_L of their map", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper left")
    ax.grid(True, axis="y", alpha=0.25)
    ax = axes[1, 1]
    for i, n in enumerate(nets):
        excess = np.asarray(n["objective"]) - n["implied_objective"]
        ax.plot(
            np.maximum(n["record_steps"], 1),
            np.maximum(excess, 1e-12),
            color=f"C{i}",
            lw=1.2,
            label=f"θ={n['keep']:g}, L={n['depth']}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="SGD step", ylabel="expected objective − implied minimum")
    ax.set_title("training: the expected objective J(t) approaching min J", fontsize=10)
    ax.legend(fontsize=7.5, ncols=2)
    ax.grid(True, which="both", alpha=0.25)
    fig.suptitle(
        f"(u) Mianjy & Arora 2019: deep linear nets trained with dropout (width "
        f"{data['width']}, {data['n_samples']} white inputs in dimension {data['dim']}, "
        f"y = M*x, {data['steps']:,} full-batch SGD steps)\nend at the least-penalty "
        "factorization of their map (Θ_L) and at the minimiser of E‖y − Mx‖² + Θ_L(M)",
        fontsize=11,
    )
    return draw_claims(fig, data["claims"])


# ----------------------------------------------------------------------------- registry

_TRAINED = trajectory(TRAINING_RTOL)
_TRAINED_FIELD = trajectory(TRAINING_RTOL, scale="field")
_RELATIVE = trajectory(TRAINING_RTOL, scale=1.0)  # a relative gap or spread: to 1
_SOLVED = solve(IMPLIED_RTOL, scale="field")

register(
    FigureSpec(
        "deep_linear_dropout",
        "(u) Mianjy & Arora 2019: deep linear nets trained by dropout SGD end at Θ_L of "
        "their map and at the implied problem's minimiser",
        compute_deep_linear_dropout,
        plot_deep_linear_dropout,
        checks={
            "seed dim width n_samples target_spectrum depths keeps steps lr lr_decay "
            "truncate_rtol starts nets/*/keep nets/*/depth nets/*/record_steps "
            "nets/*/rank": EXACT,
            "claims/*/paper claims/*/claim claims/*/theirs claims/*/where claims/*/measure "
            "claims/*/verdict claims/*/reason": EXACT,
            # rotations from QRs: rounding relative to the largest entry
            "target_map": closed_form(size=100, condition=10, scale="field"),
            "nets/*/objective nets/*/penalty nets/*/nuclear_norm nets/*/theta "
            "nets/*/lower_bound nets/*/ratio nets/*/lower_ratio": _TRAINED,
            "nets/*/weights nets/*/trained_map nets/*/trained_singular_values": _TRAINED_FIELD,
            "nets/*/truncated nets/*/theta_spread claims/0/ours claims/2/ours "
            "claims/3/ours": _RELATIVE,
            "nets/*/implied_objective": solve(IMPLIED_RTOL),
            "nets/*/implied_map nets/*/implied_singular_values": _SOLVED,
            "nets/*/implied_spread nets/*/map_gap claims/1/ours": solve(IMPLIED_RTOL, scale=1.0),
        },
        references=(PAPER,),
    )
)
