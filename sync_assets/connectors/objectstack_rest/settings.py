"""Settings of the ObjectStack REST connector (`type: objectstack`, or an http(s)
`objectstack.url`): the server's base URL and an API key, which is a secret."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from ..base import ConnectorSettingsBase


class ObjectStackRestSettings(ConnectorSettingsBase):
    """An ObjectStack server reached through its REST data API (`<url>/api/v1`)."""

    type: Literal["objectstack"]
    url: str = Field(description="the server's base URL, e.g. https://os.example.com")
    api_key: SecretStr = Field(alias="apiKey", description="an API key (osk_...)")
    timeout: float = Field(default=30.0, gt=0, description="seconds per HTTP call")
    max_retries: int = Field(default=5, ge=0, le=20, alias="maxRetries",
                             description="retries of 429/5xx/timeouts per call")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL of the ObjectStack server")
        return value.rstrip("/")
