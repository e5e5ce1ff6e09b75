"""Reproduction (q): Srivastava et al.'s §9.1 identity, recomputed apart from the figure.

The figure sums the expectation over the masks of one row at a time; here the masks of
the whole matrix are enumerated on a tiny design, the ridge is solved as an augmented
least-squares problem, and the dropout minimiser is found by minimising a Monte Carlo
objective over fixed mask draws.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from regtheory.figures.reproductions import NOT_READ, VERDICTS, claim, verdict
from regtheory.figures.reproductions.srivastava_ridge import (
    _closed_form,
    _enumerated,
    design,
)

QUICK_SEED = 2


@pytest.fixture(scope="module")
def quick(quick_record):
    return quick_record("srivastava_ridge", QUICK_SEED)["data"]


def test_every_claim_of_the_quick_record_is_reproduced(quick):
    assert [c["verdict"] for c in quick["claims"]] == ["reproduced"] * 3
    assert all(c["paper"] == "srivastava2014dropout" for c in quick["claims"])


def test_the_identity_by_enumerating_every_mask_of_the_matrix():
    """2 × 3 inputs: all 2^6 masks R of the matrix, not row by row."""
    rng = np.random.default_rng(0)
    X, y, w = rng.standard_normal((2, 3)), rng.standard_normal(2), rng.standard_normal((1, 3))
    for p in (0.2, 0.5, 0.9):
        total = 0.0
        for bits in itertools.product((0, 1), repeat=6):
            R = np.array(bits, dtype=float).reshape(2, 3)
            prob = np.prod(np.where(R == 1, p, 1 - p))
            total += prob * np.sum((y - (R * X) @ w[0]) ** 2)
        assert _enumerated(X, y, w, p)[0] == pytest.approx(total, rel=1e-12)
        assert _closed_form(X, y, w, p)[0] == pytest.approx(total, rel=1e-12)


def test_the_ridge_solution_as_augmented_least_squares(quick):
    X, y = design(QUICK_SEED)
    for row in quick["per_keep"]:
        lam = (1 - row["keep"]) / row["keep"]
        gamma = np.sqrt(np.sum(X * X, axis=0))
        A = np.vstack([X, np.sqrt(lam) * np.diag(gamma)])
        b = np.concatenate([y, np.zeros(X.shape[1])])
        w_tilde = np.linalg.lstsq(A, b, rcond=None)[0]
        np.testing.assert_allclose(row["ridge"], w_tilde, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(row["solved"], w_tilde, rtol=1e-5, atol=1e-8)


def test_the_minimiser_of_sampled_dropout_objectives_approaches_the_ridge():
    """Minimise ||y - (R∘X)w||² averaged over 400 fixed mask draws, in closed form."""
    X, y = design(1)
    p, n_draws = 0.6, 400
    R = (np.random.default_rng(7).random((n_draws, *X.shape)) < p).astype(float)
    Xr = (R * X).reshape(-1, X.shape[1])  # the stacked masked copies
    w = np.linalg.lstsq(Xr, np.tile(y, n_draws), rcond=None)[0]
    lam, gamma2 = (1 - p) / p, np.sum(X * X, axis=0)
    ridge = np.linalg.solve(X.T @ X + lam * np.diag(gamma2), X.T @ y)
    # p·w of the sampled problem tends to the ridge; 400 draws leave a few per cent
    assert np.linalg.norm(p * w - ridge) / np.linalg.norm(ridge) < 0.05


# --------------------------------------------------------------------------- claims


def test_verdicts():
    assert verdict(True) == "reproduced"
    assert verdict(True, in_shape=True) == "reproduced in shape"
    assert verdict(False) == verdict(False, in_shape=True) == "not reproduced"
    assert VERDICTS == ("reproduced", "reproduced in shape", "not reproduced")


def _claim(**change):
    fields = dict(paper="k", claim="c", theirs="1", where="Table 1", ours=0.5, measure="m",
                  verdict="reproduced", reason="r")  # fmt: skip
    return claim(**{**fields, **change})


def test_a_claim_keeps_its_fields_in_the_table_order():
    assert list(_claim()) == [
        "paper", "claim", "theirs", "where", "ours", "measure", "verdict", "reason"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "change, message",
    [
        ({"theirs": NOT_READ}, "must say where it was read"),
        ({"where": NOT_READ}, "must say where it was read"),
        ({"verdict": "close"}, "`verdict` must be one of"),
        ({"ours": float("nan")}, "`ours` must be finite"),
        ({"reason": " "}, "`reason` must be a non-empty string"),
        ({"paper": None}, "`paper` must be a non-empty string"),
    ],
)
def test_a_claim_refuses_what_a_table_cannot_show(change, message):
    with pytest.raises(ValueError, match=message):
        _claim(**change)


def test_a_number_not_read_is_said_so_in_both_fields():
    c = _claim(theirs=NOT_READ, where=NOT_READ, verdict=verdict(True, in_shape=True))
    assert c["theirs"] == c["where"] == "not read"


def test_the_footer_states_every_claim_beside_the_papers_number(quick):
    from regtheory.figures.reproductions.srivastava_ridge import plot_srivastava_ridge

    bare_height = 3.6  # the panels' height before the footer
    fig = plot_srivastava_ridge(quick)
    footer = fig.texts[-1].get_text()
    assert fig.get_figheight() > bare_height
    assert footer.count("REPRODUCED:") == len(quick["claims"])
    assert footer.count("Paper: ||y - pXw||²") == 2
    assert "Ours: " in footer and "Sec." not in footer


def test_the_footer_needs_the_constrained_layout(quick):
    from matplotlib.figure import Figure

    from regtheory.figures.reproductions import draw_claims

    with pytest.raises(ValueError, match="constrained layout"):
        draw_claims(Figure(), quick["claims"])
