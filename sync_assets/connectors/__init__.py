"""Connectors: the systems a sync reads from and writes to, behind one small interface."""

from .settings import (
    CONNECTOR_TYPES,
    ConnectorSettings,
    ObjectStackSettings,
    SqlConnectorSettings,
    StateSettings,
)

__all__ = [
    "CONNECTOR_TYPES",
    "ConnectorSettings",
    "ObjectStackSettings",
    "SqlConnectorSettings",
    "StateSettings",
]
