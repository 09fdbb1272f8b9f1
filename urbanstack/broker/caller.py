"""Who is asking: built by the HTTP layer (or an ingestion agent) and passed to every use case."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Caller:
    """The request context: the tenant, and room for the caller's identity and roles.

    Use cases take a Caller so that authentication and authorisation can be added
    in one place later without touching every handler.
    """

    tenant: str | None = None
    identity: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
