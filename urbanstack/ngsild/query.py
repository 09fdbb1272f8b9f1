"""Typed query objects: what GET /entities and POST /entityOperations/query ask for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from urbanstack.ngsild.geo import GeoQuery
    from urbanstack.ngsild.q import QExpr
    from urbanstack.ngsild.scope import ScopeExpr
    from urbanstack.ngsild.typeq import TypeExpr


@dataclass(frozen=True)
class EntitySelector:
    """One element of a Query's ``entities``: id, idPattern and type, all required together."""

    ids: tuple[str, ...] = ()
    id_pattern: str | None = None
    types: TypeExpr | None = None


@dataclass(frozen=True)
class EntityQuery:
    """A validated entity query, all names expanded; stores compile it to their own SQL.

    ``attrs`` keeps only entities having at least one of the attributes. ``count``
    asks for the total number of matches besides the page.
    """

    ids: tuple[str, ...] = ()
    id_pattern: str | None = None
    types: TypeExpr | None = None
    selectors: tuple[EntitySelector, ...] = ()  # alternatives (OR), from a POST query body
    attrs: frozenset[str] | None = None
    q: QExpr | None = None
    scope_q: ScopeExpr | None = None
    geo: GeoQuery | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False

    @property
    def is_unbounded(self) -> bool:
        """True when nothing narrows the query (the spec requires some filter)."""
        return not (
            self.ids
            or self.id_pattern
            or self.types
            or self.selectors
            or self.attrs
            or self.q
            or self.geo
            or self.scope_q
        )


@dataclass
class QueryResult:
    """One page of entities (stored form), the total count when asked, and whether more follow."""

    entities: list[dict] = field(default_factory=list)
    total: int | None = None
    more: bool = False
    views: list[bytes] | None = None  # the default renderings, when they were asked for
