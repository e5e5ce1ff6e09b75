"""The three exponential families of regtheory.glm, and the checks of a GLM's inputs."""

from __future__ import annotations

from typing import Literal

import cvxpy as cp
import numpy as np

from .._validation import (
    InvalidParameterError,
    check_array,
    check_choice,
    check_keep,
    check_real,
)

Family = Literal["gaussian", "logistic", "poisson"]
#: The exponential families: cumulant z²/2, log(1 + e^z), e^z.
FAMILIES = ("gaussian", "logistic", "poisson")
# ----------------------------------------------------------------------------- the families


def cumulant(z: np.ndarray, family: str) -> np.ndarray:
    """A(z) of the family, stable for large |z|."""
    if family == "gaussian":
        return 0.5 * z * z
    if family == "logistic":
        return np.logaddexp(0.0, z)
    return np.exp(z)


def mean_function(z: np.ndarray, family: str) -> np.ndarray:
    """A'(z): the mean of the response at score z."""
    if family == "gaussian":
        return z
    if family == "logistic":
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # the sigmoid without overflow
    return np.exp(z)


def variance_function(z: np.ndarray, family: str) -> np.ndarray:
    """A''(z): the variance of the response at score z."""
    if family == "gaussian":
        return np.ones_like(z)
    if family == "logistic":
        s = mean_function(z, family)
        return s * (1.0 - s)
    return np.exp(z)


def cvx_cumulant(z: cp.Expression, family: str) -> cp.Expression:
    if family == "gaussian":
        return 0.5 * cp.square(z)
    if family == "logistic":
        return cp.logistic(z)
    return cp.exp(z)


# ----------------------------------------------------------------------------- checks


def check_model(
    beta: object, X: object, keep: object, family: object, offset: object
) -> tuple[np.ndarray, np.ndarray, float, str, float]:
    beta = check_array(beta, "beta", ndim=1)
    X = check_array(X, "X", ndim=2)
    if X.shape[1] != beta.shape[0]:
        raise InvalidParameterError(
            f"`beta` must have one entry per feature (column of `X`, {X.shape[1]}), "
            f"got shape {beta.shape}"
        )
    keep = check_keep(keep)
    check_choice(family, "family", FAMILIES)
    offset = check_real(offset, "offset")
    return beta, X, keep, str(family), offset


def check_labels(y: object, X: np.ndarray, family: str) -> np.ndarray:
    y = check_array(y, "y", ndim=1)
    if y.shape[0] != X.shape[0]:
        raise InvalidParameterError(
            f"`y` must have one label per sample (row of `X`, {X.shape[0]}), got shape {y.shape}"
        )
    if family == "logistic" and not np.all((y == 0.0) | (y == 1.0)):
        raise InvalidParameterError("`y` must hold labels 0 and 1 for the logistic family")
    if family == "poisson" and np.any(y < 0.0):
        raise InvalidParameterError("`y` must hold non-negative counts for the poisson family")
    return y
