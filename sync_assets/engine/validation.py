"""The sync's `validation` rules: required and unique fields, custom CEL conditions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..spec import DataSyncConfig
from .cel import EvaluationError, compile_expression
from .mapping import FieldProblem, resolve_names
from .records import plain


class RecordValidator:
    """Checks mapped records; `unique` remembers values across the whole run."""

    def __init__(self, config: DataSyncConfig, targets: list[str]) -> None:
        rules = config.validation
        self.required = resolve_names(config, rules.required or [], targets) if rules else []
        self.unique = resolve_names(config, rules.unique or [], targets) if rules else []
        self.custom = [
            (rule.name, compile_expression(rule.condition.source or "true"), rule.message)
            for rule in ((rules.custom or []) if rules else [])
        ]
        self._seen: dict[str, dict[Any, str]] = {f: {} for f in self.unique}
        self.targets = targets

    def source_fields(self, available: list[str]) -> list[str]:
        """Source columns the rules read beyond the mapped ones: unmapped fields they name,
        every field when a condition reads `record`."""
        names = {f for f in [*self.required, *self.unique] if f not in self.targets}
        for _, program, _ in self.custom:
            variables = program.variables
            if "record" in variables:
                return list(available)
            names |= set(variables)
        return [f for f in available if f in names]

    @property
    def empty(self) -> bool:
        return not (self.required or self.unique or self.custom)

    def check(
        self, record_id: str, mapped: Mapping[str, Any], source: Mapping[str, Any]
    ) -> list[FieldProblem]:
        if self.empty:
            return []
        problems: list[FieldProblem] = []
        for f in self.required:
            value = mapped.get(f, source.get(f))
            if value is None or (isinstance(value, str) and not value.strip()):
                problems.append(FieldProblem(f, "REQUIRED", f"{f} is required"))
        for f in self.unique:
            value = mapped.get(f, source.get(f))
            if value is None:
                continue
            seen = self._seen[f]
            key = plain(value)
            first = seen.setdefault(key, record_id)
            if first != record_id:
                problems.append(FieldProblem(
                    f, "UNIQUE", f"{f} must be unique: record {first} has the same value"
                ))
        for name, program, message in self.custom:
            variables = {**source, **mapped, "record": dict(source)}
            try:
                ok = program.evaluate(variables)
            except EvaluationError as exc:
                problems.append(FieldProblem(name, "VALIDATION", f"{message} ({exc})"))
                continue
            if ok is not True:
                problems.append(FieldProblem(name, "VALIDATION", message))
        return problems
