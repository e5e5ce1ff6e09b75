"""Dropout mask distributions with one interface.

A mask distribution samples a batch of multiplicative masks ``m`` for a
feature shape; every mask is *inverted* (a kept unit is scaled by 1/keep), so
``E[m] = 1`` entrywise and ``Var[m_j] = lambda = (1 - keep) / keep``.

* :class:`Bernoulli` -- elementwise dropout, ``torch.nn.Dropout(p=1-keep)``
  (Srivastava et al., JMLR 2014).
* :class:`Channel` -- a whole feature map kept or dropped together,
  ``torch.nn.Dropout2d`` / SpatialDropout (Tompson et al., CVPR 2015).

The feature shape is ``(width,)`` for a fully connected hidden layer and
``(channels, H, W)`` (or ``(channels, L)``) for a convolutional feature map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import as_generator, check_int, check_keep

__all__ = ["dropout_lambda", "MaskDistribution", "Bernoulli", "Channel"]


def dropout_lambda(keep: float) -> float:
    r"""Dropout regularization strength :math:`\lambda = (1 - \theta)/\theta`.

    It is the variance of one inverted Bernoulli mask entry ``r / keep``,
    ``r ~ Bernoulli(keep)`` (Mianjy, Arora & Vidal, ICML 2018).

    Parameters
    ----------
    keep : float
        Retain probability θ in (0, 1] (PyTorch's ``p`` is ``1 - keep``).

    Examples
    --------
    >>> dropout_lambda(0.5)
    1.0
    """
    keep = check_keep(keep)
    return (1.0 - keep) / keep


def _check_feature_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(shape)
    if len(shape) == 0:
        raise ValueError("`shape` must have at least one dimension")
    return tuple(check_int(s, "shape entries") for s in shape)


@dataclass(frozen=True)
class MaskDistribution:
    """Base class: ``sample(shape, n, seed)`` returns ``n`` masks of ``shape``."""

    keep: float

    def __post_init__(self):
        object.__setattr__(self, "keep", check_keep(self.keep))

    @property
    def lam(self) -> float:
        """Variance of one mask entry, λ = (1 − keep)/keep."""
        return (1.0 - self.keep) / self.keep

    def sample(self, shape, n: int, seed) -> np.ndarray:
        """Draw ``n`` independent masks; returns an array of shape ``(n, *shape)``."""
        shape = _check_feature_shape(shape)
        n = check_int(n, "n")
        return self._sample(shape, n, as_generator(seed))

    def _sample(self, shape, n, rng):  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Bernoulli(MaskDistribution):
    """Elementwise inverted dropout: ``m_j = r_j / keep``, ``r_j ~ Bernoulli(keep)`` i.i.d."""

    def _sample(self, shape, n, rng):
        return (rng.random((n, *shape)) < self.keep) / self.keep


@dataclass(frozen=True)
class Channel(MaskDistribution):
    """Channel dropout: one Bernoulli(keep) draw per channel (first feature axis), shared
    by every position of that channel's map, scaled by 1/keep (``nn.Dropout2d``)."""

    def _sample(self, shape, n, rng):
        r = (rng.random((n, shape[0])) < self.keep) / self.keep
        r = r.reshape((n, shape[0]) + (1,) * (len(shape) - 1))
        return np.broadcast_to(r, (n, *shape)).copy()
