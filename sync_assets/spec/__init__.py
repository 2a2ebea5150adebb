"""The ObjectStack Level 1 sync protocol as Pydantic models: parse, validate, emit."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from .config import (
    ConflictResolution,
    DataDestinationConfig,
    DataSourceConfig,
    DataSyncConfig,
    SyncDirection,
    SyncMode,
    SyncOperation,
)
from .errors import Problem, SyncConfigError, format_path, problems_from_validation
from .expression import Expression
from .mapping import (
    CastTransform,
    ConstantTransform,
    FieldMapping,
    JavascriptTransform,
    LookupTransform,
    MapTransform,
)
from .result import SyncErrorItem, SyncExecutionResult, SyncExecutionStatus, SyncStats

__all__ = [
    "CastTransform",
    "ConflictResolution",
    "ConstantTransform",
    "DataDestinationConfig",
    "DataSourceConfig",
    "DataSyncConfig",
    "Expression",
    "FieldMapping",
    "JavascriptTransform",
    "LookupTransform",
    "MapTransform",
    "Problem",
    "SyncConfigError",
    "SyncDirection",
    "SyncErrorItem",
    "SyncExecutionResult",
    "SyncExecutionStatus",
    "SyncMode",
    "SyncOperation",
    "SyncStats",
    "parse_execution_result",
    "parse_sync_config",
]


M = TypeVar("M", DataSyncConfig, SyncExecutionResult)


def _parse(model: type[M], data: Any, file: str | None) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SyncConfigError(
            Problem(format_path(loc), msg, file) for loc, msg in problems_from_validation(exc)
        ) from None


def parse_sync_config(data: Any, *, file: str | None = None) -> DataSyncConfig:
    """Validate one DataSyncConfig as `@objectstack/spec` 16.1.0 does; raise SyncConfigError."""
    return _parse(DataSyncConfig, data, file)


def parse_execution_result(data: Any) -> SyncExecutionResult:
    """Validate one SyncExecutionResult as `@objectstack/spec` 16.1.0 does."""
    return _parse(SyncExecutionResult, data, None)
