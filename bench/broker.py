"""Broker benchmark: drive a real ``urbanstack serve`` with wrk and print one table.

    python bench/broker.py [--duration 10] [--entities 100000] [--quick] [--json out.json]

Starts ``urbanstack serve`` on a free 127.0.0.1 port with a fresh temporary SQLite
store, loads the entities through the API (batch upserts) before any clock starts,
then runs each workload with ``wrk -t1 -c10`` (closed loop, 10 keep-alive
connections) for a fixed duration.  References measured in the same run: a bare
Starlette handler served by uvicorn with the same options, and raw SQLite inserts
of the same documents.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import http.client
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LUA_DIR = BENCH_DIR / "lua"
HOST = "127.0.0.1"
API = "/ngsi-ld/v1"

TYPES = ["AirQualityObserved", "ParkingSpot", "Streetlight", "WasteContainer", "WeatherObserved"]
OWNERS = 100  # refOwner objects urn:ngsi-ld:Owner:1..100
TEMP_MAX = 100.0  # temperature (instance a) is uniform in [0, TEMP_MAX - TEMP_OFFSET]
TEMP_OFFSET = 0.3  # instance b = instance a + 0.3
RANGE_WIDTH = 1.2  # q=temperature>=a;temperature<=a+1.2 -> ~1.5 % of a type
BATCH = 1000  # entities per batch upsert
HOT_IDS = 1000  # updates and retrievals pick among this many entities
CONNECTIONS = 10
WRK_TIMEOUT_S = 10
LOAD_CLIENTS = 2
QUIET_WAIT_S = 60.0  # longest wait for a quiet machine before a run (--quiet-wait)
FEW_REQUESTS = 20  # fewer completed requests than this make wrk's figures meaningless
NOISY_PCT = 25.0  # other processes' CPU (% of a core) that makes a run noisy

PUBLISHED = [
    "Orion-LD (2 CPUs): ~3,000 attribute updates/s, ~4,700 retrievals by id/s",
    "Stellio (8 vCPU): 131-241 creates/s; 30-36 type+q queries/s, p95 up to 1.4 s at 100k entities",
]

_CHILDREN: list[subprocess.Popen[bytes]] = []


# ------------------------------------------------------------------ the entity


def make_entity(rng: random.Random, etype: str, ident: str, n: int) -> dict[str, Any]:
    """The ~1.2 kB test entity: 3 string Properties, 2 two-instance numeric Properties,
    a Property with a sub-Property, a Relationship and a GeoProperty Point in Huế."""
    temp = round(rng.uniform(0.0, TEMP_MAX - TEMP_OFFSET), 2)
    hum = round(rng.uniform(40.0, 95.0), 1)
    observed = "2025-06-01T08:00:00Z"
    return {
        "id": f"urn:ngsi-ld:{etype}:{ident}",
        "type": etype,
        "name": {"type": "Property", "value": f"{etype} {n}"},
        "description": {
            "type": "Property",
            "value": f"{etype} {n} on Le Loi street, Phu Hoi ward, Hue city, "
            "operated by the municipal urban services department",
        },
        "category": {"type": "Property", "value": rng.choice(["public", "private", "municipal"])},
        "temperature": [
            {
                "type": "Property",
                "value": temp,
                "unitCode": "CEL",
                "observedAt": observed,
                "datasetId": "urn:ngsi-ld:Dataset:a",
            },
            {
                "type": "Property",
                "value": round(temp + TEMP_OFFSET, 2),
                "unitCode": "CEL",
                "observedAt": observed,
                "datasetId": "urn:ngsi-ld:Dataset:b",
            },
        ],
        "humidity": [
            {
                "type": "Property",
                "value": hum,
                "unitCode": "P1",
                "observedAt": observed,
                "datasetId": "urn:ngsi-ld:Dataset:a",
            },
            {
                "type": "Property",
                "value": round(hum + 0.4, 1),
                "unitCode": "P1",
                "observedAt": observed,
                "datasetId": "urn:ngsi-ld:Dataset:b",
            },
        ],
        "batteryLevel": {
            "type": "Property",
            "value": round(rng.random(), 3),
            "reliability": {"type": "Property", "value": round(rng.uniform(0.8, 1.0), 2)},
        },
        "refOwner": {
            "type": "Relationship",
            "object": f"urn:ngsi-ld:Owner:{rng.randint(1, OWNERS)}",
        },
        "location": {
            "type": "GeoProperty",
            "value": {
                "type": "Point",
                "coordinates": [
                    round(rng.uniform(107.5, 107.7), 6),
                    round(rng.uniform(16.4, 16.5), 6),
                ],
            },
        },
    }


@dataclass
class Dataset:
    """The entities loaded before the clock, and what queries over them should find."""

    bodies: list[bytes]
    docs: list[tuple[str, bytes]]
    types: list[str]
    temps: list[tuple[float, float]]
    owners: list[str]
    hot_ids: list[str]


def make_dataset(count: int, seed: int = 20250601) -> Dataset:
    """``count`` entities, ``count / 5`` of each type, serialized into batch bodies."""
    rng = random.Random(seed)
    docs: list[tuple[str, bytes]] = []
    types: list[str] = []
    temps: list[tuple[float, float]] = []
    owners: list[str] = []
    bodies: list[bytes] = []
    batch: list[bytes] = []
    for i in range(count):
        etype = TYPES[i % len(TYPES)]
        n = i // len(TYPES) + 1
        entity = make_entity(rng, etype, str(n), n)
        doc = json.dumps(entity, separators=(",", ":")).encode()
        docs.append((entity["id"], doc))
        types.append(etype)
        temps.append((entity["temperature"][0]["value"], entity["temperature"][1]["value"]))
        owners.append(entity["refOwner"]["object"])
        batch.append(doc)
        if len(batch) == BATCH:
            bodies.append(b"[" + b",".join(batch) + b"]")
            batch = []
    if batch:
        bodies.append(b"[" + b",".join(batch) + b"]")
    hot = rng.sample(range(count), min(HOT_IDS, count))
    return Dataset(bodies, docs, types, temps, owners, [docs[i][0] for i in hot])


def write_wrk_data(data_dir: Path, dataset: Dataset) -> None:
    """The files the Lua scripts read: templates, hot ids and types."""
    rng = random.Random(7)
    data_dir.mkdir(parents=True, exist_ok=True)
    single = make_entity(rng, "Streetlight", "@@ID@@", 0)
    (data_dir / "create.json").write_text(json.dumps(single, separators=(",", ":")))
    batch = [make_entity(rng, TYPES[k % len(TYPES)], f"@@P@@-{k}", k) for k in range(BATCH)]
    (data_dir / "upsert.json").write_text(json.dumps(batch, separators=(",", ":")))
    (data_dir / "ids.txt").write_text("\n".join(dataset.hot_ids) + "\n")
    (data_dir / "types.txt").write_text("\n".join(TYPES) + "\n")


# ------------------------------------------------------------------ processes


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _kill_children() -> None:
    for proc in _CHILDREN:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                proc.kill()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(5)


atexit.register(_kill_children)


class Server:
    """A server subprocess on 127.0.0.1: started, probed, measured and stopped by pid."""

    def __init__(self, name: str, cmd: list[str], port: int, log: Path, env: dict[str, str]):
        self.name = name
        self.port = port
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,  # a Ctrl-C on the terminal reaches only the runner
        )
        _CHILDREN.append(self.proc)
        self.exit_code: int | None = None
        self.stop_seconds: float | None = None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll GET /health until it answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            with suppress(OSError, http.client.HTTPException):
                status, _, _ = request(self.port, "GET", "/health", timeout=2)
                if status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def status_kb(self, key: str) -> int | None:
        """A /proc/<pid>/status field in kB (VmRSS, VmHWM)."""
        with suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return None

    def stop(self, timeout: float = 45.0) -> None:
        """SIGTERM, wait for a graceful exit, SIGKILL if it does not come."""
        if self.proc.poll() is None:
            started = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.stop_seconds = time.monotonic() - started
        self.exit_code = self.proc.returncode
        self._log_file.close()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's output."""
        text = self.log.read_text("utf-8", "replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_has(self, text: str) -> bool:
        """Whether the server's output contains ``text``."""
        return self.log.exists() and text in self.log.read_text("utf-8", "replace")

    def log_problems(self) -> list[str]:
        """Log lines that report warnings, errors or tracebacks."""
        text = self.log.read_text("utf-8", "replace") if self.log.exists() else ""
        pattern = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|Exception")
        return [line for line in text.splitlines() if pattern.search(line)]


class RssSampler(threading.Thread):
    """Samples the server's VmRSS every 0.2 s; keeps the peak per named phase."""

    def __init__(self, server: Server) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.server = server
        self.phase = "idle"
        self.peaks: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.2):
            self.sample()

    def sample(self) -> None:
        """Take one reading into the current phase."""
        kb = self.server.status_kb("VmRSS")
        if kb is not None:
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), kb)

    def enter(self, phase: str) -> None:
        """Start a new phase (closing the previous one with a reading)."""
        self.sample()
        self.phase = phase
        self.sample()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop_event.set()
        self.join(2)


def process_cpu_table() -> dict[int, tuple[str, int, float]]:
    """Every process's (command name, parent pid, user + system CPU seconds), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        table[int(entry.name)] = (comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


class CpuMeter:
    """CPU used by the server under test, by wrk, by this runner and by everything else."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float, float, float]:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
        busy = (user + nice + system + irq + softirq + steal) / self.TICK
        server = 0.0
        with suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{self.server_pid}/stat").read_text()
            after = stat.rsplit(")", 1)[1].split()
            server = (int(after[11]) + int(after[12])) / self.TICK
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = resource.getrusage(resource.RUSAGE_SELF)
        return (
            time.monotonic(),
            busy,
            server,
            children.ru_utime + children.ru_stime,
            own.ru_utime + own.ru_stime,
        )

    def restart(self) -> None:
        """Start a new measuring window."""
        self._start = self._snapshot()

    def read(self) -> dict[str, float]:
        """Percent of one core since the window started: server, wrk, other (not ours)."""
        end = self._snapshot()
        wall, busy, server, children, own = (b - a for a, b in zip(self._start, end, strict=True))
        if wall <= 0:
            return {"server": 0.0, "wrk": 0.0, "other": 0.0}
        other = max(busy - server - children - own, 0.0)
        return {
            "server": 100 * server / wall,
            "wrk": 100 * children / wall,
            "other": 100 * other / wall,
        }


def wait_quiet(server_pid: int, max_wait: float, limit_pct: float = 20.0) -> float:
    """Wait (bounded) until other processes use less than ``limit_pct`` of a core; return it."""
    deadline = time.monotonic() + max_wait
    while True:
        meter = CpuMeter(server_pid)
        time.sleep(1.0)
        other = meter.read()["other"]
        if other < limit_pct or time.monotonic() >= deadline:
            return other


# ------------------------------------------------------------------ HTTP


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    conn: http.client.HTTPConnection | None = None,
    timeout: float = 60.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request; (status, lower-cased headers, body)."""
    own = conn is None
    connection = conn or http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        resp = connection.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        if own:
            connection.close()


@dataclass
class LoadResult:
    """The pre-clock load: entities, seconds and any failed batch."""

    entities: int
    seconds: float
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Entities per second."""
        return self.entities / self.seconds if self.seconds else 0.0


def load(port: int, bodies: list[bytes], entities: int) -> LoadResult:
    """POST every batch body to entityOperations/upsert over LOAD_CLIENTS connections."""
    local = threading.local()
    failures: list[str] = []

    def send(index: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(HOST, port, timeout=300)
        status, _, data = request(
            port, "POST", f"{API}/entityOperations/upsert", bodies[index], conn=conn
        )
        if status not in (201, 204):
            failures.append(f"batch {index}: {status} {data[:300]!r}")

    started = time.perf_counter()
    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        list(pool.map(send, range(len(bodies))))
    return LoadResult(entities, time.perf_counter() - started, failures)


# ------------------------------------------------------------------ workloads


@dataclass
class Workload:
    """One wrk run: script, statuses that count as success, entities per request, target."""

    key: str
    title: str
    script: str
    expect: tuple[int, ...]
    per_request: int = 1
    target: str = "-"
    check: Callable[[WrkResult, dict[str, float]], bool] | None = None
    precheck: tuple[str, str, bytes | None] | None = None  # method, path, body


@dataclass
class WrkResult:
    """What wrk measured, and whatever went wrong."""

    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    bad: int = 0
    bad_sample: str | None = None
    problem: str | None = None  # set when the figures must not be trusted

    @property
    def ok(self) -> bool:
        """True when every response had an expected status and no socket error occurred."""
        return self.problem is None


def run_wrk(script: str, port: int, duration: int, env: dict[str, str]) -> WrkResult:
    """Run wrk -t1 -c10 closed loop and parse the BENCH_RESULT line of done()."""
    cmd = [
        "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{duration}s",
        f"--timeout={WRK_TIMEOUT_S}s",
        "-s",
        str(LUA_DIR / script),
        f"http://{HOST}:{port}",
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, env={**os.environ, **env}, timeout=duration + 90
        )
    except subprocess.TimeoutExpired:
        return WrkResult(problem=f"wrk did not finish within {duration + 90} s")
    out = done.stdout.decode("utf-8", "replace")
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if done.returncode != 0 or line is None:
        err = done.stderr.decode("utf-8", "replace").strip()
        return WrkResult(problem=f"wrk failed ({done.returncode}): {err or out[-500:]}")
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    lat = raw["latency_us"]
    seconds = raw["duration_us"] / 1e6
    statuses = {k: int(v) for k, v in raw.get("statuses", {}).items()}
    expected = {int(c) for c in env["BENCH_EXPECT"].split(",")}
    bad = sum(n for code, n in statuses.items() if int(code) not in expected)
    socket_errors = {k: int(v) for k, v in raw["errors"].items() if k != "status" and v}
    result = WrkResult(
        requests=int(raw["requests"]),
        seconds=seconds,
        rps=raw["requests"] / seconds if seconds else 0.0,
        p50_ms=lat["p50"] / 1000,
        p95_ms=lat["p95"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        statuses=statuses,
        socket_errors=socket_errors,
        bad=bad,
        bad_sample=raw.get("bad_sample"),
    )
    problems = []
    if bad:
        problems.append(f"{bad} of {result.requests} responses had an unexpected status")
    if socket_errors:
        problems.append(f"socket errors {socket_errors}")
    if result.requests == 0:
        problems.append(
            f"no request completed within the {duration} s run (wrk timeout {WRK_TIMEOUT_S} s)"
        )
    if problems:
        result.problem = "; ".join(problems)
    return result


def workloads(hot_id: str, dataset_types: list[str]) -> list[Workload]:
    """The seven broker workloads in the issue's order, each with its precheck request."""
    one = quote(hot_id, safe=":")
    ctype = dataset_types[0]
    range_q = urlencode({"type": ctype, "q": "temperature>=40.00;temperature<=41.20", "limit": 100})
    rel_q = urlencode({"type": ctype, "q": 'refOwner=="urn:ngsi-ld:Owner:17"', "limit": 100})
    three = (
        b'{"category":{"type":"Property","value":"public"},'
        b'"batteryLevel":{"type":"Property","value":0.5},'
        b'"temperature":{"type":"Property","value":21.5,"datasetId":"urn:ngsi-ld:Dataset:a"}}'
    )
    return [
        Workload(
            "create",
            "create single entity",
            "create.lua",
            (201,),
            target=">= 2,500 req/s",
            check=lambda r, ref: r.rps >= 2500,
            precheck=("POST", f"{API}/entities", None),
        ),
        Workload(
            "upsert",
            "batch upsert, 1,000 entities/request",
            "upsert.lua",
            (201, 204),
            per_request=BATCH,
            target=">= 25,000 entities/s",
            check=lambda r, ref: r.rps * BATCH >= 25000,
            precheck=("POST", f"{API}/entityOperations/upsert", None),
        ),
        Workload(
            "update_attr",
            "partial attribute update (PATCH .../attrs/{attr})",
            "update_attr.lua",
            (204,),
            target=">= 3,000 req/s",
            check=lambda r, ref: r.rps >= 3000,
            precheck=("PATCH", f"{API}/entities/{one}/attrs/batteryLevel", b'{"value":0.5}'),
        ),
        Workload(
            "update_attrs",
            "update 3 attributes (PATCH .../attrs)",
            "update_attrs.lua",
            (204,),
            precheck=("PATCH", f"{API}/entities/{one}/attrs", three),
        ),
        Workload(
            "retrieve",
            "retrieve by id",
            "retrieve.lua",
            (200,),
            target=">= 50% of bare handler",
            check=lambda r, ref: ref.get("bare", 0) > 0 and r.rps >= 0.5 * ref["bare"],
            precheck=("GET", f"{API}/entities/{one}", None),
        ),
        Workload(
            "query_range",
            "query type + numeric q range, limit=100",
            "query_range.lua",
            (200,),
            target=">= 500 req/s, p95 < 50 ms",
            check=lambda r, ref: r.rps >= 500 and r.p95_ms < 50,
            precheck=("GET", f"{API}/entities?{range_q}", None),
        ),
        Workload(
            "query_rel",
            "query type + relationship object, limit=100",
            "query_rel.lua",
            (200,),
            target=">= 500 req/s, p95 < 50 ms",
            check=lambda r, ref: r.rps >= 500 and r.p95_ms < 50,
            precheck=("GET", f"{API}/entities?{rel_q}", None),
        ),
    ]


# order of the runs: reads first (over exactly the loaded entities), then updates,
# then the workloads that add entities
RUN_ORDER = [
    "retrieve",
    "query_range",
    "query_rel",
    "update_attr",
    "update_attrs",
    "create",
    "upsert",
]


def precheck_body(work: Workload, data_dir: Path) -> bytes | None:
    """The body of the workload's precheck: the Lua template with a fixed id."""
    if work.key == "create":
        return (data_dir / "create.json").read_bytes().replace(b"@@ID@@", b"precheck-1")
    if work.key == "upsert":
        return (data_dir / "upsert.json").read_bytes().replace(b"@@P@@", b"precheck")
    assert work.precheck is not None
    return work.precheck[2]


# ------------------------------------------------------------------ query selectivity


@dataclass
class Selectivity:
    """How many entities the benchmark's queries match, checked against the server's count."""

    samples: int = 0
    mean_expected: float = 0.0
    per_type: int = 0
    mismatches: list[str] = field(default_factory=list)


def check_selectivity(port: int, dataset: Dataset, kind: str, samples: int = 20) -> Selectivity:
    """Ask count=true for sampled queries of the workload's shape; compare with the data."""
    rng = random.Random(99)
    per_type = len(dataset.types) // len(TYPES)
    total = 0
    mismatches: list[str] = []
    for _ in range(samples):
        etype = rng.choice(TYPES)
        if kind == "range":
            a = round(rng.random() * (TEMP_MAX - RANGE_WIDTH), 2)
            b = round(a + RANGE_WIDTH, 2)
            q = f"temperature>={a:.2f};temperature<={b:.2f}"
            expected = sum(
                1
                for t, (ta, tb) in zip(dataset.types, dataset.temps, strict=True)
                if t == etype and max(ta, tb) >= a and min(ta, tb) <= b
            )
        else:
            owner = f"urn:ngsi-ld:Owner:{rng.randint(1, OWNERS)}"
            q = f'refOwner=="{owner}"'
            expected = sum(
                1
                for t, o in zip(dataset.types, dataset.owners, strict=True)
                if t == etype and o == owner
            )
        path = f"{API}/entities?" + urlencode({"type": etype, "q": q, "limit": 1, "count": "true"})
        status, headers, body = request(port, "GET", path)
        got = headers.get("ngsild-results-count")
        if status != 200 or got is None or int(got) != expected:
            mismatches.append(
                f"GET {path} -> {status}, NGSILD-Results-Count {got}, expected {expected}"
                + (f": {body[:200]!r}" if status != 200 else "")
            )
        total += expected
    return Selectivity(samples, total / samples, per_type, mismatches)


# ------------------------------------------------------------------ raw SQLite


def raw_sqlite_rate(path: Path, docs: list[tuple[str, bytes]], synchronous: str) -> float:
    """Rows/s inserting the same documents into (id TEXT PRIMARY KEY, doc BLOB), one txn, WAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE entities (id TEXT PRIMARY KEY, doc BLOB)")
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO entities (id, doc) VALUES (?, ?)", docs)
        conn.execute("COMMIT")
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return len(docs) / seconds


#: the tables a batch upsert of new entities writes, and the column naming a row's entity
#: (the R*Tree rows follow their ``geo`` rows; history rows are written to
#: recent_instances, the table new instances wait in)
BROKER_ROW_TABLES = (
    ("entities", "rid"),
    ("entity_types", "rid"),
    ("attr_presence", "rid"),
    ("attr_values", "rid"),
    ("geo", "rid"),
    ("temporal_entities", "eid"),
    ("recent_instances", "eid"),
)


@dataclass
class RowsCeiling:
    """Raw SQLite inserting the rows the broker itself stored for the same entities."""

    entities_per_s: float
    rows_per_entity: float
    timed_entities: int
    prefilled_entities: int


def broker_rows_rate(store: Path, path: Path, synchronous: str, timed: int = 20_000) -> RowsCeiling:
    """Entities/s inserting, with plain ``executemany`` per table and one transaction per
    :data:`BATCH` entities, exactly the rows the broker stored for its last ``timed``
    loaded entities (document, types, attribute presence and values, geometry, history),
    into a copy of its schema already holding the others: what SQLite alone allows a
    batch upsert, with no parsing, no validation and no Python per row (nor the later move
    of the history rows into the clustered table: a ceiling)."""
    source = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        for (sql,) in source.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE 'geo_rtree_%' ORDER BY type = 'table' DESC, rowid"
        ):
            conn.execute(sql)
        history = "SELECT * FROM recent_instances UNION ALL SELECT {} FROM attr_instances"
        columns = [r[1] for r in source.execute("PRAGMA table_info(recent_instances)")]
        # history rows name their entity by eid: each is filed under the entity's rid
        rid_of_eid = dict(
            source.execute(
                "SELECT t.eid, e.rid FROM temporal_entities t JOIN entities e ON e.id = t.id"
            ).fetchall()
        )
        rows_of: dict[str, list[tuple[Any, ...]]] = {}
        keys_of: dict[str, list[int]] = {}
        for table, key in BROKER_ROW_TABLES:
            sql = f"SELECT * FROM {table}"
            if table == "recent_instances":
                sql = history.format(", ".join(columns))
            position = [r[1] for r in source.execute(f"PRAGMA table_info({table})")].index(key)
            keyed = []
            for row in source.execute(sql):
                rid = row[position] if key == "rid" else rid_of_eid.get(row[position])
                if rid is not None:  # (an entity deleted since: not part of the load)
                    keyed.append((rid, row))
            keyed.sort(key=lambda item: item[0])
            rows_of[table] = [row for _, row in keyed]
            keys_of[table] = [rid for rid, _ in keyed]
        gids = {
            r[0]: r for r in source.execute("SELECT gid, minx, maxx, miny, maxy FROM geo_rtree")
        }
        entity_keys = keys_of["entities"]
        total = len(entity_keys)
        if total < 2 * BATCH:
            raise ValueError(f"the ceiling needs at least {2 * BATCH:,} stored entities")
        timed = max(BATCH, min(timed, total // 2))
        starts = [entity_keys[i] for i in range(0, total, BATCH)]

        def insert(index: int) -> int:
            low = starts[index]
            high = starts[index + 1] if index + 1 < len(starts) else None
            written = 0
            conn.execute("BEGIN")
            for table, _ in BROKER_ROW_TABLES:
                keys = keys_of[table]
                end = bisect.bisect_left(keys, high) if high is not None else len(keys)
                rows = rows_of[table][bisect.bisect_left(keys, low) : end]
                if not rows:
                    continue
                marks = ",".join("?" * len(rows[0]))
                conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
                written += len(rows)
                if table == "geo":
                    shapes = [gids[r[0]] for r in rows if r[0] in gids]
                    conn.executemany("INSERT INTO geo_rtree VALUES (?,?,?,?,?)", shapes)
                    written += len(shapes)
            conn.execute("COMMIT")
            return written

        first_timed = len(starts) - timed // BATCH
        for index in range(first_timed):  # the store as the broker found it, untimed
            insert(index)
        started = time.perf_counter()
        rows = sum(insert(index) for index in range(first_timed, len(starts)))
        seconds = time.perf_counter() - started
        timed_entities = total - first_timed * BATCH
    finally:
        conn.close()
        source.close()
    return RowsCeiling(
        timed_entities / seconds, rows / timed_entities, timed_entities, first_timed * BATCH
    )


# ------------------------------------------------------------------ running a workload


@dataclass
class Drained:
    """Write work left in the server when wrk stopped, and what the store holds afterwards."""

    seconds: float
    stored_before: int | None = None
    stored_after: int | None = None
    window: float = 0.0

    @property
    def rate(self) -> float | None:
        """Entities stored per second, counting the drain (server-side view)."""
        if self.stored_before is None or self.stored_after is None:
            return None
        return (self.stored_after - self.stored_before) / (self.window + self.seconds)


def stored_entities(port: int) -> int | None:
    """Entities in the store: the sum over the benchmark's types of NGSILD-Results-Count."""
    total = 0
    for etype in TYPES:
        path = f"{API}/entities?" + urlencode({"type": etype, "count": "true", "limit": 1})
        status, headers, _ = request(port, "GET", path, timeout=300)
        count = headers.get("ngsild-results-count")
        if status != 200 or count is None:
            return None
        total += int(count)
    return total


def drain(
    port: int, hot_id: str, *, until_stable: bool, limit: float = 300.0
) -> tuple[float, int | None]:
    """Seconds until the writes wrk left in flight are done (one write queues behind them).

    With ``until_stable`` repeat until the stored entity count stops changing (creates
    still being parsed when the first drain write arrived) and return that count.
    """
    path = f"{API}/entities/{quote(hot_id, safe=':')}/attrs/batteryLevel"
    started = time.monotonic()
    last: int | None = None
    settled_at = 0.0
    while True:
        request(port, "PATCH", path, b'{"value":0.5}', timeout=limit)
        done_at = time.monotonic() - started
        if not until_stable:
            return done_at, None
        count = stored_entities(port)
        if count is None or count == last or done_at > limit:
            return settled_at, count
        last, settled_at = count, done_at


def run_workload(
    work: Workload,
    port: int,
    server: Server,
    duration: int,
    wrk_env: dict[str, str],
    data_dir: Path,
    dataset: Dataset,
    report: Report,
    quiet_wait: float,
) -> None:
    """Precheck the request shape, wait for a quiet machine, run wrk, drain writes."""
    assert work.precheck is not None
    method, path, _ = work.precheck
    body = precheck_body(work, data_dir)
    status, _, answer = request(port, method, path, body)
    if status not in work.expect:
        sent = f"{method} {path}" + (f" body {body[:300]!r}" if body else "")
        report.blocked[work.key] = f"{sent} -> {status} {answer[:400]!r}"
        report.problems.append(f"{work.title}: BLOCKED: {report.blocked[work.key]}")
        print(f"  {work.key}: BLOCKED ({status})", file=sys.stderr, flush=True)
        return
    adds = work.key in ("create", "upsert")
    writes = adds or work.key.startswith("update")
    before = stored_entities(port) if adds else None
    other_before = wait_quiet(server.proc.pid, quiet_wait)
    if other_before >= 20:
        report.notes.append(
            f"{work.title}: the machine was busy before the run ({other_before:.0f}% of a core "
            "used by other processes)"
        )
    print(f"  {work.key} ({duration} s) ...", file=sys.stderr, flush=True)
    env = {**wrk_env, "BENCH_EXPECT": ",".join(map(str, work.expect))}
    meter = CpuMeter(server.proc.pid)
    result = run_wrk(work.script, port, duration, env)
    report.cpu[work.key] = meter.read()
    report.results[work.key] = result
    if writes:
        seconds, after = drain(port, dataset.hot_ids[0], until_stable=adds)
        report.drained[work.key] = Drained(seconds, before, after, result.seconds or duration)
    if not result.ok:
        report.problems.append(f"{work.title}: {result.problem}")
        if result.bad_sample:
            report.problems.append(f"   first bad response: {result.bad_sample[:500]}")
    five = sum(n for code, n in result.statuses.items() if code.startswith("5"))
    if five:
        report.problems.append(f"{work.title}: {five} responses with a 5xx status")
    print(
        f"    {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, p95 {result.p95_ms:.1f} ms"
        + (f"  [{result.problem}]" if result.problem else ""),
        file=sys.stderr,
        flush=True,
    )


# ------------------------------------------------------------------ report


def _mb(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:,.1f} MB"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2f}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


@dataclass
class Report:
    """Everything the run measured, printed as one table (and optionally saved as JSON)."""

    header: list[str] = field(default_factory=list)
    results: dict[str, WrkResult] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    refs: dict[str, float] = field(default_factory=dict)
    bare: WrkResult | None = None
    load: LoadResult | None = None
    raw_sqlite: float | None = None
    rows_ceiling: RowsCeiling | None = None
    rss_kb: dict[str, int | None] = field(default_factory=dict)
    selectivity: dict[str, Selectivity] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    drained: dict[str, Drained] = field(default_factory=dict)
    db_bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def _cpu_cells(self, key: str) -> tuple[str, str]:
        cpu = self.cpu.get(key)
        if cpu is None:
            return "", ""
        return f"{cpu['server']:.0f}%", f"{cpu['other']:.0f}%" + ("*" if self.noisy(key) else "")

    def noisy(self, key: str) -> bool:
        """Whether other processes took a noticeable share of the CPU during the run."""
        cpu = self.cpu.get(key)
        return cpu is not None and cpu["other"] >= NOISY_PCT

    def _drain_line(self, work: Workload) -> str | None:
        drained = self.drained.get(work.key)
        if drained is None:
            return None
        if drained.rate is None:
            return (
                f"     writes still queued when wrk stopped took {drained.seconds:.1f} s to finish"
            )
        assert drained.stored_after is not None and drained.stored_before is not None
        added = drained.stored_after - drained.stored_before
        return (
            f"     server side: +{added:,} entities stored in {drained.window:.1f} s of wrk + "
            f"{drained.seconds:.1f} s finishing queued writes = {drained.rate:,.0f} entities/s"
        )

    def render(self, works: list[Workload], entities: int) -> str:
        """The table."""
        out: list[str] = [*self.header, ""]
        row = "{:<2} {:<46} {:>8} {:>11} {:>9} {:>9} {:>6} {:>6}  {:<26} {}"
        out.append(
            row.format(
                "#",
                "workload",
                "req/s",
                "entities/s",
                "median",
                "p95",
                "server",
                "other",
                "target",
                "verdict",
            )
        )
        out.append(row.format("", "", "", "", "", "", "CPU", "CPU", "", ""))
        out.append("-" * 136)
        for index, work in enumerate(works, 1):
            if work.key in self.blocked:
                out.append(
                    row.format(
                        index, work.title, "BLOCKED", "", "", "", "", "", work.target, "FAIL"
                    )
                )
                out.append(f"   !!! {self.blocked[work.key][:400]}")
                continue
            result = self.results.get(work.key)
            if result is None:
                continue
            srv, other = self._cpu_cells(work.key)
            if not result.ok:
                out.append(
                    row.format(
                        index, work.title, "ERRORS", "", "", "", srv, other, work.target, "FAIL"
                    )
                )
                out.append(f"   !!! {result.problem}")
                if result.statuses:
                    out.append(f"   !!! statuses: {result.statuses}")
                if result.bad_sample:
                    out.append(f"   !!! first bad response: {result.bad_sample[:300]}")
            else:
                ents = _rate(result.rps * work.per_request) if work.per_request > 1 else ""
                verdict = work.check(result, self.refs) if work.check else None
                target = work.target
                if work.key == "retrieve" and self.refs.get("bare"):
                    pct = 100 * result.rps / self.refs["bare"]
                    target = f">= 50% of bare: {pct:.0f}%"
                out.append(
                    row.format(
                        index,
                        work.title,
                        _rate(result.rps),
                        ents,
                        f"{result.p50_ms:.1f} ms",
                        f"{result.p95_ms:.1f} ms",
                        srv,
                        other,
                        target,
                        _verdict(verdict),
                    )
                )
            if result.ok and result.requests < FEW_REQUESTS:
                out.append(
                    f"   !!! only {result.requests} request(s) completed in the "
                    f"{result.seconds:.0f} s window: the wrk figures are not meaningful"
                )
            line = self._drain_line(work)
            if line:
                out.append(line)
        out.append(
            "   server CPU / other CPU: % of one core used by the server process / by processes "
            "other than the server, wrk and this runner, during the wrk run"
        )
        if any(self.noisy(k) for k in self.cpu):
            out.append(
                f"   * NOISY: other processes used >= {NOISY_PCT:.0f}% of a core during this run; "
                "the figure understates the broker (re-run on a quiet machine)"
            )
        out.append("")
        out.append("References (same run, same machine)")
        if self.bare is not None:
            if self.bare.ok:
                out.append(
                    row.format(
                        "",
                        "bare Starlette handler, same entity (uvicorn)",
                        f"{self.bare.rps:,.0f}",
                        "",
                        f"{self.bare.p50_ms:.1f} ms",
                        f"{self.bare.p95_ms:.1f} ms",
                        *self._cpu_cells("bare"),
                        "",
                        "",
                    )
                )
            else:
                out.append(f"   bare handler: ERRORS: {self.bare.problem}")
        if self.raw_sqlite is not None:
            upsert = self.results.get("upsert")
            beside = ""
            if upsert is not None and upsert.ok:
                beside = f" (broker batch upsert: {upsert.rps * BATCH:,.0f} entities/s)"
            elif (drained := self.drained.get("upsert")) and drained.rate is not None:
                beside = f" (broker batch upsert, server side: {drained.rate:,.0f} entities/s)"
            noisy = " *NOISY*" if self.noisy("raw_sqlite") else ""
            out.append(
                f"   raw SQLite executemany, {entities:,} docs, 1 txn, WAL: "
                f"{self.raw_sqlite:,.0f} rows/s{noisy}{beside}"
            )
        if (ceiling := self.rows_ceiling) is not None:
            noisy = " *NOISY*" if self.noisy("rows_ceiling") else ""
            out.append(
                f"   raw SQLite executemany of the broker's own rows for its last "
                f"{ceiling.timed_entities:,} entities ({ceiling.rows_per_entity:.1f} rows each: "
                f"document, types, presence, values, geometry, history), {BATCH:,} entities "
                f"a txn, into its schema holding {ceiling.prefilled_entities:,} more: "
                f"{ceiling.entities_per_s:,.0f} entities/s{noisy} (what SQLite alone allows "
                "a batch upsert)"
            )
        if self.load is not None:
            state = "ok" if not self.load.failures else f"{len(self.load.failures)} FAILED batches"
            out.append(
                f"   load before the clock: {self.load.entities:,} entities by batch upserts of "
                f"{BATCH:,} over {LOAD_CLIENTS} connections in {self.load.seconds:.1f} s = "
                f"{self.load.rate:,.0f} entities/s ({state}); server CPU "
                + " / other CPU ".join(self._cpu_cells("load"))
            )
        if self.db_bytes is not None:
            out.append(
                f"   store size after the load (db + wal): {self.db_bytes / 2**20:,.0f} MB = "
                f"{self.db_bytes / max(entities, 1):,.0f} bytes/entity"
            )
        for kind, sel in self.selectivity.items():
            label = "numeric range" if kind == "range" else "relationship"
            pct_type = 100 * sel.mean_expected / sel.per_type if sel.per_type else 0
            pct_all = 100 * sel.mean_expected / entities if entities else 0
            agree = "all agree" if not sel.mismatches else f"{len(sel.mismatches)} MISMATCHED"
            out.append(
                f"   {label} query matches on average {sel.mean_expected:,.0f} of the "
                f"{sel.per_type:,} entities of its type ({pct_type:.2f}%, {pct_all:.2f}% of all); "
                f"server counts vs data over {sel.samples} samples: {agree}"
            )
        out.append("")
        out.append("Server memory (VmRSS)")
        mem = "   {:<58} {:>10}  {:<12} {}"
        idle = self.rss_kb.get("idle")
        serving = self.rss_kb.get("serving_peak")
        out.append(
            mem.format(
                "idle after start",
                _mb(idle),
                "< 150 MB",
                _verdict(None if idle is None else idle < 150 * 1024),
            )
        )
        out.append(
            mem.format(
                f"after loading {entities:,} entities",
                _mb(self.rss_kb.get("after_load")),
                "",
                "",
            )
        )
        out.append(
            mem.format(
                f"peak while serving {entities:,} (reads + updates)",
                _mb(serving),
                "< 400 MB",
                _verdict(None if serving is None else serving < 400 * 1024),
            )
        )
        out.append(mem.format("peak while loading", _mb(self.rss_kb.get("load_peak")), "", ""))
        out.append(
            mem.format(
                "peak during create + upsert workloads (more entities)",
                _mb(self.rss_kb.get("writes_peak")),
                "",
                "",
            )
        )
        out.append(mem.format("VmHWM at the end", _mb(self.rss_kb.get("hwm")), "", ""))
        out.append("")
        out.append("Published figures, for context only (other hardware, other entities)")
        out.extend(f"   {line}" for line in PUBLISHED)
        if self.notes:
            out.append("")
            out.extend(self.notes)
        if self.problems:
            out.append("")
            out.append("!!! PROBLEMS")
            out.extend(f"   {p}" for p in self.problems)
        return "\n".join(out)


# ------------------------------------------------------------------ main


@contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit so that finally blocks stop the servers."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _urbanstack_cmd(port: int, store: Path) -> list[str]:
    exe = shutil.which("urbanstack")
    base = [exe] if exe else [sys.executable, "-m", "urbanstack.cli"]
    return [*base, "serve", "--host", HOST, "--port", str(port), "--store", f"sqlite:///{store}"]


def _bare_cmd(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_app:app",
        "--app-dir",
        str(REPO),
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "info",
        "--no-access-log",
        "--lifespan",
        "on",
        "--timeout-graceful-shutdown",
        "30",
    ]


def server_env_for(repo: Path) -> dict[str, str]:
    """The server's environment: this checkout first on the path, whatever pip installed."""
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    return env


def _versions(env: dict[str, str]) -> list[str]:
    import starlette
    import uvicorn

    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import urbanstack; print(urbanstack.__version__, urbanstack.__file__)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=False,
    )
    version, _, location = probe.stdout.strip().partition(" ")
    git = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty=+uncommitted"],
        capture_output=True,
        text=True,
        check=False,
    )
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout + wrk.stderr).split("[")[0].replace("wrk", "").strip()
    return [
        f"urbanstack {version or '?'} imported from {Path(location).parent if location else '?'} "
        f"(git {git.stdout.strip() or '?'})",
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, starlette "
        f"{starlette.__version__}, uvicorn {uvicorn.__version__} (uvloop, httptools), "
        f"wrk {wrk_version}",
    ]


def _cpu() -> str:
    model = "unknown CPU"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model})"


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run everything, print the table; 0 when every target passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=None, help="seconds per workload [10]")
    parser.add_argument("--entities", type=int, default=None, help="entities loaded [100000]")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 2 s per workload, 10,000 entities"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET_WAIT_S,
        help="before each run, wait up to this many seconds for other processes to go idle [60]",
    )
    args = parser.parse_args(argv)
    duration = args.duration or (2 if args.quick else 10)
    entities = args.entities or (10_000 if args.quick else 100_000)
    if entities < len(TYPES) or entities % len(TYPES):
        parser.error(f"--entities must be a positive multiple of {len(TYPES)}")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install -y wrk")

    env_sync = os.environ.get("URBANSTACK_SQLITE_SYNCHRONOUS")
    synchronous = (env_sync or "FULL").upper()
    sync_label = f"{synchronous} ({'URBANSTACK_SQLITE_SYNCHRONOUS' if env_sync else 'default'})"

    report = Report()
    report.header = [
        "urbanstack broker benchmark",
        *(f"   {line}" for line in _versions(server_env_for(REPO))),
        f"   {_cpu()}; wrk -t1 -c{CONNECTIONS} closed loop on {HOST}; {duration} s per workload; "
        f"{entities:,} entities of {len(TYPES)} types; SQLite synchronous={sync_label}",
        f"   command: {' '.join([Path(sys.executable).name, *sys.argv])}",
    ]
    print(f"generating {entities:,} entities ...", file=sys.stderr, flush=True)
    dataset = make_dataset(entities)
    works = workloads(dataset.hot_ids[0], TYPES)
    by_key = {w.key: w for w in works}

    with tempfile.TemporaryDirectory(prefix="urbanstack-bench-") as tmp, _terminate_on_sigterm():
        tmpdir = Path(tmp)
        data_dir = tmpdir / "wrk-data"
        write_wrk_data(data_dir, dataset)
        wrk_env = {
            "BENCH_DATA": str(data_dir),
            "BENCH_WIDTH": str(RANGE_WIDTH),
            "BENCH_MAX": str(TEMP_MAX),
            "BENCH_OWNERS": str(OWNERS),
        }
        server_env = server_env_for(REPO)
        if env_sync:
            server_env["URBANSTACK_SQLITE_SYNCHRONOUS"] = env_sync
        port = free_port()
        server = Server(
            "urbanstack serve",
            _urbanstack_cmd(port, tmpdir / "broker.db"),
            port,
            tmpdir / "broker.log",
            server_env,
        )
        sampler: RssSampler | None = None
        bare_doc: bytes | None = None
        try:
            print(f"starting urbanstack serve on port {port} ...", file=sys.stderr, flush=True)
            server.wait_ready()
            time.sleep(1.0)
            report.rss_kb["idle"] = server.status_kb("VmRSS")
            sampler = RssSampler(server)
            sampler.start()

            print("loading (before the clock) ...", file=sys.stderr, flush=True)
            wait_quiet(server.proc.pid, args.quiet_wait)
            sampler.enter("load")
            meter = CpuMeter(server.proc.pid)
            report.load = load(port, dataset.bodies, entities)
            report.cpu["load"] = meter.read()
            sampler.enter("serving")
            report.rss_kb["after_load"] = server.status_kb("VmRSS")
            report.db_bytes = sum(f.stat().st_size for f in tmpdir.glob("broker.db*"))
            if report.load.failures:
                report.problems.append(
                    f"load: {len(report.load.failures)} batch upserts failed, first: "
                    f"{report.load.failures[0]}"
                )
            for kind in ("range", "rel"):
                sel = check_selectivity(port, dataset, kind)
                report.selectivity[kind] = sel
                report.problems.extend(f"query count mismatch: {m}" for m in sel.mismatches[:3])

            status, _, bare_doc = request(
                port, "GET", f"{API}/entities/{quote(dataset.hot_ids[0], safe=':')}"
            )
            if status != 200:
                bare_doc = None

            for key in RUN_ORDER:
                if key == "create":
                    sampler.enter("writes")
                run_workload(
                    by_key[key],
                    port,
                    server,
                    duration,
                    wrk_env,
                    data_dir,
                    dataset,
                    report,
                    args.quiet_wait,
                )
            sampler.enter("end")
            report.rss_kb["hwm"] = server.status_kb("VmHWM")
        finally:
            if sampler is not None:
                sampler.stop()
                report.rss_kb["load_peak"] = sampler.peaks.get("load")
                report.rss_kb["serving_peak"] = sampler.peaks.get("serving")
                report.rss_kb["writes_peak"] = sampler.peaks.get("writes")
            server.stop()
        # uvicorn re-raises the SIGTERM it handled once shut down: -15 is a clean exit
        graceful = server.exit_code in (0, -signal.SIGTERM) and server.log_has(
            "Application shutdown complete"
        )
        if not graceful:
            report.problems.append(
                f"urbanstack serve did not shut down cleanly on SIGTERM: exit code "
                f"{server.exit_code} after {server.stop_seconds or 0:.1f} s; log tail:\n"
                + server.log_tail(15)
            )
        report.notes.append(
            f"Server stopped by SIGTERM in {server.stop_seconds or 0:.1f} s, exit code "
            f"{server.exit_code} ({'graceful' if graceful else 'NOT graceful'})."
        )
        log_problems = server.log_problems()
        if log_problems:
            report.problems.append(f"server log: {len(log_problems)} warning/error lines, first:")
            report.problems.extend(f"   {line[:300]}" for line in log_problems[:5])

        # references, with the broker stopped so they have the machine to themselves
        print("reference: bare Starlette handler ...", file=sys.stderr, flush=True)
        doc_file = tmpdir / "bare.json"
        doc_file.write_bytes(bare_doc or dataset.docs[0][1])
        bare_port = free_port()
        bare = Server(
            "bare app",
            _bare_cmd(bare_port),
            bare_port,
            tmpdir / "bare.log",
            {**os.environ, "BENCH_BARE_DOC": str(doc_file)},
        )
        try:
            bare.wait_ready()
            other_before = wait_quiet(bare.proc.pid, args.quiet_wait)
            if other_before >= 20:
                report.notes.append(
                    f"bare handler: the machine was busy before the run ({other_before:.0f}% "
                    "of a core used by other processes)"
                )
            meter = CpuMeter(bare.proc.pid)
            report.bare = run_wrk(
                "bare.lua", bare_port, duration, {**wrk_env, "BENCH_EXPECT": "200"}
            )
            report.cpu["bare"] = meter.read()
            if report.bare.ok:
                report.refs["bare"] = report.bare.rps
            else:
                report.problems.append(f"bare handler: {report.bare.problem}")
        finally:
            bare.stop()
        print("reference: raw SQLite inserts ...", file=sys.stderr, flush=True)
        wait_quiet(-1, args.quiet_wait)
        meter = CpuMeter(-1)
        report.raw_sqlite = raw_sqlite_rate(tmpdir / "raw.db", dataset.docs, synchronous)
        report.cpu["raw_sqlite"] = meter.read()
        print("reference: raw SQLite, the broker's rows ...", file=sys.stderr, flush=True)
        wait_quiet(-1, args.quiet_wait)
        meter = CpuMeter(-1)
        try:
            report.rows_ceiling = broker_rows_rate(
                tmpdir / "broker.db", tmpdir / "raw-rows.db", synchronous
            )
        except ValueError as exc:
            report.notes.append(f"Ceiling reference left out: {exc}.")
        report.cpu["rows_ceiling"] = meter.read()
        report.notes.append(
            f"Entity: {len(dataset.docs[0][1]):,} bytes as sent, {len(bare_doc or b''):,} bytes "
            "as retrieved; retrievals and updates pick among "
            f"{len(dataset.hot_ids):,} random loaded ids; creates and upserts use fresh ids."
        )

    print(report.render(works, entities))
    if args.json is not None:
        payload = {
            "results": {k: asdict(v) for k, v in report.results.items()},
            "blocked": report.blocked,
            "bare": asdict(report.bare) if report.bare else None,
            "load": asdict(report.load) if report.load else None,
            "raw_sqlite_rows_per_s": report.raw_sqlite,
            "broker_rows_ceiling": asdict(report.rows_ceiling) if report.rows_ceiling else None,
            "rss_kb": report.rss_kb,
            "selectivity": {k: asdict(v) for k, v in report.selectivity.items()},
            "problems": report.problems,
            "synchronous": sync_label,
            "duration_s": duration,
            "entities": entities,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    failed = bool(report.problems) or any(
        w.check is not None
        and (
            w.key not in report.results
            or not report.results[w.key].ok
            or not w.check(report.results[w.key], report.refs)
        )
        for w in works
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
