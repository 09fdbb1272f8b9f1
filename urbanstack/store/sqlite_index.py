"""What the SQLite store indexes for one entity: types, scopes, attribute values, shapes.

Paths name what a ``q`` term addresses: the attribute IRI, then ``\\x1f`` and a
sub-attribute IRI (or a core member such as ``observedAt``), then ``\\x1e`` and a
compound-value key, as often as needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from urbanstack.ngsild.model import VALUE_MEMBER, Entity, Instance
from urbanstack.ngsild.q import AttrPath, stored_datetime

SUB = "\x1f"
KEY = "\x1e"
MAX_DEPTH = 4
MAX_ROWS_PER_ATTRIBUTE = 256
_TIME_MEMBERS = ("observedAt", "createdAt", "modifiedAt")
#: instance members the SQLite index leaves out: every write (every measure of a sensor)
#: rewrites them, and q rarely asks for them: the SQLite store checks such terms on the
#: entity documents instead (a scan of the entities having the attribute)
UNINDEXED_MEMBERS = frozenset({"observedAt", "createdAt", "modifiedAt"})
_TEXT_MEMBERS = ("unitCode", "datasetId")
#: kinds of leaf rows: plain values (None), relationship objects, normalised datetimes;
#: typed rows live under their own path (path + TYPED + kind) so lookups stay on one index
REL = "rel"
DT = "dt"
BOOL = "bool"
TYPED = "\x1d"


def typed_path(path: str, kind: str | None) -> str:
    """The index path holding leaf values of ``kind`` at ``path``."""
    return path if kind is None else path + TYPED + kind


ValueRow = tuple[str, Any, str | None]  # path, value, kind (attribute type on presence rows)


def path_text(path: AttrPath) -> str:
    """The index path of a q attribute path (the paths :func:`value_rows` writes)."""
    text = path.attr
    for sub in path.subs:
        text += SUB + sub
    for key in path.keys:
        text += KEY + key
    return text


def sql_value(value: Any) -> Any:
    """The SQLite value stored for a JSON scalar (booleans as 0/1)."""
    if value is True:
        return 1
    if value is False:
        return 0
    return value


def _leaves(path: str, value: Any, depth: int, out: list[ValueRow], kind: str | None) -> None:
    if len(out) >= MAX_ROWS_PER_ATTRIBUTE:
        return
    if isinstance(value, dict):
        if value.get("@type") == "DateTime" and "@value" in value:
            out.append((path, value["@value"], DT))
            return
        if depth >= MAX_DEPTH:
            return
        for key, item in value.items():
            _leaves(path + KEY + key, item, depth + 1, out, kind)
    elif isinstance(value, list):
        for item in value:
            _leaves(path, item, depth, out, kind)
    elif isinstance(value, bool) and kind is None:
        out.append((path, int(value), BOOL))  # its own path: true is not the number 1
    elif value is not None:
        out.append((path, sql_value(value), kind))
        if isinstance(value, str) and kind is None:
            normalized = stored_datetime(value)
            if normalized is not None:
                out.append((path, normalized, DT))


_TIME_SUFFIXES = tuple((meta, SUB + meta) for meta in _TIME_MEMBERS)
_INDEXED_TIME_SUFFIXES = tuple(m for m in _TIME_SUFFIXES if m[0] not in UNINDEXED_MEMBERS)
_TEXT_SUFFIXES = tuple((meta, SUB + meta) for meta in _TEXT_MEMBERS)


def _instance_rows(
    path: str,
    inst: Instance,
    depth: int,
    out: list[ValueRow],
    times: tuple[tuple[str, str], ...] = _TIME_SUFFIXES,
) -> None:
    attr_type = inst.get("type", "Property")
    out.append((path, None, attr_type))
    value = inst.get(VALUE_MEMBER.get(attr_type, "value"))
    cls = type(value)
    # scalars (most values) inline what _leaves would do with them
    if attr_type == "Property" and (cls is str or cls is int or cls is float):
        if len(out) < MAX_ROWS_PER_ATTRIBUTE:
            out.append((path, value, None))
            if cls is str:
                normalized = stored_datetime(value)
                if normalized is not None:
                    out.append((path, normalized, DT))
    elif attr_type == "Relationship" and cls is str:
        if len(out) < MAX_ROWS_PER_ATTRIBUTE:
            out.append((path, value, REL))
    elif attr_type == "LanguageProperty" and isinstance(value, dict):
        for lang, text in value.items():
            _leaves(path, text, depth, out, None)
            _leaves(path + KEY + lang, text, depth, out, None)
    elif attr_type in ("Relationship", "ListRelationship"):
        _leaves(path, value, depth, out, REL)
    elif attr_type != "GeoProperty":
        _leaves(path, value, depth, out, None)
    for meta, suffix in times:
        if meta in inst:
            out.append((path + suffix, inst[meta], DT))
    for meta, suffix in _TEXT_SUFFIXES:
        if meta in inst:
            out.append((path + suffix, inst[meta], None))
    if depth < MAX_DEPTH and "subs" in inst:
        for sub_iri, sub in inst["subs"].items():
            _instance_rows(path + SUB + sub_iri, sub, depth + 1, out, times)


def value_rows(
    entity: Entity, only: Iterable[str] | None = None, *, system_times: bool = True
) -> list[ValueRow]:
    """Every (path, value, kind) row of the attribute-value index for ``entity`` (or for
    the attributes ``only`` names); without ``system_times``, no rows for the instance
    members :data:`UNINDEXED_MEMBERS` names (what the SQLite store indexes)."""
    out: list[ValueRow] = []
    attrs = entity["attrs"]
    times = _TIME_SUFFIXES if system_times else _INDEXED_TIME_SUFFIXES
    for iri in attrs if only is None else only:
        for inst in attrs.get(iri, ()):
            _instance_rows(iri, inst, 0, out, times)
    return out


def geo_values(entity: Entity) -> Iterator[tuple[str, dict[str, Any]]]:
    """(attribute IRI, GeoJSON geometry) for every GeoProperty instance."""
    for iri, instances in entity["attrs"].items():
        for inst in instances:
            if inst.get("type") == "GeoProperty" and isinstance(inst.get("value"), dict):
                yield iri, inst["value"]
