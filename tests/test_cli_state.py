"""`sync-assets state show | reset` and `sync-assets changes`, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

PROJECT = """\
objectstack: {url: "sqlite:///os.db"}
connectors:
  warehouse: {type: sql, url: "sqlite:///wh.db"}
syncs:
  - name: contacts
    source: {object: contact}
    destination:
      connectorInstanceId: warehouse
      externalResource: contacts
      operation: upsert
      matchKey: [email]
      mapping:
        - {source: email, target: email}
        - {source: score, target: score, transform: {type: cast, targetType: number}}
    changeTrackingField: updated_at
    audit: {trackChanges: true}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sync_assets.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def project(tmp_path: Path) -> Path:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/os.db")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE contact (id INTEGER PRIMARY KEY, email TEXT, "
                             "score TEXT, updated_at TEXT)"))
        conn.execute(sa.text(
            "INSERT INTO contact VALUES (1, 'ada@x.io', '10', '2026-01-01 10:00:00'), "
            "(2, 'alan@x.io', 'n/a', '2026-01-01 11:00:00'), "
            "(3, 'grace@x.io', '7.5', '2026-01-01 12:00:00')"))
    engine.dispose()
    (tmp_path / "project.yaml").write_text(PROJECT)
    return tmp_path


def test_state_show_lists_the_cursor_and_the_records_waiting_for_retry(tmp_path: Path) -> None:
    where = project(tmp_path)
    assert "Traceback" not in cli("state", "show", "project.yaml", "--sync", "contacts",
                                  cwd=where).stderr
    cli("run", "project.yaml", cwd=where)
    cli("run", "project.yaml", cwd=where)  # the failed record is retried, and fails again

    shown = cli("state", "show", "project.yaml", "--sync", "contacts", cwd=where)

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"sync contacts (state in sqlite:///{where}/wh.db)"
    assert lines[1].startswith("  cursor          2026-01-01 12:00:00 (moved ")
    assert lines[2:4] == ["  records synced  2", "  waiting retry   1"]
    assert lines[4].startswith("    record 2 [CAST_ERROR] 2 attempts since ")
    assert lines[4].endswith("cannot cast 'n/a' to number")
    as_json = json.loads(cli("state", "show", "project.yaml", "--sync", "contacts", "--json",
                             cwd=where).stdout)
    assert as_json["records"] == 2 and as_json["cursor"] == "2026-01-01 12:00:00"
    assert [(f["recordId"], f["code"], f["attempts"]) for f in as_json["failedRecords"]] == [
        ("2", "CAST_ERROR", 2)]


def test_state_reset_asks_first_then_the_next_run_reads_everything(tmp_path: Path) -> None:
    where = project(tmp_path)
    cli("run", "project.yaml", cwd=where)

    unasked = cli("state", "reset", "project.yaml", "--sync", "contacts", cwd=where)
    assert (unasked.returncode, unasked.stderr) == (
        2, "state reset needs --yes when not run from a terminal\n")
    done = cli("state", "reset", "project.yaml", "--sync", "contacts", "--yes", cwd=where)

    assert done.returncode == 0, done.stderr
    assert done.stdout == ("reset contacts: forgot the cursor, 2 records and 1 failed "
                           "records; the change log is kept\n")
    again = json.loads(cli("run", "project.yaml", "--json", cwd=where).stdout)
    assert again["stats"]["recordsProcessed"] == 3  # read whole: no cursor
    assert again["stats"]["recordsSkipped"] == 2  # the destination already holds them


def test_changes_prints_the_change_log_of_a_key(tmp_path: Path) -> None:
    where = project(tmp_path)
    cli("run", "project.yaml", cwd=where)
    engine = sa.create_engine(f"sqlite:///{tmp_path}/os.db")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE contact SET score = '11', updated_at = "
                             "'2026-01-02 10:00:00' WHERE id = 1"))
    engine.dispose()
    cli("run", "project.yaml", cwd=where)

    log = cli("changes", "project.yaml", "--sync", "contacts", "--key", "ada@x.io",
              "--json", cwd=where)

    assert log.returncode == 0, log.stderr
    entries = [json.loads(line) for line in log.stdout.splitlines()]
    assert [(e["operation"], e["before"], e["after"]) for e in entries] == [
        ("insert", None, {"email": "ada@x.io", "score": 10}),
        ("update", {"email": "ada@x.io", "score": 10}, {"email": "ada@x.io", "score": 11})]
    everything = cli("changes", "project.yaml", "--sync", "contacts", cwd=where)
    assert len(everything.stdout.splitlines()) == 3  # two inserts, one update


def test_version_and_the_plan_line_read_as_english(tmp_path: Path) -> None:
    """#14: `--version`; "would process 3 records", not "3 processed"."""
    version = cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("sync-assets ")
    where = project(tmp_path)
    planned = cli("plan", "project.yaml", "--sync", "contacts", cwd=where)
    assert planned.stdout.splitlines()[1] == (
        "  would process 3 records: 2 inserted, 0 updated, 0 deleted, 0 skipped, 1 errored")
