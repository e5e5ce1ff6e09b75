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
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from regtheory.cli import main
from regtheory.figures import REGISTRY, CheckReport, check
from regtheory.figures._check import (
    EPS,
    EXACT,
    RECORD,
    Rule,
    closed_form,
    compare_data,
    monte_carlo,
    rounding,
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
def quick_dir(tmp_path_factory, quick_record):
    """Every figure's record, quick mode, seed 2, as ``regtheory figures`` writes it."""
    directory = tmp_path_factory.mktemp("quick")
    for name in REGISTRY:
        _write(directory, quick_record(name, SEED))
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


@pytest.mark.slow
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
    # the fc series of (e), whose estimates are compared by z-score whatever the draws
    def change(data):
        estimate = data["panels"][0]["series"]["fc"]["mc"][1]
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
        "panels/0/series/fc/mc/1/mean",
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_reported_deviations_are_the_tampered_amounts(quick_dir, tmp_path):
    directory = _tampered(quick_dir, tmp_path, "penalty_vs_keep", _shift_by_stderrs(10))
    (fig,) = check(directory=directory, names=["penalty_vs_keep"]).figures
    (row,) = [r for r in fig.rows if r.kind == "monte_carlo" and r.tolerance.startswith("z")]
    # the same stderr on both sides: z = 10 se / √(se² + se²)
    assert row.worst == pytest.approx(10 / math.sqrt(2), rel=1e-9)
    # the mean and both ends of its interval stay put: only the mean fails
    assert len(row.failures) == 1 and not row.passed

    name, path = "border_penalty_map", ["nets", 0, "closed_form_total", "circular"]
    directory = _tampered(quick_dir, tmp_path, name, _scale(path, 1 + 3e-6))
    (fig,) = check(directory=directory, names=[name]).figures
    (row,) = [r for r in fig.rows if r.kind == "closed_form" and not r.passed]
    assert row.worst == pytest.approx(3e-6 / (1 + 3e-6), rel=1e-6)  # relative to the stored
    assert row.worst_field == "nets/0/closed_form_total/circular"


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_field_of_every_figure_has_exactly_one_rule(name, quick_dir):
    """No leaf without a rule, no rule naming nothing, no leaf under two rules (quick and
    committed full data: the full runs have more grid points, not other fields)."""
    for directory in (quick_dir, COMMITTED):
        data = json.loads((directory / f"{name}.json").read_text())["data"]
        unchecked, stale = schema_gaps(name, data)
        assert unchecked == [], f"{name}: no rule for {unchecked[:5]}"
        assert stale == [], f"{name}: rules that name no field: {stale}"


@pytest.mark.slow
def test_a_field_without_a_rule_is_an_error_of_the_schema(quick_dir, monkeypatch):
    spec = REGISTRY["conv_matrix_seed"]
    checks = {k.replace("fc_zeroed_weights", "").strip(): v for k, v in spec.checks.items()}
    monkeypatch.setitem(REGISTRY, "conv_matrix_seed", replace(spec, checks=checks))
    with pytest.raises(ValueError, match="no check for field 'fc_zeroed_weights'"):
        check(directory=quick_dir, names=["conv_matrix_seed"])


@pytest.mark.slow
def test_a_field_under_two_rules_is_an_error_of_the_schema(quick_dir, monkeypatch):
    spec = REGISTRY["conv_matrix_seed"]
    checks = dict(spec.checks, fc_zeroed_weights=closed_form())
    monkeypatch.setitem(REGISTRY, "conv_matrix_seed", replace(spec, checks=checks))
    with pytest.raises(ValueError, match="fc_zeroed_weights matches rules"):
        check(directory=quick_dir, names=["conv_matrix_seed"])


# ----------------------------------------------------------------------------- tolerances


@pytest.mark.parametrize(
    "make",
    [
        lambda: Rule("closed_form", 0.0),
        lambda: Rule("solve", 0.0),
        lambda: Rule("trajectory", -1e-6),
        lambda: Rule("spread", float("nan")),
        lambda: Rule("monte_carlo", 0.0, stderr="se"),
        lambda: Rule("solve", "gap"),  # a certified gap of 0 would compare floats exactly
        lambda: Rule("monte_carlo", 4.0, stderr="se", rounding=-1e-12),
        lambda: Rule("exact", 1e-9),
        lambda: closed_form(size=0),
        lambda: closed_form(condition=float("inf")),
    ],
)
def test_a_zero_tolerance_on_a_float_is_refused(make):
    with pytest.raises(ValueError):
        make()


def test_every_declared_rule_has_a_positive_tolerance_on_floats():
    """The audit as a test: every rule of every figure that compares floats has a
    tolerance above 0, and one read from the data has a rounding floor."""
    for name, spec in REGISTRY.items():
        for key, rule in spec.checks.items():
            if rule.kind in ("exact", "record"):
                continue
            if isinstance(rule.tolerance, str):
                assert rule.rounding > 0, (name, key)
            else:
                assert rule.tolerance > 0, (name, key)


def _leaf_rules(name: str, data) -> list[tuple[str, object, Rule]]:
    from regtheory.figures._check import _match, _patterns

    patterns = _patterns(REGISTRY[name].checks)
    out = []

    def walk(x, path, rule):
        if rule is None and path:
            found = _match(patterns, path)
            rule = found[1] if found else None
        if isinstance(x, dict):
            for key, value in x.items():
                walk(value, (*path, key), rule)
        elif isinstance(x, list):
            for i, value in enumerate(x):
                walk(value, (*path, str(i)), rule)
        else:
            out.append(("/".join(path), x, rule))

    walk(data, (), None)
    return out


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_integers_and_strings_are_exact_or_records(name):
    """Counts, seeds and names of the committed records are compared exactly (or shown, for
    an iteration count): no integer or string field falls under a tolerance."""
    data = json.loads((COMMITTED / f"{name}.json").read_text())["data"]
    for path, value, rule in _leaf_rules(name, data):
        if isinstance(value, (bool, int, str)):
            assert rule.kind in ("exact", "record"), (path, value, rule)


def test_rounding_scales_with_size_and_condition():
    assert rounding() == pytest.approx(10 * EPS)
    assert rounding(1000, 7) == pytest.approx(1000 * 7 * rounding())
    assert closed_form(size=1000, condition=7).tolerance == rounding(1000, 7)
    # a solve certified exact (gap 0) still rounds
    assert solve("gap", size=50).rounding == rounding(50) > 0


def _spec_with(monkeypatch, checks):
    spec = replace(REGISTRY["conv_matrix_seed"], checks=checks)
    monkeypatch.setitem(REGISTRY, "conv_matrix_seed", spec)


def test_a_certified_gap_of_zero_compares_to_rounding(monkeypatch):
    """The rule the issue met: an objective whose solve certifies a gap of 0 (a closed-form
    solve) moved by 1.4e-15 relative on another processor."""
    _spec_with(monkeypatch, {"x": solve("gap", scale="value", size=16200), "gap": EXACT})
    stored = {"x": 11.108946920891082, "gap": 0.0}
    rows, problems = compare_data("conv_matrix_seed", stored, dict(stored, x=11.108946920891098))
    assert not problems and all(r.passed for r in rows)
    rows, _ = compare_data("conv_matrix_seed", stored, dict(stored, x=11.108946920891082 * 1.01))
    assert not all(r.passed for r in rows)


@pytest.mark.parametrize("bad", [-1e-3, float("nan")])
def test_a_tolerance_read_from_the_data_must_be_positive(bad, monkeypatch):
    _spec_with(monkeypatch, {"x": solve("gap", scale="value"), "gap": EXACT})
    stored = {"x": 1.0, "gap": bad}
    _, problems = compare_data("conv_matrix_seed", stored, stored)
    ((problem,),) = [problems]
    assert problem.startswith("x: a tolerance of ") and problem.endswith(" read from the data")
    assert not float(problem.split()[4]) > 0


def test_a_record_is_shown_and_never_fails(monkeypatch):
    _spec_with(monkeypatch, {"iterations": RECORD, "x": closed_form()})
    stored = {"iterations": 20, "x": 1.0}
    rows, problems = compare_data("conv_matrix_seed", stored, {"iterations": 19, "x": 1.0})
    assert not problems and all(r.passed for r in rows)
    (row,) = [r for r in rows if r.kind == "record"]
    assert row.notes == ("iterations: stored 20, regenerated 19",)
    fig = replace(_a_figure_check(rows), rows=rows)
    text = fig.to_text()
    assert "iterations: stored 20, regenerated 19 (a record, not compared)" in text
    assert "SHOWN" in text and "FAIL" not in text


def _a_figure_check(rows):
    from regtheory.figures._check import FigureCheck

    return FigureCheck("conv_matrix_seed", "x.json", 0, True, rows, (), None, (), 0.0)


def test_monte_carlo_to_rounding_with_the_same_draws_by_z_otherwise(monkeypatch):
    _spec_with(monkeypatch, {"m": monte_carlo("se", same_draws=rounding(1000)), "se": EXACT})
    stored = {"m": 2.0, "se": 0.01}
    shifted = {"m": 2.0 + 1e-6, "se": 0.01}  # z = 7e-5: the same draws cannot give it
    rows, _ = compare_data("conv_matrix_seed", stored, shifted, same_draws=True)
    (row,) = [r for r in rows if r.kind == "monte_carlo"]
    assert not row.passed and row.tolerance.startswith("same draws")
    assert row.worst == pytest.approx(1e-6 / 2.0, rel=1e-6)
    rows, _ = compare_data("conv_matrix_seed", stored, shifted, same_draws=False)
    (row,) = [r for r in rows if r.kind == "monte_carlo"]
    assert row.passed and row.worst == pytest.approx(1e-6 / math.hypot(0.01, 0.01), rel=1e-6)
    # an exact value (stderr 0) that rounds differently is not a disagreement
    exact = {"m": 0.2, "se": 0.0}
    rows, _ = compare_data("conv_matrix_seed", exact, {"m": 0.2 * (1 + 4 * EPS), "se": 0.0})
    assert all(r.passed for r in rows)


@pytest.mark.slow
def test_same_draws_needs_the_same_numpy(quick_dir, tmp_path):
    """With the record's NumPy changed, the draws may differ: an estimate is compared by its
    z-score, so a shift of one standard error passes and one of 10 fails."""
    name = "penalty_vs_depth"
    record = json.loads((quick_dir / f"{name}.json").read_text())
    record["environment"]["packages"]["numpy"] = "1.0.0"
    for k, passes in ((1.0, True), (10.0, False)):
        data = record["data"]
        estimate = data["panels"][0]["series"][0]["mc"][0]
        shifted = json.loads(json.dumps(record))
        shifted["data"]["panels"][0]["series"][0]["mc"][0]["mean"] += k * estimate["stderr"]
        _write(tmp_path, shifted)
        (fig,) = check(directory=tmp_path, names=[name]).figures
        (row,) = [r for r in fig.rows if r.kind == "monte_carlo"]
        assert row.tolerance.startswith("z") and row.passed == passes, fig.to_text()


# ----------------------------------------------------------------------------- fifth digit


def _fifth_digit(x: float) -> float:
    """``x`` with its fifth significant digit one up (one down from a 9)."""
    step = 10.0 ** (math.floor(math.log10(abs(x))) - 4)
    digit = round(abs(x) / step) % 10
    return x + math.copysign(step, x) * (1 if digit < 9 else -1)


# (figure, a field of its quick record, kind of the field's rule): one field per kind,
# and per way of scaling a tolerance (relative to the value, to the field's largest
# value, to a certified gap of 0 or above 0, to rounding of the same draws). The change
# is made to the field's largest number.
FIFTH_DIGIT = [
    ("conv_matrix_seed", "keep", "exact"),
    ("border_penalty_map", "nets/1/closed_form_total/zeros", "closed_form"),
    ("penalty_vs_depth", "panels/0/weights", "closed_form"),
    ("implied_spectra", "methods/channel/objective", "solve"),
    ("implied_spectra", "methods/fc/objective", "solve"),
    ("implied_spectra", "methods/fc/singular_values", "solve"),
    ("penalty_vs_depth", "panels/0/series/0/mc/0/mean", "monte_carlo"),
    ("penalty_vs_depth", "panels/0/series/0/mc/0/stderr", "spread"),
    ("fc_equalization", "loss", "trajectory"),
]


def _numbers_under(node, path: str):
    if isinstance(node, list):
        for i, x in enumerate(node):
            yield from _numbers_under(x, f"{path}/{i}")
    else:
        yield path, node


def _largest(data, path: str) -> tuple[str, float]:
    """The path and value of the number of largest magnitude under ``path``."""
    node = data
    for key in path.split("/"):
        node = node[int(key)] if isinstance(node, list) else node[key]
    return max(_numbers_under(node, path), key=lambda pv: abs(pv[1]))


def _set(data, path: str, value: float) -> None:
    *parents, last = path.split("/")
    for key in parents:
        data = data[int(key)] if isinstance(data, list) else data[key]
    data[int(last) if isinstance(data, list) else last] = value


@pytest.mark.slow
@pytest.mark.parametrize(("name", "field", "kind"), FIFTH_DIGIT, ids=lambda x: str(x))
def test_a_change_in_the_fifth_digit_fails(name, field, kind, quick_dir, tmp_path):
    record = json.loads((quick_dir / f"{name}.json").read_text())
    path, old = _largest(record["data"], field)
    new = _fifth_digit(old)
    assert f"{new:.5g}" != f"{old:.5g}" and abs(new - old) <= 1e-4 * abs(old)
    _set(record["data"], path, new)
    _write(tmp_path, record)
    (fig,) = check(directory=tmp_path, names=[name]).figures
    failing = [r for r in fig.rows if not r.passed]
    assert [r.kind for r in failing] == [kind], fig.to_text()
    assert [line.split(":")[0] for line in failing[0].failures] == [path]


@pytest.mark.slow
def test_a_change_in_a_record_never_fails(quick_dir, tmp_path):
    name = "glm_adaptive_l2"
    record = json.loads((quick_dir / f"{name}.json").read_text())
    stored = record["data"]
    changed = json.loads(json.dumps(stored))
    changed["results"][0]["per_keep"][0]["quadratic_iterations"] += 1
    rows, problems = compare_data(name, stored, changed, same_draws=True)
    assert not problems and all(r.passed for r in rows)
    (row,) = [r for r in rows if r.kind == "record"]
    assert len(row.notes) == 1 and "quadratic_iterations" in row.notes[0]


# ----------------------------------------------------------------------------- kernels

# Kernels of NumPy's bundled OpenBLAS (OPENBLAS_CORETYPE), the CPU feature each needs
# (NumPy's names) and the name OpenBLAS then reports: Prescott runs its oldest x86-64
# kernels, which it names Katmai.
KERNELS = {
    "Haswell": ("AVX2", "Haswell"),
    "SkylakeX": ("AVX512_SKX", "SkylakeX"),
    "Sandybridge": ("AVX", "Sandybridge"),
    "Nehalem": ("SSE42", "Nehalem"),
    "Prescott": ("SSE3", "Katmai"),
}


def _runnable_kernels() -> list[str]:
    from numpy._core._multiarray_umath import __cpu_features__

    return [k for k, (feature, _) in KERNELS.items() if __cpu_features__.get(feature)]


def _kernels_and_threads() -> list[tuple[str, int]]:
    """Every runnable kernel once, the thread counts 1 and 2 alternating between them."""
    return [(kernel, 1 + i % 2) for i, kernel in enumerate(_runnable_kernels())]


@pytest.mark.slow
@pytest.mark.parametrize(("kernel", "threads"), _kernels_and_threads())
def test_cheap_committed_figures_pass_under_every_openblas_kernel(kernel, threads):
    """Another processor, simulated: the committed figures regenerated in a process whose
    OpenBLAS runs another kernel (other FMA use, block sizes and summation orders) and
    thread count, as NumPy's OpenBLAS picks on another CPU. Each kernel runs once, with
    one thread or two in turn, so that both thread counts are run."""
    env = dict(os.environ, OPENBLAS_CORETYPE=kernel, OPENBLAS_NUM_THREADS=str(threads))
    argv = ["--dir", str(COMMITTED), "--only", *CHEAP, "--jobs", "1", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "regtheory", "check", *argv],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    report = json.loads(done.stdout)
    assert report["passed"] is True
    blas = [lib for lib in report["environment"]["blas"] if lib["prefix"] == "libscipy_openblas"]
    assert blas, report["environment"]["blas"]
    for lib in blas:  # the kernel really ran
        assert lib["architecture"] == KERNELS[kernel][1] and lib["num_threads"] == threads


def test_the_kernels_run_with_one_thread_and_with_two():
    pairs = _kernels_and_threads()
    assert [k for k, _ in pairs] == _runnable_kernels()
    if len(pairs) >= 2:
        assert {t for _, t in pairs} == {1, 2}


def test_ci_checks_the_same_cheap_figures():
    """.ci/run regenerates the cheap committed figures under a second kernel: these."""
    script = (COMMITTED.parent / ".ci" / "run").read_text()
    (line,) = [x for x in script.splitlines() if x.startswith("cheap_figures=")]
    assert line.split("=", 1)[1].strip('"').split() == CHEAP
