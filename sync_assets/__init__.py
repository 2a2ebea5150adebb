"""sync_assets: an executor for the ObjectStack Data Sync Protocol (Level 1) as Dagster assets."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .orchestration import DataSyncComponent, SyncTranslator, build_definitions
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
_PROJECT_NAMES = {"Project", "SyncDefinition", "load_project"}


def __getattr__(name: str) -> object:
    # Everything loads on first use: the engine and CLI never import Dagster, and
    # `sync-assets --help` imports neither pydantic nor SQLAlchemy.
    import importlib

    if name in _DAGSTER_NAMES:
        return getattr(importlib.import_module(".orchestration", __name__), name)
    if name in _PROJECT_NAMES:
        return getattr(importlib.import_module(".project", __name__), name)
    if name in __all__:
        return getattr(importlib.import_module(".spec", __name__), name)
    raise AttributeError(f"module 'sync_assets' has no attribute {name!r}")
