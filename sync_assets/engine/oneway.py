"""One run of a one-way sync (push, pull, or a push of the reversed config): resolving its
endpoints, mapping, keys, shard and state, then reading, deciding, writing and mirroring.

Each batch's rows, their fingerprints and the advanced cursor commit in one destination
transaction where the destination hosts state, so a run killed anywhere resumes without losing
or doubling a record; elsewhere state is written around the destination's acknowledgements.
Unchanged records (same fingerprint of mapped values) are never rewritten. `dry_run` walks the
same path and rolls every transaction back: that is what `plan` shows."""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from ..connectors.base import (
    BatchRefused,
    ConnectorError,
    TransientError,
)
from ..project import Project
from .bulk import BulkLane
from .cel import ExpressionError
from .common import RunBase, RunFailed, RunOptions, open_state
from .deciding import Deciding
from .direction import flows, is_reversed, reversed_config
from .endpoints import open_endpoint
from .mapping import FieldError, RecordMapper, resolve_names
from .mirror import Mirror
from .reading import Reading
from .records import record_key
from .retrying import Retrying
from .validation import RecordValidator
from .writing import Writing


@dataclass(frozen=True)
class Drift:
    """What the state said the destination held against what it held, at a run's start."""

    synced: int  # records the state says this sync wrote there
    held: int | None  # rows the destination holds (None: the table is gone)
    missing: int  # synced records it no longer holds, written again by the run


class SyncRun(Reading, Deciding, Writing, Retrying, BulkLane, Mirror, RunBase):
    """A one-way run: push, pull, or a push of the reversed config."""

    def __init__(self, project: Project, sync_name: str, options: RunOptions | None = None):
        super().__init__(project, sync_name, options)
        self._lock = threading.Lock()
        self.state_name = self.config.name
        self.drift: Drift | None = None  # None: not compared (nothing synced yet)

    def _execute(self) -> None:
        cfg = self.config
        if cfg.direction == "bidirectional":
            raise RunFailed("bidirectional syncs run through TwoWayRun", code="UNSUPPORTED")
        if is_reversed(flows(cfg)[0]):
            # destination -> source: the same machinery, on the mapping read backwards
            side_a = open_endpoint(self.project, cfg.source).describe()
            kinds = {n: f.kind for n, f in side_a.fields.items()} if side_a.exists else None
            self.config = cfg = reversed_config(cfg, kinds)
            self.state_name = f"{cfg.name}__reverse"
            self.result.log("info", "flowing destination -> source (direction "
                                    f"{self.definition.config.direction})")
        self.source = open_endpoint(self.project, cfg.source)
        self.dest = open_endpoint(self.project, cfg.destination)
        sdesc = self.source_desc = self.source.describe()
        if not sdesc.exists and sdesc.empty_because:
            self.result.log("warn", f"{sdesc.empty_because}: nothing to read, nothing written")
            return
        if not sdesc.exists:
            raise ConnectorError(f"source table {self.source.display} does not exist")
        try:
            self.mapper = RecordMapper(
                cfg, sdesc, self.source.lookup_table,
                cache_lookups=cfg.effective_optimization.cacheEnabled,
            )
            self.validator = RecordValidator(cfg, self.mapper.targets)
        except (FieldError, ExpressionError) as exc:
            raise RunFailed(str(exc), code="CONFIG") from None
        self.op = cfg.destination.operation
        self.source_keyless = not sdesc.primary_key
        self.source_id = list(sdesc.primary_key) or self._source_key_fallback()
        ddesc = self.dest.describe()
        self.dest_exists = ddesc.exists
        #: how the destination stores each column, to compare values as it holds them
        self.dest_kinds = {name: f.kind for name, f in ddesc.fields.items()}
        self.mapper.target_kinds = self.dest_kinds
        self.key = self._destination_key(ddesc)
        self.append = self.op == "insert" and not self.key
        if not self.key and self.op != "insert":
            raise RunFailed(
                f"operation '{self.op}' needs destination.matchKey (or a primary key on "
                f"{self.dest.display}) to find the records to change", code="CONFIG",
            )
        if ddesc.exists:
            missing = [t for t in self.mapper.targets if t not in ddesc.fields]
            if missing:
                raise ConnectorError(
                    f"destination {self.dest.display} has no column {', '.join(missing)}; "
                    f"columns: {', '.join(ddesc.fields)}"
                )
        self.shard = self._shard_filter()
        self._open_state()
        self.take_lock(self.state_name)
        if self.options.shard and not self.options.dry_run:
            self._create_state_first()
        with self.state_host.transaction(rollback=self.options.dry_run) as conn:
            self.state.ensure(conn)  # a dry run creates nothing: this is rolled back too
            self._repair_drift(conn)
            cursor = self.state.load_cursor(conn)
            nothing_synced = not self.state.has_records(conn)
            self._load_failures(conn)
        if self.options.shard and not self.dest_exists and not self.options.dry_run:
            self._create_destination_first()
        self.bulk_load = nothing_synced and self._first_load_is_safe()
        self.run_keys = None if self.append or self._key_is_unique_in_source() else {}
        if self.bulk_load:
            self.result.log("info", "first load into an empty destination: every record is "
                                    "new, so no record is looked up before it is written")
        self.result.cursor = cursor
        if self.options.full_refresh:
            cursor = None
            self.result.log(
                "info", "full refresh: every record is read again and compared with the destination"
            )
        self.mirror = self.op == "sync"
        self.key_unknown = 0
        self.bulk_written = 0
        with self._published_once():
            reported = self.mirror and self._reported_deletes(cursor)
            try:
                self._read_and_write(cursor)
                self._settle_failures(self._request(cursor))
            finally:  # failures met before a stop are retried by the next run
                with contextlib.suppress(ConnectorError, TransientError, BatchRefused):
                    self._flush_failures_alone()
            if self.mirror and not reported:
                self._mirror_deletes()
        if self.bulk_written:
            with self.state_host.transaction() as conn:
                self.state.analyze(conn)
        if cfg.effective_audit.trackChanges and not self.options.dry_run:
            # a dry run must not even create the state tables
            with self.state_host.transaction() as conn:
                self.state.prune_changes(conn, cfg.effective_audit.retainLogsForDays)

    def _repair_drift(self, conn: Any) -> None:
        """Records the state says were written but the destination no longer holds (a table
        dropped or emptied, rows deleted by someone): forget them, and the cursor, so this
        run reads the source again and writes exactly those back (fingerprints skip the
        rest). Found by a count, then by looking the state's keys up where it falls short."""
        if self.append or self.op == "delete" or not self.dest.capabilities.countable:
            return
        held = self.state.count(conn)
        if not held:
            return
        actual = self.dest.count()
        self.drift = Drift(held, actual, 0)
        if actual is None or actual == 0:
            self.drift = Drift(held, actual, held)
            self.state.reset(conn)
            what = "does not exist" if actual is None else "is empty"
            self.result.log("warn", f"{self.dest.display} {what} although {held} records "
                                    "were synced to it: they are all written again")
            return
        if actual >= held:
            return
        missing, after = 0, None
        with self.dest.transaction(rollback=True) as dconn:
            while keys := self.state.keys_after(conn, after, 500):
                after = keys[-1]
                values = [tuple(json.loads(k)) for k in keys]
                found = {record_key([r[k] for k in self.key]) for r in
                         self.dest.lookup(dconn, self.key, values, self.key)}
                gone = [k for k in keys if k not in found]
                if gone:
                    self.state.forget(conn, gone)
                    missing += len(gone)
        self.drift = Drift(held, actual, missing)
        if missing:
            self.state.clear_cursor(conn)
            self.result.log("warn", f"{missing} of the {held} records synced to "
                                    f"{self.dest.display} are missing there: they are written "
                                    "again")

    def _shard_filter(self) -> tuple[tuple[str, ...], int, int] | None:
        """(source columns, index, count) of this run's shard, for ReadRequest.shard. A
        shard is chosen by the match key's source columns (so every version of a record is
        read by one shard, and shards never write the same key), or by the source's key for
        appends. The shard's own state name keeps its cursor and records apart."""
        if self.options.shard is None:
            return None
        index, count = self.options.shard
        if not 0 <= index < count:
            raise RunFailed(f"shard {index} of {count} does not exist: shards are numbered "
                            f"0 to {count - 1}", code="CONFIG")
        if self.append:
            columns = list(self.source_id)
        else:
            renamed = self.mapper.plain_sources
            if not all(k in renamed for k in self.key):
                raise RunFailed(
                    "shards split records by their match key, so every key field "
                    f"({', '.join(self.key)}) must be a source field mapped without a "
                    "transform", code="CONFIG")
            columns = [renamed[k] for k in self.key]
        self.state_name = f"{self.state_name}#shard-{index}-of-{count}"
        self.result.log("info", f"shard {index} of {count}: records whose "
                                f"{', '.join(columns)} hash to {index} modulo {count}")
        return tuple(columns), index, count

    def _create_state_first(self) -> None:
        """Shards may be creating the state tables at this moment: each first tries in a
        transaction of its own, before the run's first state transaction (on SQLite a second
        writer would wait for that one), where losing the race only fails this attempt; the
        check in the run's transaction then finds the tables there."""
        with contextlib.suppress(BatchRefused, TransientError), \
                self.state_host.transaction() as own:
            self.state.ensure(own)

    def _create_destination_first(self) -> None:
        """Shards create a missing destination before reading, in a transaction of its own,
        so two shards starting together do not both try inside their first batch."""
        try:
            with self._transaction() as conn:
                self._ensure_table(conn)
        except (BatchRefused, TransientError):
            if not self.dest.describe(refresh=True).exists:
                raise
        self.dest_exists = True

    @property
    def _compress(self) -> bool:
        return self.config.effective_optimization.compressionEnabled

    def _open_state(self) -> None:
        self.state, self.state_host, self.state_apart = open_state(
            self.project, self.dest, self.state_name, compress=self._compress,
            create=not self.options.dry_run)
        if self.append and self.state_apart and not self.dest.capabilities.idempotent_inserts:
            raise RunFailed(
                f"insert without matchKey appends, which {self.dest.display} cannot make "
                "exactly-once: give a matchKey", code="CONFIG")
        if self.append and self.state_apart:
            raise RunFailed(
                "insert without matchKey appends, which is exactly-once only when the state "
                "commits with the data: remove `state.url` from the project or give a matchKey",
                code="CONFIG",
            )

    def _first_load_is_safe(self) -> bool:
        """Whether every record of this run is certainly new to the destination: nothing was
        synced yet, the destination is empty, and the source cannot hold a key twice (the
        key is a plain rename of source columns that are unique there)."""
        if self.op not in ("insert", "upsert", "sync") or self.append:
            return False
        if not self._key_is_unique_in_source():
            return False
        return not self.dest_exists or self.dest.is_empty()

    def _key_is_unique_in_source(self) -> bool:
        """Whether the source cannot hold a match key twice: the key is a plain rename of
        source columns that are unique there."""
        renamed = self.mapper.plain_sources
        if not all(k in renamed for k in self.key):
            return False
        return self.source_desc.is_unique([renamed[k] for k in self.key])

    def _source_key_fallback(self) -> list[str]:
        names = self.config.destination.matchKey or []
        by_target = {m.target: m.source for m in self.mapper.entries}
        resolved = resolve_names(self.config, names, self.mapper.targets)
        found = [by_target.get(n, n) for n in resolved]
        if found and all(f in self.mapper.source.fields for f in found):
            return found
        raise ConnectorError(
            f"source {self.source.display} has no primary key; give it one, or a matchKey "
            "that names source fields, so records can be read in a stable order"
        )

    def _destination_key(self, ddesc: Any) -> list[str]:
        if self.config.destination.matchKey:
            return resolve_names(self.config, self.config.destination.matchKey, self.mapper.targets)
        if ddesc.exists and ddesc.primary_key and all(
            k in self.mapper.targets for k in ddesc.primary_key
        ):
            return list(ddesc.primary_key)
        if not ddesc.exists:
            # A table we create gets the source's primary key, where the mapping carries it.
            targets = {m.source: m.target for m in self.mapper.entries if m.transform is None}
            mapped = [targets.get(k) for k in self.mapper.source.primary_key]
            if mapped and all(mapped):
                return [m for m in mapped if m]
        return []
