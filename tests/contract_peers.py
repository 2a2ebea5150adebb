"""The systems the contract suite runs over, each behind the same small test interface.

A peer makes record sets with given fields, key and rows, reads them back in key order, can
be told to refuse records (a CHECK constraint on SQL, a validation rule in memory) and to fail
its next writes transiently (on SQL a driver error injected before the statement, as a lost
connection or a locked database raises; in memory a 429-like fault with Retry-After).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from sync_assets.connectors import memory
from sync_assets.connectors.sql import duckdb_dialect, get_engine

#: the fields the suite compares: what every peer holds of a person
FIELDS = ("email", "name", "score")

_SA_TYPES = {"integer": sa.Integer, "text": sa.Text, "datetime": sa.DateTime,
             "float": sa.Float, "boolean": sa.Boolean, "date": sa.Date}


def _column_type(kind: str, key: bool) -> Any:
    if key and kind == "text":  # MySQL keys no TEXT column
        return sa.Text().with_variant(sa.String(255), "mysql", "mariadb")
    return _SA_TYPES[kind]()


def _reflect(engine: sa.Engine, resource: str) -> sa.Table:
    if engine.dialect.name == "duckdb":  # its dialect's own reflection fails on SQLAlchemy 2.1
        found = duckdb_dialect.reflect(engine, resource, None)
        assert found is not None, resource
        return found
    return sa.Table(resource, sa.MetaData(), autoload_with=engine)


class SqlPeer:
    transactional = True
    people = "people"  # the record set the contract suite writes and reads

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def settings(self) -> dict[str, Any]:
        return {"type": "sql", "url": self.url}

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        table = sa.Table(resource, sa.MetaData(),
                         *[sa.Column(n, _column_type(k, n in key), primary_key=n in key)
                           for n, k in fields.items()])
        if refuse_negative:  # quoted as each database quotes names
            table.append_constraint(sa.CheckConstraint(table.c[refuse_negative] >= 0,
                                                       name="no_negative"))
        engine = sa.create_engine(self.url)
        with engine.begin() as conn:
            table.create(conn)
            if rows:
                conn.execute(table.insert(), [dict(r) for r in rows])
        engine.dispose()

    def rows(self, resource: str, fields: Sequence[str] = FIELDS, key: str = "email"
             ) -> list[dict[str, Any]]:
        engine = sa.create_engine(self.url)
        try:
            table = _reflect(engine, resource)
            with engine.connect() as conn:
                return [dict(r) for r in conn.execute(
                    sa.select(*[table.c[f] for f in fields]).order_by(table.c[key])
                ).mappings()]
        finally:
            engine.dispose()

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        engine = sa.create_engine(self.url)
        table = _reflect(engine, resource)
        with engine.begin() as conn:
            conn.execute(table.update().where(*[table.c[k] == v for k, v in key.items()])
                         .values(dict(values)))
        engine.dispose()

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        """The next `count` writing statements fail as a locked database or a dropped
        connection does (the driver's own exception class)."""
        engine = get_engine(self.url)
        left = [count]
        dialect = engine.dialect.name

        def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            verb = statement.lstrip().split(None, 1)[0].upper()
            if left[0] > 0 and verb in ("INSERT", "UPDATE", "DELETE", "COPY"):
                left[0] -= 1
                error = Exception("database is locked" if dialect == "sqlite"
                                  else "server closed the connection unexpectedly")
                raise sa.exc.OperationalError(statement, None, error)

        sa.event.listen(engine, "before_cursor_execute", fail)
        try:
            yield
        finally:
            sa.event.remove(engine, "before_cursor_execute", fail)


class MemoryPeer:
    transactional = False
    people = "people"

    def __init__(self, store_name: str) -> None:
        self.name = "memory"
        self.store_name = store_name
        self.store = memory.store(store_name)

    def settings(self) -> dict[str, Any]:
        return {"type": "memory", "store": self.store_name}

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        refuse = None
        if refuse_negative:
            def refuse(row: dict[str, Any], f: str = refuse_negative) -> tuple[str, str] | None:
                value = row.get(f)
                if value is not None and value < 0:
                    return "VALIDATION_FAILED", f"{f} must be at least 0"
                return None
        self.store.define(resource, fields, key, rows, refuse=refuse)

    def rows(self, resource: str, fields: Sequence[str] = FIELDS, key: str = "email"
             ) -> list[dict[str, Any]]:
        return sorted(({f: r.get(f) for f in fields} for r in self.store.records(resource)),
                      key=lambda r: r[key])

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        for row in self.store.sets[resource].rows.values():
            if all(row.get(k) == v for k, v in key.items()):
                row.update(values)

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        """The next `count` write calls to each record set answer "busy, retry after"."""
        for record_set in self.store.sets.values():
            record_set.faults = [retry_after] * count
        try:
            yield
        finally:
            for record_set in self.store.sets.values():
                record_set.faults = []


class FilesPeer:
    """Parquet files (`type: files`), in a local folder or on S3 (moto's server): one file
    per record set, keyed by email, read in cursor order by sorting (`orderedReads`).

    A file has no constraints, so a refusal is a value its column type cannot hold: the
    column `refuse_negative` names is created unsigned, and a negative number is refused by
    Arrow as the file is written. Transient faults are a connection reset by the storage,
    raised as the next writes publish their file (a dropped S3 connection looks the same).
    """

    transactional = False  # state lives in the project's state database
    people = "people.parquet"

    def __init__(self, name: str, url: str, storage_options: Mapping[str, Any] | None = None
                 ) -> None:
        import fsspec

        self.name = name
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.fs.makedirs(self.root, exist_ok=True)

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "files", "url": self.url, "format": "parquet",
                               "key": ["email"], "orderedReads": True}
        if self.storage_options:
            out["storageOptions"] = self.storage_options
        return out

    def _path(self, resource: str) -> str:
        return f"{self.root}/{resource}"

    def _write(self, resource: str, table: Any) -> None:
        import io

        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self.fs.pipe_file(self._path(resource), buffer.getvalue())
        self.fs.invalidate_cache()

    def _read(self, resource: str) -> Any:
        import io

        import pyarrow.parquet as pq

        self.fs.invalidate_cache()
        if not self.fs.exists(self._path(resource)):
            return None
        return pq.read_table(io.BytesIO(self.fs.cat_file(self._path(resource))))

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        import pyarrow as pa

        types = {"integer": pa.int64(), "text": pa.string(), "datetime": pa.timestamp("us"),
                 "float": pa.float64(), "boolean": pa.bool_(), "date": pa.date32()}
        schema = pa.schema([(n, pa.uint64() if n == refuse_negative else types[k])
                            for n, k in fields.items()])
        self._write(resource, pa.Table.from_pylist(
            [{n: r.get(n) for n in fields} for r in rows], schema=schema))

    def rows(self, resource: str, fields: Sequence[str] = FIELDS, key: str = "email"
             ) -> list[dict[str, Any]]:
        table = self._read(resource)
        if table is None:
            return []
        return sorted(({f: r.get(f) for f in fields} for r in table.to_pylist()),
                      key=lambda r: r[key])

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        import pyarrow as pa

        table = self._read(resource)
        rows = table.to_pylist()
        for row in rows:
            if all(row.get(k) == v for k, v in key.items()):
                row.update(values)
        self._write(resource, pa.Table.from_pylist(rows, schema=table.schema))

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        """The next `count` publishes of a file fail as a reset connection does."""
        from sync_assets.connectors.files.connector import FilesTable

        original = FilesTable._atomic
        left = [count]

        def failing(table: Any, *args: Any, **kwargs: Any) -> None:
            if left[0] > 0:
                left[0] -= 1
                raise ConnectionResetError("connection reset by peer")
            original(table, *args, **kwargs)

        FilesTable._atomic = failing  # type: ignore[method-assign]
        try:
            yield
        finally:
            FilesTable._atomic = original  # type: ignore[method-assign]
