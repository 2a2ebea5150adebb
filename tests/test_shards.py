"""Shards: one large sync split by a hash of its match key, run in parallel.

Engine: every record goes to exactly one shard, shards keep their own state, and together
they leave the destination exactly as one run does. Dagster: a two-shard run on the
multiprocess executor, with PostgreSQL instance storage (dagster-postgres), produces the same
destination as one run, one materialization and one check.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_assets import build_definitions
from sync_assets.connectors.sql import shard_of

from engine_helpers import (
    codes,
    counts,
    create_table,
    delete,
    execute,
    project,
    rows,
    sync,
    to_warehouse,
    update,
)

Urls = tuple[str, str]


def seed(url: str, n: int) -> None:
    create_table(url, "contact", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(80), nullable=False, unique=True),
        sa.Column("name", sa.Text),
    ], [{"id": i, "email": f"c{i}@example.com", "name": f"name {i}"} for i in range(1, n + 1)])


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def contacts_sync(table: str = "contacts", operation: str = "upsert",
                  **extra: Any) -> dict[str, Any]:
    return to_warehouse("contacts", "contact", table, operation, matchKey=["email"],
                        mapping={"id": "id", "email": "email", "name": "full_name"},
                        batchSize=50, audit=None, **extra)


def test_two_shards_write_what_one_run_writes(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed(os_url, 400)
    one = project(folder(tmp_path / "one"), backend, contacts_sync("contacts_one"))
    sharded = project(folder(tmp_path / "two"), backend, contacts_sync("contacts"))

    whole = sync(one, "contacts")
    first = sync(sharded, "contacts", shard=(0, 2))
    second = sync(sharded, "contacts", shard=(1, 2))

    assert counts(whole) == {"processed": 400, "inserted": 400}
    assert 100 < counts(first)["inserted"] < 300  # a hash spreads them, roughly evenly
    assert counts(first)["inserted"] + counts(second)["inserted"] == 400
    assert rows(wh_url, "contacts", "id") == rows(wh_url, "contacts_one", "id")


def test_each_shard_reads_only_its_own_keys(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed(os_url, 200)
    proj = project(tmp_path, backend, contacts_sync())

    sync(proj, "contacts", shard=(1, 3))

    expected = [i for i in range(1, 201) if shard_of(3, f"c{i}@example.com") == 1]
    assert [r[0] for r in rows(wh_url, "contacts", "id")] == expected


def test_shards_keep_their_own_cursor_and_records(tmp_path: Path, backend: Urls) -> None:
    os_url, wh_url = backend
    seed(os_url, 120)
    proj = project(tmp_path, backend, contacts_sync())
    sync(proj, "contacts", shard=(0, 2))
    sync(proj, "contacts", shard=(1, 2))
    changed = 7 if shard_of(2, "c7@example.com") == 0 else 8
    update(os_url, "contact", {"id": changed}, {"name": "changed"})

    again = [sync(proj, "contacts", shard=(i, 2)) for i in range(2)]

    assert [counts(r).get("updated", 0) for r in again] == [1, 0]
    assert sum(counts(r)["skipped"] for r in again) == 119
    with sa.create_engine(wh_url).connect() as conn:
        names = conn.execute(sa.text(
            "SELECT sync_name, count(*) FROM _sync_assets_records GROUP BY sync_name "
            "ORDER BY sync_name")).all()
    assert [n for n, _ in names] == ["contacts#shard-0-of-2", "contacts#shard-1-of-2"]
    assert sum(c for _, c in names) == 120


def test_a_mirror_shard_deletes_only_what_left_its_own_share(
    tmp_path: Path, backend: Urls
) -> None:
    os_url, wh_url = backend
    seed(os_url, 60)
    proj = project(tmp_path, backend, contacts_sync(operation="sync"))
    for i in range(2):
        sync(proj, "contacts", shard=(i, 2))
    gone = [i for i in range(5, 20) if shard_of(2, f"c{i}@example.com") == 0][:1]
    assert gone
    for i in gone:
        delete(os_url, "contact", {"id": i})

    results = [sync(proj, "contacts", shard=(i, 2)) for i in range(2)]

    assert [counts(r).get("deleted", 0) for r in results] == [1, 0]
    assert [r[0] for r in rows(wh_url, "contacts", "id")] == [
        i for i in range(1, 61) if i not in gone]


def test_shards_started_together_create_the_destination_once(
    tmp_path: Path, pg_url: str, pg_url_2: str
) -> None:
    seed(pg_url, 300)
    proj = project(tmp_path, (pg_url, pg_url_2), contacts_sync())
    results: dict[int, Any] = {}
    start = threading.Barrier(3)

    def shard(i: int) -> None:
        start.wait()
        results[i] = sync(proj, "contacts", shard=(i, 3))

    threads = [threading.Thread(target=shard, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert [r.to_spec()["status"] for r in results.values()] == ["completed"] * 3
    assert sum(counts(r)["inserted"] for r in results.values()) == 300
    assert [r[0] for r in rows(pg_url_2, "contacts", "id")] == list(range(1, 301))


def test_a_shard_that_does_not_exist_is_refused(tmp_path: Path, backend: Urls) -> None:
    os_url, _ = backend
    seed(os_url, 3)
    proj = project(tmp_path, backend, contacts_sync())

    result = sync(proj, "contacts", shard=(2, 2))

    assert codes(result) == ["CONFIG"]
    assert result.errors[0].message == "shard 2 of 2 does not exist: shards are numbered 0 to 1"


def test_shards_need_a_match_key_read_as_is(tmp_path: Path, backend: Urls) -> None:
    os_url, _ = backend
    seed(os_url, 3)
    proj = project(tmp_path, backend, to_warehouse(
        "contacts", "contact", "contacts", matchKey=["email"], audit=None,
        mapping=[{"source": "id", "target": "id"},
                 {"source": "email", "target": "email",
                  "transform": {"type": "javascript", "expression": "value.toLowerCase()"}}]))

    result = sync(proj, "contacts", shard=(0, 2))

    assert codes(result) == ["CONFIG"]
    assert "every key field (email) must be a source field mapped without a transform" in (
        result.errors[0].message)


# -- Dagster: two shards on the multiprocess executor, PostgreSQL instance storage --------
def instance_yaml(url: str) -> str:
    u = sa.make_url(url)
    return f"""\
storage:
  postgres:
    postgres_db:
      username: {u.username}
      hostname: {u.host}
      port: {u.port}
      db_name: {u.database}
      scheme: postgresql+psycopg2
"""


def test_a_two_shard_run_on_the_multiprocess_executor_writes_what_one_run_writes(
    tmp_path: Path, pg_url: str, pg_url_2: str, pg_url_3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(pg_url, 500)
    execute(pg_url, "UPDATE contact SET name = NULL WHERE id % 11 = 0")
    one = project(folder(tmp_path / "one"), (pg_url, pg_url_2), contacts_sync("contacts_one"))
    assert counts(sync(one, "contacts")) == {"processed": 500, "inserted": 500}
    sharded = project(folder(tmp_path / "two"), (pg_url, pg_url_2), contacts_sync("contacts"))
    monkeypatch.setenv("SHARD_TEST_PROJECT", str(sharded.root / "project.yaml"))

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(pg_url_3))
    # every step process imports the code location (tests/shard_defs.py) again
    job = dg.build_reconstructable_job(
        "shard_defs", "contacts_job",
        reconstructor_working_directory=str(Path(__file__).parent))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.execute_job(job, instance=instance)
        events = instance.all_logs(result.run_id)
        record = instance.get_latest_materialization_event(dg.AssetKey(["warehouse",
                                                                        "contacts"]))
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["warehouse", "contacts"]), "sync_completed")])

    assert result.success
    assert rows(pg_url_2, "contacts", "id") == rows(pg_url_2, "contacts_one", "id")
    # the two shards ran as steps of their own, in processes of their own
    started = {e.step_key: e.dagster_event.pid for e in events
               if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"}
    shards = {k: pid for k, pid in started.items() if "__shard_" in (k or "")}
    assert sorted(shards) == ["sync__contacts.sync__contacts__shard_0_of_2",
                              "sync__contacts.sync__contacts__shard_1_of_2"]
    assert len(set(shards.values())) == 2
    # ...at the same time: each started before the other finished
    first_done = min(e.timestamp for e in events if e.dagster_event
                     and e.dagster_event.event_type_value == "STEP_SUCCESS"
                     and e.step_key in shards)
    assert all(e.timestamp < first_done for e in events if e.dagster_event
               and e.dagster_event.event_type_value == "STEP_START" and e.step_key in shards)
    assert record is not None
    meta = record.asset_materialization.metadata
    assert meta["recordsInserted"].value == 500
    assert meta["shards"].value == 2
    assert meta["dagster/row_count"].value == 500
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    (execution,) = check.values()
    assert execution.status.value == "SUCCEEDED"


def test_a_failed_shard_fails_the_run_and_materializes_nothing(
    tmp_path: Path, backend: Urls
) -> None:
    proj = project(tmp_path, backend, contacts_sync())  # the source table does not exist
    job = build_definitions(proj, shards={"contacts": 2}).resolve_job_def(
        "sync__contacts__job")

    result = job.execute_in_process(raise_on_error=False)

    assert not result.success
    failed = sorted(e.step_key for e in result.all_events
                    if e.event_type_value == "STEP_FAILURE")
    assert failed == ["sync__contacts.sync__contacts__shard_0_of_2",
                      "sync__contacts.sync__contacts__shard_1_of_2"]
    assert result.get_asset_materialization_events() == []


def test_shards_are_refused_for_two_way_syncs_and_unknown_names(
    tmp_path: Path, backend: Urls
) -> None:
    proj = project(tmp_path, backend, {**contacts_sync(), "direction": "bidirectional"})

    with pytest.raises(ValueError, match="bidirectional: two-way syncs compare both sides"):
        build_definitions(proj, shards={"contacts": 2})
    with pytest.raises(ValueError, match="shards names syncs the project does not have: "
                                         "orders"):
        build_definitions(proj, shards={"orders": 2})
