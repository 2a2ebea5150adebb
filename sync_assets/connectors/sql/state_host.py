"""A SQL database as the home of sync state (the state tables of sync_assets.state)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from .table import SqlTransaction, get_engine, safe_url


class SqlStateHost:
    """A SQL database that holds state tables; `transaction()` yields its Connection."""

    def __init__(self, url: str, schema: str | None = None, *, engine: Any = None) -> None:
        self.url = url
        self.schema = schema
        self.engine = engine if engine is not None else get_engine(url)

    @property
    def display(self) -> str:
        """Where the state lives, as it may be shown (credentials hidden)."""
        return safe_url(self.url)

    def transaction(self, *, rollback: bool = False) -> SqlTransaction:
        return SqlTransaction(self.engine, self.url, rollback=rollback)

    def same_database(self, other: Any) -> bool:
        return isinstance(other, SqlStateHost) and other.engine.url == self.engine.url

    @contextmanager
    def _mysql_lock(self, name: str, timeout: float) -> Iterator[bool]:
        """MySQL's named lock (GET_LOCK), held by a connection of its own; names are at most
        64 characters, so the sync's name is hashed."""
        key = "sync_assets:" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()
        with self.engine.connect() as conn:
            got = conn.execute(sa.text("SELECT GET_LOCK(:k, :t)"),
                               {"k": key, "t": max(0, round(timeout))}).scalar()
            conn.commit()
            if got != 1:
                yield False
                return
            try:
                yield True
            finally:
                with contextlib.suppress(sa.exc.DBAPIError):
                    conn.execute(sa.text("SELECT RELEASE_LOCK(:k)"), {"k": key})
                    conn.commit()

    @contextmanager
    def lock(self, name: str, timeout: float) -> Iterator[bool]:
        """Hold the lock of one sync's state for the block: yields False when another run
        still held it after `timeout` seconds. PostgreSQL: a session advisory lock on a
        connection of its own; MySQL: GET_LOCK; SQLite: an exclusive file lock beside the
        database file; elsewhere (DuckDB, whose file one process opens at a time, or an
        in-memory SQLite) no lock."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            with self.engine.connect() as conn:
                key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(),
                                     "big", signed=True)
                deadline = time.monotonic() + timeout
                while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"),
                                       {"k": key}).scalar():
                    conn.rollback()
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.2)
                conn.commit()
                try:
                    yield True
                finally:
                    # a lost connection took its session's lock with it: nothing to undo
                    with contextlib.suppress(sa.exc.DBAPIError):
                        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
            return
        if dialect in ("mysql", "mariadb"):
            with self._mysql_lock(name, timeout) as held:
                yield held
            return
        database = self.engine.url.database if dialect == "sqlite" else None
        if not database or database == ":memory:":
            yield True
            return
        digest = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
        path = f"{database}.sync-{digest}.lock"
        with open(path, "a+b") as handle:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.2)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
