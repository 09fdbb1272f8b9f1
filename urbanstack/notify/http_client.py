"""A small HTTP/1.1 client for notifications: POST, keep-alive connections per origin.

Notifications are many small POSTs to a few receivers. aiohttp's client spent ~300 µs
of CPU on each (request and response objects, header multidicts, cookie and tracing
machinery), a quarter of the server's CPU under a notification load; this one writes
the request bytes itself and lets ``httptools`` (uvicorn's parser, llhttp) read the
answer, so a notification costs a few tens of µs. It does what delivery needs and no
more: no redirects, no cookies, no proxies, no request streaming.

A keep-alive connection the receiver closed while it was idle is noticed when a request
on it gets no answer at all; that request goes once more on a fresh connection (the
receiver cannot have processed it: it never answered).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import httptools

#: (scheme, host, port) of a receiver
Origin = tuple[str, str, int]


class HttpError(Exception):
    """The request got no HTTP answer (connection refused or lost, bad answer, bad URL)."""


class _Unanswered(HttpError):
    """The connection closed before any byte of an answer arrived."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.keep_alive = False
        self._status = 0
        self._answered = False
        self._waiter: asyncio.Future[int] | None = None

    async def request(self, data: bytes) -> int:
        """Send one request; the answer's status code."""
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._status, self._answered = 0, False
        self.transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._settle(error=HttpError(f"Malformed HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._status:  # an answer whose body ends with the connection (HTTP/1.0)
            self._settle(status=self._status)
        elif self._answered:
            self._settle(error=HttpError("Connection closed in the middle of the answer"))
        else:
            self._settle(error=_Unanswered("Connection closed without an answer"))

    # httptools callbacks

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self._settle(status=self._status)

    def _settle(self, status: int = 0, error: Exception | None = None) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(status)


def _request_bytes(host: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n") or ":" in name:
            raise HttpError(f"Invalid header {name!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpPool:
    """Keep-alive connections per origin, at most ``per_origin`` at once (requests beyond
    that wait for a free one); every request bounded by ``timeout`` seconds."""

    def __init__(self, tls: ssl.SSLContext, per_origin: int = 16, timeout: float = 10.0) -> None:
        self.tls = tls
        self.per_origin = per_origin
        self.timeout = timeout
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots: dict[Origin, asyncio.Semaphore] = {}

    async def post(self, uri: str, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body`` to ``uri``; the answer's status code. Raises :class:`HttpError`
        or TimeoutError."""
        try:
            parts = urlsplit(uri)
            scheme, host, port = parts.scheme, parts.hostname, parts.port
        except ValueError as exc:
            raise HttpError(f"Invalid URL {uri!r}: {exc}") from None
        if scheme not in ("http", "https") or not host:
            raise HttpError(f"Not an HTTP URL: {uri!r}")
        origin = (scheme, host, port or (443 if scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        data = _request_bytes(parts.netloc.rpartition("@")[2], target, headers, body)
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = asyncio.Semaphore(self.per_origin)
        async with slots, asyncio.timeout(self.timeout):
            conn = self._take(origin)
            if conn is not None:
                try:
                    return await self._exchange(origin, conn, data)
                except _Unanswered:
                    pass  # closed by the receiver while idle: try a fresh connection
            return await self._exchange(origin, await self._open(origin), data)

    async def _exchange(self, origin: Origin, conn: _Connection, data: bytes) -> int:
        try:
            status = await conn.request(data)
        except BaseException:  # timed out, cancelled or failed: its state is unknown
            conn.close()
            raise
        if conn.keep_alive and not conn.closed:
            self._idle.setdefault(origin, []).append(conn)
        else:
            conn.close()
        return status

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _open(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        tls = self.tls if scheme == "https" else None
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                _Connection, host, port, ssl=tls, server_hostname=host if tls else None
            )
        except OSError as exc:  # refused, unreachable, TLS verification failed
            raise HttpError(f"{type(exc).__name__}: {exc}") from None
        return conn

    async def close(self) -> None:
        """Close every idle connection."""
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
