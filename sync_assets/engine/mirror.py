"""Mirror deletes of `operation: sync`: the records this sync created and the source no
longer holds (or no longer lets through its filter), deleted under the mass-delete guard.
They are found one of two ways: from the deletes the source reports since the run's cursor
(`Endpoint.read_deletes`) plus the changed records that left the filter, before the run
reads; or, where the source reports none, by every source key read into the run's own
temporary table after it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from .. import filters as objectql
from ..connectors.base import (
    ReadRequest,
    Record,
)
from ..spec.values import shown_cursor
from . import columnar
from .common import RunFailed
from .records import record_key


def _records(n: int) -> str:
    return f"{n} record{'' if n == 1 else 's'}"


class Mirror:
    """Mirror deletes (SyncRun)."""

    def _all_source_keys(self, conn: Any) -> None:
        """Every source key, now, into the run's table of seen keys: a mirror compares the
        whole source with what it created, whatever the run itself read."""
        request = self._request(None)
        renamed = self.mapper.plain_sources
        direct = all(k in renamed for k in self.key)
        # Keys that are plain renames are read alone; others need the whole mapping.
        columns = ([renamed[k] for k in self.key] + self.source_id
                   + self._filtered_here(request.filter) if direct else request.columns)
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
            rows = page if isinstance(page, list) else columnar.rows(page)
            keys = []
            for row in rows:
                key = self._key_of(row, direct)
                if key is None:
                    self.key_unknown += 1
                else:
                    keys.append(key)
            self.state.mark_seen(conn, keys)

    def _key_of(self, row: Record, direct: bool) -> str | None:
        """The destination match key of a source record (None: it has none), from its
        renamed fields where the key is a plain rename (`direct`), else from its mapping."""
        if direct:
            renamed = self.mapper.plain_sources
            values = tuple(row.get(renamed[k]) for k in self.key)
        else:
            mapped, _ = self.mapper.map(row)
            values = tuple(mapped.get(k) for k in self.key)
        return None if any(v is None for v in values) else record_key(values)

    def _reported_deletes(self, cursor: Any) -> bool:
        """Mirror deletes from what the source reports deleted since the run's cursor, and
        from the records changed since then that left the filter; run before the read, so
        that a record deleted and created again under its key ends written. True when done
        this way; False when the source cannot report its deletes for this window (or a
        reported record has no match key), and `_mirror_deletes` reads every key instead."""
        if cursor is None or not self.dest_exists:
            return False
        request = self._request(cursor)
        ctf = request.cursor_field
        if ctf is None:  # a full read: the mirror compares every key anyway
            return False
        since = ReadRequest(**{**request.__dict__, "filter": None, "upper": None,
                               "shard": None, "order_by": [ctf, *self.source_id]})
        pages = self.source.read_deletes(since)
        if pages is None:
            return False
        keys = self._keys_of(pages)
        if keys is None:
            return False
        reported = len(keys)
        left = 0
        if request.filter is not None:
            outside = self._keys_of(self._left_filter(request))
            if outside is None:
                return False
            left = len(outside)
            keys.extend(outside)
        with self.state_host.transaction(rollback=True) as conn:
            tracked = self.state.count(conn, created_only=True)
            known = self.state.fingerprints(conn, list(dict.fromkeys(keys)))
        planned = sorted(k for k, (_fp, created) in known.items() if created)
        also = (f"; {_records(left)} changed since then {'is' if left == 1 else 'are'} "
                "outside the filter" if request.filter is not None else "")
        self.result.log("info", f"{self.source.display} reports {_records(reported)} deleted "
                                f"since {shown_cursor(cursor)}{also}; {len(planned)} of them "
                                f"{'was' if len(planned) == 1 else 'were'} created by this sync")
        self._delete_planned(planned, tracked)
        return True

    def _left_filter(self, request: ReadRequest) -> Iterator[list[Record]]:
        """Records changed since the cursor (and those without a change value, read every
        run) that the filter no longer lets through, read without the filter."""
        assert request.filter is not None
        columns = list(dict.fromkeys([*request.columns, *self._filter_fields(request.filter)]))
        changed = ReadRequest(**{**request.__dict__, "filter": None, "upper": None,
                                 "shard": None, "columns": columns})
        nulls = ReadRequest(**{**changed.__dict__, "cursor_field": None, "lower": None,
                               "order_by": self.source_id, "null_cursor": request.cursor_field})
        for part in (changed, nulls):
            for page in self.source.read_batches(part):
                yield [r for r in page if not objectql.evaluate_filter(request.filter, r)]

    def _keys_of(self, pages: Iterable[list[Record]]) -> list[str] | None:
        """The destination match keys of source records; None if one has none."""
        direct = all(k in self.mapper.plain_sources for k in self.key)
        keys: list[str] = []
        for page in pages:
            for row in page:
                key = self._key_of(row, direct)
                if key is None:
                    self.result.log("warn", f"a record {self.source.display} reports deleted "
                                            "has no match key: every source key is read to "
                                            "find what left it")
                    return None
                keys.append(key)
        return keys

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
        self._delete_planned(planned, tracked)

    def _delete_planned(self, planned: list[str], tracked: int) -> None:
        """Delete these keys' records (created by this sync, gone from the source) under the
        mass-delete guard, 500 a transaction, each with its records' state."""
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
            if self._deferred is None:
                with self._batch_transaction() as (conn, sconn):
                    before, deleted = self._delete_keys(conn, values)
                    self._forget_deleted(sconn, chunk, before)
                self._count_deleted(chunk, before, deleted)
            else:  # forgotten and counted once the run's publish shows the deletes
                with self._transaction() as conn:
                    before, deleted = self._delete_keys(conn, values)
                self._deferred.append(
                    lambda sconn, c=chunk, b=before: self._forget_deleted(sconn, c, b))
                self._deferred.append(
                    lambda _sconn, c=chunk, b=before, d=deleted: self._count_deleted(c, b, d))
            deleted_total += deleted
        self.result.log("info", f"mirror deleted {deleted_total} records that left the source")

    def _delete_keys(self, conn: Any, values: list[tuple[Any, ...]]
                     ) -> tuple[dict[str, Record], int]:
        """Delete these keys' records: what they held before, and how many were deleted."""
        before = {record_key([r[k] for k in self.key]): r for r in
                  self.dest.lookup(conn, self.key, values, self.mapper.targets)}
        deleted = self.dest.write(conn, "delete", self.key, [
            dict(zip(self.key, v, strict=True)) for v in values]).written
        return before, deleted

    def _forget_deleted(self, sconn: Any, chunk: list[str], before: dict[str, Record]) -> None:
        self.state.forget(sconn, chunk)
        if self.config.effective_audit.trackChanges:
            self.state.log_changes(sconn, self.result.run_id, [
                ("delete", k, before.get(k), None) for k in chunk])

    def _count_deleted(self, chunk: list[str], before: dict[str, Record], deleted: int) -> None:
        self.result.deleted += deleted
        self.result.skipped += len(chunk) - deleted  # already gone from the destination
        bucket = self.samples.setdefault("delete", [])
        for row in list(before.values())[: self.options.sample_size - len(bucket)]:
            bucket.append(row)
