"""In CI (``CI=true``) a test skipped because an optional dependency is missing is a failure:
CI installs every extra the tests need (torch, dask), so such a skip means an install step
went missing, not that the test may be ignored."""

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("CI") == "true"
        and report.skipped
        and "could not import" in str(report.longrepr)
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true: optional dependency missing, test would be skipped: {report.longrepr}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (``torch = pytest.importorskip(...)``)."""
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("CI") == "true"
        and report.skipped
        and "could not import" in str(report.longrepr)
    ):
        report.outcome = "failed"
