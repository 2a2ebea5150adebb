"""The systems the contract suite runs over, each behind the same small test interface.

A peer makes record sets with given fields, key and rows, reads them back in key order, can
be told to refuse records (a CHECK constraint on SQL, a validation rule in memory) and to fail
its next writes transiently (on SQL a driver error injected before the statement, as a lost
connection or a locked database raises; in memory a 429-like fault with Retry-After).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from sync_assets.connectors import memory
from sync_assets.connectors.sql import get_engine

#: the fields the suite compares: what every peer holds of a person
FIELDS = ("email", "name", "score")

_SA_TYPES = {"integer": sa.Integer, "text": sa.Text, "datetime": sa.DateTime,
             "float": sa.Float, "boolean": sa.Boolean, "date": sa.Date}


class SqlPeer:
    transactional = True
    people = "people"  # the record set the contract suite writes and reads

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def settings(self) -> dict[str, Any]:
        return {"type": "sql", "url": self.url}

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        checks = ([sa.CheckConstraint(f'"{refuse_negative}" >= 0', name="no_negative")]
                  if refuse_negative else [])
        table = sa.Table(resource, sa.MetaData(),
                         *[sa.Column(n, _SA_TYPES[k](), primary_key=n in key)
                           for n, k in fields.items()], *checks)
        engine = sa.create_engine(self.url)
        with engine.begin() as conn:
            table.create(conn)
            if rows:
                conn.execute(table.insert(), [dict(r) for r in rows])
        engine.dispose()

    def rows(self, resource: str, fields: Sequence[str] = FIELDS, key: str = "email"
             ) -> list[dict[str, Any]]:
        engine = sa.create_engine(self.url)
        try:
            table = sa.Table(resource, sa.MetaData(), autoload_with=engine)
            with engine.connect() as conn:
                return [dict(r) for r in conn.execute(
                    sa.select(*[table.c[f] for f in fields]).order_by(table.c[key])
                ).mappings()]
        finally:
            engine.dispose()

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        engine = sa.create_engine(self.url)
        table = sa.Table(resource, sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(table.update().where(*[table.c[k] == v for k, v in key.items()])
                         .values(dict(values)))
        engine.dispose()

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        """The next `count` writing statements fail as a locked database or a dropped
        connection does (the driver's own exception class)."""
        engine = get_engine(self.url)
        left = [count]
        dialect = engine.dialect.name

        def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            verb = statement.lstrip().split(None, 1)[0].upper()
            if left[0] > 0 and verb in ("INSERT", "UPDATE", "DELETE", "COPY"):
                left[0] -= 1
                error = Exception("database is locked" if dialect == "sqlite"
                                  else "server closed the connection unexpectedly")
                raise sa.exc.OperationalError(statement, None, error)

        sa.event.listen(engine, "before_cursor_execute", fail)
        try:
            yield
        finally:
            sa.event.remove(engine, "before_cursor_execute", fail)


class MemoryPeer:
    transactional = False
    people = "people"

    def __init__(self, store_name: str) -> None:
        self.name = "memory"
        self.store_name = store_name
        self.store = memory.store(store_name)

    def settings(self) -> dict[str, Any]:
        return {"type": "memory", "store": self.store_name}

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        refuse = None
        if refuse_negative:
            def refuse(row: dict[str, Any], f: str = refuse_negative) -> tuple[str, str] | None:
                value = row.get(f)
                if value is not None and value < 0:
                    return "VALIDATION_FAILED", f"{f} must be at least 0"
                return None
        self.store.define(resource, fields, key, rows, refuse=refuse)

    def rows(self, resource: str, fields: Sequence[str] = FIELDS, key: str = "email"
             ) -> list[dict[str, Any]]:
        return sorted(({f: r.get(f) for f in fields} for r in self.store.records(resource)),
                      key=lambda r: r[key])

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        for row in self.store.sets[resource].rows.values():
            if all(row.get(k) == v for k, v in key.items()):
                row.update(values)

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        """The next `count` write calls to each record set answer "busy, retry after"."""
        for record_set in self.store.sets.values():
            record_set.faults = [retry_after] * count
        try:
            yield
        finally:
            for record_set in self.store.sets.values():
                record_set.faults = []
