"""The rare mask events a Monte Carlo draw hinges on.

Shared by the network and PyTorch estimators: the events set the smallest number of
draws, :func:`regtheory.montecarlo.min_draws`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mask_events"]


def mask_events(dropouts) -> tuple[list[float], str]:
    """The rare mask events a draw hinges on, and the words naming them.

    ``dropouts`` holds (mask distribution, masked shape) pairs, one per random layer
    (:meth:`regtheory.layers.Graph.mask_laws`). Every layer's own events, and, with
    several Dropout layers in series, a unit kept in all of them: a product of inverted
    masks scales like 1/Π keep², so that event, of probability Π kept_probability, can
    carry the penalty at small keep.
    """
    events = [q for masks, shape in dropouts for q in masks.event_probabilities(shape)]
    keeps = ", ".join(f"{masks.keep:g}" for masks, _ in dropouts)
    if len(dropouts) == 1:
        return events, f"keep = {keeps}"
    all_kept = float(np.prod([masks.kept_probability(shape) for masks, shape in dropouts]))
    events.append(all_kept)
    return events, (
        f"{len(dropouts)} dropout layers of keep {keeps} (a unit kept in all of them: "
        f"probability {all_kept:.3g})"
    )
