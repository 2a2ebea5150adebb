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
    "DataSyncComponent",
    "DataSyncConfig",
    "Project",
    "SyncConfigError",
    "SyncDefinition",
    "SyncExecutionResult",
    "SyncTranslator",
    "build_definitions",
    "load_project",
    "parse_execution_result",
    "parse_sync_config",
]


_DAGSTER_NAMES = {"DataSyncComponent", "SyncTranslator", "build_definitions"}


def __getattr__(name: str) -> object:
    # The Dagster layer loads on first use, so the engine and CLI never import Dagster.
    if name in _DAGSTER_NAMES:
        from . import orchestration

        return getattr(orchestration, name)
    raise AttributeError(f"module 'sync_assets' has no attribute {name!r}")
