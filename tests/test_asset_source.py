"""A sync from what the pipeline computed (#14): a source that is an upstream Dagster asset's
output (`type: dagster_asset`), a pandas DataFrame or an Arrow table loaded through that
asset's IO manager, synced to SQLite with the same fingerprints, state and counters as any
source; the lineage edge; and the refusals (the CLI, writes, shards, duplicate keys)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml

from sync_assets import build_definitions, load_project
from sync_assets.connectors.asset_source import provide
from sync_assets.connectors.asset_source.connector import open_asset_source
from sync_assets.connectors.asset_source.settings import AssetSourceSettings
from sync_assets.connectors.base import ConnectorError, ReadRequest
from sync_assets.engine import run
from sync_assets.orchestration import CHECK_NAME

UPSTREAM = ["analytics", "churn_scores"]
SYNC_KEY = dg.AssetKey(["warehouse", "churn_scores"])


# -- helpers ---------------------------------------------------------------------------------
def write_project(tmp_path: Path, *, key: list[str] | None = None,
                  **sync: Any) -> Path:
    """A project: the pipeline's asset -> a SQLite warehouse, the sync's keys overridden."""
    pipeline: dict[str, Any] = {"type": "dagster_asset"}
    if key is not None:
        pipeline["key"] = key
    config: dict[str, Any] = {
        "name": "churn_to_warehouse",
        "source": {"connectorInstanceId": "pipeline", "externalResource": "/".join(UPSTREAM)},
        "destination": {"connectorInstanceId": "warehouse", "externalResource": "churn_scores",
                        "operation": "upsert", "matchKey": ["customer_id"]},
        **sync,
    }
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump({
        "connectors": {"pipeline": pipeline,
                       "warehouse": {"type": "sql", "url": f"sqlite:///{tmp_path}/wh.db"}},
        "syncs": [config],
    }, sort_keys=False))
    return path


class Pipeline:
    """The user's asset: returns whatever `value` holds now, and counts its runs."""

    def __init__(self, value: Any, **asset_options: Any) -> None:
        self.value = value
        self.calls = 0

        @dg.asset(key=UPSTREAM, **asset_options)
        def churn_scores() -> Any:
            self.calls += 1
            return self.value

        self.asset = churn_scores


def definitions(project: Path, pipeline: Pipeline, resources: Mapping[str, Any] | None = None,
                **options: Any) -> dg.Definitions:
    mine = dg.Definitions(assets=[pipeline.asset], resources=dict(resources or {}))
    return build_definitions(project, with_definitions=mine, **options)


def materialize(defs: dg.Definitions, tmp_path: Path, instance: dg.DagsterInstance, *,
                only_sync: bool = False, **kwargs: Any) -> dg.ExecuteInProcessResult:
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    resources = {"io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "io")),
                 **(defs.resources or {})}
    selection = [SYNC_KEY] if only_sync else None
    return dg.materialize(assets, resources=resources, instance=instance, selection=selection,
                          raise_on_error=False, **kwargs)


def sync_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = [e for e in result.get_asset_materialization_events()
                if e.asset_key == SYNC_KEY]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def counters(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    meta = sync_metadata(result)
    return {name: meta[f"records{name.capitalize()}"]
            for name in ("inserted", "updated", "deleted", "skipped", "errored")}


def rows(tmp_path: Path, table: str = "churn_scores", order: str = "customer_id"
         ) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/wh.db")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                sa.text(f'SELECT * FROM "{table}" ORDER BY {order}'))]
    finally:
        engine.dispose()


@pytest.fixture
def instance() -> Any:
    with dg.instance_for_test() as found:
        yield found


def frame(scores: Mapping[int, float], segments: Mapping[int, str | None] | None = None
          ) -> pd.DataFrame:
    ids = sorted(scores)
    return pd.DataFrame({"customer_id": ids, "score": [scores[i] for i in ids],
                         "segment": [(segments or {}).get(i, "std") for i in ids]})


# -- whole syncs in Dagster ------------------------------------------------------------------
def test_a_dataframe_syncs_then_nothing_then_exactly_the_changed_rows(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    pipeline = Pipeline(frame({1: 0.1, 2: 0.5, 3: 0.9}, {3: None}))
    defs = definitions(write_project(tmp_path, key=["customer_id"]), pipeline)

    first = materialize(defs, tmp_path, instance)
    assert first.success
    assert counters(first) == {"inserted": 3, "updated": 0, "deleted": 0, "skipped": 0,
                               "errored": 0}
    meta = sync_metadata(first)
    assert meta["status"] == "completed" and meta["dagster/row_count"] == 3
    assert rows(tmp_path) == [(1, 0.1, "std"), (2, 0.5, "std"), (3, 0.9, None)]
    assert [c.passed for c in first.get_asset_check_evaluations()
            if c.check_name == CHECK_NAME] == [True]

    again = materialize(defs, tmp_path, instance)  # the pipeline computes the same frame
    assert again.success and pipeline.calls == 2
    assert counters(again) == {"inserted": 0, "updated": 0, "deleted": 0, "skipped": 3,
                               "errored": 0}
    assert rows(tmp_path) == [(1, 0.1, "std"), (2, 0.5, "std"), (3, 0.9, None)]

    pipeline.value = frame({1: 0.1, 2: 0.75, 3: 0.9, 4: 0.2}, {3: None})
    changed = materialize(defs, tmp_path, instance)
    assert changed.success
    assert counters(changed) == {"inserted": 1, "updated": 1, "deleted": 0, "skipped": 2,
                                 "errored": 0}
    assert rows(tmp_path) == [(1, 0.1, "std"), (2, 0.75, "std"), (3, 0.9, None),
                              (4, 0.2, "std")]


def test_an_arrow_table_syncs_incrementally_on_its_change_tracking_column(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """No `key` in the connector: the sync's matchKey identifies records. The cursor follows
    `updated_at`, so a run after one row changed reads that row alone."""
    t0 = datetime(2026, 1, 1, 9, 0)

    def table(updated: Mapping[int, datetime], scores: Mapping[int, float]) -> pa.Table:
        ids = sorted(updated)
        return pa.table({"customer_id": pa.array(ids, pa.int32()),
                         "score": [scores[i] for i in ids],
                         "updated_at": pa.array([updated[i] for i in ids], pa.timestamp("ms"))})

    pipeline = Pipeline(table({1: t0, 2: t0, 3: t0.replace(hour=10)}, {1: 1.0, 2: 2.0, 3: 3.0}))
    defs = definitions(write_project(tmp_path, changeTrackingField="updated_at",
                                     syncMode="incremental"), pipeline)

    first = materialize(defs, tmp_path, instance)
    assert first.success
    assert counters(first)["inserted"] == 3
    assert sync_metadata(first)["cursor"] == "2026-01-01T10:00:00"

    pipeline.value = table({1: t0, 2: t0.replace(hour=11), 3: t0.replace(hour=10)},
                           {1: 1.0, 2: 2.5, 3: 3.0})
    second = materialize(defs, tmp_path, instance)
    meta = sync_metadata(second)
    # the record at the cursor is re-read (boundary-safe) and dropped uncounted
    assert meta["recordsProcessed"] == 1 and meta["recordsUpdated"] == 1
    assert meta["cursor"] == "2026-01-01T11:00:00"
    assert [r[:2] for r in rows(tmp_path)] == [(1, 1.0), (2, 2.5), (3, 3.0)]


def test_the_value_is_loaded_through_the_upstream_assets_own_io_manager(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Materializing the sync alone does not run the pipeline: its stored output is loaded
    by the IO manager the upstream asset names, and nothing changed is written."""
    pipeline = Pipeline(frame({1: 0.1, 2: 0.2}), io_manager_key="frames")
    frames = {"frames": dg.FilesystemIOManager(base_dir=str(tmp_path / "frames"))}
    defs = definitions(write_project(tmp_path), pipeline, resources=frames)

    assert materialize(defs, tmp_path, instance).success
    assert (tmp_path / "frames" / "analytics" / "churn_scores").exists()
    assert not (tmp_path / "io" / "analytics").exists()

    alone = materialize(defs, tmp_path, instance, only_sync=True)
    assert alone.success and pipeline.calls == 1
    assert counters(alone)["skipped"] == 2 and counters(alone)["inserted"] == 0


def test_a_mirror_deletes_the_rows_that_left_the_frame(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    pipeline = Pipeline(frame({1: 0.1, 2: 0.2, 3: 0.3}))
    destination = {"connectorInstanceId": "warehouse", "externalResource": "churn_scores",
                   "operation": "sync", "matchKey": ["customer_id"]}
    defs = definitions(write_project(tmp_path, destination=destination), pipeline)
    assert counters(materialize(defs, tmp_path, instance))["inserted"] == 3

    pipeline.value = frame({1: 0.1, 3: 0.3})
    second = materialize(defs, tmp_path, instance)
    assert counters(second) == {"inserted": 0, "updated": 0, "deleted": 1, "skipped": 2,
                                "errored": 0}
    assert [r[0] for r in rows(tmp_path)] == [1, 3]


def test_pandas_types_arrive_as_plain_values(tmp_path: Path,
                                             instance: dg.DagsterInstance) -> None:
    """Nanosecond timestamps, categoricals, nullable integers, NaN (null) and a named index
    (a column); a filter and a cast (the record path) on the same frame."""
    data = pd.DataFrame({
        "customer_id": [1, 2, 3],
        "seen": pd.to_datetime(["2026-01-02 10:30:00.000000001", "2026-01-03 00:00:00",
                                None], format="ISO8601"),
        "segment": pd.Categorical(["gold", "silver", "gold"]),
        "visits": pd.array([5, None, 7], dtype="Int64"),
        "score": [0.5, float("nan"), 0.25],
    }).set_index("customer_id")
    mapping = [{"source": "customer_id", "target": "customer_id"},
               {"source": "seen", "target": "seen"},
               {"source": "segment", "target": "segment"},
               {"source": "visits", "target": "visits",
                "transform": {"type": "cast", "targetType": "string"}},
               {"source": "score", "target": "score"}]
    destination = {"connectorInstanceId": "warehouse", "externalResource": "churn_scores",
                   "operation": "upsert", "matchKey": ["customer_id"], "mapping": mapping}
    defs = definitions(write_project(tmp_path, destination=destination,
                                     source={"connectorInstanceId": "pipeline",
                                             "externalResource": "analytics/churn_scores",
                                             "filters": {"segment": "gold"}}),
                       Pipeline(data))
    result = materialize(defs, tmp_path, instance)
    assert result.success, sync_metadata(result)
    assert counters(result)["inserted"] == 2
    assert rows(tmp_path) == [(1, "2026-01-02 10:30:00", "gold", "5", 0.5),
                              (3, None, "gold", "7", 0.25)]
    assert counters(materialize(defs, tmp_path, instance))["skipped"] == 2


def test_a_dry_run_counts_and_writes_nothing(tmp_path: Path,
                                             instance: dg.DagsterInstance) -> None:
    defs = definitions(write_project(tmp_path), Pipeline(frame({1: 0.1, 2: 0.2})))
    result = materialize(defs, tmp_path, instance, run_config={"ops": {
        "sync__churn_to_warehouse": {"config": {"dry_run": True}}}})
    assert result.success
    (observation,) = [e.event_specific_data.asset_observation  # type: ignore[union-attr]
                      for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert observation.metadata["recordsInserted"].value == 2
    assert not sa.inspect(sa.create_engine(f"sqlite:///{tmp_path}/wh.db")).has_table(
        "churn_scores")


def test_a_declared_key_that_repeats_fails_the_run_with_its_cause(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    data = pd.DataFrame({"customer_id": [1, 2, 2], "score": [0.1, 0.2, 0.3]})
    defs = definitions(write_project(tmp_path, key=["customer_id"]), Pipeline(data))
    result = materialize(defs, tmp_path, instance)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "key customer_id is not unique" in message and "customer_id=2" in message


def test_a_value_that_is_no_table_fails_with_what_it_was(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = definitions(write_project(tmp_path), Pipeline({"customer_id": 1}))
    result = materialize(defs, tmp_path, instance)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "cannot read the output of asset analytics/churn_scores" in message
    assert "builtins.dict" in message


# -- the graph --------------------------------------------------------------------------------
def test_the_lineage_has_the_edge_and_no_external_asset_for_the_source(tmp_path: Path) -> None:
    pipeline = Pipeline(frame({1: 0.1}))
    defs = definitions(write_project(tmp_path), pipeline)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    upstream = dg.AssetKey(UPSTREAM)
    assert graph.get(SYNC_KEY).parent_keys == {upstream}
    assert graph.get(upstream).is_materializable  # the user's own asset, not a stub
    assert {k for k in graph.get_all_asset_keys()} == {upstream, SYNC_KEY}
    job_graph = defs.resolve_job_def("sync__churn_to_warehouse__job").asset_layer.asset_graph
    assert job_graph.get_all_asset_keys() == {upstream, SYNC_KEY}
    sync_asset = defs.resolve_assets_def(SYNC_KEY)
    # a real input, whose value is loaded (not a Nothing dependency)
    (name,) = sync_asset.keys_by_input_name
    assert sync_asset.keys_by_input_name[name] == upstream
    assert sync_asset.op.ins[name].dagster_type is not dg.Nothing
    spec = sync_asset.specs_by_key[SYNC_KEY]
    assert [d.asset_key for d in spec.deps] == [upstream]
    assert spec.kinds == {"python", "sqlite"}
    assert spec.description and spec.description.endswith(
        "reads the output of asset `analytics/churn_scores` · writes `warehouse.churn_scores` "
        "(sqlite)")


def test_realtime_runs_after_each_materialization_of_the_upstream_asset(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = definitions(write_project(tmp_path, syncMode="realtime"), Pipeline(frame({1: 0.1})))
    sensor = defs.resolve_sensor_def("sync__churn_to_warehouse__realtime")
    assert isinstance(sensor, dg.AssetSensorDefinition)
    assert sensor.asset_key == dg.AssetKey(UPSTREAM)
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=UPSTREAM))
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert len(tick.run_requests or []) == 1


def test_what_an_asset_source_cannot_do_is_refused_when_definitions_are_built(
        tmp_path: Path) -> None:
    pipeline = Pipeline(frame({1: 0.1}))
    with pytest.raises(ValueError, match="cannot be split into shards"):
        definitions(write_project(tmp_path), pipeline, shards={"churn_to_warehouse": 2})
    backwards = write_project(
        tmp_path, direction="pull")  # pull: the warehouse would be read, the asset written
    with pytest.raises(ValueError, match="would write to a Dagster asset"):
        definitions(backwards, pipeline)


# -- outside Dagster --------------------------------------------------------------------------
def test_the_cli_refuses_to_run_a_sync_from_a_dagster_asset(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    done = subprocess.run([sys.executable, "-m", "sync_assets.cli", "validate", str(project)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "sync_assets.cli", "run", str(project)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "runs only inside Dagster" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not sa.inspect(sa.create_engine(f"sqlite:///{tmp_path}/wh.db")).has_table(
        "churn_scores")


def test_validate_connect_leaves_a_dagster_asset_source_to_the_run(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    done = subprocess.run([sys.executable, "-m", "sync_assets.cli", "validate", "--connect",
                           str(project)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ("source: not checked here: an upstream asset's output exists only inside a "
            "Dagster run") in done.stdout + done.stderr


def test_a_provided_table_is_seen_only_inside_its_block_and_thread(tmp_path: Path) -> None:
    settings = AssetSourceSettings.model_validate({"type": "dagster_asset"})
    table = pa.table({"id": [2, 1], "v": ["b", "a"]})
    seen: list[bool] = []

    def other_thread() -> None:
        try:
            open_asset_source(settings, "analytics/t", "p.analytics/t")
            seen.append(True)
        except ConnectorError:
            seen.append(False)

    with provide({"analytics/t": table}):
        endpoint = open_asset_source(settings, "/analytics/t", "p.analytics/t")
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert seen == [False]
    with pytest.raises(ConnectorError, match="runs only inside Dagster"):
        open_asset_source(settings, "analytics/t", "p.analytics/t")
    request = ReadRequest(columns=["id", "v"], order_by=["id"], batch_size=1)
    assert [p for p in endpoint.read_batches(request)] == [[{"id": 1, "v": "a"}],
                                                          [{"id": 2, "v": "b"}]]
    with pytest.raises(ConnectorError, match="cannot write to it"):
        endpoint.write(None, "insert", ["id"], [{"id": 3, "v": "c"}])


def test_the_engine_reads_a_provided_table_like_any_source(tmp_path: Path) -> None:
    """Without Dagster, code that provides the table runs the engine itself."""
    project = load_project(write_project(tmp_path, key="customer_id"), env={})
    data = pa.Table.from_pandas(frame({1: 0.1, 2: 0.2}), preserve_index=False)
    runs: list[Callable[[], Any]] = [lambda: run(project, "churn_to_warehouse")] * 2
    with provide({"analytics/churn_scores": data}):
        first, second = (r().to_spec() for r in runs)
    assert first["stats"]["recordsInserted"] == 2
    assert second["stats"]["recordsSkipped"] == 2 and second["stats"]["recordsInserted"] == 0


def test_without_a_key_the_match_key_identifies_records_and_repeats_are_errored(
        tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path), env={})
    data = pa.table({"customer_id": [1, 2, 2], "score": [0.1, 0.2, 0.3]})
    with provide({"analytics/churn_scores": data}):
        result = run(project, "churn_to_warehouse").to_spec()
    assert result["status"] == "partial"
    assert result["stats"]["recordsInserted"] == 2 and result["stats"]["recordsErrored"] == 1
    assert [e["code"] for e in result["errors"]] == ["DUPLICATE_KEY"]
    assert rows(tmp_path) == [(1, 0.1), (2, 0.2)]


def test_a_declared_key_with_nulls_fails_the_run_naming_the_column(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path, key=["customer_id"]), env={})
    data = pa.table({"customer_id": pa.array([1, None], pa.int64()), "score": [0.1, 0.2]})
    with provide({"analytics/churn_scores": data}):
        result = run(project, "churn_to_warehouse").to_spec()
    assert result["status"] == "failed"
    assert "key column customer_id is null in 1 row" in result["errors"][0]["message"]
