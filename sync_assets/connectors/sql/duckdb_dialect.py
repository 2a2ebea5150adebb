"""DuckDB through its SQLAlchemy dialect (duckdb-engine): table structure read from DuckDB's
own catalog (information_schema and duckdb_constraints()), since the dialect reuses
PostgreSQL's reflection queries, which name catalogs DuckDB does not have (pg_collation, with
SQLAlchemy 2.1); and first loads written straight from Arrow (DuckDB scans an Arrow table in
place)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ... import arrow_codecs as codecs

_TYPES: dict[str, Any] = {
    "BOOLEAN": sa.Boolean, "TINYINT": sa.SmallInteger, "SMALLINT": sa.SmallInteger,
    "INTEGER": sa.Integer, "BIGINT": sa.BigInteger, "HUGEINT": sa.BigInteger,
    "UTINYINT": sa.SmallInteger, "USMALLINT": sa.Integer, "UINTEGER": sa.BigInteger,
    "UBIGINT": sa.BigInteger, "FLOAT": sa.Float, "REAL": sa.Float, "DOUBLE": sa.Float,
    "VARCHAR": sa.Text, "TEXT": sa.Text, "DATE": sa.Date, "TIME": sa.Time,
    "TIMESTAMP": sa.DateTime, "TIMESTAMP_NS": sa.DateTime, "TIMESTAMP_MS": sa.DateTime,
    "TIMESTAMP_S": sa.DateTime, "BLOB": sa.LargeBinary, "UUID": sa.Uuid, "JSON": sa.JSON,
    "INTERVAL": sa.Interval,
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def prepare(engine: Engine) -> None:
    """Quote every word DuckDB reserves (its list differs from PostgreSQL's, whose
    preparer the dialect inherits: a column named `at` would be a syntax error)."""
    import duckdb

    words = duckdb.sql("SELECT keyword_name FROM duckdb_keywords() "
                       "WHERE keyword_category <> 'unreserved'").fetchall()
    # a new set on this preparer: `|=` would grow the one PostgreSQL's dialect shares
    preparer = engine.dialect.identifier_preparer
    preparer.reserved_words = preparer.reserved_words | {w for (w,) in words}


def column_type(name: str) -> Any:
    """The SQLAlchemy type of a DuckDB type name (unknown ones read as text)."""
    upper = name.upper()
    if upper == "TIMESTAMP WITH TIME ZONE":
        return sa.DateTime(timezone=True)
    if match := _DECIMAL.fullmatch(upper):
        return sa.Numeric(int(match[1]), int(match[2]))
    found = _TYPES.get(upper)
    return found() if found is not None else sa.Text()


def reflect(engine: Engine, table: str, schema: str | None) -> sa.Table | None:
    """The table as SQLAlchemy Core sees it (columns, nullability, primary key), or None."""
    with engine.connect() as conn:
        where = "table_name = :t AND table_schema = coalesce(:s, current_schema())"
        columns = conn.execute(sa.text(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            f"WHERE {where} ORDER BY ordinal_position"), {"t": table, "s": schema}).all()
        if not columns:
            return None
        keys = unique_keys(conn, table, schema, primary=True)
    primary = set(keys[0]) if keys else set()
    return sa.Table(table, sa.MetaData(), *[
        sa.Column(name, column_type(type_name), nullable=nullable == "YES",
                  primary_key=name in primary) for name, type_name, nullable in columns],
        schema=schema)


def unique_keys(conn: Connection, table: str, schema: str | None, *,
                primary: bool = False) -> list[tuple[str, ...]]:
    """The primary key (primary=True) or the unique keys of a table."""
    kind = "PRIMARY KEY" if primary else "UNIQUE"
    rows = conn.execute(sa.text(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = :t "
        "AND schema_name = coalesce(:s, current_schema()) AND constraint_type = :k"),
        {"t": table, "s": schema, "k": kind}).all()
    return [tuple(names) for (names,) in rows]


def insert_arrow(conn: Connection, table: sa.Table, data: pa.Table) -> None:
    """Insert every row of `data` in the open transaction: DuckDB reads the Arrow table in
    place, with no Python object per value."""
    for i, field in enumerate(data.schema):  # extension types as the text DuckDB casts
        if codecs.is_json(field.type):
            data = data.set_column(i, field.name, data.column(i).combine_chunks().storage)
        elif codecs.is_uuid(field.type):
            data = data.set_column(i, field.name, codecs.uuid_text(data.column(i)))
    raw = conn.connection.dbapi_connection
    view = "_sync_assets_page"
    preparer = conn.dialect.identifier_preparer
    cols = ", ".join(preparer.quote(c) for c in data.column_names)
    raw.register(view, data)  # type: ignore[union-attr]
    try:
        conn.exec_driver_sql(f"INSERT INTO {preparer.format_table(table)} ({cols}) "
                             f"SELECT {cols} FROM {view}")
    finally:
        raw.unregister(view)  # type: ignore[union-attr]


def update_rows(conn: Connection, table: sa.Table, key: Sequence[str], columns: Sequence[str],
                rows: Sequence[Mapping[str, Any]]) -> bool:
    """Set `columns` of the rows matching each row's `key` in one UPDATE ... FROM an Arrow
    table DuckDB reads in place (a row-by-row executemany is slow on DuckDB: 20,000 rows
    took 10 s). False, having done nothing, where Arrow cannot type the values (a column of
    mixed types): the caller updates row by row."""
    names = list(dict.fromkeys([*key, *columns]))
    data = as_arrow(rows, names)
    if data is None:
        return False
    raw = conn.connection.dbapi_connection
    view = "_sync_assets_changes"
    preparer = conn.dialect.identifier_preparer
    sets = ", ".join(f"{preparer.quote(c)} = s.{preparer.quote(c)}" for c in columns)
    conds = " AND ".join(f"{preparer.format_table(table)}.{preparer.quote(k)} = "
                         f"s.{preparer.quote(k)}" for k in key)
    raw.register(view, data)  # type: ignore[union-attr]
    try:
        conn.exec_driver_sql(f"UPDATE {preparer.format_table(table)} SET {sets} "
                             f"FROM {view} AS s WHERE {conds}")
    finally:
        raw.unregister(view)  # type: ignore[union-attr]
    return True


def as_arrow(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> pa.Table | None:
    """The rows as an Arrow table DuckDB can read in place (JSON values as their text), or
    None where Arrow cannot type them (a column of mixed types)."""
    def value(v: Any) -> Any:  # JSON as its text, which DuckDB casts into a JSON column
        return json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v

    try:
        return pa.Table.from_pylist([{c: value(r.get(c)) for c in names} for r in rows])
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None


def upsert_arrow(conn: Connection, table: sa.Table, key: Sequence[str], data: pa.Table) -> None:
    """Insert or update every row of `data` by `key` (a unique key of the table) in one
    INSERT ... ON CONFLICT DO UPDATE that DuckDB reads from Arrow in place."""
    raw = conn.connection.dbapi_connection
    view = "_sync_assets_upserts"
    preparer = conn.dialect.identifier_preparer
    names = data.column_names
    cols = ", ".join(preparer.quote(c) for c in names)
    keys = ", ".join(preparer.quote(k) for k in key)
    sets = ", ".join(f"{preparer.quote(c)} = EXCLUDED.{preparer.quote(c)}"
                     for c in names if c not in key)
    action = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
    raw.register(view, data)  # type: ignore[union-attr]
    try:
        conn.exec_driver_sql(f"INSERT INTO {preparer.format_table(table)} ({cols}) "
                             f"SELECT {cols} FROM {view} ON CONFLICT ({keys}) {action}")
    finally:
        raw.unregister(view)  # type: ignore[union-attr]
