"""The digits case study (figure (m)): trained CNNs, their penalties and starved taps.

The figure's quick record is checked against computations that do not go through the
figure's code: the penalty of the last dropout layer from its dense formula on the
trained model's own float64 features, the taps' column counts by enumeration, and the
Monte Carlo estimates against the exact value within their standard errors.
"""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from regtheory import InvalidParameterError, pytorch
from regtheory.figures import compute, torch_figures
from regtheory.masks import Bernoulli, Channel

pytestmark = pytest.mark.slow  # every test here takes seconds: not in the quick tier

SEED = 0


@pytest.fixture(scope="module")
def data():
    return compute("digits_dropout", quick=True, seed=SEED)["data"]


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
