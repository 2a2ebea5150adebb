"""What an unlucky operator meets: locked databases, destinations that drift, records that
failed once, types that differ between the two sides (issue #13), on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync_assets.connectors.sql import dispose_engines

from engine_helpers import (
    counts,
    create_table,
    insert,
    project,
    spec,
    status,
    sync,
    to_warehouse,
)

Urls = tuple[str, str]


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
