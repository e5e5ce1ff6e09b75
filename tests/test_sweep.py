"""Tests of regtheory/sweep.py: every backend returns what the serial run returns.

The serial run is itself checked against the task function called directly; joblib
(two processes) and a Dask ``LocalCluster`` (two worker processes) must then give
the same results to the last bit, in task order, on a small seeded function, on a
BLAS product whose rounding depends on the thread count, and on the data of every
figure that sweeps. Faults: a Dask worker killed in the middle of a task (the sweep
completes with the same numbers, or stops naming the task), an exception of a task
(named on every backend), and a `regtheory figures` run killed while it writes a file
(no half file; a rerun completes the set).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg.blas import dasum
from threadpoolctl import threadpool_info, threadpool_limits

from regtheory import sweep as sweep_module
from regtheory.figures import REGISTRY, compute
from regtheory.figures._registry import _atomic_write
from regtheory.sweep import Sweep, WorkerLostError, _run_task

SWEEPING = sorted(name for name, spec in REGISTRY.items() if spec.sweeps)


def normal_draws(task: dict) -> np.ndarray:
    """Three standard normal draws from the task's own seed, scaled by its index."""
    return task["index"] * np.random.default_rng(task["seed"]).standard_normal(3)


def where_run(task: dict) -> int:
    return os.getpid()


def blas_product(task: dict) -> np.ndarray:
    """A 30 × 512 by 512 × 512 product: OpenBLAS rounds it differently for 1 and 2 threads."""
    rng = np.random.default_rng(task["seed"])
    return rng.standard_normal((30, 512)) @ rng.standard_normal((512, 512))


def abs_sum(task: dict) -> float:
    """BLAS ``dasum``: it peels to an aligned boundary, so its rounding depends on the address."""
    return float(dasum(task["x"]))


def memory_of(task: dict) -> list:
    """Where and how each array of the task sits: address mod 64, flags, and its bytes."""
    return [
        (
            a.ctypes.data % 64,
            a.flags.writeable,
            a.flags.c_contiguous,
            a.flags.f_contiguous,
            a.tobytes(order="A"),
        )
        for a in (task["c"], task["f"], task["frozen"])
    ]


def at_offset(x: np.ndarray, offset: int) -> np.ndarray:
    """A copy of ``x`` starting ``offset`` bytes past a 64-byte boundary (as Dask may send it)."""
    block = np.zeros(x.nbytes + 128, dtype=np.uint8)
    start = -block.ctypes.data % 64 + offset
    out = block[start : start + x.nbytes].view(x.dtype)
    out[...] = x
    return out


TASKS = [{"index": i, "seed": 1000 + 7 * i} for i in range(6)]


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local


@pytest.fixture(scope="module")
def dask_sweep(cluster):
    with Sweep(scheduler=cluster.scheduler_address) as sweep:
        yield sweep


@pytest.fixture(params=["joblib", "dask"])
def parallel(request):
    """A sweep on two local processes, or on the two workers of the local Dask cluster."""
    if request.param == "joblib":
        return Sweep(n_jobs=2)
    return request.getfixturevalue("dask_sweep")


def test_serial_run_is_the_function_called_on_each_task_in_order():
    expected = [
        task["index"] * np.random.default_rng(task["seed"]).standard_normal(3) for task in TASKS
    ]
    results = Sweep().map(normal_draws, TASKS)
    assert len(results) == len(TASKS)
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
    assert Sweep().map(where_run, TASKS) == [os.getpid()] * len(TASKS)


@pytest.mark.slow
def test_parallel_backends_return_the_serial_results(parallel):
    assert parallel.backend in ("joblib", "dask")
    for fn in (normal_draws, blas_product):
        serial = Sweep().map(fn, TASKS)
        results = parallel.map(fn, TASKS)
        assert len(results) == len(serial)
        for got, want in zip(results, serial):
            assert got.tobytes() == want.tobytes(), fn.__name__
    pids = set(parallel.map(where_run, TASKS))
    assert os.getpid() not in pids, "the tasks ran in this process"
    assert parallel.map(normal_draws, []) == []


@pytest.mark.slow
def test_arrays_reach_the_task_in_the_same_memory_on_every_backend(parallel):
    frozen = np.arange(5.0)
    frozen.flags.writeable = False
    tasks = [
        {
            "c": np.full((40, 3), float(i)),
            "f": np.asfortranarray(np.ones((3, 50)) * i),
            "frozen": frozen,
        }
        for i in range(4)
    ]
    serial = Sweep().map(memory_of, tasks)
    for task, arrays in zip(tasks, serial):
        assert [a[0] for a in arrays] == [0, 0, 0]  # on a 64-byte boundary
        assert [a[1:4] for a in arrays] == [
            (True, True, False),
            (True, False, True),
            (False, True, True),
        ]
        assert [a[4] for a in arrays] == [
            task["c"].tobytes(),
            task["f"].tobytes(order="F"),
            frozen.tobytes(),
        ]
    assert parallel.map(memory_of, tasks) == serial


@pytest.mark.parametrize("seed", range(3))
def test_a_result_that_depends_on_the_address_does_not_depend_on_where_the_task_arrays_were(seed):
    # Dask hands a task views into its network frames, at any offset (even unaligned);
    # OpenBLAS's dasum rounds differently at different offsets. Every offset must give
    # the sum that the array gives on a 64-byte boundary.
    x = np.random.default_rng(seed).standard_normal(1000)
    on_boundary = dasum(at_offset(x, 0))
    assert on_boundary == pytest.approx(np.abs(x).sum(), rel=1e-13)  # it is the 1-norm
    tasks = [{"x": at_offset(x, offset)} for offset in (0, 8, 16, 24, 32, 40, 48, 56, 1, 33)]
    assert Sweep().map(abs_sum, tasks) == [on_boundary] * len(tasks)


def test_concurrent_tasks_in_one_process_all_run_with_one_blas_thread():
    # Dask runs the tasks of a multi-threaded worker in threads of one process, and BLAS
    # thread pools are per process. Order forced: A starts, B starts, A ends, B computes.
    seen, a_started, a_done = {}, threading.Event(), threading.Event()

    def task_a(task):
        a_started.set()

    def task_b(task):
        a_done.wait(10)
        seen["b"] = max(pool["num_threads"] for pool in threadpool_info())

    def run_a():
        _run_task(task_a, {})
        a_done.set()

    with threadpool_limits(limits=2):
        before = [pool["num_threads"] for pool in threadpool_info()]
        assert max(before) > 1, "the check needs a BLAS pool of more than one thread"
        thread_b = threading.Thread(target=lambda: (a_started.wait(10), _run_task(task_b, {})))
        thread_b.start()
        thread_a = threading.Thread(target=run_a)
        thread_a.start()
        thread_a.join(10)
        thread_b.join(10)
        assert seen["b"] == 1
        assert [pool["num_threads"] for pool in threadpool_info()] == before


def test_a_task_gets_a_copy_and_must_be_picklable():
    x = np.zeros(3)

    def overwrite(task):
        task["x"][:] = 1.0
        return task["x"].sum()

    assert Sweep().map(overwrite, [{"x": x}]) == [3.0]
    np.testing.assert_array_equal(x, np.zeros(3))  # the caller's array is untouched
    with pytest.raises(TypeError, match=r"`tasks\[1\]` must be picklable"):
        Sweep().map(overwrite, [{"x": x}, {"x": x, "f": lambda: 0}])


# Every sweeping figure runs on one parallel backend: each figure's tasks cross a process
# boundary, and each backend carries more than one figure. The figures that import torch
# go to the Dask cluster, whose workers outlive a test (torch is imported once there).
BACKEND_OF = {
    name: "dask" if "torch" in REGISTRY[name].requires or name == "mc_error_vs_n" else "joblib"
    for name in SWEEPING
}


@pytest.mark.slow
@pytest.mark.parametrize("name", SWEEPING)
def test_figure_data_identical_on_a_parallel_backend(name, request, quick_record):
    if BACKEND_OF[name] == "joblib":
        sweep = Sweep(n_jobs=2)
    else:
        sweep = request.getfixturevalue("dask_sweep")
    data = json.dumps(compute(name, quick=True, seed=2, sweep=sweep), sort_keys=True)
    # the serial record is the session's shared one (conftest), computed once for all tests
    assert data == json.dumps(quick_record(name, 2), sort_keys=True)


def test_each_backend_carries_two_figures_or_more():
    assert sorted(BACKEND_OF.values()).count("dask") >= 2
    assert sorted(BACKEND_OF.values()).count("joblib") >= 2


def test_the_sweeping_figures():
    assert {"penalty_vs_keep", "mc_error_vs_n", "fc_spectrum"} <= set(SWEEPING)


def test_a_figure_that_does_not_sweep_ignores_the_sweep():
    name = "no_gradient_probability"
    assert not REGISTRY[name].sweeps
    assert compute(name, quick=True, sweep=Sweep(n_jobs=2)) == compute(name, quick=True)


@pytest.mark.slow
def test_dask_map_outside_a_with_block_connects_for_that_call(cluster):
    sweep = Sweep(scheduler=cluster.scheduler_address)
    assert sweep.map(where_run, TASKS[:2]) != [os.getpid()] * 2
    assert sweep._client is None


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails
    sweep = Sweep(scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ImportError, match=r"pip install 'regtheory\[dask\]'"):
        sweep.open()
    with pytest.raises(ImportError, match="dask"):
        sweep.map(normal_draws, TASKS)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "nonsense://here", "tcp://host:port"])
def test_unreachable_or_malformed_scheduler_is_an_oserror(address):
    pytest.importorskip("dask.distributed")
    with pytest.raises(OSError, match="cannot connect to the Dask scheduler at"):
        Sweep(scheduler=address, timeout=1).open()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_jobs": 0}, "positive integer or -1"),
        ({"n_jobs": -2}, "positive integer or -1"),
        ({"n_jobs": 2.0}, "positive integer or -1"),
        ({"n_jobs": True}, "positive integer or -1"),
        ({"scheduler": ""}, "address string"),
        ({"n_jobs": 2, "scheduler": "tcp://127.0.0.1:8786"}, "not both"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Sweep(**kwargs)


def test_backend_names():
    assert Sweep().backend == "serial"
    assert Sweep(n_jobs=-1).backend == "joblib"
    assert Sweep(scheduler="tcp://127.0.0.1:8786").backend == "dask"


# ----------------------------------------------------------------------------- faults


def fails_at_two(task: dict) -> float:
    if task["index"] == 2:
        raise ZeroDivisionError("the task's own failure")
    return float(task["index"])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["serial", "joblib", "dask"])
def test_an_exception_of_a_task_names_the_task(backend, request):
    """The task function's exception keeps its type, and a note names the task."""
    sweep = {"serial": Sweep(), "joblib": Sweep(n_jobs=2)}.get(backend)
    sweep = sweep or request.getfixturevalue("dask_sweep")
    with pytest.raises(ZeroDivisionError, match="own failure") as info:
        sweep.map(fails_at_two, TASKS)
    assert "raised in task 2 (index=2, seed=1014) of the sweep" in info.value.__notes__


@pytest.fixture
def own_cluster():
    """A fresh two-worker cluster for a test that kills its workers (the Nanny restarts
    them, but the other tests should not share a cluster in that state)."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local


def draws_after_a_pause(task: dict) -> np.ndarray:
    """:func:`normal_draws`, after writing this process's id to ``started-INDEX`` (one
    line per attempt) and pausing: long for the task the test kills, short for the rest."""
    with open(os.path.join(task["dir"], f"started-{task['index']}"), "a") as log:
        log.write(f"{os.getpid()}\n")
    time.sleep(task["pause"])
    return normal_draws(task)


@pytest.mark.slow
def test_a_dask_worker_killed_mid_sweep_changes_no_number(own_cluster, tmp_path):
    """A worker process killed (SIGKILL) while it runs a task: the task is submitted
    again and the sweep returns the serial results to the last bit."""
    victim = 3
    tasks = [
        {**t, "dir": str(tmp_path), "pause": 4.0 if t["index"] == victim else 0.3} for t in TASKS
    ]
    killed = []

    def kill_the_victims_worker():
        started = tmp_path / f"started-{victim}"
        deadline = time.monotonic() + 120
        # the task creates the file, then writes its pid: wait for the pid, not the file
        text = ""
        while not text.split() and time.monotonic() < deadline:
            time.sleep(0.05)
            text = started.read_text() if started.exists() else ""
        pid = int(text.split()[0])
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_the_victims_worker)
    with Sweep(scheduler=own_cluster.scheduler_address) as sweep:
        workers = set(sweep._client.run(os.getpid).values())
        killer.start()
        results = sweep.map(draws_after_a_pause, tasks)
    killer.join(10)
    assert killed and killed[0] in workers, "a worker process was killed mid-task"
    attempts = (tmp_path / f"started-{victim}").read_text().split()
    assert len(attempts) >= 2 and attempts[0] == str(killed[0]), "the task ran again"
    serial = Sweep().map(normal_draws, TASKS)
    assert [r.tobytes() for r in results] == [s.tobytes() for s in serial]


def ends_its_worker(task: dict) -> float:
    if task["index"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return float(task["index"])


@pytest.mark.slow
def test_a_task_that_kills_every_worker_stops_the_sweep_naming_it(own_cluster, monkeypatch):
    monkeypatch.setattr(sweep_module, "MAX_ATTEMPTS", 2)  # each attempt costs a worker restart
    sweep = Sweep(scheduler=own_cluster.scheduler_address)
    with sweep, pytest.raises(WorkerLostError, match=r"task 2 \(index=2, seed=1014\)"):
        sweep.map(ends_its_worker, TASKS)


# A `regtheory figures` run killed (SIGKILL, no cleanup) while it writes a figure file:
# savefig writes half a PDF to the temporary name and the process kills itself.
KILLED_WHILE_WRITING = """
import os, signal, sys
from matplotlib.figure import Figure
from regtheory.cli import main

def half_then_killed(self, fname, *args, **kwargs):
    if "{victim}" in str(fname) and kwargs.get("format") == "pdf":
        with open(fname, "wb") as half:
            half.write(b"%PDF-1.4 half a file")
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, fname, *args, **kwargs)

real, Figure.savefig = Figure.savefig, half_then_killed
sys.exit(main(sys.argv[1:]))
"""


def complete(path) -> bool:
    """Whether a figure file is whole: a PNG ends with its IEND chunk, a PDF with %%EOF,
    and a JSON record parses."""
    data = path.read_bytes()
    if path.suffix == ".png":
        return data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")
    if path.suffix == ".pdf":
        return data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    return isinstance(json.loads(data), dict)


@pytest.mark.slow
def test_an_interrupted_figures_run_leaves_no_half_file_and_a_rerun_completes_it(tmp_path):
    first, victim = "no_gradient_probability", "conv_matrix_seed"
    command = ["figures", "--only", first, victim, "--quick", "--jobs", "1", "--no-progress"]
    command += ["--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = KILLED_WHILE_WRITING.format(victim=victim)
    run = subprocess.run(
        [sys.executable, "-c", script, *command], env=env, capture_output=True, check=False
    )
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()[-2000:]
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == sorted([f"{first}.json", f"{first}.pdf", f"{first}.png", f"{victim}.png"])
    assert all(complete(tmp_path / name) for name in visible)
    assert any(p.name.startswith(f".{victim}.pdf.") for p in tmp_path.iterdir())  # the half

    rerun = subprocess.run(
        [sys.executable, "-m", "regtheory", *command], env=env, capture_output=True, check=False
    )
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    for name in (first, victim):
        for ext in ("png", "pdf", "json"):
            assert complete(tmp_path / f"{name}.{ext}"), f"{name}.{ext}"
        record = json.loads((tmp_path / f"{name}.json").read_text())
        fresh = compute(name, quick=True, seed=0)["data"]
        assert json.dumps(record["data"], sort_keys=True) == json.dumps(fresh, sort_keys=True)


def test_a_figure_file_is_replaced_whole_or_not_at_all(tmp_path):
    """The registry's writer: a write interrupted midway (here by KeyboardInterrupt)
    leaves the old file and no temporary file; a finished one has the umask's mode."""
    path = tmp_path / "figure.json"
    path.write_text("old")

    def half_then_interrupted(tmp):
        with open(tmp, "w") as out:
            out.write("new, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _atomic_write(path, half_then_interrupted)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["figure.json"]
    umask = os.umask(0o027)
    try:
        _atomic_write(path, lambda tmp: Path(tmp).write_text("new"))
    finally:
        os.umask(umask)
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["figure.json"]
