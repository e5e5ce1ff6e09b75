"""A PyTorch model read through ``torch.fx``: its real forward, its dropout sites.

:func:`trace` records the model's forward as a graph (custom modules, residual sums,
functional calls and a module called twice included), finds every dropout site in it
and replaces each by a :class:`Site` whose mask the package controls, so that the same
traced function serves the exact penalty and the Monte Carlo draws. A model that
``torch.fx`` cannot trace, or that draws random numbers the package does not read,
raises :class:`Untraceable` with the reason; the caller then runs the model's own
forward.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn
from torch.nn import functional as F  # noqa: N812

from .._validation import InvalidParameterError
from ..masks import Bernoulli, Channel, MaskDistribution, kept_units
from ._modules import DropBlock2d

#: functional dropout: elementwise, or one draw per channel
_FUNCTIONAL = {
    F.dropout: "elementwise",
    torch.dropout: "elementwise",
    F.dropout1d: "channel",
    F.dropout2d: "channel",
    F.dropout3d: "channel",
}
_FUNCTION_NAMES = {
    F.dropout: "F.dropout",
    torch.dropout: "torch.dropout",
    F.dropout1d: "F.dropout1d",
    F.dropout2d: "F.dropout2d",
    F.dropout3d: "F.dropout3d",
}

#: random functions and methods that are not a dropout the package reads
_RANDOM_FUNCTIONS = {
    torch.rand,
    torch.rand_like,
    torch.randn,
    torch.randn_like,
    torch.randint,
    torch.randint_like,
    torch.bernoulli,
    torch.normal,
    torch.multinomial,
    torch.randperm,
    F.alpha_dropout,
    F.feature_alpha_dropout,
    torch.alpha_dropout,
    torch.feature_alpha_dropout,
}
_RANDOM_METHODS = {
    "bernoulli",
    "bernoulli_",
    "uniform_",
    "normal_",
    "random_",
    "exponential_",
    "geometric_",
    "cauchy_",
    "log_normal_",
}


_RANKS = {nn.Dropout1d: 3, nn.Dropout2d: 4, nn.Dropout3d: 5}


class Untraceable(Exception):
    """The model cannot be read as a graph; the message says why."""


def _stochastic_depth(module: nn.Module) -> tuple[float, str, bool] | None:
    """(p, mode, scaled) of torchvision's StochasticDepth or timm's DropPath, else None."""
    kind = type(module)
    if kind.__name__ == "StochasticDepth" and kind.__module__.startswith("torchvision"):
        return float(module.p), str(module.mode), True  # type: ignore[arg-type]
    if kind.__name__ == "DropPath" and hasattr(module, "drop_prob"):
        scaled = bool(getattr(module, "scale_by_keep", True))
        return float(module.drop_prob), "row", scaled  # type: ignore[arg-type]
    return None


def _torchvision_dropblock(module: nn.Module) -> bool:
    kind = type(module)
    return kind.__module__.startswith("torchvision") and "DropBlock" in kind.__name__


def _is_dropout_module(module: nn.Module) -> bool:
    return isinstance(
        module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, DropBlock2d)
    ) or (_stochastic_depth(module) is not None)


class _Tracer(torch.fx.Tracer):
    """torch's tracer, with every dropout module a leaf (a site to read)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if _is_dropout_module(m) or _torchvision_dropblock(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)


class Site(nn.Module):
    """A dropout site of a traced model: the identity, or a mask the package draws.

    ``kind`` says how the mask is shared: ``"elementwise"`` (one draw per entry),
    ``"channel"`` (per channel), ``"sample"`` (per sample: stochastic depth),
    ``"block"`` (DropBlock, drawn by ``block``). ``mask`` is set by the caller before a
    run (a tensor broadcasting against the input), or left None: the identity. With
    ``scales`` set to a list, each call multiplies its input by a fresh tensor of ones
    of the mask's shape that requires grad, and appends it there.
    """

    def __init__(
        self,
        kind: str,
        keep: float,
        *,
        scaled: bool = True,
        block: Any = None,
        rank: int | None = None,
    ):
        super().__init__()
        self.kind, self.keep, self.scaled, self.block = kind, keep, scaled, block
        self.rank = rank  # the input's number of axes, batch included, when fixed
        self.mask: torch.Tensor | None = None
        self.scales: list[torch.Tensor] | None = None

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the mask for an input batch of ``shape``."""
        if self.kind in ("elementwise", "block"):
            return shape
        if self.kind == "channel":
            return (*shape[:2], *(1,) * (len(shape) - 2))
        return (shape[0], *(1,) * (len(shape) - 1))

    def draw(
        self,
        shape: tuple[int, ...],
        rng: np.random.Generator,
        generator: torch.Generator,
        like: torch.Tensor,
    ) -> torch.Tensor:
        """A fresh mask for an input batch of ``shape`` (device and dtype of ``like``).

        On the CPU the kept units come from ``rng`` by :func:`regtheory.masks.kept_units`
        (exact Bernoulli draws from a few random bits each, the same on every machine);
        on another device from torch's ``generator`` there.
        """
        if self.kind == "block":
            ones = torch.ones(shape, dtype=like.dtype, device=like.device)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**62)))
                return self.block.train()(ones)
        shape = self.mask_shape(shape)
        if like.device.type == "cpu":
            mask = torch.from_numpy(kept_units(self.keep, shape, rng)).to(like.dtype)
        else:
            mask = torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)
            mask.lt_(self.keep)
        return mask.div_(self.keep) if self.scaled else mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scales is not None:  # a scale of ones: derivatives in the mask at one
            scale = torch.ones(
                self.mask_shape(tuple(x.shape)), dtype=x.dtype, device=x.device, requires_grad=True
            )
            self.scales.append(scale)
            return x * scale
        return x if self.mask is None else x * self.mask


@dataclass(frozen=True)
class SiteInfo:
    """One dropout site: its fx node, label, mask law (None: no exact law) and module."""

    node: str
    label: str
    law: MaskDistribution | None
    module: Site
    source: nn.Module | None


@dataclass(frozen=True)
class Traced:
    """A traced model: the graph module (sites in place) and its dropout sites."""

    gm: torch.fx.GraphModule
    sites: tuple[SiteInfo, ...]


@contextmanager
def modes(model: nn.Module, training: bool) -> Iterator[None]:
    """Every module of ``model`` in ``training`` mode; the modes restored after."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.train(training)
        yield
    finally:
        for module, mode in saved:
            module.train(mode)


def trace(model: nn.Module) -> Traced:
    """The model's forward as a graph module whose dropout sites the package controls.

    The model is traced in training mode (its forward as when it trains; a functional
    dropout counts whatever its ``training`` argument); it is not modified.

    Raises
    ------
    Untraceable
        If ``torch.fx`` cannot trace it, or it draws random numbers at a call that is
        not a dropout the package reads.
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise Untraceable("it is a TorchScript module, which torch.fx cannot trace")
    tracer = _Tracer()
    try:
        with modes(model, True):
            graph = tracer.trace(model)
    except Exception as exc:  # torch.fx raises many kinds (TraceError, TypeError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise Untraceable(f"torch.fx cannot trace it ({type(exc).__name__}: {first})") from None
    gm = torch.fx.GraphModule(tracer.root, graph)
    _refuse_randomness(gm)
    sites = _install_sites(gm)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return Traced(gm, tuple(sites))


def _refuse_randomness(gm: torch.fx.GraphModule) -> None:
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        where = f"`{node.name}`"
        if node.op == "call_function" and node.target in _RANDOM_FUNCTIONS:
            raise Untraceable(
                f"its forward draws random numbers at {where} ({node.target.__name__})"
            )
        if node.op == "call_method" and node.target in _RANDOM_METHODS:
            raise Untraceable(f"its forward draws random numbers at {where} (.{node.target})")
        if node.op == "call_module":
            module = modules[node.target]
            _refuse_module(module, node.target)
            if isinstance(module, (nn.AlphaDropout, nn.FeatureAlphaDropout)):
                raise Untraceable(
                    f"{type(module).__name__} at `{node.target}` has no mask law here"
                )
            sd = _stochastic_depth(module)
            if sd is not None and sd[1] != "row":
                raise Untraceable(
                    f"{type(module).__name__} at `{node.target}` drops whole batches "
                    f"(mode={sd[1]!r}): only per-sample stochastic depth (mode='row') is a mask law"
                )


def _refuse_module(module: nn.Module, target: str) -> None:
    """Modules no penalty can take: the answer would depend on how the batch is formed."""
    kind = type(module)
    name = f"{where(target)} ({kind.__name__})"
    if _torchvision_dropblock(module):
        raise InvalidParameterError(
            f"{name} is not supported: torchvision's DropBlock draws blocks at Ghiasi et "
            "al.'s approximate rate and rescales by the kept fraction of the whole batch, "
            "which no per-sample mask distribution matches; train with "
            "regtheory.pytorch.DropBlock2d (the exact rate) instead"
        )
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is None:
        raise InvalidParameterError(
            f"{name} has no running statistics (track_running_stats=False): in evaluation "
            "mode it normalises by the batch, so a sample's output depends on the others"
        )


def _argument(node: torch.fx.Node, index: int, name: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def where(target: str) -> str:
    """A module's path as Python reads it: ``model.features[3]`` for ``features.3``."""
    path = "model"
    for part in str(target).split("."):
        path += f"[{part}]" if part.isdigit() else f".{part}"
    return path


def _site_of(node: torch.fx.Node, modules: dict[str, nn.Module]) -> tuple | None:
    """(kind, p, scaled, label, law, source module) of a dropout call, else None."""
    if node.op == "call_module":
        target = str(node.target)
        module = modules[target]
        kind = type(module).__name__
        if isinstance(module, DropBlock2d):
            return (
                "block",
                module.p,
                True,
                f"{where(target)} ({kind}, p={module.p:g})",
                module.masks,
                module,
            )
        if isinstance(module, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
            p = float(module.p)
            return (
                "channel",
                p,
                True,
                f"{where(target)} ({kind}, p={p:g})",
                Channel(1 - p) if p < 1 else None,
                module,
            )
        if isinstance(module, nn.Dropout):
            p = float(module.p)
            return (
                "elementwise",
                p,
                True,
                f"{where(target)} ({kind}, p={p:g})",
                Bernoulli(1 - p) if p < 1 else None,
                module,
            )
        sd = _stochastic_depth(module)
        if sd is not None:
            p, _, scaled = sd
            return (
                "sample",
                p,
                scaled,
                f"{where(target)} ({kind}, p={p:g})",
                _per_sample(p, scaled),
                module,
            )
        return None
    if node.op == "call_function" and node.target in _FUNCTIONAL:
        p = _argument(node, 1, "p", 0.5)
        if not isinstance(p, (int, float)):
            raise Untraceable(f"the dropout rate at `{node.name}` is computed, not a number")
        p, kind = float(p), _FUNCTIONAL[node.target]
        law = None if p >= 1 else (Bernoulli(1 - p) if kind == "elementwise" else Channel(1 - p))
        return (kind, p, True, f"{node.name} ({_FUNCTION_NAMES[node.target]}, p={p:g})", law, None)
    return None


def _per_sample(p: float, scaled: bool) -> MaskDistribution | None:
    from .. import masks

    law = getattr(masks, "PerSample", None)
    return law(1.0 - p) if (law is not None and scaled and p < 1) else None


def _install_sites(gm: torch.fx.GraphModule) -> list[SiteInfo]:
    """Replace every dropout call by a :class:`Site` module; their records in order."""
    modules = dict(gm.named_modules())
    found: list[SiteInfo] = []
    for node in list(gm.graph.nodes):
        spec = _site_of(node, modules)
        if spec is None:
            continue
        kind, p, scaled, label, law, source = spec
        if not 0.0 <= p < 1.0:
            raise InvalidParameterError(f"{label} must have p in [0, 1)")
        block = None
        if kind == "block":
            block = DropBlock2d(p, source.block_size)
        rank = 4 if kind == "block" else _RANKS.get(type(source)) if source is not None else None
        if source is None and node.target in (F.dropout1d, F.dropout2d, F.dropout3d):
            rank = {F.dropout1d: 3, F.dropout2d: 4, F.dropout3d: 5}[node.target]
        site = Site(kind, 1.0 - p, scaled=scaled, block=block, rank=rank)
        name = f"_regtheory_site{len(found)}"
        gm.add_submodule(name, site)
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        found.append(SiteInfo(new.name, label, law, site, source))
    counts: dict[str, int] = {}
    for info in found:
        counts[info.label] = counts.get(info.label, 0) + 1
    seen: dict[str, int] = {}
    labelled = []
    for info in found:
        if counts[info.label] > 1:
            seen[info.label] = seen.get(info.label, 0) + 1
            info = SiteInfo(
                info.node,
                f"{info.label} call {seen[info.label]}",
                info.law,
                info.module,
                info.source,
            )
        labelled.append(info)
    return labelled


def tensor_inputs(node: torch.fx.Node, values: dict) -> list[torch.fx.Node]:
    """The fx nodes whose tensor values ``node`` reads, in order, without repeats."""
    found: list[torch.fx.Node] = []

    def visit(arg: Any) -> Any:
        if isinstance(arg, torch.fx.Node) and isinstance(values.get(arg), torch.Tensor):
            if arg not in found:
                found.append(arg)
        return arg

    torch.fx.node.map_arg((node.args, node.kwargs), visit)
    return found


def run_node(node: torch.fx.Node, gm: torch.fx.GraphModule, env: dict) -> Any:
    """The value of one fx node, its inputs read from ``env``."""
    args = torch.fx.node.map_arg(node.args, env.__getitem__)
    kwargs = torch.fx.node.map_arg(node.kwargs, env.__getitem__)
    target: Any = node.target
    if node.op == "call_module":
        return gm.get_submodule(target)(*args, **kwargs)
    if node.op == "call_function":
        return target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], target)(*args[1:], **kwargs)
    if node.op == "get_attr":
        value: Any = gm
        for part in str(node.target).split("."):
            value = getattr(value, part)
        return value
    if node.op == "output":
        return args[0]
    raise RuntimeError(f"no value for the {node.op} node `{node.name}`")


ADDITIONS = {operator.add, operator.iadd, torch.add}
