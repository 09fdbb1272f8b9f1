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
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from urbanstack.ngsild.errors import BadRequestData, InternalError, NgsiLdError
from urbanstack.ngsild.history import HistoryRow, TemporalEntity
from urbanstack.ngsild.model import Entity
from urbanstack.ngsild.query import EntityQuery, QueryResult
from urbanstack.ngsild.temporal import TemporalQuery

ViewRenderer = Callable[[Entity], bytes]
#: (stored view of old, old, new) -> new's view, or None to render new in full
ViewUpdater = Callable[[bytes, Entity, Entity], bytes | None]
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,62}$")
#: the announcement topic a store gives its listener when announcements may have been lost
#: (its connection to the other processes was down): every cache is to be reloaded
ANNOUNCEMENTS_MISSED = "announcements-missed"


def validate_tenant(tenant: str | None) -> str | None:
    """Tenant names become file and schema names: letters, digits, ``_`` and ``-`` only."""
    if tenant is None or tenant == "":
        return None
    if not _TENANT_RE.match(tenant):
        raise BadRequestData(f"Invalid tenant name {tenant!r}: use letters, digits, '_' or '-'")
    return tenant


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
    #: history rows to record for this change instead of the instances it adds or changes
    #: (temporal writes give the instances themselves); None: derived from (old, new)
    history: list[HistoryRow] | None = None
    #: forget the entity's history when this change deletes it (DELETE /temporal/entities)
    drop_history: bool = False
    #: the types to file ``history`` under when the change leaves no entity (the kept
    #: history of a deleted entity, copied by ``urbanstack migrate``)
    history_types: list[str] | None = None
    #: ``apply`` replaces top-level members and attribute instance lists but never changes
    #: a list or an instance it was given: the store may then pass a shallow copy of the
    #: stored entity instead of decoding it a second time
    shallow: bool = False
    #: False: the entity is written far more often than it is read (a device's entity fed
    #: measure by measure): the store may keep no ready-rendered view of it and render it
    #: when read instead; a write that keeps the view restores it
    store_view: bool = True


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
class RecordChange:
    """One record's change: ``apply(current or None)`` returns the new record (any JSON
    value), None to delete it, or a :class:`Keep`; it runs inside the transaction."""

    key: str
    apply: Callable[[Any | None], Any]


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


@dataclass
class OutboxItem:
    """A notification to send, produced by the change observer inside the write transaction."""

    subscription_id: str
    entity_id: str
    payload: bytes  # what to notify (JSON), rendered by the delivery worker


#: (tenant, old, new) of one accepted change -> the notifications it causes; runs inside the
#: store's write transaction (on the writer's thread), so it must be quick and not block
ChangeObserver = Callable[[str | None, Entity | None, Entity | None], list[OutboxItem]]


@dataclass
class PendingNotification:
    """An outbox row waiting for delivery."""

    seq: int
    subscription_id: str
    entity_id: str
    payload: bytes
    created: str
    attempts: int
    next_attempt: float  # unix time


@dataclass
class SubscriptionRecord:
    """A stored subscription: its JSON form and its delivery status."""

    id: str
    document: dict[str, Any]
    times_sent: int = 0
    times_failed: int = 0
    last_notification: str | None = None
    last_success: str | None = None
    last_failure: str | None = None
    failing: bool = False


@dataclass
class DeliveryReport:
    """What one delivery round did for one subscription, recorded in one write."""

    subscription_id: str
    delivered: list[int]  # outbox seqs sent successfully (deleted)
    failed: int | None = None  # the seq that failed (kept, retried at next_attempt)
    next_attempt: float = 0.0
    error: str | None = None
    when: str = ""


@dataclass
class TemporalPage:
    """One page of entities' histories, with the total number of matching entities when asked."""

    entities: list[TemporalEntity]
    total: int | None = None


class EntityStore(abc.ABC):
    """Abstract store of NGSI-LD entities, per tenant (``None`` is the default tenant).

    Tenants: a write to an unknown tenant creates it; a read of an unknown tenant
    raises :class:`~urbanstack.ngsild.errors.NonexistentTenant`.

    Notifications: when :attr:`change_observer` is set, every accepted change's outbox
    items are written in the same transaction, so a committed change always has its
    pending notifications, even across a crash.

    History: every change committed by :meth:`change_entities` also appends, in the same
    transaction, one history row per attribute instance it adds or changes
    (:func:`urbanstack.ngsild.history.changed_instances`), or the change's own
    ``history`` rows. Deleting an entity drops its history unless ``keep_history_on_delete``.

    Views: when :attr:`view_renderer` is set, the store keeps ``view_renderer(entity)``
    beside each entity it writes, in the same transaction, and hands those bytes back
    from :meth:`get_entity_view` and ``query_entities(..., views=True)``, so the most
    common answer needs no decoding or rendering. A view is never staler than its entity.
    """

    view_renderer: ViewRenderer | None = None
    #: optional, beside :attr:`view_renderer`: derives an updated entity's view from its
    #: stored one (cheaper than rendering it again); None from it means render in full
    view_updater: ViewUpdater | None = None
    keep_history_on_delete: bool = True
    #: called for every accepted change inside the write transaction; its outbox items are
    #: committed with the change (see :data:`ChangeObserver`)
    change_observer: ChangeObserver | None = None
    #: called on the event loop after a commit that wrote outbox rows (wakes the worker):
    #: ``listener(tenant)``, or ``listener(tenant, subscription_ids)`` when the store knows
    #: which subscriptions got rows (the worker then looks at those alone)
    outbox_listener: Callable[..., None] | None = None
    #: called on the event loop with each committed :meth:`change_entities` call's results
    #: (live change streams; best effort, unlike the outbox)
    commit_listener: Callable[[str | None, list[ChangeResult]], None] | None = None
    #: True when several processes may open the store at once (PostgreSQL): locks and
    #: announcements then matter, and work done under a lock is saved before its release
    shared_by_processes: bool = False
    #: called on the event loop with each announcement (topic, message) made by any process
    #: sharing this store, this one included (see :meth:`announce`)
    announcement_listener: Callable[[str, dict[str, Any]], None] | None = None

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

    # --- history (the temporal API)

    @abc.abstractmethod
    async def tenants(self) -> list[str | None]:
        """Every existing tenant (``None`` first), for maintenance such as retention."""

    @abc.abstractmethod
    async def get_history(
        self, tenant: str | None, entity_id: str, query: TemporalQuery
    ) -> TemporalEntity | None:
        """One entity's history filtered and shaped by ``query`` (instances oldest first,
        at most ``query.instance_limit`` per attribute, or aggregates computed by the
        backend); None when the entity has no history. Raises NonexistentTenant."""

    @abc.abstractmethod
    async def query_history(
        self, tenant: str | None, query: EntityQuery, temporal: TemporalQuery
    ) -> TemporalPage:
        """Histories of the entities ``query`` selects (on their current state, paged by
        ``query.limit``/``offset`` in creation order), each as in :meth:`get_history`."""

    @abc.abstractmethod
    async def update_instance(
        self, tenant: str | None, entity_id: str, attr: str, instance: int, row: HistoryRow
    ) -> bool:
        """Replace one stored instance (by instance number) keeping its number and creation
        time; False when there is no such instance of that attribute."""

    @abc.abstractmethod
    async def delete_instance(
        self, tenant: str | None, entity_id: str, attr: str, instance: int
    ) -> bool:
        """Delete one stored instance; False when there is no such instance."""

    @abc.abstractmethod
    async def delete_attribute_history(
        self, tenant: str | None, entity_id: str, attr: str, dataset_id: str | None, every: bool
    ) -> bool:
        """Delete an attribute's history: the default instances (no datasetId), those of
        ``dataset_id``, or all of them with ``every``; False when nothing matched."""

    @abc.abstractmethod
    async def delete_history(self, tenant: str | None, entity_id: str) -> bool:
        """Delete an entity's whole history; False when it had none."""

    @abc.abstractmethod
    async def prune_history(self, tenant: str | None, before: int) -> int:
        """Delete the instances filed before ``before`` (microseconds); rows deleted."""

    @abc.abstractmethod
    async def count_history(self, tenant: str | None, entity_type: str) -> int:
        """How many instances :meth:`export_history` would yield (for progress bars)."""

    @abc.abstractmethod
    async def history_types(self, tenant: str | None) -> dict[str, int]:
        """Entity type IRI -> how many entities have a history filed under it (deleted
        entities whose history was kept included)."""

    @abc.abstractmethod
    async def history_entity_types(
        self, tenant: str | None, entity_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        """The last known types of each of ``entity_ids`` that has a history."""

    @abc.abstractmethod
    def export_history(
        self, tenant: str | None, entity_type: str, batch_size: int = 5000
    ) -> AsyncIterator[list[tuple[str, HistoryRow]]]:
        """Every instance of the entities of ``entity_type`` as (entity id, row) batches,
        by entity then attribute then time, without loading the history in memory."""

    # --- subscriptions and their outbox

    @abc.abstractmethod
    async def create_subscription(self, tenant: str | None, record: SubscriptionRecord) -> None:
        """Store a new subscription; AlreadyExists when its id is taken. Creates the tenant."""

    @abc.abstractmethod
    async def get_subscription(self, tenant: str | None, sub_id: str) -> SubscriptionRecord | None:
        """One subscription with its delivery status, or None."""

    @abc.abstractmethod
    async def list_subscriptions(
        self, tenant: str | None, limit: int, offset: int
    ) -> tuple[list[SubscriptionRecord], int]:
        """One page of subscriptions in creation order, and how many there are."""

    @abc.abstractmethod
    async def replace_subscription(
        self, tenant: str | None, sub_id: str, document: dict[str, Any]
    ) -> bool:
        """Replace a subscription's JSON form (status kept); False when there is none."""

    @abc.abstractmethod
    async def delete_subscription(self, tenant: str | None, sub_id: str) -> bool:
        """Delete a subscription and its pending notifications; False when there is none."""

    @abc.abstractmethod
    async def queue_notifications(self, tenant: str | None, items: list[OutboxItem]) -> None:
        """Add notifications not caused by a change (periodic ones) to the outbox."""

    @abc.abstractmethod
    async def pending_notifications(
        self, tenant: str | None, limit: int, subscription_id: str | None = None, after: int = 0
    ) -> dict[str, list[PendingNotification]]:
        """Per subscription (or for ``subscription_id`` alone), its oldest ``limit`` outbox
        rows in change order, skipping those numbered ``after`` or less."""

    @abc.abstractmethod
    async def record_deliveries(self, tenant: str | None, reports: list[DeliveryReport]) -> None:
        """Delete delivered rows, reschedule failed ones and update the subscriptions'
        delivery status, in one transaction."""

    # --- records: small JSON documents of the platform's own parts (IoT provisioning, ...)

    @abc.abstractmethod
    async def get_record(self, kind: str, key: str) -> Any | None:
        """The record ``key`` of ``kind`` (e.g. ``iot-device``), or None."""

    @abc.abstractmethod
    async def list_records(
        self, kind: str, limit: int, offset: int = 0, prefix: str = ""
    ) -> tuple[list[tuple[str, Any]], int]:
        """One page of (key, record) of ``kind`` whose key starts with ``prefix``, by key,
        and how many there are."""

    @abc.abstractmethod
    async def change_records(self, kind: str, changes: Sequence[RecordChange]) -> list[Any]:
        """Apply ``changes`` in one transaction, each ``apply(current or None)`` returning
        the new record, None to delete it, or :class:`Keep`; the records after the changes
        (None where deleted). An ``NgsiLdError`` raised by ``apply`` aborts them all."""

    @abc.abstractmethod
    async def append_log(self, kind: str, entries: Sequence[Any], keep: int) -> None:
        """Append entries to the bounded log ``kind``, keeping its newest ``keep``."""

    @abc.abstractmethod
    async def read_log(self, kind: str, limit: int, before: int = 0) -> list[tuple[int, Any]]:
        """The newest ``limit`` (sequence, entry) of log ``kind``, newest first; with
        ``before``, only entries numbered below it (paging backwards)."""

    # --- coordination of several processes sharing the store. A store only one process
    # opens at a time (SQLite) keeps these defaults: every lock is granted, and
    # announcements go straight to this process's listener.

    async def try_lock(self, name: str) -> bool:
        """Take the named lock for this process unless another process holds it (held
        until :meth:`unlock` or until this process goes away); True when taken."""
        return True

    def holds_lock(self, name: str) -> bool:
        """Whether a lock this process took is still its own: a store shared by processes
        loses its locks with its connection to the database, and work done under a lock
        checks this before each step."""
        return True

    async def unlock(self, name: str) -> None:
        """Release a lock taken with :meth:`try_lock`."""
        return None

    async def announce(self, topic: str, message: dict[str, Any]) -> None:
        """Tell every process sharing the store (cache invalidation): each one's
        ``announcement_listener`` gets ``(topic, message)``; delivery is best effort, and
        where announcements may have been lost the listeners get
        :data:`ANNOUNCEMENTS_MISSED` (reload every cache)."""
        if self.announcement_listener is not None:
            self.announcement_listener(topic, message)
