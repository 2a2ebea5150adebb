"""The connector types that ship with sync_assets."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .asset_source.settings import TYPE_NAME as ASSET_SOURCE_TYPE
from .asset_source.settings import AssetSourceSettings, asset_key_parts
from .asset_source.settings import kinds as asset_source_kinds
from .base import ConnectorType
from .files.settings import FilesSettings
from .files.settings import kinds as files_kinds
from .memory import MemorySettings
from .objectstack_rest.settings import ObjectStackRestSettings
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


def _opener(module: str, name: str) -> Callable[[Any, str, str], Any]:
    """Opens endpoints with `module.name`, importing the module (and what it needs, e.g. an
    HTTP stack) only when a project opens one."""
    def open_endpoint(settings: Any, resource: str, display: str) -> Any:
        found = getattr(importlib.import_module(module, __package__), name)
        return found(settings, resource, display)

    return open_endpoint


MEMORY = ConnectorType(
    name="memory",
    settings=MemorySettings,
    open=_opener(".memory", "open_memory"),
    kinds=lambda s: {"memory"},
    summary="record sets held in this process (store); for tests and examples",
    resource_hint="the record set to use",
)

OBJECTSTACK = ConnectorType(
    name="objectstack",
    settings=ObjectStackRestSettings,
    open=_opener(".objectstack_rest.connector", "open_rest"),
    kinds=lambda s: {"objectstack"},
    summary="an ObjectStack server's REST data API (url, apiKey)",
    resource_hint="the ObjectStack object to use (its name, e.g. contact)",
)

def file_asset_key(resource: str) -> list[str]:
    """A file's asset key parts: its folders and its name without extension or wildcards
    (`crm/contacts/*.csv` -> crm, contacts), so an upstream asset keyed the same way runs
    first."""
    parts = [p for p in resource.replace("\\", "/").split("/") if p and p != "."]
    if parts:
        stem = parts[-1].split(".", 1)[0]
        parts[-1] = stem
    cleaned = [p for p in parts if p and not any(c in p for c in "*?[")]
    return cleaned or ["files"]


FILES = ConnectorType(
    name="files",
    settings=FilesSettings,
    open=_opener(".files.connector", "open_files"),
    kinds=files_kinds,
    summary="CSV, JSON Lines or Parquet files under any fsspec URL (url, format, "
            "storageOptions)",
    resource_hint="a file, folder or glob under the url (e.g. contacts/*.csv)",
    asset_key=file_asset_key,
)

DAGSTER_ASSET = ConnectorType(
    name=ASSET_SOURCE_TYPE,
    settings=AssetSourceSettings,
    open=_opener(".asset_source.connector", "open_asset_source"),
    kinds=asset_source_kinds,
    summary="the output of an upstream Dagster asset (a pandas DataFrame or an Arrow table), "
            "read only, inside Dagster (key)",
    resource_hint="the upstream asset's key path (e.g. analytics/churn_scores)",
    # the asset's own key: the Dagster layer keys this source by it, without the instance id
    asset_key=asset_key_parts,
    not_live="an upstream asset's output exists only inside a Dagster run",
)

#: registered by registry.py before any plugin (a plugin may replace one by its name)
BUILTIN = (SQL, MEMORY, OBJECTSTACK, FILES, DAGSTER_ASSET)

from .http.settings import HttpSettings  # noqa: E402  (appended: other types above)
from .http.settings import check_use as http_check_use  # noqa: E402
from .segment.settings import SegmentSettings  # noqa: E402
from .segment.settings import check_use as segment_check_use  # noqa: E402

SEGMENT = ConnectorType(
    name="segment", settings=SegmentSettings,
    open=_opener(".segment.connector", "open_segment"), kinds=lambda s: {"segment"},
    summary="a Segment source, written by identify calls (writeKey, baseUrl); destination "
            "only, operation upsert",
    resource_hint="a name for the profiles written (e.g. users)",
    check_use=segment_check_use,
)
HTTP = ConnectorType(
    name="http", settings=HttpSettings,
    open=_opener(".http.connector", "open_http"), kinds=lambda s: {"http"},
    summary="any JSON API over HTTP (baseUrl, auth, read with pagination, write endpoints)",
    resource_hint="the record set, filled into the paths' {resource}",
    check_use=http_check_use,
)
BUILTIN = (*BUILTIN, SEGMENT, HTTP)

from .google_sheets.settings import GoogleSheetsSettings  # noqa: E402
from .google_sheets.settings import kinds as google_sheets_kinds  # noqa: E402

GOOGLE_SHEETS = ConnectorType(
    name="google_sheets", settings=GoogleSheetsSettings,
    open=_opener(".google_sheets.connector", "open_tab"), kinds=google_sheets_kinds,
    summary="a tab of a Google spreadsheet, header row = fields (spreadsheetId, "
            "serviceAccountKey, key, columns)",
    resource_hint="the tab's title (e.g. Contacts)",
)
BUILTIN = (*BUILTIN, GOOGLE_SHEETS)

from .hubspot.settings import HubSpotSettings  # noqa: E402
from .hubspot.settings import check_use as hubspot_check_use  # noqa: E402
from .hubspot.settings import kinds as hubspot_kinds  # noqa: E402

HUBSPOT = ConnectorType(
    name="hubspot", settings=HubSpotSettings,
    open=_opener(".hubspot.connector", "open_hubspot"), kinds=hubspot_kinds,
    summary="HubSpot CRM v3 objects through a private app (token, baseUrl, requestsPer10s)",
    resource_hint="the object type (contacts, companies, deals, or a custom type id 2-...)",
    check_use=hubspot_check_use,
)
BUILTIN = (*BUILTIN, HUBSPOT)

from .salesforce.settings import SalesforceSettings  # noqa: E402
from .salesforce.settings import check_use as salesforce_check_use  # noqa: E402

SALESFORCE = ConnectorType(
    name="salesforce", settings=SalesforceSettings,
    open=_opener(".salesforce.connector", "open_salesforce"), kinds=lambda s: {"salesforce"},
    summary="Salesforce sObjects: SOQL reads, sObject Collections and Bulk API 2.0 writes "
            "(auth, clientId, clientSecret, loginUrl, instanceUrl)",
    resource_hint="the sObject's API name (e.g. Contact, or Person__c)",
    check_use=salesforce_check_use,
)
BUILTIN = (*BUILTIN, SALESFORCE)
