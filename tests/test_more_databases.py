"""DuckDB and MariaDB through the SQL connector (issue #11): every common column type from
PostgreSQL arrives with its value, reruns write nothing, incremental runs write exactly the
changes. (The contract suite, tests/test_contract.py, runs the operations and modes on both.)"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from sync_assets.connectors.sql import SqlTable

from engine_helpers import (
    counts,
    create_table,
    execute,
    insert,
    project,
    spec,
    sync,
    to_warehouse,
)

T0 = datetime(2026, 3, 1, 9, 30, 15, 250000)


def typed_rows(n: int) -> list[dict[str, Any]]:
    return [{
        "id": i, "email": f"p{i}@x.io", "amount": Decimal(f"{i}.{i % 100:02d}"),
        "big": 2**40 + i, "ratio": i / 8, "active": i % 2 == 0, "notes": f"note ü {i}",
        "at": T0 + timedelta(minutes=i), "at_tz": (T0 + timedelta(hours=i)).replace(tzinfo=UTC),
        "day": date(2026, 1, 1) + timedelta(days=i), "clock": time(10, i % 60, 5),
        "doc": {"n": i, "tags": ["a", "b"]}, "ref": uuid.UUID(int=i),
        "updated_at": T0 + timedelta(minutes=i),
    } for i in range(1, n + 1)]


def typed_source(url: str, n: int) -> None:
    create_table(url, "account", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(100)), sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("big", sa.BigInteger), sa.Column("ratio", sa.Float),
        sa.Column("active", sa.Boolean), sa.Column("notes", sa.Text),
        sa.Column("at", sa.DateTime), sa.Column("at_tz", sa.DateTime(timezone=True)),
        sa.Column("day", sa.Date), sa.Column("clock", sa.Time), sa.Column("doc", JSONB),
        sa.Column("ref", UUID(as_uuid=True)), sa.Column("updated_at", sa.DateTime),
    ], typed_rows(n))


def normalized(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the suite compares it: instants in UTC without zone, UUIDs and JSON parsed
    (MariaDB returns JSON as text and UUIDs as text), booleans as booleans."""
    out = dict(row)
    if isinstance(out.get("at_tz"), datetime) and out["at_tz"].tzinfo is not None:
        out["at_tz"] = out["at_tz"].astimezone(UTC).replace(tzinfo=None)
    if isinstance(out.get("doc"), str):
        import json

        out["doc"] = json.loads(out["doc"])
    if isinstance(out.get("ref"), str):
        out["ref"] = uuid.UUID(out["ref"])
    if out.get("active") is not None:
        out["active"] = bool(out["active"])
    if isinstance(out.get("clock"), timedelta):  # MySQL's TIME reads as a duration
        out["clock"] = (datetime.min + out["clock"]).time()
    return out


def held(url: str, table: str) -> list[dict[str, Any]]:
    endpoint = SqlTable(url, table)
    t = endpoint.table()
    with endpoint.engine.connect() as conn:
        return [normalized(dict(r)) for r in conn.execute(
            sa.select(t).order_by(t.c.id)).mappings()]


def expected(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [normalized({**r, "at_tz": r["at_tz"]}) for r in rows]


@pytest.fixture(params=["duckdb", "mariadb"])
def other_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path}/wh.duckdb"
    return str(request.getfixturevalue("mysql_url"))


def test_every_common_type_from_postgresql_arrives_and_reruns_write_nothing(
        tmp_path: Path, pg_url: str, other_db: str) -> None:
    typed_source(pg_url, 300)
    proj = project(tmp_path, (pg_url, other_db), to_warehouse(
        "accounts", "account", "accounts", changeTrackingField="updated_at", audit=None,
        batchSize=100))

    first = sync(proj, "accounts")

    assert spec(first)["errors"] == []
    assert counts(first) == {"processed": 300, "inserted": 300}
    rows = typed_rows(300)
    assert held(other_db, "accounts") == expected(rows)
    assert counts(sync(proj, "accounts")) == {}  # the cursor: nothing read
    assert counts(sync(proj, "accounts", full_refresh=True)) == {
        "processed": 300, "skipped": 300}  # everything read, nothing differs

    later = T0 + timedelta(days=30)
    execute(pg_url, "UPDATE account SET amount = amount + 1, updated_at = :t WHERE id <= 5",
            params={"t": later})
    execute(pg_url, "INSERT INTO account (id, email, updated_at) VALUES (301, 'new@x.io', :t)",
            params={"t": later})
    changed = sync(proj, "accounts")

    assert counts(changed) == {"processed": 6, "inserted": 1, "updated": 5}
    after = {r["id"]: r for r in held(other_db, "accounts")}
    assert [after[i]["amount"] for i in range(1, 6)] == [
        Decimal(f"{i}.{i:02d}") + 1 for i in range(1, 6)]
    assert after[301]["email"] == "new@x.io" and after[301]["amount"] is None
    assert len(after) == 301


def test_batches_of_updates_and_inserts_of_every_type_are_written_set_based_exactly(
        tmp_path: Path, pg_url: str, other_db: str) -> None:
    # batches of 100 take the set-based writes (an UPDATE from a staged batch on both, an
    # Arrow insert on DuckDB): every type must arrive as the row-by-row statements wrote it
    typed_source(pg_url, 300)
    proj = project(tmp_path, (pg_url, other_db), to_warehouse(
        "accounts", "account", "accounts", changeTrackingField="updated_at", audit=None,
        batchSize=100))
    assert counts(sync(proj, "accounts")) == {"processed": 300, "inserted": 300}
    later = T0 + timedelta(days=30)
    execute(pg_url, "UPDATE account SET amount = amount + 1, big = -big, ratio = ratio * 2, "
                    "active = NOT active, notes = notes || ' changed', at = at + interval '1 day',"
                    " at_tz = at_tz + interval '1 hour', day = day + 1, clock = NULL, "
                    "doc = jsonb_build_object('n', -id, 'more', jsonb_build_array(id, 'x')), "
                    "updated_at = :t WHERE id <= 250", params={"t": later})
    new = [{**r, "id": r["id"] + 1000, "email": f"new{r['id']}@x.io", "updated_at": later}
           for r in typed_rows(120)]
    insert(pg_url, "account", new)
    changed = sync(proj, "accounts")
    assert counts(changed) == {"processed": 370, "updated": 250, "inserted": 120}
    want = []
    for r in typed_rows(300):
        if r["id"] <= 250:
            r = {**r, "amount": r["amount"] + 1, "big": -r["big"], "ratio": r["ratio"] * 2,
                 "active": not r["active"], "notes": r["notes"] + " changed",
                 "at": r["at"] + timedelta(days=1), "at_tz": r["at_tz"] + timedelta(hours=1),
                 "day": r["day"] + timedelta(days=1), "clock": None,
                 "doc": {"n": -r["id"], "more": [r["id"], "x"]}, "updated_at": later}
        want.append(r)
    assert held(other_db, "accounts") == expected(want + new)
    assert counts(sync(proj, "accounts", full_refresh=True)) == {
        "processed": 420, "skipped": 420}


@pytest.fixture(params=["sqlite", "postgres", "duckdb", "mariadb"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/db.sqlite"
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path}/db.duckdb"
    return str(request.getfixturevalue("mysql_url"))


def upsert_rows(url: str, table: str, rows: list[dict[str, Any]]) -> None:
    endpoint = SqlTable(url, table)
    with endpoint.transaction() as tx:
        result = endpoint.write(tx, "upsert", ["id"], rows)
    assert result.written == len(rows) and result.refused == []


@pytest.mark.parametrize("unique", [True, False], ids=["native", "looked-up"])
def test_upsert_by_a_unique_key_is_the_databases_own_and_without_one_looks_up(
        any_db: str, unique: bool) -> None:
    create_table(any_db, "tags", [
        sa.Column("id", sa.Integer, primary_key=unique, autoincrement=False),
        sa.Column("label", sa.String(50)), sa.Column("weight", sa.Numeric(8, 2))],
        [{"id": 1, "label": "one", "weight": Decimal("1.50")},
         {"id": 2, "label": "two", "weight": Decimal("2.00")}])
    upsert_rows(any_db, "tags", [
        {"id": 2, "label": "TWO", "weight": Decimal("2.25")},
        {"id": 3, "label": "three", "weight": None},
        *({"id": i, "label": f"n{i}", "weight": Decimal(i)} for i in range(10, 110))])
    endpoint = SqlTable(any_db, "tags")
    t = endpoint.table()
    with endpoint.engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(sa.select(t.c.id, t.c.label, t.c.weight)
                                              .order_by(t.c.id))]
    assert got == [(1, "one", Decimal("1.50")), (2, "TWO", Decimal("2.25")),
                   (3, "three", None), *((i, f"n{i}", Decimal(i)) for i in range(10, 110))]
