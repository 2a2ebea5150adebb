"""Column operations on Arrow pages: renames, constants, defaultValue, `map` and the casts
that cannot fail give exactly the record path's values, and a sync with them keeps its pages
on the lane."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_assets.connectors.base import Description, FieldInfo
from sync_assets.engine import arrow_mapping
from sync_assets.engine.mapping import RecordMapper
from sync_assets.spec import DataSyncConfig, FieldMapping
from sync_assets.spec.values import plain

from engine_helpers import counts, create_table, engine_for, project, rows, sync, to_warehouse

texts = st.text(max_size=8)
SOURCES: dict[str, tuple[pa.DataType, Any]] = {
    "text": (pa.string(), st.sampled_from(["a", "b", "", "pro", "é"]) | texts),
    "int": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "float": (pa.float64(), st.floats()),
    "bool": (pa.bool_(), st.booleans()),
    "day": (pa.date32(), st.dates()),
    "moment": (pa.timestamp("us"), st.datetimes(min_value=datetime(1, 1, 2),
                                                max_value=datetime(9999, 12, 30))),
    # as psycopg gives them: in the session's zone, whatever it is
    "instant": (pa.timestamp("us", "UTC"), st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)),
                                   timezone(timedelta(hours=9, minutes=30))]))),
    "money": (pa.decimal128(12, 2), st.decimals(min_value=-(10**10) + 1,
                                                max_value=10**10 - 1, places=2)),
    "rate": (pa.decimal128(20, 6), st.decimals(min_value=-(10**14) + 1,
                                               max_value=10**14 - 1, places=6)),
}
ENTRIES = [
    {"source": "text", "target": "out"},
    {"source": "text", "target": "out", "defaultValue": "none"},
    {"source": "int", "target": "out", "defaultValue": 0},
    {"source": "text", "target": "out", "transform": {"type": "constant", "value": "x"}},
    {"source": "text", "target": "out", "transform": {"type": "constant", "value": 7}},
    {"source": "text", "target": "out", "transform": {"type": "constant", "value": None}},
    {"source": "text", "target": "out", "transform": {"type": "constant", "value": True}},
    {"source": "text", "target": "out",
     "transform": {"type": "map", "mappings": {"a": "Alpha", "b": "Beta", "": "empty"}}},
    {"source": "text", "target": "out", "defaultValue": "a",
     "transform": {"type": "map", "mappings": {"a": "Alpha"}}},
    *[{"source": s, "target": "out", "transform": {"type": "cast", "targetType": t}}
      for s in SOURCES for t in ("string", "number", "boolean", "date")],
]


def _mapper(entry: dict[str, Any]) -> RecordMapper:
    config = DataSyncConfig.model_validate({
        "name": "m", "source": {"object": "src"},
        "destination": {"connectorInstanceId": "wh", "operation": "upsert",
                        "mapping": [entry]}})
    fields = {name: FieldInfo(name, kind="text") for name in SOURCES}
    return RecordMapper(config, Description(fields=fields), lambda *_a: {})


@pytest.mark.parametrize("index", range(len(ENTRIES)))
@settings(deadline=None, max_examples=40)
@given(data=st.data())
def test_a_column_operation_gives_the_record_paths_values(index: int,
                                                          data: st.DataObject) -> None:
    entry = ENTRIES[index]
    mapper = _mapper(entry)
    kind = entry["source"]
    values = data.draw(st.lists(st.none() | SOURCES[kind][1], max_size=12))
    page = pa.table({kind: pa.array(values, SOURCES[kind][0])})

    got = mapper.map_arrow(page)

    records = [mapper.map({kind: v}) for v in values]
    if got is None:  # left to the record path: a cast Arrow would not give as it does
        assert entry.get("transform", {}).get("type") == "cast"
        return
    assert mapper.columnar
    assert all(not problems for _, problems in records)
    assert _plain(got.to_pylist()) == _plain([r for r, _ in records])


def _plain(rows: list[dict[str, Any]]) -> list[Any]:
    """Rows as every later step sees their values (fingerprints, columns): 12.0 is 12."""
    return [{k: plain(v) for k, v in r.items()} for r in rows]


def test_the_casts_taken_by_column_are_those_that_cannot_fail() -> None:
    taken = {(e["source"], e["transform"]["targetType"]) for e in ENTRIES
             if e.get("transform", {}).get("type") == "cast"
             and _mapper(e).map_arrow(pa.table({e["source"]: pa.array(
                 [], SOURCES[e["source"]][0])})) is not None}
    assert taken == {("text", "string"), ("int", "string"), ("bool", "string"),
                     ("int", "number"), ("float", "number"), ("bool", "boolean"),
                     ("day", "date"), ("moment", "date"), ("instant", "date"),
                     ("money", "string"), ("money", "number"), ("rate", "string")}


@pytest.mark.parametrize("transform", [
    {"type": "lookup", "table": "t", "keyField": "k", "valueField": "v"},
    {"type": "javascript", "expression": "value + 1"},
    {"type": "map", "mappings": {"a": 1}},  # a number where the column holds text
])
def test_lookups_expressions_and_mixed_maps_are_no_column_operations(
        transform: dict[str, Any]) -> None:
    entry = FieldMapping.model_validate({"source": "text", "target": "out",
                                         "transform": transform})
    assert not arrow_mapping.column_operation(entry)


def test_a_sync_with_column_transforms_stays_on_the_lane(
        pg_url: str, pg_url_2: str, tmp_path: Path, lane_pages: list[int]) -> None:
    plans = ["free", "pro", None, "team"]
    create_table(pg_url, "account", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("plan", sa.Text), sa.Column("seats", sa.Integer),
        sa.Column("active", sa.Boolean), sa.Column("since", sa.Date)],
        [{"id": i, "plan": plans[i % 4], "seats": None if i % 5 == 0 else i,
          "active": i % 3 == 0, "since": date(2024, 1, 1 + i % 28)} for i in range(1, 301)])
    mapping = [
        {"source": "id", "target": "id"},
        {"source": "plan", "target": "tier", "defaultValue": "free",
         "transform": {"type": "map", "mappings": {"free": "Free", "pro": "Pro"}}},
        {"source": "seats", "target": "seats", "defaultValue": 1},
        {"source": "seats", "target": "seats_text", "transform": {"type": "cast",
                                                                   "targetType": "string"}},
        {"source": "active", "target": "active",
         "transform": {"type": "cast", "targetType": "boolean"}},
        {"source": "since", "target": "since"},
        {"source": "id", "target": "origin", "transform": {"type": "constant", "value": "pg"}},
    ]
    proj = project(tmp_path, (pg_url, pg_url_2), to_warehouse(
        "accounts", "account", "accounts", audit=None, batchSize=100, mapping=mapping,
        matchKey=["id"]))

    assert counts(sync(proj, "accounts")) == {"processed": 300, "inserted": 300}
    assert sum(lane_pages) == 300
    with engine_for(pg_url_2) as engine, engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(sa.text(
            "SELECT id, tier, seats, seats_text, active, since, origin FROM accounts "
            "ORDER BY id LIMIT 5"))]
    assert got == [
        (1, "Pro", 1, "1", False, date(2024, 1, 2), "pg"),
        (2, "Free", 2, "2", False, date(2024, 1, 3), "pg"),
        (3, "team", 3, "3", True, date(2024, 1, 4), "pg"),
        (4, "Free", 4, "4", False, date(2024, 1, 5), "pg"),
        (5, "Pro", 1, None, False, date(2024, 1, 6), "pg"),
    ]
    lane_pages.clear()
    assert counts(sync(proj, "accounts")) == {"processed": 300, "skipped": 300}
    assert counts(sync(proj, "accounts", full_refresh=True)) == {"processed": 300,
                                                                 "skipped": 300}
    assert sum(lane_pages) == 600


def test_an_instant_cast_to_date_is_its_utc_date_on_the_lane_and_off_it(
        pg_url: str, pg_url_2: str, tmp_path: Path, lane_pages: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sync_assets.connectors.sql import arrow

    with engine_for(pg_url) as engine, engine.begin() as conn:  # sessions 13 h ahead of UTC
        conn.execute(sa.text(f'ALTER DATABASE "{engine.url.database}" '
                             "SET timezone = 'Pacific/Auckland'"))
    create_table(pg_url, "event", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True))],
        [{"id": i, "at": datetime(2024, 1, 1, 20, tzinfo=UTC) + timedelta(hours=i)}
         for i in range(1, 201)])
    proj = project(tmp_path, (pg_url, pg_url_2), to_warehouse(
        "events", "event", "events", audit=None, batchSize=100, matchKey=["id"],
        mapping=[{"source": "id", "target": "id"},
                 {"source": "at", "target": "day",
                  "transform": {"type": "cast", "targetType": "date"}}]))

    assert counts(sync(proj, "events")) == {"processed": 200, "inserted": 200}
    assert sum(lane_pages) == 200
    days = dict(rows(pg_url_2, "events", "id"))
    assert days[3] == date(2024, 1, 1) and days[4] == date(2024, 1, 2)  # 23:00 and 00:00 UTC
    assert days == {i: (datetime(2024, 1, 1, 20) + timedelta(hours=i)).date()
                    for i in range(1, 201)}
    monkeypatch.setattr(arrow, "schema_for", lambda *_a, **_k: None)  # the record path now
    assert counts(sync(proj, "events")) == {"processed": 200, "skipped": 200}
