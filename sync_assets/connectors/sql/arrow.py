"""Arrow reads and bulk writes for SQL tables: the engine's fast lane.

PostgreSQL pages (psycopg2 or psycopg 3) are read with `COPY (SELECT ...) TO STDOUT` as CSV
and parsed by Arrow's CSV reader, so no Python object is made per value; SQLite pages come
from the driver as tuples and become typed Arrow arrays. Bulk writes go the other way: on
PostgreSQL `COPY ... FROM STDIN` in the binary format (`pgbinary`, encoded by the columns'
types in the catalog; the server parses it in about 60% of CSV's time) or, where a column
type has no encoding there, Arrow's CSV writer; `executemany` with SQLAlchemy's own value
processing on SQLite. A page Arrow cannot type (an unparsable timestamp, text in an integer
column) is read again the ordinary way and handed on as records, so the lane never changes
what is read.

The SELECT is the one `SqlTable.read_batches` runs (same filter, bounds, order and keyset
pagination), rendered with its parameters by the driver itself (`mogrify`: psycopg2's cursor,
psycopg 3's ClientCursor) because COPY takes no parameters. The driver-specific part, COPY
and mogrify, is pgcopy's adapter; everything here is one code path for both drivers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from queue import Empty, Full, Queue
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ... import arrow_codecs as codecs
from ..base import CURSOR_COLUMN, ReadRequest, Record
from . import pgbinary, pgcopy

if TYPE_CHECKING:
    from .adbc import PageReader
    from .table import SqlTable

# Pages are parsed in a reader thread and written by others: Arrow's default allocator
# (mimalloc) keeps a heap per thread, about 40 MB more at peak than the system allocator, for
# no speed. Arrow's own setting (ARROW_DEFAULT_MEMORY_POOL) wins when it is set.
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    pa.set_memory_pool(pa.system_memory_pool())


def arrow_type(type_: Any, dialect: str) -> pa.DataType | None:
    """The Arrow type a column reads as in the fast lane, or None when only the ordinary
    reader gives the values the engine expects (arrays, enums, ...). JSON reads as its text
    (`arrow.json`), UUIDs as `arrow.uuid`, bytea and blobs as binary. Numeric of a
    declared precision (up to 38 digits) reads as that decimal: on PostgreSQL COPY writes the
    text the driver would parse, on SQLite the stored number is rounded to the scale as
    SQLAlchemy rounds it. Float and double read as float64, time as time64, PostgreSQL's
    interval as the text the ordinary reader gives (`reads_as_text`)."""
    if isinstance(type_, sa.Boolean):
        return pa.bool_()
    if dialect in ("postgresql", "sqlite"):
        if isinstance(type_, sa.JSON):
            return pa.json_()
        if isinstance(type_, sa.Uuid) and type_.as_uuid:
            return pa.uuid()
        if isinstance(type_, sa.LargeBinary):
            return pa.binary()
    if isinstance(type_, sa.Integer):
        return pa.int64()
    if dialect in ("postgresql", "sqlite") and isinstance(type_, sa.Float):
        return pa.float64()
    if (dialect == "postgresql" and isinstance(type_, sa.Numeric)
            and type_.precision is not None and 0 < type_.precision <= 38):
        return pa.decimal128(type_.precision, type_.scale or 0)
    if (dialect == "sqlite" and isinstance(type_, sa.Numeric) and type_.asdecimal
            and type_.precision is not None and 0 < type_.precision <= 38
            and type_.scale is not None and 0 <= type_.scale <= type_.precision):
        return pa.decimal128(type_.precision, type_.scale)
    if dialect == "postgresql" and getattr(type_, "reads_as_text", False):
        return pa.string()
    if dialect in ("postgresql", "sqlite") and isinstance(type_, sa.Time) \
            and not type_.timezone:
        return pa.time64("us")
    if isinstance(type_, sa.DateTime):
        # SQLite stores text without a zone; PostgreSQL's timestamptz reads as UTC
        return pa.timestamp("us", "UTC" if type_.timezone and dialect != "sqlite" else None)
    if isinstance(type_, sa.Date):
        return pa.date32()
    if isinstance(type_, sa.String) and not isinstance(type_, sa.Enum | sa.Uuid):
        return pa.string()
    return None


def lane_available(endpoint: Any) -> bool:
    """Whether this endpoint reads and writes Arrow batches (PostgreSQL with psycopg2 or
    psycopg 3, or SQLite)."""
    if not hasattr(endpoint, "page_statement"):  # a SqlTable (no import: table uses us)
        return False
    dialect = endpoint.engine.dialect
    return dialect.name == "sqlite" or pgcopy.supported(dialect)


def schema_for(endpoint: SqlTable, columns: Sequence[str],
               cursor_field: str | None) -> dict[str, pa.DataType] | None:
    """Arrow types of the columns a request reads, or None if one has no Arrow type here."""
    types: dict[str, pa.DataType] = {}
    for name in columns:
        t = arrow_type(endpoint.column(name).type, endpoint.dialect)
        if t is None:
            return None
        types[name] = t
    if cursor_field is not None:
        # SQLite compares the change-tracking column as stored text (see sql.py)
        t = (pa.string() if endpoint.dialect == "sqlite"
             else arrow_type(endpoint.column(cursor_field).type, endpoint.dialect))
        if t is None:
            return None
        types[CURSOR_COLUMN] = t
    return types


def read_batches(endpoint: SqlTable, request: ReadRequest,
                 types: Mapping[str, pa.DataType]) -> Iterator[pa.Table | list[Record]]:
    """The pages of `SqlTable.read_batches`, as Arrow tables (or records, for a page Arrow
    cannot type)."""
    names = [*request.columns, *([CURSOR_COLUMN] if request.cursor_field else [])]
    if endpoint.dialect != "postgresql":
        return endpoint.read_batches(
            request, fetch=lambda conn, stmt: _read_page(conn, stmt, names, types))
    return _read_by_adbc(endpoint, request, names, types)


def _read_by_adbc(endpoint: SqlTable, request: ReadRequest, names: list[str],
                  types: Mapping[str, pa.DataType]) -> Iterator[pa.Table | list[Record]]:
    """PostgreSQL's pages read by ADBC's driver (`adbc.py`) where it can, by CSV COPY where
    it cannot; its connection closes with the pass."""
    from .adbc import PageReader

    reader = PageReader(endpoint.engine.url)
    try:
        yield from endpoint.read_batches(
            request, fetch=lambda conn, stmt: _read_page(conn, stmt, names, types, reader))
    finally:
        reader.close()


def _read_page(conn: Connection, stmt: sa.Select[Any], names: list[str],
               types: Mapping[str, pa.DataType], reader: PageReader | None = None
               ) -> pa.Table | None:
    schema = pa.schema([(n, types[n]) for n in names])
    if conn.dialect.name == "postgresql":
        page = reader.page(conn, stmt, schema) if reader is not None else None
        return page if page is not None else _copy_out(conn, stmt, schema)
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = tuple(compiled.construct_params()[p] for p in compiled.positiontup or ())
    rows = _sqlite_rows(conn, str(compiled), params)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    try:
        arrays = [_sqlite_array(list(values), field.type)
                  for values, field in zip(columns, schema, strict=True)]
        return pa.Table.from_arrays(arrays, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError,
            ArithmeticError):
        return None  # read the ordinary way, which reports a value it cannot convert


def _sqlite_rows(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """The rows as the driver's tuples (SQLAlchemy's Row objects cost as much as reading
    them). An error is raised by running the statement again through SQLAlchemy, which
    gives it as the rest of the code expects it (an `OperationalError`, ...)."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    except Exception:  # raised again, as SQLAlchemy wraps it
        return list(conn.exec_driver_sql(sql, params).fetchall())
    finally:
        cursor.close()


def _sqlite_array(values: list[Any], type_: pa.DataType) -> pa.Array:
    if codecs.is_json(type_):
        # SQLAlchemy stores JSON as its text, which a JSON column's numeric affinity keeps
        # as a number where it is one (7, 1.5)
        texts = [v if v is None or type(v) is str else _number_json(v) for v in values]
        for v in texts:  # a text that is no JSON: the ordinary reader reports it
            if v is not None:
                _json_value(v)
        return codecs.json_array(pa.array(texts, pa.string()))
    if codecs.is_uuid(type_):
        return codecs.uuids(pa.array(values, pa.string()))  # 32 hex digits (CHAR(32))
    if pa.types.is_time(type_):
        # stored as text (SQLAlchemy writes HH:MM:SS.ffffff), read with time.fromisoformat:
        # Arrow reads the forms both take alike, anything else is left to that reader
        text = pa.array(values, pa.string())
        if not pc.all(pc.match_substring_regex(
                text, r"^\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?$")).as_py():
            raise ValueError("a time in another form")
        day = pc.binary_join_element_wise("1970-01-01 ", text, "")
        return day.cast(pa.timestamp("us")).cast(type_)
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_):
        # stored as ISO text; Arrow's parser reads the forms SQLAlchemy writes
        text = pa.array(values, pa.string())
        if pa.types.is_date(type_):
            return text.cast(pa.timestamp("s")).cast(pa.date32())
        return text.cast(type_)
    if pa.types.is_boolean(type_):
        return pa.array([None if v is None else bool(v) if type(v) is int else v
                         for v in values], type_)
    if pa.types.is_decimal(type_):
        # SQLite keeps a REAL or an INTEGER: SQLAlchemy's Numeric reads it as "%.<scale>f"
        form = f"%.{type_.scale}f"
        return pa.array([None if v is None else Decimal(form % v) for v in values], type_)
    return pa.array(values, type_)


# json.loads and json.dumps with their defaults, without the Python around the C scanner
# and encoder (a whitespace match and a new encoder each call: half the time of a small
# document, 760,000 documents read and written in the bench's table of every type)
_JSON_SCAN = json.JSONDecoder().scan_once
_JSON_ENCODE = codecs.c_iterencode(json.JSONEncoder())


def _json_value(text: str) -> Any:
    """`json.loads(text)`: the C scanner alone where the text is one document and nothing
    else, json.loads itself (whitespace around it, or no JSON: its error) otherwise."""
    try:
        value, end = _JSON_SCAN(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else json.loads(text)


def _json_binds(column: Any, impl: sa.types.TypeEngine[Any], dialect: Any,
                process: Any) -> list[Any] | None:
    """What SQLAlchemy's JSON type binds for each document of an Arrow JSON column
    (`json.dumps` of its decoded value, SQL NULL for a null), or None where the column's
    type or the dialect serialize JSON their own way."""
    if (not isinstance(impl, sa.JSON)
            or getattr(dialect, "_json_serializer", None) is not None
            or type(impl).bind_processor is not sa.JSON.bind_processor
            or impl._str_impl.bind_processor(dialect) is not None):
        return None
    null, encode = process(None), _JSON_ENCODE
    values = (None if t is None else _json_value(t)
              for t in codecs.json_storage(column).to_pylist())
    return [null if v is None else "".join(encode(v, 0)) for v in values]


def _sqlite_binds(column: Any, impl: sa.types.TypeEngine[Any], dialect: Any,
                  process: Any) -> list[Any] | None:
    """What `process`, the bind processor of `impl` (the column's type on SQLite), makes of
    every value of an Arrow column, computed a column at a time where Arrow writes the same
    (None where it does not: the values go through `process` one by one)."""
    t = column.type
    if codecs.is_json(t):
        return _json_binds(column, impl, dialect, process)
    if pa.types.is_boolean(t) and isinstance(impl, sa.Boolean) and type(process(True)) is int:
        return column.cast(pa.int64()).to_pylist()  # SQLite has no boolean: 1 and 0
    if (pa.types.is_decimal(t) and isinstance(impl, sa.Numeric)
            and type(process(Decimal("0.1"))) is float):
        # `float(Decimal)` is the correctly rounded double of the decimal's text, which is
        # what Arrow's parser makes of the same text
        return column.cast(pa.string()).cast(pa.float64()).to_pylist()
    storage = getattr(impl, "_storage_format", None)
    if (pa.types.is_date32(t) and isinstance(impl, sa.Date)
            and storage == "%(year)04d-%(month)02d-%(day)02d"):
        return column.cast(pa.string()).to_pylist()  # Arrow writes the year in four digits
    if (pa.types.is_time(t) and t.unit in ("s", "ms", "us") and isinstance(impl, sa.Time)
            and storage == "%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"):
        return column.cast(pa.time64("us")).cast(pa.string()).to_pylist()  # six digits
    if codecs.is_binary(t) and isinstance(impl, sa.LargeBinary):
        return column.to_pylist()  # bytes bind as the BLOB sqlite3.Binary's view makes
    return None


def _number_json(value: Any) -> str:
    if type(value) not in (int, float):
        raise TypeError(f"{type(value).__name__} in a JSON column")
    return json.dumps(value)


def select_arrow(conn: Connection, stmt: sa.Select[Any], schema: pa.Schema) -> pa.Table | None:
    """The rows of a SELECT as an Arrow table of `schema`, read by COPY on PostgreSQL
    (psycopg2 or 3) as the lane reads pages; None where the lane cannot read them."""
    if not pgcopy.supported(conn.dialect):
        return None
    return _copy_out(conn, stmt, schema)


def _copy_out(conn: Connection, stmt: sa.Select[Any], schema: pa.Schema) -> pa.Table | None:
    query = pgcopy.rendered(conn, stmt)
    if query is None:  # read as records
        return None
    buffer = io.BytesIO()
    pgcopy.copy_out(conn, f"COPY ({query}) TO STDOUT WITH (FORMAT csv)", buffer)
    if not buffer.tell():
        return schema.empty_table()
    buffer.seek(0)
    # COPY gives JSON, UUIDs and bytea as text: read as text, then decoded a column at once
    as_text = pa.schema([(f.name, pa.string() if _encoded(f.type) else f.type)
                         for f in schema])
    try:
        page = pacsv.read_csv(
            buffer,
            read_options=pacsv.ReadOptions(column_names=schema.names, use_threads=False),
            # without it a quoted newline that falls on the parser's block boundary splits
            # its row in two and the page goes to the record path
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=as_text, null_values=[""], strings_can_be_null=True,
                quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"],
            ),
        )
        for i, field in enumerate(schema):
            if _encoded(field.type):
                page = page.set_column(i, field.name, _decoded(page.column(i), field.type))
        return page
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):  # bytea_output = escape, ...
        return None


def _encoded(t: pa.DataType) -> bool:
    """Types a database sends as text: JSON, UUIDs, bytes."""
    return codecs.is_json(t) or codecs.is_uuid(t) or codecs.is_binary(t)


def _decoded(texts: Any, t: pa.DataType) -> pa.Array:
    """PostgreSQL's text of JSON, UUIDs or bytea (`\\x` and hex) as the lane's arrays."""
    if codecs.is_json(t):
        return codecs.json_array(texts)
    if codecs.is_uuid(t):
        return codecs.uuids(texts)
    return codecs.from_hex(texts, "\\x")


# -- bulk writes ----------------------------------------------------------------------------
def writable(table: sa.Table, data: pa.Table) -> bool:
    """Whether the lane writes these columns as the record path would: JSON, UUIDs and
    bytes only into columns of their own type (into text the record path writes its own
    text of them), and a JSON column only from JSON (a text bound for it is a JSON string
    there, not a document)."""
    for field in data.schema:
        column_type = table.c[field.name].type
        if codecs.is_json(field.type) != isinstance(column_type, sa.JSON):
            return False
        if codecs.is_uuid(field.type) and not isinstance(column_type, sa.Uuid):
            return False
        if codecs.is_binary(field.type) and not isinstance(column_type, sa.LargeBinary):
            return False
    return True


def _csv_ready(data: pa.Table) -> pa.Table:
    """Columns as the text COPY reads: JSON as its text, UUIDs hyphenated, bytes as bytea's
    `\\x` hex; zone-aware timestamps as text Arrow formats twenty times faster, the UTC
    wall time (the zone dropped, instants kept) with a `Z`, which PostgreSQL reads as the
    same instant."""
    for i, field in enumerate(data.schema):
        t = field.type
        if pa.types.is_timestamp(t) and t.tz is not None:
            naive = data.column(i).cast(pa.timestamp(t.unit)).cast(pa.string())
            data = data.set_column(i, field.name, pc.binary_join_element_wise(naive, "Z", ""))
        elif codecs.is_json(t):
            data = data.set_column(i, field.name, data.column(i).combine_chunks().storage)
        elif codecs.is_uuid(t):
            data = data.set_column(i, field.name, codecs.uuid_text(data.column(i)))
        elif codecs.is_binary(t):
            data = data.set_column(i, field.name, codecs.hex_text(data.column(i), "\\x"))
    return data


def csv_copy(conn: Connection, target: str, data: pa.Table) -> None:
    """COPY `data` as CSV into `target` (`pgcopy.copy_target`): every column type, its
    texts parsed by the server's input functions."""
    buffer = io.BytesIO()
    pacsv.write_csv(_csv_ready(data), buffer, pacsv.WriteOptions(include_header=False))
    buffer.seek(0)
    pgcopy.copy_in(conn, f"COPY {target} FROM STDIN WITH (FORMAT csv)", buffer)


def _binary_copy(conn: Connection, table: sa.Table, data: pa.Table) -> bytes | None:
    """`data` as a binary COPY stream for the table's columns as the catalog has them, or
    None where a column goes only as CSV (`pgbinary`)."""
    found = pgbinary.column_types(conn, pgcopy.table_name(conn, table), data.column_names)
    if found is None:
        return None
    oids, interval_style = found
    if pgbinary.INTERVAL in oids and interval_style != "postgres":
        return None  # the texts are read by the session's style, which only CSV follows
    return pgbinary.encode(data, oids)


def insert(conn: Connection, table: sa.Table, data: pa.Table) -> None:
    """Insert every row of `data` (columns named as the table's) in the open transaction."""
    if not data.num_rows:
        return
    if pgcopy.supported(conn.dialect):
        target = pgcopy.copy_target(conn, table, data.column_names)
        stream = _binary_copy(conn, table, data)
        if stream is not None:
            pgcopy.copy_in(conn, f"COPY {target} FROM STDIN WITH (FORMAT binary)",
                           io.BytesIO(stream))
            return
        csv_copy(conn, target, data)
        return
    if conn.dialect.name != "sqlite":  # a PostgreSQL driver without COPY (pg8000, ...)
        conn.execute(sa.insert(table), codecs.values_of(data))
        return
    # SQLite: the values SQLAlchemy would bind (its DateTime text form, ...), without building
    # a dict per row
    columns = []
    for name in data.column_names:
        column = data.column(name)
        type_ = table.c[name].type
        stored_texts = getattr(type_, "stored_texts", None)  # a whole column's stored text
        texts = stored_texts(column) if stored_texts is not None else None
        if texts is not None:
            columns.append(texts)
            continue
        # the dialect's own type binds (SQLite's TIME formats a time; the generic one does not)
        impl = type_.dialect_impl(conn.dialect)
        process = impl.bind_processor(conn.dialect)
        binds = None if process is None else _sqlite_binds(column, impl, conn.dialect, process)
        if binds is not None:
            columns.append(binds)
            continue
        values = (codecs.json_values(column) if codecs.is_json(column.type)
                  else column.to_pylist())
        stored = getattr(type_, "stored_text", None)  # the text SQLite itself would write
        if pa.types.is_decimal(data.column(name).type) and not isinstance(type_, sa.Numeric):
            # sqlite3 binds no Decimal: its text, as the record path writes it (coerce)
            values = [None if v is None else format(v, "f") for v in values]
        if stored is not None and process is not None:
            columns.append([process(stored(v)) for v in values])
        else:
            columns.append([process(v) for v in values] if process else values)
    stmt = sa.insert(table).compile(dialect=conn.dialect,
                                    column_keys=list(data.column_names))
    order = [data.column_names.index(p) for p in (stmt.positiontup or [])]
    rows = list(zip(*columns, strict=True))
    if order != list(range(len(order))):
        rows = [tuple(r[i] for i in order) for r in rows]
    conn.exec_driver_sql(str(stmt), rows)  # type: ignore[arg-type]


def prefetched(pages: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """The pages of an iterator, read up to `depth` ahead in a thread: the next page's
    COPY and parsing run while this one is written (drivers release the GIL while they wait
    on the server). The reader stops when the consumer does, and closes the iterator."""
    queue: Queue[tuple[str, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        queue.put(("page", page), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put(("error", exc))
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()  # a generator's own cleanup (a connection) runs here, now

    reader = threading.Thread(target=read, name="sync-read", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting to put
            with contextlib.suppress(Empty):
                queue.get_nowait()
            reader.join(timeout=0.05)
