"""The benchmark's data sets, their changes, and the checks of every destination's content.

One deterministic generator (seeded) per table feeds both PostgreSQL and SQLite, so both hold
the same rows.

`contact`, the narrow table:

    id bigint PK | email text UNIQUE | first_name | last_name (2% NULL) | status | notes
    | created_at | updated_at (indexed with id: the incremental read order)

About 80% of the rows have status = 'active' (the sync's filter). Five columns are mapped
(id, email, first_name, last_name, updated_at); status, notes and created_at are not.

`account`, the wide table, one column of every common type (WIDE_SOURCE): bigint id PK,
integer, smallint, numeric(12,2), numeric(20,6), double precision (NaN, +-Infinity, NULL),
boolean (NULL), nullable text (tabs, newlines, backslashes, quotes, emoji), the filter's
status, a tier, timestamptz (half with microseconds), timestamp, date, time, interval (10%
with months), jsonb (objects, arrays, NULL), uuid, bytea, an unmapped text, updated_at.
About 80% have status = 'open'. On SQLite the natural declarations of the same (NUMERIC(12,2),
REAL, BOOLEAN, DATETIME, DATE, TIME, JSON, BLOB, TEXT for interval and uuid; NaN is NULL
there, as SQLite stores it). It never changes during a run.

Changes between tasks of `contact` (the same rows every time, so every repeat does the same
work):
  C: 1% of rows (id % 100 = 7) get a new last_name and a later updated_at;
  D: 1% of rows (id % 100 = 13) are deleted.
Before each repeat the source is restored from `contact_base` (a pristine copy).

A destination is right when its row count and an order-independent checksum of its columns
(sum of 60-bit prefixes of each row's md5) equal those of the filtered source put through the
shape's SQL (a `Shape`: the columns, their types, and for the transforms task the SQL doing
what each transform does). PostgreSQL values are normalised through their text to the
shape's declared type, SQLite values by their kind in Python.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any

MAPPED = ("id", "email", "first_name", "last_name", "updated_at")
FILTER_SQL = "status = 'active'"
CHANGED_SQL = "id % 100 = 7"
DELETED_SQL = "id % 100 = 13"

FIRST = [
    "Anna", "Ben", "Carla", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas",
    "Katrin", "Lukas", "Mia", "Noah", "Olga", "Paul", "Quentin", "Rosa", "Simon", "Tina",
    "Uwe", "Vera", "Wim", "Xenia", "Yusuf", "Zoe", "Amir", "Bea", "Chen", "Dora", "Emil",
    "Fatima", "Gabriel", "Hanna", "Ivan", "Julia", "Karl", "Lena", "Marco", "Nina",
]
LAST = [
    "Schmidt", "Müller", "Meyer", "Weber", "Wagner", "Becker", "Schulz", "Hoffmann", "Koch",
    "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Braun", "Zimmermann",
    "Krüger", "Hartmann", "Lange", "Werner", "Krause", "Lehmann", "Köhler", "Maier", "Huber",
    "Kaiser", "Fuchs", "Peters", "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Vogel",
    "Friedrich", "Keller", "Günther", "Frank", "Berger", "O'Brien",
]
WORDS = [
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
    "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua",
    "called", "back", "renewal", "pending", "invoice", "meeting", "follow-up",
]
T0 = datetime(2020, 1, 1)


def rows(n: int, seed: int = 20240601) -> Iterator[tuple[Any, ...]]:
    """(id, email, first_name, last_name, status, notes, created_at, updated_at) as text."""
    rng = random.Random(seed)
    span = int((datetime(2024, 1, 1) - T0).total_seconds())
    for i in range(1, n + 1):
        fn = rng.choice(FIRST)
        ln = rng.choice(LAST)
        r = rng.random()
        status = "active" if r < 0.8 else ("lead" if r < 0.9 else "inactive")
        notes = " ".join(rng.choices(WORDS, k=rng.randint(3, 25)))
        created = T0 + timedelta(seconds=rng.randrange(span))
        updated = created + timedelta(seconds=rng.randrange(365 * 86400))
        email = f"{fn}.{ln}.{i}@example.com".lower().replace("'", "")
        yield (i, email, fn, None if rng.random() < 0.02 else ln, status, notes,
               created.strftime("%Y-%m-%d %H:%M:%S"), updated.strftime("%Y-%m-%d %H:%M:%S"))


# -- PostgreSQL ------------------------------------------------------------------------------
PG_SOURCE_DDL = """
DROP TABLE IF EXISTS contact, contact_base;
CREATE TABLE contact_base (
    id bigint NOT NULL, email text NOT NULL, first_name text, last_name text,
    status text NOT NULL, notes text, created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
"""
PG_SOURCE_INDEXES = """
ALTER TABLE contact_base ADD PRIMARY KEY (id);
CREATE TABLE contact (LIKE contact_base INCLUDING ALL);
INSERT INTO contact SELECT * FROM contact_base;
ALTER TABLE contact ADD CONSTRAINT contact_email_key UNIQUE (email);
CREATE INDEX contact_updated_at_id ON contact (updated_at, id);
"""

def _copy_buffer(batch: list[tuple[Any, ...]]) -> io.StringIO:
    out = io.StringIO()
    for row in batch:
        out.write("\t".join(
            "\\N" if v is None else (str(v) + ("+00" if k >= 6 else "")) for k, v in enumerate(row)
        ))
        out.write("\n")
    out.seek(0)
    return out


def pg_generate(conn: Any, n: int) -> None:
    """Create and fill `contact` and `contact_base` in the (source) database of `conn`."""
    with conn.cursor() as cur:
        cur.execute(PG_SOURCE_DDL)
        batch: list[tuple[Any, ...]] = []
        for row in rows(n):
            batch.append(row)
            if len(batch) == 100_000:
                cur.copy_expert("COPY contact_base FROM STDIN", _copy_buffer(batch))
                batch = []
        if batch:
            cur.copy_expert("COPY contact_base FROM STDIN", _copy_buffer(batch))
        cur.execute(PG_SOURCE_INDEXES)
    conn.commit()
    pg_vacuum(conn)


def pg_vacuum(conn: Any, table: str = "contact") -> None:
    old = conn.autocommit
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"VACUUM ANALYZE {table}")
    conn.autocommit = old


def pg_apply_change(conn: Any) -> None:
    """Task C's change: 1% of rows get a new last_name and a later updated_at."""
    with conn.cursor() as cur:
        cur.execute(f"""UPDATE contact SET last_name = coalesce(last_name, '') || ' (changed)',
                          updated_at = timestamptz '2025-06-01 00:00:00+00'
                                       + (id % 3600) * interval '1 second'
                        WHERE {CHANGED_SQL}""")
    conn.commit()


def pg_apply_delete(conn: Any) -> None:
    """Task D's change: 1% of rows leave the source."""
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM contact WHERE {DELETED_SQL}")
    conn.commit()


def pg_restore(conn: Any) -> None:
    """Undo C and D from the pristine copy."""
    with conn.cursor() as cur:
        cur.execute(f"""UPDATE contact c SET last_name = b.last_name, updated_at = b.updated_at
                        FROM contact_base b WHERE c.id = b.id AND c.{CHANGED_SQL}
                          AND (c.last_name, c.updated_at)
                              IS DISTINCT FROM (b.last_name, b.updated_at)""")
        cur.execute(f"""INSERT INTO contact SELECT * FROM contact_base b WHERE b.{DELETED_SQL}
                        ON CONFLICT DO NOTHING""")
    conn.commit()
    pg_vacuum(conn)


def pg_count(conn: Any, sql: str) -> int:
    with conn.cursor() as cur:
        cur.execute(sql)
        (n,) = cur.fetchone()
    conn.commit()
    return int(n)


# -- SQLite ----------------------------------------------------------------------------------
SQLITE_SOURCE_DDL = """
CREATE TABLE contact (
    id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, first_name TEXT, last_name TEXT,
    status TEXT NOT NULL, notes TEXT, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL
);
"""


def sqlite_generate(path: Path, n: int) -> None:
    """Create and fill `contact` in the SQLite file (the file may hold `account` too)."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("DROP TABLE IF EXISTS contact")
    con.executescript(SQLITE_SOURCE_DDL)
    with con:
        con.executemany("INSERT INTO contact VALUES (?,?,?,?,?,?,?,?)", rows(n))
    con.execute("CREATE INDEX contact_updated_at_id ON contact (updated_at, id)")
    con.execute("ANALYZE")
    con.commit()
    con.close()


# ============================================================================================
# The wide table: every common column type
# ============================================================================================
#: (column, PostgreSQL type, SQLite type) of the source table `account`, in order
WIDE_SOURCE = (
    ("id", "bigint NOT NULL", "INTEGER PRIMARY KEY"),
    ("qty", "integer", "INTEGER"),
    ("seats", "smallint", "SMALLINT"),
    ("balance", "numeric(12,2)", "NUMERIC(12,2)"),
    ("rate", "numeric(20,6)", "NUMERIC(20,6)"),
    ("score", "double precision", "REAL"),
    ("is_vip", "boolean", "BOOLEAN"),
    ("note", "text", "TEXT"),
    ("status", "text NOT NULL", "TEXT NOT NULL"),
    ("tier", "text", "TEXT"),
    ("opened_at", "timestamptz NOT NULL", "DATETIME NOT NULL"),
    ("last_login", "timestamp", "DATETIME"),
    ("birthday", "date", "DATE"),
    ("alarm", "time", "TIME"),
    ("term", "interval", "TEXT"),
    ("attrs", "jsonb", "JSON"),
    ("ext_id", "uuid NOT NULL", "TEXT NOT NULL"),
    ("avatar", "bytea", "BLOB"),
    ("memo", "text", "TEXT"),
    ("updated_at", "timestamptz NOT NULL", "DATETIME NOT NULL"),
)
WIDE_FILTER_SQL = "status = 'open'"
#: MONTHS_SHARE of the rows have an interval with months (`1 mon 3 days`), which a Python
#: timedelta cannot hold; the rest days and a time of day (bench/run --interval-months)
MONTHS_SHARE = 0.1
TIERS = ["gold", "silver", "bronze"]
PLANS = ["free", "team", "business", "enterprise"]
NOTES = ["call back", "VIP since 2019", "prefers e-mail", "Zahlung per Überweisung",
         "tab\there", "two\nlines", "back\\slash", "quote \" and ' both", "emoji 🎉",
         "comma, and; semicolon", "   padded   ", ""]


def _interval_text(rng: random.Random) -> str:
    """An interval in PostgreSQL's own output style (so SQLite's TEXT holds the same)."""
    parts = []
    # both always drawn, so the other columns are the same rows whatever the share
    with_months, mons = rng.random() < MONTHS_SHARE, rng.randint(1, 30)
    if with_months:
        parts.append(f"{mons} mon{'s' if mons > 1 else ''}")
    days = rng.choice([0, 0, 1, 2, 7, 30, 90, 365])
    if days:
        parts.append(f"{days} day{'s' if days > 1 else ''}")
    secs = rng.choice([0, rng.randrange(86400)])
    if secs or not parts:
        parts.append(f"{secs // 3600:02}:{secs // 60 % 60:02}:{secs % 60:02}")
    return " ".join(parts)


def wide_rows(n: int, seed: int = 20240602) -> Iterator[tuple[Any, ...]]:
    """The rows of `account` as Python values, in WIDE_SOURCE's order."""
    rng = random.Random(seed)
    span = int((datetime(2024, 1, 1) - T0).total_seconds())
    for i in range(1, n + 1):
        r = rng.random()
        status = "open" if r < 0.8 else ("closed" if r < 0.9 else "frozen")
        qty = None if rng.random() < 0.05 else rng.randint(-1_000_000, 1_000_000)
        seats = rng.choice([-32768, 32767, 0]) if rng.random() < 0.01 else rng.randint(0, 500)
        balance = (None if rng.random() < 0.03
                   else Decimal(rng.randint(-10**9, 10**9)).scaleb(-2))
        rate = Decimal(rng.randint(-10**13, 10**13)).scaleb(-6)
        s = rng.random()
        score: float | None = (None if s < 0.03 else math.nan if s < 0.04 else math.inf
                               if s < 0.045 else -math.inf if s < 0.05
                               else rng.uniform(-1e6, 1e6))
        v = rng.random()
        is_vip = None if v < 0.1 else v < 0.3
        note = None if rng.random() < 0.2 else rng.choice(NOTES) + f" #{i}"
        tier = None if rng.random() < 0.05 else rng.choice(TIERS)
        opened = (T0 + timedelta(seconds=rng.randrange(span))).replace(tzinfo=UTC)
        if rng.random() < 0.5:
            opened = opened.replace(microsecond=rng.randrange(1, 1_000_000))
        last_login = (None if rng.random() < 0.1 else
                      (opened + timedelta(seconds=rng.randrange(86400 * 400),
                                          microseconds=rng.randrange(1_000_000))
                       ).replace(tzinfo=None))
        birthday = (None if rng.random() < 0.05 else
                    date(1930, 1, 1) + timedelta(days=rng.randrange(80 * 365)))
        alarm = dtime(rng.randrange(24), rng.randrange(60), rng.randrange(60),
                      rng.randrange(1_000_000) if rng.random() < 0.3 else 0)
        term = None if rng.random() < 0.05 else _interval_text(rng)
        a = rng.random()
        attrs: Any = (None if a < 0.05 else [rng.randint(0, 9) for _ in range(3)] if a < 0.07
                      else {"plan": rng.choice(PLANS), "seats": rng.randint(1, 500),
                            "ratio": round(rng.random(), 4), "tags": rng.sample(WORDS, 2),
                            "owner": {"name": rng.choice(FIRST), "since": 2000 + i % 24},
                            "flag": None if a < 0.5 else a < 0.75})
        ext_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        avatar = None if rng.random() < 0.1 else rng.randbytes(rng.randint(0, 24))
        memo = " ".join(rng.choices(WORDS, k=rng.randint(3, 15)))
        updated = (opened + timedelta(seconds=rng.randrange(365 * 86400))).replace(
            microsecond=0)
        yield (i, qty, seats, balance, rate, score, is_vip, note, status, tier, opened,
               last_login, birthday, alarm, term, attrs, ext_id, avatar, memo, updated)


def _pg_text(v: Any) -> str:
    """A value in COPY's text format."""
    if v is None:
        return "\\N"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, float):
        return ("NaN" if math.isnan(v) else "Infinity" if v == math.inf
                else "-Infinity" if v == -math.inf else repr(v))
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, bytes):
        return "\\\\x" + v.hex()
    if isinstance(v, dict | list):
        v = json.dumps(v, ensure_ascii=False)
    return str(v).translate(_COPY_ESCAPES)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def pg_generate_wide(conn: Any, n: int) -> None:
    """Create and fill `account` in the (source) database of `conn`."""
    cols = ",\n    ".join(f"{c} {t}" for c, t, _ in WIDE_SOURCE)
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS account;\nCREATE TABLE account (\n    {cols}\n)")
        out = io.StringIO()
        for k, row in enumerate(wide_rows(n), 1):
            out.write("\t".join(_pg_text(v) for v in row))
            out.write("\n")
            if k % 50_000 == 0:
                out.seek(0)
                cur.copy_expert("COPY account FROM STDIN", out)
                out = io.StringIO()
        out.seek(0)
        cur.copy_expert("COPY account FROM STDIN", out)
        cur.execute("ALTER TABLE account ADD PRIMARY KEY (id);"
                    "CREATE INDEX account_updated_at_id ON account (updated_at, id)")
    conn.commit()
    pg_vacuum(conn, "account")


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None  # SQLite has no NaN: it stores NULL (as it would from any client)
    if isinstance(v, Decimal):
        return str(v)  # NUMERIC affinity makes it a number
    if isinstance(v, datetime):
        return v.replace(tzinfo=None).isoformat(sep=" ")  # DATETIME: UTC wall time, no zone
    if isinstance(v, date | dtime):
        return v.isoformat()
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    return v


def sqlite_generate_wide(path: Path, n: int) -> None:
    """Create and fill `account` in the SQLite file (the file may hold `contact` too)."""
    cols = ", ".join(f"{c} {t}" for c, _, t in WIDE_SOURCE)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("DROP TABLE IF EXISTS account")
    con.execute(f"CREATE TABLE account ({cols})")
    marks = ",".join("?" * len(WIDE_SOURCE))
    with con:
        con.executemany(f"INSERT INTO account VALUES ({marks})",
                        (tuple(_sqlite_value(v) for v in row) for row in wide_rows(n)))
    con.execute("CREATE INDEX account_updated_at_id ON account (updated_at, id)")
    con.execute("ANALYZE")
    con.commit()
    con.close()


# -- shapes: what a destination table holds, how it is created, checked and upserted ---------
@dataclass(frozen=True)
class Column:
    name: str                 # the destination column
    pg: str                   # its PostgreSQL type (DDL, and the checksum's normal form)
    sqlite: str = "TEXT"      # its SQLite type
    kind: str = "text"        # how SQLite's values are normalised for the checksum
    expr: str = ""            # PostgreSQL SQL computing it from the source row (default: name)
    sqlite_expr: str = ""     # the same in SQLite
    mapping: Any = None       # the sync's mapping entry (None: a plain rename)

    @property
    def source_sql(self) -> str:
        return self.expr or self.name


@dataclass(frozen=True)
class Shape:
    """A destination table of one sync: its columns, key, source and filter."""

    name: str
    source: str               # source table
    table: str                # destination table
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    filter_sql: str

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def col_list(self) -> str:
        return ", ".join(self.names)

    def pg_ddl(self, qualified: str) -> str:
        cols = ", ".join(f"{c.name} {c.pg}" for c in self.columns)
        return f"CREATE TABLE {qualified} ({cols}, PRIMARY KEY ({', '.join(self.key)}))"

    def sqlite_ddl(self) -> str:
        cols = ", ".join(f"{c.name} {c.sqlite}" for c in self.columns)
        return f"CREATE TABLE {self.table} ({cols}, PRIMARY KEY ({', '.join(self.key)}))"

    def select_sql(self, source: str, dialect: str = "postgresql", typed: bool = False) -> str:
        """SELECT of the destination's columns from the source (the transforms in SQL);
        typed: each cast to its destination type (binary COPY needs exact types)."""
        def one(c: Column) -> str:
            if dialect == "sqlite":
                return f"{c.sqlite_expr or c.source_sql} AS {c.name}"
            expr = c.source_sql
            return f"({expr})::{c.pg} AS {c.name}" if typed else f"{expr} AS {c.name}"
        return (f"SELECT {', '.join(one(c) for c in self.columns)} FROM {source} "
                f"WHERE {self.filter_sql}")

    def upsert_set(self, table: str, distinct: str = "IS DISTINCT FROM") -> str:
        rest = [c for c in self.names if c not in self.key]
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
        return (f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {sets}\n"
                f"WHERE ({', '.join(f'{table}.{c}' for c in rest)})\n"
                f"    {distinct} ({', '.join(f'EXCLUDED.{c}' for c in rest)})")

    def mapping(self) -> Any:
        """The sync's `destination.mapping`: the record form when every column is a plain
        rename, else the list form."""
        if all(c.mapping is None for c in self.columns):
            return {c.source_sql: c.name for c in self.columns}
        return [c.mapping or {"source": c.source_sql, "target": c.name} for c in self.columns]


def _plain(name: str, pg: str, sqlite: str, kind: str) -> Column:
    return Column(name, pg, sqlite, kind)


#: the mapped columns of `account` (status and memo are not mapped), every one a plain rename
WIDE_COLUMNS = (
    _plain("id", "bigint", "INTEGER", "int"),
    _plain("qty", "integer", "INTEGER", "int"),
    _plain("seats", "smallint", "SMALLINT", "int"),
    _plain("balance", "numeric(12,2)", "NUMERIC(12,2)", "numeric:2"),
    _plain("rate", "numeric(20,6)", "NUMERIC(20,6)", "numeric:6"),
    _plain("score", "double precision", "REAL", "real"),
    _plain("is_vip", "boolean", "BOOLEAN", "bool"),
    _plain("note", "text", "TEXT", "text"),
    _plain("tier", "text", "TEXT", "text"),
    _plain("opened_at", "timestamptz", "DATETIME", "ts"),
    _plain("last_login", "timestamp", "DATETIME", "ts"),
    _plain("birthday", "date", "DATE", "date"),
    _plain("alarm", "time", "TIME", "time"),
    _plain("term", "interval", "TEXT", "text"),
    _plain("attrs", "jsonb", "JSON", "json"),
    _plain("ext_id", "uuid", "TEXT", "uuid"),
    _plain("avatar", "bytea", "BLOB", "blob"),
    _plain("updated_at", "timestamptz", "DATETIME", "ts"),
)
WIDE = Shape("wide", "account", "accounts", ("id",), WIDE_COLUMNS, WIDE_FILTER_SQL)

#: the issue's first-load target table: the integer, numeric, boolean, nullable text and
#: timestamptz columns of `account` (the types every dlt configuration loads)
MIXED = Shape("mixed", "account", "accounts_m", ("id",), tuple(
    c for c in WIDE_COLUMNS if c.name in (
        "id", "qty", "seats", "balance", "rate", "is_vip", "note", "tier", "opened_at",
        "updated_at")), WIDE_FILTER_SQL)

_TIER_MAP = {"gold": "G", "silver": "S", "bronze": "B"}
_TIER_SQL = ("CASE tier " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _TIER_MAP.items())
             + " ELSE tier END")
#: the same source with the protocol's column transforms; each column's SQL is what the
#: engine's transform does (cast, map, constant, defaultValue), which the floors run
_W = {c.name: c for c in WIDE_COLUMNS}
WIDE_T_COLUMNS = (
    _W["id"],
    Column("qty", "integer", "INTEGER", "int", "coalesce(qty, 0)",
           mapping={"source": "qty", "target": "qty", "defaultValue": 0}),
    Column("qty_text", "text", "TEXT", "text", "qty::text",
           mapping={"source": "qty", "target": "qty_text",
                    "transform": {"type": "cast", "targetType": "string"}}),
    _W["seats"],
    Column("balance", "numeric(12,2)", "NUMERIC(12,2)", "numeric:2", "balance",
           mapping={"source": "balance", "target": "balance",
                    "transform": {"type": "cast", "targetType": "number"}}),
    _W["rate"],
    # the engine casts a decimal to its shortest text (trailing zeros dropped, as JavaScript's
    # String(number) would): trim_scale
    Column("rate_text", "text", "TEXT", "text", "trim_scale(rate)::text",
           mapping={"source": "rate", "target": "rate_text",
                    "transform": {"type": "cast", "targetType": "string"}}),
    _W["score"],
    _W["is_vip"],
    Column("is_vip_text", "text", "TEXT", "text", "is_vip::text",
           mapping={"source": "is_vip", "target": "is_vip_text",
                    "transform": {"type": "cast", "targetType": "string"}}),
    Column("note", "text", "TEXT", "text", "coalesce(note, '(none)')",
           mapping={"source": "note", "target": "note", "defaultValue": "(none)"}),
    Column("tier", "text", "TEXT", "text", _TIER_SQL,
           mapping={"source": "tier", "target": "tier",
                    "transform": {"type": "map", "mappings": _TIER_MAP}}),
    _W["opened_at"],
    Column("opened_on", "date", "DATE", "date", "(opened_at AT TIME ZONE 'UTC')::date",
           mapping={"source": "opened_at", "target": "opened_on",
                    "transform": {"type": "cast", "targetType": "date"}}),
    _W["last_login"],
    _W["birthday"],
    _W["alarm"],
    _W["term"],
    _W["attrs"],
    _W["ext_id"],
    _W["avatar"],
    Column("source_system", "text", "TEXT", "text", "'bench'",
           mapping={"source": "id", "target": "source_system",
                    "transform": {"type": "constant", "value": "bench"}}),
    _W["updated_at"],
)
WIDE_T = Shape("wide_t", "account", "accounts_t", ("id",), WIDE_T_COLUMNS, WIDE_FILTER_SQL)

CONTACT = Shape("contact", "contact", "contacts", ("email",), (
    _plain("id", "bigint", "INTEGER", "int"),
    _plain("email", "text", "TEXT", "text"),
    _plain("first_name", "text", "TEXT", "text"),
    _plain("last_name", "text", "TEXT", "text"),
    _plain("updated_at", "timestamptz", "DATETIME", "ts"),
), FILTER_SQL)


def pg_shape_checksum(conn: Any, shape: Shape, relation: str | None = None) -> tuple[int, str]:
    """(rows, checksum) of a destination table of `shape` (`relation`, a qualified table), or
    of what the filtered source should give (relation None: the shape's SQL over the source).
    Each value is normalised through its text to the shape's type (`x::text::numeric(12,2)`):
    a numeric(38,9), a text UUID, or a json of other spacing compare equal to the source."""
    cols = ", ".join(f"{c.name}::text::{c.pg}" for c in shape.columns)
    if relation is None:
        relation = f"({shape.select_sql(shape.source)}) AS expected"
    sql = (f"SELECT count(*), coalesce(sum(('x' || substr(md5(ROW({cols})::text), 1, 15))"
           f"::bit(60)::bigint), 0)::text FROM {relation}")
    with conn.cursor() as cur:
        cur.execute("SET timezone = 'UTC'")
        cur.execute(sql)
        count, total = cur.fetchone()
    conn.commit()
    return int(count), str(total)


def _norm(kind: str, v: Any) -> Any:
    """A SQLite value in a normal form for the checksum (what it means, not how stored)."""
    if v is None:
        return None
    if kind == "int":
        return int(v)
    if kind.startswith("numeric:"):
        return str(Decimal(str(v)).quantize(Decimal(1).scaleb(-int(kind[8:]))))
    if kind == "real":
        return repr(float(v))
    if kind == "bool":
        return v.strip().lower() in ("1", "t", "true") if isinstance(v, str) else bool(v)
    if kind == "ts":
        t = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
        if t.tzinfo is not None:
            t = t.astimezone(UTC).replace(tzinfo=None)
        return t.isoformat(sep=" ", timespec="microseconds")
    if kind == "date":
        return date.fromisoformat(str(v)).isoformat()
    if kind == "time":
        return dtime.fromisoformat(str(v)).isoformat(timespec="microseconds")
    if kind == "json":
        return json.dumps(json.loads(v) if isinstance(v, str | bytes) else v, sort_keys=True)
    if kind == "uuid":
        return str(uuid.UUID(bytes=v) if isinstance(v, bytes) else uuid.UUID(str(v)))
    if kind == "blob":
        return bytes(v).hex() if isinstance(v, bytes | memoryview) else f"not bytes: {v!r}"
    return v if isinstance(v, str) else f"{type(v).__name__}: {v!r}"


def sqlite_shape_checksum(path: Path, shape: Shape, source: bool = False) -> tuple[int, str]:
    """pg_shape_checksum's idea on SQLite: each row's values normalised by their kind (in
    Python), md5 of the row's repr, 60-bit prefixes summed. source: the filtered source table
    through the shape's SQL, else the destination table."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    sql = (shape.select_sql(shape.source, "sqlite") if source
           else f"SELECT {shape.col_list} FROM {shape.table}")
    kinds = [c.kind for c in shape.columns]
    total = count = 0
    try:
        for row in con.execute(sql):
            norm = tuple(_norm(k, v) for k, v in zip(kinds, row, strict=True))
            total += int(hashlib.md5(repr(norm).encode()).hexdigest()[:15], 16)
            count += 1
    finally:
        con.close()
    return count, str(total)


def sqlite_create_table(path: Path, shape: Shape) -> None:
    """An empty destination file holding the shape's table."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(shape.sqlite_ddl())
    con.commit()
    con.close()


# -- what differs, when a checksum does ----------------------------------------------------
def _pg_column_values(conn: Any, shape: Shape, relation: str | None,
                      column: Column) -> dict[Any, Any]:
    if relation is None:
        relation = f"({shape.select_sql(shape.source)}) AS expected"
    key = " || '|' || ".join(f"{k}::text" for k in shape.key)
    with conn.cursor() as cur:
        cur.execute("SET timezone = 'UTC'")
        cur.execute(f"SELECT {key}, ({column.name}::text::{column.pg})::text FROM {relation}")
        got = dict(cur.fetchall())
    conn.commit()
    return got


def _first_difference(shape: Shape, column: str, want: dict[Any, Any],
                      got: dict[Any, Any]) -> str:
    differ = [k for k in want if k not in got or got[k] != want[k]]
    extra = [k for k in got if k not in want]
    if not differ and not extra:
        return ""
    key = ",".join(shape.key)
    if differ:
        k = min(differ, key=lambda v: (len(str(v)), str(v)))
        return (f"{column}: {len(differ):,} rows differ, e.g. {key}={k}: expected "
                f"{str(want[k])[:60]!r}, got {str(got.get(k, '<no row>'))[:60]!r}")
    return f"{column}: {len(extra):,} rows not expected"


def pg_diff(expected_conn: Any, dest_conn: Any, shape: Shape, relation: str) -> str:
    """The columns whose values differ between the expected rows and a destination, each
    with its first differing row (for a failed run's reason)."""
    out = []
    for column in shape.columns:
        try:
            want = _pg_column_values(expected_conn, shape, None, column)
            got = _pg_column_values(dest_conn, shape, relation, column)
        except Exception as exc:
            dest_conn.rollback()
            out.append(f"{column.name}: unreadable ({str(exc).splitlines()[0]})")
            continue
        found = _first_difference(shape, column.name, want, got)
        if found:
            out.append(found)
    return "; ".join(out)


def sqlite_diff(source: Path, dest: Path, shape: Shape) -> str:
    """sqlite_shape_checksum's rows, column by column: what differs (normalised values)."""
    def values(path: Path, sql: str) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    want_rows = values(source, shape.select_sql(shape.source, "sqlite"))
    got_rows = values(dest, f"SELECT {shape.col_list} FROM {shape.table}")
    keys = [shape.names.index(k) for k in shape.key]
    out = []
    for i, column in enumerate(shape.columns):
        def norm(rows: list[tuple[Any, ...]], i: int = i, kind: str = column.kind) -> dict:
            res = {}
            for r in rows:
                try:
                    v = _norm(kind, r[i])
                except Exception as exc:
                    v = f"unreadable {r[i]!r}: {exc}"
                res["|".join(str(r[k]) for k in keys)] = v
            return res
        found = _first_difference(shape, column.name, norm(want_rows), norm(got_rows))
        if found:
            out.append(found)
    return "; ".join(out)
