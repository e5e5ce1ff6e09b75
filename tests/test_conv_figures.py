"""The data of the conv figures (c)-(g) against independent computations.

References used here: the literal 9×9 matrix of THEORY §2, tap counts read off
dense conv matrices, formula (5)/(6)/(2) evaluated on the dense matrices of
:func:`regtheory.conv.conv_matrix` (with an SVD for the nuclear norm), and for
DropBlock formula (4) with the mask second moments computed exactly from the block
starts that cover each position. Rendering is covered by tests/test_figures.py.
"""

import numpy as np
import pytest
from _dropblock import dropblock_penalty_exact
from _theory import THEORY_MATRIX

from regtheory import conv
from regtheory.figures import compute

N_SE = 4  # Monte Carlo agreement within this many standard errors


def lam(keep):
    return (1 - keep) / keep


@pytest.fixture(scope="module")
def penalty_data(quick_record):
    return quick_record("penalty_vs_keep", 0)["data"]


@pytest.fixture(scope="module")
def mc_data(quick_record):
    return quick_record("mc_error_vs_n", 0)["data"]


# ----------------------------------------------------------------------------- (c)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_conv_matrix_seed_is_theory_matrix_and_gradients_follow_the_mask(seed):
    d = compute("conv_matrix_seed", quick=True, seed=seed)["data"]
    np.testing.assert_array_equal(d["tap_index"], THEORY_MATRIX)
    keep = d["keep"]
    mask = np.asarray(d["mask"])
    assert d["mask_seed"] == seed
    assert set(np.unique(mask)) <= {0.0, 1.0 / keep}
    kept = mask > 0
    # A tap gets a gradient iff it appears in some kept column (literal matrix).
    expected = [t for t in range(1, 10) if np.any(THEORY_MATRIX[:, kept] == t)]
    assert d["taps_with_gradient"] == expected
    for t in range(1, 10):
        assert d["kept_columns_per_tap"][t - 1] == sum(
            np.any(THEORY_MATRIX[:, j] == t) for j in np.flatnonzero(kept)
        )
    # corners 4, edges 6, centre 9 columns (THEORY §2)
    counts = np.array([4, 6, 4, 6, 9, 6, 4, 6, 4])
    np.testing.assert_array_equal(d["columns_per_tap"], counts)
    np.testing.assert_allclose(d["no_gradient_probability"], (1 - keep) ** counts, rtol=1e-15)
    assert d["fc_zeroed_weights"] == 9 * int(np.sum(~kept))
    assert d["fc_no_gradient_probability"] == pytest.approx(1 - keep)


# ----------------------------------------------------------------------------- (d)


def columns_holding_tap(kernel_size, image_shape, a, b):
    """Columns of the dense zero-padded conv matrix in which tap (a, b) appears."""
    w = np.zeros((1, 1, kernel_size, kernel_size))
    w[0, 0, a, b] = 1.0
    return int(np.sum(np.any(conv.conv_matrix(w, image_shape) != 0, axis=0)))


def test_no_gradient_probability_matches_formula_and_dense_counts():
    d = compute("no_gradient_probability", quick=True, seed=0)["data"]
    drop = np.asarray(d["drop_rate"])
    np.testing.assert_allclose(d["fc"], drop, rtol=1e-12)
    literal = {
        (3, 3): {"centre": 9, "edge": 6, "corner": 4},
        (32, 32): {"centre": 1024, "edge": 992, "corner": 961},
    }
    taps = {"centre": (1, 1), "edge": (0, 1), "corner": (0, 0)}
    i = int(np.argmin(np.abs(drop - 0.9)))  # one drop rate, away from underflow for 3×3
    j = int(np.argmin(np.abs(drop - 0.999)))  # one where the 32×32 values are visible
    for img in d["images"]:
        shape = tuple(img["image_shape"])
        for tap, count in literal[shape].items():
            assert img["counts"][tap] == count == columns_holding_tap(3, shape, *taps[tap])
            p = np.asarray(img["probability"][tap])
            for k in (i, j):
                assert p[k] == pytest.approx(drop[k] ** count, rel=1e-12)
    # the 32×32 centre tap at drop 0.999: 0.999^1024 ≈ e^{-1.02}
    p32 = np.asarray(d["images"][1]["probability"]["centre"])[j]
    assert p32 == pytest.approx(np.exp(1024 * np.log(drop[j])), rel=1e-12)


# ----------------------------------------------------------------------------- (e)


def dense_penalties(u, v, keep, image, padding):
    """Formulas (5), (6) and (2) on the dense conv matrices."""
    U = conv.conv_matrix(u, image, padding=padding)
    V = conv.conv_matrix(v, image, padding=padding)
    n = image[0] * image[1]
    C = v.shape[0]
    element = lam(keep) * np.sum((U**2).sum(axis=0) * (V**2).sum(axis=1))
    channel = lam(keep) * sum(
        np.sum((U[:, c * n : (c + 1) * n] @ V[c * n : (c + 1) * n]) ** 2) for c in range(C)
    )
    width = C * n
    fc_min = lam(keep) / width * np.linalg.svd(U @ V, compute_uv=False).sum() ** 2
    return {"element": element, "channel": channel, "fc": fc_min}


@pytest.mark.slow
def test_penalty_vs_keep_closed_forms_match_dense_matrices(penalty_data):
    d = penalty_data
    u, v = np.asarray(d["u"]), np.asarray(d["v"])
    assert u.shape == (1, 8, 3, 3) and v.shape == (8, 1, 3, 3)
    image = tuple(d["image_shape"])
    assert d["fc_width"] == 8 * image[0] * image[1]
    for panel in d["panels"]:
        for i, keep in enumerate(d["keeps"]):
            dense = dense_penalties(u, v, keep, image, panel["padding"])
            for name in ("element", "channel", "fc"):
                assert panel["series"][name]["closed_form"][i] == pytest.approx(
                    dense[name], rel=1e-9
                )
            # DropBlock: formula (4) with mask moments from brute-force cover sets
            block = dropblock_penalty_exact(u, v, keep, image, panel["padding"], d["block_size"])
            assert panel["series"]["block"]["closed_form"][i] == pytest.approx(block, rel=1e-9)


@pytest.mark.slow
def test_penalty_vs_keep_monte_carlo_within_ci(penalty_data):
    d = penalty_data
    u, v = np.asarray(d["u"]), np.asarray(d["v"])
    image = tuple(d["image_shape"])
    seeds = []
    for panel in d["panels"]:
        for name, series in panel["series"].items():
            for i, keep in enumerate(d["keeps"]):
                est = series["mc"][i]
                seeds.append(est["seed"])
                assert est["n_samples"] == d["n_masks"]
                lo, hi = est["ci95"]
                assert lo < est["mean"] < hi
                # skewness-corrected (Estimate.ci): 2·1.96·stderr up to skewness²/n_masks
                assert hi - lo == pytest.approx(2 * 1.959964 * est["stderr"], rel=0.02)
                if name == "block":
                    ref = dropblock_penalty_exact(
                        u, v, keep, image, panel["padding"], d["block_size"]
                    )
                else:
                    ref = dense_penalties(u, v, keep, image, panel["padding"])[name]
                assert abs(est["mean"] - ref) < N_SE * est["stderr"], (panel["padding"], name, keep)
    assert len(set(seeds)) == len(seeds), "every Monte Carlo run has its own recorded seed"


@pytest.mark.slow
def test_penalty_vs_keep_mc_reproducible_from_recorded_seed(penalty_data):
    d = penalty_data
    u, v = np.asarray(d["u"]), np.asarray(d["v"])
    panel = d["panels"][0]
    est = panel["series"]["block"]["mc"][1]
    again = conv.dropout_penalty_mc(
        u,
        v,
        d["keeps"][1],
        tuple(d["image_shape"]),
        padding=panel["padding"],
        mode="block",
        block_size=d["block_size"],
        n_masks=d["n_masks"],
        seed=est["seed"],
    )
    assert again.mean == est["mean"]


# ----------------------------------------------------------------------------- (f)


def test_border_map_sums_to_closed_form_and_matches_dense_matrices():
    d = compute("border_penalty_map", quick=True, seed=2)["data"]
    keep = d["keep"]
    assert len(d["nets"]) == 2
    for net in d["nets"]:
        u, v = np.asarray(net["u"]), np.asarray(net["v"])
        image = tuple(net["image_shape"])
        H, W = image
        C = v.shape[0]
        for padding in ("zeros", "circular"):
            m = np.asarray(net["maps"][padding])
            assert m.shape == image
            U = conv.conv_matrix(u, image, padding=padding)
            V = conv.conv_matrix(v, image, padding=padding)
            # λ ‖U[:, j]‖² E[h_j²] with E[h_j²] = ‖V[j, :]‖², summed over channels
            dense = lam(keep) * ((U**2).sum(axis=0) * (V**2).sum(axis=1)).reshape(C, H, W).sum(0)
            np.testing.assert_allclose(m, dense, rtol=1e-10)
            total = conv.dropout_penalty(u, v, keep, image, padding=padding)
            assert m.sum() == pytest.approx(total, rel=1e-10)
            assert net["closed_form_total"][padding] == pytest.approx(total, rel=1e-12)
        # circular: every position pays λ Σ_c ‖u_c‖²‖v_c‖² (THEORY §3)
        per_pos = lam(keep) * np.sum((u**2).sum(axis=(0, 2, 3)) * (v**2).sum(axis=(1, 2, 3)))
        np.testing.assert_allclose(net["maps"]["circular"], per_pos, rtol=1e-10)
        assert net["circular_formula_total"] == pytest.approx(H * W * per_pos, rel=1e-12)
        # zero padding loses only within the kernels' radius of the border
        r = net["kernel_size"] // 2
        ratio = np.asarray(net["maps"]["zeros"]) / np.asarray(net["maps"]["circular"])
        np.testing.assert_allclose(ratio[r : H - r, r : W - r], 1.0, rtol=1e-10)
        assert np.all(ratio[:r] < 1) and np.all(ratio[:, :r] < 1)
        assert np.all(ratio[H - r :] < 1) and np.all(ratio[:, W - r :] < 1)


# ----------------------------------------------------------------------------- (g)


@pytest.mark.slow
def test_mc_error_matches_reported_stderr_and_inverse_sqrt_law(mc_data):
    d = mc_data
    u, v = np.asarray(d["u"]), np.asarray(d["v"])
    image = (8, 8)
    dense = dense_penalties(u, v, d["keep"], image, d["padding"])
    assert set(d["estimators"]) == {"fc", "element", "channel"}
    for name, est in d["estimators"].items():
        assert est["closed_form"] == pytest.approx(dense[name], rel=1e-9)
        for row in est["rows"]:
            n = row["n_masks"]
            assert len(row["seeds"]) == len(row["errors"]) == d["n_seeds"]
            ratio = row["rms_error"] / row["rms_stderr"]
            assert 0.5 < ratio < 2.0, (name, n, ratio)
            # the reported stderr follows σ/√N within sampling noise
            assert row["rms_stderr"] * np.sqrt(n) == pytest.approx(est["sigma_one_draw"], rel=0.3)
        assert d["n_values"] == [row["n_masks"] for row in est["rows"]]


@pytest.mark.slow
def test_mc_error_reproducible_from_recorded_seed(mc_data):
    d = mc_data
    u, v = np.asarray(d["u"]), np.asarray(d["v"])
    row = d["estimators"]["element"]["rows"][1]
    again = conv.dropout_penalty_mc(
        u,
        v,
        d["keep"],
        (8, 8),
        padding=d["padding"],
        mode="element",
        n_masks=row["n_masks"],
        seed=row["seeds"][3],
    )
    closed = d["estimators"]["element"]["closed_form"]
    assert again.mean - closed == pytest.approx(row["errors"][3], rel=1e-12, abs=1e-12)
    assert again.stderr == pytest.approx(row["stderrs"][3], rel=1e-12)
