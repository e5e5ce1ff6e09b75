r"""The second-order (delta-method) approximation of a dropout penalty.

Write the mask of site :math:`s` as :math:`1 + \varepsilon_s`. To first order the output
moves by :math:`\delta = \sum_{s,j} \varepsilon_{s j}\, g_{s j}` with
:math:`g_{s j} = \partial f / \partial m_{s j}` at :math:`m = 1`, and the loss by
:math:`\nabla\ell^\top\delta + \tfrac12 \delta^\top \nabla^2\ell\, \delta`. The first term
has mean zero, so for independent mask entries of variance :math:`\lambda_s`

.. math:: P \approx \frac12 \sum_{s, j} \lambda_s\, g_{s j}^\top H\, g_{s j},
          \qquad H = \nabla^2_f \ell ,

per sample, averaged over the data (Wager, Wang & Liang 2013 for generalised linear
models; Wei, Kakade & Ma 2020 for deep networks). It is additive over sites. For squared
error after a single dropout site followed by linear layers it is the exact penalty.
Both derivatives come from autograd in float64: one backward pass per output entry.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import numpy as np
import torch

from ._losses import Loss
from ._runner import Runner
from ._trace import Site, run_node

#: beyond this many output entries per sample the approximation is not computed
MAX_OUTPUTS = 128


def second_order(runner: Runner, loss: Loss, target: Any) -> tuple[float | None, np.ndarray]:
    """The approximation and its share per site (NaN where a site has no variance law)."""
    k_sites = len(runner.sites)
    shares = np.full(k_sites, np.nan)
    out_size = runner.output[0].numel()
    usable = [
        k
        for k, info in enumerate(runner.sites)
        if info.module.kind != "block" and info.module.scaled
    ]
    if not usable or out_size > MAX_OUTPUTS:
        return None, shares
    gm = copy.deepcopy(runner.gm).to(torch.float64)
    x = runner.clean[runner.input].to(torch.float64)
    out, scales = scaled_pass(runner, gm, x, usable)
    out = out.reshape(runner.n, -1)
    hessian = _hessian(out.detach(), loss, target, runner.output.shape)
    rows = [
        torch.autograd.grad(out[:, i].sum(), [scales[k] for k in usable], retain_graph=True)
        for i in range(out.shape[1])
    ]
    for j, k in enumerate(usable):
        g = torch.stack([row[j].reshape(runner.n, -1) for row in rows], dim=1)  # (n, K, M)
        quad = torch.einsum("nkm,nkl,nlm->", g, hessian, g) / runner.n
        lam = (1.0 - runner.sites[k].module.keep) / runner.sites[k].module.keep
        shares[k] = 0.5 * lam * float(quad)
    total = None if len(usable) < k_sites else float(np.sum(shares))
    return total, shares


def scaled_pass(
    runner: Runner, gm: torch.fx.GraphModule, x: torch.Tensor, wanted: list[int]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The output of ``gm`` on ``x`` with a scale of ones at every dropout site.

    Each site multiplies its input by a tensor of ones of its mask's shape (dtype and
    device of ``x``), a leaf that requires grad for the sites in ``wanted``: the output
    is the clean one, and its derivatives in the scales are those in the mask at one.
    The sites of ``gm`` are back to the identity after.
    """
    scales = []
    sites = [cast(Site, gm.get_submodule(_target(runner, k))) for k in range(len(runner.sites))]
    try:
        for k, (site, shape) in enumerate(zip(sites, runner.site_shapes)):
            s = torch.ones(runner.sites[k].module.mask_shape(shape), dtype=x.dtype, device=x.device)
            s.requires_grad_(k in wanted)
            site.mask = s
            scales.append(s)
        env: dict = {runner.input: x}
        for node in runner.nodes:
            if node not in env:
                value = runner.clean[node] if node.op == "placeholder" else run_node(node, gm, env)
                env[node] = value
    finally:
        for site in sites:
            site.mask = None
    return env[runner.nodes[-1]], scales


def _target(runner: Runner, k: int) -> str:
    return str(runner.site_nodes[k].target)


def _hessian(out: torch.Tensor, loss: Loss, target: Any, shape: torch.Size) -> torch.Tensor:
    """Each sample's Hessian of the loss in its output entries, ``(n, K, K)``."""
    o = out.clone().requires_grad_(True)
    value = loss.per_sample(o.reshape(shape), target).sum()
    (grad,) = torch.autograd.grad(value, o, create_graph=True)
    columns = []
    for i in range(o.shape[1]):
        (col,) = torch.autograd.grad(grad[:, i].sum(), o, retain_graph=True, allow_unused=True)
        columns.append(torch.zeros_like(o) if col is None else col)
    return torch.stack(columns, dim=1)
