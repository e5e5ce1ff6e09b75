"""Reproducible training of a PyTorch classifier, with dropout or its explicit regularizer.

Training is deterministic: torch's generator is seeded from ``rng`` inside
``torch.random.fork_rng`` (the caller's random state is untouched), deterministic
algorithms are switched on and the thread count fixed for the run, all restored after.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from .._grammar import RngLike, as_rng, transition_to_rng
from .._validation import (
    InvalidParameterError,
    check_array,
    check_choice,
    check_int,
    check_nonnegative,
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


def _training_data(model, X, labels) -> tuple[np.ndarray, np.ndarray]:
    """The model, inputs and labels of :func:`train_classifier`, checked in order."""
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
    return X, y


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
    loss: str = "cross_entropy",
    dropout_as: str = "masks",
    hessian: str = "exact",
    weight_decay: float = 0.0,
) -> nn.Module:
    r"""A trained copy of a PyTorch classifier: Adam, with dropout or its regularizer.

    By default the model sees real dropout masks at every step; ``dropout_as`` can
    replace them by dropout's explicit regularizer. The data are reshuffled every epoch
    into mini-batches of ``batch_size`` rows. Training is deterministic (module docstring):
    the same seed gives the same weights on the same machine; across processors
    rounding differs and training amplifies it, so expect close, not equal, results.

    Parameters
    ----------
    model : torch.nn.Module
        Maps inputs of ``X``'s sample shape to one logit per class (not changed).
    X, labels : array or torch.Tensor
        Training inputs (n, ...) in any real dtype; class indices 0, 1, … (n,).
    epochs, batch_size : int
        Passes over the data; rows per mini-batch (default all: a step per epoch).
    lr : float
        Adam's step size (other Adam settings: torch's defaults).
    rng : int, numpy.random.Generator or None
        Source of the shuffles and masks (``seed=`` still works, with a warning).
    n_threads : int
        torch's threads while training (one: small steps are not worth splitting).
    loss : {"cross_entropy", "mse"}
        Cross-entropy, or squared error to the one-hot labels summed over the classes.
    dropout_as : {"masks", "off", "explicit", "explicit+noise"}
        ``"masks"``: real dropout masks. ``"off"``: every dropout site the identity.
        ``"explicit"``: no masks; the clean output's loss plus
        :func:`explicit_regularizer` on each mini-batch. ``"explicit+noise"``: that,
        plus dropout's first-order term for a fresh draw of the masks (``noise=True``
        there). All but ``"masks"`` need a model ``torch.fx`` can trace.
    hessian : {"exact", "sampled"}
        The explicit regularizer's Hessian (:func:`explicit_regularizer`).
    weight_decay : float
        Adam's L2 coefficient: the gradient of ``weight_decay / 2 * ‖θ‖²`` is added.

    Returns
    -------
    torch.nn.Module
        A trained deep copy of ``model``, in evaluation mode.

    Raises
    ------
    InvalidParameterError
        If ``model`` is not a torch module, ``X`` not a finite real array, ``labels``
        not one class index >= 0 per row of ``X``; an int option not a positive int,
        ``lr`` not positive, ``weight_decay`` negative, a str option not one of its
        values, the model untraceable where ``dropout_as`` needs a trace, or ``rng`` refused.
    IndexError
        From torch, for a class index beyond the model's logits.

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
    X, y = _training_data(model, X, labels)
    epochs, batch_size, n_threads = (
        check_int(epochs, "epochs"),
        len(X) if batch_size is None else check_int(batch_size, "batch_size"),
        check_int(n_threads, "n_threads"),
    )
    lr, weight_decay = check_positive(lr, "lr"), check_nonnegative(weight_decay, "weight_decay")
    for value, (name, options) in zip((loss, dropout_as, hessian), OPTIONS.items()):
        check_choice(value, name, options)
    torch_seed = int((gen := as_rng(rng)).integers(2**62))
    trained = copy.deepcopy(model)
    device, dtype = _placement(trained)
    x, target = torch.from_numpy(X).to(device, dtype), torch.from_numpy(y).long().to(device)
    step_loss = _step_loss(trained, loss, dropout_as, hessian, gen, x[:1])  # traces if it needs
    with _reproducible(n_threads):
        torch.manual_seed(torch_seed)
        optimizer = torch.optim.Adam(trained.parameters(), lr=lr, weight_decay=weight_decay)
        trained.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(x), device=device).split(batch_size):
                optimizer.zero_grad()
                step_loss(x[batch], target[batch]).backward()
                optimizer.step()
    return trained.eval()


OPTIONS = {
    "loss": ("cross_entropy", "mse"),
    "dropout_as": ("masks", "off", "explicit", "explicit+noise"),
    "hessian": ("exact", "sampled"),
}


def task_loss(name: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean training loss of ``logits`` for class ``labels``: cross-entropy or mse.

    ``"mse"`` is the squared error to the one-hot labels, summed over the classes.
    """
    if name == "cross_entropy":
        return nn.functional.cross_entropy(logits, labels)
    onehot = nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return ((logits - onehot) ** 2).sum(dim=1).mean()


def _step_loss(
    model: nn.Module,
    loss: str,
    dropout: str,
    hessian: str,
    gen: np.random.Generator,
    probe: torch.Tensor,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss one training step differentiates, for a mini-batch and its labels.

    ``probe``: one input row, for the width of the logits (one-hot targets of mse).
    """
    if dropout == "masks":
        return lambda xb, yb: task_loss(loss, model(xb), yb)
    from ._explicit import explicit_regularizer
    from ._trace import Untraceable, trace

    if dropout == "off":
        try:
            clean = trace(model).gm  # its dropout sites are the identity
        except Untraceable as exc:
            raise InvalidParameterError(
                f"dropout_as='off' reads the model's graph, but {exc}"
            ) from None
        return lambda xb, yb: task_loss(loss, clean(xb), yb)
    noise = dropout == "explicit+noise"
    if loss == "cross_entropy":
        targets: Callable[[torch.Tensor], torch.Tensor] = lambda labels: labels  # noqa: E731
    else:  # squared error to one-hot rows as wide as the logits
        with torch.no_grad():
            width = model.eval()(probe).shape[1]
        targets = lambda labels: nn.functional.one_hot(labels, width).to(probe.dtype)  # noqa: E731

    def regularized(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        reg = explicit_regularizer(
            model, xb, Y=targets(yb) if noise else None, loss=loss, hessian=hessian,
            noise=noise, rng=gen,
        )  # fmt: skip
        total = task_loss(loss, reg.output, yb) + reg.value
        return total + reg.noise if reg.noise is not None else total

    return regularized
