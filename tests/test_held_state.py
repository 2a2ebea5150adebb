"""A pass that reads every record holds the sync's state in memory from its second page
(`state/held.py`): a rerun with nothing changed asks the state one scan, not a query a page,
and a changed record is still looked up exactly and written. Run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from sync_assets.connectors.sql import arrow as sql_arrow
from sync_assets.engine import reading, run
from sync_assets.state import HeldFingerprints

from engine_helpers import counts, create_table, execute, project, rows, to_warehouse

N = 2500  # three pages of 1000


# -- the snapshot ------------------------------------------------------------------------
def held(*rows: tuple[str, str, bool]) -> HeldFingerprints:
    snapshot = HeldFingerprints.scanned([list(rows)], limit=10)
    assert snapshot is not None
    return snapshot


def test_a_record_held_with_its_fingerprint_gets_its_created_flag() -> None:
    found = held(("[1]", "fp1", True), ("[2]", "fp2", False)).lookup(["[2]", "[1]"],
                                                                     ["fp2", "fp1"])
    assert (found.created, found.ask) == ([False, True], [])


def test_a_key_held_with_another_fingerprint_is_asked_and_an_unknown_key_is_not() -> None:
    found = held(("[1]", "fp1", True), ("[2]", "fp2", True)).lookup(
        ["[1]", "[3]", "[2]"], ["changed", "fp3", "fp2"])
    assert (found.created, found.ask) == ([None, None, True], [0])


def test_two_keys_sharing_a_hash_cost_an_exact_lookup_not_a_wrong_answer() -> None:
    # the same key hash twice, as two keys colliding would give
    same = np.array([hash("[1]"), hash("[1]")], np.int64)
    snapshot = HeldFingerprints(same, np.array([hash("a"), hash("b")], np.int64),
                                np.array([True, True]))
    found = snapshot.lookup(["[1]", "[1]"], ["a", "b"])
    assert found.created[0] is True  # the first of the two
    assert found.ask == [1]  # the second is not vouched for: asked


def test_an_empty_state_holds_nothing_and_asks_nothing() -> None:
    found = held().lookup(["[1]"], ["fp1"])
    assert (found.created, found.ask) == ([None], [])


def test_a_state_past_the_limit_is_not_held() -> None:
    chunks = [[(f"[{i}]", "fp", True) for i in range(6)], [("[9]", "fp", True)] * 5]
    assert HeldFingerprints.scanned(chunks, limit=10) is None
    assert len(HeldFingerprints.scanned(chunks, limit=11) or []) == 11


# -- in a run ------------------------------------------------------------------------------
@pytest.fixture
def full_sync(tmp_path: Path, backend: tuple[str, str]) -> tuple[Any, str, str]:
    source, warehouse = backend
    create_table(source, "people", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text, unique=True, nullable=False), sa.Column("name", sa.Text)],
        [{"id": i, "email": f"p{i}@x.io", "name": f"name {i}"} for i in range(1, N + 1)])
    proj = project(tmp_path, backend, to_warehouse(
        "people", "people", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"], syncMode="full", batchSize=1000))
    assert counts(run(proj, "people")) == {"processed": N, "inserted": N}
    return proj, source, warehouse


@contextmanager
def state_queries() -> Iterator[dict[str, int]]:
    """Keys looked up in the state (by `= ANY` or `IN`) and scans of the whole state."""
    seen = {"keys asked": 0, "scans": 0}

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if not statement.lstrip().startswith("SELECT _sync_assets_records.record_key, "
                                              "_sync_assets_records.fingerprint"):
            return
        if "record_key = ANY" in statement:  # PostgreSQL: one array
            seen["keys asked"] += sum(len(v) for v in parameters.values()
                                      if isinstance(v, list))
        elif "record_key IN" in statement:  # SQLite: a placeholder a key, after sync_name
            seen["keys asked"] += statement.count("?") - 1
        else:
            seen["scans"] += 1

    select_arrow = sql_arrow.select_arrow

    def copied(conn: Any, stmt: Any, schema: Any) -> Any:
        """PostgreSQL scans by COPY, a chunk after the last key of the one before."""
        if "_sync_assets_records.record_key >" not in str(stmt):
            seen["scans"] += 1
        return select_arrow(conn, stmt, schema)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    sql_arrow.select_arrow = copied
    try:
        yield seen
    finally:
        sql_arrow.select_arrow = select_arrow
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)


def test_a_rerun_with_nothing_changed_asks_the_state_once_then_scans_it(
        full_sync: tuple[Any, str, str]) -> None:
    proj, _, _ = full_sync
    with state_queries() as seen:
        assert counts(run(proj, "people")) == {"processed": N, "skipped": N}
    assert seen == {"keys asked": 1000, "scans": 1}  # the first page asked, the rest held


def test_a_record_changed_on_a_later_page_is_asked_and_written(
        full_sync: tuple[Any, str, str]) -> None:
    proj, source, warehouse = full_sync
    execute(source, "UPDATE people SET name = 'edited' WHERE id = 2400",
            "DELETE FROM people WHERE id = 2401")
    execute(source, "INSERT INTO people (id, email, name) VALUES (2600, 'new@x.io', 'new')")
    with state_queries() as seen:
        assert counts(run(proj, "people")) == {
            "processed": N, "inserted": 1, "updated": 1, "skipped": N - 2}
    # page 1 asked whole; on page 3 only the changed record (the new one is known absent
    # from what is held); the record path then asks for the two it writes
    assert seen == {"keys asked": 1000 + 1 + 2, "scans": 1}
    held_rows = dict(rows(warehouse, "people", "email"))
    assert (held_rows["p2400@x.io"], held_rows["new@x.io"]) == ("edited", "new")
    assert counts(run(proj, "people")) == {"processed": N, "skipped": N}


def test_past_the_limit_every_page_asks_the_state(full_sync: tuple[Any, str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    proj, source, warehouse = full_sync
    monkeypatch.setattr(reading, "HELD_LIMIT", N - 1)
    execute(source, "UPDATE people SET name = 'edited' WHERE id = 2400")
    with state_queries() as seen:
        assert counts(run(proj, "people")) == {
            "processed": N, "updated": 1, "skipped": N - 1}
    # the scan stopped at the limit: every page asked, and the record path for the one
    assert seen == {"keys asked": N + 1, "scans": 1}
    assert dict(rows(warehouse, "people", "email"))["p2400@x.io"] == "edited"


def test_a_single_page_sync_never_scans(tmp_path: Path, backend: tuple[str, str]) -> None:
    source, _ = backend
    create_table(source, "people", [
        sa.Column("email", sa.Text, primary_key=True), sa.Column("name", sa.Text)],
        [{"email": f"p{i}@x.io", "name": "n"} for i in range(10)])
    proj = project(tmp_path, backend, to_warehouse(
        "people", "people", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"], syncMode="full"))
    run(proj, "people")
    with state_queries() as seen:
        assert counts(run(proj, "people")) == {"processed": 10, "skipped": 10}
    assert seen == {"keys asked": 10, "scans": 0}


def test_a_scan_read_in_chunks_holds_every_key_however_it_is_spelt(
        tmp_path: Path, backend: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The state is scanned a chunk at a time (PostgreSQL: by COPY, each chunk after the
    last key of the one before): keys with quotes, commas, backslashes, line breaks and
    non-ASCII text are all held, and a rerun asks only its first page."""
    from sync_assets.state import store

    monkeypatch.setattr(store, "_SCAN", 700)  # four chunks of 2,500 keys, the last short
    source, _ = backend
    odd = ['"', ",", "\\", "\n", "ü", "'", " ", "日本"]
    create_table(source, "people", [
        sa.Column("code", sa.Text, primary_key=True), sa.Column("name", sa.Text)],
        [{"code": f"k{i:04d}{odd[i % len(odd)]}", "name": "n"} for i in range(N)])
    proj = project(tmp_path, backend, to_warehouse(
        "people", "people", "people", mapping={"code": "code", "name": "name"},
        matchKey=["code"], syncMode="full", batchSize=1000))
    assert counts(run(proj, "people")) == {"processed": N, "inserted": N}
    scan = HeldFingerprints.scanned_columns.__func__  # type: ignore[attr-defined]
    sizes: list[int] = []

    def sized(cls: Any, chunks: Any, limit: int) -> Any:
        chunks = list(chunks)
        sizes.extend(len(keys) for keys, _fps, _created in chunks)
        return scan(cls, chunks, limit)

    monkeypatch.setattr(HeldFingerprints, "scanned_columns", classmethod(sized))
    with state_queries() as seen:
        assert counts(run(proj, "people")) == {"processed": N, "skipped": N}
    assert seen == {"keys asked": 1000, "scans": 1}
    assert sizes == [700, 700, 700, 400]
