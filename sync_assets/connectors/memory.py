"""The in-memory connector: record sets held in this process, and the worked example of
writing a connector (README, "Writing a connector").

It is deliberately *not* a database: no transactions, no filter pushdown, no shards, a small
maximum batch size and no native idempotent insert, so every fallback of the engine is
exercised by it: filters evaluated in Python, state in the project's state database written
around each acknowledged write, batches split to the connector's size. It can also refuse
records (like an API's validation) and fail transiently (like a 429), for tests.

    connectors:
      scratch: {type: memory, store: demo}      # externalResource names a record set
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import Field

from .. import filters as objectql
from .base import (
    CURSOR_COLUMN,
    Capabilities,
    ConnectorError,
    Description,
    Endpoint,
    FieldInfo,
    Operation,
    ReadRequest,
    Record,
    Refusal,
    TransientError,
    WriteResult,
)
from .settings import ConnectorSettingsBase

#: (record) -> (code, message) when the system refuses it, else None
Refuser = Callable[[Record], tuple[str, str] | None]


@dataclass
class RecordSet:
    """One record set: its fields (name -> portable kind), key and records by key."""

    fields: dict[str, str]
    key: tuple[str, ...]
    rows: dict[tuple[Any, ...], Record] = field(default_factory=dict)
    read_only: frozenset[str] = frozenset()
    refuse: Refuser | None = None
    #: the next write calls that fail transiently, each with its Retry-After (seconds)
    faults: list[float | None] = field(default_factory=list)
    calls: int = 0
    #: records deleted by `MemoryStore.delete`, as they were with their deletion's changes
    tombstones: list[Record] = field(default_factory=list)
    #: the oldest change value whose deletes are still reported (None: every one kept)
    tombstones_from: Any = None


class MemoryStore:
    """Named record sets, shared by every endpoint of the store in this process."""

    def __init__(self) -> None:
        self.sets: dict[str, RecordSet] = {}
        self.lock = threading.RLock()

    def define(self, name: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Record] = (), **options: Any) -> RecordSet:
        record_set = RecordSet(dict(fields), tuple(key), **options)
        for row in rows:
            record_set.rows[tuple(row[k] for k in key)] = {f: row.get(f) for f in fields}
        with self.lock:
            self.sets[name] = record_set
        return record_set

    def delete(self, name: str, key: Sequence[Any], **changes: Any) -> None:
        """A user's delete in the system: the record removed, and kept as a tombstone with
        `changes` applied (its deletion's change time, say) for `read_deletes`."""
        with self.lock:
            record_set = self.sets[name]
            gone = record_set.rows.pop(tuple(key))
            record_set.tombstones.append({**gone, **changes})

    def purge_tombstones(self, name: str, before: Any, cursor_field: str) -> None:
        """Forget the deletes older than `before`, as systems do after a while."""
        with self.lock:
            record_set = self.sets[name]
            record_set.tombstones = [t for t in record_set.tombstones
                                     if t.get(cursor_field) is not None
                                     and t[cursor_field] >= before]
            record_set.tombstones_from = before

    def records(self, name: str) -> list[Record]:
        """The records of a set, in key order (for tests and users' checks)."""
        with self.lock:
            rows = self.sets[name].rows
            return [dict(rows[k]) for k in sorted(rows, key=_sortable)]


_STORES: dict[str, MemoryStore] = {}
_STORES_LOCK = threading.Lock()


def store(name: str) -> MemoryStore:
    """The process's store of this name (created empty on first use)."""
    with _STORES_LOCK:
        return _STORES.setdefault(name, MemoryStore())


def drop_store(name: str) -> None:
    with _STORES_LOCK:
        _STORES.pop(name, None)


def _sortable(values: Any) -> Any:
    """A sort key that orders None first and never compares a None with a value."""
    if isinstance(values, tuple):
        return tuple(_sortable(v) for v in values)
    return (values is not None, values if values is not None else 0)


class MemorySettings(ConnectorSettingsBase):
    """`type: memory`: record sets of the named in-process store."""

    type: Literal["memory"]
    store: str = Field(default="default", min_length=1)
    #: reads in the requested order within the cursor bounds (False: as stored, whole)
    ordered_reads: bool = Field(default=True, alias="orderedReads")
    #: answers the largest cursor value (False: cannot tell, as some APIs)
    high_water_marks: bool = Field(default=True, alias="highWaterMarks")
    #: reports the records deleted since a cursor value (`MemoryStore.delete`'s tombstones)
    reports_deletes: bool = Field(default=False, alias="reportsDeletes")


class MemoryTable(Endpoint):
    """One record set of a MemoryStore."""

    capabilities = Capabilities(
        transactional=False, filter_pushdown=False, ordered_reads=True, shards=False,
        native_upsert=True, max_batch_size=50, hosts_state=False, creates_resource=True,
        concurrent_writers=1, idempotent_inserts=False,
    )

    def __init__(self, store: MemoryStore, name: str, display: str | None = None, *,
                 ordered_reads: bool = True, high_water_marks: bool = True,
                 reports_deletes: bool = False) -> None:
        self.store = store
        self.name = name
        self.display = display or f"memory.{name}"
        self.high_water_marks = high_water_marks
        self.reports_deletes = reports_deletes
        if not ordered_reads:
            self.capabilities = replace(MemoryTable.capabilities, ordered_reads=False)

    def _set(self) -> RecordSet:
        found = self.store.sets.get(self.name)
        if found is None:
            raise ConnectorError(f"{self.display} does not exist")
        return found

    # -- describe ---------------------------------------------------------------------------
    def describe(self, *, refresh: bool = False) -> Description:
        found = self.store.sets.get(self.name)
        if found is None:
            return Description(fields={}, exists=False)
        return Description(
            fields={n: FieldInfo(n, None, n not in found.key, kind,
                                 read_only=n in found.read_only)
                    for n, kind in found.fields.items()},
            primary_key=found.key,
        )

    # -- read -------------------------------------------------------------------------------
    def _selected(self, request: ReadRequest) -> list[Record]:
        with self.store.lock:
            rows = [dict(r) for r in self._set().rows.values()]
        ctf = request.cursor_field
        if request.filter is not None:  # no pushdown promised; applied anyway where cheap
            rows = [r for r in rows if objectql.evaluate_filter(request.filter, r)]
        if request.null_cursor is not None:
            rows = [r for r in rows if r.get(request.null_cursor) is None]
        if ctf is not None:
            rows = [r for r in rows if r.get(ctf) is not None
                    and (request.lower is None or r[ctf] >= request.lower)
                    and (request.upper is None or r[ctf] <= request.upper)]
        return rows

    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        if not self.capabilities.ordered_reads:  # as stored, bounds and order not applied
            with self.store.lock:
                rows = [dict(r) for r in self._set().rows.values()]
            yield from self._pages(rows, request)
            return
        rows = self._selected(request)
        order = list(request.order_by)
        rows.sort(key=lambda r: _sortable(tuple(r.get(c) for c in order)))
        if request.after is not None:
            after = _sortable(tuple(request.after))
            rows = [r for r in rows if _sortable(tuple(r.get(c) for c in order)) > after]
        yield from self._pages(rows, request)

    @staticmethod
    def _pages(rows: list[Record], request: ReadRequest) -> Iterator[list[Record]]:
        for start in range(0, len(rows), request.batch_size):
            page = []
            for r in rows[start : start + request.batch_size]:
                out = {c: r.get(c) for c in request.columns}
                if request.cursor_field is not None:
                    out[CURSOR_COLUMN] = r.get(request.cursor_field)
                page.append(out)
            yield page

    def read_deletes(self, request: ReadRequest) -> Iterator[list[Record]] | None:
        ctf = request.cursor_field
        if not self.reports_deletes or ctf is None:
            return None
        with self.store.lock:
            record_set = self._set()
            kept_from = record_set.tombstones_from
            if kept_from is not None and (request.lower is None or request.lower < kept_from):
                return None  # some of the deletes asked for are forgotten
            rows = [dict(t) for t in record_set.tombstones if t.get(ctf) is not None
                    and (request.lower is None or t[ctf] >= request.lower)]
        rows.sort(key=lambda r: _sortable(tuple(r.get(c) for c in request.order_by)))
        return self._pages(rows, request)

    def high_water_mark(self, cursor_field: str, request: ReadRequest) -> Any:
        if not self.high_water_marks:
            return None
        values = [r[cursor_field] for r in self._selected(request)]
        return max(values) if values else None

    def lookup(self, tx: Any, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        wanted = set(keys)
        wanted_columns = list(dict.fromkeys([*key, *columns]))
        with self.store.lock:
            rows = list(self._set().rows.values())
        return [{c: r.get(c) for c in wanted_columns} for r in rows
                if tuple(r.get(k) for k in key) in wanted]

    # -- write ------------------------------------------------------------------------------
    def create(self, tx: Any, fields: Sequence[FieldInfo], key: Sequence[str]) -> None:
        self.store.define(self.name, {f.name: f.kind for f in fields}, key)

    def write(self, tx: Any, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        record_set = self._set()
        max_size = self.capabilities.max_batch_size
        if max_size is not None and len(rows) > max_size:
            raise ConnectorError(f"{self.display} takes at most {max_size} records a call "
                                 f"(got {len(rows)})")
        with self.store.lock:
            record_set.calls += 1
            if record_set.faults:
                raise TransientError(f"{self.display} is busy (try again)",
                                     retry_after=record_set.faults.pop(0))
            result = WriteResult()
            for i, row in enumerate(rows):
                refused = record_set.refuse(row) if record_set.refuse else None
                if refused is not None:
                    result.refused.append(Refusal(i, *refused))
                    continue
                result.written += self._apply(record_set, operation, key, row)
        return result

    def _apply(self, record_set: RecordSet, operation: Operation, key: Sequence[str],
               row: Record) -> int:
        values = {f: v for f, v in row.items() if f in record_set.fields
                  and f not in record_set.read_only}
        match = [k for k, r in record_set.rows.items()
                 if all(r.get(f) == row.get(f) for f in key)]
        if operation == "delete":
            for k in match:
                del record_set.rows[k]
            return len(match)
        if match and operation in ("update", "upsert"):
            for k in match:
                record_set.rows[k].update(values)
            return 1
        if not match and operation in ("insert", "upsert"):
            new = {f: values.get(f) for f in record_set.fields}
            record_set.rows[tuple(new.get(k) for k in record_set.key)] = new
            return 1
        return 0

    def count(self) -> int | None:
        found = self.store.sets.get(self.name)
        return None if found is None else len(found.rows)

    def change_token(self, filter: Any, cursor_field: str | None) -> Any:
        request = ReadRequest(columns=[], order_by=[], batch_size=1, filter=filter)
        rows = self._selected(request)
        return [len(rows), max((r.get(cursor_field) for r in rows if cursor_field
                                and r.get(cursor_field) is not None), default=None)]


def open_memory(settings: MemorySettings, resource: str, display: str) -> MemoryTable:
    return MemoryTable(store(settings.store), resource, display,
                       ordered_reads=settings.ordered_reads,
                       high_water_marks=settings.high_water_marks,
                       reports_deletes=settings.reports_deletes)
