"""The ObjectStack REST connector end to end, against the real ObjectStack 17.4 server.

Syncs run through the engine between a SQLite database (`warehouse`) and the server's `person`
object (email unique, name, score, status; a validation rule refuses a negative score). Every
call to the server goes through a forwarding proxy on 127.0.0.1 (tests/objectstack_peer.py),
which counts the writing requests (so "writes nothing" is checked on the wire) and can answer
writes with 429. One behaviour per test; exact counts and rows.

The SIGKILL tests run each sync in a worker process (tests/objectstack_crash_worker.py) and
kill it at seeded random points, changing the source between kills; a final run must leave
every record exactly once on both sides, with the latest values, and the state agreeing.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from sync_assets import Project, load_project
from sync_assets.connectors.base import (
    CURSOR_COLUMN,
    ConnectorError,
    FieldInfo,
    ReadRequest,
)
from sync_assets.connectors.objectstack_rest import (
    ObjectStackClient,
    ObjectStackRestTable,
    TransientError,
    close_clients,
    get_client,
    translate_filter,
)
from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import run
from sync_assets.filters import parse_filter
from sync_assets.state import StateStore

from engine_helpers import counts, create_table, errors, rows, spec, sync
from kill_helpers import Pace, kill_one_run
from objectstack_harness import ObjectStackServer, objectstack_server  # noqa: F401
from objectstack_peer import FaultProxy, ObjectStackPeer

OBJECT = "person"
FIELDS = ("email", "name", "score", "status")
MAPPING = {f: f for f in FIELDS}
T0 = datetime(2024, 1, 1, 10, 0, 0)
Row = tuple[Any, ...]  # (email, name, score, status)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def proxy(objectstack_server: ObjectStackServer) -> Iterator[FaultProxy]:  # noqa: F811
    fault_proxy = FaultProxy(objectstack_server.url)
    yield fault_proxy
    close_clients()
    fault_proxy.close()


@pytest.fixture(scope="module")
def client(objectstack_server: ObjectStackServer) -> Iterator[ObjectStackClient]:  # noqa: F811
    with ObjectStackClient(objectstack_server.url, objectstack_server.api_key) as c:
        yield c


@dataclass
class Env:
    server: ObjectStackServer
    proxy: FaultProxy
    client: ObjectStackClient
    tmp: Path

    @property
    def wh(self) -> str:
        return f"sqlite:///{self.tmp}/wh.db"

    def project(self, *syncs: Mapping[str, Any], api_key: str | None = None) -> Project:
        data = {
            "objectstack": {"url": self.proxy.url, "apiKey": api_key or self.server.api_key},
            "connectors": {"warehouse": {"type": "sql", "url": self.wh}},
            "syncs": [dict(s) for s in syncs],
        }
        path = self.tmp / "project.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return load_project(path, env={})

    def endpoint(self, name: str = OBJECT) -> ObjectStackRestTable:
        return ObjectStackRestTable(get_client(self.proxy.url, self.server.api_key), name)

    def server_rows(self) -> list[Row]:
        found = self.client.list(OBJECT, fields=list(FIELDS), limit=None)
        return sorted(tuple(r[f] for f in FIELDS) for r in found)

    def seed_server(self, records: Sequence[Row]) -> dict[str, str]:
        """Records created through the API; email -> id."""
        created = self.client.batch(OBJECT, "create", [dict(zip(FIELDS, r, strict=True))
                                                       for r in records])
        assert all(c.ok for c in created), created
        return {r[0]: str(c.id) for r, c in zip(records, created, strict=True)}

    def change_server(self, ids: Mapping[str, str], changes: Mapping[str, Mapping[str, Any]]
                      ) -> None:
        done = self.client.batch(OBJECT, "update", [{"id": ids[e], **v}
                                                    for e, v in changes.items()])
        assert all(d.ok for d in done), done


@pytest.fixture
def env(objectstack_server: ObjectStackServer, proxy: FaultProxy,  # noqa: F811
        client: ObjectStackClient, tmp_path: Path) -> Iterator[Env]:
    objectstack_server.reset(OBJECT)
    yield Env(objectstack_server, proxy, client, tmp_path)
    dispose_engines()


# -- SQLite side ------------------------------------------------------------------------------
def people_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(100), unique=True),
        sa.Column("name", sa.String(100)),
        sa.Column("score", sa.Integer),
        sa.Column("status", sa.String(20)),
        sa.Column("updated_at", sa.DateTime),
    ]


def person(i: int, **values: Any) -> dict[str, Any]:
    row = {"id": i, "email": f"p{i}@example.com", "name": f"name {i}", "score": i * 10,
           "status": "active", "updated_at": T0 + timedelta(minutes=i)}
    return {**row, **values}


def as_row(record: Mapping[str, Any]) -> Row:
    return tuple(record[f] for f in FIELDS)


def seed_people(url: str, records: Sequence[Mapping[str, Any]]) -> None:
    create_table(url, "people", people_columns(), records)


def execute(url: str, statement: str, **params: Any) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()


def sqlite_rows(url: str, table: str) -> list[Row]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            stmt = sa.text(f'SELECT {", ".join(FIELDS)} FROM "{table}" ORDER BY email')
            return [tuple(r) for r in conn.execute(stmt)]
    finally:
        engine.dispose()


def push(operation: str, obj: str = OBJECT, **extra: Any) -> dict[str, Any]:
    """SQLite `people` -> ObjectStack `person` by email (direction pull: into ObjectStack)."""
    return {
        "name": "push", "direction": "pull",
        "source": {"connectorInstanceId": "warehouse", "externalResource": "people"},
        "destination": {"object": obj, "operation": operation, "matchKey": ["email"],
                        "mapping": dict(MAPPING)},
        "retry": {"maxAttempts": 3, "backoffMs": 10},
        **extra,
    }


def pull(obj: str = OBJECT, **extra: Any) -> dict[str, Any]:
    """ObjectStack `person` -> SQLite `contacts` by email (upsert)."""
    return {
        "name": "pull",
        "source": {"object": obj},
        "destination": {"connectorInstanceId": "warehouse", "externalResource": "contacts",
                        "operation": "upsert", "matchKey": ["email"],
                        "mapping": {**MAPPING, "updated_at": "updated_at"}},
        "retry": {"maxAttempts": 3, "backoffMs": 10},
        **extra,
    }


def writes_during(env: Env, proj: Project, name: str) -> tuple[dict[str, int], int]:
    """(counts of a run, writing requests it sent to the server)."""
    before = env.proxy.writes
    result = sync(proj, name)
    assert spec(result)["status"] == "completed", spec(result)
    return counts(result), env.proxy.writes - before


# -- describe ---------------------------------------------------------------------------------
def test_describe_gives_portable_kinds_keys_and_read_only_fields(env: Env) -> None:
    desc = env.endpoint().describe()
    kinds = {n: f.kind for n, f in desc.fields.items()}
    assert {n: kinds[n] for n in ("id", *FIELDS, "updated_at")} == {
        "id": "text", "email": "text", "name": "text", "score": "integer", "status": "text",
        "updated_at": "datetime"}
    assert desc.primary_key == ("id",) and desc.unique_keys == (("email",),)
    assert {"created_at", "updated_at", "created_by", "updated_by"} <= desc.read_only
    assert not desc.read_only & {"id", *FIELDS}
    assert env.endpoint("contact").describe().fields["lifetime_value"].kind == "float"


def test_a_missing_object_is_described_as_missing_and_is_not_created(env: Env) -> None:
    endpoint = env.endpoint("no_such_object")
    assert endpoint.describe().exists is False
    with pytest.raises(ConnectorError) as refused:
        endpoint.create(None, [], ["email"])
    assert str(refused.value) == (f"object no_such_object does not exist on the server "
                                  f"{env.proxy.url}; define it in the stack")


def test_api_calls_counts_every_http_call(env: Env) -> None:
    endpoint = env.endpoint()
    endpoint.describe()
    assert endpoint.api_calls == 1
    env.seed_server([(f"c{i}@x.io", f"n{i}", i, "active") for i in range(5)])
    request = ReadRequest(columns=["email"], order_by=["id"], batch_size=2)
    assert sum(len(p) for p in endpoint.read_batches(request)) == 5
    assert endpoint.api_calls == 1 + 3  # pages of 2, 2 and 1


def test_a_runs_logs_give_the_api_calls_it_made_as_the_server_saw_them(env: Env) -> None:
    seed_people(env.wh, [person(i) for i in range(1, 8)])
    proj = env.project(push("upsert", batchSize=3))
    before = env.proxy.forwarded + env.proxy.refused
    result = sync(proj, "push")
    made = env.proxy.forwarded + env.proxy.refused - before
    assert counts(result) == {"processed": 7, "inserted": 7}
    assert [line.split(" INFO ", 1)[1] for line in result.logs
            if "API call" in line] == [f"objectstack.person: {made} API calls"]


def test_count_and_change_token_follow_the_records_within_the_filter(env: Env) -> None:
    ids = env.seed_server([("a@x.io", "a", 1, "active"), ("b@x.io", "b", 2, "lead"),
                           ("c@x.io", "c", 3, "active")])
    endpoint = env.endpoint()
    active = parse_filter({"status": "active"})
    assert endpoint.count() == 3
    before = endpoint.change_token(active, "updated_at")
    assert before[0] == 2 and isinstance(before[1], str)
    assert endpoint.change_token(parse_filter({"name": {"$field": "email"}}),
                                 "updated_at") == [0, None]  # evaluated here
    time.sleep(0.01)
    env.change_server(ids, {"c@x.io": {"name": "c2"}})
    after = endpoint.change_token(active, "updated_at")
    assert after[0] == 2 and after[1] > before[1]
    assert endpoint.change_token(parse_filter({"status": "lead"}), None)[0] == 1


# -- lookups and guarded writes ---------------------------------------------------------------
def test_writes_matched_by_id_keep_the_id_given(env: Env) -> None:
    endpoint = env.endpoint()
    result = endpoint.write(None, "upsert", ["id"], [
        {"id": 7, "email": "seven@x.io", "name": "seven"},
        {"id": "x-8", "email": "eight@x.io", "name": "eight"}])
    assert (result.written, result.refused) == (2, [])
    found = endpoint.lookup(None, ["id"], [(7,), ("x-8",), (9,)], ["email"])
    assert sorted(found, key=str) == sorted([{"id": 7, "email": "seven@x.io"},
                                             {"id": "x-8", "email": "eight@x.io"}], key=str)
    updated = endpoint.write(None, "update", ["id"], [{"id": 7, "name": "SEVEN"},
                                                      {"id": 9, "name": "nobody"}])
    assert (updated.written, updated.refused) == (1, [])  # no record 9: not written, no refusal
    deleted = endpoint.write(None, "delete", ["id"], [{"id": 7}, {"id": 9}])
    assert (deleted.written, deleted.refused) == (1, [])
    assert env.server_rows() == [("eight@x.io", "eight", None, None)]


def test_writes_matched_by_a_composite_key_update_and_create(env: Env) -> None:
    env.seed_server([("a@x.io", "Ann", 1, "active"), ("b@x.io", "Ann", 2, "lead")])
    endpoint = env.endpoint()
    result = endpoint.write(None, "upsert", ["name", "status"], [
        {"name": "Ann", "status": "lead", "score": 20},
        {"name": "Bo", "status": "lead", "email": "c@x.io", "score": 30}])
    assert (result.written, result.refused, len(result.created_ids)) == (2, [], 1)
    assert env.server_rows() == [("a@x.io", "Ann", 1, "active"), ("b@x.io", "Ann", 20, "lead"),
                                 ("c@x.io", "Bo", 30, "lead")]


def test_lookup_matches_keys_exactly_single_composite_and_null(env: Env) -> None:
    env.seed_server([("a@x.io", "Bob", 1, "active"), ("A@x.io", "bob", 2, "active"),
                     ("b@x.io", None, 3, "lead")])
    endpoint = env.endpoint()
    one = endpoint.lookup(None, ["email"], [("a@x.io",), ("nobody@x.io",)], ["name"])
    assert one == [{"email": "a@x.io", "name": "Bob"}]
    pair = endpoint.lookup(None, ["name", "status"], [("Bob", "active"), ("bob", "lead")],
                           ["email"])
    assert pair == [{"name": "Bob", "status": "active", "email": "a@x.io"}]
    null = endpoint.lookup(None, ["name"], [(None,)], ["email"])
    assert null == [{"name": None, "email": "b@x.io"}]


def test_lookup_of_many_keys_is_split_into_short_requests(env: Env) -> None:
    emails = [f"user{i:04d}.with.a.long.address@example.org" for i in range(450)]
    env.client.import_rows(OBJECT, [{"email": e, "name": "x"} for e in emails], "insert")
    endpoint = env.endpoint()
    found = endpoint.lookup(None, ["email"], [(e,) for e in emails], [])
    assert sorted(r["email"] for r in found) == emails
    assert endpoint.api_calls >= 4  # 450 keys: never one URL of 25 kB


def test_write_one_update_is_refused_when_the_record_changed_since_it_was_read(
        env: Env) -> None:
    ids = env.seed_server([("a@x.io", "old", 1, "active")])
    endpoint = env.endpoint()
    row = {"email": "a@x.io", "name": "mine", "score": 1, "status": "active"}
    env.change_server(ids, {"a@x.io": {"name": "theirs"}})
    assert endpoint.write_one(None, "update", ["email"], row, {"name": "old"}) is False
    assert endpoint.write_one(None, "update", ["email"], row, {"name": "theirs"}) is True
    assert env.server_rows() == [("a@x.io", "mine", 1, "active")]
    assert endpoint.write_one(None, "insert", ["email"], row) is False  # already there


# -- filters ----------------------------------------------------------------------------------
def _tr(raw: Any) -> tuple[Any, bool]:
    """The translation of a filter for `person` (its fields as describe gives them)."""
    kinds = {"id": "text", "email": "text", "name": "text", "score": "integer",
             "status": "text", "updated_at": "datetime"}
    fields = {n: FieldInfo(n, None, True, k) for n, k in kinds.items()}
    plan = translate_filter(parse_filter(raw), fields)
    return plan.where, plan.exact


@pytest.mark.parametrize(("raw", "where", "exact"), [
    ({"status": "active"}, {"status": {"$eq": "active"}}, True),
    ({"name": {"$ne": "x"}}, {"name": {"$ne": "x"}}, True),
    ({"score": {"$gte": 2, "$lt": 9}},
     {"$and": [{"score": {"$gte": 2}}, {"score": {"$lt": 9}}]}, True),
    ({"name": {"$in": ["a", None]}},
     {"$or": [{"name": {"$in": ["a"]}}, {"name": {"$null": True}}]}, True),
    ({"name": {"$nin": ["a"]}}, {"name": {"$nin": ["a"]}}, True),
    ({"name": {"$nin": ["a", None]}},
     {"$not": {"$or": [{"name": {"$in": ["a"]}}, {"name": {"$null": True}}]}}, True),
    ({"name": {"$startsWith": "B"}}, {"name": {"$startsWith": "B"}}, True),
    ([["name", "is_empty"]], {"$or": [{"name": {"$null": True}}, {"name": ""}]}, True),
    ({"$not": {"score": {"$gt": 1}}}, {"$not": {"score": {"$gt": 1}}}, True),
    ({"updated_at": {"$gt": "2024-01-01T10:00:00"}},
     {"updated_at": {"$gt": "2024-01-01T10:00:00.000Z"}}, True),
    ({"score": {"$between": [1, 5]}}, {"score": {"$gte": 1, "$lte": 5}}, True),
    # what the server would answer otherwise is left to this side (a superset is asked for)
    ({"name": {"$eq": {"$field": "status"}}}, None, False),
    ({"score": "5"}, None, False),
    ({"status": "active", "name": {"$field": "email"}}, {"status": {"$eq": "active"}}, False),
    ({"$or": [{"status": "active"}, {"score": "5"}]}, None, False),
    ({"$not": {"score": "5"}}, None, False),
    ({"updated_at": {"$gt": "2024-01-01T10:00:00.000001"}}, None, False),
])
def test_filters_translate_exactly_or_say_they_do_not(raw: Any, where: Any,
                                                      exact: bool) -> None:
    assert _tr(raw) == (where, exact)


def test_a_filter_on_an_unknown_field_is_a_connector_error() -> None:
    with pytest.raises(ConnectorError, match="unknown field 'nope'"):
        _tr({"nope": 1})


def test_pushed_down_filters_select_exactly_the_matching_records(env: Env) -> None:
    env.seed_server([
        ("a@x.io", "Bob", 30, "active"), ("b@x.io", "bob", 40, "active"),
        ("c@x.io", "BOB", 50, "active"), ("d@x.io", "bobby", 10, "active"),
        ("e@x.io", "rob", 60, "lead"), ("f@x.io", None, 70, "active"),
    ])
    filters = {"status": "active", "score": {"$gte": 20}, "name": {"$contains": "ob"}}
    proj = env.project(pull(source={"object": OBJECT, "filters": filters}))
    result = sync(proj, "pull")
    assert counts(result) == {"processed": 2, "inserted": 2}
    assert sqlite_rows(env.wh, "contacts") == [("a@x.io", "Bob", 30, "active"),
                                               ("b@x.io", "bob", 40, "active")]


def test_a_filter_the_server_cannot_answer_is_completed_here(env: Env) -> None:
    env.seed_server([("a@x.io", "active", 1, "active"), ("b@x.io", "lead", 2, "active"),
                     ("c@x.io", "x", 3, "lead"), ("d@x.io", "lead", 4, "lead")])
    endpoint = env.endpoint()
    request = ReadRequest(columns=["email"], order_by=["id"], batch_size=1,
                          filter=parse_filter({"name": {"$field": "status"}}))
    read = [r["email"] for page in endpoint.read_batches(request) for r in page]
    assert sorted(read) == ["a@x.io", "d@x.io"]
    by_score = ReadRequest(**{**request.__dict__, "order_by": ["score", "id"]})
    assert endpoint.high_water_mark("score", by_score) == 4


def test_a_read_resumes_after_the_position_given(env: Env) -> None:
    env.seed_server([(f"{c}@x.io", c, i, "active") for i, c in enumerate("abcdef")])
    request = ReadRequest(columns=["email"], order_by=["email"], batch_size=2,
                          after=("c@x.io",))
    pages = list(env.endpoint().read_batches(request))
    assert [[r["email"] for r in p] for p in pages] == [["d@x.io", "e@x.io"], ["f@x.io"]]


# -- push: SQLite -> ObjectStack ----------------------------------------------------------------
def test_push_upsert_writes_exact_rows_then_changes_then_nothing(env: Env) -> None:
    seed_people(env.wh, [person(i) for i in range(1, 6)])
    proj = env.project(push("upsert"))
    assert writes_during(env, proj, "push")[0] == {"processed": 5, "inserted": 5}
    assert env.server_rows() == [as_row(person(i)) for i in range(1, 6)]
    execute(env.wh, "UPDATE people SET name = 'renamed' WHERE id = 2")
    execute(env.wh, "UPDATE people SET score = 999 WHERE id = 4")
    execute(env.wh, "INSERT INTO people (email, name, score, status) "
                    "VALUES ('p6@example.com', 'name 6', 60, 'lead')")
    assert writes_during(env, proj, "push")[0] == {"processed": 6, "inserted": 1,
                                                   "updated": 2, "skipped": 3}
    assert env.server_rows() == sorted([
        as_row(person(1)), as_row(person(2, name="renamed")), as_row(person(3)),
        as_row(person(4, score=999)), as_row(person(5)),
        ("p6@example.com", "name 6", 60, "lead")])
    assert writes_during(env, proj, "push") == ({"processed": 6, "skipped": 6}, 0)


def test_push_insert_creates_new_records_and_never_changes_existing_ones(env: Env) -> None:
    seed_people(env.wh, [person(i) for i in range(1, 4)])
    proj = env.project(push("insert"))
    assert writes_during(env, proj, "push")[0] == {"processed": 3, "inserted": 3}
    execute(env.wh, "UPDATE people SET name = 'renamed' WHERE id = 2")
    execute(env.wh, "INSERT INTO people (email, name, score, status) "
                    "VALUES ('p4@example.com', 'name 4', 40, 'active')")
    assert writes_during(env, proj, "push")[0] == {"processed": 4, "inserted": 1,
                                                   "skipped": 3}
    assert env.server_rows() == [as_row(person(i)) for i in range(1, 5)]
    assert writes_during(env, proj, "push") == ({"processed": 4, "skipped": 4}, 0)


def test_push_update_changes_only_records_the_server_holds(env: Env) -> None:
    env.seed_server([as_row(person(1, name="old 1")), as_row(person(2, name="old 2")),
                     as_row(person(3))])
    seed_people(env.wh, [person(i) for i in range(1, 6)])
    proj = env.project(push("update"))
    assert writes_during(env, proj, "push")[0] == {"processed": 5, "updated": 2,
                                                   "skipped": 3}
    assert env.server_rows() == [as_row(person(i)) for i in range(1, 4)]
    execute(env.wh, "UPDATE people SET name = 'renamed', score = NULL WHERE id = 3")
    assert writes_during(env, proj, "push")[0] == {"processed": 5, "updated": 1,
                                                   "skipped": 4}
    assert env.server_rows() == [as_row(person(1)), as_row(person(2)),
                                 ("p3@example.com", "renamed", None, "active")]
    assert writes_during(env, proj, "push") == ({"processed": 5, "skipped": 5}, 0)


def test_push_delete_removes_the_records_listed(env: Env) -> None:
    env.seed_server([as_row(person(i)) for i in range(1, 6)])
    seed_people(env.wh, [person(2), person(4)])
    proj = env.project(push("delete"))
    assert writes_during(env, proj, "push")[0] == {"processed": 2, "deleted": 2}
    assert env.server_rows() == [as_row(person(i)) for i in (1, 3, 5)]
    execute(env.wh, "INSERT INTO people (email) VALUES ('p5@example.com')")
    assert writes_during(env, proj, "push")[0] == {"processed": 3, "deleted": 1,
                                                   "skipped": 2}
    assert env.server_rows() == [as_row(person(i)) for i in (1, 3)]
    assert writes_during(env, proj, "push") == ({"processed": 3, "skipped": 3}, 0)


def test_push_sync_mirrors_changes_and_deletions(env: Env) -> None:
    seed_people(env.wh, [person(i) for i in range(1, 6)])
    proj = env.project(push("sync"))
    assert writes_during(env, proj, "push")[0] == {"processed": 5, "inserted": 5}
    execute(env.wh, "DELETE FROM people WHERE id = 3")
    execute(env.wh, "UPDATE people SET status = 'inactive' WHERE id = 1")
    assert writes_during(env, proj, "push")[0] == {"processed": 5, "updated": 1,
                                                   "deleted": 1, "skipped": 3}
    assert env.server_rows() == [as_row(person(1, status="inactive")),
                                 *[as_row(person(i)) for i in (2, 4, 5)]]
    assert writes_during(env, proj, "push") == ({"processed": 4, "skipped": 4}, 0)


def test_refused_records_are_errored_with_the_server_code_while_the_rest_is_written(
        env: Env) -> None:
    seed_people(env.wh, [person(1), person(2, score=-5), person(3), person(4, status="bogus"),
                         person(5)])
    result = sync(env.project(push("upsert")), "push")
    out = spec(result)
    assert (out["status"], counts(result)) == ("partial",
                                               {"processed": 5, "inserted": 3, "errored": 2})
    refused = sorted((e.get("recordId"), e["message"]) for e in errors(result))
    assert refused == [
        ("2", "objectstack.person refused the record: VALIDATION_FAILED: Score must be at "
              "least 0"),
        ("4", "objectstack.person refused the record: VALIDATION_FAILED: Status must be one "
              "of: active, inactive, lead"),
    ]
    assert env.server_rows() == [as_row(person(i)) for i in (1, 3, 5)]


def test_a_refused_update_is_errored_and_the_record_keeps_its_values(env: Env) -> None:
    seed_people(env.wh, [person(1), person(2)])
    proj = env.project(push("upsert"))
    assert writes_during(env, proj, "push")[0] == {"processed": 2, "inserted": 2}
    execute(env.wh, "UPDATE people SET score = -1 WHERE id = 1")
    execute(env.wh, "UPDATE people SET score = 7 WHERE id = 2")
    result = sync(proj, "push")
    assert counts(result) == {"processed": 2, "updated": 1, "errored": 1}
    assert [e["message"] for e in errors(result)] == [
        "objectstack.person refused the record: VALIDATION_FAILED: Score must be at least 0"]
    assert env.server_rows() == [as_row(person(1)), as_row(person(2, score=7))]


def test_a_sync_into_an_object_the_stack_lacks_fails_saying_so(env: Env) -> None:
    seed_people(env.wh, [person(1)])
    result = run(env.project(push("upsert", "no_such_object")), "push")
    out = spec(result)
    assert out["status"] == "failed"
    assert [e["message"] for e in out["errors"]] == [
        f"object no_such_object does not exist on the server {env.proxy.url}; define it in "
        "the stack"]


def test_a_bad_api_key_fails_the_run_naming_the_server_and_not_the_key(env: Env) -> None:
    seed_people(env.wh, [person(1)])
    bad_key = "osk_thisKeyIsWrong_0123456789abcdef"
    result = run(env.project(push("upsert"), api_key=bad_key), "push")
    out = spec(result)
    assert out["status"] == "failed"
    assert len(out["errors"]) == 1
    message = out["errors"][0]["message"]
    assert env.proxy.url in message and "refused the credentials" in message
    assert bad_key not in str(out) and "thisKeyIsWrong" not in str(out)


def test_rate_limited_writes_are_retried_and_the_sync_completes(env: Env) -> None:
    seed_people(env.wh, [person(i) for i in range(1, 6)])
    proj = env.project(push("upsert"))
    assert writes_during(env, proj, "push")[0] == {"processed": 5, "inserted": 5}
    execute(env.wh, "UPDATE people SET name = 'renamed' WHERE id IN (2, 3)")
    execute(env.wh, "INSERT INTO people (email, name, score, status) "
                    "VALUES ('p6@example.com', 'name 6', 60, 'lead')")
    refused = env.proxy.refused
    with env.proxy.faults(8, retry_after=0) as faults:
        result = sync(proj, "push")
    assert (faults.refused - refused, faults.faults_left) == (8, 0)
    out = spec(result)
    assert (out["status"], counts(result)) == (
        "completed", {"processed": 6, "inserted": 1, "updated": 2, "skipped": 3})
    # the client retried 5 times (Retry-After: 0), gave up, and the engine retried the batch
    retried = [line for line in out["logs"] if "retry 1 of 3" in line]
    assert len(retried) == 1 and "HTTP 429 RATE_LIMITED" in retried[0], out["logs"]
    assert env.server_rows() == sorted([
        as_row(person(1)), as_row(person(2, name="renamed")), as_row(person(3, name="renamed")),
        as_row(person(4)), as_row(person(5)), ("p6@example.com", "name 6", 60, "lead")])


def test_a_first_load_retried_after_rate_limited_writes_completes(env: Env) -> None:
    seed_people(env.wh, [person(i) for i in range(1, 6)])
    with env.proxy.faults(7, retry_after=0):
        result = sync(env.project(push("upsert")), "push")
    assert counts(result) == {"processed": 5, "inserted": 5}
    assert env.server_rows() == [as_row(person(i)) for i in range(1, 6)]


# -- pull: ObjectStack -> SQLite ----------------------------------------------------------------
def test_pull_incremental_reads_only_the_records_changed_since_the_last_run(env: Env) -> None:
    created = env.client.import_rows(OBJECT, [
        {"email": f"u{i:02d}@x.io", "name": f"n{i}", "score": i, "status": "active"}
        for i in range(50)], "insert")
    ids = {f"u{r.index:02d}@x.io": str(r.id) for r in created}
    proj = env.project(pull(changeTrackingField="updated_at", batchSize=20))
    assert counts(sync(proj, "pull")) == {"processed": 50, "inserted": 50}
    assert sqlite_rows(env.wh, "contacts") == env.server_rows()
    time.sleep(0.01)  # the changes get later milliseconds than every record read
    env.change_server(ids, {"u03@x.io": {"name": "changed"}, "u17@x.io": {"score": 700},
                            "u41@x.io": {"status": "lead"}})
    assert counts(sync(proj, "pull")) == {"processed": 3, "updated": 3}
    assert sqlite_rows(env.wh, "contacts") == env.server_rows()
    assert counts(sync(proj, "pull")) == {}


def test_incremental_pages_keep_records_that_share_a_timestamp(env: Env) -> None:
    env.client.import_rows(OBJECT, [{"email": f"t{i:03d}@x.io", "score": i}
                                    for i in range(120)], "insert")
    endpoint = env.endpoint()
    request = ReadRequest(columns=["email"], order_by=["updated_at", "id"], batch_size=7,
                          cursor_field="updated_at")
    upper = endpoint.high_water_mark("updated_at", request)
    pages = list(endpoint.read_batches(ReadRequest(**{**request.__dict__, "upper": upper})))
    emails = [r["email"] for page in pages for r in page]
    assert sorted(emails) == [f"t{i:03d}@x.io" for i in range(120)]
    cursors = [r[CURSOR_COLUMN] for page in pages for r in page]
    assert cursors == sorted(cursors) and cursors[-1] == upper
    assert len(set(cursors)) < len(cursors)  # ties across pages: paged by (updated_at, id)


# -- both ways ----------------------------------------------------------------------------------
def test_bidirectional_sync_run_twice_writes_nothing_the_second_time(env: Env) -> None:
    seed_people(env.wh, [person(i) for i in range(1, 4)])
    env.seed_server([("q1@example.com", "from os 1", 11, "lead"),
                     ("q2@example.com", "from os 2", 22, "inactive")])
    twoway = {
        "name": "both", "direction": "bidirectional", "conflictResolution": "latest_wins",
        "source": {"connectorInstanceId": "warehouse", "externalResource": "people"},
        "destination": {"object": OBJECT, "operation": "upsert", "matchKey": ["email"],
                        "mapping": {**MAPPING, "updated_at": "updated_at"}},
        "changeTrackingField": "updated_at",
    }
    proj = env.project(twoway)
    assert writes_during(env, proj, "both")[0] == {"processed": 5, "inserted": 5}
    expected = sorted([as_row(person(i)) for i in range(1, 4)]
                      + [("q1@example.com", "from os 1", 11, "lead"),
                         ("q2@example.com", "from os 2", 22, "inactive")])
    assert env.server_rows() == expected
    assert sqlite_rows(env.wh, "people") == expected
    # the server stamped its own updated_at on the records written to it: no echo of that
    assert writes_during(env, proj, "both") == ({"processed": 5, "skipped": 5}, 0)
    assert sqlite_rows(env.wh, "people") == expected


# -- the contract suite's peer ------------------------------------------------------------------
@pytest.fixture
def peer(objectstack_server: ObjectStackServer) -> Iterator[ObjectStackPeer]:  # noqa: F811
    made = ObjectStackPeer(objectstack_server)
    yield made
    made.close()


def test_peer_seeds_reads_and_changes_records_in_the_suites_types(
        peer: ObjectStackPeer) -> None:
    fields = {"id": "integer", "email": "text", "name": "text", "score": "integer",
              "updated_at": "datetime"}
    peer.create(OBJECT, fields, ["id"], [
        {"id": 2, "email": "b@x.io", "name": "b", "score": 5, "updated_at": T0},
        {"id": 1, "email": "a@x.io", "name": "a", "score": 1, "updated_at": T0}],
        refuse_negative="score")
    peer.change(OBJECT, {"id": 2}, {"name": "B"})
    got = peer.rows(OBJECT)
    assert [(r["id"], r["email"], r["name"], r["score"]) for r in got] == [
        (1, "a@x.io", "a", 1), (2, "b@x.io", "B", 5)]
    assert all(isinstance(r["updated_at"], datetime) and r["updated_at"] > T0 for r in got)
    with pytest.raises(ValueError, match="no object 'nope'"):
        peer.create("nope", fields, ["id"])
    with pytest.raises(ValueError, match="no rule refusing a negative 'name'"):
        peer.create(OBJECT, fields, ["id"], refuse_negative="name")


def test_peer_faults_answer_the_next_writes_429(peer: ObjectStackPeer) -> None:
    client = ObjectStackClient(peer.proxy.url, peer.server.api_key, max_retries=0)
    peer.server.reset(OBJECT)
    with peer.faults(1, retry_after=2), pytest.raises(TransientError) as e:
        client.create(OBJECT, {"email": "a@x.io"})
    assert (e.value.status, e.value.retry_after) == (429, 2.0)
    assert client.list(OBJECT) == []  # nothing reached the server
    client.create(OBJECT, {"email": "a@x.io"})
    assert len(client.list(OBJECT)) == 1
    client.close()


def test_a_connector_instance_of_type_objectstack_loads(env: Env,
                                                        peer: ObjectStackPeer) -> None:
    data = {"connectors": {"os": peer.settings()}, "syncs": []}
    (env.tmp / "project.yaml").write_text(yaml.safe_dump(data))
    load_project(env.tmp / "project.yaml", env={})


# -- SIGKILL: exactly once --------------------------------------------------------------------
WORKER = Path(__file__).with_name("objectstack_crash_worker.py")
CRASH_ROWS = 5_000
CRASH_BATCH = 500
KILLS = int(os.environ.get("OBJECTSTACK_KILLS", "30"))  # per direction
BASE = datetime(2024, 1, 1, 8, 0, 0)


def final_runs(project_file: Path, sync_name: str) -> None:
    """The final, unkilled run completes, and one more writes nothing."""
    project = load_project(project_file, env={})
    first = spec(run(project, sync_name))
    assert first["status"] == "completed" and first["stats"]["recordsErrored"] == 0, first
    again = spec(run(project, sync_name))["stats"]
    assert (again["recordsInserted"], again["recordsUpdated"], again["recordsDeleted"],
            again["recordsErrored"]) == (0, 0, 0, 0), again
    dispose_engines()


def state_of(url: str, sync_name: str) -> tuple[int, Any]:
    """(records the sync's state knows, its cursor)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("_sync_assets_records"):
                return 0, None
            store = StateStore(sync_name)
            return store.count(conn), store.load_cursor(conn)
    finally:
        engine.dispose()


def write_project(env: Env, sync_def: Mapping[str, Any]) -> Path:
    data = {
        "objectstack": {"url": env.server.url, "apiKey": env.server.api_key},
        "connectors": {"warehouse": {"type": "sql", "url": env.wh}},
        "syncs": [dict(sync_def)],
    }
    path = env.tmp / "project.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def kill_repeatedly(env: Env, project_file: Path, sync_name: str, rng: Random,
                    remaining: Any, change: Any) -> Counter[str]:
    # a run against the server is slower to start and per batch than one between databases
    pace = Pace(first=[1.0], step=[0.5], tail=[0.2], window=15)
    landed: Counter[str] = Counter()
    for round_no in range(KILLS):
        batches = max(1, math.ceil(remaining() / CRASH_BATCH))
        where, _ = kill_one_run([sys.executable, str(WORKER), str(project_file), sync_name],
                                rng, batches, True, pace, env.tmp / "worker.err")
        landed[where] += 1
        change(round_no)
    print(f"\n{sync_name}: {KILLS} kills: {dict(landed)}")
    # half at least, as for every other system: a forked worker ends as it prints `done`, so
    # no kill lands in an interpreter's shutdown any more and counts as after the last batch
    assert landed["mid-run"] + landed["after last batch"] >= KILLS // 2, landed
    return landed


def test_sigkill_while_pushing_5000_records_leaves_each_exactly_once(env: Env) -> None:
    rng = Random("objectstack-crash:push")
    env.server.reset("crash_push")
    names = {i: f"Name {i}" for i in range(1, CRASH_ROWS + 1)}
    seed_people(env.wh, [
        {"id": i, "email": f"user{i}@example.org", "name": names[i], "score": i % 97,
         "status": "active", "updated_at": BASE + timedelta(seconds=i // 7)}
        for i in names])
    sync_def = push("upsert", "crash_push", name="crash_push", changeTrackingField="updated_at",
                    batchSize=CRASH_BATCH, retry={"maxAttempts": 3, "backoffMs": 50})
    project_file = write_project(env, sync_def)
    state_url = f"sqlite:///{env.tmp}/.sync_assets/state.db"
    people = sa.Table("people", sa.MetaData(), *people_columns())

    def remaining() -> int:
        cursor = state_of(state_url, "crash_push")[1] if (
            env.tmp / ".sync_assets" / "state.db").exists() else None
        engine = sa.create_engine(env.wh)
        try:
            with engine.connect() as conn:
                stmt = sa.select(sa.func.count()).select_from(people)
                if cursor is not None:
                    stmt = stmt.where(sa.type_coerce(people.c.updated_at, sa.Text) >= cursor)
                return int(conn.execute(stmt).scalar() or 0)
        finally:
            engine.dispose()

    def change(round_no: int) -> None:
        picked = rng.sample(sorted(names), rng.randint(20, 120))
        at = BASE + timedelta(days=1, minutes=round_no)
        engine = sa.create_engine(env.wh)
        try:
            with engine.begin() as conn:
                for i in picked:
                    names[i] = f"Name {i} r{round_no}"
                    conn.execute(sa.update(people).where(people.c.id == i)
                                 .values(name=names[i], updated_at=at))
        finally:
            engine.dispose()

    started = time.monotonic()
    kill_repeatedly(env, project_file, "crash_push", rng, remaining, change)
    final_runs(project_file, "crash_push")
    print(f"push: {KILLS} kills and the final runs in {time.monotonic() - started:.0f} s")
    held = env.client.list("crash_push", fields=["email", "name"], limit=None)
    emails = Counter(r["email"] for r in held)
    assert len(held) == len(emails) == CRASH_ROWS, emails.most_common(3)
    assert {r["email"]: r["name"] for r in held} == {
        f"user{i}@example.org": n for i, n in names.items()}
    assert state_of(state_url, "crash_push")[0] == CRASH_ROWS


def test_sigkill_while_pulling_5000_records_leaves_each_exactly_once(env: Env) -> None:
    rng = Random("objectstack-crash:pull")
    env.server.reset("crash_pull")
    created = env.client.import_rows("crash_pull", [
        {"email": f"user{i}@example.org", "name": f"Name {i}", "score": i % 97,
         "status": "active"} for i in range(CRASH_ROWS)], "insert")
    assert all(c.ok for c in created)
    ids = [str(c.id) for c in created]
    names = {f"user{i}@example.org": f"Name {i}" for i in range(CRASH_ROWS)}
    sync_def = pull("crash_pull", name="crash_pull", changeTrackingField="updated_at",
                    batchSize=CRASH_BATCH, retry={"maxAttempts": 3, "backoffMs": 50})
    project_file = write_project(env, sync_def)

    def remaining() -> int:
        if not (env.tmp / "wh.db").exists():
            return CRASH_ROWS
        cursor = state_of(env.wh, "crash_pull")[1]
        where = None if cursor is None else {"updated_at": {"$gte": cursor}}
        return env.client.count("crash_pull", filter=where)

    def change(round_no: int) -> None:
        picked = rng.sample(range(CRASH_ROWS), rng.randint(20, 120))
        updates = []
        for i in picked:
            names[f"user{i}@example.org"] = f"Name {i} r{round_no}"
            updates.append({"id": ids[i], "name": f"Name {i} r{round_no}"})
        assert all(r.ok for r in env.client.batch("crash_pull", "update", updates))

    started = time.monotonic()
    kill_repeatedly(env, project_file, "crash_pull", rng, remaining, change)
    final_runs(project_file, "crash_pull")
    print(f"pull: {KILLS} kills and the final runs in {time.monotonic() - started:.0f} s")
    got = rows(env.wh, "contacts", order_by="email")
    engine = sa.create_engine(env.wh)
    try:
        with engine.connect() as conn:
            pairs = [tuple(r) for r in conn.execute(sa.text("SELECT email, name FROM contacts"))]
    finally:
        engine.dispose()
    emails = Counter(e for e, _ in pairs)
    assert len(got) == len(emails) == CRASH_ROWS, emails.most_common(3)
    assert dict(pairs) == names
    assert state_of(env.wh, "crash_pull")[0] == CRASH_ROWS
