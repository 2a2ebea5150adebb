"""The connector contract: everything the engine knows of a system.

An endpoint is one record set of one system (a table, an ObjectStack object, an API resource).
The engine asks it to describe itself (portable field types, keys, read-only fields), to read
pages after an opaque resume position, to find records by key, and to write batches by match
key inside a transaction where the system has one. What a system cannot do it says in its
`Capabilities`, and the engine supplies the fallback (filters evaluated in Python, a high-water
mark from what was read, shards chosen in Python, state in the project's state database).

Failures come in the kinds the engine acts on: `TransientError` (retried with backoff,
honouring `retry_after`), `BatchRefused` (the system refused the batch: `errorHandling` decides),
per-record refusals in a `WriteResult`, and every other `ConnectorError` (unreachable or
misconfigured: the run fails with its message, never a traceback). No message carries a secret.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..filters import FilterNode

Record = dict[str, Any]

#: Records read with a cursor carry its value under this name (as the system stores it).
CURSOR_COLUMN = "__sync_cursor__"

#: Portable field types: what a value is, whatever system holds it.
FieldKind = Literal["text", "integer", "decimal", "float", "boolean", "date", "datetime",
                    "time", "json", "binary", "uuid", "unknown"]
FIELD_KINDS: tuple[str, ...] = ("text", "integer", "decimal", "float", "boolean", "date",
                                "datetime", "time", "json", "binary", "uuid", "unknown")


def shard_of(count: int, *texts: Any) -> int:
    """Which of `count` shards a record belongs to, from the text of its key values: the
    first 32 bits of the MD5 of the texts joined by U+001F, modulo `count`. Systems with
    `Capabilities.shards` compute the same themselves (PostgreSQL in SQL)."""
    text = "\x1f".join("" if v is None else str(v) for v in texts)
    digest = hashlib.md5(text.encode("utf-8", "surrogatepass"), usedforsecurity=False)
    return int(digest.hexdigest()[:8], 16) % count


# -- errors -------------------------------------------------------------------------------
class ConnectorError(Exception):
    """An expected failure talking to a system: unreachable, misconfigured, missing resource.

    The run fails with this message, shown to users as is: it must never carry a secret.
    """


class TransientError(ConnectorError):
    """Worth trying again: a lost connection, a busy database, HTTP 429 or 5xx, a timeout.
    `retry_after` is the wait the system asked for (seconds), if it named one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class BatchRefused(ConnectorError):
    """The system refused a write as a whole (a value a column cannot take, a constraint):
    nothing of it was written. `errorHandling.onSyncError` decides what happens next."""


@dataclass(frozen=True)
class Refusal:
    """One record of a batch the system refused, with the system's own code and message."""

    index: int
    code: str
    message: str


@dataclass
class WriteResult:
    """What a batch write did. `refused` records were not written; the rest were."""

    written: int = 0
    refused: list[Refusal] = field(default_factory=list)
    #: keys the system gave records it created (e.g. ids), by index in the batch
    created_ids: dict[int, Any] = field(default_factory=dict)


@dataclass
class ApiUsage:
    """What a run cost an API-metered system: calls made (retries included), and what the
    system said of its limits (a daily allowance left, say), for the run's logs."""

    calls: int = 0
    notes: list[str] = field(default_factory=list)


# -- description --------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldInfo:
    name: str
    #: the system's own type (a SQLAlchemy type for SQL), for a destination of the same family
    type: Any = None
    nullable: bool = True
    #: the portable type every connector understands
    kind: str = "unknown"
    #: set by the system (ids, server timestamps): never sent in a write
    read_only: bool = False


@dataclass(frozen=True)
class Description:
    fields: Mapping[str, FieldInfo]
    primary_key: tuple[str, ...] = ()
    exists: bool = True
    #: other field sets each of which holds every combination at most once
    unique_keys: tuple[tuple[str, ...], ...] = ()
    #: for a record set that does not exist: why that only means nothing to read yet (a
    #: glob matching no file), so a run reads nothing and says this, rather than failing
    empty_because: str | None = None

    def is_unique(self, columns: Sequence[str]) -> bool:
        wanted = set(columns)
        return bool(wanted) and (wanted == set(self.primary_key)
                                 or any(wanted == set(u) for u in self.unique_keys))

    @property
    def read_only(self) -> set[str]:
        return {n for n, f in self.fields.items() if f.read_only}


@dataclass(frozen=True)
class Capabilities:
    """What a system can do; where it cannot, the engine supplies the fallback."""

    #: writes inside `transaction()` commit or roll back together
    transactional: bool = False
    #: `ReadRequest.filter` is applied by the system (else the engine evaluates it)
    filter_pushdown: bool = False
    #: reads ordered by a cursor field and bounded by lower/upper (else: full reads)
    ordered_reads: bool = False
    #: `ReadRequest.shard` is applied by the system (else the engine picks records in Python)
    shards: bool = False
    #: `write("upsert", ...)` matches by any key natively (else lookups decide insert/update)
    native_upsert: bool = False
    #: at most this many records per write call (the engine splits larger batches)
    max_batch_size: int | None = None
    #: calls per second the system allows, if it limits them
    rate_limit: float | None = None
    #: sync state can live in this system's own transactions (`state_host()`)
    hosts_state: bool = False
    #: `create()` makes a missing record set
    creates_resource: bool = False
    #: writers that may work at once (1: one after another)
    concurrent_writers: int = 1
    #: ids or keys the system assigns cannot be chosen, so an insert without a match key
    #: could be repeated after a crash: such inserts are refused unless this is True
    idempotent_inserts: bool = False
    #: `write_arrow` inserts Arrow tables in one go (the engine's bulk first loads)
    arrow_writes: bool = False
    #: `count()` tells how many records the set holds; a write-only API cannot, and the
    #: engine then neither checks drift against it nor reports a row count
    countable: bool = True
    #: between `begin_run` and `end_run`, committed transactions become visible together
    #: when the run ends (a file rewritten once per run, not once per batch): the engine
    #: then saves their records' state only after `end_run(commit=True)`
    publishes_per_run: bool = False


@dataclass(frozen=True)
class ReadRequest:
    """What to read: columns, filter, order, and where the previous page stopped."""

    columns: Sequence[str]
    order_by: Sequence[str]
    batch_size: int
    filter: FilterNode | None = None
    # Incremental reads: rows with cursor_field >= lower (inclusive: boundary-safe) and
    # <= upper (the high-water mark taken when the run started).
    cursor_field: str | None = None
    lower: Any = None
    upper: Any = None
    #: an opaque resume position: what `Endpoint.position` returned for the last page
    after: Any = None
    # Only rows whose value in this column is NULL (records a cursor cannot order).
    null_cursor: str | None = None
    # Only the records of one shard: (columns hashed, shard index, shard count)
    shard: tuple[tuple[str, ...], int, int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


Operation = Literal["insert", "update", "upsert", "delete"]


class Endpoint(ABC):
    """One record set of one system."""

    display: str
    capabilities: Capabilities = Capabilities()

    # -- describe ---------------------------------------------------------------------------
    @abstractmethod
    def describe(self, *, refresh: bool = False) -> Description: ...

    def is_empty(self) -> bool:
        """Whether the record set holds no record (a missing one is empty)."""
        desc = self.describe()
        if not desc.exists:
            return True
        columns = list(desc.fields)[:1]
        request = ReadRequest(columns=columns, order_by=list(desc.primary_key) or columns,
                              batch_size=1)
        return next(iter(self.read_batches(request)), None) is None

    # -- read -------------------------------------------------------------------------------
    @abstractmethod
    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        """Pages in `order_by` order. With `cursor_field`, each record also carries its
        cursor value as CURSOR_COLUMN. A system without `filter_pushdown` may ignore
        `request.filter`; one without `ordered_reads` may ignore the cursor bounds."""

    def high_water_mark(self, cursor_field: str, request: ReadRequest) -> Any:
        """The largest cursor value now (bounding the run), or None: an empty set, or a
        system that cannot tell, which is then read to its end in cursor order and whose
        cursor follows the pages read."""
        return None

    @abstractmethod
    def lookup(self, tx: Any, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        """Records whose `key` fields hold one of `keys`, with the key and `columns`."""

    def lookup_table(self, table: str, key_field: str, value_field: str) -> dict[Any, Any]:
        """A whole key -> value table of this system (for `lookup` transforms)."""
        raise ConnectorError(f"{self.display} cannot serve lookup tables")

    def read_arrow(self, request: ReadRequest, keys_only: bool = False) -> Iterator[Any] | None:
        """Pages as Arrow tables where the system has a fast columnar path, else None."""
        return None

    def read_deletes(self, request: ReadRequest) -> Iterator[list[Record]] | None:
        """The records the system reports deleted since `request.lower` (a value of
        `request.cursor_field`, inclusive), with `request.columns` as they were, in pages.
        None where it cannot report every such delete: it keeps no record of them, or
        `lower` is older than what it keeps. A mirror (`operation: sync`) then reads every
        key of the source to find what left it; with deletes reported, an incremental run
        reads only what changed."""
        return None

    # -- write ------------------------------------------------------------------------------
    def transaction(self, *, rollback: bool = False) -> AbstractContextManager[Any]:
        """A unit of writes: committed when the block ends (rolled back on error or when
        `rollback`). Systems without transactions yield a token and write at once."""
        return _NoTransaction()

    @abstractmethod
    def write(self, tx: Any, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        """Write a batch by match key: insert new records, update or upsert by `key`, or
        delete (`rows` hold the key fields). Per-record refusals come back in the result;
        a refusal of the whole batch raises BatchRefused, a passing fault TransientError."""

    def create(self, tx: Any, fields: Sequence[FieldInfo], key: Sequence[str]) -> None:
        """Create the missing record set with these fields; `key` identifies records."""
        raise ConnectorError(f"{self.display} does not exist and cannot be created here: "
                             "create it first")

    def write_arrow(self, tx: Any, data: Any) -> bool:
        """Insert an Arrow table in one go where the system can; False: use `write`."""
        return False

    def differing(self, tx: Any, key: Sequence[str], data: Any) -> list[int] | None:
        """The indices of an Arrow table's rows (columns named as this record set's fields)
        that it does not hold as they are: no record with their `key`, or one holding
        another value. None where the system cannot tell set-based: the engine then looks
        the records up and compares them one by one (a full refresh)."""
        return None

    # -- one run's writes, published together (`publishes_per_run`) --------------------------
    def begin_run(self, run_id: str) -> None:
        """From now on, committed transactions are kept for `end_run` instead of published
        one by one. `run_id` names what the run writes (a part file, say)."""
        return None

    def end_run(self, commit: bool) -> None:
        """Publish every transaction committed since `begin_run`, at once (`commit`), or
        drop them all (the run failed: the engine's intent records make the next run write
        them). A failure to publish raises with nothing of the run visible, and keeps the
        run's writes: `end_run(commit=True)` may be tried again, until `end_run(False)`."""
        return None

    # -- single guarded writes (two-way syncs) ------------------------------------------------
    def write_one(self, tx: Any, operation: Operation, key: Sequence[str], row: Record,
                  expected: Mapping[str, Any] | None = None) -> bool:
        """Insert, update or delete one record, only if it still holds `expected` (update,
        delete) or does not exist yet (insert); False when someone changed it meanwhile.
        The default checks by a lookup first: exact where writes are transactional."""
        found = self.lookup(tx, key, [tuple(row[k] for k in key)], list(expected or {}))
        if operation == "insert":
            if found:
                return False
        else:
            if not found:
                return False
            for name, value in (expected or {}).items():
                if found[0].get(name) != value:
                    return False
        result = self.write(tx, operation, key, [row])
        if result.refused:
            raise BatchRefused(result.refused[0].message)
        return True

    # -- state --------------------------------------------------------------------------------
    def state_host(self) -> Any:
        """Where sync state can commit with this system's writes (`hosts_state`)."""
        raise ConnectorError(f"{self.display} cannot keep sync state")

    # -- orchestration ------------------------------------------------------------------------
    def count(self) -> int | None:
        """Records held now, or None when the record set does not exist."""
        return None

    def change_token(self, filter: FilterNode | None, cursor_field: str | None) -> Any:
        """A value that changes when the records within the filter change."""
        raise ConnectorError(f"{self.display} cannot report changes")

    def usage(self) -> ApiUsage | None:
        """The API calls made through this endpoint since it was opened, for a system that
        meters them (reported as `apiCalls` in the run's logs and Dagster metadata); None
        for one that does not."""
        return None


# -- the plugin side: how a project names a connector --------------------------------------
@dataclass(frozen=True)
class SyncUse:
    """How a sync uses one record set of a connector: the side it is named on, whether the
    sync reads it, writes it or both, and the write's operation and match key."""

    side: Literal["source", "destination"]
    role: Literal["read", "written", "both"]
    operation: str
    match_key: tuple[str, ...]



class ConnectorSettingsBase(BaseModel):
    """Settings of a connector instance: strict (unknown keys are typos), frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ConnectorType:
    """One kind of system a sync can name."""

    name: str
    #: the settings of an instance (its `type` field is this connector's name)
    settings: type[BaseModel]
    #: (settings, externalResource, display name) -> the record set as an Endpoint
    open: Callable[[Any, str, str], Endpoint]
    #: settings -> Dagster kinds (e.g. {"postgres"}), never derived from secrets
    kinds: Callable[[Any], set[str]] = field(default=lambda _settings: set())
    #: one line for error messages and docs
    summary: str = ""
    #: what `externalResource` names, for the error when it is missing
    resource_hint: str = "the record set to use"
    #: whether an `insert` without matchKey (an append) can be exactly-once: only where sync
    #: state commits in the system's own transactions (checked when a project loads)
    appends_exactly_once: bool = False
    #: externalResource -> the asset key's parts after the instance id (a table's
    #: `schema.table` by default; a file path's folders and name, say)
    asset_key: Callable[[str], list[str]] = field(
        default=lambda resource: [p for p in resource.split(".") if p])
    #: why its record sets cannot be described outside a run (an upstream Dagster asset's
    #: output exists only inside one), so `validate --connect` leaves them to the run
    not_live: str | None = None
    #: (settings, use) -> what the system cannot do for that use, as (path, message) pairs
    #: (a write-only API read, an operation its endpoints lack): load-time errors
    check_use: Callable[[Any, SyncUse], list[tuple[tuple[str, ...], str]]] | None = None


class _NoTransaction(AbstractContextManager[None]):
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
