"""What a sync's state holds, read without writing (`sync-assets state show`): where it
lives, the cursor, how many records it has synced, and the failed records waiting to be
retried by the next run."""

from __future__ import annotations

from dataclasses import dataclass
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
    records: int  # records synced (pairs, for a two-way sync)
    failed: list[FailedRecord]
    open_conflicts: int


def sync_state(project: Project, sync_name: str) -> SyncState:
    """The state of one sync as its next run will find it. Nothing is created: a sync
    that never ran shows an empty state."""
    config = project.sync(sync_name).config
    two_way = config.direction == "bidirectional"
    reversed_flow = not two_way and is_reversed(flows(config)[0])
    writes = config.source if reversed_flow else config.destination
    name = f"{config.name}__reverse" if reversed_flow else config.name
    store, host, _apart = open_state(project, open_endpoint(project, writes), name,
                                     create=False)
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
    return SyncState(config.name, host.display, cursor, records, failed, conflicts)
