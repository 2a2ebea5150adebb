"""The HubSpot connector (`type: hubspot`) against the validating fake of tests/fake_hubspot.py:
settings from the environment as secrets, describe from the properties API, reads by search
re-anchored before its 10,000-result cap, archived records mirrored away, batch writes at
HubSpot's 100 inputs a call, 207 per-record refusals, 429s waited out as Retry-After says,
pacing to 100 calls per 10 s, the daily allowance and call counts in the run's logs, no token
in any output, and every record once in HubSpot after SIGKILLs at random points."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from sync_assets import load_project
from sync_assets.connectors.base import ConnectorError, ReadRequest
from sync_assets.connectors.hubspot.connector import (
    HubSpotObjects,
    close_clients,
    get_client,
    open_hubspot,
)
from sync_assets.connectors.hubspot.settings import HubSpotSettings
from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import run
from sync_assets.project import SyncConfigError
from sync_assets.state import StateStore

from engine_helpers import counts, create_table, errors, spec, status, update
from fake_hubspot import TOKEN, FakeHubSpot, Prop
from kill_helpers import Pace, kill_one_run

WORKER = Path(__file__).with_name("objectstack_crash_worker.py")  # runs any sync of a project
T0 = datetime(2024, 1, 1, 10, 0, 0)
PEOPLE_PROPS = [Prop("name"), Prop("score", "number", "number", minimum=0),
                Prop("updated_at", "datetime", "date")]


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as api:
        api.define("contacts", PEOPLE_PROPS)
        yield api
        close_clients()
        dispose_engines()
        api.api.assert_clean()


def hub(fake: FakeHubSpot, **extra: Any) -> dict[str, Any]:
    return {"type": "hubspot", "token": TOKEN, "baseUrl": fake.url, "requestsPer10s": 100_000,
            "searchesPerSecond": 100_000,
            **extra}


def person(i: int, **values: Any) -> dict[str, Any]:
    return {"id": i, "email": f"p{i}@x.io", "name": f"name {i}", "score": i % 50,
            "updated_at": T0 + timedelta(seconds=i), **values}


def seed_source(tmp_path: Path, rows: list[dict[str, Any]]) -> str:
    url = f"sqlite:///{tmp_path}/src.db"
    create_table(url, "people", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text), sa.Column("name", sa.Text),
        sa.Column("score", sa.Integer), sa.Column("updated_at", sa.DateTime)], rows)
    return url


def write_project(tmp_path: Path, connectors: Mapping[str, Any], **sync: Any) -> Path:
    config = {"name": "people",
              "source": {"connectorInstanceId": "src", "externalResource": "people"},
              "destination": {"connectorInstanceId": "hub", "externalResource": "contacts",
                              "operation": "upsert", "matchKey": ["email"],
                              "mapping": {"email": "email", "name": "name", "score": "score"}},
              "batchSize": 500}
    for name in ("operation", "matchKey", "mapping"):
        if name in sync:
            config["destination"][name] = sync.pop(name)
    config.update(sync)
    data = {"objectstack": {"url": f"sqlite:///{tmp_path}/objectstack.db"},
            "connectors": dict(connectors), "syncs": [config]}
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def to_hubspot(tmp_path: Path, fake: FakeHubSpot, n: int, **sync: Any) -> Any:
    """A project syncing n source people into HubSpot contacts by email."""
    src = seed_source(tmp_path, [person(i) for i in range(1, n + 1)])
    path = write_project(tmp_path, {"src": {"type": "sql", "url": src}, "hub": hub(fake)},
                         **sync)
    return load_project(path, env={})


def held(fake: FakeHubSpot) -> dict[str, dict[str, str | None]]:
    """The live contacts by email: their name and score, as HubSpot holds them."""
    out = {}
    for record in fake.live("contacts"):
        email = record.properties["email"]
        assert email is not None and email not in out, f"{email} held twice"
        out[email] = {"name": record.properties.get("name"),
                      "score": record.properties.get("score")}
    return out


def messages(result: Any) -> list[str]:
    """The run's log lines without their times."""
    return [line.split(" ", 1)[1] for line in result.to_spec()["logs"]]


def endpoint(fake: FakeHubSpot, resource: str = "contacts", **extra: Any) -> HubSpotObjects:
    return open_hubspot(HubSpotSettings.model_validate(hub(fake, **extra)), resource,
                        f"hub.{resource}")


# -- settings --------------------------------------------------------------------------------
def test_the_token_comes_from_an_environment_variable_as_a_secret(tmp_path: Path) -> None:
    path = write_project(tmp_path, {"src": {"type": "sql", "url": "sqlite:///x.db"},
                                    "hub": {"type": "hubspot", "token": "${HUBSPOT_TOKEN}"}})
    project = load_project(path, env={"HUBSPOT_TOKEN": TOKEN})
    settings = project.connectors["hub"]
    assert isinstance(settings, HubSpotSettings)
    assert settings.token.get_secret_value() == TOKEN
    assert settings.base_url == "https://api.hubapi.com" and settings.requests_per_10s == 100
    assert TOKEN not in repr(settings) and TOKEN not in str(settings)


@pytest.mark.parametrize(("hub_settings", "named"), [
    ({"type": "hubspot"}, "token"),
    ({"type": "hubspot", "token": "has spaces in it"}, "token"),
    ({"type": "hubspot", "token": TOKEN, "baseUrl": "api.hubapi.com"}, "baseUrl"),
    ({"type": "hubspot", "token": TOKEN, "requestsPer10s": 0}, "requestsPer10s"),
    ({"type": "hubspot", "token": TOKEN, "apiKey": "x"}, "apiKey"),
])
def test_bad_settings_are_load_time_errors_naming_the_field(
        tmp_path: Path, hub_settings: dict[str, Any], named: str) -> None:
    path = write_project(tmp_path, {"src": {"type": "sql", "url": "sqlite:///x.db"},
                                    "hub": hub_settings})
    with pytest.raises(SyncConfigError) as refused:
        load_project(path, env={})
    assert named in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_an_append_without_a_match_key_is_refused_when_the_project_loads(
        tmp_path: Path) -> None:
    # HubSpot assigns record ids: an insert without a key could be repeated after a crash
    path = write_project(tmp_path, {"src": {"type": "sql", "url": "sqlite:///x.db"},
                                    "hub": {"type": "hubspot", "token": TOKEN}},
                         destination={"connectorInstanceId": "hub",
                                      "externalResource": "contacts", "operation": "insert",
                                      "mapping": {"email": "email"}})
    with pytest.raises(SyncConfigError) as refused:
        load_project(path, env={})
    assert "insert without matchKey" in str(refused.value)


@pytest.mark.parametrize("operation", ["insert", "upsert", "sync"])
def test_creating_records_matched_by_hubspots_own_id_is_a_load_time_error(
        tmp_path: Path, operation: str) -> None:
    path = write_project(tmp_path, {"src": {"type": "sql", "url": "sqlite:///x.db"},
                                    "hub": {"type": "hubspot", "token": TOKEN}},
                         operation=operation, matchKey=["hs_object_id"],
                         mapping={"hs_object_id": "id", "email": "email"})
    with pytest.raises(SyncConfigError) as refused:
        load_project(path, env={})
    assert (f"destination.matchKey: HubSpot assigns record ids (hs_object_id): {operation} "
            "cannot create records matched by one") in str(refused.value)


def test_updating_and_deleting_by_hubspots_own_id_load(tmp_path: Path) -> None:
    for operation in ("update", "delete"):
        path = write_project(tmp_path, {"src": {"type": "sql", "url": "sqlite:///x.db"},
                                        "hub": {"type": "hubspot", "token": TOKEN}},
                             operation=operation, matchKey=["hs_object_id"],
                             mapping={"hs_object_id": "id", "email": "email"})
        loaded = load_project(path, env={}).syncs["people"].config.destination
        assert (loaded.operation, loaded.matchKey) == (operation, ["hs_object_id"])


# -- describe --------------------------------------------------------------------------------
def test_describe_gives_kinds_unique_keys_and_read_only_fields_from_the_properties_api(
        fake: FakeHubSpot) -> None:
    desc = endpoint(fake).describe()
    assert {n: f.kind for n, f in desc.fields.items()} == {
        "hs_object_id": "text", "createdate": "datetime", "lastmodifieddate": "datetime",
        "email": "text", "firstname": "text", "lastname": "text", "name": "text",
        "score": "decimal", "updated_at": "datetime"}
    assert desc.primary_key == ("hs_object_id",)
    assert desc.unique_keys == (("email",),)
    assert desc.read_only == {"hs_object_id", "createdate", "lastmodifieddate"}
    assert fake.api.count("GET", "/crm/v3/properties/contacts") == 1


def test_an_object_type_hubspot_does_not_know_does_not_exist(fake: FakeHubSpot) -> None:
    assert endpoint(fake, "2-999").describe().exists is False
    with pytest.raises(ConnectorError) as refused:
        open_hubspot(HubSpotSettings.model_validate(hub(fake)), "contacts; drop", "hub.x")
    assert "is no HubSpot object type" in str(refused.value)


# -- writes ----------------------------------------------------------------------------------
def test_a_full_load_writes_100_inputs_a_call_and_a_rerun_writes_nothing(
        tmp_path: Path, fake: FakeHubSpot) -> None:
    project = to_hubspot(tmp_path, fake, 2000, batchSize=1000,
                         changeTrackingField="updated_at")
    assert counts(run(project, "people")) == {"processed": 2000, "inserted": 2000}
    calls = fake.write_calls()
    assert calls == [100] * 20  # 100% of HubSpot's batch size, on average and every call
    assert {c.path for c in fake.api.calls if c.path.endswith(("create", "upsert"))} == {
        "/crm/v3/objects/contacts/batch/upsert"}
    assert len(held(fake)) == 2000
    before = len(fake.write_calls(answered=False))
    assert counts(run(project, "people")) == {}  # the cursor's boundary re-read, no more
    assert len(fake.write_calls(answered=False)) == before  # nothing changed: no write
    again = run(project, "people", full_refresh=True)
    assert counts(again) == {"processed": 2000, "skipped": 2000}
    assert len(fake.write_calls(answered=False)) == before


def test_updates_send_only_changed_records_as_strings(tmp_path: Path,
                                                      fake: FakeHubSpot) -> None:
    project = to_hubspot(tmp_path, fake, 30, changeTrackingField="updated_at")
    run(project, "people")
    update(f"sqlite:///{tmp_path}/src.db", "people", {"id": 7},
           {"score": 42, "updated_at": T0 + timedelta(days=1)})
    assert counts(run(project, "people")) == {"processed": 1, "updated": 1}
    last = fake.api.calls[-1]
    assert (last.path, last.body["inputs"]) == ("/crm/v3/objects/contacts/batch/update", [
        {"id": "p7@x.io", "idProperty": "email", "objectWriteTraceId": "0",
         "properties": {"email": "p7@x.io", "name": "name 7", "score": "42"}}])
    assert held(fake)["p7@x.io"] == {"name": "name 7", "score": "42"}


def test_a_record_hubspot_refuses_is_errored_with_its_category_and_message(
        tmp_path: Path, fake: FakeHubSpot) -> None:
    src = seed_source(tmp_path, [person(i) for i in range(1, 6)])
    update(src, "people", {"id": 4}, {"score": -3})
    path = write_project(tmp_path, {"src": {"type": "sql", "url": src}, "hub": hub(fake)},
                         errorHandling={"onSyncError": "skip"})
    result = run(load_project(path, env={}), "people")
    assert status(result) == "partial"
    assert counts(result) == {"processed": 5, "inserted": 4, "errored": 1}
    (error,) = errors(result)
    assert error["recordId"] == "4" and error["code"] == "WRITE_ERROR"
    assert error["message"] == (
        'hub.contacts refused the record: VALIDATION_ERROR: Property values were not valid: '
        '[{"isValid":false,"message":"-3 is below the minimum value 0 of property score.",'
        '"error":"OUT_OF_RANGE","name":"score"}]')
    assert sorted(held(fake)) == ["p1@x.io", "p2@x.io", "p3@x.io", "p5@x.io"]
    assert [c.status for c in fake.api.calls if c.path.endswith("upsert")] == [207]


def test_429s_on_a_third_of_the_calls_end_with_every_record_written_once_after_retry_after(
        tmp_path: Path, fake: FakeHubSpot) -> None:
    project = to_hubspot(tmp_path, fake, 600, batchSize=300)
    fake.api.rate_limit(every=3, retry_after=0.05)
    result = run(project, "people")
    fake.api.rate_limit(0)
    assert status(result) == "completed"
    assert counts(result) == {"processed": 600, "inserted": 600}
    assert held(fake) == {f"p{i}@x.io": {"name": f"name {i}", "score": str(i % 50)}
                          for i in range(1, 601)}
    limited = [c for c in fake.api.calls if c.status == 429]
    assert len(limited) == len(fake.api.calls) // 3 and limited
    assert sum(fake.write_calls()) == 600  # each record sent once where it was answered
    client = get_client(HubSpotSettings.model_validate(hub(fake)))
    assert client.waits == [0.05] * len(limited)  # each wait as Retry-After asked
    assert f"INFO hub.contacts: {len(fake.api.calls)} API calls" in messages(result)


def test_calls_are_paced_to_100_per_10_seconds(fake: FakeHubSpot) -> None:
    paced = endpoint(fake, requestsPer10s=100)
    started = time.monotonic()
    for _ in range(6):
        paced.describe(refresh=True)
    assert time.monotonic() - started >= 0.5  # five gaps of at least 0.1 s
    assert paced.usage().calls == 6


def test_searches_are_paced_to_5_a_second(fake: FakeHubSpot) -> None:
    paced = endpoint(fake, searchesPerSecond=5)
    paced.describe()
    started = time.monotonic()
    assert [paced.count() for _ in range(4)] == [0, 0, 0, 0]
    assert time.monotonic() - started >= 0.6  # three gaps of at least 0.2 s


def test_an_update_of_a_record_deleted_meanwhile_is_neither_written_nor_refused(
        fake: FakeHubSpot) -> None:
    fake.seed("contacts", [{"email": "here@x.io", "name": "old"}])
    result = endpoint(fake).write(None, "update", ["email"], [
        {"email": "gone@x.io", "name": "new"}, {"email": "HERE@x.io", "name": "new"}])
    assert (result.written, result.refused) == (1, [])
    assert [r.properties["name"] for r in fake.live("contacts")] == ["new"]
    assert fake.api.calls[-1].status == 207  # HubSpot named the missing email


def test_a_key_hubspot_does_not_keep_unique_is_matched_by_search(fake: FakeHubSpot) -> None:
    fake.seed("companies", [{"name": "Acme", "domain": "acme.io"},
                            {"name": "Other", "domain": "other.io"}])
    companies = endpoint(fake, "companies")
    result = companies.write(None, "upsert", ["domain"], [
        {"domain": "acme.io", "name": "Acme Inc"}, {"domain": "new.io", "name": "New"}])
    assert (result.written, result.refused) == (2, [])
    assert sorted((r.properties["domain"], r.properties["name"])
                  for r in fake.live("companies")) == [
        ("acme.io", "Acme Inc"), ("new.io", "New"), ("other.io", "Other")]
    assert [c.path.rsplit("/", 1)[-1] for c in fake.api.calls if c.method == "POST"] == [
        "search", "update", "create"]


def test_archive_deletes_the_records_a_key_finds(tmp_path: Path, fake: FakeHubSpot) -> None:
    ids = fake.seed("contacts", [{"email": f"p{i}@x.io", "name": "x"} for i in (2, 3, 8)])
    project = to_hubspot(tmp_path, fake, 3, operation="delete")
    assert counts(run(project, "people")) == {"processed": 3, "deleted": 2, "skipped": 1}
    assert sorted(held(fake)) == ["p8@x.io"]
    archive = [c for c in fake.api.calls if c.path.endswith("/archive")]
    assert [c.body for c in archive] == [{"inputs": [{"id": ids[0]}, {"id": ids[1]}]}]


# -- reads -----------------------------------------------------------------------------------
def from_hubspot(tmp_path: Path, fake: FakeHubSpot, **sync: Any) -> Any:
    warehouse = f"sqlite:///{tmp_path}/wh.db"
    sync.setdefault("destination", {
        "connectorInstanceId": "wh", "externalResource": "people", "operation": "upsert",
        "matchKey": ["email"], "mapping": {"email": "email", "name": "name", "score": "score"}})
    path = write_project(
        tmp_path, {"hub": hub(fake), "wh": {"type": "sql", "url": warehouse}},
        source={"connectorInstanceId": "hub", "externalResource": "contacts"}, **sync)
    return load_project(path, env={})


def warehouse_rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/wh.db")
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text(
            "SELECT email, name, score FROM people ORDER BY email"))]
    engine.dispose()
    return rows


def test_reads_follow_lastmodifieddate_from_the_cursor_on(tmp_path: Path,
                                                          fake: FakeHubSpot) -> None:
    ids = fake.seed("contacts", [{"email": f"p{i}@x.io", "name": f"n{i}", "score": i}
                                 for i in range(1, 6)])
    project = from_hubspot(tmp_path, fake, changeTrackingField="lastmodifieddate",
                           batchSize=2)
    assert counts(run(project, "people")) == {"processed": 5, "inserted": 5}
    time.sleep(0.01)  # a later stamp than the seeds'
    fake.change("contacts", ids[2], {"name": "three"})
    assert counts(run(project, "people")) == {"processed": 1, "updated": 1}
    assert warehouse_rows(tmp_path) == [("p1@x.io", "n1", 1), ("p2@x.io", "n2", 2),
                                        ("p3@x.io", "three", 3), ("p4@x.io", "n4", 4),
                                        ("p5@x.io", "n5", 5)]
    search = [c.body for c in fake.api.calls if c.path.endswith("/search")
              and c.body["sorts"][0]["propertyName"] == "lastmodifieddate"][-1]
    assert search["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert [f["operator"] for f in search["filterGroups"][0]["filters"]] == [
        "HAS_PROPERTY", "GTE", "LTE"]


def test_archived_records_are_mirrored_away(tmp_path: Path, fake: FakeHubSpot) -> None:
    ids = fake.seed("contacts", [{"email": f"p{i}@x.io", "name": f"n{i}", "score": i}
                                 for i in range(1, 5)])
    project = from_hubspot(tmp_path, fake, syncMode="full",
                           destination={"connectorInstanceId": "wh", "externalResource":
                                        "people", "operation": "sync", "matchKey": ["email"],
                                        "mapping": {"email": "email", "name": "name",
                                                    "score": "score"}})
    assert counts(run(project, "people")) == {"processed": 4, "inserted": 4}
    fake.archive("contacts", ids[1])  # deleted in HubSpot
    assert counts(run(project, "people")) == {"processed": 4, "deleted": 1, "skipped": 3}
    assert [r[0] for r in warehouse_rows(tmp_path)] == ["p1@x.io", "p3@x.io", "p4@x.io"]


MIRROR = {"connectorInstanceId": "wh", "externalResource": "people", "operation": "sync",
          "matchKey": ["email"], "mapping": {"email": "email", "name": "name", "score": "score"}}


def whole_searches(fake: FakeHubSpot) -> list[Any]:
    """Searches bounded by no change time (GTE): reads of every record."""
    return [c.body for c in fake.api.calls if c.path.endswith("/search")
            and c.body.get("limit") != 1
            and not any(f["operator"] in ("GTE", "NOT_HAS_PROPERTY")
                        for g in c.body.get("filterGroups", []) for f in g["filters"])]


def test_an_incremental_mirror_takes_the_archived_records_and_reads_only_changes(
        tmp_path: Path, fake: FakeHubSpot) -> None:
    ids = fake.seed("contacts", [{"email": f"p{i}@x.io", "name": f"n{i}", "score": i}
                                 for i in range(1, 6)])
    project = from_hubspot(tmp_path, fake, changeTrackingField="lastmodifieddate",
                           destination=MIRROR)
    assert counts(run(project, "people")) == {"processed": 5, "inserted": 5}
    time.sleep(0.01)
    fake.archive("contacts", ids[1])
    fake.api.calls.clear()
    second = run(project, "people")
    assert counts(second) == {"processed": 1, "deleted": 1}
    assert whole_searches(fake) == []
    listed = [c for c in fake.api.calls if c.method == "GET"
              and c.path == "/crm/v3/objects/contacts"]
    assert [c.query["archived"] for c in listed] == [["true"]]
    assert any("reports 1 record deleted since" in m for m in messages(second))
    assert [r[0] for r in warehouse_rows(tmp_path)] == ["p1@x.io", "p3@x.io", "p4@x.io",
                                                        "p5@x.io"]
    assert "deleted" not in counts(run(project, "people"))


def test_archived_records_are_listed_100_a_page_and_only_those_archived_since_the_cursor(
        fake: FakeHubSpot) -> None:
    ids = fake.seed("contacts", [{"email": f"p{i}@x.io", "name": f"n{i}", "score": i}
                                 for i in range(1, 251)])
    for rid in ids[:30]:
        fake.archive("contacts", rid)
    time.sleep(0.01)
    since = datetime.now(UTC).replace(tzinfo=None)
    time.sleep(0.01)
    for rid in ids[30:230]:
        fake.archive("contacts", rid)
    fake.api.calls.clear()
    request = ReadRequest(columns=["email"], order_by=["lastmodifieddate"], batch_size=64,
                          cursor_field="lastmodifieddate", lower=since)
    pages = list(endpoint(fake).read_deletes(request) or [])
    assert [len(p) for p in pages] == [64, 64, 64, 8]
    assert sorted(r["email"] for p in pages for r in p) == sorted(
        f"p{i}@x.io" for i in range(31, 231))
    assert [c.query["limit"] for c in fake.api.calls if c.method == "GET"
            and c.path == "/crm/v3/objects/contacts"] == [["100"], ["100"], ["100"]]


def test_a_cursor_older_than_hubspots_90_days_of_archives_reads_every_key(
        fake: FakeHubSpot) -> None:
    fake.seed("contacts", [{"email": "p1@x.io", "name": "n1", "score": 1}])
    request = ReadRequest(columns=["email"], order_by=["lastmodifieddate"], batch_size=10,
                          cursor_field="lastmodifieddate",
                          lower=datetime.now(UTC).replace(tzinfo=None) - timedelta(days=91))
    assert endpoint(fake).read_deletes(request) is None


def test_a_read_re_anchors_before_the_search_cap_and_reads_each_record_once(
        tmp_path: Path, fake: FakeHubSpot) -> None:
    # 10,250 records, three to a change time: the 10,000th shares its time with the next two
    fake.seed("contacts", [{"email": f"p{i}@x.io", "name": f"n{i}", "score": i % 7,
                            "updated_at": T0 + timedelta(seconds=i // 3)}
                           for i in range(10_250)])
    project = from_hubspot(tmp_path, fake, changeTrackingField="updated_at", batchSize=200)
    result = run(project, "people")
    assert counts(result) == {"processed": 10_250, "inserted": 10_250}
    assert len(warehouse_rows(tmp_path)) == 10_250
    searches = [c for c in fake.api.calls if c.path.endswith("/search")]
    assert {c.status for c in searches} == {200}  # never a page past the cap
    # a first load reads in id order: the search starts again after the last id read
    started = [[(f["operator"], f["propertyName"]) for f in c.body["filterGroups"][0]["filters"]]
               for c in searches if "after" not in c.body
               and c.body["sorts"][0]["direction"] == "ASCENDING"]
    assert started == [[("HAS_PROPERTY", "updated_at"), ("LTE", "updated_at")],
                       [("HAS_PROPERTY", "updated_at"), ("LTE", "updated_at"),
                        ("GT", "hs_object_id")],
                       [("NOT_HAS_PROPERTY", "updated_at")]]


def test_a_read_in_change_time_order_re_anchors_at_the_last_time_without_repeats(
        fake: FakeHubSpot) -> None:
    # three records a change time: the 10,000th read shares its time with the next two
    ids = fake.seed("contacts", [{"email": f"p{i}@x.io", "updated_at": T0 + timedelta(
        seconds=i // 3)} for i in range(10_250)])
    request = ReadRequest(columns=["hs_object_id", "updated_at"],
                          order_by=["updated_at", "hs_object_id"], batch_size=200,
                          cursor_field="updated_at", lower=T0)
    read = [r for page in endpoint(fake).read_batches(request) for r in page]
    assert sorted(r["hs_object_id"] for r in read) == sorted(ids)  # each once
    times = [r["updated_at"] for r in read]
    assert times == sorted(times)
    searches = [c for c in fake.api.calls if c.path.endswith("/search")]
    again = [c.body["filterGroups"][0]["filters"][-1] for c in searches[1:]
             if "after" not in c.body]
    assert again == [{"propertyName": "updated_at", "operator": "GTE",
                      "value": str(int((T0 + timedelta(seconds=3333)).replace(
                          tzinfo=UTC).timestamp() * 1000))}]
    assert max(int(c.body.get("after", 0)) + c.body["limit"] for c in searches) == 10_000


def test_more_than_10000_records_at_one_change_time_is_a_clear_error(
        fake: FakeHubSpot) -> None:
    fake.seed("contacts", [{"email": f"p{i}@x.io", "updated_at": T0} for i in range(10_001)])
    request = ReadRequest(columns=["email"], order_by=["updated_at", "hs_object_id"],
                          batch_size=200, cursor_field="updated_at")
    with pytest.raises(ConnectorError) as refused:
        for _page in endpoint(fake).read_batches(request):
            pass
    assert "more than 10000 records hold updated_at" in str(refused.value)


def test_the_fake_refuses_a_search_page_past_the_cap_as_hubspot_does(
        fake: FakeHubSpot) -> None:
    client = get_client(HubSpotSettings.model_validate(hub(fake)))
    response = client.http.post(f"{fake.url}/crm/v3/objects/contacts/search",
                                json={"after": "9900", "limit": 200},
                                headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert "limited to 10000 total results" in response.json()["message"]


def test_the_fake_holds_requests_to_hubspots_batch_size_and_page_size(
        fake: FakeHubSpot) -> None:
    client = get_client(HubSpotSettings.model_validate(hub(fake)))
    client.request("POST", "/crm/v3/objects/contacts/batch/upsert", json={"inputs": [
        {"idProperty": "email", "id": f"p{i}@x.io", "properties": {}} for i in range(101)]})
    client.request("POST", "/crm/v3/objects/contacts/search", json={"limit": 201})
    assert len(fake.api.violations) == 2
    assert fake.api.violations[0].endswith("is too long at ['inputs']")  # 101 inputs
    assert "201 is greater than the maximum of 200" in fake.api.violations[1]
    fake.api.violations.clear()  # those were the point


# -- what a run reports ------------------------------------------------------------------------
def test_the_run_logs_its_api_calls_and_the_daily_allowance_left(
        tmp_path: Path, fake: FakeHubSpot) -> None:
    result = run(to_hubspot(tmp_path, fake, 150), "people")
    total = len(fake.api.calls)
    logs = messages(result)
    assert f"INFO hub.contacts: {total} API calls" in logs
    assert f"INFO hub.contacts: HubSpot daily limit: {250_000 - total} of 250000 calls " \
           "left" in logs


def test_no_token_appears_in_results_logs_or_errors(tmp_path: Path, fake: FakeHubSpot,
                                                    capsys: pytest.CaptureFixture[str],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    project = to_hubspot(tmp_path, fake, 20)
    good = json.dumps(spec(run(project, "people")), default=str)
    fake.token = "pat-na1-rotated-0000"  # the project's token no longer works
    update(f"sqlite:///{tmp_path}/src.db", "people", {"id": 1}, {"name": "again"})
    bad = run(project, "people")
    assert status(bad) == "failed"
    (error,) = errors(bad)
    assert error["message"] == (
        "hub.contacts: HubSpot: GET /crm/v3/properties/contacts refused: HTTP 401 "
        "INVALID_AUTHENTICATION: Authentication credentials not found. This API supports "
        "OAuth 2.0 authentication. (check the credentials in the connector's settings)"
    ), error["message"]
    shown = good + json.dumps(bad.to_spec(), default=str) + "\n".join(bad.logs)
    out = capsys.readouterr()
    for text in (shown, out.out, out.err, caplog.text):
        assert TOKEN not in text


# -- SIGKILL ---------------------------------------------------------------------------------
KILL_ROWS = 5000
KILLS = 20
KILL_BATCH = 500


def test_sigkill_at_20_random_points_of_a_5000_record_upsert_leaves_every_record_once(
        tmp_path: Path, fake: FakeHubSpot) -> None:
    rng = Random("hubspot-crash")
    names = {i: f"Name {i}" for i in range(1, KILL_ROWS + 1)}
    src = seed_source(tmp_path, [person(i, name=names[i]) for i in names])
    project_file = write_project(
        tmp_path, {"src": {"type": "sql", "url": src}, "hub": hub(fake)},
        changeTrackingField="updated_at", batchSize=KILL_BATCH,
        retry={"maxAttempts": 3, "backoffMs": 50})
    people = sa.Table("people", sa.MetaData(), sa.Column("id", sa.Integer),
                      sa.Column("name", sa.Text), sa.Column("updated_at", sa.DateTime))
    pace = Pace(first=[1.0], step=[0.15], tail=[0.1], window=10)
    state_db = tmp_path / ".sync_assets" / "state.db"

    def remaining() -> int:
        """Source records at or after the sync's cursor: what the next run reads."""
        cursor = None
        if state_db.exists():
            engine = sa.create_engine(f"sqlite:///{state_db}")
            with engine.connect() as conn:
                if sa.inspect(conn).has_table("_sync_assets_cursor"):
                    cursor = StateStore("people").load_cursor(conn)
            engine.dispose()
        engine = sa.create_engine(src)
        with engine.connect() as conn:
            stmt = sa.select(sa.func.count()).select_from(people)
            if cursor is not None:
                stmt = stmt.where(people.c.updated_at >= cursor)
            found = int(conn.execute(stmt).scalar() or 0)
        engine.dispose()
        return found

    landed: Counter[str] = Counter()
    for round_no in range(KILLS):
        batches = max(1, math.ceil(remaining() / KILL_BATCH))
        where, _ = kill_one_run([sys.executable, str(WORKER), str(project_file), "people"],
                                rng, batches, True, pace, tmp_path / "worker.err")
        landed[where] += 1
        # changes between runs, spread over the records: the next run writes them
        picked = rng.sample(sorted(names), rng.randint(KILL_BATCH // 2, 2 * KILL_BATCH))
        engine = sa.create_engine(src)
        with engine.begin() as conn:
            for i in picked:
                names[i] = f"Name {i} r{round_no}"
                conn.execute(sa.update(people).where(people.c.id == i).values(
                    name=names[i], updated_at=T0 + timedelta(days=1, minutes=round_no)))
        engine.dispose()
    print(f"\nhubspot: {KILLS} kills: {dict(landed)}")
    project = load_project(project_file, env={})
    final = spec(run(project, "people"))
    assert final["status"] == "completed" and final["stats"]["recordsErrored"] == 0, final
    writes = len(fake.write_calls(answered=False))
    again = spec(run(project, "people"))["stats"]
    assert (again["recordsInserted"], again["recordsUpdated"]) == (0, 0), again
    assert len(fake.write_calls(answered=False)) == writes
    stored = held(fake)  # fails on an email held twice
    assert len(stored) == KILL_ROWS
    assert {e: v["name"] for e, v in stored.items()} == {
        f"p{i}@x.io": names[i] for i in names}
    assert landed["mid-run"] + landed["after last batch"] >= KILLS // 2, landed


def test_dagster_metadata_counts_the_api_calls_and_holds_no_token(
        tmp_path: Path, fake: FakeHubSpot, monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    from sync_assets import build_definitions

    src = seed_source(tmp_path, [person(i) for i in range(1, 21)])
    path = write_project(tmp_path, {"src": {"type": "sql", "url": src},
                                    "hub": {**hub(fake), "token": "${HUBSPOT_TOKEN}"}})
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    defs = build_definitions(path)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    done = dg.materialize(assets, resources=defs.resources, raise_on_error=False)
    assert done.success, [str(e) for e in done.all_events if e.is_failure]
    (event,) = done.get_asset_materialization_events()
    meta = {k: str(v.value) for k, v in event.materialization.metadata.items()}
    # the run's calls: the properties, the lookup by email, one upsert of the 20 (the
    # asset checks after it describe and count on their own endpoints)
    assert meta["apiCalls"] == "3"
    assert [c.path.rsplit("/", 1)[-1] for c in fake.api.calls[:3]] == [
        "contacts", "read", "upsert"]
    assert len(held(fake)) == 20
    for text in (json.dumps(meta), "\n".join(str(e) for e in done.all_events)):
        assert TOKEN not in text
