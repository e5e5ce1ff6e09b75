"""A traced PyTorch model as the package's one network description (:mod:`regtheory.layers`).

Each tensor node of the traced forward becomes a node of a :class:`regtheory.layers.Graph`
with float64 copies of its weights: linear and convolution layers, pooling, ReLU and the
elementwise activations, evaluation-mode batch norms (folded into the layer before them
where they can be), flattening and reshaping, residual sums, concatenation and the
dropout sites. Anything else is an opaque node that torch evaluates (in float64): the
exact penalty reads it before the first dropout site and refuses it after.
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn
from torch.nn import functional as F  # noqa: N812

from .._validation import InvalidParameterError
from ..layers import (
    Add,
    Concat,
    Conv,
    DropConnect,
    Dropout,
    Elementwise,
    Flatten,
    Function,
    Graph,
    Linear,
    Multiply,
    ReLU,
    Reshape,
)
from ..masks import Bernoulli
from ._convert import _batchnorm, _conv, _diagonal, _fold, _pool, _TorchFunction
from ._modules import _BATCHNORMS, _ELEMENTWISE, _POOLS, _array, _maybe
from ._runner import Runner
from ._trace import ADDITIONS, Site, run_node, tensor_inputs, where


def _torch_function(function: Callable[..., torch.Tensor]) -> Callable[..., np.ndarray]:
    """A torch function of tensors as a NumPy function of float64 arrays."""

    def numpy_function(*zs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = function(*(torch.from_numpy(np.ascontiguousarray(z)) for z in zs))
        return out.detach().to(torch.float64).numpy()

    return numpy_function


@dataclass
class _Builder:
    runner: Runner
    nodes: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    labels: list = field(default_factory=list)
    index: dict = field(default_factory=dict)

    def add(self, fx: torch.fx.Node, node: Any, sources: list[int]) -> None:
        i = len(self.nodes)
        self.nodes.append(node)
        self.labels.append(where(str(fx.target)) if fx.op == "call_module" else fx.name)
        if tuple(sources) != (i - 1,):
            self.inputs[i] = tuple(sources)
        self.index[fx] = i


def _shape(runner: Runner, fx: torch.fx.Node) -> tuple[int, ...]:
    return tuple(int(s) for s in runner.clean[fx].shape[1:])


def _opaque(runner: Runner, fx: torch.fx.Node, sources: list[torch.fx.Node]) -> Function:
    """The fx node as a torch function of its batched tensor inputs, in float64."""
    gm = runner.gm
    consts: dict[torch.fx.Node, Any] = {}

    def collect(arg: Any) -> Any:
        if isinstance(arg, torch.fx.Node) and arg not in sources:
            value = runner.clean[arg]
            is_float = isinstance(value, torch.Tensor) and value.is_floating_point()
            consts[arg] = value.detach().to(torch.float64) if is_float else value
        return arg

    torch.fx.node.map_arg((fx.args, fx.kwargs), collect)
    module = None
    if fx.op == "call_module":
        module = copy.deepcopy(gm.get_submodule(str(fx.target))).to(torch.float64).eval()

    def function(*ts: torch.Tensor) -> torch.Tensor:
        env = dict(consts)
        env.update(zip(sources, ts))
        if module is not None:
            args = torch.fx.node.map_arg(fx.args, env.__getitem__)
            kwargs = torch.fx.node.map_arg(fx.kwargs, env.__getitem__)
            return module(*args, **kwargs)
        return run_node(fx, gm, env)

    target = fx.target if isinstance(fx.target, str) else getattr(fx.target, "__name__", "")
    kind = type(gm.get_submodule(str(fx.target))).__name__ if module is not None else target
    return Function(
        _torch_function(function),
        _shape(runner, fx),
        name=kind,
        n_inputs=len(sources),
    )


def _module_node(module: nn.Module, fx: torch.fx.Node, rank: int, runner: Runner) -> Any:
    """A known torch module as a node; ``"norm"`` tuples for batch norms, None if unknown."""
    where, kind = f"`{fx.target}`", type(module)
    try:
        if kind is nn.Linear and rank == 1:
            return Linear(_array(module.weight), bias=_maybe(module.bias))
        if kind in (nn.Conv1d, nn.Conv2d):
            return _conv(module, where)  # type: ignore[arg-type]
        if kind in _POOLS:
            return _pool(module, where)
        if kind in _BATCHNORMS:
            return ("norm", *_batchnorm(module, where))
    except InvalidParameterError:
        return None
    if kind is nn.ReLU:
        return ReLU()
    if kind in _ELEMENTWISE:
        return Elementwise(_TorchFunction(module), name=kind.__name__)
    if kind in (nn.Flatten, nn.Unflatten):
        return _reshape(runner, fx)
    if kind is nn.Identity:
        return "pass"
    return None


def _reshape(runner: Runner, fx: torch.fx.Node) -> Any:
    if fx not in runner.batched:
        return None
    shape = _shape(runner, fx)
    return Flatten() if len(shape) == 1 else Reshape(shape)


def _function_node(fx: torch.fx.Node, sources: list, runner: Runner) -> Any:
    """A call of a known torch function or method as a node, else None."""
    target = fx.target
    if fx.op == "call_function":
        if target in ADDITIONS and len(sources) == 2 and len(fx.args) == 2 and not fx.kwargs:
            return Add()
        if target in (torch.cat, torch.concat) and len(sources) >= 2:
            dim = fx.args[1] if len(fx.args) > 1 else fx.kwargs.get("dim", 0)
            rank = len(_shape(runner, fx))
            parts = fx.args[0]
            if (
                dim in (1, -rank)
                and isinstance(parts, (list, tuple))
                and len(sources) == len(parts)
            ):
                return Concat()
        if target in (F.relu, torch.relu) and len(sources) == 1:
            return ReLU()
        if target is torch.flatten:
            return _reshape(runner, fx)
        if target in (operator.mul, torch.mul) and len(sources) == 1:
            factor = next((a for a in fx.args if isinstance(a, (int, float))), None)
            if factor is not None and not isinstance(factor, bool):
                return Multiply(np.full(_shape(runner, fx), float(factor)))
        return None
    if fx.op == "call_method":
        if target in ("view", "reshape", "flatten"):
            return _reshape(runner, fx)
        if target == "relu":
            return ReLU()
        if target in ("contiguous", "clone"):
            return "pass"
    return None


def layers_graph(runner: Runner) -> tuple[Graph, list[str]]:
    """The traced model as a :class:`regtheory.layers.Graph`, and each node's fx name.

    Raises
    ------
    InvalidParameterError
        If a dropout site has no mask law the graph can hold.
    """
    b = _Builder(runner)
    b.index[runner.input] = -1
    sites = {node: info for node, info in zip(runner.site_nodes, runner.sites)}
    for fx in runner.nodes:
        if fx.op in ("placeholder", "get_attr", "output") or fx not in runner.batched:
            continue
        srcs = [a for a in tensor_inputs(fx, runner.clean) if a in runner.batched]
        sources = [b.index[a] for a in srcs]
        if fx in sites:
            info = sites[fx]
            if info.law is None:
                raise InvalidParameterError(f"{info.label} has no mask law the exact penalty reads")
            b.add(fx, Dropout(info.law), sources)
            b.labels[-1] = info.label.split(" (")[0]
            continue
        node = None
        if fx.op == "call_module":
            module = runner.gm.get_submodule(str(fx.target))
            if not isinstance(module, Site):
                node = _module_node(module, fx, len(_shape(runner, srcs[0])) if srcs else 0, runner)
        elif fx.op in ("call_function", "call_method"):
            node = _function_node(fx, srcs, runner)
        if node == "pass" and len(sources) == 1:
            b.index[fx] = sources[0]
        elif isinstance(node, tuple):  # a batch norm: fold into the layer before, or a diagonal
            _norm(b, fx, node, sources, srcs)
        elif node is not None and node != "pass":
            b.add(fx, node, sources)
        else:
            b.add(fx, _opaque(runner, fx, srcs), sources)
    out = runner.nodes[-1].args[0]
    if b.index.get(out, -1) != len(b.nodes) - 1:
        raise InvalidParameterError("the model's output is not its last traced step")
    sources = [b.inputs.get(i, (i - 1,)) for i in range(len(b.nodes))]
    drop = _flattens_read_by_linear(b.nodes, sources)
    nodes, inputs = _pruned(b.nodes, sources, drop)
    return Graph(nodes, inputs=inputs), [x for i, x in enumerate(b.labels) if i not in drop]


def _norm(b: _Builder, fx, node, sources, srcs) -> None:
    _, scale, shift = node
    s = sources[0]
    last = b.nodes[s] if s >= 0 else None
    if isinstance(last, (Linear, Conv)) and len(srcs[0].users) == 1:
        b.nodes[s] = _fold(last, scale, shift)
        b.index[fx] = s
    else:
        b.add(fx, _diagonal(scale, shift, len(_shape(b.runner, fx))), sources)


def _pruned(nodes: Sequence, sources: Sequence[tuple[int, ...]], drop: Sequence[int]):
    """The nodes but those at ``drop`` (each read through as its own input); sources."""
    keep = [i for i in range(len(nodes)) if i not in drop]
    new = {old: k for k, old in enumerate(keep)}

    def source(s: int) -> int:
        while s in drop:
            s = sources[s][0]
        return -1 if s < 0 else new[s]

    inputs = {k: tuple(source(s) for s in sources[old]) for k, old in enumerate(keep)}
    return tuple(nodes[i] for i in keep), inputs


def without(graph: Graph, drop: Sequence[int]) -> Graph:
    """The graph without the nodes at ``drop`` (each read through as its own input)."""
    return Graph(*_pruned(graph.nodes, graph.inputs, drop))


def _flattens_read_by_linear(nodes: Sequence, sources: Sequence[tuple[int, ...]]) -> list[int]:
    """The Flattens whose output only a Linear reads (it flattens anyway).

    Maybe through elementwise nodes and elementwise masks, which act alike on maps and
    vectors.
    """
    users: dict[int, list[int]] = {}
    for i, srcs in enumerate(sources):
        for s in srcs:
            users.setdefault(s, []).append(i)
    found = []
    for i, node in enumerate(nodes):
        j = i
        while True:
            after = users.get(j, [])
            if len(after) != 1:
                break
            j = after[0]
            step = nodes[j]
            bernoulli = isinstance(step, Dropout) and type(step.masks) is Bernoulli
            if not (step.elementwise or bernoulli):
                break
        if isinstance(node, Flatten) and j != i and isinstance(nodes[j], (Linear, DropConnect)):
            found.append(i)
    return found


def rename(message: str, labels: list[str]) -> str:
    """A message of the layers engine with graph positions as the traced names."""
    message = re.sub(r"`layers\[(\d+)\]`", lambda m: f"`{labels[int(m.group(1))]}`", message)
    message = re.sub(r"\(position (\d+)\)", lambda m: f"(`{labels[int(m.group(1))]}`)", message)
    return re.sub(r"at position (\d+)", lambda m: f"`{labels[int(m.group(1))]}`", message)
