"""Segment as a destination: each record becomes an `identify` call (userId from the match
key, traits from the mapping), sent through POST /v1/batch of the HTTP Tracking API in as few
calls as its limits allow (2,500 events, 500 KB a request, 32 KB an event).

Segment cannot be read and cannot look a profile up, so the engine's fingerprints in the
project's state database decide what changed: an unchanged record is skipped before any
lookup, and `lookup` finds nothing, so a new or changed record is written as an "insert",
which is an identify, i.e. an upsert by userId. Counts therefore say `inserted` for every
profile sent (new or changed) and `skipped` for the unchanged ones; `updated` stays 0.

Each event carries a messageId derived from its content, so a batch sent again after a crash
or a lost answer is the same events, which Segment deduplicates. What the API refuses per
event is refused here before sending, with Segment's own error codes: no userId
(`no_user_anon_id`), an event over 32 KB (`payload_too_large`). A 400 for the whole batch is
a BatchRefused with Segment's message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from ..base import (
    ApiUsage,
    BatchRefused,
    Capabilities,
    ConnectorError,
    Description,
    Endpoint,
    FieldInfo,
    Operation,
    ReadRequest,
    Record,
    Refusal,
    WriteResult,
)
from ..web import ApiClient, ApiError, BasicAuth
from .settings import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, SegmentSettings

_BATCH_FRAME = len(b'{"batch":[]}')


def _plain(value: Any) -> Any:
    """A value as JSON carries it (Segment traits are JSON)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is no JSON value")


def identify(user_id: str, traits: Record) -> dict[str, Any]:
    """The identify event of one profile; its messageId is a digest of its content."""
    body = json.dumps({"userId": user_id, "traits": traits}, default=_plain, sort_keys=True,
                      separators=(",", ":"))
    digest = hashlib.sha256(body.encode()).hexdigest()[:32]
    return {"type": "identify", "userId": user_id, "traits": json.loads(body)["traits"],
            "messageId": f"sync-assets-{digest}"}


def _size(event: dict[str, Any]) -> int:
    return len(json.dumps(event, separators=(",", ":")).encode())


def _segment_error(response: Any) -> tuple[str, str]:
    """(code, message) of a Segment error answer (`{"code"?, "message"?}` or plain text)."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:300]
    if isinstance(body, dict):
        return str(body.get("code") or ""), str(body.get("message") or body)[:500]
    return "", str(body)[:300]


class SegmentProfiles(Endpoint):
    """The profiles of one Segment source, written by identify calls."""

    capabilities = Capabilities(
        transactional=False, filter_pushdown=False, ordered_reads=False, shards=False,
        native_upsert=True, max_batch_size=MAX_BATCH_EVENTS, hosts_state=False,
        creates_resource=True, concurrent_writers=1, countable=False,
    )

    def __init__(self, settings: SegmentSettings, resource: str, display: str,
                 client: ApiClient | None = None) -> None:
        self.settings = settings
        self.resource = resource
        self.display = display or f"segment.{resource}"
        key = settings.write_key.get_secret_value()
        self.client = client or ApiClient(
            # the key is basic auth's user, which BasicAuth does not redact: named here
            settings.base_url, display=self.display, auth=BasicAuth(key, ""), secrets=[key],
            timeout=settings.timeout, max_retries=settings.max_retries,
            describe_error=_segment_error)

    # -- describe: traits need no schema --------------------------------------------------
    def describe(self, *, refresh: bool = False) -> Description:
        traits = self.settings.traits
        if traits is None:
            # any mapped name is a trait; "missing" makes the engine accept them all, and
            # create() below is then a no-op
            return Description(fields={}, exists=False)
        return Description(fields={n: FieldInfo(n, None, True, k) for n, k in traits.items()})

    def create(self, tx: Any, fields: Sequence[FieldInfo], key: Sequence[str]) -> None:
        """Nothing to create: Segment makes a trait the first time an identify names it."""

    def is_empty(self) -> bool:
        return False  # cannot tell: never assumed empty

    def count(self) -> int | None:
        return None  # never asked: not `countable` (Segment tells no profile count)

    # -- read: never ------------------------------------------------------------------------
    def _unreadable(self) -> ConnectorError:
        return ConnectorError(f"{self.display} cannot be read: Segment's Tracking API only "
                              "receives calls (make Segment the destination of a push sync)")

    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        raise self._unreadable()

    def lookup(self, tx: Any, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        """Nothing is found: Segment cannot be asked. The engine's fingerprints have already
        skipped the unchanged records, so what remains is sent (identify upserts)."""
        return []

    def change_token(self, filter: Any, cursor_field: str | None) -> Any:
        raise self._unreadable()

    # -- write --------------------------------------------------------------------------------
    def write(self, tx: Any, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        if operation not in ("insert", "upsert"):
            raise ConnectorError(
                f"{self.display} cannot {operation}: an identify call creates or merges a "
                "profile's traits by userId, so only upsert can be honoured")
        if len(key) != 1:
            raise ConnectorError(f"{self.display} needs exactly one matchKey field: its value "
                                 "is the userId")
        result = WriteResult()
        events: list[tuple[int, dict[str, Any], int]] = []
        for i, row in enumerate(rows):
            user_id = row.get(key[0])
            if user_id is None or str(user_id) == "":
                result.refused.append(Refusal(i, "no_user_anon_id",
                                              "the identify has no userId (the match key "
                                              f"{key[0]} is empty)"))
                continue
            event = identify(str(user_id), dict(row))
            size = _size(event)
            if size > MAX_EVENT_BYTES:
                result.refused.append(Refusal(i, "payload_too_large",
                                              f"the identify is {size} bytes; Segment takes "
                                              f"at most {MAX_EVENT_BYTES} an event"))
                continue
            events.append((i, event, size))
        for batch in self._batches(events):
            self._send([e for _, e, _ in batch])
            result.written += len(batch)
        return result

    @staticmethod
    def _batches(events: list[tuple[int, dict[str, Any], int]]
                 ) -> Iterator[list[tuple[int, dict[str, Any], int]]]:
        """Events packed into requests within 2,500 events and 500 KB."""
        batch: list[tuple[int, dict[str, Any], int]] = []
        used = _BATCH_FRAME
        for item in events:
            extra = item[2] + (1 if batch else 0)  # the comma between events
            if batch and (used + extra > MAX_BATCH_BYTES or len(batch) >= MAX_BATCH_EVENTS):
                yield batch
                batch, used, extra = [], _BATCH_FRAME, item[2]
            batch.append(item)
            used += extra
        if batch:
            yield batch

    def _send(self, events: list[dict[str, Any]]) -> None:
        body = json.dumps({"batch": events}, separators=(",", ":")).encode()
        try:
            self.client.request("POST", "/v1/batch", content=body,
                                headers={"Content-Type": "application/json"})
        except ApiError as exc:
            if exc.status in (401, 403):
                raise
            raise BatchRefused(str(exc)) from None

    def usage(self) -> ApiUsage | None:
        return self.client.usage()


def open_segment(settings: SegmentSettings, resource: str, display: str) -> SegmentProfiles:
    return SegmentProfiles(settings, resource, display)
