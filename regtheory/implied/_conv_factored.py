r"""The exact (non-convex) dropout objective of the factored conv net, minimised numerically.

With zero padding the kernels are truncated at the border, so formula (5) weighs
each hidden position by how much of u fits in the image, and the neat lifted
problem (7) is only a relaxation (THEORY §3). Here the true expected dropout
objective of the two-layer linear conv net,

.. math::

    J(u, v) = \frac1N\sum_n \|y_n - UVx_n\|^2 + \text{penalty (5) or (6)},

with U, V the conv matrices of u, v (:func:`regtheory.conv.conv_matrix`) and the
penalty on the data's second moment, is minimised with L-BFGS from several
random starts. The matrices are dense, so this is for the small images of the
comparisons (up to a few thousand pixels·channels).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

from .._grammar import RngLike, as_rng, transition_to_rng
from .._references import Cited, cites
from .._results import freeze_arrays
from .._ties import argmin_tied
from .._validation import InvalidParameterError, check_int, check_positive
from ..conv import conv_matrix
from ..masks import dropout_lambda
from ._conv import check_conv_data

__all__ = ["FactoredConvSolution", "solve_conv_factored"]


@dataclass(frozen=True)
class FactoredConvSolution(Cited):
    """Best local minimum of the factored conv dropout objective over several starts.

    Attributes
    ----------
    u, v : ndarrays
        Kernels, (C_out, C, k, k) and (C, C_in, k, k) (1-D: no height axis).
    objective : float
        J(u, v) at the best start: the fit (mean squared error on the data) plus the
        regularizer (here the exact dropout penalty, ``penalty``). Starts within 1e-9
        (relative) of the lowest J count as tied; the first of them is best.
    penalty : float
        The dropout penalty part of ``objective``.
    start_objectives : ndarray
        J at the end of every start (how rugged the landscape is).
    success : bool
        Whether L-BFGS-B reported convergence at the best start. It can report a
        failed line search at a point where no further progress is possible in
        floating point; ``gradient_norm`` says how stationary the point is.
    message : str
        L-BFGS-B's message at the best start.
    gradient_norm : float
        Stationarity at the best start, free of units: ‖∇J‖·‖z‖/J for the stacked
        kernels z (the first-order change of J, relative to J, under a relative
        change of the kernels). A local minimum has it near 0 (the gradient is exact).
    solve_time : float
    """

    u: np.ndarray
    v: np.ndarray
    objective: float
    penalty: float
    start_objectives: np.ndarray
    success: bool
    message: str
    gradient_norm: float
    solve_time: float

    def __post_init__(self) -> None:
        freeze_arrays(self)

    @property
    def grad_norm(self) -> float:
        """Deprecated name of ``gradient_norm``."""
        warnings.warn(
            "grad_norm is deprecated; use gradient_norm", DeprecationWarning, stacklevel=2
        )
        return self.gradient_norm


def _tap_labels(
    shape: tuple[int, ...],
    image_shape: tuple[int, ...],
    padding: Literal["zeros", "circular"],
) -> np.ndarray:
    """Conv matrix whose entries are the (1-based) index of the tap there, 0 for none."""
    labels = np.arange(1, int(np.prod(shape)) + 1, dtype=float).reshape(shape)
    return np.rint(conv_matrix(labels, image_shape, padding=padding)).astype(np.intp)


@cites("mianjy2018implicit", "tompson2015efficient")
@transition_to_rng
def solve_conv_factored(
    X: ArrayLike,
    Y: ArrayLike,
    keep: float,
    channels: int,
    kernel_size: int,
    *,
    padding: Literal["zeros", "circular"] = "zeros",
    mode: Literal["element", "channel"] = "element",
    starts: int = 5,
    rng: RngLike = 0,
    init_scale: float = 0.5,
) -> FactoredConvSolution:
    r"""Minimise the exact expected dropout objective of the factored linear conv net.

    .. math::

        J(u, v) = \operatorname{tr}(UVCV^\top U^\top) - 2\operatorname{tr}(UVT^\top)
                  + \overline{\|y\|^2} + \begin{cases}
                      \lambda \sum_j \|U[:,j]\|^2 (VCV^\top)_{jj} & \text{element (5)}\\
                      \lambda\sum_c \operatorname{tr}(U_cV_cCV_c^\top U_c^\top) & \text{channel (6)}
                    \end{cases}

    C = XᵀX/N, T = YᵀX/N on the flattened images. L-BFGS with exact gradients
    (the adjoint of ``conv_matrix`` is a sum over the entries holding each tap).

    Parameters
    ----------
    X, Y : arrays (N, C_in, H, W), (N, C_out, H, W) (or 1-D signals (N, C, L))
        Input images and their targets, with the same samples and spatial shape.
    keep : float
        Retain probability θ in (0, 1] of the dropout on the hidden channels.
    channels : int
        Hidden channels C.
    kernel_size : int
        Odd taps per axis of both kernels.
    padding : {"zeros", "circular"}
        Border mode of both convolutions.
    mode : {"element", "channel"}
        Dropout of single hidden units, or of whole hidden channels.
    starts : int
        Random initialisations (i.i.d. N(0, init_scale²) kernel entries).
    rng : int, numpy.random.Generator or None
        Source of the starts; the same int seed gives the same numbers.
    init_scale : float
        Standard deviation of the random initial kernel entries, in units where the targets
        have unit mean square (the solve rescales Y; the kernels are scaled back).

    Returns
    -------
    FactoredConvSolution
        The kernels of the best start, its objective and penalty, and every start's.

    Raises
    ------
    InvalidParameterError
        If the data, ``keep``, ``channels``, ``kernel_size`` (odd, fitting the image),
        ``padding``, ``mode``, ``starts``, ``rng`` or ``init_scale`` are refused.
    """
    checked = _check_factored(X, Y, keep, channels, kernel_size, starts, init_scale, mode, rng)
    X, Y, lam, channels, kernel_size, starts, init_scale, rng = checked
    image = X.shape[2:]
    N, c_in, c_out = X.shape[0], X.shape[1], Y.shape[1]
    k = (kernel_size,) * len(image)
    u_shape, v_shape = (c_out, channels, *k), (channels, c_in, *k)
    lab_u = _tap_labels(u_shape, image, padding)  # validates padding, kernel vs image
    lab_v = _tap_labels(v_shape, image, padding)
    n_u, n_v = int(np.prod(u_shape)), int(np.prod(v_shape))
    Xf, Yf = X.reshape(N, -1), Y.reshape(N, -1)
    # J is homogeneous: J(√s u, √s v; sY) = s² J(u, v; Y). Minimise for targets of unit
    # mean square and scale back, so L-BFGS's tolerances and init_scale see O(1) numbers
    # whatever the units of Y (at Y ~ 1e-3 it otherwise stops at the initial point).
    scale = float(np.sqrt(np.sum(Yf * Yf) / N)) or 1.0
    Yf = Yf / scale
    Cx, T, yy = Xf.T @ Xf / N, Yf.T @ Xf / N, float(np.sum(Yf * Yf) / N)
    objective = _objective(
        lab_u, lab_v, Cx, T, yy, lam, mode=mode, channels=channels, sizes=(n_u, n_v)
    )
    start = time.perf_counter()
    results = _minimise(objective, n_u + n_v, starts=starts, init_scale=init_scale, rng=rng)
    # Starts that reach the same minimum end within rounding of each other, possibly at
    # different (u, v): the first of them is kept, not whichever rounding favours.
    best = results[argmin_tied([r.fun for r in results])]
    value, grad, pen = objective(best.x)
    root = np.sqrt(scale)
    u = root * best.x[:n_u].reshape(u_shape)
    v = root * best.x[n_u:].reshape(v_shape)
    return FactoredConvSolution(
        u=u,
        v=v,
        objective=float(value) * scale**2,
        penalty=float(pen) * scale**2,
        start_objectives=np.array([r.fun for r in results]) * scale**2,
        success=bool(best.success),
        message=str(best.message),
        gradient_norm=float(
            np.linalg.norm(grad) * np.linalg.norm(best.x) / max(abs(value), 1e-300)
        ),
        solve_time=time.perf_counter() - start,
    )


def _check_factored(
    X: ArrayLike,
    Y: ArrayLike,
    keep: float,
    channels: int,
    kernel_size: int,
    starts: int,
    init_scale: float,
    mode: str,
    rng: RngLike,
) -> tuple[np.ndarray, np.ndarray, float, int, int, int, float, np.random.Generator]:
    """The arguments of :func:`solve_conv_factored` but ``padding``, checked in order."""
    lam = dropout_lambda(keep)
    channels = check_int(channels, "channels")
    kernel_size = check_int(kernel_size, "kernel_size")
    starts = check_int(starts, "starts")
    init_scale = check_positive(init_scale, "init_scale")
    if mode not in ("element", "channel"):
        raise InvalidParameterError(f"`mode` must be 'element' or 'channel', got {mode!r}")
    X, Y = check_conv_data(X, Y)
    return X, Y, lam, channels, kernel_size, starts, init_scale, as_rng(rng)


def _objective(
    lab_u: np.ndarray,
    lab_v: np.ndarray,
    Cx: np.ndarray,
    T: np.ndarray,
    yy: float,
    lam: float,
    *,
    mode: str,
    channels: int,
    sizes: tuple[int, int],
) -> Callable[[np.ndarray], tuple[float, np.ndarray, float]]:
    """J of :func:`solve_conv_factored` on the stacked taps z = (u, v): (J, ∇J, penalty).

    ``lab_u``, ``lab_v`` are the tap labels of the conv matrices (:func:`_tap_labels`)
    of the ``sizes`` = (n_u, n_v) taps; C = ``Cx``, T and mean ‖y‖² = ``yy`` the data's
    moments.
    """
    n_u, n_v = sizes
    n_pix = lab_v.shape[0] // channels  # V: (C · pixels, C_in · pixels)

    def objective(z: np.ndarray) -> tuple[float, np.ndarray, float]:
        U = np.concatenate([[0.0], z[:n_u]])[lab_u]
        V = np.concatenate([[0.0], z[n_u:]])[lab_v]
        VC = V @ Cx
        UV = U @ V
        fit = np.sum((UV @ Cx) * UV) - 2 * np.sum(UV * T) + yy
        gU = 2 * (UV @ Cx - T) @ V.T
        gV = 2 * U.T @ (UV @ Cx - T)
        if mode == "element":
            a = np.sum(U * U, axis=0)
            b = np.sum(VC * V, axis=1)
            pen = lam * a @ b
            gU += 2 * lam * U * b
            gV += 2 * lam * a[:, None] * VC
        else:
            Ub = U.reshape(U.shape[0], channels, n_pix)
            Vb = V.reshape(channels, n_pix, -1)
            UVb = np.einsum("ocp,cpi->coi", Ub, Vb)  # U_c V_c
            UVC = np.einsum("coi,ij->coj", UVb, Cx)
            pen = lam * np.sum(UVC * UVb)
            gU += 2 * lam * np.einsum("coi,cpi->ocp", UVC, Vb).reshape(U.shape)
            gV += 2 * lam * np.einsum("ocp,coj->cpj", Ub, UVC).reshape(V.shape)
        gu = np.bincount(lab_u.ravel(), weights=gU.ravel(), minlength=n_u + 1)[1:]
        gv = np.bincount(lab_v.ravel(), weights=gV.ravel(), minlength=n_v + 1)[1:]
        return fit + pen, np.concatenate([gu, gv]), pen

    return objective


def _minimise(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray, float]],
    n: int,
    *,
    starts: int,
    init_scale: float,
    rng: np.random.Generator,
    max_iter: int = 20_000,
    max_fun: int = 15_000,
) -> list[optimize.OptimizeResult]:
    """L-BFGS-B from ``starts`` random points z0 ~ N(0, init_scale²) in R^n, in order.

    At most ``max_iter`` iterations and ``max_fun`` evaluations of the objective per start.
    """
    results = []
    for _ in range(starts):
        z0 = init_scale * rng.standard_normal(n)
        res = optimize.minimize(
            lambda z: objective(z)[:2],
            z0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "maxfun": max_fun, "gtol": 1e-10, "ftol": 1e-14},
        )
        results.append(res)
    return results
