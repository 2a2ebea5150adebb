"""`build_definitions(project)`: a project's syncs as Dagster Definitions."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from ..project import Project, SyncDefinition, load_project
from .asset_inputs import asset_source, check_asset_source
from .assets import NOTIFIER_KEY, build_sync_asset
from .automation import (
    SyncJob,
    build_job,
    build_realtime_sensor,
    build_schedule,
    build_upstream_sensor,
)
from .notify import SmtpNotifier
from .shards import build_sharded_sync_asset
from .translator import SyncTranslator

DEFAULT_SENSOR_INTERVAL_SECONDS = 30


def build_definitions(
    project: Project | str | os.PathLike[str],
    *,
    translator: SyncTranslator | type[SyncTranslator] | None = None,
    timezone: str = "UTC",
    sensor_interval_seconds: int = DEFAULT_SENSOR_INTERVAL_SECONDS,
    notifier: SmtpNotifier | None = None,
    shards: Mapping[str, int] | None = None,
    with_definitions: dg.Definitions | None = None,
) -> dg.Definitions:
    """Assets, checks, jobs, schedules and sensors for every sync of a project, and an
    external asset (an AssetSpec, a definition of its own) for each record set the syncs
    read that none of them writes, so the lineage shows where each sync's data comes from.
    A sync whose source is an upstream asset's output (`type: dagster_asset`) takes that
    asset as an input instead: the asset is yours (in `with_definitions`, or merged in
    later), and none is declared.

    `shards` splits named syncs into that many parallel shards (`orchestration/shards.py`).
    `with_definitions`: your own definitions, merged in; an asset of yours with a source's
    key replaces its external spec (and then runs before the syncs that read it).
    """
    if not isinstance(project, Project):
        project = load_project(Path(project))
    if translator is None:
        translator = SyncTranslator(project)
    elif isinstance(translator, type):
        translator = translator(project)
    shards = dict(shards or {})
    unknown = sorted(set(shards) - set(project.syncs))
    if unknown:
        raise ValueError(f"shards names syncs the project does not have: {', '.join(unknown)} "
                         f"(syncs: {', '.join(project.syncs)})")
    built: list[tuple[SyncDefinition, dg.AssetsDefinition, dg.AssetsDefinition | None]] = []
    owners: dict[dg.AssetKey, str] = {}
    for sync in project.syncs.values():
        count = shards.get(sync.name, 1)
        check_asset_source(project, sync, count)
        upstream = asset_source(project, sync, translator)
        assets_def = (build_sharded_sync_asset(project, sync, translator, count) if count != 1
                      else build_sync_asset(project, sync, translator))
        for key in assets_def.keys:
            if key in owners:
                raise ValueError(
                    f"syncs '{owners[key]}' and '{sync.name}' both produce asset "
                    f"{key.to_user_string()}: give one of them another destination, or a "
                    "translator that tells them apart"
                )
            owners[key] = sync.name
        built.append((sync, assets_def, upstream))
    provided = set(owners)
    if with_definitions is not None:
        provided |= set(with_definitions.resolve_asset_graph().get_all_asset_keys())
    readers: dict[dg.AssetKey, list[SyncDefinition]] = {}
    for sync, _, upstream in built:
        if upstream is not None:
            continue  # an upstream asset's output: the user's own asset has that key
        key = translator.get_source_key(sync)
        if key not in provided:
            readers.setdefault(key, []).append(sync)
    # One AssetsDefinition a source: Dagster folds bare AssetSpecs into a single definition,
    # which every sync's job then takes whole into its graph (each of 1,000 jobs resolved
    # against all 1,000 sources: 24 s to load 1,000 syncs, against 5.3 s this way).
    sources = [dg.AssetsDefinition(specs=[translator.get_source_spec(key, syncs)])
               for key, syncs in readers.items()]
    resources = {NOTIFIER_KEY: notifier or SmtpNotifier()}
    defined = {key: d for d in [*sources, *(d for _, d, _ in built)] for key in d.keys}
    jobs: list[SyncJob] = []
    schedules, sensors = [], []
    for sync, assets_def, upstream in built:
        job = _resolved(build_job(sync, list(assets_def.keys)), assets_def, defined, resources)
        jobs.append(job)
        if (schedule := build_schedule(sync, job, timezone)) is not None:
            schedules.append(schedule)
        sensor = (build_realtime_sensor(project, sync, job, sensor_interval_seconds)
                  if upstream is None else
                  build_upstream_sensor(sync, job, upstream.key, sensor_interval_seconds))
        if sensor is not None:
            sensors.append(sensor)
    ours = dg.Definitions(
        assets=[*sources, *(d for _, d, _ in built)],
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=resources,
    )
    return ours if with_definitions is None else dg.Definitions.merge(with_definitions, ours)


def _resolved(job: dg.UnresolvedAssetJobDefinition, assets_def: dg.AssetsDefinition,
              defined: Mapping[dg.AssetKey, dg.AssetsDefinition],
              resources: Mapping[str, object]) -> SyncJob:
    """The sync's job resolved against its own assets and those it reads, where all of them
    are defined here. Dagster resolves an asset job against every asset of the code location
    (each job a pass over all of them: 1,000 syncs' jobs took 4 s of the 5.3 s of
    `validate_loadable`); a job of one sync needs only its neighbours. A job that reads an
    asset of yours is left to Dagster, which sees your definitions too."""
    needed = set(assets_def.dependency_keys) - set(assets_def.keys)
    if any(k not in defined for k in needed):
        return job
    neighbours = list({id(defined[k]): defined[k] for k in needed}.values())
    return dg.Definitions(assets=[assets_def, *neighbours], jobs=[job],
                          resources=resources).resolve_job_def(job.name)
