"""The calling conventions every public function follows.

* Data are positional; options are keyword-only. A function whose options used to be
  positional is wrapped in :func:`keyword_only`, which still accepts the old call for
  one minor release and says how to write it.
* Randomness comes from one keyword, ``rng``, as SciPy's SPEC 7 describes: an int seed,
  a :class:`numpy.random.Generator`, or None for fresh entropy from the operating
  system. The old keyword ``seed`` is still accepted (:func:`transition_to_rng`).
* A penalty is computed by one function with ``method="exact" | "mc" | "auto"``; a
  sibling ``*_mc`` function is an alias kept for one minor release
  (:func:`deprecated_alias`).
"""

from __future__ import annotations

import functools
import inspect
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from ._validation import InvalidParameterError

__all__ = [
    "METHODS",
    "RngLike",
    "as_rng",
    "check_method",
    "deprecated_alias",
    "keyword_only",
    "renamed_keywords",
    "transition_to_rng",
]

#: What ``rng=`` accepts (SPEC 7): a seed, a Generator, or None for fresh entropy.
RngLike = int | np.random.Generator | np.random.SeedSequence | None

#: The values of ``method=`` on a penalty function.
METHODS = ("exact", "mc", "auto")

F = TypeVar("F", bound=Callable[..., Any])


def as_rng(rng: object, name: str = "rng") -> np.random.Generator:
    """A :class:`numpy.random.Generator` from what ``rng=`` accepts.

    A Generator is used as it is (its state advances); an int or a
    :class:`numpy.random.SeedSequence` seeds a new one; None draws fresh entropy.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (bool, np.bool_)):
        raise InvalidParameterError(
            f"`{name}` must be an int, a numpy.random.Generator or None, got bool"
        )
    if isinstance(rng, numbers.Integral):
        if rng < 0:
            raise InvalidParameterError(f"`{name}` must be a non-negative int seed, got {rng}")
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.RandomState):
        raise InvalidParameterError(
            f"`{name}` must be an int, a numpy.random.Generator or None; a legacy "
            "RandomState is not accepted (use numpy.random.default_rng)"
        )
    raise InvalidParameterError(
        f"`{name}` must be an int, a numpy.random.Generator or None, got {type(rng).__name__}"
    )


def check_method(method: object, *, choices: Sequence[str] = METHODS) -> str:
    """``method`` as one of ``choices``, or a precise refusal."""
    if not isinstance(method, str) or method not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise InvalidParameterError(f"`method` must be one of {listed}, got {method!r}")
    return method


def _deprecation(message: str) -> None:
    # stacklevel 3: the user's call, above the wrapper
    warnings.warn(message, DeprecationWarning, stacklevel=3)


def transition_to_rng(func: F) -> F:
    """Accept the old keyword ``seed=`` for ``rng=``, with a DeprecationWarning.

    Passing both is refused. The wrapped function must have a keyword parameter ``rng``.
    """
    if "rng" not in inspect.signature(func).parameters:
        raise TypeError(f"{func.__qualname__} has no `rng` parameter")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "seed" in kwargs:
            if "rng" in kwargs:
                raise InvalidParameterError(
                    f"{func.__name__}() got both `seed` and `rng`; pass only `rng`"
                )
            _deprecation(
                f"{func.__name__}(seed=...) is deprecated and will be removed in a future "
                "minor release; pass rng=... (an int, a numpy.random.Generator or None)"
            )
            kwargs["rng"] = kwargs.pop("seed")
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def keyword_only(n_positional: int) -> Callable[[F], F]:
    """Let options that became keyword-only still be passed by position, with a warning.

    ``n_positional`` is how many leading parameters are data (positional). Extra
    positional arguments are mapped, in the order of the old signature, to the
    keyword-only parameters that follow; the call then warns how to write it.
    """

    def decorate(func: F) -> F:
        params = list(inspect.signature(func).parameters.values())
        keyword = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            extra = args[n_positional:]
            if not extra:
                return func(*args, **kwargs)
            if len(extra) > len(keyword):
                raise TypeError(
                    f"{func.__name__}() takes {n_positional} positional arguments "
                    f"but {len(args)} were given"
                )
            names = keyword[: len(extra)]
            for name, value in zip(names, extra):
                if name in kwargs:
                    raise TypeError(f"{func.__name__}() got multiple values for `{name}`")
                kwargs[name] = value
            _deprecation(
                f"passing {', '.join(names)} to {func.__name__}() by position is deprecated; "
                f"write {', '.join(f'{n}=...' for n in names)}"
            )
            return func(*args[:n_positional], **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def deprecated_alias(func: Callable[..., Any], old_name: str, **fixed: Any) -> Callable[..., Any]:
    """The old function ``old_name``: ``func`` with the keywords ``fixed``, warning once a call.

    ``deprecated_alias(dropout_penalty, "dropout_penalty_mc", method="mc")`` keeps
    ``dropout_penalty_mc(...)`` working as ``dropout_penalty(..., method="mc")``.
    """
    spelled = ", ".join(f"{k}={v!r}" for k, v in fixed.items())

    @functools.wraps(func)
    def alias(*args: Any, **kwargs: Any) -> Any:
        _deprecation(
            f"{old_name}() is deprecated and will be removed in a future minor release; "
            f"call {func.__name__}(..., {spelled})"
        )
        for key, value in fixed.items():
            if key in kwargs and kwargs[key] != value:
                raise InvalidParameterError(
                    f"{old_name}() always uses {key}={value!r}, got {key}={kwargs[key]!r}"
                )
            kwargs[key] = value
        return func(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old_name
    alias.__doc__ = (
        f"Deprecated alias of :func:`{func.__name__}` with ``{spelled}``.\n\n"
        f"Call ``{func.__name__}(..., {spelled})`` instead; this name will be removed in "
        "a future minor release.\n"
    )
    return alias


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Accept old keyword names for renamed parameters, with a DeprecationWarning.

    ``renamed_keywords(n_samples="n_masks")`` lets ``f(n_samples=10)`` mean
    ``f(n_masks=10)``; passing both names is refused.
    """

    def decorate(func: F) -> F:
        names = inspect.signature(func).parameters
        missing = [new for new in renames.values() if new not in names]
        if missing:
            raise TypeError(f"{func.__qualname__} has no parameter {missing}")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise InvalidParameterError(
                        f"{func.__name__}() got both `{old}` and `{new}`; pass only `{new}`"
                    )
                _deprecation(
                    f"{func.__name__}({old}=...) is deprecated and will be removed in a "
                    f"future minor release; pass {new}=..."
                )
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
