r"""Exact dropout penalties of deep networks by propagating mask moments (THEORY §4).

The engine behind the exact ``network.dropout_penalty``. It works on plain descriptions
of the layers (the private dataclasses below) and never imports :mod:`regtheory.network`
at module level, because ``network`` imports this module; :func:`from_network` turns
network's layer objects into those descriptions.

The quantity
------------
For squared loss the dropout penalty of a network on data :math:`(x_k, y_k)_{k\le n}` is

.. math:: P = \mathbb E_r L(r) - L(\mathbf 1),\qquad
          L(r) = \frac1n\sum_k \|y_k - f_r(x_k)\|^2 ,

with an independent mask :math:`m_i` per sample at every dropout layer i. When every
non-linearity comes *before* the first dropout layer, the network after it is

.. math:: f_r(x) = B_K\, \mathrm{diag}(m_K)\, B_{K-1} \cdots B_1\, \mathrm{diag}(m_1)\, h(x),

:math:`B_i` linear (convolutions, fully connected layers) and :math:`h(x)` the
deterministic features at the first mask; the output is multilinear in the masks.
Write :math:`m_i = \mu_i + e_i`, :math:`\mu_i = \mathbb E m_i`. Expanding the product
over the subsets T of dropout layers that contribute their fluctuation :math:`e_i`,
every cross term between two different subsets has some :math:`e_i` exactly once and
vanishes, so

.. math:: \mathbb E_r \|f_r(x) - y\|^2 = \|g(x) - y\|^2 + \sum_{T \ne \emptyset} \operatorname{tr} S_T(x),

:math:`g` the network with every mask replaced by its mean, :math:`S_T` the second
moment of the term of subset T. Hence the exact decomposition returned by
:func:`dropout_penalty_terms`,

.. math:: P = \underbrace{\frac1n\sum_k \big(\|g(x_k) - y_k\|^2 - \|f(x_k) - y_k\|^2\big)}_{\text{mean shift}}
          + \sum_i \underbrace{\operatorname{tr} \bar S_{\{i\}}}_{\text{layer } i}
          + \sum_{|T| \ge 2} \underbrace{\operatorname{tr} \bar S_T}_{\text{interaction}} ,

bars denoting means over the samples. The mean shift is zero unless some
:math:`\mathbb E m \ne 1` (DropBlock's ideal masks at the border); then the targets
enter. The single-layer terms are the penalties of each layer alone (the others at
their mean mask); the interactions are what the total adds beyond their sum.

Moment propagation
------------------
:math:`S_T` obeys :math:`S \leftarrow B S B^\top` through a linear layer and, at mask i,
:math:`S_T \leftarrow S_T \circ \mu_i\mu_i^\top` (i ∉ T) or
:math:`S_{T\cup\{i\}} = S_T \circ \operatorname{Cov}(m_i)`:

* elementwise Bernoulli or Gaussian masks (Srivastava et al. 2014; a Gaussian
  :math:`N(1, \lambda)` mask has the Bernoulli second moments): :math:`\lambda\,\mathrm{Diag}(S)`;
* channel masks on a conv map (Tompson et al. 2015):
  :math:`\lambda \sum_c P_c S P_c`, S restricted to within-channel blocks;
  on a vector, channel masks are elementwise;
* DropBlock with the ideal 1/θ normaliser (Ghiasi et al. 2018): its exact mean and
  banded within-channel covariance (:class:`regtheory.masks.DropBlock`);
* DropConnect, an independent Bernoulli mask on the weights of a fully connected layer
  (Wan et al. 2013): the layer adds :math:`\lambda\,\mathrm{Diag}((W\circ W)\operatorname{diag} S)`.

No dense (C·H·W)² matrix is formed for conv maps. Element masks need only diagonals,
and :math:`\operatorname{diag}(A\,\mathrm{Diag}(s)A^\top) = (A\circ A)s = \sum_q s_q (A e_q)^2`:
the impulse responses :math:`A e_q` of a composite of convolutions are local (radius R,
the sum of the kernel radii), so impulses :math:`\sqrt{s_q}e_q` spaced at least 2R + 1
apart (one *colour* class) have disjoint responses, and one pass of A over their sum
gives all their squares at once. A state born at a mask is therefore a batch of
:math:`C\prod_a P_a` coloured probes (:math:`P_a \ge 2R_a + 1` per spatial axis, a
divisor of the axis for circular padding) pushed through the remaining convolutions;
DropBlock's banded covariance adds one pair of probe batches per lag and widens the
spacing by the lag. At a fully connected layer such a state is pulled back exactly:
:math:`W A\,\mathrm{Diag}(s)A^\top W^\top = (WA)\,\mathrm{Diag}(s)\,(WA)^\top`, with
:math:`WA = (A^\top W^\top)^\top` from the adjoint convolutions applied to the rows of W.

References
----------
[1] N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov,
    Dropout: A Simple Way to Prevent Neural Networks from Overfitting, JMLR 15, 2014.
[2] L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, Regularization of Neural
    Networks using DropConnect, ICML 2013.
[3] P. Mianjy, R. Arora, On Dropout and Nuclear Norm Regularization, ICML 2019.
[4] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
    Capacity Control, ICML 2021.
[5] J. Tompson et al., Efficient Object Localization Using Convolutional Networks,
    CVPR 2015.
[6] G. Ghiasi, T.-Y. Lin, Q. V. Le, DropBlock: A regularization method for
    convolutional networks, NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._validation import InvalidParameterError, check_array, check_keep, check_padding
from .conv import conv2d
from .masks import Bernoulli, Channel, DropBlock, Gaussian, MaskDistribution

__all__ = [
    "DropConnect",
    "PenaltyTerms",
    "dropout_penalty_terms",
    "from_network",
    "network_dropout_penalty",
]


# ----------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class DropConnect:
    r"""Fully connected layer with DropConnect: ``z -> z (W ∘ R)^T`` (Wan et al. 2013).

    Every weight is kept independently with probability ``keep`` and scaled by 1/keep
    (inverted, :math:`\mathbb E[R] = 1`), with a fresh mask :math:`R` per sample. Its
    mean is the layer W; its fluctuation adds, to the second moment of the output,

    .. math:: \lambda\, \mathrm{Diag}\big((W \circ W)\, \operatorname{diag} S\big),
              \qquad S = \mathbb E[z z^\top],\ \lambda = (1 - \theta)/\theta .

    Parameters
    ----------
    weight : array (out, in)
        ``nn.Linear`` layout; the input is flattened (channel first) as by ``Linear``.
    keep : float
        Retain probability of each weight.

    References
    ----------
    [2] L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, Regularization of Neural
        Networks using DropConnect, ICML 2013.
    """

    weight: np.ndarray
    keep: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", check_array(self.weight, "weight", ndim=2))
        object.__setattr__(self, "keep", check_keep(self.keep))

    @property
    def lam(self) -> float:
        """λ = (1 − keep)/keep, the variance of one weight mask entry."""
        return (1.0 - self.keep) / self.keep

    def sample(self, z: np.ndarray, seed: np.random.Generator) -> np.ndarray:
        """Apply the layer to ``z`` (n, ...) with a fresh weight mask per sample."""
        flat = z.reshape(z.shape[0], -1)
        kept = seed.random((flat.shape[0], *self.weight.shape)) < self.keep
        return np.einsum("noi,ni->no", kept * (self.weight / self.keep), flat)


@dataclass(frozen=True)
class _Conv:
    """Same-size convolution; weight (C_out, C_in, k) or (C_out, C_in, kh, kw)."""

    weight: np.ndarray
    padding: str

    def apply(self, z: np.ndarray) -> np.ndarray:
        return conv2d(z, self.weight, self.padding)

    def adjoint(self, z: np.ndarray) -> np.ndarray:
        # The adjoint of a same-size cross-correlation (odd kernel, zero or circular
        # padding) is the cross-correlation with the flipped, channel-transposed kernel.
        n_spatial = self.weight.ndim - 2
        flipped = np.flip(self.weight, axis=tuple(range(2, 2 + n_spatial)))
        return conv2d(z, np.swapaxes(flipped, 0, 1), self.padding)

    @property
    def radius(self) -> tuple[int, ...]:
        return tuple(k // 2 for k in self.weight.shape[2:])


@dataclass(frozen=True)
class _Linear:
    """``z -> flatten(z) W^T``; W (out, in)."""

    weight: np.ndarray

    def apply(self, z: np.ndarray) -> np.ndarray:
        flat = z.reshape(z.shape[0], -1)
        if flat.shape[1] != self.weight.shape[1]:
            raise InvalidParameterError(
                f"a Linear layer expects {self.weight.shape[1]} input features, got {flat.shape[1]}"
            )
        return flat @ self.weight.T


@dataclass(frozen=True)
class _ReLU:
    def apply(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0.0)


@dataclass(frozen=True)
class _Mask:
    """A dropout layer: multiply by a mask of ``masks``; ``index`` is its place in the net."""

    masks: MaskDistribution
    index: int


@dataclass(frozen=True)
class _Connect:
    """A DropConnect layer (mean weight ``weight``, λ ``lam``); ``index`` as for _Mask."""

    weight: np.ndarray
    lam: float
    index: int

    def apply(self, z: np.ndarray) -> np.ndarray:
        return _Linear(self.weight).apply(z)


_Op = _Conv | _Linear | _ReLU | _Mask | _Connect


def from_network(layers: Sequence[object]) -> tuple[_Op, ...]:
    """Describe a sequence of :mod:`regtheory.network` layers (and :class:`DropConnect`).

    ``Conv``, ``Linear``, ``ReLU`` and ``Dropout`` of :mod:`regtheory.network`, and
    :class:`DropConnect`, become the plain descriptions the engine works on; the
    position of every random layer in ``layers`` is kept, to name its penalty terms.
    """
    from . import network  # network imports this module: import it only when called

    if not isinstance(layers, Sequence) or isinstance(layers, (str, bytes)):
        raise InvalidParameterError("`layers` must be a sequence of layers")
    ops: list[_Op] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, network.Conv):
            weight = check_array(layer.weight, f"layers[{i}].weight", ndim=(3, 4))
            if any(k % 2 == 0 for k in weight.shape[2:]):
                raise InvalidParameterError(
                    f"`layers[{i}].weight` must have odd kernel sizes, got {weight.shape}"
                )
            check_padding(layer.padding)
            ops.append(_Conv(weight, layer.padding))
        elif isinstance(layer, network.Linear):
            ops.append(_Linear(check_array(layer.weight, f"layers[{i}].weight", ndim=2)))
        elif isinstance(layer, network.ReLU):
            ops.append(_ReLU())
        elif isinstance(layer, network.Dropout):
            if not isinstance(layer.masks, MaskDistribution):
                raise InvalidParameterError(
                    f"`layers[{i}]` must hold a regtheory.masks distribution"
                )
            ops.append(_Mask(layer.masks, i))
        elif isinstance(layer, DropConnect):
            ops.append(_Connect(layer.weight, layer.lam, i))
        else:
            raise InvalidParameterError(
                f"`layers[{i}]` must be Conv, Linear, ReLU, Dropout or DropConnect, "
                f"got {type(layer).__name__}"
            )
    return tuple(ops)


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True)
class PenaltyTerms:
    r"""The exact dropout penalty of a network and its split over the dropout layers.

    .. math:: P = \text{mean\_shift} + \sum_{T} \text{values}[T],

    T running over the non-empty subsets of the dropout layers (module docstring).

    Attributes
    ----------
    total : float
        :math:`P = \mathbb E_r L(r) - L(\mathbf 1)`.
    mean_shift : float
        Loss change of the network whose masks are replaced by their means; 0 when
        every mask has mean one (all but DropBlock's ideal masks).
    layers : tuple of int
        Positions, in the network's layer list, of its dropout (and DropConnect) layers.
    subsets : tuple of tuple of int
        Every non-empty subset of ``layers`` (as positions), singletons first.
    values : ndarray, read-only
        The term of each subset: a singleton's is that layer's own penalty (the other
        layers at their mean mask), a larger subset's is an interaction term.
    """

    total: float
    mean_shift: float
    layers: tuple[int, ...]
    subsets: tuple[tuple[int, ...], ...]
    values: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=float)
        values.setflags(write=False)
        object.__setattr__(self, "values", values)

    @property
    def own(self) -> np.ndarray:
        """Each dropout layer's own term, in the order of ``layers`` (read-only)."""
        out = np.array([self.term(i) for i in self.layers])
        out.setflags(write=False)
        return out

    @property
    def interaction(self) -> float:
        """Sum of the interaction terms (subsets of two or more layers)."""
        return float(sum(v for t, v in zip(self.subsets, self.values) if len(t) > 1))

    @property
    def interactions(self) -> tuple[tuple[tuple[int, ...], float], ...]:
        """The interaction terms as (subset, value) pairs, subsets of two or more layers."""
        return tuple((t, float(v)) for t, v in zip(self.subsets, self.values) if len(t) > 1)

    def term(self, *layers: int) -> float:
        """The term of the subset of dropout layers at positions ``layers``."""
        key = tuple(sorted(layers))
        if key not in self.subsets:
            raise InvalidParameterError(
                f"{key} is not a subset of the dropout layers at positions {self.layers}"
            )
        return float(self.values[self.subsets.index(key)])


# ----------------------------------------------------------------------------- states


@dataclass
class _State:
    r"""Second moment :math:`S_T` of one subset's term, at the current point of the chain.

    Either ``dense`` (a (d, d) matrix, on vectors) or a batch of probes, left and right,
    :math:`S = w\sum_r a_r b_r^\top`. Probes are ``exact`` (data, impulses, splits of
    those) or coloured: then S is right only on the diagonal and on the band the spacing
    allows, which is all the masks and the trace ask for. A coloured state also keeps its
    origin (``origin``: ``("diag", s)`` or ``("band", {lag: x})``) and the linear steps
    taken since (``steps``), to be pulled back exactly at a fully connected layer.
    """

    subset: tuple[int, ...]
    weight: float = 1.0
    left: np.ndarray | None = None
    right: np.ndarray | None = None
    exact: bool = True
    dense: np.ndarray | None = None
    origin: tuple[str, Any] | None = None
    steps: list[_Conv | tuple[str, ...] | tuple[str, np.ndarray]] = field(default_factory=list)

    def rights(self) -> np.ndarray:
        assert self.left is not None
        return self.left if self.right is None else self.right

    def diag(self) -> np.ndarray:
        """diag S, in the feature shape."""
        if self.dense is not None:
            return np.diagonal(self.dense).copy()
        assert self.left is not None
        return self.weight * np.einsum("r...,r...->...", self.left, self.rights())

    def band(self, lag: tuple[int, ...]) -> np.ndarray:
        """S[(c, q), (c, q + lag)] for every (c, q), zero where q + lag is outside."""
        assert self.left is not None
        shifted = _shift(self.rights(), lag)
        return self.weight * np.einsum("r...,r...->...", self.left, shifted)

    def trace(self) -> float:
        if self.dense is not None:
            return float(np.trace(self.dense))
        return float(np.sum(self.diag()))

    def map_probes(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        assert self.left is not None
        self.left = fn(self.left)
        if self.right is not None:
            self.right = fn(self.right)


def _shift(z: np.ndarray, lag: Sequence[int]) -> np.ndarray:
    """out[..., q] = z[..., q + lag] over the trailing spatial axes, zero outside."""
    out = np.zeros_like(z)
    src: list[slice] = [slice(None)] * (z.ndim - len(lag))
    dst = list(src)
    for n, d in zip(z.shape[z.ndim - len(lag) :], lag):
        dst.append(slice(max(0, -d), min(n, n - d)))
        src.append(slice(max(0, d), min(n, n + d)))
    out[tuple(dst)] = z[tuple(src)]
    return out


def _period(n: int, need: int, circular: bool) -> int:
    """Spacing of one colour class along an axis of length n: at least ``need``; for
    circular padding a divisor of n (the classes wrap around); n means one impulse."""
    if need >= n:
        return n
    if not circular:
        return need
    return next(p for p in range(need, n + 1) if n % p == 0)


def _colour(values: np.ndarray, periods: Sequence[int]) -> np.ndarray:
    """Coloured probes of ``values`` (C, *spatial): probe (c, o) holds values[c, q] at the
    positions q ≡ o (mod periods) of channel c and zero elsewhere; (C·ΠP, C, *spatial)."""
    C, spatial = values.shape[0], values.shape[1:]
    indicators = [
        (np.arange(n)[None, :] % p == np.arange(p)[:, None]).astype(float)
        for n, p in zip(spatial, periods)
    ]
    pattern = indicators[0]
    for ind in indicators[1:]:
        pattern = np.einsum("ai,bj->abij", pattern, ind).reshape(
            pattern.shape[0] * ind.shape[0], *pattern.shape[1:], ind.shape[1]
        )
    out = np.zeros((C, pattern.shape[0], C, *spatial))
    out[np.arange(C), :, np.arange(C)] = pattern[None] * values[:, None]
    return out.reshape(C * pattern.shape[0], C, *spatial)


def _channel_split(z: np.ndarray) -> np.ndarray:
    """(r, C, *spatial) -> (r·C, C, *spatial): probe (r, c) is probe r restricted to channel c."""
    r, C = z.shape[:2]
    out = np.zeros((r, C, *z.shape[1:]))
    out[:, np.arange(C), np.arange(C)] = z
    return out.reshape(r * C, *z.shape[1:])


# ----------------------------------------------------------------------------- masks


def _mask_kind(masks: MaskDistribution, shape: tuple[int, ...]) -> str:
    """Which second-moment rule a mask follows on features of ``shape``."""
    vector = len(shape) == 1
    if isinstance(masks, DropBlock):
        if masks.normalize != "ideal":
            raise InvalidParameterError(
                "DropBlock with normalize='torchvision' (the random normaliser numel/sum(kept)) "
                "has no exact form; estimate it with regtheory.network.dropout_penalty_mc"
            )
        if vector:
            raise InvalidParameterError(
                "DropBlock needs a feature map (channels, *spatial), got a vector of features"
            )
        return "block"
    if isinstance(masks, (Bernoulli, Gaussian)):
        return "element"
    if isinstance(masks, Channel):
        return "element" if vector else "channel"
    raise InvalidParameterError(
        f"no exact second moments are known for masks of type {type(masks).__name__}; "
        "estimate the penalty with regtheory.network.dropout_penalty_mc"
    )


def _dropblock_moments(
    masks: DropBlock, spatial: tuple[int, ...]
) -> tuple[np.ndarray, list[tuple[tuple[int, ...], np.ndarray]]]:
    """E[m] on the map, and Cov(m_q, m_{q+lag}) for every lag shorter than a block.

    Both come from :func:`regtheory.conv`'s exact DropBlock moments (the start rate γ
    from :meth:`regtheory.masks.DropBlock.gamma`).
    """
    # A private helper of conv, used (not copied) until it moves to a shared module.
    from .conv import _dropblock_moments as moments

    b = masks.block_size
    gamma = masks.gamma(spatial)
    two_d = len(spatial) == 2
    spatial2 = spatial if two_d else (1, spatial[0])
    blocks = (b, b) if two_d else (1, b)
    deltas = [np.arange(-(k - 1), k) for k in blocks]
    mean_dev, cov = moments(masks.keep, gamma, spatial2, blocks, deltas)
    lags: list[tuple[tuple[int, ...], np.ndarray]] = []
    for x, dh in enumerate(deltas[0]):
        for y, dw in enumerate(deltas[1]):
            lag: tuple[int, ...] = (int(dh), int(dw)) if two_d else (int(dw),)
            lags.append((lag, cov[x, y].reshape(spatial)))
    mean: np.ndarray = (mean_dev + 1.0).reshape(spatial)
    return mean, lags


# ----------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class _Segment:
    """What lies between a mask and the next fully connected layer (or the output)."""

    radius: tuple[int, ...]
    block_reach: int
    circular: bool


def _segment(ops: Sequence[_Op], start: int, n_spatial: int) -> _Segment:
    radius = [0] * n_spatial
    reach, circular = 0, False
    for op in ops[start + 1 :]:
        if isinstance(op, (_Linear, _Connect)):
            break
        if isinstance(op, _Conv):
            radius = [r + k for r, k in zip(radius, op.radius)]
            circular = circular or op.padding == "circular"
        elif isinstance(op, _Mask) and isinstance(op.masks, DropBlock):
            reach = max(reach, op.masks.block_size - 1)
    return _Segment(tuple(radius), reach, circular)


def _periods(spatial: tuple[int, ...], seg: _Segment, own_reach: int) -> tuple[int, ...]:
    # Two impulses of a class must keep disjoint responses (radius R each) even when one
    # is read at a lag of up to own_reach + block_reach: spacing 2R + 1 + both reaches.
    return tuple(
        _period(n, 2 * r + 1 + own_reach + seg.block_reach, seg.circular)
        for n, r in zip(spatial, seg.radius)
    )


def _element_child(st: _State, lam: float, seg: _Segment | None, subset: tuple[int, ...]) -> _State:
    s = np.maximum(lam * st.diag(), 0.0)  # a diagonal of a second moment: >= 0 up to rounding
    if s.ndim == 1 or seg is None:
        return _State(subset=subset, dense=np.diag(s.ravel()))
    spatial = s.shape[1:]
    periods = _periods(spatial, seg, 0)
    return _State(
        subset=subset,
        left=_colour(np.sqrt(s), periods),
        exact=periods == spatial,
        origin=("diag", s),
    )


def _channel_child(st: _State, lam: float, subset: tuple[int, ...]) -> _State:
    assert st.left is not None
    return _State(
        subset=subset,
        weight=lam * st.weight,
        left=_channel_split(st.left),
        right=None if st.right is None else _channel_split(st.right),
        exact=st.exact,
        origin=st.origin,
        steps=[*st.steps, ("split",)],
    )


def _block_child(
    st: _State,
    lags: list[tuple[tuple[int, ...], np.ndarray]],
    seg: _Segment,
    reach: int,
    subset: tuple[int, ...],
) -> _State:
    assert st.left is not None
    spatial = st.left.shape[2:]
    periods = _periods(spatial, seg, reach)
    ones = _colour(np.ones(st.left.shape[1:]), periods)
    left, right, band = [], [], {}
    for lag, cov in lags:
        x = st.band(lag) * cov
        if not np.any(x):
            continue
        band[lag] = x
        probes = _colour(x, periods)
        used = np.any(probes.reshape(len(probes), -1) != 0, axis=1)
        left.append(probes[used])
        # right probe of class G: Σ_{q∈G} e_{q+lag}, so that Σ_G left right^T = Σ_q x_q e_q e_{q+lag}^T
        right.append(_shift(ones, tuple(-d for d in lag))[used])
    if not left:
        return _State(subset=subset, left=np.zeros((1, *st.left.shape[1:])), exact=True)
    return _State(
        subset=subset,
        left=np.concatenate(left),
        right=np.concatenate(right),
        exact=periods == spatial,
        origin=("band", band),
    )


def _pullback(st: _State, weight: np.ndarray) -> np.ndarray:
    r"""W S W^T of a coloured state, exactly: :math:`S = \sum_g A_g D A_g^\top` with D its
    origin (diagonal or banded) and :math:`A_g` its steps (one per channel branch), so
    :math:`W S W^\top = \sum_g (W A_g) D (W A_g)^\top`; the rows of :math:`W A_g` come from
    the adjoint steps applied to the rows of W."""
    assert st.left is not None and st.origin is not None
    shape = st.left.shape[1:]
    d = weight.shape[0]
    g = weight.reshape(1, d, *shape)
    for step in reversed(st.steps):
        if isinstance(step, _Conv):
            out = step.adjoint(g.reshape(-1, *g.shape[2:]))
            g = out.reshape(g.shape[0], d, *out.shape[1:])
        elif step[0] == "scale":
            g = g * step[1]
        else:  # split: Σ_c P_c S P_c, one branch per channel
            n_groups, C = g.shape[0], g.shape[2]
            split = _channel_split(g.reshape(n_groups * d, *g.shape[2:]))
            g = split.reshape(n_groups, d, C, *g.shape[2:]).swapaxes(1, 2)
            g = g.reshape(n_groups * C, d, *g.shape[3:])
    kind, data = st.origin
    if kind == "diag":
        flat = g.reshape(g.shape[0], d, -1)
        dense = np.einsum("gdq,q,geq->de", flat, data.ravel(), flat, optimize=True)
    else:
        dense = np.zeros((d, d))
        for lag, x in data.items():
            a = (g * x).reshape(g.shape[0], d, -1)
            b = _shift(g, lag).reshape(g.shape[0], d, -1)
            dense += np.einsum("gdq,geq->de", a, b, optimize=True)
    dense *= st.weight
    return 0.5 * (dense + dense.T)


def _linear_step(st: _State, weight: np.ndarray) -> None:
    if st.dense is not None:
        st.dense = weight @ st.dense @ weight.T
        return
    assert st.left is not None
    if not st.exact:
        st.dense = _pullback(st, weight)
        st.left = st.right = None
        return
    st.map_probes(lambda z: z.reshape(len(z), -1) @ weight.T)
    if st.subset and len(st.left) > weight.shape[0]:
        dense = st.weight * st.left.T @ st.rights()
        st.dense = 0.5 * (dense + dense.T)
        st.left = st.right = None


def _conv_step(st: _State, op: _Conv) -> None:
    st.map_probes(op.apply)
    if not st.exact:
        st.steps.append(op)


def _scale_step(st: _State, mean: np.ndarray) -> None:
    st.map_probes(lambda z: z * mean)
    if not st.exact:
        st.steps.append(("scale", mean))


def _check_chain(ops: Sequence[_Op]) -> int:
    """Index of the first random layer, after checking that no non-linearity follows it."""
    random_at = [t for t, op in enumerate(ops) if isinstance(op, (_Mask, _Connect))]
    if not random_at:
        raise InvalidParameterError(
            "the network has no Dropout layer: the penalty would be zero by definition"
        )
    first = random_at[0]
    for t in range(first + 1, len(ops)):
        if isinstance(ops[t], _ReLU):
            where = ops[first].index  # type: ignore[union-attr]
            raise InvalidParameterError(
                f"the dropout layer at position {where} feeds a non-linearity (a ReLU after "
                "it): the output is then not multilinear in the masks and the penalty has no "
                "exact form; estimate it with regtheory.network.dropout_penalty_mc"
            )
    return first


def _subset_order(subsets: Iterable[tuple[int, ...]]) -> list[tuple[int, ...]]:
    return sorted(subsets, key=lambda t: (len(t), t))


def dropout_penalty_terms(
    ops: Sequence[_Op], X: ArrayLike, Y: ArrayLike | None = None
) -> PenaltyTerms:
    r"""Exact dropout penalty of a network on data, split over its dropout layers.

    .. math:: P = \frac1n\sum_k \Big(\mathbb E_r\|y_k - f_r(x_k)\|^2 - \|y_k - f(x_k)\|^2\Big)
              = \text{mean shift} + \sum_{T\neq\emptyset} \operatorname{tr}\bar S_T ,

    by exact propagation of the masks' first and second moments (module docstring),
    for squared loss and independent masks, one per sample and dropout layer.

    Conditions: every non-linearity comes before the first dropout (or DropConnect)
    layer, else ``InvalidParameterError`` (use ``network.dropout_penalty_mc``); masks
    are :class:`~regtheory.masks.Bernoulli`, :class:`~regtheory.masks.Gaussian`,
    :class:`~regtheory.masks.Channel`, :class:`~regtheory.masks.DropBlock` (ideal
    normaliser) or DropConnect on a fully connected layer.

    Parameters
    ----------
    ops : sequence of layer descriptions
        From :func:`from_network`.
    X : array (n, ...)
        Inputs, (n, C, H, W) or (n, C, L) for a conv first layer, (n, d) for a linear one.
    Y : array (n, ...), optional
        Targets; ``None`` means the mask-free output f(X) (the penalty is then the
        perturbation energy :math:`\frac1n\sum_k \mathbb E\|f_r(x_k) - f(x_k)\|^2`,
        the same for every target when all masks have mean one).

    Returns
    -------
    PenaltyTerms

    Cost. Fully connected features: a (d, d) matrix per subset of dropout layers.
    Conv maps: per subset, one batch of :math:`C\prod_a P_a` coloured probes
    (:math:`P_a = 2R_a + 1`, R the receptive radius of the convolutions left before the
    next fully connected layer; channel masks multiply the batch by C, DropBlock by its
    number of lags) pushed once through those convolutions; the data's n samples once.
    """
    ops = tuple(ops)
    first = _check_chain(ops)
    X = check_array(X, "X")
    n = X.shape[0]
    clean, h = X, X
    for t, op in enumerate(ops):
        if not isinstance(op, _Mask):  # a DropConnect layer's mean is its weight
            clean = op.apply(clean)
        if t < first:
            h = clean
    if Y is None:
        Y = clean
    else:
        Y = check_array(Y, "Y")
        if Y.shape != clean.shape:
            raise InvalidParameterError(
                f"`Y` must have the network's output shape {clean.shape}, got {Y.shape}"
            )
    empty = _State(subset=(), weight=1.0 / n, left=h)
    states = [empty]
    for t in range(first, len(ops)):
        op = ops[t]
        if isinstance(op, _Conv):
            for st in states:
                _conv_step(st, op)
        elif isinstance(op, _Linear):
            for st in states:
                _linear_step(st, op.weight)
        elif isinstance(op, _Connect):
            w2 = op.weight * op.weight
            children = [
                _State(
                    subset=st.subset + (op.index,),
                    dense=np.diag(op.lam * (w2 @ st.diag().ravel())),
                )
                for st in states
            ]
            for st in states:
                _linear_step(st, op.weight)
            states += children
        else:
            assert isinstance(op, _Mask) and empty.left is not None
            shape = empty.left.shape[1:]
            kind = _mask_kind(op.masks, shape)
            seg = _segment(ops, t, len(shape) - 1) if len(shape) > 1 else None
            lam = op.masks.lam
            if kind == "element":
                children = [_element_child(st, lam, seg, st.subset + (op.index,)) for st in states]
            elif kind == "channel":
                children = [_channel_child(st, lam, st.subset + (op.index,)) for st in states]
            else:
                assert seg is not None and isinstance(op.masks, DropBlock)
                mean, lags = _dropblock_moments(op.masks, shape[1:])
                reach = op.masks.block_size - 1
                children = [
                    _block_child(st, lags, seg, reach, st.subset + (op.index,)) for st in states
                ]
                for st in states:
                    _scale_step(st, mean)
            states += children
    assert empty.left is not None
    g = empty.left.reshape(n, -1)
    f, y = clean.reshape(n, -1), Y.reshape(n, -1)
    mean_shift = float(np.mean(np.sum((g - y) ** 2, axis=1) - np.sum((f - y) ** 2, axis=1)))
    traces = {st.subset: st.trace() for st in states if st.subset}
    subsets = _subset_order(traces)
    values = np.array([traces[s] for s in subsets])
    random_layers = tuple(op.index for op in ops if isinstance(op, (_Mask, _Connect)))
    return PenaltyTerms(
        total=mean_shift + float(np.sum(values)),
        mean_shift=mean_shift,
        layers=random_layers,
        subsets=tuple(subsets),
        values=values,
    )


def network_dropout_penalty(
    layers: Sequence[object], X: ArrayLike, Y: ArrayLike | None = None
) -> PenaltyTerms:
    r"""Exact dropout penalty of a :mod:`regtheory.network` layer list, split over its layers.

    :func:`dropout_penalty_terms` of :func:`from_network`: ``layers`` holds ``Conv``,
    ``Linear``, ``ReLU`` and ``Dropout`` of :mod:`regtheory.network`, and
    :class:`DropConnect`; every ReLU must come before the first random layer.

    Parameters
    ----------
    layers : sequence of layers
        The network, first layer first.
    X : array (n, ...)
        Inputs.
    Y : array (n, ...), optional
        Targets; ``None`` means the mask-free output.

    Returns
    -------
    PenaltyTerms
        The total, the mean shift and one term per non-empty subset of random layers.

    Examples
    --------
    Two dropout layers (keep 0.5, λ = 1) around an all-ones layer, on x = (1, 1): each
    alone costs 8, and both together add an interaction of 4.

    >>> import numpy as np
    >>> from regtheory.masks import Bernoulli
    >>> from regtheory.network import Dropout, Linear
    >>> layers = [Dropout(Bernoulli(0.5)), Linear(np.ones((2, 2))),
    ...           Dropout(Bernoulli(0.5)), Linear(np.ones((1, 2)))]
    >>> terms = network_dropout_penalty(layers, np.ones((1, 2)))
    >>> terms.total, terms.own.tolist(), terms.term(0, 2)
    (20.0, [8.0, 8.0], 4.0)
    """
    return dropout_penalty_terms(from_network(layers), X, Y)
