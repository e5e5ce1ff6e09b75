"""Dropout SGD for a GLM: real masks, the loop of regtheory.training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .. import _sgd
from .._grammar import RngLike, as_rng, keyword_only, transition_to_rng
from .._references import Cited, cites
from .._validation import check_array, check_choice, check_keep
from ._design import plain_design
from ._families import FAMILIES, Family, check_labels, cumulant, mean_function
from ._penalty import exact_penalty

_RECORDED_TERMS = 1 << 20  # dropout_sgd records the exact objective up to n·2^d of these
# ----------------------------------------------------------------------------- SGD


@dataclass(frozen=True, eq=False)
class GLMTrainingResult(Cited):
    r"""Outcome of :func:`dropout_sgd`: the final coefficients and a history.

    Attributes
    ----------
    beta : array (d,)
        Final coefficients.
    intercept : float
        Final intercept (0 when not fitted).
    steps : int array (n_records,)
        Gradient steps taken at each record, from 0 to ``n_steps``.
    objective : array (n_records,)
        The expected dropout objective :math:`L + R` on the data at each record, exact
        by enumeration when :math:`n 2^d \le 2^{20}` (a few milliseconds a record); else
        the mean sampled minibatch loss since the previous record.
    betas : array (n_records, d)
        Coefficients at each record.
    family : str
    keep, n_steps, lr, lr_decay, batch_size, record_every, seed
        The settings of the run (``seed`` None for a Generator).
    """

    beta: np.ndarray
    intercept: float
    steps: np.ndarray
    objective: np.ndarray
    betas: np.ndarray
    family: str
    keep: float
    n_steps: int
    lr: float
    lr_decay: float | None
    batch_size: int
    record_every: int
    seed: int | None


def _sgd_step(X, y, keep, family, intercept):
    def step(params, rows, rng):
        beta, b = params
        Xs, ys = (X, y) if rows is None else (X[rows], y[rows])
        dropped = Xs * (rng.random(Xs.shape) < keep) / keep  # one real mask per sample
        z = dropped @ beta + b[0]
        loss = float(np.mean(cumulant(z, family) - ys * z))
        resid = (mean_function(z, family) - ys) / len(ys)
        grad_b = np.array([resid.sum()]) if intercept else np.zeros(1)
        return loss, (resid @ dropped, grad_b)

    return step


def _recorded_objective(X, y, keep, family):
    """The exact dropout objective L + R at the SGD parameters (β, b), for the records."""
    design = plain_design(X, y)

    def objective(params: _sgd.Params) -> float:
        beta, b = params[0], float(params[1][0])
        return design.objective(beta, b, family) + exact_penalty(beta, X, keep, b, family)

    return objective


@cites("srivastava2014dropout", "wager2013dropout")
@keyword_only(3)
@transition_to_rng
def dropout_sgd(
    X: ArrayLike,
    y: ArrayLike,
    keep: float,
    *,
    steps: int,
    lr: float,
    rng: RngLike = 0,
    family: Family = "logistic",
    intercept: bool = True,
    batch_size: int | None = None,
    lr_decay: float | None = None,
    record_every: int | None = None,
) -> GLMTrainingResult:
    r"""Fit a GLM by SGD with real input dropout, as a deep-learning framework would.

    From β = 0, b = 0, each step draws a minibatch, one mask :math:`r_k` per sample, and
    steps along the gradient of the sampled loss

    .. math:: \ell_t = \frac1{|B_t|}\sum_{k \in B_t} A(\tilde x_k\cdot\beta + b)
              - y_k(\tilde x_k\cdot\beta + b), \qquad \tilde x_k = x_k\circ r_k/\theta,

    whose expectation is the dropout objective :math:`L + R` of :func:`solve_dropout`; the
    step :math:`\eta/(1 + t/\tau)` decays with ``lr_decay`` = τ (Robbins–Monro), so the
    iterates settle on its solution (the loop of :mod:`regtheory.training`).

    Parameters
    ----------
    X : array (n, d)
        Inputs, one sample per row.
    y : array (n,)
        Responses: real (gaussian), 0/1 labels (logistic), counts (poisson).
    keep : float
        Retain probability θ in (0, 1].
    steps : int
        Gradient steps.
    lr : float
        Initial step size η > 0.
    rng : int, numpy.random.Generator or None
        Source of minibatches and masks (``seed=``, and ``steps, lr, rng`` by position,
        still work with a DeprecationWarning).
    family : {"gaussian", "logistic", "poisson"}
        The family of :func:`solve_dropout`.
    intercept : bool
        Fit an intercept b (default) or fix b = 0.
    batch_size : int, optional
        Samples per step (default all; masks are still sampled).
    lr_decay : float, optional
        Decay time τ of the step size; ``None`` keeps it constant.
    record_every : int, optional
        Record every this many steps (default ⌈steps/100⌉).

    Returns
    -------
    GLMTrainingResult
        The final coefficients and the recorded history.

    Raises
    ------
    FloatingPointError
        If the loss or the coefficients become non-finite: ``lr`` is too large.
    """
    X = check_array(X, "X", ndim=2)
    keep = check_keep(keep)
    check_choice(family, "family", FAMILIES)
    family = str(family)  # type: ignore[assignment]
    y = check_labels(y, X, family)
    schedule = _sgd.check_schedule(steps, lr, 1.0, lr_decay, batch_size, record_every, len(X))
    generator = as_rng(rng)
    n, d = X.shape
    objective = _recorded_objective(X, y, keep, family) if n << d <= _RECORDED_TERMS else None
    history = _sgd.run(
        (np.zeros(d), np.zeros(1)),
        _sgd_step(X, y, keep, family, bool(intercept)),
        schedule,
        n,
        generator,
        objective,
        lambda params: [params[0]],
    )
    return GLMTrainingResult(
        beta=history.params[0],
        intercept=float(history.params[1][0]),
        steps=history.steps,
        objective=history.loss,
        betas=history.snapshots[0],
        family=family,
        keep=keep,
        n_steps=schedule.steps,
        lr=schedule.lr,
        lr_decay=schedule.lr_decay,
        batch_size=schedule.batch_size,
        record_every=schedule.record_every,
        seed=_sgd.seed_record(rng),
    )
