"""A connector for the ObjectStack REST data API (`/api/v1`): its HTTP client (client.py) and
the endpoint of one object behind the connector contract (connector.py).

Names load on first use: a project that never talks to a server does not pay for importing
the HTTP stack (httpx) at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "client": ("BATCH_LIMIT", "IMPORT_LIMIT", "AuthError", "NotFoundError", "ObjectStackClient",
               "ObjectStackError", "RequestRefused", "RowResult", "TransientError",
               "keyset_after"),
    "connector": ("ObjectStackRestTable", "Translation", "close_clients", "field_kind",
                  "get_client", "open_rest", "translate_filter"),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
