"""Figure (o), dropout against its explicit regularizer: its numbers recomputed apart.

One run of the quick record is retrained through the public API and scored with the
package's NumPy forward (not torch's); the intervals are set against scipy's Student-t
interval; the chosen weight decay against the validation scores it was chosen from.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
from scipy import stats  # noqa: E402

from regtheory import network, pytorch  # noqa: E402
from regtheory.figures.explicit_figures import build, digits_three_way  # noqa: E402

pytestmark = pytest.mark.slow  # trains the figure's quick record: seconds


@pytest.fixture(scope="module")
def quick(quick_record):
    return quick_record("explicit_vs_dropout", 3)["data"]


@pytest.mark.parametrize("method,dropout_as", [("dropout", "masks"), ("explicit", "explicit")])
def test_a_run_retrained_and_scored_apart_gives_the_recorded_accuracy(quick, method, dropout_as):
    setting = quick["settings"][0]
    record = next(m for m in setting["methods"] if m["name"] == method)
    data = digits_three_way()
    trained = pytorch.train_classifier(
        build(setting["model"], 3),
        *data["train"],
        epochs=quick["epochs"],
        batch_size=quick["batch_size"],
        lr=quick["lr"],
        rng=3,
        loss=setting["loss"],
        dropout_as=dropout_as,
    )
    X, y = data["test"]
    logits = network.forward(pytorch.from_torch(trained.double(), input_shape=(1, 8, 8)), X)
    accuracy = np.mean(logits.argmax(axis=1) == y)
    assert accuracy == pytest.approx(record["test_accuracy"][0], abs=1e-9)


def test_intervals_are_students_over_the_seeds(quick):
    for setting in quick["settings"]:
        for m in setting["methods"]:
            values = np.array(m["test_accuracy"])
            low, high = stats.t.interval(
                0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values)
            )
            iv = m["test_accuracy_interval"]
            assert iv["mean"] == pytest.approx(values.mean(), rel=1e-12)
            assert iv["half_width"] == pytest.approx((high - low) / 2, rel=1e-9, abs=1e-15)


def test_the_weight_decay_is_the_best_on_validation(quick):
    for setting in quick["settings"]:
        scores = {float(d): a for d, a in setting["validation_accuracy_by_decay"].items()}
        assert scores[setting["weight_decay"]] == max(scores.values())


def test_distances_to_dropout(quick):
    for setting in quick["settings"]:
        names = [m["name"] for m in setting["methods"]]
        assert names == ["none", "dropout", "explicit", "explicit+noise", "weight decay"]
        for m in setting["methods"]:
            assert all(0.0 <= d <= 1.0 for d in m["to_dropout_disagreement"])
            assert all(d > 0.0 for d in m["to_dropout_relative_distance"])
        assert setting["methods"][1]["name_of_distance"] == "dropout, other seed"
