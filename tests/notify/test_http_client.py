"""The notification HTTP client against real sockets: keep-alive, stale connections, the
answers receivers give (HTTP/1.0, chunked, malformed), limits and timeouts."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from urbanstack.notify.http_client import HttpError, HttpPool

pytestmark = pytest.mark.anyio

OK = b"HTTP/1.1 204 No Content\r\n\r\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Receiver:
    """A TCP server on 127.0.0.1 answering each request with ``answer(request_number)``
    (bytes, or None to close the connection without answering)."""

    def __init__(self, answer: Callable[[int], bytes | None], delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.close_after_answer = False
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/notify?x=1"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                await asyncio.sleep(self.delay)
                answer = self.answer(len(self.requests))
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


Serve = Callable[[Receiver], Awaitable[Receiver]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(receiver: Receiver) -> Receiver:
        receiver.server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        servers.append(receiver.server)
        return receiver

    yield start
    for server in servers:
        server.close()


def pool(**options: float) -> HttpPool:
    return HttpPool(ssl.create_default_context(), **options)  # type: ignore[arg-type]


async def test_posts_reuse_one_keep_alive_connection(serve: Serve) -> None:
    receiver = await serve(Receiver(lambda n: OK))
    client = pool()
    statuses = [await client.post(receiver.url, b'{"n":%d}' % n, {"X-A": "b"}) for n in range(3)]
    assert statuses == [204, 204, 204]
    assert receiver.connections == 1
    first = receiver.requests[0]
    assert first.startswith(b"POST /notify?x=1 HTTP/1.1\r\n")
    assert b"\r\nX-A: b\r\n" in first and first.endswith(b'{"n":0}')
    await client.close()


async def test_a_connection_the_receiver_closed_while_idle_is_replaced(serve: Serve) -> None:
    receiver = await serve(Receiver(lambda n: OK))
    receiver.close_after_answer = True  # but the answer says keep-alive
    client = pool()
    assert await client.post(receiver.url, b"{}", {}) == 204
    await asyncio.sleep(0.05)
    assert await client.post(receiver.url, b"{}", {}) == 204
    assert receiver.connections == 2
    await client.close()


async def test_a_receiver_closing_without_an_answer_is_an_error(serve: Serve) -> None:
    receiver = await serve(Receiver(lambda n: None))
    with pytest.raises(HttpError):
        await pool().post(receiver.url, b"{}", {})


async def test_an_http_1_0_answer_ending_with_the_connection_is_read(serve: Serve) -> None:
    receiver = await serve(Receiver(lambda n: b"HTTP/1.0 200 OK\r\n\r\nthanks"))
    receiver.close_after_answer = True
    client = pool()
    assert await client.post(receiver.url, b"{}", {}) == 200
    assert await client.post(receiver.url, b"{}", {}) == 200
    assert receiver.connections == 2


async def test_a_chunked_answer_is_read_and_the_connection_kept(serve: Serve) -> None:
    chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    receiver = await serve(Receiver(lambda n: chunked))
    client = pool()
    assert [await client.post(receiver.url, b"{}", {}) for _ in range(2)] == [201, 201]
    assert receiver.connections == 1


async def test_error_statuses_are_returned(serve: Serve) -> None:
    receiver = await serve(Receiver(lambda n: b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"))
    assert await pool().post(receiver.url, b"{}", {}) == 503


async def test_a_malformed_answer_is_an_error(serve: Serve) -> None:
    receiver = await serve(Receiver(lambda n: b"SMTP ready\r\n\r\n"))
    with pytest.raises(HttpError, match="Malformed"):
        await pool().post(receiver.url, b"{}", {})


async def test_a_header_that_would_split_the_request_is_refused_unsent(serve: Serve) -> None:
    receiver = await serve(Receiver(lambda n: OK))
    with pytest.raises(HttpError, match="Invalid header"):
        await pool().post(receiver.url, b"{}", {"X-A": "b\r\nX-Evil: 1"})
    assert receiver.requests == []


async def test_a_refused_connection_is_an_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(HttpError):
        await pool().post(f"http://127.0.0.1:{port}/", b"{}", {})


async def test_a_slow_receiver_times_out(serve: Serve) -> None:
    receiver = await serve(Receiver(lambda n: OK, delay=2.0))
    with pytest.raises(TimeoutError):
        await pool(timeout=0.2).post(receiver.url, b"{}", {})


async def test_connections_per_origin_are_limited(serve: Serve) -> None:
    receiver = await serve(Receiver(lambda n: OK, delay=0.05))
    client = pool(per_origin=2)
    statuses = await asyncio.gather(*(client.post(receiver.url, b"{}", {}) for _ in range(8)))
    assert statuses == [204] * 8
    assert receiver.most_open == 2
    await client.close()


async def test_urls_that_are_not_http_are_errors() -> None:
    for uri in ("ftp://127.0.0.1/x", "http:///nohost", "http://127.0.0.1:99999/"):
        with pytest.raises(HttpError):
            await pool().post(uri, b"{}", {})
