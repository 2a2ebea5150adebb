"""A sync split into shards: one op per shard, run in parallel by Dagster's executor.

A large one-way sync can be split into `n` static shards: shard `i` reads only the records
whose match key hashes to `i` modulo `n` (the engine's `RunOptions.shard`), with its own
cursor and record state, so shards never write the same key. Each shard is an op of a
graph-backed asset; the multiprocess executor runs them in separate processes (Celery or
Kubernetes executors on separate machines), and a last op adds their results up into one
materialization and one `sync_completed` check. Across processes the instance needs shared
storage: dagster-postgres (see README, "Scale out").

The run tags `sync/full_refresh` and `sync/allow_mass_delete` apply to every shard.

(No `from __future__ import annotations` here: Dagster reads the ops' annotations.)
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from ..engine import make_run
from ..engine.records import plain
from ..project import Project, SyncDefinition
from .assets import (
    NOTIFIER_KEY,
    SYNC_TAG,
    completed_check,
    completed_result,
    op_name,
    report,
    result_metadata,
    row_count,
    run_options,
)
from .translator import SyncTranslator

_STATUS_ORDER = ("completed", "partial", "failed")


def shard_op_name(sync: SyncDefinition, index: int, count: int) -> str:
    return f"{op_name(sync)}__shard_{index}_of_{count}"


def build_sharded_sync_asset(
    project: Project, sync: SyncDefinition, translator: SyncTranslator, shards: int
) -> dg.AssetsDefinition:
    """The asset of a sync run as `shards` parallel shards (see the module docstring)."""
    if sync.config.direction == "bidirectional":
        raise ValueError(f"sync '{sync.name}' is bidirectional: two-way syncs compare both "
                         "sides whole and cannot be split into shards")
    if shards < 2:
        raise ValueError(f"sync '{sync.name}': shards must be at least 2, got {shards}")
    spec = translator.get_asset_specs(sync)[0]
    check = completed_check(spec.key)
    # The source asset(s) come in as Nothing inputs of every shard: shards start after
    # their upstream materialized, and no value is loaded.
    upstream = {f"upstream_{i}": dg.AssetIn(key=dep.asset_key, dagster_type=dg.Nothing)
                for i, dep in enumerate(spec.deps)}
    shard_ops = [_shard_op(project, sync, i, shards, list(upstream))
                 for i in range(shards)]
    combine = _combine_op(project, sync, spec.key, check, shards)

    @dg.graph_multi_asset(
        name=op_name(sync),
        ins=upstream,
        outs={"synced": dg.AssetOut.from_spec(spec.replace_attributes(deps=[]),
                                              dagster_type=dg.Nothing)},
        check_specs=[check],
    )
    def _sharded(**ups: Any) -> Any:
        return combine(**{f"shard_{i}": op(**ups) for i, op in enumerate(shard_ops)})

    return _sharded


def _shard_op(project: Project, sync: SyncDefinition, index: int, count: int,
              upstream: list[str]) -> Any:
    """One shard's op; `index` and `count` are parameters, so each op keeps its own."""

    @dg.op(
        name=shard_op_name(sync, index, count),
        ins={name: dg.In(dg.Nothing) for name in upstream},
        out=dg.Out(dict),
        tags={SYNC_TAG: sync.name},
        # one pool per shard: with `pools: default_limit: 1`, shard i of two runs never
        # overlaps, while the shards of one run go in parallel
        pool=f"sync__{sync.name}__shard_{index}",
        required_resource_keys={NOTIFIER_KEY},
    )
    def _shard(context: dg.OpExecutionContext) -> dict[str, Any]:
        sync_run = make_run(project, sync.name, run_options(context, shard=(index, count)))
        spec = sync_run.execute().to_spec()
        report(context, sync, spec, f"sync {sync.name}, shard {index} of {count}")
        cursor = sync_run.result.cursor
        return {"result": spec, "cursor": None if cursor is None else plain(cursor)}

    return _shard


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The shards' SyncExecutionResults as one: counters added, errors and logs joined (logs
    marked with their shard), the worst status, the whole time span."""
    specs = [r["result"] for r in results]
    merged = dict(specs[0])
    merged["status"] = max((s["status"] for s in specs), key=_STATUS_ORDER.index)
    merged["startedAt"] = min(s["startedAt"] for s in specs)
    merged["completedAt"] = max(s["completedAt"] for s in specs)
    merged["durationMs"] = max(s.get("durationMs", 0) for s in specs)
    merged["stats"] = {k: sum(s.get("stats", {}).get(k, 0) for s in specs)
                       for k in specs[0].get("stats", {})}
    merged["errors"] = [e for s in specs for e in s.get("errors") or []]
    merged["logs"] = [f"[shard {i}] {line}" for i, s in enumerate(specs)
                      for line in s.get("logs") or []]
    return merged


def _combine_op(project: Project, sync: SyncDefinition, key: dg.AssetKey,
                check: dg.AssetCheckSpec, count: int) -> Any:
    @dg.op(
        name=f"{op_name(sync)}__combine",
        ins={f"shard_{i}": dg.In(dict) for i in range(count)},
        out={"synced": dg.Out(dg.Nothing),
             check.get_python_identifier(): dg.Out(dg.Nothing, is_required=False)},
        tags={SYNC_TAG: sync.name},
    )
    def _combine(context: dg.OpExecutionContext,
                 **shards: dict[str, Any]) -> Iterator[Any]:
        ordered = [shards[f"shard_{i}"] for i in range(count)]
        spec = merge_results(ordered)
        meta = result_metadata(spec, row_count(context, project, sync), None)
        meta["shards"] = dg.MetadataValue.int(count)
        cursors = [r["cursor"] for r in ordered]
        if any(c is not None for c in cursors):
            meta["cursor"] = "; ".join(f"shard {i}: {c}" for i, c in enumerate(cursors))
        yield dg.Output(None, "synced", metadata=meta)
        yield completed_result(key, spec)

    return _combine
