"""Several API processes on one PostgreSQL store (`urbanstack serve --workers 2`): no lost
update under concurrent writers, each notification delivered once, subscriptions made in
one process known to the other; the supervisor spreads connections, replaces a process that
dies and stops them all."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.postgres_cluster import PostgresCluster
from tests.receivers import HttpReceiver, free_port, wait_for

pytestmark = pytest.mark.server
NGSI = "/ngsi-ld/v1"
GAUGE = "urn:ngsi-ld:WaterLevelObserved:kim-long"


class Workers:
    """`urbanstack serve --workers 2` on a free port."""

    def __init__(
        self, store: str, workers: int = 2, log_level: str = "warning", stderr: Any = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "URBANSTACK_NOTIFICATION_RETRY_BASE": "0.1"}
        command = [
            sys.executable, "-m", "urbanstack.cli", "serve", "--port", str(self.port),
            "--store", store, "--workers", str(workers), "--log-level", log_level,
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, env=env, start_new_session=True, stderr=stderr)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("urbanstack serve --workers did not become healthy")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def workers(postgres_cluster: PostgresCluster) -> Iterator[Workers]:
    store = postgres_cluster.new_database()
    server = Workers(store)
    try:
        yield server
    finally:
        server.stop()
        postgres_cluster.drop_database(store)


def answering_processes(url: str, connections: int = 16) -> set[int]:
    """The pids behind ``connections`` simultaneous connections."""
    pids: set[int] = set()

    def ask() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(5):
                pids.add(client.get(url + "/version").json()["node"]["pid"])

    threads = [threading.Thread(target=ask) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return pids


def processes_answering_within(url: str, timeout: float = 30) -> set[int]:
    """The pids seen until two answer or ``timeout`` passes: the second process may still be
    starting when the first already answers /health."""
    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < 2 and time.monotonic() < deadline:
        pids |= answering_processes(url)
        if len(pids) < 2:
            time.sleep(0.5)
    return pids


def test_both_processes_answer(workers: Workers) -> None:
    assert len(processes_answering_within(workers.url)) == 2


def test_concurrent_writers_to_one_entity_lose_no_update(workers: Workers) -> None:
    entity = {"id": GAUGE, "type": "WaterLevelObserved"}
    assert httpx.post(f"{workers.url}{NGSI}/entities", json=entity).status_code == 201
    errors: list[Any] = []

    def writer(n: int) -> None:
        with httpx.Client(timeout=30) as client:  # its own connection: either process
            for i in range(25):
                attr = {f"reading{n}x{i}": {"type": "Property", "value": i}}
                reply = client.post(f"{workers.url}{NGSI}/entities/{GAUGE}/attrs", json=attr)
                if reply.status_code != 204:
                    errors.append(reply.text)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored = httpx.get(f"{workers.url}{NGSI}/entities/{GAUGE}").json()
    readings = {k for k in stored if k.startswith("reading")}
    assert len(readings) == 8 * 25


def knows_the_subscription(client: httpx.Client, url: str, receiver: Any, pid: int) -> bool:
    """Update a probe entity through ``client``'s process until a notification of it
    arrives: then that process matches the new subscription."""
    probe = f"urn:ngsi-ld:WaterLevelObserved:probe-{pid}"
    deadline = time.monotonic() + 30
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        level = {"type": "Property", "value": attempt}
        entity = {"id": probe, "type": "WaterLevelObserved", "level": level}
        reply = client.post(f"{url}{NGSI}/entityOperations/upsert", json=[entity])
        assert reply.status_code in (201, 204)
        if wait_for(lambda: any(item["id"] == probe for item in receiver.data()), timeout=1):
            return True
    return False


def test_each_notification_is_delivered_once_by_one_process(workers: Workers) -> None:
    receiver = HttpReceiver().start()
    try:
        subscription = {
            "type": "Subscription",
            "entities": [{"type": "WaterLevelObserved"}],
            "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"}},
        }
        reply = httpx.post(f"{workers.url}{NGSI}/subscriptions", json=subscription)
        assert reply.status_code == 201
        clients: list[httpx.Client] = []  # keep-alive connections to both processes
        pids: list[int] = []
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            client = httpx.Client(timeout=30)
            pid = client.get(workers.url + "/version").json()["node"]["pid"]
            if pid in pids:
                client.close()
                time.sleep(0.05)
                continue
            pids.append(pid)
            clients.append(client)
        assert len(pids) == 2
        try:
            for pid, client in zip(pids, clients, strict=True):
                assert knows_the_subscription(client, workers.url, receiver, pid)
            entity = {
                "id": GAUGE,
                "type": "WaterLevelObserved",
                "level": {"type": "Property", "value": -1},
            }
            reply = clients[0].post(f"{workers.url}{NGSI}/entities", json=entity)
            assert reply.status_code == 201
            for value in range(60):
                patch = {"level": {"type": "Property", "value": value}}
                client = clients[value % len(clients)]
                reply = client.patch(f"{workers.url}{NGSI}/entities/{GAUGE}/attrs", json=patch)
                assert reply.status_code == 204
        finally:
            for client in clients:
                client.close()

        def levels() -> list[int]:
            return [item["level"]["value"] for item in receiver.data() if item["id"] == GAUGE]

        assert wait_for(lambda: len(levels()) >= 61, timeout=30)
        time.sleep(1.0)  # a duplicate would arrive now
        assert sorted(levels()) == list(range(-1, 60))
        assert levels() == sorted(levels())  # in order
    finally:
        receiver.stop()


def pids_of_connections_opened_at_once(port: int, count: int) -> list[int]:
    """Open ``count`` connections before sending anything, then ask each its process."""
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(count)]
    try:
        for connection in connections:
            connection.connect()
        pids = []
        for connection in connections:
            connection.request("GET", "/version")
            pids.append(json.loads(connection.getresponse().read())["node"]["pid"])
        return pids
    finally:
        for connection in connections:
            connection.close()


def worker_pids(url: str) -> set[int]:
    """The two processes answering (waits until both do)."""
    pids = processes_answering_within(url)
    assert len(pids) == 2
    return pids


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def processes_serving(port: int) -> set[int]:
    """The running processes started to serve ``port`` (URBANSTACK_PORT in their
    environment): the supervisor's API processes, whatever their parent now."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if f"URBANSTACK_PORT={port}".encode() in environ.read().split(b"\0"):
                    found.add(int(entry))
        except OSError:
            continue
    return {pid for pid in found if alive(pid)}


def test_connections_opened_at_once_are_spread_over_the_processes(workers: Workers) -> None:
    worker_pids(workers.url)  # both started
    # one shared listening socket let the first process to wake accept all of them
    counts = Counter(pids_of_connections_opened_at_once(workers.port, 32))
    assert len(counts) == 2, counts
    assert min(counts.values()) >= 4, counts  # binomial(32, 1/2): fails 3 times in 10^6


def test_a_process_that_dies_is_replaced(workers: Workers) -> None:
    first, second = sorted(worker_pids(workers.url))
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 60
    pids: set[int] = set()
    while time.monotonic() < deadline:
        pids = answering_processes(workers.url)
        if len(pids) == 2 and first not in pids:
            break
        time.sleep(0.5)
    assert second in pids and first not in pids and len(pids) == 2


def test_sigterm_to_the_group_stops_every_process(postgres_cluster: PostgresCluster) -> None:
    store = postgres_cluster.new_database()
    server = Workers(store)
    try:
        pids = worker_pids(server.url)
        os.killpg(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(60) == 0
        assert wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30)
    finally:
        server.stop()
        postgres_cluster.drop_database(store)


def test_processes_stop_when_their_supervisor_is_killed(
    postgres_cluster: PostgresCluster,
) -> None:
    store = postgres_cluster.new_database()
    server = Workers(store)
    pids: set[int] = set()
    try:
        pids = worker_pids(server.url)
        server.proc.kill()  # the supervisor alone: no chance to stop them
        server.proc.wait(10)
        assert wait_for(lambda: not any(alive(pid) for pid in pids), timeout=45)
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.stop()
        postgres_cluster.drop_database(store)


@pytest.mark.parametrize("shared", [False, True])
def test_a_port_in_use_is_refused_even_by_a_shared_socket(
    postgres_cluster: PostgresCluster, shared: bool
) -> None:
    # a second deployment on the same port must not quietly split the first one's traffic
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        command = [
            sys.executable, "-m", "urbanstack.cli", "serve", "--port", str(port),
            "--store", postgres_cluster.empty_store(), "--workers", "2",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    finally:
        taken.close()


def test_processes_stop_when_their_supervisor_dies_while_they_start(
    postgres_cluster: PostgresCluster,
) -> None:
    store = postgres_cluster.new_database()
    port = free_port()
    command = [
        sys.executable, "-m", "urbanstack.cli", "serve", "--port", str(port),
        "--store", store, "--workers", "2", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(command, start_new_session=True)
    try:
        wait_for(lambda: len(processes_serving(port)) >= 3, timeout=30)  # itself + 2
        proc.kill()  # before the processes could know their parent
        proc.wait(10)
        assert wait_for(lambda: not processes_serving(port), timeout=45)
    finally:
        for pid in processes_serving(port):
            os.kill(pid, signal.SIGKILL)
        postgres_cluster.drop_database(store)


def test_a_process_that_cannot_start_stops_them_all_with_its_exit_code() -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "urbanstack.cli", "serve", "--port", str(port),
        "--store", "postgresql://nobody@127.0.0.1:1/none", "--workers", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 3, err[-2000:]
        assert "could not start" in err
        assert wait_for(lambda: not processes_serving(port), timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in processes_serving(port):
            os.kill(pid, signal.SIGKILL)


def test_open_streams_do_not_hold_up_the_stop(workers: Workers) -> None:
    worker_pids(workers.url)
    opened = threading.Event()

    def listen() -> None:
        stream = httpx.stream("GET", f"{workers.url}/api/stream", timeout=60)
        with contextlib.suppress(httpx.HTTPError), stream as reply:
            opened.set()
            for _ in reply.iter_bytes():
                pass

    listeners = [threading.Thread(target=listen, daemon=True) for _ in range(4)]
    for listener in listeners:
        listener.start()
    assert opened.wait(30)
    time.sleep(0.5)  # every stream open
    started = time.monotonic()
    os.killpg(workers.proc.pid, signal.SIGTERM)
    assert workers.proc.wait(25) == 0
    assert time.monotonic() - started < 15  # not the 30 s graceful timeout


def test_each_process_logs_at_the_level_asked(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    store = postgres_cluster.new_database()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = Workers(store, log_level="info", stderr=log)
        try:
            worker_pids(server.url)
        finally:
            server.stop()
            postgres_cluster.drop_database(store)
    text = log_path.read_text()
    assert text.count("store opened") == 2, text[-3000:]
