"""`--full-refresh` on the Arrow lane: each page compared with the destination by the
destination (staged and joined, `Endpoint.differing`), so a refresh with nothing changed
makes no record object, one that finds a row changed by someone writes exactly that row, and
a lost state is rebuilt from what the destination holds. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync_assets.connectors.sql import SqlTable
from sync_assets.engine import run
from sync_assets.engine.reading import Reading

from engine_helpers import counts, create_table, execute, project, rows, to_warehouse

N = 2500
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def person(i: int) -> dict[str, Any]:
    return {"id": i, "email": f"p{i}@x.io", "name": None if i % 7 == 0 else f"name {i}",
            "amount": Decimal(i * 37 % 10_000) / 100, "ratio": i / 8, "active": i % 3 == 0,
            "born": date(1990, 1, 1) + timedelta(days=i),
            "updated_at": T0 + timedelta(seconds=i)}


MAPPING = {"email": "email", "name": "name", "amount": "amount", "ratio": "ratio",
           "active": "active", "born": "born", "updated_at": "updated_at"}


@pytest.fixture
def synced(tmp_path: Path, backend: tuple[str, str]) -> tuple[Any, str]:
    source, warehouse = backend
    create_table(source, "people", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text, unique=True, nullable=False), sa.Column("name", sa.Text),
        sa.Column("amount", sa.Numeric(12, 2)), sa.Column("ratio", sa.Float),
        sa.Column("active", sa.Boolean), sa.Column("born", sa.Date),
        sa.Column("updated_at", sa.DateTime(timezone=True))],
        [person(i) for i in range(1, N + 1)])
    proj = project(tmp_path, backend, to_warehouse(
        "people", "people", "people", mapping=MAPPING, matchKey=["email"],
        changeTrackingField="updated_at", batchSize=1000))
    assert counts(run(proj, "people")) == {"processed": N, "inserted": N}
    return proj, warehouse


@pytest.fixture
def record_path(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of records each call of the record path got."""
    sizes: list[int] = []
    original = Reading._record_page

    def counted(self: Any, page: Any, request: Any, cursor: Any = None) -> None:
        sizes.append(len(page))
        original(self, page, request, cursor)

    monkeypatch.setattr(Reading, "_record_page", counted)
    return sizes


def test_a_refresh_with_nothing_changed_skips_every_record_set_based(
        synced: tuple[Any, str], record_path: list[int]) -> None:
    proj, _ = synced
    assert counts(run(proj, "people", full_refresh=True)) == {"processed": N, "skipped": N}
    assert record_path == []


def test_a_refresh_writes_back_exactly_the_row_someone_changed(
        synced: tuple[Any, str], record_path: list[int]) -> None:
    proj, warehouse = synced
    execute(warehouse, "UPDATE people SET name = 'edited', ratio = 1 WHERE email = 'p41@x.io'",
            "UPDATE people SET active = NULL WHERE email = 'p43@x.io'")
    assert counts(run(proj, "people", full_refresh=True)) == {
        "processed": N, "updated": 2, "skipped": N - 2}
    assert record_path == [2]
    with sa.create_engine(warehouse).connect() as conn:
        held = {r.email: r for r in conn.execute(sa.text("SELECT * FROM people"))}
    assert (held["p41@x.io"].name, held["p41@x.io"].ratio) == ("name 41", 41 / 8)
    assert held["p43@x.io"].active in (False, 0)


def test_a_refresh_reads_in_key_order_and_moves_the_cursor_once_at_the_end(
        synced: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # pages in key order compare with runs of the destination's keys; the cursor, which
    # pages no longer follow, goes to the high-water mark when every page is in
    proj, warehouse = synced
    execute(warehouse, "DELETE FROM _sync_assets_cursor")
    orders: list[tuple[list[str], bool]] = []
    original = Reading._read_pass

    def read_pass(self: Any, request: Any, offset: int = 0) -> int:
        orders.append((list(request.order_by), self._page_cursors(request)))
        return original(self, request, offset)

    monkeypatch.setattr(Reading, "_read_pass", read_pass)
    assert counts(run(proj, "people", full_refresh=True)) == {"processed": N, "skipped": N}
    assert orders[0] == (["id"], False)
    monkeypatch.setattr(Reading, "_read_pass", original)
    # the cursor is at the end: the next incremental run finds nothing past it
    assert counts(run(proj, "people")) == {}


def test_a_refresh_that_stops_half_way_leaves_the_cursor_where_it_was(
        synced: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    proj, warehouse = synced
    before = rows(warehouse, "_sync_assets_cursor")
    pages = 0
    original = Reading._arrow_page

    def failing(self: Any, page: Any, request: Any, reached: int) -> bool:
        nonlocal pages
        pages += 1
        if pages == 3:  # page 1 is settled (and was once its cursor saved) by page 2
            raise RuntimeError("the source went away")
        return original(self, page, request, reached)

    monkeypatch.setattr(Reading, "_arrow_page", failing)
    with pytest.raises(RuntimeError, match="the source went away"):
        run(proj, "people", full_refresh=True)
    assert rows(warehouse, "_sync_assets_cursor") == before


def test_a_refresh_rebuilds_a_lost_state_from_the_destination(
        synced: tuple[Any, str], record_path: list[int]) -> None:
    proj, warehouse = synced
    execute(warehouse, "DELETE FROM _sync_assets_records")
    assert counts(run(proj, "people", full_refresh=True)) == {"processed": N, "skipped": N}
    assert record_path == []
    # the fingerprints are back: an incremental run from the start skips every record too
    execute(warehouse, "DELETE FROM _sync_assets_cursor")
    assert counts(run(proj, "people")) == {"processed": N, "skipped": N}
    assert record_path == []


def test_a_sync_onto_a_table_it_did_not_load_compares_set_based(
        synced: tuple[Any, str], record_path: list[int]) -> None:
    # a lost state (or a new sync onto a loaded table): no refresh asked for, yet every
    # record the state does not know is compared with the destination by the destination
    proj, warehouse = synced
    execute(warehouse, "DELETE FROM _sync_assets_records", "DELETE FROM _sync_assets_cursor",
            "UPDATE people SET name = 'edited' WHERE email = 'p41@x.io'")
    assert counts(run(proj, "people")) == {"processed": N, "updated": 1, "skipped": N - 1}
    assert record_path == [1]
    with sa.create_engine(warehouse).connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM people WHERE email = 'p41@x.io'")
                            ).scalar() == "name 41"
    execute(warehouse, "DELETE FROM _sync_assets_cursor")  # the state holds them all again
    assert counts(run(proj, "people")) == {"processed": N, "skipped": N}
    assert record_path == [1]
    with sa.create_engine(warehouse).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), sum(CASE WHEN created THEN 1 ELSE 0 END)"
                                    " FROM _sync_assets_records")).one() == (N, 0)


def test_a_planned_refresh_changes_nothing(synced: tuple[Any, str]) -> None:
    proj, warehouse = synced
    execute(warehouse, "UPDATE people SET name = 'edited' WHERE email = 'p42@x.io'")
    assert counts(run(proj, "people", full_refresh=True, dry_run=True)) == {
        "processed": N, "updated": 1, "skipped": N - 1}
    assert {r[0]: r[1] for r in rows(warehouse, "people", "email")}["p42@x.io"] == "edited"


@pytest.mark.parametrize("indexed", [True, False])
def test_a_refresh_probes_the_keys_index_page_by_page_on_postgresql(
        tmp_path: Path, pg_url: str, pg_url_2: str, indexed: bool,
        record_path: list[int]) -> None:
    # a fresh temporary table has no statistics: PostgreSQL merged it with the whole
    # table's index, up to the page's last key (0.18 s a page at 800,000 rows, not 0.01 s)
    create_table(pg_url, "people", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text, unique=True, nullable=False), sa.Column("name", sa.Text)],
        [{"id": i, "email": f"p{i}@x.io", "name": f"name {i}"} for i in range(1, N + 1)])
    create_table(pg_url_2, "people", [
        sa.Column("email", sa.Text, primary_key=indexed, nullable=False),
        sa.Column("name", sa.Text)])
    proj = project(tmp_path, (pg_url, pg_url_2), to_warehouse(
        "people", "people", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"], batchSize=1000))
    assert counts(run(proj, "people")) == {"processed": N, "inserted": N}
    execute(pg_url_2, "UPDATE people SET name = 'edited' WHERE email = 'p41@x.io'")
    record_path.clear()
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        result = run(proj, "people", full_refresh=True)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)

    assert counts(result) == {"processed": N, "updated": 1, "skipped": N - 1}
    assert record_path == [1]
    assert dict(rows(pg_url_2, "people", "email"))["p41@x.io"] == "name 41"
    probes = statements.count("SET LOCAL enable_mergejoin = off")
    assert probes == (3 if indexed else 0)  # one per page, only where an index can serve


def test_a_refresh_on_postgresql_compares_a_page_while_the_next_is_read(
        tmp_path: Path, pg_url: str, pg_url_2: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the destination compares page k in a thread of its own while page k+1 is read and
    # fingerprinted; k's writes, counts and progress still come before anything of k+1's
    create_table(pg_url, "people", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text, unique=True, nullable=False), sa.Column("name", sa.Text)],
        [{"id": i, "email": f"p{i}@x.io", "name": f"name {i}"} for i in range(1, N + 1)])
    proj = project(tmp_path, (pg_url, pg_url_2), to_warehouse(
        "people", "people", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"], batchSize=1000))
    assert counts(run(proj, "people")) == {"processed": N, "inserted": N}
    execute(pg_url_2, "UPDATE people SET name = 'edited' WHERE email IN "
                      "('p41@x.io', 'p2041@x.io', 'p2500@x.io')")
    threads: list[str] = []
    original = SqlTable.differing

    def differing(self: Any, tx: Any, key: Any, data: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(self, tx, key, data)

    monkeypatch.setattr(SqlTable, "differing", differing)
    seen: list[tuple[int, list[str]]] = []

    def progress(p: Any) -> None:  # what the destination holds as each page is reported
        edited = [r[0] for r in rows(pg_url_2, "people", "email") if r[1] == "edited"]
        seen.append((p.read, sorted(edited)))

    result = run(proj, "people", full_refresh=True, progress=progress)

    assert counts(result) == {"processed": N, "updated": 3, "skipped": N - 3}
    assert seen == [(1000, ["p2041@x.io", "p2500@x.io"]), (2000, ["p2041@x.io", "p2500@x.io"]),
                    (2500, [])]
    assert len(threads) == 3 and all(t.startswith("sync-compare") for t in threads)
