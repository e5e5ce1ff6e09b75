"""In CI (``CI=true``) a skipped test is a failure: CI installs every extra the tests need
(torch, dask, the MovieLens wheel), so a skip means an install step went missing or a test
(a doctest under ``+SKIP`` included) that CI never runs, not that it may be ignored.

A run of the whole suite with a mark expression (the quick tier, ``-m "not slow"``) fails
at collection if it leaves a public module without tests (tests/_tiers.py)."""

import os
import pickle

import pytest
from _tiers import SLOW_CASES, modules_without_quick_tests, stale_slow_cases


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker more than there are cores.

    A worker that runs a notebook, the command line or a Dask cluster waits for another
    process most of the time; one extra worker keeps the cores busy meanwhile (on two
    cores the suite took 423 s with two workers and 377 s with three).
    """
    return (os.cpu_count() or 1) + 1


def _share_the_cores() -> None:
    """Each xdist worker gets its share of the cores for BLAS and OpenMP threads.

    By default every worker's OpenBLAS (and torch) starts one thread per core, so two
    workers on two cores run four threads that spin-wait for each other: small linear
    algebra then ran up to 15 times slower than in one process. The limits also reach
    the subprocesses the tests start (the CLI, notebook kernels) through the environment.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    share = str(max(1, (os.cpu_count() or 1) // workers))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = share
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(share))  # the libraries already loaded


_share_the_cores()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true: this test would be skipped, and CI never runs it: {report.longrepr}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at collection (``pytest.importorskip(...)``)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped:
        report.outcome = "failed"


# ----------------------------------------------------------------------------- test tiers
# The quick tier, -m "not slow", must keep tests of every public module (tests/_tiers.py).
_COLLECTED = pytest.StashKey[set]()  # the names of the test files collected


# Test files whose module-scoped fixtures train or start a Dask cluster: their tests are
# marked to run on one xdist worker (``--dist loadgroup``). With pytest 9.2 and xdist 3.8 the
# group does not hold: the tests of a file marked with one group still run on several
# workers (even with a module-level ``pytestmark``), so the figures' quick records are
# shared through ``quick_record`` below instead.
ONE_WORKER = {
    "test_check.py",
    "test_conv_figures.py",
    "test_deep_figures.py",
    "test_digits.py",
    "test_explicit_figure.py",
    "test_implied_figures.py",
    "test_sweep.py",
    "test_training.py",
    "test_training_conv.py",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark the slow cases of tests/_tiers.py before ``-m`` deselects; refuse a stale id."""
    config.stash[_COLLECTED] = {item.path.name for item in items}
    for item in items:
        if item.nodeid in SLOW_CASES:
            item.add_marker(pytest.mark.slow)
        if item.path.name in ONE_WORKER:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    # a file named with a test id (file.py::test) is collected in part: no stale check there
    partial = {arg.split("::")[0] for arg in config.args if "::" in arg}
    files = {item.nodeid.split("::")[0] for item in items} - partial
    stale = stale_slow_cases(files, {item.nodeid for item in items})
    if stale:
        raise pytest.UsageError(f"tests/_tiers.py, SLOW_CASES: no such test: {', '.join(stale)}")


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    if not session.config.getoption("markexpr"):
        return
    collected = session.config.stash.get(_COLLECTED, set())
    bare = modules_without_quick_tests(collected, {item.path.name for item in session.items})
    if bare:
        raise pytest.UsageError(
            f"-m {session.config.getoption('markexpr')!r} leaves no test of {', '.join(bare)}: "
            "the quick tier must exercise every public module (QUICK_TIER in tests/_tiers.py)"
        )


@pytest.fixture(scope="session")
def quick_record(tmp_path_factory):
    """``compute(name, quick=True, seed=seed)``, computed once per test session.

    Every xdist worker of a session shares one temporary directory: the first worker to
    ask for a record computes it under a lock and pickles it there, the others wait for
    it and read it. A record is the same on every worker of one machine (same seed, same
    code), so reading it is computing it; tests that must compute a figure twice (to prove
    it reproducible) call ``compute`` themselves.
    """
    from filelock import FileLock

    from regtheory.figures import compute

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's directory, above each worker's own

    def get(name: str, seed: int) -> dict:
        path = root / f"quick-record-{name}-{seed}.pickle"
        with FileLock(f"{path}.lock"):
            if not path.exists():
                partial = path.with_suffix(".partial")
                partial.write_bytes(pickle.dumps(compute(name, quick=True, seed=seed)))
                partial.replace(path)
            return pickle.loads(path.read_bytes())

    return get
