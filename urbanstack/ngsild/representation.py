"""Rendering stored entities: normalized, concise, keyValues and GeoJSON, compacted.

Takes an entity in the stored (expanded) form of :mod:`urbanstack.ngsild.model`
and the request's :class:`TermMap`, and returns the JSON document to send.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.jsonld import TermMap, core_term_map
from urbanstack.ngsild.model import VALUE_MEMBER, Entity, Instance

Format = Literal["normalized", "concise", "keyValues"]
FORMATS: tuple[str, ...] = ("normalized", "concise", "keyValues")
LOCATION_IRI = "https://uri.etsi.org/ngsi-ld/location"


@dataclass(frozen=True)
class RenderOptions:
    """How to render entities for one request."""

    format: Format = "normalized"
    sys_attrs: bool = False
    attrs: frozenset[str] | None = None  # expanded attribute IRIs to keep (attrs/pick)
    pick: frozenset[str] | None = None  # members to keep: "id", "type", "scope" or IRIs
    omit: frozenset[str] = frozenset()  # members to drop
    lang: str | None = None
    geometry_property: str = LOCATION_IRI


def parse_options(options: str | None, format_param: str | None = None) -> tuple[Format, set[str]]:
    """Read ``options=`` (and ``format=``) into a format and the remaining flags."""
    flags = {o.strip() for o in (options or "").split(",") if o.strip()}
    fmt: str = "normalized"
    chosen = [f for f in ("normalized", "concise", "keyValues", "simplified") if f in flags]
    if len(chosen) > 1:
        raise BadRequestData(f"options names conflicting formats: {', '.join(chosen)}")
    if chosen:
        fmt = chosen[0]
        flags.discard(fmt)
    if format_param:
        if format_param not in (*FORMATS, "simplified"):
            raise BadRequestData(f"Unknown format {format_param!r}")
        fmt = format_param
    if fmt == "simplified":
        fmt = "keyValues"
    return fmt, flags  # type: ignore[return-value]


def select_language(language_map: dict[str, Any], lang: str) -> tuple[str, Any] | None:
    """Pick the best entry of a languageMap for ``lang`` (comma list, ``*`` for any)."""
    wanted = [part.split(";")[0].strip() for part in lang.split(",") if part.strip()]
    for tag in wanted:
        if tag == "*":
            break
        if tag in language_map:
            return tag, language_map[tag]
        for key, text in language_map.items():
            if key.lower().split("-")[0] == tag.lower().split("-")[0]:
                return key, text
    if "@none" in language_map:
        return "@none", language_map["@none"]
    for key, text in language_map.items():
        return key, text
    return None


def compact_value(inst: Instance, terms: TermMap) -> Any:
    """An instance's value member with IRIs (vocab terms) compacted."""
    return _compact_value(inst, terms)


def _compact_value(inst: Instance, terms: TermMap) -> Any:
    attr_type = inst.get("type")
    value = inst.get(VALUE_MEMBER.get(attr_type, "value"))
    if attr_type == "VocabProperty":
        if isinstance(value, list):
            return [terms.compact(v) for v in value]
        return terms.compact(value)
    if attr_type == "ListRelationship" and isinstance(value, list):
        return [{"object": v} for v in value]
    return value


#: members a plain Property instance may have for :func:`_render_plain` to render it
_PLAIN_MEMBERS = frozenset(
    {"type", "value", "observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt"}
)


def _render_plain(inst: Instance) -> dict[str, Any]:
    """A Property with none but the usual members, normalized, without system attributes:
    most instances a store renders (the same output as the general path, faster)."""
    out: dict[str, Any] = {"type": "Property", "value": inst["value"]}
    if "observedAt" in inst:
        out["observedAt"] = _public_time(inst["observedAt"])
    if "unitCode" in inst:
        out["unitCode"] = inst["unitCode"]
    if "datasetId" in inst:
        out["datasetId"] = inst["datasetId"]
    return out


def render_instance(inst: Instance, terms: TermMap, opts: RenderOptions, concise: bool) -> Any:
    """One stored-form attribute instance, normalized (or concise), compacted with ``terms``."""
    attr_type = inst["type"]
    if (
        attr_type == "Property"
        and not concise
        and not opts.sys_attrs
        and "value" in inst
        and inst.keys() <= _PLAIN_MEMBERS
    ):
        return _render_plain(inst)
    member = VALUE_MEMBER[attr_type]
    value = _compact_value(inst, terms)
    out: dict[str, Any] = {}
    if attr_type == "LanguageProperty" and opts.lang is not None:
        picked = select_language(value, opts.lang)
        attr_type, member = "Property", "value"
        value = picked[1] if picked else None
        if picked:
            out["lang"] = picked[0]
    if not concise:
        out = {"type": attr_type, member: value, **out}
    else:
        out = {member: value, **out}
    if "observedAt" in inst:
        out["observedAt"] = _public_time(inst["observedAt"])
    if "deletedAt" in inst:  # only on the last instance of a deleted attribute's history
        out["deletedAt"] = _public_time(inst["deletedAt"])
    for key in ("unitCode", "datasetId"):
        if key in inst:
            out[key] = inst[key]
    if "objectType" in inst:
        types = [terms.compact(t) for t in inst["objectType"]]
        out["objectType"] = types[0] if len(types) == 1 else types
    if opts.sys_attrs:
        for key in ("createdAt", "modifiedAt"):
            if key in inst:
                out[key] = _public_time(inst[key])
    for sub_iri, sub in inst.get("subs", {}).items():
        out[terms.compact(sub_iri)] = render_instance(sub, terms, opts, concise)
    if concise and len(out) == 1:
        if member == "value" and attr_type in ("Property", "GeoProperty"):
            if attr_type == "GeoProperty" or not isinstance(value, dict):
                return value
    return out


def _key_value(inst: Instance, terms: TermMap, opts: RenderOptions) -> Any:
    value = _compact_value(inst, terms)
    if inst["type"] == "LanguageProperty" and opts.lang is not None:
        picked = select_language(value, opts.lang)
        return picked[1] if picked else None
    if inst["type"] == "LanguageProperty":
        return {"languageMap": value}
    if inst["type"] == "VocabProperty":
        return {"vocab": value}
    if inst["type"] == "JsonProperty":
        return {"json": value}
    if inst["type"] == "ListRelationship":
        return [item["object"] for item in value]
    return value


def _public_time(stamp: str) -> str:
    # stored with microseconds; NGSI-LD clients expect milliseconds
    if len(stamp) == 27 and stamp.endswith("Z"):
        return stamp[:23] + "Z"
    return stamp


def _wanted(name: str, opts: RenderOptions) -> bool:
    if name in opts.omit:
        return False
    if opts.pick is not None and name not in opts.pick:
        return False
    return True


def render_entity(entity: Entity, terms: TermMap, opts: RenderOptions) -> dict[str, Any]:
    """Render one stored entity in the requested format, compacted with ``terms``."""
    out: dict[str, Any] = {}
    if _wanted("id", opts):
        out["id"] = entity["id"]
    if _wanted("type", opts):
        types = [terms.compact(t) for t in entity["type"]]
        out["type"] = types[0] if len(types) == 1 else types
    if "scope" in entity and _wanted("scope", opts):
        scope = entity["scope"]
        out["scope"] = scope[0] if len(scope) == 1 else scope
    if opts.sys_attrs and opts.format != "keyValues":
        out["createdAt"] = _public_time(entity["createdAt"])
        out["modifiedAt"] = _public_time(entity["modifiedAt"])
    concise = opts.format == "concise"
    for iri, instances in entity["attrs"].items():
        if opts.attrs is not None and iri not in opts.attrs:
            continue
        if not _wanted(iri, opts):
            continue
        name = terms.compact(iri)
        if opts.format == "keyValues":
            default = next((i for i in instances if "datasetId" not in i), instances[0])
            out[name] = _key_value(default, terms, opts)
            continue
        rendered = [render_instance(inst, terms, opts, concise) for inst in instances]
        out[name] = rendered[0] if len(rendered) == 1 else rendered
    return out


def render_feature(entity: Entity, terms: TermMap, opts: RenderOptions) -> dict[str, Any]:
    """Render an entity as a GeoJSON Feature (geometry from ``geometry_property``)."""
    props = render_entity(entity, terms, opts)
    entity_id = props.pop("id", entity["id"])
    geometry = None
    instances = entity["attrs"].get(opts.geometry_property)
    if instances and instances[0].get("type") == "GeoProperty":
        geometry = instances[0].get("value")
    return {"id": entity_id, "type": "Feature", "geometry": geometry, "properties": props}


def render_feature_collection(
    entities: Collection[Entity], terms: TermMap, opts: RenderOptions
) -> dict[str, Any]:
    """Render entities as a GeoJSON FeatureCollection."""
    return {
        "type": "FeatureCollection",
        "features": [render_feature(e, terms, opts) for e in entities],
    }


DEFAULT_OPTIONS = RenderOptions()


def render_default_view(entity: Entity) -> bytes:
    """The answer most requests want, kept by the store beside each entity: normalized,
    compacted with the core context alone, no system attributes, as JSON bytes."""
    return orjson.dumps(render_entity(entity, core_term_map(), DEFAULT_OPTIONS))


def update_default_view(view: bytes, old: Entity, new: Entity) -> bytes | None:
    """``new``'s default view from ``old``'s (``view``), re-rendering only the attributes
    whose instances changed: an update of one attribute should not pay for rendering all
    of them. None when ``new`` differs in its shape (types, scope, which attributes, or
    their order): then render it in full."""
    old_attrs, new_attrs = old["attrs"], new["attrs"]
    if old["type"] != new["type"] or old.get("scope") != new.get("scope"):
        return None
    if len(old_attrs) != len(new_attrs) or any(
        a != b for a, b in zip(old_attrs, new_attrs, strict=True)
    ):
        return None
    terms = core_term_map()
    out = orjson.loads(view)
    if len(out) != len(new_attrs) + 2 + ("scope" in new):  # two IRIs shared a term
        return None
    for iri, instances in new_attrs.items():
        if instances is not old_attrs[iri] and instances != old_attrs[iri]:
            if len(instances) == 1:
                out[terms.compact(iri)] = render_instance(
                    instances[0], terms, DEFAULT_OPTIONS, False
                )
            else:
                out[terms.compact(iri)] = [
                    render_instance(i, terms, DEFAULT_OPTIONS, False) for i in instances
                ]
    return orjson.dumps(out)
