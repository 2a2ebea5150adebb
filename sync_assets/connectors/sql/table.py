"""SQL endpoints: any database SQLAlchemy reaches, for connector instances of `type: sql` and
for the ObjectStack datastore (whose objects are tables), behind the connector contract.

Names are always quoted by SQLAlchemy and values always bound. Reads are keyset-paginated. On
SQLite the change-tracking column is compared as stored text, so a cursor never drifts between
the stored form ('2024-01-01 10:00:00') and SQLAlchemy's own ('2024-01-01 10:00:00.000000').
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, BIT, INTERVAL, JSONB
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    NoSuchTableError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)

from ... import filters as objectql
from ..base import (
    CURSOR_COLUMN,
    BatchRefused,
    Capabilities,
    ConnectorError,
    Description,
    Endpoint,
    FieldInfo,
    Operation,
    ReadRequest,
    Record,
    TransientError,
    WriteResult,
    shard_of,
)
from . import duckdb_dialect, mysql_dialect, pgcopy

_ENGINES: dict[tuple[str, str], Engine] = {}
_ENGINES_LOCK = threading.Lock()
_CHUNK = 500  # keys per IN (...) lookup: well under every database's parameter limit
READ_RETRIES = 4  # a lost source connection: read again after 0.25, 0.5, 1, 2 s
_SET_UPDATE_ROWS = 64  # from this many rows, a batch is written in one set-based statement
# SQLite: a batch of keys in random order dirties a page of every index it touches, and each
# commit writes those pages to the WAL; a page cache of 32 MiB for writing connections keeps
# an index of a million keys in memory between batches, and checkpointing every 256 MiB of
# WAL (not 4) copies a page written by many batches into the database, and syncs it, once.
# Measured at 1M rows, SQLite to SQLite (engine, in the process): 17.6 s with the defaults,
# 14.2-15.1 s at 64 MiB, 12.6-13.5 s at 128-512 MiB, 17.3 s at 1 GiB.
SQLITE_WRITE_CACHE_KIB = 32 * 1024
SQLITE_CHECKPOINT_PAGES = 64 * 1024


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Python's sqlite3 begins transactions only before DML, so a CREATE TABLE would commit on
    # its own; SQLAlchemy's recipe: let the driver do nothing and BEGIN on every transaction.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL lets a sync read a table while another connection writes to the same file.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
    # the WAL left on disk after a checkpoint: at most what a checkpoint interval writes
    cur.execute(f"PRAGMA journal_size_limit={SQLITE_CHECKPOINT_PAGES * 4096}")
    cur.close()
    dbapi_conn.create_function("sync_assets_shard", -1, shard_of, deterministic=True)


def _sqlite_begin(conn: Connection) -> None:
    # A write transaction takes the write lock at BEGIN (IMMEDIATE), where SQLite waits out
    # busy_timeout; a deferred one that writes after reading fails at once when another
    # process holds the lock, as its snapshot may be stale.
    mode = conn.get_execution_options().get("sqlite_begin", "")
    if mode == "IMMEDIATE":  # a writer; a reader's scan keeps SQLite's small default cache
        conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_WRITE_CACHE_KIB}")
    conn.exec_driver_sql(f"BEGIN {mode}".rstrip())


_DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "psycopg": "psycopg[binary]",
                    "pymysql": "PyMySQL", "mysqldb": "mysqlclient", "duckdb": "duckdb-engine"}


def engine_url(url: str) -> sa.URL | str:
    """The URL SQLAlchemy is given. A PostgreSQL URL that names no driver (`postgresql://`,
    as users copy it, or Heroku's `postgres://`) uses psycopg2, where SQLAlchemy 2.1 alone
    would pick psycopg 3: both take the COPY paths (pgcopy), and psycopg2 measured a little
    faster (200,000 rows: first load 1.27 s against 1.33 s, a full re-read 2.6 s against
    3.1 s, psycopg 3 dumping the lookups' key arrays in Python). An explicit `+driver`
    (`postgresql+psycopg://`) is kept."""
    try:
        parsed = sa.make_url(url)
    except Exception:  # create_engine reports an unparsable URL
        return url
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg2")
    return parsed


def get_engine(url: str, options: Mapping[str, Any] | None = None) -> Engine:
    """One pooled engine per URL and options in this process."""
    key = (url, repr(sorted((options or {}).items())))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            try:
                engine = sa.create_engine(engine_url(url), **(options or {}))
            except (SQLAlchemyError, ImportError, ValueError) as exc:
                hint = ""
                if isinstance(exc, ModuleNotFoundError) and exc.name:
                    package = _DRIVER_PACKAGES.get(exc.name.split(".")[0].lower(), exc.name)
                    hint = (f" (the database driver '{exc.name}' is not installed: "
                            f"pip install '{package}', or name another driver in the URL)")
                raise ConnectorError(
                    f"cannot use database URL {safe_url(url)}: {type(exc).__name__}: "
                    f"{redact(str(exc), url)}{hint}"
                ) from None
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas)
                sa.event.listen(engine, "begin", _sqlite_begin)
            elif engine.dialect.name == "duckdb":
                duckdb_dialect.prepare(engine)
            _ENGINES[key] = engine
        return engine


def dispose_engines() -> None:
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


#: query-string parameters that carry a credential (libpq's sslpassword, a token, ...)
_SECRET_PARAM = re.compile(r"pass|secret|token|key|credential|auth|signature|sas", re.I)


def _secrets(url: str) -> list[str]:
    """The URL's credentials: its password and every secret-looking query value."""
    try:
        parsed = sa.make_url(url)
    except Exception:
        return []
    found = [str(parsed.password)] if parsed.password else []
    for name, value in parsed.query.items():
        if _SECRET_PARAM.search(name):
            found += [str(v) for v in (value if isinstance(value, tuple) else (value,)) if v]
    return sorted(set(found), key=len, reverse=True)  # longest first: no partial leftovers


def safe_url(url: str) -> str:
    """The URL as it may be shown: password and secret query values as ***."""
    try:
        parsed = sa.make_url(url)
    except Exception:  # unparsable: nothing of it is shown (it may be a secret misplaced)
        return "<an unparsable database URL>"
    hidden = {name: "***" for name in parsed.query if _SECRET_PARAM.search(name)}
    shown = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")


def redact(message: str, url: str) -> str:
    """Remove the URL's credentials from a message, whatever a driver chose to echo."""
    for secret in _secrets(url):
        message = message.replace(secret, "***")
    return message


def describe_db_error(exc: BaseException, url: str) -> str:
    """The first line of a driver error, without SQL text, parameters or password."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return redact(f"{type(orig).__name__}: {text}", url)


def _parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def _parse_date(text: str) -> date:
    text = text.strip()
    return date.fromisoformat(text) if len(text) == 10 else _parse_datetime(text).date()


def _from_text(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if type(value) is str:
            with contextlib.suppress(ValueError):  # the database reports what it refuses
                return parse(value)
        return value
    return convert


def _container_as_json(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, ensure_ascii=False)
    return value


def _sqlite_value(value: Any) -> Any:
    return format(value, "f") if isinstance(value, Decimal) else _container_as_json(value)


def split_resource(resource: str, default_schema: str | None) -> tuple[str | None, str]:
    """`schema.table` or `table`; a quoted name is not split."""
    if "." in resource and not resource.startswith('"'):
        schema, _, table = resource.partition(".")
        return schema, table
    return default_schema, resource


def generic_type(type_: Any) -> Any:
    """A portable type for creating a destination column from a source column's type."""
    try:
        generic = type_.as_generic()
    except (NotImplementedError, AttributeError):
        return sa.Text()
    if isinstance(generic, sa.types.NullType):
        return sa.Text()
    if isinstance(generic, sa.String):
        # A mapping may lengthen values (map, defaultValue, expressions): never truncate.
        return sa.Text()
    if isinstance(type_, JSONB):
        return _JSON()
    if isinstance(generic, sa.Interval):
        # read as PostgreSQL's interval text (_IntervalText): an interval there, text elsewhere
        return sa.Text().with_variant(INTERVAL(), "postgresql")
    return generic


def _JSON() -> Any:
    """JSON, as jsonb on PostgreSQL (indexable, compared by value)."""
    return sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def kind_of(type_: Any) -> str:
    """The portable kind of a SQLAlchemy type."""
    try:
        generic = type_.as_generic()
    except (NotImplementedError, AttributeError):
        return "unknown"
    for sa_type, kind in _KINDS:
        if isinstance(generic, sa_type):
            return kind
    return "unknown"


_KINDS: tuple[tuple[Any, str], ...] = (
    (sa.Boolean, "boolean"), (sa.Integer, "integer"), (sa.Float, "float"),
    (sa.Numeric, "decimal"), (sa.DateTime, "datetime"), (sa.Date, "date"), (sa.Time, "time"),
    (sa.JSON, "json"), (sa.LargeBinary, "binary"), (sa.Uuid, "uuid"), (sa.String, "text"),
)

_TYPES_OF_KINDS: dict[str, Any] = {
    "text": sa.Text, "integer": sa.BigInteger, "decimal": sa.Numeric, "float": sa.Float,
    "boolean": sa.Boolean, "date": sa.Date, "datetime": sa.DateTime, "time": sa.Time,
    "json": _JSON, "binary": sa.LargeBinary, "uuid": sa.Uuid, "unknown": sa.Text,
}


def column_type(info: FieldInfo) -> Any:
    """The column type to create for a field: its own SQL type made portable when it came
    from a SQL system, else the type of its portable kind."""
    if isinstance(info.type, sa.types.TypeEngine):
        return generic_type(info.type)
    return _TYPES_OF_KINDS.get(info.kind, sa.Text)()


def transient(exc: BaseException, dialect: str) -> bool:
    """Worth retrying whatever onSyncError says: a lost connection, a busy database."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if dialect == "sqlite":  # sqlite3 raises OperationalError for "no such table" too
        text = str(getattr(exc, "orig", exc)).lower()
        return isinstance(exc, OperationalError) and ("locked" in text or "busy" in text)
    if mysql_dialect.is_mysql(dialect):  # PyMySQL raises OperationalError for schema errors
        return mysql_dialect.transient_code(exc) or isinstance(exc, DisconnectionError)
    return isinstance(exc, OperationalError | InterfaceError | DisconnectionError)


def translated(exc: BaseException, url: str, dialect: str) -> ConnectorError:
    """A driver error as the contract's kind: transient, or the write refused."""
    message = describe_db_error(exc, url)
    if transient(exc, dialect):
        return TransientError(message)
    return BatchRefused(message)


class _SqliteText(str):
    """A timestamp already in the text it is stored as (see _SqliteDateTime)."""


class _SqliteDateTime(SQLITE_DATETIME):
    """SQLite timestamps written as SQLite writes them ('2026-01-02 10:30:00', fractions only
    when there are some), not SQLAlchemy's fixed '... .000000': a value synced between SQLite
    tables keeps its text. Only written values take this form (`stored_text`, applied by
    `SqlTable.coerce`); a value compared in a WHERE keeps SQLAlchemy's, so filters and
    cursors compare as before."""

    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        fallback = super().bind_processor(dialect)

        def process(value: Any) -> Any:
            if isinstance(value, _SqliteText):
                return str(value)
            return fallback(value) if fallback else value
        return process

    @staticmethod
    def stored_text(value: Any) -> Any:
        if type(value) is str:
            with contextlib.suppress(ValueError):  # the database reports what it refuses
                value = _parse_datetime(value)
        if isinstance(value, datetime):
            return _SqliteText(value.replace(tzinfo=None).isoformat(sep=" "))
        return value

    @staticmethod
    def stored_texts(arr: Any) -> list[Any] | None:
        """`stored_text` of every value of an Arrow timestamp array, a column at a time (None
        for a type it does not take): Arrow writes six fraction digits, isoformat none for a
        whole second."""
        import pyarrow as pa  # loaded already: `arr` is one
        import pyarrow.compute as pc

        if not pa.types.is_timestamp(arr.type) or arr.type.unit == "ns":
            return None
        texts = arr.cast(pa.timestamp("us")).cast(pa.string())  # UTC wall time, as above
        whole = pc.ends_with(texts, ".000000")
        return pc.if_else(whole, pc.utf8_slice_codeunits(texts, 0, 19), texts).to_pylist()

    @staticmethod
    def forms(value: datetime) -> list[str]:
        """Every text a writer may have stored this instant as: SQLite's, SQLAlchemy's, ISO."""
        wall = value.replace(tzinfo=None)
        short, full = wall.isoformat(sep=" "), wall.strftime("%Y-%m-%d %H:%M:%S.%f")
        return list(dict.fromkeys([short, full, short.replace(" ", "T"),
                                   full.replace(" ", "T")]))


class _IntervalText(sa.types.TypeDecorator[Any]):
    """A PostgreSQL interval, read as its own text ('1 year 2 mons 3 days 04:05:06'): a
    timedelta holds no months, and the driver's 30-day month would change the value
    written back. PostgreSQL parses the text to the same interval; a timedelta still binds."""

    impl = INTERVAL
    cache_ok = True
    reads_as_text = True  # the Arrow lane reads it as text too

    def column_expression(self, column: Any) -> Any:
        return sa.cast(column, sa.Text)

    def as_generic(self, allow_nulltype: bool = False) -> Any:
        return sa.Interval()

    @property
    def python_type(self) -> type:
        return str


def _adapted(table: sa.Table, dialect: str) -> sa.Table:
    """Column types as this engine binds them. A missing value in a JSON column is SQL NULL,
    not the JSON text `null` (SQLAlchemy's default for bound parameters): the same as the
    COPY paths and the source. SQLite timestamps keep SQLite's own text form; PostgreSQL
    intervals are read as their text."""
    for column in table.columns:
        if isinstance(column.type, sa.JSON):
            column.type.none_as_null = True
        elif dialect == "sqlite" and isinstance(column.type, sa.DateTime):
            column.type = _SqliteDateTime()
        elif dialect == "postgresql" and isinstance(column.type, INTERVAL):
            column.type = _IntervalText(fields=column.type.fields,
                                        precision=column.type.precision)
    return table


def _negative_zero_as_text(value: Any) -> Any:
    # psycopg2 renders -0.0 as the SQL expression `-0.0`: a numeric 0 negated, stored as 0
    # (psycopg 3 binds the float itself, and COPY's text keeps the sign: neither needs this)
    if type(value) is float and value == 0.0 and math.copysign(1.0, value) < 0:
        return "-0"
    return value


def affected(conn: Connection, stmt: Any) -> int:
    """Rows an UPDATE or DELETE changed. DuckDB's driver reports no rowcount (-1): there the
    statement returns a row per changed row instead."""
    if conn.dialect.name == "duckdb":
        return len(conn.execute(stmt.returning(sa.literal_column("1"))).all())
    return int(conn.execute(stmt).rowcount or 0)


def missing_sqlite_file(engine: Engine) -> bool:
    """A SQLite database whose file does not exist yet: connecting would create it empty."""
    if engine.dialect.name != "sqlite":
        return False
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    return not os.path.exists(database)


_SCRATCH: Engine | None = None


def _scratch_engine() -> Engine:
    """An in-memory SQLite database, for rolled-back transactions on a SQLite file that does
    not exist: an absent database behaves as an empty one, and a dry run creates no file."""
    global _SCRATCH
    with _ENGINES_LOCK:
        if _SCRATCH is None:
            _SCRATCH = sa.create_engine("sqlite://")
            sa.event.listen(_SCRATCH, "connect", _sqlite_pragmas)
            sa.event.listen(_SCRATCH, "begin", _sqlite_begin)
        return _SCRATCH


class SqlTransaction:
    """A transaction on one database that commits, or always rolls back (a dry run);
    driver errors leave it as TransientError or BatchRefused. It yields the Connection."""

    def __init__(self, engine: Engine, url: str, *, rollback: bool) -> None:
        self.engine = engine
        if rollback and missing_sqlite_file(engine):
            self.engine = _scratch_engine()
        self.url = url
        self.rollback = rollback

    def __enter__(self) -> Connection:
        try:
            self.conn = self.engine.connect()
            if not self.rollback and self.engine.dialect.name == "sqlite":
                self.conn.execution_options(sqlite_begin="IMMEDIATE")
            self.tx = self.conn.begin()
        except StatementError as exc:
            raise translated(exc, self.url, self.engine.dialect.name) from None
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None and not self.rollback:
                self.tx.commit()
            else:
                self.tx.rollback()
        except StatementError as error:
            if exc is None:
                raise translated(error, self.url, self.engine.dialect.name) from None
        finally:
            self.conn.close()
        if _refused_nul(exc):
            raise BatchRefused("text holds a NUL character (\\x00), which PostgreSQL text "
                               "cannot store") from None
        if isinstance(exc, StatementError):
            raise translated(exc, self.url, self.engine.dialect.name) from None
        if isinstance(exc, OverflowError):  # sqlite3: an integer beyond 64 bits
            raise BatchRefused(f"a value is out of range for the database: {exc}") from None
        if isinstance(exc, TypeError) and "parameter" in str(exc):
            # a driver that cannot bind a value (PyMySQL: "dict can not be used as
            # parameter") refuses the batch: record by record, only that record fails
            raise BatchRefused(f"a value cannot be written here: {exc}") from None


def _refused_nul(exc: BaseException | None) -> bool:
    """Text holding U+0000 that the driver refused before it reached the server: psycopg2
    raises ValueError, psycopg 3 DataError (wrapped by SQLAlchemy). The server's own refusal
    (a COPY's "invalid byte sequence ... 0x00") is the same DataError on both drivers."""
    if isinstance(exc, ValueError):
        return "NUL" in str(exc)
    return (isinstance(exc, DBAPIError) and type(exc.orig).__module__.startswith("psycopg")
            and "cannot contain NUL (0x00)" in str(exc.orig))


class SqlTable(Endpoint):
    """A table in a SQL database, read and written with SQLAlchemy Core."""

    def __init__(
        self,
        url: str,
        table: str,
        schema: str | None = None,
        display: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.schema, self.table_name = split_resource(table, schema)
        self.display = display or (f"{self.schema}.{self.table_name}" if self.schema
                                   else self.table_name)
        self.engine = get_engine(url, engine_options)
        self._table: sa.Table | None = None
        self._parser_cache: dict[str, Any] | None = None
        self._uniques: tuple[tuple[str, ...], ...] | None = None
        self.sleep = time.sleep
        sqlite = self.engine.dialect.name == "sqlite"
        self.capabilities = Capabilities(
            transactional=True, filter_pushdown=True, ordered_reads=True,
            shards=self.engine.dialect.name in ("postgresql", "sqlite"),
            hosts_state=True, creates_resource=True, idempotent_inserts=True,
            concurrent_writers=1 if sqlite or self.engine.dialect.name == "duckdb" else 3,
            arrow_writes=(sqlite or self.engine.dialect.name == "duckdb"
                          or pgcopy.supported(self.engine.dialect)),
        )

    # -- errors ---------------------------------------------------------------------------
    def error(self, exc: BaseException, doing: str) -> ConnectorError:
        return ConnectorError(
            f"{doing} {self.display} on {safe_url(self.url)} failed: "
            f"{describe_db_error(exc, self.url)}"
        )

    # -- describe -------------------------------------------------------------------------
    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def reflect(self, *, refresh: bool = False) -> sa.Table | None:
        if self._table is not None and not refresh:
            return self._table
        self._parser_cache = None
        if missing_sqlite_file(self.engine):  # looking would create the file
            self._table = None
            return None
        try:
            if self.dialect == "duckdb":
                self._table = duckdb_dialect.reflect(self.engine, self.table_name, self.schema)
            else:
                self._table = sa.Table(
                    self.table_name, sa.MetaData(), schema=self.schema,
                    autoload_with=self.engine)
        except NoSuchTableError:
            self._table = None
        except DBAPIError as exc:
            raise self.error(exc, "reading the structure of") from None
        if self._table is not None:
            _adapted(self._table, self.dialect)
        return self._table

    def describe(self, *, refresh: bool = False) -> Description:
        table = self.reflect(refresh=refresh)
        if table is None:
            return Description(fields={}, primary_key=(), exists=False)
        return Description(
            fields={c.name: FieldInfo(c.name, c.type, bool(c.nullable), kind_of(c.type))
                    for c in table.columns},
            primary_key=tuple(c.name for c in table.primary_key.columns),
            unique_keys=self._unique_keys(),
        )

    def _unique_keys(self) -> tuple[tuple[str, ...], ...]:
        """Unique constraints and unique indexes (read once per table)."""
        if self._uniques is None and self.dialect == "duckdb":
            with self.engine.connect() as conn:
                self._uniques = tuple(duckdb_dialect.unique_keys(
                    conn, self.table_name, self.schema))
        if self._uniques is None:
            inspector = sa.inspect(self.engine)
            try:
                found = [tuple(u["column_names"]) for u in
                         inspector.get_unique_constraints(self.table_name, schema=self.schema)]
                found += [tuple(i["column_names"]) for i in
                          inspector.get_indexes(self.table_name, schema=self.schema)
                          if i.get("unique")]
            except (NotImplementedError, DBAPIError):
                found = []
            self._uniques = tuple(k for k in found if all(isinstance(c, str) for c in k))
        return self._uniques

    def is_empty(self) -> bool:
        try:
            with self.engine.connect() as conn:
                return conn.execute(sa.select(sa.literal(1)).select_from(self.table())
                                    .limit(1)).first() is None
        except DBAPIError as exc:
            raise self.error(exc, "reading") from None

    def table(self) -> sa.Table:
        table = self.reflect()
        if table is None:
            raise ConnectorError(f"table {self.display} does not exist on {safe_url(self.url)}")
        return table

    def column(self, name: str) -> sa.Column[Any]:
        table = self.table()
        if name not in table.c:
            known = ", ".join(table.c.keys())
            raise ConnectorError(f"{self.display} has no column '{name}'; columns: {known}")
        return table.c[name]

    # -- read -----------------------------------------------------------------------------
    def _cursor_expr(self, name: str) -> sa.ColumnElement[Any]:
        col = self.column(name)
        if self.dialect == "sqlite":
            return sa.type_coerce(col, sa.Text())
        return col

    def _bounded(self, stmt: sa.Select[Any], request: ReadRequest) -> sa.Select[Any]:
        table = self.table()
        if request.filter is not None:
            try:
                stmt = stmt.where(objectql.compile_filter(request.filter, dict(table.c)))
            except objectql.FilterError as exc:
                raise ConnectorError(f"source.filters on {self.display}: {exc}") from None
        if request.shard is not None:
            stmt = stmt.where(self._in_shard(*request.shard))
        if request.null_cursor is not None:
            stmt = stmt.where(self.column(request.null_cursor).is_(None))
        if request.cursor_field is not None:
            cur = self._cursor_expr(request.cursor_field)
            stmt = stmt.where(cur.is_not(None))
            if request.lower is not None:
                stmt = stmt.where(cur >= request.lower)
            if request.upper is not None:
                stmt = stmt.where(cur <= request.upper)
        return stmt

    def _in_shard(self, columns: Sequence[str], index: int, count: int) -> Any:
        """Rows whose key columns hash to shard `index` of `count`: a static partition that
        every run of every shard computes alike."""
        texts = [sa.func.coalesce(sa.cast(self.column(c), sa.Text), "") for c in columns]
        if self.dialect == "postgresql":
            digest = sa.func.md5(sa.func.concat_ws("\x1f", *texts))
            first32 = sa.cast(sa.cast(sa.func.concat("x", sa.func.substr(digest, 1, 8)),
                                      BIT(32)), sa.BigInteger)
            return first32 % count == index
        if self.dialect == "sqlite":
            return sa.func.sync_assets_shard(count, *texts) == index
        raise ConnectorError(f"shards need PostgreSQL or SQLite; {self.display} is on "
                             f"{self.dialect}")

    def high_water_mark(self, cursor_field: str, request: ReadRequest) -> Any:
        cur = self._cursor_expr(cursor_field)
        stmt = self._bounded(sa.select(sa.func.max(cur)), request)
        return self._reading(lambda conn: conn.execute(stmt).scalar())

    def _reading(self, read: Callable[[Connection], Any]) -> Any:
        """One read on a fresh connection; a lost connection or a busy database is read again
        (reads change nothing, so a retry is always safe), up to READ_RETRIES times."""
        for attempt in range(READ_RETRIES + 1):
            try:
                with self.engine.connect() as conn:
                    return read(conn)
            except DBAPIError as exc:
                if attempt == READ_RETRIES or not transient(exc, self.dialect):
                    raise self.error(exc, "reading") from None
                self.sleep(min(0.25 * 2 ** attempt, 5.0))
            except StatementError as exc:  # a value the column's type cannot bind
                raise self.error(exc, "reading") from None
        raise AssertionError("unreachable")

    def page_statement(self, request: ReadRequest, after: tuple[Any, ...] | None) -> Any:
        """The SELECT of one page: the request's columns (and the cursor column as
        CURSOR_COLUMN), filter and bounds, after the keyset position `after`, in order."""
        columns = [self.column(c) for c in request.columns]
        order = [
            self._cursor_expr(c) if c == request.cursor_field else self.column(c)
            for c in request.order_by
        ]
        extra = []
        if request.cursor_field is not None:
            extra = [self._cursor_expr(request.cursor_field).label(CURSOR_COLUMN)]
        stmt = self._bounded(sa.select(*columns, *extra), request)
        if after is not None:
            stmt = stmt.where(sa.tuple_(*order) > sa.tuple_(*after))
        return stmt.order_by(*order).limit(request.batch_size)

    @staticmethod
    def position(last: Mapping[str, Any], request: ReadRequest) -> tuple[Any, ...]:
        """The keyset position after a page whose last row is `last`."""
        return tuple(last[CURSOR_COLUMN] if c == request.cursor_field else last[c]
                     for c in request.order_by)

    def read_batches(self, request: ReadRequest,
                     fetch: Callable[[Connection, Any], Any] | None = None) -> Iterator[Any]:
        """Pages of records, keyset-paginated. `fetch(conn, statement)` may read a page
        another way (connectors/arrow.py: as an Arrow table); when it returns None the page
        is read as records."""
        after = request.after
        if not self._order_is_unique(request):
            yield from self._streamed(request)
            return

        def read_page(conn: Connection) -> Any:
            page = fetch(conn, stmt) if fetch is not None else None
            if page is None:
                result = conn.execute(stmt)
                names = list(result.keys())
                page = [dict(zip(names, r, strict=True)) for r in result]
            return page

        while True:
            stmt = self.page_statement(request, after)
            page = self._reading(read_page)
            size = len(page) if isinstance(page, list) else page.num_rows
            if not size:
                return
            yield page
            if size < request.batch_size:
                return
            last = (page[-1] if isinstance(page, list)
                    else {c: page.column(c)[size - 1].as_py() for c in page.column_names})
            after = self.position(last, request)

    def _order_is_unique(self, request: ReadRequest) -> bool:
        """Whether no two rows share a position in the request's order, so pages can start
        after the last row of the previous one (keyset paging)."""
        columns = [c for c in request.order_by if c != request.cursor_field]
        desc = self.describe()
        return not desc.exists or desc.is_unique(columns) or any(
            set(k) <= set(columns) for k in (desc.primary_key, *desc.unique_keys) if k)

    def _streamed(self, request: ReadRequest) -> Iterator[list[Record]]:
        """Pages of one ordered query, streamed: where the order is not unique (a table or
        view without a key, read in match key order), a page starting after the last row
        of the one before would skip the rows that share its position."""
        stmt = self.page_statement(request, None).limit(None)
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(
                    stream_results=True, max_row_buffer=max(1, request.batch_size)
                ).execute(stmt)
                names = list(result.keys())
                for rows in result.partitions(max(1, request.batch_size)):
                    yield [dict(zip(names, r, strict=True)) for r in rows]
        except DBAPIError as exc:
            raise self.error(exc, "reading") from None
        except StatementError as exc:
            raise self.error(exc, "reading") from None

    def lookup_table(self, table: str, key_field: str, value_field: str) -> dict[Any, Any]:
        """A whole key -> value table from the same database (for `lookup` transforms)."""
        other = SqlTable(self.url, table, self.schema)
        key, value = other.column(key_field), other.column(value_field)
        try:
            with self.engine.connect() as conn:
                return {k: v for k, v in conn.execute(sa.select(key, value))}
        except DBAPIError as exc:
            raise other.error(exc, "reading lookup table") from None

    # -- write (inside the engine's transaction) -------------------------------------------
    def create(self, tx: Connection, fields: Sequence[FieldInfo], key: Sequence[str]) -> None:
        """Create the table with these columns; the key becomes its primary key."""
        types = {f.name: column_type(f) for f in fields}
        if mysql_dialect.is_mysql(self.dialect):
            text_keys = sum(1 for k in key if isinstance(types.get(k), sa.String | sa.Text))
            types = {name: mysql_dialect.created_type(t, key=name in key, text_keys=text_keys)
                     for name, t in types.items()}
        table = sa.Table(
            self.table_name,
            sa.MetaData(),
            *[sa.Column(f.name, types[f.name], primary_key=f.name in key,
                        nullable=f.name not in key, autoincrement=False) for f in fields],
            schema=self.schema,
        )
        table.create(tx)
        self._table = _adapted(table, self.dialect)
        self._parser_cache = None
        self._uniques = ()

    # -- the contract's write side ------------------------------------------------------------
    def transaction(self, *, rollback: bool = False) -> SqlTransaction:
        return SqlTransaction(self.engine, self.url, rollback=rollback)

    def lookup(self, tx: Connection, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        return self.fetch(tx, key, keys, columns)

    def write(self, tx: Connection, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        if operation == "insert":
            self.insert(tx, rows)
            return WriteResult(written=len(rows))
        if operation == "update":
            self.update(tx, key, rows)
            return WriteResult(written=len(rows))
        if operation == "delete":
            keys = [tuple(r[k] for k in key) for r in rows]
            return WriteResult(written=self.delete(tx, key, keys))
        if rows and self._native_upsert(tx, key, rows):
            return WriteResult(written=len(rows))
        existing = {tuple(r[k] for k in key) for r in
                    self.fetch(tx, key, [tuple(r[k] for k in key) for r in rows], key)}
        self.update(tx, key, [r for r in rows if tuple(r[k] for k in key) in existing])
        self.insert(tx, [r for r in rows if tuple(r[k] for k in key) not in existing])
        return WriteResult(written=len(rows))

    def _native_upsert(self, conn: Connection, key: Sequence[str], rows: Sequence[Record]
                       ) -> bool:
        """Insert or update the rows by `key` in one statement of the database's own upsert
        (`ON CONFLICT ... DO UPDATE` on PostgreSQL, SQLite and DuckDB, `ON DUPLICATE KEY
        UPDATE` on MySQL/MariaDB), where a unique constraint covers exactly the key. False,
        having done nothing, elsewhere: the caller looks the keys up first."""
        desc = self.describe()
        if not desc.exists or not desc.is_unique(key):
            return False
        table = self.table()
        names = list(rows[0])
        columns = [c for c in names if c not in key]
        if self._parsers():
            rows = [self.coerce(r) for r in rows]
        if self.dialect == "duckdb":
            data = duckdb_dialect.as_arrow(rows, names)
            if data is None:
                return False
            duckdb_dialect.upsert_arrow(conn, table, key, data)
            return True
        if mysql_dialect.is_mysql(self.dialect):
            from sqlalchemy.dialects import mysql

            mine = mysql.insert(table)
            stmt = mine.on_duplicate_key_update(
                {c: mine.inserted[c] for c in columns} if columns else {key[0]: table.c[key[0]]})
        elif self.dialect in ("postgresql", "sqlite"):
            from sqlalchemy.dialects import postgresql, sqlite

            base = (postgresql if self.dialect == "postgresql" else sqlite).insert(table)
            stmt = (base.on_conflict_do_update(index_elements=list(key),
                                               set_={c: base.excluded[c] for c in columns})
                    if columns else base.on_conflict_do_nothing(index_elements=list(key)))
        else:
            return False
        conn.execute(stmt, [{c: r.get(c) for c in names} for r in rows])
        return True

    def write_one(self, tx: Connection, operation: Operation, key: Sequence[str], row: Record,
                  expected: Mapping[str, Any] | None = None) -> bool:
        if operation == "insert":
            return self.insert_one(tx, row, key)
        if operation == "delete":
            return self.delete_one(tx, key, [row[k] for k in key], expected)
        return self.update_one(tx, key, row, expected)

    def write_arrow(self, tx: Connection, data: Any) -> bool:
        from . import arrow

        if not arrow.writable(self.table(), data):
            return False  # the record path writes these values its own way
        if self.dialect == "duckdb":
            duckdb_dialect.insert_arrow(tx, self.table(), data)
            return True
        if not arrow.lane_available(self):
            return False
        arrow.insert(tx, self.table(), data)
        return True

    def differing(self, tx: Connection, key: Sequence[str], data: Any) -> list[int] | None:
        from . import compare

        return compare.differing(tx, self.table(), key, data)

    def read_arrow(self, request: ReadRequest, keys_only: bool = False) -> Iterator[Any] | None:
        """Pages as Arrow tables (PostgreSQL: COPY parsed by Arrow, read ahead in a thread),
        or None where the lane cannot read these columns."""
        from . import arrow

        if not arrow.lane_available(self):
            return None
        types = arrow.schema_for(self, request.columns, request.cursor_field)
        if types is None:
            return None
        pages = arrow.read_batches(self, request, types)
        # Reading ahead pays where the reader mostly waits on a server (PostgreSQL's COPY);
        # SQLite reads in this process and would only contend for the interpreter.
        return pages if self.dialect == "sqlite" else arrow.prefetched(pages)

    def state_host(self) -> Any:
        from .state_host import SqlStateHost

        return SqlStateHost(self.url, self.schema, engine=self.engine)

    def count(self) -> int | None:
        table = self.reflect()
        if table is None:
            return None
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(sa.select(sa.func.count()).select_from(table))
                           .scalar() or 0)
        except DBAPIError as exc:
            raise self.error(exc, "counting") from None

    def change_token(self, filter: Any, cursor_field: str | None) -> Any:
        """The row count and the largest cursor value (or primary key: inserts and deletes
        only) within the filter."""
        table = self.table()
        stmt = sa.select(sa.func.count())
        if cursor_field:
            stmt = sa.select(sa.func.count(), sa.func.max(self.column(cursor_field)))
        elif table.primary_key.columns:
            stmt = sa.select(sa.func.count(), sa.func.max(next(iter(table.primary_key.columns))))
        stmt = stmt.select_from(table)
        if filter is not None:
            stmt = stmt.where(objectql.compile_filter(filter, dict(table.c)))
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(stmt).one())
        except DBAPIError as exc:
            raise self.error(exc, "reading") from None

    def fetch(self, conn: Connection, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
              columns: Sequence[str]) -> list[Record]:
        """Rows whose key is among `keys`, with the key and the given columns."""
        table = self.table()
        key_cols = [table.c[k] for k in key]
        wanted = list(dict.fromkeys([*key, *columns]))
        out: list[Record] = []
        if len(key_cols) == 1 and conn.dialect.name == "postgresql":
            # one query with an array, not hundreds of bound IN parameters
            cond = key_cols[0] == sa.any_(sa.literal([k[0] for k in keys],
                                                     type_=ARRAY(key_cols[0].type)))
            stmt = sa.select(*[table.c[c] for c in wanted]).where(cond)
            return [dict(r) for r in conn.execute(stmt).mappings()]
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            cond = (key_cols[0].in_([k[0] for k in chunk]) if len(key_cols) == 1
                    else sa.tuple_(*key_cols).in_(chunk))
            stmt = sa.select(*[table.c[c] for c in wanted]).where(cond)
            out.extend(dict(r) for r in conn.execute(stmt).mappings())
        return out

    def insert(self, conn: Connection, rows: Sequence[Record]) -> None:
        if not rows:
            return
        if self._parsers():
            rows = [self.coerce(r) for r in rows]
        if pgcopy.usable(conn, rows):
            pgcopy.copy_rows(conn, self.table(), list(rows[0]), rows)
            return
        if self.dialect == "duckdb" and len(rows) >= _SET_UPDATE_ROWS:
            data = duckdb_dialect.as_arrow(rows, list(rows[0]))
            if data is not None:  # read in place: an executemany is slow on DuckDB
                duckdb_dialect.insert_arrow(conn, self.table(), data)
                return
        conn.execute(sa.insert(self.table()), list(rows))

    def update(self, conn: Connection, key: Sequence[str], rows: Sequence[Record]) -> None:
        if not rows:
            return
        table = self.table()
        columns = [c for c in rows[0] if c not in key]
        if not columns:
            return
        if self._parsers():
            rows = [self.coerce(r) for r in rows]
        if pgcopy.usable(conn, rows):
            pgcopy.update_rows(conn, table, key, columns, rows)
            return
        if len(rows) >= _SET_UPDATE_ROWS:  # one statement for the batch, not one per row
            if self.dialect == "duckdb" and duckdb_dialect.update_rows(
                    conn, table, key, columns, rows):
                return
            if mysql_dialect.is_mysql(self.dialect):
                mysql_dialect.update_rows(conn, table, key, columns, rows)
                return
        stmt = (
            sa.update(table)
            .where(*[table.c[k] == sa.bindparam(f"k_{i}") for i, k in enumerate(key)])
            .values({c: sa.bindparam(f"v_{j}") for j, c in enumerate(columns)})
        )
        params = [
            {**{f"k_{i}": r[k] for i, k in enumerate(key)},
             **{f"v_{j}": r.get(c) for j, c in enumerate(columns)}}
            for r in rows
        ]
        conn.execute(stmt, params)

    def _guard(self, key: Sequence[str], key_values: Sequence[Any],
               expected: Mapping[str, Any] | None) -> list[sa.ColumnElement[bool]]:
        table = self.table()
        conds = [table.c[k] == v for k, v in zip(key, key_values, strict=True)]
        for column, value in (expected or {}).items():
            # the row must still hold what the sync read: otherwise someone changed it
            col = table.c[column]
            if isinstance(col.type, _SqliteDateTime) and isinstance(value, datetime):
                # the stored text may be any writer's form of the same instant
                conds.append(sa.type_coerce(col, sa.Text).in_(col.type.forms(value)))
            else:
                conds.append(col.is_not_distinct_from(value))
        return conds

    def _parsers(self) -> dict[str, Any]:
        """Columns whose values need converting before the driver binds them, with how."""
        if self._parser_cache is None:
            parsers: dict[str, Any] = {}
            sqlite = self.dialect == "sqlite"
            for column in self.table().columns:
                try:
                    python_type = column.type.python_type
                except NotImplementedError:
                    python_type = None
                if isinstance(column.type, _SqliteDateTime):
                    parsers[column.name] = column.type.stored_text
                elif python_type is datetime:
                    parsers[column.name] = _from_text(_parse_datetime)
                elif python_type is date:
                    parsers[column.name] = _from_text(_parse_date)
                elif python_type is float and self.engine.dialect.driver == "psycopg2":
                    parsers[column.name] = _negative_zero_as_text
                elif sqlite and python_type is not Decimal and not isinstance(
                        column.type, sa.Numeric | sa.JSON):  # JSON encodes its values
                    # sqlite3 binds no Decimal: give its text, which the column's
                    # affinity stores as SQLite would store that literal
                    parsers[column.name] = _sqlite_value
                elif python_type is str:  # a JSON value into a text column: its JSON text
                    parsers[column.name] = _container_as_json
            self._parser_cache = parsers
        return self._parser_cache

    def coerce(self, row: Record) -> Record:
        """Values as the driver can bind them for their columns: ISO-8601 text for date and
        time columns as Python values (SQLite's driver types refuse text; PostgreSQL would
        parse it anyway), decimals for SQLite's non-numeric columns as text."""
        parsers = self._parsers()
        out: Record | None = None  # a copy only for a row with a value to convert
        for name, convert in parsers.items():
            if name in row:
                value = row[name]
                converted = convert(value)
                if converted is not value:
                    if out is None:
                        out = dict(row)
                    out[name] = converted
        return row if out is None else out

    def update_one(self, conn: Connection, key: Sequence[str], row: Record,
                   expected: Mapping[str, Any] | None = None) -> bool:
        """Update one row, only if it still holds `expected`; False when it did not."""
        row = self.coerce(row)
        values = {c: v for c, v in row.items() if c not in key}
        if not values:
            return True
        stmt = sa.update(self.table()).where(
            *self._guard(key, [row[k] for k in key], expected)).values(values)
        return bool(affected(conn, stmt))

    def delete_one(self, conn: Connection, key: Sequence[str], key_values: Sequence[Any],
                   expected: Mapping[str, Any] | None = None) -> bool:
        stmt = sa.delete(self.table()).where(*self._guard(key, key_values, expected))
        return bool(affected(conn, stmt))

    def insert_one(self, conn: Connection, row: Record, key: Sequence[str] = ()) -> bool:
        """Insert one row unless it appeared meanwhile (then False, nothing written). A row
        the table refuses for another reason (a CHECK, a NOT NULL) raises."""
        if self.dialect == "duckdb":
            # no savepoints; one process writes a DuckDB file, and this transaction sees it
            if key and self.fetch(conn, key, [tuple(row[k] for k in key)], key):
                return False
            conn.execute(sa.insert(self.table()), [self.coerce(row)])
            return True
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(self.table()), [self.coerce(row)])
            return True
        except sa.exc.IntegrityError:
            if key and not self.fetch(conn, key, [tuple(row[k] for k in key)], key):
                raise
            return False

    def delete(self, conn: Connection, key: Sequence[str], keys: Sequence[tuple[Any, ...]]) -> int:
        table = self.table()
        key_cols = [table.c[k] for k in key]
        deleted = 0
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            cond = (key_cols[0].in_([k[0] for k in chunk]) if len(key_cols) == 1
                    else sa.tuple_(*key_cols).in_(chunk))
            deleted += affected(conn, sa.delete(table).where(cond))
        return deleted
