"""One-step reads give exactly the rows a row-by-row read gives, or refuse."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from urbanstack.store.sqlite_rows import EXACT_REAL_LIMIT, register_row_functions, rows_at_once


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    register_row_functions(connection)
    connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, a, b)")
    yield connection
    connection.close()


def stored(conn: sqlite3.Connection, rows: list[tuple[Any, Any]]) -> None:
    conn.execute("DELETE FROM t")
    conn.executemany("INSERT INTO t (a, b) VALUES (?, ?)", rows)


def both_ways(conn: sqlite3.Connection, sql: str) -> tuple[list[list[Any]] | None, list[list[Any]]]:
    return rows_at_once(conn, sql, (), 3), [list(r) for r in conn.execute(sql)]


def same_values(left: list[list[Any]], right: list[list[Any]]) -> bool:
    """Equal, with each value of the same type and floats bit for bit (-0.0 included)."""
    if len(left) != len(right):
        return False
    for row_l, row_r in zip(left, right, strict=True):
        for x, y in zip(row_l, row_r, strict=True):
            if type(x) is not type(y) or x != y:
                return False
            if isinstance(x, float) and math.copysign(1, x) != math.copysign(1, y):
                return False
    return True


values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: abs(x) < EXACT_REAL_LIMIT),
    st.text(),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(values, values), max_size=20))
@example([(None, -0.0), (0.0, 5e-324)])  # zeros of both signs (printf writes both as 0.0)
@example([("a\x00b", 2**63 - 1), (-(2**63), 9.999999999999999e99)])
def test_rows_are_those_of_a_row_by_row_read(
    conn: sqlite3.Connection, rows: list[tuple[Any, Any]]
) -> None:
    stored(conn, rows)
    at_once, one_by_one = both_ways(conn, "SELECT k, a, b FROM t ORDER BY k")
    assert at_once is not None and same_values(at_once, one_by_one)


def test_the_order_of_the_query_is_kept(conn: sqlite3.Connection) -> None:
    stored(conn, [(i, f"row {i}") for i in range(50)])
    at_once, one_by_one = both_ways(conn, "SELECT k, a, b FROM t ORDER BY a DESC")
    assert at_once == one_by_one
    assert [r[1] for r in at_once or []] == list(range(49, -1, -1))


def test_grouped_rows_come_out_as_sqlite_groups_them(conn: sqlite3.Connection) -> None:
    stored(conn, [(i % 7, i * 0.1 + 0.05) for i in range(100)])
    sql = "SELECT a, sum(b), count(*) FROM t GROUP BY a"
    at_once, one_by_one = both_ways(conn, sql)
    assert at_once is not None and same_values(at_once, one_by_one)


def test_an_empty_result_is_an_empty_list(conn: sqlite3.Connection) -> None:
    stored(conn, [])
    assert rows_at_once(conn, "SELECT k, a, b FROM t", (), 3) == []


def test_real_zeros_keep_their_sign(conn: sqlite3.Connection) -> None:
    stored(conn, [(0.0, -0.0)])
    found = rows_at_once(conn, "SELECT k, a, b FROM t", (), 3)
    assert found is not None and same_values(found, [[1, 0.0, -0.0]])


def test_integer_columns_are_written_as_they_are(conn: sqlite3.Connection) -> None:
    stored(conn, [(i, i * 0.5) for i in range(5)])
    sql = "SELECT k, a, b FROM t ORDER BY k"
    at_once = rows_at_once(conn, sql, (), 3, integer_columns=(0, 1))
    assert at_once is not None and same_values(at_once, [list(r) for r in conn.execute(sql)])


@pytest.mark.parametrize("value", [b"\x00bytes", 1e100, -3e250, math.inf, -math.inf])
def test_a_value_json_cannot_carry_exactly_refuses(conn: sqlite3.Connection, value: Any) -> None:
    stored(conn, [(1, "fine"), (2, value)])
    assert rows_at_once(conn, "SELECT k, a, b FROM t ORDER BY k", (), 3) is None


def test_parameters_are_bound(conn: sqlite3.Connection) -> None:
    stored(conn, [(i, "x") for i in range(10)])
    found = rows_at_once(conn, "SELECT k, a, b FROM t WHERE a >= ? AND b = ?", (7, "x"), 3)
    assert [r[1] for r in found or []] == [7, 8, 9]


integers_or_none = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(integers_or_none, values), max_size=20))
@example([(1, 2.5), (3, 0.1 + 0.2)])  # as declared: one formatted string
@example([(1, 0.0), (2, -0.0), (3, 5e-324)])  # zeros, the smallest real: one string
@example([(1, 2.5), (2, 7), (None, "x")])  # an integer, text: the general way
@example([(1, 2.5), (2, 1e120)])  # a real printf does not write exactly: row by row
def test_rows_declared_numbers_are_those_of_a_row_by_row_read(
    conn: sqlite3.Connection, rows: list[tuple[Any, Any]]
) -> None:
    # column a declared integer (as it holds), b real: whatever b holds, the answer is exact
    stored(conn, rows)
    sql = "SELECT k, a, b FROM t ORDER BY k"
    at_once = rows_at_once(conn, sql, (), 3, integer_columns=(0, 1), real_columns=(2,))
    beyond = any(isinstance(b, float) and abs(b) >= EXACT_REAL_LIMIT for _, b in rows)
    assert (at_once is None) == beyond
    assert at_once is None or same_values(at_once, [list(r) for r in conn.execute(sql)])


def test_declared_reals_are_read_in_one_formatted_string(conn: sqlite3.Connection) -> None:
    stored(conn, [(i, i * 0.1 + 0.05) for i in range(100)] + [(100, 0.0), (101, -0.0)])
    sql = "SELECT k, a, b FROM t ORDER BY k"
    traced: list[str] = []
    conn.set_trace_callback(traced.append)
    try:
        at_once = rows_at_once(conn, sql, (), 3, integer_columns=(0, 1), real_columns=(2,))
    finally:
        conn.set_trace_callback(None)
    assert at_once is not None and same_values(at_once, [list(r) for r in conn.execute(sql)])
    assert len(traced) == 1 and "printf('[%d,%d,%s]'" in traced[0]
