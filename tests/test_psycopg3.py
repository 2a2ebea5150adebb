"""psycopg 3 as a first-class PostgreSQL driver (issue #15): `postgresql+psycopg://` URLs take
the same COPY paths as psycopg2 (the Arrow lane's `COPY (SELECT ...) TO STDOUT`, COPY FROM
STDIN for bulk inserts, the staged COPY update), give the same rows, and a database error
inside a COPY reaches the engine as the same kind of error whichever driver raised it.

The COPY calls are watched at pgcopy's driver adapter (`_DRIVERS`), so each test shows which
driver ran which COPY. The lane's reads go through ADBC's driver first (`adbc.py`); the tests
of the read path run with it and with the CSV reader alone (`reader`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from sync_assets.connectors.base import BatchRefused, ConnectorError, ReadRequest, TransientError
from sync_assets.connectors.sql import SqlTable, arrow, dispose_engines, pgcopy
from sync_assets.connectors.sql.table import READ_RETRIES, engine_url

from engine_helpers import (
    counts,
    create_table,
    engine_for,
    errors,
    execute,
    project,
    rows,
    sync,
    to_warehouse,
    update,
)

DRIVERS = ["psycopg2", "psycopg"]
Copies = list[tuple[str, str, str]]  # (driver, "in" / "out" / "mogrify", SQL)


def with_driver(url: str, driver: str) -> str:
    """A URL of the test server for this driver (`postgresql+psycopg://...`)."""
    assert url.startswith("postgresql://")
    return url.replace("postgresql://", f"postgresql+{driver}://", 1)


class _Watched:
    """A pgcopy driver adapter that notes every call before passing it on."""

    def __init__(self, name: str, inner: Any, calls: Copies) -> None:
        self.name, self.inner, self.calls = name, inner, calls

    def copy_in(self, raw: Any, sql: str, file: IO[Any]) -> None:
        self.calls.append((self.name, "in", sql))
        self.inner.copy_in(raw, sql, file)

    def copy_out(self, raw: Any, sql: str, file: IO[bytes]) -> None:
        self.calls.append((self.name, "out", sql))
        self.inner.copy_out(raw, sql, file)

    def mogrify(self, raw: Any, sql: str, params: Mapping[str, Any]) -> str:
        self.calls.append((self.name, "mogrify", sql))
        return str(self.inner.mogrify(raw, sql, params))


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> Copies:
    calls: Copies = []
    for name, driver in list(pgcopy._DRIVERS.items()):
        monkeypatch.setitem(pgcopy._DRIVERS, name, _Watched(name, driver, calls))
    return calls


def copied(calls: Copies, direction: str, table: str | None = None) -> set[str]:
    """The drivers that ran a COPY in this direction (into `table`, for "in")."""
    return {d for d, kind, sql in calls if kind == direction
            and (table is None or sql.startswith(f'COPY "{table}" ') or
                 sql.startswith(f"COPY {table} "))}


# -- the tricky values -----------------------------------------------------------------------
IST = timezone(timedelta(hours=5, minutes=30))
TEXTS = [None, "", "plain", "tab\there", "new\nline", "cr\rlf\r\n", "back\\slash", "\\N",
         "\\.", 'comma, "quoted"', "semi;colon|pipe", "ünïcødé 日本語 🎉", "e\u0301 combining",
         "  padded  ", "NULL", "%(name)s %s 100%", "it's", "x" * 3000, "\u2028\u00a0\ufeff"]
FLOATS = [1.5, float("nan"), float("inf"), float("-inf"), -0.0, None, 1e-300, 0.1,
          -1.7976931348623157e308]
FLOAT_TEXT = {1.5: "1.5", float("inf"): "Infinity", float("-inf"): "-Infinity", -0.0: "-0",
              None: None, 1e-300: "1e-300", 0.1: "0.1",
              -1.7976931348623157e308: "-1.7976931348623157e+308"}
FLOAT_TEXT[FLOATS[1]] = "NaN"  # the NaN of the list: a key found by identity
MONEY = [Decimal("12.30"), Decimal("-0.05"), None, Decimal("0.00"), Decimal("9999999999.99")]
MOMENTS = [datetime(2024, 1, 1, 23, 30, tzinfo=UTC), None,
           datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
           datetime(2024, 6, 30, 12, 0, 0, 1, tzinfo=IST), datetime(9999, 12, 31, tzinfo=UTC)]
N = 230  # three pages of 100: keyset positions rendered by the driver


def code(i: int) -> str:
    """A text match key that needs quoting in SQL: the keyset position after a page is
    rendered into the COPY's SELECT by the driver."""
    return f"k{i:04d}" + ["'", "\\", '"', "%", "ü", "%(x)s", " "][i % 7]


def tricky(i: int) -> dict[str, Any]:
    return {
        "code": code(i), "id": i, "name": TEXTS[i % len(TEXTS)],
        "amount": MONEY[i % len(MONEY)], "big": Decimal(10**37 + i) * (-1) ** i,
        "ratio": FLOATS[i % len(FLOATS)], "at": MOMENTS[i % len(MOMENTS)],
        "naive": datetime(2024, 3, 1, 12) + timedelta(seconds=i, microseconds=i % 3 * 7),
        "born": None if i % 11 == 0 else date(1900, 1, 1) + timedelta(days=i * 97),
        "vip": None if i % 13 == 0 else i % 2 == 0, "note": "not mapped",
    }


COLUMNS = ["code", "id", "name", "amount", "big", "ratio", "at", "naive", "born", "vip"]
MAPPING = {c: c for c in COLUMNS}


def tricky_source(url: str, n: int = N) -> None:
    create_table(url, "item", [
        sa.Column("code", sa.String(40), primary_key=True),
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.Text), sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("big", sa.Numeric(38, 0)), sa.Column("ratio", sa.Float),
        sa.Column("at", sa.DateTime(timezone=True)), sa.Column("naive", sa.DateTime),
        sa.Column("born", sa.Date), sa.Column("vip", sa.Boolean), sa.Column("note", sa.Text),
    ], [tricky(i) for i in range(1, n + 1)])


def as_text(url: str, table: str) -> list[tuple[str | None, ...]]:
    """Every mapped column as PostgreSQL's own text of the stored value, in key order: the
    bytes, compared exactly (NaN, -0, microseconds, trailing zeros of numeric)."""
    cols = ", ".join(f'"{c}"::text' for c in COLUMNS)
    with engine_for(url) as engine, engine.connect() as conn:
        conn.exec_driver_sql("SET TIME ZONE 'UTC'")
        return [tuple(r) for r in conn.exec_driver_sql(
            f'SELECT {cols} FROM "{table}" ORDER BY code COLLATE "C"')]


def items_sync(**extra: Any) -> dict[str, Any]:
    return to_warehouse("items", "item", "items", matchKey=["code"], mapping=MAPPING,
                        batchSize=100, audit=None, syncMode="full", **extra)


# -- the driver ------------------------------------------------------------------------------
def test_an_explicit_psycopg3_url_gets_every_copy_path(pg_url: str) -> None:
    create_table(pg_url, "item", [sa.Column("id", sa.Integer, primary_key=True)])
    table = SqlTable(with_driver(pg_url, "psycopg"), "item")
    assert table.engine.dialect.driver == "psycopg"
    assert pgcopy.supported(table.engine.dialect)
    assert arrow.lane_available(table) and table.capabilities.arrow_writes
    with table.engine.connect() as conn:
        assert pgcopy.usable(conn, [{}] * pgcopy.MIN_ROWS)
        assert not pgcopy.usable(conn, [{}] * (pgcopy.MIN_ROWS - 1))


def test_the_url_without_a_driver_keeps_its_documented_driver() -> None:
    url = engine_url("postgresql://u@h/db")
    assert isinstance(url, sa.URL) and url.drivername == "postgresql+psycopg2"
    assert str(engine_url("postgresql+psycopg://u@h/db")).startswith("postgresql+psycopg://")


def test_mogrify_renders_what_the_driver_would_bind(pg_url: str) -> None:
    """A SELECT compiled for psycopg 3 (its `::VARCHAR` casts, `%%`) rendered by
    ClientCursor gives the rows the bound statement gives."""
    tricky_source(pg_url, 30)
    engine = sa.create_engine(with_driver(pg_url, "psycopg"))
    try:
        item = sa.Table("item", sa.MetaData(), autoload_with=engine)
        after = (code(7), datetime(2024, 3, 1, 12, 0, 7, 7))
        stmt = (sa.select(item.c.code, item.c.at).where(
            sa.tuple_(item.c.code, item.c.naive) > sa.tuple_(*after),
            item.c.name.not_like("%o%"), item.c.id % 3 != 0,
            item.c.at != datetime(2024, 1, 1, 23, 30, tzinfo=UTC),
            item.c.amount != Decimal("-0.05"), item.c.code != "k0010'\\\"%")
            .order_by(item.c.code).limit(8))
        with engine.connect() as conn:
            compiled = stmt.compile(dialect=conn.dialect,
                                    compile_kwargs={"render_postcompile": True})
            assert "%%" in str(compiled)  # the modulo, escaped for the driver
            query = pgcopy.mogrify(conn, str(compiled), compiled.construct_params())
            assert "%%" not in query and "::VARCHAR" in query
            raw = conn.connection.driver_connection
            with raw.cursor() as cursor:  # psycopg 3 formats nothing without parameters
                rendered = cursor.execute(query).fetchall()
            bound = [tuple(r) for r in conn.execute(stmt)]
            assert rendered == bound and len(bound) >= 4
    finally:
        engine.dispose()


# -- syncs through psycopg 3 ------------------------------------------------------------------
@pytest.fixture(params=["adbc", "csv"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the lane reads PostgreSQL's pages: ADBC's driver, or CSV COPY (where ADBC's is
    not installed or cannot read a page)."""
    if request.param == "csv":
        from sync_assets.connectors.sql import adbc

        monkeypatch.setattr(adbc, "_driver", lambda: None)
    return str(request.param)


def test_a_first_load_through_the_lane_writes_exact_rows_and_a_rerun_skips_them(
        tmp_path: Path, pg_url: str, pg_url_2: str, copies: Copies,
        lane_pages: list[int], reader: str) -> None:
    tricky_source(pg_url)
    urls = (with_driver(pg_url, "psycopg"), with_driver(pg_url_2, "psycopg"))
    proj = project(tmp_path, urls, items_sync())

    first = sync(proj, "items")

    assert counts(first) == {"processed": N, "inserted": N}
    assert any("no record is looked up" in line for line in first.logs)  # the bulk lane
    # pages read by ADBC's driver, or by COPY TO STDOUT ...
    assert copied(copies, "out") == ({"psycopg"} if reader == "csv" else set())
    assert sum("TO STDOUT WITH (FORMAT csv)" in sql for _, _, sql in copies) == (
        3 if reader == "csv" else 0)
    assert lane_pages == [100, 100, 30]  # every page parsed by Arrow, none re-read
    assert copied(copies, "in", "items") == {"psycopg"}  # ... written by COPY FROM STDIN
    assert copied(copies, "in", "_sync_assets_records") == {"psycopg"}
    assert as_text(pg_url_2, "items") == as_text(pg_url, "item")
    ratio = COLUMNS.index("ratio")  # NaN is not equal to itself: compared by its text below
    got = [r[:ratio] + r[ratio + 1:] for r in rows(pg_url_2, "items", "code")]
    want = [tuple(tricky(i)[c] for c in COLUMNS if c != "ratio") for i in range(1, N + 1)]
    assert got == want  # the Python values that went in: NULLs, "", "\t", "\\N", ...
    assert [r[ratio] for r in as_text(pg_url_2, "items")] == [
        FLOAT_TEXT[FLOATS[i % len(FLOATS)]] for i in range(1, N + 1)]
    copies.clear()

    again = sync(proj, "items")

    assert counts(again) == {"processed": N, "skipped": N}
    assert lane_pages == [100, 100, 30] * 2  # read through the lane again
    assert copied(copies, "in", "items") == set()  # nothing written


def test_an_update_batch_goes_through_the_copy_update_path(
        tmp_path: Path, pg_url: str, pg_url_2: str, copies: Copies) -> None:
    """`operation: update` writes a batch of changed rows with one COPY into a staging table
    and one UPDATE ... FROM (pgcopy.update_rows); their state rows the same way."""
    tricky_source(pg_url)
    urls = (with_driver(pg_url, "psycopg"), with_driver(pg_url_2, "psycopg"))
    updates = {**items_sync(), "name": "items_update", "batchSize": 1000}  # one batch
    updates["destination"] = {**updates["destination"], "operation": "update"}
    proj = project(tmp_path, urls, items_sync(), updates)
    sync(proj, "items")
    assert counts(sync(proj, "items_update")) == {"processed": N, "skipped": N}  # as loaded
    execute(pg_url, "UPDATE item SET name = coalesce(name, '') || E' v2\\t\\\\', "
                    "ratio = -ratio, vip = NOT vip WHERE id % 2 = 0")
    changed = N // 2  # every even row: its name is no longer what it was
    copies.clear()

    result = sync(proj, "items_update")

    assert changed >= pgcopy.MIN_ROWS
    assert counts(result) == {"processed": N, "updated": changed, "skipped": N - changed}
    assert [(d, sql) for d, kind, sql in copies if kind == "in"] == [  # rows, then state
        ("psycopg", f"COPY _sync_assets_stage ({', '.join(COLUMNS)}) FROM STDIN"),
        ("psycopg", "COPY _sync_assets_stage (record_key, fingerprint, created) FROM STDIN")]
    assert as_text(pg_url_2, "items") == as_text(pg_url, "item")
    assert sum("v2\t\\" in (r[2] or "") for r in as_text(pg_url_2, "items")) == changed
    assert counts(sync(proj, "items_update")) == {"processed": N, "skipped": N}


@pytest.mark.parametrize("lane", ["arrow", "records"])
def test_both_drivers_write_the_same_bytes_from_the_same_source(
        tmp_path: Path, pg_url: str, pg_url_2: str, pg_url_3: str, lane: str,
        copies: Copies, lane_pages: list[int], reader: str) -> None:
    """The same source synced once through psycopg2 and once through psycopg 3 (source and
    destination on that driver): the destinations hold the same text of every value, and
    the same state (record keys, fingerprints)."""
    tricky_source(pg_url)
    extra = {} if lane == "arrow" else {"validation": {"required": ["code"]}}  # no lane
    stored: dict[str, Any] = {}
    for driver, dest in (("psycopg2", pg_url_2), ("psycopg", pg_url_3)):
        (tmp_path / driver).mkdir()
        proj = project(tmp_path / driver, (with_driver(pg_url, driver),
                                           with_driver(dest, driver)), items_sync(**extra))
        assert counts(sync(proj, "items")) == {"processed": N, "inserted": N}
        with engine_for(dest) as engine, engine.connect() as conn:
            state = conn.exec_driver_sql(
                "SELECT sync_name, record_key, fingerprint, created FROM _sync_assets_records "
                'ORDER BY record_key COLLATE "C"').all()
        stored[driver] = (as_text(dest, "items"), [tuple(r) for r in state])
        dispose_engines()
    assert stored["psycopg2"] == stored["psycopg"]
    assert stored["psycopg"][0] == as_text(pg_url, "item")
    assert len(stored["psycopg"][1]) == N
    assert copied(copies, "out") == (set(DRIVERS) if lane == "arrow" and reader == "csv"
                                     else set())
    assert lane_pages == ([100, 100, 30] * 2 if lane == "arrow" else [])


def test_a_page_the_destination_refuses_in_copy_is_written_record_by_record(
        tmp_path: Path, pg_url: str, pg_url_2: str, copies: Copies) -> None:
    tricky_source(pg_url)
    create_table(pg_url_2, "items", [
        sa.Column("code", sa.String(40), primary_key=True), sa.Column("id", sa.Integer),
        sa.Column("name", sa.Text), sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("big", sa.Numeric(38, 0)), sa.Column("ratio", sa.Float),
        sa.Column("at", sa.DateTime(timezone=True)), sa.Column("naive", sa.DateTime),
        sa.Column("born", sa.Date), sa.Column("vip", sa.Boolean),
    ], constraints=[sa.CheckConstraint("id <> 130", name="refuses")])
    urls = (with_driver(pg_url, "psycopg"), with_driver(pg_url_2, "psycopg"))
    proj = project(tmp_path, urls, items_sync(errorHandling={"onSyncError": "skip"}))

    result = sync(proj, "items")

    assert counts(result) == {"processed": N, "inserted": N - 1, "errored": 1}
    assert [(e["recordId"], e["code"]) for e in errors(result)] == [(code(130), "WRITE_ERROR")]
    assert 'violates check constraint "refuses"' in errors(result)[0]["message"]
    assert copied(copies, "in", "items") == {"psycopg"}  # the COPY the database refused
    assert as_text(pg_url_2, "items") == [r for r in as_text(pg_url, "item") if r[1] != "130"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_text_with_a_nul_character_is_refused_per_record_alike(
        tmp_path: Path, pg_url_2: str, driver: str, copies: Copies) -> None:
    """The COPY of the first load is refused by the server (0x00 in its data), the record
    path by the driver (psycopg2: ValueError, psycopg 3: DataError): the same record error."""
    os_url = f"sqlite:///{tmp_path}/os.db"
    create_table(os_url, "person", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(80), unique=True), sa.Column("name", sa.Text)],
        [{"id": i, "email": f"p{i}@x.io", "name": f"name {i}"} for i in range(1, 4)])
    update(os_url, "person", {"id": 2}, {"name": "bad\x00name"})
    proj = project(tmp_path, (os_url, with_driver(pg_url_2, driver)), to_warehouse(
        "people", "person", "people", mapping={"email": "email", "name": "name"},
        matchKey=["email"], errorHandling={"onSyncError": "skip"}, audit=None))

    result = sync(proj, "people")

    assert copied(copies, "in", "people") == {driver}  # the first load's bulk COPY
    assert counts(result) == {"processed": 3, "inserted": 2, "errored": 1}
    assert errors(result) == [{
        "recordId": "2", "code": "WRITE_ERROR",
        "message": "warehouse.people refused the record: text holds a NUL character (\\x00), "
                   "which PostgreSQL text cannot store"}]
    assert rows(pg_url_2, "people", "email") == [("p1@x.io", "name 1"), ("p3@x.io", "name 3")]


# -- errors inside COPY, classified alike ---------------------------------------------------
def _ledger(url: str) -> None:
    create_table(url, "ledger", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("qty", sa.Integer), sa.Column("note", sa.Text)],
        [{"id": i, "qty": i, "note": "n"} for i in range(1, 101)],
        constraints=[sa.CheckConstraint("qty >= 0", name="no_negative")])


def _refusal(url: str, driver: str, write: Any) -> ConnectorError:
    table = SqlTable(with_driver(url, driver), "ledger")
    table.describe()
    with pytest.raises(ConnectorError) as caught, table.transaction() as tx:
        write(table, tx)
    with engine_for(url) as engine, engine.connect() as conn:  # nothing of it was written
        assert conn.exec_driver_sql("SELECT count(*), sum(qty) FROM ledger").one() == (100, 5050)
    return caught.value


WRITES = {
    # a bulk-lane page (Arrow's CSV into COPY): a CHECK fails inside the COPY
    "arrow insert": lambda table, tx: table.write_arrow(tx, pa.table({
        "id": pa.array(range(101, 201), pa.int64()), "qty": pa.array([-1] * 100, pa.int64()),
        "note": pa.array(["x"] * 100, pa.string())})),
    # records by COPY's text format: a key that is already there
    "copy insert": lambda table, tx: table.insert(
        tx, [{"id": i, "qty": 1, "note": "dup"} for i in range(50, 120)]),
    # the staged update: text an integer column cannot take, refused inside the COPY
    "copy update": lambda table, tx: table.update(
        tx, ["id"], [{"id": i, "qty": "many" if i == 80 else i} for i in range(1, 81)]),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_a_database_error_inside_copy_is_the_same_refusal_on_both_drivers(
        pg_url: str, write: str, copies: Copies) -> None:
    _ledger(pg_url)
    refused = {driver: _refusal(pg_url, driver, WRITES[write]) for driver in DRIVERS}

    assert {d for d, kind, _ in copies if kind == "in"} == set(DRIVERS)  # both in COPY
    assert [type(e) for e in refused.values()] == [BatchRefused, BatchRefused]
    assert str(refused["psycopg2"]) == str(refused["psycopg"])
    expected = {"arrow insert": 'CheckViolation: new row for relation "ledger" violates '
                                'check constraint "no_negative"',
                "copy insert": "UniqueViolation: duplicate key value violates unique "
                               'constraint "ledger_pkey"',
                "copy update": "InvalidTextRepresentation: invalid input syntax for type "
                               'integer: "many"'}[write]
    assert str(refused["psycopg"]) == expected


def test_sqlalchemy_sees_the_same_exception_class_from_both_drivers(pg_url: str) -> None:
    _ledger(pg_url)
    caught: dict[str, BaseException] = {}
    for driver in DRIVERS:
        engine = sa.create_engine(with_driver(pg_url, driver))
        try:
            with pytest.raises(sa.exc.DBAPIError) as error, engine.begin() as conn:
                pgcopy.copy_rows(conn, "ledger", ["id", "qty"],
                                 [{"id": 500, "qty": -5}])
            caught[driver] = error.value
        finally:
            engine.dispose()
    assert [type(e) for e in caught.values()] == [sa.exc.IntegrityError] * 2
    assert [type(getattr(e, "orig", None)).__name__ for e in caught.values()] == [
        "CheckViolation"] * 2


@contextmanager
def ledger_locked(pg_url: str) -> Iterator[None]:
    """Another session holds the ledger table in ACCESS EXCLUSIVE mode."""
    engine = sa.create_engine(pg_url)
    conn = engine.connect()
    conn.exec_driver_sql("LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE")  # until the rollback
    try:
        yield
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_lock_timeout_inside_copy_is_transient(
        pg_url: str, driver: str, copies: Copies) -> None:
    """Writes: COPY waits for the lock and the server cancels it: TransientError (retried).
    Reads: the lane's COPY TO STDOUT is read again, and reported after its retries."""
    _ledger(pg_url)
    url = with_driver(pg_url, driver) + "?options=-c%20lock_timeout%3D150"
    table = SqlTable(url, "ledger")
    table.describe()  # read before the lock: only the COPY touches the table
    waits: list[float] = []
    table.sleep = waits.append
    request = ReadRequest(columns=["id", "qty", "note"], order_by=["id"], batch_size=50)
    with ledger_locked(pg_url):
        with pytest.raises(TransientError, match="LockNotAvailable: canceling statement due "
                                                 "to lock timeout"), table.transaction() as tx:
            table.insert(tx, [{"id": i, "qty": 1, "note": "new"} for i in range(200, 300)])
        assert copied(copies, "in", "ledger") == {driver}

        pages = table.read_arrow(request)
        assert pages is not None
        with pytest.raises(ConnectorError) as caught:
            list(pages)
    assert type(caught.value) is ConnectorError
    assert str(caught.value).startswith(f"reading ledger on {with_driver(pg_url, driver)}")
    assert str(caught.value).endswith(
        " failed: LockNotAvailable: canceling statement due to lock timeout")
    assert len(waits) == READ_RETRIES  # the read was tried again, then reported
    assert sum(kind == "out" for _, kind, _ in copies) == READ_RETRIES + 1
    assert not [t for t in threading.enumerate() if t.name == "sync-read"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_column_named_with_a_percent_sign_takes_every_copy_path(
        pg_url: str, driver: str) -> None:
    """SQLAlchemy doubles `%` in a quoted name for the driver's parameter formatting; a COPY
    statement is not formatted, so its names carry the `%` once."""
    table = sa.Table("shares", sa.MetaData(),
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("share %", sa.Text))
    engine = sa.create_engine(with_driver(pg_url, driver))
    try:
        with engine.begin() as conn:
            table.create(conn)
            pgcopy.copy_rows(conn, table, ["id", "share %"],
                             [{"id": i, "share %": "rows"} for i in range(100)])
            arrow.insert(conn, table, pa.table({"id": pa.array(range(100, 200), pa.int64()),
                                                "share %": pa.array(["arrow"] * 100)}))
            pgcopy.update_rows(conn, table, ["id"], ["share %"],
                               [{"id": i, "share %": "updated"} for i in range(0, 200, 2)])
            got = conn.execute(sa.select(table.c["share %"], sa.func.count())
                               .group_by(table.c["share %"]).order_by(table.c["share %"]))
            assert [tuple(r) for r in got] == [("arrow", 50), ("rows", 50), ("updated", 100)]
    finally:
        engine.dispose()


@contextmanager
def update_plans(engine: sa.Engine) -> Iterator[list[str]]:
    """The plan PostgreSQL chose for each staged UPDATE, explained on the same cursor just
    before it ran (the stage filled, the UPDATE's settings in force)."""
    plans: list[str] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("UPDATE") and "_sync_assets_stage" in statement:
            cursor.execute(f"EXPLAIN {statement}", parameters)
            plans.append("\n".join(r[0] for r in cursor.fetchall()))
            cursor.execute("SELECT current_setting('random_page_cost')")
            plans.append(f"random_page_cost={cursor.fetchone()[0]}")

    sa.event.listen(engine, "before_cursor_execute", explain)
    try:
        yield plans
    finally:
        sa.event.remove(engine, "before_cursor_execute", explain)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_staged_update_probes_the_key_index_of_a_large_table(pg_url: str, driver: str) -> None:
    """1,000 changed rows of a 100,000-row table: the UPDATE looks each one up by the key's
    index instead of scanning the table (which the server's default page cost would choose),
    and the server's setting is back once the UPDATE has run."""
    engine = sa.create_engine(with_driver(pg_url, driver))
    table = sa.Table("people", sa.MetaData(), sa.Column("email", sa.Text, primary_key=True),
                     sa.Column("name", sa.Text), sa.Column("n", sa.Integer))
    try:
        with engine.begin() as conn:
            table.create(conn)
            conn.exec_driver_sql("INSERT INTO people SELECT 'user' || i || '@example.com', "
                                 "'name ' || i, i FROM generate_series(1, 100000) i")
            conn.exec_driver_sql("ANALYZE people")
        changed = [{"email": f"user{i}@example.com", "name": f"renamed {i}"}
                   for i in range(1, 100001, 100)]
        with engine.begin() as conn, update_plans(engine) as plans:
            pgcopy.update_rows(conn, table, ["email"], ["name"], changed)
            after = conn.exec_driver_sql("SHOW random_page_cost").scalar_one()
            renamed = conn.exec_driver_sql(
                "SELECT count(*), min(n), max(n) FROM people WHERE name = 'renamed ' || n"
            ).one()
        assert len(plans) == 2 and "Index Scan using people_pkey on people" in plans[0], plans
        assert "Seq Scan on people" not in plans[0]
        assert plans[1] == "random_page_cost=1.1"
        assert after == "4"
        assert tuple(renamed) == (1000, 1, 99901)
    finally:
        engine.dispose()


def test_a_staged_update_keeps_a_lower_page_cost_the_server_has(pg_url: str) -> None:
    """A server tuned below 1.1 keeps its figure for the UPDATE too."""
    engine = sa.create_engine(pg_url)
    table = sa.Table("tags", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True,
                                                       autoincrement=False),
                     sa.Column("tag", sa.Text))
    try:
        with engine.begin() as conn:
            table.create(conn)
            pgcopy.copy_rows(conn, table, ["id", "tag"],
                             [{"id": i, "tag": "old"} for i in range(100)])
        with engine.begin() as conn, update_plans(engine) as plans:
            conn.exec_driver_sql("SET random_page_cost = 0.5")
            pgcopy.update_rows(conn, table, ["id"], ["tag"],
                               [{"id": i, "tag": "new"} for i in range(0, 100, 1)])
            after = conn.exec_driver_sql("SHOW random_page_cost").scalar_one()
            tags = conn.exec_driver_sql("SELECT tag, count(*) FROM tags GROUP BY tag").all()
        assert plans[1] == "random_page_cost=0.5" and after == "0.5"
        assert [tuple(t) for t in tags] == [("new", 100)]
    finally:
        engine.dispose()
