"""What a reproduction records: a paper's claim, its number, ours, and the verdict.

A reproduction figure sets a published result beside the package's computation of
it. Its data hold a list ``claims``, one :func:`claim` per published statement:

* ``paper`` -- the bibliography key (``regtheory/references.bib``);
* ``claim`` -- the statement, in this package's words and conventions;
* ``theirs`` -- the number or formula the paper reports, as text, or
  :data:`NOT_READ` when no copy of the paper that could be read here gave it (a
  number is never written from memory);
* ``where`` -- where ``theirs`` was read: section, table, figure, equation, page;
  :data:`NOT_READ` with ``theirs``;
* ``ours`` -- the package's number, and ``measure`` what it is (a relative gap, a
  ratio, an accuracy);
* ``verdict`` -- one of :data:`VERDICTS`, decided by :func:`verdict` from a test
  stated in the figure's code, and ``reason`` -- why, in one sentence.

"Reproduced" means our number meets the paper's (or, for an identity, agrees with
it to the stated tolerance); "reproduced in shape" that the paper's qualitative
claim holds on a stand-in for data or settings that could not be had or read, so
digits are not compared; "not reproduced" that the test failed, reported as such.

:func:`reproductions_table` writes the table of every reproduction from the stored
records; the documentation's page "Reproductions" is that table.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..._validation import InvalidParameterError

if TYPE_CHECKING:  # matplotlib is imported by the plot functions, when they draw
    from matplotlib.figure import Figure

__all__ = ["NOT_READ", "VERDICTS", "claim", "draw_claims", "reproductions_table", "verdict"]

#: What ``theirs`` and ``where`` say when the paper's number could not be read here.
NOT_READ = "not read"
#: The three verdicts, strongest first.
VERDICTS = ("reproduced", "reproduced in shape", "not reproduced")

# the stored records whose data hold ``claims``: the reproduction figures
_FIELDS = ("paper", "claim", "theirs", "where", "ours", "measure", "verdict", "reason")


def verdict(holds: bool, *, in_shape: bool = False) -> str:
    """The verdict of a claim whose test ``holds`` (or not).

    Parameters
    ----------
    holds : bool
        Whether the figure's stated test of the claim passed.
    in_shape : bool
        The test compares the shape of a result (on a stand-in, or against a number not
        read), not digits: a passed test is "reproduced in shape".

    Returns
    -------
    str
        One of :data:`VERDICTS`.
    """
    if not holds:
        return "not reproduced"
    return "reproduced in shape" if in_shape else "reproduced"


def claim(
    *,
    paper: str,
    claim: str,
    theirs: str,
    where: str,
    ours: float,
    measure: str,
    verdict: str,
    reason: str,
) -> dict:
    """One claim of a reproduction figure's data, checked for completeness.

    Parameters
    ----------
    paper : str
        Bibliography key of the paper.
    claim : str
        The paper's statement, in the package's words.
    theirs : str
        The paper's number or formula as text, or :data:`NOT_READ`.
    where : str
        Where it was read (section, table or figure, page), or :data:`NOT_READ`.
    ours : float
        The package's number, finite.
    measure : str
        What ``ours`` is.
    verdict : str
        One of :data:`VERDICTS` (from :func:`verdict`).
    reason : str
        Why the verdict is what it is, one sentence.

    Returns
    -------
    dict
        The fields in the order of the table.

    Raises
    ------
    InvalidParameterError
        If a text is empty, ``ours`` is not finite, ``verdict`` is not one of
        :data:`VERDICTS`, or exactly one of ``theirs`` and ``where`` is :data:`NOT_READ`.
    """
    texts = {"paper": paper, "claim": claim, "theirs": theirs, "where": where}
    texts |= {"measure": measure, "reason": reason}
    for name, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise InvalidParameterError(f"`{name}` must be a non-empty string, got {text!r}")
    if verdict not in VERDICTS:
        raise InvalidParameterError(f"`verdict` must be one of {VERDICTS}, got {verdict!r}")
    if (theirs == NOT_READ) != (where == NOT_READ):
        raise InvalidParameterError(
            f"a number read must say where it was read: theirs={theirs!r}, where={where!r}"
        )
    ours = float(ours)
    if not math.isfinite(ours):
        raise InvalidParameterError(f"`ours` must be finite, got {ours!r}")
    values = {**texts, "ours": ours, "verdict": verdict}
    return {name: values[name] for name in _FIELDS}


# points of the footer's text, and the characters of that size a line holds per inch
_FOOTER_POINTS = 7.0
_CHARS_PER_INCH = 17


def draw_claims(fig: Figure, claims: list[dict]) -> Figure:
    """Add a footer to a reproduction's figure: each claim, the paper's number and ours.

    The figure grows by the footer's height and its panels keep theirs (the constrained
    layout is confined above the footer).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure drawn with the constrained layout.
    claims : list of dict
        The ``claims`` of the figure's data (:func:`claim`).

    Returns
    -------
    matplotlib.figure.Figure
        ``fig``, with the footer.

    Raises
    ------
    InvalidParameterError
        If ``fig`` does not use the constrained layout.
    """
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    engine = fig.get_layout_engine()
    if not isinstance(engine, ConstrainedLayoutEngine):
        raise InvalidParameterError("draw_claims needs a figure with the constrained layout")
    width = int(fig.get_figwidth() * _CHARS_PER_INCH)
    lines: list[str] = []
    for c in claims:
        theirs = "not read" if c["where"] == NOT_READ else f"{c['theirs']} [{c['where']}]"
        text = (
            f"{c['verdict'].upper()}: {c['claim'].rstrip('.')}.  Paper: {theirs}.  "
            f"Ours: {c['ours']:.3g} ({c['measure']})."
        )
        lines += textwrap.wrap(text, width, subsequent_indent="    ")
    height = fig.get_figheight()
    footer = (len(lines) * 1.3 * _FOOTER_POINTS + 8) / 72  # inches
    fig.set_figheight(height + footer)
    share = footer / (height + footer)
    engine.set(rect=(0, share, 1, 1 - share))
    fig.text(0.005, share, "\n".join(lines), va="top", ha="left", fontsize=_FOOTER_POINTS,
             linespacing=1.3)  # fmt: skip
    return fig


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(records: Iterable[Mapping]) -> list[str]:
    rows = []
    for record in records:
        for c in record["data"]["claims"]:
            ours = f"{c['ours']:.3g} ({c['measure']})"
            cells = (
                f"`{record['figure']}`",
                f"[{c['paper']}]",
                c["claim"],
                c["theirs"] if c["where"] == NOT_READ else f"{c['theirs']}; *read in* {c['where']}",
                ours,
                f"**{c['verdict']}**: {c['reason']}",
            )
            rows.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return rows


def reproductions_table(directory: str | Path, names: Iterable[str]) -> str:
    """The Markdown table of the reproductions stored in ``directory``.

    Parameters
    ----------
    directory : str or path
        Where the figures' ``NAME.json`` records are (``figures/``).
    names : iterable of str
        The reproduction figures, in the table's order.

    Returns
    -------
    str
        A header and one row per claim: figure, paper, claim, their number (with where
        it was read), ours (with what it measures) and the verdict with its reason.

    Raises
    ------
    InvalidParameterError
        If a record is missing or holds no ``claims``.
    """
    records = []
    for name in names:
        path = Path(directory) / f"{name}.json"
        if not path.is_file():
            raise InvalidParameterError(f"no stored record {path}; run `regtheory figures`")
        record = json.loads(path.read_text())
        if "claims" not in record.get("data", {}):
            raise InvalidParameterError(f"{path} is not a reproduction: its data hold no claims")
        records.append(record)
    header = "| figure | paper | claim | their number | ours | verdict |\n|---|---|---|---|---|---|"
    return "\n".join([header, *_rows(records)]) + "\n"
