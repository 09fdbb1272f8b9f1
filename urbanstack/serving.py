"""Running the ASGI app under uvicorn, the same way in ``serve`` and in each process of
``serve --workers N``: logging, graceful shutdown that also ends the live streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from starlette.applications import Starlette

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """The process's log lines, at ``level`` (debug, info, warning, ...)."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def run_app(
    app: Starlette,
    *,
    host: str,
    port: int,
    log_level: str,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or Ctrl-C: stop accepting, finish the requests in flight
    (up to 30 s), end the live streams at once, then run the app's shutdown."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level == "debug",
        timeout_graceful_shutdown=30,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    stop_server = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        # live streams never end by themselves: close them, or the graceful shutdown
        # would wait for them until its timeout
        stop_server(sig, frame)
        with contextlib.suppress(RuntimeError):  # no loop running: nothing to close
            asyncio.get_running_loop().call_soon_threadsafe(app.state.broker.stream.close_all)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    server.run(sockets=sockets)
