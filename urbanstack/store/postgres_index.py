"""The index document the PostgreSQL store keeps beside each entity (column ``ix``, JSONB).

It holds the same facts as the SQLite index tables (:mod:`urbanstack.store.sqlite_index`
computes them, so both stores agree on what ``q`` sees), as one JSON object per entity
under a GIN ``jsonb_path_ops`` index:

- ``{"<typed path>": [leaf values...]}``: every distinct leaf value per path, so
  ``ix @> '{"<path>": [42]}'`` is one GIN lookup; booleans are JSON booleans;
- ``{"@p": [paths...]}``: every attribute and sub-attribute path the entity has
  (``exists`` and ``attrs`` are containment lookups too);
- ``{"@k": {"<attribute>": {"<attribute type>": n}}}``: instance counts per top-level
  attribute and attribute type, for discovery.

Attribute IRIs never start with ``@``, so the two reserved keys cannot clash with a path.
"""

from __future__ import annotations

from typing import Any

import orjson

from urbanstack.ngsild.model import Entity
from urbanstack.store.sqlite_index import (
    BOOL,
    DT,
    KEY,
    REL,
    SUB,
    geo_values,
    path_text,
    typed_path,
    value_rows,
)

PRESENT = "@p"
KINDS = "@k"

__all__ = [
    "BOOL",
    "DT",
    "KEY",
    "KINDS",
    "PRESENT",
    "REL",
    "SUB",
    "geo_values",
    "index_document",
    "path_text",
    "typed_path",
]


def index_document(entity: Entity) -> dict[str, Any]:
    """The ``ix`` document of a stored entity (see the module docstring)."""
    values: dict[str, dict[Any, Any]] = {}
    present: dict[str, None] = {}
    kinds: dict[str, dict[str, int]] = {}
    for path, val, kind in value_rows(entity):
        if val is None:
            present[path] = None
            if SUB not in path:
                counts = kinds.setdefault(path, {})
                name = kind or "Property"
                counts[name] = counts.get(name, 0) + 1
            continue
        if kind == BOOL:
            val = bool(val)
        key = typed_path(path, kind)
        # keyed by (type, value): 1, 1.0 and True are one dict key otherwise
        values.setdefault(key, {})[(type(val) is bool, val)] = val
    ix: dict[str, Any] = {key: list(found.values()) for key, found in values.items()}
    ix[PRESENT] = list(present)
    ix[KINDS] = kinds
    return ix


def geometry_rows(entity: Entity) -> list[tuple[str, str]]:
    """(attribute IRI, GeoJSON text) of every GeoProperty instance of ``entity``."""
    return [(iri, orjson.dumps(geometry).decode()) for iri, geometry in geo_values(entity)]
