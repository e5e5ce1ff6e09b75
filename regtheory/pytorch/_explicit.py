r"""The explicit (second-order) dropout regularizer of a PyTorch model, differentiable.

Dropout's penalty is, to second order in the masks (Wager, Wang & Liang 2013; Wei,
Kakade & Ma 2020),

.. math:: R = \frac1n \sum_{k=1}^n \frac12 \sum_s \lambda_s \sum_j
          g_{s j}(x_k)^\top H(x_k)\, g_{s j}(x_k), \qquad
          \lambda_s = \frac{1 - q_s}{q_s},

:math:`g_{s j} = \partial f / \partial m_{s j}` at :math:`m = \mathbf 1` (site
:math:`s`, keep probability :math:`q_s`, mask entry :math:`j`) and :math:`H` the
Hessian of the per-sample loss in the output. Each site's input is multiplied by a
scale of ones, so every :math:`g_{s j}` comes from one backward pass per output
direction, with a graph (``create_graph``) that a training loop differentiates again.
The Hessians are low-rank sums of squares: :math:`H = 2I` for squared error,
:math:`H = \operatorname{diag} p - p p^\top = \mathbb E_{y \sim p}(p - e_y)(p - e_y)^\top`
for cross-entropy (labels do not enter). ``"exact"`` takes the output's Jacobian in the
scales (one pass per output entry), ``"sampled"`` one pass along a random
direction whose second moment is :math:`H`: a label drawn from the softmax, or
Rademacher signs. It is the quantity :func:`dropout_penalty` reports as
``second_order``, there without a graph and in float64.

A training step with the regularizer in place of dropout's masks takes its task loss
from the same pass (``output``, the clean output) and adds the regularizer::

    reg = explicit_regularizer(model, X, loss="cross_entropy", hessian="sampled", rng=gen)
    (F.cross_entropy(reg.output, labels) + reg.value).backward()

With ``hessian="sampled"`` such a step costs about three plain ones
(``benchmarks/bench_explicit_step.py``); ``"exact"`` one more backward pass per output
entry.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx
from numpy.typing import ArrayLike
from torch import nn

from .._grammar import RngLike, as_rng
from .._references import Cited, cites
from .._validation import InvalidParameterError
from ._losses import Loss, as_loss, targets
from ._modules import _as_array, _placement
from ._trace import ADDITIONS, Site, Traced, Untraceable, modes, trace

HESSIANS = ("exact", "sampled")


@dataclass(frozen=True)
class ExplicitRegularizer(Cited):
    r"""The second-order dropout regularizer of a model on a batch, with its graph.

    Attributes
    ----------
    value : torch.Tensor
        :math:`R`, a 0-dim tensor on the model's device and in its dtype, with a graph
        to the model's parameters: add it to the task loss before ``backward()``.
    own : torch.Tensor
        Each dropout site's share of ``value`` (it is additive over sites), shape
        ``(len(dropouts),)``, with the same graph.
    method : str
        ``"exact"`` where :math:`R` is the dropout penalty itself (squared error, one
        dropout site, only linear steps after it), else ``"second order"``.
    hessian : str
        ``"exact"`` or ``"sampled"`` (an unbiased one-pass estimate of :math:`R`).
    loss : str
        ``"mse"``, ``"cross_entropy"`` or the callable's name.
    dropouts : tuple of str
        The dropout sites, named as :class:`PenaltyReport` names them.
    output : torch.Tensor
        The model's clean output on the batch (every dropout the identity, every module
        in evaluation mode), with its graph: a training step takes its task loss from it
        instead of running the model again.
    noise : torch.Tensor or None
        With ``noise=True``: dropout's first-order term for one fresh draw of the masks,
        :math:`\langle \nabla_m L, m - \mathbf 1\rangle` (:math:`L` the batch's mean
        loss), a 0-dim tensor of mean zero whose gradient carries the update noise of
        dropout to first order; else None.
    """

    value: torch.Tensor
    own: torch.Tensor
    method: str
    hessian: str
    loss: str
    dropouts: tuple[str, ...]
    output: torch.Tensor
    noise: torch.Tensor | None = None

    def __float__(self) -> float:
        return float(self.value.detach())


@cites("wager2013dropout", "wei2020implicit")
def explicit_regularizer(
    model: nn.Module,
    X: ArrayLike | torch.Tensor,
    *,
    Y: ArrayLike | torch.Tensor | None = None,
    loss: str | Any = "mse",
    hessian: str = "exact",
    noise: bool = False,
    rng: RngLike = None,
) -> ExplicitRegularizer:
    r"""Differentiable second-order dropout regularizer of a PyTorch model on a batch.

    .. math:: R = \frac1n \sum_{k} \frac12 \sum_{s} \frac{1 - q_s}{q_s} \sum_{j}
              g_{s j}^\top\, \nabla_f^2 \ell(f(x_k), y_k)\; g_{s j},\qquad
              g_{s j} = \frac{\partial f(x_k)}{\partial m_{s j}}\Big|_{m = \mathbf 1},

    the delta-method approximation of the dropout penalty that
    :func:`dropout_penalty` reports as ``second_order``, as a tensor with a graph to
    the model's parameters. The model is read through ``torch.fx`` (the trace is kept
    until a module is swapped or a dropout rate changed) and used in evaluation mode
    (the modes are restored after), each dropout site the identity times a scale of
    ones whose derivatives give the :math:`g_{s j}`. ``output`` is the clean output of
    that pass: a training step takes its task loss from it (module docstring;
    :func:`train_classifier` with ``dropout_as="explicit"``).


    Parameters
    ----------
    model : torch.nn.Module
        A model ``torch.fx`` can trace, whose forward takes the batch and returns one
        tensor.
    X : array or torch.Tensor (n, ...)
        Inputs (a tensor is used on the model's device, in its dtype, without a copy
        to NumPy).
    Y : array or torch.Tensor, optional
        Targets as :func:`dropout_penalty` takes them. Squared error and cross-entropy
        on class indices have a Hessian free of the labels, so ``Y`` may be left out;
        class probabilities scale it by their sum; a callable loss and ``noise=True``
        need ``Y``.
    loss : {"mse", "cross_entropy"} or callable
        Per-sample loss: squared error summed over the outputs, cross-entropy on the
        logits, or ``loss(output, target)`` returning one loss per sample (its Hessian
        by autograd; ``hessian="exact"`` only).
    hessian : {"exact", "sampled"}
        ``"exact"``: one backward pass per output entry. ``"sampled"``: one pass along
        a random ``v`` with :math:`\mathbb E\, v v^\top = \nabla^2_f \ell`
        (:math:`v = p - e_y` with :math:`y` drawn from the softmax, as Wei, Kakade & Ma
        2020 do; :math:`\sqrt2` times Rademacher signs for squared error): an unbiased
        value, whose gradient for cross-entropy is not quite unbiased (the label's law
        depends on the parameters).
    noise : bool
        Also return dropout's first-order term for a fresh draw of the masks,
        :math:`\langle \nabla_m L, m - \mathbf 1 \rangle` (:math:`L` the batch's
        mean loss): zero in expectation, its gradient is dropout's update noise to
        first order, the implicit effect Wei, Kakade & Ma (2020) separate out.
    rng : int, numpy.random.Generator or None
        Source of the random directions of ``hessian="sampled"`` and of the masks of
        ``noise=True`` (None: fresh entropy at each call; a Generator advances, so a
        training loop can pass one).

    Returns
    -------
    ExplicitRegularizer
        ``value`` (a 0-dim tensor with a graph), ``own`` (per site), ``method``,
        ``hessian``, ``loss``, ``dropouts``, ``output`` and ``noise``.

    Raises
    ------
    InvalidParameterError
        For a model ``torch.fx`` cannot trace or without dropout, a DropBlock site or a
        dropout whose mask is not rescaled by its keep probability (no variance law),
        data that do not fit, a bad ``hessian``, or ``hessian="sampled"`` with a
        callable loss, or ``noise=True`` without ``Y``.

    Examples
    --------
    Dropout (keep 0.5, λ = 1) before u = (1, 2) on x = (1, 1): squared error is exact,
    :math:`\lambda \sum_i u_i^2 x_i^2 = 5`, with gradient :math:`2 \lambda u_i x_i^2`.

    >>> import torch
    >>> last = torch.nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = last.weight.copy_(torch.tensor([[1.0, 2.0]]))
    >>> model = torch.nn.Sequential(torch.nn.Dropout(0.5), last)
    >>> reg = explicit_regularizer(model, torch.ones(3, 2))
    >>> reg.value.item(), reg.method
    (5.0, 'exact')
    >>> reg.value.backward()
    >>> last.weight.grad
    tensor([[2., 4.]])
    """
    how = _checked(model, Y, loss, hessian, noise)
    gen = as_rng(rng)
    return _regularizer(model, X, Y, how, hessian, noise, gen)


def _checked(model: Any, Y: Any, loss: Any, hessian: Any, noise: Any) -> Loss:
    """The loss of checked options: a precise error for each bad one."""
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"`model` must be a torch.nn.Module, got {type(model).__name__}"
        )
    how = as_loss(loss)
    if not isinstance(hessian, str) or hessian not in HESSIANS:
        raise InvalidParameterError(f"`hessian` must be 'exact' or 'sampled', got {hessian!r}")
    if hessian == "sampled" and how.name not in ("mse", "cross_entropy"):
        raise InvalidParameterError(
            f"hessian='sampled' draws directions for 'mse' and 'cross_entropy' only; a "
            f"callable loss ({how.name}) takes hessian='exact' (its Hessian by autograd)"
        )
    if not isinstance(noise, bool):
        raise InvalidParameterError(f"`noise` must be True or False, got {noise!r}")
    if noise and Y is None:
        raise InvalidParameterError("`noise=True` needs the targets `Y`: the term is the loss's")
    return how


@dataclass(frozen=True)
class _Plan:
    """What a call needs of a model's trace: the graph, its sites and their reach."""

    traced: Traced
    linear_after: bool  # one site, and every step after it affine in its mask


#: a model -> (its fingerprint, its plan): a training loop traces its model once
_PLANS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, _Plan]] = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> tuple:
    """What the trace depends on: the modules, their classes and scalar settings.

    A module swapped for another, or a changed rate (``p``) of a dropout, traces anew.
    """
    return tuple(
        (
            name,
            id(module),
            type(module),
            tuple(
                (key, value)
                for key, value in vars(module).items()
                if key != "training" and isinstance(value, (bool, int, float, str))
            ),
        )
        for name, module in model.named_modules()
    )


def _plan(model: nn.Module) -> _Plan:
    """The model's trace and its checks, from the cache when the model is unchanged."""
    key = _fingerprint(model)
    cached = _PLANS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        traced = trace(model)
    except Untraceable as exc:
        raise InvalidParameterError(
            f"the explicit regularizer reads the model's traced graph, but {exc}"
        ) from None
    _check_sites(traced)
    plan = _Plan(traced, len(traced.sites) == 1 and _linear_after(traced))
    _PLANS[model] = (key, plan)
    return plan


def _regularizer(
    model: nn.Module, X: Any, Y: Any, how: Loss, hessian: str, noise: bool, gen: np.random.Generator
) -> ExplicitRegularizer:
    """The regularizer of checked options, through the traced model."""
    plan = _plan(model)
    sites = [info.module for info in plan.traced.sites]
    device, dtype = _placement(model)
    x = _inputs(X, device, dtype)
    n = len(x)
    with modes(model, False):
        out, scales = _scaled_forward(plan.traced.gm, sites, x)
        weight, target = _targets(how, Y, out, noise)
        if hessian == "sampled":
            quads = _sampled_forms(how, out, scales, weight, gen)
        else:
            quads = _exact_forms(how, out, _rows(out, scales), weight)
        first = None if not noise else _first_order(how, out, target, scales, sites, gen)
    lams = torch.tensor(
        [(1.0 - site.keep) / site.keep for site in sites], dtype=dtype, device=device
    )
    own = 0.5 * lams * torch.stack(quads).to(dtype) / n
    return ExplicitRegularizer(
        own.sum(),
        own,
        "exact" if how.name == "mse" and plan.linear_after else "second order",
        hessian,
        how.name,
        tuple(info.label for info in plan.traced.sites),
        out,
        first,
    )


def _scaled_forward(
    gm: torch.fx.GraphModule, sites: list[Site], x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The clean output, and a scale of ones per site (in the sites' order) it depends on."""
    for site in sites:
        site.scales = []
    try:
        out = gm(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidParameterError(
            f"`X` of shape {tuple(x.shape)} does not fit the model ({first})"
        ) from None
    finally:
        collected = [site.scales or [] for site in sites]
        for site in sites:
            site.scales = None
    if not isinstance(out, torch.Tensor):
        raise InvalidParameterError(f"the model must return one tensor, got {type(out).__name__}")
    return out, [found[0] for found in collected if found]


def _first_order(
    how: Loss,
    out: torch.Tensor,
    target: Any,
    scales: list[torch.Tensor],
    sites: list[Site],
    gen: np.random.Generator,
) -> torch.Tensor:
    """⟨∇_m L, m − 1⟩ for a fresh draw m of every site's mask: dropout's first-order term."""
    task = how.per_sample(out, target).mean()
    grads = torch.autograd.grad(task, scales, create_graph=True)
    generator = torch.Generator(device=out.device)
    generator.manual_seed(int(gen.integers(2**62)))
    terms = []
    for site, s, g in zip(sites, scales, grads):
        deviation = site.draw(tuple(s.shape), gen, generator, s.detach()) - 1.0
        terms.append((g * deviation).sum())
    return torch.stack(terms).sum().to(out.dtype)


def _check_sites(traced: Any) -> None:
    """Refuse what has no independent mask entries of a known variance."""
    if not traced.sites:
        raise InvalidParameterError(
            "`model` has no dropout module or call in its forward: its regularizer is zero"
        )
    for info in traced.sites:
        if info.module.kind == "block":
            raise InvalidParameterError(
                f"at {info.label}: DropBlock masks are correlated within a block, and the "
                "second-order regularizer is for independent mask entries"
            )
        if not info.module.scaled:
            raise InvalidParameterError(
                f"at {info.label}: the mask is not rescaled by 1/keep, so its mean is not "
                "one and the second-order expansion about m = 1 does not apply"
            )


def _inputs(X: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``X`` as a tensor on the model's device and in its dtype, without a graph."""
    if isinstance(X, torch.Tensor):
        if X.is_complex() or not torch.isfinite(X).all():
            raise InvalidParameterError("`X` must hold finite real numbers")
        return X.detach().to(device=device, dtype=dtype)
    return torch.from_numpy(_as_array(X, "X")).to(device=device, dtype=dtype)


def _targets(loss: Loss, Y: Any, out: torch.Tensor, noise: bool) -> tuple[Any, Any]:
    """What the Hessian needs of the targets, and the checked targets (or None).

    The first is the targets' scale of a cross-entropy Hessian (probability targets), a
    callable loss's targets, or None (squared error and class indices need none). ``Y``
    is checked against the output as :func:`dropout_penalty` checks it.
    """
    if Y is None:
        if loss.name not in ("mse", "cross_entropy"):
            raise InvalidParameterError(f"`Y` is needed for loss={loss.name!r}")
        return None, None
    target = targets(loss, Y, out)
    if loss.name not in ("mse", "cross_entropy"):
        return target, target
    if loss.name == "cross_entropy" and target.is_floating_point():
        return target.sum(dim=1), target  # -Σ t_c log p_c has Hessian (Σ t_c) H
    return None, target


def _sampled_forms(
    loss: Loss,
    out: torch.Tensor,
    scales: list[torch.Tensor],
    weight: torch.Tensor | None,
    gen: np.random.Generator,
) -> list[torch.Tensor]:
    """Σ over samples and mask entries of (vᵀg)², E v vᵀ = H: one 0-dim tensor per site."""
    v = _direction(loss, out, weight, gen)
    grads = torch.autograd.grad(out, scales, grad_outputs=v, create_graph=True)
    return [(g * g).sum() for g in grads]


def _rows(out: torch.Tensor, scales: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per site, (K, n, M): row i is ∂f_i/∂s, by one backward pass per output entry.

    (One pass over the batch repeated K times, or a vmapped pass, was slower.)
    """
    n, k = out.shape[0], out[0].numel()
    eye = torch.eye(k, dtype=out.dtype, device=out.device)
    per = [
        torch.autograd.grad(
            out, scales, grad_outputs=eye[i].expand(n, k).reshape(out.shape), create_graph=True
        )
        for i in range(k)
    ]
    return [torch.stack(col).reshape(k, n, -1) for col in zip(*per)]


def _exact_forms(
    loss: Loss, out: torch.Tensor, rows: list[torch.Tensor], weight: torch.Tensor | None
) -> list[torch.Tensor]:
    """Σ over samples and mask entries of gᵀ H g, one 0-dim tensor per site.

    ``rows`` as :func:`_rows` gives them; ``weight``: the targets' scale of a
    cross-entropy Hessian, or a callable loss's targets (see :func:`_targets`).
    """
    n = out.shape[0]
    if loss.name == "mse":
        return [2.0 * (j * j).sum() for j in rows]
    if loss.name == "cross_entropy":
        c = out.shape[1]
        p = torch.softmax(out, dim=1).reshape(n, c, -1).permute(1, 2, 0)  # (C, P, n)
        w = 1.0 if weight is None else weight.reshape(n, -1).T.to(out.dtype)  # (P, n)
        quads = []
        for j in rows:
            j = j.reshape(c, -1, n, j.shape[-1])  # (C, P, n, M)
            first = (p.unsqueeze(-1) * j).sum(dim=0)
            second = (p.unsqueeze(-1) * j * j).sum(dim=0)
            quads.append(((second - first * first).sum(dim=-1) * w).sum() / p.shape[1])
        return quads
    hess = _hessian(loss, out, weight)  # weight holds the callable's targets
    return [torch.einsum("knm,nkl,lnm->", j, hess.to(j.dtype), j) for j in rows]


def _direction(
    loss: Loss, out: torch.Tensor, weight: torch.Tensor | None, gen: np.random.Generator
) -> torch.Tensor:
    """A random direction v (output's shape) with E v vᵀ = H, per sample."""
    if loss.name == "mse":
        signs = gen.integers(0, 2, size=tuple(out.shape)) * 2.0 - 1.0
        return torch.from_numpy(signs).to(out) * np.sqrt(2.0)
    n, c = out.shape[:2]
    p = torch.softmax(out, dim=1)  # its graph stays: H depends on the parameters
    flat = p.detach().reshape(n, c, -1)
    u = torch.from_numpy(gen.random((n, 1, flat.shape[2]))).to(flat)
    labels = (flat.cumsum(dim=1) < u).sum(dim=1).clamp_(max=c - 1)  # y ~ p, (n, P)
    onehot = torch.zeros_like(flat).scatter_(1, labels.unsqueeze(1), 1.0)
    v = p - onehot.reshape(p.shape)
    scale = 1.0 / flat.shape[2]  # the per-sample loss is the mean over positions
    if weight is not None:
        return v * (weight.to(out.dtype).unsqueeze(1) * scale).sqrt()
    return v * np.sqrt(scale)


def _hessian(loss: Loss, out: torch.Tensor, target: Any) -> torch.Tensor:
    """Each sample's Hessian of a callable loss in its output entries, with a graph."""
    n = out.shape[0]
    flat = out.reshape(n, -1)
    value = loss.per_sample(flat.reshape(out.shape), target).sum()
    (grad,) = torch.autograd.grad(value, flat, create_graph=True)
    columns = []
    for i in range(flat.shape[1]):
        (col,) = torch.autograd.grad(grad[:, i].sum(), flat, create_graph=True, allow_unused=True)
        columns.append(torch.zeros_like(flat) if col is None else col)
    return torch.stack(columns, dim=1)


#: steps through which the output stays affine in a site's mask
_LINEAR_MODULES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Flatten,
    nn.Identity,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.modules.batchnorm._BatchNorm,  # evaluation mode: an affine map
)
_LINEAR_FUNCTIONS = {torch.flatten, torch.cat, torch.reshape, *ADDITIONS}
_LINEAR_METHODS = {"view", "reshape", "flatten", "contiguous", "permute", "transpose"}


def _linear_after(traced: Traced) -> bool:
    """Whether every step downstream of the first site is affine in its mask (a whitelist)."""
    by_name = {node.name: node for node in traced.gm.graph.nodes}
    seen: set[torch.fx.Node] = set()
    stack = list(by_name[traced.sites[0].node].users)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(node.users)
        if node.op == "output":
            continue
        if node.op == "call_module":
            if not isinstance(traced.gm.get_submodule(str(node.target)), _LINEAR_MODULES):
                return False
        elif node.op == "call_function":
            if node.target not in _LINEAR_FUNCTIONS:
                return False
        elif node.op != "call_method" or node.target not in _LINEAR_METHODS:
            return False
    return True
