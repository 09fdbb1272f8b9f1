"""Temporal benchmark: load entity histories into ``urbanstack serve``, then retrieve them.

    python bench/temporal.py [--duration 10] [--quick] [--json out.json] [--py-spy DIR]

Starts ``urbanstack serve`` on a free 127.0.0.1 port with a fresh SQLite store, loads
three groups of entity histories through POST /temporal/entities (timed: the load is a
measured figure), checks what was stored, then runs each retrieval workload with
``wrk -t1 -c10`` (closed loop) for a fixed duration.  Reference measured in the same
run: raw SQLite inserts of the same rows into a table shaped like ``attr_instances``.
Shares its harness with bench/broker.py; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.broker import (
    API,
    CONNECTIONS,
    FEW_REQUESTS,
    HOST,
    LOAD_CLIENTS,
    NOISY_PCT,
    QUIET_WAIT_S,
    REPO,
    CpuMeter,
    Server,
    WrkResult,
    _cpu,
    _terminate_on_sigterm,
    _urbanstack_cmd,
    _versions,
    free_port,
    request,
    run_wrk,
    server_env_for,
    wait_quiet,
)

ATTR = "pm25"
START = datetime(2025, 1, 1, tzinfo=UTC)  # first observedAt; one instance an hour
HOUR_US = 3_600_000_000
START_US = int(START.timestamp()) * 1_000_000
METHODS = ["totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq"]
PERIOD, PERIOD_HOURS = "P1D", 24  # aggregation period: 24 hourly instances a bucket
LAST_N = 100
QUERY_LIMIT = 10
INSTANCE_LIMIT = 20_000  # URBANSTACK_TEMPORAL_INSTANCE_LIMIT: 10k-instance answers in full
LOAD_TARGET = 50_000  # rows/s
STELLIO = "Stellio (8 vCPU): aggregated retrieval 137 / 86 / 42 req/s at 1k / 10k / 100k instances"
INSTANCE = '{"type":"Property","value":%s,"unitCode":"GQ","observedAt":"%s"}'
# (group, entity type, entities, instances per entity, instances per POST body)
FULL = [
    ("A", "AirQualitySensor", 10, 100, 100),
    ("B", "AirQualityStation", 10, 10_000, 5_000),
    ("C", "AirQualityObserved", 1_000, 1_000, 1_000),
]
QUICK = [
    ("A", "AirQualitySensor", 10, 100, 100),
    ("B", "AirQualityStation", 3, 10_000, 5_000),
    ("C", "AirQualityObserved", 100, 1_000, 1_000),
]


def stamp(hour: int) -> str:
    """observedAt of the instance of hour ``hour``, as sent."""
    return (START + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_ms(hour: int) -> str:
    """The same instant as the server writes it (milliseconds)."""
    return stamp(hour)[:-1] + ".000Z"


# ------------------------------------------------------------------ data


@dataclass
class Group:
    """Entities of one type with the same number of hourly pm25 instances each."""

    key: str
    etype: str
    entities: int
    instances: int
    per_body: int
    ids: list[str] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows of attr_instances: one per instance (one attribute)."""
        return self.entities * self.instances

    @property
    def label(self) -> str:
        return f"{self.key}: {self.entities:,} x {self.instances:,} ({self.etype})"

    def fill(self, rng: random.Random) -> None:
        """Ids and realistic values: a daily cycle around each sensor's level, with noise."""
        for n in range(1, self.entities + 1):
            self.ids.append(f"urn:ngsi-ld:{self.etype}:{self.key}{n:05d}")
            level = rng.uniform(8.0, 35.0)
            self.values.append(
                [
                    round(
                        max(0.5, level * (1 + 0.35 * math.sin(2 * math.pi * (h % 24 - 8) / 24)))
                        + rng.gauss(0, 3),
                        1,
                    )
                    for h in range(self.instances)
                ]
            )

    def bodies(self) -> list[bytes]:
        """POST /temporal/entities bodies of ``per_body`` instances, entity after entity."""
        stamps = [stamp(h) for h in range(self.instances)]
        out = []
        for entity_id, values in zip(self.ids, self.values, strict=True):
            for lo in range(0, self.instances, self.per_body):
                hi = min(lo + self.per_body, self.instances)
                inst = ",".join(INSTANCE % (values[h], stamps[h]) for h in range(lo, hi))
                head = f'{{"id":"{entity_id}","type":"{self.etype}","{ATTR}":['
                out.append((head + inst + "]}").encode())
        return out


def make_groups(spec: list[tuple[str, str, int, int, int]]) -> list[Group]:
    rng = random.Random(20251101)
    groups = [Group(*s) for s in spec]
    for group in groups:
        group.fill(rng)
    return groups


# ------------------------------------------------------------------ load


@dataclass
class LoadFigure:
    """One timed load: rows, request bodies, seconds, server CPU and failures."""

    label: str
    rows: int
    bodies: int
    seconds: float
    cpu: dict[str, float]
    failures: list[str]

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def post_all(port: int, bodies: list[bytes]) -> tuple[float, list[str]]:
    """POST every body to /temporal/entities over LOAD_CLIENTS keep-alive connections."""
    import http.client

    local = threading.local()
    failures: list[str] = []

    def send(index: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(HOST, port, timeout=300)
        status, _, data = request(
            port, "POST", f"{API}/temporal/entities", bodies[index], conn=conn
        )
        if status not in (201, 204):
            failures.append(f"body {index}: {status} {data[:300]!r}")

    started = time.perf_counter()
    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        list(pool.map(send, range(len(bodies))))
    return time.perf_counter() - started, failures


def stored_rows(port: int, group: Group) -> int | None:
    """Instances the server holds for the group (totalCount over the whole time line)."""
    total, offset = 0, 0
    while True:
        params = {"type": group.etype, "attrs": ATTR, "timerel": "after"}
        params |= {"timeAt": "2000-01-01T00:00:00Z", "options": "aggregatedValues"}
        params |= {"aggrMethods": "totalCount", "limit": 1000, "offset": offset}
        status, _, body = request(port, "GET", f"{API}/temporal/entities?{urlencode(params)}")
        if status != 200:
            return None
        page = json.loads(body)
        total += sum(b[0] for e in page for b in e.get(ATTR, {}).get("totalCount", []))
        if len(page) < 1000:
            return total
        offset += 1000


# ------------------------------------------------------------------ raw SQLite reference

RAW_SCHEMA = """CREATE TABLE attr_instances (
    eid INTEGER NOT NULL, pid INTEGER NOT NULL, observed INTEGER NOT NULL,
    iid INTEGER NOT NULL, has_observed INTEGER NOT NULL, created INTEGER NOT NULL,
    modified INTEGER NOT NULL, kind INTEGER NOT NULL, dataset_id TEXT, vt INTEGER NOT NULL,
    val, extra BLOB, PRIMARY KEY (eid, pid, observed, iid)) WITHOUT ROWID"""
RAW_INSERT = "INSERT INTO attr_instances VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"


def raw_batches(groups: list[Group]) -> list[list[tuple[Any, ...]]]:
    """The loaded rows, in the server's order and batching (one list per POST body)."""
    now = int(time.time() * 1e6)
    extra = b'{"unitCode":"GQ"}'
    batches: list[list[tuple[Any, ...]]] = []
    eid, iid = 0, 1
    for group in groups:
        for values in group.values:
            eid += 1
            for lo in range(0, group.instances, group.per_body):
                hi = min(lo + group.per_body, group.instances)
                batch = []
                for h in range(lo, hi):
                    row = (eid, 1, START_US + h * HOUR_US, iid, 1, now, now, 0, None, 1)
                    batch.append((*row, values[h], extra))
                    iid += 1
                batches.append(batch)
    return batches


def raw_sqlite(path: Path, batches: list[list[tuple[Any, ...]]], sync: str, *, one: bool) -> float:
    """Rows/s of executemany into the attr_instances shape: one transaction for every
    row (``one``) or one per POST body, WAL, the server's synchronous and cache size."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", f"synchronous={sync}", "cache_size=-32768"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(RAW_SCHEMA)
        started = time.perf_counter()
        if one:
            conn.execute("BEGIN")
        for batch in batches:
            if not one:
                conn.execute("BEGIN")
            conn.executemany(RAW_INSERT, batch)
            if not one:
                conn.execute("COMMIT")
        if one:
            conn.execute("COMMIT")
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return sum(map(len, batches)) / seconds


# ------------------------------------------------------------------ answers


def check_instances(items: Any, values: list[float], lo: int, hi: int) -> list[str]:
    """Normalized instances ``lo..hi`` of one entity, oldest first, with their instanceId."""
    if not isinstance(items, list):
        return [f"expected a list of instances, got {str(items)[:120]}"]
    if len(items) != hi - lo:
        return [f"{len(items)} instances, expected {hi - lo}"]
    for h, inst in zip(range(lo, hi), items, strict=True):
        if inst.get("value") != values[h] or inst.get("observedAt") != stamp_ms(h):
            return [f"instance {h - lo}: {str(inst)[:160]}, expected {values[h]} at {stamp(h)}"]
        if not str(inst.get("instanceId", "")).startswith("urn:"):
            return [f"instance {h - lo} has no instanceId: {str(inst)[:160]}"]
    return []


def check_values(doc: Any, values: list[float], lo: int, hi: int) -> list[str]:
    """temporalValues: [[value, observedAt], ...] for instances ``lo..hi``."""
    pairs = doc.get(ATTR, {}).get("values") if isinstance(doc, dict) else None
    want = [[values[h], stamp_ms(h)] for h in range(lo, hi)]
    if pairs != want:
        got = f"{len(pairs)} pairs" if isinstance(pairs, list) else str(pairs)[:120]
        return [f"temporalValues: {got}, expected {len(want)} pairs starting {want[:1]}"]
    return []


def check_aggregates(doc: Any, values: list[float]) -> list[str]:
    """All eight methods over P1D buckets: bucket count, totals and the first bucket's
    figures against the data."""
    agg = doc.get(ATTR) if isinstance(doc, dict) else None
    if not isinstance(agg, dict):
        return [f"no aggregated {ATTR}: {str(doc)[:200]}"]
    buckets = math.ceil(len(values) / PERIOD_HOURS)
    problems = [
        f"{m}: {len(agg.get(m) or [])} buckets, expected {buckets}"
        for m in METHODS
        if len(agg.get(m) or []) != buckets
    ]
    if problems:
        return problems
    if sum(b[0] for b in agg["totalCount"]) != len(values):
        problems.append(f"totalCount adds up to {sum(b[0] for b in agg['totalCount'])}")
    first = values[:PERIOD_HOURS]
    expected = {
        "totalCount": len(first),
        "distinctCount": len(set(first)),
        "sum": sum(first),
        "avg": statistics.fmean(first),
        "min": min(first),
        "max": max(first),
        "stddev": statistics.stdev(first),
        "sumsq": sum(v * v for v in first),
    }
    for method, want in expected.items():
        got = agg[method][0][0]
        if not isinstance(got, int | float) or not math.isclose(got, want, rel_tol=1e-9):
            problems.append(f"{method} of the first bucket: {got}, expected {want}")
    if agg["totalCount"][0][1:] != [stamp_ms(0), stamp_ms(PERIOD_HOURS)]:
        problems.append(f"first bucket bounds {agg['totalCount'][0][1:]}")
    return problems


def check_query(doc: Any, group: Group, day: int) -> list[str]:
    """A page of QUERY_LIMIT entities of the group, each with the day's 24 instances."""
    if not isinstance(doc, list) or len(doc) != QUERY_LIMIT:
        return [f"expected {QUERY_LIMIT} entities, got {str(doc)[:200]}"]
    index = {entity_id: n for n, entity_id in enumerate(group.ids)}
    lo, hi = day * 24, day * 24 + 24
    for entity in doc:
        n = index.get(entity.get("id"))
        if n is None:
            return [f"entity {entity.get('id')!r} is not in group {group.key}"]
        problems = check_instances(entity.get(ATTR), group.values[n], lo, hi)
        if problems:
            return [f"{entity['id']}: {problems[0]}"]
    return []


# ------------------------------------------------------------------ workloads


@dataclass
class Work:
    """One wrk run over one group, its precheck request and what its answer must hold."""

    key: str
    title: str
    script: str
    env: dict[str, str]
    sample: str  # path of the precheck request
    validate: Callable[[Any], list[str]]
    target: str = "-"
    passes: Callable[[WrkResult], bool] | None = None
    stellio: str = ""


def workloads(groups: dict[str, Group]) -> list[Work]:
    a, b, c = groups["A"], groups["B"], groups["C"]
    agg = urlencode({"attrs": ATTR, "options": "aggregatedValues"})
    agg += f"&aggrMethods={','.join(METHODS)}&aggrPeriodDuration={PERIOD}"
    plain, values = f"attrs={ATTR}", f"attrs={ATTR}&options=temporalValues"
    last = f"attrs={ATTR}&lastN={LAST_N}"

    def one(key: str, title: str, g: Group, query: str, check: Callable[..., list[str]], **kw):
        env = {"BENCH_IDS": f"ids_{g.key}.txt", "BENCH_QUERY": query}
        sample = f"{API}/temporal/entities/{g.ids[0]}?{query}"
        return Work(key, title, "temporal_entity.lua", env, sample, check, **kw)

    v = [g.values[0] for g in (a, b, c)]
    n_a, n_b, n_c = f"{a.instances:,}", f"{b.instances:,}", f"{c.instances:,}"
    window = urlencode({"timeAt": stamp(24), "endTimeAt": stamp(48)})
    qenv = {"BENCH_TYPE": c.etype, "BENCH_ATTRS": ATTR, "BENCH_LIMIT": str(QUERY_LIMIT)}
    qpath = f"{API}/temporal/entities?type={c.etype}&attrs={ATTR}&limit={QUERY_LIMIT}"
    return [
        one(
            "agg_a",
            f"aggregated, 8 methods, {PERIOD}: {n_a} inst",
            a,
            agg,
            lambda d: check_aggregates(d, v[0]),
        ),
        one(
            "agg_c",
            f"aggregated, 8 methods, {PERIOD}: {n_c} inst",
            c,
            agg,
            lambda d: check_aggregates(d, v[2]),
            target=">= 1,000 req/s",
            passes=lambda r: r.rps >= 1000,
            stellio="137 req/s at 1k",
        ),
        one(
            "agg_b",
            f"aggregated, 8 methods, {PERIOD}: {n_b} inst",
            b,
            agg,
            lambda d: check_aggregates(d, v[1]),
            target=">= 300 req/s",
            passes=lambda r: r.rps >= 300,
            stellio="86 req/s at 10k",
        ),
        one(
            "norm_c",
            f"normalized: {n_c} inst",
            c,
            plain,
            lambda d: check_instances(d.get(ATTR), v[2], 0, c.instances),
        ),
        one(
            "values_c",
            f"temporalValues: {n_c} inst",
            c,
            values,
            lambda d: check_values(d, v[2], 0, c.instances),
        ),
        one(
            "norm_b",
            f"normalized: {n_b} inst",
            b,
            plain,
            lambda d: check_instances(d.get(ATTR), v[1], 0, b.instances),
        ),
        one(
            "values_b",
            f"temporalValues: {n_b} inst",
            b,
            values,
            lambda d: check_values(d, v[1], 0, b.instances),
        ),
        one(
            "last_b",
            f"lastN={LAST_N} of {n_b} inst",
            b,
            last,
            lambda d: check_instances(d.get(ATTR), v[1], b.instances - LAST_N, b.instances),
            target="median < 10 ms",
            passes=lambda r: r.p50_ms < 10,
        ),
        Work(
            "query_c",
            f"by type+attrs, 1-day window, limit={QUERY_LIMIT}",
            "temporal_query.lua",
            qenv,
            f"{qpath}&timerel=between&{window}",
            lambda d: check_query(d, c, 1),
        ),
    ]


# ------------------------------------------------------------------ profiling


@contextmanager
def profiled(pid: int, out_dir: Path | None, name: str):
    """py-spy record (raw collapsed stacks) of the server while the block runs."""
    if out_dir is None:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--nonblocking"]
    cmd += ["--format", "raw", "-o", str(out_dir / f"{name}.txt")]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            spy.wait(60)
        if spy.poll() is None:
            spy.kill()


# ------------------------------------------------------------------ report


@dataclass
class Run:
    """A retrieval workload's figures, or why it has none."""

    result: WrkResult | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    answer_bytes: int = 0
    blocked: str | None = None


def _cells(cpu: dict[str, float]) -> tuple[str, str]:
    if not cpu:
        return "", ""
    noisy = "*" if cpu["other"] >= NOISY_PCT else ""
    return f"{cpu['server']:.0f}%", f"{cpu['other']:.0f}%{noisy}"


def render(
    header: list[str],
    loads: list[LoadFigure],
    works: list[Work],
    runs: dict[str, Run],
    refs: list[str],
    notes: list[str],
    problems: list[str],
) -> str:
    out = [*header, "", "Bulk load, timed: POST /temporal/entities over 2 connections"]
    row = "   {:<44} {:>10} {:>7} {:>8} {:>11} {:>6} {:>6}  {:<20} {}"
    out.append(
        row.format(
            "group", "rows", "bodies", "seconds", "rows/s", "server", "other", "target", "verdict"
        )
    )
    for fig in loads:
        aimed = fig.label.startswith(("B", "C", "all"))
        verdict = "-" if not aimed else ("PASS" if fig.rate >= LOAD_TARGET else "FAIL")
        verdict = "FAIL" if fig.failures else verdict
        target = f">= {LOAD_TARGET:,} rows/s" if aimed else "-"
        out.append(
            row.format(
                fig.label,
                f"{fig.rows:,}",
                f"{fig.bodies:,}",
                f"{fig.seconds:.2f}",
                f"{fig.rate:,.0f}",
                *_cells(fig.cpu),
                target,
                verdict,
            )
        )
    out += ["", "Retrieval: one random entity of the group per request (query: type + attrs)"]
    row = "{:<2} {:<44} {:>8} {:>9} {:>9} {:>9} {:>6} {:>6}  {:<16} {:<7} {}"
    out.append(
        row.format(
            "#",
            "workload",
            "req/s",
            "median",
            "p95",
            "answer",
            "server",
            "other",
            "target",
            "verdict",
            "Stellio, 8 vCPU",
        )
    )
    out.append("-" * 140)
    for n, work in enumerate(works, 1):
        run = runs.get(work.key, Run())
        r = run.result
        if run.blocked or r is None or not r.ok:
            why = run.blocked or (r.problem if r else "not run")
            out.append(
                row.format(
                    n,
                    work.title,
                    "BLOCKED" if run.blocked else "ERRORS",
                    "",
                    "",
                    "",
                    "",
                    "",
                    work.target,
                    "FAIL",
                    work.stellio,
                )
            )
            out.append(f"   !!! {str(why)[:400]}")
            continue
        verdict = "-" if work.passes is None else ("PASS" if work.passes(r) else "FAIL")
        size = f"{run.answer_bytes / 1024:,.0f} kB"
        out.append(
            row.format(
                n,
                work.title,
                f"{r.rps:,.0f}",
                f"{r.p50_ms:.1f} ms",
                f"{r.p95_ms:.1f} ms",
                size,
                *_cells(run.cpu),
                work.target,
                verdict,
                work.stellio,
            )
        )
        if r.requests < FEW_REQUESTS:
            out.append(f"   !!! only {r.requests} requests completed: figures not meaningful")
    out.append(
        "   server / other CPU: % of one core used by the server / by processes other than "
        f"the server, wrk and this runner (* = NOISY, >= {NOISY_PCT:.0f}%)"
    )
    out += ["", "References (same run, same machine)", *(f"   {line}" for line in refs)]
    out += [f"   {STELLIO} (published; other hardware)", "", *notes]
    if problems:
        out += ["", "!!! PROBLEMS", *(f"   {p}" for p in problems)]
    return "\n".join(out)


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=None, help="seconds per workload [10]")
    parser.add_argument("--quick", action="store_true", help="smaller groups, 2 s workloads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET_WAIT_S,
        help="wait up to this long for other processes to go idle [60]",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="record the server with py-spy (raw stacks) into DIR",
    )
    args = parser.parse_args(argv)
    duration = args.duration or (2 if args.quick else 10)
    env_sync = os.environ.get("URBANSTACK_SQLITE_SYNCHRONOUS")
    sync = (env_sync or "FULL").upper()

    print("generating the histories ...", file=sys.stderr, flush=True)
    groups = make_groups(QUICK if args.quick else FULL)
    by_key = {g.key: g for g in groups}
    works = workloads(by_key)
    total_rows = sum(g.rows for g in groups)
    header = [
        "urbanstack temporal benchmark",
        *(f"   {line}" for line in _versions(server_env_for(REPO))),
        f"   {_cpu()}; wrk -t1 -c{CONNECTIONS} closed loop on {HOST}; {duration} s per "
        f"workload; SQLite synchronous={sync}",
        f"   groups: {'; '.join(g.label for g in groups)}; {total_rows:,} rows (1 attribute, "
        f"{ATTR}, one instance an hour from {stamp(0)}, unitCode GQ)",
        f"   aggregation period {PERIOD} ({PERIOD_HOURS} instances a bucket); server run "
        f"with URBANSTACK_TEMPORAL_INSTANCE_LIMIT={INSTANCE_LIMIT} so that normalized and "
        "temporalValues answer every instance (200, no 206)",
        f"   command: {' '.join([Path(sys.executable).name, *sys.argv])}",
    ]
    loads: list[LoadFigure] = []
    runs: dict[str, Run] = {}
    refs: list[str] = []
    notes: list[str] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="urbanstack-temporal-") as tmp, _terminate_on_sigterm():
        tmpdir = Path(tmp)
        data = tmpdir / "wrk-data"
        data.mkdir()
        for g in groups:
            (data / f"ids_{g.key}.txt").write_text("\n".join(g.ids) + "\n")
        days = by_key["C"].instances // 24
        windows = (f"{stamp(24 * d)} {stamp(24 * d + 24)}" for d in range(days))
        (data / "windows.txt").write_text("\n".join(windows) + "\n")
        env = server_env_for(REPO)
        env["URBANSTACK_TEMPORAL_INSTANCE_LIMIT"] = str(INSTANCE_LIMIT)
        port = free_port()
        store = tmpdir / "temporal.db"
        server = Server(
            "urbanstack serve", _urbanstack_cmd(port, store), port, tmpdir / "server.log", env
        )
        try:
            server.wait_ready()
            rss_idle = server.status_kb("VmRSS") or 0
            bodies = {g.key: g.bodies() for g in groups}
            print(f"loading {total_rows:,} rows ...", file=sys.stderr, flush=True)
            wait_quiet(server.proc.pid, args.quiet_wait)
            with profiled(server.proc.pid, args.py_spy, "load"):
                all_meter = CpuMeter(server.proc.pid)
                for g in groups:
                    meter = CpuMeter(server.proc.pid)
                    seconds, failed = post_all(port, bodies[g.key])
                    fig = LoadFigure(
                        g.label, g.rows, len(bodies[g.key]), seconds, meter.read(), failed
                    )
                    loads.append(fig)
                    problems += [f"load {g.key}: {f}" for f in failed[:3]]
                    print(f"  {g.key}: {fig.rate:,.0f} rows/s", file=sys.stderr, flush=True)
                total_s = sum(f.seconds for f in loads)
                loads.append(
                    LoadFigure(
                        "all groups",
                        total_rows,
                        sum(map(len, bodies.values())),
                        total_s,
                        all_meter.read(),
                        [],
                    )
                )
            del bodies
            db_bytes = sum(f.stat().st_size for f in tmpdir.glob("temporal.db*"))
            rss_loaded = server.status_kb("VmRSS") or 0
            for g in groups:
                got = stored_rows(port, g)
                if got != g.rows:
                    problems.append(f"group {g.key}: server counts {got} instances, sent {g.rows}")
            notes.append(
                f"Store after the load: {db_bytes / 2**20:,.0f} MB (db + wal) = "
                f"{db_bytes / total_rows:,.0f} bytes/row; server RSS {rss_idle / 1024:,.0f} MB "
                f"idle, {rss_loaded / 1024:,.0f} MB after the load; instance counts checked "
                "with aggregated totalCount per group."
            )
            for work in works:
                run = runs[work.key] = Run()
                status, _, answer = request(port, "GET", work.sample)
                found = [] if status != 200 else work.validate(json.loads(answer))
                if status != 200 or found:
                    run.blocked = f"GET {work.sample} -> {status} {found or answer[:300]!r}"
                    problems.append(f"{work.title}: {run.blocked[:600]}")
                    if status != 200:
                        continue
                run.answer_bytes = len(answer)
                wait_quiet(server.proc.pid, args.quiet_wait)
                print(f"  {work.key} ({duration} s) ...", file=sys.stderr, flush=True)
                wrk_env = {**work.env, "BENCH_DATA": str(data), "BENCH_EXPECT": "200"}
                with profiled(server.proc.pid, args.py_spy, work.key):
                    meter = CpuMeter(server.proc.pid)
                    run.result = run_wrk(work.script, port, duration, wrk_env)
                    run.cpu = meter.read()
                if not run.result.ok:
                    problems.append(f"{work.title}: {run.result.problem}")
                    if run.result.bad_sample:
                        problems.append(f"   first bad answer: {run.result.bad_sample[:400]}")
                print(
                    f"    {run.result.rps:,.0f} req/s, p50 {run.result.p50_ms:.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
            hwm = server.status_kb("VmHWM") or 0
            notes.append(f"Server VmHWM at the end: {hwm / 1024:,.0f} MB.")
        finally:
            server.stop()
        if server.exit_code not in (0, -signal.SIGTERM):
            problems.append(f"server exit code {server.exit_code}: {server.log_tail(10)}")
        problems += [f"server log: {line[:300]}" for line in server.log_problems()[:5]]

        print("reference: raw SQLite inserts ...", file=sys.stderr, flush=True)
        batches = raw_batches(groups)
        raw: dict[str, float] = {}
        for one in (True, False):
            wait_quiet(-1, args.quiet_wait)
            raw["one_txn" if one else "per_body"] = raw_sqlite(
                tmpdir / "raw.db", batches, sync, one=one
            )
        raw_bytes = sum(f.stat().st_size for f in tmpdir.glob("raw.db*"))
        server_rate = loads[-1].rate
        refs.append(
            f"raw SQLite executemany, same {total_rows:,} rows, attr_instances shape (WITHOUT "
            f"ROWID, WAL, synchronous={sync}): {raw['one_txn']:,.0f} rows/s in 1 transaction, "
            f"{raw['per_body']:,.0f} rows/s in {len(batches):,} (1 per POST body)"
        )
        refs.append(
            f"server bulk load {server_rate:,.0f} rows/s = {100 * server_rate / raw['one_txn']:.0f}"
            f"% of raw 1-txn, {100 * server_rate / raw['per_body']:.0f}% of raw per-body; raw "
            f"store {raw_bytes / 2**20:,.0f} MB = {raw_bytes / total_rows:,.0f} bytes/row"
        )

    print(render(header, loads, works, runs, refs, notes, problems))
    failed = bool(problems) or any(f.rate < LOAD_TARGET for f in loads if f.label[0] in "BCa")
    for work in works:
        r = runs.get(work.key, Run()).result
        failed |= r is None or not r.ok or (work.passes is not None and not work.passes(r))
    if args.json is not None:
        payload = {
            "load": [asdict(f) | {"rows_per_s": f.rate} for f in loads],
            "retrieval": {
                k: {**asdict(r.result), "cpu": r.cpu, "answer_bytes": r.answer_bytes}
                if r.result
                else {"blocked": r.blocked}
                for k, r in runs.items()
            },
            "raw_sqlite_rows_per_s": raw,
            "store_bytes": db_bytes,
            "synchronous": sync,
            "duration_s": duration,
            "groups": [[g.key, g.etype, g.entities, g.instances, g.per_body] for g in groups],
            "problems": problems,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
