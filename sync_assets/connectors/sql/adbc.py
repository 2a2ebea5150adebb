"""PostgreSQL pages of the Arrow lane read through ADBC's PostgreSQL driver (Apache Arrow's
own): the server sends `COPY ... TO STDOUT (FORMAT binary)` and the driver decodes it to Arrow
in C++, so no value is formatted as text by the server nor parsed here (the wide benchmark
table's 800,000 rows: 2.4 s through the lane, 1.8 s for the driver alone, against 4.7 s
through CSV).

One connection a read pass, opened on its first page, in autocommit (no snapshot held open
between pages). The SELECT is the lane's own, rendered by the SQLAlchemy driver as for COPY,
with the columns the lane reads as text (`reads_as_text`: interval) cast to text by the
server. What this reader cannot give as the lane's types it leaves to the CSV reader: an
error (which that reader then reports as it always has), numeric's NaN, an infinite or BC
date or timestamp (which the driver would hand over as a wrapped-around number). An error,
or a connection it cannot open (credentials in `connect_args` rather than the URL), turns
it off for the rest of the pass. Its errors are never shown: they may carry the URL.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ... import arrow_codecs as codecs
from . import pgcopy

# what Python's datetime and date hold (years 1 to 9999), as Arrow's integers
_MIN_US, _MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999
_MIN_DAY, _MAX_DAY = -719_162, 2_932_896


def _driver() -> tuple[Any, Any] | None:
    try:
        import adbc_driver_manager
        import adbc_driver_postgresql
    except ImportError:
        return None
    return adbc_driver_manager, adbc_driver_postgresql


class PageReader:
    """Pages of one read pass (see the module)."""

    def __init__(self, url: sa.URL) -> None:
        self._uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._driver = _driver()
        self._database: Any = None
        self._connection: Any = None

    def page(self, conn: Connection, stmt: sa.Select[Any], schema: pa.Schema
             ) -> pa.Table | None:
        """The rows of `stmt` as an Arrow table of `schema`, or None where this reader
        leaves them to the CSV reader. `conn` renders the statement's parameters."""
        if self._driver is None:
            return None
        manager, postgresql = self._driver
        query = _query(conn, stmt)
        if query is None:
            return None
        try:
            if self._connection is None:
                self._database = postgresql.connect(self._uri)
                self._connection = manager.AdbcConnection(self._database)
        except Exception:  # whatever it is, its text may carry the URL: never shown
            self.close()
            self._driver = None  # off for this pass: the CSV reader takes every page
            return None
        try:
            statement = manager.AdbcStatement(self._connection)
            try:
                statement.set_sql_query(query)
                stream, _ = statement.execute_query()
                table = pa.RecordBatchReader.from_stream(stream).read_all()
            finally:
                statement.close()
        except Exception:  # the CSV reader reads the page again and reports its error
            self.close()
            # off for this pass: a connection set up otherwise than the engine's (a
            # search_path in connect_args) would fail every page again
            self._driver = None
            return None
        return lane_table(table, schema)

    def close(self) -> None:
        for handle in (self._connection, self._database):
            if handle is not None:
                with contextlib.suppress(Exception):  # a lost connection: nothing to close
                    handle.close()
        self._connection = self._database = None


def _query(conn: Connection, stmt: sa.Select[Any]) -> str | None:
    """The SELECT's text with its parameters rendered by the driver, the columns the lane
    reads as text cast to text; None where the driver cannot render them."""
    columns = list(stmt.selected_columns)
    cast = [sa.cast(c, sa.Text).label(c.name) if getattr(c.type, "reads_as_text", False)
            else c for c in columns]
    if any(a is not b for a, b in zip(cast, columns, strict=True)):
        stmt = stmt.with_only_columns(*cast, maintain_column_froms=True)
    return pgcopy.rendered(conn, stmt)


def lane_table(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """What the driver read, as the lane's types (`arrow.arrow_type`), or None where a
    value has no such form."""
    if table.num_columns != len(schema):
        return None
    if not table.num_rows:
        return schema.empty_table()
    table = table.combine_chunks()
    try:
        arrays = [_lane_array(table.column(i).chunk(0), field.type)
                  for i, field in enumerate(schema)]
    except (pa.ArrowException, ValueError, TypeError):
        return None
    if any(a is None for a in arrays):
        return None
    return pa.Table.from_arrays(arrays, schema=schema)


def _lane_array(arr: pa.Array, target: pa.DataType) -> pa.Array | None:
    storage = arr.storage if isinstance(arr, pa.ExtensionArray) else arr
    if codecs.is_json(target):
        return codecs.json_array(storage) if pa.types.is_string(storage.type) else None
    if codecs.is_uuid(target):
        if arr.type == target:
            return arr
        if storage.type == pa.binary(16):
            return pa.ExtensionArray.from_storage(target, storage)
        return None
    if pa.types.is_decimal(target):  # numeric comes as its text: NaN does not cast
        return pc.cast(storage, target) if pa.types.is_string(storage.type) else None
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(arr.type) and (
            arr.type.unit != "us" or not _within(
                arr.cast(pa.timestamp("us")).cast(pa.int64()), _MIN_US, _MAX_US)):
        return None
    if pa.types.is_date32(target) and pa.types.is_date32(arr.type) and not _within(
            arr.cast(pa.int32()), _MIN_DAY, _MAX_DAY):
        return None
    if isinstance(arr, pa.ExtensionArray):
        return None  # a type the lane does not know (timetz, ...)
    return arr if arr.type == target else arr.cast(target)


def _within(values: pa.Array, low: int, high: int) -> bool:
    """Whether every value lies within [low, high] (nulls aside)."""
    bounds = pc.min_max(values).as_py()
    return bounds["min"] is None or (bounds["min"] >= low and bounds["max"] <= high)
