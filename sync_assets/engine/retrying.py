"""Failed records: a source record a run errored (a failed cast, a missing key, a write the
destination refused) is remembered in the sync's state, and every later run reads it again by
its source key until it succeeds or leaves the source, reporting it errored each time it
fails, the way Census and Hightouch retry rejected rows. An incremental cursor moves past a
failed record, so without this it would wait for the next full refresh.

Failures met while deciding a page are committed before the page is written; refusals commit
with the batch's own state. A duplicate match key is not retried: read again alone, the second
record would overwrite the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import filters as objectql
from ..connectors.base import ReadRequest
from ..state import FailedRecord

#: failures kept in memory before they are committed; past it a run stops remembering more
MAX_PENDING = 100_000


class Retrying:
    """The failed-records side of SyncRun."""

    failed_before: dict[str, FailedRecord]
    _pending_failures: dict[str, tuple[tuple[Any, ...], str | None, str]]
    _seen_failed: set[str]
    _failed_now: set[str]

    def _load_failures(self, conn: Any) -> None:
        self.failed_before = self.state.failed_records(conn)
        self._pending_failures = {}
        self._seen_failed = set()
        self._failed_now = set()

    def _failed(self, rid: str, source_values: Sequence[Any], code: str | None,
                message: str) -> None:
        """Remember that a record failed, to be committed at the next flush."""
        with self._lock:
            if len(self._pending_failures) < MAX_PENDING:
                self._pending_failures.setdefault(rid, (tuple(source_values), code, message))

    def _read_failed(self, rid: str) -> None:
        """A record that failed before was read again by this run."""
        if rid in self.failed_before:
            self._seen_failed.add(rid)

    def _flush_failures(self, sconn: Any, succeeded: Sequence[str] = ()) -> None:
        """Commit (in `sconn`'s transaction) the failures met since the last flush, and
        forget the earlier failures of records that have now been written."""
        if self.options.dry_run:
            return
        with self._lock:
            pending, self._pending_failures = self._pending_failures, {}
        done = [rid for rid in succeeded if rid in self.failed_before and rid not in pending]
        if done:
            self.state.clear_failed(sconn, done)
            for rid in done:
                self.failed_before.pop(rid, None)
        if pending:
            self._failed_now.update(pending)
            self.state.save_failed(sconn, [(rid, values, code, message)
                                            for rid, (values, code, message) in pending.items()])

    def _flush_failures_alone(self) -> None:
        if self.options.dry_run or not self._pending_failures:
            return
        with self.state_host.transaction() as sconn:
            self._flush_failures(sconn)

    def _settle_failures(self, request: ReadRequest) -> None:
        """After the run's read: a run that read every record (no cursor, or none yet) has
        met every failed record, so those that did not fail again are settled; an
        incremental run reads the failed records it did not meet again, by their keys."""
        self._flush_failures_alone()
        if request.cursor_field is None or request.lower is None:
            done = [rid for rid in self.failed_before if rid not in self._failed_now]
            if done and not self.options.dry_run and not self._after_publish(
                    lambda sconn: self.state.clear_failed(sconn, done)):
                with self.state_host.transaction() as sconn:
                    self.state.clear_failed(sconn, done)
            return
        self._retry_failed(request)

    def _retry_failed(self, request: ReadRequest) -> None:
        """Read again, by their source keys, the records that failed in earlier runs and
        that this run has not read: written now if they succeed, errored again if not, and
        forgotten if the source no longer holds them (or they left the filter)."""
        waiting = [f for rid, f in self.failed_before.items() if rid not in self._seen_failed]
        if not waiting:
            return
        n = len(waiting)
        self.result.log("info", f"retrying {n} record{'' if n == 1 else 's'} that failed in "
                                "earlier runs")
        retry = ReadRequest(**{**request.__dict__, "cursor_field": None, "lower": None,
                               "upper": None, "null_cursor": None})
        size = max(1, min(request.batch_size, 500))
        for start in range(0, len(waiting), size):
            self.check_cancelled()
            chunk = waiting[start : start + size]
            with self.source.transaction(rollback=True) as conn:
                rows = self.source.lookup(conn, list(self.source_id),
                                          [f.source_key for f in chunk], request.columns)
            if request.filter is not None:
                rows = [r for r in rows if objectql.evaluate_filter(request.filter, r)]
            found = {self._record_id(r) for r in rows}
            gone = [f.record_id for f in chunk if f.record_id not in found]
            if gone and not self.options.dry_run:
                with self.state_host.transaction() as sconn:
                    self.state.clear_failed(sconn, gone)
            if rows:
                self._record_page(rows, retry)
        self._flush_failures_alone()
