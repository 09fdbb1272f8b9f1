"""Exporting an entity type's history to CSV or Parquet files for analysts.

One row per attribute instance, with typed columns (a number column for numbers and
booleans, a text column for strings and relationship objects, JSON for the rest), read
from the store in batches so a history larger than memory exports in constant space.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson

from urbanstack.ngsild.history import VT_BOOL, VT_JSON, VT_NUMBER, HistoryRow, instance_id
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.temporal import from_micros
from urbanstack.store.base import EntityStore

FORMATS = ("parquet", "csv")
COLUMNS = (
    "entity_id",
    "attribute",
    "attribute_type",
    "dataset_id",
    "observed_at",
    "created_at",
    "modified_at",
    "value_number",
    "value_boolean",
    "value_text",
    "value_json",
    "unit_code",
    "instance_id",
)


def export_record(entity_id: str, row: HistoryRow, terms: TermMap) -> dict[str, Any]:
    """One instance as a flat record of :data:`COLUMNS` (times as ISO 8601 UTC)."""
    extra = orjson.loads(row.extra) if row.extra is not None else {}
    number = row.val if row.vt == VT_NUMBER else None
    return {
        "entity_id": entity_id,
        "attribute": terms.compact(row.attr),
        "attribute_type": row.kind,
        "dataset_id": row.dataset_id,
        "observed_at": from_micros(row.observed) if row.has_observed else None,
        "created_at": from_micros(row.created),
        "modified_at": from_micros(row.modified),
        "value_number": float(number) if number is not None else None,
        "value_boolean": bool(row.val) if row.vt == VT_BOOL else None,
        "value_text": row.val if row.vt not in (VT_NUMBER, VT_BOOL, VT_JSON) else None,
        "value_json": row.val.decode() if row.vt == VT_JSON else None,
        "unit_code": extra.get("unitCode"),
        "instance_id": instance_id(row.iid or 0),
    }


class TableWriter(Protocol):
    """Where exported records go, a batch at a time."""

    def write(self, records: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    """CSV with a header row; empty cells for missing values."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
        self._writer.writeheader()

    def write(self, records: list[dict[str, Any]]) -> None:
        self._writer.writerows(records)

    def close(self) -> None:
        self._file.close()


class ParquetWriter:
    """Parquet with typed columns (timestamps in UTC), one row group per batch."""

    def __init__(self, path: Path) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - depends on the installation
            raise RuntimeError(
                "Parquet export needs pyarrow: pip install 'urbanstack[export]'"
            ) from None
        self._pa = pa
        timestamp = pa.timestamp("ms", tz="UTC")
        self.schema = pa.schema(
            [
                ("entity_id", pa.string()),
                ("attribute", pa.string()),
                ("attribute_type", pa.string()),
                ("dataset_id", pa.string()),
                ("observed_at", timestamp),
                ("created_at", timestamp),
                ("modified_at", timestamp),
                ("value_number", pa.float64()),
                ("value_boolean", pa.bool_()),
                ("value_text", pa.string()),
                ("value_json", pa.string()),
                ("unit_code", pa.string()),
                ("instance_id", pa.string()),
            ]
        )
        self._writer = pq.ParquetWriter(path, self.schema)

    def write(self, records: list[dict[str, Any]]) -> None:
        columns = {name: [r[name] for r in records] for name in COLUMNS}
        for name in ("observed_at", "created_at", "modified_at"):
            columns[name] = [None if v is None else _parse_stamp(v) for v in columns[name]]
        self._writer.write_table(self._pa.table(columns, schema=self.schema))

    def close(self) -> None:
        self._writer.close()


def _parse_stamp(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def open_writer(path: Path, fmt: str) -> TableWriter:
    """A writer for ``fmt`` (parquet or csv) creating ``path``."""
    if fmt == "csv":
        return CsvWriter(path)
    if fmt == "parquet":
        return ParquetWriter(path)
    raise ValueError(f"Unknown export format {fmt!r}: use {' or '.join(FORMATS)}")


async def export_history(
    store: EntityStore,
    tenant: str | None,
    entity_type: str,
    writer: TableWriter,
    terms: TermMap,
    progress: Callable[[int], None] = lambda n: None,
    batch_size: int = 5000,
) -> int:
    """Write every recorded instance of the entities of ``entity_type`` (an expanded
    type IRI); ``progress`` is told how many rows each batch added. Returns the count."""
    written = 0
    async for batch in store.export_history(tenant, entity_type, batch_size):
        writer.write([export_record(entity_id, row, terms) for entity_id, row in batch])
        written += len(batch)
        progress(len(batch))
    return written
