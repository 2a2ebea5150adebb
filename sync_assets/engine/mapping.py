"""Mapping source records to destination records: renames, the five transforms, defaults.

A `RecordMapper` is built once per run from the config and the source's description; mapping
one record returns the destination record and the per-field problems (a failed cast, an
expression error), so one bad value costs one record, not the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ..connectors.base import Description, FieldInfo, Record
from ..spec import DataSyncConfig, FieldMapping
from ..spec.flow import resolve_match_key
from ..spec.mapping import (
    CastTransform,
    ConstantTransform,
    JavascriptTransform,
    LookupTransform,
    MapTransform,
)
from . import arrow_mapping
from .cel import EvaluationError, compile_expression
from .records import plain

LookupLoader = Callable[[str, str, str], Mapping[Any, Any]]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


class FieldError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class FieldProblem:
    field: str
    code: str
    message: str


# -- casts ---------------------------------------------------------------------------------
def cast_value(value: Any, target: str) -> Any:
    """Cast for `{type: cast}`; None stays None. Raises FieldError with a readable reason."""
    if value is None:
        return None
    try:
        if target == "string":
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, datetime | date):
                return value.isoformat()
            p = plain(value)
            return p if isinstance(p, str) else json.dumps(p) if isinstance(p, dict | list) \
                else str(p)
        if target == "number":
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, int | float):
                return value
            if isinstance(value, Decimal):
                return int(value) if value == value.to_integral_value() else float(value)
            if isinstance(value, str):
                text = value.strip()
                if "_" in text:  # Decimal() would accept "1_000"; JavaScript's Number() not
                    raise InvalidOperation
                number = Decimal(text)
                if not number.is_finite():
                    raise InvalidOperation
                return int(number) if number == number.to_integral_value() else float(number)
        if target == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float | Decimal) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
        if target == "date":
            if isinstance(value, datetime):
                # an instant's date in UTC (as epoch numbers below, and as JavaScript's
                # toISOString), not in whatever zone the database session is set to
                if value.tzinfo is not None:
                    value = value.astimezone(UTC)
                return value.date()
            if isinstance(value, date):
                return value
            if isinstance(value, str):
                text = value.strip().replace("Z", "+00:00")
                return (datetime.fromisoformat(text).date() if "T" in text or " " in text
                        else date.fromisoformat(text))
            if isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value / 1000, tz=UTC).date()  # epoch ms, as JS
    except (ValueError, InvalidOperation, OverflowError, OSError):
        pass
    shown = repr(value) if isinstance(value, str | int | float) else type(value).__name__
    raise FieldError("CAST_ERROR", f"cannot cast {shown[:80]} to {target}")


#: the portable kind a cast's values have
CAST_KINDS: dict[str, str] = {
    "string": "text", "number": "float", "boolean": "boolean", "date": "date",
}


def _map_key(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(plain(value))


def declared_kind(m: FieldMapping) -> str | None:
    """The kind a mapping gives its target whatever the source holds (a cast, a constant),
    or None when only the source's type can tell."""
    t = m.transform
    if isinstance(t, CastTransform):
        return CAST_KINDS[t.targetType]
    if isinstance(t, ConstantTransform):
        return _kind_of_constant(t.value)
    return None


def _kind_of_constant(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "text"


class RecordMapper:
    """The compiled mapping of one sync."""

    def __init__(
        self,
        config: DataSyncConfig,
        source: Description,
        lookups: LookupLoader,
        *,
        cache_lookups: bool = True,
    ) -> None:
        self.config = config
        self.source = source
        self._lookups = lookups
        self._cache_lookups = cache_lookups
        self._lookup_cache: dict[tuple[str, str, str], Mapping[Any, Any]] = {}
        #: the destination's column kinds (set once it is described; missing: created text)
        self.target_kinds: dict[str, str] = {}
        wanted = config.source.fields
        available = list(source.fields)
        if wanted is not None:
            missing = [f for f in wanted if f not in source.fields]
            if missing:
                raise FieldError(
                    "UNKNOWN_FIELD",
                    f"source.fields names {', '.join(missing)}, not columns of the source "
                    f"(columns: {', '.join(available)})",
                )
            available = list(wanted)
        self.available = available
        self.entries: list[FieldMapping] = config.destination.field_mappings() or [
            FieldMapping(source=f, target=f) for f in available
        ]
        for i, m in enumerate(self.entries):
            needs_source = not isinstance(m.transform, ConstantTransform)
            if needs_source and m.source not in available:
                where = "source.fields" if wanted is not None else "the source"
                raise FieldError(
                    "UNKNOWN_FIELD",
                    f"destination.mapping[{i}].source '{m.source}' is not a field of {where} "
                    f"(fields: {', '.join(available)})",
                )
        self.targets = [m.target for m in self.entries]
        #: destination field -> the source field it copies unchanged (no transform, no default)
        self.plain_sources = {m.target: m.source for m in self.entries
                              if m.transform is None and "defaultValue" not in m.model_fields_set}
        #: (source, destination) of every field when the mapping only renames, else None
        self.renames = ([(s, t) for t, s in self.plain_sources.items()]
                        if len(self.plain_sources) == len(self.entries) else None)
        #: whether every entry is a column operation (`arrow_mapping`): Arrow pages are
        #: mapped a column at a time
        self.columnar = all(arrow_mapping.column_operation(m) for m in self.entries)
        self.source_fields = list(dict.fromkeys(
            [m.source for m in self.entries if m.source in source.fields]
        ))
        # Expressions may read any source field, so read the fields they name too.
        self._programs: dict[int, Any] = {}
        for i, m in enumerate(self.entries):
            if isinstance(m.transform, JavascriptTransform):
                expr = m.transform.expression
                if expr.source is None:
                    raise FieldError("EXPRESSION", f"destination.mapping[{i}]: an expression "
                                     "given only as `ast` cannot run; give `source`")
                self._programs[i] = compile_expression(expr.source)
        if self._programs:
            self.source_fields = list(dict.fromkeys([*self.source_fields, *available]))

    # -- the destination's fields, for creating a missing record set ------------------
    def target_types(self) -> list[FieldInfo]:
        """Each target field with the source field's own type where the value passes
        unchanged (a rename, or a map over text), else the portable kind of its values."""
        out: list[FieldInfo] = []
        for m in self.entries:
            t = m.transform
            src = self.source.fields.get(m.source)
            if isinstance(t, CastTransform):
                info = FieldInfo(m.target, kind=CAST_KINDS[t.targetType])
            elif isinstance(t, ConstantTransform):
                info = FieldInfo(m.target, kind=_kind_of_constant(t.value))
            elif isinstance(t, MapTransform) and src is not None and src.kind == "text":
                info = FieldInfo(m.target, src.type, kind="text")
            elif t is not None or src is None:
                info = FieldInfo(m.target, kind="text")
            else:
                info = FieldInfo(m.target, src.type, kind=src.kind)
            out.append(info)
        return out

    # -- mapping ---------------------------------------------------------------------------
    def _lookup(self, t: LookupTransform) -> Mapping[Any, Any]:
        key = (t.table, t.keyField, t.valueField)
        if key not in self._lookup_cache:
            table = self._lookups(*key)
            self._lookup_cache[key] = {_map_key(k): v for k, v in table.items()}
        return self._lookup_cache[key]

    def start_batch(self) -> None:
        if not self._cache_lookups:
            self._lookup_cache.clear()

    def map_arrow(self, page: Any) -> Any:
        """An Arrow page mapped a column at a time (a table of the target fields), or None
        where it takes the record path."""
        if not self.columnar:
            return None
        if self.renames is not None:
            return page.select([s for s, _ in self.renames]).rename_columns(
                [t for _, t in self.renames])
        return arrow_mapping.mapped(self.entries, page)

    def map(self, record: Mapping[str, Any]) -> tuple[Record, list[FieldProblem]]:
        if self.renames is not None:  # only renames: nothing can fail, nothing to compute
            return {t: record.get(s) for s, t in self.renames}, []
        out: Record = {}
        problems: list[FieldProblem] = []
        for i, m in enumerate(self.entries):
            try:
                out[m.target] = value = self._value(i, m, record)
                if i in self._programs and isinstance(value, list | dict):
                    self._check_container(m.target, value)
            except FieldError as exc:
                problems.append(FieldProblem(m.target, exc.code, str(exc)))
            except EvaluationError as exc:
                problems.append(FieldProblem(m.target, "EXPRESSION_ERROR", str(exc)))
        return out, problems

    def _check_container(self, target: str, value: list[Any] | dict[str, Any]) -> None:
        """An expression's list or map fits only a JSON column: anywhere else the record is
        errored here, rather than the database refusing its whole batch."""
        kind = self.target_kinds.get(target, "text")
        if kind not in ("json", "unknown"):
            shown = "a list" if isinstance(value, list) else "a map"
            raise FieldError("EXPRESSION_ERROR", f"the expression returned {shown}, and "
                                                 f"{target} holds {kind}")

    def _value(self, i: int, m: FieldMapping, record: Mapping[str, Any]) -> Any:
        t = m.transform
        if isinstance(t, ConstantTransform):
            return t.value
        value = record.get(m.source)
        if value is None and "defaultValue" in m.model_fields_set:
            value = m.defaultValue
        if t is None:
            return value
        if isinstance(t, CastTransform):
            return cast_value(value, t.targetType)
        if isinstance(t, MapTransform):
            return t.mappings.get(_map_key(value), value) if value is not None else value
        if isinstance(t, LookupTransform):
            return None if value is None else self._lookup(t).get(_map_key(value))
        program = self._programs[i]
        variables: dict[str, Any] = {k: v for k, v in record.items() if _IDENT.match(k)}
        variables.update(value=value, record=dict(record))
        return program.evaluate(variables)


def resolve_names(
    config: DataSyncConfig, names: Sequence[str], targets: Sequence[str]
) -> list[str]:
    """matchKey-style names (source or destination fields) as destination fields."""
    out = []
    for name in names:
        found = resolve_match_key(config, name) if config.destination.mapping else (
            [name] if name in targets else [])
        out.append(found[0] if found else name)
    return out
