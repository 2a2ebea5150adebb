"""PostgreSQL COPY for bulk inserts: rows streamed in COPY's text format, inside the caller's
transaction (so the engine's batch atomicity holds), several times faster than INSERTs."""

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


def copy_rows(conn: Connection, table: sa.Table, columns: Sequence[str],
              rows: Sequence[Mapping[str, Any]]) -> None:
    """COPY rows into a table on the connection's open transaction."""
    buffer = io.StringIO()
    write = buffer.write
    for row in rows:
        write("\t".join([_text(row.get(c)) for c in columns]))
        write("\n")
    buffer.seek(0)
    preparer = conn.dialect.identifier_preparer
    target = preparer.format_table(table)
    cols = ", ".join(preparer.quote(c) for c in columns)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(f"COPY {target} ({cols}) FROM STDIN", buffer)
    finally:
        cursor.close()


def usable(conn: Connection, rows: Sequence[Any]) -> bool:
    return (conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2"
            and len(rows) >= MIN_ROWS)
