"""Connectors: the systems a sync reads from and writes to, behind one contract (base.py)."""

from .base import (
    BatchRefused,
    Capabilities,
    ConnectorError,
    ConnectorSettingsBase,
    ConnectorType,
    Description,
    Endpoint,
    FieldInfo,
    ReadRequest,
    Refusal,
    TransientError,
    WriteResult,
)
from .registry import connector_type, connector_types, register
from .settings import (
    ConnectorSettings,
    ObjectStackSettings,
    SqlConnectorSettings,
    StateSettings,
)

__all__ = [
    "BatchRefused",
    "Capabilities",
    "ConnectorError",
    "ConnectorSettings",
    "ConnectorSettingsBase",
    "ConnectorType",
    "Description",
    "Endpoint",
    "FieldInfo",
    "ObjectStackSettings",
    "ReadRequest",
    "Refusal",
    "SqlConnectorSettings",
    "StateSettings",
    "TransientError",
    "WriteResult",
    "connector_type",
    "connector_types",
    "register",
]
