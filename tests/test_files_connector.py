"""The files connector (`type: files`) on real files: CSV, JSON Lines and Parquet in temporary
folders, and Parquet on a real S3 API (moto's server, tests/s3_server.py).

Whole syncs with exact rows and counters (CSV -> SQLite, SQLite -> Parquet, Parquet on S3 ->
PostgreSQL), each rerun with nothing changed (writes nothing) and after changes (writes exactly
them); settings, kinds and secrets; a folder taking part files; SIGKILLed writers (local and
S3) with a reader that must never see a partial file; and the peak memory of a big CSV sync,
measured in a subprocess.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from sync_assets import Project, load_project
from sync_assets.connectors.base import ReadRequest
from sync_assets.connectors.builtin import FILES
from sync_assets.connectors.files.connector import FilesTable
from sync_assets.connectors.files.settings import FilesSettings
from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import run
from sync_assets.state import StateStore

from engine_helpers import counts, create_table, errors, insert, spec, status, update
from kill_helpers import Pace, kill_one_run
from s3_server import S3, s3_checking_credentials, s3_server  # noqa: F401  (a fixture)

T0 = datetime(2024, 1, 1, 10, 0, 0)
WORKER = Path(__file__).with_name("objectstack_crash_worker.py")  # runs any sync of a project


# -- helpers ---------------------------------------------------------------------------------
def make_project(tmp_path: Path, connectors: Mapping[str, Any], *syncs: Mapping[str, Any],
                 name: str = "project.yaml") -> Project:
    path = write_project(tmp_path, connectors, *syncs, name=name)
    return load_project(path, env={})


def write_project(tmp_path: Path, connectors: Mapping[str, Any], *syncs: Mapping[str, Any],
                  name: str = "project.yaml") -> Path:
    data = {"objectstack": {"url": f"sqlite:///{tmp_path}/objectstack.db"},
            "connectors": dict(connectors), "syncs": [dict(s) for s in syncs]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sync(proj: Project, name: str, **options: Any) -> Any:
    options.setdefault("sleep", lambda _s: None)
    result = run(proj, name, **options)
    spec(result)
    return result


def sql_rows(url: str, table: str, order: str = "id") -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            found = sa.Table(table, sa.MetaData(), autoload_with=conn)  # typed values
            return [dict(r) for r in conn.execute(
                sa.select(found).order_by(found.c[order])).mappings()]
    finally:
        engine.dispose()


def write_csv(path: Path, rows: list[dict[str, Any]], modified: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(rows[0])
    lines = [",".join(header)] + [",".join("" if r[h] is None else str(r[h]) for h in header)
                                  for r in rows]
    path.write_text("\n".join(lines) + "\n")
    stamp = modified.timestamp()
    os.utime(path, (stamp, stamp))


def contact(i: int, **values: Any) -> dict[str, Any]:
    row = {"id": i, "email": f"c{i}@x.io", "score": i * 3, "at": (T0 + timedelta(hours=i))
           .isoformat()}
    return {**row, **values}


def person(i: int, **values: Any) -> dict[str, Any]:
    row = {"id": i, "email": f"p{i}@x.io", "name": f"name {i}", "score": i * 10,
           "updated_at": T0 + timedelta(minutes=i)}
    return {**row, **values}


PERSON_COLUMNS = ("id", "email", "name", "score", "updated_at")


def seed_people(url: str, rows: list[dict[str, Any]], table: str = "people") -> None:
    create_table(url, table, [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text), sa.Column("name", sa.Text),
        sa.Column("score", sa.Integer), sa.Column("updated_at", sa.DateTime)], rows)


def parquet_rows(data: bytes | str | Path, order: str = "id") -> list[dict[str, Any]]:
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    return sorted(pq.read_table(source).to_pylist(), key=lambda r: r[order])


def opened(settings: dict[str, Any], resource: str) -> FilesTable:
    return FILES.open(FilesSettings.model_validate(settings), resource, f"t.{resource}")


# -- settings, kinds, secrets ----------------------------------------------------------------
def test_settings_keep_storage_options_secret_and_kinds_come_from_settings() -> None:
    settings = FilesSettings.model_validate({
        "type": "files", "url": "s3://bucket/crm", "format": "parquet",
        "storageOptions": {"endpoint_url": "http://minio:9000", "key": "AKIA-XYZ",
                           "secret": "s3cr3t-value", "client_kwargs": {"region_name": "eu"},
                           "anon": False}})
    shown = repr(settings) + str(settings.model_dump())
    for secret in ("AKIA-XYZ", "s3cr3t-value", "http://minio:9000"):
        assert secret not in shown
    assert settings.storage()["secret"] == "s3cr3t-value"
    assert settings.storage()["client_kwargs"] == {"region_name": "eu"}
    assert settings.storage()["anon"] is False
    assert FILES.kinds(settings) == {"parquet", "s3"}
    local = FilesSettings.model_validate({"type": "files", "url": "file:///srv/x",
                                          "format": "csv"})
    assert FILES.kinds(local) == {"csv"}
    assert FILES.kinds(FilesSettings.model_validate({"type": "files", "url": "/srv"})) == \
        {"files"}
    with pytest.raises(ValueError, match="storageOptions"):
        FilesSettings.model_validate({"type": "files", "url": "s3://me:pw@bucket/x"})
    with pytest.raises(ValueError):
        FilesSettings.model_validate({"type": "files", "url": "/x", "formatt": "csv"})


def test_describe_infers_csv_types_applies_overrides_and_key(tmp_path: Path) -> None:
    write_csv(tmp_path / "c.csv", [contact(1, score=None), contact(2, score=None)], T0)
    settings = {"type": "files", "url": f"file://{tmp_path}", "key": "id"}
    desc = opened(settings, "c.csv").describe()
    assert {n: f.kind for n, f in desc.fields.items()} == {
        "id": "integer", "email": "text", "score": "text", "at": "datetime"}
    assert desc.primary_key == ("id",)
    desc = opened({**settings, "columns": {"score": "float", "at": "text"}}, "c.csv").describe()
    assert {n: f.kind for n, f in desc.fields.items()} == {
        "id": "integer", "email": "text", "score": "float", "at": "text"}
    assert not opened(settings, "missing.csv").describe().exists
    assert opened(settings, "c.csv").count() == 2


def test_jsonl_and_parquet_read_with_filters_exactly_as_the_engine_evaluates(
        tmp_path: Path) -> None:
    rows = [{"id": i, "name": None if i % 5 == 0 else f"n{i}", "score": i * 1.5}
            for i in range(1, 41)]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.parquet", row_group_size=7)
    from sync_assets.filters import evaluate_filter, parse_filter

    raw = {"$or": [{"score": {"$gte": 40}}, {"name": {"$in": ["n3", "n4"]}}],
           "name": {"$ne": "n50"}}
    node = parse_filter(raw)
    wanted = [r for r in rows if evaluate_filter(node, r)]
    for resource in ("r.jsonl", "r.parquet"):
        table = opened({"type": "files", "url": str(tmp_path), "key": "id"}, resource)
        request = ReadRequest(columns=["id", "name", "score"], order_by=["id"], batch_size=4,
                              filter=node)
        pages = list(table.read_batches(request))
        assert all(len(p) == 4 for p in pages[:-1])
        assert [r for p in pages for r in p] == wanted, resource
        assert table.lookup(None, ["id"], [(3,), (40,), (99,)], ["name"]) == [
            {"id": 3, "name": "n3"}, {"id": 40, "name": None}]


def test_parquet_row_groups_the_filter_cannot_match_are_not_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pq.write_table(pa.Table.from_pylist([{"id": i, "score": i} for i in range(1, 41)]),
                   tmp_path / "r.parquet", row_group_size=7)
    read: list[list[int]] = []
    original = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Any:
        read.append(list(kwargs["row_groups"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    from sync_assets.filters import parse_filter

    table = opened({"type": "files", "url": str(tmp_path), "key": "id"}, "r.parquet")
    request = ReadRequest(columns=["id"], order_by=["id"], batch_size=100,
                          filter=parse_filter({"score": {"$gte": 37}}))
    assert [r["id"] for p in table.read_batches(request) for r in p] == [37, 38, 39, 40]
    assert read == [[5]]  # ids 36-40 are the sixth group of 7 rows: the rest is skipped


def test_jsonl_nested_values_are_json_and_overrides_parse_text_as_json(tmp_path: Path) -> None:
    (tmp_path / "n.jsonl").write_text(
        json.dumps({"id": 1, "tags": ["a", "b"], "meta": {"k": 1}, "raw": '{"x": 2}'}) + "\n")
    table = opened({"type": "files", "url": str(tmp_path), "key": "id",
                    "columns": {"raw": "json"}}, "n.jsonl")
    kinds = {n: f.kind for n, f in table.describe().fields.items()}
    assert kinds == {"id": "integer", "tags": "json", "meta": "json", "raw": "json"}
    request = ReadRequest(columns=["id", "tags", "meta", "raw"], order_by=["id"],
                          batch_size=10)
    assert [r for p in table.read_batches(request) for r in p] == [
        {"id": 1, "tags": ["a", "b"], "meta": {"k": 1}, "raw": {"x": 2}}]


# -- CSV -> SQLite ---------------------------------------------------------------------------
def test_csv_glob_to_sqlite_then_nothing_then_only_the_new_and_changed_files(
        tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    write_csv(exports / "contacts" / "a.csv", [contact(i) for i in range(1, 6)], T0)
    write_csv(exports / "contacts" / "b.csv", [contact(i) for i in range(6, 10)],
              T0 + timedelta(seconds=10))
    (exports / "contacts" / "notes.txt").write_text("not a csv")
    wh = f"sqlite:///{tmp_path}/wh.db"
    proj = make_project(
        tmp_path,
        {"exports": {"type": "files", "url": f"file://{exports}", "key": "id",
                     "fileColumns": True, "columns": {"score": "integer"}},
         "wh": {"type": "sql", "url": wh}},
        {"name": "contacts_from_csv",
         "source": {"connectorInstanceId": "exports", "externalResource": "contacts/*.csv"},
         "destination": {"connectorInstanceId": "wh", "externalResource": "contacts",
                         "operation": "upsert", "matchKey": ["id"],
                         "mapping": {"id": "id", "email": "email", "score": "score",
                                     "at": "at", "_file": "file"}},
         "changeTrackingField": "_file_modified", "batchSize": 3})
    assert counts(sync(proj, "contacts_from_csv")) == {"processed": 9, "inserted": 9}

    def expected(changed: Mapping[int, dict[str, Any]] = {}, extra: range = range(0)
                 ) -> list[dict[str, Any]]:
        out = []
        for i in [*range(1, 10), *extra]:
            row = {**contact(i), **changed.get(i, {})}
            out.append({"id": i, "email": row["email"], "score": row["score"],
                        "at": datetime.fromisoformat(row["at"]),
                        "file": "contacts/a.csv" if i < 6 else
                        "contacts/b.csv" if i < 10 else "contacts/c.csv"})
        return out

    assert sql_rows(wh, "contacts") == expected()
    assert counts(sync(proj, "contacts_from_csv")) == {}  # no file is new or changed
    # b.csv changes one record; c.csv is new: only those two files are read
    write_csv(exports / "contacts" / "b.csv",
              [contact(i, score=-1 if i == 7 else i * 3) for i in range(6, 10)],
              T0 + timedelta(seconds=20))
    write_csv(exports / "contacts" / "c.csv", [contact(i) for i in (10, 11)],
              T0 + timedelta(seconds=30))
    assert counts(sync(proj, "contacts_from_csv")) == {
        "processed": 6, "inserted": 2, "updated": 1, "skipped": 3}
    assert sql_rows(wh, "contacts") == expected({7: {"score": -1}}, range(10, 12))
    assert counts(sync(proj, "contacts_from_csv")) == {}


def test_files_are_new_or_changed_by_name_size_and_time_whatever_their_time_says(
        tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    write_csv(exports / "a.csv", [contact(i) for i in range(1, 4)], T0 + timedelta(days=5))
    proj = make_project(
        tmp_path,
        {"exports": {"type": "files", "url": str(exports), "key": "id", "fileColumns": True},
         "wh": {"type": "sql", "url": f"sqlite:///{tmp_path}/wh.db"}},
        {"name": "load", "source": {"connectorInstanceId": "exports",
                                    "externalResource": "*.csv"},
         "destination": {"connectorInstanceId": "wh", "externalResource": "contacts",
                         "operation": "upsert", "matchKey": ["id"],
                         "mapping": {"id": "id", "email": "email", "_file": "file"}},
         "changeTrackingField": "_file_modified", "batchSize": 2})
    first = sync(proj, "load")
    assert counts(first) == {"processed": 3, "inserted": 3}
    assert any("incremental read on _file_modified from the start to 1 file read, the newest "
               f"modified {(T0 + timedelta(days=5)).isoformat()}" in line for line in first.logs)
    # copied in keeping an older time (cp -p, rsync -t): new by its name
    write_csv(exports / "old.csv", [contact(i) for i in (10, 11)], T0)
    assert counts(sync(proj, "load")) == {"processed": 2, "inserted": 2}
    # rewritten with the same time but another size: changed
    write_csv(exports / "a.csv", [contact(i) for i in range(1, 5)], T0 + timedelta(days=5))
    assert counts(sync(proj, "load")) == {"processed": 4, "inserted": 1, "skipped": 3}
    assert counts(sync(proj, "load")) == {}
    assert [r["id"] for r in sql_rows(f"sqlite:///{tmp_path}/wh.db", "contacts")] == [
        1, 2, 3, 4, 10, 11]


@pytest.mark.parametrize("url", ["exports", "./exports", "file://exports"])
def test_a_relative_path_is_beside_the_project_file_whatever_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    (tmp_path / "proj").mkdir()
    write_csv(tmp_path / "proj" / "exports" / "a.csv", [contact(i) for i in (1, 2)], T0)
    path = write_project(
        tmp_path / "proj",
        {"exports": {"type": "files", "url": url, "key": "id"},
         "wh": {"type": "sql", "url": "sqlite:///wh.db"}},
        {"name": "load", "source": {"connectorInstanceId": "exports",
                                    "externalResource": "a.csv"},
         "destination": {"connectorInstanceId": "wh", "externalResource": "contacts",
                         "operation": "upsert", "matchKey": ["id"],
                         "mapping": {"id": "id", "email": "email"}}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    proj = load_project(path, env={})
    assert counts(sync(proj, "load")) == {"processed": 2, "inserted": 2}
    assert not any(elsewhere.iterdir())


def test_csv_full_sync_rereads_all_and_writes_only_changes(tmp_path: Path) -> None:
    write_csv(tmp_path / "in" / "c.csv", [contact(i) for i in range(1, 8)], T0)
    wh = f"sqlite:///{tmp_path}/wh.db"
    proj = make_project(
        tmp_path,
        {"in": {"type": "files", "url": str(tmp_path / "in"), "key": ["id"]},
         "wh": {"type": "sql", "url": wh}},
        {"name": "c", "source": {"connectorInstanceId": "in", "externalResource": "c.csv"},
         "destination": {"connectorInstanceId": "wh", "externalResource": "c",
                         "operation": "sync", "matchKey": ["id"],
                         "mapping": {"id": "id", "email": "email", "score": "score"}},
         "syncMode": "full", "batchSize": 4})
    assert counts(sync(proj, "c")) == {"processed": 7, "inserted": 7}
    assert counts(sync(proj, "c")) == {"processed": 7, "skipped": 7}
    write_csv(tmp_path / "in" / "c.csv",
              [contact(i, email="new@x.io" if i == 2 else f"c{i}@x.io") for i in range(1, 7)],
              T0 + timedelta(seconds=1))
    assert counts(sync(proj, "c")) == {"processed": 7, "updated": 1, "deleted": 1,
                                       "skipped": 5}
    assert [r["email"] for r in sql_rows(wh, "c")] == [
        "c1@x.io", "new@x.io", "c3@x.io", "c4@x.io", "c5@x.io", "c6@x.io"]


# -- SQLite -> Parquet -----------------------------------------------------------------------
def test_sqlite_to_parquet_upsert_then_nothing_then_exactly_the_changes(tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path}/src.db"
    seed_people(src, [person(i) for i in range(1, 26)])
    lake = tmp_path / "lake"
    proj = make_project(
        tmp_path,
        {"src": {"type": "sql", "url": src},
         "lake": {"type": "files", "url": f"file://{lake}", "format": "parquet"}},
        {"name": "to_lake", "source": {"connectorInstanceId": "src", "externalResource": "people"},
         "destination": {"connectorInstanceId": "lake", "externalResource": "crm/people.parquet",
                         "operation": "upsert", "matchKey": ["id"],
                         "mapping": {c: c for c in PERSON_COLUMNS}},
         "changeTrackingField": "updated_at", "batchSize": 10})
    assert counts(sync(proj, "to_lake")) == {"processed": 25, "inserted": 25}
    target = lake / "crm" / "people.parquet"
    assert parquet_rows(target) == [person(i) for i in range(1, 26)]
    schema = pq.read_schema(target)
    assert schema.field("id").type == pa.int64()
    assert schema.field("updated_at").type == pa.timestamp("us")
    assert counts(sync(proj, "to_lake")) == {}
    later = T0 + timedelta(days=1)
    update(src, "people", {"id": 4}, {"name": "four", "updated_at": later})
    update(src, "people", {"id": 17}, {"score": -5, "updated_at": later})
    insert(src, "people", [person(26, updated_at=later)])
    assert counts(sync(proj, "to_lake")) == {"processed": 3, "updated": 2, "inserted": 1}
    assert parquet_rows(target) == [
        person(i, **({"name": "four", "updated_at": later} if i == 4 else
                     {"score": -5, "updated_at": later} if i == 17 else
                     {"updated_at": later} if i == 26 else {}))
        for i in range(1, 27)]
    assert counts(sync(proj, "to_lake")) == {}
    assert sorted(p.name for p in (lake / "crm").iterdir()) == ["people.parquet"]


def test_a_plan_writes_no_file_and_counts_what_a_run_would(tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path}/src.db"
    seed_people(src, [person(i) for i in range(1, 6)])
    proj = make_project(
        tmp_path,
        {"src": {"type": "sql", "url": src},
         "lake": {"type": "files", "url": str(tmp_path / "lake")}},
        {"name": "p", "source": {"connectorInstanceId": "src", "externalResource": "people"},
         "destination": {"connectorInstanceId": "lake", "externalResource": "p.parquet",
                         "operation": "upsert", "matchKey": ["id"],
                         "mapping": {c: c for c in PERSON_COLUMNS}}})
    from sync_assets.engine import plan

    assert plan(proj, "p").stats["recordsInserted"] == 5
    assert not (tmp_path / "lake" / "p.parquet").exists()
    assert counts(sync(proj, "p")) == {"processed": 5, "inserted": 5}
    update(src, "people", {"id": 2}, {"name": "two"})
    assert plan(proj, "p").stats["recordsUpdated"] == 1
    assert [r["name"] for r in parquet_rows(tmp_path / "lake" / "p.parquet")][1] == "name 2"


def test_sqlite_to_csv_and_jsonl_files_mirror_deletes(tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path}/src.db"
    seed_people(src, [person(i) for i in range(1, 9)])
    for target in ("people.csv", "people.jsonl"):
        proj = make_project(
            tmp_path,
            {"src": {"type": "sql", "url": src},
             "out": {"type": "files", "url": str(tmp_path / "out"),
                     "columns": {"updated_at": "datetime"}}},
            {"name": target.replace(".", "_"), "source": {"connectorInstanceId": "src",
                                       "externalResource": "people"},
             "destination": {"connectorInstanceId": "out", "externalResource": target,
                             "operation": "sync", "matchKey": ["id"],
                             "mapping": {c: c for c in PERSON_COLUMNS}},
             "syncMode": "full", "batchSize": 3}, name=f"{target}.yaml")
        name = target.replace(".", "_")
        assert counts(sync(proj, name)) == {"processed": 8, "inserted": 8}
        assert counts(sync(proj, name)) == {"processed": 8, "skipped": 8}
        reader = opened({"type": "files", "url": str(tmp_path / "out"),
                         "columns": {"updated_at": "datetime"}}, target)
        got = [r for p in reader.read_batches(ReadRequest(
            columns=list(PERSON_COLUMNS), order_by=["id"], batch_size=100)) for r in p]
        assert sorted(got, key=lambda r: r["id"]) == [person(i) for i in range(1, 9)], target
    # both files mirror a deletion
    from engine_helpers import delete

    delete(src, "people", {"id": 3})
    for target in ("people.csv", "people.jsonl"):
        proj = load_project(tmp_path / f"{target}.yaml", env={})
        assert counts(sync(proj, target.replace(".", "_"))) == {
            "processed": 8, "deleted": 1, "skipped": 7}
        assert opened({"type": "files", "url": str(tmp_path / "out")}, target).count() == 7


def test_insert_into_a_folder_writes_part_files_and_a_rerun_writes_none(tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path}/src.db"
    seed_people(src, [person(i) for i in range(1, 6)])
    lake = tmp_path / "lake"
    proj = make_project(
        tmp_path,
        {"src": {"type": "sql", "url": src},
         "lake": {"type": "files", "url": str(lake), "format": "parquet"}},
        {"name": "events", "source": {"connectorInstanceId": "src", "externalResource": "people"},
         "destination": {"connectorInstanceId": "lake", "externalResource": "events",
                         "operation": "insert", "matchKey": ["id"],
                         "mapping": {c: c for c in PERSON_COLUMNS}},
         "batchSize": 100})
    assert counts(sync(proj, "events")) == {"processed": 5, "inserted": 5}
    insert(src, "people", [person(6), person(7)])
    update(src, "people", {"id": 1}, {"name": "changed"})  # insert never changes a record
    assert counts(sync(proj, "events")) == {"processed": 7, "inserted": 2, "skipped": 5}
    assert counts(sync(proj, "events")) == {"processed": 7, "skipped": 7}
    parts = sorted((lake / "events").iterdir())
    assert len(parts) == 2 and all(p.name.startswith("part-") and p.suffix == ".parquet"
                                   for p in parts)
    assert [len(pq.read_table(p)) for p in parts] == [5, 2]
    reader = opened({"type": "files", "url": str(lake), "format": "parquet"}, "events")
    assert reader.count() == 7
    # a folder cannot be rewritten record by record
    proj = make_project(
        tmp_path, {"src": {"type": "sql", "url": src},
                   "lake": {"type": "files", "url": str(lake), "format": "parquet"}},
        {"name": "bad", "source": {"connectorInstanceId": "src", "externalResource": "people"},
         "destination": {"connectorInstanceId": "lake", "externalResource": "events",
                         "operation": "upsert", "matchKey": ["id"],
                         "mapping": {c: c for c in PERSON_COLUMNS}}}, name="bad.yaml")
    failed = sync(proj, "bad")
    assert status(failed) in ("failed", "partial")
    assert "takes inserts only" in json.dumps(errors(failed))


def lake_project(tmp_path: Path, resource: str, operation: str, batch: int) -> Project:
    return make_project(
        tmp_path,
        {"src": {"type": "sql", "url": f"sqlite:///{tmp_path}/src.db"},
         "lake": {"type": "files", "url": str(tmp_path / "lake"), "format": "parquet"}},
        {"name": "out", "source": {"connectorInstanceId": "src", "externalResource": "people"},
         "destination": {"connectorInstanceId": "lake", "externalResource": resource,
                         "operation": operation, "matchKey": ["id"],
                         "mapping": {c: c for c in PERSON_COLUMNS}},
         "batchSize": batch})


def folder_state(folder: Path) -> list[tuple[str, int, int]]:
    """What a reader listing the folder sees: visible files, their inodes and sizes."""
    if not folder.exists():
        return []
    return sorted((p.name, p.stat().st_ino, p.stat().st_size) for p in folder.iterdir()
                  if not p.name.startswith("."))


def test_a_run_inserting_into_a_folder_writes_one_part_file_named_for_the_run(
        tmp_path: Path) -> None:
    seed_people(f"sqlite:///{tmp_path}/src.db", [person(i) for i in range(1, 2501)])
    proj = lake_project(tmp_path, "events", "insert", 500)
    seen: list[list[tuple[str, int, int]]] = []
    result = sync(proj, "out", run_id="run-one",
                  progress=lambda _p: seen.append(folder_state(tmp_path / "lake" / "events")))
    assert counts(result) == {"processed": 2500, "inserted": 2500}
    assert len(seen) == 5 and all(s == [] for s in seen)  # nothing visible until the end
    parts = sorted((tmp_path / "lake" / "events").iterdir())
    assert [p.name.endswith("-run-one.parquet") and p.name.startswith("part-")
            for p in parts] == [True]
    assert pq.read_table(parts[0]).column("id").to_pylist() == list(range(1, 2501))
    insert(f"sqlite:///{tmp_path}/src.db", "people", [person(i) for i in range(2501, 2504)])
    assert counts(sync(proj, "out", run_id="run-two")) == {
        "processed": 2503, "inserted": 3, "skipped": 2500}
    names = sorted(p.name for p in (tmp_path / "lake" / "events").iterdir())
    assert len(names) == 2 and names[1].endswith("-run-two.parquet")


def test_an_upsert_rewrites_the_file_once_per_run_and_readers_see_the_old_one_until_then(
        tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path}/src.db"
    seed_people(src, [person(i) for i in range(1, 2001)])
    proj = lake_project(tmp_path, "people.parquet", "upsert", 400)
    assert counts(sync(proj, "out")) == {"processed": 2000, "inserted": 2000}
    before = folder_state(tmp_path / "lake")
    later = T0 + timedelta(days=1)
    engine = sa.create_engine(src)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE people SET name = 'new ' || id, updated_at = :t "
                             "WHERE id % 2 = 0"), {"t": later})
    engine.dispose()
    seen: list[list[tuple[str, int, int]]] = []
    result = sync(proj, "out", progress=lambda _p: seen.append(folder_state(tmp_path / "lake")))
    assert counts(result) == {"processed": 2000, "updated": 1000, "skipped": 1000}
    assert len(seen) == 5 and all(s == before for s in seen)
    after = folder_state(tmp_path / "lake")
    assert len(after) == 1 and after[0][1] != before[0][1]  # one new version, renamed in
    assert parquet_rows(tmp_path / "lake" / "people.parquet") == [
        person(i, name=f"new {i}", updated_at=later) if i % 2 == 0 else person(i)
        for i in range(1, 2001)]


def test_a_run_failing_midway_publishes_nothing_and_the_next_run_writes_every_record_once(
        tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path}/src.db"
    seed_people(src, [person(i) for i in range(1, 1001)])
    proj = lake_project(tmp_path, "people.parquet", "upsert", 200)
    engine = sa.create_engine(src)

    def drop_the_source(progress: Any) -> None:
        if progress.read == 400:  # the source vanishes after two batches
            with engine.begin() as conn:
                conn.execute(sa.text("ALTER TABLE people RENAME TO gone"))

    failed = sync(proj, "out", progress=drop_the_source)
    assert status(failed) == "failed"
    assert counts(failed) == {}  # read and decided, never published: nothing counted
    assert not (tmp_path / "lake" / "people.parquet").exists()
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE gone RENAME TO people"))
    engine.dispose()
    assert counts(sync(proj, "out")) == {"processed": 1000, "inserted": 1000}
    assert parquet_rows(tmp_path / "lake" / "people.parquet") == [
        person(i) for i in range(1, 1001)]
    assert counts(sync(proj, "out")) == {"processed": 1000, "skipped": 1000}


def test_a_cancelled_run_publishes_the_batches_it_finished_and_the_next_run_the_rest(
        tmp_path: Path) -> None:
    seed_people(f"sqlite:///{tmp_path}/src.db", [person(i) for i in range(1, 1001)])
    proj = lake_project(tmp_path, "people.parquet", "upsert", 200)
    stop = threading.Event()

    def after_three(progress: Any) -> None:
        if progress.read >= 600:
            stop.set()

    cancelled = sync(proj, "out", cancel=stop, progress=after_three)
    assert status(cancelled) == "cancelled"
    assert counts(cancelled) == {"processed": 600, "inserted": 600}
    assert len(parquet_rows(tmp_path / "lake" / "people.parquet")) == 600
    assert counts(sync(proj, "out")) == {"processed": 1000, "inserted": 400, "skipped": 600}
    assert parquet_rows(tmp_path / "lake" / "people.parquet") == [
        person(i) for i in range(1, 1001)]


# -- bad input --------------------------------------------------------------------------------
def file_source_project(tmp_path: Path, lake: Mapping[str, Any], resource: str) -> Project:
    return make_project(
        tmp_path,
        {"lake": {**lake, "key": ["id"]},
         "db": {"type": "sql", "url": f"sqlite:///{tmp_path}/out.db"}},
        {"name": "load", "source": {"connectorInstanceId": "lake", "externalResource": resource},
         "destination": {"connectorInstanceId": "db", "externalResource": "people",
                         "operation": "upsert", "matchKey": ["id"],
                         "mapping": {"id": "id", "name": "name"}}})


def run_error(result: Any) -> str:
    assert status(result) == "failed"
    (error,) = errors(result)
    return str(error["message"])


def test_a_ragged_csv_row_fails_the_run_naming_the_file_and_its_line(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "short.csv").write_text("id,name\n1,a\n2,b,extra\n3,c\n")
    lines = ["id,name", *(f"{i},n{i}" for i in range(1, 300_000))]
    lines[80_000] = "80000,x,extra"  # far past the block the types are inferred from
    (tmp_path / "in" / "long.csv").write_text("\n".join(lines) + "\n")
    lake = {"type": "files", "url": str(tmp_path / "in")}
    short = run_error(sync(file_source_project(tmp_path, lake, "short.csv"), "load"))
    assert short == "lake.short.csv: short.csv line 3: expected 2 columns, got 3: 2,b,extra"
    long = run_error(sync(file_source_project(tmp_path, lake, "long.csv"), "load"))
    assert long == "lake.long.csv: long.csv line 80001: expected 2 columns, got 3: 80000,x,extra"


def test_quoted_newlines_in_a_csv_of_many_blocks_stay_in_their_rows(tmp_path: Path) -> None:
    # the parser reads 256 KiB blocks: a quoted newline on a block's edge split its row
    (tmp_path / "in").mkdir()
    names = {i: f"line one of {i}\nline two, \"quoted\"" if i % 3 else f"n{i}"
             for i in range(1, 40_001)}
    (tmp_path / "in" / "notes.csv").write_text("id,name\n" + "".join(
        f'{i},"{n.replace(chr(34), chr(34) * 2)}"\n' for i, n in names.items()))
    result = sync(file_source_project(
        tmp_path, {"type": "files", "url": str(tmp_path / "in")}, "notes.csv"), "load")
    assert status(result) == "completed"
    assert counts(result) == {"processed": 40_000, "inserted": 40_000}
    with sa.create_engine(f"sqlite:///{tmp_path}/out.db").connect() as conn:
        assert dict(conn.execute(sa.text("SELECT id, name FROM people")).all()) == names


def test_an_unreadable_parquet_file_fails_the_run_naming_it(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "people.parquet").write_bytes(b"id,name\n1,a\n")
    message = run_error(sync(file_source_project(
        tmp_path, {"type": "files", "url": str(tmp_path / "in")}, "people.parquet"), "load"))
    assert message.startswith("lake.people.parquet: people.parquet is not a readable Parquet "
                              "file: Parquet magic bytes not found")


def test_a_glob_matching_no_file_is_a_notice_and_the_run_completes(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    result = sync(file_source_project(
        tmp_path, {"type": "files", "url": str(tmp_path / "in")}, "exports/*.csv"), "load")
    assert status(result) == "completed" and counts(result) == {}
    assert any(f"WARN lake.exports/*.csv: no file matches exports/*.csv under {tmp_path}/in: "
               "nothing to read, nothing written" in line for line in result.logs)
    assert not (tmp_path / "out.db").exists() or "people" not in sa.inspect(
        sa.create_engine(f"sqlite:///{tmp_path}/out.db")).get_table_names()


def test_a_missing_bucket_fails_naming_it_for_a_file_and_for_a_glob(
        tmp_path: Path, s3_server: S3) -> None:  # noqa: F811
    lake = {"type": "files", "url": "s3://no-such-bucket/crm", "format": "parquet",
            "storageOptions": s3_server.storage_options()}
    for resource in ("people.parquet", "people/*.parquet"):
        message = run_error(sync(file_source_project(tmp_path, lake, resource), "load"))
        assert message == (f"lake.{resource}: bucket no-such-bucket does not exist (or these "
                           "credentials cannot see it)")


def test_bad_credentials_fail_the_run_and_are_never_printed(tmp_path: Path) -> None:
    key, secret = "AKIAEXAMPLEWRONGKEY", "wrong-secret-7f3a9c1e"
    with s3_checking_credentials() as endpoint:
        lake = {"type": "files", "url": "s3://crm/exports", "format": "parquet",
                "storageOptions": {"endpoint_url": endpoint, "key": key, "secret": secret,
                                   "client_kwargs": {"region_name": "us-east-1"}}}
        result = sync(file_source_project(tmp_path, lake, "people/*.parquet"), "load")
    message = run_error(result)
    assert message == (
        "lake.people/*.parquet: listing files was refused: The AWS Access Key Id you provided "
        "does not exist in our records. (check the credentials in the connector's "
        "storageOptions)")
    text = json.dumps(result.model_dump(mode="json"))
    assert key not in text and secret not in text and endpoint not in text


# -- Parquet on S3 -> PostgreSQL ---------------------------------------------------------------
def s3_put_parquet(s3: S3, path: str, rows: list[dict[str, Any]]) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer, row_group_size=16)
    s3.filesystem().pipe_file(path, buffer.getvalue())


def test_parquet_on_s3_to_postgres_then_nothing_then_exactly_the_changes(
        tmp_path: Path, s3_server: S3, pg_url: str) -> None:  # noqa: F811
    bucket = s3_server.bucket("lake")
    rows = [person(i) for i in range(1, 41)]
    s3_put_parquet(s3_server, f"{bucket}/crm/people.parquet", rows)
    proj = make_project(
        tmp_path,
        {"lake": {"type": "files", "url": f"s3://{bucket}/crm", "format": "parquet",
                  "key": "id", "orderedReads": True,
                  "storageOptions": s3_server.storage_options()},
         "pg": {"type": "sql", "url": pg_url}},
        {"name": "from_lake",
         "source": {"connectorInstanceId": "lake", "externalResource": "people.parquet",
                    "filters": {"score": {"$gte": 30}}},
         "destination": {"connectorInstanceId": "pg", "externalResource": "people",
                         "operation": "upsert", "matchKey": ["id"],
                         "mapping": {c: c for c in PERSON_COLUMNS}},
         "changeTrackingField": "updated_at", "batchSize": 7})
    assert counts(sync(proj, "from_lake")) == {"processed": 38, "inserted": 38}
    assert sql_rows(pg_url, "people") == [person(i) for i in range(3, 41)]
    assert counts(sync(proj, "from_lake")) == {}
    later = T0 + timedelta(days=1)
    changed = {5: {"name": "five", "updated_at": later}, 40: {"score": 1, "updated_at": later}}
    rows = [person(i, **changed.get(i, {})) for i in range(1, 42)]
    rows[-1]["updated_at"] = later
    s3_put_parquet(s3_server, f"{bucket}/crm/people.parquet", rows)
    # 40 left the filter (score 1): an upsert does not delete it, and it is not read
    assert counts(sync(proj, "from_lake")) == {"processed": 2, "updated": 1, "inserted": 1}
    assert sql_rows(pg_url, "people") == [
        person(i, **({"name": "five", "updated_at": later} if i == 5 else
                     {"updated_at": later} if i == 41 else {}))
        for i in range(3, 42)]
    assert counts(sync(proj, "from_lake")) == {}
    table = proj.connectors["lake"]
    assert FILES.kinds(table) == {"parquet", "s3"}


def test_postgres_to_parquet_on_s3_and_a_wrong_endpoint_fails_without_secrets(
        tmp_path: Path, s3_server: S3, pg_url: str) -> None:  # noqa: F811
    bucket = s3_server.bucket("out")
    seed_people(pg_url, [person(i) for i in range(1, 13)])
    connectors = {"pg": {"type": "sql", "url": pg_url},
                  "lake": {"type": "files", "url": f"s3://{bucket}", "format": "parquet",
                           "storageOptions": s3_server.storage_options()}}
    to_s3 = {"name": "to_s3", "source": {"connectorInstanceId": "pg",
                                         "externalResource": "people"},
             "destination": {"connectorInstanceId": "lake", "externalResource": "p.parquet",
                             "operation": "upsert", "matchKey": ["id"],
                             "mapping": {c: c for c in PERSON_COLUMNS}},
             "batchSize": 5}
    proj = make_project(tmp_path, connectors, to_s3)
    assert counts(sync(proj, "to_s3")) == {"processed": 12, "inserted": 12}
    assert parquet_rows(s3_server.filesystem().cat_file(f"{bucket}/p.parquet")) == [
        person(i) for i in range(1, 13)]
    assert counts(sync(proj, "to_s3")) == {"processed": 12, "skipped": 12}
    wrong = {**s3_server.storage_options(), "endpoint_url": free_port_endpoint(),
             "secret": "very-secret-string", "config_kwargs": {"retries": {"max_attempts": 1},
                                                               "connect_timeout": 1}}
    bad = make_project(tmp_path, {**connectors, "lake": {**connectors["lake"],
                                                         "storageOptions": wrong}},
                       to_s3, name="bad.yaml")
    result = sync(bad, "to_s3")
    assert status(result) == "failed"
    text = json.dumps(result.to_spec(), default=str)
    assert "very-secret-string" not in text and wrong["endpoint_url"] not in text
    assert "testing-key" not in text


def free_port_endpoint() -> str:
    from s3_server import free_port

    return f"http://127.0.0.1:{free_port()}"


# -- SIGKILL: exactly once, and no reader ever sees half a file ------------------------------
KILL_ROWS = int(os.environ.get("FILES_KILL_ROWS", "20000"))
KILLS = int(os.environ.get("FILES_KILLS", "8"))
KILL_BATCH = max(500, KILL_ROWS // 20)


class Reader(threading.Thread):
    """Reads the destination file over and over while workers are killed: every read must
    be a whole Parquet file with each key once."""

    def __init__(self, read: Callable[[], bytes | None], pause: float) -> None:
        super().__init__(daemon=True)
        self.read = read
        self.pause = pause  # between reads: the S3 server shares this process's interpreter
        self.stop = threading.Event()
        self.reads = 0
        self.bad: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.read()
            except FileNotFoundError:
                data = None
            if data is None:
                time.sleep(0.01)
                continue
            try:
                emails = pq.read_table(io.BytesIO(data), columns=["email"]).column(0)
                if len(set(emails.to_pylist())) != len(emails):
                    self.bad.append("a key twice")
                self.reads += 1
            except Exception as exc:  # a partial file: what must never be seen
                self.bad.append(f"{type(exc).__name__}: {exc}")
            time.sleep(self.pause)


def kill_and_finish(tmp_path: Path, lake: Mapping[str, Any], read: Callable[[], bytes | None],
                    label: str, pause: float = 0.0) -> None:
    rng = Random(f"files-crash:{label}")
    src = f"sqlite:///{tmp_path}/src.db"
    names = {i: f"Name {i}" for i in range(1, KILL_ROWS + 1)}
    base = datetime(2024, 1, 1, 8, 0, 0)
    seed_people(src, [{"id": i, "email": f"user{i}@example.org", "name": names[i],
                       "score": i % 97, "updated_at": base + timedelta(seconds=i // 7)}
                      for i in names])
    project_file = write_project(
        tmp_path, {"src": {"type": "sql", "url": src}, "lake": dict(lake)},
        {"name": "crash", "source": {"connectorInstanceId": "src",
                                     "externalResource": "people"},
         "destination": {"connectorInstanceId": "lake", "externalResource": "people.parquet",
                         "operation": "upsert", "matchKey": ["email"],
                         "mapping": {c: c for c in PERSON_COLUMNS}},
         "changeTrackingField": "updated_at", "batchSize": KILL_BATCH,
         "retry": {"maxAttempts": 3, "backoffMs": 50}})
    reader = Reader(read, pause)
    reader.start()
    # measured: about 0.2 s to the first batch of 1,000, 0.06 s a batch after it
    pace = Pace(first=[0.3], step=[0.06], tail=[0.05], window=10)
    state_db = tmp_path / ".sync_assets" / "state.db"

    def remaining() -> int:
        """Source records at or after the sync's cursor: what the next run reads."""
        cursor = None
        if state_db.exists():
            engine = sa.create_engine(f"sqlite:///{state_db}")
            with engine.connect() as conn:
                if sa.inspect(conn).has_table("_sync_assets_cursor"):
                    cursor = StateStore("crash").load_cursor(conn)
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
    people = sa.Table("people", sa.MetaData(), sa.Column("id", sa.Integer),
                      sa.Column("name", sa.Text), sa.Column("updated_at", sa.DateTime))
    try:
        for round_no in range(KILLS):
            batches = max(1, math.ceil(remaining() / KILL_BATCH))
            where, _ = kill_one_run([sys.executable, str(WORKER), str(project_file), "crash"],
                                    rng, batches, True, pace, tmp_path / "worker.err")
            landed[where] += 1
            # changes spread over the file: the next run rewrites it once a batch
            picked = rng.sample(sorted(names), rng.randint(KILL_BATCH // 2, 3 * KILL_BATCH))
            engine = sa.create_engine(src)
            with engine.begin() as conn:
                for i in picked:
                    names[i] = f"Name {i} r{round_no}"
                    conn.execute(sa.update(people).where(people.c.id == i).values(
                        name=names[i], updated_at=base + timedelta(days=1, minutes=round_no)))
            engine.dispose()
        print(f"\n{label}: {KILLS} kills: {dict(landed)}")
        project = load_project(project_file, env={})
        first = spec(run(project, "crash"))
        assert first["status"] == "completed" and first["stats"]["recordsErrored"] == 0, first
        again = spec(run(project, "crash"))["stats"]
        assert (again["recordsInserted"], again["recordsUpdated"], again["recordsDeleted"]) \
            == (0, 0, 0), again
        dispose_engines()
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    data = read()
    assert data is not None
    held = pq.read_table(io.BytesIO(data)).to_pylist()
    emails = Counter(r["email"] for r in held)
    assert len(held) == len(emails) == KILL_ROWS, emails.most_common(3)
    assert {r["id"]: r["name"] for r in held} == names
    assert not reader.bad, reader.bad[:3]
    assert reader.reads > 0
    assert landed["mid-run"] + landed["after last batch"] >= KILLS // 2, landed
    print(f"{label}: the reader read the file {reader.reads} times, never half of it")


def test_sigkill_while_upserting_into_a_local_parquet_file(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    target = lake / "people.parquet"

    def read() -> bytes | None:
        return target.read_bytes() if target.exists() else None

    kill_and_finish(tmp_path, {"type": "files", "url": str(lake)}, read, "local")
    assert sorted(p.name for p in lake.iterdir()) == ["people.parquet"]  # no temp file left


def test_sigkill_while_upserting_into_a_parquet_file_on_s3(
        tmp_path: Path, s3_server: S3) -> None:  # noqa: F811
    bucket = s3_server.bucket("crash")
    fs = s3_server.filesystem()

    def read() -> bytes | None:
        try:
            return bytes(fs.cat_file(f"{bucket}/people.parquet"))
        except FileNotFoundError:
            return None

    kill_and_finish(tmp_path, {"type": "files", "url": f"s3://{bucket}",
                               "storageOptions": s3_server.storage_options()}, read, "s3",
                    pause=0.05)
    assert fs.ls(bucket, refresh=True) == [f"{bucket}/people.parquet"]


# -- memory: a big CSV streams -----------------------------------------------------------------
MEASURE = textwrap.dedent("""
    import json, resource, sys
    import pyarrow.dataset, sqlalchemy  # noqa: F401  (imports are not the sync's memory)
    import sync_assets.connectors.files.connector  # noqa: F401
    import sync_assets.connectors.sql  # noqa: F401
    from sync_assets import load_project
    from sync_assets.engine import run
    project = load_project(sys.argv[1], env={})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run(project, "big").to_spec()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kb": before, "after_kb": after, "status": result["status"],
                      "stats": result["stats"], "errors": result.get("errors")}))
""")


LAUNCH = ("import subprocess, sys; "
          "sys.exit(subprocess.run([sys.executable, '-c', *sys.argv[1:]]).returncode)")


def make_big_csv(path: Path, megabytes: int) -> int:
    """A CSV of about `megabytes` MB (written in slices); its number of rows."""
    per_slice = 200_000
    rows = 0
    with pacsv.CSVWriter(str(path), pa.schema([
            ("id", pa.int64()), ("email", pa.string()), ("name", pa.string()),
            ("score", pa.int64()), ("note", pa.string())])) as writer:
        while path.stat().st_size < megabytes * 1_000_000:
            ids = pa.array(range(rows + 1, rows + per_slice + 1), pa.int64())
            text = ids.cast(pa.string())
            writer.write_table(pa.table({
                "id": ids,
                "email": pc.binary_join_element_wise("user", text, "@example.org", ""),
                "name": pc.binary_join_element_wise("Name ", text, ""),
                "score": pc.bit_wise_and(ids, 1023),
                "note": pc.binary_join_element_wise(
                    text, " lorem ipsum dolor sit amet consectetur", "")}))
            rows += per_slice
    return rows


def _big_megabytes() -> int:
    return 2000 if os.environ.get("SYNC_ASSETS_BIG") == "1" else 200


def test_a_big_csv_syncs_with_flat_memory(tmp_path: Path) -> None:
    megabytes = _big_megabytes()
    rows = make_big_csv(tmp_path / "big.csv", megabytes)
    size = (tmp_path / "big.csv").stat().st_size
    project_file = write_project(
        tmp_path,
        {"in": {"type": "files", "url": str(tmp_path), "key": "id"},
         "wh": {"type": "sql", "url": f"sqlite:///{tmp_path}/wh.db"}},
        {"name": "big", "source": {"connectorInstanceId": "in", "externalResource": "big.csv"},
         "destination": {"connectorInstanceId": "wh", "externalResource": "big",
                         "operation": "upsert", "matchKey": ["id"],
                         "mapping": {"id": "id", "email": "email", "score": "score",
                                     "note": "note"}},
         "batchSize": 5000})
    started = time.monotonic()
    # ru_maxrss survives fork and exec: the measuring process is started by a small
    # launcher, so the peak it inherits is the launcher's (a few MB), not this test's
    out = subprocess.run([sys.executable, "-c", LAUNCH, MEASURE, str(project_file)],
                         check=True, capture_output=True, text=True, timeout=3600)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    growth_mb = (report["after_kb"] - report["before_kb"]) / 1024
    print(f"\n{size / 1e6:.0f} MB CSV, {rows} rows, synced in {time.monotonic() - started:.0f} s:"
          f" peak RSS {report['before_kb'] / 1024:.0f} MB before the run, "
          f"{report['after_kb'] / 1024:.0f} MB after (+{growth_mb:.0f} MB)")
    assert report["status"] == "completed", report
    assert report["stats"]["recordsInserted"] == rows
    assert growth_mb < 150, report  # measured: under 20 MB, at 200 MB and at 2 GB


def test_a_file_sources_asset_is_keyed_by_its_path_so_an_upstream_asset_runs_first(
        tmp_path: Path) -> None:
    """#11: asset keys from path segments (no extension, no wildcards) and the format and
    store as kinds; an asset of the user's with that key is the sync's upstream."""
    import dagster as dg

    from sync_assets import build_definitions

    (tmp_path / "p.yaml").write_text(
        "connectors:\n"
        "  exports: {type: files, url: 'file:///srv/exports', format: csv}\n"
        "  lake: {type: files, url: 's3://bucket/crm', format: parquet}\n"
        "  wh: {type: sql, url: 'sqlite:///wh.db'}\n"
        "syncs:\n"
        "  - name: contacts_from_csv\n"
        "    source: {connectorInstanceId: exports, externalResource: 'crm/contacts/*.csv'}\n"
        "    destination: {connectorInstanceId: wh, externalResource: contacts,\n"
        "                  operation: upsert, matchKey: [email]}\n"
        "  - name: accounts_to_lake\n"
        "    source: {connectorInstanceId: wh, externalResource: accounts}\n"
        "    destination: {connectorInstanceId: lake, externalResource: accounts.parquet,\n"
        "                  operation: upsert, matchKey: [id]}\n")

    @dg.asset(key=["exports", "crm", "contacts"])
    def exported_contacts() -> None:
        """The user's own export job."""

    defs = build_definitions(tmp_path, with_definitions=dg.Definitions(
        assets=[exported_contacts]))
    graph = defs.resolve_asset_graph()
    contacts = graph.get(dg.AssetKey(["wh", "contacts"]))
    assert contacts.parent_keys == {dg.AssetKey(["exports", "crm", "contacts"])}
    assert graph.get(dg.AssetKey(["exports", "crm", "contacts"])).is_materializable
    lake = graph.get(dg.AssetKey(["lake", "accounts"]))
    assert lake.kinds == {"parquet", "s3", "sqlite"}
    assert contacts.kinds == {"csv", "sqlite"}
