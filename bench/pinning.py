"""Pinning benchmark: the same workloads with ``URBANSTACK_CPU_PINNING=auto`` and ``off``,
alternating, on one database.

This machine's noise between two runs of the same code is as large as the effect measured
(±30 %), so one run of each mode proves nothing. This runner loads 10,000 entities once,
then restarts ``urbanstack serve`` on that store for every run, alternating the two modes
round after round, and prints each run and the median per mode. Workloads: partial
attribute update, update of 3 attributes, retrieve by id (the broker benchmark's wrk
scripts, 10 connections, closed loop).

    python bench/pinning.py                 # 3 rounds, 8 s a run
    python bench/pinning.py --rounds 5 --duration 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.broker import (
    HOST,
    REPO,
    Server,
    _urbanstack_cmd,
    free_port,
    load,
    make_dataset,
    run_wrk,
    server_env_for,
    write_wrk_data,
)

MODES = ("auto", "off")
WORKLOADS = [
    ("partial attribute update", "update_attr.lua", "204"),
    ("update of 3 attributes", "update_attrs.lua", "204"),
    ("retrieve by id", "retrieve.lua", "200"),
]


def run_once(store: Path, data: Path, mode: str, script: str, expect: str, seconds: int) -> float:
    """One server start in ``mode``, one wrk run; requests per second."""
    env = server_env_for(REPO) | {"URBANSTACK_CPU_PINNING": mode}
    port = free_port()
    server = Server(f"urbanstack ({mode})", _urbanstack_cmd(port, store), port, data / "s.log", env)
    try:
        server.wait_ready()
        result = run_wrk(script, port, seconds, {"BENCH_DATA": str(data), "BENCH_EXPECT": expect})
    finally:
        server.stop()
    if result.problem:
        raise RuntimeError(f"{script} ({mode}): {result.problem}")
    return result.rps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode [3]")
    parser.add_argument("--duration", type=int, default=8, help="seconds a run [8]")
    parser.add_argument("--entities", type=int, default=10_000, help="entities loaded [10000]")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="urbanstack-pinning-") as tmp:
        return compare(Path(tmp), args.entities, args.rounds, args.duration)


def compare(work: Path, entities: int, rounds: int, seconds: int) -> int:
    """Load ``entities`` into a store under ``work``, then time every workload in both
    modes, alternating, ``rounds`` runs each; print the runs and medians."""
    store, data = work / "pinning.db", work / "data"
    dataset = make_dataset(entities)
    write_wrk_data(data, dataset)
    port = free_port()
    loader = Server(
        "loader", _urbanstack_cmd(port, store), port, work / "load.log", server_env_for(REPO)
    )
    try:
        loader.wait_ready()
        loaded = load(port, dataset.bodies, entities)
    finally:
        loader.stop()
    if loaded.failures:
        print(f"load failed: {loaded.failures[0]}", file=sys.stderr)
        return 1
    print(
        f"urbanstack pinning benchmark on {HOST}: {entities:,} entities, "
        f"{rounds} rounds of {seconds} s per mode, modes alternating"
    )
    for label, script, expect in WORKLOADS:
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(rounds):
            for mode in MODES:
                rates[mode].append(run_once(store, data, mode, script, expect, seconds))
        runs = "  ".join(
            f"{mode}: {' / '.join(f'{r:,.0f}' for r in rates[mode])}" for mode in MODES
        )
        auto, off = (statistics.median(rates[m]) for m in MODES)
        print(
            f"  {label:<28} median auto {auto:7,.0f}  off {off:7,.0f}  "
            f"({auto / off - 1:+.0%})   runs {runs}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
