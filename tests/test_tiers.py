"""The quick tier keeps tests of every public module (tests/_tiers.py)."""

from pathlib import Path

from _public_api import PUBLIC_MODULES
from _tiers import QUICK_TIER, modules_without_quick_tests

TESTS = Path(__file__).parent
FILES = {name for names in QUICK_TIER.values() for name in names}


def test_every_public_module_has_its_quick_tier_files():
    assert {m.__name__ for m in PUBLIC_MODULES} <= set(QUICK_TIER)
    assert all((TESTS / name).is_file() for name in FILES)


def test_a_module_left_without_quick_tests_is_named():
    assert modules_without_quick_tests(FILES, FILES) == []
    assert modules_without_quick_tests(FILES, FILES - {"test_fc.py"}) == ["regtheory.fc"]
    quick = FILES - {"test_figures.py"}  # figures keeps test_check.py
    assert modules_without_quick_tests(FILES, quick) == []


def test_a_run_of_some_files_is_not_judged():
    assert modules_without_quick_tests(FILES - {"test_fc.py"}, set()) == []
