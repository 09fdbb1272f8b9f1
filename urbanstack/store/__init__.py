"""Storage backends behind one interface (:mod:`urbanstack.store.base`), chosen by URL.

Backends are imported lazily, so a SQLite user never imports a PostgreSQL driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from urbanstack.store.base import EntityStore

if TYPE_CHECKING:
    from urbanstack.settings import Settings

#: URL scheme -> module exposing ``load_from_url(url, **options) -> EntityStore``
STORES: dict[str, str] = {
    "sqlite": "urbanstack.store.sqlite",
    "postgresql": "urbanstack.store.postgres",
    "postgres": "urbanstack.store.postgres",
}


def store_from_url(url: str, **options: Any) -> EntityStore:
    """Build (not open) the store named by ``url``; a bare path means SQLite."""
    scheme = store_scheme(url)
    module_name = STORES.get(scheme)
    if module_name is None:
        choices = ", ".join(f"{s}://" for s in STORES)
        raise ValueError(f"Unknown store URL scheme {scheme!r}; use one of: {choices}")
    store = importlib.import_module(module_name).load_from_url(url, **options)
    if not isinstance(store, EntityStore):
        raise TypeError(f"{module_name}.load_from_url did not return an EntityStore")
    return store


def store_scheme(url: str) -> str:
    """The backend a store URL names (a bare path is SQLite)."""
    return url.split("://", 1)[0] if "://" in url else "sqlite"


def store_from_settings(settings: Settings) -> EntityStore:
    """The configured store, with the backend's own settings applied."""
    options: dict[str, Any] = {"keep_history_on_delete": settings.history_on_delete == "keep"}
    if store_scheme(settings.store) == "sqlite":
        options |= {
            "synchronous": settings.sqlite_synchronous.upper(),
            "read_workers": settings.sqlite_read_workers,
            "history_recent_rows": settings.sqlite_history_recent_rows,
            "history_recent_seconds": settings.sqlite_history_recent_seconds,
        }
    elif STORES.get(store_scheme(settings.store)) == "urbanstack.store.postgres":
        options["pool_size"] = settings.postgres_pool_size
    return store_from_url(settings.store, **options)
