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

Two rules make the results the same on every backend and for any number of
workers, to the last bit:

1. *Each task carries its own seed.* No random stream is shared between tasks,
   so which worker runs a task, and when, cannot change its draws.
2. *Each task runs with one BLAS thread* (threadpoolctl), on every backend
   including the serial one. OpenBLAS picks a different kernel, and so rounds
   differently, for different thread counts (a 30 × 512 by 512 × 512 product
   differs in the last bit between 1 and 2 threads), and joblib and Dask workers
   start with one thread while this process has one per core. The parallelism of
   a sweep is across tasks, not inside BLAS.

What stays machine-dependent is what always was: two machines whose CPUs run
different OpenBLAS kernels may still differ in the last bits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, final

from threadpoolctl import threadpool_limits

from ._validation import InvalidParameterError

__all__ = ["Sweep"]

# How long a Dask client waits for the scheduler before giving up, in seconds.
CONNECT_TIMEOUT = 10.0


def _run_task(fn: Callable[[dict], Any], task: dict) -> Any:
    """``fn(task)`` with every BLAS and OpenMP pool of this process limited to one thread."""
    with threadpool_limits(limits=1):
        return fn(task)


def _map_serial(sweep: Sweep, fn, tasks: list[dict]) -> list:
    return [_run_task(fn, task) for task in tasks]


def _map_joblib(sweep: Sweep, fn, tasks: list[dict]) -> list:
    from joblib import Parallel, delayed, effective_n_jobs

    if len(tasks) < 2 or effective_n_jobs(sweep.n_jobs) == 1:
        return _map_serial(sweep, fn, tasks)  # no processes to start for one worker
    return Parallel(n_jobs=sweep.n_jobs, backend="loky")(
        delayed(_run_task)(fn, task) for task in tasks
    )


def _map_dask(sweep: Sweep, fn, tasks: list[dict]) -> list:
    if sweep._client is not None:
        return _gather(sweep._client, fn, tasks)
    with sweep:  # not opened by the caller: connect for this one map
        return _gather(sweep._client, fn, tasks)


def _gather(client, fn, tasks: list[dict]) -> list:
    # Scattered, the tasks' arrays go to the workers directly instead of inside the
    # task graph, which Dask warns about beyond 10 MB.
    data = client.scatter(tasks, hash=False)
    futures = client.map(_run_task, [fn] * len(tasks), data, pure=False)
    return client.gather(futures)


_BACKENDS = {"serial": _map_serial, "joblib": _map_joblib, "dask": _map_dask}


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
    The results do not depend on the backend or on ``n_jobs`` (see the module
    docstring for the two rules that make this so). A Dask client connects in
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
        self._client = None

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
            The tasks, each with everything ``fn`` needs, its seed included.

        Returns
        -------
        list
            The results, in the order of ``tasks``.
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
            client.__init__(self.scheduler, timeout=timeout, set_as_default=False)
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
