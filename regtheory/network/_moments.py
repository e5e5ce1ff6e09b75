r"""Exact dropout penalties of deep networks by propagating mask moments (THEORY.md §6).

The engine behind the exact ``network.dropout_penalty``. It reads the network as a
:class:`regtheory.layers.Graph`, the one description every path shares, and dispatches
on the node types and on the flags of the node protocol (``linear``, ``reach``,
``adjoint``), so a new linear node passes through without a change here.

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
A :math:`B_i` may also be affine with a per-sample constant: an Add or Concat joining
the masked features with mask-free ones (a skip connection :math:`x + \mathrm{diag}(m)
\,\mathrm{branch}(x)`, stochastic depth); the constant enters only the mean-mask path.
Two inputs that both depend on masks are refused.
Write :math:`m_i = \mu_i + e_i`, :math:`\mu_i = \mathbb E m_i`. Expanding the product
over the subsets T of dropout layers that contribute their fluctuation :math:`e_i`,
every cross term between two different subsets has some :math:`e_i` exactly once and
vanishes, so

.. math:: \mathbb E_r \|f_r(x) - y\|^2
          = \|g(x) - y\|^2 + \sum_{T \ne \emptyset} \operatorname{tr} S_T(x),

:math:`g` the network with every mask replaced by its mean, :math:`S_T` the second
moment of the term of subset T. Hence the exact decomposition returned by
:func:`dropout_penalty_terms`,

.. math:: P = \underbrace{\frac1n\sum_k \big(\|g(x_k) - y_k\|^2
          - \|f(x_k) - y_k\|^2\big)}_{\text{mean shift}}
          + \sum_i \underbrace{\operatorname{tr} \bar S_{\{i\}}}_{\text{layer } i}
          + \sum_{|T| \ge 2} \underbrace{\operatorname{tr} \bar S_T}_{\text{interaction}} ,

bars denoting means over the samples. The mean shift is zero unless some
:math:`\mathbb E m \ne 1` (DropBlock's ideal masks at the border); then the targets
enter. The single-layer terms are the penalties of each layer alone (the others at
their mean mask); the interactions are what the total adds beyond their sum. With one
dropout layer, before the last linear layer U, the only term is the explicit
regularizer :math:`\lambda\sum_i \|u_i\|^2\, \overline{h_i^2}` of Mianjy & Arora [3]
and Arora et al. [4], for any features h (the non-linearities all come before it).

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
* per-sample masks, stochastic depth (Huang et al. 2016): one draw for the whole
  tensor, :math:`\operatorname{Cov}(m) = \lambda\mathbf 1\mathbf 1^\top`, so the child
  is :math:`\lambda S`, the whole parent scaled;
* DropConnect, an independent Bernoulli mask on the weights of a fully connected layer
  (Wan et al. 2013): the layer adds :math:`\lambda\,\mathrm{Diag}((W\circ W)\operatorname{diag} S)`.

No dense (C·H·W)² matrix is formed for conv maps. Element masks need only diagonals,
and :math:`\operatorname{diag}(A\,\mathrm{Diag}(s)A^\top) = (A\circ A)s = \sum_q s_q (A e_q)^2`:
the impulse responses :math:`A e_q` of a composite of convolutions are local (radius R,
the sum of the kernel radii), so impulses :math:`\sqrt{s_q}e_q` spaced at least 2R + 1
apart (one *colour* class) have disjoint responses, and one pass of A over their sum
gives all their squares at once. A state born at a mask is therefore a batch of
:math:`C\prod_a P_a` coloured probes (:math:`P_a \ge 2R_a + 1` per spatial axis, a
divisor of the axis for circular padding), streamed in chunks through the remaining
convolutions. DropBlock's banded :math:`X = S\circ\operatorname{Cov}(m)` takes two
probes per class G, :math:`1_G` and :math:`\sum_{q\in G} X[q, :]`, and widens the
spacing by the band; a channel mask cuts every probe of its parent to each channel
(C times the probes). At a fully connected layer such a state is pulled back exactly:
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
[7] G. Huang, Y. Sun, Z. Liu, D. Sedra, K. Q. Weinberger, Deep Networks with
    Stochastic Depth, ECCV 2016.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from .._dropblock import dropblock_moments
from .._references import Cited
from .._validation import InvalidParameterError, check_array
from ..conv import conv2d
from ..layers import (
    Add,
    Concat,
    Conv,
    DropConnect,
    Dropout,
    Flatten,
    Graph,
    Linear,
    Multiply,
    Node,
    ReLU,
)
from ..masks import Bernoulli, Channel, DropBlock, Gaussian, MaskDistribution, PerSample

__all__ = [
    "PenaltyTerms",
    "dropout_penalty_terms",
    "exact_refusal",
    "freeze_gates",
]


# ----------------------------------------------------------------------------- nodes


def _streamed(op: _Op) -> bool:
    """A linear node the conv phase pushes probes through (with its ``adjoint``)."""
    if isinstance(op, Conv):
        return op.same_size
    return op.linear and not isinstance(op, (Linear, DropConnect, Flatten)) and op.reach == 0


def _ends_phase(ops: Sequence[_Op], t: int) -> bool:
    """Whether node t ends the conv phase.

    It does if it is a Linear or DropConnect, or a linear node the phase does not stream
    (pooling, a strided convolution, a Reshape), which is then read through its matrix. A
    Flatten right before a Linear (or at the end) changes nothing.
    """
    op = ops[t]
    if isinstance(op, (Linear, DropConnect)):
        return True
    if isinstance(op, Flatten):
        nxt = ops[t + 1] if t + 1 < len(ops) else None
        return not (nxt is None or isinstance(nxt, (Linear, DropConnect)))
    return op.linear and not _streamed(op)


def _matrix(op: _Op, shape: tuple[int, ...]) -> np.ndarray:
    """The matrix (d_out, d_in) of a linear node's ``apply`` on inputs of ``shape``.

    It is read from the responses to the unit vectors, in chunks of fixed memory.
    """
    d = int(np.prod(shape))
    step = max(1, _CHUNK_ENTRIES // d)
    columns = []
    for a in range(0, d, step):
        eye = np.zeros((min(step, d - a), d))
        eye[np.arange(len(eye)), a + np.arange(len(eye))] = 1.0
        columns.append(op.apply(eye.reshape(len(eye), *shape)).reshape(len(eye), -1))
    return np.concatenate(columns).T


@dataclass(frozen=True, eq=False)
class _Join:
    """An Add or Concat after the first mask whose other inputs are mask-free.

    ``z -> place(z) + constant``: ``place`` puts the mask-dependent input z at channels
    ``offset, offset + 1, ...`` of the output (Add: the whole output), and ``constant``
    (n, *out) holds the mask-free inputs of every sample (their sum for an Add, their
    channels beside zeros for a Concat). Linear in z, so the masks' moments pass it as
    any linear node; only the mean-mask path (the samples) gets the constant. It follows
    the node protocol of :mod:`regtheory.layers` (a linear node of reach 0) without being
    a layer type: it holds data, and lives only inside one exact computation.
    """

    arity: ClassVar[int] = 1
    linear: ClassVar[bool] = True
    elementwise: ClassVar[bool] = False
    random: ClassVar[bool] = False

    label: str
    offset: int
    channels: int
    constant: np.ndarray

    @property
    def name(self) -> str:
        return self.label

    @property
    def reach(self) -> int:
        return 0

    def apply(self, *zs: np.ndarray) -> np.ndarray:
        z = zs[0]
        if self.channels == self.constant.shape[1] and self.offset == 0:
            return z
        out = np.zeros((len(z), *self.constant.shape[1:]))
        out[:, self.offset : self.offset + self.channels] = z
        return out

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        return self.shifted(zs[0], slice(None))

    def shifted(self, z: np.ndarray, samples: slice) -> np.ndarray:
        """``place(z) + constant`` for the samples ``samples`` of the data."""
        return self.apply(z) + self.constant[samples]

    def adjoint(self, z: np.ndarray) -> np.ndarray:
        return z[:, self.offset : self.offset + self.channels]


_Op = Node | _Join  # what the propagation walks: the graph's nodes, Add/Concat as joins


def freeze_gates(graph: Graph, gates: Sequence[np.ndarray]) -> Graph:
    """The gate-frozen network, linear after the first random node.

    Every non-linearity after the first random node is replaced, in order, by the fixed
    multiplier of ``gates`` (one array per such non-linearity, the shape of its features
    for a single sample).
    """
    first = graph.random_positions[0]
    later = [
        t for t in range(first + 1, len(graph)) if graph[t].elementwise and not graph[t].linear
    ]
    if len(later) != len(gates):
        raise InvalidParameterError(f"{len(later)} non-linearities to freeze, got {len(gates)}")
    frozen = list(graph)
    for t, gate in zip(later, gates):
        frozen[t] = Multiply(np.asarray(gate, dtype=float))
    return Graph(tuple(frozen), inputs=dict(enumerate(graph.inputs)))


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True)
class PenaltyTerms(Cited):
    r"""The exact dropout penalty of a network and its split over the dropout layers.

    .. math:: P = \text{mean\_shift} + \sum_{T} \text{values}[T],

    T running over the non-empty subsets of the dropout layers (module docstring).

    Attributes
    ----------
    value : float
        :math:`P = \mathbb E_r L(r) - L(\mathbf 1)` (``total`` is its deprecated name).
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

    value: float
    mean_shift: float
    layers: tuple[int, ...]
    subsets: tuple[tuple[int, ...], ...]
    values: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=float)
        values.setflags(write=False)
        object.__setattr__(self, "values", values)

    @property
    def total(self) -> float:
        """Deprecated name of ``value``."""
        warnings.warn(
            "PenaltyTerms.total is deprecated; use PenaltyTerms.value",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.value

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


# ----------------------------------------------------------------------------- probes

# float64 entries of one chunk of probes: the conv phase streams every state through the
# network in chunks of this size, so its memory does not grow with the number of probes
_CHUNK_ENTRIES = 1 << 21


def _dot(left: np.ndarray, right: np.ndarray | None) -> np.ndarray:
    """Σ_r left_r ∘ right_r (right = left when None): the diagonal of Σ_r a_r b_rᵀ."""
    return np.einsum("r...,r...->...", left, left if right is None else right)


def _lag_slices(
    shape: tuple[int, ...], lag: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices (q, q + lag) over the trailing spatial axes of ``shape``.

    They cover every q with q + lag inside (the leading axes whole).
    """
    dst: list[slice] = [slice(None)] * (len(shape) - len(lag))
    src = list(dst)
    for n, d in zip(shape[len(shape) - len(lag) :], lag):
        dst.append(slice(max(0, -d), min(n, n - d)))
        src.append(slice(max(0, d), min(n, n + d)))
    return tuple(dst), tuple(src)


def _shift(z: np.ndarray, lag: Sequence[int]) -> np.ndarray:
    """out[..., q] = z[..., q + lag] over the trailing spatial axes, zero outside."""
    out = np.zeros_like(z)
    dst, src = _lag_slices(z.shape, lag)
    out[dst] = z[src]
    return out


def _band_dot(left: np.ndarray, right: np.ndarray, lag: Sequence[int]) -> np.ndarray:
    """The band of Σ_r a_r b_rᵀ at one lag, without shifted copies.

    That is Σ_r left_r[..., q] right_r[..., q + lag] (zero where q + lag is outside).
    """
    out = np.zeros(left.shape[1:])
    dst, src = _lag_slices(left.shape, lag)
    out[dst[1:]] = np.einsum("r...,r...->...", left[dst], right[src])
    return out


def _period(n: int, need: int, circular: bool) -> int:
    """Spacing of one colour class along an axis of length n, at least ``need``.

    For circular padding it is a divisor of n (the classes wrap around); n means one
    impulse.
    """
    if need >= n:
        return n
    if not circular:
        return need
    return next(p for p in range(need, n + 1) if n % p == 0)


def _class_patterns(spatial: tuple[int, ...], periods: Sequence[int]) -> np.ndarray:
    """Indicators (ΠP, *spatial) of the colour classes: q ≡ o (mod periods), one per o."""
    pattern = np.ones((1,))
    for n, p in zip(spatial, periods):
        axis = (np.arange(n)[None, :] % p == np.arange(p)[:, None]).astype(float)
        pattern = np.einsum("a...,bi->ab...i", pattern, axis)
        pattern = pattern.reshape(-1, *pattern.shape[2:])
    return pattern.reshape(-1, *spatial)


def _colour_rows(values: np.ndarray, pattern: np.ndarray, rows: range) -> np.ndarray:
    """Coloured probes ``rows`` of ``values`` (C, *spatial).

    Probe i is values restricted to channel i // n_classes and to the positions of class
    i % n_classes.
    """
    index = np.arange(rows.start, rows.stop)
    channel, colour = np.divmod(index, len(pattern))
    out = np.zeros((len(index), *values.shape))
    out[np.arange(len(index)), channel] = pattern[colour] * values[channel]
    return out


def _split_conv(z: np.ndarray, op: Conv) -> np.ndarray:
    """The convolution ``op`` of every probe of z (r, C, *spatial) cut to each channel.

    The result is (r·C, C_out, *spatial), probe (r, c) = op(P_c z_r) = w[:, c] ∗ z_r[c].
    """
    per_channel = [
        conv2d(z[:, c : c + 1], op.weight[:, c : c + 1], padding=op.padding)
        for c in range(z.shape[1])
    ]
    out = np.stack(per_channel, axis=1)
    return out.reshape(-1, *out.shape[2:])


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
                "has no exact form; estimate it by Monte Carlo (method='mc')"
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
    if isinstance(masks, PerSample):
        return "sample"
    raise InvalidParameterError(
        f"no exact second moments are known for masks of type {type(masks).__name__}; "
        "estimate the penalty by Monte Carlo (method='mc')"
    )


def _dropblock_moments(
    masks: DropBlock, spatial: tuple[int, ...]
) -> tuple[np.ndarray, list[tuple[tuple[int, ...], np.ndarray]]]:
    """E[m] on the map, and Cov(m_q, m_{q+lag}) for every lag shorter than a block.

    Both come from the exact DropBlock moments (the start rate γ
    from :meth:`regtheory.masks.DropBlock.gamma`).
    """
    b = masks.block_size
    gamma = masks.gamma(spatial)
    two_d = len(spatial) == 2
    spatial2 = spatial if two_d else (1, spatial[0])
    blocks = (b, b) if two_d else (1, b)
    deltas = [np.arange(-(k - 1), k) for k in blocks]
    mean_dev, cov = dropblock_moments(masks.keep, gamma, spatial2, blocks, deltas)
    lags: list[tuple[tuple[int, ...], np.ndarray]] = []
    for x, dh in enumerate(deltas[0]):
        for y, dw in enumerate(deltas[1]):
            lag: tuple[int, ...] = (int(dh), int(dw)) if two_d else (int(dw),)
            lags.append((lag, cov[x, y].reshape(spatial)))
    mean: np.ndarray = (mean_dev + 1.0).reshape(spatial)
    return mean, lags


# ----------------------------------------------------------------------------- conv phase


@dataclass(frozen=True)
class _Segment:
    """What a state born at a mask meets before the next fully connected layer or the output.

    That is the spacing its colour classes need per spatial axis, and the padding.
    """

    need: tuple[int, ...]
    circular: bool


def _segment(ops: Sequence[_Op], start: int, n_spatial: int) -> _Segment:
    # Impulses of a class must keep disjoint responses (radius R each, the kernel radii
    # summed) wherever the state is read: on the diagonal (spacing 2R + 1) by element masks,
    # DropConnect and the trace, on a band of reach b − 1 by a DropBlock mask (2R + b).
    # (Up to the output, band entries further apart than the convolutions after the mask
    # reach never enter, and 2R + 1 over the whole segment would do; before a fully
    # connected layer every entry does, and the test with blocks of 5 needs 2R + b.)
    radius = [0] * n_spatial
    need, circular = [1] * n_spatial, False
    for t in range(start + 1, len(ops)):
        op = ops[t]
        if _ends_phase(ops, t):
            break
        if isinstance(op, Conv):
            radius = [r + k for r, k in zip(radius, op.reach)]
            circular = circular or op.padding == "circular"
        elif isinstance(op, Dropout) and isinstance(op.masks, DropBlock):
            need = [max(s, 2 * r + op.masks.block_size) for s, r in zip(need, radius)]
    need = [max(s, 2 * r + 1) for s, r in zip(need, radius)]
    return _Segment(tuple(need), circular)


def _periods(spatial: tuple[int, ...], seg: _Segment, own_reach: int) -> tuple[int, ...]:
    # A DropBlock state's right probes reach own_reach further: the spacing grows by it.
    return tuple(_period(n, s + own_reach, seg.circular) for n, s in zip(spatial, seg.need))


@dataclass(frozen=True)
class _Pending:
    r"""A coloured state reaching the fully connected layer that ends the conv phase.

    It holds its origin D (``("diag", s)`` or ``("band", {lag: x})``), the linear steps A
    since (convs, ``("scale", mean)``, ``("split",)``) and its weight w, so that it arrives as
    :math:`w\,W A D A^\top W^\top`.
    """

    origin: tuple[str, Any]
    steps: tuple[Any, ...]
    weight: float


def _pullback(pending: _Pending, weight: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    r""":math:`w\,W S W^\top` of a coloured state, exactly.

    Here :math:`S = \sum_g A_g D A_g^\top`, one branch g per channel split, so
    :math:`W S W^\top = \sum_g (W A_g) D (W A_g)^\top`;
    the rows of :math:`W A_g` are the adjoint steps applied to the rows of W.
    """
    d = weight.shape[0]
    g = weight.reshape(1, d, *shape)
    for step in reversed(pending.steps):
        if isinstance(step, Multiply):
            g = g * step.factor
        elif isinstance(step, (Node, _Join)):
            out = step.adjoint(g.reshape(-1, *g.shape[2:]))
            g = out.reshape(g.shape[0], d, *out.shape[1:])
        elif step[0] == "scale":
            g = g * step[1]
        else:  # split: Σ_c P_c S P_c, one branch per channel
            n_groups, C = g.shape[0], g.shape[2]
            split = _channel_split(g.reshape(n_groups * d, *g.shape[2:]))
            g = split.reshape(n_groups, d, C, *g.shape[2:]).swapaxes(1, 2)
            g = g.reshape(n_groups * C, d, *g.shape[3:])
    kind, data = pending.origin
    if kind == "diag":
        flat = g.reshape(g.shape[0], d, -1)
        dense = np.einsum("gdq,q,geq->de", flat, data.ravel(), flat, optimize=True)
    else:
        dense = np.zeros((d, d))
        for lag, x in data.items():
            a = (g * x).reshape(g.shape[0], d, -1)
            b = _shift(g, lag).reshape(g.shape[0], d, -1)
            dense += np.einsum("gdq,geq->de", a, b, optimize=True)
    dense *= pending.weight
    return 0.5 * (dense + dense.T)


def _add(store: dict, key: Any, value: Any) -> None:
    store[key] = store[key] + value if key in store else value


class _ConvPhase:
    r"""Second moments of every subset's term on conv maps.

    They run from the first mask to the first fully connected layer (``boundary``) or the
    output.

    A state is a batch of probes, left and right, :math:`S = w\sum_r a_r b_r^\top`: exact
    (the data, impulses, their channel splits) or coloured, then right on the diagonal
    and on the band its spacing allows, which is all that masks, the trace and DropConnect
    read. Each state is streamed in chunks from its birth to the boundary, leaving what its
    children need: diag S at element masks, the band of S at DropBlock masks (channel
    children are streamed on the spot, from the split probes). States are born mask by
    mask, so a parent's sums are complete before its children start.
    """

    def __init__(self, ops: Sequence[_Op], first: int, boundary: int, h: np.ndarray):
        self.ops, self.boundary = ops, boundary
        self.shapes: dict[int, tuple[int, ...]] = {}  # feature shape at the input of op t
        self.kinds: dict[int, str] = {}
        self.moments: dict[int, tuple[np.ndarray, list]] = {}
        z = h[:1]
        for t in range(first, boundary + 1):
            self.shapes[t] = z.shape[1:]
            op = ops[t] if t < len(ops) else None
            if isinstance(op, (Node, _Join)) and _streamed(op):
                z = op.apply(z)
            elif isinstance(op, Dropout):
                self.kinds[t] = _mask_kind(op.masks, z.shape[1:])
                if self.kinds[t] == "block":
                    assert isinstance(op.masks, DropBlock)
                    self.moments[t] = _dropblock_moments(op.masks, z.shape[2:])
        widest = max(int(np.prod(shape)) for shape in self.shapes.values())
        self.rows = max(1, _CHUNK_ENTRIES // widest)
        # the matrix of the node that ends the phase (a Linear's weight)
        end = ops[boundary] if boundary < len(ops) else None
        self.matrix: np.ndarray | None = None
        if isinstance(end, (Linear, DropConnect)):
            self.matrix = end.weight
        elif end is not None:
            self.matrix = _matrix(end, self.shapes[boundary])
        self.diag: dict[tuple[tuple[int, ...], int], np.ndarray] = {}
        self.band: dict[tuple[tuple[int, ...], int], dict[tuple[int, ...], np.ndarray]] = {}
        self.trace: dict[tuple[int, ...], float] = {}
        self.dense: dict[tuple[int, ...], np.ndarray] = {}
        self.pending: dict[tuple[int, ...], _Pending] = {}
        self.outputs: list[np.ndarray] = []
        self.samples = slice(None)  # the samples of the chunk the empty subset streams

    def stream(
        self,
        subset: tuple[int, ...],
        weight: float,
        left: np.ndarray,
        right: np.ndarray | None,
        exact: bool,
        origin: tuple[str, Any] | None,
        steps: tuple[Any, ...],
        start: int,
    ) -> None:
        """Push one chunk of a state's probes from op ``start`` to the boundary."""
        for t in range(start, self.boundary):
            op = self.ops[t]
            if isinstance(op, Flatten):  # before the Linear that ends the phase: no-op
                continue
            if _streamed(op):
                if subset != ():
                    left = op.apply(left)
                elif isinstance(op, _Join):  # the skip inputs of this chunk's samples
                    left = op.shifted(left, self.samples)
                else:
                    left = op.forward(left)
                right = None if right is None else op.apply(right)
                steps = (*steps, op)
                continue
            assert isinstance(op, Dropout)
            kind = self.kinds[t]
            if kind == "element":
                _add(self.diag, (subset, t), weight * _dot(left, right))
            elif kind == "channel":
                # S ∘ Cov(m) = λ Σ_c P_c S P_c: the child holds every probe cut to each
                # channel. A convolution right after costs, on a probe cut to channel c, only
                # its slice w[:, c]: it is applied here, once per channel, to the uncut probes.
                step = max(1, self.rows // left.shape[1])
                after = self.ops[t + 1] if t + 1 < self.boundary else None
                for a in range(0, len(left), step):
                    cut = [left[a : a + step], None if right is None else right[a : a + step]]
                    if isinstance(after, Conv):
                        cut = [None if z is None else _split_conv(z, after) for z in cut]
                        done: tuple[Any, ...] = (("split",), after)
                    else:
                        cut = [None if z is None else _channel_split(z) for z in cut]
                        done = (("split",),)
                    assert cut[0] is not None
                    self.stream(
                        (*subset, t),
                        op.masks.lam * weight,
                        cut[0],
                        cut[1],
                        exact,
                        origin,
                        (*steps, *done),
                        t + len(done),
                    )
            elif kind == "sample":
                # S ∘ λ11ᵀ = λ S: the child is the parent's own probes, weighted by λ
                self.stream(
                    (*subset, t), op.masks.lam * weight, left, right, exact, origin, steps, t + 1
                )
            else:
                mean, lags = self.moments[t]
                bands = self.band.setdefault((subset, t), {})
                other = left if right is None else right
                for lag, _ in lags:
                    _add(bands, lag, weight * _band_dot(left, other, lag))
                left = left * mean
                right = None if right is None else right * mean
                steps = (*steps, ("scale", mean))
        self._finish(subset, weight, left, right, exact, origin, steps)

    def _finish(self, subset, weight, left, right, exact, origin, steps) -> None:
        if subset == ():
            self.outputs.append(left)
        if self.boundary == len(self.ops):
            _add(self.trace, subset, weight * float(np.sum(_dot(left, right))))
            return
        op, matrix = self.ops[self.boundary], self.matrix
        assert matrix is not None
        if isinstance(op, DropConnect):  # its child needs diag S at its input
            _add(self.diag, (subset, self.boundary), weight * _dot(left, right).ravel())
        if subset == ():
            return
        if exact:
            a = left.reshape(len(left), -1) @ matrix.T
            b = a if right is None else right.reshape(len(right), -1) @ matrix.T
            _add(self.dense, subset, weight * a.T @ b)
        else:
            assert origin is not None
            self.pending.setdefault(subset, _Pending(origin, steps, weight))

    def births(self, t: int) -> None:
        """Stream the children born at the element or DropBlock mask at op ``t``."""
        op = self.ops[t]
        assert isinstance(op, Dropout)
        kind = self.kinds[t]
        if kind in ("channel", "sample"):
            return  # born while their parents streamed
        parents: dict[tuple[tuple[int, ...], int], Any] = (
            self.diag if kind == "element" else self.band
        )
        shape = self.shapes[t]
        own_reach = op.masks.block_size - 1 if isinstance(op.masks, DropBlock) else 0
        periods = _periods(shape[1:], _segment(self.ops, t, len(shape) - 1), own_reach)
        pattern = _class_patterns(shape[1:], periods)
        exact = periods == shape[1:]
        n_rows = shape[0] * len(pattern)
        for (subset, at), moment in list(parents.items()):
            if at != t:
                continue
            child = (*subset, t)
            if kind == "element":
                # diag(A Diag(s) Aᵀ) = Σ_q s_q (A e_q)²: probes √s on each colour class
                s = np.maximum(op.masks.lam * moment, 0.0)  # >= 0 up to rounding
                root = np.sqrt(s)
                for a in range(0, n_rows, self.rows):
                    rows = range(a, min(n_rows, a + self.rows))
                    left = _colour_rows(root, pattern, rows)
                    self.stream(child, 1.0, left, None, exact, ("diag", s), (), t + 1)
                continue
            # DropBlock: X = S ∘ Cov(m), banded within channels. Class G of channel c:
            # left = 1_G, right = Σ_{q∈G} X[q, :], so Σ_G left rightᵀ = X up to cross terms
            # between impulses of G, which the spacing (widened by the band) keeps apart.
            band = {lag: moment[lag] * cov for lag, cov in self.moments[t][1]}
            band = {lag: x for lag, x in band.items() if np.any(x)}
            ones = np.ones(shape)
            for a in range(0, n_rows, self.rows):
                rows = range(a, min(n_rows, a + self.rows))
                right = np.zeros((len(rows), *shape))
                for lag, x in band.items():
                    right += _shift(_colour_rows(x, pattern, rows), tuple(-d for d in lag))
                left = _colour_rows(ones, pattern, rows)
                self.stream(child, 1.0, left, right, exact, ("band", band), (), t + 1)


# ----------------------------------------------------------------------------- FC phase


@dataclass
class _State:
    """A subset's second moment on vectors.

    It is ``dense`` (d, d), or for the empty subset the samples themselves (``samples``
    (n, d), S = w Σ_k z_k z_kᵀ).
    """

    subset: tuple[int, ...]
    weight: float = 1.0
    samples: np.ndarray | None = None
    dense: np.ndarray | None = None

    def diag(self) -> np.ndarray:
        if self.dense is not None:
            return np.diagonal(self.dense).copy()
        assert self.samples is not None
        return self.weight * _dot(self.samples.reshape(len(self.samples), -1), None)

    def trace(self) -> float:
        return float(np.sum(self.diag()))

    def full(self) -> np.ndarray:
        """S as a dense matrix."""
        if self.dense is not None:
            return self.dense
        assert self.samples is not None
        flat = self.samples.reshape(len(self.samples), -1)
        return self.weight * flat.T @ flat

    def scale(self, gate: np.ndarray) -> None:
        """S ← S ∘ g gᵀ (a fixed diagonal multiplier)."""
        g = gate.ravel()
        if self.dense is not None:
            self.dense = g[:, None] * self.dense * g[None, :]
        else:
            assert self.samples is not None
            self.samples = self.samples.reshape(len(self.samples), -1) * g

    def linear(self, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
        """S ← W S Wᵀ; the samples of the empty subset (the mean-mask path) also get + b."""
        if self.dense is not None:
            self.dense = weight @ self.dense @ weight.T
        else:
            assert self.samples is not None
            self.samples = self.samples.reshape(len(self.samples), -1) @ weight.T
            if bias is not None:
                self.samples = self.samples + bias

    def through(self, op: _Op, shape: tuple[int, ...]) -> None:
        """S ← B S Bᵀ for a linear node B on inputs of ``shape``.

        B's ``apply`` acts on the rows of S, twice; the samples of the empty subset go
        through its ``forward``.
        """
        if self.dense is not None:
            half = op.apply(self.dense.reshape(-1, *shape)).reshape(len(self.dense), -1)
            self.dense = op.apply(half.T.reshape(-1, *shape)).reshape(half.shape[1], -1)
        else:
            assert self.samples is not None
            out = op.forward(self.samples.reshape(len(self.samples), *shape))
            self.samples = out.reshape(len(out), -1)


def _fc_phase(
    ops: Sequence[_Op], start: int, states: list[_State], shapes: tuple[tuple[int, ...], ...]
) -> list[_State]:
    """Walk ops[start:] on vector features.

    S ← W S Wᵀ, masks λ Diag(diag S) (elementwise, Gaussian and channel masks alike on
    vectors) or λ S (per-sample masks), DropConnect λ Diag((W∘W) diag S); any other
    linear node through its ``apply`` (``shapes[t]``: the input shape of node t).
    """
    for t in range(start, len(ops)):
        op = ops[t]
        if isinstance(op, Linear):
            for st in states:
                st.linear(op.weight, op.bias)
        elif isinstance(op, Multiply):
            for st in states:
                st.scale(np.broadcast_to(op.factor, shapes[t]))
        elif isinstance(op, DropConnect):
            w2 = op.weight * op.weight
            children = [
                _State((*st.subset, t), dense=np.diag(op.lam * (w2 @ st.diag()))) for st in states
            ]
            for st in states:
                st.linear(op.weight)
            states += children
        elif isinstance(op, Dropout):
            kind = _mask_kind(op.masks, shapes[t])  # DropBlock: refused by _check_masks
            if kind == "sample":  # S ∘ λ11ᵀ = λ S
                children = [
                    _State((*st.subset, t), dense=op.masks.lam * st.full()) for st in states
                ]
            elif kind == "channel":  # S ∘ Cov(m) = λ Σ_c P_c S P_c on a dense S
                channel = np.repeat(np.arange(shapes[t][0]), int(np.prod(shapes[t][1:])))
                same = channel[:, None] == channel[None, :]
                children = [
                    _State((*st.subset, t), dense=op.masks.lam * st.full() * same) for st in states
                ]
            else:
                children = [
                    _State((*st.subset, t), dense=np.diag(op.masks.lam * st.diag()))
                    for st in states
                ]
            states += children
        else:  # another linear node (checked by _check_exact)
            for st in states:
                st.through(op, shapes[t])
    return states


def _refuse(graph: Graph, t: int, first: int, why: str) -> InvalidParameterError:
    return InvalidParameterError(
        f"the exact penalty cannot pass `layers[{t}]` ({graph[t].name}) after the first "
        f"random layer (position {first}): {why}; estimate it by Monte Carlo "
        "(method='mc')"
    )


@dataclass(frozen=True)
class _Path:
    """The nodes that depend on a mask and reach the output: a chain from the first mask.

    ``shapes[i]`` is the shape of the mask-dependent input of node ``positions[i]``,
    ``sources[i]`` its position (-1: the network's input).
    """

    positions: tuple[int, ...]
    sources: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]


def _reaches_output(graph: Graph) -> list[bool]:
    """Whether the output of each node is read, through some path, by the last node."""
    live = [False] * len(graph)
    live[-1] = True
    for t in range(len(graph) - 1, -1, -1):
        for s in graph.inputs[t]:
            if live[t] and s >= 0:
                live[s] = True
    return live


def _check_path_node(graph: Graph, t: int, first: int, from_masks: list[int], path) -> None:
    """Node t, which depends on a mask, continues the chain ``path`` and is linear."""
    op = graph[t]
    if from_masks[0] != path[-1]:  # (a fork reaching the output rejoins: refused before)
        fork = path[path.index(from_masks[0]) + 1]
        raise _refuse(
            graph,
            t,
            first,
            f"it reads `layers[{from_masks[0]}]`, which `layers[{fork}]` also reads: the masks "
            "reach the output along two paths",
        )
    if op.arity != 1 and not isinstance(op, (Add, Concat)):
        raise _refuse(graph, t, first, "of the nodes with several inputs it takes Add, Concat")
    if op.elementwise and not op.linear:
        kind = "DropConnect" if isinstance(graph[first], DropConnect) else "dropout"
        after = (
            "a ReLU"
            if isinstance(op, ReLU)
            else f"the elementwise layer {getattr(op, 'name', type(op).__name__)!r}"
        )
        raise InvalidParameterError(
            f"the {kind} layer at position {first} feeds a non-linearity ({after} after "
            "it): the output is then not multilinear in the masks and the penalty has no "
            "exact form; estimate it by Monte Carlo (method='mc')"
        )
    if not (op.linear or op.random):
        raise _refuse(graph, t, first, "after it the network must be linear in the masks")


def _mask_path(graph: Graph, input_shape: tuple[int, ...]) -> _Path:
    """The chain of mask-dependent nodes, once it is checked.

    After the first random node every node that depends on a mask (and reaches the
    output) must be linear and read the one before it on the chain; an Add or Concat
    may also read mask-free inputs (from before the first mask, or computed from those
    only, as a skip connection), which shift or sit beside the masked features.
    """
    if not graph.random_positions:
        raise InvalidParameterError(
            "the network has no Dropout layer: the penalty would be zero by definition"
        )
    outs = graph.shapes(input_shape)
    live = _reaches_output(graph)
    random = [t for t in graph.random_positions if live[t]]
    if not random:
        raise InvalidParameterError(
            "no Dropout or DropConnect layer of the network reaches its output: the penalty "
            "would be zero by definition"
        )
    first = random[0]
    masked = [False] * len(graph)
    for t in range(len(graph)):
        masked[t] = graph[t].random or any(s >= 0 and masked[s] for s in graph.inputs[t])
    for t in range(first + 1, len(graph)):
        from_masks = [s for s in graph.inputs[t] if s >= 0 and masked[s]]
        if live[t] and len(from_masks) > 1:
            named = " and ".join(f"`layers[{s}]`" for s in from_masks)
            raise _refuse(
                graph,
                t,
                first,
                f"its inputs {named} both depend on masks (the exact moments follow one "
                "path of masks to the output; a mask-free input, as a skip connection, may "
                "join it)",
            )
    source = graph.inputs[first][0]
    path, sources = [first], [source]
    shapes = [tuple(input_shape) if source < 0 else outs[source]]
    for t in range(first + 1, len(graph)):
        if not (masked[t] and live[t]):
            continue
        from_masks = [s for s in graph.inputs[t] if s >= 0 and masked[s]]
        _check_path_node(graph, t, first, from_masks, path)
        path.append(t)
        sources.append(from_masks[0])
        shapes.append(outs[from_masks[0]])
    found = _Path(tuple(path), tuple(sources), tuple(shapes))
    _check_masks(_path_nodes(graph, found, None), found)
    return found


def _path_nodes(
    graph: Graph, path: _Path, saved: dict[int, np.ndarray] | None, n: int = 0
) -> list[_Op]:
    """The nodes of ``path``, each Add or Concat as the :class:`_Join` of its masked input.

    ``saved`` holds the mask-free outputs (n, ...) of the nodes the joins read besides,
    by position; without it the joins hold no sample (their structure only).
    """
    nodes: list[_Op] = []
    for t, source, shape in zip(path.positions, path.sources, path.shapes):
        op = graph[t]
        if not isinstance(op, (Add, Concat)):
            nodes.append(op)
            continue
        parts = [
            np.zeros((n, *shape)) if s == source or saved is None else saved[s]
            for s in graph.inputs[t]
        ]
        if isinstance(op, Add):
            constant, offset = np.sum(parts, axis=0), 0
        else:
            offset = sum(p.shape[1] for p in parts[: graph.inputs[t].index(source)])
            constant = np.concatenate(parts, axis=1)
        nodes.append(_Join(op.name, offset, shape[0], constant))
    return nodes


def _check_masks(ops: Sequence[_Op], path: _Path) -> None:
    """Every mask has known moments where it sits (the errors the propagation would meet)."""
    dense = len(path.shapes[0]) == 1  # the features are read through a dense moment
    for i, op in enumerate(ops):
        if not dense and _ends_phase(ops, i):
            dense = True
        if not isinstance(op, Dropout):
            continue
        _mask_kind(op.masks, path.shapes[i])
        if isinstance(op.masks, DropBlock) and dense:
            raise InvalidParameterError(
                f"the exact penalty cannot pass `layers[{path.positions[i]}]` (Dropout with "
                "DropBlock masks) once the maps are read through a dense second moment (after "
                "pooling, a strided convolution or a fully connected layer); estimate it by "
                "Monte Carlo (method='mc')"
            )


def exact_refusal(graph: Graph, input_shape: tuple[int, ...]) -> str | None:
    """Why the exact penalty cannot take ``graph`` on samples of ``input_shape``.

    That is the message of the error it would raise, or None when it can.
    """
    try:
        _mask_path(graph, tuple(input_shape))
    except InvalidParameterError as exc:
        return str(exc)
    return None


def _mask_free(graph: Graph, X: np.ndarray, path: _Path) -> dict[int, np.ndarray]:
    """Outputs of the mask-free network (every mask at one, DropConnect at its weight).

    Those of the node feeding the first mask, of the inputs the joins of ``path`` read
    besides their masked one, and of the last node (the clean output), by position
    (-1: the input ``X``).
    """
    wanted = {path.sources[0], len(graph) - 1}
    for t in path.positions:
        wanted.update(graph.inputs[t])
    saved: dict[int, np.ndarray] = {-1: X} if -1 in wanted else {}

    def step(t: int, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        out = node.forward(*ins)
        if t in wanted:
            saved[t] = out
        return out

    graph.evaluate(X, step=step)
    return saved


def _subset_order(subsets: Iterable[tuple[int, ...]]) -> list[tuple[int, ...]]:
    return sorted(subsets, key=lambda t: (len(t), t))


def _conv_traces(
    ops: Sequence[_Op], first: int, h: np.ndarray, shapes: tuple[tuple[int, ...], ...]
) -> tuple[np.ndarray, dict[tuple[int, ...], float]]:
    """Mean-mask output and subset traces when the features at the first mask are maps."""
    n = h.shape[0]
    boundary = next((t for t in range(first, len(ops)) if _ends_phase(ops, t)), len(ops))
    phase = _ConvPhase(ops, first, boundary, h)
    for a in range(0, n, phase.rows):
        phase.samples = slice(a, a + phase.rows)
        phase.stream((), 1.0 / n, h[phase.samples], None, True, None, (), first)
    for t in range(first, boundary):
        if t in phase.kinds:
            phase.births(t)
    g = np.concatenate(phase.outputs)
    traces = {t: v for t, v in phase.trace.items() if t}
    if boundary < len(ops):
        op, matrix = ops[boundary], phase.matrix
        assert matrix is not None
        states = [_State((), 1.0 / n, samples=op.forward(g).reshape(n, -1))]
        states += [_State(t, dense=0.5 * (d + d.T)) for t, d in phase.dense.items()]
        states += [
            _State(t, dense=_pullback(p, matrix, g.shape[1:])) for t, p in phase.pending.items()
        ]
        if isinstance(op, DropConnect):
            w2 = op.weight * op.weight
            states += [
                _State((*t, boundary), dense=np.diag(op.lam * (w2 @ d)))
                for (t, at), d in phase.diag.items()
                if at == boundary
            ]
        states = _fc_phase(ops, boundary + 1, states, shapes)
        traces = {st.subset: st.trace() for st in states if st.subset}
        assert states[0].samples is not None
        g = states[0].samples
    return g, traces


def _vector_traces(
    ops: Sequence[_Op], first: int, h: np.ndarray, shapes: tuple[tuple[int, ...], ...]
) -> tuple[np.ndarray, dict[tuple[int, ...], float]]:
    """Mean-mask output and subset traces when the features at the first mask are vectors."""
    n = h.shape[0]
    states = _fc_phase(ops, first, [_State((), 1.0 / n, samples=h.reshape(n, -1))], shapes)
    traces = {st.subset: st.trace() for st in states if st.subset}
    assert states[0].samples is not None
    g = states[0].samples
    return g, traces


def dropout_penalty_terms(graph: Graph, X: ArrayLike, Y: ArrayLike | None = None) -> PenaltyTerms:
    r"""Exact dropout penalty of a network on data, split over its dropout layers.

    .. math:: P = \frac1n\sum_k \Big(\mathbb E_r\|y_k - f_r(x_k)\|^2 - \|y_k - f(x_k)\|^2\Big)
              = \text{mean shift} + \sum_{T\neq\emptyset} \operatorname{tr}\bar S_T ,

    by exact propagation of the masks' first and second moments (module docstring),
    for squared loss and independent masks, one per sample and dropout layer.

    Conditions: every non-linearity comes before the first dropout (or DropConnect)
    layer, else ``InvalidParameterError`` (use ``method="mc"``); masks
    are :class:`~regtheory.masks.Bernoulli`, :class:`~regtheory.masks.Gaussian`,
    :class:`~regtheory.masks.Channel`, :class:`~regtheory.masks.DropBlock` (ideal
    normaliser), :class:`~regtheory.masks.PerSample` or DropConnect on a fully
    connected layer.

    Parameters
    ----------
    graph : regtheory.layers.Graph
        The network; after its first random node a chain of linear nodes (Conv of
        same size, Multiply, Flatten and linear elementwise nodes on feature maps up to
        the first Linear or DropConnect; any linear node on vectors), where an Add or
        Concat may also read mask-free inputs (a residual skip).
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
    Conv maps: the n samples once, and per subset of dropout layers one batch of
    :math:`C\prod_a P_a` coloured probes (:math:`P_a = 2R_a + 1`, R the receptive radius
    of the convolutions left before the next fully connected layer, widened by DropBlock's
    band), streamed once through those convolutions in chunks of fixed memory; DropBlock
    doubles the batch, a channel mask multiplies its parents' batches by C. At the first
    fully connected layer (d outputs) a coloured batch is pulled back by d adjoint passes.
    Nothing of size (C·H·W)² is formed.
    """
    X = check_array(X, "X")
    n = X.shape[0]
    path = _mask_path(graph, X.shape[1:])
    saved = _mask_free(graph, X, path)
    ops = _path_nodes(graph, path, saved, n)
    h, clean = saved[path.sources[0]], saved[len(graph) - 1]
    if Y is None:
        Y = clean
    else:
        Y = check_array(Y, "Y")
        if Y.shape != clean.shape:
            raise InvalidParameterError(
                f"`Y` must have the network's output shape {clean.shape}, got {Y.shape}"
            )
    if h.ndim > 2:  # conv maps: stream to the first fully connected layer
        g, traces = _conv_traces(ops, 0, h, path.shapes)
    else:
        g, traces = _vector_traces(ops, 0, h, path.shapes)
    # the subsets name the random nodes by their position in the graph
    traces = {tuple(path.positions[i] for i in t): v for t, v in traces.items()}
    g = g.reshape(n, -1)
    f, y = clean.reshape(n, -1), Y.reshape(n, -1)
    mean_shift = float(np.mean(np.sum((g - y) ** 2, axis=1) - np.sum((f - y) ** 2, axis=1)))
    subsets = _subset_order(traces)
    values = np.array([traces[t] for t in subsets])
    return PenaltyTerms(
        value=mean_shift + float(np.sum(values)),
        mean_shift=mean_shift,
        layers=tuple(t for t in path.positions if graph[t].random),
        subsets=tuple(subsets),
        values=values,
    )
