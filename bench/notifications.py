"""Notification benchmark: a fixed-rate stream of updates, 100 subscriptions, a local receiver.

    python bench/notifications.py [--quick] [--rates 100,500,1000] [--duration 20] [--json out.json]

Starts ``urbanstack serve`` (harness of bench/broker.py), a notification receiver (a bare
ASGI app under uvicorn, its own process) and, per stream, an open-loop generator (asyncio,
its own process) that PATCHes entities at a fixed rate.  Every notified entity is checked
against the notifications the updates must cause, and timed from the moment its update was
sent to its arrival.  Then the matching cost: server CPU per update with 0, 100 and 1,000
extra type/id-scoped subscriptions that no update touches, and with unindexable ones.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import broker as harness
from bench.broker import API, HOST, NOISY_PCT, REPO, TYPES, Server, free_port, request

TARGET_RATE, TARGET_P99_MS, FLAT_MAX = 1000, 100.0, 1.25
CONNECTIONS = 64  # generator connections: a slow answer does not delay the next send
TEMP_SHARE = 0.25  # share of updates that also change temperature
DISTRICTS = 10
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "==": operator.eq}
Q_TERM = re.compile(r'(\w+)(>=|==|>|<)("?[\w.]+"?)')
COLUMNS = ("stream", "subs", "sent/s", "acked/s", "notified", "expected", "p50", "p99", "max")
COLUMNS += ("drain", "srv%", "rcv%", "gen%", "oth%")


# ------------------------------------------------------------------ data


@dataclass
class Update:
    seq: int
    eid: str
    etype: str
    level: float
    temp: float | None

    def body(self) -> str:
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1748736000 + self.seq // 1000))
        at += f".{self.seq % 1000:03d}Z"  # unique: no update rewrites an equal instance
        out = {"level": {"type": "Property", "value": self.level, "observedAt": at}}
        out["seq"] = {"type": "Property", "value": self.seq}
        if self.temp is not None:
            out["temperature"] = {"type": "Property", "value": self.temp, "observedAt": at}
        return json.dumps(out, separators=(",", ":"))


@dataclass
class Sub:
    """One subscription, and a model of which updates it must notify."""

    etype: str | None
    ids: tuple[str, ...] = ()
    pattern: str | None = None
    q: str | None = None
    watched: tuple[str, ...] | None = None
    fmt: str = "keyValues"
    attrs: tuple[str, ...] | None = ("seq", "level")
    id: str = ""

    def document(self, uri: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": "Subscription"}
        if self.ids:
            doc["entities"] = [{"id": i, "type": self.etype} for i in self.ids]
        elif self.pattern:
            doc["entities"] = [{"idPattern": self.pattern, "type": self.etype}]
        elif self.etype:
            doc["entities"] = [{"type": self.etype}]
        if self.watched:
            doc["watchedAttributes"] = list(self.watched)
        if self.q:
            doc["q"] = self.q
        doc["notification"] = {"format": self.fmt, "endpoint": {"uri": uri}}
        if self.attrs:
            doc["notification"]["attributes"] = list(self.attrs)
        return doc

    def fires(self, u: Update, static: dict[str, dict[str, Any]]) -> bool:
        if (self.ids and u.eid not in self.ids) or (self.etype and u.etype != self.etype):
            return False
        if self.pattern and not re.fullmatch(self.pattern, u.eid):
            return False
        changed = {"level", "seq"} if u.temp is None else {"level", "seq", "temperature"}
        if self.watched and not changed & set(self.watched):
            return False
        values = {**static[u.eid], "level": u.level, "temperature": u.temp}
        for name, op, raw in Q_TERM.findall(self.q or ""):
            value = values[name]
            if value is None or not OPS[op](value, raw.strip('"') if '"' in raw else float(raw)):
                return False
        return True


def make_entities(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` entities, ``count / 5`` of each type; district and capacity never change."""
    out = []
    for i in range(count):
        etype, n = TYPES[i % len(TYPES)], i // len(TYPES) + 1
        values = {
            "name": f"{etype} {n} on Le Loi street, Hue",
            "level": round(rng.uniform(0, 10), 1),
            "temperature": round(rng.uniform(10, 40), 1),
            "district": f"D{rng.randint(1, DISTRICTS)}",
            "capacity": rng.randint(0, 200),
            "battery": 0.9,
            "seq": -1,
        }
        attrs = {k: {"type": "Property", "value": v} for k, v in values.items()}
        out.append({"id": f"urn:ngsi-ld:{etype}:{n}", "type": etype, **attrs})
    return out


def make_updates(entities: list[dict[str, Any]], first: int, count: int) -> list[Update]:
    """Updates ``first`` .. ``first + count - 1``, round robin over a fixed permutation of the
    entities (each changes every len(entities) updates): a new level each time, a new
    temperature for about a quarter of them."""
    order = random.Random(11).sample(entities, len(entities))
    out = []
    for seq in range(first, first + count):
        rng, e = random.Random(seq), order[seq % len(order)]
        temp = round(rng.uniform(10, 40), 1) if rng.random() < TEMP_SHARE else None
        out.append(Update(seq, e["id"], e["type"], round(rng.uniform(0, 10), 1), temp))
    return out


def make_subscriptions(entities: list[dict[str, Any]], rng: random.Random) -> list[Sub]:
    """100 subscriptions: 60 by type, 20 by id, 18 by idPattern + type, 2 on watchedAttributes
    only.  A q reads the level (in every update), static attributes, or the temperature
    only beside watchedAttributes temperature: the expectation never depends on the order
    in which the server applies updates."""
    subs: list[Sub] = []
    fmts = ["keyValues"] * 3 + ["normalized", "concise"]
    attrs = [("seq", "level"), ("seq", "level"), ("seq",), ("seq", "level", "temperature"), None]

    def some(etype: str | None, **kw: Any) -> Sub:
        return Sub(etype, fmt=rng.choice(fmts), attrs=rng.choice(attrs), **kw)

    def level_q() -> str:
        a = round(rng.uniform(0, 8), 1)
        return rng.choice([f"level>{a + 2:.1f}", f"level>={a:.1f};level<{a + 2:.1f}"])

    for etype in TYPES:
        a, d = rng.uniform(0, 7), f'district=="D{rng.randint(1, DISTRICTS)}"'
        subs += [some(etype), some(etype, q=d), some(etype, q=f"capacity>{rng.randint(100, 190)}")]
        subs += [some(etype, q=f"level>{rng.uniform(4, 9.5):.1f}") for _ in range(4)]
        subs.append(some(etype, q=f"level>={a:.1f};level<{a + 3:.1f}", watched=("level",)))
        subs.append(some(etype, q=f"level>{rng.uniform(2, 6):.1f};{d}"))
        for _ in range(2):
            q = f"temperature>{rng.uniform(15, 35):.1f}"
            subs.append(some(etype, q=q, watched=("temperature",)))
        subs.append(some(etype, watched=("battery",)))  # battery never changes: never fires
    for k in range(20):
        etype = TYPES[k % len(TYPES)]
        mine = [e["id"] for e in entities if e["type"] == etype]
        ids = tuple(rng.sample(mine, min(len(mine), rng.randint(1, 5))))
        subs.append(some(etype, ids=ids, q=level_q() if k % 2 else None))
    patterns = [r"\d*[37]", r"\d{2}", r".*5", r"1\d*", r"\d*0", r"[2-4]\d"]
    for k in range(18):
        etype = TYPES[k % len(TYPES)]
        pattern = f"urn:ngsi-ld:{etype}:{patterns[k % len(patterns)]}"
        subs.append(some(etype, pattern=pattern, q=level_q() if k % 3 == 0 else None))
    subs.append(Sub(None, watched=("temperature",), attrs=("seq", "temperature")))
    subs.append(Sub(None, watched=("temperature",), q="temperature>30.0", fmt="normalized"))
    return subs


def extra_subscriptions(count: int, start: int, indexed: bool) -> list[Sub]:
    """Subscriptions no update touches: half on unused types, half on unused ids of the
    updated types (indexed), or on unused watchedAttributes only (``indexed=False``)."""

    def one(k: int, etype: str) -> Sub:
        if not indexed:
            return Sub(None, watched=(f"unused{k}",))
        return Sub(f"Unused{k}") if k % 2 else Sub(etype, ids=(f"urn:ngsi-ld:{etype}:unused-{k}",))

    return [one(k, TYPES[k % len(TYPES)]) for k in range(start, start + count)]


# ------------------------------------------------------------------ receiver (own process)

_RECEIVED: dict[str, list[list[Any]]] = {}
_STATE = {"requests": 0, "entities": 0}
_CLIENTS: set[int] = set()  # client ports: the connections the server opened


async def receiver(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI app.  POST: record [entity id, seq, level, arrival] per notified entity; GET
    /records: answer and forget them; any other GET: the count of notified entities."""
    if scope["type"] != "http":
        return
    arrival = time.monotonic()
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    status, body = 200, b""
    if scope["method"] == "POST":
        note = orjson.loads(b"".join(chunks))
        _STATE["requests"] += 1
        _CLIENTS.add(scope["client"][1])
        rows = _RECEIVED.setdefault(note.get("subscriptionId", "?"), [])
        for e in note.get("data", []):
            seq, level = (
                v["value"] if isinstance(v, dict) else v for v in (e["seq"], e.get("level"))
            )
            rows.append([e.get("id"), seq, level, arrival])
            _STATE["entities"] += 1
        status = 204
    elif scope["path"] == "/records":
        body = orjson.dumps({**_STATE, "connections": len(_CLIENTS), "subs": _RECEIVED})
        _RECEIVED.clear()
        _CLIENTS.clear()
        _STATE.update(requests=0, entities=0)
    else:
        body = str(_STATE["entities"]).encode()
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------ generator (own process)


async def _generate(plan: dict[str, Any]) -> dict[str, Any]:
    """Send plan["updates"] (path, body) at plan["rate"]/s over CONNECTIONS keep-alive
    connections, open loop: update i is due at t0 + i / rate, whatever the answers do."""
    port, rate = plan["port"], plan["rate"]
    head = "PATCH {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}"
    reqs = [(head.format(p, len(b)) + "\r\n\r\n" + b).encode() for p, b in plan["updates"]]
    n = len(reqs)
    sent, acked, status = [0.0] * n, [0.0] * n, [0] * n
    queue: asyncio.Queue[int | None] = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        used = time.monotonic()
        while (i := await queue.get()) is not None:
            sent[i] = time.monotonic()
            if sent[i] - used > 2.0:  # uvicorn closes keep-alive connections idle for 5 s
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
            try:
                writer.write(reqs[i])
                answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                status[i] = int(answer[9:12])
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", answer)
                if length and int(length[1]):
                    await reader.readexactly(int(length[1]))
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                status[i] = -1
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
            acked[i] = used = time.monotonic()
        writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(CONNECTIONS)]
    await asyncio.sleep(0.2)  # connections open
    cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    t0 = time.monotonic() + 0.01
    print("START", flush=True)
    i = 0
    while i < n:
        due = min(n, int((time.monotonic() - t0) * rate) + 1)
        while i < due:
            queue.put_nowait(i)
            i += 1
        await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0
    return {"t0": t0, "sent": sent, "acked": acked, "status": status, "cpu": cpu}


# ------------------------------------------------------------------ a stream


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)] if ordered else float("nan")


def cpu_now(pids: tuple[int, ...]) -> list[float]:
    """CPU seconds of each process (0 once gone), then of the machine minus this runner."""
    tick, out = os.sysconf("SC_CLK_TCK"), []
    for pid in pids:
        try:
            after = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out.append((int(after[11]) + int(after[12])) / tick)
        except (OSError, IndexError, ValueError):
            out.append(0.0)
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    own = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    return [*out, (sum(fields) - fields[3] - fields[4]) / tick - own]


@dataclass
class Stream:
    """What one fixed-rate stream measured, and what the receiver got."""

    label: str
    rate: int
    subscriptions: int
    updates: int = 0
    sent_rate: float = 0.0
    acked_rate: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    lag_p99_ms: float = 0.0  # send - schedule: the generator (or the server) falling behind
    ack_p50_ms: float = 0.0
    ack_p99_ms: float = 0.0
    expected: int = 0
    received: int = 0
    lost: int = 0
    extra: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    wrong_content: int = 0
    requests: int = 0
    connections: int = 0
    notified_rate: float = 0.0  # entities that arrived before the last answer, per second
    expected_rate: float = 0.0  # what the acknowledged updates should cause, per second
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    pending_at_end: int = 0
    drain_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core during the load
    server_ms_per_update: float = 0.0  # server CPU, first update to last notification

    @property
    def ok(self) -> bool:
        """Every update answered 204; no notification lost, extra, out of order or wrong."""
        bad = self.lost or self.extra or self.out_of_order or self.wrong_content
        return self.statuses.get("204", 0) == self.updates and not bad

    @property
    def sustained(self) -> bool:
        return self.ok and self.acked_rate >= 0.99 * self.rate


def run_stream(ctx: dict[str, Any], label: str, rate: int, seconds: float) -> Stream:
    """Send ``rate * seconds`` updates open loop, wait for every notification, check them."""
    server, rport, tmp, subs = ctx["server"], ctx["rport"], ctx["tmp"], ctx["subs"]
    updates = make_updates(ctx["entities"], ctx["next_seq"], int(rate * seconds))
    ctx["next_seq"] += len(updates)
    plan, out = tmp / "plan.json", tmp / "generated.json"
    bodies = [(f"{API}/entities/{quote(u.eid, safe=':')}/attrs", u.body()) for u in updates]
    plan.write_text(json.dumps({"port": server.port, "rate": rate, "updates": bodies}))
    harness.wait_quiet(server.proc.pid, ctx["quiet_wait"])
    print(f"  {label}: {len(updates):,} updates at {rate:,}/s ...", file=sys.stderr, flush=True)
    cmd = [sys.executable, __file__, "_generate", str(plan), str(out)]
    gen = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    harness._CHILDREN.append(gen)
    assert gen.stdout is not None
    if gen.stdout.readline().strip() != b"START":
        raise RuntimeError(f"the generator did not start ({gen.wait(30)})")
    pids = (server.proc.pid, ctx["receiver"].proc.pid)
    cpu0, wall0 = cpu_now(pids), time.monotonic()
    spy = None
    if ctx["py_spy"] and label.startswith("stream"):
        spy_cmd = [
            "py-spy",
            "record",
            "-p",
            str(server.proc.pid),
            "-d",
            str(max(1, int(seconds))),
            "-r",
        ]
        spy_cmd += ["250", "--nonblocking", "-f", "raw", "-o", f"{ctx['py_spy']}/{rate}.txt"]
        spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gen.wait(seconds * 20 + 120)
    cpu1, wall = cpu_now(pids), time.monotonic() - wall0
    if gen.returncode != 0 or not out.exists():
        raise RuntimeError(f"the generator failed ({gen.returncode})")
    g = json.loads(out.read_text())
    res = Stream(label, rate, len(subs), len(updates))
    for code in g["status"]:
        res.statuses[str(code)] = res.statuses.get(str(code), 0) + 1
    done = {u.seq for u, code in zip(updates, g["status"], strict=True) if code == 204}
    static = ctx["static"]
    expected = {(s.id, u.seq) for u in updates if u.seq in done for s in subs if s.fires(u, static)}
    # wait for every expected notification, then 1 s more for extras; give up after 20 s
    # without progress
    last_change, last_count, reached = time.monotonic(), -1, None
    while time.monotonic() - last_change < 20:
        count = int(request(rport, "GET", "/count")[2])
        if count != last_count:
            last_change, last_count = time.monotonic(), count
        reached = reached or (time.monotonic() if count >= len(expected) else None)
        if reached is not None and time.monotonic() - reached > 1.0:
            break
        time.sleep(0.05)
    server_cpu = cpu_now(pids)[0] - cpu0[0]
    if spy is not None:
        spy.wait(60)
    got = orjson.loads(request(rport, "GET", "/records")[2])
    by_seq = {u.seq: u for u in updates}
    sent = {u.seq: g["sent"][k] for k, u in enumerate(updates)}
    first, last_ack = g["t0"], max(g["acked"])
    seen: dict[tuple[str, int], float] = {}
    arrivals = []
    for sub_id, rows in got["subs"].items():
        newest: dict[str, int] = {}
        for eid, seq, level, arrival in rows:
            arrivals.append(arrival)
            u = by_seq.get(seq)
            if u is None or (sub_id, seq) not in expected:
                res.extra += 1
                continue
            res.wrong_content += eid != u.eid or (level is not None and level != u.level)
            res.out_of_order += seq < newest.get(eid, -1)
            newest[eid] = max(seq, newest.get(eid, -1))
            res.duplicates += (sub_id, seq) in seen
            seen.setdefault((sub_id, seq), arrival)
    latencies = [1000 * (t - sent[seq]) for (_, seq), t in seen.items()]
    res.sent_rate = len(updates) / (max(g["sent"]) - first + 1 / rate)
    res.acked_rate = len(done) / (last_ack - first)
    res.lag_p99_ms = pct([1000 * (t - first - k / rate) for k, t in enumerate(g["sent"])], 99)
    acks = [1000 * (a - s) for a, s in zip(g["acked"], g["sent"], strict=True)]
    res.ack_p50_ms, res.ack_p99_ms = pct(acks, 50), pct(acks, 99)
    res.expected, res.received, res.lost = len(expected), len(arrivals), len(expected) - len(seen)
    res.requests, res.connections = got["requests"], got["connections"]
    res.notified_rate = sum(1 for t in arrivals if t <= last_ack) / (last_ack - first)
    res.expected_rate = len(expected) / (last_ack - first)
    if latencies:
        res.p50_ms, res.p99_ms, res.max_ms = pct(latencies, 50), pct(latencies, 99), max(latencies)
    res.pending_at_end = sum(1 for t in seen.values() if t > last_ack)
    res.drain_s = max(0.0, max(arrivals, default=last_ack) - last_ack)
    srv_pct, recv_pct, busy = (100 * (b - a) / wall for a, b in zip(cpu0, cpu1, strict=True))
    gen_pct = 100 * g["cpu"] / wall
    res.cpu = {"server": srv_pct, "receiver": recv_pct, "generator": gen_pct}
    res.cpu["other"] = max(0.0, busy - srv_pct - recv_pct - gen_pct)
    res.server_ms_per_update = 1000 * server_cpu / max(len(done), 1)
    summary = f"acked {res.acked_rate:,.0f}/s, p99 {res.p99_ms:.1f} ms, lost {res.lost}"
    print(f"    {summary}, server {srv_pct:.0f}% CPU", file=sys.stderr, flush=True)
    return res


def add_subscriptions(ctx: dict[str, Any], subs: list[Sub]) -> float:
    """Create ``subs`` through the API (setting their ids); the creation rate."""
    uri = f"http://{HOST}:{ctx['rport']}/notify"
    started = time.perf_counter()
    for sub in subs:
        body = orjson.dumps(sub.document(uri))
        status, headers, answer = request(ctx["port"], "POST", f"{API}/subscriptions", body)
        if status != 201:
            raise RuntimeError(f"subscription refused: {status} {answer[:300]!r} for {body!r}")
        sub.id = headers["location"].rsplit("/", 1)[1]
    return len(subs) / (time.perf_counter() - started) if subs else 0.0


# ------------------------------------------------------------------ report


def targets(streams: list[Stream], matching: list[Stream]) -> list[tuple[str, str, bool | None]]:
    """(what, measured, verdict) for every target and check; None: reported, not judged."""
    out: list[tuple[str, str, bool | None]] = []
    for s in streams:
        if s.rate == TARGET_RATE and s.subscriptions:
            measured = f"{s.acked_rate:,.0f}/s acknowledged, lost {s.lost}"
            out.append((f"{s.label}: {TARGET_RATE:,}/s sustained", measured, s.sustained))
            p99 = f"{s.p99_ms:.1f} ms"
            out.append((f"{s.label}: latency p99 < {TARGET_P99_MS:.0f} ms", p99, s.p99_ms < 100))
    base = matching[0].server_ms_per_update if matching else 0.0
    for s in matching[1:]:
        ratio = s.server_ms_per_update / base if base else float("nan")
        indexed = "unindexed" not in s.label
        what = f"matching: CPU/update {s.label} / +0" + (f" < {FLAT_MAX}" if indexed else "")
        measured = f"{s.server_ms_per_update:.3f} / {base:.3f} ms = {ratio:.2f}"
        out.append((what, measured, ratio < FLAT_MAX if indexed else None))
    for s in streams + matching:
        if not s.ok:
            measured = f"statuses {s.statuses}, lost {s.lost}, extra {s.extra}, out of order "
            measured += f"{s.out_of_order}, wrong {s.wrong_content}"
            out.append((f"{s.label}: every update 204, notifications exact", measured, False))
    return out


def _f(value: float, spec: str = ",.0f") -> str:
    return "-" if value != value else format(value, spec)


def render(head: list[str], streams: list[Stream], matching: list[Stream], notes: list[str]) -> str:
    row = "{:<22} {:>5} {:>7} {:>7} {:>9} {:>9} {:>7} {:>7} {:>6} {:>6} {:>5} {:>5} {:>5} {:>5}"
    out = [*head, "", row.format(*COLUMNS)]
    out.append(row.format("", "", "", "", "entity/s", "entity/s", "ms", "ms", "ms", "s", *[""] * 4))
    out.append("-" * 120)
    for s in streams + matching:
        if matching and s is matching[0]:
            out.append(f"matching cost: + subscriptions that no update touches, at {s.rate:,}/s")
        cells = [s.label, s.subscriptions, _f(s.sent_rate), _f(s.acked_rate), _f(s.notified_rate)]
        cells += [_f(s.expected_rate), _f(s.p50_ms, ".1f"), _f(s.p99_ms, ".1f")]
        cells += [_f(s.max_ms), f"{s.drain_s:.2f}"]
        cells += [f"{s.cpu[k]:.0f}" for k in ("server", "receiver", "generator", "other")]
        cells[-1] += "*" if s.cpu["other"] >= NOISY_PCT else ""
        out.append(row.format(*cells))
        out.append(
            f"     {s.updates:,} updates, statuses {s.statuses}; answers p50 {s.ack_p50_ms:.1f} / "
            f"p99 {s.ack_p99_ms:.1f} ms; send lag p99 {s.lag_p99_ms:,.0f} ms; server "
            f"{s.server_ms_per_update:.3f} CPU ms/update"
        )
        if s.subscriptions:
            out.append(
                f"     {s.received:,} notified entities in {s.requests:,} notifications "
                f"({s.received / max(s.requests, 1):.1f} each) over {s.connections:,} "
                f"connections; {s.expected:,} expected ({s.expected / s.updates:.2f}/update): "
                f"lost {s.lost}, extra {s.extra}, duplicates {s.duplicates}, out of order "
                f"{s.out_of_order}, wrong content {s.wrong_content}; {s.pending_at_end:,} "
                "arrived after the last answer"
            )
    out.append(
        "   latency: arrival at the receiver - the update's send; drain: last arrival - last "
        f"answer; CPU: % of one core during the load (* other >= {NOISY_PCT:.0f}%: noisy)"
    )
    out += ["", "Targets"]
    for what, measured, ok in targets(streams, matching):
        verdict = "-" if ok is None else ("PASS" if ok else "FAIL")
        out.append(f"   {what:<52} {measured:<40} {verdict}")
    return "\n".join([*out, "", *notes])


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke test: 2 s streams, 250 entities")
    add("--rates", default=None, help="updates/s of the streams [100,500,1000]")
    add("--duration", type=float, default=None, help="seconds per stream [20]")
    add("--entities", type=int, default=None, help="entities updated [1000]")
    add("--matching", default=None, help="extra indexed subscriptions [0,100,1000]")
    add("--match-rate", type=int, default=None, help="updates/s of the matching streams")
    add("--unindexed", type=int, default=None, help="unindexable subscriptions (ref) [1000]")
    add("--json", type=Path, default=None, help="also write the results here")
    add("--py-spy", default=None, help="py-spy record the server in each stream, into this dir")
    add("--quiet-wait", type=float, default=harness.QUIET_WAIT_S, help="seconds [60]")
    args = parser.parse_args(argv)
    quick = args.quick
    rates = [int(r) for r in (args.rates or ("1000" if quick else "100,500,1000")).split(",")]
    seconds = args.duration or (2.0 if quick else 20.0)
    entities_n = args.entities or (250 if quick else 1000)
    extras = [int(x) for x in (args.matching or ("0,1000" if quick else "0,100,1000")).split(",")]
    unindexed = args.unindexed if args.unindexed is not None else (0 if quick else max(extras))
    if entities_n < len(TYPES) or entities_n % len(TYPES):
        parser.error(f"--entities must be a positive multiple of {len(TYPES)}")

    rng = random.Random(20251124)
    entities = make_entities(entities_n, rng)
    subs = make_subscriptions(entities, rng)
    static = {e["id"]: {k: e[k]["value"] for k in ("district", "capacity")} for e in entities}
    env = harness.server_env_for(REPO)
    settings = {k: v for k, v in os.environ.items() if k.startswith("URBANSTACK_")}
    header = [
        "urbanstack notification benchmark",
        *(f"   {line}" for line in harness._versions(env)[:2]),
        f"   {harness._cpu()}; {entities_n:,} entities of {len(TYPES)} types; open-loop "
        f"generator, {CONNECTIONS} connections, PATCH .../attrs; receiver: bare ASGI app under "
        f"uvicorn; settings: {settings or 'defaults (synchronous FULL, notification batch 100)'}",
        f"   command: {' '.join([Path(sys.executable).name, *sys.argv])}",
    ]
    streams: list[Stream] = []
    matching: list[Stream] = []
    notes: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="urbanstack-notify-") as t,
        harness._terminate_on_sigterm(),
    ):
        tmp = Path(t)
        port, rport = free_port(), free_port()
        cmd = [sys.executable, "-m", "uvicorn", "bench.notifications:receiver", "--app-dir"]
        cmd += [str(REPO), "--host", HOST, "--port", str(rport), "--loop", "uvloop", "--http"]
        cmd += ["httptools", "--no-access-log", "--lifespan", "off", "--log-level", "warning"]
        recv = Server("receiver", cmd, rport, tmp / "receiver.log", env)
        cmd = harness._urbanstack_cmd(port, tmp / "n.db")
        server = Server("urbanstack", cmd, port, tmp / "n.log", env)
        ctx: dict[str, Any] = {
            "server": server, "port": port, "receiver": recv, "rport": rport, "tmp": tmp,
            "subs": [], "entities": entities, "static": static, "next_seq": 0,
            "quiet_wait": args.quiet_wait, "py_spy": args.py_spy,
        }  # fmt: skip
        try:
            recv.wait_ready()
            server.wait_ready()
            body = orjson.dumps(entities)
            status, _, answer = request(port, "POST", f"{API}/entityOperations/upsert", body)
            if status not in (201, 204):
                raise RuntimeError(f"load failed: {status} {answer[:300]!r}")
            run_stream(ctx, "warm-up", rates[0], 1.0)
            streams.append(run_stream(ctx, "no subscriptions", TARGET_RATE, seconds / 2))
            created = add_subscriptions(ctx, subs)
            ctx["subs"] = subs
            sample = make_updates(entities, 10**6, 10_000)
            per_update = sum(s.fires(u, static) for u in sample for s in subs) / len(sample)
            notes.append(
                f"{len(subs)} subscriptions (created at {created:,.0f}/s): 60 by type, 20 by id, "
                "18 by idPattern + type, 2 on watchedAttributes only; q on the changing level, on "
                f"static attributes and on temperature; {per_update:.2f} notified entities per "
                "update expected on average"
            )
            run_stream(ctx, "warm-up", rates[0], 1.0)
            for rate in rates:
                streams.append(run_stream(ctx, f"stream {rate:,}/s", rate, seconds))
            best = max(s.acked_rate for s in streams if s.subscriptions)
            match_rate = args.match_rate or (
                TARGET_RATE if best >= 0.99 * TARGET_RATE else max(10, int(best * 0.5) // 10 * 10)
            )
            if match_rate != TARGET_RATE:
                notes.append(
                    f"matching streams at {match_rate:,}/s, half the best rate the server "
                    f"sustained ({TARGET_RATE:,}/s is beyond it), so that they compare like "
                    "with like"
                )
            added: list[Sub] = []
            for extra in extras:
                more = extra_subscriptions(extra - len(added), len(added), indexed=True)
                rate = add_subscriptions(ctx, more)
                added += more
                ctx["subs"] = subs + added
                if more:
                    notes.append(
                        f"+{extra:,}: {len(more):,} more subscriptions created at {rate:,.0f}/s"
                    )
                label = f"+{extra:,} indexed"
                matching.append(run_stream(ctx, label, match_rate, min(seconds, 10.0)))
            if unindexed:
                for sub in added:
                    request(port, "DELETE", f"{API}/subscriptions/{sub.id}")
                ctx["subs"] = subs + extra_subscriptions(unindexed, 0, indexed=False)
                add_subscriptions(ctx, ctx["subs"][len(subs) :])
                label = f"+{unindexed:,} unindexed (ref)"
                matching.append(run_stream(ctx, label, match_rate, min(seconds, 10.0)))
        finally:
            server.stop()
            recv.stop()
        problems = server.log_problems()
        if problems:
            notes.append(f"!!! server log: {len(problems)} warning/error lines: {problems[0]}")
    print(render(header, streams, matching, notes))
    if args.json is not None:
        result = {"streams": [asdict(s) for s in streams], "notes": notes, "header": header}
        result["matching"] = [asdict(s) for s in matching]
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if problems or any(ok is False for *_, ok in targets(streams, matching)) else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_generate":
        import uvloop

        plan = json.loads(Path(sys.argv[2]).read_text())
        Path(sys.argv[3]).write_text(json.dumps(uvloop.run(_generate(plan))))
    else:
        sys.exit(main())
