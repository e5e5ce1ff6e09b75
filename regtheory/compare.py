r"""One task, four kinds of dropout: the map each of them prefers.

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

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast

import cvxpy as cp
import numpy as np
from numpy.typing import ArrayLike

from . import fc, implied, training
from ._grammar import RngLike, as_rng, transition_to_rng
from ._linalg import numerical_rank
from ._references import Cited, cites
from ._results import freeze_arrays
from ._validation import InvalidParameterError, check_array, check_int, check_keep
from .conv import conv_matrix
from .data import ConvTask

__all__ = [
    "METHODS",
    "Comparison",
    "MethodResult",
    "circulant_spectrum",
    "compare",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


METHODS: Mapping[str, str] = MappingProxyType(
    {
        "fc": "FC layer, elementwise dropout: (λ/w)‖M‖_*²",
        "element": "conv net, elementwise dropout: (λn/C)‖Z‖_*², A(Z) = w",
        "channel": "conv net, channel dropout: ridge relaxation (λn/C)‖w‖²",
        "block": "FC layer, block dropout: (λ/G)‖M‖_(k)² (k-support)",
    }
)


@dataclass(frozen=True)
class MethodResult:
    """What one kind of dropout learns on the task.

    Attributes
    ----------
    method : str
        Key of :data:`METHODS`.
    objective : float
        Implied-problem objective on the training data, fit + regularizer: the mean
        ‖y − Mx‖² over the training data plus the method's regularizer at M (the same
        for every method, whether its implied problem is posed on the data or on
        their moments).
    test_risk : float
        Mean ‖y − Mx‖² on the test set, implied solution.
    operator : ndarray (n, n)
        End-to-end map M of the implied solution.
    singular_values : ndarray (n,)
        Of ``operator``.
    fourier_magnitudes : ndarray (n,)
        :func:`circulant_spectrum` of ``operator`` (for a convolution: the DFT moduli of
        its kernel).
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

    def __post_init__(self) -> None:
        freeze_arrays(self)

    def to_dict(self) -> dict[str, Any]:
        """The numbers of this result as JSON values (``regtheory compare --json``).

        The scalars, the rank and the two spectra; the n×n operators are left out.
        ``gap`` is written as ``gap_trained_vs_implied`` (not the certified gap).
        """
        return {
            "method": self.method,
            "objective": self.objective,
            "test_risk": self.test_risk,
            "rank": self.rank,
            "singular_values": self.singular_values.tolist(),
            "fourier_magnitudes": self.fourier_magnitudes.tolist(),
            "trained_test_risk": self.trained_test_risk,
            "gap_trained_vs_implied": self.gap,
        }


@dataclass(frozen=True)
class Comparison(Cited):
    """Results of :func:`compare`, keyed by method, with the settings that made them.

    ``seed`` is the int ``rng`` of the call (method i trained with seed + i), or None
    when a Generator was passed.
    """

    results: Mapping[str, MethodResult]
    keep: float
    channels: int
    kernel_size: int
    block_size: int
    seed: int | None
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def circulant_spectrum(M: ArrayLike) -> np.ndarray:
    r"""Moduli of the DFT of the circulant part of an n×n map.

    The circulant projection of M (the nearest circulant matrix in Frobenius norm)
    has kernel c, the means of the wrapped diagonals, and the result is the modulus
    of its unnormalised DFT (``numpy.fft.fft``):

    .. math:: c_d = \frac1n\sum_{i=0}^{n-1} M_{i,(i+d)\bmod n},\qquad
              \text{out}_j = \Big|\sum_{d=0}^{n-1} c_d\, e^{-2\pi \mathrm{i}\, jd/n}\Big| .

    For a circular convolution M (:func:`regtheory.conv.conv_matrix` with
    ``padding="circular"``) c is its kernel and the result is :math:`|\hat w|`, the
    singular values of M in frequency order.

    Parameters
    ----------
    M : array (n, n)
        Square map.

    Returns
    -------
    ndarray (n,)
        :math:`|\hat c_j|`, j = 0, …, n − 1.

    Raises
    ------
    InvalidParameterError
        If ``M`` is not a finite real square 2-D array.

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


def _risk(M: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:
    return float(np.mean(np.sum((Y - X @ M.T) ** 2, axis=1)))


def _summary(
    method: str,
    objective: float,
    M: np.ndarray,
    task: ConvTask,
    certified_gap: float,
    trained: np.ndarray | None = None,
) -> MethodResult:
    """What ``method`` learned on ``task``, with the risks on its test set."""
    X_test, Y_test = task.X_test[:, 0], task.Y_test[:, 0]
    s = np.linalg.svd(M, compute_uv=False)
    rank = numerical_rank(s)
    extra: dict[str, Any] = {}
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


def _check_solver(solver: object) -> str | None:
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
FC_TRAINING: Mapping[str, float] = MappingProxyType(
    {"steps": 6000, "lr": 0.02, "lr_decay": 1000.0, "init_scale": 0.3}
)
CONV_TRAINING: Mapping[str, float] = MappingProxyType(
    {"steps": 6000, "lr": 0.003, "lr_decay": 1000.0, "init_scale": 0.3}
)


@cites(
    "mianjy2018implicit",
    "cavazza2018dropout",
    "gunasekar2018implicit",
    "tompson2015efficient",
    "pal2020regularization",
    "mcdonald2014spectral",
)
@transition_to_rng
def compare(
    task: ConvTask,
    keep: float,
    channels: int,
    kernel_size: int,
    *,
    block_size: int | None = None,
    methods: str | Iterable[str] = tuple(METHODS),
    train: bool = True,
    rng: RngLike = 0,
    fc_training: Mapping[str, Any] | None = None,
    conv_training: Mapping[str, Any] | None = None,
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
    rng : int, numpy.random.Generator or None
        Source of the training runs: an int seed s gives method i the seed s + i; a
        Generator (or None) gives each method an independent stream spawned from it.
    fc_training, conv_training : dict, optional
        Keyword arguments (steps, lr, lr_decay, init_scale, ...) for
        :func:`regtheory.training.train_fc` / :func:`~regtheory.training.train_conv`;
        default :data:`FC_TRAINING` / :data:`CONV_TRAINING`.
    solver : str, optional
        cvxpy solver of every implied problem (one of ``cvxpy.installed_solvers()``; default
        Clarabel with the tolerances of :mod:`regtheory.implied`). The conv problems have a
        semidefinite cone, which only Clarabel and SCS solve among cvxpy's usual solvers.

    Returns
    -------
    Comparison
        The results keyed by method, with the settings that made them.

    Raises
    ------
    InvalidParameterError
        An argument is refused (before any solve).
    regtheory.implied.SolverFailedError
        No solver returned a solution of an implied problem with a certified gap.
    """
    _check_task(task)
    keep = check_keep(keep)
    channels = check_int(channels, "channels")
    kernel_size = check_int(kernel_size, "kernel_size")
    methods = _check_methods(methods)
    streams = _streams(rng, len(methods))
    fc_training = _schedule(fc_training, FC_TRAINING)
    conv_training = _schedule(conv_training, CONV_TRAINING)
    X, Y = task.X[:, 0], task.Y[:, 0]
    N, n = X.shape
    _check_kernel_size(kernel_size, n)
    block_size = _check_block_size(block_size, n, channels * n, methods)
    solver = _check_solver(solver)
    T, cov = Y.T @ X / N, X.T @ X / N
    results = {}
    sol: implied.ImpliedResult | implied.ConvSolution
    for i, method in enumerate(methods):
        bs = 1 if method == "fc" else block_size
        if method in ("fc", "block"):
            sol, M, fit, reg = _solve_fc(X, Y, T, cov, keep, channels * n, bs, solver)
        else:
            sol, M, fit, reg = _solve_conv(task, keep, channels, kernel_size, method, solver)
        schedule = fc_training if method in ("fc", "block") else conv_training
        trained = (
            _train(task, keep, channels, kernel_size, method, bs, rng=streams[i], schedule=schedule)
            if train
            else None
        )
        results[method] = _summary(method, fit + reg, M, task, sol.gap, trained)
    return Comparison(
        results=MappingProxyType(results),
        keep=keep,
        channels=channels,
        kernel_size=kernel_size,
        block_size=block_size,
        seed=streams[0] if streams and isinstance(streams[0], int) else None,
        settings=_settings(fc_training, conv_training, train=train, solver=solver),
    )


def _streams(rng: object, n: int) -> list[int] | list[np.random.Generator]:
    """One source of randomness per method.

    Seeds s, s + 1, ... from an int seed s (the former ``seed + i``), else independent
    streams spawned from the generator.
    """
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        first = check_int(rng, "rng", minimum=0)
        return [first + i for i in range(n)]
    return as_rng(rng).spawn(n)


def _schedule(given: Mapping[str, Any] | None, default: Mapping[str, Any]) -> Mapping[str, Any]:
    """A training schedule as a read-only mapping: a copy of ``given``, else ``default``."""
    return default if given is None else MappingProxyType(dict(given))


def _settings(
    fc_training: Mapping[str, Any],
    conv_training: Mapping[str, Any],
    *,
    train: bool,
    solver: str | None,
) -> Mapping[str, Any]:
    """The settings a :class:`Comparison` records beside its results."""
    return MappingProxyType(
        {
            "fc_training": fc_training,
            "conv_training": conv_training,
            "train": train,
            "solver": solver,
        }
    )


def _check_task(task: object) -> None:
    if not isinstance(task, ConvTask):
        raise InvalidParameterError(
            f"`task` must be a regtheory.data.ConvTask, got {type(task).__name__}"
        )


def _check_block_size(block_size: object, n: int, width: int, methods: tuple[str, ...]) -> int:
    """Units per dropped block of ``"block"``: n by default; must divide the FC width C·n."""
    block_size = n if block_size is None else check_int(block_size, "block_size")
    if "block" in methods and width % block_size:
        raise InvalidParameterError(
            f"`block_size` ({block_size}) must divide the FC width C·n = {width} (units are "
            "dropped in groups of block_size)"
        )
    return block_size


def _check_methods(methods: object) -> tuple[str, ...]:
    """``methods`` as a tuple of keys of :data:`METHODS` (one name is one method)."""
    try:
        names = (methods,) if isinstance(methods, str) else tuple(methods)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidParameterError(
            f"`methods` must be an iterable of names among {list(METHODS)}, got {methods!r}"
        ) from None
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise InvalidParameterError(f"`methods` must be among {list(METHODS)}, got {unknown}")
    return names


def _solve_fc(
    X: np.ndarray,
    Y: np.ndarray,
    T: np.ndarray,
    cov: np.ndarray,
    keep: float,
    width: int,
    block_size: int,
    solver: str | None,
) -> tuple[implied.ImpliedResult, np.ndarray, float, float]:
    """The FC implied problem (block_size 1) or the block one: (result, M, fit, regularizer).

    The FC problems are posed on the moments (T, C), so the result's ``fit`` leaves out
    the squared error of the least-squares map; the fit here is the mean squared error
    on the training data, as for the conv problems. The regularizer is evaluated by its
    closed form in :mod:`regtheory.fc` (for block_size 1 the k-support norm with k = 1,
    the nuclear norm summed in another order than the result's ``regularizer``).
    """
    sol = (
        implied.solve_fc(T, keep, width, cov=cov, solver=solver)
        if block_size == 1
        else implied.solve_fc_block(T, keep, width, block_size, cov=cov, solver=solver)
    )
    M = sol.M
    regularizer = fc.block_induced_regularizer(M, keep, width, block_size, cov=cov)
    return sol, M, _risk(M, X, Y), regularizer


def _solve_conv(
    task: ConvTask, keep: float, channels: int, kernel_size: int, mode: str, solver: str | None
) -> tuple[implied.ConvSolution, np.ndarray, float, float]:
    """The conv implied problem of ``mode``: (result, its circulant map M, fit, regularizer).

    It is posed on the data, so its ``fit`` is the mean squared error on them already.
    """
    conv_mode = cast(Literal["element", "channel"], mode)  # checked against METHODS
    sol = implied.solve_conv(
        task.X, task.Y, keep, channels, kernel_size, mode=conv_mode, solver=solver
    )
    M = conv_matrix(sol.w, (task.X.shape[-1],), padding="circular")
    return sol, M, sol.fit, sol.regularizer


def _train(
    task: ConvTask,
    keep: float,
    channels: int,
    kernel_size: int,
    method: str,
    block_size: int,
    *,
    rng: int | np.random.Generator,
    schedule: Mapping[str, Any],
) -> np.ndarray:
    """The end-to-end map after real dropout training of the network of ``method``."""
    n = task.X.shape[-1]
    if method in ("fc", "block"):
        X, Y = task.X[:, 0], task.Y[:, 0]
        run = training.train_fc(
            X, Y, keep, channels * n, rng=rng, block_size=block_size, **schedule
        )
        return run.final_map
    conv_run = training.train_conv(
        task.X,
        task.Y,
        keep,
        channels,
        kernel_size,
        rng=rng,
        mode=cast(Literal["element", "channel", "block"], method),  # a conv key of METHODS
        padding="circular",
        **schedule,
    )
    return conv_matrix(conv_run.kernels[-1], (n,), padding="circular")
