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
from dataclasses import dataclass, field
from typing import Any

import orjson

from urbanstack.ngsild.history import HistoryRow, changed_instances
from urbanstack.ngsild.model import Entity
from urbanstack.store.base import (
    ChangeResult,
    EntityChange,
    ViewRenderer,
    ViewUpdater,
)
from urbanstack.store.changes import DELETED, Views, plan_history, run_changes, written_view
from urbanstack.store.sqlite_history import (
    RecentTally,
    _chunks,
    delete_entity_history,
    ensure_entities,
    insert_numbered,
    insert_rows,
)
from urbanstack.store.sqlite_index import TYPED, ValueRow, geo_values, value_rows


def geometry_row(geometry: dict[str, Any]) -> tuple[bytes, tuple[float, float, float, float]]:
    """WKB and bounds of a GeoJSON geometry (Points without shapely: they are most of them)."""
    if geometry.get("type") == "Point":
        x, y = geometry["coordinates"][0], geometry["coordinates"][1]
        return struct.pack("<BIdd", 1, 1, float(x), float(y)), (x, y, x, y)
    from urbanstack.ngsild.geo import geometry_bounds, geometry_to_wkb

    return geometry_to_wkb(geometry), geometry_bounds(geometry)


#: rid, stored document and stored view (or None) of an entity
StoredRow = tuple[int, bytes, bytes | None]


def load_current(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, StoredRow]:
    """rid, stored document and view of each existing id."""
    found: dict[str, StoredRow] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for rid, entity_id, doc, view in conn.execute(
            f"SELECT rid, id, doc, view FROM entities WHERE id IN ({marks})", chunk
        ):
            found[entity_id] = (rid, doc, view)
    return found


def existing_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are stored entities."""
    found: set[str] = set()
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        found.update(
            r[0] for r in conn.execute(f"SELECT id FROM entities WHERE id IN ({marks})", chunk)
        )
    return found


def delete_shapes(conn: sqlite3.Connection, rids: Sequence[int]) -> None:
    """Remove the geo and R*Tree rows of the given entities."""
    for chunk in _chunks(rids):
        marks = ",".join("?" * len(chunk))
        gids = conn.execute(f"SELECT gid FROM geo WHERE rid IN ({marks})", chunk).fetchall()
        if gids:
            # by rowid: an IN (subquery) on an R*Tree scans the whole tree
            conn.executemany("DELETE FROM geo_rtree WHERE gid = ?", gids)
            conn.execute(f"DELETE FROM geo WHERE rid IN ({marks})", chunk)


@dataclass
class IndexRows:
    """Everything the index tables hold for one entity (paths not yet interned)."""

    types: set[str] = field(default_factory=set)
    scopes: set[str] = field(default_factory=set)
    presence: dict[tuple[str, str], int] = field(default_factory=dict)  # (path, kind) -> n
    values: set[tuple[str, str, Any]] = field(default_factory=set)  # (typed path, type, value)
    shapes: list[tuple[str, str]] = field(default_factory=list)  # (attribute, geometry JSON)


def _shapes(entity: Entity) -> list[tuple[str, str]]:
    return [(iri, orjson.dumps(g).decode()) for iri, g in geo_values(entity)]


def index_rows(entity: Entity, only: Iterable[str] | None = None) -> IndexRows:
    """The index rows of ``entity``; with ``only``, the value and presence rows of those
    attributes alone (types, scopes and shapes are always whole)."""
    presence, values, _ = _split_rows(value_rows(entity, only, system_times=False))
    return IndexRows(
        types=set(entity["type"]),
        scopes=set(entity.get("scope", ())),
        presence=presence,
        values=_typed_values(values, entity["type"]),
        shapes=_shapes(entity),
    )


def _split_rows(
    found: list[ValueRow],
) -> tuple[dict[tuple[str, str], int], set[ValueRow], bool]:
    """(presence counts, value rows, whether a GeoProperty is among them) in one pass."""
    counts: dict[tuple[str, str], int] = {}
    values: set[ValueRow] = set()
    geo = False
    for row in found:
        if row[1] is None:
            kind = row[2] or "Property"
            key = (row[0], kind)
            counts[key] = counts.get(key, 0) + 1
            if kind == "GeoProperty":
                geo = True
        else:
            values.add(row)
    return counts, values, geo


def _typed_values(found: Iterable[ValueRow], types: list[str]) -> set[tuple[str, str, Any]]:
    return {
        (path if kind is None else path + TYPED + kind, entity_type, val)
        for path, val, kind in found
        for entity_type in types
    }


def changed_rows(old: Entity, new: Entity) -> tuple[IndexRows, IndexRows]:
    """(rows to add, rows to remove) turning ``old`` into ``new``: only the attributes
    whose instances differ are re-indexed, and shapes only when a changed attribute is a
    GeoProperty (sub-attributes included), so an update costs what it changes."""
    old_attrs, new_attrs = old["attrs"], new["attrs"]
    if old["type"] != new["type"]:  # value rows carry the types: all of them change
        return diff_rows(index_rows(old), index_rows(new))
    added, removed = IndexRows(), IndexRows()
    if old.get("scope") != new.get("scope"):
        old_scopes, new_scopes = set(old.get("scope", ())), set(new.get("scope", ()))
        added.scopes, removed.scopes = new_scopes - old_scopes, old_scopes - new_scopes
    changed = [
        iri
        for iri, instances in new_attrs.items()
        if (before_instances := old_attrs.get(iri)) is not instances
        and before_instances != instances
    ]
    changed += [iri for iri in old_attrs if iri not in new_attrs]
    if not changed:
        return added, removed
    old_presence, old_values, old_geo = _split_rows(value_rows(old, changed, system_times=False))
    new_presence, new_values, new_geo = _split_rows(value_rows(new, changed, system_times=False))
    if old_presence != new_presence:
        for key in old_presence.keys() | new_presence.keys():
            if old_presence.get(key) != new_presence.get(key):
                if key in new_presence:
                    added.presence[key] = new_presence[key]
                if key in old_presence:
                    removed.presence[key] = old_presence[key]
    # compare the raw rows first: only the few that differ get one typed row per type
    if old_values != new_values:
        types = new["type"]
        added.values = _typed_values(new_values - old_values, types)
        removed.values = _typed_values(old_values - new_values, types)
    if old_geo or new_geo:
        old_shapes, new_shapes = _shapes(old), _shapes(new)
        if old_shapes != new_shapes:
            added.shapes, removed.shapes = new_shapes, old_shapes
    return added, removed


def _write_index(
    conn: sqlite3.Connection,
    pid: Callable[[str], int],
    added: list[tuple[int, IndexRows]],
    removed: list[tuple[int, IndexRows]],
) -> None:
    """Delete the ``removed`` rows and insert the ``added`` ones, one statement per table."""
    for sql, rows in (
        ("DELETE FROM entity_types WHERE type = ? AND rid = ?", _types(removed)),
        ("DELETE FROM entity_scopes WHERE scope = ? AND rid = ?", _scopes(removed)),
        (
            "DELETE FROM attr_presence WHERE pid = ? AND rid = ? AND kind = ?",
            _presence_keys(removed, pid),
        ),
        (
            "DELETE FROM attr_values WHERE pid = ? AND tid = ? AND val = ? AND rid = ?",
            _values(removed, pid),
        ),
        ("INSERT INTO entity_types (type, rid) VALUES (?, ?)", _types(added)),
        ("INSERT OR IGNORE INTO entity_scopes (scope, rid) VALUES (?, ?)", _scopes(added)),
        ("INSERT INTO attr_presence (pid, rid, kind, n) VALUES (?,?,?,?)", _presence(added, pid)),
        (
            "INSERT OR IGNORE INTO attr_values (pid, tid, val, rid) VALUES (?,?,?,?)",
            _values(added, pid),
        ),
    ):
        if rows:
            conn.executemany(sql, rows)
    gone = [rid for rid, rows in removed if rows.shapes]
    if gone:
        delete_shapes(conn, gone)
    shapes = [
        (rid, pid(iri), *geometry_row(orjson.loads(geometry)))
        for rid, rows in added
        for iri, geometry in rows.shapes
    ]
    if shapes:
        gids = insert_numbered(
            conn,
            "geo",
            "gid",
            ("rid", "pid", "wkb"),
            [(rid, shape_pid, wkb) for rid, shape_pid, wkb, _ in shapes],
        )
        conn.executemany(
            "INSERT INTO geo_rtree (gid, minx, maxx, miny, maxy) VALUES (?,?,?,?,?)",
            [
                (gid, minx, maxx, miny, maxy)
                for gid, (_, _, _, (minx, miny, maxx, maxy)) in zip(gids, shapes, strict=True)
            ],
        )


def _types(items: list[tuple[int, IndexRows]]) -> list[tuple[str, int]]:
    return [(t, rid) for rid, rows in items for t in rows.types]


def _scopes(items: list[tuple[int, IndexRows]]) -> list[tuple[str, int]]:
    return [(s, rid) for rid, rows in items for s in rows.scopes]


def _presence_keys(items: list[tuple[int, IndexRows]], pid: Callable[[str], int]) -> list[Any]:
    return [(pid(path), rid, kind) for rid, rows in items for path, kind in rows.presence]


def _presence(items: list[tuple[int, IndexRows]], pid: Callable[[str], int]) -> list[Any]:
    return [
        (pid(path), rid, kind, n)
        for rid, rows in items
        for (path, kind), n in rows.presence.items()
    ]


def _values(items: list[tuple[int, IndexRows]], pid: Callable[[str], int]) -> list[Any]:
    return [
        (pid(path), pid(entity_type), val, rid)
        for rid, rows in items
        for path, entity_type, val in rows.values
    ]


def diff_rows(old: IndexRows, new: IndexRows) -> tuple[IndexRows, IndexRows]:
    """(rows to add, rows to remove) turning ``old`` into ``new``; shapes move as a whole."""
    changed_presence = {
        k
        for k in old.presence.keys() | new.presence.keys()
        if old.presence.get(k) != new.presence.get(k)
    }
    shapes_changed = old.shapes != new.shapes
    added = IndexRows(
        types=new.types - old.types,
        scopes=new.scopes - old.scopes,
        presence={k: new.presence[k] for k in changed_presence if k in new.presence},
        values=new.values - old.values,
        shapes=new.shapes if shapes_changed else [],
    )
    removed = IndexRows(
        types=old.types - new.types,
        scopes=old.scopes - new.scopes,
        presence={k: old.presence[k] for k in changed_presence if k in old.presence},
        values=old.values - new.values,
        shapes=old.shapes if shapes_changed else [],
    )
    return added, removed


#: document, view, index rows and history rows of a new entity
Prepared = tuple[bytes, bytes | None, IndexRows, list[HistoryRow]]


def prepare_new(entity: Entity, view: ViewRenderer | None) -> Prepared:
    """What writing ``entity`` as a new entity needs, computed ahead of the transaction."""
    return (
        orjson.dumps(entity),
        view(entity) if view is not None else None,
        index_rows(entity),
        changed_instances(None, entity),
    )


def apply_changes(
    conn: sqlite3.Connection,
    changes: Sequence[EntityChange],
    pid: Callable[[str], int],
    view: ViewRenderer | None = None,
    prepared: dict[int, Prepared] | None = None,
    keep_history_on_delete: bool = True,
    view_update: ViewUpdater | None = None,
    recent_history: RecentTally | None = None,
) -> list[ChangeResult]:
    """Run ``changes`` in order and persist the outcome and its history rows (appended to
    ``recent_instances`` and counted in ``recent_history`` when given, else straight into
    ``attr_instances``); see the module docstring."""
    stored = load_current(conn, list({c.entity_id: None for c in changes}))
    run = run_changes(changes, stored)
    latest, originals, results = run.latest, run.originals, run.results
    viewless = {c.entity_id for c in changes if not c.store_view}
    if viewless:  # an entity keeps its view when any change to it asks for one
        viewless -= {c.entity_id for c in changes if c.store_view}
    views = (view, view_update)
    _persist(conn, stored, originals, latest, pid, views, prepared or {}, viewless)
    _record_history(
        conn, pid, changes, results, keep_history_on_delete, prepared or {}, recent_history
    )
    return results


def _record_history(
    conn: sqlite3.Connection,
    pid: Callable[[str], int],
    changes: Sequence[EntityChange],
    results: list[ChangeResult],
    keep_on_delete: bool,
    prepared: dict[int, Prepared],
    recent: RecentTally | None,
) -> None:
    """Append the history rows of the accepted changes (see :func:`plan_history`); a new
    entity's rows may have been prepared ahead, on the event loop."""

    def ready_rows(result: ChangeResult) -> list[HistoryRow] | None:
        ready = prepared.get(id(result.new)) if result.old is None else None
        return None if ready is None else ready[3]

    plan = plan_history(changes, results, keep_on_delete, ready_rows)
    if plan.dropped:
        delete_entity_history(conn, sorted(plan.dropped))
    if plan.rows:
        eids = ensure_entities(conn, {i: plan.types.get(i, []) for i in plan.rows})
        by_entity = [(eids[i], rows) for i, rows in plan.rows.items()]
        insert_rows(conn, pid, by_entity, recent=recent)


def _persist(
    conn: sqlite3.Connection,
    stored: dict[str, StoredRow],
    originals: dict[str, Entity],
    latest: dict[str, Any],
    pid: Callable[[str], int],
    views: Views,
    prepared: dict[int, Prepared],
    viewless: set[str],
) -> None:
    added: list[tuple[int, IndexRows]] = []
    removed: list[tuple[int, IndexRows]] = []
    deleted = [i for i, e in latest.items() if e is DELETED and i in stored]
    for entity_id in deleted:
        removed.append((stored[entity_id][0], index_rows(originals[entity_id])))
    if deleted:
        conn.executemany("DELETE FROM entities WHERE rid = ?", [(stored[i][0],) for i in deleted])
    updates = []
    fresh: list[tuple[Any, ...]] = []  # new entities' columns, rid aside
    for entity_id, entity in latest.items():
        if entity is DELETED:
            continue
        ready = prepared.get(id(entity)) if entity_id not in stored else None
        if ready is not None:
            doc, rendered, rows = ready[:3]
        else:
            doc = orjson.dumps(entity)
            if entity_id in viewless:
                rendered = None  # rendered from the document when read
            else:
                row = stored.get(entity_id)
                stored_view = None if row is None else row[2]
                rendered = written_view(entity, originals.get(entity_id), stored_view, views)
            rows = None
        if entity_id in stored:
            rid = stored[entity_id][0]
            updates.append((entity["modifiedAt"], doc, rendered, rid))
            # only the rows that differ: an attribute update touches a few rows, not all
            plus, minus = changed_rows(originals[entity_id], entity)
            added.append((rid, plus))
            removed.append((rid, minus))
        else:
            fresh.append((entity_id, entity["createdAt"], entity["modifiedAt"], doc, rendered))
            added.append((0, rows or index_rows(entity)))  # rid set below
    if fresh:
        rids = insert_numbered(
            conn,
            "entities",
            "rid",
            ("id", "created_at", "modified_at", "doc", "view"),
            fresh,
        )
        numbered = iter(rids)
        added = [(rid or next(numbered), rows) for rid, rows in added]
    if updates:
        conn.executemany(
            "UPDATE entities SET modified_at = ?, doc = ?, view = ? WHERE rid = ?", updates
        )
    _write_index(conn, pid, added, removed)
