"""The ``urbanstack`` command: serve the platform and manage it."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from urbanstack import __version__
from urbanstack.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="urbanstack")
def main() -> None:
    """urbanstack: an open urban data platform around an NGSI-LD context broker."""


@main.command()
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: 1026].")
@click.option(
    "--store",
    default=None,
    help="Store URL, e.g. sqlite:///urbanstack.db [env URBANSTACK_STORE; default ./urbanstack.db].",
)
@click.option(
    "--mqtt",
    default=None,
    help="MQTT broker for the IoT agent, e.g. mqtt://127.0.0.1:1883 [env URBANSTACK_MQTT].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Logging level [default: info].",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="API processes sharing the port [default: 1]; above 1 needs a PostgreSQL store.",
)
def serve(
    host: str | None,
    port: int | None,
    store: str | None,
    mqtt: str | None,
    log_level: str | None,
    workers: int | None,
) -> None:
    """Run the platform's HTTP API (NGSI-LD at /ngsi-ld/v1).

    SIGTERM or Ctrl-C stops accepting connections, lets in-flight requests finish,
    then closes the store.
    """
    from urbanstack.api.app import create_app
    from urbanstack.runtime import serving_cpu, tune_process
    from urbanstack.serving import configure_logging, run_app

    try:
        settings = Settings.from_env(
            host=host, port=port, store=store, mqtt=mqtt, log_level=log_level, workers=workers
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(settings.log_level)
    if settings.workers > 1:
        _serve_workers(settings)
        return
    app = create_app(settings)
    tune_process(settings)
    cpu = serving_cpu()
    pinned = f", event loop and writer on CPU {cpu}" if cpu is not None else ""
    click.echo(
        f"urbanstack {__version__} on http://{settings.host}:{settings.port}/ngsi-ld/v1 "
        f"(store {settings.store}{pinned})",
        err=True,
    )
    run_app(app, host=settings.host, port=settings.port, log_level=settings.log_level)


def _serve_workers(settings: Settings) -> None:
    """Several API processes on one port (:mod:`urbanstack.workers`, or uvicorn's supervisor
    where ports cannot be shared); each builds the app from the environment, so the settings
    given on the command line are passed through it."""
    import os

    import uvicorn

    from urbanstack.store import store_scheme
    from urbanstack.workers import Supervisor, WorkersFailed, reuse_port_supported

    if store_scheme(settings.store) == "sqlite":
        raise click.ClickException(
            "--workers above 1 needs the PostgreSQL store (--store postgresql://...): "
            "a SQLite file has one writing process"
        )
    supervisor = None
    if reuse_port_supported():  # a socket per process: the kernel spreads connections
        try:
            supervisor = Supervisor(
                settings.host, settings.port, settings.workers, settings.log_level
            )
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
            ) from exc
    port = supervisor.port if supervisor is not None else settings.port  # port 0: chosen
    for name in ("host", "store", "mqtt", "log_level"):
        os.environ[f"URBANSTACK_{name.upper()}"] = str(getattr(settings, name))
    os.environ["URBANSTACK_PORT"] = str(port)
    os.environ["URBANSTACK_WORKERS"] = "1"  # each worker is one process
    click.echo(
        f"urbanstack {__version__}: {settings.workers} processes on "
        f"http://{settings.host}:{port}/ngsi-ld/v1 (store {settings.store})",
        err=True,
    )
    if supervisor is not None:
        try:
            supervisor.run()
        except WorkersFailed as exc:
            click.echo(f"urbanstack: {exc}", err=True)
            sys.exit(exc.exit_code)
        return
    uvicorn.run(
        "urbanstack.api.app:create_worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=30,
    )


@main.group()
def contexts() -> None:
    """Manage the JSON-LD @contexts the broker knows without the network."""


@contexts.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("url")
@click.option("--store", default=None, help="Store URL [env URBANSTACK_STORE].")
def contexts_load(file: Path, url: str, store: str | None) -> None:
    """Preload the @context in FILE so that URL resolves to it and is never fetched."""
    from urbanstack.broker.contexts import ContextService, preload_context
    from urbanstack.store import store_from_settings

    settings = Settings.from_env(store=store)
    try:
        document = json.loads(file.read_text("utf-8"))
    except ValueError as exc:
        raise click.ClickException(f"{file} is not valid JSON: {exc}") from None

    async def run() -> str:
        backend = store_from_settings(settings)
        await backend.open()
        try:
            service = ContextService(backend, _no_fetch)
            record = await preload_context(service, url, document)
            return record.id
        finally:
            await backend.close()

    try:
        context_id = asyncio.run(run())
    except Exception as exc:  # shown to the operator, not a traceback
        raise click.ClickException(str(exc)) from None
    click.echo(f"loaded {file} as {url} (id {context_id})")


@main.command("export")
@click.option("--type", "entity_type", required=True, help="Entity type whose history to export.")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (.parquet or .csv).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv"]),
    default=None,
    help="File format [default: from the file name, else parquet].",
)
@click.option("--tenant", default=None, help="NGSILD-Tenant to export [default: the default one].")
@click.option("--store", default=None, help="Store URL [env URBANSTACK_STORE].")
def export(
    entity_type: str, output: Path, fmt: str | None, tenant: str | None, store: str | None
) -> None:
    """Write the history of every entity of a type (one row per attribute instance)
    to Parquet or CSV, for analysts. Works while the server runs."""
    from urbanstack.export import export_history, open_writer
    from urbanstack.ngsild.jsonld import core_term_map
    from urbanstack.store import store_from_settings

    settings = Settings.from_env(store=store)
    chosen = fmt or ("csv" if output.suffix.lower() == ".csv" else "parquet")
    terms = core_term_map()
    type_iri = terms.expand(entity_type)

    async def run() -> int:
        backend = store_from_settings(settings)
        await backend.open()
        try:
            if not await backend.tenant_exists(tenant):
                raise click.ClickException(f"tenant {tenant!r} does not exist")
            total = await backend.count_history(tenant, type_iri)
            writer = open_writer(output, chosen)
            try:
                with click.progressbar(
                    length=total, label=f"exporting {entity_type}", file=sys.stderr
                ) as bar:
                    return await export_history(
                        backend, tenant, type_iri, writer, terms, bar.update
                    )
            finally:
                writer.close()
        finally:
            await backend.close()

    try:
        written = asyncio.run(run())
    except click.ClickException:
        raise
    except Exception as exc:  # shown to the operator, not a traceback
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {written} instances of {entity_type} to {output} ({chosen})")


@main.command("migrate")
@click.option("--from", "source_url", required=True, help="Store to copy from (sqlite:///...).")
@click.option("--to", "target_url", required=True, help="Store to copy to (postgresql://...).")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("urbanstack-migrate.json"),
    show_default=True,
    help="Progress file: run again with the same file to resume.",
)
def migrate_command(source_url: str, target_url: str, checkpoint: Path) -> None:
    """Copy entities, history, subscriptions, contexts and IoT provisioning from one store
    to another, with a progress bar; resumable; verified by counts at the end. Stop the
    servers writing to the source first."""
    from urbanstack.migrate import Checkpoint, migrate, planned_items
    from urbanstack.store import store_from_url

    async def run() -> list[str]:
        source, target = store_from_url(source_url), store_from_url(target_url)
        await source.open()
        try:
            await target.open()
            try:
                total = await planned_items(source)
                with click.progressbar(length=total, label="migrating", file=sys.stderr) as bar:
                    return await migrate(source, target, Checkpoint.load(checkpoint), bar.update)
            finally:
                await target.close()
        finally:
            await source.close()

    try:
        mismatches = asyncio.run(run())
    except Exception as exc:  # shown to the operator, not a traceback
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    if mismatches:
        raise click.ClickException("counts differ after the copy:\n  " + "\n  ".join(mismatches))
    click.echo(f"migrated {source_url} to {target_url}; counts verified")


def _add_demo_commands() -> None:
    from urbanstack.demo.commands import demo, simulate

    main.add_command(simulate)
    main.add_command(demo)


_add_demo_commands()


async def _no_fetch(url: str) -> object:
    raise click.ClickException(f"not fetching {url}: the CLI works offline")


if __name__ == "__main__":
    main()
