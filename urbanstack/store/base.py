"""The storage contract every backend implements (SQLite now, PostgreSQL later).

Stores only persist and query. NGSI-LD rules (merge semantics, validation, term
handling) live in ``ngsild/`` and ``broker/``; a change reaches the store as an
:class:`EntityChange` whose ``apply`` function the store runs *inside* its write
transaction on the current stored entity, so read-modify-write is atomic on any
backend. Nothing above ``store/`` sees a driver exception: backends translate
them into :class:`StoreError` (or an :class:`~urbanstack.ngsild.errors.NgsiLdError`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from urbanstack.ngsild.errors import InternalError, NgsiLdError
from urbanstack.ngsild.model import Entity
from urbanstack.ngsild.query import EntityQuery, QueryResult

ViewRenderer = Callable[[Entity], bytes]


class StoreError(InternalError):
    """A backend failure (I/O, corruption, driver error); ``original`` keeps the cause."""

    def __init__(self, detail: str, original: BaseException | None = None) -> None:
        super().__init__(detail)
        self.original = original


class Keep:
    """Returned by ``EntityChange.apply`` to leave the entity as it is."""

    def __init__(self, result: Any = None) -> None:
        self.result = result


class Delete:
    """Returned by ``EntityChange.apply`` to delete the entity."""

    def __init__(self, result: Any = None) -> None:
        self.result = result


class Write:
    """Returned by ``EntityChange.apply`` to store ``entity`` (created or replaced)."""

    def __init__(self, entity: Entity, result: Any = None) -> None:
        self.entity = entity
        self.result = result


Outcome = Keep | Delete | Write


@dataclass
class EntityChange:
    """One entity's change: ``apply(current or None) -> Outcome`` runs in the transaction.

    ``apply`` must be pure (it may be retried) and raises an ``NgsiLdError`` to refuse
    the change, which then leaves the entity untouched.
    """

    entity_id: str
    apply: Callable[[Entity | None], Outcome]
    #: the entity ``apply`` will write if the id is free (creates): a store may prepare its
    #: rows ahead of the write transaction; a pure optimisation, never required
    expected: Entity | None = None


@dataclass
class ChangeResult:
    """What happened to one :class:`EntityChange`: ``error`` set when it was refused."""

    entity_id: str
    result: Any = None
    error: NgsiLdError | None = None
    old: Entity | None = None
    new: Entity | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ContextRecord:
    """A JSON-LD context held by the broker (``/jsonldContexts``)."""

    id: str
    url: str
    kind: str  # Hosted | Cached | ImplicitlyCreated
    body: Any
    created_at: str
    last_used: str | None = None
    hits: int = 0


@dataclass
class DiscoveryRow:
    """A discovery fact: a type's entity count (``attribute`` None), an (entity type,
    attribute, attribute type) combination (``count`` 0), or an attribute's instance count
    per attribute type (``entity_type`` None)."""

    entity_type: str | None
    attribute: str | None
    attribute_type: str | None
    count: int


@dataclass
class StoreInfo:
    """What ``GET /version`` reports about the store."""

    backend: str
    backend_version: str
    schema_version: int
    details: dict[str, Any] = field(default_factory=dict)


class EntityStore(abc.ABC):
    """Abstract store of NGSI-LD entities, per tenant (``None`` is the default tenant).

    Tenants: a write to an unknown tenant creates it; a read of an unknown tenant
    raises :class:`~urbanstack.ngsild.errors.NonexistentTenant`.

    Views: when :attr:`view_renderer` is set, the store keeps ``view_renderer(entity)``
    beside each entity it writes, in the same transaction, and hands those bytes back
    from :meth:`get_entity_view` and ``query_entities(..., views=True)``, so the most
    common answer needs no decoding or rendering. A view is never staler than its entity.
    """

    view_renderer: ViewRenderer | None = None

    @abc.abstractmethod
    async def open(self) -> None:
        """Open connections and apply schema migrations (idempotent)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued writes, then close every connection."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the store answers a trivial query (``GET /health``)."""

    @abc.abstractmethod
    async def info(self) -> StoreInfo:
        """Backend name and versions (``GET /version``)."""

    @abc.abstractmethod
    async def tenant_exists(self, tenant: str | None) -> bool:
        """True when ``tenant`` has been created by a write (the default always exists)."""

    @abc.abstractmethod
    async def change_entities(
        self, tenant: str | None, changes: Sequence[EntityChange]
    ) -> list[ChangeResult]:
        """Apply changes in order, each atomically, and commit before returning.

        Each change reads the current entity, calls ``apply`` and writes the outcome;
        an ``NgsiLdError`` raised by ``apply`` is reported in that change's result and
        leaves that entity unchanged while the others proceed. Results come back in
        the order of ``changes``. Creates the tenant when it does not exist. Raises
        :class:`StoreError` when the transaction itself fails (nothing is then written).
        """

    @abc.abstractmethod
    async def get_entity(self, tenant: str | None, entity_id: str) -> Entity | None:
        """The stored entity, or None. Raises NonexistentTenant for an unknown tenant."""

    @abc.abstractmethod
    async def get_entity_view(self, tenant: str | None, entity_id: str) -> bytes | None:
        """The entity's default view (``view_renderer(entity)``), or None when it does not
        exist. Raises NonexistentTenant for an unknown tenant."""

    @abc.abstractmethod
    async def query_entities(
        self, tenant: str | None, query: EntityQuery, *, views: bool = False
    ) -> QueryResult:
        """Entities matching every filter of ``query``, one page of them.

        Order: by distance for ``near`` geo-queries, otherwise by creation order.
        ``total`` is filled when ``query.count``. Filters are evaluated by the
        backend (indexes, SQL), never by loading the whole tenant. With ``views``,
        the page comes as ``QueryResult.views`` (default views) instead of entities.
        """

    @abc.abstractmethod
    async def discovery(self, tenant: str | None) -> list[DiscoveryRow]:
        """Entity counts per type, which attributes (and attribute types) each type has,
        and instance counts per (attribute, attribute type); see :class:`DiscoveryRow`."""

    @abc.abstractmethod
    async def put_context(self, record: ContextRecord) -> None:
        """Store (or replace, by id) a JSON-LD context; contexts are shared by all tenants."""

    @abc.abstractmethod
    async def get_context(self, key: str) -> ContextRecord | None:
        """A context by its local id or by its URL."""

    @abc.abstractmethod
    async def list_contexts(self) -> list[ContextRecord]:
        """Every stored context, oldest first."""

    @abc.abstractmethod
    async def delete_context(self, context_id: str) -> bool:
        """Remove a context by local id; False when there was none."""

    @abc.abstractmethod
    async def touch_context(self, context_id: str, when: str) -> None:
        """Record one more use of a context (its hit count and last use)."""
