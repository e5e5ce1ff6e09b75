r"""Training networks with real dropout masks (THEORY.md §1 and §3).

The fully connected network (§1) is the factored linear map with inverted dropout on
its hidden layer,

.. math:: f_r(x) = U \operatorname{diag}(r/\theta)\, V^\top x, \qquad
          U \in \mathbb{R}^{d_{out}\times w},\; V \in \mathbb{R}^{d_{in}\times w},\;
          r_i \sim \mathrm{Bernoulli}(\theta) \text{ i.i.d.}

(Srivastava et al. [1]). :func:`train_fc` runs minibatch stochastic gradient
descent on the dropout training loss with a fresh, independent mask for every
sample of every step — exactly what a deep-learning framework does — and records
the *expected* dropout objective, which by formula (1) of Mianjy, Arora & Vidal
[2] is, on the training data with :math:`C = X^\top X/n`,

.. math::

    L_\theta(U, V) = \mathbb{E}_r \frac1n \sum_{k=1}^n \|y_k - f_r(x_k)\|^2
                   = \frac1n \|Y - X V U^\top\|_F^2
                     + \lambda \sum_{i=1}^w \|u_i\|^2\, v_i^\top C v_i ,
    \qquad \lambda = \frac{1-\theta}{\theta}.

Nothing in the training loop uses that closed form: the gradients are those of
the sampled loss. The point of the module is the experiment of Cavazza et al.
[3] and Mianjy et al. [2]: real dropout SGD ends at the closed-form global
optimum :func:`regtheory.fc.global_optimum` and at an *equalized* factorization
(every unit carrying the same product :math:`\|u_i\|\,\|C^{1/2}v_i\|`).

:func:`train_explicit_fc` is the other side of that comparison: full-batch gradient
descent on the closed form :math:`L_\theta` itself (analytic gradients from the data's
moments, no masks), which reaches the global optimum to the precision of the
arithmetic; ``benchmarks/bench_explicit_fc.py`` compares its steps and time with
dropout SGD reaching the same point.

The same experiment for the two-layer conv net of THEORY §3,
:math:`g_m(x) = u \ast (m \circ a(v \ast x))`, is :func:`train_conv`: elementwise,
channel (SpatialDropout) or DropBlock masks on the hidden feature map, and the
recorded objective is the plain loss plus the conv penalty (5)/(6)
(:func:`regtheory.conv.dropout_penalty`). With circular padding, white input and
elementwise masks it ends at the solution of the implied problem (7)
(:func:`regtheory.implied.solve_conv`), with every channel carrying the same
product :math:`\|u_c\|\,\|v_c\|`.

References
----------
[1] N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov,
    Dropout: A Simple Way to Prevent Neural Networks from Overfitting, JMLR 15 (2014).
[2] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
[3] J. Cavazza, P. Morerio, B. Haeffele, C. Lane, V. Murino, R. Vidal, Dropout as
    a Low-Rank Regularizer for Matrix Factorization, AISTATS 2018.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from . import _sgd, completion, conv, fc
from ._convops import (
    ACTIVATIONS,
    Activation,
    KernelSize,
    Mode,
    Padding,
    centre_roll,
    conv_cn,
    flipped_transpose,
    lifted_matrix,
    mask_distribution,
    unfold,
)
from ._grammar import RngLike, as_rng, transition_to_rng
from ._references import Cited, cites
from ._sgd import check_schedule
from ._validation import (
    check_array,
    check_block_size,
    check_choice,
    check_conv_data,
    check_int,
    check_keep,
    check_kernel_fits,
    check_kernel_size,
    check_padding,
    check_paired_rows,
    check_positive,
)
from .completion._objective import check_covered, check_obs
from .masks import Bernoulli, Channel, DropBlock, dropout_lambda

__all__ = [
    "CompletionTrainingResult",
    "ConvTrainingResult",
    "FCTrainingResult",
    "train_completion",
    "train_conv",
    "train_explicit_fc",
    "train_fc",
]

F = TypeVar("F", bound=Callable[..., Any])


def _is_keep(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < float(value) <= 1


def _is_count(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _accepts_old_order(old: tuple[str, ...], new: tuple[str, ...]) -> Callable[[F], F]:
    """Let calls in the trainers' former argument order still work, with a warning.

    The trainers used to take ``(X, Y, width, keep, steps, lr, seed)`` (and
    ``(X, Y, channels, kernel_size, keep, ...)``) by position; they now take the order
    of the solvers and closed forms, ``keep`` before the architecture, and their
    options by keyword. A call whose positional arguments start with a count (the
    former width or channels) and only make sense in the former order (a first one
    that is not a retain probability, an architecture that is not a count, more than
    the new positional arguments, or a name passed twice) is read in that order, with a
    DeprecationWarning. Where both orders read the same numbers (``keep = width = 1``)
    the call means the same either way.
    """

    def is_new(args: tuple, kwargs: dict) -> bool:
        if len(args) > len(new) or any(name in kwargs for name in new[: len(args)]):
            return False
        if not _is_keep(args[0]):
            return False
        if len(args) > 1 and not _is_count(args[1]):
            return False
        size = args[2] if len(args) > 2 else None  # kernel_size: an int or a tuple of ints
        return size is None or _is_count(size) or isinstance(size, (tuple, list))

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(X: ArrayLike, Y: ArrayLike, *args: Any, **kwargs: Any) -> Any:
            # the former order starts with a count (width, channels); anything else is
            # read in the new order and checked there
            if not args or is_new(args, kwargs) or not _is_count(args[0]):
                return func(X, Y, *args, **kwargs)
            if len(args) > len(old):
                raise TypeError(
                    f"{func.__name__}() takes {2 + len(new)} positional arguments "
                    f"but {2 + len(args)} were given"
                )
            names = old[: len(args)]
            for name, value in zip(names, args):
                if name in kwargs:
                    raise TypeError(f"{func.__name__}() got multiple values for `{name}`")
                kwargs[name] = value
            warnings.warn(
                f"{func.__name__}(X, Y, {', '.join(names)}) in this order is deprecated; "
                f"write {func.__name__}(X, Y, {', '.join(new)}, "
                + ", ".join(f"{n}=..." for n in old if n not in new)
                + ")",
                DeprecationWarning,
                stacklevel=2,
            )
            return func(X, Y, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


@dataclass(frozen=True, eq=False)
class FCTrainingResult(Cited):
    r"""Outcome of :func:`train_fc` or :func:`train_explicit_fc`: factors, history, settings.

    Every array is read-only.

    Attributes
    ----------
    U : array (d_out, width)
        Final output weights.
    V : array (d_in, width)
        Final input weights.
    steps : int array (n_records,)
        Number of gradient steps taken at each record; starts at 0 (the
        initialisation) and ends at ``n_steps``.
    loss : array (n_records,)
        Exact expected dropout objective :math:`L_\theta(U, V)` on the full
        training data at each record (formula (1), see the module docstring).
    maps : array (n_records, d_out, d_in)
        End-to-end map :math:`UV^\top` at each record.
    products : array (n_records, width)
        Per-unit products :math:`\|u_i\|\,\|C^{1/2}v_i\|`, :math:`C = X^\top X/n`
        (:func:`regtheory.fc.unit_products`); for white data (C = I) they are
        :math:`\|u_i\|\,\|v_i\|`. Equal across units when equalized.
    keep, width, n_steps, lr, lr_decay, batch_size, init_scale, record_every
        The settings of the run (``batch_size`` resolved to an int). For
        :func:`train_explicit_fc`, ``n_steps`` is the number of steps actually taken
        (fewer than asked when ``tol`` stopped it), ``lr_decay`` is ``None`` and
        ``batch_size`` is n (full batch).
    seed : int or None
        The integer seed, or ``None`` when a Generator / SeedSequence was passed.
    block_size : int
        Hidden units dropped together (1: ordinary dropout).
    """

    U: np.ndarray
    V: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    maps: np.ndarray
    products: np.ndarray
    keep: float
    width: int
    n_steps: int
    lr: float
    lr_decay: float | None
    batch_size: int
    init_scale: float
    record_every: int
    seed: int | None
    block_size: int = 1

    @property
    def final_map(self) -> np.ndarray:
        r"""End-to-end map :math:`UV^\top` of the final factors."""
        return self.U @ self.V.T


def _loss_and_grad(
    U: np.ndarray, V: np.ndarray, X: np.ndarray, Y: np.ndarray, masks: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    r"""Sampled dropout loss of one minibatch and its gradient, by hand.

    With :math:`H = XV` (b×w), the masked hidden layer :math:`Z = H \circ R`
    (``masks`` = R, one row :math:`r_k/\theta` per sample) and the residual
    :math:`E = ZU^\top - Y`,

    .. math::

        \ell = \frac1b \|E\|_F^2, \qquad
        \nabla_U \ell = \frac2b E^\top Z, \qquad
        \nabla_V \ell = \frac2b X^\top \big((E U) \circ R\big).

    Parameters
    ----------
    U, V : arrays (d_out, w), (d_in, w)
    X, Y : arrays (b, d_in), (b, d_out)
    masks : array (b, w)
        Already scaled masks :math:`r_k/\theta`.

    Returns
    -------
    (loss, grad_U, grad_V)
    """
    b = X.shape[0]
    Z = (X @ V) * masks
    E = Z @ U.T - Y
    loss = float(np.einsum("ij,ij->", E, E)) / b
    grad_U = (2.0 / b) * (E.T @ Z)
    grad_V = (2.0 / b) * (X.T @ ((E @ U) * masks))
    return loss, grad_U, grad_V


def _expected_objective(
    U: np.ndarray,
    V: np.ndarray,
    keep: float,
    yy: float,
    yx: np.ndarray,
    xx: np.ndarray,
    block_size: int = 1,
) -> float:
    """Formula (1) (blocks: Pal et al.'s group penalty) on the data, from its moments.

    The moments are mean‖y‖², YᵀX/n and XᵀX/n (O(d²w), no pass over X).
    """
    M = U @ V.T
    fit = yy - 2.0 * np.einsum("ij,ij->", M, yx) + np.einsum("ij,jk,ik->", M, xx, M)
    return float(fit) + fc.block_dropout_penalty(U, V, keep, block_size=block_size, cov=xx)


class _FCProblem:
    """The data and the fixed parts of one :func:`train_fc` run.

    The trainer's loss and gradient, its expected objective and what it records, for the
    SGD loop of ``_sgd``.
    """

    def __init__(self, X, Y, width, keep, block_size, batch_size):
        self.X, self.Y, self.n = X, Y, X.shape[0]
        self.width, self.keep = width, keep
        self.block_size, self.batch_size = block_size, batch_size
        self.masks = Bernoulli(keep) if block_size == 1 else Channel(keep)
        self.mask_shape = (width,) if block_size == 1 else (width // block_size, block_size)
        self.yy = float(np.einsum("ij,ij->", Y, Y)) / self.n
        self.yx = Y.T @ X / self.n
        self.xx = X.T @ X / self.n

    def step(self, params, rows, rng):
        Xb, Yb = (self.X, self.Y) if rows is None else (self.X[rows], self.Y[rows])
        b = self.batch_size
        masks = self.masks.sample(self.mask_shape, b, rng).reshape(b, self.width)
        U, V = params
        loss, grad_U, grad_V = _loss_and_grad(U, V, Xb, Yb, masks)
        return loss, (grad_U, grad_V)

    def expected_objective(self, params) -> float:
        U, V = params
        return _expected_objective(U, V, self.keep, self.yy, self.yx, self.xx, self.block_size)

    def snapshot(self, params) -> tuple[np.ndarray, np.ndarray]:
        U, V = params
        return U @ V.T, fc.unit_products(U, V, cov=self.xx)

    def train(self, schedule: _sgd.Schedule, rng: np.random.Generator, seed) -> FCTrainingResult:
        U = schedule.init_scale * rng.standard_normal((self.Y.shape[1], self.width))
        V = schedule.init_scale * rng.standard_normal((self.X.shape[1], self.width))
        history = _sgd.run(
            (U, V), self.step, schedule, self.n, rng, self.expected_objective, self.snapshot
        )
        return FCTrainingResult(
            U=history.params[0],
            V=history.params[1],
            steps=history.steps,
            loss=history.loss,
            maps=history.snapshots[0],
            products=history.snapshots[1],
            keep=self.keep,
            width=self.width,
            block_size=self.block_size,
            seed=_sgd.seed_record(seed),
            **_settings(schedule),
        )


@cites("srivastava2014dropout", "mianjy2018implicit, Thm 2.5", "cavazza2018dropout, Sec. 5")
@_accepts_old_order(old=("width", "keep", "steps", "lr", "rng"), new=("keep", "width"))
@transition_to_rng
def train_fc(
    X: ArrayLike,
    Y: ArrayLike,
    keep: float,
    width: int,
    *,
    steps: int,
    lr: float,
    rng: RngLike = 0,
    batch_size: int | None = None,
    init_scale: float = 0.1,
    lr_decay: float | None = None,
    record_every: int | None = None,
    block_size: int | None = None,
) -> FCTrainingResult:
    r"""Train :math:`f(x) = U\operatorname{diag}(r/\theta)V^\top x` by SGD with real dropout.

    Each step draws a minibatch of ``batch_size`` distinct rows, one independent
    mask :math:`r_k/\theta` per row (:class:`regtheory.masks.Bernoulli`), and
    takes a gradient step on the sampled loss

    .. math:: \ell_t = \frac1b \sum_{k \in B_t}
              \|y_k - U\operatorname{diag}(r_k/\theta)V^\top x_k\|^2,
              \qquad (U, V) \leftarrow (U, V) - \eta_t \nabla \ell_t,
              \qquad \eta_t = \frac{\eta}{1 + t/\tau},

    with hand-written gradients. :math:`\mathbb{E}\,\ell_t` is the dropout objective
    :math:`L_\theta(U, V)` of formula (1) [2], so this is unbiased SGD on it; the step
    decays like :math:`1/t` (Robbins–Monro) when ``lr_decay`` = τ is given, which lets
    the iterates settle despite the mask noise. Both factors start with i.i.d.
    :math:`\mathcal N(0, \text{init\_scale}^2)` entries (zero is a saddle point).

    Parameters
    ----------
    X, Y : arrays (n, d_in), (n, d_out)
        Inputs and targets, one sample per row.
    keep : float
        Retain probability θ in (0, 1] (PyTorch's ``p`` is ``1 - keep``).
    width : int
        Number of hidden units w.
    steps : int
        Number of gradient steps, at least 1.
    lr : float
        Initial step size η > 0.
    rng : int, numpy.random.Generator or None
        Source of the initialisation, the minibatches and the masks (the same int seed
        gives the same result).
    batch_size : int, optional
        Rows per minibatch, in [1, n]; default n (full batch, masks still sampled).
    init_scale : float
        Standard deviation of the initial weights, > 0.
    lr_decay : float, optional
        Decay time τ > 0 of the step size η/(1 + t/τ); ``None`` keeps it constant.
    record_every : int, optional
        Record every this many steps (and the first and last state); default ⌈steps/100⌉.
    block_size : int, optional
        Drop blocks of this many consecutive hidden units together (DropBlock on an FC
        layer, Pal et al. CVPR 2020: :class:`regtheory.masks.Channel` on the units viewed
        as (w/k, k)); must divide ``width``. ``None`` (default) or 1 is ordinary dropout.

    Returns
    -------
    FCTrainingResult
        The final factors, the recorded history and the settings used.

    Raises
    ------
    InvalidParameterError
        If ``X`` or ``Y`` is not a finite real 2-D array or their rows differ, ``keep``
        is not in (0, 1], a count is not a positive integer, a rate or scale is not
        positive, ``batch_size`` exceeds n, ``block_size`` does not divide ``width``,
        or ``rng`` is not an int ≥ 0, a Generator or None.
    FloatingPointError
        If the loss or the weights become non-finite: ``lr`` is too large.

    References
    ----------
    [1] Srivastava et al., JMLR 2014. [2] Mianjy, Arora & Vidal, ICML 2018, Thm 2.5.
    [3] Cavazza et al., AISTATS 2018 (the same experiment, Sec. 5).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.eye(4) * 2.0          # X^T X / n = I
    >>> Y = X @ np.diag([3.0, 2.0, 1.0, 0.0])
    >>> res = train_fc(X, Y, 0.8, 6, steps=3000, lr=0.05, rng=0, lr_decay=300)
    >>> T = Y.T @ X / 4
    >>> M = fc.global_optimum(T, 0.8, 6)
    >>> bool(np.linalg.norm(res.final_map - M) < 0.05 * np.linalg.norm(M))
    True
    """
    X = check_array(X, "X", ndim=2)
    Y = check_array(Y, "Y", ndim=2)
    check_paired_rows(X, Y)
    width = check_int(width, "width")
    keep = check_keep(keep)
    schedule = check_schedule(steps, lr, init_scale, lr_decay, batch_size, record_every, len(X))
    gen = as_rng(rng)
    block_size = check_block_size(1 if block_size is None else block_size, width)
    return _FCProblem(X, Y, width, keep, block_size, schedule.batch_size).train(schedule, gen, rng)


def _settings(schedule: _sgd.Schedule) -> dict:
    """The SGD settings as recorded in a training result."""
    return {
        "n_steps": schedule.steps,
        "lr": schedule.lr,
        "lr_decay": schedule.lr_decay,
        "batch_size": schedule.batch_size,
        "init_scale": schedule.init_scale,
        "record_every": schedule.record_every,
    }


# ------------------------------------------------------ matrix completion (THEORY §9)


@dataclass(frozen=True)
class CompletionTrainingResult(Cited):
    r"""Outcome of :func:`train_completion`: factors, history, settings. Arrays are read-only.

    Attributes
    ----------
    U : array (m, width)
        Final row factor.
    V : array (n, width)
        Final column factor.
    steps : int array (n_records,)
        Gradient steps taken at each record, from 0 (the initialisation) to ``n_steps``.
    loss : array (n_records,)
        The expected dropout objective on the observed entries at each record,
        :func:`regtheory.completion.fit_loss` plus the exact
        :func:`regtheory.completion.dropout_penalty` :math:`R_\Omega`.
    products : array (n_records, width)
        Per-unit products :math:`\|u_k\|_p\,\|v_k\|_q` in the empirical marginals; equal
        across the units of a factorization equalized for the product form.
    keep, width, n_steps, lr, lr_decay, batch_size, init_scale, record_every
        The settings of the run (``batch_size`` resolved to an int: observations per step).
    seed : int or None
        The integer seed, or ``None`` when a Generator / SeedSequence was passed.
    """

    U: np.ndarray
    V: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    products: np.ndarray
    keep: float
    width: int
    n_steps: int
    lr: float
    lr_decay: float | None
    batch_size: int
    init_scale: float
    record_every: int
    seed: int | None

    @property
    def M(self) -> np.ndarray:
        r"""The completed matrix :math:`UV^\top`."""
        return self.U @ self.V.T


class _CompletionProblem:
    """The observations and settings of one :func:`train_completion` run, for ``_sgd.run``."""

    def __init__(self, obs: completion.Observations, keep: float, width: int):
        self.obs, self.keep, self.width = obs, keep, width
        self.masks = Bernoulli(keep)
        self.root_p = np.sqrt(obs.row_marginals)
        self.root_q = np.sqrt(obs.col_marginals)

    def step(self, params, batch, rng):
        U, V = params
        obs = self.obs
        rows, cols, y = obs.rows, obs.cols, obs.values
        if batch is not None:
            rows, cols, y = rows[batch], cols[batch], y[batch]
        b = rows.size
        R = self.masks.sample((self.width,), b, rng).reshape(b, self.width)
        Ui, Vj = U[rows], V[cols]
        E = np.einsum("tk,tk->t", Ui * R, Vj) - y
        scaled = (2.0 / b) * E[:, None] * R
        grad_U, grad_V = np.zeros_like(U), np.zeros_like(V)
        np.add.at(grad_U, rows, scaled * Vj)
        np.add.at(grad_V, cols, scaled * Ui)
        return float(np.mean(E * E)), (grad_U, grad_V)

    def expected_objective(self, params) -> float:
        """Fit plus R_Ω (inf when it overflows: the loop then reports a diverged run)."""
        U, V = params
        obs, lam = self.obs, dropout_lambda(self.keep)
        Ui, Vj = U[obs.rows], V[obs.cols]
        with np.errstate(over="ignore", invalid="ignore"):
            E = np.einsum("tk,tk->t", Ui, Vj) - obs.values
            return float(np.mean(E * E) + lam * np.mean(np.einsum("tk,tk->t", Ui * Ui, Vj * Vj)))

    def snapshot(self, params) -> tuple[np.ndarray]:
        U, V = params
        return (
            np.linalg.norm(self.root_p[:, None] * U, axis=0)
            * np.linalg.norm(self.root_q[:, None] * V, axis=0),
        )

    def train(
        self, schedule: _sgd.Schedule, gen: np.random.Generator, seed
    ) -> CompletionTrainingResult:
        m, n = self.obs.shape
        U = schedule.init_scale * gen.standard_normal((m, self.width))
        V = schedule.init_scale * gen.standard_normal((n, self.width))
        history = _sgd.run(
            (U, V),
            self.step,
            schedule,
            self.obs.n_observed,
            gen,
            self.expected_objective,
            self.snapshot,
        )
        return CompletionTrainingResult(
            U=history.params[0],
            V=history.params[1],
            steps=history.steps,
            loss=history.loss,
            products=history.snapshots[0],
            keep=self.keep,
            width=self.width,
            seed=_sgd.seed_record(seed),
            **_settings(schedule),
        )


@cites("cavazza2018dropout", "arora2021dropout")
def train_completion(
    obs: completion.Observations,
    keep: float,
    width: int,
    *,
    steps: int,
    lr: float,
    rng: RngLike = 0,
    batch_size: int | None = None,
    init_scale: float = 0.1,
    lr_decay: float | None = None,
    record_every: int | None = None,
) -> CompletionTrainingResult:
    r"""Fit :math:`M = UV^\top` to observed entries by SGD with real dropout on the shared factor.

    Each step draws ``batch_size`` distinct observations, one mask
    :math:`r_t \in \{0,1\}^d` with i.i.d. Bernoulli(θ) entries per observation, and steps on
    the sampled loss

    .. math:: \ell = \frac1b \sum_{t \in B}\Big(y_t - \sum_k \frac{r_{tk}}{\theta}
              U_{i_tk}V_{j_tk}\Big)^2 ,

    with hand-written gradients, in the loop of :func:`train_fc`. Its expectation is the
    fit on the observed entries plus :math:`R_\Omega(U, V)`
    (:func:`regtheory.completion.dropout_penalty`), which is what the run records; nothing
    in the loop uses that closed form. Both factors start with i.i.d.
    :math:`\mathcal N(0, \text{init\_scale}^2)` entries.

    Parameters
    ----------
    obs : Observations
        The observed entries (:func:`regtheory.completion.observed`); every row and column
        must have one.
    keep : float
        Retain probability θ in (0, 1].
    width : int
        Width d of the factorization.
    steps : int
        Number of gradient steps, at least 1.
    lr : float
        Initial step size η > 0.
    rng : int, numpy.random.Generator or None
        Source of the initialisation, the minibatches and the masks.
    batch_size : int, optional
        Observations per step, in [1, N]; default N (full batch, masks still sampled).
    init_scale : float
        Standard deviation of the initial factors, > 0.
    lr_decay : float, optional
        Decay time τ > 0 of the step size η/(1 + t/τ); ``None`` keeps it constant.
    record_every : int, optional
        Record every this many steps (and the first and last state); default ⌈steps/100⌉.

    Returns
    -------
    CompletionTrainingResult
        The final factors, the recorded history and the settings.

    Raises
    ------
    InvalidParameterError
        If ``obs`` is not an :class:`~regtheory.completion.Observations` or has an empty
        row or column, ``keep`` is outside (0, 1], a count is not a positive integer, a rate
        or scale is not positive, or ``batch_size`` exceeds N.
    FloatingPointError
        If the loss or the factors become non-finite: ``lr`` is too large.

    See Also
    --------
    regtheory.completion.solve_induced : the convex problem of the product form.

    References
    ----------
    [1] J. Cavazza et al., Dropout as a Low-Rank Regularizer for Matrix Factorization,
        AISTATS 2018. [2] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit
        Forms and Capacity Control, ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from regtheory.completion import observed, solve_induced
    >>> i, j = np.divmod(np.arange(16), 4)
    >>> obs = observed(i, j, np.outer([1.0, 2, 0, 1], [1.0, 1, 2, 0]).ravel(), (4, 4))
    >>> res = train_completion(obs, 0.8, 3, steps=4000, lr=0.2, lr_decay=400, rng=0)
    >>> best = solve_induced(obs, 0.8, 3)  # every entry observed: the same problem
    >>> bool(res.loss[-1] <= best.objective * 1.01)
    True
    """
    obs = check_obs(obs)
    check_covered(obs)
    keep, width = check_keep(keep), check_int(width, "width")
    n = obs.n_observed
    schedule = check_schedule(steps, lr, init_scale, lr_decay, batch_size, record_every, n)
    return _CompletionProblem(obs, keep, width).train(schedule, as_rng(rng), rng)


# ------------------------------------------------- gradient descent on the closed form (§1)


def _explicit_objective(
    U: np.ndarray,
    V: np.ndarray,
    lam: float,
    yy: float,
    yx: np.ndarray,
    xx: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray]:
    r"""The expected dropout objective (1) from the data moments, and its gradient, by hand.

    With the moments :math:`\overline{y^2} = \|Y\|_F^2/n`, :math:`T = Y^\top X/n`,
    :math:`C = X^\top X/n`, the map :math:`M = UV^\top` and the per-unit
    :math:`a_i = \|u_i\|^2`, :math:`b_i = v_i^\top C v_i`,

    .. math::

        L = \overline{y^2} - 2\langle M, T\rangle + \langle MC, M\rangle
            + \lambda\, a^\top b, \qquad
        \nabla_U L = G V + 2\lambda\, U \operatorname{diag}(b), \qquad
        \nabla_V L = G^\top U + 2\lambda\, C V \operatorname{diag}(a),

    with :math:`G = 2(MC - T)`, the gradient of the fit in M. O(d² w) a call.

    Returns
    -------
    (objective, grad_U, grad_V)
    """
    M = U @ V.T
    MC = M @ xx
    CV = xx @ V
    a = np.einsum("ji,ji->i", U, U)
    b = np.einsum("ji,ji->i", V, CV)
    fit = yy - 2.0 * np.einsum("ij,ij->", M, yx) + np.einsum("ij,ij->", MC, M)
    G = 2.0 * (MC - yx)
    grad_U = G @ V + (2.0 * lam) * (U * b)
    grad_V = G.T @ U + (2.0 * lam) * (CV * a)
    return float(fit + lam * np.dot(a, b)), grad_U, grad_V


def _descend(
    objective: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray, np.ndarray]],
    params: tuple[np.ndarray, np.ndarray],
    schedule: _sgd.Schedule,
    tol: float | None,
    snapshot: Callable[[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]],
) -> _sgd.History:
    r"""Full-batch gradient descent with a constant step; stops early on ``tol``.

    Records step 0, every ``record_every`` steps and the last step taken. Stops after
    step t when :math:`|L_{t-1} - L_t| \le \text{tol}\,|L_t|`.
    """
    U, V = params
    steps_taken: list[int] = []
    losses: list[float] = []
    taken: list[tuple[np.ndarray, np.ndarray]] = []

    def record(t: int, value: float) -> None:
        steps_taken.append(t)
        losses.append(value)
        taken.append(snapshot((U, V)))

    value, grad_U, grad_V = objective(U, V)
    record(0, value)
    lr = schedule.lr
    # Overflow is expected when lr is too large; it is reported as one clear error below.
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, schedule.steps + 1):
            U, V = U - lr * grad_U, V - lr * grad_V
            new, grad_U, grad_V = objective(U, V)
            if not (math.isfinite(new) and np.all(np.isfinite(U)) and np.all(np.isfinite(V))):
                raise FloatingPointError(_sgd.diverged(lr, t))
            stop = tol is not None and abs(value - new) <= tol * abs(new)
            value = new
            if stop or t % schedule.record_every == 0 or t == schedule.steps:
                record(t, value)
            if stop:
                break
    return _sgd.History(
        params=(_sgd.frozen(U), _sgd.frozen(V)),
        steps=_sgd.frozen(np.asarray(steps_taken, dtype=np.int64)),
        loss=_sgd.frozen(losses),
        snapshots=tuple(_sgd.frozen(list(column)) for column in zip(*taken)),
    )


def _explicit_fc_run(
    X: np.ndarray,
    Y: np.ndarray,
    keep: float,
    width: int,
    schedule: _sgd.Schedule,
    tol: float | None,
    rng: RngLike,
) -> FCTrainingResult:
    """The checked :func:`train_explicit_fc`: moments, initialisation, descent, result."""
    gen = as_rng(rng)
    n = X.shape[0]
    lam = dropout_lambda(keep)
    yy, yx, xx = float(np.einsum("ij,ij->", Y, Y)) / n, Y.T @ X / n, X.T @ X / n
    U = schedule.init_scale * gen.standard_normal((Y.shape[1], width))
    V = schedule.init_scale * gen.standard_normal((X.shape[1], width))
    history = _descend(
        functools.partial(_explicit_objective, lam=lam, yy=yy, yx=yx, xx=xx),
        (U, V),
        schedule,
        tol,
        lambda params: (params[0] @ params[1].T, fc.unit_products(*params, cov=xx)),
    )
    settings = _settings(schedule)
    settings["n_steps"] = int(history.steps[-1])
    return FCTrainingResult(
        U=history.params[0],
        V=history.params[1],
        steps=history.steps,
        loss=history.loss,
        maps=history.snapshots[0],
        products=history.snapshots[1],
        keep=keep,
        width=width,
        seed=_sgd.seed_record(rng),
        **settings,
    )


@cites("mianjy2018implicit, Thm 2.5", "cavazza2018dropout, Thm 3")
def train_explicit_fc(
    X: ArrayLike,
    Y: ArrayLike,
    keep: float,
    width: int,
    *,
    steps: int,
    lr: float,
    rng: RngLike = 0,
    init_scale: float = 0.1,
    record_every: int | None = None,
    tol: float | None = None,
) -> FCTrainingResult:
    r"""Minimise the closed-form dropout objective of the FC network by gradient descent.

    No masks are sampled: each step is full-batch gradient descent with a constant
    step η on the exact expected objective of formula (1) [1], the squared loss plus
    the dropout penalty of :func:`regtheory.fc.dropout_penalty` with
    :math:`C = X^\top X/n`,

    .. math:: L_\theta(U, V) = \frac1n \|Y - XVU^\top\|_F^2
              + \lambda \sum_{i=1}^w \|u_i\|^2\, v_i^\top C v_i ,
              \qquad (U, V) \leftarrow (U, V) - \eta \nabla L_\theta ,

    with analytic gradients computed from the moments of the data (O(d² w) a step,
    whatever n). It is the deterministic counterpart of :func:`train_fc`, whose
    sampled loss has expectation :math:`L_\theta`: both aim at the same minimiser,
    whose map :math:`UV^\top` is :func:`regtheory.fc.global_optimum` [1, 2]. The
    factors start as in :func:`train_fc` (the same ``rng`` gives the same start).

    Parameters
    ----------
    X, Y : arrays (n, d_in), (n, d_out)
        Inputs and targets, one sample per row.
    keep : float
        Retain probability θ in (0, 1] (PyTorch's ``p`` is ``1 - keep``).
    width : int
        Number of hidden units w.
    steps : int
        Maximum number of gradient steps, at least 1.
    lr : float
        Constant step size η > 0. Below 1/ℓ, ℓ the largest curvature of
        :math:`L_\theta` on the path, the objective decreases at every step; a scale
        is :math:`1/(4(1+\lambda)\|C\|_2\, \|TC^{-1/2}\|_2)` with :math:`T = Y^\top X/n`.
    rng : int, numpy.random.Generator or None
        Source of the initialisation (the only randomness).
    init_scale : float
        Standard deviation of the initial weights, > 0 (zero is a saddle point).
    record_every : int, optional
        Record every this many steps (and the first and last state); default
        ⌈steps/100⌉.
    tol : float, optional
        Stop after the first step t whose relative change of the objective,
        :math:`|L_{t-1} - L_t| / |L_t|`, is at most ``tol`` (> 0); ``None`` runs all
        ``steps``. A tiny ``init_scale`` starts on the plateau of the saddle at zero,
        where a large ``tol`` stops at once.

    Returns
    -------
    FCTrainingResult
        The final factors and the recorded history; ``loss`` holds :math:`L_\theta`,
        ``n_steps`` the steps taken, ``lr_decay`` is ``None``, ``batch_size`` is n.

    Raises
    ------
    InvalidParameterError
        If ``X`` or ``Y`` is not a finite real 2-D array or their rows differ, ``keep``
        is not in (0, 1], a count is not a positive integer, ``lr``, ``init_scale`` or
        ``tol`` is not positive, or ``rng`` is not an int ≥ 0, a Generator or None.
    FloatingPointError
        If the objective or the weights become non-finite: ``lr`` is too large.

    References
    ----------
    [1] Mianjy, Arora & Vidal, ICML 2018 (formula (1); Thm 2.5, the global optimum).
    [2] Cavazza et al., AISTATS 2018, Thm 3.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.eye(4) * 2.0          # X^T X / n = I
    >>> Y = X @ np.diag([3.0, 2.0, 1.0, 0.0])
    >>> res = train_explicit_fc(X, Y, 0.8, 6, steps=20000, lr=0.05, rng=0, tol=1e-15)
    >>> M = fc.global_optimum(Y.T @ X / 4, 0.8, 6)
    >>> bool(np.linalg.norm(res.final_map - M) < 1e-6 * np.linalg.norm(M))
    True
    >>> bool(res.n_steps < 20000), int(res.steps[-1]) == res.n_steps
    (True, True)
    """
    X = check_array(X, "X", ndim=2)
    Y = check_array(Y, "Y", ndim=2)
    check_paired_rows(X, Y)
    width = check_int(width, "width")
    keep = check_keep(keep)
    schedule = check_schedule(steps, lr, init_scale, None, None, record_every, len(X))
    if tol is not None:
        tol = check_positive(tol, "tol")
    return _explicit_fc_run(X, Y, keep, width, schedule, tol, rng)


# ----------------------------------------------------------------------------- conv net (§3)


@dataclass(frozen=True, eq=False)
class ConvTrainingResult(Cited):
    r"""Outcome of :func:`train_conv`: final kernels, a history, and the settings used.

    Every array is read-only. Shapes are written for 2-D images; for 1-D signals
    the height axis is absent (kernels ``(out, in, k)``).

    Attributes
    ----------
    u : array (C_out, C, kh, kw)
        Final kernel of the layer after the mask.
    v : array (C, C_in, kh, kw)
        Final kernel of the layer before the mask.
    steps : int array (n_records,)
        Number of gradient steps taken at each record; starts at 0 (the
        initialisation) and ends at ``n_steps``.
    loss : array (n_records,)
        ``loss_kind == "expected"`` (elementwise and channel masks): the exact
        expected dropout objective on the full training data,
        :math:`\frac1N\sum_n\|y_n - g(x_n)\|^2` plus the penalty (5)/(6) of
        :func:`regtheory.conv.dropout_penalty` with ``x = X`` (g the mask-free net).
        ``loss_kind == "sampled"`` (DropBlock, no closed form): the mean of the
        sampled minibatch losses of the steps since the previous record (each
        at the weights before that step); at step 0, the first step's loss.
    loss_kind : {"expected", "sampled"}
    kernels : array (n_records, C_out, C_in, Lh, Lw)
        Composed kernel :math:`w = \sum_c u_c \star v_c` at each record,
        :math:`w[o, i, s] = \sum_c \sum_{a + b = s} u[o, c, a]\, v[c, i, b]` per axis
        (:func:`regtheory.implied.lifted_operator` applied to the lifted kernel
        :math:`Z = \sum_c u_c v_c^\top`), in the centred layout of
        :func:`regtheory.conv.conv2d`: entry s at displacement s − (k − 1). With
        circular padding, along an axis where 2k − 1 exceeds the image side n it
        is folded modulo n into n taps, entry j at displacement j − ⌊(n − 1)/2⌋
        (mod n) — for odd n conv2d's centred layout and exactly the ``w`` of
        :func:`regtheory.implied.solve_conv` (which refuses even folded sides), so
        ``conv2d(x, w, "circular")`` is the linear net. With zero padding it is
        unfolded (2k − 1 taps) and is the net's kernel away from the border. For
        the linear net it is the end-to-end kernel; with a ReLU it is only the
        composition of the two kernels.
    products : array (n_records, C)
        Per-channel products :math:`\|u_c\|\,\|v_c\|` (``u[:, c]`` and ``v[c]``
        over all their channels and taps). Equal across channels when equalized.
    keep, channels, kernel_size, mode, block_size, padding, activation
        The network and its masks (``kernel_size`` as a tuple, one entry per axis).
    n_steps, lr, lr_decay, batch_size, init_scale, record_every
        The settings of the run (``batch_size`` resolved to an int).
    seed : int or None
        The integer seed, or ``None`` when a Generator / SeedSequence was passed.
    """

    u: np.ndarray
    v: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    loss_kind: str
    kernels: np.ndarray
    products: np.ndarray
    keep: float
    channels: int
    kernel_size: tuple[int, ...]
    mode: str
    block_size: int | None
    padding: str
    activation: str | None
    n_steps: int
    lr: float
    lr_decay: float | None
    batch_size: int
    init_scale: float
    record_every: int
    seed: int | None

    @property
    def final_kernel(self) -> np.ndarray:
        r"""Composed kernel :math:`\sum_c u_c \star v_c` of the final weights."""
        return self.kernels[-1]


def _conv_loss_and_grad(
    u: np.ndarray,
    v: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    circular: bool,
    relu: bool,
) -> tuple[float, np.ndarray, np.ndarray]:
    r"""Sampled dropout loss of one minibatch of the conv net and its gradient, by hand.

    Channel-first-then-batch layout (as ``regtheory._convops.conv_cn``): ``x``
    (C_in, b, H, W), ``y`` (C_out, b, H, W), ``masks`` (C, b, H, W) already scaled
    (one independent mask per sample), 4-D kernels ``u`` (C_out, C, kh, kw) and
    ``v`` (C, C_in, kh, kw). With the pre-activation :math:`p = v \ast x`, the
    masked hidden map :math:`z = m \circ a(p)` and the residual
    :math:`e = u \ast z - y`,

    .. math::

        \ell = \frac1b \sum_n \|e_n\|^2, \qquad
        \nabla_u \ell = \frac2b \sum_n e_n \star z_n, \qquad
        \nabla_v \ell = \frac2b \sum_n \big(m \circ a'(p) \circ (u^\top \ast e)\big)_n \star x_n,

    where :math:`u^\top \ast` is the adjoint of :math:`u \ast`: the cross-correlation
    with the spatially flipped, channel-transposed kernel (exact for circular
    padding, and for zero padding with odd "same" kernels, whose adjoint pads by
    zeros too), and :math:`g \star x` (the weight gradient) correlates the output
    gradient with the padded input (:func:`regtheory._convops.unfold`).

    Returns
    -------
    (loss, grad_u, grad_v)
    """
    C, b = masks.shape[:2]
    c_out, _, kh, kw = u.shape
    cols_x = unfold(x, v.shape[2], v.shape[3], circular)
    pre = (v.reshape(C, -1) @ cols_x).reshape(masks.shape)
    z = (np.maximum(pre, 0.0) if relu else pre) * masks
    cols_z = unfold(z, kh, kw, circular)
    err = u.reshape(c_out, -1) @ cols_z - y.reshape(c_out, -1)
    loss = float(np.einsum("ij,ij->", err, err)) / b
    g_out = (2.0 / b) * err
    grad_u = (g_out @ cols_z.T).reshape(u.shape)
    g_pre = conv_cn(g_out.reshape(y.shape), flipped_transpose(u), circular) * masks
    if relu:
        g_pre *= pre > 0.0
    grad_v = (g_pre.reshape(C, -1) @ cols_x.T).reshape(v.shape)
    return loss, grad_u, grad_v


class _ConvProblem:
    """The data and the fixed parts of one :func:`train_conv` run.

    The trainer's loss and gradient, its expected objective and what it records, for the
    SGD loop of ``_sgd``.
    """

    def __init__(self, X, Y, channels, kernel, keep, mode, masks, padding, activation, batch_size):
        self.X, self.n, self.one_d = X, X.shape[0], X.ndim == 3
        self.map_shape = X.shape[2:]
        self.spatial = (1, *self.map_shape) if self.one_d else self.map_shape
        # channel-first-then-batch layout: a minibatch is a slice along axis 1
        self.Xc = X.reshape(self.n, X.shape[1], *self.spatial).transpose(1, 0, 2, 3)
        self.Yc = Y.reshape(self.n, Y.shape[1], *self.spatial).transpose(1, 0, 2, 3)
        self.channels, self.keep, self.masks = channels, keep, masks
        self.kernel_size = kernel  # one entry per axis of the data
        self.kernel = (1, kernel[0]) if self.one_d else kernel
        self.mode, self.padding, self.circular = mode, padding, padding == "circular"
        self.activation, self.relu = activation, activation == "relu"
        self.batch_size = batch_size
        # The composed kernel in the layout of conv2d and implied.solve_conv: for circular
        # padding folded modulo the image along an axis where 2k − 1 taps exceed it, then
        # rolled from displacement-mod-n indexing (lifted_operator's) to centred taps;
        # unfolded for zero padding (an image that holds 2k − 1 taps). The operator A acts
        # alike on every (out, in) channel pair, so its single-channel matrix is applied
        # pair by pair (the multi-channel one grows with (C_out·C_in)²).
        kh, kw = self.kernel
        self.fold_shape = self.spatial if self.circular else (2 * kh - 1, 2 * kw - 1)
        self.lift = lifted_matrix(self.kernel, self.fold_shape).reshape(-1, kh * kw, kh * kw)
        self.kernel_len = tuple(min(2 * k - 1, m) for k, m in zip(self.kernel, self.fold_shape))

    def public(self, w: np.ndarray) -> np.ndarray:
        return w[:, :, 0] if self.one_d else w

    def step(self, params, rows, rng):
        u, v = params
        xb, yb = (self.Xc, self.Yc) if rows is None else (self.Xc[:, rows], self.Yc[:, rows])
        b = self.batch_size
        masks = self.masks.sample((self.channels, *self.map_shape), b, rng)
        masks = masks.reshape(b, self.channels, *self.spatial).transpose(1, 0, 2, 3)
        loss, grad_u, grad_v = _conv_loss_and_grad(u, v, xb, yb, masks, self.circular, self.relu)
        return loss, (grad_u, grad_v)

    def expected_objective(self, params) -> float:
        u, v = params
        h = conv_cn(self.Xc, v, self.circular)
        if self.relu:
            h = np.maximum(h, 0.0)
        err = conv_cn(h, u, self.circular) - self.Yc
        fit = float(np.einsum("onij,onij->", err, err)) / self.n
        penalty = conv.dropout_penalty(
            self.public(u),
            self.public(v),
            self.keep,
            self.map_shape,
            padding=self.padding,
            mode=self.mode,
            x=self.X,
            activation=self.activation,
        )
        return fit + penalty

    def snapshot(self, params) -> tuple[np.ndarray, np.ndarray]:
        u, v = params
        c_out, c_in = u.shape[0], v.shape[1]
        # lifted kernel Z[o, a, i, b] = Σ_c u[o, c, a] v[c, i, b] (taps a, b flattened)
        Z = np.einsum(
            "oca,cib->oaib", u.reshape(c_out, self.channels, -1), v.reshape(self.channels, c_in, -1)
        )
        w = np.einsum("xab,oaib->oix", self.lift, Z).reshape(c_out, c_in, *self.kernel_len)
        kernel = self.public(centre_roll(w, self.kernel, self.fold_shape))
        return kernel, np.sqrt(np.einsum("ocab,ocab->c", u, u) * np.einsum("ciab,ciab->c", v, v))

    def train(self, schedule: _sgd.Schedule, rng: np.random.Generator, seed) -> ConvTrainingResult:
        kh, kw = self.kernel
        u = schedule.init_scale * rng.standard_normal((self.Yc.shape[0], self.channels, kh, kw))
        v = schedule.init_scale * rng.standard_normal((self.channels, self.Xc.shape[0], kh, kw))
        exact_loss = not isinstance(self.masks, DropBlock)
        objective = self.expected_objective if exact_loss else None
        history = _sgd.run((u, v), self.step, schedule, self.n, rng, objective, self.snapshot)
        return ConvTrainingResult(
            u=_sgd.frozen(self.public(history.params[0])),
            v=_sgd.frozen(self.public(history.params[1])),
            steps=history.steps,
            loss=history.loss,
            loss_kind="expected" if exact_loss else "sampled",
            kernels=history.snapshots[0],
            products=history.snapshots[1],
            keep=self.keep,
            channels=self.channels,
            kernel_size=self.kernel_size,
            mode=self.mode,
            block_size=self.masks.block_size if isinstance(self.masks, DropBlock) else None,
            padding=self.padding,
            activation=self.activation,
            seed=_sgd.seed_record(seed),
            **_settings(schedule),
        )


@_accepts_old_order(
    old=("channels", "kernel_size", "keep", "steps", "lr", "rng"),
    new=("keep", "channels", "kernel_size"),
)
@cites("mianjy2018implicit", "arora2021dropout", "tompson2015efficient", "ghiasi2018dropblock")
@transition_to_rng
def train_conv(
    X: ArrayLike,
    Y: ArrayLike,
    keep: float,
    channels: int,
    kernel_size: KernelSize,
    *,
    steps: int,
    lr: float,
    rng: RngLike = 0,
    mode: Mode = "element",
    block_size: int | None = None,
    padding: Padding = "circular",
    activation: Activation = None,
    batch_size: int | None = None,
    init_scale: float = 0.1,
    lr_decay: float | None = None,
    record_every: int | None = None,
) -> ConvTrainingResult:
    r"""Train the two-layer conv net :math:`u \ast (m \circ a(v \ast x))` by SGD with real dropout.

    The net of THEORY §3: ``v`` (C, C_in, k, k) maps the input to C hidden channels,
    ``a`` is the identity or a ReLU, the inverted mask ``m`` drops hidden units, and
    ``u`` (C_out, C, k, k) maps back (same-size stride-1 cross-correlations without
    bias, :func:`regtheory.conv.conv2d`). Each step draws a minibatch of distinct
    samples and one independent mask per sample (:class:`~regtheory.masks.Bernoulli`,
    :class:`~regtheory.masks.Channel` or :class:`~regtheory.masks.DropBlock` with the
    ideal 1/keep scaling), and steps on the sampled loss as :func:`train_fc` does,

    .. math:: \ell_t = \frac1b \sum_{n \in B_t} \|y_n - u \ast (m_n \circ a(v \ast x_n))\|^2,

    with hand-written, vectorised gradients. For elementwise and channel masks
    :math:`\mathbb E\,\ell_t` is the plain loss plus the penalty (5)/(6) (exact for any
    features [2]), the objective recorded; with circular padding, white input and a
    linear net its minimum over factorizations is (7), :func:`regtheory.implied.solve_conv`.

    Parameters
    ----------
    X, Y : arrays (N, C_in, H, W), (N, C_out, H, W), or (N, C, L) for 1-D signals
        Inputs and targets, the same samples and spatial shape.
    keep, channels, kernel_size : float, int, int or tuple
        Retain probability θ in (0, 1] (for DropBlock the expected kept fraction); hidden
        channels C; odd kernel size of both layers, k (square), (kh, kw), or (k,) in 1-D,
        that fits the image.
    steps, lr, rng : int, float, int or numpy.random.Generator or None
        The SGD settings, as in :func:`train_fc`.
    mode, block_size : {"element", "channel", "block"}, int, optional
        ``nn.Dropout``, ``nn.Dropout2d`` (SpatialDropout) or DropBlock on the hidden map;
        DropBlock's block side (``mode="block"`` only, required there).
    padding, activation : {"circular", "zeros"}, {None, "relu"}
        Padding of both layers; non-linearity on the hidden map, before the mask.
    batch_size, init_scale, lr_decay, record_every : int, float, float, int, optional
        The SGD settings, as in :func:`train_fc` (samples per minibatch, default N).

    Returns
    -------
    ConvTrainingResult
        The final kernels, the recorded history and the settings used.

    Raises
    ------
    InvalidParameterError
        If an argument is refused: the data, ``keep``, a count, a rate, an option, a
        kernel or a block that does not fit the image, ``rng``.
    FloatingPointError
        If the loss or the weights become non-finite: ``lr`` is too large.

    References
    ----------
    [1] Mianjy, Arora & Vidal, ICML 2018. [2] Arora et al., ICML 2021. [3] Tompson et
    al., CVPR 2015 (SpatialDropout). [4] Ghiasi et al., NeurIPS 2018 (DropBlock).

    Examples
    --------
    No dropout (keep = 1) on exactly white signals recovers a 5-tap teacher:

    >>> import numpy as np
    >>> from regtheory.data import white_inputs
    >>> X = white_inputs(32, 8, rng=0).reshape(32, 1, 8)
    >>> teacher = np.array([[[0.5, -1.0, 2.0, 1.0, 0.25]]])
    >>> Y = conv.conv2d(X, teacher, padding="circular")
    >>> res = train_conv(X, Y, 1.0, 3, 3, steps=2000, lr=0.02, rng=0)
    >>> bool(np.allclose(res.final_kernel, teacher, atol=1e-3))
    True
    """
    X, Y = check_conv_data(X, Y)
    channels = check_int(channels, "channels")
    kernel = check_kernel_size(kernel_size, X.ndim - 2)
    kh, kw = kernel if len(kernel) == 2 else (1, kernel[0])
    check_kernel_fits((kh, kw), X.shape[2:] if X.ndim == 4 else (1, X.shape[2]), "kernel_size")
    keep = check_keep(keep)
    schedule = check_schedule(steps, lr, init_scale, lr_decay, batch_size, record_every, len(X))
    masks = mask_distribution(mode, keep, block_size)
    if isinstance(masks, DropBlock):
        masks.gamma(X.shape[2:])  # raises early if the block does not fit the map
    check_padding(padding)
    check_choice(activation, "activation", ACTIVATIONS)
    gen = as_rng(rng)
    options = (mode, masks, padding, activation, schedule.batch_size)
    return _ConvProblem(X, Y, channels, kernel, keep, *options).train(schedule, gen, rng)
