"""Data of figures (h)-(j) against the identities they illustrate."""

import numpy as np
import pytest

from regtheory.figures import compute


@pytest.fixture(scope="module")
def spectra(quick_record):
    return quick_record("implied_spectra", 0)["data"]


def test_h_channel_and_full_blocks_are_the_same_ridge(spectra):
    """K = n: channel dropout (λn/C)‖w‖² and n-unit blocks (λ/G)‖M‖_F² agree on circulants,
    and the FC block problem over all maps has the circulant ridge as its circulant part."""
    m = spectra["methods"]
    np.testing.assert_allclose(m["block"]["fourier"], m["channel"]["fourier"], rtol=1e-4, atol=1e-6)
    assert m["channel"]["rank"] == spectra["settings"]["n"]  # a ridge zeroes nothing


def test_h_thresholding_methods_zero_weak_modes(spectra):
    m = spectra["methods"]
    assert m["element"]["rank"] < spectra["settings"]["n"]
    assert m["fc"]["rank"] < spectra["settings"]["n"]


@pytest.mark.slow
def test_i_training_close_to_implied():
    data = compute("trained_vs_implied", quick=True, seed=0)["data"]
    for name, d in data["methods"].items():
        assert d["gap"] < 0.15, (name, d["gap"])


@pytest.mark.slow
def test_j_circular_exact_meets_relaxation_and_zero_padding_pays_less_penalty():
    rows = compute("padding_gap", quick=True, seed=0)["data"]["rows"]
    for r in rows:
        assert r["exact_circular"] == pytest.approx(r["convex_relaxation"], rel=1e-5)
        assert r["penalty_zeros"] <= r["penalty_zeros_if_circular"] * (1 + 1e-12)
    ratios = [r["penalty_zeros"] / r["penalty_zeros_if_circular"] for r in rows]
    assert ratios[-1] > ratios[0]  # the border matters less as n grows
