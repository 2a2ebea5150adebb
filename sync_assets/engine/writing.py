"""Writing a batch: what the destination already holds (state fingerprints, lookups), what to
insert, update, delete or skip, per-record refusals, state committed with the data (or around
it, with state apart), under retry and onSyncError."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..connectors.base import (
    BatchRefused,
    Record,
    Refusal,
    TransientError,
)
from .common import RunCancelled
from .deciding import Item
from .records import record_key, same_values


@dataclass
class Outcome:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    changes: list[tuple[str, str, Any, Any]] = field(default_factory=list)
    samples: list[tuple[str, Record]] = field(default_factory=list)
    succeeded: list[str] = field(default_factory=list)  # record ids that failed before


class Writing:
    """The write side of SyncRun."""

    #: state steps (and counts) waiting for the destination's publish at the run's end,
    #: or None where each transaction is visible when it commits
    _deferred: list[Callable[[Any], None]] | None = None

    @contextmanager
    def _published_once(self) -> Iterator[None]:
        """The run's writes, for a destination that publishes them together at its end
        (`publishes_per_run`, with state apart): each batch's intent records commit as
        usual, and its remaining state and counts only once `end_run` has made the data
        visible, so a run stopped before that leaves what the next run re-checks and
        writes. A cancelled run publishes the batches it finished; a failed one none."""
        if (not self.dest.capabilities.publishes_per_run or not self.state_apart
                or self.options.dry_run):
            yield
            return
        self.dest.begin_run(self.result.run_id)
        self._deferred = []
        try:
            yield
        except RunCancelled:
            self._publish_run()
            raise
        except BaseException:
            self._deferred = None
            self.dest.end_run(commit=False)
            raise
        self._publish_run()

    def _publish_run(self) -> None:
        """Publish the run's writes, a passing fault retried as a batch's would be, then
        save the state and counts that waited for it."""
        steps, self._deferred = self._deferred or [], None
        retry = self.config.effective_retry
        tries = 0
        while True:
            try:
                self.dest.end_run(commit=True)
                break
            except TransientError as exc:
                if tries >= retry.maxAttempts:
                    self.dest.end_run(commit=False)
                    raise
                tries += 1
                wait_ms = retry.backoffMs
                if exc.retry_after is not None:
                    wait_ms = max(wait_ms, round(exc.retry_after * 1000))
                self.result.log("warn", f"publishing the run's writes failed ({exc}); retry "
                                        f"{tries} of {retry.maxAttempts} in {wait_ms} ms")
                self.options.sleep(wait_ms / 1000)
            except BaseException:
                self.dest.end_run(commit=False)
                raise
        if steps:
            with self.state_host.transaction() as sconn:
                for step in steps:
                    step(sconn)

    def _after_publish(self, step: Callable[[Any], None]) -> bool:
        """Keep `step` (given the state connection) for after the run's publish; False
        where writes are visible when they commit, and the caller does it now."""
        if self._deferred is None:
            return False
        self._deferred.append(step)
        return True

    def _write_with_policy(self, items: list[Item], cursor: Any) -> None:
        outcome = self.write_with_policy(
            lambda: self._write(items, cursor), size=len(items),
            one_by_one=lambda: self._write_one_by_one(items, cursor),
            refuse_one=lambda message: self._refuse(items[0], message),
            failure=f"writing to {self.dest.display} failed")
        if outcome is not None:
            self._count(outcome)

    def _write_one_by_one(self, items: list[Item], cursor: Any) -> None:
        for i, item in enumerate(items):
            last = cursor if i == len(items) - 1 else None
            try:
                self._count(self._write([item], last))
            except (BatchRefused, TransientError) as exc:
                self._refuse(item, str(exc))

    def _refuse(self, item: Item, message: str, code: str = "WRITE_ERROR") -> None:
        with self._lock:  # batch writers may run in threads (parallelBatches)
            self.result.errored += 1
            self.result.error(f"{self.dest.display} refused the record: {message}",
                              record_id=item.record_id, code=code)
        self._failed(item.record_id, item.source_values, code,
                     f"{self.dest.display} refused the record: {message}")

    def _count(self, outcome: Outcome) -> None:
        if self._after_publish(lambda _sconn: self._count(outcome)):
            return
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
                    known_keys: set[str], deletes: list[Item], out: Outcome,
                    cursor: Any) -> None:
        if deletes:
            self.state.forget(sconn, [i.key for i in deletes])
        self.state.save_records(sconn, states, known_keys)
        if out.changes:
            self.state.log_changes(sconn, self.result.run_id, out.changes)
        self._flush_failures(sconn, out.succeeded)
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

    def _written(self, conn: Any, operation: Any, todo: list[Any], out: Outcome,
                 states: list[tuple[str, str, bool]]) -> list[Any]:
        """Write inserts (items) or updates ((item, current) pairs) in the destination's
        batch size; what it refuses is errored with its code and forgotten by the state."""
        items = [t if isinstance(t, Item) else t[0] for t in todo]
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

    def _kept(self, todo: list[Any], refused: list[Refusal], out: Outcome,
              states: list[tuple[str, str, bool]] | None = None) -> list[Any]:
        if not refused:
            return todo
        gone = {r.index for r in refused}
        for r in refused:
            item = todo[r.index] if isinstance(todo[r.index], Item) else todo[r.index][0]
            self._refuse(item, f"{r.code}: {r.message}" if r.code else r.message,
                         code="WRITE_ERROR")
            if states is not None:
                states[:] = [s for s in states if s[0] != item.key]
        return [t for i, t in enumerate(todo) if i not in gone]

    def _write(self, items: list[Item], cursor: Any) -> Outcome:
        """Write one batch. With state beside the data, rows, fingerprints and cursor commit
        in one transaction. With state apart, the keys about to be created are committed as
        created (with no fingerprint) before the data, and the rest of the state after it:
        a crash in between leaves records the next run re-checks, never orphans."""
        out = Outcome()
        targets = self.mapper.targets
        with self._transaction() as conn:
            if self.options.dry_run and not self.state_apart:
                self.state.ensure(conn)
            self._ensure_table(conn)
            with self._state_conn(conn) as sconn:
                # with state apart a retried batch may have committed its intent already
                known = ({} if self.bulk_load and not self.state_apart else
                         self.state.fingerprints(sconn, [i.key for i in items]))
            todo: list[Item] = []
            for it in items:
                prev = known.get(it.key)
                if prev and prev[0] == it.fp and not self.options.full_refresh:
                    if not it.at_boundary:  # a boundary re-read was counted by the last run
                        out.skipped += 1
                    continue
                todo.append(it)
            existing: dict[str, Record] = {}
            if todo and not self.append and self.dest_exists and (not self.bulk_load or known):
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
                if self.op == "insert" or same_values(cur, it.mapped, targets,
                                                       self.dest_kinds):
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
            if self.failed_before:
                out.succeeded = [i.record_id for i in items if i.record_id in self.failed_before]
            if self.config.effective_audit.trackChanges:
                out.changes = (
                    [("insert", i.key, None, i.mapped) for i in inserts]
                    + [("update", i.key, {k: c.get(k) for k in targets}, i.mapped)
                       for i, c in updates]
                    + [("delete", i.key, i.mapped, None) for i in deletes]
                )
            if not self.state_apart:
                self._save_state(conn, states, known_keys, deletes, out, cursor)
        if self.state_apart and not self._after_publish(
                lambda sconn: self._save_state(sconn, states, known_keys, deletes, out, cursor)):
            with self._state_conn(conn) as sconn:
                self._save_state(sconn, states, known_keys, deletes, out, cursor)
        if not self.options.dry_run:
            self.dest_exists = True  # created (if it was missing) and committed
        return out
