"""The Salesforce connector (`type: salesforce`) against the validating fake org of
tests/fake_salesforce.py: the three OAuth2 grants with secrets from the environment, a new token
after INVALID_SESSION_ID, describe, SOQL reads keyset-paged on (SystemModstamp, Id) through
nextRecordsUrl, deletes from queryAll and getDeleted, writes in sObject Collections of 200 and
Bulk API 2.0 jobs above the threshold (failed results refused per record, unprocessed ones
written again), the org's limits (Sforce-Limit-Info in the logs, REQUEST_LIMIT_EXCEEDED), 429s
waited out as Retry-After says, no secret in any output, and every record once after SIGKILLs
at random points of a 5,000-record upsert."""

from __future__ import annotations

import json
import logging
import math
import sys
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
from sync_assets.connectors.salesforce.connector import (
    SalesforceObject,
    clients,
    close_clients,
    open_salesforce,
)
from sync_assets.connectors.salesforce.settings import SalesforceSettings
from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import run
from sync_assets.project import SyncConfigError
from sync_assets.state import StateStore

from engine_helpers import counts, create_table, errors, spec, status, update
from fake_salesforce import FakeSalesforce
from kill_helpers import Pace, kill_one_run

WORKER = Path(__file__).with_name("objectstack_crash_worker.py")  # runs any sync of a project
T0 = datetime(2024, 1, 1, 10, 0, 0)
SECRET = "sf-client-secret-8d2f41"
REFRESH = "5Aep861-refresh-token-77aa"
PASSWORD = "hunter2-password"
SECURITY_TOKEN = "sectok-XY12"
PERSON = {"email": "text", "name": "text", "score": "integer", "updated_at": "datetime"}
WRITES = ("POST", "PATCH", "PUT", "DELETE")


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce(client_secret=SECRET, refresh_token=REFRESH, username="sync@x.io",
                        password=PASSWORD + SECURITY_TOKEN, bulk_delay=0.01) as org:
        org.define("Person__c", PERSON, ["email"], refuse_negative="score")
        yield org
        close_clients()
        dispose_engines()
        org.api.assert_clean()


def sf(fake: FakeSalesforce, **extra: Any) -> dict[str, Any]:
    return {"type": "salesforce", "clientId": fake.client_id, "clientSecret": "${SF_SECRET}",
            "loginUrl": fake.url, "bulkPollSeconds": 0.01, **extra}


ENV = {"SF_SECRET": SECRET}


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


def write_project(tmp_path: Path, connectors: Mapping[str, Any], name: str = "people",
                  **sync: Any) -> Path:
    config = {"name": name,
              "source": {"connectorInstanceId": "src", "externalResource": "people"},
              "destination": {"connectorInstanceId": "sf", "externalResource": "Person__c",
                              "operation": "upsert", "matchKey": ["email"],
                              "mapping": {"email": "email", "name": "name", "score": "score"}},
              "batchSize": 1000, **sync}
    data = {"objectstack": {"url": f"sqlite:///{tmp_path}/objectstack.db"},
            "connectors": dict(connectors), "syncs": [config]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def to_salesforce(tmp_path: Path, fake: FakeSalesforce, n: int, settings: Any = None,
                  **sync: Any) -> Any:
    """A project syncing n source people into Person__c by email."""
    src = seed_source(tmp_path, [person(i) for i in range(1, n + 1)])
    path = write_project(tmp_path, {"src": {"type": "sql", "url": src},
                                    "sf": settings or sf(fake)}, **sync)
    return load_project(path, env=ENV)


def held(fake: FakeSalesforce) -> dict[str, dict[str, Any]]:
    """The live Person__c records by email: name and score (fails on an email held twice)."""
    out: dict[str, dict[str, Any]] = {}
    for record in fake.objects["Person__c"].live():
        email = record["email"]
        assert email not in out, f"{email} held twice"
        out[email] = {"name": record["name"], "score": record["score"]}
    return out


def messages(result: Any) -> list[str]:
    return [line.split(" ", 1)[1] for line in result.to_spec()["logs"]]


def write_calls(fake: FakeSalesforce) -> list[str]:
    return [f"{c.method} {c.path}" for c in fake.api.calls
            if c.method in WRITES and not c.path.startswith("/services/oauth2")]


def endpoint(fake: FakeSalesforce, resource: str = "Person__c", **extra: Any
             ) -> SalesforceObject:
    settings = SalesforceSettings.model_validate({**sf(fake), "clientSecret": SECRET, **extra})
    return open_salesforce(settings, resource, f"sf.{resource}")


# -- settings and sessions ---------------------------------------------------------------------
def test_the_client_secret_comes_from_an_environment_variable_as_a_secret(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    project = to_salesforce(tmp_path, fake, 1)
    settings = project.connectors["sf"]
    assert settings.client_secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


@pytest.mark.parametrize(("extra", "named"), [
    ({"auth": "refresh_token", "clientSecret": None}, "refreshToken"),
    ({"auth": "password"}, "username, password"),
    ({"loginUrl": "login.salesforce.com"}, "loginUrl"),
    ({"bulkThreshold": 0}, "bulkThreshold"),
    ({"apiVersion": "v62"}, "apiVersion"),
])
def test_bad_settings_are_load_time_errors_naming_the_field(
        tmp_path: Path, fake: FakeSalesforce, extra: dict[str, Any], named: str) -> None:
    settings = {k: v for k, v in {**sf(fake), **extra}.items() if v is not None}
    with pytest.raises(SyncConfigError) as failed:
        to_salesforce(tmp_path, fake, 1, settings=settings)
    assert named in str(failed.value)
    assert SECRET not in str(failed.value)


@pytest.mark.parametrize(("operation", "key", "says"), [
    ("upsert", ["email", "name"], "Salesforce upserts by one External ID field; this key has 2 "
                                  "fields (email, name)"),
    ("insert", ["Id"], "Salesforce assigns record Ids: insert cannot create records matched "
                       "by Id"),
])
def test_a_match_key_salesforce_cannot_create_by_is_a_load_time_error(
        tmp_path: Path, fake: FakeSalesforce, operation: str, key: list[str], says: str) -> None:
    with pytest.raises(SyncConfigError) as failed:
        to_salesforce(tmp_path, fake, 1, destination={
            "connectorInstanceId": "sf", "externalResource": "Person__c",
            "operation": operation, "matchKey": key, "mapping": {"email": "email"}})
    assert "destination.matchKey" in str(failed.value) and says in str(failed.value)
    assert fake.api.calls == []  # decided without asking the org


def test_update_and_delete_may_match_by_any_field_or_by_id(tmp_path: Path,
                                                           fake: FakeSalesforce) -> None:
    for operation, key in (("update", ["email", "name"]), ("delete", ["Id"])):
        (tmp_path / operation).mkdir()
        project = to_salesforce(tmp_path / operation, fake, 1, destination={
            "connectorInstanceId": "sf", "externalResource": "Person__c",
            "operation": operation, "matchKey": key,
            "mapping": {"email": "email", "name": "name", "id": "Id"}})
        assert project.sync("people").config.destination.matchKey == key


@pytest.mark.parametrize(("grant", "extra"), [
    ("client_credentials", {}),
    ("refresh_token", {"refreshToken": REFRESH}),
    ("password", {"username": "sync@x.io", "password": PASSWORD,
                  "securityToken": SECURITY_TOKEN}),
])
def test_each_oauth2_grant_gets_a_token_and_the_instance_url(
        fake: FakeSalesforce, grant: str, extra: dict[str, Any]) -> None:
    table = endpoint(fake, auth=grant, **extra)
    assert table.count() == 0
    assert fake.grants == [grant]
    assert table.client.instance_url == fake.url


def test_instance_url_in_the_settings_wins_over_the_token_answers(
        fake: FakeSalesforce) -> None:
    fake.instance_url = "http://127.0.0.1:9"  # nothing listens there
    assert endpoint(fake, instanceUrl=fake.url).count() == 0
    assert [c.path for c in fake.api.calls][-1] == "/services/data/v62.0/query"


def test_a_wrong_secret_fails_naming_the_grant_never_the_secret(fake: FakeSalesforce) -> None:
    table = endpoint(fake, clientSecret="not-the-secret-123")
    with pytest.raises(ConnectorError) as failed:
        table.describe()
    assert str(failed.value) == (
        f"describing sf.Person__c failed: salesforce: POST {fake.url}/services/oauth2/token "
        "refused: HTTP 400 invalid_grant: authentication failure")


def test_an_expired_session_gets_a_new_token_once(fake: FakeSalesforce) -> None:
    table = endpoint(fake)
    assert table.count() == 0
    fake.expire_tokens()  # INVALID_SESSION_ID from now on for the old token
    assert table.count() == 0
    assert [c.status for c in fake.api.calls] == [200, 200, 200, 401, 200, 200]
    assert fake.grants == ["client_credentials", "client_credentials"]
    assert table.usage().calls == 6


# -- describe --------------------------------------------------------------------------------
def test_describe_gives_kinds_read_only_fields_and_external_id_keys(
        fake: FakeSalesforce) -> None:
    desc = endpoint(fake).describe()
    kinds = {n: f.kind for n, f in desc.fields.items()}
    assert kinds == {"Id": "text", "IsDeleted": "boolean", "SystemModstamp": "datetime",
                     "CreatedDate": "datetime", "LastModifiedDate": "datetime",
                     "email": "text", "name": "text", "score": "integer",
                     "updated_at": "datetime"}
    assert desc.read_only == {"IsDeleted", "SystemModstamp", "CreatedDate", "LastModifiedDate"}
    assert desc.primary_key == ("Id",) and desc.unique_keys == (("email",),)
    assert fake.api.calls[-1].path == "/services/data/v62.0/sobjects/Person__c/describe"


def test_an_sobject_the_org_does_not_have_does_not_exist(fake: FakeSalesforce) -> None:
    table = endpoint(fake, "Nothing__c")
    assert table.describe().exists is False and table.count() is None


# -- reads -----------------------------------------------------------------------------------
def test_reads_page_by_keyset_on_systemmodstamp_and_id_through_next_records_urls(
        fake: FakeSalesforce) -> None:
    fake.query_page = 4  # pages of the query itself, followed by nextRecordsUrl
    fake.define("Person__c", PERSON, ["email"], [person(i) for i in range(1, 24)])
    request = ReadRequest(columns=["email"], order_by=["SystemModstamp", "Id"], batch_size=10,
                          cursor_field="SystemModstamp")
    pages = list(endpoint(fake).read_batches(request))
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [r["email"] for p in pages for r in p] == [f"p{i}@x.io" for i in range(1, 24)]
    tenth = sorted(fake.objects["Person__c"].live(),
                   key=lambda r: (r["SystemModstamp"], r["Id"]))[9]
    stamp = tenth["SystemModstamp"].strftime("%Y-%m-%dT%H:%M:%SZ")
    queries = [c.query["q"][0] for c in fake.api.calls if c.path.endswith("/query")]
    assert queries[1] == (
        "SELECT Id, email, SystemModstamp FROM Person__c WHERE SystemModstamp != null AND "
        f"((SystemModstamp > {stamp}) OR (SystemModstamp = {stamp} AND Id > '{tenth['Id']}')) "
        "ORDER BY SystemModstamp ASC NULLS FIRST, Id ASC NULLS FIRST LIMIT 10")
    # a page of 10 is the query's pages of 4, 4 and 2: two nextRecordsUrl calls each
    assert sum(1 for c in fake.api.calls if "/query/" in c.path) == 4


def test_incremental_reads_take_the_change_time_from_the_cursor_on(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    fake.define("Person__c", PERSON, ["email"], [person(i) for i in range(1, 13)])
    wh = f"sqlite:///{tmp_path}/wh.db"
    path = write_project(
        tmp_path, {"sf": sf(fake), "wh": {"type": "sql", "url": wh}},
        source={"connectorInstanceId": "sf", "externalResource": "Person__c"},
        destination={"connectorInstanceId": "wh", "externalResource": "people",
                     "operation": "upsert", "matchKey": ["email"],
                     "mapping": {"email": "email", "name": "name", "score": "score"}},
        changeTrackingField="SystemModstamp")
    project = load_project(path, env=ENV)
    assert counts(run(project, "people")) == {"processed": 12, "inserted": 12}
    fake.change("Person__c", {"email": "p7@x.io"}, {"name": "seven"})
    again = run(project, "people")
    # the boundary second is read again (SOQL literals have no fraction), then skipped
    assert counts(again)["updated"] == 1 and "inserted" not in counts(again)
    with sa.create_engine(wh).connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM people WHERE email = 'p7@x.io'")
                            ).scalar() == "seven"


def test_deletes_come_from_query_all_and_from_get_deleted(fake: FakeSalesforce) -> None:
    fake.define("Person__c", PERSON, ["email"], [person(i) for i in range(1, 6)])
    before = datetime.now(UTC) - timedelta(seconds=2)
    fake.delete_where("Person__c", {"email": "p2@x.io"})
    fake.delete_where("Person__c", {"email": "p4@x.io"})
    table = endpoint(fake)
    gone = table.read_deleted(["email"], since=before)
    assert [r["email"] for r in gone] == ["p2@x.io", "p4@x.io"]
    ids = table.deleted_ids(before - timedelta(minutes=2), datetime.now(UTC) + timedelta(seconds=2))
    assert [i for i, _ in ids] == [r["Id"] for r in gone]
    assert table.count() == 3


def mirror_from_salesforce(tmp_path: Path, fake: FakeSalesforce, n: int = 12,
                           **source: Any) -> tuple[Any, str]:
    """A project mirroring Person__c into SQLite by email, incremental on SystemModstamp."""
    fake.define("Person__c", PERSON, ["email"], [person(i) for i in range(1, n + 1)])
    wh = f"sqlite:///{tmp_path}/wh.db"
    path = write_project(
        tmp_path, {"sf": sf(fake), "wh": {"type": "sql", "url": wh}},
        source={"connectorInstanceId": "sf", "externalResource": "Person__c", **source},
        destination={"connectorInstanceId": "wh", "externalResource": "people",
                     "operation": "sync", "matchKey": ["email"],
                     "mapping": {"email": "email", "name": "name"}},
        changeTrackingField="SystemModstamp")
    return load_project(path, env=ENV), wh


def mirrored(wh: str) -> list[str]:
    with sa.create_engine(wh).connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT email FROM people ORDER BY email"))]


def whole_queries(fake: FakeSalesforce) -> list[str]:
    """SOQL queries of live records bounded by no change time: reads of every record."""
    return [q for c in fake.api.calls if c.path.endswith("/query")
            for q in c.query["q"] if "SystemModstamp >=" not in q and " IN (" not in q
            and "= null" not in q and not q.endswith("LIMIT 1")]


def test_a_mirror_takes_the_orgs_deletes_instead_of_reading_every_record(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    project, wh = mirror_from_salesforce(tmp_path, fake)
    assert counts(run(project, "people")) == {"processed": 12, "inserted": 12}
    fake.delete_where("Person__c", {"email": "p3@x.io"})
    fake.delete_where("Person__c", {"email": "p5@x.io"})
    fake.api.calls.clear()
    second = run(project, "people")
    assert counts(second)["deleted"] == 2 and "inserted" not in counts(second)
    assert whole_queries(fake) == []
    assert sum(1 for c in fake.api.calls if c.path.endswith("/deleted/")) == 1
    assert any("reports 2 records deleted since" in m for m in messages(second))
    assert mirrored(wh) == sorted(f"p{i}@x.io" for i in range(1, 13) if i not in (3, 5))
    assert "deleted" not in counts(run(project, "people"))  # reported again, gone already


def test_after_the_recycle_bin_is_emptied_the_mirror_reads_every_record(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    project, wh = mirror_from_salesforce(tmp_path, fake)
    run(project, "people")
    fake.delete_where("Person__c", {"email": "p3@x.io"})
    fake.empty_recycle_bin("Person__c")
    fake.api.calls.clear()
    second = run(project, "people")
    assert counts(second)["deleted"] == 1
    assert len(whole_queries(fake)) == 1  # every key, for the mirror
    assert any("mirror deleted 1 records that left the source" in m for m in messages(second))
    assert "p3@x.io" not in mirrored(wh)


def test_a_filter_on_an_unmapped_field_and_a_record_leaving_it(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    """Salesforce's filters are applied by the engine, on the field read for it; a record
    changed to fail the filter leaves the mirror without a read of every record."""
    project, wh = mirror_from_salesforce(tmp_path, fake, filters={"score": {"$gte": 5}})
    assert counts(run(project, "people")) == {"processed": 8, "inserted": 8}  # scores 5..12
    fake.change("Person__c", {"email": "p9@x.io"}, {"score": 2})
    fake.api.calls.clear()
    second = run(project, "people")
    assert counts(second)["deleted"] == 1
    assert whole_queries(fake) == []
    # every record changed in the cursor's second is read again: 4 were never let through
    assert any("5 records changed since then are outside the filter; 1 of them was" in m
               for m in messages(second))
    assert mirrored(wh) == sorted(f"p{i}@x.io" for i in range(5, 13) if i != 9)


# -- writes ----------------------------------------------------------------------------------
def test_a_full_load_writes_200_records_a_call_and_a_rerun_writes_nothing(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    project = to_salesforce(tmp_path, fake, 5000, syncMode="full")
    first = run(project, "people")
    assert counts(first) == {"processed": 5000, "inserted": 5000}
    sizes = fake.collection_sizes
    assert sizes == [200] * 25  # 100% of the sObject Collections maximum
    writes = write_calls(fake)
    assert writes == ["PATCH /services/data/v62.0/composite/sobjects/Person__c/email"] * 25
    calls = len(fake.api.calls)
    assert f"INFO sf.Person__c: {calls} API calls" in messages(first)
    assert counts(run(project, "people")) == {"processed": 5000, "skipped": 5000}
    assert write_calls(fake) == writes  # not one write call more
    assert len(held(fake)) == 5000


def test_a_batch_over_the_threshold_is_one_bulk_api_job(tmp_path: Path,
                                                         fake: FakeSalesforce) -> None:
    project = to_salesforce(tmp_path, fake, 5000, batchSize=2500)
    assert counts(run(project, "people")) == {"processed": 5000, "inserted": 5000}
    assert fake.collection_sizes == []
    assert [j["operation"] for j in fake.jobs.values()] == ["upsert", "upsert"]
    assert [len(j["successful"]) for j in fake.jobs.values()] == [2500, 2500]
    jobs = sorted(fake.jobs)
    assert write_calls(fake) == [
        call for job in jobs for call in (
            "POST /services/data/v62.0/jobs/ingest",
            f"PUT /services/data/v62.0/jobs/ingest/{job}/batches",
            f"PATCH /services/data/v62.0/jobs/ingest/{job}")]
    assert held(fake) == {f"p{i}@x.io": {"name": f"name {i}", "score": i % 50}
                          for i in range(1, 5001)}


def test_a_record_the_org_refuses_is_errored_with_its_code_in_collections_and_bulk(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    src = seed_source(tmp_path, [person(i, score=-1 if i in (3, 2222) else i % 50)
                                 for i in range(1, 2501)])
    for size in (100, 2500):  # sObject Collections, then one Bulk API job
        fake.define("Person__c", PERSON, ["email"], refuse_negative="score")
        path = write_project(tmp_path, {"src": {"type": "sql", "url": src}, "sf": sf(fake)},
                             f"people{size}", batchSize=size,
                             errorHandling={"onSyncError": "skip"})
        result = run(load_project(path, env=ENV), f"people{size}")
        assert status(result) == "partial"
        assert counts(result) == {"processed": 2500, "inserted": 2498, "errored": 2}
        assert sorted((e["recordId"], e["code"]) for e in errors(result)) == [
            ("2222", "WRITE_ERROR"), ("3", "WRITE_ERROR")]
        assert "FIELD_CUSTOM_VALIDATION_EXCEPTION: score must be at least 0" in errors(
            result)[0]["message"]
        assert len(held(fake)) == 2498
    assert len(fake.jobs) == 1 and len(fake.jobs[next(iter(fake.jobs))]["failed"]) == 2


def test_records_a_bulk_job_left_unprocessed_are_written_again(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    project = to_salesforce(tmp_path, fake, 2500, batchSize=2500,
                            retry={"maxAttempts": 2, "backoffMs": 0})
    fake.bulk_fail_after = 1000  # the first job fails after 1,000 records
    result = run(project, "people")
    # the retried batch finds the 1,000 the failed job wrote as they should be
    assert counts(result) == {"processed": 2500, "inserted": 1500, "skipped": 1000}
    (job,) = fake.jobs.values()
    assert job["state"] == "Failed" and len(job["unprocessed"]) == 1500
    # the 1,500 left are under the Bulk threshold: sObject Collections write them
    assert fake.collection_sizes == [200] * 7 + [100]
    assert len(held(fake)) == 2500


def test_updates_and_deletes_go_by_the_ids_the_key_finds(tmp_path: Path,
                                                         fake: FakeSalesforce) -> None:
    fake.define("Person__c", PERSON, ["email"], [person(i, name="old") for i in (2, 3, 9)])
    for operation, expected in (("update", {"processed": 5, "updated": 2, "skipped": 3}),
                                ("delete", {"processed": 5, "deleted": 2, "skipped": 3})):
        src = f"sqlite:///{tmp_path}/{operation}.db"
        create_table(src, "people", [sa.Column("id", sa.Integer, primary_key=True),
                                     sa.Column("email", sa.Text), sa.Column("name", sa.Text),
                                     sa.Column("score", sa.Integer)],
                     [{k: person(i)[k] for k in ("id", "email", "name", "score")}
                      for i in range(1, 6)])
        path = write_project(tmp_path, {"src": {"type": "sql", "url": src}, "sf": sf(fake)},
                             operation, destination={
                                 "connectorInstanceId": "sf", "externalResource": "Person__c",
                                 "operation": operation, "matchKey": ["email"],
                                 "mapping": {"email": "email", "name": "name"}})
        assert counts(run(load_project(path, env=ENV), operation)) == expected
    assert held(fake) == {"p9@x.io": {"name": "old", "score": 9}}
    assert write_calls(fake) == [
        "PATCH /services/data/v62.0/composite/sobjects",
        "DELETE /services/data/v62.0/composite/sobjects"]


def test_an_insert_by_a_key_that_is_no_external_id_fails_naming_the_fields(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    project = to_salesforce(tmp_path, fake, 3, destination={
        "connectorInstanceId": "sf", "externalResource": "Person__c", "operation": "upsert",
        "matchKey": ["name"], "mapping": {"email": "email", "name": "name"}})
    result = run(project, "people")
    assert status(result) == "failed"
    assert "matchKey name is not one External ID field; External ID fields of Person__c: " \
           "email" in errors(result)[0]["message"]
    assert write_calls(fake) == []


def test_a_bulk_job_still_processing_is_waited_for_before_the_next_write(
        fake: FakeSalesforce) -> None:
    fake.bulk_delay = 0.6
    # a run killed right after closing its job: the org processes the job anyway, later
    job = fake.submit_job("Person__c", "upsert", "email",
                          "email,name\na@x.io,v1\nb@x.io,v1\n")
    table = endpoint(fake)
    table.write(None, "upsert", ["email"], [{"email": "a@x.io", "name": "v2"}])
    assert job["state"] == "JobComplete"
    assert {e: v["name"] for e, v in held(fake).items()} == {"a@x.io": "v2", "b@x.io": "v1"}
    polls = [c for c in fake.api.calls if c.path == "/services/data/v62.0/jobs/ingest"]
    assert len(polls) >= 2  # waited while the job was processing


# -- limits ----------------------------------------------------------------------------------
def test_the_run_logs_its_api_calls_and_the_orgs_api_usage(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    result = run(to_salesforce(tmp_path, fake, 150), "people")
    total = len(fake.api.calls)
    used = fake.used
    logs = messages(result)
    assert f"INFO sf.Person__c: {total} API calls" in logs
    assert f"INFO sf.Person__c: API requests used in the last 24 h: {used} of 1000000 " \
           "(Sforce-Limit-Info)" in logs


def test_the_orgs_request_limit_fails_the_run_naming_the_limit(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    fake.daily_limit = 3  # describe, the jobs check, then the first write is over it
    result = run(to_salesforce(tmp_path, fake, 10, retry={"maxAttempts": 1, "backoffMs": 0}),
                 "people", sleep=lambda _s: None)
    assert status(result) == "failed"
    (error,) = errors(result)
    assert "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded. - the org's API request " \
           "limit is reached (api-usage 3/3)" in error["message"]
    assert "INFO sf.Person__c: REQUEST_LIMIT_EXCEEDED: the org's API request limit is " \
           "reached (api-usage 3/3)" in messages(result)
    assert held(fake) == {}


def test_429s_on_a_third_of_the_calls_wait_retry_after_and_write_each_record_once(
        tmp_path: Path, fake: FakeSalesforce) -> None:
    project = to_salesforce(tmp_path, fake, 3000, batchSize=500)
    with fake.api.faults(every=3, retry_after=0.05):
        first = run(project, "people")
        update(f"sqlite:///{tmp_path}/src.db", "people", {"id": 7}, {"name": "seven"})
        second = run(project, "people")
    assert counts(first) == {"processed": 3000, "inserted": 3000}
    assert counts(second) == {"processed": 3000, "updated": 1, "skipped": 2999}
    limited = [c for c in fake.api.calls if c.status == 429]
    assert len(limited) == len(fake.api.calls) // 3
    (client,) = clients()
    assert client.api.waits == [0.05] * len(limited)  # each as long as Retry-After said
    assert held(fake) == {f"p{i}@x.io": {"name": "seven" if i == 7 else f"name {i}",
                                         "score": i % 50} for i in range(1, 3001)}


# -- secrets ---------------------------------------------------------------------------------
def test_no_secret_appears_in_results_logs_errors_or_dagster_metadata(
        tmp_path: Path, fake: FakeSalesforce, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    from sync_assets.orchestration.assets import result_metadata

    caplog.set_level(logging.DEBUG)
    project = to_salesforce(tmp_path, fake, 20)
    good = run(project, "people")
    tokens = set(fake.tokens)
    meta = result_metadata(spec(good), None, None)
    fake.client_secret = "rotated-secret-0000"  # the project's secret no longer works
    fake.expire_tokens()
    update(f"sqlite:///{tmp_path}/src.db", "people", {"id": 1}, {"name": "again"})
    close_clients()
    bad = run(project, "people")
    assert status(bad) == "failed"
    assert "HTTP 400 invalid_grant: authentication failure" in errors(bad)[0]["message"]
    shown = "\n".join([json.dumps(spec(good), default=str), json.dumps(bad.to_spec(),
                      default=str), "\n".join(bad.logs), repr(meta)])
    out = capsys.readouterr()
    for text in (shown, out.out, out.err, caplog.text):
        for secret in (SECRET, *tokens):
            assert secret not in text


# -- SIGKILL ---------------------------------------------------------------------------------
KILL_ROWS = 5000
KILLS = 20
KILL_BATCH = 1000


def test_sigkill_at_20_random_points_of_a_5000_record_upsert_leaves_every_record_once(
        tmp_path: Path, fake: FakeSalesforce, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_SECRET", SECRET)  # the worker's project reads it from there
    fake.bulk_delay = 0.05
    rng = Random("salesforce-crash")
    names = {i: f"Name {i}" for i in range(1, KILL_ROWS + 1)}
    src = seed_source(tmp_path, [person(i, name=names[i]) for i in names])
    # batches of 1,000 go through Bulk API jobs, smaller ones (changes) through Collections
    project_file = write_project(
        tmp_path, {"src": {"type": "sql", "url": src}, "sf": sf(fake, bulkThreshold=1000)},
        changeTrackingField="updated_at", batchSize=KILL_BATCH,
        retry={"maxAttempts": 3, "backoffMs": 50})
    people = sa.Table("people", sa.MetaData(), sa.Column("id", sa.Integer),
                      sa.Column("name", sa.Text), sa.Column("updated_at", sa.DateTime))
    pace = Pace(first=[1.0], step=[0.3], tail=[0.1], window=10)
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
        picked = rng.sample(sorted(names), rng.randint(50, 1500))  # changes between runs
        engine = sa.create_engine(src)
        with engine.begin() as conn:
            for i in picked:
                names[i] = f"Name {i} r{round_no}"
                conn.execute(sa.update(people).where(people.c.id == i).values(
                    name=names[i], updated_at=T0 + timedelta(days=1, minutes=round_no)))
        engine.dispose()
    print(f"\nsalesforce: {KILLS} kills: {dict(landed)}; {len(fake.jobs)} bulk jobs")
    project = load_project(project_file, env=ENV)
    final = spec(run(project, "people"))
    assert final["status"] == "completed" and final["stats"]["recordsErrored"] == 0, final
    fake.settle()
    writes = len(write_calls(fake))
    again = spec(run(project, "people"))["stats"]
    assert (again["recordsInserted"], again["recordsUpdated"]) == (0, 0), again
    assert len(write_calls(fake)) == writes
    stored = held(fake)  # fails on an email held twice
    assert len(stored) == KILL_ROWS
    assert {e: v["name"] for e, v in stored.items()} == {
        f"p{i}@x.io": names[i] for i in names}
    assert landed["mid-run"] + landed["after last batch"] >= KILLS // 2, landed
    assert any(j["state"] == "JobComplete" for j in fake.jobs.values())


def test_the_change_token_moves_when_a_record_is_written(fake: FakeSalesforce) -> None:
    fake.define("Person__c", PERSON, ["email"], [person(i) for i in range(1, 4)])
    table = endpoint(fake)
    before = table.change_token(None, None)
    assert before[0] == 3
    fake.objects["Person__c"].records[next(iter(fake.objects["Person__c"].records))][
        "SystemModstamp"] += timedelta(seconds=5)  # written later by someone
    after = table.change_token(None, None)
    assert after[0] == 3 and after[1] == before[1] + timedelta(seconds=5)


# -- the fake itself -----------------------------------------------------------------------------
def test_the_fake_refuses_soql_outside_the_subset_it_models(fake: FakeSalesforce) -> None:
    client = endpoint(fake).client
    with pytest.raises(ConnectorError) as refused:
        client.json("GET", "/query", params={"q": "SELECT name FROM Person__c WHERE name "
                                                  "LIKE 'a%'"})
    assert "HTTP 400 MALFORMED_QUERY" in str(refused.value)
    assert len(fake.api.violations) == 1 and "LIKE" in fake.api.violations[0]
    fake.api.violations.clear()


def test_the_fake_refuses_a_collection_of_more_than_200_records(fake: FakeSalesforce) -> None:
    client = endpoint(fake).client
    records = [{"attributes": {"type": "Person__c"}, "email": f"p{i}@x.io"} for i in range(201)]
    with pytest.raises(ConnectorError) as refused:
        client.json("PATCH", "/composite/sobjects/Person__c/email",
                    json={"allOrNone": False, "records": records})
    assert "HTTP 400 EXCEEDED_ID_LIMIT" in str(refused.value)
    (violation,) = fake.api.violations  # the description allows 200 at most, too
    assert violation.startswith("request PATCH") and "is too long" in violation
    fake.api.violations.clear()


def test_the_fake_creates_records_and_refuses_a_duplicate_external_id(
        fake: FakeSalesforce) -> None:
    client = endpoint(fake).client
    answers = client.json("POST", "/composite/sobjects", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Person__c"}, "email": "a@x.io", "name": "a"},
        {"attributes": {"type": "Person__c"}, "email": "A@X.IO", "name": "again"}]})
    assert answers[0]["success"] is True
    assert answers[1]["success"] is False
    assert answers[1]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
    assert held(fake) == {"a@x.io": {"name": "a", "score": None}}
