"""A PyTorch ``nn.Sequential`` as a :class:`regtheory.layers.Graph`, and back."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .._convops import Padding
from .._validation import (
    InvalidParameterError,
    check_int,
)
from ..layers import (
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
)
from ..masks import Bernoulli, Channel
from ._modules import (
    _BATCHNORMS,
    _CHANNEL_RANK,
    _DROPOUTS,
    _ELEMENTWISE,
    _POOLS,
    DropBlock2d,
    _array,
    _leaves,
    _maybe,
)


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
    """Z -> scale z + shift per channel as a layer: a Linear on vectors, a 1-wide conv on maps."""
    if rank == 1:
        return Linear(np.diag(scale), bias=shift)
    weight = np.diag(scale).reshape(len(scale), len(scale), *(1,) * (rank - 1))
    return Conv(weight, bias=shift)


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
        The ``torch.nn.Module`` subclasses, each read as one node (a batch norm is
        folded into the layer before it, or read as a per-channel scale and shift).

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
    """One torch module as a node.

    ``None`` for a module that is skipped, and ``("norm", scale, shift)`` for a batch
    norm, folded later.
    """
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
    """The nodes, each checked to fit the shape it gets, and the names of the dropout modules.

    Every batch norm is folded into the layer before it (or inserted as a diagonal layer),
    and a Flatten kept only where a Linear does not flatten anyway; the names of the
    dropout modules come in order.
    """
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
    """The nodes without the Flattens that only elementwise nodes separate from a Linear.

    Elementwise nodes and elementwise masks count alike: a Linear flattens its input
    channel first, as torch.flatten, and those nodes act alike on maps and vectors.
    """
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
    """Convert a PyTorch ``nn.Sequential`` into a :class:`regtheory.layers.Graph`.

    Supported modules:

    * ``nn.Linear`` and ``nn.Conv1d``/``nn.Conv2d``, with or without bias (any stride,
      dilation, groups and padding amount; padding_mode ``'zeros'`` or ``'circular'``);
    * ``nn.AvgPool1d``/``2d`` (counting the padding, as torch's default),
      ``nn.MaxPool1d``/``2d`` and ``nn.AdaptiveAvgPool1d``/``2d``;
    * ``nn.ReLU`` (:class:`~regtheory.layers.ReLU`) and the elementwise activations
      (``Tanh``, ``Sigmoid``, ``GELU``, ``SiLU``, ``ELU``, ``LeakyReLU``, ``Softplus`` and
      the other elementwise ones of ``torch.nn``), as
      :class:`~regtheory.layers.Elementwise` layers evaluated by a float64 copy of the
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
    regtheory.layers.Graph
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
    """The graph of ``model`` for samples of ``shape`` and the names of its dropout modules.

    ``shape`` is taken from the argument ``source``.
    """
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
