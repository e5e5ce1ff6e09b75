"""The dropout penalty of a PyTorch model.

Exact on its graph, or by Monte Carlo with the model's own dropout modules.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from .. import network
from .._events import mask_events
from .._grammar import RngLike, as_rng, check_method, keyword_only, transition_to_rng
from .._overflow import QUADRATIC, finite_result, overflow_error
from .._results import Penalty
from .._validation import (
    InvalidParameterError,
    check_int,
    check_n_masks,
)
from ..layers import (
    Graph,
    as_graph,
)
from ..montecarlo import default_n_masks, estimate, min_draws
from ..network._moments import exact_refusal
from ._convert import _convert_model
from ._modules import _DROPOUTS, _as_array, _leaves, _placement


@dataclass(frozen=True)
class PenaltyReport:
    r"""The dropout penalty of a PyTorch model on data, and what each dropout layer pays.

    Attributes
    ----------
    value : float
        :math:`P = \mathbb E_r L(r) - L(\mathbf 1)`, exact or its Monte Carlo estimate
        (``total`` is its deprecated name).
    stderr : float
        Standard error of ``value``; 0.0 when exact.
    method : str
        ``"exact"`` or ``"mc"`` (Monte Carlo), as ``regtheory.Penalty.method``.
    dropouts : tuple of str
        Each dropout module: its position in the model, its type and p.
    own : ndarray, read-only
        Each dropout module's penalty alone (the other dropout modules off, as in
        evaluation mode); ``NaN`` where not computed (``by_layer=False``).
    own_stderr : ndarray, read-only
        Their standard errors (0.0 when exact).
    n_masks : int or None
        Monte Carlo draws behind ``value`` (None when exact).
    terms : network.PenaltyTerms or None
        The exact split over every subset of dropout layers, when exact.
    layers : regtheory.layers.Graph
        The converted network, the one description every path reads.
    """

    value: float
    stderr: float
    method: str
    dropouts: tuple[str, ...]
    own: np.ndarray = field(repr=False)
    own_stderr: np.ndarray = field(repr=False)
    n_masks: int | None
    terms: network.PenaltyTerms | None = field(repr=False)
    layers: Graph = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("own", "own_stderr"):
            values = np.array(getattr(self, name), dtype=float)
            values.setflags(write=False)
            object.__setattr__(self, name, values)

    @property
    def total(self) -> float:
        """Deprecated name of ``value``."""
        warnings.warn(
            "PenaltyReport.total is deprecated; use PenaltyReport.value",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.value

    @property
    def interaction(self) -> float:
        """What the layers pay together beyond their own penalties: value − Σ own."""
        return self.value - float(np.sum(self.own))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values (no layers)."""
        return {
            "value": self.value,
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
        how = "exact" if self.method == "exact" else f"Monte Carlo, {self.n_masks} draws"
        lines = [f"dropout penalty {self.value:.6g}{pm}  ({how})"]
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


def _torch_mc(model, drops, X, Y, *, active, n_masks, seed, widest) -> Penalty:
    """E L(r) − L(1) over the masks of the ``active`` dropout modules, by running the model.

    The draws of a batch are stacked along the batch axis (one forward pass); each batch
    seeds torch's generator from ``seed``'s stream, inside ``torch.random.fork_rng`` so
    the caller's torch random state is untouched. The model runs in its own dtype and on
    its own device; the losses are taken in float64.
    """
    device, dtype = _placement(model)
    n = X.shape[0]
    x = torch.from_numpy(X).to(device=device, dtype=dtype)
    y = torch.from_numpy(Y).to(device=device, dtype=torch.float64).reshape(n, -1)
    events, words = mask_events([drops[i][:2] for i in active])
    need = min_draws(events)
    n_masks = check_n_masks(default_n_masks(events) if n_masks is None else n_masks, need, words)
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


@finite_result("the dropout penalty of the model", fields=("value", "stderr"))
@keyword_only(2)
@transition_to_rng
def dropout_penalty(
    model: nn.Module,
    X: ArrayLike | torch.Tensor,
    *,
    Y: ArrayLike | torch.Tensor | None = None,
    method: str = "auto",
    n_masks: int | None = None,
    rng: RngLike = 0,
    by_layer: bool = True,
) -> PenaltyReport:
    r"""Dropout penalty :math:`\mathbb{E}_r L(r) - L(\mathbf 1)` of a PyTorch model on data.

    The model is converted by :func:`from_torch` (which refuses unsupported modules by
    position). ``method="exact"`` computes the penalty by moment propagation
    (:func:`regtheory.network.dropout_penalty_terms`, in float64 on the converted
    weights, whatever the model's dtype), which takes networks whose non-linearities
    all come before the first dropout module. ``method="mc"`` estimates it by Monte
    Carlo with the model itself: its dropout modules in training mode and every other
    module in evaluation mode (batch norms use their running statistics), on the model's
    device and in its dtype, with the squared losses taken in float64; each draw is the
    loss gap on the whole data with fresh masks, and the estimate's standard error is
    honest (:func:`regtheory.montecarlo.min_draws` refuses too few draws). torch's random
    state is left as it was; the same ``rng`` gives the same numbers on the same machine.
    ``method="auto"`` is exact where the moment propagation takes the network, else
    Monte Carlo.

    .. math:: P = \mathbb{E}_r\, \frac1n \sum_{k} \|y_k - f_{r_k}(x_k)\|^2
              - \frac1n \sum_{k} \|y_k - f_{\mathbf 1}(x_k)\|^2 .

    With ``by_layer`` each dropout module's penalty *alone* (the others off) is
    computed the same way: which layer pays what, and what they pay together.

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
    method : {"auto", "exact", "mc"}
        How to compute it (above).
    n_masks : int, optional
        Monte Carlo draws per estimate; default
        :func:`regtheory.montecarlo.default_n_masks` of the rare mask events.
    rng : int, numpy.random.Generator or None
        Source of the Monte Carlo masks (``seed=`` still works, with a warning).
    by_layer : bool
        Also compute each dropout module's own penalty.

    Returns
    -------
    PenaltyReport
        ``value``, ``stderr`` (0.0 when exact), ``method``, ``dropouts``, ``own``,
        ``own_stderr``, ``interaction``, ``terms`` (exact only) and the converted
        ``layers``; ``print(report)`` shows a table, ``report.to_dict()`` JSON values.

    Raises
    ------
    InvalidParameterError
        For a refused argument (a module not supported, data that do not fit, too few
        ``n_masks``), or ``method="exact"`` for a model it cannot take.

    Examples
    --------
    Dropout (keep 0.5, λ = 1) before u = (1, 2) on x = (1, 1):
    :math:`\lambda \sum_i u_i^2 x_i^2 = 5`.

    >>> import numpy as np, torch
    >>> last = torch.nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = last.weight.copy_(torch.tensor([[1.0, 2.0]]))
    >>> report = dropout_penalty(torch.nn.Sequential(torch.nn.Dropout(0.5), last), np.ones((3, 2)))
    >>> report.value, report.method
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
    method, n_masks = _options(method, n_masks, by_layer)
    gen = as_rng(rng)  # refuse a bad rng even where the penalty is exact
    why = None if method == "mc" else exact_refusal(graph, X.shape[1:])
    if method == "exact" and why is not None:
        raise InvalidParameterError(why)
    if method != "mc" and why is None:
        report = _exact_report(graph, names, X, Y, by_layer)
    else:
        report = _monte_carlo_report(model, graph, names, X, Y, n_masks, gen, by_layer)
    _check_finite(report, model, X)
    return report


def _options(method: object, n_masks: object, by_layer: object) -> tuple[str, int | None]:
    """The checked ``method`` and ``n_masks`` of :func:`dropout_penalty`."""
    if not isinstance(by_layer, bool):
        raise InvalidParameterError(f"`by_layer` must be True or False, got {by_layer!r}")
    return check_method(method), None if n_masks is None else check_int(n_masks, "n_masks")


def _check_finite(report: PenaltyReport, model: nn.Module, X: np.ndarray) -> None:
    """Raise on an overflow on the way instead of returning inf or NaN.

    Own penalties not computed (``by_layer=False``) are NaN by design.
    """
    done = ~np.isnan(report.own)
    numbers = [report.value, report.stderr, *report.own[done], *report.own_stderr[done]]
    if not np.all(np.isfinite(numbers)):
        raise overflow_error(
            "the dropout penalty of the model", QUADRATIC, dropout_penalty, (model, X), {}
        )


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
        own[k] = network.dropout_penalty_terms(alone, X, Y=Y).value
    return PenaltyReport(
        terms.value, 0.0, "exact", tuple(names), own, np.zeros(len(at)), None, terms, graph
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
    rng = as_rng(seed)
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
        "mc",
        tuple(names),
        own,
        own_se,
        total.n_masks,
        None,
        graph,
    )
