"""Rendering entity histories: normalized, temporalValues, aggregatedValues (4.5.6-4.5.19)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import orjson

from urbanstack.ngsild.history import (
    VT_BOOL,
    VT_JSON,
    AttributeAggregate,
    HistoryRow,
    TemporalEntity,
    instance_id,
    row_instance,
    row_time,
)
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.representation import RenderOptions, compact_value, render_instance
from urbanstack.ngsild.temporal import TemporalQuery, from_micros

TemporalFormat = Literal["normalized", "temporalValues", "aggregatedValues"]
#: the list member of the simplified representation, per attribute type (clause 4.5.9)
VALUES_MEMBER = {
    "Property": "values",
    "GeoProperty": "values",
    "Relationship": "objects",
    "LanguageProperty": "languageMaps",
    "VocabProperty": "vocabs",
    "JsonProperty": "jsons",
    "ListProperty": "valueLists",
    "ListRelationship": "objectLists",
}
_WRAPPED = {"LanguageProperty": "languageMap", "VocabProperty": "vocab", "JsonProperty": "json"}


def format_time(micros: int) -> str:
    """A time with microseconds when they are not zero (page edges must be exact)."""
    text = from_micros(micros)
    if micros % 1000:
        text = text[:-1] + f"{micros % 1000:03d}Z"
    return text


_PLAIN_KINDS = frozenset({"Property", "GeoProperty", "Relationship"})


def _normalized(rows: list[HistoryRow], terms: TermMap, opts: RenderOptions) -> list[Any]:
    out = []
    for row in rows:
        if row.kind in _PLAIN_KINDS and opts.lang is None and row.vt != VT_JSON:
            # the common reading (a number, text or object URI, maybe a unit): no instance
            # dict to build and render, the same members in the same order
            rendered: dict[str, Any] = {
                "type": row.kind,
                "object" if row.kind == "Relationship" else "value": (
                    bool(row.val) if row.vt == VT_BOOL else row.val
                ),
            }
            if row.has_observed:
                rendered["observedAt"] = from_micros(row.observed)
            unit_code, others = _extra_members(row.extra)
            if unit_code is not None:
                rendered["unitCode"] = unit_code
            if row.dataset_id is not None:
                rendered["datasetId"] = row.dataset_id
            if others:  # objectType, sub-attributes, deletedAt: the general path renders them
                rendered = _render_row(row, terms, opts)
            elif opts.sys_attrs:
                rendered["createdAt"] = from_micros(row.created)
                rendered["modifiedAt"] = from_micros(row.modified)
        else:
            rendered = _render_row(row, terms, opts)
        rendered["instanceId"] = instance_id(row.iid or 0)
        out.append(rendered)
    return out


@lru_cache(maxsize=1024)
def _extra_members(extra: bytes | None) -> tuple[str | None, bool]:
    """(unitCode, whether other members are there) of a row's ``extra``; rows of one series
    mostly share the same bytes, decoded once here."""
    if extra is None:
        return None, False
    members = orjson.loads(extra)
    unit_code = members.pop("unitCode", None)
    return unit_code, bool(members)


def _render_row(row: HistoryRow, terms: TermMap, opts: RenderOptions) -> dict[str, Any]:
    inst = row_instance(row)
    if row.has_observed:
        inst["observedAt"] = from_micros(row.observed)
    if opts.sys_attrs:
        inst["createdAt"] = from_micros(row.created)
        inst["modifiedAt"] = from_micros(row.modified)
    return render_instance(inst, terms, opts, False)  # type: ignore[no-any-return]


def _simplified(rows: list[HistoryRow], terms: TermMap, timeproperty: str) -> Any:
    series: dict[str | None, dict[str, Any]] = {}
    for row in rows:
        target = series.get(row.dataset_id)
        if target is None:
            target = {"type": row.kind, VALUES_MEMBER[row.kind]: []}
            if row.dataset_id is not None:
                target["datasetId"] = row.dataset_id
            series[row.dataset_id] = target
        if row.kind in _PLAIN_KINDS and row.vt != VT_JSON:
            value = bool(row.val) if row.vt == VT_BOOL else row.val
        else:
            value = compact_value(row_instance(row), terms)
            if row.kind in _WRAPPED:
                value = {_WRAPPED[row.kind]: value}
            elif row.kind == "ListRelationship":
                value = [item["object"] for item in value]
        target[VALUES_MEMBER[row.kind]].append([value, from_micros(row_time(row, timeproperty))])
    out = list(series.values())
    return out[0] if len(out) == 1 else out


def _aggregated(aggregates: list[AttributeAggregate], methods: tuple[str, ...]) -> Any:
    out = []
    for aggregate in aggregates:
        rendered: dict[str, Any] = {"type": aggregate.kind}
        if aggregate.dataset_id is not None:
            rendered["datasetId"] = aggregate.dataset_id
        starts = [from_micros(t) for t in aggregate.starts]
        formatted = dict(zip(aggregate.starts, starts, strict=True))
        # a period mostly ends where the next one starts: that time is formatted once
        ends = [formatted.get(t) or from_micros(t) for t in aggregate.ends]
        for method in methods:
            column = aggregate.values.get(method) or [None] * len(starts)
            # (value, start, end) tuples: JSON arrays, built by zip in C
            rendered[method] = list(zip(column, starts, ends, strict=True))
        out.append(rendered)
    return out[0] if len(out) == 1 else out


def render_temporal_entity(
    entity: TemporalEntity,
    terms: TermMap,
    fmt: TemporalFormat,
    query: TemporalQuery,
    opts: RenderOptions,
) -> dict[str, Any]:
    """One entity's history in the requested temporal representation, compacted."""
    types = [terms.compact(t) for t in entity.types]
    out: dict[str, Any] = {"id": entity.id, "type": types[0] if len(types) == 1 else types}
    if fmt == "aggregatedValues":
        methods = query.aggregation.methods if query.aggregation else ()
        for attr, aggregates in (entity.aggregates or {}).items():
            out[terms.compact(attr)] = _aggregated(aggregates, methods)
        return out
    for attr, rows in entity.attrs.items():
        name = terms.compact(attr)
        if fmt == "temporalValues":
            out[name] = _simplified(rows, terms, query.timeproperty)
        else:
            out[name] = _normalized(rows, terms, opts)
    return out


def content_range(window: tuple[int, int], descending: bool, last_n: int | None) -> str:
    """The ``Content-Range`` of a partial temporal answer (clause 6.3.10): the DateTime
    range the answer covers completely, in the direction the instances were taken."""
    start, end = (window[1], window[0]) if descending else window
    size = str(last_n) if last_n is not None else "*"
    return f"date-time {format_time(start)}-{format_time(end)}/{size}"
