"""Running a list of entity changes in memory, the part every backend shares.

A backend loads the stored documents of the touched ids (locking them as it must), calls
:func:`run_changes`, then persists :attr:`ChangeRun.latest`. A later change to the same id
sees the earlier one's result; a refused change (``NgsiLdError`` from ``apply``) leaves
its entity as it was and the others proceed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from urbanstack.ngsild.errors import NgsiLdError
from urbanstack.ngsild.history import HistoryRow, changed_instances
from urbanstack.ngsild.model import Entity
from urbanstack.store.base import (
    ChangeResult,
    Delete,
    EntityChange,
    Keep,
    RecordChange,
    ViewRenderer,
    ViewUpdater,
    Write,
)

#: a store's view renderer and (optional) view updater
Views = tuple[ViewRenderer | None, ViewUpdater | None]

#: the value of :attr:`ChangeRun.latest` for an entity the changes delete
DELETED: Any = object()


@dataclass
class ChangeRun:
    """The outcome of :func:`run_changes`."""

    results: list[ChangeResult] = field(default_factory=list)
    #: id -> the entity after the changes (or DELETED), for the ids a change wrote or deleted
    latest: dict[str, Any] = field(default_factory=dict)
    #: id -> the stored entity as it was, decoded once
    originals: dict[str, Entity] = field(default_factory=dict)


def run_changes(
    changes: Sequence[EntityChange], stored: Mapping[str, tuple[Any, bytes | str]]
) -> ChangeRun:
    """Apply ``changes`` in order to the stored documents (id -> (row key, JSON))."""
    run = ChangeRun()
    latest, originals, results = run.latest, run.originals, run.results
    for change in changes:
        entity_id = change.entity_id
        if entity_id in latest:
            before = latest[entity_id]
            raw: Any = None if before is DELETED else orjson.dumps(before)
        else:
            row = stored.get(entity_id)
            raw = row[1] if row else None
        # two copies: apply may mutate ``current``, ``old`` is reported as it was
        old = None if raw is None else orjson.loads(raw)
        if old is None:
            current = None
        elif change.shallow:  # apply replaces what it changes: the lists stay shared
            current = {**old, "attrs": dict(old["attrs"])}
        else:
            current = orjson.loads(raw)
        if old is not None and entity_id not in latest:
            originals.setdefault(entity_id, old)
        try:
            outcome = change.apply(current)
        except NgsiLdError as err:
            results.append(ChangeResult(entity_id, error=err))
            continue
        if isinstance(outcome, Write):
            latest[entity_id] = outcome.entity
            results.append(ChangeResult(entity_id, outcome.result, old=old, new=outcome.entity))
        elif isinstance(outcome, Delete):
            latest[entity_id] = DELETED
            results.append(ChangeResult(entity_id, outcome.result, old=old, new=None))
        elif isinstance(outcome, Keep):
            results.append(ChangeResult(entity_id, outcome.result, old=old, new=old))
        else:
            raise TypeError(f"apply returned {outcome!r}")
    return run


@dataclass
class HistoryPlan:
    """What the accepted changes do to history: rows to append per entity (in order), the
    entities' types, and the entities whose earlier history goes first."""

    rows: dict[str, list[HistoryRow]] = field(default_factory=dict)
    types: dict[str, list[str]] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)


def plan_history(
    changes: Sequence[EntityChange],
    results: Sequence[ChangeResult],
    keep_on_delete: bool,
    ready_rows: Callable[[ChangeResult], list[HistoryRow] | None] = lambda result: None,
) -> HistoryPlan:
    """The history of the accepted changes: each change's own rows, or ``ready_rows`` (rows
    a store prepared ahead), or the instances it added or changed. A deletion under
    ``keep_on_delete=False`` (or a change with ``drop_history``) forgets the entity's
    earlier history, including rows of earlier changes in this same list."""
    plan = HistoryPlan()
    for change, result in zip(changes, results, strict=True):
        if result.error is not None:
            continue
        entity_id = change.entity_id
        if change.drop_history or (result.new is None and not keep_on_delete):
            if result.new is None and (result.old is not None or change.drop_history):
                plan.rows.pop(entity_id, None)
                plan.dropped.add(entity_id)
                continue  # no deletion rows: the history itself goes
        rows = change.history
        if rows is None:
            rows = ready_rows(result)
        if rows is None:
            rows = changed_instances(result.old, result.new)
        if rows:
            plan.rows.setdefault(entity_id, []).extend(rows)
            current = result.new or result.old
            if current is not None:
                plan.types[entity_id] = current["type"]
            elif change.history_types:
                plan.types[entity_id] = change.history_types
    return plan


def written_view(
    entity: Entity, original: Entity | None, stored_view: bytes | None, views: Views
) -> bytes | None:
    """The view to store beside ``entity``: derived from the stored view of ``original``
    when the updater can, else rendered in full (None without a renderer)."""
    render, update = views
    if update is not None and original is not None and stored_view is not None:
        derived = update(stored_view, original, entity)
        if derived is not None:
            return derived
    return render(entity) if render is not None else None


@dataclass
class RecordRun:
    """The outcome of :func:`run_record_changes`: each change's resulting record, and the
    last state of every key a change wrote (None: deleted) for the backend to persist."""

    results: list[Any]
    written: dict[str, Any | None]


def run_record_changes(changes: Sequence[RecordChange], stored: Mapping[str, Any]) -> RecordRun:
    """Apply record changes in order to the ``stored`` records (key -> record; a missing
    key has none), a later change to a key seeing the earlier one's result: the backend
    reads every key in one query and writes the outcome in one or two, instead of a
    query or two per change."""
    current = dict(stored)
    results: list[Any] = []
    written: dict[str, Any | None] = {}
    for change in changes:
        before = current.get(change.key)
        new = change.apply(before)
        if isinstance(new, Keep):
            results.append(before)
            continue
        if new is None:
            current.pop(change.key, None)
        else:
            current[change.key] = new
        written[change.key] = new
        results.append(new)
    return RecordRun(results, written)
