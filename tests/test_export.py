"""``urbanstack export``: an entity type's history to Parquet and CSV (real CLI process)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from urbanstack.api.app import create_app
from urbanstack.settings import Settings

TEMPORAL = "/ngsi-ld/v1/temporal/entities"


def urbanstack_command() -> list[str]:
    exe = shutil.which("urbanstack")
    return [exe] if exe else [sys.executable, "-m", "urbanstack.cli"]


def run_export(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*urbanstack_command(), "export", *args, "--store", settings.store],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def history(settings: Settings) -> Settings:
    """Two stations with readings and a river gauge (another type) in the store."""
    with TestClient(create_app(settings)) as client:
        for n in range(2):
            body: dict[str, Any] = {
                "id": f"urn:ngsi-ld:AirQualityObserved:{n}",
                "type": "AirQualityObserved",
                "pm25": [
                    {"value": 10 * n + h, "unitCode": "GQ", "observedAt": f"2026-11-01T0{h}:00:00Z"}
                    for h in range(3)
                ],
                "status": {"value": "ok", "observedAt": "2026-11-01T00:00:00Z"},
                "alarm": {"value": False, "observedAt": "2026-11-01T00:00:00Z"},
            }
            assert client.post(TEMPORAL, json=body).status_code == 201
        river = {"id": "urn:ngsi-ld:WaterLevel:1", "type": "WaterLevel", "level": 2.5}
        assert client.post("/ngsi-ld/v1/entities", json=river).status_code == 201
    return settings


def test_parquet_export_has_one_typed_row_per_instance(history: Settings, tmp_path: Path) -> None:
    out = tmp_path / "aq.parquet"
    result = run_export(history, "--type", "AirQualityObserved", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote 10 instances" in result.stdout
    table = pq.read_table(out).to_pylist()
    assert len(table) == 10
    pm = [r for r in table if r["attribute"] == "pm25" and r["entity_id"].endswith(":1")]
    assert [r["value_number"] for r in pm] == [10.0, 11.0, 12.0]
    assert pm[0]["unit_code"] == "GQ" and pm[0]["observed_at"].isoformat().startswith("2026-11-01")
    [alarm] = [r for r in table if r["attribute"] == "alarm" and r["entity_id"].endswith(":0")]
    assert alarm["value_boolean"] is False and alarm["value_number"] is None
    assert {r["value_text"] for r in table if r["attribute"] == "status"} == {"ok"}


def test_csv_export_is_chosen_by_the_file_name(history: Settings, tmp_path: Path) -> None:
    out = tmp_path / "river.csv"
    result = run_export(history, "--type", "WaterLevel", "-o", str(out))
    assert result.returncode == 0, result.stderr
    with out.open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [(r["entity_id"], r["attribute"], r["value_number"]) for r in rows] == [
        ("urn:ngsi-ld:WaterLevel:1", "level", "2.5")
    ]


def test_export_of_a_type_without_history_writes_an_empty_file(
    history: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "none.csv"
    result = run_export(history, "--type", "Streetlight", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8").splitlines()[1:] == []


def test_export_of_unknown_tenant_fails_clearly(history: Settings, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    result = run_export(history, "--type", "X", "-o", str(out), "--tenant", "danang")
    assert result.returncode != 0
    assert "tenant 'danang' does not exist" in result.stderr
