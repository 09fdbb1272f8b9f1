"""The storage contract (store/base.py), run against every backend."""

from __future__ import annotations

import asyncio
import random

import pytest

from urbanstack.ngsild.errors import AlreadyExists, NonexistentTenant
from urbanstack.ngsild.geo import parse_geo_query
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import Entity, parse_entity
from urbanstack.ngsild.q import parse_query_q
from urbanstack.ngsild.q_match import match_q
from urbanstack.ngsild.query import EntityQuery
from urbanstack.ngsild.representation import render_default_view, update_default_view
from urbanstack.ngsild.scope import match_scope, parse_scope_q
from urbanstack.ngsild.typeq import parse_type_query
from urbanstack.store.base import ContextRecord, Delete, EntityChange, EntityStore, Keep, Write

pytestmark = pytest.mark.anyio
TERMS = core_term_map()
NOW = "2026-11-23T10:00:00.000000Z"


def station(n: int, **attrs: object) -> Entity:
    body = {
        "id": f"urn:ngsi-ld:AirQualityObserved:{n}",
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 10.0 + n, "unitCode": "GQ"},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [107.5 + n / 1000, 16.46]},
        },
        **attrs,
    }
    return parse_entity(body, TERMS, NOW)


def create(entity: Entity) -> EntityChange:
    def apply(current: Entity | None) -> Write:
        if current is not None:
            raise AlreadyExists("exists")
        return Write(entity, entity["id"])

    return EntityChange(entity["id"], apply)


def expand(term: str) -> str:
    return TERMS.expand(term)


async def test_created_entity_is_returned_by_get(store: EntityStore) -> None:
    entity = station(1)
    [result] = await store.change_entities(None, [create(entity)])
    assert result.ok and result.old is None
    assert await store.get_entity(None, entity["id"]) == entity


async def test_refused_change_leaves_entity_and_others_proceed(store: EntityStore) -> None:
    await store.change_entities(None, [create(station(1))])
    results = await store.change_entities(None, [create(station(1)), create(station(2))])
    assert isinstance(results[0].error, AlreadyExists)
    assert results[1].ok
    assert await store.get_entity(None, station(2)["id"]) is not None


async def test_results_come_back_in_order_of_changes(store: EntityStore) -> None:
    changes = [create(station(n)) for n in range(20, 0, -1)]
    results = await store.change_entities(None, changes)
    assert [r.entity_id for r in results] == [c.entity_id for c in changes]


async def test_delete_removes_entity_from_queries(store: EntityStore) -> None:
    await store.change_entities(None, [create(station(1))])
    await store.change_entities(None, [EntityChange(station(1)["id"], lambda cur: Delete())])
    assert await store.get_entity(None, station(1)["id"]) is None
    page = await store.query_entities(
        None, EntityQuery(types=parse_type_query("AirQualityObserved", expand))
    )
    assert page.entities == []


async def test_keep_changes_nothing(store: EntityStore) -> None:
    await store.change_entities(None, [create(station(1))])
    [result] = await store.change_entities(
        None, [EntityChange(station(1)["id"], lambda cur: Keep("same"))]
    )
    assert result.result == "same"
    assert await store.get_entity(None, station(1)["id"]) == station(1)


async def test_update_reindexes_values(store: EntityStore) -> None:
    await store.change_entities(None, [create(station(1))])

    def raise_pm25(current: Entity | None) -> Write:
        assert current is not None
        current["attrs"][expand("pm25")][0]["value"] = 99.0
        return Write(current)

    await store.change_entities(None, [EntityChange(station(1)["id"], raise_pm25)])
    query = EntityQuery(q=parse_query_q("pm25>50", expand))
    page = await store.query_entities(None, query)
    assert [e["id"] for e in page.entities] == [station(1)["id"]]


async def test_shallow_change_reports_the_stored_entity_as_it_was(store: EntityStore) -> None:
    await store.change_entities(None, [create(station(1))])
    pm25 = expand("pm25")

    def replace_pm25(current: Entity | None) -> Write:
        assert current is not None
        current["attrs"][pm25] = [{**current["attrs"][pm25][0], "value": 99.0}]
        current["attrs"][pm25].append({"type": "Property", "value": 1.0, "datasetId": "urn:d"})
        return Write(current)

    change = EntityChange(station(1)["id"], replace_pm25, shallow=True)
    [result] = await store.change_entities(None, [change])
    assert result.old is not None and result.new is not None
    assert [i["value"] for i in result.old["attrs"][pm25]] == [11.0]
    assert [i["value"] for i in result.new["attrs"][pm25]] == [99.0, 1.0]
    page = await store.query_entities(None, EntityQuery(q=parse_query_q("pm25>50", expand)))
    assert [e["id"] for e in page.entities] == [station(1)["id"]]


async def test_unknown_tenant_read_raises_nonexistent_tenant(store: EntityStore) -> None:
    with pytest.raises(NonexistentTenant):
        await store.get_entity("danang", "urn:ngsi-ld:X:1")


async def test_concurrent_reads_in_an_unknown_tenant_all_raise_nonexistent_tenant(
    store: EntityStore,
) -> None:
    reads = [store.get_entity("danang", f"urn:ngsi-ld:X:{n}") for n in range(5)]
    reads += [store.get_entity_view("danang", f"urn:ngsi-ld:X:{n}") for n in range(5)]
    results = await asyncio.gather(*reads, return_exceptions=True)
    assert all(isinstance(r, NonexistentTenant) for r in results)


async def test_concurrent_retrievals_each_get_their_own_entity(store: EntityStore) -> None:
    store.view_renderer = render_default_view
    await store.change_entities(None, [create(station(n)) for n in range(20)])
    await store.change_entities(
        "hue", [create(station(n, note={"type": "Property", "value": "hue"})) for n in range(3)]
    )
    ids = [station(n)["id"] for n in range(20)] + ["urn:ngsi-ld:AirQualityObserved:none"]
    asked = ids * 3
    docs = await asyncio.gather(*(store.get_entity(None, i) for i in asked))
    views = await asyncio.gather(*(store.get_entity_view(None, i) for i in asked))
    in_hue = await asyncio.gather(*(store.get_entity("hue", i) for i in ids[:5]))
    for entity_id, doc, view in zip(asked, docs, views, strict=True):
        if entity_id.endswith(":none"):
            assert doc is None and view is None
        else:
            assert doc is not None and doc["id"] == entity_id
            assert view == render_default_view(doc)
    assert [e["id"] if e else None for e in in_hue] == [*ids[:3], None, None]
    assert all(expand("note") in e["attrs"] for e in in_hue if e)
    assert all(expand("note") not in e["attrs"] for e in docs if e)


async def test_write_creates_tenant_isolated_from_default(store: EntityStore) -> None:
    await store.change_entities("hue", [create(station(1))])
    assert await store.tenant_exists("hue")
    assert await store.get_entity("hue", station(1)["id"]) is not None
    assert await store.get_entity(None, station(1)["id"]) is None


async def test_concurrent_writes_all_land(store: EntityStore) -> None:
    await asyncio.gather(*(store.change_entities(None, [create(station(n))]) for n in range(200)))
    page = await store.query_entities(
        None,
        EntityQuery(types=parse_type_query("AirQualityObserved", expand), limit=1000, count=True),
    )
    assert page.total == 200


async def test_query_pages_in_creation_order_with_total(store: EntityStore) -> None:
    await store.change_entities(None, [create(station(n)) for n in range(30)])
    query = EntityQuery(
        types=parse_type_query("AirQualityObserved", expand), limit=10, offset=10, count=True
    )
    page = await store.query_entities(None, query)
    assert page.total == 30
    assert [e["id"] for e in page.entities] == [station(n)["id"] for n in range(10, 20)]


async def test_near_query_orders_by_distance(store: EntityStore) -> None:
    await store.change_entities(None, [create(station(n)) for n in (5, 1, 3)])
    geo = parse_geo_query("near;maxDistance==2000", "Point", "[107.5,16.46]", None, expand)
    page = await store.query_entities(None, EntityQuery(geo=geo))
    assert [e["id"] for e in page.entities] == [station(n)["id"] for n in (1, 3, 5)]


async def test_attrs_filter_keeps_entities_having_one_of_them(store: EntityStore) -> None:
    with_no2 = station(1, no2={"type": "Property", "value": 3})
    await store.change_entities(None, [create(with_no2), create(station(2))])
    page = await store.query_entities(None, EntityQuery(attrs=frozenset({expand("no2")})))
    assert [e["id"] for e in page.entities] == [with_no2["id"]]


def _random_entity(rng: random.Random, n: int) -> Entity:
    body: dict[str, object] = {
        "id": f"urn:ngsi-ld:Sensor:{n}",
        "type": rng.choice(["Sensor", "Gauge"]),
    }
    if rng.random() < 0.8:
        body["level"] = {
            "type": "Property",
            "value": rng.choice([rng.randint(0, 9), rng.random() * 10]),
        }
    if rng.random() < 0.6:
        body["status"] = {"type": "Property", "value": rng.choice(["ok", "alarm", "offline", "Ok"])}
    if rng.random() < 0.5:
        body["tags"] = {
            "type": "Property",
            "value": rng.sample(["river", "air", "hue", "traffic"], 2),
        }
    if rng.random() < 0.5:
        body["refGauge"] = {
            "type": "Relationship",
            "object": f"urn:ngsi-ld:Gauge:{rng.randint(0, 3)}",
        }
    if rng.random() < 0.5:
        body["address"] = {
            "type": "Property",
            "value": {"city": rng.choice(["Huế", "Hà Nội"]), "ward": rng.randint(1, 3)},
        }
    if rng.random() < 0.5:
        body["level2"] = [
            {"type": "Property", "value": rng.randint(0, 5), "datasetId": "urn:ngsi-ld:Dataset:a"},
            {
                "type": "Property",
                "value": rng.randint(0, 5),
                "datasetId": "urn:ngsi-ld:Dataset:b",
                "observedAt": f"2026-11-{rng.randint(10, 20)}T00:00:00Z",
                "quality": {"type": "Property", "value": rng.randint(0, 2)},
            },
        ]
    if rng.random() < 0.5:
        body["label"] = {
            "type": "LanguageProperty",
            "languageMap": rng.choice([{"en": "Bridge", "vi": "Cầu"}, {"vi": "Chợ"}]),
        }
    if rng.random() < 0.5:
        body["inspected"] = {
            "type": "Property",
            "value": rng.choice(
                ["2024-03-01T09:30:00+02:00", "2024-03-01T08:00:00Z", "not a date", "2024-02-28"]
            ),
        }
    if rng.random() < 0.3:
        body["opened"] = {
            "type": "Property",
            "value": {"@type": "DateTime", "@value": f"2020-05-0{rng.randint(1, 3)}T10:00:00Z"},
        }
    if rng.random() < 0.6:
        body["scope"] = rng.sample(
            ["/Hue", "/Hue/Center", "/Hue/Center/Citadel", "/Hue/North", "/HueX", "/Hanoi/BaDinh"],
            rng.randint(1, 2),
        )
    if rng.random() < 0.3:
        body["open"] = {"type": "Property", "value": rng.choice([True, False])}
    written = f"2026-11-{rng.randint(10, 24)}T10:00:00.000000Z"  # system times differ
    return parse_entity(body, TERMS, written)


Q_CASES = [
    'refGauge~="Gauge"',
    'refGauge>"urn"',
    'status!~="x"',
    'level!~="x"',
    "inspected>2024-03-01T07:30:00Z",
    "inspected<2024-03-01T08:00:00Z",
    'inspected=="2024-02-28"',
    "opened==2020-05-02T10:00:00Z",
    'opened=="2020-05-02T10:00:00.000000Z"',
    'label[en]=="Bridge"',
    'label[*]=="Chợ"',
    'label=="Cầu"',
    "label[vi]",
    "open==true",
    "open==1",
    "level==true",
    "open!=false",
    "createdAt>=2026-11-23T00:00:00Z",
    "modifiedAt<2026-01-01T00:00:00Z",
    "level>5",
    "level<=3",
    "level==4",
    "level!=4",
    "level==2..6",
    "level",
    "!level" if False else "status",
    'status=="ok"',
    'status!="ok"',
    'status~="(?i)^ok"',
    'status!~="al"',
    'status=="ok","alarm"',
    'tags=="hue"',
    'tags!="hue"',
    'refGauge=="urn:ngsi-ld:Gauge:2"',
    'address[city]=="Huế"',
    "address[ward]>=2",
    "level2==3",
    "level2.quality==1",
    "level2.observedAt>=2026-11-15T00:00:00Z",
    "level2.observedAt<2026-11-15T00:00:00Z",
    "level2.observedAt==2026-11-10T00:00:00Z..2026-11-20T00:00:00Z",
    "level2.observedAt>2026-11-12T00:00:00Z;level>5",
    "level2.quality.observedAt>=2026-11-15T00:00:00Z",
    'level>5;status=="ok"',
    'level>5|status=="alarm"',
    "(level<2|level>8);refGauge",
    'status>"a"',
    'status<"b"',
    "level.modifiedAt>=2026-11-18T00:00:00Z",
    "level2.createdAt<2026-11-15T00:00:00Z",
    "level2.quality.modifiedAt==2026-11-12T10:00:00Z",
    "status.createdAt",
    "level.modifiedAt!=2026-11-20T10:00:00Z",
    "refGauge.modifiedAt==2026-11-12T10:00:00Z..2026-11-16T10:00:00Z",
    'level.modifiedAt>=2026-11-18T00:00:00Z;status=="ok"',
    "level.createdAt<2026-11-12T00:00:00Z|level>8",
    "level2.observedAt",
    "level2.observedAt!=2026-11-15T00:00:00Z",
    'level2.datasetId!="urn:ngsi-ld:Dataset:c"',
    "level2.datasetId",
]


def replace_with(entity: Entity) -> EntityChange:
    return EntityChange(entity["id"], lambda current: Write(entity))


@pytest.mark.parametrize("rewritten", [False, True], ids=["created", "rewritten"])
@pytest.mark.parametrize("q_text", Q_CASES)
async def test_sql_q_agrees_with_reference_evaluator(
    store: EntityStore, q_text: str, rewritten: bool
) -> None:
    rng = random.Random(7)
    entities = [_random_entity(rng, n) for n in range(150)]
    await store.change_entities(None, [create(e) for e in entities])
    if rewritten:  # every entity replaced by another random one: the index is diffed
        created = [e["createdAt"] for e in entities]
        entities = [_random_entity(rng, n) for n in range(150)]
        for entity, first in zip(entities, created, strict=True):
            entity["createdAt"] = first  # as the broker does: an entity keeps its creation
        await store.change_entities(None, [replace_with(e) for e in entities[::2]])
        await asyncio.gather(
            *(store.change_entities(None, [replace_with(e)]) for e in entities[1::2])
        )
    expr = parse_query_q(q_text, expand)
    expected = [e["id"] for e in entities if match_q(expr, e)]
    page = await store.query_entities(None, EntityQuery(q=expr, limit=1000))
    assert [e["id"] for e in page.entities] == expected


SCOPE_CASES = [
    "/Hue",
    "/Hue/#",
    "/Hue/+",
    "/+/Center",
    "/#",
    "/Hue/Center;/Hue/North",
    "/Hanoi/#|/Hue/Center/#",
    "(/Hue/North,/HueX);/Hue/#",
]


@pytest.mark.parametrize("scope_text", SCOPE_CASES)
async def test_sql_scope_q_agrees_with_reference_evaluator(
    store: EntityStore, scope_text: str
) -> None:
    rng = random.Random(11)
    entities = [_random_entity(rng, n) for n in range(120)]
    await store.change_entities(None, [create(e) for e in entities])
    expr = parse_scope_q(scope_text)
    expected = [e["id"] for e in entities if match_scope(expr, e.get("scope", []))]
    page = await store.query_entities(None, EntityQuery(scope_q=expr, limit=1000))
    assert [e["id"] for e in page.entities] == expected
    assert expected, "the case should match something"


async def test_contexts_round_trip(store: EntityStore) -> None:
    record = ContextRecord(
        id="c1",
        url="https://ex.org/ctx.jsonld",
        kind="Cached",
        body={"@context": {"a": "https://ex.org/a"}},
        created_at=NOW,
    )
    await store.put_context(record)
    await store.touch_context("c1", NOW)
    by_url = await store.get_context("https://ex.org/ctx.jsonld")
    assert by_url is not None and by_url.hits == 1 and by_url.body == record.body
    assert [r.id for r in await store.list_contexts()] == ["c1"]
    assert await store.delete_context("c1")
    assert await store.get_context("c1") is None


async def test_moved_entity_is_found_at_its_new_place_only(store: EntityStore) -> None:
    await store.change_entities(None, [create(station(1))])
    moved = station(1)
    moved["attrs"][expand("location")][0]["value"]["coordinates"] = [107.6, 16.5]
    await store.change_entities(None, [replace_with(moved)])
    near_old = parse_geo_query("near;maxDistance==100", "Point", "[107.501,16.46]", None, expand)
    near_new = parse_geo_query("near;maxDistance==100", "Point", "[107.6,16.5]", None, expand)
    assert (await store.query_entities(None, EntityQuery(geo=near_old))).entities == []
    found = await store.query_entities(None, EntityQuery(geo=near_new))
    assert [e["id"] for e in found.entities] == [moved["id"]]


async def test_unchanged_location_keeps_its_shape_rows(store: EntityStore) -> None:
    await store.change_entities(None, [create(station(1))])
    renamed = station(1, note={"type": "Property", "value": "rain gauge"})
    await store.change_entities(None, [replace_with(renamed)])
    near = parse_geo_query("near;maxDistance==100", "Point", "[107.501,16.46]", None, expand)
    found = await store.query_entities(None, EntityQuery(geo=near))
    assert [e["id"] for e in found.entities] == [renamed["id"]]


async def test_views_follow_every_write(store: EntityStore) -> None:
    store.view_renderer = render_default_view
    await store.change_entities(None, [create(station(1))])
    changed = station(1, note={"type": "Property", "value": "moved to Kim Long"})
    await store.change_entities(None, [replace_with(changed)])
    stored = await store.get_entity(None, changed["id"])
    assert stored is not None
    assert await store.get_entity_view(None, changed["id"]) == render_default_view(stored)
    page = await store.query_entities(None, EntityQuery(ids=(changed["id"],)), views=True)
    assert page.views == [render_default_view(stored)]


async def test_an_entity_written_without_its_view_is_read_in_full(store: EntityStore) -> None:
    store.view_renderer = render_default_view
    store.view_updater = update_default_view
    await store.change_entities(None, [create(station(1))])
    fed = station(1, pm25={"type": "Property", "value": 42.5, "unitCode": "GQ"})
    change = EntityChange(fed["id"], lambda current: Write(fed), store_view=False)
    await store.change_entities(None, [change])
    stored = await store.get_entity(None, fed["id"])
    assert stored is not None
    assert await store.get_entity_view(None, fed["id"]) == render_default_view(stored)
    page = await store.query_entities(None, EntityQuery(ids=(fed["id"],)), views=True)
    assert page.views == [render_default_view(stored)]
    assert b"42.5" in (page.views or [b""])[0]
    again = station(1, pm25={"type": "Property", "value": 7.5, "unitCode": "GQ"})
    await store.change_entities(None, [replace_with(again)])  # a write that keeps a view
    stored = await store.get_entity(None, fed["id"])
    assert stored is not None
    assert await store.get_entity_view(None, fed["id"]) == render_default_view(stored)


async def test_views_updated_in_place_equal_a_full_render(store: EntityStore) -> None:
    store.view_renderer = render_default_view
    store.view_updater = update_default_view
    await store.change_entities(None, [create(station(n)) for n in (1, 2)])
    moved = station(1, pm25={"type": "Property", "value": 42.5, "unitCode": "GQ"})
    moved["attrs"][expand("location")][0]["value"]["coordinates"] = [107.6, 16.5]
    twice = station(2, pm25={"type": "Property", "value": 7})
    again = station(2, pm25={"type": "Property", "value": 8, "observedAt": "2026-01-01T00:00:00Z"})
    await store.change_entities(
        None, [replace_with(moved), replace_with(twice), replace_with(again)]
    )
    for entity in (moved, again):
        stored = await store.get_entity(None, entity["id"])
        assert stored is not None
        assert await store.get_entity_view(None, entity["id"]) == render_default_view(stored)
    assert b"42.5" in (await store.get_entity_view(None, moved["id"]) or b"")


async def test_view_of_entity_written_without_renderer_is_rendered_on_read(
    store: EntityStore,
) -> None:
    store.view_renderer = None
    await store.change_entities(None, [create(station(1))])
    store.view_renderer = render_default_view
    assert await store.get_entity_view(None, station(1)["id"]) == render_default_view(station(1))


async def test_deleted_entity_leaves_nothing_queries_can_find(store: EntityStore) -> None:
    first = station(1, level={"type": "Property", "value": 99}, scope="/Hue/North")
    await store.change_entities(None, [create(first)])
    await store.change_entities(None, [EntityChange(first["id"], lambda cur: Delete())])
    again = parse_entity(
        {"id": first["id"], "type": "WaterObserved", "level": {"type": "Property", "value": 1}},
        TERMS,
        NOW,
    )
    await store.change_entities(None, [create(again)])
    for query in (
        EntityQuery(types=parse_type_query("AirQualityObserved", expand)),
        EntityQuery(q=parse_query_q("level>50", expand)),
        EntityQuery(q=parse_query_q("pm25", expand)),
        EntityQuery(scope_q=parse_scope_q("/Hue/#")),
        EntityQuery(
            geo=parse_geo_query("near;maxDistance==5000", "Point", "[107.5,16.46]", None, expand)
        ),
    ):
        assert (await store.query_entities(None, query)).entities == [], query
    found = await store.query_entities(None, EntityQuery(q=parse_query_q("level<5", expand)))
    assert [e["id"] for e in found.entities] == [first["id"]]


async def test_updating_one_attribute_keeps_the_others_queryable(store: EntityStore) -> None:
    entity = station(1, status={"type": "Property", "value": "ok"})
    await store.change_entities(None, [create(entity)])

    def raise_pm25(current: Entity | None) -> Write:
        assert current is not None
        current["attrs"][expand("pm25")][0]["value"] = 77.0
        return Write(current)

    await store.change_entities(None, [EntityChange(entity["id"], raise_pm25)])
    for text, hits in (("pm25==77", 1), ("pm25==11", 0), ('status=="ok"', 1), ("pm25;status", 1)):
        page = await store.query_entities(None, EntityQuery(q=parse_query_q(text, expand)))
        assert len(page.entities) == hits, text


async def test_concurrent_changes_to_one_entity_lose_no_update(store: EntityStore) -> None:
    await store.change_entities(None, [create(station(1))])

    def add(n: int) -> EntityChange:
        def apply(current: Entity | None) -> Write:
            assert current is not None
            current["attrs"][expand(f"reading{n}")] = [{"type": "Property", "value": n}]
            return Write(current)

        return EntityChange(station(1)["id"], apply)

    await asyncio.gather(*(store.change_entities(None, [add(n)]) for n in range(60)))
    stored = await store.get_entity(None, station(1)["id"])
    assert stored is not None
    assert {expand(f"reading{n}") for n in range(60)} <= set(stored["attrs"])


@pytest.mark.parametrize(
    "q_text",
    [
        "level>5",
        'status!="ok"',
        "level==2..6",
        'refGauge=="urn:ngsi-ld:Gauge:2"',
        "tags",
        "level.modifiedAt>=2026-11-18T00:00:00Z",
    ],
)
async def test_sql_q_with_type_agrees_with_reference_evaluator(
    store: EntityStore, q_text: str
) -> None:
    rng = random.Random(5)
    entities = [_random_entity(rng, n) for n in range(120)]
    for entity in entities[::7]:  # some entities have both types
        entity["type"] = [expand("Sensor"), expand("Gauge")]
    await store.change_entities(None, [create(e) for e in entities])
    expr = parse_query_q(q_text, expand)
    sensors = parse_type_query("Sensor", expand)
    expected = [e["id"] for e in entities if expand("Sensor") in e["type"] and match_q(expr, e)]
    page = await store.query_entities(None, EntityQuery(types=sensors, q=expr, limit=1000))
    assert [e["id"] for e in page.entities] == expected
    assert expected
