r"""Minibatch stochastic gradient descent with real dropout masks, as the trainers run it.

Every trainer of :mod:`regtheory.training` runs the same loop: at step t it draws a
minibatch of ``batch_size`` distinct samples (all of them when ``batch_size`` is the
number of samples; no random draw then), lets the trainer draw one mask per sample
and return the sampled loss and its gradient, and steps

.. math:: \theta \leftarrow \theta - \eta_t \nabla \ell_t, \qquad
          \eta_t = \frac{\eta}{1 + t/\tau}

(constant :math:`\eta` without a decay time τ; Robbins–Monro). Every ``record_every``
steps, and after the last, it records the objective and what the trainer asks for; a
non-finite loss or weight stops it with a ``FloatingPointError`` naming ``lr``. The
random generator is used in this order each step: the minibatch, then the trainer's
masks, so the same seed gives the same run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ._validation import InvalidParameterError, check_int, check_positive

__all__ = ["History", "Schedule", "check_schedule", "diverged", "frozen", "run", "seed_record"]

Params = tuple[np.ndarray, ...]
# step(params, rows, rng) -> (sampled loss, gradients); rows None means every sample
Step = Callable[[Params, np.ndarray | None, np.random.Generator], tuple[float, Params]]


@dataclass(frozen=True)
class Schedule:
    """The checked SGD settings of a run (``batch_size`` and ``record_every`` resolved)."""

    steps: int
    lr: float
    init_scale: float
    lr_decay: float | None
    batch_size: int
    record_every: int

    def step_size(self, t: int) -> float:
        """η_t = η / (1 + t/τ), or η without a decay time."""
        return self.lr if self.lr_decay is None else self.lr / (1.0 + t / self.lr_decay)

    def records_after(self, t: int) -> bool:
        """Whether the state after step t (0-based) is recorded."""
        return (t + 1) % self.record_every == 0 or t + 1 == self.steps


def check_schedule(steps, lr, init_scale, lr_decay, batch_size, record_every, n: int) -> Schedule:
    """Validate the SGD settings shared by every trainer; fill in the defaults."""
    steps = check_int(steps, "steps")
    lr = check_positive(lr, "lr")
    init_scale = check_positive(init_scale, "init_scale")
    if lr_decay is not None:
        lr_decay = check_positive(lr_decay, "lr_decay")
    batch_size = check_int(n if batch_size is None else batch_size, "batch_size")
    if batch_size > n:
        raise InvalidParameterError(
            f"`batch_size` must be in [1, n] = [1, {n}] (samples), got {batch_size}"
        )
    record_every = check_int(
        -(-steps // 100) if record_every is None else record_every, "record_every"
    )
    return Schedule(steps, lr, init_scale, lr_decay, batch_size, record_every)


def seed_record(seed: object) -> int | None:
    """The integer seed as recorded in a result, or ``None`` for a Generator / SeedSequence."""
    return int(seed) if isinstance(seed, numbers.Integral) else None


def frozen(a: object) -> np.ndarray:
    """A read-only copy of ``a`` as an array."""
    arr = np.array(a)
    arr.flags.writeable = False
    return arr


def diverged(lr: float, step: int) -> str:
    """The message of the FloatingPointError raised when a run diverges."""
    return (
        f"dropout training diverged (non-finite loss or weights at step {step}): "
        f"`lr` = {lr!r} is too large for this data; reduce it"
    )


@dataclass(frozen=True)
class History:
    """A finished run: final weights, and per record the step, the loss and the snapshots.

    ``snapshots[i]`` stacks the i-th array returned by the trainer's ``snapshot`` over
    the records. Every array is read-only.
    """

    params: Params
    steps: np.ndarray
    loss: np.ndarray
    snapshots: tuple[np.ndarray, ...]


def run(
    params: Params,
    step: Step,
    schedule: Schedule,
    n: int,
    rng: np.random.Generator,
    objective: Callable[[Params], float] | None,
    snapshot: Callable[[Params], Sequence[np.ndarray]],
) -> History:
    """Run SGD from ``params`` (see the module docstring) and return its history.

    ``objective(params)`` is the recorded loss (the expected dropout objective). Without
    one the record holds the mean sampled minibatch loss of the steps since the previous
    record (each at the weights before its step), and at step 0 the first step's loss.
    """
    steps_taken: list[int] = []
    losses: list[float] = []
    taken: list[Sequence[np.ndarray]] = []

    def record(t: int, sampled: float | None) -> None:
        if not all(np.all(np.isfinite(p)) for p in params):
            raise FloatingPointError(diverged(schedule.lr, t))
        loss = objective(params) if objective is not None else sampled
        if loss is None or not math.isfinite(loss):
            raise FloatingPointError(diverged(schedule.lr, t))
        steps_taken.append(t)
        losses.append(loss)
        taken.append(snapshot(params))

    if objective is not None:
        record(0, None)
    window_sum, window_len = 0.0, 0
    # Overflow is expected when lr is too large; it is reported as one clear error above.
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(schedule.steps):
            rows = None
            if schedule.batch_size != n:
                rows = rng.choice(n, size=schedule.batch_size, replace=False)
            loss, grads = step(params, rows, rng)
            if not math.isfinite(loss):
                raise FloatingPointError(diverged(schedule.lr, t))
            if t == 0 and objective is None:
                record(0, loss)
            window_sum, window_len = window_sum + loss, window_len + 1
            eta = schedule.step_size(t)
            params = tuple(p - eta * g for p, g in zip(params, grads))
            if schedule.records_after(t):
                record(t + 1, window_sum / window_len)
                window_sum, window_len = 0.0, 0
    return History(
        params=tuple(frozen(p) for p in params),
        steps=frozen(np.asarray(steps_taken, dtype=np.int64)),
        loss=frozen(losses),
        snapshots=tuple(frozen(list(column)) for column in zip(*taken)),
    )
