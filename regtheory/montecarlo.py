"""Generic Monte Carlo engine: a mean of i.i.d. draws with an honest standard error.

Every estimator in regtheory (FC, conv, network penalties) is a function
``draw(rng, size) -> ndarray of shape (size,)`` that returns ``size``
independent draws of a penalty, each from one real sampled mask. This module
turns such a function into an :class:`Estimate`, in vectorised batches, with
an optional stop once the relative standard error reaches a target.

The standard error is the sample standard deviation over sqrt(n) (CLT); the
interval is the normal one, mean +/- z * stderr.

How many masks? A draw's standard deviation σ sets everything: the relative
standard error after n draws is σ/(|μ|·sqrt(n)), so a target ε needs
n ≈ (σ/(ε|μ|))². :meth:`Estimate.samples_for` computes that from a pilot
estimate, and ``rtol=`` stops a run once it is reached. Measured σ/|μ| of one
draw (a random 5-unit FC layer on 200 Gaussian samples; a random 8-channel 3×3 conv
net on 8×8 white noise, zero padding): FC 0.19 at keep 0.5 (every inverted
mask entry is ±1 there, so only the cross terms vary), 1.48 at keep 0.1 and
1.50 at keep 0.9; conv element 0.27, channel 0.43, DropBlock 3×3 0.28 at keep
0.5. The defaults (100,000 masks FC, 20,000 conv, 2,000 network) therefore
reach relative standard errors well below 1 % on such layers; the
interval coverage is checked over 400 seeds in tests/test_coverage.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ._validation import InvalidParameterError, as_generator, check_int

__all__ = ["Estimate", "estimate"]


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate of an expectation.

    Attributes
    ----------
    mean : float
        Sample mean of the draws.
    stderr : float
        Standard error of the mean, ``std(draws, ddof=1) / sqrt(n_samples)``.
    n_samples : int
        Number of independent draws.
    """

    mean: float
    stderr: float
    n_samples: int

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """Normal confidence interval ``mean +/- z_{(1+level)/2} * stderr``."""
        if not (0.0 < level < 1.0):
            raise InvalidParameterError(f"`level` must be in (0, 1), got {level!r}")
        z = float(stats.norm.ppf(0.5 + level / 2.0))
        return (self.mean - z * self.stderr, self.mean + z * self.stderr)

    @property
    def rel_stderr(self) -> float:
        """Relative standard error ``stderr / |mean|`` (inf when the mean is 0)."""
        return self.stderr / abs(self.mean) if self.mean != 0 else float("inf")

    @property
    def std(self) -> float:
        """Standard deviation of one draw, ``stderr * sqrt(n_samples)``."""
        return self.stderr * float(np.sqrt(self.n_samples))

    def samples_for(self, rtol: float) -> int:
        """Draws needed for a relative standard error ``rtol``, (std / (rtol·|mean|))²."""
        if not (rtol > 0):
            raise InvalidParameterError(f"`rtol` must be positive, got {rtol!r}")
        if self.mean == 0:
            raise ValueError("the mean is 0: a relative standard error is undefined")
        return int(np.ceil((self.std / (rtol * abs(self.mean))) ** 2))

    def zscore(self, value: float) -> float:
        """How many standard errors ``value`` lies from the mean."""
        if self.stderr == 0:
            return 0.0 if value == self.mean else float("inf")
        return (self.mean - value) / self.stderr

    def __str__(self) -> str:
        lo, hi = self.ci()
        return (
            f"{self.mean:.6g} ± {self.stderr:.2g} (95% CI [{lo:.6g}, {hi:.6g}], n={self.n_samples})"
        )


def estimate(
    draw: Callable[[np.random.Generator, int], np.ndarray],
    n_samples: int,
    seed,
    batch_size: int = 4096,
    rtol: float | None = None,
    min_samples: int = 1000,
) -> Estimate:
    """Estimate ``E[draw]`` from independent draws, in batches.

    Parameters
    ----------
    draw : callable
        ``draw(rng, size)`` returns ``size`` i.i.d. draws (1-D array).
    n_samples : int
        Number of draws; with ``rtol`` it is the maximum.
    seed : int or numpy.random.Generator
        Same seed, same estimate.
    batch_size : int
        Draws per vectorised call.
    rtol : float, optional
        Stop early once ``stderr / |mean| <= rtol`` (checked after each batch,
        not before ``min_samples`` draws, so the variance estimate is stable).
    min_samples : int
        No early stop before this many draws (default 1000), so the standard
        deviation behind the stopping rule is itself well estimated.

    Returns
    -------
    Estimate
    """
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if rtol is not None and not (rtol > 0):
        raise InvalidParameterError(f"`rtol` must be positive, got {rtol!r}")
    rng = as_generator(seed)
    # Chan et al.'s pairwise update of (count, mean, M2): stable for any number of batches.
    count, mean, m2 = 0, 0.0, 0.0
    while count < n_samples:
        size = min(batch_size, n_samples - count)
        values = np.asarray(draw(rng, size), dtype=np.float64)
        if values.shape != (size,):
            raise InvalidParameterError(f"draw returned shape {values.shape}, expected ({size},)")
        if not np.all(np.isfinite(values)):
            raise FloatingPointError("Monte Carlo draw produced NaN or inf")
        b_mean = float(values.mean())
        b_m2 = float(((values - b_mean) ** 2).sum())
        total = count + size
        delta = b_mean - mean
        mean += delta * size / total
        m2 += b_m2 + delta * delta * count * size / total
        count = total
        if rtol is not None and count >= min_samples:
            se = np.sqrt(m2 / (count - 1) / count)
            if se <= rtol * abs(mean):
                break
    stderr = float(np.sqrt(m2 / (count - 1) / count)) if count > 1 else float("inf")
    return Estimate(mean=float(mean), stderr=stderr, n_samples=int(count))
