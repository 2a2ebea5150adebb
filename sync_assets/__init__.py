"""sync_assets: an executor for the ObjectStack Data Sync Protocol (Level 1) as Dagster assets."""

from .project import Project, SyncDefinition, load_project
from .spec import (
    DataSyncConfig,
    SyncConfigError,
    SyncExecutionResult,
    parse_execution_result,
    parse_sync_config,
)

__all__ = [
    "DataSyncConfig",
    "Project",
    "SyncConfigError",
    "SyncDefinition",
    "SyncExecutionResult",
    "load_project",
    "parse_execution_result",
    "parse_sync_config",
]
