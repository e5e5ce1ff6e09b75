"""Tests of ``regtheory check`` (regtheory/figures/_check.py and its CLI handler).

The stored records are made here, by ``compute`` in quick mode with a seed other than
the default (so a check that ignored the recorded seed would fail), and then
tampered with by known amounts: the deviations the check reports are compared with
the amounts put in (a relative change, a number of standard errors), not with its
own earlier output. The committed full figures are checked only for the cheap ones;
the whole committed set takes minutes (README).
"""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from regtheory.cli import main
from regtheory.figures import REGISTRY, CheckReport, check, compute
from regtheory.figures._check import (
    EXACT,
    closed_form,
    compare_data,
    schema_gaps,
    solve,
    trajectory,
)

COMMITTED = Path(__file__).resolve().parents[1] / "figures"
# Committed figures that regenerate in well under a second: closed forms and one solve.
CHEAP = [
    "conv_matrix_seed",
    "no_gradient_probability",
    "border_penalty_map",
    "implied_spectra",
    "penalty_attribution",
]
SEED = 2


def _write(directory: Path, record: dict) -> None:
    text = json.dumps(record, indent=1, sort_keys=True)
    (directory / f"{record['figure']}.json").write_text(text + "\n")


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory):
    """Every figure's record, quick mode, seed 2, as ``regtheory figures`` writes it."""
    directory = tmp_path_factory.mktemp("quick")
    for name in REGISTRY:
        _write(directory, compute(name, quick=True, seed=SEED))
    return directory


def _tampered(quick_dir, tmp_path, name, change) -> Path:
    """A copy of figure ``name``'s record with ``change(data)`` applied."""
    record = json.loads((quick_dir / f"{name}.json").read_text())
    change(record["data"])
    _write(tmp_path, record)
    return tmp_path


def _run(argv, capsys):
    status = main(["check", *argv, "--jobs", "1"])
    return status, capsys.readouterr()


# ----------------------------------------------------------------------------- agreement


def test_every_figure_passes_against_its_own_quick_record(quick_dir):
    report = check(directory=quick_dir, quick=True)
    assert isinstance(report, CheckReport) and report.passed
    assert [f.name for f in report.figures] == list(REGISTRY)
    for fig in report.figures:
        assert fig.seed == SEED and fig.quick is True
        assert not fig.disagreements and fig.n_values > 0
        # same machine, same seed: the same bits, whatever the kind of the field
        assert all(row.worst == 0 for row in fig.rows), fig.to_text()
        assert fig.environment_changes == ()


def test_cheap_committed_figures_pass_from_the_command_line(capsys):
    status, out = _run(["--dir", str(COMMITTED), "--only", *CHEAP], capsys)
    assert status == 0, out.out
    assert out.err == ""
    lines = out.out.splitlines()
    assert lines[-1].startswith(f"PASS: all {len(CHEAP)} figures agree with")
    for name in CHEAP:
        assert any(line.startswith(f"{name} (") for line in lines)
    assert "FAIL" not in out.out


def test_json_report(capsys):
    status, out = _run(["--dir", str(COMMITTED), "--only", "conv_matrix_seed", "--json"], capsys)
    assert status == 0
    report = json.loads(out.out)
    assert report["passed"] is True
    (fig,) = report["figures"]
    assert fig["name"] == "conv_matrix_seed" and fig["passed"] is True
    assert {row["kind"] for row in fig["rows"]} == {"exact", "closed_form"}
    assert report["environment"]["packages"]["regtheory"]


# ----------------------------------------------------------------------------- disagreement


def _scale(path, factor):
    def change(data):
        *parents, last = path
        for key in parents:
            data = data[key]
        data[last] *= factor

    return change


def _shift_by_stderrs(k):
    def change(data):
        estimate = data["panels"][0]["series"]["element"]["mc"][1]
        estimate["mean"] += k * estimate["stderr"]

    return change


def _set_exact(data):
    data["fc_zeroed_weights"] += 1


def _drop(data):
    del data["columns_per_tap"]


TAMPERED = {
    # (figure, change, field named in the output, kind of the failing row)
    "closed form 1e-6": (
        "border_penalty_map",
        _scale(["nets", 1, "closed_form_total", "zeros"], 1 + 1e-6),
        "nets/1/closed_form_total/zeros",
        "closed_form",
    ),
    "Monte Carlo mean 10 se": (
        "penalty_vs_keep",
        _shift_by_stderrs(10),
        "panels/0/series/element/mc/1/mean",
        "monte_carlo",
    ),
    "exact count": ("conv_matrix_seed", _set_exact, "fc_zeroed_weights", "exact"),
    "solve 1e-4": (
        "implied_spectra",
        _scale(["methods", "fc", "objective"], 1 + 1e-4),
        "methods/fc/objective",
        "solve",
    ),
    "dropped field": ("conv_matrix_seed", _drop, "columns_per_tap", None),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_record_fails_naming_the_field(case, quick_dir, tmp_path, capsys):
    name, change, field, kind = TAMPERED[case]
    directory = _tampered(quick_dir, tmp_path, name, change)
    status, out = _run(["--dir", str(directory), "--only", name], capsys)
    assert status == 1, out.out
    assert out.err == ""
    failing = [line for line in out.out.splitlines() if "FAIL" in line]
    assert failing[-1].startswith(f"FAIL: 1 of 1 figures disagree with {directory}: {name}")
    if kind is not None:
        assert any(line.split()[0] == kind for line in failing[:-1]), out.out
    # the field is named on a line of its own, with both values
    assert any(line.strip().startswith(f"{field}:") for line in out.out.splitlines()), out.out


def test_reported_deviations_are_the_tampered_amounts(quick_dir, tmp_path):
    directory = _tampered(quick_dir, tmp_path, "penalty_vs_keep", _shift_by_stderrs(10))
    (fig,) = check(directory=directory, names=["penalty_vs_keep"]).figures
    (row,) = [r for r in fig.rows if r.kind == "monte_carlo"]
    # the same stderr on both sides: z = 10 se / √(se² + se²)
    assert row.worst == pytest.approx(10 / math.sqrt(2), rel=1e-9)
    # the mean and both ends of its interval stay put: only the mean fails
    assert len(row.failures) == 1 and not row.passed

    name, path = "border_penalty_map", ["nets", 0, "closed_form_total", "circular"]
    directory = _tampered(quick_dir, tmp_path, name, _scale(path, 1 + 3e-6))
    (fig,) = check(directory=directory, names=[name]).figures
    (row,) = [r for r in fig.rows if r.kind == "closed_form"]
    assert row.worst == pytest.approx(3e-6 / (1 + 3e-6), rel=1e-6)  # relative to the stored
    assert row.worst_field == "nets/0/closed_form_total/circular"


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("border_penalty_map", _scale(["nets", 1, "closed_form_total", "zeros"], 1 + 1e-12)),
        ("penalty_vs_keep", _shift_by_stderrs(2)),  # z = 1.4
    ],
    ids=["closed form 1e-12", "Monte Carlo mean 2 se"],
)
def test_changes_within_the_tolerance_pass(name, change, quick_dir, tmp_path):
    directory = _tampered(quick_dir, tmp_path, name, change)
    report = check(directory=directory, names=[name])
    assert report.passed, report.to_text()
    assert any(row.worst > 0 for row in report.figures[0].rows)


def test_certified_accuracy_read_from_the_data(monkeypatch):
    """A solve that stores its accuracy beside its result is checked to the sum of both."""
    spec = replace(REGISTRY["conv_matrix_seed"], checks={"x": solve("accuracy"), "accuracy": EXACT})
    monkeypatch.setitem(REGISTRY, "conv_matrix_seed", spec)
    stored = {"x": [1.0, 2.0], "accuracy": 1e-3}
    # relative to the field's largest value, 2: 1.5e-3 / 2 is within 2e-3, 5e-3 / 2 is not
    rows, problems = compare_data(
        "conv_matrix_seed", stored, {"x": [1.0015, 2.0], "accuracy": 1e-3}
    )
    assert not problems and all(r.passed for r in rows)
    rows, _ = compare_data("conv_matrix_seed", stored, {"x": [1.005, 2.0], "accuracy": 1e-3})
    (row,) = [r for r in rows if r.kind == "solve"]
    assert not row.passed and row.worst == pytest.approx(2.5e-3)
    rows, problems = compare_data("conv_matrix_seed", stored, {"x": [1.0, 2.0]})
    assert problems == (
        "accuracy: in the stored record only",
        "x: its field 'accuracy' is not in the regenerated record",
    )


ZERO_STORED = {"f": [0.0, 1.0], "t": [0.0, 1.0]}


@pytest.mark.parametrize(
    ("changed", "passes"),
    [
        ({"f": [1e-310, 1.0]}, True),  # a closed form that underflows to a subnormal
        ({"f": [1e-200, 1.0]}, False),
        ({"t": [1e-20, 1.0]}, False),  # relative to 0, with no floor
        ({"t": [0.0, float("nan")]}, False),
    ],
)
def test_values_stored_as_zero(changed, passes, monkeypatch):
    checks = {"f": closed_form(), "t": trajectory(1e-6)}
    spec = replace(REGISTRY["conv_matrix_seed"], checks=checks)
    monkeypatch.setitem(REGISTRY, "conv_matrix_seed", spec)
    rows, problems = compare_data("conv_matrix_seed", ZERO_STORED, ZERO_STORED | changed)
    assert not problems
    assert all(r.passed for r in rows) == passes


# ----------------------------------------------------------------------------- user errors


def _one_line_exit_2(argv, capsys, *words):
    status, out = _run(argv, capsys)
    assert status == 2
    lines = out.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("regtheory check: "), out.err
    assert all(w in lines[0] for w in words), lines[0]
    assert out.out == ""


def test_unknown_figure_exits_2(capsys):
    _one_line_exit_2(["--dir", str(COMMITTED), "--only", "nope"], capsys, "nope", *REGISTRY)


def test_missing_json_exits_2_before_any_work(tmp_path, capsys):
    for name in ("padding_gap", "conv_matrix_seed"):
        shutil.copy(COMMITTED / f"{name}.json", tmp_path)
    # padding_gap, the slowest figure, is not regenerated: the missing file is found first
    argv = ["--dir", str(tmp_path), "--only", "padding_gap", "conv_matrix_seed"]
    argv += ["no_gradient_probability"]
    _one_line_exit_2(argv, capsys, "no_gradient_probability.json")


def test_every_registered_figure_by_default(tmp_path, capsys):
    shutil.copy(COMMITTED / "conv_matrix_seed.json", tmp_path)
    _one_line_exit_2(["--dir", str(tmp_path)], capsys, "does not exist")


@pytest.mark.parametrize("what", ["missing", "file"])
def test_unreadable_dir_exits_2(what, tmp_path, capsys):
    path = tmp_path / "figures"
    if what == "file":
        path.write_text("not a directory\n")
    _one_line_exit_2(["--dir", str(path), "--only", "conv_matrix_seed"], capsys, str(path))


def test_a_file_that_is_not_a_record_exits_2(tmp_path, capsys):
    (tmp_path / "conv_matrix_seed.json").write_text("{not json")
    _one_line_exit_2(["--dir", str(tmp_path), "--only", "conv_matrix_seed"], capsys, "cannot read")
    record = json.loads((COMMITTED / "conv_matrix_seed.json").read_text())
    (tmp_path / "conv_matrix_seed.json").write_text(json.dumps(dict(record, figure="padding_gap")))
    _one_line_exit_2(["--dir", str(tmp_path), "--only", "conv_matrix_seed"], capsys, "holds figure")


def test_quick_refuses_a_full_record(capsys):
    argv = ["--dir", str(COMMITTED), "--only", "padding_gap", "--quick"]
    _one_line_exit_2(argv, capsys, "padding_gap.json is a full run")


def test_bad_arguments_of_the_function(quick_dir):
    with pytest.raises(TypeError, match="names"):
        check(directory=quick_dir, names="conv_matrix_seed")
    with pytest.raises(ValueError, match="names"):
        check(directory=quick_dir, names=[])
    with pytest.raises(TypeError, match="directory"):
        check(directory=3, names=["conv_matrix_seed"])
    with pytest.raises(TypeError, match="quick"):
        check(directory=quick_dir, names=["conv_matrix_seed"], quick="yes")


# ----------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_field_of_every_figure_has_exactly_one_rule(name, quick_dir):
    """No leaf without a rule, no rule naming nothing, no leaf under two rules (quick and
    committed full data: the full runs have more grid points, not other fields)."""
    for directory in (quick_dir, COMMITTED):
        data = json.loads((directory / f"{name}.json").read_text())["data"]
        unchecked, stale = schema_gaps(name, data)
        assert unchecked == [], f"{name}: no rule for {unchecked[:5]}"
        assert stale == [], f"{name}: rules that name no field: {stale}"


def test_a_field_without_a_rule_is_an_error_of_the_schema(quick_dir, monkeypatch):
    spec = REGISTRY["conv_matrix_seed"]
    checks = {k.replace("fc_zeroed_weights", "").strip(): v for k, v in spec.checks.items()}
    monkeypatch.setitem(REGISTRY, "conv_matrix_seed", replace(spec, checks=checks))
    with pytest.raises(ValueError, match="no check for field 'fc_zeroed_weights'"):
        check(directory=quick_dir, names=["conv_matrix_seed"])


def test_a_field_under_two_rules_is_an_error_of_the_schema(quick_dir, monkeypatch):
    spec = REGISTRY["conv_matrix_seed"]
    checks = dict(spec.checks, fc_zeroed_weights=closed_form())
    monkeypatch.setitem(REGISTRY, "conv_matrix_seed", replace(spec, checks=checks))
    with pytest.raises(ValueError, match="fc_zeroed_weights matches rules"):
        check(directory=quick_dir, names=["conv_matrix_seed"])
