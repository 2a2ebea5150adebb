"""Settings of the files connector (`type: files`): where the files are (any fsspec URL), their
format, per-column type overrides, an optional key, and the storage options, which are secrets.

This module imports only Pydantic, so a project that never opens a file pays nothing for
pyarrow or fsspec at start-up; `kinds` (the Dagster kinds) lives here for the same reason.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from ..base import ConnectorSettingsBase, FieldKind

Format = Literal["csv", "jsonl", "parquet"]

#: file name endings and the format they mean (a setting `format` overrides them)
EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                                 ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
#: the file extension each format writes
WRITE_EXTENSION: dict[str, str] = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}

_SCHEME_KINDS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "abfs": "azure",
                 "abfss": "azure", "az": "azure"}


def format_of(name: str) -> Format | None:
    """The format a file name (or glob) says by its extension, if any."""
    return EXTENSIONS.get(posixpath.splitext(name.rstrip("/"))[1].lower())


def _hidden(value: Any) -> Any:
    """Every text inside storage options as a SecretStr (an endpoint, a key, a token):
    shown as ********** in reprs, logs and errors; numbers and flags stay as they are."""
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict):
        return {k: _hidden(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_hidden(v) for v in value]
    return value


def _revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _revealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revealed(v) for v in value]
    return value


def _texts(value: Any) -> list[str]:
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


class FilesSettings(ConnectorSettingsBase):
    """Files under one fsspec URL; `externalResource` is a file name, a folder or a glob
    relative to it (e.g. `contacts/*.csv`)."""

    type: Literal["files"]
    url: str = Field(description="any fsspec URL: file:///srv/exports, s3://bucket/crm, "
                                 "gs://..., abfs://...")
    format: Format | None = Field(
        default=None, description="csv, jsonl or parquet; default: the resource's extension")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, alias="storageOptions",
        description="fsspec storage options (endpoint_url, key, secret, ...): secrets")
    columns: dict[str, FieldKind] = Field(
        default_factory=dict, description="portable kinds that override what is inferred")
    key: list[str] = Field(default_factory=list,
                           description="the fields that identify a record (none by default)")
    delimiter: str = Field(default=",", min_length=1, max_length=1,
                           description="the CSV field delimiter")
    ordered_reads: bool = Field(
        default=False, alias="orderedReads",
        description="read a changeTrackingField in its order by sorting in memory what lies "
                    "within the run's bounds (for files that fit in memory)")
    file_columns: bool = Field(
        default=False, alias="fileColumns",
        description="add _file and _file_modified to every record; changeTrackingField: "
                    "_file_modified reads only new or changed files")

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        _, sep, rest = value.partition("://")
        if sep and "@" in rest.split("/", 1)[0]:
            raise ValueError("put credentials in storageOptions (secrets), not in the url")
        return value.rstrip("/") or value

    @field_validator("key", mode="before")
    @classmethod
    def _one_key(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("storage_options", mode="after")
    @classmethod
    def _secret(cls, value: dict[str, Any]) -> dict[str, Any]:
        return {k: _hidden(v) for k, v in value.items()}

    def relative_to(self, base: Path) -> FilesSettings:
        """These settings with a relative local path (`exports`, `./exports`,
        `file://exports`) made a folder beside the project file that names it, as a
        relative SQLite path is, whatever the working directory."""
        scheme, sep, rest = self.url.partition("://")
        if sep and scheme.lower() != "file":
            return self
        path = rest if sep else self.url
        if not path or path.startswith(("/", "~")):
            return self
        resolved = str((base / path).resolve())
        return self.model_copy(update={"url": f"file://{resolved}" if sep else resolved})

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0].lower() if "://" in self.url else "file"

    def storage(self) -> dict[str, Any]:
        """The storage options as fsspec takes them (secrets revealed: never log these)."""
        return {k: _revealed(v) for k, v in self.storage_options.items()}

    def secret_texts(self) -> list[str]:
        """Every text of the storage options, to redact from messages (but for a few
        letters, such as a region: replacing those would garble every message)."""
        return [t for t in _texts(self.storage_options) if len(t) >= 4]


def kinds(settings: FilesSettings) -> set[str]:
    """Dagster kinds: the format and the object store, from settings alone (never secrets)."""
    found = {settings.format} if settings.format else set()
    store = _SCHEME_KINDS.get(settings.scheme)
    if store:
        found.add(store)
    return found or {"files"}
