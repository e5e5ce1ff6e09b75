"""Citing: the bibliography the package ships, and the references of results and figures.

The bibliography is read by the package's own parser; these tests check it against the
file's text (every ``@`` starts an entry, every key is found) and against hand-written
BibTeX, so that a parser that silently skips an entry cannot pass.
"""

import json
import re
from importlib.resources import files

import pytest

from regtheory import figures
from regtheory._references import bibliography, parse_bibtex, reference_key

BIB_TEXT = files("regtheory").joinpath("references.bib").read_text(encoding="utf-8")


def test_the_bibliography_ships_inside_the_package():
    assert files("regtheory").joinpath("references.bib").is_file()


def test_every_entry_of_the_file_is_read():
    written = re.findall(r"^@\w+\{([^,\s]+),", BIB_TEXT, flags=re.MULTILINE)
    assert len(written) >= 20
    assert list(bibliography()) == written


@pytest.mark.parametrize("key", list(bibliography()))
def test_every_entry_has_a_title_a_year_and_its_authors(key):
    entry = bibliography()[key]
    assert entry.key == key and entry.text.startswith("@") and entry.text.endswith("}")
    assert entry.fields.get("title") and re.fullmatch(r"\d{4}", entry.fields.get("year", ""))
    # a blog post whose author the file does not record names where it was published
    assert entry.fields.get("author") or (
        entry.type == "misc" and entry.fields.get("howpublished")
    ), f"{key} names no author"
    # the entry's own text parses back to the same entry
    assert parse_bibtex(entry.text) == {key: entry}


def test_the_parser_reads_braces_quotes_and_bare_words():
    text = """% a comment line
@article{one,
  author = {Doe, J. and R{\\'e}my, A.},
  title  = "A {Title} with, a comma",
  year   = 2020,
  month  = nov
}
@misc{two, title = {Nested {braces {deep}}}, year = {1999},}
"""
    entries = parse_bibtex(text)
    assert list(entries) == ["one", "two"]
    assert dict(entries["one"].fields) == {
        "author": "Doe, J. and R{\\'e}my, A.",
        "title": "A {Title} with, a comma",
        "year": "2020",
        "month": "nov",
    }
    assert entries["two"].fields["title"] == "Nested {braces {deep}}"
    assert entries["two"].type == "misc"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("@article{a, title = {open}", "unbalanced braces in entry a"),
        ("@article{a, title = {x}, title = {y}}", "field title twice"),
        ("@article{a, title = {x}}\n@book{a, title = {y}}", "key a is written twice"),
        ("@article{a, title = {x} year = {1}}", "expected a comma after field title"),
    ],
)
def test_the_parser_names_what_it_cannot_read(text, message):
    with pytest.raises(ValueError, match=message):
        parse_bibtex(text)


# ----------------------------------------------------------------------------- figures

# A reference is a key, or a key, a comma and where in the paper: "Thm 2.5", "eq. (8)".
REFERENCE = re.compile(r"[a-z]+\d{4}[a-z]+(, (Thm|Def\.|Prop\.|Sec\.|eq\.) [\w.()]+)?")


def check_references(references, where):
    assert isinstance(references, tuple) and references, f"{where} cites no paper"
    for reference in references:
        assert REFERENCE.fullmatch(reference), f"{where}: malformed reference {reference!r}"
        assert reference_key(reference) in bibliography(), f"{where}: {reference!r} not in bib"
    assert len(set(references)) == len(references), f"{where} names a reference twice"


@pytest.mark.parametrize("name", sorted(figures.REGISTRY))
def test_every_registered_figure_cites_papers_of_the_bibliography(name):
    check_references(figures.REGISTRY[name].references, f"figure {name}")


def test_a_figure_without_references_is_caught():
    with pytest.raises(AssertionError, match="cites no paper"):
        check_references(figures.FigureSpec("x", "x", dict, dict).references, "figure x")


def test_a_figure_record_lists_its_references(tmp_path):
    record = figures.compute("conv_matrix_seed", quick=True)
    assert record["references"] == ["tds2019dropout", "srivastava2014dropout"]
    # and the JSON that render writes carries them (read back as JSON)
    assert json.loads(json.dumps(record))["references"] == record["references"]


def test_check_compares_data_not_references(tmp_path):
    # a record stored before figures named their references still checks
    record = figures.compute("conv_matrix_seed", quick=True)
    del record["references"]
    (tmp_path / "conv_matrix_seed.json").write_text(json.dumps(record))
    report = figures.check(directory=tmp_path, names=["conv_matrix_seed"])
    assert report.passed
