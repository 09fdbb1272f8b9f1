"""Real notification receivers for tests: an HTTP server and a mosquitto MQTT broker,
each on a free 127.0.0.1 port, removed afterwards."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HttpReceiver:
    """Records every POST (path, headers, JSON body); answers ``status`` (settable)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[tuple[str, dict[str, str], Any]] = []
        self.status = 200
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/notify"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                if receiver.status < 300:
                    receiver.received.append((self.path, dict(self.headers), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def notifications(self) -> list[Any]:
        return [body for _, _, body in self.received]

    def data(self) -> list[Any]:
        """Every notified entity, in the order received."""
        return [item for body in self.notifications() for item in body["data"]]


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``condition`` until it is truthy; its last value (the test then asserts it)."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(0.02)
        value = condition()
    return value


class Mosquitto:
    """A mosquitto broker on a free port (the Debian package), anonymous; with
    ``persistent``, sessions and queued messages survive :meth:`restart` as in production."""

    def __init__(self, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.persistent = persistent
        self._dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        # started as root, mosquitto drops to its own user: it must be able to save here
        self._dir.chmod(0o777)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        config = self._dir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        if self.persistent:
            lines += [
                "persistence true",
                f"persistence_location {self._dir}/",
                "max_queued_messages 0",
                "autosave_interval 1",
            ]
        config.write_text("\n".join(lines) + "\n")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._proc = subprocess.Popen(
            [exe, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def halt(self) -> None:
        """Stop the broker (it saves its persistent state), keeping its directory."""
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def restart(self) -> None:
        """Stop, then start again on the same port with the same state."""
        self.halt()
        self.start()

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self._dir, ignore_errors=True)
