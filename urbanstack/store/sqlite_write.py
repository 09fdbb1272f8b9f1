"""Applying a list of entity changes on the SQLite writer connection, in bulk.

Three phases: load every touched entity with one query per chunk, run each change's
``apply`` in memory in order (a later change to the same id sees the earlier one's
result), then write the final state of each entity once, index rows with one
``executemany`` per table. A refused change (``NgsiLdError`` from ``apply``) writes
nothing for that change and does not affect the others.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from urbanstack.ngsild.errors import NgsiLdError
from urbanstack.ngsild.model import Entity
from urbanstack.store.base import ChangeResult, Delete, EntityChange, Keep, Write
from urbanstack.store.sqlite_index import geo_values, typed_path, value_rows

CHUNK = 500
_DELETED = object()


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def geometry_row(geometry: dict[str, Any]) -> tuple[bytes, tuple[float, float, float, float]]:
    """WKB and bounds of a GeoJSON geometry (Points without shapely: they are most of them)."""
    if geometry.get("type") == "Point":
        x, y = geometry["coordinates"][0], geometry["coordinates"][1]
        return struct.pack("<BIdd", 1, 1, float(x), float(y)), (x, y, x, y)
    from urbanstack.ngsild.geo import geometry_bounds, geometry_to_wkb

    return geometry_to_wkb(geometry), geometry_bounds(geometry)


def load_current(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
    """rid and stored document of each existing id."""
    found: dict[str, tuple[int, bytes]] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for rid, entity_id, doc in conn.execute(
            f"SELECT rid, id, doc FROM entities WHERE id IN ({marks})", chunk
        ):
            found[entity_id] = (rid, doc)
    return found


def unindex(conn: sqlite3.Connection, rids: Sequence[int]) -> None:
    """Remove every index row of the given entities."""
    for chunk in _chunks(rids):
        marks = ",".join("?" * len(chunk))
        for table in ("entity_types", "entity_scopes", "attr_values", "attr_presence"):
            conn.execute(f"DELETE FROM {table} WHERE rid IN ({marks})", chunk)
        gids = conn.execute(f"SELECT gid FROM geo WHERE rid IN ({marks})", chunk).fetchall()
        if gids:
            # by rowid: an IN (subquery) on an R*Tree scans the whole tree
            conn.executemany("DELETE FROM geo_rtree WHERE gid = ?", gids)
            conn.execute(f"DELETE FROM geo WHERE rid IN ({marks})", chunk)


def index(
    conn: sqlite3.Connection, entities: Sequence[tuple[int, Entity]], pid: Callable[[str], int]
) -> None:
    """Insert the index rows of the given (rid, entity) pairs."""
    types: list[tuple[str, int]] = []
    scopes: list[tuple[str, int]] = []
    values: list[tuple[int, Any, int]] = []
    presence: dict[tuple[int, int, str], int] = {}
    for rid, entity in entities:
        types += [(t, rid) for t in entity["type"]]
        scopes += [(s, rid) for s in entity.get("scope", ())]
        for path, val, kind in value_rows(entity):
            if val is None:
                key = (pid(path), rid, kind)
                presence[key] = presence.get(key, 0) + 1  # type: ignore[index]
            else:
                values.append((pid(typed_path(path, kind)), val, rid))
    conn.executemany("INSERT INTO entity_types (type, rid) VALUES (?, ?)", types)
    if scopes:
        conn.executemany("INSERT OR IGNORE INTO entity_scopes (scope, rid) VALUES (?, ?)", scopes)
    conn.executemany(
        "INSERT INTO attr_presence (pid, rid, kind, n) VALUES (?,?,?,?)",
        [(*key, n) for key, n in presence.items()],
    )
    conn.executemany("INSERT OR IGNORE INTO attr_values (pid, val, rid) VALUES (?,?,?)", values)
    for rid, entity in entities:
        for iri, geometry in geo_values(entity):
            wkb, (minx, miny, maxx, maxy) = geometry_row(geometry)
            gid = conn.execute(
                "INSERT INTO geo (rid, pid, wkb) VALUES (?, ?, ?)", (rid, pid(iri), wkb)
            ).lastrowid
            conn.execute(
                "INSERT INTO geo_rtree (gid, minx, maxx, miny, maxy) VALUES (?,?,?,?,?)",
                (gid, minx, maxx, miny, maxy),
            )


def apply_changes(
    conn: sqlite3.Connection, changes: Sequence[EntityChange], pid: Callable[[str], int]
) -> list[ChangeResult]:
    """Run ``changes`` in order and persist the outcome; see the module docstring."""
    stored = load_current(conn, list({c.entity_id: None for c in changes}))
    latest: dict[str, Any] = {}  # id -> entity dict, or _DELETED, after the changes so far
    results: list[ChangeResult] = []
    for change in changes:
        entity_id = change.entity_id
        if entity_id in latest:
            before = latest[entity_id]
            raw = None if before is _DELETED else orjson.dumps(before)
        else:
            row = stored.get(entity_id)
            raw = row[1] if row else None
        # two decoded copies: apply may mutate ``current``, ``old`` is reported as it was
        old = None if raw is None else orjson.loads(raw)
        current = None if raw is None else orjson.loads(raw)
        try:
            outcome = change.apply(current)
        except NgsiLdError as err:
            results.append(ChangeResult(entity_id, error=err))
            continue
        if isinstance(outcome, Write):
            latest[entity_id] = outcome.entity
            results.append(ChangeResult(entity_id, outcome.result, old=old, new=outcome.entity))
        elif isinstance(outcome, Delete):
            latest[entity_id] = _DELETED
            results.append(ChangeResult(entity_id, outcome.result, old=old, new=None))
        elif isinstance(outcome, Keep):
            results.append(ChangeResult(entity_id, outcome.result, old=old, new=old))
        else:
            raise TypeError(f"apply returned {outcome!r}")
    _persist(conn, stored, latest, pid)
    return results


def _persist(
    conn: sqlite3.Connection,
    stored: dict[str, tuple[int, bytes]],
    latest: dict[str, Any],
    pid: Callable[[str], int],
) -> None:
    replaced = [stored[i][0] for i in latest if i in stored]
    if replaced:
        unindex(conn, replaced)
    deleted = [(stored[i][0],) for i, e in latest.items() if e is _DELETED and i in stored]
    if deleted:
        conn.executemany("DELETE FROM entities WHERE rid = ?", deleted)
    updates = [
        (e["modifiedAt"], orjson.dumps(e), stored[i][0])
        for i, e in latest.items()
        if e is not _DELETED and i in stored
    ]
    if updates:
        conn.executemany("UPDATE entities SET modified_at = ?, doc = ? WHERE rid = ?", updates)
    to_index: list[tuple[int, Entity]] = [
        (stored[i][0], e) for i, e in latest.items() if e is not _DELETED and i in stored
    ]
    for entity_id, entity in latest.items():
        if entity is _DELETED or entity_id in stored:
            continue
        rid = conn.execute(
            "INSERT INTO entities (id, created_at, modified_at, doc) VALUES (?,?,?,?)",
            (entity_id, entity["createdAt"], entity["modifiedAt"], orjson.dumps(entity)),
        ).lastrowid
        to_index.append((rid, entity))  # type: ignore[arg-type]
    if to_index:
        index(conn, to_index, pid)
