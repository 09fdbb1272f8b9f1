"""Attribute instances as history rows: which instances a change adds, and their columns.

A history row keeps one attribute instance in typed columns (pure Python values a store
maps onto its own column types):

- ``vt``: how ``val`` holds the value: :data:`VT_NUMBER` (int or float),
  :data:`VT_BOOL` (0 or 1), :data:`VT_TEXT` (a string, a relationship object, a vocab
  IRI) or :data:`VT_JSON` (anything else, as JSON bytes);
- ``extra``: the other members (unitCode, objectType, sub-attributes) as JSON bytes, or None.

The time a row is filed under (``observed``) is the instance's ``observedAt`` when it has
one and the modification time otherwise, so every instance has a place on the time line.

A deleted instance (its attribute deleted, or its entity deleted while its history is
kept) leaves a last row: the value NGSI-LD Null (``urn:ngsi-ld:null``) and ``deletedAt``
(clauses 4.5.6-4.5.8), in ``extra``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from urbanstack.ngsild.model import NGSI_LD_NULL, VALUE_MEMBER, Entity, Instance, now_timestamp
from urbanstack.ngsild.temporal import TemporalQuery, to_micros

VT_JSON = 0
VT_NUMBER = 1
VT_BOOL = 2
VT_TEXT = 3
INSTANCE_ID_PREFIX = "urn:ngsi-ld:attribute:instance:"
_ROW_MEMBERS = frozenset({"type", "observedAt", "datasetId", "createdAt", "modifiedAt"})


@dataclass(slots=True)
class HistoryRow:
    """One attribute instance on an entity's time line (times in microseconds)."""

    attr: str  # attribute IRI
    kind: str  # attribute type: Property, Relationship, ...
    vt: int
    val: Any
    extra: bytes | None
    dataset_id: str | None
    observed: int  # observedAt, or the modification time when there is none
    has_observed: bool
    created: int
    modified: int
    iid: int | None = None  # the store's instance number, once stored


def encode_value(inst: Instance) -> tuple[int, Any]:
    """(vt, val) of an instance's value member."""
    value = inst.get(VALUE_MEMBER.get(inst["type"], "value"))
    if isinstance(value, bool):
        return VT_BOOL, int(value)
    if isinstance(value, int | float):
        return VT_NUMBER, value
    if isinstance(value, str):
        return VT_TEXT, value
    return VT_JSON, orjson.dumps(value)


def decode_value(vt: int, val: Any) -> Any:
    """The value member back from (vt, val)."""
    if vt == VT_BOOL:
        return bool(val)
    if vt == VT_JSON:
        return orjson.loads(val)
    return val


_NOT_EXTRA = frozenset({*_ROW_MEMBERS, *VALUE_MEMBER.values()})


@lru_cache(maxsize=256)
def _unit_extra(unit_code: str) -> bytes:
    return orjson.dumps({"unitCode": unit_code})


def history_row(attr: str, inst: Instance, modified_at: str) -> HistoryRow:
    """The history row of a stored-form instance written at ``modified_at``."""
    vt, val = encode_value(inst)
    others = inst.keys() - _NOT_EXTRA
    if not others:
        extra = None
    elif others == {"unitCode"}:
        extra = _unit_extra(inst["unitCode"])  # most readings: one shared encoding
    else:
        extra = orjson.dumps({k: v for k, v in inst.items() if k in others})
    modified = to_micros(inst.get("modifiedAt", modified_at))
    observed_at = inst.get("observedAt")
    return HistoryRow(
        attr,
        inst["type"],
        vt,
        val,
        extra,
        inst.get("datasetId"),
        to_micros(observed_at) if observed_at else modified,
        observed_at is not None,
        modified,
        modified,
    )


def row_instance(row: HistoryRow) -> Instance:
    """The stored-form instance of a history row (times stay in microseconds under
    ``observed``/``created``/``modified``; renderers format them)."""
    member = VALUE_MEMBER.get(row.kind, "value")
    inst: Instance = {"type": row.kind, member: decode_value(row.vt, row.val)}
    if row.extra is not None:
        inst.update(orjson.loads(row.extra))
    if row.dataset_id is not None:
        inst["datasetId"] = row.dataset_id
    return inst


def instance_id(iid: int) -> str:
    """The public instanceId of a stored instance number."""
    return f"{INSTANCE_ID_PREFIX}{iid}"


def parse_instance_id(text: str) -> int | None:
    """The instance number of a public instanceId, or None when it is not one of ours."""
    if not text.startswith(INSTANCE_ID_PREFIX):
        return None
    tail = text[len(INSTANCE_ID_PREFIX) :]
    return int(tail) if tail.isdigit() and len(tail) < 19 else None


def changed_instances(
    old: Entity | None, new: Entity | None, deleted_at: str | None = None
) -> list[HistoryRow]:
    """History rows of the instances ``new`` adds or changes compared with ``old``, then a
    deletion row for each instance of ``old`` that ``new`` no longer has (every instance
    when ``new`` is None: the entity was deleted at ``deleted_at``).

    An instance rewritten with the same value still counts (it has a new modification
    time): a sensor repeating its reading is a reading.
    """
    if old is None and new is None:
        return []
    old_attrs = old["attrs"] if old is not None else {}
    rows: list[HistoryRow] = []
    if new is None:
        gone_at = deleted_at or now_timestamp()
        for attr, instances in old_attrs.items():
            rows += [deletion_row(attr, inst, gone_at) for inst in instances]
        return rows
    modified_at = new["modifiedAt"]
    new_attrs = new["attrs"]
    for attr, instances in new_attrs.items():
        before = old_attrs.get(attr)
        if before == instances:  # untouched (one comparison in C): nothing to record
            continue
        for inst in instances:
            if before and _same_instance_in(before, inst):
                continue
            rows.append(history_row(attr, inst, modified_at))
    for attr, instances in old_attrs.items():
        after = new_attrs.get(attr)
        if after == instances:
            continue
        for inst in instances:
            if not after or not _has_dataset(after, inst.get("datasetId")):
                rows.append(deletion_row(attr, inst, modified_at))
    return rows


#: how NGSI-LD Null reads in each attribute type's value member
_NULL_VALUES: dict[str, Any] = {
    "LanguageProperty": {"@none": NGSI_LD_NULL},
    "ListProperty": [NGSI_LD_NULL],
    "ListRelationship": [NGSI_LD_NULL],
}


#: how every deletion row's ``extra`` starts (stores leave those rows out of aggregations)
DELETION_EXTRA_PREFIX = b'{"deletedAt"'


def deletion_row(attr: str, inst: Instance, deleted_at: str) -> HistoryRow:
    """The row recording that ``inst`` (an attribute instance) was deleted at ``deleted_at``."""
    kind = inst.get("type", "Property")
    member = VALUE_MEMBER.get(kind, "value")
    gone: Instance = {"type": kind, member: _NULL_VALUES.get(kind, NGSI_LD_NULL)}
    vt, val = encode_value(gone)
    at = to_micros(deleted_at)
    extra = orjson.dumps({"deletedAt": deleted_at})
    return HistoryRow(attr, kind, vt, val, extra, inst.get("datasetId"), at, False, at, at)


def _has_dataset(instances: list[Instance], dataset_id: str | None) -> bool:
    return any(candidate.get("datasetId") == dataset_id for candidate in instances)


def _same_instance_in(instances: list[Instance], inst: Instance) -> bool:
    dataset_id = inst.get("datasetId")
    for candidate in instances:
        if candidate.get("datasetId") == dataset_id:
            return candidate == inst
    return False


@dataclass(slots=True)
class AggregateBucket:
    """One period of an aggregated attribute: [start, end) and a value per method."""

    start: int
    end: int
    values: dict[str, Any]


@dataclass(slots=True)
class AttributeAggregate:
    """The aggregated history of one attribute instance series (one datasetId), by
    column: period ``i`` is [``starts[i]``, ``ends[i]``) and ``values[method][i]`` its
    value (columns, not a row object per period: a long series has thousands of them)."""

    attr: str
    kind: str
    dataset_id: str | None
    starts: list[int]
    ends: list[int]
    values: dict[str, list[Any]]

    @property
    def buckets(self) -> list[AggregateBucket]:
        """The periods one by one, each with its value per method."""
        return [
            AggregateBucket(start, end, {m: column[i] for m, column in self.values.items()})
            for i, (start, end) in enumerate(zip(self.starts, self.ends, strict=True))
        ]


@dataclass
class TemporalEntity:
    """An entity's history as a store returns it: rows per attribute (oldest first), or
    aggregates; ``window`` is set when an instance limit cut the answer short (206)."""

    id: str
    types: list[str]
    attrs: dict[str, list[HistoryRow]]
    aggregates: dict[str, list[AttributeAggregate]] | None = None
    window: tuple[int, int] | None = None


def row_time(row: HistoryRow, timeproperty: str) -> int:
    """The time of a row under ``timeproperty`` (observedAt, createdAt, modifiedAt)."""
    if timeproperty == "createdAt":
        return row.created
    if timeproperty == "modifiedAt":
        return row.modified
    return row.observed


def instance_budget(query: TemporalQuery) -> tuple[int, int]:
    """(instances an attribute may answer, instances to fetch per series): ``lastN`` when
    it is within the instance limit, else the limit, fetching one more to see whether the
    answer must be cut short (206 with a window, see :func:`cut_to_window`)."""
    limit = query.instance_limit
    if query.last_n is not None and query.last_n <= limit:
        return query.last_n, query.last_n
    return limit, limit + 1


def cut_to_window(
    found: dict[str, list[HistoryRow]], cut_at: list[int], query: TemporalQuery
) -> tuple[int, int]:
    """Cut one entity's attributes (each already limited at ``cut_at``) to the window all of
    them cover completely: up to the earliest cut (from the latest, going backwards for
    ``lastN``); the window, as (low, high)."""
    descending = query.descending
    prop = query.timeproperty
    boundary = max(cut_at) if descending else min(cut_at)
    for attr, rows in list(found.items()):
        if descending:
            kept = [r for r in rows if row_time(r, prop) > boundary]
        else:
            kept = [r for r in rows if row_time(r, prop) < boundary]
        if kept:
            found[attr] = kept
        else:
            del found[attr]
    low, high = query.time.bounds() if query.time is not None else (None, None)
    times = [row_time(r, prop) for rows in found.values() for r in rows]
    if descending:
        return boundary, high if high is not None else max(times, default=boundary)
    return low if low is not None else min(times, default=boundary), boundary


def common_window(
    entities: list[TemporalEntity], timeproperty: str, descending: bool
) -> tuple[int, int] | None:
    """Cut several entities' partial answers to the one window all of them cover
    completely (the latest common start, or earliest common end), so a client that
    continues from the window's edge neither misses nor repeats an instance."""
    windows = [e.window for e in entities if e.window is not None]
    if not windows:
        return None
    if descending:
        window = (max(w[0] for w in windows), max(w[1] for w in windows))
    else:
        window = (min(w[0] for w in windows), min(w[1] for w in windows))
    for entity in entities:
        for attr, rows in list(entity.attrs.items()):
            if descending:
                kept = [r for r in rows if row_time(r, timeproperty) > window[0]]
            else:
                kept = [r for r in rows if row_time(r, timeproperty) < window[1]]
            if kept:
                entity.attrs[attr] = kept
            else:
                del entity.attrs[attr]
    return window


def period_columns(
    methods: Iterable[str],
    m: Mapping[str, list[Any]],
    kinds: list[str],
    given: Mapping[str, list[Any]] | None = None,
) -> dict[str, list[Any]]:
    """The requested aggregation methods, a column each, from a column per measure
    (``count``, ``distinct``, ``numbers``, ``sum``, ``squares``, ``min``, ``max``, value
    type ``vt``) and the attribute type of each period (``kinds``); ``given`` overrides
    the sum, min and max returned (a store that keeps integers exact). None where a method
    does not apply (sums of text, min/max of relationships and JSON)."""
    shown = m if given is None else {**m, **given}
    vts = m["vt"]
    plain = VT_BOOL not in vts and VT_JSON not in vts
    if plain and not any(kind.endswith("Relationship") for kind in set(kinds)):
        ordered: list[bool] | None = None  # every period: min and max as measured
    else:
        ordered = [
            not kind.endswith("Relationship") and vt != VT_JSON
            for kind, vt in zip(kinds, vts, strict=True)
        ]
    values: dict[str, list[Any]] = {}
    for method in methods:
        if method == "totalCount":
            values[method] = list(m["count"])
        elif method == "distinctCount":
            values[method] = list(m["distinct"])
        elif method == "sum":
            values[method] = list(shown["sum"])
        elif method == "avg":
            values[method] = [
                total / n if n else None for total, n in zip(m["sum"], m["numbers"], strict=True)
            ]
        elif method in ("min", "max"):
            if ordered is None:
                values[method] = list(shown[method])
            else:
                values[method] = [
                    None if not keep else bool(v) if vt == VT_BOOL and v is not None else v
                    for v, vt, keep in zip(shown[method], vts, ordered, strict=True)
                ]
        elif method == "sumsq":
            values[method] = list(m["squares"])
        elif method == "stddev":
            values[method] = list(map(sample_stddev, m["numbers"], m["sum"], m["squares"]))
    return values


def measure_names(
    methods: Iterable[str], needs: Mapping[str, tuple[str, ...]], *, types: bool = True
) -> list[str]:
    """The measures a store computes for ``methods`` (``needs``: method -> its measures),
    each once, after the attribute type (``kind``) and value type (``vt``) every period has
    (unless ``types`` is False: a store that knows them without measuring)."""
    names = ["kind", "vt"] if types else []
    for method in methods:
        for measure in needs[method]:
            if measure not in names:
                names.append(measure)
    return names


def sample_stddev(n: int, total: float | None, squares: float | None) -> float | None:
    """Sample standard deviation (as Stellio) from count, sum and sum of squares."""
    if not n or total is None or squares is None:
        return None
    if n == 1:
        return 0.0
    return math.sqrt(max((squares - total * total / n) / (n - 1), 0.0))
