"""The loss gap of the two-layer conv net estimated over real sampled masks.

The estimate runs on the package's one Monte Carlo engine.
"""

from __future__ import annotations

import numpy as np

from .._convops import ACTIVATIONS, Padding, conv_cn
from .._results import Penalty
from .._validation import (
    check_dtype,
    check_n_masks,
)
from ..layers import Conv, Dropout, Graph, Node, ReLU
from ..masks import DropBlock
from ..montecarlo import default_n_masks, estimate, min_draws
from ..montecarlo._chunks import BATCH_ENTRIES, CHUNK_ENTRIES
from ..montecarlo._engine import Engine

__all__ = ["sampled_penalty"]


def _mc_draw(masks, u4, v4, spatial, map_shape, circular, xc, yc, activation, dtype):
    """The draw of the estimate: draw(rng, size) -> the loss gaps of ``size`` masks.

    The net runs on the package's one Monte Carlo engine (``regtheory.montecarlo._engine``): one
    mask per draw for all the data, the deviation (m − 1) ∘ h carried through u (for
    Bernoulli masks (kept − keep) ∘ h with u/keep: the same deviation, one pass less),
    and with white input a fresh Gaussian input per draw, drawn after the mask.
    """
    padding: Padding = "circular" if circular else "zeros"
    nodes: list[Node] = [Conv(v4, padding=padding)] + ([ReLU()] if activation == "relu" else [])
    layers = Graph((*nodes, Dropout(masks), Conv(u4, padding=padding)))
    c_hid, c_in = v4.shape[:2]
    H, W = spatial
    ph, pw = max(v4.shape[2], u4.shape[2]) // 2, max(v4.shape[3], u4.shape[3]) // 2
    n_data = 1 if xc is None else xc.shape[1]
    rows = max(c_in * v4.shape[2] * v4.shape[3], u4.shape[0] * u4.shape[2] * u4.shape[3], c_hid)
    per_mask = n_data * (rows + 2 * c_hid) * (H + 2 * ph) * (W + 2 * pw)
    chunk = max(1, CHUNK_ENTRIES // per_mask)
    options = {"shared": True, "deviation": True, "margin": (ph, pw), "chunk": chunk}
    residual = None
    if xc is None:
        engine = Engine(layers, None, 0, dtype, white=(c_in, *map_shape), **options)
    else:  # the same data under every mask: the hidden maps are computed once
        h0 = ACTIVATIONS[activation](conv_cn(xc, v4, circular))
        start = h0.transpose(1, 0, 2, 3).reshape(n_data, c_hid, *map_shape)
        engine = Engine(layers, start, len(layers) - 2, dtype, **options)
        if yc is not None:  # y − f(x)
            r = (yc - conv_cn(h0, u4, circular)).transpose(1, 0, 2, 3)
            residual = engine.targets(r.reshape(n_data, len(u4), *map_shape))

    def draw(rng, size):
        return engine.losses(residual, size, rng).mean(axis=1)

    return draw


def sampled_penalty(
    mode,
    masks,
    u4,
    v4,
    spatial,
    map_shape,
    circular,
    xc,
    yc,
    activation,
    *,
    n_masks,
    rng,
    rtol,
    batch_size,
    dtype,
) -> Penalty:
    """The Monte Carlo estimate of :func:`regtheory.conv.dropout_penalty` (checked net)."""
    if isinstance(masks, DropBlock):
        masks.gamma(map_shape)  # raises early if the block does not fit the map
    events = masks.event_probabilities((v4.shape[0], *map_shape))
    need = min_draws(events)
    setting = f"keep = {masks.keep:g}, {mode} masks"
    if isinstance(masks, DropBlock):
        setting += f" of side {masks.block_size} on a {'×'.join(map(str, map_shape))} map"
    n_masks = default_n_masks(events) if n_masks is None else check_n_masks(n_masks, need, setting)
    arithmetic = check_dtype(dtype)
    if batch_size is None:
        n_data = 1 if xc is None else xc.shape[1]
        per_mask = n_data * max(v4.shape[1], v4.shape[0], u4.shape[0]) * spatial[0] * spatial[1]
        batch_size = int(np.clip(BATCH_ENTRIES // per_mask, 1, 4096))
    draw = _mc_draw(
        masks, u4, v4, spatial, map_shape, circular, xc, yc, activation, arithmetic.type
    )
    return estimate(
        draw,
        n_masks=n_masks,
        rng=rng,
        batch_size=batch_size,
        rtol=rtol,
        min_masks=max(1000, need),
    )
