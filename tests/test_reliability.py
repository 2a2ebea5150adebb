"""What an unlucky operator meets: locked databases, destinations that drift, records that
failed once, types that differ between the two sides (issue #13), on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from sync_assets.connectors.sql import SqlTransaction, dispose_engines, get_engine

from engine_helpers import (
    counts,
    create_table,
    engine_for,
    execute,
    insert,
    project,
    rows,
    spec,
    status,
    sync,
    to_warehouse,
)

Urls = tuple[str, str]


def query(url: str, statement: str) -> list[tuple[Any, ...]]:
    with engine_for(url) as engine, engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(statement))]


@pytest.fixture
def sqlite_urls(tmp_path: Path) -> Iterator[Urls]:
    yield f"sqlite:///{tmp_path}/os.db", f"sqlite:///{tmp_path}/wh.db"
    dispose_engines()


def people(url: str, n: int, **values: Any) -> None:
    create_table(url, "person", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(100)),
        sa.Column("score", sa.Integer),
    ], [{"id": i, "email": f"p{i}@x.io", "score": i, **values} for i in range(1, n + 1)])


def test_a_sqlite_destination_locked_by_another_process_is_waited_for(
        tmp_path: Path, sqlite_urls: Urls) -> None:
    """#13 defect 13: SQLite's busy timeout holds for a lock another process holds: the run
    waits for it instead of failing at once and waiting a retry's backoff."""
    os_url = sqlite_urls[0]
    people(os_url, 3)
    proj = project(tmp_path, sqlite_urls, to_warehouse("people", "person", "people"))
    sync(proj, "people")
    insert(os_url, "person", [{"id": 4, "email": "p4@x.io", "score": 4}])
    holder = sqlite3.connect(tmp_path / "wh.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO people (id, email, score) VALUES (99, 'held@x.io', 0)")
    threading.Timer(1.5, lambda: holder.execute("ROLLBACK")).start()
    sleeps: list[float] = []
    started = time.monotonic()

    result = sync(proj, "people", sleep=sleeps.append)

    assert time.monotonic() - started >= 1.4
    assert status(result) == "completed"
    assert counts(result) == {"processed": 4, "inserted": 1, "skipped": 3}
    assert sleeps == []  # no retry: SQLite itself waited
    assert not [line for line in spec(result)["logs"] if "locked" in line]
    holder.close()
    assert spec(result)["errors"] == []


def test_a_full_refresh_into_columns_of_other_types_rewrites_nothing_unchanged(
        tmp_path: Path, backend: Urls) -> None:
    """#13 defect 13: integers, floats, booleans and timestamps synced into an existing table
    of text columns are compared as that table stores them, so a second full refresh with
    nothing changed writes nothing."""
    os_url, wh_url = backend
    create_table(os_url, "reading", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("score", sa.Integer), sa.Column("price", sa.Float),
        sa.Column("ok", sa.Boolean), sa.Column("at", sa.DateTime),
        sa.Column("amount", sa.Numeric(10, 2)),
    ], [{"id": i, "score": i, "price": i + 0.25, "ok": i % 2 == 0,
         "at": datetime(2026, 1, i, 10, 30), "amount": Decimal(i) / 4} for i in range(1, 5)])
    create_table(wh_url, "readings", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        *[sa.Column(name, sa.Text) for name in ("score", "price", "ok", "at", "amount")],
    ])
    proj = project(tmp_path, backend, to_warehouse("readings", "reading", "readings",
                                                   audit=None))
    first = sync(proj, "readings")
    assert spec(first)["errors"] == []
    assert counts(first) == {"processed": 4, "inserted": 4}

    again = [counts(sync(proj, "readings", full_refresh=True)) for _ in range(2)]

    assert again == [{"processed": 4, "skipped": 4}] * 2


def test_jsonb_negative_zero_and_nulls_arrive_as_they_left(
        tmp_path: Path, pg_pair: Urls) -> None:
    """#13 defect 4, PostgreSQL to PostgreSQL: a jsonb column is created as jsonb, -0.0
    stays -0.0, SQL NULL stays NULL (not JSON 'null'), on the first load and on updates."""
    os_url, wh_url = pg_pair
    create_table(os_url, "doc", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("body", JSONB), sa.Column("x", sa.Float),
    ], [{"id": 1, "body": {"a": 1}, "x": -0.0}, {"id": 2, "body": None, "x": None}])
    proj = project(tmp_path, pg_pair, to_warehouse("docs", "doc", "docs", audit=None))
    assert counts(sync(proj, "docs")) == {"processed": 2, "inserted": 2}
    assert query(wh_url, "SELECT id, x::text FROM docs WHERE body IS NULL") == [(2, None)]
    assert query(wh_url, "SELECT x::text FROM docs WHERE id = 1") == [("-0",)]
    execute(os_url, "UPDATE doc SET body = NULL, x = '-0' WHERE id = 1")
    execute(os_url, "UPDATE doc SET body = '[1]', x = 2.5 WHERE id = 2")

    result = sync(proj, "docs", full_refresh=True)

    assert counts(result) == {"processed": 2, "updated": 2}
    assert rows(wh_url, "docs", "id") == [(1, None, -0.0), (2, [1], 2.5)]
    assert query(wh_url, "SELECT pg_typeof(body)::text, (x::text) FROM docs ORDER BY id") \
        == [("jsonb", "-0"), ("jsonb", "2.5")]
    assert query(wh_url, "SELECT count(*) FROM docs WHERE body IS NULL") == [(1,)]


def test_sqlite_timestamps_keep_their_stored_text(tmp_path: Path, sqlite_urls: Urls) -> None:
    """#13 defect 4, SQLite: a timestamp synced between SQLite tables keeps its text form
    ('2026-01-02 10:30:00', not '... .000000'), on the first load and on updates."""
    os_url, wh_url = sqlite_urls
    execute(os_url, "CREATE TABLE ev (id INTEGER PRIMARY KEY, at TIMESTAMP, n INTEGER)")
    execute(os_url, "INSERT INTO ev VALUES (1, '2026-01-02 10:30:00', 1), "
                    "(2, '2026-01-03 11:00:00.250000', 1)")
    execute(wh_url, "CREATE TABLE evs (id INTEGER PRIMARY KEY, at TIMESTAMP, n INTEGER)")
    proj = project(tmp_path, sqlite_urls, to_warehouse("evs", "ev", "evs", audit=None))
    sync(proj, "evs")
    execute(os_url, "UPDATE ev SET n = 2")
    sync(proj, "evs", full_refresh=True)

    assert query(wh_url, "SELECT id, at, n FROM evs ORDER BY id") == [
        (1, "2026-01-02 10:30:00", 2), (2, "2026-01-03 11:00:00.250000", 2)]


def test_a_match_key_repeated_in_a_later_batch_is_a_duplicate_key_error(
        tmp_path: Path, backend: Urls) -> None:
    """#13 defect 11: the second record with a key is errored DUPLICATE_KEY naming both
    records, whichever batch each is in; the first is written, and a rerun writes nothing."""
    os_url, wh_url = backend
    people(os_url, 5)
    execute(os_url, "UPDATE person SET email = 'p1@x.io', score = 40 WHERE id = 4")
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", batchSize=2, matchKey=["email"], audit=None,
        mapping={"email": "email", "score": "score"}))

    result = sync(proj, "people")

    assert status(result) == "partial"
    assert counts(result) == {"processed": 5, "inserted": 4, "errored": 1}
    assert spec(result)["errors"] == [{
        "recordId": "4", "field": "email", "code": "DUPLICATE_KEY",
        "message": 'match key ["p1@x.io"] is also the key of record 1; only the first is '
                   "written"}]
    assert rows(wh_url, "people", "email") == [
        ("p1@x.io", 1), ("p2@x.io", 2), ("p3@x.io", 3), ("p5@x.io", 5)]
    again = sync(proj, "people")
    assert counts(again) == {"processed": 5, "skipped": 4, "errored": 1}
    assert [e["code"] for e in spec(again)["errors"]] == ["DUPLICATE_KEY"]


# -- failed records are retried (#13 defect 10) ----------------------------------------------

T0 = datetime(2026, 1, 1, 9, 0)


def stamped_people(url: str, scores: list[Any]) -> None:
    create_table(url, "person", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(100)), sa.Column("score", sa.String(20)),
        sa.Column("updated_at", sa.DateTime),
    ], [{"id": i, "email": f"p{i}@x.io", "score": score,
         "updated_at": T0 + timedelta(minutes=i)} for i, score in enumerate(scores, start=1)])


CAST_SCORE = [{"source": "id", "target": "id"},
              {"source": "score", "target": "score",
               "transform": {"type": "cast", "targetType": "number"}}]


def failed(url: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT record_id, code, attempts FROM _sync_assets_failed "
                      "ORDER BY record_id")


def test_a_record_the_destination_refused_is_retried_until_it_is_written(
        tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    stamped_people(os_url, ["10", "20", "10", "40"])
    execute(wh_url, "CREATE TABLE people (id INTEGER PRIMARY KEY, score TEXT)",
            "CREATE UNIQUE INDEX people_score ON people (score)")
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", changeTrackingField="updated_at", audit=None,
        mapping={"id": "id", "score": "score"}, errorHandling={"onSyncError": "skip"}))

    first = sync(proj, "people")
    assert counts(first) == {"processed": 4, "inserted": 3, "errored": 1}
    assert [(e["recordId"], e["code"]) for e in spec(first)["errors"]] == [("3", "WRITE_ERROR")]
    assert failed(wh_url) == [("3", "WRITE_ERROR", 1)]

    second = sync(proj, "people")  # nothing changed in the source: only the failed record
    assert (status(second), counts(second)) == ("partial", {"processed": 1, "errored": 1})
    assert "retrying 1 record that failed in earlier runs" in "".join(spec(second)["logs"])
    assert failed(wh_url) == [("3", "WRITE_ERROR", 2)]

    execute(wh_url, "DROP INDEX people_score")
    third = sync(proj, "people")
    assert (status(third), counts(third)) == ("completed", {"processed": 1, "inserted": 1})
    assert failed(wh_url) == []
    assert rows(wh_url, "people", "id") == [(1, "10"), (2, "20"), (3, "10"), (4, "40")]
    assert counts(sync(proj, "people")) == {}


def test_a_failed_record_is_read_once_when_its_source_changes(
        tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    stamped_people(os_url, ["1", "n/a", "3"])
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", changeTrackingField="updated_at", audit=None,
        mapping=CAST_SCORE))
    assert counts(sync(proj, "people")) == {"processed": 3, "inserted": 2, "errored": 1}
    assert counts(sync(proj, "people")) == {"processed": 1, "errored": 1}
    assert failed(wh_url) == [("2", "CAST_ERROR", 2)]

    execute(os_url, "UPDATE person SET score = '2', updated_at = '2026-01-02 09:00:00' "
                    "WHERE id = 2")
    result = sync(proj, "people")

    assert (status(result), counts(result)) == ("completed", {"processed": 1, "inserted": 1})
    assert failed(wh_url) == []
    assert [r[:2] for r in rows(wh_url, "people", "id")] == [(1, 1), (2, 2), (3, 3)]


def test_a_failed_record_that_left_the_source_is_forgotten(
        tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    stamped_people(os_url, ["1", "n/a"])
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", changeTrackingField="updated_at", audit=None,
        mapping=CAST_SCORE))
    sync(proj, "people")
    execute(os_url, "DELETE FROM person WHERE id = 2")

    result = sync(proj, "people")

    assert (status(result), counts(result)) == ("completed", {})
    assert failed(wh_url) == []


def test_an_expression_result_the_column_cannot_hold_errors_only_its_record(
        tmp_path: Path, backend: Urls) -> None:
    """#13 defect 12: an expression that returns a list for a text column (here `split`
    on a value holding a comma) errors that record, and the rest of its batch is written."""
    os_url, wh_url = backend
    people(os_url, 3)
    execute(os_url, "UPDATE person SET email = 'a,b@x.io' WHERE id = 2")
    proj = project(tmp_path, backend, to_warehouse(
        "people", "person", "people", audit=None, mapping=[
            {"source": "id", "target": "id"},
            {"source": "email", "target": "email", "transform": {
                "type": "javascript",
                "expression": 'value.contains(",") ? value.split(",") : value'}}]))

    result = sync(proj, "people")

    assert counts(result) == {"processed": 3, "inserted": 2, "errored": 1}
    assert spec(result)["errors"] == [{
        "recordId": "2", "field": "email", "code": "EXPRESSION_ERROR",
        "message": "the expression returned a list, and email holds text"}]
    assert rows(wh_url, "people", "id") == [(1, "p1@x.io"), (3, "p3@x.io")]


def test_a_two_way_sync_into_a_table_without_a_mapped_field_fails_with_a_message(
        tmp_path: Path, sqlite_urls: Urls) -> None:
    """Found by the config fuzz (#13 defect 6): it was a FieldError traceback."""
    os_url, wh_url = sqlite_urls
    people(os_url, 2)
    execute(wh_url, "CREATE TABLE people (email TEXT PRIMARY KEY)")
    proj = project(tmp_path, sqlite_urls, to_warehouse(
        "people", "person", "people", audit=None, direction="bidirectional",
        matchKey=["email"], mapping={"email": "email", "score": "score"}))

    result = sync(proj, "people")

    assert status(result) == "failed"
    [error] = spec(result)["errors"]
    assert error["code"] == "CONFIG" and "score" in error["message"]



def test_an_unparsable_database_url_is_never_shown() -> None:
    """A secret put where the URL belongs (`url: ${DB_PASSWORD}`) must not be printed."""
    from sync_assets.connectors.sql import safe_url

    assert safe_url("hunter2-S3cret:x") == "<an unparsable database URL>"


def test_a_cel_expression_nested_too_deeply_is_an_expression_error() -> None:
    from sync_assets.engine.cel import ExpressionError, compile_expression

    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("(" * 3000 + "1" + ")" * 3000)


def test_an_integer_sqlite_cannot_hold_errors_only_its_record(
        tmp_path: Path, sqlite_urls: Urls) -> None:
    os_url, wh_url = sqlite_urls
    create_table(os_url, "big", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("n", sa.Numeric(30, 0))],
        [{"id": 1, "n": Decimal(5)}, {"id": 2, "n": Decimal(2**70)}])
    execute(wh_url, "CREATE TABLE bigs (id INTEGER PRIMARY KEY, n INTEGER)")
    proj = project(tmp_path, sqlite_urls, to_warehouse(
        "bigs", "big", "bigs", audit=None, errorHandling={"onSyncError": "skip"},
        mapping=[{"source": "id", "target": "id"},
                 {"source": "n", "target": "n", "transform": {"type": "cast",
                                                               "targetType": "number"}}]))

    result = sync(proj, "bigs")

    assert counts(result) == {"processed": 2, "inserted": 1, "errored": 1}
    assert rows(wh_url, "bigs", "id") == [(1, 5)]


def test_a_plan_does_not_wait_between_retries(tmp_path: Path, sqlite_urls: Urls) -> None:
    """The engine's plan(), not only the CLI's: a refused batch is not waited on."""
    from sync_assets.engine import plan

    os_url, wh_url = sqlite_urls
    people(os_url, 2)
    execute(wh_url, "CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT, score INTEGER "
                    "CHECK (score < 0))")
    proj = project(tmp_path, sqlite_urls, to_warehouse(
        "people", "person", "people", audit=None, retry={"maxAttempts": 3, "backoffMs": 60000}))
    started = time.monotonic()

    planned = plan(proj, "people")

    assert time.monotonic() - started < 10
    assert status(planned.result) == "failed"


def test_a_sqlite_writer_holds_an_index_of_a_million_keys_in_its_cache(
        tmp_path: Path) -> None:
    """A batch of keys in random order touches a page of every index; a writing transaction
    keeps 32 MiB of pages between batches and checkpoints every 256 MiB of WAL, where a
    reading one keeps SQLite's default 2 MiB (a source scan gains nothing from a cache)."""
    url = f"sqlite:///{tmp_path}/wh.db"
    sqlite3.connect(tmp_path / "wh.db").close()
    engine = get_engine(url)
    try:
        with SqlTransaction(engine, url, rollback=True) as conn:
            reader = conn.exec_driver_sql("PRAGMA cache_size").scalar()
        with SqlTransaction(engine, url, rollback=False) as conn:
            writer = (conn.exec_driver_sql("PRAGMA cache_size").scalar(),
                      conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar(),
                      conn.exec_driver_sql("PRAGMA journal_size_limit").scalar())
    finally:
        dispose_engines()

    assert reader == -2000  # SQLite's default
    assert writer == (-32768, 65536, 256 * 1024 * 1024)
