"""PostgreSQL COPY for bulk inserts and updates: rows streamed in COPY's text format, inside
the caller's transaction (so the engine's batch atomicity holds), several times faster than
INSERTs; updates go through a temporary table and one UPDATE ... FROM, not a statement per
row."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_SPECIAL = re.compile(r"[\\\t\n\r]")
MIN_ROWS = 64  # below this, an INSERT's round trip is as cheap


def _text(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if type(value) is str:
        return value.translate(_ESCAPES) if _SPECIAL.search(value) else value
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str).translate(_ESCAPES)
    return str(value).translate(_ESCAPES)


def copy_rows(conn: Connection, table: sa.Table | str, columns: Sequence[str],
              rows: Sequence[Mapping[str, Any]]) -> None:
    """COPY rows into a table (or a quoted table name) on the connection's open
    transaction."""
    buffer = io.StringIO()
    write = buffer.write
    for row in rows:
        write("\t".join([_text(row.get(c)) for c in columns]))
        write("\n")
    buffer.seek(0)
    preparer = conn.dialect.identifier_preparer
    target = table if isinstance(table, str) else preparer.format_table(table)
    cols = ", ".join(preparer.quote(c) for c in columns)
    copy(conn, f"COPY {target} ({cols}) FROM STDIN", buffer)


def copy(conn: Connection, sql: str, file: Any) -> None:
    """Run a COPY on the connection's driver cursor, in its open transaction. A database
    error is raised as SQLAlchemy's DBAPIError, as for any other statement the engine runs,
    so the engine's error handling sees COPY failures too."""
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(sql, file)
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(sql.split("(", 1)[0], None, exc, dbapi.Error,
                                         dialect=conn.dialect) from None
    finally:
        cursor.close()


def update_rows(conn: Connection, table: sa.Table, key: Sequence[str], columns: Sequence[str],
                rows: Sequence[Mapping[str, Any]], where: Mapping[str, Any] | None = None) -> None:
    """Set `columns` of the rows matching each row's `key` values (and `where`, one value per
    column for all rows): COPY into a temporary table shaped like the target, one UPDATE.
    The table is dropped after it (a batch may update two tables); if anything fails, the
    caller's transaction rolls back and takes it along."""
    preparer = conn.dialect.identifier_preparer
    target = preparer.format_table(table)
    stage = preparer.quote("_sync_assets_stage")
    names = list(dict.fromkeys([*key, *columns]))
    cols = ", ".join(preparer.quote(c) for c in names)
    conn.exec_driver_sql(f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
                         f"SELECT {cols} FROM {target} WITH NO DATA")
    copy_rows(conn, stage, names, rows)
    sets = ", ".join(f"{preparer.quote(c)} = s.{preparer.quote(c)}" for c in columns)
    conds = [f"d.{preparer.quote(k)} = s.{preparer.quote(k)}" for k in key]
    params: dict[str, Any] = {}
    for i, (column, value) in enumerate((where or {}).items()):
        conds.append(f"d.{preparer.quote(column)} = %(w{i})s")
        params[f"w{i}"] = value
    conn.exec_driver_sql(
        f"UPDATE {target} AS d SET {sets} FROM {stage} AS s WHERE {' AND '.join(conds)}",
        params)
    conn.exec_driver_sql(f"DROP TABLE {stage}")


def usable(conn: Connection, rows: Sequence[Any]) -> bool:
    return (conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2"
            and len(rows) >= MIN_ROWS)
