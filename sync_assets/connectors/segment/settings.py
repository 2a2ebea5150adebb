"""Settings of the Segment connector (`type: segment`): a source's write key (a secret, given
as ${VAR}), the Tracking API's base URL (overridable for the EU region, a proxy or tests),
and what it can be asked to do.

Segment is a destination only: an `identify` call creates or merges a profile's traits by
`userId`, so `upsert` is the one operation it can honour. `SEGMENT_OPERATIONS` and
`segment_sync_problems` say so for the load-time check of a sync (see the report of #12: the
project needs a hook on ConnectorType to call it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from ..base import FIELD_KINDS, ConnectorSettingsBase, SyncUse

#: the sync operations Segment can be written with: identify merges traits into the profile
#: of a userId, whether it exists or not; it can neither only-insert, only-update nor delete
SEGMENT_OPERATIONS = frozenset({"upsert"})

#: the documented limits of POST /v1/batch (HTTP Tracking API reference, "Errors" and
#: "Batch"): 500 KB a request, 32 KB an event, 2,500 events a request
MAX_BATCH_BYTES = 500_000
MAX_EVENT_BYTES = 32_000
MAX_BATCH_EVENTS = 2_500


class SegmentSettings(ConnectorSettingsBase):
    """A Segment source (HTTP API) written to through its Tracking API."""

    type: Literal["segment"]
    write_key: SecretStr = Field(alias="writeKey",
                                 description="the source's write key, e.g. ${SEGMENT_WRITE_KEY}")
    base_url: str = Field(default="https://api.segment.io", alias="baseUrl",
                          description="the Tracking API (https://events.eu1.segmentapis.com "
                                      "for the EU region)")
    traits: dict[str, str] | None = Field(
        default=None, description="trait name -> portable kind, to check mappings against "
                                  "(without it any mapped name is a trait)")
    timeout: float = Field(default=30.0, gt=0, description="seconds per HTTP call")
    max_retries: int = Field(default=6, ge=0, le=20, alias="maxRetries",
                             description="retries of 429/5xx/timeouts per call")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL of Segment's Tracking API")
        return value.rstrip("/")

    @field_validator("traits")
    @classmethod
    def _kinds(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, kind in (value or {}).items():
            if kind not in FIELD_KINDS:
                raise ValueError(f"trait {name}: unknown kind '{kind}'; kinds: "
                                 f"{', '.join(FIELD_KINDS)}")
        return value


def segment_sync_problems(side: str, operation: str, direction: str,
                          match_key: Any) -> list[tuple[tuple[str, ...], str]]:
    """What a sync cannot ask of Segment, as (path, message) for the load-time check: it is
    read by nothing, and written only by upsert on a one-field key (the userId)."""
    found: list[tuple[tuple[str, ...], str]] = []
    if side == "source" or direction == "bidirectional":
        found.append(((side,), "Segment cannot be read (the Tracking API only receives "
                               "calls): make it the destination of a push sync"))
        return found
    if operation not in SEGMENT_OPERATIONS:
        found.append((("destination", "operation"),
                      f"Segment cannot {operation}: an identify call creates or merges a "
                      "profile's traits by userId, so only upsert can be honoured"))
    keys = list(match_key or [])
    if len(keys) != 1:
        found.append((("destination", "matchKey"),
                      "Segment needs exactly one matchKey field: its value is the userId"))
    return found



def check_use(settings: SegmentSettings, use: SyncUse) -> list[tuple[tuple[str, ...], str]]:
    """`ConnectorType.check_use`: Segment is written by upsert on a one-field key, never
    read."""
    if use.role != "written":
        return [((use.side,), "Segment cannot be read (the Tracking API only receives calls): "
                              "make it the destination of a push sync")]
    return segment_sync_problems("destination", use.operation, "push", list(use.match_key))
