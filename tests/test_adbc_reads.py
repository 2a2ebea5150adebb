"""PostgreSQL pages read by ADBC's driver (connectors/sql/adbc.py): the same tables, value for
value, as the CSV COPY reader gives; what it cannot read as the lane's types left to that
reader; its connection closed with the pass."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import INTERVAL, JSON, JSONB, UUID

from sync_assets.connectors.base import ReadRequest
from sync_assets.connectors.sql import SqlTable, adbc, pgcopy

from engine_helpers import create_table, execute

IST = timezone(timedelta(hours=5, minutes=30))
TEXTS = [None, "", "plain", "tab\there", "new\nline", 'comma, "quoted"', "back\\slash", "\\N",
         "ünïcødé 日本語 🎉", "NULL", "x" * 3000]
N = 230  # pages of 100, 100 and 30


def value_row(i: int) -> dict[str, Any]:
    return {
        "id": i, "small": None if i % 9 == 0 else (-1) ** i * (i % 32767),
        "big": 2**62 - i, "name": TEXTS[i % len(TEXTS)],
        "money": [Decimal("12.30"), Decimal("-0.05"), None, Decimal("0.00"),
                  Decimal("9999999999.99")][i % 5],
        "wide": Decimal(10**37 + i) * (-1) ** i, "rate": Decimal(i) / 7 if i % 4 else None,
        "ratio": [1.5, float("nan"), float("inf"), float("-inf"), -0.0, None, 1e-300][i % 7],
        "share": None if i % 6 == 5 else i / 4,
        "vip": None if i % 13 == 0 else i % 2 == 0,
        "at": [datetime(2024, 1, 1, 23, 30, tzinfo=UTC), None,
               datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
               datetime(2024, 6, 30, 12, 0, 0, 1, tzinfo=IST),
               datetime(9999, 12, 31, tzinfo=UTC), datetime(1, 1, 1, 0, 0, tzinfo=UTC)][i % 6],
        "naive": datetime(2024, 3, 1, 12) + timedelta(seconds=i, microseconds=i % 3 * 7),
        "born": None if i % 11 == 0 else date(1900, 1, 1) + timedelta(days=i * 97),
        "alarm": None if i % 10 == 0 else time(i % 24, i % 60, i % 60, (i % 3) * 5),
        "term": [None, timedelta(days=3, seconds=5), timedelta(0), timedelta(days=-2)][i % 4],
        "doc": [None, {"a": [1, 2.50, None], "b": {"c": "x\ny"}}, [], "text", 7, 1e300,
                {"z": 1, "a": True}][i % 7],
        "plain": [None, {"k": "v"}, [1, 2]][i % 3],
        "ext": None if i % 8 == 0 else uuid.UUID(int=i * 7919),
        "blob": None if i % 10 == 0 else bytes(range(i % 24)),
    }


def columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("small", sa.SmallInteger), sa.Column("big", sa.BigInteger),
        sa.Column("name", sa.Text), sa.Column("money", sa.Numeric(12, 2)),
        sa.Column("wide", sa.Numeric(38, 0)), sa.Column("rate", sa.Numeric(20, 6)),
        sa.Column("ratio", sa.Float), sa.Column("share", sa.REAL), sa.Column("vip", sa.Boolean),
        sa.Column("at", sa.DateTime(timezone=True)), sa.Column("naive", sa.DateTime),
        sa.Column("born", sa.Date), sa.Column("alarm", sa.Time), sa.Column("term", INTERVAL),
        sa.Column("doc", JSONB), sa.Column("plain", JSON), sa.Column("ext", UUID(as_uuid=True)),
        sa.Column("blob", sa.LargeBinary),
    ]


NAMES = [c.name for c in columns()]


def read(url: str, table: str = "item", batch_size: int = 100) -> list[Any]:
    pages = SqlTable(url, table).read_arrow(
        ReadRequest(columns=NAMES, order_by=["id"], batch_size=batch_size))
    assert pages is not None
    return list(pages)


@pytest.fixture
def csv_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adbc, "_driver", lambda: None)


@pytest.fixture
def csv_copies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The CSV COPY reads the lane made."""
    seen: list[str] = []
    copy_out = pgcopy.copy_out

    def watched(conn: Any, sql: str, file: Any) -> None:
        seen.append(sql)
        copy_out(conn, sql, file)

    monkeypatch.setattr(pgcopy, "copy_out", watched)
    return seen


def shown(pages: list[Any]) -> list[list[str]]:
    """Every value of every page with its Arrow type, as text (NaN equals NaN here)."""
    return [[f"{field.type}:{v!r}" for field, column in zip(p.schema, p.columns, strict=True)
             for v in column.to_pylist()] for p in pages]


def test_adbc_reads_every_lane_type_as_the_csv_reader_does(
        pg_url: str, csv_copies: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    create_table(pg_url, "item", columns(), [value_row(i) for i in range(1, N + 1)])

    by_adbc = read(pg_url)
    assert csv_copies == []  # every page read by ADBC's driver
    monkeypatch.setattr(adbc, "_driver", lambda: None)
    by_csv = read(pg_url)

    assert len(csv_copies) == 3
    assert [p.num_rows for p in by_adbc] == [100, 100, 30]
    assert [p.schema for p in by_adbc] == [p.schema for p in by_csv]
    assert shown(by_adbc) == shown(by_csv)
    terms = {v for p in by_adbc for v in p.column("term").to_pylist()}
    assert terms == {None, "3 days 00:00:05", "00:00:00", "-2 days"}  # PostgreSQL's text


@pytest.mark.parametrize("odd", ["'NaN'::numeric", "'infinity'::timestamptz",
                                 "'-infinity'::date", "'0044-03-15 BC'::date"])
def test_a_value_the_lane_cannot_hold_sends_its_page_the_ordinary_way(
        pg_url: str, odd: str, csv_copies: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """numeric's NaN, infinite and BC dates and timestamps (which the driver hands over as
    wrapped-around numbers): the page holding one is left to the CSV reader, and the read
    ends as it does without ADBC (the page as records, or the driver's own error)."""
    column = {"numeric": "money", "timestamptz": "at", "date": "born"}[odd.split("::")[1]]
    create_table(pg_url, "item", columns(), [value_row(i) for i in range(1, N + 1)])
    execute(pg_url, f"UPDATE item SET {column} = {odd} WHERE id = 150")

    def outcome() -> Any:
        try:
            pages = read(pg_url)
        except Exception as exc:  # psycopg2 has no Python value for a BC date
            return f"{type(exc).__name__}: {exc}"
        return [[r["id"] for r in p] if isinstance(p, list) else p.num_rows for p in pages]

    by_adbc = outcome()
    tried_by_csv = len(csv_copies)
    monkeypatch.setattr(adbc, "_driver", lambda: None)

    assert by_adbc == outcome()
    assert tried_by_csv == 1  # only the page holding it
    if odd != "'0044-03-15 BC'::date":
        assert by_adbc == [100, list(range(101, 201)), 30]


def test_a_connection_adbc_cannot_open_leaves_every_page_to_csv(
        pg_url: str, csv_copies: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials the URL does not carry (`connect_args`), a driver refusing the URL:
    the pass reads by CSV, trying ADBC's connection once."""
    create_table(pg_url, "item", columns(), [value_row(i) for i in range(1, N + 1)])
    tries: list[str] = []
    original = adbc.PageReader.__init__

    def unreachable(self: Any, url: sa.URL) -> None:
        original(self, url.set(port=1))
        tries.append(self._uri)

    monkeypatch.setattr(adbc.PageReader, "__init__", unreachable)

    pages = read(pg_url)

    assert [p.num_rows for p in pages] == [100, 100, 30]
    assert len(csv_copies) == 3 and len(tries) == 1


def test_a_page_adbc_fails_on_is_read_by_csv_and_so_is_the_rest_of_the_pass(
        pg_url: str, csv_copies: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A query ADBC's connection cannot run (a search_path given in `connect_args` only,
    a lock timeout): the CSV reader reads that page and every later one of the pass."""
    create_table(pg_url, "item", columns(), [value_row(i) for i in range(1, N + 1)])
    tries: list[str] = []

    def failing(conn: Any, stmt: Any) -> str:
        tries.append("query")
        return "SELECT * FROM no_such_table"

    monkeypatch.setattr(adbc, "_query", failing)

    pages = read(pg_url)

    assert [p.num_rows for p in pages] == [100, 100, 30]
    assert len(csv_copies) == 3 and tries == ["query"]


def test_the_connection_closes_with_the_pass_read_whole_or_stopped(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    create_table(pg_url, "item", columns(), [value_row(i) for i in range(1, N + 1)])
    closed: list[bool] = []
    close = adbc.PageReader.close

    def watched(self: Any) -> None:
        closed.append(self._connection is not None)
        close(self)

    monkeypatch.setattr(adbc.PageReader, "close", watched)
    assert len(read(pg_url)) == 3
    assert closed == [True]

    pages = SqlTable(pg_url, "item").read_arrow(
        ReadRequest(columns=NAMES, order_by=["id"], batch_size=10))
    assert pages is not None
    next(iter(pages))
    pages.close()  # type: ignore[attr-defined]
    assert closed == [True, True]


def test_lane_table_refuses_what_the_lane_does_not_know() -> None:
    schema = pa.schema([("a", pa.string())])
    opaque = pa.table({"a": pa.array([b"\x00"], pa.binary())})
    assert adbc.lane_table(opaque, pa.schema([("a", pa.decimal128(5, 2))])) is None
    assert adbc.lane_table(pa.table({"a": ["x"], "b": ["y"]}), schema) is None
    assert adbc.lane_table(pa.table({"a": pa.array([], pa.string())}), schema).num_rows == 0
