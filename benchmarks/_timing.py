"""Timing helper shared by the benchmark scripts (run as `python benchmarks/bench_*.py`)."""

from __future__ import annotations

import time


def best_time(fn, repeat: int = 5) -> float:
    """Best wall time of ``fn()`` over ``repeat`` runs (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def best_times(cases: dict, rounds: int) -> dict:
    """Best wall time of each callable, the cases run in turn within every round, so that
    load on a shared machine hits them alike (a ratio of two of them stays fair)."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for key, fn in cases.items():
            start = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def report_targets(rows, notes) -> None:
    """Print a loud line naming every missed target (row[0] = name, row[5] = met), then notes."""
    missed = [row[0] for row in rows if row[5] is False]
    if missed:
        print("TARGET MISSED: " + "; ".join(missed))
    for note in notes:
        print("note: " + note)
