r"""What dropout does to a given, trained network: per-unit costs and starved kernel taps.

A trained network described by :mod:`regtheory.layers` (for instance a PyTorch model
converted by ``regtheory.pytorch.from_torch``) is read at the data it was trained on, and
every dropout layer is described by the part of the theory that applies to it.

**Linear–Dropout–Linear blocks** (THEORY §1). A dropout layer with mask variance λ
between a linear layer V (possibly followed by elementwise non-linearities) and a
linear layer U costs, when the layers after U are removed,

.. math:: R = \lambda \sum_{i=1}^{w} \|u_i\|^2\, \overline{h_i^2}
            = \lambda \sum_{i=1}^{w} p_i^2 ,\qquad
          p_i = \|u_i\|\, \big(\overline{h_i^2}\big)^{1/2} ,

where :math:`h` are the features the dropout multiplies, the bar is the mean over the
data, and the other dropout layers sit at their mean mask (Arora et al. [2]). When
the block is linear (:math:`h = Vx`) the smallest cost of any width-w factorization
of the same map :math:`M = UV` is the induced regularizer (2),
:math:`\frac{\lambda}{w}\|M C^{1/2}\|_*^2` with :math:`C = \overline{x x^\top}`, and
the *equalization gap* :math:`R - \Theta(M) \ge 0` says how far training is from the
equalized factorizations that attain it (Mianjy, Arora & Vidal [1]).

**Kernel taps starved of gradient** (THEORY §2). A convolution reading a dropout's
output gives a tap no gradient in a step exactly when every hidden unit it multiplies
is dropped; at the map size the network sees, that probability is
:math:`(1-\theta)^{n_{ab}}` under elementwise dropout and :math:`1-\theta` under
channel dropout, against :math:`1-\theta` for a weight of a fully connected layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from . import conv, fc
from ._grammar import RngLike, as_rng, transition_to_rng
from ._references import Cited, cites
from ._validation import InvalidParameterError, check_array, check_int
from .layers import Conv, Dropout, Graph, Linear, Node, as_graph
from .masks import Bernoulli, Channel, DropBlock, Gaussian, MaskDistribution

__all__ = ["ConvTaps", "Diagnosis", "LinearBlock", "diagnose"]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


def _read_only(a: ArrayLike) -> np.ndarray:
    arr = np.array(a)
    arr.setflags(write=False)
    return arr


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


@dataclass(frozen=True)
class LinearBlock:
    r"""A Linear–Dropout–Linear block of a network and what its dropout costs.

    Attributes
    ----------
    dropout : int
        Position of the Dropout layer in ``layers``.
    first, second : int
        Positions of the linear layers V (before the dropout) and U (right after it).
    masks : MaskDistribution
        The dropout's masks (Bernoulli, Gaussian or Channel; on a vector, channel
        dropout is elementwise).
    lam : float
        λ = (1 − keep)/keep, the variance of one mask entry.
    unit_products : ndarray (w,), read-only
        :math:`p_i = \|u_i\|\,(\overline{h_i^2})^{1/2}` per hidden unit.
    penalty : float
        :math:`\lambda \sum_i p_i^2`.
    linear : bool
        Nothing between V and the dropout and no bias on V, so :math:`h = Vx`.
    induced : float or None
        The induced regularizer (2) of :math:`M = UV` (linear blocks only).
    gap : float or None
        ``penalty - induced`` (≥ 0 up to rounding, zero iff the block is equalized).
    relative_gap : float or None
        ``gap / penalty`` (0 when the penalty is 0).
    spread : float
        :math:`\max_i p_i / \min_i p_i` (1 when equalized, ``inf`` with a dead unit).
    """

    dropout: int
    first: int
    second: int
    masks: MaskDistribution
    lam: float
    unit_products: np.ndarray
    penalty: float
    linear: bool
    induced: float | None
    gap: float | None
    relative_gap: float | None
    spread: float

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-serialisable values (``None`` for an infinite spread).

        Returns
        -------
        dict
        """
        return {
            "dropout": self.dropout,
            "first": self.first,
            "second": self.second,
            "masks": repr(self.masks),
            "lam": self.lam,
            "unit_products": self.unit_products.tolist(),
            "penalty": self.penalty,
            "linear": self.linear,
            "induced": self.induced,
            "gap": self.gap,
            "relative_gap": self.relative_gap,
            "spread": _finite_or_none(self.spread),
        }


@dataclass(frozen=True)
class ConvTaps:
    r"""A convolution reading a dropout's output, and how often each tap gets no gradient.

    Attributes
    ----------
    dropout, conv : int
        Positions of the Dropout layer and of the Conv layer in ``layers``.
    masks : MaskDistribution
    image_shape : tuple of int
        Spatial size of the map the dropout masks, (H, W) or (L,).
    kernel_size : tuple of int
        (kh, kw) or (k,).
    padding : str
    through_nonlinearity : bool
        Elementwise non-linearities sit between the dropout and the conv. The
        probabilities are then the mask's: a ReLU zeroes more units, so the true
        no-gradient probability is at least this.
    mode : str
        ``"element"`` (Bernoulli), ``"channel"``, ``"block"`` (DropBlock, Monte Carlo)
        or ``"gaussian"`` (no unit is ever dropped: every probability is 0).
    probability : ndarray, read-only
        Per tap, the probability that no kept hidden unit carries it (kernel shape).
    stderr : ndarray or None, read-only
        Monte Carlo standard error per tap (DropBlock only; ``None`` when exact). A
        tap that no draw starved has estimate and error 0; its probability is then
        below 3/``n_masks`` at 95 % confidence.
    n_masks : int
        Channel maps sampled for the Monte Carlo estimate (0 when exact).
    fc_probability : float
        The same probability for a weight of a fully connected layer after the mask.
    column_counts : ndarray of int, read-only
        Per tap, the number of hidden units (columns of the layer matrix) it multiplies.
    """

    dropout: int
    conv: int
    masks: MaskDistribution
    image_shape: tuple[int, ...]
    kernel_size: tuple[int, ...]
    padding: str
    through_nonlinearity: bool
    mode: str
    probability: np.ndarray
    stderr: np.ndarray | None
    n_masks: int
    fc_probability: float
    column_counts: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-serialisable values.

        Returns
        -------
        dict
        """
        return {
            "dropout": self.dropout,
            "conv": self.conv,
            "masks": repr(self.masks),
            "image_shape": list(self.image_shape),
            "kernel_size": list(self.kernel_size),
            "padding": self.padding,
            "through_nonlinearity": self.through_nonlinearity,
            "mode": self.mode,
            "probability": self.probability.tolist(),
            "stderr": None if self.stderr is None else self.stderr.tolist(),
            "n_masks": self.n_masks,
            "fc_probability": self.fc_probability,
            "column_counts": self.column_counts.tolist(),
        }


@dataclass(frozen=True)
class Diagnosis(Cited):
    """Every dropout layer of a network, read through the theory that applies to it.

    ``str(diagnosis)`` is a compact table; :meth:`to_dict` gives JSON values.

    Attributes
    ----------
    n_samples : int
        Number of data points the features were averaged over.
    blocks : tuple of LinearBlock
    convs : tuple of ConvTaps
    skipped : tuple of (int, str)
        Dropout layers neither kind describes, with the reason.
    """

    n_samples: int
    blocks: tuple[LinearBlock, ...]
    convs: tuple[ConvTaps, ...]
    skipped: tuple[tuple[int, str], ...]

    def to_dict(self) -> dict[str, Any]:
        """The diagnosis as JSON-serialisable values (lists, floats, strings, None).

        Returns
        -------
        dict
        """
        return {
            "n_samples": self.n_samples,
            "blocks": [b.to_dict() for b in self.blocks],
            "convs": [c.to_dict() for c in self.convs],
            "skipped": [{"dropout": j, "reason": why} for j, why in self.skipped],
        }

    def __str__(self) -> str:
        lines = [f"dropout diagnosis on {self.n_samples} samples"]
        if self.blocks:
            lines += ["", "Linear-Dropout-Linear blocks (penalty = lam * sum p_i^2)"]
            lines.append(
                f"{'dropout':>7} {'V->U':>7} {'masks':<20} {'width':>5} {'penalty':>10} "
                f"{'induced':>10} {'gap':>10} {'rel.gap':>8} {'max/min p':>9}"
            )
            for b in self.blocks:
                lines.append(
                    f"{b.dropout:>7} {f'{b.first}->{b.second}':>7} {_label(b.masks):<20} "
                    f"{b.unit_products.size:>5} {b.penalty:>10.4g} {_cell(b.induced, 10)} "
                    f"{_cell(b.gap, 10)} {_cell(b.relative_gap, 8, '.1%')} {b.spread:>9.3g}"
                )
        if self.convs:
            lines += ["", "convs reading a dropout (probability that a tap gets no gradient)"]
            lines.append(
                f"{'dropout':>7} {'conv':>4} {'masks':<20} {'map':>9} {'kernel':>7} "
                f"{'mode':>8} {'min tap':>9} {'max tap':>9} {'FC':>6}"
            )
            for c in self.convs:
                shape = "x".join(map(str, c.image_shape))
                kernel = "x".join(map(str, c.kernel_size))
                mode = c.mode + ("*" if c.through_nonlinearity else "")
                lines.append(
                    f"{c.dropout:>7} {c.conv:>4} {_label(c.masks):<20} {shape:>9} {kernel:>7} "
                    f"{mode:>8} {c.probability.min():>9.3g} {c.probability.max():>9.3g} "
                    f"{c.fc_probability:>6.3g}"
                )
            if any(c.through_nonlinearity for c in self.convs):
                lines.append("* through a non-linearity: the mask's probability, a lower bound")
        for j, why in self.skipped:
            lines.append(f"dropout {j}: {why}")
        return "\n".join(lines)


def _label(masks: MaskDistribution) -> str:
    block = f", b={masks.block_size}" if isinstance(masks, DropBlock) else ""
    return f"{type(masks).__name__}({masks.keep:g}{block})"


def _cell(value: float | None, width: int, spec: str = ".4g") -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def _is_nonlinearity(layer: Node) -> bool:
    return layer.elementwise


def _check_layers(layers: Graph | Sequence[Node]) -> Graph:
    graph = as_graph(layers)
    if not graph.is_chain:
        raise InvalidParameterError(
            "`layers` must be a chain (each node reading the one before) to be diagnosed"
        )
    return graph


def _activations(graph: Graph, X: ArrayLike) -> list[np.ndarray]:
    """The mask-free features entering each layer, and the output last."""
    z = check_array(X, "X")
    graph.shapes(z.shape[1:], source="`X`")  # every node fits
    found = [z]
    for node in graph:
        z = node.forward(z)
        found.append(z)
    return found


def _linear_block(layers, acts, j: int) -> LinearBlock | str:
    """The block around the dropout at ``j``, or why there is none."""
    masks = layers[j].masks
    i = j - 1
    while i >= 0 and _is_nonlinearity(layers[i]):
        i -= 1
    if i < 0 or not isinstance(layers[i], Linear):
        return "not after a Linear layer (nor after non-linearities after one)"
    if not isinstance(masks, (Bernoulli, Gaussian, Channel)):
        return f"{type(masks).__name__} masks on a vector: no closed form here"
    h = acts[j]
    U = np.asarray(layers[j + 1].weight, dtype=float)
    products = np.linalg.norm(U, axis=0) * np.sqrt(np.mean(h**2, axis=0))
    penalty = float(masks.lam * np.sum(products**2))
    linear = i == j - 1 and getattr(layers[i], "bias", None) is None
    induced = gap = relative = None
    if linear:
        x = acts[i].reshape(len(h), -1)
        V = np.asarray(layers[i].weight, dtype=float)
        cov = x.T @ x / len(x)
        induced = fc.induced_regularizer(U @ V, masks.keep, U.shape[1], cov=cov)
        gap = penalty - induced
        relative = gap / penalty if penalty > 0 else 0.0
    top, bottom = float(products.max()), float(products.min())
    spread = 1.0 if top == 0 else (np.inf if bottom == 0 else top / bottom)
    return LinearBlock(
        dropout=j,
        first=i,
        second=j + 1,
        masks=masks,
        lam=float(masks.lam),
        unit_products=_read_only(products),
        penalty=penalty,
        linear=linear,
        induced=induced,
        gap=gap,
        relative_gap=relative,
        spread=float(spread),
    )


def _block_no_gradient(
    masks: DropBlock, spatial: tuple[int, ...], kernel: tuple[int, ...], circular: bool, n, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate, per tap, whether every unit it multiplies is dropped (``n`` channel maps).

    Channels are independent and alike under DropBlock, so one map per draw suffices.
    """
    kept = masks.sample((1, *spatial), n, rng)[:, 0] != 0
    kept = kept.reshape(n, *(spatial if len(spatial) == 2 else (1, spatial[0])))
    kernel2 = kernel if len(kernel) == 2 else (1, kernel[0])
    H, W = kept.shape[1:]
    starved = np.empty((n, *kernel2), dtype=bool)
    for a in range(kernel2[0]):
        for b in range(kernel2[1]):
            da, db = a - kernel2[0] // 2, b - kernel2[1] // 2
            # tap (a, b) multiplies the units q = p + d for output positions p in the image
            rows = slice(None) if circular else slice(max(0, da), H + min(0, da))
            cols = slice(None) if circular else slice(max(0, db), W + min(0, db))
            starved[:, a, b] = ~kept[:, rows, cols].any(axis=(1, 2))
    p = starved.mean(axis=0).reshape(kernel)
    return p, np.sqrt(p * (1 - p) / n)


def _conv_taps(layers, acts, j: int, n_masks: int, rng) -> ConvTaps | str:
    """The conv reading the dropout at ``j``, or why there is none."""
    k = j + 1
    while k < len(layers) and _is_nonlinearity(layers[k]):
        k += 1
    if k == len(layers) or not isinstance(layers[k], Conv):
        return "not followed by a Linear or a Conv layer"
    masks, layer = layers[j].masks, layers[k]
    spatial = tuple(int(s) for s in acts[j].shape[2:])
    kernel = tuple(int(s) for s in np.shape(layer.weight)[2:])
    padding = layer.padding
    counts = conv.tap_column_counts(kernel, spatial, padding=padding)
    stderr, n_used = None, 0
    if isinstance(masks, Gaussian):
        mode, probability, fc_probability = "gaussian", np.zeros(counts.shape), 0.0
    elif isinstance(masks, DropBlock):
        mode, fc_probability, n_used = "block", conv.fc_no_gradient_probability(masks.keep), n_masks
        try:
            probability, stderr = _block_no_gradient(
                masks, spatial, kernel, padding == "circular", n_masks, rng
            )
        except InvalidParameterError as exc:  # a block larger than the map
            raise InvalidParameterError(f"`layers[{j}]` does not fit its map: {exc}") from None
    elif isinstance(masks, (Bernoulli, Channel)):
        exact_mode: Literal["element", "channel"] = (
            "element" if isinstance(masks, Bernoulli) else "channel"
        )
        mode, fc_probability = exact_mode, conv.fc_no_gradient_probability(masks.keep)
        probability = conv.no_gradient_probability(
            kernel, spatial, masks.keep, padding=padding, mode=exact_mode
        )
    else:
        return f"{type(masks).__name__} masks: no tap probability known"
    return ConvTaps(
        dropout=j,
        conv=k,
        masks=masks,
        image_shape=spatial,
        kernel_size=kernel,
        padding=padding,
        through_nonlinearity=k > j + 1,
        mode=mode,
        probability=_read_only(probability),
        stderr=None if stderr is None else _read_only(stderr),
        n_masks=n_used,
        fc_probability=float(fc_probability),
        column_counts=_read_only(counts),
    )


@cites("mianjy2018implicit", "arora2021dropout")
@transition_to_rng
def diagnose(
    layers: Graph | Sequence[Node],
    X: ArrayLike,
    *,
    n_masks: int = 4000,
    rng: RngLike = 0,
) -> Diagnosis:
    r"""Read every dropout layer of a trained network at its data.

    Each Dropout layer whose nearest parametric layer before it is a Linear V
    (elementwise non-linearities may sit between) and whose next layer is a Linear U
    is a **block**: with :math:`h` the mask-free features it multiplies,

    .. math:: p_i = \|u_i\|\,\big(\overline{h_i^2}\big)^{1/2},\qquad
              R = \lambda \sum_i p_i^2 ,\qquad
              R - \frac{\lambda}{w}\,\|UV\,C^{1/2}\|_*^2 \ \ge 0 ,

    the unit products, the block's penalty (the layers after U removed) and, for a
    linear block (:math:`h = Vx`, no bias), the equalization gap to the induced
    regularizer (2) of the block's map (:func:`regtheory.fc.induced_regularizer`,
    :math:`C = \overline{xx^\top}` of V's input). A block with a non-linearity or a
    bias has no gap (``None``): the rotations that mix hidden units, which equalize
    a linear block, change the function of a non-linear one, while rescaling a ReLU
    unit (input weights by α > 0, output weights by 1/α) leaves both the function and
    the unit's term :math:`p_i^2` unchanged; no nuclear-norm lower bound over the
    equivalent parametrizations is known.

    Each Dropout layer read by a Conv (directly, or through elementwise
    non-linearities) gets the probability that each kernel tap gets no gradient at the
    map size the network sees: :func:`regtheory.conv.no_gradient_probability`
    (Bernoulli: ``"element"``, Channel: ``"channel"``), 0 for Gaussian masks, and for
    DropBlock a Monte Carlo estimate over ``n_masks`` sampled channel maps (channels
    are independent and alike), with its standard error. Through a ReLU these are the
    mask's probabilities, a lower bound on the true ones.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        A chain of nodes; elementwise nodes (ReLU, Elementwise, ...) may sit between a
        dropout and the Linear or Conv around it.
    X : array (n, ...)
        The data, as for :func:`regtheory.network.forward`.
    n_masks : int
        Channel maps sampled per DropBlock layer read by a conv (at least 2).
    rng : int, numpy.random.Generator or None
        Source of those maps (only DropBlock uses it; ``seed=`` still works, with a
        warning).

    Returns
    -------
    Diagnosis
        ``blocks`` and ``convs`` (records with the dropout's position in ``layers``),
        and the dropout layers neither describes in ``skipped``.

    Raises
    ------
    InvalidParameterError
        If ``layers`` is not a chain, ``X`` does not fit it, or ``n_masks`` or ``rng`` is refused.

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
    [2] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
        Capacity Control, ICML 2021.

    Examples
    --------
    A linear block with white inputs (C = I), keep 0.5 (λ = 1), V = I and U = (2, 1):
    the unit products are 2 and 1, the penalty 5, and the map M = (2, 1) has induced
    regularizer :math:`\|M\|_*^2/2` = 2.5, so half the penalty is the equalization gap.

    >>> import numpy as np
    >>> from regtheory.masks import Bernoulli
    >>> from regtheory.layers import Dropout, Linear
    >>> layers = [Linear(np.eye(2)), Dropout(Bernoulli(0.5)), Linear(np.array([[2.0, 1.0]]))]
    >>> d = diagnose(layers, np.array([[1.0, 1.0], [1.0, -1.0]]))
    >>> block = d.blocks[0]
    >>> block.unit_products.tolist(), block.penalty, round(block.gap, 12), block.spread
    ([2.0, 1.0], 5.0, 2.5, 2.0)
    """
    layers = _check_layers(layers)
    n_masks, rng = check_int(n_masks, "n_masks", minimum=2), as_rng(rng)
    acts = _activations(layers, X)
    blocks: list[LinearBlock] = []
    convs: list[ConvTaps] = []
    skipped: list[tuple[int, str]] = []
    for j, layer in enumerate(layers):
        if not isinstance(layer, Dropout):
            continue
        if j + 1 < len(layers) and isinstance(layers[j + 1], Linear):
            found: LinearBlock | ConvTaps | str = _linear_block(layers, acts, j)
        else:
            found = _conv_taps(layers, acts, j, n_masks, rng)
        if isinstance(found, LinearBlock):
            blocks.append(found)
        elif isinstance(found, ConvTaps):
            convs.append(found)
        else:
            skipped.append((j, found))
    return Diagnosis(len(acts[0]), tuple(blocks), tuple(convs), tuple(skipped))
