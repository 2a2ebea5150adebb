"""What a run would do, without writing: the same code path as a run, rolled back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..connectors.base import Record
from ..project import Project
from ..spec import SyncExecutionResult
from .common import RunOptions
from .runner import make_run


@dataclass(frozen=True)
class SyncPlan:
    sync_name: str
    result: SyncExecutionResult  # the counts a run would report now
    samples: dict[str, list[Record]]  # a few records per action: insert, update, delete

    @property
    def stats(self) -> dict[str, int]:
        return self.result.to_spec().get("stats", {})


def plan(project: Project, sync_name: str, full_refresh: bool = False, **options: Any) -> SyncPlan:
    """Inserted, updated, deleted, skipped and errored counts with samples; nothing is written."""
    # A plan waits for nothing: its writes roll back, and waiting retry.backoffMs between
    # attempts would only delay the answer (a caller may still pass its own `sleep`).
    options.setdefault("sleep", _no_wait)
    sync_run = make_run(
        project, sync_name, RunOptions(full_refresh=full_refresh, dry_run=True, **options)
    )
    result = sync_run.execute()
    return SyncPlan(sync_name, result, sync_run.samples)


def _no_wait(_seconds: float) -> None:
    return None
