"""Store benchmark: the same workloads on the SQLite and the PostgreSQL store, side by side.

    python bench/stores.py [--entities 100000] [--duration 10] [--queries 300]

For each store, a fresh ``urbanstack serve`` on a free 127.0.0.1 port: SQLite in a
temporary file (``synchronous=FULL``), PostgreSQL 15 + PostGIS in a throw-away cluster
started here with production-like durability (fsync and synchronous commits on). Then:

1. batch upsert: the entities of bench/broker.py (``--entities``, 5 types, 1,000 per
   request over 2 connections), entities per second;
2. query by type plus a property value (``q=name=="<one entity's name>"``, limit 100),
   ``--queries`` sequential requests from one client: median and p95;
3. geo ``near`` (``maxDistance==500`` metres around random points of the data's area,
   one type, limit 100): median and p95;
4. retrieve by id (wrk, 10 connections, ``--duration`` s) with one API process, and for
   PostgreSQL with two (``--workers 2``): requests per second and the ratio.

Targets (issue 7, PostgreSQL store, one process): batch upsert ≥ 15,000 entities/s; both
queries' medians < 15 ms; two processes ≥ 1.5 × one process on retrieve by id.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import broker as harness
from bench.broker import HOST, REPO, TYPES, Server, free_port, request
from tests.postgres_cluster import PostgresCluster

API = "/ngsi-ld/v1"
TARGET_UPSERT = 15_000.0
TARGET_MEDIAN_MS = 15.0
TARGET_SCALING = 1.5


def serve(name: str, store: str, workdir: Path, workers: int = 1) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "urbanstack.cli", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--store", store, "--log-level", "warning", "--workers", str(workers)]
    server = Server(name, cmd, port, workdir / f"{name}.log", harness.server_env_for(REPO))
    server.wait_ready(60)
    return server


def timed(port: int, paths: list[str]) -> tuple[float, float, int]:
    """(median ms, p95 ms, results in the last answer) of sequential GETs."""
    times = []
    found = 0
    for path in paths:
        started = time.perf_counter()
        status, _, body = request(port, "GET", path)
        times.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
        found = body.count(b'"id"')
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], found


def workloads(port: int, dataset: harness.Dataset, queries: int, rng: random.Random) -> dict:
    names = []
    for _ in range(queries):
        i = rng.randrange(len(dataset.docs))
        etype = dataset.types[i]
        n = i // len(TYPES) + 1
        q = quote(f'name=="{etype} {n}"')
        names.append(f"{API}/entities?type={etype}&q={q}&limit=100")
    near = []
    for _ in range(queries):
        lon, lat = rng.uniform(107.5, 107.7), rng.uniform(16.4, 16.5)
        geo = quote(f"[{lon:.6f},{lat:.6f}]")
        near.append(
            f"{API}/entities?type={rng.choice(TYPES)}&georel=near%3BmaxDistance%3D%3D500"
            f"&geometry=Point&coordinates={geo}&limit=100"
        )
    by_value = timed(port, names)
    by_place = timed(port, near)
    return {"value": by_value, "near": by_place}


def cpu_by_group(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the API processes (the server and its children), the
    PostgreSQL cluster and wrk."""
    groups = {"api": 0.0, "postgres": 0.0, "wrk": 0.0}
    for pid, (comm, ppid, seconds) in harness.process_cpu_table().items():
        if server_pid in (pid, ppid):
            groups["api"] += seconds
        elif comm.startswith("postgres"):
            groups["postgres"] += seconds
        elif comm == "wrk":
            groups["wrk"] += seconds
    return groups


def retrieve(server: Server, duration: int, data_dir: Path) -> dict[str, float]:
    """Requests per second of wrk on GET /entities/{id}, and the CPU microseconds per
    request of the API processes and of PostgreSQL meanwhile."""
    env = {"BENCH_DATA": str(data_dir), "BENCH_EXPECT": "200"}
    before = cpu_by_group(server.proc.pid)
    result = harness.run_wrk("retrieve.lua", server.port, duration, env)
    after = cpu_by_group(server.proc.pid)
    count = max(1, result.requests)
    return {
        "rps": result.rps,
        **{f"{k}_us": (after[k] - before[k]) * 1e6 / count for k in ("api", "postgres")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000, help="entities [100000]")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk [10]")
    parser.add_argument("--queries", type=int, default=300, help="timed queries each [300]")
    args = parser.parse_args(argv)
    dataset = harness.make_dataset(args.entities)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="urbanstack-stores-") as tmp:
        workdir = Path(tmp)
        harness.write_wrk_data(workdir / "data", dataset)
        cluster = PostgresCluster(durable=True)
        cluster.start()
        try:
            stores = {
                "sqlite": f"sqlite:///{workdir / 'bench.db'}",
                "postgres": cluster.new_database(),
            }
            for name, url in stores.items():
                server = serve(name, url, workdir)
                try:
                    loaded = harness.load(server.port, dataset.bodies, args.entities)
                    if loaded.failures:
                        raise RuntimeError(f"{name} load failed: {loaded.failures[:2]}")
                    found = workloads(server.port, dataset, args.queries, random.Random(5))
                    one = retrieve(server, args.duration, workdir / "data")
                    results[name] = {"upsert": loaded.rate, **found, "retrieve": one["rps"]}
                    results[name]["retrieve_cpu"] = one
                finally:
                    server.stop()
                if name == "postgres":
                    two = serve("postgres-2", url, workdir, workers=2)
                    try:
                        two_result = retrieve(two, args.duration, workdir / "data")
                        results[name]["retrieve2"] = two_result["rps"]
                        results[name]["retrieve2_cpu"] = two_result
                    finally:
                        two.stop()
        finally:
            cluster.stop()
    print_table(results, args)
    pg = results["postgres"]
    met = (
        pg["upsert"] >= TARGET_UPSERT
        and pg["value"][0] < TARGET_MEDIAN_MS
        and pg["near"][0] < TARGET_MEDIAN_MS
        and pg["retrieve2"] >= TARGET_SCALING * pg["retrieve"]
    )
    return 0 if met else 1


def print_table(results: dict[str, dict], args: argparse.Namespace) -> None:
    sq, pg = results["sqlite"], results["postgres"]
    print(f"urbanstack store benchmark: {args.entities:,} entities of {len(TYPES)} types")
    print(f"   {harness._cpu()}; SQLite synchronous=FULL; PostgreSQL 15 fsync on, one cluster")
    print()
    print(f"{'workload':44} {'SQLite':>16} {'PostgreSQL':>16}  target (PostgreSQL)")
    print("-" * 100)

    def verdict(ok: bool) -> str:
        return "met" if ok else "not met"

    print(
        f"{'batch upsert, 1,000/request (entities/s)':44} {sq['upsert']:16,.0f} "
        f"{pg['upsert']:16,.0f}  >= {TARGET_UPSERT:,.0f}: {verdict(pg['upsert'] >= TARGET_UPSERT)}"
    )
    for key, label in (("value", "type + property value"), ("near", "geo near 500 m + type")):
        s, p = sq[key], pg[key]
        print(
            f"{label + ', median / p95 (ms)':44} {s[0]:7.1f} / {s[1]:6.1f} {p[0]:7.1f} / "
            f"{p[1]:6.1f}  median < {TARGET_MEDIAN_MS:.0f}: {verdict(p[0] < TARGET_MEDIAN_MS)}"
        )
    ratio = pg["retrieve2"] / pg["retrieve"] if pg["retrieve"] else 0.0
    print(
        f"{'retrieve by id, 1 process (req/s)':44} {sq['retrieve']:16,.0f} {pg['retrieve']:16,.0f}"
    )
    print(
        f"{'retrieve by id, 2 processes (req/s)':44} {'(one writer)':>16} {pg['retrieve2']:16,.0f}"
        f"  x{ratio:.2f} (>= x{TARGET_SCALING}): {verdict(ratio >= TARGET_SCALING)}"
    )
    print()
    print("CPU per retrieval (µs), API processes / PostgreSQL:")
    for label, cpu in (
        ("SQLite, 1 process", sq["retrieve_cpu"]),
        ("PostgreSQL, 1 process", pg["retrieve_cpu"]),
        ("PostgreSQL, 2 processes", pg["retrieve2_cpu"]),
    ):
        pg_part = f" / {cpu['postgres_us']:5.0f}" if label.startswith("PostgreSQL") else ""
        print(f"   {label:28} {cpu['api_us']:5.0f}{pg_part}")


if __name__ == "__main__":
    sys.exit(main())
