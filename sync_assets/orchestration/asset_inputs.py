"""Syncs from what the pipeline computed: a source that is an upstream Dagster asset's
output (`type: dagster_asset`, `externalResource: analytics/churn_scores`).

The sync's asset takes the upstream asset as a real input (`AssetIn`): the lineage shows the
edge, and Dagster loads the value through the upstream asset's own IO manager. The value (a
pandas DataFrame, an Arrow table or record batch, or anything that exports an Arrow stream,
such as a polars DataFrame) becomes an Arrow table here, which is provided to the connector
for the one engine call (`connectors.asset_source.provide`); the engine reads it like any
source, with the same fingerprints, state and counters.

pandas is optional (`pip install 'sync-assets[pandas]'`): it is never imported here; a value
that is a DataFrame means the pipeline has it already.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa

from ..connectors.asset_source import AssetSourceSettings, asset_path
from ..engine.direction import flows
from ..project import Project, SyncDefinition
from ..spec.config import DataDestinationConfig, DataSourceConfig
from .translator import SyncTranslator

#: the name of the sync asset's input that carries the upstream asset's value
INPUT_NAME = "sync_source"


@dataclass(frozen=True)
class AssetSource:
    """The upstream asset a sync reads: its key in Dagster, and the asset key path the
    connector is provided the table by (the sync's externalResource)."""

    key: dg.AssetKey
    resource: str


def is_asset_endpoint(project: Project,
                      endpoint: DataSourceConfig | DataDestinationConfig) -> bool:
    """Whether an endpoint names a `dagster_asset` connector instance."""
    if endpoint.object is not None:
        return False
    return isinstance(project.connectors.get(endpoint.connectorInstanceId or ""),
                      AssetSourceSettings)


def asset_source(project: Project, sync: SyncDefinition,
                 translator: SyncTranslator) -> AssetSource | None:
    """The upstream asset the sync reads, when the side it reads is a Dagster asset."""
    endpoint = getattr(sync.config, flows(sync.config)[0][0])
    if not is_asset_endpoint(project, endpoint):
        return None
    return AssetSource(translator.get_source_key(sync), asset_path(endpoint.externalResource
                                                                   or ""))


def check_asset_source(project: Project, sync: SyncDefinition, shards: int) -> None:
    """What a Dagster asset source cannot do, refused when the definitions are built: be
    written (an upstream asset is the pipeline's), take part in a two-way sync, or be read
    in shards (the whole value is loaded into the one process anyway)."""
    config = sync.config
    sides = [s for s in ("source", "destination") if is_asset_endpoint(project,
                                                                       getattr(config, s))]
    if not sides:
        return
    where = f"sync '{sync.name}' reads a Dagster asset (connector type dagster_asset)"
    if config.direction == "bidirectional":
        raise ValueError(f"{where} and is bidirectional: an upstream asset's output can only "
                         "be read; use direction push")
    if flows(config)[0][1] in sides:
        hint = (" (a push from an external source into an ObjectStack object flows "
                "backwards: use direction pull)" if config.destination.object is not None
                else "")
        raise ValueError(f"sync '{sync.name}' would write to a Dagster asset (connector type "
                         f"dagster_asset), whose output can only be read{hint}")
    if shards != 1:
        raise ValueError(f"{where}: its value is loaded whole into one process, so it cannot "
                         "be split into shards")


def as_arrow_table(value: Any) -> pa.Table:
    """An upstream asset's value as an Arrow table. A pandas DataFrame's named index levels
    are columns (`set_index("id")` keeps `id`); an unnamed index is dropped."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame):
        frame = value
        if any(name is not None for name in frame.index.names):
            names = [n for n in frame.index.names if n is not None]
            if not any(n in frame.columns for n in names):
                frame = frame.reset_index()
        return pa.Table.from_pandas(frame, preserve_index=False)
    if hasattr(value, "__arrow_c_stream__"):  # polars, DuckDB relations, ... (PyCapsule)
        return pa.table(value)
    raise TypeError(f"it is a {type(value).__module__}.{type(value).__qualname__}; a sync "
                    "reads a pandas DataFrame, an Arrow table or record batch, or a value "
                    "with an Arrow stream (__arrow_c_stream__)")


def source_tables(context: dg.AssetExecutionContext, sync: SyncDefinition,
                  source: AssetSource | None, inputs: dict[str, Any]) -> dict[str, pa.Table]:
    """The tables to provide to the engine for this run: the loaded input as Arrow."""
    if source is None:
        return {}
    shown = source.key.to_user_string()
    try:
        table = as_arrow_table(inputs[INPUT_NAME])
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise dg.Failure(description=f"sync {sync.name} cannot read the output of asset "
                                     f"{shown}: {exc}") from None
    context.log.info(f"read the output of asset {shown}: {table.num_rows} rows, "
                     f"{table.num_columns} columns")
    return {source.resource: table}
