"""Resolve a sync's endpoints to connectors: ObjectStack objects and connector instances."""

from __future__ import annotations

from ..connectors.base import ConnectorError, Endpoint
from ..connectors.registry import connector_type
from ..project import Project
from ..spec.config import DataDestinationConfig, DataSourceConfig


def open_endpoint(project: Project, endpoint: DataSourceConfig | DataDestinationConfig
                  ) -> Endpoint:
    if endpoint.object is not None:
        settings = project.objectstack.as_connector()
        return connector_type(getattr(settings, "type", "")).open(
            settings, endpoint.object, f"objectstack.{endpoint.object}")
    cid = endpoint.connectorInstanceId
    connector = project.connectors.get(cid or "")
    if connector is None or not endpoint.externalResource:
        raise ConnectorError(f"connector instance '{cid}' cannot be opened")
    kind = connector_type(getattr(connector, "type", ""))
    return kind.open(connector, endpoint.externalResource, f"{cid}.{endpoint.externalResource}")
