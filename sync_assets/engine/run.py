"""One run of a push sync: read batches, map, validate, write, commit state, count.

Each batch's rows, their fingerprints and the advanced cursor commit in one destination
transaction, so a run killed anywhere resumes without losing or doubling a record. Unchanged
records (same fingerprint of mapped values) are never rewritten. `dry_run` walks the same path
and rolls every transaction back: that is what `plan` shows.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .. import filters as objectql
from ..connectors.base import (
    CURSOR_COLUMN,
    BatchRefused,
    ConnectorError,
    Endpoint,
    ReadRequest,
    Record,
    Refusal,
    TransientError,
    shard_of,
)
from ..project import Project
from ..spec import DataSyncConfig, SyncExecutionResult
from ..state import StateStore, project_state_host
from . import columnar
from .cel import ExpressionError
from .direction import flows, is_reversed, reversed_config
from .endpoints import open_endpoint
from .mapping import FieldError, RecordMapper, resolve_names
from .records import fingerprints, plain, record_key, same_values
from .result import ResultBuilder
from .validation import RecordValidator

MAPPING_CODES = {"CAST_ERROR", "EXPRESSION_ERROR"}


class RunFailed(Exception):
    """The run stops: nothing more is written. The message is shown to users as is."""

    def __init__(self, message: str, code: str = "SYNC_FAILED") -> None:
        self.code = code
        super().__init__(message)


@dataclass
class Progress:
    sync_name: str
    read: int
    total: int | None
    result: ResultBuilder


@dataclass
class RunOptions:
    full_refresh: bool = False
    dry_run: bool = False
    allow_mass_delete: bool = False
    #: mirror refuses to delete more than this share of the records it created, at once...
    mass_delete_ratio: float = 0.5
    #: ...unless it is no more than this many records
    mass_delete_min: int = 10
    progress: Callable[[Progress], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    run_id: str | None = None
    sample_size: int = 5
    #: (index, count): run only the records of one static shard of the sync
    shard: tuple[int, int] | None = None


@dataclass
class _Item:
    record_id: str
    key: str
    key_values: tuple[Any, ...]
    mapped: Record
    fp: str
    at_boundary: bool


@dataclass
class _Bulk:
    data: pa.Table  # renamed to the destination's columns
    keys: list[str]
    fingerprints: list[str]


@dataclass
class _Outcome:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    changes: list[tuple[str, str, Any, Any]] = field(default_factory=list)
    samples: list[tuple[str, Record]] = field(default_factory=list)


def open_state(project: Project, dest: Endpoint, name: str, *, compress: bool = False
               ) -> tuple[StateStore, Any, bool]:
    """(store, host, apart). State beside the data where the destination can host it and
    the project names no `state.url`; otherwise in the project's state database, written
    around the destination's acknowledgements (intent before the write, the rest after)."""
    settings = project.state
    dest_host = dest.state_host() if dest.capabilities.hosts_state else None
    if settings.url is None and dest_host is not None:
        return StateStore(name, dest_host.schema, compress=compress), dest_host, False
    host = project_state_host(project.root,
                              settings.url.get_secret_value() if settings.url else None,
                              settings.db_schema)
    return (StateStore(name, host.schema, compress=compress), host,
            not host.same_database(dest_host))


def read_all(endpoint: Endpoint, columns: list[str], filter: Any,
             order_by: list[str]) -> Iterator[Record]:
    """Every record (within a filter), in pages, the filter applied here where the system
    cannot: for two-way syncs, which compare both sides whole."""
    request = ReadRequest(columns=columns, order_by=order_by, batch_size=5000, filter=filter)
    local = filter is not None and not endpoint.capabilities.filter_pushdown
    for page in endpoint.read_batches(request):
        for row in page:
            if not local or objectql.evaluate_filter(filter, row):
                yield row


class RunBase:
    """What every run of a sync has: its config, options, result and samples, and the rule
    that an expected failure ends the run with a failed result rather than an exception."""

    def __init__(self, project: Project, sync_name: str, options: RunOptions | None = None):
        self.project = project
        self.definition = project.sync(sync_name)
        self.config: DataSyncConfig = self.definition.config
        self.options = options or RunOptions()
        self.result = ResultBuilder(
            run_id=self.options.run_id or uuid.uuid4().hex,
            sync_name=self.config.name,
            log_level=self.config.effective_audit.logLevel,
        )
        self.samples: dict[str, list[Record]] = {}

    def execute(self) -> SyncExecutionResult:
        try:
            self._execute()
        except (RunFailed, ConnectorError) as exc:
            code = exc.code if isinstance(exc, RunFailed) else "CONNECTOR_ERROR"
            self.result.error(str(exc), code=code)
            self.result.log("error", f"run failed: {exc}")
            return self.result.finish("failed")
        return self.result.finish("partial" if self.result.errored else "completed")

    def _execute(self) -> None:
        raise NotImplementedError


class SyncRun(RunBase):
    """A one-way run: push, pull, or a push of the reversed config."""

    def __init__(self, project: Project, sync_name: str, options: RunOptions | None = None):
        super().__init__(project, sync_name, options)
        self._lock = threading.Lock()
        self.state_name = self.config.name

    def _execute(self) -> None:
        cfg = self.config
        if cfg.direction == "bidirectional":
            raise RunFailed("bidirectional syncs run through TwoWayRun", code="UNSUPPORTED")
        if is_reversed(flows(cfg)[0]):
            # destination -> source: the same machinery, on the mapping read backwards
            side_a = open_endpoint(self.project, cfg.source).describe()
            kinds = {n: f.kind for n, f in side_a.fields.items()} if side_a.exists else None
            self.config = cfg = reversed_config(cfg, kinds)
            self.state_name = f"{cfg.name}__reverse"
            self.result.log("info", "flowing destination -> source (direction "
                                    f"{self.definition.config.direction})")
        self.source = open_endpoint(self.project, cfg.source)
        self.dest = open_endpoint(self.project, cfg.destination)
        sdesc = self.source_desc = self.source.describe()
        if not sdesc.exists:
            raise ConnectorError(f"source table {self.source.display} does not exist")
        try:
            self.mapper = RecordMapper(
                cfg, sdesc, self.source.lookup_table,
                cache_lookups=cfg.effective_optimization.cacheEnabled,
            )
            self.validator = RecordValidator(cfg, self.mapper.targets)
        except (FieldError, ExpressionError) as exc:
            raise RunFailed(str(exc), code="CONFIG") from None
        self.op = cfg.destination.operation
        self.source_id = list(sdesc.primary_key) or self._source_key_fallback()
        ddesc = self.dest.describe()
        self.dest_exists = ddesc.exists
        self.key = self._destination_key(ddesc)
        self.append = self.op == "insert" and not self.key
        if not self.key and self.op != "insert":
            raise RunFailed(
                f"operation '{self.op}' needs destination.matchKey (or a primary key on "
                f"{self.dest.display}) to find the records to change", code="CONFIG",
            )
        if ddesc.exists:
            missing = [t for t in self.mapper.targets if t not in ddesc.fields]
            if missing:
                raise ConnectorError(
                    f"destination {self.dest.display} has no column {', '.join(missing)}; "
                    f"columns: {', '.join(ddesc.fields)}"
                )
        self.shard = self._shard_filter()
        self._open_state()
        with self.state_host.transaction(rollback=self.options.dry_run) as conn:
            self._ensure_state(conn)  # a dry run creates nothing: this is rolled back too
            cursor = self.state.load_cursor(conn)
            nothing_synced = not self.state.has_records(conn)
        if self.options.shard and not self.dest_exists and not self.options.dry_run:
            self._create_destination_first()
        self.bulk_load = nothing_synced and self._first_load_is_safe()
        if self.bulk_load:
            self.result.log("info", "first load into an empty destination: every record is "
                                    "new, so no record is looked up before it is written")
        self.result.cursor = cursor
        if self.options.full_refresh:
            cursor = None
            self.result.log(
                "info", "full refresh: every record is read again and compared with the destination"
            )
        self.mirror = self.op == "sync"
        self.key_unknown = 0
        self.bulk_written = 0
        self._read_and_write(cursor)
        if self.bulk_written:
            with self.state_host.transaction() as conn:
                self.state.analyze(conn)
        if self.op == "sync":
            self._mirror_deletes()
        if cfg.effective_audit.trackChanges and not self.options.dry_run:
            # a dry run must not even create the state tables
            with self.state_host.transaction() as conn:
                self.state.prune_changes(conn, cfg.effective_audit.retainLogsForDays)

    def _shard_filter(self) -> tuple[tuple[str, ...], int, int] | None:
        """(source columns, index, count) of this run's shard, for ReadRequest.shard. A
        shard is chosen by the match key's source columns (so every version of a record is
        read by one shard, and shards never write the same key), or by the source's key for
        appends. The shard's own state name keeps its cursor and records apart."""
        if self.options.shard is None:
            return None
        index, count = self.options.shard
        if not 0 <= index < count:
            raise RunFailed(f"shard {index} of {count} does not exist: shards are numbered "
                            f"0 to {count - 1}", code="CONFIG")
        if self.append:
            columns = list(self.source_id)
        else:
            renamed = self.mapper.plain_sources
            if not all(k in renamed for k in self.key):
                raise RunFailed(
                    "shards split records by their match key, so every key field "
                    f"({', '.join(self.key)}) must be a source field mapped without a "
                    "transform", code="CONFIG")
            columns = [renamed[k] for k in self.key]
        self.state_name = f"{self.state_name}#shard-{index}-of-{count}"
        self.result.log("info", f"shard {index} of {count}: records whose "
                                f"{', '.join(columns)} hash to {index} modulo {count}")
        return tuple(columns), index, count

    def _ensure_state(self, conn: Any) -> None:
        """Create the state tables if missing. Shards may be creating them at this moment:
        each first tries in a transaction of its own, where losing the race only fails that
        transaction, and the check in `conn` then finds the tables there."""
        if self.options.shard and not self.options.dry_run:
            with contextlib.suppress(BatchRefused, TransientError), \
                    self.state_host.transaction() as own:
                self.state.ensure(own)
        self.state.ensure(conn)

    def _create_destination_first(self) -> None:
        """Shards create a missing destination before reading, in a transaction of its own,
        so two shards starting together do not both try inside their first batch."""
        try:
            with self._transaction() as conn:
                self._ensure_table(conn)
        except (BatchRefused, TransientError):
            if not self.dest.describe(refresh=True).exists:
                raise
        self.dest_exists = True

    @property
    def _compress(self) -> bool:
        return self.config.effective_optimization.compressionEnabled

    def _open_state(self) -> None:
        self.state, self.state_host, self.state_apart = open_state(
            self.project, self.dest, self.state_name, compress=self._compress)
        if self.append and self.state_apart and not self.dest.capabilities.idempotent_inserts:
            raise RunFailed(
                f"insert without matchKey appends, which {self.dest.display} cannot make "
                "exactly-once: give a matchKey", code="CONFIG")
        if self.append and self.state_apart:
            raise RunFailed(
                "insert without matchKey appends, which is exactly-once only when the state "
                "commits with the data: remove `state.url` from the project or give a matchKey",
                code="CONFIG",
            )

    @contextmanager
    def _batch_transaction(self) -> Iterator[tuple[Any, Any]]:
        """(data connection, state connection). With state apart, the data commits first:
        a crash between the two makes the next run re-check the batch against the
        destination, which finds it written and records it without writing again."""
        if not self.state_apart:
            with self._transaction() as conn:
                yield conn, conn
            return
        with self.state_host.transaction(rollback=self.options.dry_run) as sconn, \
                self._transaction() as conn:
            yield conn, sconn

    def _first_load_is_safe(self) -> bool:
        """Whether every record of this run is certainly new to the destination: nothing was
        synced yet, the destination is empty, and the source cannot hold a key twice (the
        key is a plain rename of source columns that are unique there)."""
        if self.op not in ("insert", "upsert", "sync") or self.append:
            return False
        renamed = self.mapper.plain_sources
        if not all(k in renamed for k in self.key):
            return False
        if not self.source_desc.is_unique([renamed[k] for k in self.key]):
            return False
        return not self.dest_exists or self.dest.is_empty()

    def _source_key_fallback(self) -> list[str]:
        names = self.config.destination.matchKey or []
        by_target = {m.target: m.source for m in self.mapper.entries}
        resolved = resolve_names(self.config, names, self.mapper.targets)
        found = [by_target.get(n, n) for n in resolved]
        if found and all(f in self.mapper.source.fields for f in found):
            return found
        raise ConnectorError(
            f"source {self.source.display} has no primary key; give it one, or a matchKey "
            "that names source fields, so records can be read in a stable order"
        )

    def _destination_key(self, ddesc: Any) -> list[str]:
        if self.config.destination.matchKey:
            return resolve_names(self.config, self.config.destination.matchKey, self.mapper.targets)
        if ddesc.exists and ddesc.primary_key and all(
            k in self.mapper.targets for k in ddesc.primary_key
        ):
            return list(ddesc.primary_key)
        if not ddesc.exists:
            # A table we create gets the source's primary key, where the mapping carries it.
            targets = {m.source: m.target for m in self.mapper.entries if m.transform is None}
            mapped = [targets.get(k) for k in self.mapper.source.primary_key]
            if mapped and all(mapped):
                return [m for m in mapped if m]
        return []

    # -- reading ----------------------------------------------------------------------------
    def _request(self, cursor: Any) -> ReadRequest:
        cfg = self.config
        ctf = cfg.changeTrackingField
        if ctf and ctf not in self.mapper.source.fields:
            raise ConnectorError(
                f"changeTrackingField '{ctf}' is not a column of {self.source.display}"
            )
        try:
            filt = objectql.parse_filter(cfg.source.filters) if cfg.source.filters else None
        except objectql.FilterError as exc:
            raise RunFailed(str(exc), code="CONFIG") from None
        incremental = bool(ctf) and cfg.syncMode in ("incremental", "realtime")
        columns = list(dict.fromkeys([
            *self.mapper.source_fields, *self.validator.source_fields(self.mapper.available),
            *self.source_id, *([ctf] if ctf else []),
        ]))
        return ReadRequest(
            columns=columns,
            order_by=[ctf, *self.source_id] if incremental and ctf else self.source_id,
            batch_size=cfg.batchSize,
            filter=filt,
            cursor_field=ctf if incremental else None,
            lower=cursor if incremental else None,
            shard=self.shard,
        )

    def _read_and_write(self, cursor: Any) -> None:
        request = self._request(cursor)
        ctf = self.config.changeTrackingField
        if request.cursor_field is not None:
            # The high-water mark bounds this run: what changes during it is the next run's.
            upper = self.source.high_water_mark(request.cursor_field, request)
            request = ReadRequest(**{**request.__dict__, "upper": upper})
            start = "the start" if cursor is None else plain(cursor)
            self.result.log("info", f"incremental read on {ctf} from {start} to {plain(upper)}")
        else:
            self.result.log("info", f"reading all of {self.source.display}")
        self.cursor_at_end = None
        if (self.bulk_load and request.cursor_field is not None and request.lower is None
                and request.upper is not None and self._bulk_writers()):
            # A first load reads in the source key's order: a walk in storage order, not one
            # through the change-tracking index. Pages are then not in cursor order, so the
            # cursor moves once, to the high-water mark, when every page is in; a run that
            # stops before reads again and finds the written pages in its state.
            self.cursor_at_end = request.upper
            request = ReadRequest(**{**request.__dict__, "order_by": self.source_id})
        read = self._read_pass(request)
        if self.cursor_at_end is not None:
            with self.state_host.transaction() as sconn:
                self.state.save_cursor(sconn, self.cursor_at_end)
            self._advanced(self.cursor_at_end)
            self.cursor_at_end = None
        if request.cursor_field is not None:
            # Rows without a change-tracking value cannot be ordered by the cursor: every
            # incremental run reads them, and their fingerprints skip the unchanged ones.
            nulls = ReadRequest(**{**request.__dict__, "cursor_field": None, "lower": None,
                                   "upper": None, "order_by": self.source_id,
                                   "null_cursor": request.cursor_field})
            unordered = self._read_pass(nulls, offset=read)
            if unordered:
                self.result.log("info", f"read {unordered} records whose {ctf} is null")
            read += unordered
        self.result.log("info", f"read {read} records from {self.source.display}")

    def _parallel_workers(self) -> int:
        """optimization.parallelBatches: concurrent batch writers where the destination
        takes concurrent writers (not SQLite: one writer at a time)."""
        if not self.config.effective_optimization.parallelBatches or self.options.dry_run:
            return 0
        writers = self.dest.capabilities.concurrent_writers
        if writers <= 1:
            if not getattr(self, "_told_serial", False):
                self._told_serial = True
                self.result.log("info", f"parallelBatches: {self.dest.display} takes one "
                                        "writer at a time; batches are written one after "
                                        "another")
            return 0
        return writers

    def _read_pass(self, request: ReadRequest, offset: int = 0) -> int:
        workers = self._parallel_workers()
        if workers:
            return self._read_pass_parallel(request, offset, workers)
        read = 0
        # first-load pages written from Arrow by concurrent writers, settled in page order
        pending: deque[tuple[Future[bool], pa.Table, _Bulk, Any]] = deque()
        writers = self._bulk_writers()

        def settle(block: bool) -> None:
            while pending and (block or pending[0][0].done() or len(pending) > writers):
                future, page, bulk, cursor = pending.popleft()
                if future.result():
                    self._bulk_done(bulk, cursor)
                else:  # refused as a whole: the record path applies errorHandling
                    self._record_page(page.to_pylist(), request)

        with ThreadPoolExecutor(max_workers=max(writers, 1),
                                thread_name_prefix="sync-write") as pool:
            try:
                for page in self._pages(request):
                    if isinstance(page, list):
                        settle(block=True)
                        self._record_page(page, request)
                        read += len(page)
                        self._report(offset + read)
                        continue
                    bulk = self._bulk_prepare(page) if writers else None
                    if bulk is None:
                        settle(block=True)
                        self._record_page(page.to_pylist(), request)
                    else:
                        cursor = (page.column(CURSOR_COLUMN)[page.num_rows - 1].as_py()
                                  if self._page_cursors(request) else None)
                        if writers == 1:  # written here, the cursor in its transaction
                            if self._bulk_write(bulk, cursor):
                                self._bulk_done(bulk, cursor, cursor_saved=True)
                            else:
                                self._record_page(page.to_pylist(), request)
                        else:
                            pending.append((pool.submit(self._bulk_write, bulk), page, bulk,
                                            cursor))
                        if not self.dest_exists:  # the first page creates the table, alone
                            settle(block=True)
                    settle(block=False)
                    read += page.num_rows
                    self._report(offset + read)
                settle(block=True)
            except BaseException:
                for future, *_ in pending:
                    future.cancel()
                raise
        return read

    def _page_cursors(self, request: ReadRequest) -> bool:
        """Whether each page carries the cursor past it (pages in cursor order)."""
        return request.cursor_field is not None and self.cursor_at_end is None

    def _record_page(self, rows: Sequence[Record], request: ReadRequest) -> None:
        items = self._prepare(rows, request)
        last_cursor = rows[-1].get(CURSOR_COLUMN) if self._page_cursors(request) else None
        self._write_with_policy(items, last_cursor)

    # -- the Arrow lane -------------------------------------------------------------------
    def _pages(self, request: ReadRequest, keys_only: bool = False) -> Iterator[Any]:
        """The source's pages: Arrow tables from its fast lane where the mapping only
        renames and no validation rule needs the records (or only keys are read), else
        records, with the filter and shard applied here where the source cannot."""
        lane = not self.options.dry_run and (
            keys_only or (self.mapper.renames is not None and self.validator.empty))
        pages = self.source.read_arrow(request, keys_only) if lane else None
        if pages is not None:
            return pages
        return self._fallbacks(request, self.source.read_batches(request))

    def _fallbacks(self, request: ReadRequest, pages: Iterator[list[Record]]
                   ) -> Iterator[list[Record]]:
        caps = self.source.capabilities
        need_filter = request.filter is not None and not caps.filter_pushdown
        need_shard = request.shard is not None and not caps.shards
        if not (need_filter or need_shard):
            return pages

        def kept(page: list[Record]) -> list[Record]:
            out = page
            if need_filter:
                out = [r for r in out if objectql.evaluate_filter(request.filter, r)]
            if need_shard and request.shard is not None:
                columns, index, count = request.shard
                out = [r for r in out if shard_of(count, *(r.get(c) for c in columns)) == index]
            return out

        # A page filtered down to nothing still tells the reader to go on: keep the pages.
        return (kept(page) for page in pages)

    def _bulk_writers(self) -> int:
        """Concurrent writers for first-load pages written straight from Arrow (0: none).
        PostgreSQL takes two COPYs at once nearly twice as fast as one after the other
        (each backend maintains the key indexes on its own core); SQLite takes one writer."""
        if not (self.bulk_load and self.mapper.renames is not None
                and not self.state_apart and not self.append
                and not self.config.effective_audit.trackChanges
                and self.dest.capabilities.arrow_writes):
            return 0
        return 1 if self.dest.capabilities.concurrent_writers <= 1 else 2

    def _bulk_prepare(self, page: pa.Table) -> _Bulk | None:
        """A first-load page renamed, keyed and fingerprinted by column; None when a key is
        missing or repeated (the record path reports those)."""
        assert self.mapper.renames is not None
        sources = [s for s, _ in self.mapper.renames]
        targets = [t for _, t in self.mapper.renames]
        data = page.select(sources).rename_columns(targets)
        if any(data.column(k).null_count for k in self.key):
            return None
        keys = columnar.record_keys(data, self.key)
        if len(set(keys)) != len(keys):
            return None
        return _Bulk(data, keys, columnar.fingerprints(data, targets))

    def _bulk_write(self, bulk: _Bulk, cursor: Any = None) -> bool:
        """Rows and their state (and the cursor, if given) in one transaction; False when
        the database refused them (nothing of the page is written then)."""
        try:
            with self._transaction() as conn:
                self._ensure_table(conn)
                if not self.dest.write_arrow(conn, bulk.data):
                    raise BatchRefused(f"{self.dest.display} takes no Arrow writes")
                self.state.save_new_records(conn, bulk.keys, bulk.fingerprints)
                if cursor is not None:
                    self.state.save_cursor(conn, cursor)
        except (BatchRefused, TransientError) as exc:
            self.result.log("debug", f"bulk write refused ({exc}); record by record")
            return False
        self.dest_exists = True
        return True

    def _bulk_done(self, bulk: _Bulk, cursor: Any, *, cursor_saved: bool = False) -> None:
        """A written page, in page order: the cursor moves past it only now, when it and
        every page before it have committed."""
        if cursor is not None and not cursor_saved:
            with self.state_host.transaction() as sconn:
                self.state.save_cursor(sconn, cursor)
        self._advanced(cursor)
        self.result.inserted += bulk.data.num_rows
        self.bulk_written += bulk.data.num_rows
        bucket = self.samples.setdefault("insert", [])
        room = self.options.sample_size - len(bucket)
        if room > 0:
            bucket.extend(bulk.data.slice(0, room).to_pylist())

    def _advanced(self, cursor: Any) -> None:
        if cursor is not None:
            self.result.cursor = cursor

    def _report(self, read: int) -> None:
        if self.options.progress:
            self.options.progress(Progress(self.config.name, read, None, self.result))

    def _read_pass_parallel(self, request: ReadRequest, offset: int, workers: int) -> int:
        """Batches are written concurrently, each in its own transaction with its records'
        state; the cursor only advances past a batch once it and every earlier batch have
        committed, so a crash never skips an unwritten batch."""
        read = 0
        pending: deque[tuple[Future[None], Any]] = deque()

        def settle(block: bool) -> None:
            while pending and (block or pending[0][0].done() or len(pending) > 2 * workers):
                future, cursor = pending.popleft()
                future.result()  # re-raises a failed batch: the cursor stays before it
                if cursor is not None:
                    with self.state_host.transaction() as sconn:
                        self.state.save_cursor(sconn, cursor)
                    self.result.cursor = cursor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync-batch") as pool:
            try:
                for rows in self._fallbacks(request, self.source.read_batches(request)):
                    read += len(rows)
                    items = self._prepare(rows, request)
                    cursor = (rows[-1].get(CURSOR_COLUMN) if self._page_cursors(request)
                              else None)
                    if not self.dest_exists:  # the first batch creates the table, alone
                        self._write_with_policy(items, cursor)
                    else:
                        pending.append((pool.submit(self._write_with_policy, items, None),
                                        cursor))
                    settle(block=False)
                    self._report(offset + read)
                settle(block=True)
            except BaseException:
                for future, _ in pending:
                    future.cancel()
                raise
        return read

    def _record_id(self, row: Record) -> str:
        values = [row.get(k) for k in self.source_id]
        return str(plain(values[0])) if len(values) == 1 else record_key(values)

    def _prepare(self, rows: Sequence[Record], request: ReadRequest) -> list[_Item]:
        self.mapper.start_batch()
        policy = self.config.effective_error_handling.onValidationError
        by_key: dict[str, _Item] = {}
        for row in rows:
            rid = self._record_id(row)
            mapped, problems = self.mapper.map(row)
            problems += self.validator.check(rid, mapped, row)
            key_fields = self.key if not self.append else self.source_id
            key_source = row if self.append else mapped
            key_values = tuple(key_source.get(k) for k in key_fields)
            if any(v is None for v in key_values):
                self.key_unknown += 1
                self.result.errored += 1
                on_key = [p for p in problems if p.field in key_fields]
                for p in on_key:  # the reason the key is missing, e.g. a failed cast
                    self.result.error(p.message, record_id=rid, field_name=p.field, code=p.code)
                if not on_key:
                    self.result.error(
                        f"no value for the match key ({', '.join(key_fields)})",
                        record_id=rid, field_name=key_fields[0], code="KEY_MISSING",
                    )
                continue
            key = record_key(key_values)
            if problems:
                for p in problems:
                    self.result.error(p.message, record_id=rid, field_name=p.field, code=p.code)
                if policy == "fail":
                    first = problems[0]
                    raise RunFailed(
                        f"record {rid}: {first.field}: {first.message} "
                        "(errorHandling.onValidationError is fail)", code=first.code,
                    )
                if policy == "skip":
                    self.result.errored += 1
                    continue
                for p in problems:  # log: written anyway; a value that failed to map is null
                    if p.code in MAPPING_CODES:
                        mapped[p.field] = None
            at_boundary = (
                request.cursor_field is not None and request.lower is not None
                and plain(row.get(CURSOR_COLUMN)) == plain(request.lower)
            )
            if key in by_key:
                self.result.skipped += 1  # the later version of one key in one batch wins
                self.result.log("debug", f"record {by_key[key].record_id} superseded by {rid}")
            by_key[key] = _Item(rid, key, key_values, mapped, "", at_boundary)
        items = list(by_key.values())
        fps = fingerprints([i.mapped for i in items], self.mapper.targets)
        for item, fp in zip(items, fps, strict=True):
            item.fp = fp
        return items

    # -- writing ----------------------------------------------------------------------------
    def _write_with_policy(self, items: list[_Item], cursor: Any) -> None:
        handling = self.config.effective_error_handling
        retry = self.config.effective_retry
        attempt = 0
        while True:
            try:
                outcome = self._write(items, cursor)
                break
            except (BatchRefused, TransientError) as exc:  # refused, or a passing fault
                message = str(exc)
                transient = isinstance(exc, TransientError)
                retryable = handling.onSyncError == "retry" or transient
                if retryable and attempt < retry.maxAttempts:
                    attempt += 1
                    wait_ms = retry.backoffMs
                    if isinstance(exc, TransientError) and exc.retry_after is not None:
                        wait_ms = max(wait_ms, round(exc.retry_after * 1000))  # as asked
                    self.result.log("warn", f"batch failed ({message}); retry {attempt} of "
                                            f"{retry.maxAttempts} in {wait_ms} ms")
                    self.options.sleep(wait_ms / 1000)
                    continue
                if handling.onSyncError == "skip" and not transient and len(items) > 1:
                    self.result.log("warn", f"batch failed ({message}); writing its records "
                                            "one by one to skip the bad ones")
                    self._write_one_by_one(items, cursor)
                    return
                if handling.onSyncError == "skip" and not transient:
                    self._refuse(items[0], message)
                    return
                raise RunFailed(
                    f"writing to {self.dest.display} failed: {message}", code="WRITE_ERROR"
                ) from None
        self._count(outcome)

    def _write_one_by_one(self, items: list[_Item], cursor: Any) -> None:
        for i, item in enumerate(items):
            last = cursor if i == len(items) - 1 else None
            try:
                self._count(self._write([item], last))
            except (BatchRefused, TransientError) as exc:
                self._refuse(item, str(exc))

    def _refuse(self, item: _Item, message: str, code: str = "WRITE_ERROR") -> None:
        with self._lock:  # batch writers may run in threads (parallelBatches)
            self.result.errored += 1
            self.result.error(f"{self.dest.display} refused the record: {message}",
                              record_id=item.record_id, code=code)

    def _count(self, outcome: _Outcome) -> None:
        with self._lock:
            r = self.result
            r.inserted += outcome.inserted
            r.updated += outcome.updated
            r.deleted += outcome.deleted
            r.skipped += outcome.skipped
            for action, record in outcome.samples:
                bucket = self.samples.setdefault(action, [])
                if len(bucket) < self.options.sample_size:
                    bucket.append(record)

    def _save_state(self, sconn: Any, states: list[tuple[str, str, bool]],
                    known_keys: set[str], deletes: list[_Item], out: _Outcome,
                    cursor: Any) -> None:
        if deletes:
            self.state.forget(sconn, [i.key for i in deletes])
        self.state.save_records(sconn, states, known_keys)
        if out.changes:
            self.state.log_changes(sconn, self.result.run_id, out.changes)
        if cursor is not None:
            self.state.save_cursor(sconn, cursor)
            self.result.cursor = cursor

    def _ensure_table(self, conn: Any) -> None:
        if self.dest_exists:
            return
        self.dest.create(conn, self.mapper.target_types(), self.key)
        self.result.log("info", f"created {self.dest.display}")

    def _transaction(self) -> Any:
        return self.dest.transaction(rollback=self.options.dry_run)

    @contextmanager
    def _state_conn(self, data_conn: Any) -> Iterator[Any]:
        """The state connection for one step: the data's own transaction when state lives
        beside the data; otherwise a short transaction of its own in the state database."""
        if not self.state_apart:
            yield data_conn
            return
        with self.state_host.transaction(rollback=self.options.dry_run) as sconn:
            if self.options.dry_run:
                self.state.ensure(sconn)
            yield sconn

    def _written(self, conn: Any, operation: Any, todo: list[Any], out: _Outcome,
                 states: list[tuple[str, str, bool]]) -> list[Any]:
        """Write inserts (items) or updates ((item, current) pairs) in the destination's
        batch size; what it refuses is errored with its code and forgotten by the state."""
        items = [t if isinstance(t, _Item) else t[0] for t in todo]
        size = self.dest.capabilities.max_batch_size or len(items) or 1
        kept: list[Any] = []
        for start in range(0, len(items), size):
            chunk = todo[start : start + size]
            result = self.dest.write(conn, operation, self.key,
                                     [i.mapped for i in items[start : start + size]])
            kept.extend(self._kept(chunk, result.refused, out, states))
        if operation == "insert":
            out.inserted += len(kept)
        else:
            out.updated += len(kept)
        return kept

    def _kept(self, todo: list[Any], refused: list[Refusal], out: _Outcome,
              states: list[tuple[str, str, bool]] | None = None) -> list[Any]:
        if not refused:
            return todo
        gone = {r.index for r in refused}
        for r in refused:
            item = todo[r.index] if isinstance(todo[r.index], _Item) else todo[r.index][0]
            self._refuse(item, f"{r.code}: {r.message}" if r.code else r.message,
                         code="WRITE_ERROR")
            if states is not None:
                states[:] = [s for s in states if s[0] != item.key]
        return [t for i, t in enumerate(todo) if i not in gone]

    def _write(self, items: list[_Item], cursor: Any) -> _Outcome:
        """Write one batch. With state beside the data, rows, fingerprints and cursor commit
        in one transaction. With state apart, the keys about to be created are committed as
        created (with no fingerprint) before the data, and the rest of the state after it:
        a crash in between leaves records the next run re-checks, never orphans."""
        out = _Outcome()
        targets = self.mapper.targets
        with self._transaction() as conn:
            if self.options.dry_run and not self.state_apart:
                self.state.ensure(conn)
            self._ensure_table(conn)
            with self._state_conn(conn) as sconn:
                known = ({} if self.bulk_load else
                         self.state.fingerprints(sconn, [i.key for i in items]))
            todo: list[_Item] = []
            for it in items:
                prev = known.get(it.key)
                if prev and prev[0] == it.fp and not self.options.full_refresh:
                    if not it.at_boundary:  # a boundary re-read was counted by the last run
                        out.skipped += 1
                    continue
                todo.append(it)
            existing: dict[str, Record] = {}
            if todo and not self.append and self.dest_exists and not self.bulk_load:
                rows = self.dest.lookup(conn, self.key, [i.key_values for i in todo], targets)
                existing = {record_key([r[k] for k in self.key]): r for r in rows}
            inserts, updates, deletes, states = [], [], [], []
            for it in todo:
                cur = existing.get(it.key)
                created = known.get(it.key, (None, False))[1]
                if self.op == "delete":
                    if cur is not None:
                        deletes.append(it)
                        it.mapped = {k: cur.get(k) for k in targets}  # what was removed
                    else:
                        out.skipped += 1
                    continue
                if cur is None:
                    if self.op == "update":
                        out.skipped += 1
                        continue
                    inserts.append(it)
                    states.append((it.key, it.fp, True))
                    continue
                if self.op == "insert" or same_values(cur, it.mapped, targets):
                    out.skipped += 1  # already there as it should be
                    states.append((it.key, it.fp, created))
                    continue
                updates.append((it, cur))
                states.append((it.key, it.fp, created))
            known_keys = set(known)
            if self.state_apart and inserts:
                with self._state_conn(conn) as sconn:
                    intent = [(i.key, "", True) for i in inserts]
                    self.state.save_records(sconn, intent, known_keys)
                known_keys |= {i.key for i in inserts}
            inserts = self._written(conn, "insert", inserts, out, states)
            updates = self._written(conn, "update", updates, out, states)
            if deletes:
                written = self.dest.write(conn, "delete", self.key, [
                    dict(zip(self.key, i.key_values, strict=True)) for i in deletes])
                deletes = self._kept(deletes, written.refused, out)
                out.deleted += written.written
            out.samples = (
                [("insert", i.mapped) for i in inserts[: self.options.sample_size]]
                + [("update", i.mapped) for i, _ in updates[: self.options.sample_size]]
                + [("delete", i.mapped) for i in deletes[: self.options.sample_size]]
            )
            if self.config.effective_audit.trackChanges:
                out.changes = (
                    [("insert", i.key, None, i.mapped) for i in inserts]
                    + [("update", i.key, {k: c.get(k) for k in targets}, i.mapped)
                       for i, c in updates]
                    + [("delete", i.key, i.mapped, None) for i in deletes]
                )
            if not self.state_apart:
                self._save_state(conn, states, known_keys, deletes, out, cursor)
        if self.state_apart:
            with self._state_conn(conn) as sconn:
                self._save_state(sconn, states, known_keys, deletes, out, cursor)
        if not self.options.dry_run:
            self.dest_exists = True  # created (if it was missing) and committed
        return out

    # -- mirror -----------------------------------------------------------------------------
    def _all_source_keys(self, conn: Any) -> None:
        """Every source key, now, into the run's table of seen keys: a mirror compares the
        whole source with what it created, whatever the run itself read."""
        request = self._request(None)
        renamed = self.mapper.plain_sources
        direct = all(k in renamed for k in self.key)
        # Keys that are plain renames are read alone; others need the whole mapping.
        columns = ([renamed[k] for k in self.key] + self.source_id if direct
                   else request.columns)
        request = ReadRequest(**{**request.__dict__, "cursor_field": None, "lower": None,
                                 "columns": list(dict.fromkeys(columns)),
                                 "order_by": self.source_id, "batch_size": 20000})
        for page in self._pages(request, keys_only=direct):
            if direct and isinstance(page, pa.Table):
                data = page.select([renamed[k] for k in self.key]).rename_columns(self.key)
                complete = data.drop_null()
                self.key_unknown += data.num_rows - complete.num_rows
                self.state.mark_seen(conn, columnar.record_keys(complete, self.key))
                continue
            rows = page if isinstance(page, list) else page.to_pylist()
            keys = []
            for row in rows:
                if direct:
                    values = tuple(row[renamed[k]] for k in self.key)
                else:
                    mapped, _ = self.mapper.map(row)
                    values = tuple(mapped.get(k) for k in self.key)
                if any(v is None for v in values):
                    self.key_unknown += 1
                else:
                    keys.append(record_key(values))
            self.state.mark_seen(conn, keys)

    def _mirror_deletes(self) -> None:
        if not self.dest_exists:
            return
        self.key_unknown = 0
        # one session, read only: the seen keys live in a temporary table of its own
        with self.state_host.transaction(rollback=True) as conn:
            if self.options.dry_run:
                self.state.ensure(conn)
            self.state.start_seen(conn)
            self._all_source_keys(conn)
            if self.key_unknown:
                self.result.log("warn", f"{self.key_unknown} source records have no match "
                                        "key; mirror deletes are skipped this run to be safe")
                return
            tracked = self.state.count(conn, created_only=True)
            planned = self.state.unseen_created_keys(conn)
            gone = len(planned)
        if not gone:
            return
        share = gone / tracked if tracked else 1.0
        if (gone > self.options.mass_delete_min and share > self.options.mass_delete_ratio
                and not self.options.allow_mass_delete):
            raise RunFailed(
                f"mirror would delete {gone} of the {tracked} records this sync created "
                f"({share:.0%}, over the {self.options.mass_delete_ratio:.0%} guard); nothing "
                "was deleted. If the source really lost them, run again allowing mass deletes "
                "(sync-assets run --allow-mass-delete, or the sync/allow_mass_delete tag)",
                code="MASS_DELETE_GUARD",
            )
        deleted_total = 0
        for chunk in (planned[i : i + 500] for i in range(0, len(planned), 500)):
            values = [tuple(json.loads(k)) for k in chunk]
            with self._batch_transaction() as (conn, sconn):
                before = {record_key([r[k] for k in self.key]): r for r in
                          self.dest.lookup(conn, self.key, values, self.mapper.targets)}
                deleted = self.dest.write(conn, "delete", self.key, [
                    dict(zip(self.key, v, strict=True)) for v in values]).written
                self.state.forget(sconn, chunk)
                if self.config.effective_audit.trackChanges:
                    self.state.log_changes(sconn, self.result.run_id, [
                        ("delete", k, before.get(k), None) for k in chunk])
            deleted_total += deleted
            self.result.deleted += deleted
            self.result.skipped += len(chunk) - deleted  # already gone from the destination
            bucket = self.samples.setdefault("delete", [])
            for row in list(before.values())[: self.options.sample_size - len(bucket)]:
                bucket.append(row)
        self.result.log("info", f"mirror deleted {deleted_total} records that left the source")


def make_run(project: Project, sync_name: str, options: RunOptions | None = None) -> Any:
    """The runner for a sync: SyncRun for one-way flows, TwoWayRun for bidirectional ones.
    Both have `execute() -> SyncExecutionResult`, `result` and `samples`."""
    if project.sync(sync_name).config.direction == "bidirectional":
        from .twoway import TwoWayRun

        return TwoWayRun(project, sync_name, options)
    return SyncRun(project, sync_name, options)


def run(project: Project, sync_name: str, full_refresh: bool = False,
        **options: Any) -> SyncExecutionResult:
    """Run one sync and return its SyncExecutionResult (failed runs return one too)."""
    return make_run(project, sync_name, RunOptions(full_refresh=full_refresh, **options)).execute()


def run_many(project: Project, names: Iterable[str], **options: Any) -> list[SyncExecutionResult]:
    return [run(project, n, **options) for n in names]
