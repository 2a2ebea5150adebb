"""Settings of the HubSpot connector (`type: hubspot`): a private app's access token (a secret,
usually `${HUBSPOT_TOKEN}`), the API's base URL (overridable for sandboxes and tests) and the
request pace HubSpot allows a private app (100 requests per 10 seconds)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from ..base import ConnectorSettingsBase, SyncUse

DEFAULT_BASE_URL = "https://api.hubapi.com"


class HubSpotSettings(ConnectorSettingsBase):
    """A HubSpot account reached with a private app's token; `externalResource` names an
    object type: contacts, companies, deals, or a custom object's type id (2-1234567)."""

    type: Literal["hubspot"]
    token: SecretStr = Field(description="a private app's access token, e.g. ${HUBSPOT_TOKEN}")
    base_url: str = Field(default=DEFAULT_BASE_URL, alias="baseUrl",
                          description="the API's root, for a proxy, a sandbox or tests")
    requests_per_10s: int = Field(default=100, alias="requestsPer10s", ge=1, le=100_000,
                                  description="calls per 10 seconds to pace to (HubSpot's "
                                              "private app limit is 100, or 190 on some tiers)")
    searches_per_second: float = Field(default=5.0, alias="searchesPerSecond", gt=0,
                                       le=100_000, description="search calls a second to "
                                       "pace to (HubSpot allows 5 a second)")
    timeout: float = Field(default=30.0, gt=0, description="seconds per HTTP call")
    max_retries: int = Field(default=6, alias="maxRetries", ge=0, le=20,
                             description="retries of a 429, 5xx or timeout per call")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (HubSpot's is "
                             f"{DEFAULT_BASE_URL})")
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if not text.strip() or any(c.isspace() for c in text):
            raise ValueError("must be a private app's access token (no spaces; e.g. "
                             "token: ${HUBSPOT_TOKEN})")
        return value


def kinds(_settings: Any) -> set[str]:
    return {"hubspot"}


#: creates records, so cannot match by the id HubSpot assigns
_CREATING = frozenset({"insert", "upsert", "sync"})
#: filters a search's filter group takes: a key of more fields cannot be looked up
MAX_KEY_FIELDS = 10


def check_use(settings: HubSpotSettings, use: SyncUse) -> list[tuple[tuple[str, ...], str]]:
    """`ConnectorType.check_use`: what a sync cannot ask of HubSpot, as load-time errors."""
    found: list[tuple[tuple[str, ...], str]] = []
    if use.role == "read":
        return found
    if "hs_object_id" in use.match_key and use.operation in _CREATING:
        found.append((("destination", "matchKey"),
                      f"HubSpot assigns record ids (hs_object_id): {use.operation} cannot "
                      "create records matched by one; match by a property with unique values "
                      "(email for contacts, or a custom unique property)"))
    if len(use.match_key) > MAX_KEY_FIELDS:
        found.append((("destination", "matchKey"),
                      f"HubSpot finds records by at most {MAX_KEY_FIELDS} fields (the filters "
                      f"of one search group); this key has {len(use.match_key)}"))
    return found
