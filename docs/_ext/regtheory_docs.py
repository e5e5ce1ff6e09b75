"""Sphinx glue for regtheory's site: formula numbers of the theory page become links.

docs/THEORY.md numbers its displayed formulas with ``\\tag{k}``; the docstrings cite them
as "formula (k)" (also "formulas (1)–(2)", "THEORY (2)", "formula (7)").  This extension

* gives the display carrying ``\\tag{k}`` in THEORY.md the anchor ``formula-k`` and
  registers it as a cross-reference label, so ``:ref:`formula-k``` resolves anywhere;
* turns the docstrings' plain numbered references (``[1] A. Author, Title, 2018.`` under a
  ``References`` heading, cited as "[1]" in the text) into numpydoc's footnotes
  (``.. [1]``, cited as ``[1]_``), so numpydoc links each citation to its entry;
* rewrites each such formula citation in a docstring (after numpydoc has parsed it) into a
  ``:ref:`` to that label, outside inline literals and directive blocks, so a reader of an
  API page reaches the formula in one click.  A number with no formula behind it is a
  broken reference, which ``sphinx-build -W`` turns into an error.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

THEORY_DOC = "THEORY"
TAG = re.compile(r"\\tag\{(\d+)\}")
# "formula (1)", "formulas (1)–(2)", "formulas (5) and (6)", "THEORY (2)", "formula (4) with"
CITATION = re.compile(
    r"(?P<lead>\b(?:[Ff]ormulas?|THEORY(?:\.md)?)\s+)"
    r"(?P<nums>\(\d+\)(?:\s*(?:–|-|,|and|or|/)\s*\(\d+\))*)"
)
NUMBER = re.compile(r"\((\d+)\)")
LITERAL = re.compile(r"``.*?``")


def label(k: str) -> str:
    return f"formula-{k}"


def anchor_formulas(app: Sphinx, doctree: nodes.document) -> None:
    """Give each tagged display of the theory page the id and label ``formula-k``."""
    env = app.env
    if env.docname != THEORY_DOC:
        return
    std = env.domains.standard_domain
    for node in list(doctree.findall(nodes.math_block)):
        for k in TAG.findall(node.astext()):
            name = label(k)
            # a target just before the display: the anchor a link to formula (k) lands on
            node.parent.insert(node.parent.index(node), nodes.target("", "", ids=[name]))
            std.note_hyperlink_target(name, env.docname, name, f"formula ({k})")


def _link_numbers(match: re.Match[str]) -> str:
    nums = NUMBER.sub(lambda m: rf"\ :ref:`({m[1]}) <{label(m[1])}>`\ ", match["nums"])
    return match["lead"] + nums


def _rewrite(line: str) -> str:
    # leave inline literals alone: split on them and rewrite only the prose between
    pieces, last = [], 0
    for lit in LITERAL.finditer(line):
        pieces.append(CITATION.sub(_link_numbers, line[last : lit.start()]))
        pieces.append(lit.group())
        last = lit.end()
    pieces.append(CITATION.sub(_link_numbers, line[last:]))
    return "".join(pieces)


def link_citations(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Rewrite "formula (k)" in a docstring into a reference to the theory page."""
    block_indent: int | None = None  # inside a directive body (math, code): no rewriting
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if block_indent is not None:
            if stripped and indent <= block_indent:
                block_indent = None
            else:
                continue
        if stripped.startswith(".. ") and "::" in stripped or stripped.endswith("::"):
            block_indent = indent
            continue
        if stripped.startswith((">>>", "...")):
            continue
        lines[i] = _rewrite(line)


# the parts of MathJax's es5 build the pages use: the TeX-to-HTML bundle, its web fonts,
# and the TeX extensions it may load on demand (\\boldsymbol, \\cancel, ...)
MATHJAX_PARTS = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions")


def vendor_mathjax(app: Sphinx) -> None:
    """Copy MathJax into the build, so the site typesets math with no network."""
    if app.builder.format != "html":
        return
    src = Path(app.config.regtheory_mathjax_es5)
    staged = Path(app.outdir).parent / "_mathjax"
    dest = staged / "mathjax"
    if not (dest / "tex-chtml.js").exists():
        for part in MATHJAX_PARTS:
            if (src / part).is_dir():
                shutil.copytree(src / part, dest / part, dirs_exist_ok=True)
            else:
                (dest / part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / part, dest / part)
    if str(staged) not in app.config.html_static_path:
        app.config.html_static_path.append(str(staged))


REF_ENTRY = re.compile(r"^(\s*)\[(\d+)\] ")
IN_TEXT_REF = re.compile(r"(?<![\w\])\[`_])\[(\d+)\](?![_(\[:\w])")


def number_references(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Make "[k] entry" under References a footnote and each "[k]" in the prose cite it."""
    try:
        start = next(
            i
            for i in range(len(lines) - 1)
            if lines[i].strip() == "References" and set(lines[i + 1].strip()) == {"-"}
        )
    except StopIteration:
        return
    if what == "module":
        # a module's sections would become sections of its API page, as high as its title
        lines[start : start + 2] = [".. rubric:: References", ""]
    end = start + 2
    while end < len(lines) and not (
        end + 1 < len(lines) and lines[end + 1].strip() and set(lines[end + 1].strip()) == {"-"}
    ):
        end += 1
    entries = [i for i in range(start + 2, end) if REF_ENTRY.match(lines[i])]
    rest = "\n".join(lines[start + 2 : end])
    if not entries or len(re.findall(r"\[\d+\] ", rest)) != len(entries):
        return  # references run together in one paragraph: leave them as prose
    if what == "module":
        # numpydoc does not cite a module's references for Sphinx: a list, not footnotes
        for i in entries:
            lines[i] = REF_ENTRY.sub(lambda m: f"{m[1]}| [{m[2]}] ", lines[i])
            j = i + 1
            while j < end and lines[j].strip() and not REF_ENTRY.match(lines[j]):
                lines[j] = "  " + lines[j]
                j += 1
        return
    labels = set()
    for i in entries:
        m = REF_ENTRY.match(lines[i])
        assert m is not None
        labels.add(m[2])
        # "P. Mianjy, ..." would open an enumerated list (P., Q., ...): escape the initial
        text = re.sub(r"^([A-Z])\. ", r"\\\1. ", lines[i][m.end() :])
        lines[i] = f"{m[1]}.. [{m[2]}] " + text

    def cite(match: re.Match[str]) -> str:
        return f"[{match[1]}]_" if match[1] in labels else match.group()

    for i, line in enumerate(lines):
        if start <= i < end or line.lstrip().startswith((">>>", "...")):
            continue
        pieces, last = [], 0
        for lit in LITERAL.finditer(line):
            pieces += [IN_TEXT_REF.sub(cite, line[last : lit.start()]), lit.group()]
            last = lit.end()
        pieces.append(IN_TEXT_REF.sub(cite, line[last:]))
        lines[i] = "".join(pieces)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("regtheory_mathjax_es5", "", "html", types=frozenset({str}))
    app.connect("builder-inited", vendor_mathjax)
    app.connect("doctree-read", anchor_formulas)
    # before numpydoc (priority 500) parses the sections
    app.connect("autodoc-process-docstring", number_references, priority=400)
    # after numpydoc has turned the sections into reST
    app.connect("autodoc-process-docstring", link_citations, priority=600)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
