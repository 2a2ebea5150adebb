"""How a project names its systems: the ObjectStack datastore and connector instances.

These shapes are ours, not the protocol's (the protocol leaves credentials outside the sync
config), so unknown keys are errors here: they are typos. URLs are secrets: they carry passwords.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .base import ConnectorSettingsBase


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectStackSettings(_Settings):
    """Where ObjectStack objects live: tables in one SQL database."""

    url: SecretStr = Field(
        default=SecretStr("sqlite:///objectstack.db"),
        description="SQLAlchemy URL; a relative SQLite path is relative to the project file",
    )
    db_schema: str | None = Field(default=None, alias="schema")
    api_key: SecretStr | None = Field(
        default=None, alias="apiKey",
        description="with an http(s) url: an API key of the ObjectStack server")

    @property
    def is_server(self) -> bool:
        """An http(s) URL names the ObjectStack server (its REST data API); any other URL
        names the datastore's database, reached directly."""
        return self.url.get_secret_value().startswith(("http://", "https://"))

    @model_validator(mode="after")
    def _key_with_server(self) -> ObjectStackSettings:
        if self.is_server and self.api_key is None:
            raise ValueError("an http(s) url is the ObjectStack server, which needs `apiKey` "
                             "(e.g. apiKey: ${OBJECTSTACK_API_KEY})")
        if not self.is_server and self.api_key is not None:
            raise ValueError("`apiKey` is for an http(s) url (the ObjectStack server); a "
                             "database url carries its own credentials")
        return self

    def as_connector(self) -> BaseModel:
        """The connector instance these settings describe: the server's REST API, or the
        datastore's database."""
        if self.is_server:
            from .objectstack_rest.settings import ObjectStackRestSettings

            assert self.api_key is not None
            return ObjectStackRestSettings.model_validate(
                {"type": "objectstack", "url": self.url.get_secret_value(),
                 "apiKey": self.api_key})
        return SqlConnectorSettings.model_validate(
            {"type": "sql", "url": self.url, "schema": self.db_schema})


class SqlConnectorSettings(ConnectorSettingsBase):
    """Any database SQLAlchemy reaches; `externalResource` is a table, optionally schema.table."""

    type: Literal["sql"]
    url: SecretStr
    db_schema: str | None = Field(default=None, alias="schema")
    engine_options: dict[str, Any] = Field(default_factory=dict, alias="engineOptions")


#: the settings of any connector instance: each type's own model (see registry.py)
ConnectorSettings = BaseModel


class StateSettings(_Settings):
    """Where the sync state (cursors, fingerprints of synced records) is kept.

    `destination` (the default) keeps it in the destination database when that is SQL, so it
    commits in the same transaction as the data; `url` names one database for all state.
    """

    url: SecretStr | None = None
    db_schema: str | None = Field(default=None, alias="schema")
