"""A throw-away PostgreSQL 15 + PostGIS cluster for the test session (one per xdist worker).

``initdb`` into a temporary directory, ``pg_ctl start`` on a free 127.0.0.1 port (socket in
that directory), fast and unsafe settings (fsync off), removed at the end. PostgreSQL
refuses to run as root, so as root the server runs as the ``postgres`` OS user.

Each test gets an empty store: the worker's database (a copy of a template that already
has PostGIS and every urbanstack migration) emptied row by row, which costs a few
milliseconds where copying a database costs hundreds; when that fails (a connection left
open by a test holds a lock), a fresh copy of the template takes its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

BIN_DIRS = [Path("/usr/lib/postgresql/15/bin")]
TEMPLATE = "urbanstack_template"
SUPERUSER = "postgres"
_INSTALL_HINT = (
    "PostgreSQL 15 with PostGIS is needed for the postgres store tests: "
    "apt-get install postgresql-15 postgresql-15-postgis-3 (scripts/test does it)"
)


#: test-only settings: a crash of the throw-away cluster may lose data, which is fine there
_UNSAFE_FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
#: benchmark settings: a modest production-like memory budget (later -c options win)
_DURABLE = ("shared_buffers=512MB", "effective_cache_size=4GB", "work_mem=16MB")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are missing or the cluster did not start."""


def _bin_dir() -> Path:
    for directory in BIN_DIRS:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    raise PostgresUnavailable(f"initdb/pg_ctl not found in {BIN_DIRS}. {_INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One running cluster; :meth:`new_database` hands out empty urbanstack databases."""

    def __init__(self, *, durable: bool = False) -> None:
        #: durable: fsync and synchronous commits on, as in production (benchmarks); the
        #: tests run without them
        self.durable = durable
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="urbanstack-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        self._numbers = itertools.count(1)
        self._database: str | None = None
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )

    def start(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = " ".join(
            f"-c {setting}"
            for setting in (
                "listen_addresses=127.0.0.1",
                f"port={self.port}",
                f"unix_socket_directories={self.root}",
                "max_connections=200",
                "shared_buffers=64MB",
                "max_locks_per_transaction=256",
                "checkpoint_timeout=1h",
                "max_wal_size=4GB",
                *(_DURABLE if self.durable else _UNSAFE_FAST),
            )
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "start",
        )
        asyncio.run(self._make_template())

    def restart(self) -> None:
        """Restart the server (fast shutdown: sessions are ended, as in a real restart)."""
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        with contextlib.suppress(PostgresUnavailable):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    async def _admin(self, *statements: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url("postgres"))
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    async def _make_template(self) -> None:
        from urbanstack.store import store_from_url

        await self._admin(f"CREATE DATABASE {TEMPLATE}")
        store = store_from_url(self.url(TEMPLATE))
        await store.open()  # PostGIS and every migration
        await store.close()

    def new_database(self) -> str:
        """An empty, migrated database (a copy of the template); returns its URL."""
        name = f"test_{os.getpid()}_{next(self._numbers)}"
        asyncio.run(self._admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY"))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        asyncio.run(self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def empty_store(self) -> str:
        """The URL of this worker's test database, emptied of everything urbanstack wrote."""
        if self._database is not None:
            try:
                asyncio.run(_empty(self._database))
                return self._database
            except Exception:  # left locked or broken by a test: start from a fresh copy
                self.drop_database(self._database)
        self._database = self.new_database()
        return self._database


async def _empty(url: str) -> None:
    """Delete every row of the default tenant's tables and drop the other tenants' schemas."""
    import asyncpg

    conn = await asyncpg.connect(url, server_settings={"lock_timeout": "5s"})
    try:
        async with conn.transaction():
            for row in await conn.fetch("SELECT schema_name FROM urbanstack.tenants"):
                await conn.execute(f'DROP SCHEMA "{row["schema_name"]}" CASCADE')
            tables = await conn.fetch(
                "SELECT c.oid::regclass::text AS name FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'urbanstack' "
                "AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                "AND c.relname <> 'schema_version'"
            )
            sequences = await conn.fetch(
                "SELECT c.oid::regclass::text AS name FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'urbanstack' AND c.relkind = 'S'"
            )
            statements = [f"DELETE FROM {t['name']};" for t in tables]
            statements += [f"SELECT setval('{q['name']}', 1, false);" for q in sequences]
            await conn.execute("\n".join(statements))
    finally:
        await conn.close()


async def drop_coordination_connection(store: Any) -> None:
    """End a PostgreSQL store's connection for locks and announcements from the server
    side (``pg_terminate_backend``), as a database restart or a network cut does."""
    import asyncpg

    conn = store._coordination
    assert conn is not None, "the store has no coordination connection"
    admin = await asyncpg.connect(store.dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", conn.get_server_pid())
    finally:
        await admin.close()
