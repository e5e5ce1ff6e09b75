r"""Convolutional layers as matrices, and dropout on a conv feature map (THEORY.md §2–§3).

Conventions (exactly those of ``torch.nn.functional.conv2d``): weights in PyTorch
layout ``(out_ch, in_ch, kh, kw)``, cross-correlation, stride 1, odd kernels,
"same" output size, padding ``"zeros"`` (``padding=k//2``) or ``"circular"``
(periodic image). Images ``(N, C, H, W)`` are flattened channel first, row-major:
index ``c*H*W + i*W + j``. 1-D kernels ``(out_ch, in_ch, k)`` on 1-D signals
``(N, C, L)`` are accepted everywhere and treated as images of height 1.

The model of §3 is the two-layer linear conv net with dropout on the hidden map,

.. math::

    g(x) = u \ast \big(m \circ (v \ast x)\big)
         = \sum_c U_c \operatorname{diag}(m_c)\, V_c\, x ,

``v`` of shape ``(C_hid, C_in, k, k)``, ``u`` of shape ``(C_out, C_hid, k', k')``,
:math:`U_c, V_c` the blocks of the expanded matrices (:func:`conv_matrix`) that
belong to hidden channel c, and ``m`` an inverted dropout mask (E m = 1). Its
expected squared deviation from the mask-free net is formula (1) applied column
by column of U (h = V x the hidden map, λ = (1 − θ)/θ):

.. math::

    \text{elementwise:}\quad \lambda \sum_j \|U[:, j]\|^2\, \mathbb{E}[h_j^2]      \quad (5)

    \text{channel:}\quad \lambda \sum_c \mathbb{E}\|U_c h_c\|^2                     \quad (6)

Neither needs a dense matrix: :func:`column_sq_norms` is a correlation of the
squared kernel with the image's valid-position mask.

DropBlock [4] with the ideal 1/θ normaliser (THEORY §3.2) drops square blocks whose
starts fire independently at rate γ, independently per channel. Its masks are neither
independent nor of mean one. Position p is kept iff none of the :math:`c(p)` block
starts covering it fires, p and q iff none of the :math:`c(p) + c(q) - o(p,q)` starts
covering either does (:math:`o` = starts covering both; β = 1 − γ):

.. math::

    \mathbb{E}[m_p] = \frac{\beta^{c(p)}}{\theta},\qquad
    \operatorname{Cov}(m_p, m_q) = \frac{\beta^{c(p)+c(q)-o(p,q)}\,(1-\beta^{o(p,q)})}
                                        {\theta^2},

so with :math:`e = m - 1`, :math:`\mathbb{E}[ee^\top] = \bar e\bar e^\top +
\operatorname{blockdiag}_c \operatorname{Cov}(m)`, :math:`\bar e = \mathbb{E}m - 1`, and
the loss gap Δ of :func:`dropout_penalty` is

.. math::

    \Delta = \frac1N\sum_n \Big(\|U(\bar e\circ h_n) - r_n\|^2 - \|r_n\|^2
             + \sum_c \sum_{p,q} \operatorname{Cov}(m_p, m_q)\,
               (U_c^\top U_c)_{pq}\, h_{c,p} h_{c,q}\Big),
    \quad r_n = y_n - f(x_n):

the loss change of the mean mask plus the mask's variance. :math:`\bar e \ne 0` at the
border (:math:`c(p)` is smaller there), so the cross term is real: with a target, Δ is
not the perturbation energy, and without one (the target f(x)) it is Δ only at f(x).
Cost: :math:`o(p,q) = o_H o_W` factorises per axis and vanishes unless p and q are closer
than b along both axes, and the Gram matrices are banded, so only pairs (p, p + δ) with
a few offsets δ enter: :math:`n_\delta \le (2\min(b, k') - 1)^2` with data,
:math:`(2\min(k, k') - 1)^2` with white input (k', k the kernel sides of u and v;
circular padding adds the wrapped copies of these offsets). With data the cost is three
convolutions plus O(N·C_hid·HW·n_δ); with white input
O(n_δ·C_hid²·(C_out k'² + C_in k² + k'²k²) + n_δ·k'²k²·HW), independent of N. Both are
linear in the number of pixels; no (C·H·W)² matrix is formed. The torchvision normaliser
(the random numel/sum(kept)) has no closed form here: its moments need the distribution
of the kept count, a sum over all :math:`2^{\#\text{starts}}` start patterns; only
the Monte Carlo estimate of :func:`dropout_penalty` (``method="mc"``, which
``method="auto"`` chooses there) gives it.

Layout: the operator and its taps (``_operator``), the closed forms (``_closed_forms``),
the Monte Carlo estimate on the package's one engine (``_montecarlo``) and the one
penalty function that chooses between them (``_penalty``).

References
----------
[1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
[2] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
    Capacity Control, ICML 2021.
[3] J. Tompson et al., Efficient Object Localization Using Convolutional
    Networks, CVPR 2015 (SpatialDropout).
[4] G. Ghiasi, T.-Y. Lin, Q. V. Le, DropBlock: A regularization method for
    convolutional networks, NeurIPS 2018.
[5] "Dropout on convolutional layers is weird", Towards Data Science, 2019
    (the seed of THEORY §2).
"""

from ._closed_forms import position_penalty
from ._operator import (
    column_sq_norms,
    conv2d,
    conv_matrix,
    fc_no_gradient_probability,
    no_gradient_probability,
    tap_column_counts,
)
from ._penalty import dropout_penalty, dropout_penalty_mc

__all__ = [
    "column_sq_norms",
    "conv2d",
    "conv_matrix",
    "dropout_penalty",
    "dropout_penalty_mc",
    "fc_no_gradient_probability",
    "no_gradient_probability",
    "position_penalty",
    "tap_column_counts",
]
