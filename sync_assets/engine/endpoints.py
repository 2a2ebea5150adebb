"""Resolve a sync's endpoints to connectors: ObjectStack objects and connector instances."""

from __future__ import annotations

from ..connectors.base import ConnectorError
from ..connectors.settings import SqlConnectorSettings
from ..connectors.sql import SqlTable
from ..project import Project
from ..spec.config import DataDestinationConfig, DataSourceConfig


def open_endpoint(project: Project, endpoint: DataSourceConfig | DataDestinationConfig) -> SqlTable:
    if endpoint.object is not None:
        settings = project.objectstack
        return SqlTable(
            settings.url.get_secret_value(),
            endpoint.object,
            settings.db_schema,
            display=f"objectstack.{endpoint.object}",
        )
    cid = endpoint.connectorInstanceId
    connector = project.connectors.get(cid or "")
    if isinstance(connector, SqlConnectorSettings) and endpoint.externalResource:
        return SqlTable(
            connector.url.get_secret_value(),
            endpoint.externalResource,
            connector.db_schema,
            display=f"{cid}.{endpoint.externalResource}",
            engine_options=connector.engine_options,
        )
    raise ConnectorError(f"connector instance '{cid}' cannot be opened")
