"""The Reproductions page holds the records' table; every reproduction is registered."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from regtheory.figures import REGISTRY
from regtheory.figures.reproductions import NOT_READ, REPRODUCTIONS, VERDICTS, reproductions_table

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reproductions.md"
TABLE = re.compile(
    r"<!-- reproductions table: begin -->\n(.*?)<!-- reproductions table: end -->", re.S
)


def test_the_page_holds_the_table_of_the_committed_records():
    match = TABLE.search(PAGE.read_text())
    assert match, "docs/reproductions.md lacks its table markers"
    assert match.group(1) == reproductions_table(ROOT / "figures", REPRODUCTIONS), (
        "regenerate the table with regtheory.figures.reproductions.reproductions_table"
    )


@pytest.mark.parametrize("name", REPRODUCTIONS)
def test_each_reproduction_is_a_registered_figure_with_its_section(name):
    assert name in REGISTRY
    assert f"(repro-{name})=" in PAGE.read_text()
    assert f"figures/{name}.png" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", REPRODUCTIONS)
def test_each_claim_cites_a_paper_of_its_figure_and_reads_or_says_not_read(name):
    record = json.loads((ROOT / "figures" / f"{name}.json").read_text())
    papers = {ref.split(",")[0] for ref in REGISTRY[name].references}
    for c in record["data"]["claims"]:
        assert c["paper"] in papers
        assert c["verdict"] in VERDICTS
        assert (c["theirs"] == NOT_READ) == (c["where"] == NOT_READ)


def test_the_table_refuses_a_figure_that_is_not_a_reproduction(tmp_path):
    (tmp_path / "fc_spectrum.json").write_text(json.dumps({"data": {"panels": []}}))
    with pytest.raises(ValueError, match="not a reproduction"):
        reproductions_table(tmp_path, ["fc_spectrum"])
    with pytest.raises(ValueError, match="no stored record"):
        reproductions_table(tmp_path, ["srivastava_ridge"])
