"""Re-check stored figures: regenerate each figure's data and compare it with its JSON.

:func:`check` reads ``NAME.json`` (written by :func:`regtheory.figures.render`),
recomputes the data with the seed and mode recorded there, and compares the two
records field by field. How a field is compared is declared by its figure
(``FigureSpec.checks``): a mapping from field paths to a :class:`Rule`. A path
names a field by its keys, ``/``-separated, with ``*`` for any one key or list
index; one string may hold several paths separated by spaces. A rule applies to
every number under the field it names (a nested list is one field). The kinds:

============ =================================================================
exact        equal: integers, counts, strings, bools, and the settings (the
             inputs a figure copies into its record), sampled masks
closed_form  a formula in floating point: rounding, :func:`rounding` of the
             computation's size and condition number
solve        relative, the solve's accuracy: its certified gap read from a field
             beside the result (plus rounding), or a stated tolerance
monte_carlo  z = |new − old| / √(se_new² + se_old²) ≤ :data:`MC_Z`, from the
             standard errors stored beside the estimates; where the draws are
             the same bits (the same NumPy, the same seed) and the estimate
             depends on nothing else that rounds differently, to rounding
spread       relative, stated by the figure: a standard error or an RMS
             estimated from the draws, which has no standard error of its own
             (to rounding, like ``monte_carlo``, over the same draws)
trajectory   relative, stated by the figure: SGD runs, the same bits on one
             machine, within rounding of many steps across machines
record       how a result was reached (iterations, timings, solver names):
             shown in the report when it differs, never a disagreement
============ =================================================================

No float is compared with a zero tolerance: a rule whose tolerance on a float is 0
(or not a positive number) is refused when it is declared, and a tolerance read from
the data always has the rounding of the computation added to it.

A relative tolerance is relative to each value (``scale="value"``), to the largest
magnitude in its field (``scale="field"``: a spectrum whose zero singular values
are rounding noise), or to a fixed number (``scale=1.0``: a field that is itself
a relative gap).

A leaf of the data that no rule names is an error of the figure's schema
(ValueError), so a new field cannot go unchecked; a field present in one record
and not in the other is a disagreement, as is a value outside its tolerance.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType

from .._validation import InvalidParameterError
from ..implied import GAP_RTOL
from ..sweep import Sweep
from ._registry import REGISTRY, compute, environment, spec_of

__all__ = ["CheckReport", "FigureCheck", "KindCheck", "Rule", "check"]

KINDS = ("exact", "closed_form", "solve", "monte_carlo", "spread", "trajectory", "record")

#: The unit roundoff's double, 2^-52: one rounding on each of two machines.
EPS = 2.0**-52
# A value computed in floating point from n operations in sequence (a sum, a dot product,
# a power through exp) is within n·u·κ of the exact one, relative, u = EPS/2 and κ the
# condition number of the computation (Higham, Accuracy and Stability of Numerical
# Algorithms, 2nd ed., §3.1 and §4.2); two machines that round differently (another
# OpenBLAS kernel sums in another order, with or without FMA, another libm) are within
# twice that, n·EPS·κ. The bound is for the worst case; 10 covers the libm's ulp and
# the few stages a figure's formula chains.
ROUNDING_SAFETY = 10.0
# Values a closed form gives as exactly 0 on one machine may underflow to a subnormal
# on another ((1 - keep)^1000 in figure (d)).
CLOSED_FORM_ATOL = 1e-300
# A cvxpy solve whose accuracy the figure does not store is accurate to its solver's
# tolerances, not to rounding: results move by up to 3e-9 relative between OpenBLAS
# kernels (the k-support solve of block dropout).
SOLVE_RTOL = 1e-6
# The figures hold 462 independent Monte Carlo estimates (360 in mc_error_vs_n, 72 in
# penalty_vs_keep, 30 in penalty_vs_depth). Where the draws differ (another NumPy's
# generators; or the fc estimates of (e), z ≤ 0.5 measured between OpenBLAS kernels: an
# equalized factorization is not unique and each kernel finds another), two estimates of
# one mean differ by |z| > 4 with probability 6.3e-5: a false alarm in about one check of
# all figures in 35 (Bonferroni: 462 × 6.3e-5 = 2.9 %), while a shift of 6 standard errors
# is caught (z = 6/√2).
MC_Z = 4.0
# SGD with real masks (figures (a), (b), (i)): the same bits on one machine; a different
# BLAS kernel rounds each step differently, but the decaying steps damp the difference
# instead of amplifying it. Against OpenBLAS's Haswell kernels, its SkylakeX, SandyBridge,
# Nehalem and Prescott kernels (OPENBLAS_CORETYPE) move the trained values by at most
# 2e-13 relative: 1e-6 leaves a wide margin for other CPUs and libraries and still
# catches any change to the training itself.
TRAINING_RTOL = 1e-6


def rounding(size: float = 1.0, condition: float = 1.0) -> float:
    """The relative tolerance of a value computed in floating point on two machines.

    ``ROUNDING_SAFETY · size · condition · EPS``: ``size`` operations in sequence (the
    terms of the longest sum or product the value goes through), ``condition`` the
    relative condition number of the computation (1 for a sum of terms of one sign).
    """
    if not (size >= 1 and condition >= 1 and math.isfinite(size * condition)):
        raise ValueError(f"`size` and `condition` must be finite and ≥ 1, got {size}, {condition}")
    return ROUNDING_SAFETY * size * condition * EPS


def _positive(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and 0 < float(x) < math.inf


@dataclass(frozen=True)
class Rule:
    """How one field of a figure's data is compared (see the module docstring).

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    tolerance : float or str
        The relative tolerance, or the z bound (``monte_carlo``), or the name of a
        sibling field that holds each value's relative accuracy (``solve``; the
        tolerance is then the sum of the stored and the regenerated accuracies, plus
        ``rounding``). 0 for ``exact`` and ``record``, positive for every other kind.
    scale : str or float
        What a relative tolerance is relative to: ``"value"``, ``"field"`` (the
        largest magnitude in the field) or a fixed number.
    stderr : str or None
        ``monte_carlo``: the sibling field holding the standard errors of the values
        (one per value, or one for the whole field).
    draws : str or None
        ``spread``: the sibling field holding the number n of draws each value was
        estimated from; the tolerance is then ``tolerance / √n``.
    atol : float
        An absolute floor added to the relative tolerance, for values that are 0.
    rounding : float
        ``solve``: the rounding added to an accuracy read from the data (a solve
        certified exact, gap 0, still rounds). ``monte_carlo`` and ``spread``: the
        relative tolerance when the two records were drawn with the same NumPy, so
        from the same bits (0: the estimate also depends on something that is not
        reproduced to rounding, and the z-score or stated tolerance applies).
    """

    kind: str
    tolerance: float | str = 0.0
    scale: str | float = "value"
    stderr: str | None = None
    draws: str | None = None
    atol: float = 0.0
    rounding: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"`kind` must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "monte_carlo" and not self.stderr:
            raise ValueError("a monte_carlo rule must name its `stderr` field")
        if not (self.scale in ("value", "field") or _positive(self.scale)):
            raise ValueError(
                f"`scale` must be 'value', 'field' or a positive number, got {self.scale!r}"
            )
        if self.kind in ("exact", "record"):
            if self.tolerance != 0 or self.rounding != 0 or self.atol != 0:
                raise ValueError(f"an {self.kind} rule takes no tolerance")
            return
        # Never a zero tolerance on a float: every other kind compares floats.
        if isinstance(self.tolerance, str):
            if self.kind != "solve":
                raise ValueError("only a solve rule reads its tolerance from a field")
            if not _positive(self.rounding):
                raise ValueError(
                    f"a solve rule that reads its accuracy from {self.tolerance!r} needs a "
                    f"positive `rounding` (a gap of 0 does not make a float exact), got "
                    f"{self.rounding!r}"
                )
        elif not _positive(self.tolerance):
            raise ValueError(
                f"a {self.kind} rule compares floats: its tolerance must be a positive "
                f"number, got {self.tolerance!r}"
            )
        if not (self.rounding == 0 or _positive(self.rounding)) or self.atol < 0:
            raise ValueError(
                f"`rounding` and `atol` must be ≥ 0, got {self.rounding!r}, {self.atol!r}"
            )

    def label(self, *, same_draws: bool = False) -> str:
        """The tolerance as the report prints it.

        ``same_draws``: as applied to two records drawn from the same bits.
        """
        if self.kind == "exact":
            return "equal"
        if self.kind == "record":
            return "shown, never fails"
        if same_draws and self.rounding and self.kind in ("monte_carlo", "spread"):
            return f"same draws: {self.rounding:.2g} rel"
        if self.kind == "monte_carlo":
            return f"z ≤ {self.tolerance:g}"
        if isinstance(self.tolerance, str):
            tol = f"{self.tolerance} + {self.rounding:.2g}"
        else:
            tol = f"{self.tolerance:.2g}"
        if self.draws:
            tol = f"{tol}/√{self.draws}"
        if self.scale == "value":
            return f"{tol} rel"
        return f"{tol} rel of " + ("field max" if self.scale == "field" else f"{self.scale:g}")


#: Integers, counts, strings, bools, settings.
EXACT = Rule("exact")
#: Iteration counts, timings, solver names: shown when they differ, never failing.
RECORD = Rule("record")
#: A certified relative duality gap: each side's is at most GAP_RTOL (the solve refuses
#: more), so the two differ by at most GAP_RTOL; the value itself is the solver's path.
CERTIFIED = Rule("solve", GAP_RTOL, 1.0)


def closed_form(*, size: float = 1.0, condition: float = 1.0, scale: str | float = "value") -> Rule:
    """A formula evaluated in floating point.

    It agrees to :func:`rounding` of its ``size`` (the operations in sequence) and
    ``condition``.
    """
    return Rule("closed_form", rounding(size, condition), scale, atol=CLOSED_FORM_ATOL)


def solve(
    rtol: float | str = SOLVE_RTOL, *, scale: str | float = "field", size: float = 1.0
) -> Rule:
    """A cvxpy (or other optimizer's) result, within a solve's accuracy.

    Within ``rtol``, relative to its field, as a solve is accurate; or, ``rtol`` naming
    a sibling field that holds each side's
    certified relative gap, within the sum of the two plus the rounding of a problem of
    ``size`` operations.
    """
    return Rule("solve", rtol, scale, rounding=rounding(size))


def monte_carlo(stderr: str, *, z: float = MC_Z, same_draws: float | None = None) -> Rule:
    """A Monte Carlo estimate whose standard error is in the sibling field ``stderr``.

    ``same_draws``: its relative tolerance (a :func:`rounding`) when the two records
    were drawn from the same bits; None when the estimate also depends on something
    that is not reproduced to rounding (a solve, a factorization that is not unique).
    """
    return Rule("monte_carlo", z, stderr=stderr, rounding=same_draws or 0.0)


def spread(rtol: float, *, draws: str | None = None, same_draws: float | None = None) -> Rule:
    """A standard error or RMS estimated from Monte Carlo draws.

    Relative ``rtol``, or ``rtol/√n`` with n in the sibling field ``draws``;
    ``same_draws`` as in :func:`monte_carlo`.

    A standard error estimated from n draws has a relative standard deviation of
    about c/√n, c = √((κ − 1)/4) for draws of kurtosis κ; the estimators of the conv
    figures measure c = 0.5 to 1.25 (20 seeds per N in ``mc_error_vs_n``). Two
    independent estimates then agree within MC_Z·√2·c/√n, the ``rtol`` of a figure.
    """
    return Rule("spread", rtol, draws=draws, rounding=same_draws or 0.0)


def trajectory(rtol: float, *, scale: str | float = "value") -> Rule:
    """A value of an SGD run (or computed from one): relative ``rtol``."""
    return Rule("trajectory", rtol, scale)


# ----------------------------------------------------------------------------- report


@dataclass(frozen=True)
class KindCheck:
    """One row of a figure's table: the values compared under one kind and tolerance.

    Attributes
    ----------
    kind, tolerance : str
        The kind of the rules and the tolerance as printed (``Rule.label()``).
    n_values : int
        Numbers (or strings, bools) compared.
    worst : float
        The largest deviation (the one nearest its tolerance): relative, or z for a
        ``monte_carlo`` row compared by z-score; for ``exact`` and ``record`` 0 when
        all are equal and ``inf`` otherwise.
    worst_field : str or None
        The path of the value where it occurs.
    failures : tuple of str
        One line per value outside its tolerance: path, both values, deviation.
    notes : tuple of str
        ``record``: one line per value that differs (shown, not a failure).
    """

    kind: str
    tolerance: str
    n_values: int
    worst: float
    worst_field: str | None
    failures: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class FigureCheck:
    """A figure's stored record against its regeneration.

    Attributes
    ----------
    name : str
        The figure.
    path : str
        The stored JSON.
    seed : int
        The seed of the stored record, used for the regeneration.
    quick : bool
        Its mode, likewise.
    rows : tuple of KindCheck
        One per kind and tolerance.
    disagreements : tuple of str
        Fields present in one record only, or of different structure.
    stored_environment : dict or None
        The environment recorded in the JSON (None in a record that predates it).
    environment_changes : tuple of str
        How the environment of the regeneration differs from the stored one: the
        first place to look when values disagree.
    seconds : float
        Time taken by the regeneration.
    """

    name: str
    path: str
    seed: int
    quick: bool
    rows: tuple[KindCheck, ...]
    disagreements: tuple[str, ...]
    stored_environment: dict | None
    environment_changes: tuple[str, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.disagreements and all(row.passed for row in self.rows)

    @property
    def n_values(self) -> int:
        return sum(row.n_values for row in self.rows)

    def to_text(self, *, max_failures: int = 10) -> str:
        """The figure's table: a row per kind, then the values that disagree."""
        return _figure_text(self, max_failures)


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check` found: one :class:`FigureCheck` per figure.

    Attributes
    ----------
    directory : str
        Where the stored records were read.
    figures : tuple of FigureCheck
        The figures, in the order checked.
    environment : dict
        The environment of the regeneration (as recorded in a figure's JSON).
    """

    directory: str
    figures: tuple[FigureCheck, ...]
    environment: dict

    @property
    def passed(self) -> bool:
        """True when every figure agrees with its stored record."""
        return all(f.passed for f in self.figures)

    def to_dict(self) -> dict:
        """The report as JSON-ready dicts, with each figure's and row's verdict."""
        out = asdict(self)
        out["passed"] = self.passed
        for fig, record in zip(self.figures, out["figures"]):
            record["passed"] = fig.passed
            for row, row_record in zip(fig.rows, record["rows"]):
                row_record["passed"] = row.passed
                row_record["worst"] = _finite_or_none(row.worst)
        return out

    def to_text(self, *, max_failures: int = 10) -> str:
        """The report as text: a table per figure and a summary line."""
        return "\n".join(
            [*(f.to_text(max_failures=max_failures) for f in self.figures), self.summary()]
        )

    def summary(self) -> str:
        """One line: whether the figures agree with the stored records."""
        failed = [f.name for f in self.figures if not f.passed]
        n_values = sum(f.n_values for f in self.figures)
        if not failed:
            return (
                f"PASS: all {len(self.figures)} figures agree with {self.directory} "
                f"({n_values} values compared)"
            )
        return (
            f"FAIL: {len(failed)} of {len(self.figures)} figures disagree with "
            f"{self.directory}: {', '.join(failed)}"
        )


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _format_worst(row: KindCheck) -> str:
    worst = row.worst
    if row.kind in ("exact", "record"):
        return "equal" if worst == 0 else "differs"
    if not math.isfinite(worst):
        return "differs"
    if worst == 0:
        return "0"
    z = row.kind == "monte_carlo" and row.tolerance.startswith("z")
    return f"z {worst:.2g}" if z else f"{worst:.1e}"


def _environment_changes(stored: dict | None, now: dict) -> tuple[str, ...]:
    """What differs between the environment of a stored record and this one."""
    if stored is None:
        return ("the stored record names no environment",)
    before = stored.get("packages", {})
    changed = [
        f"{k} {before.get(k)} -> {v}" for k, v in now["packages"].items() if before.get(k) != v
    ]
    for key in ("python", "platform", "machine"):
        if stored.get(key) != now[key]:
            changed.append(f"{key} {stored.get(key)} -> {now[key]}")
    if stored.get("blas") != now["blas"]:
        changed.append("blas")
    return tuple(changed)


def _figure_text(fig: FigureCheck, max_failures: int) -> str:
    mode = "quick" if fig.quick else "full"
    lines = [
        f"{fig.name} ({fig.path}, seed {fig.seed}, {mode}; regenerated in {fig.seconds:.1f} s)"
    ]
    if fig.environment_changes:
        lines.append(
            f"  environment differs from the stored one: {'; '.join(fig.environment_changes)}"
        )
    header = (
        f"  {'kind':<12} {'values':>7}  {'worst':>9}  {'tolerance':<30} {'result':<6}  worst at"
    )
    lines.append(header)
    for row in fig.rows:
        lines.append(
            f"  {row.kind:<12} {row.n_values:>7}  {_format_worst(row):>9}"
            f"  {row.tolerance:<30} {_verdict(row):<6}  "
            f"{row.worst_field or ''}".rstrip()
        )
    if fig.disagreements:
        lines.append(
            f"  {'structure':<12} {len(fig.disagreements):>7}  {'differs':>9}  "
            f"{'same fields':<30} FAIL"
        )
    problems = [*fig.disagreements, *(f for row in fig.rows for f in row.failures)]
    for line in problems[:max_failures]:
        lines.append(f"    {line}")
    if len(problems) > max_failures:
        lines.append(f"    ... and {len(problems) - max_failures} more")
    notes = [n for row in fig.rows for n in row.notes]
    for line in notes[:max_failures]:
        lines.append(f"    {line} (a record, not compared)")
    if len(notes) > max_failures:
        lines.append(f"    ... and {len(notes) - max_failures} more records that differ")
    return "\n".join(lines)


def _verdict(row: KindCheck) -> str:
    if row.kind == "record":
        return "SHOWN"
    return "PASS" if row.passed else "FAIL"


# ----------------------------------------------------------------------------- the walk


def _patterns(checks: Mapping[str, object]) -> list[tuple[tuple[str, ...], str, Rule]]:
    out = []
    for key, rule in checks.items():
        if not isinstance(rule, Rule):
            raise TypeError(f"the check of {key!r} must be a Rule, got {type(rule).__name__}")
        for path in key.split():
            out.append((tuple(path.split("/")), path, rule))
    return out


def _matching(patterns, path: tuple[str, ...]) -> list[tuple[str, Rule]]:
    return [
        (text, rule)
        for segs, text, rule in patterns
        if len(segs) == len(path) and all(s in ("*", p) for s, p in zip(segs, path))
    ]


def _match(patterns, path: tuple[str, ...]) -> tuple[str, Rule] | None:
    found = _matching(patterns, path)
    if len({rule for _, rule in found}) > 1:
        raise ValueError(f"field {'/'.join(path)} matches rules {', '.join(t for t, _ in found)}")
    return found[0] if found else None


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _children(old, new, path: tuple[str, ...], problems: list[str]):
    """The (key, old child, new child) of two dicts or two lists; None for two leaves.

    A line goes to ``problems`` for each key or length they do not share.
    """
    where = "/".join(path)
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() - new.keys()):
            problems.append(f"{'/'.join((*path, key))}: in the stored record only")
        for key in sorted(new.keys() - old.keys()):
            problems.append(f"{'/'.join((*path, key))}: in the regenerated record only")
        return [(key, old[key], new[key]) for key in sorted(old.keys() & new.keys())]
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            problems.append(f"{where}: {len(old)} values stored, {len(new)} regenerated")
            return []
        return [(str(i), a, b) for i, (a, b) in enumerate(zip(old, new))]
    if isinstance(old, (dict, list)) or isinstance(new, (dict, list)):
        problems.append(f"{where}: {_kind_of(old)} stored, {_kind_of(new)} regenerated")
        return []
    return None


def _leaves(old, new, path: tuple[str, ...], problems: list[str]):
    """(path, old, new) for each pair of leaves of two subtrees."""
    children = _children(old, new, path, problems)
    if children is None:
        yield "/".join(path), old, new
        return
    for key, a, b in children:
        yield from _leaves(a, b, (*path, key), problems)


_KINDS_OF: Mapping[type, str] = MappingProxyType({dict: "a mapping", list: "a list"})


def _kind_of(x: object) -> str:
    return _KINDS_OF.get(type(x), "a value")


def _numbers(x) -> list[float]:
    if isinstance(x, dict):
        return [v for value in x.values() for v in _numbers(value)]
    if isinstance(x, list):
        return [v for value in x for v in _numbers(value)]
    return [abs(float(x))] if _is_number(x) else []


def _sibling(parent: dict, name: str, n: int, side: str, where: str) -> list[float]:
    """The ``n`` numbers of sibling field ``name`` (one number is broadcast)."""
    if name not in parent:
        raise _Missing(f"{where}: its field {name!r} is not in the {side} record")
    values = _flat(parent[name])
    if len(values) == 1:
        return values * n
    if len(values) != n or not all(_is_number(v) for v in values):
        raise _Missing(
            f"{where}: field {name!r} does not hold one number per value in the {side} record"
        )
    return [float(v) for v in values]


class _Missing(Exception):
    """A sibling field a rule needs is absent or misshapen: a disagreement."""


def _flat(x) -> list:
    if isinstance(x, dict):
        return [v for value in x.values() for v in _flat(value)]
    if isinstance(x, list):
        return [v for value in x for v in _flat(value)]
    return [x]


def _same(a, b) -> bool:
    if _is_number(a) and _is_number(b):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


@dataclass
class _Tally:
    """The running worst of one (kind, tolerance) row, and its failures."""

    n_values: int = 0
    worst: float = 0.0
    worst_ratio: float = 0.0
    worst_field: str | None = None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self, path: str, deviation: float, tolerance: float, failure: str, *, record: bool
    ) -> None:
        self.n_values += 1
        ratio = deviation / tolerance if tolerance > 0 else (0.0 if deviation == 0 else math.inf)
        if ratio > self.worst_ratio:
            self.worst_ratio, self.worst, self.worst_field = ratio, deviation, path
        if ratio > 1:
            (self.notes if record else self.failures).append(failure)


def _deviations(rule: Rule, pairs, scale_old: float, tol: list[float], se_old, se_new):
    """(deviation, tolerance) of each (path, old, new) under ``rule``.

    ``se_old`` is None for a monte_carlo rule compared to rounding (the same draws).
    """
    for i, (_path, a, b) in enumerate(pairs):
        if rule.kind in ("exact", "record") or not (_is_number(a) and _is_number(b)):
            yield (0.0 if _same(a, b) else math.inf), 1.0
            continue
        a, b = float(a), float(b)
        if a == b or (math.isnan(a) and math.isnan(b)):
            yield 0.0, tol[i]
            continue
        diff = abs(a - b)
        if math.isnan(diff):
            yield math.inf, tol[i]
        elif se_old is not None:  # monte_carlo: z, with the rounding of an exact value
            se = math.hypot(se_old[i], se_new[i]) + rule.rounding * abs(a) / tol[i]
            yield (diff / se if se > 0 else math.inf), tol[i]
        else:
            scale = (
                abs(a)
                if rule.scale == "value"
                else (scale_old if rule.scale == "field" else float(rule.scale))
            )
            # |Δ| ≤ tol·scale + atol, as a relative deviation: Δ / (scale + atol/tol)
            denominator = scale + (rule.atol / tol[i] if tol[i] > 0 else 0.0)
            yield (diff / denominator if denominator > 0 else math.inf), tol[i]


def _tolerances(rule: Rule, n: int, parents, where: str):
    """Each value's tolerance under ``rule``, and the standard errors of a monte_carlo rule.

    The standard errors are None for other rules.
    """
    if rule.kind == "monte_carlo" and rule.stderr is not None:  # it always names one
        se_old = _sibling(parents[0], rule.stderr, n, "stored", where)
        se_new = _sibling(parents[1], rule.stderr, n, "regenerated", where)
        return [float(rule.tolerance)] * n, se_old, se_new
    if rule.draws:
        n_draws = _sibling(parents[0], rule.draws, n, "stored", where)
        return [float(rule.tolerance) / math.sqrt(max(k, 1.0)) for k in n_draws], None, None
    if isinstance(rule.tolerance, str):  # each side's certified accuracy, plus rounding
        acc_old = _sibling(parents[0], rule.tolerance, n, "stored", where)
        acc_new = _sibling(parents[1], rule.tolerance, n, "regenerated", where)
        return [x + y + rule.rounding for x, y in zip(acc_old, acc_new)], None, None
    return [float(rule.tolerance)] * n, None, None


def _compare_field(rule: Rule, old, new, path, parents, tallies, problems, same_draws) -> None:
    where = "/".join(path)
    pairs = list(_leaves(old, new, path, problems))
    if not pairs:
        return
    key = (rule.kind, rule.label(same_draws=same_draws))
    if same_draws and rule.rounding and rule.kind in ("monte_carlo", "spread"):
        # the same draws: the two estimates are one computation, rounded twice
        rule = Rule("spread", rule.rounding)
    try:
        tol, se_old, se_new = _tolerances(rule, len(pairs), parents, where)
    except _Missing as exc:
        problems.append(str(exc))
        return
    if rule.kind not in ("exact", "record") and any(not t > 0 for t in tol):
        # never a zero tolerance on a float: a sibling accuracy that is negative or NaN
        problems.append(f"{where}: a tolerance of {min(tol)!r} read from the data")
        return
    scale_old = max(_numbers(old), default=0.0)
    tally = tallies.setdefault(key, _Tally())
    record = rule.kind == "record"
    for (p, a, b), (dev, t) in zip(pairs, _deviations(rule, pairs, scale_old, tol, se_old, se_new)):
        shown = "z" if se_old is not None else "rel"
        message = f"{p}: stored {a!r}, regenerated {b!r}" + (
            ""
            if rule.kind in ("exact", "record") or not math.isfinite(dev)
            else f" ({shown} {dev:.2g} > {t:.2g})"
        )
        tally.add(p, dev, t, message, record=record)


def _walk(patterns, old, new, path, parents, tallies, problems, figure, same_draws) -> None:
    matched = _match(patterns, path) if path else None
    if matched is not None:
        _compare_field(matched[1], old, new, path, parents, tallies, problems, same_draws)
        return
    children = _children(old, new, path, problems)
    if children is None:
        raise ValueError(
            f"figure {figure!r} has no check for field {'/'.join(path)!r}: add a rule to its "
            "FigureSpec.checks (regtheory.figures._check)"
        )
    for key, a, b in children:
        _walk(patterns, a, b, (*path, key), (old, new), tallies, problems, figure, same_draws)


def compare_data(
    name: str, stored: dict, regenerated: dict, *, same_draws: bool = False
) -> tuple[tuple[KindCheck, ...], tuple[str, ...]]:
    """The rows and structural disagreements of two data dicts of figure ``name``.

    ``same_draws``: the two were drawn from the same bits (the same NumPy).
    """
    patterns = _patterns(spec_of(name).checks)
    tallies: dict[tuple[str, str], _Tally] = {}
    problems: list[str] = []
    _walk(patterns, stored, regenerated, (), (None, None), tallies, problems, name, same_draws)
    order = {k: i for i, k in enumerate(KINDS)}
    rows = tuple(
        KindCheck(
            kind, label, t.n_values, t.worst, t.worst_field, tuple(t.failures), tuple(t.notes)
        )
        for (kind, label), t in sorted(tallies.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))
    )
    return rows, tuple(problems)


def schema_gaps(name: str, data: dict) -> tuple[list[str], list[str]]:
    """What the rules of figure ``name`` miss in ``data``.

    The leaves that no rule names, and the rule paths that name nothing (stale). Both
    empty when complete.
    """
    patterns = _patterns(spec_of(name).checks)
    unchecked: list[str] = []
    used: set[str] = set()

    def walk(x, path):
        if path and _match(patterns, path) is not None:
            used.update(text for text, _ in _matching(patterns, path))
        elif isinstance(x, dict):
            for key, value in x.items():
                walk(value, (*path, key))
        elif isinstance(x, list):
            for i, value in enumerate(x):
                walk(value, (*path, str(i)))
        else:
            unchecked.append("/".join(path))

    walk(data, ())
    return unchecked, [t for _, t, _ in patterns if t not in used]


# ----------------------------------------------------------------------------- check


def _load(directory: Path, name: str) -> dict:
    path = directory / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no stored record of figure {name!r}: {path} does not exist "
            "(regtheory figures writes it)"
        )
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameterError(f"cannot read {path}: {exc}") from None
    if not isinstance(record, dict) or not {"figure", "seed", "quick", "data"} <= record.keys():
        raise InvalidParameterError(
            f"{path} is not a figure record (it needs figure, seed, quick, data)"
        )
    if record["figure"] != name:
        raise InvalidParameterError(f"{path} holds figure {record['figure']!r}, not {name!r}")
    if isinstance(record["seed"], bool) or not isinstance(record["seed"], int):
        raise InvalidParameterError(f"{path}: seed must be an integer, got {record['seed']!r}")
    if not isinstance(record["quick"], bool):
        raise InvalidParameterError(f"{path}: quick must be true or false, got {record['quick']!r}")
    return record


def check(
    *,
    directory: str | os.PathLike[str] = "figures",
    names: Iterable[str] | None = None,
    quick: bool | None = None,
    sweep: Sweep | None = None,
    on_figure: Callable[[FigureCheck], None] | None = None,
) -> CheckReport:
    """Regenerate stored figures and compare each with its record, field by field.

    Each ``NAME.json`` in ``directory`` is recomputed with the seed and the mode
    (quick or full) it records, and every field of its data is compared with the
    regenerated one by the rule its figure declares: exactly, to rounding, to a
    solve's accuracy, by the z-score of two Monte Carlo estimates, or to a stated
    relative tolerance (module docstring of :mod:`regtheory.figures._check`).

    Parameters
    ----------
    directory : str or path-like
        Where the records are (default ``figures``).
    names : iterable of str, optional
        The figures to check; every registered figure by default. Each must have
        its ``NAME.json`` in ``directory``.
    quick : bool, optional
        ``True`` (``False``) refuses a record made in full (quick) mode, so a smoke
        check never starts a full regeneration; ``None`` takes each record's mode.
    sweep : regtheory.sweep.Sweep, optional
        Where the figures' grids run (serially when ``None``); the data do not
        depend on it.
    on_figure : callable, optional
        Called with each :class:`FigureCheck` as soon as it is done (progress).

    Returns
    -------
    CheckReport
        One :class:`FigureCheck` per figure, with a table row per kind of field;
        ``report.passed`` says whether all agree.

    Raises
    ------
    ValueError
        An unknown figure, a directory that is not one, a record that cannot be
        read or is in the mode ``quick`` refuses, or a field of a figure's data
        that its schema gives no rule (an error of the figure's ``checks``).
    FileNotFoundError
        A figure's ``NAME.json`` is missing.

    Examples
    --------
    >>> import tempfile
    >>> from regtheory.figures import render
    >>> with tempfile.TemporaryDirectory() as out:
    ...     _ = render("conv_matrix_seed", out, quick=True)
    ...     report = check(directory=out, names=["conv_matrix_seed"])
    >>> report.passed, [row.kind for row in report.figures[0].rows]
    (True, ['exact', 'closed_form'])
    """
    path, names = _check_arguments(directory, names, quick, sweep)
    records = _load_all(path, names, quick)
    now = environment()
    figures = []
    for name, record in records.items():
        result = _check_figure(path, name, record, sweep, now)
        if on_figure is not None:
            on_figure(result)
        figures.append(result)
    return CheckReport(str(path), tuple(figures), now)


def _check_arguments(
    directory: object, names: object, quick: object, sweep: object
) -> tuple[Path, list[str]]:
    """The checked directory and figure names of :func:`check`, refused at the boundary."""
    if isinstance(directory, bool) or not isinstance(directory, (str, Path)):
        raise InvalidParameterError(f"`directory` must be a path, got {type(directory).__name__}")
    if isinstance(names, str):
        raise InvalidParameterError(
            f"`names` must be a list of figure names, not the string {names!r}"
        )
    if names is not None and not isinstance(names, Iterable):
        raise InvalidParameterError(
            f"`names` must be a list of figure names, got {type(names).__name__}"
        )
    names = list(REGISTRY) if names is None else list(names)
    for name in names:
        if not isinstance(name, str):
            raise InvalidParameterError(
                f"`names` must hold figure names (str), got {type(name).__name__}"
            )
        spec_of(name)  # unknown: ValueError with the valid names
    if not names:
        raise InvalidParameterError("`names` is empty: name at least one figure")
    if quick is not None and not isinstance(quick, bool):
        raise InvalidParameterError(f"`quick` must be True, False or None, got {quick!r}")
    if sweep is not None and not isinstance(sweep, Sweep):
        raise InvalidParameterError(
            f"`sweep` must be a regtheory.sweep.Sweep, got {type(sweep).__name__}"
        )
    path = Path(directory)
    if not path.is_dir():
        raise InvalidParameterError(f"`directory` {str(path)!r} is not a directory")
    return path, names


def _load_all(directory: Path, names: list[str], quick: bool | None) -> dict[str, dict]:
    """Every record, read before any is regenerated: a missing one fails at once."""
    records = {name: _load(directory, name) for name in names}
    for name, record in records.items():
        if quick is not None and record["quick"] != quick:
            made = "quick" if record["quick"] else "full"
            raise InvalidParameterError(
                f"{directory / name}.json is a {made} run; quick={quick} checks "
                f"only {'quick' if quick else 'full'} runs"
            )
    return records


def _check_figure(
    directory: Path, name: str, record: dict, sweep: Sweep | None, now: dict
) -> FigureCheck:
    """Regenerate one figure with its record's seed and mode and compare the two."""
    start = time.perf_counter()
    fresh = compute(
        name,
        quick=record["quick"],
        seed=record["seed"],
        sweep=sweep,
        solver=record.get("solver"),
    )
    seconds = time.perf_counter() - start
    # compared as stored: through JSON (tuples become lists, keys strings)
    regenerated = json.loads(json.dumps(fresh["data"]))
    stored_environment = record.get("environment")
    rows, problems = compare_data(
        name, record["data"], regenerated, same_draws=_same_draws(stored_environment, now)
    )
    return FigureCheck(
        name,
        str(directory / f"{name}.json"),
        record["seed"],
        record["quick"],
        rows,
        problems,
        stored_environment,
        _environment_changes(stored_environment, now),
        seconds,
    )


def _same_draws(stored: dict | None, now: dict) -> bool:
    """Whether the stored record's random draws were the same bits as this one's.

    NumPy's generators give the same bits on every machine, but a NumPy release may
    change a distribution's algorithm: the same draws need the same NumPy.
    """
    if not isinstance(stored, dict) or not isinstance(stored.get("packages"), dict):
        return False
    numpy_version = stored["packages"].get("numpy")
    return numpy_version is not None and numpy_version == now["packages"]["numpy"]
