"""The `sync-assets` command as a user runs it: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT = """\
connectors:
  warehouse: {type: sql, url: "sqlite:///warehouse.db"}
syncs:
  - name: contact_to_warehouse
    source: {object: contact}
    destination: {connectorInstanceId: warehouse, externalResource: contacts,
                  operation: upsert, matchKey: [email]}
    schedule: "0 * * * *"
  - name: order_mirror
    source: {object: order}
    destination: {object: order_copy, operation: sync}
    syncMode: full
"""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync_assets.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=60,
    )


def test_validate_lists_each_sync_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "project.yaml").write_text(PROJECT)
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "SYNC                  DIRECTION  MODE         OPERATION  SCHEDULE\n"
        "contact_to_warehouse  push       incremental  upsert     0 * * * *\n"
        "order_mirror          push       full         sync       -\n"
        "2 syncs valid\n"
    )


def test_validate_prints_every_error_and_exits_2(tmp_path: Path) -> None:
    bad = PROJECT.replace("operation: sync", "operation: mirror").replace(
        "externalResource: contacts,", ""
    )
    (tmp_path / "project.yaml").write_text(bad)
    result = run_cli("validate", "project.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "project.yaml:6: syncs[0].destination.externalResource: is required with connector "
        "instance 'warehouse': the table to use, optionally as schema.table\n"
        "project.yaml:11: syncs[1].destination.operation: must be one of insert, update, "
        "upsert, delete, sync (got 'mirror')\n"
        "2 problems found\n"
    )


def test_validate_of_a_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("validate", "nowhere.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "nowhere.yaml: (file): does not exist\n1 problem found\n"


def test_a_usage_error_exits_2_without_traceback() -> None:
    result = run_cli("validate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "the following arguments are required: PATH" in result.stderr


def test_schema_prints_the_official_json_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$id"] == "https://schema.objectstack.io/v16.1.0/automation/DataSyncConfig.json"
    assert schema["required"] == ["name", "source", "destination"]


def test_schema_result_prints_the_execution_result_schema() -> None:
    schema = json.loads(run_cli("schema", "result").stdout)
    assert schema["required"] == ["id", "syncName", "status", "startedAt"]
