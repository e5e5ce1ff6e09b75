"""Forward passes and dropout penalties of a network given by :mod:`regtheory.layers`."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._events import mask_events
from .._grammar import (
    RngLike,
    as_rng,
    check_method,
    deprecated_alias,
    keyword_only,
    transition_to_rng,
)
from .._overflow import finite_result
from .._references import cites
from .._results import Penalty
from .._validation import (
    InvalidParameterError,
    check_array,
    check_dtype,
    check_int,
    check_n_masks,
    check_paired_rows,
)
from ..layers import (
    Graph,
    Node,
    ReLU,
    as_graph,
)
from ..montecarlo import default_n_masks, estimate, min_draws
from ..montecarlo._chunks import BATCH_ENTRIES
from ..montecarlo._engine import Engine
from . import _moments
from ._moments import PenaltyTerms

__all__ = [
    "PenaltyTerms",
    "dropout_penalty",
    "dropout_penalty_mc",
    "dropout_penalty_terms",
    "forward",
]


def _seed_of_forward(func: Callable) -> Callable:
    """Accept ``forward``'s former keyword ``seed``, with a DeprecationWarning.

    ``seed=None`` meant the mask-free network, an int or Generator the source of
    ``n_draws`` (default 1) sets of masks.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "seed" in kwargs:
            if "rng" in kwargs:
                raise InvalidParameterError("forward() got both `seed` and `rng`; pass only `rng`")
            warnings.warn(
                "forward(seed=...) is deprecated and will be removed in a future minor "
                "release; pass n_draws=... for masks and rng=... for their source",
                DeprecationWarning,
                stacklevel=2,
            )
            seed = kwargs.pop("seed")
            if seed is None:
                kwargs["n_draws"] = None
            else:
                kwargs["rng"] = seed
                kwargs["n_draws"] = kwargs.get("n_draws") or 1
        return func(*args, **kwargs)

    return wrapper


@cites("srivastava2014dropout")
@_seed_of_forward
def forward(
    layers: Graph | Sequence[Node],
    x: ArrayLike,
    *,
    n_draws: int | None = None,
    rng: RngLike = 0,
) -> np.ndarray:
    r"""Run the network on ``x`` (n, ...) for ``n_draws`` independent sets of masks.

    The layers are applied first to last,

    .. math:: f_r(x) = \phi_L \circ \dots \circ \phi_1 (x),\qquad
              \phi_\ell(z) = m_\ell \circ z \ \text{for a Dropout layer},

    with a fresh mask :math:`m_\ell` from the layer's distribution for every
    sample, every Dropout layer and every draw (inverted dropout, E m = 1, as in
    training; Srivastava et al. [1]). Without ``n_draws`` every Dropout layer is the
    identity: the mask-free network :math:`f_{\mathbf 1}`.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        The network, first layer first. With ``n_draws`` at least one Dropout is
        required.
    x : array (n, ...)
        Inputs, (n, C, H, W) or (n, C, L) for a conv first layer, (n, d) for a
        linear one.
    n_draws : int, optional
        Independent sets of masks; ``None`` (the default) runs the mask-free network.
    rng : int, numpy.random.Generator or None
        Source of the masks (SPEC 7: None draws fresh entropy). The former keyword
        ``seed`` still works, with a DeprecationWarning: ``seed=None`` meant the
        mask-free network, an int or Generator one draw (``n_draws`` 1).

    Returns
    -------
    ndarray
        Shape ``(n_draws, n, ...)`` with masks (draw d in ``out[d]``), ``(n, ...)``
        without; ``...`` is the network's output shape per sample.

    Raises
    ------
    InvalidParameterError
        If ``layers`` is not a network, ``x`` does not fit it, ``n_draws`` is not a
        positive int, ``rng`` is refused, or masks are asked of a network without one.

    References
    ----------
    [1] N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov,
        Dropout: A Simple Way to Prevent Neural Networks from Overfitting,
        JMLR 15, 2014.

    Examples
    --------
    >>> import numpy as np
    >>> from regtheory.layers import Dropout, Linear, ReLU
    >>> from regtheory.masks import Bernoulli
    >>> layers = [Linear(np.ones((2, 3))), ReLU(), Dropout(Bernoulli(0.5)), Linear(np.ones((1, 2)))]
    >>> x = np.ones((4, 3))
    >>> forward(layers, x)[:, 0]  # mask-free: 2 hidden units of value 3
    array([6., 6., 6., 6.])
    >>> forward(layers, x, n_draws=5, rng=0).shape
    (5, 4, 1)
    """
    graph = as_graph(layers)
    x = check_array(x, "x")
    graph.shapes(x.shape[1:], source="`x`")  # the shapes fit before anything runs
    if n_draws is None:
        return graph.forward(x)
    _require_random(graph)
    return _forward_masked(graph, x, as_rng(rng), check_int(n_draws, "n_draws"))


def _require_random(graph: Graph) -> None:
    if not graph.random_positions:
        raise InvalidParameterError(
            "`layers` has no Dropout layer: the penalty would be zero by definition"
        )


def _forward_masked(graph: Graph, x, rng, n_draws):
    # Stack the draws along the sample axis so every layer runs once per batch.
    n = x.shape[0]
    z = np.broadcast_to(x, (n_draws, *x.shape)).reshape(n_draws * n, *x.shape[1:])

    def step(i, node, ins):
        return node.draw(ins[0], rng) if node.random else node.forward(*ins)

    z = graph.evaluate(z, step=step)
    return z.reshape(n_draws, n, *z.shape[1:])


def _checked(layers, X, Y, *, require_y: bool) -> tuple[Graph, np.ndarray, np.ndarray | None]:
    """The one check of the penalty functions.

    It returns the graph (with a random node), the data, and the targets checked against
    the network's output shape.
    """
    graph = as_graph(layers)
    _require_random(graph)
    X = check_array(X, "X")
    out = graph.shapes(X.shape[1:], source="`X`")[-1]
    if Y is None and not require_y:
        return graph, X, None
    Y = check_array(Y, "Y")
    check_paired_rows(X, Y)
    if Y.shape[1:] != out:
        raise InvalidParameterError(
            f"`Y` must have the network's output shape {(len(X), *out)}, got {Y.shape}"
        )
    return graph, X, Y


def _penalty_draws(Y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """L(r) of each draw in ``out`` (draws, n, ...)."""
    resid = (Y[None] - out).reshape(len(out), len(Y), -1)
    return np.mean(np.sum(resid**2, axis=2), axis=1)


def _clean_gates(graph: Graph, X: np.ndarray) -> list[np.ndarray]:
    """The 0/1 pattern (n, ...) of the clean pass at every ReLU after the first random layer."""
    graph = as_graph(graph)
    first, gates = graph.random_positions[0], []

    def step(t, node, ins):
        if t > first and node.elementwise and not node.linear and not isinstance(node, ReLU):
            raise InvalidParameterError(
                f"`control_variate` needs ReLU after the first random layer; `layers[{t}]` is "
                f"the non-linearity {node.name!r}, which has no fixed 0/1 pattern"
            )
        if t > first and isinstance(node, ReLU):
            gates.append((ins[0] > 0).astype(float))
        return node.forward(*ins)

    graph.evaluate(X, step=step)
    return gates


def _frozen_penalty(graph: Graph, X: np.ndarray, Y: np.ndarray, gates: list[np.ndarray]) -> float:
    """Exact penalty of the gate-frozen network.

    Each sample's frozen net is linear after the first random layer, and the penalty is
    the mean of the per-sample penalties.
    """
    graph = as_graph(graph)
    totals = [
        _moments.dropout_penalty_terms(
            _moments.freeze_gates(graph, [g[k] for g in gates]), X[k : k + 1], Y[k : k + 1]
        ).value
        for k in range(len(X))
    ]
    return float(np.mean(totals))


def _controlled_mc(graph: Graph, X, Y, n_masks, seed, batch_size, rtol, need) -> Penalty:
    """The gate-frozen control variate (docstring of dropout_penalty)."""
    gates = _clean_gates(graph, X)
    mu_lin = _frozen_penalty(graph, X, Y, gates)
    rng = as_rng(seed)
    first = graph.random_positions[0]
    engine = Engine(graph, graph.forward(X, stop=first), first, np.float64, gates=gates)
    targets = engine.targets(Y)
    clean_loss = float(np.mean(engine.losses(targets, 1, None)[0]))

    def pair(size):  # the draws of the network and of its twin, under the same masks
        losses = np.mean(engine.losses(targets, size, rng), axis=2) - clean_loss
        return losses[0], losses[1]

    pilot = [pair(m) for m in _batches(max(100, n_masks // 10), batch_size)]
    d, d_lin = (np.concatenate(p) for p in zip(*pilot))
    var_lin = float(np.var(d_lin))
    c = float(np.mean((d - d.mean()) * (d_lin - d_lin.mean()))) / var_lin if var_lin > 0 else 0.0
    plain: list[np.ndarray] = []

    def draw(_, size):
        d, d_lin = pair(size)
        plain.append(d)
        return d - c * (d_lin - mu_lin)

    est = estimate(
        draw, n_masks=n_masks, rng=rng, batch_size=batch_size, rtol=rtol, min_masks=max(1000, need)
    )
    var_plain = float(np.var(np.concatenate(plain), ddof=1))
    factor = var_plain / est.std**2 if est.std > 0 else float("inf")
    return est.replace(variance_reduction="gate-frozen control variate", reduction_factor=factor)


def _batches(total: int, size: int) -> list[int]:
    """Sizes of the batches that split ``total`` draws into at most ``size`` each."""
    return [min(size, total - a) for a in range(0, total, size)]


@cites("arora2021dropout")
@finite_result("the dropout penalty of the network")
def dropout_penalty_terms(
    layers: Graph | Sequence[Node], X: ArrayLike, *, Y: ArrayLike | None = None
) -> PenaltyTerms:
    r"""Exact :math:`\mathbb{E}_r L(r) - L(\mathbf 1)` of a network, split over its dropout layers.

    For squared loss and independent masks (one per sample and random layer), a network
    whose non-linearities all come before its first random layer is multilinear in the
    masks, and its penalty is exact by propagating the masks' first and second moments
    (THEORY.md §6):

    .. math:: P = \text{mean shift} + \sum_{T \ne \emptyset} \operatorname{tr} \bar S_T ,

    one term per non-empty subset T of the random layers: a single layer's own penalty
    (the others at their mean mask) or the interaction of several. The mean shift is
    zero unless a mask has E m ≠ 1 (DropBlock's ideal masks near the border; then the
    targets ``Y`` matter). Masks: :class:`~regtheory.masks.Bernoulli`,
    :class:`~regtheory.masks.Gaussian`, :class:`~regtheory.masks.Channel`,
    :class:`~regtheory.masks.DropBlock` (ideal normaliser),
    :class:`~regtheory.masks.PerSample` (stochastic depth), and
    :class:`~regtheory.layers.DropConnect`.
    A random layer followed by a ReLU has no exact form: ``InvalidParameterError``;
    use :func:`dropout_penalty` with ``method="mc"``.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        The network, first layer first. After its first random node a chain of linear
        nodes: on feature maps same-size convolutions and elementwise linear nodes up to
        a Linear or DropConnect, on vectors any linear node; an Add or Concat there may
        also read mask-free inputs (a residual skip), not two masked ones.
    X : array (n, ...)
        Inputs, (n, C, H, W) or (n, C, L) for a conv first layer, (n, d) for a linear one.
    Y : array (n, ...), optional
        Targets; ``None`` measures the perturbation energy
        :math:`\frac1n\sum_k \mathbb{E}\|f_r(x_k) - f(x_k)\|^2` (the penalty for any
        targets when every mask has mean one).

    Returns
    -------
    PenaltyTerms
        ``total``, ``mean_shift``, the random layers' positions, ``own`` and
        ``interaction`` terms; the parts sum to the total.

    Examples
    --------
    Two dropout layers (keep 0.5, λ = 1) around an all-ones layer, on x = (1, 1): each
    alone costs 8, and both together add an interaction of 4.

    >>> import numpy as np
    >>> from regtheory.layers import Dropout, Linear, ReLU
    >>> from regtheory.masks import Bernoulli
    >>> layers = [Dropout(Bernoulli(0.5)), Linear(np.ones((2, 2))),
    ...           Dropout(Bernoulli(0.5)), Linear(np.ones((1, 2)))]
    >>> terms = dropout_penalty_terms(layers, np.ones((1, 2)))
    >>> terms.value, terms.own.tolist(), terms.term(0, 2)
    (20.0, [8.0, 8.0], 4.0)
    """
    graph, X, Y = _checked(layers, X, Y, require_y=False)
    return _moments.dropout_penalty_terms(graph, X, Y)


@cites("arora2021dropout")
@keyword_only(2)
@transition_to_rng
@finite_result("the dropout penalty of the network")
def dropout_penalty(
    layers: Graph | Sequence[Node],
    X: ArrayLike,
    *,
    Y: ArrayLike | None = None,
    method: str = "auto",
    n_masks: int | None = None,
    rng: RngLike = 0,
    rtol: float | None = None,
    batch_size: int | None = None,
    control_variate: bool = False,
    dtype: str = "float64",
) -> Penalty:
    r"""Dropout penalty :math:`\mathbb{E}_r L(r) - L(\mathbf 1)` of a network on data.

    ``method="exact"``: the ``value`` of :func:`dropout_penalty_terms` (see there for
    the conditions), by moment propagation. ``method="mc"``: the mean of draws
    :math:`D(r) = L(r) - L(\mathbf 1)` over real masks, less the gate-frozen network's
    with ``control_variate=True`` (module docstring). ``"auto"``: exact wherever the
    propagation takes the network, else Monte Carlo.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        The network, first layer first; at least one Dropout or DropConnect.
    X : array (n, ...)
        Inputs, (n, C, H, W) or (n, C, L) for a conv first layer, (n, d) for a linear one.
    Y : array (n, ...), optional
        Targets, the shape of the network's output; ``None`` takes the mask-free output
        (the penalty is then the perturbation energy
        :math:`\frac1n\sum_k \mathbb{E}\|f_r(x_k) - f(x_k)\|^2`, the penalty for any
        targets when every mask has mean one).
    method : {"auto", "exact", "mc"}
        How to compute it (above); ``"exact"`` refuses a network it cannot take.
    n_masks : int, optional
        Monte Carlo draws (fresh masks for every sample and random layer); the maximum
        with ``rtol``. Default :func:`regtheory.montecarlo.default_n_masks` of the rare
        mask events, at least :func:`regtheory.montecarlo.min_draws` of them (a layer's
        own, and a unit kept in all layers: 1415 draws for two layers at keep 0.1).
    rng : int, numpy.random.Generator or None
        Source of the masks; the same int gives the same estimate.
    rtol : float, optional
        Monte Carlo: stop once the relative standard error is at most ``rtol`` (not
        before 1000 draws, nor before the minimum above).
    batch_size : int, optional
        Monte Carlo: draws per vectorised batch (default: about 32 MB of activations).
    control_variate : bool
        Monte Carlo: subtract the gate-frozen network's draws (above); ``False`` (the
        default) gives the plain mean.
    dtype : {"float64", "float32"}
        Monte Carlo: arithmetic of the masked passes (module docstring, "Speed and
        precision"); losses summed in float64. Not with ``control_variate``.

    Returns
    -------
    Penalty
        A float. Exact: ``method="exact"``, standard error 0. Monte Carlo: its
        :meth:`~regtheory.Penalty.ci` is corrected for the skewed draws and covers
        92-98 % at every accepted ``n_masks``; ``variance_reduction`` says ``"none"`` or
        ``"gate-frozen control variate"``.

    Raises
    ------
    InvalidParameterError
        If an argument is refused (a network without a random layer, data that do not
        fit it, too few ``n_masks``), or ``method="exact"`` for a network the exact
        propagation cannot take (the message names the layer).

    References
    ----------
    R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
    Capacity Control, ICML 2021.

    Examples
    --------
    One dropout layer before the last linear layer U is the explicit regularizer
    :math:`\lambda\sum_i \|u_i\|^2\, \overline{h_i^2}` (here λ = 1, u = (1, 2), h = (1, 1)):

    >>> import numpy as np, regtheory
    >>> from regtheory.layers import Dropout, Linear
    >>> layers = [Dropout(regtheory.masks.Bernoulli(0.5)), Linear(np.array([[1.0, 2.0]]))]
    >>> dropout_penalty(layers, np.ones((3, 2)))
    Penalty(5.0, method='exact')
    >>> est = dropout_penalty(layers, np.ones((3, 2)), method="mc", n_masks=4000)
    >>> lo, hi = est.interval
    >>> bool(lo < 5.0 < hi), est.n_masks
    (True, 4000)
    """
    method = check_method(method)
    graph, X, Y_checked = _checked(layers, X, Y, require_y=False)
    options = _mc_options(n_masks, batch_size, control_variate, dtype)
    as_rng(rng)  # refuse a bad rng even where the penalty is exact
    if method != "mc":
        why = _moments.exact_refusal(graph, X.shape[1:])
        if why is None:
            return Penalty.exact(_moments.dropout_penalty_terms(graph, X, Y_checked).value)
        if method == "exact":
            raise InvalidParameterError(why)
    targets = graph.forward(X) if Y_checked is None else Y_checked
    return _monte_carlo(graph, X, targets, rng=rng, rtol=rtol, **options)


dropout_penalty_mc = deprecated_alias(dropout_penalty, "dropout_penalty_mc", method="mc")
dropout_penalty_mc.__doc__ = """Deprecated: Monte Carlo dropout penalty of a network on data.

    Call ``dropout_penalty(layers, X, Y=Y, method="mc", ...)`` instead; this name will be
    removed in a future minor release. ``dropout_penalty_mc(layers, X, Y, n_masks=...,
    seed=...)`` still works, with a DeprecationWarning, and gives the numbers of
    ``dropout_penalty(layers, X, Y=Y, method="mc", n_masks=..., rng=...)``.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        The network, first layer first; at least one Dropout or DropConnect.
    X : array (n, ...)
        Inputs, (n, C, H, W) or (n, C, L) for a conv first layer, (n, d) for a linear one.
    Y : array (n, ...), optional
        Targets, the shape of the network's output (it may still come third, by
        position); ``None`` takes the mask-free output.
    method : {"mc"}
        Always ``"mc"``; any other value is refused.
    n_masks : int, optional
        Monte Carlo draws, as in :func:`dropout_penalty`.
    rng : int, numpy.random.Generator or None
        Source of the masks (the former ``seed`` is still accepted, with a warning).
    rtol : float, optional
        Stop once the relative standard error is at most ``rtol``.
    batch_size : int, optional
        Draws per vectorised batch.
    control_variate : bool
        Subtract the gate-frozen network's draws.
    dtype : {"float64", "float32"}
        Arithmetic of the masked passes.

    Returns
    -------
    Penalty
        The Monte Carlo estimate, as :func:`dropout_penalty` with ``method="mc"``.

    Raises
    ------
    InvalidParameterError
        As :func:`dropout_penalty`, and for a ``method`` other than ``"mc"``.
    NumericalOverflowError
        If the penalty of finite inputs lies beyond float64.

    Warns
    -----
    DeprecationWarning
        At every call: the name is deprecated.

    See Also
    --------
    dropout_penalty : the function to call instead.
    """


def _mc_options(n_masks, batch_size, control_variate, dtype) -> dict:
    """The Monte Carlo options, checked whatever the method.

    A bad one is refused even where the penalty is exact.
    """
    if not isinstance(control_variate, bool):
        raise InvalidParameterError(
            f"`control_variate` must be True or False, got {control_variate!r}"
        )
    arithmetic = check_dtype(dtype)
    if control_variate and arithmetic != np.float64:
        raise InvalidParameterError("`control_variate` runs in float64: use dtype='float64'")
    return {
        "n_masks": None if n_masks is None else check_int(n_masks, "n_masks"),
        "batch_size": None if batch_size is None else check_int(batch_size, "batch_size"),
        "control_variate": control_variate,
        "arithmetic": arithmetic,
    }


def _monte_carlo(
    graph: Graph,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    n_masks: int | None,
    rng: RngLike,
    rtol: float | None,
    batch_size: int | None,
    control_variate: bool,
    arithmetic: np.dtype,
) -> Penalty:
    """The Monte Carlo estimate of :func:`dropout_penalty` (checked options)."""
    events, setting = mask_events(graph.mask_laws(X.shape[1:]))
    need = min_draws(events)
    n_masks = default_n_masks(events) if n_masks is None else n_masks
    n_masks = check_n_masks(n_masks, need, setting)
    if batch_size is None:
        shapes = graph.shapes(X.shape[1:], source="`X`")
        widest = max(int(np.prod(s)) for s in (X.shape[1:], *shapes))  # per sample
        batch_size = int(np.clip(BATCH_ENTRIES // (widest * len(X)), 1, 4096))
    if control_variate:
        return _controlled_mc(graph, X, Y, n_masks, rng, batch_size, rtol, need)
    first = graph.random_positions[0]
    engine = Engine(graph, graph.forward(X, stop=first), first, arithmetic)
    targets = engine.targets(Y)
    clean_loss = float(np.mean(engine.losses(targets, 1, None)))  # L(1), the same arithmetic

    def draw(gen, size):
        return np.mean(engine.losses(targets, size, gen), axis=1) - clean_loss

    return estimate(
        draw,
        n_masks=n_masks,
        rng=rng,
        batch_size=batch_size,
        rtol=rtol,
        min_masks=max(1000, need),
    )
