"""Reproducible training of a PyTorch classifier with real dropout masks."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from .._grammar import RngLike, as_rng, transition_to_rng
from .._validation import (
    InvalidParameterError,
    check_array,
    check_int,
    check_positive,
)
from ._modules import _as_array, _placement


@contextmanager
def _reproducible(n_threads: int) -> Iterator[None]:
    """Torch's random state, thread count and determinism flag for a block; all restored."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(n_threads)
            torch.use_deterministic_algorithms(True)
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


@transition_to_rng
def train_classifier(
    model: nn.Module,
    X: ArrayLike | torch.Tensor,
    labels: ArrayLike | torch.Tensor,
    *,
    epochs: int = 30,
    batch_size: int | None = None,
    lr: float = 3e-3,
    rng: RngLike = 0,
    n_threads: int = 1,
) -> nn.Module:
    r"""A trained copy of a PyTorch classifier: Adam on the cross-entropy, reproducibly.

    The model's dropout modules are in training mode while it trains, so it sees real
    masks at every step; the data are reshuffled every epoch into mini-batches of
    ``batch_size`` rows (the last one smaller). Training is deterministic: torch's generator
    is seeded from ``rng`` (inside ``torch.random.fork_rng``, so the caller's random
    state is untouched), deterministic algorithms are switched on and the thread count
    fixed for the run (both restored after it); the same seed gives the same weights
    on the same machine. Across processors the rounding of each step differs, and
    training amplifies it: expect close, not equal, results there.

    Parameters
    ----------
    model : torch.nn.Module
        Maps inputs of ``X``'s sample shape to one logit per class; it is not changed.
    X : array or torch.Tensor (n, ...)
        Training inputs (cast to the model's dtype).
    labels : array or torch.Tensor (n,)
        Class indices 0, 1, … (integers).
    epochs : int
        Passes over the data.
    batch_size : int, optional
        Rows per mini-batch; default all of them (one step per epoch).
    lr : float
        Adam's step size (other Adam settings are torch's defaults).
    rng : int, numpy.random.Generator or None
        Source of the initial shuffles and of the dropout masks (``seed=`` still works,
        with a warning).
    n_threads : int
        torch's intra-op threads during training. One thread is the default: a small
        model's steps are too short to split, and on a machine whose cores are busy
        extra threads wait for each other (a small CNN on 8×8 images trained 2.5 times
        slower with two threads than with one on two shared cores).

    Returns
    -------
    torch.nn.Module
        A trained deep copy of ``model``, in evaluation mode.

    Examples
    --------
    Two separable points: after training, each is assigned its class.

    >>> import numpy as np, torch
    >>> net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(2, 2))
    >>> X, labels = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
    >>> trained = train_classifier(net, X, labels, epochs=300, lr=0.05)
    >>> trained(torch.tensor(X, dtype=torch.float32)).argmax(dim=1).tolist()
    [0, 1]
    """
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"`model` must be a torch.nn.Module, got {type(model).__name__}"
        )
    X = _as_array(X, "X")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = check_array(labels, "labels", ndim=1)
    if len(y) != len(X) or not np.all(y == np.round(y)) or np.any(y < 0):
        raise InvalidParameterError(
            f"`labels` must hold one class index (an integer >= 0) per row of `X` "
            f"({len(X)} rows), got {len(y)} values"
            + ("" if len(y) != len(X) else " with non-integer or negative entries")
        )
    epochs = check_int(epochs, "epochs")
    batch_size = len(X) if batch_size is None else check_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    torch_seed = int(as_rng(rng).integers(2**62))
    n_threads = check_int(n_threads, "n_threads")
    trained = copy.deepcopy(model)
    device, dtype = _placement(trained)
    x = torch.from_numpy(X).to(device=device, dtype=dtype)
    target = torch.from_numpy(y.astype(np.int64)).to(device)
    with _reproducible(n_threads):
        torch.manual_seed(torch_seed)
        optimizer = torch.optim.Adam(trained.parameters(), lr=lr)
        trained.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(x), device=device).split(batch_size):
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(trained(x[batch]), target[batch])
                loss.backward()
                optimizer.step()
    return trained.eval()
