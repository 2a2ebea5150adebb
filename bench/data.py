"""The benchmark's data set, its changes, and the checks of every destination's content.

One deterministic generator (seeded) feeds both PostgreSQL and SQLite, so both hold the same
rows. The source table `contact`:

    id bigint PK | email text UNIQUE | first_name | last_name (2% NULL) | status | notes
    | created_at | updated_at (indexed with id: the incremental read order)

About 80% of the rows have status = 'active' (the sync's filter). Five columns are mapped
(id, email, first_name, last_name, updated_at); status, notes and created_at are not.

Changes between tasks (the same rows every time, so every repeat does the same work):
  C: 1% of rows (id % 100 = 7) get a new last_name and a later updated_at;
  D: 1% of rows (id % 100 = 13) are deleted.
Before each repeat the source is restored from `contact_base` (a pristine copy).

A destination is right when its row count and an order-independent checksum of its mapped
columns (sum of 60-bit prefixes of each row's md5) equal those of the filtered source.
"""

from __future__ import annotations

import hashlib
import io
import random
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
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

#: the destination table of the engine, the floors and pandas (dlt creates its own)
PG_DEST_DDL = """
CREATE TABLE {schema}.contacts (
    id bigint, email text PRIMARY KEY, first_name text, last_name text, updated_at timestamptz
)"""

PG_CHECKSUM = """
SELECT count(*), coalesce(sum(('x' || substr(md5(ROW(
    id::bigint, email::text, first_name::text, last_name::text, updated_at::timestamptz
)::text), 1, 15))::bit(60)::bigint), 0)::text
FROM {table} {where}"""


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


def pg_vacuum(conn: Any) -> None:
    old = conn.autocommit
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE contact")
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


def pg_checksum(conn: Any, table: str, where: str = "") -> tuple[int, str]:
    with conn.cursor() as cur:
        cur.execute("SET timezone = 'UTC'")
        cur.execute(PG_CHECKSUM.format(table=table, where=f"WHERE {where}" if where else ""))
        count, total = cur.fetchone()
    conn.commit()
    return int(count), str(total)


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
SQLITE_DEST_DDL = """
CREATE TABLE contacts (
    id INTEGER, email TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, updated_at DATETIME
)"""


def sqlite_generate(path: Path, n: int) -> None:
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(SQLITE_SOURCE_DDL)
    with con:
        con.executemany("INSERT INTO contact VALUES (?,?,?,?,?,?,?,?)", rows(n))
    con.execute("CREATE INDEX contact_updated_at_id ON contact (updated_at, id)")
    con.execute("ANALYZE")
    con.commit()
    con.close()


def sqlite_create_dest(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(SQLITE_DEST_DDL)
    con.commit()
    con.close()


def sqlite_checksum(path: Path, table: str, where: str = "") -> tuple[int, str]:
    """The same idea as pg_checksum; timestamps normalised by strftime (SQLAlchemy writes
    microseconds, the generator did not)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    total = 0
    count = 0
    sql = (f"SELECT id, email, first_name, last_name, strftime('%Y-%m-%d %H:%M:%f', updated_at) "
           f"FROM {table} {'WHERE ' + where if where else ''}")
    for row in con.execute(sql):
        digest = hashlib.md5(repr(tuple(row)).encode()).hexdigest()
        total += int(digest[:15], 16)
        count += 1
    con.close()
    return count, str(total)
