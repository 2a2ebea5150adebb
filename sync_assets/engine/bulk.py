"""The bulk lane of first loads: pages written straight from Arrow where the destination takes
Arrow writes, keyed and fingerprinted by column, settled in page order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..connectors.base import (
    BatchRefused,
    TransientError,
)
from . import columnar


@dataclass
class Bulk:
    data: pa.Table  # renamed to the destination's columns
    keys: list[str]
    fingerprints: list[str]


class BulkLane:
    """First-load pages written from Arrow (SyncRun)."""

    def _bulk_writers(self) -> int:
        """Concurrent writers for first-load pages written straight from Arrow (0: none).
        PostgreSQL takes two COPYs at once nearly twice as fast as one after the other
        (each backend maintains the key indexes on its own core); SQLite takes one writer."""
        if not (self.bulk_load and self.mapper.columnar
                and not self.state_apart and not self.append
                and not self.config.effective_audit.trackChanges
                and self.dest.capabilities.arrow_writes):
            return 0
        return 1 if self.dest.capabilities.concurrent_writers <= 1 else 2

    def _bulk_prepare(self, page: pa.Table) -> Bulk | None:
        """A first-load page renamed, keyed and fingerprinted by column; None when a key is
        missing or repeated (the record path reports those)."""
        data = self.mapper.map_arrow(page)
        if data is None:
            return None
        targets = data.column_names
        if any(data.column(k).null_count for k in self.key):
            return None
        keys = columnar.record_keys(data, self.key)
        if len(set(keys)) != len(keys):
            return None
        return Bulk(data, keys, columnar.fingerprints(data, targets))

    def _bulk_write(self, bulk: Bulk, cursor: Any = None) -> bool:
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

    def _bulk_done(self, bulk: Bulk, cursor: Any, *, cursor_saved: bool = False) -> None:
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
            bucket.extend(columnar.rows(bulk.data.slice(0, room)))
