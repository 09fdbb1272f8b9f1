"""Running one group of queued writes inside the writer's open transaction.

Each write must succeed or fail on its own. A savepoint per write gives that, but costs
two statements and a copy of every page the write touches first (the statement journal),
about a fifth of an entity create. Writes almost never fail as a whole (a refused entity
change is a result, not an exception), so a group first runs without savepoints; if one
write raises, the transaction is rolled back and the group runs again, each write in its
own savepoint. Running a write twice is safe: the storage contract lets stores retry
``EntityChange.apply``, and every write function only reads and writes the database.

Consecutive writes that carry ``joint`` work (entity changes) first run as one call of
``run_joint``: ten single-entity requests then cost one SELECT, one ``executemany`` per
table and far fewer hand-overs of the interpreter lock than ten separate runs.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from urbanstack.ngsild.errors import NgsiLdError
from urbanstack.store.base import StoreError
from urbanstack.store.sqlite_paths import WritePaths

LOGGER = logging.getLogger("urbanstack.store.sqlite")


class WriteTask(Protocol):
    """What the writer runs: ``fn(conn)`` (its value or exception is the task's outcome);
    ``joint``, when not None, lets ``run_joint`` run it together with its neighbours."""

    fn: Callable[[sqlite3.Connection], Any]
    joint: Any


T = TypeVar("T", bound=WriteTask)
#: runs consecutive joint tasks in one go; returns each task's value, in order
JointRunner = Callable[[sqlite3.Connection, Sequence[Any]], list[Any]]


def run_tasks(
    conn: sqlite3.Connection,
    paths: WritePaths,
    tasks: Sequence[T],
    run_joint: JointRunner | None = None,
) -> list[tuple[T, bool, Any]]:
    """(task, ok, value or error) of each task, run in order in the open transaction
    (which it may roll back and begin again; a failure to do so is raised)."""
    mark = paths.mark()
    outcomes: list[tuple[T, bool, Any]] = []
    try:
        for run in _runs(tasks) if run_joint is not None else [[t] for t in tasks]:
            if len(run) == 1:
                outcomes.append((run[0], True, run[0].fn(conn)))
                continue
            assert run_joint is not None
            values = run_joint(conn, run)
            outcomes += [(task, True, value) for task, value in zip(run, values, strict=True)]
        return outcomes
    except BaseException:
        conn.execute("ROLLBACK")
        paths.rollback(mark)
        conn.execute("BEGIN IMMEDIATE")
    return _run_isolated(conn, paths, tasks)


def _runs(tasks: Sequence[T]) -> list[list[T]]:
    """``tasks`` cut into runs: consecutive joint tasks together, every other task alone."""
    runs: list[list[T]] = []
    for task in tasks:
        if runs and task.joint is not None and runs[-1][-1].joint is not None:
            runs[-1].append(task)
        else:
            runs.append([task])
    return runs


def _run_isolated(
    conn: sqlite3.Connection, paths: WritePaths, tasks: Sequence[T]
) -> list[tuple[T, bool, Any]]:
    outcomes: list[tuple[T, bool, Any]] = []
    for task in tasks:
        conn.execute("SAVEPOINT task")
        mark = paths.mark()
        try:
            value = task.fn(conn)
            conn.execute("RELEASE task")
            outcomes.append((task, True, value))
        except BaseException as exc:
            conn.execute("ROLLBACK TO task")
            conn.execute("RELEASE task")
            paths.rollback(mark)
            if not isinstance(exc, NgsiLdError):
                LOGGER.exception("write failed")
                exc = StoreError(f"Write failed: {exc}", exc)
            outcomes.append((task, False, exc))
    return outcomes
