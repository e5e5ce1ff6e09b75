r"""Training a fully connected network with real dropout masks (THEORY.md §1).

The network is the factored linear map with inverted dropout on its hidden layer,

.. math:: f_r(x) = U \operatorname{diag}(r/\theta)\, V^\top x, \qquad
          U \in \mathbb{R}^{d_{out}\times w},\; V \in \mathbb{R}^{d_{in}\times w},\;
          r_i \sim \mathrm{Bernoulli}(\theta) \text{ i.i.d.}

(Srivastava et al. [1]). :func:`train_fc` runs minibatch stochastic gradient
descent on the dropout training loss with a fresh, independent mask for every
sample of every step — exactly what a deep-learning framework does — and records
the *expected* dropout objective, which by formula (1) of Mianjy, Arora & Vidal
[2] is, on the training data with :math:`C = X^\top X/n`,

.. math::

    L_\theta(U, V) = \mathbb{E}_r \frac1n \sum_{k=1}^n \|y_k - f_r(x_k)\|^2
                   = \frac1n \|Y - X V U^\top\|_F^2
                     + \lambda \sum_{i=1}^w \|u_i\|^2\, v_i^\top C v_i ,
    \qquad \lambda = \frac{1-\theta}{\theta}.

Nothing in the training loop uses that closed form: the gradients are those of
the sampled loss. The point of the module is the experiment of Cavazza et al.
[3] and Mianjy et al. [2]: real dropout SGD ends at the closed-form global
optimum :func:`regtheory.fc.global_optimum` and at an *equalized* factorization
(every unit carrying the same product :math:`\|u_i\|\,\|C^{1/2}v_i\|`).

References
----------
[1] N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov,
    Dropout: A Simple Way to Prevent Neural Networks from Overfitting, JMLR 15 (2014).
[2] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
[3] J. Cavazza, P. Morerio, B. Haeffele, C. Lane, V. Murino, R. Vidal, Dropout as
    a Low-Rank Regularizer for Matrix Factorization, AISTATS 2018.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import fc
from ._validation import as_generator, check_array, check_int, check_keep
from .masks import Bernoulli

__all__ = ["FCTrainingResult", "train_fc"]


@dataclass(frozen=True, eq=False)
class FCTrainingResult:
    r"""Outcome of :func:`train_fc`: final factors, a history, and the settings used.

    Every array is read-only.

    Attributes
    ----------
    U : array (d_out, width)
        Final output weights.
    V : array (d_in, width)
        Final input weights.
    steps : int array (n_records,)
        Number of gradient steps taken at each record; starts at 0 (the
        initialisation) and ends at ``n_steps``.
    loss : array (n_records,)
        Exact expected dropout objective :math:`L_\theta(U, V)` on the full
        training data at each record (formula (1), see the module docstring).
    maps : array (n_records, d_out, d_in)
        End-to-end map :math:`UV^\top` at each record.
    products : array (n_records, width)
        Per-unit products :math:`\|u_i\|\,\|C^{1/2}v_i\|`, :math:`C = X^\top X/n`
        (:func:`regtheory.fc.unit_products`); for white data (C = I) they are
        :math:`\|u_i\|\,\|v_i\|`. Equal across units when equalized.
    keep, width, n_steps, lr, lr_decay, batch_size, init_scale, record_every
        The settings of the run (``batch_size`` resolved to an int).
    seed : int or None
        The integer seed, or ``None`` when a Generator / SeedSequence was passed.
    """

    U: np.ndarray
    V: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    maps: np.ndarray
    products: np.ndarray
    keep: float
    width: int
    n_steps: int
    lr: float
    lr_decay: float | None
    batch_size: int
    init_scale: float
    record_every: int
    seed: int | None

    @property
    def final_map(self) -> np.ndarray:
        """End-to-end map :math:`UV^\\top` of the final factors."""
        return self.U @ self.V.T


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a positive real number, got {type(value).__name__}")
    value = float(value)
    if not (0.0 < value < math.inf):  # also rejects NaN
        raise ValueError(f"`{name}` must be positive and finite, got {value!r}")
    return value


def _loss_and_grad(
    U: np.ndarray, V: np.ndarray, X: np.ndarray, Y: np.ndarray, masks: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    r"""Sampled dropout loss of one minibatch and its gradient, by hand.

    With :math:`H = XV` (b×w), the masked hidden layer :math:`Z = H \circ R`
    (``masks`` = R, one row :math:`r_k/\theta` per sample) and the residual
    :math:`E = ZU^\top - Y`,

    .. math::

        \ell = \frac1b \|E\|_F^2, \qquad
        \nabla_U \ell = \frac2b E^\top Z, \qquad
        \nabla_V \ell = \frac2b X^\top \big((E U) \circ R\big).

    Parameters
    ----------
    U, V : arrays (d_out, w), (d_in, w)
    X, Y : arrays (b, d_in), (b, d_out)
    masks : array (b, w)
        Already scaled masks :math:`r_k/\theta`.

    Returns
    -------
    (loss, grad_U, grad_V)
    """
    b = X.shape[0]
    Z = (X @ V) * masks
    E = Z @ U.T - Y
    loss = float(np.einsum("ij,ij->", E, E)) / b
    grad_U = (2.0 / b) * (E.T @ Z)
    grad_V = (2.0 / b) * (X.T @ ((E @ U) * masks))
    return loss, grad_U, grad_V


def _expected_objective(
    U: np.ndarray, V: np.ndarray, keep: float, yy: float, yx: np.ndarray, xx: np.ndarray
) -> float:
    """Formula (1) on the data, from the moments mean‖y‖², YᵀX/n, XᵀX/n (O(d²w), no pass over X)."""
    M = U @ V.T
    fit = yy - 2.0 * np.einsum("ij,ij->", M, yx) + np.einsum("ij,jk,ik->", M, xx, M)
    return float(fit) + fc.dropout_penalty(U, V, keep, cov=xx)


def train_fc(
    X,
    Y,
    width: int,
    keep: float,
    steps: int,
    lr: float,
    seed,
    batch_size: int | None = None,
    init_scale: float = 0.1,
    lr_decay: float | None = None,
    record_every: int | None = None,
) -> FCTrainingResult:
    r"""Train :math:`f(x) = U\operatorname{diag}(r/\theta)V^\top x` by SGD with real dropout.

    Each step draws a minibatch of ``batch_size`` distinct rows, one independent
    mask :math:`r_k/\theta` per row (:class:`regtheory.masks.Bernoulli`), and
    takes a gradient step on the sampled loss

    .. math:: \ell_t = \frac1b \sum_{k \in B_t} \|y_k - U\operatorname{diag}(r_k/\theta)V^\top x_k\|^2,
              \qquad (U, V) \leftarrow (U, V) - \eta_t \nabla \ell_t,
              \qquad \eta_t = \frac{\eta}{1 + t/\tau},

    with hand-written gradients (see ``_loss_and_grad``). :math:`\mathbb{E}\,\ell_t`
    is the dropout objective :math:`L_\theta(U, V)` of formula (1) [2], so this is
    unbiased SGD on it; the step :math:`\eta_t` decays like :math:`1/t` (Robbins–Monro)
    when ``lr_decay`` = τ is given, which is what lets the iterates settle despite the
    mask noise, and is constant otherwise. Both factors start with i.i.d.
    :math:`\mathcal N(0, \text{init\_scale}^2)` entries (zero is a saddle point).

    Parameters
    ----------
    X : array (n, d_in)
        Inputs, one sample per row.
    Y : array (n, d_out)
        Targets, one sample per row.
    width : int
        Number of hidden units w.
    keep : float
        Retain probability θ in (0, 1] (PyTorch's ``p`` is ``1 - keep``).
    steps : int
        Number of gradient steps, at least 1.
    lr : float
        Initial step size η > 0.
    seed : int or numpy.random.Generator
        Source of the initialisation, the minibatches and the masks; the same
        seed gives the same result.
    batch_size : int, optional
        Rows per minibatch, in [1, n]; default n (full batch, masks still sampled).
    init_scale : float
        Standard deviation of the initial weights, > 0.
    lr_decay : float, optional
        Decay time τ > 0 of the step size, :math:`\eta_t = \eta/(1 + t/\tau)`;
        ``None`` keeps it constant.
    record_every : int, optional
        Record the history every this many steps (plus the initial and final
        state); default ``ceil(steps / 100)``.

    Returns
    -------
    FCTrainingResult

    Raises
    ------
    FloatingPointError
        If the loss or the weights become non-finite: ``lr`` is too large.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.eye(4) * 2.0          # X^T X / n = I
    >>> Y = X @ np.diag([3.0, 2.0, 1.0, 0.0])
    >>> res = train_fc(X, Y, width=6, keep=0.8, steps=3000, lr=0.05, seed=0, lr_decay=300)
    >>> T = Y.T @ X / 4
    >>> M = fc.global_optimum(T, 0.8, 6)
    >>> bool(np.linalg.norm(res.final_map - M) < 0.05 * np.linalg.norm(M))
    True

    References
    ----------
    [1] Srivastava et al., JMLR 2014. [2] Mianjy, Arora & Vidal, ICML 2018, Thm 2.5.
    [3] Cavazza et al., AISTATS 2018 (the same experiment, Sec. 5).
    """
    X = check_array(X, "X", ndim=2)
    Y = check_array(Y, "Y", ndim=2)
    n, d_in = X.shape
    if Y.shape[0] != n:
        raise ValueError(
            f"`X` and `Y` must have the same number of rows (samples), got X {X.shape} "
            f"and Y {Y.shape}"
        )
    d_out = Y.shape[1]
    width = check_int(width, "width")
    keep = check_keep(keep)
    steps = check_int(steps, "steps")
    lr = _check_positive(lr, "lr")
    init_scale = _check_positive(init_scale, "init_scale")
    if lr_decay is not None:
        lr_decay = _check_positive(lr_decay, "lr_decay")
    if batch_size is None:
        batch_size = n
    batch_size = check_int(batch_size, "batch_size")
    if batch_size > n:
        raise ValueError(f"`batch_size` must be in [1, n] = [1, {n}], got {batch_size}")
    if record_every is None:
        record_every = -(-steps // 100)
    record_every = check_int(record_every, "record_every")
    seed_record = int(seed) if isinstance(seed, numbers.Integral) else None
    rng = as_generator(seed)

    mask_dist = Bernoulli(keep)
    yy = float(np.einsum("ij,ij->", Y, Y)) / n
    yx = Y.T @ X / n
    xx = X.T @ X / n
    U = init_scale * rng.standard_normal((d_out, width))
    V = init_scale * rng.standard_normal((d_in, width))

    rec_steps, rec_loss, rec_maps, rec_products = [], [], [], []

    def record(t: int) -> None:
        if not (np.all(np.isfinite(U)) and np.all(np.isfinite(V))):
            raise FloatingPointError(_diverged(lr, t))
        loss = _expected_objective(U, V, keep, yy, yx, xx)
        if not math.isfinite(loss):
            raise FloatingPointError(_diverged(lr, t))
        rec_steps.append(t)
        rec_loss.append(loss)
        rec_maps.append(U @ V.T)
        rec_products.append(fc.unit_products(U, V, cov=xx))

    record(0)
    # Overflow is expected when lr is too large; it is reported as one clear error below.
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            if batch_size == n:
                Xb, Yb = X, Y
            else:
                idx = rng.choice(n, size=batch_size, replace=False)
                Xb, Yb = X[idx], Y[idx]
            masks = mask_dist.sample(width, batch_size, rng)
            loss, grad_U, grad_V = _loss_and_grad(U, V, Xb, Yb, masks)
            if not math.isfinite(loss):
                raise FloatingPointError(_diverged(lr, t))
            eta = lr if lr_decay is None else lr / (1.0 + t / lr_decay)
            U = U - eta * grad_U
            V = V - eta * grad_V
            if (t + 1) % record_every == 0 or t + 1 == steps:
                record(t + 1)

    def frozen(a) -> np.ndarray:
        a = np.array(a)
        a.flags.writeable = False
        return a

    return FCTrainingResult(
        U=frozen(U),
        V=frozen(V),
        steps=frozen(np.asarray(rec_steps, dtype=np.int64)),
        loss=frozen(rec_loss),
        maps=frozen(rec_maps),
        products=frozen(rec_products),
        keep=keep,
        width=width,
        n_steps=steps,
        lr=lr,
        lr_decay=lr_decay,
        batch_size=batch_size,
        init_scale=init_scale,
        record_every=record_every,
        seed=seed_record,
    )


def _diverged(lr: float, step: int) -> str:
    return (
        f"dropout training diverged (non-finite loss or weights at step {step}): "
        f"`lr` = {lr!r} is too large for this data; reduce it"
    )
