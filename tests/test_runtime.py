"""Process tuning applied by `serve` and `demo`: the interpreter lock's switch interval."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from urbanstack.runtime import tune_process
from urbanstack.settings import Settings


@pytest.fixture
def restored_process() -> Iterator[None]:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    yield
    sys.setswitchinterval(interval)
    gc.set_threshold(*thresholds)
    gc.unfreeze()


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
