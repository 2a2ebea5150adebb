"""DataSyncConfig and its parts, as `@objectstack/spec` 16.1.0 defines them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, Strict

from .expression import CelExpressionInput, CronExpressionInput
from .mapping import FieldMapping, MappingInput
from .types import DropProto, NotNull, OptStr, SafeInt, SpecModel, StrList

SyncDirection = Literal["push", "pull", "bidirectional"]
SyncMode = Literal["full", "incremental", "realtime"]
ConflictResolution = Literal["source_wins", "destination_wins", "latest_wins", "manual", "merge"]
SyncOperation = Literal["insert", "update", "upsert", "delete", "sync"]

NAME_PATTERN = r"[a-z_][a-z0-9_]*"
"""Anchored with Rust-regex `$` (end of text, like JavaScript): a trailing newline fails."""


class DataSourceConfig(SpecModel):
    object: OptStr = None
    filters: Any = None
    fields: StrList = None
    connectorInstanceId: OptStr = None
    externalResource: OptStr = None


class DataDestinationConfig(SpecModel):
    object: OptStr = None
    connectorInstanceId: OptStr = None
    operation: SyncOperation
    mapping: Annotated[MappingInput | None, NotNull] = None
    externalResource: OptStr = None
    matchKey: StrList = None

    def field_mappings(self) -> list[FieldMapping]:
        """The mapping in list form (the record form is renames without transforms)."""
        if self.mapping is None:
            return []
        if isinstance(self.mapping, dict):
            return [FieldMapping(source=s, target=t) for s, t in self.mapping.items()]
        return list(self.mapping)


class RetryConfig(SpecModel):
    maxAttempts: SafeInt(ge=0) = 3  # type: ignore[valid-type]
    backoffMs: SafeInt(ge=0) = 30000  # type: ignore[valid-type]


class CustomValidationRule(SpecModel):
    name: Annotated[str, Strict()]
    condition: CelExpressionInput
    message: Annotated[str, Strict()]


class ValidationConfig(SpecModel):
    required: StrList = None
    unique: StrList = None
    custom: Annotated[list[CustomValidationRule] | None, NotNull] = None


class ErrorHandlingConfig(SpecModel):
    onValidationError: Literal["skip", "fail", "log"] = "skip"
    onSyncError: Literal["skip", "fail", "retry"] = "retry"
    notifyOnError: StrList = None


class OptimizationConfig(SpecModel):
    parallelBatches: Annotated[bool, Strict()] = False
    cacheEnabled: Annotated[bool, Strict()] = True
    compressionEnabled: Annotated[bool, Strict()] = False


class AuditConfig(SpecModel):
    logLevel: Literal["none", "error", "warn", "info", "debug"] = "info"
    retainLogsForDays: SafeInt(ge=1) = 30  # type: ignore[valid-type]
    trackChanges: Annotated[bool, Strict()] = True


class DataSyncConfig(SpecModel):
    name: Annotated[str, Strict(), Field(pattern=rf"^{NAME_PATTERN}$")]
    label: OptStr = None
    description: OptStr = None
    source: DataSourceConfig
    destination: DataDestinationConfig
    direction: SyncDirection = "push"
    syncMode: SyncMode = "incremental"
    conflictResolution: ConflictResolution = "latest_wins"
    schedule: Annotated[CronExpressionInput | None, NotNull] = None
    enabled: Annotated[bool, Strict()] = True
    changeTrackingField: OptStr = None
    batchSize: SafeInt(ge=1, le=10000) = 100  # type: ignore[valid-type]
    retry: Annotated[RetryConfig | None, NotNull] = None
    validation: Annotated[ValidationConfig | None, NotNull] = None
    errorHandling: Annotated[ErrorHandlingConfig | None, NotNull] = None
    optimization: Annotated[OptimizationConfig | None, NotNull] = None
    audit: Annotated[AuditConfig | None, NotNull] = None
    tags: StrList = None
    metadata: Annotated[dict[str, Any] | None, NotNull, DropProto] = None

    # Effective settings for the engine: the spec's nested defaults apply only when the parent
    # is present, but at run time an absent parent means "all defaults".
    @property
    def effective_retry(self) -> RetryConfig:
        return self.retry or RetryConfig()

    @property
    def effective_error_handling(self) -> ErrorHandlingConfig:
        return self.errorHandling or ErrorHandlingConfig()

    @property
    def effective_optimization(self) -> OptimizationConfig:
        return self.optimization or OptimizationConfig()

    @property
    def effective_audit(self) -> AuditConfig:
        # No `audit` section means no audit trail: the change log costs a write per record,
        # so it is kept only when asked for (`audit: {}` keeps it, trackChanges defaulting on).
        return self.audit or AuditConfig.model_validate({"trackChanges": False})
