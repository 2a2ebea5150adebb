"""One Dagster asset per sync: it runs the engine and reports the SyncExecutionResult.

(No `from __future__ import annotations` here: Dagster reads the asset function's config
annotation at definition time.)

A partial run materializes, fails the `sync_completed` check with the error table and tags
its run `sync_assets/status=partial`; a failed run fails the Dagster step with the cause as
its message (and is run again per the sync's `retry` only when a system could not be
reached: the engine retries batches itself).
"""


import json
from collections.abc import Iterator
from typing import Any

import dagster as dg

from ..connectors.asset_source import provide
from ..engine import RunOptions, make_run, plan
from ..engine.observe import destination_row_count, written_columns
from ..engine.records import plain
from ..project import Project, SyncDefinition
from ..spec.values import shown_cursor
from .asset_inputs import INPUT_NAME, asset_source, source_tables
from .notify import SmtpNotifier, failure_notice
from .translator import SyncTranslator

SYNC_TAG = "sync_assets/sync"
STATUS_TAG = "sync_assets/status"
FULL_REFRESH_TAG = "sync/full_refresh"
ALLOW_MASS_DELETE_TAG = "sync/allow_mass_delete"
DRY_RUN_TAG = "sync/dry_run"
CHECK_NAME = "sync_completed"
CONFLICTS_CHECK_NAME = "no_open_conflicts"
DRIFT_CHECK_NAME = "destination_intact"
NOTIFIER_KEY = "sync_notifier"
_TRUE = {"1", "true", "yes", "on"}


class SyncRunConfig(dg.Config):
    """Run config of a sync's asset (the `sync/full_refresh`, `sync/allow_mass_delete` and
    `sync/dry_run` run tags work too)."""

    full_refresh: bool = False
    allow_mass_delete: bool = False
    #: plan only: counts and sample records as an observation, nothing written, no
    #: materialization
    dry_run: bool = False


def op_name(sync: SyncDefinition) -> str:
    return f"sync__{sync.name}"


def run_retry(sync: SyncDefinition, attempt: int) -> dg.RetryRequested | None:
    """The one retry Dagster adds to the engine's: a run that failed because a system could
    not be reached (CONNECTOR_ERROR) is run again, `retry.maxAttempts` times, waiting
    `backoffMs` doubled each time. Batches are retried by the engine alone (`retry` per
    batch), so the two never multiply for a batch a system refused or dropped."""
    retry = sync.config.retry
    if retry is None or attempt >= retry.maxAttempts:
        return None
    return dg.RetryRequested(max_retries=retry.maxAttempts,
                             seconds_to_wait=retry.backoffMs / 1000 * 2 ** attempt)


def result_metadata(spec: dict[str, Any], row_count: int | None, cursor: Any) -> dict[str, Any]:
    stats = spec.get("stats", {})
    meta: dict[str, Any] = {
        "status": spec["status"],
        **{name: dg.MetadataValue.int(int(value)) for name, value in stats.items()},
        "durationMs": dg.MetadataValue.int(int(spec.get("durationMs", 0))),
        "sync_assets/run_id": spec["id"],
        "sync_assets/result": dg.MetadataValue.json(spec),
    }
    if row_count is not None:
        meta["dagster/row_count"] = dg.MetadataValue.int(row_count)
    if cursor is not None:
        meta["cursor"] = str(cursor)
    if spec.get("errors"):
        meta["errors"] = errors_table(spec["errors"])
    if spec.get("logs"):
        meta["logs"] = dg.MetadataValue.md("```\n" + "\n".join(spec["logs"]) + "\n```")
    return meta


def errors_table(errors: list[dict[str, str]]) -> dg.TableMetadataValue:
    columns = ["recordId", "field", "code", "message"]
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: e.get(c, "") for c in columns}) for e in errors],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]),
    )


def completed_check(key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CHECK_NAME,
        asset=key,
        description="Every record the last run considered was written or skipped: no record "
        "errored (a partial run fails this check with its error table).",
    )


def completed_result(key: dg.AssetKey, spec: dict[str, Any]) -> dg.AssetCheckResult:
    """`sync_completed` for a run's result: passed when it completed, with its errors."""
    errored = spec.get("stats", {}).get("recordsErrored", 0)
    meta: dict[str, Any] = {"recordsErrored": dg.MetadataValue.int(errored)}
    if spec.get("errors"):
        meta["errors"] = errors_table(spec["errors"])
    return dg.AssetCheckResult(
        asset_key=key, check_name=CHECK_NAME, passed=spec["status"] == "completed",
        severity=dg.AssetCheckSeverity.ERROR, metadata=meta,
    )


def run_options(context: dg.OpExecutionContext | dg.AssetExecutionContext, *,
                full_refresh: bool = False, allow_mass_delete: bool = False,
                shard: tuple[int, int] | None = None) -> RunOptions:
    """The engine's options for this Dagster run: run config, or the run's tags."""
    tags = context.run.tags
    return RunOptions(
        full_refresh=full_refresh or tags.get(FULL_REFRESH_TAG, "").lower() in _TRUE,
        allow_mass_delete=(allow_mass_delete
                           or tags.get(ALLOW_MASS_DELETE_TAG, "").lower() in _TRUE),
        run_id=context.run.run_id,
        shard=shard,
    )


def report(context: dg.OpExecutionContext | dg.AssetExecutionContext, sync: SyncDefinition,
           spec: dict[str, Any], what: str) -> None:
    """A run's logs into Dagster's, a notice when it did not complete, and a Failure (with
    the result as metadata) when it failed. `what` names the run in messages."""
    for line in spec.get("logs", []):
        context.log.debug(line)
    _tag_run(context, spec["status"])
    if spec["status"] in ("failed", "partial"):
        _notify(context, sync, spec)
    if spec["status"] == "partial":
        errored = spec.get("stats", {}).get("recordsErrored", 0)
        context.log.warning(f"{what} ended partial: {errored} records errored (see the "
                            "sync_completed check)")
    if spec["status"] == "failed":
        first = (spec.get("errors") or [{"message": "the sync failed"}])[0]
        retry = (run_retry(sync, context.retry_number)
                 if first.get("code") == "CONNECTOR_ERROR" else None)
        if retry is not None:
            context.log.warning(f"{what} failed: {first['message']}; the run is tried again "
                                f"in {retry.seconds_to_wait:g} s")
            raise retry
        context.log.error(f"{what} failed: " + json.dumps(spec))
        # the cause is the headline: the step's error message, and the run's failure
        raise dg.Failure(description=f"{what} failed: {first['message']}",
                         metadata=result_metadata(spec, None, None))


def _tag_run(context: dg.OpExecutionContext | dg.AssetExecutionContext, status: str) -> None:
    """The sync's status as a run tag, shown in the runs list: a partial run is marked
    there even though Dagster counts it a success."""
    try:
        context.instance.add_run_tags(context.run_id, {STATUS_TAG: status})
    except Exception as exc:  # a tag must never fail the run it describes
        context.log.warning(f"could not tag the run: {exc}")


def column_schema(context: dg.OpExecutionContext | dg.AssetExecutionContext,
                  project: Project, sync: SyncDefinition) -> dict[str, Any]:
    """The written table's columns with the types it really has, after the run."""
    try:
        columns = written_columns(project, sync.name)
    except Exception as exc:
        context.log.warning(f"could not describe the destination's columns: {exc}")
        return {}
    if not columns:
        return {}
    return {"dagster/column_schema": dg.TableSchema(
        columns=[dg.TableColumn(name, type_) for name, type_ in columns])}


def row_count(context: dg.OpExecutionContext | dg.AssetExecutionContext, project: Project,
              sync: SyncDefinition) -> int | None:
    """Rows in the destination, for metadata: a count that fails must not fail the run."""
    try:
        return destination_row_count(project, sync.name)
    except Exception as exc:
        context.log.warning(f"could not count destination rows: {exc}")
        return None


def build_sync_asset(
    project: Project, sync: SyncDefinition, translator: SyncTranslator
) -> dg.AssetsDefinition:
    """The asset of one sync. `sync` is a parameter, not a loop variable: each asset keeps
    its own."""
    specs = translator.get_asset_specs(sync)
    spec = specs[0]
    checks = [completed_check(spec.key)]
    one_way = sync.config.direction != "bidirectional"
    if one_way:
        checks.append(drift_check(spec.key))
    if sync.config.direction == "bidirectional":
        checks.append(dg.AssetCheckSpec(
            CONFLICTS_CHECK_NAME,
            asset=spec.key,
            description="No conflict is left open (conflictResolution manual leaves records "
            "changed on both sides unsynced until one side changes again).",
        ))
    # A source that is an upstream asset's output comes in as a real input: loaded through
    # that asset's IO manager, and provided to the engine for the one run.
    source = asset_source(project, sync, translator)
    ins = {INPUT_NAME: dg.AssetIn(key=source.key)} if source is not None else {}

    @dg.multi_asset(
        name=op_name(sync),
        specs=specs,
        check_specs=checks,
        # a dry run materializes nothing and evaluates no check: every output is optional.
        # Not for a two-way sync: its run writes both sides, so both are always selected.
        can_subset=one_way,
        op_tags={SYNC_TAG: sync.name},
        # one pool per sync: with `pools: default_limit: 1` in the instance, no two runs of a
        # sync overlap however they were launched (a job, a schedule, or the asset graph)
        pool=f"sync__{sync.name}",
        required_resource_keys={NOTIFIER_KEY},
        ins=ins,
    )
    def _sync_asset(
        context: dg.AssetExecutionContext, config: SyncRunConfig, **inputs: Any
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        options = run_options(context, full_refresh=config.full_refresh,
                              allow_mass_delete=config.allow_mass_delete)
        tables = source_tables(context, sync, source, inputs)
        if config.dry_run or context.run.tags.get(DRY_RUN_TAG, "").lower() in _TRUE:
            if not one_way:
                raise dg.Failure(description=f"sync {sync.name} is two-way, and a Dagster run "
                                 "of it materializes both sides: see what it would do with "
                                 f"`sync-assets plan PROJECT --sync {sync.name}`")
            with provide(tables):
                dry_run(context, project, sync, spec.key, options)
            return
        context.log.info(
            f"running sync {sync.name}" + (" (full refresh)" if options.full_refresh else "")
        )
        with provide(tables):  # the upstream asset's value, for this run only
            sync_run = make_run(project, sync.name, options)
            spec_dict = sync_run.execute().to_spec()
        report(context, sync, spec_dict, f"sync {sync.name}")
        cursor = sync_run.result.cursor
        meta = result_metadata(spec_dict, row_count(context, project, sync),
                               None if cursor is None else shown_cursor(cursor))
        meta.update(column_schema(context, project, sync))
        if (calls := sync_run.result.total_api_calls) is not None:
            meta["apiCalls"] = dg.MetadataValue.int(calls)
        selected = context.selected_asset_keys
        if spec.key in selected:
            yield dg.MaterializeResult(asset_key=spec.key, metadata=meta)
        for other in specs[1:]:  # a two-way sync wrote both sides in this run
            if other.key in selected:
                yield dg.MaterializeResult(asset_key=other.key, metadata=result_metadata(
                    spec_dict, None, None))
        results = []
        if sync.config.direction == "bidirectional":
            conflicts = [e for e in spec_dict.get("errors", []) if e.get("code") == "CONFLICT"]
            results.append(dg.AssetCheckResult(
                asset_key=spec.key,
                check_name=CONFLICTS_CHECK_NAME,
                passed=not conflicts,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"open_conflicts": dg.MetadataValue.int(len(conflicts)),
                          **({"conflicts": errors_table(conflicts)} if conflicts else {})},
            ))
        if one_way:
            results.append(drift_result(spec.key, getattr(sync_run, "drift", None)))
        results.append(completed_result(spec.key, spec_dict))
        wanted = context.selected_asset_check_keys
        yield from (r for r in results
                    if dg.AssetCheckKey(spec.key, r.check_name) in wanted)

    return _sync_asset


def dry_run(context: dg.AssetExecutionContext, project: Project, sync: SyncDefinition,
            key: dg.AssetKey, options: RunOptions) -> None:
    """What a run would do now, as an observation of the asset (Census's dry run): the
    counts and a few sample records per action. Every transaction rolls back."""
    planned = plan(project, sync.name, full_refresh=options.full_refresh,
                   allow_mass_delete=options.allow_mass_delete)
    spec = planned.result.to_spec()
    samples = {action: [{k: plain(v) for k, v in record.items()} for record in records]
               for action, records in planned.samples.items()}
    meta: dict[str, Any] = {
        "sync_assets/dry_run": True, "status": spec["status"],
        **{name: dg.MetadataValue.int(int(v)) for name, v in spec.get("stats", {}).items()},
        "samples": dg.MetadataValue.json(samples),
    }
    if spec.get("errors"):
        meta["errors"] = errors_table(spec["errors"])
    context.log_event(dg.AssetObservation(asset_key=key, metadata=meta))
    stats = spec.get("stats", {})
    context.log.info(
        f"dry run of {sync.name}: would insert {stats.get('recordsInserted', 0)}, update "
        f"{stats.get('recordsUpdated', 0)}, delete {stats.get('recordsDeleted', 0)}, skip "
        f"{stats.get('recordsSkipped', 0)}; {stats.get('recordsErrored', 0)} would error. "
        "Nothing was written.")


def drift_check(key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        DRIFT_CHECK_NAME,
        asset=key,
        description="At the start of the run the destination still held every record this "
        "sync had written (a count, then the missing keys looked up). Records dropped, "
        "truncated or deleted there are written again by that run, and this check warns.",
    )


def drift_result(key: dg.AssetKey, drift: Any) -> dg.AssetCheckResult:
    """`destination_intact`: passed when nothing synced had gone from the destination."""
    meta: dict[str, Any] = {}
    if drift is not None:
        meta = {"syncedRecords": dg.MetadataValue.int(drift.synced),
                "missingRecords": dg.MetadataValue.int(drift.missing),
                "destinationRows": (dg.MetadataValue.int(drift.held) if drift.held is not None
                                    else dg.MetadataValue.text("table missing"))}
    return dg.AssetCheckResult(
        asset_key=key, check_name=DRIFT_CHECK_NAME,
        passed=drift is None or drift.missing == 0,
        severity=dg.AssetCheckSeverity.WARN, metadata=meta,
    )


def _notify(context: dg.OpExecutionContext | dg.AssetExecutionContext, sync: SyncDefinition,
            spec: dict[str, Any]) -> None:
    handling = sync.config.errorHandling
    recipients = list(handling.notifyOnError or []) if handling else []
    if not recipients:
        return
    notifier: SmtpNotifier = getattr(context.resources, NOTIFIER_KEY)
    if not notifier.configured():
        context.log.warning(
            f"notifyOnError is set but {notifier.host_env} is not: no email sent"
        )
        return
    subject, body = failure_notice(spec)
    try:
        notifier.send(recipients, subject, body)
        context.log.info(f"notified {', '.join(recipients)}")
    except (OSError, Exception) as exc:  # a mail problem must not hide the sync's own result
        context.log.warning(f"could not send the failure email: {type(exc).__name__}: {exc}")
