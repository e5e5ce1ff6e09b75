"""Result objects are values.

* :class:`Penalty` is the one result of every penalty function, exact or Monte Carlo:
  a float (its value) that also says how it was computed and how sure it is.
* Results with several parts are frozen dataclasses whose arrays cannot be written
  (:func:`freeze_arrays`): a result shared between a figure, a table and a test must
  read the same in each, so a caller who wants to modify an array takes a copy.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np

from ._references import Cited
from ._validation import InvalidParameterError, check_fraction, check_positive, check_real

__all__ = ["Penalty", "freeze_arrays"]

# relative allowance for rounding in the ends of an interval
_ROUNDING = 1e-12

_FIELDS = (
    "stderr",
    "n_masks",
    "method",
    "skewness",
    "variance_reduction",
    "reduction_factor",
    "references",
)


def freeze_arrays(result: object) -> None:
    """Make every NumPy array held by a field of the dataclass ``result`` read-only."""
    for field in dataclasses.fields(result):  # type: ignore[arg-type]
        value = getattr(result, field.name)
        if isinstance(value, np.ndarray):
            value.flags.writeable = False


def _hall_inverse(y: float, a: float) -> float:
    """Inverse of Hall's h(t) = t + a t² + a² t³/3 + a/2 (increasing in t for every a)."""
    if a == 0.0:
        return y
    u = 3.0 * a * (y - 0.5 * a)
    # cbrt(1 + u) - 1 without cancellation for small u; the real cube root past u = -1
    root_minus_one = np.expm1(np.log1p(u) / 3.0) if u > -1.0 else np.cbrt(1.0 + u) - 1.0
    return float(root_minus_one / a)


def _renamed(old: str, new: str) -> None:
    warnings.warn(
        f"Penalty.{old} is deprecated; use Penalty.{new}", DeprecationWarning, stacklevel=3
    )


class Penalty(float, Cited):
    r"""A dropout penalty: its value, and how it was computed.

    A ``Penalty`` is a float, so it enters arithmetic, NumPy and JSON as its value.
    An exact penalty (``method="exact"``) has standard error 0 and no masks; a Monte
    Carlo estimate (``method="mc"``) is the mean of ``n_masks`` independent draws,
    each from one sampled mask, with its standard error and an interval corrected for
    the skewness of the draws (:meth:`ci`). An approximation names itself in
    ``method`` (e.g. ``"quadratic"``) and is neither exact nor random.

    Parameters
    ----------
    value : float
        The penalty (the mean of the draws for a Monte Carlo estimate).
    stderr : float
        Standard error of the mean, ``std(draws, ddof=1) / sqrt(n_masks)``; 0 when exact.
    n_masks : int or None
        Number of independent draws; None when nothing was drawn.
    skewness : float
        Sample skewness of one draw, :math:`\hat\gamma = m_3 / m_2^{3/2}` with the
        central moments :math:`m_k = \frac1n\sum_i (x_i - \bar x)^k`; 0 gives the
        normal interval.
    method : str, optional
        ``"exact"``, ``"mc"`` or the name of an approximation; by default ``"mc"`` when
        ``n_masks`` is given, else ``"exact"``.
    variance_reduction : str
        Which variance reduction the draws used: ``"none"`` or, e.g., ``"gate-frozen
        control variate"``; ``stderr`` and ``skewness`` are then those of the
        controlled draws.
    reduction_factor : float
        Variance of a plain draw over that of a controlled one, measured on the same
        draws (1 without variance reduction; inf when the controlled draws are constant).
    references : tuple of str
        The papers whose result the value is, set by the function that computed it
        (``fc.dropout_penalty`` cites another paper than ``glm.dropout_penalty``):
        bibliography keys with a theorem or equation where known
        (:func:`regtheory.cite` prints their BibTeX). Not part of the value: two
        penalties equal as floats are equal whatever they cite.

    Examples
    --------
    >>> p = Penalty.exact(2.5)
    >>> p + 1, p.is_exact, p.interval
    (3.5, True, (2.5, 2.5))
    >>> q = Penalty(2.4, 0.05, 4000)
    >>> q.method, round(q.zscore(2.5), 6)
    ('mc', -2.0)
    """

    __slots__ = _FIELDS

    stderr: float
    n_masks: int | None
    method: str
    skewness: float
    variance_reduction: str
    reduction_factor: float
    references: tuple[str, ...]

    def __new__(  # noqa: PYI034
        cls,
        value: float | None = None,
        stderr: float = 0.0,
        n_masks: int | None = None,
        skewness: float = 0.0,
        *,
        method: str | None = None,
        variance_reduction: str = "none",
        reduction_factor: float = 1.0,
        references: tuple[str, ...] = (),
        mean: float | None = None,
        n_samples: int | None = None,
    ) -> Penalty:
        # `mean` and `n_samples` are the names of the former Estimate's fields
        if mean is not None:
            if value is not None:
                raise InvalidParameterError("pass the value once: `value` or `mean`")
            value = mean
        if n_samples is not None:
            if n_masks is not None:
                raise InvalidParameterError("pass the draws once: `n_masks` or `n_samples`")
            n_masks = n_samples
        if value is None:
            raise InvalidParameterError("a Penalty needs its value")
        self = super().__new__(cls, value)
        if method is None:
            method = "exact" if n_masks is None else "mc"
        if method == "exact" and (stderr != 0.0 or n_masks is not None):
            raise InvalidParameterError("an exact penalty has stderr 0 and no masks")
        if method == "mc" and n_masks is None:
            raise InvalidParameterError("a Monte Carlo penalty needs `n_masks`")
        setter = object.__setattr__
        setter(self, "stderr", float(stderr))
        setter(self, "n_masks", None if n_masks is None else int(n_masks))
        setter(self, "method", method)
        setter(self, "skewness", float(skewness))
        setter(self, "variance_reduction", variance_reduction)
        setter(self, "reduction_factor", float(reduction_factor))
        setter(self, "references", tuple(references))
        return self

    @classmethod
    def exact(cls, value: float) -> Penalty:
        """An exact penalty: standard error 0, no masks."""
        return cls(float(value), method="exact")

    @classmethod
    def monte_carlo(
        cls,
        value: float,
        stderr: float,
        n_masks: int,
        *,
        skewness: float = 0.0,
        variance_reduction: str = "none",
        reduction_factor: float = 1.0,
    ) -> Penalty:
        """A Monte Carlo estimate: the mean of ``n_masks`` draws and its standard error."""
        return cls(
            value,
            stderr,
            n_masks,
            skewness,
            method="mc",
            variance_reduction=variance_reduction,
            reduction_factor=reduction_factor,
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Penalty is immutable; use Penalty.replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("a Penalty is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (float(self), {f: getattr(self, f) for f in _FIELDS}))

    def replace(self, **changes: Any) -> Penalty:
        """A copy with some attributes changed (``value`` included)."""
        state = {f: getattr(self, f) for f in _FIELDS}
        value = changes.pop("value", float(self))
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise InvalidParameterError(f"a Penalty has no attribute {sorted(unknown)}")
        state.update(changes)
        return _rebuild(value, state)

    @property
    def value(self) -> float:
        """The penalty as a plain float."""
        return float(self)

    @property
    def is_exact(self) -> bool:
        """Whether the value is exact (up to rounding), not estimated or approximated."""
        return self.method == "exact"

    @property
    def interval(self) -> tuple[float, float]:
        """The 95 % interval (:meth:`ci`); ``(value, value)`` when exact or approximated."""
        if self.n_masks is None:
            return (float(self), float(self))
        return self.ci(level=0.95)

    @property
    def mean(self) -> float:
        """Deprecated name of :attr:`value`."""
        _renamed("mean", "value")
        return float(self)

    @property
    def n_samples(self) -> int | None:
        """Deprecated name of ``n_masks``."""
        _renamed("n_samples", "n_masks")
        return self.n_masks

    def ci(self, *, level: float = 0.95) -> tuple[float, float]:
        r"""Confidence interval for the expectation, corrected for skewed draws.

        Hall's (1992) transformation of the studentized mean: with
        :math:`T = (\bar x - \mu)/\mathrm{se}` and :math:`a = \hat\gamma / (3\sqrt n)`,

        .. math:: h(T) = T + a T^2 + \tfrac{a^2}{3} T^3 + \tfrac{a}{2}

        is standard normal up to :math:`O(1/n)` (the :math:`n^{-1/2}` skewness
        term of the Edgeworth expansion of T is removed), and h is increasing, so
        :math:`|h(T)| \le z` gives the interval

        .. math:: \big[\bar x - \mathrm{se}\, h^{-1}(z),\ \bar x - \mathrm{se}\, h^{-1}(-z)\big],
                  \qquad h^{-1}(y) = \frac{\sqrt[3]{1 + 3a(y - a/2)} - 1}{a},

        with :math:`z = \Phi^{-1}((1 + \text{level})/2)`, each end moved out by
        :math:`10^{-12}|\bar x|` for rounding. Right-skewed draws
        (a penalty is a sum of squares) move it up: the mean of few draws is more
        often below the expectation than above. With ``skewness = 0`` it is the
        normal interval ``value ± z·stderr``; an exact value gives ``(value, value)``.

        Parameters
        ----------
        level : float
            Confidence level in (0, 1).

        Returns
        -------
        (float, float)
            Lower and upper end.

        Raises
        ------
        InvalidParameterError
            If ``level`` is not in (0, 1).

        References
        ----------
        P. Hall, On the removal of skewness by transformation, J. R. Statist.
        Soc. B 54 (1992) 221-228.
        """
        from scipy.special import ndtri

        level = check_fraction(level, "level")
        value = float(self)
        if self.n_masks is None:
            return (value, value)
        z = float(ndtri(0.5 + level / 2.0))
        a = self.skewness / (3.0 * np.sqrt(self.n_masks))
        # Draws that are all equal (keep = 1; a single unit at keep 0.5, where (r/θ - 1)²
        # = 1) give stderr 0; the ends still allow for rounding, so that an exact value
        # computed another way is not missed by an ulp.
        slack = _ROUNDING * abs(value)
        return (
            value - self.stderr * _hall_inverse(z, a) - slack,
            value - self.stderr * _hall_inverse(-z, a) + slack,
        )

    @property
    def rel_stderr(self) -> float:
        """Relative standard error ``stderr / |value|`` (inf when the value is 0)."""
        return self.stderr / abs(float(self)) if float(self) != 0 else float("inf")

    @property
    def std(self) -> float:
        """Standard deviation of one draw, ``stderr * sqrt(n_masks)`` (0 when exact)."""
        return self.stderr * math.sqrt(self.n_masks or 0)

    def samples_for(self, rtol: float) -> int:
        """Draws needed for a relative standard error ``rtol``, ``(std / (rtol·|value|))²``.

        Raises
        ------
        InvalidParameterError
            If ``rtol`` is not positive.
        ValueError
            If the value is 0 (a relative error is undefined) or nothing was drawn.
        """
        rtol = check_positive(rtol, "rtol")
        if self.n_masks is None:
            raise ValueError(f"a {self.method} penalty was not estimated from draws")
        if float(self) == 0:
            raise ValueError("the value is 0: a relative standard error is undefined")
        return int(np.ceil((self.std / (rtol * abs(float(self)))) ** 2))

    def zscore(self, value: float) -> float:
        """How many standard errors the penalty lies above ``value``.

        Raises
        ------
        InvalidParameterError
            If ``value`` is not a real number.
        """
        value = check_real(value, "value")
        if self.stderr == 0:
            return 0.0 if value == float(self) else math.copysign(math.inf, float(self) - value)
        return (float(self) - value) / self.stderr

    def to_dict(self) -> dict[str, Any]:
        """The penalty as JSON values.

        A Monte Carlo estimate gives ``mean``, ``stderr``, ``n_samples`` and the 95 %
        interval ``ci95`` (the keys of the figures' data files), with a variance
        reduction also ``variance_reduction`` and ``reduction_factor`` (None when
        infinite); an exact or approximate value gives ``value`` and ``method``.
        """
        if self.n_masks is None:
            return {"value": float(self), "method": self.method}
        out: dict[str, Any] = {
            "mean": float(self),
            "stderr": self.stderr,
            "n_samples": self.n_masks,
            "ci95": list(self.ci(level=0.95)),
        }
        if self.variance_reduction != "none":
            factor = self.reduction_factor
            out["variance_reduction"] = self.variance_reduction
            out["reduction_factor"] = factor if np.isfinite(factor) else None
        return out

    def __repr__(self) -> str:
        if self.n_masks is None:
            return f"Penalty({float(self)!r}, method={self.method!r})"
        return (
            f"Penalty({float(self)!r}, stderr={self.stderr!r}, n_masks={self.n_masks}, "
            f"method={self.method!r})"
        )

    def __str__(self) -> str:
        if self.n_masks is None:
            return float.__repr__(self)
        lo, hi = self.ci()
        return (
            f"{float(self):.6g} ± {self.stderr:.2g} (95% CI [{lo:.6g}, {hi:.6g}], n={self.n_masks})"
        )


# documented and shown as regtheory.Penalty, its public name
Penalty.__module__ = "regtheory"


def _rebuild(value: float, state: dict[str, Any]) -> Penalty:
    return Penalty(
        value,
        state["stderr"],
        state["n_masks"],
        state["skewness"],
        method=state["method"],
        variance_reduction=state["variance_reduction"],
        reduction_factor=state["reduction_factor"],
        references=state.get("references", ()),
    )
