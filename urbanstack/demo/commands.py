"""``urbanstack simulate`` and ``urbanstack demo``: the Huế demo from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import httpx

from urbanstack.demo.series import RainEvent
from urbanstack.demo.simulator import Simulator, parse_span
from urbanstack.settings import Settings

DEMO_STORE = "sqlite:///urbanstack-demo.db"
#: the backfilled history holds a flood four days ago (a two-day wave past alarm III)
PAST_FLOOD_AGO = timedelta(days=4)
PAST_FLOOD_HOURS = 48.0
#: the live demo's rain event: starts two minutes in, the river peaks after ~10 minutes
LIVE_FLOOD_DELAY = timedelta(minutes=2)
LIVE_FLOOD_HOURS = 20.0 / 60.0


def _span(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_span(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def demo_events(now: datetime) -> list[RainEvent]:
    """The demo's floods: one in the backfilled past, one shortly after start."""
    return [
        RainEvent(now - PAST_FLOOD_AGO, PAST_FLOOD_HOURS),
        RainEvent(now + LIVE_FLOOD_DELAY, LIVE_FLOOD_HOURS),
    ]


async def _backfill(sim: Simulator, client: httpx.AsyncClient, since: timedelta) -> int:
    step = timedelta(minutes=15)
    with click.progressbar(
        length=sim.backfill_size(since, step), label="backfilling history", file=sys.stderr
    ) as bar:
        return await sim.backfill(client, since, step, bar.update)


@click.command()
@click.option("--url", default="http://127.0.0.1:1026", help="The platform to feed.")
@click.option("--mqtt", default=None, help="Publish over this MQTT broker [default: HTTP].")
@click.option("--tenant", default=None, help="NGSILD-Tenant to load into.")
@click.option("--seed", type=int, default=1, help="Seed of the series (runs are reproducible).")
@click.option(
    "--speed",
    type=float,
    default=1.0,
    help="How many times faster the series run than the clock (measures keep real times).",
)
@click.option("--interval", type=float, default=10.0, help="Real seconds between rounds.")
@click.option("--backfill", callback=_span, default=None, help="History to create first, e.g. 30d.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def simulate(
    url: str,
    mqtt: str | None,
    tenant: str | None,
    seed: int,
    speed: float,
    interval: float,
    backfill: timedelta | None,
    duration: float | None,
) -> None:
    """Load the Huế demo city into a running platform and keep its devices publishing
    through the IoT agent (MQTT when --mqtt is given, the HTTP southbound otherwise)."""
    now = datetime.now(UTC)
    sim = Simulator(
        url.rstrip("/"),
        seed=seed,
        speed=speed,
        interval=interval,
        mqtt_url=mqtt or "",
        tenant=tenant,
        events=demo_events(now),
    )

    async def run() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            count = await sim.load_dataset(client)
            await sim.provision(client)
            click.echo(f"loaded {count} entities, provisioned {len(sim.devices)} devices", err=True)
            if backfill is not None:
                await _backfill(sim, client, backfill)
            click.echo("publishing (Ctrl-C stops)", err=True)
            await sim.run(client, duration)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except httpx.HTTPError as exc:
        raise click.ClickException(f"the platform at {url} answered: {exc}") from None


@click.command()
@click.option("--host", default="127.0.0.1", help="Address to listen on.")
@click.option("--port", type=int, default=1026, help="Port to listen on.")
@click.option("--store", default=DEMO_STORE, help="Store URL [default: ./urbanstack-demo.db].")
@click.option("--backfill", callback=_span, default="7d", help="History to create [7d].")
@click.option("--seed", type=int, default=1, help="Seed of the series.")
@click.option(
    "--speed",
    type=float,
    default=1.0,
    help="How many times faster the series run than the clock (measures keep real times).",
)
def demo(host: str, port: int, store: str, backfill: timedelta, seed: int, speed: float) -> None:
    """Start the platform with a living demo of Huế and print the dashboard's address.

    Creates a fresh demo database (the default ./urbanstack-demo.db is replaced), loads
    the city, backfills its history, serves the API and runs the simulator; a flood on the
    Perfume River starts two minutes in. Ctrl-C stops everything.
    """
    import uvicorn

    from urbanstack.api.app import create_app
    from urbanstack.runtime import tune_process

    if store == DEMO_STORE:
        for suffix in ("", "-wal", "-shm"):
            Path(f"urbanstack-demo.db{suffix}").unlink(missing_ok=True)
    settings = Settings.from_env(host=host, port=port, store=store, log_level="warning")
    logging.basicConfig(level=logging.WARNING)
    app = create_app(settings)
    tune_process(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    )
    base = f"http://{host}:{port}"
    sim = Simulator(base, seed=seed, speed=speed, events=demo_events(datetime.now(UTC)))

    async def feed() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(timeout=120) as client:
            await sim.load_dataset(client)
            await sim.provision(client)
            await _backfill(sim, client, backfill)
            click.echo(f"\nurbanstack demo of Huế: open {base}/ (NGSI-LD at {base}/ngsi-ld/v1)")
            await sim.run(client)

    async def run() -> None:
        feeder = asyncio.create_task(feed())
        try:
            await server.serve()
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await feeder

    # uvicorn re-raises the signal that stopped it once it is done: a Ctrl-C is the way
    # to stop the demo, not an error
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
