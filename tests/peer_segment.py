"""The contract suite's Segment peer: profiles in tests/fake_segment.py (a stateful fake of
the Tracking API's batch endpoint, checked against its OpenAPI description), written by
identify calls.

Segment is a destination that can only upsert and cannot be read, so most of the suite does
not apply (`cannot`): each of those is refused when a project loads (segment_sync_problems,
tested in tests/test_segment_connector.py), or, for the counts, differs in a documented way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from fake_segment import FakeSegment

PEER_NAME = "segment"
WRITE_KEY = "wk-contract-5eg-0123456789"

_COUNTS = ("Segment cannot be looked up: a changed profile is sent as an identify and counted "
           "inserted, never updated (tests/test_segment_connector.py shows the counts)")
_ONLY_UPSERT = "Segment can only upsert (identify): refused at load"
_UNREADABLE = "Segment cannot be read: refused at load"


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


class SegmentPeer:
    transactional = False
    people = "users"
    cannot = {
        "test_upsert_inserts_then_updates_only_what_changed": _COUNTS,
        "test_incremental_reads_from_the_cursor_boundary_inclusive": _COUNTS,
        "test_insert_by_match_key_writes_each_record_once": _ONLY_UPSERT,
        "test_update_changes_existing_records_and_skips_missing": _ONLY_UPSERT,
        "test_delete_removes_the_matching_records": _ONLY_UPSERT,
        "test_sync_mirrors_away_only_what_it_created": _ONLY_UPSERT,
        "test_the_mirror_guard_refuses_to_delete_most_records": _ONLY_UPSERT,
        "test_each_operation_in_each_mode": _ONLY_UPSERT + " (upsert in each mode: "
                                            "tests/test_segment_connector.py)",
        "test_reading_the_peer_incrementally_with_a_filter": _UNREADABLE,
        "test_two_way_changes_flow_both_ways_without_echoes": _UNREADABLE,
        "test_refused_records_are_errored_and_the_others_written": (
            "Segment accepts any trait value: nothing a peer could be told to refuse (its "
            "own refusals, no userId and events over 32 KB: tests/test_segment_connector.py)"),
        "test_a_full_rerun_with_nothing_changed_writes_nothing": (
            "its full refresh compares with the destination, which Segment cannot show: it "
            "sends every profile again (the rerun itself writes nothing: "
            "tests/test_segment_connector.py)"),
    }
    client_waits = True  # connectors/web.py waits the Retry-After, not the engine

    def __init__(self, api: FakeSegment) -> None:
        self.api = api

    def settings(self) -> dict[str, Any]:
        return {"type": "segment", "writeKey": WRITE_KEY, "baseUrl": self.api.url}

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        """Profiles that exist already (identified before), by the key's value."""
        with self.api.lock:
            self.api.profiles.clear()
            for row in rows:
                self.api.profiles[str(row[key[0]])] = {f: _plain(row.get(f)) for f in fields}

    def rows(self, resource: str, fields: Sequence[str], key: str = "email"
             ) -> list[dict[str, Any]]:
        with self.api.lock:
            held = [{f: traits.get(f) for f in fields} for traits in self.api.profiles.values()]
        return sorted(held, key=lambda r: r[key])

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        raise NotImplementedError("Segment profiles are not read by a sync")

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        """The next `count` calls answer 429 (with this Retry-After)."""
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        self.api.fail_next(count, 429, {"success": False, "message": "too many requests"},
                           headers)
        try:
            yield
        finally:
            with self.api.lock:
                self.api._fail.clear()


@contextmanager
def make_peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SegmentPeer]:
    with FakeSegment(WRITE_KEY) as api:
        yield SegmentPeer(api)
        api.assert_clean()
