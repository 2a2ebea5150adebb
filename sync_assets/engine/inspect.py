"""What a sync's state holds (`sync-assets state show`, `changes`): where it lives, the
cursor, how many records it has synced, the failed records waiting to be retried by the next
run, the change log; and forgetting all of it (`state reset`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..project import Project
from ..state import FailedRecord
from .common import open_state
from .direction import flows, is_reversed
from .endpoints import open_endpoint


@dataclass(frozen=True)
class SyncState:
    sync_name: str
    where: str  # the state database, credentials hidden
    cursor: Any
    cursor_moved_at: datetime | None  # when a run last committed the cursor (UTC)
    records: int  # records synced (pairs, for a two-way sync)
    failed: list[FailedRecord]
    open_conflicts: int


def _open(project: Project, sync_name: str, *, create: bool = False) -> tuple[Any, Any, bool]:
    config = project.sync(sync_name).config
    two_way = config.direction == "bidirectional"
    reversed_flow = not two_way and is_reversed(flows(config)[0])
    writes = config.source if reversed_flow else config.destination
    name = f"{config.name}__reverse" if reversed_flow else config.name
    store, host, _apart = open_state(project, open_endpoint(project, writes), name,
                                     create=create)
    return store, host, two_way


def reset_state(project: Project, sync_name: str) -> SyncState:
    """Forget what the sync has synced: cursor, records (pairs), failed records; the next
    run reads everything again and compares it with the destination. The change log stays.
    Returns the state as it was."""
    before = sync_state(project, sync_name)
    store, host, _two_way = _open(project, sync_name)
    with host.transaction() as conn:
        store.ensure(conn)
        store.forget_everything(conn)
    return before


def change_log(project: Project, sync_name: str, *, since: datetime | None = None,
               key: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest `limit` entries of the sync's change log (audit.trackChanges), oldest
    first, from `since` on (UTC) and for one record key if given."""
    store, host, _two_way = _open(project, sync_name)
    with host.transaction(rollback=True) as conn:
        store.ensure(conn)
        entries = store.changes_of(conn)
    if since is not None:
        entries = [e for e in entries if e["at"] >= since]
    if key is not None:
        entries = [e for e in entries if e["record_key"] in (key, f"[{json.dumps(key)}]")]
    return entries[-limit:] if limit else entries


def sync_state(project: Project, sync_name: str) -> SyncState:
    """The state of one sync as its next run will find it. Nothing is created: a sync
    that never ran shows an empty state."""
    config = project.sync(sync_name).config
    store, host, two_way = _open(project, sync_name)
    with host.transaction(rollback=True) as conn:
        store.ensure(conn)  # rolled back: a missing table reads as empty
        if two_way:
            pairs = store.load_pairs(conn)
            records, conflicts = len(pairs), store.open_conflicts(conn)
            failed: list[FailedRecord] = []
        else:
            records, conflicts = store.count(conn), 0
            failed = list(store.failed_records(conn).values())
        cursor = store.load_cursor(conn)
        moved = store.cursor_moved_at(conn)
    return SyncState(config.name, host.display, cursor, moved, records, failed, conflicts)
