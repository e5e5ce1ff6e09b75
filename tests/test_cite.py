"""Citing: the bibliography the package ships, and the references of results and figures.

The bibliography is read by the package's own parser; these tests check it against the
file's text (every ``@`` starts an entry, every key is found) and against hand-written
BibTeX, so that a parser that silently skips an entry cannot pass.
"""

import json
import re
from importlib.resources import files

import pytest

import regtheory
from regtheory import figures
from regtheory._references import bibliography, parse_bibtex, reference_key
from regtheory.cli import main

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


# ----------------------------------------------------------------------------- cite


def entry_keys(text: str) -> list[str]:
    return list(parse_bibtex(text))


def test_cite_prints_the_package_entry_with_this_version(capsys):
    assert main(["cite"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert entry_keys(out) == ["regtheory"]
    assert parse_bibtex(out)["regtheory"].fields["version"] == regtheory.__version__
    assert out == regtheory.cite()


def test_the_package_entry_names_the_commit_in_a_checkout_and_never_needs_git(monkeypatch):
    from regtheory import _cite

    monkeypatch.setattr(_cite, "_git_commit", lambda: "0" * 40)
    assert "git commit " + "0" * 40 in _cite.package_entry()
    monkeypatch.setattr(_cite, "_git_commit", lambda: None)
    assert "commit" not in _cite.package_entry()
    # no git program at all: the version alone, no error
    monkeypatch.undo()
    monkeypatch.setenv("PATH", "")
    assert _cite._git_commit() is None
    assert parse_bibtex(_cite.package_entry())["regtheory"].fields["version"]


def test_cite_figures_prints_their_papers_once_in_bibliography_order(capsys):
    argv = ["cite", "--figure", "fc_equalization", "--figure", "fc_spectrum"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    cited = {reference_key(r) for name in argv[2::2] for r in figures.REGISTRY[name].references}
    order = list(bibliography())
    assert entry_keys(out) == ["regtheory", *sorted(cited, key=order.index)]
    # the locators of the figures, on the comment line before the entry
    assert "% cited for: Thm 2.4; Thm 2.5\n@inproceedings{mianjy2018implicit," in out
    assert out == regtheory.cite("fc_equalization", "fc_spectrum")


def test_cite_all_parses_back_into_every_cited_key(capsys):
    assert main(["cite", "--all"]) == 0
    out = capsys.readouterr().out
    from regtheory._references import REFERENCES

    cited = {reference_key(r) for refs in REFERENCES.values() for r in refs}
    cited |= {reference_key(r) for spec in figures.REGISTRY.values() for r in spec.references}
    keys = entry_keys(out)
    assert len(keys) == len(set(keys))
    assert set(keys) == {"regtheory"} | cited
    for key in keys[1:]:  # each entry printed as the bibliography holds it
        assert bibliography()[key].text in out


@pytest.mark.parametrize(
    "argv", [["--figure", "fc_spectrun"], ["--figure", "fc_spectrum", "--figure", "x"]]
)
def test_cite_an_unknown_figure_exits_2_listing_the_valid_names(argv, capsys):
    assert main(["cite", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "unknown figure" in err
    assert all(name in err for name in figures.REGISTRY)


def test_cite_refuses_what_is_no_figure_result_or_function():
    with pytest.raises(regtheory.InvalidParameterError, match="valid names: border_penalty_map"):
        regtheory.cite("no_such_figure")
    with pytest.raises(regtheory.InvalidParameterError, match="things"):
        regtheory.cite(3.5)
