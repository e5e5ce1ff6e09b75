"""The factors of a fully connected layer, as every function of :mod:`regtheory.fc` reads them."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._validation import InvalidParameterError, check_array

__all__ = ["check_factors", "input_energy"]


def check_factors(U: ArrayLike, V: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    U = check_array(U, "U", ndim=2)
    V = check_array(V, "V", ndim=2)
    if U.shape[1] != V.shape[1]:
        raise InvalidParameterError(
            f"`U` and `V` must have the same width (number of columns = hidden units), "
            f"got U {U.shape} and V {V.shape}"
        )
    return U, V


def input_energy(V: np.ndarray, cov: np.ndarray | None) -> np.ndarray:
    """E[h_i^2] = v_i^T C v_i for each hidden unit."""
    if cov is None:
        return np.einsum("ji,ji->i", V, V)
    return np.einsum("ji,jk,ki->i", V, cov, V)
