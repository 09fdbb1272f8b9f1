"""Real notification receivers for tests: an HTTP server and a mosquitto MQTT broker,
each on a free 127.0.0.1 port, removed afterwards."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
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


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 it signed, made with the openssl
    command: (CA certificate, server certificate, server key), readable by any user."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key = directory / "server.pem", directory / "server.key"
    request = directory / "server.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=urbanstack test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl("req", *ec, "-keyout", str(key), "-out", str(request), "-subj", "/CN=127.0.0.1")
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\n"
    )
    openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions),
    )  # fmt: skip
    directory.chmod(0o755)
    for path in (ca, cert, key):
        path.chmod(0o644)  # mosquitto reads them as its own user
    return ca, cert, key


class HttpReceiver:
    """Records every POST (path, headers, JSON body); answers ``status`` (settable); with
    ``tls`` (certificate, key), over HTTPS."""

    def __init__(self, port: int | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.received: list[tuple[str, dict[str, str], Any]] = []
        self.status = 200
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/notify"

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
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
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
    ``persistent``, sessions and queued messages survive :meth:`restart` as in production;
    with ``tls`` (CA, certificate, key from :func:`make_certificates`), MQTT over TLS."""

    def __init__(
        self, *, persistent: bool = False, tls: tuple[Path, Path, Path] | None = None
    ) -> None:
        self.port = free_port()
        self.persistent = persistent
        self.tls = tls
        self._dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        # started as root, mosquitto drops to its own user: it must be able to save here
        self._dir.chmod(0o777)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        config = self._dir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        if self.tls is not None:  # copied here: pytest's directories are private to root
            names = ("cafile", "certfile", "keyfile")
            for name, source in zip(names, self.tls, strict=True):
                copy = Path(shutil.copy(source, self._dir / f"{name}.pem"))
                copy.chmod(0o644)
                lines.append(f"{name} {copy}")
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
