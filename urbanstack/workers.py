"""``serve --workers N``: N API processes on one port, each with a listening socket of its
own (``SO_REUSEPORT``), so the kernel spreads new connections over them.

uvicorn's own supervisor shares one listening socket between its processes: whichever
process wakes first accepts every connection waiting, so a client opening its keep-alive
pool at once (a gateway, a load generator) could land all of it on one process while the
others idle (seen: 10 of 10 connections on one process). Here the kernel hashes each new
connection to one of the N sockets.

The supervisor holds the port (a bound, non-listening socket in the same group, which
never receives a connection), starts the processes, restarts one that dies, and gives up
when one cannot start (uvicorn's start-up failure) or they keep dying. On SIGTERM or SIGINT
it sends each process one SIGTERM (uvicorn then finishes the requests in flight) and waits;
a second signal makes them stop at once. The processes run in process groups of their own,
so a signal to the supervisor's group (Ctrl-C in a terminal, ``kill -- -PGID``) reaches each
of them once, through it; a process whose supervisor is gone stops by itself.
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
from collections import deque
from multiprocessing.process import BaseProcess
from typing import Any

LOGGER = logging.getLogger(__name__)
#: how long a stopping process may take (uvicorn's graceful timeout is 30 s)
STOP_TIMEOUT_S = 40.0
RESTART_DELAY_S = 1.0
PARENT_CHECK_S = 0.5
#: uvicorn's exit code when the app could not start (lifespan startup failed)
STARTUP_FAILURE = 3
#: give up when this many processes died within this many seconds
MAX_DEATHS, DEATH_WINDOW_S = 5, 60.0


class WorkersFailed(Exception):
    """The API processes could not be kept running; ``exit_code`` says how they ended."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def reuse_port_supported() -> bool:
    """Whether listening sockets can share a port with the kernel balancing between them."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    # as uvicorn binds: IPv6 when the host is an IPv6 address, else IPv4 (also "localhost")
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def hold_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening socket holding ``port`` (a free one for 0) for the workers'
    group; OSError when any socket holds it already, shared or not (SO_REUSEPORT alone
    would let a second deployment by the same user quietly split this one's connections)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        sock.bind((host, port))
        # from now on: no other socket may bind the port but those of the workers' group
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        sock.close()
        raise
    return sock


def listening_socket(host: str, port: int) -> socket.socket:
    """A worker's own listening socket on the held port."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _watch_parent(supervisor: int) -> None:
    """Stop this process gracefully once its supervisor is gone (checked against the pid
    the supervisor gave, so a supervisor dead before this process started counts too)."""
    while os.getppid() == supervisor:
        time.sleep(PARENT_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)


def run_worker(host: str, port: int, log_level: str, supervisor: int) -> None:
    """One API process: its own socket on the shared port, the worker app (built from the
    environment the supervisor set), served as ``serve`` serves it."""
    from urbanstack.api.app import create_worker_app
    from urbanstack.serving import configure_logging, run_app

    os.setpgid(0, 0)  # signals to the supervisor's group reach this process through it
    threading.Thread(target=_watch_parent, args=(supervisor,), daemon=True).start()
    configure_logging(log_level)
    sock = listening_socket(host, port)
    run_app(create_worker_app(), host=host, port=port, log_level=log_level, sockets=[sock])


class Supervisor:
    """Runs ``count`` :func:`run_worker` processes until SIGTERM or SIGINT."""

    def __init__(self, host: str, port: int, count: int, log_level: str) -> None:
        self.host = host
        self.count = count
        self.log_level = log_level
        self._holder = hold_port(host, port)
        self.port: int = self._holder.getsockname()[1]
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[BaseProcess] = []
        self._signals = 0
        self._stopping = threading.Event()
        self._deaths: deque[float] = deque(maxlen=MAX_DEATHS)

    def _start_one(self) -> BaseProcess:
        process = self._context.Process(
            target=run_worker,
            args=(self.host, self.port, self.log_level, os.getpid()),
            name="urbanstack-worker",
        )
        process.start()
        return process

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        self._stopping.set()
        if self._signals > 1:  # a second signal: uvicorn then stops at once
            self._send_each(signal.SIGTERM)

    def _send_each(self, sig: int) -> None:
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, sig)

    def run(self) -> None:
        """Start the processes, keep them running, stop them on a signal; WorkersFailed
        when one cannot start or they keep dying."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for _ in range(self.count):
                if self._stopping.is_set():
                    break
                self._processes.append(self._start_one())
            while not self._stopping.wait(0.5):
                for index, process in enumerate(self._processes):
                    if process.is_alive() or self._stopping.is_set():
                        continue
                    self._replace(index, process)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _replace(self, index: int, process: BaseProcess) -> None:
        code = process.exitcode
        if code == STARTUP_FAILURE:
            raise WorkersFailed("an API process could not start (see its log above)", code)
        now = time.monotonic()
        self._deaths.append(now)
        if len(self._deaths) == MAX_DEATHS and now - self._deaths[0] < DEATH_WINDOW_S:
            raise WorkersFailed(
                f"{MAX_DEATHS} API processes ended within {DEATH_WINDOW_S:.0f} s", 1
            )
        LOGGER.warning("API process %s ended (exit code %s): starting another", process.pid, code)
        if self._stopping.wait(RESTART_DELAY_S):
            return
        self._processes[index] = self._start_one()

    def stop(self) -> None:
        """One SIGTERM to each process, then wait; kill what outlives :data:`STOP_TIMEOUT_S`."""
        self._stopping.set()
        self._send_each(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
        self._holder.close()
