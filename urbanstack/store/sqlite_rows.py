"""Reading many rows in one SQLite step.

Python's ``sqlite3`` gives the interpreter lock up around every ``sqlite3_step``, that is
once per row, and takes it back afterwards. A reader thread fetching 40 rows while the
event loop is busy waits for the lock 40 times (up to the switch interval each), so a
query that takes 1 ms in SQLite took tens of milliseconds under load. :func:`rows_at_once`
makes SQLite build the whole result as one JSON document (one step, one wait) and decodes
it with orjson.

Only exact round trips are taken: integers and text go through JSON unchanged, reals are
written with 17 significant digits and a real zero with its sign (asked of the SQL function
:func:`register_row_functions` adds: SQLite's own conversions write -0.0 as 0.0); a BLOB or
a real too large for SQLite's decimal conversion to be exact (|x| >= 1e100) makes the
function answer None and the caller reads the rows one by one as before. Columns the
caller knows to hold integers (counts, period numbers) are written without the tests.
When the caller expects every column to hold an integer or a real (measures of a series
of numbers), each row is written by one ``printf`` instead (less than half the cost of
SQLite's JSON functions), and a value not of its column's type, a NULL or a huge real
sends the read to the general way.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

import orjson

#: reals at least this large are not written exactly by SQLite's printf (measured: never
#: below 1e105 in 10^5 random doubles); such a result is read row by row
EXACT_REAL_LIMIT = 1e100


def register_row_functions(conn: sqlite3.Connection) -> None:
    """Add the SQL function :func:`rows_at_once` needs to ``conn``: ``negative_zero(x)``,
    called for real zeros only (rare), since no core SQL function tells -0.0 from 0.0."""
    conn.create_function("negative_zero", 1, _negative_zero, deterministic=True)


def _negative_zero(value: Any) -> bool:
    return isinstance(value, float) and math.copysign(1.0, value) < 0


def _cell(column: str) -> str:
    # an inexact real (infinity included: printf writes "Inf") is left out, not written
    zero = f"CASE WHEN negative_zero({column}) THEN '-0.0' ELSE '0.0' END"
    return (
        f"CASE typeof({column}) WHEN 'real' THEN CASE WHEN {column} = 0 THEN json({zero}) "
        f"WHEN abs({column}) < {EXACT_REAL_LIMIT} THEN json(printf('%!.17g', {column})) END "
        f"WHEN 'blob' THEN NULL ELSE {column} END"
    )


def _inexact(column: str) -> str:
    # a CASE, not AND: SQLite may evaluate both sides, and abs() of the smallest integer
    # overflows
    return (
        f"CASE typeof({column}) WHEN 'real' THEN abs({column}) >= {EXACT_REAL_LIMIT} "
        f"ELSE typeof({column}) = 'blob' END"
    )


def rows_at_once(
    conn: sqlite3.Connection,
    sql: str,
    params: Sequence[Any],
    width: int,
    integer_columns: Collection[int] = (),
    real_columns: Collection[int] = (),
) -> list[list[Any]] | None:
    """The rows of ``sql`` (a SELECT of ``width`` columns, any ORDER BY kept) as lists,
    fetched in one step; None when a value would not survive JSON exactly. The columns
    numbered in ``integer_columns`` must hold only integers or NULL; those numbered in
    ``real_columns`` are expected to hold reals. ``conn`` needs
    :func:`register_row_functions`."""
    names = [f"c{i}" for i in range(width)]
    if real_columns and len({*integer_columns, *real_columns}) == width:
        found = _numbers_at_once(conn, sql, params, names, real_columns)
        if found is not None:
            return found
    cells = ", ".join(n if i in integer_columns else _cell(n) for i, n in enumerate(names))
    checked = [n for i, n in enumerate(names) if i not in integer_columns]
    inexact = " OR ".join(_inexact(n) for n in checked) or "0"
    return _document(conn, sql, params, names, f"json_group_array(json_array({cells}))", inexact)


def _document(
    conn: sqlite3.Connection,
    sql: str,
    params: Sequence[Any],
    names: list[str],
    document: str,
    refused: str,
) -> list[list[Any]] | None:
    """The rows of ``sql`` as one JSON ``document`` (an aggregate over its rows, named
    ``names``), or None when ``refused`` holds for any row."""
    wrapped = f"WITH r({', '.join(names)}) AS ({sql}) SELECT {document}, max({refused}) FROM r"
    text, refuse = conn.execute(wrapped, params).fetchone()
    if refuse:
        return None
    return orjson.loads(text)  # type: ignore[no-any-return]


def _numbers_at_once(
    conn: sqlite3.Connection,
    sql: str,
    params: Sequence[Any],
    names: list[str],
    real_columns: Collection[int],
) -> list[list[Any]] | None:
    """The rows as :func:`rows_at_once` reads them, each row written by one ``printf``
    (integers with %d, reals with 17 digits, zeros with their sign); None when a value is
    not of its column's type, is NULL, or is a real printf does not write exactly."""
    formats, cells, odd = [], [], []
    for i, n in enumerate(names):
        if i in real_columns:
            formats.append("%s")
            zero = f"CASE WHEN negative_zero({n}) THEN '-0.0' ELSE '0.0' END"
            cells.append(f"CASE WHEN {n} = 0 THEN {zero} ELSE printf('%!.17g', {n}) END")
            # a CASE: abs() of an unexpected smallest integer would overflow
            odd.append(
                f"CASE typeof({n}) WHEN 'real' THEN abs({n}) >= {EXACT_REAL_LIMIT} ELSE 1 END"
            )
        else:
            formats.append("%d")
            cells.append(n)
            odd.append(f"typeof({n}) <> 'integer'")
    row = f"printf('[{','.join(formats)}]', {', '.join(cells)})"
    document = f"'[' || coalesce(group_concat({row}, ','), '') || ']'"
    return _document(conn, sql, params, names, document, " OR ".join(odd))
