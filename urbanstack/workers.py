"""``serve --workers N``: N API processes on one port, each with a listening socket of its
own (``SO_REUSEPORT``), so the kernel spreads new connections over them.

uvicorn's own supervisor shares one listening socket between its processes: whichever
process wakes first accepts every connection waiting, so a client opening its keep-alive
pool at once (a gateway, a load generator) could land all of it on one process while the
others idle (seen: 10 of 10 connections on one process). Here the kernel hashes each new
connection to one of the N sockets.

The supervisor starts the processes, restarts one that dies, and on SIGTERM or SIGINT
sends each process one SIGTERM (uvicorn then finishes the requests in flight) and waits.
The processes run in process groups of their own, so a signal to the supervisor's group
(Ctrl-C in a terminal, ``kill -- -PGID``) reaches each of them once, through it; a process
whose supervisor is gone stops by itself.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

LOGGER = logging.getLogger(__name__)
#: how long a stopping process may take (uvicorn's graceful timeout is 30 s)
STOP_TIMEOUT_S = 40.0
RESTART_DELAY_S = 1.0
PARENT_CHECK_S = 1.0


def reuse_port_supported() -> bool:
    """Whether listening sockets can share a port with the kernel balancing between them."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def reuse_port_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to (host, port) with ``SO_REUSEPORT``; listening unless told."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def free_port_check(host: str, port: int) -> int:
    """``port`` (or, for 0, a free one) after checking that no socket holds it, shared or
    not; OSError (address in use) otherwise."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        probe.bind(address)
        return int(probe.getsockname()[1])


def _watch_parent(parent: int) -> None:
    """Stop this process gracefully once its supervisor is gone."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)


def run_worker(host: str, port: int, options: dict[str, Any]) -> None:
    """One API process: its own socket on the shared port, uvicorn serving the worker app
    (built from the environment the supervisor set)."""
    import uvicorn

    os.setpgid(0, 0)  # signals to the supervisor's group reach this process through it
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    sock = reuse_port_socket(host, port)
    config = uvicorn.Config(
        "urbanstack.api.app:create_worker_app",
        factory=True,
        host=host,
        port=port,
        lifespan="on",
        **options,
    )
    uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    """Runs ``count`` :func:`run_worker` processes until SIGTERM or SIGINT."""

    def __init__(self, host: str, port: int, count: int, options: dict[str, Any]) -> None:
        self.host = host
        self.count = count
        self.options = options
        # the port must be free: with SO_REUSEPORT alone, a second deployment started on
        # the same port by the same user would silently share its connections
        self.port: int = free_port_check(host, port)
        # held (not listening) so the port stays ours between restarts
        self._holder = reuse_port_socket(host, self.port, listen=False)
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[BaseProcess] = []
        self._stopping = threading.Event()

    def _start_one(self) -> BaseProcess:
        process = self._context.Process(
            target=run_worker,
            args=(self.host, self.port, self.options),
            name="urbanstack-worker",
        )
        process.start()
        return process

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Start the processes, keep them running, stop them on a signal."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._processes = [self._start_one() for _ in range(self.count)]
            while not self._stopping.wait(0.5):
                for index, process in enumerate(self._processes):
                    if not process.is_alive() and not self._stopping.is_set():
                        LOGGER.warning(
                            "API process %s ended (exit code %s): starting another",
                            process.pid,
                            process.exitcode,
                        )
                        time.sleep(RESTART_DELAY_S)
                        self._processes[index] = self._start_one()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """One SIGTERM to each process, then wait; kill what outlives :data:`STOP_TIMEOUT_S`."""
        self._stopping.set()
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
        self._holder.close()
