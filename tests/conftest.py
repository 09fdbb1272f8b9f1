"""Shared fixtures: a real store per backend, the real ASGI app on top, a test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.postgres_cluster import PostgresCluster, PostgresUnavailable
from urbanstack.api.app import create_app
from urbanstack.settings import Settings

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """This worker's throw-away PostgreSQL cluster (started on first use)."""
    try:
        cluster = PostgresCluster()
        cluster.start()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL store tests cannot run: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store for each test, on every backend."""
    return empty_store_url(request.param, request, tmp_path)


def empty_store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty store of ``backend`` (one of ``BACKENDS``)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'urbanstack.db'}"
    if backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        return cluster.empty_store()
    raise ValueError(backend)


@pytest.fixture
def settings(store_url: str) -> Settings:
    return Settings(store=store_url, sqlite_synchronous="NORMAL", max_limit=100)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An HTTP client driving the real app in-process (lifespan included)."""
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client
