r"""The brute-force dropout penalty of a PyTorch model, independent of regtheory.

The model's own forward, run many times in training mode on a float64 deep copy:

.. math::

    P = \mathbb E_r L(r) - L(\mathbf 1),\qquad
    L = \frac1n \sum_{k=1}^{n} \ell(f_r(x_k), y_k),

every dropout site active with torch's own masks, every normalisation layer with
running statistics in evaluation mode (batch norms use their running statistics; the
deep copy's statistics are never updated). One pass is one forward on the whole
data with fresh masks; its value is the mean per-sample loss minus the clean loss
(``model.eval()``). The estimate is the mean over passes, with its standard error.

``stack`` passes are run as one forward on the data repeated ``stack`` times along the
batch axis: with the normalisation layers in evaluation mode each sample's output
depends on that sample and its own masks only, so a stacked forward is ``stack``
independent passes (``tests/test_pytorch_models.py`` checks this on a model with
data-dependent control flow). A model whose output mixes samples (a batch norm
without running statistics) needs ``stack=1``.

A site alone (``site=``): every module in evaluation mode but the modules whose own
``training`` flag switches the site on, which covers ``F.dropout(x, p, self.training)``
(its owner's flag, the owner's children left off). A module called twice cannot be
split by modes, both calls read one flag; there a forward hook makes every call but
the chosen one the identity, which is what the module is in evaluation mode. Both ways
are checked against enumerations over every mask in tests/test_pytorch_models.py.

Nothing of regtheory is imported here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_SE = 4  # Monte Carlo agreement is required within this many standard errors

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo mean, its standard error and the number of passes behind it."""

    value: float
    stderr: float
    n_passes: int


def z_score(value: float, stderr: float, reference: Estimate) -> float:
    """(value − reference) over the two standard errors combined."""
    scale = float(np.hypot(stderr, reference.stderr))
    gap = value - reference.value
    if scale == 0.0:
        return 0.0 if gap == 0.0 else float(np.copysign(np.inf, gap))
    return gap / scale


def _as_tensor(a, dtype=None) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    t = t.detach().cpu()
    if dtype is not None:
        t = t.to(dtype)
    return t


def per_sample_loss(loss, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss of each sample, shape (N,), as the package's ``loss=`` argument defines it.

    ``"mse"``: the sum of squares over the output entries; ``"cross_entropy"``:
    ``F.cross_entropy(out, target, reduction="none")`` with class indices or class
    probabilities; a callable: ``loss(out, target)``, which must give shape (N,).
    """
    n = out.shape[0]
    if loss == "mse":
        return torch.sum((target - out).reshape(n, -1) ** 2, dim=1)
    if loss == "cross_entropy":
        return F.cross_entropy(out, target, reduction="none")
    values = loss(out, target)
    assert values.shape == (n,), f"a loss callable gives per-sample losses, got {values.shape}"
    return values


def _target(loss, Y, clean: torch.Tensor) -> torch.Tensor:
    if Y is None:
        assert loss == "mse", "only the squared loss takes the clean output as target"
        return clean
    Y = _as_tensor(Y)
    if Y.dtype.is_floating_point:
        return Y.to(torch.float64)
    return Y.to(torch.int64)


def _train_except_norms(model: nn.Module) -> None:
    model.train()
    for m in model.modules():
        if isinstance(m, _NORMS) and m.track_running_stats:
            m.eval()


def _only(model: nn.Module, names: tuple[str, ...]) -> None:
    """Everything in evaluation mode but the named modules' own flags (not their children)."""
    model.eval()
    for name in names:
        model.get_submodule(name).training = True


@contextmanager
def _only_call(model: nn.Module, name: str, call: int) -> Iterator[None]:
    """Module ``name`` acts at its ``call``-th call of each forward; at the others it is
    the identity (what a dropout module is in evaluation mode)."""
    module = model.get_submodule(name)
    count = [0]

    def reset(_module, _args):
        count[0] = 0

    def act(_module, args, output):
        count[0] += 1
        return output if count[0] == call else args[0]

    handles = [model.register_forward_pre_hook(reset), module.register_forward_hook(act)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def brute_penalty(
    model: nn.Module,
    X,
    *,
    Y=None,
    loss: str | Callable = "mse",
    n_passes: int = 2000,
    seed: int = 0,
    stack: int = 100,
    site=None,
) -> Estimate:
    """E L(r) − L(1) by running a float64 copy of the model ``n_passes`` times.

    Parameters
    ----------
    model : nn.Module
        Left untouched (a deep copy runs).
    X : array or tensor (n, ...)
    Y : array or tensor, optional
        Targets: the output's shape for ``"mse"`` (None: the clean output), class
        indices (n,) or probabilities (n, K) for ``"cross_entropy"``, whatever a
        callable takes.
    loss : "mse", "cross_entropy" or callable(out, target) -> (N,)
    n_passes : int
        Passes (forwards on the whole data with fresh masks); rounded up to a multiple
        of ``stack``.
    seed : int
        ``torch.manual_seed``, once; torch's global random state is restored after.
    stack : int
        Passes per forward (module docstring).
    site : object with ``train`` and ``call``, optional
        Only this site on (``tests/_torch_models.Site``): every module in evaluation
        mode but the ``train`` modules' own flags; for a module called more than once,
        only its ``call``-th call acts. None: every site on.
    """
    (estimate,) = brute_penalties(
        model, X, [(loss, Y)], n_passes=n_passes, seed=seed, stack=stack, site=site
    )
    return estimate


def brute_penalties(
    model: nn.Module,
    X,
    losses,
    *,
    n_passes: int = 2000,
    seed: int = 0,
    stack: int = 100,
    site=None,
) -> list[Estimate]:
    """:func:`brute_penalty` of several losses, read off the same passes.

    ``losses`` lists ``(loss, Y)`` pairs; the estimates come in their order, each the one
    ``brute_penalty(model, X, Y=Y, loss=loss)`` gives with the same ``n_passes``,
    ``seed``, ``stack`` and ``site``: the masks depend on the seed and the forwards only,
    and every loss is computed from the same outputs. A forward of a large model costs
    far more than a loss, so one run serves every loss.
    """
    model = copy.deepcopy(model).double()
    x = _as_tensor(X, torch.float64)
    n = x.shape[0]
    with torch.no_grad():
        model.eval()
        clean = model(x)
        targets, bases = [], []
        for loss, Y in losses:
            target = _target(loss, Y, clean)
            targets.append(target.repeat(stack, *(1,) * (target.dim() - 1)))
            bases.append(per_sample_loss(loss, clean, target).mean().item())
        if site is None:
            _train_except_norms(model)
        else:
            assert site.train is not None, "this site cannot be switched on alone"
            _only(model, site.train)
        reps = (stack,) + (1,) * (x.dim() - 1)
        xs = x.repeat(*reps)
        values: list[list[torch.Tensor]] = [[] for _ in losses]
        calls = (
            _only_call(model, site.train[0], site.call)
            if site is not None and site.call is not None
            else _nothing()
        )
        with torch.random.fork_rng(devices=[]), calls:
            torch.manual_seed(seed)
            for _ in range(-(-n_passes // stack)):
                out = model(xs)
                for (loss, _), ts, base, kept in zip(losses, targets, bases, values):
                    per_pass = per_sample_loss(loss, out, ts).reshape(stack, n).mean(dim=1)
                    kept.append(per_pass - base)
    return [_estimate(torch.cat(kept).numpy()) for kept in values]


def _estimate(values: np.ndarray) -> Estimate:
    return Estimate(
        float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))), len(values)
    )


def row_site_penalty(model: nn.Module, X, *, module: str, Y=None, loss="mse") -> Estimate:
    r"""The penalty of one site alone whose mask is one Bernoulli per sample, exactly.

    For the ``StochasticDepth(p, "row")`` module named ``module`` (its ``p`` and ``mode``
    read from it): each sample's branch is kept and scaled by ``1/(1 - p)`` with
    probability ``1 - p``, zeroed otherwise, independently of the other samples. With
    every other module in evaluation mode each sample's output takes one of these two
    values, so

    .. math::

        P = \frac1n \sum_k \big[(1-p)\,\ell(f_{1/(1-p)}(x_k), y_k)
            + p\,\ell(f_0(x_k), y_k)\big] - L(\mathbf 1),

    two forwards of a float64 copy, the branch scaled by a forward hook (the module in
    evaluation mode passes it unchanged). The standard error is 0. The small model of
    tests/test_pytorch_models.py checks this against the closed form that torch's own
    masks are checked against.
    """
    model = copy.deepcopy(model).double().eval()
    site = model.get_submodule(module)
    assert site.mode == "row", "one mask per sample: StochasticDepth in row mode"
    p = float(site.p)
    keep = 1.0 - p
    x = _as_tensor(X, torch.float64)
    with torch.no_grad():
        clean = model(x)
        target = _target(loss, Y, clean)
        value = -per_sample_loss(loss, clean, target).mean().item()
        for scale, prob in ((1.0 / keep, keep), (0.0, p)):
            hook = site.register_forward_hook(lambda _module, _args, out, scale=scale: out * scale)
            try:
                value += prob * per_sample_loss(loss, model(x), target).mean().item()
            finally:
                hook.remove()
    return Estimate(value, 0.0, 0)


@contextmanager
def _nothing() -> Iterator[None]:
    yield
