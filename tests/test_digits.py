"""The digits case study (figure (m)): trained CNNs, their penalties and starved taps.

The figure's quick record is checked against computations that do not go through the
figure's code: the penalty of the last dropout layer from its dense formula on the
trained model's own float64 features, the taps' column counts by enumeration, and the
Monte Carlo estimates against the exact value within their standard errors, and the
taps' no-gradient probabilities on the digits' maps against the gradients of sampled
masks (PyTorch's im2col, not the figure's counting).
"""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from regtheory import InvalidParameterError, pytorch  # noqa: E402 (needs torch)
from regtheory.figures import compute, torch_figures  # noqa: E402
from regtheory.masks import Bernoulli, Channel, DropBlock  # noqa: E402

pytestmark = pytest.mark.slow  # every test here takes seconds: not in the quick tier

SEED = 0


@pytest.fixture(scope="module")
def data(quick_record):
    return quick_record("digits_dropout", SEED)["data"]


def _variant(data, name):
    return next(v for v in data["variants"] if v["name"] == name)


def _retrain(data, masks):
    """The variant trained again, from the figure's settings, outside the figure's code."""
    X_train, y_train, X_test, y_test = torch_figures.digits_split(SEED)
    model = pytorch.to_torch(torch_figures.digits_layers(masks, SEED)).float()
    trained = pytorch.train_classifier(
        model,
        X_train,
        y_train,
        epochs=data["epochs"],
        batch_size=data["batch_size"],
        lr=data["lr"],
        seed=SEED,
        n_threads=1,
    )
    return trained, X_test, y_test


@pytest.mark.parametrize("name,masks", [("Dropout", Bernoulli(0.8)), ("Dropout2d", Channel(0.8))])
def test_last_layer_penalty_is_the_dense_formula_on_the_trained_model(data, name, masks):
    # dropout B sits before the last Linear U: alone it costs λ Σ_units ‖U_unit h_unit‖²
    # (elementwise: one unit per hidden position; channel: one unit per channel)
    trained, X_test, y_test = _retrain(data, masks)
    record = _variant(data, name)
    net = trained.double().eval()
    x = torch.from_numpy(X_test)
    with torch.no_grad():
        assert np.mean(net(x).argmax(dim=1).numpy() == y_test) == pytest.approx(
            record["accuracy"],
            abs=1.5 / len(y_test),  # float32 vs float64 ties at most
        )
        h = net[:-2](x[: data["n_penalty"]]).reshape(data["n_penalty"], data["channels"], -1)
    U = net[-1].weight.reshape(10, data["channels"], -1)
    lam = (1 - masks.keep) / masks.keep
    if name == "Dropout":
        per_unit = torch.einsum("ocp,ncp->ncpo", U, h)  # U_unit h_unit for each position
        dense = lam * per_unit.pow(2).sum(dim=(1, 2, 3)).mean().item()
    else:
        per_channel = torch.einsum("ocp,ncp->nco", U, h)
        dense = lam * per_channel.pow(2).sum(dim=(1, 2)).mean().item()
    assert record["penalty"]["own_last_exact"] == pytest.approx(dense, rel=1e-9)


def test_monte_carlo_penalties_agree_with_the_exact_one(data):
    for v in data["variants"][1:]:
        pen = v["penalty"]
        assert pen["method"] == "monte carlo"  # a ReLU follows dropout A
        z = (pen["own"][1] - pen["own_last_exact"]) / pen["own_stderr"][1]
        assert abs(z) < 4, (v["name"], z)
        assert 0 < pen["own_last_exact"] < pen["total"]


def test_trained_networks_classify_held_out_digits(data):
    assert [v["name"] for v in data["variants"]] == list(torch_figures.VARIANTS)
    assert data["n_train"] + data["n_test"] == 1797
    for v in data["variants"]:
        # one quick epoch already reaches ~0.9; ten classes by chance give 0.1
        assert 0.8 < v["accuracy"] <= 1.0, v
    assert "penalty" not in data["variants"][0]  # the baseline has no dropout to pay for


def test_tap_probabilities_from_enumerated_column_counts(data):
    # a tap (a, b) of a 3×3 kernel on an 8×8 map, zero padding, multiplies the hidden
    # units at (i + a − 1, j + b − 1) that lie inside the map, for every output (i, j)
    counts = np.array(
        [
            [
                sum(0 <= i + a - 1 < 8 and 0 <= j + b - 1 < 8 for i in range(8) for j in range(8))
                for b in range(3)
            ]
            for a in range(3)
        ]
    )
    keep = 1 - data["drop"]
    element, channel, block = (
        _variant(data, n)["taps"] for n in torch_figures.VARIANTS if n != "none"
    )
    for taps in (element, channel, block):
        assert np.array_equal(taps["column_counts"], counts)
    np.testing.assert_allclose(element["probability"], (1 - keep) ** counts, rtol=1e-12)
    np.testing.assert_allclose(channel["probability"], np.full((3, 3), 1 - keep), rtol=1e-12)
    # a 3×3 DropBlock starves a tap only if its blocks cover ≥ 49 positions of one map
    assert np.max(block["probability"]) < 3 / block["n_masks"]


def test_without_the_extra_the_figure_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails
    with pytest.raises(InvalidParameterError, match=r'pip install -e "\.\[torch\]"'):
        compute("digits_dropout", quick=True)


def _starved_by_sampled_masks(maps, masks, n_draws, seed):
    """Per draw, the share of (digit, in-channel) pairs whose 3×3 tap gradient is zero
    under one sampled mask per digit, among the pairs whose gradient is nonzero without
    masks: the weight gradient of a conv is its im2col columns times the output
    gradient, here a generic (Gaussian) one. Also the share of pairs never reached."""
    n, c = maps.shape[:2]
    delta = torch.from_numpy(np.random.default_rng(seed).standard_normal((c, 64)))

    def tap_gradients(x):  # (batch, c, 8, 8) -> (batch, c, 9): zero or not, per tap
        columns = torch.nn.functional.unfold(torch.from_numpy(x), 3, padding=1)  # (b, c·9, 64)
        grad = columns @ delta.T  # ∂/∂w[o, i, a, b] of Σ δ·conv(x), as (b, i·9 + tap, o)
        return (grad != 0).any(dim=2).reshape(len(x), c, 9).numpy()

    reached = tap_gradients(maps)  # (n, c, 9)
    rng = np.random.default_rng(seed + 1)
    shares = []
    for _ in range(0, n_draws, 100):
        kept = masks.sample((c, 8, 8), 100 * n, rng) != 0
        fed = tap_gradients((maps[None] * kept.reshape(100, n, c, 8, 8)).reshape(-1, c, 8, 8))
        starved = reached[None] & ~fed.reshape(100, n, c, 9)
        shares.append(starved.sum(axis=(1, 2)) / reached.sum(axis=(0, 1)))
    return np.concatenate(shares).reshape(-1, 3, 3), 1 - reached.mean(axis=(0, 1)).reshape(3, 3)


@pytest.mark.parametrize(
    "name,masks,stated",
    [
        ("Dropout", Bernoulli(0.8), "record"),
        ("Dropout", Bernoulli(0.05), "taps_on_data"),  # keep low enough to starve taps
        ("Dropout2d", Channel(0.8), "record"),
        ("DropBlock2d", DropBlock(0.8, 3), "record"),
    ],
)
def test_tap_probabilities_on_the_digits_maps_match_sampled_masks(data, name, masks, stated):
    """Figure (m) states how often a tap gets no gradient on the maps of its held-out
    digits (only the positions they reach); sampled masks on those maps agree."""
    trained, X_test, _ = _retrain(data, Bernoulli(0.8) if name == "Dropout" else masks)
    first = next(i for i, m in enumerate(trained) if "Drop" in type(m).__name__)
    with torch.no_grad():
        maps = trained.double().eval()[:first](torch.from_numpy(X_test[: data["n_penalty"]]))
    maps = maps.numpy()
    if stated == "record":
        on_data = _variant(data, name)["taps"]["on_data"]
    else:
        on_data = torch_figures.taps_on_data(maps, masks, 2000, SEED)
    shares, unreached = _starved_by_sampled_masks(maps, masks, 2000, SEED + 7)
    np.testing.assert_allclose(on_data["unreached"], unreached, atol=1e-12)
    p, se = np.asarray(on_data["probability"]), np.asarray(on_data["stderr"])
    sampled, sampled_se = shares.mean(axis=0), shares.std(axis=0, ddof=1) / np.sqrt(len(shares))
    both = np.hypot(se, sampled_se)
    if np.all(both == 0):  # no draw starved a reached tap: the stated value is far below 1/N
        assert np.all(p < 1 / len(shares)), p
        return
    z = np.where(both > 0, (sampled - p) / np.where(both > 0, both, 1), 0.0)
    assert np.max(np.abs(z)) < 4, (z, p, sampled)
    assert np.all((both > 0) | (p < 1 / len(shares)))
    assert 0.3 < on_data["zero_fraction"] < 0.7  # a ReLU map of a digit: about half zero
