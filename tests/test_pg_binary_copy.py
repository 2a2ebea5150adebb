"""Bulk inserts into PostgreSQL in COPY's binary format (`pgbinary`): every column type it
encodes arrives exactly as the same page sent as CSV arrives (compared as the server's own
text of each value, so a numeric's scale or an interval's fields count), with both drivers;
whatever it does not encode goes as CSV, whose errors are the server's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql as pg

from sync_assets.connectors.sql import arrow, pgbinary, pgcopy

COLUMNS: list[tuple[str, Any, pa.DataType]] = [
    ("small", sa.SmallInteger, pa.int64()),
    ("regular", sa.Integer, pa.int64()),
    ("big", sa.BigInteger, pa.int64()),
    ("money", sa.Numeric(12, 2), pa.decimal128(12, 2)),
    ("wide_money", sa.Numeric(38, 6), pa.decimal128(38, 6)),
    ("loose", sa.Numeric(), pa.decimal128(20, 3)),
    ("ratio", pg.DOUBLE_PRECISION, pa.float64()),
    ("flag", sa.Boolean, pa.bool_()),
    ("note", sa.Text, pa.string()),
    ("code", sa.String(12), pa.string()),
    ("padded", pg.CHAR(5), pa.string()),
    ("seen_at", sa.DateTime(timezone=True), pa.timestamp("us", "UTC")),
    ("wall", sa.DateTime(), pa.timestamp("us")),
    ("utc_wall", sa.DateTime(), pa.timestamp("us", "UTC")),
    ("day", sa.Date, pa.date32()),
    ("alarm", sa.Time, pa.time64("us")),
    ("term", pg.INTERVAL, pa.string()),
    ("doc", pg.JSON, pa.json_()),
    ("docb", pg.JSONB, pa.json_()),
    ("ref", pg.UUID(as_uuid=True), pa.uuid()),
    ("blob", pg.BYTEA, pa.binary()),
]

ROWS: list[dict[str, Any]] = [
    {"small": -32768, "regular": -(2**31), "big": -(2**63), "money": Decimal("-12345678.91"),
     "wide_money": Decimal("-99999999999999999999999999999999.999999"),
     "loose": Decimal("-0.001"), "ratio": float("-inf"), "flag": False,
     "note": 'tab\there, "quoted", back\\slash,\nnew line', "code": "", "padded": "ab",
     "seen_at": datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
     "wall": datetime(1, 1, 1, 0, 0), "utc_wall": datetime(1999, 12, 31, 23, 59, 59, 999999,
                                                          tzinfo=UTC),
     "day": date(1, 1, 1), "alarm": time(0, 0), "term": "-1 years -2 mons -3 days -04:05:06.5",
     "doc": '{"b": [1, 2.5, "x"], "a": null}', "docb": '{"é": "ü", "n": {"deep": [true]}}',
     "ref": uuid.UUID(int=0).bytes, "blob": b""},
    {"small": 32767, "regular": 2**31 - 1, "big": 2**63 - 1, "money": Decimal("0.01"),
     "wide_money": Decimal("12345678901234567890123456789012.000001"),
     "loose": Decimal("1234567.500"), "ratio": float("nan"), "flag": True,
     "note": "snow ☃ and 𝄞", "code": "abc", "padded": "abcde",
     "seen_at": datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC),
     "wall": datetime(9999, 12, 31, 23, 59, 59, 999999),
     "utc_wall": datetime(2000, 1, 1, tzinfo=UTC), "day": date(9999, 12, 31),
     "alarm": time(23, 59, 59, 999999), "term": "1 year 2 mons 3 days 04:05:06.000001",
     "doc": "[]", "docb": "3.5", "ref": uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8").bytes,
     "blob": bytes(range(256))},
    {"small": 0, "regular": 0, "big": 0, "money": Decimal("0.00"), "wide_money": Decimal("0"),
     "loose": Decimal("0.000"), "ratio": -0.0, "flag": None, "note": "", "code": "z",
     "padded": "", "seen_at": datetime(2000, 1, 1, tzinfo=UTC),
     "wall": datetime(1999, 12, 31, 23, 59, 59), "utc_wall": datetime(1970, 1, 1, tzinfo=UTC),
     "day": date(1999, 12, 31), "alarm": time(12, 0, 0, 1), "term": "-1 days +02:03:00",
     "doc": '"text"', "docb": "null", "ref": uuid.UUID(int=2**128 - 1).bytes,
     "blob": b"\x00\\x00"},
    {"small": 7, "regular": None, "big": 12, "money": Decimal("99999.99"),
     "wide_money": Decimal("-0.000001"), "loose": None, "ratio": 1e-310, "flag": True,
     "note": None, "code": None, "padded": None, "seen_at": None, "wall": None,
     "utc_wall": None, "day": None, "alarm": None, "term": "00:00:00", "doc": None,
     "docb": None, "ref": None, "blob": None},
    {"small": None, "regular": 5, "big": None, "money": None, "wide_money": None,
     "loose": Decimal("-7.250"), "ratio": None, "flag": False, "note": "x", "code": "y",
     "padded": "q", "seen_at": datetime(2024, 2, 29, 12, 30, tzinfo=UTC),
     "wall": datetime(2024, 2, 29, 12, 30), "utc_wall": None, "day": date(2024, 2, 29),
     "alarm": None, "term": "90 days 11:34:43", "doc": '{"k": 1}', "docb": '{"k": 1}',
     "ref": None, "blob": b"\xff"},
    {"small": 1, "regular": 1, "big": 1, "money": Decimal("-0.50"), "wide_money": Decimal("1"),
     "loose": Decimal("12345678901234567.125"), "ratio": 2.5, "flag": True, "note": "n",
     "code": "c", "padded": "p", "seen_at": datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
     "wall": datetime(1999, 12, 31, 23, 59, 59, 999999), "utc_wall": None,
     "day": date(2000, 1, 1), "alarm": time(0, 0, 0, 1), "term": None, "doc": "{}",
     "docb": "{}", "ref": None, "blob": None},
    {"small": None, "regular": None, "big": None, "money": None, "wide_money": None,
     "loose": None, "ratio": None, "flag": None, "note": None, "code": None, "padded": None,
     "seen_at": None, "wall": None, "utc_wall": None, "day": None, "alarm": None,
     "term": "1 mon 2562047 days -999999999:00:54.775807", "doc": None, "docb": None,
     "ref": None, "blob": None},
]


def page(rows: list[dict[str, Any]], columns: list[tuple[str, Any, pa.DataType]] = COLUMNS
         ) -> pa.Table:
    arrays = []
    for name, _, t in columns:
        values = [r[name] for r in rows]
        if t == pa.json_():
            arrays.append(pa.ExtensionArray.from_storage(t, pa.array(values, pa.string())))
        elif t == pa.uuid():
            arrays.append(pa.ExtensionArray.from_storage(t, pa.array(values, pa.binary(16))))
        else:
            arrays.append(pa.array(values, t))
    return pa.Table.from_arrays(arrays, names=[c[0] for c in columns])


@pytest.fixture(params=["postgresql+psycopg2", "postgresql"], ids=["psycopg2", "psycopg3"])
def engine(request: pytest.FixtureRequest, pg_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(request.param + "://" + pg_url.split("://", 1)[1])
    yield engine
    engine.dispose()


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each insert was encoded as binary COPY (True) or left to CSV (False)."""
    seen: list[bool] = []
    encode = pgbinary.encode

    def watched(*args: Any) -> bytes | None:
        stream = encode(*args)
        seen.append(stream is not None)
        return stream

    monkeypatch.setattr(pgbinary, "encode", watched)
    return seen


def tables(conn: sa.Connection, columns: list[tuple[str, Any, pa.DataType]] = COLUMNS
           ) -> tuple[sa.Table, sa.Table]:
    made = []
    for name in ("by_binary", "by_csv"):
        table = sa.Table(name, sa.MetaData(), sa.Column("row", sa.Integer),
                         *[sa.Column(c, type_) for c, type_, _ in columns])
        table.create(conn)
        made.append(table)
    return made[0], made[1]


def load_both(conn: sa.Connection, data: pa.Table,
              columns: list[tuple[str, Any, pa.DataType]] = COLUMNS) -> list[tuple[Any, ...]]:
    """`data` inserted by `arrow.insert` and by CSV: the rows of the first, as the server's
    text of each value, after checking the second has the very same texts."""
    data = data.append_column("row", pa.array(range(data.num_rows), pa.int64()))
    by_binary, by_csv = tables(conn, columns)
    arrow.insert(conn, by_binary, data)
    arrow.csv_copy(conn, pgcopy.copy_target(conn, by_csv, data.column_names), data)
    texts = ", ".join(f'"{c}"::text' for c, _, _ in columns)
    got = [conn.exec_driver_sql(f"SELECT {texts} FROM {t} ORDER BY row").all()
           for t in ("by_binary", "by_csv")]
    assert got[0] == got[1]
    return got[0]


def test_every_type_arrives_as_its_csv_text_would(engine: sa.Engine,
                                                  encoded: list[bool]) -> None:
    with engine.begin() as conn:
        got = load_both(conn, page(ROWS))
    assert encoded == [True]
    assert len(got) == len(ROWS)
    first = dict(zip([c[0] for c in COLUMNS], got[0], strict=True))
    assert first["money"] == "-12345678.91"
    assert first["wide_money"] == "-99999999999999999999999999999999.999999"
    assert first["loose"] == "-0.001"
    assert first["term"] == "-1 years -2 mons -3 days -04:05:06.5"
    assert first["padded"] == "ab"  # char(5) as text drops its padding
    assert first["wall"] == "0001-01-01 00:00:00"
    assert first["doc"] == '{"b": [1, 2.5, "x"], "a": null}'  # json keeps its text
    third = dict(zip([c[0] for c in COLUMNS], got[2], strict=True))
    assert (third["money"], third["loose"], third["ratio"]) == ("0.00", "0.000", "-0")
    assert third["blob"] == "\\x005c783030"
    assert third["term"] == "-1 days +02:03:00"
    assert [r[COLUMNS.index(("flag", sa.Boolean, pa.bool_()))] for r in got] == \
        ["false", "true", None, "true", "false", "true", None]


def test_a_slice_of_a_page_is_encoded_from_its_own_offset(engine: sa.Engine,
                                                          encoded: list[bool]) -> None:
    with engine.begin() as conn:
        got = load_both(conn, page(ROWS).slice(1, 4))
    assert encoded == [True]
    assert [r[0] for r in got] == ["32767", "0", "7", None]  # small
    assert [r[3] for r in got] == ["0.01", "0.00", "99999.99", None]  # money


decimals = st.builds(lambda digits, negative: Decimal(("-" if negative else "") + digits),
                     st.from_regex(r"\A(0|[1-9][0-9]{0,31})\.[0-9]{6}\Z"), st.booleans())
postgres_intervals = st.builds(
    lambda y, mo, d, t, h, m, s, f: " ".join(p for p in (
        f"{y} years" if y else "", f"{mo} mons" if mo else "", f"{d} days" if d else "",
        f"{t}{h:02d}:{m:02d}:{s:02d}{f}") if p),
    st.integers(-99, 99), st.integers(-11, 11), st.integers(-400, 400),
    st.sampled_from(["", "-", "+"]), st.integers(0, 10_000), st.integers(0, 59),
    st.integers(0, 59), st.sampled_from(["", ".5", ".000001", ".123456", ".12"]))


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({
    "amount": st.none() | decimals,
    "cents": st.none() | st.decimals(min_value=-(10**10) + 1, max_value=10**10 - 1,
                                     places=2),
    "term": st.none() | postgres_intervals,
    "at": st.none() | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                                   timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])),
}), min_size=1, max_size=30))
def test_drawn_numbers_intervals_and_instants_arrive_as_csv_brings_them(
        pg_server_url: str, rows: list[dict[str, Any]]) -> None:
    columns = [("amount", sa.Numeric(38, 6), pa.decimal128(38, 6)),
               ("cents", sa.Numeric(12, 2), pa.decimal128(12, 2)),
               ("term", pg.INTERVAL, pa.string()),
               ("at", sa.DateTime(timezone=True), pa.timestamp("us", "UTC"))]
    engine = sa.create_engine(pg_server_url)
    try:
        with engine.connect() as conn, conn.begin() as tx:
            assert pgbinary.encode(page(rows, columns), [pgbinary.NUMERIC, pgbinary.NUMERIC,
                                                         pgbinary.INTERVAL,
                                                         pgbinary.TIMESTAMPTZ]) is not None
            load_both(conn, page(rows, columns), columns)
            tx.rollback()
    finally:
        engine.dispose()


@pytest.mark.parametrize("text", ["P1Y2M", "1 day ago", "@ 1 day", "1 year 2 mons x",
                                  "04:65:00", "1 day  02:00:00", ""])
def test_an_interval_text_of_another_form_goes_as_csv(engine: sa.Engine, encoded: list[bool],
                                                      text: str) -> None:
    columns = [("term", pg.INTERVAL, pa.string())]
    with engine.connect() as conn:
        tx = conn.begin()
        by_binary, _ = tables(conn, columns)
        try:
            arrow.insert(conn, by_binary, page([{"term": "1 day"}, {"term": text}], columns))
            server = conn.execute(sa.select(by_binary.c.term.cast(sa.Text))).scalars().all()
        except sa.exc.DataError:
            server = None  # the server's own refusal
        tx.rollback()
    assert encoded == [False]
    if text == "P1Y2M":
        assert server == ["1 day", "1 year 2 mons"]
    if text in ("04:65:00", "1 year 2 mons x", ""):
        assert server is None


def test_an_interval_style_other_than_postgres_sends_intervals_as_csv(
        engine: sa.Engine, encoded: list[bool]) -> None:
    columns = [("term", pg.INTERVAL, pa.string())]
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL IntervalStyle = sql_standard")
        by_binary, _ = tables(conn, columns)
        arrow.insert(conn, by_binary, page([{"term": "-1 days 02:00:00"}], columns))
        # sql_standard reads a leading minus as every field's sign
        assert conn.exec_driver_sql("SELECT extract(epoch FROM term) FROM by_binary"
                                    ).scalar() == -(86400 + 7200)
    assert encoded == []  # not even tried


def test_an_integer_beyond_the_columns_range_gets_the_servers_error(
        engine: sa.Engine, encoded: list[bool]) -> None:
    columns = [("small", sa.SmallInteger, pa.int64())]
    with engine.connect() as conn, conn.begin():
        by_binary, _ = tables(conn, columns)
        with pytest.raises(sa.exc.DataError, match="out of range"):
            arrow.insert(conn, by_binary, page([{"small": 1}, {"small": 40_000}], columns))
    assert encoded == [False]


def test_a_text_too_long_for_its_column_is_the_servers_error(engine: sa.Engine,
                                                             encoded: list[bool]) -> None:
    columns = [("code", sa.String(3), pa.string())]
    with engine.connect() as conn, conn.begin():
        by_binary, _ = tables(conn, columns)
        with pytest.raises(sa.exc.DataError, match="too long"):
            arrow.insert(conn, by_binary, page([{"code": "abc"}, {"code": "abcd"}], columns))
    assert encoded == [True]


def test_a_naive_time_into_timestamptz_is_read_in_the_sessions_zone_as_csv(
        engine: sa.Engine, encoded: list[bool]) -> None:
    columns = [("seen_at", sa.DateTime(timezone=True), pa.timestamp("us"))]
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL TimeZone = 'America/New_York'")
        by_binary, _ = tables(conn, columns)
        arrow.insert(conn, by_binary, page([{"seen_at": datetime(2024, 1, 1, 12)}], columns))
        conn.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
        assert conn.exec_driver_sql("SELECT seen_at::text FROM by_binary").scalar() == \
            "2024-01-01 17:00:00+00"
    assert encoded == [False]


@pytest.mark.parametrize(("column", "arrow_type", "value", "text"), [
    (sa.Numeric(10, 2), pa.int64(), 5, "5.00"),  # numbers of another kind
    (pg.REAL, pa.float64(), 0.1, "0.1"),  # float4: rounded by the server, from the text
    (sa.Text, pa.int64(), 42, "42"),
    (pg.ENUM("a", "b", name="letter", create_type=False), pa.string(), "b", "b"),
    (pg.ARRAY(sa.Integer), pa.string(), "{1,2}", "{1,2}"),
])
def test_a_column_of_a_type_it_does_not_encode_goes_as_csv(
        engine: sa.Engine, encoded: list[bool], column: Any, arrow_type: pa.DataType,
        value: Any, text: str) -> None:
    columns = [("x", column, arrow_type), ("n", sa.Integer, pa.int64())]
    with engine.begin() as conn:
        if isinstance(column, pg.ENUM):
            conn.exec_driver_sql("CREATE TYPE letter AS ENUM ('a', 'b')")
        by_binary, _ = tables(conn, columns)
        arrow.insert(conn, by_binary, page([{"x": value, "n": 1}], columns))
        assert conn.exec_driver_sql("SELECT x::text, n FROM by_binary").one() == (text, 1)
    assert encoded == [False]


def test_types_are_the_catalogs_not_the_declared_ones(engine: sa.Engine,
                                                      encoded: list[bool]) -> None:
    # SQLAlchemy is told the column is a bigint; it is a double precision: eight bytes of an
    # integer would be read as a float without complaint
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE measured (v double precision)")
        told = sa.Table("measured", sa.MetaData(), sa.Column("v", sa.BigInteger))
        arrow.insert(conn, told, pa.table({"v": pa.array([3], pa.int64())}))
        assert conn.exec_driver_sql("SELECT v FROM measured").scalar() == 3.0
    assert encoded == [False]


def test_a_quoted_schema_and_table_name_is_found_in_the_catalog(engine: sa.Engine,
                                                                encoded: list[bool]) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE SCHEMA "Odd Schema"')
        table = sa.Table("Mixed Case", sa.MetaData(), sa.Column("share %", sa.Integer),
                         schema="Odd Schema")
        table.create(conn)
        arrow.insert(conn, table, pa.table({"share %": pa.array([1, None], pa.int64())}))
        assert conn.execute(sa.select(table.c["share %"])).scalars().all() == [1, None]
    assert encoded == [True]


def test_a_page_of_nulls_only_is_encoded(engine: sa.Engine, encoded: list[bool]) -> None:
    with engine.begin() as conn:
        got = load_both(conn, page([dict.fromkeys(ROWS[0]) for _ in range(3)]))
    assert encoded == [True]
    assert got == [(None,) * len(COLUMNS)] * 3


def test_an_interval_repeated_down_a_page_is_each_rows_own(engine: sa.Engine,
                                                           encoded: list[bool]) -> None:
    columns = [("term", pg.INTERVAL, pa.string())]
    terms = ["1 mon", None, "30 days", "1 mon", None, "-00:00:01", "30 days", "1 mon"]
    with engine.begin() as conn:
        got = load_both(conn, page([{"term": t} for t in terms], columns), columns)
    assert encoded == [True]
    assert [r[0] for r in got] == terms


def test_a_page_too_large_for_one_binary_array_goes_as_csv(
        engine: sa.Engine, encoded: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgbinary, "_OFFSET_LIMIT", 1000)  # 2 GiB, scaled down to the page
    columns = [("note", sa.Text, pa.string())]
    notes = [f"note {i}" for i in range(30)]
    with engine.begin() as conn:
        got = load_both(conn, page([{"note": n} for n in notes], columns), columns)
    assert encoded == [False]
    assert [r[0] for r in got] == notes
