"""Settings of the Google Sheets connector (`type: google_sheets`): which spreadsheet, the
service account that reaches it (its JSON key, a secret: a file path or the JSON itself,
usually `${GOOGLE_SHEETS_KEY}` from the environment), the API's root URL (overridable for
tests), per-column type overrides, the key column, and the pacing of calls.

This module imports only Pydantic (no Google client), so a project that never opens a sheet
pays nothing for it at start-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from ..base import ConnectorSettingsBase, FieldKind

TYPE_NAME = "google_sheets"
DEFAULT_ROOT_URL = "https://sheets.googleapis.com/"
#: what a service-account key must hold for the JWT grant
KEY_FIELDS = ("type", "client_email", "private_key", "token_uri")


def parse_key(text: str) -> dict[str, Any]:
    """A service-account key from inline JSON or from the file it names. ValueError (with
    no part of the key in its message) when it is neither."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            info = json.loads(stripped)
        except ValueError:
            raise ValueError("is inline JSON that does not parse (a service-account key "
                             "file's content, or the path of that file)") from None
    else:
        path = Path(stripped).expanduser()
        if not path.is_file():
            raise ValueError("names no file (give the path of a service-account JSON key, "
                             "or its JSON content)")
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            raise ValueError("names a file that is no JSON service-account key") from None
    if not isinstance(info, dict):
        raise ValueError("is no JSON object (a service-account key)")
    missing = [f for f in KEY_FIELDS if not info.get(f)]
    if missing:
        raise ValueError(f"is a key without {', '.join(missing)} (a service-account key, "
                         "from the Google Cloud console: IAM, Service accounts, Keys)")
    if info["type"] != "service_account":
        raise ValueError("is a key of another type than service_account")
    return info


class GoogleSheetsSettings(ConnectorSettingsBase):
    """One spreadsheet; `externalResource` names a tab (its title). Row 1 of the tab holds
    the field names; every row below it is one record."""

    type: Literal["google_sheets"]
    spreadsheet_id: str = Field(alias="spreadsheetId", min_length=1,
                                description="the id in the sheet's URL (/d/<id>/edit)")
    service_account_key: SecretStr = Field(
        alias="serviceAccountKey",
        description="the service account's JSON key: a file path or the JSON itself "
                    "(share the spreadsheet with the account's client_email)")
    root_url: str = Field(default=DEFAULT_ROOT_URL, alias="rootUrl",
                          description="the API's root URL (a test server's, say)")
    key: list[str] = Field(default_factory=list,
                           description="the column(s) that identify a record")
    columns: dict[str, FieldKind] = Field(
        default_factory=dict, description="portable kinds that override what is inferred "
                                          "from the values")
    requests_per_minute: float = Field(
        default=60.0, gt=0, alias="requestsPerMinute",
        description="calls per minute to pace to (Sheets: 60 per minute per user)")
    max_batch_rows: int = Field(
        default=1000, ge=1, le=10000, alias="maxBatchRows",
        description="rows per values.append / values.batchUpdate call")
    ordered_reads: bool = Field(
        default=False, alias="orderedReads",
        description="as a source, read a changeTrackingField in its order (the tab is read "
                    "whole and sorted here)")
    timeout: float = Field(default=60.0, gt=0, description="seconds per HTTP call")
    max_retries: int = Field(default=6, ge=0, le=20, alias="maxRetries",
                             description="retries of 429 / 5xx / timeouts per call")

    @field_validator("spreadsheet_id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if "/" in value:
            raise ValueError("must be the spreadsheet's id (the part after /d/ in its URL), "
                             "not a URL")
        return value

    @field_validator("service_account_key")
    @classmethod
    def _usable_key(cls, value: SecretStr) -> SecretStr:
        parse_key(value.get_secret_value())
        return value

    @field_validator("root_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") + "/"

    @field_validator("key", mode="before")
    @classmethod
    def _one_key(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def key_info(self) -> dict[str, Any]:
        """The parsed service-account key (secrets inside: never log it)."""
        return parse_key(self.service_account_key.get_secret_value())


def kinds(settings: GoogleSheetsSettings) -> set[str]:
    return {"googlesheets"}
