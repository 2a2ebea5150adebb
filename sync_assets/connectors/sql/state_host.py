"""A SQL database as the home of sync state (the state tables of sync_assets.state)."""

from __future__ import annotations

from typing import Any

from .table import SqlTransaction, get_engine


class SqlStateHost:
    """A SQL database that holds state tables; `transaction()` yields its Connection."""

    def __init__(self, url: str, schema: str | None = None, *, engine: Any = None) -> None:
        self.url = url
        self.schema = schema
        self.engine = engine if engine is not None else get_engine(url)

    def transaction(self, *, rollback: bool = False) -> SqlTransaction:
        return SqlTransaction(self.engine, self.url, rollback=rollback)

    def same_database(self, other: Any) -> bool:
        return isinstance(other, SqlStateHost) and other.engine.url == self.engine.url
