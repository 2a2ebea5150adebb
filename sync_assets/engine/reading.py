"""Reading a one-way run's source: the request, incremental bounds and the high-water mark,
pages (Arrow from a fast lane or records), the connector's missing capabilities supplied
here (filters, shards), and serial or parallel passes over the pages."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .. import filters as objectql
from ..connectors.base import (
    CURSOR_COLUMN,
    ConnectorError,
    ReadRequest,
    Record,
    shard_of,
)
from ..spec.values import shown_cursor
from ..state import HeldFingerprints
from . import columnar
from .bulk import Bulk
from .common import Progress, RunFailed
from .records import plain
from .writing import Outcome

# state rows held in memory at most for a pass reading every record: 17 bytes each, 68 MB
HELD_LIMIT = 4_000_000


@dataclass
class _Compare:
    """A full refresh's page waiting for the destination's compare of it."""

    page: pa.Table
    keys: list[str]
    fps: list[str]
    known: dict[str, tuple[str, bool]]
    request: ReadRequest
    reached: int  # records read once this page is done, for progress
    future: Future[list[int] | None] | None = None


class Reading:
    """The read side of SyncRun."""

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
        if incremental and not self.source.capabilities.ordered_reads:
            # a system that cannot read in cursor order is read whole, and fingerprints
            # decide what to write: a cursor moved past unordered pages could skip records
            incremental = False
            if not getattr(self, "_told_unordered", False):
                self._told_unordered = True
                self.result.log("info", f"{self.source.display} cannot read in "
                                        f"{ctf} order: every run reads it whole and writes "
                                        "only what changed")
        columns = list(dict.fromkeys([
            *self.mapper.source_fields, *self.validator.source_fields(self.mapper.available),
            *self.source_id, *([ctf] if ctf else []), *self._filtered_here(filt),
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

    def _filtered_here(self, filt: objectql.FilterNode | None) -> list[str]:
        """The fields a filter the source cannot apply names: read, so that it is evaluated
        here on them."""
        if filt is None or self.source.capabilities.filter_pushdown:
            return []
        return self._filter_fields(filt)

    def _filter_fields(self, filt: objectql.FilterNode) -> list[str]:
        """The source fields a filter names."""
        return sorted(objectql.filter_fields(filt) & set(self.mapper.source.fields))

    def _read_and_write(self, cursor: Any) -> None:
        request = self._request(cursor)
        ctf = self.config.changeTrackingField
        if request.cursor_field is not None:
            # The high-water mark bounds this run: what changes during it is the next run's.
            # A system that cannot tell (None) is read to its end in cursor order, and the
            # cursor follows the pages read: a record changed meanwhile moves behind them.
            upper = self.source.high_water_mark(request.cursor_field, request)
            request = ReadRequest(**{**request.__dict__, "upper": upper})
            start = "the start" if cursor is None else shown_cursor(cursor)
            end = "the end" if upper is None else shown_cursor(upper)
            self.result.log("info", f"incremental read on {ctf} from {start} to {end}")
        else:
            self.result.log("info", f"reading all of {self.source.display}")
        self.cursor_at_end = None
        if (request.cursor_field is not None and request.lower is None
                and request.upper is not None
                and ((self.bulk_load and self._bulk_writers()) or self.options.full_refresh)):
            # A first load or a full refresh reads in the source key's order: a walk in
            # storage order, not one through the change-tracking index, and a full refresh's
            # page compares with a run of the destination's keys, not with keys scattered
            # over it (18 against 40 ms a 10,000-row page on PostgreSQL). Pages are then not
            # in cursor order, so the cursor moves once, to the high-water mark, when every
            # page is in; a run that stops before reads again and finds the written pages in
            # its state.
            self.cursor_at_end = request.upper
            request = ReadRequest(**{**request.__dict__, "order_by": self.source_id})
        read = self._read_pass(request)
        if self.cursor_at_end is not None:
            if not self.options.dry_run:  # a plan commits nothing, not even a cursor
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
        self.result.log("info", f"read {read} record{'' if read == 1 else 's'} from "
                                f"{self.source.display}")

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
        self._pass_pages, self._pass_held = 0, None
        self._compare_pending: _Compare | None = None
        # a full refresh compares a page in the destination while the next one is read and
        # fingerprinted, where the destination takes a second connection at once
        ahead = (self.options.full_refresh and self.dest_exists
                 and self.dest.capabilities.concurrent_writers > 1)
        self._compare_pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-compare")
                              if ahead else None)
        try:
            return self._serial_pass(request, offset)
        finally:
            self._pass_held = None  # its memory goes with the pass
            if self._compare_pool is not None:
                self._compare_pool.shutdown(wait=True)  # a failed pass's compare ends too
                self._compare_pool = None
            self._compare_pending = None

    def _serial_pass(self, request: ReadRequest, offset: int) -> int:
        read = 0
        # first-load pages written from Arrow by concurrent writers, settled in page order
        pending: deque[tuple[Future[bool], pa.Table, Bulk, Any]] = deque()
        writers = self._bulk_writers()

        def settle(block: bool) -> None:
            while pending and (block or pending[0][0].done() or len(pending) > writers):
                future, page, bulk, cursor = pending.popleft()
                if future.result():
                    self._bulk_done(bulk, cursor)
                else:  # refused as a whole: the record path applies errorHandling
                    self._record_page(columnar.rows(page), request)

        with ThreadPoolExecutor(max_workers=max(writers, 1),
                                thread_name_prefix="sync-write") as pool:
            try:
                for page in self._pages(request):
                    if isinstance(page, list):
                        settle(block=True)
                        self._settle_compare()
                        self._record_page(page, request)
                        read += len(page)
                        self._report(offset + read)
                        continue
                    bulk = self._bulk_prepare(page) if writers else None
                    deferred = False
                    if bulk is None:
                        settle(block=True)
                        deferred = self._arrow_page(page, request,
                                                    reached=offset + read + page.num_rows)
                    else:
                        self._settle_compare()
                        cursor = (page.column(CURSOR_COLUMN)[page.num_rows - 1].as_py()
                                  if self._page_cursors(request) else None)
                        if writers == 1:  # written here, the cursor in its transaction
                            if self._bulk_write(bulk, cursor):
                                self._bulk_done(bulk, cursor, cursor_saved=True)
                            else:
                                self._record_page(columnar.rows(page), request)
                        else:
                            pending.append((pool.submit(self._bulk_write, bulk), page, bulk,
                                            cursor))
                        if not self.dest_exists:  # the first page creates the table, alone
                            settle(block=True)
                    settle(block=False)
                    read += page.num_rows
                    if not deferred:  # else reported once its compare's writes are in
                        self._report(offset + read)
                self._settle_compare()
                settle(block=True)
            except BaseException:
                for future, *_ in pending:
                    future.cancel()
                raise
        return read

    def _page_cursors(self, request: ReadRequest) -> bool:
        """Whether each page carries the cursor past it (pages in cursor order)."""
        return request.cursor_field is not None and self.cursor_at_end is None

    def _arrow_page(self, page: pa.Table, request: ReadRequest, reached: int) -> bool:
        """An Arrow page outside a first load: its records whose fingerprints the state
        already holds are counted skipped a column at a time, set-based, and only the rest
        become records for the record path (a rerun with nothing changed makes no Python
        object per record). Where a record could need more than its fingerprint (a key the
        source may repeat, a record that failed before), the whole page takes the record
        path. A full refresh compares the page with the destination set-based where
        the destination can (`_refreshed_page`). True where the page's outcome is deferred
        to `_settle_compare` (which reports `reached` records read)."""
        refresh = self.options.full_refresh
        data = self.mapper.map_arrow(page)
        if (data is None or self.run_keys is not None or self.append
                or self.failed_before or (refresh and (not self.dest_exists
                                                       or self.op == "delete"))):
            self._settle_compare()  # pages are settled in their order
            self._record_page(columnar.rows(page), request)
            return False
        targets = data.column_names
        if any(data.column(k).null_count for k in self.key):
            self._settle_compare()
            self._record_page(columnar.rows(page), request)  # the record path errors those
            return False
        keys = columnar.record_keys(data, self.key)
        fps = columnar.fingerprints(data, targets)
        known = self._known(keys, fps, request)
        if refresh:
            return self._refreshed_page(page, data, keys, fps, known, request, reached)
        changed = [i for i, (k, fp) in enumerate(zip(keys, fps, strict=True))
                   if known.get(k, ("",))[0] != fp]
        if request.lower is None and changed:
            changed = self._adopted(data, keys, fps, known, changed)
        unchanged = page.num_rows - len(changed)
        if unchanged:
            at_boundary = 0
            if (request.cursor_field is not None and request.lower is not None
                    and CURSOR_COLUMN in page.column_names):
                # a boundary re-read was counted by the run that wrote it
                same = [plain(v) == plain(request.lower)
                        for v in page.column(CURSOR_COLUMN).to_pylist()]
                at_boundary = sum(1 for i, s in enumerate(same) if s) - sum(
                    1 for i in changed if same[i])
            self._count(Outcome(skipped=unchanged - at_boundary))
        self._write_rest(page, changed, request)
        return False

    def _known(self, keys: list[str], fps: list[str],
               request: ReadRequest) -> dict[str, tuple[str, bool]]:
        """The state's (fingerprint, created) of a page's keys. A pass reading every record
        holds the state in memory from its second page on (`HeldFingerprints`): a key held
        with this fingerprint, or not held at all, needs no query; only a key held with
        another fingerprint (a changed record) is asked. Keys are read once a pass, so
        what this run writes never concerns a later page of it."""
        held = self._held_state(request)
        if held is None:
            with self.state_host.transaction(rollback=True) as sconn:
                return self.state.fingerprints(sconn, keys)
        found = held.lookup(keys, fps)
        known = {k: (fp, c) for k, fp, c in zip(keys, fps, found.created, strict=True)
                 if c is not None}
        if found.ask:
            with self.state_host.transaction(rollback=True) as sconn:
                known.update(self.state.fingerprints(sconn, [keys[i] for i in found.ask]))
        return known

    def _held_state(self, request: ReadRequest) -> HeldFingerprints | None:
        """This pass's state held in memory, loaded on its second page (a one-page sync
        asks once, as before); None where the pass reads from a cursor (few records) or
        the state has more than `HELD_LIMIT` rows."""
        if request.lower is not None or request.null_cursor is not None:
            return None
        self._pass_pages += 1
        if self._pass_pages == 2:
            with self.state_host.transaction(rollback=True) as sconn:
                self._pass_held = self.state.held_fingerprints(sconn, HELD_LIMIT)
        return self._pass_held

    def _adopted(self, data: pa.Table, keys: list[str], fps: list[str],
                 known: dict[str, tuple[str, bool]], changed: list[int]) -> list[int]:
        """Of a page read from the start, the changed rows less those the state does not
        know but the destination already holds as they are (a new sync onto a loaded
        table, a lost state), counted skipped as the record path would after comparing
        each."""
        unknown = [i for i in changed if keys[i] not in known]
        if not unknown or not self.dest_exists or self.op == "delete":
            return changed
        held = self._held_as_they_are(data, unknown, keys, fps, known)
        return changed if held is None else [i for i in changed if i not in held]

    def _held_as_they_are(self, data: pa.Table, rows: list[int], keys: list[str], fps: list[str],
              known: dict[str, tuple[str, bool]]) -> set[int] | None:
        """Of these rows of a page, those the destination holds as they are, found by the
        destination itself (`Endpoint.differing`), their state fingerprints set right
        where they were not; None where it cannot tell."""
        whole = len(rows) == data.num_rows
        return self._held_given(self._differing(data if whole else data.take(rows)), rows,
                                keys, fps, known)

    def _differing(self, data: pa.Table) -> list[int] | None:
        """`Endpoint.differing` of these rows, in a transaction of its own (rolled back)."""
        with self.dest.transaction(rollback=True) as conn:
            return self.dest.differing(conn, self.key, data)

    def _held_given(self, differ: list[int] | None, rows: list[int], keys: list[str],
                    fps: list[str], known: dict[str, tuple[str, bool]]) -> set[int] | None:
        """`_held_as_they_are` once the destination has said which rows differ."""
        if differ is None:
            return None
        held = set(rows) - {rows[i] for i in differ}
        repaired = [(keys[i], fps[i], known.get(keys[i], ("", False))[1]) for i in sorted(held)
                    if known.get(keys[i], ("",))[0] != fps[i]]
        if repaired and not self.options.dry_run:
            with self.state_host.transaction() as sconn:
                self.state.save_records(sconn, repaired, set(known))
        return held

    def _write_rest(self, page: pa.Table, rows: list[int], request: ReadRequest) -> None:
        """These rows of an Arrow page through the record path, the rest counted already;
        the page's cursor moves with them (or alone, where none is left)."""
        if rows:
            self._record_page(columnar.rows(page.take(rows)), request,
                              cursor=self._page_cursor(page, request))
        elif self._page_cursors(request):
            self._write_with_policy([], self._page_cursor(page, request))

    def _refreshed_page(self, page: pa.Table, data: pa.Table, keys: list[str],
                        fps: list[str], known: dict[str, tuple[str, bool]],
                        request: ReadRequest, reached: int) -> bool:
        """A full refresh's page, compared with the destination by the destination itself:
        the records it holds as they are are skipped, their state fingerprints set right
        where they were not; only the rest take the record path. Where a compare can run
        ahead, it runs while the next page is read, and its outcome is settled (in page
        order) before anything else of that page is done: True then."""
        self._settle_compare()
        compare = _Compare(page, keys, fps, known, request, reached)
        if self._compare_pool is None:
            self._settled(compare, self._differing(data))
            return False
        compare.future = self._compare_pool.submit(self._differing, data)
        self._compare_pending = compare
        return True

    def _settle_compare(self) -> None:
        """The outcome of the compare running ahead, if any: counts, writes, progress."""
        compare, self._compare_pending = self._compare_pending, None
        if compare is not None and compare.future is not None:
            self._settled(compare, compare.future.result())
            self._report(compare.reached)

    def _settled(self, compare: _Compare, differ: list[int] | None) -> None:
        page, request = compare.page, compare.request
        rows = list(range(page.num_rows))
        held = self._held_given(differ, rows, compare.keys, compare.fps, compare.known)
        if held is None:
            self._record_page(columnar.rows(page), request)
            return
        if held:
            self._count(Outcome(skipped=len(held)))
        self._write_rest(page, [i for i in rows if i not in held], request)

    def _page_cursor(self, page: pa.Table, request: ReadRequest) -> Any:
        if not self._page_cursors(request) or not page.num_rows:
            return None
        return page.column(CURSOR_COLUMN)[page.num_rows - 1].as_py()

    def _record_page(self, rows: Sequence[Record], request: ReadRequest,
                     cursor: Any = None) -> None:
        items = self._prepare(rows, request)
        self._flush_failures_alone()  # before the write: a crash keeps them
        last_cursor = cursor if cursor is not None else (
            rows[-1].get(CURSOR_COLUMN) if self._page_cursors(request) and rows else None)
        self._write_with_policy(items, last_cursor)

    def _pages(self, request: ReadRequest, keys_only: bool = False) -> Iterator[Any]:
        """The source's pages: Arrow tables from its fast lane where the mapping is column
        operations (`arrow_mapping`) and no validation rule needs the records (or only keys
        are read), else records, with the filter and shard applied here where the source cannot."""
        lane = not self.options.dry_run and (
            keys_only or (self.mapper.columnar and self.validator.empty))
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

    def _report(self, read: int) -> None:
        if self.options.progress:
            self.options.progress(Progress(self.config.name, read, None, self.result))
        self.check_cancelled()

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
                    self._flush_failures_alone()
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

    def _advanced(self, cursor: Any) -> None:
        if cursor is not None:
            self.result.cursor = cursor
