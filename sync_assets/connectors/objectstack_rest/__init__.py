"""A connector for the ObjectStack REST data API (`/api/v1`): its HTTP client (client.py) and
the endpoint of one object behind the connector contract (connector.py)."""

from sync_assets.connectors.objectstack_rest.client import (
    BATCH_LIMIT,
    IMPORT_LIMIT,
    AuthError,
    NotFoundError,
    ObjectStackClient,
    ObjectStackError,
    RequestRefused,
    RowResult,
    TransientError,
    keyset_after,
)
from sync_assets.connectors.objectstack_rest.connector import (
    ObjectStackRestTable,
    Translation,
    close_clients,
    field_kind,
    get_client,
    open_rest,
    translate_filter,
)

__all__ = [
    "BATCH_LIMIT",
    "IMPORT_LIMIT",
    "AuthError",
    "NotFoundError",
    "ObjectStackClient",
    "ObjectStackError",
    "ObjectStackRestTable",
    "RequestRefused",
    "RowResult",
    "TransientError",
    "Translation",
    "close_clients",
    "field_kind",
    "get_client",
    "keyset_after",
    "open_rest",
    "translate_filter",
]
