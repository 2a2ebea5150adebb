"""The sync engine end to end: real source and destination databases (SQLite and PostgreSQL).

Every result a test produces goes through `engine_helpers.spec`, which checks it against the
protocol (`parse_execution_result`, UTC times ending in Z) and the counting invariant
recordsProcessed == inserted + updated + deleted + skipped + errored.
"""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync_assets import SyncConfigError
from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import Progress, plan

from engine_helpers import (
    codes,
    count_rows,
    counts,
    create_table,
    delete,
    engine_for,
    errors,
    execute,
    insert,
    project,
    rows,
    spec,
    state_counts,
    status,
    sync,
    table_names,
    to_warehouse,
    update,
)

Urls = tuple[str, str]
T0 = datetime(2024, 1, 1, 10, 0, 0)
CHANGES = "_sync_assets_changes"


def person_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(40)),
        sa.Column("email", sa.String(100)),
        sa.Column("status", sa.String(20)),
        sa.Column("score", sa.Integer),
        sa.Column("updated_at", sa.DateTime),
    ]


def person(i: int, **values: Any) -> dict[str, Any]:
    row = {"id": i, "name": f"name {i}", "email": f"p{i}@example.com", "status": "active",
           "score": i * 10, "updated_at": T0 + timedelta(minutes=i)}
    return {**row, **values}


def seed_people(url: str, n: int, **values: Any) -> None:
    create_table(url, "person", person_columns(), [person(i, **values) for i in range(1, n + 1)])


@pytest.fixture
def sqlite_urls(tmp_path: Path) -> Iterator[Urls]:
    yield f"sqlite:///{tmp_path}/os.db", f"sqlite:///{tmp_path}/wh.db"
    dispose_engines()


# -- 1. a first run into a missing table --------------------------------------------------


def test_first_upsert_creates_the_destination_with_types_and_exact_rows(
    tmp_path: Path, backend: Urls
) -> None:
    os_url, wh_url = backend
    create_table(os_url, "product", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("price", sa.Numeric(8, 2)),
        sa.Column("active", sa.Boolean),
        sa.Column("launched", sa.Date),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("notes", sa.Text),
    ], [
        {"id": 1, "name": "Ada", "price": Decimal("1.50"), "active": True,
         "launched": date(2020, 2, 29), "updated_at": T0, "notes": "x"},
        {"id": 2, "name": "Bob", "price": None, "active": False, "launched": None,
         "updated_at": None, "notes": None},
        {"id": 3, "name": "Cé 'q'", "price": Decimal("-3.25"), "active": None,
         "launched": date(1999, 12, 31), "updated_at": T0 + timedelta(seconds=1.5),
         "notes": "ü\nline"},
    ])
    proj = project(tmp_path, backend, to_warehouse("products", "product", "products"))

    result = sync(proj, "products")

    out = spec(result)
    assert out["status"] == "completed"
    assert out["errors"] == []
    assert out["syncName"] == "products"
    assert counts(result) == {"processed": 3, "inserted": 3}
    assert rows(wh_url, "products", "id") == [
        (1, "Ada", Decimal("1.50"), True, date(2020, 2, 29), T0, "x"),
        (2, "Bob", None, False, None, None, None),
        (3, "Cé 'q'", Decimal("-3.25"), None, date(1999, 12, 31),
         T0 + timedelta(seconds=1.5), "ü\nline"),
    ]
    with engine_for(wh_url) as engine:
        inspector = sa.inspect(engine)
        columns = {c["name"]: c for c in inspector.get_columns("products")}
        pk = inspector.get_pk_constraint("products")["constrained_columns"]
    assert list(columns) == ["id", "name", "price", "active", "launched", "updated_at", "notes"]
    assert pk == ["id"]
    kinds = {
        "id": sa.Integer, "name": sa.String, "price": sa.Numeric, "active": sa.Boolean,
        "launched": sa.Date, "updated_at": sa.DateTime, "notes": sa.Text,
    }
    for name, kind in kinds.items():
        assert isinstance(columns[name]["type"], kind), (name, columns[name]["type"])
    assert columns["price"]["type"].scale == 2
    # strings become unbounded text: a mapping may lengthen values (map, defaultValue)
    assert columns["name"]["type"].length is None


# -- 2. nothing changed, nothing written -------------------------------------------------


def test_rerun_without_source_change_writes_nothing(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 4)
    proj = project(tmp_path, backend, to_warehouse("people", "person", "people", audit={}))
    assert counts(sync(proj, "people")) == {"processed": 4, "inserted": 4}
    before = rows(wh_url, "people", "id")
    logged = count_rows(wh_url, CHANGES)
    assert logged == 4

    again = sync(proj, "people")

    assert status(again) == "completed"
    assert counts(again) == {"processed": 4, "skipped": 4}
    assert rows(wh_url, "people", "id") == before
    assert count_rows(wh_url, CHANGES) == logged


def test_change_to_an_unmapped_column_writes_nothing(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 3)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", mapping={"id": "id", "name": "full_name"}))
    assert counts(sync(proj, "people")) == {"processed": 3, "inserted": 3}
    before = rows(wh_url, "people", "id")
    update(os_url, "person", {"id": 2}, {"score": 999, "email": "new@example.com"})

    again = sync(proj, "people")

    assert counts(again) == {"processed": 3, "skipped": 3}
    assert rows(wh_url, "people", "id") == before == [(1, "name 1"), (2, "name 2"), (3, "name 3")]
    assert count_rows(wh_url, CHANGES) == 3


# -- 3. incremental on a change-tracking field -------------------------------------------


def test_incremental_cursor_is_boundary_safe(tmp_path: Path, backend: Urls) -> None:
    """Ties on the cursor's timestamp across batches and across runs: nothing lost or doubled."""
    os_url, wh_url = backend
    seed_people(os_url, 5, updated_at=T0)  # all five share one timestamp; batches of 2
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", syncMode="incremental", changeTrackingField="updated_at",
        batchSize=2))

    def source_rows() -> list[tuple[Any, ...]]:
        return rows(os_url, "person", "id")

    first = sync(proj, "people")
    assert counts(first) == {"processed": 5, "inserted": 5}
    assert rows(wh_url, "people", "id") == source_rows()

    unchanged = counts(sync(proj, "people"))
    assert unchanged.get("processed", 0) == unchanged.get("skipped", 0)  # nothing written
    assert count_rows(wh_url, CHANGES) == 5

    insert(os_url, "person", [person(6, updated_at=T0), person(7, updated_at=T0)])
    later = sync(proj, "people")
    assert counts(later) == {"processed": 2, "inserted": 2}
    assert rows(wh_url, "people", "id") == source_rows()

    update(os_url, "person", {"id": 3}, {"name": "changed", "updated_at": T0 + timedelta(hours=1)})
    newer = sync(proj, "people")
    assert counts(newer) == {"processed": 1, "updated": 1}
    assert rows(wh_url, "people", "id") == source_rows()
    assert count_rows(wh_url, CHANGES) == 8

    settled = counts(sync(proj, "people"))
    assert settled.get("processed", 0) == settled.get("skipped", 0)
    assert count_rows(wh_url, CHANGES) == 8


def test_incremental_reads_only_changed_records(tmp_path: Path, backend: Urls) -> None:
    """Records older than the cursor are not even read (not counted as skipped)."""
    os_url, wh_url = backend
    seed_people(os_url, 6)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", changeTrackingField="updated_at", batchSize=4))
    assert counts(sync(proj, "people")) == {"processed": 6, "inserted": 6}
    update(os_url, "person", {"id": 2}, {"score": -1, "updated_at": T0 + timedelta(days=1)})

    result = sync(proj, "people")

    assert counts(result)["updated"] == 1
    assert counts(result).get("inserted", 0) == 0
    assert counts(result)["processed"] <= 2  # the changed record, maybe the boundary one
    assert rows(wh_url, "people", "id") == rows(os_url, "person", "id")


def test_incremental_does_not_lose_records_without_a_timestamp(
    tmp_path: Path, backend: Urls
) -> None:
    """A record whose changeTrackingField is NULL can never pass the cursor: it must still be
    synced (it is read every run and diffed), not silently left out for good."""
    os_url, wh_url = backend
    seed_people(os_url, 3)
    update(os_url, "person", {"id": 2}, {"updated_at": None})
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", changeTrackingField="updated_at"))

    result = sync(proj, "people")

    assert [r[0] for r in rows(wh_url, "people", "id")] == [1, 2, 3]
    assert counts(result) == {"processed": 3, "inserted": 3}


# -- 4. records changed while a run goes -------------------------------------------------


@pytest.mark.parametrize("tracking", ["updated_at", None], ids=["cursor", "snapshot"])
def test_changes_during_a_run_are_caught_by_the_next(
    tmp_path: Path, backend: Urls, tracking: str | None
) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 20)
    extra = {"changeTrackingField": tracking} if tracking else {}
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", batchSize=3, **extra))
    later = T0 + timedelta(hours=1)
    calls: list[int] = []

    def meddle(progress: Progress) -> None:
        calls.append(progress.read)
        if len(calls) == 1:  # after the first batch (ids 1-3); the reader may be three
            # batches ahead (ids 4-12), never at id 17
            update(os_url, "person", {"id": 2}, {"name": "read, then changed", "updated_at": later})
            update(os_url, "person", {"id": 17},
                   {"name": "changed, then read", "updated_at": later})
            insert(os_url, "person", [person(21, updated_at=later)])

    first = sync(proj, "people", progress=meddle)

    assert calls[0] == 3
    c1 = counts(first)
    assert set(c1) == {"processed", "inserted"}  # nothing counted twice, nothing updated
    assert c1["inserted"] == (19 if tracking else 21)  # a cursor run stops at its high-water mark
    second = sync(proj, "people")
    c2 = counts(second)
    assert c2.get("updated", 0) + c2.get("inserted", 0) == (3 if tracking else 1)
    assert c1["inserted"] + c2.get("inserted", 0) == 21
    assert rows(wh_url, "people", "id") == rows(os_url, "person", "id")
    third = counts(sync(proj, "people"))
    assert third.get("processed", 0) == third.get("skipped", 0)


# -- 5. snapshot diffing -----------------------------------------------------------------


def test_snapshot_diffing_writes_only_changed_rows(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 5)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", syncMode="incremental", batchSize=2))
    assert counts(sync(proj, "people")) == {"processed": 5, "inserted": 5}
    update(os_url, "person", {"id": 2}, {"name": "two"})
    update(os_url, "person", {"id": 5}, {"score": 0})
    insert(os_url, "person", [person(6)])

    result = sync(proj, "people")

    assert counts(result) == {"processed": 6, "inserted": 1, "updated": 2, "skipped": 3}
    assert rows(wh_url, "people", "id") == rows(os_url, "person", "id")
    with engine_for(wh_url) as engine, engine.connect() as conn:
        logged = conn.execute(sa.text(
            f"SELECT operation, record_key FROM {CHANGES} ORDER BY id")).all()
    assert sorted(tuple(r) for r in logged[5:]) == [
        ("insert", "[6]"), ("update", "[2]"), ("update", "[5]")]


# -- 6. operations -----------------------------------------------------------------------


def dest_people(url: str, people: list[tuple[int, str]], *, pk: bool = True) -> None:
    create_table(url, "people", [
        sa.Column("id", sa.Integer, primary_key=pk, autoincrement=False),
        sa.Column("name", sa.String(40)),
    ], [{"id": i, "name": n} for i, n in people])


def id_name(**extra: Any) -> dict[str, Any]:
    return {"mapping": {"id": "id", "name": "name"}, **extra}


def test_insert_by_match_key_skips_existing_records(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 3)
    dest_people(wh_url, [(2, "kept as it was")], pk=False)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", "insert", **id_name(matchKey=["id"])))

    result = sync(proj, "people")

    assert counts(result) == {"processed": 3, "inserted": 2, "skipped": 1}
    assert rows(wh_url, "people", "id") == [(1, "name 1"), (2, "kept as it was"), (3, "name 3")]
    assert counts(sync(proj, "people")) == {"processed": 3, "skipped": 3}


def test_insert_without_match_key_appends_once(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 3)
    dest_people(wh_url, [(1, "already there")], pk=False)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", "insert", **id_name()))

    first = sync(proj, "people")
    assert counts(first) == {"processed": 3, "inserted": 3}
    again = sync(proj, "people")

    assert counts(again) == {"processed": 3, "skipped": 3}
    assert rows(wh_url, "people") == [
        (1, "already there"), (1, "name 1"), (2, "name 2"), (3, "name 3")]


def test_update_changes_existing_records_and_skips_missing(
    tmp_path: Path, backend: Urls
) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 3)
    dest_people(wh_url, [(1, "old"), (3, "name 3"), (9, "not in source")])
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", "update", **id_name(matchKey=["id"])))

    result = sync(proj, "people")

    assert counts(result) == {"processed": 3, "updated": 1, "skipped": 2}
    assert rows(wh_url, "people", "id") == [(1, "name 1"), (3, "name 3"), (9, "not in source")]


def test_many_updates_in_one_batch_write_exact_rows_and_their_state(
    tmp_path: Path, backend: Urls
) -> None:
    """On PostgreSQL 64+ updates go through a staging table and one UPDATE ... FROM, for the
    rows and for their fingerprints alike."""
    os_url, wh_url = backend
    seed_people(os_url, 150)
    proj = project(tmp_path, backend, to_warehouse("people", "person", "people"))
    sync(proj, "people")
    execute(os_url, "UPDATE person SET name = 'renamed ' || id WHERE id <= 120")

    changed = sync(proj, "people")
    again = sync(proj, "people")

    assert counts(changed) == {"processed": 150, "updated": 120, "skipped": 30}
    assert counts(again) == {"processed": 150, "skipped": 150}
    assert rows(wh_url, "people", "id") == rows(os_url, "person", "id")


def test_upsert_inserts_updates_and_skips(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 3)
    dest_people(wh_url, [(1, "old"), (2, "name 2"), (7, "other")])
    proj = project(tmp_path, backend, to_warehouse("people", "person", "people", **id_name()))

    result = sync(proj, "people")  # no matchKey: the destination's primary key

    assert counts(result) == {"processed": 3, "inserted": 1, "updated": 1, "skipped": 1}
    assert rows(wh_url, "people", "id") == [
        (1, "name 1"), (2, "name 2"), (3, "name 3"), (7, "other")]


def test_delete_removes_matching_records(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 3)
    delete(os_url, "person", {"id": 1})
    dest_people(wh_url, [(1, "a"), (2, "b"), (3, "c"), (4, "d")])
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", "delete", **id_name(matchKey=["id"])))

    result = sync(proj, "people")

    assert counts(result) == {"processed": 2, "deleted": 2}
    assert rows(wh_url, "people", "id") == [(1, "a"), (4, "d")]
    assert counts(sync(proj, "people")) == {"processed": 2, "skipped": 2}
    assert rows(wh_url, "people", "id") == [(1, "a"), (4, "d")]


def test_sync_mirrors_only_what_it_created(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 4)
    insert(os_url, "person", [person(50, name="fifty")])
    dest_people(wh_url, [(50, "there before"), (100, "never in the source")])
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", "sync", filters={"status": "active"}, **id_name()))
    assert counts(sync(proj, "people")) == {"processed": 5, "inserted": 4, "updated": 1}
    assert rows(wh_url, "people", "id") == [
        (1, "name 1"), (2, "name 2"), (3, "name 3"), (4, "name 4"), (50, "fifty"),
        (100, "never in the source")]
    delete(os_url, "person", {"id": 1})  # left the source
    update(os_url, "person", {"id": 2}, {"status": "archived"})  # left the filter
    delete(os_url, "person", {"id": 50})  # left the source, but this sync did not create it

    result = sync(proj, "people")

    assert status(result) == "completed"
    assert counts(result) == {"processed": 4, "deleted": 2, "skipped": 2}
    assert rows(wh_url, "people", "id") == [
        (3, "name 3"), (4, "name 4"), (50, "fifty"), (100, "never in the source")]
    assert counts(sync(proj, "people")) == {"processed": 2, "skipped": 2}


def test_a_record_without_a_match_key_value_is_errored_and_stops_mirror_deletes(
    tmp_path: Path, backend: Urls
) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 3)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", "sync", mapping={"email": "email", "name": "name"},
        matchKey=["email"]))
    assert counts(sync(proj, "people")) == {"processed": 3, "inserted": 3}
    update(os_url, "person", {"id": 2}, {"email": None})
    delete(os_url, "person", {"id": 3})

    result = sync(proj, "people")

    assert status(result) == "partial"
    assert counts(result) == {"processed": 2, "skipped": 1, "errored": 1}
    assert [(e["recordId"], e["code"]) for e in errors(result)] == [("2", "KEY_MISSING")]
    assert count_rows(wh_url, "people") == 3  # nothing mirrored away while a key is unknown


def test_sync_mass_delete_guard(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 20)
    proj = project(tmp_path, backend, to_warehouse("people", "person", "people", "sync",
                                                   **id_name()))
    assert counts(sync(proj, "people")) == {"processed": 20, "inserted": 20}
    execute(os_url, "DELETE FROM person WHERE id > 5")

    guarded = sync(proj, "people")

    assert status(guarded) == "failed"
    assert codes(guarded) == ["MASS_DELETE_GUARD"]
    assert "15" in errors(guarded)[0]["message"]
    assert counts(guarded).get("deleted", 0) == 0
    assert count_rows(wh_url, "people") == 20

    allowed = sync(proj, "people", allow_mass_delete=True)

    assert status(allowed) == "completed"
    assert counts(allowed) == {"processed": 20, "deleted": 15, "skipped": 5}
    assert [r[0] for r in rows(wh_url, "people", "id")] == [1, 2, 3, 4, 5]


def test_sync_below_the_guard_deletes(tmp_path: Path, backend: Urls) -> None:
    """10 gone of 12 is over 50%, but not over mass_delete_min (10): deleted at once."""
    os_url, wh_url = backend
    seed_people(os_url, 12)
    proj = project(tmp_path, backend, to_warehouse("people", "person", "people", "sync",
                                                   **id_name()))
    sync(proj, "people")
    execute(os_url, "DELETE FROM person WHERE id > 2")
    result = sync(proj, "people")
    assert counts(result) == {"processed": 12, "deleted": 10, "skipped": 2}
    assert count_rows(wh_url, "people") == 2


def test_match_key_may_name_a_source_field(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 2)
    create_table(wh_url, "people", [
        sa.Column("email_address", sa.String(100)), sa.Column("full_name", sa.String(40)),
    ], [{"email_address": "p2@example.com", "full_name": "old"}])
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", mapping={"email": "email_address", "name": "full_name"},
        matchKey=["email"]))

    result = sync(proj, "people")

    assert counts(result) == {"processed": 2, "inserted": 1, "updated": 1}
    assert rows(wh_url, "people", "email_address") == [
        ("p1@example.com", "name 1"), ("p2@example.com", "name 2")]


def changes(url: str) -> list[tuple[str, str, Any, Any]]:
    with engine_for(url) as engine, engine.connect() as conn:
        found = conn.execute(sa.text(
            f"SELECT operation, record_key, before, after FROM {CHANGES} ORDER BY id")).all()
    return [(op, key, before and json.loads(before), after and json.loads(after))
            for op, key, before, after in found]


def test_change_log_keeps_before_and_after(tmp_path: Path, backend: Urls) -> None:
    """audit.trackChanges: operation, key, before and after of the mapped fields."""
    os_url, wh_url = backend
    seed_people(os_url, 2)
    proj = project(tmp_path, backend, to_warehouse("people", "person", "people", "sync",
                                                   audit={}, **id_name()))
    sync(proj, "people")
    update(os_url, "person", {"id": 1}, {"name": "one"})
    delete(os_url, "person", {"id": 2})

    assert counts(sync(proj, "people")) == {"processed": 2, "updated": 1, "deleted": 1}

    assert changes(wh_url) == [
        ("insert", "[1]", None, {"id": 1, "name": "name 1"}),
        ("insert", "[2]", None, {"id": 2, "name": "name 2"}),
        ("update", "[1]", {"id": 1, "name": "name 1"}, {"id": 1, "name": "one"}),
        ("delete", "[2]", {"id": 2, "name": "name 2"}, None),
    ]


def test_no_change_log_without_an_audit_section(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 2)
    proj = project(tmp_path, backend, to_warehouse("people", "person", "people", audit=None))
    assert counts(sync(proj, "people")) == {"processed": 2, "inserted": 2}
    assert state_counts(wh_url)[CHANGES] == 0


def test_no_change_log_without_track_changes(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 2)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", audit={"trackChanges": False}))
    assert counts(sync(proj, "people")) == {"processed": 2, "inserted": 2}
    assert state_counts(wh_url)[CHANGES] == 0


# -- 7. mapping ---------------------------------------------------------------------------


def seed_contacts(url: str) -> None:
    create_table(url, "contact", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("first_name", sa.String(40)),
        sa.Column("last_name", sa.String(40)),
        sa.Column("status", sa.String(20)),
        sa.Column("score_text", sa.String(20)),
        sa.Column("country_code", sa.String(2)),
        sa.Column("nickname", sa.String(20)),
    ], [
        {"id": 1, "first_name": "Ada", "last_name": "Lovelace", "status": "A",
         "score_text": "12.5", "country_code": "GB", "nickname": None},
        {"id": 2, "first_name": "Alan", "last_name": "Turing", "status": "I",
         "score_text": " 7 ", "country_code": "XX", "nickname": "Al"},
        {"id": 3, "first_name": "Grace", "last_name": "Hopper", "status": "?",
         "score_text": None, "country_code": None, "nickname": None},
    ])
    create_table(url, "country", [
        sa.Column("code", sa.String(2), primary_key=True),
        sa.Column("name", sa.String(40)),
    ], [{"code": "GB", "name": "United Kingdom"}, {"code": "US", "name": "United States"}])


def test_mapping_record_form_renames(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_contacts(os_url)
    proj = project(tmp_path, backend, to_warehouse(
        "contacts", "contact", "contacts", mapping={"id": "contact_id", "last_name": "surname"},
        matchKey=["id"]))

    result = sync(proj, "contacts")

    assert counts(result) == {"processed": 3, "inserted": 3}
    with engine_for(wh_url) as engine:
        assert [c["name"] for c in sa.inspect(engine).get_columns("contacts")] == [
            "contact_id", "surname"]
    assert rows(wh_url, "contacts", "contact_id") == [
        (1, "Lovelace"), (2, "Turing"), (3, "Hopper")]


def test_mapping_list_form_with_every_transform(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_contacts(os_url)
    mapping = [
        {"source": "id", "target": "id"},
        {"source": "score_text", "target": "score",
         "transform": {"type": "cast", "targetType": "number"}},
        {"source": "status", "target": "status",
         "transform": {"type": "map", "mappings": {"A": "Active", "I": "Inactive"}}},
        {"source": "first_name", "target": "origin",
         "transform": {"type": "constant", "value": "crm"}},
        {"source": "country_code", "target": "country",
         "transform": {"type": "lookup", "table": "country", "keyField": "code",
                       "valueField": "name"}},
        {"source": "last_name", "target": "last_upper",
         "transform": {"type": "javascript", "expression": "value.toUpperCase()"}},
        {"source": "first_name", "target": "full_name",
         "transform": {"type": "javascript",
                       "expression": 'record.first_name + " " + record.last_name'}},
        {"source": "nickname", "target": "nickname", "defaultValue": "none"},
    ]
    proj = project(tmp_path, backend, to_warehouse(
        "contacts", "contact", "contacts", mapping=mapping, matchKey=["id"]))

    result = sync(proj, "contacts")

    assert errors(result) == []
    assert counts(result) == {"processed": 3, "inserted": 3}
    assert rows(wh_url, "contacts", "id") == [
        (1, 12.5, "Active", "crm", "United Kingdom", "LOVELACE", "Ada Lovelace", "none"),
        (2, 7.0, "Inactive", "crm", None, "TURING", "Alan Turing", "Al"),
        (3, None, "?", "crm", None, "HOPPER", "Grace Hopper", "none"),
    ]


def test_cast_error_is_reported_per_record(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_contacts(os_url)
    update(os_url, "contact", {"id": 2}, {"score_text": "twelve"})
    mapping = [
        {"source": "id", "target": "id"},
        {"source": "score_text", "target": "score",
         "transform": {"type": "cast", "targetType": "number"}},
    ]
    proj = project(tmp_path, backend, to_warehouse(
        "contacts", "contact", "contacts", mapping=mapping, matchKey=["id"]))

    result = sync(proj, "contacts")

    assert status(result) == "partial"
    assert counts(result) == {"processed": 3, "inserted": 2, "errored": 1}
    [error] = errors(result)
    assert error["recordId"] == "2"
    assert error["field"] == "score"
    assert error["code"] == "CAST_ERROR"
    assert "twelve" in error["message"] and "number" in error["message"]
    assert rows(wh_url, "contacts", "id") == [(1, 12.5), (3, None)]


def test_cast_error_on_the_match_key_names_the_cast(tmp_path: Path, sqlite_urls: Urls) -> None:
    """The user is told why the key is missing: its value could not be cast."""
    create_table(sqlite_urls[0], "item", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("code", sa.String(10)),
    ], [{"id": 1, "code": "7"}, {"id": 2, "code": "x"}])
    proj = project(tmp_path, sqlite_urls, to_warehouse(
        "items", "item", "items", matchKey=["code"],
        mapping=[{"source": "code", "target": "code",
                  "transform": {"type": "cast", "targetType": "number"}}]))

    result = sync(proj, "items")

    assert counts(result) == {"processed": 2, "inserted": 1, "errored": 1}
    assert ("2", "code", "CAST_ERROR") in [
        (e.get("recordId"), e.get("field"), e.get("code")) for e in errors(result)]


def test_map_transform_column_holds_the_mapped_values(tmp_path: Path, backend: Urls) -> None:
    """A one-letter source code mapped to a word: the created column must fit the word."""
    os_url, wh_url = backend
    create_table(os_url, "contact", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(1)),
        sa.Column("nickname", sa.String(2)),
    ], [{"id": 1, "status": "A", "nickname": None}])
    mapping = [
        {"source": "id", "target": "id"},
        {"source": "status", "target": "status",
         "transform": {"type": "map", "mappings": {"A": "Active"}}},
        {"source": "nickname", "target": "nickname", "defaultValue": "(none given)"},
    ]
    proj = project(tmp_path, backend, to_warehouse(
        "contacts", "contact", "contacts", mapping=mapping, matchKey=["id"]))

    result = sync(proj, "contacts")

    assert errors(result) == []
    assert rows(wh_url, "contacts") == [(1, "Active", "(none given)")]


def test_source_fields_limit_the_columns(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_contacts(os_url)
    proj = project(tmp_path, backend, to_warehouse(
        "contacts", "contact", "contacts", fields=["id", "last_name"]))

    assert counts(sync(proj, "contacts")) == {"processed": 3, "inserted": 3}
    assert rows(wh_url, "contacts", "id") == [(1, "Lovelace"), (2, "Turing"), (3, "Hopper")]
    update(os_url, "contact", {"id": 1}, {"first_name": "Augusta"})  # not a synced field
    assert counts(sync(proj, "contacts")) == {"processed": 3, "skipped": 3}


# -- 8. filters ----------------------------------------------------------------------------


def seed_filterable(url: str) -> None:
    create_table(url, "person", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(40)),
        sa.Column("status", sa.String(20)),
        sa.Column("score", sa.Integer),
        sa.Column("note", sa.String(40)),
    ], [
        {"id": 1, "name": "O'Brien", "status": "active", "score": 5, "note": "50% off"},
        {"id": 2, "name": "OBrien", "status": "active", "score": 15, "note": "500 off"},
        {"id": 3, "name": "O''Brien", "status": "inactive", "score": 25, "note": "5% off"},
        {"id": 4, "name": "Smith", "status": "active", "score": 35, "note": "x50%y"},
        {"id": 5, "name": None, "status": None, "score": None, "note": None},
        {"id": 6, "name": "u", "status": "active", "score": 5, "note": "a_b"},
        {"id": 7, "name": "u", "status": "active", "score": 5, "note": "acb"},
        {"id": 8, "name": "b", "status": "active", "score": 5, "note": "back\\slash"},
        {"id": 9, "name": "b", "status": "active", "score": 5, "note": "backslash"},
    ])


FILTERS = {
    "object": {"$and": [{"status": "active"}, {"score": {"$gte": 10}}]},
    "array": ["and", ["status", "=", "active"], ["score", ">=", 10]],
    "legacy_array": [["status", "=", "active"], ["score", ">=", 10]],
    "or_not": {"$or": [{"score": {"$lt": 10}}, {"$not": {"status": "active"}}]},
    "quote": {"name": "O'Brien"},
    "quote_array": ["name", "=", "O'Brien"],
    "percent": {"note": {"$contains": "50%"}},
    "percent_array": ["note", "contains", "50%"],
    "in": {"id": {"$in": [1, 3, 42]}},
    "underscore": {"note": {"$contains": "a_b"}},
    "backslash": {"note": {"$endsWith": "\\slash"}},
    "backslash_array": ["note", "endswith", "\\slash"],
}
EXPECTED = {
    "object": [2, 4], "array": [2, 4], "legacy_array": [2, 4], "or_not": [1, 3, 5, 6, 7, 8, 9],
    "quote": [1], "quote_array": [1], "percent": [1, 4], "percent_array": [1, 4], "in": [1, 3],
    "underscore": [6], "backslash": [8], "backslash_array": [8],
}


def test_filters_select_exactly(tmp_path: Path, backend: Urls) -> None:
    """Each filter (object and array forms, quotes, a literal %) as its own sync and table."""
    os_url, wh_url = backend
    seed_filterable(os_url)
    proj = project(tmp_path, backend, *[
        to_warehouse(case, "person", case, filters=f) for case, f in FILTERS.items()])

    found: dict[str, Any] = {}
    for case in FILTERS:
        result = sync(proj, case)
        assert status(result) == "completed", (case, errors(result))
        n = len(EXPECTED[case])
        assert counts(result) == {"processed": n, "inserted": n}, case
        found[case] = [r[0] for r in rows(wh_url, case, "id")]

    assert found == EXPECTED


def test_awkward_table_and_column_names(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    table = 'Contact "Book"'
    create_table(os_url, table, [
        sa.Column("ID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("First Name", sa.String(40)),
        sa.Column("it's", sa.String(40)),
    ], [{"ID": 1, "First Name": "Ada", "it's": "a"}, {"ID": 2, "First Name": "Bob", "it's": "b"},
        {"ID": 3, "First Name": "Al", "it's": None}])
    proj = project(tmp_path, backend, to_warehouse(
        "book", table, 'Address "Book" %s', filters={"First Name": {"$startsWith": "A"}},
        mapping={"ID": "Key", "First Name": "Given Name", "it's": "it's"}, matchKey=["ID"]))

    result = sync(proj, "book")

    assert counts(result) == {"processed": 2, "inserted": 2}
    assert rows(wh_url, 'Address "Book" %s', "Key") == [(1, "Ada", "a"), (3, "Al", None)]
    update(os_url, table, {"ID": 3}, {"First Name": "Alba"})
    assert counts(sync(proj, "book")) == {"processed": 2, "updated": 1, "skipped": 1}
    assert rows(wh_url, 'Address "Book" %s', "Key") == [(1, "Ada", "a"), (3, "Alba", None)]


# -- 9. error handling ---------------------------------------------------------------------


def validated(on_error: str, **validation: Any) -> dict[str, Any]:
    return to_warehouse("people", "person", "people",
                        mapping={"id": "id", "name": "name", "email": "email"},
                        batchSize=2, errorHandling={"onValidationError": on_error},
                        validation=validation)


def seed_with_a_bad_email(url: str) -> None:
    seed_people(url, 4)
    update(url, "person", {"id": 3}, {"email": None})


def people_table(url: str) -> list[tuple[Any, ...]]:
    return rows(url, "people", "id") if "people" in table_names(url) else []


def test_validation_skip(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_with_a_bad_email(os_url)
    proj = project(tmp_path, backend, validated("skip", required=["email"]))

    result = sync(proj, "people")

    assert status(result) == "partial"
    assert counts(result) == {"processed": 4, "inserted": 3, "errored": 1}
    assert errors(result) == [
        {"recordId": "3", "field": "email", "code": "REQUIRED", "message": "email is required"}]
    assert [r[0] for r in people_table(wh_url)] == [1, 2, 4]


def test_validation_fail_stops_before_the_failing_batch(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_with_a_bad_email(os_url)
    proj = project(tmp_path, backend, validated("fail", required=["email"]))

    result = sync(proj, "people")

    assert status(result) == "failed"
    assert "REQUIRED" in codes(result)
    assert any(e.get("recordId") == "3" for e in errors(result))
    assert [r[0] for r in people_table(wh_url)] == [1, 2]  # batch 1 committed, batch 2 not
    assert counts(result).get("inserted") == 2


def test_validation_log_writes_anyway(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_with_a_bad_email(os_url)
    proj = project(tmp_path, backend, validated("log", required=["email"]))

    result = sync(proj, "people")

    assert status(result) == "completed"
    assert counts(result) == {"processed": 4, "inserted": 4}
    assert [(e["recordId"], e["code"]) for e in errors(result)] == [("3", "REQUIRED")]
    assert [r[0] for r in people_table(wh_url)] == [1, 2, 3, 4]


def test_validation_required_on_an_unmapped_source_field(tmp_path: Path, backend: Urls) -> None:
    """`required` names a source field the mapping leaves out. Either the loader refuses it
    (validation names fields like matchKey does) or the run checks the source value; never may
    every record fail for a value it has."""
    os_url = backend[0]
    seed_with_a_bad_email(os_url)
    config = to_warehouse("people", "person", "people", **id_name(),
                          errorHandling={"onValidationError": "skip"},
                          validation={"required": ["email"]})
    try:
        proj = project(tmp_path, backend, config)
    except SyncConfigError as exc:
        assert "email" in str(exc)
        return

    result = sync(proj, "people")

    assert [(e["recordId"], e["code"]) for e in errors(result)] == [("3", "REQUIRED")]
    assert counts(result) == {"processed": 4, "inserted": 3, "errored": 1}


def test_validation_unique(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 5)
    update(os_url, "person", {"id": 4}, {"name": "name 1"})  # a duplicate of record 1
    proj = project(tmp_path, backend, validated("skip", unique=["name"]))

    result = sync(proj, "people")

    assert status(result) == "partial"
    assert counts(result) == {"processed": 5, "inserted": 4, "errored": 1}
    [error] = errors(result)
    assert (error["recordId"], error["field"], error["code"]) == ("4", "name", "UNIQUE")
    assert [r[0] for r in people_table(wh_url)] == [1, 2, 3, 5]


def test_validation_custom(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 4)
    update(os_url, "person", {"id": 2}, {"score": -5})
    sync_config = validated(
        "skip", custom=[{"name": "positive", "condition": "score >= 0",
                         "message": "score is negative"}])
    sync_config["destination"]["mapping"]["score"] = "score"
    proj = project(tmp_path, backend, sync_config)

    result = sync(proj, "people")

    assert status(result) == "partial"
    assert counts(result) == {"processed": 4, "inserted": 3, "errored": 1}
    [error] = errors(result)
    assert (error["recordId"], error["field"], error["code"]) == ("2", "positive", "VALIDATION")
    assert error["message"] == "score is negative"
    assert [r[0] for r in people_table(wh_url)] == [1, 3, 4]


def test_validation_custom_reads_unmapped_source_fields(tmp_path: Path, backend: Urls) -> None:
    """A custom condition is CEL over the record's fields: `score` is a source field, unmapped."""
    os_url, wh_url = backend
    seed_people(os_url, 4)
    update(os_url, "person", {"id": 2}, {"score": -5})
    proj = project(tmp_path, backend, validated(
        "skip", custom=[{"name": "positive", "condition": "record.score >= 0",
                         "message": "score is negative"}]))

    result = sync(proj, "people")

    assert [(e["recordId"], e["message"]) for e in errors(result)] == [
        ("2", "score is negative")]
    assert counts(result) == {"processed": 4, "inserted": 3, "errored": 1}
    assert [r[0] for r in people_table(wh_url)] == [1, 3, 4]


def refusing_destination(url: str) -> None:
    """A pre-created destination that refuses a negative score and a missing name."""
    create_table(url, "people", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("score", sa.Integer),
    ], constraints=[sa.CheckConstraint("score >= 0", name="score_positive")])


def refused(on_sync_error: str, **extra: Any) -> dict[str, Any]:
    return to_warehouse("people", "person", "people",
                        mapping={"id": "id", "name": "name", "score": "score"},
                        errorHandling={"onSyncError": on_sync_error}, batchSize=10, **extra)


def seed_refusable(url: str) -> None:
    seed_people(url, 5)
    update(url, "person", {"id": 2}, {"score": -1})
    update(url, "person", {"id": 4}, {"name": None})


def test_sync_error_skip_writes_the_good_rows(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_refusable(os_url)
    refusing_destination(wh_url)
    proj = project(tmp_path, backend, refused("skip"))
    sleeps: list[float] = []

    result = sync(proj, "people", sleep=sleeps.append)

    assert status(result) == "partial"
    assert counts(result) == {"processed": 5, "inserted": 3, "errored": 2}
    assert sorted((e["recordId"], e["code"]) for e in errors(result)) == [
        ("2", "WRITE_ERROR"), ("4", "WRITE_ERROR")]
    assert all(e["message"] for e in errors(result))
    assert rows(wh_url, "people", "id") == [(1, "name 1", 10), (3, "name 3", 30),
                                            (5, "name 5", 50)]
    assert sleeps == []  # skip does not retry
    # the refused records are tried again next time (they were not synced)
    again = sync(proj, "people", sleep=sleeps.append)
    assert counts(again) == {"processed": 5, "skipped": 3, "errored": 2}


def test_sync_error_fail(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_refusable(os_url)
    refusing_destination(wh_url)
    proj = project(tmp_path, backend, refused("fail"))
    sleeps: list[float] = []

    result = sync(proj, "people", sleep=sleeps.append)

    assert status(result) == "failed"
    assert codes(result) == ["WRITE_ERROR"]
    assert rows(wh_url, "people", "id") == []  # the batch is one transaction
    assert sleeps == []
    assert state_counts(wh_url)["_sync_assets_records"] == 0


def test_sync_error_retry_then_fail(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_refusable(os_url)
    refusing_destination(wh_url)
    proj = project(tmp_path, backend, refused("retry", retry={"maxAttempts": 2, "backoffMs": 10}))
    sleeps: list[float] = []

    result = sync(proj, "people", sleep=sleeps.append)

    assert status(result) == "failed"
    assert len(sleeps) == 2
    assert codes(result) == ["WRITE_ERROR"]
    assert rows(wh_url, "people", "id") == []


def test_retry_waits_backoff_ms_between_attempts(tmp_path: Path, backend: Urls) -> None:
    """PROTOCOL_NOTES B: retried `retry.maxAttempts` times, `retry.backoffMs` apart."""
    os_url, wh_url = backend
    seed_refusable(os_url)
    refusing_destination(wh_url)
    proj = project(tmp_path, backend, refused("retry", retry={"maxAttempts": 3, "backoffMs": 250}))
    sleeps: list[float] = []

    sync(proj, "people", sleep=sleeps.append)

    assert sleeps == [0.25, 0.25, 0.25]


def test_retry_zero_attempts_fails_at_once(tmp_path: Path, sqlite_urls: Urls) -> None:
    seed_refusable(sqlite_urls[0])
    refusing_destination(sqlite_urls[1])
    proj = project(tmp_path, sqlite_urls,
                   refused("retry", retry={"maxAttempts": 0, "backoffMs": 5}))
    sleeps: list[float] = []

    result = sync(proj, "people", sleep=sleeps.append)

    assert status(result) == "failed"
    assert codes(result) == ["WRITE_ERROR"]
    assert sleeps == []


# -- 11. secrets -----------------------------------------------------------------------------

PASSWORD = "pw-Secret-42"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_password(url: str) -> str:
    return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def _assert_secret_kept(result: Any) -> None:
    text = json.dumps(spec(result))
    assert PASSWORD not in text
    assert "pw-Secret" not in text
    assert status(result) == "failed"
    [error] = errors(result)
    assert error["message"] and "Traceback" not in error["message"]


@pytest.mark.postgres
def test_unreachable_database_fails_without_leaking_the_password(
    tmp_path: Path, pg_url: str
) -> None:
    dead = f"postgresql+psycopg2://syncer:{PASSWORD}@127.0.0.1:{_closed_port()}/nowhere"
    proj = project(tmp_path, (pg_url, dead), to_warehouse("people", "person", "people"))
    seed_people(pg_url, 2)

    result = sync(proj, "people")

    _assert_secret_kept(result)
    message = errors(result)[0]["message"]
    assert "127.0.0.1" in message or "connect" in message.lower()


@pytest.mark.postgres
def test_unreachable_source_fails_without_leaking_the_password(
    tmp_path: Path, pg_url: str
) -> None:
    dead = f"postgresql+psycopg2://syncer:{PASSWORD}@127.0.0.1:{_closed_port()}/nowhere"
    proj = project(tmp_path, (dead, pg_url), to_warehouse("people", "person", "people"))

    result = sync(proj, "people")

    _assert_secret_kept(result)


@pytest.mark.postgres
def test_missing_table_fails_without_leaking_the_password(
    tmp_path: Path, pg_url: str, pg_url_2: str
) -> None:
    proj = project(tmp_path, (_with_password(pg_url), _with_password(pg_url_2)),
                   to_warehouse("people", "no_such_table", "people"))

    result = sync(proj, "people")

    _assert_secret_kept(result)
    assert "no_such_table" in errors(result)[0]["message"]


@pytest.mark.postgres
def test_refused_rows_do_not_leak_the_password(
    tmp_path: Path, pg_url: str, pg_url_2: str
) -> None:
    seed_refusable(pg_url)
    refusing_destination(pg_url_2)
    proj = project(tmp_path, (_with_password(pg_url), _with_password(pg_url_2)),
                   refused("skip"))
    result = sync(proj, "people")
    assert status(result) == "partial"
    assert PASSWORD not in json.dumps(spec(result))


# -- 12. memory ------------------------------------------------------------------------------


def _peak_for(tmp_path: Path, n: int) -> tuple[int, float]:
    folder = tmp_path / str(n)
    folder.mkdir()
    urls = (f"sqlite:///{folder}/os.db", f"sqlite:///{folder}/wh.db")
    with engine_for(urls[0]) as engine, engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY, v INTEGER)")
        conn.exec_driver_sql(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
            "INSERT INTO item SELECT i, i * 7 FROM s", (n,))
    proj = project(folder, urls, to_warehouse(
        "items", "item", "items", batchSize=1000, audit={"trackChanges": False}))
    t0 = time.monotonic()
    tracemalloc.start()
    try:
        result = sync(proj, "items")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - t0
    assert counts(result) == {"processed": n, "inserted": n}
    assert count_rows(urls[1], "items") == n
    dispose_engines()
    return peak, elapsed


def test_memory_stays_flat(tmp_path: Path) -> None:
    small, _ = _peak_for(tmp_path, 20_000)
    large, seconds = _peak_for(tmp_path, 200_000)
    print(f"peak {small / 1e6:.1f} MB for 20k, {large / 1e6:.1f} MB for 200k ({seconds:.1f} s)")
    assert large < 2 * small, (small, large)


# -- 13. plan ----------------------------------------------------------------------------------


def test_plan_matches_the_run_and_writes_nothing(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 3)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", mapping={"id": "id", "name": "full_name"}))

    planned = plan(proj, "people")

    spec(planned.result)
    assert "people" not in table_names(wh_url)
    assert sum(state_counts(wh_url).values()) == 0
    assert planned.samples == {"insert": [{"id": 1, "full_name": "name 1"},
                                          {"id": 2, "full_name": "name 2"},
                                          {"id": 3, "full_name": "name 3"}]}
    result = sync(proj, "people")
    assert planned.stats == spec(result)["stats"]
    assert counts(result) == {"processed": 3, "inserted": 3}


def test_plan_of_changes_matches_the_run(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 4)
    proj = project(tmp_path, backend, to_warehouse("people", "person", "people", "sync",
                                                   **id_name()))
    sync(proj, "people")
    update(os_url, "person", {"id": 2}, {"name": "two"})
    delete(os_url, "person", {"id": 4})
    insert(os_url, "person", [person(5)])
    before, state_before = rows(wh_url, "people", "id"), state_counts(wh_url)

    planned = plan(proj, "people")

    assert rows(wh_url, "people", "id") == before
    assert state_counts(wh_url) == state_before
    assert planned.samples == {"insert": [{"id": 5, "name": "name 5"}],
                               "update": [{"id": 2, "name": "two"}],
                               "delete": [{"id": 4, "name": "name 4"}]}
    result = sync(proj, "people")
    assert planned.stats == spec(result)["stats"]
    assert counts(result) == {"processed": 5, "inserted": 1, "updated": 1, "deleted": 1,
                              "skipped": 2}


def test_plan_over_several_batches_into_a_missing_table(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 5)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", batchSize=2, **id_name()))
    sleeps: list[float] = []

    planned = plan(proj, "people", sleep=sleeps.append)

    assert spec(planned.result)["errors"] == []
    assert status(planned.result) == "completed"
    assert planned.stats["recordsInserted"] == 5
    assert "people" not in table_names(wh_url)
    assert sleeps == []


def test_plan_creates_no_tables(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 2)
    proj = project(tmp_path, backend, to_warehouse("people", "person", "people"))
    before = table_names(wh_url)
    plan(proj, "people")
    assert table_names(wh_url) == before


def test_plan_of_a_new_incremental_sync_counts_like_its_first_run(
    tmp_path: Path, backend: Urls
) -> None:
    """#13 defect 1: a plan before the first run of a sync with a changeTrackingField."""
    os_url, wh_url = backend
    seed_people(os_url, 3)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", syncMode="incremental", changeTrackingField="updated_at",
        audit=None, **id_name()))

    planned = plan(proj, "people")

    assert spec(planned.result)["errors"] == []
    assert status(planned.result) == "completed"
    assert planned.stats["recordsInserted"] == 3
    assert "people" not in table_names(wh_url)
    assert sum(state_counts(wh_url).values()) == 0
    assert planned.stats == spec(sync(proj, "people"))["stats"]


# -- optimization ----------------------------------------------------------------------------

def _people(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "email": f"p{i}@x.io", "name": f"person {i}",
             "updated_at": datetime(2026, 1, 1) + timedelta(minutes=i // 3)} for i in range(n)]


def _people_table(url: str) -> None:
    create_table(url, "people", [
        sa.Column("id", sa.Integer, primary_key=True), sa.Column("email", sa.Text),
        sa.Column("name", sa.Text), sa.Column("updated_at", sa.DateTime)])


def test_parallel_batches_write_the_same_rows_as_serial_batches(
    tmp_path: Path, backend: tuple[str, str]
) -> None:
    os_url, wh_url = backend
    _people_table(os_url)
    insert(os_url, "people", _people(2000))
    proj = project(tmp_path, backend, to_warehouse(
        "people", "people", "people", matchKey=["email"], batchSize=100,
        changeTrackingField="updated_at", optimization={"parallelBatches": True}))
    first = sync(proj, "people")
    assert counts(first) == {"processed": 2000, "inserted": 2000}
    assert rows(wh_url, "people", "id") == [
        (i, f"p{i}@x.io", f"person {i}", datetime(2026, 1, 1) + timedelta(minutes=i // 3))
        for i in range(2000)]
    update(os_url, "people", {"id": 7}, {"name": "seven", "updated_at": datetime(2027, 1, 1)})
    second = sync(proj, "people")
    assert counts(second) == {"processed": 1, "updated": 1}
    serial_logged = any("one writer at a time" in line for line in spec(first)["logs"])
    assert serial_logged == (backend[1].startswith("sqlite"))


def test_compression_stores_the_change_log_compressed(
    tmp_path: Path, backend: tuple[str, str]
) -> None:
    from sync_assets.state import StateStore

    os_url, wh_url = backend
    _people_table(os_url)
    insert(os_url, "people", _people(3))
    proj = project(tmp_path, backend, to_warehouse(
        "people", "people", "people", matchKey=["email"],
        optimization={"compressionEnabled": True}, audit={}))
    sync(proj, "people")
    with engine_for(wh_url) as engine, engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT after FROM _sync_assets_changes")).scalars().all()
        assert all(text.startswith("zlib:") for text in stored)
        log = StateStore("people").changes_of(conn)
    assert [c["operation"] for c in log] == ["insert"] * 3
    assert log[0]["after"] == {"id": 0, "email": "p0@x.io", "name": "person 0",
                               "updated_at": "2026-01-01 00:00:00"}


def test_an_external_resource_may_name_a_schema(tmp_path: Path, pg_url: str, pg_url_2: str) -> None:
    execute(pg_url_2, "CREATE SCHEMA analytics")
    _people_table(pg_url)
    insert(pg_url, "people", _people(3))
    proj = project(tmp_path, (pg_url, pg_url_2), to_warehouse(
        "people", "people", "analytics.people", matchKey=["email"]))
    assert counts(sync(proj, "people")) == {"processed": 3, "inserted": 3}
    with engine_for(pg_url_2) as engine:
        inspector = sa.inspect(engine)
        assert "people" in inspector.get_table_names(schema="analytics")
        assert "people" not in inspector.get_table_names()
        assert "_sync_assets_records" in inspector.get_table_names(schema="analytics")


# -- first loads -----------------------------------------------------------------------------

FIRST_LOAD = "first load into an empty destination"


def test_a_first_load_writes_without_looking_records_up(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 5)
    proj = project(tmp_path, backend, to_warehouse("people", "person", "people", **id_name()))
    first = sync(proj, "people")
    assert counts(first) == {"processed": 5, "inserted": 5}
    assert any(FIRST_LOAD in line for line in spec(first)["logs"])
    assert rows(wh_url, "people", "id") == [(i, f"name {i}") for i in range(1, 6)]
    update(os_url, "person", {"id": 2}, {"name": "two"})
    second = sync(proj, "people")
    assert counts(second) == {"processed": 5, "updated": 1, "skipped": 4}
    assert not any(FIRST_LOAD in line for line in spec(second)["logs"])


def test_a_destination_with_rows_is_looked_up_on_a_first_run(
    tmp_path: Path, sqlite_urls: Urls
) -> None:
    os_url, wh_url = sqlite_urls
    seed_people(os_url, 3)
    create_table(wh_url, "people", [sa.Column("id", sa.Integer, primary_key=True),
                                    sa.Column("name", sa.Text)], [{"id": 2, "name": "name 2"}])
    proj = project(tmp_path, sqlite_urls, to_warehouse("people", "person", "people",
                                                       **id_name()))
    result = sync(proj, "people")
    assert counts(result) == {"processed": 3, "inserted": 2, "skipped": 1}
    assert not any(FIRST_LOAD in line for line in spec(result)["logs"])


def test_a_key_the_source_may_repeat_is_looked_up_on_a_first_run(
    tmp_path: Path, sqlite_urls: Urls
) -> None:
    os_url, wh_url = sqlite_urls
    seed_people(os_url, 3, email="same@example.com")  # email is not unique in the source
    proj = project(tmp_path, sqlite_urls, to_warehouse(
        "people", "person", "people", matchKey=["email"],
        mapping={"email": "email", "name": "name"}))
    result = sync(proj, "people")
    assert not any(FIRST_LOAD in line for line in spec(result)["logs"])
    assert count_rows(wh_url, "people") == 1  # one email, written once
    assert counts(result)["processed"] == 3


# -- database URLs as users write them ------------------------------------------------------


def test_a_plain_postgresql_url_gets_the_copy_fast_path(pg_url: str) -> None:
    from sync_assets.connectors.sql import SqlTable, arrow

    create_table(pg_url, "person", person_columns())
    assert pg_url.startswith("postgresql://")
    table = SqlTable(pg_url, "person")
    assert table.engine.dialect.driver == "psycopg2"
    assert arrow.lane_available(table) and table.capabilities.arrow_writes


def test_an_explicit_psycopg3_url_syncs_the_same_rows(
        tmp_path: Path, pg_url: str, pg_url_2: str) -> None:
    psycopg3 = pg_url_2.replace("postgresql://", "postgresql+psycopg://", 1)
    seed_people(pg_url, 3)
    proj = project(tmp_path, (pg_url, psycopg3),
                   to_warehouse("people", "person", "people", **id_name()))
    assert counts(sync(proj, "people")) == {"processed": 3, "inserted": 3}
    assert rows(pg_url_2, "people", "id") == [(i, f"name {i}") for i in range(1, 4)]
    update(pg_url, "person", {"id": 2}, {"name": "two"})
    assert counts(sync(proj, "people")) == {"processed": 3, "updated": 1, "skipped": 2}


# -- long match keys -----------------------------------------------------------------------


def long_email(i: int) -> str:
    return f"p{i}@" + "x" * 1500 + ".io"


@pytest.mark.parametrize("old_state", [False, True], ids=["new-state", "state-of-old"])
def test_a_match_key_longer_than_1024_characters_syncs(
        tmp_path: Path, pg_url: str, pg_url_2: str, old_state: bool) -> None:
    create_table(pg_url, "person", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text), sa.Column("name", sa.Text)],
        [{"id": i, "email": long_email(i), "name": f"name {i}"} for i in (1, 2, 3)])
    if old_state:  # the state table as earlier versions made it: keys in varchar(1024)
        execute(pg_url_2, "CREATE TABLE _sync_assets_records (sync_name varchar(255), "
                "record_key varchar(1024), fingerprint varchar(32) NOT NULL, "
                "created boolean NOT NULL, PRIMARY KEY (sync_name, record_key))")
    proj = project(tmp_path, (pg_url, pg_url_2), to_warehouse(
        "people", "person", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"]))
    assert counts(sync(proj, "people")) == {"processed": 3, "inserted": 3}
    update(pg_url, "person", {"id": 2}, {"name": "two"})
    assert counts(sync(proj, "people")) == {"processed": 3, "updated": 1, "skipped": 2}
    assert rows(pg_url_2, "people", "email") == [
        (long_email(1), "name 1"), (long_email(2), "two"), (long_email(3), "name 3")]


def test_two_source_records_with_one_match_key_are_a_duplicate_key_error(
        tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 4)
    update(os_url, "person", {"id": 3}, {"email": "p1@example.com", "name": "copy"})
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"]))
    result = sync(proj, "people")
    assert status(result) == "partial"
    assert counts(result) == {"processed": 4, "inserted": 3, "errored": 1}
    assert errors(result) == [{
        "recordId": "3", "field": "email", "code": "DUPLICATE_KEY",
        "message": 'match key ["p1@example.com"] is also the key of record 1; only the '
                   "first is written"}]
    assert rows(wh_url, "people", "email") == [
        ("p1@example.com", "name 1"), ("p2@example.com", "name 2"),
        ("p4@example.com", "name 4")]


def test_a_repeated_match_key_in_a_source_without_a_key_is_a_duplicate_key_error(
        tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    create_table(os_url, "visit", [sa.Column("email", sa.Text), sa.Column("name", sa.Text)],
                 [{"email": "a@x.io", "name": "first"}, {"email": "b@x.io", "name": "b"},
                  {"email": "a@x.io", "name": "second"}])
    proj = project(tmp_path, backend, to_warehouse(
        "visits", "visit", "visits", mapping={"email": "email", "name": "name"},
        matchKey=["email"], batchSize=1))  # the repeat comes in a later page
    result = sync(proj, "visits")
    assert counts(result) == {"processed": 3, "inserted": 2, "errored": 1}
    assert [(e["recordId"], e["code"]) for e in errors(result)] == [("a@x.io", "DUPLICATE_KEY")]
    assert rows(wh_url, "visits", "email") == [("a@x.io", "first"), ("b@x.io", "b")]


def test_text_with_a_nul_character_is_refused_per_record_by_postgresql(
        tmp_path: Path, pg_url_2: str) -> None:
    os_url = f"sqlite:///{tmp_path}/os.db"
    seed_people(os_url, 3)
    update(os_url, "person", {"id": 2}, {"name": "bad\x00name"})
    proj = project(tmp_path, (os_url, pg_url_2), to_warehouse(
        "people", "person", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"], errorHandling={"onSyncError": "skip"}))
    result = sync(proj, "people")
    assert counts(result) == {"processed": 3, "inserted": 2, "errored": 1}
    assert errors(result) == [{
        "recordId": "2", "code": "WRITE_ERROR",
        "message": "warehouse.people refused the record: text holds a NUL character (\\x00), "
                   "which PostgreSQL text cannot store"}]
    assert rows(pg_url_2, "people", "email") == [("p1@example.com", "name 1"),
                                                 ("p3@example.com", "name 3")]


@pytest.mark.parametrize("lane", ["arrow", "records"])
def test_a_lost_source_connection_is_read_again(tmp_path: Path, pg_url: str,
                                                  pg_url_2: str, lane: str) -> None:
    """After each of the first batches every connection to the source database is killed
    by the server (pg_terminate_backend): the next page read finds its pooled connection
    dead, reads again on a fresh one, and the run completes with exact rows."""
    seed_people(pg_url, 9)
    extra = {} if lane == "arrow" else {"validation": {"required": ["email"]}}  # no lane
    proj = project(tmp_path, (pg_url, pg_url_2), to_warehouse(
        "people", "person", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"], batchSize=2, **extra))
    database = pg_url.rsplit("/", 1)[1]
    killed: list[int] = []

    def kill_source_connections(progress: Progress) -> None:
        if len(killed) < 2:
            with engine_for(pg_url) as admin, admin.connect() as conn:
                killed.append(len(conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                    ":db AND pid <> pg_backend_pid()"), {"db": database}).all()))

    result = sync(proj, "people", progress=kill_source_connections)
    assert killed[0] >= 1  # the engine's source connection died under it
    assert counts(result) == {"processed": 9, "inserted": 9}
    assert rows(pg_url_2, "people", "email") == [(f"p{i}@example.com", f"name {i}")
                                                 for i in range(1, 10)]


# -- destination drift -----------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["drop", "truncate", "delete some"])
def test_records_lost_in_the_destination_are_written_again(
        tmp_path: Path, backend: Urls, damage: str) -> None:
    os_url, wh_url = backend
    seed_people(os_url, 10)
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"], changeTrackingField="updated_at"))
    assert counts(sync(proj, "people")) == {"processed": 10, "inserted": 10}
    if damage == "drop":
        execute(wh_url, "DROP TABLE people")
    elif damage == "truncate":
        execute(wh_url, "DELETE FROM people")
    else:
        execute(wh_url, "DELETE FROM people WHERE email IN "
                        "('p2@example.com', 'p5@example.com', 'p9@example.com')")
    lost = 3 if damage == "delete some" else 10
    repaired = sync(proj, "people")
    assert counts(repaired) == {"processed": 10, "inserted": lost, **(
        {"skipped": 10 - lost} if lost < 10 else {})}
    said = [line for line in spec(repaired)["logs"] if "written again" in line]
    assert len(said) == 1
    assert rows(wh_url, "people", "email") == sorted(
        (f"p{i}@example.com", f"name {i}") for i in range(1, 11))
    assert counts(sync(proj, "people")) == {}  # and the cursor is where it was


def test_a_null_in_a_json_column_stays_sql_null(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    create_table(os_url, "doc", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("title", sa.Text), sa.Column("data", sa.JSON)],
        [{"id": 1, "title": "a", "data": {"k": 1}}, {"id": 2, "title": "b", "data": None}])
    create_table(wh_url, "docs", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("title", sa.Text), sa.Column("data", sa.JSON)],
        [{"id": 9, "title": "other", "data": {"x": 0}}])  # not empty: the record path
    proj = project(tmp_path, backend, to_warehouse("docs", "doc", "docs", matchKey=["id"]))
    assert counts(sync(proj, "docs")) == {"processed": 2, "inserted": 2}
    update(os_url, "doc", {"id": 2}, {"title": "b2"})
    assert counts(sync(proj, "docs")) == {"processed": 2, "updated": 1, "skipped": 1}
    with engine_for(wh_url) as engine, engine.connect() as conn:
        nulls = conn.execute(sa.text("SELECT id FROM docs WHERE data IS NULL")).scalars().all()
    assert nulls == [2]


def test_a_run_on_postgresql_waits_for_the_lock_of_its_sync(
        tmp_path: Path, pg_url: str, pg_url_2: str) -> None:
    from sync_assets.connectors.sql import SqlStateHost

    seed_people(pg_url, 3)
    proj = project(tmp_path, (pg_url, pg_url_2), to_warehouse(
        "people", "person", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"]))
    with SqlStateHost(pg_url_2).lock("people", 0) as held:  # another run holds it
        assert held
        busy = sync(proj, "people", lock_timeout=0.3)
    assert status(busy) == "cancelled" and codes(busy) == ["ALREADY_RUNNING"]
    assert "people" not in table_names(pg_url_2)
    assert counts(sync(proj, "people")) == {"processed": 3, "inserted": 3}
