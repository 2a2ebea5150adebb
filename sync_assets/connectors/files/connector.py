"""Files as record sets (`type: files`): CSV, JSON Lines and Parquet under any fsspec URL.

`externalResource` names a file (`contacts.parquet`), a folder of part files (`events`) or a
glob (`contacts/*.csv`) relative to the connector's `url`.

Reading streams each file through Arrow's synchronous readers (pyarrow.csv.open_csv,
pyarrow.json.open_json, ParquetFile.iter_batches) page by page, so memory stays flat whatever
the file size (a dataset scanner would parse ahead of the engine). Types come from Parquet's
schema, or are inferred by pyarrow.dataset from the first block of the first CSV / JSON Lines
file, with the settings' `columns` overriding either. Filters are evaluated exactly here,
per record, by the engine's own evaluator; the conditions Arrow can answer the same way
(numbers against numbers, texts against texts, nulls) also go into the scan as a superset,
with which Parquet row groups are skipped unread. Records are read in storage order: a
`changeTrackingField` order is only promised with `orderedReads` (what lies within the run's
bounds sorted in memory) or for `_file_modified` (`fileColumns`), where whole files are read
in the order of their modification times, so a run reads only the files new or changed
since the last.

Writing: a transaction collects its batches and publishes them when it commits. A file is
rewritten whole, streamed from the published version with the batch applied, into a hidden
file beside it that is then renamed over it (local), or uploaded in one PUT / completed
multipart upload, which object stores make visible at once or not at all. A reader sees the
old version or the new one, never half; a run killed mid-write leaves at most a hidden
`.name.tmp-*` file (removed by the next write) and the engine's intent records, from which
the next run finds what is missing and writes it. A folder target takes inserts only, one part
file per transaction (`part-<run id>-<n>.<ext>`). Sync state cannot live in a file, so it is
kept in the project's state database around each publish.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from ... import filters as objectql
from ...filters import And, Condition, FieldRef, FilterNode, Or
from ..arrow_types import kind_of, read_type
from ..base import (
    CURSOR_COLUMN,
    Capabilities,
    ConnectorError,
    Description,
    Endpoint,
    FieldInfo,
    Operation,
    ReadRequest,
    Record,
    Refusal,
    TransientError,
    WriteResult,
)
from .settings import WRITE_EXTENSION, FilesSettings, format_of

#: virtual columns (`fileColumns: true`): the file a record came from and when it changed
FILE_COLUMN = "_file"
MODIFIED_COLUMN = "_file_modified"
_VIRTUAL = (FILE_COLUMN, MODIFIED_COLUMN)

#: rows per Arrow batch when scanning or rewriting (pages are cut to the request's size)
_SCAN_BATCH = 65_536
#: bytes of CSV / JSON Lines parsed at a time (no row may be longer): what a read holds
_CSV_BLOCK = 256 * 1024
#: rows turned into Python records at a time
_RECORD_SLICE = 4096

_KIND_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(), "integer": pa.int64(), "decimal": pa.decimal128(38, 9),
    "float": pa.float64(), "boolean": pa.bool_(), "date": pa.date32(),
    "datetime": pa.timestamp("us"), "time": pa.time64("us"), "json": pa.string(),
    "binary": pa.binary(), "uuid": pa.string(), "unknown": pa.string(),
}


@dataclass(frozen=True)
class FileEntry:
    path: str  # as the filesystem names it (no protocol)
    name: str  # relative to the connector's url
    size: int
    modified: datetime  # UTC, naive


@dataclass
class FileTransaction:
    """What one transaction will publish: the schema of a target it creates, and batches."""

    schema: pa.Schema | None = None
    ops: list[tuple[str, tuple[str, ...], pa.Table]] = field(default_factory=list)
    created: bool = False


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _modified(fs: Any, path: str, info: dict[str, Any]) -> datetime:
    for name in ("mtime", "LastModified", "last_modified", "updated", "modified"):
        value = info.get(name)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
        if isinstance(value, datetime):
            return _utc(value)
        if isinstance(value, str):
            with suppress(ValueError):
                return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return _utc(fs.modified(path))


def _has_magic(name: str) -> bool:
    return any(c in name for c in "*?[")


class FilesTable(Endpoint):
    """A file, a folder of part files or a glob of files, under one fsspec URL."""

    # transactional: a transaction's batches are published at once or not at all; the
    # state cannot live in a file (hosts_state False), so the engine keeps it in the
    # project's state database, intent before each publish and the rest after it.
    # No idempotent inserts: an append without a match key could be repeated after a crash.
    capabilities = Capabilities(
        transactional=True, filter_pushdown=True, ordered_reads=False, shards=False,
        native_upsert=True, max_batch_size=None, hosts_state=False, creates_resource=True,
        concurrent_writers=1, idempotent_inserts=False, arrow_writes=False,
        publishes_per_run=True,
    )

    def __init__(self, settings: FilesSettings, resource: str, display: str) -> None:
        self.settings = settings
        self.display = display
        self.resource = resource.strip("/")
        if not self.resource:
            raise ConnectorError(f"{display}: externalResource must name a file, a folder "
                                 "or a glob under the url")
        self._secrets = settings.secret_texts()
        try:
            self.fs, root = fsspec.core.url_to_fs(settings.url, **settings.storage())
        except (ImportError, ValueError) as exc:
            raise ConnectorError(self._redact(f"{display}: cannot open {settings.url}: {exc}")
                                 ) from None
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/")
        self.path = f"{self.root}/{self.resource}"
        found = settings.format or format_of(self.resource)
        self.glob = _has_magic(self.resource)
        #: a single file (its name has the format's extension), else a folder or a glob
        self.single = not self.glob and format_of(self.resource) is not None
        if found is None:
            raise ConnectorError(f"{display}: say `format` (csv, jsonl or parquet): "
                                 f"{self.resource} has no extension that tells")
        self.format = found
        # one id per opened endpoint (the engine opens its endpoints once per run)
        # sortable: part files list in the order they were written
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:6]
        self._parts = 0
        self._run: _RunWrites | None = None  # between begin_run and end_run
        self._schema: pa.Schema | None = None  # the files' schema as read (cached)
        self._lock = threading.Lock()
        if settings.ordered_reads or settings.file_columns:
            self.capabilities = replace(FilesTable.capabilities, ordered_reads=True)

    # -- errors ---------------------------------------------------------------------------
    def _redact(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "**********")
        return message

    def _error(self, exc: BaseException, doing: str) -> ConnectorError:
        plain = _plain_arrow_error(exc, self.format, self._name_of)
        if plain is not None:
            return ConnectorError(self._redact(f"{self.display}: {plain}"))
        if isinstance(exc, PermissionError):
            return ConnectorError(self._redact(
                f"{self.display}: {doing} was refused: {exc} (check the credentials in the "
                "connector's storageOptions)"))
        text = self._redact(f"{self.display}: {doing} failed: {type(exc).__name__}: {exc}")
        name = type(exc).__name__
        if isinstance(exc, ConnectionError | TimeoutError) or any(
                w in name for w in ("Timeout", "EndpointConnection", "Throttl", "SlowDown")):
            return TransientError(text)
        return ConnectorError(text)

    def _name_of(self, path: str) -> str:
        """A file's name as users wrote it: relative to the connector's url."""
        root = self.root if self.local else self.root.split("://")[-1]
        return path[len(root):].lstrip("/") if path.startswith(root + "/") else path

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        try:
            yield
        except ConnectorError:
            raise
        except (OSError, pa.ArrowException, ValueError, TypeError, KeyError) as exc:
            raise self._error(exc, doing) from None
        except Exception as exc:  # botocore and other stores' own error classes
            if type(exc).__module__.split(".")[0] in ("botocore", "aiobotocore", "s3fs",
                                                      "gcsfs", "adlfs", "azure", "google"):
                raise self._error(exc, doing) from None
            raise

    # -- files ----------------------------------------------------------------------------
    def _files(self) -> list[FileEntry]:
        """The files the resource names now, by path: hidden ones (`.x`, `_x`: temporary
        files, markers) left out, and in a folder only those of the format."""
        with self._guard("listing files"):
            self.fs.invalidate_cache()
            if self.glob:
                infos = self.fs.glob(self.path, detail=True)
            elif self.single:
                infos = ({self.path: self.fs.info(self.path)} if self.fs.exists(self.path)
                         else {})
            elif self.fs.isdir(self.path):
                infos = self.fs.find(self.path, detail=True)
            else:
                infos = {}
            out = []
            for path, info in sorted(infos.items()):
                if info.get("type") == "directory":
                    continue
                name = path[len(self.root):].lstrip("/") if path.startswith(self.root) \
                    else path
                if any(part.startswith((".", "_")) for part in name.split("/")):
                    continue
                if not self.single and not self.glob and format_of(path) != self.format:
                    continue
                out.append(FileEntry(path, name, int(info.get("size") or 0),
                                     _modified(self.fs, path, info)))
            if not out and not self.local:
                bucket = self.root.split("/", 1)[0]
                if bucket and not self.fs.exists(bucket):
                    raise ConnectorError(self._redact(
                        f"{self.display}: bucket {bucket} does not exist (or these "
                        "credentials cannot see it)"))
            return out

    def _arrow_fs(self) -> pafs.FileSystem:
        if self.local:
            return pafs.LocalFileSystem()
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    def _format(self, types: pa.Schema | None = None) -> ds.FileFormat:
        """The dataset format, for inferring a schema and counting (records are read by
        `_batches`); CSV parsed with `types` where given, so every file reads alike."""
        if self.format == "csv":
            column_types = {n: _KIND_TYPES[k] for n, k in self.settings.columns.items()}
            if types is not None:
                column_types.update({f.name: f.type for f in types})
            return ds.CsvFileFormat(
                parse_options=pacsv.ParseOptions(delimiter=self.settings.delimiter,
                                                 newlines_in_values=True),
                convert_options=_csv_convert(column_types, None))
        if self.format == "jsonl":
            return ds.JsonFileFormat(parse_options=pajson.ParseOptions(
                newlines_in_values=False))
        return ds.ParquetFileFormat()

    def _dataset(self, paths: Sequence[str], types: pa.Schema | None = None) -> ds.Dataset:
        """A dataset of these files, each with its own schema (CSV parsed as `types`)."""
        return ds.dataset(list(paths), format=self._format(types), filesystem=self._arrow_fs())

    def _file_schema(self, files: Sequence[FileEntry]) -> pa.Schema:
        """The schema the files are read with: the first file's (Parquet's own, or what
        Arrow infers from the first block of a CSV / JSON Lines file), overrides applied."""
        with self._guard("reading the schema"):
            raw = self._dataset([files[0].path]).schema
        fields = []
        for f in raw:
            kind = self.settings.columns.get(f.name)
            if kind is None or (kind == "json" and pa.types.is_nested(f.type)):
                fields.append(pa.field(f.name, read_type(f.type)))
            else:
                fields.append(pa.field(f.name, _KIND_TYPES[kind]))
        return pa.schema(fields)

    def _read_schema(self, files: Sequence[FileEntry], refresh: bool = False) -> pa.Schema:
        with self._lock:
            if self._schema is None or refresh:
                self._schema = self._file_schema(files)
            return self._schema

    # -- describe ---------------------------------------------------------------------------
    def describe(self, *, refresh: bool = False) -> Description:
        files = self._files()
        if not files:
            return Description(fields={}, exists=False, empty_because=(
                f"{self.display}: no file matches {self.resource} under {self.settings.url}"
                if self.glob else None))
        schema = self._read_schema(files, refresh=True)
        key = tuple(self.settings.key)
        fields: dict[str, FieldInfo] = {}
        for f in schema:
            kind = self.settings.columns.get(f.name) or kind_of(f.type)
            fields[f.name] = FieldInfo(f.name, f.type, f.name not in key, kind)
        if self.settings.file_columns:
            fields[FILE_COLUMN] = FieldInfo(FILE_COLUMN, pa.string(), False, "text",
                                            read_only=True)
            fields[MODIFIED_COLUMN] = FieldInfo(MODIFIED_COLUMN, pa.timestamp("us"), False,
                                                "datetime", read_only=True)
        missing = [k for k in key if k not in fields]
        if missing:
            raise ConnectorError(f"{self.display}: key {', '.join(missing)} is not a column; "
                                 f"columns: {', '.join(fields)}")
        return Description(fields=fields, primary_key=key)

    # -- read -------------------------------------------------------------------------------
    def _scan(self, files: Sequence[FileEntry], columns: Sequence[str],
              where: ds.Expression | None) -> Iterator[pa.Table]:
        """Arrow tables of these columns (virtual ones included) where `where` holds, file
        after file in the order given, each streamed in batches of the read types."""
        if not files:
            return
        schema = self._read_schema(files)
        real = [c for c in columns if c not in _VIRTUAL]
        unknown = [c for c in real if c not in schema.names]
        if unknown:
            raise ConnectorError(f"{self.display} has no column {', '.join(unknown)}; "
                                 f"columns: {', '.join(schema.names)}")
        for entry in files:
            with self._guard(f"reading {entry.name}"):
                for table in self._batches(entry, schema, real, where):
                    table = self._cast(table, schema)
                    if where is not None:
                        table = table.filter(where)
                    if table.num_rows:
                        yield self._with_virtual(table, columns, entry)

    @contextmanager
    def _opened(self, entry: FileEntry) -> Iterator[Any]:
        if self.local:
            with open(entry.path, "rb") as handle:
                yield handle
        else:
            with self.fs.open(entry.path, "rb") as handle:
                yield handle

    def _batches(self, entry: FileEntry, schema: pa.Schema, columns: Sequence[str] | None,
                 where: ds.Expression | None) -> Iterator[pa.Table]:
        """One file's records in Arrow tables of at most _SCAN_BATCH rows, read by Arrow's
        synchronous streaming readers: nothing is read ahead of what the caller takes
        (a dataset scanner parses ahead of a slow consumer, about 200 MB of a big CSV).
        Parquet row groups whose statistics cannot match `where` are skipped unread (the
        caller filters the rest)."""
        with self._opened(entry) as handle:
            if self.format == "parquet":
                parquet = pq.ParquetFile(handle)
                groups = list(range(parquet.num_row_groups))
                if where is not None:
                    fragment = next(iter(ds.dataset(
                        entry.path, format="parquet", filesystem=self._arrow_fs()
                    ).get_fragments()))
                    with suppress(pa.ArrowException, TypeError):  # else read them all
                        groups = [g.id for part in fragment.split_by_row_group(where)
                                  for g in part.row_groups]
                if not groups:
                    return
                stream: Iterator[Any] = parquet.iter_batches(
                    batch_size=_SCAN_BATCH, row_groups=groups,
                    columns=list(columns) if columns is not None else None)
            elif self.format == "csv":
                ragged: list[Any] = []

                def refuse(row: Any) -> str:
                    ragged.append(row)
                    return "error"

                stream = pacsv.open_csv(
                    handle, read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK),
                    # a quoted newline on a block boundary would split its row in two
                    parse_options=pacsv.ParseOptions(delimiter=self.settings.delimiter,
                                                     newlines_in_values=True,
                                                     invalid_row_handler=refuse),
                    convert_options=_csv_convert({f.name: f.type for f in schema}, columns))
                stream = self._ragged_named(stream, entry, ragged)
            else:
                stream = pajson.open_json(
                    handle, read_options=pajson.ReadOptions(block_size=_CSV_BLOCK),
                    parse_options=pajson.ParseOptions(
                        explicit_schema=schema, unexpected_field_behavior="ignore"))
            for batch in stream:
                table = pa.Table.from_batches([batch])
                if columns is not None and self.format == "jsonl":
                    table = table.select(list(columns))
                yield table

    def _ragged_named(self, stream: Iterator[Any], entry: FileEntry, ragged: list[Any]
                      ) -> Iterator[Any]:
        """The CSV stream, a ragged row failing it with the file's name and the row's line
        (Arrow's streaming reader knows the row's text but not its number: the line is
        found by reading the file again, which only a failing read pays for)."""
        try:
            yield from stream
        except pa.ArrowInvalid:
            if not ragged:
                raise
            row = ragged[0]
            line = self._line_of(entry, row.text)
            where = f"line {line}" if line else "a row"
            raise ConnectorError(self._redact(
                f"{self.display}: {entry.name} {where}: expected {row.expected_columns} "
                f"columns, got {row.actual_columns}: {_shortened(row.text)}")) from None

    def _line_of(self, entry: FileEntry, text: str) -> int | None:
        wanted = text.encode("utf-8", "surrogateescape")
        with suppress(OSError), self._opened(entry) as handle:
            for number, line in enumerate(handle, start=1):
                if line.rstrip(b"\r\n") == wanted:
                    return number
        return None

    def _cast(self, table: pa.Table, schema: pa.Schema) -> pa.Table:
        columns = []
        for name, column in zip(table.column_names, table.columns, strict=True):
            want = schema.field(name).type if name in schema.names else read_type(column.type)
            if column.type != want:
                column = column.cast(want, safe=False)
            columns.append(column)
        return pa.table(columns, names=table.column_names)

    def _with_virtual(self, table: pa.Table, columns: Sequence[str],
                      entry: FileEntry) -> pa.Table:
        if not any(c in _VIRTUAL for c in columns):
            return table.select(list(columns))
        n = table.num_rows
        out = []
        for c in columns:
            if c == FILE_COLUMN:
                out.append(pa.array([entry.name] * n, pa.string()))
            elif c == MODIFIED_COLUMN:
                out.append(pa.array([entry.modified] * n, pa.timestamp("us")))
            else:
                out.append(table.column(c))
        return pa.table(out, names=list(columns))

    def _prefilter(self, node: FilterNode | None, schema: pa.Schema) -> ds.Expression | None:
        """An Arrow expression true for at least every record the filter selects (None:
        no constraint), from what Arrow answers as the engine does: numbers against
        numbers, texts against texts, nulls. The exact filter is applied afterwards."""
        if node is None:
            return None
        if isinstance(node, And):
            parts = [p for p in (self._prefilter(i, schema) for i in node.items)
                     if p is not None]
            return _combine(parts, "and")
        if isinstance(node, Or):
            parts = [self._prefilter(i, schema) for i in node.items]
            if not parts or any(p is None for p in parts):
                return None
            return _combine([p for p in parts if p is not None], "or")
        if not isinstance(node, Condition) or node.field not in schema.names:
            return None
        t = schema.field(node.field).type
        col = ds.field(node.field)
        op, value = node.op, node.value
        if op == "is_null":
            return col.is_null()
        if op == "is_not_null":
            return col.is_valid()

        def fits(v: Any) -> bool:
            if isinstance(v, bool) or v is None or isinstance(v, FieldRef):
                return False
            if pa.types.is_integer(t) or pa.types.is_floating(t):
                return isinstance(v, int | float)
            if pa.types.is_string(t):
                return isinstance(v, str)
            return False

        if op in ("eq", "gt", "gte", "lt", "lte") and fits(value):
            return {"eq": col == value, "gt": col > value, "gte": col >= value,
                    "lt": col < value, "lte": col <= value}[op]
        if op == "between" and isinstance(value, tuple) and all(fits(v) for v in value):
            return (col >= value[0]) & (col <= value[1])
        if op == "in" and isinstance(value, tuple) and value and all(fits(v) for v in value):
            return col.isin(list(value))
        return None

    def _bounds(self, request: ReadRequest, schema: pa.Schema) -> ds.Expression | None:
        ctf = request.cursor_field
        parts: list[ds.Expression] = []
        if request.null_cursor is not None and request.null_cursor not in _VIRTUAL:
            parts.append(ds.field(request.null_cursor).is_null())
        if ctf is not None and ctf not in _VIRTUAL:
            parts.append(ds.field(ctf).is_valid())
            t = schema.field(ctf).type
            for bound, op in ((request.lower, "ge"), (request.upper, "le")):
                if bound is None:
                    continue
                try:
                    scalar = pa.scalar(bound, type=t)
                except (pa.ArrowException, TypeError, ValueError):
                    continue  # compared exactly per record below
                parts.append(ds.field(ctf) >= scalar if op == "ge" else ds.field(ctf) <= scalar)
        return _combine(parts, "and")

    def _pages(self, request: ReadRequest) -> Iterator[pa.Table]:
        """The request's records as Arrow tables (before the exact filter), with the
        columns asked, the filter's and the cursor's, in the order promised."""
        files = self._files()
        if not files:
            return
        schema = self._read_schema(files)
        ctf = request.cursor_field
        wanted = list(dict.fromkeys([
            *request.columns, *objectql.filter_fields(request.filter),
            *([ctf] if ctf else []), *request.order_by,
            *([request.null_cursor] if request.null_cursor else [])]))
        if request.null_cursor in _VIRTUAL:
            return  # a file's name and time are never null
        where = _combine([e for e in (self._prefilter(request.filter, schema),
                                      self._bounds(request, schema)) if e is not None], "and")
        if ctf == MODIFIED_COLUMN:
            for _entry, table, _done in self._changed_files(files, request, wanted, where):
                if table is not None:
                    yield table
            return
        if ctf is None:
            yield from self._scan(files, wanted, where)
            return
        # a data column's order: what lies within the bounds, sorted here (orderedReads)
        tables = list(self._scan(files, wanted, where))
        if not tables:
            return
        table = pa.concat_tables(tables)
        order = [(c, "ascending") for c in dict.fromkeys([ctf, *request.order_by])]
        yield table.sort_by(order)

    def _changed_files(self, files: Sequence[FileEntry], request: ReadRequest,
                       wanted: Sequence[str], where: ds.Expression | None
                       ) -> Iterator[tuple[FileEntry, pa.Table | None, Manifest | None]]:
        """The files new or changed since the manifest `request.lower` (by name, size and
        modification time) that the run's manifest `upper` lists, oldest first, each read
        whole: (file, table, None) for its tables, then (file, None, the manifest with it
        read) once it is done."""
        seen = _manifest_files(request.lower, files)
        listed = (None if not isinstance(request.upper, dict)
                  else request.upper.get("files") or {})
        chosen = sorted((f for f in files
                         if seen.get(f.name) != _version(f)
                         and (listed is None or listed.get(f.name) == _version(f))),
                        key=lambda f: (f.modified, f.path))
        for entry in chosen:
            for table in self._scan([entry], wanted, where):
                yield entry, table, None
            seen = {**seen, entry.name: _version(entry)}
            yield entry, None, _manifest(seen)

    @staticmethod
    def _exact(rows: list[Record], request: ReadRequest) -> list[Record]:
        """The records the request selects exactly: its filter and cursor bounds as the
        engine evaluates them (the scan selected a superset)."""
        ctf = request.cursor_field
        if request.filter is not None:
            rows = [r for r in rows if objectql.evaluate_filter(request.filter, r)]
        if ctf is not None and ctf not in _VIRTUAL:  # files were chosen by their bounds
            tests: list[FilterNode] = [Condition(ctf, "is_not_null")]
            if request.lower is not None:
                tests.append(Condition(ctf, "gte", request.lower))
            if request.upper is not None:
                tests.append(Condition(ctf, "lte", request.upper))
            node = And(tuple(tests))
            rows = [r for r in rows if objectql.evaluate_filter(node, r)]
        return rows

    def _records(self, table: pa.Table) -> list[Record]:
        rows = table.to_pylist()
        json_columns = [n for n, k in self.settings.columns.items()
                        if k == "json" and n in table.column_names]
        for row in rows:
            for name in json_columns:
                value = row.get(name)
                if isinstance(value, str):
                    with suppress(ValueError):
                        row[name] = json.loads(value)
        return rows

    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        if request.cursor_field == MODIFIED_COLUMN:
            yield from self._manifest_batches(request)
            return
        ctf = request.cursor_field
        page: list[Record] = []
        size = max(1, request.batch_size)
        for table in self._pages(request):
            for start in range(0, table.num_rows, _RECORD_SLICE):
                rows = self._exact(self._records(table.slice(start, _RECORD_SLICE)), request)
                for row in rows:
                    out = {c: row.get(c) for c in request.columns}
                    if ctf is not None:
                        out[CURSOR_COLUMN] = row.get(ctf)
                    page.append(out)
                    if len(page) >= size:
                        yield page
                        page = []
        if page:
            yield page

    def _manifest_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        """Pages of the new or changed files, each record's cursor the manifest of the
        files read before its own, and a file's last record's the manifest with its file:
        a run stopped after any page reads that file again (its written records skipped by
        their fingerprints), never a file less."""
        files = self._files()
        if not files:
            return
        schema = self._read_schema(files)
        wanted = list(dict.fromkeys([
            *request.columns, *objectql.filter_fields(request.filter), *request.order_by]))
        where = self._prefilter(request.filter, schema)
        size = max(1, request.batch_size)
        read = _manifest_files(request.lower, files)
        reading: tuple[str, Manifest] | None = None  # the file being read, and its cursor
        page: list[Record] = []
        for entry, table, done in self._changed_files(files, request, wanted, where):
            if done is not None:
                if page and reading is not None and page[-1][CURSOR_COLUMN] is reading[1]:
                    page[-1][CURSOR_COLUMN] = done  # the file's last record: it is read
                read, reading = done["files"], None
                continue
            assert table is not None
            if reading is None or reading[0] != entry.name:
                reading = (entry.name, _manifest(read, reading=entry.name))
            before = reading[1]
            for start in range(0, table.num_rows, _RECORD_SLICE):
                for row in self._exact(self._records(table.slice(start, _RECORD_SLICE)),
                                       request):
                    if len(page) >= size:  # held until now: its last may end a file
                        yield page
                        page = []
                    out = {c: row.get(c) for c in request.columns}
                    out[CURSOR_COLUMN] = before
                    page.append(out)
        if page:
            yield page

    def read_arrow(self, request: ReadRequest, keys_only: bool = False) -> Iterator[Any] | None:
        """Pages as Arrow tables where no record needs looking at here: no filter, no shard,
        no cursor bound a scan could not apply exactly, and no files manifest as cursor."""
        if request.filter is not None or request.shard is not None:
            return None
        if request.cursor_field == MODIFIED_COLUMN:
            return None
        ctf = request.cursor_field
        if ctf is not None and ctf not in _VIRTUAL:
            files = self._files()
            if not files:
                return iter(())
            schema = self._read_schema(files)
            if ctf not in schema.names:
                return None
            t = schema.field(ctf).type
            for bound in (request.lower, request.upper):
                if bound is not None:
                    try:
                        pa.scalar(bound, type=t)
                    except (pa.ArrowException, TypeError, ValueError):
                        return None
        return self._arrow_pages(request)

    def _arrow_pages(self, request: ReadRequest) -> Iterator[pa.Table]:
        ctf = request.cursor_field
        size = max(1, request.batch_size)
        held: list[pa.Table] = []
        rows = 0

        def shaped(table: pa.Table) -> pa.Table:
            out = table.select(list(request.columns))
            if ctf is not None:
                out = out.append_column(CURSOR_COLUMN, table.column(ctf))
            return out

        for table in self._pages(request):
            held.append(shaped(table))
            rows += table.num_rows
            while rows >= size:
                joined = pa.concat_tables(held)
                yield joined.slice(0, size).combine_chunks()
                rest = joined.slice(size)
                held, rows = ([rest] if rest.num_rows else []), rest.num_rows
        if rows:
            yield pa.concat_tables(held).combine_chunks()

    def high_water_mark(self, cursor_field: str, request: ReadRequest) -> Any:
        files = self._files()
        if not files:
            return None
        if cursor_field == MODIFIED_COLUMN:  # the files listed now: what this run reads
            return _manifest({f.name: _version(f) for f in files})
        schema = self._read_schema(files)
        where = _combine([e for e in (self._prefilter(request.filter, schema),
                                      ds.field(cursor_field).is_valid()) if e is not None],
                         "and")
        best = None
        # the prefilter's columns are read too: a scan filters on what it reads
        columns = list(dict.fromkeys([cursor_field, *(
            f for f in objectql.filter_fields(request.filter) if f in schema.names)]))
        for table in self._scan(files, columns, where):
            value = pc.max(table.column(cursor_field)).as_py()
            if value is not None and (best is None or value > best):
                best = value
        return best

    def lookup(self, tx: Any, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        if not keys:
            return []
        files = self._files()
        if not files:
            return []
        schema = self._read_schema(files)
        wanted = set(keys)
        parts = []
        for i, name in enumerate(key):
            if name in _VIRTUAL or name not in schema.names:
                continue
            values = list({k[i] for k in keys if k[i] is not None})
            with suppress(pa.ArrowException, TypeError, ValueError):
                parts.append(ds.field(name).isin(pa.array(values, schema.field(name).type)))
        where = _combine(parts, "and") if all(None not in k for k in keys) else None
        out_columns = list(dict.fromkeys([*key, *columns]))
        found = []
        for table in self._scan(files, out_columns, where):
            for row in self._records(table):
                if tuple(row.get(k) for k in key) in wanted:
                    found.append(row)
        return found

    def lookup_table(self, table: str, key_field: str, value_field: str) -> dict[Any, Any]:
        other = FilesTable(self.settings, table, f"{self.display}:{table}")
        request = ReadRequest(columns=[key_field, value_field], order_by=[key_field],
                              batch_size=_SCAN_BATCH)
        return {r[key_field]: r[value_field] for page in other.read_batches(request)
                for r in page}

    def count(self) -> int | None:
        files = self._files()
        if not files:
            return None
        with self._guard("counting records"):
            if self.format == "parquet":
                total = 0
                for entry in files:
                    with self.fs.open(entry.path, "rb") as handle:
                        total += pq.ParquetFile(handle).metadata.num_rows
                return total
            return int(self._dataset([f.path for f in files],
                                     self._read_schema(files)).count_rows())

    def change_token(self, filter: FilterNode | None, cursor_field: str | None) -> Any:
        """A digest of the files' names, sizes and modification times: any change of a
        file changes it (filters are not looked at: a superset of the changes)."""
        text = "\n".join(f"{f.name}\x1f{f.size}\x1f{f.modified.isoformat()}"
                         for f in self._files())
        return hashlib.sha256(text.encode()).hexdigest()

    # -- write ------------------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, rollback: bool = False) -> Iterator[FileTransaction]:
        """A transaction's batches, published when it commits, or kept for the run's one
        publish between `begin_run` and `end_run` (a failed transaction keeps nothing)."""
        tx = FileTransaction()
        yield tx
        if rollback or not (tx.ops or tx.created):
            return
        if self._run is not None:
            with self._guard("writing"):
                self._run.add(tx)
        else:
            self._publish(tx)

    def begin_run(self, run_id: str) -> None:
        self._run = _RunWrites(self, run_id)

    def end_run(self, commit: bool) -> None:
        run = self._run
        if run is None:
            return
        if not commit:
            self._run = None
            run.discard()
            return
        with self._guard("writing"):  # a failure keeps the run's writes for another try
            run.publish()
        self._run = None
        run.discard()
        self.fs.invalidate_cache()
        with self._lock:
            self._schema = None

    def create(self, tx: Any, fields: Sequence[FieldInfo], key: Sequence[str]) -> None:
        schema = pa.schema([pa.field(f.name, _KIND_TYPES.get(
            self.settings.columns.get(f.name) or f.kind, pa.string())) for f in fields])
        if self.format == "csv":  # CSV holds no binary
            schema = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_binary(f.type)
                                else f for f in schema])
        if isinstance(tx, FileTransaction):
            tx.schema, tx.created = schema, True
        else:
            self._publish(FileTransaction(schema=schema, created=True))

    def _target_schema(self, tx: FileTransaction) -> pa.Schema:
        if tx.schema is None and self._run is not None:
            tx.schema = self._run.schema  # created, or read, earlier in this run
        if tx.schema is None:
            files = self._files()
            if not files:
                raise ConnectorError(f"{self.display} does not exist")
            tx.schema = self._written_schema(files)
            if self._run is not None:
                self._run.schema = tx.schema
        return tx.schema

    def _written_schema(self, files: Sequence[FileEntry]) -> pa.Schema:
        """The schema a rewrite keeps: a Parquet file's own types, else the types read."""
        if self.format == "parquet":
            with self._guard("reading the schema"):
                return self._dataset([files[0].path]).schema
        return self._read_schema(files, refresh=True)

    def write(self, tx: Any, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        if not isinstance(tx, FileTransaction):
            with self.transaction() as own:
                return self.write(own, operation, key, rows)
        if self.glob:
            raise ConnectorError(f"{self.display}: a glob names files to read; name a file "
                                 "or a folder to write")
        if not self.single and operation != "insert":
            raise ConnectorError(
                f"{self.display} is a folder of part files, which takes inserts only: name "
                f"a file (e.g. {self.resource}{WRITE_EXTENSION[self.format]}) to {operation}")
        if self.single and not key:
            raise ConnectorError(f"{self.display}: writing a file needs a match key")
        schema = self._target_schema(tx)
        unknown = [c for r in rows[:1] for c in r if c not in schema.names]
        if unknown:
            raise ConnectorError(f"{self.display} has no column {', '.join(unknown)}; "
                                 f"columns: {', '.join(schema.names)}")
        # only the columns the rows carry: an update leaves the others as they are
        carried = set(key) if operation == "delete" else {c for r in rows for c in r}
        schema = pa.schema([f for f in schema if f.name in carried])
        table, refused = _to_table(rows, schema)
        if table.num_rows:
            tx.ops.append((operation, tuple(key), table))
        return WriteResult(written=table.num_rows, refused=refused)

    # -- publishing -------------------------------------------------------------------------
    def _publish(self, tx: FileTransaction) -> None:
        with self._guard("writing"):
            if self.single:
                self._rewrite(tx)
            else:
                self._write_part(tx)
            self.fs.invalidate_cache()
            with self._lock:
                self._schema = None

    def _write_part(self, tx: FileTransaction) -> None:
        tables = [t for op, _, t in tx.ops if op == "insert"]
        schema = tx.schema or (tables[0].schema if tables else None)
        if schema is None:
            if not self.local:
                return  # an object store has no empty folders: the first part makes it
            self.fs.makedirs(self.path, exist_ok=True)
            return
        if not tables and not tx.created:
            return
        self._parts += 1
        name = f"part-{self.run_id}-{self._parts:05d}{WRITE_EXTENSION[self.format]}"
        self._atomic(f"{self.path}/{name}", schema, (_full(t, schema) for t in tables))

    def _rewrite(self, tx: FileTransaction) -> None:
        """The file with the transaction's batches applied, streamed from the published
        version into a new one that then replaces it."""
        keys = {k for _, k, _ in tx.ops}
        if len(keys) > 1:
            raise ConnectorError(f"{self.display}: one match key per transaction")
        key = next(iter(keys), ())
        # the last operation on a key decides: put (insert/upsert), patch (update), delete
        pending: dict[tuple[Any, ...], tuple[str, Record | None]] = {}
        for op, _, table in tx.ops:
            for row in table.to_pylist():
                k = tuple(row.get(c) for c in key)
                before = pending.get(k)
                if op == "delete":
                    pending[k] = ("delete", None)
                elif op != "update":  # insert, upsert: written whether or not it exists
                    pending[k] = ("put", row)
                elif before is None:
                    pending[k] = ("patch", row)  # only where the record exists
                elif before[0] != "delete":  # an update of a record deleted meanwhile: none
                    pending[k] = (before[0], {**(before[1] or {}), **row})
        files = self._files()
        schema = tx.schema if tx.created or not files else self._written_schema(files)
        if schema is None:
            raise ConnectorError(f"{self.display} does not exist")
        seen: set[tuple[Any, ...]] = set()

        def batches() -> Iterator[pa.Table]:
            if files and not tx.created:
                for table in self._batches(files[0], schema, None, None):
                    if table.num_rows:
                        yield self._applied(table, key, pending, seen, schema)
            new = [row for k, (what, row) in pending.items()
                   if what == "put" and k not in seen and row is not None]
            if new:
                yield pa.Table.from_pylist(
                    [{n: r.get(n) for n in schema.names} for r in new], schema=schema)

        self._atomic(self.path, schema, batches())

    @staticmethod
    def _applied(table: pa.Table, key: Sequence[str],
                 pending: dict[tuple[Any, ...], tuple[str, Record | None]],
                 seen: set[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
        if table.schema != schema:
            table = table.select(schema.names).cast(schema, safe=False)
        if not pending:
            return table
        if len(key) == 1:
            values = [k[0] for k in pending]
            try:
                hits = pc.is_in(table.column(key[0]),
                                value_set=pa.array(values, schema.field(key[0]).type))
                if not pc.any(hits).as_py():
                    return table
            except (pa.ArrowException, TypeError, ValueError):
                pass  # compared row by row
        out = []
        for row in table.to_pylist():
            k = tuple(row.get(c) for c in key)
            change = pending.get(k)
            if change is None:
                out.append(row)
                continue
            seen.add(k)
            what, values = change
            if what != "delete":
                out.append({**row, **(values or {})})
        return pa.Table.from_pylist(out, schema=schema)

    def _atomic(self, target: str, schema: pa.Schema, tables: Iterator[pa.Table]) -> None:
        """Write `tables` as the file `target`, visible whole or not at all."""
        staged = self._staged(target, schema)
        try:
            for table in tables:
                staged.write(table)
            staged.commit()
        finally:
            staged.discard()

    def _staged(self, target: str, schema: pa.Schema) -> _Staged:
        return _Staged(self, target, schema)


class _Staged:
    """A file written beside its target and then made visible whole: renamed over it
    (local, after an fsync), or uploaded in one PUT / completed multipart upload, which
    object stores make visible at once or not at all (an upload cut short leaves the old
    object). Until `commit` nothing a reader lists has changed."""

    def __init__(self, files: FilesTable, target: str, schema: pa.Schema) -> None:
        self.files, self.target, self.schema = files, target, schema
        self.rows = 0
        directory, name = posixpath.split(target)
        if files.local:
            os.makedirs(directory, exist_ok=True)
            for stale in files.fs.glob(f"{directory}/.{name}.tmp-*"):
                with suppress(OSError):
                    os.remove(stale)  # left by a run killed mid-write
            self.temp = f"{directory}/.{name}.tmp-{uuid.uuid4().hex}"
            open(self.temp, "wb").close()
        else:
            handle, self.temp = tempfile.mkstemp(suffix=WRITE_EXTENSION[files.format])
            os.close(handle)
        fmt = files.format
        self._parquet = pq.ParquetWriter(self.temp, schema) if fmt == "parquet" else None
        self._csv = (pacsv.CSVWriter(self.temp, schema, write_options=pacsv.WriteOptions(
            delimiter=files.settings.delimiter)) if fmt == "csv" else None)
        self._jsonl = open(self.temp, "w", encoding="utf-8") if fmt == "jsonl" else None  # noqa: SIM115

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self._parquet is not None:
            self._parquet.write_table(table)
        elif self._csv is not None:
            self._csv.write_table(table)
        elif self._jsonl is not None:
            for row in table.to_pylist():
                self._jsonl.write(json.dumps(row, default=_json_value, ensure_ascii=False)
                                  + "\n")

    def _close(self) -> None:
        for writer in (self._parquet, self._csv, self._jsonl):
            if writer is not None:
                writer.close()
        self._parquet = self._csv = self._jsonl = None

    def commit(self) -> None:
        self._close()
        if not self.files.local:
            self.files.fs.put_file(self.temp, self.target)
            return
        with open(self.temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temp, self.target)
        # the rename itself must survive a power cut: the state says "written" next
        folder = os.open(posixpath.dirname(self.target), os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def discard(self) -> None:
        with suppress(Exception):
            self._close()
        with suppress(FileNotFoundError):
            os.remove(self.temp)


class _RunWrites:
    """What one run has committed to a file target, published by `end_run`: a folder's
    inserts streamed into the run's one part file as they commit (`part-<time>-<run id>`,
    so part files list in the order runs wrote them), a file's batches kept as Arrow
    tables and applied in one rewrite."""

    def __init__(self, files: FilesTable, run_id: str) -> None:
        self.files = files
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self.part_name = f"part-{stamp}-{run_id}{WRITE_EXTENSION[files.format]}"
        self.schema: pa.Schema | None = None
        self.created = False
        self.ops: list[tuple[str, tuple[str, ...], pa.Table]] = []
        self.part: _Staged | None = None

    def add(self, tx: FileTransaction) -> None:
        if tx.created:
            self.created = True
            self.schema = tx.schema
        elif self.schema is None:
            self.schema = tx.schema
        if self.files.single:
            self.ops.extend(tx.ops)
            return
        tables = [t for op, _, t in tx.ops if op == "insert"]
        schema = self.schema or (tables[0].schema if tables else None)
        if schema is None:
            return
        self.schema = schema
        if self.part is None and tables:
            self.part = self.files._staged(f"{self.files.path}/{self.part_name}", schema)
        for table in tables:
            assert self.part is not None
            self.part.write(_full(table, schema))

    def publish(self) -> None:
        files = self.files
        if files.single:
            if self.ops or self.created:
                files._rewrite(FileTransaction(schema=self.schema if self.created else None,
                                               ops=self.ops, created=self.created))
            return
        if self.part is not None:
            self.part.commit()
        elif self.created:  # a created folder with no record yet: an empty part or folder
            files._write_part(FileTransaction(schema=self.schema, created=True))

    def discard(self) -> None:
        if self.part is not None:
            self.part.discard()
            self.part = None


#: a files cursor: {"files": {name: "size:modified"}, "shown": a line for logs}
Manifest = dict[str, Any]


def _version(entry: FileEntry) -> str:
    return f"{entry.size}:{entry.modified.isoformat()}"


def _manifest(files: dict[str, str], reading: str | None = None) -> Manifest:
    """A files cursor; `reading`: the file whose records are being read (not yet done)."""
    newest = max((v.split(":", 1)[1] for v in files.values()), default=None)
    shown = f"{len(files)} file{'' if len(files) == 1 else 's'} read" + (
        f", the newest modified {newest}" if newest else "") + (
        f"; reading {reading}" if reading else "")
    out: Manifest = {"files": dict(sorted(files.items())), "shown": shown}
    if reading:
        out["reading"] = reading
    return out


def _manifest_files(cursor: Any, files: Sequence[FileEntry]) -> dict[str, str]:
    """The files a cursor says were read, by name and version. A modification time (the
    cursor of earlier versions) means every file modified before it."""
    if isinstance(cursor, dict):
        return dict(cursor.get("files") or {})
    if isinstance(cursor, datetime):
        return {f.name: _version(f) for f in files if f.modified < _utc(cursor)}
    return {}


def _shortened(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


_ROW_ERROR = re.compile(r"CSV parse error: Row #(\d+): (.*)", re.S)
_UNREADABLE = re.compile(r"Could not open (?:Parquet|CSV|JSON) input source '([^']*)': (.*)",
                         re.S)


def _plain_arrow_error(exc: BaseException, fmt: str, name_of: Callable[[str], str]
                       ) -> str | None:
    """What an Arrow failure to read a file means, in a sentence naming the file and, for
    a ragged CSV row, its line (Arrow counts the header as row 1, as an editor does)."""
    if not isinstance(exc, pa.ArrowException):
        return None
    text = str(exc)
    path = re.search(r"Could not read schema from '([^']*)'", text)
    name = name_of(path.group(1)) if path else None
    row = _ROW_ERROR.search(text)
    if row:
        where = f"{name} line {row.group(1)}" if name else f"line {row.group(1)}"
        detail = row.group(2).strip()
        return f"{where}: {_shortened(detail[:1].lower() + detail[1:])}"
    unreadable = _UNREADABLE.search(text)
    if unreadable:
        label = {"parquet": "Parquet", "csv": "CSV", "jsonl": "JSON Lines"}[fmt]
        return (f"{name_of(unreadable.group(1))} is not a readable {label} file: "
                f"{_shortened(unreadable.group(2).strip())}")
    return None


def _csv_convert(types: dict[str, pa.DataType], columns: Sequence[str] | None
                 ) -> pacsv.ConvertOptions:
    # an empty field is NULL and a quoted "" an empty text: what CSVWriter writes for each
    return pacsv.ConvertOptions(column_types=types,
                                include_columns=list(columns) if columns is not None else [],
                                strings_can_be_null=True, quoted_strings_can_be_null=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _full(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with every column of `schema` (nulls where it carries none), in order."""
    return pa.table([table.column(f.name) if f.name in table.column_names
                     else pa.nulls(table.num_rows, f.type) for f in schema], schema=schema)


def _combine(parts: Sequence[ds.Expression], how: str) -> ds.Expression | None:
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = (out & p) if how == "and" else (out | p)
    return out


def _coerce(value: Any, t: pa.DataType) -> Any:
    """A value as a column of type `t` takes it, where the change loses nothing a reader
    would miss (a Decimal into a float column, JSON into a text column)."""
    if value is None:
        return None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False, sort_keys=True)
        if isinstance(value, UUID | Decimal | int | float) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, datetime | date | time):
            return value.isoformat()
        return value
    if pa.types.is_floating(t) and isinstance(value, Decimal | int) \
            and not isinstance(value, bool):
        return float(value)
    if pa.types.is_integer(t):
        if isinstance(value, Decimal) and value == value.to_integral_value():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    if pa.types.is_decimal(t) and isinstance(value, int | float) \
            and not isinstance(value, bool):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return value
    if pa.types.is_timestamp(t) and isinstance(value, str):
        with suppress(ValueError):
            return datetime.fromisoformat(value)
    if pa.types.is_date32(t):
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, str):
            with suppress(ValueError):
                return date.fromisoformat(value)
    return value


def _to_table(rows: Sequence[Record], schema: pa.Schema) -> tuple[pa.Table, list[Refusal]]:
    """The rows as a table of `schema`; those Arrow cannot hold as that schema are refused,
    one by one, with Arrow's message."""
    shaped = [{f.name: _coerce(r.get(f.name), f.type) for f in schema} for r in rows]
    try:
        return pa.Table.from_pylist(shaped, schema=schema), []
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    kept, refused = [], []
    for i, row in enumerate(shaped):
        try:
            pa.Table.from_pylist([row], schema=schema)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            refused.append(Refusal(i, "INVALID_VALUE", str(exc)))
            continue
        kept.append(row)
    return pa.Table.from_pylist(kept, schema=schema), refused


def open_files(settings: FilesSettings, resource: str, display: str) -> FilesTable:
    return FilesTable(settings, resource, display)
