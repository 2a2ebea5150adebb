"""The Dagster layer: compiles a project into Definitions and reports engine results."""

from .assets import (
    ALLOW_MASS_DELETE_TAG,
    CHECK_NAME,
    CONFLICTS_CHECK_NAME,
    DRIFT_CHECK_NAME,
    FULL_REFRESH_TAG,
    STATUS_TAG,
    SYNC_TAG,
    SyncRunConfig,
)
from .component import DataSyncComponent
from .definitions import build_definitions
from .notify import SmtpNotifier
from .translator import SyncTranslator

__all__ = [
    "ALLOW_MASS_DELETE_TAG",
    "CHECK_NAME",
    "CONFLICTS_CHECK_NAME",
    "DRIFT_CHECK_NAME",
    "FULL_REFRESH_TAG",
    "STATUS_TAG",
    "SYNC_TAG",
    "DataSyncComponent",
    "SmtpNotifier",
    "SyncRunConfig",
    "SyncTranslator",
    "build_definitions",
]
