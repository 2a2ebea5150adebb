"""Bidirectional syncs: both sides compared with what they held at the last sync.

Each run reads both sides whole and, per record (by match key), asks what changed on each side
since the last sync. A change on one side flows to the other; a change on both is a conflict,
resolved by `conflictResolution`. Both sides' fingerprints are recorded after every write, so a
run never reads its own writes back as changes (no echoes). Writes to a row are guarded by the
values the run read: a row someone changed meanwhile is left for the next run, not overwritten.

Commit order per batch: the source side, then the destination side with the state. A crash in
between leaves both sides holding the same values, which the next run recognises and records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from .. import filters as objectql
from ..connectors.base import (
    BatchRefused,
    ConnectorError,
    Description,
    Endpoint,
    Record,
    TransientError,
)
from ..state import PairState
from .cel import ExpressionError
from .common import Progress, RunBase, RunFailed, open_state, read_all
from .direction import one_way_reason, reversed_config
from .endpoints import open_endpoint
from .mapping import FieldError, RecordMapper, resolve_names
from .records import fingerprint, plain, record_key
from .validation import RecordValidator


@dataclass
class _Side:
    """One side's version of a record, in destination field names."""

    row: Record  # as stored, in the side's own field names
    common: Record  # mapped to destination field names
    fp: str  # fingerprint of the two-way fields


@dataclass
class _Decision:
    key: str
    to_destination: Record | None = None  # write this (destination names) to the destination
    to_source: Record | None = None  # write this (destination names) to the source
    delete_destination: bool = False
    delete_source: bool = False
    conflict_open: bool = False
    conflict: bool = False
    counted: str = "skipped"
    refusal: str = ""


def _moment(value: Any) -> datetime | None:
    """A change-tracking value as a comparable datetime (stored text included)."""
    if isinstance(value, datetime):  # naive values are UTC, as everywhere in the engine
        return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return _moment(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    return None


def _record_id(key: str) -> str:
    """A record's id for users: its match-key value, or the JSON list of a composite key."""
    values = json.loads(key)
    return str(values[0]) if len(values) == 1 else key


def _differs(x: Mapping[str, Any], y: Mapping[str, Any], fields: Sequence[str]) -> bool:
    return any(plain(x.get(f)) != plain(y.get(f)) for f in fields)


class TwoWayRun(RunBase):
    """A bidirectional run."""

    # -- setup -----------------------------------------------------------------------------
    def _execute(self) -> None:
        cfg = self.config
        self.src: Endpoint = open_endpoint(self.project, cfg.source)
        self.dst: Endpoint = open_endpoint(self.project, cfg.destination)
        sdesc = self.sdesc = self.src.describe()
        if not sdesc.exists:
            raise ConnectorError(f"source table {self.src.display} does not exist")
        try:
            self.forward = RecordMapper(cfg, sdesc, self.src.lookup_table,
                                        cache_lookups=cfg.effective_optimization.cacheEnabled)
        except (FieldError, ExpressionError) as exc:
            raise RunFailed(str(exc), code="CONFIG") from None
        entries = self.forward.entries
        self.targets = self.forward.targets
        try:
            # one validator per side: `unique` remembers values per side, not across both
            self.validate_source = RecordValidator(cfg, self.targets)
            self.validate_destination = RecordValidator(cfg, self.targets)
        except ExpressionError as exc:
            raise RunFailed(str(exc), code="CONFIG") from None
        self.two_way = [m.target for m in entries if one_way_reason(m) is None]
        self.key = resolve_names(cfg, cfg.destination.matchKey or [], self.targets)
        ddesc = self.dst.describe()
        if not self.key and ddesc.exists:
            self.key = [k for k in ddesc.primary_key if k in self.targets]
        if not self.key:
            raise RunFailed("a bidirectional sync needs destination.matchKey to pair records",
                            code="CONFIG")
        self.dst_missing = not ddesc.exists
        if self.dst_missing and not self.options.dry_run:
            with self.dst.transaction() as conn:
                self.dst.create(conn, self.forward.target_types(), self.key)
            ddesc = self.dst.describe(refresh=True)
            self.dst_missing = False
        elif self.dst_missing:  # a dry run creates nothing: describe the table it would create
            ddesc = Description(fields={f.name: f for f in self.forward.target_types()},
                                primary_key=tuple(self.key))
        self.ddesc = ddesc
        self.forward.target_kinds = {n: f.kind for n, f in ddesc.fields.items()}
        kinds = {n: f.kind for n, f in sdesc.fields.items()}
        self.reverse_config = reversed_config(cfg, kinds)
        try:
            self.backward = RecordMapper(self.reverse_config, ddesc, self.dst.lookup_table)
        except (FieldError, ExpressionError) as exc:  # the destination lacks a mapped field
            raise RunFailed(str(exc), code="CONFIG") from None
        by_target = {m.target: m for m in entries}
        self.source_key = [by_target[k].source for k in self.key]
        self.back_names = {m.target: m.source for m in entries if one_way_reason(m) is None}
        ctf = cfg.changeTrackingField
        self.source_ctf = ctf
        # latest_wins compares the change-tracking field with its counterpart (rename or cast)
        counterpart = {m.source: m.target for m in entries
                       if m.transform is None or m.transform.type == "cast"}
        self.destination_ctf = counterpart.get(ctf) if ctf else None
        self._open_state()
        self._sync_all()

    def _open_state(self) -> None:
        self.state, self.state_host, self.state_apart = open_state(
            self.project, self.dst, self.config.name,
            compress=self.config.effective_optimization.compressionEnabled,
            create=not self.options.dry_run)
        self.take_lock(self.config.name)
        with self.state_host.transaction(rollback=self.options.dry_run) as conn:
            self.state.ensure(conn)
            self.pairs = self.state.load_pairs(conn)

    # -- reading ---------------------------------------------------------------------------
    def _read_source(self) -> dict[str, _Side]:
        cfg = self.config
        filt = objectql.parse_filter(cfg.source.filters) if cfg.source.filters else None
        columns = list(dict.fromkeys([
            *self.forward.source_fields, *self.source_key,
            *self.validate_source.source_fields(self.forward.available),
            *([self.source_ctf] if self.source_ctf else [])]))
        self._source_columns = columns
        out: dict[str, _Side] = {}
        order = list(dict.fromkeys([*self.source_key, *self.sdesc.primary_key]))
        for row in read_all(self.src, list(dict.fromkeys([*columns, *order])), filt, order):
            self._add_source_row(out, row)
        return out

    def _add_source_row(self, out: dict[str, _Side], row: Record) -> None:
        common, problems = self.forward.map(row)
        # records are named as a push names them: by the source's own key
        rid = self._row_id(row, self.sdesc.primary_key or self.source_key)
        if problems:
            for p in problems:
                self.result.error(p.message, record_id=rid, field_name=p.field, code=p.code)
            self.result.errored += 1
            self._unreadable.add(record_key([common.get(k) for k in self.key]))
            return
        key = record_key([common[k] for k in self.key])
        if key in out:  # two source records, one pair: the first wins
            self.result.errored += 1
            self.result.error(f"match key {key} is also the key of record "
                              f"{self._rids.get(key, key)}; only the first is synced",
                              record_id=rid, field_name=self.key[0], code="DUPLICATE_KEY")
            return
        self._rids[key] = rid
        self._validate(self.validate_source, key, rid, common, row)
        out[key] = _Side(row, common, fingerprint(common, self.two_way))

    @staticmethod
    def _row_id(row: Record, key: Sequence[str]) -> str:
        values = [row.get(k) for k in key]
        return str(plain(values[0])) if len(values) == 1 else record_key(values)

    def _validate(self, validator: RecordValidator, key: str, rid: str, common: Record,
                  row: Record) -> None:
        """The sync's validation rules on one side's record, as a push applies them to what
        it writes: `skip` leaves the record out of this run, `fail` stops the run at its
        batch, `log` reports and syncs it."""
        problems = validator.check(rid, common, row)
        if not problems:
            return
        policy = self.config.effective_error_handling.onValidationError
        for p in problems:
            self.result.error(p.message, record_id=rid, field_name=p.field, code=p.code)
        if policy == "skip":
            if key not in self._unreadable:
                self.result.errored += 1
            self._unreadable.add(key)
        elif policy == "fail":
            self._invalid.setdefault(key, (rid, problems[0]))

    def _read_source_outside_filter(self, keys: list[str], out: dict[str, _Side]) -> None:
        """Paired or destination records the filtered read did not return but the source
        still holds: the filter decides which records start syncing, not which are deleted
        (a record a run created on the source need not match an unmapped filter column)."""
        wanted = []
        for key in keys:
            values = json.loads(key)
            a_row, problems = self.backward.map(dict(zip(self.key, values, strict=True)))
            if not problems:
                wanted.append(tuple(a_row.get(k) for k in self.source_key))
        if not wanted:
            return
        with self.src.transaction(rollback=True) as conn:
            rows = self.src.lookup(conn, self.source_key, wanted, self._source_columns)
        for row in rows:
            self._add_source_row(out, row)

    def _read_destination(self) -> dict[str, _Side]:
        columns = list(dict.fromkeys([*self.targets, *self.key,
                                      *([self.destination_ctf] if self.destination_ctf else [])]))
        out: dict[str, _Side] = {}
        if self.dst_missing:
            return out
        order = list(dict.fromkeys([*self.key, *self.ddesc.primary_key]))
        for row in read_all(self.dst, list(dict.fromkeys([*columns, *order])), None, order):
            common = {t: row.get(t) for t in self.targets}
            key = record_key([row[k] for k in self.key])
            rid = self._row_id(row, self.ddesc.primary_key or self.key)
            self._rids.setdefault(key, rid)
            self._validate(self.validate_destination, key, rid, common, row)
            out[key] = _Side(row, common, fingerprint(common, self.two_way))
        return out

    # -- deciding --------------------------------------------------------------------------
    def _moment_of(self, side: _Side | None, which: str) -> datetime | None:
        field = self.source_ctf if which == "source" else self.destination_ctf
        return _moment(side.row.get(field)) if side is not None and field else None

    def _source_is_later(self, a: _Side | None, b: _Side | None) -> bool:
        ta, tb = self._moment_of(a, "source"), self._moment_of(b, "destination")
        if ta is None or tb is None:
            if not getattr(self, "_told_no_time", False):
                self._told_no_time = True
                self.result.log("warn", "latest_wins needs a change-tracking value on both "
                                        "sides (changeTrackingField mapped by a rename); "
                                        "the source wins where one is missing")
            return True
        return ta >= tb

    def _merge(self, a: _Side, b: _Side, image: Mapping[str, Any]) -> Record:
        merged = dict(b.common)
        later_is_source = None
        for f in self.targets:
            if f not in self.two_way:
                merged[f] = a.common.get(f)  # one-way fields always come from the source
                continue
            va, vb, base = plain(a.common.get(f)), plain(b.common.get(f)), image.get(f)
            if va == vb:
                continue
            a_changed, b_changed = va != base, vb != base
            if a_changed and not b_changed:
                merged[f] = a.common.get(f)
            elif b_changed and not a_changed:
                merged[f] = b.common.get(f)
            else:
                if later_is_source is None:
                    later_is_source = self._source_is_later(a, b)
                merged[f] = a.common.get(f) if later_is_source else b.common.get(f)
        return merged

    def _winner(self, a: _Side | None, b: _Side | None) -> str:
        strategy = self.config.conflictResolution
        if strategy == "source_wins":
            return "source"
        if strategy == "destination_wins":
            return "destination"
        if a is None:  # a delete against an edit: the edit wins, nothing is lost
            return "destination"
        if b is None:
            return "source"
        return "source" if self._source_is_later(a, b) else "destination"

    def _apply(self, d: _Decision, winner: str, a: _Side | None, b: _Side | None) -> None:
        op = self.config.destination.operation
        if winner == "source":
            if a is None:
                if op == "sync" and b is not None:
                    d.delete_destination, d.counted = True, "deleted"
            elif b is None:
                if op != "update":
                    d.to_destination, d.counted = a.common, "inserted"
            elif op != "insert" and _differs(a.common, b.common, self.targets):
                d.to_destination, d.counted = a.common, "updated"
        else:
            if b is None:
                if op == "sync" and a is not None:
                    d.delete_source, d.counted = True, "deleted"
            elif a is None:
                if op != "update":
                    d.to_source, d.counted = b.common, "inserted"
            elif op != "insert" and _differs(a.common, b.common, self.two_way):
                d.to_source, d.counted = b.common, "updated"
            if a is not None and b is not None and d.to_source is None:
                self._one_way_fields(d, a, b)

    def _one_way_fields(self, d: _Decision, a: _Side, b: _Side) -> None:
        """Fields that flow source -> destination only (constants, lookups, expressions)
        follow the source whatever else happens to the record."""
        extra = {f: a.common.get(f) for f in self.targets if f not in self.two_way}
        if extra and _differs(extra, b.common, list(extra)):
            d.to_destination = {**b.common, **extra}
            d.counted = "updated"

    def _decide(self, key: str, a: _Side | None, b: _Side | None,
                prev: PairState | None) -> _Decision:
        d = _Decision(key)
        if prev is not None and prev.conflict:
            a_changed = (a.fp if a else None) != prev.conflict_source_fp
            b_changed = (b.fp if b else None) != prev.conflict_destination_fp
            if not a_changed and not b_changed:
                d.conflict_open, d.counted = True, "errored"
                return d
        elif prev is not None:
            a_changed = (a.fp if a else None) != prev.source_fp
            b_changed = (b.fp if b else None) != prev.destination_fp
        else:
            a_changed, b_changed = a is not None, b is not None
        if not a_changed and not b_changed:
            if a is not None and b is not None:
                self._one_way_fields(d, a, b)
            return d
        if a_changed and not b_changed:
            self._apply(d, "source", a, b)
            return d
        if b_changed and not a_changed:
            self._apply(d, "destination", a, b)
            return d
        # changed on both sides since the last sync
        if a is None and b is None:
            return d  # deleted on both: nothing left to do
        if a is not None and b is not None and a.fp == b.fp:
            self._apply(d, "destination", a, b)  # the same change on both: converged
            return d
        d.conflict = True
        self.result.conflicts_detected += 1
        strategy = self.config.conflictResolution
        if strategy == "manual":
            d.conflict_open, d.counted = True, "errored"
            return d
        self.result.conflicts_resolved += 1
        if strategy == "merge" and a is not None and b is not None:
            merged = self._merge(a, b, prev.image if prev else {})
            if _differs(merged, b.common, self.targets):
                d.to_destination = merged
            if _differs(merged, a.common, self.two_way):
                d.to_source = merged
            d.counted = "updated" if d.to_source or d.to_destination else "skipped"
            return d
        self._apply(d, self._winner(a, b), a, b)
        return d

    # -- writing ---------------------------------------------------------------------------
    def _source_row(self, common: Record) -> Record:
        """Destination-named values as a source row (two-way fields only)."""
        b_row = {t: common.get(t) for t in self.targets}
        row, problems = self.backward.map(b_row)
        if problems:
            raise FieldError(problems[0].code, problems[0].message)
        writable = set(self.back_names.values())
        return {k: v for k, v in row.items() if k in writable}

    def _guard(self, side: _Side | None, fields: Sequence[str]) -> dict[str, Any]:
        return {f: side.row.get(f) for f in fields} if side is not None else {}

    def _sync_all(self) -> None:
        self._unreadable: set[str] = set()
        self._invalid: dict[str, Any] = {}
        self._rids: dict[str, str] = {}  # match key -> the record's id as a push names it
        source, destination = self._read_source(), self._read_destination()
        if self.config.source.filters:
            outside = [k for k in set(destination) | set(self.pairs) if k not in source]
            self._read_source_outside_filter(sorted(outside), source)
        keys = sorted(set(source) | set(destination) | set(self.pairs))
        keys = [k for k in keys if k not in self._unreadable]
        source_fields = [self.back_names[t] for t in self.two_way if t in self.back_names]
        size = self.config.batchSize
        for i in range(0, len(keys), size):
            self.check_cancelled()
            batch = keys[i : i + size]
            failing = next((k for k in batch if k in self._invalid), None)
            if failing is not None:
                rid, first = self._invalid[failing]
                raise RunFailed(
                    f"record {rid}: {first.field}: {first.message} "
                    "(errorHandling.onValidationError is fail)", code=first.code)
            decisions = [self._decide(k, source.get(k), destination.get(k), self.pairs.get(k))
                         for k in batch]
            self._write(decisions, source, destination, source_fields)
            if self.options.progress:
                self.options.progress(Progress(self.config.name, i + len(batch), len(keys),
                                               self.result))  # type: ignore[arg-type]
        with self.state_host.transaction(rollback=True) as conn:
            open_conflicts = self.state.open_conflicts(conn) if not self.options.dry_run else 0
        audit = self.config.effective_audit
        if audit.trackChanges and not self.options.dry_run:
            with self.state_host.transaction() as conn:
                self.state.prune_changes(conn, audit.retainLogsForDays)
        if open_conflicts:
            self.result.log("warn", f"{open_conflicts} conflicts are open: change one side of "
                                    "each to resolve it")

    def _write(self, decisions: list[_Decision], source: Mapping[str, _Side],
               destination: Mapping[str, _Side], source_fields: list[str]) -> None:
        """Write one batch: the source side, then the destination side with the state; each
        side under the sync's `retry` and `onSyncError`, as a push writes its batches."""
        self._held_source: dict[str, Record] = {}
        self._source_changes: list[tuple[str, str, Any, Any]] = []
        try:
            self._with_policy(lambda ds: self._write_source(ds, source, source_fields),
                              decisions)
            self._with_policy(lambda ds: self._write_destination(ds, source, destination),
                              [d for d in decisions if d.counted not in ("changed", "refused")])
        except FieldError as exc:
            raise RunFailed(f"mapping back to the source failed: {exc}", code=exc.code) from None
        for d in decisions:
            self._count(d)

    def _with_policy(self, phase: Any, decisions: list[_Decision]) -> None:
        def one_by_one() -> None:
            for d in decisions:
                try:
                    phase([d])
                except (BatchRefused, TransientError) as exc:
                    d.counted, d.refusal = "refused", str(exc)

        def refuse_one(message: str) -> None:
            decisions[0].counted, decisions[0].refusal = "refused", message

        self.write_with_policy(lambda: phase(decisions), size=len(decisions),
                               one_by_one=one_by_one, refuse_one=refuse_one,
                               failure="writing a two-way batch failed")

    def _write_source(self, decisions: list[_Decision], source: Mapping[str, _Side],
                      source_fields: list[str]) -> None:
        with self.src.transaction(rollback=self.options.dry_run) as sconn:
            for d in decisions:
                a = source.get(d.key)
                if d.delete_source and a is not None:
                    ok = self.src.write_one(sconn, "delete", self.source_key,
                                            {k: a.row[k] for k in self.source_key},
                                            self._guard(a, source_fields))
                    if not ok:
                        d.counted = "changed"
                elif d.to_source is not None:
                    row = self._source_row(d.to_source)
                    if a is None:
                        ok = self.src.write_one(sconn, "insert", self.source_key, row)
                    else:
                        ok = self.src.write_one(sconn, "update", self.source_key, row,
                                                self._guard(a, source_fields))
                    if not ok:
                        d.counted = "changed"
            held = self._read_back_source(sconn, [
                d for d in decisions if d.to_source is not None and d.counted != "changed"])
        self._held_source.update(held)
        if self.config.effective_audit.trackChanges:
            for d in decisions:
                a = source.get(d.key)
                if d.counted == "changed" or not (d.delete_source or d.to_source is not None):
                    continue
                before = a.common if a is not None else None
                after = None if d.delete_source else held.get(d.key, d.to_source)
                op = "delete" if d.delete_source else ("insert" if a is None else "update")
                self._source_changes.append((f"source_{op}", d.key, before, after))

    def _write_destination(self, decisions: list[_Decision], source: Mapping[str, _Side],
                           destination: Mapping[str, _Side]) -> None:
        new_pairs: dict[str, PairState | None] = {}
        written: list[_Decision] = []
        with self.dst.transaction(rollback=self.options.dry_run) as dconn:
            if self.options.dry_run:
                if not self.state_apart:
                    self.state.ensure(dconn)
                if self.dst_missing:
                    self.dst.create(dconn, self.forward.target_types(), self.key)
            for d in decisions:
                b = destination.get(d.key)
                if d.counted == "changed":
                    continue
                if d.delete_destination and b is not None:
                    if not self.dst.write_one(dconn, "delete", self.key,
                                              {k: b.row[k] for k in self.key},
                                              self._guard(b, self.two_way)):
                        d.counted = "changed"
                        continue
                elif d.to_destination is not None:
                    row = dict(d.to_destination)
                    ok = (self.dst.write_one(dconn, "insert", self.key, row) if b is None
                          else self.dst.write_one(dconn, "update", self.key, row,
                                                  self._guard(b, self.two_way)))
                    if not ok:
                        d.counted = "changed"
                        continue
                written.append(d)
            held = self._read_back_destination(dconn, [
                d for d in written if d.to_destination is not None])
            for d in written:
                new_pairs[d.key] = self._next_state(
                    d, source.get(d.key), destination.get(d.key),
                    self._held_source.get(d.key), held.get(d.key))
            changes = self._changes(written, destination, held)
            if not self.state_apart:
                self._save_pairs(dconn, new_pairs)
                self.state.log_changes(dconn, self.result.run_id, changes)
        if self.state_apart:
            with self.state_host.transaction(rollback=self.options.dry_run) as conn:
                if self.options.dry_run:
                    self.state.ensure(conn)
                self._save_pairs(conn, new_pairs)
                self.state.log_changes(conn, self.result.run_id, changes)
        self._source_changes = []

    def _changes(self, written: list[_Decision], destination: Mapping[str, _Side],
                 held: Mapping[str, Record]) -> list[tuple[str, str, Any, Any]]:
        """The change log of a batch (`audit.trackChanges`): each write to the destination
        as before and after, and each write to the source as `source_<operation>`."""
        if not self.config.effective_audit.trackChanges:
            return []
        out = list(self._source_changes)
        for d in written:
            b = destination.get(d.key)
            if d.delete_destination and b is not None:
                out.append(("delete", d.key, b.common, None))
            elif d.to_destination is not None:
                after = held.get(d.key, d.to_destination)
                out.append(("insert" if b is None else "update", d.key,
                            b.common if b is not None else None, after))
        return out

    def _save_pairs(self, conn: Any, pairs: dict[str, PairState | None]) -> None:
        self.state.save_pairs(conn, pairs, set(self.pairs))
        for k, v in pairs.items():
            if v is None:
                self.pairs.pop(k, None)
            else:
                self.pairs[k] = v

    def _read_back_source(self, conn: Any, decisions: list[_Decision]) -> dict[str, Record]:
        """What the source holds for the records just written to it, in destination names:
        a column's type may change a value on the way in (text dates, numbers), and the
        state must remember what is there, or the next run sees a change (an echo)."""
        if not decisions:
            return {}
        wanted = []
        for d in decisions:
            row = self._source_row(d.to_source or {})
            wanted.append(tuple(row.get(k) for k in self.source_key))
        held: dict[str, Record] = {}
        for row in self.src.lookup(conn, self.source_key, wanted, self._source_columns):
            common, problems = self.forward.map(row)
            if not problems:
                held[record_key([common[k] for k in self.key])] = common
        return held

    def _read_back_destination(self, conn: Any, decisions: list[_Decision]) -> dict[str, Record]:
        if not decisions:
            return {}
        values = [tuple((d.to_destination or {}).get(k) for k in self.key) for d in decisions]
        return {record_key([r[k] for k in self.key]): {t: r.get(t) for t in self.targets}
                for r in self.dst.lookup(conn, self.key, values, self.targets)}

    def _next_state(self, d: _Decision, a: _Side | None, b: _Side | None,
                    held_a: Record | None = None, held_b: Record | None = None
                    ) -> PairState | None:
        if d.conflict_open:
            return PairState(
                self.pairs[d.key].source_fp if d.key in self.pairs else None,
                self.pairs[d.key].destination_fp if d.key in self.pairs else None,
                self.pairs[d.key].image if d.key in self.pairs else {},
                True, a.fp if a else None, b.fp if b else None)
        # What each side holds now, after this decision's writes.
        a_common = None if a is None or d.delete_source else a.common
        b_common = None if b is None or d.delete_destination else b.common
        if d.to_source is not None:
            a_common = held_a if held_a is not None else {
                **(a_common or {}), **{t: d.to_source.get(t) for t in self.two_way}}
        if d.to_destination is not None:
            b_common = held_b if held_b is not None else dict(d.to_destination)
        if a_common is None and b_common is None:
            return None
        image_from = b_common if b_common is not None else a_common
        return PairState(
            fingerprint(a_common, self.two_way) if a_common is not None else None,
            fingerprint(b_common, self.two_way) if b_common is not None else None,
            {t: plain(image_from.get(t)) for t in self.two_way} if image_from else {},
        )

    def _count(self, d: _Decision) -> None:
        r = self.result
        if d.counted == "refused":
            r.errored += 1
            r.error(f"the write was refused: {d.refusal}",
                    record_id=self._rids.get(d.key, _record_id(d.key)), code="WRITE_ERROR")
            return
        if d.counted == "changed":  # someone wrote the row meanwhile: the next run decides
            r.skipped += 1
            r.log("info", f"record {_record_id(d.key)} changed during the run; left for the "
                          "next run")
            return
        if d.conflict_open:
            r.errored += 1
            r.error("changed on both sides since the last sync; resolve it by changing one "
                    "side (conflictResolution is manual)", record_id=_record_id(d.key),
                    code="CONFLICT")
            return
        setattr(r, d.counted, getattr(r, d.counted) + 1)
        action = {"inserted": "insert", "updated": "update", "deleted": "delete"}
        if d.counted in action:
            bucket = self.samples.setdefault(action[d.counted], [])
            if len(bucket) < self.options.sample_size:
                bucket.append(d.to_destination or d.to_source or {"key": d.key})

