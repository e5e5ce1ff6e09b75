"""No silent inf or NaN: finite inputs give finite results or a NumericalOverflowError.

A public computation on finite inputs returns finite numbers or raises
:class:`NumericalOverflowError`.

The inputs of every public function are checked finite at the boundary
(:func:`regtheory._validation.check_array`), but finite inputs can still leave the range
of float64 (largest finite number about 1.8e308) on the way: a penalty is quadratic in a
network's output, so weights of 1e160 square to inf, and inf − inf is NaN; a Poisson
cumulant e^z overflows at z ≈ 709.8. Where a computation can be rescaled exactly it is
(the Poisson penalty in logs, Monte Carlo moments by a power of two); elsewhere
:func:`finite_result` wraps the public entry, and an overflow on the way becomes one
error that names the quantity and the size of the inputs that produced it.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Sequence
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

import numpy as np

from ._validation import InvalidParameterError

__all__ = ["QUADRATIC", "NumericalOverflowError", "finite_result", "overflow_error"]

F = TypeVar("F", bound=Callable[..., Any])

#: Result fields that may be infinite by definition (a variance ratio when the
#: controlled draws are constant), so they are not overflow.
_MAY_BE_INFINITE = frozenset({"reduction_factor"})
_SHOWN = 4  # inputs named in a message, the largest first


class NumericalOverflowError(InvalidParameterError, OverflowError):
    """Finite inputs whose result, or a value on the way to it, lies beyond float64.

    A subclass of :class:`~regtheory._validation.InvalidParameterError` (the inputs are
    outside what the computation can represent) and of the built-in ``OverflowError``.
    The message names the quantity and the largest magnitudes among the inputs.
    """


def _magnitude(value: object) -> float | None:
    """Largest |entry| of a real array (or real number), None for anything else."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return None
    return float(np.max(np.abs(arr)))


def _sizes(name: str, value: object) -> list[tuple[str, float]]:
    """(label, largest |entry|) of an argument, or of each weight of a sequence of layers.

    An array gives one pair, a sequence of layers one per ``name[i].weight`` and
    ``name[i].bias``. Integer options (counts) are left out.
    """
    if isinstance(value, numbers.Integral) or (
        isinstance(value, tuple) and all(isinstance(v, numbers.Integral) for v in value)
    ):
        return []  # counts and shapes
    top = _magnitude(value)
    if top is not None:
        return [(name, top)]
    out: list[tuple[str, float]] = []
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        for i, item in enumerate(value):
            for attr in ("weight", "bias"):
                top = _magnitude(getattr(item, attr, None))
                if top is not None:
                    out.append((f"{name}[{i}].{attr}", top))
    return out


def _describe_inputs(func: Callable, args: tuple, kwargs: dict) -> str:
    try:  # the keywords by their own names: a deprecated one (seed=) is not in the signature
        bound = dict(inspect.signature(func).bind_partial(*args).arguments) | kwargs
    except (TypeError, ValueError):
        bound = {f"argument {i}": a for i, a in enumerate(args)} | kwargs
    sizes = [size for name, value in bound.items() for size in _sizes(name, value)]
    sizes.sort(key=lambda s: -s[1])
    shown = ", ".join(
        f"`{label}` = {top:.3g}"
        if np.ndim(bound.get(label, ())) == 0
        else f"`{label}` up to {top:.3g}"
        for label, top in sizes[:_SHOWN]
    )
    return shown or "no array inputs"


def _finite(result: object) -> bool:
    """Whether every number a result reports is finite (floats, arrays, dataclass fields)."""
    if isinstance(result, float):  # also a float subclass carrying an interval
        stderr = getattr(result, "stderr", 0.0)
        return bool(np.isfinite(result)) and bool(np.isfinite(stderr))
    if isinstance(result, np.ndarray):
        return result.dtype.kind not in "fc" or bool(np.all(np.isfinite(result)))
    if isinstance(result, np.floating):
        return bool(np.isfinite(result))
    if is_dataclass(result) and not isinstance(result, type):
        return all(
            _finite(getattr(result, f.name))
            for f in fields(result)
            if f.name not in _MAY_BE_INFINITE
        )
    return True


def overflow_error(
    quantity: str, hint: str, func: Callable, args: tuple, kwargs: dict
) -> NumericalOverflowError:
    """The error for ``quantity`` computed by ``func(*args, **kwargs)``."""
    return NumericalOverflowError(
        f"{quantity} leaves the range of float64 (largest finite number "
        f"{np.finfo(np.float64).max:.3g}) for these inputs: "
        f"{_describe_inputs(func, args, kwargs)}; {hint}"
    )


#: What to do about an overflowing penalty that is quadratic in the weights.
QUADRATIC = (
    "the penalty is quadratic in the output: divide the weights of one layer (and its "
    "bias) by s, compute, and multiply by s²"
)


def finite_result(
    quantity: str, hint: str = QUADRATIC, *, fields: tuple[str, ...] | None = None
) -> Callable[[F], F]:
    """Decorate a public function so that an overflow on finite inputs raises an error.

    The :class:`NumericalOverflowError` names ``quantity``, the inputs' sizes and ``hint``
    (what to rescale), instead of returning inf or NaN (or surfacing a bare
    ``OverflowError``/``FloatingPointError``). ``fields`` names the attributes of the
    result to check, for a result that marks what it did not compute with NaN (default:
    the whole result).
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def checked(*args: Any, **kwargs: Any) -> Any:
            try:
                result = func(*args, **kwargs)
            except NumericalOverflowError:
                raise
            except (OverflowError, FloatingPointError) as exc:
                raise overflow_error(quantity, hint, func, args, kwargs) from exc
            parts = [result] if fields is None else [getattr(result, f) for f in fields]
            if not all(_finite(part) for part in parts):
                raise overflow_error(quantity, hint, func, args, kwargs)
            return result

        return checked  # type: ignore[return-value]

    return decorate
