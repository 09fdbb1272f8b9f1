"""What the SQLite store indexes for one entity: types, scopes, attribute values, shapes.

Paths name what a ``q`` term addresses: the attribute IRI, then ``\\x1f`` and a
sub-attribute IRI (or a core member such as ``observedAt``), then ``\\x1e`` and a
compound-value key, as often as needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from urbanstack.ngsild.model import VALUE_MEMBER, Entity, Instance, normalize_datetime

SUB = "\x1f"
KEY = "\x1e"
MAX_DEPTH = 4
MAX_ROWS_PER_ATTRIBUTE = 256
_DATETIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")
_META_MEMBERS = ("observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId")

ValueRow = tuple[str, Any, str | None]  # path, value, kind (attribute type on presence rows)


def sql_value(value: Any) -> Any:
    """The SQLite value stored for a JSON scalar (booleans as 0/1)."""
    if value is True:
        return 1
    if value is False:
        return 0
    return value


def _leaves(path: str, value: Any, depth: int, out: list[ValueRow]) -> None:
    if len(out) >= MAX_ROWS_PER_ATTRIBUTE:
        return
    if isinstance(value, dict):
        if value.get("@type") == "DateTime" and "@value" in value:
            out.append((path, value["@value"], None))
            return
        if depth >= MAX_DEPTH:
            return
        for key, item in value.items():
            _leaves(path + KEY + key, item, depth + 1, out)
    elif isinstance(value, list):
        for item in value:
            _leaves(path, item, depth, out)
    elif value is not None:
        out.append((path, sql_value(value), None))
        if isinstance(value, str) and _DATETIME_RE.match(value):
            try:
                normalized = normalize_datetime(value)
            except Exception:
                return
            if normalized != value:
                out.append((path, normalized, None))


def _instance_rows(path: str, inst: Instance, depth: int, out: list[ValueRow]) -> None:
    attr_type = inst.get("type", "Property")
    out.append((path, None, attr_type))
    member = VALUE_MEMBER.get(attr_type, "value")
    value = inst.get(member)
    if attr_type == "LanguageProperty" and isinstance(value, dict):
        _leaves(path, list(value.values()), depth, out)
    elif attr_type != "GeoProperty":
        _leaves(path, value, depth, out)
    for meta in _META_MEMBERS:
        if meta in inst:
            out.append((path + SUB + meta, inst[meta], None))
    if depth < MAX_DEPTH:
        for sub_iri, sub in inst.get("subs", {}).items():
            _instance_rows(path + SUB + sub_iri, sub, depth + 1, out)


def value_rows(entity: Entity) -> list[ValueRow]:
    """Every (path, value, kind) row of the attribute-value index for ``entity``."""
    out: list[ValueRow] = []
    for iri, instances in entity["attrs"].items():
        for inst in instances:
            _instance_rows(iri, inst, 0, out)
    return out


def geo_values(entity: Entity) -> Iterator[tuple[str, dict[str, Any]]]:
    """(attribute IRI, GeoJSON geometry) for every GeoProperty instance."""
    for iri, instances in entity["attrs"].items():
        for inst in instances:
            if inst.get("type") == "GeoProperty" and isinstance(inst.get("value"), dict):
                yield iri, inst["value"]
