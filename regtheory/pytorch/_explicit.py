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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx
from numpy.typing import ArrayLike
from torch import nn

from .._grammar import RngLike, as_rng
from .._validation import InvalidParameterError
from ._losses import Loss, as_loss, targets
from ._modules import _as_array, _placement
from ._runner import Runner
from ._second_order import scaled_pass
from ._trace import ADDITIONS, Untraceable, modes, trace

HESSIANS = ("exact", "sampled")


@dataclass(frozen=True)
class ExplicitRegularizer:
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
    """

    value: torch.Tensor
    own: torch.Tensor
    method: str
    hessian: str
    loss: str
    dropouts: tuple[str, ...]

    def __float__(self) -> float:
        return float(self.value.detach())


def explicit_regularizer(
    model: nn.Module,
    X: ArrayLike | torch.Tensor,
    *,
    Y: ArrayLike | torch.Tensor | None = None,
    loss: str | Any = "mse",
    hessian: str = "exact",
    rng: RngLike = None,
) -> ExplicitRegularizer:
    r"""Differentiable second-order dropout regularizer of a PyTorch model on a batch.

    .. math:: R = \frac1n \sum_{k} \frac12 \sum_{s} \frac{1 - q_s}{q_s} \sum_{j}
              g_{s j}^\top\, \nabla_f^2 \ell(f(x_k), y_k)\; g_{s j},\qquad
              g_{s j} = \frac{\partial f(x_k)}{\partial m_{s j}}\Big|_{m = \mathbf 1},

    the delta-method approximation of the dropout penalty that
    :func:`dropout_penalty` reports as ``second_order``, here as a tensor with a graph
    to the model's parameters: ``(task_loss + reg.value).backward()`` trains on it.
    The model is read through ``torch.fx`` and used as it is (its parameters, dtype and
    device); every module is in evaluation mode during the computation (batch norms on
    their running statistics; the modes are restored after) and every dropout site is
    the identity, with a scale of ones whose derivatives give the :math:`g_{s j}`.
    The cost is that of a few training steps (``benchmarks/bench_explicit_step.py``).

    ``hessian="exact"`` takes one backward pass per output entry;
    ``"sampled"`` one pass along a random direction ``v`` with
    :math:`\mathbb E\, v v^\top = \nabla^2_f \ell`: for cross-entropy
    :math:`v = p - e_y`, :math:`y` drawn from the model's softmax (Wei, Kakade & Ma
    2020), for squared error :math:`\sqrt2` times Rademacher signs. Its value is an
    unbiased estimate of :math:`R`.

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
        class probabilities scale it by their sum; a callable loss needs ``Y``.
    loss : {"mse", "cross_entropy"} or callable
        Per-sample loss: squared error summed over the outputs, cross-entropy on the
        logits, or ``loss(output, target)`` returning one loss per sample (its Hessian
        by autograd; ``hessian="exact"`` only).
    hessian : {"exact", "sampled"}
        How the Hessian enters (above).
    rng : int, numpy.random.Generator or None
        Source of the random directions of ``hessian="sampled"`` (None: fresh entropy
        at each call; a Generator advances, so a training loop can pass one).

    Returns
    -------
    ExplicitRegularizer
        ``value`` (a 0-dim tensor with a graph), ``own`` (per site), ``method``,
        ``hessian``, ``loss`` and ``dropouts``.

    Raises
    ------
    InvalidParameterError
        For a model ``torch.fx`` cannot trace or without dropout, a DropBlock site or a
        dropout whose mask is not rescaled by its keep probability (no variance law),
        data that do not fit, a bad ``hessian``, or ``hessian="sampled"`` with a
        callable loss.

    Examples
    --------
    Dropout (keep 0.5, λ = 1) before u = (1, 2) on x = (1, 1): squared error is exact,
    :math:`\lambda \sum_i u_i^2 x_i^2 = 5`, and its gradient in u is
    :math:`2 \lambda u_i x_i^2`.

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
    gen = as_rng(rng)
    return _regularizer(model, X, Y, how, hessian, gen)


def _regularizer(
    model: nn.Module, X: Any, Y: Any, how: Loss, hessian: str, gen: np.random.Generator
) -> ExplicitRegularizer:
    """The regularizer of checked options, through the traced model."""
    try:
        traced = trace(model)
    except Untraceable as exc:
        raise InvalidParameterError(
            f"the explicit regularizer reads the model's traced graph, but {exc}"
        ) from None
    _check_sites(traced)
    device, dtype = _placement(model)
    x = _inputs(X, device, dtype)
    with modes(model, False):
        try:
            runner = Runner(traced, x)
        except InvalidParameterError as exc:
            raise InvalidParameterError(
                f"`X` of shape {tuple(x.shape)} does not fit the model {exc}"
            ) from None
        weight = _weight(how, Y, runner)
        out, scales = scaled_pass(runner, runner.gm, x, list(range(len(traced.sites))))
        quads = _quadratic_forms(how, hessian, out, scales, weight, gen)
    lams = torch.tensor(
        [(1.0 - info.module.keep) / info.module.keep for info in traced.sites],
        dtype=dtype,
        device=device,
    )
    own = 0.5 * lams * torch.stack(quads).to(dtype) / runner.n
    exact = how.name == "mse" and len(traced.sites) == 1 and _linear_after(runner, 0)
    return ExplicitRegularizer(
        own.sum(),
        own,
        "exact" if exact else "second order",
        hessian,
        how.name,
        tuple(info.label for info in traced.sites),
    )


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


def _weight(loss: Loss, Y: Any, runner: Runner) -> torch.Tensor | None:
    """The targets' scale of a cross-entropy Hessian (probability targets), or None.

    Checks ``Y`` against the output as :func:`dropout_penalty` does. For a callable loss
    the checked targets are returned instead (the Hessian needs them).
    """
    if Y is None:
        if loss.name not in ("mse", "cross_entropy"):
            raise InvalidParameterError(f"`Y` is needed for loss={loss.name!r}")
        return None
    target = targets(loss, Y, runner.output)
    if loss.name == "cross_entropy" and target.is_floating_point():
        return target.sum(dim=1)  # (n, *spatial): -Σ t_c log p_c has Hessian (Σ t_c) H
    return target if loss.name not in ("mse", "cross_entropy") else None


def _quadratic_forms(
    loss: Loss,
    hessian: str,
    out: torch.Tensor,
    scales: list[torch.Tensor],
    weight: torch.Tensor | None,
    gen: np.random.Generator,
) -> list[torch.Tensor]:
    """Σ over samples and mask entries of gᵀ H g, one 0-dim tensor per site.

    ``weight``: the targets' scale of a cross-entropy Hessian, or a callable loss's
    targets (see :func:`_weight`).
    """
    n = out.shape[0]
    if hessian == "sampled":
        v = _direction(loss, out, weight, gen)
        grads = torch.autograd.grad(out, scales, grad_outputs=v, create_graph=True)
        return [(g * g).sum() for g in grads]
    k = out[0].numel()
    eye = torch.eye(k, dtype=out.dtype, device=out.device)
    # one pass per output entry: a batched (vmapped) pass was slower on convolutions
    per = [
        torch.autograd.grad(
            out, scales, grad_outputs=eye[i].expand(n, k).reshape(out.shape), create_graph=True
        )
        for i in range(k)
    ]
    jac = [torch.stack(col) for col in zip(*per)]
    rows = [j.reshape(k, n, -1) for j in jac]  # (K, n, M): row i is ∂f_i/∂s
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


def _linear_after(runner: Runner, k: int) -> bool:
    """Whether every step downstream of site ``k`` is affine in its mask (a whitelist)."""
    seen: set[torch.fx.Node] = set()
    stack = list(runner.site_nodes[k].users)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(node.users)
        if node.op == "output":
            continue
        if node.op == "call_module":
            if not isinstance(runner.gm.get_submodule(str(node.target)), _LINEAR_MODULES):
                return False
        elif node.op == "call_function":
            if node.target not in _LINEAR_FUNCTIONS:
                return False
        elif node.op != "call_method" or node.target not in _LINEAR_METHODS:
            return False
    return True
