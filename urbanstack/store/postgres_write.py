"""Applying a list of entity changes in one PostgreSQL transaction, in bulk.

As on SQLite: load (and lock, ``FOR UPDATE``) every touched entity with one query, run
each change's ``apply`` in memory in order, then write the final state of each entity
once, with one statement per table (``unnest`` arrays: one round trip per table per
batch, not per entity). A new id taken meanwhile by another process (the insert's
``ON CONFLICT DO NOTHING`` returns fewer rows) makes the whole transaction run again,
then seeing and locking that row, so concurrent writers never lose an update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from urbanstack.ngsild.model import Entity
from urbanstack.store.base import ChangeResult, EntityChange
from urbanstack.store.changes import DELETED, Views, plan_history, run_changes, written_view
from urbanstack.store.postgres_history import delete_entity_history, insert_history
from urbanstack.store.postgres_index import geometry_rows, index_document

SEP = "\x1f"  # joins array items passed as one text (types, scopes): never in an IRI or scope


class Retry(Exception):
    """The transaction must run again: an id it creates was created meanwhile."""


#: rid, stored document (JSON text) and stored view (or None) of an entity
StoredRow = tuple[int, str, bytes | None]


async def load_current(
    conn: asyncpg.Connection, schema: str, ids: list[str]
) -> dict[str, StoredRow]:
    """rid, stored document and view of each existing id, locked until commit."""
    rows = await conn.fetch(
        f"SELECT rid, id, doc, view FROM {schema}.entities WHERE id = ANY($1::text[]) "
        "ORDER BY id FOR UPDATE",
        ids,
    )
    return {r["id"]: (r["rid"], r["doc"], r["view"]) for r in rows}


async def apply_changes(
    conn: asyncpg.Connection,
    schema: str,
    changes: Sequence[EntityChange],
    views: Views,
    keep_history_on_delete: bool,
    partitions: Any,
) -> list[ChangeResult]:
    """Run ``changes`` in order and persist the outcome and its history rows; see the
    module docstring. Raises :class:`Retry` when the transaction must run again."""
    stored = await load_current(conn, schema, list({c.entity_id: None for c in changes}))
    run = run_changes(changes, stored)
    latest, originals, results = run.latest, run.originals, run.results
    await _persist(conn, schema, stored, originals, latest, views)
    await _record_history(conn, schema, changes, results, keep_history_on_delete, partitions)
    return results


def _joined(items: Sequence[str]) -> str:
    return SEP.join(items)


async def _persist(
    conn: asyncpg.Connection,
    schema: str,
    stored: dict[str, StoredRow],
    originals: dict[str, Entity],
    latest: dict[str, Any],
    views: Views,
) -> None:
    deleted = [stored[i][0] for i, e in latest.items() if e is DELETED and i in stored]
    if deleted:  # their shapes go with them (ON DELETE CASCADE)
        await conn.execute(f"DELETE FROM {schema}.entities WHERE rid = ANY($1::bigint[])", deleted)
    updates: list[list[Any]] = [[] for _ in range(7)]
    inserts: list[list[Any]] = [[] for _ in range(8)]
    reshaped: list[int] = []
    shapes: dict[str, list[tuple[str, str]]] = {}
    for entity_id, entity in latest.items():
        if entity is DELETED:
            continue
        doc = orjson.dumps(entity).decode()
        row = stored.get(entity_id)
        stored_view = None if row is None else row[2]
        rendered = written_view(entity, originals.get(entity_id), stored_view, views)
        ix = orjson.dumps(index_document(entity)).decode()
        types = _joined(entity["type"])
        scopes = _joined(entity.get("scope", ()))
        new_shapes = geometry_rows(entity)
        if entity_id in stored:
            rid = stored[entity_id][0]
            for column, value in zip(
                updates,
                (rid, entity["modifiedAt"], types, scopes, doc, rendered, ix),
                strict=True,
            ):
                column.append(value)
            if geometry_rows(originals[entity_id]) != new_shapes:
                reshaped.append(rid)
                shapes[entity_id] = new_shapes
        else:
            row = (entity_id, types, scopes, entity["createdAt"], entity["modifiedAt"])
            for column, value in zip(inserts, (*row, doc, rendered, ix), strict=True):
                column.append(value)
            if new_shapes:
                shapes[entity_id] = new_shapes
    if updates[0]:
        await conn.execute(
            f"UPDATE {schema}.entities e SET modified_at = u.m, "
            "types = string_to_array(u.t, chr(31)), scopes = string_to_array(u.s, chr(31)), "
            "doc = u.d::json, view = u.v, ix = u.x::jsonb "
            "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], "
            "$6::bytea[], $7::text[]) AS u(rid, m, t, s, d, v, x) WHERE e.rid = u.rid",
            *updates,
        )
    rids = {i: stored[i][0] for i in latest if i in stored}
    if inserts[0]:
        created = await conn.fetch(
            f"INSERT INTO {schema}.entities "
            "(id, types, scopes, created_at, modified_at, doc, view, ix) "
            "SELECT u.id, string_to_array(u.t, chr(31)), string_to_array(u.s, chr(31)), "
            "u.c, u.m, u.d::json, u.v, u.x::jsonb "
            "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
            "$6::text[], $7::bytea[], $8::text[]) WITH ORDINALITY AS u(id, t, s, c, m, d, v, x, n) "
            "ORDER BY u.n ON CONFLICT (id) DO NOTHING RETURNING rid, id",
            *inserts,
        )
        if len(created) < len(inserts[0]):
            raise Retry  # created by another transaction since load_current
        rids.update({r["id"]: r["rid"] for r in created})
    if reshaped:
        await conn.execute(
            f"DELETE FROM {schema}.entity_geo WHERE rid = ANY($1::bigint[])", reshaped
        )
    geo_rows = [(rids[i], attr, g) for i, rows in shapes.items() for attr, g in rows]
    if geo_rows:
        await conn.execute(
            f"INSERT INTO {schema}.entity_geo (rid, attr, geom) "
            "SELECT u.r, u.a, ST_Force2D(ST_GeomFromGeoJSON(u.g)) "
            "FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(r, a, g)",
            [r[0] for r in geo_rows],
            [r[1] for r in geo_rows],
            [r[2] for r in geo_rows],
        )


async def _record_history(
    conn: asyncpg.Connection,
    schema: str,
    changes: Sequence[EntityChange],
    results: list[ChangeResult],
    keep_on_delete: bool,
    partitions: Any,
) -> None:
    """Append the history rows of the accepted changes (see :func:`plan_history`)."""
    plan = plan_history(changes, results, keep_on_delete)
    if plan.dropped:
        await delete_entity_history(conn, schema, sorted(plan.dropped))
    if plan.rows:
        await insert_history(conn, schema, plan.rows, plan.types, partitions)
