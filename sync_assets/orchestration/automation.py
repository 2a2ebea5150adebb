"""Schedules and realtime sensors: when a sync's job runs."""

from __future__ import annotations

from typing import TypeAlias

import dagster as dg

from ..engine.observe import change_token
from ..project import Project, SyncDefinition
from .assets import SYNC_TAG

# A sync's job: resolved where its assets' neighbours are all ours (definitions.py), else
# left for Dagster to resolve against the whole code location.
SyncJob: TypeAlias = "dg.JobDefinition | dg.UnresolvedAssetJobDefinition"


def build_job(
    sync: SyncDefinition, keys: list[dg.AssetKey]
) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name=f"sync__{sync.name}__job",
        selection=dg.AssetSelection.assets(*keys),
        description=f"Run sync {sync.name}",
        tags={SYNC_TAG: sync.name},
    )


def build_schedule(
    sync: SyncDefinition, job: SyncJob, timezone: str
) -> dg.ScheduleDefinition | None:
    schedule = sync.config.schedule
    if schedule is None or schedule.source is None:
        return None
    return dg.ScheduleDefinition(
        name=f"sync__{sync.name}__schedule",
        cron_schedule=schedule.source,
        job=job,
        execution_timezone=timezone,
        tags={SYNC_TAG: sync.name},
        default_status=(dg.DefaultScheduleStatus.RUNNING if sync.config.enabled
                        else dg.DefaultScheduleStatus.STOPPED),
        description=f"{sync.name} on '{schedule.source}' ({timezone})",
    )


def build_realtime_sensor(
    project: Project, sync: SyncDefinition, job: SyncJob,
    interval_seconds: int,
) -> dg.SensorDefinition | None:
    """Polls the source's change tracking; asks for a run only when something changed."""
    if sync.config.syncMode != "realtime":
        return None
    name = sync.name

    @dg.sensor(
        name=f"sync__{name}__realtime",
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=(dg.DefaultSensorStatus.RUNNING if sync.config.enabled
                        else dg.DefaultSensorStatus.STOPPED),
        description=f"Runs {name} when its source changes (polled every {interval_seconds}s)",
    )
    def _realtime(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        token = change_token(project, name)
        if token == context.cursor:
            return dg.SkipReason("no change in the source since the last run request")
        context.update_cursor(token)
        return dg.RunRequest(tags={SYNC_TAG: name, "sync_assets/change_token": token[:200]})

    return _realtime


def build_upstream_sensor(
    sync: SyncDefinition, job: SyncJob, upstream: dg.AssetKey,
    interval_seconds: int,
) -> dg.SensorDefinition | None:
    """`realtime` for a sync from an upstream asset's output: a run after each new
    materialization of that asset (its value is what the sync reads)."""
    if sync.config.syncMode != "realtime":
        return None
    name = sync.name

    @dg.asset_sensor(
        asset_key=upstream,
        name=f"sync__{name}__realtime",
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=(dg.DefaultSensorStatus.RUNNING if sync.config.enabled
                        else dg.DefaultSensorStatus.STOPPED),
        description=f"Runs {name} after each materialization of "
                    f"{upstream.to_user_string()}",
    )
    def _on_upstream(context: dg.SensorEvaluationContext,
                     event: dg.EventLogEntry) -> dg.RunRequest:
        return dg.RunRequest(run_key=context.cursor, tags={SYNC_TAG: name})

    return _on_upstream
