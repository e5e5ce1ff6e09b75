"""Monte Carlo draws through a traced model, computing only what a mask changes.

The clean forward (every mask at one) is run once and every node's value kept; a draw
of a set of active dropout sites recomputes only the nodes downstream of those sites,
on the batch of draws stacked along the batch axis, and reads the rest from the clean
pass. Everything runs on the model's device and in its dtype; losses are taken in
float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.fx

from .._validation import InvalidParameterError
from ._losses import Loss
from ._trace import Traced, run_node, where


def _descendants(start: Sequence[torch.fx.Node]) -> set[torch.fx.Node]:
    seen: set[torch.fx.Node] = set()
    stack = list(start)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(node.users)
    return seen


class Runner:
    """The clean pass of a traced model on ``x``, and draws of its dropout sites."""

    def __init__(self, traced: Traced, x: torch.Tensor) -> None:
        self.gm, self.sites = traced.gm, traced.sites
        self.nodes = list(self.gm.graph.nodes)
        inputs = [node for node in self.nodes if node.op == "placeholder"]
        self.input = inputs[0]
        self.n = x.shape[0]
        by_name = {node.name: node for node in self.nodes}
        self.site_nodes = [by_name[info.node] for info in self.sites]
        self.clean = self._clean(x, inputs[1:])
        out = self.clean[self.nodes[-1]]
        if not isinstance(out, torch.Tensor):
            raise InvalidParameterError(
                f"the model must return one tensor, got {type(out).__name__}"
            )
        self.output = out
        derived = _descendants([self.input])
        self.batched = {
            node
            for node in derived
            if isinstance(self.clean.get(node), torch.Tensor)
            and self.clean[node].dim() > 0
            and self.clean[node].shape[0] == self.n
        }
        self.shape_nodes = {
            node
            for node in derived
            if node.op != "output" and not isinstance(self.clean.get(node), torch.Tensor)
        }
        self.site_shapes = [tuple(self.clean[node.args[0]].shape) for node in self.site_nodes]
        self._check_sites()
        self._plans: dict[tuple[int, ...], list[torch.fx.Node]] = {}

    def _clean(self, x: torch.Tensor, extra: list[torch.fx.Node]) -> dict:
        env: dict[torch.fx.Node, Any] = {self.input: x}
        for node in extra:  # further forward arguments: their defaults
            if not node.args:
                raise InvalidParameterError(
                    f"the model's forward takes a second input `{node.name}` without a "
                    "default; the penalty feeds it the data only"
                )
            env[node] = node.args[0]
        for info in self.sites:
            info.module.mask = None
        with torch.no_grad():
            for node in self.nodes:
                if node not in env:
                    try:
                        env[node] = run_node(node, self.gm, env)
                    except (RuntimeError, TypeError, IndexError, ValueError) as exc:
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                        raise InvalidParameterError(
                            f"at {self._where(node)}: {first or type(exc).__name__}"
                        ) from None
        return env

    def _where(self, node: torch.fx.Node) -> str:
        """A node as messages name it: the module's path and type, or the call."""
        if node.op == "call_module":
            module = self.gm.get_submodule(str(node.target))
            info = next((s for s in self.sites if s.module is module), None)
            if info is not None:
                return info.label
            return f"{where(str(node.target))} ({type(module).__name__})"
        return f"`{node.name}`"

    def _check_sites(self) -> None:
        """Each site's input fits its mask: channel masks need maps, blocks fit."""
        for info, shape in zip(self.sites, self.site_shapes):
            rank = info.module.rank
            if rank is not None and len(shape) != rank:
                raise InvalidParameterError(
                    f"at {info.label}: it needs {rank - 1} feature axes, got activations "
                    f"of shape {shape[1:]}"
                )
            block = info.module.block
            if block is not None and block.block_size > min(shape[2:]):
                raise InvalidParameterError(
                    f"at {info.label}: it has block_size {block.block_size}, larger than its "
                    f"maps {shape[2:]}"
                )

    def plan(self, active: tuple[int, ...]) -> list[torch.fx.Node]:
        """The nodes a draw of the ``active`` sites recomputes, in order."""
        if active not in self._plans:
            fresh = _descendants([self.site_nodes[k] for k in active]) | self.shape_nodes
            self._plans[active] = [node for node in self.nodes if node in fresh]
        return self._plans[active]

    def masks(
        self, size: int, rng: np.random.Generator, generator: torch.Generator
    ) -> list[torch.Tensor]:
        """A fresh mask of every site for ``size`` draws (of the whole data each)."""
        like = self.output
        return [
            info.module.draw((size * shape[0], *shape[1:]), rng, generator, like)
            for info, shape in zip(self.sites, self.site_shapes)
        ]

    def run(
        self, active: tuple[int, ...], masks: Sequence[torch.Tensor], size: int
    ) -> torch.Tensor:
        """The output of ``size`` draws stacked, ``(size * n, ...)``: ``active`` sites on."""
        for k, info in enumerate(self.sites):
            info.module.mask = masks[k] if k in active else None
        env = _Repeated(self.clean, self.batched, size)
        try:
            with torch.no_grad():
                for node in self.plan(active):
                    env[node] = run_node(node, self.gm, env)
        finally:
            for info in self.sites:
                info.module.mask = None
        return env[self.nodes[-1]]

    def losses(
        self, out: torch.Tensor, loss: Loss, target: Any, base: torch.Tensor, size: int
    ) -> np.ndarray:
        """Each draw's mean loss gap from the stacked outputs."""
        per = loss.per_sample(out, loss.repeat(target, size)).reshape(size, self.n)
        return (per.mean(dim=1) - base).cpu().numpy()


class _Repeated(dict):
    """The clean values, input-derived ones repeated ``size`` times along the batch."""

    def __init__(self, clean: dict, batched: set, size: int) -> None:
        super().__init__()
        self.clean, self.batched, self.size = clean, batched, size

    def __missing__(self, node: torch.fx.Node) -> Any:
        value = self.clean[node]
        if node in self.batched and self.size > 1:
            value = value.repeat(self.size, *(1,) * (value.dim() - 1))
        self[node] = value
        return value
