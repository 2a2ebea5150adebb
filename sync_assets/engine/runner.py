"""Choosing and starting the runner of a sync: SyncRun for one-way flows, TwoWayRun for
bidirectional ones."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..project import Project
from ..spec import SyncExecutionResult
from .common import RunOptions
from .oneway import SyncRun
from .twoway import TwoWayRun


def make_run(project: Project, sync_name: str, options: RunOptions | None = None) -> Any:
    """The runner for a sync: SyncRun for one-way flows, TwoWayRun for bidirectional ones.
    Both have `execute() -> SyncExecutionResult`, `result` and `samples`."""
    if project.sync(sync_name).config.direction == "bidirectional":
        return TwoWayRun(project, sync_name, options)
    return SyncRun(project, sync_name, options)


def run(project: Project, sync_name: str, full_refresh: bool = False,
        **options: Any) -> SyncExecutionResult:
    """Run one sync and return its SyncExecutionResult (failed runs return one too)."""
    return make_run(project, sync_name, RunOptions(full_refresh=full_refresh, **options)).execute()


def run_many(project: Project, names: Iterable[str], **options: Any) -> list[SyncExecutionResult]:
    return [run(project, n, **options) for n in names]

