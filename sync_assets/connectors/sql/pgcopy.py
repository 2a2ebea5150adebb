"""PostgreSQL COPY for bulk inserts and updates: rows streamed in COPY's text format, inside
the caller's transaction (so the engine's batch atomicity holds), several times faster than
INSERTs; updates go through a temporary table and one UPDATE ... FROM, not a statement per
row.

COPY runs on the driver's own connection, through a small adapter per driver (`_DRIVERS`):
psycopg2 (`cursor.copy_expert`, `cursor.mogrify`) and psycopg 3 (`cursor.copy()`,
`ClientCursor.mogrify`). Everything else here (the COPY text, the staged UPDATE, error
wrapping) is one code path for both. `supported(dialect)` says whether a connection has it."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time
from decimal import Decimal
from typing import IO, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_SPECIAL = re.compile(r"[\\\t\n\r]")
MIN_ROWS = 64  # below this, an INSERT's round trip is as cheap
_CHUNK = 128 * 1024  # bytes handed to the driver at a time (psycopg 3's own largest send)
# A staged batch (at most a few thousand rows) joins a table that may hold millions. With the
# default random_page_cost (4, a spinning disk's) the planner prices an index probe a row
# above a scan of the whole table and hash-joins: measured at 1M rows, 8,000 changed rows,
# 384 ms, against 51-77 ms probing the key's index. 1.1 is the usual figure for SSDs and for
# an index in cache; set for the UPDATE alone (never raised above a lower one the server has),
# so a batch's update costs in proportion to the batch, not to the table.
_UPDATE_PAGE_COST = 1.1


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


# -- the drivers ------------------------------------------------------------------------------
class _Driver(Protocol):
    """What COPY needs of a driver, on its raw connection (SQLAlchemy's driver_connection)."""

    def copy_in(self, raw: Any, sql: str, file: IO[Any]) -> None:
        """Run `COPY ... FROM STDIN` with the data read from `file` (bytes or text)."""

    def copy_out(self, raw: Any, sql: str, file: IO[bytes]) -> None:
        """Run `COPY ... TO STDOUT`, writing the data to `file`."""

    def mogrify(self, raw: Any, sql: str, params: Mapping[str, Any]) -> str:
        """The statement with its `%(name)s` parameters rendered as SQL literals."""


class _Psycopg2:
    def copy_in(self, raw: Any, sql: str, file: IO[Any]) -> None:
        with raw.cursor() as cursor:
            cursor.copy_expert(sql, file, size=_CHUNK)

    def copy_out(self, raw: Any, sql: str, file: IO[bytes]) -> None:
        with raw.cursor() as cursor:
            cursor.copy_expert(sql, file)

    def mogrify(self, raw: Any, sql: str, params: Mapping[str, Any]) -> str:
        with raw.cursor() as cursor:
            return str(cursor.mogrify(sql, params).decode())


class _Psycopg3:
    def copy_in(self, raw: Any, sql: str, file: IO[Any]) -> None:
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            while data := file.read(_CHUNK):
                copy.write(data)

    def copy_out(self, raw: Any, sql: str, file: IO[bytes]) -> None:
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            write = file.write
            for data in copy:  # a row at a time, as libpq hands them over
                write(data)

    def mogrify(self, raw: Any, sql: str, params: Mapping[str, Any]) -> str:
        import psycopg

        with psycopg.ClientCursor(raw) as cursor:
            return cursor.mogrify(sql, params)


_DRIVERS: dict[str, _Driver] = {"psycopg2": _Psycopg2(), "psycopg": _Psycopg3()}


def supported(dialect: Dialect) -> bool:
    """Whether COPY runs on this dialect's connections: PostgreSQL with psycopg2 or 3."""
    return dialect.name == "postgresql" and dialect.driver in _DRIVERS


def _driver(conn: Connection) -> tuple[_Driver, Any]:
    """The connection's COPY adapter and its raw driver connection."""
    driver = _DRIVERS.get(conn.dialect.driver) if conn.dialect.name == "postgresql" else None
    if driver is None:
        raise NotImplementedError(f"COPY needs PostgreSQL with psycopg2 or psycopg 3, not "
                                  f"{conn.dialect.name}+{conn.dialect.driver}")
    return driver, conn.connection.driver_connection


@contextmanager
def _sqlalchemy_errors(conn: Connection, sql: str) -> Iterator[None]:
    """A database error raised as SQLAlchemy's DBAPIError (IntegrityError, DataError,
    OperationalError, ...), as for any other statement the engine runs and whichever driver
    raised it: the engine's error handling sees COPY failures too. The statement shown is
    cut before its first parenthesis (no column list, no query, no values)."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(sql.split("(", 1)[0], None, exc, dbapi.Error,
                                         dialect=conn.dialect) from None


def copy_in(conn: Connection, sql: str, file: IO[Any]) -> None:
    """`COPY ... FROM STDIN`, the data read from `file`, in the connection's transaction."""
    driver, raw = _driver(conn)
    with _sqlalchemy_errors(conn, sql):
        driver.copy_in(raw, sql, file)


def copy_out(conn: Connection, sql: str, file: IO[bytes]) -> None:
    """`COPY ... TO STDOUT` into `file` (bytes), in the connection's transaction."""
    driver, raw = _driver(conn)
    with _sqlalchemy_errors(conn, sql):
        driver.copy_out(raw, sql, file)


def mogrify(conn: Connection, sql: str, params: Mapping[str, Any]) -> str:
    """A statement compiled for this connection's dialect (`%(name)s` parameters, `%%`), its
    parameters rendered by the driver itself: COPY takes no parameters."""
    driver, raw = _driver(conn)
    with _sqlalchemy_errors(conn, sql):
        return driver.mogrify(raw, sql, params)


def rendered(conn: Connection, stmt: Any) -> str | None:
    """A SQLAlchemy statement's text with its parameters rendered by the driver (`mogrify`),
    or None where the driver cannot render a value without SQLAlchemy's own processing (a
    JSON filter value)."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    try:
        return mogrify(conn, str(compiled), compiled.construct_params())
    except sa.exc.ProgrammingError:
        return None


# -- rows -------------------------------------------------------------------------------------
def table_name(conn: Connection, table: sa.Table) -> str:
    """A table's quoted (schema-qualified) name as COPY and the catalog's `to_regclass`
    read it: SQLAlchemy doubles a `%` in a quoted name for the driver's parameter
    formatting, which neither goes through, so here it is single again."""
    return _single_percent(conn, conn.dialect.identifier_preparer.format_table(table))


def _single_percent(conn: Connection, text: str) -> str:
    return text.replace("%%", "%") if conn.dialect.paramstyle in ("format", "pyformat") else text


def copy_target(conn: Connection, table: sa.Table | str, columns: Sequence[str]) -> str:
    """`table (col, ...)` quoted for a COPY statement, `%` single (`table_name`: a column
    named `share %`)."""
    preparer = conn.dialect.identifier_preparer
    target = table if isinstance(table, str) else preparer.format_table(table)
    cols = ", ".join(preparer.quote(c) for c in columns)
    return _single_percent(conn, f"{target} ({cols})")


def _json_text(value: Any) -> str:
    """A value bound for a JSON column: its JSON, scalars too (a text is a JSON string
    there, as SQLAlchemy's JSON type binds it)."""
    return "\\N" if value is None else json.dumps(value, default=str).translate(_ESCAPES)


def copy_rows(conn: Connection, table: sa.Table | str, columns: Sequence[str],
              rows: Sequence[Mapping[str, Any]], json_columns: Sequence[str] = ()) -> None:
    """COPY rows into a table (or a quoted table name, its JSON columns named) on the
    connection's open transaction."""
    if isinstance(table, sa.Table):
        json_columns = [c.name for c in table.columns if isinstance(c.type, sa.JSON)]
    texts = [_json_text if c in json_columns else _text for c in columns]
    buffer = io.StringIO()
    write = buffer.write
    for row in rows:
        write("\t".join([text(row.get(c)) for text, c in zip(texts, columns, strict=True)]))
        write("\n")
    buffer.seek(0)  # text: the driver encodes it in the connection's encoding
    copy_in(conn, f"COPY {copy_target(conn, table, columns)} FROM STDIN", buffer)


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
    copy_rows(conn, stage, names, rows,
              json_columns=[c.name for c in table.columns if isinstance(c.type, sa.JSON)])
    sets = ", ".join(f"{preparer.quote(c)} = s.{preparer.quote(c)}" for c in columns)
    conds = [f"d.{preparer.quote(k)} = s.{preparer.quote(k)}" for k in key]
    params: dict[str, Any] = {}
    for i, (column, value) in enumerate((where or {}).items()):
        conds.append(f"d.{preparer.quote(column)} = %(w{i})s")
        params[f"w{i}"] = value
    prior = conn.exec_driver_sql(
        "SELECT current_setting('random_page_cost'), set_config('random_page_cost', "
        "least(current_setting('random_page_cost')::float8, %(cost)s)::text, true)",
        {"cost": _UPDATE_PAGE_COST}).scalar_one()
    conn.exec_driver_sql(
        f"UPDATE {target} AS d SET {sets} FROM {stage} AS s WHERE {' AND '.join(conds)}",
        params)
    conn.exec_driver_sql("SELECT set_config('random_page_cost', %(prior)s, true)",
                         {"prior": prior})
    conn.exec_driver_sql(f"DROP TABLE {stage}")


def usable(conn: Connection, rows: Sequence[Any]) -> bool:
    """Whether these rows go by COPY: PostgreSQL with a driver that has it, enough rows."""
    return len(rows) >= MIN_ROWS and supported(conn.dialect)
