"""What the engine does for a system that lacks a capability, shown on the in-memory
connector with that capability switched off: the same rows, read another way."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync_assets import load_project
from sync_assets.connectors import memory
from sync_assets.engine import run

from engine_helpers import counts, rows, spec

T0 = datetime(2024, 1, 1, 10, 0, 0)
FIELDS = {"email": "text", "name": "text", "updated_at": "datetime"}


@pytest.fixture
def crm() -> Iterator[memory.MemoryStore]:
    found = memory.store("fallbacks")
    found.define("people", FIELDS, ["email"], [
        {"email": f"p{i}@x.io", "name": f"n{i}", "updated_at": T0 + timedelta(minutes=i)}
        for i in range(1, 8)])
    yield found
    memory.drop_store("fallbacks")


def project(tmp_path: Path, **settings: Any) -> Any:
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({
        "connectors": {"crm": {"type": "memory", "store": "fallbacks", **settings},
                       "wh": {"type": "sql", "url": f"sqlite:///{tmp_path}/wh.db"}},
        "syncs": [{"name": "people", "batchSize": 3, "changeTrackingField": "updated_at",
                   "source": {"connectorInstanceId": "crm", "externalResource": "people",
                              "filters": {"name": {"$ne": "n4"}}},
                   "destination": {"connectorInstanceId": "wh", "externalResource": "people",
                                   "operation": "upsert", "matchKey": ["email"],
                                   "mapping": {"email": "email", "name": "name"}}}]}))
    return load_project(tmp_path / "p.yaml", env={})


def change(crm: memory.MemoryStore, email: str, name: str) -> None:
    row = next(r for r in crm.sets["people"].rows.values() if r["email"] == email)
    row.update(name=name, updated_at=T0 + timedelta(hours=1))


def test_a_source_that_cannot_read_in_cursor_order_is_read_whole(
        tmp_path: Path, crm: memory.MemoryStore) -> None:
    proj = project(tmp_path, orderedReads=False)
    first = run(proj, "people")
    assert counts(first) == {"processed": 6, "inserted": 6}  # the filter applied here
    assert any("cannot read in updated_at order" in line for line in spec(first)["logs"])
    change(crm, "p2@x.io", "two")
    assert counts(run(proj, "people")) == {"processed": 6, "updated": 1, "skipped": 5}
    assert rows(f"sqlite:///{tmp_path}/wh.db", "people", "email") == [
        ("p1@x.io", "n1"), ("p2@x.io", "two"), ("p3@x.io", "n3"), ("p5@x.io", "n5"),
        ("p6@x.io", "n6"), ("p7@x.io", "n7")]


def test_a_source_that_cannot_tell_its_high_water_mark_is_read_to_the_end(
        tmp_path: Path, crm: memory.MemoryStore) -> None:
    proj = project(tmp_path, highWaterMarks=False)
    first = run(proj, "people")
    assert counts(first) == {"processed": 6, "inserted": 6}
    assert any("to the end" in line for line in spec(first)["logs"])
    change(crm, "p2@x.io", "two")
    # the cursor followed the pages read: only the changed record is read again
    assert counts(run(proj, "people")) == {"processed": 1, "updated": 1}
    assert rows(f"sqlite:///{tmp_path}/wh.db", "people", "email")[1] == ("p2@x.io", "two")
