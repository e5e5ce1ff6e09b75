r"""The dropout penalty of a PyTorch model, through :mod:`regtheory.network`.

A researcher's ``nn.Sequential`` of linear and convolution layers (with or without
biases), pooling, elementwise activations, evaluation-mode batch normalisation and
dropout is converted, weight for weight, into the one network description of
:mod:`regtheory.layers` (float64 NumPy copies; :func:`from_torch`, and back with
:func:`to_torch`), and its dropout penalty on data,

.. math::

    P = \mathbb{E}_r\, L(r) - L(\mathbf 1),\qquad
    L(r) = \frac1n \sum_{k=1}^{n} \|y_k - f_{r_k}(x_k)\|^2 ,

is computed exactly when the network is linear after its first dropout layer
(moment propagation, THEORY.md §6: every non-linearity, max pooling included, comes
before it), and otherwise estimated by Monte Carlo with the
model's own modules: its dropout modules in training mode, on the model's device and
dtype, the losses taken in float64 (:func:`dropout_penalty`). The report says which
dropout layer pays what.

``nn.Dropout`` is elementwise inverted dropout (:class:`~regtheory.masks.Bernoulli`),
``nn.Dropout1d``/``nn.Dropout2d`` drop whole channels
(:class:`~regtheory.masks.Channel`), and :class:`DropBlock2d` drops square blocks with
the exact rate (:class:`~regtheory.masks.DropBlock`); all keep with probability 1 - p.

This module imports ``torch``; the rest of the package does not (install the
``torch`` extra to use it).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from . import _moments, network
from ._convops import Padding
from ._events import mask_events
from ._overflow import finite_result
from ._validation import (
    InvalidParameterError,
    as_generator,
    check_array,
    check_int,
    check_n_masks,
    check_positive,
)
from .layers import (
    AdaptiveAvgPool,
    AvgPool,
    Conv,
    DropConnect,
    Dropout,
    Elementwise,
    Flatten,
    Graph,
    Linear,
    MaxPool,
    Node,
    ReLU,
    Reshape,
    as_graph,
)
from .masks import Bernoulli, Channel, DropBlock
from .montecarlo import Estimate, estimate, min_draws

__all__ = [
    "DropBlock2d",
    "PenaltyReport",
    "dropout_penalty",
    "from_torch",
    "supported_modules",
    "to_torch",
    "train_classifier",
]

_CHANNEL_RANK = {nn.Dropout1d: 2, nn.Dropout2d: 3}  # feature axes (C, L) and (C, H, W)


class DropBlock2d(nn.Module):
    r"""DropBlock for ``(N, C, H, W)`` maps with the exact block rate, as a training module.

    In training mode every channel of every sample gets its own mask of
    :class:`regtheory.masks.DropBlock` (``keep = 1 - p``, ideal normaliser): block starts
    fire i.i.d. with the exact rate :math:`\gamma` of
    :meth:`~regtheory.masks.DropBlock.gamma` on the :math:`(H-b+1)\times(W-b+1)` places
    where a :math:`b\times b` block fits, every covered position is zeroed, and the kept
    ones are scaled by 1/keep, so the expected kept fraction of a map is exactly
    ``keep``. γ is computed once per map size. In evaluation mode (or with ``p = 0``) the
    module is the identity. It draws from torch's random generator, as ``nn.Dropout`` does.

    :func:`from_torch` reads it as ``Dropout(DropBlock(1 - p, block_size))``, so its
    penalty is exact where the network after it is linear.

    Parameters
    ----------
    p : float
        Expected dropped fraction of each map, in [0, 1).
    block_size : int
        Side b of the square blocks; at most the map's height and width.

    Examples
    --------
    >>> import torch
    >>> drop = DropBlock2d(0.25, 3)
    >>> _ = torch.manual_seed(0)
    >>> out = drop(torch.ones(2000, 1, 8, 8))
    >>> round(float((out > 0).double().mean()), 2)  # kept fraction, 0.75 in expectation
    0.75
    """

    def __init__(self, p: float, block_size: int) -> None:
        super().__init__()
        self.masks = DropBlock(1.0 - _probability(p, "p"), check_int(block_size, "block_size"))
        self.p = float(p)
        self.block_size = int(block_size)

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.dim() != 4:
            raise InvalidParameterError(
                f"DropBlock2d expects (N, C, H, W) maps, got a tensor of shape {tuple(x.shape)}"
            )
        b = self.block_size
        gamma = self.masks.gamma(tuple(x.shape[2:]))  # refuses a block larger than the map
        starts_shape = (*x.shape[:2], x.shape[2] - b + 1, x.shape[3] - b + 1)
        starts = (torch.rand(starts_shape, device=x.device) < gamma).to(x.dtype)
        # position p is dropped iff a start lies in [p - b + 1, p] along both axes
        dropped = nn.functional.max_pool2d(
            nn.functional.pad(starts, (b - 1, b - 1, b - 1, b - 1)), b, stride=1
        )
        return x * (1.0 - dropped) / self.masks.keep


# elementwise activations: evaluated by torch itself (a float64 copy) when converted
_ELEMENTWISE = (
    nn.CELU,
    nn.ELU,
    nn.GELU,
    nn.Hardshrink,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Hardtanh,
    nn.LeakyReLU,
    nn.LogSigmoid,
    nn.Mish,
    nn.ReLU6,
    nn.RReLU,
    nn.SELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Softplus,
    nn.Softshrink,
    nn.Softsign,
    nn.Tanh,
    nn.Tanhshrink,
    nn.Threshold,
)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, DropBlock2d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class PenaltyReport:
    r"""The dropout penalty of a PyTorch model on data, and what each dropout layer pays.

    Attributes
    ----------
    total : float
        :math:`P = \mathbb E_r L(r) - L(\mathbf 1)`, exact or its Monte Carlo estimate.
    stderr : float
        Standard error of ``total``; 0.0 when exact.
    method : str
        ``"exact"`` or ``"monte carlo"``.
    dropouts : tuple of str
        Each dropout module: its position in the model, its type and p.
    own : ndarray, read-only
        Each dropout module's penalty alone (the other dropout modules off, as in
        evaluation mode); ``NaN`` where not computed (``by_layer=False``).
    own_stderr : ndarray, read-only
        Their standard errors (0.0 when exact).
    n_masks : int
        Monte Carlo draws behind ``total`` (0 when exact).
    terms : network.PenaltyTerms or None
        The exact split over every subset of dropout layers, when exact.
    layers : regtheory.layers.Graph
        The converted network, the one description every path reads.
    """

    total: float
    stderr: float
    method: str
    dropouts: tuple[str, ...]
    own: np.ndarray = field(repr=False)
    own_stderr: np.ndarray = field(repr=False)
    n_masks: int
    terms: network.PenaltyTerms | None = field(repr=False)
    layers: Graph = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("own", "own_stderr"):
            values = np.array(getattr(self, name), dtype=float)
            values.setflags(write=False)
            object.__setattr__(self, name, values)

    @property
    def interaction(self) -> float:
        """What the layers pay together beyond their own penalties: total − Σ own."""
        return self.total - float(np.sum(self.own))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values (no layers)."""
        return {
            "total": self.total,
            "stderr": self.stderr,
            "method": self.method,
            "n_masks": self.n_masks,
            "dropouts": [
                {"module": name, "own": _json(own), "own_stderr": _json(se)}
                for name, own, se in zip(self.dropouts, self.own, self.own_stderr)
            ],
            "interaction": _json(self.interaction),
        }

    def __str__(self) -> str:
        pm = "" if self.method == "exact" else f" ± {self.stderr:.3g}"
        draws = "" if self.method == "exact" else f", {self.n_masks} draws"
        lines = [f"dropout penalty {self.total:.6g}{pm}  ({self.method}{draws})"]
        width = max(len(name) for name in self.dropouts)
        for name, own, se in zip(self.dropouts, self.own, self.own_stderr):
            if np.isnan(own):  # not computed (by_layer=False)
                lines.append(f"  {name}")
                continue
            tail = "" if self.method == "exact" else f" ± {se:.3g}"
            lines.append(f"  {name:<{width}}  alone {own:.6g}{tail}")
        if len(self.dropouts) > 1 and not np.isnan(self.interaction):
            lines.append(f"  {'together, beyond the sum':<{width}}  {self.interaction:.6g}")
        return "\n".join(lines)


def _json(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _leaves(module: nn.Module, where: str) -> list[tuple[str, nn.Module]]:
    """The modules of a (nested) ``nn.Sequential``, first to last, with their positions."""
    if not isinstance(module, nn.Sequential):
        return [(where, module)]
    found = []
    for i, child in enumerate(module):
        found += _leaves(child, f"{where}[{i}]")
    return found


def _array(param: Any) -> np.ndarray:
    """A float64, read-only NumPy copy of a tensor."""
    array = param.detach().cpu().to(torch.float64).numpy().copy()
    array.setflags(write=False)
    return array


def _maybe(param: Any) -> np.ndarray | None:
    return None if param is None else _array(param)


def _conv(module: nn.Conv1d | nn.Conv2d, where: str) -> Conv:
    name = f"{where} ({type(module).__name__})"
    if module.padding_mode not in ("zeros", "circular"):
        raise InvalidParameterError(
            f"{name} must have padding_mode 'zeros' or 'circular', got {module.padding_mode!r}"
        )
    padding = module.padding
    pad: str | int | tuple[int, ...] = (
        padding if padding == "same" else 0 if padding == "valid" else tuple(map(int, padding))
    )
    mode: Padding = "circular" if module.padding_mode == "circular" else "zeros"
    try:
        return Conv(
            _array(module.weight),
            padding=mode,
            bias=_maybe(module.bias),
            stride=tuple(module.stride),
            pad=pad,
            dilation=tuple(module.dilation),
            groups=module.groups,
        )
    except InvalidParameterError as exc:  # padding='same' with an even kernel
        raise InvalidParameterError(f"{name} must have an odd kernel here: {exc}") from None


def _pool(module: nn.Module, where: str) -> Node:
    """A torch pooling module as a pooling node (torch's defaults for the rest)."""
    name = f"{where} ({type(module).__name__})"
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        size = module.output_size
        if size is None or (isinstance(size, tuple) and None in size):
            raise InvalidParameterError(f"{name} must give every output size, got {size!r}")
        return AdaptiveAvgPool(size)  # type: ignore[arg-type]
    if module.ceil_mode:
        raise InvalidParameterError(f"{name} must have ceil_mode=False")
    settings = (module.kernel_size, module.stride, module.padding)
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)):
        if not module.count_include_pad or getattr(module, "divisor_override", None):
            raise InvalidParameterError(
                f"{name} must count the padding in the mean (count_include_pad=True, no "
                "divisor_override)"
            )
        kernel, stride, pad = _pool_args(*settings)
        return AvgPool(kernel, stride=stride, pad=pad)
    if module.return_indices or module.dilation not in (1, (1,), (1, 1)):
        raise InvalidParameterError(f"{name} must have dilation 1 and return_indices=False")
    kernel, stride, pad = _pool_args(*settings)
    return MaxPool(kernel, stride=stride, pad=pad)


def _pool_args(kernel: Any, stride: Any, padding: Any) -> tuple:
    def ints(v: Any) -> Any:
        return tuple(v) if isinstance(v, (tuple, list)) else int(v)

    return (ints(kernel), ints(stride), ints(padding))


def _probability(p: object, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) < 1.0:
        raise InvalidParameterError(f"`{name}` must be a probability in [0, 1), got {p!r}")
    return float(p)


def _dropout(module: nn.Module, where: str) -> Dropout:
    if isinstance(module, DropBlock2d):
        return Dropout(module.masks)
    p = float(module.p)  # type: ignore[arg-type]
    if not 0.0 <= p < 1.0:
        raise InvalidParameterError(f"{where} ({type(module).__name__}) must have p in [0, 1)")
    masks = Channel(1.0 - p) if type(module) in _CHANNEL_RANK else Bernoulli(1.0 - p)
    return Dropout(masks)


class _TorchFunction:
    """An elementwise torch activation as a NumPy function (a float64 copy of the module)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = copy.deepcopy(module).to(torch.float64).eval()

    def __call__(self, z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.from_numpy(np.asarray(z, dtype=np.float64))).numpy()


def _batchnorm(module: nn.Module, where: str) -> tuple[np.ndarray, np.ndarray]:
    """An evaluation-mode batch norm as the per-channel map z -> scale z + shift."""
    if module.running_mean is None or module.running_var is None:
        raise InvalidParameterError(
            f"{where} ({type(module).__name__}) has no running statistics "
            "(track_running_stats=False): it has no fixed evaluation-mode map"
        )
    mean, var = _array(module.running_mean), _array(module.running_var)
    scale = 1.0 / np.sqrt(var + float(module.eps))  # type: ignore[arg-type]
    shift = -mean * scale
    if module.weight is not None:
        gamma, beta = _array(module.weight), _array(module.bias)
        scale, shift = gamma * scale, gamma * shift + beta
    return scale, shift


def _fold(layer: Any, scale: np.ndarray, shift: np.ndarray) -> Any:
    """``layer`` followed by z -> scale z + shift (per output channel), as one layer."""
    weight = layer.weight * scale.reshape(-1, *(1,) * (layer.weight.ndim - 1))
    bias = shift if layer.bias is None else layer.bias * scale + shift
    return replace(layer, weight=weight, bias=bias)


def _diagonal(scale: np.ndarray, shift: np.ndarray, rank: int) -> Any:
    """z -> scale z + shift per channel as a layer: a Linear on vectors, a 1-wide conv on maps."""
    if rank == 1:
        return Linear(np.diag(scale), bias=shift)
    weight = np.diag(scale).reshape(len(scale), len(scale), *(1,) * (rank - 1))
    return Conv(weight, bias=shift)


_POOLS = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)


def supported_modules(*, dropout: bool = False) -> tuple[type[nn.Module], ...]:
    """The torch module classes :func:`from_torch` reads, or only its dropout modules.

    Besides these, ``nn.Sequential`` holds them (nested ones are flattened).

    Parameters
    ----------
    dropout : bool
        Only the dropout modules (``nn.Dropout``, ``nn.Dropout1d``, ``nn.Dropout2d``,
        :class:`DropBlock2d`).

    Returns
    -------
    tuple of type

    Raises
    ------
    InvalidParameterError
        If ``dropout`` is not a bool.

    Examples
    --------
    >>> import torch
    >>> torch.nn.Dropout2d in supported_modules(dropout=True)
    True
    """
    if not isinstance(dropout, bool):
        raise InvalidParameterError(f"`dropout` must be True or False, got {dropout!r}")
    if dropout:
        return _DROPOUTS
    fixed = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ReLU, nn.Identity, nn.Flatten, nn.Unflatten)
    return (*fixed, *_POOLS, *_ELEMENTWISE, *_DROPOUTS, *_BATCHNORMS)


def _convert(where: str, module: nn.Module) -> Any:
    """One torch module as a node; ``None`` for a module that is skipped, and
    ``("norm", scale, shift)`` for a batch norm, folded later."""
    kind = type(module)
    if kind is nn.Linear:
        return Linear(_array(module.weight), bias=_maybe(module.bias))
    if kind in (nn.Conv1d, nn.Conv2d):
        return _conv(module, where)  # type: ignore[arg-type]
    if kind in _POOLS:
        return _pool(module, where)
    if kind is nn.ReLU:
        return ReLU()
    if kind in _ELEMENTWISE:
        return Elementwise(_TorchFunction(module), name=kind.__name__)
    if kind is nn.Identity:
        return None
    if kind is nn.Flatten:
        if (module.start_dim, module.end_dim) != (1, -1):
            raise InvalidParameterError(f"{where} (Flatten) must flatten from dim 1 to -1")
        return Flatten()
    if kind is nn.Unflatten and module.dim in (1, -1):
        return Reshape(tuple(int(s) for s in module.unflattened_size))  # type: ignore[union-attr]
    if kind in _DROPOUTS:
        return _dropout(module, where)
    if kind in _BATCHNORMS:
        return ("norm", *_batchnorm(module, where))
    if kind.__module__.startswith("torchvision") and "DropBlock" in kind.__name__:
        raise InvalidParameterError(
            f"{where} ({kind.__name__}) is not supported: torchvision's DropBlock draws blocks "
            "at Ghiasi et al.'s approximate rate and rescales by the kept fraction of the whole "
            "batch, which no per-sample mask distribution matches; train with "
            "regtheory.pytorch.DropBlock2d (the exact rate) instead"
        )
    raise InvalidParameterError(f"{where} ({kind.__name__}) is not supported")


def _check_fit(where: str, module: nn.Module, layer: Any, shape: tuple, source: str) -> None:
    """The checks torch's own modules add to the nodes' shapes (ranks, channels, blocks)."""
    name = f"{where} ({type(module).__name__})"
    rank: int | None = None
    if isinstance(module, (nn.Dropout1d, nn.Dropout2d)):
        rank = _CHANNEL_RANK[type(module)]
    elif isinstance(module, (DropBlock2d, nn.BatchNorm2d)):
        rank = 3
    if rank is not None and len(shape) != rank:
        raise InvalidParameterError(
            f"{name} needs {rank} feature axes, got activations of shape {shape} from {source}"
        )
    if isinstance(module, _BATCHNORMS) and shape[0] != len(layer[1]):
        raise InvalidParameterError(
            f"{name} normalises {len(layer[1])} channels, got activations of shape "
            f"{shape} from {source}"
        )
    if isinstance(module, DropBlock2d) and module.block_size > min(shape[1:]):
        raise InvalidParameterError(
            f"{name} has block_size {module.block_size}, larger than its maps {shape[1:]} "
            f"from {source}"
        )


def _assemble(pairs, shape: tuple[int, ...], source: str) -> tuple[list, list[str]]:
    """The nodes, each checked to fit the shape it gets, every batch norm folded into the
    layer before it (or inserted as a diagonal layer), and a Flatten kept only where a
    Linear does not flatten anyway; with the names of the dropout modules, in order."""
    nodes: list = []
    names: list[str] = []
    where_from = f"{source} {shape}"
    for where, module, layer in pairs:
        _check_fit(where, module, layer, shape, where_from)
        if layer is None:  # Identity
            continue
        if isinstance(layer, tuple):  # a batch norm: fold or insert
            _, scale, shift = layer
            last = nodes[-1] if nodes else None
            if isinstance(last, (Linear, Conv)):
                nodes[-1] = _fold(last, scale, shift)
            else:
                nodes.append(_diagonal(scale, shift, len(shape)))
            continue
        if isinstance(layer, Dropout):
            names.append(f"{where} ({type(module).__name__}, p={_p(module):g})")
        try:
            out = layer.out_shape(shape)
        except InvalidParameterError as exc:
            raise InvalidParameterError(
                f"{where} ({type(module).__name__}) does not fit {where_from}: {exc}"
            ) from None
        if not (isinstance(layer, Flatten) and len(shape) == 1):
            nodes.append(layer)
        shape = out
    return _drop_flattens(nodes), names


def _drop_flattens(nodes: list) -> list:
    """The nodes without every Flatten that only elementwise nodes and elementwise masks
    separate from a Linear: a Linear flattens its input channel first, as torch.flatten,
    and those nodes act alike on maps and vectors."""
    kept = []
    for i, node in enumerate(nodes):
        j = i + 1
        while j < len(nodes) and (
            nodes[j].elementwise
            or (isinstance(nodes[j], Dropout) and type(nodes[j].masks) is Bernoulli)
        ):
            j += 1
        linear_next = j < len(nodes) and isinstance(nodes[j], (Linear, DropConnect))
        if not (isinstance(node, Flatten) and linear_next):
            kept.append(node)
    return kept


def _p(module: nn.Module) -> float:
    return float(module.p)  # type: ignore[arg-type]


def from_torch(model: nn.Module, input_shape: Sequence[int]) -> Graph:
    """Convert a PyTorch ``nn.Sequential`` into a :class:`regtheory.Graph`.

    Supported modules:

    * ``nn.Linear`` and ``nn.Conv1d``/``nn.Conv2d``, with or without bias (any stride,
      dilation, groups and padding amount; padding_mode ``'zeros'`` or ``'circular'``);
    * ``nn.AvgPool1d``/``2d`` (counting the padding, as torch's default),
      ``nn.MaxPool1d``/``2d`` and ``nn.AdaptiveAvgPool1d``/``2d``;
    * ``nn.ReLU`` (:class:`~regtheory.ReLU`) and the elementwise activations
      (``Tanh``, ``Sigmoid``, ``GELU``, ``SiLU``, ``ELU``, ``LeakyReLU``, ``Softplus`` and
      the other elementwise ones of ``torch.nn``), as
      :class:`~regtheory.Elementwise` layers evaluated by a float64 copy of the
      module;
    * ``nn.BatchNorm1d``/``nn.BatchNorm2d`` in evaluation mode (running statistics,
      whatever the model's mode), folded into the linear or conv layer before it, or,
      after anything else, a per-channel affine layer;
    * ``nn.Flatten`` (dropped before a Linear, which flattens channel first as torch
      does), ``nn.Unflatten`` of dim 1 and ``nn.Identity`` (dropped);
    * ``nn.Dropout`` (:class:`~regtheory.masks.Bernoulli`), ``nn.Dropout1d``/
      ``nn.Dropout2d`` (:class:`~regtheory.masks.Channel`) and :class:`DropBlock2d`
      (:class:`~regtheory.masks.DropBlock`), with keep 1 - p.

    Nested ``nn.Sequential`` modules are flattened; anything else is refused with its
    position and type. Weights are copied to float64.

    Parameters
    ----------
    model : torch.nn.Sequential
        The model; it is not modified.
    input_shape : sequence of int
        Shape of one sample, without the batch axis: ``(d,)``, ``(C, L)`` or ``(C, H, W)``.
        Every node is checked to fit the shape it gets.

    Returns
    -------
    regtheory.Graph
        The nodes, first to last (a chain), for :func:`regtheory.network.forward` and the
        penalties.

    Raises
    ------
    InvalidParameterError
        For a module that is not supported or does not fit, named by its position.

    See Also
    --------
    to_torch : the way back.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(),
    ...                             torch.nn.Dropout(0.25), torch.nn.Linear(2, 1))
    >>> [type(layer).__name__ for layer in from_torch(model, (3,))]
    ['Linear', 'Elementwise', 'Dropout', 'Linear']
    >>> from_torch(model, (3,))[2].masks.keep
    0.75
    """
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise InvalidParameterError(
            f"`input_shape` must be a sequence of positive ints, got {input_shape!r}"
        )
    shape = tuple(check_int(s, "input_shape") for s in input_shape)
    if not shape:
        raise InvalidParameterError("`input_shape` must have at least one entry")
    return _convert_model(model, shape, "`input_shape`")[0]


def _convert_model(
    model: nn.Module, shape: tuple[int, ...], source: str
) -> tuple[Graph, list[str]]:
    """The graph of ``model`` for samples of ``shape`` (taken from the argument ``source``),
    and the names of its dropout modules."""
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"`model` must be a torch.nn.Module, got {type(model).__name__}"
        )
    pairs = [(where, module, _convert(where, module)) for where, module in _leaves(model, "model")]
    nodes, names = _assemble(pairs, shape, source)
    if not nodes:
        raise InvalidParameterError("`model` has no layer to convert")
    graph = Graph(tuple(nodes))
    graph.shapes(shape, source=source)  # each node fits (checked above): inferred once here
    return graph, names


def _spatial_rank(node: Any, rank: int | None, where: str) -> int:
    """Number of spatial axes of a pooling node: its kernel's, else the features'."""
    size = getattr(node, "kernel_size", getattr(node, "output_size", (1,)))
    if len(size) > 1:
        return len(size)
    if rank is None or rank < 2:
        raise InvalidParameterError(
            f"{where} ({node.name}) has no PyTorch module here without the rank of its maps: "
            "give its size per spatial axis"
        )
    return rank - 1


def _torch_pool(node: Any, where: str, rank: int | None) -> nn.Module:
    n = _spatial_rank(node, rank, where)
    if isinstance(node, AdaptiveAvgPool):
        cls = nn.AdaptiveAvgPool1d if n == 1 else nn.AdaptiveAvgPool2d
        size = node.output_size
        return cls(size[0] if len(size) == 1 else size)  # type: ignore[arg-type,index]
    name = "AvgPool" if isinstance(node, AvgPool) else "MaxPool"
    cls = getattr(nn, f"{name}{n}d")

    def one(v: tuple) -> Any:
        return v[0] if len(v) == 1 else v

    return cls(one(node.kernel_size), stride=one(node.stride), padding=one(node.pad))


def _torch_conv(layer: Conv, dtype: torch.dtype) -> nn.Module:
    out, c_in, *kernel = layer.weight.shape
    cls = nn.Conv1d if len(kernel) == 1 else nn.Conv2d
    conv = cls(
        c_in * layer.groups,
        out,
        tuple(kernel),
        stride=layer.stride,  # type: ignore[arg-type]
        padding="same" if layer.same_size else layer.pad,  # type: ignore[arg-type]
        dilation=layer.dilation,  # type: ignore[arg-type]
        groups=layer.groups,
        padding_mode=layer.padding,
        bias=layer.bias is not None,
        dtype=dtype,
    )
    _load(conv, layer)
    return conv


def _torch_layer(layer: Any, where: str, rank: int | None, dtype: torch.dtype) -> list[nn.Module]:
    """One node as torch modules (a Flatten before a Linear that reads maps); ``rank`` is
    the number of feature axes the node reads, when known."""
    if isinstance(layer, Linear):
        out, d_in = layer.weight.shape
        module = nn.Linear(d_in, out, bias=layer.bias is not None, dtype=dtype)
        _load(module, layer)
        return [module] if rank == 1 else [nn.Flatten(), module]
    if isinstance(layer, Conv):
        return [_torch_conv(layer, dtype)]
    if isinstance(layer, (AvgPool, MaxPool, AdaptiveAvgPool)):
        return [_torch_pool(layer, where, rank)]
    if isinstance(layer, Flatten):
        return [nn.Flatten()]
    if isinstance(layer, Reshape) and rank == 1:
        return [nn.Unflatten(1, layer.shape)]
    if isinstance(layer, ReLU):
        return [nn.ReLU()]
    if isinstance(layer, Elementwise) and isinstance(layer.function, _TorchFunction):
        return [copy.deepcopy(layer.function.module).to(dtype)]
    if isinstance(layer, Dropout):
        masks, p = layer.masks, 1.0 - layer.masks.keep
        if type(masks) is Bernoulli:
            return [nn.Dropout(p)]
        if type(masks) is Channel:
            return [{1: nn.Dropout(p), 2: nn.Dropout1d(p), 3: nn.Dropout2d(p)}[rank or 1]]
        if isinstance(masks, DropBlock) and masks.normalize == "ideal":
            return [DropBlock2d(p, masks.block_size)]
    raise InvalidParameterError(
        f"{where} ({type(layer).__name__}) has no PyTorch module here"
        + (" (a NumPy function)" if isinstance(layer, Elementwise) else "")
    )


def _load(module: Any, layer: Any) -> None:
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.array(layer.weight)))
        if layer.bias is not None:
            module.bias.copy_(torch.from_numpy(np.array(layer.bias)))


def _ranks(graph: Graph) -> list[int | None]:
    """The number of feature axes each node reads, as far as the weights tell: a conv's
    kernel fixes it, a Linear, DropConnect or Flatten makes vectors; a channel mask on the
    input of a conv net is read from the conv after it."""
    ranks: list[int | None] = []
    rank: int | None = None
    for node in graph:
        ranks.append(rank)
        if isinstance(node, Conv):
            rank = node.weight.ndim - 1
        elif isinstance(node, (Linear, DropConnect, Flatten)):
            rank = 1
        elif isinstance(node, Reshape):
            rank = len(node.shape)
    first_conv = next((n for n in graph if isinstance(n, Conv)), None)
    if ranks and ranks[0] is None and first_conv is not None:
        fill = first_conv.weight.ndim - 1
        for i, r in enumerate(ranks):
            if r is not None:
                break
            ranks[i] = fill
    return ranks


def to_torch(
    layers: Graph | Sequence[Node], *, dtype: str | torch.dtype = "float64"
) -> nn.Sequential:
    """Build the PyTorch ``nn.Sequential`` of a chain of :mod:`regtheory.layers` nodes.

    The inverse of :func:`from_torch`: ``Linear`` → ``nn.Linear`` (after an
    ``nn.Flatten`` when it reads maps), ``Conv`` → ``nn.Conv1d``/``nn.Conv2d``
    (``padding='same'`` for a same-size one), pooling → ``nn.AvgPool``/``nn.MaxPool``/
    ``nn.AdaptiveAvgPool`` (1-D or 2-D), ``Flatten`` → ``nn.Flatten``, ``ReLU`` →
    ``nn.ReLU``, an ``Elementwise`` layer made by :func:`from_torch` → its module,
    ``Dropout`` of :class:`~regtheory.masks.Bernoulli` → ``nn.Dropout``, of
    :class:`~regtheory.masks.Channel` → ``nn.Dropout1d``/``nn.Dropout2d`` before a conv
    (``nn.Dropout`` on vectors, where channel masks are elementwise), of an ideal
    :class:`~regtheory.masks.DropBlock` → :class:`DropBlock2d`. Gaussian dropout,
    DropConnect, NumPy-function activations, ``Multiply``, ``Add`` and ``Concat`` have no
    module here and are refused by position. A channel mask on the input of a conv net
    is read from the conv after it.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        A chain (each node reads the one before).
    dtype : {"float64", "float32"} or torch.dtype
        Of the parameters (float64 keeps the weights bit for bit); a name means the
        torch dtype of that name, as in the Monte Carlo functions' ``dtype``.

    Returns
    -------
    torch.nn.Sequential
        In training mode, as a fresh torch module is.

    Raises
    ------
    InvalidParameterError
        For a node with no torch module, named by its position, or a graph that is not
        a chain.

    Examples
    --------
    >>> import numpy as np
    >>> from regtheory.layers import Conv, Dropout, Linear
    >>> from regtheory.masks import Channel
    >>> to_torch([Conv(np.ones((2, 1, 3, 3))), Dropout(Channel(0.8)), Linear(np.ones((1, 50)))])
    Sequential(
      (0): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=same, bias=False)
      (1): Dropout2d(p=0.19999999999999996, inplace=False)
      (2): Flatten(start_dim=1, end_dim=-1)
      (3): Linear(in_features=50, out_features=1, bias=False)
    )
    """
    graph = as_graph(layers)
    if isinstance(dtype, str) and dtype in ("float64", "float32"):
        dtype = getattr(torch, dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidParameterError(
            f"`dtype` must be 'float64', 'float32' or a floating torch.dtype, got {dtype!r}"
        )
    if not graph.is_chain:
        raise InvalidParameterError(
            "`layers` must be a chain (each node reading the one before) to be an "
            "nn.Sequential; this graph has joins (Add, Concat)"
        )
    modules: list[nn.Module] = []
    for i, (layer, rank) in enumerate(zip(graph, _ranks(graph))):
        modules += _torch_layer(layer, f"`layers[{i}]`", rank, dtype)
    return nn.Sequential(*modules)


def _as_array(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):  # a complex tensor stays complex, for check_array to refuse
        x = x.detach().cpu()
        x = (x.to(torch.float64) if x.is_floating_point() else x).numpy()
    return check_array(x, name)


def _placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's parameters (torch's defaults if none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


@contextmanager
def _dropout_on(model: nn.Module, active: Sequence[nn.Module]) -> Iterator[None]:
    """The model in evaluation mode but for the ``active`` dropout modules; modes restored."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for module in active:
            module.train()
        yield
    finally:
        for module, mode in modes:
            module.train(mode)


def _torch_mc(model, drops, X, Y, *, active, n_masks, seed, widest) -> Estimate:
    """E L(r) − L(1) over the masks of the ``active`` dropout modules, by running the model.

    The draws of a batch are stacked along the batch axis (one forward pass); each batch
    seeds torch's generator from ``seed``'s stream, inside ``torch.random.fork_rng`` so
    the caller's torch random state is untouched. The model runs in its own dtype and on
    its own device; the losses are taken in float64."""
    device, dtype = _placement(model)
    n = X.shape[0]
    x = torch.from_numpy(X).to(device=device, dtype=dtype)
    y = torch.from_numpy(Y).to(device=device, dtype=torch.float64).reshape(n, -1)
    events, words = mask_events([drops[i][:2] for i in active])
    need = min_draws(events)
    n_masks = check_n_masks(n_masks, need, words)
    modules = [drops[i][2] for i in active]
    with torch.no_grad(), _dropout_on(model, []):
        base = torch.mean(torch.sum((y - model(x).reshape(n, -1).double()) ** 2, dim=1)).item()
    batch = int(np.clip((1 << 22) // (widest * n), 1, 4096))
    cuda = [device.index or 0] if device.type == "cuda" else []

    def draw(rng: np.random.Generator, size: int) -> np.ndarray:
        with torch.random.fork_rng(devices=cuda), torch.no_grad(), _dropout_on(model, modules):
            torch.manual_seed(int(rng.integers(2**62)))
            out = model(x.repeat(size, *(1,) * (x.dim() - 1))).reshape(size, n, -1)
        losses = torch.mean(torch.sum((y[None] - out.double()) ** 2, dim=2), dim=1)
        return losses.cpu().numpy() - base

    return estimate(draw, n_masks=n_masks, rng=seed, batch_size=batch, min_masks=max(1000, need))


@finite_result("the dropout penalty of the model", fields=("total", "stderr"))
def dropout_penalty(
    model: nn.Module,
    X: ArrayLike | torch.Tensor,
    *,
    Y: ArrayLike | torch.Tensor | None = None,
    n_masks: int | None = None,
    seed: int | np.random.Generator = 0,
    by_layer: bool = True,
) -> PenaltyReport:
    r"""Dropout penalty :math:`\mathbb{E}_r L(r) - L(\mathbf 1)` of a PyTorch model on data.

    The model is converted by :func:`from_torch` (which refuses unsupported modules by
    position). When the converted network is one the exact penalty reads (every
    non-linearity before the first dropout module) the penalty is exact (:func:`regtheory.network.dropout_penalty_terms`, in float64 on the
    converted weights, whatever the model's dtype). Otherwise it is estimated by Monte
    Carlo with the model itself: its dropout modules in training mode and every other
    module in evaluation mode (batch norms use their running statistics), on the model's
    device and in its dtype, with the squared losses taken in float64; each draw is the
    loss gap on the whole data with fresh masks, and the estimate's standard error is
    honest (:func:`regtheory.montecarlo.min_draws` refuses too few draws). torch's random
    state is left as it was; the same ``seed`` gives the same numbers on the same machine.

    .. math::

        P = \mathbb{E}_r\, \frac1n \sum_{k} \|y_k - f_{r_k}(x_k)\|^2
            - \frac1n \sum_{k} \|y_k - f_{\mathbf 1}(x_k)\|^2 .

    With ``by_layer`` each dropout module's penalty *alone* (the others off) is
    computed the same way, so the report says which layer pays what, and what they pay
    together beyond the sum of their own penalties.

    Parameters
    ----------
    model : torch.nn.Sequential
        Supported modules as in :func:`from_torch`; at least one dropout module.
    X : array or torch.Tensor (n, ...)
        Inputs (float32 or float64).
    Y : array or torch.Tensor (n, ...), optional
        Targets, the model's output shape; ``None`` takes the model's own mask-free
        output (the penalty is then the perturbation energy
        :math:`\frac1n\sum_k\mathbb E\|f_r(x_k) - f(x_k)\|^2`).
    n_masks : int, optional
        Monte Carlo draws per estimate (default 2000); ignored when the penalty is exact.
    seed : int or numpy.random.Generator
        Source of the Monte Carlo masks.
    by_layer : bool
        Also compute each dropout module's own penalty (one more estimate per module
        on the Monte Carlo path).

    Returns
    -------
    PenaltyReport
        ``total``, ``stderr`` (0.0 when exact), ``method``, ``dropouts``, ``own``,
        ``own_stderr``, ``interaction``, ``terms`` (exact only) and the converted
        ``layers``; ``print(report)`` shows a table, ``report.to_dict()`` JSON values.

    Examples
    --------
    Dropout (keep 0.5, λ = 1) before a last layer u = (1, 2) on x = (1, 1): the penalty
    is :math:`\lambda \sum_i u_i^2 x_i^2 = 5`.

    >>> import numpy as np, torch
    >>> last = torch.nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = last.weight.copy_(torch.tensor([[1.0, 2.0]]))
    >>> report = dropout_penalty(torch.nn.Sequential(torch.nn.Dropout(0.5), last), np.ones((3, 2)))
    >>> report.total, report.method
    (5.0, 'exact')
    >>> print(report)
    dropout penalty 5  (exact)
      model[0] (Dropout, p=0.5)  alone 5
    """
    X = _as_array(X, "X")
    graph, names = _convert_model(model, X.shape[1:], "the samples of `X`, of shape")
    if Y is not None:
        Y = _as_array(Y, "Y")
    if not names:
        raise InvalidParameterError("`model` has no dropout module: its penalty is zero")
    if n_masks is not None:
        n_masks = check_int(n_masks, "n_masks")
    if not isinstance(by_layer, bool):
        raise InvalidParameterError(f"`by_layer` must be True or False, got {by_layer!r}")
    as_generator(seed)  # refuse a bad seed even where the penalty is exact
    if _moments.exact_refusal(graph, X.shape[1:]) is None:
        return _exact_report(graph, names, X, Y, by_layer)
    return _monte_carlo_report(model, graph, names, X, Y, n_masks, seed, by_layer)


def _without(graph: Graph, drop: Sequence[int]) -> Graph:
    """The graph without the nodes at ``drop`` (each read through as its own input)."""
    keep = [i for i in range(len(graph)) if i not in drop]
    new = {old: k for k, old in enumerate(keep)}

    def source(s: int) -> int:
        while s in drop:
            s = graph.inputs[s][0]
        return -1 if s < 0 else new[s]

    inputs = {k: tuple(source(s) for s in graph.inputs[old]) for k, old in enumerate(keep)}
    return Graph(tuple(graph[i] for i in keep), inputs=inputs)


def _exact_report(graph: Graph, names, X, Y, by_layer) -> PenaltyReport:
    terms = network.dropout_penalty_terms(graph, X, Y=Y)
    at = graph.random_positions
    own = np.full(len(at), np.nan)
    for k, i in enumerate(at if by_layer else []):
        alone = _without(graph, [j for j in at if j != i])
        own[k] = network.dropout_penalty(alone, X, Y=Y)
    return PenaltyReport(
        terms.total, 0.0, "exact", tuple(names), own, np.zeros(len(at)), 0, terms, graph
    )


def _monte_carlo_report(model, graph, names, X, Y, n_masks, seed, by_layer) -> PenaltyReport:
    graph = as_graph(graph)
    modules = [m for _, m in _leaves(model, "model") if isinstance(m, _DROPOUTS)]
    shapes = graph.mask_laws(X.shape[1:])
    drops = [(masks, shape, module) for (masks, shape), module in zip(shapes, modules)]
    out = graph.forward(X)
    if Y is None:
        Y = out
    elif Y.shape != out.shape:
        raise InvalidParameterError(
            f"`Y` must have the model's output shape {out.shape}, got {Y.shape}"
        )
    Y = Y.reshape(len(X), -1)
    rng = as_generator(seed)
    n_masks = 2000 if n_masks is None else n_masks
    # the widest activation of one sample sets the batch of draws
    widest = max(int(np.prod(s)) for s in (X.shape[1:], *graph.shapes(X.shape[1:])))
    total = _torch_mc(
        model, drops, X, Y, active=range(len(drops)), seed=rng, n_masks=n_masks, widest=widest
    )
    own = np.full(len(drops), np.nan)
    own_se = np.full(len(drops), np.nan)
    for k in range(len(drops) if by_layer else 0):
        est = _torch_mc(model, drops, X, Y, active=[k], seed=rng, n_masks=n_masks, widest=widest)
        own[k], own_se[k] = est.value, est.stderr
    return PenaltyReport(
        total.value,
        total.stderr,
        "monte carlo",
        tuple(names),
        own,
        own_se,
        total.n_masks or 0,
        None,
        graph,
    )


# ----------------------------------------------------------------------------- training


@contextmanager
def _reproducible(n_threads: int) -> Iterator[None]:
    """torch's random state, thread count and determinism flag for a block; all restored."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(n_threads)
            torch.use_deterministic_algorithms(True)
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def train_classifier(
    model: nn.Module,
    X: ArrayLike | torch.Tensor,
    labels: ArrayLike | torch.Tensor,
    *,
    epochs: int = 30,
    batch_size: int | None = None,
    lr: float = 3e-3,
    seed: int | np.random.Generator = 0,
    n_threads: int = 1,
) -> nn.Module:
    r"""A trained copy of a PyTorch classifier: Adam on the cross-entropy, reproducibly.

    The model's dropout modules are in training mode while it trains, so it sees real
    masks at every step; the data are reshuffled every epoch into mini-batches of
    ``batch_size`` rows (the last one smaller). Training is deterministic: torch's generator
    is seeded from ``seed`` (inside ``torch.random.fork_rng``, so the caller's random
    state is untouched), deterministic algorithms are switched on and the thread count
    fixed for the run (both restored after it); the same seed gives the same weights
    on the same machine. Across processors the rounding of each step differs, and
    training amplifies it: expect close, not equal, results there.

    Parameters
    ----------
    model : torch.nn.Module
        Maps inputs of ``X``'s sample shape to one logit per class; it is not changed.
    X : array or torch.Tensor (n, ...)
        Training inputs (cast to the model's dtype).
    labels : array or torch.Tensor (n,)
        Class indices 0, 1, … (integers).
    epochs : int
        Passes over the data.
    batch_size : int, optional
        Rows per mini-batch; default all of them (one step per epoch).
    lr : float
        Adam's step size (other Adam settings are torch's defaults).
    seed : int or numpy.random.Generator
        Source of the initial shuffles and of the dropout masks.
    n_threads : int
        torch's intra-op threads during training. One thread is the default: a small
        model's steps are too short to split, and on a machine whose cores are busy
        extra threads wait for each other (a small CNN on 8×8 images trained 2.5 times
        slower with two threads than with one on two shared cores).

    Returns
    -------
    torch.nn.Module
        A trained deep copy of ``model``, in evaluation mode.

    Examples
    --------
    Two separable points: after training, each is assigned its class.

    >>> import numpy as np, torch
    >>> net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(2, 2))
    >>> X, labels = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
    >>> trained = train_classifier(net, X, labels, epochs=300, lr=0.05)
    >>> trained(torch.tensor(X, dtype=torch.float32)).argmax(dim=1).tolist()
    [0, 1]
    """
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"`model` must be a torch.nn.Module, got {type(model).__name__}"
        )
    X = _as_array(X, "X")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = check_array(labels, "labels", ndim=1)
    if len(y) != len(X) or not np.all(y == np.round(y)) or np.any(y < 0):
        raise InvalidParameterError(
            f"`labels` must hold one class index (an integer >= 0) per row of `X` "
            f"({len(X)} rows), got {len(y)} values"
            + ("" if len(y) != len(X) else " with non-integer or negative entries")
        )
    epochs = check_int(epochs, "epochs")
    batch_size = len(X) if batch_size is None else check_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    torch_seed = int(as_generator(seed).integers(2**62))
    n_threads = check_int(n_threads, "n_threads")
    trained = copy.deepcopy(model)
    device, dtype = _placement(trained)
    x = torch.from_numpy(X).to(device=device, dtype=dtype)
    target = torch.from_numpy(y.astype(np.int64)).to(device)
    with _reproducible(n_threads):
        torch.manual_seed(torch_seed)
        optimizer = torch.optim.Adam(trained.parameters(), lr=lr)
        trained.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(x), device=device).split(batch_size):
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(trained(x[batch]), target[batch])
                loss.backward()
                optimizer.step()
    return trained.eval()
