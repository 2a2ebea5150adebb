"""Building a SyncExecutionResult while a run goes: counters, errors, logs, times."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..spec import SyncExecutionResult

MAX_ERRORS = 100
_LEVELS = {"none": 0, "error": 1, "warn": 2, "info": 3, "debug": 4}


def utc_now() -> str:
    """UTC, millisecond precision, ending in Z (the only form the protocol accepts)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class ResultBuilder:
    run_id: str
    sync_name: str
    log_level: str = "info"
    started_at: str = field(default_factory=utc_now)
    _t0: float = field(default_factory=time.monotonic)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    errored: int = 0
    conflicts_detected: int = 0
    conflicts_resolved: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    error_count: int = 0
    logs: list[str] = field(default_factory=list)
    cursor: Any = None
    #: API calls by endpoint display name, for systems that meter them
    api_calls: dict[str, int] = field(default_factory=dict)

    @property
    def total_api_calls(self) -> int | None:
        return sum(self.api_calls.values()) if self.api_calls else None

    @property
    def processed(self) -> int:
        return self.inserted + self.updated + self.deleted + self.skipped + self.errored

    def error(self, message: str, *, record_id: str | None = None, field_name: str | None = None,
              code: str | None = None) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            item = {"message": message}
            if record_id is not None:
                item["recordId"] = record_id
            if field_name is not None:
                item["field"] = field_name
            if code is not None:
                item["code"] = code
            self.errors.append(item)

    def log(self, level: str, message: str) -> None:
        if _LEVELS[level] <= _LEVELS.get(self.log_level, 3) and level != "none":
            self.logs.append(f"{utc_now()} {level.upper()} {message}")

    def finish(self, status: str) -> SyncExecutionResult:
        if self.error_count > len(self.errors):
            self.log("warn", f"{self.error_count} errors in all; the first {MAX_ERRORS} are listed")
        return SyncExecutionResult.model_validate({
            "id": self.run_id,
            "syncName": self.sync_name,
            "status": status,
            "startedAt": self.started_at,
            "completedAt": utc_now(),
            "durationMs": int((time.monotonic() - self._t0) * 1000),
            "stats": {
                "recordsProcessed": self.processed,
                "recordsInserted": self.inserted,
                "recordsUpdated": self.updated,
                "recordsDeleted": self.deleted,
                "recordsSkipped": self.skipped,
                "recordsErrored": self.errored,
                "conflictsDetected": self.conflicts_detected,
                "conflictsResolved": self.conflicts_resolved,
            },
            "errors": self.errors,
            "logs": self.logs,
        })
