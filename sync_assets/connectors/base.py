"""The connector interface: describe a record set, read it in batches, write batches.

An endpoint is one record set (a table, an ObjectStack object, an API resource). Reads are
keyset-paginated (each batch a fresh query after the last key) so memory stays flat and no
long read transaction blocks writers. Writes happen inside a transaction the engine owns, so
the sync state commits with the data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..filters import FilterNode

Record = dict[str, Any]


class ConnectorError(Exception):
    """An expected failure talking to a system: unreachable, refused, missing table.

    Its message is shown to users as is: it must never carry a secret.
    """


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: Any  # a SQLAlchemy type
    nullable: bool = True


@dataclass(frozen=True)
class Description:
    fields: Mapping[str, FieldInfo]
    primary_key: tuple[str, ...] = ()
    exists: bool = True


@dataclass(frozen=True)
class ReadRequest:
    """What to read: columns, filter, order, and where the previous batch stopped."""

    columns: Sequence[str]
    order_by: Sequence[str]
    batch_size: int
    filter: FilterNode | None = None
    # Incremental reads: rows with cursor_field >= lower (inclusive: boundary-safe) and
    # <= upper (the high-water mark taken when the run started).
    cursor_field: str | None = None
    lower: Any = None
    upper: Any = None
    after: tuple[Any, ...] | None = None  # keyset position (values of order_by)
    # Only rows whose value in this column is NULL (records a cursor cannot order).
    null_cursor: str | None = None
    # Only the records of one shard: (columns hashed, shard index, shard count)
    shard: tuple[tuple[str, ...], int, int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class WriteOutcome:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    # (index in the batch, message) for rows the destination refused
    refused: list[tuple[int, str]] = field(default_factory=list)
    # key -> (before, after) of changed rows, for the change log
    changes: list[tuple[str, str, Any, Any]] = field(default_factory=list)
    created_keys: set[str] = field(default_factory=set)


class Endpoint(ABC):
    """One record set of one system."""

    display: str

    @abstractmethod
    def describe(self) -> Description: ...

    @abstractmethod
    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        """Batches in `order_by` order; each record also carries its cursor value."""

    @abstractmethod
    def high_water_mark(self, cursor_field: str, request: ReadRequest) -> Any:
        """The largest cursor value now, or None for an empty set."""
