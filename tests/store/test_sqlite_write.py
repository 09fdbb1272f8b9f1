"""The SQLite writer's shortcuts keep what the straightforward way gives: incremental index
rows equal a rebuild from the stored documents, batch numbering equals one insert at a
time, and a failing write in a group leaves no trace (not even an interned path)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from urbanstack.ngsild.errors import AlreadyExists
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import Entity, merge_instance, parse_entity, parse_instance, touch
from urbanstack.ngsild.representation import render_default_view, update_default_view
from urbanstack.store.base import Delete, EntityChange, StoreError, Write
from urbanstack.store.sqlite import SCHEMA_VERSION, SQLiteStore
from urbanstack.store.sqlite_history import insert_numbered
from urbanstack.store.sqlite_paths import WritePaths
from urbanstack.store.sqlite_tasks import run_tasks
from urbanstack.store.sqlite_write import geometry_row, index_rows

pytestmark = pytest.mark.anyio
TERMS = core_term_map()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def body(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:Sensor:{n}",
        "type": ["Sensor", "Device"] if n % 3 == 0 else "Sensor",
        "name": {"type": "Property", "value": f"sensor {n}"},
        "seen": {"type": "Property", "value": "2026-01-02T03:04:05Z"},
        "temperature": [
            {"type": "Property", "value": n / 2, "unitCode": "CEL", "datasetId": "urn:d:a"},
            {
                "type": "Property",
                "value": n + 0.5,
                "observedAt": "2026-01-01T00:00:00Z",
                "datasetId": "urn:d:b",
            },
        ],
        "battery": {
            "type": "Property",
            "value": 0.5,
            "reliability": {"type": "Property", "value": True},
        },
        "owner": {"type": "Relationship", "object": f"urn:ngsi-ld:Owner:{n % 4}"},
        "label": {"type": "LanguageProperty", "languageMap": {"en": "a", "vi": "b"}},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [107.5 + n / 100, 16.4]},
        },
        **extra,
    }


def entity(n: int, now: str, **extra: Any) -> Entity:
    return parse_entity(body(n, **extra), TERMS, now)


def stamp(i: int) -> str:
    return f"2026-11-24T10:00:{i:02d}.000000Z"


def create(e: Entity) -> EntityChange:
    def apply(current: Entity | None) -> Write:
        if current is not None:
            raise AlreadyExists("exists")
        return Write(e, e["id"])

    return EntityChange(e["id"], apply, expected=e)


def upsert(e: Entity) -> EntityChange:
    def apply(current: Entity | None) -> Write:
        if current is not None:
            e["createdAt"] = current["createdAt"]
        return Write(e)

    return EntityChange(e["id"], apply, expected=e)


def patch(entity_id: str, name: str, raw: dict[str, Any], now: str) -> EntityChange:
    iri = TERMS.expand(name)
    update = parse_instance(raw, TERMS, now, name, partial=True)
    update.pop("type", None)

    def apply(current: Entity | None) -> Write:
        assert current is not None
        current["attrs"][iri][0] = merge_instance(current["attrs"][iri][0], update)
        touch(current, now)
        return Write(current)

    return EntityChange(entity_id, apply)


def drop_attr(entity_id: str, name: str, now: str) -> EntityChange:
    def apply(current: Entity | None) -> Write:
        assert current is not None
        del current["attrs"][TERMS.expand(name)]
        touch(current, now)
        return Write(current)

    return EntityChange(entity_id, apply)


def set_scope(entity_id: str, scope: list[str] | None, now: str) -> EntityChange:
    def apply(current: Entity | None) -> Write:
        assert current is not None
        if scope is None:
            current.pop("scope", None)
        else:
            current["scope"] = scope
        touch(current, now)
        return Write(current)

    return EntityChange(entity_id, apply)


def delete(entity_id: str) -> EntityChange:
    return EntityChange(entity_id, lambda current: Delete())


def rebuilt_index(conn: sqlite3.Connection) -> dict[str, set[tuple[Any, ...]]]:
    """The index rows a from-scratch indexing of the stored documents gives."""
    pids = dict(conn.execute("SELECT path, pid FROM paths"))
    out: dict[str, set[tuple[Any, ...]]] = {
        k: set() for k in ("types", "scopes", "presence", "values")
    }
    out["geo"] = set()
    for rid, doc in conn.execute("SELECT rid, doc FROM entities"):
        rows = index_rows(orjson.loads(doc))
        out["types"] |= {(t, rid) for t in rows.types}
        out["scopes"] |= {(scope, rid) for scope in rows.scopes}
        out["presence"] |= {(pids[p], rid, k, n) for (p, k), n in rows.presence.items()}
        out["values"] |= {(pids[p], pids[t], v, rid) for p, t, v in rows.values}
        for iri, geometry in rows.shapes:
            out["geo"].add((rid, pids[iri], geometry_row(orjson.loads(geometry))[0]))
    return out


def stored_index(conn: sqlite3.Connection) -> dict[str, set[tuple[Any, ...]]]:
    return {
        "types": set(conn.execute("SELECT type, rid FROM entity_types")),
        "scopes": set(conn.execute("SELECT scope, rid FROM entity_scopes")),
        "presence": set(conn.execute("SELECT pid, rid, kind, n FROM attr_presence")),
        "values": set(conn.execute("SELECT pid, tid, val, rid FROM attr_values")),
        "geo": set(conn.execute("SELECT rid, pid, wkb FROM geo")),
    }


async def test_incremental_index_equals_a_rebuild(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db", synchronous="OFF")
    store.view_renderer = render_default_view
    await store.open()
    try:
        ids = [f"urn:ngsi-ld:Sensor:{n}" for n in range(12)]
        await store.change_entities(None, [create(entity(0, stamp(0)))])
        await store.change_entities(None, [create(entity(n, stamp(1))) for n in range(1, 10)])
        await store.change_entities(
            None,
            [
                patch(ids[1], "battery", {"value": 0.25}, stamp(2)),
                patch(ids[2], "seen", {"value": "2026-03-01T00:00:00Z"}, stamp(2)),
                drop_attr(ids[3], "label", stamp(2)),
                delete(ids[4]),
                create(entity(4, stamp(2), extra={"type": "Property", "value": [1, 2]})),
                upsert(entity(5, stamp(2))),  # replaces an existing entity
                upsert(entity(10, stamp(2))),
                create(entity(1, stamp(2))),  # refused: exists
                patch(
                    ids[6],
                    "location",
                    {"value": {"type": "Point", "coordinates": [1, 2]}},
                    stamp(2),
                ),
            ],
        )
        await store.change_entities(None, [upsert(entity(n, stamp(3))) for n in (7, 11, 8)])
        await store.change_entities(
            None,
            [
                set_scope(ids[2], ["/hue/a", "/hue/b"], stamp(3)),
                set_scope(ids[3], ["/x"], stamp(3)),
            ],
        )
        await store.change_entities(
            None, [set_scope(ids[2], ["/hue/b"], stamp(4)), set_scope(ids[3], None, stamp(4))]
        )
        await store.change_entities(None, [delete(ids[9]), delete(ids[0])])
        await store.change_entities(None, [create(entity(n, stamp(4))) for n in (0, 9)])
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "t.db")
    assert stored_index(conn) == rebuilt_index(conn)
    geo = conn.execute("SELECT count(*) FROM geo").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM entities").fetchone()[0] == 12
    assert conn.execute("SELECT count(*) FROM geo_rtree").fetchone()[0] == geo == 12
    # every history row belongs to an entity with a history, instance numbers are unique
    orphans = (
        "SELECT count(*) FROM attr_instances WHERE eid NOT IN (SELECT eid FROM temporal_entities)"
    )
    assert conn.execute(orphans).fetchone()[0] == 0
    iids = conn.execute("SELECT count(iid), count(DISTINCT iid) FROM attr_instances").fetchone()
    assert iids[0] == iids[1] > 0


async def test_updated_views_equal_a_full_render(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "v.db", synchronous="OFF")
    store.view_renderer = render_default_view
    store.view_updater = update_default_view
    await store.open()
    try:
        ids = [f"urn:ngsi-ld:Sensor:{n}" for n in range(6)]
        await store.change_entities(None, [create(entity(n, stamp(1))) for n in range(6)])
        await store.change_entities(
            None,
            [
                patch(ids[0], "battery", {"value": 0.25}, stamp(2)),
                patch(ids[0], "temperature", {"value": 9, "datasetId": "urn:d:b"}, stamp(2)),
                patch(
                    ids[1],
                    "location",
                    {"value": {"type": "Point", "coordinates": [1, 2]}},
                    stamp(2),
                ),
                drop_attr(ids[2], "label", stamp(2)),
                set_scope(ids[3], ["/hue"], stamp(2)),
                upsert(entity(4, stamp(2), extra={"type": "Property", "value": [1, 2]})),
            ],
        )
        await store.change_entities(None, [patch(ids[0], "name", {"value": "renamed"}, stamp(3))])
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "v.db")
    rows = conn.execute("SELECT doc, view FROM entities").fetchall()
    assert len(rows) == 6
    for doc, view in rows:
        assert view == render_default_view(orjson.loads(doc))


def test_batch_numbers_are_those_of_one_insert_at_a_time(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "n.db", isolation_level=None)
    for table in ("one", "many"):
        conn.execute(f"CREATE TABLE {table} (k INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany(f"INSERT INTO {table} (v) VALUES (?)", [("a",), ("b",), ("c",)])
        conn.execute(f"DELETE FROM {table} WHERE k = 3")  # the largest number is free again
    one = [conn.execute("INSERT INTO one (v) VALUES (?)", (v,)).lastrowid for v in "xyz"]
    many = insert_numbered(conn, "many", "k", ("v",), [("x",), ("y",), ("z",)])
    assert many == one == [3, 4, 5]
    assert list(conn.execute("SELECT * FROM many")) == list(conn.execute("SELECT * FROM one"))
    assert insert_numbered(conn, "many", "k", ("v",), [("w",)]) == [6]


class _Task:
    def __init__(self, fn: Any, joint: Any = None) -> None:
        self.fn = fn
        self.joint = joint
        self.runs = 0


def test_a_failing_write_leaves_no_trace_and_the_others_land(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    conn.execute("CREATE TABLE paths (pid INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE)")
    conn.execute("CREATE TABLE t (pid INTEGER)")
    paths = WritePaths(conn)
    known = paths["known"]  # interned and committed before the group
    paths.commit()

    def writing(path: str, error: BaseException | None = None) -> _Task:
        def fn(c: sqlite3.Connection) -> int:
            task.runs += 1
            c.execute("INSERT INTO t (pid) VALUES (?)", (paths[path],))
            if error is not None:
                raise error
            return paths[path]

        task = _Task(fn)
        return task

    tasks = [
        writing("a"),
        writing("b", ValueError("boom")),
        writing("known"),
        writing("c", AlreadyExists("taken")),
        writing("d"),
    ]
    conn.execute("BEGIN IMMEDIATE")
    outcomes = run_tasks(conn, paths, tasks)
    conn.execute("COMMIT")
    assert [ok for _, ok, _ in outcomes] == [True, False, True, False, True]
    assert isinstance(outcomes[1][2], StoreError)
    assert isinstance(outcomes[3][2], AlreadyExists)
    assert tasks[0].runs == 2  # once optimistically, once in its savepoint
    learned = paths.commit()
    assert set(learned) == {"a", "d"}
    table = dict(conn.execute("SELECT path, pid FROM paths"))
    assert set(table) == {"known", "a", "d"}
    assert {p: paths[p] for p in table} == table
    assert table["known"] == known
    assert sorted(r[0] for r in conn.execute("SELECT pid FROM t")) == sorted(
        [table["a"], table["known"], table["d"]]
    )


def test_a_group_without_failures_runs_each_write_once(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    conn.execute("CREATE TABLE paths (pid INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE)")
    paths = WritePaths(conn)
    tasks = [_Task(lambda c, p=p: paths[p]) for p in "xyz"]
    for task in tasks:
        task.fn = (lambda f, t: lambda c: (setattr(t, "runs", t.runs + 1), f(c))[1])(task.fn, task)
    conn.execute("BEGIN IMMEDIATE")
    outcomes = run_tasks(conn, paths, tasks)
    conn.execute("COMMIT")
    assert [value for _, _, value in outcomes] == [1, 2, 3]
    assert [t.runs for t in tasks] == [1, 1, 1]


def test_consecutive_joint_tasks_run_in_one_call(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    conn.execute("CREATE TABLE paths (pid INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE)")
    paths = WritePaths(conn)
    tasks = [_Task(lambda c: "a", "a"), _Task(lambda c: "b", "b"), _Task(lambda c: "alone")]
    tasks += [_Task(lambda c: "c", "c"), _Task(lambda c: "d", "d"), _Task(lambda c: "e", "e")]
    calls: list[list[str]] = []

    def run_joint(c: sqlite3.Connection, run: list[_Task]) -> list[str]:
        calls.append([t.joint for t in run])
        return [t.joint.upper() for t in run]

    conn.execute("BEGIN IMMEDIATE")
    outcomes = run_tasks(conn, paths, tasks, run_joint)
    conn.execute("COMMIT")
    assert calls == [["a", "b"], ["c", "d", "e"]]
    assert [value for _, _, value in outcomes] == ["A", "B", "alone", "C", "D", "E"]


def test_a_failing_joint_run_falls_back_to_one_task_at_a_time(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "k.db", isolation_level=None)
    conn.execute("CREATE TABLE paths (pid INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE)")
    conn.execute("CREATE TABLE t (v TEXT)")
    paths = WritePaths(conn)

    def writing(value: str) -> Any:
        def fn(c: sqlite3.Connection) -> str:
            if value == "bad":
                raise ValueError("boom")
            c.execute("INSERT INTO t VALUES (?)", (value,))
            return value

        return fn

    tasks = [_Task(writing(v), v) for v in ("x", "bad", "y")]

    def run_joint(c: sqlite3.Connection, run: list[_Task]) -> list[str]:
        return [t.fn(c) for t in run]  # raises on "bad" after writing "x"

    conn.execute("BEGIN IMMEDIATE")
    outcomes = run_tasks(conn, paths, tasks, run_joint)
    conn.execute("COMMIT")
    assert [ok for _, ok, _ in outcomes] == [True, False, True]
    assert isinstance(outcomes[1][2], StoreError)
    assert sorted(r[0] for r in conn.execute("SELECT v FROM t")) == ["x", "y"]


async def test_requests_grouped_together_see_each_others_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import urbanstack.store.sqlite as sqlite_module

    calls: list[int] = []
    real_apply = sqlite_module.apply_changes

    def counting_apply(conn: sqlite3.Connection, changes: Any, *args: Any, **kw: Any) -> Any:
        calls.append(len(changes))
        return real_apply(conn, changes, *args, **kw)

    monkeypatch.setattr(sqlite_module, "apply_changes", counting_apply)
    store = SQLiteStore(tmp_path / "g.db", synchronous="OFF")
    store.view_renderer = render_default_view
    await store.open()
    try:
        gate = threading.Event()
        held = asyncio.ensure_future(store._write(None, lambda conn: gate.wait(10)))
        await asyncio.sleep(0.05)  # the writer is now busy: what follows queues up
        first = entity(1, stamp(1))
        pending = [
            asyncio.ensure_future(store.change_entities(None, [create(first)])),
            asyncio.ensure_future(
                store.change_entities(None, [patch(first["id"], "battery", {"value": 9}, stamp(2))])
            ),
            asyncio.ensure_future(store.change_entities(None, [create(entity(1, stamp(3)))])),
            asyncio.ensure_future(store.change_entities(None, [create(entity(2, stamp(3)))])),
        ]
        await asyncio.sleep(0.05)
        gate.set()
        await held
        created, patched, again, other = [r[0] for r in await asyncio.gather(*pending)]
        stored = await store.get_entity(None, first["id"])
    finally:
        await store.close()
    assert calls == [4]  # one joint call for the four requests
    assert created.error is None and patched.error is None and other.error is None
    assert isinstance(again.error, AlreadyExists)
    assert stored is not None
    assert stored["attrs"][TERMS.expand("battery")][0]["value"] == 9


def test_index_rows_leave_out_the_instances_times() -> None:
    paths = {path for path, _, _ in index_rows(entity(1, stamp(1))).values}
    times = ("\x1fobservedAt\x1ddt", "\x1fcreatedAt\x1ddt", "\x1fmodifiedAt\x1ddt")
    assert paths
    assert not [p for p in paths if p.endswith(times)]


@pytest.mark.parametrize(
    ("member", "written_by"),
    [("modifiedAt", 4), ("observedAt", 5)],
    ids=["schema 5 drops system times", "schema 6 drops observedAt"],
)
async def test_upgrades_drop_the_index_rows_of_unindexed_members(
    tmp_path: Path, member: str, written_by: int
) -> None:
    store = SQLiteStore(tmp_path / "u.db")
    await store.open()
    await store.change_entities(None, [create(entity(1, stamp(1)))])
    await store.close()
    conn = sqlite3.connect(tmp_path / "u.db")
    with conn:  # what the older schema wrote: a row for an instance's time member
        conn.execute("INSERT INTO paths (path) VALUES (?)", (f"name\x1f{member}\x1ddt",))
        pid = conn.execute("SELECT max(pid) FROM paths").fetchone()[0]
        conn.execute("INSERT INTO attr_values VALUES (?, 1, ?, 1)", (pid, stamp(1)))
        conn.execute(f"PRAGMA user_version={written_by}")
    conn.close()
    for _ in range(2):  # the upgrade, then a start that finds the schema current
        store = SQLiteStore(tmp_path / "u.db")
        await store.open()
        await store.change_entities(None, [create(entity(2, stamp(2)))])  # opens the writer
        await store.close()
        conn = sqlite3.connect(tmp_path / "u.db")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        gone = conn.execute("SELECT count(*) FROM attr_values WHERE pid = ?", (pid,)).fetchone()
        assert gone == (0,)
        assert conn.execute("SELECT count(*) FROM attr_values").fetchone()[0] > 0
        conn.close()


async def test_a_change_without_view_stores_none_until_a_write_keeps_one(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "v.db")
    store.view_renderer = render_default_view
    store.view_updater = update_default_view
    await store.open()
    first = entity(1, stamp(1))
    await store.change_entities(None, [create(first)])
    later = entity(1, stamp(2))
    await store.change_entities(
        None, [EntityChange(first["id"], lambda current: Write(later), store_view=False)]
    )
    conn = sqlite3.connect(tmp_path / "v.db")
    assert conn.execute("SELECT view IS NULL FROM entities").fetchone() == (1,)
    await store.change_entities(None, [EntityChange(first["id"], lambda current: Write(later))])
    assert conn.execute("SELECT view IS NULL FROM entities").fetchone() == (0,)
    both = [
        EntityChange(first["id"], lambda current: Write(later), store_view=False),
        EntityChange(first["id"], lambda current: Write(later)),
    ]
    await store.change_entities(None, both)  # one of them keeps the view: it is kept
    assert conn.execute("SELECT view IS NULL FROM entities").fetchone() == (0,)
    conn.close()
    await store.close()
