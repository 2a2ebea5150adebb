"""Mirror deletes of `operation: sync`: every source key read into the run's own temporary
table, the records this sync created and the source no longer holds deleted, under the
mass-delete guard."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from ..connectors.base import (
    ReadRequest,
    Record,
)
from . import columnar
from .common import RunFailed
from .records import record_key


class Mirror:
    """Mirror deletes (SyncRun)."""

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
