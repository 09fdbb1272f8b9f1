"""Process tuning applied by `serve` and `demo`: the interpreter lock's switch interval,
the collector, and the CPU the event loop and the SQLite writer share."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from urbanstack import runtime
from urbanstack.ingest.mqtt_process import ClientConfig, run_client
from urbanstack.runtime import tune_process
from urbanstack.settings import Settings
from urbanstack.store.sqlite import SQLiteStore

ALL_CPUS = frozenset(os.sched_getaffinity(0))
several_cpus = pytest.mark.skipif(len(ALL_CPUS) < 2, reason="pinning needs 2 CPUs or more")


@pytest.fixture
def restored_process() -> Iterator[None]:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    yield
    sys.setswitchinterval(interval)
    gc.set_threshold(*thresholds)
    gc.unfreeze()
    os.sched_setaffinity(0, ALL_CPUS)
    runtime._starting_cpus = runtime._serving_cpu = None


def test_tune_process_sets_the_configured_switch_interval(restored_process: None) -> None:
    tune_process(Settings(switch_interval_ms=2.5))
    assert sys.getswitchinterval() == pytest.approx(0.0025)


def test_the_switch_interval_defaults_to_one_millisecond(
    restored_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("URBANSTACK_SWITCH_INTERVAL_MS", raising=False)
    tune_process(Settings.from_env())
    assert sys.getswitchinterval() == pytest.approx(0.001)


@pytest.mark.parametrize("value", ["0", "-1", "500"])
def test_a_switch_interval_out_of_range_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("URBANSTACK_SWITCH_INTERVAL_MS", value)
    with pytest.raises(ValueError, match="switch_interval_ms"):
        Settings.from_env()


@several_cpus
def test_the_event_loop_and_the_sqlite_writer_share_one_cpu(
    restored_process: None, tmp_path: Path
) -> None:
    tune_process(Settings(store=f"sqlite:///{tmp_path / 'x.db'}"))
    pinned = os.sched_getaffinity(0)
    assert len(pinned) == 1 and pinned <= ALL_CPUS
    (serving,) = pinned

    async def threads_cpus() -> tuple[set[int], set[int]]:
        store = SQLiteStore(tmp_path / "x.db")
        await store.open()
        try:
            writer = store._writer
            assert writer is not None and writer.native_id is not None
            reader = await store._read(None, lambda conn: os.sched_getaffinity(0))
            return os.sched_getaffinity(writer.native_id), reader
        finally:
            await store.close()

    writer_cpus, reader_cpus = asyncio.run(threads_cpus())
    assert writer_cpus == {serving}
    assert reader_cpus == ALL_CPUS  # readers run SQL without the interpreter lock


@several_cpus
@pytest.mark.parametrize(
    "settings",
    [
        Settings(store="sqlite:///unused.db", cpu_pinning="off"),
        Settings(store="postgresql://nobody@127.0.0.1:1/none"),
    ],
    ids=["off", "postgresql"],
)
def test_no_pinning_when_off_or_without_a_writer_thread(
    restored_process: None, settings: Settings
) -> None:
    tune_process(settings)
    assert os.sched_getaffinity(0) == ALL_CPUS
    assert runtime.starting_cpus() is None


def test_an_unknown_pinning_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URBANSTACK_CPU_PINNING", "always")
    with pytest.raises(ValueError, match="cpu_pinning"):
        Settings.from_env()


@several_cpus
def test_the_mqtt_client_process_runs_on_every_cpu_of_a_pinned_parent(
    restored_process: None,
) -> None:
    os.sched_setaffinity(0, {max(ALL_CPUS)})  # as the pinned event loop that starts it
    config = ClientConfig(
        host="127.0.0.1",
        port=1,  # nothing listens: the child retries, which is all this test needs
        tls=False,
        username=None,
        password=None,
        client_id="affinity-test",
        receive_maximum=10,
        shared_group="",
        reconnect_min_s=5.0,
        reconnect_max_s=5.0,
        cpus=ALL_CPUS,
    )
    context = multiprocessing.get_context("spawn")
    to_parent_in, to_parent = context.Pipe(duplex=False)
    from_parent, to_child = context.Pipe(duplex=False)
    child = context.Process(target=run_client, args=(config, to_parent, from_parent), daemon=True)
    child.start()
    try:
        deadline = time.monotonic() + 20
        while os.sched_getaffinity(child.pid) != ALL_CPUS:
            assert time.monotonic() < deadline, os.sched_getaffinity(child.pid)
            time.sleep(0.05)
    finally:
        child.kill()
        child.join(10)
        for conn in (to_parent_in, to_parent, from_parent, to_child):
            conn.close()


def test_the_current_cpu_is_one_the_process_may_use() -> None:
    assert runtime._current_cpu() in ALL_CPUS


@several_cpus
def test_a_sandbox_that_forbids_pinning_leaves_the_process_unpinned(
    restored_process: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(pid: int, cpus: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setaffinity", forbidden)
    tune_process(Settings(store=f"sqlite:///{tmp_path / 'x.db'}"))
    monkeypatch.undo()

    assert runtime.serving_cpu() is None and runtime.starting_cpus() is None
    assert os.sched_getaffinity(0) == ALL_CPUS
