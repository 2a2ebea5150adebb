"""Settings of the Dagster asset source (`type: dagster_asset`), and how its
`externalResource` names the upstream asset's key. Pydantic only: loaded eagerly."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..base import ConnectorSettingsBase

#: the connector type's name, as a project's `type:` says it
TYPE_NAME = "dagster_asset"


class AssetSourceSettings(ConnectorSettingsBase):
    """The outputs of upstream Dagster assets; `externalResource` is an asset key path
    (`analytics/churn_scores`)."""

    type: Literal["dagster_asset"]
    key: list[str] = Field(
        default_factory=list,
        description="the columns that identify a record, unique in every output (none by "
                    "default: the sync's matchKey identifies records)")

    @field_validator("key", mode="before")
    @classmethod
    def _one_key(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("key", mode="after")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if any(not name for name in value):
            raise ValueError("a key column needs a name")
        if len(set(value)) != len(value):
            raise ValueError("names a column more than once")
        return value


def asset_key_parts(resource: str) -> list[str]:
    """The upstream asset's key from `externalResource`: its parts between slashes
    (`analytics/churn_scores` -> analytics, churn_scores), as Dagster writes a key."""
    return [p.strip() for p in resource.split("/") if p.strip()]


def asset_path(resource: str) -> str:
    """The one spelling of an asset key path (`/analytics//churn_scores ` ->
    `analytics/churn_scores`): what `provide` and the endpoint agree on."""
    return "/".join(asset_key_parts(resource))


def kinds(settings: AssetSourceSettings) -> set[str]:
    """Dagster kinds of the source side: what a pipeline computes, in Python."""
    return {"python"}
