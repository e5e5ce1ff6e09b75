"""Citing: the bibliography the package ships, and the references of results and figures.

The bibliography is read by the package's own parser; these tests check it against the
file's text (every ``@`` starts an entry, every key is found) and against hand-written
BibTeX, so that a parser that silently skips an entry cannot pass. Every key a figure, a
function or a result cites must be in it; a result must cite what the function that
returned it declares; ``regtheory cite`` must print entries that parse back to the keys.
"""

import dataclasses
import inspect
import json
import pickle
import re
import warnings
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from _public_api import PUBLIC_MODULES

import regtheory
from regtheory import Penalty, conv, fc, figures, glm, implied, network
from regtheory._references import (
    REFERENCES,
    Cited,
    bibliography,
    parse_bibtex,
    reference_key,
    references_of,
)
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
    with pytest.raises(regtheory.InvalidParameterError, match="valid names: .*border_penalty_map"):
        regtheory.cite("no_such_figure")
    with pytest.raises(regtheory.InvalidParameterError, match="things"):
        regtheory.cite(3.5)


def test_cite_a_function_and_its_result_alike():
    M = np.diag([3.0, 1.0])
    by_function = regtheory.cite(fc.induced_regularizer)
    assert entry_keys(by_function) == ["regtheory", "mianjy2018implicit"]
    penalty = fc.dropout_penalty(np.eye(2), M, 0.5)
    assert regtheory.cite(penalty) == regtheory.cite(fc.dropout_penalty)


# ----------------------------------------------------------------------------- results


def _subclasses(cls):
    return {cls} | {c for sub in cls.__subclasses__() for c in _subclasses(sub)}


CITED_TYPES = {cls.__name__ for cls in (Penalty, *_subclasses(Cited))}


def result_functions():
    """Each public function whose declared return is a result that names its papers."""
    found = {}
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            fn = getattr(module, name)
            returns = str(getattr(fn, "__annotations__", {}).get("return", ""))
            if inspect.isfunction(fn) and re.sub(r"\W.*", "", returns) in CITED_TYPES:
                found[f"{module.__name__}.{name}"] = fn
    return found


RESULT_FUNCTIONS = result_functions()
# the former names kept for a deprecation period: they return what the new one returns
DEPRECATED = {f"regtheory.{m}.dropout_penalty_mc" for m in ("fc", "conv", "network")}
FORWARDS = {
    "regtheory.fc._penalty.dropout_penalty_mc": fc.dropout_penalty,
    "regtheory.conv._penalty.dropout_penalty_mc": conv.dropout_penalty,
    "regtheory.network._penalty.dropout_penalty_mc": network.dropout_penalty,
}


def test_the_result_functions_are_found():
    assert len(RESULT_FUNCTIONS) >= 30
    assert DEPRECATED <= set(RESULT_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(set(RESULT_FUNCTIONS) - DEPRECATED))
def test_every_function_returning_a_result_declares_its_references(name):
    check_references(references_of(RESULT_FUNCTIONS[name]), name)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_every_declared_reference_is_in_the_bibliography(name):
    check_references(REFERENCES[name], name)


def test_decorated_functions_keep_their_name_signature_and_docstring():
    fn = fc.global_optimum
    assert fn.__name__ == "global_optimum" and fn.__module__ == "regtheory.fc._optimum"
    assert "formula (3)" in fn.__doc__
    assert list(inspect.signature(fn).parameters) == ["T", "keep", "width", "cov"]
    assert references_of(fn) == ("mianjy2018implicit, Thm 2.5", "cavazza2018dropout, Thm 3")


def _valid_calls():
    from test_api_walk import VALID

    return {
        f"{fn.__module__}.{fn.__qualname__}": (fn, kwargs)
        for fn, kwargs in VALID.items()
        if fn in RESULT_FUNCTIONS.values()
    }


VALID_CALLS = _valid_calls()


@pytest.mark.parametrize("name", sorted(VALID_CALLS))
def test_a_result_cites_what_its_function_declares(name):
    fn, kwargs = VALID_CALLS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the former names
        result = fn(**kwargs)
    assert isinstance(result, (Penalty, Cited))
    # a former name returns what its new name computes, with the new name's references
    expected = references_of(FORWARDS.get(name, fn))
    assert result.references == expected and result.references


def test_the_same_penalty_type_cites_the_function_that_made_it():
    rng = np.random.default_rng(0)
    U, V, X = rng.normal(size=(2, 3)), rng.normal(size=(4, 3)), rng.normal(size=(10, 4))
    by_fc = fc.dropout_penalty(U, V, 0.5)
    by_glm = glm.quadratic_penalty(V[:, 0], X, 0.5, family="logistic")
    assert by_fc.references == ("mianjy2018implicit",)
    assert by_glm.references == ("wager2013dropout, eq. (8)",)


def test_references_change_neither_value_nor_equality_nor_pickling():
    p = fc.dropout_penalty(np.eye(2), np.eye(2), 0.5)
    bare = Penalty.exact(float(p))
    assert bare.references == () and p.references
    assert p == bare and hash(p) == hash(bare) and p.to_dict() == bare.to_dict()
    again = pickle.loads(pickle.dumps(p))
    assert again.references == p.references and again.replace(value=1.0).references
    with pytest.raises(AttributeError, match="immutable"):
        p.references = ()
    # a frozen dataclass result: references is no field, so equality, hashing, repr and
    # asdict are what they were; it pickles with them, and stays frozen
    a = implied.deep_induced_regularizer(np.eye(2), 0.5, 2, 3, starts=1, rng=0)
    assert a.references and "references" not in {f.name for f in dataclasses.fields(a)}
    assert "references" not in repr(a)
    assert pickle.loads(pickle.dumps(a)).references == a.references
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.references = ()


def _cff_references() -> list[dict]:
    import yaml

    path = Path(__file__).resolve().parents[1] / "CITATION.cff"
    return yaml.safe_load(path.read_text(encoding="utf-8"))["references"]


def _plain(title: str) -> str:
    return re.sub(r"[^a-z0-9]", "", re.sub(r"\$k\$", "k", title).lower())


@pytest.mark.parametrize("reference", _cff_references(), ids=lambda r: r["title"][:40])
def test_citation_cff_holds_the_bibliographys_records(reference):
    # the two files give a paper the same year, volume, pages and address
    entries = [
        e
        for e in bibliography().values()
        if _plain(e.fields["title"]) == _plain(reference["title"])
    ]
    assert len(entries) == 1, f"{reference['title']!r} is not in references.bib"
    fields = entries[0].fields
    assert fields["year"] == str(reference["year"])
    assert fields.get("volume") == (str(reference["volume"]) if "volume" in reference else None)
    pages = f"{reference['start']}--{reference['end']}" if "start" in reference else None
    assert fields.get("pages") == pages
    assert fields.get("url") == reference.get("url")


@pytest.mark.parametrize("key", list(bibliography()))
def test_a_volume_or_pages_come_with_the_page_they_were_read_on(key):
    fields = bibliography()[key].fields
    # a journal's volume and number are exempt (JMLR's, and TiiS's from the MovieLens README)
    read = {"pages", "series"} | ({"volume", "number"} if "journal" not in fields else set())
    assert not read & set(fields) or fields.get("url", "").startswith("http"), key
