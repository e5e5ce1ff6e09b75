"""Input checks shared by every public entry point.

Validate once, at the boundary (scikit-learn's ``check_array`` habit), with a
message that names the argument, says what was wrong and what was expected;
inside the package the data are then trusted. Every refusal is one exception
type, :class:`InvalidParameterError` (scikit-learn's), so a caller can tell "the
package refused this argument" from "NumPy broke deep inside".
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "InvalidParameterError",
    "as_generator",
    "check_array",
    "check_cov",
    "check_int",
    "check_keep",
    "check_n_masks",
    "check_nonnegative",
]


class InvalidParameterError(ValueError, TypeError):
    """An argument of a public regtheory function was refused (scikit-learn's convention).

    A subclass of both ``ValueError`` (a bad value) and ``TypeError`` (a bad type),
    so ``except ValueError`` and ``except TypeError`` written before it existed still
    catch it, while ``except InvalidParameterError`` catches only what the package
    refused at its boundary, not an error from deep inside NumPy, SciPy or cvxpy.
    The message names the argument, what was wrong and what was expected.
    """


def check_keep(keep, name: str = "keep") -> float:
    """Return ``keep`` as a float after checking it is a retain probability in (0, 1]."""
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real):
        raise InvalidParameterError(
            f"`{name}` must be a real number in (0, 1], got {type(keep).__name__}"
        )
    keep = float(keep)
    if not (0.0 < keep <= 1.0):  # also rejects NaN
        raise InvalidParameterError(
            f"`{name}` (the retain probability) must be in (0, 1], got {keep!r}; "
            "note PyTorch's `p` is the drop probability, keep = 1 - p"
        )
    return keep


def check_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidParameterError(
            f"`{name}` must be an integer >= {minimum}, got {type(value).__name__}"
        )
    value = int(value)
    if value < minimum:
        raise InvalidParameterError(f"`{name}` must be an integer >= {minimum}, got {value}")
    return int(value)


def check_nonnegative(value, name: str) -> float:
    """Return ``value`` as a float after checking it is a real number >= 0 (not NaN)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(
            f"`{name}` must be a non-negative real number, got {type(value).__name__}"
        )
    value = float(value)
    if not (value >= 0):  # also rejects NaN
        raise InvalidParameterError(f"`{name}` must be non-negative, got {value!r}")
    return value


def check_n_masks(n_masks, minimum: int, setting: str) -> int:
    """Return ``n_masks`` after checking it is an integer >= 2 and >= ``minimum``.

    ``minimum`` is :func:`regtheory.montecarlo.min_draws` for the masks at hand and
    ``setting`` names them in the message (e.g. ``"keep = 0.02, elementwise masks"``).
    """
    n_masks = check_int(n_masks, "n_masks", minimum=2)
    if n_masks < minimum:
        raise InvalidParameterError(
            f"`n_masks` must be at least {minimum} for {setting}, got {n_masks}: the "
            "confidence interval is honest only when n_masks·q(1 - q) >= 14 for every random "
            "mask event of probability q (see regtheory.montecarlo.min_draws)"
        )
    return n_masks


#: NumPy dtype kinds that are not real numbers, and what an array of that kind holds.
#: Casting them to float would drop an imaginary part, or fail with a misleading message.
_NOT_REAL = {
    "c": "complex numbers; pass `.real` if the imaginary part is meant to be dropped",
    "O": "Python objects (e.g. None, a ragged nested list, or integers beyond int64); "
    "convert to a float array first",
    "U": "text",
    "S": "bytes",
    "M": "dates and times",
    "m": "time differences",
    "V": "structured records",
}


def check_array(x, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``x`` as a finite float64 array of the given rank(s).

    Booleans, integers and floats are accepted; complex, object, string, bytes,
    datetime, timedelta and structured arrays are refused with their dtype named.
    """
    try:
        raw = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"`{name}` must be an array of real numbers ({exc})") from None
    if raw.dtype.kind in _NOT_REAL:
        raise InvalidParameterError(
            f"`{name}` must be an array of real numbers (bool, integer or float), got dtype "
            f"{raw.dtype} ({_NOT_REAL[raw.dtype.kind]})"
        )
    with np.errstate(over="ignore"):  # a long double beyond float64 is named just below
        arr = raw.astype(np.float64, copy=False)
    if (
        raw.dtype.itemsize > 8
        and raw.dtype.kind == "f"
        and np.any(np.isfinite(raw) > np.isfinite(arr))
    ):
        raise InvalidParameterError(
            f"`{name}` holds numbers beyond the float64 range (largest "
            f"{np.finfo(np.float64).max:.3g}), given as dtype {raw.dtype}"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            expected = " or ".join(str(a) for a in allowed)
            raise InvalidParameterError(
                f"`{name}` must have {expected} dimensions, got shape {arr.shape}"
            )
    if arr.size == 0:
        raise InvalidParameterError(f"`{name}` must not be empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(f"`{name}` must contain only finite numbers (found NaN or inf)")
    return arr


def check_bias(bias, n_out: int, name: str) -> np.ndarray | None:
    """A layer's bias: ``None``, or a finite (n_out,) array.

    One entry per output unit or channel.
    """
    if bias is None:
        return None
    bias = check_array(bias, name, ndim=1)
    if bias.shape != (n_out,):
        raise InvalidParameterError(
            f"`{name}` must have one entry per output ({n_out},), got shape {bias.shape}"
        )
    return bias


def check_cov(cov, dim: int, name: str = "cov", require_pd: bool = False) -> np.ndarray | None:
    """Check a second-moment matrix E[x x^T]: (dim, dim), symmetric, PSD (or PD).

    ``None`` (isotropic input, C = I) is passed through.
    """
    if cov is None:
        return None
    cov = check_array(cov, name, ndim=2)
    if cov.shape != (dim, dim):
        raise InvalidParameterError(f"`{name}` must have shape ({dim}, {dim}), got {cov.shape}")
    scale = max(float(np.max(np.abs(cov))), np.finfo(float).tiny)
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * scale):
        raise InvalidParameterError(f"`{name}` must be symmetric")
    eig_min = float(np.linalg.eigvalsh(cov)[0])
    tol = 1e-10 * scale * dim
    if eig_min < -tol:
        raise InvalidParameterError(
            f"`{name}` must be positive semi-definite, smallest eigenvalue is {eig_min:.3g}"
        )
    if require_pd and eig_min <= tol:
        raise InvalidParameterError(
            f"`{name}` must be positive definite here (the problem is whitened by "
            f"cov^(-1/2)), smallest eigenvalue is {eig_min:.3g}"
        )
    return 0.5 * (cov + cov.T)


def as_generator(seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from an int seed, a Generator, or a SeedSequence."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool):
        raise InvalidParameterError("`seed` must be an int or a numpy.random.Generator, got bool")
    if isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(seed, numbers.Integral) and seed < 0:
            raise InvalidParameterError(f"`seed` must be a non-negative int, got {seed}")
        return np.random.default_rng(int(seed) if isinstance(seed, numbers.Integral) else seed)
    raise InvalidParameterError(
        f"`seed` must be an int or a numpy.random.Generator, got {type(seed).__name__}"
    )


def check_choice(value, name: str, choices) -> None:
    """Check that ``value`` is one of ``choices`` (strings, or None where allowed)."""
    if not (value is None or isinstance(value, str)) or value not in choices:
        raise InvalidParameterError(f"`{name}` must be one of {tuple(choices)}, got {value!r}")


PADDINGS = ("zeros", "circular")

#: The arithmetic types of the Monte Carlo engines (``dtype=``); float64 is the default.
DTYPES = ("float64", "float32")


def check_dtype(dtype) -> np.dtype:
    """The NumPy dtype of a Monte Carlo ``dtype`` option.

    "float64" or "float32", or the NumPy types themselves.
    """
    if dtype in (np.float64, np.float32):
        return np.dtype(dtype)
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise InvalidParameterError(f"`dtype` must be one of {DTYPES}, got {dtype!r}")
    return np.dtype(dtype)


def check_padding(padding) -> bool:
    """Return True for circular padding after checking ``padding``."""
    if not isinstance(padding, str) or padding not in PADDINGS:
        raise InvalidParameterError(f"`padding` must be one of {PADDINGS}, got {padding!r}")
    return padding == "circular"


def check_block_size(block_size, width: int) -> int:
    """Check a group size of units dropped together: a positive integer dividing ``width``."""
    block_size = check_int(block_size, "block_size")
    if width % block_size:
        raise InvalidParameterError(
            f"`block_size` ({block_size}) must divide the width ({width}): units are "
            "dropped in groups of block_size consecutive units"
        )
    return block_size


# ----------------------------------------------------------------------------- implied problems

#: What a ``seed`` argument accepts (see :func:`as_generator`).
SeedLike = int | np.random.Generator | np.random.SeedSequence
#: A shape: one int, or a sequence of ints.
ShapeLike = int | Sequence[int]


def check_fc_problem(
    T: object, keep: object, width: object, cov: object
) -> tuple[np.ndarray, float, int, np.ndarray | None]:
    """The data of an FC implied problem, checked in order.

    A 2-D target ``T``, ``keep``, ``width`` and a positive definite ``cov`` over T's
    columns (or None).
    """
    T = check_array(T, "T", ndim=2)
    keep = check_keep(keep)
    width = check_int(width, "width")
    cov = check_cov(cov, T.shape[1], require_pd=True)
    return T, keep, width, cov


# ----------------------------------------------------------------------------- conv shapes, SGD


def check_positive(value, name: str) -> float:
    """Return ``value`` as a float after checking it is a positive, finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(
            f"`{name}` must be a positive real number, got {type(value).__name__}"
        )
    value = float(value)
    if not (0.0 < value < np.inf):  # also rejects NaN
        raise InvalidParameterError(f"`{name}` must be positive and finite, got {value!r}")
    return value


def check_real(value: object, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(f"`{name}` must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise InvalidParameterError(f"`{name}` must be finite, got {value!r}")
    return value


def check_fraction(value: object, name: str) -> float:
    """Return ``value`` as a float after checking it is a real number in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(
            f"`{name}` must be a real number in (0, 1), got {type(value).__name__}"
        )
    value = float(value)
    if not (0.0 < value < 1.0):  # also rejects NaN
        raise InvalidParameterError(f"`{name}` must be in (0, 1), got {value!r}")
    return value


def check_spatial_shape(shape, name: str) -> tuple[int, ...]:
    """An int L, or a tuple of 1 (L,) or 2 (H, W) positive ints, as a tuple."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise InvalidParameterError(f"`{name}` must be an int or a tuple of ints, got {shape!r}")
    shape = tuple(shape)
    if len(shape) not in (1, 2):
        raise InvalidParameterError(f"`{name}` must have 1 (L,) or 2 (H, W) entries, got {shape}")
    return tuple(check_int(s, name) for s in shape)


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def check_image_shape(image_shape, n_spatial: int, kernel: str | None = None) -> tuple[int, int]:
    """Spatial size (H, W) of an image for a kernel with ``n_spatial`` axes (1-D: H = 1).

    ``kernel`` names the weight argument whose rank sets ``n_spatial``, for the message.
    """
    shape = check_spatial_shape(image_shape, "image_shape")
    if len(shape) != n_spatial:
        of = f" of `{kernel}`" if kernel else ""
        raise InvalidParameterError(
            f"`image_shape` must have {_entries(n_spatial)} to match the {n_spatial}-D "
            f"kernel{of}, got {shape}"
        )
    return (shape[0], shape[1]) if n_spatial == 2 else (1, shape[0])


def check_kernel_size(kernel_size, n_spatial: int) -> tuple[int, ...]:
    """Odd kernel size, one entry per spatial axis (an int means the same on every axis)."""
    if isinstance(kernel_size, numbers.Integral) and not isinstance(kernel_size, bool):
        kernel = (check_int(kernel_size, "kernel_size"),) * n_spatial
    else:
        kernel = check_spatial_shape(kernel_size, "kernel_size")
        if len(kernel) != n_spatial:
            raise InvalidParameterError(
                f"`kernel_size` must have {_entries(n_spatial)}, one per spatial axis of the "
                f"image, got {kernel}"
            )
    if any(k % 2 == 0 for k in kernel):
        raise InvalidParameterError(
            f"`kernel_size` must be odd (a same-size output needs a centre tap), got {kernel}"
        )
    return kernel


def check_conv_weight(weight, name: str) -> tuple[np.ndarray, int]:
    """A conv weight as a 4-D array (1-D kernels get kh = 1) and its number of spatial axes."""
    w = check_array(weight, name, ndim=(3, 4))
    n_spatial = w.ndim - 2
    kernel = w.shape[2:]
    if any(k % 2 == 0 for k in kernel):
        raise InvalidParameterError(
            f"`{name}` must have an odd kernel size (a same-size output needs a centre "
            f"tap), got kernel {kernel} in shape {w.shape}"
        )
    return (w if n_spatial == 2 else w[:, :, None, :]), n_spatial


def check_kernel_fits(kernel: tuple[int, ...], spatial: tuple[int, ...], name: str) -> None:
    """Check a kernel (kh, kw) fits an image (H, W) (1-D: kh = H = 1)."""
    if kernel[0] > spatial[0] or kernel[1] > spatial[1]:
        shown_k = kernel if spatial[0] > 1 else kernel[1:]
        shown_s = spatial if spatial[0] > 1 else spatial[1:]
        raise InvalidParameterError(
            f"`{name}` has kernel {shown_k}, larger than the image {shown_s}; "
            "a kernel must fit inside the image (circular padding would wrap it twice)"
        )


def check_conv_data(X, Y) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N, C_in, H, W) or (N, C_in, L) and targets with the same samples and image."""
    X = check_array(X, "X", ndim=(3, 4))
    Y = check_array(Y, "Y", ndim=X.ndim)
    if Y.shape[0] != X.shape[0] or Y.shape[2:] != X.shape[2:]:
        raise InvalidParameterError(
            f"`Y` must have the samples (axis 0) and spatial shape of `X` {X.shape}, got {Y.shape}"
        )
    return X, Y


def check_paired_rows(X: np.ndarray, Y: np.ndarray) -> None:
    """Check that the arrays ``X`` and ``Y`` hold the same number of samples (rows)."""
    if X.shape[0] != Y.shape[0]:
        raise InvalidParameterError(
            "`X` and `Y` must have the same number of samples (the same number of rows, "
            f"axis 0), got X {X.shape} and Y {Y.shape}"
        )
