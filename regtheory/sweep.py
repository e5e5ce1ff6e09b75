"""Sweeps: one function mapped over a list of independent tasks, on any backend.

A figure that sweeps a grid (keep × mask type, N × seed, one training run per
keep) writes each grid cell as a *task*: a dict holding everything the cell
needs, its own seed included, given to a top-level (picklable) function. A
:class:`Sweep` runs that function over the tasks

* serially in this process (``n_jobs=1``, the reference),
* on local processes through joblib's loky backend (``n_jobs`` > 1, or -1 for
  every core), or
* on a Dask cluster (``scheduler="tcp://host:8786"``; the ``dask`` extra,
  ``pip install 'regtheory[dask]'``),

and returns the results in task order.

The contract
------------
*Same machine, same versions* (numpy, scipy, OpenBLAS, cvxpy, Clarabel): the results
are the same on every backend and for any number of workers, **to the last bit**.
*Across machines*: they agree within stated tolerances, not to the bit, since two
CPUs that run different OpenBLAS kernels (AVX2, AVX-512, ...) round differently:
closed forms and solver outputs to ~1e-10 relative; Monte Carlo means to ~1e-9
relative (the draws depend on the seed only, and the factors they are drawn for,
:func:`regtheory.fc.equalize` included, depend continuously on the input -- no
tie broken by rounding); SGD training runs to the tolerances their tests state.

Three rules make the first half hold:

1. *Each task carries its own seed.* No random stream is shared between tasks,
   so which worker runs a task, and when, cannot change its draws.
2. *Each task runs with one BLAS thread* (threadpoolctl), on every backend
   including the serial one. OpenBLAS picks a different kernel, and so rounds
   differently, for different thread counts (a 30 × 512 by 512 × 512 product
   differs in the last bit between 1 and 2 threads), and joblib and Dask workers
   start with one thread while this process has one per core. The parallelism of
   a sweep is across tasks, not inside BLAS. OpenBLAS's pool is process-wide, so
   the limit is taken once for all the tasks that run at the same time in one
   process -- the threads of a multi-threaded Dask worker -- and lifted when the
   last ends. A ``threadpool_limits`` block per task is not enough there: the
   first task to end restores the pool under the others, and threadpoolctl
   ignores a limit set from a thread other than the one that set it first (on a
   two-thread worker one task in eight ran with two BLAS threads and differed
   from the serial run, and the process was left at one thread).
3. *Each task gets its arrays in the same memory on every backend*: a fresh
   copy of the task (through pickle, as joblib and Dask send it) whose arrays sit
   in new buffers aligned to 64 bytes (read-only where the caller's array was).
   What a task receives otherwise depends on the backend: the caller's arrays
   (serial), fresh 16-byte-aligned
   copies (joblib), or views into Dask's network frames at any offset -- a
   (2000, 8) array arrived at an address of 33 mod 64, not even 8-byte aligned.
   OpenBLAS kernels that peel to an aligned boundary round differently for the
   same numbers at another address (``dasum`` returns two different sums over
   the eight 8-byte offsets of one 1000-vector on AVX2; its AVX-512 kernels peel
   to 64 bytes). The copy also keeps a task from changing the caller's arrays.
   Tasks must therefore be picklable on every backend, the serial one included.

Faults
------
A Dask worker that dies in the middle of a sweep (killed, out of memory, its machine
gone) loses the tasks it held and the results it had not yet sent. The sweep submits
each of them again, up to :data:`MAX_ATTEMPTS` times, and by the three rules a task
gives the same numbers wherever and however often it runs, so the sweep completes with
the numbers it would have had. A task that cannot finish (its worker dies every time)
stops the sweep with a :class:`WorkerLostError` naming it. An exception raised by the
task function itself stops the sweep on every backend, with a note naming the task.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, final

import numpy as np
from threadpoolctl import threadpool_limits

from ._validation import InvalidParameterError

__all__ = ["MAX_ATTEMPTS", "Sweep", "WorkerLostError"]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


# How long a Dask client waits for the scheduler before giving up, in seconds.
CONNECT_TIMEOUT = 10.0

#: How many times a task lost with its Dask worker is submitted before the sweep stops.
MAX_ATTEMPTS = 3


class WorkerLostError(RuntimeError):
    """A task of a sweep could not finish: its Dask workers died under it too often.

    The message names the task (its index and scalar entries). Tasks lost with a worker
    are submitted again (:data:`MAX_ATTEMPTS` times); this error means the task itself
    seems to end its workers (memory, a crash in compiled code).
    """


# Alignment of every array a task receives (rule 3): 64 bytes is an AVX-512 register
# and a cache line, the coarsest boundary an x86 BLAS kernel peels to.
ALIGNMENT = 64

# Rule 2: the tasks running in this process, and the limiter they share.
_limit_lock = threading.Lock()
_limit_users = 0
_limiter: Any = None


def _release_blas_control() -> None:
    """Let any thread set OpenBLAS's (process-wide) pool size next.

    threadpoolctl >= 3.7 lets only the first thread that limits a pthreads OpenBLAS
    change it while that thread lives; a limit set from any other thread is
    silently ignored. The tasks of one process run in several threads, so the
    sweep takes and gives back that control explicitly.
    """
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:  # older threadpoolctl: every thread may set the limit
        return
    release = getattr(OpenBLASController, "clear_controlling_thread", None)
    if release is not None:
        release(force=True)


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Every BLAS and OpenMP pool at one thread while any task of this process runs.

    Process-wide pools (pthreads OpenBLAS) are limited once, by the first task to
    start, and restored by the last to end, whichever threads those are; per-thread
    pools (OpenMP) are limited in each task's own thread.
    """
    global _limit_users, _limiter
    with _limit_lock:
        if _limit_users == 0:
            _release_blas_control()
            _limiter = threadpool_limits(limits=1)
            _release_blas_control()
        _limit_users += 1
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                _release_blas_control()
                if _limiter is not None:
                    _limiter.restore_original_limits()
                _release_blas_control()
                _limiter = None


def _aligned_copy(buffer: pickle.PickleBuffer) -> np.ndarray:
    """The bytes of ``buffer`` in a new writeable buffer that starts on an ALIGNMENT boundary."""
    raw = buffer.raw()
    block = np.empty(raw.nbytes + ALIGNMENT, dtype=np.uint8)
    start = -block.ctypes.data % ALIGNMENT
    copy = block[start : start + raw.nbytes]
    copy[:] = np.frombuffer(raw, dtype=np.uint8)
    return copy


def _fresh_task(task: dict, index: int) -> dict:
    """``task`` rebuilt from pickle, each contiguous array in new 64-byte-aligned memory.

    This is rule 3 of the module docstring.
    """
    buffers = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        if isinstance(buffer.raw().obj, np.ndarray):
            buffers.append(buffer)
            return False
        return True  # anything else stays in the pickle stream

    try:
        stream = pickle.dumps(task, protocol=5, buffer_callback=out_of_band)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise TypeError(
            f"`tasks[{index}]` must be picklable (a task is sent to joblib and Dask workers "
            f"as a pickle, and copied the same way when run serially): {exc}"
        ) from exc
    return pickle.loads(stream, buffers=[_aligned_copy(b) for b in buffers])


def _describe(task: dict, index: int) -> str:
    """``task 3 (keep=0.5, seed=7)``: the index and the task's scalar entries, for messages."""
    scalars = [
        f"{key}={value!r}"
        for key, value in task.items()
        if isinstance(value, (int, float, str, bool, np.generic)) and len(repr(value)) <= 30
    ]
    shown = ", ".join(scalars[:6]) + (", ..." if len(scalars) > 6 else "")
    return f"task {index}" + (f" ({shown})" if shown else "")


def _run_task(fn: Callable[[dict], Any], task: dict, index: int = 0) -> Any:
    """``fn`` on a fresh aligned copy of ``task``, with one BLAS thread (rules 2 and 3).

    An exception of ``fn`` keeps its type and gains a note naming the task (the note
    travels with the exception from joblib and Dask workers).
    """
    task = _fresh_task(task, index)
    try:
        with _one_blas_thread():
            return fn(task)
    except Exception as exc:
        # exc.add_note (Python >= 3.11) does this; the traceback prints the notes
        notes = [*getattr(exc, "__notes__", []), f"raised in {_describe(task, index)} of the sweep"]
        setattr(exc, "__notes__", notes)  # noqa: B010
        raise


def _map_serial(sweep: Sweep, fn, tasks: list[dict]) -> list:
    return [_run_task(fn, task, i) for i, task in enumerate(tasks)]


def _map_joblib(sweep: Sweep, fn, tasks: list[dict]) -> list:
    from joblib import Parallel, delayed, effective_n_jobs

    if len(tasks) < 2 or effective_n_jobs(sweep.n_jobs) == 1:
        return _map_serial(sweep, fn, tasks)  # no processes to start for one worker
    return Parallel(n_jobs=sweep.n_jobs, backend="loky")(
        delayed(_run_task)(fn, task, i) for i, task in enumerate(tasks)
    )


def _map_dask(sweep: Sweep, fn, tasks: list[dict]) -> list:
    if sweep._client is not None:
        return _gather(sweep._client, fn, tasks)
    with sweep:  # not opened by the caller: connect for this one map
        return _gather(sweep._client, fn, tasks)


def _gather(client, fn, tasks: list[dict]) -> list:
    """The results of the tasks on a Dask cluster, resubmitting a task lost with its worker.

    A worker that dies takes with it the tasks it held (scattered there, so that their
    arrays travel outside the task graph, which Dask warns about beyond 10 MB) and the
    results it had not yet sent: Dask cancels those futures. Once every task has run,
    each lost one is scattered and submitted again, alone on the cluster, up to
    :data:`MAX_ATTEMPTS` submissions in all: a task lost only because another task killed
    the worker they shared then finishes, and is not blamed. A task is deterministic
    (rules 1-3), so its retried result is the one it would have had. A task that Dask itself
    gave up on (``KilledWorker``: it was running on as many dying workers as Dask's
    ``distributed.scheduler.allowed-failures`` allows) or that is lost too often stops
    the sweep with a :class:`WorkerLostError` naming it.
    """
    from distributed.scheduler import KilledWorker

    results: list = [None] * len(tasks)
    attempts = [0] * len(tasks)
    index_of: dict = {}

    def submit(indices: list[int]) -> list:
        data = client.scatter([tasks[i] for i in indices], hash=False)
        futures = []
        for i, task in zip(indices, data):
            attempts[i] += 1
            future = client.submit(_run_task, fn, task, i, pure=False)
            index_of[future] = i
            futures.append(future)
        return futures

    # First every task once; then each lost task again, alone on the cluster, so that a
    # task lost only because another one killed the worker they shared is not blamed.
    first = submit(list(range(len(tasks))))
    lost = _first_pass(first, client.loop, index_of, results, KilledWorker, tasks)
    for i in lost:
        while True:
            (future,) = submit([i])
            done, outcome = _collect(_wait(future, client.loop), KilledWorker)
            index_of.pop(future)
            if done:
                results[i] = outcome
                break
            if outcome.startswith("Dask") or attempts[i] >= MAX_ATTEMPTS:
                raise WorkerLostError(_gave_up(tasks[i], i, attempts[i], outcome))
    return results


def _first_pass(futures, loop, index_of: dict, results: list, killed: type, tasks) -> list[int]:
    """Collect the first submission of every task; the indices of those lost, in order."""
    from dask.distributed import as_completed

    lost = []
    try:
        for future in as_completed(futures, loop=loop):
            i = index_of.pop(future)
            done, outcome = _collect(future, killed)
            if done:
                results[i] = outcome
            elif outcome.startswith("Dask"):
                raise WorkerLostError(_gave_up(tasks[i], i, 1, outcome))
            else:
                lost.append(i)
    finally:
        for future in list(index_of):
            future.cancel()
            index_of.pop(future)
    return sorted(lost)


def _wait(future, loop):
    """The future, once it is finished, erred or cancelled."""
    from dask.distributed import as_completed

    for _ in as_completed([future], loop=loop):
        pass
    return future


def _gave_up(task: dict, i: int, attempts: int, outcome: str) -> str:
    return (
        f"{_describe(task, i)} of the sweep did not finish after {attempts} submission(s): "
        f"{outcome}. The sweep stops; a task whose worker dies every time (memory, a crash "
        "in compiled code) cannot finish"
    )


def _collect(future, killed: type) -> tuple[bool, Any]:
    """``(True, result)`` of a done Dask future, or ``(False, why it was lost)``.

    An exception of the task itself propagates.
    """
    if future.status == "error":
        exc = future.exception()
        if isinstance(exc, killed):
            return False, f"Dask gave up on it after its workers died ({exc})"
        future.result()
    if future.status == "finished":
        try:
            return True, future.result()
        except CancelledError:  # finished, but lost with its worker before it was sent
            pass
    return False, "lost with its worker"


_BACKENDS = MappingProxyType({"serial": _map_serial, "joblib": _map_joblib, "dask": _map_dask})


@final
class Sweep:
    """Where the tasks of a sweep run: serially, on local processes, or on a Dask cluster.

    Parameters
    ----------
    n_jobs : int
        Local worker processes (joblib, loky backend); ``-1`` for one per core.
        ``1`` (the default) runs the tasks serially in this process.
    scheduler : str, optional
        Address of a running Dask scheduler (``"tcp://host:8786"``); the tasks
        then run on its workers, which must have regtheory installed. Needs the
        ``dask`` extra. Exclusive with ``n_jobs``.
    timeout : float, optional
        Seconds to wait for the scheduler before :meth:`open` fails (default
        :data:`CONNECT_TIMEOUT`).

    Notes
    -----
    The results do not depend on the backend or on ``n_jobs``: identical bits on one
    machine, agreement within stated tolerances across machines (see the module
    docstring for the contract and the three rules behind it). A Dask client connects in
    :meth:`open` (or on entering a ``with`` block) and is closed by :meth:`close`;
    a :meth:`map` outside of it connects for that call only. Closing a client
    never stops the cluster.

    Examples
    --------
    >>> from operator import itemgetter
    >>> tasks = [{"keep": 0.5, "seed": 1}, {"keep": 0.8, "seed": 2}]
    >>> Sweep().map(itemgetter("seed"), tasks)
    [1, 2]
    >>> Sweep(n_jobs=2)
    Sweep(n_jobs=2)
    """

    def __init__(
        self, n_jobs: int = 1, scheduler: str | None = None, *, timeout: float | None = None
    ) -> None:
        if (
            isinstance(n_jobs, bool)
            or not isinstance(n_jobs, int)
            or not (n_jobs >= 1 or n_jobs == -1)
        ):
            raise InvalidParameterError(
                f"`n_jobs` must be a positive integer or -1, got {n_jobs!r}"
            )
        if scheduler is not None:
            if not isinstance(scheduler, str) or not scheduler.strip():
                raise InvalidParameterError(
                    f"`scheduler` must be an address string, got {scheduler!r}"
                )
            if n_jobs != 1:
                raise InvalidParameterError(
                    "give `n_jobs` (local processes) or `scheduler` (Dask), not both"
                )
        self.n_jobs = n_jobs
        self.scheduler = scheduler
        self.timeout = timeout
        self._client: Any = None

    @property
    def backend(self) -> str:
        """``"serial"``, ``"joblib"`` or ``"dask"``."""
        if self.scheduler is not None:
            return "dask"
        return "serial" if self.n_jobs == 1 else "joblib"

    def __repr__(self) -> str:
        if self.scheduler is not None:
            return f"Sweep(scheduler={self.scheduler!r})"
        return f"Sweep(n_jobs={self.n_jobs})"

    def map(self, fn: Callable[[dict], Any], tasks: Sequence[dict]) -> list:
        """``[fn(task) for task in tasks]``, computed on this sweep's backend.

        Parameters
        ----------
        fn : callable
            A function of one task. For joblib and Dask it must be picklable: a
            module-level function, not a lambda or a closure.
        tasks : sequence of dict
            The tasks, each with everything ``fn`` needs, its seed included; each
            must be picklable (``fn`` receives a fresh copy, on every backend).

        Returns
        -------
        list
            The results, in the order of ``tasks``.

        Raises
        ------
        TypeError
            A task cannot be pickled (serial backend; joblib and Dask raise their own
            pickling errors).
        WorkerLostError
            A task could not finish on Dask: its workers died under it too often
            (a task lost with a worker is otherwise submitted again; module docstring,
            "Faults").
        """
        tasks = list(tasks)
        if not tasks:
            return []
        return _BACKENDS[self.backend](self, fn, tasks)

    def open(self) -> Sweep:
        """Connect to the Dask scheduler (nothing to do for the local backends).

        Raises
        ------
        ImportError
            Dask's distributed scheduler is not installed (the ``dask`` extra).
        OSError
            The scheduler does not answer within ``timeout`` seconds.
        """
        if self.scheduler is None or self._client is not None:
            return self
        try:
            from dask.distributed import Client
        except ImportError as exc:
            raise ImportError(
                f"a Dask scheduler ({self.scheduler}) needs Dask's distributed scheduler, "
                "which is not installed: pip install 'regtheory[dask]'"
            ) from exc
        timeout = CONNECT_TIMEOUT if self.timeout is None else self.timeout
        # A Client whose __init__ fails (a malformed address) keeps its event loop, and its
        # __del__ then prints a traceback at exit; holding it lets us close it cleanly.
        client = Client.__new__(Client)
        try:
            Client.__init__(client, self.scheduler, timeout=timeout, set_as_default=False)
        except (OSError, ValueError, TypeError) as exc:
            client.close()
            raise OSError(
                f"cannot connect to the Dask scheduler at {self.scheduler}: {exc}"
            ) from exc
        self._client = client
        return self

    def close(self) -> None:
        """Close the Dask client, if one is open (the cluster keeps running)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Sweep:
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()
