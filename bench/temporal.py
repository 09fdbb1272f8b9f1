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
import http.client
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
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
START = datetime(2025, 1, 1, tzinfo=UTC)  # hour 0; entity n observes at hh:mm:ss = its offset
METHODS = ["totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq"]
PERIOD, PERIOD_HOURS = "P1D", 24  # aggregation period: 24 hourly instances a bucket
LAST_N, QUERY_LIMIT = 100, 10
INSTANCE_LIMIT = 20_000  # URBANSTACK_TEMPORAL_INSTANCE_LIMIT: 10k-instance answers in full
LOAD_TARGET = 50_000  # rows/s
STELLIO = "Stellio (8 vCPU): aggregated retrieval 137 / 86 / 42 req/s at 1k / 10k / 100k instances"
INSTANCE = '{"type":"Property","value":%s,"unitCode":"GQ","observedAt":"%s"}'
EXTRA = b'{"unitCode":"GQ"}'  # what the server keeps in attr_instances.extra
# group, entity type, entities, instances per entity, instances per POST body
FULL = [
    ("A", "AirQualitySensor", 10, 100, 100),
    ("B", "AirQualityStation", 10, 10_000, 5_000),
    ("C", "AirQualityObserved", 1_000, 1_000, 1_000),
]
QUICK = [
    FULL[0],
    ("B", "AirQualityStation", 3, 10_000, 5_000),
    ("C", "AirQualityObserved", 100, 1_000, 1_000),
]
_HOURS = [(START + timedelta(hours=h)).strftime("%Y-%m-%dT%H:") for h in range(10_000)]


def stamp(hour: int, offset: int = 0, ms: bool = False) -> str:
    """observedAt of an hour's instance (``offset`` seconds past the hour); ``ms``: as the
    server writes it."""
    return f"{_HOURS[hour]}{offset // 60:02d}:{offset % 60:02d}{'.000' if ms else ''}Z"


def micros(hour: int, offset: int) -> int:
    return (int(START.timestamp()) + hour * 3600 + offset) * 1_000_000


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
    offsets: list[int] = field(default_factory=list)  # seconds past each hour
    values: list[list[float]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.entities * self.instances

    @property
    def label(self) -> str:
        return f"{self.key}: {self.entities:,} x {self.instances:,} ({self.etype})"

    def fill(self, rng: random.Random, aligned: bool) -> None:
        """Ids, offsets (0 when ``aligned``) and values: a daily cycle around each sensor's
        level, with noise."""
        for n in range(1, self.entities + 1):
            self.ids.append(f"urn:ngsi-ld:{self.etype}:{self.key}{n:05d}")
            self.offsets.append(0 if aligned else rng.randrange(3600))
            level = rng.uniform(8.0, 35.0)
            cycle = [1 + 0.35 * math.sin(2 * math.pi * (h - 8) / 24) for h in range(24)]
            self.values.append(
                [round(level * cycle[h % 24] + rng.gauss(0, 3), 1) for h in range(self.instances)]
            )

    def bodies(self) -> list[bytes]:
        """POST /temporal/entities bodies of ``per_body`` instances, entity after entity."""
        out = []
        for entity_id, offset, values in zip(self.ids, self.offsets, self.values, strict=True):
            head = f'{{"id":"{entity_id}","type":"{self.etype}","{ATTR}":['
            for lo in range(0, self.instances, self.per_body):
                hours = range(lo, min(lo + self.per_body, self.instances))
                inst = ",".join(INSTANCE % (values[h], stamp(h, offset)) for h in hours)
                out.append((head + inst + "]}").encode())
        return out

    def raw_batches(self, eid: int, iid: int, now: int) -> list[list[tuple[Any, ...]]]:
        """The same rows as the server's attr_instances rows, one list per POST body."""
        out = []
        for n, (o, v) in enumerate(zip(self.offsets, self.values, strict=True)):
            for lo in range(0, self.instances, self.per_body):
                hours = range(lo, min(lo + self.per_body, self.instances))
                first = iid + n * self.instances
                row = (1, now, now, 0, 1)  # has_observed, created, modified, kind, vt
                key = (eid + n, 1, "")  # eid, pid, ds (the default dataset)
                out.append(
                    [(*key, micros(h, o), first + h, *row, v[h], None, EXTRA) for h in hours]
                )
        return out


def make_groups(spec: list[tuple[str, str, int, int, int]], aligned: bool) -> list[Group]:
    rng = random.Random(20251101)
    groups = [Group(*s) for s in spec]
    for group in groups:
        group.fill(rng, aligned)
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
    aimed: bool = False  # whether the 50,000 rows/s target applies (bulk bodies, not group A)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and (not self.aimed or self.rate >= LOAD_TARGET)


def post_all(port: int, bodies: list[bytes]) -> tuple[float, list[str]]:
    """POST every body to /temporal/entities over LOAD_CLIENTS keep-alive connections."""
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
    """Instances the server holds for the group (at most 1,000 entities): totalCount over
    the whole time line."""
    params = {"type": group.etype, "attrs": ATTR, "timerel": "after", "limit": 1000}
    params |= {"timeAt": "2000-01-01T00:00:00Z", "options": "aggregatedValues"}
    path = f"{API}/temporal/entities?{urlencode(params)}&aggrMethods=totalCount"
    status, _, body = request(port, "GET", path)
    page = json.loads(body) if status == 200 else None
    return None if page is None else sum(sum(b[0] for b in e[ATTR]["totalCount"]) for e in page)


# ------------------------------------------------------------------ raw SQLite reference

RAW_SCHEMA = """CREATE TABLE attr_instances (
    eid INTEGER NOT NULL, pid INTEGER NOT NULL, ds TEXT NOT NULL, observed INTEGER NOT NULL,
    iid INTEGER NOT NULL, has_observed INTEGER NOT NULL, created INTEGER NOT NULL,
    modified INTEGER NOT NULL, kind INTEGER NOT NULL, vt INTEGER NOT NULL, num, val,
    extra BLOB, PRIMARY KEY (eid, pid, ds, observed, iid)) WITHOUT ROWID"""


def raw_sqlite(path: Path, batches: list[list[tuple[Any, ...]]], sync: str, *, one: bool) -> float:
    """Rows/s of executemany into the attr_instances shape, in one transaction (``one``)
    or one per POST body; WAL, the server's synchronous setting and cache size."""
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", f"synchronous={sync}", "cache_size=-32768"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(RAW_SCHEMA)
        insert = "INSERT INTO attr_instances VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
        started = time.perf_counter()
        conn.execute("BEGIN")
        for batch in batches:
            conn.executemany(insert, batch)
            if not one:
                conn.execute("COMMIT")
                conn.execute("BEGIN")
        conn.execute("COMMIT")
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return sum(map(len, batches)) / seconds


# ------------------------------------------------------------------ answers


def check_instances(items: Any, g: Group, n: int, hours: range) -> list[str]:
    """Normalized instances of entity ``n`` for ``hours``, oldest first, with instanceId."""
    if not isinstance(items, list) or len(items) != len(hours):
        got = f"{len(items)} instances" if isinstance(items, list) else str(items)[:120]
        return [f"{g.ids[n]}: {got}, expected {len(hours)}"]
    for k, (h, inst) in enumerate(zip(hours, items, strict=True)):
        want = (g.values[n][h], stamp(h, g.offsets[n], ms=True))
        if (inst.get("value"), inst.get("observedAt")) != want:
            return [f"{g.ids[n]} instance {k}: {str(inst)[:160]}, expected {want}"]
        if not str(inst.get("instanceId", "")).startswith("urn:"):
            return [f"{g.ids[n]} instance {k} has no instanceId: {str(inst)[:160]}"]
    return []


def check_normalized(doc: Any, g: Group, last: int = 0) -> list[str]:
    """Every instance of entity 0, or the ``last`` ones, oldest first."""
    first = g.instances - last if last else 0
    return check_instances(doc.get(ATTR), g, 0, range(first, g.instances))


def check_values(doc: Any, g: Group) -> list[str]:
    """temporalValues of entity 0: [[value, observedAt], ...] for every instance."""
    got = doc.get(ATTR, {}).get("values")
    want = [[v, stamp(h, g.offsets[0], ms=True)] for h, v in enumerate(g.values[0])]
    if got != want:
        size = f"{len(got)} pairs" if isinstance(got, list) else str(got)[:120]
        return [f"temporalValues: {size}, expected {len(want)} starting {want[:1]}"]
    return []


def check_aggregates(doc: Any, g: Group) -> list[str]:
    """Entity 0, all eight methods: bucket count and bounds, totals, the first bucket."""
    agg = doc.get(ATTR)
    if not isinstance(agg, dict):
        return [f"no aggregated {ATTR}: {str(doc)[:200]}"]
    values, offset = g.values[0], g.offsets[0]
    buckets = math.ceil(len(values) / PERIOD_HOURS)
    problems = [
        f"{m}: {len(agg.get(m) or [])} buckets, expected {buckets}"
        for m in METHODS
        if len(agg.get(m) or []) != buckets
    ]
    if problems:
        return problems
    if (total := sum(b[0] for b in agg["totalCount"])) != len(values):
        problems.append(f"totalCount adds up to {total}, expected {len(values)}")
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
    bounds = [stamp(0, offset, ms=True), stamp(PERIOD_HOURS, offset, ms=True)]
    if agg["totalCount"][0][1:] != bounds:
        problems.append(f"first bucket bounds {agg['totalCount'][0][1:]}, expected {bounds}")
    return problems


def check_query(doc: Any, g: Group, day: int) -> list[str]:
    """A page of QUERY_LIMIT entities of the group, each with the day's 24 instances."""
    if not isinstance(doc, list) or len(doc) != QUERY_LIMIT:
        return [f"expected {QUERY_LIMIT} entities, got {str(doc)[:200]}"]
    index = {entity_id: n for n, entity_id in enumerate(g.ids)}
    for entity in doc:
        n = index.get(entity.get("id"))
        if n is None:
            return [f"entity {entity.get('id')!r} is not in group {g.key}"]
        if problems := check_instances(entity.get(ATTR), g, n, range(day * 24, day * 24 + 24)):
            return problems
    return []


# ------------------------------------------------------------------ workloads


@dataclass
class Work:
    """One wrk run, its precheck request, what the answer must hold, its target."""

    key: str
    title: str
    script: str
    env: dict[str, str]
    sample: str  # path of the precheck request
    validate: Callable[[Any], list[str]]
    min_rps: int = 0
    max_median_ms: float = 0.0
    stellio: str = ""

    @property
    def target(self) -> str:
        if self.min_rps:
            return f">= {self.min_rps:,} req/s"
        return f"median < {self.max_median_ms:.0f} ms" if self.max_median_ms else "-"

    def passes(self, r: WrkResult) -> bool | None:
        """Whether the figures meet the target; None when there is none."""
        if not (self.min_rps or self.max_median_ms):
            return None
        return r.rps >= self.min_rps and (not self.max_median_ms or r.p50_ms < self.max_median_ms)


def workloads(groups: dict[str, Group]) -> list[Work]:
    """Aggregated at 100 / 1k / 10k instances, normalized and temporalValues at 1k and
    10k, lastN, and the query by type and attrs."""
    a, b, c = groups["A"], groups["B"], groups["C"]
    agg = f"attrs={ATTR}&options=aggregatedValues&aggrMethods={','.join(METHODS)}"
    agg += f"&aggrPeriodDuration={PERIOD}"
    plain, last = f"attrs={ATTR}", f"attrs={ATTR}&lastN={LAST_N}"
    tv = f"attrs={ATTR}&options=temporalValues"
    aggr = "aggregated, 8 methods, P1D"
    rows: list[tuple[Any, ...]] = [  # key, title, group, query, check[, min rps, median]
        ("agg_a", aggr, a, agg, check_aggregates),
        ("agg_c", aggr, c, agg, check_aggregates, 1000, 0, "137 req/s at 1k"),
        ("agg_b", aggr, b, agg, check_aggregates, 300, 0, "86 req/s at 10k"),
        ("norm_c", "normalized", c, plain, check_normalized),
        ("values_c", "temporalValues", c, tv, check_values),
        ("norm_b", "normalized", b, plain, check_normalized),
        ("values_b", "temporalValues", b, tv, check_values),
        ("last_b", f"lastN={LAST_N}", b, last, partial(check_normalized, last=LAST_N), 0, 10.0),
    ]
    works = []
    for key, title, g, query, check, *rest in rows:
        env = {"BENCH_IDS": f"ids_{g.key}.txt", "BENCH_QUERY": query}
        sample = f"{API}/temporal/entities/{g.ids[0]}?{query}"
        title = f"{title}: {g.instances:,} inst ({g.key})"
        works.append(
            Work(key, title, "temporal_entity.lua", env, sample, partial(check, g=g), *rest)
        )
    window = urlencode({"timerel": "between", "timeAt": stamp(24), "endTimeAt": stamp(48)})
    env = {"BENCH_TYPE": c.etype, "BENCH_ATTRS": ATTR, "BENCH_LIMIT": str(QUERY_LIMIT)}
    sample = f"{API}/temporal/entities?type={c.etype}&attrs={ATTR}&limit={QUERY_LIMIT}&{window}"
    title = f"query type+attrs, 1-day window, limit={QUERY_LIMIT} (C)"
    check = partial(check_query, g=c, day=1)
    return [*works, Work("query_c", title, "temporal_query.lua", env, sample, check)]


# ------------------------------------------------------------------ profiling


@contextmanager
def profiled(pid: int, out_dir: Path | None, name: str) -> Iterator[None]:
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
            spy.wait(5)


# ------------------------------------------------------------------ report


@dataclass
class Run:
    """A retrieval workload's figures, or why it has none."""

    result: WrkResult | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    answer_bytes: int = 0
    wrong: list[str] = field(default_factory=list)  # what the sample answer got wrong
    solo_ms: float | None = None  # median of the sample request repeated by one client
    blocked: str | None = None

    def ok(self, work: Work) -> bool:
        r = self.result
        ok = not self.blocked and not self.wrong and r is not None and r.ok
        return ok and work.passes(r) is not False


@dataclass
class Report:
    """Everything measured; printed as one table, optionally saved as JSON."""

    header: list[str]
    loads: list[LoadFigure] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def failed(self, works: list[Work]) -> bool:
        bad_runs = not all(self.runs.get(w.key, Run()).ok(w) for w in works)
        return bool(self.problems) or bad_runs or not all(f.ok for f in self.loads)

    def render(self, works: list[Work]) -> str:
        out = [*self.header, "", f"Bulk load, timed: POST /temporal/entities, {LOAD_CLIENTS} conns"]
        row = "   {:<42} {:>9} {:>7} {:>8} {:>9} {:>6} {:>6}  {:<20} {}"
        titles = ["group", "rows", "bodies", "seconds", "rows/s", "server", "other", "target"]
        out.append(row.format(*titles, "verdict"))
        for f in self.loads:
            target = f">= {LOAD_TARGET:,} rows/s" if f.aimed else "-"
            verdict = ("PASS" if f.ok else "FAIL") if f.aimed or f.failures else "-"
            cells = [f"{f.rows:,}", f"{f.bodies:,}", f"{f.seconds:.2f}", f"{f.rate:,.0f}"]
            out.append(row.format(f.label, *cells, *_cells(f.cpu), target, verdict))
        out += ["", "Retrieval: GET one random entity of the group a request (query: type+attrs)"]
        row = "{:<2} {:<44} {:>7} {:>9} {:>9} {:>9} {:>8} {:>6} {:>6}  {:<16} {:<7} {}"
        titles = ["#", "workload", "req/s", "median", "p95", "1 client", "answer", "server"]
        titles.append("other")
        out += [row.format(*titles, "target", "verdict", "Stellio, 8 vCPU"), "-" * 148]
        for n, work in enumerate(works, 1):
            run = self.runs.get(work.key, Run())
            r = run.result
            if run.blocked or r is None or not r.ok:
                cells = ["BLOCKED" if run.blocked else "ERRORS", "", "", "", "", "", ""]
                out.append(row.format(n, work.title, *cells, work.target, "FAIL", work.stellio))
                out.append(f"   !!! {str(run.blocked or (r.problem if r else 'not run'))[:400]}")
                continue
            verdict = "-" if work.passes(r) is None else ("PASS" if run.ok(work) else "FAIL")
            verdict = "FAIL" if run.wrong else verdict
            cells = [f"{r.rps:,.0f}", f"{r.p50_ms:.1f} ms", f"{r.p95_ms:.1f} ms"]
            cells.append(f"{run.solo_ms:.1f} ms" if run.solo_ms is not None else "")
            cells += [f"{run.answer_bytes / 1024:,.0f} kB", *_cells(run.cpu), work.target]
            out.append(row.format(n, work.title, *cells, verdict, work.stellio))
            out += [f"   !!! wrong answer: {w[:300]}" for w in run.wrong[:3]]
            if r.requests < FEW_REQUESTS:
                out.append(f"   !!! only {r.requests} requests completed: figures not meaningful")
        out.append(
            "   median, p95: wrk, 10 connections; 1 client: median of the sample request "
            "repeated by one Python client, back to back (unloaded latency)\n"
            "   server / other CPU: % of one core used by the server / by processes other than "
            f"the server, wrk and this runner (* = NOISY, >= {NOISY_PCT:.0f}%)"
        )
        out += ["", *self.notes]
        if self.problems:
            out += ["", "!!! PROBLEMS", *(f"   {p}" for p in self.problems)]
        return "\n".join(out)


def _cells(cpu: dict[str, float]) -> list[str]:
    if not cpu:
        return ["", ""]
    noisy = "*" if cpu["other"] >= NOISY_PCT else ""
    return [f"{cpu['server']:.0f}%", f"{cpu['other']:.0f}%{noisy}"]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ running


def load_all(server: Server, groups: list[Group], report: Report, args: argparse.Namespace) -> None:
    """The timed load, group after group, then the stored counts checked."""
    pid, port = server.proc.pid, server.port
    bodies = {g.key: g.bodies() for g in groups}
    total_rows = sum(g.rows for g in groups)
    say(f"loading {total_rows:,} rows ...")
    wait_quiet(pid, args.quiet_wait)
    with profiled(pid, args.py_spy, "load"):
        all_meter = CpuMeter(pid)
        for g in groups:
            meter = CpuMeter(pid)
            seconds, failed = post_all(port, bodies[g.key])
            fig = LoadFigure(g.label, g.rows, len(bodies[g.key]), seconds, meter.read(), failed)
            fig.aimed = g.per_body >= 1000
            report.loads.append(fig)
            report.problems += [f"load {g.key}: {f}" for f in failed[:3]]
            say(f"  {g.key}: {fig.rate:,.0f} rows/s")
        seconds = sum(f.seconds for f in report.loads)
        count = sum(map(len, bodies.values()))
        fig = LoadFigure("all groups", total_rows, count, seconds, all_meter.read(), [], True)
        report.loads.append(fig)
    for g in groups:
        if (got := stored_rows(port, g)) != g.rows:
            report.problems.append(f"group {g.key}: the server counts {got} instances of {g.rows}")


def run_work(server: Server, work: Work, data: Path, report: Report, args: argparse.Namespace):
    """Precheck the request and its answer, wait for a quiet machine, run wrk."""
    run = report.runs[work.key] = Run()
    status, _, answer = request(server.port, "GET", work.sample)
    if status != 200:
        run.blocked = f"GET {work.sample} -> {status} {answer[:300]!r}"
        report.problems.append(f"{work.title}: BLOCKED: {run.blocked}")
        return
    run.wrong = work.validate(json.loads(answer))
    report.problems += [f"{work.title}: GET {work.sample}: {w}" for w in run.wrong]
    run.answer_bytes = len(answer)
    wait_quiet(server.proc.pid, args.quiet_wait)
    run.solo_ms = solo_median(server.port, work.sample, 1.0 if args.quick else 3.0)
    say(f"  {work.key} ({args.duration} s) ...")
    env = {**work.env, "BENCH_DATA": str(data), "BENCH_EXPECT": "200"}
    with profiled(server.proc.pid, args.py_spy, work.key):
        meter = CpuMeter(server.proc.pid)
        run.result = r = run_wrk(work.script, server.port, args.duration, env)
        run.cpu = meter.read()
    if not r.ok:
        report.problems.append(f"{work.title}: {r.problem}")
        if r.bad_sample:
            report.problems.append(f"   first bad answer: {r.bad_sample[:400]}")
    say(f"    {r.rps:,.0f} req/s, p50 {r.p50_ms:.1f} ms")


def solo_median(port: int, path: str, seconds: float) -> float:
    """Median latency (ms) of one request repeated back to back by one Python client."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline or len(times) < 5:
            started = time.perf_counter()
            request(port, "GET", path, conn=conn)
            times.append(time.perf_counter() - started)
    finally:
        conn.close()
    return 1000 * statistics.median(times)


def run_all(args: argparse.Namespace, groups: list[Group], works: list[Work], report: Report):
    """Start the server, load, run every workload, stop it; then the raw SQLite reference."""
    total_rows = sum(g.rows for g in groups)
    with tempfile.TemporaryDirectory(prefix="urbanstack-temporal-") as tmp:
        tmpdir = Path(tmp)
        data = tmpdir / "wrk-data"
        data.mkdir()
        for g in groups:
            (data / f"ids_{g.key}.txt").write_text("\n".join(g.ids) + "\n")
        days = range(groups[-1].instances // 24)
        windows = "".join(f"{stamp(24 * d)} {stamp(24 * d + 24)}\n" for d in days)
        (data / "windows.txt").write_text(windows)
        env = server_env_for(REPO) | {"URBANSTACK_TEMPORAL_INSTANCE_LIMIT": str(INSTANCE_LIMIT)}
        port = free_port()
        cmd = _urbanstack_cmd(port, tmpdir / "temporal.db")
        server = Server("urbanstack serve", cmd, port, tmpdir / "server.log", env)
        try:
            server.wait_ready()
            rss_idle = server.status_kb("VmRSS") or 0
            load_all(server, groups, report, args)
            size = report.facts["store_bytes"] = sum(
                f.stat().st_size for f in tmpdir.glob("temporal.db*")
            )
            rss_loaded = server.status_kb("VmRSS") or 0
            for work in works:
                run_work(server, work, data, report, args)
            hwm = server.status_kb("VmHWM") or 0
        finally:
            server.stop()
        if server.exit_code not in (0, -signal.SIGTERM):
            report.problems.append(f"server exit {server.exit_code}: {server.log_tail(10)}")
        report.problems += [f"server log: {line[:300]}" for line in server.log_problems()[:5]]

        say("reference: raw SQLite inserts ...")
        batches: list[list[tuple[Any, ...]]] = []
        for n, g in enumerate(groups):
            eid = 1 + sum(x.entities for x in groups[:n])
            batches += g.raw_batches(eid, 1 + sum(map(len, batches)), int(time.time() * 1e6))
        raw = report.facts["raw_rows_per_s"] = {}
        for one in (True, False):
            wait_quiet(-1, args.quiet_wait)
            key = "1 txn" if one else "per body"
            raw[key] = raw_sqlite(tmpdir / "raw.db", batches, args.sync, one=one)
        raw_size = sum(f.stat().st_size for f in tmpdir.glob("raw.db*"))
    rate = report.loads[-1].rate
    report.notes += [
        "References (same run, same machine)",
        f"   raw SQLite executemany of the same {total_rows:,} rows, attr_instances shape "
        f"(WITHOUT ROWID, WAL, synchronous={args.sync}): {raw['1 txn']:,.0f} rows/s in 1 "
        f"transaction, {raw['per body']:,.0f} rows/s in {len(batches):,} (1 per POST body)",
        f"   server bulk load {rate:,.0f} rows/s = {100 * rate / raw['1 txn']:.0f}% of raw in 1 "
        f"txn, {100 * rate / raw['per body']:.0f}% of raw per body",
        f"   {STELLIO} (published; other hardware)",
        "",
        f"Store after the load: {size / 2**20:,.0f} MB (db + wal) = {size / total_rows:,.0f} "
        f"bytes/row (raw SQLite: {raw_size / 2**20:,.0f} MB = {raw_size / total_rows:,.0f} "
        f"bytes/row); server RSS {rss_idle / 1024:,.0f} MB idle, {rss_loaded / 1024:,.0f} MB "
        f"after the load, VmHWM {hwm / 1024:,.0f} MB at the end; stored instances checked per "
        "group (aggregated totalCount).",
    ]


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run everything, print the table; 0 when every target passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--duration", type=int, default=None, help="seconds per workload [10]")
    add("--quick", action="store_true", help="smoke test: smaller groups, 2 s workloads")
    add("--json", type=Path, default=None, help="also write the results here")
    add("--quiet-wait", type=float, default=QUIET_WAIT_S, help="wait for an idle machine [60]")
    add("--aligned", action="store_true", help="every entity observes on the hour")
    add("--py-spy", type=Path, default=None, metavar="DIR", help="py-spy the server into DIR")
    args = parser.parse_args(argv)
    args.duration = args.duration or (2 if args.quick else 10)
    env_sync = os.environ.get("URBANSTACK_SQLITE_SYNCHRONOUS")
    args.sync = (env_sync or "FULL").upper()
    say("generating the histories ...")
    groups = make_groups(QUICK if args.quick else FULL, args.aligned)
    works = workloads({g.key: g for g in groups})
    report = Report(
        [
            "urbanstack temporal benchmark",
            *(f"   {line}" for line in _versions(server_env_for(REPO))),
            f"   {_cpu()}; wrk -t1 -c{CONNECTIONS} closed loop on {HOST}; {args.duration} s "
            f"per workload; SQLite synchronous={args.sync}{'' if env_sync else ' (default)'}",
            f"   groups {'; '.join(g.label for g in groups)}: {sum(g.rows for g in groups):,} "
            f"rows (one attribute, {ATTR}, one instance an hour from {stamp(0)}, "
            + ("all on the hour" if args.aligned else "each entity at its own minute and second")
            + "; unitCode GQ)",
            f"   aggregation period {PERIOD} ({PERIOD_HOURS} instances a bucket); the server "
            f"runs with URBANSTACK_TEMPORAL_INSTANCE_LIMIT={INSTANCE_LIMIT} so that normalized "
            "and temporalValues answer every instance (200, no 206)",
            f"   command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        ]
    )
    with _terminate_on_sigterm():
        run_all(args, groups, works, report)
    print(report.render(works))
    if args.json is not None:
        payload = {
            "load": [asdict(f) | {"rows_per_s": f.rate} for f in report.loads],
            "retrieval": {k: asdict(r) for k, r in report.runs.items()},
            **report.facts,
            "synchronous": args.sync,
            "duration_s": args.duration,
            "groups": [[g.key, g.etype, g.entities, g.instances, g.per_body] for g in groups],
            "problems": report.problems,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 1 if report.failed(works) else 0


if __name__ == "__main__":
    sys.exit(main())
