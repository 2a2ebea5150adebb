"""Connector types by the `type:` a project gives a connector instance.

Each type brings its own settings model (validated when the project loads, so a typo is
reported with file, line and path), how to open one of its record sets as an `Endpoint`, and
the Dagster kinds it shows. Built-in types register here; other packages add theirs through
the entry-point group `sync_assets.connectors`, whose entries are `ConnectorType` objects (or
callables returning one):

    [project.entry-points."sync_assets.connectors"]
    memory = "my_package.connector:CONNECTOR"
"""

from __future__ import annotations

import threading
from importlib.metadata import entry_points

from . import builtin
from .base import ConnectorError, ConnectorType

ENTRY_POINT_GROUP = "sync_assets.connectors"


_TYPES: dict[str, ConnectorType] = {}
_LOCK = threading.Lock()
_LOADED = False


def register(connector: ConnectorType) -> ConnectorType:
    """Add (or replace) a connector type; returns it, so it can decorate a module constant."""
    with _LOCK:
        _TYPES[connector.name] = connector
    return connector


def unregister(name: str) -> None:
    with _LOCK:
        _TYPES.pop(name, None)


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        _LOADED = True
    for connector in builtin.BUILTIN:
        register(connector)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found = ep.load()
            connector = found() if callable(found) and not isinstance(found, ConnectorType) \
                else found
        except Exception as exc:  # a broken plugin must not stop every project
            raise ConnectorError(
                f"connector plugin '{ep.name}' ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}") from None
        if not isinstance(connector, ConnectorType):
            raise ConnectorError(f"connector plugin '{ep.name}' ({ep.value}) is not a "
                                 "sync_assets ConnectorType")
        register(connector)


def connector_types() -> dict[str, ConnectorType]:
    """Every connector type known now, by name."""
    _load()
    with _LOCK:
        return dict(_TYPES)


def connector_type(name: str) -> ConnectorType:
    types = connector_types()
    try:
        return types[name]
    except KeyError:
        raise ConnectorError(f"unknown connector type '{name}'; available: "
                             f"{', '.join(sorted(types))}") from None
