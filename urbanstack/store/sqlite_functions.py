"""SQL functions the SQLite store registers, and how their errors reach the client.

SQLite reports a failing user function only as "user-defined function raised exception";
a function that fails with an NGSI-LD error (a client pattern too slow to match) records
it on its thread, and :func:`reraising_function_errors` raises it again in its place.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from urbanstack.ngsild.errors import NgsiLdError
from urbanstack.ngsild.patterns import pattern_search

T = TypeVar("T")
_function_error = threading.local()


def record_function_error(err: NgsiLdError) -> NgsiLdError:
    """Remember ``err`` as the reason the running SQL function fails; returns it to raise."""
    _function_error.error = err
    return err


def regexp(pattern: str, value: Any) -> bool:
    """SQL ``regexp(pattern, value)``: a client pattern found in a text value."""
    if not isinstance(value, str):
        return False
    try:
        return pattern_search(pattern, value)
    except NgsiLdError as err:
        raise record_function_error(err) from None


def reraising_function_errors(fn: Callable[[], T]) -> T:
    """``fn()``, raising the NGSI-LD error behind an SQL function's failure in its place."""
    _function_error.error = None
    try:
        return fn()
    except sqlite3.OperationalError:
        err = getattr(_function_error, "error", None)
        if err is not None:
            raise err from None
        raise
