r"""Dropout penalty of a small sequential network, by Monte Carlo.

Where no closed form exists -- dropout before a non-linearity, dropout in a
middle layer, DropBlock masks -- the dropout penalty of a network on given data

.. math::

    P = \mathbb{E}_r\, L(r) - L(\mathbf 1),\qquad
    L(r) = \frac1n \sum_{k=1}^{n} \|y_k - f_{r_k}(x_k)\|^2 ,

is estimated over real sampled masks, one independent mask per sample per
dropout layer (as in training). Each Monte Carlo draw is the data average
:math:`L(r) - L(\mathbf 1)` for one set of masks, so the estimate is unbiased
for P and its standard error is honest.

Where a closed form does exist it checks this estimator: dropout on the input
of the *last* linear layer gives :math:`\lambda\sum_i \|u_i\|^2\,\frac1n\sum_k a_i(x_k)^2`
for any features a(x), linear or ReLU (Arora, Bartlett, Mianjy & Srebro,
ICML 2021), which is :func:`regtheory.fc.dropout_penalty` /
:func:`regtheory.conv.dropout_penalty`.

A network is described by :mod:`regtheory.layers`, the description every path of
the package shares: a :class:`~regtheory.layers.Graph`, or a sequence of its nodes
(a chain) such as :class:`~regtheory.layers.Conv`, :class:`~regtheory.layers.Linear`
(``nn.Linear`` weight ``(out, in)``, flattens its input channel first as
``torch.flatten`` does), :class:`~regtheory.layers.ReLU`, and
:class:`~regtheory.layers.Dropout` holding any :mod:`regtheory.masks` distribution.
Those nodes are importable from here as well. Any node runs before the first random
one; after it, the exact penalty takes linear nodes and the Monte Carlo engine
same-size convolutions, fully connected layers and elementwise nodes, and each refuses
another node by its position and type.

Control variate. With ``control_variate=True`` in :func:`dropout_penalty_mc` the masks
of each draw :math:`D(r) = L(r) - L(\mathbf 1)` also drive the *gate-frozen* network,
whose every ReLU after the first random layer is replaced by the fixed 0/1 pattern of
the clean pass on that sample, :math:`\mathrm{relu}(z) \to \mathbb 1[z_{\mathbf 1} > 0]\circ z`.
It is linear after the first random layer, so its penalty
:math:`\mu_{\rm lin} = \mathbb E D_{\rm lin}` is exact: :func:`dropout_penalty_terms` of
each sample's frozen network, averaged over the samples (the exact engine averages its
fluctuation states over the data, so a per-sample gate needs one call per sample; a fixed
diagonal keeps the probes of conv maps local, so each costs what an exact penalty costs).
The frozen network agrees with the network wherever no pre-activation changes sign
under the masks. The estimate is the mean of

.. math:: Z(r) = D(r) - c\,\big(D_{\rm lin}(r) - \mu_{\rm lin}\big),\qquad
          c = \widehat{\operatorname{Cov}}(D, D_{\rm lin}) / \widehat{\operatorname{Var}}\, D_{\rm lin},

with c fitted on a pilot of ``max(100, n_masks // 10)`` further draws that are then
discarded: given c the Z are i.i.d. with mean exactly P, so the interval of
:meth:`~regtheory.montecarlo.Estimate.ci` stays honest, and the variance falls by the
factor :math:`1/(1 - \rho^2)` (ρ the correlation of D and :math:`D_{\rm lin}`), reported as
``reduction_factor`` (plain over controlled variance, measured on the estimate's own
draws). A network linear after its first random layer has :math:`D_{\rm lin} = D`: the
estimate is then the exact penalty up to rounding. Other non-linearities after the first
random layer (:class:`~regtheory.layers.Elementwise`) have no 0/1 pattern and are refused
(``InvalidParameterError``); their first-order linearisation would serve the same way.
The control variate costs about a second forward pass per draw and one exact penalty per
sample.

Speed and precision. :func:`dropout_penalty_mc` does not run :func:`forward` layer by
layer on whole batches: the layers before the first random one run once, on the data,
and the rest run in chunks of (draw, sample) images that fit in the cache, on every core,
with feature maps kept on a padded grid where each convolution is one matrix product
(``regtheory.montecarlo._engine``). A draw then costs about 1.7 times the matrix products of its
convolutions (``benchmarks/bench_mc.py``). Elementwise masks take 8 random bits a unit
(:func:`regtheory.masks.kept_units`), the other laws their own ``sample``; chunk i of a
batch draws from a stream seeded by (one key drawn from ``seed`` per batch, i), so the
numbers do not depend on the number of threads. ``dtype="float32"`` runs the masked
passes in single precision with the same masks: the per-sample losses are summed in
float64 and L(1) comes from the same float32 pass, and the estimate differs from the
float64 one by about 1e-4 standard errors or less (tests/test_mc_engine.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import _moments
from ._events import mask_events
from ._moments import PenaltyTerms
from ._overflow import finite_result
from ._validation import (
    InvalidParameterError,
    as_generator,
    check_array,
    check_dtype,
    check_int,
    check_n_masks,
    check_paired_rows,
)
from .layers import (
    Conv,
    DropConnect,
    Dropout,
    Elementwise,
    Graph,
    Linear,
    Node,
    ReLU,
    as_graph,
)
from .montecarlo import Estimate, estimate, min_draws
from .montecarlo._chunks import BATCH_ENTRIES
from .montecarlo._engine import Engine

# The nodes live in regtheory.layers; these names stay importable from here.
_NODES = (Conv, DropConnect, Dropout, Elementwise, Linear, ReLU)

__all__ = [
    "PenaltyTerms",
    "dropout_penalty",
    "dropout_penalty_mc",
    "dropout_penalty_terms",
    "forward",
]


def forward(
    layers: Graph | Sequence[Node],
    x: ArrayLike,
    *,
    seed: int | np.random.Generator | None = None,
    n_draws: int = 1,
) -> np.ndarray:
    r"""Run the network on ``x`` (n, ...) for ``n_draws`` independent sets of masks.

    The layers are applied first to last,

    .. math:: f_r(x) = \phi_L \circ \dots \circ \phi_1 (x),\qquad
              \phi_\ell(z) = m_\ell \circ z \ \text{for a Dropout layer},

    with a fresh mask :math:`m_\ell` from the layer's distribution for every
    sample, every Dropout layer and every draw (inverted dropout, E m = 1, as in
    training; Srivastava et al. [1]). With ``seed=None`` every Dropout layer is the
    identity: the mask-free network :math:`f_{\mathbf 1}`.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        The network, first layer first. With a ``seed`` at least one Dropout is
        required (else ``ValueError``).
    x : array (n, ...)
        Inputs, (n, C, H, W) or (n, C, L) for a conv first layer, (n, d) for a
        linear one.
    seed : int or numpy.random.Generator, optional
        Source of the masks; ``None`` runs the mask-free network.
    n_draws : int
        Independent sets of masks (ignored when ``seed`` is ``None``).

    Returns
    -------
    ndarray
        Shape ``(n_draws, n, ...)`` with masks (draw d in ``out[d]``), ``(n, ...)``
        without; ``...`` is the network's output shape per sample.

    References
    ----------
    [1] N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov,
        Dropout: A Simple Way to Prevent Neural Networks from Overfitting,
        JMLR 15, 2014.

    Examples
    --------
    >>> import numpy as np
    >>> from regtheory.masks import Bernoulli
    >>> layers = [Linear(np.ones((2, 3))), ReLU(), Dropout(Bernoulli(0.5)), Linear(np.ones((1, 2)))]
    >>> x = np.ones((4, 3))
    >>> forward(layers, x)[:, 0]  # mask-free: 2 hidden units of value 3
    array([6., 6., 6., 6.])
    >>> forward(layers, x, seed=0, n_draws=5).shape
    (5, 4, 1)
    """
    graph = as_graph(layers)
    x = check_array(x, "x")
    graph.shapes(x.shape[1:], source="`x`")  # the shapes fit before anything runs
    if seed is None:
        return graph.forward(x)
    _require_random(graph)
    return _forward_masked(graph, x, as_generator(seed), check_int(n_draws, "n_draws"))


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
    """The graph (with a random node), the data, and the targets checked against the
    network's output shape: the one check of the penalty functions."""
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


@finite_result("the dropout penalty of the network (Monte Carlo)")
def dropout_penalty_mc(
    layers: Graph | Sequence[Node],
    X: ArrayLike,
    Y: ArrayLike,
    *,
    n_masks: int = 2000,
    seed: int | np.random.Generator = 0,
    rtol: float | None = None,
    batch_size: int | None = None,
    control_variate: bool = False,
    dtype: str = "float64",
) -> Estimate:
    r"""Monte Carlo estimate of :math:`\mathbb{E}_r L(r) - L(\mathbf 1)` for a network on data.

    Each draw is :math:`D(r) = L(r) - L(\mathbf 1)` for one set of masks; with
    ``control_variate=True`` the draws of the gate-frozen network, whose penalty is
    exact, are subtracted (module docstring, "Control variate").

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        The network, first layer first; at least one Dropout.
    X : array (n, ...)
        Inputs, (n, C, H, W) for a conv first layer, (n, d) for a linear one.
    Y : array (n, ...)
        Targets, the shape of the network's output.
    n_masks : int
        Number of draws (each a fresh independent mask for every sample and every
        Dropout layer); the maximum when ``rtol`` is given. At least
        :func:`regtheory.montecarlo.min_draws` of the layers' rarest mask events,
        else ``ValueError``: each layer's own (``keep`` for elementwise masks) and,
        with several Dropout layers, a unit kept in all of them (the product of
        their keeps: 1415 draws for two layers at keep 0.1).
    seed : int or numpy.random.Generator
    rtol : float, optional
        Stop once the relative standard error is at most ``rtol`` (not before
        1000 draws, nor before the minimum above).
    batch_size : int, optional
        Draws per vectorised batch (default: about 32 MB of activations).
    control_variate : bool
        Subtract the gate-frozen network's draws (above); ``False`` (the default) gives
        the plain mean.
    dtype : {"float64", "float32"}
        Arithmetic of the masked passes: float32 halves the memory traffic and runs the
        matrix products about twice as fast; the losses are summed in float64 and the
        clean loss L(1) comes from the same float32 pass, so rounding enters both sides
        of each draw alike (module docstring, "Speed and precision"). Not with
        ``control_variate``.

    Returns
    -------
    Estimate
        Its :meth:`~regtheory.montecarlo.Estimate.ci` is corrected for the skewed
        draws and covers 92-98 % at every accepted ``n_masks`` (tests/test_coverage.py;
        with the control variate tests/test_control_variates.py). ``variance_reduction``
        says ``"none"`` or ``"gate-frozen control variate"``.

    References
    ----------
    R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
    Capacity Control, ICML 2021.
    """
    graph, X, Y_checked = _checked(layers, X, Y, require_y=True)
    assert Y_checked is not None
    Y = Y_checked
    events, setting = mask_events(graph.mask_laws(X.shape[1:]))
    need = min_draws(events)
    n_masks = check_n_masks(n_masks, need, setting)
    if not isinstance(control_variate, bool):
        raise InvalidParameterError(
            f"`control_variate` must be True or False, got {control_variate!r}"
        )
    arithmetic = check_dtype(dtype)
    if batch_size is None:
        shapes = graph.shapes(X.shape[1:], source="`X`")
        widest = max(int(np.prod(s)) for s in (X.shape[1:], *shapes))  # per sample
        batch_size = int(np.clip(BATCH_ENTRIES // (widest * len(X)), 1, 4096))
    if control_variate:
        if arithmetic != np.float64:
            raise InvalidParameterError("`control_variate` runs in float64: use dtype='float64'")
        return _controlled_mc(graph, X, Y, n_masks, seed, batch_size, rtol, need)
    first = graph.random_positions[0]
    engine = Engine(graph, graph.forward(X, stop=first), first, arithmetic)
    targets = engine.targets(Y)
    clean_loss = float(np.mean(engine.losses(targets, 1, None)))  # L(1), the same arithmetic

    def draw(rng, size):
        return np.mean(engine.losses(targets, size, rng), axis=1) - clean_loss

    low = max(1000, need)  # no early stop below `low` masks
    return estimate(
        draw, n_masks=n_masks, rng=seed, batch_size=batch_size, rtol=rtol, min_masks=low
    )


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
    """Exact penalty of the gate-frozen network: each sample's frozen net is linear after
    the first random layer, and the penalty is the mean of the per-sample penalties."""
    graph = as_graph(graph)
    totals = [
        _moments.dropout_penalty_terms(
            _moments.freeze_gates(graph, [g[k] for g in gates]), X[k : k + 1], Y[k : k + 1]
        ).total
        for k in range(len(X))
    ]
    return float(np.mean(totals))


def _controlled_mc(graph: Graph, X, Y, n_masks, seed, batch_size, rtol, need) -> Estimate:
    """The gate-frozen control variate (docstring of dropout_penalty_mc)."""
    gates = _clean_gates(graph, X)
    mu_lin = _frozen_penalty(graph, X, Y, gates)
    rng = as_generator(seed)
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
        draw,
        n_masks=n_masks,
        rng=rng,
        batch_size=batch_size,
        rtol=rtol,
        min_masks=max(1000, need),
    )
    var_plain = float(np.var(np.concatenate(plain), ddof=1))
    factor = var_plain / est.std**2 if est.std > 0 else float("inf")
    return est.replace(variance_reduction="gate-frozen control variate", reduction_factor=factor)


def _batches(total: int, size: int) -> list[int]:
    """Sizes of the batches that split ``total`` draws into at most ``size`` each."""
    return [min(size, total - a) for a in range(0, total, size)]


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
    :class:`~regtheory.masks.DropBlock` (ideal normaliser), and
    :class:`~regtheory.layers.DropConnect`.
    A random layer followed by a ReLU has no exact form: ``InvalidParameterError``;
    use :func:`dropout_penalty_mc`.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        The network, first layer first. After its first random node a chain of linear
        nodes: on feature maps same-size convolutions and elementwise linear nodes up to
        a Linear or DropConnect, on vectors any linear node.
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
    >>> from regtheory.masks import Bernoulli
    >>> layers = [Dropout(Bernoulli(0.5)), Linear(np.ones((2, 2))),
    ...           Dropout(Bernoulli(0.5)), Linear(np.ones((1, 2)))]
    >>> terms = dropout_penalty_terms(layers, np.ones((1, 2)))
    >>> terms.total, terms.own.tolist(), terms.term(0, 2)
    (20.0, [8.0, 8.0], 4.0)
    """
    graph, X, Y = _checked(layers, X, Y, require_y=False)
    return _moments.dropout_penalty_terms(graph, X, Y)


@finite_result("the dropout penalty of the network")
def dropout_penalty(
    layers: Graph | Sequence[Node], X: ArrayLike, *, Y: ArrayLike | None = None
) -> float:
    r"""Exact dropout penalty :math:`\mathbb{E}_r L(r) - L(\mathbf 1)` of a network on data.

    The ``total`` of :func:`dropout_penalty_terms` (see there for the conditions): any
    depth, dropout at any number of layers, FC and conv layers, no Monte Carlo error.
    It is what :func:`dropout_penalty_mc` estimates.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
    X : array (n, ...)
    Y : array (n, ...), optional
        Targets (they matter only where a mask has E m ≠ 1).

    Returns
    -------
    float

    Examples
    --------
    One dropout layer before the last linear layer U is the explicit regularizer
    :math:`\lambda\sum_i \|u_i\|^2\, \overline{h_i^2}` (here λ = 1, u = (1, 2), h = (1, 1)):

    >>> import numpy as np
    >>> from regtheory.masks import Bernoulli
    >>> dropout_penalty([Dropout(Bernoulli(0.5)), Linear(np.array([[1.0, 2.0]]))], np.ones((3, 2)))
    5.0
    """
    return dropout_penalty_terms(layers, X, Y=Y).total
