"""Dropout mask distributions with one interface.

A mask distribution samples a batch of multiplicative masks ``m`` for a
feature shape; every mask is *inverted* (a kept unit is scaled by 1/keep), so
``E[m] = 1`` entrywise and ``Var[m_j] = lambda = (1 - keep) / keep``.

* :class:`Bernoulli` -- elementwise dropout, ``torch.nn.Dropout(p=1-keep)``
  (Srivastava et al., JMLR 2014).
* :class:`Channel` -- a whole feature map kept or dropped together,
  ``torch.nn.Dropout2d`` / SpatialDropout (Tompson et al., CVPR 2015).
* :class:`DropBlock` -- contiguous square blocks of a feature map dropped
  together (Ghiasi, Lin & Le, NeurIPS 2018; ``torchvision.ops.drop_block2d``).
* :class:`Gaussian` -- multiplicative N(1, λ) noise with the Bernoulli moments
  (Srivastava et al., JMLR 2014).
* :class:`PerSample` -- a whole sample's tensor kept or dropped together:
  stochastic depth (Huang et al., ECCV 2016), DropPath (Larsson et al., ICLR 2017),
  ``torchvision.ops.StochasticDepth(p, "row")``, timm's ``DropPath``.

The feature shape is ``(width,)`` for a fully connected hidden layer and
``(channels, H, W)`` (or ``(channels, L)``) for a convolutional feature map.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._bits import kept_bits
from ._grammar import RngLike, as_rng, transition_to_rng
from ._references import cites
from ._validation import (
    InvalidParameterError,
    ShapeLike,
    check_int,
    check_keep,
)

__all__ = [
    "Bernoulli",
    "Channel",
    "DropBlock",
    "Gaussian",
    "MaskDistribution",
    "PerSample",
    "dropout_lambda",
    "kept_units",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


@cites("mianjy2018implicit", "srivastava2014dropout")
def dropout_lambda(keep: float) -> float:
    r"""Dropout regularization strength :math:`\lambda = (1 - \theta)/\theta`.

    It is the variance of one inverted Bernoulli mask entry ``r / keep``,
    ``r ~ Bernoulli(keep)`` (Mianjy, Arora & Vidal [1]; inverted dropout of
    Srivastava et al. [2]):

    .. math:: \lambda = \operatorname{Var}\Big[\frac{r}{\theta}\Big]
              = \frac{1-\theta}{\theta},\qquad r \sim \mathrm{Bernoulli}(\theta).

    Parameters
    ----------
    keep : float
        Retain probability θ in (0, 1] (PyTorch's ``p`` is ``1 - keep``).

    Returns
    -------
    float
        λ ≥ 0 (0 at keep = 1, no dropout).

    Raises
    ------
    InvalidParameterError
        If ``keep`` is not a real number in (0, 1] (a subclass of both ``TypeError``
        and ``ValueError``).

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
    [2] N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov,
        Dropout: A Simple Way to Prevent Neural Networks from Overfitting,
        JMLR 15, 2014.

    Examples
    --------
    >>> dropout_lambda(0.5)
    1.0
    """
    keep = check_keep(keep)
    return (1.0 - keep) / keep


def _check_feature_shape(shape: ShapeLike) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(shape)
    if len(shape) == 0:
        raise InvalidParameterError("`shape` must have at least one dimension")
    return tuple(check_int(s, "shape entries") for s in shape)


@dataclass(frozen=True)
class MaskDistribution:
    """Base class: ``sample(shape, n, rng)`` returns ``n`` masks of ``shape``."""

    keep: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep", check_keep(self.keep))

    @property
    def lam(self) -> float:
        """Variance of one mask entry, λ = (1 − keep)/keep."""
        return (1.0 - self.keep) / self.keep

    @transition_to_rng
    def sample(self, shape: ShapeLike, n: int, rng: RngLike) -> np.ndarray:
        """Draw ``n`` independent masks; returns an array of shape ``(n, *shape)``.

        ``rng`` (an int, a ``numpy.random.Generator`` or None) is the source of
        the masks, as ``draw(rng, size)`` takes it in :func:`regtheory.montecarlo.estimate`;
        a Generator is used as it is, so successive calls draw new masks.
        """
        shape = _check_feature_shape(shape)
        n = check_int(n, "n")
        return self._sample(shape, n, as_rng(rng))

    def _sample(self, shape, n, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def kept_probability(self, shape: ShapeLike) -> float:
        """Smallest probability, over the units of a mask of ``shape``, that a unit is kept.

        ``keep`` for elementwise, channel and per-sample dropout, where every unit is
        kept with probability ``keep``.
        """
        _check_feature_shape(shape)
        return self.keep

    def event_probabilities(self, shape: ShapeLike) -> tuple[float, ...]:
        """Probabilities of the rarest independent events a mask of ``shape`` is made of.

        A Monte Carlo draw of a penalty hinges on these events, so they set how many
        masks an honest interval needs (:func:`regtheory.montecarlo.min_draws`).
        For elementwise, channel and per-sample dropout it is one Bernoulli(keep) draw
        per unit, channel or sample: ``(keep,)``.
        """
        return (self.kept_probability(shape),)


@cites("srivastava2014dropout")
@transition_to_rng
def kept_units(keep: float, shape: ShapeLike, rng: RngLike) -> np.ndarray:
    r"""Which units are kept, i.i.d. Bernoulli(keep), from 8 random bits per unit.

    A float64 uniform per unit spends 64 random bits and a conversion on one yes/no;
    here one byte ``u`` of the generator's raw output decides it: kept if
    :math:`u < t`, dropped if :math:`u > t`, with :math:`t = \lfloor 256\,\theta\rfloor`,
    and the ties :math:`u = t` (1 in 256) are settled by a float64 uniform against
    :math:`256\,\theta - t`. So a unit is kept with probability
    :math:`t/256 + (256\theta - t)/256 = \theta`, exactly (``256·keep`` is exact in
    binary), from about an eighth of the random bits of ``rng.random(shape) < keep``. At keep 0.5
    one bit decides a unit. The raw output is read little-endian, so the same seed
    gives the same units on every machine.

    Parameters
    ----------
    keep : float
        Retain probability in (0, 1].
    shape : int or tuple of int
        Shape of the result.
    rng : int, numpy.random.Generator or None
        Source of the random bits.

    Returns
    -------
    ndarray of bool
        True where the unit is kept.

    Raises
    ------
    InvalidParameterError
        If ``keep`` is not a real number in (0, 1], ``shape`` is empty or has an
        entry that is not a positive integer, or ``rng`` is not an int ≥ 0, a
        Generator or None.

    Examples
    --------
    >>> kept_units(0.5, (2, 4), rng=0).dtype
    dtype('bool')
    >>> float(kept_units(0.25, 100_000, rng=1).mean())  # close to 0.25
    0.2491
    """
    return kept_bits(check_keep(keep), _check_feature_shape(shape), as_rng(rng))


@dataclass(frozen=True)
class Bernoulli(MaskDistribution):
    """Elementwise inverted dropout: ``m_j = r_j / keep``, ``r_j ~ Bernoulli(keep)`` i.i.d."""

    def _sample(self, shape, n, rng):
        return (rng.random((n, *shape)) < self.keep) / self.keep


@dataclass(frozen=True)
class Channel(MaskDistribution):
    """Channel dropout (``nn.Dropout2d``): one Bernoulli(keep) draw per channel.

    The channel is the first feature axis; the draw is shared by every position of that
    channel's map and scaled by 1/keep.
    """

    def _sample(self, shape, n, rng):
        r = (rng.random((n, shape[0])) < self.keep) / self.keep
        r = r.reshape((n, shape[0]) + (1,) * (len(shape) - 1))
        return np.broadcast_to(r, (n, *shape)).copy()


def _block_cover_counts(length: int, block_size: int) -> np.ndarray:
    """For each position of an axis, how many in-range block starts cover it.

    Block starts ``i`` range over ``0 .. length - block_size`` (the block fits
    entirely inside the map) and a block covers ``[i, i + block_size)``.
    """
    p = np.arange(length)
    return np.minimum(p, length - block_size) - np.maximum(0, p - block_size + 1) + 1


@lru_cache(maxsize=256)
def _exact_gamma(keep: float, block_size: int, spatial: tuple[int, ...]) -> float:
    from scipy.optimize import brentq  # imported here: scipy.optimize is slow to load

    if keep == 1.0:
        return 0.0
    counts = _block_cover_counts(spatial[0], block_size)
    for length in spatial[1:]:
        counts = np.multiply.outer(counts, _block_cover_counts(length, block_size))
    values, multiplicity = np.unique(counts, return_counts=True)
    weights = multiplicity / counts.size

    def excess_kept(gamma):
        return float(np.dot(weights, (1.0 - gamma) ** values)) - keep

    # excess_kept decreases strictly from 1 - keep >= 0 at gamma = 0 to -keep < 0 at
    # gamma = 1 (every position is covered by at least one block), so the root is unique.
    return float(brentq(excess_kept, 0.0, 1.0, xtol=1e-15, rtol=4 * np.finfo(float).eps))


_DROPBLOCK_NORMALIZERS = ("ideal", "torchvision")


@dataclass(frozen=True)
class DropBlock(MaskDistribution):
    r"""DropBlock: square blocks of each channel's map dropped together (Ghiasi et al. 2018).

    For every channel, block *starts* are sampled i.i.d. Bernoulli(γ) on the
    ``(H - b + 1) × (W - b + 1)`` positions where a ``b × b`` block fits inside
    the map, and every position covered by a sampled block is dropped. (For odd
    ``b`` this is exactly the seed region and block placement of
    ``torchvision.ops.drop_block2d``, which centres the block on the seed.) A
    position ``p`` is covered by :math:`c(p) = c_H(p_1)\,c_W(p_2)` possible starts,
    fewer at the border, so

    .. math:: \Pr[p \text{ kept}] = (1-\gamma)^{c(p)},\qquad
              \frac{1}{HW}\sum_p (1-\gamma)^{c(p)} = \theta .

    γ is the exact root of the second equation (:meth:`gamma`), so the expected
    kept *fraction* of a map is exactly ``keep``. Ghiasi et al. and torchvision
    use instead :math:`\gamma_0 = \frac{(1-\theta) HW}{b^2 (H-b+1)(W-b+1)}`, which
    counts every sampled block as :math:`b^2` freshly dropped units. Blocks overlap,
    and :math:`1 - (1-\gamma)^{c} < \gamma c`, so fewer units are dropped than that
    count says: :math:`\gamma_0` is *smaller* than the exact γ and keeps *more* units
    than ``keep`` (16×16 map, b = 5, keep = 0.5: :math:`\gamma_0 = 0.0356` against
    γ = 0.0550, and :math:`\gamma_0` keeps a fraction 0.627 in expectation).

    Two positions p, q are both kept iff none of the starts covering either fires.
    Their numbers of shared starts :math:`o(p, q) = o_H(p_1, q_1)\, o_W(p_2, q_2)`
    factorise per axis and vanish unless p and q are closer than b along every axis:

    .. math:: \Pr[p, q \text{ kept}] = (1-\gamma)^{c(p) + c(q) - o(p, q)} ,

    so the masks of one channel are correlated only locally (channels are independent).

    Normalisation of the kept units:

    * ``"ideal"`` -- scale by 1/keep, so the mean of ``E[m]`` over the positions of
      a map is exactly 1. Not entrywise: border positions are covered by fewer
      blocks, so :math:`E[m_p] = (1-\gamma)^{c(p)}/\theta` is above 1 at the
      border and below 1 inside (exactly 1 everywhere only for ``b = 1`` or a block
      covering the whole map). Hence a loss gap under DropBlock has a first-moment
      term besides the mask's covariance (:func:`regtheory.conv.dropout_penalty`).
    * ``"torchvision"`` -- scale by ``numel / sum(kept)`` of the mask itself, a
      *random* normaliser (0 if everything is dropped), as
      ``torchvision.ops.drop_block2d`` does. torchvision computes that ratio over
      the whole ``(N, C, H, W)`` batch; here it is computed per mask (one sample's
      ``(C, H, W)`` feature map), which is torchvision's value for a batch of one.
      Its expectation differs from the ideal one (THEORY §3), and its moments depend
      on the distribution of the kept count, so only Monte Carlo evaluates it.

    ``block_size = 1`` is elementwise dropout (:class:`Bernoulli`) and a block
    covering the whole map is channel dropout (:class:`Channel`), in distribution.

    The feature shape is ``(channels, *spatial)`` with one or more spatial axes
    (blocks are cubes of side ``block_size`` in every spatial axis).

    Parameters
    ----------
    keep : float
        Expected kept fraction θ in (0, 1].
    block_size : int
        Side ``b`` of the dropped blocks; at most every spatial size of the map
        (torchvision silently clips it; here a larger one raises ``ValueError``).
    normalize : {"ideal", "torchvision"}

    References
    ----------
    [1] G. Ghiasi, T.-Y. Lin, Q. V. Le, DropBlock: A regularization method for
        convolutional networks, NeurIPS 2018.

    Examples
    --------
    >>> m = DropBlock(keep=0.9, block_size=3).sample((2, 8, 8), n=4, rng=0)
    >>> m.shape
    (4, 2, 8, 8)
    """

    block_size: int = 1
    normalize: str = "ideal"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "block_size", check_int(self.block_size, "block_size"))
        if self.normalize not in _DROPBLOCK_NORMALIZERS:
            raise InvalidParameterError(
                f"`normalize` must be one of {_DROPBLOCK_NORMALIZERS}, got {self.normalize!r}"
            )

    def _check_spatial(self, spatial) -> tuple[int, ...]:
        spatial = tuple(check_int(s, "shape entries") for s in spatial)
        if len(spatial) == 0:
            raise InvalidParameterError(
                "DropBlock needs a feature shape (channels, *spatial) with at least one "
                "spatial axis"
            )
        if any(self.block_size > s for s in spatial):
            raise InvalidParameterError(
                f"`block_size` ({self.block_size}) must not exceed the feature map's "
                f"spatial size {spatial}"
            )
        return spatial

    def gamma(self, spatial_shape: ShapeLike) -> float:
        """Exact block-start rate γ for a map of ``spatial_shape`` (see the class docstring)."""
        return _exact_gamma(self.keep, self.block_size, self._check_spatial(spatial_shape))

    def kept_probability(self, shape: ShapeLike) -> float:
        r"""Smallest probability that a position of a ``(channels, *spatial)`` map is kept.

        :math:`(1-\gamma)^{c_{\max}}`, where :math:`c_{\max} = \prod_a \min(b, s_a - b + 1)`
        block starts cover the most covered positions (the interior of a map at least
        2b - 1 wide); below ``keep``, and far below it at small ``keep``.
        """
        spatial = self._check_spatial(_check_feature_shape(shape)[1:])
        most_covers = int(np.prod([min(self.block_size, s - self.block_size + 1) for s in spatial]))
        return (1.0 - self.gamma(spatial)) ** most_covers

    def event_probabilities(self, shape: ShapeLike) -> tuple[float, ...]:
        """Probabilities of the rarest events a DropBlock mask of ``shape`` is made of.

        A block start (γ, rare near keep = 1) and the rarest kept position
        (:meth:`kept_probability`, rare at small keep).
        """
        spatial = self._check_spatial(_check_feature_shape(shape)[1:])
        return (self.gamma(spatial), self.kept_probability(shape))

    def _sample(self, shape, n, rng):
        spatial = self._check_spatial(shape[1:])
        b = self.block_size
        gamma = _exact_gamma(self.keep, b, spatial)
        starts = rng.random((n, shape[0], *(s - b + 1 for s in spatial))) < gamma
        # Dilation of the start map by a b-long window, one axis at a time (a box is
        # separable): position p is dropped iff some start lies in [p - b + 1, p].
        dropped = starts
        if b > 1:
            for axis in range(2, 2 + len(spatial)):
                widths = [(0, 0)] * dropped.ndim
                widths[axis] = (b - 1, b - 1)
                padded = np.pad(dropped, widths)
                dropped = sliding_window_view(padded, b, axis=axis).any(axis=-1)
        kept = ~dropped
        if self.normalize == "ideal":
            return kept / self.keep
        total = kept.sum(axis=tuple(range(1, kept.ndim)), keepdims=True)
        scale = np.divide(kept[0].size, total, out=np.zeros(total.shape), where=total > 0)
        return kept * scale


@dataclass(frozen=True)
class Gaussian(MaskDistribution):
    r"""Gaussian dropout: ``m_j ~ N(1, lambda)`` i.i.d., λ = (1 − keep)/keep (Srivastava et al.).

    Multiplicative Gaussian noise with the mean and variance of the inverted Bernoulli
    mask of the same ``keep`` (Srivastava et al. 2014, §10):

    .. math:: \mathbb E[m] = \mathbf 1,\qquad \mathbb E[m m^\top] = \mathbf 1\mathbf 1^\top
              + \lambda I ,

    so every penalty that depends on the masks only through their first two moments
    (squared loss, masks entering linearly) is the same as for :class:`Bernoulli`.
    No unit is ever dropped: the masks have no rare event
    (:meth:`event_probabilities` is ``(1.0,)``, which sets no minimum of draws).

    References
    ----------
    [1] N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov,
        Dropout: A Simple Way to Prevent Neural Networks from Overfitting,
        JMLR 15, 2014.

    Examples
    --------
    >>> Gaussian(keep=0.5).sample((3,), n=2, rng=0).shape
    (2, 3)
    """

    def _sample(self, shape: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
        return 1.0 + np.sqrt(self.lam) * rng.standard_normal((n, *shape))

    def kept_probability(self, shape: ShapeLike) -> float:
        """1: Gaussian noise scales every unit and never drops one."""
        _check_feature_shape(shape)
        return 1.0

    def event_probabilities(self, shape: ShapeLike) -> tuple[float, ...]:
        """``(1.0,)``: no Bernoulli event, so no minimum number of draws beyond two."""
        _check_feature_shape(shape)
        return (1.0,)


@dataclass(frozen=True)
class PerSample(MaskDistribution):
    r"""Stochastic depth / DropPath: one Bernoulli(keep) draw per sample, for the whole tensor.

    Every entry of a sample's mask is the same :math:`r/\theta`,
    :math:`r \sim \mathrm{Bernoulli}(\theta)`: the branch the mask multiplies is kept
    whole (scaled by 1/θ) or dropped whole, independently for every sample, as
    ``torchvision.ops.StochasticDepth(p, "row")`` and timm's ``DropPath`` do with
    ``p = 1 - keep`` (Huang et al. [1], Larsson et al. [2]). Hence

    .. math:: \mathbb E[m] = \mathbf 1,\qquad
              \operatorname{Cov}(m) = \lambda\, \mathbf 1\mathbf 1^\top ,

    every pair of entries, not only the diagonal, having covariance
    λ = (1 − θ)/θ. A mask of one entry is elementwise dropout (:class:`Bernoulli`).

    References
    ----------
    [1] G. Huang, Y. Sun, Z. Liu, D. Sedra, K. Q. Weinberger, Deep Networks with
        Stochastic Depth, ECCV 2016.
    [2] G. Larsson, M. Maire, G. Shakhnarovich, FractalNet: Ultra-Deep Neural Networks
        without Residuals, ICLR 2017.

    Examples
    --------
    >>> m = PerSample(keep=0.5).sample((2, 3, 3), n=4, rng=0)
    >>> m.shape
    (4, 2, 3, 3)
    >>> bool(np.all(m == m[:, :1, :1, :1]))  # one value per sample
    True
    """

    def _sample(self, shape: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
        r = (rng.random(n) < self.keep) / self.keep
        return np.broadcast_to(r.reshape((n,) + (1,) * len(shape)), (n, *shape)).copy()
