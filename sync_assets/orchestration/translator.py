"""How a sync looks in Dagster: its asset key, upstream key, kinds, tags and metadata.

Subclass `SyncTranslator` and override `get_asset_spec` (or one of the smaller hooks it calls)
to change any of it, in the style of dagster-sling's and dagster-dlt's translators.
"""

from __future__ import annotations

import functools
import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from croniter import croniter

from ..connectors.asset_source import AssetSourceSettings, asset_key_parts, asset_path
from ..connectors.registry import connector_type
from ..engine.direction import flows
from ..engine.mapping import declared_kind
from ..project import Project, SyncDefinition
from ..spec.config import DataDestinationConfig, DataSourceConfig

_TAG_KEY = re.compile(r"[^A-Za-z0-9_.-]")


class SyncTranslator:
    """Default mapping from a sync to Dagster's words."""

    def __init__(self, project: Project) -> None:
        self.project = project

    # -- keys -------------------------------------------------------------------------------
    def get_endpoint_key(self, endpoint: DataSourceConfig | DataDestinationConfig) -> dg.AssetKey:
        if endpoint.object is not None:
            return dg.AssetKey(["objectstack", endpoint.object])
        resource = endpoint.externalResource or ""
        instance = endpoint.connectorInstanceId or "external"
        conn = self.project.connectors.get(instance)
        if isinstance(conn, AssetSourceSettings):
            # an upstream asset's output: that asset's own key, which the user's asset has
            return dg.AssetKey(asset_key_parts(resource))
        parts = (connector_type(getattr(conn, "type", "")).asset_key(resource)
                 if conn is not None else resource.split("."))
        return dg.AssetKey([instance, *parts])

    def _flow(self, sync: SyncDefinition) -> tuple[str, str]:
        return flows(sync.config)[0]

    def get_asset_key(self, sync: SyncDefinition) -> dg.AssetKey:
        """The side the sync writes (the destination, unless the flow runs backwards)."""
        return self.get_endpoint_key(getattr(sync.config, self._flow(sync)[1]))

    def get_source_key(self, sync: SyncDefinition) -> dg.AssetKey:
        """The side the sync reads."""
        return self.get_endpoint_key(getattr(sync.config, self._flow(sync)[0]))

    # -- presentation --------------------------------------------------------------------------
    def get_kinds(self, sync: SyncDefinition) -> set[str]:
        kinds: set[str] = set()
        for endpoint in (sync.config.source, sync.config.destination):
            kinds |= self._endpoint_kinds(endpoint)
        return kinds

    def _endpoint_kinds(self, endpoint: DataSourceConfig | DataDestinationConfig) -> set[str]:
        """The kinds its connector type gives it (never read from a URL's secrets)."""
        if endpoint.object is not None:
            return {"objectstack"}
        conn = self.project.connectors.get(endpoint.connectorInstanceId or "")
        return connector_type(getattr(conn, "type", "")).kinds(conn) if conn is not None else set()

    def _endpoint_text(self, endpoint: DataSourceConfig | DataDestinationConfig) -> str:
        if isinstance(self.project.connectors.get(endpoint.connectorInstanceId or ""),
                      AssetSourceSettings):
            return f"the output of asset `{asset_path(endpoint.externalResource or '')}`"
        name = (f"objectstack.{endpoint.object}" if endpoint.object is not None
                else f"{endpoint.connectorInstanceId}.{endpoint.externalResource}")
        kinds = ", ".join(sorted(self._endpoint_kinds(endpoint)))
        return f"`{name}` ({kinds})" if kinds else f"`{name}`"

    def get_description(self, sync: SyncDefinition) -> str:
        c = sync.config
        lines = [c.description or c.label or f"Sync {c.name}"]
        read, written = self._flow(sync)
        lines.append(
            f"\n{c.direction} · {c.syncMode} · {c.destination.operation} · defined in "
            f"`{sync.file.name}`"
        )
        lines.append(f"\nreads {self._endpoint_text(getattr(c, read))} · writes "
                     f"{self._endpoint_text(getattr(c, written))}")
        return "\n".join(lines)

    def get_tags(self, sync: SyncDefinition) -> dict[str, str]:
        tags = {"sync_assets/operation": sync.config.destination.operation,
                "sync_assets/mode": sync.config.syncMode}
        for tag in sync.config.tags or []:
            key = _TAG_KEY.sub("_", tag)[:63]
            if key:
                tags[key] = ""
        return tags

    def get_group_name(self, sync: SyncDefinition) -> str | None:
        return "syncs"

    def get_automation_condition(self, sync: SyncDefinition) -> dg.AutomationCondition | None:
        """None by default: syncs run on their schedule or sensor. Return e.g.
        `dg.AutomationCondition.eager()` to run after the upstream asset updates."""
        return None

    def get_freshness_policy(self, sync: SyncDefinition) -> dg.FreshnessPolicy | None:
        """A scheduled sync is late when no run has succeeded within its longest interval
        between two schedule ticks plus a grace period (a tenth of it, at least 5 minutes),
        as the UI shows it; a sync without a schedule has no freshness expectation."""
        cron = sync.config.schedule.source if sync.config.schedule is not None else None
        window = _late_after(cron) if cron else None
        return None if window is None else dg.FreshnessPolicy.time_window(fail_window=window)

    def get_metadata(self, sync: SyncDefinition) -> dict[str, Any]:
        c = sync.config
        source_key = self.get_source_key(sync)
        mappings = c.destination.field_mappings()
        meta: dict[str, Any] = {
            "sync_assets/config": dg.MetadataValue.json(c.to_spec()),
            "sync_assets/file": str(sync.file),
            "sync_assets/operation": c.destination.operation,
            "sync_assets/sync_mode": c.syncMode,
            "sync_assets/direction": c.direction,
        }
        if c.destination.matchKey:
            meta["sync_assets/match_key"] = ", ".join(c.destination.matchKey)
        if c.schedule is not None and c.schedule.source:
            meta["sync_assets/schedule"] = c.schedule.source
        if c.label:
            meta["sync_assets/label"] = c.label
        for key, value in (c.metadata or {}).items():
            meta[f"sync_assets/metadata/{key}"] = (
                value if isinstance(value, str | int | float | bool) else dg.MetadataValue.json(
                    value if isinstance(value, dict | list) else str(value))
            )
        if mappings:
            meta["dagster/column_lineage"] = dg.TableColumnLineage(
                deps_by_column={
                    m.target: ([dg.TableColumnDep(asset_key=source_key, column_name=m.source)]
                               if m.transform is None or m.transform.type != "constant" else [])
                    for m in mappings
                }
            )
            # before a run only casts and constants tell a type; each run then reports the
            # destination's own column types in its materialization
            meta["dagster/column_schema"] = dg.TableSchema(
                columns=[dg.TableColumn(m.target, declared_kind(m) or "unknown",
                                        description=f"from {m.source}"
                                        + (f" ({m.transform.type})" if m.transform else ""))
                         for m in mappings]
            )
        return meta

    def get_source_spec(self, key: dg.AssetKey, readers: list[SyncDefinition]
                        ) -> dg.AssetSpec:
        """The external asset of a record set that syncs read and none writes: where it
        lives (kinds, description) and the fields the syncs read from it."""
        first = readers[0].config
        endpoint = getattr(first, self._flow(readers[0])[0])
        fields: list[str] = []
        for sync in readers:
            mappings = sync.config.destination.field_mappings() or []
            read = self._flow(sync)[0]
            names = ([m.source for m in mappings if m.source] if read == "source"
                     else [m.target for m in mappings])
            fields.extend(n for n in names if n not in fields)
        names = ", ".join(f"`{s.name}`" for s in readers)
        meta: dict[str, Any] = {"sync_assets/read_by": ", ".join(s.name for s in readers)}
        if fields:
            meta["dagster/column_schema"] = dg.TableSchema(
                columns=[dg.TableColumn(f, "unknown") for f in fields])
        return dg.AssetSpec(
            key=key,
            description=f"{self._endpoint_text(endpoint)}, read by {names}. Outside this "
                        "code location's control: declared so the lineage shows it.",
            kinds=self._endpoint_kinds(endpoint),
            group_name="sources",
            metadata=meta,
        )

    def get_asset_specs(self, sync: SyncDefinition) -> list[dg.AssetSpec]:
        """One spec per side the sync writes: two for a bidirectional sync, which writes
        both sides in one run (neither depends on the other: that would be a cycle)."""
        spec = self.get_asset_spec(sync)
        if sync.config.direction != "bidirectional":
            return [spec]
        # Column lineage needs an upstream asset; two sides of one sync have none.
        meta = {k: v for k, v in spec.metadata.items() if k != "dagster/column_lineage"}
        return [spec.replace_attributes(deps=[], metadata=meta),
                spec.replace_attributes(key=self.get_source_key(sync), deps=[], metadata=meta)]

    def get_asset_spec(self, sync: SyncDefinition) -> dg.AssetSpec:
        return dg.AssetSpec(
            key=self.get_asset_key(sync),
            deps=[self.get_source_key(sync)],
            description=self.get_description(sync),
            metadata=self.get_metadata(sync),
            tags=self.get_tags(sync),
            kinds=self.get_kinds(sync),
            group_name=self.get_group_name(sync),
            automation_condition=self.get_automation_condition(sync),
            freshness_policy=self.get_freshness_policy(sync),
        )


@functools.lru_cache(maxsize=4096)
def _late_after(cron: str) -> timedelta | None:
    """The longest interval between two of the cron's ticks (of its next 50) plus a grace
    period: computed once per expression (croniter takes 0.2 ms a tick, and projects of
    many syncs share a few schedules)."""
    if not croniter.is_valid(cron):
        return None
    ticks = croniter(cron, datetime(2026, 1, 1, tzinfo=UTC))
    times = [ticks.get_next(datetime) for _ in range(50)]
    interval = max(b - a for a, b in itertools.pairwise(times))
    return interval + max(timedelta(minutes=5), interval / 10)
