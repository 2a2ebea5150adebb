"""The generic HTTP/JSON connector (`type: http`) against tests/fake_http.py, a stateful fake
of the project's example JSON API that checks every request and answer against
tests/apis/example_http.openapi.json.

Settings refused at load naming the field; reads through each pagination style and each kind
of authentication (an OAuth2 token fetched again after it expires); fields from settings or
inferred from the first page; full loads in full batches of 100 and reruns that write nothing;
single-record endpoints with the API's own refusals; 429s on a third of the calls waited as
Retry-After says; SIGKILLed runs that end with every record once; no secret in any output.
"""

from __future__ import annotations

import json
import math
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
from sync_assets.connectors.http.connector import HttpRecords
from sync_assets.connectors.http.settings import HttpSettings, http_operations
from sync_assets.connectors.sql import dispose_engines
from sync_assets.state import StateStore

from engine_helpers import counts, create_table, errors, rows, spec, status, sync, update
from fake_http import FakeHttp
from kill_helpers import Pace, kill_one_run
from peer_http import PERSON, http_settings

SECRET = "cs-live-4d3c2b1a0f9e8d7c"
WORKER = Path(__file__).with_name("objectstack_crash_worker.py")  # runs any sync of a project
T0 = datetime(2024, 5, 1, 8, 0, 0)


class TimedHttp(FakeHttp):
    """The fake, noting when each call arrived (to check the waits between them)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.arrivals: list[float] = []

    def _answer(self, request: Request) -> Response:
        with self.lock:
            self.arrivals.append(time.monotonic())
        return super()._answer(request)


@pytest.fixture
def api() -> Iterator[TimedHttp]:
    with TimedHttp(client_secret=SECRET, tokens=["static-token-5a5a5a"], api_key="ak-77aa88bb99",
                   basic=("svc", "pw-3e3e3e3e")) as fake:
        fake.define("people", PERSON, "email")  # an empty record set
        yield fake
        fake.assert_clean()


def person(i: int, **values: Any) -> dict[str, Any]:
    return {"id": i, "email": f"u{i:05d}@example.org", "name": f"Name {i}", "score": i % 97,
            "updated_at": T0 + timedelta(seconds=i), **values}


def api_person(i: int, **values: Any) -> dict[str, Any]:
    p = person(i, **values)
    return {"email": p["email"], "name": p["name"], "score": p["score"],
            "updated_at": p["updated_at"].isoformat()}


def seed(tmp_path: Path, n: int) -> str:
    url = f"sqlite:///{tmp_path}/src.db"
    create_table(url, "people", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        # unique: a first load knows every record is new and looks none up
        sa.Column("email", sa.Text, unique=True), sa.Column("name", sa.Text),
        sa.Column("score", sa.Integer), sa.Column("updated_at", sa.DateTime),
    ], [person(i) for i in range(1, n + 1)])
    return url


def connector(api: FakeHttp, **changes: Any) -> dict[str, Any]:
    settings = http_settings(api.url, "${EXAMPLE_CLIENT_SECRET}")
    settings.update(changes)
    return settings


def write_project(tmp_path: Path, settings: dict[str, Any], *, push: bool = True,
                  **sync_keys: Any) -> Path:
    api_side = {"connectorInstanceId": "api", "externalResource": "people"}
    sql_side = {"connectorInstanceId": "db", "externalResource": "people"}
    config: dict[str, Any] = {
        "name": "people",
        "source": sql_side if push else api_side,
        "destination": {**(api_side if push else sql_side), "operation": "upsert",
                        "matchKey": ["email"],
                        "mapping": {f: f for f in ("email", "name", "score", "updated_at")}},
        "batchSize": 500,
    }
    for key in ("operation", "matchKey", "mapping"):
        if key in sync_keys:
            config["destination"][key] = sync_keys.pop(key)
    config.update(sync_keys)
    db = f"sqlite:///{tmp_path}/{'src' if push else 'wh'}.db"
    data = {"connectors": {"api": settings, "db": {"type": "sql", "url": db}},
            "syncs": [config]}
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def project(tmp_path: Path, settings: dict[str, Any], **keys: Any) -> Any:
    return load_project(write_project(tmp_path, settings, **keys),
                        env={"EXAMPLE_CLIENT_SECRET": SECRET})


def api_calls(result: Any) -> int:
    (line,) = [line for line in spec(result)["logs"] if "api.people: " in line
               and " API call" in line]
    return int(line.split("api.people: ")[1].split(" API call")[0])


def held(api: FakeHttp) -> list[dict[str, Any]]:
    return api.records("people")


# -- settings -------------------------------------------------------------------------------


def test_the_client_secret_comes_from_the_environment_as_a_secret(
        tmp_path: Path, api: FakeHttp) -> None:
    settings = project(tmp_path, connector(api)).connectors["api"]
    assert isinstance(settings, HttpSettings)
    assert settings.auth.client_secret.get_secret_value() == SECRET  # type: ignore[union-attr]
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(("change", "where", "says"), [
    ({"baseUrl": "api.example.com"}, "connectors.api.baseUrl", "http:// or https://"),
    ({"key": []}, "connectors.api.key", "must not be empty"),
    ({"fields": {"email": "txt"}}, "connectors.api.fields", "unknown kind 'txt'"),
    ({"read": {"path": "v1/people"}}, "connectors.api.read.path", "must start with /"),
    ({"auth": {"type": "apiKey", "key": "k", "header": "X-Key", "query": "key"}},
     "connectors.api.auth", "not both"),
    ({"write": {"upsert": {"path": "/v1/records/{resource}/{email}", "batch": 10}}},
     "connectors.api.write.upsert", "batch must be 1"),
])
def test_bad_settings_are_refused_at_load_naming_the_field(
        tmp_path: Path, api: FakeHttp, change: dict[str, Any], where: str, says: str) -> None:
    with pytest.raises(SyncConfigError) as refused:
        project(tmp_path, connector(api, **change))
    assert where in str(refused.value) and says in str(refused.value)


def test_the_operations_a_config_allows_follow_its_endpoints(api: FakeHttp) -> None:
    full = HttpSettings.model_validate(http_settings(api.url))
    assert http_operations(full) == {"insert", "update", "upsert", "delete", "sync"}
    no_delete = HttpSettings.model_validate({**http_settings(api.url), "write": {
        "upsert": {"path": "/v1/records/{resource}/batch", "batch": 100,
                   "bodyPath": "records"}}})
    assert http_operations(no_delete) == {"insert", "update", "upsert"}
    write_only = HttpSettings.model_validate({
        "type": "http", "baseUrl": api.url, "key": ["email"], "fields": PERSON,
        "write": {"insert": {"path": "/v1/records/{resource}"}}})
    assert http_operations(write_only) == {"insert"}


def test_an_operation_its_endpoints_cannot_do_is_refused_when_the_project_loads(
        tmp_path: Path, api: FakeHttp) -> None:
    settings = connector(api)
    del settings["write"]["delete"]
    with pytest.raises(SyncConfigError) as refused:
        project(tmp_path, settings, operation="delete")
    assert str(refused.value).endswith(
        "syncs[0].destination.operation: delete needs endpoints this http connector lacks "
        "(`write` and, to find records, `read`); it allows: insert, update, upsert")
    del settings["read"]
    with pytest.raises(SyncConfigError) as refused:
        project(tmp_path, settings, push=False)
    assert ("syncs[0].source: this http connector has no `read` endpoint, so it cannot be "
            "read") in str(refused.value)


# -- reading: pagination, fields, auth --------------------------------------------------------

STYLES = {
    "cursor": {"path": "/v1/cursor/{resource}", "recordPath": "data.items",
               "pagination": {"type": "cursor", "pageSize": 40, "cursorPath": "next_cursor"}},
    "offset": {"path": "/v1/offset/{resource}", "recordPath": "results",
               "pagination": {"type": "offset", "pageSize": 40}},
    "page": {"path": "/v1/page/{resource}", "recordPath": "records",
             "pagination": {"type": "page", "pageSize": 40, "limitParam": "per_page"}},
    "link": {"path": "/v1/link/{resource}",
             "pagination": {"type": "link", "pageSize": 40, "limitParam": "per_page"}},
}


@pytest.mark.parametrize("style", list(STYLES))
def test_each_pagination_style_reads_every_record_once(
        tmp_path: Path, api: TimedHttp, style: str) -> None:
    api.define("people", PERSON, "email", [api_person(i) for i in range(1, 101)])
    proj = project(tmp_path, connector(api, read=STYLES[style]), push=False)
    result = sync(proj, "people")
    assert counts(result) == {"processed": 100, "inserted": 100}
    assert rows(f"sqlite:///{tmp_path}/wh.db", "people", "email") == [
        (p["email"], p["name"], p["score"], p["updated_at"])
        for p in (person(i) for i in range(1, 101))]
    lists = [c for c in api.calls if c.method == "GET"]
    assert len(lists) == 1 + 3  # describe's first page, then pages of 40, 40 and 20


def test_fields_not_given_are_inferred_from_the_first_page(api: FakeHttp) -> None:
    api.define("people", PERSON, "email", [api_person(1)])
    settings = HttpSettings.model_validate({**http_settings(api.url, SECRET), "fields": None})
    endpoint = HttpRecords(settings, "people", "api.people")
    kinds = {n: f.kind for n, f in endpoint.describe().fields.items()}
    assert kinds == {"email": "text", "name": "text", "score": "integer",
                     "updated_at": "datetime"}
    assert endpoint.describe().primary_key == ("email",)


def test_a_missing_record_set_is_described_as_missing(api: FakeHttp) -> None:
    settings = HttpSettings.model_validate(http_settings(api.url, SECRET))
    endpoint = HttpRecords(settings, "nobody", "api.nobody")
    assert endpoint.describe().exists is False and endpoint.count() is None


@pytest.mark.parametrize("auth", [
    {"type": "bearer", "token": "static-token-5a5a5a"},
    {"type": "apiKey", "key": "ak-77aa88bb99"},
    {"type": "apiKey", "key": "ak-77aa88bb99", "query": "api_key"},
    {"type": "basic", "username": "svc", "password": "pw-3e3e3e3e"},
    {"type": "oauth2", "tokenUrl": "/oauth/token", "clientId": "app", "clientSecret": SECRET},
], ids=["bearer", "api-key-header", "api-key-query", "basic", "oauth2"])
def test_each_kind_of_authentication_reads(tmp_path: Path, api: FakeHttp,
                                           auth: dict[str, Any]) -> None:
    api.define("people", PERSON, "email", [api_person(i) for i in range(1, 4)])
    result = sync(project(tmp_path, connector(api, auth=auth), push=False), "people")
    assert counts(result) == {"processed": 3, "inserted": 3}
    text = json.dumps(result.to_spec())
    for secret in ("static-token-5a5a5a", "ak-77aa88bb99", "pw-3e3e3e3e", SECRET):
        assert secret not in text


def test_an_expired_token_is_fetched_again_and_the_read_goes_on(api: FakeHttp) -> None:
    api.define("people", PERSON, "email", [api_person(i) for i in range(1, 4)])
    settings = HttpSettings.model_validate(http_settings(api.url, SECRET))
    endpoint = HttpRecords(settings, "people", "api.people")
    assert endpoint.count() == 3
    api.expire_tokens()
    assert endpoint.count() == 3
    assert [(c.path, c.status) for c in api.calls] == [
        ("/oauth/token", 200), ("/v1/cursor/people", 200),
        ("/v1/cursor/people", 401), ("/oauth/token", 200), ("/v1/cursor/people", 200)]
    assert endpoint.usage().calls == 5  # type: ignore[union-attr]


# -- writing ----------------------------------------------------------------------------------


def test_a_full_load_fills_batches_of_100_and_a_rerun_writes_nothing(
        tmp_path: Path, api: TimedHttp) -> None:
    seed(tmp_path, 5000)
    proj = project(tmp_path, connector(api))
    first = sync(proj, "people")
    assert counts(first) == {"processed": 5000, "inserted": 5000}
    assert api.batch_sizes == [100] * 50  # 100% of the batch endpoint's 100 records
    assert len(held(api)) == 5000 and set(api.writes.values()) == {1}
    assert api_calls(first) == 1 + 2 + 50  # token, describe's and is_empty's first page, 50 batches
    posts = api.count("POST", r"/v1/records/people/batch")
    again = sync(proj, "people")
    assert counts(again) == {"processed": 5000, "skipped": 5000}
    assert api.count("POST", r"/v1/records/people/batch") == posts  # no write call
    assert api_calls(again) == 1 + 1 + 10  # token, describe, a count of 10 pages of 500


def test_changed_records_are_looked_up_in_one_call_and_updated(
        tmp_path: Path, api: TimedHttp) -> None:
    src = seed(tmp_path, 300)
    proj = project(tmp_path, connector(api), changeTrackingField="updated_at")
    assert counts(sync(proj, "people"))["inserted"] == 300
    for i in (5, 150, 299):
        update(src, "people", {"id": i}, {"name": f"New {i}", "updated_at": T0 + timedelta(days=1)})
    before = len(api.calls)
    assert counts(sync(proj, "people")) == {"processed": 3, "updated": 3}
    lookups = [c for c in api.calls[before:] if "ids" in c.query]
    assert len(lookups) == 1 and lookups[0].query["ids"][0].count(",") == 2
    assert api.batch_sizes[-1] == 3
    names = {r["email"]: r["name"] for r in held(api)}
    assert [names[person(i)["email"]] for i in (4, 5, 150, 299)] == [
        "Name 4", "New 5", "New 150", "New 299"]


def test_single_record_endpoints_and_the_apis_own_refusals(
        tmp_path: Path, api: TimedHttp) -> None:
    src = seed(tmp_path, 4)
    update(src, "people", {"id": 2}, {"score": -5})
    api.define("people", PERSON, "email", [], refuse_negative="score")
    settings = connector(api, write={
        "insert": {"method": "POST", "path": "/v1/records/{resource}"},
        "update": {"method": "PATCH", "path": "/v1/records/{resource}/{email}"},
        "delete": {"method": "DELETE", "path": "/v1/records/{resource}/{email}"}})
    proj = project(tmp_path, settings, errorHandling={"onSyncError": "skip"})
    result = sync(proj, "people")
    assert counts(result) == {"processed": 4, "inserted": 3, "errored": 1}
    (error,) = errors(result)
    assert error["recordId"] == "2"
    assert error["message"].endswith("VALIDATION_FAILED: score must be at least 0")
    assert api.count("POST", r"/v1/records/people") == 4  # one record a call
    update(src, "people", {"id": 3}, {"name": "Three", "updated_at": T0 + timedelta(days=1)})
    update(src, "people", {"id": 2}, {"score": 5})
    assert counts(sync(proj, "people")) == {"processed": 4, "inserted": 1, "updated": 1,
                                             "skipped": 2}
    assert api.count("PATCH", r"/v1/records/people/.*") == 1
    assert held(api) == [api_person(1), api_person(2, score=5), api_person(3, name="Three",
                         updated_at=T0 + timedelta(days=1)), api_person(4)]


def test_a_duplicate_insert_is_refused_with_the_apis_code(api: FakeHttp) -> None:
    api.define("people", PERSON, "email", [api_person(1)])
    settings = HttpSettings.model_validate(http_settings(api.url, SECRET) | {"write": {
        "insert": {"method": "POST", "path": "/v1/records/{resource}"}}})
    endpoint = HttpRecords(settings, "people", "api.people")
    result = endpoint.write(None, "insert", ["email"], [api_person(2), api_person(1)])
    assert result.written == 1
    assert [(r.index, r.code, r.message) for r in result.refused] == [
        (1, "DUPLICATE", "email u00001@example.org exists")]


# -- rate limits ------------------------------------------------------------------------------


def test_429s_on_a_third_of_the_calls_are_waited_as_retry_after_says(
        tmp_path: Path, api: TimedHttp) -> None:
    seed(tmp_path, 1000)
    proj = project(tmp_path, connector(api))
    api.rate_limit(every=3, retry_after=0.2)
    result = sync(proj, "people")
    assert counts(result) == {"processed": 1000, "inserted": 1000}
    statuses = [c.status for c in api.calls]
    assert statuses.count(429) == len(statuses) // 3
    assert api_calls(result) == len(statuses)
    for i, call in enumerate(api.calls[:-1]):
        if call.status == 429:
            assert api.arrivals[i + 1] - api.arrivals[i] >= 0.2
    assert len(held(api)) == 1000 and set(api.writes.values()) == {1}  # each written once


# -- crashes ----------------------------------------------------------------------------------

KILL_ROWS = 5000
KILLS = 20
KILL_BATCH = 500


def test_sigkill_at_20_random_points_then_every_record_once(
        tmp_path: Path, api: TimedHttp, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = Random("http-crash")
    src = seed(tmp_path, KILL_ROWS)
    names = {i: person(i)["name"] for i in range(1, KILL_ROWS + 1)}
    monkeypatch.setenv("EXAMPLE_CLIENT_SECRET", SECRET)
    project_file = write_project(tmp_path, connector(api), batchSize=KILL_BATCH,
                                 changeTrackingField="updated_at",
                                 retry={"maxAttempts": 3, "backoffMs": 50})
    pace = Pace(first=[0.3], step=[0.1], tail=[0.05], window=10)
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

    landed: dict[str, int] = {}
    for round_no in range(KILLS):
        batches = max(1, math.ceil(remaining() / KILL_BATCH))
        where, _ = kill_one_run([sys.executable, str(WORKER), str(project_file), "people"],
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
    final = spec(sync(proj, "people"))
    assert final["status"] == "completed" and final["stats"]["recordsErrored"] == 0, final
    again = spec(sync(proj, "people"))["stats"]
    assert again["recordsInserted"] == 0 and again["recordsUpdated"] == 0, again
    dispose_engines()
    records = held(api)
    assert len(records) == KILL_ROWS == len({r["email"] for r in records})
    assert {int(r["email"][1:6]): r["name"] for r in records} == names
    assert landed.get("mid-run", 0) + landed.get("after last batch", 0) >= KILLS // 2, landed
    print(f"\nhttp: {KILLS} kills: {landed}; {sum(api.writes.values())} record writes for "
          f"{KILL_ROWS} records in {len(api.batch_sizes)} batch calls")


# -- secrets ----------------------------------------------------------------------------------


def test_no_secret_or_token_in_any_output(tmp_path: Path, api: TimedHttp) -> None:
    seed(tmp_path, 5)
    proj = project(tmp_path, connector(api), retry={"maxAttempts": 0, "backoffMs": 0})
    # an API echoing the credentials it was sent, in a refusal
    api.fail_next(1, 403, {"code": "FORBIDDEN", "message": f"client secret {SECRET} may not"})
    failed = sync(proj, "people")
    text = json.dumps(failed.to_spec(), default=str)
    assert status(failed) == "failed" and "FORBIDDEN: client secret ********** may not" in text
    assert SECRET not in text
    assert status(sync(proj, "people")) == "completed"
    # a wrong client secret: the token endpoint's refusal names no secret either
    wrong = project(tmp_path, connector(api, auth={
        "type": "oauth2", "tokenUrl": "/oauth/token", "clientId": "app",
        "clientSecret": "cs-wrong-0000000000"}))
    refused = json.dumps(sync(wrong, "people").to_spec(), default=str)
    assert "invalid_client" in refused and "cs-wrong-0000000000" not in refused


def test_a_token_echoed_in_an_error_is_masked(api: FakeHttp) -> None:
    settings = HttpSettings.model_validate(http_settings(api.url, SECRET))
    endpoint = HttpRecords(settings, "people", "api.people")
    assert endpoint.count() == 0
    (token,) = api.issued
    api.fail_next(1, 422, {"code": "NOPE", "message": f"token {token} cannot write"})
    result = endpoint.write(None, "delete", ["email"], [{"email": "a@x.io"}])
    assert [(r.code, r.message) for r in result.refused] == [
        ("NOPE", "token ********** cannot write")]


def test_the_fake_reports_a_request_its_description_does_not_allow(api: FakeHttp) -> None:
    settings = HttpSettings.model_validate(http_settings(api.url, SECRET) | {"read": {
        "path": "/v1/cursor/{resource}", "recordPath": "data.items",
        "pagination": {"type": "cursor", "pageSize": 1000}}})  # the API's maximum is 500
    assert HttpRecords(settings, "people", "api.people").count() == 0
    assert len(api.violations) == 1 and "limit" in api.violations[0]
    api.violations.clear()
