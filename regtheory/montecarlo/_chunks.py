"""Chunks of a Monte Carlo batch, run on every core, with the same numbers on any machine.

A batch of draws is cut into chunks whose work arrays fit in the cache; each chunk is
evaluated by a function ``fn(start, stop, rng, scratch)``. The chunks run on a pool of
threads, one :class:`~regtheory._convops.Scratch` per thread; NumPy releases the GIL in
its copies, ufuncs and matrix products, so the element-wise work that a single thread
would leave to one core (im2col copies, masks, activations, losses) runs on all of them,
while BLAS is held to one thread per chunk.

Each thread takes the next chunk as soon as it is free (chunks need not cost the same:
a thread may be slowed by another process, or wait for the GIL its neighbour holds).
Reproducibility depends neither on that order nor on the number of threads: chunk ``i``
of a batch draws its masks from its own generator, an SFC64 seeded by
``SeedSequence([key, i])``, where ``key`` is one 63-bit integer drawn from the caller's
generator per batch. SFC64 (Chris Doty-Humphrey's small fast chaotic generator, one of
NumPy's bit generators) gives raw bits about twice as fast as the default PCG64 here,
and masks are made of raw bits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._convops import Scratch

__all__ = ["BATCH_ENTRIES", "CHUNK_ENTRIES", "Chunks"]

# Entries of a chunk's largest work array (im2col or per-tap products): 2**20 float64
# entries are 8 MB, which stays in the last-level cache between the copy and the product.
CHUNK_ENTRIES = 1 << 20
# Activation entries of one Monte Carlo batch (never held at once: a batch is run chunk
# by chunk), enough chunks for every core; the batch is where an `rtol` stop is checked.
BATCH_ENTRIES = 1 << 23


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_POOL: dict[str, object] = {}


def _pool() -> tuple[ThreadPoolExecutor, object]:
    """The package's thread pool and a BLAS thread controller, made on first use."""
    if not _POOL:
        from threadpoolctl import ThreadpoolController

        _POOL["pool"] = ThreadPoolExecutor(_cores(), thread_name_prefix="regtheory-mc")
        _POOL["blas"] = ThreadpoolController()
    return _POOL["pool"], _POOL["blas"]  # type: ignore[return-value]


def _stream(key: int, index: int) -> np.random.Generator:
    """The generator of chunk ``index`` of the batch with ``key``."""
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence([key, index])))


class Chunks:
    """Evaluate ``fn(start, stop, rng, scratch) -> values (stop − start,)`` over a batch.

    Parameters
    ----------
    chunk : int
        Items per chunk.
    workers : int, optional
        Threads (default: the cores this process may use); 1 runs in the caller's thread.
    """

    def __init__(self, chunk: int, workers: int | None = None) -> None:
        self.chunk = max(1, int(chunk))
        self.workers = _cores() if workers is None else max(1, int(workers))
        self.scratches = [Scratch() for _ in range(self.workers)]

    def run(
        self,
        fn: Callable[[int, int, np.random.Generator | None, Scratch], np.ndarray],
        total: int,
        rng: np.random.Generator | None,
        *,
        rows: int = 1,
    ) -> np.ndarray:
        """The values (total,) of every item.

        Of shape (rows, total) when ``fn`` returns ``rows`` values per item.
        """
        bounds = [(s, min(total, s + self.chunk)) for s in range(0, total, self.chunk)]
        key = None if rng is None else int(rng.integers(1 << 63))
        out = np.empty((rows, total))

        taken = iter(range(len(bounds)))
        lock = threading.Lock()

        def work(scratch: Scratch) -> None:
            while True:
                with lock:
                    i = next(taken, None)
                if i is None:
                    return
                start, stop = bounds[i]
                gen = None if key is None else _stream(key, i)
                out[:, start:stop] = fn(start, stop, gen, scratch)

        workers = min(self.workers, len(bounds))
        if workers == 1:
            work(self.scratches[0])
            return out[0] if rows == 1 else out
        pool, blas = _pool()
        with blas.limit(limits=1, user_api="blas"):  # type: ignore[attr-defined]
            futures = [pool.submit(work, self.scratches[w]) for w in range(workers)]
            for future in futures:
                future.result()
        return out[0] if rows == 1 else out
