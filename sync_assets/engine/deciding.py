"""Deciding what each source record becomes: mapped, validated under onValidationError, keyed
and fingerprinted; a second source record with a key already read in the run is errored
DUPLICATE_KEY."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..connectors.base import (
    CURSOR_COLUMN,
    ReadRequest,
    Record,
)
from .common import MAPPING_CODES, RunFailed
from .records import fingerprints, plain, record_key


@dataclass
class Item:
    record_id: str
    key: str
    key_values: tuple[Any, ...]
    mapped: Record
    fp: str
    at_boundary: bool
    source_values: tuple[Any, ...] = ()  # the source's key of the record, to read it again


class Deciding:
    """Records of a page as items to write (SyncRun)."""

    #: the first record read with each match key in this run, where the source could hold
    #: a key twice (None where it cannot: its key columns are unique there)
    run_keys: dict[str, str] | None = None
    #: the source has no primary key: its records are identified by the match key
    source_keyless: bool = False

    def _record_id(self, row: Record) -> str:
        values = [row.get(k) for k in self.source_id]
        return str(plain(values[0])) if len(values) == 1 else record_key(values)

    def _prepare(self, rows: Sequence[Record], request: ReadRequest) -> list[Item]:
        self.mapper.start_batch()
        policy = self.config.effective_error_handling.onValidationError
        by_key: dict[str, Item] = {}
        for row in rows:
            rid = self._record_id(row)
            if self.failed_before:
                self._read_failed(rid)
            mapped, problems = self.mapper.map(row)
            problems += self.validator.check(rid, mapped, row)
            key_fields = self.key if not self.append else self.source_id
            key_source = row if self.append else mapped
            key_values = tuple(key_source.get(k) for k in key_fields)
            if any(v is None for v in key_values):
                self.key_unknown += 1
                self.result.errored += 1
                on_key = [p for p in problems if p.field in key_fields]
                for p in on_key:  # the reason the key is missing, e.g. a failed cast
                    self.result.error(p.message, record_id=rid, field_name=p.field, code=p.code)
                if not on_key:
                    self.result.error(
                        f"no value for the match key ({', '.join(key_fields)})",
                        record_id=rid, field_name=key_fields[0], code="KEY_MISSING",
                    )
                first = on_key[0] if on_key else None
                self._failed(rid, [row.get(k) for k in self.source_id],
                             first.code if first else "KEY_MISSING",
                             first.message if first else "no value for the match key")
                continue
            key = record_key(key_values)
            if problems:
                for p in problems:
                    self.result.error(p.message, record_id=rid, field_name=p.field, code=p.code)
                if policy == "fail":
                    first = problems[0]
                    raise RunFailed(
                        f"record {rid}: {first.field}: {first.message} "
                        "(errorHandling.onValidationError is fail)", code=first.code,
                    )
                if policy == "skip":
                    self.result.errored += 1
                    self._failed(rid, [row.get(k) for k in self.source_id], problems[0].code,
                                 problems[0].message)
                    continue
                for p in problems:  # log: written anyway; a value that failed to map is null
                    if p.code in MAPPING_CODES:
                        mapped[p.field] = None
            at_boundary = (
                request.cursor_field is not None and request.lower is not None
                and plain(row.get(CURSOR_COLUMN)) == plain(request.lower)
            )
            # Two source records, one destination record: the first wins, in a page or
            # across pages. A record read twice (at a cursor boundary) is no duplicate, but
            # where the source has no key of its own the match key is its record id, and a
            # repeat is then always a second record.
            first: str | None = None
            if key in by_key:
                first = by_key[key].record_id
            elif self.run_keys is not None:
                first = self.run_keys.get(key)
                if first is None:
                    self.run_keys[key] = rid
            if first is not None and (first != rid or self.source_keyless):
                self.result.errored += 1
                what = (f"record {first}" if first != rid else
                        "a record read earlier (the source has no key of its own)")
                self.result.error(
                    f"match key {key} is also the key of {what}; only the first is written",
                    record_id=rid, field_name=key_fields[0], code="DUPLICATE_KEY")
                continue
            by_key[key] = Item(rid, key, key_values, mapped, "", at_boundary,
                               tuple(row.get(k) for k in self.source_id))
        items = list(by_key.values())
        fps = fingerprints([i.mapped for i in items], self.mapper.targets)
        for item, fp in zip(items, fps, strict=True):
            item.fp = fp
        return items
