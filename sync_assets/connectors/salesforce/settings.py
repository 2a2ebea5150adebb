"""Settings of the Salesforce connector (`type: salesforce`): the OAuth2 grant and its
credentials (secrets, usually `${VAR}` from the environment), the login and instance URLs
(overridable for sandboxes and tests), the API version and the Bulk API 2.0 threshold."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ..base import ConnectorSettingsBase, SyncUse

TYPE_NAME = "salesforce"

#: the credentials each grant needs (settings field names as written in a project)
GRANT_NEEDS: dict[str, tuple[str, ...]] = {
    "client_credentials": ("clientId", "clientSecret"),
    "refresh_token": ("clientId", "refreshToken"),
    "password": ("clientId", "clientSecret", "username", "password"),
}


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class SalesforceSettings(ConnectorSettingsBase):
    """A Salesforce org reached with an OAuth2 grant (a connected app's client id)."""

    type: Literal["salesforce"]
    auth: Literal["client_credentials", "refresh_token", "password"] = Field(
        default="client_credentials",
        description="the OAuth2 grant: client_credentials, refresh_token or password")
    client_id: str | None = Field(default=None, alias="clientId",
                                  description="the connected app's consumer key")
    client_secret: SecretStr | None = Field(default=None, alias="clientSecret",
                                            description="the connected app's consumer secret")
    refresh_token: SecretStr | None = Field(default=None, alias="refreshToken")
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = Field(
        default=None, alias="securityToken",
        description="appended to the password (username-password grant)")
    login_url: str = Field(
        default="https://login.salesforce.com", alias="loginUrl",
        description="where tokens come from: login.salesforce.com, test.salesforce.com for "
                    "sandboxes, or the org's My Domain URL (client credentials)")
    instance_url: str | None = Field(
        default=None, alias="instanceUrl",
        description="the org's API URL; by default the one the token response names")
    api_version: str = Field(default="62.0", alias="apiVersion", pattern=r"^\d{2,3}\.0$")
    bulk_threshold: int = Field(
        default=2000, ge=1, alias="bulkThreshold",
        description="batches of at least this many records go through Bulk API 2.0")
    bulk_poll_seconds: float = Field(default=2.0, gt=0, alias="bulkPollSeconds")
    bulk_timeout_seconds: float = Field(default=900.0, gt=0, alias="bulkTimeoutSeconds")
    timeout: float = Field(default=60.0, gt=0, description="seconds per HTTP call")
    max_retries: int = Field(default=6, ge=0, le=20, alias="maxRetries",
                             description="retries of 429/5xx/timeouts per call")

    @field_validator("login_url", "instance_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _http_url(value)

    @model_validator(mode="after")
    def _grant_credentials(self) -> SalesforceSettings:
        values = {"clientId": self.client_id, "clientSecret": self.client_secret,
                  "refreshToken": self.refresh_token, "username": self.username,
                  "password": self.password}
        missing = [name for name in GRANT_NEEDS[self.auth] if not values[name]]
        if missing:
            env = re.sub(r"(?<!^)(?=[A-Z])", "_", missing[0]).upper()
            raise ValueError(f"auth: {self.auth} needs {', '.join(missing)} (e.g. "
                             f"{missing[0]}: ${{SF_{env}}})")
        return self


def kinds(settings: SalesforceSettings) -> set[str]:
    return {"salesforce"}


#: operations that create records: Salesforce matches those by one External ID field
_CREATING = frozenset({"insert", "upsert", "sync"})


def check_use(settings: SalesforceSettings, use: SyncUse) -> list[tuple[tuple[str, ...], str]]:
    """`ConnectorType.check_use`: what a sync cannot ask of Salesforce, as load-time errors.
    (Whether the one key field is an External ID field needs the org's describe: the first
    write checks it.)"""
    if use.role == "read" or use.operation not in _CREATING:
        return []
    if list(use.match_key) == ["Id"]:
        return [(("destination", "matchKey"),
                 f"Salesforce assigns record Ids: {use.operation} cannot create records "
                 "matched by Id; match by an External ID field (e.g. External_Id__c)")]
    if len(use.match_key) > 1:
        return [(("destination", "matchKey"),
                 f"Salesforce upserts by one External ID field; this key has "
                 f"{len(use.match_key)} fields ({', '.join(use.match_key)}): add an External "
                 "ID field holding their combination")]
    return []
