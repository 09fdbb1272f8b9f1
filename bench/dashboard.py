"""Dashboard benchmark: 5,000 entities on the map, then 100 updates a second through the API.

    python bench/dashboard.py [--entities 5000] [--rate 100] [--duration 20] [--json out.json]

Starts ``urbanstack serve`` on a free 127.0.0.1 port with a fresh temporary SQLite store,
loads the entities (batch upserts of 1,000; the Huế demo's types, at random places around
the city), opens the dashboard in Debian's headless Chromium through Playwright and prints:

- time to first render: navigation start to every marker drawn (``window.__dashboard``),
  and the part of it spent loading the entities;
- while a background thread PATCHes ``--rate`` updates a second for ``--duration`` seconds
  (each a unique value on one random entity): the update-apply lag, from just before the
  PATCH is sent to the moment the page applied it to the marker (its next animation frame;
  the canvas repaints in the frame after), and how many updates were coalesced (a newer
  value of the same entity arrived in the same frame);
- frame times (the gaps between animation frames) during the updates, and the JS heap.

Prints figures only: no targets, no pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.broker import free_port

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CHROMIUM = os.environ.get("URBANSTACK_BENCH_CHROMIUM", "/usr/bin/chromium")
BATCH = 1000
WEST, EAST, SOUTH, NORTH = 107.50, 107.66, 16.40, 16.52
#: share of each type among the entities (the rest are museums)
MIX = {
    "AirQualityObserved": 0.30,
    "TrafficFlowObserved": 0.24,
    "OffStreetParking": 0.16,
    "WeatherObserved": 0.12,
    "FloodMonitoring": 0.06,
    "PointOfInterest": 0.06,
    "AdministrativeArea": 0.02,
}
#: what an update changes, per type: attribute and a value generator
UPDATED = {
    "AirQualityObserved": ("pm25", lambda rnd: rnd.uniform(0, 300)),
    "TrafficFlowObserved": ("occupancy", lambda rnd: rnd.random()),
    "OffStreetParking": ("availableSpotNumber", lambda rnd: rnd.randint(0, 400)),
    "WeatherObserved": ("temperature", lambda rnd: rnd.uniform(15, 38)),
    "FloodMonitoring": ("currentLevel", lambda rnd: rnd.uniform(0, 4.5)),
    "PointOfInterest": ("visitorsToday", lambda rnd: rnd.randint(0, 20000)),
    "Museum": ("visitorsToday", lambda rnd: rnd.randint(0, 20000)),
}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def prop(value: Any, unit: str | None = None, observed: bool = True) -> dict[str, Any]:
    attr: dict[str, Any] = {"type": "Property", "value": value}
    if observed:
        attr["observedAt"] = now_iso()
    if unit:
        attr["unitCode"] = unit
    return attr


def make_entity(kind: str, n: int, rnd: random.Random) -> dict[str, Any]:
    """One entity of `kind` at a random place around Huế, with plausible values."""
    lon, lat = rnd.uniform(WEST, EAST), rnd.uniform(SOUTH, NORTH)
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:{kind}:bench-{n}",
        "type": kind,
        "name": {"type": "LanguageProperty", "languageMap": {"vi": f"Điểm {n}", "en": f"Site {n}"}},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
    }
    if kind == "AirQualityObserved":
        entity |= {
            "pm25": prop(rnd.uniform(5, 120), "GQ"),
            "pm10": prop(rnd.uniform(10, 200), "GQ"),
        }
        entity |= {"no2": prop(rnd.uniform(5, 80), "GQ"), "o3": prop(rnd.uniform(10, 120), "GQ")}
    elif kind == "TrafficFlowObserved":
        entity |= {"intensity": prop(rnd.randint(50, 2500)), "occupancy": prop(rnd.random())}
        entity |= {"averageVehicleSpeed": prop(rnd.uniform(5, 60), "KMH")}
        entity["congested"] = prop(False)
    elif kind == "OffStreetParking":
        total = rnd.randint(40, 400)
        entity |= {"totalSpotNumber": prop(total, observed=False)}
        entity |= {"availableSpotNumber": prop(rnd.randint(0, total))}
    elif kind == "WeatherObserved":
        entity |= {"temperature": prop(rnd.uniform(18, 36), "CEL")}
        entity |= {"relativeHumidity": prop(rnd.uniform(0.5, 1.0))}
        entity |= {"precipitation": prop(rnd.uniform(0, 30), "MMT")}
        entity |= {"windSpeed": prop(rnd.uniform(0, 12), "MTS")}
    elif kind == "FloodMonitoring":
        entity |= {"currentLevel": prop(rnd.uniform(0, 3), "MTR")}
        entity |= {
            f"alarmLevel{i}": prop(v, "MTR", observed=False)
            for i, v in ((1, 1.0), (2, 2.0), (3, 3.5))
        }
    elif kind in ("PointOfInterest", "Museum"):
        entity["visitorsToday"] = prop(rnd.randint(0, 5000))
    elif kind == "AdministrativeArea":
        d = 0.004
        ring = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
        entity["location"]["value"] = {"type": "Polygon", "coordinates": [ring]}
    return entity


def make_city(count: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    kinds = [kind for kind, share in MIX.items() for _ in range(int(count * share))]
    kinds += ["Museum"] * (count - len(kinds))
    return [make_entity(kind, n, rnd) for n, kind in enumerate(kinds)]


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env["URBANSTACK_STORE"] = f"sqlite:///{workdir / 'dashboard.db'}"
    env.setdefault("URBANSTACK_SQLITE_SYNCHRONOUS", "NORMAL")
    log = (workdir / "server.log").open("wb")
    cmd = [sys.executable, "-m", "urbanstack.cli", "serve", "--host", HOST, "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
    )
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "server.log").read_text())
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("urbanstack serve did not become healthy")


def load(url: str, entities: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as client:
        for i in range(0, len(entities), BATCH):
            reply = client.post("/ngsi-ld/v1/entityOperations/upsert", json=entities[i : i + BATCH])
            reply.raise_for_status()
    return time.perf_counter() - started


class Updater(threading.Thread):
    """Open-loop PATCHes at a fixed rate (sent from a small pool of connections, so a slow
    answer does not delay the next update); records (id, value) → wall-clock ms at sending."""

    WORKERS = 8

    def __init__(self, url: str, entities: list[dict[str, Any]], rate: float, duration: float):
        super().__init__(daemon=True)
        self.url = url
        self.targets = [e for e in entities if e["type"] in UPDATED]
        self.rate = rate
        self.duration = duration
        self.sent: dict[tuple[str, float], float] = {}
        self.errors = 0
        self.late = 0
        self.local = threading.local()
        self.lock = threading.Lock()

    def send(self, eid: str, attr: str, value: Any, unit: str | None) -> None:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(base_url=self.url, timeout=10)
        self.sent[(eid, value)] = time.time() * 1000
        reply = client.patch(f"/ngsi-ld/v1/entities/{eid}/attrs", json={attr: prop(value, unit)})
        if reply.status_code != 204:
            with self.lock:
                self.errors += 1

    def run(self) -> None:
        rnd = random.Random(7)
        interval = 1.0 / self.rate
        start = time.perf_counter()
        with ThreadPoolExecutor(self.WORKERS) as pool:
            for n in range(round(self.rate * self.duration)):
                wait = start + n * interval - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -interval:
                    self.late += 1
                entity = rnd.choice(self.targets)
                attr, gen = UPDATED[entity["type"]]
                value = gen(rnd)
                value = round(value, 6) if isinstance(value, float) else value
                unit = entity.get(attr, {}).get("unitCode")
                pool.submit(self.send, entity["id"], attr, value, unit)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    results: dict[str, Any] = {"entities": args.entities, "rate": args.rate}
    with tempfile.TemporaryDirectory(prefix="urbanstack-dash-") as tmp:
        proc, url = start_server(Path(tmp))
        try:
            city = make_city(args.entities, args.seed)
            results["load_s"] = load(url, city)
            print(f"loaded {len(city)} entities in {results['load_s']:.1f} s", flush=True)
            with sync_playwright() as pw:
                launch_args = ["--no-sandbox"] if os.geteuid() == 0 else []
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=launch_args
                )
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                started = time.perf_counter()
                page.goto(url + "/")
                page.wait_for_function(
                    "window.__dashboard && window.__dashboard.ready", timeout=120_000
                )
                wall = time.perf_counter() - started
                first = page.evaluate(
                    "({render: __dashboard.firstRenderMs, load: __dashboard.loadMs,"
                    " markers: __dashboard.markerCount(), entities: __dashboard.entityCount})"
                )
                results["first_render_ms"] = first["render"]
                results["load_in_page_ms"] = first["load"]
                results["goto_to_ready_s"] = wall
                results["markers"] = first["markers"]
                print(
                    f"first render: {first['render']:.0f} ms after navigation start "
                    f"({first['load']:.0f} ms loading entities), {first['markers']} markers "
                    f"of {first['entities']} entities; goto→ready {wall:.2f} s",
                    flush=True,
                )

                page.wait_for_timeout(1000)
                page.evaluate("__dashboard.startApplyLog(); __dashboard.startFrames()")
                updater = Updater(url, city, args.rate, args.duration)
                updater.start()
                updater.join(args.duration + 30)
                page.wait_for_timeout(2000)  # the last updates arrive
                frames = page.evaluate("__dashboard.stopFrames()")
                log = page.evaluate(
                    """() => __dashboard.takeApplyLog().map(([id, e, t]) => {
                        const attrs = ['pm25', 'occupancy', 'availableSpotNumber',
                                       'temperature', 'currentLevel', 'visitorsToday'];
                        const vals = attrs.filter((a) => e[a]).map((a) => e[a].value);
                        return [id, vals, t];
                    })"""
                )
                cost = page.evaluate(
                    "({apply: __dashboard.applyMs, summary: __dashboard.summaryMs,"
                    " batches: __dashboard.frameBatches, redraws: __dashboard.redraws()})"
                )
                heap = page.evaluate(
                    "performance.memory ? performance.memory.usedJSHeapSize : null"
                )
                browser.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    lags = []
    applied = set()
    for eid, values, t in log:
        for value in values:
            key = (eid, value)
            if key in updater.sent and key not in applied:
                applied.add(key)
                lags.append(t - updater.sent[key])
    sent = len(updater.sent)
    results["updates_sent"] = sent
    results["updates_applied"] = len(applied)
    results["update_errors"] = updater.errors
    results["late_sends"] = updater.late
    results["apply_lag_ms"] = summary(lags)
    results["frame_ms"] = summary(frames)
    results["long_frames_50ms"] = sum(1 for f in frames if f > 50)
    results["js_heap_mb"] = heap / 1e6 if heap else None
    results["page_errors"] = errors
    results["js_apply_ms_total"] = cost["apply"]
    results["js_summary_ms_total"] = cost["summary"]
    results["frame_batches"] = cost["batches"]
    results["canvas_redraws"] = cost["redraws"]
    lag, fr = results["apply_lag_ms"], results["frame_ms"]
    print(
        f"updates: {sent} sent at {args.rate}/s for {args.duration:.0f} s "
        f"({updater.errors} errors, {updater.late} sent late), {len(applied)} applied, "
        f"{sent - len(applied)} coalesced or missing",
        flush=True,
    )
    print(
        "update-apply lag (PATCH sent → applied to the marker), ms: "
        f"p50 {lag['p50']:.0f}  p95 {lag['p95']:.0f}  p99 {lag['p99']:.0f}  max {lag['max']:.0f}"
    )
    print(
        f"frame time during updates, ms ({fr['n']} frames, {1000 / fr['mean']:.0f} fps mean): "
        f"p50 {fr['p50']:.1f}  p95 {fr['p95']:.1f}  p99 {fr['p99']:.1f}  max {fr['max']:.1f}; "
        f"{results['long_frames_50ms']} frames over 50 ms"
    )
    print(
        f"page JS: {cost['apply']:.0f} ms applying changes in {cost['batches']} frame batches, "
        f"{cost['summary']:.0f} ms re-rendering tiles and alerts (whole run); "
        f"{cost['redraws']['count']} canvas repaints, {cost['redraws']['ms']:.0f} ms"
    )
    if heap:
        print(f"JS heap: {heap / 1e6:.0f} MB")
    if errors:
        print(f"page errors: {errors}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100.0, help="updates per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of updates")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
