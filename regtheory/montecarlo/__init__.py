"""Monte Carlo: the mean of i.i.d. penalty draws with an honest interval, and the engine.

Every estimator in regtheory (FC, conv, network penalties) is a function
``draw(rng, size) -> ndarray of shape (size,)`` that returns ``size``
independent draws of a penalty, each from one real sampled mask. This module
turns such a function into an :class:`Estimate`, in vectorised batches, with
an optional stop once the relative standard error reaches a target.

How the interval is built. The batches are merged pairwise into the count, mean
and second and third central moments (Chan et al. 1983; Pébay 2008), so the
estimate carries the standard error s/√n and the skewness γ̂ of one draw.
:meth:`regtheory.Penalty.ci` inverts Hall's (1992) cubic transformation of the
studentized mean, which removes the n^{-1/2} skewness term of its Edgeworth
expansion. A penalty draw is a sum of squares, skewed to the right, and the
normal interval mean ± z·se misses mostly on one side: the mean of a few draws
lacks the rare large ones, and its standard error is small exactly then. On
2000 seeds of a random 3×5 FC layer (50 inputs) the normal interval covered
88.6 % at keep 0.1 with 10 masks (below the exact value in 10.0 % of the seeds,
above in 1.5 %), 84 % at keep 0.02 with 30 (15.5 % below, 0.3 % above) and 66 %
at keep 0.5 with 2 (65-88 %, 54-84 % and 48-77 % over eight random layers), and
on 1000 seeds of a 3-channel conv layer 84 % at keep 0.05 with 5 (13.4 % below).

When it is honest. No interval built from the draws can be honest while the
sample may not contain the rare mask events the penalty hinges on: at keep 0.02
a unit is kept once in 50 masks, and a kept unit weighs 1/keep² in its draw.
For an event of probability q the number of such events in n draws is
Binomial(n, q); the estimators therefore refuse fewer than

    n_min = ceil(14 / min_j q_j (1 - q_j))

masks (:func:`min_draws`), about 14 expected rare events: the units kept at
small keep, the units dropped near keep = 1. The events are a unit kept (keep)
for elementwise, channel and FC block dropout; a block start and the most
covered position kept for DropBlock (:meth:`regtheory.masks.DropBlock.event_probabilities`);
and, for several dropout layers in series, also a unit kept in all of them (the
product of their keeps). 14 is the smallest count for which the interval stays
within 92-98 % (at level 0.95) for the worst draws: draws with two values (one
hidden unit carries the penalty: exact binomial coverage 94.3-97.5 % for q in
[0.002, 0.99] and n from n_min to 2·n_min, and 94.5-97.5 % in the Poisson limit
for every n) and such a two-valued mask times a squared Gaussian (a conv layer on
fresh white inputs: 93.4-96.5 % at n_min and 2·n_min, 20,000 simulated samples).
Both bounds bind: with 7 events the first reaches 98.6 % (Hall's interval is wide
when only a few events were drawn) and the second 91.4 %. Minimum masks: 56 at
keep 0.5, 156 at keep 0.1 or 0.9, 715 at keep 0.02. :func:`estimate` itself
does not know the events behind its draws, so it only asks for two; its callers
do the rest.

How many masks for a given precision? A draw's standard deviation σ sets it:
the relative standard error after n draws is ``σ/(|μ|·sqrt(n))``, so a target ε
needs ``n ≈ (σ/(ε|μ|))²``. :meth:`regtheory.Penalty.samples_for` computes that from a pilot
estimate, and ``rtol=`` stops a run once it is reached (never before
``min_masks`` draws). Measured ``σ/|μ|`` of one draw (a random 5-unit FC layer on
200 Gaussian samples; a random 8-channel 3×3 conv net on 8×8 white noise, zero
padding): FC 0.19 at keep 0.5 (every inverted
mask entry is ±1 there, so only the cross terms vary), 1.48 at keep 0.1 and
1.50 at keep 0.9; conv element 0.27, channel 0.43, DropBlock 3×3 0.28 at keep
0.5. The default number of draws, :func:`default_n_masks` (2,000, more where the
rare events need them), therefore gives relative standard errors from 0.4 % (FC at
keep 0.5) to 3.4 % (FC at keep 0.1 or 0.9) on such layers; the interval
coverage of every estimator family is checked in the test suite at keep 0.02 to
0.9, over 1000 seeds at the fewest masks accepted and over 400 at 1000 masks.

References
----------
T. F. Chan, G. H. Golub, R. J. LeVeque, Algorithms for computing the sample
variance, The American Statistician 37 (1983) 242-247.
P. Pébay, Formulas for robust, one-pass parallel computation of covariances and
arbitrary-order statistical moments, Sandia report SAND2008-6212 (2008).
P. Hall, On the removal of skewness by transformation, J. R. Statist. Soc. B 54
(1992) 221-228.

Layout: the mean and its interval (``_estimate``); the one engine that runs masked
forward passes for the conv and network estimators (``_engine``), on chunks of draws
with their own random streams on every core (``_chunks``).
"""

from ._estimate import DEFAULT_N_MASKS, Estimate, default_n_masks, estimate, min_draws

__all__ = ["DEFAULT_N_MASKS", "Estimate", "default_n_masks", "estimate", "min_draws"]
