"""Sending one notification to an endpoint: HTTP(S) POST or MQTT publish.

A sender raises :class:`DeliveryError` (with a short reason) when the receiver did not
take the notification; the worker then retries later. Senders keep their connections
(an HTTP connection pool, one MQTT client per broker) for the life of the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any, Protocol
from urllib.parse import urlsplit

from urbanstack.notify.http_client import HttpError, HttpPool

LOGGER = logging.getLogger(__name__)


class DeliveryError(Exception):
    """The receiver did not take the notification (connection refused, 5xx, timeout...)."""


class Sender(Protocol):
    """Delivers a rendered notification body to one endpoint URI."""

    async def send(
        self, uri: str, body: bytes, headers: dict[str, str], notifier_info: dict[str, str]
    ) -> None: ...

    async def close(self) -> None: ...


ORIGIN_CONCURRENCY = 16  # connections (hence requests in flight) per receiver origin


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate-verifying TLS context trusting the system's CAs and those in ``ca_file``."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class HttpSender:
    """POSTs notifications; any 2xx answer is a delivery. Keeps up to
    :data:`ORIGIN_CONCURRENCY` keep-alive connections per receiver origin (requests beyond
    that wait for a free one), through the small client of :mod:`urbanstack.notify.http_client`
    (aiohttp's cost ~300 µs of CPU a notification; httpx's pool polled every pooled
    connection's socket on every request)."""

    def __init__(self, timeout: float = 10.0, ca_file: str | None = None) -> None:
        self.timeout = timeout
        self.ca_file = ca_file
        self._pool: HttpPool | None = None

    def _client(self) -> HttpPool:
        if self._pool is None:
            self._pool = HttpPool(tls_context(self.ca_file), ORIGIN_CONCURRENCY, self.timeout)
        return self._pool

    async def send(
        self, uri: str, body: bytes, headers: dict[str, str], notifier_info: dict[str, str]
    ) -> None:
        try:
            status = await self._client().post(uri, body, headers)
        except (HttpError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


class MqttSender:
    """Publishes notifications to ``mqtt://host:port/topic`` (``mqtts://`` with TLS), QoS
    from notifierInfo ``MQTT-QoS`` (0, 1 or 2), protocol from ``MQTT-Version`` (mqtt3.1.1 or
    mqtt5.0); the message is ``{"metadata": headers,
    "body": notification}`` as clause 7.3 of the MQTT binding describes."""

    def __init__(self, timeout: float = 10.0, ca_file: str | None = None) -> None:
        self.timeout = timeout
        self.ca_file = ca_file
        self._clients: dict[tuple[str, str, int, str, str, str], Any] = {}
        self._lock = asyncio.Lock()

    async def _client(self, uri: str, version: str) -> tuple[Any, str]:
        import aiomqtt

        parts = urlsplit(uri)
        topic = parts.path.lstrip("/")
        if not topic:
            raise DeliveryError(f"No topic in {uri}")
        tls = parts.scheme == "mqtts"
        key = (
            parts.scheme,
            parts.hostname or "localhost",
            parts.port or (8883 if tls else 1883),
            parts.username or "",
            parts.password or "",
            version,
        )
        async with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = aiomqtt.Client(
                    key[1],
                    key[2],
                    username=key[3] or None,
                    password=key[4] or None,
                    tls_context=tls_context(self.ca_file) if tls else None,
                    timeout=self.timeout,
                    protocol=(
                        aiomqtt.ProtocolVersion.V5
                        if version == "mqtt5.0"
                        else aiomqtt.ProtocolVersion.V311
                    ),
                )
                try:
                    await client.__aenter__()
                except aiomqtt.MqttError as exc:
                    raise DeliveryError(f"MQTT connect: {exc}") from None
                self._clients[key] = client
        return client, topic

    async def send(
        self, uri: str, body: bytes, headers: dict[str, str], notifier_info: dict[str, str]
    ) -> None:
        import aiomqtt
        import orjson

        qos = int(notifier_info.get("MQTT-QoS", "0"))
        client, topic = await self._client(uri, notifier_info.get("MQTT-Version", "mqtt3.1.1"))
        message = b'{"metadata":' + orjson.dumps(headers) + b',"body":' + body + b"}"
        try:
            await client.publish(topic, message, qos=qos, timeout=self.timeout)
        except aiomqtt.MqttError as exc:
            await self._forget(client)
            raise DeliveryError(f"MQTT publish: {exc}") from None

    async def _forget(self, client: Any) -> None:
        async with self._lock:
            for key, known in list(self._clients.items()):
                if known is client:
                    del self._clients[key]
        with contextlib.suppress(Exception):
            await client.__aexit__(None, None, None)

    async def close(self) -> None:
        for client in list(self._clients.values()):
            await self._forget(client)
