r"""One task, four kinds of dropout: what does each prefer?

:func:`compare` takes a 1-D circular convolution task (:func:`regtheory.data.conv_task`)
and learns the map y ≈ Mx under

* ``"fc"`` -- an FC hidden layer of width C·n with dropout: squared nuclear norm
  of M (THEORY (2)), :func:`regtheory.implied.solve_fc`;
* ``"element"`` -- a two-layer conv net with C channels and elementwise dropout
  on its hidden map: squared nuclear norm of the lifted kernel (THEORY (7)),
  :func:`regtheory.implied.solve_conv`;
* ``"channel"`` -- the same net with channel dropout: its ridge relaxation
  (λn/C)‖w‖²;
* ``"block"`` -- the FC layer with blocks of units dropped together: squared
  spectral k-support norm (Pal et al. 2020), :func:`regtheory.implied.solve_fc_block`;

through the implied problem (cvxpy) and, with ``train=True``, through real
dropout training (:mod:`regtheory.training`), and reports for each the
objective, the test risk, the spectrum of the end-to-end operator, the Fourier
magnitudes of its circulant part, its rank and the trained-vs-implied gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np

from . import fc, implied, training
from ._linalg import numerical_rank
from ._validation import InvalidParameterError, check_array, check_int, check_keep
from .conv import conv_matrix
from .data import ConvTask

__all__ = ["METHODS", "Comparison", "MethodResult", "circulant_spectrum", "compare"]

METHODS = {
    "fc": "FC layer, elementwise dropout: (λ/w)‖M‖_*²",
    "element": "conv net, elementwise dropout: (λn/C)‖Z‖_*², A(Z) = w",
    "channel": "conv net, channel dropout: ridge relaxation (λn/C)‖w‖²",
    "block": "FC layer, block dropout: (λ/G)‖M‖_(k)² (k-support)",
}


@dataclass(frozen=True)
class MethodResult:
    """What one kind of dropout learns on the task.

    Attributes
    ----------
    method : str
        Key of :data:`METHODS`.
    objective : float
        Implied-problem objective on the training data: mean ‖y − Mx‖² plus the
        method's regularizer at M.
    test_risk : float
        Mean ‖y − Mx‖² on the test set, implied solution.
    operator : ndarray (n, n)
        End-to-end map M of the implied solution.
    singular_values : ndarray (n,)
        Of ``operator``.
    fourier_magnitudes : ndarray (n,)
        :func:`circulant_spectrum` of ``operator`` (for a convolution: |DFT| of its kernel).
    rank : int
        Numerical rank of ``operator`` (singular values above 1e-6 of the largest).
    trained_operator : ndarray or None
        End-to-end map after real dropout training.
    trained_test_risk, gap : float or None
        Test risk of the trained map; ‖M_trained − M‖_F/‖M‖_F.
    certified_gap : float
        Relative duality gap certified for the implied solve (see
        :class:`regtheory.implied.ImpliedResult`): the true minimum of the solved
        problem lies within this fraction below its objective.
    """

    method: str
    objective: float
    test_risk: float
    operator: np.ndarray
    singular_values: np.ndarray
    fourier_magnitudes: np.ndarray
    rank: int
    trained_operator: np.ndarray | None = None
    trained_test_risk: float | None = None
    gap: float | None = None
    certified_gap: float = 0.0


@dataclass(frozen=True)
class Comparison:
    """Results of :func:`compare`, keyed by method, with the settings that made them."""

    results: dict[str, MethodResult]
    keep: float
    channels: int
    kernel_size: int
    block_size: int
    seed: int
    settings: dict = field(default_factory=dict)


def circulant_spectrum(M) -> np.ndarray:
    r"""|DFT| of the circulant part of an n×n map.

    The circulant projection of M (the nearest circulant matrix in Frobenius norm)
    has kernel c, the means of the wrapped diagonals, and the result is the modulus
    of its unnormalised DFT (``numpy.fft.fft``):

    .. math:: c_d = \frac1n\sum_{i=0}^{n-1} M_{i,(i+d)\bmod n},\qquad
              \text{out}_j = \Big|\sum_{d=0}^{n-1} c_d\, e^{-2\pi \mathrm{i}\, jd/n}\Big| .

    For a circular convolution M (:func:`regtheory.conv.conv_matrix` with
    ``padding="circular"``) c is its kernel and the result is |ŵ|, the
    singular values of M in frequency order.

    Parameters
    ----------
    M : array (n, n)
        Square map (not validated).

    Returns
    -------
    ndarray (n,)
        :math:`|\hat c_j|`, j = 0, …, n − 1.

    Examples
    --------
    >>> import numpy as np
    >>> from regtheory.conv import conv_matrix
    >>> circulant_spectrum(conv_matrix(np.array([[[1.0, 2.0, 1.0]]]), 4, padding="circular"))
    array([4., 2., 0., 2.])
    """
    M = check_array(M, "M", ndim=2)
    if M.shape[0] != M.shape[1]:
        raise InvalidParameterError(f"`M` must be square (n, n), got shape {M.shape}")
    n = M.shape[0]
    idx = np.arange(n)
    c = np.array([M[idx, (idx + d) % n].mean() for d in range(n)])
    return np.abs(np.fft.fft(c))


def _risk(M, X, Y) -> float:
    return float(np.mean(np.sum((Y - X @ M.T) ** 2, axis=1)))


def _summary(method, objective, M, X_test, Y_test, certified_gap, trained=None) -> MethodResult:
    s = np.linalg.svd(M, compute_uv=False)
    rank = numerical_rank(s)
    extra = {}
    if trained is not None:
        extra = {
            "trained_operator": trained,
            "trained_test_risk": _risk(trained, X_test, Y_test),
            "gap": float(np.linalg.norm(trained - M) / max(np.linalg.norm(M), 1e-300)),
        }
    return MethodResult(
        method=method,
        objective=float(objective),
        test_risk=_risk(M, X_test, Y_test),
        operator=M,
        singular_values=s,
        fourier_magnitudes=circulant_spectrum(M),
        rank=rank,
        certified_gap=float(certified_gap),
        **extra,
    )


def _check_kernel_size(kernel_size: int, n: int) -> None:
    """The conv net's K-tap kernels on signals of length n: what the conv problems need."""
    if kernel_size % 2 == 0:
        raise InvalidParameterError(
            f"`kernel_size` must be odd (a same-size output needs a centre tap), got {kernel_size}"
        )
    if kernel_size > n:
        raise InvalidParameterError(
            f"`kernel_size` ({kernel_size}) must fit the signal length n = {n}"
        )
    if 2 * kernel_size - 1 > n and n % 2 == 0:
        raise InvalidParameterError(
            f"`kernel_size` ({kernel_size}): the end-to-end kernel (2K − 1 taps) is wider than "
            f"the even signal length n = {n}, so it folds into an even-length kernel that a "
            "same-size convolution cannot represent; use an odd n or a smaller kernel"
        )


def _check_solver(solver) -> str | None:
    """``None`` (the default solver) or the upper-case name of an installed cvxpy solver."""
    if solver is None:
        return None
    installed = cp.installed_solvers()
    if not isinstance(solver, str) or solver.upper() not in installed:
        raise InvalidParameterError(
            f"`solver` must be one of the installed cvxpy solvers {installed}, got {solver!r}"
        )
    return solver.upper()


#: Default training schedules (full-batch steps, fresh masks per sample). Measured on the
#: figure task (n = 9, K = C = 9, keep 0.1): trained-vs-implied gaps 1-2.4 % (FC, block),
#: 1-1.2 % (conv); the conv net diverges at lr 0.01 there. Pass your own for other tasks.
FC_TRAINING = {"steps": 6000, "lr": 0.02, "lr_decay": 1000.0, "init_scale": 0.3}
CONV_TRAINING = {"steps": 6000, "lr": 0.003, "lr_decay": 1000.0, "init_scale": 0.3}


def compare(
    task: ConvTask,
    keep: float,
    channels: int,
    kernel_size: int,
    block_size: int | None = None,
    methods=tuple(METHODS),
    train: bool = True,
    seed: int = 0,
    fc_training: dict | None = None,
    conv_training: dict | None = None,
    *,
    solver: str | None = None,
) -> Comparison:
    """Solve ``task`` under each kind of dropout (implied problem, optionally training).

    Parameters
    ----------
    task : ConvTask
        1-D single-channel task, signals of length n.
    keep : float
        Retain probability, the same for every method.
    channels : int
        Hidden channels C of the conv net; the FC layers get w = C·n units (the
        conv net's hidden-map size).
    kernel_size : int
        Taps K of each conv kernel (odd; the end-to-end kernel has 2K − 1).
    block_size : int, optional
        Units per dropped block for ``"block"`` (must divide C·n); default n, the
        size of one hidden channel's map (then block dropout is a ridge, like
        channel dropout). Small blocks in the averaging regime of the k-support
        norm induce exactly the FC regularizer.
    methods : iterable of str
        Subset of :data:`METHODS`.
    train : bool
        Also train each network with real dropout masks and report the gap.
    seed : int
        Seed of the training runs (method i uses ``seed + i``).
    fc_training, conv_training : dict, optional
        Keyword arguments (steps, lr, lr_decay, init_scale, ...) for
        :func:`regtheory.training.train_fc` / :func:`~regtheory.training.train_conv`;
        default :data:`FC_TRAINING` / :data:`CONV_TRAINING`.
    solver : str, optional
        cvxpy solver of every implied problem (one of ``cvxpy.installed_solvers()``;
        default Clarabel with the tolerances of :mod:`regtheory.implied`). The conv
        problems have a semidefinite cone, which only Clarabel and SCS solve among
        cvxpy's usual solvers.

    Returns
    -------
    Comparison

    Raises
    ------
    InvalidParameterError
        An argument is refused (before any solve).
    regtheory.implied.SolverFailedError
        A solve did not end ``optimal``.
    """
    if not isinstance(task, ConvTask):
        raise InvalidParameterError(
            f"`task` must be a regtheory.data.ConvTask, got {type(task).__name__}"
        )
    keep = check_keep(keep)
    channels = check_int(channels, "channels")
    kernel_size = check_int(kernel_size, "kernel_size")
    seed = check_int(seed, "seed", minimum=0)
    try:
        methods = (methods,) if isinstance(methods, str) else tuple(methods)
    except TypeError:
        raise InvalidParameterError(
            f"`methods` must be an iterable of names among {list(METHODS)}, got {methods!r}"
        ) from None
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InvalidParameterError(f"`methods` must be among {list(METHODS)}, got {unknown}")
    fc_training = FC_TRAINING if fc_training is None else dict(fc_training)
    conv_training = CONV_TRAINING if conv_training is None else dict(conv_training)
    X, Y = task.X[:, 0], task.Y[:, 0]
    Xt, Yt = task.X_test[:, 0], task.Y_test[:, 0]
    N, n = X.shape
    _check_kernel_size(kernel_size, n)
    block_size = n if block_size is None else check_int(block_size, "block_size")
    width = channels * n
    if "block" in methods and width % block_size:
        raise InvalidParameterError(
            f"`block_size` ({block_size}) must divide the FC width C·n = {width} (units are "
            "dropped in groups of block_size)"
        )
    solver = _check_solver(solver)
    T, cov = Y.T @ X / N, X.T @ X / N
    results = {}
    for i, method in enumerate(methods):
        run_seed = seed + i
        trained = None
        if method in ("fc", "block"):
            bs = 1 if method == "fc" else block_size
            sol = (
                implied.solve_fc(T, keep, width, cov, solver=solver)
                if bs == 1
                else implied.solve_fc_block(T, keep, width, bs, cov, solver=solver)
            )
            M = sol.M
            objective = _risk(M, X, Y) + fc.block_induced_regularizer(M, keep, width, bs, cov)
            if train:
                run = training.train_fc(
                    X, Y, width, keep, seed=run_seed, block_size=bs, **fc_training
                )
                trained = run.final_map
        else:
            sol = implied.solve_conv(
                task.X, task.Y, keep, channels, kernel_size, mode=method, solver=solver
            )
            M = conv_matrix(sol.w, (n,), padding="circular")
            objective = sol.objective
            if train:
                run = training.train_conv(
                    task.X,
                    task.Y,
                    channels,
                    kernel_size,
                    keep,
                    seed=run_seed,
                    mode=method,
                    padding="circular",
                    **conv_training,
                )
                trained = conv_matrix(run.kernels[-1], (n,), padding="circular")
        results[method] = _summary(method, objective, M, Xt, Yt, sol.gap, trained)
    return Comparison(
        results=results,
        keep=keep,
        channels=channels,
        kernel_size=kernel_size,
        block_size=block_size,
        seed=seed,
        settings={
            "fc_training": fc_training,
            "conv_training": conv_training,
            "train": train,
            "solver": solver,
        },
    )
