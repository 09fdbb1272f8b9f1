"""Reading many rows in one SQLite step.

Python's ``sqlite3`` gives the interpreter lock up around every ``sqlite3_step``, that is
once per row, and takes it back afterwards. A reader thread fetching 40 rows while the
event loop is busy waits for the lock 40 times (up to the switch interval each), so a
query that takes 1 ms in SQLite took tens of milliseconds under load. :func:`rows_at_once`
makes SQLite build the whole result as one JSON document (one step, one wait) and decodes
it with orjson.

Only exact round trips are taken: integers and text go through JSON unchanged and reals
are written with 17 significant digits; a BLOB, a real too large for SQLite's decimal
conversion to be exact (|x| >= 1e100) or a real zero (its sign would be lost) makes the
function answer None and the caller reads the rows one by one as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

#: reals at least this large are not written exactly by SQLite's printf (measured: never
#: below 1e105 in 10^5 random doubles); such a result is read row by row
EXACT_REAL_LIMIT = 1e100


def _cell(column: str) -> str:
    # an inexact real (infinity included: printf writes "Inf") is left out, not written
    return (
        f"CASE typeof({column}) WHEN 'real' THEN CASE WHEN abs({column}) < {EXACT_REAL_LIMIT} "
        f"THEN json(printf('%!.17g', {column})) END WHEN 'blob' THEN NULL ELSE {column} END"
    )


def _inexact(column: str) -> str:
    # a CASE, not AND: SQLite may evaluate both sides, and abs() of the smallest integer
    # overflows; a real zero counts as inexact because printf writes -0.0 as 0.0 and no core
    # SQL function tells the two apart
    return (
        f"CASE typeof({column}) WHEN 'real' THEN "
        f"abs({column}) >= {EXACT_REAL_LIMIT} OR {column} = 0 "
        f"ELSE typeof({column}) = 'blob' END"
    )


def rows_at_once(
    conn: sqlite3.Connection, sql: str, params: Sequence[Any], width: int
) -> list[list[Any]] | None:
    """The rows of ``sql`` (a SELECT of ``width`` columns, any ORDER BY kept) as lists,
    fetched in one step; None when a value would not survive JSON exactly."""
    names = [f"c{i}" for i in range(width)]
    cells = ", ".join(_cell(n) for n in names)
    inexact = " OR ".join(_inexact(n) for n in names)
    wrapped = (
        f"WITH r({', '.join(names)}) AS ({sql}) "
        f"SELECT json_group_array(json_array({cells})), max({inexact}) FROM r"
    )
    document, lossy = conn.execute(wrapped, params).fetchone()
    if lossy:
        return None
    return orjson.loads(document)  # type: ignore[no-any-return]
