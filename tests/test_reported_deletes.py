"""Mirror deletes from the deletes a source reports (`Endpoint.read_deletes`), shown on the
in-memory connector with `reportsDeletes`: an incremental mirror reads only what changed,
never every key, and ends with the same rows as one that reads every key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync_assets import load_project
from sync_assets.connectors import memory
from sync_assets.connectors.base import ReadRequest
from sync_assets.engine import run

from engine_helpers import counts, rows, spec

T0 = datetime(2024, 1, 1, 10, 0, 0)
LATER = T0 + timedelta(hours=1)
FIELDS = {"email": "text", "name": "text", "updated_at": "datetime"}


@pytest.fixture
def crm() -> Iterator[memory.MemoryStore]:
    found = memory.store("reported")
    found.define("people", FIELDS, ["email"], [
        {"email": f"p{i}@x.io", "name": f"n{i}", "updated_at": T0 + timedelta(minutes=i)}
        for i in range(1, 8)])
    yield found
    memory.drop_store("reported")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[ReadRequest]:
    """Every read request the memory connector answers."""
    seen: list[ReadRequest] = []
    original = memory.MemoryTable.read_batches

    def recorded(self: memory.MemoryTable, request: ReadRequest) -> Any:
        seen.append(request)
        return original(self, request)

    monkeypatch.setattr(memory.MemoryTable, "read_batches", recorded)
    return seen


def whole_reads(requests: list[ReadRequest]) -> list[ReadRequest]:
    """Reads of the whole source: no cursor bounds and not only the records without one."""
    return [r for r in requests if r.cursor_field is None and r.null_cursor is None]


def project(tmp_path: Path, *, filters: Any = None, **settings: Any) -> Any:
    source: dict[str, Any] = {"connectorInstanceId": "crm", "externalResource": "people"}
    if filters is not None:
        source["filters"] = filters
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({
        "connectors": {"crm": {"type": "memory", "store": "reported", "reportsDeletes": True,
                               **settings},
                       "wh": {"type": "sql", "url": f"sqlite:///{tmp_path}/wh.db"}},
        "syncs": [{"name": "people", "batchSize": 3, "changeTrackingField": "updated_at",
                   "source": source,
                   "destination": {"connectorInstanceId": "wh", "externalResource": "people",
                                   "operation": "sync", "matchKey": ["email"],
                                   "mapping": {"email": "email", "name": "name"}}}]}))
    return load_project(tmp_path / "p.yaml", env={})


def emails(tmp_path: Path) -> list[str]:
    return [r[0] for r in rows(f"sqlite:///{tmp_path}/wh.db", "people", "email")]


def test_a_reported_delete_reaches_the_mirror_without_a_read_of_every_key(
        tmp_path: Path, crm: memory.MemoryStore, reads: list[ReadRequest]) -> None:
    proj = project(tmp_path)
    assert counts(run(proj, "people")) == {"processed": 7, "inserted": 7}
    crm.delete("people", ["p3@x.io"], updated_at=LATER)
    reads.clear()
    second = run(proj, "people")
    assert counts(second) == {"processed": 1, "deleted": 1}
    assert whole_reads(reads) == []
    assert any("reports 1 record deleted since" in line and "; 1 of them was created" in line
               for line in spec(second)["logs"])
    assert emails(tmp_path) == ["p1@x.io", "p2@x.io", "p4@x.io", "p5@x.io", "p6@x.io",
                                "p7@x.io"]


def test_a_rerun_after_the_delete_deletes_nothing_more(
        tmp_path: Path, crm: memory.MemoryStore) -> None:
    proj = project(tmp_path)
    run(proj, "people")
    crm.delete("people", ["p3@x.io"], updated_at=LATER)
    assert counts(run(proj, "people"))["deleted"] == 1
    # the tombstone sits at the cursor, so it is reported again: nothing is left to delete
    assert "deleted" not in counts(run(proj, "people"))
    assert len(emails(tmp_path)) == 6


def test_the_first_run_finds_deletes_by_reading_every_key(
        tmp_path: Path, crm: memory.MemoryStore, reads: list[ReadRequest]) -> None:
    """Without a cursor there is no window to ask about: the mirror compares every key."""
    proj = project(tmp_path)
    run(proj, "people")
    assert len(whole_reads(reads)) == 1  # the run's own read, with no bound yet
    crm.delete("people", ["p3@x.io"], updated_at=LATER)
    reads.clear()
    full = run(proj, "people", full_refresh=True)
    assert counts(full) == {"processed": 7, "deleted": 1, "skipped": 6}
    # the refresh reads from the start of the cursor, then the mirror reads every key
    assert [list(r.columns) for r in whole_reads(reads)] == [["email"]]


def test_a_record_deleted_and_created_again_under_its_key_ends_written(
        tmp_path: Path, crm: memory.MemoryStore) -> None:
    proj = project(tmp_path)
    run(proj, "people")
    crm.delete("people", ["p3@x.io"], updated_at=LATER)
    crm.sets["people"].rows[("p3@x.io",)] = {"email": "p3@x.io", "name": "again",
                                             "updated_at": LATER + timedelta(minutes=1)}
    assert counts(run(proj, "people")) == {"processed": 2, "inserted": 1, "deleted": 1}
    assert ("p3@x.io", "again") in rows(f"sqlite:///{tmp_path}/wh.db", "people", "email")


def test_deletes_the_source_no_longer_keeps_are_found_by_reading_every_key(
        tmp_path: Path, crm: memory.MemoryStore, reads: list[ReadRequest]) -> None:
    proj = project(tmp_path)
    run(proj, "people")
    crm.delete("people", ["p3@x.io"], updated_at=LATER)
    # the system forgot deletes older than this: the window since the cursor is not whole
    crm.purge_tombstones("people", before=LATER + timedelta(days=1), cursor_field="updated_at")
    reads.clear()
    second = run(proj, "people")
    assert counts(second) == {"processed": 1, "deleted": 1}
    assert len(whole_reads(reads)) == 1  # every key, for the mirror
    assert any("mirror deleted 1 records that left the source" in line
               for line in spec(second)["logs"])
    assert "p3@x.io" not in emails(tmp_path)


def test_a_record_changed_to_leave_the_filter_is_deleted(
        tmp_path: Path, crm: memory.MemoryStore, reads: list[ReadRequest]) -> None:
    proj = project(tmp_path, filters={"name": {"$ne": "gone"}})
    assert counts(run(proj, "people"))["inserted"] == 7
    crm.sets["people"].rows[("p5@x.io",)].update(name="gone", updated_at=LATER)
    reads.clear()
    second = run(proj, "people")
    assert counts(second) == {"processed": 1, "deleted": 1}
    assert whole_reads(reads) == []
    assert any("0 records deleted since" in line
               and "1 record changed since then is outside the filter" in line
               for line in spec(second)["logs"])
    assert "p5@x.io" not in emails(tmp_path)


def test_only_records_this_sync_created_are_deleted(
        tmp_path: Path, crm: memory.MemoryStore) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path}/wh.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # p5 was there before the sync
        conn.exec_driver_sql("CREATE TABLE people (email TEXT PRIMARY KEY, name TEXT)")
        conn.exec_driver_sql("INSERT INTO people VALUES ('p5@x.io', 'theirs')")
    engine.dispose()
    proj = project(tmp_path)
    assert counts(run(proj, "people")) == {"processed": 7, "inserted": 6, "updated": 1}
    crm.delete("people", ["p5@x.io"], updated_at=LATER)
    second = run(proj, "people")
    assert "deleted" not in counts(second)
    assert any("0 of them were created by this sync" in line for line in spec(second)["logs"])
    assert "p5@x.io" in emails(tmp_path)


def test_reported_deletes_keep_the_mass_delete_guard(
        tmp_path: Path, crm: memory.MemoryStore) -> None:
    proj = project(tmp_path)
    run(proj, "people")
    for i in range(1, 7):
        crm.delete("people", [f"p{i}@x.io"], updated_at=LATER)
    guarded = run(proj, "people", mass_delete_min=3)
    assert spec(guarded)["status"] == "failed"
    assert "mirror would delete 6 of the 7 records" in str(spec(guarded)["errors"])
    assert len(emails(tmp_path)) == 7
    allowed = run(proj, "people", mass_delete_min=3, allow_mass_delete=True)
    assert counts(allowed)["deleted"] == 6
    assert emails(tmp_path) == ["p7@x.io"]


def test_a_plan_shows_the_reported_deletes_and_deletes_nothing(
        tmp_path: Path, crm: memory.MemoryStore) -> None:
    proj = project(tmp_path)
    run(proj, "people")
    crm.delete("people", ["p3@x.io"], updated_at=LATER)
    plan = run(proj, "people", dry_run=True)
    assert counts(plan)["deleted"] == 1
    assert len(emails(tmp_path)) == 7
    assert counts(run(proj, "people"))["deleted"] == 1
