"""Process-wide tuning applied by the long-running commands (``serve``, ``demo``)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from urbanstack.settings import Settings

LOGGER = logging.getLogger(__name__)

#: allocations between young-generation collections (CPython's default is 700): parsing a
#: request builds thousands of short-lived dicts, and at 700 the collector ran many times
#: per request, scanning objects that were about to be freed anyway
GC_THRESHOLDS = (50_000, 20, 100)

#: the CPUs the process could use when it was tuned, and the one its event loop and SQLite
#: writer share (None: no pinning)
_starting_cpus: frozenset[int] | None = None
_serving_cpu: int | None = None


def tune_garbage_collector() -> None:
    """Collect less often, and never re-scan what exists at start-up (modules, settings,
    caches): measured 20 % less CPU per ingested measure and per batch-upserted entity."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def pin_serving_threads(settings: Settings) -> int | None:
    """With ``cpu_pinning=auto``, the SQLite store and 2 or more CPUs, run this thread (the
    event loop's) on one CPU, where the SQLite writer joins it (:func:`pin_serving_thread`);
    the CPU chosen, or None.

    The two threads hand Python's interpreter lock to each other at every statement the
    writer runs; across two CPUs each hand-over wakes the other CPU and moves the working
    data between caches. On one CPU, updates measured +12-24 % (``bench/pinning.py``:
    alternating runs, 10 connections). Threads that run SQL without the lock (the SQLite
    readers) and the MQTT client process go back to every CPU (:func:`release_thread`).
    The CPU taken is the one the thread runs on now (several processes started on one
    machine land on different CPUs), else the highest-numbered; `taskset` before ``serve``
    chooses among which CPUs."""
    global _starting_cpus, _serving_cpu
    from urbanstack.store import store_scheme

    if settings.cpu_pinning != "auto" or store_scheme(settings.store) != "sqlite":
        return None
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = frozenset(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    current = _current_cpu()
    chosen = current if current in cpus else max(cpus)
    try:
        os.sched_setaffinity(0, {chosen})
    except OSError as exc:  # a sandbox may forbid it: serve unpinned
        LOGGER.warning("cannot pin the serving threads to CPU %d (%s): not pinned", chosen, exc)
        return None
    _starting_cpus, _serving_cpu = cpus, chosen
    return _serving_cpu


def _current_cpu() -> int | None:
    """The CPU the calling thread last ran on (Linux), or None."""
    try:
        with open("/proc/thread-self/stat") as stat:
            # fields after "pid (comm)": the 39th field of the line, "processor", is 37th here
            return int(stat.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def pin_serving_thread() -> None:
    """Run the calling thread on the serving CPU, if :func:`pin_serving_threads` chose one."""
    if _serving_cpu is not None:
        with contextlib.suppress(OSError):  # pinning is an optimisation, never a failure
            os.sched_setaffinity(0, {_serving_cpu})


def release_thread() -> None:
    """Let the calling thread (and what it starts) run on every CPU the process started
    with again."""
    if _starting_cpus is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, _starting_cpus)


def serving_cpu() -> int | None:
    """The CPU the event loop and the SQLite writer run on, or None (not pinned)."""
    return _serving_cpu


def starting_cpus() -> frozenset[int] | None:
    """The CPUs the process started with, when it pinned its serving threads (else None)."""
    return _starting_cpus


def tune_process(settings: Settings) -> None:
    """Everything a serving process sets once: the collector (above), the interpreter
    lock's switch interval, and the serving threads' CPU (:func:`pin_serving_threads`).
    SQLite releases the lock on every row it steps through; with CPython's 5 ms default,
    the writer or a reader thread waits up to 5 ms for the lock back after each row while
    the event loop works (measured at 1 ms: +15-30 % creates, updates and batch upserts,
    +30 % aggregated temporal reads)."""
    tune_garbage_collector()
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    pin_serving_threads(settings)
