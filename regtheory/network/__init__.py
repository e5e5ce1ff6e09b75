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

Control variate. With ``control_variate=True`` in :func:`dropout_penalty` the masks
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
:meth:`~regtheory.Penalty.ci` stays honest, and the variance falls by the
factor :math:`1/(1 - \rho^2)` (ρ the correlation of D and :math:`D_{\rm lin}`), reported as
``reduction_factor`` (plain over controlled variance, measured on the estimate's own
draws). A network linear after its first random layer has :math:`D_{\rm lin} = D`: the
estimate is then the exact penalty up to rounding. Other non-linearities after the first
random layer (:class:`~regtheory.layers.Elementwise`) have no 0/1 pattern and are refused
(``InvalidParameterError``); their first-order linearisation would serve the same way.
The control variate costs about a second forward pass per draw and one exact penalty per
sample.

Speed and precision. :func:`dropout_penalty` (``method="mc"``) does not run :func:`forward` layer by
layer on whole batches: the layers before the first random one run once, on the data,
and the rest run in chunks of (draw, sample) images that fit in the cache, on every core,
with feature maps kept on a padded grid where each convolution is one matrix product
(the package's one Monte Carlo engine, shared with :mod:`regtheory.conv`). A draw costs a
small multiple of the matrix products of its convolutions (the benchmarks measure it). Elementwise masks take 8 random bits a unit
(:func:`regtheory.masks.kept_units`), the other laws their own ``sample``; chunk i of a
batch draws from a stream seeded by (one key drawn from ``rng`` per batch, i), so the
numbers do not depend on the number of threads. ``dtype="float32"`` runs the masked
passes in single precision with the same masks: the per-sample losses are summed in
float64 and L(1) comes from the same float32 pass, and the estimate differs from the
float64 one by about 1e-4 standard errors or less (tests/test_mc_engine.py).
"""

# The nodes live in regtheory.layers; these names stay importable from here, as before.
from ..layers import Conv as Conv
from ..layers import DropConnect as DropConnect
from ..layers import Dropout as Dropout
from ..layers import Elementwise as Elementwise
from ..layers import Linear as Linear
from ..layers import ReLU as ReLU
from ._moments import PenaltyTerms
from ._penalty import dropout_penalty, dropout_penalty_mc, dropout_penalty_terms, forward

__all__ = [
    "PenaltyTerms",
    "dropout_penalty",
    "dropout_penalty_mc",
    "dropout_penalty_terms",
    "forward",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)
