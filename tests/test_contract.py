"""One contract suite over every connector (as dlt runs one suite over its destinations).

Each test runs the same sync against each peer (tests/contract_peers.py): SQLite and
PostgreSQL (transactional SQL, state beside the data), the in-memory connector (no
transactions, no filter pushdown, batches of at most 50, per-record refusals, state in the
project's state database) and the real ObjectStack server through its REST API (no
transactions, ObjectQL pushdown, server-stamped `updated_at`, its own validation rules, 429s
from a proxy in front of it). The same config must give the same rows and the same counts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from sync_assets import load_project
from sync_assets.connectors import memory
from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import run

from contract_peers import FIELDS, FilesPeer, MemoryPeer, SqlPeer
from engine_helpers import counts, create_table, delete, errors, insert, status, update
from objectstack_harness import objectstack_server  # noqa: F401  (a fixture)
from objectstack_peer import ObjectStackPeer
from s3_server import s3_server  # noqa: F401  (a fixture)
from saas_peers import SAAS_PEERS

T0 = datetime(2024, 1, 1, 10, 0, 0)
PERSON = {"email": "text", "name": "text", "score": "integer", "updated_at": "datetime"}
_stores = iter(range(1_000_000))
_lakes = itertools.count()


@pytest.fixture(params=["sqlite", "postgres", "duckdb", "mariadb", "memory", "objectstack",
                        "files", "files-s3", *SAAS_PEERS])
def peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param in SAAS_PEERS:
        with SAAS_PEERS[request.param](request, tmp_path) as found:
            # what the system's API does not allow is refused when a project loads (its
            # own tests show that), so those tests do not apply to it
            reason = getattr(found, "cannot", {}).get(request.node.originalname)
            if reason:
                pytest.skip(reason)
            yield found
    elif request.param == "objectstack":
        # the real server, through a proxy that can answer 429; its object `person` emptied
        found = ObjectStackPeer(request.getfixturevalue("objectstack_server"))
        found.create(found.people, PERSON, ["email"])
        yield found
        found.close()
    elif request.param == "sqlite":
        yield SqlPeer("sqlite", f"sqlite:///{tmp_path}/peer.db")
    elif request.param == "postgres":
        yield SqlPeer("postgres", request.getfixturevalue("pg_url"))
    elif request.param == "duckdb":
        yield SqlPeer("duckdb", f"duckdb:///{tmp_path}/peer.duckdb")
    elif request.param == "mariadb":
        yield SqlPeer("mariadb", request.getfixturevalue("mysql_url"))
    elif request.param == "files":
        yield FilesPeer("files", f"file://{tmp_path}/files")
    elif request.param == "files-s3":
        s3 = request.getfixturevalue("s3_server")
        yield FilesPeer("files-s3", f"s3://{s3.bucket('contract')}/people-{next(_lakes)}",
                        s3.storage_options())
    else:
        name = f"contract-{next(_stores)}"
        yield MemoryPeer(name)
        memory.drop_store(name)
    dispose_engines()


def held(peer: Any) -> list[dict[str, Any]]:
    """What the peer's record set holds, in the suite's fields, by email."""
    return peer.rows(peer.people, FIELDS, "email")


def person(i: int, **values: Any) -> dict[str, Any]:
    row = {"id": i, "email": f"p{i}@x.io", "name": f"name {i}", "score": i * 10,
           "updated_at": T0 + timedelta(minutes=i)}
    return {**row, **values}


def expected(*ids: int, **changed: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for i in ids:
        row = {f: person(i)[f] for f in FIELDS}
        row.update(changed.get(f"p{i}", {}))
        out.append(row)
    return sorted(out, key=lambda r: r["email"])


def seed_source(tmp_path: Path, n: int, **values: Any) -> str:
    url = f"sqlite:///{tmp_path}/objectstack.db"
    create_table(url, "person", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text), sa.Column("name", sa.Text),
        sa.Column("score", sa.Integer), sa.Column("updated_at", sa.DateTime),
    ], [person(i, **values) for i in range(1, n + 1)])
    return url


def project(tmp_path: Path, peer: Any, **sync: Any) -> Any:
    """A project whose datastore is SQLite and whose connector `peer` is the peer; `sync`
    holds the one sync's keys (source/destination default to person -> peer.people)."""
    config = {
        "name": "people",
        "source": {"object": "person"},
        "destination": {"connectorInstanceId": "peer", "externalResource": peer.people,
                        "operation": "upsert", "matchKey": ["email"],
                        "mapping": {f: f for f in FIELDS}},
        "batchSize": 7,
    }
    for key in ("operation", "matchKey", "mapping"):
        if key in sync:
            config["destination"][key] = sync.pop(key)
    config.update(sync)
    data = {"objectstack": {"url": f"sqlite:///{tmp_path}/objectstack.db"},
            "connectors": {"peer": peer.settings(),
                           "warehouse": {"type": "sql", "url": f"sqlite:///{tmp_path}/wh.db"}},
            "syncs": [config]}
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_project(path, env={})


def sync(proj: Any, **options: Any) -> Any:
    options.setdefault("sleep", lambda _s: None)
    return run(proj, "people", **options)


SRC = "sqlite:///{}/objectstack.db"


# -- the five operations -----------------------------------------------------------------


def test_upsert_inserts_then_updates_only_what_changed(tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 20)
    proj = project(tmp_path, peer)
    assert counts(sync(proj)) == {"processed": 20, "inserted": 20}
    assert held(peer) == expected(*range(1, 21))
    update(SRC.format(tmp_path), "person", {"id": 3}, {"name": "three"})
    assert counts(sync(proj)) == {"processed": 20, "updated": 1, "skipped": 19}
    assert held(peer) == expected(*range(1, 21), p3={"name": "three"})


def test_insert_by_match_key_writes_each_record_once(tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 12)
    proj = project(tmp_path, peer, operation="insert")
    assert counts(sync(proj)) == {"processed": 12, "inserted": 12}
    update(SRC.format(tmp_path), "person", {"id": 3}, {"name": "three"})
    assert counts(sync(proj)) == {"processed": 12, "skipped": 12}
    assert held(peer) == expected(*range(1, 13))


def test_update_changes_existing_records_and_skips_missing(tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 6)
    peer.create(peer.people, PERSON, ["email"], [person(2, name="old"), person(5, name="old")])
    proj = project(tmp_path, peer, operation="update")
    assert counts(sync(proj)) == {"processed": 6, "updated": 2, "skipped": 4}
    assert held(peer) == expected(2, 5)


def test_delete_removes_the_matching_records(tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 3)
    peer.create(peer.people, PERSON, ["email"], [person(i) for i in (2, 3, 8, 9)])
    proj = project(tmp_path, peer, operation="delete")
    assert counts(sync(proj)) == {"processed": 3, "deleted": 2, "skipped": 1}
    assert held(peer) == expected(8, 9)


def test_sync_mirrors_away_only_what_it_created(tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 10)
    peer.create(peer.people, PERSON, ["email"], [person(99)])
    proj = project(tmp_path, peer, operation="sync", syncMode="full")
    assert counts(sync(proj)) == {"processed": 10, "inserted": 10}
    delete(SRC.format(tmp_path), "person", {"id": 4})
    assert counts(sync(proj)) == {"processed": 10, "deleted": 1, "skipped": 9}
    assert held(peer) == expected(*[i for i in range(1, 11) if i != 4], 99)


def test_the_mirror_guard_refuses_to_delete_most_records(tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 30)
    proj = project(tmp_path, peer, operation="sync", syncMode="full")
    sync(proj)
    for i in range(1, 21):
        delete(SRC.format(tmp_path), "person", {"id": i})
    guarded = sync(proj)
    assert status(guarded) == "failed"
    assert errors(guarded)[0]["code"] == "MASS_DELETE_GUARD"
    assert len(held(peer)) == 30
    assert counts(sync(proj, allow_mass_delete=True))["deleted"] == 20
    assert held(peer) == expected(*range(21, 31))


# -- modes ---------------------------------------------------------------------------------


def test_a_full_rerun_with_nothing_changed_writes_nothing(tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 15)
    proj = project(tmp_path, peer, syncMode="full")
    sync(proj)
    assert counts(sync(proj)) == {"processed": 15, "skipped": 15}
    assert counts(sync(proj, full_refresh=True)) == {"processed": 15, "skipped": 15}


def test_incremental_reads_from_the_cursor_boundary_inclusive(
        tmp_path: Path, peer: Any) -> None:
    # records 1-5 share one change time: the cursor lands on it, and a record written later
    # at that same time is not lost
    seed_source(tmp_path, 5, updated_at=T0)
    proj = project(tmp_path, peer, changeTrackingField="updated_at")
    assert counts(sync(proj)) == {"processed": 5, "inserted": 5}
    src = SRC.format(tmp_path)
    insert(src, "person", [person(6, updated_at=T0)])
    again = sync(proj)
    assert counts(again) == {"processed": 1, "inserted": 1}  # boundary re-reads not counted
    assert held(peer) == expected(*range(1, 7))
    update(src, "person", {"id": 2}, {"score": 7, "updated_at": T0 + timedelta(hours=1)})
    assert counts(sync(proj)) == {"processed": 1, "updated": 1}
    assert held(peer) == expected(*range(1, 7), p2={"score": 7})


# -- errors --------------------------------------------------------------------------------


def test_refused_records_are_errored_and_the_others_written(tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 5)
    update(SRC.format(tmp_path), "person", {"id": 3}, {"score": -1})
    peer.create(peer.people, PERSON, ["email"], refuse_negative="score")
    proj = project(tmp_path, peer, errorHandling={"onSyncError": "skip"})
    result = sync(proj)
    assert status(result) == "partial"
    assert counts(result) == {"processed": 5, "inserted": 4, "errored": 1}
    (error,) = errors(result)
    assert error["recordId"] == "3" and error["code"] == "WRITE_ERROR"
    assert held(peer) == expected(1, 2, 4, 5)
    # the refused record was not recorded as synced: once fixed, it is written
    update(SRC.format(tmp_path), "person", {"id": 3}, {"score": 30})
    assert counts(sync(proj)) == {"processed": 5, "inserted": 1, "skipped": 4}
    assert held(peer) == expected(1, 2, 3, 4, 5)


def test_transient_errors_are_retried_and_nothing_is_doubled(
        tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 10)
    peer.create(peer.people, PERSON, ["email"])
    proj = project(tmp_path, peer, retry={"maxAttempts": 3, "backoffMs": 0})
    sleeps: list[float] = []
    with peer.faults(2, retry_after=0.25):
        result = sync(proj, sleep=sleeps.append)
    assert status(result) == "completed"
    assert counts(result) == {"processed": 10, "inserted": 10}
    assert held(peer) == expected(*range(1, 11))
    # a Retry-After is waited for where the system sends one; the clients of web APIs
    # (ObjectStack's, connectors/web.py) retry 429s themselves, honouring Retry-After, before
    # the engine sees a failure (their own tests show the waits)
    client_waits = isinstance(peer, ObjectStackPeer) or getattr(peer, "client_waits", False)
    assert sleeps == ([] if client_waits else
                      {MemoryPeer: [0.25, 0.25]}.get(type(peer), [0.0, 0.0]))


def test_transient_errors_past_the_retries_fail_the_run(tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 10)
    peer.create(peer.people, PERSON, ["email"])
    proj = project(tmp_path, peer, retry={"maxAttempts": 1, "backoffMs": 0})
    with peer.faults(30, retry_after=0):
        result = sync(proj)
    assert status(result) == "failed"
    assert held(peer) == []
    assert counts(sync(proj)) == {"processed": 10, "inserted": 10}


# -- the peer as the source ------------------------------------------------------------------


def test_reading_the_peer_incrementally_with_a_filter(tmp_path: Path, peer: Any) -> None:
    peer.create(peer.people, PERSON, ["email"], [person(i) for i in range(1, 13)])
    create_table(f"sqlite:///{tmp_path}/objectstack.db", "unused", [sa.Column("x", sa.Integer)])
    proj = project(
        tmp_path, peer,
        source={"connectorInstanceId": "peer", "externalResource": peer.people,
                "filters": {"score": {"$gte": 50}}},
        destination={"connectorInstanceId": "warehouse", "externalResource": "people",
                     "operation": "upsert", "matchKey": ["email"],
                     "mapping": {f: f for f in FIELDS}},
        changeTrackingField="updated_at")
    assert counts(sync(proj)) == {"processed": 8, "inserted": 8}
    warehouse = SqlPeer("sqlite", f"sqlite:///{tmp_path}/wh.db")
    assert warehouse.rows("people") == expected(*range(5, 13))
    peer.change(peer.people, {"email": "p7@x.io"},
                {"name": "seven", "updated_at": T0 + timedelta(hours=2)})
    assert counts(sync(proj)) == {"processed": 1, "updated": 1}
    assert warehouse.rows("people") == expected(*range(5, 13), p7={"name": "seven"})


# -- two-way ---------------------------------------------------------------------------------


def test_two_way_changes_flow_both_ways_without_echoes(tmp_path: Path, peer: Any) -> None:
    seed_source(tmp_path, 8)
    proj = project(tmp_path, peer, direction="bidirectional", conflictResolution="source_wins")
    assert counts(sync(proj)) == {"processed": 8, "inserted": 8}
    peer.change(peer.people, {"email": "p2@x.io"}, {"name": "two"})
    assert counts(sync(proj)) == {"processed": 8, "updated": 1, "skipped": 7}
    with sa.create_engine(SRC.format(tmp_path)).connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM person WHERE id = 2")).scalar() == "two"
    assert counts(sync(proj)) == {"processed": 8, "skipped": 8}  # no echo of its own writes
    assert held(peer) == expected(*range(1, 9), p2={"name": "two"})


# -- every operation in every mode -----------------------------------------------------------

MODES: dict[str, dict[str, Any]] = {
    "snapshot": {},  # incremental without a change-tracking field: read all, diff
    "full": {"syncMode": "full"},
    "incremental": {"changeTrackingField": "updated_at"},
}
OLD = {"name": "old"}
#: what the destination holds after both runs (ids; ids whose name stayed "old"; renamed)
AFTER: dict[str, tuple[list[int], list[int], bool]] = {
    "insert": ([1, 2, 3, 4, 5, 6, 9], [2, 3, 9], False),  # never changes what exists
    "update": ([2, 3, 9], [9], True),  # changes only what exists
    "upsert": ([1, 2, 3, 4, 5, 6, 9], [9], True),  # never deletes
    "delete": ([9], [9], False),  # removes what the source holds
    "sync": ([1, 2, 3, 4, 5, 9], [9], True),  # mirrors away only what it created (6)
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("operation", list(AFTER))
def test_each_operation_in_each_mode(tmp_path: Path, peer: Any, operation: str,
                                     mode: str) -> None:
    seed_source(tmp_path, 6)
    peer.create(peer.people, PERSON, ["email"], [person(i, **OLD) for i in (2, 3, 9)])
    proj = project(tmp_path, peer, operation=operation, **MODES[mode])
    assert status(sync(proj)) == "completed"
    src = SRC.format(tmp_path)
    update(src, "person", {"id": 3}, {"name": "three", "updated_at": T0 + timedelta(hours=1)})
    delete(src, "person", {"id": 6})
    assert status(sync(proj)) == "completed"
    ids, old, renamed = AFTER[operation]
    changed = {f"p{i}": dict(OLD) for i in old}
    if renamed:
        changed["p3"] = {"name": "three"}
    assert held(peer) == expected(*ids, **changed)
