"""A stateful fake of Segment's HTTP Tracking API batch endpoint (POST /v1/batch), served on
127.0.0.1 and checked against tests/apis/segment.openapi.json (written from Segment's public
reference, cited there per operation).

State: profiles by userId, each identify merging its traits into the profile (Segment's
identify semantics), for the source whose write key the fake was given; events sent with
another key are answered 200 and dropped, as Segment does (they never show up). Every
event received is also counted by messageId (`received`), so a test can tell a record sent
twice from one sent once.

Limits, as documented: a batch request over 500 KB or holding an event over 32 KB is
answered 400 and nothing of it is kept; over 2,500 events is answered 200 with the events
rejected (and recorded as a violation: the connector must never send one).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request

from fake_api import FakeApi, OpenApiDescription

SPEC = Path(__file__).parent / "apis" / "segment.openapi.json"
MAX_BATCH_BYTES = 500 * 1024
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_EVENTS = 2_500


class FakeSegment(FakeApi):
    def __init__(self, write_key: str) -> None:
        super().__init__(OpenApiDescription(SPEC), "segment")
        self.write_key = write_key
        self.profiles: dict[str, dict[str, Any]] = {}
        self.received: Counter[str] = Counter()
        self.batch_sizes: list[int] = []  # events per accepted batch request
        self.route("POST", "/v1/batch")(self._batch)

    def _key_of(self, request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, _password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user

    def _batch(self, request: Request) -> tuple[int, Any]:
        data = request.get_data()
        if len(data) > MAX_BATCH_BYTES:
            return 400, {"success": False, "code": "payload_too_large",
                         "message": f"batch of {len(data)} bytes is over 500KB"}
        try:
            body = json.loads(data)
        except ValueError:
            return 400, {"success": False, "code": "invalid_json", "message": "invalid JSON"}
        events = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(events, list):
            return 400, {"success": False, "code": "invalid_request", "message": "no batch"}
        for event in events:
            size = len(json.dumps(event, separators=(",", ":")).encode())
            if size > MAX_EVENT_BYTES:
                return 400, {"success": False, "code": "payload_too_large",
                             "message": f"an event of {size} bytes is over 32KB"}
        if self._key_of(request) != self.write_key:
            return 200, {"success": True}  # accepted and dropped: not this source's key
        if len(events) > MAX_BATCH_EVENTS:
            self.violations.append(f"a batch of {len(events)} events: over {MAX_BATCH_EVENTS}"
                                   " Segment rejects them")
            return 200, {"success": True}
        with self.lock:
            self.batch_sizes.append(len(events))
            for event in events:
                if not event.get("userId") and not event.get("anonymousId"):
                    continue  # no_user_anon_id: rejected after the 200 (Segment's debugger)
                if event.get("messageId"):
                    self.received[event["messageId"]] += 1
                    if self.received[event["messageId"]] > 1:
                        continue  # Segment deduplicates by messageId
                profile = self.profiles.setdefault(event.get("userId") or "", {})
                profile.update(event.get("traits") or {})
        return 200, {"success": True}

    def identify_count(self) -> int:
        """Identify events received (a resent one counted again)."""
        return sum(self.received.values())
