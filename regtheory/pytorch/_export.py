"""A :class:`regtheory.layers.Graph` as a PyTorch module (the way back from :func:`from_torch`)."""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from .._validation import InvalidParameterError
from ..layers import (
    AdaptiveAvgPool,
    Add,
    AvgPool,
    Concat,
    Conv,
    DropConnect,
    Dropout,
    Elementwise,
    Flatten,
    Function,
    Graph,
    Linear,
    MaxPool,
    Multiply,
    Node,
    ReLU,
    Reshape,
    as_graph,
)
from ..masks import Bernoulli, Channel, DropBlock, PerSample
from ._convert import _TorchFunction
from ._modules import DropBlock2d


class FixedFactor(nn.Module):
    """``z -> factor * z`` for a fixed tensor ``factor`` (a buffer, not a parameter).

    The module of a :class:`~regtheory.layers.Multiply` node: ``factor`` has the
    features' shape, or one that broadcasts to it, and moves with the module's dtype and
    device as a buffer does.
    """

    factor: torch.Tensor

    def __init__(self, factor: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("factor", factor)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``factor * z``, broadcast over the batch axis."""
        return z * self.factor


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
    """One node as torch modules (a Flatten before a Linear that reads maps).

    ``rank`` is the number of feature axes the node reads, when known.
    """
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
    if isinstance(layer, Reshape):  # Unflatten splits one axis: a flat vector first
        flat = [] if rank == 1 else [nn.Flatten()]
        return [*flat, nn.Unflatten(1, layer.shape)]
    if isinstance(layer, Multiply):
        return [FixedFactor(torch.from_numpy(np.array(layer.factor)).to(dtype))]
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
        if type(masks) is PerSample:
            return [_stochastic_depth(p, where)]
    if isinstance(layer, Function):
        raise InvalidParameterError(
            f"{where} (Function {layer.name!r}) has no PyTorch module here: a "
            "layers.Function is a NumPy function of the samples, which a torch module cannot "
            "run; export the graph up to it, or rebuild that step in torch"
        )
    raise InvalidParameterError(
        f"{where} ({type(layer).__name__}) has no PyTorch module here"
        + (" (a NumPy function)" if isinstance(layer, Elementwise) else "")
    )


def _stochastic_depth(p: float, where: str) -> nn.Module:
    """The stochastic depth module of torchvision, ``StochasticDepth(p, "row")``."""
    try:
        from torchvision.ops import StochasticDepth
    except ImportError:
        raise InvalidParameterError(
            f"{where} (Dropout of PerSample masks, stochastic depth) is torchvision's "
            'StochasticDepth, and torchvision is not installed: pip install "regtheory[vision]"'
        ) from None
    return StochasticDepth(p, "row")


def _load(module: Any, layer: Any) -> None:
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.array(layer.weight)))
        if layer.bias is not None:
            module.bias.copy_(torch.from_numpy(np.array(layer.bias)))


def _ranks(graph: Graph) -> list[int | None]:
    """The number of feature axes each node reads, as far as the weights tell.

    A conv's kernel fixes it, a Linear, DropConnect or Flatten makes vectors, a Reshape
    its shape's rank; the other nodes keep it, a join that of its inputs. The input's is
    read from the first conv when that conv reads the input through such nodes (a
    channel mask on the input of a conv net).
    """

    def read(input_rank: int | None) -> list[int | None]:
        out: dict[int, int | None] = {-1: input_rank}
        ranks: list[int | None] = []
        for i, node in enumerate(graph):
            rank = next((out[s] for s in graph.inputs[i] if out[s] is not None), None)
            ranks.append(rank)
            if isinstance(node, Conv):
                rank = node.weight.ndim - 1
            elif isinstance(node, (Linear, DropConnect, Flatten)):
                rank = 1
            elif isinstance(node, Reshape):
                rank = len(node.shape)
            out[i] = rank
        return ranks

    ranks = read(None)
    first_conv = next((i for i, n in enumerate(graph) if isinstance(n, Conv)), None)
    if first_conv is not None and ranks[first_conv] is None:
        ranks = read(graph[first_conv].weight.ndim - 1)
    return ranks


def _graph_module(graph: Graph, parts: list[list[nn.Module]]) -> fx.GraphModule:
    """The DAG of ``graph`` as a ``torch.fx.GraphModule``.

    Node i's modules are its submodule ``"i"`` (an ``nn.Sequential`` when there are
    several); an ``Add`` is ``+`` of its inputs in order, as ``Add.forward`` sums them,
    and a ``Concat`` is ``torch.cat`` along the channel axis.
    """
    code = fx.Graph()
    root = nn.Module()
    values = {-1: code.placeholder("x")}
    for i, node in enumerate(graph):
        args = [values[s] for s in graph.inputs[i]]
        if isinstance(node, Add):
            value = args[0]
            for arg in args[1:]:
                value = code.call_function(operator.add, (value, arg))
        elif isinstance(node, Concat):
            value = code.call_function(torch.cat, (tuple(args),), {"dim": 1})
        else:
            modules = parts[i]
            root.add_module(str(i), modules[0] if len(modules) == 1 else nn.Sequential(*modules))
            value = code.call_module(str(i), (args[0],))
        values[i] = value
    code.output(values[len(graph) - 1])
    return fx.GraphModule(root, code, class_name="RegtheoryGraph")


def to_torch(layers: Graph | Sequence[Node], *, dtype: str | torch.dtype = "float64") -> nn.Module:
    """Build the PyTorch module of a :mod:`regtheory.layers` network.

    The inverse of :func:`from_torch`: ``Linear`` → ``nn.Linear`` (after an
    ``nn.Flatten`` when it reads maps), ``Conv`` → ``nn.Conv1d``/``nn.Conv2d``
    (``padding='same'`` for a same-size one), pooling → ``nn.AvgPool``/``nn.MaxPool``/
    ``nn.AdaptiveAvgPool`` (1-D or 2-D), ``Flatten`` → ``nn.Flatten``, ``Reshape`` →
    ``nn.Unflatten`` (after an ``nn.Flatten`` unless it reads vectors), ``ReLU`` →
    ``nn.ReLU``, an ``Elementwise`` layer made by :func:`from_torch` → its module,
    ``Multiply`` → a module that multiplies by its factor, held as a buffer,
    ``Dropout`` of :class:`~regtheory.masks.Bernoulli` → ``nn.Dropout``, of
    :class:`~regtheory.masks.Channel` → ``nn.Dropout1d``/``nn.Dropout2d`` before a conv
    (``nn.Dropout`` on vectors, where channel masks are elementwise), of an ideal
    :class:`~regtheory.masks.DropBlock` → :class:`DropBlock2d`, of
    :class:`~regtheory.masks.PerSample` (stochastic depth) → torchvision's
    ``StochasticDepth(1 - keep, "row")`` (needs torchvision, the ``vision`` extra).
    ``Add`` is ``+`` of its inputs and ``Concat`` ``torch.cat`` along the channels.
    Gaussian dropout (torch has no module for it), DropConnect, NumPy-function
    activations and :class:`~regtheory.layers.Function` nodes (NumPy functions of the
    samples) are refused by position. A channel mask on the input of a conv net is read
    from the conv after it.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        A chain (each node reads the one before) or a graph with joins.
    dtype : {"float64", "float32"} or torch.dtype
        Of the parameters (float64 keeps the weights bit for bit); a name means the
        torch dtype of that name, as in the Monte Carlo functions' ``dtype``.

    Returns
    -------
    torch.nn.Module
        An ``nn.Sequential`` for a chain; for a graph with joins, a
        ``torch.fx.GraphModule`` whose submodule ``"i"`` is node i (an
        ``nn.Sequential`` where one node takes several modules) and whose code runs the
        graph. In training mode, as a fresh torch module is.

    Raises
    ------
    InvalidParameterError
        For a node with no torch module, named by its position (stochastic depth
        without torchvision installed among them), or a ``dtype`` that is not a
        floating one.

    Examples
    --------
    >>> import numpy as np
    >>> from regtheory.layers import Add, Conv, Dropout, Graph, Linear, ReLU
    >>> from regtheory.masks import Channel
    >>> to_torch([Conv(np.ones((2, 1, 3, 3))), Dropout(Channel(0.8)), Linear(np.ones((1, 50)))])
    Sequential(
      (0): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=same, bias=False)
      (1): Dropout2d(p=0.19999999999999996, inplace=False)
      (2): Flatten(start_dim=1, end_dim=-1)
      (3): Linear(in_features=50, out_features=1, bias=False)
    )

    A residual block, ``relu(conv(x)) + x``:

    >>> block = to_torch(Graph([Conv(np.ones((1, 1, 3))), ReLU(), Add()], inputs={2: (1, -1)}))
    >>> type(block).__name__, [name for name, _ in block.named_children()]
    ('RegtheoryGraph', ['0', '1'])
    >>> import torch
    >>> block(torch.ones(1, 1, 4, dtype=torch.float64)).tolist()
    [[[3.0, 4.0, 4.0, 3.0]]]
    """
    graph = as_graph(layers)
    if isinstance(dtype, str) and dtype in ("float64", "float32"):
        dtype = getattr(torch, dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidParameterError(
            f"`dtype` must be 'float64', 'float32' or a floating torch.dtype, got {dtype!r}"
        )
    parts = [
        []
        if isinstance(layer, (Add, Concat))
        else _torch_layer(layer, f"`layers[{i}]`", rank, dtype)
        for i, (layer, rank) in enumerate(zip(graph, _ranks(graph)))
    ]
    if graph.is_chain:
        return nn.Sequential(*(module for modules in parts for module in modules))
    return _graph_module(graph, parts)
