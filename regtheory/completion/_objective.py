r"""Observed entries, and the dropout objective of a factorization on them.

Each observation draws its own mask on the shared factor, so the dropout objective is a
sum over the observed entries; its penalty has a closed form (:func:`dropout_penalty`),
checked against real masks with ``method="mc"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._grammar import RngLike, check_method
from .._overflow import finite_result
from .._references import cites
from .._results import Penalty, freeze_arrays
from .._validation import (
    InvalidParameterError,
    check_array,
    check_choice,
    check_int,
    check_n_masks,
)
from ..fc._factors import check_factors
from ..masks import dropout_lambda, kept_units
from ..montecarlo import default_n_masks, estimate, min_draws

__all__ = [
    "Observations",
    "check_covered",
    "check_model",
    "check_obs",
    "dropout_penalty",
    "explicit_regularizer",
    "fit_loss",
    "observed",
]

# Entries of an (observations × width) array worked on at once: the gathered factor rows of
# a large set of observations are formed in chunks of about 8 MB (and Monte Carlo masks in
# batches of about this many entries), not all at once.
_CHUNK = 2**20

#: The forms of :func:`explicit_regularizer`.
FORMS = ("observed", "product")


def _indices(x: object, name: str, size: int, axis: str) -> np.ndarray:
    """``x`` as a 1-D int64 array of indices in [0, size), or a refusal that names it."""
    try:
        raw = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"`{name}` must be an array of integers ({exc})") from None
    if raw.dtype.kind not in "iu":
        raise InvalidParameterError(
            f"`{name}` must hold integer {axis} indices, got dtype {raw.dtype}"
            + ("; cast with .astype(int) if the numbers are whole" if raw.dtype.kind == "f" else "")
        )
    if raw.ndim != 1 or raw.size == 0:
        raise InvalidParameterError(f"`{name}` must be a non-empty 1-D array, got {raw.shape}")
    bad = np.flatnonzero((raw < 0) | (raw >= size))
    if bad.size:
        t = int(bad[0])
        raise InvalidParameterError(
            f"`{name}` must hold {axis} indices in [0, {size}) (the matrix has {size} "
            f"{axis}s), got {raw[t]} at position {t} ({bad.size} out of range)"
        )
    return raw.astype(np.int64)


def _shape(shape: object) -> tuple[int, int]:
    """``shape`` as (m, n), two positive ints."""
    items = (
        () if isinstance(shape, (str, bytes)) or not isinstance(shape, Iterable) else tuple(shape)
    )
    if len(items) != 2:
        raise InvalidParameterError(
            f"`shape` must be a pair (m, n) of positive ints, got {shape!r}"
        )
    return check_int(items[0], "shape"), check_int(items[1], "shape")


def _first_repeat(rows: np.ndarray, cols: np.ndarray) -> tuple[int, int] | None:
    """Positions (s, t), s < t, of the first pair (in sorted order) observed twice, or None."""
    order = np.lexsort((cols, rows))
    same = (rows[order][1:] == rows[order][:-1]) & (cols[order][1:] == cols[order][:-1])
    hits = np.flatnonzero(same)
    if hits.size == 0:
        return None
    a, b = sorted((int(order[hits[0]]), int(order[hits[0] + 1])))
    return a, b


@dataclass(frozen=True, eq=False)
class Observations:
    r"""Observed entries :math:`(i_t, j_t, y_t)`, t = 1..N, of an m × n matrix.

    Build it with :func:`observed` (or directly: the same checks run). The arrays are
    read-only. Rows or columns without an observation are allowed here; the functions
    that divide by their marginals refuse them.

    Attributes
    ----------
    rows, cols : ndarray of int64, shape (N,)
        Row index :math:`i_t` in [0, m) and column index :math:`j_t` in [0, n); no pair
        (i, j) occurs twice.
    values : ndarray of float64, shape (N,)
        The observed values :math:`y_t`, finite.
    shape : (int, int)
        The size (m, n) of the matrix.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        m, n = _shape(self.shape)
        rows = _indices(self.rows, "rows", m, "row")
        cols = _indices(self.cols, "cols", n, "column")
        values = check_array(self.values, "values", ndim=1)
        if not rows.size == cols.size == values.size:
            raise InvalidParameterError(
                "`rows`, `cols` and `values` must have one entry per observation (the same "
                f"length), got {rows.size}, {cols.size} and {values.size}"
            )
        repeat = _first_repeat(rows, cols)
        if repeat is not None:
            s, t = repeat
            raise InvalidParameterError(
                f"`rows`, `cols`: the entry ({rows[s]}, {cols[s]}) is observed twice, at "
                f"positions {s} and {t}; each entry may be observed once (average repeated "
                "ratings first)"
            )
        for name, value in (("rows", rows), ("cols", cols), ("values", values.copy())):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "shape", (m, n))
        freeze_arrays(self)

    @property
    def n_observed(self) -> int:
        """The number N of observed entries."""
        return int(self.rows.size)

    @property
    def row_marginals(self) -> np.ndarray:
        r"""Empirical row marginals :math:`p_i = \#\{t : i_t = i\}/N`, shape (m,)."""
        return np.bincount(self.rows, minlength=self.shape[0]) / self.rows.size

    @property
    def col_marginals(self) -> np.ndarray:
        r"""Empirical column marginals :math:`q_j = \#\{t : j_t = j\}/N`, shape (n,)."""
        return np.bincount(self.cols, minlength=self.shape[1]) / self.cols.size


def observed(
    rows: ArrayLike, cols: ArrayLike, values: ArrayLike, shape: tuple[int, int]
) -> Observations:
    r"""The observed entries of an m × n matrix, checked once.

    Observation t is the entry :math:`(i_t, j_t)` with value :math:`y_t`. The empirical
    marginals

    .. math:: p_i = \frac{\#\{t : i_t = i\}}{N}, \qquad q_j = \frac{\#\{t : j_t = j\}}{N}

    are :attr:`Observations.row_marginals` and :attr:`Observations.col_marginals`.

    Parameters
    ----------
    rows : array of int, shape (N,)
        Row indices :math:`i_t`, each in [0, m).
    cols : array of int, shape (N,)
        Column indices :math:`j_t`, each in [0, n).
    values : array of float, shape (N,)
        Observed values :math:`y_t`, finite real numbers.
    shape : (int, int)
        The size (m, n) of the matrix, two positive integers.

    Returns
    -------
    Observations
        The entries, as read-only arrays.

    Raises
    ------
    InvalidParameterError
        If the indices are not integers or out of range, an entry (i, j) occurs twice,
        a value is not a finite real number, the three arrays differ in length, or
        ``shape`` is not two positive integers. The message names the argument.

    Examples
    --------
    >>> obs = observed([0, 0, 1], [0, 2, 1], [1.0, -2.0, 0.5], shape=(2, 3))
    >>> obs.row_marginals, obs.col_marginals
    (array([0.66666667, 0.33333333]), array([0.33333333, 0.33333333, 0.33333333]))
    """
    return Observations(rows, cols, values, shape)  # type: ignore[arg-type]


def check_obs(obs: object) -> Observations:
    """``obs`` after checking it is an :class:`Observations`."""
    if not isinstance(obs, Observations):
        raise InvalidParameterError(
            "`obs` must be the observed entries, an Observations from "
            f"regtheory.completion.observed(rows, cols, values, shape), got {type(obs).__name__}"
        )
    return obs


def check_model(
    U: ArrayLike, V: ArrayLike, obs: object
) -> tuple[np.ndarray, np.ndarray, Observations]:
    """Factors U (m, d), V (n, d) of a factorization of the observed m × n matrix, and ``obs``."""
    obs = check_obs(obs)
    U, V = check_factors(U, V)
    for name, factor, size, axis in (
        ("U", U, obs.shape[0], "row"),
        ("V", V, obs.shape[1], "column"),
    ):
        if factor.shape[0] != size:
            raise InvalidParameterError(
                f"`{name}` must have one row per {axis} of the observed matrix ({size}, as "
                f"`obs.shape` = {obs.shape} says), got shape {factor.shape}"
            )
    return U, V, obs


def check_covered(obs: Observations) -> tuple[np.ndarray, np.ndarray]:
    """The marginals (p, q) after checking every row and column has an observation.

    A row never observed has p_i = 0: its row of the factor does not enter the product
    form, so the data do not determine it (nor the diag(√p)⁻¹ that equalization needs).
    """
    p, q = obs.row_marginals, obs.col_marginals
    for axis, marginals in (("row", p), ("column", q)):
        empty = np.flatnonzero(marginals == 0)
        if empty.size:
            raise InvalidParameterError(
                f"`obs` has empty {axis}s: {axis} {empty[0]} (and {empty.size - 1} more) has "
                f"no observed entry, so its marginal is 0 and the data do not determine it; "
                f"drop the empty {axis}s or observe them"
            )
    return p, q


def _rowwise(A: np.ndarray, B: np.ndarray, obs: Observations) -> np.ndarray:
    r""":math:`\sum_k A_{i_t k} B_{j_t k}` for every observation t, shape (N,).

    Vectorised over the observations, in chunks that bound the gathered (chunk × d) rows.
    """
    out = np.empty(obs.n_observed)
    step = max(1, _CHUNK // max(1, A.shape[1]))
    for start in range(0, obs.n_observed, step):
        part = slice(start, start + step)
        out[part] = np.einsum("tk,tk->t", A[obs.rows[part]], B[obs.cols[part]])
    return out


@finite_result("the fit loss on the observed entries")
def fit_loss(U: ArrayLike, V: ArrayLike, obs: Observations) -> float:
    r"""Mean squared error of the product :math:`UV^\top` on the observed entries.

    .. math:: L(U, V) = \frac1N \sum_{t=1}^N \big(y_t - (UV^\top)_{i_t j_t}\big)^2

    The dropout objective is this loss plus :func:`dropout_penalty`.

    Parameters
    ----------
    U : array (m, d)
        Row factor; row i belongs to row i of the matrix.
    V : array (n, d)
        Column factor; row j belongs to column j of the matrix.
    obs : Observations
        The observed entries (:func:`observed`).

    Returns
    -------
    float
        :math:`L(U, V) \ge 0`.

    Raises
    ------
    InvalidParameterError
        If ``obs`` is not an :class:`Observations`, or ``U``, ``V`` are not finite real
        2-D arrays of the same width with m and n rows.

    Examples
    --------
    >>> import numpy as np
    >>> obs = observed([0, 1], [1, 0], [2.0, 0.0], shape=(2, 2))
    >>> fit_loss(np.ones((2, 1)), np.ones((2, 1)), obs)  # residuals 1 and -1
    1.0
    """
    U, V, obs = check_model(U, V, obs)
    residual = obs.values - _rowwise(U, V, obs)
    return float(np.mean(residual**2))


def _sampled(
    U: np.ndarray, V: np.ndarray, obs: Observations, keep: float, n_masks: Any, rng: RngLike
) -> Penalty:
    r"""Monte Carlo over real masks: one mask per observation, one draw per pass over Ω.

    A draw is :math:`\frac1N\sum_t \big(\sum_k (r_{tk}/\theta - 1)\,U_{i_tk}V_{j_tk}\big)^2`,
    the squared change of every prediction under a fresh mask for each observation;
    its expectation is the penalty whatever the values y are.
    """
    need = min_draws(keep)
    setting = f"keep = {keep:g}, one mask of {U.shape[1]} units per observation"
    n_masks = default_n_masks(keep) if n_masks is None else check_n_masks(n_masks, need, setting)
    terms = np.empty((obs.n_observed, U.shape[1]))
    step = max(1, _CHUNK // U.shape[1])
    for start in range(0, obs.n_observed, step):
        part = slice(start, start + step)
        terms[part] = U[obs.rows[part]] * V[obs.cols[part]]

    def draw(gen: np.random.Generator, size: int) -> np.ndarray:
        e = kept_units(keep, (size, *terms.shape), gen) / keep - 1.0
        return np.mean(np.einsum("bnk,nk->bn", e, terms) ** 2, axis=1)

    return estimate(draw, n_masks=n_masks, rng=rng, batch_size=max(1, _CHUNK // terms.size))


@cites("cavazza2018dropout", "arora2021dropout")
@finite_result("the dropout penalty of the factorization")
def dropout_penalty(
    U: ArrayLike,
    V: ArrayLike,
    obs: Observations,
    keep: float,
    *,
    method: str = "auto",
    n_masks: int | None = None,
    rng: RngLike = 0,
) -> Penalty:
    r"""Dropout penalty of a factorization on the observed entries, in closed form.

    Observation t predicts :math:`\sum_k (r_{tk}/\theta)\, U_{i_tk} V_{j_tk}` with its own
    mask :math:`r_t \in \{0,1\}^d`, i.i.d. Bernoulli(θ) entries (dropout on the shared
    factor, θ = ``keep``). Averaged over the masks, the dropout objective is
    :func:`fit_loss` plus

    .. math:: R_\Omega(U, V) = \frac{\lambda}{N} \sum_{t=1}^N \sum_{k=1}^d
              U_{i_tk}^2\, V_{j_tk}^2, \qquad \lambda = \frac{1-\theta}{\theta},

    exactly, because the scaled mask entries have mean 1 and variance λ and are
    independent. With ``method="mc"`` it is estimated over real masks instead: a draw
    samples one mask per observation and returns the mean squared change of the
    predictions it causes, :math:`\frac1N \sum_t (\sum_k (r_{tk}/\theta - 1) U_{i_tk}
    V_{j_tk})^2`.

    Parameters
    ----------
    U : array (m, d)
        Row factor; row i belongs to row i of the matrix.
    V : array (n, d)
        Column factor; row j belongs to column j of the matrix.
    obs : Observations
        The observed entries (:func:`observed`).
    keep : float
        Retain probability θ in (0, 1].
    method : {"auto", "exact", "mc"}
        ``"exact"`` (and ``"auto"``: the closed form always exists) evaluates
        :math:`R_\Omega`; ``"mc"`` estimates it over sampled masks.
    n_masks : int, optional
        Draws of ``method="mc"`` (each a mask for every observation); default
        :func:`regtheory.montecarlo.default_n_masks` of ``keep``, at least
        :func:`regtheory.montecarlo.min_draws` of ``keep``.
    rng : int, numpy.random.Generator or None
        Source of the masks (``method="mc"``); the same int gives the same estimate.

    Returns
    -------
    Penalty
        A float: exact (standard error 0), or the Monte Carlo mean with its standard
        error and interval.

    Raises
    ------
    InvalidParameterError
        If ``obs`` is not an :class:`Observations`, the factors do not fit it (rows,
        widths), ``keep`` is outside (0, 1], ``method`` is unknown, or ``n_masks`` is
        too small.

    See Also
    --------
    explicit_regularizer : the same value (``form="observed"``) and its product form.

    References
    ----------
    [1] J. Cavazza et al., Dropout as a Low-Rank Regularizer for Matrix Factorization,
        AISTATS 2018.
    [2] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
        Capacity Control, ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> obs = observed([0, 1], [1, 0], [2.0, 0.0], shape=(2, 2))
    >>> dropout_penalty(np.ones((2, 2)), np.ones((2, 2)), obs, keep=0.5)
    Penalty(2.0, method='exact')
    >>> est = dropout_penalty(np.ones((2, 2)), np.ones((2, 2)), obs, 0.5, method="mc")
    >>> lo, hi = est.interval
    >>> bool(lo < 2.0 < hi)
    True
    """
    U, V, obs = check_model(U, V, obs)
    lam = dropout_lambda(keep)
    if check_method(method) == "mc":
        return _sampled(U, V, obs, keep, n_masks, rng)
    return Penalty.exact(lam * np.mean(_rowwise(U * U, V * V, obs)))


@cites("arora2021dropout")
@finite_result("the explicit regularizer of the factorization")
def explicit_regularizer(
    U: ArrayLike, V: ArrayLike, obs: Observations, keep: float, *, form: str = "observed"
) -> float:
    r"""Explicit regularizer of dropout on the shared factor: on Ω, or in product form.

    .. math:: R_\Omega(U, V) = \frac{\lambda}{N} \sum_{t=1}^N \sum_{k=1}^d
              U_{i_tk}^2 V_{j_tk}^2, \qquad
              R_{pq}(U, V) = \lambda \sum_{k=1}^d \|u_k\|_p^2\, \|v_k\|_q^2,

    with :math:`\|u\|_p^2 = \sum_i p_i u_i^2`, :math:`\|v\|_q^2 = \sum_j q_j v_j^2`, the
    empirical marginals p, q of ``obs``, columns :math:`u_k, v_k` of U and V, and
    λ = (1 − θ)/θ. :math:`R_\Omega` is what dropout adds to the loss on these entries
    (:func:`dropout_penalty`). :math:`R_{pq} = \lambda\sum_{i,j} p_i q_j \sum_k
    U_{ik}^2V_{jk}^2` is the expectation of :math:`R_\Omega` when the N entries are
    drawn independently with :math:`P(i, j) = p_i q_j`; on a given Ω the two differ
    (Ω is not the product of its marginals), and only :math:`R_{pq}` has the weighted
    trace norm as its induced regularizer (:func:`induced_regularizer`).

    Parameters
    ----------
    U : array (m, d)
        Row factor; row i belongs to row i of the matrix.
    V : array (n, d)
        Column factor; row j belongs to column j of the matrix.
    obs : Observations
        The observed entries (:func:`observed`).
    keep : float
        Retain probability θ in (0, 1].
    form : {"observed", "product"}
        :math:`R_\Omega` (``"observed"``) or :math:`R_{pq}` (``"product"``).

    Returns
    -------
    float
        The regularizer, ≥ 0.

    Raises
    ------
    InvalidParameterError
        If ``obs`` is not an :class:`Observations`, the factors do not fit it (rows,
        widths), ``keep`` is outside (0, 1], or ``form`` is unknown.

    References
    ----------
    [1] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
        Capacity Control, ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> obs = observed([0, 0, 1], [0, 1, 0], [1.0, 1.0, 1.0], shape=(2, 2))
    >>> U, V = np.array([[1.0], [2.0]]), np.array([[1.0], [3.0]])
    >>> explicit_regularizer(U, V, obs, 0.5)  # (1·1 + 1·9 + 4·1) / 3
    4.666666666666667
    >>> explicit_regularizer(U, V, obs, 0.5, form="product")  # (2/3 + 4/3)(2/3 + 9/3)
    7.333333333333333
    """
    U, V, obs = check_model(U, V, obs)
    lam = dropout_lambda(keep)
    check_choice(form, "form", FORMS)
    if form == "observed":
        return float(lam * np.mean(_rowwise(U * U, V * V, obs)))
    row_energy = obs.row_marginals @ (U * U)  # ‖u_k‖²_p for every k
    col_energy = obs.col_marginals @ (V * V)
    return float(lam * np.dot(row_energy, col_energy))
