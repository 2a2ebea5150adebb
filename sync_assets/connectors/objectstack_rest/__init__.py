"""A connector for the ObjectStack REST data API (`/api/v1`); so far only its HTTP client."""

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

__all__ = [
    "BATCH_LIMIT",
    "IMPORT_LIMIT",
    "AuthError",
    "NotFoundError",
    "ObjectStackClient",
    "ObjectStackError",
    "RequestRefused",
    "RowResult",
    "TransientError",
    "keyset_after",
]
