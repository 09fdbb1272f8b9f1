"""Every setting in one place: name, type, default and help; each read from URBANSTACK_<NAME>."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class Settings:
    """Platform configuration; build with :meth:`from_env` to honour environment variables."""

    store: str = _setting(
        "sqlite:///urbanstack.db",
        "Store URL: sqlite:///file.db or postgresql://user:password@host:port/database",
    )
    host: str = _setting("127.0.0.1", "Address the HTTP server listens on")
    port: int = _setting(1026, "Port the HTTP server listens on")
    log_level: str = _setting("info", "Logging level: debug, info, warning, error")
    workers: int = _setting(1, "API processes serving the port; above 1 needs the PostgreSQL store")
    max_limit: int = _setting(1000, "Largest page size a query may ask for (limit)")
    default_limit: int = _setting(20, "Page size when a query gives no limit")
    max_body_bytes: int = _setting(8 * 1024 * 1024, "Largest request body accepted, in bytes")
    context_fetch_timeout: float = _setting(5.0, "Seconds to wait for a remote @context")
    context_max_bytes: int = _setting(1024 * 1024, "Largest remote @context accepted, in bytes")
    context_cache_size: int = _setting(256, "Processed @contexts kept in memory")
    sqlite_synchronous: str = _setting("FULL", "SQLite synchronous pragma (FULL or NORMAL)")
    sqlite_read_workers: int = _setting(2, "Threads serving SQLite queries")
    sqlite_history_recent_rows: int = _setting(
        40_000,
        "New history instances appended in arrival order before being moved, sorted, into "
        "the history table (one write of each series' page per move instead of per batch); "
        "0 writes them straight into the history table",
    )
    sqlite_history_recent_seconds: float = _setting(
        5.0, "Longest time, in seconds, a new history instance waits before being moved"
    )
    switch_interval_ms: float = _setting(
        1.0,
        "Longest time, in milliseconds, a thread keeps Python's interpreter lock while another "
        "waits for it (CPython's default is 5): shorter lets the database threads, which give "
        "the lock up on every row, get it back sooner",
    )
    cpu_pinning: str = _setting(
        "auto",
        "auto: with the SQLite store on a machine of 2 or more CPUs, the event loop and the "
        "SQLite writer thread share one CPU (they hand the interpreter lock to each other "
        "thousands of times a second, which costs much more across CPUs); off: no pinning",
    )
    postgres_pool_size: int = _setting(
        10, "Most connections the PostgreSQL store opens (per process)"
    )
    base_url: str = _setting("", "Public base URL used in Location headers for hosted contexts")
    history_on_delete: str = _setting(
        "keep", "What deleting an entity does to its history: keep or drop"
    )
    history_retention_days: int = _setting(
        0, "Days of history kept (instances filed earlier are pruned hourly); 0 keeps all"
    )
    notification_retry_base: float = _setting(
        1.0, "Seconds before the first retry of a failed notification (doubled each time)"
    )
    notification_retry_max: float = _setting(
        300.0, "Longest wait between two attempts of a failing notification, in seconds"
    )
    notification_batch: int = _setting(
        100, "Most pending changes sent together in one notification"
    )
    notification_ca_file: str = _setting(
        "",
        "PEM file of CA certificates trusted for https:// and mqtts:// notification "
        "endpoints (a city's own CA); empty trusts the system's CAs only",
    )
    mqtt: str = _setting(
        "", "MQTT broker URL the IoT agent subscribes to (mqtt://host:1883); empty: none"
    )
    mqtt_client_id: str = _setting(
        "", "MQTT client id of this node (its persistent session); empty: urbanstack-<host>-<port>"
    )
    mqtt_shared_group: str = _setting(
        "", "MQTT shared-subscription group, so several nodes split the device messages"
    )
    iot_offline_after: float = _setting(
        600.0, "Seconds of silence after which a device's status attribute turns offline"
    )
    iot_dead_letter_keep: int = _setting(
        1000, "Refused device messages and values kept in the dead-letter log"
    )
    temporal_instance_limit: int = _setting(
        1000, "Most instances per attribute in one temporal answer (then 206 + Content-Range)"
    )
    basemap_url: str = _setting(
        "", "XYZ tile URL of the dashboard's online basemap ({z}/{x}/{y}); empty: none"
    )
    basemap_attribution: str = _setting(
        "", "Attribution shown under the dashboard's basemap (its licence's credit line)"
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then URBANSTACK_<NAME> variables, then explicit (non-None) overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"URBANSTACK_{f.name.upper()}")
            if raw is not None:
                try:
                    values[f.name] = type(f.default)(raw)
                except ValueError:
                    kind = type(f.default).__name__
                    name = f"URBANSTACK_{f.name.upper()}"
                    raise ValueError(f"{name}={raw!r} is not a valid {kind}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse inconsistent values with a message naming the valid choices."""
        if self.sqlite_synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("sqlite_synchronous must be FULL, NORMAL or EXTRA")
        if not 1 <= self.default_limit <= self.max_limit:
            raise ValueError("default_limit must be between 1 and max_limit")
        if self.history_on_delete not in ("keep", "drop"):
            raise ValueError("history_on_delete must be keep or drop")
        if self.sqlite_history_recent_rows < 0 or self.sqlite_history_recent_seconds < 0:
            raise ValueError("sqlite_history_recent_rows and _seconds must be 0 or more")
        if self.history_retention_days < 0:
            raise ValueError("history_retention_days must be 0 (keep all) or more")
        if self.notification_retry_base <= 0 or self.notification_retry_max <= 0:
            raise ValueError("notification_retry_base and notification_retry_max must be > 0")
        if self.cpu_pinning not in ("auto", "off"):
            raise ValueError("cpu_pinning must be auto or off")
        if not 0 < self.switch_interval_ms <= 100:
            raise ValueError("switch_interval_ms must be above 0 and at most 100")
        if self.notification_batch < 1:
            raise ValueError("notification_batch must be at least 1")
        if self.postgres_pool_size < 1:
            raise ValueError("postgres_pool_size must be at least 1")
        if self.temporal_instance_limit < 1:
            raise ValueError("temporal_instance_limit must be at least 1")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.mqtt and not self.mqtt.startswith(("mqtt://", "mqtts://")):
            raise ValueError("mqtt must be an mqtt:// or mqtts:// URL")
        if self.iot_offline_after <= 0:
            raise ValueError("iot_offline_after must be > 0 seconds")
        if self.iot_dead_letter_keep < 1:
            raise ValueError("iot_dead_letter_keep must be at least 1")
        if self.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
            raise ValueError("log_level must be debug, info, warning, error or critical")


def describe_settings() -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of every setting, for docs and --help."""
    return [
        (f.name, type(f.default).__name__, f.default, f.metadata["help"]) for f in fields(Settings)
    ]
