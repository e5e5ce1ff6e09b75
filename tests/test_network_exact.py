"""Exact dropout penalties of deep networks (regtheory.network._moments) against oracles.

* enumeration of every mask pattern on tiny nets (plain NumPy forward passes in this file,
  each pattern weighted by its probability), to 1e-10 relative;
* dense matrices (regtheory.conv.conv_matrix) propagating E[S] ← A S Aᵀ and S ∘ E[m mᵀ]
  over the whole (C·H·W)² space, on maps large enough for the coloured probes to hold
  several impulses per class;
* Monte Carlo over real sampled masks (network.dropout_penalty_mc, or a sampler here for
  DropConnect), within 4 standard errors.
"""

from __future__ import annotations

import dataclasses
import itertools
import tracemalloc

import numpy as np
import pytest

from regtheory import InvalidParameterError, fc, network
from regtheory.conv import conv_matrix
from regtheory.layers import Add, Concat, Flatten, Graph
from regtheory.masks import Bernoulli, Channel, DropBlock, Gaussian, PerSample
from regtheory.network import (
    Conv,
    DropConnect,
    Dropout,
    Elementwise,
    Linear,
    PenaltyTerms,
    ReLU,
    dropout_penalty_terms,
)
from regtheory.network._moments import _period, exact_refusal


def network_dropout_penalty(layers, X, Y=None):
    return dropout_penalty_terms(layers, X, Y=Y)


N_SE = 4
RTOL = 1e-10


# ----------------------------------------------------------------------------- plain NumPy nets


def _conv_np(z: np.ndarray, w: np.ndarray, padding: str) -> np.ndarray:
    """Same-size cross-correlation of z (..., C, *spatial) with w (O, C, *k), by taps."""
    n_sp = w.ndim - 2
    pads = [(0, 0)] * (z.ndim - n_sp) + [(k // 2, k // 2) for k in w.shape[2:]]
    zp = np.pad(z, pads, mode="wrap" if padding == "circular" else "constant")
    spatial = z.shape[z.ndim - n_sp :]
    out = 0.0
    for taps in itertools.product(*(range(k) for k in w.shape[2:])):
        window = zp[(Ellipsis, *(slice(a, a + n) for a, n in zip(taps, spatial)))]
        out = out + np.einsum(
            "oc,...c" + "xy"[:n_sp] + "->...o" + "xy"[:n_sp], w[(..., *taps)], window
        )
    return out


def _forward(spec, X, masks):
    """Run ``spec`` on X for a batch of mask patterns: masks[i] has a leading pattern axis.

    spec entries: ("conv", w, padding[, bias]), ("linear", W[, bias]), ("relu",), ("tanh",),
    ("mask", kind, keep) with kind "element" / "channel" / "sample" / "block",
    ("connect", W, keep).
    Returns (P, n, ...).
    """
    P = next(len(m) for m in masks.values())
    z = np.broadcast_to(X, (P, *X.shape))
    for i, layer in enumerate(spec):
        if layer[0] == "conv":
            z = _conv_np(z, layer[1], layer[2])
            if len(layer) > 3:  # a bias per output channel
                z = z + layer[3].reshape(-1, *(1,) * (layer[1].ndim - 2))
        elif layer[0] == "linear":
            z = z.reshape(P, z.shape[1], -1) @ layer[1].T
            if len(layer) > 2:
                z = z + layer[2]
        elif layer[0] == "relu":
            z = np.maximum(z, 0.0)
        elif layer[0] == "tanh":
            z = np.tanh(z)
        elif layer[0] == "mask":
            m = masks[i]
            m = m.reshape(P, 1, *m.shape[1:], *(1,) * (z.ndim - 2 - (m.ndim - 1)))
            z = z * m
        else:  # connect: a weight mask per pattern
            flat = z.reshape(P, z.shape[1], -1)
            z = np.einsum("poi,pni->pno", layer[1] * masks[i], flat)
    return z


def _bits(spec, shapes):
    """Number of independent Bernoulli bits of each random layer (element: units; channel:
    channels; sample: one; connect: weights; DropBlock: block starts of every channel)."""
    out = {}
    for i, layer in enumerate(spec):
        if layer[0] == "mask":
            kind, shape = layer[1], shapes[i]
            if kind == "element":
                out[i] = int(np.prod(shape))
            elif kind == "channel":
                out[i] = shape[0]
            elif kind == "sample":
                out[i] = 1
            else:
                b = layer[3]
                out[i] = shape[0] * int(np.prod([n - b + 1 for n in shape[1:]]))
        elif layer[0] == "connect":
            out[i] = layer[1].size
    return out


def _mask_values(layer, shape, bits):
    """Mask arrays (P, ...) and per-pattern probabilities from bits (P, n_bits)."""
    keep = layer[2]
    if layer[0] == "connect":
        return bits.reshape(len(bits), *layer[1].shape) / keep, np.prod(
            np.where(bits == 1, keep, 1 - keep), axis=1
        )
    kind = layer[1]
    if kind == "element":
        return bits.reshape(len(bits), *shape) / keep, np.prod(
            np.where(bits == 1, keep, 1 - keep), axis=1
        )
    if kind in ("channel", "sample"):  # a bit per channel, or one for the whole tensor
        m = bits.reshape(len(bits), bits.shape[1], *(1,) * (len(shape) - 1))
        return np.broadcast_to(m / keep, (len(bits), *shape)), np.prod(
            np.where(bits == 1, keep, 1 - keep), axis=1
        )
    # DropBlock: bits are block starts (1 = a block starts there), rate gamma from DropBlock
    b, gamma = layer[3], layer[4]
    spatial = shape[1:]
    starts = bits.reshape(len(bits), shape[0], *(n - b + 1 for n in spatial)).astype(bool)
    dropped = np.zeros((len(bits), *shape), dtype=bool)
    for offset in itertools.product(range(b), repeat=len(spatial)):
        index = tuple(slice(o, o + n - b + 1) for o, n in zip(offset, spatial))
        dropped[(slice(None), slice(None), *index)] |= starts
    prob = np.prod(np.where(bits == 1, gamma, 1 - gamma), axis=1)
    return (~dropped) / keep, prob


def _enumerated_penalty(spec, X, Y, active=None):
    """E_r L(r) − L(1) by summing over every mask pattern of the ``active`` random layers
    (all of them by default); the other random layers are switched off (mask one)."""
    shapes, z = {}, X[:1]
    for i, layer in enumerate(spec):  # feature shape at every layer, mask-free
        shapes[i] = z.shape[1:]
        if layer[0] == "connect":
            z = _forward([("linear", layer[1])], z, {0: np.ones((1,))})[0]
        elif layer[0] != "mask":
            z = _forward([layer], z, {0: np.ones((1,))})[0]
    bits = _bits(spec, shapes)
    active = list(bits) if active is None else list(active)
    total_bits = sum(bits[i] for i in active)
    assert total_bits <= 16, total_bits
    patterns = np.array(list(itertools.product([0, 1], repeat=total_bits)), dtype=float)
    if total_bits == 0:
        patterns = np.zeros((1, 0))
    masks, prob, start = {}, np.ones(len(patterns)), 0
    for i in bits:
        layer = spec[i]
        shape = layer[1].shape if layer[0] == "connect" else shapes[i]
        if i in active:
            m, p = _mask_values(layer, shapes[i], patterns[:, start : start + bits[i]])
            masks[i], prob = m, prob * p
            start += bits[i]
        else:
            masks[i] = np.ones((len(patterns), *shape))
    out = _forward(spec, X, masks)
    losses = np.mean(np.sum((out - Y[None]).reshape(len(patterns), len(X), -1) ** 2, axis=2), 1)
    clean = _forward(spec, X, {i: np.ones((1, *m.shape[1:])) for i, m in masks.items()})[0]
    assert abs(prob.sum() - 1) < 1e-12
    return float(prob @ losses) - float(np.mean(np.sum((clean - Y).reshape(len(X), -1) ** 2, 1)))


def _layers(spec):
    """The regtheory network layers of a plain spec."""
    out = []
    for layer in spec:
        if layer[0] == "conv":
            out.append(Conv(layer[1], padding=layer[2], bias=layer[3] if len(layer) > 3 else None))
        elif layer[0] == "linear":
            out.append(Linear(layer[1], bias=layer[2] if len(layer) > 2 else None))
        elif layer[0] == "relu":
            out.append(ReLU())
        elif layer[0] == "tanh":
            out.append(Elementwise(np.tanh, name="tanh"))
        elif layer[0] == "connect":
            out.append(DropConnect(layer[1], layer[2]))
        else:
            kind, keep = layer[1], layer[2]
            masks = {"element": Bernoulli, "channel": Channel, "sample": PerSample}.get(kind)
            out.append(Dropout(masks(keep) if masks else DropBlock(keep, layer[3])))
    return out


def _check_against_enumeration(spec, X, Y):
    exact = network_dropout_penalty(_layers(spec), X, Y)
    enumerated = _enumerated_penalty(spec, X, Y)
    assert abs(exact.value - enumerated) <= RTOL * abs(enumerated), (exact.value, enumerated)
    # every subset's term by inclusion-exclusion over enumerations with only some layers on
    # (means are one here, so switching a layer off is replacing it by its mean)
    if exact.mean_shift == 0.0:
        for subset in exact.subsets:
            term = sum(
                (-1) ** (len(subset) - len(u)) * _enumerated_penalty(spec, X, Y, active=u)
                for r in range(len(subset) + 1)
                for u in itertools.combinations(subset, r)
            )
            assert abs(exact.term(*subset) - term) <= RTOL * abs(enumerated), (subset, term)
    return exact


# ----------------------------------------------------------------------------- 1. FC nets


def test_fc_three_dropout_layers_match_enumeration():
    rng = np.random.default_rng(0)
    W1, W2, W3, W4 = (rng.normal(size=s) for s in [(4, 3), (4, 4), (3, 4), (2, 3)])
    X, Y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    spec = [
        ("linear", W1),
        ("relu",),
        ("mask", "element", 0.6),
        ("linear", W2),
        ("mask", "element", 0.3),
        ("linear", W3),
        ("mask", "channel", 0.8),  # channel masks on a vector are elementwise
        ("linear", W4),
    ]
    exact = _check_against_enumeration(spec, X, Y)
    assert exact.layers == (2, 4, 6) and len(exact.subsets) == 7


@pytest.mark.slow
def test_fc_input_dropout_and_dropconnect_match_enumeration():
    rng = np.random.default_rng(1)
    W1, W2, W3 = rng.normal(size=(3, 3)), rng.normal(size=(3, 3)), rng.normal(size=(2, 3))
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    spec = [
        ("mask", "element", 0.7),  # dropout on the input itself
        ("connect", W1, 0.5),  # DropConnect (Wan et al. 2013): 9 weight bits
        ("linear", W2),
        ("mask", "element", 0.4),
        ("linear", W3),
    ]
    _check_against_enumeration(spec, X, Y)


def test_fc_dropconnect_last_layer_closed_form():
    """λ Σ_ij W_ij² mean_k x_kj² (THEORY §4), computed here without the engine."""
    rng = np.random.default_rng(2)
    W, X = rng.normal(size=(3, 5)), rng.normal(size=(11, 5))
    keep = 0.35
    exact = network_dropout_penalty([Dropout(Bernoulli(1.0)), DropConnect(W, keep)], X)
    closed = (1 - keep) / keep * np.sum(W**2 * np.mean(X**2, axis=0))
    assert exact.term(1) == pytest.approx(closed, rel=1e-12)


def test_last_layer_dropout_is_the_explicit_regularizer_of_fc():
    """One dropout layer before the last linear layer, ReLU features: regtheory.fc's closed
    form λ Σ ||u_i||² mean h_i² (Mianjy & Arora 2019; Arora et al. 2021)."""
    rng = np.random.default_rng(25)
    V, U = rng.normal(size=(6, 4)), rng.normal(size=(3, 6))
    X, Y = rng.normal(size=(40, 4)), rng.normal(size=(40, 3))
    layers = [Linear(V), ReLU(), Dropout(Bernoulli(0.3)), Linear(U)]
    H = np.maximum(X @ V.T, 0)
    closed = fc.dropout_penalty(U, np.eye(6), 0.3, cov=H.T @ H / len(X))
    assert network_dropout_penalty(layers, X, Y).value == pytest.approx(closed, rel=1e-12)


def test_fc_matches_monte_carlo_over_real_masks():
    rng = np.random.default_rng(3)
    W1, W2, W3 = rng.normal(size=(6, 4)), rng.normal(size=(5, 6)), rng.normal(size=(2, 5))
    X, Y = rng.normal(size=(30, 4)), rng.normal(size=(30, 2))
    layers = [
        Linear(W1),
        ReLU(),
        Dropout(Bernoulli(0.7)),
        Linear(W2),
        Dropout(Bernoulli(0.5)),
        Linear(W3),
    ]
    exact = network_dropout_penalty(layers, X, Y)
    est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=4000, rng=4)
    assert abs(est.zscore(exact.value)) < N_SE, (exact.value, est)


def test_gaussian_dropout_has_the_bernoulli_penalty_and_matches_gaussian_draws():
    """N(1, λ) masks (Srivastava et al. 2014) share E[m mᵀ] with Bernoulli(keep) masks."""
    rng = np.random.default_rng(5)
    W1, W2, W3 = rng.normal(size=(5, 4)), rng.normal(size=(4, 5)), rng.normal(size=(2, 4))
    X, Y = rng.normal(size=(25, 4)), rng.normal(size=(25, 2))

    def net(masks):
        return [Linear(W1), Dropout(masks[0]), Linear(W2), Dropout(masks[1]), Linear(W3)]

    gauss = network_dropout_penalty(net([Gaussian(0.6), Gaussian(0.4)]), X, Y)
    bern = network_dropout_penalty(net([Bernoulli(0.6), Bernoulli(0.4)]), X, Y)
    assert gauss.value == pytest.approx(bern.value, rel=1e-12)
    est = network.dropout_penalty(
        net([Gaussian(0.6), Gaussian(0.4)]), X, Y=Y, method="mc", n_masks=4000, rng=6
    )
    assert abs(est.zscore(gauss.value)) < N_SE, (gauss.value, est)


def test_dropconnect_matches_monte_carlo_over_sampled_weight_masks():
    rng = np.random.default_rng(7)
    W1, W2, W3 = rng.normal(size=(5, 4)), rng.normal(size=(4, 5)), rng.normal(size=(2, 4))
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 2))
    connect = DropConnect(W2, 0.6)
    layers = [Linear(W1), ReLU(), Dropout(Bernoulli(0.5)), connect, Linear(W3)]
    exact = network_dropout_penalty(layers, X, Y)
    sampler = np.random.default_rng(8)
    base = np.mean(np.sum((np.maximum(X @ W1.T, 0) @ W2.T @ W3.T - Y) ** 2, axis=1))
    draws = []
    for _ in range(8):  # 8 batches of 500 draws, one weight mask per sample and draw
        h = np.maximum(X @ W1.T, 0)[None] * (sampler.random((500, *X.shape[:1], 5)) < 0.5) / 0.5
        out = connect.sample(h.reshape(-1, 5), sampler).reshape(500, len(X), -1) @ W3.T
        draws.append(np.mean(np.sum((out - Y) ** 2, axis=2), axis=1) - base)
    draws = np.concatenate(draws)
    z = (draws.mean() - exact.value) / (draws.std(ddof=1) / np.sqrt(len(draws)))
    assert abs(z) < N_SE, (exact.value, draws.mean())


# ----------------------------------------------------------------------------- PerSample


def test_per_sample_mask_before_a_linear_map_is_lambda_times_the_squared_output():
    """Stochastic depth before a linear map B (with a bias c): B(m h) + c − (B h + c) =
    (m − 1) B h with one scalar m per sample, so E‖·‖² = λ‖B h‖², and, as E m = 1, the
    penalty is λ mean_k ‖B h_k‖² for any targets. Vectors (B = W2 W1) and maps (B = a conv,
    then a Linear), B h computed here with plain NumPy."""
    rng = np.random.default_rng(30)
    keep = 0.35
    lam = (1 - keep) / keep
    V, W1, W2 = rng.normal(size=(5, 3)), rng.normal(size=(4, 5)), rng.normal(size=(2, 4))
    X, Y = rng.normal(size=(9, 3)), rng.normal(size=(9, 2))
    layers = [
        Linear(V, bias=rng.normal(size=5)),
        ReLU(),
        Dropout(PerSample(keep)),
        Linear(W1, bias=rng.normal(size=4)),
        Linear(W2, bias=rng.normal(size=2)),
    ]
    h = np.maximum(X @ V.T + layers[0].bias, 0)
    closed = lam * np.mean(np.sum((h @ W1.T @ W2.T) ** 2, axis=1))
    assert network_dropout_penalty(layers, X).value == pytest.approx(closed, rel=1e-12)
    assert network_dropout_penalty(layers, X, Y).value == pytest.approx(closed, rel=1e-12)

    w0, w1 = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(3, 2, 3, 3))
    W = rng.normal(size=(4, 3 * 36))
    X = rng.normal(size=(5, 1, 6, 6))
    layers = [
        Conv(w0),
        ReLU(),
        Dropout(PerSample(keep)),
        Conv(w1, bias=rng.normal(size=3)),
        Linear(W, bias=rng.normal(size=4)),
    ]
    h = np.maximum(_conv_np(X, w0, "zeros"), 0)
    out = _conv_np(h, w1, "zeros").reshape(len(X), -1) @ W.T
    closed = lam * np.mean(np.sum(out**2, axis=1))
    assert network_dropout_penalty(layers, X).value == pytest.approx(closed, rel=1e-12)


def test_per_sample_masks_mixed_with_others_match_enumeration():
    """Every mask pattern (a per-sample mask is one bit) and every subset's term."""
    rng = np.random.default_rng(31)
    W1, W2, W3, W4 = (rng.normal(size=s) for s in [(4, 3), (4, 4), (3, 4), (2, 3)])
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    spec = [
        ("linear", W1, rng.normal(size=4)),
        ("relu",),
        ("mask", "sample", 0.6),
        ("linear", W2, rng.normal(size=4)),
        ("mask", "element", 0.4),
        ("linear", W3),
        ("mask", "sample", 0.3),
        ("linear", W4, rng.normal(size=2)),
    ]
    _check_against_enumeration(spec, X, Y)
    w0, w1, w2 = (rng.normal(size=s) for s in [(2, 1, 3, 3), (2, 2, 3, 3), (1, 2, 3, 3)])
    X, Y = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(2, 1, 3, 3))
    spec = [
        ("conv", w0, "zeros", rng.normal(size=2)),
        ("mask", "channel", 0.5),
        ("conv", w1, "circular"),
        ("mask", "sample", 0.7),
        ("conv", w2, "zeros", rng.normal(size=1)),
        ("mask", "element", 0.6),
    ]
    _check_against_enumeration(spec, X, Y)


@pytest.mark.parametrize("maps", [False, True], ids=["vectors", "maps"])
def test_per_sample_masks_match_monte_carlo_over_real_masks(maps):
    rng = np.random.default_rng(32)
    if maps:
        w = [rng.normal(size=s) / 3 for s in [(3, 2, 3, 3), (3, 3, 3, 3), (2, 3, 3, 3)]]
        X, Y = rng.normal(size=(6, 2, 6, 6)), rng.normal(size=(6, 2, 6, 6))
        layers = [
            Conv(w[0]),
            ReLU(),
            Dropout(PerSample(0.7)),
            Conv(w[1], bias=rng.normal(size=3)),
            Dropout(Bernoulli(0.8)),
            Conv(w[2]),
        ]
    else:
        W1, W2, W3 = rng.normal(size=(6, 4)), rng.normal(size=(5, 6)), rng.normal(size=(2, 5))
        X, Y = rng.normal(size=(30, 4)), rng.normal(size=(30, 2))
        layers = [
            Linear(W1),
            ReLU(),
            Dropout(PerSample(0.6)),
            Linear(W2, bias=rng.normal(size=5)),
            Dropout(PerSample(0.8)),
            Linear(W3),
        ]
    exact = network.dropout_penalty(layers, X, Y=Y, method="exact")
    est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=4000, rng=33)
    assert abs(est.zscore(exact)) < N_SE, (float(exact), est)


# ----------------------------------------------------------------------------- joins after a mask


def _graph_draws(graph, X, Y, n_draws, seed, batch=500):
    """D(r) = L(r) − L(1) over ``n_draws`` sets of real masks, walking the graph here: a
    fresh mask per sample from each Dropout's own distribution, Add a sum, Concat along
    the channels, every other node its mask-free forward."""
    gen = np.random.default_rng(seed)
    n = len(X)

    def run(copies, masked):
        outs = {-1: np.concatenate([X] * copies)}
        for t, node in enumerate(graph):
            ins = [outs[s] for s in graph.inputs[t]]
            if isinstance(node, Add):
                outs[t] = sum(ins)
            elif isinstance(node, Concat):
                outs[t] = np.concatenate(ins, axis=1)
            elif isinstance(node, Dropout) and masked:
                outs[t] = ins[0] * node.masks.sample(ins[0].shape[1:], len(ins[0]), gen)
            else:
                outs[t] = node.forward(*ins)
        return outs[len(graph) - 1].reshape(copies, n, -1)

    base = np.mean(np.sum((run(1, False)[0] - Y.reshape(n, -1)) ** 2, axis=1))
    draws = [
        np.mean(np.sum((run(batch, True) - Y.reshape(1, n, -1)) ** 2, axis=2), axis=1) - base
        for _ in range(n_draws // batch)
    ]
    return np.concatenate(draws)


def _assert_within_monte_carlo(exact, draws):
    z = (draws.mean() - exact) / (draws.std(ddof=1) / np.sqrt(len(draws)))
    assert abs(z) < N_SE, (exact, draws.mean(), z)


def test_stochastic_depth_on_a_residual_branch_costs_lambda_times_the_branch_through_the_head():
    """y = L(C2(h + m·C1 h)) with one m per sample (DropPath on the branch), h mask-free:
    y − y(1) = (m − 1)·L C2 C1 h, so the penalty is λ mean_k ‖L C2 C1 h_k‖² (linear parts,
    NumPy convolutions here), for any targets."""
    rng = np.random.default_rng(40)
    keep = 0.7
    w0, w1, w2 = (rng.normal(size=s) / 2 for s in [(3, 2, 3, 3), (3, 3, 3, 3), (2, 3, 3, 3)])
    W = rng.normal(size=(4, 2 * 25))
    X, Y = rng.normal(size=(6, 2, 5, 5)), rng.normal(size=(6, 4))
    graph = Graph(
        [
            Conv(w0, bias=rng.normal(size=3)),
            ReLU(),
            Conv(w1),
            Dropout(PerSample(keep)),
            Add(),
            Conv(w2, bias=rng.normal(size=2)),
            Flatten(),
            Linear(W, bias=rng.normal(size=4)),
        ],
        inputs={4: (1, 3)},
    )
    assert exact_refusal(graph, X.shape[1:]) is None
    h = np.maximum(_conv_np(X, w0, "zeros") + graph[0].bias[:, None, None], 0)
    branch = _conv_np(_conv_np(h, w1, "zeros"), w2, "zeros").reshape(len(X), -1) @ W.T
    closed = (1 - keep) / keep * np.mean(np.sum(branch**2, axis=1))
    exact = network.dropout_penalty(graph, X, Y=Y, method="exact")
    assert exact == pytest.approx(closed, rel=1e-12)
    _assert_within_monte_carlo(exact, _graph_draws(graph, X, Y, 4000, seed=41))


@pytest.mark.parametrize("join", ["add", "concat"])
def test_joins_on_vectors_match_monte_carlo_over_real_masks(join):
    """h = relu(V x); z = DropPath(W1 h); then Add(h, z) or Concat(z, h), a dropout layer and a
    biased Linear head; against the brute force above."""
    rng = np.random.default_rng(43)
    V, W1 = rng.normal(size=(5, 3)), rng.normal(size=(5, 5)) / 2
    W2 = rng.normal(size=(2, 5 if join == "add" else 10))
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    graph = Graph(
        [
            Linear(V),
            ReLU(),
            Linear(W1),
            Dropout(PerSample(0.6)),
            Add() if join == "add" else Concat(),
        ]
        + [Dropout(Bernoulli(0.7)), Linear(W2, bias=rng.normal(size=2))],
        inputs={4: (1, 3) if join == "add" else (3, 1)},
    )
    exact = network.dropout_penalty(graph, X, Y=Y, method="exact")
    assert network.dropout_penalty(graph, X, Y=Y) == exact  # "auto" takes it exactly
    _assert_within_monte_carlo(exact, _graph_draws(graph, X, Y, 4000, seed=44))


def test_joins_of_two_masked_inputs_are_refused_by_position():
    """Two branches after one mask, or masks on both paths: the exact moments follow one
    path; the refusal names the join and both inputs."""
    rng = np.random.default_rng(45)
    A, B, U = rng.normal(size=(3, 3)), rng.normal(size=(3, 3)), rng.normal(size=(1, 3))
    branches = Graph(
        [Dropout(Bernoulli(0.5)), Linear(A), Linear(B), Add(), Linear(U)],
        inputs={2: (0,), 3: (1, 2)},
    )
    why = exact_refusal(branches, (3,))
    assert "`layers[3]` (Add)" in why and "`layers[1]` and `layers[2]` both depend on masks" in why
    both = Graph(
        [
            Linear(A),
            Dropout(Bernoulli(0.5)),
            Dropout(PerSample(0.5)),
            Concat(),
            Linear(U.repeat(2, 1)),
        ],
        inputs={2: (0,), 3: (1, 2)},
    )
    why = exact_refusal(both, (3,))
    assert "`layers[3]` (Concat)" in why and "both depend on masks" in why
    with pytest.raises(InvalidParameterError, match=r"layers\[3\].*both depend on masks"):
        network.dropout_penalty(both, rng.normal(size=(4, 3)), method="exact")
    # a ReLU on the mask-free skip path after the first mask is fine; one on the masked path is not
    skip_relu = Graph(
        [Linear(A), Dropout(Bernoulli(0.5)), ReLU(), Add(), Linear(U)], inputs={2: (0,), 3: (1, 2)}
    )
    assert exact_refusal(skip_relu, (3,)) is None
    masked_relu = Graph(
        [Linear(A), Dropout(Bernoulli(0.5)), ReLU(), Add(), Linear(U)], inputs={3: (0, 2)}
    )
    assert "feeds a non-linearity" in exact_refusal(masked_relu, (3,))


JOIN_MASKS = {
    "element-channel": (("mask", "element", 0.6), ("mask", "channel", 0.7)),
    "sample-element": (("mask", "sample", 0.6), ("mask", "element", 0.7)),
    "block-element": (("mask", "block", 0.7, 2), ("mask", "element", 0.8)),  # E m ≠ 1
}


@pytest.mark.parametrize("masks", JOIN_MASKS)
@pytest.mark.parametrize("join", ["add", "concat-after", "concat-before"])
def test_a_join_with_a_mask_free_input_matches_dense_matrices(join, masks):
    """relu(conv x) feeds a mask, a conv, and the join (skip connection), then a second mask,
    a conv and a Linear head; per sample, the dense reference adds the skip to the state
    (S + g cᵀ + c gᵀ + c cᵀ) or stacks it beside (Concat)."""
    rng = np.random.default_rng(42)
    spatial, padding = (7, 6), "zeros"
    w0, w1 = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(2, 2, 3, 3))
    c_mid = 2 if join == "add" else 4
    w2 = rng.normal(size=(2, c_mid, 3, 3))
    W = rng.normal(size=(3, 2 * 42))
    X, Y = rng.normal(size=(3, 1, *spatial)), rng.normal(size=(3, 3))
    first, second = JOIN_MASKS[masks]
    inputs = {"add": (3, 1), "concat-after": (3, 1), "concat-before": (1, 3)}[join]
    graph = Graph(
        [Conv(w0), ReLU(), *_layers([first]), Conv(w1), Add() if join == "add" else Concat()]
        + [*_layers([second]), Conv(w2), Flatten(), Linear(W)],
        inputs={4: inputs},
    )
    assert exact_refusal(graph, X.shape[1:]) is None
    exact = network_dropout_penalty(graph, X, Y)
    reference = []
    for k in range(len(X)):
        h = np.maximum(_conv_np(X[k : k + 1], w0, padding), 0)
        skip = ("add", h) if join == "add" else ("concat", h, join == "concat-before")
        spec = [("conv", w0, padding), ("relu",), first, ("conv", w1, padding), skip, second]
        spec += [("conv", w2, padding), ("linear", W)]
        reference.append(_dense_reference(spec, X[k : k + 1], Y[k : k + 1], _moments_of(spec)))
    assert exact.value == pytest.approx(np.mean(reference), rel=RTOL)


# ----------------------------------------------------------------------------- 2. conv nets


@pytest.mark.slow
@pytest.mark.parametrize("padding", ["zeros", "circular"])
def test_conv_1d_two_element_masks_match_enumeration(padding):
    rng = np.random.default_rng(10)
    w0, w1, w2 = (rng.normal(size=s) for s in [(2, 1, 3), (2, 2, 3), (1, 2, 3)])
    X, Y = rng.normal(size=(3, 1, 4)), rng.normal(size=(3, 1, 4))
    spec = [
        ("conv", w0, padding),
        ("relu",),
        ("mask", "element", 0.6),
        ("conv", w1, padding),
        ("mask", "element", 0.45),
        ("conv", w2, padding),
    ]
    _check_against_enumeration(spec, X, Y)


@pytest.mark.parametrize("padding", ["zeros", "circular"])
def test_conv_2d_element_and_channel_masks_match_enumeration(padding):
    rng = np.random.default_rng(11)
    w0, w1, w2 = (rng.normal(size=s) for s in [(1, 1, 3, 3), (2, 1, 3, 3), (1, 2, 3, 3)])
    X, Y = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(2, 1, 3, 3))
    spec = [
        ("conv", w0, padding),
        ("mask", "element", 0.55),
        ("conv", w1, padding),
        ("mask", "channel", 0.3),
        ("conv", w2, padding),
    ]
    _check_against_enumeration(spec, X, Y)


def _dense_reference(spec, X, Y, second_moments):
    """The penalty from dense (C·H·W)² matrices: S ← A S Aᵀ, S ← S ∘ E[m mᵀ], mean g ← μ ∘ g;
    a skip input c (one sample: X of one row) adds c to z, or puts it before z's channels.

    ``second_moments(i, shape)`` returns (E m, E[m mᵀ]) of the random layer i, flattened.
    """
    n = len(X)
    first = next(i for i, layer in enumerate(spec) if layer[0] in ("mask", "connect"))
    h = X
    for layer in spec[:first]:
        h = _forward([layer], h, {0: np.ones(1)})[0]
    shape, h = h.shape[1:], h.reshape(n, -1)
    S, g, f = h.T @ h / n, h, h
    for i, layer in enumerate(spec[first:], start=first):
        if layer[0] in ("add", "concat"):  # z -> z + c, (c, z) or (z, c); c: (1, ...)
            c = layer[1].reshape(1, -1)
            if layer[0] == "add":
                S = S + g.T @ c + c.T @ g + c.T @ c
                g, f = g + c, f + c
                continue
            # channel first: the flat vector is c's entries, then z's (or z's, then c's)
            before = layer[2]
            S = np.block(
                [[c.T @ c, c.T @ g], [g.T @ c, S]] if before else [[S, g.T @ c], [c.T @ g, c.T @ c]]
            )
            g, f = (
                (np.hstack([c, g]), np.hstack([c, f]))
                if before
                else (np.hstack([g, c]), np.hstack([f, c]))
            )
            shape = (layer[1].shape[1] + shape[0], *shape[1:])
            continue
        if layer[0] == "conv":
            A = conv_matrix(layer[1], shape[1:], padding=layer[2])
            shape = (layer[1].shape[0], *shape[1:])
        elif layer[0] == "linear":
            A, shape = layer[1], (layer[1].shape[0],)
        elif layer[0] == "connect":  # Wan et al. 2013: + λ Diag((W∘W) diag S)
            V, lam = layer[1], (1 - layer[2]) / layer[2]
            S = V @ S @ V.T + lam * np.diag((V * V) @ np.diag(S))
            g, f, shape = g @ V.T, f @ V.T, (V.shape[0],)
            continue
        else:
            mean, second = second_moments(i, shape)
            S, g = S * second, g * mean
            continue
        S, g, f = A @ S @ A.T, g @ A.T, f @ A.T
    y = Y.reshape(n, -1)
    return (
        np.trace(S)
        - 2 * np.mean(np.sum(g * y, 1))
        + np.mean(np.sum(y * y, 1))
        - np.mean(np.sum((f - y) ** 2, 1))
    )


def _dropblock_moments_by_definition(masks, shape):
    """E m and E[m mᵀ] of DropBlock's ideal masks from the block starts covering each
    position: p (and q) kept iff no start covering p (or q) fires; channels independent."""
    C, spatial = shape[0], shape[1:]
    b, beta, keep = masks.block_size, 1 - masks.gamma(spatial), masks.keep
    starts = list(itertools.product(*(range(n - b + 1) for n in spatial)))
    positions = list(itertools.product(*(range(n) for n in spatial)))
    covers = np.array(
        [
            [all(s[a] <= p[a] < s[a] + b for a in range(len(spatial))) for p in positions]
            for s in starts
        ]
    )
    mean = beta ** covers.sum(0) / keep
    within = beta ** (covers[:, :, None] | covers[:, None, :]).sum(0) / keep**2
    second = np.kron(np.ones((C, C)), np.outer(mean, mean))
    P = len(positions)
    for c in range(C):
        second[c * P : (c + 1) * P, c * P : (c + 1) * P] = within
    return np.tile(mean, C), second


def _moments_of(spec):
    def second_moments(i, shape):
        layer = spec[i]
        d = int(np.prod(shape))
        if layer[0] == "mask" and layer[1] == "block":
            return _dropblock_moments_by_definition(DropBlock(layer[2], layer[3]), shape)
        lam = (1 - layer[2]) / layer[2]
        if layer[1] == "sample":  # one draw for the whole tensor: E[m mᵀ] = 1 + λ 11ᵀ
            return 1.0, 1.0 + lam * np.ones((d, d))
        if layer[1] == "element" or len(shape) == 1:
            return 1.0, 1.0 + lam * np.eye(d)
        P = d // shape[0]
        return 1.0, 1.0 + lam * np.kron(np.eye(shape[0]), np.ones((P, P)))

    return second_moments


DENSE_CASES = {
    # maps large enough that every colour class holds several impulses
    "2d-zeros": ((10, 11), (3, 3), "zeros"),
    "2d-circular": ((16, 16), (3, 3), "circular"),
    "1d-zeros": ((23,), (3,), "zeros"),
    "1d-circular": ((24,), (5,), "circular"),
}


@pytest.mark.parametrize("case", DENSE_CASES)
@pytest.mark.parametrize(
    "kinds",
    [
        ("element", "element"),
        ("channel", "element"),
        ("element", "channel"),
        ("sample", "element"),
        ("element", "sample"),
    ],
)
def test_conv_three_layers_match_dense_matrices(case, kinds):
    spatial, k, padding = DENSE_CASES[case]
    rng = np.random.default_rng(12)
    w0, w1, w2 = (rng.normal(size=(c_out, c_in, *k)) for c_out, c_in in [(2, 1), (3, 2), (2, 3)])
    X, Y = rng.normal(size=(3, 1, *spatial)), rng.normal(size=(3, 2, *spatial))
    spec = [
        ("conv", w0, padding),
        ("relu",),
        ("mask", kinds[0], 0.5),
        ("conv", w1, padding),
        ("mask", kinds[1], 0.7),
        ("conv", w2, padding),
    ]
    exact = network_dropout_penalty(_layers(spec), X, Y)
    reference = _dense_reference(spec, X, Y, _moments_of(spec))
    assert exact.value == pytest.approx(reference, rel=RTOL)


HEAD_MASKS = {
    "element-channel": (("mask", "element", 0.5), ("mask", "channel", 0.7)),
    "block-channel": (("mask", "block", 0.7, 2), ("mask", "channel", 0.7)),
    "channel-block": (("mask", "channel", 0.6), ("mask", "block", 0.7, 3)),
    "element-sample": (("mask", "element", 0.5), ("mask", "sample", 0.7)),
    "sample-block": (("mask", "sample", 0.6), ("mask", "block", 0.7, 3)),
}


@pytest.mark.parametrize("masks", HEAD_MASKS)
@pytest.mark.parametrize("case", ["2d-zeros", "1d-circular"])
def test_conv_maps_into_fully_connected_head_match_dense_matrices(case, masks):
    """Coloured probes (diagonal and banded origins, channel splits, DropBlock's mean
    scaling) are pulled back exactly through a Linear layer by adjoint convolutions;
    then a DropConnect layer (Wan et al. 2013)."""
    spatial, k, padding = DENSE_CASES[case]
    rng = np.random.default_rng(13)
    w0, w1 = rng.normal(size=(2, 1, *k)), rng.normal(size=(2, 2, *k))
    P = int(np.prod(spatial))
    W, V = rng.normal(size=(5, 2 * P)), rng.normal(size=(3, 5))
    X, Y = rng.normal(size=(4, 1, *spatial)), rng.normal(size=(4, 3))
    spec = [
        ("conv", w0, padding),
        ("relu",),
        HEAD_MASKS[masks][0],
        ("conv", w1, padding),
        HEAD_MASKS[masks][1],
        ("linear", W),
        ("mask", "element", 0.8),
        ("connect", V, 0.6),
    ]

    exact = network_dropout_penalty(_layers(spec), X, Y)
    reference = _dense_reference(spec, X, Y, _moments_of(spec))
    assert exact.value == pytest.approx(reference, rel=RTOL)


# ----------------------------------------------------------------------------- 3. DropBlock, mixed


@pytest.mark.parametrize("padding", ["zeros", "circular"])
def test_dropblock_1d_and_element_match_enumeration(padding):
    rng = np.random.default_rng(14)
    w0, w1, w2 = (rng.normal(size=s) for s in [(2, 1, 3), (1, 2, 3), (1, 1, 3)])
    X, Y = rng.normal(size=(3, 1, 5)), rng.normal(size=(3, 1, 5))
    masks = DropBlock(0.6, 2)
    gamma = masks.gamma((5,))
    spec = [
        ("conv", w0, padding),
        ("relu",),
        ("mask", "block", 0.6, 2, gamma),  # 2 channels × 4 block starts
        ("conv", w1, padding),
        ("mask", "element", 0.5),
        ("conv", w2, padding),
    ]
    exact = _check_against_enumeration(spec, X, Y)
    assert exact.mean_shift != 0.0  # E m ≠ 1 at the border: the targets enter


def test_dropblock_2d_after_channel_mask_matches_enumeration():
    rng = np.random.default_rng(15)
    w0, w1, w2 = (rng.normal(size=s) for s in [(2, 1, 3, 3), (2, 2, 3, 3), (1, 2, 3, 3)])
    X, Y = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(2, 1, 3, 3))
    gamma = DropBlock(0.7, 2).gamma((3, 3))
    spec = [
        ("conv", w0, "zeros"),
        ("mask", "channel", 0.5),
        ("conv", w1, "zeros"),
        ("mask", "block", 0.7, 2, gamma),  # 2 channels × 4 starts
        ("conv", w2, "zeros"),
    ]
    _check_against_enumeration(spec, X, Y)


@pytest.mark.parametrize("case", DENSE_CASES)
@pytest.mark.parametrize("order", ["block-first", "block-second"])
def test_dropblock_mixed_with_element_masks_matches_dense_matrices(case, order):
    spatial, k, padding = DENSE_CASES[case]
    rng = np.random.default_rng(16)
    w0, w1, w2 = (rng.normal(size=(c_out, c_in, *k)) for c_out, c_in in [(2, 1), (2, 2), (1, 2)])
    X, Y = rng.normal(size=(3, 1, *spatial)), rng.normal(size=(3, 1, *spatial))
    block, element = ("mask", "block", 0.7, 3), ("mask", "element", 0.6)
    masks = [block, element] if order == "block-first" else [element, block]
    spec = [
        ("conv", w0, padding),
        ("relu",),
        masks[0],
        ("conv", w1, padding),
        masks[1],
        ("conv", w2, padding),
    ]
    exact = network_dropout_penalty(_layers(spec), X, Y)
    reference = _dense_reference(spec, X, Y, _moments_of(spec))
    assert exact.value == pytest.approx(reference, rel=RTOL)


@pytest.mark.parametrize(
    "spatial,padding", [((12, 13), "zeros"), ((28,), "circular")], ids=["2d-zeros", "1d-circular"]
)
def test_wide_dropblock_band_before_a_linear_layer_sets_the_colour_spacing(spatial, padding):
    """Blocks of 5 read the band of the state before them 4 positions away. Before a Linear
    layer (which mixes all positions) every lag of that band enters, so the colour classes
    must be spaced for it (2R + b), more than the diagonal needs (2R + 1)."""
    rng = np.random.default_rng(26)
    k = (3,) * len(spatial)
    w0, w1, w2 = (rng.normal(size=(c_out, c_in, *k)) for c_out, c_in in [(2, 1), (2, 2), (1, 2)])
    W = rng.normal(size=(3, int(np.prod(spatial))))
    X, Y = rng.normal(size=(3, 1, *spatial)), rng.normal(size=(3, 3))
    spec = [
        ("conv", w0, padding),
        ("relu",),
        ("mask", "element", 0.6),
        ("conv", w1, padding),
        ("mask", "block", 0.7, 5),
        ("conv", w2, padding),
        ("linear", W),
    ]
    exact = network_dropout_penalty(_layers(spec), X, Y)
    reference = _dense_reference(spec, X, Y, _moments_of(spec))
    assert exact.value == pytest.approx(reference, rel=RTOL)


@pytest.mark.slow
def test_mixed_conv_net_matches_monte_carlo_over_real_masks():
    rng = np.random.default_rng(17)
    w = [rng.normal(size=s) / 3 for s in [(3, 2, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (2, 3, 3, 3)]]
    X, Y = rng.normal(size=(6, 2, 8, 8)), rng.normal(size=(6, 2, 8, 8))
    layers = [
        Conv(w[0]),
        ReLU(),
        Dropout(Bernoulli(0.7)),
        Conv(w[1]),
        Dropout(Channel(0.8)),
        Conv(w[2]),
        Dropout(DropBlock(0.8, 3)),
        Conv(w[3]),
    ]
    exact = network_dropout_penalty(layers, X, Y)
    est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=3000, rng=18)
    assert abs(est.zscore(exact.value)) < N_SE, (exact.value, est)


@pytest.mark.slow
def test_conv_state_is_never_a_dense_matrix():
    """8 channels of 40×40: one (C·H·W)² matrix would take 1.3 GB; the engine's peak (mostly
    the convolution's own im2col workspace) stays far below it."""
    rng = np.random.default_rng(19)
    w = [rng.normal(size=(8, 8, 3, 3)) for _ in range(3)]
    X = rng.normal(size=(2, 8, 40, 40))
    layers = [Conv(w[0]), Dropout(Bernoulli(0.5)), Conv(w[1]), Dropout(Bernoulli(0.5)), Conv(w[2])]
    tracemalloc.start()
    network_dropout_penalty(layers, X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    dense_bytes = (8 * 40 * 40) ** 2 * 8
    assert peak < dense_bytes / 4, (peak, dense_bytes)


def test_colour_spacing_separates_responses():
    """Zero padding: 2R + 1 (or the whole axis); circular: the next divisor of the axis."""
    assert [_period(10, 5, False), _period(4, 5, False)] == [5, 4]
    assert [_period(16, 5, True), _period(12, 7, True), _period(7, 3, True)] == [8, 12, 7]


# ----------------------------------------------------------------------------- 4. attribution


def test_attribution_sums_to_the_total_and_interactions_are_not_single_layer_sums():
    rng = np.random.default_rng(20)
    W1, W2, W3 = rng.normal(size=(5, 3)), rng.normal(size=(4, 5)), rng.normal(size=(2, 4))
    X, Y = rng.normal(size=(9, 3)), rng.normal(size=(9, 2))
    layers = [Linear(W1), Dropout(Bernoulli(0.5)), Linear(W2), Dropout(Bernoulli(0.6)), Linear(W3)]
    terms = network_dropout_penalty(layers, X, Y)
    assert terms.mean_shift + terms.own.sum() + terms.interaction == pytest.approx(terms.value)
    assert terms.values.sum() + terms.mean_shift == pytest.approx(terms.value, rel=1e-14)
    # single-layer penalties, each computed with the other layer removed
    alone = [
        network_dropout_penalty([Linear(W1), Dropout(Bernoulli(0.5)), Linear(W3 @ W2)], X, Y),
        network_dropout_penalty([Linear(W2 @ W1), Dropout(Bernoulli(0.6)), Linear(W3)], X, Y),
    ]
    np.testing.assert_allclose(terms.own, [a.value for a in alone], rtol=1e-12)
    assert terms.interaction > 0 and terms.value > sum(a.value for a in alone)
    assert terms.term(1, 3) == pytest.approx(terms.interaction)
    assert terms.interactions == (((1, 3), terms.term(1, 3)),)


def test_attribution_result_is_frozen_and_read_only():
    rng = np.random.default_rng(21)
    terms = network_dropout_penalty(
        [Linear(rng.normal(size=(3, 2))), Dropout(Bernoulli(0.5)), Linear(rng.normal(size=(1, 3)))],
        rng.normal(size=(4, 2)),
    )
    assert isinstance(terms, PenaltyTerms)
    with pytest.raises(dataclasses.FrozenInstanceError):
        terms.value = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        terms.values[0] = 0.0
    with pytest.raises(ValueError):
        terms.own[0] = 0.0
    with pytest.raises(InvalidParameterError):
        terms.term(0)


# ----------------------------------------------------------------------------- refusals


def test_dropout_before_a_nonlinearity_is_refused_pointing_to_monte_carlo():
    rng = np.random.default_rng(22)
    layers = [
        Linear(rng.normal(size=(3, 2))),
        Dropout(Bernoulli(0.5)),
        ReLU(),
        Linear(rng.normal(size=(1, 3))),
    ]
    with pytest.raises(InvalidParameterError, match="method='mc'"):
        network.dropout_penalty(layers, rng.normal(size=(4, 2)), method="exact")


@pytest.mark.parametrize(
    "masks", [DropBlock(0.8, 2, normalize="torchvision"), DropBlock(0.8, 2)], ids=["tv", "vector"]
)
def test_masks_without_exact_form_are_refused(masks):
    rng = np.random.default_rng(23)
    if masks.normalize == "torchvision":
        layers = [Conv(rng.normal(size=(1, 1, 3, 3))), Dropout(masks), Conv(np.ones((1, 1, 3, 3)))]
        X = rng.normal(size=(2, 1, 5, 5))
    else:
        layers = [Linear(rng.normal(size=(3, 2))), Dropout(masks), Linear(np.ones((1, 3)))]
        X = rng.normal(size=(2, 2))
    with pytest.raises(InvalidParameterError):
        network_dropout_penalty(layers, X)


def test_bad_networks_and_targets_are_refused():
    rng = np.random.default_rng(24)
    with pytest.raises(InvalidParameterError, match="no Dropout"):
        network_dropout_penalty([Linear(np.ones((1, 2)))], np.ones((3, 2)))
    layers = [Linear(np.ones((3, 2))), Dropout(Bernoulli(0.5)), Linear(np.ones((1, 3)))]
    with pytest.raises(InvalidParameterError, match="output shape"):
        network_dropout_penalty(layers, rng.normal(size=(3, 2)), np.ones((3, 2)))
    with pytest.raises(InvalidParameterError):
        network_dropout_penalty([Linear(np.ones((3, 2))), "dropout"], np.ones((3, 2)))


def test_network_monte_carlo_samples_dropconnect_and_gaussian_masks_like_the_exact_penalty():
    # network.dropout_penalty_mc draws DropConnect weight masks and Gaussian unit masks
    # itself; over 20 seeds its estimate stays within 4 standard errors of the exact value
    rng = np.random.default_rng(11)
    X = rng.normal(size=(6, 5))
    layers = [
        Linear(rng.normal(size=(4, 5))),
        ReLU(),
        Dropout(Gaussian(0.6)),
        DropConnect(rng.normal(size=(3, 4)), 0.7),
        Linear(rng.normal(size=(2, 3))),
    ]
    Y = rng.normal(size=(6, 2))
    exact = network.dropout_penalty(layers, X, Y=Y)
    for seed in range(20):
        est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=2000, rng=seed)
        assert abs(est.mean - exact) < 4 * est.stderr, (seed, est.mean, exact, est.stderr)


def test_dropout_penalty_is_the_total_of_its_terms_and_refuses_dropout_before_relu():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(5, 4))
    layers = [Dropout(Bernoulli(0.5)), Linear(rng.normal(size=(3, 4)))]
    assert network.dropout_penalty(layers, X) == network.dropout_penalty_terms(layers, X).value
    with pytest.raises(InvalidParameterError, match="method='mc'"):
        network.dropout_penalty([*layers, ReLU(), Linear(np.ones((1, 3)))], X, method="exact")


# ----------------------------------------------------------------------------- biases


def test_fc_biases_and_tanh_match_enumeration():
    # biases enter only the mean-mask path; the fluctuation of every mask meets them
    # through the deterministic features it multiplies
    rng = np.random.default_rng(40)
    W0, W1, W2 = (rng.normal(size=s) for s in [(4, 3), (3, 4), (2, 3)])
    b0, b1, b2 = (rng.normal(size=s) for s in [4, 3, 2])
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    spec = [
        ("linear", W0, b0),
        ("tanh",),
        ("mask", "element", 0.6),
        ("linear", W1, b1),
        ("mask", "element", 0.35),
        ("linear", W2, b2),
    ]
    exact = _check_against_enumeration(spec, X, Y)
    assert exact.mean_shift == 0.0
    unbiased = [layer[:2] if layer[0] == "linear" else layer for layer in spec]
    unbiased = _check_against_enumeration(unbiased, X, Y)
    assert abs(exact.value - unbiased.value) > 0.05 * abs(exact.value)  # the biases matter


@pytest.mark.parametrize("padding", ["zeros", "circular"])
def test_conv_biases_match_enumeration(padding):
    rng = np.random.default_rng(41)
    w0, w1, w2 = (rng.normal(size=s) for s in [(2, 1, 3, 3), (1, 2, 3, 3), (1, 1, 1, 3)])
    b0, b1, b2 = (rng.normal(size=s) for s in [2, 1, 1])
    X, Y = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(2, 1, 3, 3))
    spec = [
        ("conv", w0, padding, b0),
        ("relu",),
        ("mask", "channel", 0.55),
        ("conv", w1, padding, b1),
        ("mask", "element", 0.7),
        ("conv", w2, padding, b2),
    ]
    _check_against_enumeration(spec, X, Y)


def test_conv_biases_with_dropblock_and_a_biased_head_match_enumeration():
    # DropBlock's mean is not one at the border: the targets and the biases meet in the
    # mean shift
    rng = np.random.default_rng(42)
    w0, w1 = rng.normal(size=(1, 1, 3, 3)), rng.normal(size=(1, 1, 3, 3))
    W, b = rng.normal(size=(2, 16)), rng.normal(size=2)
    X, Y = rng.normal(size=(3, 1, 4, 4)), rng.normal(size=(3, 2))
    gamma = DropBlock(0.7, 2).gamma((4, 4))
    spec = [
        ("conv", w0, "zeros", rng.normal(size=1)),
        ("relu",),
        ("mask", "block", 0.7, 2, gamma),
        ("conv", w1, "zeros", rng.normal(size=1)),
        ("linear", W, b),
    ]
    exact = _check_against_enumeration(spec, X, Y)
    assert exact.mean_shift != 0.0


def test_biased_conv_net_into_a_head_matches_monte_carlo():
    # maps large enough for the coloured probes, and a pulled-back fully connected head
    rng = np.random.default_rng(43)
    layers = [
        Conv(rng.normal(size=(3, 2, 3, 3)) / 3, bias=rng.normal(size=3)),
        ReLU(),
        Dropout(Bernoulli(0.6)),
        Conv(rng.normal(size=(2, 3, 3, 3)) / 3, padding="zeros", bias=rng.normal(size=2)),
        Dropout(Channel(0.8)),
        Linear(rng.normal(size=(3, 2 * 9 * 9)) / 9, bias=rng.normal(size=3)),
    ]
    X, Y = rng.normal(size=(6, 2, 9, 9)), rng.normal(size=(6, 3))
    exact = network.dropout_penalty(layers, X, Y=Y)
    est = network.dropout_penalty(layers, X, Y=Y, method="mc", n_masks=4000, rng=44)
    assert abs(est.mean - exact) < N_SE * est.stderr, (est.mean, exact, est.stderr)


def test_a_bias_of_the_wrong_length_is_refused():
    # a node is checked once, when it is built
    with pytest.raises(InvalidParameterError, match=r"`bias` must have one entry"):
        Linear(np.ones((2, 3)), bias=np.ones(3))
