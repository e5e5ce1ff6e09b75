"""The dropout penalty of a PyTorch model.

The model's traced forward is the one function every path analyses: exact by moment
propagation on its :mod:`regtheory.layers` graph where that exists, else by Monte Carlo
through the traced graph, recomputing only what each mask changes. A model that cannot
be traced is estimated through its own forward.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
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
from .._references import Cited, cites
from .._results import Penalty
from .._validation import InvalidParameterError, check_int, check_n_masks
from ..layers import Graph
from ..montecarlo import default_n_masks, estimate, min_draws
from ..network._moments import exact_refusal
from ._graph import layers_graph, rename, without
from ._losses import Loss, as_loss, targets
from ._modules import _as_array, _placement
from ._own import own_forward_report
from ._runner import Runner
from ._second_order import second_order
from ._trace import Untraceable, modes, trace


@dataclass(frozen=True)
class PenaltyReport(Cited):
    r"""The dropout penalty of a PyTorch model on data, and what each dropout site pays.

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
        Each dropout site, by its place in the traced forward: the module's name (a
        module called twice is two sites, ``call 1`` and ``call 2``) or the functional
        call's, its type and p.
    own : ndarray, read-only
        Each site's penalty alone (the other sites off, as in evaluation mode); ``NaN``
        where not computed (``by_layer=False``).
    own_stderr : ndarray, read-only
        Their standard errors (0.0 where exact).
    n_masks : int or None
        Monte Carlo draws behind ``value`` (None when exact).
    terms : network.PenaltyTerms or None
        The exact split over every subset of dropout sites, when exact.
    layers : regtheory.layers.Graph or None
        The traced model as the package's network description (None when the model
        could not be traced).
    loss : str
        The loss the penalty is measured in: ``"mse"``, ``"cross_entropy"`` or the
        callable's name.
    how : str
        ``"traced"`` (the model's forward read through ``torch.fx``) or ``"own
        forward"`` (not traceable: Monte Carlo through the model itself; ``reason``
        says why).
    own_method : tuple of str
        How each ``own`` value was computed: ``"exact"``, ``"mc"`` or ``""``.
    second_order : float or None
        The second-order (delta-method) approximation
        :math:`\tfrac12\,\mathbb E\,\delta^\top \nabla^2\ell\,\delta` of the penalty,
        δ the first-order change of the output under the masks; None where it is not
        computed (an untraced model, DropBlock or an unscaled mask).
    own_second_order : ndarray, read-only
        Its share per site (it is additive over sites); NaN where not computed.
    reason : str
        Why the model was not traced, or why the penalty is not exact ("" if it is).
    """

    value: float
    stderr: float
    method: str
    dropouts: tuple[str, ...]
    own: np.ndarray = field(repr=False)
    own_stderr: np.ndarray = field(repr=False)
    n_masks: int | None
    terms: network.PenaltyTerms | None = field(repr=False)
    layers: Graph | None = field(repr=False)
    loss: str = "mse"
    how: str = "traced"
    own_method: tuple[str, ...] = ()
    second_order: float | None = None
    own_second_order: np.ndarray | None = field(default=None, repr=False)
    reason: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        for name in ("own", "own_stderr", "own_second_order"):
            raw = getattr(self, name)
            if raw is None:
                raw = np.full(len(self.dropouts), np.nan)
            values = np.array(raw, dtype=float)
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
        """What the sites pay together beyond their own penalties: value − Σ own."""
        return self.value - float(np.sum(self.own))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values (no layers)."""
        return {
            "value": self.value,
            "stderr": self.stderr,
            "method": self.method,
            "n_masks": self.n_masks,
            "loss": self.loss,
            "how": self.how,
            "reason": self.reason,
            "second_order": self.second_order,
            "dropouts": [
                {
                    "module": name,
                    "own": _json(own),
                    "own_stderr": _json(se),
                    "own_method": how,
                    "own_second_order": _json(so),
                }
                for name, own, se, how, so in zip(
                    self.dropouts,
                    self.own,
                    self.own_stderr,
                    self.own_method or ("",) * len(self.dropouts),
                    self.own_second_order,  # type: ignore[arg-type]
                )
            ],
            "interaction": _json(self.interaction),
        }

    def __str__(self) -> str:
        pm = "" if self.method == "exact" else f" ± {self.stderr:.3g}"
        how = "exact" if self.method == "exact" else f"Monte Carlo, {self.n_masks} draws"
        if self.how != "traced":
            how += ", through the model's own forward"
        loss = "" if self.loss == "mse" else f", {self.loss}"
        lines = [f"dropout penalty {self.value:.6g}{pm}  ({how}{loss})"]
        if self.second_order is not None and self.loss != "mse":
            lines.append(f"  second-order approximation {self.second_order:.6g}")
        width = max(len(name) for name in self.dropouts)
        methods = self.own_method or ("",) * len(self.dropouts)
        for name, own, se, m in zip(self.dropouts, self.own, self.own_stderr, methods):
            if np.isnan(own):  # not computed (by_layer=False)
                lines.append(f"  {name}")
                continue
            tail = "" if m == "exact" or se == 0.0 else f" ± {se:.3g}"
            lines.append(f"  {name:<{width}}  alone {own:.6g}{tail}")
        if len(self.dropouts) > 1 and not np.isnan(self.interaction):
            lines.append(f"  {'together, beyond the sum':<{width}}  {self.interaction:.6g}")
        return "\n".join(lines)


def _json(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


@cites("arora2021dropout")
@finite_result("the dropout penalty of the model", fields=("value", "stderr"))
@keyword_only(2)
@transition_to_rng
def dropout_penalty(
    model: nn.Module,
    X: ArrayLike | torch.Tensor,
    *,
    Y: ArrayLike | torch.Tensor | None = None,
    loss: str | Any = "mse",
    method: str = "auto",
    n_masks: int | None = None,
    rng: RngLike = 0,
    by_layer: bool = True,
) -> PenaltyReport:
    r"""Dropout penalty :math:`\mathbb{E}_r L(r) - L(\mathbf 1)` of a PyTorch model on data.

    The model is read through ``torch.fx`` (its real forward: custom modules, residual
    sums, functional dropout, a module called twice), each dropout site with its own
    mask, every other module in evaluation mode. ``"exact"`` propagates the masks'
    moments on the traced graph, for squared error with every non-linearity before the
    first site; ``"mc"`` averages the loss gap over fresh masks, recomputing only what
    a mask changes, in the model's dtype and device (losses in float64); ``"auto"`` is
    exact where it can be. A model ``torch.fx`` cannot trace is estimated through its own
    forward (``how="own forward"``). torch's random state is left as it was.

    .. math:: P = \mathbb{E}_r\, \frac1n \sum_{k} \ell(f_{r_k}(x_k), y_k)
              - \frac1n \sum_{k} \ell(f_{\mathbf 1}(x_k), y_k) .

    With ``by_layer`` each site's penalty *alone* (the others off) is computed too; the
    report also gives the second-order (delta-method) approximation, per site.

    Parameters
    ----------
    model : torch.nn.Module
        Any module whose forward takes the batch and returns one tensor.
    X : array or torch.Tensor (n, ...)
        Inputs.
    Y : array or torch.Tensor, optional
        Targets as the loss takes them: the output's shape for ``"mse"`` (``None``: the
        model's own clean output, the penalty is then the perturbation energy), class
        indices ``(n,)`` or probabilities for ``"cross_entropy"``.
    loss : {"mse", "cross_entropy"} or callable
        Per-sample loss: squared error summed over the outputs, cross-entropy on the
        logits, or ``loss(output, target)`` returning one loss per sample.
    method : {"auto", "exact", "mc"}
        How to compute it (above).
    n_masks : int, optional
        Monte Carlo draws; default :func:`regtheory.montecarlo.default_n_masks`.
    rng : int, numpy.random.Generator or None
        Source of the masks (``seed=`` still works, with a warning).
    by_layer : bool
        Also compute each dropout site's own penalty.

    Returns
    -------
    PenaltyReport
        ``value``, ``stderr`` (0.0 when exact), ``method``, ``loss``, ``how``,
        ``dropouts``, ``own``, ``own_stderr``, ``own_method``, ``interaction``,
        ``second_order``, ``terms`` (exact only) and the traced ``layers``;
        ``print(report)`` shows a table, ``report.to_dict()`` JSON values.

    Raises
    ------
    InvalidParameterError
        For a refused argument (data that do not fit, too few ``n_masks``, integer
        labels with squared error), or ``method="exact"`` where it has no exact form.

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
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"`model` must be a torch.nn.Module, got {type(model).__name__}"
        )
    how = as_loss(loss)
    method, n_masks = _options(method, n_masks, by_layer)
    gen = as_rng(rng)  # refuse a bad rng even where the penalty is exact
    report = _report(model, X, Y, how, method, n_masks, gen, by_layer)
    _check_finite(report, model, X)
    return report


def _report(model, X, Y, loss: Loss, method, n_masks, rng, by_layer) -> PenaltyReport:
    """The report through the traced graph, or through the model's own forward."""
    try:
        traced = trace(model)
    except Untraceable as exc:
        if method == "exact":
            raise InvalidParameterError(
                f"the exact penalty reads the model's traced graph, but {exc}; use "
                "method='mc' (Monte Carlo through the model's own forward)"
            ) from None
        return own_forward_report(
            model, X, Y, loss, n_masks=n_masks, rng=rng, by_layer=by_layer, reason=str(exc)
        )
    return _traced_report(model, traced, X, Y, loss, method, n_masks, rng, by_layer)


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


@dataclass
class _Problem:
    """What the traced paths share: the runner, the graph, the loss and its targets."""

    runner: Runner
    graph: Graph | None
    labels: list[str]
    loss: Loss
    target: Any
    X: np.ndarray
    why: str  # why the total is not exact ("" if it is)

    def exact_alone(self, k: int) -> Graph | None:
        """The graph with site ``k`` alone, if its penalty is exact, else None."""
        if self.graph is None or self.loss.name != "mse":
            return None
        at = self.graph.random_positions
        alone = without(self.graph, [j for j in at if j != at[k]])
        return alone if exact_refusal(alone, self.X.shape[1:]) is None else None

    def exact(self, graph: Graph) -> network.PenaltyTerms:
        Y = None
        if self.loss.name == "mse":
            Y = self.target.detach().cpu().numpy().reshape(self.runner.output.shape)
        return network.dropout_penalty_terms(graph, self.X, Y=Y)


def _problem(traced, X: np.ndarray, Y: Any, loss: Loss, device, dtype) -> _Problem:
    x = torch.from_numpy(X).to(device=device, dtype=dtype)
    try:
        runner = Runner(traced, x)
    except InvalidParameterError as exc:
        raise InvalidParameterError(
            f"`X` of shape {X.shape} does not fit the model {exc}"
        ) from None
    target = targets(loss, Y, runner.output)
    graph: Graph | None = None
    labels: list[str] = []
    why = ""
    try:
        graph, labels = layers_graph(runner)
    except InvalidParameterError as exc:
        why = str(exc)
    if loss.name != "mse":
        why = f"the exact penalty is for squared error (loss='mse'), not loss={loss.name!r}"
    elif graph is not None:
        why = rename(exact_refusal(graph, X.shape[1:]) or "", labels)
    return _Problem(runner, graph, labels, loss, target, X, why)


def _traced_report(model, traced, X, Y, loss, method, n_masks, rng, by_layer) -> PenaltyReport:
    if not traced.sites:
        raise InvalidParameterError(
            "`model` has no dropout module or call in its forward: its penalty is zero"
        )
    device, dtype = _placement(model)
    with modes(model, False):  # every module in evaluation mode: the sites draw the masks
        problem = _problem(traced, X, Y, loss, device, dtype)
        if method == "exact" and problem.why:
            raise InvalidParameterError(problem.why)
        names = tuple(info.label for info in traced.sites)
        order2, own2 = second_order(problem.runner, loss, problem.target)
        common = dict(loss=loss.name, second_order=order2, own_second_order=own2)
        if method != "mc" and not problem.why:
            return _exact_report(problem, names, by_layer, common)
        return _monte_carlo_report(problem, names, n_masks, rng, by_layer, common, method)


def _exact_report(problem: _Problem, names, by_layer: bool, common: dict) -> PenaltyReport:
    assert problem.graph is not None
    terms = problem.exact(problem.graph)
    k_sites = len(names)
    own = np.full(k_sites, np.nan)
    for k in range(k_sites if by_layer else 0):
        alone = problem.exact_alone(k)
        own[k] = terms.value if k_sites == 1 else problem.exact(alone).value  # type: ignore[arg-type]
    methods = ("exact",) * k_sites if by_layer else ("",) * k_sites
    return PenaltyReport(
        terms.value,
        0.0,
        "exact",
        names,
        own,
        np.zeros(k_sites),
        None,
        terms,
        problem.graph,
        own_method=methods,
        **common,
    )


def _laws(runner: Runner) -> list:
    """(mask distribution, masked shape) of each site, for the rare events of the draws."""
    from ..masks import Bernoulli

    return [
        (info.law or Bernoulli(info.module.keep), shape[1:])
        for info, shape in zip(runner.sites, runner.site_shapes)
    ]


def _monte_carlo_report(problem, names, n_masks, rng, by_layer, common, method) -> PenaltyReport:
    runner, k_sites = problem.runner, len(names)
    own = np.full(k_sites, np.nan)
    own_se = np.full(k_sites, np.nan)
    methods = [""] * k_sites
    sampled: list[int] = []
    for k in range(k_sites if by_layer and k_sites > 1 else 0):
        alone = None if method == "mc" else problem.exact_alone(k)
        if alone is None:
            sampled.append(k)
        else:
            own[k], own_se[k], methods[k] = problem.exact(alone).value, 0.0, "exact"
    events, words = mask_events(_laws(runner))
    need = min_draws(events)
    n_masks = check_n_masks(default_n_masks(events) if n_masks is None else n_masks, need, words)
    configs = [tuple(range(k_sites))] + [(k,) for k in sampled]
    estimates = _estimate_all(problem, configs, n_masks, rng, need)
    total = estimates[0]
    for k, est in zip(sampled, estimates[1:]):
        own[k], own_se[k], methods[k] = est.value, est.stderr, "mc"
    if by_layer and k_sites == 1:
        own[0], own_se[0], methods[0] = total.value, total.stderr, "mc"
    return PenaltyReport(
        total.value,
        total.stderr,
        "mc",
        names,
        own,
        own_se,
        total.n_masks,
        None,
        problem.graph,
        own_method=tuple(methods),
        reason=problem.why,
        **common,
    )


def _estimate_all(problem: _Problem, configs, n_masks: int, rng, need: int) -> list[Penalty]:
    """One estimate per configuration of active sites, all from the same masks."""
    runner, loss = problem.runner, problem.loss
    base = loss.per_sample(runner.output, problem.target).mean()
    fresh = {node for node in runner.plan(configs[0]) if node in runner.batched}
    widest = max((runner.clean[node][0].numel() for node in fresh), default=1)
    batch = int(np.clip((1 << 23) // max(1, widest * runner.n), 1, 4096))
    device = runner.output.device
    generator = torch.Generator(device=device)
    columns: list[list[np.ndarray]] = [[] for _ in configs]

    def draw(gen: np.random.Generator, size: int) -> np.ndarray:
        generator.manual_seed(int(gen.integers(2**62)))
        masks = runner.masks(size, gen, generator)
        for j, active in enumerate(configs):
            out = runner.run(active, masks, size)
            columns[j].append(runner.losses(out, loss, problem.target, base, size))
        return columns[0][-1]

    first = estimate(draw, n_masks=n_masks, rng=rng, batch_size=batch, min_masks=max(1000, need))
    found = [first]
    for column in columns[1:]:
        found.append(
            estimate(
                _replay(column),
                n_masks=n_masks,
                rng=0,
                batch_size=batch,
                min_masks=max(1000, need),
            )
        )
    return found


def _replay(column: list[np.ndarray]) -> Callable[[np.random.Generator, int], np.ndarray]:
    """The draws of an estimate made already, batch by batch, as ``estimate`` asks."""
    batches = iter(column)
    return lambda _gen, _size: next(batches)
