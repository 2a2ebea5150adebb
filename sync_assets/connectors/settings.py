"""How a project names its systems: the ObjectStack datastore and connector instances.

These shapes are ours, not the protocol's (the protocol leaves credentials outside the sync
config), so unknown keys are errors here: they are typos. URLs are secrets: they carry passwords.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectStackSettings(_Settings):
    """Where ObjectStack objects live: tables in one SQL database."""

    url: SecretStr = Field(
        default=SecretStr("sqlite:///objectstack.db"),
        description="SQLAlchemy URL; a relative SQLite path is relative to the project file",
    )
    db_schema: str | None = Field(default=None, alias="schema")


class SqlConnectorSettings(_Settings):
    """Any database SQLAlchemy reaches; `externalResource` is a table, optionally schema.table."""

    type: Literal["sql"]
    url: SecretStr
    db_schema: str | None = Field(default=None, alias="schema")
    engine_options: dict[str, Any] = Field(default_factory=dict, alias="engineOptions")


ConnectorSettings = Annotated[SqlConnectorSettings, Field(discriminator="type")]

CONNECTOR_TYPES: dict[str, type[_Settings]] = {"sql": SqlConnectorSettings}
"""Connector types this engine can run, by the `type` a project gives an instance."""


class StateSettings(_Settings):
    """Where the sync state (cursors, fingerprints of synced records) is kept.

    `destination` (the default) keeps it in the destination database when that is SQL, so it
    commits in the same transaction as the data; `url` names one database for all state.
    """

    url: SecretStr | None = None
    db_schema: str | None = Field(default=None, alias="schema")
