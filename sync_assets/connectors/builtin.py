"""The connector types that ship with sync_assets."""

from __future__ import annotations

from typing import Any

from .base import ConnectorType
from .settings import SqlConnectorSettings

_SQL_KINDS = {"postgresql": "postgres", "postgres": "postgres", "sqlite": "sqlite",
              "mysql": "mysql", "mariadb": "mysql", "mssql": "mssql", "oracle": "oracle",
              "snowflake": "snowflake", "duckdb": "duckdb"}


def sql_kind(url: str) -> str:
    """The Dagster kind of a database URL, from its scheme alone (never its secrets)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return _SQL_KINDS.get(scheme, "sql")


def _open_sql(settings: SqlConnectorSettings, resource: str, display: str) -> Any:
    from .sql import SqlTable

    return SqlTable(settings.url.get_secret_value(), resource, settings.db_schema,
                    display=display, engine_options=settings.engine_options)


SQL = ConnectorType(
    name="sql",
    settings=SqlConnectorSettings,
    open=_open_sql,
    kinds=lambda s: {sql_kind(s.url.get_secret_value())},
    summary="any database SQLAlchemy reaches (url, schema, engineOptions)",
    resource_hint="the table to use, optionally as schema.table",
    appends_exactly_once=True,
)


def _open_memory(settings: Any, resource: str, display: str) -> Any:
    from .memory import open_memory

    return open_memory(settings, resource, display)


def _memory_settings() -> type:
    from .memory import MemorySettings

    return MemorySettings


MEMORY = ConnectorType(
    name="memory",
    settings=_memory_settings(),
    open=_open_memory,
    kinds=lambda s: {"memory"},
    summary="record sets held in this process (store); for tests and examples",
    resource_hint="the record set to use",
)


def _open_objectstack(settings: Any, resource: str, display: str) -> Any:
    from .objectstack_rest.connector import open_rest

    return open_rest(settings, resource, display)


def _objectstack_settings() -> type:
    from .objectstack_rest.settings import ObjectStackRestSettings

    return ObjectStackRestSettings


OBJECTSTACK = ConnectorType(
    name="objectstack",
    settings=_objectstack_settings(),
    open=_open_objectstack,
    kinds=lambda s: {"objectstack"},
    summary="an ObjectStack server's REST data API (url, apiKey)",
    resource_hint="the ObjectStack object to use (its name, e.g. contact)",
)

#: registered by registry.py before any plugin (a plugin may replace one by its name)
BUILTIN = (SQL, MEMORY, OBJECTSTACK)
