"""SyncExecutionResult: what one run of a sync did, in the protocol's shape."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Strict
from pydantic_core import PydanticCustomError

from .types import NotNull, Number, OptStr, SafeInt, SpecModel, StrList

SyncExecutionStatus = Literal["pending", "running", "completed", "partial", "failed", "cancelled"]

# zod 4.4's `z.string().datetime()`, the version whose JSON Schema ships with spec 16.1.0:
# a real calendar date (leap years included), UTC `Z` only, seconds and fraction optional.
_DATETIME = re.compile(
    r"(?:(?:\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29"
    r"|\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
    r"|(?:02)-(?:0[1-9]|1\d|2[0-8])))"
    r"T(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?Z",
    re.ASCII,
)


def _utc_datetime(value: str) -> str:
    if not _DATETIME.fullmatch(value):
        raise PydanticCustomError(
            "datetime_utc",
            "must be an ISO-8601 UTC time ending in Z, like 2024-01-31T12:00:00Z",
        )
    return value


UtcDateTime = Annotated[str, Strict(), AfterValidator(_utc_datetime)]
Counter = SafeInt()


class SyncStats(SpecModel):
    recordsProcessed: Counter = 0  # type: ignore[valid-type]
    recordsInserted: Counter = 0  # type: ignore[valid-type]
    recordsUpdated: Counter = 0  # type: ignore[valid-type]
    recordsDeleted: Counter = 0  # type: ignore[valid-type]
    recordsSkipped: Counter = 0  # type: ignore[valid-type]
    recordsErrored: Counter = 0  # type: ignore[valid-type]
    conflictsDetected: Counter = 0  # type: ignore[valid-type]
    conflictsResolved: Counter = 0  # type: ignore[valid-type]


class SyncErrorItem(SpecModel):
    recordId: OptStr = None
    field: OptStr = None
    message: Annotated[str, Strict()]
    code: OptStr = None


class SyncExecutionResult(SpecModel):
    id: Annotated[str, Strict()]
    syncName: Annotated[str, Strict()]
    status: SyncExecutionStatus
    startedAt: UtcDateTime
    completedAt: Annotated[UtcDateTime | None, NotNull] = None
    durationMs: Annotated[Number | None, NotNull] = None
    stats: Annotated[SyncStats | None, NotNull] = None
    errors: Annotated[list[SyncErrorItem] | None, NotNull] = None
    logs: StrList = None
