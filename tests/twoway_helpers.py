"""Builders for the two-way and pull tests: side A (an ObjectStack object), side B (a table of
the `sheet` connector), edits with explicit timestamps, rows of the mapped fields, counters."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from sync_assets import Project, SyncExecutionResult, load_project, parse_execution_result
from sync_assets.connectors.sql import dispose_engines, get_engine
from sync_assets.engine import run

STRATEGIES = ("source_wins", "destination_wins", "latest_wins", "manual", "merge")
T0 = datetime(2024, 1, 1, 9, 0, 0)
T1 = datetime(2024, 1, 2, 10, 0, 0)  # A's edits (unless a test says otherwise)
T2 = datetime(2024, 1, 3, 11, 0, 0)  # B's edits: later than A's, so latest_wins picks B
T3 = datetime(2024, 1, 4, 12, 0, 0)

#: A's mapped columns, and B's names for them (the sync's mapping)
A_FIELDS = ("email", "name", "phone", "updated_at")
B_FIELDS = ("Email", "Name", "Phone", "Updated")
MAPPING = dict(zip(A_FIELDS, B_FIELDS, strict=True))

STAT_NAMES = ("recordsProcessed", "recordsInserted", "recordsUpdated", "recordsDeleted",
              "recordsSkipped", "recordsErrored", "conflictsDetected", "conflictsResolved")
_SHORT = {"processed": "recordsProcessed", "inserted": "recordsInserted",
          "updated": "recordsUpdated", "deleted": "recordsDeleted", "skipped": "recordsSkipped",
          "errored": "recordsErrored", "detected": "conflictsDetected",
          "resolved": "conflictsResolved"}

Row = tuple[Any, ...]  # (email, name, phone, updated) in A's field order


@contextmanager
def engine_for(url: str) -> Iterator[sa.Engine]:
    """The engine the sync engine itself uses for `url` (pooled per process; the `backend`
    fixture and `dispose_engines` close them)."""
    yield get_engine(url)


# -- project -------------------------------------------------------------------------------
def twoway_sync(strategy: str, *, name: str = "contacts", operation: str = "sync",
                direction: str = "bidirectional", batch_size: int | None = None,
                mapping: Any = None, **extra: Any) -> dict[str, Any]:
    """The brief's sync: A = ObjectStack `contact`, B = `sheet.rows`, matched by email."""
    sync: dict[str, Any] = {
        "name": name,
        "direction": direction,
        "conflictResolution": strategy,
        "source": {"object": "contact"},
        "destination": {"connectorInstanceId": "sheet", "externalResource": "rows",
                        "operation": operation, "matchKey": ["email"],
                        "mapping": dict(MAPPING) if mapping is None else mapping},
        "changeTrackingField": "updated_at",
        **extra,
    }
    if batch_size is not None:
        sync["batchSize"] = batch_size
    return sync


def make_project(tmp_path: Path, urls: tuple[str, str], *syncs: Mapping[str, Any]) -> Project:
    """A project: ObjectStack at urls[0] (side A), connector `sheet` at urls[1] (side B)."""
    data = {
        "objectstack": {"url": urls[0]},
        "connectors": {"sheet": {"type": "sql", "url": urls[1]}},
        "syncs": [dict(s) for s in syncs],
    }
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return load_project(path, env={})


# -- tables --------------------------------------------------------------------------------
def contact_table(metadata: sa.MetaData | None = None, *extra: sa.Column[Any]) -> sa.Table:
    """Side A: id integer primary key (autoincrement), email unique, name, phone, updated_at."""
    return sa.Table(
        "contact", metadata if metadata is not None else sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(200), nullable=False, unique=True),
        sa.Column("name", sa.String(200)),
        sa.Column("phone", sa.String(50)),
        sa.Column("updated_at", sa.DateTime),
        *extra,
    )


def rows_table(metadata: sa.MetaData | None = None) -> sa.Table:
    """Side B as the engine would create it: Email primary key, the mapped columns."""
    return sa.Table(
        "rows", metadata if metadata is not None else sa.MetaData(),
        sa.Column("Email", sa.Text, primary_key=True),
        sa.Column("Name", sa.Text),
        sa.Column("Phone", sa.Text),
        sa.Column("Updated", sa.DateTime),
    )


def create_a(url: str, rows: Sequence[Row] = ()) -> None:
    table = contact_table()
    with engine_for(url) as engine, engine.begin() as conn:
        table.create(conn)
        if rows:
            conn.execute(table.insert(), [dict(zip(A_FIELDS, r, strict=True)) for r in rows])


def create_b(url: str, rows: Sequence[Row] = ()) -> None:
    table = rows_table()
    with engine_for(url) as engine, engine.begin() as conn:
        table.create(conn)
        if rows:
            conn.execute(table.insert(), [dict(zip(B_FIELDS, r, strict=True)) for r in rows])


_A_TABLE, _B_TABLE = contact_table(), rows_table()


def _side(side: str) -> tuple[sa.Table, tuple[str, ...]]:
    """The table of a side (by column names: whoever created it) and its mapped fields."""
    return (_A_TABLE, A_FIELDS) if side == "A" else (_B_TABLE, B_FIELDS)


def put(url: str, side: str, row: Row) -> None:
    """Insert one record (email, name, phone, updated) on side A or B."""
    table, fields = _side(side)
    with engine_for(url) as engine, engine.begin() as conn:
        conn.execute(table.insert(), [dict(zip(fields, row, strict=True))])


def edit(url: str, side: str, email: str, *, at: datetime, **values: Any) -> None:
    """Change a record of side A or B (A field names: name=, phone=), stamping it `at`."""
    table, fields = _side(side)
    names = dict(zip(A_FIELDS, fields, strict=True))
    with engine_for(url) as engine, engine.begin() as conn:
        new = {names[k]: v for k, v in values.items()}
        new[names["updated_at"]] = at
        stmt = sa.update(table).where(table.c[names["email"]] == email).values(new)
        assert conn.execute(stmt).rowcount == 1, (side, email)


def remove(url: str, side: str, email: str) -> None:
    table, fields = _side(side)
    with engine_for(url) as engine, engine.begin() as conn:
        assert conn.execute(sa.delete(table).where(table.c[fields[0]] == email)).rowcount == 1


def _norm(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.replace(tzinfo=None)
    if isinstance(value, str):
        try:  # a timestamp stored as text (SQLite) reads back as text in raw SQL
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def side_rows(url: str, side: str) -> list[Row]:
    """The mapped fields of every record of side A or B, as (email, name, phone, updated),
    sorted by email."""
    table, fields = _side(side)
    with engine_for(url) as engine, engine.connect() as conn:
        stmt = sa.select(*[table.c[f] for f in fields]).order_by(table.c[fields[0]])
        return [tuple(_norm(v) for v in r) for r in conn.execute(stmt)]


def raw_rows(url: str, table: str) -> list[tuple[Any, ...]]:
    """Every column of every row as the database returns it to plain SQL (byte-level
    comparison of a side before and after a run)."""
    quoted = f'"{table}"'
    with engine_for(url) as engine, engine.connect() as conn:
        return sorted((tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {quoted}"))),
                      key=repr)


# -- results -------------------------------------------------------------------------------
def checked(result: SyncExecutionResult) -> dict[str, Any]:
    """The protocol form of a result: valid, and its counters add up."""
    out = result.to_spec()
    parse_execution_result(json.loads(json.dumps(out, default=str)))
    s = out["stats"]
    assert s["recordsProcessed"] == sum(
        s[k] for k in ("recordsInserted", "recordsUpdated", "recordsDeleted", "recordsSkipped",
                       "recordsErrored")), s
    assert s["conflictsResolved"] <= s["conflictsDetected"], s
    return out


def stats(result: SyncExecutionResult) -> dict[str, int]:
    """All eight counters, keyed by their protocol names."""
    s = checked(result)["stats"]
    return {k: s[k] for k in STAT_NAMES}


def expect(**counts: int) -> dict[str, int]:
    """All eight counters: the given ones (short names), 0 for the rest, processed summed."""
    out = dict.fromkeys(STAT_NAMES, 0)
    for k, v in counts.items():
        out[_SHORT[k]] = v
    if "processed" not in counts:
        out["recordsProcessed"] = sum(counts.get(k, 0) for k in
                                      ("inserted", "updated", "deleted", "skipped", "errored"))
    return out


def sync(proj: Project, name: str = "contacts", **options: Any) -> SyncExecutionResult:
    result = run(proj, name, **options)
    checked(result)
    return result


# -- PostgreSQL without a database per test --------------------------------------------------
_SCHEMAS = itertools.count()


@contextmanager
def pg_database_pair(server_url: str) -> Iterator[tuple[str, str]]:
    """Two databases on the test server (for a whole module: creating databases is what makes
    a PostgreSQL test slow), dropped afterwards."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    names = [f"twoway_{uuid.uuid4().hex[:10]}_{side}" for side in "ab"]
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield tuple(server_url.rsplit("/", 1)[0] + f"/{n}" for n in names)  # type: ignore[misc]
    finally:
        dispose_engines()
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fresh_schema_urls(pair: tuple[str, str]) -> tuple[str, str]:
    """URLs of an empty schema in each database of `pair`, set as the connections'
    search_path: unqualified tables (the test's, the engine's, its state) live there, so every
    test starts empty, as with a database of its own."""
    schema = f"t{next(_SCHEMAS)}"
    out = []
    for url in pair:
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        finally:
            engine.dispose()
        out.append(f"{url}?options=-csearch_path%3D{schema}")
    return out[0], out[1]
