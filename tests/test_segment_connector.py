"""The Segment connector (`type: segment`) against tests/fake_segment.py, a stateful fake of
the Tracking API's batch endpoint that checks every request and answer against
tests/apis/segment.openapi.json.

Whole syncs from SQLite with exact profiles and counts: full loads in batches of 2,500 events
(or 500 KB), a rerun that sends nothing, changed records sent again as identify (counted
inserted); refusals with Segment's codes; what Segment cannot do refused at load; 429s on a
third of the calls waited out as Retry-After says; SIGKILLed runs that end with every profile
once; and the write key kept out of every output.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from werkzeug.wrappers import Request, Response

from sync_assets import SyncConfigError, load_project
from sync_assets.connectors.base import BatchRefused, ConnectorError, Refusal
from sync_assets.connectors.builtin import SEGMENT
from sync_assets.connectors.segment.connector import SegmentProfiles, identify
from sync_assets.connectors.segment.settings import SegmentSettings, segment_sync_problems
from sync_assets.connectors.sql import dispose_engines
from sync_assets.state import StateStore

from engine_helpers import counts, create_table, errors, spec, status, sync, update
from fake_segment import FakeSegment
from kill_helpers import Pace, kill_one_run

KEY = "wk-live-9f8e7d6c5b4a3210"
WORKER = Path(__file__).with_name("objectstack_crash_worker.py")  # runs any sync of a project
T0 = datetime(2024, 3, 1, 9, 0, 0)


class TimedSegment(FakeSegment):
    """The fake, noting when each call arrived (to check the waits between them)."""

    def __init__(self, write_key: str) -> None:
        super().__init__(write_key)
        self.arrivals: list[float] = []

    def _answer(self, request: Request) -> Response:
        with self.lock:
            self.arrivals.append(time.monotonic())
        return super()._answer(request)


@pytest.fixture
def api() -> Iterator[TimedSegment]:
    with TimedSegment(KEY) as fake:
        yield fake
        fake.assert_clean()


def person(i: int, **values: Any) -> dict[str, Any]:
    return {"id": i, "email": f"u{i}@example.org", "name": f"Name {i}", "score": i % 97,
            "updated_at": T0 + timedelta(seconds=i), **values}


def seed(tmp_path: Path, n: int, **values: Any) -> str:
    url = f"sqlite:///{tmp_path}/src.db"
    create_table(url, "people", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text), sa.Column("name", sa.Text),
        sa.Column("score", sa.Integer), sa.Column("updated_at", sa.DateTime),
    ], [person(i, **values) for i in range(1, n + 1)])
    return url


def write_project(tmp_path: Path, base_url: str, **sync_keys: Any) -> Path:
    config: dict[str, Any] = {
        "name": "profiles",
        "source": {"connectorInstanceId": "src", "externalResource": "people"},
        "destination": {"connectorInstanceId": "seg", "externalResource": "users",
                        "operation": "upsert", "matchKey": ["email"],
                        "mapping": {"email": "email", "name": "name", "score": "score"}},
        "batchSize": 2500,
    }
    for key in ("operation", "matchKey", "mapping"):
        if key in sync_keys:
            config["destination"][key] = sync_keys.pop(key)
    config.update(sync_keys)
    data = {"connectors": {
        "src": {"type": "sql", "url": f"sqlite:///{tmp_path}/src.db"},
        "seg": {"type": "segment", "writeKey": "${SEGMENT_WRITE_KEY}", "baseUrl": base_url}},
        "syncs": [config]}
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def project(tmp_path: Path, base_url: str, **sync_keys: Any) -> Any:
    return load_project(write_project(tmp_path, base_url, **sync_keys),
                        env={"SEGMENT_WRITE_KEY": KEY})


def api_calls(result: Any) -> int:
    """The calls the run's logs give for the Segment endpoint."""
    (line,) = [line for line in spec(result)["logs"] if "seg.users: " in line
               and " API call" in line]
    return int(line.split("seg.users: ")[1].split(" API call")[0])


def profiles(api: FakeSegment) -> dict[str, dict[str, Any]]:
    return {uid: dict(traits) for uid, traits in api.profiles.items()}


def expected(ids: range | list[int], **changed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for i in ids:
        p = person(i)
        out[p["email"]] = {"email": p["email"], "name": p["name"], "score": p["score"],
                           **changed.get(f"u{i}", {})}
    return out


# -- settings and what Segment cannot do ----------------------------------------------------


def test_the_write_key_comes_from_the_environment_as_a_secret(tmp_path: Path) -> None:
    proj = project(tmp_path, "https://api.segment.io")
    settings = proj.connectors["seg"]
    assert isinstance(settings, SegmentSettings)
    assert settings.write_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())


def test_a_base_url_that_is_no_http_url_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(SyncConfigError) as refused:
        project(tmp_path, "api.segment.io")
    assert "connectors.seg.baseUrl" in str(refused.value)
    assert "http:// or https://" in str(refused.value)


@pytest.mark.parametrize("operation", ["insert", "update", "delete", "sync"])
def test_every_operation_but_upsert_is_refused(operation: str) -> None:
    assert segment_sync_problems("destination", operation, "push", ["email"]) == [
        (("destination", "operation"),
         f"Segment cannot {operation}: an identify call creates or merges a profile's traits "
         "by userId, so only upsert can be honoured")]


def test_segment_as_a_source_or_two_way_is_refused() -> None:
    message = ("Segment cannot be read (the Tracking API only receives calls): make it the "
               "destination of a push sync")
    assert segment_sync_problems("source", "upsert", "pull", ["email"]) == [
        (("source",), message)]
    assert segment_sync_problems("destination", "upsert", "bidirectional", ["email"]) == [
        (("destination",), message)]


def test_upsert_by_one_key_field_is_allowed_and_two_fields_are_not() -> None:
    assert segment_sync_problems("destination", "upsert", "push", ["email"]) == []
    assert segment_sync_problems("destination", "upsert", "push", ["a", "b"]) == [
        (("destination", "matchKey"),
         "Segment needs exactly one matchKey field: its value is the userId")]


def test_a_project_asking_segment_for_what_it_cannot_do_is_refused_when_it_loads(
        tmp_path: Path) -> None:
    with pytest.raises(SyncConfigError) as refused:
        project(tmp_path, "https://api.segment.io", operation="delete")
    assert str(refused.value).endswith(
        "syncs[0].destination.operation: Segment cannot delete: an identify call creates or "
        "merges a profile's traits by userId, so only upsert can be honoured")
    with pytest.raises(SyncConfigError) as refused:
        project(tmp_path, "https://api.segment.io", direction="bidirectional")
    assert "syncs[0].destination: Segment cannot be read" in str(refused.value)
    assert project(tmp_path, "https://api.segment.io").syncs["profiles"]


def test_reading_segment_fails_with_a_clear_message(api: FakeSegment) -> None:
    endpoint = SEGMENT.open(SegmentSettings(type="segment", writeKey=KEY, baseUrl=api.url),
                            "users", "seg.users")
    with pytest.raises(ConnectorError, match=r"seg\.users cannot be read: Segment.s Tracking"):
        next(iter(endpoint.read_batches(None)))  # type: ignore[arg-type]
    with pytest.raises(ConnectorError, match=r"seg\.users cannot delete"):
        endpoint.write(None, "delete", ["email"], [{"email": "a@b.c"}])
    assert api.calls == []


# -- full loads, reruns, changes ------------------------------------------------------------


def test_a_full_load_fills_batches_of_2500_and_a_rerun_sends_nothing(
        tmp_path: Path, api: TimedSegment) -> None:
    seed(tmp_path, 5000)
    proj = project(tmp_path, api.url)
    first = sync(proj, "profiles")
    assert counts(first) == {"processed": 5000, "inserted": 5000}
    assert api.batch_sizes == [2500, 2500]  # 100% of the batch endpoint's 2,500 events
    assert profiles(api) == expected(range(1, 5001))
    assert api_calls(first) == 2
    again = sync(proj, "profiles")
    assert counts(again) == {"processed": 5000, "skipped": 5000}
    assert api.count("POST", "/v1/batch") == 2  # no call at all
    assert api_calls(again) == 0


def test_a_changed_record_is_sent_again_as_identify_and_counted_inserted(
        tmp_path: Path, api: TimedSegment) -> None:
    src = seed(tmp_path, 30)
    proj = project(tmp_path, api.url, changeTrackingField="updated_at")
    assert counts(sync(proj, "profiles")) == {"processed": 30, "inserted": 30}
    update(src, "people", {"id": 7}, {"name": "Seven", "updated_at": T0 + timedelta(days=1)})
    update(src, "people", {"id": 9}, {"score": 0, "updated_at": T0 + timedelta(days=1)})
    # Segment cannot be looked up: a changed profile is an identify again, counted inserted
    assert counts(sync(proj, "profiles")) == {"processed": 2, "inserted": 2}
    assert api.batch_sizes == [30, 2]
    assert profiles(api) == expected(range(1, 31), u7={"name": "Seven"}, u9={"score": 0})


@pytest.mark.parametrize("mode", [{}, {"syncMode": "full"}, {"changeTrackingField": "updated_at"}])
def test_upsert_in_each_mode_merges_traits_into_existing_profiles(
        tmp_path: Path, api: TimedSegment, mode: dict[str, Any]) -> None:
    src = seed(tmp_path, 6)
    api.profiles["u2@example.org"] = {"email": "u2@example.org", "name": "old", "plan": "pro"}
    proj = project(tmp_path, api.url, **mode)
    assert counts(sync(proj, "profiles")) == {"processed": 6, "inserted": 6}
    update(src, "people", {"id": 3}, {"name": "three", "updated_at": T0 + timedelta(hours=1)})
    assert counts(sync(proj, "profiles"))["inserted"] == 1
    want = expected(range(1, 7), u3={"name": "three"}, u2={"plan": "pro"})
    assert profiles(api) == want  # the trait the sync does not map is kept (merged)


def test_large_traits_fill_requests_to_500_kb(tmp_path: Path, api: TimedSegment) -> None:
    seed(tmp_path, 1200, name="x" * 2000)  # about 2.1 KB an event: bytes bound the batch
    proj = project(tmp_path, api.url)
    assert counts(sync(proj, "profiles")) == {"processed": 1200, "inserted": 1200}
    sizes = [len(json.dumps(c.body, separators=(",", ":")).encode()) for c in api.calls]
    assert all(s <= 500_000 for s in sizes)
    full = sizes[:-1]  # the last request of each engine batch takes what is left
    assert sum(full) / len(full) >= 0.9 * 500_000, sizes
    print(f"\nsegment: {len(sizes)} requests, {sum(full) / len(full):.0f} bytes on average "
          f"before the last of each batch")
    assert len(profiles(api)) == 1200


# -- refusals -----------------------------------------------------------------------------


def test_an_event_over_32_kb_is_errored_with_segments_code_and_the_others_sent(
        tmp_path: Path, api: TimedSegment) -> None:
    src = seed(tmp_path, 5)
    update(src, "people", {"id": 4}, {"name": "y" * 40_000})
    proj = project(tmp_path, api.url, errorHandling={"onSyncError": "skip"})
    result = sync(proj, "profiles")
    assert status(result) == "partial"
    assert counts(result) == {"processed": 5, "inserted": 4, "errored": 1}
    (error,) = errors(result)
    assert error["recordId"] == "4" and error["code"] == "WRITE_ERROR"
    assert "payload_too_large: the identify is 40" in error["message"]
    assert profiles(api) == expected([1, 2, 3, 5])


def test_a_record_without_a_user_id_is_refused_with_no_user_anon_id(api: FakeSegment) -> None:
    endpoint = SegmentProfiles(SegmentSettings(type="segment", writeKey=KEY, baseUrl=api.url),
                               "users", "seg.users")
    result = endpoint.write(None, "upsert", ["email"], [{"email": None, "name": "a"},
                                                        {"email": "b@x.io", "name": "b"}])
    assert result.written == 1
    assert result.refused == [Refusal(0, "no_user_anon_id", "the identify has no userId (the "
                                                            "match key email is empty)")]
    assert profiles(api) == {"b@x.io": {"email": "b@x.io", "name": "b"}}


def test_the_same_record_sent_twice_carries_the_same_message_id() -> None:
    assert identify("a", {"n": 1})["messageId"] == identify("a", {"n": 1})["messageId"]
    assert identify("a", {"n": 1})["messageId"] != identify("a", {"n": 2})["messageId"]


# -- rate limits ----------------------------------------------------------------------------


def test_429s_on_a_third_of_the_calls_are_waited_as_retry_after_says(
        tmp_path: Path, api: TimedSegment) -> None:
    seed(tmp_path, 600)
    proj = project(tmp_path, api.url, batchSize=50)
    api.rate_limit(every=3, retry_after=0.2)
    result = sync(proj, "profiles")
    assert counts(result) == {"processed": 600, "inserted": 600}
    statuses = [c.status for c in api.calls]
    assert statuses.count(429) == len(statuses) // 3 and statuses.count(200) == 12
    assert api_calls(result) == len(statuses)
    # each call after a 429 came no sooner than its Retry-After
    for i, call in enumerate(api.calls[:-1]):
        if call.status == 429:
            assert api.arrivals[i + 1] - api.arrivals[i] >= 0.2
    assert set(api.received.values()) == {1}  # every identify sent once
    assert profiles(api) == expected(range(1, 601))


# -- crashes --------------------------------------------------------------------------------

KILL_ROWS = 5000
KILLS = 20
KILL_BATCH = 250


def test_sigkill_at_20_random_points_then_every_profile_once(
        tmp_path: Path, api: TimedSegment, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = Random("segment-crash")
    src = seed(tmp_path, KILL_ROWS)
    names = {i: person(i)["name"] for i in range(1, KILL_ROWS + 1)}
    monkeypatch.setenv("SEGMENT_WRITE_KEY", KEY)
    project_file = write_project(tmp_path, api.url, batchSize=KILL_BATCH,
                                 changeTrackingField="updated_at",
                                 retry={"maxAttempts": 3, "backoffMs": 50})
    pace = Pace(first=[0.3], step=[0.03], tail=[0.05], window=10)
    people = sa.Table("people", sa.MetaData(), sa.Column("id", sa.Integer),
                      sa.Column("name", sa.Text), sa.Column("updated_at", sa.DateTime))
    state_db = tmp_path / ".sync_assets" / "state.db"

    def remaining() -> int:
        """Source records at or after the sync's cursor: what the next run reads."""
        cursor = None
        if state_db.exists():
            engine = sa.create_engine(f"sqlite:///{state_db}")
            with engine.connect() as conn:
                if sa.inspect(conn).has_table("_sync_assets_cursor"):
                    cursor = StateStore("profiles").load_cursor(conn)
            engine.dispose()
        engine = sa.create_engine(src)
        with engine.connect() as conn:
            stmt = sa.select(sa.func.count()).select_from(people)
            if cursor is not None:
                stmt = stmt.where(people.c.updated_at >= cursor)
            found = int(conn.execute(stmt).scalar() or 0)
        engine.dispose()
        return found

    landed: dict[str, int] = {}
    for round_no in range(KILLS):
        batches = max(1, math.ceil(remaining() / KILL_BATCH))
        where, _ = kill_one_run([sys.executable, str(WORKER), str(project_file), "profiles"],
                                rng, batches, True, pace, tmp_path / "worker.err")
        landed[where] = landed.get(where, 0) + 1
        picked = rng.sample(sorted(names), rng.randint(KILL_BATCH // 2, 2 * KILL_BATCH))
        engine = sa.create_engine(src)
        with engine.begin() as conn:
            for i in picked:
                names[i] = f"Name {i} r{round_no}"
                conn.execute(sa.update(people).where(people.c.id == i).values(
                    name=names[i], updated_at=T0 + timedelta(days=1, minutes=round_no)))
        engine.dispose()
    proj = load_project(project_file)
    final = spec(sync(proj, "profiles"))
    assert final["status"] == "completed" and final["stats"]["recordsErrored"] == 0, final
    again = spec(sync(proj, "profiles"))["stats"]
    assert again["recordsInserted"] == 0 and again["recordsUpdated"] == 0, again
    dispose_engines()
    held = profiles(api)
    assert len(held) == KILL_ROWS
    assert {int(t["email"][1:].split("@")[0]): t["name"] for t in held.values()} == names
    assert landed.get("mid-run", 0) + landed.get("after last batch", 0) >= KILLS // 2, landed
    print(f"\nsegment: {KILLS} kills: {landed}; {api.identify_count()} identify events for "
          f"{KILL_ROWS} profiles in {api.count('POST', '/v1/batch')} calls")


# -- secrets --------------------------------------------------------------------------------


def test_the_write_key_is_in_no_log_error_or_result(tmp_path: Path, api: TimedSegment) -> None:
    seed(tmp_path, 10)
    proj = project(tmp_path, api.url, retry={"maxAttempts": 0, "backoffMs": 0})
    # an API echoing the credentials it was sent, in a refusal
    api.fail_next(1, 400, {"success": False, "message": f"bad write key {KEY}"})
    failed = sync(proj, "profiles")
    text = json.dumps(failed.to_spec(), default=str)
    assert status(failed) == "failed" and "bad write key **********" in text
    assert KEY not in text
    done = sync(proj, "profiles")
    assert KEY not in json.dumps(done.to_spec(), default=str)
    assert "Authorization" in api.calls[-1].headers  # it was sent, as basic auth
    assert os.environ.get("SEGMENT_WRITE_KEY") != KEY


def test_the_fake_answers_400_to_a_batch_over_500_kb_and_keeps_nothing(
        api: FakeSegment) -> None:
    endpoint = SegmentProfiles(SegmentSettings(type="segment", writeKey=KEY, baseUrl=api.url),
                               "users", "seg.users")
    events = [identify(f"u{i}", {"bio": "z" * 20_000}) for i in range(30)]  # about 600 KB
    with pytest.raises(BatchRefused, match="HTTP 400 payload_too_large: batch of 6"):
        endpoint._send(events)
    assert api.profiles == {} and [c.status for c in api.calls] == [400]
