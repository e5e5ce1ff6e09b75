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
    Graph,
    Linear,
    MaxPool,
    Node,
)
from ._modules import (
    _BATCHNORMS,
    _DROPOUTS,
    _ELEMENTWISE,
    _POOLS,
    _array,
    _maybe,
    _placement,
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


def from_torch(model: nn.Module, input_shape: Sequence[int]) -> Graph:
    """Read a PyTorch model's forward as a :class:`regtheory.layers.Graph`.

    The forward is traced with ``torch.fx`` (custom modules, residual sums, ``torch.cat``,
    functional calls such as ``F.relu``, ``F.dropout``, ``torch.flatten`` and ``x.view``;
    a module called twice is two nodes), and each step becomes a node:

    * ``nn.Linear`` (on vectors) and ``nn.Conv1d``/``nn.Conv2d`` with or without bias
      (any stride, dilation, groups and padding amount; padding_mode ``'zeros'`` or
      ``'circular'``);
    * ``nn.AvgPool1d``/``2d`` (counting the padding, as torch's default),
      ``nn.MaxPool1d``/``2d`` and ``nn.AdaptiveAvgPool1d``/``2d``;
    * ``nn.ReLU`` and ``F.relu`` (:class:`~regtheory.layers.ReLU`) and the elementwise
      activations of ``torch.nn`` as :class:`~regtheory.layers.Elementwise` layers;
    * ``nn.BatchNorm1d``/``2d`` in evaluation mode (running statistics), folded into
      the linear or conv layer before it, else a per-channel affine layer;
    * flattening and reshaping (:class:`~regtheory.layers.Flatten`,
      :class:`~regtheory.layers.Reshape`), residual sums (:class:`~regtheory.layers.Add`),
      concatenation along the channels (:class:`~regtheory.layers.Concat`), a product by
      a number (:class:`~regtheory.layers.Multiply`);
    * the dropout sites: ``nn.Dropout`` and ``F.dropout``
      (:class:`~regtheory.masks.Bernoulli`), ``nn.Dropout1d``/``2d`` and
      ``F.dropout1d``/``2d`` (:class:`~regtheory.masks.Channel`), :class:`DropBlock2d`
      (:class:`~regtheory.masks.DropBlock`), torchvision's ``StochasticDepth(p, "row")``
      and timm's ``DropPath`` (:class:`~regtheory.masks.PerSample`), with keep 1 - p.

    Any other step (``nn.LayerNorm``, a softmax, reflection padding, a module of the
    user's) is a :class:`~regtheory.layers.Function` node that torch evaluates in
    float64. Weights are copied to float64.

    Parameters
    ----------
    model : torch.nn.Module
        The model, traceable by ``torch.fx``; it is not modified.
    input_shape : sequence of int
        Shape of one sample, without the batch axis: ``(d,)``, ``(C, L)`` or ``(C, H, W)``.
        Every node is checked to fit the shape it gets.

    Returns
    -------
    regtheory.layers.Graph
        The nodes in the order the forward runs them, for
        :func:`regtheory.network.forward` and the penalties.

    Raises
    ------
    InvalidParameterError
        If ``torch.fx`` cannot trace the model (or it draws random numbers that are not
        a dropout the package reads), or a step does not fit ``input_shape``, named by
        its module path.

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
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"`model` must be a torch.nn.Module, got {type(model).__name__}"
        )
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise InvalidParameterError(
            f"`input_shape` must be a sequence of positive ints, got {input_shape!r}"
        )
    shape = tuple(check_int(s, "input_shape") for s in input_shape)
    if not shape:
        raise InvalidParameterError("`input_shape` must have at least one entry")
    from ._graph import layers_graph
    from ._runner import Runner
    from ._trace import Untraceable, modes, trace

    try:
        traced = trace(model)
    except Untraceable as exc:
        raise InvalidParameterError(f"`model` cannot be read as a graph: {exc}") from None
    device, dtype = _placement(model)
    x = torch.zeros((2, *shape), device=device, dtype=dtype)  # two samples: the batch axis
    with modes(model, False):
        try:
            runner = Runner(traced, x)
        except InvalidParameterError as exc:
            raise InvalidParameterError(
                f"`input_shape` {shape} does not fit the model {exc}"
            ) from None
        return layers_graph(runner)[0]
