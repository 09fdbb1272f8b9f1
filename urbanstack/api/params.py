"""Reading query parameters (and POST query bodies) into typed query and render options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.geo import parse_geo_query
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.model import validate_entity_id, validate_name
from urbanstack.ngsild.patterns import check_pattern
from urbanstack.ngsild.q import parse_query_q
from urbanstack.ngsild.query import EntityQuery, EntitySelector
from urbanstack.ngsild.representation import (
    DEFAULT_OPTIONS,
    LOCATION_IRI,
    RenderOptions,
    parse_options,
)
from urbanstack.ngsild.scope import parse_scope_q
from urbanstack.ngsild.temporal import (
    TemporalQuery,
    parse_aggregation,
    parse_last_n,
    parse_time_filter,
    parse_timeproperty,
)
from urbanstack.ngsild.temporal_render import TemporalFormat
from urbanstack.ngsild.typeq import parse_type_query
from urbanstack.settings import Settings

_CORE_MEMBERS = {"id", "type", "scope", "createdAt", "modifiedAt"}


def split_list(value: str | None) -> list[str]:
    """A comma-separated parameter as a list (empty items refused)."""
    if value is None:
        return []
    items = [v.strip() for v in value.split(",")]
    if any(not item for item in items):
        raise BadRequestData(f"Empty item in list {value!r}")
    return items


def parse_int(value: str | None, name: str, default: int, *, minimum: int = 0) -> int:
    """A non-negative integer parameter."""
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequestData(f"{name} must be an integer, not {value!r}") from None
    if number < minimum:
        raise BadRequestData(f"{name} must be at least {minimum}")
    return number


def parse_bool(value: str | None, name: str) -> bool:
    """true/false parameters."""
    if value is None:
        return False
    if value not in ("true", "false"):
        raise BadRequestData(f"{name} must be true or false")
    return value == "true"


def _attr_set(value: Any, terms: TermMap, name: str) -> frozenset[str] | None:
    if value is None:
        return None
    items = split_list(value) if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise BadRequestData(f"{name} must list attribute names")
    return frozenset(terms.expand(validate_name(a)) for a in items)


def _members(value: str | None, terms: TermMap, name: str) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset(
        m if m in _CORE_MEMBERS else terms.expand(validate_name(m)) for m in split_list(value)
    )


def _check_regex(pattern: str) -> str:
    check_pattern(pattern, "idPattern")
    return pattern


def entity_query_from_params(
    params: Mapping[str, str], terms: TermMap, settings: Settings
) -> EntityQuery:
    """GET /entities parameters as an :class:`EntityQuery` (names expanded with ``terms``)."""
    ids = tuple(validate_entity_id(i) for i in split_list(params.get("id")))
    id_pattern = params.get("idPattern")
    type_text = params.get("type")
    q_text = params.get("q")
    scope_text = params.get("scopeQ")
    expand_values = [validate_name(a) for a in split_list(params.get("expandValues"))]
    geo = parse_geo_query(
        params.get("georel"),
        params.get("geometry"),
        params.get("coordinates"),
        params.get("geoproperty"),
        terms.expand,
    )
    return EntityQuery(
        ids=ids,
        id_pattern=_check_regex(id_pattern) if id_pattern else None,
        types=parse_type_query(type_text, terms.expand) if type_text else None,
        attrs=_attr_set(params.get("attrs"), terms, "attrs"),
        q=parse_query_q(q_text, terms.expand, expand_values=expand_values) if q_text else None,
        scope_q=parse_scope_q(scope_text) if scope_text else None,
        geo=geo,
        limit=parse_int(params.get("limit"), "limit", settings.default_limit),
        offset=parse_int(params.get("offset"), "offset", 0),
        count=parse_bool(params.get("count"), "count"),
    )


def entity_query_from_body(
    body: Any, params: Mapping[str, str], terms: TermMap, settings: Settings
) -> EntityQuery:
    """A POST /entityOperations/query body (a ``Query``) plus its URL paging parameters."""
    if not isinstance(body, dict) or body.get("type", "Query") != "Query":
        raise BadRequestData("The body must be a Query object")
    selectors: list[EntitySelector] = []
    raw_selectors = body.get("entities") or []
    if not isinstance(raw_selectors, list):
        raise BadRequestData("entities must be a list of EntitySelector objects")
    for selector in raw_selectors:
        if not isinstance(selector, dict) or not isinstance(selector.get("type"), str):
            raise BadRequestData("Each EntitySelector is an object with a type")
        pattern = selector.get("idPattern")
        selectors.append(
            EntitySelector(
                ids=(validate_entity_id(selector["id"]),) if "id" in selector else (),
                id_pattern=_check_regex(pattern) if pattern else None,
                types=parse_type_query(selector["type"], terms.expand),
            )
        )
    geo_q = body.get("geoQ")
    geo = None
    if geo_q is not None:
        if not isinstance(geo_q, dict):
            raise BadRequestData("geoQ must be an object")
        geo = parse_geo_query(
            geo_q.get("georel"),
            geo_q.get("geometry"),
            geo_q.get("coordinates"),
            geo_q.get("geoproperty"),
            terms.expand,
        )
    q_text = body.get("q")
    scope_text = body.get("scopeQ")
    return EntityQuery(
        selectors=tuple(selectors),
        attrs=_attr_set(body.get("attrs"), terms, "attrs"),
        q=parse_query_q(q_text, terms.expand) if q_text else None,
        scope_q=parse_scope_q(scope_text) if scope_text else None,
        geo=geo,
        limit=parse_int(params.get("limit"), "limit", settings.default_limit),
        offset=parse_int(params.get("offset"), "offset", 0),
        count=parse_bool(params.get("count"), "count"),
    )


def render_options(
    params: Mapping[str, str], terms: TermMap, *, extra_attrs: Any = None
) -> RenderOptions:
    """Representation parameters: options/format, attrs, pick/omit, lang, geometryProperty."""
    if not params and extra_attrs is None:
        return DEFAULT_OPTIONS
    fmt, flags = parse_options(params.get("options"), params.get("format"))
    unknown = flags - {"sysAttrs", "noOverwrite", "update", "replace"}
    if unknown:
        raise BadRequestData(f"Unknown options: {', '.join(sorted(unknown))}")
    pick = _members(params.get("pick"), terms, "pick")
    omit = _members(params.get("omit"), terms, "omit") or frozenset()
    if pick is not None and omit:
        raise BadRequestData("pick and omit cannot be used together")
    attrs = _attr_set(params.get("attrs", extra_attrs), terms, "attrs")
    geometry = params.get("geometryProperty")
    return RenderOptions(
        format=fmt,
        sys_attrs="sysAttrs" in flags,
        attrs=attrs,
        pick=pick,
        omit=omit,
        lang=params.get("lang"),
        geometry_property=terms.expand(validate_name(geometry)) if geometry else LOCATION_IRI,
    )


def temporal_format(params: Mapping[str, str]) -> tuple[TemporalFormat, bool]:
    """The temporal representation asked by ``options``/``format``, and ``sysAttrs``."""
    flags = {o.strip() for o in (params.get("options") or "").split(",") if o.strip()}
    unknown = flags - {"temporalValues", "aggregatedValues", "sysAttrs", "normalized"}
    if unknown:
        raise BadRequestData(f"Unknown options for a temporal query: {', '.join(sorted(unknown))}")
    chosen = [f for f in ("temporalValues", "aggregatedValues") if f in flags]
    fmt = params.get("format")
    if fmt is not None:
        if fmt not in ("normalized", "temporalValues", "aggregatedValues", "simplified"):
            raise BadRequestData(f"Unknown temporal format {fmt!r}")
        chosen.append("temporalValues" if fmt == "simplified" else fmt)
    if len(set(chosen)) > 1:
        raise BadRequestData(f"options names conflicting formats: {', '.join(chosen)}")
    return (chosen[0] if chosen else "normalized"), "sysAttrs" in flags  # type: ignore[return-value]


def temporal_query_from_params(
    params: Mapping[str, Any],
    terms: TermMap,
    settings: Settings,
    fmt: TemporalFormat,
    *,
    required: bool,
    sys_attrs: bool = False,
) -> TemporalQuery:
    """The temporal part of a request (``timerel``, ``timeAt``, ``endTimeAt``,
    ``timeproperty``, ``lastN``, ``attrs``, ``aggrMethods``, ``aggrPeriodDuration``)."""
    return TemporalQuery(
        time=parse_time_filter(
            params.get("timerel"),
            params.get("timeAt"),
            params.get("endTimeAt"),
            required=required,
        ),
        timeproperty=parse_timeproperty(params.get("timeproperty")),
        last_n=parse_last_n(params.get("lastN")),
        attrs=_attr_set(params.get("attrs"), terms, "attrs"),
        aggregation=parse_aggregation(
            params.get("aggrMethods"),
            params.get("aggrPeriodDuration"),
            wanted=fmt == "aggregatedValues",
        ),
        instance_limit=settings.temporal_instance_limit,
        sys_attrs=sys_attrs,
    )
